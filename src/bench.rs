//! `watermark bench`: throughput, latency and failover time of a cluster this command starts
//! itself (a controller and 3 brokers on loopback, a topic of 3 partitions, RF=3,
//! min.insync.replicas=2), like kafka-producer-perf-test and kafka-consumer-perf-test. Every
//! subcommand prints a report, or one JSON object with `--json`. The numbers belong in
//! BENCHMARKS.md with the command that produced them, not in tests.

use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watermark_model::{Acks, TopicConfigs, Value, RECORD_OVERHEAD_BYTES};
use watermark_net::client::{self, ConsumeOptions, ProduceOptions};
use watermark_net::cluster::{Role, TimingMs};
use watermark_net::local::{LocalCluster, LocalOptions};
use watermark_net::transport::DATAGRAM_BYTES_MAX;

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 3;
const REPLICATION_FACTOR: u32 = 3;
const MIN_INSYNC_REPLICAS: u32 = 2;
/// The longest the cluster may take to come up, or to heal between failover runs.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Records/s, MB/s and latency of `produce`, beside a raw loopback UDP baseline measured in
    /// the same run, like kafka-producer-perf-test.
    Produce(ProduceArgs),
    /// Records/s reading N records from the beginning, like kafka-consumer-perf-test.
    Consume(ConsumeArgs),
    /// Time from kill -9 of a partition's leader to the next acks=all acknowledgement.
    Failover(FailoverArgs),
    /// The UDP baseline's receiver: counts datagrams until `--bytes` arrived or 1 s passed
    /// without one; prints its port first, then `bytes seconds`.
    #[command(hide = true)]
    UdpSink(UdpSinkArgs),
}

