//! A broker taking the controller's orders: LeaderAndIsr, UpdateMetadata, heartbeat responses.
//! Spec: rules R11–R16.

use super::*;

impl Broker {
    /// R11–R15.
    pub(super) fn on_leader_and_isr(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        partitions: std::sync::Arc<[PartitionState]>,
        outbox: &mut Outbox,
    ) {
        if controller_epoch < state.controller_epoch {
            // R11: a request from an older controller epoch is rejected.
            return;
        }
        if broker_epoch != state.broker_epoch {
            // R11: KIP-380, a request meant for an earlier incarnation of this broker.
            return;
        }
        if controller_epoch > state.controller_epoch {
            let s = state.to_mut();
            s.controller_epoch = controller_epoch;
            outbox.persist();
        }
        for ps in partitions.iter().cloned() {
            self.apply_partition_state(state, ps, outbox);
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
                Msg::ProduceResponse(crate::msg::ProduceResponse {
                    topic_partition: tp.clone(),
                    batch: p.batch,
                    attempt: p.attempt,
                    leader_epoch: r.partition.leader_epoch,
                    result: Err(ErrorCode::NotLeaderOrFollower),
                }),
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

    /// UpdateMetadata: metadata for partitions this broker does not replicate.
    pub(super) fn on_update_metadata(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        partitions: std::sync::Arc<[PartitionState]>,
    ) {
        if controller_epoch < state.controller_epoch || broker_epoch != state.broker_epoch {
            return; // R11
        }
        for ps in partitions.iter().cloned() {
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
    }

    /// R16: the controller tells this incarnation whether it is fenced. A fenced broker that is
    /// alive registers again at once.
    pub(super) fn on_heartbeat_response(
        &self,
        state: &mut Cow<BrokerState>,
        controller_epoch: ControllerEpoch,
        broker_epoch: BrokerEpoch,
        is_fenced: bool,
        outbox: &mut Outbox,
    ) {
        if broker_epoch != state.broker_epoch || controller_epoch < state.controller_epoch {
            return; // For an older incarnation, or from an older controller.
        }
        if is_fenced {
            if state.registered {
                state.to_mut().registered = false;
                outbox.send(self.config.cluster.controller, self.heartbeat(state));
            }
        } else if !state.registered {
            state.to_mut().registered = true;
        }
    }
}
