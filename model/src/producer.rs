//! A producer. Spec: "Producer", rules R37–R40.
//!
//! It learns each partition's leader from metadata, which any broker serves, and sends its
//! batches in order, up to `max.in.flight.requests.per.connection` of them unanswered at once.
//! Answers complete batches in order. On NotLeader, a fenced epoch, too few replicas or a timeout
//! it refreshes metadata and resends every unanswered batch, one at a time and in order, up to
//! `attempts_max` attempts for the first. An idempotent producer stamps each record with its
//! producer id and per-partition sequence, so that the leader can recognise a retry of a batch it
//! already holds, and refuses a batch that would leave a gap.

use crate::config::ProducerConfig;
use crate::msg::{application, Msg, ProduceRequest, ProduceResponse};
use crate::node::{Node, Timer};
use crate::outbox::Outbox;
use crate::rules::*;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A record the producer was told is written (its callback fired).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ack {
    pub topic_partition: TopicPartition,
    pub offset: Offset,
    /// The epoch of the leader that acknowledged it.
    pub leader_epoch: LeaderEpoch,
    pub value: Value,
}

/// A batch sent and not yet answered, or waiting to be sent again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InFlight {
    /// Index of the batch's first record in the producer's records.
    pub batch: u32,
    /// Index of the record after the batch's last: fixed when the batch is first sent, since the
    /// application may hand over more records later (R38).
    pub end: u32,
    pub attempt: u32,
    /// False while the batch waits to be sent again: for fresh metadata, or, if it is not the
    /// first unanswered batch, for the batches before it to be answered.
    pub sent: bool,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerState {
    /// Broker addresses learned from metadata.
    pub brokers: Arc<[(BrokerId, Id)]>,
    /// The leader (and its epoch) of each partition, as metadata last said.
    pub leaders: Vec<(u32, BrokerId, LeaderEpoch)>,
    pub metadata_in_flight: bool,
    /// Which bootstrap broker to ask next.
    pub bootstrap_index: u32,
    /// Index of the first record not yet acknowledged or given up.
    pub next_record: u32,
    /// How many of the records the application has handed to `send()` so far (Kafka's record
    /// accumulator holds them): only these are batched (R38). All of them from the start unless
    /// the config says otherwise.
    pub accumulated: u32,
    /// The unanswered batches, in record order, the first starting at `next_record`: at most
    /// `max_in_flight_requests` of them.
    pub in_flight: Vec<InFlight>,
    /// Batches given up after `attempts_max` attempts or a fatal error.
    pub failed: u32,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "ProducerRepr", into = "ProducerRepr")]
pub struct Producer {
    pub config: ProducerConfig,
    /// Each record's sequence number in its partition's stream, computed once.
    sequences: Arc<[Sequence]>,
}

/// What a producer serializes as: its config (the sequences follow from it).
#[derive(Serialize, Deserialize)]
struct ProducerRepr {
    config: ProducerConfig,
}

impl From<ProducerRepr> for Producer {
    fn from(r: ProducerRepr) -> Self {
        Producer::new(r.config)
    }
}

impl From<Producer> for ProducerRepr {
    fn from(p: Producer) -> Self {
        ProducerRepr { config: p.config }
    }
}

