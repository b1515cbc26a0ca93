//! The checks the mutation pass runs on every mutant of `model/` (`scripts/mutants.sh`, issue
//! 18): the exhaustive checks alone, no unit test. A mutant is caught when a preset's Always
//! property fails or a Sometimes twin goes unfound, when a configuration stops firing a rule it
//! fired or starts firing one it never did (`RULES_FIRED`), or when a matrix row's verdict
//! changes.
//!
//! State counts are not compared: a mutant that only changes how many states there are is not
//! caught by what the checker proves. Stage 1 of the script runs the cheap presets and the matrix
//! without its slowest rows (`HEAVY_ROWS`), so that one mutant costs seconds, not minutes;
//! stage 1b runs the heavy rows (`heavy_…`) on the mutants stage 1 missed.
//!
//! These tests are ignored in the ordinary test run (model_check.rs and matrix.rs run the same
//! checks, with pinned state counts); the script runs them with `--include-ignored`.

use watermark_checks::knobs::Knobs;
use watermark_checks::matrix;
use watermark_checks::preset;
use watermark_checks::runner::{run, RunOptions, Strategy, Verdict};
use watermark_model::rules::Coverage;
use watermark_model::{OffsetReset, Protocol};

/// The presets the pass checks in full, every applicable property.
pub const PRESETS: &[&str] = &[
    "idempotent",
    "lossy-duplicating",
    "slow-follower",
    "consumer",
    // Two batches in flight (S18): the producer's window.
    "pipelined",
    // Batches and fetch responses of two records: the byte limits of `Log::read` and
    // `Producer::batch` (I24, I25 and their twins).
    "batched",
    // The only configuration of stage 1 in which a broker applies a change that follows on one
    // it never got (S43: a leader's AlterPartition answer spans the other leader's change, R51),
    // so that a metadata offset moved over the gap breaks I35, and in which a registered,
    // unfenced broker heartbeats (B7: the periodic heartbeat, R6, and its pull, R49).
    "metadata-gap",
];

/// The matrix rows left out: each takes 9 to 50 s.
pub const HEAVY_ROWS: &[&str] = &[
    "acks-all-min-isr-1",
    "unclean-shutdown-then-leader-fails-kip-966",
    "stale-hwm-checkpoint-consumed",
    "kip-101-fast-failover",
    "kip-279-fast-failover",
    // The consumer-group rows (issue 13) came after this list and made stage 1 take 211 s per
    // mutant (2026-12-07): more than its timeout, so every mutant timed out.
    "offsets-rf-1-latest",
    "offsets-rf-1-earliest",
    "offsets-replicated-latest",
];

/// `controller-crash` without records (48,257 states, about a second): the only configuration of
/// the pass in which the controller restarts, so the only one that sees what it persists (R1, R7)
/// and the epoch it restarts in.
fn controller_restarts() -> (&'static str, Knobs) {
    let knobs = Knobs {
        records: 0,
        ..preset("controller-crash").unwrap().knobs
    };
    ("controller-crash without records", knobs)
}

/// The matrix's isolated leader: `pair` with one false suspicion instead of a crash (1,933
/// states). The only configuration of the pass in which a live broker is fenced and asks to be
/// unfenced (R5).
fn isolated_leader() -> (&'static str, Knobs) {
    let knobs = Knobs {
        brokers: 2,
        replication_factor: 2,
        min_insync_replicas: 1,
        records: 1,
        broker_crashes: 0,
        leader_epoch_max: 1,
        preferred_leader_election: false,
        false_suspicions: true,
        ..Knobs::canonical()
    };
    ("isolated leader", knobs)
}

/// The pair of `idempotent` without idempotence, under KIP-279 (11,697 states, a tenth of a
/// second): the only configuration of stage 1 whose followers truncate by asking their leader
/// for an epoch's end offset (OffsetsForLeaderEpoch, R33–R35) rather than by the fetch's
/// divergence check (KIP-320). With L0, a follower left waiting on that answer is caught. The
/// matrix's KIP-101 and KIP-279 rows judge one property each; this one judges them all.
fn epoch_lookup() -> (&'static str, Knobs) {
    let knobs = Knobs {
        idempotence: false,
        protocol: Protocol::Kip279,
        ..preset("idempotent").unwrap().knobs
    };
    ("kip-279 pair", knobs)
}

