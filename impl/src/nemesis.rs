//! `watermark nemesis`: a local cluster under seeded faults, and its history checked (issue 11).
//!
//! Jepsen's shape, for this project's cluster. [`run`] starts a controller and three brokers
//! ([`LocalCluster`]), creates a topic of [`PARTITIONS`] partitions with replication factor 3
//! and `min.insync.replicas=2`, and starts several producers that write unique values. Until the
//! duration is up it injects one fault at a time: it waits a little, injects, holds, heals, and
//! waits until the cluster is healthy again (every broker live, every ISR full), timing that
//! recovery. Then it heals everything, keeps writing for [`WRITE_AFTER_HEAL`], stops the
//! producers, waits until every replica holds the leader's log up to its high watermark, reads
//! each partition through a consumer and, after a clean stop, from every replica's segment
//! files, and runs the [`history`](crate::history) checks over what the producers saw.
//!
//! The faults ([`FaultKind`]), and how each is made:
//!
//! - `kill`: kill -9 of the leader or a follower of a partition, a restart after 0.5–4 s;
//! - `pause`: SIGSTOP of a partition's leader for longer than the session timeout (a zombie
//!   leader: the controller fences it and elects another), then SIGCONT;
//! - `controller-kill`: kill -9 of the controller, a restart after 0.5–4 s;
//! - `partition`: a broker cut off from every other node, from the controller only, or from the
//!   other brokers only, for longer than the session timeout. Clients still reach it (as when a
//!   broker loses its cluster link but not its client-facing one), which is what lets `acks=1`
//!   lose records;
//! - `loss`, `duplicate`, `reorder`: a share of every datagram dropped, sent twice, or held back
//!   by up to 200 ms, for 3–8 s;
//! - `torn-tail`: kill -9 of a broker, then its newest segment file of one partition is cut in
//!   the middle of its last frame or has one bit of that frame flipped; then a restart;
//! - `power-loss`: kill -9 of a broker, then each of its segment files loses what the kernel may
//!   not have written back yet: under `--fsync never` a random part of what was written in the
//!   last [`WRITEBACK`] (Linux's `dirty_expire_centisecs`), under `--fsync always` nothing, since
//!   every write was fsynced before the process acted on it. `meta.log` and the incarnation
//!   file are left whole: the model's unclean shutdown cuts logs, not a broker's metadata.
//!
//! Network faults go through the nodes' fault layer ([`faults`](crate::faults)): the nemesis
//! writes the rules file every node and every producer of the run watches. Nothing here needs
//! root, and the host's own network and firewall rules are never touched.
//!
//! One PCG generator seeded by `--seed` draws the whole schedule: each fault's kind, wait, hold,
//! shape, probabilities, target (as a role: the leader or a follower of a partition) and the seed
//! of its datagram rules. Which broker holds that role, and everything the cluster does in
//! between, depends on timing.

use crate::client::{self, ConsumeOptions};
use crate::cluster::{Role, TimingMs, BATCH_BYTES_MAX};
use crate::faults::FaultsFile;
use crate::history::{self, Acked, Anomalies, History, PartitionEnd};
use crate::host::{bind, Host};
use crate::incarnation;
use crate::local::{LocalCluster, LocalOptions};
use crate::segment::{intact_frames, segment_base_offset, write_atomically, SegmentLog};
use crate::store::{partition_dir_name, FsyncPolicy, NoStore};
use crate::trace::TraceWriter;
use crate::transport::TransportConfig;
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde_json::json;
use stateright::actor::Id;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watermark_model::*;

/// The topic every run writes.
pub const TOPIC: &str = "nemesis";
pub const PARTITIONS: u32 = 3;
pub const REPLICATION_FACTOR: u32 = 3;
pub const MIN_INSYNC_REPLICAS: u32 = 2;
const BROKERS: u32 = 3;
/// The rules file in the run's directory that every node and producer watches.
pub const FAULTS_FILE_NAME: &str = "faults.json";
/// How long the producers keep writing once everything is healed, before the checks.
pub const WRITE_AFTER_HEAL: Duration = Duration::from_secs(5);
/// How far back the kernel may still hold written data that is not on the device (Linux's
/// `vm.dirty_expire_centisecs` is 3000).
pub const WRITEBACK: Duration = Duration::from_secs(30);
/// How long the cluster may take to come up and create the topic.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest duration accepted: a week.
pub const DURATION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Records per produce request, and requests per producer round (one producer id per round).
const BATCH_RECORDS: u32 = 25;
const ROUND_BATCHES: u32 = 12;
/// A round's `delivery.timeout.ms`: records not acknowledged by then stay unknown.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a health probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How often segment file sizes are sampled for `power-loss`.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Lines of a node's log quoted when it exits on its own.
const LOG_TAIL_LINES: usize = 5;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Kill,
    Pause,
    ControllerKill,
    Partition,
    Loss,
    Duplicate,
    Reorder,
    TornTail,
    PowerLoss,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::ControllerKill,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::TornTail,
        FaultKind::PowerLoss,
    ];

    /// As the CLI and the JSON name it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::ControllerKill => "controller-kill",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::TornTail => "torn-tail",
            FaultKind::PowerLoss => "power-loss",
        }
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault '{s}': expected {}", names.join(", "))
            })
    }
}

/// A comma-separated list of fault kinds, each once.
pub fn parse_fault_kinds(s: &str) -> Result<Vec<FaultKind>, String> {
    let mut kinds = Vec::new();
    for name in s.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!("empty fault name in '{s}'"));
        }
        let kind: FaultKind = name.parse()?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct NemesisOptions {
    /// The `watermark` executable the nodes run.
    pub exe: PathBuf,
    /// The cluster's directory; must not hold a cluster.
    pub dir: PathBuf,
    /// How long faults are injected; healing, writing on and the checks come after.
    pub duration: Duration,
    pub seed: u64,
    pub acks: Acks,
    pub idempotent: bool,
    pub faults: Vec<FaultKind>,
    pub fsync: FsyncPolicy,
    pub producers: u32,
    /// Records per second, all producers together.
    pub records_per_s: u32,
    /// How long the cluster may take to be healthy again after a heal.
    pub recovery_timeout: Duration,
    /// Where every node and every producer records its steps (see [`trace`](crate::trace)), for
    /// `watermark validate`.
    pub trace: Option<PathBuf>,
    /// KIP-966's eligible leader replicas on the cluster (spec R52–R54).
    pub eligible_leader_replicas: bool,
    /// Controllers: 1, or a KRaft quorum of 3 or 5 (spec section 4b). With a quorum,
    /// `controller-kill` kills the active controller.
    pub controllers: u32,
}

