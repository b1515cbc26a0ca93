//! A broker as the leader of a partition: produce, serving fetches, the high watermark and the
//! ISR. Spec: rules R17–R30, R34.

use super::*;
use crate::msg::{
    EpochEndOffset, FetchRequest, FetchResponse, FetchResult, ProduceRequest, ProduceResponse,
};
use crate::rules::*;

impl Broker {
    /// R17–R21: a produce request, refused, answered as a retry, or appended.
    pub(super) fn on_produce(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: ProduceRequest,
        outbox: &mut Outbox,
    ) {
        let tp = request.topic_partition.clone();
        match state.replicas.get(&tp) {
            // R17: this broker does not host the partition at all.
            None => {
                let error = not_hosted_error(state, &tp);
                refuse_produce(R17, src, &request, 0, error, outbox)
            }
            // R17: not the leader.
            Some(r) if !r.is_leader() => refuse_produce(
                R17,
                src,
                &request,
                r.leader_epoch(),
                ErrorCode::NotLeaderOrFollower,
                outbox,
            ),
            // R17: the producer's metadata names another epoch.
            Some(r) if request.leader_epoch != r.leader_epoch() => {
                let error = if request.leader_epoch < r.leader_epoch() {
                    ErrorCode::FencedLeaderEpoch
                } else {
                    ErrorCode::UnknownLeaderEpoch
                };
                refuse_produce(R17, src, &request, r.leader_epoch(), error, outbox)
            }
            // R18: acks=all needs min.insync.replicas in the ISR before the append.
            Some(r) if request.acks == Acks::All && r.under_min_isr() => refuse_produce(
                R18,
                src,
                &request,
                r.leader_epoch(),
                ErrorCode::NotEnoughReplicas,
                outbox,
            ),
            Some(r) => match idempotence_check(&r.log, &request.records) {
                // R20: a gap in the producer's sequence.
                Sequencing::OutOfOrder => refuse_produce(
                    R20,
                    src,
                    &request,
                    r.leader_epoch(),
                    ErrorCode::OutOfOrderSequence,
                    outbox,
                ),
                // R19: a retry of a batch this log already holds is answered with its offset.
                Sequencing::Duplicate(offset) => {
                    fired(R19);
                    let r = r.clone();
                    self.answer_produce(state, src, &request, r, offset, outbox)
                }
                // R21: append in the current leader epoch.
                Sequencing::Append => {
                    let r = r.clone();
                    self.append(state, src, &request, r, outbox)
                }
            },
        }
    }

    /// R21: appends the batch stamped with the leader epoch, persists it, and answers the
    /// follower fetches it was holding.
    fn append(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: &ProduceRequest,
        mut r: Replica,
        outbox: &mut Outbox,
    ) {
        fired(R21);
        let epoch = r.leader_epoch();
        let base_offset = r.log_end_offset();
        for record in request.records.iter().cloned() {
            r.log.append(LogEntry {
                leader_epoch: epoch,
                record,
            });
        }
        outbox.persist();
        self.complete_delayed_fetches(&mut r, outbox);
        self.answer_produce(state, src, request, r, base_offset, outbox);
    }

    /// R19, R21: answers a batch the log holds from `base_offset`: `acks=1` at once, `acks=all`
    /// once the high watermark passes it (held, R28), `acks=0` never.
    fn answer_produce(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: &ProduceRequest,
        mut r: Replica,
        base_offset: Offset,
        outbox: &mut Outbox,
    ) {
        let epoch = r.leader_epoch();
        match request.acks {
            Acks::None => {}
            Acks::Leader => reply_produce(src, request, epoch, Ok(base_offset), outbox),
            Acks::All => {
                let held = DelayedProduce {
                    client: src,
                    base_offset,
                    end_offset: base_offset + request.records.len() as Offset,
                    request: HeldRequest::Produce {
                        batch: request.batch,
                        attempt: request.attempt,
                    },
                };
                let leader = leader_mut(&mut r);
                // A duplicate of a request already held (a duplicated datagram) is answered by
                // the same completion.
                if !leader.delayed_produces.contains(&held) {
                    leader.delayed_produces.push(held);
                }
                self.maybe_advance_high_watermark(&mut r, outbox);
            }
        }
        state
            .to_mut()
            .replicas
            .insert(request.topic_partition.clone(), r);
    }

