//! The properties checked, each with the name it has in spec.md and in the output. Spec:
//! "Invariants and twins" (I1–I19, I24–I36 and S1–S24, S30–S45; the quorum's are in
//! `crate::quorum`).
//!
//! Every Always property has a Sometimes twin that shows the situation it guards does happen
//! within the bounds, so that no invariant holds only because nothing happened.

use crate::ghost::{event, violation, Ghost};
use crate::knobs::Knobs;
use crate::model::{alive_in, controller, State, WatermarkModel};
use crate::recovery;
use stateright::actor::{Id, Network};
use stateright::Expectation;
use watermark_model::broker::{DelayedFetch, FollowerState, HeldRequest};
use watermark_model::consumer::MemberStep;
use watermark_model::*;

pub type Condition = fn(&WatermarkModel, &State) -> bool;

#[derive(Clone)]
pub struct PropertyDef {
    pub name: &'static str,
    /// `I1`…, or `S1`… for Sometimes properties.
    pub id: &'static str,
    pub expectation: Expectation,
    pub description: &'static str,
    /// For a Sometimes twin, the Always property it accompanies.
    pub twin_of: Option<&'static str>,
    pub condition: Condition,
    /// Whether the property applies to a configuration (e.g. consumer properties need consumers).
    pub applies: fn(&Knobs) -> bool,
}

fn always_applies(_: &Knobs) -> bool {
    true
}
/// Some process can crash (B2, B4).
fn with_crashes(k: &Knobs) -> bool {
    k.broker_crashes + k.controller_crashes + k.consumer_crashes > 0
}
fn with_acks(k: &Knobs) -> bool {
    k.acks != Acks::None && with_producers(k)
}
fn with_controller_crashes(k: &Knobs) -> bool {
    k.controller_crashes > 0
}
fn with_consumers(k: &Knobs) -> bool {
    k.consumers > 0
}
fn with_group(k: &Knobs) -> bool {
    k.group && k.consumers > 0
}
/// The group's coordinator can fail over: `__consumer_offsets` has a second replica.
fn with_group_failover(k: &Knobs) -> bool {
    with_group(k) && leader_can_change(k) && k.offsets_rf() >= 2
}
/// A member can come back: its group's history spans two incarnations.
fn with_group_and_consumer_crashes(k: &Knobs) -> bool {
    with_group(k) && k.consumer_crashes > 0
}
fn with_idempotence(k: &Knobs) -> bool {
    k.idempotence && with_producers(k)
}
/// Idempotent producers with more than one batch to keep in flight.
fn with_pipelining(k: &Knobs) -> bool {
    with_idempotence(k) && k.max_in_flight_requests >= 2 && k.records >= 2
}
/// Two records fit in a fetch response, and a partition gets two (the first partition gets
/// every `partitions`-th record of each producer).
fn with_fetch_batches(k: &Knobs) -> bool {
    two_records_fit(k.fetch_bytes_max) && k.producers * k.records.div_ceil(k.partitions) >= 2
}
/// Two records fit in a batch, and some producer writes two records to one partition.
fn with_produce_batches(k: &Knobs) -> bool {
    two_records_fit(k.batch_bytes_max) && with_producers(k) && k.records > k.partitions
}
/// Whether two of the model's records (values `a`…`z`, one byte each) fit in `bytes_max`.
fn two_records_fit(bytes_max: u32) -> bool {
    bytes_max as usize >= 2 * (RECORD_OVERHEAD_BYTES + 1)
}
/// Records are written: there are producers, and they have something to send.
fn with_producers(k: &Knobs) -> bool {
    k.producers > 0 && k.records > 0
}
/// Whether leadership can move within the bounds (B1–B3): a later epoch exists and something can
/// take the leader away. Without that, the leader-change properties hold only because nothing
/// happens, so they are reported as not applicable rather than as holding.
pub fn leader_can_change(k: &Knobs) -> bool {
    k.leader_epoch_max >= 1 && (k.broker_crashes >= 1 || k.false_suspicions)
}
fn with_leader_change_and_producers(k: &Knobs) -> bool {
    leader_can_change(k) && with_producers(k)
}
/// The topic's leader can change and acknowledges records: it has a second replica to fail
/// over to (with a group, `__consumer_offsets` may fail over while the topic cannot).
fn with_leader_change_and_acks(k: &Knobs) -> bool {
    leader_can_change(k) && with_acks(k) && k.replication_factor >= 2
}
fn with_leader_change_and_consumers(k: &Knobs) -> bool {
    leader_can_change(k) && with_consumers(k) && k.replication_factor >= 2
}
/// Controller messages can be lost, a leader or ISR change can be among them, and a registered
/// broker may pull (B7).
fn with_lossy_network_and_isr_change(k: &Knobs) -> bool {
    k.network.lossy && with_isr_change(k) && k.metadata_pulls >= 1
}
/// A broker can apply a change while it lacks an older one (S43): two partitions of two
/// replicas, and two ISR shrinks. Each leader learns its own AlterPartition's outcome from the
/// answer, which spans the metadata offsets since the controller's previous change (R7, R51); if
/// the other leader made that change, the answer follows on an offset this broker does not hold.
fn with_metadata_gap(k: &Knobs) -> bool {
    k.partitions >= 2 && k.replication_factor >= 2 && k.isr_shrinks >= 2
}
/// Nothing is lost on the way: a request not answered is somewhere (brokers do not retransmit).
fn without_loss(k: &Knobs) -> bool {
    !k.network.lossy
}
/// Acknowledged producers on a network that loses nothing.
fn without_loss_and_with_acks(k: &Knobs) -> bool {
    without_loss(k) && with_acks(k)
}
fn without_loss_and_with_acks_all(k: &Knobs) -> bool {
    without_loss_and_with_acks(k) && k.acks == Acks::All
}
/// Leaders may shrink ISRs on their own (B6), and a follower can be in one to drop.
fn with_isr_shrinks(k: &Knobs) -> bool {
    k.isr_shrinks >= 1 && k.replication_factor >= 2
}
/// An ISR member can be dropped: by its leader (B6), or by the controller when it dies.
fn with_isr_change(k: &Knobs) -> bool {
    k.isr_shrinks >= 1 || leader_can_change(k)
}

/// acks=all producers, and the ISR can fall below min.insync.replicas within the bounds.
fn with_isr_under_min(k: &Knobs) -> bool {
    k.acks == Acks::All
        && with_producers(k)
        && k.min_insync_replicas >= 2
        && isr_can_fall_under_min(k)
}

/// The data partitions' ISR can fall below min.insync.replicas within the bounds: a crash, a
/// false suspicion or an ISR shrink for each replica above the minimum less one.
fn isr_can_fall_under_min(k: &Knobs) -> bool {
    k.replication_factor.saturating_sub(removable_from_isr(k)) < k.min_insync_replicas
}

/// How many ISR members the bounds can remove: crashes, a false suspicion, ISR shrinks.
fn removable_from_isr(k: &Knobs) -> u32 {
    k.broker_crashes + k.isr_shrinks + u32::from(k.false_suspicions)
}
/// `__consumer_offsets` can fall below its min.insync.replicas (the topic's, capped at its
/// replication factor): the coordinator's writes meet R18.
fn with_offsets_under_min_isr(k: &Knobs) -> bool {
    let removable = removable_from_isr(k);
    let min_isr = k.min_insync_replicas.min(k.offsets_rf());
    with_group(k) && min_isr >= 2 && k.offsets_rf().saturating_sub(removable) < min_isr
}
/// I14's writes: acks=all batches, or group records that can meet an ISR under the minimum.
fn with_writes_under_min_isr(k: &Knobs) -> bool {
    with_isr_under_min(k) || with_offsets_under_min_isr(k)
}
/// A coordinator's writes wait for a second replica before they are answered.
fn with_replicated_offsets(k: &Knobs) -> bool {
    with_group(k) && k.offsets_rf() >= 2
}

