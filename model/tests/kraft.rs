//! Handler tests of a controller of a KRaft quorum and of brokers following it (spec section
//! 4b, R73–R75): what takes effect only once committed, what a deposed controller forgets, and
//! how a broker finds the active controller.

mod support;

use stateright::actor::{model_timeout, Command};
use std::sync::Arc;
use support::*;
use watermark_model::kraft::{KraftController, KraftState};
use watermark_model::quorum::*;
use watermark_model::*;

/// Controllers 1, 2, 3 at ids 10, 11, 12; brokers 1, 2, 3 at ids 1, 2, 3.
const CONTROLLERS: [usize; 3] = [10, 11, 12];
const CLIENT: usize = 99;

fn quorum_cluster() -> Arc<ClusterConfig> {
    let mut c = (*cluster(Protocol::Kip320)).clone();
    c.controller = id(CONTROLLERS[0]);
    c.controllers = CONTROLLERS.iter().map(|i| id(*i)).collect();
    c.heartbeat_periodic = true;
    Arc::new(c)
}

fn kraft(node_id: NodeId) -> Node {
    let cluster = quorum_cluster();
    Node::Kraft(KraftController::new(
        QuorumNode::new(QuorumConfig {
            node_id,
            voters: (1..=3)
                .map(|n| (n, id(CONTROLLERS[n as usize - 1])))
                .collect(),
            changes: Vec::new(),
            fetch_entries_max: 1,
            bootstrapped: true,
            timing: QuorumTiming {
                election_timeout: model_timeout(),
                fetch_timeout: model_timeout(),
                fetch_max_wait: None,
                fetch_retry: None,
            },
        }),
        Controller::new(ControllerConfig {
            cluster,
            preferred_leader_election: false,
            racks: Vec::new(),
            metadata_bytes_max: u64::MAX,
        }),
    ))
}

fn index(node_id: NodeId) -> usize {
    CONTROLLERS[node_id as usize - 1]
}

fn kraft_state(s: &NodeState) -> &KraftState {
    match s {
        NodeState::Kraft(k) => k,
        _ => panic!("not a controller of a quorum"),
    }
}

/// Controller 2's fetch of controller 1's whole log in epoch 1.
fn fetch_all(leader: &KraftState) -> Msg {
    Msg::Quorum(QuorumMsg::Fetch(QuorumFetch {
        epoch: 1,
        replica: 2,
        fetch_offset: leader.quorum.log_end_offset(),
        last_fetched_epoch: 1,
        high_watermark: leader.quorum.high_watermark,
    }))
}

fn to_brokers(step: &Step) -> Vec<(usize, Msg)> {
    step.sends()
        .into_iter()
        .filter(|(to, _)| (1..=3).contains(to))
        .collect()
}

#[test]
fn r73_the_bootstrapped_leader_is_active_and_writes_its_state_to_the_log() {
    let c1 = kraft(1);
    let started = start(&c1, index(1), None);
    let s = kraft_state(started.state());
    let active = s.active.as_ref().expect("controller 1 leads epoch 1");
    assert_eq!(active.epoch, 1);
    assert_eq!(
        active.state.controller_epoch, 1,
        "the controller epoch is the quorum's"
    );
    assert!(matches!(
        s.quorum.log.last().map(|e| &e.record),
        Some(MetadataRecord::Controller(_))
    ));
    assert_eq!(
        s.quorum.high_watermark, 1,
        "the controller record waits for a majority"
    );
    assert!(started.save_precedes_sends());
}

#[test]
fn r73_a_decision_reaches_the_broker_only_once_a_majority_holds_it() {
    let c1 = kraft(1);
    let s0 = kraft_state(start(&c1, index(1), None).state()).clone();
    // Controller 2 catches up first, so that the bootstrapped state is committed.
    let caught_up = deliver(
        &c1,
        index(1),
        &NodeState::Kraft(s0.clone()),
        index(2),
        fetch_all(&s0),
    );
    let s1 = kraft_state(&after(&NodeState::Kraft(s0.clone()), &caught_up)).clone();
    assert_eq!(s1.quorum.high_watermark, s1.quorum.log_end_offset());

    // Broker 1 restarted (broker epoch 1): R4 registers it, a decision written to the log.
    let registered = deliver(
        &c1,
        index(1),
        &NodeState::Kraft(s1.clone()),
        1,
        heartbeat(1, 1, None),
    );
    let s2 = kraft_state(registered.state()).clone();
    assert!(
        registered.saved(),
        "the decision is a record of the metadata log"
    );
    assert!(
        to_brokers(&registered).is_empty(),
        "nothing reaches a broker before its record is committed: {:?}",
        registered.sends()
    );
    assert!(s2.quorum.log_end_offset() > s1.quorum.log_end_offset());
    assert!(!s2.active.as_ref().unwrap().held.is_empty());

    // Controller 2 fetches the new record: a majority holds it, and the answer goes out.
    let committed = deliver(
        &c1,
        index(1),
        &NodeState::Kraft(s2.clone()),
        index(2),
        fetch_all(&s2),
    );
    let s3 = kraft_state(committed.state());
    assert_eq!(s3.quorum.high_watermark, s3.quorum.log_end_offset());
    let answers: Vec<Msg> = committed.sends_to(1);
    assert!(
        answers.iter().any(|m| matches!(
            m,
            Msg::BrokerHeartbeatResponse {
                controller_epoch: 1,
                ..
            }
        )),
        "{answers:?}"
    );
    assert!(s3.active.as_ref().unwrap().held.is_empty());
}

