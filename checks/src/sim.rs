//! `watermark simulate`: the same actors on a virtual clock, in a hostile world, checked for
//! safety at every step and for recovery once the faults stop. Spec: section 12.
//!
//! FoundationDB's simulator and TigerBeetle's VOPR are the models. One seed decides everything
//! (timer jitter, latencies, losses, duplicates, partitions, crashes, power losses), so a seed
//! replays exactly. The world behaves as the real cluster does:
//!
//! - **The actors** are the model's `Node`s, configured as `watermark-net` configures them: real
//!   timings with seeded jitter, 48 KiB batches and fetches, retransmission, periodic
//!   heartbeats that pull metadata, clients that time requests out and retry.
//! - **The network** carries every message through the runtime's own transport
//!   (`watermark_net::transport`) as datagrams. During the fault phase it loses, duplicates and
//!   delays them (so reorders them across and within channels), and partitions nodes; the
//!   transport turns that back into the model's ordered lossy channels, as on the real cluster.
//! - **Crashes** keep what the runtime's store keeps: logs and partition states as last saved,
//!   the high watermark checkpoint as last written (at most once a virtual second), and after a
//!   power loss only a prefix of the logs (the model's `PowerLoss`). A datagram that reaches a
//!   dead process is lost.
//! - **Safety**: after every step that changed an actor, every Always property of
//!   [`properties`] is evaluated on the world's state, with the ghost history the checker keeps,
//!   by the same code `watermark check` runs.
//! - **Liveness**: after the fault phase the network heals and every dead process restarts; within
//!   the heal phase every partition must have a leader (L1), every replica be back in its ISR
//!   (L2), every broker's metadata equal the controller's (L3), every acknowledged record be read
//!   by a consumer at its offset (L4), every producer be done (L5), every group member be
//!   reading with its position committed (L6), and every consumer know its leader (L7).

use crate::ghost::{self, Ghost};
use crate::hashed::Hashed;
use crate::knobs::Knobs;
use crate::model::{controller, Action, Settings, State, WatermarkModel};
use crate::properties::PropertyDef;
use crate::recovery;
use crate::trace::{self, TraceStep};
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;
use stateright::actor::{Actor, ActorModelAction, Command, Id, Network, Out};
use stateright::Expectation;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU64;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use watermark_model::broker::BrokerStorage;
use watermark_model::rules::{Coverage, Recording};
use watermark_model::*;
use watermark_net::cluster::{TimingMs, BATCH_BYTES_MAX};
use watermark_net::codec;
use watermark_net::store::HWM_CHECKPOINT_INTERVAL;
use watermark_net::transport::{Received, Transport, TransportConfig};

/// Virtual time, in microseconds.
type Micros = u64;

const MICROS_PER_S: Micros = 1_000_000;
/// A high watermark change alone is checkpointed at most this often: the runtime's interval.
const HWM_CHECKPOINT_MICROS: Micros = HWM_CHECKPOINT_INTERVAL.as_micros() as Micros;
/// How often liveness is checked once the world has healed.
const LIVENESS_CHECK_MICROS: Micros = 100_000;
/// How long L1–L3 must have held before `brokers_dead_after_heal` brokers die: longer than the
/// brokers' session timeout (3 s, with jitter), so that every fencing the faults left pending has
/// happened.
const STEADY_BEFORE_LOSS_MICROS: Micros = 5 * MICROS_PER_S;
/// How long every liveness condition must hold, without a break, for the world to count as
/// recovered: longer than the clients' request timeout (5 s, with jitter), so that what a
/// timeout undoes (a member that rejoins on each one) is seen undone.
const RECOVERY_HELD_MICROS: Micros = 6 * MICROS_PER_S;
/// The loopback latency of every datagram, uniformly in this range.
const LATENCY_MICROS: Range<Micros> = 50..500;

/// What the world does to the cluster during the fault phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Extra delay of each datagram, uniformly up to this: reorders datagrams.
    pub delay_ms_max: u64,
    /// Network partitions started per virtual minute: a node cut from every other, two nodes
    /// cut from each other, or the nodes split into two sides; each lasts 1 to 8 s.
    pub partitions_per_min: f64,
    /// Crashes per virtual minute, of a broker (or the controller, if the knobs allow
    /// controller crashes, or a consumer, if they allow consumer crashes); each process is dead
    /// for 0.5 to 8 s.
    pub crashes_per_min: f64,
    /// Probability that a broker's crash is a power loss, which keeps only a prefix of its logs.
    pub power_loss: f64,
    /// Brokers, drawn by the seed, that die when the world heals and never restart: the cluster
    /// must recover without them, as Kafka does with a broker lost for good.
    pub brokers_dead_after_heal: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.05,
            duplicate: 0.02,
            delay_ms_max: 20,
            partitions_per_min: 4.0,
            crashes_per_min: 4.0,
            power_loss: 0.0,
            brokers_dead_after_heal: 0,
        }
    }
}

impl Faults {
    /// One line: `loss 5%, duplication 2%, delay <= 20 ms, 4 partitions/min, 4 crashes/min`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "loss {}%, duplication {}%, delay <= {} ms, {} partitions/min, {} crashes/min",
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.delay_ms_max,
            self.partitions_per_min,
            self.crashes_per_min
        );
        if self.power_loss > 0.0 {
            s.push_str(&format!(
                " ({}% of them power losses)",
                self.power_loss * 100.0
            ));
        }
        if self.brokers_dead_after_heal > 0 {
            s.push_str(&format!(
                ", {} broker{} dead for good at the heal",
                self.brokers_dead_after_heal,
                if self.brokers_dead_after_heal == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        }
        s
    }
}

