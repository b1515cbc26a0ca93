//! Controller handlers, R1–R9: state and message in, state and commands out.

mod support;
use support::*;
use watermark_model::*;

fn controller_state(step: &Step) -> ControllerState {
    step.controller().clone()
}

fn with_partition(state: &ControllerState, ps: PartitionState) -> NodeState {
    let mut s = state.clone();
    s.partitions.insert(tp(), ps);
    NodeState::Controller(s)
}

#[test]
fn r1_fresh_start_takes_the_bootstrapped_partitions_and_sends_nothing() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let step = start(&c, CONTROLLER, None);
    let s = step.controller();
    assert_eq!(s.controller_epoch, 1);
    assert_eq!(s.partitions[&tp()], partition(Some(1), 0, 0, &[1, 2, 3]));
    assert!(s
        .brokers
        .iter()
        .all(|(_, r)| !r.fenced && r.broker_epoch == 0));
    assert!(step.saved());
    assert!(
        step.sends().is_empty(),
        "brokers were bootstrapped with the same state"
    );
}

#[test]
fn r1_restart_bumps_the_controller_epoch_and_resends_every_partition() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let first = controller_state(&start(&c, CONTROLLER, None));
    let step = start(&c, CONTROLLER, Some(Storage::Controller(first.into())));
    assert_eq!(step.controller().controller_epoch, 2);
    for b in 1..=3 {
        let msgs = step.sends_to(b);
        assert!(
            matches!(
                msgs.as_slice(),
                [Msg::LeaderAndIsr {
                    controller_epoch: 2,
                    broker_epoch: 0,
                    ..
                }]
            ),
            "broker {b} got {msgs:?}"
        );
    }
    assert!(step.save_precedes_sends());
}

#[test]
fn r2_session_timeout_of_the_leader_elects_the_next_live_isr_member() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.leader, Some(2));
    assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));
    assert_eq!(&*p.isr, &[2, 3]);
    assert!(step.controller().registration(1).unwrap().fenced);
    // LeaderAndIsr to the live replicas, a fenced notice to broker 1, after the Save.
    assert!(step
        .sends_to(2)
        .iter()
        .any(|m| matches!(m, Msg::LeaderAndIsr { .. })));
    assert!(step
        .sends_to(3)
        .iter()
        .any(|m| matches!(m, Msg::LeaderAndIsr { .. })));
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::BrokerHeartbeatResponse {
            is_fenced: true,
            ..
        }]
    ));
    assert!(step.save_precedes_sends());
}

#[test]
fn r2_the_last_isr_member_stays_and_the_partition_goes_offline() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let s = with_partition(s.as_controller().unwrap(), partition(Some(1), 0, 0, &[1]));
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.leader, None);
    assert_eq!(&*p.isr, &[1], "the ISR is never empty");
    assert_eq!(p.leader_epoch, 1);
}

#[test]
fn r2_unclean_election_picks_a_live_replica_outside_the_isr() {
    let c = controller(&cluster_with(Protocol::Kip320, 2, true), true);
    let s = fresh(&c, CONTROLLER);
    // The bootstrapped topic's config reaches its partition state, which the election reads.
    assert!(s.as_controller().unwrap().partitions[&tp()].unclean_leader_election);
    let ps = PartitionState {
        unclean_leader_election: true,
        ..partition(Some(1), 0, 0, &[1])
    };
    let s = with_partition(s.as_controller().unwrap(), ps);
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.leader, Some(2));
    assert_eq!(&*p.isr, &[2]);
}

#[test]
fn r2_a_fenced_broker_session_timer_is_a_noop() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let s = after(&s, &fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3)));
    assert!(fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3)).is_noop());
}

#[test]
fn r3_a_heartbeat_from_an_older_incarnation_is_ignored() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let mut s = controller_state(&start(&c, CONTROLLER, None));
    s.brokers[2].1.broker_epoch = 4;
    let s = NodeState::Controller(s);
    let step = deliver(&c, CONTROLLER, &s, 3, heartbeat(3, 3, Some(0)));
    assert!(step.is_noop());
}

