//! The quorum model (spec section 4a): KRaft's controllers as the voters of the metadata log and
//! brokers as its observers (`watermark_model::quorum`), with the ghost history and properties
//! I20–I23 and their twins S25–S29. It is checked apart from the data plane; spec section 4a
//! states the contract between the two models.
//!
//! Actor indices: voters (controllers 1..=n) first, then observers (brokers n+1…).

use crate::knobs::Knobs;
use crate::model::{initial_network, lossy_network, one_copy_in_flight};
use crate::runner::{RunOptions, Strategy, Verdict};
use serde_json::{json, Value};
use stateright::actor::model_timeout;
use stateright::actor::{ActorModel, ActorModelAction, ActorModelState, Id};
use stateright::{Expectation, HasDiscoveries, Model, Path, Property};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watermark_model::quorum::*;
use watermark_model::rules::{Coverage, Recording};

pub type QuorumModelState = ActorModelState<QuorumNode, QuorumGhost>;
pub type QuorumAction = ActorModelAction<QuorumMsg, QuorumTimer, ()>;

/// Transitions that break an invariant, latched (bit flags).
pub mod violation {
    /// I20: two voters led one epoch.
    pub const TWO_LEADERS_IN_EPOCH: u8 = 1 << 0;
    /// I21: a leader's high watermark passed an offset holding another entry than the one
    /// committed there, or a node truncated a committed entry.
    pub const COMMITTED_METADATA_CHANGED: u8 = 1 << 1;
    /// I23: a node changed its log or high watermark on an answer from an older epoch.
    pub const DEPOSED_LEADER_OBEYED: u8 = 1 << 2;
}

/// Things that happened at some point (bit flags, latched: the twins ask whether they can).
pub mod event {
    /// S27: a node truncated an entry that was never committed.
    pub const UNCOMMITTED_TRUNCATED: u8 = 1 << 0;
    /// S29: an answer from an older epoch reached a node (which must ignore it).
    pub const DEPOSED_LEADER_ANSWERED: u8 = 1 << 1;
}

/// What the quorum's properties need to know about the past.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct QuorumGhost {
    /// Every offset ever below a leader's high watermark: the entry, and the epoch of the
    /// leader whose high watermark first passed it.
    pub committed: Arc<Vec<(MetadataEntry, QuorumEpoch)>>,
    /// Per epoch (index), the voter that led it.
    pub leaders: Arc<Vec<Option<NodeId>>>,
    pub violations: u8,
    pub events: u8,
    /// Voter crashes (B2).
    pub crashes: u8,
    /// Fetch timeouts on a fetch that a running leader holds or that is still in flight: the
    /// fetcher suspected a leader that was fine (B3).
    pub false_suspicions: u8,
}

/// The quorum model of a configuration: `knobs.controllers` voters, `knobs.brokers` observers,
/// `knobs.records` changes written by the active controller.
pub struct QuorumModel {
    pub knobs: Knobs,
    pub inner: ActorModel<QuorumNode, (), QuorumGhost>,
    pub checked: Vec<QuorumProperty>,
}

/// The model's timing: every timer may fire at any moment.
pub fn model_timing() -> QuorumTiming {
    QuorumTiming {
        fetch_max_wait: None,
        fetch_retry: None,
        election_timeout: model_timeout(),
        fetch_timeout: model_timeout(),
    }
}

impl QuorumModel {
    pub fn new(knobs: Knobs) -> Self {
        let voters: Vec<(NodeId, Id)> = (1..=knobs.controllers)
            .map(|n| (n, Id::from(n as usize - 1)))
            .collect();
        let nodes = (1..=knobs.controllers + knobs.brokers).map(|node_id| {
            QuorumNode::new(QuorumConfig {
                node_id,
                voters: voters.clone(),
                changes: (0..knobs.records).collect(),
                fetch_entries_max: 1,
                bootstrapped: true,
                timing: model_timing(),
            })
        });
        let inner = ActorModel::new((), QuorumGhost::default())
            .actors(nodes)
            .init_network(initial_network(&knobs))
            .lossy_network(lossy_network(&knobs))
            .max_crashes(knobs.controller_crashes as usize);
        QuorumModel {
            checked: enabled(&knobs),
            knobs,
            inner,
        }
    }