impl Producer {
    pub fn new(config: ProducerConfig) -> Self {
        let mut next: std::collections::BTreeMap<u32, Sequence> = Default::default();
        let sequences = config
            .records
            .iter()
            .map(|(partition, _)| {
                let n = next.entry(*partition).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect();
        Producer { config, sequences }
    }

    /// R37: ask for metadata first.
    pub fn start(&self, o: &mut Out<Node>) -> ProducerState {
        fired(R37);
        let timing = &self.config.timing;
        o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
        if self.config.request_timeout {
            o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
        }
        let mut state = ProducerState {
            brokers: Arc::new([]),
            leaders: Vec::new(),
            metadata_in_flight: false,
            bootstrap_index: 0,
            next_record: 0,
            accumulated: self.at_most_all(self.config.accumulated_at_start.unwrap_or(u32::MAX)),
            in_flight: Vec::new(),
            failed: 0,
        };
        let mut outbox = Outbox::new();
        self.request_metadata(&mut state, &mut outbox);
        outbox.flush(o, || unreachable!("producers persist nothing"));
        state
    }

    /// The records of a new batch starting at `start`: consecutive records for one partition
    /// among the first `accumulated`, at most `batch_bytes_max` bytes' worth but at least one.
    pub fn batch(&self, start: u32, accumulated: u32) -> std::ops::Range<u32> {
        let records = &self.config.records;
        let partition = self.partition_of(start);
        let mut end = start + 1;
        let mut bytes = records[start as usize].1.len() + RECORD_OVERHEAD_BYTES;
        while end < accumulated && records[end as usize].0 == partition {
            bytes += records[end as usize].1.len() + RECORD_OVERHEAD_BYTES;
            if bytes > self.config.batch_bytes_max as usize {
                break;
            }
            end += 1;
        }
        start..end
    }

    /// The partition record `index` goes to.
    pub fn partition_of(&self, index: u32) -> u32 {
        self.config.records[index as usize].0
    }

    fn topic_partition(&self, partition: u32) -> TopicPartition {
        TopicPartition::new(&self.config.topic, partition)
    }

    fn leader_of(state: &ProducerState, partition: u32) -> Option<(BrokerId, LeaderEpoch)> {
        state
            .leaders
            .iter()
            .find(|(p, _, _)| *p == partition)
            .map(|(_, l, e)| (*l, *e))
    }

    /// The sequence number of record `index` in its partition's stream.
    pub fn sequence(&self, index: u32) -> Sequence {
        self.sequences[index as usize]
    }

    fn request_metadata(&self, state: &mut ProducerState, outbox: &mut Outbox) {
        let bootstrap = &self.config.bootstrap;
        let target = bootstrap[state.bootstrap_index as usize % bootstrap.len()];
        outbox.send(
            target,
            Msg::Metadata {
                topic: self.config.topic,
            },
        );
        state.metadata_in_flight = true;
    }

    /// Sends what can be sent, in record order (R38): a batch waiting to be sent again only
    /// once every batch before it is answered (a retried batch goes alone, so that an idempotent
    /// leader sees its sequences in order); otherwise new batches, while fewer than
    /// `max_in_flight_requests` are unanswered. With `acks=0` nothing is awaited, so every batch whose
    /// leader is known goes out at once.
    fn send_ready(&self, state: &mut ProducerState, outbox: &mut Outbox) {
        if let Some(head) = state.in_flight.first().copied() {
            if !head.sent {
                if self.send_batch(state, head, outbox) {
                    state.in_flight[0].sent = true;
                }
                return;
            }
            if state.in_flight.iter().any(|f| !f.sent) {
                return; // Retried batches wait for the first to be answered.
            }
        }
        let window = self.config.max_in_flight_requests.max(1) as usize;
        while state.in_flight.len() < window || self.config.acks == Acks::None {
            let next = state.in_flight.last().map_or(state.next_record, |f| f.end);
            if next >= state.accumulated {
                return;
            }
            let batch = InFlight {
                batch: next,
                end: self.batch(next, state.accumulated).end,
                attempt: 1,
                sent: true,
            };
            if !self.send_batch(state, batch, outbox) {
                return;
            }
            if self.config.acks == Acks::None {
                state.next_record = batch.end;
                continue;
            }
            state.in_flight.push(batch);
        }
    }

    /// Sends the batch's attempt to its partition's leader; false if no leader is known
    /// (`MetadataRetry` asks again after a backoff).
    fn send_batch(&self, state: &ProducerState, batch: InFlight, outbox: &mut Outbox) -> bool {
        let partition = self.partition_of(batch.batch);
        let Some((leader, leader_epoch)) = Self::leader_of(state, partition) else {
            return false;
        };
        let Some(address) = state
            .brokers
            .iter()
            .find(|(b, _)| *b == leader)
            .map(|(_, a)| *a)
        else {
            return false;
        };
        let records: Arc<[Record]> = (batch.batch..batch.end)
            .map(|i| Record {
                value: self.config.records[i as usize].1.clone(),
                producer: self.config.idempotence.map(|producer_id| ProducerSequence {
                    producer_id,
                    sequence: self.sequence(i),
                }),
            })
            .collect();
        outbox.send(
            address,
            Msg::Produce(ProduceRequest {
                topic_partition: self.topic_partition(partition),
                acks: self.config.acks,
                leader_epoch,
                records,
                batch: batch.batch,
                attempt: batch.attempt,
            }),
        );
        true
    }

    /// R39: after a retriable error or a timeout, refresh metadata and send every unanswered
    /// batch again, in order, unless the first has used its attempts: then it is given up.
    fn retry(&self, state: &mut ProducerState, outbox: &mut Outbox) {
        let Some(head) = state.in_flight.first().copied() else {
            return;
        };
        fired(R39);
        if head.attempt >= self.config.attempts_max {
            self.give_up(state);
            self.send_ready(state, outbox);
            return;
        }
        for f in &mut state.in_flight {
            if f.sent {
                f.attempt += 1;
                f.sent = false;
            }
        }
        if !state.metadata_in_flight {
            self.request_metadata(state, outbox);
        }
    }

    /// Sends the step's messages. `request.timeout.ms` runs from when a request is sent: a
    /// produce request re-arms `RequestTimeout`, so that a real timer times out only requests
    /// that have waited that long. In the model the timer is always armed already (start arms
    /// it and every firing re-arms it), so re-arming adds no state.
    fn flush(&self, outbox: Outbox, o: &mut Out<Node>) {
        if self.config.request_timeout && outbox.sends_any(|m| matches!(m, Msg::Produce(_))) {
            o.set_timer(
                Timer::RequestTimeout,
                self.config.timing.request_timeout.clone(),
            );
        }
        outbox.flush(o, || unreachable!("producers persist nothing"));
    }

    /// Gives up the first unanswered batch.
    fn give_up(&self, state: &mut ProducerState) {
        if !state.in_flight.is_empty() {
            let f = state.in_flight.remove(0);
            state.failed += 1;
            state.next_record = f.end;
        }
    }

    pub fn on_msg(&self, state: &mut Cow<ProducerState>, src: Id, msg: Msg, o: &mut Out<Node>) {
        let mut outbox = Outbox::new();
        match msg {
            Msg::MetadataResponse {
                brokers,
                partitions,
            } => {
                // R37: learn the leaders.
                if !state.metadata_in_flight {
                    return;
                }
                fired(R37);
                let s = state.to_mut();
                s.metadata_in_flight = false;
                s.brokers = brokers;
                s.leaders = partitions
                    .iter()
                    .filter(|p| p.topic_partition.topic == self.config.topic)
                    .filter_map(|p| Some((p.topic_partition.partition, p.leader?, p.leader_epoch)))
                    .collect();
                self.send_ready(s, &mut outbox);
            }
            Msg::ProduceResponse(ProduceResponse {
                topic_partition,
                batch,
                attempt,
                leader_epoch,
                result,
            }) => {
                let answered = |f: &InFlight| f.batch == batch && f.attempt == attempt && f.sent;
                let Some(position) = state.in_flight.iter().position(answered) else {
                    return; // An answer to an attempt already given up on or resent.
                };
                if position > 0 && result.is_ok() {
                    // R38: batches complete in order: an answer that overtook the first batch's
                    // waits for that one to arrive, or for a retry.
                    return;
                }
                let s = state.to_mut();
                match result {
                    // R38: acknowledged.
                    Ok(base_offset) => {
                        fired(R38);
                        let range = batch..s.in_flight[0].end;
                        for (i, index) in range.clone().enumerate() {
                            let ack = Ack {
                                topic_partition: topic_partition.clone(),
                                offset: base_offset + i as Offset,
                                leader_epoch,
                                value: self.config.records[index as usize].1.clone(),
                            };
                            // R38: the send callback: the acknowledgement leaves the producer.
                            outbox.send(application(), Msg::RecordAcknowledged(ack));
                        }
                        s.in_flight.remove(0);
                        s.next_record = range.end;
                        self.send_ready(s, &mut outbox);
                    }
                    // R40: the first unanswered batch is out of sequence: the leader lost records
                    // this producer had written before; Kafka makes that fatal for the batch.
                    Err(ErrorCode::OutOfOrderSequence) if position == 0 => {
                        fired(R40);
                        self.give_up(s);
                        self.send_ready(s, &mut outbox);
                    }
                    // R39: a later batch is out of sequence because one before it is not written
                    // yet: it and those after it are sent again once the first is answered.
                    Err(ErrorCode::OutOfOrderSequence) => {
                        fired(R39);
                        for f in &mut s.in_flight[position..] {
                            f.attempt += 1;
                            f.sent = false;
                        }
                    }
                    Err(_) => self.retry(s, &mut outbox),
                }
            }
            // R38: the application handed over more records (`send()`).
            Msg::Send { records }
                if src == application() && self.at_most_all(records) > state.accumulated =>
            {
                self.accumulate(state.to_mut(), self.at_most_all(records), &mut outbox);
            }
            _ => return,
        }
        self.flush(outbox, o);
    }

    /// R38: batches the first `records` records, and sends what the window lets go.
    fn accumulate(&self, state: &mut ProducerState, records: u32, outbox: &mut Outbox) {
        fired(R38);
        state.accumulated = records;
        self.send_ready(state, outbox);
    }

    /// `records`, or the producer's record count if that is fewer.
    fn at_most_all(&self, records: u32) -> u32 {
        records.min(self.config.records.len() as u32)
    }

    pub fn on_timer(&self, state: &mut Cow<ProducerState>, timer: &Timer, o: &mut Out<Node>) {
        let timing = &self.config.timing;
        let mut outbox = Outbox::new();
        match timer {
            Timer::MetadataRetry => {
                o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
                // R39: a leader was unknown: ask again.
                if state.metadata_in_flight {
                    return;
                }
                let waiting = match state.in_flight.first() {
                    Some(f) => !f.sent,
                    None => state.next_record < state.accumulated,
                };
                if waiting {
                    self.request_metadata(state.to_mut(), &mut outbox);
                }
            }
            Timer::RequestTimeout => {
                o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
                if state.metadata_in_flight {
                    // The broker asked may be down: ask the next one.
                    let s = state.to_mut();
                    s.bootstrap_index =
                        (s.bootstrap_index + 1) % self.config.bootstrap.len() as u32;
                    self.request_metadata(s, &mut outbox);
                } else if state.in_flight.iter().any(|f| f.sent) {
                    // R39: no answer in time; the request may still be applied.
                    self.retry(state.to_mut(), &mut outbox);
                }
            }
            _ => {}
        }
        self.flush(outbox, o);
    }
}

impl fmt::Debug for ProducerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("producer")?;
        if self.in_flight.is_empty() {
            write!(f, " | next record {}", self.next_record)?;
        }
        for InFlight {
            batch,
            attempt,
            sent,
            ..
        } in &self.in_flight
        {
            let how = if *sent { "in flight" } else { "to resend" };
            write!(f, " | batch {batch} attempt {attempt} {how}")?;
        }
        if self.failed > 0 {
            write!(f, " | failed {}", self.failed)?;
        }
        Ok(())
    }
}
