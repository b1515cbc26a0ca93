//! The real cluster: processes on 127.0.0.1 with ephemeral ports and temporary directories,
//! started and killed through `LocalCluster`, and driven through the `watermark` command line
//! as a user would, or with hand-made datagrams where a test plays a client or a forger.
//!
//! Every node dies with its `LocalCluster` (SIGKILL on drop), also when a test panics. Every
//! wait is bounded in count or time.

use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watermark_model::*;
use watermark_net::cluster::{Role, TimingMs};
use watermark_net::local::{LocalCluster, LocalOptions};
use watermark_net::transport::{self, Datagram, Header, Key, Received, Transport, TransportConfig};
use watermark_net::{client, codec, incarnation};

/// Clusters share two cores: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_watermark"))
}

fn watermark() -> Command {
    Command::new(exe())
}

/// Options for a three-broker cluster with a 1 s session timeout.
/// A 1 s session timeout, and no periodic preferred election: only the test moves leaders.
fn failover_options() -> LocalOptions {
    LocalOptions {
        timing_ms: TimingMs {
            session_timeout: 1000,
            preferred_leader_election_interval: 3_600_000,
            ..TimingMs::default()
        },
        ..LocalOptions::default()
    }
}

fn options() -> LocalOptions {
    LocalOptions {
        timing_ms: TimingMs {
            session_timeout: 1000,
            ..TimingMs::default()
        },
        ..LocalOptions::default()
    }
}

struct Cluster {
    local: LocalCluster,
    bootstrap: String,
}

impl Cluster {
    fn up(dir: &Path, options: &LocalOptions) -> Cluster {
        let mut local = LocalCluster::create(exe(), dir, options).expect("cluster created");
        local.start_all().expect("every node starts");
        let bootstrap = local.bootstrap().to_string();
        Cluster { local, bootstrap }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = watermark()
            .args(args)
            .args(["--bootstrap-server", &self.bootstrap])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_string();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(stdin.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "watermark {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `watermark topic create` with replication factor 3; its output.
    fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        min_insync_replicas: Option<u32>,
    ) -> String {
        let partitions = partitions.to_string();
        let min_isr = min_insync_replicas.map(|m| format!("min.insync.replicas={m}"));
        let mut args = vec![
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions,
            "--replication-factor",
            "3",
        ];
        if let Some(m) = &min_isr {
            args.extend(["--config", m.as_str()]);
        }
        self.ok(&args, "")
    }

    fn describe(&self, topic: &str) -> Json {
        serde_json::from_str(&self.ok(&["describe", "--topic", topic, "--json"], "")).unwrap()
    }

    /// Polls `describe` until `pred` holds: at most `tries` times, 200 ms apart.
    fn await_describe(&self, topic: &str, tries: u32, pred: impl Fn(&Json) -> bool) -> Json {
        for _ in 0..tries {
            let d = self.describe(topic);
            if pred(&d) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "describe never satisfied the condition: {}",
            self.describe(topic)
        );
    }

    /// Waits until partition 0 of `topic` has a leader and a full ISR; its description.
    fn await_full_isr(&self, topic: &str) -> Json {
        self.await_describe(topic, 50, |d| {
            let p = &d["partitions"][0];
            p["leader"].is_u64() && p["isr"].as_array().is_some_and(|i| i.len() == 3)
        })["partitions"][0]
            .clone()
    }

    /// Partition 0's (leader, follower) from its description `p`, for RF=2 on 3 brokers; the
    /// tools go to the third broker from now on, which no failure of the two touches.
    fn bootstrap_beside(&mut self, p: &Json) -> (BrokerId, BrokerId) {
        let replicas = u32_list(&p["replicas"]);
        let third = (1..=3).find(|b| !replicas.contains(b)).unwrap();
        self.bootstrap = self.local.address(Role::Broker(third)).unwrap().to_string();
        (replicas[0], replicas[1])
    }

    /// kill -9 of `follower`; waits until partition 0's ISR is `leader` alone.
    fn kill_follower(&mut self, topic: &str, leader: BrokerId, follower: BrokerId) {
        self.local.kill(Role::Broker(follower)).unwrap();
        self.await_describe(topic, 50, |d| {
            u32_list(&d["partitions"][0]["isr"]) == vec![leader]
        });
    }

    /// kill -9 of `leader`, the last ISR member, and a restart of `follower`: waits until
    /// partition 0 is offline with `follower` live (unclean election off keeps it so).
    fn take_offline(&mut self, topic: &str, leader: BrokerId, follower: BrokerId) {
        self.local.kill(Role::Broker(leader)).unwrap();
        self.local.start(Role::Broker(follower)).unwrap();
        self.await_describe(topic, 50, |d| {
            d["partitions"][0]["leader"].is_null()
                && d["brokers"].as_array().is_some_and(|bs| {
                    bs.iter()
                        .any(|b| b["id"].as_u64() == Some(u64::from(follower)) && b["live"] == true)
                })
        });
    }

    /// Stops a node cleanly and returns the counters of its stop line.
    fn stop_counters(&mut self, node: Role) -> BTreeMap<String, u64> {
        self.local.stop(node).expect("the node stops");
        self.local
            .counters(node)
            .unwrap_or_else(|| panic!("{} printed no stop line", node.name()))
    }
}

/// Produces `values` to `topic` with acks=all and idempotence through `cluster.bootstrap`, and
/// kill -9s `victim` once acknowledgements flow (after the first 1,000 bytes of output). Asserts
/// that every record was acknowledged and the kill happened; returns the producer's output.
fn produce_killing(cluster: &mut Cluster, topic: &str, values: &str, victim: Role) -> String {
    let mut producer = watermark()
        .args(["produce", topic, "--acks", "all", "--idempotent"])
        .args([
            "--delivery-timeout-ms",
            "60000",
            "--bootstrap-server",
            &cluster.bootstrap,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = producer.stdin.take().unwrap();
    let feed = values.to_string();
    let writer = std::thread::spawn(move || input.write_all(feed.as_bytes()));
    let mut reader = BufReader::new(producer.stdout.take().unwrap());
    let mut out = String::new();
    let mut killed = false;
    for _ in 0..=values.lines().count() {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        out += &line;
        if !killed && out.len() > 1_000 {
            cluster.local.kill(victim).unwrap();
            killed = true;
        }
    }
    writer.join().unwrap().unwrap();
    let result = producer.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "every record acknowledged with {} killed: {}",
        victim.name(),
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(killed);
    out
}

fn lines(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}-{i:06}\n")).collect()
}

/// Parses `produce` output: one `partition offset` per acknowledged record, in record order.
fn acks(out: &str) -> Vec<(u32, u64)> {
    out.lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap().parse().unwrap(),
                w.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Parses `consume --json` output into (partition, offset) -> value, asserting no position twice.
fn consumed(out: &str) -> BTreeMap<(u32, u64), String> {
    let mut map = BTreeMap::new();
    for l in out.lines() {
        let j: Json = serde_json::from_str(l).unwrap();
        let key = (
            j["partition"].as_u64().unwrap() as u32,
            j["offset"].as_u64().unwrap(),
        );
        let value = j["value"].as_str().unwrap().to_string();
        assert!(
            map.insert(key, value).is_none(),
            "offset {key:?} read twice"
        );
    }
    map
}

fn consume_all(cluster: &Cluster, topic: &str, n: usize) -> BTreeMap<(u32, u64), String> {
    let max = n.to_string();
    consumed(&cluster.ok(
        &[
            "consume",
            topic,
            "--from-beginning",
            "--json",
            "--max",
            &max,
            "--timeout-ms",
            "10000",
        ],
        "",
    ))
}

/// Checks that what was read is exactly what was acknowledged, and that each partition's
/// offsets run from 0 without a gap.
fn assert_read_back(values: &str, acked: &[(u32, u64)], read: &BTreeMap<(u32, u64), String>) {
    let values: Vec<&str> = values.lines().collect();
    assert_eq!(acked.len(), values.len(), "every record acknowledged");
    let expected: BTreeMap<(u32, u64), String> = acked
        .iter()
        .zip(&values)
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    assert_eq!(expected.len(), values.len(), "no offset acknowledged twice");
    assert_eq!(read, &expected);
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, o) in read.keys() {
        let n = next.entry(*p).or_insert(0);
        assert_eq!(*o, *n, "partition {p} is gapless");
        *n += 1;
    }
}

// --- Hand-made messages, one helper per message kind, so that a change of fields is made once.

fn produce_request(tp: &TopicPartition, leader_epoch: LeaderEpoch, value: &str) -> Msg {
    Msg::Produce(ProduceRequest {
        topic_partition: tp.clone(),
        acks: Acks::Leader,
        leader_epoch,
        records: Arc::from(vec![Record {
            value: Value(value.as_bytes().to_vec().into()),
            producer: None,
        }]),
        batch: 1,
        attempt: 1,
    })
}

fn leader_and_isr(
    controller_epoch: ControllerEpoch,
    broker_epoch: BrokerEpoch,
    partitions: Vec<PartitionState>,
) -> Msg {
    Msg::LeaderAndIsr {
        controller_epoch,
        broker_epoch,
        // The whole table, as a restarted controller pushes it.
        base_metadata_offset: None,
        metadata_offset: 1,
        partitions: partitions.into(),
    }
}

fn follower_fetch(
    tp: &TopicPartition,
    replica_id: BrokerId,
    broker_epoch: BrokerEpoch,
    fetch_offset: Offset,
    leader_epoch: LeaderEpoch,
) -> Msg {
    Msg::Fetch(FetchRequest {
        topic_partition: tp.clone(),
        replica_id: Some(replica_id),
        broker_epoch,
        fetch_offset,
        last_fetched_epoch: Some(leader_epoch),
        current_leader_epoch: Some(leader_epoch),
        fetch_bytes_max: 64 * 1024,
        high_watermark: 0,
    })
}

fn describe_topics(topic: &str) -> Msg {
    Msg::DescribeTopics {
        topic: Some(Topic::new(topic)),
        client: None,
    }
}

fn encode(msg: &Msg) -> Vec<u8> {
    let mut buf = Vec::new();
    codec::encode(msg, &mut buf).unwrap();
    buf
}

/// A socket that speaks the transport by hand, as a client (or a forger) would.
struct Raw {
    socket: UdpSocket,
    local: SocketAddrV4,
    transport: Transport,
}

impl Raw {
    fn bind(local: &str) -> Raw {
        let socket = UdpSocket::bind(local).unwrap();
        let SocketAddr::V4(local) = socket.local_addr().unwrap() else {
            unreachable!("IPv4")
        };
        Raw {
            socket,
            local,
            transport: Transport::new(TransportConfig::client(incarnation::clock())),
        }
    }

    fn send_bytes(&self, bytes: &[u8], to: SocketAddrV4) {
        self.socket.send_to(bytes, to).unwrap();
    }

    fn send_all(&self, datagrams: &mut Vec<Datagram>) {
        for d in datagrams.drain(..) {
            self.send_bytes(&d.bytes, d.to);
        }
    }

    /// `msg`'s datagrams to `to`, stamped with the session `to` gave this socket, not sent.
    /// On first contact, the handshake runs over the socket first (one round trip).
    fn stamped(&mut self, to: SocketAddrV4, msg: &Msg) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.transport
            .send(self.local, to, &encode(msg), &mut out)
            .unwrap();
        let header = transport::parse(&out[0].bytes).unwrap().header;
        if header.receiver_session != 0 {
            return out.into_iter().map(|d| d.bytes).collect();
        }
        self.send_all(&mut out);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 65_536];
        self.socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while Instant::now() < deadline {
            let Ok((len, SocketAddr::V4(from))) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let mut resent = Vec::new();
            self.transport
                .receive(self.local, from, &buf[..len], &mut resent);
            let stamped: Vec<Vec<u8>> = resent
                .iter()
                .filter(|d| d.to == to)
                .map(|d| d.bytes.clone())
                .collect();
            if !stamped.is_empty() {
                return stamped;
            }
        }
        panic!("{to} never answered the first contact");
    }

