//! Producer (R37–R40) and consumer (R41–R43) handlers.

mod support;
use support::*;
use watermark_model::*;

/// A producer of `records` (partition, value) to topic `t`, one record a batch, with request
/// timeouts and one batch in flight.
fn producer_config(
    acks: Acks,
    idempotence: Option<ProducerId>,
    attempts_max: u32,
    records: Vec<(u32, Value)>,
) -> ProducerConfig {
    ProducerConfig {
        bootstrap: vec![id(1), id(2)],
        topic: topic(),
        acks,
        idempotence,
        records,
        accumulated_at_start: None,
        attempts_max,
        batch_bytes_max: 1,
        request_timeout: true,
        max_in_flight_requests: 1,
        timing: Timing::model(),
    }
}

fn producer(acks: Acks, idempotence: Option<ProducerId>, attempts_max: u32) -> Node {
    let records = vec![(0, Value::from("a")), (0, Value::from("b"))];
    Node::Producer(Producer::new(producer_config(
        acks,
        idempotence,
        attempts_max,
        records,
    )))
}

fn metadata(leader: Option<BrokerId>, epoch: LeaderEpoch) -> Msg {
    Msg::MetadataResponse {
        brokers: (1..=3)
            .map(|b| (b, id(b as usize)))
            .collect::<Vec<_>>()
            .into(),
        partitions: vec![PartitionMetadata {
            topic_partition: tp(),
            leader,
            leader_epoch: epoch,
            replicas: [1, 2, 3].as_slice().into(),
            isr: [1, 2, 3].as_slice().into(),
        }]
        .into(),
    }
}

fn produce_response(
    batch: u32,
    attempt: u32,
    epoch: LeaderEpoch,
    result: Result<Offset, ErrorCode>,
) -> Msg {
    Msg::ProduceResponse(ProduceResponse {
        topic_partition: tp(),
        batch,
        attempt,
        leader_epoch: epoch,
        result,
    })
}

fn sent_produce(step: &Step, to: usize) -> ProduceRequest {
    match step.sends_to(to).as_slice() {
        [Msg::Produce(p)] => p.clone(),
        other => panic!("expected one produce request to {to}, got {other:?}"),
    }
}

#[test]
fn r37_r38_the_producer_learns_the_leader_and_sends_one_batch_at_a_time() {
    let p = producer(Acks::All, None, 2);
    let step = start(&p, PRODUCER, None);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::Metadata { .. }]
    ));
    let s = step.next.unwrap();
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 3));
    let request = sent_produce(&step, 2);
    assert_eq!(
        (request.leader_epoch, request.batch, request.attempt),
        (3, 0, 1)
    );
    assert_eq!(request.records[0].value, Value::from("a"));
    let s = after(&s, &step);
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(0, 1, 3, Ok(5)));
    let acked = step.acked();
    assert_eq!(acked.len(), 1);
    assert_eq!((acked[0].offset, acked[0].leader_epoch), (5, 3));
    assert_eq!(acked[0].value, Value::from("a"));
    assert_eq!(sent_produce(&step, 2).batch, 1, "the next record goes out");
}

#[test]
fn r39_errors_refresh_metadata_and_retry_until_the_attempts_run_out() {
    let p = producer(Acks::All, None, 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let s = after(&s, &deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 3)));
    let step = deliver(
        &p,
        PRODUCER,
        &s,
        2,
        produce_response(0, 1, 3, Err(ErrorCode::NotLeaderOrFollower)),
    );
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::Metadata { .. }]
    ));
    let s = after(&s, &step);
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(3), 4));
    let retry = sent_produce(&step, 3);
    assert_eq!((retry.batch, retry.attempt, retry.leader_epoch), (0, 2, 4));
    let s = after(&s, &step);
    // A late answer to the first attempt is ignored.
    assert!(deliver(&p, PRODUCER, &s, 2, produce_response(0, 1, 3, Ok(0))).is_noop());
    // The second failure exhausts the attempts: batch 0 is given up, batch 1 goes.
    let step = deliver(
        &p,
        PRODUCER,
        &s,
        3,
        produce_response(0, 2, 4, Err(ErrorCode::NotEnoughReplicas)),
    );
    let ps = step.state().as_producer().unwrap();
    assert_eq!((ps.failed, ps.next_record), (1, 1));
    assert_eq!(sent_produce(&step, 3).batch, 1);
}

#[test]
fn r39_a_timed_out_request_is_retried() {
    let p = producer(Acks::All, None, 3);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let s = after(&s, &deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0)));
    let step = fire(&p, PRODUCER, &s, Timer::RequestTimeout);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::Metadata { .. }]
    ));
    assert_eq!(step.state().as_producer().unwrap().in_flight[0].attempt, 2);
}

