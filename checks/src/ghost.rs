//! Ghost history: what the properties need to know about the past. Spec: "Invariants".
//!
//! It is updated on every transition from the state before, the action and the state after, so
//! it sees what no single state shows: which records were ever committed, which replica appended
//! from a stale leader epoch, which step truncated a log. It is part of the hashed state, so it
//! holds only what properties read: facts that are monotone (committed records, sticky
//! violations) and the events of the last step, which are cleared on the next.

use crate::hashed::Hashed;
use crate::model::{
    alive_in, broker, controller, Action, State, WatermarkModel, CONTROLLER_INDEX, POWER_LOSS,
};
use stateright::actor::{ActorModelAction, Envelope, Id, Network};
use std::fmt;
use std::sync::Arc;
use watermark_model::broker::{FollowerState, Role};
use watermark_model::consumer::{Consumed, Member, MemberStep};
use watermark_model::group::{group_view, GroupEvent, GroupRecord};
use watermark_model::producer::Ack;
use watermark_model::*;

/// Things that happened in the last step (bit flags).
pub mod event {
    /// A replica's log lost entries.
    pub const TRUNCATED: u16 = 1 << 0;
    /// The controller added a replica back to an ISR.
    pub const ISR_EXPANDED: u16 = 1 << 1;
    /// A leader received a produce request for records its log already holds.
    pub const DUPLICATE_PRODUCE: u16 = 1 << 2;
    /// A replica truncated records that the partition's current leader does not hold at those
    /// offsets: a divergent tail. Observed only when a property asks for it (the matrix), so
    /// that it does not split the states of ordinary checks.
    pub const DIVERGENT_TAIL_TRUNCATED: u16 = 1 << 3;
    /// A registered broker that lost a LeaderAndIsr or UpdateMetadata applied, from a heartbeat
    /// response (a pull, R49), a partition state newer than the one it held: the repair.
    pub const METADATA_REPAIRED: u16 = 1 << 4;
    /// A follower finished its epoch lookup (R35: it fetches next) holding an entry other than
    /// the one its leader holds at that offset: a divergence the lookup should have cut
    /// (KAFKA-6361). Observed only when the matrix asks for it.
    pub const LOOKUP_LEFT_DIVERGENCE: u16 = 1 << 5;
    /// A broker crashed with a HWM checkpoint older than the HWM it had (a stale checkpoint,
    /// `--stale-hwm-checkpoints`). Observed only when the matrix asks for it.
    pub const HWM_CHECKPOINT_LAGGED: u16 = 1 << 6;
    /// A follower fetch naming a current leader epoch other than its leader's reached that
    /// leader (M7). Observed only when the matrix asks for it.
    pub const FETCH_FROM_OTHER_EPOCH: u16 = 1 << 7;
    /// ... and the leader took it: it recorded the follower's progress or held the fetch, where
    /// KIP-320 refuses it (M8, R23). Observed only when the matrix asks for it.
    pub const FETCH_FROM_OTHER_EPOCH_TAKEN: u16 = 1 << 8;
    /// A leader appended an acks=all batch while its ISR was exactly min.insync.replicas (M9):
    /// the smallest ISR that may take it (R18). Observed only when the matrix asks for it.
    pub const APPEND_AT_MIN_ISR: u16 = 1 << 9;
    /// A leader applying an ISR change from the controller (R13) asked, in the same step, to add
    /// a follower that had caught up while the change was in flight (R26's sweep over the
    /// followers at its log end, M10). Observed only when the matrix asks for it.
    pub const ISR_REJOIN_ON_ISR_CHANGE: u16 = 1 << 10;
    /// A leader answered a follower's epoch lookup (OffsetsForLeaderEpoch, or a fetch's
    /// divergence check) with undefined for an epoch no newer than its own (M11): its epoch
    /// cache lacked its own epoch (KAFKA-7415, R34), and the follower falls back to its HWM.
    /// Observed only when the matrix asks for it.
    pub const EPOCH_LOOKUP_UNDEFINED: u16 = 1 << 11;
}

/// Invariants that are about transitions, latched once broken (bit flags).
pub mod violation {
    /// I5: a replica appended records from a leader epoch older than its own.
    pub const APPEND_FROM_STALE_EPOCH: u16 = 1 << 0;
    /// I6: a broker applied a controller request from an older controller epoch.
    pub const STALE_CONTROLLER_REQUEST_APPLIED: u16 = 1 << 1;
    /// I8: a leader exposed, below its high watermark, a record other than one committed
    /// before at that offset.
    pub const COMMITTED_RECORD_CHANGED: u16 = 1 << 2;
    /// I14: a leader appended an `acks=all` batch while its ISR was smaller than
    /// min.insync.replicas.
    pub const APPENDED_UNDER_MIN_ISR: u16 = 1 << 3;
    /// I26: a consumer read a record at another offset than its next: not where its incarnation
    /// starts or its member resumed, nor one past its last read; or a member read before it
    /// resumed.
    pub const READ_OUT_OF_POSITION: u16 = 1 << 4;
    /// I29: a coordinator wrote a group record its log's generations do not allow (R58, R59): a
    /// generation not above every generation the log held for the member, or an offset in
    /// another generation than the log's latest (a zombie's commit).
    pub const GROUP_WRITE_UNFENCED: u16 = 1 << 5;
    /// I30: a member was told its commit was acknowledged before the commit's offset record was
    /// committed (R59's answer waits for the HWM, R28).
    pub const COMMIT_ACKNOWLEDGED_UNCOMMITTED: u16 = 1 << 6;
    /// I31: a member resumed (took a position from its group's commit or from
    /// `auto.offset.reset`) other than in answer to the OffsetFetch or ListOffsets it was
    /// waiting on after joining (R61): a stale answer moved a member that had moved on.
    pub const RESUMED_OUT_OF_STEP: u16 = 1 << 7;
    /// I32: a member stopped consuming (went back to an earlier step of R61) in a step that
    /// was neither its coordinator's error answer to its commit nor a request timeout with a
    /// group request of its own unanswered.
    pub const LEFT_CONSUMING_UNTOLD: u16 = 1 << 8;
    /// I36: a leader asked to drop from its ISR a follower whose last fetch in this leader epoch
    /// was at the leader's log end offset (R29: a caught-up follower has not lagged).
    pub const CAUGHT_UP_FOLLOWER_DROPPED: u16 = 1 << 9;
}

