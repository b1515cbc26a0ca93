//! The real cluster's commands, shaped like Kafka's tools: `cluster up`, `controller`, `broker`,
//! `topic create`, `describe`, `produce`, `consume` (`--group`), `groups`; and `nemesis`, which
//! runs a cluster under faults. The runtime lives in `watermark-net`.

use clap::{Args, Subcommand};
use std::io::{BufRead, Write};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watermark_model::group::GroupEvent;
use watermark_model::OffsetReset;
use watermark_model::{Acks, ElectionType, Msg, Topic, TopicConfigChanges, TopicConfigs, Value};
use watermark_net::client::{self, ConsumeOptions, GroupOptions, ProduceOptions};
use watermark_net::cluster::{
    default_node_dir, run_node, ClusterFile, NodeRun, Role, TimingMs, VALUE_BYTES_MAX,
};
use watermark_net::host::Breakage;
use watermark_net::local::{LocalCluster, LocalOptions, CLUSTER_FILE_NAME};
use watermark_net::nemesis::{self, FaultKind, NemesisOptions};
use watermark_net::store::FsyncPolicy;

#[derive(Subcommand)]
pub enum NetCommand {
    /// Run a local cluster: a controller and brokers as child processes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run the controller named in a cluster file.
    Controller(ControllerArgs),
    /// Run one broker named in a cluster file.
    Broker(BrokerArgs),
    /// Manage topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Describe topics like kafka-topics --describe, with LeaderEpoch, LEO and HWM.
    Describe(DescribeArgs),
    /// Produce stdin's lines as records, like kafka-console-producer.
    Produce(ProduceArgs),
    /// Print records, like kafka-console-consumer; with --group, as a member of a consumer group
    /// that resumes at the group's committed offsets and commits what it printed.
    Consume(ConsumeArgs),
    /// Describe a consumer group's committed offsets and lag, like kafka-consumer-groups.
    Groups(GroupsArgs),
    /// Describe or change topic configs, like kafka-configs --entity-type topics.
    Configs(ConfigsArgs),
    /// Elect leaders now, like kafka-leader-election: the preferred replica where it is live and
    /// in the ISR, or (unclean) any live replica of a partition that has no leader.
    LeaderElection(LeaderElectionArgs),
    /// Run a local cluster under seeded faults while producers write, then check the history.
    #[command(long_about = NEMESIS_ABOUT)]
    Nemesis(NemesisArgs),
    /// Describe the KRaft quorum of controllers, like kafka-metadata-quorum: the leader, its
    /// epoch and high watermark, and every voter's log end offset and lag.
    Quorum(QuorumArgs),
}

const NEMESIS_ABOUT: &str = "\
Run a local cluster (a controller and 3 brokers; a topic of 3 partitions, replication factor 3, \
min.insync.replicas=2) under seeded faults, one at a time, while several producers write unique \
values. Each fault is logged with its time on stderr, healed, and the time until the cluster is \
healthy again (every broker live, every ISR full) is measured. Then everything is healed, the \
producers write on for 5 s, and the history is checked: every acknowledged record at its \
acknowledged offset, no offset acknowledged for two values, no value twice (with --idempotent), \
offsets dense up to the high watermark, every replica's log identical.

Network faults go through the nodes' own fault layer (a rules file they watch): no root, no \
iptables, and the host's loopback is never touched.

Exit status: 0 if the run passed, 1 on any safety anomaly, a node that exited on its own, or a \
cluster that did not heal, 2 for bad arguments or a run that could not be set up. \
docs/NEMESIS.md describes each fault and check.";

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start a controller and N brokers on 127.0.0.1 and stay in the foreground; Ctrl-C stops
    /// them. Restarting with the same --dir recovers every log.
    Up(UpArgs),
}

#[derive(Args)]
pub struct UpArgs {
    /// How many brokers (ids 1 to N) beside the controller.
    #[arg(long, default_value_t = 3)]
    brokers: u32,
    /// Controllers for a new cluster: 1, or a KRaft quorum of 3 or 5 (controller.quorum.voters).
    /// With a quorum, the active controller is the quorum's leader, its decisions take effect
    /// once committed to the metadata log, and any controller may die.
    #[arg(long, default_value_t = 1)]
    controllers: u32,
    /// Racks of brokers 1, 2, ... in turn (broker.rack), e.g. a,b,c.
    #[arg(long, value_delimiter = ',')]
    racks: Vec<String>,
    /// Data directory: the cluster file and every node's logs.
    #[arg(long, default_value = "watermark-data")]
    dir: PathBuf,
    /// Brokers listen on N, N+1, ...; the controllers on the ports after them. 0 picks free
    /// ports.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    #[command(flatten)]
    node: NodeOptions,
    /// Record every step of every node in DIR (controller.trace, broker-<id>.trace), for
    /// `watermark validate DIR`.
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// KIP-966 for a new cluster (eligible.leader.replicas.version=1): replicas that leave the
    /// ISR under min.insync.replicas may still lead, and a broker that restarts uncleanly (any
    /// restart: there is no controlled shutdown) leaves every ISR and ELR.
    #[arg(long)]
    eligible_leader_replicas: bool,
    /// broker.session.timeout.ms for a new cluster (default 3000).
    #[arg(long)]
    session_timeout_ms: Option<u64>,
    /// For a new cluster: serve no Prometheus metrics. By default each node serves them over
    /// HTTP at http://127.0.0.1:PORT/metrics, PORT being its own (UDP) port's number, on TCP.
    #[arg(long)]
    no_metrics: bool,
}

