//! The cluster file, real timings, and running one node (controller or broker) as a process.
//!
//! The cluster file is JSON, like this (timings in milliseconds, all optional):
//!
//! ```json
//! {
//!   "controller": "127.0.0.1:9091",
//!   "brokers": [
//!     { "id": 1, "address": "127.0.0.1:9092", "rack": "a" },
//!     { "id": 2, "address": "127.0.0.1:9093", "rack": "b" }
//!   ],
//!   "timing_ms": { "session_timeout": 3000 },
//!   "cluster_key": "64 hex digits"
//! }
//! ```
//!
//! A KRaft quorum of controllers (spec section 4b) lists every controller's address in
//! `controllers`, controller 1's (`controller`) first: `"controllers": ["127.0.0.1:9091",
//! "127.0.0.1:9095", "127.0.0.1:9096"]`. Controller `n` is `controllers[n - 1]`, KRaft's
//! `controller.quorum.voters`.
//!
//! It is the only place that maps broker ids to socket addresses; the actors get the mapping as
//! configuration and never compute with an address.
//!
//! `cluster_key` is the 32-byte key with which nodes authenticate every datagram they send
//! (HMAC-SHA256, see [`transport`](crate::transport)). `cluster up` generates one for a new
//! cluster, and the file is written readable by its owner only (mode 0600). Clients never need
//! it. A file without a key still loads: its nodes then authenticate nothing.

use crate::faults::FaultsFile;
use crate::host::{bind, Admission, Breakage, Host};
use crate::store::{BrokerStore, ControllerStore, FsyncPolicy, QuorumStore};
use crate::trace::TraceWriter;
use crate::transport::{Key, Limits, TransportConfig};
use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use std::io;
use std::net::SocketAddrV4;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use watermark_model::kraft::KraftController;
use watermark_model::quorum::{NodeId, QuorumConfig, QuorumNode, QuorumTiming};
use watermark_model::*;

/// `replica.fetch.max.bytes` and the clients' `fetch.max.bytes` and `batch.size`: under one
/// datagram (60 KiB), since each record costs at most `RECORD_OVERHEAD_BYTES` more on the wire,
/// so that a batch travels unfragmented (a lost fragment would lose the whole batch).
pub const BATCH_BYTES_MAX: u32 = 48 * 1024;
/// What the controller lets the whole partition table take in one message (R46): the
/// transport's message limit, less room for the message's own fields and the broker list.
pub const METADATA_BYTES_MAX: u64 = crate::transport::MESSAGE_BYTES_MAX as u64 - 64 * 1024;
/// The largest record value the tools accept, so that any single record fits in a datagram.
pub const VALUE_BYTES_MAX: usize = 32 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerEntry {
    pub id: BrokerId,
    pub address: SocketAddrV4,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Where the broker serves Prometheus metrics over HTTP (TCP), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddrV4>,
}

/// Real timer durations, in milliseconds. Each timer fires somewhere in `[d, d + d/5)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TimingMs {
    /// `broker.session.timeout.ms` (Kafka: 9000).
    pub session_timeout: u64,
    /// `broker.heartbeat.interval.ms` (Kafka: 2000).
    pub heartbeat_interval: u64,
    /// Half of `replica.lag.time.max.ms` (Kafka: 30000).
    pub isr_shrink_interval: u64,
    /// `replica.fetch.backoff.ms`, `retry.backoff.ms` (Kafka: 1000, 100).
    pub retry_backoff: u64,
    /// `request.timeout.ms` (Kafka: 30000).
    pub request_timeout: u64,
    /// `leader.imbalance.check.interval.seconds`, in ms (Kafka: 300000).
    pub preferred_leader_election_interval: u64,
    /// `controller.quorum.election.timeout.ms` (Kafka: 1000).
    pub quorum_election_timeout: u64,
    /// `controller.quorum.fetch.timeout.ms` (Kafka: 2000).
    pub quorum_fetch_timeout: u64,
    /// `controller.quorum.fetch.max.wait.ms`: how long the quorum's leader holds a fetch with
    /// nothing new (Kafka's `fetch.max.wait.ms` for the metadata log: 500).
    pub quorum_fetch_max_wait: u64,
}

