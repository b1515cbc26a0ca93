//! Counterexamples people can read: each step is a heading in Kafka terms and a compact table
//! of the brokers' replicas after it.

use crate::model::{controller, Action, State, WatermarkModel, CONTROLLER_INDEX};
use serde::Serialize;
use stateright::actor::ActorModelAction;
use stateright::Path;
use watermark_model::broker::{broker_list, FollowerState};
use watermark_model::*;

/// One step of a trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceStep {
    pub step: usize,
    /// What happened, in Kafka terms.
    pub heading: String,
    /// What it did: elections, role changes, appends, truncations, HWM moves.
    pub effects: Vec<String>,
    /// One line per broker replica (and the controller's table) after the step.
    pub state: Vec<String>,
}

/// The action alone, e.g. `broker 2 <- FetchResponse(...) from broker 1`.
pub fn format_action(model: &WatermarkModel, action: &Action) -> String {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => format!(
            "{} handles {msg:?} from {}",
            model.actor_name(usize::from(*dst)),
            model.actor_name(usize::from(*src))
        ),
        ActorModelAction::Drop(env) => format!(
            "the network loses {:?} from {} to {}",
            env.msg,
            model.actor_name(usize::from(env.src)),
            model.actor_name(usize::from(env.dst))
        ),
        ActorModelAction::Timeout(id, timer) => {
            format!(
                "{}: timer {timer:?} fires",
                model.actor_name(usize::from(*id))
            )
        }
        ActorModelAction::Crash(id) => format!("{} crashes", model.actor_name(usize::from(*id))),
        ActorModelAction::Recover(id) => {
            format!("{} restarts", model.actor_name(usize::from(*id)))
        }
        ActorModelAction::SelectRandom { actor, random, .. }
            if random.log_end_offset == Offset::MAX =>
        {
            format!(
                "{} crashes; its HWM checkpoints lag, at most {}",
                model.actor_name(usize::from(*actor)),
                random.high_watermark
            )
        }
        ActorModelAction::SelectRandom { actor, random, .. } => format!(
            "{} loses power (unclean shutdown); its logs keep offsets below {}",
            model.actor_name(usize::from(*actor)),
            random.log_end_offset
        ),
    }
}

/// The state's brokers and controller, one line each.
pub fn state_table(model: &WatermarkModel, state: &State) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = controller(state) {
        let mut line = format!("controller (epoch {})", c.controller_epoch);
        if state.crashed[CONTROLLER_INDEX] {
            line.push_str(" CRASHED");
        }
        for p in c.partitions.values() {
            let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
            line.push_str(&format!(
                " | {:?} leader {leader} epoch {} partition epoch {} ISR {}",
                p.topic_partition,
                p.leader_epoch,
                p.partition_epoch,
                broker_list(&p.isr)
            ));
        }
        let fenced: Vec<BrokerId> = c
            .brokers
            .iter()
            .filter(|(_, r)| r.fenced)
            .map(|(b, _)| *b)
            .collect();
        if !fenced.is_empty() {
            line.push_str(&format!(" | fenced {}", broker_list(&fenced)));
        }
        lines.push(line);
    }
    for i in model.broker_indices() {
        let Some(b) = state.actor_states[i].as_broker() else {
            continue;
        };
        let crashed = if state.crashed[i] { " CRASHED" } else { "" };
        if b.replicas.is_empty() {
            lines.push(format!("broker {i}{crashed}: no replicas yet"));
        }
        for r in b.replicas.values() {
            let role = match &r.role {
                Role::Leader(_) => "leader".to_string(),
                Role::Follower(FollowerState::Fetching {
                    in_flight: true, ..
                }) => "follower".to_string(),
                Role::Follower(FollowerState::Fetching { .. }) => {
                    "follower (backing off)".to_string()
                }
                Role::Follower(FollowerState::Truncating { epoch, .. }) => {
                    format!("follower (asking end of epoch {epoch})")
                }
                Role::Recovering => "recovering".to_string(),
                Role::Offline => "offline".to_string(),
            };
            lines.push(format!(
                "broker {i}{crashed}: {:?} {role:<8} epoch {} log {:?} LEO {} HWM {}",
                r.partition.topic_partition,
                r.leader_epoch(),
                r.log,
                r.log_end_offset(),
                r.high_watermark
            ));
        }
    }
    // What the clients handed their applications (the ghost keeps it, not their states).
    for i in model.producer_indices() {
        let acked = state.history.acked(i);
        if !acked.is_empty() {
            let acked: Vec<String> = acked
                .iter()
                .map(|a| format!("{:?}@{}:{:?}", a.topic_partition, a.offset, a.value))
                .collect();
            lines.push(format!(
                "{}: acked {}",
                model.actor_name(i),
                acked.join(" ")
            ));
        }
    }
    for i in model.consumer_indices() {
        // A group member's step, generation and commits: where it stands in R61 and R62.
        if let Some(c) = state.actor_states[i].as_consumer() {
            if c.member.is_some() {
                lines.push(format!("{}: {c:?}", model.actor_name(i)));
            }
        }
        let consumed = state.history.consumed(i);
        if !consumed.is_empty() {
            let read: Vec<String> = consumed
                .iter()
                .map(|r| {
                    format!(
                        "{}@{}:{:?}",
                        r.offset, r.entry.leader_epoch, r.entry.record.value
                    )
                })
                .collect();
            lines.push(format!("{}: read {}", model.actor_name(i), read.join(" ")));
        }
    }
    lines
}

