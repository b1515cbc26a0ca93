//! The `watermark` command line: reports, JSON, exit statuses and errors.

use std::process::{Command, Output};

fn watermark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn presets_lists_canonical_first_with_its_knobs() {
    let o = watermark(&["presets"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("canonical"), "{out}");
    assert!(out.contains("3 brokers, 1 partition, RF=3, min.insync.replicas=2, acks=all, kip-320"));
    for name in [
        "two-partitions",
        "controller-crash",
        "lossy-duplicating",
        "consumer",
    ] {
        assert!(out.contains(name), "{name} missing from {out}");
    }
}

#[test]
fn check_json_reports_every_property_with_its_verdict() {
    let o = watermark(&["check", "--preset", "idempotent", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["preset"], "idempotent");
    assert_eq!(v["complete"], true);
    assert!(v["unique_states"].as_u64().unwrap() > 1000);
    assert!(v["states"].as_u64().unwrap() >= v["unique_states"].as_u64().unwrap());
    assert!(v["max_depth"].as_u64().unwrap() > 0);
    assert!(v["seconds"].as_f64().is_some());
    let properties = v["properties"].as_array().unwrap();
    assert!(properties.len() >= 10);
    for p in properties {
        let expectation = p["expectation"].as_str().unwrap();
        let verdict = p["verdict"].as_str().unwrap();
        match expectation {
            "always" => assert_eq!(verdict, "holds", "{p}"),
            "sometimes" => {
                assert_eq!(verdict, "found", "{p}");
                assert!(p["trace"].as_array().is_some_and(|t| !t.is_empty()), "{p}");
            }
            "eventually" => assert_eq!(verdict, "holds", "{p}"),
            other => panic!("unexpected expectation {other}"),
        }
    }
    assert!(properties
        .iter()
        .any(|p| p["name"] == "NoDuplicateSequence"));
}

#[test]
fn a_violated_invariant_exits_1_with_a_readable_counterexample() {
    let o = watermark(&[
        "check",
        "--preset",
        "canonical",
        "--protocol",
        "hwm-truncation",
        "--brokers",
        "2",
        "--replication-factor",
        "2",
        "--min-insync-replicas",
        "1",
        "--broker-crashes",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("violated"), "{out}");
    assert!(out.contains("counterexample for"), "{out}");
    // Steps name actors and messages, and show logs as offset@epoch:value with LEO and HWM.
    assert!(out.contains("handles"), "{out}");
    assert!(out.contains("@0:a"), "{out}");
    assert!(
        out.contains("LEO") && out.contains("HWM") && out.contains("ISR"),
        "{out}"
    );
    assert!(out.contains("Explorer path: /#/steps/"), "{out}");
}

#[test]
fn progress_goes_to_stderr_while_checking() {
    let o = watermark(&["check", "--preset", "slow-follower"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("checking preset slow-follower"));
    assert!(stdout(&o).contains("complete: every reachable state within the bounds was checked"));
}

#[test]
fn progress_is_drawn_on_a_terminal_and_nowhere_else() {
    // Not a terminal: the one header line, and no progress.
    let o = watermark(&["check", "--timeout", "1.5"]);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("unique/s"), "{err}");
    // A terminal (a pseudo-terminal through util-linux's `script`): the spinner with the counts.
    let command = format!("{} check --timeout 1.5", env!("CARGO_BIN_EXE_watermark"));
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("util-linux's script runs");
    let seen = stdout(&o);
    assert!(seen.contains("unique/s"), "{seen}");
    assert!(seen.contains("exploring"), "{seen}");
    // --json on a terminal: nothing drawn.
    let o = Command::new("script")
        .args(["-qec", &format!("{command} --json"), "/dev/null"])
        .output()
        .expect("util-linux's script runs");
    let seen = stdout(&o);
    assert!(
        !seen.contains("unique/s") && !seen.contains("exploring"),
        "{seen}"
    );
}

#[test]
fn a_timeout_gives_an_incomplete_report() {
    let o = watermark(&["check", "--timeout", "0.3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["complete"], false);
}

#[test]
fn bad_arguments_are_one_clear_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["check", "--preset", "nope"], "unknown preset 'nope'"),
        (
            &["check", "--replication-factor", "5"],
            "--replication-factor must be between 1 and the number of brokers (3), not 5",
        ),
        (
            &["check", "--min-insync-replicas", "4"],
            "--min-insync-replicas must be between 1",
        ),
        (&["check", "--acks", "2"], "acks must be 0, 1 or all"),
        (
            &["check", "--protocol", "kip-999"],
            "unknown protocol 'kip-999'",
        ),
        (
            &["check", "--network", "carrier-pigeon"],
            "unknown network 'carrier-pigeon'",
        ),
        (
            &["check", "--strategy", "simulation"],
            "runs until --timeout",
        ),
        (
            &["check", "--timeout", "-1"],
            "--timeout must be a positive number",
        ),
        (&["check", "--threads", "0"], "--threads must be at least 1"),
        (
            &[
                "produce",
                "t",
                "--idempotent",
                "maybe",
                "--bootstrap-server",
                "127.0.0.1:1",
            ],
            "invalid value 'maybe' for '--idempotent",
        ),
        (
            &["bench", "produce", "--records", "0"],
            "--records and --record-bytes must be at least 1",
        ),
        (
            &["bench", "failover", "--runs", "0"],
            "--runs must be at least 1",
        ),
    ];
    for (args, message) in cases {
        let o = watermark(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn bad_topic_configs_are_refused_before_anything_is_sent() {
    // Port 1 on loopback: nothing listens, so an error here comes from the parsing alone.
    let server = "127.0.0.1:1";
    let create = |config: &str| -> Vec<String> {
        [
            "topic",
            "create",
            "t",
            "--partitions",
            "1",
            "--replication-factor",
            "2",
            "--config",
            config,
            "--bootstrap-server",
            server,
        ]
        .map(String::from)
        .to_vec()
    };
    let alter = |extra: &[&str]| -> Vec<String> {
        let mut args = [
            "configs",
            "--alter",
            "--topic",
            "t",
            "--bootstrap-server",
            server,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            create("retention.ms=1000"),
            "unknown topic config 'retention.ms' (the topic configs are min.insync.replicas, unclean.leader.election.enable)",
        ),
        (
            create("min.insync.replicas=two"),
            "min.insync.replicas must be a whole number of at least 1, not 'two'",
        ),
        (
            create("min.insync.replicas=3"),
            "min.insync.replicas 3 is above the replication factor 2",
        ),
        (create("min.insync.replicas"), "expected KEY=VALUE"),
        (
            alter(&["--add-config", "unclean.leader.election.enable=maybe"]),
            "unclean.leader.election.enable must be true or false, not 'maybe'",
        ),
        (
            alter(&["--add-config", "min.insync.replicas=2,min.insync.replicas=3"]),
            "min.insync.replicas is given twice",
        ),
        (alter(&["--delete-config", "segment.bytes"]), "bad --delete-config: unknown topic config 'segment.bytes'"),
        (alter(&[]), "--alter needs --add-config or --delete-config"),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = watermark(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    // Neither --alter nor --describe: clap says which is needed.
    let o = watermark(&["configs", "--topic", "t", "--bootstrap-server", server]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--alter"), "{}", stderr(&o));
}

/// `consume --group` and `groups` refuse bad group settings with one clear line and status 2,
/// before they contact any broker or create anything.
#[test]
fn bad_group_arguments_are_refused_before_anything_is_sent() {
    // Port 1 on loopback: nothing listens, so an error here comes from the parsing alone.
    let server = "127.0.0.1:1";
    let consume = |extra: &[&str]| -> Vec<String> {
        let mut args = ["consume", "t", "--bootstrap-server", server]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let long_group = "g".repeat(250);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            consume(&["--group", ""]),
            "bad --group: a group id must not be empty",
        ),
        (
            consume(&["--group", &long_group]),
            "bad --group: a group id holds at most 249 bytes, not 250",
        ),
        (
            consume(&["--group", "g", "--auto-offset-reset", "foo"]),
            "auto.offset.reset must be earliest or latest, not 'foo'",
        ),
        (
            consume(&["--group", "g", "--enable-auto-commit", "maybe"]),
            "invalid value 'maybe' for '--enable-auto-commit",
        ),
        (
            consume(&["--group", "g", "--auto-commit-interval-ms", "0"]),
            "invalid value '0' for '--auto-commit-interval-ms",
        ),
        (
            consume(&[
                "--group",
                "g",
                "--from-beginning",
                "--auto-offset-reset",
                "latest",
            ]),
            "--from-beginning and --auto-offset-reset latest contradict each other",
        ),
        (consume(&["--auto-offset-reset", "earliest"]), "--group"),
        (consume(&["--enable-auto-commit", "false"]), "--group"),
        (
            [
                "groups",
                "--describe",
                "--group",
                "",
                "--bootstrap-server",
                server,
            ]
            .map(String::from)
            .to_vec(),
            "bad --group: a group id must not be empty",
        ),
        (
            ["groups", "--group", "g", "--bootstrap-server", server]
                .map(String::from)
                .to_vec(),
            "--describe",
        ),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = watermark(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn check_can_stop_at_the_first_violation_and_says_the_rest_is_unknown() {
    let o = watermark(&[
        "check",
        "--brokers",
        "2",
        "--replication-factor",
        "2",
        "--min-insync-replicas",
        "1",
        "--broker-crashes",
        "2",
        "--protocol",
        "hwm-truncation",
        "--stop-at-first-violation",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stopped_at_first_violation"], true);
    assert_eq!(v["complete"], false);
    let verdicts: Vec<&str> = v["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts.iter().filter(|v| **v == "violated").count(), 1);
    assert!(verdicts.contains(&"unknown"), "{verdicts:?}");
    assert!(!verdicts.contains(&"holds"), "{verdicts:?}");
    let violated = v["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["verdict"] == "violated")
        .unwrap();
    assert!(violated["trace"].as_array().is_some_and(|t| !t.is_empty()));
}

#[test]
fn bench_runs_its_own_cluster_and_reports_json() {
    let json = |args: &[&str]| -> serde_json::Value {
        let o = watermark(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).expect("one JSON object")
    };
    let p = json(&[
        "bench",
        "produce",
        "--records",
        "2000",
        "--record-bytes",
        "50",
        "--json",
    ]);
    assert_eq!(p["acknowledged"], 2000);
    assert_eq!(p["acks"], "all");
    for key in [
        "records_per_s",
        "p50_ms",
        "p99_ms",
        "udp_baseline_records_per_s",
        "ratio_to_udp",
    ] {
        assert!(p[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {p}");
    }
    assert!(p["p50_ms"].as_f64() <= p["p99_ms"].as_f64(), "{p}");
    // Throttled: one set of producers is handed the records over time, the last at 0.4995 s.
    let r = json(&[
        "bench",
        "produce",
        "--records",
        "1000",
        "--record-bytes",
        "50",
        "--rate",
        "2000",
        "--json",
    ]);
    assert_eq!(
        (r["acknowledged"].as_u64(), r["rate"].as_u64()),
        (Some(1000), Some(2000))
    );
    assert!(r["elapsed_s"].as_f64().is_some_and(|s| s >= 0.4995), "{r}");
    assert!(r["p50_ms"].as_f64() <= r["p99_ms"].as_f64(), "{r}");
    let c = json(&["bench", "consume", "--records", "2000", "--json"]);
    assert_eq!(c["read"], 2000);
    let f = json(&[
        "bench",
        "failover",
        "--runs",
        "1",
        "--session-timeout-ms",
        "500",
        "--json",
    ]);
    assert_eq!(f["session_timeout_ms"], 500);
    let took = f["p50_ms"].as_f64().unwrap();
    // The new leader is elected once the dead one's session expires: at least the session
    // timeout after its last heartbeat, which was at most a heartbeat interval (300 ms, with
    // jitter up to 360 ms) before the kill.
    assert!(took >= 500.0 - 360.0, "{f}");
}

#[test]
fn check_runs_the_quorum_model_and_refuses_data_plane_knobs_with_it() {
    let o = watermark(&["check", "--preset", "quorum", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["model"], "quorum");
    assert_eq!(v["complete"], true);
    let ids: Vec<&str> = v["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in ["I20", "I21", "I22", "I23", "S25", "S26", "S27", "S29"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for p in v["properties"].as_array().unwrap() {
        let good = ["holds", "found"].contains(&p["verdict"].as_str().unwrap());
        assert!(good, "{p}");
    }
    let o = watermark(&["check", "--preset", "quorum", "--producers", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("quorum model"), "{}", stderr(&o));
    let o = watermark(&["explore", "--preset", "quorum"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("watermark check --preset quorum"),
        "{}",
        stderr(&o)
    );
    let o = watermark(&["check", "--controllers", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--controllers must be at least 1"),
        "{}",
        stderr(&o)
    );
}
