//! A consumer of one partition, alone or as a member of a group. Spec: "Consumer", rules
//! R41–R43, and "Consumer groups", R61, R62.
//!
//! It finds the leader through metadata, fetches from its position, and records what it reads.
//! The leader returns only records below the high watermark. A group member first finds its
//! coordinator, joins (fencing the member before it), and starts at the group's committed offset
//! or, with none, where `auto.offset.reset` says; then it commits its position as it reads.

use crate::config::ConsumerConfig;
use crate::group::{CommitMode, Generation, GroupConfig, GroupEvent, OffsetReset};
use crate::msg::{application, FetchRequest, FetchResponse, FetchResult, Msg, ReplicaOffsets};
use crate::node::{Node, Timer};
use crate::outbox::Outbox;
use crate::rules::*;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A record as a consumer read it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Consumed {
    pub offset: Offset,
    pub entry: LogEntry,
    /// The epoch of the leader that served it.
    pub leader_epoch: LeaderEpoch,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsumerState {
    pub brokers: Arc<[(BrokerId, Id)]>,
    pub leader: Option<(BrokerId, LeaderEpoch)>,
    pub metadata_in_flight: bool,
    pub bootstrap_index: u32,
    /// The next offset to read.
    pub position: Offset,
    /// Whether a fetch at `position` is in flight.
    pub fetching: bool,
    /// Where a group member stands (R61, R62); `None` without a group.
    pub member: Option<Member>,
    /// Records it may still read, with `records_max`; `None` without a limit.
    pub records_left: Option<u64>,
}

/// A group member's progress: the step it is at, and what it has committed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub step: MemberStep,
    /// Whether the step's request is in flight; after an error, the next `MetadataRetry` sends
    /// it again.
    pub in_flight: bool,
    /// The coordinator's broker id and address, once found.
    pub coordinator: Option<(BrokerId, Id)>,
    /// The generation JoinGroup gave this member.
    pub generation: Generation,
    /// The generation it held when it sent its latest JoinGroup, which the answer echoes
    /// (KIP-848's member epoch): only that answer ends joining.
    pub join_member_epoch: Generation,
    /// The offset the group holds for this member, as far as it knows: where it resumed (the
    /// group's commit, or the reset position), then each commit acknowledged. It commits only
    /// past this.
    pub committed: Offset,
    /// A commit in flight.
    pub committing: Option<Offset>,
}

