//! Handler tests of the KRaft quorum (spec section 4a, R63–R72): one handler at a time, what it
//! did to the state and what it sent, saved first.

use stateright::actor::{model_timeout, Actor, Command, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use watermark_model::quorum::*;

fn id(i: usize) -> Id {
    Id::from(i)
}

/// Node `node_id` of a quorum of three voters (ids 0, 1, 2) and an observer (node 4, id 3).
fn node(node_id: NodeId, bootstrapped: bool) -> QuorumNode {
    QuorumNode::new(QuorumConfig {
        node_id,
        voters: (1..=3).map(|n| (n, id(n as usize - 1))).collect(),
        changes: vec![7],
        fetch_entries_max: 1,
        bootstrapped,
        timing: QuorumTiming {
            fetch_max_wait: None,
            fetch_retry: None,
            election_timeout: model_timeout(),
            fetch_timeout: model_timeout(),
        },
    })
}

type Cmd = Command<QuorumMsg, QuorumTimer, (), QuorumStorage>;

fn sends(out: &[Cmd]) -> Vec<(Id, QuorumMsg)> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send(to, m) => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

/// R0: a save, if any, comes before every send.
fn saved_first(out: &[Cmd]) -> bool {
    let save = out.iter().position(|c| matches!(c, Command::Save(_)));
    let send = out.iter().position(|c| matches!(c, Command::Send(..)));
    match (save, send) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn start(n: &QuorumNode, storage: Option<QuorumStorage>) -> (QuorumState, Vec<Cmd>) {
    let mut o = Out::new();
    let s = n.on_start(id(n.config.node_id as usize - 1), &storage, &mut o);
    (s, o.into_iter().collect())
}

fn deliver(n: &QuorumNode, s: &QuorumState, src: usize, msg: QuorumMsg) -> (QuorumState, Vec<Cmd>) {
    let mut o = Out::new();
    let mut cow = Cow::Borrowed(s);
    n.on_msg(id(0), &mut cow, id(src), msg, &mut o);
    (cow.into_owned(), o.into_iter().collect())
}

fn fire(n: &QuorumNode, s: &QuorumState, timer: QuorumTimer) -> (QuorumState, Vec<Cmd>) {
    let mut o = Out::new();
    let mut cow = Cow::Borrowed(s);
    n.on_timeout(id(0), &mut cow, &timer, &mut o);
    (cow.into_owned(), o.into_iter().collect())
}

fn entry(epoch: QuorumEpoch, record: MetadataRecord) -> MetadataEntry {
    MetadataEntry { epoch, record }
}

fn leader_change(epoch: QuorumEpoch, leader: NodeId) -> MetadataEntry {
    entry(epoch, MetadataRecord::LeaderChange { leader })
}

fn fetch(
    epoch: QuorumEpoch,
    replica: NodeId,
    offset: u64,
    last: QuorumEpoch,
    hwm: u64,
) -> QuorumMsg {
    QuorumMsg::Fetch(QuorumFetch {
        epoch,
        replica,
        fetch_offset: offset,
        last_fetched_epoch: last,
        high_watermark: hwm,
    })
}

#[test]
fn r63_a_running_quorum_starts_led_by_the_first_voter_which_writes_its_change() {
    let (leader, out) = start(&node(1, true), None);
    assert!(leader.is_leader());
    assert_eq!(leader.epoch, 1);
    assert_eq!(
        *leader.log,
        vec![leader_change(1, 1), entry(1, MetadataRecord::Change(7))]
    );
    assert_eq!(leader.high_watermark, 1, "the change is not committed yet");
    assert!(out.iter().any(|c| matches!(c, Command::Save(_))));
    let (follower, out) = start(&node(2, true), None);
    assert_eq!(follower.role, QuorumRole::Follower);
    assert_eq!(follower.leader, Some(1));
    assert!(saved_first(&out));
    assert_eq!(sends(&out), vec![(id(0), fetch(1, 2, 1, 1, 1))]);
}

#[test]
fn r63_a_leader_that_restarts_resigns_and_a_follower_fetches_from_its_leader_again() {
    let stored = QuorumStorage {
        epoch: 2,
        voted_for: Some(2),
        leader: Some(2),
        log: Arc::new(vec![leader_change(1, 1), leader_change(2, 2)]),
    };
    let (s, out) = start(&node(2, true), Some(stored.clone()));
    assert_eq!(s.role, QuorumRole::Unattached);
    assert_eq!(s.leader, None, "it never leads epoch 2 again");
    assert_eq!(s.voted_for, Some(2));
    assert_eq!(
        s.high_watermark, 0,
        "the HWM is learnt again, not persisted"
    );
    assert!(sends(&out).is_empty());
    let (s, out) = start(&node(3, true), Some(stored));
    assert_eq!(s.role, QuorumRole::Follower);
    assert_eq!(sends(&out), vec![(id(1), fetch(2, 3, 2, 2, 0))]);
}

#[test]
fn r65_a_follower_whose_leader_went_quiet_stands_in_the_next_epoch_with_its_vote_saved() {
    let (s, _) = start(&node(2, true), None);
    let (s, out) = fire(&node(2, true), &s, QuorumTimer::FetchTimeout);
    assert_eq!(s.epoch, 2);
    assert_eq!(s.voted_for, Some(2));
    assert!(matches!(s.role, QuorumRole::Candidate { .. }));
    assert!(saved_first(&out));
    let vote = QuorumMsg::Vote {
        epoch: 2,
        candidate: 2,
        last_epoch: 1,
        log_end_offset: 1,
    };
    assert_eq!(sends(&out), vec![(id(0), vote.clone()), (id(2), vote)]);
}

#[test]
fn r66_a_vote_goes_once_an_epoch_to_a_candidate_whose_log_is_as_long_and_is_saved_first() {
    let n = node(3, true);
    let (s, _) = start(&n, None);
    let vote = |candidate, last_epoch, log_end_offset| QuorumMsg::Vote {
        epoch: 2,
        candidate,
        last_epoch,
        log_end_offset,
    };
    // A shorter log in the same last epoch is refused, though the epoch moves on.
    let mut longer = s.clone();
    Arc::make_mut(&mut longer.log).push(entry(1, MetadataRecord::Change(7)));
    let (refused, out) = deliver(&n, &longer, 1, vote(2, 1, 1));
    assert_eq!(refused.epoch, 2);
    assert_eq!(refused.voted_for, None);
    assert_eq!(
        sends(&out),
        vec![(
            id(1),
            QuorumMsg::VoteResponse {
                epoch: 2,
                voter: 3,
                granted: false
            }
        )]
    );
    // As long: granted and saved before the answer.
    let (granted, out) = deliver(&n, &s, 1, vote(2, 1, 1));
    assert_eq!(granted.voted_for, Some(2));
    assert!(saved_first(&out));
    assert_eq!(
        sends(&out),
        vec![(
            id(1),
            QuorumMsg::VoteResponse {
                epoch: 2,
                voter: 3,
                granted: true
            }
        )]
    );
    // Another candidate of the same epoch is refused, however long its log.
    let (again, out) = deliver(&n, &granted, 0, vote(1, 1, 5));
    assert_eq!(again.voted_for, Some(2));
    assert_eq!(
        sends(&out),
        vec![(
            id(0),
            QuorumMsg::VoteResponse {
                epoch: 2,
                voter: 3,
                granted: false
            }
        )]
    );
    // An older epoch's candidate learns ours.
    let (_, out) = deliver(
        &n,
        &granted,
        0,
        QuorumMsg::Vote {
            epoch: 1,
            candidate: 1,
            last_epoch: 1,
            log_end_offset: 9,
        },
    );
    assert_eq!(
        sends(&out),
        vec![(
            id(0),
            QuorumMsg::VoteResponse {
                epoch: 2,
                voter: 3,
                granted: false
            }
        )]
    );
}

#[test]
fn r67_a_majority_elects_the_candidate_which_writes_leader_change_then_its_changes() {
    let n = node(2, true);
    let (s, _) = start(&n, None);
    let (candidate, _) = fire(&n, &s, QuorumTimer::FetchTimeout);
    let (refused, out) = deliver(
        &n,
        &candidate,
        2,
        QuorumMsg::VoteResponse {
            epoch: 2,
            voter: 3,
            granted: false,
        },
    );
    assert!(matches!(refused.role, QuorumRole::Candidate { .. }));
    assert!(out.is_empty());
    let (leader, out) = deliver(
        &n,
        &candidate,
        2,
        QuorumMsg::VoteResponse {
            epoch: 2,
            voter: 3,
            granted: true,
        },
    );
    assert!(leader.is_leader());
    assert_eq!(leader.leader, Some(2));
    assert_eq!(
        leader.log[1..].to_vec(),
        vec![leader_change(2, 2), entry(2, MetadataRecord::Change(7))]
    );
    assert!(saved_first(&out));
    let begin = QuorumMsg::BeginQuorumEpoch {
        epoch: 2,
        leader: 2,
    };
    assert_eq!(sends(&out), vec![(id(0), begin.clone()), (id(2), begin)]);
}

#[test]
fn r64_an_answer_from_a_newer_epoch_deposes_a_candidate() {
    let n = node(2, true);
    let (s, _) = start(&n, None);
    let (candidate, _) = fire(&n, &s, QuorumTimer::FetchTimeout);
    let (s, out) = deliver(
        &n,
        &candidate,
        2,
        QuorumMsg::VoteResponse {
            epoch: 3,
            voter: 3,
            granted: false,
        },
    );
    assert_eq!(s.epoch, 3);
    assert_eq!(s.role, QuorumRole::Unattached);
    assert_eq!(s.voted_for, None);
    assert!(out.iter().any(|c| matches!(c, Command::Save(_))));
}

#[test]
fn r69_the_leader_answers_a_divergence_with_where_the_followers_epoch_ends() {
    let n = node(1, true);
    let (leader, _) = start(&n, None);
    // Node 2 holds offset 1 from an epoch 2 the leader never had.
    let (_, out) = deliver(&n, &leader, 1, fetch(1, 2, 2, 2, 1));
    assert_eq!(
        sends(&out),
        vec![(
            id(1),
            QuorumMsg::FetchResponse {
                epoch: 1,
                leader: Some(1),
                fetch_offset: 2,
                result: QuorumFetchResult::Diverging {
                    epoch: 1,
                    end_offset: 2
                },
            }
        )]
    );
}

#[test]
fn r69_the_hwm_is_the_majoritys_and_a_caught_up_fetch_is_held_until_there_is_news() {
    let n = node(1, true);
    let (leader, _) = start(&n, None);
    // Node 2 fetches from offset 1: it gets the change; the HWM stays (only the leader holds it).
    let (leader, out) = deliver(&n, &leader, 1, fetch(1, 2, 1, 1, 1));
    assert_eq!(leader.high_watermark, 1);
    assert_eq!(
        sends(&out),
        vec![(
            id(1),
            QuorumMsg::FetchResponse {
                epoch: 1,
                leader: Some(1),
                fetch_offset: 1,
                result: QuorumFetchResult::Records {
                    entries: vec![entry(1, MetadataRecord::Change(7))],
                    high_watermark: 1
                },
            }
        )]
    );
    // The observer (node 4) is caught up: held.
    let (leader, out) = deliver(&n, &leader, 3, fetch(1, 4, 2, 1, 1));
    assert!(out.is_empty());
    // Node 2 fetches from 2: a majority holds the change, the HWM moves and the held fetch is
    // answered; node 2's own fetch has news (the HWM) too.
    let (leader, out) = deliver(&n, &leader, 1, fetch(1, 2, 2, 1, 1));
    assert_eq!(leader.high_watermark, 2);
    let to: BTreeSet<Id> = sends(&out).iter().map(|(to, _)| *to).collect();
    assert_eq!(to, BTreeSet::from([id(1), id(3)]));
    // An observer's fetch offset does not count towards the HWM.
    let (s, _) = start(&n, None);
    let (s, _) = deliver(&n, &s, 3, fetch(1, 4, 2, 1, 1));
    assert_eq!(s.high_watermark, 1);
}

#[test]
fn r69_a_fetch_for_another_epoch_or_to_a_non_leader_is_refused_with_the_leader_it_knows() {
    let n = node(2, true);
    let (follower, _) = start(&n, None);
    let (_, out) = deliver(&n, &follower, 3, fetch(1, 4, 0, 0, 0));
    assert_eq!(
        sends(&out),
        vec![(
            id(3),
            QuorumMsg::FetchResponse {
                epoch: 1,
                leader: Some(1),
                fetch_offset: 0,
                result: QuorumFetchResult::Error(QuorumError::NotLeader),
            }
        )]
    );
    let (leader, _) = start(&node(1, true), None);
    let (_, out) = deliver(&node(1, true), &leader, 3, fetch(0, 4, 0, 0, 0));
    assert!(matches!(
        &sends(&out)[0].1,
        QuorumMsg::FetchResponse {
            result: QuorumFetchResult::Error(QuorumError::FencedLeaderEpoch),
            ..
        }
    ));
}

#[test]
fn r70_records_are_applied_only_below_the_leaders_hwm_and_a_divergence_truncates() {
    let n = node(4, true);
    let (observer, _) = start(&n, None);
    let records = |entries, hwm| QuorumMsg::FetchResponse {
        epoch: 1,
        leader: Some(1),
        fetch_offset: 1,
        result: QuorumFetchResult::Records {
            entries,
            high_watermark: hwm,
        },
    };
    let (s, out) = deliver(
        &n,
        &observer,
        0,
        records(vec![entry(1, MetadataRecord::Change(7))], 1),
    );
    assert_eq!(s.log_end_offset(), 2);
    assert_eq!(s.applied().len(), 1, "the change is not below the HWM yet");
    assert!(saved_first(&out));
    assert_eq!(sends(&out), vec![(id(0), fetch(1, 4, 2, 1, 1))]);
    // A divergence: truncate to where epoch 1 ends at the leader, at most.
    let diverging = QuorumMsg::FetchResponse {
        epoch: 1,
        leader: Some(1),
        fetch_offset: 2,
        result: QuorumFetchResult::Diverging {
            epoch: 1,
            end_offset: 1,
        },
    };
    let (cut, out) = deliver(&n, &s, 0, diverging);
    assert_eq!(cut.log_end_offset(), 1);
    assert_eq!(sends(&out), vec![(id(0), fetch(1, 4, 1, 1, 1))]);
}

#[test]
fn r70_an_answer_from_an_older_epoch_is_ignored_and_a_newer_one_names_the_leader_to_follow() {
    let n = node(4, true);
    let (observer, _) = start(&n, None);
    let mut newer = observer.clone();
    newer.epoch = 2;
    let old = QuorumMsg::FetchResponse {
        epoch: 1,
        leader: Some(1),
        fetch_offset: 1,
        result: QuorumFetchResult::Records {
            entries: vec![entry(1, MetadataRecord::Change(7))],
            high_watermark: 2,
        },
    };
    let (s, out) = deliver(&n, &newer, 0, old);
    assert_eq!(s, newer);
    assert!(out.is_empty());
    let refused = QuorumMsg::FetchResponse {
        epoch: 2,
        leader: Some(3),
        fetch_offset: 1,
        result: QuorumFetchResult::Error(QuorumError::FencedLeaderEpoch),
    };
    let (s, out) = deliver(&n, &observer, 0, refused);
    assert_eq!((s.epoch, s.leader), (2, Some(3)));
    assert_eq!(sends(&out), vec![(id(2), fetch(2, 4, 1, 1, 1))]);
}

#[test]
fn r72_an_observer_whose_fetch_timed_out_asks_the_next_voter() {
    let n = node(4, true);
    let (observer, _) = start(&n, None);
    let (s, out) = fire(&n, &observer, QuorumTimer::FetchTimeout);
    assert_eq!(s.leader, None);
    assert_eq!(sends(&out), vec![(id(1), fetch(1, 4, 1, 1, 1))]);
}

#[test]
fn r68_begin_quorum_epoch_makes_a_voter_follow_the_new_leader() {
    let n = node(3, true);
    let (s, _) = start(&n, None);
    let (s, out) = deliver(
        &n,
        &s,
        1,
        QuorumMsg::BeginQuorumEpoch {
            epoch: 2,
            leader: 2,
        },
    );
    assert_eq!(
        (s.epoch, s.leader, s.role.clone()),
        (2, Some(2), QuorumRole::Follower)
    );
    assert!(saved_first(&out));
    assert_eq!(sends(&out), vec![(id(1), fetch(2, 3, 1, 1, 1))]);
    let (same, out) = deliver(
        &n,
        &s,
        0,
        QuorumMsg::BeginQuorumEpoch {
            epoch: 1,
            leader: 1,
        },
    );
    assert_eq!(same, s);
    assert!(out.is_empty());
}

/// The real cluster's timers: `node` with fetch.max.wait and the request timeout set.
fn node_with_real_timers(node_id: NodeId) -> QuorumNode {
    let mut n = node(node_id, true);
    n.config.timing.fetch_max_wait = Some(model_timeout());
    n.config.timing.fetch_retry = Some(model_timeout());
    n
}

#[test]
fn r69_r70_a_held_fetch_is_answered_after_the_max_wait_and_an_unanswered_one_is_sent_again() {
    // The leader holds a caught-up follower's fetch, and answers it, empty, when the max wait
    // fires.
    let leader_node = node_with_real_timers(1);
    let (leader, _) = start(&leader_node, None);
    let (leader, _) = deliver(&leader_node, &leader, 1, fetch(1, 2, 1, 1, 1));
    let (leader, _) = deliver(&leader_node, &leader, 1, fetch(1, 2, 2, 1, 1));
    assert_eq!(leader.high_watermark, 2);
    let (leader, out) = deliver(&leader_node, &leader, 1, fetch(1, 2, 2, 1, 2));
    assert!(out.is_empty(), "nothing new: held");
    let (_, out) = fire(&leader_node, &leader, QuorumTimer::FetchMaxWait);
    let answered = sends(&out);
    assert!(
        matches!(
            answered.as_slice(),
            [(to, QuorumMsg::FetchResponse { result: QuorumFetchResult::Records { entries, .. }, .. })]
                if *to == id(1) && entries.is_empty()
        ),
        "{answered:?}"
    );
    // A follower whose fetch went unanswered sends it again, as it was; one that heard from
    // its leader re-arms its fetch timeout.
    let follower_node = node_with_real_timers(2);
    let (follower, out) = start(&follower_node, None);
    let first = sends(&out);
    let (follower, out) = fire(&follower_node, &follower, QuorumTimer::FetchRetry);
    assert_eq!(sends(&out), first, "the same fetch, to the same leader");
    let response = QuorumMsg::FetchResponse {
        epoch: 1,
        leader: Some(1),
        fetch_offset: follower.log_end_offset(),
        result: QuorumFetchResult::Records {
            entries: Vec::new(),
            high_watermark: 1,
        },
    };
    let (_, out) = deliver(&follower_node, &follower, 0, response);
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::SetTimer(QuorumTimer::FetchTimeout, _))));
    // Without the real timers (the model), nothing of this is armed.
    let (_, out) = start(&node(2, true), None);
    assert!(!out.iter().any(|c| matches!(
        c,
        Command::SetTimer(QuorumTimer::FetchRetry | QuorumTimer::FetchMaxWait, _)
    )));
}
