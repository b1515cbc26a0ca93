//! `watermark validate DIR`: a real run's traces checked against the model. Spec: section 13.
//!
//! etcd checks raft traces against a TLA+ spec; here the model *is* the code, so a trace is
//! replayed through the very actors the checker explores:
//!
//! 1. **Replay.** Each process (one incarnation of one node or client) is started from its
//!    recorded start, with the storage it loaded, and handed its recorded events in order. Every
//!    step must produce the effects the host recorded, in the order the host carried them out,
//!    and a state with the recorded hash; a timer may fire only while it is set. A difference is
//!    a *mismatch*: the host did something the model never does.
//! 2. **Recovery.** What a restarted broker or controller loaded must be what its previous
//!    incarnation last saved (or saved before its last step, which a kill may have cut short),
//!    with high watermark checkpoints that may lag (the store defers them), or, after a power
//!    loss under `--fsync never`, logs cut to a prefix. Anything else is a mismatch.
//! 3. **Causality.** The steps of all processes are merged into one interleaving in which every
//!    delivered message was sent earlier, on its channel (sender incarnation, receiver), after
//!    every message delivered before it on that channel: each channel delivers a subsequence of
//!    what was sent, in order, which is the model's lossy FIFO network. A delivery that fits no
//!    such interleaving is a *violation*. Messages from processes without a trace (admin tools)
//!    are inputs from outside, counted.
//! 4. **Properties.** On that interleaving the global state (every actor's, crashes, saved
//!    storage) and the ghost history are rebuilt step by step, exactly as the simulator does,
//!    and every Always property of [`properties`] that applies is evaluated after each step that
//!    changed something. A property that fails is a *violation*.
//!
//! The first finding is printed with the steps that led to it, in `check`'s trace format.

use crate::ghost::{self, Ghost};
use crate::hashed::Hashed;
use crate::knobs::Knobs;
use crate::model::{Action, State, WatermarkModel, CONTROLLER_INDEX};
use crate::properties::PropertyDef;
use crate::trace::{self as ctrace, TraceStep};
use serde::Serialize;
use stateright::actor::{Actor, ActorModelAction, Command, Id, Network, Out};
use stateright::Expectation;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use watermark_model::broker::BrokerStorage;
use watermark_model::*;
use watermark_net::codec;
use watermark_net::trace::{self, digest, Effect, Event};

/// One record of a watermark trace.
pub type TraceRecord = trace::Record<Node, Timer, Storage>;

/// Steps shown before the first finding.
pub const CONTEXT_STEPS: usize = 12;
/// The longest state line shown in those steps.
pub const STATE_LINE_CHARS_MAX: usize = 240;

/// What went wrong, and where.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `mismatch`, `recovery`, `causality` or a property's name.
    pub kind: String,
    /// The process, as `broker 2 (incarnation …)`.
    pub process: String,
    /// The step of that process (0: its start).
    pub step: usize,
    pub at_us: u64,
    pub detail: String,
}

/// What `validate` found.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationReport {
    /// Nodes and clients traced (distinct addresses).
    pub nodes: usize,
    /// Incarnations of them.
    pub processes: usize,
    /// Steps replayed.
    pub events: u64,
    pub mismatches: Vec<Finding>,
    pub violations: Vec<Finding>,
    /// Messages delivered from processes without a trace (admin requests).
    pub external_messages: u64,
    /// Messages sent to a traced process and never delivered to it (lost, or still in flight
    /// at the end).
    pub lost_messages: u64,
    /// Restarts whose loaded storage was checked against the previous incarnation's saves.
    pub recoveries_checked: u64,
    /// Of those, how many recovered logs cut to a prefix (a power loss).
    pub recoveries_with_cut_logs: u64,
    /// The Always properties evaluated, by name.
    pub properties: Vec<&'static str>,
    /// Why no property was evaluated, if none was.
    pub properties_skipped: Option<String>,
    /// Files that end in a torn record (ignored).
    pub torn_tails: Vec<String>,
    /// How many times the Always properties were evaluated (after steps that changed what
    /// they read; after every changing step with `--every-step`).
    pub evaluations: u64,
    pub wall_s: f64,
    pub events_per_s: f64,
    /// The steps up to the first finding.
    pub trace: Vec<TraceStep>,
}

impl ValidationReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.violations.is_empty()
    }

    /// The summary, then the first finding with the steps before it.
    pub fn text(&self) -> String {
        let mut out = format!(
            "validated {} events of {} processes ({} nodes and clients) in {:.1} s ({:.0} events/s)\n",
            self.events, self.processes, self.nodes, self.wall_s, self.events_per_s
        );
        out += &format!(
            "mismatches: {}   violations: {}   recoveries checked: {} ({} with cut logs)   \
             external messages: {}   lost messages: {}   property evaluations: {}\n",
            self.mismatches.len(),
            self.violations.len(),
            self.recoveries_checked,
            self.recoveries_with_cut_logs,
            self.external_messages,
            self.lost_messages,
            self.evaluations
        );
        match &self.properties_skipped {
            Some(why) => out += &format!("properties not evaluated: {why}\n"),
            None => out += &format!("properties: {}\n", self.properties.join(", ")),
        }
        for t in &self.torn_tails {
            out += &format!("torn tail ignored: {t}\n");
        }
        let first = self
            .mismatches
            .iter()
            .chain(&self.violations)
            .min_by_key(|f| f.at_us);
        if let Some(f) = first {
            out += &format!(
                "\nfirst finding: {} at step {} of {}: {}\n",
                f.kind, f.step, f.process, f.detail
            );
            if !self.trace.is_empty() {
                out += "\nthe steps before it:\n";
                out += &ctrace::to_text(&self.trace, "  ");
            }
        }
        out
    }
}