    fn voter_count(&self) -> usize {
        self.knobs.controllers as usize
    }

    pub fn is_voter(&self, index: usize) -> bool {
        index < self.voter_count()
    }

    /// The name of actor `index`, in Kafka's terms.
    pub fn actor_name(&self, index: usize) -> String {
        match self.is_voter(index) {
            true => format!("controller {}", index + 1),
            false => format!("broker {}", index + 1),
        }
    }

    /// The bounds of the explored state space (spec section 9).
    fn within_bounds(&self, state: &QuorumModelState) -> bool {
        let ghost = &state.history;
        // B1: no epoch goes past `leader_epoch_max`.
        let epochs_bounded = state
            .actor_states
            .iter()
            .all(|s| s.epoch <= self.knobs.leader_epoch_max);
        // B2: voters crash at most `controller_crashes` times; observers never.
        let crashes_bounded = u32::from(ghost.crashes) <= self.knobs.controller_crashes
            && (self.voter_count()..state.crashed.len()).all(|i| !state.crashed[i]);
        // B3: a fetch timeout suspects a leader that was fine at most once, with false
        // suspicions allowed; otherwise only lost fetches time out.
        let suspicions_bounded =
            u32::from(ghost.false_suspicions) <= u32::from(self.knobs.false_suspicions);
        epochs_bounded
            && crashes_bounded
            && suspicions_bounded
            && one_copy_in_flight(&state.network)
    }

    /// The ghost after `action` took `last` to `next`.
    pub fn observe(
        &self,
        last: Option<&QuorumModelState>,
        action: Option<&QuorumAction>,
        next: &QuorumModelState,
    ) -> QuorumGhost {
        let mut ghost = next.history.clone();
        match action {
            Some(ActorModelAction::Crash(_)) => ghost.crashes += 1,
            Some(ActorModelAction::Timeout(id, QuorumTimer::FetchTimeout)) => {
                let acted = last.is_some_and(|l| {
                    *l.actor_states[usize::from(*id)] != *next.actor_states[usize::from(*id)]
                });
                if acted && last.is_some_and(|l| fetch_pending(l, *id)) {
                    ghost.false_suspicions += 1;
                }
            }
            _ => {}
        }
        record_leaders(&mut ghost, next);
        record_commits(&mut ghost, next);
        if let (Some(last), Some(ActorModelAction::Deliver { dst, msg, .. })) = (last, action) {
            let i = usize::from(*dst);
            let (before, after) = (&*last.actor_states[i], &*next.actor_states[i]);
            record_truncation(&mut ghost, before, after);
            if let QuorumMsg::FetchResponse { epoch, .. } = msg {
                if *epoch < before.epoch {
                    ghost.events |= event::DEPOSED_LEADER_ANSWERED;
                    let obeyed =
                        before.log != after.log || before.high_watermark != after.high_watermark;
                    if obeyed {
                        ghost.violations |= violation::DEPOSED_LEADER_OBEYED;
                    }
                }
            }
        }
        ghost
    }
}

/// Whether `fetcher`'s outstanding fetch will be answered: it is in flight, or held by its
/// running target, or its answer is in flight. A fetch timeout then suspects a leader that was
/// fine; otherwise the fetch was lost with a crash.
fn fetch_pending(state: &QuorumModelState, fetcher: Id) -> bool {
    let Some(target) = state.actor_states[usize::from(fetcher)].fetching else {
        return false;
    };
    let in_flight = |src: Id, dst: Id, is_fetch: bool| {
        state.network.iter_deliverable().any(|env| {
            env.src == src
                && env.dst == dst
                && match env.msg {
                    QuorumMsg::Fetch(_) => is_fetch,
                    QuorumMsg::FetchResponse { .. } => !is_fetch,
                    _ => false,
                }
        })
    };
    let held = match &state.actor_states[usize::from(target)].role {
        QuorumRole::Leader(l) => l.held.contains_key(&fetcher),
        _ => false,
    };
    let running = !state.crashed[usize::from(target)];
    in_flight(target, fetcher, false) || (running && (held || in_flight(fetcher, target, true)))
}

