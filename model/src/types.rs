//! The nouns of the protocol: identifiers, epochs, offsets, topic-partitions, records and acks.
//! See spec.md, "Glossary".

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A broker's `broker.id`. Brokers are named by id in every message; the mapping from id to
/// network address comes from configuration, never from arithmetic on an address.
pub type BrokerId = u32;
/// Bumped by the controller on every leader change of a partition.
pub type LeaderEpoch = u32;
/// Bumped by the controller on every change of a partition's leader or ISR (KIP-497's
/// `partition_epoch`, the ZooKeeper znode version before it).
pub type PartitionEpoch = u32;
/// Bumped every time the controller starts.
pub type ControllerEpoch = u32;
/// Bumped every time a broker process starts (an incarnation number, like KIP-380's broker epoch).
pub type BrokerEpoch = u32;
/// A position in a partition's log. The log end offset (LEO) is the offset of the next record.
pub type Offset = u64;
/// A position in the controller's metadata log (KRaft's metadata offset): bumped once for every
/// change of a partition's state. 0 is the bootstrapped state every node derives by itself.
pub type MetadataOffset = u64;
/// An idempotent producer's id.
pub type ProducerId = u64;
/// An idempotent producer's per-partition sequence number.
pub type Sequence = u32;

/// A topic name, interned: each distinct name is stored once per process and never freed, and a
/// `Topic` is a pointer to it. Copying one costs no allocation and no atomic, and two topics are
/// equal when they point at the same name. The checker copies, compares and hashes topics in
/// every message of every state, so this is a fifth of its time (BENCHMARKS.md, issue 17).
///
/// Names read from the network or from disk are interned by [`Topic::deserialize`], which refuses
/// a new name once [`TOPIC_NAMES_MAX`] distinct names are held, so that datagrams naming ever new
/// topics cannot grow a broker's memory without bound.
#[derive(Clone, Copy)]
pub struct Topic(&'static str);

/// How many distinct topic names a process interns from untrusted input (datagrams, files);
/// names given by the process itself ([`Topic::new`]) are always interned.
pub const TOPIC_NAMES_MAX: usize = 1 << 16;

fn topic_names() -> std::sync::MutexGuard<'static, std::collections::HashSet<&'static str>> {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn intern(names: &mut std::collections::HashSet<&'static str>, name: &str) -> Topic {
    match names.get(name) {
        Some(interned) => Topic(interned),
        None => {
            let interned: &'static str = Box::leak(name.into());
            names.insert(interned);
            Topic(interned)
        }
    }
}

impl Topic {
    /// The topic of this name, interning it if it is new.
    pub fn new(name: &str) -> Self {
        intern(&mut topic_names(), name)
    }

    /// The topic of a name read from untrusted input: refused if it is new and
    /// [`TOPIC_NAMES_MAX`] names are already held.
    pub fn from_untrusted(name: &str) -> Result<Self, String> {
        let mut names = topic_names();
        if names.len() >= TOPIC_NAMES_MAX && !names.contains(name) {
            return Err(format!(
                "topic name refused: this process already holds {TOPIC_NAMES_MAX} distinct \
                 topic names (TOPIC_NAMES_MAX)"
            ));
        }
        Ok(intern(&mut names, name))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        // Interned: one name, one address.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Topic {}

impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // By name, not address, so that a state's fingerprint is the same in every process.
        self.0.hash(state)
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.0.cmp(other.0)
        }
    }
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Topic::from_untrusted(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A partition of a topic, written `topic-partition` as Kafka's tools do.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: Topic,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: &Topic, partition: u32) -> Self {
        TopicPartition {
            topic: *topic,
            partition,
        }
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A record's payload.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Value(pub Arc<[u8]>);

impl Value {
    pub fn new(bytes: &[u8]) -> Self {
        Value(Arc::from(bytes))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::new(s.as_bytes())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => f.write_str(s),
            _ => {
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The idempotence stamp of a record: which producer wrote it, and its sequence in that
/// producer's stream for this partition.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerSequence {
    pub producer_id: ProducerId,
    pub sequence: Sequence,
}

/// A record as a producer sends it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Record {
    pub value: Value,
    /// Set only by idempotent producers.
    pub producer: Option<ProducerSequence>,
}

/// Bytes a record costs on the wire and on disk, beyond its value: offset delta, epoch,
/// producer id and sequence, length and CRC. Limits such as `fetch_bytes_max` count these.
pub const RECORD_OVERHEAD_BYTES: usize = 24;

impl Record {
    pub fn size_bytes(&self) -> usize {
        RECORD_OVERHEAD_BYTES + self.value.len()
    }
}

/// A record in a replica's log, stamped with the leader epoch in which the leader appended it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogEntry {
    pub leader_epoch: LeaderEpoch,
    pub record: Record,
}

impl fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}:{:?}", self.leader_epoch, self.record.value)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.producer {
            None => write!(f, "{:?}", self.value),
            Some(p) => write!(
                f,
                "{:?}(pid {} seq {})",
                self.value, p.producer_id, p.sequence
            ),
        }
    }
}