#[test]
fn r4_a_restarted_broker_loses_its_leadership_and_is_registered_again() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let step = deliver(&c, CONTROLLER, &s, 1, heartbeat(1, 1, Some(0)));
    let cs = step.controller();
    let p = &cs.partitions[&tp()];
    assert_eq!((p.leader, p.leader_epoch), (Some(2), 1));
    assert!(!p.isr.contains(&1), "the dead incarnation left the ISR");
    let r = cs.registration(1).unwrap();
    assert_eq!((r.broker_epoch, r.fenced), (1, false));
    // The new incarnation learns every partition from the answer to its heartbeat, stamped with
    // its epoch; the other live brokers get the change pushed (R4, R49, R50).
    match step.sends_to(1).as_slice() {
        [Msg::BrokerHeartbeatResponse {
            broker_epoch: 1,
            is_fenced: false,
            metadata_offset: 1,
            partitions,
            ..
        }] => assert_eq!(partitions.as_ref(), std::slice::from_ref(p)),
        other => panic!("broker 1 got {other:?}"),
    }
    for b in [2, 3] {
        assert!(
            matches!(
                step.sends_to(b).as_slice(),
                [Msg::LeaderAndIsr {
                    base_metadata_offset: Some(0),
                    metadata_offset: 1,
                    ..
                }]
            ),
            "broker {b} got {:?}",
            step.sends_to(b)
        );
    }
    assert!(step.save_precedes_sends());
}

#[test]
fn r49_a_heartbeat_is_answered_with_every_partition_changed_after_its_metadata_offset() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // Two changes: broker 3 fenced (offset 1), then back (offset 2 on its ISR return via R7).
    let s = after(&s, &fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3)));
    assert_eq!(s.as_controller().unwrap().metadata_offset, 1);
    let changed = |step: &Step, to: usize| match step.sends_to(to).as_slice() {
        [Msg::BrokerHeartbeatResponse {
            base_metadata_offset,
            metadata_offset,
            partitions,
            ..
        }] => (*base_metadata_offset, *metadata_offset, partitions.len()),
        other => panic!("got {other:?}"),
    };
    // A broker that holds offset 1 lacks nothing; one that holds 0 lacks the fence; a restarted
    // one (no offset) gets the whole table.
    assert_eq!(
        changed(&deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 0, Some(1))), 2),
        (Some(1), 1, 0)
    );
    assert_eq!(
        changed(&deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 0, Some(0))), 2),
        (Some(0), 1, 1)
    );
    let step = deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 0, Some(0)));
    assert!(
        step.next.is_none(),
        "a pull changes nothing at the controller"
    );
    assert_eq!(
        changed(&deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 0, None)), 2),
        (None, 1, 1)
    );
}

#[test]
fn r50_every_change_is_a_metadata_record_and_leadership_changes_are_pushed_to_every_live_broker() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // R2: the fence of broker 3 changes the ISR; every live broker gets the push.
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3));
    assert_eq!(step.controller().metadata_offset, 1);
    for b in 1..=2 {
        assert!(
            matches!(
                step.sends_to(b).as_slice(),
                [Msg::LeaderAndIsr {
                    base_metadata_offset: Some(0),
                    metadata_offset: 1,
                    partitions,
                    ..
                }] if partitions[0].isr.as_ref() == [1, 2]
            ),
            "broker {b} got {:?}",
            step.sends_to(b)
        );
    }
    // R7: an ISR change the leader asks for is a record too; the leader learns it, and the
    // offsets it spans, from the answer; the others pull it with their next heartbeat (R49).
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, 0, 0, &[1, 2]));
    assert_eq!(step.controller().metadata_offset, 1);
    assert_eq!(step.controller().partition_offsets[&tp()], 1);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::AlterPartitionResponse {
            result: Ok(_),
            base_metadata_offset: Some(0),
            metadata_offset: 1,
            ..
        }]
    ));
    assert_eq!(step.sends().len(), 1, "nothing is pushed");
    let s = after(&s, &step);
    let pulled = deliver(&c, CONTROLLER, &s, 3, heartbeat(3, 0, Some(0)));
    assert!(matches!(
        pulled.sends_to(3).as_slice(),
        [Msg::BrokerHeartbeatResponse { partitions, .. }] if partitions[0].isr.as_ref() == [1, 2]
    ));
    // A rejection that changes nothing is not a record.
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, 5, 0, &[1, 2]));
    assert!(step.next.is_none());
}

