//! Fixtures for handler tests: a three-broker cluster with topic `t` (one partition on brokers
//! 1, 2, 3, min.insync.replicas 2), and helpers that run one handler and return what it did.

#![allow(dead_code)]

use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::sync::Arc;
use watermark_model::*;

pub const CONTROLLER: usize = 0;
pub const PRODUCER: usize = 4;

pub fn id(i: usize) -> Id {
    Id::from(i)
}

pub fn topic() -> Topic {
    Topic::new("t")
}

pub fn tp() -> TopicPartition {
    TopicPartition::new(&topic(), 0)
}

pub fn cluster(protocol: Protocol) -> Arc<ClusterConfig> {
    cluster_with(protocol, 2, false)
}

pub fn cluster_with(protocol: Protocol, min_isr: u32, unclean: bool) -> Arc<ClusterConfig> {
    Arc::new(ClusterConfig {
        controller: id(CONTROLLER),
        controllers: Vec::new(),
        brokers: (1..=3).map(|b| (b, id(b as usize))).collect(),
        protocol,
        fetch_bytes_max: 1,
        retransmit: false,
        heartbeat_periodic: false,
        metadata_pull: true,
        hwm_under_min_isr: false,
        eligible_leader_replicas: false,
        timing: Timing::model(),
        offsets_topic_num_partitions: 1,
        topics: vec![TopicConfig {
            topic: topic(),
            assignments: vec![vec![1, 2, 3]],
            min_insync_replicas: min_isr,
            unclean_leader_election: unclean,
        }],
    })
}

/// The cluster as the real one and the lossy model run it: brokers retransmit.
pub fn cluster_retransmitting(protocol: Protocol) -> Arc<ClusterConfig> {
    let mut c = (*cluster(protocol)).clone();
    c.retransmit = true;
    Arc::new(c)
}

pub fn broker(broker_id: BrokerId, cluster: &Arc<ClusterConfig>) -> Node {
    Node::Broker(Broker::new(BrokerConfig {
        broker_id,
        cluster: cluster.clone(),
    }))
}

pub fn controller(cluster: &Arc<ClusterConfig>, preferred: bool) -> Node {
    Node::Controller(Controller::new(ControllerConfig {
        cluster: cluster.clone(),
        preferred_leader_election: preferred,
        racks: Vec::new(),
        metadata_bytes_max: u64::MAX,
    }))
}

pub type Cmd = Command<Msg, Timer, PowerLoss, Storage>;

/// What one handler did: the next state (`None` if it left the state untouched) and its
/// commands in order.
pub struct Step {
    pub next: Option<NodeState>,
    pub commands: Vec<Cmd>,
}

impl Step {
    pub fn state(&self) -> &NodeState {
        self.next.as_ref().expect("the handler changed the state")
    }
    pub fn broker(&self) -> &BrokerState {
        self.state().as_broker().expect("a broker")
    }
    pub fn controller(&self) -> &ControllerState {
        self.state().as_controller().expect("the controller")
    }
    pub fn sends(&self) -> Vec<(usize, Msg)> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::Send(to, m) => Some((usize::from(*to), m.clone())),
                _ => None,
            })
            .collect()
    }
    pub fn sends_to(&self, to: usize) -> Vec<Msg> {
        self.sends()
            .into_iter()
            .filter(|(t, _)| *t == to)
            .map(|(_, m)| m)
            .collect()
    }
    /// The acknowledgements a producer handed its application in this step (R38).
    pub fn acked(&self) -> Vec<producer::Ack> {
        self.sends_to(usize::from(application()))
            .into_iter()
            .filter_map(|m| match m {
                Msg::RecordAcknowledged(a) => Some(a),
                _ => None,
            })
            .collect()
    }
    /// The group events a member handed its application in this step (R61, R62).
    pub fn group_events(&self) -> Vec<group::GroupEvent> {
        self.sends_to(usize::from(application()))
            .into_iter()
            .filter_map(|m| match m {
                Msg::Group(e) => Some(e),
                _ => None,
            })
            .collect()
    }
    /// The records a consumer handed its application in this step (R42).
    pub fn consumed(&self) -> Vec<consumer::Consumed> {
        self.sends_to(usize::from(application()))
            .into_iter()
            .filter_map(|m| match m {
                Msg::RecordConsumed(c) => Some(c),
                _ => None,
            })
            .collect()
    }
    pub fn saved(&self) -> bool {
        self.commands.iter().any(|c| matches!(c, Command::Save(_)))
    }
    /// R0: no Send precedes a Save in the same step.
    pub fn save_precedes_sends(&self) -> bool {
        let first_send = self
            .commands
            .iter()
            .position(|c| matches!(c, Command::Send(..)));
        let last_save = self
            .commands
            .iter()
            .rposition(|c| matches!(c, Command::Save(_)));
        match (first_send, last_save) {
            (Some(send), Some(save)) => save < send,
            _ => true,
        }
    }
    /// A no-op: nothing changed, and nothing but the re-armed timer (if any) was emitted.
    pub fn is_noop(&self) -> bool {
        self.next.is_none()
            && self
                .commands
                .iter()
                .all(|c| matches!(c, Command::SetTimer(..)))
    }
}

pub fn start(node: &Node, index: usize, storage: Option<Storage>) -> Step {
    let mut out = Out::new();
    let state = node.on_start(id(index), &storage, &mut out);
    Step {
        next: Some(state),
        commands: out.into_iter().collect(),
    }
}

