//! `watermark explore` over HTTP: the Explorer's `/.status` and `/.states/…` on an ephemeral
//! loopback port, states in Kafka's terms, counterexample paths that `watermark check` prints, a
//! clear error for a taken address, and the page in headless Chromium.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use watermark_checks::{preset, report, Knobs, Network};
use watermark_model::{Acks, Protocol};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `watermark explore`, killed when dropped.
struct Explorer {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    url: String,
}

impl Explorer {
    /// Starts `watermark explore ARGS --addr 127.0.0.1:0` and waits for the URL it prints.
    fn start(args: &[&str]) -> Explorer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_watermark"))
            .arg("explore")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("watermark explore starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Constructed before waiting, so that a failure below still kills the child.
        let mut explorer = Explorer {
            child,
            url: String::new(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut printed = Vec::new();
        while explorer.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no URL printed ({e}); printed so far: {printed:?}"));
            if let Some(rest) = line.strip_prefix("serving on ") {
                explorer.url = rest.trim().to_string();
            }
            printed.push(line);
        }
        assert!(
            printed.iter().any(|l| l.contains("explores on demand")),
            "startup says it explores on demand: {printed:?}"
        );
        assert!(explorer.url.starts_with("http://127.0.0.1:"), "{printed:?}");
        assert!(
            !explorer.url.ends_with(":0/"),
            "the actual port is printed: {printed:?}"
        );
        explorer
    }

    /// GET `path` (which starts with `/`), as JSON.
    fn get_json(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.url, path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The Explorer's next steps from the state at action indices `path`.
    fn next_steps(&self, path: &[usize]) -> Vec<Value> {
        let suffix: String = path.iter().map(|i| format!("/{i}")).collect();
        let steps = self.get_json(&format!("/.states{suffix}"));
        steps.as_array().expect("an array of steps").clone()
    }

    /// Takes the first action whose label contains `action`, appends its index to `path`, and
    /// returns the state it leads to, as the Explorer shows it.
    fn take(&self, path: &mut Vec<usize>, action: &str) -> String {
        let steps = self.next_steps(path);
        let step = steps
            .iter()
            .find(|s| s["action"].as_str().is_some_and(|a| a.contains(action)))
            .unwrap_or_else(|| {
                let offered: Vec<&str> =
                    steps.iter().filter_map(|s| s["action"].as_str()).collect();
                panic!("no action like {action:?} after {path:?}; offered: {offered:#?}")
            });
        path.push(step["actionIndex"].as_u64().expect("an action index") as usize);
        step["state"]
            .as_str()
            .unwrap_or_else(|| panic!("{action:?} changes the state"))
            .to_string()
    }
}

impl Drop for Explorer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET (no chunked encoding, the server closes the connection).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header end in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
    (status, body.to_string())
}

/// The line of `state` that starts (after indentation) with `prefix`.
fn line<'a>(state: &'a str, prefix: &str) -> &'a str {
    state
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{state}"))
}