/// I20: each epoch's leader, and whether a second voter led it.
fn record_leaders(ghost: &mut QuorumGhost, next: &QuorumModelState) {
    for (i, s) in next.actor_states.iter().enumerate() {
        if !s.is_leader() || next.crashed[i] {
            continue;
        }
        let me = i as NodeId + 1;
        let epoch = s.epoch as usize;
        match ghost.leaders.get(epoch).copied().flatten() {
            Some(leader) if leader != me => ghost.violations |= violation::TWO_LEADERS_IN_EPOCH,
            Some(_) => {}
            None => {
                let leaders = Arc::make_mut(&mut ghost.leaders);
                if leaders.len() <= epoch {
                    leaders.resize(epoch + 1, None);
                }
                leaders[epoch] = Some(me);
            }
        }
    }
}

/// I21: what every running leader's high watermark passes is committed, and stays what it was.
fn record_commits(ghost: &mut QuorumGhost, next: &QuorumModelState) {
    for (i, s) in next.actor_states.iter().enumerate() {
        if !s.is_leader() || next.crashed[i] {
            continue;
        }
        for (offset, entry) in s.applied().iter().enumerate() {
            match ghost.committed.get(offset) {
                Some((committed, _)) if committed != entry => {
                    ghost.violations |= violation::COMMITTED_METADATA_CHANGED
                }
                Some(_) => {}
                None => Arc::make_mut(&mut ghost.committed).push((entry.clone(), s.epoch)),
            }
        }
    }
}

/// I21 and S27: what a node's log lost in a step, committed or not.
fn record_truncation(ghost: &mut QuorumGhost, before: &QuorumState, after: &QuorumState) {
    let kept = before
        .log
        .iter()
        .zip(after.log.iter())
        .take_while(|(a, b)| a == b)
        .count();
    for (offset, entry) in before.log.iter().enumerate().skip(kept) {
        match ghost.committed.get(offset) {
            Some((committed, _)) if committed == entry => {
                ghost.violations |= violation::COMMITTED_METADATA_CHANGED
            }
            _ => ghost.events |= event::UNCOMMITTED_TRUNCATED,
        }
    }
}

impl Model for QuorumModel {
    type State = QuorumModelState;
    type Action = QuorumAction;

    fn init_states(&self) -> Vec<QuorumModelState> {
        self.inner
            .init_states()
            .into_iter()
            .map(|mut s| {
                s.history = self.observe(None, None, &s);
                s
            })
            .collect()
    }

    fn actions(&self, state: &QuorumModelState, actions: &mut Vec<QuorumAction>) {
        self.inner.actions(state, actions);
    }

    fn next_state(
        &self,
        last: &QuorumModelState,
        action: QuorumAction,
    ) -> Option<QuorumModelState> {
        let mut next = self.inner.next_state(last, action.clone())?;
        next.history = self.observe(Some(last), Some(&action), &next);
        Some(next)
    }