#[derive(Args, Clone)]
struct NodeOptions {
    /// When saved data is fsynced: never (written to the OS before any reply; survives kill -9)
    /// or always (also on the device before any reply; survives power loss).
    #[arg(long, default_value = "never", value_parser = parse::<FsyncPolicy>)]
    fsync: FsyncPolicy,
    /// A fault rules file (drop, duplicate, delay outbound datagrams), re-read when it changes;
    /// for tests.
    #[arg(long, value_name = "FILE", hide = true)]
    faults: Option<PathBuf>,
    /// Break this node's host on purpose (send-before-save), to show that `watermark validate`
    /// notices; for tests.
    #[arg(long, value_name = "HOW", hide = true, value_parser = parse_breakage)]
    break_host: Option<Breakage>,
}

fn parse_breakage(s: &str) -> Result<Breakage, String> {
    match s {
        "send-before-save" => Ok(Breakage::SendBeforeSave),
        _ => Err(format!("unknown breakage '{s}' (send-before-save)")),
    }
}

#[derive(Args)]
pub struct ControllerArgs {
    /// node.id of this controller: its place in the cluster file's controllers, from 1.
    #[arg(long, default_value_t = 1)]
    node_id: u32,
    /// The cluster file `cluster up` writes (cluster.json): every node's id and address, the
    /// timings and the cluster key.
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// Where the controller keeps its state (default: beside the cluster file).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Record every step of this node (appended across restarts) for `watermark validate`.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at http://HOST:PORT/metrics (default: where the
    /// cluster file says, if anywhere): UnderReplicatedPartitions, LeaderCount, IsrShrinks,
    /// request rates and latencies, and more, under Kafka's JMX-exporter names.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddrV4>,
    #[command(flatten)]
    node: NodeOptions,
}

#[derive(Args)]
pub struct BrokerArgs {
    /// broker.id.
    #[arg(long)]
    id: u32,
    /// The cluster file `cluster up` writes (cluster.json): every node's id and address, the
    /// timings and the cluster key.
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// log.dirs (default: beside the cluster file).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Record every step of this node (appended across restarts) for `watermark validate`.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at http://HOST:PORT/metrics (default: where the
    /// cluster file says, if anywhere): UnderReplicatedPartitions, LeaderCount, IsrShrinks,
    /// request rates and latencies, and more, under Kafka's JMX-exporter names.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddrV4>,
    #[command(flatten)]
    node: NodeOptions,
}

#[derive(Args)]
pub struct LeaderElectionArgs {
    /// preferred: move leadership to each partition's preferred replica (the first assigned) if
    /// it is live and in the ISR; unclean: elect a live replica, in the ISR or not, for each
    /// partition without a leader (acknowledged records may be lost).
    #[arg(long, value_name = "TYPE", value_parser = parse_election_type)]
    election_type: ElectionType,
    /// The topic of the partition to elect for (with --partition).
    #[arg(long, requires = "partition", conflicts_with = "all_topic_partitions")]
    topic: Option<String>,
    /// The partition to elect for (with --topic).
    #[arg(long, requires = "topic")]
    partition: Option<u32>,
    /// Every partition of every topic.
    #[arg(long, required_unless_present = "topic")]
    all_topic_partitions: bool,
    /// Brokers to ask, host:port[,host:port...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]", default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
}

fn parse_election_type(s: &str) -> Result<ElectionType, String> {
    match s.to_ascii_lowercase().as_str() {
        "preferred" => Ok(ElectionType::Preferred),
        "unclean" => Ok(ElectionType::Unclean),
        _ => Err(format!(
            "'{s}' is not an election type (preferred or unclean)"
        )),
    }
}

