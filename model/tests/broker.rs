//! Broker handlers, R10–R36, R44: state and message in, state and commands out.

mod support;
use support::*;
use watermark_model::*;

fn leader_state(state: &NodeState) -> &watermark_model::broker::LeaderState {
    replica(state).leader_state().expect("leader")
}

/// Broker 1, leader of t-0 in epoch 0 with the given log and HWM, under `protocol`.
fn leader_with(
    protocol: Protocol,
    entries: &[(LeaderEpoch, &str)],
    hwm: Offset,
) -> (Node, NodeState) {
    leader_in(&cluster(protocol), entries, hwm)
}

fn leader_in(
    cluster: &std::sync::Arc<ClusterConfig>,
    entries: &[(LeaderEpoch, &str)],
    hwm: Offset,
) -> (Node, NodeState) {
    let b = broker(1, cluster);
    let s = fresh(&b, 1);
    let s = with_leader_log(&s, log(entries), hwm);
    (b, s)
}

// --- R10–R16: control ---

#[test]
fn r10_fresh_brokers_take_their_bootstrapped_roles() {
    let c = cluster(Protocol::Kip320);
    let step = start(&broker(1, &c), 1, None);
    assert!(replica(step.state()).is_leader());
    assert!(step.saved());
    let step = start(&broker(2, &c), 2, None);
    assert!(matches!(
        replica(step.state()).role,
        Role::Follower(broker::FollowerState::Fetching {
            fetch_offset: 0,
            in_flight: true
        })
    ));
    match step.sends_to(1).as_slice() {
        [Msg::Fetch(f)] => {
            assert_eq!(f.replica_id, Some(2));
            assert_eq!(
                f.current_leader_epoch,
                Some(0),
                "KIP-320 fetches carry the epoch"
            );
        }
        other => panic!("expected one fetch to the leader, got {other:?}"),
    }
}

#[test]
fn r10_a_recovered_broker_loads_its_log_bumps_its_epoch_and_registers() {
    let c = cluster(Protocol::Kip320);
    let b = broker(2, &c);
    let mut s = fresh(&b, 2).as_broker().unwrap().clone();
    {
        let r = s.replicas.get_mut(&tp()).unwrap();
        r.log = log(&[(0, "a"), (0, "b")]);
        r.high_watermark = 1;
    }
    let step = start(&b, 2, Some(Storage::Broker(s.storage().into())));
    let s = step.broker();
    assert_eq!(s.broker_epoch, 1);
    let r = replica(step.state());
    assert_eq!((r.log.log_end_offset(), r.high_watermark), (2, 1));
    assert!(matches!(r.role, Role::Recovering));
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::BrokerHeartbeat {
            broker_id: 2,
            broker_epoch: 1,
            metadata_offset: None,
        }]
    ));
    assert!(step.save_precedes_sends());
}

#[test]
fn r11_an_alter_partition_answer_for_an_earlier_incarnation_is_not_taken_before_registration() {
    // Broker 1 led with ISR [1] and restarted (perhaps after a power loss, with a shorter log).
    // The answer to its previous incarnation's AlterPartition is still in the network; taken
    // by the recovering replica, it made the broker lead again before the controller knew of
    // the restart (found with KIP-966's matrix row).
    let c = cluster(Protocol::Kip320);
    let b = broker(1, &c);
    let mut stored = fresh(&b, 1).as_broker().unwrap().clone();
    stored.replicas.get_mut(&tp()).unwrap().partition = partition(Some(1), 0, 2, &[1]);
    let step = start(&b, 1, Some(Storage::Broker(stored.storage().into())));
    let s = step.next.clone().unwrap();
    assert!(!s.as_broker().unwrap().registered);
    let answer = Msg::AlterPartitionResponse {
        controller_epoch: 1,
        topic_partition: tp(),
        result: Err(ErrorCode::IneligibleReplica),
        current: Some(std::sync::Arc::new(partition(Some(1), 0, 2, &[1]))),
        base_metadata_offset: Some(0),
        metadata_offset: 2,
    };
    let step = deliver(&b, 1, &s, CONTROLLER, answer);
    let after_answer = after(&s, &step);
    assert!(
        matches!(replica(&after_answer).role, Role::Recovering),
        "the replica stays recovering"
    );
    assert!(step.sends().is_empty());
}

#[test]
fn r11_controller_requests_from_an_older_controller_epoch_or_incarnation_are_rejected() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let s = after(
        &s,
        &deliver(
            &b,
            2,
            &s,
            CONTROLLER,
            leader_and_isr(2, 0, partition(Some(1), 0, 1, &[1, 2])),
        ),
    );
    assert_eq!(s.as_broker().unwrap().controller_epoch, 2);
    let stale = leader_and_isr(1, 0, partition(Some(3), 1, 2, &[3]));
    assert!(deliver(&b, 2, &s, CONTROLLER, stale).is_noop());
    let other_incarnation = leader_and_isr(2, 5, partition(Some(3), 1, 2, &[3]));
    assert!(deliver(&b, 2, &s, CONTROLLER, other_incarnation).is_noop());
}

#[test]
fn r12_partition_states_that_are_not_newer_are_ignored() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let same = leader_and_isr(1, 0, partition(Some(1), 0, 0, &[1, 2, 3]));
    let step = deliver(&b, 2, &s, CONTROLLER, same);
    // The controller epoch is news (0 -> 1); the partition is not.
    assert_eq!(replica(step.state()), replica(&s));
}

#[test]
fn r12_a_recovering_replica_takes_the_state_it_already_stored() {
    let c = cluster(Protocol::Kip320);
    let b = broker(2, &c);
    let stored = fresh(&b, 2).as_broker().unwrap().storage();
    let s = start(&b, 2, Some(Storage::Broker(stored.into())))
        .next
        .unwrap();
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        leader_and_isr(1, 1, partition(Some(1), 0, 0, &[1, 2, 3])),
    );
    assert!(matches!(replica(step.state()).role, Role::Follower(_)));
    assert!(step.sends_to(1).iter().any(|m| matches!(m, Msg::Fetch(_))));
}