/// One incarnation of one traced process.
struct Process {
    file: String,
    address: SocketAddrV4,
    incarnation: u64,
    actor: Node,
    /// Its index in the global state.
    index: usize,
    records: Vec<TraceRecord>,
    /// The next record to replay.
    cursor: usize,
    /// The next incarnation at the same index, started once this one is done.
    successor: Option<usize>,
    /// The replayed state (after the start).
    state: Option<Arc<Hashed<NodeState>>>,
    timers: HashSet<Timer>,
}

impl Process {
    fn name(&self, model_name: &str) -> String {
        format!(
            "{model_name} at {} (incarnation {:#x}, {})",
            self.address, self.incarnation, self.file
        )
    }
}

/// A channel: sender address and incarnation, receiver address.
type ChannelKey = (SocketAddrV4, u64, SocketAddrV4);

/// Reads every `*.trace` file in `dir` and validates the run they record.
pub fn validate_dir(dir: &Path) -> Result<ValidationReport, String> {
    validate_dir_with(dir, false)
}

/// [`validate_dir`], evaluating the properties after every changing step if `every_step`.
pub fn validate_dir_with(dir: &Path, every_step: bool) -> Result<ValidationReport, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no .trace files", dir.display()));
    }
    let mut loaded = Vec::new();
    for f in &files {
        let t = trace::read::<TraceRecord>(f)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let quorum = t.records.iter().any(|r| {
            matches!(
                &r.event,
                Event::Start {
                    actor: Node::Kraft(_),
                    ..
                }
            )
        });
        if quorum {
            return Err(format!(
                "{name} is a trace of a controller of a KRaft quorum (cluster up --controllers \
                 3): validation replays runs of a single controller only, the model the checker \
                 explores (spec section 4b)"
            ));
        }
        loaded.push((name, t));
    }
    Ok(validate_with(loaded, every_step))
}

/// Validates the run recorded by these trace files (name, contents).
pub fn validate(files: Vec<(String, trace::TraceFile<TraceRecord>)>) -> ValidationReport {
    validate_with(files, false)
}

/// [`validate`], evaluating the properties after every changing step if `every_step`.
pub fn validate_with(
    files: Vec<(String, trace::TraceFile<TraceRecord>)>,
    every_step: bool,
) -> ValidationReport {
    let started = Instant::now();
    let mut torn_tails = Vec::new();
    let mut mismatches = Vec::new();
    // Split every file into incarnations.
    let mut raw: Vec<(String, Vec<TraceRecord>)> = Vec::new();
    for (name, file) in files {
        if let Some(bytes) = file.torn_tail_bytes {
            torn_tails.push(format!("{name}: last {bytes} bytes"));
        }
        let mut current: Option<Vec<TraceRecord>> = None;
        for r in file.records {
            if matches!(r.event, Event::Start { .. }) {
                if let Some(c) = current.take() {
                    raw.push((name.clone(), c));
                }
                current = Some(vec![r]);
            } else if let Some(c) = current.as_mut() {
                c.push(r);
            } else {
                mismatches.push(Finding {
                    kind: "mismatch".into(),
                    process: name.clone(),
                    step: 0,
                    at_us: r.at_us,
                    detail: "the file's first record is not a start".into(),
                });
            }
        }
        if let Some(c) = current {
            raw.push((name, c));
        }
    }
    let mut v = Validation::new(raw, started);
    v.every_step = every_step;
    v.mismatches.extend(mismatches);
    v.torn_tails = torn_tails;
    v.run();
    v.report()
}