/// KIP-966, and the bounds can take the ISR under min.insync.replicas, where a replica that
/// leaves it joins the ELR (I33, R52).
fn with_elr(k: &Knobs) -> bool {
    k.eligible_leader_replicas && isr_can_fall_under_min(k)
}
/// I34 judges some ELR member: with unclean shutdown only a running one, which needs a false
/// suspicion (a crashed member is not running, and a restarted one leaves the ELR, R54).
fn with_judged_elr(k: &Knobs) -> bool {
    with_elr(k) && (!k.unclean_shutdown || k.false_suspicions)
}
/// I34's twin needs a record to hold.
fn with_judged_elr_and_producers(k: &Knobs) -> bool {
    with_judged_elr(k) && with_producers(k)
}

/// Every property, in spec order.
pub fn all() -> Vec<PropertyDef> {
    use Expectation::{Always, Eventually, Sometimes};
    let p = |id, name, expectation, twin_of, description, condition, applies| PropertyDef {
        name,
        id,
        expectation,
        description,
        twin_of,
        condition,
        applies,
    };
    vec![
        p("I1", "HighWatermarkWithinLog", Always, None,
          "Every replica has HWM <= LEO.",
          high_watermark_within_log as Condition, always_applies as fn(&Knobs) -> bool),
        p("S1", "FollowerHighWatermarkAdvances", Sometimes, Some("HighWatermarkWithinLog"),
          "A follower learns a HWM above 0.",
          follower_high_watermark_advances, with_producers),
        p("I2", "StrongIsr", Always, None,
          "Every member of the controller's ISR holds what any presumed leader holds below its HWM.",
          strong_isr, always_applies),
        p("S2", "RecordCommitted", Sometimes, Some("StrongIsr"),
          "A leader's HWM passes a record while the ISR has two members or more.",
          record_committed, with_producers),
        p("I3", "OneLeaderPerEpoch", Always, None,
          "At most one broker acts as leader of a partition in a leader epoch.",
          one_leader_per_epoch, leader_can_change),
        p("S3", "LeaderChangeWithData", Sometimes, Some("OneLeaderPerEpoch"),
          "A leader in a later epoch holds committed records of an earlier one.",
          leader_change_with_data, with_leader_change_and_producers),
        p("I4", "LogEpochsMonotonic", Always, None,
          "Leader epochs never decrease along a replica's log.",
          log_epochs_monotonic, leader_can_change),
        p("S4", "LogSpansEpochs", Sometimes, Some("LogEpochsMonotonic"),
          "A log holds records of two leader epochs.",
          log_spans_epochs, with_leader_change_and_producers),
        p("I5", "NoAppendFromStaleEpoch", Always, None,
          "No replica appends records a leader sent in an epoch older than the replica's own.",
          no_append_from_stale_epoch, leader_can_change),
        p("S5", "StaleFetchResponseInFlight", Sometimes, Some("NoAppendFromStaleEpoch"),
          "A fetch response from an older leader epoch is on its way to a follower.",
          stale_fetch_response_in_flight, with_leader_change_and_producers),
        p("I6", "NoStaleControllerRequest", Always, None,
          "No broker applies a controller message older than one it was ever handed, in any incarnation.",
          no_stale_controller_request, with_controller_crashes),
        p("S6", "StaleControllerRequestInFlight", Sometimes, Some("NoStaleControllerRequest"),
          "A controller request from an older controller epoch is on its way to a broker that knows a newer one.",
          stale_controller_request_in_flight, with_controller_crashes),
        p("I7", "AcknowledgedRecordsSurvive", Always, None,
          "Every acknowledged record stays, at its offset, in the log of every later leader.",
          acknowledged_records_survive, with_leader_change_and_acks),
        p("S7", "AcknowledgedRecordOnNewLeader", Sometimes, Some("AcknowledgedRecordsSurvive"),
          "A leader of a later epoch holds an acknowledged record.",
          acknowledged_record_on_new_leader, with_leader_change_and_acks),
        p("I8", "CommittedRecordsSurvive", Always, None,
          "Every record ever below a leader's HWM stays, at its offset, in the log of every later leader.",
          committed_records_survive, leader_can_change),
        p("S8", "CommittedRecordOnNewLeader", Sometimes, Some("CommittedRecordsSurvive"),
          "A leader of a later epoch holds a record committed in an earlier one.",
          committed_record_on_new_leader, with_leader_change_and_producers),
        p("I9", "LogMatching", Always, None,
          "Two replicas that hold the same offset in the same epoch agree on everything up to it.",
          log_matching, leader_can_change),
        p("S9", "LogsDiverge", Sometimes, Some("LogMatching"),
          "Two replicas hold different epochs at the same offset.",
          logs_diverge, with_leader_change_and_producers),
        p("I10", "ConsumerReadsCommitted", Always, None,
          "A consumer reads only records below the HWM.",
          consumer_reads_committed, with_consumers),
        p("S10", "ConsumerReadsRecord", Sometimes, Some("ConsumerReadsCommitted"),
          "A consumer reads a record.",
          consumer_reads_record, with_consumers),
        p("I11", "ConsumedRecordsStable", Always, None,
          "Nothing a consumer read ever changes in the log of a later leader.",
          consumed_records_stable, with_leader_change_and_consumers),
        p("S11", "ConsumedRecordOnNewLeader", Sometimes, Some("ConsumedRecordsStable"),
          "A leader of a later epoch holds a record a consumer read.",
          consumed_record_on_new_leader, with_leader_change_and_consumers),
        p("I12", "NoDuplicateSequence", Always, None,
          "With idempotence, no (producer id, sequence) appears twice in a log.",
          no_duplicate_sequence, with_idempotence),
        p("S12", "RetryOfHeldBatch", Sometimes, Some("NoDuplicateSequence"),
          "A leader receives a retry of a batch its log already holds.",
          retry_of_held_batch, with_idempotence),
        p("S13", "ReplicaTruncates", Sometimes, None,
          "A replica truncates its log.",
          replica_truncates, with_leader_change_and_producers),
        p("S14", "IsrShrinkAndExpand", Sometimes, None,
          "A replica dropped from the ISR is added back.",
          isr_shrink_and_expand, with_isr_change),
        p("S15", "RecordAcknowledged", Sometimes, None,
          "A producer is told a record is written.",
          record_acknowledged, with_acks),
        p("I13", "MetadataFromController", Always, None,
          "Every partition state a broker holds is one the controller decided, not newer than the controller's.",
          metadata_from_controller, always_applies),
        p("S16", "LostMetadataRepaired", Sometimes, Some("MetadataFromController"),
          "A broker that lost a LeaderAndIsr learns the partition state it missed from a heartbeat response.",
          lost_metadata_repaired, with_lossy_network_and_isr_change),
        p("I35", "MetadataOffsetApplied", Always, None,
          "A broker's metadata offset counts only changes it applied: every partition whose newest change is at or before it is held in the controller's state.",
          metadata_offset_applied, always_applies),
        p("S43", "MetadataPastGapHeld", Sometimes, Some("MetadataOffsetApplied"),
          "A broker holds a partition's newest state while it lacks an older change of another partition: it missed a push and applied the next.",
          metadata_past_gap_held, with_metadata_gap),
        p("I36", "CaughtUpFollowerKept", Always, None,
          "No leader asks to drop from its ISR a follower whose last fetch in the leader's epoch was at the leader's log end offset: a caught-up follower has not lagged (replica.lag.time.max.ms).",
          caught_up_follower_kept, with_isr_shrinks),
        p("S44", "FollowerDroppedFromIsr", Sometimes, Some("CaughtUpFollowerKept"),
          "A leader waits on its AlterPartition that drops a member of its ISR.",
          follower_dropped_from_isr, with_isr_shrinks),
        p("L0", "RecoveryReachable", Eventually, None,
          "From every state, some path within the bounds leads to a recovered cluster: every process running, and L1-L7 (every partition led, every replica in its ISR, every broker's metadata the controller's, every acknowledged record read, every producer done, every group member reading with its position committed, every consumer on its partition's leader).",
          recovery::cluster_recovered, always_applies),
        p("S45", "RecoveredAfterCrash", Sometimes, Some("RecoveryReachable"),
          "The cluster is recovered (L0's condition) after a crash.",
          recovered_after_crash, with_crashes),
        p("I14", "NoAppendUnderMinIsr", Always, None,
          "No leader appends an acks=all batch, nor a coordinator a group record, while its ISR is smaller than min.insync.replicas: the producer is told NotEnoughReplicas, the member CoordinatorNotAvailable.",
          no_append_under_min_isr, with_writes_under_min_isr),
        p("S17", "ProduceUnderMinIsr", Sometimes, Some("NoAppendUnderMinIsr"),
          "An acks=all batch reaches its leader while the leader's ISR is smaller than min.insync.replicas.",
          produce_under_min_isr, with_isr_under_min),
        p("I15", "ProducerOrderKept", Always, None,
          "With idempotence, every log holds each producer's records of a partition in sequence order, without gaps: 0, 1, 2, ...",
          producer_order_kept, with_idempotence),
        p("S18", "PipelinedBatchesUnanswered", Sometimes, Some("ProducerOrderKept"),
          "An idempotent producer has two batches sent and unanswered at once.",
          pipelined_batches_unanswered, with_pipelining),
        p("I16", "FollowerFetchNotForgotten", Always, None,
          "On a network that loses nothing, a follower waiting for a fetch answer from the live leader of its epoch has its fetch in flight, held by that leader, or its answer in flight.",
          follower_fetch_not_forgotten, without_loss),
        p("S19", "FollowerFetchHeld", Sometimes, Some("FollowerFetchNotForgotten"),
          "A leader holds a follower's fetch that has nothing to return yet.",
          follower_fetch_held, without_loss),
        p("I17", "HeldFetchWaitsForData", Always, None,
          "A leader holds a fetch only while it has nothing to return: a follower's until the log end or the HWM passes what the fetch knows (R26), a consumer's until the HWM passes its offset (R27).",
          held_fetch_waits_for_data, always_applies),
        p("S20", "ConsumerFetchHeld", Sometimes, Some("HeldFetchWaitsForData"),
          "A leader holds a consumer's fetch at its HWM.",
          consumer_fetch_held, with_consumers),
        p("S21", "RestartedControllerObeyed", Sometimes, Some("NoStaleControllerRequest"),
          "A running broker has taken the controller epoch of a restarted controller: fencing older epochs does not fence the new one.",
          restarted_controller_obeyed, with_controller_crashes),
        p("I18", "CommittedOffsetSurvives", Always, None,
          "A member resumes at its group's latest acknowledged commit or a newer one: OffsetFetch never returns less than a commit acknowledged before it, nor nothing once one was.",
          committed_offset_survives, with_group),
        p("S22", "ResumedAtCommit", Sometimes, Some("CommittedOffsetSurvives"),
          "A restarted member resumes at an offset its group committed.",
          resumed_at_commit, with_group_and_consumer_crashes),
        p("I19", "AtLeastOnce", Always, None,
          "A group skips nothing: from its first acknowledged commit on, wherever a member resumes, the group has read every offset from that commit up to there.",
          at_least_once, with_group),
        p("S23", "Reprocessed", Sometimes, Some("AtLeastOnce"),
          "A group reads a record twice (at-least-once, not exactly-once).",
          reprocessed, with_group_and_consumer_crashes),
        p("S24", "CommitOnNewCoordinator", Sometimes, Some("CommittedOffsetSurvives"),
          "A coordinator of a later leader epoch holds, below its HWM, a commit written in an earlier one.",
          commit_on_new_coordinator, with_group_failover),
        p("S38", "GroupWriteUnderMinIsr", Sometimes, Some("NoAppendUnderMinIsr"),
          "A JoinGroup or OffsetCommit reaches a loaded coordinator whose ISR is smaller than min.insync.replicas.",
          group_write_under_min_isr, with_offsets_under_min_isr),
        p("I29", "GroupWritesFenced", Always, None,
          "A coordinator writes a generation above every one its log holds for the member, and an offset only in the latest generation its log holds: a fenced member's commit is never written.",
          group_writes_fenced, with_group),
        p("S36", "ZombieCommitDelivered", Sometimes, Some("GroupWritesFenced"),
          "A commit from a member's earlier generation reaches a coordinator that takes writes, after a newer generation was written.",
          zombie_commit_delivered, with_group_and_consumer_crashes),
        p("I30", "CommitAcknowledgedOnceCommitted", Always, None,
          "A member is told its commit is acknowledged only once the commit's offset record is committed.",
          commit_acknowledged_once_committed, with_group),
        p("S37", "CommitHeld", Sometimes, Some("CommitAcknowledgedOnceCommitted"),
          "A coordinator holds a commit's answer until its HWM passes the offset record.",
          commit_held, with_replicated_offsets),
        p("I31", "ResumedOnlyAfterJoining", Always, None,
          "A member resumes (at its group's commit, or where auto.offset.reset says) only in answer to the OffsetFetch or ListOffsets it waits on after joining: a stale answer never moves a member that has moved on.",
          resumed_only_after_joining, with_group),
        p("S39", "StaleOffsetAnswerInFlight", Sometimes, Some("ResumedOnlyAfterJoining"),
          "An OffsetFetch or ListOffsets answer is on its way to a member that no longer waits for it (a restarted member, or one that moved on).",
          stale_offset_answer_in_flight, with_group_and_consumer_crashes),
        p("I32", "LeftConsumingOnlyWhenTold", Always, None,
          "A member stops consuming (goes back to finding its coordinator or joining) only when its coordinator answers its commit with an error, or when its request timer fires with a group request of its own unanswered.",
          left_consuming_only_when_told, with_group),
        p("S40", "MemberRejoining", Sometimes, Some("LeftConsumingOnlyWhenTold"),
          "A member that resumed is back at finding its coordinator or joining, in the same incarnation.",
          member_rejoining, with_group_failover),
        p("I26", "ConsumerReadsInOrder", Always, None,
          "Within an incarnation a consumer reads consecutive offsets from where it starts: 0 without a group, where it resumed with one; a member reads nothing before it resumes.",
          consumer_reads_in_order, with_consumers),
        p("S32", "ReadAfterResume", Sometimes, Some("ConsumerReadsInOrder"),
          "A member that resumed a second time (restarted, or rejoined its group) reads a record after it.",
          read_after_resume, with_group_and_consumer_crashes),
        p("I27", "ProduceNotForgotten", Always, None,
          "On a network that loses nothing, a producer's first unanswered batch, sent to the live leader of the epoch it named, has its request in flight, held by that leader, or its answer in flight.",
          produce_not_forgotten, without_loss_and_with_acks),
        p("S33", "ProduceHeld", Sometimes, Some("ProduceNotForgotten"),
          "A leader holds an acks=all batch until its HWM passes it.",
          produce_held, without_loss_and_with_acks_all),
        p("I28", "ProducerWithinLimits", Always, None,
          "A producer has at most max.in.flight.requests.per.connection batches unanswered, and sends each batch at most retries + 1 times: every produce request names an attempt from 1 to producer_attempts_max.",
          producer_within_limits, with_acks),
        p("S34", "BatchGivenUp", Sometimes, Some("ProducerWithinLimits"),
          "A producer gives a batch up after its last attempt or a fatal error.",
          batch_given_up, with_leader_change_and_acks),
        p("S35", "PipelineRefilled", Sometimes, Some("ProducerWithinLimits"),
          "A producer with an answered batch behind it has two batches sent and unanswered: its window is refilled as answers come, not only once it is empty.",
          pipeline_refilled, with_pipelining),
        p("I33", "EligibleLeaderReplicasKept", Always, None,
          "With KIP-966, every partition's ELR is disjoint from its ISR, empty while the ISR has min.insync.replicas members, and with the ISR and the replicas that restarted holds min.insync.replicas replicas unless unclean election is allowed.",
          eligible_leader_replicas_kept, with_elr),
        p("S41", "ReplicaInElr", Sometimes, Some("EligibleLeaderReplicasKept"),
          "A partition has a replica in its ELR.",
          replica_in_elr, with_elr),
        p("I34", "EligibleLeaderReplicasHoldCommitted", Always, None,
          "Every member of the controller's ELR holds what any presumed leader holds below its HWM; with unclean shutdown, every member running in the incarnation the controller registered.",
          eligible_leader_replicas_hold_committed, with_judged_elr),
        p("S42", "CommittedRecordInElr", Sometimes, Some("EligibleLeaderReplicasHoldCommitted"),
          "An ELR member I34 judges holds a record below a leader's HWM.",
          committed_record_in_elr, with_judged_elr_and_producers),
        p("I24", "FetchWithinBytes", Always, None,
          "A fetch response holding more than one record holds at most fetch.max.bytes of them (KIP-74: the first record always fits).",
          fetch_within_bytes, always_applies),
        p("S30", "FetchResponseBatched", Sometimes, Some("FetchWithinBytes"),
          "A fetch response carries two records or more.",
          fetch_response_batched, with_fetch_batches),
        p("I25", "BatchWithinBytes", Always, None,
          "A produce request holding more than one record holds at most batch.size of them.",
          batch_within_bytes, with_producers),
        p("S31", "ProduceBatched", Sometimes, Some("BatchWithinBytes"),
          "A produce request carries two records or more.",
          produce_batched, with_produce_batches),
    ]
}