    /// Messages delivered to this socket within `wait`, answering the transport's needs
    /// (Resets) on the way.
    fn receive_for(&mut self, wait: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        let mut msgs = Vec::new();
        self.socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        while Instant::now() < deadline {
            let Ok((len, SocketAddr::V4(from))) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let mut out = Vec::new();
            if let Received::Deliver { payload, .. } =
                self.transport
                    .receive(self.local, from, &buf[..len], &mut out)
            {
                msgs.push(codec::decode::<Msg>(&payload).unwrap());
            }
            self.send_all(&mut out);
        }
        msgs
    }
}

/// A datagram as a node would send it once past the handshake: from a sender incarnation newer
/// than any real one, stamped with the receiver's current session (its incarnation, read from
/// its directory), tagged with `key` if any.
fn forged_datagram(
    cluster: &Cluster,
    receiver: Role,
    from: SocketAddrV4,
    msg: &Msg,
    key: Option<&Key>,
) -> Vec<u8> {
    let session: u64 = std::fs::read_to_string(
        cluster
            .local
            .node_dir(receiver)
            .join(incarnation::FILE_NAME),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let to = cluster.local.address(receiver).unwrap();
    let header = Header {
        flags: 0,
        sender_incarnation: u64::MAX - 1,
        receiver_session: session,
        reply_session: 0,
        sequence: 1,
        fragment_index: 0,
        fragment_count: 1,
    };
    transport::encode_datagram(&header, &encode(msg), key.map(|k| (k, from, to)))
}

fn list_offsets(cluster: &Cluster, broker: BrokerId, tp: &TopicPartition) -> ReplicaOffsets {
    client::list_offsets(cluster.local.address(Role::Broker(broker)).unwrap(), tp).unwrap()
}

/// Polls ListOffsets on `broker` until `pred` holds, for at most `wait`; the last answer.
fn await_offsets(
    cluster: &Cluster,
    broker: BrokerId,
    tp: &TopicPartition,
    wait: Duration,
    pred: impl Fn(&ReplicaOffsets) -> bool,
) -> ReplicaOffsets {
    let deadline = Instant::now() + wait;
    loop {
        let o = list_offsets(cluster, broker, tp);
        if pred(&o) || Instant::now() >= deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn u32_list(j: &Json) -> Vec<u32> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn ten_thousand_records_with_acks_all_read_back_identical_and_gapless() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(dir.path(), &options());
    let out = cluster.create_topic("orders", 3, Some(2));
    assert_eq!(out, "Created topic orders.\n");
    let values = lines(10_000, "order");
    let acked = acks(&cluster.ok(&["produce", "orders", "--acks", "all"], &values));
    assert_eq!(
        acked.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>().len(),
        3,
        "records spread over the partitions"
    );
    let read = consume_all(&cluster, "orders", 10_000);
    assert_read_back(&values, &acked, &read);
    let d = cluster.describe("orders");
    let mut ends = BTreeMap::new();
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["isr"].as_array().unwrap().len(), 3);
        assert_eq!(p["high_watermark"], p["log_end_offset"]);
        ends.insert(
            p["partition"].as_u64().unwrap() as u32,
            p["high_watermark"].as_u64().unwrap(),
        );
    }

    // Without --from-beginning, a consumer starts at each partition's high watermark
    // (auto.offset.reset=latest): it reads what is written after it started, from there.
    let bootstrap = cluster.bootstrap.clone();
    let latest = std::thread::spawn(move || {
        watermark()
            .args(["consume", "orders", "--json", "--max", "300"])
            .args(["--timeout-ms", "10000", "--bootstrap-server", &bootstrap])
            .output()
            .unwrap()
    });
    // Time for it to look its start offsets up; one that looked late would miss records and
    // stop short of 300 at its timeout.
    std::thread::sleep(Duration::from_secs(2));
    let more = lines(300, "later");
    let acked_more = acks(&cluster.ok(&["produce", "orders", "--acks", "all"], &more));
    let out = latest.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = consumed(&String::from_utf8(out.stdout).unwrap());
    let expected: BTreeMap<(u32, u64), String> = acked_more
        .iter()
        .zip(more.lines())
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    assert_eq!(
        read, expected,
        "exactly the records written after it started"
    );
    for (p, o) in read.keys() {
        assert!(
            *o >= ends[p],
            "partition {p}: offset {o} is below the start {}",
            ends[p]
        );
    }
}