/// A record once below a leader's high watermark.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Committed {
    pub entry: LogEntry,
    /// The leader epoch in which it was first seen committed.
    pub leader_epoch: LeaderEpoch,
}

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    pub violations: u16,
    pub events: u16,
    /// ISR shrinks leaders have asked for (bound B6).
    pub isr_shrinks: u8,
    /// Live brokers the controller has fenced in the incarnation they are running (bound B3).
    pub false_suspicions: u8,
    /// Heartbeats registered brokers sent: metadata pulls (bound B7).
    pub metadata_pulls: u8,
    /// Crashes of brokers, in all, and of the controller (bound B2). Counted here, not read
    /// from the epochs a recovery bumps, so that a protocol that forgot to bump one is still
    /// bounded (and its forgetting caught, not left to run forever).
    pub broker_crashes: u8,
    pub controller_crashes: u8,
    /// Crashes of consumers, in all (bound B4).
    pub consumer_crashes: u8,
    /// Brokers (bit = broker id) to whose running incarnation the network lost a LeaderAndIsr or
    /// UpdateMetadata (S16). Kept only when S16 is checked.
    pub pushes_lost: u16,
    /// What grows with the run: shared with the parent state's ghost (and its hash with it)
    /// until a step changes it (`histories_mut`).
    histories: Arc<Hashed<Histories>>,
}

/// The ghost's lists, which most steps leave as they were.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Histories {
    /// Per partition, in partition order: every offset ever below some leader's high watermark.
    pub committed: Vec<Arc<Vec<Committed>>>,
    /// Per broker (index = broker id), the newest controller epoch of any controller message
    /// delivered to it, in any incarnation (I6). Kept only when I6 is checked, so that other
    /// checks keep their state counts.
    pub controller_epochs_seen: Vec<ControllerEpoch>,
    /// Per producer (index = actor index; none past the last producer that has one): the
    /// acknowledgements it handed its application (R38), in order.
    pub acked: Vec<Arc<Vec<Ack>>>,
    /// Per consumer (index = actor index), likewise: the records it read (R42), in order.
    pub consumed: Vec<Arc<Vec<Consumed>>>,
    /// Per consumer (index = actor index), likewise: where it resumed and which commits were
    /// acknowledged to it (R61, R62), in order, across its incarnations.
    pub group_events: Vec<Arc<Vec<GroupEvent>>>,
    /// Per consumer (index = actor index), the offset its next read must be at (I26): 0 when an
    /// incarnation without a group starts, where a member resumed (R61), then one past each
    /// read (R42). `None` for a member that has not resumed in this incarnation: it may read
    /// nothing yet. It is the consumer's position whenever the consumer may read, so it splits
    /// no states.
    pub next_read: Vec<Option<Offset>>,
}

impl Ghost {
    /// A ghost with nothing counted yet and these lists.
    pub fn with_histories(histories: Histories) -> Ghost {
        Ghost {
            histories: Arc::new(Hashed::new(histories)),
            ..Ghost::default()
        }
    }

    /// The lists, to read.
    pub fn histories(&self) -> &Histories {
        &self.histories
    }

    /// The lists, to change: copied first if the parent state's ghost still shares them.
    pub fn histories_mut(&mut self) -> &mut Histories {
        Arc::make_mut(&mut self.histories).get_mut()
    }

    /// The acknowledgements actor `index` handed its application.
    pub fn acked(&self, index: usize) -> &[Ack] {
        self.histories
            .acked
            .get(index)
            .map_or(&[], |a| a.as_slice())
    }

    /// The records actor `index` handed its application.
    pub fn consumed(&self, index: usize) -> &[Consumed] {
        self.histories
            .consumed
            .get(index)
            .map_or(&[], |c| c.as_slice())
    }

    /// The group events actor `index` handed its application.
    pub fn group_events(&self, index: usize) -> &[GroupEvent] {
        self.histories
            .group_events
            .get(index)
            .map_or(&[], |c| c.as_slice())
    }

    /// Folds in what a client sent its application (`msg`, from actor `index`): the ghost is
    /// where a client's history lives, not its state.
    pub fn record_delivery(&mut self, index: usize, msg: &Msg) {
        fn push<T: Clone>(lists: &mut Vec<Arc<Vec<T>>>, index: usize, item: T) {
            if lists.len() <= index {
                lists.resize_with(index + 1, Default::default);
            }
            Arc::make_mut(&mut lists[index]).push(item);
        }
        match msg {
            Msg::RecordAcknowledged(ack) => {
                push(&mut self.histories_mut().acked, index, ack.clone())
            }
            Msg::RecordConsumed(record) => {
                self.observe_read(index, record.offset);
                push(&mut self.histories_mut().consumed, index, record.clone())
            }
            Msg::Group(event) => {
                if let GroupEvent::Resumed { position, .. } = event {
                    self.set_next_read(index, Some(*position));
                }
                push(&mut self.histories_mut().group_events, index, event.clone())
            }
            _ => {}
        }
    }

