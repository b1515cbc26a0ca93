//! The model: the cluster's actors in a stateright `ActorModel`, wrapped to keep a ghost history
//! and to bound the state space. Spec: "Model bounds".
//!
//! Actor indices: 0 is the controller, 1..=brokers are brokers 1..=brokers, then producers, then
//! consumers.

use crate::ghost::{self, Ghost};
use crate::hashed::Hashed;
use crate::knobs::Knobs;
use crate::properties;
use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Command, Id, LossyNetwork,
    Network as SrNetwork, Out,
};
use stateright::{Model, Path, Property};
use std::borrow::Cow;
use std::sync::Arc;
use watermark_model::*;

pub type State = ActorModelState<Checked, Ghost>;
pub type Action = ActorModelAction<Msg, Timer, PowerLoss>;

/// The `SelectRandom` key of the power losses the checker injects.
pub const POWER_LOSS: &str = "power loss";

/// The model of a configuration.
pub struct WatermarkModel {
    pub knobs: Knobs,
    pub inner: ActorModel<Checked, (), Ghost>,
    pub topic: Topic,
    /// The properties the checker evaluates: those that apply to the knobs, unless replaced
    /// (`with_properties`, as the matrix does).
    pub checked: Vec<properties::PropertyDef>,
    /// Whether the ghost records `event::DIVERGENT_TAIL_TRUNCATED` (only the matrix asks).
    pub observe_divergent_truncation: bool,
    /// Whether the ghost records M5's event (a lookup that left a divergence); the matrix only.
    pub observe_lookup_divergence: bool,
    /// Whether the ghost records M6's event (a crash with a stale HWM checkpoint); the matrix only.
    pub observe_stale_checkpoints: bool,
    /// Whether the ghost records M7's and M8's events (fetches from another leader epoch); the
    /// matrix only.
    pub observe_fetch_fencing: bool,
    /// Whether the ghost records M9's event (an acks=all append at exactly min.insync.replicas);
    /// the matrix only.
    pub observe_min_isr_appends: bool,
    /// Whether the ghost records M10's event (a caught-up follower proposed on an ISR change);
    /// the matrix only.
    pub observe_isr_rejoins: bool,
    /// Whether the ghost records M11's event (an undefined answer to an epoch lookup for an
    /// epoch the leader knows); the matrix only.
    pub observe_undefined_lookups: bool,
}

pub const CONTROLLER_INDEX: usize = 0;

/// An actor as the checker hosts it: the protocol's `Node`, whose state and storage are kept
/// with their hashes (`Hashed`), so that a state's fingerprint hashes only the actor states and
/// storages its step replaced; the others are its parent's `Arc`s. Every handler is `Node`'s.
#[derive(Clone)]
pub struct Checked(pub Node);

impl Checked {
    /// `Node`'s step on a borrowed state, and the new state kept with its hash if it changed.
    fn step(
        state: &mut Cow<Hashed<NodeState>>,
        o: &mut Out<Self>,
        handler: impl FnOnce(&mut Cow<NodeState>, &mut Out<Node>),
    ) {
        let mut out = Out::new();
        let mut inner = Cow::Borrowed(&***state);
        handler(&mut inner, &mut out);
        if let Cow::Owned(next) = inner {
            *state = Cow::Owned(Hashed::new(next));
        }
        forward(out, o);
    }
}

/// `Node`'s commands as `Checked`'s: the same, a saved storage kept with its hash.
fn forward(out: Out<Node>, o: &mut Out<Checked>) {
    for command in out {
        match command {
            Command::Send(dst, msg) => o.send(dst, msg),
            Command::SetTimer(timer, duration) => o.set_timer(timer, duration),
            Command::CancelTimer(timer) => o.cancel_timer(timer),
            Command::ChooseRandom(key, random) => o.choose_random(key, random),
            Command::Save(storage) => o.save(Hashed::new(storage)),
        }
    }
}