impl NemesisOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.duration.is_zero() || self.duration > DURATION_MAX {
            return Err(format!(
                "--duration must be between 1 and {} seconds",
                DURATION_MAX.as_secs()
            ));
        }
        if self.faults.is_empty() {
            return Err("--faults names no fault".into());
        }
        if ![1, 3, 5].contains(&self.controllers) {
            return Err("--controllers must be 1, 3 or 5".into());
        }
        if self.controllers > 1 && self.trace.is_some() {
            return Err(
                "--validate replays runs of a single controller only (spec section 4b): \
                 leave it out with --controllers"
                    .into(),
            );
        }
        if !(1..=64).contains(&self.producers) {
            return Err("--producers must be between 1 and 64".into());
        }
        if !(1..=100_000).contains(&self.records_per_s) {
            return Err("--rate must be between 1 and 100000 records per second".into());
        }
        if self.recovery_timeout < Duration::from_secs(5) || self.recovery_timeout > DURATION_MAX {
            return Err("--recovery-timeout must be at least 5 seconds".into());
        }
        Ok(())
    }
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// Seconds since the producers started.
    pub injected_at_s: f64,
    pub what: String,
    /// When healing began (a restart, SIGCONT, or the rules file removed).
    pub healed_at_s: f64,
    /// From when healing began to the first healthy probe; `None`: not healthy within the
    /// bound.
    pub recovery_s: Option<f64>,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct NemesisReport {
    pub seed: u64,
    pub duration_s: u64,
    pub elapsed_s: f64,
    pub acks: Acks,
    pub idempotent: bool,
    pub fsync: FsyncPolicy,
    pub enabled: Vec<FaultKind>,
    /// Values handed to producers.
    pub attempted: u64,
    /// Acknowledgements received after the final heal.
    pub acked_after_heal: u64,
    pub anomalies: Anomalies,
    pub faults: Vec<FaultRecord>,
    /// Nodes that exited without being killed, described.
    pub node_exits: Vec<String>,
    /// Every broker live, every ISR full, every replica at the leader's high watermark, and (with
    /// acks) records acknowledged after the final heal: all within the recovery bound.
    pub healthy_at_end: bool,
    /// The longest recovery measured, the final one included.
    pub recovery_s_max: f64,
    /// The fault layer's counters summed over the nodes' last incarnations.
    pub fault_layer: BTreeMap<String, u64>,
}

impl NemesisReport {
    pub fn unhealed(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| f.recovery_s.is_none())
            .count()
    }

    /// No safety anomaly, no node exit, every fault healed, healthy at the end.
    pub fn passed(&self) -> bool {
        self.anomalies.safe(self.idempotent)
            && self.node_exits.is_empty()
            && self.unhealed() == 0
            && self.healthy_at_end
    }

    /// Injected faults by kind; every enabled kind is listed.
    pub fn fault_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> =
            self.enabled.iter().map(|k| (k.name(), 0)).collect();
        for f in &self.faults {
            *counts.entry(f.kind.name()).or_default() += 1;
        }
        counts
    }

    pub fn json(&self) -> serde_json::Value {
        let a = &self.anomalies;
        json!({
            "acked": a.acked,
            "lost": a.lost,
            "duplicates": a.duplicates,
            "offsets_reused": a.offsets_reused,
            "divergent_replicas": a.divergent_replicas,
            "faults": self.fault_counts(),
            "healthy_at_end": self.healthy_at_end,
            "recovery_s_max": round3(self.recovery_s_max),
            "gaps": a.gaps,
            "unexpected_values": a.unexpected_values,
            "node_exits": self.node_exits.len(),
            "unhealed_faults": self.unhealed(),
            "passed": self.passed(),
            "seed": self.seed,
            "duration_s": self.duration_s,
            "elapsed_s": round3(self.elapsed_s),
            "acks": self.acks.as_str(),
            "idempotent": self.idempotent,
            "fsync": fsync_name(self.fsync),
            "attempted": self.attempted,
            "acked_after_heal": self.acked_after_heal,
            "fault_layer": self.fault_layer,
            "fault_log": self.faults.iter().map(|f| json!({
                "at_s": round3(f.injected_at_s),
                "kind": f.kind.name(),
                "what": f.what,
                "healed_at_s": round3(f.healed_at_s),
                "recovery_s": f.recovery_s.map(round3),
            })).collect::<Vec<_>>(),
            "examples": a.examples,
            "node_exit_log": self.node_exits,
        })
    }

    pub fn text(&self) -> String {
        let a = &self.anomalies;
        let counts: Vec<String> = self
            .fault_counts()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut out = format!(
            "nemesis: seed {}, {} s of faults ({:.1} s in all), acks={}{}, fsync {}\n",
            self.seed,
            self.duration_s,
            self.elapsed_s,
            self.acks.as_str(),
            if self.idempotent { ", idempotent" } else { "" },
            fsync_name(self.fsync),
        );
        out += &format!("faults: {}\n", counts.join(", "));
        out += &format!(
            "records: {} attempted, {} acknowledged ({} after the final heal)\n",
            self.attempted, a.acked, self.acked_after_heal
        );
        for (name, n, bad) in [
            ("lost", a.lost, a.lost > 0),
            ("offsets_reused", a.offsets_reused, a.offsets_reused > 0),
            (
                "duplicates",
                a.duplicates,
                self.idempotent && a.duplicates > 0,
            ),
            ("gaps", a.gaps, a.gaps > 0),
            (
                "divergent_replicas",
                a.divergent_replicas,
                a.divergent_replicas > 0,
            ),
            (
                "unexpected_values",
                a.unexpected_values,
                a.unexpected_values > 0,
            ),
            (
                "node_exits",
                self.node_exits.len() as u64,
                !self.node_exits.is_empty(),
            ),
            (
                "unhealed_faults",
                self.unhealed() as u64,
                self.unhealed() > 0,
            ),
        ] {
            out += &format!("{name:<20} {n}{}\n", if bad { "  <- anomaly" } else { "" });
        }
        if !self.idempotent && a.duplicates > 0 {
            out += "(duplicates are allowed without --idempotent: a retried batch may be written twice)\n";
        }
        out += &format!(
            "{:<20} {}\n{:<20} {:.1} s\n",
            "healthy_at_end", self.healthy_at_end, "recovery_s_max", self.recovery_s_max
        );
        for e in a.examples.iter().chain(&self.node_exits) {
            out += &format!("  {e}\n");
        }
        out += if self.passed() {
            "verdict: PASS\n"
        } else {
            "verdict: FAIL\n"
        };
        out
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn fsync_name(f: FsyncPolicy) -> &'static str {
    match f {
        FsyncPolicy::Never => "never",
        FsyncPolicy::Always => "always",
    }
}

// ---------------------------------------------------------------------------------------------
// The schedule.

