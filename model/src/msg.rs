//! The messages actors exchange. Named after Kafka's APIs; spec.md, "Messages", lists each with
//! the rules that handle it.
//!
//! Requests carry batches and responses are bounded by bytes, so that the real cluster can move
//! thousands of records per datagram on the same code path that the model checks with batches of
//! one record.

use crate::collections::BrokerIds;
use crate::consumer::Consumed;
use crate::group::{Generation, Group, GroupEvent};
use crate::producer::Ack;
use crate::quorum::{QuorumDescription, QuorumMsg};
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::sync::Arc;

/// What the controller knows about one partition, as LeaderAndIsr carries it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionState {
    pub topic_partition: TopicPartition,
    /// `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: BrokerIds,
    /// KIP-966's eligible leader replicas: replicas that left the ISR while it was under
    /// min.insync.replicas, so that no record was committed without them (R28), and that may
    /// therefore lead when the ISR is empty. Always empty without
    /// `ClusterConfig::eligible_leader_replicas` (R52–R54).
    pub elr: BrokerIds,
    /// The assignment, in preference order: `replicas[0]` is the preferred leader.
    pub replicas: BrokerIds,
    /// The topic's `min.insync.replicas`, carried with each of its partitions so that the leader
    /// enforces the current value (R18, R28); changed by R56.
    pub min_insync_replicas: u32,
    /// The topic's `unclean.leader.election.enable`, which only the controller reads (R2, R5);
    /// changed by R56.
    pub unclean_leader_election: bool,
}

impl PartitionState {
    /// An upper bound on the bytes this state takes in a message, for the controller's limit on
    /// what the cluster can carry (R46): every integer at its widest variable-length encoding
    /// (5 bytes for 32 bits), each list and the topic name with a 5-byte length. The runtime's
    /// codec test checks its encoding stays within it.
    pub fn size_bytes_max(&self) -> u64 {
        const INT: u64 = 5;
        let topic = INT + self.topic_partition.topic.as_str().len() as u64;
        let lists = 3 * INT + INT * (self.isr.len() + self.elr.len() + self.replicas.len()) as u64;
        // partition, leader (with its presence byte), leader epoch, partition epoch,
        // min.insync.replicas, unclean.leader.election.enable.
        topic + lists + INT + (1 + INT) + 3 * INT + 1
    }

    /// The topic configs this partition carries.
    pub fn topic_configs(&self) -> TopicConfigs {
        TopicConfigs {
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election: self.unclean_leader_election,
        }
    }
}

/// The topic-level configs the protocol reads, as Kafka names them (its `LogConfig`, the part
/// that replication uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicConfigs {
    /// `min.insync.replicas`: the smallest ISR that takes acks=all writes (R18) and, since Kafka
    /// 3.7, advances the high watermark (R28).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: a partition whose whole ISR (and ELR) is dead may be led
    /// by any live replica, losing what only the ISR held (R2, R5, R56).
    pub unclean_leader_election: bool,
}

impl Default for TopicConfigs {
    /// Kafka's defaults: `min.insync.replicas=1`, `unclean.leader.election.enable=false`.
    fn default() -> Self {
        TopicConfigs {
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// IncrementalAlterConfigs' changes to one topic's configs: `Some` sets a config (a deleted one
/// is set back to its default).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct TopicConfigChanges {
    pub min_insync_replicas: Option<u32>,
    pub unclean_leader_election: Option<bool>,
}

/// The topic configs this cluster knows, by Kafka's names.
pub const TOPIC_CONFIG_KEYS: [&str; 2] = ["min.insync.replicas", "unclean.leader.election.enable"];

impl TopicConfigChanges {
    /// Sets `key` to `value`, or, for `None` (kafka-configs `--delete-config`), back to its
    /// default. Unknown keys, bad values and a key set twice are refused, in words.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        let defaults = TopicConfigs::default();
        let already = match key {
            "min.insync.replicas" => {
                let v = match value {
                    None => defaults.min_insync_replicas,
                    Some(v) => v.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!(
                            "min.insync.replicas must be a whole number of at least 1, not '{v}'"
                        )
                    })?,
                };
                self.min_insync_replicas.replace(v).is_some()
            }
            "unclean.leader.election.enable" => {
                let v = match value.map(|v| v.trim().to_ascii_lowercase()) {
                    None => defaults.unclean_leader_election,
                    Some(v) if v == "true" => true,
                    Some(v) if v == "false" => false,
                    Some(v) => {
                        return Err(format!(
                            "unclean.leader.election.enable must be true or false, not '{v}'"
                        ))
                    }
                };
                self.unclean_leader_election.replace(v).is_some()
            }
            _ => {
                return Err(format!(
                    "unknown topic config '{key}' (the topic configs are {})",
                    TOPIC_CONFIG_KEYS.join(", ")
                ))
            }
        };
        if already {
            return Err(format!("{key} is given twice"));
        }
        Ok(())
    }

    /// Parses `key=value`, as `--config` and `--add-config` take it.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), String> {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not a config: expected KEY=VALUE"))?;
        self.set(key.trim(), Some(value))
    }

    /// `configs` with these changes applied.
    pub fn apply(&self, configs: TopicConfigs) -> TopicConfigs {
        TopicConfigs {
            min_insync_replicas: self
                .min_insync_replicas
                .unwrap_or(configs.min_insync_replicas),
            unclean_leader_election: self
                .unclean_leader_election
                .unwrap_or(configs.unclean_leader_election),
        }
    }
}