#[test]
fn r73_a_deposed_controller_drops_its_state_and_every_held_message() {
    let c1 = kraft(1);
    let s0 = kraft_state(start(&c1, index(1), None).state()).clone();
    let held = deliver(
        &c1,
        index(1),
        &NodeState::Kraft(s0.clone()),
        1,
        heartbeat(1, 1, None),
    );
    let s1 = kraft_state(held.state()).clone();
    assert!(!s1.active.as_ref().unwrap().held.is_empty());
    // Controller 2 stands in epoch 2 with a longer log: controller 1 steps down.
    let vote = Msg::Quorum(QuorumMsg::Vote {
        epoch: 2,
        candidate: 2,
        last_epoch: 1,
        log_end_offset: 100,
    });
    let deposed = deliver(&c1, index(1), &NodeState::Kraft(s1), index(2), vote);
    let s2 = kraft_state(deposed.state());
    assert!(s2.active.is_none(), "no longer the active controller");
    assert!(to_brokers(&deposed).is_empty(), "{:?}", deposed.sends());
    // What it held never goes out, even once its high watermark moves.
    assert_eq!(s2.quorum.epoch, 2);
}

#[test]
fn r73_a_new_leader_starts_the_controller_from_the_newest_record_in_its_own_epoch() {
    let c2 = kraft(2);
    let mut written = kraft_state(start(&kraft(1), index(1), None).state())
        .active
        .clone()
        .unwrap()
        .state;
    written.brokers[2].1.fenced = true;
    let storage = QuorumStorage {
        epoch: 1,
        voted_for: Some(1),
        leader: Some(1),
        log: Arc::new(vec![
            MetadataEntry {
                epoch: 1,
                record: MetadataRecord::LeaderChange { leader: 1 },
            },
            MetadataEntry {
                epoch: 1,
                record: MetadataRecord::Controller(Arc::new(written.clone())),
            },
        ]),
    };
    let s0 =
        kraft_state(start(&c2, index(2), Some(Storage::Quorum(Arc::new(storage)))).state()).clone();
    assert!(s0.active.is_none(), "a follower is not active");
    let stood = fire(
        &c2,
        index(2),
        &NodeState::Kraft(s0),
        Timer::Quorum(QuorumTimer::FetchTimeout),
    );
    let s1 = kraft_state(stood.state()).clone();
    let granted = Msg::Quorum(QuorumMsg::VoteResponse {
        epoch: 2,
        voter: 3,
        granted: true,
    });
    let elected = deliver(&c2, index(2), &NodeState::Kraft(s1), index(3), granted);
    let s2 = kraft_state(elected.state());
    let active = s2.active.as_ref().expect("controller 2 leads epoch 2");
    assert_eq!(active.state.controller_epoch, 2);
    assert!(
        active.state.brokers == written.brokers,
        "the registrations of the record"
    );
    assert!(
        to_brokers(&elected).is_empty(),
        "its pushes wait for its first record to commit"
    );
    // It pushes its state to the two live brokers (broker 3 is fenced in the record), in
    // order, once committed.
    let held: Vec<usize> = active
        .held
        .iter()
        .map(|(_, to, _)| usize::from(*to))
        .collect();
    assert_eq!(held, vec![1, 2], "{:?}", active.held);
    assert!(active
        .held
        .iter()
        .all(|(_, _, m)| m.controller_epoch() == Some(2)));
}

