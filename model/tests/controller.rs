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
    let s = with_partition(s.as_controller().unwrap(), partition(Some(1), 0, 0, &[1]));
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
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        3,
        Msg::BrokerHeartbeat {
            broker_id: 3,
            broker_epoch: 3,
        },
    );
    assert!(step.is_noop());
}

#[test]
fn r4_a_restarted_broker_loses_its_leadership_and_is_registered_again() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        1,
        Msg::BrokerHeartbeat {
            broker_id: 1,
            broker_epoch: 1,
        },
    );
    let cs = step.controller();
    let p = &cs.partitions[&tp()];
    assert_eq!((p.leader, p.leader_epoch), (Some(2), 1));
    assert!(!p.isr.contains(&1), "the dead incarnation left the ISR");
    let r = cs.registration(1).unwrap();
    assert_eq!((r.broker_epoch, r.fenced), (1, false));
    // The new incarnation learns every partition it replicates, stamped with its epoch.
    assert!(step.sends_to(1).iter().any(|m| matches!(
        m,
        Msg::LeaderAndIsr {
            broker_epoch: 1,
            ..
        }
    )));
}

#[test]
fn r5_an_unfenced_broker_is_elected_for_the_partition_it_left_offline() {
    let c = controller(&cluster(Protocol::Kip320), true);
    let s = fresh(&c, CONTROLLER);
    let s = with_partition(s.as_controller().unwrap(), partition(Some(1), 0, 0, &[1]));
    let s = after(&s, &fire(&c, CONTROLLER, &s, Timer::SessionTimeout(1)));
    assert_eq!(s.as_controller().unwrap().partitions[&tp()].leader, None);
    let step = deliver(
        &c,
        CONTROLLER,
        &s,
        1,
        Msg::BrokerHeartbeat {
            broker_id: 1,
            broker_epoch: 0,
        },
    );
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
    match step.sends_to(1).as_slice() {
        [Msg::AlterPartitionResponse { result, .. }] => result.clone(),
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
        assert!(matches!(
            step.sends_to(1).as_slice(),
            [Msg::AlterPartitionResponse {
                current: Some(_),
                ..
            }]
        ));
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
        &deliver(
            &c,
            CONTROLLER,
            &s,
            3,
            Msg::BrokerHeartbeat {
                broker_id: 3,
                broker_epoch: 0,
            },
        ),
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
