//! Every rule of spec.md fires somewhere: across the cheap presets, a few revisions and a
//! simulation sweep, every handler arm (each cites its rule and records it) runs at least once,
//! except the named few below, each with its reason. A rule that nothing reaches is either dead
//! code or an untested one.
//!
//! The counts are process-wide, so this binary holds this one test alone.

use std::collections::BTreeMap;
use watermark_checks::runner::{run, RunOptions, Strategy};
use watermark_checks::sim::{self, Faults, SimOptions};
use watermark_checks::{preset, Knobs};
use watermark_model::rules::{
    Coverage, Recording, Rule, R3, R46, R47, R48, R55, R56, R73, R74, R75,
};
use watermark_model::Protocol;

/// The rules no run here reaches, and why.
fn exceptions() -> BTreeMap<Rule, &'static str> {
    BTreeMap::from([
        (
            R3,
            "a heartbeat from an older broker epoch: channels deliver in order and the transport \
             drops a dead incarnation's datagrams, so only an unordered network with crashes \
             reaches it, which no preset affords",
        ),
        (
            R46,
            "CreateTopics: the model's topics exist from the start; tests/cluster.rs and \
             tests/cli.rs exercise it on the real cluster",
        ),
        (
            R47,
            "DescribeTopics: an operator's request, exercised by tests/cluster.rs",
        ),
        (
            R48,
            "ListOffsets: an operator's request, exercised by tests/cluster.rs",
        ),
        (
            R55,
            "ElectLeaders: an operator's request (leader-election), exercised by \
             tests/cluster.rs and model/tests/controller.rs",
        ),
        (
            R56,
            "IncrementalAlterConfigs: an operator's request (configs --alter), exercised by \
             tests/cluster.rs and model/tests/controller.rs",
        ),
        (
            R73,
            "the controller of section 4 hosted on a quorum voter: the checker checks the two \
             as separate models (spec section 4a's contract); model/tests/kraft.rs and \
             tests/cluster.rs exercise it",
        ),
        (
            R74,
            "brokers finding the active controller of a quorum: model/tests/kraft.rs and \
             tests/cluster.rs",
        ),
        (
            R75,
            "DescribeQuorum: an operator's request (quorum --describe), exercised by \
             model/tests/kraft.rs and tests/cluster.rs",
        ),
    ])
}

fn check(name: &str, change: impl FnOnce(&mut Knobs)) {
    let mut knobs = preset(name).expect("a preset").knobs;
    change(&mut knobs);
    let outcome = run(
        &knobs,
        &RunOptions {
            strategy: Strategy::Bfs,
            threads: 2,
            ..RunOptions::default()
        },
    );
    assert!(outcome.complete, "{name}: the check did not complete");
}

fn check_quorum(name: &str) {
    let knobs = preset(name).expect("a preset").knobs;
    let outcome = watermark_checks::quorum::run(
        &knobs,
        &RunOptions {
            strategy: Strategy::Bfs,
            threads: 2,
            ..RunOptions::default()
        },
    );
    assert!(outcome.complete, "{name}: the check did not complete");
}

fn simulate(change: impl FnOnce(&mut Knobs)) {
    let mut knobs = Knobs {
        producers: 2,
        records: 20,
        ..Knobs::canonical()
    };
    change(&mut knobs);
    let options = SimOptions {
        knobs,
        faults: Faults::default(),
        fault_s: 30,
        heal_s: 30,
        trace_steps: 0,
    };
    sim::sweep(&options, 0..200, 2, None);
}

#[test]
fn every_rule_fires_somewhere_but_the_named_exceptions() {
    let recording = Recording::start();
    // Exhaustive checks of the cheap presets.
    check("idempotent", |_| {});
    // R40: an idempotent producer's sequence is refused once an unclean election lost records.
    check("idempotent", |k| k.unclean_leader_election = true);
    // R34, R35: the epoch lookup of KIP-101 and KIP-279.
    check("idempotent", |k| k.protocol = Protocol::Kip101);
    check("idempotent", |k| k.protocol = Protocol::Kip279);
    check("consumer", |_| {});
    // R57–R62: a group member, its coordinator, a consumer crash.
    check("consumer-group", |k| k.broker_crashes = 0);
    check("lossy-duplicating", |_| {});
    check("slow-follower", |_| {});
    // R25: a follower fetching past a leader that truncated to its high watermark.
    check("controller-crash", |k| k.protocol = Protocol::HwmTruncation);
    // R63–R72: the KRaft quorum, with a broker observing it.
    check_quorum("quorum-observer");
    // Simulated sweeps: timers, retransmission, false suspicions, metadata pulls.
    simulate(|_| {});
    simulate(|k| k.idempotence = true);
    simulate(|k| k.acks = watermark_model::Acks::Leader);
    // R52–R54: KIP-966's eligible leader replicas, under crashes and false suspicions.
    simulate(|k| k.eligible_leader_replicas = true);
    let coverage: Coverage = recording.coverage();
    drop(recording);

    let exceptions = exceptions();
    let unfired = coverage.unfired();
    let surprising: Vec<String> = unfired
        .iter()
        .filter(|r| !exceptions.contains_key(r))
        .map(|r| r.to_string())
        .collect();
    assert!(
        surprising.is_empty(),
        "rules that never fired: {}\n{}",
        surprising.join(" "),
        coverage.summary()
    );
    let reached: Vec<String> = exceptions
        .iter()
        .filter(|(r, _)| coverage.count(**r) > 0)
        .map(|(r, why)| format!("{r} ({why})"))
        .collect();
    assert!(
        reached.is_empty(),
        "named as never firing, but fired: {}; remove them from the exceptions",
        reached.join("; ")
    );
}