#[test]
fn r13_an_isr_change_under_the_same_leader_lets_the_hwm_advance() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    // acks=all with ISR {1,2,3}: held until 2 and 3 have the record.
    let s = after(
        &s,
        &deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0)),
    );
    let s = after(
        &s,
        &deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0))),
    );
    assert_eq!(replica(&s).high_watermark, 0, "broker 3 has not fetched");
    // The controller drops 3 from the ISR: the HWM passes the record and the producer is told.
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1, 2])),
    );
    assert_eq!(replica(step.state()).high_watermark, 1);
    assert_eq!(produce_result(&step.sends_to(PRODUCER)[0]), Ok(0));
    assert!(step.save_precedes_sends());
}

#[test]
fn r14_a_new_leader_starts_its_epoch_at_its_log_end_and_forgets_follower_progress() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let mut s = fresh(&b, 2).as_broker().unwrap().clone();
    s.replicas.get_mut(&tp()).unwrap().log = log(&[(0, "a"), (0, "b")]);
    let s = NodeState::Broker(s);
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        leader_and_isr(1, 0, partition(Some(2), 1, 1, &[2, 3])),
    );
    let l = leader_state(step.state());
    assert_eq!(l.epoch_start_offset, 2);
    assert!(l.followers.iter().all(|p| p.log_end_offset.is_none()));
}

#[test]
fn r15_losing_leadership_fails_held_produce_requests() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let s = after(
        &s,
        &deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0)),
    );
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        leader_and_isr(1, 0, partition(Some(2), 1, 1, &[2, 3])),
    );
    assert_eq!(
        produce_result(&step.sends_to(PRODUCER)[0]),
        Err(ErrorCode::NotLeaderOrFollower)
    );
    assert!(matches!(replica(step.state()).role, Role::Follower(_)));
}

#[test]
fn r15_becoming_a_follower_depends_on_the_revision() {
    let ps = partition(Some(2), 1, 1, &[2, 3]);
    let base = |protocol| {
        let b = broker(1, &cluster(protocol));
        let s = with_leader_log(&fresh(&b, 1), log(&[(0, "a"), (0, "b")]), 1);
        (b, s)
    };
    // hwm-truncation: truncate to the HWM, fetch with no epochs.
    let (b, s) = base(Protocol::HwmTruncation);
    let step = deliver(&b, 1, &s, CONTROLLER, leader_and_isr(1, 0, ps.clone()));
    assert_eq!(replica(step.state()).log.log_end_offset(), 1);
    match step.sends_to(2).as_slice() {
        [Msg::Fetch(f)] => assert_eq!(
            (f.fetch_offset, f.last_fetched_epoch, f.current_leader_epoch),
            (1, None, None)
        ),
        other => panic!("{other:?}"),
    }
    // kip-101: ask for the end of the latest epoch.
    let (b, s) = base(Protocol::Kip101);
    let step = deliver(&b, 1, &s, CONTROLLER, leader_and_isr(1, 0, ps.clone()));
    assert_eq!(replica(step.state()).log.log_end_offset(), 2);
    assert!(matches!(
        step.sends_to(2).as_slice(),
        [Msg::OffsetsForLeaderEpoch {
            leader_epoch: 0,
            current_leader_epoch: None,
            ..
        }]
    ));
    // kip-320: fetch with the last fetched epoch and the current leader epoch.
    let (b, s) = base(Protocol::Kip320);
    let step = deliver(&b, 1, &s, CONTROLLER, leader_and_isr(1, 0, ps));
    match step.sends_to(2).as_slice() {
        [Msg::Fetch(f)] => assert_eq!(
            (f.fetch_offset, f.last_fetched_epoch, f.current_leader_epoch),
            (2, Some(0), Some(1))
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn r16_a_broker_told_it_is_fenced_registers_again() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let fenced = heartbeat_response(1, 0, true, (Some(0), 0), vec![]);
    let step = deliver(&b, 2, &s, CONTROLLER, fenced.clone());
    assert!(!step.broker().registered);
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::BrokerHeartbeat {
            broker_id: 2,
            broker_epoch: 0,
            metadata_offset: Some(0),
        }]
    ));
    // Controller epoch 0 is not news to this broker; the answer is for another incarnation.
    let other_incarnation = heartbeat_response(0, 9, true, (Some(0), 0), vec![]);
    assert!(deliver(&b, 2, &s, CONTROLLER, other_incarnation).is_noop());
}

fn heartbeat_response(
    controller_epoch: u32,
    broker_epoch: u32,
    is_fenced: bool,
    (base_metadata_offset, metadata_offset): (Option<MetadataOffset>, MetadataOffset),
    partitions: Vec<PartitionState>,
) -> Msg {
    Msg::BrokerHeartbeatResponse {
        controller_epoch,
        broker_epoch,
        is_fenced,
        base_metadata_offset,
        metadata_offset,
        partitions: partitions.into(),
    }
}

#[test]
fn r11_a_newer_controller_epoch_is_recorded_and_persisted_from_every_controller_message() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let update_metadata = Msg::UpdateMetadata {
        controller_epoch: 3,
        broker_epoch: 0,
        base_metadata_offset: Some(0),
        metadata_offset: 0,
        partitions: std::sync::Arc::new([]),
    };
    let alter_response = Msg::AlterPartitionResponse {
        controller_epoch: 3,
        topic_partition: tp(),
        result: Err(ErrorCode::FencedLeaderEpoch),
        current: None,
        base_metadata_offset: Some(0),
        metadata_offset: 0,
    };
    let heartbeat = heartbeat_response(3, 0, false, (Some(0), 0), vec![]);
    // Even a message meant for another incarnation shows that controller epoch 3 exists.
    let other_incarnation = leader_and_isr(3, 7, partition(Some(1), 0, 0, &[1, 2, 3]));
    for msg in [
        update_metadata,
        alter_response,
        heartbeat,
        other_incarnation,
    ] {
        let step = deliver(&b, 2, &s, CONTROLLER, msg.clone());
        assert_eq!(step.broker().controller_epoch, 3, "{msg:?}");
        assert!(step.saved(), "{msg:?}: the epoch is persisted");
        let s = after(&s, &step);
        // Afterwards a LeaderAndIsr of controller epoch 2 is stale.
        let stale = leader_and_isr(2, 0, partition(Some(3), 1, 1, &[3]));
        assert!(deliver(&b, 2, &s, CONTROLLER, stale).is_noop(), "{msg:?}");
    }
}