impl Actor for Checked {
    type Msg = Msg;
    type State = Hashed<NodeState>;
    type Timer = Timer;
    type Storage = Hashed<Storage>;
    type Random = PowerLoss;

    fn name(&self) -> String {
        self.0.name()
    }

    fn on_start(&self, id: Id, storage: &Option<Self::Storage>, o: &mut Out<Self>) -> Self::State {
        let storage = storage.as_deref().cloned();
        let mut out = Out::new();
        let state = self.0.on_start(id, &storage, &mut out);
        forward(out, o);
        Hashed::new(state)
    }

    fn on_msg(&self, id: Id, state: &mut Cow<Self::State>, src: Id, msg: Msg, o: &mut Out<Self>) {
        Self::step(state, o, |s, out| self.0.on_msg(id, s, src, msg, out))
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<Self::State>, timer: &Timer, o: &mut Out<Self>) {
        Self::step(state, o, |s, out| self.0.on_timeout(id, s, timer, out))
    }

    fn on_random(
        &self,
        id: Id,
        state: &mut Cow<Self::State>,
        random: &PowerLoss,
        o: &mut Out<Self>,
    ) {
        Self::step(state, o, |s, out| self.0.on_random(id, s, random, out))
    }
}

/// How the actors are configured: as the checker explores them, with no clock and batches of
/// one record, or as a real cluster runs them (the simulator, `crate::sim`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub timing: Timing,
    /// The clients' timing (`request.timeout.ms` above the brokers' session timeout).
    pub client_timing: Timing,
    /// `replica.fetch.max.bytes`, `fetch.max.bytes` and `batch.size`.
    pub fetch_bytes_max: u32,
    pub batch_bytes_max: u32,
    pub retransmit: bool,
    pub heartbeat_periodic: bool,
    pub client_request_timeout: bool,
    pub producer_attempts_max: u32,
}

impl Settings {
    /// The checker's: every timer may fire at any moment, batches and fetch responses hold what
    /// the knobs allow (one record unless said), retransmission only with a lossy network,
    /// heartbeats within B7.
    pub fn model(knobs: &Knobs) -> Settings {
        Settings {
            timing: Timing::model(),
            client_timing: Timing::model(),
            fetch_bytes_max: knobs.fetch_bytes_max,
            batch_bytes_max: knobs.batch_bytes_max,
            retransmit: knobs.network.lossy,
            heartbeat_periodic: knobs.metadata_pulls > 0,
            client_request_timeout: knobs.client_request_timeout,
            producer_attempts_max: knobs.producer_attempts_max,
        }
    }
}

impl WatermarkModel {
    pub fn new(knobs: Knobs) -> Self {
        let settings = Settings::model(&knobs);
        Self::with_settings(knobs, settings)
    }

