//! `watermark`: check Kafka's partition replication protocol.

// The checker allocates and frees states by the million: mimalloc does that faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod explore;
mod net;
mod progress;

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use watermark_checks::report;
use watermark_checks::runner::{self, Progress, ProgressFn, RunOptions, Strategy};
use watermark_checks::{preset, presets, Knobs, Network};
use watermark_model::{Acks, Protocol};

mod matrix;
mod simulate;

#[derive(Parser)]
#[command(
    name = "watermark",
    version,
    about = "Kafka's partition replication protocol, model-checked",
    long_about = "Kafka's partition replication protocol (controller, leaders, followers, producers, \
                  consumers) as stateright actors. `watermark check` explores every interleaving, \
                  crash and message loss within the bounds of a configuration and checks the \
                  high-watermark, leader-epoch fencing and no-committed-loss invariants."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Model-check a configuration (the canonical preset by default).
    Check(CheckArgs),
    /// List the presets and their knobs.
    Presets,
    /// Check the seed documents' claims about each configuration against the model.
    Matrix(matrix::MatrixArgs),
    /// Serve stateright's Explorer for a configuration, to step through runs by clicking.
    Explore(explore::ExploreArgs),
    /// Run the actors on a virtual clock with seeded faults: safety at every step, recovery
    /// after healing.
    Simulate(simulate::SimulateArgs),
    /// Replay a real run's trace files (`--trace`) through the model's actors: every step, every
    /// recovery, causality, and every Always property on the run's interleaving.
    Validate(ValidateArgs),
    /// Run the protocol for real: a UDP cluster and Kafka-like tools.
    #[command(flatten)]
    Net(net::NetCommand),
    /// Measure a cluster of its own: produce and consume throughput and latency, failover time.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Args)]
struct CheckArgs {
    /// Start from this preset; knob flags override it.
    #[arg(long, default_value = "canonical")]
    preset: String,
    #[command(flatten)]
    knobs: KnobArgs,
    /// Search strategy.
    #[arg(long, default_value = "bfs", value_parser = parse::<Strategy>)]
    strategy: Strategy,
    /// Checker threads.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Stop after this many seconds (the verdicts are then incomplete).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    timeout: Option<f64>,
    /// Seed for --strategy simulation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop as soon as any Always property is violated, as TLC does, and print the time it
    /// took; the other properties' verdicts are then unknown.
    #[arg(long)]
    stop_at_first_violation: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// The directory of trace files (`cluster up --trace DIR`, `nemesis --trace DIR`), or the
    /// files of `controller --trace` and `broker --trace` gathered in one.
    dir: std::path::PathBuf,
    /// Print one JSON object: {"nodes", "events", "mismatches", "violations", ...}.
    #[arg(long)]
    json: bool,
    /// Evaluate the properties after every step that changed an actor, not only after steps
    /// that changed what they read (same verdicts, slower).
    #[arg(long)]
    every_step: bool,
}

