//! Consumer groups: the records a group coordinator writes to `__consumer_offsets`, and what it
//! reads back from them. Spec: "Consumer groups", R57–R62.
//!
//! A group's state is nothing but records in one partition of the internal topic, so it rides on
//! the same replication, the same high watermark and the same invariants as any record: a
//! generation or an offset commit is acknowledged once it is committed (R61), and the coordinator
//! answers OffsetFetch only from committed records (R60).

use crate::log::Log;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Kafka's internal topic of group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// [`OFFSETS_TOPIC`], interned once: handlers and the checker's properties name it for every
/// group request and state, and [`Topic::new`] takes the process's lock on its topic names.
pub fn offsets_topic() -> Topic {
    static TOPIC: std::sync::OnceLock<Topic> = std::sync::OnceLock::new();
    *TOPIC.get_or_init(|| Topic::new(OFFSETS_TOPIC))
}

/// A `group.id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group(pub Arc<str>);

impl Group {
    pub fn new(name: &str) -> Self {
        Group(Arc::from(name))
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group's generation of one partition's member: bumped by every JoinGroup (R58), carried by
/// every OffsetCommit, and an older one is refused (R59). Kafka keeps one generation per group
/// and rebalances every member; here a group has one member per partition (spec: "Consumer
/// groups"), so the generation is per partition, as KIP-848's member epoch is per member.
pub type Generation = u32;

/// A record of `__consumer_offsets`. Kafka writes binary key/value schemas; here the value is the
/// record's JSON, so that the Explorer and `dump-log` show it as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupRecord {
    /// R58: a member joined; `generation` is the partition's new generation.
    Generation {
        group: Group,
        topic_partition: TopicPartition,
        generation: Generation,
    },
    /// R59: the member of `generation` committed `offset`: the next record it will read.
    Offset {
        group: Group,
        topic_partition: TopicPartition,
        generation: Generation,
        offset: Offset,
    },
}

impl GroupRecord {
    pub fn to_record(&self) -> Record {
        let json = serde_json::to_vec(self).expect("group records serialize");
        Record {
            value: Value::new(&json),
            producer: None,
        }
    }

    /// The group record a log record holds, or `None` for anything else (a client may produce
    /// to the internal topic: what does not parse is skipped, never trusted).
    pub fn parse(record: &Record) -> Option<GroupRecord> {
        serde_json::from_slice(&record.value.0).ok()
    }

    fn is_for(&self, g: &Group, tp: &TopicPartition) -> bool {
        match self {
            GroupRecord::Generation {
                group,
                topic_partition,
                ..
            }
            | GroupRecord::Offset {
                group,
                topic_partition,
                ..
            } => group == g && topic_partition == tp,
        }
    }
}

/// The partition of `__consumer_offsets` that holds `group`, as Kafka places it:
/// `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's `String.hashCode`.
pub fn coordinator_partition(group: &Group, partitions: u32) -> u32 {
    let hash = group
        .0
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    (hash as u32 & 0x7fff_ffff) % partitions.max(1)
}

/// A group's state for one partition, as the records of `log` below `end` leave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    /// The latest generation (0: no member ever joined).
    pub generation: Generation,
    /// The latest committed offset, if any.
    pub offset: Option<Offset>,
}

/// What the records of `log` below `end` say about `group`'s member of `tp`.
pub fn group_view(log: &Log, end: Offset, group: &Group, tp: &TopicPartition) -> GroupView {
    let mut view = GroupView::default();
    for entry in log.entries().take(end as usize) {
        match GroupRecord::parse(&entry.record) {
            Some(r @ GroupRecord::Generation { generation, .. }) if r.is_for(group, tp) => {
                view.generation = view.generation.max(generation)
            }
            Some(r @ GroupRecord::Offset { offset, .. }) if r.is_for(group, tp) => {
                view.offset = Some(offset)
            }
            _ => {}
        }
    }
    view
}

/// What a group member tells its application (to [`crate::msg::application`]): the checker's
/// ghost folds these into the group's history (CommittedOffsetSurvives, AtLeastOnce).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GroupEvent {
    /// R62: the coordinator acknowledged the member's commit of `offset`.
    Committed {
        group: Group,
        topic_partition: TopicPartition,
        offset: Offset,
    },
    /// R61: the member starts reading at `position`: the group's committed offset
    /// (`committed`), or where `auto.offset.reset` put it when there was none.
    Resumed {
        group: Group,
        topic_partition: TopicPartition,
        committed: Option<Offset>,
        position: Offset,
    },
}

/// `auto.offset.reset`: where a member starts when its group has no committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OffsetReset {
    /// From the log's start.
    Earliest,
    /// From the high watermark: only records written from now on.
    Latest,
}

impl std::str::FromStr for OffsetReset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            _ => Err(format!(
                "auto.offset.reset must be earliest or latest, not '{s}'"
            )),
        }
    }
}

impl fmt::Display for OffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        })
    }
}

/// When a member commits its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CommitMode {
    /// `enable.auto.commit=true`: the position is committed when `AutoCommit` fires
    /// (`auto.commit.interval.ms`), whatever has been read by then.
    Auto,
    /// `enable.auto.commit=false` and `commitSync()` after processing each poll's records.
    Manual,
}

/// A consumer's group settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupConfig {
    /// `group.id`.
    pub group: Group,
    /// `auto.offset.reset`.
    pub offset_reset: OffsetReset,
    pub commit: CommitMode,
    /// `auto.commit.interval.ms` (with [`CommitMode::Auto`]); the model's fires at any moment.
    pub auto_commit_interval: std::ops::Range<std::time::Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_partition_is_kafkas() {
        // Java: "my-group".hashCode() == -1_906_497_762, & 0x7fffffff → 240_985_886, % 50 == 36.
        assert_eq!(coordinator_partition(&Group::new("my-group"), 50), 36);
        assert_eq!(coordinator_partition(&Group::new(""), 50), 0);
    }

    #[test]
    fn group_records_round_trip_and_garbage_is_skipped() {
        let tp = TopicPartition::new(&Topic::new("t"), 0);
        let g = Group::new("g");
        let commit = GroupRecord::Offset {
            group: g.clone(),
            topic_partition: tp.clone(),
            generation: 2,
            offset: 7,
        };
        assert_eq!(
            GroupRecord::parse(&commit.to_record()),
            Some(commit.clone())
        );
        let garbage = Record {
            value: Value::from("not a group record"),
            producer: None,
        };
        assert_eq!(GroupRecord::parse(&garbage), None);
        let log = Log::from_entries(
            [
                GroupRecord::Generation {
                    group: g.clone(),
                    topic_partition: tp.clone(),
                    generation: 2,
                }
                .to_record(),
                garbage,
                commit.to_record(),
            ]
            .into_iter()
            .map(|record| LogEntry {
                leader_epoch: 0,
                record,
            }),
        );
        let view = group_view(&log, 3, &g, &tp);
        assert_eq!((view.generation, view.offset), (2, Some(7)));
        let before_commit = group_view(&log, 2, &g, &tp);
        assert_eq!((before_commit.generation, before_commit.offset), (2, None));
        assert_eq!(
            group_view(&log, 3, &Group::new("h"), &tp),
            GroupView::default()
        );
    }
}