pub fn deliver(node: &Node, index: usize, state: &NodeState, src: usize, msg: Msg) -> Step {
    let mut cow = Cow::Borrowed(state);
    let mut out = Out::new();
    node.on_msg(id(index), &mut cow, id(src), msg, &mut out);
    Step {
        next: match cow {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        },
        commands: out.into_iter().collect(),
    }
}

pub fn fire(node: &Node, index: usize, state: &NodeState, timer: Timer) -> Step {
    let mut cow = Cow::Borrowed(state);
    let mut out = Out::new();
    node.on_timeout(id(index), &mut cow, &timer, &mut out);
    Step {
        next: match cow {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        },
        commands: out.into_iter().collect(),
    }
}

/// The state after a step, or the unchanged state.
pub fn after(state: &NodeState, step: &Step) -> NodeState {
    step.next.clone().unwrap_or_else(|| state.clone())
}

pub fn partition(
    leader: Option<BrokerId>,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    isr: &[BrokerId],
) -> PartitionState {
    PartitionState {
        topic_partition: tp(),
        leader,
        leader_epoch,
        partition_epoch,
        isr: isr.into(),
        elr: Default::default(),
        replicas: [1, 2, 3].as_slice().into(),
        min_insync_replicas: 2,
        unclean_leader_election: false,
    }
}

/// A push of one partition's state, spanning metadata offsets (0, 1]: the next change after the
/// bootstrapped state.
pub fn leader_and_isr(controller_epoch: u32, broker_epoch: u32, ps: PartitionState) -> Msg {
    leader_and_isr_at(controller_epoch, broker_epoch, (Some(0), 1), ps)
}

/// A push of one partition's state spanning the given metadata offsets.
pub fn leader_and_isr_at(
    controller_epoch: u32,
    broker_epoch: u32,
    (base_metadata_offset, metadata_offset): (Option<MetadataOffset>, MetadataOffset),
    ps: PartitionState,
) -> Msg {
    Msg::LeaderAndIsr {
        controller_epoch,
        broker_epoch,
        base_metadata_offset,
        metadata_offset,
        partitions: vec![ps].into(),
    }
}

pub fn heartbeat(
    broker_id: BrokerId,
    broker_epoch: BrokerEpoch,
    metadata_offset: Option<MetadataOffset>,
) -> Msg {
    Msg::BrokerHeartbeat {
        broker_id,
        broker_epoch,
        metadata_offset,
    }
}

pub fn entry(epoch: LeaderEpoch, value: &str) -> LogEntry {
    LogEntry {
        leader_epoch: epoch,
        record: Record {
            value: Value::from(value),
            producer: None,
        },
    }
}

pub fn log(entries: &[(LeaderEpoch, &str)]) -> Log {
    Log::from_entries(entries.iter().map(|(e, v)| entry(*e, v)))
}

pub fn produce(acks: Acks, leader_epoch: LeaderEpoch, values: &[&str], batch: u32) -> Msg {
    Msg::Produce(ProduceRequest {
        topic_partition: tp(),
        acks,
        leader_epoch,
        records: values
            .iter()
            .map(|v| Record {
                value: Value::from(*v),
                producer: None,
            })
            .collect::<Vec<_>>()
            .into(),
        batch,
        attempt: 1,
    })
}

pub fn follower_fetch(
    replica: BrokerId,
    fetch_offset: Offset,
    last_fetched_epoch: Option<LeaderEpoch>,
    current_leader_epoch: Option<LeaderEpoch>,
) -> Msg {
    Msg::Fetch(FetchRequest {
        topic_partition: tp(),
        replica_id: Some(replica),
        broker_epoch: 0,
        fetch_offset,
        last_fetched_epoch,
        current_leader_epoch,
        fetch_bytes_max: 1,
        // A follower's HWM is at most its LEO: this one knows the leader's HWM up to its log.
        high_watermark: fetch_offset,
    })
}

pub fn fetch_result(msg: &Msg) -> &FetchResult {
    match msg {
        Msg::FetchResponse(r) => &r.result,
        other => panic!("not a fetch response: {other:?}"),
    }
}

pub fn produce_result(msg: &Msg) -> Result<Offset, ErrorCode> {
    match msg {
        Msg::ProduceResponse(r) => r.result,
        other => panic!("not a produce response: {other:?}"),
    }
}

/// Broker `b`'s state after a fresh start (the bootstrapped partition, leader 1 in epoch 0).
pub fn fresh(node: &Node, b: usize) -> NodeState {
    start(node, b, None).next.unwrap()
}

/// Replaces broker 1's replica of `t-0` (as leader in `leader_epoch`) with the given log and HWM.
pub fn with_leader_log(state: &NodeState, log: Log, high_watermark: Offset) -> NodeState {
    let mut b = state.as_broker().unwrap().clone();
    let r = b.replicas.get_mut(&tp()).unwrap();
    if let Role::Leader(l) = &mut r.role {
        l.epoch_start_offset = log.log_end_offset();
    }
    r.log = log;
    r.high_watermark = high_watermark;
    NodeState::Broker(b)
}

pub fn replica(state: &NodeState) -> &Replica {
    state.as_broker().unwrap().replicas.get(&tp()).unwrap()
}
