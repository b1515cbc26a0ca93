//! What "recovered" means (spec section 12, L1–L7), in one place for the simulator, which waits
//! for it once its world has healed, and for the checker's L0 RecoveryReachable, which asks
//! that it can still be reached from every state within the bounds.
//!
//! Each condition is a function that lists what keeps it from holding, lazily: the checker
//! only asks whether the list is empty, on every state, and the simulator formats it when a run
//! does not recover. `dead_for_good` names the brokers the simulator killed for good (none in
//! the checker): their replicas are not waited for.

use crate::model::{controller, State, WatermarkModel};
use watermark_model::consumer::MemberStep;
use watermark_model::group::GroupEvent;
use watermark_model::producer::Ack;
use watermark_model::*;

/// L1: the controller's partitions that have no leader.
pub fn offline(state: &State) -> impl Iterator<Item = &PartitionState> + '_ {
    controller(state)
        .into_iter()
        .flat_map(|c| c.partitions.values())
        .filter(|p| p.leader.is_none())
}

/// L2: the controller's partitions with a replica outside the ISR that is not `excused`: the
/// simulator excuses the replicas of brokers dead for good, the checker those that only the
/// missing fetch expiry keeps out ([`awaits_fetch_expiry`]).
pub fn short_isr<'a>(
    state: &'a State,
    excused: &'a dyn Fn(&PartitionState, BrokerId) -> bool,
) -> impl Iterator<Item = &'a PartitionState> + 'a {
    controller(state)
        .into_iter()
        .flat_map(|c| c.partitions.values())
        .filter(move |p| {
            p.replicas
                .iter()
                .any(|b| !p.isr.contains(b) && !excused(p, *b))
        })
}

/// Whether `follower`'s replica of `p` is kept out of the ISR only by the missing fetch expiry:
/// L2 as the checker judges it counts such a replica as back in the ISR, since nothing but
/// `replica.fetch.wait.max.ms` keeps it out. The model has no such timer: a leader holds a
/// follower's fetch until there is something to return (R26, `FetchRequest::high_watermark`),
/// so a follower that caught up while its broker was fenced, whose ISR expansion the controller
/// refused (R8, KIP-841), is not asked about again until a record arrives; in Kafka the held
/// fetch expires, the follower fetches again, and the leader proposes it again. So the replica
/// counts as in the ISR when its leader is running, has no AlterPartition pending, and holds its
/// fetch at the leader's log end offset.
fn awaits_fetch_expiry(state: &State, p: &PartitionState, follower: BrokerId) -> bool {
    let Some(leader) = p.leader else {
        return false;
    };
    let i = leader as usize;
    let replica = state.actor_states[i]
        .as_broker()
        .and_then(|b| b.replicas.get(&p.topic_partition));
    match replica.map(|r| (&r.role, r.log_end_offset())) {
        Some((Role::Leader(l), log_end_offset)) if !state.crashed[i] => {
            l.pending_isr.is_none()
                && l.delayed_fetches.iter().any(|f| {
                    f.request.replica_id == Some(follower)
                        && f.request.fetch_offset == log_end_offset
                })
        }
        _ => false,
    }
}

/// A broker whose metadata for a partition is not the controller's (L3).
pub struct StaleMetadata<'a> {
    pub broker: usize,
    pub controllers: &'a PartitionState,
    pub held: Option<&'a PartitionState>,
    pub recovering: bool,
}

/// L3: for each broker not dead for good, each partition it holds otherwise than the
/// controller, or whose replica is still Recovering.
pub fn stale_metadata<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
    dead_for_good: &'a dyn Fn(usize) -> bool,
) -> impl Iterator<Item = StaleMetadata<'a>> + 'a {
    let c = controller(state);
    model
        .broker_indices()
        .filter(move |i| !dead_for_good(*i))
        .filter_map(move |i| Some((i, state.actor_states[i].as_broker()?)))
        .flat_map(move |(i, b)| {
            c.into_iter()
                .flat_map(|c| c.partitions.values())
                .filter_map(move |p| {
                    let held = b.partition_state(&p.topic_partition);
                    let recovering = b
                        .replicas
                        .get(&p.topic_partition)
                        .is_some_and(|r| matches!(r.role, Role::Recovering));
                    (held != Some(p) || recovering).then_some(StaleMetadata {
                        broker: i,
                        controllers: p,
                        held,
                        recovering,
                    })
                })
        })
}

