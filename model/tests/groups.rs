//! Consumer groups, R57–R62: the coordinator's handlers and the member's steps.

mod support;
use std::sync::Arc;
use support::*;
use watermark_model::group::{group_view, GroupEvent, GroupRecord};
use watermark_model::*;

fn offsets_tp() -> TopicPartition {
    TopicPartition::new(&Topic::new(OFFSETS_TOPIC), 0)
}

fn g() -> Group {
    Group::new("g")
}

/// Brokers 1–3; `t-0` on [1, 2, 3] and `__consumer_offsets-0` on [1, 2] with min.insync.replicas
/// `min_isr`: broker 1 leads both in epoch 0.
fn group_cluster(min_isr: u32) -> Arc<ClusterConfig> {
    let mut c = (*cluster(Protocol::Kip320)).clone();
    c.topics.push(TopicConfig {
        topic: Topic::new(OFFSETS_TOPIC),
        assignments: vec![vec![1, 2]],
        min_insync_replicas: min_isr,
        unclean_leader_election: false,
    });
    Arc::new(c)
}

/// Broker `b` with the offsets partition's log `records` and HWM `hwm`; as leader its epoch
/// starts at `epoch_start`.
fn with_offsets_log(
    state: &NodeState,
    records: &[GroupRecord],
    hwm: Offset,
    epoch_start: Offset,
) -> NodeState {
    let mut b = state.as_broker().unwrap().clone();
    let r = b.replicas.get_mut(&offsets_tp()).unwrap();
    r.log = Log::from_entries(records.iter().map(|g| LogEntry {
        leader_epoch: 0,
        record: g.to_record(),
    }));
    r.high_watermark = hwm;
    if let Role::Leader(l) = &mut r.role {
        l.epoch_start_offset = epoch_start;
    }
    NodeState::Broker(b)
}

fn offsets(state: &NodeState) -> &Replica {
    state
        .as_broker()
        .unwrap()
        .replicas
        .get(&offsets_tp())
        .unwrap()
}

fn generation(n: Generation) -> GroupRecord {
    GroupRecord::Generation {
        group: g(),
        topic_partition: tp(),
        generation: n,
    }
}

fn commit(generation: Generation, offset: Offset) -> GroupRecord {
    GroupRecord::Offset {
        group: g(),
        topic_partition: tp(),
        generation,
        offset,
    }
}

fn offset_fetch() -> Msg {
    Msg::OffsetFetch {
        group: g(),
        topic_partition: tp(),
    }
}

fn offset_commit(generation: Generation, offset: Offset) -> Msg {
    Msg::OffsetCommit {
        group: g(),
        topic_partition: tp(),
        generation,
        offset,
    }
}

const CLIENT: usize = 9;

#[test]
fn r57_any_broker_names_the_leader_of_the_groups_offsets_partition() {
    let c = group_cluster(1);
    let b2 = broker(2, &c);
    let s = fresh(&b2, 2);
    let step = deliver(&b2, 2, &s, CLIENT, Msg::FindCoordinator { group: g() });
    match step.sends_to(CLIENT).as_slice() {
        [Msg::FindCoordinatorResponse { result, .. }] => assert_eq!(*result, Ok((1, id(1)))),
        other => panic!("expected the coordinator, got {other:?}"),
    }
}

#[test]
fn r58_r28_a_join_writes_the_next_generation_and_is_answered_once_committed() {
    let c = group_cluster(1);
    let b1 = broker(1, &c);
    let s = with_offsets_log(&fresh(&b1, 1), &[generation(1)], 1, 0);
    let join = Msg::JoinGroup {
        group: g(),
        topic_partition: tp(),
        member_epoch: 0,
    };
    let step = deliver(&b1, 1, &s, CLIENT, join);
    assert!(step.sends_to(CLIENT).is_empty(), "held until committed");
    assert!(step.saved(), "the generation is persisted");
    let s = after(&s, &step);
    let r = offsets(&s);
    assert_eq!(
        group_view(&r.log, r.log_end_offset(), &g(), &tp()).generation,
        2
    );
    // Broker 2 fetches past it: the HWM passes the generation record and the member is told.
    let fetch = Msg::Fetch(FetchRequest {
        topic_partition: offsets_tp(),
        replica_id: Some(2),
        broker_epoch: 0,
        fetch_offset: 2,
        last_fetched_epoch: Some(0),
        current_leader_epoch: Some(0),
        fetch_bytes_max: 1,
        high_watermark: 1,
    });
    let step = deliver(&b1, 1, &s, 2, fetch);
    let answers = step.sends_to(CLIENT);
    assert!(
        matches!(
            answers.as_slice(),
            [Msg::JoinGroupResponse { result: Ok(2), .. }]
        ),
        "{answers:?}"
    );
}