/// Prints what was elected and what was not, as kafka-leader-election does; exit status 1 if
/// an election that was needed failed.
fn leader_election(args: LeaderElectionArgs) -> Result<ExitCode, String> {
    let partitions = match (&args.topic, args.partition) {
        (Some(t), Some(p)) => {
            validate_topic(t)?;
            Some(vec![watermark_model::TopicPartition::new(
                &Topic::new(t),
                p,
            )])
        }
        _ => None,
    };
    let server = bootstrap(&args.bootstrap_server)?;
    let election = args.election_type;
    let results = client::elect_leaders(server, election, partitions)?;
    let name = match election {
        ElectionType::Preferred => "PREFERRED",
        ElectionType::Unclean => "UNCLEAN",
    };
    let mut elected = Vec::new();
    let mut not_needed = Vec::new();
    let mut failed = Vec::new();
    for (tp, result) in &results {
        match result {
            Ok(leader) => elected.push(format!("{tp} (leader {leader})")),
            Err(watermark_model::ErrorCode::ElectionNotNeeded) => not_needed.push(tp.to_string()),
            Err(e) => failed.push(format!("{tp}: {}", client::error_name(*e))),
        }
    }
    if !elected.is_empty() {
        println!(
            "Successfully completed leader election ({name}) for partitions {}",
            elected.join(", ")
        );
    }
    if !not_needed.is_empty() {
        println!(
            "Valid replica already elected for partitions {}",
            not_needed.join(", ")
        );
    }
    if !failed.is_empty() {
        println!(
            "Election ({name}) failed for partitions {}",
            failed.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List the topics, one name a line, like `kafka-topics --list`.
    List(ListArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The topic's name: 1 to 249 characters of [a-zA-Z0-9._-], not "." or "..".
    topic: String,
    /// How many partitions.
    #[arg(long)]
    partitions: u32,
    /// Replicas of each partition, placed across brokers (and racks) like Kafka's assignment.
    #[arg(long)]
    replication_factor: u32,
    /// A topic config, KEY=VALUE; repeat for more. min.insync.replicas (default 1): the smallest
    /// ISR that takes acks=all writes (and, since Kafka 3.7, advances the high watermark);
    /// unclean.leader.election.enable (default false): a partition whose whole ISR is dead may be
    /// led by any live replica, losing what only the ISR held.
    #[arg(long, value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["alter", "describe"])))]
pub struct ConfigsArgs {
    /// Change the configs of --topic with --add-config and --delete-config. The controller
    /// applies the change to every partition and pushes it to the brokers; enabling
    /// unclean.leader.election.enable elects a leader for each of the topic's offline
    /// partitions at once.
    #[arg(long, requires = "topic")]
    alter: bool,
    /// Print the configs of --topic (default: of every topic), each marked when it is the
    /// default.
    #[arg(long)]
    describe: bool,
    /// The topic (kafka-configs' --entity-type topics --entity-name).
    #[arg(long)]
    topic: Option<String>,
    /// Configs to set, KEY=VALUE[,KEY=VALUE...]: min.insync.replicas (1 to the replication
    /// factor) and unclean.leader.election.enable (true or false).
    #[arg(
        long,
        value_name = "KEY=VALUE[,...]",
        value_delimiter = ',',
        requires = "alter"
    )]
    add_config: Vec<String>,
    /// Configs to set back to their defaults, KEY[,KEY...].
    #[arg(
        long,
        value_name = "KEY[,...]",
        value_delimiter = ',',
        requires = "alter"
    )]
    delete_config: Vec<String>,
    /// Print JSON: an object per topic, {"topic", "configs": {KEY: VALUE}}.
    #[arg(long)]
    json: bool,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// Describe only this topic (default: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
pub struct ProduceArgs {
    /// The topic to write stdin's lines to, one record per line.
    topic: String,
    /// 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse::<Acks>)]
    acks: Acks,
    /// enable.idempotence: number each record per partition so that the leader writes a
    /// retried batch once (true by default, as in Kafka 3.0+; `--idempotent false` turns it off).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    idempotent: bool,
    /// max.in.flight.requests.per.connection: batches sent to a partition's leader before the
    /// first is answered. Retried batches go one at a time, in order, so order is kept.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight_requests: u32,
    /// Send every record to this partition (default: partitions in turn, a batch at a time).
    #[arg(long)]
    partition: Option<u32>,
    /// delivery.timeout.ms: a record not acknowledged by then has failed.
    #[arg(long, default_value_t = 120_000)]
    delivery_timeout_ms: u64,
    /// Print acknowledgements as JSON lines.
    #[arg(long)]
    json: bool,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Read only this partition (default: all of them).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at offset 0 (default: at the high watermark, only new records). With --group:
    /// where the group has committed nothing (auto.offset.reset=earliest).
    #[arg(long)]
    from_beginning: bool,
    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// Exit when no record arrived for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print JSON lines {"partition", "offset", "value"}.
    #[arg(long)]
    json: bool,
    /// group.id: read as a member of this consumer group, from its committed offsets, and commit
    /// what was printed (to __consumer_offsets, created if need be). Each partition has one
    /// member; a newer member of the group fences this one.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// auto.offset.reset with --group: where a partition the group has committed nothing for is
    /// read from: earliest or latest (default: latest, as Kafka; earliest with
    /// --from-beginning).
    #[arg(long, value_name = "earliest|latest", requires = "group", value_parser = parse::<OffsetReset>)]
    auto_offset_reset: Option<OffsetReset>,
    /// enable.auto.commit with --group: commit every --auto-commit-interval-ms (true, the
    /// default) or after each fetched batch (false). Either way, on exit the group's offset is
    /// the one after the last record printed, with --max too.
    #[arg(long, value_name = "BOOL", requires = "group", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    enable_auto_commit: Option<bool>,
    /// auto.commit.interval.ms with --group (default 5000, as Kafka).
    #[arg(long, value_name = "MS", requires = "group", value_parser = clap::value_parser!(u64).range(1..))]
    auto_commit_interval_ms: Option<u64>,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

/// Kafka's `auto.commit.interval.ms` default.
const AUTO_COMMIT_INTERVAL_MS: u64 = 5000;

#[derive(Args)]
pub struct QuorumArgs {
    /// Show the quorum's status (LeaderId, LeaderEpoch, HighWatermark, MaxFollowerLag) and each
    /// voter's log end offset, lag and status.
    #[arg(long, required = true)]
    describe: bool,
    /// The controllers to ask, HOST:PORT[,HOST:PORT...], controller 1's first (as
    /// controller.quorum.voters lists them); every one is asked.
    #[arg(
        long,
        value_name = "HOST:PORT[,...]",
        required_unless_present = "cluster"
    )]
    bootstrap_controller: Option<String>,
    /// Or the cluster file, which lists every controller.
    #[arg(long, value_name = "FILE", conflicts_with = "bootstrap_controller")]
    cluster: Option<PathBuf>,
    /// Print one JSON object: {"leader_id", "leader_epoch", "high_watermark",
    /// "max_follower_lag", "voters": [{"node_id", "address", "log_end_offset", "lag",
    /// "status"}]}.
    #[arg(long)]
    json: bool,
    /// How long to wait for each controller.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
}