struct Validation {
    procs: Vec<Process>,
    model: WatermarkModel,
    always: Vec<PropertyDef>,
    properties_skipped: Option<String>,
    state: State,
    /// Per process: sends on each channel not yet matched with a delivery (digests).
    channels: HashMap<ChannelKey, VecDeque<u64>>,
    /// Processes whose next delivery waits for a send on this channel.
    waiting: HashMap<ChannelKey, Vec<usize>>,
    by_incarnation: HashMap<(SocketAddrV4, u64), usize>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Per global index: the storages the last incarnation saved (before and after its last
    /// saving step), for checking the next one's recovery.
    saved: Vec<(Option<Storage>, Option<Storage>)>,
    started: Instant,
    events: u64,
    mismatches: Vec<Finding>,
    violations: Vec<Finding>,
    violated: HashSet<&'static str>,
    external_messages: u64,
    recoveries_checked: u64,
    recoveries_with_cut_logs: u64,
    torn_tails: Vec<String>,
    /// The last steps (heading, state before, state after), formatted only at a finding.
    context: VecDeque<(usize, String, State, State)>,
    /// Evaluate the properties after every changing step, not only when what they read changed.
    every_step: bool,
    /// [`footprint`] of the state the properties last saw.
    evaluated: Option<u64>,
    /// How many times the properties were evaluated.
    pub evaluations: u64,
    /// The context frozen at the first finding.
    frozen: Option<Vec<TraceStep>>,
    steps: usize,
}

fn address_of(id: Id) -> SocketAddrV4 {
    SocketAddrV4::from(id)
}

impl Validation {
    fn new(raw: Vec<(String, Vec<TraceRecord>)>, started: Instant) -> Validation {
        // Lay the processes out as the model does: controller, brokers by id, producers,
        // consumers. Every incarnation of a server shares its index; each client process has
        // its own.
        let mut procs: Vec<Process> = Vec::new();
        for (file, records) in raw {
            let Event::Start {
                actor,
                id,
                incarnation,
                ..
            } = &records[0].event
            else {
                continue;
            };
            procs.push(Process {
                file,
                address: address_of(*id),
                incarnation: *incarnation,
                actor: actor.clone(),
                index: 0,
                records,
                cursor: 0,
                successor: None,
                state: None,
                timers: HashSet::new(),
            });
        }
        procs.sort_by_key(|p| (p.records[0].at_us, p.incarnation));
        let broker_ids: Vec<BrokerId> = {
            let mut ids: Vec<BrokerId> = procs
                .iter()
                .filter_map(|p| match &p.actor {
                    Node::Broker(b) => Some(b.config.broker_id),
                    _ => None,
                })
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let cluster = procs.iter().find_map(|p| match &p.actor {
            Node::Broker(b) => Some(b.config.cluster.clone()),
            Node::Controller(c) => Some(c.config.cluster.clone()),
            _ => None,
        });
        let configured: Vec<BrokerId> = cluster
            .as_ref()
            .map(|c| c.brokers.iter().map(|(b, _)| *b).collect())
            .unwrap_or_default();
        let brokers = configured.len().max(broker_ids.len());
        let contiguous = configured
            .iter()
            .enumerate()
            .all(|(i, b)| *b as usize == i + 1);
        let producers: Vec<usize> = (0..procs.len())
            .filter(|i| matches!(procs[*i].actor, Node::Producer(_)))
            .collect();
        let consumers: Vec<usize> = (0..procs.len())
            .filter(|i| matches!(procs[*i].actor, Node::Consumer(_)))
            .collect();
        for (k, i) in producers.iter().enumerate() {
            procs[*i].index = 1 + brokers + k;
        }
        for (k, i) in consumers.iter().enumerate() {
            procs[*i].index = 1 + brokers + producers.len() + k;
        }
        for p in procs.iter_mut() {
            match &p.actor {
                Node::Controller(_) => p.index = CONTROLLER_INDEX,
                Node::Broker(b) => p.index = b.config.broker_id as usize,
                _ => {}
            }
        }
        // Incarnations of one server run one after the other.
        let mut last_at: HashMap<usize, usize> = HashMap::new();
        let mut firsts = Vec::new();
        for i in 0..procs.len() {
            let server = matches!(procs[i].actor, Node::Controller(_) | Node::Broker(_));
            if server {
                if let Some(prev) = last_at.insert(procs[i].index, i) {
                    procs[prev].successor = Some(i);
                    continue;
                }
            }
            firsts.push(i);
        }
        // The model's actors: each index's first process's actor; an index no trace fills
        // (a broker without a trace) gets one built from the cluster's config.
        let total = 1 + brokers + producers.len() + consumers.len();
        let mut actors: Vec<Option<Node>> = vec![None; total];
        for p in &procs {
            if p.index < total && actors[p.index].is_none() {
                actors[p.index] = Some(p.actor.clone());
            }
        }
        let mut skipped = None;
        if !contiguous || broker_ids.iter().any(|b| *b as usize > brokers) {
            skipped = Some(format!(
                "the properties index brokers by id and need ids 1..=n; this cluster has {configured:?}"
            ));
        }
        let filled: Vec<Node> = actors
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                a.unwrap_or_else(|| match (&cluster, i) {
                    (Some(c), CONTROLLER_INDEX) => {
                        Node::Controller(Controller::new(ControllerConfig {
                            cluster: c.clone(),
                            preferred_leader_election: true,
                            racks: Vec::new(),
                            metadata_bytes_max: u64::MAX,
                        }))
                    }
                    (Some(c), i) => Node::Broker(Broker::new(BrokerConfig {
                        broker_id: i as BrokerId,
                        cluster: c.clone(),
                    })),
                    (None, _) => {
                        skipped.get_or_insert_with(|| {
                            "the traces hold no controller or broker".to_string()
                        });
                        Node::Controller(Controller::new(ControllerConfig {
                            cluster: Arc::new(placeholder_cluster()),
                            preferred_leader_election: false,
                            racks: Vec::new(),
                            metadata_bytes_max: u64::MAX,
                        }))
                    }
                })
            })
            .collect();
        // The topic the producers write, and its partitions.
        let topic = procs
            .iter()
            .find_map(|p| match &p.actor {
                Node::Producer(pr) => Some(pr.config.topic),
                _ => None,
            })
            .unwrap_or_else(|| Topic::new(""));
        let partitions = procs
            .iter()
            .filter_map(|p| match &p.actor {
                Node::Producer(pr) => pr.config.records.iter().map(|(p, _)| *p + 1).max(),
                Node::Consumer(c) if c.config.topic_partition.topic == topic => {
                    Some(c.config.topic_partition.partition + 1)
                }
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let first_producer = procs.iter().find_map(|p| match &p.actor {
            Node::Producer(pr) => Some(pr.config.clone()),
            _ => None,
        });
        let controller_restarts = procs
            .iter()
            .filter(|p| matches!(p.actor, Node::Controller(_)))
            .count()
            > 1;
        let knobs = Knobs {
            brokers: brokers as u32,
            partitions,
            replication_factor: brokers.max(1) as u32,
            min_insync_replicas: 1,
            acks: first_producer.as_ref().map(|p| p.acks).unwrap_or(Acks::All),
            idempotence: first_producer
                .as_ref()
                .is_some_and(|p| p.idempotence.is_some()),
            producers: producers.len() as u32,
            consumers: consumers.len() as u32,
            records: u32::from(!producers.is_empty()),
            // The run's own limits, which I24, I25 and I28 hold it to.
            fetch_bytes_max: cluster.as_ref().map_or(u32::MAX, |c| c.fetch_bytes_max),
            batch_bytes_max: first_producer
                .as_ref()
                .map_or(u32::MAX, |p| p.batch_bytes_max),
            producer_attempts_max: first_producer.as_ref().map_or(u32::MAX, |p| p.attempts_max),
            // A real run may crash anything and suspect anyone: every property that such runs
            // can break applies.
            broker_crashes: 1,
            controller_crashes: u32::from(controller_restarts),
            leader_epoch_max: u32::MAX,
            network: crate::knobs::Network {
                ordered: true,
                duplicating: false,
                lossy: true,
            },
            protocol: cluster
                .as_ref()
                .map(|c| c.protocol)
                .unwrap_or(Knobs::canonical().protocol),
            false_suspicions: true,
            metadata_pulls: 1,
            metadata_pull: cluster.as_ref().is_none_or(|c| c.metadata_pull),
            hwm_under_min_isr: cluster.as_ref().is_some_and(|c| c.hwm_under_min_isr),
            eligible_leader_replicas: cluster.as_ref().is_some_and(|c| c.eligible_leader_replicas),
            ..Knobs::canonical()
        };
        let model = WatermarkModel::hosting(knobs, topic, filled);
        let always: Vec<PropertyDef> = if skipped.is_some() {
            Vec::new()
        } else {
            model
                .checked
                .iter()
                .filter(|p| p.expectation == Expectation::Always)
                .cloned()
                .collect()
        };
        let actor_states: Vec<Arc<Hashed<NodeState>>> = model
            .inner
            .actors
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(a.on_start(Id::from(i), &None, &mut Out::new())))
            .collect();
        let n = actor_states.len();
        let state = State {
            actor_states,
            network: Network::new_ordered([]),
            timers_set: vec![Default::default(); n],
            random_choices: vec![Default::default(); n],
            // Nothing has started yet: every actor counts as down until its first start.
            crashed: vec![true; n],
            history: Ghost::default(),
            actor_storages: vec![None; n],
        };
        let mut by_incarnation = HashMap::new();
        for (i, p) in procs.iter().enumerate() {
            by_incarnation.insert((p.address, p.incarnation), i);
        }
        let mut heap = BinaryHeap::new();
        for i in firsts {
            heap.push(Reverse((procs[i].records[0].at_us, i)));
        }
        let mut v = Validation {
            procs,
            model,
            always,
            properties_skipped: skipped,
            state,
            channels: HashMap::new(),
            waiting: HashMap::new(),
            by_incarnation,
            heap,
            saved: vec![(None, None); n],
            started,
            events: 0,
            mismatches: Vec::new(),
            violations: Vec::new(),
            violated: HashSet::new(),
            external_messages: 0,
            recoveries_checked: 0,
            recoveries_with_cut_logs: 0,
            torn_tails: Vec::new(),
            context: VecDeque::new(),
            every_step: false,
            evaluated: None,
            evaluations: 0,
            frozen: None,
            steps: 0,
        };
        ghost::observe(&v.model, None, None, &mut v.state);
        v
    }

