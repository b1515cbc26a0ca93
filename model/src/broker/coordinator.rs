//! A broker as a group coordinator: the leader of a group's partition of `__consumer_offsets`.
//! Spec: "Consumer groups", rules R57–R60.
//!
//! Group state is records of that partition: JoinGroup writes a generation, OffsetCommit an
//! offset, and both are answered once the high watermark passes them (R28's DelayedProduce), so
//! an acknowledged commit is a committed record, kept by the same replication and invariants.
//! OffsetFetch reads committed records only, and only once the coordinator has loaded them all.

use super::*;
use crate::group::{coordinator_partition, group_view, GroupRecord};

/// Why a broker cannot act as `group`'s coordinator now, if it cannot.
enum NotServing {
    NotCoordinator,
    LoadInProgress,
}

impl Broker {
    /// The partition of `__consumer_offsets` that holds `group`.
    fn offsets_partition(&self, group: &Group) -> TopicPartition {
        let partitions = self.config.cluster.offsets_topic_num_partitions;
        TopicPartition::new(
            &crate::group::offsets_topic(),
            coordinator_partition(group, partitions),
        )
    }

    /// R57: any broker names the leader of the group's offsets partition, from what it knows.
    pub(super) fn on_find_coordinator(
        &self,
        state: &BrokerState,
        src: Id,
        group: Group,
        outbox: &mut Outbox,
    ) {
        fired(R57);
        let leader = state
            .partition_state(&self.offsets_partition(&group))
            .and_then(|p| p.leader);
        let result = leader
            .and_then(|b| Some((b, self.address_of(b)?)))
            .ok_or(ErrorCode::CoordinatorNotAvailable);
        outbox.send(src, Msg::FindCoordinatorResponse { group, result });
    }

    /// The group's offsets partition, if this broker leads it and has loaded it: its high
    /// watermark has reached the start of its epoch, so every committed group record is below
    /// it (R27's rule for consumers, and Kafka's coordinator loading).
    fn coordinated(&self, state: &BrokerState, group: &Group) -> Result<Replica, NotServing> {
        let r = state
            .replicas
            .get(&self.offsets_partition(group))
            .filter(|r| r.is_leader())
            .ok_or(NotServing::NotCoordinator)?;
        let epoch_start_offset = r.leader_state().map_or(0, |l| l.epoch_start_offset);
        if r.high_watermark < epoch_start_offset {
            return Err(NotServing::LoadInProgress);
        }
        Ok(r.clone())
    }

    /// R58: a member joins: the coordinator writes the partition's next generation (one past
    /// the latest in its log, committed or not) and answers once it is committed.
    pub(super) fn on_join_group(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        (group, tp): (Group, TopicPartition),
        member_epoch: Generation,
        outbox: &mut Outbox,
    ) {
        fired(R58);
        let refuse = |error| Msg::JoinGroupResponse {
            group: group.clone(),
            topic_partition: tp.clone(),
            member_epoch,
            result: Err(error),
        };
        match self.coordinated(state, &group) {
            Err(why) => outbox.send(src, refuse(not_serving_error(why))),
            // R18 for the coordinator's writes (Kafka's `offsets.commit.required.acks=-1`).
            Ok(r) if r.under_min_isr() => {
                outbox.send(src, refuse(ErrorCode::CoordinatorNotAvailable))
            }
            Ok(r) => {
                let generation = group_view(&r.log, r.log_end_offset(), &group, &tp).generation + 1;
                let record = GroupRecord::Generation {
                    group: group.clone(),
                    topic_partition: tp.clone(),
                    generation,
                };
                let held = HeldRequest::Join {
                    group: group.clone(),
                    topic_partition: tp.clone(),
                    member_epoch,
                    generation,
                };
                self.write_group_record(state, src, r, record, held, outbox)
            }
        }
    }

    /// R59: a member commits its position: refused if a newer member has joined since (the
    /// generation in the log, committed or not, is not the member's), else written and answered
    /// once committed.
    pub(super) fn on_offset_commit(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        (group, tp): (Group, TopicPartition),
        generation: Generation,
        offset: Offset,
        outbox: &mut Outbox,
    ) {
        fired(R59);
        let refuse = |error| Msg::OffsetCommitResponse {
            group: group.clone(),
            topic_partition: tp.clone(),
            offset,
            result: Err(error),
        };
        match self.coordinated(state, &group) {
            Err(why) => outbox.send(src, refuse(not_serving_error(why))),
            Ok(r)
                if group_view(&r.log, r.log_end_offset(), &group, &tp).generation != generation =>
            {
                outbox.send(src, refuse(ErrorCode::IllegalGeneration))
            }
            // R18 for the coordinator's writes (Kafka's `offsets.commit.required.acks=-1`).
            Ok(r) if r.under_min_isr() => {
                outbox.send(src, refuse(ErrorCode::CoordinatorNotAvailable))
            }
            Ok(r) => {
                let record = GroupRecord::Offset {
                    group: group.clone(),
                    topic_partition: tp.clone(),
                    generation,
                    offset,
                };
                let held = HeldRequest::Commit {
                    group: group.clone(),
                    topic_partition: tp.clone(),
                    offset,
                };
                self.write_group_record(state, src, r, record, held, outbox)
            }
        }
    }

    /// R60: the group's latest committed offset for a partition, read below the high watermark
    /// of a loaded coordinator.
    pub(super) fn on_offset_fetch(
        &self,
        state: &BrokerState,
        src: Id,
        group: Group,
        tp: TopicPartition,
        outbox: &mut Outbox,
    ) {
        fired(R60);
        let result = match self.coordinated(state, &group) {
            Err(why) => Err(not_serving_error(why)),
            Ok(r) => Ok(group_view(&r.log, r.high_watermark, &group, &tp).offset),
        };
        outbox.send(
            src,
            Msg::OffsetFetchResponse {
                group,
                topic_partition: tp,
                result,
            },
        );
    }

    /// R58, R59: appends a group record in the current leader epoch, persists it, and holds the
    /// answer until the high watermark passes it (R28).
    fn write_group_record(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        mut r: Replica,
        record: GroupRecord,
        request: HeldRequest,
        outbox: &mut Outbox,
    ) {
        let base_offset = r.log_end_offset();
        r.log.append(LogEntry {
            leader_epoch: r.leader_epoch(),
            record: record.to_record(),
        });
        outbox.persist();
        self.complete_delayed_fetches(&mut r, outbox);
        if let Role::Leader(leader) = &mut r.role {
            leader.delayed_produces.push(DelayedProduce {
                client: src,
                base_offset,
                end_offset: base_offset + 1,
                request,
            });
        }
        self.maybe_advance_high_watermark(&mut r, outbox);
        state
            .to_mut()
            .replicas
            .insert(r.partition.topic_partition.clone(), r);
    }
}

fn not_serving_error(why: NotServing) -> ErrorCode {
    match why {
        NotServing::NotCoordinator => ErrorCode::NotCoordinator,
        NotServing::LoadInProgress => ErrorCode::CoordinatorLoadInProgress,
    }
}