#[derive(Args)]
pub struct GroupsArgs {
    /// Show the group's committed offset, the log end offset (the leader's high watermark) and
    /// the lag of every partition it has committed an offset for.
    #[arg(long, required = true)]
    describe: bool,
    /// The group (group.id).
    #[arg(long, value_name = "GROUP")]
    group: String,
    /// Print one JSON object: {"group", "coordinator": {"id", "address"}, "offsets": [{"topic",
    /// "partition", "current_offset", "log_end_offset", "lag"}]}.
    #[arg(long)]
    json: bool,
    /// Give up when the group's coordinator has not answered for this long (it may be moving or
    /// loading after a broker failure).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
    /// The brokers to bootstrap from, HOST:PORT[,HOST:PORT...]; the first that answers serves.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap_server: String,
}

#[derive(Args)]
pub struct NemesisArgs {
    /// Inject faults for this many seconds; healing, 5 s of writes and the checks follow.
    #[arg(long, value_name = "SECS")]
    duration: u64,
    /// Seeds the fault schedule: kinds, order, targets, shapes and durations.
    #[arg(long, value_name = "N")]
    seed: u64,
    /// The producers' acks: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse::<Acks>)]
    acks: Acks,
    /// Idempotent producers (then a value written twice is an anomaly).
    #[arg(long)]
    idempotent: bool,
    /// Comma-separated fault kinds to draw from.
    #[arg(
        long,
        value_name = "KINDS",
        default_value = "kill,pause,controller-kill,partition,loss,duplicate,reorder,torn-tail,power-loss",
        value_parser = parse_faults
    )]
    faults: Faults,
    /// The nodes' fsync policy; a power loss under `never` loses what was not written back.
    #[arg(long, default_value = "never", value_parser = parse::<FsyncPolicy>)]
    fsync: FsyncPolicy,
    /// Concurrent producers.
    #[arg(long, default_value_t = 4)]
    producers: u32,
    /// Records per second, all producers together.
    #[arg(long, value_name = "RECORDS", default_value_t = 1000)]
    rate: u32,
    /// The longest a recovery may take before the cluster counts as not healed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    recovery_timeout: u64,
    /// The run's directory (must not hold a cluster). Default: a temporary one, removed when
    /// the run passes and kept when it fails.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Record every step of every node and producer (in DIR/traces) and, after the run, replay
    /// them through the model as `watermark validate` does: 0 mismatches and 0 violations to
    /// pass.
    #[arg(long)]
    validate: bool,
    /// Run the cluster with KIP-966's eligible leader replicas (eligible.leader.replicas.version=1).
    #[arg(long)]
    eligible_leader_replicas: bool,
    /// Controllers: 1, or a KRaft quorum of 3 or 5; with a quorum, controller-kill kills the
    /// active controller, and partitions cut a broker from every controller.
    #[arg(long, default_value_t = 1)]
    controllers: u32,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    json: bool,
}

/// A parsed `--faults` list (a newtype: clap takes a `Vec` for a repeated flag).
#[derive(Clone)]
struct Faults(Vec<FaultKind>);

fn parse_faults(s: &str) -> Result<Faults, String> {
    nemesis::parse_fault_kinds(s).map(Faults)
}

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

pub fn run(command: NetCommand) -> Result<ExitCode, String> {
    match command {
        NetCommand::Cluster(ClusterCommand::Up(args)) => cluster_up(args),
        NetCommand::Controller(args) => {
            let file = ClusterFile::load(&args.cluster)?;
            let dir = args
                .log_dir
                .unwrap_or_else(|| default_node_dir(&args.cluster, Role::Controller(args.node_id)));
            run_one(
                &file,
                Role::Controller(args.node_id),
                &dir,
                &args.node,
                args.trace.as_deref(),
                args.metrics_addr,
            )
        }
        NetCommand::Broker(args) => {
            let file = ClusterFile::load(&args.cluster)?;
            let role = Role::Broker(args.id);
            let dir = args
                .log_dir
                .unwrap_or_else(|| default_node_dir(&args.cluster, role));
            run_one(
                &file,
                role,
                &dir,
                &args.node,
                args.trace.as_deref(),
                args.metrics_addr,
            )
        }
        NetCommand::Topic(TopicCommand::Create(args)) => topic_create(args),
        NetCommand::Topic(TopicCommand::List(args)) => topic_list(args),
        NetCommand::Describe(args) => describe(args),
        NetCommand::Configs(args) => configs(args),
        NetCommand::LeaderElection(args) => leader_election(args),
        NetCommand::Produce(args) => produce(args),
        NetCommand::Consume(args) => consume(args),
        NetCommand::Groups(args) => groups(args),
        NetCommand::Nemesis(args) => run_nemesis(args),
        NetCommand::Quorum(args) => quorum(args),
    }
}

/// Raised by Ctrl-C or SIGTERM.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    Ok(stop)
}

/// How long each entry of a `--bootstrap-server` list gets to answer before the next is tried.
const BOOTSTRAP_PROBE: Duration = Duration::from_millis(1500);

/// `--bootstrap-server HOST:PORT[,HOST:PORT...]`, as Kafka's tools take it: the first entry that
/// answers a Metadata request serves (one entry is used as it is, and a dead one is reported
/// by the request itself).
/// A `HOST:PORT[,HOST:PORT...]` list, each entry checked.
fn bootstrap_list(s: &str) -> Result<Vec<SocketAddrV4>, String> {
    s.split(',')
        .map(|entry| bootstrap_entry(entry.trim()))
        .collect()
}