#[derive(Args)]
pub struct ProduceArgs {
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// The size of each record's value, in bytes.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// How many records to produce.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Hand the producers record i at i / RATE seconds (kafka-producer-perf-test's
    /// --throughput) and measure each record's latency from then: latency under that load
    /// (default: every record at the start, as fast as the producers take them).
    #[arg(long, value_name = "RECORDS_PER_S")]
    rate: Option<u64>,
    /// enable.idempotence (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    idempotent: bool,
    /// max.in.flight.requests.per.connection, per partition.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight_requests: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ConsumeArgs {
    /// How many records to produce first (untimed, acks=1) and then read back (timed).
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// The size of each record's value, in bytes.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FailoverArgs {
    /// How many times to kill the leader (each time: kill -9, measure, restart, heal).
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// broker.session.timeout.ms of the cluster: how long the controller waits before it fences
    /// a silent broker and moves its leaderships.
    #[arg(long, default_value_t = 1000)]
    session_timeout_ms: u64,
    /// Kill -9 the active controller of a quorum of 3 instead of a partition's leader, while a
    /// producer writes with acks=all. Measures the time until another controller leads the
    /// quorum (election_ms) and until every broker's admin requests are answered again, by the
    /// new active controller (failover_ms), and the longest pause in acknowledgements meanwhile.
    #[arg(long)]
    controller: bool,
    /// controller.quorum.fetch.timeout.ms, with --controller: how long a follower controller
    /// waits for its leader before it stands for election (KRaft's default: 2000).
    #[arg(long, default_value_t = 2000)]
    quorum_fetch_timeout_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct UdpSinkArgs {
    /// Stop once this many bytes arrived.
    #[arg(long)]
    bytes: u64,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

pub fn run(command: BenchCommand) -> Result<ExitCode, String> {
    match command {
        BenchCommand::Produce(args) => produce(args),
        BenchCommand::Consume(args) => consume(args),
        BenchCommand::Failover(args) => failover(args),
        BenchCommand::UdpSink(args) => udp_sink(args),
    }
}

/// A cluster of this command's own, in a directory removed when it is dropped.
struct BenchCluster {
    local: LocalCluster,
    dir: PathBuf,
}

impl BenchCluster {
    fn up(timing_ms: TimingMs) -> Result<BenchCluster, String> {
        BenchCluster::up_with(timing_ms, 1)
    }

    /// With `controllers` controllers: 1, or a KRaft quorum of 3 or 5.
    fn up_with(timing_ms: TimingMs, controllers: u32) -> Result<BenchCluster, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("watermark-bench-{}-{nanos}", std::process::id()));
        let options = LocalOptions {
            timing_ms,
            controllers,
            ..LocalOptions::default()
        };
        let local = LocalCluster::create(&exe, &dir, &options)?;
        // From here on, dropping the cluster stops its nodes and removes its directory.
        let mut cluster = BenchCluster { local, dir };
        cluster.local.start_all()?;
        let bootstrap = cluster.bootstrap();
        let start = Instant::now();
        loop {
            let configs = TopicConfigs {
                min_insync_replicas: MIN_INSYNC_REPLICAS,
                ..TopicConfigs::default()
            };
            match client::create_topic(bootstrap, TOPIC, PARTITIONS, REPLICATION_FACTOR, configs) {
                Ok(()) => break,
                Err(e) if start.elapsed() >= SETUP_TIMEOUT => {
                    return Err(format!("cannot create the topic: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        cluster.await_full_isr()?;
        Ok(cluster)
    }

    fn bootstrap(&self) -> SocketAddrV4 {
        self.local.bootstrap()
    }

    /// Waits until every partition has a leader and its whole assignment in the ISR.
    fn await_full_isr(&self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < SETUP_TIMEOUT {
            let live = (1..=3)
                .filter_map(|b| self.local.address(Role::Broker(b)))
                .collect::<Vec<_>>();
            for server in &live {
                if let Ok(d) = client::describe(*server, Some(TOPIC)) {
                    if d.partitions.len() == PARTITIONS as usize
                        && d.partitions
                            .iter()
                            .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len())
                    {
                        return Ok(());
                    }
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the cluster did not reach full ISRs within {} s",
            SETUP_TIMEOUT.as_secs()
        ))
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        let _ = self.local.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` values of `bytes` bytes each, distinct.
fn values(n: usize, bytes: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut v = format!("{i:0width$}", width = bytes).into_bytes();
            v.truncate(bytes.max(1));
            Value(v.into())
        })
        .collect()
}

/// The value at quantile `q` of sorted `samples`, in ms.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn produce_options(acks: Acks, idempotent: bool) -> ProduceOptions {
    ProduceOptions {
        max_in_flight_requests: 5,
        topic: TOPIC.into(),
        acks,
        idempotent,
        partition: None,
        delivery_timeout: Duration::from_secs(120),
        throughput: None,
        timing: TimingMs::producer(idempotent),
    }
}

fn produce(args: ProduceArgs) -> Result<ExitCode, String> {
    if args.records == 0 || args.record_bytes == 0 {
        return Err("--records and --record-bytes must be at least 1".into());
    }
    if args.rate == Some(0) {
        return Err("--rate must be at least 1 record/s".into());
    }
    if !args.json {
        eprintln!(
            "starting a cluster: 3 brokers, topic {TOPIC} of {PARTITIONS} partitions, RF={REPLICATION_FACTOR}, min.insync.replicas={MIN_INSYNC_REPLICAS}"
        );
    }
    let cluster = BenchCluster::up(TimingMs::default())?;
    let stop = AtomicBool::new(false);
    // With --rate, one set of long-lived producers is handed each record at its time (Kafka's
    // perf test throttles its one producer the same way), and latency runs from then.
    let options = ProduceOptions {
        max_in_flight_requests: args.max_in_flight_requests,
        throughput: args.rate.map(|r| r as f64),
        ..produce_options(args.acks, args.idempotent)
    };
    let all = values(args.records, args.record_bytes);
    // Per record: how long from when it was offered (when the producers started, without
    // --rate) until its producer took the acknowledgement.
    let mut latencies: Vec<Duration> = Vec::with_capacity(args.records);
    let start = Instant::now();
    let report = client::produce(cluster.bootstrap(), &options, all, &stop, |_, latency| {
        latencies.push(latency);
    })?;
    let acknowledged = report.acknowledged;
    let elapsed = start.elapsed();
    drop(cluster);
    let records_per_s = acknowledged as f64 / elapsed.as_secs_f64();
    let mb_per_s = records_per_s * args.record_bytes as f64 / 1e6;
    latencies.sort_unstable();
    let baseline = udp_baseline(args.records, args.record_bytes)?;
    let ratio = records_per_s / baseline;
    let report = json!({
        "acks": args.acks.to_string(),
        "idempotent": args.idempotent,
        "max_in_flight_requests": args.max_in_flight_requests,
        "records": args.records,
        "record_bytes": args.record_bytes,
        "rate": args.rate,
        "acknowledged": acknowledged,
        "elapsed_s": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
        "mb_per_s": mb_per_s,
        "p50_ms": quantile_ms(&latencies, 0.50),
        "p99_ms": quantile_ms(&latencies, 0.99),
        "p999_ms": quantile_ms(&latencies, 0.999),
        "udp_baseline_records_per_s": baseline,
        "ratio_to_udp": ratio,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{acknowledged} of {} records acknowledged (acks={}, {} bytes each{}) in {:.3} s: {:.0} records/s, {:.2} MB/s",
            args.records,
            args.acks,
            args.record_bytes,
            args.rate.map(|r| format!(", offered at {r}/s")).unwrap_or_default(),
            elapsed.as_secs_f64(),
            records_per_s,
            mb_per_s
        );
        println!(
            "latency from offer to acknowledgement: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            report["p50_ms"].as_f64().unwrap_or(f64::NAN),
            report["p99_ms"].as_f64().unwrap_or(f64::NAN),
            report["p999_ms"].as_f64().unwrap_or(f64::NAN)
        );
        println!(
            "raw loopback UDP, the same bytes in {DATAGRAM_BYTES_MAX}-byte datagrams between two processes: {baseline:.0} records/s; ratio {ratio:.3}"
        );
    }
    Ok(if acknowledged == args.records || args.acks == Acks::None {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The least the UDP baseline sends, so that it runs long enough to measure.
const UDP_BASELINE_BYTES_MIN: u64 = 512 << 20;

/// Raw loopback UDP: the bytes of `records` records of `record_bytes` (with their per-record
/// overhead; at least [`UDP_BASELINE_BYTES_MIN`]) sent as full datagrams from this process to a
/// child process as fast as the socket takes them. Returns the records/s the child received
/// (lost datagrams count as not received).
fn udp_baseline(records: usize, record_bytes: usize) -> Result<f64, String> {
    let per_record = record_bytes + RECORD_OVERHEAD_BYTES;
    let total = ((records * per_record) as u64).max(UDP_BASELINE_BYTES_MIN);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(["bench", "udp-sink", "--bytes", &total.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the UDP sink: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)
        .map_err(|e| format!("the UDP sink said nothing: {e}"))?;
    let port: u16 = line
        .trim()
        .parse()
        .map_err(|_| format!("the UDP sink printed '{}', not a port", line.trim()))?;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let datagram = vec![0x5au8; DATAGRAM_BYTES_MAX];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(DATAGRAM_BYTES_MAX as u64) as usize;
        match socket.send_to(&datagram[..n], to) {
            Ok(_) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("UDP baseline: {e}")),
        }
    }
    line.clear();
    out.read_line(&mut line)
        .map_err(|e| format!("the UDP sink did not report: {e}"))?;
    let _ = child.wait();
    let mut fields = line.split_whitespace().map(str::parse::<f64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(bytes)), Some(Ok(secs))) if secs > 0.0 => Ok(bytes / per_record as f64 / secs),
        _ => Err(format!("the UDP sink reported '{}'", line.trim())),
    }
}

fn udp_sink(args: UdpSinkArgs) -> Result<ExitCode, String> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    let port = socket.local_addr().map_err(|e| e.to_string())?.port();
    println!("{port}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while bytes < args.bytes {
        match socket.recv(&mut buf) {
            Ok(n) => {
                last = Instant::now();
                first.get_or_insert(last);
                bytes += n as u64;
            }
            Err(_) => break, // A second without a datagram: the rest was lost.
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!("{bytes} {secs}");
    Ok(ExitCode::SUCCESS)
}

fn consume(args: ConsumeArgs) -> Result<ExitCode, String> {
    if args.records == 0 || args.record_bytes == 0 {
        return Err("--records and --record-bytes must be at least 1".into());
    }
    if !args.json {
        eprintln!("starting a cluster and producing {} records", args.records);
    }
    let cluster = BenchCluster::up(TimingMs::default())?;
    let stop = AtomicBool::new(false);
    let report = client::produce(
        cluster.bootstrap(),
        &produce_options(Acks::Leader, true),
        values(args.records, args.record_bytes),
        &stop,
        |_, _| {},
    )?;
    if report.acknowledged != args.records {
        return Err(format!(
            "only {} of {} records were acknowledged",
            report.acknowledged, args.records
        ));
    }
    // acks=1: wait until the high watermarks hold every record, so that all of them are
    // readable.
    cluster.await_full_isr()?;
    let options = ConsumeOptions {
        topic: TOPIC.into(),
        partition: None,
        from_beginning: true,
        max_records: Some(args.records as u64),
        idle_timeout: Some(Duration::from_secs(10)),
        timing: TimingMs::client(),
        trace_dir: None,
    };
    let start = Instant::now();
    let read = client::consume(cluster.bootstrap(), &options, &stop, |_| {})?;
    let elapsed = start.elapsed();
    drop(cluster);
    let records_per_s = read as f64 / elapsed.as_secs_f64();
    let report = json!({
        "records": args.records,
        "record_bytes": args.record_bytes,
        "read": read,
        "elapsed_s": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
        "mb_per_s": records_per_s * args.record_bytes as f64 / 1e6,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "read {read} of {} records ({} bytes each) in {:.3} s: {records_per_s:.0} records/s",
            args.records,
            args.record_bytes,
            elapsed.as_secs_f64()
        );
    }
    Ok(if read == args.records as u64 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One failover run: the time from the kill to the next acknowledgement.
fn failover_once(cluster: &mut BenchCluster) -> Result<Duration, String> {
    // Partition 0's leader dies; the producer, writing to partition 0 only, bootstraps from
    // another broker.
    let d = client::describe(cluster.bootstrap(), Some(TOPIC))?;
    let leader = d.partitions[0].leader.ok_or("partition 0 has no leader")?;
    let killed_epoch = d.partitions[0].leader_epoch;
    let other = (1..=3).find(|b| *b != leader).expect("3 brokers");
    let bootstrap = cluster
        .local
        .address(Role::Broker(other))
        .ok_or("no such broker")?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    // The first acknowledgement from a leader epoch after the killed leader's is the new
    // leader's: that is what is timed. One the dead leader sent before the kill does not count,
    // however late it is handed on.
    let first_after = Arc::new(Mutex::new(None::<Instant>));
    let producer = {
        let (stop, acks) = (stop.clone(), acks.clone());
        let first_after = first_after.clone();
        std::thread::spawn(move || {
            let options = ProduceOptions {
                partition: Some(0),
                ..produce_options(Acks::All, true)
            };
            client::produce(bootstrap, &options, values(200_000, 16), &stop, |ack, _| {
                acks.fetch_add(1, Ordering::Relaxed);
                if ack.leader_epoch > killed_epoch {
                    first_after.lock().unwrap().get_or_insert_with(Instant::now);
                }
            })
        })
    };
    let wait = |done: &dyn Fn() -> bool| -> bool {
        let start = Instant::now();
        while start.elapsed() < SETUP_TIMEOUT {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    };
    let result = (|| {
        if !wait(&|| acks.load(Ordering::Relaxed) >= 1000) {
            return Err("the producer made no progress before the kill".to_string());
        }
        cluster.local.kill(Role::Broker(leader))?;
        let killed = Instant::now();
        if !wait(&|| first_after.lock().unwrap().is_some()) {
            return Err(format!(
                "no acknowledgement within {} s of the kill",
                SETUP_TIMEOUT.as_secs()
            ));
        }
        let first = first_after.lock().unwrap().expect("waited for it");
        first
            .checked_duration_since(killed)
            .ok_or_else(|| "partition 0's leadership moved before the kill".to_string())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    let took = result?;
    cluster.local.start(Role::Broker(leader))?;
    cluster.await_full_isr()?;
    Ok(took)
}

/// One controller failover: kill -9 of the active controller while a producer writes. Returns
/// the time until another controller leads, the time until every broker's admin requests are
/// answered again, and the longest pause between acknowledgements from the kill on.
fn controller_failover_once(
    cluster: &mut BenchCluster,
) -> Result<(Duration, Duration, Duration), String> {
    let controllers = cluster.local.file().controller_addresses();
    let leader_of =
        |asked: &[SocketAddrV4]| client::quorum_status(asked, Duration::from_millis(100)).leader_id;
    let start = Instant::now();
    let active = loop {
        match leader_of(&controllers) {
            Some(l) => break l,
            None if start.elapsed() > SETUP_TIMEOUT => return Err("no controller leads".into()),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    // (the last acknowledgement, the longest gap since the kill), once `killed` is set.
    let gaps = Arc::new(Mutex::new((None::<Instant>, Duration::ZERO)));
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let bootstrap = cluster.bootstrap();
    let producer = {
        let (stop, acks, gaps, killed_at) =
            (stop.clone(), acks.clone(), gaps.clone(), killed_at.clone());
        std::thread::spawn(move || {
            let options = produce_options(Acks::All, true);
            client::produce(bootstrap, &options, values(2_000_000, 16), &stop, |_, _| {
                acks.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let killed = *killed_at.lock().unwrap();
                let mut g = gaps.lock().unwrap();
                if let (Some(k), Some(last)) = (killed, g.0) {
                    let gap = now.duration_since(last.max(k));
                    g.1 = g.1.max(gap);
                }
                g.0 = Some(now);
            })
        })
    };
    let result = (|| {
        let begin = Instant::now();
        while acks.load(Ordering::Relaxed) < 1000 {
            if begin.elapsed() > SETUP_TIMEOUT {
                return Err("the producer made no progress before the kill".to_string());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cluster.local.kill(Role::Controller(active))?;
        let killed = Instant::now();
        *killed_at.lock().unwrap() = Some(killed);
        let others: Vec<SocketAddrV4> = controllers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 + 1 != active)
            .map(|(_, a)| *a)
            .collect();
        let elected = loop {
            if leader_of(&others).is_some_and(|l| l != active) {
                break killed.elapsed();
            }
            if killed.elapsed() > SETUP_TIMEOUT {
                return Err("no other controller was elected".to_string());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let brokers: Vec<SocketAddrV4> = (1..=3)
            .filter_map(|b| cluster.local.address(Role::Broker(b)))
            .collect();
        let mut answered = vec![false; brokers.len()];
        let restored = loop {
            for (i, b) in brokers.iter().enumerate() {
                if !answered[i] {
                    let describe = watermark_model::Msg::DescribeTopics {
                        topic: None,
                        client: None,
                    };
                    answered[i] =
                        client::request_within(*b, &describe, Duration::from_millis(100), |m| {
                            matches!(m, watermark_model::Msg::DescribeTopicsResponse { .. })
                                .then_some(())
                        })
                        .is_ok();
                }
            }
            if answered.iter().all(|a| *a) {
                break killed.elapsed();
            }
            if killed.elapsed() > SETUP_TIMEOUT {
                return Err("the brokers never reached the new controller".to_string());
            }
        };
        std::thread::sleep(Duration::from_millis(200));
        Ok((elected, restored))
    })();
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().map_err(|_| "the producer panicked")?;
    let (elected, restored) = result?;
    produced?;
    let gap_max = gaps.lock().unwrap().1;
    // The killed controller comes back as a follower; the next run kills whoever leads then.
    cluster.local.start(Role::Controller(active))?;
    let back = Instant::now();
    loop {
        let status = client::quorum_status(&controllers, Duration::from_millis(200));
        if status.leader_id.is_some() && status.voters.iter().all(|v| v.lag == Some(0)) {
            break;
        }
        if back.elapsed() > SETUP_TIMEOUT {
            return Err("the restarted controller did not catch up".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((elected, restored, gap_max))
}

fn controller_failover(args: FailoverArgs) -> Result<ExitCode, String> {
    let timing_ms = TimingMs {
        session_timeout: args.session_timeout_ms,
        preferred_leader_election_interval: 3_600_000,
        quorum_fetch_timeout: args.quorum_fetch_timeout_ms,
        ..TimingMs::default()
    };
    if !args.json {
        eprintln!(
            "starting a cluster of 3 controllers with controller.quorum.fetch.timeout.ms={}",
            args.quorum_fetch_timeout_ms
        );
    }
    let mut cluster = BenchCluster::up_with(timing_ms.clone(), 3)?;
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let (elected, restored, gap) = controller_failover_once(&mut cluster)?;
        if !args.json {
            eprintln!(
                "run {}: elected {:.0} ms, brokers answered {:.0} ms, longest acks=all pause {:.0} ms",
                i + 1,
                elected.as_secs_f64() * 1000.0,
                restored.as_secs_f64() * 1000.0,
                gap.as_secs_f64() * 1000.0
            );
        }
        runs.push((elected, restored, gap));
    }
    drop(cluster);
    let sorted = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort_unstable();
        v
    };
    let (elected, restored, gaps) = (sorted(|r| r.0), sorted(|r| r.1), sorted(|r| r.2));
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let report = json!({
        "runs": args.runs,
        "controllers": 3,
        "quorum_fetch_timeout_ms": args.quorum_fetch_timeout_ms,
        "quorum_election_timeout_ms": timing_ms.quorum_election_timeout,
        "session_timeout_ms": args.session_timeout_ms,
        "election_p50_ms": quantile_ms(&elected, 0.50),
        "election_p99_ms": quantile_ms(&elected, 0.99),
        "p50_ms": quantile_ms(&restored, 0.50),
        "p99_ms": quantile_ms(&restored, 0.99),
        "produce_pause_max_ms": gaps.last().map(ms),
        "runs_ms": runs.iter().map(|r| ms(&r.1)).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "controller failover (kill -9 of the active controller of 3), {} runs, controller.quorum.fetch.timeout.ms={}: elected p50 {:.0} ms, p99 {:.0} ms; every broker answered by the new controller p50 {:.0} ms, p99 {:.0} ms; longest acks=all pause {:.0} ms",
            args.runs,
            args.quorum_fetch_timeout_ms,
            report["election_p50_ms"].as_f64().unwrap_or(f64::NAN),
            report["election_p99_ms"].as_f64().unwrap_or(f64::NAN),
            report["p50_ms"].as_f64().unwrap_or(f64::NAN),
            report["p99_ms"].as_f64().unwrap_or(f64::NAN),
            report["produce_pause_max_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn failover(args: FailoverArgs) -> Result<ExitCode, String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if args.controller {
        return controller_failover(args);
    }
    let timing_ms = TimingMs {
        session_timeout: args.session_timeout_ms,
        // No preferred election moving leaders while a run measures.
        preferred_leader_election_interval: 3_600_000,
        ..TimingMs::default()
    };
    if !args.json {
        eprintln!(
            "starting a cluster with broker.session.timeout.ms={}",
            args.session_timeout_ms
        );
    }
    let mut cluster = BenchCluster::up(timing_ms)?;
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let took = failover_once(&mut cluster)?;
        if !args.json {
            eprintln!("run {}: {:.0} ms", i + 1, took.as_secs_f64() * 1000.0);
        }
        runs.push(took);
    }
    drop(cluster);
    let mut sorted = runs.clone();
    sorted.sort_unstable();
    let report = json!({
        "runs": args.runs,
        "session_timeout_ms": args.session_timeout_ms,
        "p50_ms": quantile_ms(&sorted, 0.50),
        "p99_ms": quantile_ms(&sorted, 0.99),
        "runs_ms": runs.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "failover (kill -9 of the leader until the next acks=all acknowledgement), {} runs, broker.session.timeout.ms={}: p50 {:.0} ms, p99 {:.0} ms",
            args.runs,
            args.session_timeout_ms,
            report["p50_ms"].as_f64().unwrap_or(f64::NAN),
            report["p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(ExitCode::SUCCESS)
}