#[test]
fn a_broker_fed_garbage_keeps_serving_and_counts_what_it_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("t", 1, None);
    let broker = cluster.local.address(Role::Broker(1)).unwrap();
    // A well-formed LeaderAndIsr from a stranger, past the handshake like any client.
    let mut stranger = Raw::bind("127.0.0.1:0");
    let valid = stranger.stamped(broker, &leader_and_isr(99, 0, Vec::new()));
    let mut wrong_version = valid[0].clone();
    wrong_version[0] = 200;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![2],
        b"hello, broker".to_vec(),
        wrong_version,
        valid[0][..valid[0].len() - 1].to_vec(),
        vec![0xAB; 65_000],
    ];
    for _ in 0..10 {
        for g in &garbage {
            stranger.send_bytes(g, broker);
        }
    }
    stranger.send_bytes(&valid[0], broker);
    let values = lines(500, "after-garbage");
    let acked = acks(&cluster.ok(&["produce", "t"], &values));
    let read = consume_all(&cluster, "t", 500);
    assert_read_back(&values, &acked, &read);
    let counters = cluster.stop_counters(Role::Broker(1));
    assert!(
        counters["dropped_malformed"] >= 60,
        "malformed datagrams counted: {counters:?}"
    );
    assert!(
        counters["dropped_unknown_sender"] >= 1,
        "the stranger's LeaderAndIsr counted: {counters:?}"
    );
}

#[test]
fn a_restarted_cluster_reads_everything_back_from_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let values = lines(3_000, "durable");
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("d", 3, None);
    let acked = acks(&cluster.ok(&["produce", "d"], &values));
    let stopped = cluster.local.stop_all();
    assert_eq!(stopped.len(), 4);
    assert!(stopped.iter().all(|(_, s)| s.success()), "{stopped:?}");
    cluster.local.start_all().unwrap();
    let read = consume_all(&cluster, "d", 3_000);
    assert_read_back(&values, &acked, &read);
}

#[test]
fn kill_9_of_a_leader_mid_produce_loses_no_acknowledged_record_and_it_rejoins_the_isr() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("k", 1, Some(2));
    let d = cluster.await_describe("k", 50, |d| d["partitions"][0]["leader"].is_u64());
    let leader = d["partitions"][0]["leader"].as_u64().unwrap() as u32;

    // Produce through a broker that survives, and kill the leader once acks are flowing.
    let other = (1..=3).find(|b| *b != leader).unwrap();
    cluster.bootstrap = cluster
        .local
        .address(Role::Broker(other))
        .unwrap()
        .to_string();
    let values: String = (0..60_000).map(|i| format!("{i:0100}\n")).collect();
    let out = produce_killing(&mut cluster, "k", &values, Role::Broker(leader));
    let acked = acks(&out);

    // A new leader in a new epoch serves every acknowledged record exactly once.
    let d = cluster.await_describe("k", 50, |d| {
        d["partitions"][0]["leader"]
            .as_u64()
            .is_some_and(|l| l as u32 != leader)
    });
    assert!(d["partitions"][0]["leader_epoch"].as_u64().unwrap() >= 1);
    let read = consume_all(&cluster, "k", 60_000);
    assert_read_back(&values, &acked, &read);

    // The old leader restarts on its directory, truncates whatever diverged, and rejoins.
    cluster.local.start(Role::Broker(leader)).unwrap();
    let d = cluster.await_describe("k", 100, |d| {
        d["partitions"][0]["isr"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.as_u64() == Some(u64::from(leader)))
    });
    let leo = d["partitions"][0]["log_end_offset"].as_u64().unwrap();
    let tp = TopicPartition::new(&Topic::new("k"), 0);
    let o = await_offsets(&cluster, leader, &tp, Duration::from_secs(10), |o| {
        o.log_end_offset == leo
    });
    assert_eq!(
        o.log_end_offset, leo,
        "the restarted broker's log ends where the leader's does"
    );
}

#[test]
fn a_duplicated_produce_datagram_is_appended_once_and_a_stale_one_not_at_all() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("dup", 1, None);
    let p = cluster.await_full_isr("dup");
    let leader = p["leader"].as_u64().unwrap() as u32;
    let epoch = p["leader_epoch"].as_u64().unwrap() as u32;
    let leader_address = cluster.local.address(Role::Broker(leader)).unwrap();
    let tp = TopicPartition::new(&Topic::new("dup"), 0);

    // The same bytes twice, as a duplicating network would deliver them.
    let mut client = Raw::bind("127.0.0.1:0");
    let once = client.stamped(leader_address, &produce_request(&tp, epoch, "once"));
    assert_eq!(once.len(), 1);
    client.send_bytes(&once[0], leader_address);
    client.send_bytes(&once[0], leader_address);
    let responses = client.receive_for(Duration::from_secs(1));
    let acked: Vec<&Msg> = responses
        .iter()
        .filter(|m| matches!(m, Msg::ProduceResponse(r) if r.result == Ok(0)))
        .collect();
    assert_eq!(acked.len(), 1, "one append, one answer: {responses:?}");

    // A newer message, then an older one the network held back: the older one is dropped.
    let older = client.stamped(leader_address, &produce_request(&tp, epoch, "held back"));
    let newer = client.stamped(leader_address, &produce_request(&tp, epoch, "newer"));
    client.send_bytes(&newer[0], leader_address);
    client.receive_for(Duration::from_millis(300));
    client.send_bytes(&older[0], leader_address);
    client.receive_for(Duration::from_millis(300));

    let o = await_offsets(&cluster, leader, &tp, Duration::from_secs(2), |o| {
        o.high_watermark == 2
    });
    assert_eq!(o.log_end_offset, 2, "'once' once and 'newer': {o:?}");
    let read = consume_all(&cluster, "dup", 2);
    let values: Vec<&str> = read.values().map(String::as_str).collect();
    assert_eq!(values, ["once", "newer"]);
    let counters = cluster.stop_counters(Role::Broker(leader));
    assert!(counters["dropped_duplicate"] >= 1, "{counters:?}");
    assert!(counters["dropped_stale"] >= 1, "{counters:?}");
}