/// The properties that apply to a configuration.
pub fn enabled(knobs: &Knobs) -> Vec<PropertyDef> {
    all().into_iter().filter(|p| (p.applies)(knobs)).collect()
}

/// Every broker's state, with whether it is crashed.
fn brokers<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = (&'a BrokerState, bool)> + 'a {
    model.broker_indices().filter_map(move |i| {
        state.actor_states[i]
            .as_broker()
            .map(|b| (b, state.crashed[i]))
    })
}

/// Every replica of every broker, crashed or not (a crashed broker's log is what it persisted).
fn replicas<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = &'a Replica> + 'a {
    brokers(model, state).flat_map(|(b, _)| b.replicas.values())
}

/// Replicas that act as leader: live brokers that believe they lead.
fn leaders<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = &'a Replica> + 'a {
    brokers(model, state)
        .filter(|(_, crashed)| !crashed)
        .flat_map(|(b, _)| b.replicas.values())
        .filter(|r| r.is_leader())
}

fn ghost(state: &State) -> &Ghost {
    &state.history
}

/// I1.
fn high_watermark_within_log(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).all(|r| r.high_watermark <= r.log_end_offset())
}

/// S1.
fn follower_high_watermark_advances(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).any(|r| matches!(r.role, Role::Follower(_)) && r.high_watermark > 0)
}

