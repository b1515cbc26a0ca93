//! Runs the checker on a configuration and collects verdicts.

use crate::knobs::Knobs;
use crate::model::{Action, State, WatermarkModel};
use crate::properties;
use crate::trace::{self, TraceStep};
use serde::Serialize;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, UniformChooser};
use std::collections::BTreeSet;
use std::hash::Hash;
use std::time::{Duration, Instant};
use watermark_model::rules::{Coverage, Recording};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The checker's own parallel search (`bfs.rs`), named after stateright's BFS, which it
    /// replaces: each thread takes its newest state first, so counterexamples are short but not
    /// always the shortest.
    Bfs,
    /// Depth first: lean on memory.
    Dfs,
    /// Random walks from a seed, until the timeout; never complete.
    Simulation,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bfs" => Ok(Strategy::Bfs),
            "dfs" => Ok(Strategy::Dfs),
            "simulation" => Ok(Strategy::Simulation),
            _ => Err(format!(
                "strategy must be bfs, dfs or simulation, not '{s}'"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub strategy: Strategy,
    pub threads: usize,
    pub timeout: Option<Duration>,
    /// Stop as soon as these properties have a discovery (all of them).
    pub stop_when_found: Option<Vec<&'static str>>,
    /// Stop as soon as any Always property is violated (TLC's default); the verdicts of the
    /// properties without a discovery are then unknown.
    pub stop_at_first_violation: bool,
    /// Called about once a second while checking.
    pub progress: Option<ProgressFn>,
    pub seed: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strategy: Strategy::Bfs,
            threads: 1,
            timeout: None,
            stop_when_found: None,
            stop_at_first_violation: false,
            progress: None,
            seed: 0,
        }
    }
}

/// What `RunOptions::progress` calls.
#[derive(Clone)]
pub struct ProgressFn(pub std::sync::Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Holds,
    Violated,
    Found,
    NotFound,
    /// The search stopped at another property's violation before deciding this one.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Violated => "violated",
            Verdict::Found => "found",
            Verdict::NotFound => "not-found",
            Verdict::Unknown => "unknown",
        }
    }
    /// The verdict of a property that has (`discovered`) or has not a discovery, from a search
    /// that did or did not stop at the first violation.
    pub fn of(expectation: &Expectation, discovered: bool, stopped_at_violation: bool) -> Verdict {
        match (expectation, discovered) {
            (_, false) if stopped_at_violation => Verdict::Unknown,
            (Expectation::Sometimes, true) => Verdict::Found,
            (Expectation::Sometimes, false) => Verdict::NotFound,
            (_, true) => Verdict::Violated,
            (_, false) => Verdict::Holds,
        }
    }

    /// Whether this verdict is what a correct protocol gives (an unknown one is not a failure
    /// by itself: the violation that stopped the search is).
    pub fn is_good(self) -> bool {
        matches!(self, Verdict::Holds | Verdict::Found | Verdict::Unknown)
    }
}

#[derive(Clone, Debug)]
pub struct PropertyOutcome {
    pub name: &'static str,
    pub id: &'static str,
    pub expectation: Expectation,
    pub verdict: Verdict,
    pub path: Option<Path<State, Action>>,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub knobs: Knobs,
    pub strategy: Strategy,
    /// The search explored every reachable state within the bounds.
    pub complete: bool,
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    /// The search stopped at the first violation (`stop_at_first_violation`).
    pub stopped_at_violation: bool,
    pub properties: Vec<PropertyOutcome>,
    /// How often each spec rule fired while the checker explored (every expansion of a state
    /// counts). Checks running at once in one process count into each other's.
    pub rule_coverage: Coverage,
}

impl Outcome {
    /// No Always property violated and every Sometimes property found.
    pub fn all_good(&self) -> bool {
        self.properties.iter().all(|p| p.verdict.is_good())
    }

    pub fn property(&self, name: &str) -> Option<&PropertyOutcome> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The readable trace of a property's discovery.
    pub fn trace(&self, name: &str) -> Option<Vec<TraceStep>> {
        let path = self.property(name)?.path.as_ref()?;
        Some(trace::render(
            &WatermarkModel::new(self.knobs.clone()),
            path,
        ))
    }
}