    /// Merges and replays every process in causal order.
    fn run(&mut self) {
        loop {
            while let Some(Reverse((_, p))) = self.heap.pop() {
                self.try_step(p, false);
            }
            // Whatever still waits waits for a message its sender never sent on that channel.
            let mut parked: Vec<usize> = self.waiting.drain().flat_map(|(_, v)| v).collect();
            if parked.is_empty() {
                break;
            }
            parked.sort_by_key(|p| self.procs[*p].records[self.procs[*p].cursor].at_us);
            let first = parked[0];
            self.try_step(first, true);
            for p in parked.into_iter().skip(1) {
                let at = self.procs[p].records[self.procs[p].cursor].at_us;
                self.heap.push(Reverse((at, p)));
            }
        }
    }

    /// Runs process `p`'s next step if causality allows (or `force`), then schedules its next.
    fn try_step(&mut self, p: usize, force: bool) {
        let cursor = self.procs[p].cursor;
        let record = &self.procs[p].records[cursor];
        if let Event::Deliver {
            src,
            sender_incarnation,
            payload,
            sequence,
        } = &record.event
        {
            let key = (address_of(*src), *sender_incarnation, self.procs[p].address);
            let traced = self.by_incarnation.contains_key(&(key.0, key.1));
            if !traced {
                self.external_messages += 1;
            } else {
                let wanted = trace::message_digest(Some(payload));
                let queue = self.channels.entry(key).or_default();
                match queue.iter().position(|d| *d == wanted) {
                    Some(i) => {
                        queue.drain(..=i);
                    }
                    None if !force => {
                        self.waiting.entry(key).or_default().push(p);
                        return;
                    }
                    None => {
                        let detail = format!(
                            "delivered message {sequence} from {} (incarnation {:#x}), which that \
                             incarnation never sent to {} after the messages delivered before it \
                             on that channel",
                            key.0, key.1, key.2
                        );
                        self.finding(p, cursor, "causality", detail, true);
                    }
                }
            }
        }
        self.replay(p);
        self.procs[p].cursor += 1;
        let proc = &self.procs[p];
        if proc.cursor < proc.records.len() {
            self.heap
                .push(Reverse((proc.records[proc.cursor].at_us, p)));
        } else if let Some(next) = proc.successor {
            self.heap
                .push(Reverse((self.procs[next].records[0].at_us, next)));
        }
    }

