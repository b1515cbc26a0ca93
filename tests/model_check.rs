//! Exhaustive model checks: the canonical preset holds, every twin is found, the historical
//! revisions fail where Kafka's did, and the small presets' state spaces are pinned.

use stateright::{Model, Path};
use watermark_checks::runner::{run, Outcome, RunOptions, Strategy, Verdict};
use watermark_checks::{preset, properties, Knobs, WatermarkModel};
use watermark_model::Protocol;

fn exhaustive(knobs: &Knobs) -> Outcome {
    run(
        knobs,
        &RunOptions {
            strategy: Strategy::Bfs,
            threads: 2,
            ..RunOptions::default()
        },
    )
}

/// Every Always property holds, every twin is found, and the search was complete.
fn assert_all_good(name: &str, outcome: &Outcome) {
    assert!(outcome.complete, "{name}: the search did not complete");
    for p in &outcome.properties {
        assert!(
            p.verdict.is_good(),
            "{name}: {} is {}",
            p.name,
            p.verdict.as_str()
        );
    }
}

/// Replays a discovery's actions from the initial state and checks that the property's condition
/// holds (Sometimes) or fails (Always) at the end: the trace is real.
fn assert_discovery_replays(knobs: &Knobs, outcome: &Outcome, name: &str) {
    let model = WatermarkModel::new(knobs.clone());
    let path = outcome
        .property(name)
        .and_then(|p| p.path.clone())
        .unwrap_or_else(|| panic!("{name} has no discovery"));
    let actions = path.clone().into_actions();
    let replayed = Path::from_actions(&model, model.init_states()[0].clone(), &actions)
        .expect("the discovered actions replay");
    let def = properties::all()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap();
    let holds = (def.condition)(&model, replayed.last_state());
    let expected = def.expectation == stateright::Expectation::Sometimes;
    assert_eq!(
        holds, expected,
        "{name}: the replayed trace does not end where it should"
    );
}

#[test]
fn canonical_preset_holds_exhaustively_with_every_twin_found() {
    let knobs = preset("canonical").unwrap().knobs;
    let outcome = exhaustive(&knobs);
    assert_all_good("canonical", &outcome);
    assert_eq!(outcome.unique_states, CANONICAL_UNIQUE_STATES);
    for p in &outcome.properties {
        if p.verdict == Verdict::Found {
            assert_discovery_replays(&knobs, &outcome, p.name);
        }
    }
}

/// The unique states of the canonical preset. A change here is a change to the protocol or the
/// bounds: update it deliberately, with BENCHMARKS.md.
const CANONICAL_UNIQUE_STATES: usize = 1_108_613;

fn first_violation(knobs: &Knobs, property: &'static str) -> Outcome {
    run(
        knobs,
        &RunOptions {
            strategy: Strategy::Bfs,
            threads: 2,
            stop_when_found: Some(vec![property]),
            ..RunOptions::default()
        },
    )
}

#[test]
fn earlier_protocol_revisions_violate_strong_isr_within_the_canonical_bounds() {
    for protocol in [Protocol::HwmTruncation, Protocol::Kip101, Protocol::Kip279] {
        let knobs = Knobs {
            protocol,
            ..preset("canonical").unwrap().knobs
        };
        let outcome = first_violation(&knobs, "StrongIsr");
        let p = outcome.property("StrongIsr").unwrap();
        assert_eq!(p.verdict, Verdict::Violated, "{protocol}");
        assert_discovery_replays(&knobs, &outcome, "StrongIsr");
        let trace = outcome.trace("StrongIsr").unwrap();
        assert!(!trace.is_empty());
    }
}

/// Every other preset: complete, every verdict good, and its state space pinned.
#[test]
fn small_presets_hold_with_pinned_state_counts() {
    for (name, unique) in SMALL_PRESETS {
        let knobs = preset(name).unwrap().knobs;
        let outcome = exhaustive(&knobs);
        assert_all_good(name, &outcome);
        assert_eq!(outcome.unique_states, *unique, "{name}");
    }
}

const SMALL_PRESETS: &[(&str, usize)] = &[
    ("idempotent", 15_867),
    ("lossy-duplicating", 49_188),
    ("slow-follower", 93_506),
    ("consumer", 277_207),
    ("two-partitions", 598_928),
    ("controller-crash", 824_877),
    ("lossy", 1_908_691),
];

#[test]
fn breadth_and_depth_first_search_agree_on_the_state_space() {
    let knobs = preset("idempotent").unwrap().knobs;
    let bfs = exhaustive(&knobs);
    let dfs = run(
        &knobs,
        &RunOptions {
            strategy: Strategy::Dfs,
            threads: 2,
            ..RunOptions::default()
        },
    );
    assert_eq!(bfs.unique_states, dfs.unique_states);
    for (a, b) in bfs.properties.iter().zip(&dfs.properties) {
        assert_eq!(a.verdict, b.verdict, "{}", a.name);
    }
}