/// Starts checking `model` with `options`' strategy, threads, timeout and seed, until
/// `finish_when` matches its discoveries: the checker's own search (`bfs.rs`) for
/// `Strategy::Bfs`, stateright's checkers for the others.
pub fn spawn<M>(model: M, options: &RunOptions, finish_when: HasDiscoveries) -> Box<dyn Checker<M>>
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Send + Sync + Clone + PartialEq + 'static,
    M::Action: Clone + PartialEq + Send,
{
    let threads = options.threads.max(1);
    let stateright = |model: M| {
        let builder = model
            .checker()
            .threads(threads)
            .finish_when(finish_when.clone());
        match options.timeout {
            Some(timeout) => builder.timeout(timeout),
            None => builder,
        }
    };
    match options.strategy {
        Strategy::Bfs => Box::new(crate::bfs::spawn(
            model,
            threads,
            options.timeout,
            finish_when.clone(),
        )),
        Strategy::Dfs => Box::new(stateright(model).spawn_dfs()),
        Strategy::Simulation => {
            Box::new(stateright(model).spawn_simulation(options.seed, UniformChooser))
        }
    }
}

/// Checks a configuration for every property that applies to it.
pub fn run(knobs: &Knobs, options: &RunOptions) -> Outcome {
    run_properties(knobs, properties::enabled(knobs), options)
}

/// Checks a configuration for the given properties only.
pub fn run_properties(
    knobs: &Knobs,
    defs: Vec<properties::PropertyDef>,
    options: &RunOptions,
) -> Outcome {
    // Only the checker's own search judges Eventually properties (`bfs.rs`): stateright's
    // read them otherwise.
    let defs: Vec<_> = defs
        .into_iter()
        .filter(|d| options.strategy == Strategy::Bfs || d.expectation != Expectation::Eventually)
        .collect();
    let model = WatermarkModel::new(knobs.clone()).with_properties(defs.clone());
    let finish_when = if let Some(names) = &options.stop_when_found {
        HasDiscoveries::AllOf(names.iter().copied().collect::<BTreeSet<_>>())
    } else if options.stop_at_first_violation {
        HasDiscoveries::AnyFailures
    } else {
        HasDiscoveries::All
    };
    let recording = Recording::start();
    let started = Instant::now();
    let mut checker = spawn(model, options, finish_when);
    let mut next_report = Instant::now() + Duration::from_secs(1);
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(ProgressFn(progress)) = &options.progress {
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(1);
                progress(&Progress {
                    states: checker.state_count(),
                    unique_states: checker.unique_state_count(),
                    max_depth: checker.max_depth(),
                    elapsed: started.elapsed(),
                });
            }
        }
    }
    let elapsed = started.elapsed();
    // A checker thread that panicked (a handler's `expect`, an index out of bounds) fails the
    // run here, with its own message, instead of leaving a partial search to be read as a
    // verdict.
    for handle in checker.handles() {
        if let Err(panic) = handle.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let mut discoveries = checker.discoveries();
    let timed_out = options
        .timeout
        .is_some_and(|t| elapsed + Duration::from_millis(50) >= t);
    let stopped_early = options.stop_when_found.is_some()
        && options
            .stop_when_found
            .iter()
            .flatten()
            .all(|n| discoveries.contains_key(n));
    // stateright also stops on its own once every property has a discovery.
    let all_discovered = defs.iter().all(|d| discoveries.contains_key(d.name));
    let stopped_at_violation = options.stop_at_first_violation
        && defs
            .iter()
            .any(|d| d.expectation == Expectation::Always && discoveries.contains_key(d.name));
    let complete = options.strategy != Strategy::Simulation
        && !timed_out
        && !stopped_early
        && !all_discovered
        && !stopped_at_violation;
    let properties = defs
        .iter()
        .map(|d| {
            let path = discoveries.remove(d.name);
            let verdict = Verdict::of(&d.expectation, path.is_some(), stopped_at_violation);
            PropertyOutcome {
                name: d.name,
                id: d.id,
                expectation: d.expectation.clone(),
                verdict,
                path,
            }
        })
        .collect();
    Outcome {
        knobs: knobs.clone(),
        strategy: options.strategy,
        complete,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        seconds: elapsed.as_secs_f64(),
        stopped_at_violation,
        properties,
        rule_coverage: recording.coverage(),
    }
}

/// Convenience for tests: the model of a configuration.
pub fn model(knobs: &Knobs) -> WatermarkModel {
    WatermarkModel::new(knobs.clone())
}

/// Whether a model's properties are all registered (for tests of property coverage).
pub fn property_names(knobs: &Knobs) -> Vec<&'static str> {
    WatermarkModel::new(knobs.clone())
        .properties()
        .iter()
        .map(|p| p.name)
        .collect()
}
