//! A broker as a follower: fetching, adopting the high watermark, truncating. Spec: rules R15,
//! R31–R33, R35.

use super::*;
use crate::msg::{EpochEndOffset, FetchRequest, FetchResponse, FetchResult};
use crate::revision::BecomeFollower;
use crate::rules::*;

impl Broker {
    /// R15: the revision's first step as a follower of `r.partition.leader`.
    pub(super) fn start_following(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        outbox: &mut Outbox,
    ) {
        let Some(leader) = r.partition.leader.and_then(|l| self.address_of(l)) else {
            r.role = Role::Offline; // Nobody to follow.
            return;
        };
        match self.revision().become_follower() {
            BecomeFollower::TruncateToHighWatermark => {
                self.truncate(r, r.high_watermark, outbox);
                self.send_fetch(broker_epoch, r, leader, outbox);
            }
            BecomeFollower::AskEpochEndOffset => match r.log.last_epoch() {
                Some(epoch) => self.ask_epoch_end_offset(r, epoch, leader, outbox),
                None => self.send_fetch(broker_epoch, r, leader, outbox),
            },
            BecomeFollower::Fetch => self.send_fetch(broker_epoch, r, leader, outbox),
        }
    }

    fn fetch_request(&self, broker_epoch: BrokerEpoch, r: &Replica) -> FetchRequest {
        let revision = self.revision();
        FetchRequest {
            topic_partition: r.partition.topic_partition.clone(),
            replica_id: Some(self.broker_id()),
            broker_epoch,
            fetch_offset: r.log_end_offset(),
            last_fetched_epoch: r
                .log
                .last_epoch()
                .filter(|_| revision.fetch_carries_last_fetched_epoch()),
            current_leader_epoch: revision
                .fences_current_leader_epoch()
                .then_some(r.leader_epoch()),
            fetch_bytes_max: self.config.cluster.fetch_bytes_max,
            high_watermark: r.high_watermark,
        }
    }

    fn send_fetch(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        leader: Id,
        outbox: &mut Outbox,
    ) {
        outbox.send(leader, Msg::Fetch(self.fetch_request(broker_epoch, r)));
        r.role = Role::Follower(FollowerState::Fetching {
            fetch_offset: r.log_end_offset(),
            in_flight: true,
        });
    }

    fn epoch_request(&self, r: &Replica, epoch: LeaderEpoch) -> Msg {
        Msg::OffsetsForLeaderEpoch {
            topic_partition: r.partition.topic_partition.clone(),
            replica_id: self.broker_id(),
            leader_epoch: epoch,
            current_leader_epoch: self
                .revision()
                .fences_current_leader_epoch()
                .then_some(r.leader_epoch()),
        }
    }

    fn ask_epoch_end_offset(
        &self,
        r: &mut Replica,
        epoch: LeaderEpoch,
        leader: Id,
        outbox: &mut Outbox,
    ) {
        outbox.send(leader, self.epoch_request(r, epoch));
        r.role = Role::Follower(FollowerState::Truncating {
            epoch,
            in_flight: true,
        });
    }

    /// Truncates the log, keeping the high watermark at or below the log end offset (I1).
    fn truncate(&self, r: &mut Replica, offset: Offset, outbox: &mut Outbox) {
        if r.log.truncate(offset) {
            r.high_watermark = r.high_watermark.min(r.log_end_offset());
            outbox.persist();
        }
    }

    /// Whether a response comes from the leader this replica follows, for the request it has in
    /// flight.
    fn sender_if_leader(&self, r: &Replica, src: Id) -> Option<Id> {
        let leader = r.partition.leader.and_then(|l| self.address_of(l))?;
        (leader == src).then_some(leader)
    }

    /// R31–R33.
    pub(super) fn on_fetch_response(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        response: FetchResponse,
        outbox: &mut Outbox,
    ) {
        let tp = response.topic_partition.clone();
        let Some(r) = state.replicas.get(&tp) else {
            return;
        };
        let Role::Follower(FollowerState::Fetching { fetch_offset, .. }) = r.role else {
            return;
        };
        if fetch_offset != response.fetch_offset {
            return; // A response to an earlier fetch.
        }
        let Some(leader) = self.sender_if_leader(r, src) else {
            return;
        };
        if self.revision().fences_current_leader_epoch()
            && response.leader_epoch != r.leader_epoch()
            && !backs_off(&response.result)
        {
            return; // R31: KIP-320, data from another leader epoch.
        }
        let broker_epoch = state.broker_epoch;
        let mut r = r.clone();
        match response.result {
            FetchResult::Records {
                records,
                high_watermark,
            } => {
                // R31: append, adopt the leader's high watermark up to our own log end offset,
                // fetch on.
                fired(R31);
                debug_assert_eq!(fetch_offset, r.log_end_offset());
                let appended = !records.is_empty();
                for entry in records.iter() {
                    r.log.append(entry.clone());
                }
                let high_watermark = high_watermark.min(r.log_end_offset());
                if appended || high_watermark != r.high_watermark {
                    r.high_watermark = high_watermark;
                    outbox.persist();
                }
                self.send_fetch(broker_epoch, &mut r, leader, outbox);
            }
            FetchResult::Diverging(answer) => {
                // R32: truncate where the logs stop agreeing (or walk back), fetch on.
                fired(R32);
                self.truncate_by_answer(&mut r, answer, outbox);
                self.send_fetch(broker_epoch, &mut r, leader, outbox);
            }
            FetchResult::Error {
                error: ErrorCode::OffsetOutOfRange,
                log_end_offset,
            } => {
                // R33: the leader's log is shorter than ours; cut ours to it (the pre-KIP-101
                // fallback, unsafe, and unreachable under KIP-320's divergence check).
                fired(R33);
                self.truncate(&mut r, log_end_offset, outbox);
                self.send_fetch(broker_epoch, &mut r, leader, outbox);
            }
            FetchResult::Error { .. } => {
                // R33: any other error, `FencedLeaderEpoch` included, backs off and retries. A
                // fence that passed R31 answers an earlier request: a leader in our epoch does not
                // fence a fetch in our epoch. A newer epoch reaches us by push or pull (R49).
                fired(R33);
                r.role = Role::Follower(FollowerState::Fetching {
                    fetch_offset,
                    in_flight: false,
                });
            }
        }
        state.to_mut().replicas.insert(tp, r);
    }