#[test]
fn r51_a_push_that_follows_on_what_the_broker_holds_moves_its_metadata_offset() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let ps = partition(Some(1), 0, 1, &[1, 2]);
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        leader_and_isr_at(1, 0, (Some(0), 1), ps),
    );
    assert_eq!(step.broker().metadata_offset, Some(1));
    assert_eq!(replica(step.state()).partition.isr.as_ref(), &[1, 2]);
    // A push after a lost one: applied (it is newer), but the offset stays where the broker
    // holds everything, so its next heartbeat asks for the missed change too.
    let ps = partition(Some(1), 0, 3, &[1, 2, 3]);
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        leader_and_isr_at(1, 0, (Some(2), 3), ps),
    );
    assert_eq!(replica(step.state()).partition.partition_epoch, 3);
    assert_eq!(step.broker().metadata_offset, Some(0));
    // The whole table (a restarted controller's push) completes any gap.
    let ps = partition(Some(1), 0, 3, &[1, 2, 3]);
    let s = after(&s, &step);
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        leader_and_isr_at(2, 0, (None, 3), ps),
    );
    assert_eq!(step.broker().metadata_offset, Some(3));
}

#[test]
fn r49_a_registered_broker_heartbeats_with_its_metadata_offset_to_pull_what_it_lacks() {
    let mut c = (*cluster(Protocol::Kip320)).clone();
    c.heartbeat_periodic = true;
    let b = broker(2, &std::sync::Arc::new(c));
    let s = fresh(&b, 2);
    let step = fire(&b, 2, &s, Timer::Heartbeat);
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::BrokerHeartbeat {
            broker_id: 2,
            broker_epoch: 0,
            metadata_offset: Some(0),
        }]
    ));
    // Without periodic heartbeats (the model's default) a registered broker sends none.
    let b = broker(2, &cluster_retransmitting(Protocol::Kip320));
    assert!(fire(&b, 2, &fresh(&b, 2), Timer::Heartbeat).is_noop());
}

#[test]
fn r49_a_heartbeat_response_repairs_a_lost_leader_and_isr() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    // The LeaderAndIsr making broker 2 leader in epoch 1 was lost; the pull brings it.
    let ps = partition(Some(2), 1, 1, &[2, 3]);
    let step = deliver(
        &b,
        2,
        &s,
        CONTROLLER,
        heartbeat_response(1, 0, false, (Some(0), 1), vec![ps]),
    );
    let r = replica(step.state());
    assert!(r.is_leader());
    assert_eq!(r.leader_epoch(), 1);
    assert_eq!(step.broker().metadata_offset, Some(1));
    assert!(step.save_precedes_sends());
}

#[test]
fn r50_metadata_for_partitions_the_broker_does_not_replicate_keeps_the_newer_state() {
    let b = broker(2, &cluster(Protocol::Kip320));
    let s = fresh(&b, 2);
    let other = |epoch: u32| PartitionState {
        topic_partition: TopicPartition::new(&Topic::new("u"), 0),
        leader: Some(3),
        leader_epoch: epoch,
        partition_epoch: epoch,
        isr: [3].as_slice().into(),
        elr: Default::default(),
        replicas: [3].as_slice().into(),
        min_insync_replicas: 1,
        unclean_leader_election: false,
    };
    let push = |ps: PartitionState, offsets| Msg::UpdateMetadata {
        controller_epoch: 1,
        broker_epoch: 0,
        base_metadata_offset: Some(offsets - 1),
        metadata_offset: offsets,
        partitions: vec![ps].into(),
    };
    let s = after(&s, &deliver(&b, 2, &s, CONTROLLER, push(other(2), 1)));
    let tp_u = TopicPartition::new(&Topic::new("u"), 0);
    assert_eq!(s.as_broker().unwrap().metadata[&tp_u].leader_epoch, 2);
    let s = after(&s, &deliver(&b, 2, &s, CONTROLLER, push(other(1), 2)));
    assert_eq!(
        s.as_broker().unwrap().metadata[&tp_u].leader_epoch,
        2,
        "an older state does not replace a newer one"
    );
}

// --- R17–R30: leader ---

#[test]
fn r21_acks_1_is_answered_after_the_append_and_the_save() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 1);
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::Leader, 0, &["b"], 1));
    assert_eq!(replica(step.state()).log, log(&[(0, "a"), (0, "b")]));
    assert_eq!(produce_result(&step.sends_to(PRODUCER)[0]), Ok(1));
    assert!(step.save_precedes_sends(), "R0");
}

#[test]
fn r21_acks_0_gets_no_response() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::None, 0, &["a"], 0));
    assert_eq!(replica(step.state()).log.log_end_offset(), 1);
    assert!(step.sends_to(PRODUCER).is_empty());
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::None, 3, &["a"], 0));
    assert!(step.sends_to(PRODUCER).is_empty(), "not even an error");
}

#[test]
fn r17_produce_in_another_epoch_or_to_a_follower_is_refused() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let older = {
        let s = after(
            &s,
            &deliver(
                &b,
                1,
                &s,
                CONTROLLER,
                leader_and_isr(1, 0, partition(Some(1), 2, 2, &[1, 2, 3])),
            ),
        );
        deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 1, &["a"], 0))
    };
    assert_eq!(
        produce_result(&older.sends_to(PRODUCER)[0]),
        Err(ErrorCode::FencedLeaderEpoch)
    );
    let newer = deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 4, &["a"], 0));
    assert_eq!(
        produce_result(&newer.sends_to(PRODUCER)[0]),
        Err(ErrorCode::UnknownLeaderEpoch)
    );
    let f = broker(2, &cluster(Protocol::Kip320));
    let fs = fresh(&f, 2);
    let step = deliver(&f, 2, &fs, PRODUCER, produce(Acks::All, 0, &["a"], 0));
    assert_eq!(
        produce_result(&step.sends_to(PRODUCER)[0]),
        Err(ErrorCode::NotLeaderOrFollower)
    );
}