#[test]
fn r40_out_of_order_sequence_is_fatal_for_the_batch() {
    let p = producer(Acks::All, Some(9), 5);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0));
    let stamp = sent_produce(&step, 2).records[0].producer;
    assert_eq!(
        stamp,
        Some(ProducerSequence {
            producer_id: 9,
            sequence: 0
        })
    );
    let s = after(&s, &step);
    let step = deliver(
        &p,
        PRODUCER,
        &s,
        2,
        produce_response(0, 1, 0, Err(ErrorCode::OutOfOrderSequence)),
    );
    assert_eq!(step.state().as_producer().unwrap().failed, 1);
    assert_eq!(
        sent_produce(&step, 2).records[0].producer.unwrap().sequence,
        1
    );
}

#[test]
fn r38_acks_0_sends_everything_and_waits_for_nothing() {
    let p = producer(Acks::None, None, 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0));
    assert_eq!(step.sends_to(2).len(), 2);
    let ps = step.state().as_producer().unwrap();
    assert_eq!((ps.next_record, step.acked().len()), (2, 0));
}

#[test]
fn r39_an_unknown_leader_is_asked_for_again_on_metadata_retry() {
    let p = producer(Acks::All, None, 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let s = after(&s, &deliver(&p, PRODUCER, &s, 1, metadata(None, 1)));
    assert!(!s.as_producer().unwrap().metadata_in_flight);
    let step = fire(&p, PRODUCER, &s, Timer::MetadataRetry);
    assert!(matches!(
        step.sends_to(1).as_slice(),
        [Msg::Metadata { .. }]
    ));
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        bootstrap: vec![id(2)],
        topic_partition: tp(),
        fetch_bytes_max: 1,
        request_timeout: false,
        timing: Timing::model(),
        start_offset: 0,
        group: None,
        records_max: None,
    }
}

fn consumer() -> Node {
    Node::Consumer(Consumer::new(consumer_config()))
}

/// The leader's answer to a consumer's fetch at offset 0: record `a`, HWM 1.
fn fetched_a() -> Msg {
    Msg::FetchResponse(FetchResponse {
        topic_partition: tp(),
        fetch_offset: 0,
        leader_epoch: 0,
        result: FetchResult::Records {
            records: vec![entry(0, "a")].into(),
            high_watermark: 1,
        },
    })
}

#[test]
fn r41_r42_r43_the_consumer_reads_from_its_position_and_follows_the_leader() {
    const C: usize = 5;
    let c = consumer();
    let s = start(&c, C, None).next.unwrap();
    let step = deliver(&c, C, &s, 2, metadata(Some(1), 0));
    assert!(
        matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.replica_id.is_none() && f.fetch_offset == 0)
    );
    let s = after(&s, &step);
    let step = deliver(&c, C, &s, 1, fetched_a());
    let cs = step.state().as_consumer().unwrap();
    let consumed = step.consumed();
    assert_eq!((cs.position, consumed.len()), (1, 1));
    assert_eq!(
        (consumed[0].offset, &consumed[0].entry),
        (0, &entry(0, "a"))
    );
    assert!(matches!(step.sends_to(1).as_slice(), [Msg::Fetch(f)] if f.fetch_offset == 1));
    let s = after(&s, &step);
    let moved = Msg::FetchResponse(FetchResponse {
        topic_partition: tp(),
        fetch_offset: 1,
        leader_epoch: 0,
        result: FetchResult::Error {
            error: ErrorCode::NotLeaderOrFollower,
            log_end_offset: 0,
        },
    });
    let step = deliver(&c, C, &s, 1, moved);
    assert!(matches!(
        step.sends_to(2).as_slice(),
        [Msg::Metadata { .. }]
    ));
}