/// I2: hachikuji's StrongIsr.
fn strong_isr(model: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return true;
    };
    leaders(model, state).all(|leader| {
        let tp = &leader.partition.topic_partition;
        let Some(p) = controller.partitions.get(tp) else {
            return true;
        };
        p.isr.iter().all(|member| {
            let log = replica_of(state, *member, tp).map(|r| &r.log);
            same_prefix(log, &leader.log, leader.high_watermark)
        })
    })
}

/// I33 (R52–R54). The third clause is what makes an empty ISR recoverable without data loss:
/// a replica leaves the ISR under min.insync.replicas only into the ELR, and leaves both only by
/// an election from the ELR (which moves it back to the ISR), a return to the ISR, an unclean
/// restart (R54, so a replica that restarted still counts), or an unclean election.
fn eligible_leader_replicas_kept(_: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return true;
    };
    let restarted = |b: &BrokerId| {
        controller
            .registration(*b)
            .is_some_and(|r| r.broker_epoch > 0)
    };
    controller.partitions.values().all(|p| {
        let min = p.min_insync_replicas as usize;
        let disjoint = p.elr.iter().all(|b| !p.isr.contains(b));
        let assigned = p.elr.iter().all(|b| p.replicas.contains(b));
        let distinct = p
            .elr
            .iter()
            .enumerate()
            .all(|(i, b)| !p.elr[..i].contains(b));
        let empty_at_min = p.isr.len() < min || p.elr.is_empty();
        let covered = p.unclean_leader_election
            || p.replicas
                .iter()
                .filter(|b| p.isr.contains(b) || p.elr.contains(b) || restarted(b))
                .count()
                >= min;
        disjoint && assigned && distinct && empty_at_min && covered
    })
}

/// S41.
fn replica_in_elr(_: &WatermarkModel, state: &State) -> bool {
    controller(state).is_some_and(|c| c.partitions.values().any(|p| !p.elr.is_empty()))
}

/// The controller's ELR members of each partition whose logs are whole, with their replica of
/// it. With unclean shutdown only members running in the incarnation the controller registered
/// count: a crashed member's log may be cut, and a restarted one's stays cut until it registers
/// and leaves the ELR (R54).
fn whole_elr_members<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = (&'a TopicPartition, Option<&'a Replica>)> + 'a {
    let whole = move |c: &ControllerState, b: BrokerId| {
        !model.knobs.unclean_shutdown
            || c.registration(b)
                .is_some_and(|r| alive_in(state, b, r.broker_epoch))
    };
    controller(state).into_iter().flat_map(move |c| {
        c.partitions.values().flat_map(move |p| {
            p.elr.iter().filter(move |b| whole(c, **b)).map(move |b| {
                (
                    &p.topic_partition,
                    replica_of(state, *b, &p.topic_partition),
                )
            })
        })
    })
}

/// I34 (R52, R28): a replica joins the ELR only when it leaves an ISR under min.insync.replicas,
/// and the HWM does not advance under it, so the ELR is as strong as the ISR (I2).
fn eligible_leader_replicas_hold_committed(model: &WatermarkModel, state: &State) -> bool {
    whole_elr_members(model, state).all(|(tp, member)| {
        leaders(model, state)
            .filter(|l| &l.partition.topic_partition == tp)
            .all(|l| same_prefix(member.map(|r| &r.log), &l.log, l.high_watermark))
    })
}

/// S42.
fn committed_record_in_elr(model: &WatermarkModel, state: &State) -> bool {
    whole_elr_members(model, state).any(|(tp, member)| {
        leaders(model, state).any(|l| {
            &l.partition.topic_partition == tp
                && l.high_watermark > 0
                && member.is_some_and(|r| r.log_end_offset() > 0)
        })
    })
}

/// Broker `broker`'s replica of `tp`, crashed or not (a crashed broker's is what it persisted).
fn replica_of<'a>(state: &'a State, broker: BrokerId, tp: &TopicPartition) -> Option<&'a Replica> {
    state.actor_states[broker as usize]
        .as_broker()?
        .replicas
        .get(tp)
}

/// Whether `log` and `other` hold the same entries (or both none) at every offset below `end`.
/// Iterates instead of looking offsets up: a real run's logs are long (`watermark validate`).
fn same_prefix(log: Option<&Log>, other: &Log, end: Offset) -> bool {
    let end = end as usize;
    let (a, b) = (
        log.map_or(0, |l| l.log_end_offset() as usize).min(end),
        (other.log_end_offset() as usize).min(end),
    );
    if a != b {
        return false;
    }
    match log {
        None => true,
        Some(l) if l == other => true,
        Some(l) => l
            .entries()
            .zip(other.entries())
            .take(a)
            .all(|(x, y)| x == y),
    }
}