#[test]
fn r18_acks_all_needs_min_insync_replicas_before_the_append() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1])),
        ),
    );
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0));
    assert_eq!(
        produce_result(&step.sends_to(PRODUCER)[0]),
        Err(ErrorCode::NotEnoughReplicas)
    );
    assert_eq!(replica(&after(&s, &step)).log.log_end_offset(), 0);
    // acks=1 is not subject to it.
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::Leader, 0, &["a"], 0));
    assert_eq!(produce_result(&step.sends_to(PRODUCER)[0]), Ok(0));
}

fn idempotent(pid: u64, seq: u32, value: &str) -> Msg {
    Msg::Produce(ProduceRequest {
        topic_partition: tp(),
        acks: Acks::Leader,
        leader_epoch: 0,
        records: vec![Record {
            value: Value::from(value),
            producer: Some(ProducerSequence {
                producer_id: pid,
                sequence: seq,
            }),
        }]
        .into(),
        batch: seq,
        attempt: 2,
    })
}

#[test]
fn r19_r20_the_leader_deduplicates_retries_and_refuses_gaps() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let s = after(&s, &deliver(&b, 1, &s, PRODUCER, idempotent(7, 0, "a")));
    let s = after(&s, &deliver(&b, 1, &s, PRODUCER, idempotent(7, 1, "b")));
    let retry = deliver(&b, 1, &s, PRODUCER, idempotent(7, 0, "a"));
    assert_eq!(
        produce_result(&retry.sends_to(PRODUCER)[0]),
        Ok(0),
        "the original offset"
    );
    assert_eq!(
        replica(&after(&s, &retry)).log.log_end_offset(),
        2,
        "not appended twice"
    );
    let gap = deliver(&b, 1, &s, PRODUCER, idempotent(7, 3, "d"));
    assert_eq!(
        produce_result(&gap.sends_to(PRODUCER)[0]),
        Err(ErrorCode::OutOfOrderSequence)
    );
    let unknown = deliver(&b, 1, &s, PRODUCER, idempotent(8, 1, "x"));
    assert_eq!(
        produce_result(&unknown.sends_to(PRODUCER)[0]),
        Err(ErrorCode::OutOfOrderSequence)
    );
}

#[test]
fn r22_r23_fetches_to_a_follower_or_in_another_epoch_are_refused() {
    let f = broker(2, &cluster(Protocol::Kip320));
    let fs = fresh(&f, 2);
    let step = deliver(&f, 2, &fs, 3, follower_fetch(3, 0, None, Some(0)));
    assert!(matches!(
        fetch_result(&step.sends_to(3)[0]),
        FetchResult::Error {
            error: ErrorCode::NotLeaderOrFollower,
            ..
        }
    ));

    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 0);
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 0, None, Some(1)));
    assert!(matches!(
        fetch_result(&step.sends_to(2)[0]),
        FetchResult::Error {
            error: ErrorCode::UnknownLeaderEpoch,
            ..
        }
    ));
    let s2 = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 2, 2, &[1, 2, 3])),
        ),
    );
    let step = deliver(&b, 1, &s2, 2, follower_fetch(2, 0, None, Some(1)));
    assert!(matches!(
        fetch_result(&step.sends_to(2)[0]),
        FetchResult::Error {
            error: ErrorCode::FencedLeaderEpoch,
            ..
        }
    ));

    // Without KIP-320 the same stale fetch is served.
    let (b, s) = leader_with(Protocol::Kip279, &[(0, "a")], 0);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 2, 2, &[1, 2, 3])),
        ),
    );
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 0, None, Some(1)));
    assert!(matches!(
        fetch_result(&step.sends_to(2)[0]),
        FetchResult::Records { .. }
    ));
}

#[test]
fn r24_a_fetch_from_a_diverging_log_is_answered_with_the_epoch_end() {
    // Leader: [0@0 1@2]; the follower has [0@0 1@1 2@1] (epoch 1 never reached the leader).
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a"), (2, "c")], 1);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 2, 2, &[1, 2, 3])),
        ),
    );
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 3, Some(1), Some(2)));
    assert_eq!(
        fetch_result(&step.sends_to(2)[0]),
        &FetchResult::Diverging(Some((0, 1)))
    );
}

#[test]
fn r25_a_fetch_beyond_the_log_end_is_out_of_range() {
    let (b, s) = leader_with(Protocol::HwmTruncation, &[(0, "a")], 1);
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 3, None, None));
    assert_eq!(
        fetch_result(&step.sends_to(2)[0]),
        &FetchResult::Error {
            error: ErrorCode::OffsetOutOfRange,
            log_end_offset: 1
        }
    );
}

#[test]
fn r26_r28_fetches_advance_the_hwm_which_answers_acks_all() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let s = after(
        &s,
        &deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0)),
    );
    assert!(leader_state(&s).delayed_produces.len() == 1);
    let s = after(
        &s,
        &deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0))),
    );
    assert_eq!(replica(&s).high_watermark, 0);
    let step = deliver(&b, 1, &s, 3, follower_fetch(3, 1, Some(0), Some(0)));
    assert_eq!(replica(step.state()).high_watermark, 1);
    assert_eq!(produce_result(&step.sends_to(PRODUCER)[0]), Ok(0));
    assert!(step.save_precedes_sends());
}

#[test]
fn r26_a_fetch_with_nothing_to_return_is_held_until_the_leader_appends() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 0);
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0)));
    assert!(step.sends_to(2).is_empty());
    assert_eq!(leader_state(step.state()).delayed_fetches.len(), 1);
    let s = after(&s, &step);
    let step = deliver(&b, 1, &s, PRODUCER, produce(Acks::Leader, 0, &["b"], 1));
    match fetch_result(&step.sends_to(2)[0]) {
        FetchResult::Records { records, .. } => assert_eq!(&records[..], &[entry(0, "b")]),
        other => panic!("{other:?}"),
    }
}