    /// I26: consumer `index` read `offset`, which must be its next.
    fn observe_read(&mut self, index: usize, offset: Offset) {
        match self.histories.next_read.get(index).copied().flatten() {
            Some(next) if next == offset => self.set_next_read(index, Some(offset + 1)),
            _ => self.violations |= violation::READ_OUT_OF_POSITION,
        }
    }

    fn set_next_read(&mut self, index: usize, next: Option<Offset>) {
        let next_read = &mut self.histories_mut().next_read;
        if next_read.len() <= index {
            next_read.resize(index + 1, None);
        }
        next_read[index] = next;
    }

    /// Where a new incarnation of consumer `index` reads first (I26): at 0 without a group (the
    /// model's consumers start there), nowhere before it resumes with one.
    fn start_incarnation(&mut self, model: &WatermarkModel, index: usize) {
        let start = (!model.knobs.group).then_some(0);
        self.set_next_read(index, start);
    }

    /// What client `index` handed its application, as its state used to show it: ` | acked
    /// t-0@0:a …` for a producer, ` | read 0@0:a …` (offset, leader epoch, value) for a consumer.
    pub fn describe_deliveries(&self, index: usize) -> String {
        let mut s = String::new();
        let acked = self.acked(index);
        if !acked.is_empty() {
            s.push_str(" | acked");
            for a in acked {
                s.push_str(&format!(
                    " {:?}@{}:{:?}",
                    a.topic_partition, a.offset, a.value
                ));
            }
        }
        for e in self.group_events(index) {
            match e {
                GroupEvent::Resumed {
                    committed,
                    position,
                    ..
                } => match committed {
                    Some(c) => s.push_str(&format!(" | resumed at commit {c}")),
                    None => s.push_str(&format!(" | nothing committed: reset to {position}")),
                },
                GroupEvent::Committed { offset, .. } => {
                    s.push_str(&format!(" | commit {offset} acknowledged"))
                }
            }
        }
        let consumed = self.consumed(index);
        if !consumed.is_empty() {
            s.push_str(" | read");
            for c in consumed {
                let e = &c.entry;
                s.push_str(&format!(
                    " {}@{}:{:?}",
                    c.offset, e.leader_epoch, e.record.value
                ));
            }
        }
        s
    }

    pub fn has_event(&self, e: u16) -> bool {
        self.events & e != 0
    }
    pub fn has_violation(&self, v: u16) -> bool {
        self.violations & v != 0
    }
}

/// `ActorModel::record_msg_out`: a message to the application is a delivery, folded into the
/// ghost in the order it was sent. (The model then takes it off the network.)
pub fn record_msg_out(_: &(), ghost: &Ghost, envelope: Envelope<&Msg>) -> Option<Ghost> {
    if envelope.dst != application() {
        return None;
    }
    let mut ghost = ghost.clone();
    ghost.record_delivery(usize::from(envelope.src), envelope.msg);
    Some(ghost)
}

impl fmt::Debug for Ghost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("committed")?;
        for (p, records) in self.histories.committed.iter().enumerate() {
            write!(f, " p{p}[")?;
            for (o, c) in records.iter().enumerate() {
                if o > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{o}@{}:{:?}", c.entry.leader_epoch, c.entry.record.value)?;
            }
            f.write_str("]")?;
        }
        if self.violations != 0 {
            write!(f, " violations {:#b}", self.violations)?;
        }
        if self.events != 0 {
            write!(f, " events {:#b}", self.events)?;
        }
        Ok(())
    }
}

/// Sets the ghost of `next`, reached from `last` by `action` (both `None` for an initial
/// state). `next` holds the history of `last` and what the step delivered to the application;
/// it is moved into the new ghost, not copied.
pub fn observe(
    model: &WatermarkModel,
    last: Option<&State>,
    action: Option<&ActorModelAction<Msg, Timer, PowerLoss>>,
    next: &mut State,
) {
    let carried = std::mem::take(&mut next.history);
    next.history = compute(model, last, action, next, carried);
}