#[test]
fn a_leader_and_isr_forged_from_the_controllers_address_without_the_key_is_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("forge", 1, None);
    let p = cluster.await_full_isr("forge");
    let leader = p["leader"].as_u64().unwrap() as u32;
    let target = (1..=3).find(|b| *b != leader).unwrap();
    let tp = TopicPartition::new(&Topic::new("forge"), 0);
    let before = list_offsets(&cluster, target, &tp);
    assert!(!before.is_leader);

    // The controller stops; the forger takes its address.
    let controller = cluster.local.address(Role::Controller(1)).unwrap();
    cluster.local.stop(Role::Controller(1)).unwrap();
    let forger = Raw::bind(&controller.to_string());
    let epoch = p["leader_epoch"].as_u64().unwrap() as u32 + 7;
    let coup = leader_and_isr(
        1_000_000,
        0, // the target's first incarnation's broker epoch
        vec![PartitionState {
            topic_partition: tp.clone(),
            leader: Some(target),
            leader_epoch: epoch,
            partition_epoch: p["partition_epoch"].as_u64().unwrap() as u32 + 7,
            isr: u32_list(&p["isr"]).into(),
            elr: Default::default(),
            replicas: u32_list(&p["replicas"]).into(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }],
    );
    let target_role = Role::Broker(target);
    let wrong_key = Key::from_bytes([7; 32]);
    for key in [None, Some(&wrong_key)] {
        let datagram = forged_datagram(&cluster, target_role, controller, &coup, key);
        forger.send_bytes(&datagram, cluster.local.address(target_role).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = list_offsets(&cluster, target, &tp);
    assert_eq!(after, before, "the broker took no orders from the forger");

    // The same coup signed with the cluster's key would succeed: the check above is not vacuous.
    let key = cluster.local.file().cluster_key.clone().unwrap();
    let datagram = forged_datagram(&cluster, target_role, controller, &coup, Some(&key));
    forger.send_bytes(&datagram, cluster.local.address(target_role).unwrap());
    let o = await_offsets(&cluster, target, &tp, Duration::from_secs(2), |o| {
        o.is_leader
    });
    assert!(o.is_leader && o.leader_epoch == epoch, "{o:?}");

    let counters = cluster.stop_counters(target_role);
    assert_eq!(counters["dropped_unauthenticated"], 2, "{counters:?}");
}

#[test]
fn a_follower_fetch_forged_from_a_dead_followers_address_does_not_advance_the_high_watermark() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // A long session timeout and no ISR shrink by the leader: only the forged fetch could move
    // the high watermark within the test.
    let mut options = options();
    options.timing_ms.session_timeout = 8000;
    options.timing_ms.isr_shrink_interval = 600_000;
    let mut cluster = Cluster::up(dir.path(), &options);
    cluster.create_topic("hw", 1, None);
    let p = cluster.await_full_isr("hw");
    let leader = p["leader"].as_u64().unwrap() as u32;
    let epoch = p["leader_epoch"].as_u64().unwrap() as u32;
    let followers: Vec<u32> = (1..=3).filter(|b| *b != leader).collect();
    let (dead, alive) = (followers[0], followers[1]);
    let tp = TopicPartition::new(&Topic::new("hw"), 0);
    cluster.ok(&["produce", "hw", "--acks", "all"], "first\n");

    // The follower dies while in the ISR; the leader and the other follower move on.
    cluster.local.kill(Role::Broker(dead)).unwrap();
    let killed_at = Instant::now();
    cluster.ok(&["produce", "hw", "--acks", "1"], &lines(5, "later"));
    let o = await_offsets(&cluster, alive, &tp, Duration::from_secs(2), |o| {
        o.log_end_offset == 6
    });
    assert_eq!(o.log_end_offset, 6);
    assert_eq!(list_offsets(&cluster, leader, &tp).high_watermark, 1);

    // The forger fetches at the leader's LEO as the dead follower, from its address.
    let dead_address = cluster.local.address(Role::Broker(dead)).unwrap();
    let forger = Raw::bind(&dead_address.to_string());
    let fetch = follower_fetch(&tp, dead, 0, 6, epoch);
    let leader_role = Role::Broker(leader);
    let leader_address = cluster.local.address(leader_role).unwrap();
    let wrong_key = Key::from_bytes([7; 32]);
    for key in [None, Some(&wrong_key)] {
        let datagram = forged_datagram(&cluster, leader_role, dead_address, &fetch, key);
        forger.send_bytes(&datagram, leader_address);
    }
    std::thread::sleep(Duration::from_millis(500));
    let o = list_offsets(&cluster, leader, &tp);
    assert_eq!(o.high_watermark, 1, "the forged fetch moved nothing: {o:?}");

    // Signed with the cluster's key, the same fetch would commit the records: not vacuous.
    let key = cluster.local.file().cluster_key.clone().unwrap();
    let datagram = forged_datagram(&cluster, leader_role, dead_address, &fetch, Some(&key));
    forger.send_bytes(&datagram, leader_address);
    let o = await_offsets(&cluster, leader, &tp, Duration::from_secs(2), |o| {
        o.high_watermark == 6
    });
    assert_eq!(o.high_watermark, 6, "{o:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(7),
        "all within the session timeout, so the ISR never shrank"
    );
    let counters = cluster.stop_counters(leader_role);
    assert_eq!(counters["dropped_unauthenticated"], 2, "{counters:?}");
}

#[test]
fn a_topic_whose_metadata_spans_many_datagrams_is_created_described_and_served() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Large metadata from few partitions: the longest legal topic name (thousands of
    // partitions are the next test's). A session timeout a busy machine cannot miss keeps
    // brokers unfenced.
    let mut options = options();
    options.timing_ms.session_timeout = 10_000;
    let cluster = Cluster::up(dir.path(), &options);
    let topic: String = "long-".repeat(50)[..249].to_string();
    let partitions_count = 600;
    assert_eq!(
        cluster.create_topic(&topic, partitions_count, None),
        format!("Created topic {topic}.\n")
    );
    let bootstrap = cluster.local.bootstrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (partitions, bytes) = loop {
        let (partitions, bytes) = client::request(bootstrap, &describe_topics(&topic), |m| {
            let bytes = encode(&m).len();
            match m {
                Msg::DescribeTopicsResponse { partitions, .. } => Some((partitions, bytes)),
                _ => None,
            }
        })
        .unwrap();
        let led = partitions.iter().filter(|p| p.leader.is_some()).count();
        if led == partitions_count as usize || Instant::now() >= deadline {
            break (partitions, bytes);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(partitions.len(), partitions_count as usize);
    assert!(partitions.iter().all(|p| p.leader.is_some()));
    assert!(
        bytes > 2 * transport::DATAGRAM_BYTES_MAX,
        "the answer spans several datagrams: {bytes} bytes"
    );
    // Metadata (as large) reaches the clients, and the LeaderAndIsr (as large) reached the
    // brokers: the last partition takes records (idempotently: a retry must not append twice).
    let last = (partitions_count - 1).to_string();
    let acked = acks(&cluster.ok(
        &["produce", &topic, "--partition", &last, "--idempotent"],
        "last\n",
    ));
    assert_eq!(acked, vec![(partitions_count - 1, 0)]);
}

#[test]
fn with_every_datagram_duplicated_and_delayed_records_are_read_back_exactly_once_in_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"seed": 1, "rules": [{"from": "*", "to": "*", "duplicate": 1.0, "delay_ms": [0, 3]}]}"#,
    )
    .unwrap();
    let mut options = options();
    options.faults = Some(faults);
    options.timing_ms.session_timeout = 3000;
    let mut cluster = Cluster::up(dir.path(), &options);
    cluster.create_topic("f", 3, Some(2));
    let values = lines(2_000, "faulty");
    let acked = acks(&cluster.ok(
        &[
            "produce",
            "f",
            "--acks",
            "all",
            "--delivery-timeout-ms",
            "60000",
        ],
        &values,
    ));
    let read = consume_all(&cluster, "f", 2_000);
    assert_read_back(&values, &acked, &read);
    let mut delayed = 0;
    let mut dropped_duplicate = 0;
    for b in 1..=3 {
        let c = cluster.stop_counters(Role::Broker(b));
        assert!(c["datagrams_sent"] > 0);
        assert_eq!(
            c["fault_duplicated"], c["datagrams_sent"],
            "every datagram broker {b} sent went out twice: {c:?}"
        );
        delayed += c["fault_delayed"];
        dropped_duplicate += c["dropped_duplicate"];
    }
    assert!(delayed > 0, "some copies were held back");
    assert!(
        dropped_duplicate > 0,
        "the transport dropped the copies: {dropped_duplicate}"
    );
}

// --- Defects of the network the model did not check (issue 9), each with the fault that made it.

/// Runs `f` on a thread of its own in a new network namespace whose loopback is up, so that
/// the processes it starts, and the iptables rules it adds, touch nothing outside it. Needs root
/// (CI runs as root; `.ci/run` installs iptables).
fn in_network_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) moves this thread alone into a new network namespace; the
        // processes it starts from here inherit it.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed (this test needs root): {}",
            std::io::Error::last_os_error()
        );
        command("ip", &["link", "set", "lo", "up"]);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs a system command, failing the test with its output if it fails.