/// A broker named by its role in one partition, resolved against the cluster's state when the
/// fault is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    LeaderOf(u32),
    /// The `n`th follower (in replica order, modulo their number).
    FollowerOf(u32, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    AllNodes,
    Controller,
    Brokers,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tear {
    /// Cut the file at this fraction of the last frame (strictly inside it).
    Cut(f64),
    /// Flip this bit of the byte at this fraction of the last frame.
    Flip(f64, u8),
}

#[derive(Clone, Debug, PartialEq)]
enum Plan {
    Kill {
        victim: Victim,
        down: Duration,
    },
    Pause {
        partition: u32,
        paused: Duration,
    },
    ControllerKill {
        down: Duration,
    },
    Partition {
        victim: Victim,
        isolation: Isolation,
        held: Duration,
    },
    Loss {
        drop: f64,
        held: Duration,
    },
    Duplicate {
        duplicate: f64,
        delay_ms_max: u64,
        held: Duration,
    },
    Reorder {
        delay_ms_max: u64,
        held: Duration,
    },
    TornTail {
        victim: Victim,
        partition: u32,
        tear: Tear,
        down: Duration,
    },
    PowerLoss {
        victim: Victim,
        cuts_seed: u64,
        down: Duration,
    },
}

impl Plan {
    fn kind(&self) -> FaultKind {
        match self {
            Plan::Kill { .. } => FaultKind::Kill,
            Plan::Pause { .. } => FaultKind::Pause,
            Plan::ControllerKill { .. } => FaultKind::ControllerKill,
            Plan::Partition { .. } => FaultKind::Partition,
            Plan::Loss { .. } => FaultKind::Loss,
            Plan::Duplicate { .. } => FaultKind::Duplicate,
            Plan::Reorder { .. } => FaultKind::Reorder,
            Plan::TornTail { .. } => FaultKind::TornTail,
            Plan::PowerLoss { .. } => FaultKind::PowerLoss,
        }
    }

    /// How long the fault lasts before it is healed.
    fn hold(&self) -> Duration {
        match self {
            Plan::Kill { down, .. }
            | Plan::ControllerKill { down }
            | Plan::TornTail { down, .. }
            | Plan::PowerLoss { down, .. } => *down,
            Plan::Pause { paused, .. } => *paused,
            Plan::Partition { held, .. }
            | Plan::Loss { held, .. }
            | Plan::Duplicate { held, .. }
            | Plan::Reorder { held, .. } => *held,
        }
    }
}

/// One fault to inject: after `wait`, with datagram rules seeded by `rules_seed`.
#[derive(Clone, Debug, PartialEq)]
struct Planned {
    wait: Duration,
    plan: Plan,
    rules_seed: u64,
}

/// The seeded schedule: an endless sequence of faults drawn from the enabled kinds.
struct Schedule {
    rng: Pcg64Mcg,
    kinds: Vec<FaultKind>,
    session_timeout: Duration,
}

impl Schedule {
    fn new(seed: u64, kinds: &[FaultKind], session_timeout: Duration) -> Schedule {
        Schedule {
            rng: Pcg64Mcg::seed_from_u64(seed),
            kinds: kinds.to_vec(),
            session_timeout,
        }
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo_s: f64, hi_s: f64) -> Duration {
        Duration::from_secs_f64(lo_s + (hi_s - lo_s) * self.unit())
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn partition(&mut self) -> u32 {
        self.below(u64::from(PARTITIONS)) as u32
    }

    /// The leader of a random partition with probability `leader_share`, else a follower.
    fn victim(&mut self, leader_share: f64) -> Victim {
        let partition = self.partition();
        if self.unit() < leader_share {
            Victim::LeaderOf(partition)
        } else {
            Victim::FollowerOf(partition, self.below(2) as usize)
        }
    }

    fn next(&mut self) -> Planned {
        let wait = self.between(1.0, 3.0);
        let index = self.below(self.kinds.len() as u64) as usize;
        let kind = self.kinds[index];
        let session_s = self.session_timeout.as_secs_f64();
        let plan = match kind {
            FaultKind::Kill => Plan::Kill {
                victim: self.victim(0.5),
                down: self.between(0.5, 4.0),
            },
            FaultKind::Pause => Plan::Pause {
                partition: self.partition(),
                paused: self.between(session_s + 0.5, session_s + 3.0),
            },
            FaultKind::ControllerKill => Plan::ControllerKill {
                down: self.between(0.5, 4.0),
            },
            FaultKind::Partition => Plan::Partition {
                victim: self.victim(2.0 / 3.0),
                isolation: match self.below(3) {
                    0 => Isolation::AllNodes,
                    1 => Isolation::Controller,
                    _ => Isolation::Brokers,
                },
                held: self.between(session_s + 1.0, session_s + 6.0),
            },
            FaultKind::Loss => Plan::Loss {
                drop: 0.05 + 0.35 * self.unit(),
                held: self.between(3.0, 8.0),
            },
            FaultKind::Duplicate => Plan::Duplicate {
                duplicate: 0.3 + 0.7 * self.unit(),
                delay_ms_max: if self.below(2) == 0 { 0 } else { 20 },
                held: self.between(3.0, 8.0),
            },
            FaultKind::Reorder => Plan::Reorder {
                delay_ms_max: 10 + self.below(191),
                held: self.between(3.0, 8.0),
            },
            FaultKind::TornTail => Plan::TornTail {
                victim: self.victim(0.5),
                partition: self.partition(),
                tear: if self.below(2) == 0 {
                    Tear::Cut(self.unit())
                } else {
                    Tear::Flip(self.unit(), self.below(8) as u8)
                },
                down: self.between(0.2, 2.0),
            },
            FaultKind::PowerLoss => Plan::PowerLoss {
                victim: self.victim(0.5),
                cuts_seed: self.rng.next_u64(),
                down: self.between(0.2, 2.0),
            },
        };
        Planned {
            wait,
            plan,
            rules_seed: self.rng.next_u64(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster as the nemesis sees it.

/// The controller's view of the topic, from DescribeTopics.
#[derive(Clone, Debug)]
struct View {
    brokers: Vec<(BrokerId, bool)>,
    partitions: Vec<PartitionState>,
}

impl View {
    /// Every broker live; every partition led, with every replica in its ISR.
    fn healthy(&self) -> bool {
        self.brokers.len() == BROKERS as usize
            && self.brokers.iter().all(|(_, live)| *live)
            && self.partitions.len() == PARTITIONS as usize
            && self
                .partitions
                .iter()
                .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len())
    }

    fn partition(&self, p: u32) -> Option<&PartitionState> {
        self.partitions
            .iter()
            .find(|s| s.topic_partition.partition == p)
    }

    fn resolve(&self, victim: Victim) -> Option<BrokerId> {
        let (p, n) = match victim {
            Victim::LeaderOf(p) => return self.partition(p)?.leader,
            Victim::FollowerOf(p, n) => (p, n),
        };
        let state = self.partition(p)?;
        let followers: Vec<BrokerId> = state
            .replicas
            .iter()
            .copied()
            .filter(|b| Some(*b) != state.leader)
            .collect();
        followers.get(n % followers.len().max(1)).copied()
    }

    /// "nemesis-0 leader 1 isr 1,3 | ... | fenced 2": what a fault did, seen from the
    /// controller.
    fn summary(&self) -> String {
        let list = |ids: &[BrokerId]| {
            ids.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut parts: Vec<String> = self
            .partitions
            .iter()
            .map(|p| {
                let leader = p.leader.map_or("none".into(), |l| l.to_string());
                format!(
                    "{} leader {leader} epoch {} isr {}",
                    p.topic_partition,
                    p.leader_epoch,
                    list(&p.isr)
                )
            })
            .collect();
        let fenced: Vec<BrokerId> = self
            .brokers
            .iter()
            .filter(|(_, live)| !live)
            .map(|(b, _)| *b)
            .collect();
        if !fenced.is_empty() {
            parts.push(format!("fenced {}", list(&fenced)));
        }
        parts.join(" | ")
    }

    /// "broker 2 (leader of nemesis-1; follower of nemesis-0, nemesis-2)".
    fn roles(&self, broker: BrokerId) -> String {
        let names = |lead: bool| -> Vec<String> {
            self.partitions
                .iter()
                .filter(|p| p.replicas.contains(&broker) && (p.leader == Some(broker)) == lead)
                .map(|p| p.topic_partition.to_string())
                .collect()
        };
        let (led, followed) = (names(true), names(false));
        let mut roles = Vec::new();
        if !led.is_empty() {
            roles.push(format!("leader of {}", led.join(", ")));
        }
        if !followed.is_empty() {
            roles.push(format!("follower of {}", followed.join(", ")));
        }
        format!("broker {broker} ({})", roles.join("; "))
    }
}

/// Sizes of segment files over the last [`WRITEBACK`], sampled every [`SAMPLE_INTERVAL`]: what
/// a power loss under `--fsync never` may take back.
#[derive(Default)]
struct WriteBack {
    samples: VecDeque<(Instant, BTreeMap<PathBuf, u64>)>,
}

impl WriteBack {
    fn sample(&mut self, files: BTreeMap<PathBuf, u64>, now: Instant) {
        if self
            .samples
            .back()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < SAMPLE_INTERVAL)
        {
            return;
        }
        self.samples.push_back((now, files));
        // Keep one sample at or before the horizon, and every later one.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= WRITEBACK)
        {
            self.samples.pop_front();
        }
    }

    /// The length below which `path` was surely on the device at `now`: the smallest size it had
    /// since [`WRITEBACK`] ago (a truncation since then may not be on the device either, nor
    /// what was written after it). 0 if the samples do not reach back that far.
    fn floor(&self, path: &Path, now: Instant) -> u64 {
        let Some(first) = self
            .samples
            .iter()
            .rposition(|(t, _)| now.saturating_duration_since(*t) >= WRITEBACK)
        else {
            return 0;
        };
        self.samples
            .iter()
            .skip(first)
            .map(|(_, sizes)| sizes.get(path).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }
}

/// Every segment file of the topic's partitions in a broker's directory, with its size.
fn segment_files(broker_dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let topic = Topic::new(TOPIC);
    for p in 0..PARTITIONS {
        let dir = broker_dir.join(partition_dir_name(&TopicPartition::new(&topic, p)));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if segment_base_offset(&path).is_some() {
                if let Ok(m) = e.metadata() {
                    files.insert(path, m.len());
                }
            }
        }
    }
    files
}

// ---------------------------------------------------------------------------------------------
// Producers.

struct ProducerPlan {
    index: u32,
    bootstrap: Vec<Id>,
    acks: Acks,
    idempotent: bool,
    faults_path: PathBuf,
    records_per_s: f64,
    seed: u64,
    /// The trace file every round of this producer appends to.
    trace: Option<PathBuf>,
}

/// Writes rounds of unique values (`p<index>-<n>`) until `stop`: each round is one Producer
/// actor (one producer id) with [`ROUND_BATCHES`] batches of [`BATCH_RECORDS`] records spread
/// over the partitions, given up after [`ROUND_TIMEOUT`], and paced to the producer's rate.
/// Every value is in `history.attempted` before it is sent; every acknowledgement goes to
/// `history.acked` as it arrives.
fn run_producer(
    plan: ProducerPlan,
    history: &Mutex<History>,
    stop: &AtomicBool,
    start: Instant,
) -> Result<(), String> {
    let topic = Topic::new(TOPIC);
    let mut next_value = 0u64;
    for round in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let round_start = Instant::now();
        let mut records = Vec::with_capacity((ROUND_BATCHES * BATCH_RECORDS) as usize);
        for b in 0..ROUND_BATCHES {
            let partition = (plan.index + b) % PARTITIONS;
            for _ in 0..BATCH_RECORDS {
                let value = Value::from(format!("p{}-{next_value:09}", plan.index).as_str());
                next_value += 1;
                records.push((partition, value));
            }
        }
        let total = records.len();
        {
            let mut h = history.lock().map_err(|_| "a producer panicked")?;
            h.attempted.extend(records.iter().map(|(_, v)| v.clone()));
        }
        let config = ProducerConfig {
            bootstrap: plan.bootstrap.clone(),
            topic,
            acks: plan.acks,
            // Unique per producer and round: a new actor restarts its sequences at 0.
            idempotence: plan
                .idempotent
                .then_some((u64::from(plan.index) + 1) << 40 | round),
            records,
            accumulated_at_start: None,
            attempts_max: u32::MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            request_timeout: true,
            max_in_flight_requests: 1,
            timing: TimingMs::client().timing(),
        };
        let socket = bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("producer {}: cannot open a socket: {e}", plan.index))?;
        let local = match socket.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a,
            _ => return Err("a producer socket is not IPv4".into()),
        };
        // The producers' datagrams go through the same rules as the nodes'.
        let salt = u64::from(u32::from(*local.ip())) << 16 | u64::from(local.port());
        let mut host = Host::start(
            Node::Producer(Producer::new(config)),
            socket,
            NoStore,
            plan.seed ^ (u64::from(plan.index) << 48) ^ round,
            None,
            TransportConfig::client(incarnation::clock()),
            Some(FaultsFile::new(&plan.faults_path, salt)),
            match &plan.trace {
                Some(path) => Some(
                    TraceWriter::open(path)
                        .map_err(|e| format!("producer {}: trace: {e}", plan.index))?,
                ),
                None => None,
            },
        )
        .map_err(|e| format!("producer {}: {e}", plan.index))?;
        let deadline = round_start + ROUND_TIMEOUT;
        loop {
            let delivered = host.take_delivered();
            if !delivered.is_empty() {
                let at_s = start.elapsed().as_secs_f64();
                let mut h = history.lock().map_err(|_| "a producer panicked")?;
                for msg in delivered {
                    let Msg::RecordAcknowledged(ack) = msg else {
                        continue;
                    };
                    h.acked.push(Acked {
                        partition: ack.topic_partition.partition,
                        offset: ack.offset,
                        value: ack.value,
                        leader_epoch: ack.leader_epoch,
                        at_s,
                    });
                }
            }
            let Some(state) = host.state().as_producer() else {
                return Err("a producer host runs something else".into());
            };
            let finished = state.next_record as usize >= total && state.in_flight.is_empty();
            if finished || stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            host.step(Duration::from_millis(50))
                .map_err(|e| format!("producer {}: {e}", plan.index))?;
        }
        // Pace to the rate: a round's records over the time they are worth.
        let due = round_start + Duration::from_secs_f64(total as f64 / plan.records_per_s);
        while Instant::now() < due && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                due.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Run<'a> {
    options: &'a NemesisOptions,
    cluster: LocalCluster,
    /// When the producers started; every time in the log and the report counts from here.
    start: Instant,
    faults_path: PathBuf,
    view: Option<View>,
    writeback: WriteBack,
    /// Nodes the nemesis killed or paused and has not brought back yet.
    down: BTreeSet<Role>,
    paused: BTreeSet<Role>,
    /// After a broker restarts, the partition epochs each partition must pass before the
    /// cluster counts as healthy: the controller fences a restarted broker out of every ISR
    /// when it registers (R4), so a full ISR with an older epoch is a view from before the
    /// restart, not a recovery.
    epochs_to_pass: BTreeMap<u32, PartitionEpoch>,
    /// When the current heal began: recoveries are timed from here.
    healing_from: Instant,
    node_exits: Vec<String>,
    log: &'a mut dyn FnMut(&str),
}

impl Run<'_> {
    fn at_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn say(&mut self, what: &str) {
        let line = format!("[{:>7.1} s] {what}", self.at_s());
        (self.log)(&line);
    }

    fn brokers(&self) -> Vec<(BrokerId, SocketAddrV4)> {
        self.cluster
            .file()
            .brokers
            .iter()
            .map(|b| (b.id, b.address))
            .collect()
    }

    /// Samples segment sizes and notices nodes that exited without being killed (they are
    /// restarted, and the exit is reported as an anomaly).
    fn watch(&mut self) {
        let now = Instant::now();
        let due = self
            .writeback
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_INTERVAL);
        if due {
            let mut files = BTreeMap::new();
            for (id, _) in self.brokers() {
                files.extend(segment_files(&self.cluster.node_dir(Role::Broker(id))));
            }
            self.writeback.sample(files, now);
        }
        for (node, status) in self.cluster.exited() {
            let text = std::fs::read_to_string(self.cluster.log_path(node)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ");
            let what = format!(
                "{} exited on its own at {:.1} s ({status}); its log ends: {tail}",
                node.name(),
                self.at_s()
            );
            self.say(&what);
            self.node_exits.push(what);
            if !self.down.contains(&node) {
                if let Err(e) = self.cluster.start(node) {
                    self.say(&format!("cannot restart {}: {e}", node.name()));
                    self.down.insert(node);
                }
            }
        }
    }

    /// Waits `d`, watching.
    fn idle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.watch();
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
    }

    /// Holds a fault for `d`, then says how the controller sees the cluster: the fault's effect.
    fn hold(&mut self, d: Duration) {
        self.idle(d);
        // Without a controller no broker can answer: a probe would only prolong the fault.
        let quorum = self.cluster.file().has_controller_quorum();
        let seen = if !quorum && self.down.contains(&Role::Controller(1)) {
            "the controller is down".into()
        } else {
            match self.probe() {
                Some(v) => v.summary(),
                None => "no broker answered".into(),
            }
        };
        self.say(&format!("before healing: {seen}"));
        self.healing_from = Instant::now();
    }

    /// The active controller: with a quorum, the one that says it leads (controller 1 if none
    /// answers so within a second); controller 1 alone otherwise.
    fn active_controller(&self) -> u32 {
        let file = self.cluster.file();
        if !file.has_controller_quorum() {
            return 1;
        }
        let controllers = file.controller_addresses();
        client::quorum_status(&controllers, Duration::from_millis(1000))
            .leader_id
            .unwrap_or(1)
    }

    /// DescribeTopics through the first broker that answers, skipping those the nemesis holds
    /// down.
    fn probe(&mut self) -> Option<View> {
        let request = Msg::DescribeTopics {
            topic: Some(Topic::new(TOPIC)),
            client: None,
        };
        for (id, address) in self.brokers() {
            let role = Role::Broker(id);
            if self.down.contains(&role) || self.paused.contains(&role) {
                continue;
            }
            let answer = client::request_within(address, &request, PROBE_TIMEOUT, |m| match m {
                Msg::DescribeTopicsResponse {
                    brokers,
                    partitions,
                    ..
                } => Some(View {
                    brokers: brokers.to_vec(),
                    partitions: partitions.to_vec(),
                }),
                _ => None,
            });
            if let Ok(view) = answer {
                self.view = Some(view.clone());
                return Some(view);
            }
        }
        None
    }

    /// Probes until `done` holds, for at most `bound`; how long it took.
    fn await_view(
        &mut self,
        bound: Duration,
        done: impl Fn(&mut Self, &View) -> bool,
    ) -> Option<Duration> {
        let from = Instant::now();
        while from.elapsed() < bound {
            self.watch();
            if let Some(view) = self.probe() {
                if done(self, &view) {
                    return Some(from.elapsed());
                }
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        None
    }

    /// Waits until the cluster is healthy and past every restart (`epochs_to_pass`), for at most
    /// `bound`; how long since healing began (`healing_from`): a restart's own start-up counts.
    fn await_healthy(&mut self, bound: Duration) -> Option<Duration> {
        let recovered = self.await_view(bound, |run, v| {
            v.healthy()
                && run.epochs_to_pass.iter().all(|(p, e)| {
                    v.partition(*p)
                        .is_some_and(|state| state.partition_epoch > *e)
                })
        });
        recovered.map(|_| {
            self.epochs_to_pass.clear();
            self.healing_from.elapsed()
        })
    }

    /// Healthy, and every replica of every partition at the leader's high watermark, which is
    /// its log end offset: nothing left to replicate.
    fn await_converged(&mut self, bound: Duration) -> Option<Duration> {
        self.await_view(bound, |run, v| v.healthy() && run.converged(v).is_some())
    }

    /// Each partition's high watermark, if every replica's log end offset equals it.
    fn converged(&self, view: &View) -> Option<BTreeMap<u32, Offset>> {
        let addresses: BTreeMap<BrokerId, SocketAddrV4> = self.brokers().into_iter().collect();
        let mut hwms = BTreeMap::new();
        for p in &view.partitions {
            let leader = p.leader?;
            let offsets = |b: BrokerId| list_offsets(*addresses.get(&b)?, &p.topic_partition).ok();
            let lead = offsets(leader)?;
            if !lead.is_leader || lead.log_end_offset != lead.high_watermark {
                return None;
            }
            for b in p.replicas.iter() {
                if offsets(*b)?.log_end_offset != lead.high_watermark {
                    return None;
                }
            }
            hwms.insert(p.topic_partition.partition, lead.high_watermark);
        }
        Some(hwms)
    }

    fn write_rules(&self, seed: u64, rules: Vec<serde_json::Value>) -> Result<(), String> {
        let text = json!({ "seed": seed, "rules": rules }).to_string();
        write_atomically(&self.faults_path, text.as_bytes(), false)
            .map_err(|e| format!("cannot write {}: {e}", self.faults_path.display()))
    }

    fn clear_rules(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.faults_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.faults_path.display())),
        }
    }

    fn resolve(&self, victim: Victim) -> (BrokerId, String) {
        let fallback = match victim {
            Victim::LeaderOf(p) | Victim::FollowerOf(p, _) => p % BROKERS + 1,
        };
        match &self.view {
            Some(v) => {
                let b = v.resolve(victim).unwrap_or(fallback);
                (b, v.roles(b))
            }
            None => (fallback, format!("broker {fallback}")),
        }
    }

    fn kill(&mut self, node: Role) -> Result<(), String> {
        self.cluster.kill(node)?;
        self.down.insert(node);
        Ok(())
    }

    /// Starts a node the nemesis brought down; on failure it stays down (and the cluster will
    /// not be healthy).
    fn restart(&mut self, node: Role) -> String {
        if let (Role::Broker(b), Some(view)) = (node, &self.view) {
            for p in &view.partitions {
                if p.replicas.contains(&b) {
                    let e = self
                        .epochs_to_pass
                        .entry(p.topic_partition.partition)
                        .or_insert(p.partition_epoch);
                    *e = (*e).max(p.partition_epoch);
                }
            }
        }
        match self.cluster.start(node) {
            Ok(()) => {
                self.down.remove(&node);
                format!("{} restarted", node.name())
            }
            Err(e) => {
                let what = format!("{} does not start again: {e}", node.name());
                self.node_exits.push(what.clone());
                what
            }
        }
    }

    /// Injects one fault, holds it and heals it; what was done and what healing did.
    fn inject(&mut self, planned: &Planned) -> Result<(String, String), String> {
        let hold = planned.plan.hold();
        let addresses = self.brokers();
        let controllers = self.cluster.file().controller_addresses();
        match &planned.plan {
            Plan::Kill { victim, .. } => {
                let (b, who) = self.resolve(*victim);
                self.kill(Role::Broker(b))?;
                self.say(&format!("kill -9 {who}"));
                self.hold(hold);
                Ok((
                    format!("kill -9 {who}, down {:.1} s", hold.as_secs_f64()),
                    self.restart(Role::Broker(b)),
                ))
            }
            Plan::Pause { partition, .. } => {
                let (b, who) = self.resolve(Victim::LeaderOf(*partition));
                let node = Role::Broker(b);
                self.cluster.pause(node)?;
                self.paused.insert(node);
                self.say(&format!("SIGSTOP {who}"));
                self.hold(hold);
                self.cluster.resume(node)?;
                self.paused.remove(&node);
                Ok((
                    format!("pause {who} for {:.1} s", hold.as_secs_f64()),
                    format!("SIGCONT broker {b}"),
                ))
            }
            Plan::ControllerKill { .. } => {
                let node = Role::Controller(self.active_controller());
                self.kill(node)?;
                self.say(&format!("kill -9 {}", node.name()));
                self.hold(hold);
                Ok((
                    format!("kill -9 {}, down {:.1} s", node.name(), hold.as_secs_f64()),
                    self.restart(node),
                ))
            }
            Plan::Partition {
                victim, isolation, ..
            } => {
                let (b, who) = self.resolve(*victim);
                let Some(cut) = addresses.iter().find(|(id, _)| *id == b).map(|(_, a)| *a) else {
                    return Err(format!("broker {b} has no address"));
                };
                let others: Vec<SocketAddrV4> = match isolation {
                    Isolation::AllNodes => addresses
                        .iter()
                        .filter(|(id, _)| *id != b)
                        .map(|(_, a)| *a)
                        .chain(controllers.iter().copied())
                        .collect(),
                    Isolation::Controller => controllers.clone(),
                    Isolation::Brokers => addresses
                        .iter()
                        .filter(|(id, _)| *id != b)
                        .map(|(_, a)| *a)
                        .collect(),
                };
                let rules = others
                    .iter()
                    .flat_map(|o| {
                        [
                            json!({ "from": cut.to_string(), "to": o.to_string(), "drop": 1.0 }),
                            json!({ "from": o.to_string(), "to": cut.to_string(), "drop": 1.0 }),
                        ]
                    })
                    .collect();
                let from = match isolation {
                    Isolation::AllNodes => "every other node",
                    Isolation::Controller => "the controller",
                    Isolation::Brokers => "the other brokers",
                };
                self.write_rules(planned.rules_seed, rules)?;
                self.say(&format!("partition: {who} cut off from {from}"));
                self.hold(hold);
                self.clear_rules()?;
                Ok((
                    format!(
                        "partition {who} from {from} for {:.1} s",
                        hold.as_secs_f64()
                    ),
                    "network whole again".into(),
                ))
            }
            Plan::Loss { drop, .. } => {
                self.write_rules(planned.rules_seed, vec![json!({ "drop": drop })])?;
                let what = format!(
                    "lose {:.0}% of datagrams for {:.1} s",
                    drop * 100.0,
                    hold.as_secs_f64()
                );
                self.say(&what);
                self.hold(hold);
                self.clear_rules()?;
                Ok((what, "network whole again".into()))
            }
            Plan::Duplicate {
                duplicate,
                delay_ms_max,
                ..
            } => {
                let mut rule = json!({ "duplicate": duplicate });
                if *delay_ms_max > 0 {
                    rule["delay_ms"] = json!([0, delay_ms_max]);
                }
                self.write_rules(planned.rules_seed, vec![rule])?;
                let what = format!(
                    "duplicate {:.0}% of datagrams{} for {:.1} s",
                    duplicate * 100.0,
                    if *delay_ms_max > 0 {
                        format!(", each copy delayed 0-{delay_ms_max} ms")
                    } else {
                        String::new()
                    },
                    hold.as_secs_f64()
                );
                self.say(&what);
                self.hold(hold);
                self.clear_rules()?;
                Ok((what, "network whole again".into()))
            }
            Plan::Reorder { delay_ms_max, .. } => {
                self.write_rules(
                    planned.rules_seed,
                    vec![json!({ "delay_ms": [0, delay_ms_max] })],
                )?;
                let what = format!(
                    "reorder: delay every datagram by 0-{delay_ms_max} ms for {:.1} s",
                    hold.as_secs_f64()
                );
                self.say(&what);
                self.hold(hold);
                self.clear_rules()?;
                Ok((what, "network whole again".into()))
            }
            Plan::TornTail {
                victim,
                partition,
                tear,
                ..
            } => {
                let (b, who) = self.resolve(*victim);
                let node = Role::Broker(b);
                self.kill(node)?;
                let damage = self.tear(node, *partition, *tear);
                let what = format!("kill -9 {who}, then {damage}");
                self.say(&what);
                self.hold(hold);
                Ok((what, self.restart(node)))
            }
            Plan::PowerLoss {
                victim, cuts_seed, ..
            } => {
                let (b, who) = self.resolve(*victim);
                let node = Role::Broker(b);
                self.kill(node)?;
                let damage = self.lose_power(node, *cuts_seed);
                let what = format!("power loss of {who}: kill -9, {damage}");
                self.say(&what);
                self.hold(hold);
                Ok((what, self.restart(node)))
            }
        }
    }

    /// Tears the last frame of the newest segment file of `partition` on a dead broker.
    fn tear(&self, node: Role, partition: u32, tear: Tear) -> String {
        let tp = TopicPartition::new(&Topic::new(TOPIC), partition);
        let dir = self.cluster.node_dir(node).join(partition_dir_name(&tp));
        let Some((path, _)) = segment_files(&self.cluster.node_dir(node))
            .into_iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .max_by_key(|(p, _)| segment_base_offset(p))
        else {
            return format!("{tp} has no segment file to tear");
        };
        let result = (|| -> std::io::Result<String> {
            let mut data = std::fs::read(&path)?;
            let base = segment_base_offset(&path).unwrap_or(0);
            let (starts, end) = intact_frames(&data, base);
            let Some(&last) = starts.last() else {
                return Ok(format!("{} holds no frame to tear", path.display()));
            };
            let frame_bytes = end - last;
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            let done = match tear {
                Tear::Cut(at) => {
                    // Strictly inside the frame: at least one byte kept, at least one cut.
                    let keep = 1 + ((frame_bytes - 1) as f64 * at) as usize;
                    let keep = keep.clamp(1, frame_bytes - 1);
                    file.set_len((last + keep) as u64)?;
                    data.truncate(last + keep);
                    format!("cut its last frame ({frame_bytes} bytes) of {tp} after {keep} bytes")
                }
                Tear::Flip(at, bit) => {
                    use std::os::unix::fs::FileExt;
                    let index = last + ((frame_bytes as f64 * at) as usize).min(frame_bytes - 1);
                    data[index] ^= 1 << bit;
                    file.write_all_at(&data[index..=index], index as u64)?;
                    format!(
                        "flipped bit {bit} of byte {} of its last frame ({frame_bytes} bytes) of {tp}",
                        index - last
                    )
                }
            };
            // Recovery must now stop at the torn frame.
            let (_, intact) = intact_frames(&data, base);
            Ok(if intact <= last {
                done
            } else {
                format!("{done} (which left the frame intact)")
            })
        })();
        result.unwrap_or_else(|e| format!("could not tear {}: {e}", path.display()))
    }

    /// Cuts what a power loss may take from a dead broker's segment files.
    fn lose_power(&self, node: Role, cuts_seed: u64) -> String {
        if self.options.fsync == FsyncPolicy::Always {
            return "nothing cut (--fsync always: every write was on the device before the broker acted on it)".into();
        }
        let now = Instant::now();
        let mut rng = Pcg64Mcg::seed_from_u64(cuts_seed);
        let (mut files_cut, mut bytes_cut) = (0u64, 0u64);
        let files = segment_files(&self.cluster.node_dir(node));
        for (path, size) in &files {
            let floor = self.writeback.floor(path, now).min(*size);
            let keep = floor + rng.next_u64() % (size - floor + 1);
            if keep < *size {
                let cut = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(keep));
                if cut.is_ok() {
                    files_cut += 1;
                    bytes_cut += size - keep;
                }
            }
        }
        format!(
            "cut {bytes_cut} bytes from {files_cut} of its {} segment files (not yet written back under --fsync never)",
            files.len()
        )
    }

    /// Brings back everything the nemesis holds down.
    fn heal_all(&mut self) -> Result<(), String> {
        self.healing_from = Instant::now();
        self.clear_rules()?;
        for node in std::mem::take(&mut self.paused) {
            self.cluster.resume(node)?;
        }
        for node in self.down.clone() {
            let what = self.restart(node);
            self.say(&what);
        }
        Ok(())
    }
}