/// S2.
fn record_committed(model: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return false;
    };
    leaders(model, state).any(|r| {
        r.high_watermark > 0
            && controller
                .partitions
                .get(&r.partition.topic_partition)
                .is_some_and(|p| p.isr.len() >= 2)
    })
}

/// I3.
fn one_leader_per_epoch(model: &WatermarkModel, state: &State) -> bool {
    let mut seen: Vec<(&TopicPartition, LeaderEpoch)> = Vec::new();
    for r in replicas(model, state).filter(|r| r.is_leader()) {
        let key = (&r.partition.topic_partition, r.leader_epoch());
        if seen.contains(&key) {
            return false;
        }
        seen.push(key);
    }
    true
}

/// S3.
fn leader_change_with_data(model: &WatermarkModel, state: &State) -> bool {
    leaders(model, state).any(|r| {
        (0..r.high_watermark)
            .filter_map(|o| r.log.get(o))
            .any(|e| e.leader_epoch < r.leader_epoch())
    })
}

/// I4.
fn log_epochs_monotonic(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).all(|r| {
        let epochs: Vec<LeaderEpoch> = r.log.entries().map(|e| e.leader_epoch).collect();
        epochs.windows(2).all(|w| w[0] <= w[1])
    })
}

/// S4.
fn log_spans_epochs(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).any(|r| {
        let mut epochs = r.log.entries().map(|e| e.leader_epoch);
        let first = epochs.next();
        epochs.any(|e| Some(e) != first)
    })
}

/// I5.
fn no_append_from_stale_epoch(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::APPEND_FROM_STALE_EPOCH)
}

/// I14.
fn no_append_under_min_isr(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::APPENDED_UNDER_MIN_ISR)
}

/// S17: an acks=all produce in flight to a live leader of its epoch whose ISR is under the
/// minimum: the request R18 refuses.
fn produce_under_min_isr(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        let Msg::Produce(request) = msg else {
            return false;
        };
        !state.crashed[dst]
            && request.acks == Acks::All
            && state.actor_states[dst]
                .as_broker()
                .and_then(|b| b.replicas.get(&request.topic_partition))
                .is_some_and(|r| {
                    r.is_leader() && r.leader_epoch() == request.leader_epoch && r.under_min_isr()
                })
    })
}

/// I16: every follower fetch awaiting its answer from the live leader of the follower's epoch is
/// in flight to it, held by it (R26) or answered in flight. Without retransmission (a lossless
/// network), a fetch forgotten anywhere stops the follower for good.
fn follower_fetch_not_forgotten(model: &WatermarkModel, state: &State) -> bool {
    let messages = in_flight(state);
    model.broker_indices().all(|i| {
        let Some(b) = state.actor_states[i]
            .as_broker()
            .filter(|_| !state.crashed[i])
        else {
            return true;
        };
        b.replicas.iter().all(|(tp, r)| {
            let awaiting = matches!(
                r.role,
                Role::Follower(FollowerState::Fetching {
                    in_flight: true,
                    ..
                })
            );
            let Some(leader) = r.partition.leader.filter(|_| awaiting) else {
                return true;
            };
            let Some(held) = leading_replica(state, leader, tp, r.leader_epoch()) else {
                return true;
            };
            let fetcher = Id::from(i);
            held.leader_state().is_some_and(|l| {
                l.delayed_fetches
                    .iter()
                    .any(|f| f.client == fetcher && f.request.topic_partition == *tp)
            }) || messages.iter().any(|(dst, msg)| match msg {
                Msg::Fetch(f) => {
                    *dst == leader as usize
                        && f.replica_id == Some(i as BrokerId)
                        && f.broker_epoch == b.broker_epoch
                        && f.topic_partition == *tp
                }
                Msg::FetchResponse(f) => *dst == i && f.topic_partition == *tp,
                _ => false,
            })
        })
    })
}

/// I27: I16's producer side. A producer's first unanswered batch is answered in order (R38), so
/// it is the one whose answer the producer waits for; a later one may have been answered early
/// and wait for it. Without a request timeout nothing resends it, so a request or answer that
/// a leader dropped would leave the producer waiting for good.
fn produce_not_forgotten(model: &WatermarkModel, state: &State) -> bool {
    let messages = in_flight(state);
    model.producer_indices().all(|i| {
        let (Node::Producer(producer), Some(p)) =
            (model.node(i), state.actor_states[i].as_producer())
        else {
            return true;
        };
        let Some(head) = p.in_flight.first().filter(|f| f.sent && !state.crashed[i]) else {
            return true;
        };
        let partition = producer.partition_of(head.batch);
        let Some(&(_, leader, epoch)) = p.leaders.iter().find(|(q, _, _)| *q == partition) else {
            return true;
        };
        let tp = TopicPartition::new(&model.topic, partition);
        let Some(held) = leading_replica(state, leader, &tp, epoch) else {
            return true;
        };
        let client = Id::from(i);
        let wanted = HeldRequest::Produce {
            batch: head.batch,
            attempt: head.attempt,
        };
        held.leader_state().is_some_and(|l| {
            l.delayed_produces
                .iter()
                .any(|d| d.client == client && d.request == wanted)
        }) || messages.iter().any(|(dst, msg)| match msg {
            Msg::Produce(r) => {
                *dst == leader as usize && r.batch == head.batch && r.attempt == head.attempt
            }
            Msg::ProduceResponse(r) => {
                *dst == i && r.batch == head.batch && r.attempt == head.attempt
            }
            _ => false,
        })
    })
}

/// I28: the producer's own bounds (R38, R39).
fn producer_within_limits(model: &WatermarkModel, state: &State) -> bool {
    let window = model.knobs.max_in_flight_requests as usize;
    let attempts = 1..=model.knobs.producer_attempts_max;
    producers(state).all(|p| p.in_flight.len() <= window)
        && in_flight(state).into_iter().all(|(_, msg)| match msg {
            Msg::Produce(r) => attempts.contains(&r.attempt),
            _ => true,
        })
}

/// S34.
fn batch_given_up(_: &WatermarkModel, state: &State) -> bool {
    producers(state).any(|p| p.failed > 0)
}

/// S35: S18 after a batch was answered.
fn pipeline_refilled(_: &WatermarkModel, state: &State) -> bool {
    producers(state).any(|p| p.next_record > 0 && batches_sent(p) >= 2)
}

/// S33.
fn produce_held(model: &WatermarkModel, state: &State) -> bool {
    leaders(model, state).any(|r| {
        r.leader_state()
            .is_some_and(|l| !l.delayed_produces.is_empty())
    })
}

/// Broker `leader`'s replica of `tp`, if that broker is running and leads it in `epoch`.
fn leading_replica<'a>(
    state: &'a State,
    leader: BrokerId,
    tp: &TopicPartition,
    epoch: LeaderEpoch,
) -> Option<&'a Replica> {
    if state.crashed[leader as usize] {
        return None;
    }
    replica_of(state, leader, tp).filter(|r| r.is_leader() && r.leader_epoch() == epoch)
}

/// The fetches held by running leaders, with the replica holding each.
fn held_fetches<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
) -> impl Iterator<Item = (&'a Replica, &'a DelayedFetch)> + 'a {
    leaders(model, state)
        .filter_map(|r| r.leader_state().map(|l| (r, l)))
        .flat_map(|(r, l)| l.delayed_fetches.iter().map(move |f| (r, f)))
}

/// I17: Kafka's DelayedFetch completes as soon as it can; a fetch held with something to return
/// waits for nothing (and, without a timeout, for ever).
fn held_fetch_waits_for_data(model: &WatermarkModel, state: &State) -> bool {
    held_fetches(model, state).all(|(r, f)| {
        let request = &f.request;
        match request.replica_id {
            Some(_) => {
                request.fetch_offset >= r.log_end_offset()
                    && r.high_watermark <= request.high_watermark
            }
            None => request.fetch_offset >= r.high_watermark,
        }
    })
}

