//! A consumer of one partition. Spec: "Consumer", rules R41–R43.
//!
//! It finds the leader through metadata, fetches from its position (which only it keeps), and
//! records what it reads. The leader returns only records below the high watermark.

use crate::config::ConsumerConfig;
use crate::msg::{application, FetchRequest, FetchResponse, FetchResult, Msg};
use crate::node::{Node, Timer};
use crate::outbox::Outbox;
use crate::rules::*;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A record as a consumer read it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Consumed {
    pub offset: Offset,
    pub entry: LogEntry,
    /// The epoch of the leader that served it.
    pub leader_epoch: LeaderEpoch,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsumerState {
    pub brokers: Arc<[(BrokerId, Id)]>,
    pub leader: Option<(BrokerId, LeaderEpoch)>,
    pub metadata_in_flight: bool,
    pub bootstrap_index: u32,
    /// The next offset to read.
    pub position: Offset,
    /// Whether a fetch at `position` is in flight.
    pub fetching: bool,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Consumer {
    pub config: ConsumerConfig,
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Self {
        Consumer { config }
    }

    /// R41.
    pub fn start(&self, o: &mut Out<Node>) -> ConsumerState {
        fired(R41);
        let timing = &self.config.timing;
        o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
        if self.config.request_timeout {
            o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
        }
        let mut state = ConsumerState {
            brokers: Arc::new([]),
            leader: None,
            metadata_in_flight: false,
            bootstrap_index: 0,
            position: self.config.start_offset,
            fetching: false,
        };
        let mut outbox = Outbox::new();
        self.request_metadata(&mut state, &mut outbox);
        outbox.flush(o, || unreachable!("consumers persist nothing"));
        state
    }

    fn request_metadata(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        let bootstrap = &self.config.bootstrap;
        let target = bootstrap[state.bootstrap_index as usize % bootstrap.len()];
        outbox.send(
            target,
            Msg::Metadata {
                topic: self.config.topic_partition.topic.clone(),
            },
        );
        state.metadata_in_flight = true;
    }

    fn send_fetch(&self, state: &mut ConsumerState, outbox: &mut Outbox) {
        let Some((leader, leader_epoch)) = state.leader else {
            return;
        };
        let Some(address) = state
            .brokers
            .iter()
            .find(|(b, _)| *b == leader)
            .map(|(_, a)| *a)
        else {
            return;
        };
        outbox.send(
            address,
            Msg::Fetch(FetchRequest {
                topic_partition: self.config.topic_partition.clone(),
                replica_id: None,
                broker_epoch: 0,
                fetch_offset: state.position,
                last_fetched_epoch: None,
                current_leader_epoch: Some(leader_epoch),
                fetch_bytes_max: self.config.fetch_bytes_max,
                high_watermark: 0,
            }),
        );
        state.fetching = true;
    }

    pub fn on_msg(&self, state: &mut Cow<ConsumerState>, _src: Id, msg: Msg, o: &mut Out<Node>) {
        let mut outbox = Outbox::new();
        match msg {
            Msg::MetadataResponse {
                brokers,
                partitions,
            } => {
                if !state.metadata_in_flight {
                    return;
                }
                let leader = partitions
                    .iter()
                    .find(|p| p.topic_partition == self.config.topic_partition)
                    .and_then(|p| Some((p.leader?, p.leader_epoch)));
                let s = state.to_mut();
                s.metadata_in_flight = false;
                s.brokers = brokers;
                s.leader = leader;
                if !s.fetching {
                    self.send_fetch(s, &mut outbox);
                }
            }
            Msg::FetchResponse(FetchResponse {
                topic_partition,
                fetch_offset,
                leader_epoch,
                result,
            }) => {
                if topic_partition != self.config.topic_partition
                    || fetch_offset != state.position
                    || !state.fetching
                {
                    return;
                }
                let s = state.to_mut();
                s.fetching = false;
                match result {
                    FetchResult::Records { records, .. } => {
                        // R42: take what was returned and fetch on.
                        fired(R42);
                        for entry in records.iter() {
                            let record = Consumed {
                                offset: s.position,
                                entry: entry.clone(),
                                leader_epoch,
                            };
                            // R42: poll returns it: the record leaves the consumer.
                            outbox.send(application(), Msg::RecordConsumed(record));
                            s.position += 1;
                        }
                        self.send_fetch(s, &mut outbox);
                    }
                    FetchResult::Error {
                        error: ErrorCode::OffsetNotAvailable | ErrorCode::OffsetOutOfRange,
                        ..
                    } => {
                        // R43: the leader's high watermark is behind our position; retry later.
                        fired(R43);
                    }
                    _ => {
                        // R43: leadership moved; refresh metadata.
                        fired(R43);
                        s.leader = None;
                        if !s.metadata_in_flight {
                            self.request_metadata(s, &mut outbox);
                        }
                    }
                }
            }
            _ => return,
        }
        outbox.flush(o, || unreachable!("consumers persist nothing"));
    }

    pub fn on_timer(&self, state: &mut Cow<ConsumerState>, timer: &Timer, o: &mut Out<Node>) {
        let timing = &self.config.timing;
        let mut outbox = Outbox::new();
        match timer {
            Timer::MetadataRetry => {
                o.set_timer(Timer::MetadataRetry, timing.retry_backoff.clone());
                if state.metadata_in_flight || state.fetching {
                    return;
                }
                let s = state.to_mut();
                if s.leader.is_some() {
                    self.send_fetch(s, &mut outbox);
                } else {
                    self.request_metadata(s, &mut outbox);
                }
            }
            Timer::RequestTimeout => {
                o.set_timer(Timer::RequestTimeout, timing.request_timeout.clone());
                if state.metadata_in_flight {
                    let s = state.to_mut();
                    s.bootstrap_index =
                        (s.bootstrap_index + 1) % self.config.bootstrap.len() as u32;
                    self.request_metadata(s, &mut outbox);
                } else if state.fetching {
                    self.send_fetch(state.to_mut(), &mut outbox);
                }
            }
            _ => {}
        }
        outbox.flush(o, || unreachable!("consumers persist nothing"));
    }
}

impl fmt::Debug for ConsumerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "consumer | position {}", self.position)?;
        if self.fetching {
            f.write_str(" (fetching)")?;
        }
        Ok(())
    }
}
