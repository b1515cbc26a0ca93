//! A broker taking the controller's orders: LeaderAndIsr, UpdateMetadata, heartbeat responses,
//! and keeping its metadata whole by pulling what it missed. Spec: rules R11–R16, R49–R51.

use super::*;

impl Broker {
    /// R11: a controller message from an older controller epoch than this broker has seen is
    /// rejected. A newer epoch is recorded and persisted, whatever the message, so that no older
    /// controller's message is taken afterwards, across restarts too. A message stamped with
    /// another incarnation of this broker (KIP-380) is rejected after that.
    pub(super) fn admit_controller_message(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: Option<BrokerEpoch>,
        outbox: &mut Outbox,
    ) -> bool {
        match controller_epoch.cmp(&state.controller_epoch) {
            std::cmp::Ordering::Less => {
                fired(R11);
                return false;
            }
            std::cmp::Ordering::Greater => {
                fired(R11);
                state.to_mut().controller_epoch = controller_epoch;
                outbox.persist();
            }
            std::cmp::Ordering::Equal => {}
        }
        let admitted = broker_epoch.is_none_or(|e| e == state.broker_epoch);
        if !admitted {
            fired(R11);
        }
        admitted
    }

    /// R11–R15, R51: a push of the partitions the controller changed (LeaderAndIsr,
    /// UpdateMetadata).
    pub(super) fn on_metadata_push(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        offsets: (Option<MetadataOffset>, MetadataOffset),
        partitions: &[PartitionState],
        outbox: &mut Outbox,
    ) {
        if !self.admit_controller_message(state, controller_epoch, Some(broker_epoch), outbox) {
            return;
        }
        self.apply_metadata_delta(state, offsets, partitions, outbox);
    }

    /// R12–R15 for each partition, then R51: the metadata offset this broker holds moves to the
    /// delta's end if the delta starts at or before it.
    pub(super) fn apply_metadata_delta(
        &self,
        state: &mut Cow<BrokerState>,
        (base, offset): (Option<MetadataOffset>, MetadataOffset),
        partitions: &[PartitionState],
        outbox: &mut Outbox,
    ) {
        for ps in partitions.iter().cloned() {
            if ps.replicas.contains(&self.broker_id()) {
                self.apply_partition_state(state, ps, outbox);
            } else {
                apply_metadata(state, ps);
            }
        }
        fired(R51);
        let held = match (base, state.metadata_offset) {
            // The whole table.
            (None, held) => Some(held.map_or(offset, |h| h.max(offset))),
            // It follows on what this broker holds.
            (Some(base), Some(held)) if base <= held => Some(held.max(offset)),
            // A push after one this broker missed: the states are applied (R12 keeps only
            // newer ones), but the missed change is still missing, and the next heartbeat asks
            // for everything after what it holds.
            (Some(_), held) => held,
        };
        if held != state.metadata_offset {
            state.to_mut().metadata_offset = held;
        }
    }