    /// R32, R35: the revision turns the leader's answer into a truncation.
    fn truncate_by_answer(
        &self,
        r: &mut Replica,
        answer: EpochEndOffset,
        outbox: &mut Outbox,
    ) -> bool {
        let truncation = self.revision().truncation(&r.log, r.high_watermark, answer);
        self.truncate(r, truncation.offset, outbox);
        truncation.complete
    }

    /// R35: KIP-101 and KIP-279 truncate by the leader's end offset for our latest epoch.
    pub(super) fn on_offsets_for_leader_epoch_response(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        tp: TopicPartition,
        requested_epoch: LeaderEpoch,
        result: Result<EpochEndOffset, ErrorCode>,
        outbox: &mut Outbox,
    ) {
        let Some(r) = state.replicas.get(&tp) else {
            return;
        };
        let Role::Follower(FollowerState::Truncating { epoch, .. }) = r.role else {
            return;
        };
        if epoch != requested_epoch {
            return;
        }
        let Some(leader) = self.sender_if_leader(r, src) else {
            return;
        };
        fired(R35);
        let broker_epoch = state.broker_epoch;
        let mut r = r.clone();
        match result {
            Ok(answer) => {
                let complete = self.truncate_by_answer(&mut r, answer, outbox);
                match r.log.last_epoch() {
                    // KIP-279: ask again with our new latest epoch, which is strictly older.
                    Some(next) if !complete && next < epoch => {
                        self.ask_epoch_end_offset(&mut r, next, leader, outbox)
                    }
                    _ => self.send_fetch(broker_epoch, &mut r, leader, outbox),
                }
            }
            // R35: an error, `FencedLeaderEpoch` included (it may answer a request of an earlier
            // epoch), backs off and asks again.
            Err(_) => {
                r.role = Role::Follower(FollowerState::Truncating {
                    epoch,
                    in_flight: false,
                })
            }
        }
        state.to_mut().replicas.insert(tp, r);
    }

    /// Sends again the follower requests that backed off (`in_flight == false`, on FetchBackoff)
    /// or that may have been lost (`in_flight == true`, on RequestTimeout when retransmitting).
    pub(super) fn resend_follower_requests(
        &self,
        state: &mut Cow<BrokerState>,
        in_flight: bool,
        outbox: &mut Outbox,
    ) {
        let broker_epoch = state.broker_epoch;
        let due: Vec<TopicPartition> = state
            .replicas
            .values()
            .filter(|r| match r.role {
                Role::Follower(FollowerState::Fetching { in_flight: f, .. })
                | Role::Follower(FollowerState::Truncating { in_flight: f, .. }) => f == in_flight,
                _ => false,
            })
            .map(|r| r.partition.topic_partition.clone())
            .collect();
        for tp in due {
            fired(if in_flight { R45 } else { R44 });
            let r = &state.replicas[&tp];
            let Some(leader) = r.partition.leader.and_then(|l| self.address_of(l)) else {
                continue;
            };
            let mut r = r.clone();
            match r.role {
                Role::Follower(FollowerState::Truncating { epoch, .. }) => {
                    self.ask_epoch_end_offset(&mut r, epoch, leader, outbox)
                }
                _ => self.send_fetch(broker_epoch, &mut r, leader, outbox),
            }
            if state.replicas.get(&tp) != Some(&r) {
                state.to_mut().replicas.insert(tp, r);
            }
        }
    }

    /// RequestTimeout (retransmitting brokers only): send again what may have been lost.
    pub(super) fn retransmit(&self, state: &mut Cow<BrokerState>, outbox: &mut Outbox) {
        self.resend_follower_requests(state, true, outbox);
        for r in state.replicas.values() {
            if let Some(pending) = r.leader_state().and_then(|l| l.pending_isr.as_ref()) {
                fired(R45);
                outbox.send(
                    self.config.cluster.controller,
                    self.alter_partition_request(state.broker_epoch, r, pending),
                );
            }
        }
    }
}

/// R31, R33: an error that only makes the follower back off and fetch again. It is taken from
/// any leader epoch: it applies nothing, and it may be the only answer the current fetch gets (a
/// broker that has not yet heard it leads answers `NotLeaderOrFollower` from its older epoch).
fn backs_off(result: &FetchResult) -> bool {
    matches!(result, FetchResult::Error { error, .. } if *error != ErrorCode::OffsetOutOfRange)
}