#[test]
fn r59_a_commit_from_a_fenced_generation_is_refused_and_writes_nothing() {
    let c = group_cluster(1);
    let b1 = broker(1, &c);
    let s = with_offsets_log(&fresh(&b1, 1), &[generation(1), generation(2)], 2, 0);
    let step = deliver(&b1, 1, &s, CLIENT, offset_commit(1, 5));
    assert!(step.next.is_none(), "nothing appended");
    match step.sends_to(CLIENT).as_slice() {
        [Msg::OffsetCommitResponse { result, .. }] => {
            assert_eq!(*result, Err(ErrorCode::IllegalGeneration))
        }
        other => panic!("{other:?}"),
    }
    // The current generation's commit is written.
    let step = deliver(&b1, 1, &s, CLIENT, offset_commit(2, 5));
    let s = after(&s, &step);
    assert_eq!(offsets(&s).log_end_offset(), 3);
}

#[test]
fn r59_r18_a_coordinator_under_min_insync_replicas_refuses_before_the_append() {
    let c = group_cluster(2);
    let b1 = broker(1, &c);
    let mut s = with_offsets_log(&fresh(&b1, 1), &[generation(1)], 1, 0)
        .as_broker()
        .unwrap()
        .clone();
    s.replicas.get_mut(&offsets_tp()).unwrap().partition.isr = vec![1].as_slice().into();
    let s = NodeState::Broker(s);
    let step = deliver(&b1, 1, &s, CLIENT, offset_commit(1, 5));
    assert!(step.next.is_none());
    match step.sends_to(CLIENT).as_slice() {
        [Msg::OffsetCommitResponse { result, .. }] => {
            assert_eq!(*result, Err(ErrorCode::CoordinatorNotAvailable))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn r60_offset_fetch_reads_committed_records_only_and_not_before_the_coordinator_loaded() {
    let c = group_cluster(1);
    let b1 = broker(1, &c);
    let fetch = |s: &NodeState| match deliver(&b1, 1, s, CLIENT, offset_fetch())
        .sends_to(CLIENT)
        .as_slice()
    {
        [Msg::OffsetFetchResponse { result, .. }] => *result,
        other => panic!("{other:?}"),
    };
    let records = [generation(1), commit(1, 4), commit(1, 7)];
    // The last commit is above the HWM: not yet acknowledged, not returned.
    let s = with_offsets_log(&fresh(&b1, 1), &records, 2, 0);
    assert_eq!(fetch(&s), Ok(Some(4)));
    let s = with_offsets_log(&fresh(&b1, 1), &records, 3, 0);
    assert_eq!(fetch(&s), Ok(Some(7)));
    // A new leader whose HWM has not reached its epoch's start may lack a committed commit.
    let s = with_offsets_log(&fresh(&b1, 1), &records, 2, 3);
    assert_eq!(fetch(&s), Err(ErrorCode::CoordinatorLoadInProgress));
    // Nothing committed for this group.
    let s = with_offsets_log(&fresh(&b1, 1), &[generation(1)], 1, 0);
    assert_eq!(fetch(&s), Ok(None));
    // A broker that does not lead the partition.
    let b2 = broker(2, &c);
    let s2 = fresh(&b2, 2);
    match deliver(&b2, 2, &s2, CLIENT, offset_fetch())
        .sends_to(CLIENT)
        .as_slice()
    {
        [Msg::OffsetFetchResponse { result, .. }] => {
            assert_eq!(*result, Err(ErrorCode::NotCoordinator))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_records_that_do_not_parse_are_skipped() {
    let c = group_cluster(1);
    let b1 = broker(1, &c);
    let mut s = with_offsets_log(&fresh(&b1, 1), &[generation(1), commit(1, 4)], 3, 0)
        .as_broker()
        .unwrap()
        .clone();
    let r = s.replicas.get_mut(&offsets_tp()).unwrap();
    r.log.append(LogEntry {
        leader_epoch: 0,
        record: Record {
            value: Value::from("{\"Offset\": garbage"),
            producer: None,
        },
    });
    let s = NodeState::Broker(s);
    match deliver(&b1, 1, &s, CLIENT, offset_fetch())
        .sends_to(CLIENT)
        .as_slice()
    {
        [Msg::OffsetFetchResponse { result, .. }] => assert_eq!(*result, Ok(Some(4))),
        other => panic!("{other:?}"),
    }
}

fn member(offset_reset: OffsetReset, commit: CommitMode, records_max: Option<u64>) -> Node {
    Node::Consumer(Consumer::new(ConsumerConfig {
        bootstrap: vec![id(2)],
        topic_partition: tp(),
        fetch_bytes_max: 1000,
        request_timeout: false,
        timing: Timing::model(),
        start_offset: 0,
        group: Some(GroupConfig {
            group: g(),
            offset_reset,
            commit,
            auto_commit_interval: Timing::model().retry_backoff,
        }),
        records_max,
    }))
}

/// Walks a member from its start to resumed: coordinator broker 1, generation 3, the given
/// OffsetFetch answer. Returns the state and the resuming step.
fn resumed(node: &Node, committed: Option<Offset>) -> (NodeState, Step) {
    let step = start(node, CLIENT, None);
    assert!(step
        .sends_to(2)
        .iter()
        .any(|m| matches!(m, Msg::FindCoordinator { .. })));
    let s = after(
        &NodeState::Consumer(step.state().as_consumer().unwrap().clone()),
        &step,
    );
    let brokers: Arc<[(BrokerId, stateright::actor::Id)]> = vec![(1, id(1)), (2, id(2))].into();
    let metadata = Msg::MetadataResponse {
        brokers,
        partitions: vec![PartitionMetadata {
            topic_partition: tp(),
            leader: Some(1),
            leader_epoch: 0,
            replicas: vec![1, 2].as_slice().into(),
            isr: vec![1, 2].as_slice().into(),
        }]
        .into(),
    };
    let s = after(&s, &deliver(node, CLIENT, &s, 2, metadata));
    let found = Msg::FindCoordinatorResponse {
        group: g(),
        result: Ok((1, id(1))),
    };
    let step = deliver(node, CLIENT, &s, 2, found);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::JoinGroup { .. }]
    ));
    let s = after(&s, &step);
    // An answer to a join sent from another generation (its previous incarnation's) only
    // lends its generation.
    let stale = Msg::JoinGroupResponse {
        group: g(),
        topic_partition: tp(),
        member_epoch: 7,
        result: Ok(2),
    };
    let step = deliver(node, CLIENT, &s, 1, stale);
    assert!(step.sends_to(1).is_empty(), "still joining");
    let s = after(&s, &step);
    let joined = Msg::JoinGroupResponse {
        group: g(),
        topic_partition: tp(),
        member_epoch: 0,
        result: Ok(3),
    };
    let step = deliver(node, CLIENT, &s, 1, joined);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::OffsetFetch { .. }]
    ));
    let s = after(&s, &step);
    let answer = Msg::OffsetFetchResponse {
        group: g(),
        topic_partition: tp(),
        result: Ok(committed),
    };
    let step = deliver(node, CLIENT, &s, 1, answer);
    (after(&s, &step), step)
}