/// R43: a fetch unanswered in time means the leader may be gone for good: the consumer forgets
/// it and asks for metadata, instead of sending the fetch to the same broker again (which waited
/// for ever on a broker lost for good, found by the simulator's `--brokers-dead-after-heal`). A
/// late answer to the forgotten fetch is ignored; the new leader gets the next fetch.
#[test]
fn r43_a_fetch_that_times_out_forgets_the_leader_and_refreshes_metadata() {
    const C: usize = 5;
    let c = Node::Consumer(Consumer::new(ConsumerConfig {
        bootstrap: vec![id(2), id(3)],
        request_timeout: true,
        ..consumer_config()
    }));
    let s = start(&c, C, None).next.unwrap();
    let s = after(&s, &deliver(&c, C, &s, 2, metadata(Some(1), 0)));
    assert!(s.as_consumer().unwrap().fetching);
    let step = fire(&c, C, &s, Timer::RequestTimeout);
    assert!(
        step.sends_to(1).is_empty(),
        "the fetch went to the same leader again"
    );
    assert!(matches!(
        step.sends_to(2).as_slice(),
        [Msg::Metadata { .. }]
    ));
    let cs = step.state().as_consumer().unwrap();
    assert_eq!((cs.leader, cs.fetching), (None, false));
    let s = after(&s, &step);
    // The late answer to the forgotten fetch.
    assert!(deliver(&c, C, &s, 1, fetched_a()).consumed().is_empty());
    let step = deliver(&c, C, &s, 2, metadata(Some(3), 1));
    assert!(
        matches!(step.sends_to(3).as_slice(), [Msg::Fetch(f)] if f.current_leader_epoch == Some(1))
    );
}

#[test]
fn r37_sequences_count_per_partition_and_survive_a_round_trip_through_serde() {
    let records = ["a", "b", "c", "d"]
        .iter()
        .zip([0, 1, 0, 0])
        .map(|(v, p)| (p, Value::from(*v)))
        .collect();
    let p = Producer::new(producer_config(Acks::All, Some(9), 3, records));
    // The producer a trace replays is the one it recorded: same config, same sequences.
    let json = postcard::to_stdvec(&p).unwrap();
    let back: Producer = postcard::from_bytes(&json).unwrap();
    assert_eq!(json, postcard::to_stdvec(&back).unwrap());
    for p in [&p, &back] {
        let sequences: Vec<Sequence> = (0..4).map(|i| p.sequence(i)).collect();
        assert_eq!(sequences, vec![0, 0, 1, 2]);
    }
    // And the first request carries its record's.
    let node = Node::Producer(back);
    let s = start(&node, PRODUCER, None).next.unwrap();
    let step = deliver(&node, PRODUCER, &s, 1, metadata(Some(2), 0));
    let stamp = sent_produce(&step, 2).records[0].producer.unwrap();
    assert_eq!((stamp.producer_id, stamp.sequence), (9, 0));
}

fn pipelined(records: &[&str], max_in_flight_requests: u32) -> Node {
    let records = records.iter().map(|v| (0, Value::from(*v))).collect();
    Node::Producer(Producer::new(ProducerConfig {
        max_in_flight_requests,
        ..producer_config(Acks::All, Some(9), 5, records)
    }))
}

fn sent_batches(step: &Step, to: usize) -> Vec<(u32, u32, Sequence)> {
    step.sends_to(to)
        .into_iter()
        .filter_map(|m| match m {
            Msg::Produce(p) => Some((p.batch, p.attempt, p.records[0].producer.unwrap().sequence)),
            _ => None,
        })
        .collect()
}

#[test]
fn r38_up_to_max_in_flight_batches_go_out_and_complete_in_order() {
    let p = pipelined(&["a", "b", "c"], 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0));
    assert_eq!(sent_batches(&step, 2), vec![(0, 1, 0), (1, 1, 1)]);
    let s = after(&s, &step);
    // The second batch's answer overtook the first's: it waits.
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(1, 1, 0, Ok(1)));
    assert!(step.is_noop());
    // The first's: acknowledged, and the window takes the third.
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(0, 1, 0, Ok(0)));
    let ps = step.state().as_producer().unwrap();
    assert_eq!((step.acked().len(), ps.next_record), (1, 1));
    assert_eq!(sent_batches(&step, 2), vec![(2, 1, 2)]);
}

/// A producer of `records` to partition 0, batches of up to 60 bytes (two 6-byte records), the
/// application handing over only the first one at start.
fn throttled(records: &[&str]) -> Node {
    let records = records.iter().map(|v| (0, Value::from(*v))).collect();
    Node::Producer(Producer::new(ProducerConfig {
        max_in_flight_requests: 2,
        batch_bytes_max: 60,
        accumulated_at_start: Some(1),
        ..producer_config(Acks::All, Some(9), 5, records)
    }))
}