/// A follower's or consumer's fetch of one partition.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FetchRequest {
    pub topic_partition: TopicPartition,
    /// `Some` for a follower (Kafka's `replica_id`), `None` for a consumer.
    pub replica_id: Option<BrokerId>,
    /// The incarnation of the fetching follower.
    pub broker_epoch: BrokerEpoch,
    pub fetch_offset: Offset,
    /// The epoch of the record before `fetch_offset` (KIP-320, KIP-595 style divergence check).
    pub last_fetched_epoch: Option<LeaderEpoch>,
    /// The leader epoch the fetcher believes current (KIP-320 fencing).
    pub current_leader_epoch: Option<LeaderEpoch>,
    pub fetch_bytes_max: u32,
    /// The fetcher's high watermark. A leader with nothing new to send answers a follower at once
    /// when its own high watermark is past this, and otherwise holds the fetch until it is. Kafka
    /// has no such field: its follower learns the HWM when `replica.fetch.wait.max.ms` expires,
    /// and this stands in for that timer without adding one to the model. Consumers send 0.
    pub high_watermark: Offset,
}

/// What a fetch returns.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FetchResult {
    /// Records from `fetch_offset`, at most `fetch_bytes_max` of them but at least one, and the
    /// leader's high watermark.
    Records {
        records: Arc<[LogEntry]>,
        high_watermark: Offset,
    },
    /// KIP-595 style: the fetcher's log diverges from the leader's. Carries the leader's end
    /// offset for the fetcher's last fetched epoch (the largest epoch of the leader not after
    /// it, and where that epoch ends).
    Diverging(EpochEndOffset),
    /// `OffsetOutOfRange` carries the leader's log end offset, as the fetcher's fallback.
    Error {
        error: ErrorCode,
        log_end_offset: Offset,
    },
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FetchResponse {
    pub topic_partition: TopicPartition,
    /// Echoes the request.
    pub fetch_offset: Offset,
    /// The leader epoch of the responding broker when it answered (Kafka's `current_leader`).
    pub leader_epoch: LeaderEpoch,
    pub result: FetchResult,
}

/// The answer to OffsetsForLeaderEpoch: the largest epoch of the leader not after the requested
/// one, and its end offset; `None` when the leader knows no such epoch (Kafka's
/// `UNDEFINED_EPOCH_OFFSET`).
pub type EpochEndOffset = Option<(LeaderEpoch, Offset)>;

/// A produce request for one partition.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProduceRequest {
    pub topic_partition: TopicPartition,
    pub acks: Acks,
    /// The leader epoch the producer learned from metadata.
    pub leader_epoch: LeaderEpoch,
    pub records: Arc<[Record]>,
    /// Echoed in the response: the producer's batch number and attempt.
    pub batch: u32,
    pub attempt: u32,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub topic_partition: TopicPartition,
    pub batch: u32,
    pub attempt: u32,
    /// The epoch of the leader that answered.
    pub leader_epoch: LeaderEpoch,
    /// The offset of the batch's first record, or why it was refused.
    pub result: Result<Offset, ErrorCode>,
}

