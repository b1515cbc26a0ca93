//! A controller of a KRaft quorum: the controller of section 4, hosted on a voter of the
//! metadata log of section 4a. Spec: section 4b, rules R73–R75.
//!
//! Every controller runs a [`QuorumNode`]. The one that leads the quorum is the *active*
//! controller: it starts the controller of section 4 in its quorum epoch, from the newest
//! controller record of its log (R73). Each of its decisions is what the single controller
//! saves (R0); here it is appended to the metadata log instead, and every message the decision
//! sends waits until the record is committed, below the quorum's high watermark. So a broker
//! never hears of a change that a failover could undo, and the controller epoch brokers fence
//! by is the quorum epoch, one leader per epoch (I20). A controller that stops leading drops its
//! controller state and every message still waiting.
//!
//! The others answer a broker's heartbeat or ISR change with the active controller they know
//! (R74, NOT_CONTROLLER) and forward an admin request to it. Brokers follow whichever
//! controller is active (R74 in `broker`).

use crate::controller::{Controller, ControllerState};
use crate::msg::Msg;
use crate::node::{Node, Storage, Timer};
use crate::quorum::{
    MetadataRecord, QuorumDescription, QuorumEpoch, QuorumNode, QuorumState, QuorumStorage,
};
use crate::rules::*;
use crate::types::Offset;
use serde::{Deserialize, Serialize};
use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// The most messages an active controller holds for commitment; beyond, the oldest is dropped,
/// as a lossy network may (a controller cut off from its quorum commits nothing and would
/// otherwise hold every answer it owes for ever).
pub const HELD_SENDS_MAX: usize = 4096;

#[derive(Clone, Serialize, Deserialize)]
pub struct KraftController {
    pub quorum: QuorumNode,
    pub controller: Controller,
}

/// The active controller: the controller of section 4 in the quorum epoch it leads.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActiveController {
    pub epoch: QuorumEpoch,
    pub state: ControllerState,
    /// Messages waiting for the records written before them: each is sent once the high
    /// watermark reaches its offset.
    pub held: VecDeque<(Offset, Id, Msg)>,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KraftState {
    pub quorum: QuorumState,
    pub active: Option<ActiveController>,
}

impl fmt::Debug for KraftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.quorum)?;
        if let Some(a) = &self.active {
            write!(f, " | ACTIVE {:?}, {} held", a.state, a.held.len())?;
        }
        Ok(())
    }
}

impl KraftController {
    pub fn new(quorum: QuorumNode, controller: Controller) -> Self {
        KraftController { quorum, controller }
    }

    pub fn start(&self, id: Id, storage: Option<&QuorumStorage>, o: &mut Out<Node>) -> KraftState {
        let mut q = Out::new();
        let quorum = self.quorum.on_start(id, &storage.cloned(), &mut q);
        let mut s = Cow::Owned(KraftState {
            quorum,
            active: None,
        });
        relay(q, o);
        self.follow_quorum(&mut s, o);
        s.into_owned()
    }

    pub fn on_msg(&self, id: Id, s: &mut Cow<KraftState>, src: Id, msg: Msg, o: &mut Out<Node>) {
        match msg {
            Msg::Quorum(m) => {
                self.quorum_step(s, o, |q, quorum, out| quorum.on_msg(id, q, src, m, out))
            }
            // R75: anyone may ask how the quorum stands.
            Msg::DescribeQuorum => {
                fired(R75);
                o.send(src, Msg::DescribeQuorumResponse(self.describe(s)));
            }
            // R73: the active controller decides; what it decides takes effect once committed.
            msg if s.active.is_some() => {
                fired(R73);
                self.decide(s, o, |c, state, out| c.on_msg(state, src, msg, out));
            }
            // R74: an admin request goes on to the active controller, which answers the client.
            msg @ (Msg::CreateTopics { .. }
            | Msg::DescribeTopics { .. }
            | Msg::ElectLeaders { .. }
            | Msg::IncrementalAlterConfigs { .. }) => {
                if let Some(leader) = self.leader_address(s) {
                    fired(R74);
                    o.send(leader, msg);
                }
            }
            // R74: a broker is told where the active controller is.
            Msg::BrokerHeartbeat { .. } | Msg::AlterPartition { .. } => {
                fired(R74);
                let leader = self.leader_address(s);
                o.send(src, Msg::NotController { leader });
            }
            _ => {}
        }
    }

    pub fn on_timer(&self, id: Id, s: &mut Cow<KraftState>, timer: &Timer, o: &mut Out<Node>) {
        match timer {
            Timer::Quorum(t) => {
                self.quorum_step(s, o, |q, quorum, out| quorum.on_timeout(id, q, t, out))
            }
            // R73: the controller's timers run while it is active; otherwise they lapse (a
            // controller that is not active decides nothing).
            _ => self.decide(s, o, |c, state, out| c.on_timer(state, timer, out)),
        }
    }

    /// A step of the quorum, then the active controller follows it.
    fn quorum_step(
        &self,
        s: &mut Cow<KraftState>,
        o: &mut Out<Node>,
        step: impl FnOnce(&mut Cow<QuorumState>, &QuorumNode, &mut Out<QuorumNode>),
    ) {
        self.run_quorum(s, o, step);
        self.follow_quorum(s, o);
    }