/// ListOffsets with the probe's short wait.
fn list_offsets(broker: SocketAddrV4, tp: &TopicPartition) -> Result<ReplicaOffsets, String> {
    let request = Msg::ListOffsets {
        topic_partition: tp.clone(),
    };
    let result = client::request_within(broker, &request, PROBE_TIMEOUT, |m| match m {
        Msg::ListOffsetsResponse {
            topic_partition,
            result,
        } if topic_partition == *tp => Some(result),
        _ => None,
    })?;
    result.map_err(|e| client::error_name(e).to_string())
}

/// Runs the nemesis as the module says. `log` gets one line per fault, heal and recovery, with
/// its time; `stop` ends the fault phase early (the checks still run). Errors are failures to
/// set the run up or to drive it, not findings: findings are in the report.
pub fn run(
    options: &NemesisOptions,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<NemesisReport, String> {
    options.validate()?;
    std::fs::create_dir_all(&options.dir)
        .map_err(|e| format!("cannot create {}: {e}", options.dir.display()))?;
    let dir =
        std::path::absolute(&options.dir).map_err(|e| format!("{}: {e}", options.dir.display()))?;
    let faults_path = dir.join(FAULTS_FILE_NAME);
    let timing_ms = TimingMs::default();
    let local = LocalOptions {
        brokers: BROKERS,
        fsync: options.fsync,
        faults: Some(faults_path.clone()),
        timing_ms: timing_ms.clone(),
        eligible_leader_replicas: options.eligible_leader_replicas,
        controllers: options.controllers,
        ..LocalOptions::default()
    };
    let mut cluster = LocalCluster::create(&options.exe, &dir, &local)?;
    let trace_dir = match &options.trace {
        Some(d) => Some(std::path::absolute(d).map_err(|e| format!("{}: {e}", d.display()))?),
        None => None,
    };
    cluster.set_trace_dir(trace_dir.clone());
    cluster.start_all()?;
    let bootstrap = cluster.bootstrap();
    let setup = Instant::now();
    loop {
        match client::create_topic(
            bootstrap,
            TOPIC,
            PARTITIONS,
            REPLICATION_FACTOR,
            TopicConfigs {
                min_insync_replicas: MIN_INSYNC_REPLICAS,
                ..TopicConfigs::default()
            },
        ) {
            Ok(()) => break,
            Err(e) if setup.elapsed() >= SETUP_TIMEOUT => {
                return Err(format!("cannot create topic {TOPIC}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let history = Arc::new(Mutex::new(History::default()));
    let producers_stop = Arc::new(AtomicBool::new(false));
    let mut run = Run {
        options,
        cluster,
        start: Instant::now(),
        faults_path,
        view: None,
        writeback: WriteBack::default(),
        down: BTreeSet::new(),
        paused: BTreeSet::new(),
        epochs_to_pass: BTreeMap::new(),
        healing_from: Instant::now(),
        node_exits: Vec::new(),
        log,
    };
    if run.await_healthy(SETUP_TIMEOUT).is_none() {
        return Err(format!(
            "the cluster was not healthy within {} s of creating the topic",
            SETUP_TIMEOUT.as_secs()
        ));
    }
    let bootstrap_ids: Vec<Id> = run.brokers().iter().map(|(_, a)| Id::from(*a)).collect();
    run.start = Instant::now();
    let mut threads = Vec::new();
    for index in 0..options.producers {
        let plan = ProducerPlan {
            index,
            // Each producer asks a different broker first.
            bootstrap: bootstrap_ids
                .iter()
                .cycle()
                .skip(index as usize % bootstrap_ids.len())
                .take(bootstrap_ids.len())
                .copied()
                .collect(),
            acks: options.acks,
            idempotent: options.idempotent,
            faults_path: run.faults_path.clone(),
            records_per_s: f64::from(options.records_per_s) / f64::from(options.producers),
            seed: options.seed,
            trace: trace_dir
                .as_ref()
                .map(|d| d.join(format!("producer-{index}.trace"))),
        };
        let history = history.clone();
        let stop = producers_stop.clone();
        let start = run.start;
        threads.push(std::thread::spawn(move || {
            run_producer(plan, &history, &stop, start)
        }));
    }
    run.say(&format!(
        "{} producers writing {} records/s to {TOPIC} ({PARTITIONS} partitions, RF {REPLICATION_FACTOR}, min.insync.replicas {MIN_INSYNC_REPLICAS}), acks={}{}{}; faults for {} s",
        options.producers,
        options.records_per_s,
        options.acks.as_str(),
        if options.idempotent { ", idempotent" } else { "" },
        if options.eligible_leader_replicas {
            ", eligible leader replicas (KIP-966)"
        } else {
            ""
        },
        options.duration.as_secs()
    ));

    // The fault phase: one fault at a time, each healed and recovered from before the next.
    let mut schedule = Schedule::new(
        options.seed,
        &options.faults,
        Duration::from_millis(timing_ms.session_timeout),
    );
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut driving_error = None;
    loop {
        let planned = schedule.next();
        let fits = run.start.elapsed() + planned.wait + planned.plan.hold() <= options.duration;
        if !fits || stop.load(Ordering::Relaxed) {
            break;
        }
        run.idle(planned.wait);
        // Resolve roles against the cluster as it is now.
        run.probe();
        let injected_at_s = run.at_s();
        let (what, heal) = match run.inject(&planned) {
            Ok(done) => done,
            Err(e) => {
                driving_error = Some(e);
                break;
            }
        };
        let healed_at_s = run
            .healing_from
            .saturating_duration_since(run.start)
            .as_secs_f64();
        run.say(&format!("healed: {heal}"));
        let recovery = run.await_healthy(options.recovery_timeout);
        match recovery {
            Some(d) => run.say(&format!(
                "healthy again {:.2} s after healing began",
                d.as_secs_f64()
            )),
            None => run.say(&format!(
                "NOT healthy within {} s of the heal: {:?}",
                options.recovery_timeout.as_secs(),
                run.view
            )),
        }
        faults.push(FaultRecord {
            kind: planned.plan.kind(),
            injected_at_s,
            what,
            healed_at_s,
            recovery_s: recovery.map(|d| d.as_secs_f64()),
        });
        if recovery.is_none() {
            break;
        }
    }
    let fault_phase_s = run.at_s();
    let remaining = options.duration.saturating_sub(run.start.elapsed());
    if driving_error.is_none() && !stop.load(Ordering::Relaxed) {
        run.idle(remaining);
    }

    // Heal everything, keep writing, then stop the producers and let the cluster settle.
    if let Err(e) = run.heal_all() {
        driving_error.get_or_insert(e);
    }
    let heal_at_s = run.at_s();
    run.say(&format!(
        "fault phase over after {fault_phase_s:.1} s; everything healed"
    ));
    let final_recovery = run.await_healthy(options.recovery_timeout);
    run.idle(WRITE_AFTER_HEAL);
    producers_stop.store(true, Ordering::Relaxed);
    let mut producer_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => producer_error = Some(e),
            Err(_) => producer_error = Some("a producer panicked".into()),
        }
    }
    if let Some(e) = driving_error.or(producer_error) {
        return Err(e);
    }
    let converged = run.await_converged(options.recovery_timeout);
    let history = match Arc::try_unwrap(history) {
        Ok(m) => m.into_inner().map_err(|_| "a producer panicked")?,
        Err(_) => return Err("a producer outlived the run".into()),
    };
    let acked_after_heal = history.acked.iter().filter(|a| a.at_s >= heal_at_s).count() as u64;
    run.say(&format!(
        "producers stopped: {} acknowledged, {acked_after_heal} after the final heal; replicas {}",
        history.acked.len(),
        match converged {
            Some(d) => format!("converged in {:.1} s", d.as_secs_f64()),
            None => "did NOT converge".into(),
        }
    ));

    // Read each partition through a consumer, up to the high watermark the leader reports.
    let hwms = run
        .view
        .clone()
        .and_then(|v| run.converged(&v))
        .unwrap_or_default();
    let topic = Topic::new(TOPIC);
    let mut ends: BTreeMap<u32, PartitionEnd> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let high_watermark = hwms.get(&p).copied().unwrap_or(0);
        let mut consumed = Vec::new();
        if high_watermark > 0 {
            let never = AtomicBool::new(false);
            let options = ConsumeOptions {
                topic: TOPIC.into(),
                partition: Some(p),
                from_beginning: true,
                max_records: Some(high_watermark),
                idle_timeout: Some(Duration::from_secs(10)),
                timing: TimingMs::client(),
                trace_dir: trace_dir.clone(),
            };
            client::consume(bootstrap, &options, &never, |r| {
                consumed.push((r.offset, r.value.clone()))
            })?;
        }
        ends.insert(
            p,
            PartitionEnd {
                high_watermark,
                consumed,
                replicas: BTreeMap::new(),
            },
        );
    }

    // A clean stop, then every replica's log from its segment files.
    run.cluster.stop_all();
    let mut fault_layer: BTreeMap<String, u64> = BTreeMap::new();
    for node in run.cluster.nodes() {
        for (name, value) in run.cluster.counters(node).unwrap_or_default() {
            if name.starts_with("fault_") {
                *fault_layer.entry(name).or_default() += value;
            }
        }
    }
    for (id, _) in run.brokers() {
        for p in 0..PARTITIONS {
            let tp = TopicPartition::new(&topic, p);
            let dir = run
                .cluster
                .node_dir(Role::Broker(id))
                .join(partition_dir_name(&tp));
            if !dir.is_dir() {
                continue;
            }
            let (_, entries, _) = SegmentLog::open(&dir)
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            if let Some(end) = ends.get_mut(&p) {
                end.replicas.insert(id, entries);
            }
        }
    }
    let anomalies = history::check(TOPIC, &history, &ends, options.idempotent);
    let healthy_at_end = final_recovery.is_some()
        && converged.is_some()
        && (options.acks == Acks::None || acked_after_heal > 0);
    let recovery_s_max = faults
        .iter()
        .filter_map(|f| f.recovery_s)
        .chain(final_recovery.map(|d| d.as_secs_f64()))
        .fold(0.0, f64::max);
    Ok(NemesisReport {
        seed: options.seed,
        duration_s: options.duration.as_secs(),
        elapsed_s: run.at_s(),
        acks: options.acks,
        idempotent: options.idempotent,
        fsync: options.fsync,
        enabled: options.faults.clone(),
        attempted: history.attempted.len() as u64,
        acked_after_heal,
        anomalies,
        faults,
        node_exits: run.node_exits,
        healthy_at_end,
        recovery_s_max,
        fault_layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_only_enabled_kinds() {
        let kinds = [FaultKind::Kill, FaultKind::Loss, FaultKind::TornTail];
        let draw = |seed| {
            let mut s = Schedule::new(seed, &kinds, Duration::from_secs(3));
            (0..50).map(|_| s.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let plans = draw(7);
        assert!(plans.iter().all(|p| kinds.contains(&p.plan.kind())));
        for k in kinds {
            assert!(
                plans.iter().any(|p| p.plan.kind() == k),
                "{k:?} never drawn"
            );
        }
    }

    #[test]
    fn pauses_and_partitions_outlast_the_session_timeout() {
        let mut s = Schedule::new(
            1,
            &[FaultKind::Pause, FaultKind::Partition],
            Duration::from_secs(3),
        );
        for _ in 0..100 {
            let p = s.next();
            assert!(p.plan.hold() > Duration::from_secs(3), "{p:?}");
        }
    }

    #[test]
    fn fault_lists_parse_and_bad_names_are_refused() {
        assert_eq!(
            parse_fault_kinds("kill,power-loss,kill").unwrap(),
            vec![FaultKind::Kill, FaultKind::PowerLoss]
        );
        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(parse_fault_kinds(&names.join(",")).unwrap(), FaultKind::ALL);
        assert!(parse_fault_kinds("kill,,pause").is_err());
        assert!(parse_fault_kinds("meteor")
            .unwrap_err()
            .contains("unknown fault 'meteor'"));
    }

    #[test]
    fn a_power_loss_keeps_what_was_written_more_than_writeback_ago() {
        let mut w = WriteBack::default();
        let t0 = Instant::now();
        let path = PathBuf::from("/x/00000000000000000000.log");
        let at = |s: u64| t0 + Duration::from_secs(s);
        for s in 0..=40u64 {
            w.sample([(path.clone(), 100 * s)].into_iter().collect(), at(s));
        }
        // 30 s back from 40 s the file held 1,000 bytes.
        assert_eq!(w.floor(&path, at(40)), 1000);
        assert!(w.samples.len() <= 32, "{} samples kept", w.samples.len());
        // Samples younger than the horizon: nothing is surely on the device.
        let mut young = WriteBack::default();
        young.sample([(path.clone(), 500)].into_iter().collect(), t0);
        assert_eq!(young.floor(&path, at(5)), 0);
    }
}