fn compute(
    model: &WatermarkModel,
    last: Option<&State>,
    action: Option<&ActorModelAction<Msg, Timer, PowerLoss>>,
    next: &State,
    carried: Ghost,
) -> Ghost {
    let mut ghost = match last {
        Some(_) => Ghost {
            events: 0,
            ..carried
        },
        None => Ghost::with_histories(Histories {
            committed: model
                .topic_partitions()
                .iter()
                .map(|_| Arc::new(Vec::new()))
                .collect(),
            controller_epochs_seen: if model.observe_controller_epochs() {
                vec![0; model.knobs.brokers as usize + 1]
            } else {
                Vec::new()
            },
            ..Histories::default()
        }),
    };

    // Committed records: everything below a (live) leader's high watermark. A broker that was
    // live and unchanged in the last step was seen then: its committed offsets are recorded (or
    // its violation latched), and records committed since lie above its high watermark.
    for i in model.broker_indices() {
        if next.crashed[i] {
            continue;
        }
        let unchanged = last.is_some_and(|l| {
            !l.crashed[i] && Arc::ptr_eq(&l.actor_states[i], &next.actor_states[i])
        });
        if unchanged {
            continue;
        }
        let Some(b) = broker(next, i) else { continue };
        for r in b.replicas.values() {
            // The model's partitions; a real cluster's traces may hold others.
            let Some(p) = model.partition_index(&r.partition.topic_partition) else {
                continue;
            };
            if !r.is_leader() || p >= ghost.histories.committed.len() {
                continue;
            }
            for (offset, entry) in r.log.entries().take(r.high_watermark as usize).enumerate() {
                // Beyond the log end, I1 is violated; that property reports it.
                match ghost.histories.committed[p].get(offset) {
                    Some(c) if c.entry != *entry => {
                        ghost.violations |= violation::COMMITTED_RECORD_CHANGED;
                    }
                    Some(_) => {}
                    None => {
                        Arc::make_mut(&mut ghost.histories_mut().committed[p]).push(Committed {
                            entry: entry.clone(),
                            leader_epoch: r.leader_epoch(),
                        })
                    }
                }
            }
        }
    }

    // A consumer's incarnation starts (I26).
    match action {
        None => {
            for i in model.consumer_indices() {
                ghost.start_incarnation(model, i);
            }
        }
        Some(ActorModelAction::Recover(id))
            if model.consumer_indices().contains(&usize::from(*id)) =>
        {
            ghost.start_incarnation(model, usize::from(*id))
        }
        _ => {}
    }

    let Some(last) = last else {
        return ghost;
    };

    // Truncations.
    for i in model.broker_indices() {
        let (Some(before), Some(after)) = (broker(last, i), broker(next, i)) else {
            continue;
        };
        if std::ptr::eq(before, after) {
            continue;
        }
        for (tp, r) in &before.replicas {
            let Some(now) = after.replicas.get(tp) else {
                continue;
            };
            let kept = r
                .log
                .entries()
                .zip(now.log.entries())
                .take_while(|(a, b)| a == b)
                .count() as Offset;
            if kept < r.log_end_offset() {
                ghost.events |= event::TRUNCATED;
                if model.observe_divergent_truncation && divergent(next, tp, &r.log, kept) {
                    ghost.events |= event::DIVERGENT_TAIL_TRUNCATED;
                }
            }
        }
    }

    // ISR expansion at the controller, and its fencing of live brokers: only a step that
    // replaced the controller's state can do either.
    let controller_step = match (controller(last), controller(next)) {
        (Some(before), Some(after)) if !std::ptr::eq(before, after) => Some((before, after)),
        _ => None,
    };
    if let Some((before, after)) = controller_step {
        let expanded = after.partitions.values().any(|p| {
            before
                .partitions
                .get(&p.topic_partition)
                .is_some_and(|q| p.isr.iter().any(|b| !q.isr.contains(b)))
        });
        if expanded {
            ghost.events |= event::ISR_EXPANDED;
        }
    }

    // The controller fencing a broker that is alive, in the incarnation it fences.
    if let Some((before, after)) = controller_step {
        let falsely_fenced = after.brokers.iter().any(|(b, r)| {
            r.fenced
                && before.brokers.iter().any(|(c, q)| c == b && !q.fenced)
                && alive_in(next, *b, r.broker_epoch)
        });
        if falsely_fenced {
            ghost.false_suspicions = ghost.false_suspicions.saturating_add(1);
        }
    }

    // M6: a crash that left a HWM checkpoint older than the HWM the broker had.
    if let Some(ActorModelAction::SelectRandom { actor, random, .. }) = action {
        let i = usize::from(*actor);
        let lagged = model.observe_stale_checkpoints
            && random.log_end_offset == Offset::MAX
            && match (broker(last, i), next.actor_storages[i].as_deref()) {
                (Some(b), Some(Storage::Broker(s))) => b.replicas.iter().any(|(tp, r)| {
                    s.replicas
                        .get(tp)
                        .is_some_and(|saved| saved.high_watermark < r.high_watermark)
                }),
                _ => false,
            };
        if lagged {
            ghost.events |= event::HWM_CHECKPOINT_LAGGED;
        }
    }

    // A crash, or a power loss (B2).
    let crashed = match action {
        Some(ActorModelAction::Crash(id)) => Some(usize::from(*id)),
        Some(ActorModelAction::SelectRandom { actor, key, .. }) if key == POWER_LOSS => {
            Some(usize::from(*actor))
        }
        _ => None,
    };
    match crashed {
        Some(CONTROLLER_INDEX) => {
            ghost.controller_crashes = ghost.controller_crashes.saturating_add(1)
        }
        Some(i) if model.consumer_indices().contains(&i) => {
            ghost.consumer_crashes = ghost.consumer_crashes.saturating_add(1)
        }
        Some(_) => ghost.broker_crashes = ghost.broker_crashes.saturating_add(1),
        None => {}
    }

    // A leader asking to drop lagging followers from the ISR.
    if let Some(ActorModelAction::Timeout(id, Timer::IsrShrink)) = action {
        ghost.isr_shrinks = ghost.isr_shrinks.saturating_add(1);
        let i = usize::from(*id);
        if let (Some(before), Some(after)) = (broker(last, i), broker(next, i)) {
            if drops_caught_up_follower(before, after) {
                ghost.violations |= violation::CAUGHT_UP_FOLLOWER_DROPPED;
            }
        }
    }

    // A registered broker's heartbeat: a metadata pull (B7).
    if let Some(ActorModelAction::Timeout(id, Timer::Heartbeat)) = action {
        if broker(last, usize::from(*id)).is_some_and(|b| b.registered) {
            ghost.metadata_pulls = ghost.metadata_pulls.saturating_add(1);
        }
    }

    // A push lost on its way to a broker's running incarnation (S16).
    if let Some(ActorModelAction::Drop(envelope)) = action {
        let index = usize::from(envelope.dst);
        let to_running = match &envelope.msg {
            Msg::LeaderAndIsr { broker_epoch, .. } | Msg::UpdateMetadata { broker_epoch, .. } => {
                alive_in(last, index as BrokerId, *broker_epoch)
            }
            _ => false,
        };
        if to_running && model.observe_lost_pushes() {
            ghost.pushes_lost |= 1 << index;
        }
    }

    // Each member's step: I30, a commit acknowledged only once committed, and I31, a resume only
    // from the step that waits for it (the group events it handed its application); I32, reading
    // left only when told to.
    for i in model.consumer_indices() {
        let seen = last.history.group_events(i).len();
        let events = ghost.group_events(i);
        let new = &events[seen.min(events.len())..];
        let unbacked = new.iter().any(|e| {
            matches!(e, GroupEvent::Committed { .. }) && !commit_committed(model, &ghost, e)
        });
        let resumed_out_of_step =
            new.iter().any(|e| matches!(e, GroupEvent::Resumed { .. })) && !awaits_offset(last, i);
        if unbacked {
            ghost.violations |= violation::COMMIT_ACKNOWLEDGED_UNCOMMITTED;
        }
        if resumed_out_of_step {
            ghost.violations |= violation::RESUMED_OUT_OF_STEP;
        }
        // I32: a member stops consuming only when told to (R61, R62).
        if left_consuming(last, next, i) && !told_to_rejoin(last, action, i) {
            ghost.violations |= violation::LEFT_CONSUMING_UNTOLD;
        }
    }

    // Deliveries.
    if let Some(ActorModelAction::Deliver { src, dst, msg }) = action {
        let index = usize::from(*dst);
        if let (Some(before), Some(after)) = (broker(last, index), broker(next, index)) {
            observe_delivery(&mut ghost, index, msg, before, after);
            if model.observe_lookup_divergence && lookup_left_divergence(next, msg, before, after) {
                ghost.events |= event::LOOKUP_LEFT_DIVERGENCE;
            }
            if model.observe_min_isr_appends {
                ghost.events |= append_at_min_isr(msg, before, after);
            }
            if model.observe_isr_rejoins {
                ghost.events |= isr_rejoin_on_isr_change(msg, before, after);
            }
            if model.observe_fetch_fencing {
                ghost.events |= fetch_from_other_epoch(msg, before, after);
            }
            if model.observe_undefined_lookups {
                ghost.events |= epoch_lookup_undefined(last, next, (*src, *dst), msg, before);
            }
        }
    }
    ghost
}