    fn format_action(&self, action: &QuorumAction) -> String {
        format_action(self, action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.checked
            .iter()
            .map(|p| Property {
                expectation: p.expectation.clone(),
                name: p.name,
                condition: p.condition,
            })
            .collect()
    }

    fn within_boundary(&self, state: &QuorumModelState) -> bool {
        self.within_bounds(state)
    }
}

/// A property of the quorum, named as in spec section 8.
#[derive(Clone)]
pub struct QuorumProperty {
    pub name: &'static str,
    pub id: &'static str,
    pub expectation: Expectation,
    pub description: &'static str,
    pub condition: fn(&QuorumModel, &QuorumModelState) -> bool,
    /// Whether the property applies to a configuration (S28 needs a broker).
    pub applies: fn(&Knobs) -> bool,
}

/// Every property of the quorum model: I20–I23 and their twins.
pub fn properties() -> Vec<QuorumProperty> {
    use Expectation::{Always, Sometimes};
    let p = |name, id, expectation, description, condition| QuorumProperty {
        name,
        id,
        expectation,
        description,
        condition,
        applies: |_| true,
    };
    vec![
        p(
            "ElectionSafety",
            "I20",
            Always,
            "at most one voter leads an epoch",
            election_safety as fn(&QuorumModel, &QuorumModelState) -> bool,
        ),
        p(
            "LeaderChanged",
            "S25",
            Sometimes,
            "two voters have led (an election after a leader)",
            leader_changed,
        ),
        p(
            "CommittedMetadataSurvives",
            "I21",
            Always,
            "a committed entry is never changed or truncated, and every leader of a later epoch holds it",
            committed_metadata_survives,
        ),
        p(
            "CommittedAcrossFailover",
            "S26",
            Sometimes,
            "a leader of a later epoch holds, below its HWM, a change committed in an earlier one",
            committed_across_failover,
        ),
        p(
            "UncommittedMetadataTruncated",
            "S27",
            Sometimes,
            "a node truncated an entry that was never committed",
            uncommitted_metadata_truncated,
        ),
        p(
            "AppliedMetadataCommitted",
            "I22",
            Always,
            "every node (controller or broker) has applied only committed entries, in order, and its HWM is within its log",
            applied_metadata_committed,
        ),
        QuorumProperty {
            applies: |k| k.brokers > 0,
            ..p(
                "BrokerAppliedAfterFailover",
                "S28",
                Sometimes,
                "a broker applied a change from a leader of a later epoch than the first",
                broker_applied_after_failover,
            )
        },
        p(
            "DeposedControllerIgnored",
            "I23",
            Always,
            "no node changes its log or HWM on an answer from an older epoch",
            deposed_controller_ignored,
        ),
        p(
            "DeposedControllerAnswered",
            "S29",
            Sometimes,
            "an answer from an older epoch reached a node",
            deposed_controller_answered,
        ),
    ]
}

/// I20.
fn election_safety(_: &QuorumModel, state: &QuorumModelState) -> bool {
    state.history.violations & violation::TWO_LEADERS_IN_EPOCH == 0
}

/// S25.
fn leader_changed(_: &QuorumModel, state: &QuorumModelState) -> bool {
    let mut leaders = state.history.leaders.iter().flatten();
    leaders
        .next()
        .is_some_and(|first| leaders.any(|l| l != first))
}

/// I21.
fn committed_metadata_survives(_: &QuorumModel, state: &QuorumModelState) -> bool {
    let ghost = &state.history;
    let leaders_complete = state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_leader() && !state.crashed[*i])
        .all(|(_, s)| {
            ghost
                .committed
                .iter()
                .enumerate()
                .filter(|(_, (_, epoch))| *epoch < s.epoch)
                .all(|(offset, (entry, _))| s.log.get(offset) == Some(entry))
        });
    leaders_complete && ghost.violations & violation::COMMITTED_METADATA_CHANGED == 0
}

/// S26.
fn committed_across_failover(_: &QuorumModel, state: &QuorumModelState) -> bool {
    state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_leader() && !state.crashed[*i])
        .any(|(_, s)| {
            state
                .history
                .committed
                .iter()
                .enumerate()
                .any(|(offset, (entry, epoch))| {
                    matches!(entry.record, MetadataRecord::Change(_))
                        && *epoch < s.epoch
                        && (offset as u64) < s.high_watermark
                })
        })
}

/// S27.
fn uncommitted_metadata_truncated(_: &QuorumModel, state: &QuorumModelState) -> bool {
    state.history.events & event::UNCOMMITTED_TRUNCATED != 0
}

/// I22.
fn applied_metadata_committed(_: &QuorumModel, state: &QuorumModelState) -> bool {
    let committed = &state.history.committed;
    state.actor_states.iter().all(|s| {
        let applied = s.applied();
        s.high_watermark <= s.log_end_offset()
            && applied.len() <= committed.len()
            && applied
                .iter()
                .zip(committed.iter())
                .all(|(a, (c, _))| a == c)
    })
}