    /// R22–R27: a fetch, refused, or served to a follower or a consumer.
    pub(super) fn on_fetch(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: FetchRequest,
        outbox: &mut Outbox,
    ) {
        let tp = request.topic_partition.clone();
        match state.replicas.get(&tp) {
            // R22: this broker does not host the partition at all.
            None => {
                fired(R22);
                let error = not_hosted_error(state, &tp);
                outbox.send(
                    src,
                    Msg::FetchResponse(FetchResponse {
                        topic_partition: tp,
                        fetch_offset: request.fetch_offset,
                        leader_epoch: 0,
                        result: FetchResult::Error {
                            error,
                            log_end_offset: 0,
                        },
                    }),
                );
            }
            // R22: only the leader serves fetches.
            Some(r) if !r.is_leader() => {
                fired(R22);
                outbox.send(
                    src,
                    self.fetch_error(r, &request, ErrorCode::NotLeaderOrFollower),
                );
            }
            // R23: KIP-320, the fetcher is in another leader epoch.
            Some(r) if self.fence(r, request.current_leader_epoch).is_some() => {
                fired(R23);
                let error = self
                    .fence(r, request.current_leader_epoch)
                    .expect("checked by the guard");
                outbox.send(src, self.fetch_error(r, &request, error));
            }
            // R22: a follower fetch from a broker that holds no replica of the partition.
            Some(r)
                if request
                    .replica_id
                    .is_some_and(|f| !r.partition.replicas.contains(&f)) =>
            {
                fired(R22);
                outbox.send(
                    src,
                    self.fetch_error(r, &request, ErrorCode::NotLeaderOrFollower),
                );
            }
            Some(r) => {
                let r = r.clone();
                match request.replica_id {
                    Some(follower) => {
                        self.serve_follower_fetch(state, src, request, follower, r, outbox)
                    }
                    None => self.serve_consumer_fetch(state, src, request, r, outbox),
                }
            }
        }
    }

    /// R24–R26: a fetch from a follower of this leader.
    fn serve_follower_fetch(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: FetchRequest,
        follower: BrokerId,
        mut r: Replica,
        outbox: &mut Outbox,
    ) {
        if let Some(answer) = self.divergence(&r, &request) {
            // R24: the follower's log has a tail the leader's lacks.
            fired(R24);
            outbox.send(
                src,
                self.fetch_response(&r, &request, FetchResult::Diverging(answer)),
            );
            return;
        }
        if request.fetch_offset > r.log_end_offset() {
            // R25: the follower is past the leader's log end.
            fired(R25);
            outbox.send(
                src,
                self.fetch_error(&r, &request, ErrorCode::OffsetOutOfRange),
            );
            return;
        }
        // R26: the fetch offset is the follower's log end offset, in the incarnation that sent
        // it. A fetch from an incarnation older than one already seen is a delayed message from
        // a dead process (KIP-903).
        let leader = leader_mut(&mut r);
        if let Some(p) = leader
            .followers
            .iter_mut()
            .find(|p| p.broker_id == follower)
        {
            if p.broker_epoch.is_some_and(|e| request.broker_epoch < e) {
                return;
            }
            p.log_end_offset = Some(request.fetch_offset);
            p.broker_epoch = Some(request.broker_epoch);
        }
        fired(R26);
        self.maybe_expand_isr(state.broker_epoch, &mut r, follower, outbox);
        self.maybe_advance_high_watermark(&mut r, outbox);
        if request.fetch_offset < r.log_end_offset() || r.high_watermark > request.high_watermark {
            let records = r.log.read(
                request.fetch_offset,
                r.log_end_offset(),
                request.fetch_bytes_max,
            );
            let result = FetchResult::Records {
                records: records.into(),
                high_watermark: r.high_watermark,
            };
            outbox.send(src, self.fetch_response(&r, &request, result));
        } else {
            hold_fetch(&mut r, src, request);
        }
        update_replica(state, r);
    }

    /// R24: the leader's end offset for the epoch of the follower's last record, if the
    /// follower's log diverges from it there (KIP-320 revisions only).
    fn divergence(&self, r: &Replica, request: &FetchRequest) -> Option<EpochEndOffset> {
        let last_fetched_epoch = request
            .last_fetched_epoch
            .filter(|_| self.revision().fetch_carries_last_fetched_epoch())?;
        let answer = r
            .log
            .end_offset_for_epoch(last_fetched_epoch, self.own_epoch(r));
        let diverging = match answer {
            None => true,
            Some((epoch, end_offset)) => {
                epoch < last_fetched_epoch || end_offset < request.fetch_offset
            }
        };
        diverging.then_some(answer)
    }