    /// R12–R15: the controller's state of one partition, from LeaderAndIsr or from an
    /// AlterPartition rejection (R30). Returns whether it was newer than what the replica knew.
    pub(super) fn apply_partition_state(
        &self,
        state: &mut Cow<BrokerState>,
        ps: PartitionState,
        outbox: &mut Outbox,
    ) -> bool {
        if !ps.replicas.contains(&self.broker_id()) {
            return false;
        }
        let tp = ps.topic_partition.clone();
        let replica = match state.replicas.get(&tp) {
            Some(r) => {
                let incoming = (ps.leader_epoch, ps.partition_epoch);
                let known = (r.leader_epoch(), r.partition.partition_epoch);
                // After a restart the replica takes the controller's state even if it is the
                // one it stored: it needs its role.
                let resync = matches!(r.role, Role::Recovering) && incoming == known;
                if incoming <= known && !resync {
                    // R12: not newer than what this replica knows.
                    fired(R12);
                    return false;
                }
                r.clone()
            }
            None => Replica {
                partition: ps.clone(),
                log: Log::new(),
                high_watermark: 0,
                role: Role::Recovering,
            },
        };
        let mut r = replica;
        let same_leadership =
            ps.leader_epoch == r.leader_epoch() && !matches!(r.role, Role::Recovering);
        if same_leadership {
            // R13: the ISR changed under the same leader. The controller's state is
            // authoritative: it settles any ISR change this leader had pending.
            fired(R13);
            if let Role::Leader(l) = &mut r.role {
                // A follower this leader was adding that the controller's ISR still lacks was
                // refused (perhaps fenced, or an earlier incarnation): forget its progress, so
                // that only a fresh fetch proposes it again.
                for f in l.pending_isr.iter().flat_map(|p| p.iter()) {
                    if !ps.isr.contains(f) && !r.partition.isr.contains(f) {
                        if let Some(p) = l.followers.iter_mut().find(|p| p.broker_id == *f) {
                            p.log_end_offset = None;
                            p.broker_epoch = None;
                        }
                    }
                }
                l.pending_isr = None;
            }
            r.partition = ps;
            if r.is_leader() {
                self.maybe_expand_isr_all(state.broker_epoch, &mut r, outbox);
                self.maybe_advance_high_watermark(&mut r, outbox);
            }
        } else {
            self.take_role(state.broker_epoch, &mut r, ps, outbox);
        }
        outbox.persist();
        state.to_mut().replicas.insert(tp, r);
        true
    }

    /// R14, R15: the role `ps` gives this broker in a new leader epoch.
    pub(super) fn take_role(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        ps: PartitionState,
        outbox: &mut Outbox,
    ) {
        if ps.leader == Some(self.broker_id()) {
            self.become_leader(r, ps, outbox);
        } else {
            self.become_follower(broker_epoch, r, ps, outbox);
        }
    }

    /// R14: leadership in a new epoch. The leader's epoch starts at its log end offset; it knows
    /// nothing of its followers' progress in this epoch yet.
    fn become_leader(&self, r: &mut Replica, ps: PartitionState, outbox: &mut Outbox) {
        fired(R14);
        self.abandon_requests(r, outbox);
        let me = self.broker_id();
        r.role = Role::Leader(LeaderState {
            epoch_start_offset: r.log_end_offset(),
            followers: ps
                .replicas
                .iter()
                .filter(|b| **b != me)
                .map(|b| FollowerProgress {
                    broker_id: *b,
                    log_end_offset: None,
                    broker_epoch: None,
                })
                .collect(),
            pending_isr: None,
            delayed_produces: Vec::new(),
            delayed_fetches: Vec::new(),
        });
        r.partition = ps;
        self.maybe_advance_high_watermark(r, outbox);
    }

    /// R15: follow a new leader (or none, while the partition is offline).
    fn become_follower(
        &self,
        broker_epoch: BrokerEpoch,
        r: &mut Replica,
        ps: PartitionState,
        outbox: &mut Outbox,
    ) {
        fired(R15);
        self.abandon_requests(r, outbox);
        r.partition = ps;
        r.role = Role::Offline;
        self.start_following(broker_epoch, r, outbox);
    }

    /// A replica that stops leading answers its held requests: produce requests fail with
    /// NotLeaderOrFollower, and so do consumer fetches. Held follower fetches are dropped, since
    /// the followers get LeaderAndIsr too.
    fn abandon_requests(&self, r: &mut Replica, outbox: &mut Outbox) {
        let Role::Leader(leader) = &r.role else {
            return;
        };
        let tp = &r.partition.topic_partition;
        for p in &leader.delayed_produces {
            outbox.send(
                p.client,
                p.answer(
                    tp,
                    r.partition.leader_epoch,
                    Some(ErrorCode::NotLeaderOrFollower),
                ),
            );
        }
        for f in leader
            .delayed_fetches
            .iter()
            .filter(|f| f.request.replica_id.is_none())
        {
            outbox.send(
                f.client,
                self.fetch_error(r, &f.request, ErrorCode::NotLeaderOrFollower),
            );
        }
        r.role = Role::Offline;
    }