/// S28.
fn broker_applied_after_failover(model: &QuorumModel, state: &QuorumModelState) -> bool {
    let first_epoch = state
        .history
        .leaders
        .iter()
        .position(|l| l.is_some())
        .unwrap_or(0) as QuorumEpoch;
    state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, _)| !model.is_voter(*i))
        .any(|(_, s)| {
            s.applied()
                .iter()
                .any(|e| matches!(e.record, MetadataRecord::Change(_)) && e.epoch > first_epoch)
        })
}

/// I23.
fn deposed_controller_ignored(_: &QuorumModel, state: &QuorumModelState) -> bool {
    state.history.violations & violation::DEPOSED_LEADER_OBEYED == 0
}

/// S29.
fn deposed_controller_answered(_: &QuorumModel, state: &QuorumModelState) -> bool {
    state.history.events & event::DEPOSED_LEADER_ANSWERED != 0
}

/// An action in Kafka's terms.
pub fn format_action(model: &QuorumModel, action: &QuorumAction) -> String {
    let name = |id: &Id| model.actor_name(usize::from(*id));
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            format!("{} handles {msg:?} from {}", name(dst), name(src))
        }
        ActorModelAction::Drop(env) => format!(
            "the network loses {:?} from {} to {}",
            env.msg,
            name(&env.src),
            name(&env.dst)
        ),
        ActorModelAction::Timeout(id, timer) => format!("{}: timer {timer:?} fires", name(id)),
        ActorModelAction::Crash(id) => format!("{} crashes", name(id)),
        ActorModelAction::Recover(id) => format!("{} restarts", name(id)),
        ActorModelAction::SelectRandom { actor, .. } => format!("{} draws", name(actor)),
    }
}

/// One line per node.
pub fn state_lines(model: &QuorumModel, state: &QuorumModelState) -> Vec<String> {
    state
        .actor_states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let crashed = if state.crashed[i] { " CRASHED" } else { "" };
            format!("{}{crashed}: {s:?}", model.actor_name(i))
        })
        .collect()
}

/// A readable counterexample: each step's action and the nodes after it.
pub fn render(model: &QuorumModel, path: &Path<QuorumModelState, QuorumAction>) -> Vec<String> {
    let mut lines = Vec::new();
    let states = path.clone().into_states();
    let actions = path.clone().into_actions();
    for (n, (action, state)) in actions.iter().zip(states.iter().skip(1)).enumerate() {
        lines.push(format!("{}. {}", n + 1, format_action(model, action)));
        for line in state_lines(model, state) {
            lines.push(format!("     {line}"));
        }
    }
    lines
}

/// One property's verdict, with its readable trace.
#[derive(Clone, Debug)]
pub struct QuorumVerdict {
    pub name: &'static str,
    pub id: &'static str,
    pub expectation: Expectation,
    pub verdict: Verdict,
    pub trace: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct QuorumOutcome {
    pub knobs: Knobs,
    pub complete: bool,
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    pub properties: Vec<QuorumVerdict>,
    pub rule_coverage: Coverage,
}

impl QuorumOutcome {
    pub fn all_good(&self) -> bool {
        self.properties.iter().all(|p| p.verdict.is_good())
    }