/// S20.
fn consumer_fetch_held(model: &WatermarkModel, state: &State) -> bool {
    held_fetches(model, state).any(|(_, f)| f.request.replica_id.is_none())
}

/// S19.
fn follower_fetch_held(model: &WatermarkModel, state: &State) -> bool {
    held_fetches(model, state).any(|(_, f)| f.request.replica_id.is_some())
}

/// I18: along each member's history, every `Resumed` names a committed offset at least the
/// latest one acknowledged before it.
fn committed_offset_survives(model: &WatermarkModel, state: &State) -> bool {
    model.consumer_indices().all(|i| {
        let mut acknowledged: Option<Offset> = None;
        state.history.group_events(i).iter().all(|e| match e {
            GroupEvent::Committed { offset, .. } => {
                acknowledged = acknowledged.max(Some(*offset));
                true
            }
            GroupEvent::Resumed { committed, .. } => *committed >= acknowledged,
        })
    })
}

/// S22.
fn resumed_at_commit(model: &WatermarkModel, state: &State) -> bool {
    model.consumer_indices().any(|i| {
        let events = state.history.group_events(i);
        let resumes = events
            .iter()
            .filter(|e| matches!(e, GroupEvent::Resumed { .. }));
        resumes.skip(1).any(|e| {
            matches!(
                e,
                GroupEvent::Resumed {
                    committed: Some(_),
                    ..
                }
            )
        })
    })
}

/// S24.
fn commit_on_new_coordinator(model: &WatermarkModel, state: &State) -> bool {
    leaders(model, state)
        .filter(|r| r.partition.topic_partition.topic.as_str() == OFFSETS_TOPIC)
        .any(|r| {
            r.log.entries().take(r.high_watermark as usize).any(|e| {
                e.leader_epoch < r.leader_epoch()
                    && matches!(
                        GroupRecord::parse(&e.record),
                        Some(GroupRecord::Offset { .. })
                    )
            })
        })
}

/// The replica of `__consumer_offsets` that broker actor `dst` leads and would write group
/// records to now (R58's refusals aside from R18): running, loaded (its HWM has reached its
/// epoch's start).
fn loaded_coordinator(state: &State, dst: usize) -> Option<&Replica> {
    if state.crashed[dst] {
        return None;
    }
    state.actor_states[dst]
        .as_broker()?
        .replicas
        .iter()
        .map(|(_, r)| r)
        .find(|r| {
            r.partition.topic_partition.topic.as_str() == OFFSETS_TOPIC
                && r.is_leader()
                && r.high_watermark >= r.leader_state().map_or(0, |l| l.epoch_start_offset)
        })
}

/// S38.
fn group_write_under_min_isr(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        matches!(msg, Msg::JoinGroup { .. } | Msg::OffsetCommit { .. })
            && loaded_coordinator(state, dst).is_some_and(|r| r.under_min_isr())
    })
}

/// I29.
fn group_writes_fenced(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::GROUP_WRITE_UNFENCED)
}

/// S36: an OffsetCommit in flight to a coordinator that would write it, whose log holds a newer
/// generation of the member than the commit's.
fn zombie_commit_delivered(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        let Msg::OffsetCommit {
            group,
            topic_partition,
            generation,
            ..
        } = msg
        else {
            return false;
        };
        loaded_coordinator(state, dst).is_some_and(|r| {
            !r.under_min_isr()
                && group_view(&r.log, r.log_end_offset(), group, topic_partition).generation
                    > *generation
        })
    })
}

/// I30.
fn commit_acknowledged_once_committed(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::COMMIT_ACKNOWLEDGED_UNCOMMITTED)
}

/// I31.
fn resumed_only_after_joining(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::RESUMED_OUT_OF_STEP)
}

/// I32.
fn left_consuming_only_when_told(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::LEFT_CONSUMING_UNTOLD)
}

/// S40: a member that resumed in this incarnation (the ghost knows where its next read is) is
/// finding its coordinator or joining again: it left consuming.
fn member_rejoining(model: &WatermarkModel, state: &State) -> bool {
    model.consumer_indices().any(|i| {
        let resumed = ghost(state)
            .histories()
            .next_read
            .get(i)
            .is_some_and(|n| n.is_some());
        resumed
            && crate::ghost::member(state, i)
                .is_some_and(|m| matches!(m.step, MemberStep::FindCoordinator | MemberStep::Join))
    })
}

/// S39.
fn stale_offset_answer_in_flight(model: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        matches!(
            msg,
            Msg::OffsetFetchResponse { .. } | Msg::ListOffsetsResponse { .. }
        ) && model.consumer_indices().contains(&dst)
            && !crate::ghost::awaits_offset(state, dst)
    })
}

/// S37.
fn commit_held(model: &WatermarkModel, state: &State) -> bool {
    leaders(model, state).any(|r| {
        r.leader_state().is_some_and(|l| {
            l.delayed_produces
                .iter()
                .any(|d| matches!(d.request, HeldRequest::Commit { .. }))
        })
    })
}

/// I19: from the group's first acknowledged commit on, each resume lands where everything
/// before it (from that commit) has been read. Checked in every state, so at the moment of each
/// resume against what had been read by then. Before its first commit a group has no durable
/// place to come back to, and `latest` starting a restarted member at the end is what `latest`
/// means.
fn at_least_once(model: &WatermarkModel, state: &State) -> bool {
    model.consumer_indices().all(|i| {
        let events = state.history.group_events(i);
        let Some(first) = events
            .iter()
            .position(|e| matches!(e, GroupEvent::Committed { .. }))
        else {
            return true;
        };
        let GroupEvent::Committed { offset: from, .. } = events[first] else {
            unreachable!("found above")
        };
        let read: std::collections::BTreeSet<Offset> =
            state.history.consumed(i).iter().map(|c| c.offset).collect();
        events[first..].iter().all(|e| match e {
            GroupEvent::Resumed { position, .. } => (from..*position).all(|o| read.contains(&o)),
            GroupEvent::Committed { .. } => true,
        })
    })
}

/// S23.
fn reprocessed(model: &WatermarkModel, state: &State) -> bool {
    model.consumer_indices().any(|i| {
        let consumed = state.history.consumed(i);
        consumed
            .iter()
            .enumerate()
            .any(|(n, c)| consumed[..n].iter().any(|d| d.offset == c.offset))
    })
}

/// I15: in offset order, each producer id's sequences in a log are 0, 1, 2, ...
fn producer_order_kept(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).all(|r| {
        let mut next: Vec<(ProducerId, Sequence)> = Vec::new();
        r.log
            .entries()
            .filter_map(|e| e.record.producer)
            .all(
                |stamp| match next.iter_mut().find(|(p, _)| *p == stamp.producer_id) {
                    Some((_, expected)) if *expected == stamp.sequence => {
                        *expected += 1;
                        true
                    }
                    Some(_) => false,
                    None => {
                        next.push((stamp.producer_id, stamp.sequence + 1));
                        stamp.sequence == 0
                    }
                },
            )
    })
}

/// S18: a producer with two batches sent and not answered.
fn pipelined_batches_unanswered(_: &WatermarkModel, state: &State) -> bool {
    producers(state).any(|p| batches_sent(p) >= 2)
}

/// Every producer's state, crashed or not.
fn producers(state: &State) -> impl Iterator<Item = &ProducerState> {
    state.actor_states.iter().filter_map(|a| a.as_producer())
}

/// A producer's batches sent and not answered.
fn batches_sent(p: &ProducerState) -> usize {
    p.in_flight.iter().filter(|f| f.sent).count()
}