/// How many brokers the cluster of `knobs` can lose for good and still take `acks=all` writes on
/// every partition: the fewest replicas any topic (`__consumer_offsets` too, with a group) can
/// lose before its ISR falls under min.insync.replicas. The most `brokers_dead_after_heal` may be.
pub fn brokers_losable(knobs: &Knobs) -> u32 {
    let losable = |rf: u32| {
        rf.min(knobs.brokers)
            .saturating_sub(knobs.min_insync_replicas.min(rf))
    };
    let data = losable(knobs.replication_factor);
    if knobs.group {
        data.min(losable(knobs.offsets_rf()))
    } else {
        data
    }
}

/// One simulated run's configuration.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub knobs: Knobs,
    pub faults: Faults,
    /// Virtual seconds of faults.
    pub fault_s: u64,
    /// Virtual seconds after healing within which the cluster must recover (L1–L7).
    pub heal_s: u64,
    /// Steps of the trace kept for a failure (0: none).
    pub trace_steps: usize,
}

impl SimOptions {
    /// The knobs the simulator runs: one consumer per partition (to check L4), and producers
    /// that retry until they succeed, as Kafka's do by default.
    fn sim_knobs(&self) -> Knobs {
        Knobs {
            consumers: self.knobs.consumers.max(self.knobs.partitions),
            producer_attempts_max: u32::MAX,
            client_request_timeout: true,
            // The real cluster's limits: the actors' (`World::new`), and what I24, I25, I28 read.
            fetch_bytes_max: BATCH_BYTES_MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            ..self.knobs.clone()
        }
    }

    /// The knobs that decide which properties apply: crashes, leader changes and controller
    /// crashes are all within reach of the simulator's faults.
    fn property_knobs(&self) -> Knobs {
        let k = self.sim_knobs();
        let crashes = self.faults.crashes_per_min > 0.0;
        Knobs {
            broker_crashes: if crashes { k.broker_crashes.max(1) } else { 0 },
            false_suspicions: k.false_suspicions || self.faults.partitions_per_min > 0.0,
            leader_epoch_max: k.leader_epoch_max.max(1),
            network: crate::knobs::Network {
                ordered: true,
                duplicating: false,
                lossy: self.faults.loss > 0.0 || self.faults.partitions_per_min > 0.0,
            },
            ..k
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Verdict {
    /// Safe throughout, and recovered this long after healing.
    Recovered { recovery_s: f64 },
    /// An Always property failed.
    Safety { property: &'static str, at_s: f64 },
    /// The cluster had not recovered by the end of the heal phase.
    Liveness { conditions: Vec<String> },
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Recovered { .. })
    }
}

/// What one seed did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub verdict: Verdict,
    pub events: u64,
    pub virtual_s: f64,
    pub wall_s: f64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// The last steps before the failure (empty for a pass, or without `trace_steps`).
    pub trace: Vec<TraceStep>,
}

/// Runs one seed.
pub fn run(options: &SimOptions, seed: u64) -> RunReport {
    let started = Instant::now();
    let mut world = World::new(options, seed);
    let verdict = world.run();
    RunReport {
        seed,
        verdict,
        events: world.events,
        virtual_s: world.now as f64 / MICROS_PER_S as f64,
        wall_s: started.elapsed().as_secs_f64(),
        faults: world.fault_counts.clone(),
        trace: world.trace.drain(..).collect(),
    }
}

/// A sweep's totals.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub seeds: u64,
    pub passed: u64,
    pub failures: Vec<RunReport>,
    pub events: u64,
    pub virtual_s: f64,
    pub wall_s: f64,
    pub events_per_s: f64,
    pub virtual_s_per_wall_s: f64,
    pub seeds_per_min: f64,
    /// The slowest recovery after healing, over the passing seeds.
    pub recovery_s_max: f64,
    pub rule_coverage: Coverage,
    pub faults: BTreeMap<&'static str, u64>,
}

/// Runs every seed of `seeds` on `threads` threads; failures are replayed alone to record their
/// traces. `progress` sees each finished seed.
pub fn sweep(
    options: &SimOptions,
    seeds: Range<u64>,
    threads: usize,
    progress: Option<&(dyn Fn(&RunReport) + Sync)>,
) -> SweepReport {
    let started = Instant::now();
    let recording = Recording::start();
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let untraced = SimOptions {
        trace_steps: 0,
        ..options.clone()
    };
    let reports: Vec<RunReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= seeds.end {
                            return mine;
                        }
                        let report = run(&untraced, seed);
                        if let Some(p) = progress {
                            p(&report);
                        }
                        mine.push(report);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a simulation thread panicked"))
            .collect()
    });
    let rule_coverage = recording.coverage();
    drop(recording);
    let wall_s = started.elapsed().as_secs_f64();
    let mut report = SweepReport {
        seeds: seeds.end - seeds.start,
        passed: 0,
        failures: Vec::new(),
        events: 0,
        virtual_s: 0.0,
        wall_s,
        events_per_s: 0.0,
        virtual_s_per_wall_s: 0.0,
        seeds_per_min: 0.0,
        recovery_s_max: 0.0,
        rule_coverage,
        faults: BTreeMap::new(),
    };
    for r in &reports {
        report.events += r.events;
        report.virtual_s += r.virtual_s;
        for (k, v) in &r.faults {
            *report.faults.entry(k).or_default() += v;
        }
        match &r.verdict {
            Verdict::Recovered { recovery_s } => {
                report.passed += 1;
                report.recovery_s_max = report.recovery_s_max.max(*recovery_s);
            }
            _ => report.failures.push(r.clone()),
        }
    }
    report.failures.sort_by_key(|r| r.seed);
    if options.trace_steps > 0 {
        for f in &mut report.failures {
            f.trace = run(options, f.seed).trace;
        }
    }
    let busy_s: f64 = reports.iter().map(|r| r.wall_s).sum::<f64>().max(1e-9);
    report.events_per_s = report.events as f64 / busy_s;
    report.virtual_s_per_wall_s = report.virtual_s / busy_s;
    report.seeds_per_min = report.seeds as f64 / wall_s.max(1e-9) * 60.0;
    report
}

