//! A broker: the leader and follower replicas of its partitions. Spec: "Broker", rules R10–R36.
//!
//! Handlers are split by concern: `control` takes the controller's orders, `leader` serves
//! produce and fetch and keeps the high watermark and ISR, `follower` fetches and truncates.

mod control;
mod coordinator;
mod follower;
mod leader;

use crate::collections::{BrokerIds, PartitionMap};
use crate::config::{initial_partitions, BrokerConfig};
use crate::group::{Generation, Group};
use crate::log::Log;
use crate::msg::{Msg, PartitionMetadata, PartitionState};
use crate::node::{Node, Storage, Timer};
use crate::outbox::Outbox;
use crate::revision::Revision;
use crate::rules::*;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a leader tracks about one follower in its current epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FollowerProgress {
    pub broker_id: BrokerId,
    /// The fetch offset of the follower's latest fetch in this epoch: its log end offset, as far
    /// as the leader knows. `None` until it fetches in this epoch.
    pub log_end_offset: Option<Offset>,
    /// The broker epoch (incarnation) that fetch came from (KIP-903).
    pub broker_epoch: Option<BrokerEpoch>,
}

/// An `acks=all` produce request, or a group coordinator's write, waiting for the high
/// watermark (Kafka's DelayedProduce).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DelayedProduce {
    pub client: Id,
    pub base_offset: Offset,
    /// The offset after the batch's last record: the high watermark that completes it.
    pub end_offset: Offset,
    pub request: HeldRequest,
}

/// Which request a [`DelayedProduce`] answers.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HeldRequest {
    /// R28: a produce request's batch and attempt.
    Produce { batch: u32, attempt: u32 },
    /// R58, R61: a JoinGroup, answered with the generation it wrote.
    Join {
        group: Group,
        topic_partition: TopicPartition,
        member_epoch: Generation,
        generation: Generation,
    },
    /// R59, R61: an OffsetCommit.
    Commit {
        group: Group,
        topic_partition: TopicPartition,
        offset: Offset,
    },
}

impl DelayedProduce {
    /// The answer to the held request: `Ok` once committed with the ISR at min.insync.replicas,
    /// or `error`. A group write that failed is `CoordinatorNotAvailable` to the member, as
    /// Kafka maps NotEnoughReplicas for its coordinator's writes; one abandoned by a leader that
    /// stopped leading is `NotCoordinator`.
    pub fn answer(
        &self,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        error: Option<ErrorCode>,
    ) -> Msg {
        let group_error = |e: ErrorCode| match e {
            ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
            _ => ErrorCode::CoordinatorNotAvailable,
        };
        match &self.request {
            HeldRequest::Produce { batch, attempt } => {
                Msg::ProduceResponse(crate::msg::ProduceResponse {
                    topic_partition: tp.clone(),
                    batch: *batch,
                    attempt: *attempt,
                    leader_epoch,
                    result: error.map_or(Ok(self.base_offset), Err),
                })
            }
            HeldRequest::Join {
                group,
                topic_partition,
                member_epoch,
                generation,
            } => Msg::JoinGroupResponse {
                group: group.clone(),
                topic_partition: topic_partition.clone(),
                member_epoch: *member_epoch,
                result: error.map_or(Ok(*generation), |e| Err(group_error(e))),
            },
            HeldRequest::Commit {
                group,
                topic_partition,
                offset,
            } => Msg::OffsetCommitResponse {
                group: group.clone(),
                topic_partition: topic_partition.clone(),
                offset: *offset,
                result: error.map_or(Ok(()), |e| Err(group_error(e))),
            },
        }
    }
}

/// A fetch with nothing to return yet, held until there is (Kafka's DelayedFetch).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DelayedFetch {
    pub client: Id,
    pub request: crate::msg::FetchRequest,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderState {
    /// The log end offset when this broker became leader: where its epoch starts.
    pub epoch_start_offset: Offset,
    pub followers: Vec<FollowerProgress>,
    /// The ISR of an AlterPartition in flight, if any. Until the controller answers, the leader
    /// counts the union of this and its ISR (the maximal ISR) for the high watermark.
    pub pending_isr: Option<BrokerIds>,
    pub delayed_produces: Vec<DelayedProduce>,
    pub delayed_fetches: Vec<DelayedFetch>,
}