    /// Replays process `p`'s current record, compares it and updates the global state.
    fn replay(&mut self, p: usize) {
        self.events += 1;
        let cursor = self.procs[p].cursor;
        let index = self.procs[p].index;
        let id = Id::from(index);
        let record = self.procs[p].records[cursor].clone();
        let mut out = Out::new();
        let last = self.state.clone();
        let (next_state, action, heading) = match &record.event {
            Event::Start {
                actor,
                id: real_id,
                storage,
                ..
            } => {
                self.check_recovery(p, storage.as_ref());
                let s = actor.on_start(*real_id, storage, &mut out);
                self.procs[p].timers.clear();
                if self.procs[p].index < self.state.actor_storages.len() {
                    self.state.actor_storages[index] = storage.clone().map(Hashed::new);
                }
                let what = if storage.is_some() {
                    "restarts"
                } else {
                    "starts"
                };
                (
                    s,
                    ActorModelAction::Recover(id),
                    format!(
                        "{} {what} at {} (incarnation {:#x})",
                        self.model.actor_name(index),
                        self.procs[p].address,
                        self.procs[p].incarnation
                    ),
                )
            }
            Event::Deliver {
                src,
                sender_incarnation,
                payload,
                ..
            } => {
                let Ok(msg) = codec::decode::<Msg>(payload) else {
                    self.finding(
                        p,
                        cursor,
                        "mismatch",
                        "a delivered message does not decode".into(),
                        false,
                    );
                    return;
                };
                let before = self.procs[p].state.clone().expect("started");
                let mut cow = Cow::Borrowed(&**before);
                self.procs[p].actor.on_msg(
                    address_id(&self.procs[p]),
                    &mut cow,
                    *src,
                    msg.clone(),
                    &mut out,
                );
                let src_index = self
                    .by_incarnation
                    .get(&(address_of(*src), *sender_incarnation))
                    .map(|q| self.procs[*q].index);
                let from = match src_index {
                    Some(i) => self.model.actor_name(i),
                    None => format!("{} (no trace)", address_of(*src)),
                };
                let heading = format!(
                    "{} handles {msg:?} from {from}",
                    self.model.actor_name(index)
                );
                (
                    cow.into_owned(),
                    ActorModelAction::Deliver {
                        src: Id::from(src_index.unwrap_or(index)),
                        dst: id,
                        msg,
                    },
                    heading,
                )
            }
            Event::Timeout { timer } => {
                if !self.procs[p].timers.remove(timer) {
                    self.finding(
                        p,
                        cursor,
                        "mismatch",
                        format!("timer {timer:?} fired while not set"),
                        false,
                    );
                }
                let before = self.procs[p].state.clone().expect("started");
                let mut cow = Cow::Borrowed(&**before);
                self.procs[p].actor.on_timeout(
                    address_id(&self.procs[p]),
                    &mut cow,
                    timer,
                    &mut out,
                );
                (
                    cow.into_owned(),
                    ActorModelAction::Timeout(id, timer.clone()),
                    format!("{}: timer {timer:?} fires", self.model.actor_name(index)),
                )
            }
        };
        // The effects the actor produced against those the host recorded.
        let commands: Vec<_> = out.into_iter().collect();
        let effects = trace::effects::<Node>(&commands, &trace::encode_sends::<Node>(&commands));
        if effects != record.effects {
            let detail = describe_effects(&commands, &record.effects);
            self.finding(p, cursor, "mismatch", detail, false);
        }
        let hash = digest(&next_state);
        if hash != record.state_hash {
            self.finding(
                p,
                cursor,
                "mismatch",
                "the state after the step is not the state the host had (hashes differ)".into(),
                false,
            );
        }
        // What the host did, for the channels, the timers and the saves.
        let (address, incarnation) = (self.procs[p].address, self.procs[p].incarnation);
        for e in &record.effects {
            if let Effect::Send { to, digest } = e {
                if *to == application() {
                    continue; // A client's output to its application, not traffic.
                }
                let key = (address, incarnation, address_of(*to));
                self.channels.entry(key).or_default().push_back(*digest);
                if let Some(waiters) = self.waiting.remove(&key) {
                    for w in waiters {
                        let at = self.procs[w].records[self.procs[w].cursor].at_us;
                        self.heap.push(Reverse((at, w)));
                    }
                }
            }
        }
        let mut saved_in_step = None;
        let mut deliveries = Vec::new();
        for c in &commands {
            match c {
                Command::Send(to, m) if *to == application() => deliveries.push(m),
                Command::SetTimer(t, _) => {
                    self.procs[p].timers.insert(t.clone());
                }
                Command::CancelTimer(t) => {
                    self.procs[p].timers.remove(t);
                }
                Command::Save(s) => saved_in_step = Some(s.clone()),
                _ => {}
            }
        }
        if let Some(s) = saved_in_step {
            let before = self.saved[index].1.take();
            self.saved[index] = (before, Some(s.clone()));
            self.state.actor_storages[index] = Some(Hashed::new(s));
        }
        let next_state = Arc::new(Hashed::new(next_state));
        self.procs[p].state = Some(next_state.clone());
        // The global state and the properties.
        let changed = last.actor_states[index] != next_state || last.crashed[index];
        if matches!(record.event, Event::Start { .. }) && !last.crashed[index] {
            // The previous incarnation's end is not in the trace (kill -9): it crashed here.
            let mut crashed = self.state.clone();
            crashed.crashed[index] = true;
            let crash = ActorModelAction::Crash(id);
            let before_crash = self.state.clone();
            self.state = crashed;
            self.after_step(
                p,
                cursor,
                &before_crash,
                &crash,
                format!("{} crashes", self.model.actor_name(index)),
                record.at_us,
            );
        }
        let last = self.state.clone();
        self.state.actor_states[index] = next_state;
        self.state.crashed[index] = false;
        // What a client handed its application: the ghost keeps it, as in the checker.
        for m in &deliveries {
            self.state.history.record_delivery(index, m);
        }
        if changed {
            self.after_step(p, cursor, &last, &action, heading, record.at_us);
        }
    }