/// One partition as a MetadataResponse describes it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionMetadata {
    pub topic_partition: TopicPartition,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub replicas: BrokerIds,
    pub isr: BrokerIds,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Msg {
    // --- Controller to brokers ---
    /// The partitions the controller changed in one step (R50), sent to a live broker that
    /// replicates at least one of them: role changes for its replicas, metadata for the rest.
    LeaderAndIsr {
        controller_epoch: ControllerEpoch,
        /// The incarnation of the receiver this is meant for (KIP-380).
        broker_epoch: BrokerEpoch,
        /// The push holds every partition changed after this metadata offset (`None`: every
        /// partition), so a broker that holds everything up to it holds everything up to
        /// `metadata_offset` once it has applied the push (R51).
        base_metadata_offset: Option<MetadataOffset>,
        /// The controller's metadata offset after the change.
        metadata_offset: MetadataOffset,
        partitions: Arc<[PartitionState]>,
    },
    /// The same push, to a live broker that replicates none of the changed partitions.
    UpdateMetadata {
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        base_metadata_offset: Option<MetadataOffset>,
        metadata_offset: MetadataOffset,
        partitions: Arc<[PartitionState]>,
    },
    /// Answers a heartbeat with what the broker lacks (KIP-631's pull, R49): every partition
    /// changed after the metadata offset the heartbeat carried.
    BrokerHeartbeatResponse {
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        is_fenced: bool,
        /// Echoes the heartbeat's metadata offset: the delta starts after it.
        base_metadata_offset: Option<MetadataOffset>,
        /// The controller's metadata offset.
        metadata_offset: MetadataOffset,
        partitions: Arc<[PartitionState]>,
    },
    AlterPartitionResponse {
        controller_epoch: ControllerEpoch,
        topic_partition: TopicPartition,
        /// Shared, as `current`: every model state that holds this message in flight clones it.
        result: Result<Arc<PartitionState>, ErrorCode>,
        /// On a rejection, the partition's current state, so that a leader whose view is stale
        /// (its accepted change's answer was lost) catches up.
        current: Option<Arc<PartitionState>>,
        /// The metadata offsets the answer spans (R50): the leader is not pushed the change it
        /// asked for, it learns it here.
        base_metadata_offset: Option<MetadataOffset>,
        metadata_offset: MetadataOffset,
    },

    // --- Brokers to the controller ---
    /// Registration (a new broker epoch), session keep-alive, and metadata pull (R49).
    BrokerHeartbeat {
        broker_id: BrokerId,
        broker_epoch: BrokerEpoch,
        /// Kafka's `CurrentMetadataOffset`: the broker holds every metadata change up to this
        /// offset; `None` after a restart, before it holds any.
        metadata_offset: Option<MetadataOffset>,
    },
    /// A leader's request to change the ISR (KIP-497).
    AlterPartition {
        broker_id: BrokerId,
        broker_epoch: BrokerEpoch,
        topic_partition: TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: BrokerIds,
        /// KIP-903: the broker epochs the leader knows for members of the new ISR (from their
        /// fetches), so that the controller refuses to add a replica's earlier incarnation.
        broker_epochs: Arc<[(BrokerId, BrokerEpoch)]>,
    },

    // --- Replication ---
    Fetch(FetchRequest),
    FetchResponse(FetchResponse),
    /// KIP-101: a follower asks for the end offset of its latest epoch.
    OffsetsForLeaderEpoch {
        topic_partition: TopicPartition,
        replica_id: BrokerId,
        leader_epoch: LeaderEpoch,
        current_leader_epoch: Option<LeaderEpoch>,
    },
    OffsetsForLeaderEpochResponse {
        topic_partition: TopicPartition,
        /// Echoes the requested epoch.
        requested_epoch: LeaderEpoch,
        result: Result<EpochEndOffset, ErrorCode>,
    },

    // --- Clients ---
    Metadata {
        topic: Topic,
    },
    MetadataResponse {
        /// Every broker's address, so that clients need only one bootstrap server.
        brokers: Arc<[(BrokerId, Id)]>,
        partitions: Arc<[PartitionMetadata]>,
    },
    Produce(ProduceRequest),
    ProduceResponse(ProduceResponse),

    // --- Admin (the real cluster's tools; the checker's presets never send these) ---
    /// R46: create a topic. A client sends it to any broker, which forwards it to the controller
    /// with `client` set (KIP-590 style); the controller answers the client directly.
    CreateTopics {
        topic: Topic,
        partitions: u32,
        replication_factor: u32,
        /// `--config` of kafka-topics.
        configs: TopicConfigs,
        client: Option<Id>,
    },
    CreateTopicsResponse {
        topic: Topic,
        result: Result<(), ErrorCode>,
        /// Kafka's `error_message`: what was wrong, in words (which limit, which value).
        error_message: Option<Arc<str>>,
    },
    /// R47: the controller's partition states (of one topic, or all) and broker liveness,
    /// forwarded like CreateTopics.
    DescribeTopics {
        topic: Option<Topic>,
        client: Option<Id>,
    },
    DescribeTopicsResponse {
        /// Every broker and whether it is live (registered and unfenced).
        brokers: Arc<[(BrokerId, bool)]>,
        /// `broker.rack` of each broker that has one.
        racks: Arc<[(BrokerId, Arc<str>)]>,
        partitions: Arc<[PartitionState]>,
    },
    /// R55: elect leaders on demand (kafka-leader-election), forwarded like CreateTopics. `None`
    /// is every partition.
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Arc<[TopicPartition]>>,
        client: Option<Id>,
    },
    /// Per partition, the leader elected, or why none was.
    ElectLeadersResponse {
        election: ElectionType,
        results: Arc<[(TopicPartition, Result<BrokerId, ErrorCode>)]>,
    },
    /// R56: change a topic's configs (kafka-configs --alter), forwarded like CreateTopics.
    IncrementalAlterConfigs {
        topic: Topic,
        changes: TopicConfigChanges,
        client: Option<Id>,
    },
    IncrementalAlterConfigsResponse {
        topic: Topic,
        /// The topic's configs after the change.
        result: Result<TopicConfigs, ErrorCode>,
        error_message: Option<Arc<str>>,
    },
    /// R48: a replica's log end offset and high watermark (Kafka's ListOffsets, latest and
    /// committed), answered by any broker that hosts the partition.
    ListOffsets {
        topic_partition: TopicPartition,
    },
    ListOffsetsResponse {
        topic_partition: TopicPartition,
        result: Result<ReplicaOffsets, ErrorCode>,
    },

    // --- Consumer groups (R57–R62) ---
    /// R57: which broker coordinates `group`. Any broker answers from its metadata: the leader
    /// of the group's partition of `__consumer_offsets`.
    FindCoordinator {
        group: Group,
    },
    FindCoordinatorResponse {
        group: Group,
        /// The coordinator's broker id and address.
        result: Result<(BrokerId, Id), ErrorCode>,
    },
    /// R58: a member of `group` takes `topic_partition`, fencing its earlier members.
    JoinGroup {
        group: Group,
        topic_partition: TopicPartition,
        /// The generation the member holds (KIP-848's member epoch, 0 for a new member): the
        /// answer echoes it, so that the member takes only the answer to its latest join as the
        /// end of joining (R61).
        member_epoch: Generation,
    },
    JoinGroupResponse {
        group: Group,
        topic_partition: TopicPartition,
        /// Echoes the request.
        member_epoch: Generation,
        /// The member's generation, once it is committed.
        result: Result<Generation, ErrorCode>,
    },
    /// R59: commit `offset` (the next record to read) for the member of `generation`.
    OffsetCommit {
        group: Group,
        topic_partition: TopicPartition,
        generation: Generation,
        offset: Offset,
    },
    OffsetCommitResponse {
        group: Group,
        topic_partition: TopicPartition,
        /// Echoes the request.
        offset: Offset,
        result: Result<(), ErrorCode>,
    },
    /// R60: the group's committed offset of a partition.
    OffsetFetch {
        group: Group,
        topic_partition: TopicPartition,
    },
    OffsetFetchResponse {
        group: Group,
        topic_partition: TopicPartition,
        /// `None`: the group has committed nothing for it.
        result: Result<Option<Offset>, ErrorCode>,
    },

    // --- The application to its clients (from [`application`], never on the wire) ---
    /// The application has handed its producer the first `records` of the producer's records
    /// (Kafka's `send()`): only those are batched (R38). The checker's producers and `watermark
    /// produce` hand over every record at start; a throttled `watermark bench produce --rate`
    /// hands them over as their time comes.
    Send {
        records: u32,
    },

    // --- Clients to their application (to [`application`], never on the wire) ---
    /// A record its leader acknowledged: the producer's send callback (R38).
    RecordAcknowledged(Ack),
    /// A record the consumer read: one of `poll`'s records (R42).
    RecordConsumed(Consumed),
    /// A group member resumed at a position, or had a commit acknowledged (R60, R61).
    Group(GroupEvent),

    // --- KRaft: a quorum of controllers (spec section 4a) ---
    /// The controllers' own traffic: votes and the metadata log's replication (R63–R72).
    Quorum(QuorumMsg),
    /// R74: a controller that is not the active one answers a broker's heartbeat or ISR change
    /// with the active controller it knows, if any (Kafka's NOT_CONTROLLER).
    NotController {
        leader: Option<Id>,
    },
    /// R75: a controller's view of the quorum (KRaft's DescribeQuorum; `watermark quorum
    /// --describe`, as kafka-metadata-quorum).
    DescribeQuorum,
    DescribeQuorumResponse(QuorumDescription),
}