fn records(values: &[&str]) -> Msg {
    Msg::FetchResponse(FetchResponse {
        topic_partition: tp(),
        fetch_offset: 4,
        leader_epoch: 0,
        result: FetchResult::Records {
            records: values
                .iter()
                .map(|v| entry(0, v))
                .collect::<Vec<_>>()
                .into(),
            high_watermark: 10,
        },
    })
}

#[test]
fn r61_a_member_resumes_at_its_groups_committed_offset_and_reads_from_there() {
    let node = member(OffsetReset::Latest, CommitMode::Manual, None);
    let (s, step) = resumed(&node, Some(4));
    assert_eq!(
        step.group_events(),
        vec![GroupEvent::Resumed {
            group: g(),
            topic_partition: tp(),
            committed: Some(4),
            position: 4
        }]
    );
    match step.sends_to(1).as_slice() {
        [Msg::Fetch(f)] => assert_eq!(f.fetch_offset, 4),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.as_consumer().unwrap().position, 4);
}

#[test]
fn r61_with_nothing_committed_latest_starts_at_the_leaders_high_watermark() {
    let node = member(OffsetReset::Latest, CommitMode::Manual, None);
    let (s, step) = resumed(&node, None);
    assert!(step.group_events().is_empty());
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::ListOffsets { .. }]
    ));
    let listed = Msg::ListOffsetsResponse {
        topic_partition: tp(),
        result: Ok(ReplicaOffsets {
            leader_epoch: 0,
            is_leader: true,
            log_end_offset: 9,
            high_watermark: 7,
        }),
    };
    let step = deliver(&node, CLIENT, &s, 1, listed);
    assert!(matches!(
        step.group_events().as_slice(),
        [GroupEvent::Resumed {
            committed: None,
            position: 7,
            ..
        }]
    ));
    // Earliest starts at 0 instead.
    let node = member(OffsetReset::Earliest, CommitMode::Manual, None);
    let (s, _) = resumed(&node, None);
    assert_eq!(s.as_consumer().unwrap().position, 0);
}

