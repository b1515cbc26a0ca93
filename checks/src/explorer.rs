//! The model as stateright's Explorer shows it (`watermark explore`).
//!
//! Two things differ from [`WatermarkModel`], and nothing else:
//!
//! - **States read like Kafka's tools.** The Explorer prints each state with `{:#?}`;
//!   [`ExplorerState`] prints the controller's partition table, each broker's replicas (role,
//!   leader epoch, log as offset@epoch:value, LEO, HWM, ISR), the clients, the messages in flight
//!   and the armed timers, instead of stateright's derive dump. Its `Hash` is the wrapped state's,
//!   so fingerprints do not change.
//! - **Actions come in a canonical order.** An Explorer path is a list of action indices.
//!   stateright lists actions in the iteration order of its hash-based collections of messages
//!   and timers (ahash, whose keys come from `getrandom` in each process). That order was the
//!   same from run to run in our measurements, but nothing promises it, so [`canonical_order`]
//!   sorts actions by kind, actor and content: a path that [`steps_path`] computes in
//!   `watermark check` opens the same counterexample in `watermark explore`, and the Explorer
//!   lists each actor's choices together.

use crate::ghost::{event, violation, Ghost};
use crate::knobs::Knobs;
use crate::model::{Action, State, WatermarkModel};

use crate::trace;
use stateright::actor::{ActorModelAction, Id, Network};
use stateright::{Model, Path, Property};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use watermark_model::Msg;

/// The address `watermark explore` serves on unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// A state of [`WatermarkModel`], printed for people.
#[derive(Clone)]
pub struct ExplorerState {
    pub state: State,
    /// Actor names, indexed like `state.actor_states`: the same in every state, so neither hashed
    /// nor compared.
    names: std::sync::Arc<[String]>,
}

impl Hash for ExplorerState {
    /// The wrapped state's hash alone, so fingerprints are those of [`WatermarkModel`].
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.state.hash(hasher)
    }
}

impl PartialEq for ExplorerState {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Eq for ExplorerState {}

/// [`WatermarkModel`] with readable states and a canonical action order.
pub struct ExplorerModel {
    pub model: WatermarkModel,
    names: std::sync::Arc<[String]>,
}

impl ExplorerModel {
    pub fn new(knobs: Knobs) -> Self {
        let model = WatermarkModel::new(knobs);
        assert!(
            model.checked.len() <= CONDITIONS.len(),
            "CONDITIONS has a slot for every property"
        );
        let actors = model.inner.actors.len();
        let names = (0..actors).map(|i| model.actor_name(i)).collect();
        ExplorerModel { model, names }
    }