    /// The ghost, the context and every Always property after a step.
    fn after_step(
        &mut self,
        p: usize,
        cursor: usize,
        last: &State,
        action: &Action,
        heading: String,
        at_us: u64,
    ) {
        ghost::observe(&self.model, Some(last), Some(action), &mut self.state);
        self.steps += 1;
        if self.frozen.is_none() {
            self.context.push_back((
                self.steps,
                format!("[{}] {heading}", format_time(at_us)),
                last.clone(),
                self.state.clone(),
            ));
            while self.context.len() > CONTEXT_STEPS {
                self.context.pop_front();
            }
        }
        // The properties read only what the footprint covers: unchanged, they hold as before.
        let print = footprint(&self.state);
        if !self.every_step && self.evaluated == Some(print) {
            return;
        }
        self.evaluated = Some(print);
        self.evaluations += 1;
        let failed: Vec<&'static str> = self
            .always
            .iter()
            .filter(|prop| !self.violated.contains(prop.name))
            .filter(|prop| !(prop.condition)(&self.model, &self.state))
            .map(|prop| prop.name)
            .collect();
        for name in failed {
            self.violated.insert(name);
            let id = self
                .always
                .iter()
                .find(|q| q.name == name)
                .map(|q| q.id)
                .unwrap_or("");
            self.finding(
                p,
                cursor,
                name,
                format!("{id} {name} fails after this step"),
                true,
            );
        }
    }