#[test]
fn r5_an_unfenced_broker_is_elected_for_the_partition_it_left_offline() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let s = with_partition(s.as_controller().unwrap(), partition(Some(1), 0, 0, &[1]));
    let s = after(&s, &fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1)));
    assert_eq!(s.as_controller().unwrap().partitions[&tp()].leader, None);
    let step = deliver(&c, CONTROLLER, &s, 1, heartbeat(1, 0, Some(0)));
    let p = &step.controller().partitions[&tp()];
    assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
    assert!(step.sends_to(1).iter().any(|m| matches!(
        m,
        Msg::BrokerHeartbeatResponse {
            is_fenced: false,
            ..
        }
    )));
}

fn alter(leader_epoch: u32, partition_epoch: u32, broker_epoch: u32, new_isr: &[BrokerId]) -> Msg {
    alter_seen(
        leader_epoch,
        partition_epoch,
        broker_epoch,
        new_isr,
        &[(2, 0), (3, 0)],
    )
}

/// AlterPartition naming the broker epochs the leader saw its followers fetch in (KIP-903).
fn alter_seen(
    leader_epoch: u32,
    partition_epoch: u32,
    broker_epoch: u32,
    new_isr: &[BrokerId],
    seen: &[(BrokerId, BrokerEpoch)],
) -> Msg {
    Msg::AlterPartition {
        broker_id: 1,
        broker_epoch,
        topic_partition: tp(),
        leader_epoch,
        partition_epoch,
        new_isr: new_isr.into(),
        broker_epochs: seen.into(),
    }
}

fn alter_result(step: &Step) -> Result<PartitionState, ErrorCode> {
    let answers: Vec<_> = step
        .sends_to(1)
        .into_iter()
        .filter_map(|m| match m {
            Msg::AlterPartitionResponse { result, .. } => Some(result),
            _ => None,
        })
        .collect();
    match answers.as_slice() {
        [result] => result.clone().map(std::sync::Arc::unwrap_or_clone),
        other => panic!("expected one AlterPartitionResponse, got {other:?}"),
    }
}

#[test]
fn r7_an_isr_change_in_the_current_epochs_is_accepted() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, 0, 0, &[1, 2]));
    let ps = alter_result(&step).expect("accepted");
    assert_eq!((&*ps.isr, ps.partition_epoch), (&[1, 2][..], 1));
    assert_eq!(step.controller().partitions[&tp()], ps);
    assert!(step.save_precedes_sends());
}

#[test]
fn r8_isr_changes_with_stale_epochs_are_rejected_with_the_current_state() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let cases = [
        (alter(0, 0, 7, &[1, 2]), ErrorCode::StaleBrokerEpoch),
        (alter(1, 0, 0, &[1, 2]), ErrorCode::FencedLeaderEpoch),
        (alter(0, 5, 0, &[1, 2]), ErrorCode::InvalidUpdateVersion),
    ];
    for (msg, error) in cases {
        let step = deliver(&c, CONTROLLER, &s, 1, msg);
        assert_eq!(alter_result(&step), Err(error));
        assert!(step.next.is_none(), "{error:?} changes nothing");
        assert!(
            matches!(
                step.sends_to(1).as_slice(),
                [Msg::AlterPartitionResponse {
                    current: Some(_),
                    ..
                }]
            ),
            "a rejection that changes nothing is the only message"
        );
    }
}

