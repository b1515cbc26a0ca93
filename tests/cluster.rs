//! The real cluster: processes on 127.0.0.1 with ephemeral ports and temporary directories,
//! driven through the `watermark` command line as a user would.
//!
//! Every child process is owned by a guard that stops it on drop, also when a test panics, and
//! `cluster up`'s nodes die with it (PR_SET_PDEATHSIG). Every wait is bounded in count.

use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Clusters share two cores: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn watermark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_watermark"))
}

/// A child process, stopped (SIGTERM, then SIGKILL) on drop.
struct Proc {
    child: Child,
}

impl Proc {
    fn stop(&mut self) -> Option<String> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return self.stderr();
        }
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.stderr();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }

    fn stderr(&mut self) -> Option<String> {
        let mut s = String::new();
        self.child.stderr.take()?.read_to_string(&mut s).ok()?;
        Some(s)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Cluster {
    up: Proc,
    dir: PathBuf,
    bootstrap: String,
    /// Broker id to (address, pid).
    brokers: BTreeMap<u32, (SocketAddrV4, u32)>,
}

impl Cluster {
    fn up(dir: &Path) -> Cluster {
        let mut child = watermark()
            .args(["cluster", "up", "--brokers", "3", "--base-port", "0"])
            .args(["--session-timeout-ms", "1000", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cluster up starts");
        let stdout = child.stdout.take().unwrap();
        let up = Proc { child };
        let mut brokers = BTreeMap::new();
        let mut bootstrap = None;
        for line in BufReader::new(stdout).lines().take(10) {
            let line = line.unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"broker") {
                let pid = words[words.iter().position(|w| *w == "pid").unwrap() + 1];
                brokers.insert(
                    words[1].parse().unwrap(),
                    (words[2].parse().unwrap(), pid.parse().unwrap()),
                );
            }
            if line.starts_with("bootstrap server: ") {
                bootstrap = Some(words[2].to_string());
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        Cluster {
            up,
            dir: dir.to_path_buf(),
            bootstrap: bootstrap.expect("cluster up prints the bootstrap server"),
            brokers,
        }
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
        let min_isr = min_insync_replicas.map(|m| m.to_string());
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
            args.extend(["--min-insync-replicas", m.as_str()]);
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

#[test]
fn ten_thousand_records_with_acks_all_read_back_identical_and_gapless() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(dir.path());
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
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["isr"].as_array().unwrap().len(), 3);
        assert_eq!(p["high_watermark"], p["log_end_offset"]);
    }
}

#[test]
fn a_broker_fed_garbage_keeps_serving_and_counts_what_it_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path());
    cluster.create_topic("t", 1, None);
    let (broker, _) = cluster.brokers[&1];
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut valid = Vec::new();
    // A well-formed LeaderAndIsr from a stranger.
    watermark_net::codec::encode(
        &watermark_model::Msg::LeaderAndIsr {
            controller_epoch: 99,
            broker_epoch: 0,
            base_metadata_offset: None,
            metadata_offset: 99,
            partitions: std::sync::Arc::new([]),
        },
        &mut valid,
    )
    .unwrap();
    let mut wrong_version = valid.clone();
    wrong_version[0] = 200;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        b"hello, broker".to_vec(),
        wrong_version,
        valid[..valid.len() - 1].to_vec(),
        vec![0xAB; 65_000],
    ];
    for _ in 0..10 {
        for g in &garbage {
            let _ = socket.send_to(g, broker);
        }
    }
    socket.send_to(&valid, broker).unwrap();
    let values = lines(500, "after-garbage");
    let acked = acks(&cluster.ok(&["produce", "t"], &values));
    let read = consume_all(&cluster, "t", 500);
    assert_read_back(&values, &acked, &read);
    let stderr = cluster.up.stop().unwrap();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("broker 1 stopped"))
        .unwrap_or_else(|| panic!("broker 1 reports its counters: {stderr}"));
    let dropped: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "broker 1 stopped: R received, S sent; dropped M malformed, U from unknown senders, ..."
    assert!(dropped[3] >= 50, "malformed datagrams counted: {line}");
    assert!(
        dropped[4] >= 1,
        "the stranger's LeaderAndIsr counted: {line}"
    );
}

#[test]
fn a_restarted_cluster_reads_everything_back_from_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let values = lines(3_000, "durable");
    let acked = {
        let cluster = Cluster::up(dir.path());
        cluster.create_topic("d", 3, None);
        acks(&cluster.ok(&["produce", "d"], &values))
    };
    let mut cluster = Cluster::up(dir.path());
    let read = consume_all(&cluster, "d", 3_000);
    assert_read_back(&values, &acked, &read);
    cluster.up.stop();
}

#[test]
fn kill_9_of_a_leader_mid_produce_loses_no_acknowledged_record_and_it_rejoins_the_isr() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::up(dir.path());
    cluster.create_topic("k", 1, Some(2));
    let d = cluster.await_describe("k", 50, |d| d["partitions"][0]["leader"].is_u64());
    let leader = d["partitions"][0]["leader"].as_u64().unwrap() as u32;
    let (_, leader_pid) = cluster.brokers[&leader];

    // Produce through a broker that survives, and kill the leader once acks are flowing.
    let other = cluster.brokers.keys().find(|b| **b != leader).unwrap();
    let bootstrap = cluster.brokers[other].0.to_string();
    cluster.bootstrap = bootstrap.clone();
    let values: String = (0..60_000).map(|i| format!("{i:0100}\n")).collect();
    let mut producer = watermark()
        .args(["produce", "k", "--acks", "all", "--idempotent"])
        .args([
            "--delivery-timeout-ms",
            "60000",
            "--bootstrap-server",
            &bootstrap,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = producer.stdin.take().unwrap();
    let feed = values.clone();
    let writer = std::thread::spawn(move || input.write_all(feed.as_bytes()));
    let stdout = producer.stdout.take().unwrap();
    let mut producer = Proc { child: producer };
    let mut out = String::new();
    let mut reader = BufReader::new(stdout);
    let mut killed = false;
    for _ in 0..=60_000 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        out += &line;
        if !killed && out.len() > 1_000 {
            // SAFETY: the leader is a child of `cluster up`; kill -9 it by pid.
            unsafe {
                libc::kill(leader_pid as libc::pid_t, libc::SIGKILL);
            }
            killed = true;
        }
    }
    writer.join().unwrap().unwrap();
    let status = producer.child.wait().unwrap();
    let stderr = producer.stderr().unwrap_or_default();
    assert!(status.success(), "every record acknowledged: {stderr}");
    assert!(killed);
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
    let mut restarted = Proc {
        child: watermark()
            .args(["broker", "--id", &leader.to_string(), "--cluster"])
            .arg(cluster.dir.join("cluster.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    let d = cluster.await_describe("k", 100, |d| {
        d["partitions"][0]["isr"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.as_u64() == Some(u64::from(leader)))
    });
    let leo = d["partitions"][0]["log_end_offset"].as_u64().unwrap();
    let tp = watermark_model::TopicPartition::new(&watermark_model::Topic::new("k"), 0);
    let mut caught_up = false;
    for _ in 0..50 {
        let o = watermark_net::client::list_offsets(cluster.brokers[&leader].0, &tp).unwrap();
        if o.log_end_offset == leo {
            caught_up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        caught_up,
        "the restarted broker's log ends where the leader's does"
    );
    restarted.stop();
}