fn command(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The iptables arguments of a rule that drops every UDP datagram from `from` to `to`.
fn cut(from: SocketAddrV4, to: SocketAddrV4) -> Vec<String> {
    [
        "OUTPUT",
        "-p",
        "udp",
        "-s",
        &from.ip().to_string(),
        "--sport",
        &from.port().to_string(),
        "-d",
        &to.ip().to_string(),
        "--dport",
        &to.port().to_string(),
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn iptables(action: &str, rule: &[String]) {
    let mut args = vec![action];
    args.extend(rule.iter().map(String::as_str));
    command("iptables", &args);
}

/// Defect 1 of issue 9: the controller sent each change once, so a LeaderAndIsr lost in a
/// failover left its broker following the dead leader for good (over 190 s in the report), out
/// of the ISR, and serving consumers nothing. Now the broker's next heartbeat pulls what it
/// lacks (R49).
#[test]
fn a_leader_and_isr_lost_in_a_failover_is_repaired_by_the_next_heartbeat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    in_network_namespace(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options();
        options.timing_ms.isr_shrink_interval = 2000;
        let mut cluster = Cluster::up(dir.path(), &options);
        cluster.create_topic("t", 1, Some(2));
        let p = cluster.await_full_isr("t");
        assert_eq!(
            p["leader"].as_u64(),
            Some(1),
            "partition 0 starts on broker 1"
        );
        let before = lines(100, "before");
        let mut acked = acks(&cluster.ok(&["produce", "t", "--acks", "all"], &before));

        // Every datagram from the controller to broker 3 is lost; the leader dies.
        let controller = cluster.local.address(Role::Controller(1)).unwrap();
        let broker3 = cluster.local.address(Role::Broker(3)).unwrap();
        let rule = cut(controller, broker3);
        iptables("-A", &rule);
        cluster.local.kill(Role::Broker(1)).unwrap();
        cluster.bootstrap = cluster.local.address(Role::Broker(2)).unwrap().to_string();
        std::thread::sleep(Duration::from_secs(6));
        let tp = TopicPartition::new(&Topic::new("t"), 0);
        let d = cluster.describe("t");
        assert_eq!(d["partitions"][0]["leader"].as_u64(), Some(2));
        assert_eq!(
            list_offsets(&cluster, 3, &tp).leader_epoch,
            0,
            "broker 3 missed the new leader epoch: the fault was real"
        );

        // Healed, broker 3 learns leader epoch 1 within a few heartbeats, rejoins the ISR, and
        // acks=all and consumers through it work again.
        iptables("-D", &rule);
        let o = await_offsets(&cluster, 3, &tp, Duration::from_secs(5), |o| {
            o.leader_epoch >= 1
        });
        assert!(o.leader_epoch >= 1, "broker 3 still in leader epoch 0");
        cluster.await_describe("t", 75, |d| {
            u32_list(&d["partitions"][0]["isr"]).contains(&3)
        });
        let after = lines(10, "after");
        acked.extend(acks(
            &cluster.ok(&["produce", "t", "--acks", "all"], &after),
        ));
        cluster.bootstrap = broker3.to_string();
        let read = consume_all(&cluster, "t", 110);
        assert_read_back(&(before + &after), &acked, &read);
    });
}

/// Defect 4 of issue 9: an ISR change the leader asked for (AlterPartition) reached only that
/// leader, so the other brokers answered Metadata with a stale ISR for good. Now every broker
/// pulls it with its next heartbeat (R49, R50).
#[test]
fn every_broker_learns_an_isr_change_not_only_the_leader() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("t", 1, Some(2));
    cluster.await_full_isr("t");
    cluster.ok(&["produce", "t", "--acks", "all"], &lines(50, "v"));
    let addresses: BTreeMap<BrokerId, SocketAddrV4> = (1..=3)
        .map(|b| (b, cluster.local.address(Role::Broker(b)).unwrap()))
        .collect();
    let isr_at = |broker: BrokerId| -> Vec<BrokerId> {
        client::metadata(addresses[&broker], "t")
            .unwrap()
            .partitions[0]
            .isr
            .to_vec()
    };
    // Broker 3 dies and the controller drops it from the ISR (pushed to every broker); it
    // restarts and the leader adds it back (AlterPartition, answered to the leader alone).
    cluster.local.kill(Role::Broker(3)).unwrap();
    cluster.await_describe("t", 50, |d| u32_list(&d["partitions"][0]["isr"]).len() == 2);
    cluster.local.start(Role::Broker(3)).unwrap();
    cluster.await_full_isr("t");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stale = Vec::new();
    for broker in [2, 3] {
        let mut isr = isr_at(broker);
        while isr.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            isr = isr_at(broker);
        }
        if isr.len() < 3 {
            stale.push((broker, isr));
        }
    }
    assert!(stale.is_empty(), "brokers answering a stale ISR: {stale:?}");
}

/// Defect 3 of issue 9: a topic too big for one datagram was "created", then `describe` timed
/// out and a restarted broker left an unrelated topic's replicas recovering. Now 4,000
/// partitions work end to end, and the small topic beside them is unharmed.
#[test]
fn a_topic_of_four_thousand_partitions_works_end_to_end_and_breaks_nothing_beside_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut options = options();
    options.timing_ms.session_timeout = 3000;
    let mut cluster = Cluster::up(dir.path(), &options);
    cluster.create_topic("small", 3, Some(2));
    assert_eq!(
        cluster.create_topic("big", 4000, Some(2)),
        "Created topic big.\n"
    );
    let all_in_sync = |d: &Json, n: usize| {
        let ps = d["partitions"].as_array().unwrap();
        ps.len() == n
            && ps
                .iter()
                .all(|p| p["leader"].is_u64() && p["isr"].as_array().unwrap().len() == 3)
    };
    cluster.await_describe("big", 150, |d| all_in_sync(d, 4000));
    let big = lines(2000, "big");
    let big_acked = acks(&cluster.ok(&["produce", "big", "--acks", "all"], &big));
    assert_eq!(big_acked.len(), 2000);
    let last = acks(&cluster.ok(
        &["produce", "big", "--acks", "all", "--partition", "3999"],
        "last\n",
    ));
    assert_eq!(last, vec![(3999, 0)]);
    let before = lines(300, "before");
    let mut acked = acks(&cluster.ok(&["produce", "small", "--acks", "all"], &before));

    // Broker 2 dies: its leaderships move and every ISR shrinks, 4,003 partitions at once;
    // acks=all goes on with brokers 1 and 3.
    cluster.local.kill(Role::Broker(2)).unwrap();
    cluster.bootstrap = cluster.local.address(Role::Broker(3)).unwrap().to_string();
    cluster.await_describe("small", 75, |d| {
        d["partitions"].as_array().unwrap().iter().all(|p| {
            p["leader"].as_u64().is_some_and(|l| l != 2) && p["isr"].as_array().unwrap().len() == 2
        })
    });
    let during = lines(100, "during");
    acked.extend(acks(
        &cluster.ok(&["produce", "small", "--acks", "all"], &during),
    ));

    // It restarts on its directory and every partition of both topics is fully in sync again.
    cluster.local.start(Role::Broker(2)).unwrap();
    cluster.await_describe("big", 150, |d| all_in_sync(d, 4000));
    cluster.await_describe("small", 75, |d| all_in_sync(d, 3));
    let read = consume_all(&cluster, "small", 400);
    assert_read_back(&(before + &during), &acked, &read);
}

/// `--bootstrap-server` takes a list, as Kafka's tools do: with the first entry dead, the next
/// one serves every tool; with none alive, a clear error and status 2.
#[test]
fn a_bootstrap_list_whose_first_broker_is_dead_still_serves_every_tool() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &options());
    cluster.create_topic("b", 1, Some(2));
    cluster.await_full_isr("b");
    let dead = cluster.local.address(Role::Broker(1)).unwrap();
    let live = cluster.local.address(Role::Broker(2)).unwrap();
    cluster.local.kill(Role::Broker(1)).unwrap();
    cluster.bootstrap = format!("{dead},{live}");
    let values = lines(200, "listed");
    let acked = acks(&cluster.ok(&["produce", "b"], &values));
    assert_eq!(acked.len(), 200);
    let read = consume_all(&cluster, "b", 200);
    assert_read_back(&values, &acked, &read);
    let d = cluster.describe("b");
    assert!(d["partitions"][0]["leader"].is_u64(), "{d}");
    cluster.create_topic("a", 1, None);
    assert_eq!(cluster.ok(&["topic", "list"], ""), "a\nb\n");

    cluster.bootstrap = format!("{dead}, {dead}");
    let out = cluster.run(&["describe"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none of the bootstrap servers") && err.contains("answered"),
        "{err}"
    );
}