    /// The model of a configuration with actors configured by `settings`.
    pub fn with_settings(knobs: Knobs, settings: Settings) -> Self {
        let topic = Topic::new("t");
        let controller = Id::from(CONTROLLER_INDEX);
        let brokers: Vec<(BrokerId, Id)> = (1..=knobs.brokers)
            .map(|b| (b, Id::from(b as usize)))
            .collect();
        let cluster = Arc::new(ClusterConfig {
            controller,
            controllers: Vec::new(),
            brokers: brokers.clone(),
            protocol: knobs.protocol,
            fetch_bytes_max: settings.fetch_bytes_max,
            retransmit: settings.retransmit,
            // B7: with pulls allowed, a registered broker's heartbeat timer sends one; the
            // ghost counts them.
            heartbeat_periodic: settings.heartbeat_periodic,
            metadata_pull: knobs.metadata_pull,
            hwm_under_min_isr: knobs.hwm_under_min_isr,
            eligible_leader_replicas: knobs.eligible_leader_replicas,
            timing: settings.timing.clone(),
            offsets_topic_num_partitions: 1,
            topics: std::iter::once(TopicConfig {
                topic,
                assignments: assignments(&knobs),
                min_insync_replicas: knobs.min_insync_replicas,
                unclean_leader_election: knobs.unclean_leader_election,
            })
            .chain(knobs.group.then(|| offsets_topic(&knobs)))
            .collect(),
        });
        let mut inner = ActorModel::new((), Ghost::default())
            .record_msg_out(ghost::record_msg_out)
            .actor(Checked(Node::Controller(Controller::new(
                ControllerConfig {
                    cluster: cluster.clone(),
                    preferred_leader_election: knobs.preferred_leader_election,
                    racks: Vec::new(),
                    metadata_bytes_max: u64::MAX,
                },
            ))))
            .actors(brokers.iter().map(|(broker_id, _)| {
                Checked(Node::Broker(Broker::new(BrokerConfig {
                    broker_id: *broker_id,
                    cluster: cluster.clone(),
                })))
            }));
        let bootstrap: Vec<Id> = brokers.iter().map(|(_, id)| *id).collect();
        let values = record_values(&knobs);
        for p in 0..knobs.producers {
            let records = (0..knobs.records)
                .map(|i| {
                    let partition = i % knobs.partitions;
                    (partition, values[(p * knobs.records + i) as usize].clone())
                })
                .collect();
            inner = inner.actor(Checked(Node::Producer(Producer::new(ProducerConfig {
                bootstrap: bootstrap.clone(),
                topic,
                acks: knobs.acks,
                idempotence: knobs.idempotence.then_some(p as ProducerId + 1),
                records,
                accumulated_at_start: None,
                attempts_max: settings.producer_attempts_max,
                batch_bytes_max: settings.batch_bytes_max,
                request_timeout: settings.client_request_timeout,
                max_in_flight_requests: knobs.max_in_flight_requests,
                timing: settings.client_timing.clone(),
            }))));
        }
        for c in 0..knobs.consumers {
            inner = inner.actor(Checked(Node::Consumer(Consumer::new(ConsumerConfig {
                bootstrap: bootstrap.clone(),
                topic_partition: TopicPartition::new(&topic, c % knobs.partitions),
                fetch_bytes_max: settings.fetch_bytes_max,
                request_timeout: settings.client_request_timeout,
                timing: settings.client_timing.clone(),
                start_offset: 0,
                group: knobs.group.then(|| GroupConfig {
                    group: Group::new(GROUP),
                    offset_reset: knobs.offset_reset,
                    commit: if knobs.auto_commit {
                        CommitMode::Auto
                    } else {
                        CommitMode::Manual
                    },
                    auto_commit_interval: settings.client_timing.retry_backoff.clone(),
                }),
                records_max: None,
            }))));
        }
        inner = inner
            .init_network(initial_network(&knobs))
            .lossy_network(lossy_network(&knobs))
            .max_crashes(
                (knobs.broker_crashes + knobs.controller_crashes + knobs.consumer_crashes) as usize,
            );
        Self::checking_what_applies(knobs, inner, topic)
    }

    /// The model of `inner`, checking the properties that apply to `knobs`.
    fn checking_what_applies(
        knobs: Knobs,
        inner: ActorModel<Checked, (), Ghost>,
        topic: Topic,
    ) -> Self {
        WatermarkModel {
            checked: properties::enabled(&knobs),
            observe_divergent_truncation: false,
            observe_lookup_divergence: false,
            observe_stale_checkpoints: false,
            observe_fetch_fencing: false,
            observe_min_isr_appends: false,
            observe_isr_rejoins: false,
            observe_undefined_lookups: false,
            knobs,
            inner,
            topic,
        }
    }

    /// A model of actors configured elsewhere (a real cluster's, read from its traces by
    /// `watermark validate`), laid out as [`WatermarkModel::new`] lays them out: the controller,
    /// brokers 1..=n at their ids, then producers, then consumers. `knobs` must count them;
    /// `topic` is the topic whose committed records the ghost follows.
    pub fn hosting(knobs: Knobs, topic: Topic, actors: Vec<Node>) -> Self {
        let inner = ActorModel::new((), Ghost::default())
            .record_msg_out(ghost::record_msg_out)
            .actors(actors.into_iter().map(Checked))
            .init_network(SrNetwork::new_ordered([]))
            .lossy_network(LossyNetwork::Yes);
        Self::checking_what_applies(knobs, inner, topic)
    }