fn observe_delivery(
    ghost: &mut Ghost,
    index: usize,
    msg: &Msg,
    before: &BrokerState,
    after: &BrokerState,
) {
    // I6: a controller message older than one this broker was ever handed must change nothing.
    if let (Some(epoch), Some(seen)) = (
        msg.controller_epoch(),
        ghost.histories.controller_epochs_seen.get(index).copied(),
    ) {
        if epoch < seen && before != after {
            ghost.violations |= violation::STALE_CONTROLLER_REQUEST_APPLIED;
        }
        if epoch > seen {
            ghost.histories_mut().controller_epochs_seen[index] = epoch;
        }
    }
    match msg {
        Msg::FetchResponse(response) => {
            let Some(r) = before.replicas.get(&response.topic_partition) else {
                return;
            };
            if response.leader_epoch < r.leader_epoch() {
                let appended = after
                    .replicas
                    .get(&response.topic_partition)
                    .is_some_and(|now| now.log_end_offset() > r.log_end_offset());
                if appended {
                    ghost.violations |= violation::APPEND_FROM_STALE_EPOCH;
                }
            }
        }
        Msg::BrokerHeartbeatResponse { partitions, .. } if !partitions.is_empty() => {
            // S16: a pull brought a registered broker that lost a push a partition state newer
            // than its own.
            let repaired = before.registered
                && ghost.pushes_lost & (1 << index) != 0
                && after.replicas.iter().any(|(tp, r)| {
                    before.replicas.get(tp).is_none_or(|old| {
                        (r.leader_epoch(), r.partition.partition_epoch)
                            > (old.leader_epoch(), old.partition.partition_epoch)
                    })
                });
            if repaired {
                ghost.events |= event::METADATA_REPAIRED;
            }
        }
        Msg::Produce(request) => {
            let Some(r) = before.replicas.get(&request.topic_partition) else {
                return;
            };
            if !r.is_leader() || request.leader_epoch != r.leader_epoch() {
                return;
            }
            let held = request.records.iter().any(|record| {
                r.log.entries().any(|e| match record.producer {
                    Some(p) => e.record.producer == Some(p),
                    None => e.record.value == record.value,
                })
            });
            if held {
                ghost.events |= event::DUPLICATE_PRODUCE;
            }
            // I14: min.insync.replicas refuses an acks=all batch before the append (R18).
            let appended = after
                .replicas
                .get(&request.topic_partition)
                .is_some_and(|now| now.log_end_offset() > r.log_end_offset());
            if appended && request.acks == Acks::All && r.under_min_isr() {
                ghost.violations |= violation::APPENDED_UNDER_MIN_ISR;
            }
        }
        Msg::JoinGroup { .. } | Msg::OffsetCommit { .. } => {
            ghost.violations |= group_write_violations(before, after);
        }
        _ => {}
    }
}

/// I30: whether the ghost holds, among the committed records of `__consumer_offsets`, the offset
/// record of an acknowledged commit.
fn commit_committed(model: &WatermarkModel, ghost: &Ghost, acknowledged: &GroupEvent) -> bool {
    let GroupEvent::Committed {
        group,
        topic_partition,
        offset,
    } = acknowledged
    else {
        return true;
    };
    if !model.knobs.group {
        // Traces of a real run (`watermark validate`) have no model of `__consumer_offsets`.
        return true;
    }
    model
        .topic_partitions()
        .iter()
        .zip(&ghost.histories.committed)
        .filter(|(tp, _)| tp.topic.as_str() == OFFSETS_TOPIC)
        .flat_map(|(_, records)| records.iter())
        .any(|c| {
            matches!(
                GroupRecord::parse(&c.entry.record),
                Some(GroupRecord::Offset { group: g, topic_partition: t, offset: o, .. })
                    if g == *group && t == *topic_partition && o == *offset
            )
        })
}