/// Something scheduled to happen.
#[derive(Clone, Debug)]
enum Event {
    /// A datagram reaches `to`.
    Datagram {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    /// A timer fires, unless it was re-armed or cancelled since (`generation`).
    Timer {
        node: usize,
        timer: Timer,
        generation: u64,
    },
    /// A producer sends its first requests.
    ClientStart {
        node: usize,
    },
    /// A process dies.
    Crash {
        node: usize,
        power_loss: bool,
    },
    /// A dead process starts again.
    Restart {
        node: usize,
    },
    /// Datagrams between these pairs are lost until the partition ends.
    PartitionStart {
        id: u64,
        cut: Vec<(usize, usize)>,
    },
    PartitionEnd {
        id: u64,
    },
    /// The fault phase ends: the network heals and every dead process restarts.
    Heal,
    /// Whether the cluster has recovered yet.
    CheckLiveness,
}

struct Queued {
    at: Micros,
    order: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// A process of the simulated cluster.
struct SimNode {
    address: SocketAddrV4,
    /// `None` while the process is dead.
    transport: Option<Transport>,
    starts: u64,
    /// The generation of each armed timer: a firing of an older one is ignored.
    timers: HashMap<Timer, u64>,
    /// What a restart loads: what the runtime's store holds.
    durable: Option<Storage>,
    /// When the broker's high watermark checkpoint was last written.
    hwm_written_at: Micros,
    /// A power loss cuts the logs to this many records at the next start.
    power_loss: Option<Offset>,
    /// A producer's first step's output, held until its start time.
    held: Option<Out<Node>>,
}

struct World<'o> {
    options: &'o SimOptions,
    model: WatermarkModel,
    always: Vec<PropertyDef>,
    rng: Pcg64Mcg,
    now: Micros,
    order: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    state: State,
    nodes: Vec<SimNode>,
    /// Server nodes (controller and brokers): what faults pick from.
    servers: Vec<usize>,
    healed_at: Option<Micros>,
    /// The brokers that died for good after the heal (`brokers_dead_after_heal`).
    dead_after_heal: Vec<usize>,
    /// Whether they have been drawn and killed.
    lost_for_good: bool,
    /// Since when L1–L3 have held without a break, once healed.
    cluster_recovered_at: Option<Micros>,
    /// Since when every liveness condition has held without a break, once healed.
    recovered_at: Option<Micros>,
    /// Per link, once healed: when its last datagram arrives.
    link_clock: HashMap<(usize, usize), Micros>,
    cuts: HashMap<u64, Vec<(usize, usize)>>,
    events: u64,
    fault_counts: BTreeMap<&'static str, u64>,
    timer_generation: u64,
    trace: VecDeque<TraceStep>,
    steps: usize,
    failure: Option<Verdict>,
}

fn address(index: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20_000 + index as u16)
}

fn index_of(address: SocketAddrV4) -> usize {
    usize::from(address.port() - 20_000)
}