/// Where a client's acknowledgements and consumed records go: the program that embeds it.
/// The runtime hands what is sent here to that program and forgets it; the checker folds it
/// into the ghost history. No actor has this id, and no datagram is ever sent to it.
pub fn application() -> Id {
    Id::from(usize::MAX)
}

/// What ListOffsets returns about one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaOffsets {
    pub leader_epoch: LeaderEpoch,
    pub is_leader: bool,
    pub log_end_offset: Offset,
    pub high_watermark: Offset,
}

impl Msg {
    /// The controller epoch of a message only a controller sends to a broker.
    pub fn controller_epoch(&self) -> Option<ControllerEpoch> {
        match self {
            Msg::LeaderAndIsr {
                controller_epoch, ..
            }
            | Msg::UpdateMetadata {
                controller_epoch, ..
            }
            | Msg::BrokerHeartbeatResponse {
                controller_epoch, ..
            }
            | Msg::AlterPartitionResponse {
                controller_epoch, ..
            } => Some(*controller_epoch),
            _ => None,
        }
    }

    /// Kafka's name for the API this message belongs to.
    pub fn api_name(&self) -> &'static str {
        match self {
            Msg::LeaderAndIsr { .. } => "LeaderAndIsr",
            Msg::UpdateMetadata { .. } => "UpdateMetadata",
            Msg::BrokerHeartbeatResponse { .. } => "BrokerHeartbeatResponse",
            Msg::AlterPartitionResponse { .. } => "AlterPartitionResponse",
            Msg::BrokerHeartbeat { .. } => "BrokerHeartbeat",
            Msg::AlterPartition { .. } => "AlterPartition",
            Msg::Fetch(_) => "Fetch",
            Msg::FetchResponse(_) => "FetchResponse",
            Msg::OffsetsForLeaderEpoch { .. } => "OffsetsForLeaderEpoch",
            Msg::OffsetsForLeaderEpochResponse { .. } => "OffsetsForLeaderEpochResponse",
            Msg::Metadata { .. } => "Metadata",
            Msg::MetadataResponse { .. } => "MetadataResponse",
            Msg::Produce(_) => "Produce",
            Msg::ProduceResponse(_) => "ProduceResponse",
            Msg::CreateTopics { .. } => "CreateTopics",
            Msg::CreateTopicsResponse { .. } => "CreateTopicsResponse",
            Msg::DescribeTopics { .. } => "DescribeTopics",
            Msg::DescribeTopicsResponse { .. } => "DescribeTopicsResponse",
            Msg::ElectLeaders { .. } => "ElectLeaders",
            Msg::ElectLeadersResponse { .. } => "ElectLeadersResponse",
            Msg::IncrementalAlterConfigs { .. } => "IncrementalAlterConfigs",
            Msg::IncrementalAlterConfigsResponse { .. } => "IncrementalAlterConfigsResponse",
            Msg::ListOffsets { .. } => "ListOffsets",
            Msg::ListOffsetsResponse { .. } => "ListOffsetsResponse",
            Msg::Send { .. } => "Send",
            Msg::RecordAcknowledged(_) => "RecordAcknowledged",
            Msg::FindCoordinator { .. } => "FindCoordinator",
            Msg::FindCoordinatorResponse { .. } => "FindCoordinatorResponse",
            Msg::JoinGroup { .. } => "JoinGroup",
            Msg::JoinGroupResponse { .. } => "JoinGroupResponse",
            Msg::OffsetCommit { .. } => "OffsetCommit",
            Msg::OffsetCommitResponse { .. } => "OffsetCommitResponse",
            Msg::OffsetFetch { .. } => "OffsetFetch",
            Msg::OffsetFetchResponse { .. } => "OffsetFetchResponse",
            Msg::RecordConsumed(_) => "RecordConsumed",
            Msg::Group(_) => "Group",
            Msg::Quorum(q) => q.api_name(),
            Msg::NotController { .. } => "NotController",
            Msg::DescribeQuorum => "DescribeQuorum",
            Msg::DescribeQuorumResponse(_) => "DescribeQuorumResponse",
        }
    }
}