/// A follower fetch at the log end offset from a follower that knows HWM `hwm`.
fn fetch_knowing_hwm(replica: BrokerId, fetch_offset: Offset, hwm: Offset) -> Msg {
    match follower_fetch(replica, fetch_offset, Some(0), Some(0)) {
        Msg::Fetch(mut request) => {
            request.high_watermark = hwm;
            Msg::Fetch(request)
        }
        _ => unreachable!(),
    }
}

#[test]
fn r26_followers_with_nothing_to_fetch_learn_a_high_watermark_that_moves() {
    // Leader 1 holds [a] with HWM 0; ISR {1,2,3}. Both followers have the record and HWM 0.
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 0);
    // Follower 2 catches up; follower 3 has not fetched, so the HWM stays: held.
    let step = deliver(&b, 1, &s, 2, fetch_knowing_hwm(2, 1, 0));
    assert!(step.sends_to(2).is_empty());
    assert_eq!(replica(step.state()).high_watermark, 0);
    let s = after(&s, &step);
    // Follower 3 catches up: the HWM moves to 1. Follower 3 is answered at once, with no
    // records and the new HWM, and follower 2's held fetch is answered too.
    let step = deliver(&b, 1, &s, 3, fetch_knowing_hwm(3, 1, 0));
    assert_eq!(replica(step.state()).high_watermark, 1);
    for follower in [2, 3] {
        match fetch_result(&step.sends_to(follower)[0]) {
            FetchResult::Records {
                records,
                high_watermark,
            } => {
                assert!(records.is_empty(), "{follower}");
                assert_eq!(*high_watermark, 1, "{follower}");
            }
            other => panic!("{follower}: {other:?}"),
        }
    }
    assert!(leader_state(step.state()).delayed_fetches.is_empty());
    // A follower that already knows HWM 1 is held: nothing would change for it.
    let s = after(&s, &step);
    let step = deliver(&b, 1, &s, 2, fetch_knowing_hwm(2, 1, 1));
    assert!(step.sends_to(2).is_empty());
    assert_eq!(leader_state(step.state()).delayed_fetches.len(), 1);
}

#[test]
fn r26_a_caught_up_follower_rejoins_the_isr() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 1);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1, 2])),
        ),
    );
    // At offset 0 the follower is behind the HWM: no change.
    let step = deliver(&b, 1, &s, 3, follower_fetch(3, 0, None, Some(0)));
    assert!(step.sends_to(CONTROLLER).is_empty());
    let step = deliver(&b, 1, &s, 3, follower_fetch(3, 1, Some(0), Some(0)));
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::AlterPartition { new_isr, partition_epoch: 1, broker_epochs, .. }]
            if **new_isr == [1, 2, 3] && broker_epochs.contains(&(3, 0))
    ));
    assert!(leader_state(step.state()).pending_isr.is_some());
}

#[test]
fn r27_consumers_read_below_the_hwm_only_and_not_before_the_epoch_start() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a"), (0, "b")], 1);
    let consumer = |offset| {
        Msg::Fetch(FetchRequest {
            topic_partition: tp(),
            replica_id: None,
            broker_epoch: 0,
            fetch_offset: offset,
            last_fetched_epoch: None,
            current_leader_epoch: Some(0),
            fetch_bytes_max: 1000,
            high_watermark: 0,
        })
    };
    // with_leader_log put the epoch start at the LEO (2), above the HWM (1).
    let step = deliver(&b, 1, &s, 5, consumer(0));
    assert!(matches!(
        fetch_result(&step.sends_to(5)[0]),
        FetchResult::Error {
            error: ErrorCode::OffsetNotAvailable,
            ..
        }
    ));
    let mut bs = s.as_broker().unwrap().clone();
    if let Role::Leader(l) = &mut bs.replicas.get_mut(&tp()).unwrap().role {
        l.epoch_start_offset = 0;
    }
    let s = NodeState::Broker(bs);
    let step = deliver(&b, 1, &s, 5, consumer(0));
    match fetch_result(&step.sends_to(5)[0]) {
        FetchResult::Records {
            records,
            high_watermark: 1,
        } => assert_eq!(&records[..], &[entry(0, "a")]),
        other => panic!("{other:?}"),
    }
    let step = deliver(&b, 1, &s, 5, consumer(1));
    assert!(
        step.sends_to(5).is_empty(),
        "held until the HWM passes offset 1"
    );
}

#[test]
fn r28_the_hwm_never_moves_backward() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a"), (0, "b")], 2);
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 0, None, Some(0)));
    assert_eq!(replica(&after(&s, &step)).high_watermark, 2);
}

/// Kafka 3.7 (KAFKA-15583): an ISR under min.insync.replicas holds the HWM still, so the
/// record is neither committed nor exposed, and the `acks=all` request stays held (the producer
/// times out and retries).
#[test]
fn r28_an_isr_under_min_insync_holds_the_hwm() {
    let (b, s) = leader_with(Protocol::Kip320, &[], 0);
    let s = after(
        &s,
        &deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0)),
    );
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1])),
    );
    assert_eq!(replica(step.state()).high_watermark, 0, "not committed");
    assert!(step.sends_to(PRODUCER).is_empty(), "still held");
    // The ISR back at min.insync.replicas: the HWM moves, the request is answered.
    let s = after(&s, &step);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 0, 2, &[1, 2])),
        ),
    );
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0)));
    assert_eq!(replica(step.state()).high_watermark, 1);
    assert_eq!(produce_result(&step.sends_to(PRODUCER)[0]), Ok(0));
}

/// Before Kafka 3.7 (`hwm_under_min_isr`): the record is committed anyway, and the producer
/// told NotEnoughReplicasAfterAppend.
#[test]
fn r28_before_3_7_an_isr_under_min_insync_commits_and_fails_acks_all() {
    let mut c = (*cluster(Protocol::Kip320)).clone();
    c.hwm_under_min_isr = true;
    let (b, s) = leader_in(&std::sync::Arc::new(c), &[], 0);
    let s = after(
        &s,
        &deliver(&b, 1, &s, PRODUCER, produce(Acks::All, 0, &["a"], 0)),
    );
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1])),
    );
    assert_eq!(replica(step.state()).high_watermark, 1, "committed anyway");
    assert_eq!(
        produce_result(&step.sends_to(PRODUCER)[0]),
        Err(ErrorCode::NotEnoughReplicasAfterAppend)
    );
}