/// I36 (R29) in one IsrShrink step of a leader (`before` to `after`): whether it asked to drop
/// from an ISR a follower that was, by the leader's own record of its last fetch in this leader
/// epoch, at the leader's log end offset. Kafka keeps such a follower in sync whatever the time
/// (`Replica.isCaughtUp`: the leader's LEO equals the follower's), and the model, which has no
/// time, drops only followers short of the log end or silent in this epoch.
fn drops_caught_up_follower(before: &BrokerState, after: &BrokerState) -> bool {
    before.replicas.iter().any(|(tp, r)| {
        let Some(leader) = r.leader_state().filter(|l| l.pending_isr.is_none()) else {
            return false;
        };
        let proposed = after
            .replicas
            .get(tp)
            .and_then(|now| now.leader_state())
            .and_then(|l| l.pending_isr.as_ref());
        proposed.is_some_and(|proposed| {
            r.partition
                .isr
                .iter()
                .filter(|f| !proposed.contains(f))
                .any(|f| {
                    leader
                        .followers
                        .iter()
                        .any(|p| p.broker_id == *f && p.log_end_offset == Some(r.log_end_offset()))
                })
        })
    })
}

/// I14 and I29 for a coordinator's writes: what the leader of a `__consumer_offsets` partition
/// appended while it handled a JoinGroup or OffsetCommit. R18 holds for them as for an acks=all
/// batch (`offsets.commit.required.acks=-1`), and each record must be one R58 or R59 allows
/// against the generations the log held before it, committed or not.
fn group_write_violations(before: &BrokerState, after: &BrokerState) -> u16 {
    let mut violations = 0;
    for (tp, r) in before.replicas.iter() {
        if tp.topic.as_str() != OFFSETS_TOPIC || !r.is_leader() {
            continue;
        }
        let Some(now) = after.replicas.get(tp) else {
            continue;
        };
        let end = r.log_end_offset();
        if now.log_end_offset() <= end {
            continue;
        }
        if r.under_min_isr() {
            violations |= violation::APPENDED_UNDER_MIN_ISR;
        }
        for entry in now.log.entries().skip(end as usize) {
            if !group_write_fenced(&r.log, end, entry) {
                violations |= violation::GROUP_WRITE_UNFENCED;
            }
        }
    }
    violations
}

/// I29: whether a group record appended at `end` of `log` is one its generations allow: a new
/// generation above every one the log holds for the member (R58), an offset in the log's latest
/// generation (R59). Anything else in the partition (a record a client produced) is not judged.
fn group_write_fenced(log: &Log, end: Offset, entry: &LogEntry) -> bool {
    match GroupRecord::parse(&entry.record) {
        Some(GroupRecord::Generation {
            group,
            topic_partition,
            generation,
        }) => generation > group_view(log, end, &group, &topic_partition).generation,
        Some(GroupRecord::Offset {
            group,
            topic_partition,
            generation,
            ..
        }) => {
            let latest = group_view(log, end, &group, &topic_partition).generation;
            generation == latest && latest > 0
        }
        None => true,
    }
}

/// M9: an acks=all batch appended by a leader whose ISR is exactly min.insync.replicas.
fn append_at_min_isr(msg: &Msg, before: &BrokerState, after: &BrokerState) -> u16 {
    let Msg::Produce(request) = msg else {
        return 0;
    };
    let tp = &request.topic_partition;
    let Some(r) = before.replicas.get(tp).filter(|r| r.is_leader()) else {
        return 0;
    };
    let appended = after
        .replicas
        .get(tp)
        .is_some_and(|now| now.log_end_offset() > r.log_end_offset());
    let at_min = r.partition.isr.len() as u32 == r.partition.min_insync_replicas;
    if appended && request.acks == Acks::All && at_min {
        event::APPEND_AT_MIN_ISR
    } else {
        0
    }
}

/// M10: a controller message (no fetch) left a leader of the same epoch asking for a larger ISR
/// than the one it now holds, every member it adds being at its log end offset: what only the
/// sweep of R26 over caught-up followers asks for.
fn isr_rejoin_on_isr_change(msg: &Msg, before: &BrokerState, after: &BrokerState) -> u16 {
    if msg.controller_epoch().is_none() {
        return 0;
    }
    let asked = after.replicas.values().any(|r| {
        let Role::Leader(l) = &r.role else {
            return false;
        };
        let log_end_offset = r.log_end_offset();
        let at_log_end = |b: &BrokerId| {
            l.followers
                .iter()
                .any(|f| f.broker_id == *b && f.log_end_offset == Some(log_end_offset))
        };
        let expands = l.pending_isr.as_ref().is_some_and(|p| {
            p.len() > r.partition.isr.len()
                && p.iter()
                    .filter(|b| !r.partition.isr.contains(b))
                    .all(at_log_end)
        });
        // The same leader in the same epoch, which had not asked for this before the step.
        let newly_asked = before
            .replicas
            .get(&r.partition.topic_partition)
            .is_some_and(|b| match &b.role {
                Role::Leader(bl) => {
                    b.leader_epoch() == r.leader_epoch() && bl.pending_isr != l.pending_isr
                }
                _ => false,
            });
        expands && newly_asked
    });
    if asked {
        event::ISR_REJOIN_ON_ISR_CHANGE
    } else {
        0
    }
}

