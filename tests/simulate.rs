//! Deterministic simulation (`watermark simulate`): the default protocol is safe and recovers
//! under faults; the sweep finds the defects it exists for (a replica stuck under push-only
//! metadata, lost commits before KIP-101); a seed replays exactly.

use std::ops::Range;
use std::process::Command;
use watermark_checks::sim::{self, Faults, SimOptions, SweepReport, Verdict};
use watermark_checks::Knobs;
use watermark_model::{OffsetReset, Protocol};

/// The canonical cluster with two producers writing 20 records each, whose writes start during
/// the fault phase.
fn knobs() -> Knobs {
    Knobs {
        producers: 2,
        records: 20,
        ..Knobs::canonical()
    }
}

fn options(knobs: Knobs) -> SimOptions {
    SimOptions {
        knobs,
        faults: Faults::default(),
        fault_s: 30,
        heal_s: 30,
        trace_steps: 0,
    }
}

fn sweep(options: &SimOptions, seeds: Range<u64>) -> SweepReport {
    sim::sweep(options, seeds, 2, None)
}

fn failures(report: &SweepReport) -> String {
    report
        .failures
        .iter()
        .map(|f| format!("seed {}: {:?}", f.seed, f.verdict))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_default_protocol_is_safe_and_recovers_on_every_seed() {
    let report = sweep(&options(knobs()), 0..400);
    assert_eq!(report.passed, 400, "{}", failures(&report));
    // The faults really happened: every kind, on most seeds.
    for kind in ["crash", "loss", "duplicate", "partition"] {
        let n = report.faults.get(kind).copied().unwrap_or(0);
        assert!(n >= 200, "only {n} faults of kind {kind} in 400 seeds");
    }
    assert!(report.recovery_s_max > 0.0);
}

#[test]
fn controller_crashes_too_are_survived() {
    let report = sweep(
        &options(Knobs {
            controller_crashes: 1,
            ..knobs()
        }),
        0..200,
    );
    assert_eq!(report.passed, 200, "{}", failures(&report));
}

#[test]
fn idempotent_producers_are_safe_and_recover() {
    let report = sweep(
        &options(Knobs {
            idempotence: true,
            ..knobs()
        }),
        0..300,
    );
    assert_eq!(report.passed, 300, "{}", failures(&report));
}

/// A consumer group of two members (one per partition) whose coordinator fails over and whose
/// members crash and resume at their commits, under the sweep's faults: safe, and once healed
/// every acknowledged record is read (L4) and every member reads with its position committed
/// (L6), with the auto-commit timer from the earliest offset, and with a commit after each poll
/// from the latest (L4 then leaves out what a member with no commit skipped).
fn group_knobs(auto_commit: bool) -> Knobs {
    Knobs {
        partitions: 2,
        replication_factor: 2,
        consumers: 2,
        records: 10,
        auto_commit,
        offset_reset: if auto_commit {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        ..watermark_checks::preset("consumer-group").unwrap().knobs
    }
}

#[test]
fn a_consumer_group_is_safe_and_recovers_with_member_crashes() {
    for auto_commit in [true, false] {
        let report = sweep(&options(group_knobs(auto_commit)), 0..200);
        assert_eq!(
            report.passed,
            200,
            "auto commit {auto_commit}: {}",
            failures(&report)
        );
        // Not vacuous: members joined, rejoined and committed, many times over.
        let joins = report.rule_coverage.count(watermark_model::rules::R61);
        let commits = report.rule_coverage.count(watermark_model::rules::R62);
        assert!(joins > 1000 && commits > 1000, "R61 {joins}, R62 {commits}");
    }
}

/// L6 is not vacuous: with no time to heal, some seed ends with a member that has not yet got
/// back to reading with its position committed (one crashed near the end of the faults, say).
#[test]
fn a_member_not_back_to_reading_with_its_commit_fails_l6() {
    let mut options = options(group_knobs(true));
    options.heal_s = 0;
    let found = (0..100).find_map(|seed| match sim::run(&options, seed).verdict {
        Verdict::Liveness { conditions } => conditions
            .into_iter()
            .find(|c| c.starts_with("L6 every group member reads with its position committed")),
        _ => None,
    });
    let condition = found.expect("no seed of 100 failed L6 without a heal phase");
    assert!(condition.contains("consumer"), "{condition}");
}

/// A broker lost for good: once the healed cluster has recovered (L1–L3 for 5 s), one broker drawn by
/// the seed dies and never comes back. With RF=3 and min.insync.replicas=2 the cluster recovers
/// without it (L2 and L3 leave its replicas out), and the consumer and producers whose leader or
/// first bootstrap broker it was find another (L7: the consumer knows the new leader).
///
/// A group too, given 60 s to heal: a member may go through several steps (FindCoordinator,
/// JoinGroup, OffsetFetch), and each one sent to a broker that restarted after the heal may wait
/// for a request timeout; with 30 s, 1 or 2 of 200 seeds are still short of L6 or L7.
#[test]
fn a_broker_lost_for_good_is_survived() {
    let mut canonical = options(knobs());
    canonical.faults.brokers_dead_after_heal = 1;
    let mut group = options(Knobs {
        brokers: 3,
        ..group_knobs(false)
    });
    group.faults.brokers_dead_after_heal = 1;
    group.heal_s = 60;
    for options in [canonical, group] {
        let report = sweep(&options, 0..200);
        assert_eq!(report.passed, 200, "{}", failures(&report));
    }
}

/// Under Kafka's default flush policy nothing is fsynced: a broker that loses power restarts
/// with a prefix of its log, and when the leader fails next, acknowledged records are lost
/// although unclean election is off (the matrix's `unclean-shutdown-then-leader-fails`; KIP-966
/// is Kafka's answer). The simulator finds it too.
#[test]
fn power_losses_lose_acknowledged_records_as_the_matrix_says() {
    let mut options = options(knobs());
    options.faults.power_loss = 0.5;
    let report = sweep(&options, 0..300);
    assert!(report.faults.get("power-loss").copied().unwrap_or(0) > 0);
    let lost = report.failures.iter().any(|f| {
        matches!(
            f.verdict,
            Verdict::Safety {
                property: "AcknowledgedRecordsSurvive",
                ..
            }
        )
    });
    assert!(lost, "{}", failures(&report));
    // Only the power losses do it: the same seeds without them pass.
    options.faults.power_loss = 0.0;
    let seeds: Vec<u64> = report.failures.iter().map(|f| f.seed).collect();
    for seed in seeds {
        assert!(sim::run(&options, seed).verdict.passed(), "seed {seed}");
    }
}

/// The lost-LeaderAndIsr defect: with the heartbeat's pull switched off, a replica that missed
/// its LeaderAndIsr stays out of the ISR after the world heals (L2).
#[test]
fn push_only_metadata_leaves_a_replica_stuck_and_the_sweep_finds_it() {
    let report = sweep(
        &options(Knobs {
            metadata_pull: false,
            ..knobs()
        }),
        0..300,
    );
    let stuck = report
        .failures
        .iter()
        .filter(|f| match &f.verdict {
            Verdict::Liveness { conditions } => conditions
                .iter()
                .any(|c| c.starts_with("L2 every replica is back in its ISR")),
            _ => false,
        })
        .count();
    assert!(
        stuck > 0,
        "no stuck replica in 300 seeds:\n{}",
        failures(&report)
    );
    // Liveness only: the push-only variant is still safe.
    assert!(
        report
            .failures
            .iter()
            .all(|f| matches!(f.verdict, Verdict::Liveness { .. })),
        "{}",
        failures(&report)
    );
}

/// Before KIP-101 a restarted follower truncates to its own high watermark and may then lead
/// without records that were committed: the sweep must catch it in 1,000 seeds.
#[test]
fn hwm_truncation_violates_safety_within_a_thousand_seeds() {
    let report = sweep(
        &options(Knobs {
            protocol: Protocol::HwmTruncation,
            ..knobs()
        }),
        0..1000,
    );
    let unsafe_seeds: Vec<_> = report
        .failures
        .iter()
        .filter(|f| matches!(f.verdict, Verdict::Safety { .. }))
        .collect();
    assert!(
        !unsafe_seeds.is_empty(),
        "no safety violation in 1,000 seeds"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let mut options = options(Knobs {
        protocol: Protocol::HwmTruncation,
        ..knobs()
    });
    options.trace_steps = 50;
    for seed in [3, 112] {
        let a = sim::run(&options, seed);
        let b = sim::run(&options, seed);
        assert_eq!(a.verdict, b.verdict, "seed {seed}");
        assert_eq!(a.events, b.events, "seed {seed}");
        assert_eq!(a.virtual_s, b.virtual_s, "seed {seed}");
        assert_eq!(a.faults, b.faults, "seed {seed}");
        assert_eq!(
            serde_json::to_string(&a.trace).unwrap(),
            serde_json::to_string(&b.trace).unwrap(),
            "seed {seed}"
        );
    }
    // And different seeds make different worlds.
    let a = sim::run(&options, 1);
    let b = sim::run(&options, 2);
    assert_ne!((a.events, a.faults), (b.events, b.faults));
}

#[test]
fn a_sweep_counts_each_seed_once_whatever_the_threads() {
    let options = options(knobs());
    let one = sim::sweep(&options, 10..40, 1, None);
    let three = sim::sweep(&options, 10..40, 3, None);
    assert_eq!(one.seeds, 30);
    assert_eq!(one.passed + one.failures.len() as u64, 30);
    assert_eq!((one.events, one.passed), (three.events, three.passed));
    assert_eq!(one.faults, three.faults);
}

fn watermark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn the_cli_prints_a_failing_seed_with_its_trace_and_exits_1() {
    let o = watermark(&[
        "simulate",
        "--protocol",
        "hwm-truncation",
        "--producers",
        "2",
        "--records",
        "20",
        "--seeds",
        "0..1000",
        "--trace-steps",
        "10",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("1000 seeds, "), "{out}");
    assert!(out.contains("events/s"), "{out}");
    assert!(out.contains("virtual s per wall s"), "{out}");
    assert!(out.contains("rules fired: "), "{out}");
    assert!(out.contains("violated at"), "{out}");
    assert!(out.contains("the last 10 steps (replay: --seed "), "{out}");
}

#[test]
fn the_cli_json_report_has_the_totals_and_rule_counts() {
    let o = watermark(&["simulate", "--seeds", "0..20", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["seeds"], 20);
    assert_eq!(v["passed"], 20);
    assert!(v["events_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["virtual_s_per_wall_s"].as_f64().unwrap() > 0.0);
    assert!(v["rule_coverage"]["R21"].as_u64().unwrap() > 0);
    assert!(v["faults"]["loss"].as_u64().unwrap() > 0);
}

#[test]
fn the_cli_refuses_bad_arguments_clearly() {
    for (args, says) in [
        (vec!["simulate", "--seeds", "5..5"], "holds no seed"),
        (vec!["simulate", "--seeds", "x"], "seeds must be A..B"),
        (vec!["simulate", "--loss", "1.5"], "is a probability"),
        (
            vec!["simulate", "--heal-s", "0"],
            "--heal-s must be at least 1",
        ),
        (vec!["simulate", "--preset", "nope"], "nope"),
        (
            vec!["simulate", "--brokers-dead-after-heal", "2"],
            "more than the cluster can lose: with RF=3 and min.insync.replicas=2, 1 broker can",
        ),
    ] {
        let o = watermark(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