    pub fn property(&self, name: &str) -> Option<&QuorumVerdict> {
        self.properties.iter().find(|p| p.name == name)
    }
}

/// The properties that apply to `knobs`.
pub fn enabled(knobs: &Knobs) -> Vec<QuorumProperty> {
    properties()
        .into_iter()
        .filter(|p| (p.applies)(knobs))
        .collect()
}

/// Checks the quorum model of `knobs` for every property that applies to it.
pub fn run(knobs: &Knobs, options: &RunOptions) -> QuorumOutcome {
    run_properties(knobs, enabled(knobs), options)
}

pub fn run_properties(
    knobs: &Knobs,
    checked: Vec<QuorumProperty>,
    options: &RunOptions,
) -> QuorumOutcome {
    let mut model = QuorumModel::new(knobs.clone());
    model.checked = checked.clone();
    let finish_when = if options.stop_at_first_violation {
        HasDiscoveries::AnyFailures
    } else {
        HasDiscoveries::All
    };
    let recording = Recording::start();
    let started = Instant::now();
    let checker = crate::runner::spawn(model, options, finish_when);
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    let mut discoveries = checker.discoveries();
    let timed_out = options
        .timeout
        .is_some_and(|t| elapsed + Duration::from_millis(50) >= t);
    let all_discovered = checked.iter().all(|p| discoveries.contains_key(p.name));
    let stopped_at_violation = options.stop_at_first_violation
        && checked
            .iter()
            .any(|p| p.expectation == Expectation::Always && discoveries.contains_key(p.name));
    let complete = options.strategy != Strategy::Simulation
        && !timed_out
        && !all_discovered
        && !stopped_at_violation;
    let model = QuorumModel::new(knobs.clone());
    let properties = checked
        .iter()
        .map(|p| {
            let path = discoveries.remove(p.name);
            let verdict = Verdict::of(&p.expectation, path.is_some(), stopped_at_violation);
            QuorumVerdict {
                name: p.name,
                id: p.id,
                expectation: p.expectation.clone(),
                verdict,
                trace: path.map(|path| render(&model, &path)),
            }
        })
        .collect();
    QuorumOutcome {
        knobs: knobs.clone(),
        complete,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        seconds: elapsed.as_secs_f64(),
        properties,
        rule_coverage: recording.coverage(),
    }
}

/// The quorum's knobs in one line.
pub fn summary(knobs: &Knobs) -> String {
    format!(
        "KRaft quorum of {} controller{}, {} broker{} observing, {} change{}, {} controller crash{}, {}false suspicions, epoch <= {}, {} network",
        knobs.controllers,
        if knobs.controllers == 1 { "" } else { "s" },
        knobs.brokers,
        if knobs.brokers == 1 { "" } else { "s" },
        knobs.records,
        if knobs.records == 1 { "" } else { "s" },
        knobs.controller_crashes,
        if knobs.controller_crashes == 1 { "" } else { "es" },
        if knobs.false_suspicions { "" } else { "no " },
        knobs.leader_epoch_max,
        knobs.network
    )
}

/// The human report: summary, verdicts, and a trace per violated Always property.
pub fn text(preset: &str, outcome: &QuorumOutcome) -> String {
    let mut s = format!("preset {preset}: {}\n", summary(&outcome.knobs));
    let completeness = if outcome.complete {
        "complete: every reachable state within the bounds was checked"
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
    s.push_str(&format!(
        "{:<4} {:<28} {:<10} verdict\n",
        "id", "property", "expects"
    ));
    for p in &outcome.properties {
        let marker = if p.verdict.is_good() { "" } else { "   <--" };
        let expects = match p.expectation {
            Expectation::Always => "always",
            _ => "sometimes",
        };
        s.push_str(&format!(
            "{:<4} {:<28} {:<10} {}{marker}\n",
            p.id,
            p.name,
            expects,
            p.verdict.as_str()
        ));
    }
    for p in &outcome.properties {
        if let (Verdict::Violated, Some(trace)) = (p.verdict, &p.trace) {
            s.push_str(&format!("\n{} ({}) violated:\n", p.name, p.id));
            for line in trace {
                s.push_str(&format!("  {line}\n"));
            }
        }
    }
    s
}

/// One JSON object.
pub fn json(preset: &str, outcome: &QuorumOutcome) -> Value {
    json!({
        "preset": preset,
        "model": "quorum",
        "knobs": outcome.knobs,
        "complete": outcome.complete,
        "states": outcome.states,
        "unique_states": outcome.unique_states,
        "max_depth": outcome.max_depth,
        "seconds": outcome.seconds,
        "all_good": outcome.all_good(),
        "properties": outcome.properties.iter().map(|p| json!({
            "id": p.id,
            "name": p.name,
            "expectation": match p.expectation { Expectation::Always => "always", _ => "sometimes" },
            "verdict": p.verdict.as_str(),
            "trace": p.trace,
        })).collect::<Vec<_>>(),
    })
}
