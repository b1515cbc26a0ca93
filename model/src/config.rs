//! Static configuration of each actor. Spec: "Configuration".
//!
//! Peers are named by broker id in the protocol and reached through the address table given
//! here: the model fills it with `Id::from(index)`, the real cluster with socket addresses.

use crate::collections::BrokerIds;
use crate::revision::Protocol;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{model_timeout, Id};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Timer durations. The model uses `model_timeout()` for all of them: its timers fire at any
/// moment, in any order. The real cluster sets real durations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timing {
    /// `broker.session.timeout.ms`.
    pub session_timeout: Range<Duration>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Range<Duration>,
    /// How often a leader looks for followers to drop (half of `replica.lag.time.max.ms`).
    pub isr_shrink_interval: Range<Duration>,
    /// `replica.fetch.backoff.ms` and `retry.backoff.ms`.
    pub retry_backoff: Range<Duration>,
    /// `request.timeout.ms`.
    pub request_timeout: Range<Duration>,
    /// `leader.imbalance.check.interval.seconds`.
    pub preferred_leader_election_interval: Range<Duration>,
}

impl Timing {
    /// Every timer may fire at any moment.
    pub fn model() -> Self {
        Timing {
            session_timeout: model_timeout(),
            heartbeat_interval: model_timeout(),
            isr_shrink_interval: model_timeout(),
            retry_backoff: model_timeout(),
            request_timeout: model_timeout(),
            preferred_leader_election_interval: model_timeout(),
        }
    }
}

/// What every broker and the controller share.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Where brokers send what is for the controller; with a KRaft quorum, the first
    /// controller, and each broker sends to the one it follows instead (R74).
    pub controller: Id,
    /// A KRaft quorum's controllers, `controller` first; empty with a single controller.
    #[serde(default)]
    pub controllers: Vec<Id>,
    /// Every broker's id and address, in broker id order.
    pub brokers: Vec<(BrokerId, Id)>,
    pub protocol: Protocol,
    /// `replica.fetch.max.bytes`: the byte limit of a follower's fetch response.
    pub fetch_bytes_max: u32,
    /// Whether brokers retransmit their requests on a timer (heartbeat, fetch, epoch lookup,
    /// AlterPartition). The real cluster does; the model turns it on with a lossy network only,
    /// because over a network that loses nothing a retransmission is a duplicate, and the
    /// duplicating network covers duplicates.
    pub retransmit: bool,
    /// Whether a registered broker keeps heartbeating. The real cluster does, to hold its
    /// session; the model does not, because its session timer may fire at any moment anyway, so
    /// steady heartbeats add states and no behaviour (spec: "Model bounds").
    pub heartbeat_periodic: bool,
    /// Whether a registered broker's heartbeat pulls the metadata it lacks (KIP-631, R49). Off
    /// is the push-only variant: the controller sends each change once and relies on it
    /// arriving, as the ZooKeeper-era controller relied on TCP, so a lost LeaderAndIsr is never
    /// repaired and ISR changes never reach the brokers that did not ask for them. The model
    /// keeps it to show what the pull repairs (`watermark simulate --metadata-pull=false`).
    pub metadata_pull: bool,
    /// Whether a leader advances its high watermark while its ISR is under
    /// min.insync.replicas, as Kafka did before 3.7 (R28). Since KAFKA-15583 it does not: the
    /// records wait, unexposed and uncommitted, until the ISR is back to min.insync.replicas.
    pub hwm_under_min_isr: bool,
    /// KIP-966 (`eligible.leader.replicas.version=1`): the ISR may empty, replicas that leave it
    /// under min.insync.replicas become eligible leader replicas, and a broker that restarts
    /// (every restart here is unclean: there is no controlled shutdown) leaves both (R52–R54).
    /// Needs Kafka 3.7's HWM rule (`hwm_under_min_isr` off).
    pub eligible_leader_replicas: bool,
    pub timing: Timing,
    /// `offsets.topic.num.partitions`: the partitions of `__consumer_offsets`, over which groups
    /// are spread by their id's hash (R57). The topic itself is created like any other: the
    /// checker's presets with groups start with it, the real cluster's `consume --group`
    /// creates it.
    #[serde(default = "one")]
    pub offsets_topic_num_partitions: u32,
    /// Topics that exist when the cluster first starts. The controller and every broker derive
    /// the same initial partition states from them ([`initial_partitions`]): each partition led
    /// by its preferred replica in leader epoch 0, with every replica in the ISR.
    pub topics: Vec<TopicConfig>,
}