impl fmt::Debug for ProducerSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} seq {}", self.producer_id, self.sequence)
    }
}

/// The producer's `acks` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=0`: no response at all.
    None,
    /// `acks=1`: the leader responds after its own append.
    Leader,
    /// `acks=all`: the leader responds once the high watermark passes the records.
    All,
}

impl Acks {
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1 or all, not '{s}'")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kafka's error codes, as far as this protocol uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The receiver does not lead (or follow) this partition.
    NotLeaderOrFollower,
    /// The request carries a leader epoch older than the receiver's.
    FencedLeaderEpoch,
    /// The request carries a leader epoch newer than the receiver's.
    UnknownLeaderEpoch,
    /// `acks=all` with |ISR| < `min.insync.replicas`, checked before the append.
    NotEnoughReplicas,
    /// `acks=all` with |ISR| < `min.insync.replicas` once the high watermark passed the records.
    NotEnoughReplicasAfterAppend,
    /// The fetch offset is beyond the leader's log end offset (or consumer high watermark).
    OffsetOutOfRange,
    /// A new leader's high watermark has not reached the start of its epoch yet.
    OffsetNotAvailable,
    /// The broker knows no such topic-partition.
    UnknownTopicOrPartition,
    /// AlterPartition: the partition epoch is not the controller's current one.
    InvalidUpdateVersion,
    /// AlterPartition: a replica to be added is fenced or not assigned.
    IneligibleReplica,
    /// An idempotent producer skipped a sequence number.
    OutOfOrderSequence,
    /// A request from an older incarnation of a broker.
    StaleBrokerEpoch,
    /// CreateTopics: the topic exists.
    TopicAlreadyExists,
    /// CreateTopics: zero partitions.
    InvalidPartitions,
    /// CreateTopics: zero, or more than the cluster's brokers.
    InvalidReplicationFactor,
    /// CreateTopics: the name breaks Kafka's rules (1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
    InvalidTopic,
    /// CreateTopics: a config value out of its range (`min.insync.replicas`).
    InvalidConfig,
    /// CreateTopics: the cluster cannot carry the result (its metadata would outgrow the
    /// largest message the transport moves).
    PolicyViolation,
    /// ElectLeaders: the partition already has the leader the election would give it.
    ElectionNotNeeded,
    /// ElectLeaders (preferred): the preferred replica is not live or not in the ISR.
    PreferredLeaderNotAvailable,
    /// ElectLeaders (unclean): no replica of the partition is live.
    EligibleLeadersNotAvailable,
    /// FindCoordinator: the group's `__consumer_offsets` partition has no leader (or no such
    /// topic); a group request that could not be made durable (the ISR under
    /// min.insync.replicas).
    CoordinatorNotAvailable,
    /// A group request to a broker that does not lead the group's offsets partition.
    NotCoordinator,
    /// The coordinator is new and its high watermark has not reached its epoch's start: it has
    /// not yet loaded every committed group record (R60).
    CoordinatorLoadInProgress,
    /// OffsetCommit from a member whose generation a newer JoinGroup has replaced (R59).
    IllegalGeneration,
}

/// Kafka's `ElectionType` (kafka-leader-election `--election-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ElectionType {
    /// Move leadership to the preferred replica where it is live, in the ISR and not leading.
    Preferred,
    /// Elect a live replica, in the ISR or not, where a partition has no leader.
    Unclean,
}

/// Kafka's rule for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, and neither `.` nor
/// `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || !legal || name == "." || name == ".."
    {
        return Err(format!(
            "invalid topic name '{name}': use 1 to {TOPIC_NAME_BYTES_MAX} of [a-zA-Z0-9._-], not '.' or '..'"
        ));
    }
    Ok(())
}

/// Kafka's limit on a topic name's length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