/// The steps of R61, in order, then reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberStep {
    /// FindCoordinator, to a bootstrap broker.
    FindCoordinator,
    /// JoinGroup, to the coordinator.
    Join,
    /// OffsetFetch, to the coordinator.
    FetchOffset,
    /// `auto.offset.reset=latest` with nothing committed: ListOffsets to the leader, for its
    /// high watermark.
    ListOffsets,
    /// Fetching and committing.
    Consuming,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Consumer {
    pub config: ConsumerConfig,
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Self {
        Consumer { config }
    }

    /// R41, R61.
    pub fn start(&self, o: &mut Out<Node>) -> ConsumerState {
        fired(R41);
        let timing = &self.config.timing;
        o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
        if self.config.request_timeout {
            o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
        }
        let member = self.config.group.as_ref().map(|g| {
            if g.commit == CommitMode::Auto {
                o.set_timer(Timer::AutoCommit, g.auto_commit_interval.clone());
            }
            Member {
                step: MemberStep::FindCoordinator,
                in_flight: false,
                coordinator: None,
                generation: 0,
                join_member_epoch: 0,
                committed: 0,
                committing: None,
            }
        });
        let mut state = ConsumerState {
            brokers: Arc::new([]),
            leader: None,
            metadata_in_flight: false,
            bootstrap_index: 0,
            position: self.config.start_offset,
            fetching: false,
            member,
            records_left: self.config.records_max,
        };
        let mut outbox = Outbox::new();
        self.request_metadata(&mut state, &mut outbox);
        self.send_group_request(&mut state, &mut outbox);
        outbox.flush(o, || unreachable!("consumers persist nothing"));
        state
    }

    fn group(&self) -> &GroupConfig {
        self.config
            .group
            .as_ref()
            .expect("only members have a group")
    }

    fn bootstrap_target(&self, state: &ConsumerState) -> Id {
        let bootstrap = &self.config.bootstrap;
        bootstrap[state.bootstrap_index as usize % bootstrap.len()]
    }

    fn request_metadata(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        outbox.send(
            self.bootstrap_target(state),
            Msg::Metadata {
                topic: self.config.topic_partition.topic,
            },
        );
        state.metadata_in_flight = true;
    }

    fn leader_address(&self, state: &ConsumerState) -> Option<(Id, LeaderEpoch)> {
        let (leader, leader_epoch) = state.leader?;
        let (_, address) = state.brokers.iter().find(|(b, _)| *b == leader)?;
        Some((*address, leader_epoch))
    }

    /// Whether this consumer reads: always without a group, once resumed with one.
    fn reading(state: &ConsumerState) -> bool {
        state
            .member
            .as_ref()
            .is_none_or(|m| m.step == MemberStep::Consuming)
    }

    fn send_fetch(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        if !Self::reading(state) || state.records_left == Some(0) {
            return;
        }
        let Some((address, leader_epoch)) = self.leader_address(state) else {
            return;
        };
        outbox.send(
            address,
            Msg::Fetch(FetchRequest {
                topic_partition: self.config.topic_partition.clone(),
                replica_id: None,
                broker_epoch: 0,
                fetch_offset: state.position,
                last_fetched_epoch: None,
                current_leader_epoch: Some(leader_epoch),
                fetch_bytes_max: self.config.fetch_bytes_max,
                high_watermark: 0,
            }),
        );
        state.fetching = true;
    }

    /// R61: sends the request of the member's current step (none while consuming, or when its
    /// target is not known yet).
    fn send_group_request(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        let Some(member) = &state.member else {
            return;
        };
        let group = self.group().group.clone();
        let topic_partition = self.config.topic_partition.clone();
        let coordinator = member.coordinator.map(|(_, address)| address);
        let (target, msg) = match member.step {
            MemberStep::FindCoordinator => (
                Some(self.bootstrap_target(state)),
                Msg::FindCoordinator { group },
            ),
            MemberStep::Join => (
                coordinator,
                Msg::JoinGroup {
                    group,
                    topic_partition,
                    member_epoch: member.join_member_epoch,
                },
            ),
            MemberStep::FetchOffset => (
                coordinator,
                Msg::OffsetFetch {
                    group,
                    topic_partition,
                },
            ),
            MemberStep::ListOffsets => (
                self.leader_address(state).map(|(a, _)| a),
                Msg::ListOffsets { topic_partition },
            ),
            MemberStep::Consuming => return,
        };
        if let Some(target) = target {
            outbox.send(target, msg);
            state.member.as_mut().expect("a member").in_flight = true;
        }
    }

    /// R62: whether a member should commit: it is reading, its position is past what the group
    /// holds for it, no commit is in flight, and it knows its coordinator.
    fn commit_due(state: &ConsumerState) -> bool {
        state.member.as_ref().is_some_and(|m| {
            m.step == MemberStep::Consuming
                && m.committing.is_none()
                && m.committed < state.position
                && m.coordinator.is_some()
        })
    }

    /// R62: whether it commits after each poll rather than on its timer: `commitSync()` after
    /// processing, or the last commit of a consumer that has read its `records_max`.
    fn commits_after_poll(&self, state: &ConsumerState) -> bool {
        self.config.group.as_ref().map(|g| g.commit) == Some(CommitMode::Manual)
            || state.records_left == Some(0)
    }

    /// R62: commits the position, if a commit is due.
    fn maybe_commit(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        if !Self::commit_due(state) {
            return;
        }
        let position = state.position;
        let member = state.member.as_mut().expect("a member");
        let (_, coordinator) = member
            .coordinator
            .expect("commit_due: the coordinator is known");
        fired(R62);
        member.committing = Some(position);
        outbox.send(
            coordinator,
            Msg::OffsetCommit {
                group: self.group().group.clone(),
                topic_partition: self.config.topic_partition.clone(),
                generation: member.generation,
                offset: position,
            },
        );
    }

    /// R61: the member moves to `step` and sends its request.
    fn advance(&self, state: &mut ConsumerState, step: MemberStep, outbox: &mut Outbox) {
        let member = state.member.as_mut().expect("a member");
        if step == MemberStep::Join {
            member.join_member_epoch = member.generation;
        }
        member.step = step;
        member.in_flight = false;
        self.send_group_request(state, outbox);
    }

    /// R61: the member starts reading at `position`, and tells its application where and why.
    fn resume(
        &self,
        state: &mut ConsumerState,
        committed: Option<Offset>,
        position: Offset,
        outbox: &mut Outbox,
    ) {
        state.position = position;
        let member = state.member.as_mut().expect("a member");
        member.step = MemberStep::Consuming;
        member.in_flight = false;
        member.committed = position;
        outbox.send(
            application(),
            Msg::Group(GroupEvent::Resumed {
                group: self.group().group.clone(),
                topic_partition: self.config.topic_partition.clone(),
                committed,
                position,
            }),
        );
        if !state.fetching {
            self.send_fetch(state, outbox);
        }
    }

    /// R61: a group request failed: a lost or unknown coordinator is looked up again, anything
    /// else is retried as it is, on the next `MetadataRetry`.
    fn group_request_failed(&self, state: &mut ConsumerState, error: ErrorCode) {
        let member = state.member.as_mut().expect("a member");
        member.in_flight = false;
        if matches!(
            error,
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
        ) {
            member.step = MemberStep::FindCoordinator;
            member.coordinator = None;
        }
    }

    /// R43: the leader is unknown (an error, or no answer in time): stop waiting on it and ask
    /// for metadata. The next fetch, or a `latest` member's ListOffsets, goes once it is known.
    fn forget_leader(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        state.fetching = false;
        state.leader = None;
        if !state.metadata_in_flight {
            self.request_metadata(state, outbox);
        }
    }

    /// Whether a JoinGroup answer is to this member's latest join (it echoes the generation the
    /// member held when it sent it).
    fn latest_join(&self, state: &ConsumerState, member_epoch: u32) -> bool {
        state
            .member
            .as_ref()
            .is_some_and(|m| m.join_member_epoch == member_epoch)
    }

    /// Whether a group response answers the step this member is waiting on.
    fn awaits(&self, state: &ConsumerState, step: MemberStep) -> bool {
        state
            .member
            .as_ref()
            .is_some_and(|m| m.step == step && m.in_flight)
    }

    pub fn on_msg(&self, state: &mut Cow<ConsumerState>, _src: Id, msg: Msg, o: &mut Out<Node>) {
        let mut outbox = Outbox::new();
        match msg {
            Msg::MetadataResponse {
                brokers,
                partitions,
            } => {
                if !state.metadata_in_flight {
                    return;
                }
                let leader = partitions
                    .iter()
                    .find(|p| p.topic_partition == self.config.topic_partition)
                    .and_then(|p| Some((p.leader?, p.leader_epoch)));
                let s = state.to_mut();
                s.metadata_in_flight = false;
                s.brokers = brokers;
                s.leader = leader;
                if !s.fetching {
                    self.send_fetch(s, &mut outbox);
                }
            }
            Msg::FetchResponse(FetchResponse {
                topic_partition,
                fetch_offset,
                leader_epoch,
                result,
            }) => {
                if topic_partition != self.config.topic_partition
                    || fetch_offset != state.position
                    || !state.fetching
                {
                    return;
                }
                let s = state.to_mut();
                s.fetching = false;
                match result {
                    FetchResult::Records { records, .. } => {
                        // R42: take what was returned (up to `records_max`) and fetch on.
                        fired(R42);
                        let take = s.records_left.map_or(records.len(), |left| {
                            records
                                .len()
                                .min(usize::try_from(left).unwrap_or(usize::MAX))
                        });
                        if let Some(left) = s.records_left.as_mut() {
                            *left -= take as u64;
                        }
                        for entry in records.iter().take(take) {
                            let record = Consumed {
                                offset: s.position,
                                entry: entry.clone(),
                                leader_epoch,
                            };
                            // R42: poll returns it: the record leaves the consumer.
                            outbox.send(application(), Msg::RecordConsumed(record));
                            s.position += 1;
                        }
                        // R62: commitSync() once the poll's records are processed, and a last
                        // commit when the consumer closes at `records_max`.
                        if self.commits_after_poll(s) {
                            self.maybe_commit(s, &mut outbox);
                        }
                        self.send_fetch(s, &mut outbox);
                    }
                    FetchResult::Error {
                        error: ErrorCode::OffsetNotAvailable | ErrorCode::OffsetOutOfRange,
                        ..
                    } => {
                        // R43: the leader's high watermark is behind our position; retry later.
                        fired(R43);
                    }
                    _ => {
                        // R43: leadership moved; refresh metadata.
                        fired(R43);
                        self.forget_leader(s, &mut outbox);
                    }
                }
            }
            // R61: the coordinator is found: join it.
            Msg::FindCoordinatorResponse { result, .. }
                if self.awaits(state, MemberStep::FindCoordinator) =>
            {
                fired(R61);
                let s = state.to_mut();
                match result {
                    Ok(coordinator) => {
                        s.member.as_mut().expect("a member").coordinator = Some(coordinator);
                        self.advance(s, MemberStep::Join, &mut outbox);
                    }
                    Err(error) => self.group_request_failed(s, error),
                }
            }
            // R61: joined, fencing earlier members: fetch the group's committed offset.
            Msg::JoinGroupResponse {
                result: Ok(generation),
                member_epoch,
                ..
            } if self.awaits(state, MemberStep::Join) && self.latest_join(state, member_epoch) => {
                fired(R61);
                let s = state.to_mut();
                s.member.as_mut().expect("a member").generation = generation;
                self.advance(s, MemberStep::FetchOffset, &mut outbox);
            }
            // R61: a newer generation given to this client by a JoinGroup it sent earlier (its
            // answer overtaken by another's, or addressed to its previous incarnation in the
            // model, where a restarted client keeps its address): it is this member's, and
            // taking it spares a rejoin that would fence the member once more.
            Msg::JoinGroupResponse {
                result: Ok(generation),
                ..
            } if state
                .member
                .as_ref()
                .is_some_and(|m| m.generation < generation) =>
            {
                fired(R61);
                state.to_mut().member.as_mut().expect("a member").generation = generation;
            }
            Msg::JoinGroupResponse {
                result: Err(error),
                member_epoch,
                ..
            } if self.awaits(state, MemberStep::Join) && self.latest_join(state, member_epoch) => {
                fired(R61);
                self.group_request_failed(state.to_mut(), error);
            }
            // R61: resume at the committed offset, or reset.
            Msg::OffsetFetchResponse { result, .. }
                if self.awaits(state, MemberStep::FetchOffset) =>
            {
                fired(R61);
                let s = state.to_mut();
                match (result, self.group().offset_reset) {
                    (Ok(Some(offset)), _) => self.resume(s, Some(offset), offset, &mut outbox),
                    (Ok(None), OffsetReset::Earliest) => self.resume(s, None, 0, &mut outbox),
                    (Ok(None), OffsetReset::Latest) => {
                        self.advance(s, MemberStep::ListOffsets, &mut outbox)
                    }
                    (Err(error), _) => self.group_request_failed(s, error),
                }
            }
            // R61: `latest`: resume at the leader's high watermark.
            Msg::ListOffsetsResponse {
                topic_partition,
                result,
            } if topic_partition == self.config.topic_partition
                && self.awaits(state, MemberStep::ListOffsets) =>
            {
                fired(R61);
                let s = state.to_mut();
                match result {
                    Ok(ReplicaOffsets {
                        is_leader: true,
                        high_watermark,
                        ..
                    }) => self.resume(s, None, high_watermark, &mut outbox),
                    _ => {
                        s.member.as_mut().expect("a member").in_flight = false;
                        self.forget_leader(s, &mut outbox);
                    }
                }
            }
            // R62: a commit answered: acknowledged, fenced (rejoin), or to be retried.
            Msg::OffsetCommitResponse { offset, result, .. }
                if state
                    .member
                    .as_ref()
                    .is_some_and(|m| m.committing == Some(offset)) =>
            {
                fired(R62);
                let s = state.to_mut();
                let member = s.member.as_mut().expect("a member");
                member.committing = None;
                match result {
                    Ok(()) => {
                        member.committed = member.committed.max(offset);
                        outbox.send(
                            application(),
                            Msg::Group(GroupEvent::Committed {
                                group: self.group().group.clone(),
                                topic_partition: self.config.topic_partition.clone(),
                                offset,
                            }),
                        );
                        if self.commits_after_poll(s) {
                            self.maybe_commit(s, &mut outbox);
                        }
                    }
                    Err(ErrorCode::IllegalGeneration) => {
                        // A newer member took the partition: join again, and start over from
                        // what the group committed.
                        self.advance(s, MemberStep::Join, &mut outbox)
                    }
                    Err(error) => self.group_request_failed(s, error),
                }
            }
            _ => return,
        }
        outbox.flush(o, || unreachable!("consumers persist nothing"));
    }

    pub fn on_timer(&self, state: &mut Cow<ConsumerState>, timer: &Timer, o: &mut Out<Node>) {
        let timing = &self.config.timing;
        let mut outbox = Outbox::new();
        match timer {
            Timer::MetadataRetry => {
                o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
                let group_retry = state
                    .member
                    .as_ref()
                    .is_some_and(|m| m.step != MemberStep::Consuming && !m.in_flight);
                if group_retry {
                    // R61: retry the member's step.
                    self.send_group_request(state.to_mut(), &mut outbox);
                }
                if self.commits_after_poll(state) && Self::commit_due(state) {
                    // R62: retry a manual commit that failed.
                    self.maybe_commit(state.to_mut(), &mut outbox);
                }
                if state.metadata_in_flight || state.fetching {
                    // Nothing to do for the reader.
                } else if state.leader.is_some() {
                    if Self::reading(state) {
                        self.send_fetch(state.to_mut(), &mut outbox);
                    }
                } else {
                    self.request_metadata(state.to_mut(), &mut outbox);
                }
            }
            Timer::RequestTimeout => {
                o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
                let lists_offsets = self.awaits(state, MemberStep::ListOffsets);
                if state.metadata_in_flight {
                    let s = state.to_mut();
                    s.bootstrap_index =
                        (s.bootstrap_index + 1) % self.config.bootstrap.len() as u32;
                    self.request_metadata(s, &mut outbox);
                } else if state.fetching || lists_offsets {
                    // R43: the leader did not answer in time; it may be gone for good. Kafka's
                    // client drops the connection and refreshes its metadata; asking the same
                    // leader again would wait for ever on a dead broker.
                    let s = state.to_mut();
                    if lists_offsets {
                        s.member.as_mut().expect("a member").in_flight = false;
                    }
                    self.forget_leader(s, &mut outbox);
                }
                let unanswered = state.member.as_ref().is_some_and(|m| {
                    (m.in_flight && m.step != MemberStep::ListOffsets) || m.committing.is_some()
                });
                if unanswered {
                    // R61, R62: an unanswered group request: its broker may be gone. Look the
                    // coordinator up again, at the next bootstrap broker, as Kafka's consumer
                    // marks its coordinator unknown on a timeout.
                    let s = state.to_mut();
                    s.bootstrap_index =
                        (s.bootstrap_index + 1) % self.config.bootstrap.len() as u32;
                    s.member.as_mut().expect("a member").committing = None;
                    self.group_request_failed(s, ErrorCode::CoordinatorNotAvailable);
                    self.send_group_request(s, &mut outbox);
                }
            }
            Timer::AutoCommit => {
                if let Some(g) = &self.config.group {
                    o.set_timer(Timer::AutoCommit, g.auto_commit_interval.clone());
                }
                // R62: `enable.auto.commit`: commit what has been read.
                if Self::commit_due(state) {
                    self.maybe_commit(state.to_mut(), &mut outbox);
                }
            }
            _ => {}
        }
        outbox.flush(o, || unreachable!("consumers persist nothing"));
    }
}

impl fmt::Debug for ConsumerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "consumer | position {}", self.position)?;
        if self.fetching {
            f.write_str(" (fetching)")?;
        }
        if let Some(m) = &self.member {
            write!(f, " | {:?}", m.step)?;
            if m.in_flight {
                f.write_str(" (in flight)")?;
            }
            write!(f, " generation {} committed {}", m.generation, m.committed)?;
            if let Some(c) = m.committing {
                write!(f, " committing {c}")?;
            }
        }
        Ok(())
    }
}