#[test]
fn r74_a_controller_that_is_not_active_names_the_active_one_and_forwards_admin_requests() {
    let c2 = kraft(2);
    let s = start(&c2, index(2), None);
    let s = s.state();
    let answer = deliver(&c2, index(2), s, 1, heartbeat(1, 1, None));
    assert_eq!(
        answer.sends_to(1),
        vec![Msg::NotController {
            leader: Some(id(CONTROLLERS[0]))
        }]
    );
    let create = Msg::CreateTopics {
        topic: Topic::new("u"),
        partitions: 1,
        replication_factor: 1,
        configs: TopicConfigs::default(),
        client: Some(id(CLIENT)),
    };
    let forwarded = deliver(&c2, index(2), s, 1, create.clone());
    assert_eq!(forwarded.sends_to(CONTROLLERS[0]), vec![create]);
}

#[test]
fn r75_describe_quorum_shows_the_leader_and_each_voters_progress() {
    let c1 = kraft(1);
    let s0 = kraft_state(start(&c1, index(1), None).state()).clone();
    let described = deliver(
        &c1,
        index(1),
        &NodeState::Kraft(s0.clone()),
        CLIENT,
        Msg::DescribeQuorum,
    );
    let answers = described.sends_to(CLIENT);
    let [Msg::DescribeQuorumResponse(d)] = answers.as_slice() else {
        panic!("{:?}", described.sends());
    };
    assert_eq!(d.leader, Some(1));
    assert_eq!(d.epoch, 1);
    assert_eq!(d.log_end_offset, s0.quorum.log_end_offset());
    assert_eq!(d.voters.len(), 3);
    assert_eq!(d.voters[0], (1, Some(s0.quorum.log_end_offset())));
}

fn quorum_broker() -> (Node, NodeState) {
    let b = broker(1, &quorum_cluster());
    let s = start(&b, 1, None).state().clone();
    (b, s)
}

#[test]
fn r74_a_broker_follows_the_active_controller_a_controller_names() {
    let (b, s) = quorum_broker();
    assert_eq!(s.as_broker().unwrap().controller, id(CONTROLLERS[0]));
    let redirect = Msg::NotController {
        leader: Some(id(CONTROLLERS[2])),
    };
    let moved = deliver(&b, 1, &s, CONTROLLERS[0], redirect.clone());
    assert_eq!(moved.broker().controller, id(CONTROLLERS[2]));
    assert!(matches!(
        moved.sends_to(CONTROLLERS[2]).as_slice(),
        [Msg::BrokerHeartbeat { .. }]
    ));
    // Only the controller it follows redirects it.
    let ignored = deliver(&b, 1, &s, CONTROLLERS[1], redirect);
    assert!(ignored.is_noop());
}

#[test]
fn r74_a_broker_whose_heartbeats_go_unanswered_tries_the_next_controller() {
    let (b, mut s) = quorum_broker();
    let mut went_to = Vec::new();
    for _ in 0..3 {
        let beat = fire(&b, 1, &s, Timer::Heartbeat);
        went_to.extend(beat.sends().into_iter().map(|(to, _)| to));
        s = after(&s, &beat);
    }
    assert_eq!(
        went_to,
        vec![CONTROLLERS[0], CONTROLLERS[0], CONTROLLERS[1]],
        "two unanswered heartbeats, then the next controller"
    );
}

#[test]
fn r74_a_broker_follows_the_controller_of_a_newer_epoch() {
    let (b, s) = quorum_broker();
    let push = leader_and_isr_at(2, 0, (Some(0), 1), partition(Some(1), 1, 1, &[1, 2, 3]));
    let moved = deliver(&b, 1, &s, CONTROLLERS[2], push);
    assert_eq!(moved.broker().controller, id(CONTROLLERS[2]));
    assert_eq!(moved.broker().controller_epoch, 2);
    // A heartbeat now goes to it.
    let beat = fire(&b, 1, moved.state(), Timer::Heartbeat);
    assert!(beat.commands.iter().any(
        |c| matches!(c, Command::Send(to, Msg::BrokerHeartbeat { .. }) if *to == id(CONTROLLERS[2]))
    ));
}

#[test]
fn r73_the_controllers_timers_act_only_while_it_is_active() {
    // The active controller's session timer fences a silent broker: a record, held answers.
    let c1 = kraft(1);
    let s = start(&c1, index(1), None).state().clone();
    let expired = fire(&c1, index(1), &s, Timer::SessionTimeout(1));
    let after_expiry = kraft_state(expired.state());
    let active = after_expiry.active.as_ref().expect("still active");
    assert!(active.state.registration(1).is_some_and(|r| r.fenced));
    assert!(
        expired.saved(),
        "the fencing is a record of the metadata log"
    );
    assert!(to_brokers(&expired).is_empty(), "{:?}", expired.sends());
    // A controller that is not active lets the controller's timers lapse: no state, no record.
    let c2 = kraft(2);
    let s = start(&c2, index(2), None).state().clone();
    assert!(fire(&c2, index(2), &s, Timer::SessionTimeout(1)).is_noop());
}
