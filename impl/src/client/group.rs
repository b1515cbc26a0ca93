//! Consumer groups from the tools' side: `__consumer_offsets` created on first use, a group's
//! coordinator found (R57) and asked for committed offsets (R60) or given one (R59), as plain
//! request and response; and `groups --describe` (kafka-consumer-groups). Spec: "Consumer
//! groups".
//!
//! Every coordinator call is retried while the coordinator moves or loads (NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, or no answer), at most
//! [`COORDINATOR_ATTEMPTS_MAX`] times and until the caller's deadline.

use super::{
    create_topic_answer, describe_topics, error_name, list_offsets_within, metadata, request_within,
};
use crate::cluster::OFFSETS_TOPIC_NUM_PARTITIONS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};
use watermark_model::*;

/// `offsets.topic.replication.factor` (Kafka's default), capped at the live brokers.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR: u32 = 3;
/// `min.insync.replicas` of `__consumer_offsets`, capped at its replication factor: a commit is
/// acknowledged once two replicas hold it (R28, R59).
pub const OFFSETS_TOPIC_MIN_INSYNC_REPLICAS: u32 = 2;
/// The longest `group.id` the tools take. Kafka sets none; this one keeps every group record
/// (which carries the id) small.
pub const GROUP_NAME_BYTES_MAX: usize = 249;
/// How long one request to a coordinator waits for its answer: a coordinator that does not
/// answer by then is looked up again.
pub const COORDINATOR_REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// The pause before a coordinator call is tried again (Kafka's `retry.backoff.ms` is 100).
pub const COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// The most attempts one coordinator call makes, lookups included.
pub const COORDINATOR_ATTEMPTS_MAX: u32 = 60;

/// A `group.id` the tools accept: 1 to [`GROUP_NAME_BYTES_MAX`] bytes.
pub fn validate_group(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group id must not be empty".into());
    }
    if name.len() > GROUP_NAME_BYTES_MAX {
        return Err(format!(
            "a group id holds at most {GROUP_NAME_BYTES_MAX} bytes, not {}",
            name.len()
        ));
    }
    Ok(())
}