    /// Checks what process `p` loaded against what the previous incarnation at its index saved.
    fn check_recovery(&mut self, p: usize, loaded: Option<&Storage>) {
        let index = self.procs[p].index;
        let is_later_incarnation = self.procs.iter().any(|q| q.successor == Some(p));
        if !is_later_incarnation {
            return;
        }
        let (before_last, last) = self.saved[index].clone();
        self.recoveries_checked += 1;
        let candidates: Vec<Option<&Storage>> = match (&before_last, &last) {
            (b, Some(l)) => vec![Some(l), b.as_ref()],
            (_, None) => vec![None],
        };
        let mut reasons = Vec::new();
        for c in &candidates {
            match recovered_from(loaded, *c) {
                Ok(cut) => {
                    if cut {
                        self.recoveries_with_cut_logs += 1;
                    }
                    return;
                }
                Err(why) => reasons.push(why),
            }
        }
        let detail = format!(
            "loaded storage that the previous incarnation never saved: {}",
            reasons.join("; or ")
        );
        self.finding(p, 0, "recovery", detail, false);
    }

    fn finding(&mut self, p: usize, step: usize, kind: &str, detail: String, violation: bool) {
        let proc = &self.procs[p];
        let f = Finding {
            kind: kind.to_string(),
            process: proc.name(&self.model.actor_name(proc.index)),
            step,
            at_us: proc.records[step].at_us,
            detail,
        };
        if self.frozen.is_none() {
            let mut context: Vec<TraceStep> = self
                .context
                .iter()
                .map(|(step, heading, last, next)| TraceStep {
                    step: *step,
                    heading: heading.clone(),
                    effects: ctrace::effects(&self.model, last, next),
                    state: ctrace::state_table(&self.model, next)
                        .into_iter()
                        .map(abbreviate)
                        .collect(),
                })
                .collect();
            if violation || kind == "recovery" {
                // The step is in the context already (properties), or is the start itself.
            } else {
                context.push(TraceStep {
                    step: self.steps + 1,
                    heading: format!(
                        "[{}] {}: step {step} does not replay",
                        format_time(f.at_us),
                        f.process
                    ),
                    effects: vec![f.detail.clone()],
                    state: Vec::new(),
                });
            }
            self.frozen = Some(context);
        }
        if violation {
            self.violations.push(f);
        } else {
            self.mismatches.push(f);
        }
    }

    fn report(mut self) -> ValidationReport {
        let wall_s = self.started.elapsed().as_secs_f64();
        let nodes: HashSet<SocketAddrV4> = self.procs.iter().map(|p| p.address).collect();
        // Messages to processes without a trace (admin tools) are not counted as lost.
        let lost_messages = self
            .channels
            .iter()
            .filter(|((_, _, to), _)| nodes.contains(to))
            .map(|(_, q)| q.len() as u64)
            .sum();
        ValidationReport {
            nodes: nodes.len(),
            processes: self.procs.len(),
            events: self.events,
            mismatches: std::mem::take(&mut self.mismatches),
            violations: std::mem::take(&mut self.violations),
            external_messages: self.external_messages,
            lost_messages,
            recoveries_checked: self.recoveries_checked,
            recoveries_with_cut_logs: self.recoveries_with_cut_logs,
            properties: self.always.iter().map(|p| p.name).collect(),
            properties_skipped: self.properties_skipped.clone(),
            torn_tails: std::mem::take(&mut self.torn_tails),
            evaluations: self.evaluations,
            wall_s,
            events_per_s: self.events as f64 / wall_s.max(1e-9),
            trace: self.frozen.take().unwrap_or_default(),
        }
    }
}

/// A digest of everything the Always properties read (section 8): each broker's liveness,
/// metadata and replicas (partition state, log, high watermark, leadership), the controller's
/// state, each client's acknowledgements or consumed records, and the ghost's committed records
/// and latched violations. Logs and lists enter by their digests and lengths, so this is cheap;
/// followers' fetch positions, delayed requests, timers and the like are left out, since no
/// Always property reads them.
fn footprint(state: &State) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for (i, s) in state.actor_states.iter().enumerate() {
        state.crashed[i].hash(&mut h);
        match &***s {
            NodeState::Broker(b) => {
                b.metadata.hash(&mut h);
                for (tp, r) in b.replicas.iter() {
                    (tp, &r.partition, &r.log, r.high_watermark, r.is_leader()).hash(&mut h);
                }
            }
            NodeState::Controller(c) => c.hash(&mut h),
            NodeState::Kraft(k) => k.hash(&mut h),
            NodeState::Producer(_) | NodeState::Consumer(_) => {}
        }
        let (acked, consumed) = (state.history.acked(i), state.history.consumed(i));
        (acked.len(), acked.last(), consumed.len(), consumed.last()).hash(&mut h);
    }
    state.history.violations.hash(&mut h);
    for c in &state.history.histories().committed {
        c.len().hash(&mut h);
    }
    h.finish()
}

/// A state line cut to [`STATE_LINE_CHARS_MAX`]: a real run's logs hold thousands of entries.
fn abbreviate(line: String) -> String {
    if line.chars().count() <= STATE_LINE_CHARS_MAX {
        return line;
    }
    let kept: String = line.chars().take(STATE_LINE_CHARS_MAX).collect();
    format!("{kept} …")
}

fn address_id(p: &Process) -> Id {
    Id::from(p.address)
}