    /// R16, R49: the controller's answer to a heartbeat, for this incarnation. Fenced means the
    /// broker was suspected while alive: it registers again at once. Otherwise the answer
    /// carries every partition changed after the metadata offset the heartbeat named, and
    /// completes registration.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_heartbeat_response(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        is_fenced: bool,
        offsets: (Option<MetadataOffset>, MetadataOffset),
        partitions: &[PartitionState],
        outbox: &mut Outbox,
    ) {
        if !self.admit_controller_message(state, controller_epoch, Some(broker_epoch), outbox) {
            return;
        }
        fired(R16);
        match (is_fenced, state.registered) {
            (true, true) => {
                state.to_mut().registered = false;
                outbox.send(self.config.cluster.controller, self.heartbeat(state));
            }
            (true, false) => {}
            (false, registered) => {
                self.apply_metadata_delta(state, offsets, partitions, outbox);
                if !registered {
                    state.to_mut().registered = true;
                }
            }
        }
    }

    /// R74: with a KRaft quorum, a controller message of the newest controller epoch this
    /// broker knows comes from the active controller: follow it. Hearing from the followed
    /// controller is an answer to its heartbeats.
    pub(super) fn follow_controller(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        controller_epoch: ControllerEpoch,
    ) {
        let cluster = &self.config.cluster;
        if !cluster.has_controller_quorum() || controller_epoch < state.controller_epoch {
            return;
        }
        if src != state.controller && cluster.controllers.contains(&src) {
            fired(R74);
            state.to_mut().controller = src;
        }
        if src == state.controller && state.heartbeats_unanswered > 0 {
            state.to_mut().heartbeats_unanswered = 0;
        }
    }

    /// R74: a controller that is not the active one names the one it knows: heartbeat to it
    /// now. Without a name the broker stays, and moves on once its heartbeats go unanswered.
    pub(super) fn on_not_controller(
        &self,
        state: &mut Cow<BrokerState>,
        src: Id,
        leader: Option<Id>,
        outbox: &mut Outbox,
    ) {
        let cluster = &self.config.cluster;
        let named = leader.filter(|l| cluster.controllers.contains(l) && *l != state.controller);
        if !cluster.controllers.contains(&src) || src != state.controller {
            return;
        }
        if let Some(leader) = named {
            fired(R74);
            let s = state.to_mut();
            s.controller = leader;
            s.heartbeats_unanswered = 1;
            outbox.send(cluster.controller, self.heartbeat(state));
        }
    }

    /// R74: a heartbeat goes out; after [`HEARTBEATS_UNANSWERED_MAX`] without an answer the
    /// followed controller is presumed gone, and the broker tries the next one.
    pub(super) fn count_unanswered_heartbeat(&self, state: &mut Cow<BrokerState>) {
        let controllers = &self.config.cluster.controllers;
        let s = state.to_mut();
        if s.heartbeats_unanswered >= HEARTBEATS_UNANSWERED_MAX {
            fired(R74);
            let at = controllers.iter().position(|c| *c == s.controller);
            let next = at.map_or(0, |i| (i + 1) % controllers.len());
            s.controller = controllers[next];
            s.heartbeats_unanswered = 0;
        }
        s.heartbeats_unanswered = s.heartbeats_unanswered.saturating_add(1);
    }
}

/// R74: heartbeats a broker sends to a controller of a quorum without an answer before it
/// tries the next controller.
pub const HEARTBEATS_UNANSWERED_MAX: u8 = 2;

/// R12 for a partition this broker does not replicate: keep the newer state.
fn apply_metadata(state: &mut Cow<BrokerState>, ps: PartitionState) {
    fired(R12);
    let newer = state.metadata.get(&ps.topic_partition).is_none_or(|known| {
        (ps.leader_epoch, ps.partition_epoch) > (known.leader_epoch, known.partition_epoch)
    });
    if newer {
        state
            .to_mut()
            .metadata
            .insert(ps.topic_partition.clone(), ps);
    }
}