fn sent_ranges(step: &Step, to: usize) -> Vec<(u32, usize)> {
    step.sends_to(to)
        .into_iter()
        .filter_map(|m| match m {
            Msg::Produce(p) => Some((p.batch, p.records.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn r38_only_records_the_application_handed_over_are_batched_and_a_batch_keeps_its_records() {
    let p = throttled(&["aaaaaa", "bbbbbb", "cccccc", "dddddd", "eeeeee"]);
    let app = usize::from(application());
    let s = start(&p, PRODUCER, None).next.unwrap();
    assert_eq!(s.as_producer().unwrap().accumulated, 1);
    // Batch 0 holds the one record handed over, though a second would fit.
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0));
    assert_eq!(sent_ranges(&step, 2), vec![(0, 1)]);
    let s = after(&s, &step);
    // Nothing new, or a message of that kind from anyone but the application: nothing happens.
    assert!(deliver(&p, PRODUCER, &s, app, Msg::Send { records: 1 }).is_noop());
    assert!(deliver(&p, PRODUCER, &s, 2, Msg::Send { records: 5 }).is_noop());
    // Three more: the window's second batch takes as many as fit, two.
    let step = deliver(&p, PRODUCER, &s, app, Msg::Send { records: 4 });
    assert_eq!(sent_ranges(&step, 2), vec![(1, 2)]);
    let s = after(&s, &step);
    // The rest, and more than the producer has: the window is full, so it waits.
    let step = deliver(&p, PRODUCER, &s, app, Msg::Send { records: 9 });
    assert!(step.sends().is_empty());
    let s = after(&s, &step);
    assert_eq!(s.as_producer().unwrap().accumulated, 5);
    // Past the last record there is nothing more to hand over.
    assert!(deliver(&p, PRODUCER, &s, app, Msg::Send { records: 9 }).is_noop());
    // Batch 0's answer acknowledges its one record, not the two that would fit now.
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(0, 1, 0, Ok(0)));
    assert_eq!(step.acked().len(), 1);
    assert_eq!(step.state().as_producer().unwrap().next_record, 1);
    assert_eq!(sent_ranges(&step, 2), vec![(3, 2)]);
    let s = after(&s, &step);
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(1, 1, 0, Ok(1)));
    let values: Vec<Value> = step.acked().into_iter().map(|a| a.value).collect();
    assert_eq!(values, vec![Value::from("bbbbbb"), Value::from("cccccc")]);
}

#[test]
fn r39_a_sequence_gap_behind_an_unanswered_batch_is_resent_after_it_alone() {
    let p = pipelined(&["a", "b", "c"], 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let s = after(&s, &deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0)));
    // Batch 1 arrived before batch 0 was written: out of sequence, but not fatal.
    let step = deliver(
        &p,
        PRODUCER,
        &s,
        2,
        produce_response(1, 1, 0, Err(ErrorCode::OutOfOrderSequence)),
    );
    let ps = step.state().as_producer().unwrap();
    assert_eq!(ps.failed, 0);
    assert!(step.sends().is_empty(), "it waits for batch 0");
    let s = after(&s, &step);
    // Batch 0 is acknowledged: batch 1 goes again, alone, before batch 2.
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(0, 1, 0, Ok(0)));
    assert_eq!(sent_batches(&step, 2), vec![(1, 2, 1)]);
    let s = after(&s, &step);
    let step = deliver(&p, PRODUCER, &s, 2, produce_response(1, 2, 0, Ok(1)));
    assert_eq!(sent_batches(&step, 2), vec![(2, 1, 2)]);
}

#[test]
fn r39_a_timeout_resends_every_unanswered_batch_in_order_one_at_a_time() {
    let p = pipelined(&["a", "b", "c"], 2);
    let s = start(&p, PRODUCER, None).next.unwrap();
    let s = after(&s, &deliver(&p, PRODUCER, &s, 1, metadata(Some(2), 0)));
    let step = fire(&p, PRODUCER, &s, Timer::RequestTimeout);
    let s = after(&s, &step);
    let step = deliver(&p, PRODUCER, &s, 1, metadata(Some(3), 1));
    assert_eq!(sent_batches(&step, 3), vec![(0, 2, 0)], "the first alone");
    let s = after(&s, &step);
    // A late answer to the first attempt of batch 1 counts for nothing.
    assert!(deliver(&p, PRODUCER, &s, 2, produce_response(1, 1, 0, Ok(1))).is_noop());
    let step = deliver(&p, PRODUCER, &s, 3, produce_response(0, 2, 1, Ok(0)));
    assert_eq!(sent_batches(&step, 3), vec![(1, 2, 1)]);
    // An out-of-sequence answer to the first unanswered batch is fatal (R40), as before.
    let s = after(&s, &step);
    let step = deliver(
        &p,
        PRODUCER,
        &s,
        3,
        produce_response(1, 2, 1, Err(ErrorCode::OutOfOrderSequence)),
    );
    assert_eq!(step.state().as_producer().unwrap().failed, 1);
}