#[test]
fn r8_an_ineligible_replica_is_refused_and_the_partition_epoch_used_up() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // The leader would leave the ISR.
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, 0, 0, &[2, 3]));
    assert_eq!(alter_result(&step), Err(ErrorCode::IneligibleReplica));
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(1), 0, 0, &[1, 2]),
    );
    // KIP-903: the leader saw an earlier incarnation of broker 3 fetch.
    let mut restarted = s.as_controller().unwrap().clone();
    restarted.brokers[2].1.broker_epoch = 1;
    let restarted = NodeState::Controller(restarted);
    let step = deliver(&c, CONTROLLER, &restarted, 1, alter(0, 0, 0, &[1, 2, 3]));
    assert_eq!(alter_result(&step), Err(ErrorCode::IneligibleReplica));
    // KIP-841: broker 3 is fenced. The rejection uses up the partition epoch, so a copy of this
    // request arriving after broker 3 is unfenced cannot be accepted.
    let s = after(&s, &fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3)));
    let epoch = s.as_controller().unwrap().partitions[&tp()].partition_epoch;
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, epoch, 0, &[1, 2, 3]));
    assert_eq!(alter_result(&step), Err(ErrorCode::IneligibleReplica));
    assert_eq!(
        step.controller().partitions[&tp()].partition_epoch,
        epoch + 1
    );
    assert!(step.save_precedes_sends());
    let s = after(&s, &step);
    let s = after(
        &s,
        &deliver(&c, CONTROLLER, &s, 3, heartbeat(3, 0, Some(0))),
    );
    let step = deliver(&c, CONTROLLER, &s, 1, alter(0, epoch, 0, &[1, 2, 3]));
    assert_eq!(alter_result(&step), Err(ErrorCode::InvalidUpdateVersion));
}

#[test]
fn r9_leadership_moves_back_to_the_preferred_replica_once_it_is_in_sync() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(2), 1, 1, &[2, 3]),
    );
    assert!(
        fire(&c, CONTROLLER, &s, Timer::PreferredLeaderElection).is_noop(),
        "1 is not in the ISR"
    );
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(2), 1, 2, &[1, 2, 3]),
    );
    let step = fire(&c, CONTROLLER, &s, Timer::PreferredLeaderElection);
    let p = &step.controller().partitions[&tp()];
    assert_eq!(
        (p.leader, p.leader_epoch, p.partition_epoch),
        (Some(1), 2, 3)
    );
}

#[test]
fn r46_rack_aware_assignment_alternates_racks() {
    use watermark_model::config::rack_alternated;
    let racks = |pairs: &[(u32, &str)]| -> Vec<(u32, String)> {
        pairs.iter().map(|(b, r)| (*b, r.to_string())).collect()
    };
    // Two racks, brokers 1,2 on a and 3,4 on b: consecutive brokers alternate racks, so every
    // partition's two replicas are on different racks.
    let order = rack_alternated(
        &[1, 2, 3, 4],
        &racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]),
    );
    assert_eq!(order, vec![1, 3, 2, 4]);
    for p in 0..4 {
        let replicas = [order[p % 4], order[(p + 1) % 4]];
        let rack = |b: u32| if b <= 2 { "a" } else { "b" };
        assert_ne!(
            rack(replicas[0]),
            rack(replicas[1]),
            "partition {p}: {replicas:?}"
        );
    }
    // Without racks, or with a broker lacking one: id order.
    assert_eq!(rack_alternated(&[1, 2, 3], &[]), vec![1, 2, 3]);
    assert_eq!(
        rack_alternated(&[1, 2, 3], &racks(&[(1, "a"), (2, "b")])),
        vec![1, 2, 3]
    );
}

fn create(topic: &str, partitions: u32, replication_factor: u32, min_isr: u32) -> Msg {
    Msg::CreateTopics {
        topic: Topic::new(topic),
        partitions,
        replication_factor,
        configs: TopicConfigs {
            min_insync_replicas: min_isr,
            unclean_leader_election: false,
        },
        client: None,
    }
}

/// The one answer `to` got in `step` that `pick` takes.
fn the_answer<T: Clone + std::fmt::Debug>(
    step: &Step,
    to: usize,
    pick: impl Fn(Msg) -> Option<T>,
) -> T {
    match step
        .sends_to(to)
        .into_iter()
        .filter_map(pick)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [answer] => answer.clone(),
        other => panic!(
            "expected one answer to {to}, got {other:?}: {:?}",
            step.sends()
        ),
    }
}

fn create_result(step: &Step) -> (Result<(), ErrorCode>, Option<String>) {
    the_answer(step, 1, |m| match m {
        Msg::CreateTopicsResponse {
            result,
            error_message,
            ..
        } => Some((result, error_message.map(|m| m.to_string()))),
        _ => None,
    })
}