fn validate(args: ValidateArgs) -> Result<ExitCode, String> {
    let report = watermark_checks::validate::validate_dir_with(&args.dir, args.every_step)?;
    if args.json {
        println!("{}", watermark_checks::validate::json(&report));
    } else {
        print!("{}", report.text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Knobs; each overrides the preset.
#[derive(Args, Default)]
pub struct KnobArgs {
    /// Brokers in the cluster (besides the controller).
    #[arg(long)]
    brokers: Option<u32>,
    /// Partitions of the one topic.
    #[arg(long)]
    partitions: Option<u32>,
    /// Replicas of each partition.
    #[arg(long)]
    replication_factor: Option<u32>,
    /// min.insync.replicas of the topic.
    #[arg(long)]
    min_insync_replicas: Option<u32>,
    /// 0, 1 or all.
    #[arg(long, value_parser = parse::<Acks>)]
    acks: Option<Acks>,
    /// unclean.leader.election.enable.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    unclean_election: Option<bool>,
    /// enable.idempotence.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    idempotence: Option<bool>,
    /// Producers, each writing its own values.
    #[arg(long)]
    producers: Option<u32>,
    /// Consumers, each reading one partition from offset 0.
    #[arg(long)]
    consumers: Option<u32>,
    /// Records each producer writes.
    #[arg(long)]
    records: Option<u32>,
    /// Broker crashes in a run (kill -9; each may be followed by a restart). In `simulate`,
    /// only whether brokers crash: the rate is --crashes-per-min.
    #[arg(long)]
    broker_crashes: Option<u32>,
    /// Controller crashes in a run. In `simulate`, 1 or more lets the controller crash too.
    #[arg(long)]
    controller_crashes: Option<u32>,
    /// No leader epoch goes past this bound (B1).
    #[arg(long, alias = "max-leader-epoch")]
    leader_epoch_max: Option<u32>,
    /// Comma-separated: unordered, ordered, duplicating, lossy.
    #[arg(long, value_parser = parse::<Network>)]
    network: Option<Network>,
    /// hwm-truncation, kip-101, kip-279 or kip-320.
    #[arg(long, value_parser = parse::<Protocol>)]
    protocol: Option<Protocol>,
    /// Attempts per produce batch (retries + 1), at most.
    #[arg(long, alias = "producer-attempts")]
    producer_attempts_max: Option<u32>,
    /// max.in.flight.requests.per.connection: each producer's unanswered batches, at most
    /// (default 1; the pipelined preset has 2).
    #[arg(long, value_name = "N")]
    max_in_flight_requests: Option<u32>,
    /// fetch.max.bytes and replica.fetch.max.bytes of the model: a fetch response holds records
    /// up to this many bytes, at least one. A model record is 25 bytes: 1 (the default) is one
    /// record per response, 50 is two. The simulator and the cluster use 48 KiB.
    #[arg(long, value_name = "BYTES")]
    fetch_bytes_max: Option<u32>,
    /// batch.size of the model's producers: a produce request holds records up to this many
    /// bytes, at least one (1, the default, is one record; 50 is two).
    #[arg(long, value_name = "BYTES")]
    batch_bytes_max: Option<u32>,
    /// Whether clients time requests out and retry.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    client_request_timeout: Option<bool>,
    /// auto.leader.rebalance.enable.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    preferred_leader_election: Option<bool>,
    /// How many times leaders may drop lagging followers from the ISR.
    #[arg(long)]
    isr_shrinks: Option<u32>,
    /// Whether the controller may wrongly expire a live broker's session.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    false_suspicions: Option<bool>,
    /// Whether a broker crash may be a power loss that cuts its logs to any prefix.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    unclean_shutdown: Option<bool>,
    /// How many times brokers may pull metadata on their own (the real cluster's periodic
    /// heartbeat, answered with what the broker lacks).
    #[arg(long)]
    metadata_pulls: Option<u32>,
    /// Whether a registered broker's heartbeat pulls the metadata it lacks (KIP-631); false is
    /// the push-only variant, which never repairs a lost LeaderAndIsr.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    metadata_pull: Option<bool>,
    /// Whether a leader advances the high watermark while its ISR is under
    /// min.insync.replicas, as Kafka did before 3.7; since KAFKA-15583 it does not.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    hwm_under_min_isr: Option<bool>,
    /// Whether a broker crash may leave its HWM checkpoints older than its HWM (Kafka writes
    /// them every `replica.high.watermark.checkpoint.interval.ms`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    stale_hwm_checkpoints: Option<bool>,
    /// KIP-966 (eligible.leader.replicas.version=1): replicas that leave the ISR under
    /// min.insync.replicas may still lead, and a broker that restarts uncleanly leaves every ISR
    /// and ELR.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    eligible_leader_replicas: Option<bool>,
    /// Consumers are members of a group (group.id), which commits its offsets to
    /// __consumer_offsets.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    group: Option<bool>,
    /// offsets.topic.replication.factor (capped at the number of brokers).
    #[arg(long)]
    offsets_replication_factor: Option<u32>,
    /// auto.offset.reset of the group's members: earliest or latest.
    #[arg(long, value_parser = parse::<watermark_model::OffsetReset>)]
    auto_offset_reset: Option<watermark_model::OffsetReset>,
    /// enable.auto.commit: members commit on a timer rather than after each poll.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    enable_auto_commit: Option<bool>,
    /// Consumer crashes in a run (each restarts with nothing but its group's commits).
    #[arg(long)]
    consumer_crashes: Option<u32>,
    /// Voters of the KRaft quorum (controller.quorum.voters). Above 1, `check` runs the quorum
    /// model: these controllers, --brokers observing, --records metadata changes.
    #[arg(long)]
    controllers: Option<u32>,
}

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl KnobArgs {
    pub fn apply(&self, k: &mut Knobs) {
        macro_rules! set {
            ($($field:ident => $knob:ident),* $(,)?) => {
                $(if let Some(v) = self.$field { k.$knob = v; })*
            };
        }
        set!(
            brokers => brokers,
            partitions => partitions,
            replication_factor => replication_factor,
            min_insync_replicas => min_insync_replicas,
            acks => acks,
            unclean_election => unclean_leader_election,
            idempotence => idempotence,
            producers => producers,
            consumers => consumers,
            records => records,
            broker_crashes => broker_crashes,
            controller_crashes => controller_crashes,
            leader_epoch_max => leader_epoch_max,
            network => network,
            protocol => protocol,
            producer_attempts_max => producer_attempts_max,
            max_in_flight_requests => max_in_flight_requests,
            fetch_bytes_max => fetch_bytes_max,
            batch_bytes_max => batch_bytes_max,
            client_request_timeout => client_request_timeout,
            preferred_leader_election => preferred_leader_election,
            false_suspicions => false_suspicions,
            isr_shrinks => isr_shrinks,
            unclean_shutdown => unclean_shutdown,
            metadata_pulls => metadata_pulls,
            metadata_pull => metadata_pull,
            hwm_under_min_isr => hwm_under_min_isr,
            stale_hwm_checkpoints => stale_hwm_checkpoints,
            eligible_leader_replicas => eligible_leader_replicas,
            group => group,
            offsets_replication_factor => offsets_replication_factor,
            auto_offset_reset => offset_reset,
            enable_auto_commit => auto_commit,
            consumer_crashes => consumer_crashes,
            controllers => controllers,
        );
    }
}

fn progress_line(p: &Progress) -> String {
    let rate = p.unique_states as f64 / p.elapsed.as_secs_f64().max(1e-9);
    format!(
        "{} states, {} unique, depth {}, {:.0} unique/s",
        p.states, p.unique_states, p.max_depth, rate
    )
}

fn check(args: CheckArgs) -> Result<ExitCode, String> {
    let preset = preset(&args.preset)?;
    let mut knobs = preset.knobs.clone();
    args.knobs.apply(&mut knobs);
    knobs.validate()?;
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let timeout = match args.timeout {
        Some(t) if !(t > 0.0 && t.is_finite()) => {
            return Err(format!(
                "--timeout must be a positive number of seconds, not {t}"
            ))
        }
        Some(t) => Some(Duration::from_secs_f64(t)),
        None if args.strategy == Strategy::Simulation => {
            return Err("--strategy simulation runs until --timeout; give one".into())
        }
        None => None,
    };
    if knobs.is_quorum() {
        return check_quorum(&args, preset.name, &knobs, timeout);
    }
    if !args.json {
        eprintln!(
            "checking preset {} with {:?} on {} thread{}: {}",
            preset.name,
            args.strategy,
            args.threads,
            if args.threads == 1 { "" } else { "s" },
            knobs.summary()
        );
    }
    let options = RunOptions {
        strategy: args.strategy,
        threads: args.threads,
        timeout,
        stop_when_found: None,
        stop_at_first_violation: args.stop_at_first_violation,
        progress: None,
        seed: args.seed,
    };
    let spinner = progress::spinner(args.json);
    spinner.set_message("exploring");
    let options = RunOptions {
        progress: progress::drawn(args.json).then(|| {
            let spinner = spinner.clone();
            ProgressFn(std::sync::Arc::new(move |p: &Progress| {
                spinner.set_message(progress_line(p))
            }))
        }),
        ..options
    };
    let outcome = runner::run(&knobs, &options);
    spinner.finish_and_clear();
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        writeln!(stdout, "{}", report::json(preset.name, &outcome))
    } else {
        write!(stdout, "{}", report::text(preset.name, &outcome))
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    Ok(if outcome.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `check` of the quorum model (spec section 4a).
fn check_quorum(
    args: &CheckArgs,
    preset: &str,
    knobs: &Knobs,
    timeout: Option<Duration>,
) -> Result<ExitCode, String> {
    use watermark_checks::quorum;
    if !args.json {
        eprintln!(
            "checking preset {preset} with {:?} on {} thread{}: {}",
            args.strategy,
            args.threads,
            if args.threads == 1 { "" } else { "s" },
            quorum::summary(knobs)
        );
    }
    let options = RunOptions {
        strategy: args.strategy,
        threads: args.threads,
        timeout,
        stop_when_found: None,
        stop_at_first_violation: args.stop_at_first_violation,
        progress: None,
        seed: args.seed,
    };
    let outcome = quorum::run(knobs, &options);
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        writeln!(stdout, "{}", quorum::json(preset, &outcome))
    } else {
        write!(stdout, "{}", quorum::text(preset, &outcome))
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    Ok(if outcome.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list_presets() -> ExitCode {
    for p in presets() {
        println!("{:<18} {}", p.name, p.description);
        let summary = match p.knobs.is_quorum() {
            true => watermark_checks::quorum::summary(&p.knobs),
            false => p.knobs.summary(),
        };
        println!("{:<18} {}", "", summary);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The cluster and its clients run without transparent huge pages; the checker keeps them.
    if matches!(cli.command, Command::Net(_) | Command::Bench(_)) {
        watermark_net::disable_transparent_huge_pages();
    }
    let result = match cli.command {
        Command::Check(args) => check(args),
        Command::Presets => Ok(list_presets()),
        Command::Matrix(args) => matrix::run(args),
        Command::Explore(args) => explore::explore(args),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Validate(args) => validate(args),
        Command::Net(command) => net::run(command),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command says what it does.
    #[test]
    fn every_flag_of_every_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "watermark", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