impl Default for TimingMs {
    fn default() -> Self {
        TimingMs {
            session_timeout: 3000,
            heartbeat_interval: 300,
            isr_shrink_interval: 10_000,
            retry_backoff: 50,
            request_timeout: 1000,
            preferred_leader_election_interval: 30_000,
            quorum_election_timeout: 1000,
            quorum_fetch_timeout: 2000,
            quorum_fetch_max_wait: 500,
        }
    }
}

impl TimingMs {
    /// The tools' producer and consumer: `request.timeout.ms` above the brokers' session
    /// timeout (Kafka: 30 s against 9 s), so that an `acks=all` request held while a dead
    /// follower is still in the ISR is not retried, and duplicated, before the ISR shrinks.
    pub fn client() -> Self {
        TimingMs {
            request_timeout: 5000,
            ..TimingMs::default()
        }
    }

    /// The tools' producer. Without idempotence, as [`TimingMs::client`]: a retry would write
    /// the batch again. With it, a retry is recognised (R19) and costs nothing but a datagram,
    /// so the producer gives up on an unanswered request after 1 s (the brokers' own
    /// `request.timeout.ms`) and asks for fresh metadata: over UDP no broken connection tells it
    /// that its leader died, and this timeout is what bounds the time until it finds the new one.
    pub fn producer(idempotent: bool) -> Self {
        if idempotent {
            TimingMs::default()
        } else {
            TimingMs::client()
        }
    }
}

fn jittered(ms: u64) -> Range<Duration> {
    let d = Duration::from_millis(ms.max(1));
    d..d + d / 5 + Duration::from_millis(1)
}

impl TimingMs {
    pub fn timing(&self) -> Timing {
        Timing {
            // The controller re-arms the session timer on every heartbeat: no jitter needed.
            session_timeout: Duration::from_millis(self.session_timeout)
                ..Duration::from_millis(self.session_timeout + 1),
            heartbeat_interval: jittered(self.heartbeat_interval),
            isr_shrink_interval: jittered(self.isr_shrink_interval),
            retry_backoff: jittered(self.retry_backoff),
            request_timeout: jittered(self.request_timeout),
            preferred_leader_election_interval: jittered(self.preferred_leader_election_interval),
        }
    }