/// L3 as the checker judges it: stale only where it matters before a pull. Each broker must
/// know every partition's leader and leader epoch as the controller has them (elections are
/// pushed, R50), the leader must hold its partition exactly as the controller has it (it learns
/// its ISR changes from AlterPartition's answers, R7, R8), and no replica may be Recovering. The
/// other brokers learn an ISR change only with their next heartbeat (R49), as Kafka propagated
/// them lazily, and the checker bounds those pulls (B7): waiting for them would make every
/// ISR change a dead end once the pulls are spent.
///
/// On a network that loses controller messages, a broker that missed a push (its metadata offset
/// is behind the controller's) learns what it missed only by a pull; once B7's pulls are spent,
/// that pull lies beyond the bounds, so such a broker's staleness is not held against L0.
pub fn stale_leadership<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = StaleMetadata<'a>> + 'a {
    let pulls_spent = u32::from(state.history.metadata_pulls) >= model.knobs.metadata_pulls;
    let controller_offset = controller(state).map(|c| c.metadata_offset);
    stale_metadata(model, state, &|_| false).filter(move |s| {
        let leads = s.controllers.leader == Some(s.broker as BrokerId);
        let leadership = |p: &PartitionState| (p.leader, p.leader_epoch);
        let behind = state.actor_states[s.broker]
            .as_broker()
            .is_some_and(|b| b.metadata_offset < controller_offset);
        let repaired_beyond_bounds = model.knobs.network.lossy && pulls_spent && behind;
        !repaired_beyond_bounds
            && (s.recovering || leads || s.held.map(leadership) != Some(leadership(s.controllers)))
    })
}

/// The partition a consumer reads.
pub fn consumer_partition(model: &WatermarkModel, index: usize) -> Option<&TopicPartition> {
    match model.node(index) {
        Node::Consumer(c) => Some(&c.config.topic_partition),
        _ => None,
    }
}

/// L4: the acknowledged records no consumer of their partition has read at their offset; but
/// for one below the position a group member resumed at with nothing committed
/// (`auto.offset.reset=latest` starts at the high watermark, and skips what is below).
pub fn unread<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = &'a Ack> + 'a {
    let history = &state.history;
    let skipped_by_reset = move |ack: &Ack| {
        model.consumer_indices().any(|ci| {
            consumer_partition(model, ci) == Some(&ack.topic_partition)
                && history.group_events(ci).iter().any(|e| {
                    matches!(e, GroupEvent::Resumed { committed: None, position, .. }
                        if ack.offset < *position)
                })
        })
    };
    let read = move |ack: &Ack| {
        model.consumer_indices().any(|ci| {
            consumer_partition(model, ci) == Some(&ack.topic_partition)
                && history
                    .consumed(ci)
                    .iter()
                    .any(|r| r.offset == ack.offset && r.entry.record.value == ack.value)
        })
    };
    model
        .producer_indices()
        .flat_map(move |p| history.acked(p).iter())
        .filter(move |ack| !skipped_by_reset(ack) && !read(ack))
}

/// L5: the producers with a record not yet sent, or a batch not yet answered.
pub fn busy_producers<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = usize> + 'a {
    model.producer_indices().filter(move |p| {
        let records = match model.node(*p) {
            Node::Producer(pr) => pr.config.records.len(),
            _ => 0,
        };
        state.actor_states[*p]
            .as_producer()
            .is_some_and(|s| (s.next_record as usize) < records || !s.in_flight.is_empty())
    })
}

/// L6: the group members not reading with their position committed: not yet through every
/// step of R61 to Consuming, or with a position their coordinator has not acknowledged (R62).
pub fn uncommitted_members<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = usize> + 'a {
    model.consumer_indices().filter(move |ci| {
        state.actor_states[*ci].as_consumer().is_some_and(|s| {
            s.member
                .as_ref()
                .is_some_and(|m| m.step != MemberStep::Consuming || m.committed != s.position)
        })
    })
}

/// L7: the consumers that do not know their partition's leader and leader epoch as the
/// controller has them.
pub fn astray_consumers<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = usize> + 'a {
    model.consumer_indices().filter(move |ci| {
        let known = state.actor_states[*ci].as_consumer().map(|s| s.leader);
        let p = controller(state)
            .zip(consumer_partition(model, *ci))
            .and_then(|(c, tp)| c.partitions.get(tp));
        match (known, p) {
            (Some(known), Some(p)) => known != p.leader.map(|l| (l, p.leader_epoch)),
            _ => false,
        }
    })
}

/// The checker's recovery of the cluster (L0's condition): every broker and the controller
/// running (none is lost for good there: crashes are bounded, and a crashed process may always
/// restart), and L1–L3 with L2 excusing [`awaits_fetch_expiry`] and L3 as [`stale_leadership`]
/// judges it.
pub fn cluster_recovered(model: &WatermarkModel, state: &State) -> bool {
    let mut servers = std::iter::once(crate::model::CONTROLLER_INDEX).chain(model.broker_indices());
    let awaits_fetch_expiry = |p: &PartitionState, b| awaits_fetch_expiry(state, p, b);
    servers.all(|i| !state.crashed[i])
        && controller(state).is_some()
        && offline(state).next().is_none()
        && short_isr(state, &awaits_fetch_expiry).next().is_none()
        && stale_leadership(model, state).next().is_none()
}