#[test]
fn r46_create_topics_validates_names_and_configs_at_the_controller() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let long = "x".repeat(250);
    let cases = [
        (create("", 1, 1, 1), ErrorCode::InvalidTopic),
        (create("..", 1, 1, 1), ErrorCode::InvalidTopic),
        (create("bad/name", 1, 1, 1), ErrorCode::InvalidTopic),
        (create(&long, 1, 1, 1), ErrorCode::InvalidTopic),
        (create("t", 1, 1, 1), ErrorCode::TopicAlreadyExists),
        (create("u", 0, 1, 1), ErrorCode::InvalidPartitions),
        (create("u", 1, 4, 1), ErrorCode::InvalidReplicationFactor),
        (create("u", 1, 2, 3), ErrorCode::InvalidConfig),
        (create("u", 1, 2, 0), ErrorCode::InvalidConfig),
    ];
    for (msg, error) in cases {
        let step = deliver(&c, CONTROLLER, &s, 1, msg);
        let (result, message) = create_result(&step);
        assert_eq!(result, Err(error));
        assert!(message.is_some_and(|m| !m.is_empty()), "{error:?} says why");
        assert!(step.next.is_none(), "{error:?} changes nothing");
    }
    let step = deliver(&c, CONTROLLER, &s, 1, create("u.v_w-2", 2, 2, 2));
    assert_eq!(create_result(&step), (Ok(()), None));
    assert_eq!(
        step.controller().metadata_offset,
        2,
        "one record per partition"
    );
    assert!(step.save_precedes_sends());
}

#[test]
fn r46_create_topics_refuses_what_the_metadata_limit_cannot_carry_and_names_the_limit() {
    let mut c = controller(&cluster(Protocol::Kip320), true);
    let Node::Controller(inner) = &mut c else {
        unreachable!()
    };
    inner.config.metadata_bytes_max = 2_000;
    let s = fresh(&c, CONTROLLER);
    let step = deliver(&c, CONTROLLER, &s, 1, create("big", 4000, 3, 2));
    let (result, message) = create_result(&step);
    assert_eq!(result, Err(ErrorCode::PolicyViolation));
    let message = message.unwrap();
    assert!(message.contains("2000"), "names the limit: {message}");
    assert!(step.next.is_none());
    // A topic that fits is created.
    let step = deliver(&c, CONTROLLER, &s, 1, create("small", 4, 3, 2));
    assert_eq!(create_result(&step).0, Ok(()));
}

/// The canonical cluster with KIP-966's eligible leader replicas.
fn elr_cluster() -> std::sync::Arc<ClusterConfig> {
    let mut c = (*cluster(Protocol::Kip320)).clone();
    c.eligible_leader_replicas = true;
    std::sync::Arc::new(c)
}

fn with_elr(mut p: PartitionState, elr: &[BrokerId]) -> PartitionState {
    p.elr = elr.into();
    p
}

#[test]
fn r52_a_replica_fenced_under_min_isr_becomes_eligible_and_the_last_member_leaves_too() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    // ISR [1,2] with min.insync.replicas 2: fencing 2 leaves [1], under min ISR, so 2 is an ELR.
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(1), 0, 0, &[1, 2]),
    );
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(2));
    let p = &step.controller().partitions[&tp()];
    assert_eq!((&*p.isr, &*p.elr), (&[1][..], &[2][..]));
    // Then the leader, the last member, is fenced: the ISR empties, and no eligible replica is
    // live, so the partition is offline.
    let s = after(&s, &step);
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.leader, None);
    assert!(p.isr.is_empty(), "with KIP-966 the ISR may empty");
    assert_eq!(&*p.elr, &[2, 1]);
    // Without KIP-966 the last member stays (R2).
    let plain = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&plain, CONTROLLER);
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(1), 0, 0, &[1, 2]),
    );
    let p = fire(&plain, CONTROLLER, &s, Timer::SessionTimeout(2))
        .controller()
        .partitions[&tp()]
        .clone();
    assert!(p.elr.is_empty());
}