fn bootstrap(s: &str) -> Result<SocketAddrV4, String> {
    let servers = bootstrap_list(s)?;
    if let [only] = servers.as_slice() {
        return Ok(*only);
    }
    let probe = Msg::Metadata {
        topic: Topic::new(""),
    };
    servers
        .iter()
        .copied()
        .find(|server| {
            client::request_within(*server, &probe, BOOTSTRAP_PROBE, |m| {
                matches!(m, Msg::MetadataResponse { .. }).then_some(())
            })
            .is_ok()
        })
        .ok_or_else(|| {
            format!(
                "none of the bootstrap servers {s} answered within {:.1} s (is the cluster up?)",
                BOOTSTRAP_PROBE.as_secs_f64()
            )
        })
}

fn bootstrap_entry(s: &str) -> Result<SocketAddrV4, String> {
    use std::net::ToSocketAddrs;
    let addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("bad --bootstrap-server entry '{s}': {e} (expected HOST:PORT)"))?;
    addrs
        .filter_map(|a| match a {
            std::net::SocketAddr::V4(a) => Some(a),
            _ => None,
        })
        .next()
        .ok_or_else(|| format!("bad --bootstrap-server entry '{s}': no IPv4 address"))
}

fn run_one(
    file: &ClusterFile,
    role: Role,
    dir: &Path,
    node: &NodeOptions,
    trace: Option<&Path>,
    metrics: Option<SocketAddrV4>,
) -> Result<ExitCode, String> {
    let stop = stop_flag()?;
    let run = NodeRun {
        fsync: node.fsync,
        faults: node.faults.clone(),
        trace: trace.map(Path::to_path_buf),
        breakage: node.break_host,
        metrics,
    };
    let stats = run_node(file, role, dir, &run, &stop, |_| {})?;
    eprintln!("{} stopped: {}", role.name(), stats.summary());
    Ok(ExitCode::SUCCESS)
}