#[test]
fn r29_lagging_followers_are_dropped_and_caught_up_ones_kept() {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 0);
    let s = after(
        &s,
        &deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0))),
    );
    let step = fire(&b, 1, &s, Timer::IsrShrink);
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::AlterPartition { new_isr, .. }] if **new_isr == [1, 2]
    ));
    let s = after(
        &s,
        &deliver(&b, 1, &s, 3, follower_fetch(3, 1, Some(0), Some(0))),
    );
    assert!(
        fire(&b, 1, &s, Timer::IsrShrink).is_noop(),
        "everyone has caught up"
    );
}

#[test]
fn r30_an_accepted_isr_change_is_applied() {
    let (b, s) = leader_in(&cluster_with(Protocol::Kip320, 1, false), &[(0, "a")], 0);
    let s = after(&s, &fire(&b, 1, &s, Timer::IsrShrink));
    let accepted = Msg::AlterPartitionResponse {
        controller_epoch: 1,
        topic_partition: tp(),
        result: Ok(std::sync::Arc::new(PartitionState {
            min_insync_replicas: 1,
            ..partition(Some(1), 0, 1, &[1])
        })),
        current: None,
        base_metadata_offset: Some(0),
        metadata_offset: 1,
    };
    let step = deliver(&b, 1, &s, CONTROLLER, accepted);
    let r = replica(step.state());
    assert_eq!(
        (&*r.partition.isr, r.high_watermark),
        (&[1][..], 1),
        "the HWM follows the smaller ISR"
    );
    assert!(leader_state(step.state()).pending_isr.is_none());
}

fn rejection(error: ErrorCode, current: Option<PartitionState>) -> Msg {
    // A rejection that changed nothing spans no offsets; an IneligibleReplica one spans its
    // epoch bump.
    let metadata_offset = current.as_ref().map_or(0, |c| u64::from(c.partition_epoch));
    Msg::AlterPartitionResponse {
        controller_epoch: 1,
        topic_partition: tp(),
        result: Err(error),
        current: current.map(std::sync::Arc::new),
        base_metadata_offset: Some(0),
        metadata_offset,
    }
}

/// Broker 1 leading with ISR {1}, asking to add 2 back: the pending (maximal) ISR is {1, 2}.
fn leader_expanding() -> (Node, NodeState) {
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 1);
    let s = after(
        &s,
        &deliver(
            &b,
            1,
            &s,
            CONTROLLER,
            leader_and_isr(1, 0, partition(Some(1), 0, 1, &[1])),
        ),
    );
    let s = after(
        &s,
        &deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0))),
    );
    assert!(leader_state(&s).pending_isr.is_some());
    (b, s)
}

#[test]
fn r30_a_rejection_that_may_follow_an_acceptance_keeps_the_maximal_isr() {
    // The original request may have been accepted and its answer lost; forgetting the pending
    // addition would let the HWM advance without a member of the controller's ISR.
    let (b, s) = leader_expanding();
    for error in [
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::InvalidUpdateVersion,
        ErrorCode::IneligibleReplica,
    ] {
        let step = deliver(&b, 1, &s, CONTROLLER, rejection(error, None));
        assert!(step.is_noop(), "{error:?} keeps the pending ISR");
        let not_newer = rejection(error, Some(partition(Some(1), 0, 1, &[1])));
        assert!(
            deliver(&b, 1, &s, CONTROLLER, not_newer).is_noop(),
            "{error:?}"
        );
    }
}

#[test]
fn r30_a_rejection_carrying_a_newer_state_settles_the_leader() {
    let (b, s) = leader_expanding();
    // Our accepted change's answer was lost: the controller already has ISR {1, 2}.
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        rejection(
            ErrorCode::InvalidUpdateVersion,
            Some(partition(Some(1), 0, 2, &[1, 2])),
        ),
    );
    let r = replica(step.state());
    assert_eq!(
        (r.partition.partition_epoch, &*r.partition.isr),
        (2, &[1, 2][..])
    );
    assert!(leader_state(step.state()).pending_isr.is_none());
    // Leadership moved meanwhile and the LeaderAndIsr was lost: the rejection deposes us.
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        rejection(
            ErrorCode::FencedLeaderEpoch,
            Some(partition(Some(2), 1, 3, &[1, 2])),
        ),
    );
    assert!(matches!(replica(step.state()).role, Role::Follower(_)));
}

#[test]
fn r13_a_refused_addition_is_not_proposed_again_until_the_follower_fetches_anew() {
    let (b, s) = leader_expanding();
    // The controller's newer state still lacks broker 2 (it was fenced, say): the addition
    // failed, and the leader forgets 2's progress instead of proposing it again at once.
    let step = deliver(
        &b,
        1,
        &s,
        CONTROLLER,
        rejection(
            ErrorCode::InvalidUpdateVersion,
            Some(partition(Some(1), 0, 2, &[1])),
        ),
    );
    assert!(step.sends_to(CONTROLLER).is_empty());
    let l = leader_state(step.state());
    assert!(l.pending_isr.is_none());
    assert!(l
        .followers
        .iter()
        .find(|p| p.broker_id == 2)
        .unwrap()
        .log_end_offset
        .is_none());
    // A fresh fetch proposes it again.
    let s = after(&s, &step);
    let step = deliver(&b, 1, &s, 2, follower_fetch(2, 1, Some(0), Some(0)));
    assert!(matches!(
        step.sends_to(CONTROLLER).as_slice(),
        [Msg::AlterPartition {
            partition_epoch: 2,
            ..
        }]
    ));
}