/// Creates `__consumer_offsets` if it does not exist, as a broker does on the first
/// FindCoordinator in Kafka: [`OFFSETS_TOPIC_NUM_PARTITIONS`] partitions, replication factor
/// [`OFFSETS_TOPIC_REPLICATION_FACTOR`] capped at the live brokers, min.insync.replicas
/// [`OFFSETS_TOPIC_MIN_INSYNC_REPLICAS`] capped at that. Returns whether this call created it;
/// one created meanwhile by another client (TOPIC_ALREADY_EXISTS) is as good.
pub fn ensure_offsets_topic(bootstrap: SocketAddrV4) -> Result<bool, String> {
    let (brokers, _, partitions) = describe_topics(bootstrap, Some(OFFSETS_TOPIC))?;
    if !partitions.is_empty() {
        return Ok(false);
    }
    let live = brokers.iter().filter(|(_, live)| *live).count() as u32;
    if live == 0 {
        return Err(format!("no live broker to hold {OFFSETS_TOPIC}"));
    }
    let replication_factor = OFFSETS_TOPIC_REPLICATION_FACTOR.min(live);
    let configs = TopicConfigs {
        min_insync_replicas: OFFSETS_TOPIC_MIN_INSYNC_REPLICAS.min(replication_factor),
        ..TopicConfigs::default()
    };
    let (result, message) = create_topic_answer(
        bootstrap,
        OFFSETS_TOPIC,
        OFFSETS_TOPIC_NUM_PARTITIONS,
        replication_factor,
        configs,
    )?;
    match result {
        Ok(()) => Ok(true),
        Err(ErrorCode::TopicAlreadyExists) => Ok(false),
        Err(e) => Err(format!(
            "cannot create {OFFSETS_TOPIC}: {}{}",
            error_name(e),
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
    }
}

/// A group's coordinator as the tools reach it: looked up with FindCoordinator (R57) at the
/// bootstrap servers in turn, kept while it serves, looked up again when it stops.
pub struct Coordinator {
    group: Group,
    /// Brokers to ask FindCoordinator, the bootstrap server first.
    brokers: Vec<SocketAddrV4>,
    next_broker: usize,
    /// The coordinator's broker id and address, once found.
    pub found: Option<(BrokerId, SocketAddrV4)>,
}

impl Coordinator {
    /// Knows every broker of the cluster (from one Metadata request), so that lookups go on
    /// when the bootstrap server dies.
    pub fn new(bootstrap: SocketAddrV4, group: &str) -> Result<Coordinator, String> {
        let mut brokers = vec![bootstrap];
        for (_, a) in metadata(bootstrap, "")?.brokers {
            if !brokers.contains(&a) {
                brokers.push(a);
            }
        }
        Ok(Coordinator {
            group: Group::new(group),
            brokers,
            next_broker: 0,
            found: None,
        })
    }

    /// R57: FindCoordinator at the next broker in turn.
    fn find(
        &mut self,
        timeout: Duration,
    ) -> Result<Result<(BrokerId, SocketAddrV4), ErrorCode>, String> {
        let broker = self.brokers[self.next_broker % self.brokers.len()];
        let group = self.group.clone();
        let answer = request_within(
            broker,
            &Msg::FindCoordinator {
                group: group.clone(),
            },
            timeout,
            |m| match m {
                Msg::FindCoordinatorResponse { group: g, result } if g == group => Some(result),
                _ => None,
            },
        );
        if !matches!(answer, Ok(Ok(_))) {
            // Ask another broker next time: this one may be dead, or know less.
            self.next_broker += 1;
        }
        Ok(answer?.map(|(b, id)| (b, SocketAddrV4::from(id))))
    }

    /// Runs `call` against the coordinator until it answers anything but a coordinator error:
    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or no answer look the coordinator up again;
    /// COORDINATOR_LOAD_IN_PROGRESS waits for it. At most [`COORDINATOR_ATTEMPTS_MAX`] attempts,
    /// none after `deadline`. Any other error is returned at once, by its name.
    fn call<T>(
        &mut self,
        what: &str,
        deadline: Instant,
        mut call: impl FnMut(SocketAddrV4, Duration) -> Result<Result<T, ErrorCode>, String>,
    ) -> Result<T, String> {
        let start = Instant::now();
        let mut last = String::from("no attempt was made");
        let mut attempts = 0;
        while attempts < COORDINATOR_ATTEMPTS_MAX {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            attempts += 1;
            let timeout = (deadline - now).min(COORDINATOR_REQUEST_TIMEOUT);
            let retry = match self.found {
                None => match self.find(timeout) {
                    Ok(Ok(found)) => {
                        self.found = Some(found);
                        continue;
                    }
                    Ok(Err(e)) => format!("FindCoordinator answered {}", error_name(e)),
                    Err(e) => e,
                },
                Some((broker, address)) => match call(address, timeout) {
                    Ok(Ok(t)) => return Ok(t),
                    Ok(Err(e @ ErrorCode::CoordinatorLoadInProgress)) => {
                        format!("broker {broker} answered {}", error_name(e))
                    }
                    Ok(Err(
                        e @ (ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable),
                    )) => {
                        self.found = None;
                        format!("broker {broker} answered {}", error_name(e))
                    }
                    Ok(Err(e)) => {
                        return Err(format!(
                            "{what} for group '{}': broker {broker} answered {}",
                            self.group,
                            error_name(e)
                        ))
                    }
                    Err(_) => {
                        self.found = None;
                        format!("broker {broker} ({address}) did not answer")
                    }
                },
            };
            last = retry;
            let pause = deadline
                .saturating_duration_since(Instant::now())
                .min(COORDINATOR_RETRY_BACKOFF);
            std::thread::sleep(pause);
        }
        Err(format!(
            "{what} for group '{}' failed: no coordinator served it in {:.1} s ({attempts} attempts); the last: {last}",
            self.group,
            start.elapsed().as_secs_f64()
        ))
    }

    /// R60: the group's committed offset of `tp` (`None`: nothing committed).
    pub fn offset_fetch(
        &mut self,
        tp: &TopicPartition,
        deadline: Instant,
    ) -> Result<Option<Offset>, String> {
        let group = self.group.clone();
        self.call("OffsetFetch", deadline, |address, timeout| {
            let request = Msg::OffsetFetch {
                group: group.clone(),
                topic_partition: tp.clone(),
            };
            request_within(address, &request, timeout, |m| match m {
                Msg::OffsetFetchResponse {
                    group: g,
                    topic_partition,
                    result,
                } if g == group && topic_partition == *tp => Some(result),
                _ => None,
            })
        })
    }

    /// R59: commits `offset` (the next record to read) for the member of `generation`; returns
    /// once the coordinator acknowledged it, that is once the commit is committed (R61's
    /// DelayedProduce). ILLEGAL_GENERATION (a newer member took the partition) is an error.
    pub fn offset_commit(
        &mut self,
        tp: &TopicPartition,
        generation: Generation,
        offset: Offset,
        deadline: Instant,
    ) -> Result<(), String> {
        let group = self.group.clone();
        self.call("OffsetCommit", deadline, |address, timeout| {
            let request = Msg::OffsetCommit {
                group: group.clone(),
                topic_partition: tp.clone(),
                generation,
                offset,
            };
            request_within(address, &request, timeout, |m| match m {
                Msg::OffsetCommitResponse {
                    group: g,
                    topic_partition,
                    offset: o,
                    result,
                } if g == group && topic_partition == *tp && o == offset => Some(result),
                _ => None,
            })
        })
    }
}

/// One partition a group has committed an offset for, as kafka-consumer-groups shows it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupPartitionOffsets {
    pub topic: String,
    pub partition: u32,
    /// The group's committed offset: the next record its member reads.
    pub current_offset: Offset,
    /// The partition leader's high watermark (what a read_uncommitted consumer can reach);
    /// `None` if the leader did not answer.
    pub log_end_offset: Option<Offset>,
    /// `log_end_offset - current_offset`.
    pub lag: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CoordinatorDescription {
    pub id: BrokerId,
    pub address: SocketAddrV4,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupDescription {
    pub group: String,
    /// The coordinator that answered, if any was asked.
    pub coordinator: Option<CoordinatorDescription>,
    /// Every partition with a committed offset, by topic and partition.
    pub offsets: Vec<GroupPartitionOffsets>,
}

/// kafka-consumer-groups `--describe`: the group's committed offset of every partition of every
/// topic but `__consumer_offsets` (R47's DescribeTopics, then R60's OffsetFetch at the
/// coordinator), with each partition leader's high watermark and the lag. Gives up at `timeout`.
pub fn describe_group(
    bootstrap: SocketAddrV4,
    group: &str,
    timeout: Duration,
) -> Result<GroupDescription, String> {
    let deadline = Instant::now() + timeout;
    let (_, _, partitions) = describe_topics(bootstrap, None)?;
    let mut description = GroupDescription {
        group: group.to_string(),
        coordinator: None,
        offsets: Vec::new(),
    };
    let offsets_topic = Topic::new(OFFSETS_TOPIC);
    if !partitions
        .iter()
        .any(|p| p.topic_partition.topic == offsets_topic)
    {
        // No group has committed anything: there is nowhere to keep a commit.
        return Ok(description);
    }
    let mut partitions: Vec<PartitionState> = partitions
        .iter()
        .filter(|p| p.topic_partition.topic != offsets_topic)
        .cloned()
        .collect();
    partitions.sort_by(|a, b| {
        (
            a.topic_partition.topic.as_str(),
            a.topic_partition.partition,
        )
            .cmp(&(
                b.topic_partition.topic.as_str(),
                b.topic_partition.partition,
            ))
    });
    let mut coordinator = Coordinator::new(bootstrap, group)?;
    let addresses: BTreeMap<BrokerId, SocketAddrV4> =
        metadata(bootstrap, "")?.brokers.into_iter().collect();
    for p in &partitions {
        let tp = &p.topic_partition;
        let Some(current_offset) = coordinator.offset_fetch(tp, deadline)? else {
            continue;
        };
        let log_end_offset = p
            .leader
            .and_then(|l| addresses.get(&l))
            .and_then(|a| list_offsets_within(*a, tp, COORDINATOR_REQUEST_TIMEOUT).ok())
            .map(|o| o.high_watermark);
        description.offsets.push(GroupPartitionOffsets {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            current_offset,
            log_end_offset,
            lag: log_end_offset.map(|end| end as i64 - current_offset as i64),
        });
    }
    description.coordinator = coordinator
        .found
        .map(|(id, address)| CoordinatorDescription { id, address });
    Ok(description)
}