    /// The protocol actor at `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.inner.actors[index].0
    }

    /// Whether this property is among those checked.
    fn checks(&self, name: &str) -> bool {
        self.checked.iter().any(|p| p.name == name)
    }

    /// Whether the ghost keeps the controller epochs delivered to each broker (I6).
    pub fn observe_controller_epochs(&self) -> bool {
        self.checks("NoStaleControllerRequest")
    }

    /// Whether the ghost keeps which brokers lost a push (S16).
    pub fn observe_lost_pushes(&self) -> bool {
        self.checks("LostMetadataRepaired")
    }

    /// The same model, checking exactly these properties. The matrix-only observations are
    /// kept as flags: the ghost asks about them on every delivery.
    pub fn with_properties(mut self, properties: Vec<properties::PropertyDef>) -> Self {
        self.checked = properties;
        self.observe_divergent_truncation = self.checks("DivergentTailTruncated");
        self.observe_lookup_divergence = self.checks("EpochLookupLeftDivergence");
        self.observe_stale_checkpoints = self.checks("StaleHwmCheckpoint");
        self.observe_fetch_fencing =
            self.checks("FetchFromOtherEpoch") || self.checks("FetchFromOtherEpochTaken");
        self.observe_min_isr_appends = self.checks("AppendAtMinIsr");
        self.observe_isr_rejoins = self.checks("IsrRejoinOnIsrChange");
        self.observe_undefined_lookups = self.checks("EpochLookupUndefined");
        self
    }

    /// Whether actor `index` is a producer or a consumer.
    pub fn is_client(&self, index: usize) -> bool {
        index >= self.producer_indices().start
    }

    /// Whether `action` runs a producer's or a consumer's handler.
    fn runs_client(&self, action: &Action) -> bool {
        match action {
            ActorModelAction::Deliver { dst, .. } => self.is_client(usize::from(*dst)),
            ActorModelAction::Timeout(id, _) => self.is_client(usize::from(*id)),
            _ => false,
        }
    }

    pub fn broker_indices(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.knobs.brokers as usize
    }

    pub fn producer_indices(&self) -> std::ops::Range<usize> {
        let start = 1 + self.knobs.brokers as usize;
        start..start + self.knobs.producers as usize
    }

    pub fn consumer_indices(&self) -> std::ops::Range<usize> {
        let start = 1 + self.knobs.brokers as usize + self.knobs.producers as usize;
        start..start + self.knobs.consumers as usize
    }

    /// Every partition of the model: the topic's, then `__consumer_offsets-0` with a group.
    pub fn topic_partitions(&self) -> Vec<TopicPartition> {
        (0..self.knobs.partitions)
            .map(|p| TopicPartition::new(&self.topic, p))
            .chain(
                self.knobs
                    .group
                    .then(|| TopicPartition::new(&watermark_model::group::offsets_topic(), 0)),
            )
            .collect()
    }

    /// Where `tp` stands in [`Self::topic_partitions`] (and in the ghost's committed records).
    pub fn partition_index(&self, tp: &TopicPartition) -> Option<usize> {
        if tp.topic == self.topic {
            return (tp.partition < self.knobs.partitions).then_some(tp.partition as usize);
        }
        let offsets = self.knobs.group && tp.topic.as_str() == OFFSETS_TOPIC && tp.partition == 0;
        offsets.then_some(self.knobs.partitions as usize)
    }

    /// The name of actor `index`, in Kafka's terms.
    pub fn actor_name(&self, index: usize) -> String {
        if index == CONTROLLER_INDEX {
            "controller".into()
        } else if self.broker_indices().contains(&index) {
            format!("broker {index}")
        } else if self.producer_indices().contains(&index) {
            format!("producer {}", index - self.producer_indices().start)
        } else {
            format!("consumer {}", index - self.consumer_indices().start)
        }
    }

    /// Whether every state `action` can lead to from `state` lies beyond a bound (spec section
    /// 9), so that the checker need not compute the step to throw it away: a crash past B2's or
    /// B4's count, a live broker's session expiring past B3's, an ISR shrink past B6's, a
    /// registered broker's heartbeat past B7's. Each test is the ghost's count (or B3's state
    /// test) as the step would leave it; `within_bounds` still judges every step taken. (A power
    /// loss is drawn only for a crash that this kept, so it needs no test of its own.)
    fn exceeds_bound(&self, state: &State, action: &Action) -> bool {
        let ghost = &state.history;
        match action {
            ActorModelAction::Crash(id) => self.crashes_spent(state, usize::from(*id)),
            ActorModelAction::Timeout(id, Timer::SessionTimeout(broker))
                if usize::from(*id) == CONTROLLER_INDEX =>
            {
                let suspicions_spent = !self.knobs.false_suspicions || ghost.false_suspicions >= 1;
                suspicions_spent && session_of_live_broker(state, *broker)
            }
            ActorModelAction::Timeout(_, Timer::IsrShrink) => {
                u32::from(ghost.isr_shrinks) >= self.knobs.isr_shrinks
            }
            ActorModelAction::Timeout(id, Timer::Heartbeat) => {
                u32::from(ghost.metadata_pulls) >= self.knobs.metadata_pulls
                    && broker(state, usize::from(*id)).is_some_and(|b| b.registered)
            }
            _ => false,
        }
    }

    /// B2, B4: whether actor `index` may crash no more (the ghost counts crashes by role).
    fn crashes_spent(&self, state: &State, index: usize) -> bool {
        let ghost = &state.history;
        if index == CONTROLLER_INDEX {
            u32::from(ghost.controller_crashes) >= self.knobs.controller_crashes
        } else if self.consumer_indices().contains(&index) {
            u32::from(ghost.consumer_crashes) >= self.knobs.consumer_crashes
        } else if self.producer_indices().contains(&index) {
            true
        } else {
            u32::from(ghost.broker_crashes) >= self.knobs.broker_crashes
        }
    }

    /// The bounds of the explored state space (spec: "Model bounds").
    fn within_bounds(&self, state: &State) -> bool {
        // B1: leader epochs stay within `leader_epoch_max`.
        if let Some(controller) = controller(state) {
            if controller
                .partitions
                .values()
                .any(|p| p.leader_epoch > self.knobs.leader_epoch_max)
            {
                return false;
            }
        }
        // B2: brokers crash at most `broker_crashes` times in all, the controller at most
        // `controller_crashes` times (the ghost counts them).
        if u32::from(state.history.broker_crashes) > self.knobs.broker_crashes
            || u32::from(state.history.controller_crashes) > self.knobs.controller_crashes
        {
            return false;
        }
        // B3: with false suspicions allowed, the controller fences a live incarnation at most
        // once (each one bumps the partition epoch twice, out of and back into the ISR, so
        // without a bound the flapping never ends).
        if self.knobs.false_suspicions && state.history.false_suspicions > 1 {
            return false;
        }
        // B3: otherwise it fences only dead incarnations: a fenced registration belongs to a
        // crashed broker or to one that has restarted since.
        if !self.knobs.false_suspicions {
            if let Some(controller) = controller(state) {
                let falsely_fenced = controller
                    .brokers
                    .iter()
                    .any(|(b, r)| r.fenced && alive_in(state, *b, r.broker_epoch));
                if falsely_fenced {
                    return false;
                }
            }
        }
        // B4: producers do not crash; consumers crash at most `consumer_crashes` times in all.
        if self.producer_indices().any(|i| state.crashed[i])
            || u32::from(state.history.consumer_crashes) > self.knobs.consumer_crashes
        {
            return false;
        }
        // B6: leaders ask to shrink ISRs at most `isr_shrinks` times.
        if u32::from(state.history.isr_shrinks) > self.knobs.isr_shrinks {
            return false;
        }
        // B7: brokers pull metadata on their own at most `metadata_pulls` times.
        if u32::from(state.history.metadata_pulls) > self.knobs.metadata_pulls {
            return false;
        }
        // B5.
        one_copy_in_flight(&state.network)
    }
}