#[test]
fn r52_an_isr_at_min_isr_needs_no_eligible_replicas() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    // ISR [1,2,3] under min ISR 2: fencing 3 leaves [1,2], which is enough: no ELR.
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(&*p.isr, &[1, 2]);
    assert!(p.elr.is_empty());
    // An accepted AlterPartition back to min ISR empties the ELR.
    let s = with_partition(
        s.as_controller().unwrap(),
        with_elr(partition(Some(1), 0, 0, &[1]), &[2]),
    );
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        1,
        alter_seen(0, 0, 0, &[1, 2], &[(2, 0)]),
    );
    let p = alter_result(&step).expect("accepted");
    assert_eq!(&*p.isr, &[1, 2]);
    assert!(p.elr.is_empty());
}

#[test]
fn r52_a_fenced_eligible_replica_stays_eligible_and_a_replica_out_of_both_stays_out() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    // ISR [1] and ELR [2], broker 2 unfenced again but not yet back in the ISR: its session
    // expires. It was fenced in the incarnation the ELR recorded, so it stays eligible (found by
    // I33: dropping it left the ISR and ELR under min.insync.replicas).
    let s = with_partition(
        s.as_controller().unwrap(),
        with_elr(partition(Some(1), 0, 0, &[1]), &[2]),
    );
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(2));
    let p = &step.controller().partitions[&tp()];
    assert_eq!((&*p.isr, &*p.elr), (&[1][..], &[2][..]));
    // Broker 3, in neither, is fenced: it joins neither, since it left the ISR while the ISR was
    // at min.insync.replicas and may lack records committed since.
    let s = after(&s, &step);
    let step = fire(&c, CONTROLLER, &s, Timer::SessionTimeout(3));
    let p = &step.controller().partitions[&tp()];
    assert_eq!((&*p.isr, &*p.elr), (&[1][..], &[2][..]));
}

#[test]
fn r53_with_an_empty_isr_a_live_eligible_replica_is_elected() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    // Offline with ISR [] and ELR [2]; broker 2 was fenced and heartbeats again in the same
    // incarnation (it was only cut off): it is elected and becomes the whole ISR.
    let mut cs = s.as_controller().unwrap().clone();
    cs.partitions
        .insert(tp(), with_elr(partition(None, 1, 2, &[]), &[2]));
    cs.brokers[1].1.fenced = true;
    let s = NodeState::Controller(cs);
    let step = deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 0, Some(0)));
    let p = &step.controller().partitions[&tp()];
    assert_eq!((p.leader, p.leader_epoch), (Some(2), 2));
    assert_eq!((&*p.isr, p.elr.is_empty()), (&[2][..], true));
}

#[test]
fn r54_a_restarted_broker_leaves_the_isr_even_as_its_last_member_and_every_elr() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    // Broker 1 leads with ISR [1] and ELR [2], broker 2 being fenced (dead); broker 1 restarts
    // (a new broker epoch). Without KIP-966 it would stay in the ISR and be elected again with
    // whatever its log kept.
    let mut cs = s.as_controller().unwrap().clone();
    cs.brokers[1].1.fenced = true;
    let s = with_partition(&cs, with_elr(partition(Some(1), 0, 0, &[1]), &[2]));
    let step = deliver(&c, CONTROLLER, &s, 1, heartbeat(1, 1, Some(0)));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(
        p.leader, None,
        "broker 2, the eligible replica, is not live"
    );
    assert!(p.isr.is_empty());
    assert_eq!(&*p.elr, &[2]);
    // Broker 2 restarts too: it leaves the ELR, and nobody may lead.
    let s = after(&s, &step);
    let step = deliver(&c, CONTROLLER, &s, 2, heartbeat(2, 1, Some(0)));
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.leader, None);
    assert!(p.isr.is_empty() && p.elr.is_empty());
    // The same restart without KIP-966: broker 1 is the last ISR member, stays, and leads again.
    let plain = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&plain, CONTROLLER);
    let s = with_partition(s.as_controller().unwrap(), partition(Some(1), 0, 0, &[1]));
    let step = deliver(&plain, CONTROLLER, &s, 1, heartbeat(1, 1, Some(0)));
    assert_eq!(step.controller().partitions[&tp()].leader, Some(1));
}

fn elect_leaders(election: ElectionType, partitions: Option<Vec<TopicPartition>>) -> Msg {
    Msg::ElectLeaders {
        election,
        partitions: partitions.map(Into::into),
        client: Some(id(PRODUCER)),
    }
}