#[test]
fn rack_drill_losing_a_whole_rack_leaves_every_partition_led_from_the_other_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Brokers 1, 2 in rack a and 3, 4 in rack b.
    let options = LocalOptions {
        brokers: 4,
        racks: ["a", "a", "b", "b"].map(String::from).to_vec(),
        ..options()
    };
    let mut cluster = Cluster::up(dir.path(), &options);
    cluster.ok(
        &[
            "topic",
            "create",
            "drill",
            "--partitions",
            "6",
            "--replication-factor",
            "2",
        ],
        "",
    );
    let d = cluster.await_describe("drill", 50, |d| {
        d["partitions"].as_array().is_some_and(|ps| {
            ps.len() == 6
                && ps
                    .iter()
                    .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 2))
        })
    });
    let rack_of: BTreeMap<u64, String> = d["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_u64().unwrap(),
                b["rack"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rack_of.values().filter(|r| *r == "a").count(), 2, "{d}");
    for p in d["partitions"].as_array().unwrap() {
        let racks: BTreeSet<&String> = u32_list(&p["replicas"])
            .iter()
            .map(|b| &rack_of[&u64::from(*b)])
            .collect();
        assert_eq!(
            racks.len(),
            2,
            "partition {} spans both racks: {p}",
            p["partition"]
        );
    }
    // Leaders are balanced at creation: 6 partitions over 4 brokers, 1 or 2 each.
    let counts: Vec<u64> = d["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["leader_count"].as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|c| (1..=2).contains(c)), "{counts:?}");
    // The text output names each broker's rack.
    let text = cluster.ok(&["describe", "--topic", "drill"], "");
    assert!(
        text.contains("\tRack: a\t") && text.contains("\tRack: b\t"),
        "{text}"
    );

    let values = lines(600, "drill");
    let acked = acks(&cluster.ok(&["produce", "drill", "--acks", "all"], &values));
    // Rack a goes dark: kill -9 of both of its brokers.
    cluster.local.kill(Role::Broker(1)).unwrap();
    cluster.local.kill(Role::Broker(2)).unwrap();
    cluster.bootstrap = cluster.local.address(Role::Broker(3)).unwrap().to_string();
    let d = cluster.await_describe("drill", 100, |d| {
        d["partitions"].as_array().is_some_and(|ps| {
            ps.iter()
                .all(|p| p["leader"].as_u64().is_some_and(|l| l == 3 || l == 4))
        })
    });
    for p in d["partitions"].as_array().unwrap() {
        let leader = p["leader"].as_u64().unwrap();
        assert_eq!(rack_of[&leader], "b", "{p}");
    }
    let read = consume_all(&cluster, "drill", 600);
    assert_read_back(&values, &acked, &read);
}

#[test]
fn leader_election_on_demand_moves_leadership_back_and_elects_uncleanly_when_asked() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // No automatic preferred election during the test: the command is what moves the leader.
    let mut cluster = Cluster::up(dir.path(), &failover_options());
    cluster.create_topic("pref", 1, Some(2));
    let p = cluster.await_full_isr("pref");
    let preferred = u32_list(&p["replicas"])[0];
    assert_eq!(p["leader"].as_u64(), Some(u64::from(preferred)));
    let other = (1..=3).find(|b| *b != preferred).unwrap();
    cluster.bootstrap = cluster
        .local
        .address(Role::Broker(other))
        .unwrap()
        .to_string();
    cluster.local.kill(Role::Broker(preferred)).unwrap();
    cluster.await_describe("pref", 50, |d| {
        d["partitions"][0]["leader"]
            .as_u64()
            .is_some_and(|l| l != u64::from(preferred))
    });
    cluster.local.start(Role::Broker(preferred)).unwrap();
    let p = cluster.await_full_isr("pref");
    assert_ne!(p["leader"].as_u64(), Some(u64::from(preferred)));

    let args = [
        "leader-election",
        "--election-type",
        "preferred",
        "--topic",
        "pref",
        "--partition",
        "0",
    ];
    let out = cluster.ok(&args, "");
    assert_eq!(
        out,
        format!(
            "Successfully completed leader election (PREFERRED) for partitions pref-0 (leader {preferred})\n"
        )
    );
    cluster.await_describe("pref", 50, |d| {
        d["partitions"][0]["leader"].as_u64() == Some(u64::from(preferred))
    });
    assert_eq!(
        cluster.ok(&args, ""),
        "Valid replica already elected for partitions pref-0\n"
    );

    // Unclean: RF=2, the follower dies (it leaves the ISR), then the leader, the last ISR
    // member: the partition is offline, and the follower's return does not change that.
    cluster.ok(
        &[
            "topic",
            "create",
            "dirty",
            "--partitions",
            "1",
            "--replication-factor",
            "2",
        ],
        "",
    );
    let p = cluster.await_describe("dirty", 50, |d| {
        d["partitions"][0]["isr"]
            .as_array()
            .is_some_and(|i| i.len() == 2)
    })["partitions"][0]
        .clone();
    let (leader, follower) = cluster.bootstrap_beside(&p);
    cluster.kill_follower("dirty", leader, follower);
    cluster.take_offline("dirty", leader, follower);
    // A preferred election cannot help: the preferred replica is dead.
    let refused = cluster.run(
        &[
            "leader-election",
            "--election-type",
            "preferred",
            "--topic",
            "dirty",
            "--partition",
            "0",
        ],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout),
        "Election (PREFERRED) failed for partitions dirty-0: PREFERRED_LEADER_NOT_AVAILABLE\n"
    );
    let out = cluster.ok(
        &[
            "leader-election",
            "--election-type",
            "unclean",
            "--all-topic-partitions",
        ],
        "",
    );
    assert!(
        out.contains(&format!(
            "Successfully completed leader election (UNCLEAN) for partitions dirty-0 (leader {follower})"
        )),
        "{out}"
    );
    assert!(
        out.contains("Valid replica already elected for partitions pref-0"),
        "{out}"
    );
    cluster.await_describe("dirty", 50, |d| {
        d["partitions"][0]["leader"].as_u64() == Some(u64::from(follower))
    });
    // Bad arguments: one clear line, status 2.
    let bad = watermark()
        .args([
            "leader-election",
            "--election-type",
            "sideways",
            "--all-topic-partitions",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an election type"));
}

#[test]
fn topic_configs_are_set_altered_applied_by_the_leader_and_enabling_unclean_election_elects() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &failover_options());
    cluster.ok(
        &[
            "topic",
            "create",
            "cfg",
            "--partitions",
            "1",
            "--replication-factor",
            "2",
            "--config",
            "min.insync.replicas=2",
        ],
        "",
    );
    let p = cluster.await_describe("cfg", 50, |d| {
        d["partitions"][0]["isr"]
            .as_array()
            .is_some_and(|i| i.len() == 2)
    })["partitions"][0]
        .clone();
    assert_eq!(p["min_insync_replicas"], 2);
    assert_eq!(p["unclean_leader_election"], false);
    // describe shows the configs that are not defaults; configs --describe shows all.
    let text = cluster.ok(&["describe", "--topic", "cfg"], "");
    assert!(
        text.contains("ReplicationFactor: 2\tConfigs: min.insync.replicas=2\n"),
        "{text}"
    );
    assert_eq!(
        cluster.ok(&["configs", "--describe", "--topic", "cfg"], ""),
        "Configs for topic cfg are:\n  min.insync.replicas=2\n  unclean.leader.election.enable=false (default)\n"
    );

    // The follower dies: the ISR is the leader alone, under min.insync.replicas=2, so an
    // acks=all write is refused (R18) until the config is lowered.
    let (leader, follower) = cluster.bootstrap_beside(&p);
    cluster.kill_follower("cfg", leader, follower);
    let refused = cluster.run(
        &[
            "produce",
            "cfg",
            "--acks",
            "all",
            "--delivery-timeout-ms",
            "1500",
        ],
        "a\n",
    );
    assert!(
        !refused.status.success(),
        "acks=all under min.insync.replicas"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "1 records were not acknowledged within delivery.timeout.ms=1500; the last error from a leader was NOT_ENOUGH_REPLICAS"
        ),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = cluster.ok(
        &[
            "configs",
            "--alter",
            "--topic",
            "cfg",
            "--add-config",
            "min.insync.replicas=1",
        ],
        "",
    );
    assert!(
        out.starts_with("Completed updating config for topic cfg.\n"),
        "{out}"
    );
    // The leader takes the pushed change: the same write now succeeds.
    let mut written = false;
    for _ in 0..20 {
        let o = cluster.run(
            &[
                "produce",
                "cfg",
                "--acks",
                "all",
                "--delivery-timeout-ms",
                "2000",
            ],
            "b\n",
        );
        if o.status.success() {
            written = true;
            break;
        }
    }
    assert!(written, "acks=all accepted at min.insync.replicas=1");

    // Then the leader, the last ISR member, dies and the follower returns: offline, until
    // unclean.leader.election.enable is turned on, which elects the follower at once.
    cluster.take_offline("cfg", leader, follower);
    cluster.ok(
        &[
            "configs",
            "--alter",
            "--topic",
            "cfg",
            "--add-config",
            "unclean.leader.election.enable=true",
        ],
        "",
    );
    let d = cluster.await_describe("cfg", 50, |d| {
        d["partitions"][0]["leader"].as_u64() == Some(u64::from(follower))
    });
    assert_eq!(d["partitions"][0]["unclean_leader_election"], true);
    let text = cluster.ok(&["describe", "--topic", "cfg"], "");
    assert!(
        text.contains("Configs: unclean.leader.election.enable=true\n"),
        "{text}"
    );
    // Deleting a config sets it back to its default.
    let json = cluster.ok(
        &[
            "configs",
            "--alter",
            "--topic",
            "cfg",
            "--delete-config",
            "unclean.leader.election.enable",
            "--json",
        ],
        "",
    );
    let v: Json = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["configs"]["unclean.leader.election.enable"], false);
    // An unknown topic: the controller says so.
    let bad = cluster.run(
        &[
            "configs",
            "--alter",
            "--topic",
            "nope",
            "--add-config",
            "min.insync.replicas=1",
        ],
        "",
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
}

