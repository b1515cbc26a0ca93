//! The KRaft quorum's recovery, by seeded simulation: what the exhaustive quorum presets cannot
//! see, since they check safety only (spec section 12, "The quorum's liveness").
//!
//! The quorum model's actors (`QuorumNode`, as `check --controllers 3` builds them) run in a
//! world one seed decides. During the **fault phase** it delivers the messages in flight in any
//! order, loses some, fires any armed timer at any moment, and crashes voters (one at a time,
//! restarted later from what they saved). Then it **heals**: every crashed voter restarts, no
//! message is lost, every message in flight is delivered (in random order) before any timer
//! fires, and a timer fires only once the network is quiet, as on a network that is synchronous
//! again. Within the heal phase the quorum must recover (QL1): at a quiet moment, one voter leads
//! the newest epoch and every node, voter or observer, has applied (below its high watermark)
//! every change the active controller writes.

use crate::quorum::model_timing;
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeSet;
use watermark_model::quorum::*;

/// How a quorum simulation is set up.
#[derive(Clone, Debug)]
pub struct QuorumSimOptions {
    pub voters: u32,
    pub observers: u32,
    /// The changes the active controller writes.
    pub changes: u32,
    /// Steps of the fault phase (a step delivers, loses, fires a timer, crashes or restarts).
    pub fault_steps: u32,
    /// Steps the heal phase may take before the quorum counts as not recovered.
    pub heal_steps_max: u32,
    /// Probability that a message is lost, during the fault phase.
    pub loss: f64,
    /// Voter crashes, at most, during the fault phase.
    pub crashes_max: u32,
}

