//! Messages in Kafka's terms, for traces and the Explorer: `Fetch(t-0 offset 2 epoch 1)`.

use crate::broker::broker_list;
use crate::msg::*;
use crate::types::*;
use std::fmt;

fn epoch_opt(e: Option<LeaderEpoch>) -> String {
    e.map_or("-".to_string(), |e| e.to_string())
}

/// `(3, 5]`, or `[all, 5]` for a push of every partition.
fn offsets(base: Option<MetadataOffset>, offset: MetadataOffset) -> String {
    match base {
        Some(base) => format!("({base}, {offset}]"),
        None => format!("[all, {offset}]"),
    }
}

fn answer(a: &EpochEndOffset) -> String {
    match a {
        Some((epoch, end)) => format!("epoch {epoch} ends at {end}"),
        None => "undefined".to_string(),
    }
}

impl fmt::Debug for PartitionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leader = self.leader.map_or("none".to_string(), |l| l.to_string());
        write!(
            f,
            "{:?} leader {leader} leader epoch {} partition epoch {} ISR {}",
            self.topic_partition,
            self.leader_epoch,
            self.partition_epoch,
            broker_list(&self.isr),
        )?;
        if !self.elr.is_empty() {
            write!(f, " ELR {}", broker_list(&self.elr))?;
        }
        write!(f, " replicas {}", broker_list(&self.replicas))
    }
}

/// As kafka-configs prints them: `min.insync.replicas=2,unclean.leader.election.enable=false`.
impl fmt::Display for TopicConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min.insync.replicas={},unclean.leader.election.enable={}",
            self.min_insync_replicas, self.unclean_leader_election
        )
    }
}

impl fmt::Debug for FetchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.replica_id {
            Some(b) => format!("replica {b}"),
            None => "consumer".to_string(),
        };
        write!(
            f,
            "Fetch({:?} {who} offset {} last epoch {} current epoch {}",
            self.topic_partition,
            self.fetch_offset,
            epoch_opt(self.last_fetched_epoch),
            epoch_opt(self.current_leader_epoch)
        )?;
        if self.replica_id.is_some() {
            write!(f, " HWM {}", self.high_watermark)?;
        }
        f.write_str(")")
    }
}

impl fmt::Debug for FetchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchResult::Records {
                records,
                high_watermark,
            } => {
                f.write_str("records [")?;
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{r:?}")?;
                }
                write!(f, "] HWM {high_watermark}")
            }
            FetchResult::Diverging(a) => write!(f, "diverging: {}", answer(a)),
            FetchResult::Error {
                error,
                log_end_offset,
            } => write!(f, "{error:?} (LEO {log_end_offset})"),
        }
    }
}

impl fmt::Debug for FetchResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FetchResponse({:?} offset {} epoch {}: {:?})",
            self.topic_partition, self.fetch_offset, self.leader_epoch, self.result
        )
    }
}

impl fmt::Debug for ProduceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Produce({:?} acks={} epoch {} batch {} attempt {} {:?})",
            self.topic_partition,
            self.acks,
            self.leader_epoch,
            self.batch,
            self.attempt,
            self.records
        )
    }
}

impl fmt::Debug for ProduceResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = match &self.result {
            Ok(offset) => format!("offset {offset}"),
            Err(e) => format!("{e:?}"),
        };
        write!(
            f,
            "ProduceResponse({:?} batch {} attempt {} epoch {}: {result})",
            self.topic_partition, self.batch, self.attempt, self.leader_epoch
        )
    }
}

