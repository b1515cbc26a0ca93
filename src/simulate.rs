//! `watermark simulate`: seeded runs of the actors on a virtual clock, with faults, safety
//! checked at every step and recovery after healing (`watermark_checks::sim`).

use crate::KnobArgs;
use clap::Args;
use std::io::Write;
use std::ops::Range;
use std::process::ExitCode;
use watermark_checks::sim::{self, Faults, RunReport, SimOptions, Verdict};
use watermark_checks::{preset, trace};

#[derive(Args)]
pub struct SimulateArgs {
    /// Start from this preset's knobs; knob flags override it. Crashes and leader changes come
    /// from the fault rates, not from the preset's bounds.
    #[arg(long, default_value = "canonical")]
    preset: String,
    #[command(flatten)]
    knobs: KnobArgs,
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed of a range, A..B (B excluded), e.g. 0..500.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Option<Range<u64>>,
    /// Virtual seconds of faults, before the world heals.
    #[arg(long, default_value_t = 30)]
    fault_s: u64,
    /// Virtual seconds after healing within which the cluster must recover: every partition led,
    /// every ISR full, every broker's metadata the controller's, every acknowledged record read,
    /// every producer done, every group member reading with its position committed, every consumer
    /// knowing its partition's leader.
    #[arg(long, default_value_t = 30)]
    heal_s: u64,
    /// Probability that a datagram is lost during the fault phase.
    #[arg(long, default_value_t = Faults::default().loss)]
    loss: f64,
    /// Probability that a datagram is delivered twice during the fault phase.
    #[arg(long, default_value_t = Faults::default().duplicate)]
    duplicate: f64,
    /// Extra delay of each datagram during the fault phase, uniformly up to this: reordering.
    #[arg(long, default_value_t = Faults::default().delay_ms_max)]
    delay_ms_max: u64,
    /// Network partitions started per virtual minute of the fault phase.
    #[arg(long, default_value_t = Faults::default().partitions_per_min)]
    partitions_per_min: f64,
    /// Process crashes (kill -9) per virtual minute of the fault phase.
    #[arg(long, default_value_t = Faults::default().crashes_per_min)]
    crashes_per_min: f64,
    /// Probability that a broker's crash is a power loss (only a prefix of its logs survives).
    #[arg(long, default_value_t = Faults::default().power_loss)]
    power_loss: f64,
    /// Brokers, drawn by the seed, that die when the world heals and never restart: the cluster
    /// must recover without them (their replicas are left out of L2 and L3).
    #[arg(long, default_value_t = 0)]
    brokers_dead_after_heal: u32,
    /// Steps of trace printed for each failing seed (replayed).
    #[arg(long, default_value_t = 40)]
    trace_steps: usize,
    /// Threads running seeds.
    #[arg(long, default_value_t = crate::default_threads())]
    threads: usize,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("seeds must be A..B, e.g. 0..500, not '{s}'"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad first seed in '{s}'"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad last seed in '{s}'"))?;
    if b <= a {
        return Err(format!("the range '{s}' holds no seed"));
    }
    Ok(a..b)
}

fn probability(name: &str, p: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "--{name} is a probability, between 0 and 1, not {p}"
        ))
    }
}

