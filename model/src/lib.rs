//! # watermark-model: Kafka's partition replication protocol as stateright actors
//!
//! A Kafka partition is a replicated log. One replica leads; it appends what producers send and
//! stamps every record with its *leader epoch*. The others follow: they fetch from the leader and
//! append what they get. The leader tracks how far each follower has come, and the smallest log
//! end offset (LEO) among the in-sync replicas (ISR) is the *high watermark* (HWM): records below
//! it are committed, consumers may read them, and `acks=all` producers are told they are safe.
//!
//! A controller decides who leads. Brokers heartbeat to it; when one's session expires, it is
//! fenced, dropped from the ISR, and its leaderships move to the next in-sync replica, in a new
//! leader epoch. A follower that falls behind is dropped from the ISR by its leader and added back
//! once it catches up; both changes go through the controller, fenced by the partition epoch.
//!
//! The hard part is what a replica does with its log when leadership moves: its tail may hold
//! records the new leader never had. Kafka's data-loss bugs were all there, and each fix is one
//! [`revision`]: truncating to the high watermark (lost committed data), truncating by a leader
//! epoch lookup (KIP-101), walking back to the largest common epoch (KIP-279), and fencing every
//! fetch by the current leader epoch (KIP-320).
//!
//! Everything here is pure: handlers take a state and a message (or a timer) and return the next
//! state and commands. No sockets, files, clocks or randomness, so that one `impl Actor` serves
//! the model checker (`watermark-checks`) and the real cluster (`watermark-net`). The rules
//! (R0…) and invariants (I1…) cited in comments are those of `spec.md`.

pub mod broker;
pub mod collections;
pub mod config;
pub mod consumer;
pub mod controller;
mod fmt;
pub mod group;
pub mod kraft;
pub mod log;
pub mod msg;
pub mod node;
mod outbox;
pub mod producer;
pub mod quorum;
pub mod revision;
pub mod rules;
pub mod types;

pub use broker::{Broker, BrokerState, Replica, Role};
pub use collections::{BrokerIds, PartitionMap};
pub use config::*;
pub use consumer::{Consumer, ConsumerState};
pub use controller::{Controller, ControllerState};
pub use group::{CommitMode, Generation, Group, GroupConfig, OffsetReset, OFFSETS_TOPIC};
pub use log::Log;
pub use msg::*;
pub use node::{Node, NodeState, PowerLoss, Storage, Timer};
pub use producer::{Producer, ProducerState};
pub use revision::{Protocol, Revision, PROTOCOLS};
pub use types::*;