    fn wrap(&self, state: State) -> ExplorerState {
        ExplorerState {
            state,
            names: self.names.clone(),
        }
    }
}

/// Sorts actions by kind, then actor, then what they carry, then a hash that is the same in every
/// process (`DefaultHasher::new` has fixed keys, and nothing in an action is hashed with a
/// per-process seed).
pub fn canonical_order(model: &WatermarkModel, actions: &mut [Action]) {
    actions.sort_by_cached_key(|action| {
        let (kind, actor) = match action {
            ActorModelAction::Deliver { dst, .. } => (0, usize::from(*dst)),
            ActorModelAction::Drop(env) => (1, usize::from(env.dst)),
            ActorModelAction::Timeout(id, _) => (2, usize::from(*id)),
            ActorModelAction::Crash(id) => (3, usize::from(*id)),
            ActorModelAction::Recover(id) => (4, usize::from(*id)),
            ActorModelAction::SelectRandom { actor, .. } => (5, usize::from(*actor)),
        };
        let mut hasher = DefaultHasher::new();
        action.hash(&mut hasher);
        (
            kind,
            actor,
            trace::format_action(model, action),
            hasher.finish(),
        )
    });
}

/// The Explorer's action indices for a path of [`WatermarkModel`], e.g. `0/4/1/7`: append it to
/// `http://ADDR/#/steps/` while `watermark explore` runs with the same knobs. `None` if the path
/// does not start at an initial state or takes an action the model does not offer.
///
/// The path is replayed on the Explorer's model, which checks every property, so its ghost may
/// keep more than the model that found the path (a matrix row checks one property): states are
/// matched without their ghosts, which never decide what can happen next.
pub fn steps_path(knobs: &Knobs, path: &Path<State, Action>) -> Option<String> {
    let model = WatermarkModel::new(knobs.clone());
    let pairs = path.clone().into_vec();
    let (init, _) = pairs.first()?;
    let inits = model.init_states();
    let init_index = inits.iter().position(|s| same_but_ghost(s, init))?;
    let mut state = inits[init_index].clone();
    let mut indices = vec![init_index.to_string()];
    let mut actions = Vec::new();
    for (_, action) in &pairs {
        let Some(action) = action else { continue };
        actions.clear();
        model.actions(&state, &mut actions);
        canonical_order(&model, &mut actions);
        indices.push(actions.iter().position(|a| a == action)?.to_string());
        state = model.next_state(&state, action.clone())?;
    }
    Some(indices.join("/"))
}

/// Whether two states are the same but for what the ghost observed.
fn same_but_ghost(a: &State, b: &State) -> bool {
    let mut a = a.clone();
    a.history = b.history.clone();
    a == *b
}

/// How to open a counterexample in the Explorer: the `explore` command with the same knobs and
/// the URL, each line prefixed by `indent`. Kept to the lines `watermark check` prints under a
/// counterexample, so that other commands (`watermark matrix`) print the same.
pub fn open_hint(knobs: &Knobs, path: &Path<State, Action>, indent: &str) -> String {
    let Some(steps) = steps_path(knobs, path) else {
        return format!("{indent}(this path cannot be opened in the Explorer)\n");
    };
    format!(
        "{indent}Explorer path: /#/steps/{steps}\n\
         {indent}  open it: watermark explore {}\n\
         {indent}  then:    http://{DEFAULT_ADDR}/#/steps/{steps}\n",
        knobs.preset_and_flags().join(" ")
    )
}

/// A property condition that calls the inner property `I`: `Property` takes plain `fn`s, so
/// each slot is its own monomorphized function.
fn condition<const I: usize>(model: &ExplorerModel, state: &ExplorerState) -> bool {
    (model.model.checked[I].condition)(&model.model, &state.state)
}

macro_rules! conditions {
    ($($i:literal)*) => {
        [$(condition::<$i> as fn(&ExplorerModel, &ExplorerState) -> bool),*]
    };
}

/// One slot per property (there are 67; room for more).
const CONDITIONS: [fn(&ExplorerModel, &ExplorerState) -> bool; 80] = conditions!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
    20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39
    40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
    60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79
);

impl Model for ExplorerModel {
    type State = ExplorerState;
    type Action = Action;

    fn init_states(&self) -> Vec<ExplorerState> {
        self.model
            .init_states()
            .into_iter()
            .map(|s| self.wrap(s))
            .collect()
    }

    fn actions(&self, state: &ExplorerState, actions: &mut Vec<Action>) {
        self.model.actions(&state.state, actions);
        canonical_order(&self.model, actions);
    }

    fn next_state(&self, last: &ExplorerState, action: Action) -> Option<ExplorerState> {
        self.model
            .next_state(&last.state, action)
            .map(|s| self.wrap(s))
    }

    fn format_action(&self, action: &Action) -> String {
        trace::format_action(&self.model, action)
    }

    /// What the step did in Kafka terms, then the whole state after it.
    fn format_step(&self, last: &ExplorerState, action: Action) -> Option<String> {
        let heading = trace::format_action(&self.model, &action);
        let next = self.model.next_state(&last.state, action)?;
        let mut s = format!("{heading}\n");
        for effect in trace::effects(&self.model, &last.state, &next) {
            s.push_str(&format!("  -> {effect}\n"));
        }
        s.push('\n');
        s.push_str(&format!("{:?}", self.wrap(next)));
        Some(s)
    }

    fn as_svg(&self, path: Path<ExplorerState, Action>) -> Option<String> {
        let pairs = path.into_vec();
        let init = pairs.first()?.0.state.clone();
        let actions: Vec<Action> = pairs.into_iter().filter_map(|(_, a)| a).collect();
        let inner = Path::from_actions(&self.model, init, actions.iter())?;
        self.model.as_svg(inner)
    }

    /// Every property checked but L0: stateright's Explorer reads an Eventually property as
    /// "every path", at terminal states, not as `check` does (spec section 12).
    fn properties(&self) -> Vec<Property<Self>> {
        self.model
            .checked
            .iter()
            .enumerate()
            .filter(|(_, p)| p.expectation != stateright::Expectation::Eventually)
            .map(|(i, p)| Property {
                expectation: p.expectation.clone(),
                name: p.name,
                condition: CONDITIONS[i],
            })
            .collect()
    }