/// The replica lines of broker `id` (the indented lines after its heading).
fn replica_of(state: &str, id: u32) -> String {
    let heading = format!("broker {id} ");
    let mut lines = state.lines().skip_while(|l| !l.starts_with(&heading));
    lines
        .next()
        .unwrap_or_else(|| panic!("no {heading:?} in\n{state}"));
    lines
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

fn watermark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn explorer_follows_a_replicated_write_and_a_leader_election_over_http() {
    let explorer = Explorer::start(&["--preset", "idempotent"]);

    let status = explorer.get_json("/.status");
    assert_eq!(status["done"], false, "nothing runs until asked: {status}");
    let properties = status["properties"].as_array().expect("properties");
    assert!(
        properties.iter().any(|p| p[1] == "StrongIsr"),
        "the model's properties are listed: {status}"
    );

    // The initial state: broker 1 leads t-0 in leader epoch 0 with both replicas in the ISR.
    let init = explorer.next_steps(&[]);
    assert_eq!(init.len(), 1, "one initial state");
    let state = init[0]["state"].as_str().expect("state text");
    assert_eq!(
        line(state, "t-0 leader 1"),
        "t-0 leader 1 leader epoch 0 partition epoch 0 ISR [1,2] replicas [1,2]"
    );
    assert_eq!(
        replica_of(state, 1),
        "t-0 leader (epoch start 0) leader epoch 0 log [] LEO 0 HWM 0 ISR [1,2]"
    );
    assert!(state.contains("Fetch(t-0 replica 2 offset 0"), "{state}");
    let mut path = vec![0];

    // A replicated write: the producer finds the leader and writes `a` with acks=all; the leader
    // answers the follower's parked fetch with it, and the follower's next fetch moves the HWM.
    explorer.take(&mut path, "broker 1 handles Metadata(t) from producer 0");
    explorer.take(&mut path, "producer 0 handles MetadataResponse");
    let state = explorer.take(&mut path, "broker 1 handles Produce(t-0 acks=all");
    assert!(
        replica_of(&state, 1).contains("log [0@0:a] LEO 1 HWM 0 ISR [1,2]"),
        "appended, not yet committed:\n{state}"
    );
    explorer.take(&mut path, "broker 1 handles Fetch(t-0 replica 2 offset 0");
    let state = explorer.take(&mut path, "broker 2 handles FetchResponse(t-0 offset 0");
    assert!(
        replica_of(&state, 2).contains("follower of broker 1")
            && replica_of(&state, 2).contains("log [0@0:a] LEO 1 HWM 0"),
        "the follower has the record:\n{state}"
    );
    let state = explorer.take(&mut path, "broker 1 handles Fetch(t-0 replica 2 offset 1");
    assert!(
        replica_of(&state, 1).contains("log [0@0:a] LEO 1 HWM 1 ISR [1,2]"),
        "the leader's HWM passes the record once the ISR has it:\n{state}"
    );
    let state = explorer.take(&mut path, "producer 0 handles ProduceResponse");
    assert!(
        line(&state, "producer 0:").contains("acked t-0@0:a"),
        "{state}"
    );

    // A leader election: broker 1 crashes, its session expires, and the controller elects
    // broker 2, the other ISR member, in leader epoch 1.
    let state = explorer.take(&mut path, "broker 1 crashes");
    assert!(state.contains("broker 1 CRASHED"), "{state}");
    let state = explorer.take(
        &mut path,
        "controller: timer SessionTimeout(broker 1) fires",
    );
    assert!(
        line(&state, "controller").contains("1 fenced"),
        "the controller fences broker 1:\n{state}"
    );
    assert_eq!(
        line(&state, "t-0 leader 2"),
        "t-0 leader 2 leader epoch 1 partition epoch 1 ISR [2] replicas [1,2]"
    );
    let state = explorer.take(&mut path, "broker 2 handles LeaderAndIsr");
    let replica = replica_of(&state, 2);
    assert!(
        replica.starts_with("t-0 leader (epoch start 1) leader epoch 1 log [0@0:a] LEO 1")
            && replica.ends_with("ISR [2]"),
        "broker 2 leads epoch 1 and keeps the committed record:\n{state}"
    );

    // The path is an Explorer URL too: the same state at /.states/<path> (as a prefix).
    let last = *path.last().unwrap();
    let again = explorer.next_steps(&path[..path.len() - 1]);
    let same = again
        .iter()
        .find(|s| s["actionIndex"] == last)
        .expect("the step is offered again");
    assert_eq!(same["state"].as_str(), Some(state.as_str()));
}

#[test]
fn a_counterexample_path_from_check_opens_in_another_process() {
    // acks=1 loses an acknowledged record when the leader dies before the follower fetched it.
    let o = watermark(&["check", "--preset", "idempotent", "--acks", "1"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let hint = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("open it: watermark explore "))
        .unwrap_or_else(|| panic!("no explore command in\n{out}"));
    let steps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Explorer path: /#/steps/"))
        .unwrap_or_else(|| panic!("no Explorer path in\n{out}"));
    assert!(
        out.contains(&format!("then:    http://127.0.0.1:3000/#/steps/{steps}")),
        "{out}"
    );
    let path: Vec<usize> = steps.split('/').map(|i| i.parse().unwrap()).collect();
    // The trace's last step: its heading and the brokers' logs after it.
    let trace: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("counterexample for"))
        .take_while(|l| !l.trim().starts_with("Explorer path"))
        .collect();
    let last_heading = trace
        .iter()
        .rev()
        .find_map(|l| {
            let (number, heading) = l.trim().split_once(". ")?;
            number.parse::<usize>().ok().map(|_| heading)
        })
        .expect("numbered steps");

    let args: Vec<&str> = hint.split_whitespace().collect();
    let explorer = Explorer::start(&args);
    let (last, prefix) = path.split_last().unwrap();
    let steps = explorer.next_steps(prefix);
    let step = steps
        .iter()
        .find(|s| s["actionIndex"] == *last)
        .expect("the last action is offered");
    assert_eq!(step["action"].as_str(), Some(last_heading));
    let state = step["state"].as_str().expect("a state");
    // Every broker log the trace shows after the last step is in the Explorer's state.
    let after_last = trace
        .iter()
        .rev()
        .take_while(|l| !l.contains(last_heading))
        .filter_map(|l| l.split_once(" log ").map(|(_, log)| log))
        .collect::<Vec<_>>();
    assert!(!after_last.is_empty(), "{trace:#?}");
    for log in after_last {
        assert!(
            state.contains(&format!("log {log}")),
            "log {log} missing from\n{state}"
        );
    }
}

#[test]
fn explore_refuses_a_taken_address_with_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = watermark(&["explore", "--preset", "idempotent", "--addr", &addr]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve the Explorer on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn explore_command_flags_give_back_the_same_knobs() {
    let canonical = Knobs::canonical();
    let cases = [
        preset("lossy-duplicating").unwrap().knobs,
        Knobs {
            protocol: Protocol::HwmTruncation,
            brokers: 2,
            replication_factor: 2,
            min_insync_replicas: 1,
            broker_crashes: 2,
            ..canonical.clone()
        },
        Knobs {
            acks: Acks::Leader,
            unclean_leader_election: true,
            idempotence: true,
            preferred_leader_election: false,
            false_suspicions: true,
            client_request_timeout: true,
            network: Network {
                ordered: false,
                duplicating: true,
                lossy: true,
            },
            isr_shrinks: 1,
            consumers: 1,
            controller_crashes: 1,
            leader_epoch_max: 3,
            producer_attempts_max: 3,
            ..canonical.clone()
        },
    ];
    for knobs in cases {
        let flags = knobs.preset_and_flags();
        let mut args = vec!["check"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["--timeout", "0.01", "--json"]);
        let o = watermark(&args);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let v: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(v["knobs"], report::knobs_json(&knobs), "{args:?}");
    }
}

#[test]
fn explorer_renders_in_headless_chromium() {
    // CI runs this too (installing Chromium takes about 20 s); set WATERMARK_BROWSER_TEST=skip
    // on a machine where apt-get cannot install it.
    if std::env::var("WATERMARK_BROWSER_TEST").as_deref() == Ok("skip") {
        eprintln!("SKIPPED explorer_renders_in_headless_chromium: WATERMARK_BROWSER_TEST=skip");
        return;
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-test");
    let _ = std::fs::remove_file(out.join("explorer.png"));
    let _ = std::fs::remove_file(out.join("dom.html"));
    let started = Instant::now();
    let o = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/browser-test.sh"
    ))
    .arg(&out)
    // The initial state.
    .arg("0")
    .args(["--preset", "idempotent"])
    .env("WATERMARK", env!("CARGO_BIN_EXE_watermark"))
    .output()
    .expect("the script runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "scripts/browser-test.sh failed ({:?}):\n{stderr}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    let dom = std::fs::read_to_string(out.join("dom.html")).expect("the DOM was dumped");
    assert!(
        dom.contains("LEO 0 HWM 0 ISR [1,2]"),
        "the initial state is on the page"
    );
    let png = std::fs::read(out.join("explorer.png")).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!(
        "browser test: {:.1} s; screenshot {}",
        started.elapsed().as_secs_f64(),
        out.join("explorer.png").display()
    );
}