/// Where a follower's replication stands. `in_flight` is false after a retriable error: the
/// next `FetchBackoff` sends the request again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FollowerState {
    /// Asking the leader for the end offset of `epoch` (OffsetsForLeaderEpoch; KIP-101, KIP-279).
    Truncating { epoch: LeaderEpoch, in_flight: bool },
    /// Fetching at `fetch_offset`, the log end offset.
    Fetching {
        fetch_offset: Offset,
        in_flight: bool,
    },
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Restarted and not yet told its role by the controller.
    Recovering,
    /// The partition has no leader (offline), or this replica has nobody to follow.
    Offline,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// One replica of one partition on this broker.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replica {
    /// The latest partition state from the controller, including the current leader epoch.
    pub partition: PartitionState,
    pub log: Log,
    pub high_watermark: Offset,
    pub role: Role,
}

impl Replica {
    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.partition.leader_epoch
    }
    pub fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
    /// Whether the ISR is smaller than the topic's min.insync.replicas (R18, R28, R58).
    pub fn under_min_isr(&self) -> bool {
        (self.partition.isr.len() as u32) < self.partition.min_insync_replicas
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerState {
    pub broker_epoch: BrokerEpoch,
    /// The newest controller epoch seen; older controller requests are rejected.
    pub controller_epoch: ControllerEpoch,
    /// Whether the controller has this incarnation registered and unfenced, as far as we know.
    pub registered: bool,
    pub replicas: PartitionMap<Replica>,
    /// Partition states for partitions this broker does not replicate (UpdateMetadata).
    pub metadata: PartitionMap<PartitionState>,
    /// R74: the controller this broker heartbeats to and asks; always `controller` but with a
    /// KRaft quorum, where it is the active one as far as the broker knows.
    pub controller: Id,
    /// R74: heartbeats sent since this broker last heard from `controller` (a quorum only).
    pub heartbeats_unanswered: u8,
    /// R51: this broker holds every metadata change up to this offset; `None` after a restart,
    /// until its registration is answered. Its heartbeats carry it, and are answered with every
    /// change after it (R49). Kept in memory only: a restarted broker pulls the whole table.
    pub metadata_offset: Option<MetadataOffset>,
}

/// What a broker persists of one replica.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaStorage {
    pub partition: PartitionState,
    pub log: Log,
    /// The high watermark checkpoint.
    pub high_watermark: Offset,
}

/// What a broker persists.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerStorage {
    pub broker_epoch: BrokerEpoch,
    pub controller_epoch: ControllerEpoch,
    pub replicas: PartitionMap<ReplicaStorage>,
}

impl BrokerStorage {
    /// What a power loss leaves (`PowerLoss`): every log cut to at most `log_end_offset`
    /// records, and its high watermark checkpoint with it.
    pub fn after_power_loss(&self, loss: crate::PowerLoss) -> BrokerStorage {
        let mut storage = self.clone();
        for r in storage.replicas.values_mut() {
            r.log.truncate(loss.log_end_offset);
            r.high_watermark = r
                .high_watermark
                .min(loss.high_watermark)
                .min(r.log.log_end_offset());
        }
        storage
    }

    /// The highest HWM checkpoint.
    pub fn high_watermark_max(&self) -> Offset {
        self.replicas
            .values()
            .map(|r| r.high_watermark)
            .max()
            .unwrap_or(0)
    }

    /// The longest log.
    pub fn log_end_offset_max(&self) -> Offset {
        self.replicas
            .values()
            .map(|r| r.log.log_end_offset())
            .max()
            .unwrap_or(0)
    }
}