/// KIP-966 on the isolated leader's pair, with min.insync.replicas=2, two leader epochs and a
/// crash (257,525 states, about a second): the only configuration of stage 1 with eligible
/// leader replicas, in which a replica leaves the ISR into the ELR (R52), one is elected from it
/// after a false suspicion (R53), and a restarted broker leaves both (R54). Before it, only the
/// heavy row `unclean-shutdown-then-leader-fails-kip-966` saw those rules.
fn eligible_leader_replicas() -> (&'static str, Knobs) {
    let (_, isolated) = isolated_leader();
    let knobs = Knobs {
        min_insync_replicas: 2,
        broker_crashes: 1,
        leader_epoch_max: 2,
        eligible_leader_replicas: true,
        ..isolated
    };
    ("eligible leader replicas", knobs)
}

/// The same pair with an ISR shrink instead of a crash (12,442 states, a tenth of a second): the
/// only configuration of stage 1 in which a leader drops a follower from an ISR at
/// min.insync.replicas, so that the follower joins the ELR through the leader's AlterPartition
/// (R7, R52) rather than its fencing, and leaves it when the leader adds it back (R8).
fn eligible_leader_replicas_with_isr_shrink() -> (&'static str, Knobs) {
    let (_, elr) = eligible_leader_replicas();
    let knobs = Knobs {
        broker_crashes: 0,
        isr_shrinks: 1,
        ..elr
    };
    ("eligible leader replicas with an ISR shrink", knobs)
}