    /// R27: consumers read below the high watermark only, and only once the high watermark has
    /// reached this leader's epoch.
    fn serve_consumer_fetch(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        request: FetchRequest,
        mut r: Replica,
        outbox: &mut Outbox,
    ) {
        fired(R27);
        let epoch_start_offset = r.leader_state().map_or(0, |l| l.epoch_start_offset);
        if r.high_watermark < epoch_start_offset {
            outbox.send(
                src,
                self.fetch_error(&r, &request, ErrorCode::OffsetNotAvailable),
            );
        } else if request.fetch_offset > r.high_watermark {
            outbox.send(
                src,
                self.fetch_error(&r, &request, ErrorCode::OffsetOutOfRange),
            );
        } else if request.fetch_offset < r.high_watermark {
            outbox.send(src, self.consumer_records(&r, &request));
        } else {
            hold_fetch(&mut r, src, request);
            update_replica(state, r);
        }
    }

    /// R23: KIP-320 fencing of a request's current leader epoch; `None` if it passes.
    pub(super) fn fence(&self, r: &Replica, current: Option<LeaderEpoch>) -> Option<ErrorCode> {
        if !self.revision().fences_current_leader_epoch() {
            return None;
        }
        let current = current?;
        match current.cmp(&r.leader_epoch()) {
            std::cmp::Ordering::Less => Some(ErrorCode::FencedLeaderEpoch),
            std::cmp::Ordering::Greater => Some(ErrorCode::UnknownLeaderEpoch),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// The leader's own epoch and its start offset, when its epoch cache holds it (R34).
    fn own_epoch(&self, r: &Replica) -> Option<(LeaderEpoch, Offset)> {
        let leader = r.leader_state()?;
        self.revision()
            .leader_caches_own_epoch()
            .then_some((r.leader_epoch(), leader.epoch_start_offset))
    }

    /// R34: the leader's end offset for a follower's epoch.
    pub(super) fn on_offsets_for_leader_epoch(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        tp: TopicPartition,
        requested_epoch: LeaderEpoch,
        current_leader_epoch: Option<LeaderEpoch>,
        outbox: &mut Outbox,
    ) {
        fired(R34);
        let result = match state.replicas.get(&tp) {
            None => Err(ErrorCode::UnknownTopicOrPartition),
            Some(r) if !r.is_leader() => Err(ErrorCode::NotLeaderOrFollower),
            Some(r) => match self.fence(r, current_leader_epoch) {
                Some(error) => Err(error),
                None => Ok(r
                    .log
                    .end_offset_for_epoch(requested_epoch, self.own_epoch(r))),
            },
        };
        outbox.send(
            src,
            Msg::OffsetsForLeaderEpochResponse {
                topic_partition: tp,
                requested_epoch,
                result,
            },
        );
    }

    /// R28: the high watermark is the smallest log end offset in the maximal ISR (the ISR and any
    /// member being added). It never moves backward, a follower that has not fetched in this
    /// epoch holds it still, and (since Kafka 3.7) so does an ISR under min.insync.replicas.
    /// Held requests it passes are answered.
    pub(super) fn maybe_advance_high_watermark(&self, r: &mut Replica, outbox: &mut Outbox) {
        let me = self.broker_id();
        let log_end_offset = r.log_end_offset();
        let Role::Leader(leader) = &r.role else {
            return;
        };
        // R28 (KAFKA-15583): no commit while the ISR is under min.insync.replicas.
        let under_min_isr = r.under_min_isr();
        let mut candidate = if under_min_isr && !self.config.cluster.hwm_under_min_isr {
            None
        } else {
            Some(log_end_offset)
        };
        for member in maximal_isr(&r.partition.isr, leader) {
            if member == me {
                continue;
            }
            let progress = leader
                .followers
                .iter()
                .find(|p| p.broker_id == member)
                .and_then(|p| p.log_end_offset);
            candidate = match (candidate, progress) {
                (Some(c), Some(p)) => Some(c.min(p)),
                _ => None,
            };
        }
        if let Some(candidate) = candidate.filter(|c| *c > r.high_watermark) {
            fired(R28);
            r.high_watermark = candidate;
            outbox.persist();
        }
        self.complete_delayed_produces(r, outbox);
        self.complete_delayed_fetches(r, outbox);
    }

    /// R28: answer held `acks=all` requests the high watermark has passed. If the ISR has shrunk
    /// below `min.insync.replicas` meanwhile, the records are committed but the producer is told
    /// NotEnoughReplicasAfterAppend, and retries.
    fn complete_delayed_produces(&self, r: &mut Replica, outbox: &mut Outbox) {
        let high_watermark = r.high_watermark;
        let enough = !r.under_min_isr();
        let tp = r.partition.topic_partition.clone();
        let epoch = r.leader_epoch();
        let leader = leader_mut(r);
        let (done, waiting): (Vec<_>, Vec<_>) = leader
            .delayed_produces
            .drain(..)
            .partition(|p| p.end_offset <= high_watermark);
        leader.delayed_produces = waiting;
        for p in done {
            let error = (!enough).then_some(ErrorCode::NotEnoughReplicasAfterAppend);
            outbox.send(p.client, p.answer(&tp, epoch, error));
        }
    }

    /// R26, R27: answers held fetches that now have something to return: follower fetches once
    /// there are records past their offset or the high watermark has moved past the follower's,
    /// consumer fetches once the high watermark passes their offset.
    pub(super) fn complete_delayed_fetches(&self, r: &mut Replica, outbox: &mut Outbox) {
        let Role::Leader(leader) = &r.role else {
            return;
        };
        if leader.delayed_fetches.is_empty() {
            return;
        }
        let log_end_offset = r.log_end_offset();
        let high_watermark = r.high_watermark;
        let epoch_start_offset = leader.epoch_start_offset;
        let ready = |f: &DelayedFetch| match f.request.replica_id {
            Some(_) => {
                f.request.fetch_offset < log_end_offset || high_watermark > f.request.high_watermark
            }
            None => f.request.fetch_offset < high_watermark && high_watermark >= epoch_start_offset,
        };
        let (done, waiting): (Vec<_>, Vec<_>) =
            leader.delayed_fetches.iter().cloned().partition(ready);
        if done.is_empty() {
            return;
        }
        for f in &done {
            let response = match f.request.replica_id {
                Some(_) => {
                    let records = r.log.read(
                        f.request.fetch_offset,
                        log_end_offset,
                        f.request.fetch_bytes_max,
                    );
                    self.fetch_response(
                        r,
                        &f.request,
                        FetchResult::Records {
                            records: records.into(),
                            high_watermark,
                        },
                    )
                }
                None => self.consumer_records(r, &f.request),
            };
            outbox.send(f.client, response);
        }
        leader_mut(r).delayed_fetches = waiting;
    }

    /// R26 for followers that have caught up to the log end offset. Their fetches are held
    /// until there is more to send, so without this a follower that caught up while another ISR
    /// change was in flight would wait for the next record to rejoin. Followers still behind
    /// rejoin on their next fetch, as in Kafka; checking them here too would let a follower
    /// past the HWM but short of the log end flap in and out of the ISR forever, since the model
    /// has no clock to hold it out for `replica.lag.time.max.ms`.
    pub(super) fn maybe_expand_isr_all(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        outbox: &mut Outbox,
    ) {
        let log_end_offset = r.log_end_offset();
        let followers: Vec<BrokerId> = match &r.role {
            Role::Leader(l) => l
                .followers
                .iter()
                .filter(|p| p.log_end_offset == Some(log_end_offset))
                .map(|p| p.broker_id)
                .collect(),
            _ => return,
        };
        for follower in followers {
            self.maybe_expand_isr(broker_epoch, r, follower, outbox);
        }
    }

    /// R26: a follower outside the ISR joins once it has reached the high watermark and the start
    /// of this leader's epoch, fetching in this epoch.
    fn maybe_expand_isr(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        follower: BrokerId,
        outbox: &mut Outbox,
    ) {
        let high_watermark = r.high_watermark;
        let Role::Leader(leader) = &r.role else {
            return;
        };
        if leader.pending_isr.is_some() || r.partition.isr.contains(&follower) {
            return;
        }
        let Some(follower_end_offset) = leader
            .followers
            .iter()
            .find(|p| p.broker_id == follower)
            .and_then(|p| p.log_end_offset)
        else {
            return;
        };
        if follower_end_offset < high_watermark || follower_end_offset < leader.epoch_start_offset {
            return;
        }
        let new_isr: BrokerIds = r
            .partition
            .replicas
            .iter()
            .copied()
            .filter(|b| *b == follower || r.partition.isr.contains(b))
            .collect();
        self.alter_partition(broker_epoch, r, new_isr, outbox);
    }

    /// R29: drop followers that have fallen behind from the ISR. Time is not modelled, so any
    /// follower short of the leader's log end offset (or silent in this epoch) may have lagged
    /// past `replica.lag.time.max.ms`; one that has caught up never has.
    pub(super) fn shrink_isr(&self, state: &mut Cow<BrokerState>, outbox: &mut Outbox) {
        let me = self.broker_id();
        let lagging: Vec<(TopicPartition, BrokerIds)> = state
            .replicas
            .values()
            .filter_map(|r| {
                let leader = r.leader_state()?;
                if leader.pending_isr.is_some() {
                    return None;
                }
                let in_sync = |b: &BrokerId| {
                    *b == me
                        || leader.followers.iter().any(|p| {
                            p.broker_id == *b && p.log_end_offset == Some(r.log_end_offset())
                        })
                };
                let new_isr: BrokerIds = r.partition.isr.iter().copied().filter(in_sync).collect();
                (new_isr.len() < r.partition.isr.len())
                    .then(|| (r.partition.topic_partition.clone(), new_isr))
            })
            .collect();
        let broker_epoch = state.broker_epoch;
        for (tp, new_isr) in lagging {
            fired(R29);
            let mut r = state.replicas[&tp].clone();
            self.alter_partition(broker_epoch, &mut r, new_isr, outbox);
            state.to_mut().replicas.insert(tp, r);
        }
    }

    /// Sends AlterPartition and remembers the ISR it asks for.
    fn alter_partition(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        new_isr: BrokerIds,
        outbox: &mut Outbox,
    ) {
        outbox.send(
            self.config.cluster.controller,
            self.alter_partition_request(broker_epoch, r, &new_isr),
        );
        leader_mut(r).pending_isr = Some(new_isr);
    }

    pub(super) fn alter_partition_request(
        &self,
        broker_epoch: BrokerEpoch,
        r: &Replica,
        new_isr: &[BrokerId],
    ) -> Msg {
        let broker_epochs = r
            .leader_state()
            .map(|l| {
                l.followers
                    .iter()
                    .filter(|p| new_isr.contains(&p.broker_id))
                    .filter_map(|p| Some((p.broker_id, p.broker_epoch?)))
                    .collect()
            })
            .unwrap_or_default();
        Msg::AlterPartition {
            broker_id: self.broker_id(),
            broker_epoch,
            topic_partition: r.partition.topic_partition.clone(),
            leader_epoch: r.leader_epoch(),
            partition_epoch: r.partition.partition_epoch,
            new_isr: new_isr.into(),
            broker_epochs,
        }
    }

    /// R30: the controller's answer to AlterPartition carries the partition's state: the
    /// accepted change, or with a rejection the current state. Either is applied as LeaderAndIsr
    /// would apply it (R12–R15): an accepted change of this leadership settles the pending ISR
    /// change (R13), a newer leadership changes the role, an older or equal state is ignored.
    ///
    /// A rejection whose state is not newer leaves the pending change in place: it does not prove
    /// the change was not made, since a retransmitted copy may be rejected after the original was
    /// accepted and its answer lost. So the leader keeps counting the maximal ISR until it learns
    /// the controller's state. An IneligibleReplica rejection always carries a newer state (R8).
    pub(super) fn on_alter_partition_response(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        carried: Option<PartitionState>,
        offsets: (Option<MetadataOffset>, MetadataOffset),
        outbox: &mut Outbox,
    ) {
        if !self.admit_controller_message(state, controller_epoch, None, outbox) {
            return; // R11
        }
        if !state.registered {
            // R11: the answer carries no broker epoch. One that reaches a broker not registered
            // in this incarnation answers a request of an earlier one (the network keeps
            // messages across a restart); taken, it would hand a recovering replica its old role
            // before the controller knows it restarted. The heartbeat answer brings the state.
            fired(R11);
            return;
        }
        fired(R30);
        let carried: Vec<PartitionState> = carried.into_iter().collect();
        self.apply_metadata_delta(state, offsets, &carried, outbox);
    }

    pub(super) fn fetch_response(
        &self,
        r: &Replica,
        request: &FetchRequest,
        result: FetchResult,
    ) -> Msg {
        Msg::FetchResponse(FetchResponse {
            topic_partition: request.topic_partition.clone(),
            fetch_offset: request.fetch_offset,
            leader_epoch: r.leader_epoch(),
            result,
        })
    }

    pub(super) fn fetch_error(&self, r: &Replica, request: &FetchRequest, error: ErrorCode) -> Msg {
        let log_end_offset = match error {
            ErrorCode::OffsetOutOfRange if request.replica_id.is_none() => r.high_watermark,
            _ => r.log_end_offset(),
        };
        self.fetch_response(
            r,
            request,
            FetchResult::Error {
                error,
                log_end_offset,
            },
        )
    }

    fn consumer_records(&self, r: &Replica, request: &FetchRequest) -> Msg {
        let records = r.log.read(
            request.fetch_offset,
            r.high_watermark,
            request.fetch_bytes_max,
        );
        self.fetch_response(
            r,
            request,
            FetchResult::Records {
                records: records.into(),
                high_watermark: r.high_watermark,
            },
        )
    }
}

/// `UnknownTopicOrPartition`, or `NotLeaderOrFollower` for a partition this broker knows from
/// metadata only (R17, R22).
fn not_hosted_error(state: &BrokerState, tp: &TopicPartition) -> ErrorCode {
    if state.metadata.contains_key(tp) {
        ErrorCode::NotLeaderOrFollower
    } else {
        ErrorCode::UnknownTopicOrPartition
    }
}

/// Answers a produce request, unless it asked for no answer (`acks=0`).
fn reply_produce(
    src: Id,
    request: &ProduceRequest,
    leader_epoch: LeaderEpoch,
    result: Result<Offset, ErrorCode>,
    outbox: &mut Outbox,
) {
    if request.acks != Acks::None {
        outbox.send(
            src,
            Msg::ProduceResponse(ProduceResponse {
                topic_partition: request.topic_partition.clone(),
                batch: request.batch,
                attempt: request.attempt,
                leader_epoch,
                result,
            }),
        );
    }
}

/// R17, R18, R20: a produce request refused with `error`.
fn refuse_produce(
    rule: Rule,
    src: Id,
    request: &ProduceRequest,
    leader_epoch: LeaderEpoch,
    error: ErrorCode,
    outbox: &mut Outbox,
) {
    fired(rule);
    reply_produce(src, request, leader_epoch, Err(error), outbox);
}

/// Stores a changed replica, leaving the state borrowed (a no-op) if nothing changed.
fn update_replica(state: &mut Cow<BrokerState>, r: Replica) {
    let tp = r.partition.topic_partition.clone();
    if state.replicas.get(&tp) != Some(&r) {
        state.to_mut().replicas.insert(tp, r);
    }
}

/// The ISR, plus a member being added while AlterPartition is in flight.
fn maximal_isr(isr: &[BrokerId], leader: &LeaderState) -> Vec<BrokerId> {
    let mut members = isr.to_vec();
    for b in leader.pending_isr.iter().flat_map(|p| p.iter()) {
        if !members.contains(b) {
            members.push(*b);
        }
    }
    members
}

fn leader_mut(r: &mut Replica) -> &mut LeaderState {
    match &mut r.role {
        Role::Leader(l) => l,
        _ => unreachable!("only leaders hold leader state"),
    }
}

/// Holds a fetch with nothing to return yet, replacing any earlier one from the same fetcher.
fn hold_fetch(r: &mut Replica, client: Id, request: FetchRequest) {
    let leader = leader_mut(r);
    leader
        .delayed_fetches
        .retain(|f| f.client != client || f.request.topic_partition != request.topic_partition);
    leader
        .delayed_fetches
        .push(DelayedFetch { client, request });
}

enum Sequencing {
    Append,
    Duplicate(Offset),
    OutOfOrder,
}

/// R19, R20: where an idempotent batch stands against the producer's records in the log.
fn idempotence_check(log: &Log, records: &[Record]) -> Sequencing {
    let Some(first) = records.first().and_then(|r| r.producer) else {
        return Sequencing::Append;
    };
    let mine = |e: &LogEntry| {
        e.record
            .producer
            .filter(|p| p.producer_id == first.producer_id)
    };
    let last = log.entries().rev().find_map(mine).map(|p| p.sequence);
    match last {
        Some(last) if first.sequence <= last => {
            let offset = log
                .entries()
                .position(|e| mine(e).is_some_and(|p| p.sequence == first.sequence));
            match offset {
                Some(offset) => Sequencing::Duplicate(offset as Offset),
                None => Sequencing::OutOfOrder,
            }
        }
        Some(last) if first.sequence != last + 1 => Sequencing::OutOfOrder,
        None if first.sequence != 0 => Sequencing::OutOfOrder,
        _ => Sequencing::Append,
    }
}