impl BrokerState {
    pub fn storage(&self) -> BrokerStorage {
        BrokerStorage {
            broker_epoch: self.broker_epoch,
            controller_epoch: self.controller_epoch,
            replicas: self
                .replicas
                .iter()
                .map(|(tp, r)| {
                    (
                        tp.clone(),
                        ReplicaStorage {
                            partition: r.partition.clone(),
                            log: r.log.clone(),
                            high_watermark: r.high_watermark,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The partition state this broker knows for `tp`, as replica or from metadata.
    pub fn partition_state(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.replicas
            .get(tp)
            .map(|r| &r.partition)
            .or_else(|| self.metadata.get(tp))
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Broker {
    pub config: BrokerConfig,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Self {
        Broker { config }
    }

    pub(crate) fn revision(&self) -> &'static dyn Revision {
        self.config.cluster.protocol.revision()
    }

    pub(crate) fn broker_id(&self) -> BrokerId {
        self.config.broker_id
    }

    pub(crate) fn address_of(&self, broker_id: BrokerId) -> Option<Id> {
        self.config.cluster.broker_address(broker_id)
    }

    fn arm_timers(&self, o: &mut Out<Node>) {
        let timing = &self.config.cluster.timing;
        o.set_timer(Timer::Heartbeat, timing.heartbeat_interval.clone());
        o.set_timer(Timer::IsrShrink, timing.isr_shrink_interval.clone());
        o.set_timer(Timer::FetchBackoff, timing.retry_backoff.clone());
        if self.config.cluster.retransmit {
            o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
        }
    }

    /// R10: a fresh broker starts registered in its first incarnation (the controller's initial
    /// registry holds it), with empty replicas of the configured topics in their initial roles.
    /// A recovered broker loads its logs, high watermarks and partition states, bumps its broker
    /// epoch, registers, and waits for LeaderAndIsr before it leads or fetches anything.
    pub fn start(
        &self,
        _id: Id,
        storage: Option<&BrokerStorage>,
        o: &mut Out<Node>,
    ) -> BrokerState {
        fired(R10);
        self.arm_timers(o);
        let mut outbox = Outbox::new();
        outbox.persist();
        let state = match storage {
            None => {
                let mut state = BrokerState {
                    broker_epoch: 0,
                    controller_epoch: 0,
                    controller: self.config.cluster.controller,
                    heartbeats_unanswered: 0,
                    registered: true,
                    replicas: PartitionMap::new(),
                    metadata: PartitionMap::new(),
                    // The bootstrapped partitions are metadata offset 0 (R1).
                    metadata_offset: Some(0),
                };
                for ps in initial_partitions(&self.config.cluster.topics) {
                    if ps.replicas.contains(&self.broker_id()) {
                        let mut r = Replica {
                            partition: ps.clone(),
                            log: Log::new(),
                            high_watermark: 0,
                            role: Role::Recovering,
                        };
                        self.take_role(0, &mut r, ps, &mut outbox);
                        state
                            .replicas
                            .insert(r.partition.topic_partition.clone(), r);
                    } else {
                        state.metadata.insert(ps.topic_partition.clone(), ps);
                    }
                }
                state
            }
            Some(stored) => {
                let state = BrokerState {
                    broker_epoch: stored.broker_epoch + 1,
                    controller_epoch: stored.controller_epoch,
                    controller: self.config.cluster.controller,
                    heartbeats_unanswered: 0,
                    registered: false,
                    replicas: stored
                        .replicas
                        .iter()
                        .map(|(tp, r)| {
                            (
                                tp.clone(),
                                Replica {
                                    partition: r.partition.clone(),
                                    log: r.log.clone(),
                                    high_watermark: r.high_watermark.min(r.log.log_end_offset()),
                                    role: Role::Recovering,
                                },
                            )
                        })
                        .collect(),
                    metadata: PartitionMap::new(),
                    metadata_offset: None,
                };
                outbox.send(self.config.cluster.controller, self.heartbeat(&state));
                state
            }
        };
        outbox.redirect(self.config.cluster.controller, state.controller);
        outbox.flush(o, || Storage::Broker(Arc::new(state.storage())));
        state
    }

    pub(crate) fn heartbeat(&self, state: &BrokerState) -> Msg {
        Msg::BrokerHeartbeat {
            broker_id: self.broker_id(),
            broker_epoch: state.broker_epoch,
            metadata_offset: state.metadata_offset,
        }
    }

    pub fn on_msg(&self, state: &mut Cow<BrokerState>, src: Id, msg: Msg, o: &mut Out<Node>) {
        let mut outbox = Outbox::new();
        if let Some(epoch) = msg.controller_epoch() {
            self.follow_controller(state, src, epoch);
        }
        match msg {
            Msg::LeaderAndIsr {
                controller_epoch,
                broker_epoch,
                base_metadata_offset,
                metadata_offset,
                partitions,
            }
            | Msg::UpdateMetadata {
                controller_epoch,
                broker_epoch,
                base_metadata_offset,
                metadata_offset,
                partitions,
            } => self.on_metadata_push(
                state,
                controller_epoch,
                broker_epoch,
                (base_metadata_offset, metadata_offset),
                &partitions,
                &mut outbox,
            ),
            Msg::BrokerHeartbeatResponse {
                controller_epoch,
                broker_epoch,
                is_fenced,
                base_metadata_offset,
                metadata_offset,
                partitions,
            } => self.on_heartbeat_response(
                state,
                controller_epoch,
                broker_epoch,
                is_fenced,
                (base_metadata_offset, metadata_offset),
                &partitions,
                &mut outbox,
            ),
            Msg::AlterPartitionResponse {
                controller_epoch,
                topic_partition: _,
                result,
                current,
                base_metadata_offset,
                metadata_offset,
            } => self.on_alter_partition_response(
                state,
                controller_epoch,
                result.ok().or(current).map(Arc::unwrap_or_clone),
                (base_metadata_offset, metadata_offset),
                &mut outbox,
            ),
            Msg::Produce(request) => self.on_produce(state, src, request, &mut outbox),
            Msg::Fetch(request) => self.on_fetch(state, src, request, &mut outbox),
            Msg::FetchResponse(response) => {
                self.on_fetch_response(state, src, response, &mut outbox)
            }
            Msg::OffsetsForLeaderEpoch {
                topic_partition,
                replica_id: _,
                leader_epoch,
                current_leader_epoch,
            } => self.on_offsets_for_leader_epoch(
                state,
                src,
                topic_partition,
                leader_epoch,
                current_leader_epoch,
                &mut outbox,
            ),
            Msg::OffsetsForLeaderEpochResponse {
                topic_partition,
                requested_epoch,
                result,
            } => self.on_offsets_for_leader_epoch_response(
                state,
                src,
                topic_partition,
                requested_epoch,
                result,
                &mut outbox,
            ),
            Msg::FindCoordinator { group } => {
                self.on_find_coordinator(state, src, group, &mut outbox)
            }
            Msg::JoinGroup {
                group,
                topic_partition,
                member_epoch,
            } => self.on_join_group(
                state,
                src,
                (group, topic_partition),
                member_epoch,
                &mut outbox,
            ),
            Msg::OffsetCommit {
                group,
                topic_partition,
                generation,
                offset,
            } => self.on_offset_commit(
                state,
                src,
                (group, topic_partition),
                generation,
                offset,
                &mut outbox,
            ),
            Msg::OffsetFetch {
                group,
                topic_partition,
            } => self.on_offset_fetch(state, src, group, topic_partition, &mut outbox),
            Msg::Metadata { topic } => {
                // R36: any broker answers metadata from what it knows.
                fired(R36);
                outbox.send(src, self.metadata_response(state, &topic));
            }
            Msg::CreateTopics {
                topic,
                partitions,
                replication_factor,
                configs,
                client: None,
            } => {
                // R46: forward to the controller, naming the client it answers.
                fired(R46);
                outbox.send(
                    self.config.cluster.controller,
                    Msg::CreateTopics {
                        topic,
                        partitions,
                        replication_factor,
                        configs,
                        client: Some(src),
                    },
                );
            }
            Msg::IncrementalAlterConfigs {
                topic,
                changes,
                client: None,
            } => {
                // R56: forward to the controller.
                fired(R56);
                outbox.send(
                    self.config.cluster.controller,
                    Msg::IncrementalAlterConfigs {
                        topic,
                        changes,
                        client: Some(src),
                    },
                );
            }
            Msg::DescribeTopics {
                topic,
                client: None,
            } => {
                // R47: forward to the controller.
                fired(R47);
                outbox.send(
                    self.config.cluster.controller,
                    Msg::DescribeTopics {
                        topic,
                        client: Some(src),
                    },
                );
            }
            Msg::ElectLeaders {
                election,
                partitions,
                client: None,
            } => {
                // R55: forward to the controller.
                fired(R55);
                outbox.send(
                    self.config.cluster.controller,
                    Msg::ElectLeaders {
                        election,
                        partitions,
                        client: Some(src),
                    },
                );
            }
            Msg::ListOffsets { topic_partition } => {
                // R48: this replica's offsets, whatever its role.
                fired(R48);
                let result = match state.replicas.get(&topic_partition) {
                    Some(r) => Ok(crate::msg::ReplicaOffsets {
                        leader_epoch: r.leader_epoch(),
                        is_leader: r.is_leader(),
                        log_end_offset: r.log_end_offset(),
                        high_watermark: r.high_watermark,
                    }),
                    None if state.metadata.contains_key(&topic_partition) => {
                        Err(ErrorCode::NotLeaderOrFollower)
                    }
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                };
                outbox.send(
                    src,
                    Msg::ListOffsetsResponse {
                        topic_partition,
                        result,
                    },
                );
            }
            Msg::NotController { leader } => {
                self.on_not_controller(state, src, leader, &mut outbox)
            }
            Msg::BrokerHeartbeat { .. }
            | Msg::AlterPartition { .. }
            | Msg::Quorum(_)
            | Msg::DescribeQuorum
            | Msg::DescribeQuorumResponse(_)
            | Msg::MetadataResponse { .. }
            | Msg::ProduceResponse(_)
            | Msg::CreateTopics { .. }
            | Msg::DescribeTopics { .. }
            | Msg::CreateTopicsResponse { .. }
            | Msg::DescribeTopicsResponse { .. }
            | Msg::ElectLeaders { .. }
            | Msg::ElectLeadersResponse { .. }
            | Msg::IncrementalAlterConfigs { .. }
            | Msg::IncrementalAlterConfigsResponse { .. }
            | Msg::ListOffsetsResponse { .. }
            | Msg::FindCoordinatorResponse { .. }
            | Msg::JoinGroupResponse { .. }
            | Msg::OffsetCommitResponse { .. }
            | Msg::OffsetFetchResponse { .. }
            | Msg::Send { .. }
            | Msg::RecordAcknowledged(_)
            | Msg::RecordConsumed(_)
            | Msg::Group(_) => {}
        }
        outbox.redirect(self.config.cluster.controller, state.controller);
        outbox.flush(o, || Storage::Broker(Arc::new(state.storage())));
    }

    pub fn on_timer(&self, state: &mut Cow<BrokerState>, timer: &Timer, o: &mut Out<Node>) {
        let timing = &self.config.cluster.timing;
        let mut outbox = Outbox::new();
        match timer {
            Timer::Heartbeat => {
                o.set_timer(Timer::Heartbeat, timing.heartbeat_interval.clone());
                // R16, R49: keep the session and pull what this broker lacks (the real
                // cluster), or retry registration (retransmitting).
                let retry = !state.registered && self.config.cluster.retransmit;
                if self.config.cluster.has_controller_quorum() {
                    self.count_unanswered_heartbeat(state);
                }
                if retry || self.config.cluster.heartbeat_periodic {
                    outbox.send(self.config.cluster.controller, self.heartbeat(state));
                }
            }
            Timer::IsrShrink => {
                o.set_timer(Timer::IsrShrink, timing.isr_shrink_interval.clone());
                self.shrink_isr(state, &mut outbox);
            }
            Timer::FetchBackoff => {
                o.set_timer(Timer::FetchBackoff, timing.retry_backoff.clone());
                // R44: retry follower requests that met a retriable error.
                self.resend_follower_requests(state, false, &mut outbox);
            }
            Timer::RequestTimeout => {
                o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
                // R45: retransmit requests that may have been lost.
                self.retransmit(state, &mut outbox);
            }
            _ => {}
        }
        outbox.redirect(self.config.cluster.controller, state.controller);
        outbox.flush(o, || Storage::Broker(Arc::new(state.storage())));
    }

    fn metadata_response(&self, state: &BrokerState, topic: &Topic) -> Msg {
        let partitions = state
            .replicas
            .values()
            .map(|r| &r.partition)
            .chain(state.metadata.values())
            .filter(|p| &p.topic_partition.topic == topic)
            .map(|p| PartitionMetadata {
                topic_partition: p.topic_partition.clone(),
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            })
            .collect();
        Msg::MetadataResponse {
            brokers: self.config.cluster.brokers.as_slice().into(),
            partitions,
        }
    }
}

impl fmt::Debug for BrokerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker epoch {}", self.broker_epoch)?;
        if !self.registered {
            f.write_str(" (registering)")?;
        }
        match self.metadata_offset {
            Some(held) => write!(f, " metadata offset {held}")?,
            None => f.write_str(" metadata offset none")?,
        }
        for r in self.replicas.values() {
            write!(f, " | {r:?}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Replica {
    /// `t-0 leader (epoch start 1) leader epoch 2 log [0@1:a 1@2:b] LEO 2 HWM 1 ISR [1,2]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.partition;
        let role = match &self.role {
            Role::Recovering => "recovering".to_string(),
            Role::Offline => "offline".to_string(),
            Role::Leader(l) => {
                let mut s = format!("leader (epoch start {})", l.epoch_start_offset);
                if let Some(pending) = &l.pending_isr {
                    s.push_str(&format!(" pending ISR {}", broker_list(pending)));
                }
                s
            }
            Role::Follower(fs) => {
                let (what, in_flight) = match fs {
                    FollowerState::Truncating { epoch, in_flight } => {
                        (format!("asking end of epoch {epoch}"), *in_flight)
                    }
                    FollowerState::Fetching {
                        fetch_offset,
                        in_flight,
                    } => (format!("fetching at {fetch_offset}"), *in_flight),
                };
                let backoff = if in_flight { "" } else { ", backing off" };
                format!("follower of {} ({what}{backoff})", leader_name(p.leader))
            }
        };
        write!(
            f,
            "{:?} {role} leader epoch {} log {:?} LEO {} HWM {} ISR {}",
            p.topic_partition,
            p.leader_epoch,
            self.log,
            self.log.log_end_offset(),
            self.high_watermark,
            broker_list(&p.isr)
        )
    }
}

impl fmt::Debug for BrokerStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored: broker epoch {}", self.broker_epoch)?;
        for (tp, r) in self.replicas.iter() {
            write!(
                f,
                " | {tp:?} leader epoch {} log {:?} HWM {}",
                r.partition.leader_epoch, r.log, r.high_watermark
            )?;
        }
        Ok(())
    }
}

fn leader_name(leader: Option<BrokerId>) -> String {
    match leader {
        Some(b) => format!("broker {b}"),
        None => "nobody".into(),
    }
}

/// `[1,2,3]`.
pub fn broker_list(brokers: &[BrokerId]) -> String {
    let ids: Vec<String> = brokers.iter().map(|b| b.to_string()).collect();
    format!("[{}]", ids.join(","))
}