/// The network `knobs` name, empty: ordered, unordered, or unordered and duplicating.
pub fn initial_network<M>(knobs: &Knobs) -> SrNetwork<M>
where
    M: Clone + Eq + std::hash::Hash + Ord + std::fmt::Debug,
{
    if knobs.network.ordered {
        SrNetwork::new_ordered([])
    } else if knobs.network.duplicating {
        SrNetwork::new_unordered_duplicating([])
    } else {
        SrNetwork::new_unordered_nonduplicating([])
    }
}

/// Whether the network `knobs` name loses messages.
pub fn lossy_network(knobs: &Knobs) -> LossyNetwork {
    if knobs.network.lossy {
        LossyNetwork::Yes
    } else {
        LossyNetwork::No
    }
}

/// B5: on a non-duplicating network at most one copy of a message is in flight (per channel on
/// the ordered network); two copies are what the duplicating network models.
pub fn one_copy_in_flight<M>(network: &SrNetwork<M>) -> bool
where
    M: Clone + Eq + std::hash::Hash + Ord + std::fmt::Debug,
{
    match network {
        SrNetwork::UnorderedNonDuplicating(multiset) => multiset.values().all(|count| *count <= 1),
        SrNetwork::Ordered(channels) => channels.values().all(|queue| {
            queue
                .iter()
                .enumerate()
                .all(|(i, m)| queue.iter().skip(i + 1).all(|n| n != m))
        }),
        SrNetwork::UnorderedDuplicating(..) => true,
    }
}