/// Every message in flight, with its destination's actor index.
pub(crate) fn in_flight(state: &State) -> Vec<(usize, &Msg)> {
    match &state.network {
        Network::UnorderedDuplicating(set, _) => {
            set.iter().map(|e| (usize::from(e.dst), &e.msg)).collect()
        }
        Network::UnorderedNonDuplicating(multiset) => multiset
            .keys()
            .map(|e| (usize::from(e.dst), &e.msg))
            .collect(),
        Network::Ordered(channels) => channels
            .iter()
            .flat_map(|((_, dst), msgs)| msgs.iter().map(move |m| (usize::from(*dst), m)))
            .collect(),
    }
}

/// S5.
fn stale_fetch_response_in_flight(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        let Msg::FetchResponse(response) = msg else {
            return false;
        };
        let Some(b) = state.actor_states[dst].as_broker() else {
            return false;
        };
        let stale = b
            .replicas
            .get(&response.topic_partition)
            .is_some_and(|r| response.leader_epoch < r.leader_epoch());
        stale && matches!(response.result, FetchResult::Records { ref records, .. } if !records.is_empty())
    })
}

/// I26.
fn consumer_reads_in_order(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::READ_OUT_OF_POSITION)
}

/// S32: a member resumed twice (a restart, or a rejoin) and read a record after the second
/// time, which its next read, past the position it resumed at, shows.
fn read_after_resume(model: &WatermarkModel, state: &State) -> bool {
    let history = &state.history;
    model.consumer_indices().any(|i| {
        let resumes: Vec<Offset> = history
            .group_events(i)
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Resumed { position, .. } => Some(*position),
                GroupEvent::Committed { .. } => None,
            })
            .collect();
        resumes.len() >= 2
            && history
                .histories()
                .next_read
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|next| next > resumes[resumes.len() - 1])
    })
}

/// The records a fetch response carries (none for an error or a divergence).
fn fetched_records(msg: &Msg) -> Option<&[LogEntry]> {
    match msg {
        Msg::FetchResponse(FetchResponse {
            result: FetchResult::Records { records, .. },
            ..
        }) => Some(records),
        _ => None,
    }
}

/// The records a produce request carries.
fn produced_records(msg: &Msg) -> Option<&[Record]> {
    match msg {
        Msg::Produce(request) => Some(&request.records),
        _ => None,
    }
}

/// Whether `records` fit in `bytes_max`, or are one record: KIP-74's limit, and batch.size's.
fn within_bytes<'a>(records: impl ExactSizeIterator<Item = &'a Record>, bytes_max: u32) -> bool {
    records.len() <= 1 || records.map(Record::size_bytes).sum::<usize>() <= bytes_max as usize
}

/// I24: every fetch response in flight respects the fetch size (R26, R27).
fn fetch_within_bytes(model: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().all(|(_, msg)| {
        fetched_records(msg).is_none_or(|records| {
            within_bytes(
                records.iter().map(|e| &e.record),
                model.knobs.fetch_bytes_max,
            )
        })
    })
}

/// S30.
fn fetch_response_batched(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state)
        .into_iter()
        .any(|(_, msg)| fetched_records(msg).is_some_and(|records| records.len() >= 2))
}

/// I25: every produce request in flight respects batch.size (R38).
fn batch_within_bytes(model: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().all(|(_, msg)| {
        produced_records(msg)
            .is_none_or(|records| within_bytes(records.iter(), model.knobs.batch_bytes_max))
    })
}

/// S31.
fn produce_batched(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state)
        .into_iter()
        .any(|(_, msg)| produced_records(msg).is_some_and(|records| records.len() >= 2))
}

/// I6.
fn no_stale_controller_request(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::STALE_CONTROLLER_REQUEST_APPLIED)
}

/// S21: I6's other side. A restarted controller must be obeyed, or I6 holds because brokers
/// fence everything.
fn restarted_controller_obeyed(model: &WatermarkModel, state: &State) -> bool {
    brokers(model, state).any(|(b, crashed)| !crashed && b.controller_epoch >= 2)
}

/// S6.
fn stale_controller_request_in_flight(_: &WatermarkModel, state: &State) -> bool {
    in_flight(state).into_iter().any(|(dst, msg)| {
        let (epoch, incarnation) = match msg {
            Msg::LeaderAndIsr {
                controller_epoch,
                broker_epoch,
                ..
            }
            | Msg::UpdateMetadata {
                controller_epoch,
                broker_epoch,
                ..
            } => (*controller_epoch, *broker_epoch),
            _ => return false,
        };
        state.actor_states[dst]
            .as_broker()
            .is_some_and(|b| epoch < b.controller_epoch && incarnation == b.broker_epoch)
    })
}

/// Whether every live leader of `tp` in epoch `epoch` or later holds `check` at `offset`.
fn later_leaders_hold(
    model: &WatermarkModel,
    state: &State,
    tp: &TopicPartition,
    epoch: LeaderEpoch,
    offset: Offset,
    check: impl Fn(&LogEntry) -> bool,
) -> bool {
    leaders(model, state)
        .filter(|r| &r.partition.topic_partition == tp && r.leader_epoch() >= epoch)
        .all(|r| r.log.get(offset).is_some_and(&check))
}

/// Whether some live leader of `tp` in an epoch after `epoch` holds `check` at `offset`.
fn newer_leader_holds(
    model: &WatermarkModel,
    state: &State,
    tp: &TopicPartition,
    epoch: LeaderEpoch,
    offset: Offset,
    check: impl Fn(&LogEntry) -> bool,
) -> bool {
    leaders(model, state)
        .filter(|r| &r.partition.topic_partition == tp && r.leader_epoch() > epoch)
        .any(|r| r.log.get(offset).is_some_and(&check))
}

fn acks(model: &WatermarkModel, state: &State) -> Vec<watermark_model::producer::Ack> {
    model
        .producer_indices()
        .flat_map(|i| state.history.acked(i).iter().cloned())
        .collect()
}

/// I7.
fn acknowledged_records_survive(model: &WatermarkModel, state: &State) -> bool {
    acks(model, state).iter().all(|a| {
        later_leaders_hold(
            model,
            state,
            &a.topic_partition,
            a.leader_epoch,
            a.offset,
            |e| e.record.value == a.value,
        )
    })
}

/// S7.
fn acknowledged_record_on_new_leader(model: &WatermarkModel, state: &State) -> bool {
    acks(model, state).iter().any(|a| {
        newer_leader_holds(
            model,
            state,
            &a.topic_partition,
            a.leader_epoch,
            a.offset,
            |e| e.record.value == a.value,
        )
    })
}

/// I8.
fn committed_records_survive(model: &WatermarkModel, state: &State) -> bool {
    let g = ghost(state);
    !g.has_violation(violation::COMMITTED_RECORD_CHANGED)
        && model.topic_partitions().iter().all(|tp| {
            g.histories().committed[model.partition_index(tp).expect("a model partition")]
                .iter()
                .enumerate()
                .all(|(o, c)| {
                    later_leaders_hold(model, state, tp, c.leader_epoch, o as Offset, |e| {
                        *e == c.entry
                    })
                })
        })
}

/// S8.
fn committed_record_on_new_leader(model: &WatermarkModel, state: &State) -> bool {
    let g = ghost(state);
    model.topic_partitions().iter().any(|tp| {
        g.histories().committed[model.partition_index(tp).expect("a model partition")]
            .iter()
            .enumerate()
            .any(|(o, c)| {
                newer_leader_holds(model, state, tp, c.leader_epoch, o as Offset, |e| {
                    *e == c.entry
                })
            })
    })
}

/// Replicas of `tp` on every broker.
fn replicas_of<'a>(
    model: &'a WatermarkModel,
    state: &'a State,
    tp: &'a TopicPartition,
) -> Vec<&'a Replica> {
    replicas(model, state)
        .filter(|r| &r.partition.topic_partition == tp)
        .collect()
}

