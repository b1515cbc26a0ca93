//! `watermark matrix`: every scenario's verdict is the expected one, and every discovery comes
//! with a readable trace and an Explorer path.

use watermark_checks::matrix::{self, Expected};

#[test]
fn every_matrix_verdict_is_as_expected() {
    let scenarios = matrix::scenarios();
    assert!(scenarios.len() >= 20);
    let mut failures = Vec::new();
    for s in scenarios
        .iter()
        .filter(|s| !matrix::SLOW_SCENARIOS.contains(&s.name))
    {
        let row = matrix::check(s, 2);
        if !row.matches() {
            failures.push(format!(
                "{}: expected {}, got {}",
                s.name,
                s.expected.as_str(),
                row.verdict.as_str()
            ));
        }
        match row.verdict {
            Expected::Violated | Expected::Reachable => {
                let trace = row.trace().expect("a discovery has a trace");
                assert!(!trace.is_empty(), "{}", s.name);
                assert!(row.explorer_path().unwrap().starts_with("/#/steps/"));
            }
            // A verdict of holds or unreachable needs the whole space.
            Expected::Holds | Expected::Unreachable => {
                assert!(row.outcome.complete, "{}: incomplete", s.name);
                assert!(row.trace().is_none());
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_slow_scenario_is_a_scenario() {
    let names: Vec<&str> = matrix::scenarios().iter().map(|s| s.name).collect();
    for slow in matrix::SLOW_SCENARIOS {
        assert!(names.contains(&slow), "{slow} is not a scenario");
    }
}

#[test]
fn seed_claims_the_model_refutes_are_marked() {
    let refuted: Vec<&str> = matrix::scenarios()
        .into_iter()
        .filter(|s| s.claim_status == matrix::ClaimStatus::Refuted)
        .map(|s| s.name)
        .collect();
    assert!(refuted.contains(&"acks-all-min-isr-1"), "{refuted:?}");
    assert!(refuted.contains(&"unclean-shutdown-then-leader-fails"));
}

#[test]
fn the_cli_prints_the_table_and_a_counterexample_and_exits_by_expectation() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(["matrix", "--only", "acks-1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("scenario") && out.contains("seed claim") && out.contains("unique states")
    );
    assert!(
        out.contains("acks-1 counterexample for AcknowledgedRecordsSurvive"),
        "{out}"
    );
    assert!(out.contains("@0:a") && out.contains("HWM"), "{out}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(["matrix", "--only", "kip-2000"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown scenario 'kip-2000'"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_watermark"))
        .args(["matrix", "--only", "rf-1-offline", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &v["rows"][0];
    for key in [
        "scenario",
        "claim",
        "config",
        "property",
        "expected",
        "verdict",
        "matches",
        "unique_states",
        "seconds",
        "trace",
    ] {
        assert!(!row[key].is_null(), "{key} missing from {row}");
    }
    assert_eq!(row["verdict"], "reachable");
}

/// Each pair of adjacent revisions gives different verdicts in some row of the matrix, in the
/// same configuration: the older one shows its historical bug, the newer one does not.
#[test]
fn adjacent_revisions_are_told_apart_by_the_matrix() {
    use watermark_model::{Protocol, PROTOCOLS};
    let scenarios = matrix::scenarios();
    for pair in PROTOCOLS.windows(2) {
        let (older, newer) = (pair[0], pair[1]);
        let apart = scenarios.iter().any(|a| {
            a.knobs.protocol == older
                && matches!(a.expected, Expected::Violated | Expected::Reachable)
                && scenarios.iter().any(|b| {
                    b.knobs.protocol == newer
                        && b.property == a.property
                        && b.knobs == matrix_knobs_as(&a.knobs, newer)
                        && matches!(b.expected, Expected::Holds | Expected::Unreachable)
                })
        });
        assert!(apart, "no row tells {} from {}", older.name(), newer.name());
    }
    fn matrix_knobs_as(k: &watermark_checks::Knobs, p: Protocol) -> watermark_checks::Knobs {
        watermark_checks::Knobs {
            protocol: p,
            ..k.clone()
        }
    }
}