/// M7, M8: a follower fetch that names a current leader epoch other than the leader's, and
/// whether the leader took it (its replica changed) instead of refusing it (R23).
fn fetch_from_other_epoch(msg: &Msg, before: &BrokerState, after: &BrokerState) -> u16 {
    let Msg::Fetch(request) = msg else {
        return 0;
    };
    let tp = &request.topic_partition;
    let Some(r) = before.replicas.get(tp).filter(|r| r.is_leader()) else {
        return 0;
    };
    let other_epoch = request
        .current_leader_epoch
        .is_some_and(|e| e != r.leader_epoch());
    if request.replica_id.is_none() || !other_epoch {
        return 0;
    }
    if after.replicas.get(tp) != Some(r) {
        event::FETCH_FROM_OTHER_EPOCH | event::FETCH_FROM_OTHER_EPOCH_TAKEN
    } else {
        event::FETCH_FROM_OTHER_EPOCH
    }
}

/// M11: a leader, asked where an epoch no newer than its own ends (a follower's
/// OffsetsForLeaderEpoch, or the last fetched epoch of its fetch), sent back undefined: the
/// network holds one more such answer from it to the follower than before the step.
fn epoch_lookup_undefined(
    last: &State,
    next: &State,
    (follower, leader): (Id, Id),
    msg: &Msg,
    before: &BrokerState,
) -> u16 {
    let (tp, requested) = match msg {
        Msg::OffsetsForLeaderEpoch {
            topic_partition,
            leader_epoch,
            ..
        } => (topic_partition, *leader_epoch),
        Msg::Fetch(request) if request.replica_id.is_some() => match request.last_fetched_epoch {
            Some(epoch) => (&request.topic_partition, epoch),
            None => return 0,
        },
        _ => return 0,
    };
    let known = before
        .replicas
        .get(tp)
        .is_some_and(|r| r.is_leader() && requested <= r.leader_epoch());
    if !known {
        return 0;
    }
    let undefined = |m: &Msg| match m {
        Msg::OffsetsForLeaderEpochResponse {
            topic_partition,
            requested_epoch,
            result: Ok(None),
        } => topic_partition == tp && *requested_epoch == requested,
        Msg::FetchResponse(response) => {
            response.topic_partition == *tp
                && matches!(response.result, FetchResult::Diverging(None))
        }
        _ => false,
    };
    let count = |state: &State| messages_between(&state.network, leader, follower, undefined);
    if count(next) > count(last) {
        event::EPOCH_LOOKUP_UNDEFINED
    } else {
        0
    }
}

/// How many messages from `src` to `dst` the network holds that satisfy `pred`, each copy
/// counted. (stateright 0.31's `Network::iter_all` never ends on an ordered network whose flow
/// holds a message: it yields the flow's first message again and again.)
fn messages_between(
    network: &Network<Msg>,
    src: Id,
    dst: Id,
    pred: impl Fn(&Msg) -> bool,
) -> usize {
    match network {
        Network::UnorderedDuplicating(set, _) => set
            .iter()
            .filter(|e| e.src == src && e.dst == dst && pred(&e.msg))
            .count(),
        Network::UnorderedNonDuplicating(multiset) => multiset
            .iter()
            .filter(|(e, _)| e.src == src && e.dst == dst && pred(&e.msg))
            .map(|(_, n)| *n)
            .sum(),
        Network::Ordered(flows) => flows
            .get(&(src, dst))
            .map_or(0, |flow| flow.iter().filter(|m| pred(m)).count()),
    }
}

/// Whether `log` from `from` on holds an entry the current leader of `tp` (as the controller
/// says) does not hold at that offset.
/// M5: the follower handled the leader's answer (an epoch and its end offset) to its epoch
/// lookup and, its truncation complete, went on
/// to fetch, while its log holds, below its log end offset, an entry other than the one its
/// leader holds at that offset.
fn lookup_left_divergence(
    next: &State,
    msg: &Msg,
    before: &BrokerState,
    after: &BrokerState,
) -> bool {
    // An undefined answer falls back to the high watermark: KAFKA-7415's bug, not this one.
    let Msg::OffsetsForLeaderEpochResponse {
        topic_partition: tp,
        result: Ok(Some(_)),
        ..
    } = msg
    else {
        return false;
    };
    let (Some(old), Some(r)) = (before.replicas.get(tp), after.replicas.get(tp)) else {
        return false;
    };
    let looked_up = matches!(old.role, Role::Follower(FollowerState::Truncating { .. }))
        && matches!(r.role, Role::Follower(FollowerState::Fetching { .. }));
    if !looked_up {
        return false;
    }
    let leader = r
        .partition
        .leader
        .and_then(|l| broker(next, l as usize))
        .and_then(|b| b.replicas.get(tp))
        .filter(|l| l.is_leader() && l.leader_epoch() == r.leader_epoch());
    // Where the leader holds no entry, the next fetch is out of range and cuts the follower
    // back to the leader's log end (R33); a different entry where the leader holds one stays.
    leader.is_some_and(|l| {
        (0..r.log_end_offset().min(l.log_end_offset())).any(|o| l.log.get(o) != r.log.get(o))
    })
}

fn divergent(state: &State, tp: &TopicPartition, log: &Log, from: Offset) -> bool {
    let leader_log = controller(state)
        .and_then(|c| c.partitions.get(tp))
        .and_then(|p| p.leader)
        .and_then(|l| broker(state, l as usize))
        .and_then(|b| b.replicas.get(tp))
        .map(|r| &r.log);
    (from..log.log_end_offset()).any(|o| leader_log.and_then(|l| l.get(o)) != log.get(o))
}

/// R61: whether consumer `index` waits, in `state`, for the answer that resumes it: its
/// OffsetFetch, or with `latest` and nothing committed its ListOffsets. Written from the member's
/// fields here rather than by calling the consumer's own `awaits`: a property that calls the
/// code it judges would bend with a mutant of it.
pub(crate) fn awaits_offset(state: &State, index: usize) -> bool {
    state
        .actor_states
        .get(index)
        .and_then(|s| s.as_consumer())
        .and_then(|c| c.member.as_ref())
        .is_some_and(|m| {
            m.in_flight && matches!(m.step, MemberStep::FetchOffset | MemberStep::ListOffsets)
        })
}