    fn within_boundary(&self, state: &ExplorerState) -> bool {
        self.model.within_boundary(&state.state)
    }
}

impl fmt::Debug for ExplorerState {
    /// One block per actor, then the network, the timers and the ghost history:
    ///
    /// ```text
    /// controller (controller epoch 1): brokers 1 live (broker epoch 0), 2 live (broker epoch 0)
    ///   t-0 leader 1 leader epoch 1 partition epoch 1 ISR [1,2] replicas [1,2]
    /// broker 1 (broker epoch 0)
    ///   t-0 leader (epoch start 0) leader epoch 1 log [0@1:a] LEO 1 HWM 1 ISR [1,2]
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.state;
        for (i, actor) in s.actor_states.iter().enumerate() {
            let name = &self.names[i];
            let crashed = if s.crashed[i] { " CRASHED" } else { "" };
            if let Some(c) = actor.as_controller() {
                write!(
                    f,
                    "{name}{crashed} (controller epoch {}): brokers",
                    c.controller_epoch
                )?;
                for (n, (b, r)) in c.brokers.iter().enumerate() {
                    let status = if r.fenced { "fenced" } else { "live" };
                    let sep = if n == 0 { "" } else { "," };
                    write!(f, "{sep} {b} {status} (broker epoch {})", r.broker_epoch)?;
                }
                writeln!(f)?;
                for p in c.partitions.values() {
                    writeln!(f, "  {p:?}")?;
                }
            } else if let Some(b) = actor.as_broker() {
                let registering = if b.registered { "" } else { ", registering" };
                writeln!(
                    f,
                    "{name}{crashed} (broker epoch {}{registering})",
                    b.broker_epoch
                )?;
                if b.replicas.is_empty() {
                    writeln!(f, "  no replicas yet")?;
                }
                for r in b.replicas.values() {
                    writeln!(f, "  {r:?}")?;
                }
            } else if let Some(p) = actor.as_producer() {
                let acked = s.history.describe_deliveries(i);
                writeln!(
                    f,
                    "{name}{crashed}: {}{acked}",
                    without_role(&format!("{p:?}"))
                )?;
            } else if let Some(c) = actor.as_consumer() {
                let read = s.history.describe_deliveries(i);
                writeln!(
                    f,
                    "{name}{crashed}: {}{read}",
                    without_role(&format!("{c:?}"))
                )?;
            }
            if s.crashed[i] {
                match &s.actor_storages[i] {
                    Some(storage) => writeln!(f, "  restarts from {storage:?}")?,
                    None => writeln!(f, "  restarts with nothing stored")?,
                }
            }
        }
        // Not `Network::iter_all`: in stateright 0.31 it never advances within an ordered
        // channel, and loops until memory runs out.
        let line = |src: Id, dst: Id, msg: &Msg| {
            format!(
                "  {} -> {}: {msg:?}",
                self.names[usize::from(src)],
                self.names[usize::from(dst)]
            )
        };
        let mut in_flight: Vec<String> = Vec::new();
        match &s.network {
            Network::Ordered(channels) => {
                for ((src, dst), queue) in channels {
                    in_flight.extend(queue.iter().map(|msg| line(*src, *dst, msg)));
                }
            }
            Network::UnorderedNonDuplicating(multiset) => {
                for (env, count) in multiset.iter() {
                    for _ in 0..*count {
                        in_flight.push(line(env.src, env.dst, &env.msg));
                    }
                }
                // Hash order differs per process; sorted, the text is the same everywhere.
                in_flight.sort();
            }
            Network::UnorderedDuplicating(set, _) => {
                in_flight.extend(set.iter().map(|env| line(env.src, env.dst, &env.msg)));
                in_flight.sort();
            }
        }
        writeln!(f, "in flight ({}):", in_flight.len())?;
        for line in &in_flight {
            writeln!(f, "{line}")?;
        }
        writeln!(f, "timers:")?;
        for (i, timers) in s.timers_set.iter().enumerate() {
            let mut armed: Vec<String> = timers.iter().map(|t| format!("{t:?}")).collect();
            if armed.is_empty() {
                continue;
            }
            armed.sort();
            writeln!(f, "  {}: {}", self.names[i], armed.join(", "))?;
        }
        write_history(f, &s.history)
    }
}