/// Kafka's default replica placement: partition `p` starts at broker `p mod brokers + 1` and
/// takes the next brokers round the ring.
pub fn assignments(knobs: &Knobs) -> Vec<Vec<BrokerId>> {
    (0..knobs.partitions)
        .map(|p| {
            (0..knobs.replication_factor)
                .map(|r| (p + r) % knobs.brokers + 1)
                .collect()
        })
        .collect()
}

/// The group of the model's consumers, when they have one.
pub const GROUP: &str = "g";

/// `__consumer_offsets` of the model: one partition on the last `offsets_rf` brokers, the last
/// one preferred (so that, with two brokers or more, the coordinator is not the data
/// partition's preferred leader), with the topic's min.insync.replicas capped at its RF.
pub fn offsets_topic(knobs: &Knobs) -> TopicConfig {
    let rf = knobs.offsets_rf();
    TopicConfig {
        topic: watermark_model::group::offsets_topic(),
        assignments: vec![(0..rf).map(|r| knobs.brokers - r).collect()],
        min_insync_replicas: knobs.min_insync_replicas.min(rf),
        unclean_leader_election: false,
    }
}

/// Record values `a`, `b`, `c`… in the order producers write them.
pub fn record_values(knobs: &Knobs) -> Vec<Value> {
    (0..knobs.producers * knobs.records)
        .map(|i| {
            let letter = (b'a' + (i % 26) as u8) as char;
            let name = if i < 26 {
                letter.to_string()
            } else {
                format!("{letter}{}", i / 26)
            };
            Value::from(name.as_str())
        })
        .collect()
}

/// B3: whether the controller holds `broker` registered and unfenced in the incarnation it is
/// running, so that its session expiring (R2) would fence a live broker.
fn session_of_live_broker(state: &State, broker: BrokerId) -> bool {
    controller(state)
        .and_then(|c| c.registration(broker))
        .is_some_and(|r| !r.fenced && alive_in(state, broker, r.broker_epoch))
}

/// The broker state of actor `index`, if it is a broker.
pub(crate) fn broker(state: &State, index: usize) -> Option<&BrokerState> {
    state.actor_states.get(index)?.as_broker()
}