#[test]
fn r34_the_leader_answers_epoch_lookups_by_kafkas_end_offset_for() {
    let (b, s) = leader_with(Protocol::Kip101, &[(0, "a"), (2, "b")], 1);
    let ask = |epoch| Msg::OffsetsForLeaderEpoch {
        topic_partition: tp(),
        replica_id: 2,
        leader_epoch: epoch,
        current_leader_epoch: None,
    };
    let answer = |step: &Step| match &step.sends_to(2)[0] {
        Msg::OffsetsForLeaderEpochResponse { result, .. } => *result,
        other => panic!("{other:?}"),
    };
    assert_eq!(answer(&deliver(&b, 1, &s, 2, ask(1))), Ok(Some((0, 1))));
    assert_eq!(answer(&deliver(&b, 1, &s, 2, ask(2))), Ok(Some((2, 2))));
    assert_eq!(answer(&deliver(&b, 1, &s, 2, ask(3))), Ok(None));
}

#[test]
fn r36_any_broker_answers_metadata() {
    let b = broker(3, &cluster(Protocol::Kip320));
    let s = fresh(&b, 3);
    let step = deliver(&b, 3, &s, PRODUCER, Msg::Metadata { topic: topic() });
    match step.sends_to(PRODUCER).as_slice() {
        [Msg::MetadataResponse {
            brokers,
            partitions,
        }] => {
            assert_eq!(brokers.len(), 3);
            assert_eq!(
                (partitions[0].leader, partitions[0].leader_epoch),
                (Some(1), 0)
            );
        }
        other => panic!("{other:?}"),
    }
}

// --- R31–R35, R44: follower ---

/// Broker 2 following broker 1 in epoch `epoch`, fetching at its LEO.
fn follower_with(
    protocol: Protocol,
    entries: &[(LeaderEpoch, &str)],
    hwm: Offset,
    epoch: LeaderEpoch,
) -> (Node, NodeState) {
    let b = broker(2, &cluster(protocol));
    let mut s = fresh(&b, 2).as_broker().unwrap().clone();
    {
        let r = s.replicas.get_mut(&tp()).unwrap();
        r.log = log(entries);
        r.high_watermark = hwm;
        r.partition.leader_epoch = epoch;
        r.role = Role::Follower(broker::FollowerState::Fetching {
            fetch_offset: r.log.log_end_offset(),
            in_flight: true,
        });
    }
    (b, NodeState::Broker(s))
}

fn response(fetch_offset: Offset, leader_epoch: LeaderEpoch, result: FetchResult) -> Msg {
    Msg::FetchResponse(FetchResponse {
        topic_partition: tp(),
        fetch_offset,
        leader_epoch,
        result,
    })
}

#[test]
fn r31_records_are_appended_the_hwm_adopted_up_to_the_leo_and_the_next_fetch_sent() {
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 0);
    let result = FetchResult::Records {
        records: vec![entry(0, "b")].into(),
        high_watermark: 5,
    };
    let step = deliver(&b, 2, &s, 1, response(1, 0, result));
    let r = replica(step.state());
    assert_eq!((r.log.log_end_offset(), r.high_watermark), (2, 2));
    assert!(matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.fetch_offset == 2));
    assert!(step.save_precedes_sends());
}

#[test]
fn r31_a_response_from_an_older_leader_epoch_is_dropped_only_under_kip_320() {
    let stale = || {
        response(
            1,
            0,
            FetchResult::Records {
                records: vec![entry(0, "x")].into(),
                high_watermark: 0,
            },
        )
    };
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 1);
    assert!(deliver(&b, 2, &s, 1, stale()).is_noop());
    let (b, s) = follower_with(Protocol::Kip279, &[(0, "a")], 0, 1);
    let step = deliver(&b, 2, &s, 1, stale());
    assert_eq!(
        replica(step.state()).log.log_end_offset(),
        2,
        "pre-KIP-320 cannot tell"
    );
    // A response to another fetch offset, or from another broker, is dropped by every revision.
    assert!(deliver(
        &b,
        2,
        &s,
        1,
        response(
            0,
            1,
            FetchResult::Records {
                records: vec![].into(),
                high_watermark: 0
            }
        )
    )
    .is_noop());
    assert!(deliver(&b, 2, &s, 3, stale()).is_noop());
}

#[test]
fn r31_an_error_from_an_older_leader_epoch_backs_off_but_out_of_range_is_dropped() {
    // Broker 1 answers the fetch of epoch 1 before it has heard that it leads epoch 1: its
    // `NotLeaderOrFollower` carries epoch 0, and it is the only answer that fetch gets. Dropping
    // it left the follower waiting for good on a network that never loses it (I16).
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 1);
    let not_leader = FetchResult::Error {
        error: ErrorCode::NotLeaderOrFollower,
        log_end_offset: 1,
    };
    assert_backs_off_and_fetches_again(&b, &s, response(1, 0, not_leader), 1);
    // OffsetOutOfRange truncates: from another epoch it is data, and dropped.
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 1);
    let out_of_range = FetchResult::Error {
        error: ErrorCode::OffsetOutOfRange,
        log_end_offset: 0,
    };
    assert!(deliver(&b, 2, &s, 1, response(1, 0, out_of_range)).is_noop());
}

#[test]
fn r32_a_diverging_follower_truncates_and_fetches_on() {
    // Follower [0@0 1@1 2@1]; the leader says epoch 1 is unknown to it, epoch 0 ends at 1.
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a"), (1, "b"), (1, "c")], 1, 2);
    let step = deliver(
        &b,
        2,
        &s,
        1,
        response(3, 2, FetchResult::Diverging(Some((0, 1)))),
    );
    let r = replica(step.state());
    assert_eq!(r.log, log(&[(0, "a")]));
    assert!(
        matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.fetch_offset == 1 && f.last_fetched_epoch == Some(0))
    );
}