fn elect_results(step: &Step) -> Vec<(TopicPartition, Result<BrokerId, ErrorCode>)> {
    match step.sends_to(PRODUCER).as_slice() {
        [Msg::ElectLeadersResponse { results, .. }] => results.to_vec(),
        other => panic!("the client got {other:?}"),
    }
}

#[test]
fn r55_a_preferred_election_moves_leadership_back_and_says_when_it_cannot() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // Broker 2 leads epoch 1 with every replica in the ISR: broker 1, preferred, takes it back.
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(2), 1, 1, &[1, 2, 3]),
    );
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        elect_leaders(ElectionType::Preferred, None),
    );
    assert_eq!(elect_results(&step), vec![(tp(), Ok(1))]);
    let p = &step.controller().partitions[&tp()];
    assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
    assert!(step.save_precedes_sends());
    // Again: nothing to do.
    let s = after(&s, &step);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        elect_leaders(ElectionType::Preferred, None),
    );
    assert_eq!(
        elect_results(&step),
        vec![(tp(), Err(ErrorCode::ElectionNotNeeded))]
    );
    // Broker 1 out of the ISR: not available. An unknown partition: said so.
    let s = with_partition(
        s.as_controller().unwrap(),
        partition(Some(2), 3, 3, &[2, 3]),
    );
    let unknown = TopicPartition::new(&Topic::new("nope"), 0);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        elect_leaders(ElectionType::Preferred, Some(vec![tp(), unknown.clone()])),
    );
    assert_eq!(
        elect_results(&step),
        vec![
            (tp(), Err(ErrorCode::PreferredLeaderNotAvailable)),
            (unknown, Err(ErrorCode::UnknownTopicOrPartition)),
        ]
    );
}

#[test]
fn r55_an_unclean_election_elects_a_live_replica_of_an_offline_partition() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // Offline with ISR [1] (dead); brokers 2 and 3 are live: 2 leads, alone in the ISR.
    let mut cs = s.as_controller().unwrap().clone();
    cs.brokers[0].1.fenced = true;
    let s = with_partition(&cs, partition(None, 1, 1, &[1]));
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        elect_leaders(ElectionType::Unclean, None),
    );
    assert_eq!(elect_results(&step), vec![(tp(), Ok(2))]);
    let p = &step.controller().partitions[&tp()];
    assert_eq!((p.leader, &*p.isr, p.leader_epoch), (Some(2), &[2][..], 2));
    // A partition with a leader needs none.
    let s = after(&s, &step);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        elect_leaders(ElectionType::Unclean, None),
    );
    assert_eq!(
        elect_results(&step),
        vec![(tp(), Err(ErrorCode::ElectionNotNeeded))]
    );
}

fn alter_configs(topic: &str, min_isr: Option<u32>, unclean: Option<bool>) -> Msg {
    Msg::IncrementalAlterConfigs {
        topic: Topic::new(topic),
        changes: TopicConfigChanges {
            min_insync_replicas: min_isr,
            unclean_leader_election: unclean,
        },
        client: None,
    }
}

fn configs_result(step: &Step) -> (Result<TopicConfigs, ErrorCode>, Option<String>) {
    the_answer(step, 2, |m| match m {
        Msg::IncrementalAlterConfigsResponse {
            result,
            error_message,
            ..
        } => Some((result, error_message.map(|m| m.to_string()))),
        _ => None,
    })
}

#[test]
fn r56_a_config_change_is_a_new_partition_epoch_pushed_to_the_replicas() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let before = s.as_controller().unwrap().partitions[&tp()].clone();
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), Some(3), None),
    );
    let (result, _) = configs_result(&step);
    assert_eq!(
        result,
        Ok(TopicConfigs {
            min_insync_replicas: 3,
            unclean_leader_election: before.unclean_leader_election,
        })
    );
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.min_insync_replicas, 3);
    assert_eq!(p.partition_epoch, before.partition_epoch + 1);
    assert_eq!(p.leader_epoch, before.leader_epoch, "the leader stays");
    assert!(step.save_precedes_sends());
    // Every live replica gets the change pushed.
    for b in [1, 3] {
        assert!(
            step.sends_to(b).iter().any(|m| matches!(
                m,
                Msg::LeaderAndIsr { partitions, .. }
                    if partitions.iter().any(|q| q.min_insync_replicas == 3)
            )),
            "broker {b} gets the new min.insync.replicas: {:?}",
            step.sends()
        );
    }
    // The same value again changes nothing and pushes nothing.
    let s = after(&s, &step);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), Some(3), None),
    );
    assert!(configs_result(&step).0.is_ok());
    assert!(step.next.is_none(), "no new partition epoch");
    assert!(step.sends_to(1).is_empty());
}