fn format_time(at_us: u64) -> String {
    let s = at_us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        at_us % 1_000_000
    )
}

/// What the actor produced, against what the host recorded.
fn describe_effects(
    commands: &[Command<Msg, Timer, PowerLoss, Storage>],
    recorded: &[Effect],
) -> String {
    let replayed: Vec<String> = commands
        .iter()
        .map(|c| match c {
            Command::Save(_) => "save".to_string(),
            Command::Send(to, m) => format!("send {} to {}", msg_name(m), address_of(*to)),
            Command::SetTimer(t, _) => format!("set timer {t:?}"),
            Command::CancelTimer(t) => format!("cancel timer {t:?}"),
            Command::ChooseRandom(..) => "choose".to_string(),
        })
        .collect();
    let host: Vec<String> = recorded
        .iter()
        .map(|e| match e {
            Effect::Save { .. } => "save".to_string(),
            Effect::Send { to, .. } => format!("send to {}", address_of(*to)),
            Effect::SetTimer { .. } => "set timer".to_string(),
            Effect::CancelTimer { .. } => "cancel timer".to_string(),
            Effect::ChooseRandom => "choose".to_string(),
        })
        .collect();
    format!(
        "the model does [{}], the host did [{}]",
        replayed.join(", "),
        host.join(", ")
    )
}

fn msg_name(m: &Msg) -> String {
    let s = format!("{m:?}");
    s.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

/// Whether `loaded` is what a store that last saved `saved` may load: the same, with high
/// watermark checkpoints that may lag, and logs that a power loss may have cut to a prefix.
/// `Ok(true)` when a log was cut.
fn recovered_from(loaded: Option<&Storage>, saved: Option<&Storage>) -> Result<bool, String> {
    match (loaded, saved) {
        (None, None) => Ok(false),
        (Some(Storage::Controller(a)), Some(Storage::Controller(b))) if a == b => Ok(false),
        (Some(Storage::Controller(_)), Some(Storage::Controller(_))) => {
            Err("the controller's storage differs from the last saved".into())
        }
        (Some(Storage::Broker(a)), Some(Storage::Broker(b))) => broker_recovered_from(a, b),
        (Some(Storage::Quorum(a)), Some(Storage::Quorum(b))) if a == b => Ok(false),
        (Some(Storage::Quorum(_)), Some(Storage::Quorum(_))) => {
            Err("the controller's quorum storage differs from the last saved".into())
        }
        (l, s) => Err(format!(
            "loaded {}, last saved {}",
            if l.is_some() { "something" } else { "nothing" },
            if s.is_some() { "something" } else { "nothing" }
        )),
    }
}

fn broker_recovered_from(loaded: &BrokerStorage, saved: &BrokerStorage) -> Result<bool, String> {
    if loaded.broker_epoch != saved.broker_epoch
        || loaded.controller_epoch != saved.controller_epoch
    {
        return Err("broker or controller epoch differs".into());
    }
    let mut cut = false;
    let tps_loaded: Vec<_> = loaded.replicas.keys().collect();
    let tps_saved: Vec<_> = saved.replicas.keys().collect();
    if tps_loaded != tps_saved {
        return Err("a different set of replicas".into());
    }
    for (tp, s) in saved.replicas.iter() {
        let Some(l) = loaded.replicas.get(tp) else {
            return Err(format!("{tp:?} missing"));
        };
        if l.partition != s.partition {
            return Err(format!("{tp:?}: a different partition state"));
        }
        if l.high_watermark > s.high_watermark {
            return Err(format!(
                "{tp:?}: high watermark {} above the saved {}",
                l.high_watermark, s.high_watermark
            ));
        }
        if l.log != s.log {
            let prefix = l.log.log_end_offset() < s.log.log_end_offset()
                && l.log.entries().zip(s.log.entries()).all(|(a, b)| a == b);
            if !prefix {
                return Err(format!(
                    "{tp:?}: a log of {} entries that is not a prefix of the saved {}",
                    l.log.log_end_offset(),
                    s.log.log_end_offset()
                ));
            }
            cut = true;
        }
    }
    let mut rest_l = loaded.clone();
    let mut rest_s = saved.clone();
    rest_l.replicas = Default::default();
    rest_s.replicas = Default::default();
    if rest_l != rest_s {
        return Err("broker metadata differs".into());
    }
    Ok(cut)
}

fn placeholder_cluster() -> ClusterConfig {
    ClusterConfig {
        controller: Id::from(0),
        controllers: Vec::new(),
        brokers: Vec::new(),
        protocol: Knobs::canonical().protocol,
        fetch_bytes_max: 1,
        retransmit: false,
        heartbeat_periodic: false,
        metadata_pull: true,
        hwm_under_min_isr: false,
        eligible_leader_replicas: false,
        timing: Timing::model(),
        offsets_topic_num_partitions: 1,
        topics: Vec::new(),
    }
}

/// The JSON report: `{"nodes", "events", "mismatches", "violations", ...}`.
pub fn json(report: &ValidationReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_default()
}