/// One metric's value from a node's /metrics, or `None` if the node does not answer.
fn scrape(cluster: &Cluster, node: Role, metric: &str) -> Option<f64> {
    let address = cluster.local.metrics_address(node).expect("metrics are on");
    let response = minreq::get(format!("http://{address}/metrics"))
        .with_timeout(2)
        .send()
        .ok()?;
    assert_eq!(response.status_code, 200);
    let text = response.as_str().expect("UTF-8 metrics");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(metric))
        .unwrap_or_else(|| panic!("{metric} is not served by {}: {text}", node.name()));
    Some(line.split_whitespace().nth(1).unwrap().parse().unwrap())
}

/// The sum of `metric` over `brokers`, polled (200 ms apart, at most `tries` times) until `pred`
/// holds for it.
fn await_metric_sum(
    cluster: &Cluster,
    brokers: &[BrokerId],
    metric: &str,
    tries: u32,
    pred: impl Fn(f64) -> bool,
) -> f64 {
    let sum = || -> f64 {
        brokers
            .iter()
            .map(|b| scrape(cluster, Role::Broker(*b), metric).unwrap_or(0.0))
            .sum()
    };
    for _ in 0..tries {
        let v = sum();
        if pred(v) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{metric} over brokers {brokers:?} never satisfied the condition: {}",
        sum()
    );
}

#[test]
fn metrics_show_under_replicated_partitions_rise_on_kill_9_and_fall_after_the_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        metrics: true,
        timing_ms: TimingMs {
            session_timeout: 1000,
            ..TimingMs::default()
        },
        ..LocalOptions::default()
    };
    let mut cluster = Cluster::up(dir.path(), &options);
    cluster.create_topic("m", 3, Some(2));
    cluster.await_describe("m", 50, |d| {
        d["partitions"].as_array().is_some_and(|ps| {
            ps.len() == 3
                && ps
                    .iter()
                    .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
        })
    });
    const URP: &str = "kafka_server_replicamanager_underreplicatedpartitions";
    let all = [1, 2, 3];
    await_metric_sum(&cluster, &all, URP, 50, |v| v == 0.0);
    await_metric_sum(
        &cluster,
        &all,
        "kafka_server_replicamanager_leadercount",
        50,
        |v| v == 3.0,
    );
    await_metric_sum(
        &cluster,
        &all,
        "kafka_server_replicamanager_partitioncount",
        50,
        |v| v == 9.0,
    );
    assert_eq!(
        scrape(
            &cluster,
            Role::Controller(1),
            "kafka_controller_kafkacontroller_activecontrollercount"
        ),
        Some(1.0)
    );
    let out = cluster.ok(&["produce", "m", "--acks", "all"], &lines(300, "m"));
    assert_eq!(acks(&out).len(), 300);
    await_metric_sum(
        &cluster,
        &all,
        "kafka_server_brokertopicmetrics_messagesin_total",
        50,
        |v| v >= 300.0,
    );

    // kill -9 of broker 3: every partition (RF=3 on 3 brokers) loses a replica, and the live
    // brokers, leading all three, report them under-replicated.
    cluster.local.kill(Role::Broker(3)).unwrap();
    await_metric_sum(&cluster, &[1, 2], URP, 100, |v| v == 3.0);
    assert_eq!(
        scrape(&cluster, Role::Broker(3), URP),
        None,
        "the dead one serves nothing"
    );
    // Its return: it catches up, the leaders expand their ISRs, and the count falls to 0.
    cluster.local.start(Role::Broker(3)).unwrap();
    await_metric_sum(&cluster, &all, URP, 150, |v| v == 0.0);
    await_metric_sum(
        &cluster,
        &all,
        "kafka_server_replicamanager_isrexpands_total",
        50,
        |v| v >= 1.0,
    );
}

/// `groups --describe --json`: each partition's committed offset, by partition, and the
/// coordinator's broker id.
fn group_offsets(cluster: &Cluster, group: &str) -> (BTreeMap<u32, u64>, Option<BrokerId>, Json) {
    let d: Json = serde_json::from_str(
        &cluster.ok(&["groups", "--describe", "--group", group, "--json"], ""),
    )
    .unwrap();
    let offsets = d["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().unwrap() as u32,
                o["current_offset"].as_u64().unwrap(),
            )
        })
        .collect();
    let coordinator = d["coordinator"]["id"].as_u64().map(|b| b as BrokerId);
    (offsets, coordinator, d)
}

/// Checks that `read` is, per partition, exactly offsets `from[p]..to[p]` of `values[p]`; the
/// offset after the last record read of each partition.
fn assert_read_range(
    read: &BTreeMap<(u32, u64), String>,
    values: &[Vec<String>],
    from: &BTreeMap<u32, u64>,
    total: usize,
) -> BTreeMap<u32, u64> {
    assert_eq!(
        read.len(),
        total,
        "exactly {total} records printed: {read:?}"
    );
    let mut ends = BTreeMap::new();
    for p in 0..values.len() as u32 {
        let start = from.get(&p).copied().unwrap_or(0);
        let offsets: Vec<u64> = read.keys().filter(|(q, _)| *q == p).map(|k| k.1).collect();
        let end = start + offsets.len() as u64;
        assert_eq!(
            offsets,
            (start..end).collect::<Vec<_>>(),
            "partition {p} read from {start}, gapless"
        );
        for o in start..end {
            assert_eq!(read[&(p, o)], values[p as usize][o as usize]);
        }
        ends.insert(p, end);
    }
    ends
}

