//! Reports of a check: a table of verdicts with counterexamples, or one JSON object.

use crate::explorer;
use crate::knobs::Knobs;
use crate::model::WatermarkModel;
use crate::properties;
use crate::runner::{Outcome, Verdict};
use crate::trace;
use serde_json::{json, Value};
use stateright::Expectation;

fn expectation_name(e: &Expectation) -> &'static str {
    match e {
        Expectation::Always => "always",
        Expectation::Sometimes => "sometimes",
        Expectation::Eventually => "eventually",
    }
}

/// The human report: summary, verdict table, and a trace per violated Always property.
pub fn text(preset: &str, outcome: &Outcome) -> String {
    let mut s = String::new();
    s.push_str(&format!("preset {preset}: {}\n", outcome.knobs.summary()));
    let completeness = if outcome.complete {
        "complete: every reachable state within the bounds was checked"
    } else if outcome.stopped_at_violation {
        "STOPPED at the first violation (--stop-at-first-violation); the other verdicts are unknown"
    } else {
        "INCOMPLETE: the search stopped before exhausting the state space"
    };
    s.push_str(&format!(
        "{} states, {} unique, max depth {}, {:.1} s ({:.0} unique states/s); {completeness}\n\n",
        outcome.states,
        outcome.unique_states,
        outcome.max_depth,
        outcome.seconds,
        outcome.unique_states as f64 / outcome.seconds.max(1e-9),
    ));
    let width = outcome
        .properties
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    s.push_str(&format!(
        "{:<4} {:<width$} {:<10} {}\n",
        "id", "property", "expects", "verdict"
    ));
    for p in &outcome.properties {
        let marker = if p.verdict.is_good() { "" } else { "   <--" };
        s.push_str(&format!(
            "{:<4} {:<width$} {:<10} {}{marker}\n",
            p.id,
            p.name,
            expectation_name(&p.expectation),
            p.verdict.as_str()
        ));
    }
    let skipped: Vec<_> = properties::all()
        .into_iter()
        .filter(|d| !(d.applies)(&outcome.knobs))
        .map(|d| d.name)
        .collect();
    if !skipped.is_empty() {
        s.push_str(&format!(
            "not applicable to this configuration: {}\n",
            skipped.join(", ")
        ));
        if !properties::leader_can_change(&outcome.knobs) {
            s.push_str(
                "  (no leader change is possible within these bounds: leader-change properties \
                 need --leader-epoch-max >= 1 and --broker-crashes >= 1)\n",
            );
        }
    }
    s.push_str(&outcome.rule_coverage.summary());
    s.push('\n');
    let model = WatermarkModel::new(outcome.knobs.clone());
    for p in &outcome.properties {
        if p.verdict != Verdict::Violated {
            continue;
        }
        if let Some(path) = &p.path {
            let steps = trace::render(&model, path);
            s.push_str(&format!(
                "\ncounterexample for {} ({}), {} steps:\n",
                p.name,
                p.id,
                steps.len()
            ));
            s.push_str(&trace::to_text(&steps, "  "));
            s.push_str(&explorer::open_hint(&outcome.knobs, path, "  "));
        }
    }
    s
}

/// The `--json` report.
pub fn json(preset: &str, outcome: &Outcome) -> Value {
    let model = WatermarkModel::new(outcome.knobs.clone());
    let properties: Vec<Value> = outcome
        .properties
        .iter()
        .map(|p| {
            let trace = match (&p.verdict, &p.path) {
                (Verdict::Violated | Verdict::Found, Some(path)) => {
                    serde_json::to_value(trace::render(&model, path)).expect("serializable")
                }
                _ => Value::Null,
            };
            json!({
                "name": p.name,
                "id": p.id,
                "expectation": expectation_name(&p.expectation),
                "verdict": p.verdict.as_str(),
                "trace": trace,
            })
        })
        .collect();
    json!({
        "preset": preset,
        "knobs": knobs_json(&outcome.knobs),
        "strategy": outcome.strategy,
        "complete": outcome.complete,
        "stopped_at_first_violation": outcome.stopped_at_violation,
        "states": outcome.states,
        "unique_states": outcome.unique_states,
        "max_depth": outcome.max_depth,
        "seconds": outcome.seconds,
        "properties": properties,
        "rule_coverage": outcome.rule_coverage,
    })
}

pub fn knobs_json(knobs: &Knobs) -> Value {
    json!({
        "brokers": knobs.brokers,
        "partitions": knobs.partitions,
        "replication_factor": knobs.replication_factor,
        "min_insync_replicas": knobs.min_insync_replicas,
        "acks": knobs.acks.as_str(),
        "unclean_leader_election": knobs.unclean_leader_election,
        "idempotence": knobs.idempotence,
        "producers": knobs.producers,
        "consumers": knobs.consumers,
        "records": knobs.records,
        "broker_crashes": knobs.broker_crashes,
        "controller_crashes": knobs.controller_crashes,
        "leader_epoch_max": knobs.leader_epoch_max,
        "network": knobs.network.to_string(),
        "protocol": knobs.protocol.name(),
        "producer_attempts_max": knobs.producer_attempts_max,
        "max_in_flight_requests": knobs.max_in_flight_requests,
        "fetch_bytes_max": knobs.fetch_bytes_max,
        "batch_bytes_max": knobs.batch_bytes_max,
        "client_request_timeout": knobs.client_request_timeout,
        "preferred_leader_election": knobs.preferred_leader_election,
        "false_suspicions": knobs.false_suspicions,
        "unclean_shutdown": knobs.unclean_shutdown,
        "isr_shrinks": knobs.isr_shrinks,
    })
}