/// KIP-966 on three replicas, without records: a false suspicion and an ISR shrink, with
/// min.insync.replicas 2 (78,075 states) and 3 (76,261 states), half a second each. The pair's
/// ISR is always under min.insync.replicas once a replica leaves it; here it can be left at the
/// minimum (where a fenced replica must not join the ELR), and, with a minimum of 3, the leader
/// can shrink an ISR that is already under it while the ELR has a member (which must stay).
fn eligible_leader_replicas_on_three_replicas() -> [(&'static str, Knobs); 2] {
    let knobs = Knobs {
        records: 0,
        broker_crashes: 0,
        false_suspicions: true,
        isr_shrinks: 1,
        leader_epoch_max: 2,
        preferred_leader_election: false,
        eligible_leader_replicas: true,
        ..Knobs::canonical()
    };
    [
        ("eligible leader replicas on three replicas", knobs.clone()),
        (
            "eligible leader replicas on three replicas with min.insync.replicas 3",
            Knobs {
                min_insync_replicas: 3,
                ..knobs
            },
        ),
    ]
}

/// `consumer-group` cut in four (3,834, 3,568, 31,347 and 4,455 states; the preset itself has
/// 632,024): a member that crashes and resumes at its group's commit with no broker crash (I18,
/// I19, I26, I29, I31 and their twins S22, S23, S32, S36, S39), the same member committing after
/// each poll instead of on its timer, a coordinator that fails over with no member crash (S24),
/// and a member with `latest` and no broker crash (with it a restarted member never reads a
/// record twice, so S23 is left out by name). Without them only the heavy `offsets-*` rows saw
/// the group's rules (R57–R62).
fn group_members() -> [(&'static str, Knobs); 4] {
    let group = preset("consumer-group").unwrap().knobs;
    [
        (
            "consumer-group without a broker crash",
            Knobs {
                broker_crashes: 0,
                ..group.clone()
            },
        ),
        // `commitSync()` after each poll (R62), 3,568 states: the only configuration of the
        // pass whose member commits without the auto-commit timer.
        (
            "consumer-group with manual commit and no broker crash",
            Knobs {
                broker_crashes: 0,
                auto_commit: false,
                ..group.clone()
            },
        ),
        (
            "consumer-group without a consumer crash",
            Knobs {
                consumer_crashes: 0,
                ..group.clone()
            },
        ),
        // `auto.offset.reset=latest` (4,455 states): the only configuration of stage 1 whose
        // member asks the leader for its HWM (ListOffsets, R61), so the only one in which a
        // stale ListOffsets answer can move a member that has moved on (I31).
        (
            "consumer-group with latest and no broker crash",
            Knobs {
                broker_crashes: 0,
                offset_reset: OffsetReset::Latest,
                ..group
            },
        ),
    ]
}

/// Twins a configuration cut from a preset does not find, left out of its verdicts: without a
/// member crash, `consumer-group`'s configuration (one replica of the data partition) reaches no
/// two diverging logs, which the whole preset does.
///
/// With manual commit and no broker crash, a restarted member reads nothing twice: the commit
/// goes out in the step that reads, and reaches the coordinator before the restarted member's
/// OffsetFetch on the same channel (spec section 6b).
const UNFINDABLE: &[(&str, &str)] = &[
    // One record, which only one leader ever appends: no two logs can diverge.
    ("eligible leader replicas", "LogsDiverge"),
    ("eligible leader replicas with an ISR shrink", "LogsDiverge"),
    ("consumer-group without a consumer crash", "LogsDiverge"),
    (
        "consumer-group with manual commit and no broker crash",
        "Reprocessed",
    ),
    // With `latest` a restarted member never reads a record twice (spec section 6b).
    (
        "consumer-group with latest and no broker crash",
        "Reprocessed",
    ),
];

/// `batched` with limits of 74 bytes instead of 50: two 25-byte records fit and a third does
/// not, with room to spare. The preset's exact fit sees a limit compared with `>=` instead of
/// `>`; this one sees a record weighed a byte light (its value's length times the overhead,
/// 24, instead of plus it), which still fits two records in 50 bytes, and three in 74.
fn batched_with_room() -> (&'static str, Knobs) {
    let knobs = Knobs {
        fetch_bytes_max: 74,
        batch_bytes_max: 74,
        ..preset("batched").unwrap().knobs
    };
    ("batched with 74-byte limits", knobs)
}

#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh"]
fn cheap_presets_hold_with_every_twin_found() {
    let configs = PRESETS
        .iter()
        .map(|name| (*name, preset(name).unwrap().knobs))
        .chain([
            controller_restarts(),
            isolated_leader(),
            eligible_leader_replicas(),
            eligible_leader_replicas_with_isr_shrink(),
            batched_with_room(),
            epoch_lookup(),
        ])
        .chain(eligible_leader_replicas_on_three_replicas())
        .chain(group_members());
    for (name, knobs) in configs {
        let outcome = run(&knobs, &harness_options());
        let verdicts = outcome
            .properties
            .iter()
            .filter(|p| !UNFINDABLE.contains(&(name, p.name)))
            .map(|p| (p.name, &p.verdict));
        assert_all_good(name, outcome.complete, verdicts);
        assert_rules_still_fire(name, &outcome.rule_coverage);
    }
}

/// The rules each exhaustive configuration of stage 1 fires unmutated, pinned both ways (spec
/// section 12, "Rule coverage", rule reachability). Each rule listed is a Sometimes property of
/// its own, "some explored step runs rule Rk": a mutant that keeps an arm from ever running where
/// it ran before (a guard made `true` that takes every message into the arm above it, an arm
/// deleted) is caught by it, though every safety property holds: what it breaks is progress,
/// which no Always property sees. Each rule not listed is an Always property, "no explored step
/// runs rule Rk": a mutant that sends the protocol down a path the configuration never takes
/// (R25's OffsetOutOfRange for a follower that is only behind, under KIP-320) is caught by it.
/// Exact only when the harness's tests run one at a time
/// (`--test-threads=1`, which `.cargo/mutants.toml` passes): the counts are process-wide, and
/// tests run at once count into each other's, which can hide a rule that stopped firing but never
/// fail a good build. After a change to the model or to the configurations, print the lists anew
/// with `WATERMARK_PRINT_RULES=1 cargo test --profile mutants -p watermark-model --test mutation
/// -- --include-ignored --exact cheap_presets_hold_with_every_twin_found
/// quorum_presets_hold_with_every_twin_found --test-threads=1 --nocapture`.
const RULES_FIRED: &[(&str, &str)] = &[
    ("idempotent", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R19 R20 R21 R22 R23 R24 R26 R28 R30 R31 R32 R33 R36 R37 R38 R39 R40 R44 R49 R50 R51"),
    ("lossy-duplicating", "R0 R1 R10 R14 R15 R19 R21 R26 R28 R31 R36 R37 R38 R45"),
    ("slow-follower", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R12 R13 R14 R15 R16 R17 R21 R22 R23 R24 R26 R28 R29 R30 R31 R32 R33 R36 R37 R38 R39 R44 R49 R50 R51"),
    ("consumer", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R21 R22 R23 R24 R26 R27 R28 R30 R31 R32 R33 R36 R37 R38 R39 R41 R42 R43 R44 R49 R50 R51"),
    ("pipelined", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R19 R20 R21 R22 R23 R24 R26 R28 R30 R31 R32 R33 R36 R37 R38 R39 R40 R44 R49 R50 R51"),
    ("batched", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R21 R22 R23 R24 R26 R27 R28 R30 R31 R32 R33 R36 R37 R38 R39 R41 R42 R43 R44 R49 R50 R51"),
    ("controller-crash without records", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R12 R13 R14 R15 R16 R22 R23 R26 R30 R33 R36 R37 R44 R49 R50 R51"),
    ("isolated leader", "R0 R1 R2 R5 R7 R8 R10 R11 R13 R14 R15 R16 R17 R21 R22 R24 R26 R28 R30 R31 R32 R33 R36 R37 R38 R39 R44 R49 R50 R51"),
    ("eligible leader replicas", "R0 R1 R2 R4 R5 R7 R8 R10 R11 R12 R13 R14 R15 R16 R17 R18 R21 R22 R23 R24 R26 R28 R30 R31 R32 R33 R36 R37 R38 R39 R44 R49 R50 R51 R52 R53 R54"),
    ("eligible leader replicas with an ISR shrink", "R0 R1 R2 R5 R7 R8 R10 R11 R12 R13 R14 R15 R16 R17 R18 R21 R22 R24 R26 R28 R29 R30 R31 R32 R33 R36 R37 R38 R39 R44 R49 R50 R51 R52 R53"),
    ("eligible leader replicas on three replicas", "R0 R1 R2 R5 R7 R8 R10 R11 R12 R13 R14 R15 R16 R22 R26 R29 R30 R33 R36 R37 R44 R49 R50 R51 R52 R53"),
    ("eligible leader replicas on three replicas with min.insync.replicas 3", "R0 R1 R2 R5 R7 R8 R10 R11 R12 R13 R14 R15 R16 R22 R26 R29 R30 R33 R36 R37 R44 R49 R50 R51 R52 R53"),
    ("batched with 74-byte limits", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R21 R22 R23 R24 R26 R27 R28 R30 R31 R32 R33 R36 R37 R38 R39 R41 R42 R43 R44 R49 R50 R51"),
    ("kip-279 pair", "R0 R1 R2 R4 R7 R8 R9 R10 R11 R13 R14 R15 R16 R17 R21 R22 R26 R28 R30 R31 R33 R34 R35 R36 R37 R38 R39 R44 R49 R50 R51"),
    ("metadata-gap", "R0 R1 R6 R7 R10 R11 R12 R13 R14 R15 R16 R26 R29 R30 R36 R37 R49 R50 R51"),
    ("consumer-group without a broker crash", "R0 R1 R10 R14 R15 R21 R26 R27 R28 R31 R36 R37 R38 R41 R42 R57 R58 R59 R60 R61 R62"),
    ("consumer-group with manual commit and no broker crash", "R0 R1 R10 R14 R15 R21 R26 R27 R28 R31 R36 R37 R38 R41 R42 R57 R58 R59 R60 R61 R62"),
    ("consumer-group without a consumer crash", "R0 R1 R2 R4 R7 R8 R10 R11 R12 R13 R14 R15 R16 R17 R21 R22 R24 R26 R27 R28 R30 R31 R32 R33 R36 R37 R38 R39 R41 R42 R43 R44 R49 R50 R51 R57 R58 R59 R60 R61 R62"),
    ("consumer-group with latest and no broker crash", "R0 R1 R10 R14 R15 R21 R26 R27 R28 R31 R36 R37 R38 R41 R42 R48 R57 R58 R59 R60 R61 R62"),
    ("quorum", "R63 R64 R65 R66 R67 R68 R69 R70 R71"),
    ("quorum-elections", "R63 R64 R65 R66 R67 R68 R69 R70 R71"),
    ("quorum-observer", "R63 R64 R65 R66 R67 R68 R69 R70 R71 R72"),
];

/// Every rule pinned for configuration `name` in [`RULES_FIRED`] fired in its check.
fn assert_rules_still_fire(name: &str, coverage: &Coverage) {
    let fired: Vec<String> = coverage
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(rule, _)| rule.to_string())
        .collect();
    if std::env::var_os("WATERMARK_PRINT_RULES").is_some() {
        println!("    (\"{name}\", \"{}\"),", fired.join(" "));
        return;
    }
    let Some((_, pinned)) = RULES_FIRED.iter().find(|(n, _)| *n == name) else {
        panic!("{name}: no rules pinned in RULES_FIRED");
    };
    let unfired: Vec<&str> = pinned
        .split_whitespace()
        .filter(|rule| !fired.iter().any(|f| f == rule))
        .collect();
    assert!(
        unfired.is_empty(),
        "{name}: rules that no longer fire: {}",
        unfired.join(" ")
    );
    let unpinned: Vec<&str> = fired
        .iter()
        .map(String::as_str)
        .filter(|rule| !pinned.split_whitespace().any(|p| p == *rule))
        .collect();
    assert!(
        unpinned.is_empty(),
        "{name}: rules that fire where they never did: {}",
        unpinned.join(" ")
    );
}

/// BFS on 2 threads, stopping at the first violation: a mutant is caught as soon as one shows.
fn harness_options() -> RunOptions {
    RunOptions {
        strategy: Strategy::Bfs,
        threads: 2,
        stop_at_first_violation: true,
        ..RunOptions::default()
    }
}

/// Every Always property holds, every twin is found (`verdicts`, by property name), and the
/// search was complete.
fn assert_all_good<'a>(
    name: &str,
    complete: bool,
    verdicts: impl IntoIterator<Item = (&'static str, &'a Verdict)>,
) {
    for (property, verdict) in verdicts {
        assert!(
            verdict.is_good(),
            "{name}: {property} is {}",
            verdict.as_str()
        );
    }
    assert!(complete, "{name}: the search did not complete");
}

/// The KRaft quorum's presets (spec section 4a, R63–R72), checked as their own model: every
/// property, every twin.
#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh"]
fn quorum_presets_hold_with_every_twin_found() {
    for name in ["quorum", "quorum-elections", "quorum-observer"] {
        let outcome =
            watermark_checks::quorum::run(&preset(name).unwrap().knobs, &harness_options());
        let verdicts = outcome.properties.iter().map(|p| (p.name, &p.verdict));
        assert_all_good(name, outcome.complete, verdicts);
        assert_rules_still_fire(name, &outcome.rule_coverage);
    }
}

#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh"]
fn matrix_rows_keep_their_verdicts() {
    assert_rows_keep_their_verdicts(|name| !HEAVY_ROWS.contains(&name));
}

#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh, stage 1b"]
fn heavy_matrix_rows_keep_their_verdicts() {
    assert_rows_keep_their_verdicts(|name| HEAVY_ROWS.contains(&name));
}

fn assert_rows_keep_their_verdicts(include: impl Fn(&str) -> bool) {
    for scenario in matrix::scenarios().iter().filter(|s| include(s.name)) {
        let row = matrix::check(scenario, 2);
        assert!(
            row.matches(),
            "{}: expected {:?}, got {:?}",
            scenario.name,
            scenario.expected,
            row.verdict
        );
    }
}

/// Stage 1c: the simulator, whose liveness conditions (L1–L7) notice what no safety property
/// can: a follower that stops catching up, a lost request never retransmitted. Built only with
/// the `mutation-simulation` feature, since it needs the runtime's transport.
#[cfg(feature = "mutation-simulation")]
#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh, stage 1c"]
fn sim_sweep_is_safe_and_recovers() {
    use watermark_checks::sim::{Faults, SimOptions};
    let options = SimOptions {
        knobs: watermark_checks::Knobs {
            producers: 2,
            records: 20,
            ..watermark_checks::Knobs::canonical()
        },
        faults: Faults::default(),
        fault_s: 30,
        heal_s: 30,
        trace_steps: 0,
    };
    // Then with a broker lost for good at the heal: a client whose first bootstrap broker it
    // is must find another.
    for brokers_dead_after_heal in [0, 1] {
        let options = SimOptions {
            faults: Faults {
                brokers_dead_after_heal,
                ..options.faults.clone()
            },
            ..options.clone()
        };
        assert_sweep_recovers(
            &options,
            &format!("{brokers_dead_after_heal} dead after the heal"),
        );
    }
}

/// Stage 1c, a consumer group: two members (auto-commit, then manual commit) of a group whose
/// coordinator fails over, crashing and resuming at their commits under the sweep's faults, with
/// the client request timeout on (no exhaustive configuration turns it on). L6 notices a member
/// that never gets back to reading with its position committed: an answer it drops, a rejoin it
/// repeats, a retry it never sends.
#[cfg(feature = "mutation-simulation")]
#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh, stage 1c"]
fn sim_group_sweep_is_safe_and_recovers() {
    use watermark_checks::sim::{Faults, SimOptions};
    // Auto-commit from the earliest offset; manual commit from the latest with a broker lost
    // for good, which needs a longer heal: a member goes through several steps, each of which
    // may wait for a request timeout (BENCHMARKS.md).
    for (auto_commit, offset_reset, brokers_dead_after_heal, heal_s) in [
        (true, OffsetReset::Earliest, 0, 30),
        (false, OffsetReset::Latest, 1, 60),
    ] {
        let options = SimOptions {
            knobs: Knobs {
                brokers: 3,
                partitions: 2,
                replication_factor: 2,
                consumers: 2,
                records: 10,
                auto_commit,
                offset_reset,
                ..preset("consumer-group").unwrap().knobs
            },
            faults: Faults {
                brokers_dead_after_heal,
                ..Faults::default()
            },
            fault_s: 30,
            heal_s,
            trace_steps: 0,
        };
        assert_sweep_recovers(
            &options,
            &format!("auto commit {auto_commit}, {offset_reset:?}"),
        );
    }
}

/// Every seed of stage 1c's sweep of `options` is safe and recovers; `what` names the sweep.
#[cfg(feature = "mutation-simulation")]
fn assert_sweep_recovers(options: &watermark_checks::sim::SimOptions, what: &str) {
    let report = watermark_checks::sim::sweep(options, 0..SIM_SEEDS, 2, None);
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("seed {}: {:?}", f.seed, f.verdict))
        .collect();
    assert_eq!(report.passed, SIM_SEEDS, "{what}: {}", failures.join("\n"));
}

/// The seeds of stage 1c's sweeps.
#[cfg(feature = "mutation-simulation")]
const SIM_SEEDS: u64 = 200;

/// Stage 1c, the quorum: a seeded sweep of the KRaft quorum's actors under losses and voter
/// crashes, which must recover once healed (QL1, spec section 12): one leader of the newest
/// epoch, and every node applied every change. No safety property sees a node that waits for
/// ever; this does. It needs no runtime, so it is built without the feature too (stage 1 skips
/// it by name).
#[test]
#[ignore = "the mutation pass's harness: scripts/mutants.sh, stage 1c"]
fn sim_quorum_sweep_recovers() {
    use watermark_checks::quorum_sim::{self, QuorumSimOptions};
    let failed = quorum_sim::sweep(&QuorumSimOptions::default(), 0, QUORUM_SIM_SEEDS);
    assert!(
        failed.is_empty(),
        "{} of {QUORUM_SIM_SEEDS} seeds did not recover; the first: {:#?}",
        failed.len(),
        failed[0]
    );
}

/// The seeds of the quorum's sweep.
const QUORUM_SIM_SEEDS: u64 = 500;