/// What a step changed, in Kafka terms.
pub fn effects(model: &WatermarkModel, last: &State, next: &State) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(before), Some(after)) = (controller(last), controller(next)) {
        for p in after.partitions.values() {
            let Some(q) = before.partitions.get(&p.topic_partition) else {
                continue;
            };
            if p.leader != q.leader {
                match p.leader {
                    Some(l) => out.push(format!(
                        "controller elects broker {l} leader of {:?} in epoch {}",
                        p.topic_partition, p.leader_epoch
                    )),
                    None => out.push(format!(
                        "controller takes {:?} offline (no live ISR member) in epoch {}",
                        p.topic_partition, p.leader_epoch
                    )),
                }
            }
            if p.isr != q.isr {
                out.push(format!(
                    "controller sets the ISR of {:?} to {}",
                    p.topic_partition,
                    broker_list(&p.isr)
                ));
            }
        }
        for ((b, r), (_, s)) in after.brokers.iter().zip(before.brokers.iter()) {
            if r.fenced && !s.fenced {
                out.push(format!("controller fences broker {b}"));
            } else if !r.fenced && s.fenced {
                out.push(format!("controller unfences broker {b}"));
            }
        }
    }
    for i in model.broker_indices() {
        let (Some(before), Some(after)) = (
            last.actor_states[i].as_broker(),
            next.actor_states[i].as_broker(),
        ) else {
            continue;
        };
        if std::ptr::eq(before, after) {
            continue;
        }
        for (tp, r) in &after.replicas {
            let old = before.replicas.get(tp);
            let was_leader = old.is_some_and(|o| o.is_leader());
            let epoch_changed = old.is_none_or(|o| o.leader_epoch() != r.leader_epoch());
            if r.is_leader() && (!was_leader || epoch_changed) {
                out.push(format!(
                    "broker {i} becomes leader of {tp:?} in epoch {}",
                    r.leader_epoch()
                ));
            } else if matches!(r.role, Role::Follower(_)) && (was_leader || epoch_changed) {
                out.push(format!(
                    "broker {i} follows broker {} for {tp:?} in epoch {}",
                    r.partition.leader.unwrap_or_default(),
                    r.leader_epoch()
                ));
            }
            let old_log_end = old.map_or(0, |o| o.log_end_offset());
            let kept = old.map_or(0, |o| {
                o.log
                    .entries()
                    .zip(r.log.entries())
                    .take_while(|(a, b)| a == b)
                    .count() as Offset
            });
            if kept < old_log_end {
                out.push(format!("broker {i} truncates {tp:?} to offset {kept}"));
            }
            if r.log_end_offset() > kept {
                let added: Vec<String> = (kept..r.log_end_offset())
                    .filter_map(|o| {
                        r.log
                            .get(o)
                            .map(|e| format!("{o}@{}:{:?}", e.leader_epoch, e.record.value))
                    })
                    .collect();
                out.push(format!("broker {i} appends {} to {tp:?}", added.join(" ")));
            }
            if old.is_some_and(|o| o.high_watermark != r.high_watermark) {
                out.push(format!(
                    "broker {i} moves the HWM of {tp:?} to {}",
                    r.high_watermark
                ));
            }
        }
    }
    for i in model.producer_indices() {
        let before = last.history.acked(i).len();
        for a in next.history.acked(i).iter().skip(before) {
            out.push(format!(
                "{} is told {:?} is written at offset {} (epoch {})",
                model.actor_name(i),
                a.value,
                a.offset,
                a.leader_epoch
            ));
        }
    }
    out
}

/// Renders a path as numbered steps.
pub fn render(model: &WatermarkModel, path: &Path<State, Action>) -> Vec<TraceStep> {
    let pairs = path.clone().into_vec();
    let mut steps = Vec::new();
    for (i, window) in pairs.windows(2).enumerate() {
        let (last, action) = &window[0];
        let (next, _) = &window[1];
        let Some(action) = action else { continue };
        steps.push(TraceStep {
            step: i + 1,
            heading: format_action(model, action),
            effects: effects(model, last, next),
            state: state_table(model, next),
        });
    }
    steps
}

/// The trace as text, indented by `indent`.
pub fn to_text(steps: &[TraceStep], indent: &str) -> String {
    let mut s = String::new();
    for step in steps {
        s.push_str(&format!("{indent}{:>3}. {}\n", step.step, step.heading));
        for e in &step.effects {
            s.push_str(&format!("{indent}       -> {e}\n"));
        }
        for line in &step.state {
            s.push_str(&format!("{indent}       {line}\n"));
        }
    }
    s
}
