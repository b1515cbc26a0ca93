//! The transport's cost per datagram: one full 60 KiB datagram sent and received (header,
//! CRC-32, and with a key HMAC-SHA256 on both ends), and a small one, with and without a key.
//! Run with `cargo bench --bench transport`; BENCHMARKS.md records the numbers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU64;
use watermark_net::transport::{Key, Limits, Received, Transport, TransportConfig};

fn transport(incarnation: u64, key: Option<Key>) -> Transport {
    Transport::new(TransportConfig {
        incarnation: NonZeroU64::new(incarnation).expect("nonzero"),
        key,
        nodes: Vec::new(),
        limits: Limits::default(),
    })
}

fn send_and_receive(c: &mut Criterion) {
    let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
    let b = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2);
    let mut group = c.benchmark_group("transport");
    for keyed in [false, true] {
        let key = keyed.then(|| Key::from_bytes([7; 32]));
        let mut sender = transport(1 << 32, key.clone());
        let mut receiver = transport(2 << 32, key);
        // The handshake, once.
        let mut out = Vec::new();
        sender.send(a, b, b"hello", &mut out).expect("sent");
        let mut reset = Vec::new();
        receiver.receive(b, a, &out[0].bytes, &mut reset);
        let mut resent = Vec::new();
        sender.receive(a, b, &reset[0].bytes, &mut resent);
        receiver.receive(b, a, &resent[0].bytes, &mut Vec::new());
        for (name, len) in [("full", sender.fragment_bytes()), ("100 B", 100)] {
            let payload = vec![0x5A; len];
            group.throughput(Throughput::Bytes(len as u64));
            let id = format!("{name}/{}", if keyed { "keyed" } else { "unkeyed" });
            let mut out = Vec::new();
            let mut replies = Vec::new();
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    out.clear();
                    sender.send(a, b, &payload, &mut out).expect("sent");
                    let delivered = matches!(
                        receiver.receive(b, a, &out[0].bytes, &mut replies),
                        Received::Deliver { .. }
                    );
                    assert!(delivered);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, send_and_receive);
criterion_main!(benches);