/// The partition states of a freshly bootstrapped cluster.
pub fn initial_partitions(topics: &[TopicConfig]) -> Vec<crate::msg::PartitionState> {
    topics
        .iter()
        .flat_map(|t| {
            t.assignments
                .iter()
                .enumerate()
                .map(|(p, replicas)| crate::msg::PartitionState {
                    topic_partition: TopicPartition::new(&t.topic, p as u32),
                    leader: replicas.first().copied(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: replicas.as_slice().into(),
                    elr: BrokerIds::default(),
                    replicas: replicas.as_slice().into(),
                    min_insync_replicas: t.min_insync_replicas,
                    unclean_leader_election: t.unclean_leader_election,
                })
        })
        .collect()
}

impl ClusterConfig {
    /// Whether the controllers are a KRaft quorum of more than one (R74).
    pub fn has_controller_quorum(&self) -> bool {
        self.controllers.len() > 1
    }

    pub fn broker_address(&self, broker_id: BrokerId) -> Option<Id> {
        self.brokers
            .iter()
            .find(|(b, _)| *b == broker_id)
            .map(|(_, id)| *id)
    }
}

/// A topic: its partitions' replica assignments and its configs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopicConfig {
    pub topic: Topic,
    /// Replica assignment per partition, preferred leader first.
    pub assignments: Vec<Vec<BrokerId>>,
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerConfig {
    pub cluster: Arc<ClusterConfig>,
    /// Whether the controller moves leadership back to the preferred replica
    /// (`auto.leader.rebalance.enable`).
    pub preferred_leader_election: bool,
    /// `broker.rack` of each broker that has one. Topics created at run time spread each
    /// partition's replicas over racks (R46); empty means rack-unaware assignment.
    pub racks: Vec<(BrokerId, String)>,
    /// The most bytes the whole partition table may take in one message (a restarted broker's
    /// pull, DescribeTopics): CreateTopics refuses topics beyond it (R46). The real cluster
    /// derives it from its transport's message limit; the model has no limit.
    pub metadata_bytes_max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerConfig {
    pub broker_id: BrokerId,
    pub cluster: Arc<ClusterConfig>,
}

/// The records a producer sends, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerConfig {
    /// Brokers to ask for metadata, tried in turn.
    pub bootstrap: Vec<Id>,
    pub topic: Topic,
    pub acks: Acks,
    /// `Some(producer id)` for an idempotent producer.
    pub idempotence: Option<ProducerId>,
    /// (partition, value) per record.
    pub records: Vec<(u32, Value)>,
    /// How many of `records` the application has handed to `send()` when the producer starts;
    /// the rest arrive with [`crate::msg::Msg::Send`]. `None`: all of them (the checker's
    /// producers, `watermark produce`).
    #[serde(default)]
    pub accumulated_at_start: Option<u32>,
    /// Attempts per batch before the producer gives up on it (`retries` + 1).
    pub attempts_max: u32,
    /// `batch.size`: the byte limit of one produce request.
    pub batch_bytes_max: u32,
    /// Whether the producer times requests out (`request.timeout.ms`) and retries.
    pub request_timeout: bool,
    /// `max.in.flight.requests.per.connection`: batches sent and not yet answered, at most
    /// (R38). Retried batches go one at a time, in order (R39).
    #[serde(default = "one")]
    pub max_in_flight_requests: u32,
    pub timing: Timing,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsumerConfig {
    pub bootstrap: Vec<Id>,
    pub topic_partition: TopicPartition,
    /// `fetch.max.bytes`.
    pub fetch_bytes_max: u32,
    /// Whether the consumer times requests out and retries.
    pub request_timeout: bool,
    pub timing: Timing,
    /// Where it starts reading (R41): 0 for `auto.offset.reset=earliest`, or the partition's high
    /// watermark as the hosting program found it for `latest`. The checker's consumers start
    /// at 0.
    #[serde(default)]
    pub start_offset: Offset,
    /// `group.id` and the group settings: a member starts at its group's committed offset
    /// (R61) and commits as it reads (R62). `None`: no group, and `start_offset` rules.
    #[serde(default)]
    pub group: Option<crate::group::GroupConfig>,
    /// kafka-console-consumer's `--max-messages`: the consumer reads this many records and
    /// stops, and a group member then commits exactly what it read (Kafka's consumer commits on
    /// close), however many more its last fetch returned. `None`: no limit (the checker's).
    #[serde(default)]
    pub records_max: Option<u64>,
}

/// Kafka's broker order for rack-aware assignment: brokers grouped by rack (racks in name order,
/// brokers in id order within one), then taken one per rack in turn, so that consecutive brokers
/// of the list sit on different racks (racks `a: 1,4`, `b: 2,5`, `c: 3` give `1,2,3,4,5`). Without
/// racks (or with a broker that has none) it is the brokers in id order.
pub fn rack_alternated(brokers: &[BrokerId], racks: &[(BrokerId, String)]) -> Vec<BrokerId> {
    let rack_of = |b: BrokerId| racks.iter().find(|(r, _)| *r == b).map(|(_, name)| name);
    if racks.is_empty() || brokers.iter().any(|b| rack_of(*b).is_none()) {
        return brokers.to_vec();
    }
    let mut by_rack: std::collections::BTreeMap<&String, Vec<BrokerId>> = Default::default();
    for b in brokers {
        by_rack
            .entry(rack_of(*b).expect("checked"))
            .or_default()
            .push(*b);
    }
    let mut ordered = Vec::with_capacity(brokers.len());
    for i in 0.. {
        let before = ordered.len();
        ordered.extend(by_rack.values().filter_map(|rack| rack.get(i).copied()));
        if ordered.len() == before {
            break;
        }
    }
    ordered
}