/// Whether broker `broker` is running, in incarnation `broker_epoch` (B3: fencing it then is a
/// false suspicion).
pub fn alive_in(state: &State, broker: BrokerId, broker_epoch: BrokerEpoch) -> bool {
    let i = broker as usize;
    !state.crashed[i]
        && state.actor_states[i]
            .as_broker()
            .is_some_and(|s| s.broker_epoch == broker_epoch)
}

/// Removes the messages to [`application`] that `ActorModel` put on the network: the ghost has
/// them already (`ghost::record_msg_out`).
fn take_deliveries_off(network: &mut SrNetwork<Msg>) {
    let app = application();
    match network {
        SrNetwork::Ordered(channels) => channels.retain(|(_, dst), _| *dst != app),
        SrNetwork::UnorderedNonDuplicating(multiset) => multiset.retain(|e, _| e.dst != app),
        SrNetwork::UnorderedDuplicating(set, _) => set.retain(|e| e.dst != app),
    }
}

pub fn controller(state: &State) -> Option<&ControllerState> {
    state.actor_states[CONTROLLER_INDEX].as_controller()
}

impl Model for WatermarkModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        self.inner
            .init_states()
            .into_iter()
            .map(|mut s| {
                ghost::observe(self, None, None, &mut s);
                s
            })
            .collect()
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.inner.actions(state, actions);
        actions.retain(|action| !self.exceeds_bound(state, action));
        if self.knobs.unclean_shutdown || self.knobs.stale_hwm_checkpoints {
            // A broker that may crash may instead lose power, keeping any shorter prefix of
            // its persisted logs, or come back with any older HWM checkpoint.
            let crashable: Vec<Id> = actions
                .iter()
                .filter_map(|a| match a {
                    ActorModelAction::Crash(id)
                        if self.broker_indices().contains(&usize::from(*id)) =>
                    {
                        Some(*id)
                    }
                    _ => None,
                })
                .collect();
            for id in crashable {
                let (log_end_offset, high_watermark) = match state.actor_storages[usize::from(id)]
                    .as_deref()
                {
                    Some(Storage::Broker(s)) => (s.log_end_offset_max(), s.high_watermark_max()),
                    _ => (0, 0),
                };
                let losses = (0..log_end_offset)
                    .filter(|_| self.knobs.unclean_shutdown)
                    .map(PowerLoss::keeping);
                let stale = (0..high_watermark)
                    .filter(|_| self.knobs.stale_hwm_checkpoints)
                    .map(PowerLoss::stale_hwm);
                for random in losses.chain(stale) {
                    actions.push(ActorModelAction::SelectRandom {
                        actor: id,
                        key: POWER_LOSS.to_string(),
                        random,
                    });
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut next = match &action {
            ActorModelAction::SelectRandom { actor, key, random } if key == POWER_LOSS => {
                let actor = *actor;
                let mut next = self
                    .inner
                    .next_state(last, ActorModelAction::Crash(actor))?;
                let i = usize::from(actor);
                if let Some(Storage::Broker(s)) = next.actor_storages[i].as_deref() {
                    let cut = s.after_power_loss(*random);
                    next.actor_storages[i] = Some(Hashed::new(Storage::Broker(Arc::new(cut))));
                }
                next
            }
            _ => self.inner.next_state(last, action.clone())?,
        };
        if self.runs_client(&action) {
            // The ghost holds what a client handed its application; it is not a message in flight.
            take_deliveries_off(&mut next.network);
        }
        ghost::observe(self, Some(last), Some(&action), &mut next);
        Some(next)
    }

    fn format_action(&self, action: &Action) -> String {
        crate::trace::format_action(self, action)
    }

    fn format_step(&self, last_state: &State, action: Action) -> Option<String> {
        self.inner.format_step(last_state, action)
    }

    fn as_svg(&self, path: Path<State, Action>) -> Option<String> {
        self.inner.as_svg(path)
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

    fn within_boundary(&self, state: &State) -> bool {
        self.within_bounds(state)
    }
}