fn cluster_up(args: UpArgs) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cluster = if args.dir.join(CLUSTER_FILE_NAME).exists() {
        let cluster = LocalCluster::open(&exe, &args.dir)?;
        let brokers = cluster.file().brokers.len();
        if brokers != args.brokers as usize {
            return Err(format!(
                "{} holds a cluster of {brokers} brokers; pass --brokers {brokers} or another --dir",
                args.dir.display(),
            ));
        }
        let controllers = cluster.file().controller_addresses().len();
        if controllers != args.controllers as usize {
            return Err(format!(
                "{} holds a cluster of {controllers} controllers; pass --controllers {controllers} or another --dir",
                args.dir.display(),
            ));
        }
        cluster
    } else {
        let mut timing_ms = TimingMs::default();
        if let Some(ms) = args.session_timeout_ms {
            timing_ms.session_timeout = ms;
        }
        let options = LocalOptions {
            brokers: args.brokers,
            controllers: args.controllers,
            racks: args.racks.clone(),
            base_port: args.base_port,
            timing_ms,
            fsync: args.node.fsync,
            faults: None,
            key: true,
            eligible_leader_replicas: args.eligible_leader_replicas,
            metrics: !args.no_metrics,
        };
        LocalCluster::create(&exe, &args.dir, &options)?
    };
    cluster.set_fsync(args.node.fsync);
    let faults = match &args.node.faults {
        Some(f) => Some(std::path::absolute(f).map_err(|e| format!("{}: {e}", f.display()))?),
        None => None,
    };
    cluster.set_faults(faults);
    cluster.set_trace_dir(match &args.trace {
        Some(d) => Some(std::path::absolute(d).map_err(|e| format!("{}: {e}", d.display()))?),
        None => None,
    });
    let stop = stop_flag()?;
    cluster.start_all()?;
    let mut out = std::io::stdout().lock();
    for role in cluster.nodes() {
        let rack = match role {
            Role::Broker(id) => cluster.file().broker(id).and_then(|b| b.rack.clone()),
            Role::Controller(_) => None,
        };
        let rack = rack.map(|r| format!("  rack {r}")).unwrap_or_default();
        let metrics = cluster
            .metrics_address(role)
            .map(|a| format!("  metrics http://{a}/metrics"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<11} {}{rack}  pid {}  {}{metrics}",
            role.name(),
            cluster
                .address(role)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            cluster.pid(role).unwrap_or(0),
            cluster.node_dir(role).display()
        );
    }
    let _ = writeln!(out, "bootstrap server: {}", cluster.bootstrap());
    let _ = writeln!(out, "cluster file: {}", cluster.cluster_path().display());
    let _ = writeln!(out, "Ctrl-C stops the cluster.");
    let _ = out.flush();
    drop(out);
    while !stop.load(Ordering::Relaxed) {
        for (role, status) in cluster.exited() {
            eprintln!("{} exited: {status}", role.name());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A clean stop: SIGTERM each node, so that it writes its checkpoints, then wait; each
    // node's counters are in its log.
    for (role, _) in cluster.stop_all() {
        if let Some(line) = cluster.stop_line(role) {
            eprintln!("{line}");
        }
    }
    println!("cluster stopped");
    Ok(ExitCode::SUCCESS)
}

/// Kafka's rule for topic names, checked before anything is sent (the controller checks it
/// too, R46).
fn validate_topic(name: &str) -> Result<(), String> {
    watermark_model::validate_topic_name(name)
}

fn topic_create(args: CreateArgs) -> Result<ExitCode, String> {
    validate_topic(&args.topic)?;
    let mut changes = TopicConfigChanges::default();
    for pair in &args.config {
        changes
            .set_pair(pair)
            .map_err(|e| format!("bad --config: {e}"))?;
    }
    let configs = changes.apply(TopicConfigs::default());
    if configs.min_insync_replicas > args.replication_factor {
        return Err(format!(
            "bad --config: min.insync.replicas {} is above the replication factor {}",
            configs.min_insync_replicas, args.replication_factor
        ));
    }
    let server = bootstrap(&args.bootstrap_server)?;
    client::create_topic(
        server,
        &args.topic,
        args.partitions,
        args.replication_factor,
        configs,
    )?;
    println!("Created topic {}.", args.topic);
    Ok(ExitCode::SUCCESS)
}

/// kafka-configs for topics: `--alter` sends one IncrementalAlterConfigs (R56); `--describe`
/// reads the configs every partition carries from the controller's table (R47).
fn configs(args: ConfigsArgs) -> Result<ExitCode, String> {
    if let Some(t) = &args.topic {
        validate_topic(t)?;
    }
    if args.alter {
        let topic = args.topic.as_deref().expect("clap requires --topic");
        let mut changes = TopicConfigChanges::default();
        for pair in &args.add_config {
            changes
                .set_pair(pair)
                .map_err(|e| format!("bad --add-config: {e}"))?;
        }
        for key in &args.delete_config {
            changes
                .set(key.trim(), None)
                .map_err(|e| format!("bad --delete-config: {e}"))?;
        }
        if changes == TopicConfigChanges::default() {
            return Err("--alter needs --add-config or --delete-config".into());
        }
        let server = bootstrap(&args.bootstrap_server)?;
        let now = client::alter_configs(server, topic, changes)?;
        if args.json {
            println!("{}", configs_json(topic, now));
        } else {
            println!("Completed updating config for topic {topic}.");
            print!("{}", configs_text(topic, now));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let server = bootstrap(&args.bootstrap_server)?;
    let d = client::describe(server, args.topic.as_deref())?;
    let mut out = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in &d.partitions {
        if !seen.insert(p.topic.as_str()) {
            continue;
        }
        let configs = p.topic_configs();
        if args.json {
            out += &format!("{}\n", configs_json(&p.topic, configs));
        } else {
            out += &configs_text(&p.topic, configs);
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Each config of a topic, `KEY=VALUE` and whether it is the default.
fn config_entries(configs: TopicConfigs) -> [(&'static str, String, bool); 2] {
    let d = TopicConfigs::default();
    [
        (
            "min.insync.replicas",
            configs.min_insync_replicas.to_string(),
            configs.min_insync_replicas == d.min_insync_replicas,
        ),
        (
            "unclean.leader.election.enable",
            configs.unclean_leader_election.to_string(),
            configs.unclean_leader_election == d.unclean_leader_election,
        ),
    ]
}

fn configs_text(topic: &str, configs: TopicConfigs) -> String {
    let mut out = format!("Configs for topic {topic} are:\n");
    for (key, value, default) in config_entries(configs) {
        let mark = if default { " (default)" } else { "" };
        out += &format!("  {key}={value}{mark}\n");
    }
    out
}

fn configs_json(topic: &str, configs: TopicConfigs) -> serde_json::Value {
    serde_json::json!({
        "topic": topic,
        "configs": {
            "min.insync.replicas": configs.min_insync_replicas,
            "unclean.leader.election.enable": configs.unclean_leader_election,
        },
    })
}

/// The configs `describe` shows: those not at their defaults, as kafka-topics does.
fn non_default_configs(configs: TopicConfigs) -> String {
    config_entries(configs)
        .into_iter()
        .filter(|(_, _, default)| !default)
        .map(|(key, value, _)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn list(ids: &[u32]) -> String {
    ids.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn opt(o: Option<u64>) -> String {
    o.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

fn topic_list(args: ListArgs) -> Result<ExitCode, String> {
    let server = bootstrap(&args.bootstrap_server)?;
    let d = client::describe(server, None)?;
    let topics: std::collections::BTreeSet<&str> =
        d.partitions.iter().map(|p| p.topic.as_str()).collect();
    let mut out = std::io::stdout().lock();
    for t in topics {
        writeln!(out, "{t}").map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(args: DescribeArgs) -> Result<ExitCode, String> {
    if let Some(t) = &args.topic {
        validate_topic(t)?;
    }
    let server = bootstrap(&args.bootstrap_server)?;
    let d = client::describe(server, args.topic.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string(&d).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut topics: Vec<&str> = d.partitions.iter().map(|p| p.topic.as_str()).collect();
    topics.dedup();
    let mut out = String::new();
    for topic in topics {
        let ps: Vec<_> = d.partitions.iter().filter(|p| p.topic == topic).collect();
        out += &format!(
            "Topic: {topic}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
            ps.len(),
            ps[0].replicas.len(),
            non_default_configs(ps[0].topic_configs())
        );
        for p in ps {
            let leader = p
                .leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "none".into());
            out += &format!(
                "\tTopic: {topic}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tLeaderEpoch: {}\tLEO: {}\tHWM: {}{}\n",
                p.partition,
                list(&p.replicas),
                list(&p.isr),
                p.leader_epoch,
                opt(p.log_end_offset),
                opt(p.high_watermark),
                if p.under_replicated { "\t(under-replicated)" } else { "" }
            );
        }
    }
    for b in &d.brokers {
        let address = b
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into());
        let rack = b
            .rack
            .as_ref()
            .map(|r| format!("\tRack: {r}"))
            .unwrap_or_default();
        out += &format!(
            "Broker: {}\t{address}\t{}{rack}\tLeaders: {}\n",
            b.id,
            if b.live { "live" } else { "fenced" },
            b.leader_count
        );
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn produce(args: ProduceArgs) -> Result<ExitCode, String> {
    validate_topic(&args.topic)?;
    let server = bootstrap(&args.bootstrap_server)?;
    let mut values = Vec::new();
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let mut line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > VALUE_BYTES_MAX {
            return Err(format!(
                "line {} is {} bytes; a record holds at most {VALUE_BYTES_MAX}",
                n + 1,
                line.len()
            ));
        }
        values.push(Value(line.into()));
    }
    let stop = stop_flag()?;
    let options = ProduceOptions {
        topic: args.topic.clone(),
        acks: args.acks,
        idempotent: args.idempotent,
        partition: args.partition,
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        max_in_flight_requests: args.max_in_flight_requests,
        throughput: None,
        timing: TimingMs::producer(args.idempotent),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let bar = crate::progress::bar(values.len() as u64, "records", args.json);
    let mut acknowledged = 0u64;
    let report = client::produce(server, &options, values, &stop, |ack, _| {
        let p = ack.topic_partition.partition;
        let _ = if args.json {
            writeln!(out, "{{\"partition\":{p},\"offset\":{}}}", ack.offset)
        } else {
            writeln!(out, "{p} {}", ack.offset)
        };
        acknowledged += 1;
        if acknowledged.is_multiple_of(1024) {
            bar.set_position(acknowledged);
        }
    })?;
    bar.finish_and_clear();
    let _ = out.flush();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "{} of {} records acknowledged (acks={}) in {:.3} s: {:.0} records/s",
        report.acknowledged,
        report.records,
        args.acks,
        secs,
        report.acknowledged as f64 / secs
    );
    if args.acks != Acks::None && report.acknowledged < report.records {
        let why = report
            .last_error
            .map(|e| {
                format!(
                    "; the last error from a leader was {}",
                    client::error_name(e)
                )
            })
            .unwrap_or_default();
        eprintln!(
            "error: {} records were not acknowledged within delivery.timeout.ms={}{why}",
            report.records - report.acknowledged,
            args.delivery_timeout_ms
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn json_string(bytes: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(bytes)).expect("strings serialize")
}

/// The group settings of `consume --group`, as kafka-console-consumer reads them:
/// `--from-beginning` is auto.offset.reset=earliest, and contradicting it is an error.
fn group_options(args: &ConsumeArgs) -> Result<Option<GroupOptions>, String> {
    let Some(group) = &args.group else {
        return Ok(None);
    };
    client::group::validate_group(group).map_err(|e| format!("bad --group: {e}"))?;
    let offset_reset = match (args.from_beginning, args.auto_offset_reset) {
        (true, Some(OffsetReset::Latest)) => {
            return Err(
                "--from-beginning and --auto-offset-reset latest contradict each other".into(),
            )
        }
        (true, _) => OffsetReset::Earliest,
        (false, reset) => reset.unwrap_or(OffsetReset::Latest),
    };
    Ok(Some(GroupOptions {
        group: group.clone(),
        offset_reset,
        auto_commit: args.enable_auto_commit.unwrap_or(true),
        auto_commit_interval: Duration::from_millis(
            args.auto_commit_interval_ms
                .unwrap_or(AUTO_COMMIT_INTERVAL_MS),
        ),
    }))
}

fn consume(args: ConsumeArgs) -> Result<ExitCode, String> {
    validate_topic(&args.topic)?;
    let group = group_options(&args)?;
    let server = bootstrap(&args.bootstrap_server)?;
    let stop = stop_flag()?;
    let options = ConsumeOptions {
        topic: args.topic.clone(),
        partition: args.partition,
        from_beginning: args.from_beginning,
        max_records: args.max,
        idle_timeout: args.timeout_ms.map(Duration::from_millis),
        timing: TimingMs::client(),
        trace_dir: None,
    };
    // Line-buffered: each record shows as it arrives.
    let mut out = std::io::stdout().lock();
    let on_record = |r: &client::ConsumedRecord| {
        let _ = if args.json {
            writeln!(
                out,
                "{{\"partition\":{},\"offset\":{},\"value\":{}}}",
                r.partition,
                r.offset,
                json_string(&r.value.0)
            )
        } else {
            out.write_all(&r.value.0).and_then(|_| out.write_all(b"\n"))
        };
    };
    let reset = group.as_ref().map(|g| g.offset_reset);
    let on_group_event = |event: &GroupEvent| {
        if let GroupEvent::Resumed {
            topic_partition,
            committed,
            position,
            ..
        } = event
        {
            let why = match (committed, reset) {
                (Some(_), _) => "committed".to_string(),
                (None, Some(reset)) => {
                    format!("no committed offset: auto.offset.reset={reset}")
                }
                (None, None) => "no committed offset".to_string(),
            };
            eprintln!("Resuming {topic_partition} at offset {position} ({why})");
        }
    };
    let report = client::consume_in_group(
        server,
        &options,
        group.as_ref(),
        &stop,
        on_record,
        on_group_event,
    )?;
    let _ = std::io::stdout().lock().flush();
    eprintln!("Processed a total of {} messages", report.records);
    if let Some(e) = &report.commit_error {
        // Kafka's consumer logs a failed commit on close and exits: the records are read again.
        eprintln!("warning: the group's offsets were not all committed: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// kafka-consumer-groups `--describe`: a row per partition the group has committed an offset
/// for.
fn groups(args: GroupsArgs) -> Result<ExitCode, String> {
    debug_assert!(args.describe, "clap requires --describe");
    client::group::validate_group(&args.group).map_err(|e| format!("bad --group: {e}"))?;
    let server = bootstrap(&args.bootstrap_server)?;
    let d =
        client::group::describe_group(server, &args.group, Duration::from_millis(args.timeout_ms))?;
    if args.json {
        println!("{}", serde_json::to_string(&d).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    if d.offsets.is_empty() {
        println!("Consumer group '{}' has no committed offsets.", d.group);
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
    ]
    .map(String::from);
    let mut rows = vec![header];
    for o in &d.offsets {
        rows.push([
            d.group.clone(),
            o.topic.clone(),
            o.partition.to_string(),
            o.current_offset.to_string(),
            o.log_end_offset
                .map_or_else(|| "-".into(), |e| e.to_string()),
            o.lag.map_or_else(|| "-".into(), |l| l.to_string()),
        ]);
    }
    print!("{}", table(&rows, " "));
    Ok(ExitCode::SUCCESS)
}

/// Rows as a table: each column as wide as its widest cell, columns joined by `gap`, no
/// trailing blanks.
fn table<const N: usize>(rows: &[[String; N]], gap: &str) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += cells.join(gap).trim_end();
        out += "\n";
    }
    out
}

fn quorum(args: QuorumArgs) -> Result<ExitCode, String> {
    debug_assert!(args.describe, "clap requires --describe");
    let controllers: Vec<SocketAddrV4> = match (&args.bootstrap_controller, &args.cluster) {
        (Some(list), _) => bootstrap_list(list)?,
        (None, Some(path)) => ClusterFile::load(path)?.controller_addresses(),
        (None, None) => return Err("pass --bootstrap-controller or --cluster".into()),
    };
    let answers = client::describe_quorum(&controllers, Duration::from_millis(args.timeout_ms));
    if answers.iter().all(|(_, a)| a.is_err()) {
        return Err(format!(
            "no controller answered within {} ms: {}",
            args.timeout_ms,
            answers
                .iter()
                .map(|(c, _)| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let status = client::QuorumStatus::from_answers(&controllers, &answers);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&status).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
    let voters: Vec<String> = status
        .voters
        .iter()
        .map(|v| v.node_id.to_string())
        .collect();
    let mut out = String::new();
    out += &format!(
        "LeaderId:       {}\n",
        status.leader_id.map_or_else(
            || "none (an election may be under way)".into(),
            |l| l.to_string()
        )
    );
    out += &format!("LeaderEpoch:    {}\n", status.leader_epoch);
    out += &format!("HighWatermark:  {}\n", status.high_watermark);
    out += &format!("MaxFollowerLag: {}\n", or_dash(status.max_follower_lag));
    out += &format!("CurrentVoters:  [{}]\n\n", voters.join(","));
    let mut rows = vec![["NodeId", "Address", "LogEndOffset", "Lag", "Status"].map(String::from)];
    for v in &status.voters {
        rows.push([
            v.node_id.to_string(),
            v.address.clone().unwrap_or_else(|| "-".into()),
            or_dash(v.log_end_offset),
            or_dash(v.lag),
            v.status.clone(),
        ]);
    }
    out += &table(&rows, "  ");
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn run_nemesis(args: NemesisArgs) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let temporary = args.dir.is_none();
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "watermark-nemesis-{}-{}",
            std::process::id(),
            args.seed
        ))
    });
    let options = NemesisOptions {
        exe,
        dir: dir.clone(),
        duration: Duration::from_secs(args.duration),
        seed: args.seed,
        acks: args.acks,
        idempotent: args.idempotent,
        faults: args.faults.0,
        fsync: args.fsync,
        producers: args.producers,
        records_per_s: args.rate,
        recovery_timeout: Duration::from_secs(args.recovery_timeout),
        trace: args.validate.then(|| dir.join("traces")),
        eligible_leader_replicas: args.eligible_leader_replicas,
        controllers: args.controllers,
    };
    options.validate()?;
    // Ctrl-C or SIGTERM ends the fault phase once the fault under way is healed; the checks
    // still run. The nodes are in process groups of their own and do not see the Ctrl-C.
    let stop = stop_flag()?;
    let report = nemesis::run(&options, &stop, &mut |line| eprintln!("{line}"));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            return Err(format!("{e} (the run's files are in {})", dir.display()));
        }
    };
    let validation = match &options.trace {
        Some(traces) => {
            eprintln!("validating the run's traces against the model ...");
            Some(watermark_checks::validate::validate_dir(traces)?)
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let mut json = report.json();
        if let (Some(v), Some(obj)) = (&validation, json.as_object_mut()) {
            obj.insert("validation".into(), watermark_checks::validate::json(v));
        }
        writeln!(out, "{json}")
    } else {
        let mut text = report.text();
        if let Some(v) = &validation {
            text += "\n";
            text += &v.text();
        }
        write!(out, "{text}")
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    if report.passed() && validation.as_ref().is_none_or(|v| v.passed()) {
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the run's files are kept in {}", dir.display());
        Ok(ExitCode::from(1))
    }
}