/// The ghost history with its flags named: what was ever committed, which transition invariants
/// broke, what the last step did.
fn write_history(f: &mut fmt::Formatter<'_>, ghost: &Ghost) -> fmt::Result {
    f.write_str("history (ghost): committed")?;
    for (p, records) in ghost.histories().committed.iter().enumerate() {
        write!(f, " t-{p} [")?;
        for (o, c) in records.iter().enumerate() {
            let sep = if o == 0 { "" } else { " " };
            write!(
                f,
                "{sep}{o}@{}:{:?}",
                c.entry.leader_epoch, c.entry.record.value
            )?;
        }
        f.write_str("]")?;
    }
    let named = |bits: u16, names: &[(u16, &str)]| -> Vec<String> {
        names
            .iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, name)| name.to_string())
            .collect()
    };
    let violations = named(
        ghost.violations,
        &[
            (
                violation::APPEND_FROM_STALE_EPOCH,
                "a replica appended from a stale leader epoch (I5)",
            ),
            (
                violation::STALE_CONTROLLER_REQUEST_APPLIED,
                "a broker applied a stale controller epoch's request (I6)",
            ),
            (
                violation::COMMITTED_RECORD_CHANGED,
                "a leader exposed a different record below its HWM (I8)",
            ),
            (
                violation::APPENDED_UNDER_MIN_ISR,
                "a leader appended an acks=all batch under min.insync.replicas (I14)",
            ),
            (
                violation::CAUGHT_UP_FOLLOWER_DROPPED,
                "a leader dropped a caught-up follower from its ISR (I36)",
            ),
        ],
    );
    if !violations.is_empty() {
        write!(f, "; broken: {}", violations.join(", "))?;
    }
    let events = named(
        ghost.events,
        &[
            (event::TRUNCATED, "a log was truncated"),
            (event::ISR_EXPANDED, "the ISR was expanded"),
            (event::DUPLICATE_PRODUCE, "a leader got a duplicate produce"),
        ],
    );
    if !events.is_empty() {
        write!(f, "; last step: {}", events.join(", "))?;
    }
    if ghost.isr_shrinks > 0 {
        write!(f, "; ISR shrinks asked {}", ghost.isr_shrinks)?;
    }
    Ok(())
}

/// `producer | batch 0 …` without the leading role word, which the actor name already says.
fn without_role(debug: &str) -> &str {
    debug.split_once(" | ").map_or("idle", |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::preset;
    use crate::properties;

    #[test]
    fn every_property_has_a_condition_slot_and_the_same_verdict() {
        assert!(properties::all().len() <= CONDITIONS.len());
        let explorer = ExplorerModel::new(preset("idempotent").unwrap().knobs);
        let init = explorer.init_states().remove(0);
        // L0 is judged by `check` only (spec section 12).
        let inner: Vec<_> = properties::enabled(&explorer.model.knobs)
            .into_iter()
            .filter(|p| p.expectation != stateright::Expectation::Eventually)
            .collect();
        assert_eq!(explorer.properties().len(), inner.len());
        for (p, q) in explorer.properties().iter().zip(&inner) {
            assert_eq!(p.name, q.name);
            assert_eq!(
                (p.condition)(&explorer, &init),
                (q.condition)(&explorer.model, &init.state),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn states_keep_their_fingerprints_and_actions_their_set() {
        let explorer = ExplorerModel::new(preset("idempotent").unwrap().knobs);
        let init = explorer.init_states().remove(0);
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        assert_eq!(
            hash(&|h| init.hash(h)),
            hash(&|h| init.state.hash(h)),
            "the Explorer's fingerprints are the checker's"
        );
        let mut canonical = Vec::new();
        explorer.actions(&init, &mut canonical);
        let mut inner = Vec::new();
        explorer.model.actions(&init.state, &mut inner);
        assert_eq!(canonical.len(), inner.len());
        assert!(inner.iter().all(|a| canonical.contains(a)));
        // Deliveries first, by recipient; crashes last.
        assert!(matches!(canonical[0], ActorModelAction::Deliver { .. }));
        assert!(matches!(canonical.last(), Some(ActorModelAction::Crash(_))));
    }
}