#[test]
fn r33_out_of_range_truncates_to_the_leader_log_end_and_a_fence_backs_off() {
    let (b, s) = follower_with(Protocol::HwmTruncation, &[(0, "a"), (0, "b")], 0, 0);
    let out_of_range = FetchResult::Error {
        error: ErrorCode::OffsetOutOfRange,
        log_end_offset: 1,
    };
    let step = deliver(&b, 2, &s, 1, response(2, 0, out_of_range));
    assert_eq!(replica(step.state()).log.log_end_offset(), 1);
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 0);
    let fenced = FetchResult::Error {
        error: ErrorCode::FencedLeaderEpoch,
        log_end_offset: 0,
    };
    // A fence in the follower's own epoch answers a fetch it sent in an earlier epoch (the
    // simulator's seed 102: a delayed fetch, answered after the follower moved on). Waiting for
    // a LeaderAndIsr that never comes left the replica out of the ISR for good; it backs off and
    // fetches again instead.
    assert_backs_off_and_fetches_again(&b, &s, response(1, 0, fenced), 0);
}

/// Broker 2, fetching at offset 1 from broker 1, takes `answer`: it stops fetching (R33), and
/// on FetchBackoff fetches at 1 again in leader epoch `epoch` (R44).
fn assert_backs_off_and_fetches_again(b: &Node, s: &NodeState, answer: Msg, epoch: LeaderEpoch) {
    let step = deliver(b, 2, s, 1, answer);
    assert!(matches!(
        replica(step.state()).role,
        Role::Follower(broker::FollowerState::Fetching {
            fetch_offset: 1,
            in_flight: false
        })
    ));
    let s = after(s, &step);
    let step = fire(b, 2, &s, Timer::FetchBackoff);
    assert!(
        matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.fetch_offset == 1 && f.current_leader_epoch == Some(epoch))
    );
}

#[test]
fn r44_a_backed_off_fetch_is_sent_again_on_fetch_backoff() {
    let (b, s) = follower_with(Protocol::Kip320, &[(0, "a")], 0, 0);
    assert!(
        fire(&b, 2, &s, Timer::FetchBackoff).is_noop(),
        "a fetch is in flight"
    );
    let unknown = FetchResult::Error {
        error: ErrorCode::UnknownLeaderEpoch,
        log_end_offset: 0,
    };
    let s = after(&s, &deliver(&b, 2, &s, 1, response(1, 0, unknown)));
    let step = fire(&b, 2, &s, Timer::FetchBackoff);
    assert!(matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.fetch_offset == 1));
}

fn epoch_answer(requested: LeaderEpoch, answer: msg::EpochEndOffset) -> Msg {
    Msg::OffsetsForLeaderEpochResponse {
        topic_partition: tp(),
        requested_epoch: requested,
        result: Ok(answer),
    }
}

fn truncating(
    protocol: Protocol,
    entries: &[(LeaderEpoch, &str)],
    epoch: LeaderEpoch,
) -> (Node, NodeState) {
    let (b, s) = follower_with(protocol, entries, 0, 3);
    let mut bs = s.as_broker().unwrap().clone();
    bs.replicas.get_mut(&tp()).unwrap().role = Role::Follower(broker::FollowerState::Truncating {
        epoch,
        in_flight: true,
    });
    (b, NodeState::Broker(bs))
}

#[test]
fn r35_kip_101_trusts_the_end_offset_and_kip_279_walks_back() {
    // The follower holds epochs 1 and 2; the leader never had epoch 2 and answers for epoch 1.
    let entries = [(0, "a"), (1, "b"), (2, "c")];
    let (b, s) = truncating(Protocol::Kip101, &entries, 2);
    let step = deliver(&b, 2, &s, 1, epoch_answer(2, Some((1, 3))));
    assert_eq!(
        replica(step.state()).log.log_end_offset(),
        3,
        "KIP-101 keeps 2@2"
    );
    assert!(matches!(step.sends_to(1).as_slice(), [Msg::Fetch(_)]));

    let (b, s) = truncating(Protocol::Kip279, &entries, 2);
    let step = deliver(&b, 2, &s, 1, epoch_answer(2, Some((1, 3))));
    assert_eq!(
        replica(step.state()).log,
        log(&[(0, "a"), (1, "b")]),
        "KIP-279 cuts back to where epoch 1 ends"
    );

    // An epoch the follower does not hold: cut to the end of its last earlier epoch, ask again.
    let (b, s) = truncating(Protocol::Kip279, &[(0, "a"), (2, "c")], 2);
    let step = deliver(&b, 2, &s, 1, epoch_answer(2, Some((1, 2))));
    assert_eq!(replica(step.state()).log, log(&[(0, "a")]));
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::OffsetsForLeaderEpoch {
            leader_epoch: 0,
            ..
        }]
    ));
}

/// The real cluster's host owns its state and hands it to handlers owned, so that they change it
/// in place; the checker hands it borrowed. Both must come out the same.
#[test]
fn a_handler_given_an_owned_state_changes_it_exactly_as_a_borrowed_one() {
    use stateright::actor::{Actor, Out};
    use std::borrow::Cow;
    let (b, s) = leader_with(Protocol::Kip320, &[(0, "a")], 0);
    let msg = produce(Acks::Leader, 0, &["b"], 1);
    let borrowed = deliver(&b, 1, &s, PRODUCER, msg.clone());
    let mut owned: Cow<NodeState> = Cow::Owned(s.clone());
    let mut out = Out::new();
    b.on_msg(id(1), &mut owned, id(PRODUCER), msg, &mut out);
    assert_eq!(Some(owned.into_owned()), borrowed.next);
    let commands: Vec<Cmd> = out.into_iter().collect();
    assert_eq!(format!("{commands:?}"), format!("{:?}", borrowed.commands));
    assert!(!commands.is_empty());
}

#[test]
fn a_stale_hwm_checkpoint_keeps_the_log_and_cuts_the_hwm() {
    let (_, s) = leader_with(Protocol::Kip320, &[(0, "a"), (0, "b")], 2);
    let saved = s.as_broker().unwrap().storage();
    let stale = saved.after_power_loss(PowerLoss::stale_hwm(1));
    let r = stale.replicas.get(&tp()).unwrap();
    assert_eq!((r.log.log_end_offset(), r.high_watermark), (2, 1));
    let lost = saved.after_power_loss(PowerLoss::keeping(1));
    let r = lost.replicas.get(&tp()).unwrap();
    assert_eq!((r.log.log_end_offset(), r.high_watermark), (1, 1));
}