pub fn simulate(args: SimulateArgs) -> Result<ExitCode, String> {
    let preset = preset(&args.preset)?;
    let mut knobs = preset.knobs.clone();
    args.knobs.apply(&mut knobs);
    knobs.validate()?;
    if knobs.is_quorum() {
        return Err(
            "The simulator runs the data plane with one controller; the KRaft quorum (--controllers above 1, --preset quorum) is checked by `watermark check --preset quorum` (spec section 4a)"
            .to_string(),
        );
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    for (name, rate) in [
        ("partitions-per-min", args.partitions_per_min),
        ("crashes-per-min", args.crashes_per_min),
    ] {
        if !(rate >= 0.0 && rate.is_finite()) {
            return Err(format!("--{name} must be a rate of 0 or more, not {rate}"));
        }
    }
    let survivable = sim::brokers_losable(&knobs);
    if args.brokers_dead_after_heal > survivable {
        return Err(format!(
            "--brokers-dead-after-heal {} is more than the cluster can lose: with RF={}{} and min.insync.replicas={}, {} broker{} can stay dead while every partition still takes acks=all writes",
            args.brokers_dead_after_heal,
            knobs.replication_factor,
            if knobs.group { format!(" (offsets RF={})", knobs.offsets_rf()) } else { String::new() },
            knobs.min_insync_replicas,
            survivable,
            if survivable == 1 { "" } else { "s" }
        ));
    }
    if args.heal_s == 0 {
        return Err("--heal-s must be at least 1: recovery needs time".into());
    }
    let faults = Faults {
        loss: probability("loss", args.loss)?,
        duplicate: probability("duplicate", args.duplicate)?,
        delay_ms_max: args.delay_ms_max,
        partitions_per_min: args.partitions_per_min,
        crashes_per_min: args.crashes_per_min,
        power_loss: probability("power-loss", args.power_loss)?,
        brokers_dead_after_heal: args.brokers_dead_after_heal,
    };
    let options = SimOptions {
        knobs: knobs.clone(),
        faults,
        fault_s: args.fault_s,
        heal_s: args.heal_s,
        trace_steps: args.trace_steps,
    };
    let seeds = match (args.seed, args.seeds) {
        (Some(s), _) => s..s + 1,
        (None, Some(r)) => r,
        (None, None) => 0..1,
    };
    if !args.json {
        eprintln!(
            "simulating seeds {}..{} on {} thread{}: {} (preset {}); {} s of faults ({}), then {} s to recover",
            seeds.start,
            seeds.end,
            args.threads,
            if args.threads == 1 { "" } else { "s" },
            knobs.cluster_summary(),
            preset.name,
            args.fault_s,
            options.faults.summary(),
            args.heal_s
        );
    }
    let show = |r: &RunReport| {
        if !args.json && !r.verdict.passed() {
            eprintln!("  seed {}: {}", r.seed, verdict_line(&r.verdict));
        }
    };
    let report = sim::sweep(&options, seeds, args.threads, Some(&show));
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        writeln!(out, "{json}")
    } else {
        write!(out, "{}", text(&report))
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Recovered { recovery_s } => format!("recovered {recovery_s:.1} s after healing"),
        Verdict::Safety { property, at_s } => {
            format!("{property} violated at {at_s:.3} virtual s")
        }
        Verdict::Liveness { conditions } => {
            format!("not recovered by the end: {}", conditions.join("; "))
        }
    }
}

fn text(r: &sim::SweepReport) -> String {
    let mut s = format!(
        "{} seed{}, {} passed, {} failed; {} events, {:.0} events/s, {:.0} virtual s per wall s, {:.0} seeds/min; slowest recovery {:.1} s after healing\n",
        r.seeds,
        if r.seeds == 1 { "" } else { "s" },
        r.passed,
        r.failures.len(),
        r.events,
        r.events_per_s,
        r.virtual_s_per_wall_s,
        r.seeds_per_min,
        r.recovery_s_max
    );
    let mut faults: Vec<_> = r.faults.iter().collect();
    faults.sort();
    let faults: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    s += &format!("faults: {}\n", faults.join(", "));
    s += &r.rule_coverage.summary();
    s.push('\n');
    for f in &r.failures {
        s += &format!("\nseed {}: {}\n", f.seed, verdict_line(&f.verdict));
        if !f.trace.is_empty() {
            s += &format!(
                "  the last {} steps (replay: --seed {}):\n",
                f.trace.len(),
                f.seed
            );
            s += &trace::to_text(&f.trace, "  ");
        }
    }
    s
}
