//! Trace validation (spec §13): a traced cluster's run replays through the model's actors with no
//! mismatch and no violation, recoveries included; a host broken on purpose, a channel reordered
//! and a recovery that loads what was never saved are each caught.
//!
//! Clusters run on 127.0.0.1 with ephemeral ports in temporary directories; every node dies with
//! its `LocalCluster`, and every wait is bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use watermark_checks::validate::{self, TraceRecord, ValidationReport};
use watermark_model::Storage;
use watermark_net::cluster::{Role, TimingMs};
use watermark_net::local::{LocalCluster, LocalOptions};
use watermark_net::trace::{self, Event, TraceFile};

/// Clusters share two cores: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_watermark"))
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

/// Runs `watermark args... --bootstrap-server B` with `stdin`; panics unless it succeeds.
fn run(cluster: &LocalCluster, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(exe())
        .args(args)
        .args(["--bootstrap-server", &cluster.bootstrap().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "watermark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn values(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// Polls `describe` until every partition of `topic` has a full ISR: at most 100 times.
fn await_full_isr(cluster: &LocalCluster, topic: &str) {
    for _ in 0..100 {
        let d: serde_json::Value =
            serde_json::from_str(&run(cluster, &["describe", "--topic", topic, "--json"], ""))
                .unwrap();
        let full = d["partitions"].as_array().is_some_and(|ps| {
            ps.iter()
                .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
        });
        if full {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{topic} never had a full ISR");
}

/// A traced cluster with topic `v` (1 partition, RF 3, min.insync.replicas 2).
fn traced_cluster(dir: &Path, broken: Option<u32>) -> (LocalCluster, PathBuf) {
    let mut cluster = LocalCluster::create(exe(), dir, &options()).expect("cluster created");
    let traces = dir.join("traces");
    cluster.set_trace_dir(Some(traces.clone()));
    if let Some(b) = broken {
        cluster.set_extra_args(
            Role::Broker(b),
            vec!["--break-host".into(), "send-before-save".into()],
        );
    }
    cluster.start_all().expect("every node starts");
    run(
        &cluster,
        &[
            "topic",
            "create",
            "v",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        "",
    );
    await_full_isr(&cluster, "v");
    (cluster, traces)
}

fn read_traces(dir: &Path) -> Vec<(String, TraceFile<TraceRecord>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, trace::read(&f).unwrap())
        })
        .collect()
}

fn kinds(report: &ValidationReport) -> Vec<String> {
    report
        .mismatches
        .iter()
        .chain(&report.violations)
        .map(|f| f.kind.clone())
        .collect()
}

#[test]
fn a_run_with_a_kill_9_validates_clean_and_reordered_or_forged_traces_do_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, traces) = traced_cluster(dir.path(), None);
    run(
        &cluster,
        &["produce", "v", "--acks", "all"],
        &values(300, "a"),
    );
    cluster.kill(Role::Broker(2)).unwrap();
    run(
        &cluster,
        &["produce", "v", "--acks", "all"],
        &values(100, "b"),
    );
    cluster.restart(Role::Broker(2)).unwrap();
    await_full_isr(&cluster, "v");
    run(
        &cluster,
        &["produce", "v", "--acks", "all"],
        &values(100, "c"),
    );
    cluster.stop_all();

    let report = validate::validate_dir(&traces).unwrap();
    assert!(report.passed(), "{}", report.text());
    assert!(report.events > 50, "{}", report.text());
    assert!(report.recoveries_checked >= 1, "{}", report.text());
    assert!(
        report.properties.contains(&"CommittedRecordsSurvive"),
        "{:?}",
        report.properties
    );
    assert_eq!(report.properties_skipped, None);

    // Two deliveries on one channel swapped: no interleaving has the channel's order.
    let mut files = read_traces(&traces);
    let (_, broker) = files
        .iter_mut()
        .find(|(name, _)| name == "broker-1.trace")
        .unwrap();
    let from = |r: &TraceRecord| match &r.event {
        Event::Deliver {
            src,
            sender_incarnation,
            ..
        } => Some((*src, *sender_incarnation)),
        _ => None,
    };
    let records = &mut broker.records;
    let (i, j) = (0..records.len())
        .find_map(|i| {
            let key = from(&records[i])?;
            (i + 1..records.len())
                .find(|j| from(&records[*j]) == Some(key))
                .map(|j| (i, j))
        })
        .expect("two deliveries from one sender");
    // Swap the events only: the same steps, handed their messages in the other order.
    let (a, b) = (records[i].event.clone(), records[j].event.clone());
    records[i].event = b;
    records[j].event = a;
    let reordered = validate::validate(files);
    assert!(
        kinds(&reordered).iter().any(|k| k == "causality"),
        "{}",
        reordered.text()
    );

    // A restarted broker that loads a high watermark above anything it saved.
    let mut files = read_traces(&traces);
    let (_, broker) = files
        .iter_mut()
        .find(|(name, _)| name == "broker-2.trace")
        .unwrap();
    let restart = broker
        .records
        .iter_mut()
        .filter(|r| matches!(r.event, Event::Start { .. }))
        .nth(1)
        .expect("broker 2 restarted");
    let Event::Start {
        storage: Some(Storage::Broker(s)),
        ..
    } = &mut restart.event
    else {
        panic!("the restart loaded no storage")
    };
    let s = std::sync::Arc::make_mut(s);
    for r in s.replicas.values_mut() {
        r.high_watermark += 1_000;
    }
    let forged = validate::validate(files);
    assert!(
        forged
            .mismatches
            .iter()
            .any(|f| f.kind == "recovery" && f.detail.contains("above the saved")),
        "{}",
        forged.text()
    );
}

#[test]
fn a_host_that_sends_before_it_saves_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, traces) = traced_cluster(dir.path(), Some(1));
    run(
        &cluster,
        &["produce", "v", "--acks", "all"],
        &values(200, "x"),
    );
    cluster.stop_all();
    let report = validate::validate_dir(&traces).unwrap();
    assert!(!report.mismatches.is_empty(), "{}", report.text());
    for m in &report.mismatches {
        assert!(m.process.starts_with("broker 1 "), "{m:?}");
    }
    assert!(
        report
            .mismatches
            .iter()
            .any(|m| m.detail.contains("the host did [send")),
        "{}",
        report.text()
    );
    // The command line says so too, with status 1 and the step in check's format.
    let out = Command::new(exe())
        .args(["validate", traces.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first finding: mismatch"), "{text}");
    assert!(text.contains("does not replay"), "{text}");
    let json = Command::new(exe())
        .args(["validate", "--json", traces.to_str().unwrap()])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for key in ["nodes", "events", "mismatches", "violations"] {
        assert!(j.get(key).is_some(), "{key} missing from {j}");
    }
    // Bad input: a directory without traces, and a file that is not one.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(exe())
        .args(["validate", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(empty.path().join("x.trace"), b"not a trace").unwrap();
    let out = Command::new(exe())
        .args(["validate", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a trace file"));
}