    /// Runs `step` on the quorum's state (copied only if it changes) and relays its commands.
    fn run_quorum(
        &self,
        s: &mut Cow<KraftState>,
        o: &mut Out<Node>,
        step: impl FnOnce(&mut Cow<QuorumState>, &QuorumNode, &mut Out<QuorumNode>),
    ) {
        let mut q = Out::new();
        let mut quorum = Cow::Borrowed(&s.quorum);
        step(&mut quorum, &self.quorum, &mut q);
        if let Cow::Owned(next) = quorum {
            s.to_mut().quorum = next;
        }
        relay(q, o);
    }

    /// R73: the quorum's leader is the active controller, in its quorum epoch; a controller
    /// that leads no more (or leads a newer epoch) drops the old state and what it held. Then
    /// every held message whose records are committed goes out.
    fn follow_quorum(&self, s: &mut Cow<KraftState>, o: &mut Out<Node>) {
        let leading = s.quorum.is_leader().then_some(s.quorum.epoch);
        let active = s.active.as_ref().map(|a| a.epoch);
        if active.is_some() && active != leading {
            fired(R73);
            s.to_mut().active = None;
        }
        if let (Some(epoch), None) = (leading, &s.active) {
            fired(R73);
            self.activate(s, epoch, o);
        }
        self.release_committed(s, o);
    }

    /// R73: start the controller of section 4 in the quorum epoch, from the newest controller
    /// record of the log (committed or not: the leader's log is the one that will be).
    fn activate(&self, s: &mut Cow<KraftState>, epoch: QuorumEpoch, o: &mut Out<Node>) {
        let newest = s.quorum.log.iter().rev().find_map(|e| match &e.record {
            MetadataRecord::Controller(c) => Some(c.clone()),
            _ => None,
        });
        let mut c = Out::new();
        let state = self
            .controller
            .start_in_epoch(newest.as_deref(), epoch, &mut c);
        s.to_mut().active = Some(ActiveController {
            epoch,
            state,
            held: VecDeque::new(),
        });
        self.take_decisions(s, c, o);
    }

    /// R73: a step of the active controller.
    fn decide(
        &self,
        s: &mut Cow<KraftState>,
        o: &mut Out<Node>,
        step: impl FnOnce(&Controller, &mut Cow<ControllerState>, &mut Out<Node>),
    ) {
        let Some(active) = &s.active else {
            return;
        };
        let mut c = Out::new();
        let mut state = Cow::Borrowed(&active.state);
        step(&self.controller, &mut state, &mut c);
        if let Cow::Owned(next) = state {
            if let Some(a) = &mut s.to_mut().active {
                a.state = next;
            }
        }
        self.take_decisions(s, c, o);
        self.release_committed(s, o);
    }

    /// R73: the controller's commands, in order: a save becomes a record of the metadata log;
    /// a send waits for every record written before it; timers are the node's.
    fn take_decisions(&self, s: &mut Cow<KraftState>, c: Out<Node>, o: &mut Out<Node>) {
        for command in c {
            match command {
                Command::Save(Storage::Controller(state)) => {
                    self.run_quorum(s, o, |quorum, node, q| {
                        node.append_record(quorum, MetadataRecord::Controller(state), q);
                    });
                }
                Command::Send(to, msg) => {
                    let offset = s.quorum.log_end_offset();
                    if let Some(a) = &mut s.to_mut().active {
                        if a.held.len() == HELD_SENDS_MAX {
                            a.held.pop_front();
                        }
                        a.held.push_back((offset, to, msg));
                    }
                }
                Command::SetTimer(t, range) => o.set_timer(t, range),
                Command::CancelTimer(t) => o.cancel_timer(t),
                Command::Save(_) | Command::ChooseRandom(..) => {}
            }
        }
    }

    /// R73: what the high watermark has committed goes out, in order.
    fn release_committed(&self, s: &mut Cow<KraftState>, o: &mut Out<Node>) {
        let high_watermark = s.quorum.high_watermark;
        let due = s.active.as_ref().is_some_and(|a| {
            a.held
                .front()
                .is_some_and(|(offset, ..)| *offset <= high_watermark)
        });
        if !due {
            return;
        }
        let Some(a) = &mut s.to_mut().active else {
            return;
        };
        while a
            .held
            .front()
            .is_some_and(|(offset, ..)| *offset <= high_watermark)
        {
            let (_, to, msg) = a.held.pop_front().expect("checked");
            o.send(to, msg);
        }
    }

    fn leader_address(&self, s: &KraftState) -> Option<Id> {
        s.quorum.leader.and_then(|l| self.quorum.voter_address(l))
    }

    pub fn describe(&self, s: &KraftState) -> QuorumDescription {
        self.quorum.describe(&s.quorum)
    }
}

/// The quorum's commands as the node's: its messages, timers and storage.
fn relay(q: Out<QuorumNode>, o: &mut Out<Node>) {
    for command in q {
        match command {
            Command::Send(to, m) => o.send(to, Msg::Quorum(m)),
            Command::SetTimer(t, range) => o.set_timer(Timer::Quorum(t), range),
            Command::CancelTimer(t) => o.cancel_timer(Timer::Quorum(t)),
            Command::Save(storage) => o.save(Storage::Quorum(Arc::new(storage))),
            Command::ChooseRandom(..) => {}
        }
    }
}
