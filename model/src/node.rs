//! One actor type for every role, so that one `ActorModel` (and one runtime) hosts them all.

use crate::broker::{Broker, BrokerState, BrokerStorage};
use crate::consumer::{Consumer, ConsumerState};
use crate::controller::{Controller, ControllerState};
use crate::kraft::{KraftController, KraftState};
use crate::msg::Msg;
use crate::producer::{Producer, ProducerState};
use crate::quorum::{QuorumStorage, QuorumTimer};
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Every timer of every role. All of them are periodic: a handler re-arms its timer first and
/// then acts only if its state calls for it, so that an idle timer is a no-op the checker prunes
/// (spec: "Model bounds").
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// Controller: the broker's session expired (`broker.session.timeout.ms`).
    SessionTimeout(BrokerId),
    /// Controller: `auto.leader.rebalance.enable`'s periodic check.
    PreferredLeaderElection,
    /// Broker: heartbeat to the controller.
    Heartbeat,
    /// Broker: `replica.lag.time.max.ms`'s periodic check of followers that fell behind.
    IsrShrink,
    /// Broker: retry fetches that backed off after a retriable error.
    FetchBackoff,
    /// Broker (retransmitting only) or client: a request got no answer in time.
    RequestTimeout,
    /// Client: ask for metadata again (and, for a group member, retry a group request).
    MetadataRetry,
    /// Group member with `enable.auto.commit`: commit the position (`auto.commit.interval.ms`).
    AutoCommit,
    /// A controller of a KRaft quorum: the quorum's own timers.
    Quorum(QuorumTimer),
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::SessionTimeout(b) => write!(f, "SessionTimeout(broker {b})"),
            Timer::PreferredLeaderElection => f.write_str("PreferredLeaderElection"),
            Timer::Heartbeat => f.write_str("Heartbeat"),
            Timer::IsrShrink => f.write_str("IsrShrink"),
            Timer::FetchBackoff => f.write_str("FetchBackoff"),
            Timer::RequestTimeout => f.write_str("RequestTimeout"),
            Timer::MetadataRetry => f.write_str("MetadataRetry"),
            Timer::AutoCommit => f.write_str("AutoCommit"),
            Timer::Quorum(t) => write!(f, "{t:?}"),
        }
    }
}

/// What survives a crash. The controller keeps its whole state; a broker its logs, high
/// watermark checkpoints, partition states and epochs. Clients keep nothing.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Storage {
    Controller(Arc<ControllerState>),
    Broker(Arc<BrokerStorage>),
    /// A controller of a KRaft quorum keeps its quorum state and metadata log, which holds the
    /// controller's records.
    Quorum(Arc<QuorumStorage>),
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Controller(s) => fmt::Debug::fmt(s, f),
            Storage::Broker(s) => fmt::Debug::fmt(s, f),
            Storage::Quorum(s) => fmt::Debug::fmt(s, f),
        }
    }
}

/// The actor of every role.
/// What a broker's crash leaves of its storage, beyond a clean crash: a power loss (unclean
/// shutdown), or a stale high watermark checkpoint. Under Kafka's default flush policy nothing
/// is fsynced, so a log keeps only the records that happened to reach the disk: any prefix.
/// And Kafka (like the real cluster here) writes the HWM checkpoint periodically, so a broker
/// may come back with an older HWM than it had. Actors never choose this; the checker injects
/// it as a crash (`--unclean-shutdown`, `--stale-hwm-checkpoints`), and the real cluster gets
/// it from the kernel and its checkpoint interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PowerLoss {
    /// Every log keeps at most this many records (`Offset::MAX`: all of them).
    pub log_end_offset: Offset,
    /// Every HWM checkpoint is at most this, and never past its log's end.
    pub high_watermark: Offset,
}

impl PowerLoss {
    /// A power loss that keeps `log_end_offset` records of each log, the HWM cut to match.
    pub fn keeping(log_end_offset: Offset) -> PowerLoss {
        PowerLoss {
            log_end_offset,
            high_watermark: log_end_offset,
        }
    }