impl<'o> World<'o> {
    fn new(options: &'o SimOptions, seed: u64) -> World<'o> {
        let knobs = options.sim_knobs();
        let settings = Settings {
            timing: TimingMs::default().timing(),
            client_timing: TimingMs::client().timing(),
            fetch_bytes_max: knobs.fetch_bytes_max,
            batch_bytes_max: knobs.batch_bytes_max,
            retransmit: true,
            heartbeat_periodic: true,
            client_request_timeout: true,
            producer_attempts_max: knobs.producer_attempts_max,
        };
        let model = WatermarkModel::with_settings(knobs, settings)
            .with_properties(crate::properties::enabled(&options.property_knobs()));
        let always: Vec<PropertyDef> = model
            .checked
            .iter()
            .filter(|p| p.expectation == Expectation::Always)
            .cloned()
            .collect();
        let actors = model.inner.actors.len();
        let servers: Vec<usize> = std::iter::once(crate::model::CONTROLLER_INDEX)
            .chain(model.broker_indices())
            .collect();
        let state = State {
            actor_states: Vec::with_capacity(actors),
            network: Network::new_ordered([]),
            timers_set: vec![Default::default(); actors],
            random_choices: vec![Default::default(); actors],
            crashed: vec![false; actors],
            history: Ghost::default(),
            actor_storages: vec![None; actors],
        };
        let nodes = (0..actors)
            .map(|i| SimNode {
                address: address(i),
                transport: None,
                starts: 0,
                timers: HashMap::new(),
                durable: None,
                hwm_written_at: 0,
                power_loss: None,
                held: None,
            })
            .collect();
        let mut world = World {
            options,
            model,
            always,
            rng: Pcg64Mcg::seed_from_u64(seed),
            now: 0,
            order: 0,
            queue: BinaryHeap::new(),
            state,
            nodes,
            servers,
            healed_at: None,
            dead_after_heal: Vec::new(),
            lost_for_good: false,
            cluster_recovered_at: None,
            recovered_at: None,
            link_clock: HashMap::new(),
            cuts: HashMap::new(),
            events: 0,
            fault_counts: BTreeMap::new(),
            timer_generation: 0,
            trace: VecDeque::new(),
            steps: 0,
            failure: None,
        };
        // Every process starts at time 0, in actor order, as the checker's initial state is
        // built; but a producer's first requests are held until a seeded time in the first half
        // of the fault phase, so that writes meet the faults.
        let producers: Vec<usize> = world.model.producer_indices().collect();
        let fault_micros = options.fault_s * MICROS_PER_S;
        for i in 0..actors {
            let mut out = Out::new();
            world.nodes[i].transport = Some(world.new_transport(i));
            world.nodes[i].starts = 1;
            let actor = world.model.node(i);
            let s = actor.on_start(Id::from(i), &None, &mut out);
            world.state.actor_states.push(Arc::new(Hashed::new(s)));
            if producers.contains(&i) {
                let at = world.random(0..fault_micros / 2 + 1);
                world.nodes[i].held = Some(out);
                world.schedule(at, Event::ClientStart { node: i });
            } else {
                world.run_commands(i, out);
            }
        }
        ghost::observe(&world.model, None, None, &mut world.state);
        world.plan_faults();
        world
    }

    fn new_transport(&self, index: usize) -> Transport {
        let incarnation = (self.nodes[index].starts + 1) << 32;
        Transport::new(TransportConfig {
            nodes: self.servers.iter().map(|s| address(*s)).collect(),
            ..TransportConfig::client(NonZeroU64::new(incarnation).expect("nonzero"))
        })
    }

    fn random(&mut self, range: Range<u64>) -> u64 {
        if range.end <= range.start {
            return range.start;
        }
        range.start + self.rng.next_u64() % (range.end - range.start)
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && unit < p
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.order += 1;
        self.queue.push(Reverse(Queued {
            at,
            order: self.order,
            event,
        }));
    }

    fn count_fault(&mut self, kind: &'static str) {
        *self.fault_counts.entry(kind).or_default() += 1;
    }

    /// Draws the fault phase's crashes and partitions, and schedules the heal.
    fn plan_faults(&mut self) {
        let fault_micros = self.options.fault_s * MICROS_PER_S;
        let faults = self.options.faults.clone();
        let minutes = self.options.fault_s as f64 / 60.0;
        let options = self.options;
        let knobs = &options.knobs;
        let crashable: Vec<usize> = if knobs.controller_crashes > 0 {
            self.servers.clone()
        } else {
            self.model.broker_indices().collect()
        }
        .into_iter()
        .chain(
            self.model
                .consumer_indices()
                .filter(|_| knobs.consumer_crashes > 0),
        )
        .collect();
        for _ in 0..self.draw_count(faults.crashes_per_min * minutes) {
            let at = self.random(0..fault_micros.max(1));
            let node = crashable[self.random(0..crashable.len() as u64) as usize];
            let power_loss =
                self.model.broker_indices().contains(&node) && self.chance(faults.power_loss);
            self.schedule(at, Event::Crash { node, power_loss });
        }
        for id in 0..self.draw_count(faults.partitions_per_min * minutes) {
            let at = self.random(0..fault_micros.max(1));
            let cut = self.draw_cut();
            self.schedule(at, Event::PartitionStart { id, cut });
            let lasts = self.random(MICROS_PER_S..8 * MICROS_PER_S);
            self.schedule((at + lasts).min(fault_micros), Event::PartitionEnd { id });
        }
        self.schedule(fault_micros, Event::Heal);
    }

    /// Once the healed cluster has recovered (L1–L3, for 5 s without a break), kills `brokers_dead_after_heal` brokers
    /// drawn by the seed, for good: each one whose loss leaves every partition it is in sync for
    /// another live member of its ISR (as the controller has it), so that a clean election is
    /// possible. (Losing the last in-sync replica takes its partition offline for good, as in
    /// Kafka without unclean election: a loss the cluster cannot survive, not one it should.)
    fn lose_brokers_for_good(&mut self) {
        self.lost_for_good = true;
        for _ in 0..self.options.faults.brokers_dead_after_heal {
            let candidates: Vec<usize> = self
                .model
                .broker_indices()
                .filter(|b| !self.dead_after_heal.contains(b) && self.losable(*b))
                .collect();
            if candidates.is_empty() {
                self.count_fault("dead-after-heal-skipped");
                continue;
            }
            let i = self.random(0..candidates.len() as u64) as usize;
            let node = candidates[i];
            self.dead_after_heal.push(node);
            self.note(format!("{} dies for good", self.model.actor_name(node)));
            self.kill(node, false);
        }
    }

    /// Whether broker `b` can die for good now and leave every partition whose ISR holds it
    /// another live, not yet doomed, member of that ISR.
    fn losable(&self, b: usize) -> bool {
        let Some(c) = controller(&self.state) else {
            return false;
        };
        let live = |m: &BrokerId| {
            let i = *m as usize;
            i != b && !self.state.crashed[i] && !self.dead_after_heal.contains(&i)
        };
        c.partitions
            .values()
            .filter(|p| p.isr.contains(&(b as BrokerId)))
            .all(|p| p.isr.iter().any(live))
    }

    /// Whether `node` died for good after the heal.
    fn dead_for_good(&self, node: usize) -> bool {
        self.dead_after_heal.contains(&node)
    }

    /// A count whose mean is `mean`: its whole part, plus one with the fraction's chance.
    fn draw_count(&mut self, mean: f64) -> u64 {
        let whole = mean.floor();
        whole as u64 + u64::from(self.chance(mean - whole))
    }

    /// The pairs a partition cuts: one server from every other, two servers from each other, or
    /// the servers split into two sides.
    fn draw_cut(&mut self) -> Vec<(usize, usize)> {
        let servers = self.servers.clone();
        let n = servers.len() as u64;
        let mut pairs = Vec::new();
        match self.random(0..3) {
            0 => {
                let alone = servers[self.random(0..n) as usize];
                for s in &servers {
                    if *s != alone {
                        pairs.push((alone, *s));
                    }
                }
            }
            1 => {
                let a = servers[self.random(0..n) as usize];
                let b = servers[self.random(0..n) as usize];
                if a != b {
                    pairs.push((a, b));
                }
            }
            _ => {
                let side: Vec<bool> = servers.iter().map(|_| self.chance(0.5)).collect();
                for (i, a) in servers.iter().enumerate() {
                    for (j, b) in servers.iter().enumerate() {
                        if i < j && side[i] != side[j] {
                            pairs.push((*a, *b));
                        }
                    }
                }
            }
        }
        pairs
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.cuts
            .values()
            .any(|pairs| pairs.iter().any(|p| *p == (a, b) || *p == (b, a)))
    }

    /// Sends a datagram through the simulated network.
    fn transmit(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let faulty = self.healed_at.is_none();
        if faulty && self.cut(from, to) {
            self.count_fault("partition-drop");
            return;
        }
        if faulty && self.chance(self.options.faults.loss) {
            self.count_fault("loss");
            return;
        }
        let copies = if faulty && self.chance(self.options.faults.duplicate) {
            self.count_fault("duplicate");
            2
        } else {
            1
        };
        let mut bytes = Some(bytes);
        for copy in 0..copies {
            let mut delay = self.random(LATENCY_MICROS);
            if faulty && self.options.faults.delay_ms_max > 0 {
                delay += self.random(0..self.options.faults.delay_ms_max * 1000 + 1);
            }
            let bytes = if copy + 1 == copies {
                bytes.take().unwrap_or_default()
            } else {
                bytes.clone().unwrap_or_default()
            };
            let mut at = self.now + delay;
            if !faulty {
                // Healed, a link is FIFO as loopback is: a datagram never overtakes the one
                // sent before it, which the transport would count as lost.
                let last = self.link_clock.entry((from, to)).or_default();
                at = at.max(*last);
                *last = at;
            }
            self.schedule(at, Event::Datagram { from, to, bytes });
        }
    }

    /// Runs the world until the cluster recovers after healing, a property fails, or the heal
    /// phase ends.
    fn run(&mut self) -> Verdict {
        let end = (self.options.fault_s + self.options.heal_s) * MICROS_PER_S;
        while let Some(Reverse(q)) = self.queue.pop() {
            // Recovery must begin within the heal phase; once begun, it is watched for as long
            // as it must last, past the phase's end if need be.
            let watching = self
                .recovered_at
                .is_some_and(|at| q.at <= at + RECOVERY_HELD_MICROS);
            if q.at > end && !watching {
                break;
            }
            self.now = q.at;
            self.events += 1;
            self.handle(q.event);
            if let Some(failure) = self.failure.take() {
                return failure;
            }
        }
        self.now = self.now.max(end);
        Verdict::Liveness {
            conditions: self.unrecovered(),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Datagram { from, to, bytes } => self.on_datagram(from, to, &bytes),
            Event::Timer {
                node,
                timer,
                generation,
            } => {
                let live = !self.state.crashed[node]
                    && self.nodes[node].timers.get(&timer) == Some(&generation);
                if live {
                    self.nodes[node].timers.remove(&timer);
                    self.step_actor(node, ActorModelAction::Timeout(Id::from(node), timer));
                }
            }
            Event::ClientStart { node } => {
                if let Some(out) = self.nodes[node].held.take() {
                    self.note(format!("{} starts writing", self.model.actor_name(node)));
                    self.run_commands(node, out);
                }
            }
            Event::Crash { node, power_loss } => self.crash(node, power_loss),
            Event::Restart { node } => self.restart(node),
            Event::PartitionStart { id, cut } => {
                if self.healed_at.is_none() {
                    self.count_fault("partition");
                    let heading = format!("the network partitions {}", self.describe_cut(&cut));
                    self.cuts.insert(id, cut);
                    self.note(heading);
                }
            }
            Event::PartitionEnd { id } => {
                if self.cuts.remove(&id).is_some() {
                    self.note("a partition heals".to_string());
                }
            }
            Event::Heal => {
                self.healed_at = Some(self.now);
                self.cuts.clear();
                self.note("the world heals: no more loss, duplication, delay or partitions; dead processes restart".into());
                for node in 0..self.nodes.len() {
                    if self.state.crashed[node] && !self.dead_for_good(node) {
                        self.restart(node);
                    }
                }
                self.schedule(self.now + LIVENESS_CHECK_MICROS, Event::CheckLiveness);
            }
            Event::CheckLiveness => {
                let cluster_recovered = self.cluster_unrecovered().is_empty();
                let recovered = cluster_recovered && self.clients_unrecovered().is_empty();
                let to_lose =
                    self.options.faults.brokers_dead_after_heal > 0 && !self.lost_for_good;
                self.cluster_recovered_at = match (cluster_recovered, self.cluster_recovered_at) {
                    (false, _) => None,
                    (true, at) => at.or(Some(self.now)),
                };
                // Recovered for longer than a session timeout: no broker fenced for a heartbeat
                // lost during the faults is still to come, to shrink an ISR to the one killed.
                let steady = self
                    .cluster_recovered_at
                    .is_some_and(|at| self.now - at >= STEADY_BEFORE_LOSS_MICROS);
                if to_lose && steady {
                    self.lose_brokers_for_good();
                    self.recovered_at = None;
                    self.schedule(self.now + LIVENESS_CHECK_MICROS, Event::CheckLiveness);
                } else if recovered {
                    // Recovered, and it must stay so for longer than a request timeout: a
                    // member that rejoins on every timeout, say, recovers only for a while.
                    let since = *self.recovered_at.get_or_insert(self.now);
                    if self.now - since >= RECOVERY_HELD_MICROS {
                        let healed_at = self.healed_at.unwrap_or(since);
                        self.failure = Some(Verdict::Recovered {
                            recovery_s: (since - healed_at) as f64 / MICROS_PER_S as f64,
                        });
                    } else {
                        self.schedule(self.now + LIVENESS_CHECK_MICROS, Event::CheckLiveness);
                    }
                } else {
                    self.recovered_at = None;
                    self.schedule(self.now + LIVENESS_CHECK_MICROS, Event::CheckLiveness);
                }
            }
        }
    }

    fn describe_cut(&self, cut: &[(usize, usize)]) -> String {
        let names: Vec<String> = cut
            .iter()
            .map(|(a, b)| {
                format!(
                    "{} | {}",
                    self.model.actor_name(*a),
                    self.model.actor_name(*b)
                )
            })
            .collect();
        names.join(", ")
    }

    fn on_datagram(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if self.state.crashed[to] {
            return; // A datagram to a dead process is lost.
        }
        let local = self.nodes[to].address;
        let remote = self.nodes[from].address;
        let mut replies = Vec::new();
        let Some(transport) = self.nodes[to].transport.as_mut() else {
            return;
        };
        let msg = match transport.receive(local, remote, bytes, &mut replies) {
            Received::Deliver { payload, .. } => codec::decode::<Msg>(&payload).ok(),
            Received::Dropped(_) | Received::Nothing => None,
        };
        for d in replies {
            self.transmit(to, index_of(d.to), d.bytes);
        }
        if let Some(msg) = msg {
            self.step_actor(
                to,
                ActorModelAction::Deliver {
                    src: Id::from(from),
                    dst: Id::from(to),
                    msg,
                },
            );
        }
    }

    /// One handler step of actor `index`, then the ghost, the trace and every Always property.
    fn step_actor(&mut self, index: usize, action: Action) {
        // The step touches only this actor's state and storage: keep those two, and rebuild
        // the state before the step only if the handler changed something.
        let before = self.state.actor_states[index].clone();
        let stored_before = self.state.actor_storages[index].clone();
        // A client's step may hand records to its application, which the ghost keeps.
        let history_before = self
            .model
            .is_client(index)
            .then(|| self.state.history.clone());
        let actor = self.model.node(index);
        let id = Id::from(index);
        let mut cow = Cow::Borrowed(&**before);
        let mut out = Out::new();
        match &action {
            ActorModelAction::Deliver { src, msg, .. } => {
                actor.on_msg(id, &mut cow, *src, msg.clone(), &mut out)
            }
            ActorModelAction::Timeout(_, timer) => actor.on_timeout(id, &mut cow, timer, &mut out),
            _ => unreachable!("only deliveries and timers run handlers"),
        }
        let changed = matches!(cow, Cow::Owned(_));
        if let Cow::Owned(next) = cow {
            self.state.actor_states[index] = Arc::new(Hashed::new(next));
        }
        self.run_commands(index, out);
        if changed {
            let mut last = self.state.clone();
            last.actor_states[index] = before;
            last.actor_storages[index] = stored_before;
            if let Some(history) = history_before {
                last.history = history;
            }
            self.after_step(&last, &action);
        } else if self.options.trace_steps > 0 && matches!(action, ActorModelAction::Deliver { .. })
        {
            // Nothing changed, so no property can have; the trace shows the message all the
            // same (an idle timer is left out).
            self.steps += 1;
            self.record_trace(trace::format_action(&self.model, &action), Vec::new());
        }
    }

    /// The ghost, the trace and the safety check of the step from `last` by `action`.
    fn after_step(&mut self, last: &State, action: &Action) {
        ghost::observe(&self.model, Some(last), Some(action), &mut self.state);
        self.steps += 1;
        if self.options.trace_steps > 0 {
            let heading = trace::format_action(&self.model, action);
            self.record_trace(heading, trace::effects(&self.model, last, &self.state));
        }
        if self.failure.is_some() {
            return;
        }
        for p in &self.always {
            if !(p.condition)(&self.model, &self.state) {
                self.failure = Some(Verdict::Safety {
                    property: p.name,
                    at_s: self.now as f64 / MICROS_PER_S as f64,
                });
                return;
            }
        }
    }

    fn record_trace(&mut self, heading: String, effects: Vec<String>) {
        self.trace.push_back(TraceStep {
            step: self.steps,
            heading: format!("[{:.3} s] {heading}", self.now as f64 / MICROS_PER_S as f64),
            effects,
            state: trace::state_table(&self.model, &self.state),
        });
        while self.trace.len() > self.options.trace_steps {
            self.trace.pop_front();
        }
    }

    /// A world event in the trace (a partition, the heal).
    fn note(&mut self, heading: String) {
        if self.options.trace_steps > 0 {
            self.steps += 1;
            self.record_trace(heading, Vec::new());
        }
    }

    fn run_commands(&mut self, index: usize, out: Out<Node>) {
        for command in out {
            match command {
                // The application's (a client's acknowledgements and records): the ghost keeps
                // them, as in the checker.
                Command::Send(to, msg) if to == application() => {
                    self.state.history.record_delivery(index, &msg)
                }
                Command::Send(to, msg) => self.send(index, usize::from(to), &msg),
                Command::SetTimer(timer, range) => {
                    self.timer_generation += 1;
                    let generation = self.timer_generation;
                    self.nodes[index].timers.insert(timer.clone(), generation);
                    let span = range.end.saturating_sub(range.start);
                    let jitter = self.random(0..span.as_micros() as u64 + 1);
                    let at = self.now + range.start.as_micros() as u64 + jitter;
                    self.schedule(
                        at,
                        Event::Timer {
                            node: index,
                            timer,
                            generation,
                        },
                    );
                }
                Command::CancelTimer(timer) => {
                    self.nodes[index].timers.remove(&timer);
                }
                Command::Save(storage) => self.persist(index, storage),
                Command::ChooseRandom(..) => {}
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: &Msg) {
        let mut payload = Vec::new();
        if codec::encode(msg, &mut payload).is_err() {
            return;
        }
        let local = self.nodes[from].address;
        let remote = self.nodes[to].address;
        let mut datagrams = Vec::new();
        let Some(transport) = self.nodes[from].transport.as_mut() else {
            return;
        };
        if transport
            .send(local, remote, &payload, &mut datagrams)
            .is_err()
        {
            return;
        }
        for d in datagrams {
            self.transmit(from, index_of(d.to), d.bytes);
        }
    }

    /// What the runtime's store would hold after this save: a broker's high watermarks alone
    /// are written at most once a second, everything else at once.
    fn persist(&mut self, index: usize, storage: Storage) {
        let node = &mut self.nodes[index];
        let kept = match (&node.durable, &storage) {
            (Some(Storage::Broker(old)), Storage::Broker(new)) => {
                let structural = old.broker_epoch != new.broker_epoch
                    || old.controller_epoch != new.controller_epoch
                    || old.replicas.len() != new.replicas.len()
                    || old
                        .replicas
                        .iter()
                        .zip(new.replicas.iter())
                        .any(|((a, x), (b, y))| a != b || x.partition != y.partition);
                let due = self.now >= node.hwm_written_at + HWM_CHECKPOINT_MICROS;
                if structural || due {
                    node.hwm_written_at = self.now;
                    storage
                } else {
                    let mut deferred: BrokerStorage = (**new).clone();
                    let tps: Vec<TopicPartition> = deferred.replicas.keys().cloned().collect();
                    for tp in tps {
                        if let (Some(r), Some(o)) =
                            (deferred.replicas.get_mut(&tp), old.replicas.get(&tp))
                        {
                            r.high_watermark = o.high_watermark;
                        }
                    }
                    Storage::Broker(Arc::new(deferred))
                }
            }
            (_, Storage::Broker(_)) => {
                node.hwm_written_at = self.now;
                storage
            }
            _ => storage,
        };
        self.state.actor_storages[index] = Some(Hashed::new(kept.clone()));
        node.durable = Some(kept);
    }

    fn crash(&mut self, node: usize, power_loss: bool) {
        if self.healed_at.is_some() || self.state.crashed[node] {
            return;
        }
        self.kill(node, power_loss);
        let downtime = self.random(MICROS_PER_S / 2..8 * MICROS_PER_S);
        self.schedule(self.now + downtime, Event::Restart { node });
    }

    /// Kills `node` (its restart, if any, is the caller's to schedule).
    fn kill(&mut self, node: usize, power_loss: bool) {
        self.count_fault(if power_loss { "power-loss" } else { "crash" });
        let last = self.state.clone();
        self.state.crashed[node] = true;
        self.nodes[node].transport = None;
        self.nodes[node].timers.clear();
        let action = if power_loss {
            let keep = match &self.nodes[node].durable {
                Some(Storage::Broker(s)) => self.random(0..s.log_end_offset_max() + 1),
                _ => 0,
            };
            self.nodes[node].power_loss = Some(keep);
            ActorModelAction::SelectRandom {
                actor: Id::from(node),
                key: crate::model::POWER_LOSS.to_string(),
                random: PowerLoss::keeping(keep),
            }
        } else {
            ActorModelAction::Crash(Id::from(node))
        };
        self.after_step(&last, &action);
    }

    fn restart(&mut self, node: usize) {
        if !self.state.crashed[node] || self.dead_for_good(node) {
            return;
        }
        let last = self.state.clone();
        if let (Some(keep), Some(Storage::Broker(s))) = (
            self.nodes[node].power_loss.take(),
            &self.nodes[node].durable,
        ) {
            let cut = Storage::Broker(Arc::new(s.after_power_loss(PowerLoss::keeping(keep))));
            self.nodes[node].durable = Some(cut);
        }
        self.nodes[node].starts += 1;
        self.nodes[node].transport = Some(self.new_transport(node));
        self.state.crashed[node] = false;
        let storage = self.nodes[node].durable.clone();
        self.state.actor_storages[node] = storage.clone().map(Hashed::new);
        let mut out = Out::new();
        let s = self
            .model
            .node(node)
            .on_start(Id::from(node), &storage, &mut out);
        self.state.actor_states[node] = Arc::new(Hashed::new(s));
        self.run_commands(node, out);
        self.after_step(&last, &ActorModelAction::Recover(Id::from(node)));
    }

    /// The recovery conditions (L1–L7) that do not hold yet.
    fn unrecovered(&self) -> Vec<String> {
        let mut failing = self.cluster_unrecovered();
        failing.extend(self.clients_unrecovered());
        failing
    }

    /// The cluster's recovery conditions (L1–L3) that do not hold yet.
    fn cluster_unrecovered(&self) -> Vec<String> {
        let mut failing = Vec::new();
        if controller(&self.state).is_none() {
            return vec!["no controller".into()];
        }
        let dead_for_good = &|i| self.dead_for_good(i);
        let offline: Vec<_> = recovery::offline(&self.state)
            .map(|p| format!("{:?}", p.topic_partition))
            .collect();
        if !offline.is_empty() {
            failing.push(format!(
                "L1 every partition has a leader: {} offline",
                offline.join(", ")
            ));
        }
        let short: Vec<_> =
            recovery::short_isr(&self.state, &|_, b| self.dead_for_good(b as usize))
                .map(|p| format!("{:?} ISR {:?}", p.topic_partition, p.isr))
                .collect();
        if !short.is_empty() {
            failing.push(format!(
                "L2 every replica is back in its ISR: {}",
                short.join(", ")
            ));
        }
        let stale: Vec<_> = recovery::stale_metadata(&self.model, &self.state, dead_for_good)
            .map(|s| {
                let knows = match s.held {
                    Some(h) => format!(
                        "leader epoch {}, partition epoch {}",
                        h.leader_epoch, h.partition_epoch
                    ),
                    None => "knows nothing of it".into(),
                };
                let role = if s.recovering { ", recovering" } else { "" };
                format!(
                    "{} on {:?} ({knows}{role}; the controller's: leader epoch {}, partition epoch {})",
                    self.model.actor_name(s.broker),
                    s.controllers.topic_partition,
                    s.controllers.leader_epoch,
                    s.controllers.partition_epoch
                )
            })
            .collect();
        if !stale.is_empty() {
            failing.push(format!(
                "L3 every broker's metadata equals the controller's: {}",
                stale.join(", ")
            ));
        }
        failing
    }

    /// The clients' recovery conditions (L4–L7) that do not hold yet.
    fn clients_unrecovered(&self) -> Vec<String> {
        let mut failing = Vec::new();
        let unread = recovery::unread(&self.model, &self.state).count();
        if unread > 0 {
            failing.push(format!(
                "L4 every acknowledged record is read by a consumer: {unread} not yet"
            ));
        }
        let busy: Vec<_> = recovery::busy_producers(&self.model, &self.state)
            .map(|p| self.model.actor_name(p))
            .collect();
        if !busy.is_empty() {
            failing.push(format!(
                "L5 every producer is done: {} still sending",
                busy.join(", ")
            ));
        }
        let uncommitted: Vec<_> = recovery::uncommitted_members(&self.model, &self.state)
            .filter_map(|ci| {
                let s = self.state.actor_states[ci].as_consumer()?;
                let m = s.member.as_ref()?;
                Some(format!(
                    "{} ({:?}, position {}, committed {})",
                    self.model.actor_name(ci),
                    m.step,
                    s.position,
                    m.committed
                ))
            })
            .collect();
        if !uncommitted.is_empty() {
            failing.push(format!(
                "L6 every group member reads with its position committed: {}",
                uncommitted.join(", ")
            ));
        }
        let astray: Vec<_> = recovery::astray_consumers(&self.model, &self.state)
            .filter_map(|ci| {
                let s = self.state.actor_states[ci].as_consumer()?;
                let c = controller(&self.state)?;
                let p = c
                    .partitions
                    .get(recovery::consumer_partition(&self.model, ci)?)?;
                Some(format!(
                    "{} (knows {:?}, the controller's: {:?})",
                    self.model.actor_name(ci),
                    s.leader,
                    p.leader.map(|l| (l, p.leader_epoch))
                ))
            })
            .collect();
        if !astray.is_empty() {
            failing.push(format!(
                "L7 every consumer knows its partition's leader and leader epoch: {}",
                astray.join(", ")
            ));
        }
        failing
    }
}