impl fmt::Debug for PartitionMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leader = self.leader.map_or("none".to_string(), |l| l.to_string());
        write!(
            f,
            "{:?} leader {leader} epoch {}",
            self.topic_partition, self.leader_epoch
        )
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::LeaderAndIsr {
                controller_epoch,
                broker_epoch,
                base_metadata_offset,
                metadata_offset,
                partitions,
            } => write!(
                f,
                "LeaderAndIsr(controller epoch {controller_epoch} broker epoch {broker_epoch} metadata {} {partitions:?})",
                offsets(*base_metadata_offset, *metadata_offset)
            ),
            Msg::UpdateMetadata {
                controller_epoch,
                broker_epoch,
                base_metadata_offset,
                metadata_offset,
                partitions,
            } => write!(
                f,
                "UpdateMetadata(controller epoch {controller_epoch} broker epoch {broker_epoch} metadata {} {partitions:?})",
                offsets(*base_metadata_offset, *metadata_offset)
            ),
            Msg::BrokerHeartbeatResponse {
                controller_epoch,
                broker_epoch,
                is_fenced,
                base_metadata_offset,
                metadata_offset,
                partitions,
            } => {
                write!(
                    f,
                    "BrokerHeartbeatResponse(controller epoch {controller_epoch} broker epoch {broker_epoch}{} metadata {}",
                    if *is_fenced { " fenced" } else { "" },
                    offsets(*base_metadata_offset, *metadata_offset)
                )?;
                if !partitions.is_empty() {
                    write!(f, " {partitions:?}")?;
                }
                f.write_str(")")
            }
            Msg::AlterPartitionResponse {
                controller_epoch,
                topic_partition,
                result,
                current: _,
                base_metadata_offset: _,
                metadata_offset: _,
            } => match result {
                Ok(p) => write!(f, "AlterPartitionResponse(controller epoch {controller_epoch} {p:?})"),
                Err(e) => write!(
                    f,
                    "AlterPartitionResponse(controller epoch {controller_epoch} {topic_partition:?} {e:?})"
                ),
            },
            Msg::BrokerHeartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
            } => write!(
                f,
                "BrokerHeartbeat(broker {broker_id} epoch {broker_epoch} metadata offset {})",
                metadata_offset.map_or("none".to_string(), |o| o.to_string())
            ),
            Msg::AlterPartition {
                broker_id,
                topic_partition,
                leader_epoch,
                partition_epoch,
                new_isr,
                ..
            } => write!(
                f,
                "AlterPartition({topic_partition:?} from leader {broker_id} epoch {leader_epoch} partition epoch {partition_epoch} ISR {})",
                broker_list(new_isr)
            ),
            Msg::Fetch(r) => write!(f, "{r:?}"),
            Msg::FetchResponse(r) => write!(f, "{r:?}"),
            Msg::OffsetsForLeaderEpoch {
                topic_partition,
                replica_id,
                leader_epoch,
                current_leader_epoch,
            } => write!(
                f,
                "OffsetsForLeaderEpoch({topic_partition:?} replica {replica_id} epoch {leader_epoch} current epoch {})",
                epoch_opt(*current_leader_epoch)
            ),
            Msg::OffsetsForLeaderEpochResponse {
                topic_partition,
                requested_epoch,
                result,
            } => match result {
                Ok(a) => write!(
                    f,
                    "OffsetsForLeaderEpochResponse({topic_partition:?} epoch {requested_epoch}: {})",
                    answer(a)
                ),
                Err(e) => write!(
                    f,
                    "OffsetsForLeaderEpochResponse({topic_partition:?} epoch {requested_epoch}: {e:?})"
                ),
            },
            Msg::Metadata { topic } => write!(f, "Metadata({topic})"),
            Msg::MetadataResponse { partitions, .. } => write!(f, "MetadataResponse({partitions:?})"),
            Msg::Produce(r) => write!(f, "{r:?}"),
            Msg::ProduceResponse(r) => write!(f, "{r:?}"),
            Msg::CreateTopics {
                topic,
                partitions,
                replication_factor,
                configs,
                ..
            } => write!(
                f,
                "CreateTopics({topic} partitions {partitions} replication factor {replication_factor} {configs})"
            ),
            Msg::CreateTopicsResponse {
                topic,
                result,
                error_message,
            } => {
                write!(f, "CreateTopicsResponse({topic}: {result:?}")?;
                if let Some(m) = error_message {
                    write!(f, " {m}")?;
                }
                f.write_str(")")
            }
            Msg::DescribeTopics { topic, .. } => write!(f, "DescribeTopics({topic:?})"),
            Msg::DescribeTopicsResponse { partitions, .. } => {
                write!(f, "DescribeTopicsResponse({partitions:?})")
            }
            Msg::ElectLeaders {
                election,
                partitions,
                ..
            } => write!(f, "ElectLeaders({election:?} {partitions:?})"),
            Msg::ElectLeadersResponse { election, results } => {
                write!(f, "ElectLeadersResponse({election:?} {results:?})")
            }
            Msg::IncrementalAlterConfigs { topic, changes, .. } => {
                write!(f, "IncrementalAlterConfigs({topic} {changes:?})")
            }
            Msg::IncrementalAlterConfigsResponse {
                topic,
                result,
                error_message,
            } => {
                write!(f, "IncrementalAlterConfigsResponse({topic}: ")?;
                match result {
                    Ok(configs) => write!(f, "{configs}")?,
                    Err(e) => write!(f, "{e:?}")?,
                }
                if let Some(m) = error_message {
                    write!(f, " {m}")?;
                }
                f.write_str(")")
            }
            Msg::ListOffsets { topic_partition } => write!(f, "ListOffsets({topic_partition:?})"),
            Msg::ListOffsetsResponse {
                topic_partition,
                result,
            } => write!(f, "ListOffsetsResponse({topic_partition:?}: {result:?})"),
            Msg::Send { records } => write!(f, "Send(the first {records} records)"),
            Msg::RecordAcknowledged(a) => write!(
                f,
                "RecordAcknowledged({:?}@{} epoch {}: {:?})",
                a.topic_partition, a.offset, a.leader_epoch, a.value
            ),
            Msg::FindCoordinator { group } => write!(f, "FindCoordinator(group {group})"),
            Msg::FindCoordinatorResponse { group, result } => match result {
                Ok((b, _)) => write!(f, "FindCoordinatorResponse(group {group}: broker {b})"),
                Err(e) => write!(f, "FindCoordinatorResponse(group {group}: {e:?})"),
            },
            Msg::JoinGroup {
                group,
                topic_partition,
                member_epoch,
            } => write!(
                f,
                "JoinGroup(group {group} {topic_partition:?} member epoch {member_epoch})"
            ),
            Msg::JoinGroupResponse {
                group,
                topic_partition,
                member_epoch,
                result,
            } => match result {
                Ok(g) => write!(
                    f,
                    "JoinGroupResponse(group {group} {topic_partition:?} member epoch {member_epoch} generation {g})"
                ),
                Err(e) => write!(
                    f,
                    "JoinGroupResponse(group {group} {topic_partition:?} member epoch {member_epoch} {e:?})"
                ),
            },
            Msg::OffsetCommit {
                group,
                topic_partition,
                generation,
                offset,
            } => write!(
                f,
                "OffsetCommit(group {group} {topic_partition:?}@{offset} generation {generation})"
            ),
            Msg::OffsetCommitResponse {
                group,
                topic_partition,
                offset,
                result,
            } => match result {
                Ok(()) => write!(f, "OffsetCommitResponse(group {group} {topic_partition:?}@{offset})"),
                Err(e) => write!(
                    f,
                    "OffsetCommitResponse(group {group} {topic_partition:?}@{offset} {e:?})"
                ),
            },
            Msg::OffsetFetch {
                group,
                topic_partition,
            } => write!(f, "OffsetFetch(group {group} {topic_partition:?})"),
            Msg::OffsetFetchResponse {
                group,
                topic_partition,
                result,
            } => match result {
                Ok(Some(o)) => write!(f, "OffsetFetchResponse(group {group} {topic_partition:?}@{o})"),
                Ok(None) => write!(f, "OffsetFetchResponse(group {group} {topic_partition:?}: none)"),
                Err(e) => write!(f, "OffsetFetchResponse(group {group} {topic_partition:?} {e:?})"),
            },
            Msg::Group(e) => write!(f, "{e:?}"),
            Msg::Quorum(m) => write!(f, "{m:?}"),
            Msg::NotController { leader } => write!(f, "NotController(active {leader:?})"),
            Msg::DescribeQuorum => f.write_str("DescribeQuorum"),
            Msg::DescribeQuorumResponse(d) => write!(f, "DescribeQuorumResponse({d:?})"),
            Msg::RecordConsumed(c) => write!(
                f,
                "RecordConsumed({}@{}:{:?}, from leader epoch {})",
                c.offset, c.entry.leader_epoch, c.entry.record.value, c.leader_epoch
            ),
        }
    }
}