#[test]
fn r62_a_manual_member_commits_after_each_poll_and_a_fenced_one_joins_again() {
    let node = member(OffsetReset::Earliest, CommitMode::Manual, None);
    let (s, _) = resumed(&node, Some(4));
    let step = deliver(&node, CLIENT, &s, 1, records(&["e", "f"]));
    assert_eq!(step.consumed().len(), 2);
    let commits: Vec<Msg> = step
        .sends_to(1)
        .into_iter()
        .filter(|m| matches!(m, Msg::OffsetCommit { .. }))
        .collect();
    assert_eq!(commits, vec![offset_commit(3, 6)]);
    let s = after(&s, &step);
    let acked = Msg::OffsetCommitResponse {
        group: g(),
        topic_partition: tp(),
        offset: 6,
        result: Ok(()),
    };
    let step = deliver(&node, CLIENT, &s, 1, acked.clone());
    assert!(matches!(
        step.group_events().as_slice(),
        [GroupEvent::Committed { offset: 6, .. }]
    ));
    // An answer to a commit it no longer awaits changes nothing.
    let s2 = after(&s, &step);
    assert!(deliver(&node, CLIENT, &s2, 1, acked).is_noop());
    // Fenced: join again.
    let fenced = Msg::OffsetCommitResponse {
        group: g(),
        topic_partition: tp(),
        offset: 6,
        result: Err(ErrorCode::IllegalGeneration),
    };
    let step = deliver(&node, CLIENT, &s, 1, fenced);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::JoinGroup { .. }]
    ));
}

#[test]
fn r62_an_auto_committing_member_commits_on_its_timer_only() {
    let node = member(OffsetReset::Earliest, CommitMode::Auto, None);
    let (s, _) = resumed(&node, Some(4));
    let step = deliver(&node, CLIENT, &s, 1, records(&["e"]));
    assert!(!step
        .sends_to(1)
        .iter()
        .any(|m| matches!(m, Msg::OffsetCommit { .. })));
    let s = after(&s, &step);
    let step = fire(&node, CLIENT, &s, Timer::AutoCommit);
    assert!(step.sends_to(1).contains(&offset_commit(3, 5)));
}

#[test]
fn r42_r62_with_records_max_a_member_reads_that_many_and_commits_exactly_them() {
    let node = member(OffsetReset::Earliest, CommitMode::Auto, Some(2));
    let (s, _) = resumed(&node, Some(4));
    let step = deliver(&node, CLIENT, &s, 1, records(&["e", "f", "g"]));
    assert_eq!(step.consumed().len(), 2, "the third record is not read");
    let sends = step.sends_to(1);
    assert!(sends.contains(&offset_commit(3, 6)), "{sends:?}");
    assert!(
        !sends.iter().any(|m| matches!(m, Msg::Fetch(_))),
        "it stops fetching"
    );
}