/// The group member of consumer `index` in `state`, if it has one and runs.
pub(crate) fn member(state: &State, index: usize) -> Option<&Member> {
    match state.crashed.get(index) {
        Some(false) => state
            .actor_states
            .get(index)?
            .as_consumer()?
            .member
            .as_ref(),
        _ => None,
    }
}

/// I32: whether member `index`, consuming in `last`, no longer is in `next`, within one
/// incarnation (a crash or a restart is not a step of the member's).
fn left_consuming(last: &State, next: &State, index: usize) -> bool {
    match (member(last, index), member(next, index)) {
        (Some(before), Some(after)) => {
            before.step == MemberStep::Consuming && after.step != MemberStep::Consuming
        }
        _ => false,
    }
}

/// I32: whether `action` tells consumer `index` to leave its generation: its coordinator
/// answers its commit with an error (R62: fenced, or the coordinator moved), or its request
/// timer fires while a group request of its own is unanswered (R61, R62: the coordinator may
/// be gone). Written from the member's fields rather than by calling the consumer's code, as
/// `awaits_offset` is.
fn told_to_rejoin(last: &State, action: Option<&Action>, index: usize) -> bool {
    match action {
        Some(ActorModelAction::Deliver {
            dst,
            msg: Msg::OffsetCommitResponse { result: Err(_), .. },
            ..
        }) => usize::from(*dst) == index,
        Some(ActorModelAction::Timeout(id, Timer::RequestTimeout)) => {
            usize::from(*id) == index
                && member(last, index).is_some_and(|m| {
                    m.committing.is_some() || (m.in_flight && m.step != MemberStep::ListOffsets)
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(epoch: LeaderEpoch, result: EpochEndOffset) -> Envelope<Msg> {
        Envelope {
            src: Id::from(2),
            dst: Id::from(1),
            msg: Msg::OffsetsForLeaderEpochResponse {
                topic_partition: TopicPartition::new(&Topic::new("t"), 0),
                requested_epoch: epoch,
                result: Ok(result),
            },
        }
    }

    /// I26: reads must go on from where the incarnation started or the member resumed, one
    /// offset at a time; anything else is latched.
    #[test]
    fn reads_out_of_position_are_latched() {
        let tp = TopicPartition::new(&Topic::new("t"), 0);
        let read = |offset| {
            Msg::RecordConsumed(Consumed {
                offset,
                entry: LogEntry {
                    leader_epoch: 0,
                    record: Record {
                        value: Value::from("a"),
                        producer: None,
                    },
                },
                leader_epoch: 0,
            })
        };
        let resumed = |position| {
            Msg::Group(GroupEvent::Resumed {
                group: Group::new("g"),
                topic_partition: tp.clone(),
                committed: Some(position),
                position,
            })
        };
        let latched = |g: &Ghost| g.has_violation(violation::READ_OUT_OF_POSITION);

        // Without a group: from 0, in order.
        let mut ghost = Ghost::with_histories(Histories {
            next_read: vec![None, Some(0)],
            ..Histories::default()
        });
        ghost.record_delivery(1, &read(0));
        ghost.record_delivery(1, &read(1));
        assert!(!latched(&ghost));
        assert_eq!(ghost.histories.next_read[1], Some(2));
        ghost.record_delivery(1, &read(3));
        assert!(latched(&ghost), "a gap");

        let mut ghost = Ghost::with_histories(Histories {
            next_read: vec![None, Some(0)],
            ..Histories::default()
        });
        ghost.record_delivery(1, &read(0));
        ghost.record_delivery(1, &read(0));
        assert!(latched(&ghost), "a repeat within an incarnation");

        // A member: nothing before it resumes, then from where it resumed.
        let mut ghost = Ghost::with_histories(Histories {
            next_read: vec![None, None],
            ..Histories::default()
        });
        ghost.record_delivery(1, &resumed(2));
        ghost.record_delivery(1, &read(2));
        assert!(!latched(&ghost));
        ghost.record_delivery(1, &resumed(1));
        ghost.record_delivery(1, &read(1));
        assert!(!latched(&ghost), "a rejoin may resume lower: at-least-once");
        let mut ghost = Ghost::with_histories(Histories {
            next_read: vec![None, None],
            ..Histories::default()
        });
        ghost.record_delivery(1, &read(0));
        assert!(latched(&ghost), "a read before the member resumed");
    }

    /// Every copy on every network kind, including an ordered flow of several messages, on
    /// which stateright's `iter_all` never ends.
    #[test]
    fn messages_between_counts_every_copy_on_every_network() {
        let undefined = |m: &Msg| {
            matches!(
                m,
                Msg::OffsetsForLeaderEpochResponse {
                    result: Ok(None),
                    ..
                }
            )
        };
        let flow = [
            answer(1, None),
            answer(1, Some((0, 0))),
            answer(2, None),
            answer(1, None),
        ];
        let (leader, follower) = (Id::from(2), Id::from(1));
        let ordered = Network::new_ordered(flow.clone());
        assert_eq!(messages_between(&ordered, leader, follower, undefined), 3);
        assert_eq!(messages_between(&ordered, follower, leader, undefined), 0);
        let multiset = Network::new_unordered_nonduplicating(flow.clone());
        assert_eq!(messages_between(&multiset, leader, follower, undefined), 3);
        // A duplicating network holds one copy of each distinct message.
        let set = Network::new_unordered_duplicating(flow);
        assert_eq!(messages_between(&set, leader, follower, undefined), 2);
    }
}