impl Default for QuorumSimOptions {
    fn default() -> Self {
        QuorumSimOptions {
            voters: 3,
            observers: 1,
            changes: 2,
            fault_steps: 200,
            heal_steps_max: 2_000,
            loss: 0.1,
            crashes_max: 2,
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumSimReport {
    pub seed: u64,
    /// Heal steps until the quorum recovered, or `None` if it did not.
    pub recovered_after: Option<u32>,
    /// The newest epoch reached.
    pub epoch_max: QuorumEpoch,
    pub crashes: u32,
    pub lost: u32,
    /// Why it did not recover, if it did not: each node's state at the end.
    pub unrecovered: Vec<String>,
}

struct World {
    nodes: Vec<QuorumNode>,
    states: Vec<Option<QuorumState>>,
    saved: Vec<Option<QuorumStorage>>,
    timers: Vec<BTreeSet<QuorumTimer>>,
    in_flight: Vec<(usize, usize, QuorumMsg)>,
    rng: Pcg64Mcg,
    crashes: u32,
    lost: u32,
}

impl World {
    fn new(options: &QuorumSimOptions, seed: u64) -> World {
        let voters: Vec<(NodeId, Id)> = (1..=options.voters)
            .map(|n| (n, Id::from(n as usize - 1)))
            .collect();
        let nodes: Vec<QuorumNode> = (1..=options.voters + options.observers)
            .map(|node_id| {
                QuorumNode::new(QuorumConfig {
                    node_id,
                    voters: voters.clone(),
                    changes: (0..options.changes).collect(),
                    fetch_entries_max: 1,
                    bootstrapped: true,
                    timing: model_timing(),
                })
            })
            .collect();
        let n = nodes.len();
        let mut world = World {
            nodes,
            states: vec![None; n],
            saved: vec![None; n],
            timers: vec![BTreeSet::new(); n],
            in_flight: Vec::new(),
            rng: Pcg64Mcg::seed_from_u64(seed),
            crashes: 0,
            lost: 0,
        };
        for i in 0..n {
            world.start(i);
        }
        world
    }

    fn random(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn start(&mut self, i: usize) {
        let mut o = Out::new();
        let state = self.nodes[i].on_start(Id::from(i), &self.saved[i], &mut o);
        self.states[i] = Some(state);
        self.timers[i].clear();
        self.run_commands(i, o);
    }

    fn run_commands(&mut self, i: usize, o: Out<QuorumNode>) {
        for c in o {
            match c {
                Command::Send(to, msg) => self.in_flight.push((i, usize::from(to), msg)),
                Command::SetTimer(t, _) => {
                    self.timers[i].insert(t);
                }
                Command::CancelTimer(t) => {
                    self.timers[i].remove(&t);
                }
                Command::Save(s) => self.saved[i] = Some(s),
                Command::ChooseRandom(..) => {}
            }
        }
    }

    fn step(
        &mut self,
        i: usize,
        f: impl FnOnce(&QuorumNode, &mut Cow<QuorumState>, &mut Out<QuorumNode>),
    ) {
        let Some(state) = self.states[i].take() else {
            return;
        };
        let mut cow = Cow::Owned(state);
        let mut o = Out::new();
        f(&self.nodes[i], &mut cow, &mut o);
        self.states[i] = Some(cow.into_owned());
        self.run_commands(i, o);
    }

    /// Delivers (or, with `loss`, loses) message `k` of those in flight.
    fn deliver(&mut self, k: usize, loss: f64) {
        let (from, to, msg) = self.in_flight.swap_remove(k);
        if self.states[to].is_none() || self.chance(loss) {
            self.lost += 1;
            return;
        }
        self.step(to, |n, s, o| {
            n.on_msg(Id::from(to), s, Id::from(from), msg, o)
        });
    }

    /// Fires a random armed timer of a live node, if any.
    fn fire_any_timer(&mut self) -> bool {
        let armed: Vec<(usize, QuorumTimer)> = (0..self.nodes.len())
            .filter(|i| self.states[*i].is_some())
            .flat_map(|i| self.timers[i].iter().map(move |t| (i, t.clone())))
            .collect();
        if armed.is_empty() {
            return false;
        }
        let (i, t) = armed[self.random(armed.len())].clone();
        self.timers[i].remove(&t);
        self.step(i, |n, s, o| n.on_timeout(Id::from(i), s, &t, o));
        true
    }

    fn crash(&mut self, i: usize) {
        self.states[i] = None;
        self.timers[i].clear();
        self.in_flight.retain(|(_, to, _)| *to != i);
        self.crashes += 1;
    }

    fn fault_step(&mut self, options: &QuorumSimOptions) {
        let voters = options.voters as usize;
        let crashed: Vec<usize> = (0..voters).filter(|i| self.states[*i].is_none()).collect();
        match self.random(20) {
            // A crash of a voter, one at a time.
            0 if crashed.is_empty() && self.crashes < options.crashes_max => {
                let i = self.random(voters);
                self.crash(i);
            }
            // A crashed voter restarts from what it saved.
            1 if !crashed.is_empty() => self.start(crashed[0]),
            2..=5 => {
                self.fire_any_timer();
            }
            _ if !self.in_flight.is_empty() => {
                let k = self.random(self.in_flight.len());
                self.deliver(k, options.loss);
            }
            _ => {
                self.fire_any_timer();
            }
        }
    }

    /// QL1: one voter leads the newest epoch, and every node applied every change.
    fn recovered(&self, options: &QuorumSimOptions) -> bool {
        let Some(states) = self
            .states
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        let epoch = states.iter().map(|s| s.epoch).max().unwrap_or(0);
        let leaders = states
            .iter()
            .filter(|s| s.is_leader() && s.epoch == epoch)
            .count();
        let applied_all = states.iter().all(|s| {
            (0..options.changes).all(|c| {
                s.applied()
                    .iter()
                    .any(|e| e.record == MetadataRecord::Change(c))
            })
        });
        leaders == 1 && applied_all
    }

    fn describe(&self) -> Vec<String> {
        self.states
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some(s) => format!("node {}: {s:?}", i + 1),
                None => format!("node {}: down", i + 1),
            })
            .collect()
    }
}

/// Runs one seed: the fault phase, then the heal phase until the quorum recovers.
pub fn run(options: &QuorumSimOptions, seed: u64) -> QuorumSimReport {
    let mut w = World::new(options, seed);
    for _ in 0..options.fault_steps {
        w.fault_step(options);
    }
    for i in 0..options.voters as usize {
        if w.states[i].is_none() {
            w.start(i);
        }
    }
    let mut recovered_after = None;
    for step in 0..options.heal_steps_max {
        if w.in_flight.is_empty() {
            if w.recovered(options) {
                recovered_after = Some(step);
                break;
            }
            if !w.fire_any_timer() {
                break;
            }
        } else {
            let k = w.random(w.in_flight.len());
            w.deliver(k, 0.0);
        }
    }
    QuorumSimReport {
        seed,
        recovered_after,
        epoch_max: w
            .states
            .iter()
            .flatten()
            .map(|s| s.epoch)
            .max()
            .unwrap_or(0),
        crashes: w.crashes,
        lost: w.lost,
        unrecovered: match recovered_after {
            Some(_) => Vec::new(),
            None => w.describe(),
        },
    }
}

/// Runs `seeds` seeds from `first`; the reports of those that did not recover.
pub fn sweep(options: &QuorumSimOptions, first: u64, seeds: u64) -> Vec<QuorumSimReport> {
    (first..first + seeds)
        .map(|seed| run(options, seed))
        .filter(|r| r.recovered_after.is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_recovers_from_losses_and_crashes() {
        let options = QuorumSimOptions::default();
        let reports: Vec<QuorumSimReport> = (1..=100).map(|seed| run(&options, seed)).collect();
        let failed: Vec<&QuorumSimReport> = reports
            .iter()
            .filter(|r| r.recovered_after.is_none())
            .collect();
        assert!(failed.is_empty(), "{:#?}", failed.first());
        // Not vacuous: the faults deposed leaders, crashed voters and lost messages, and
        // recovering took steps.
        let elected = reports.iter().filter(|r| r.epoch_max >= 3).count();
        let crashed = reports.iter().filter(|r| r.crashes > 0).count();
        assert!(elected >= 20, "only {elected} seeds reached epoch 3");
        assert!(crashed >= 20, "only {crashed} seeds crashed a voter");
        assert!(reports.iter().all(|r| r.lost > 0));
        assert!(reports.iter().any(|r| r.recovered_after > Some(20)));
    }
}