#[test]
fn r56_bad_config_changes_are_refused_in_words_and_change_nothing() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // Above the replication factor (3).
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), Some(4), None),
    );
    let (result, message) = configs_result(&step);
    assert_eq!(result, Err(ErrorCode::InvalidConfig));
    assert!(message.unwrap().contains("replication factor (3)"));
    assert!(step.next.is_none(), "nothing changed");
    // Zero.
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), Some(0), None),
    );
    assert_eq!(configs_result(&step).0, Err(ErrorCode::InvalidConfig));
    // An unknown topic.
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs("nope", None, Some(true)),
    );
    let (result, message) = configs_result(&step);
    assert_eq!(result, Err(ErrorCode::UnknownTopicOrPartition));
    assert!(message.unwrap().contains("nope"));
    assert!(step.next.is_none());
}

#[test]
fn r56_enabling_unclean_election_elects_a_leader_for_an_offline_partition() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    // Offline with ISR [1] (dead); brokers 2 and 3 are live.
    let mut cs = s.as_controller().unwrap().clone();
    cs.brokers[0].1.fenced = true;
    let s = with_partition(&cs, partition(None, 1, 1, &[1]));
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), None, Some(true)),
    );
    assert_eq!(
        configs_result(&step).0.map(|c| c.unclean_leader_election),
        Ok(true)
    );
    let p = &step.controller().partitions[&tp()];
    assert_eq!(
        (p.leader, &*p.isr, p.leader_epoch, p.unclean_leader_election),
        (Some(2), &[2][..], 2, true)
    );
    assert!(step.save_precedes_sends());
    // Disabling it again keeps the leader.
    let s = after(&s, &step);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), None, Some(false)),
    );
    let p = &step.controller().partitions[&tp()];
    assert_eq!((p.leader, p.unclean_leader_election), (Some(2), false));
}

#[test]
fn r56_with_kip_966_a_new_min_isr_empties_the_elr() {
    let c = controller(&elr_cluster(), true);
    let s = fresh(&c, CONTROLLER);
    let s = with_partition(
        s.as_controller().unwrap(),
        with_elr(partition(Some(1), 1, 1, &[1]), &[2]),
    );
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), Some(1), None),
    );
    let p = &step.controller().partitions[&tp()];
    assert_eq!(p.min_insync_replicas, 1);
    assert!(p.elr.is_empty(), "the ELR was chosen under the old minimum");
    // Only unclean.leader.election.enable changing keeps it.
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        2,
        alter_configs(topic().as_str(), None, Some(true)),
    );
    assert_eq!(&*step.controller().partitions[&tp()].elr, &[2][..]);
}

#[test]
fn r56_a_broker_forwards_a_config_change_and_a_leader_applies_the_new_minimum() {
    let cl = cluster(Protocol::Kip320);
    let b = broker(1, &cl);
    let s = fresh(&b, 1);
    let step = deliver(&b, 1, &s, 9, alter_configs("t", Some(2), None));
    match &step.sends()[..] {
        [(0, Msg::IncrementalAlterConfigs { client, .. })] => assert_eq!(*client, Some(id(9))),
        other => panic!("forwarded to the controller naming the client: {other:?}"),
    }
    // The leader takes the pushed change under the same leadership (R13).
    let mut ps = replica(&s).partition.clone();
    ps.partition_epoch += 1;
    ps.min_insync_replicas = 3;
    let step = deliver(&b, 1, &s, 0, leader_and_isr(1, 0, ps));
    assert_eq!(replica(step.state()).partition.min_insync_replicas, 3);
}