/// I9.
fn log_matching(model: &WatermarkModel, state: &State) -> bool {
    model.topic_partitions().iter().all(|tp| {
        let rs = replicas_of(model, state, tp);
        rs.iter().enumerate().all(|(i, a)| {
            rs[i + 1..].iter().all(|b| {
                if a.log == b.log {
                    return true;
                }
                let common = a.log_end_offset().min(b.log_end_offset());
                // The last offset where both hold the same epoch: everything up to it must agree.
                let last_match = (0..common).rev().find(|o| {
                    a.log.get(*o).map(|e| e.leader_epoch) == b.log.get(*o).map(|e| e.leader_epoch)
                });
                last_match.is_none_or(|o| same_prefix(Some(&a.log), &b.log, o + 1))
            })
        })
    })
}

/// S9.
fn logs_diverge(model: &WatermarkModel, state: &State) -> bool {
    model.topic_partitions().iter().any(|tp| {
        let rs = replicas_of(model, state, tp);
        rs.iter().enumerate().any(|(i, a)| {
            rs[i + 1..].iter().any(|b| {
                a.log
                    .entries()
                    .zip(b.log.entries())
                    .any(|(x, y)| x.leader_epoch != y.leader_epoch)
            })
        })
    })
}

fn consumed(model: &WatermarkModel, state: &State) -> Vec<(TopicPartition, Consumed)> {
    model
        .consumer_indices()
        .filter_map(|i| {
            let tp = match model.node(i) {
                Node::Consumer(c) => c.config.topic_partition.clone(),
                _ => return None,
            };
            let consumed = state.history.consumed(i).iter();
            Some(consumed.map(move |r| (tp.clone(), r.clone())))
        })
        .flatten()
        .collect()
}
use watermark_model::consumer::Consumed;
use watermark_model::group::{group_view, GroupEvent, GroupRecord};

/// I10.
fn consumer_reads_committed(model: &WatermarkModel, state: &State) -> bool {
    let g = ghost(state);
    consumed(model, state).iter().all(|(tp, c)| {
        g.histories().committed[model.partition_index(tp).expect("a model partition")]
            .get(c.offset as usize)
            .is_some_and(|committed| committed.entry == c.entry)
    })
}

/// S10.
fn consumer_reads_record(model: &WatermarkModel, state: &State) -> bool {
    !consumed(model, state).is_empty()
}

/// I11.
fn consumed_records_stable(model: &WatermarkModel, state: &State) -> bool {
    consumed(model, state).iter().all(|(tp, c)| {
        later_leaders_hold(model, state, tp, c.leader_epoch, c.offset, |e| {
            *e == c.entry
        })
    })
}

/// S11.
fn consumed_record_on_new_leader(model: &WatermarkModel, state: &State) -> bool {
    consumed(model, state).iter().any(|(tp, c)| {
        newer_leader_holds(model, state, tp, c.leader_epoch, c.offset, |e| {
            *e == c.entry
        })
    })
}

/// I12.
fn no_duplicate_sequence(model: &WatermarkModel, state: &State) -> bool {
    replicas(model, state).all(|r| {
        // Sorted, a duplicate sits next to its twin: O(n log n) for a real run's long logs.
        let mut stamps: Vec<ProducerSequence> =
            r.log.entries().filter_map(|e| e.record.producer).collect();
        stamps.sort_unstable();
        stamps.windows(2).all(|w| w[0] != w[1])
    })
}

/// S12.
fn retry_of_held_batch(_: &WatermarkModel, state: &State) -> bool {
    ghost(state).has_event(event::DUPLICATE_PRODUCE)
}

/// S13.
fn replica_truncates(_: &WatermarkModel, state: &State) -> bool {
    ghost(state).has_event(event::TRUNCATED)
}

/// I36 (R29), latched by the ghost on a leader's IsrShrink step.
fn caught_up_follower_kept(_: &WatermarkModel, state: &State) -> bool {
    !ghost(state).has_violation(violation::CAUGHT_UP_FOLLOWER_DROPPED)
}

/// S44: some leader waits on an AlterPartition that drops a member of its ISR. Read from the
/// state, not latched by the ghost, so that it adds no state.
fn follower_dropped_from_isr(model: &WatermarkModel, state: &State) -> bool {
    brokers(model, state).any(|(b, crashed)| {
        !crashed
            && b.replicas.values().any(|r| {
                r.leader_state()
                    .and_then(|l| l.pending_isr.as_ref())
                    .is_some_and(|p| r.partition.isr.iter().any(|m| !p.contains(m)))
            })
    })
}

/// S14.
fn isr_shrink_and_expand(_: &WatermarkModel, state: &State) -> bool {
    ghost(state).has_event(event::ISR_EXPANDED)
}

/// S15.
fn record_acknowledged(model: &WatermarkModel, state: &State) -> bool {
    !acks(model, state).is_empty()
}

/// I13: every partition state a broker holds, as a replica or as metadata, is the controller's
/// state of that partition or an older one: nothing newer, and nothing else at the same epochs.
fn metadata_from_controller(model: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return true;
    };
    brokers(model, state).all(|(b, _)| {
        b.replicas
            .values()
            .map(|r| &r.partition)
            .chain(b.metadata.values())
            .all(|p| {
                controller
                    .partitions
                    .get(&p.topic_partition)
                    .is_some_and(|c| {
                        let held = (p.leader_epoch, p.partition_epoch);
                        let decided = (c.leader_epoch, c.partition_epoch);
                        held < decided || (held == decided && p == c)
                    })
            })
    })
}

/// A broker's state of partition `tp`: its replica's, or the metadata it keeps of a partition
/// it does not replicate.
fn known_partition<'a>(b: &'a BrokerState, tp: &TopicPartition) -> Option<&'a PartitionState> {
    b.replicas
        .get(tp)
        .map(|r| &r.partition)
        .or_else(|| b.metadata.get(tp))
}

/// The metadata offset of partition `tp`'s newest change (R50; 0: bootstrapped).
fn changed_at(controller: &ControllerState, tp: &TopicPartition) -> MetadataOffset {
    controller.partition_offsets.get(tp).copied().unwrap_or(0)
}

/// I35 (R49, R51). A broker heartbeats with the metadata offset it holds and is answered with
/// the changes after it (R49): a change counted in that offset but not applied would never reach
/// it. So every partition whose newest change is at or before the offset is held exactly as the
/// controller decided it. Crashed brokers too: their offsets were honest when they stopped, and
/// the controller's changes since are newer.
fn metadata_offset_applied(model: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return true;
    };
    brokers(model, state).all(|(b, _)| {
        b.metadata_offset.is_none_or(|held| {
            controller.partitions.iter().all(|(tp, decided)| {
                changed_at(controller, tp) > held || known_partition(b, tp) == Some(decided)
            })
        })
    })
}

/// S43: some broker holds the newest state of a partition changed after its metadata offset,
/// and lacks an older change of another: the gap I35 keeps it from counting.
fn metadata_past_gap_held(model: &WatermarkModel, state: &State) -> bool {
    let Some(controller) = controller(state) else {
        return false;
    };
    brokers(model, state).any(|(b, crashed)| {
        let Some(held) = b.metadata_offset.filter(|_| !crashed) else {
            return false;
        };
        let unheld_changes = || {
            controller
                .partitions
                .iter()
                .filter(move |(tp, _)| changed_at(controller, tp) > held)
        };
        unheld_changes().any(|(missed, decided)| {
            known_partition(b, missed) != Some(decided)
                && unheld_changes().any(|(tp, newer)| {
                    changed_at(controller, tp) > changed_at(controller, missed)
                        && known_partition(b, tp) == Some(newer)
                })
        })
    })
}

/// S16.
fn lost_metadata_repaired(_: &WatermarkModel, state: &State) -> bool {
    ghost(state).has_event(event::METADATA_REPAIRED)
}

/// S45: L0's condition, after some process crashed.
fn recovered_after_crash(model: &WatermarkModel, state: &State) -> bool {
    let ghost = &state.history;
    ghost.broker_crashes + ghost.controller_crashes + ghost.consumer_crashes > 0
        && recovery::cluster_recovered(model, state)
}