    /// A crash whose HWM checkpoints lag: each at most `high_watermark`, the logs whole.
    pub fn stale_hwm(high_watermark: Offset) -> PowerLoss {
        PowerLoss {
            log_end_offset: Offset::MAX,
            high_watermark,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub enum Node {
    Controller(Controller),
    Broker(Broker),
    Producer(Producer),
    Consumer(Consumer),
    /// A controller of a KRaft quorum (section 4b).
    Kraft(KraftController),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum NodeState {
    Controller(ControllerState),
    Broker(BrokerState),
    Producer(ProducerState),
    Consumer(ConsumerState),
    Kraft(KraftState),
}

impl fmt::Debug for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Controller(s) => fmt::Debug::fmt(s, f),
            NodeState::Broker(s) => fmt::Debug::fmt(s, f),
            NodeState::Producer(s) => fmt::Debug::fmt(s, f),
            NodeState::Consumer(s) => fmt::Debug::fmt(s, f),
            NodeState::Kraft(s) => fmt::Debug::fmt(s, f),
        }
    }
}

impl NodeState {
    pub fn as_broker(&self) -> Option<&BrokerState> {
        match self {
            NodeState::Broker(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_controller(&self) -> Option<&ControllerState> {
        match self {
            NodeState::Controller(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_producer(&self) -> Option<&ProducerState> {
        match self {
            NodeState::Producer(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_consumer(&self) -> Option<&ConsumerState> {
        match self {
            NodeState::Consumer(s) => Some(s),
            _ => None,
        }
    }
}

/// Runs a role's handler on the role's own state type inside `NodeState`. A borrowed state (the
/// checker's) stays borrowed, a no-op, unless the handler changed it; an owned one (the real
/// cluster's host owns its state) is handed to the handler owned, so that it changes it in place
/// rather than copying every replica of the broker on its first change.
macro_rules! delegate {
    ($state:expr, $variant:ident, |$s:ident| $body:expr) => {{
        if let Cow::Owned(_) = $state {
            let Cow::Owned(NodeState::$variant(inner)) =
                std::mem::replace($state, Cow::Borrowed(placeholder()))
            else {
                unreachable!("actor and state roles always match")
            };
            let mut $s = Cow::Owned(inner);
            $body;
            *$state = Cow::Owned(NodeState::$variant($s.into_owned()));
        } else {
            let NodeState::$variant(inner) = &**$state else {
                unreachable!("actor and state roles always match")
            };
            let mut $s = Cow::Borrowed(inner);
            $body;
            if let Cow::Owned(next) = $s {
                *$state = Cow::Owned(NodeState::$variant(next));
            }
        }
    }};
}

/// What an owned state's place holds while its handler runs; never seen by anyone.
fn placeholder() -> &'static NodeState {
    static PLACEHOLDER: std::sync::OnceLock<NodeState> = std::sync::OnceLock::new();
    PLACEHOLDER.get_or_init(|| {
        NodeState::Consumer(ConsumerState {
            brokers: Arc::new([]),
            leader: None,
            metadata_in_flight: false,
            bootstrap_index: 0,
            position: 0,
            fetching: false,
            member: None,
            records_left: None,
        })
    })
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    type Storage = Storage;
    type Random = PowerLoss;

    fn name(&self) -> String {
        match self {
            Node::Controller(_) => "controller".into(),
            Node::Broker(b) => format!("broker {}", b.config.broker_id),
            Node::Producer(_) => "producer".into(),
            Node::Consumer(_) => "consumer".into(),
            Node::Kraft(k) => format!("controller {}", k.quorum.config.node_id),
        }
    }

    fn on_start(&self, id: Id, storage: &Option<Storage>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Controller(a) => {
                let storage = match storage {
                    Some(Storage::Controller(s)) => Some(&**s),
                    _ => None,
                };
                NodeState::Controller(a.start(id, storage, o))
            }
            Node::Broker(a) => {
                let storage = match storage {
                    Some(Storage::Broker(s)) => Some(&**s),
                    _ => None,
                };
                NodeState::Broker(a.start(id, storage, o))
            }
            Node::Producer(a) => NodeState::Producer(a.start(o)),
            Node::Consumer(a) => NodeState::Consumer(a.start(o)),
            Node::Kraft(a) => {
                let storage = match storage {
                    Some(Storage::Quorum(s)) => Some(&**s),
                    _ => None,
                };
                NodeState::Kraft(a.start(id, storage, o))
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match self {
            Node::Controller(a) => delegate!(state, Controller, |s| a.on_msg(&mut s, src, msg, o)),
            Node::Broker(a) => delegate!(state, Broker, |s| a.on_msg(&mut s, src, msg, o)),
            Node::Producer(a) => delegate!(state, Producer, |s| a.on_msg(&mut s, src, msg, o)),
            Node::Consumer(a) => delegate!(state, Consumer, |s| a.on_msg(&mut s, src, msg, o)),
            Node::Kraft(a) => delegate!(state, Kraft, |s| a.on_msg(id, &mut s, src, msg, o)),
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        match self {
            Node::Controller(a) => delegate!(state, Controller, |s| a.on_timer(&mut s, timer, o)),
            Node::Broker(a) => delegate!(state, Broker, |s| a.on_timer(&mut s, timer, o)),
            Node::Producer(a) => delegate!(state, Producer, |s| a.on_timer(&mut s, timer, o)),
            Node::Consumer(a) => delegate!(state, Consumer, |s| a.on_timer(&mut s, timer, o)),
            Node::Kraft(a) => delegate!(state, Kraft, |s| a.on_timer(id, &mut s, timer, o)),
        }
    }
}