    /// The quorum's timers. The election timeout is drawn from `[t, 2t)`, as KRaft randomizes
    /// it, so that split votes end. A held fetch is answered within a quarter of the fetch
    /// timeout at most, whatever `quorum_fetch_max_wait` says: a follower must hear from a quiet
    /// leader well before it gives up on it, or it stands against a live leader. A fetch is
    /// sent again after twice the max wait (at most a third of the fetch timeout): over UDP a
    /// fetch or its answer may be lost, which must not pass for a dead leader.
    pub fn quorum_timing(&self) -> QuorumTiming {
        let election = Duration::from_millis(self.quorum_election_timeout.max(1));
        let fetch_max_wait = self
            .quorum_fetch_max_wait
            .min(self.quorum_fetch_timeout / 4);
        // A lost fetch is sent again twice before the fetch timeout gives up on the leader.
        let fetch_retry = (fetch_max_wait * 2).min(self.quorum_fetch_timeout / 3);
        QuorumTiming {
            election_timeout: election..election * 2,
            fetch_timeout: jittered(self.quorum_fetch_timeout),
            fetch_max_wait: Some(jittered(fetch_max_wait)),
            fetch_retry: Some(jittered(fetch_retry)),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterFile {
    /// Controller 1's address.
    pub controller: SocketAddrV4,
    /// A KRaft quorum's controllers, controller 1's first; empty for a single controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<SocketAddrV4>,
    pub brokers: Vec<BrokerEntry>,
    #[serde(default)]
    pub timing_ms: TimingMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_key: Option<Key>,
    /// KIP-966's eligible leader replicas (`eligible.leader.replicas.version=1`): R52–R54.
    #[serde(default)]
    pub eligible_leader_replicas: bool,
    /// Where the controller serves Prometheus metrics over HTTP (TCP), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_metrics: Option<SocketAddrV4>,
}

impl ClusterFile {
    /// Where a node serves its metrics, if the file says.
    pub fn metrics_address(&self, role: Role) -> Option<SocketAddrV4> {
        match role {
            Role::Controller(1) => self.controller_metrics,
            Role::Controller(_) => None,
            Role::Broker(id) => self.broker(id).and_then(|b| b.metrics),
        }
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read cluster file {}: {e}", path.display()))?;
        let file: ClusterFile = serde_json::from_str(&text)
            .map_err(|e| format!("cluster file {} is not valid: {e}", path.display()))?;
        file.validate()
            .map_err(|e| format!("cluster file {}: {e}", path.display()))?;
        Ok(file)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.is_empty() {
            return Err("no brokers".into());
        }
        let mut ids: Vec<BrokerId> = self.brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("duplicate broker id".into());
        }
        if !self.controllers.is_empty() && self.controllers[0] != self.controller {
            return Err(format!(
                "controllers must start with controller 1's address, {}",
                self.controller
            ));
        }
        let mut addresses: Vec<SocketAddrV4> = self.brokers.iter().map(|b| b.address).collect();
        addresses.extend(self.controller_addresses());
        if let Some(a) = addresses
            .iter()
            .find(|a| a.ip().is_unspecified() || a.port() == 0)
        {
            // Nodes send to these addresses and authenticate by them: each must be one.
            return Err(format!("{a} is not an address a node can be reached at"));
        }
        addresses.sort_unstable();
        if addresses.windows(2).any(|w| w[0] == w[1]) {
            return Err("two nodes share an address".into());
        }
        Ok(())
    }

    /// Writes the file atomically, readable and writable by its owner only: it holds the key.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)? + "\n";
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Every node's address: the controllers', then the brokers'.
    pub fn node_addresses(&self) -> Vec<SocketAddrV4> {
        self.controller_addresses()
            .into_iter()
            .chain(self.brokers.iter().map(|b| b.address))
            .collect()
    }

    /// Every controller's address, controller 1's first.
    pub fn controller_addresses(&self) -> Vec<SocketAddrV4> {
        match self.controllers.is_empty() {
            true => vec![self.controller],
            false => self.controllers.clone(),
        }
    }

    /// Controller `n`'s address (from 1).
    pub fn controller_address(&self, n: NodeId) -> Option<SocketAddrV4> {
        let i = (n as usize).checked_sub(1)?;
        self.controller_addresses().get(i).copied()
    }

    /// Whether the controllers are a KRaft quorum (more than one).
    pub fn has_controller_quorum(&self) -> bool {
        self.controllers.len() > 1
    }

    /// Asked of every datagram's sender by the admission policies: no allocation.
    fn is_controller(&self, id: Id) -> bool {
        Id::from(self.controller) == id || self.controllers.iter().any(|a| Id::from(*a) == id)
    }

    /// The quorum's configuration for controller `n`: every controller a voter.
    pub fn quorum_config(&self, n: NodeId) -> QuorumConfig {
        QuorumConfig {
            node_id: n,
            voters: self
                .controller_addresses()
                .iter()
                .enumerate()
                .map(|(i, a)| (i as NodeId + 1, Id::from(*a)))
                .collect(),
            changes: Vec::new(),
            fetch_entries_max: QUORUM_FETCH_ENTRIES_MAX,
            bootstrapped: true,
            timing: self.timing_ms.quorum_timing(),
        }
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerEntry> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// What every node shares: brokers in id order, no topics at first (they are created with
    /// CreateTopics), retransmission and steady heartbeats on, the current protocol (KIP-320).
    pub fn cluster_config(&self) -> Arc<ClusterConfig> {
        let mut brokers: Vec<(BrokerId, Id)> = self
            .brokers
            .iter()
            .map(|b| (b.id, Id::from(b.address)))
            .collect();
        brokers.sort_by_key(|(b, _)| *b);
        Arc::new(ClusterConfig {
            controller: Id::from(self.controller),
            controllers: match self.has_controller_quorum() {
                true => self.controllers.iter().map(|a| Id::from(*a)).collect(),
                false => Vec::new(),
            },
            brokers,
            protocol: Protocol::Kip320,
            fetch_bytes_max: BATCH_BYTES_MAX,
            retransmit: true,
            heartbeat_periodic: true,
            metadata_pull: true,
            hwm_under_min_isr: false,
            eligible_leader_replicas: self.eligible_leader_replicas,
            timing: self.timing_ms.timing(),
            offsets_topic_num_partitions: OFFSETS_TOPIC_NUM_PARTITIONS,
            topics: Vec::new(),
        })
    }

    fn is_broker(&self, id: Id) -> bool {
        self.brokers.iter().any(|b| Id::from(b.address) == id)
    }
}

/// Metadata records per quorum fetch response: each controller record holds the whole
/// partition table, which alone may take most of a message (R46's `metadata.bytes.max`).
pub const QUORUM_FETCH_ENTRIES_MAX: usize = 1;

/// `offsets.topic.num.partitions` of the real cluster (Kafka's default is 50; a test cluster
/// here has a handful of brokers).
pub const OFFSETS_TOPIC_NUM_PARTITIONS: u32 = 3;

/// Which messages a broker takes from whom: controller requests from the controller only,
/// replication traffic from brokers only (a follower's fetch from that follower's address),
/// client requests from anyone. With a key (`keyed`), every message only a node may send must
/// also be authenticated: the address alone can be forged.
pub fn broker_admission(file: &ClusterFile, keyed: bool) -> Admission<Msg> {
    let file = file.clone();
    Box::new(move |src, msg, authenticated| {
        let from_node = !keyed || authenticated;
        match msg {
            Msg::LeaderAndIsr { .. }
            | Msg::UpdateMetadata { .. }
            | Msg::BrokerHeartbeatResponse { .. }
            | Msg::AlterPartitionResponse { .. }
            | Msg::CreateTopicsResponse { .. }
            | Msg::DescribeTopicsResponse { .. }
            | Msg::ElectLeadersResponse { .. }
            | Msg::IncrementalAlterConfigsResponse { .. }
            | Msg::NotController { .. } => from_node && file.is_controller(src),
            Msg::Fetch(FetchRequest {
                replica_id: Some(b),
                ..
            })
            | Msg::OffsetsForLeaderEpoch { replica_id: b, .. } => {
                from_node && file.broker(*b).is_some_and(|e| Id::from(e.address) == src)
            }
            Msg::FetchResponse(_) | Msg::OffsetsForLeaderEpochResponse { .. } => {
                from_node && file.is_broker(src)
            }
            // Kafka's PLAINTEXT listener: client requests from anyone.
            Msg::Metadata { .. }
            | Msg::Produce(_)
            | Msg::Fetch(_)
            | Msg::ListOffsets { .. }
            | Msg::FindCoordinator { .. }
            | Msg::JoinGroup { .. }
            | Msg::OffsetCommit { .. }
            | Msg::OffsetFetch { .. } => true,
            Msg::CreateTopics { client, .. }
            | Msg::DescribeTopics { client, .. }
            | Msg::ElectLeaders { client, .. }
            | Msg::IncrementalAlterConfigs { client, .. } => client.is_none(),
            Msg::BrokerHeartbeat { .. }
            | Msg::AlterPartition { .. }
            | Msg::MetadataResponse { .. }
            | Msg::ProduceResponse(_)
            | Msg::ListOffsetsResponse { .. }
            | Msg::FindCoordinatorResponse { .. }
            | Msg::JoinGroupResponse { .. }
            | Msg::OffsetCommitResponse { .. }
            | Msg::OffsetFetchResponse { .. }
            | Msg::Send { .. }
            | Msg::RecordAcknowledged(_)
            | Msg::RecordConsumed(_)
            | Msg::Group(_)
            | Msg::Quorum(_)
            | Msg::DescribeQuorum
            | Msg::DescribeQuorumResponse(_) => false,
        }
    })
}

/// The controller takes broker traffic (forwarded admin requests included) from brokers only,
/// and, with a key, authenticated only. A controller of a quorum also takes the quorum's traffic
/// and forwarded admin requests from the other controllers (R74), and DescribeQuorum from
/// anyone (read-only, as kafka-metadata-quorum's).
pub fn controller_admission(file: &ClusterFile, keyed: bool) -> Admission<Msg> {
    let file = file.clone();
    Box::new(move |src, msg, authenticated| {
        let from_node = !keyed || authenticated;
        match msg {
            Msg::BrokerHeartbeat { .. } | Msg::AlterPartition { .. } => {
                from_node && file.is_broker(src)
            }
            Msg::CreateTopics { .. }
            | Msg::DescribeTopics { .. }
            | Msg::ElectLeaders { .. }
            | Msg::IncrementalAlterConfigs { .. } => {
                from_node && (file.is_broker(src) || file.is_controller(src))
            }
            Msg::Quorum(_) => from_node && file.is_controller(src),
            Msg::DescribeQuorum => file.has_controller_quorum(),
            _ => false,
        }
    })
}

/// Which node to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Controller `n`, from 1 (KRaft's `node.id` of a controller); a single controller is 1.
    Controller(NodeId),
    Broker(BrokerId),
}

/// The default data directory of a node: beside the cluster file.
pub fn default_node_dir(cluster_path: &Path, role: Role) -> PathBuf {
    let base = cluster_path.parent().unwrap_or(Path::new("."));
    match role {
        Role::Controller(1) => base.join("controller"),
        Role::Controller(n) => base.join(format!("controller-{n}")),
        Role::Broker(id) => base.join(format!("broker-{id}")),
    }
}

impl Role {
    /// As the tools print it: `controller`, `controller 2`, `broker 2`.
    pub fn name(&self) -> String {
        match self {
            Role::Controller(1) => "controller".into(),
            Role::Controller(n) => format!("controller {n}"),
            Role::Broker(id) => format!("broker {id}"),
        }
    }
}

/// How one node runs, beyond the cluster file.
#[derive(Clone, Debug, Default)]
pub struct NodeRun {
    pub fsync: FsyncPolicy,
    /// A fault rules file (see [`faults`](crate::faults)).
    pub faults: Option<PathBuf>,
    /// A trace file every step is appended to (see [`trace`](crate::trace)).
    pub trace: Option<PathBuf>,
    /// A deliberately broken host, to show that validation notices (tests only).
    pub breakage: Option<Breakage>,
    /// Serve metrics here instead of where the cluster file says.
    pub metrics: Option<SocketAddrV4>,
}

/// Runs one node until `stop` is raised, then writes its deferred checkpoint. Returns the host's
/// statistics. Its incarnation is bumped in `dir` before it sends anything.
pub fn run_node(
    file: &ClusterFile,
    role: Role,
    dir: &Path,
    run: &NodeRun,
    stop: &AtomicBool,
    on_ready: impl FnOnce(SocketAddrV4),
) -> Result<crate::host::Stats, String> {
    let fsync = run.fsync;
    let cluster = file.cluster_config();
    let keyed = file.cluster_key.is_some();
    let (address, actor, store, admission, seed) = match role {
        Role::Controller(n) => {
            let address = file
                .controller_address(n)
                .ok_or_else(|| format!("controller {n} is not in the cluster file"))?;
            // A quorum's controller record holds the partition table and each partition's
            // metadata offset, and travels whole in one quorum fetch response: half the room.
            let metadata_bytes_max = match file.has_controller_quorum() {
                true => METADATA_BYTES_MAX / 2,
                false => METADATA_BYTES_MAX,
            };
            let controller = Controller::new(ControllerConfig {
                cluster,
                preferred_leader_election: true,
                metadata_bytes_max,
                racks: file
                    .brokers
                    .iter()
                    .filter_map(|b| b.rack.clone().map(|r| (b.id, r)))
                    .collect(),
            });
            let in_dir = |e: io::Error| format!("{}: {e}", dir.display());
            let (actor, store) = match file.has_controller_quorum() {
                true => (
                    Node::Kraft(KraftController::new(
                        QuorumNode::new(file.quorum_config(n)),
                        controller,
                    )),
                    crate::store::NodeStore::Quorum(QuorumStore::new(dir, fsync).map_err(in_dir)?),
                ),
                false => (
                    Node::Controller(controller),
                    crate::store::NodeStore::Controller(
                        ControllerStore::new(dir, fsync).map_err(in_dir)?,
                    ),
                ),
            };
            // Each controller's timer jitter differs, so that their elections do not tie.
            let seed = u64::from(n - 1) << 32;
            (
                address,
                actor,
                store,
                controller_admission(file, keyed),
                seed,
            )
        }
        Role::Broker(id) => {
            let entry = file
                .broker(id)
                .ok_or_else(|| format!("broker {id} is not in the cluster file"))?;
            (
                entry.address,
                Node::Broker(Broker::new(BrokerConfig {
                    broker_id: id,
                    cluster,
                })),
                crate::store::NodeStore::Broker(
                    BrokerStore::new(dir, fsync).map_err(|e| format!("{}: {e}", dir.display()))?,
                ),
                broker_admission(file, keyed),
                u64::from(id),
            )
        }
    };
    if !keyed {
        eprintln!(
            "{}: the cluster file has no cluster_key: datagrams are not authenticated, and \
             anyone who can send from a node's address can act as that node",
            role.name()
        );
    }
    let incarnation = crate::incarnation::next_for_node(dir)
        .map_err(|e| format!("cannot record the incarnation in {}: {e}", dir.display()))?;
    let socket = bind(address).map_err(|e| format!("cannot bind {address}: {e}"))?;
    let transport = TransportConfig {
        incarnation,
        key: file.cluster_key.clone(),
        nodes: file.node_addresses(),
        limits: Limits::default(),
    };
    let trace = match &run.trace {
        Some(path) => {
            Some(TraceWriter::open(path).map_err(|e| format!("trace {}: {e}", path.display()))?)
        }
        None => None,
    };
    let faults = run.faults.as_deref().map(|path| {
        let salt = u64::from(u32::from(*address.ip())) << 16 | u64::from(address.port());
        FaultsFile::new(path, salt)
    });
    let mut host = Host::start(
        actor,
        socket,
        store,
        seed,
        Some(admission),
        transport,
        faults,
        trace,
    )
    .map_err(|e| format!("cannot start from {}: {e}", dir.display()))?;
    if let Some(b) = run.breakage {
        host.break_on_purpose(b);
    }
    if let Some(at) = run.metrics.or_else(|| file.metrics_address(role)) {
        let metrics = crate::metrics::NodeMetrics::new();
        let bound = crate::metrics::serve(at, metrics.registry())?;
        eprintln!("{}: metrics on http://{bound}/metrics", role.name());
        host.observe(Box::new(metrics));
    }
    on_ready(address);
    host.run_until(stop, |_| false)
        .map_err(|e| format!("storage failed in {}: {e}", dir.display()))?;
    host.checkpoint()
        .map_err(|e| format!("checkpoint in {}: {e}", dir.display()))?;
    Ok(host.stats())
}