/// R57–R62 on the real cluster: a group's member commits exactly what it printed (not the rest
/// of its last fetch), kill -9 of the group's coordinator loses no acknowledged commit (the new
/// coordinator answers only once it has loaded them, R60), and the group's next members resume
/// exactly there and read nothing twice.
#[test]
fn a_group_resumes_at_its_committed_offset_after_its_coordinator_is_killed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Per partition: more than the first member reads in all, so each has some left.
    const RECORDS: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path(), &failover_options());
    cluster.create_topic("g", 2, Some(2));
    cluster.await_full_isr("g");
    let values: Vec<Vec<String>> = (0..2)
        .map(|p| (0..RECORDS).map(|i| format!("p{p}-{i:03}")).collect())
        .collect();
    for (p, vs) in values.iter().enumerate() {
        let input: String = vs.iter().map(|v| format!("{v}\n")).collect();
        let partition = p.to_string();
        let acked = acks(&cluster.ok(
            &["produce", "g", "--acks", "all", "--partition", &partition],
            &input,
        ));
        assert_eq!(
            acked,
            (0..RECORDS).map(|o| (p as u32, o)).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        cluster.ok(&["groups", "--describe", "--group", "G"], ""),
        "Consumer group 'G' has no committed offsets.\n"
    );

    // The first member of each partition reads from the start: 120 records in all, fewer than
    // their fetches returned, and only those are committed.
    let out = cluster.run(
        &[
            "consume",
            "g",
            "--group",
            "G",
            "--from-beginning",
            "--max",
            "120",
            "--enable-auto-commit",
            "false",
            "--json",
            "--timeout-ms",
            "20000",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let read = consumed(&String::from_utf8(out.stdout).unwrap());
    let printed = assert_read_range(&read, &values, &BTreeMap::new(), 120);
    for (p, end) in &printed {
        // A member may not have resumed yet when the other one reached 120.
        let resumed =
            format!("Resuming g-{p} at offset 0 (no committed offset: auto.offset.reset=earliest)");
        assert!(*end == 0 || stderr.contains(&resumed), "{stderr}");
    }
    // A member that printed nothing commits nothing (manual commit).
    let expected: BTreeMap<u32, u64> = printed
        .iter()
        .filter(|(_, end)| **end > 0)
        .map(|(p, end)| (*p, *end))
        .collect();
    let (committed, coordinator, d) = group_offsets(&cluster, "G");
    assert_eq!(committed, expected, "the group holds what was printed: {d}");
    for o in d["offsets"].as_array().unwrap() {
        assert_eq!(o["log_end_offset"], RECORDS, "{d}");
        assert_eq!(
            o["lag"].as_u64(),
            Some(RECORDS - o["current_offset"].as_u64().unwrap()),
            "{d}"
        );
    }
    let text = cluster.ok(&["groups", "--describe", "--group", "G"], "");
    let header = text.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG"
        ]
    );
    assert_eq!(text.lines().count(), 1 + expected.len(), "{text}");

    // kill -9 of the coordinator; the tools go to a broker that survives.
    let coordinator = coordinator.expect("the coordinator is named");
    let survivor = (1..=3).find(|b| *b != coordinator).unwrap();
    cluster.bootstrap = cluster
        .local
        .address(Role::Broker(survivor))
        .unwrap()
        .to_string();
    cluster.local.kill(Role::Broker(coordinator)).unwrap();
    let killed_at = Instant::now();
    let mut after = None;
    for _ in 0..10 {
        let out = cluster.run(&["groups", "--describe", "--group", "G", "--json"], "");
        if out.status.success() {
            let d: Json = serde_json::from_slice(&out.stdout).unwrap();
            if d["coordinator"]["id"]
                .as_u64()
                .is_some_and(|b| b != u64::from(coordinator))
            {
                after = Some(group_offsets(&cluster, "G"));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (after, new_coordinator, d) = after.expect("a new coordinator serves the group");
    assert_ne!(new_coordinator, Some(coordinator), "{d}");
    assert_eq!(after, expected, "no acknowledged commit lost: {d}");
    let recovered_in = killed_at.elapsed();

    // The group's next members, one partition each, auto commit on 0 and manual on 1, each
    // reading about half of what is left, then the rest: each resumes at the group's offset (or,
    // where it has none, at the start), reads exactly the next records, and commits exactly
    // those, not the rest of its last fetch.
    let mut position = printed.clone();
    for (p, auto) in [(0u32, "true"), (1, "false")] {
        let rest = RECORDS - printed[&p];
        for take in [rest / 2, rest - rest / 2] {
            let from = position[&p];
            let partition = p.to_string();
            let max = take.to_string();
            let out = cluster.run(
                &[
                    "consume",
                    "g",
                    "--group",
                    "G",
                    "--partition",
                    &partition,
                    "--max",
                    &max,
                    "--enable-auto-commit",
                    auto,
                    "--from-beginning",
                    "--json",
                    "--timeout-ms",
                    "20000",
                ],
                "",
            );
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            assert!(!stderr.contains("warning"), "{stderr}");
            let why = if from > 0 {
                "committed"
            } else {
                "no committed offset: auto.offset.reset=earliest"
            };
            assert!(
                stderr.contains(&format!("Resuming g-{p} at offset {from} ({why})")),
                "{stderr}"
            );
            let read = consumed(&String::from_utf8(out.stdout).unwrap());
            let mut only = values.clone();
            only[1 - p as usize].clear();
            let starts = BTreeMap::from([(p, from), (1 - p, 0)]);
            let ends = assert_read_range(&read, &only, &starts, take as usize);
            assert_eq!(ends[&p], from + take);
            position.insert(p, from + take);
            let (committed, _, d) = group_offsets(&cluster, "G");
            assert_eq!(committed.get(&p), Some(&(from + take)), "{d}");
        }
    }
    let (last, _, d) = group_offsets(&cluster, "G");
    assert_eq!(last, BTreeMap::from([(0, RECORDS), (1, RECORDS)]), "{d}");
    eprintln!("the new coordinator served within {recovered_in:?}");
}

#[test]
fn a_member_killed_with_kill_9_comes_back_at_its_groups_committed_offset() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const RECORDS: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(dir.path(), &failover_options());
    cluster.create_topic("k", 1, Some(2));
    cluster.await_full_isr("k");
    let values: Vec<String> = (0..RECORDS).map(|i| format!("k-{i:04}")).collect();
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    let acked = acks(&cluster.ok(&["produce", "k", "--acks", "all"], &input));
    assert_eq!(acked.len() as u64, RECORDS);

    // A member committing after each batch, killed with kill -9 once it has printed some.
    let mut child = watermark()
        .args(["consume", "k", "--group", "K", "--from-beginning"])
        .args(["--enable-auto-commit", "false", "--json"])
        .args(["--bootstrap-server", &cluster.bootstrap])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut printed = 0;
    while printed < 100 && Instant::now() < deadline {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            printed += 1;
        }
    }
    assert!(
        printed >= 100,
        "the member printed {printed} records in 20 s"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();

    // Its commits stand: the group holds an offset, and the next member starts exactly there.
    // A member commits what it fetched, which may be everything before the tool printed it (the
    // known gap of README), so more records follow for the next member to read in any case.
    let (committed, _, d) = group_offsets(&cluster, "K");
    let c = *committed.get(&0).expect("the killed member committed");
    assert!(c > 0 && c <= RECORDS, "{d}");
    const MORE: u64 = 500;
    let values: Vec<String> = (0..RECORDS + MORE).map(|i| format!("k-{i:04}")).collect();
    let input: String = values[RECORDS as usize..]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect();
    let acked = acks(&cluster.ok(&["produce", "k", "--acks", "all"], &input));
    assert_eq!(acked.len() as u64, MORE);
    let rest = (RECORDS + MORE - c).to_string();
    let out = cluster.run(
        &[
            "consume",
            "k",
            "--group",
            "K",
            "--max",
            &rest,
            "--json",
            "--timeout-ms",
            "20000",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Resuming k-0 at offset {c} (committed)")),
        "{stderr}"
    );
    let read = consumed(&String::from_utf8(out.stdout).unwrap());
    let offsets: Vec<u64> = read.keys().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        (c..RECORDS + MORE).collect::<Vec<_>>(),
        "from the commit, gapless"
    );
    for ((_, o), v) in &read {
        assert_eq!(*v, values[*o as usize]);
    }
}

/// `watermark quorum --describe --json` of the cluster's controllers.
fn quorum_status(cluster: &Cluster) -> Json {
    let out = watermark()
        .args(["quorum", "--describe", "--json", "--timeout-ms", "500"])
        .arg("--cluster")
        .arg(cluster.local.cluster_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "quorum --describe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `quorum --describe` until `pred` holds: at most `tries` times, 200 ms apart.
fn await_quorum(cluster: &Cluster, tries: u32, pred: impl Fn(&Json) -> bool) -> Json {
    for _ in 0..tries {
        let q = quorum_status(cluster);
        if pred(&q) {
            return q;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the quorum never got there: {}", quorum_status(cluster));
}

#[test]
fn kill_9_of_the_active_controller_under_load_elects_another_that_takes_over_and_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(
        dir.path(),
        &LocalOptions {
            controllers: 3,
            ..failover_options()
        },
    );
    cluster.create_topic("q", 1, Some(2));
    let p = cluster.await_full_isr("q");
    let partition_leader = p["leader"].as_u64().unwrap() as u32;
    let q = await_quorum(&cluster, 50, |q| q["leader_id"].is_u64());
    let active = q["leader_id"].as_u64().unwrap() as u32;

    // Produce through a broker that leads nothing, and kill -9 the active controller once
    // acknowledgements flow.
    let other = (1..=3).find(|b| *b != partition_leader).unwrap();
    cluster.bootstrap = cluster
        .local
        .address(Role::Broker(other))
        .unwrap()
        .to_string();
    let values: String = (0..60_000).map(|i| format!("before-{i:094}\n")).collect();
    let out = produce_killing(&mut cluster, "q", &values, Role::Controller(active));
    let mut acked = acks(&out);

    // Another controller leads a newer epoch, and the brokers follow it: when the partition's
    // leader dies, it moves leadership.
    let q = await_quorum(&cluster, 50, |q| {
        q["leader_id"].as_u64().is_some_and(|l| l as u32 != active)
    });
    assert!(q["leader_epoch"].as_u64().unwrap() >= 2, "{q}");
    cluster.local.kill(Role::Broker(partition_leader)).unwrap();
    let d = cluster.await_describe("q", 100, |d| {
        d["partitions"][0]["leader"]
            .as_u64()
            .is_some_and(|l| l as u32 != partition_leader)
    });
    assert!(d["partitions"][0]["leader_epoch"].as_u64().unwrap() >= 1);

    // Producing with acks=all goes on under the new controller and the new leader.
    let after: String = (0..5_000).map(|i| format!("after-{i:095}\n")).collect();
    acked.extend(acks(
        &cluster.ok(&["produce", "q", "--acks", "all", "--idempotent"], &after),
    ));
    let all = values + &after;
    let read = consume_all(&cluster, "q", 65_000);
    assert_read_back(&all, &acked, &read);

    // The killed controller comes back as a follower and catches up.
    cluster.local.start(Role::Controller(active)).unwrap();
    let q = await_quorum(&cluster, 100, |q| {
        q["voters"].as_array().is_some_and(|vs| {
            vs.iter()
                .all(|v| v["status"] != "Unreachable" && v["lag"] == 0)
        })
    });
    assert_ne!(q["leader_id"].as_u64(), Some(u64::from(active)), "{q}");
}
