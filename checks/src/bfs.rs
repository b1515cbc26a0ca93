//! The checker behind `check --strategy bfs` (issue 17), in place of stateright's `spawn_bfs`.
//!
//! It explores the same `Model`, reports through the same `Checker` trait and fingerprints states
//! as stateright does, so the state counts and verdicts are the same. Like stateright's "BFS", it
//! is a parallel search whose threads each take their newest pending state first (the parent's
//! data is then still in the cache) and hand half of their pending states to a thread that runs
//! out; so a counterexample is not necessarily a shortest one. What it leaves out is stateright's
//! per-state bookkeeping, about a seventh of the canonical preset's time (BENCHMARKS.md):
//!
//! - a pending state carries its fingerprint and depth, not the whole action path from the
//!   initial state (stateright clones that `Vec` for every successor); a discovery's path is
//!   rebuilt at the end from the visited set's parent links, by replaying the recorded actions;
//! - a property stops being evaluated once it has its discovery (a Sometimes found, an Always
//!   violated), and the first discovery is the one kept (stateright evaluates every property in
//!   every state, and records the discovery again, path and all, in every state that shows it).
//!
//! A level-by-level search (each level split among the threads) was tried first: it found the
//! shortest counterexamples but was 1.2 times slower than stateright's and took 1.6 times the
//! memory, because a state's data had long left the cache when its turn came.
//!
//! An Eventually property means here what TLA+ users call a possibility from everywhere (CTL's
//! `AG EF`): **from every reachable state, some path reaches a state where its condition holds**.
//! (stateright's own checkers read Eventually otherwise, as "every path reaches it", judged at
//! terminal states only, which the watermark models, whose timers can always fire, do not have.)
//! With such a property the search also keeps every edge of the state graph; once the graph is
//! complete, a search backwards from the states where the condition holds marks every state that
//! can reach one, and a state it leaves unmarked is the discovery: a state from which the
//! condition can no longer come to hold, reached by the shortest parent path among them. A state
//! with a successor outside the model's boundary counts as one that can: what lies beyond the
//! bounds is not known, and the bounds must not be mistaken for a dead end. A search that stops
//! early (a timeout, `finish_when`) judges no Eventually property.
//!
//! Symmetry reduction is not supported (the watermark models do not use it).

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use nohash_hasher::BuildNoHashHasher;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, Property};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// States a thread checks between looks at the clock, the discoveries and the market.
const BLOCK_STATES: usize = 1500;

/// A state waiting to be checked: its fingerprint and its depth (1 for an initial state).
type Job<S> = (S, u64, usize);

/// Where threads hand out work: blocks of pending states, and how many threads wait for one.
struct Market<S> {
    threads: usize,
    inner: Mutex<MarketInner<S>>,
    ready: Condvar,
}

struct MarketInner<S> {
    blocks: Vec<Vec<Job<S>>>,
    waiting: usize,
    closed: bool,
}

impl<S> Market<S> {
    fn new(threads: usize, initial: Vec<Job<S>>) -> Self {
        Market {
            threads,
            inner: Mutex::new(MarketInner {
                blocks: vec![initial],
                waiting: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// A block of work, or none when the search is over: every thread waits and no block is
    /// left, or the market was closed.
    fn take(&self) -> Vec<Job<S>> {
        let mut m = self.inner.lock().expect("market");
        loop {
            if m.closed {
                return Vec::new();
            }
            if let Some(block) = m.blocks.pop() {
                return block;
            }
            m.waiting += 1;
            if m.waiting == self.threads {
                m.closed = true;
                self.ready.notify_all();
                return Vec::new();
            }
            m = self.ready.wait(m).expect("market");
            m.waiting -= 1;
        }
    }

    /// Whether a thread waits for work (read without the lock's ordering guarantees: a stale
    /// answer only delays a hand-out by one block).
    fn wanted(&self) -> bool {
        self.inner.lock().map(|m| m.waiting > 0).unwrap_or(false)
    }

    fn give(&self, block: Vec<Job<S>>) {
        self.inner.lock().expect("market").blocks.push(block);
        self.ready.notify_one();
    }

    fn close(&self) {
        // Also from a thread that panicked: a poisoned lock still closes the market.
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.closed = true;
        drop(m);
        self.ready.notify_all();
    }
}

/// Closes the market when the thread holding it unwinds.
struct CloseOnPanic<'a, S>(&'a Market<S>);

impl<S> Drop for CloseOnPanic<'_, S> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

/// Sets a flag when dropped, unwinding or not.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A state's fingerprint (`crate::hashed::fingerprint`, stateright's own), never zero.
fn fingerprint<T: Hash>(value: &T) -> u64 {
    let fp = crate::hashed::fingerprint(value);
    assert_ne!(fp, 0, "the hasher returned zero, an invalid fingerprint");
    fp
}

/// How a visited state was first reached: from the state of fingerprint `parent` by the action at
/// `action` in its list of actions; `None` for an initial state.
type Parent = Option<(u64, u32)>;

/// What the threads share.
struct Shared<M: Model> {
    model: M,
    properties: Vec<Property<M>>,
    finish_when: HasDiscoveries,
    deadline: Option<Instant>,
    visited: DashMap<u64, Parent, BuildNoHashHasher<u64>>,
    state_count: AtomicUsize,
    max_depth: AtomicUsize,
    /// Per property: whether it has a discovery.
    found: Vec<AtomicBool>,
    /// Per property name: the fingerprint of the state of its first discovery.
    discoveries: Mutex<HashMap<&'static str, u64>>,
    /// Set when the search is over (exhausted, finished, or out of time).
    done: AtomicBool,
    /// Set when the search stopped early (finished or out of time).
    stop: AtomicBool,
    /// The indices of the Eventually properties; with none, no graph is kept.
    eventually: Vec<usize>,
    /// The threads' shares of the state graph, merged as each thread ends.
    graph: Mutex<Graph>,
}

/// What the Eventually properties need of the state graph: every edge, the states where each
/// property's condition holds, and the states with a successor outside the boundary.
#[derive(Default)]
struct Graph {
    /// Each edge as (successor, state), one list per thread: sorted by successor, a list gives
    /// a state's predecessors. The lists are not merged, which would hold them twice at once.
    edges: Vec<Vec<(u64, u64)>>,
    /// Per Eventually property (in the order of `Shared::eventually`): the states where its
    /// condition holds.
    goals: Vec<Vec<u64>>,
    /// The states with a successor outside the boundary.
    frontier: Vec<u64>,
}

impl Graph {
    fn new(properties: usize) -> Self {
        Graph {
            edges: vec![Vec::new()],
            goals: vec![Vec::new(); properties],
            ..Graph::default()
        }
    }

    /// The thread's own list of edges.
    fn edges_mut(&mut self) -> &mut Vec<(u64, u64)> {
        self.edges.last_mut().expect("a thread's list")
    }

    fn absorb(&mut self, other: Graph) {
        self.edges.extend(other.edges);
        self.frontier.extend(other.frontier);
        for (mine, theirs) in self.goals.iter_mut().zip(other.goals) {
            mine.extend(theirs);
        }
    }
}

/// The checker. Build it with [`spawn`].
pub struct BfsChecker<M: Model> {
    shared: Arc<Shared<M>>,
    handles: Vec<JoinHandle<()>>,
}

/// Starts checking `model` on `threads` threads, stopping at `timeout` or when
/// `finish_when` matches the discoveries (stateright's `HasDiscoveries`).
pub fn spawn<M>(
    model: M,
    threads: usize,
    timeout: Option<Duration>,
    finish_when: HasDiscoveries,
) -> BfsChecker<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Clone + Send + Sync + 'static,
    M::Action: Send,
{
    let properties = model.properties();
    let eventually: Vec<usize> = (0..properties.len())
        .filter(|i| properties[*i].expectation == Expectation::Eventually)
        .collect();
    let graph = Mutex::new(Graph::new(eventually.len()));
    let found = properties.iter().map(|_| AtomicBool::new(false)).collect();
    let shared = Arc::new(Shared {
        model,
        properties,
        finish_when,
        deadline: timeout.map(|t| Instant::now() + t),
        visited: DashMap::default(),
        state_count: AtomicUsize::new(0),
        max_depth: AtomicUsize::new(0),
        found,
        discoveries: Mutex::new(HashMap::new()),
        done: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        eventually,
        graph,
    });
    let driver = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("checker".into())
            .spawn(move || {
                // Done even if a thread panics (a handler's bug, or a mutant's): whoever waits
                // on `is_done` then joins this thread and sees the panic, rather than waiting
                // for ever.
                let _done = SetOnDrop(&shared.done);
                shared.search(threads.max(1));
            })
            .expect("spawning the checker thread")
    };
    BfsChecker {
        shared,
        handles: vec![driver],
    }
}

impl<M> Shared<M>
where
    M: Model + Send + Sync,
    M::State: Hash + Clone + Send + Sync,
    M::Action: Send,
{
    /// Explores until no state is new, or the search is stopped: each thread works through its
    /// own pending states, newest first (the parent's data is still in its cache), and hands
    /// half of them to the market whenever another thread waits for work, as stateright's does.
    fn search(&self, threads: usize) {
        let mut initial: Vec<Job<M::State>> = Vec::new();
        for state in self.model.init_states() {
            if !self.model.within_boundary(&state) {
                continue;
            }
            self.state_count.fetch_add(1, Ordering::Relaxed);
            let fp = fingerprint(&state);
            if let Entry::Vacant(e) = self.visited.entry(fp) {
                e.insert(None);
                initial.push((state, fp, 1));
            }
        }
        let market = Market::new(threads, initial);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    // A panicking thread closes the market, so that the others stop waiting
                    // for the work it held; the scope then passes the panic on.
                    let _close = CloseOnPanic(&market);
                    self.work(&market)
                });
            }
        });
        if !self.eventually.is_empty() && !self.stop.load(Ordering::Relaxed) {
            self.judge_eventually();
        }
    }

    /// Once the whole graph is known: for each Eventually property, marks every state from
    /// which a state where it holds (or one at the boundary) can be reached, searching the edges
    /// backwards, and records as its discovery the unmarked state nearest an initial state.
    fn judge_eventually(&self) {
        let mut graph = std::mem::take(&mut *self.graph.lock().expect("graph"));
        for list in &mut graph.edges {
            list.sort_unstable();
            list.dedup();
        }
        let predecessors = |to: u64| {
            graph.edges.iter().flat_map(move |list| {
                let first = list.partition_point(|(t, _)| *t < to);
                list[first..]
                    .iter()
                    .take_while(move |(t, _)| *t == to)
                    .map(|(_, from)| *from)
            })
        };
        for (k, goals) in graph.goals.iter().enumerate() {
            let mut marked: std::collections::HashSet<u64, BuildNoHashHasher<u64>> =
                goals.iter().chain(&graph.frontier).copied().collect();
            let mut pending: Vec<u64> = marked.iter().copied().collect();
            while let Some(to) = pending.pop() {
                for from in predecessors(to) {
                    if marked.insert(from) {
                        pending.push(from);
                    }
                }
            }
            if std::env::var_os("WATERMARK_GRAPH_STATS").is_some() {
                let frontier: std::collections::HashSet<u64, BuildNoHashHasher<u64>> =
                    graph.frontier.iter().copied().collect();
                let goals: std::collections::HashSet<u64, BuildNoHashHasher<u64>> =
                    goals.iter().copied().collect();
                eprintln!(
                    "{}: {} states, {} edges, {} where it holds, {} at the boundary, {} that can reach either",
                    self.properties[self.eventually[k]].name,
                    self.visited.len(),
                    graph.edges.iter().map(Vec::len).sum::<usize>(),
                    goals.len(),
                    frontier.len(),
                    marked.len()
                );
            }
            let nearest = self
                .visited
                .iter()
                .map(|e| *e.key())
                .filter(|fp| !marked.contains(fp))
                .min_by_key(|fp| (self.depth_of(*fp), *fp));
            if let Some(fp) = nearest {
                let i = self.eventually[k];
                self.found[i].store(true, Ordering::Release);
                self.discoveries
                    .lock()
                    .expect("discoveries")
                    .insert(self.properties[i].name, fp);
            }
        }
    }

    /// How many steps the parent links take from an initial state to the state `fp`.
    fn depth_of(&self, fp: u64) -> usize {
        let mut depth = 0;
        let mut at = fp;
        while let Some((parent, _)) = *self.visited.get(&at).expect("a visited state") {
            depth += 1;
            at = parent;
        }
        depth
    }

    /// One thread's share of the search.
    fn work(&self, market: &Market<M::State>) {
        let mut pending: Vec<Job<M::State>> = Vec::new();
        let mut actions = Vec::new();
        let mut deepest = 0;
        let keeps_graph = !self.eventually.is_empty();
        let mut graph = Graph::new(self.eventually.len());
        loop {
            if pending.is_empty() {
                pending = market.take();
                if pending.is_empty() {
                    self.graph.lock().expect("graph").absorb(graph);
                    return;
                }
            }
            let mut generated = 0;
            for _ in 0..BLOCK_STATES {
                let Some((state, fp, depth)) = pending.pop() else {
                    break;
                };
                if depth > deepest {
                    deepest = depth;
                    self.max_depth.fetch_max(depth, Ordering::Relaxed);
                }
                if !self.evaluate(&state, fp, &mut graph) {
                    // Every property has its discovery: nothing more to learn.
                    self.stop.store(true, Ordering::Relaxed);
                    break;
                }
                self.model.actions(&state, &mut actions);
                for (index, action) in actions.drain(..).enumerate() {
                    let Some(next) = self.model.next_state(&state, action) else {
                        continue;
                    };
                    if !self.model.within_boundary(&next) {
                        if keeps_graph {
                            graph.frontier.push(fp);
                        }
                        continue;
                    }
                    generated += 1;
                    let next_fp = fingerprint(&next);
                    if keeps_graph {
                        graph.edges_mut().push((next_fp, fp));
                    }
                    if let Entry::Vacant(e) = self.visited.entry(next_fp) {
                        e.insert(Some((fp, index as u32)));
                        pending.push((next, next_fp, depth + 1));
                    }
                }
            }
            self.state_count.fetch_add(generated, Ordering::Relaxed);
            if self.stop.load(Ordering::Relaxed) || self.should_finish() {
                self.stop.store(true, Ordering::Relaxed);
                market.close();
                return;
            }
            if pending.len() > 1 && market.wanted() {
                let half = pending.split_off(pending.len() / 2);
                market.give(half);
            }
        }
    }

    /// Evaluates the properties still without a discovery in `state`, recording the new ones,
    /// and notes in `graph` the Eventually properties that hold there. Returns whether some
    /// property is still awaiting its discovery (an Eventually property always is, until the
    /// graph is complete).
    fn evaluate(&self, state: &M::State, fp: u64, graph: &mut Graph) -> bool {
        let mut awaiting = false;
        for (i, property) in self.properties.iter().enumerate() {
            if self.found[i].load(Ordering::Relaxed) {
                // Found, or violated: its first discovery is the one reported.
                continue;
            }
            let discovered = match property.expectation {
                Expectation::Always => !(property.condition)(&self.model, state),
                Expectation::Sometimes => (property.condition)(&self.model, state),
                Expectation::Eventually => {
                    if (property.condition)(&self.model, state) {
                        let k = self.eventually.iter().position(|e| *e == i);
                        graph.goals[k.expect("an Eventually property")].push(fp);
                    }
                    false
                }
            };
            if discovered && !self.found[i].swap(true, Ordering::AcqRel) {
                self.discoveries
                    .lock()
                    .expect("discoveries")
                    .insert(property.name, fp);
            }
            awaiting |= !discovered;
        }
        awaiting
    }

    /// Whether the search should stop: out of time, or `finish_when` matches.
    fn should_finish(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return true;
        }
        let names: BTreeSet<&'static str> = self
            .properties
            .iter()
            .zip(&self.found)
            .filter(|(_, f)| f.load(Ordering::Relaxed))
            .map(|(p, _)| p.name)
            .collect();
        !names.is_empty() && self.finish_when.matches(&names, &self.properties)
    }

    /// The path from an initial state to the state of fingerprint `fp`, replaying the actions
    /// recorded in the visited set.
    fn path_to(&self, fp: u64) -> Path<M::State, M::Action>
    where
        M::Action: Clone + PartialEq,
        M::State: PartialEq,
    {
        let mut indices = Vec::new();
        let mut at = fp;
        loop {
            let link: Parent = *self.visited.get(&at).expect("a visited state");
            let Some((parent, index)) = link else { break };
            indices.push(index as usize);
            at = parent;
        }
        indices.reverse();
        let init = self
            .model
            .init_states()
            .into_iter()
            .find(|s| fingerprint(s) == at)
            .expect("the path starts at an initial state");
        let mut actions = Vec::with_capacity(indices.len());
        let mut state = init.clone();
        let mut choices = Vec::new();
        for index in indices {
            self.model.actions(&state, &mut choices);
            let action = choices.swap_remove(index);
            choices.clear();
            state = self
                .model
                .next_state(&state, action.clone())
                .expect("a recorded action applies again");
            actions.push(action);
        }
        Path::from_actions(&self.model, init, &actions).expect("the recorded actions replay")
    }
}

impl<M> Checker<M> for BfsChecker<M>
where
    M: Model + Send + Sync,
    M::State: Hash + Clone + Send + Sync,
    M::Action: Send,
{
    fn model(&self) -> &M {
        &self.shared.model
    }

    fn state_count(&self) -> usize {
        self.shared.state_count.load(Ordering::Relaxed)
    }

    fn unique_state_count(&self) -> usize {
        self.shared.visited.len()
    }

    fn max_depth(&self) -> usize {
        self.shared.max_depth.load(Ordering::Relaxed)
    }

    fn discoveries(&self) -> HashMap<&'static str, Path<M::State, M::Action>>
    where
        M::State: Clone + PartialEq,
        M::Action: Clone + PartialEq,
    {
        let found: Vec<(&'static str, u64)> = self
            .shared
            .discoveries
            .lock()
            .expect("discoveries")
            .iter()
            .map(|(name, fp)| (*name, *fp))
            .collect();
        found
            .into_iter()
            .map(|(name, fp)| (name, self.shared.path_to(fp)))
            .collect()
    }

    fn handles(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.handles)
    }

    fn is_done(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::preset;
    use crate::model::WatermarkModel;
    use crate::properties;
    use watermark_model::revision::Protocol;

    /// The model with every property that applies but L0, which stateright's checkers read
    /// otherwise (as "every path", at terminal states).
    fn model(knobs: &crate::knobs::Knobs) -> WatermarkModel {
        let defs = properties::enabled(knobs)
            .into_iter()
            .filter(|p| p.expectation != Expectation::Eventually)
            .collect();
        WatermarkModel::new(knobs.clone()).with_properties(defs)
    }

    /// States 0, 1, 2 and a trap: 0 goes to 1, 1 back to 0 or on to 2, and 2 (with `trap`) only
    /// to itself, or (without) back to 0. With `fenced`, 2 also has a successor 3 outside the
    /// boundary. "Back at 0" is the Eventually property.
    struct Trap {
        trap: bool,
        fenced: bool,
    }

    impl Model for Trap {
        type State = u8;
        type Action = u8;
        fn init_states(&self) -> Vec<u8> {
            vec![0]
        }
        fn actions(&self, state: &u8, actions: &mut Vec<u8>) {
            match state {
                0 => actions.push(1),
                1 => actions.extend([0, 2]),
                _ if self.trap => actions.push(2),
                _ => actions.push(0),
            }
            if *state == 2 && self.fenced {
                actions.push(3);
            }
        }
        fn next_state(&self, _: &u8, action: u8) -> Option<u8> {
            Some(action)
        }
        fn within_boundary(&self, state: &u8) -> bool {
            *state < 3
        }
        fn properties(&self) -> Vec<Property<Self>> {
            vec![
                Property::always("anything", |_, _| true),
                Property::eventually("back at 0", |_, s| *s == 0),
            ]
        }
    }

    fn joined(mut checker: BfsChecker<Trap>) -> BfsChecker<Trap> {
        for h in checker.handles() {
            h.join().expect("a checker thread");
        }
        checker
    }

    fn trap_discoveries(trap: bool, fenced: bool, threads: usize) -> Vec<Vec<u8>> {
        let checker = joined(spawn(
            Trap { trap, fenced },
            threads,
            None,
            HasDiscoveries::All,
        ));
        assert_eq!(checker.unique_state_count(), 3);
        checker
            .discoveries()
            .into_values()
            .map(|path| path.into_states())
            .collect()
    }

    /// An Eventually property is violated by a state from which no path leads back to where it
    /// holds, and its discovery is the path to that state; a successor outside the boundary
    /// counts as a way out.
    #[test]
    fn an_eventually_property_is_violated_by_a_dead_end_and_only_by_one() {
        for threads in [1, 2] {
            assert_eq!(trap_discoveries(true, false, threads), vec![vec![0, 1, 2]]);
            assert!(trap_discoveries(false, false, threads).is_empty());
            assert!(trap_discoveries(true, true, threads).is_empty());
        }
    }

    /// A search stopped early judges no Eventually property: the graph is not complete.
    #[test]
    fn a_search_stopped_early_judges_no_eventually_property() {
        let finish = HasDiscoveries::AllOf(["anything"].into_iter().collect());
        let checker = joined(spawn(
            Trap {
                trap: true,
                fenced: false,
            },
            1,
            Some(Duration::ZERO),
            finish,
        ));
        assert!(checker.discoveries().is_empty());
    }

    fn run(checker: impl Checker<WatermarkModel>) -> impl Checker<WatermarkModel> {
        let mut checker = checker;
        for h in checker.handles() {
            h.join().expect("a checker thread");
        }
        checker
    }

    /// A model whose successor function panics three steps in, as a handler with a bug (or a
    /// mutant) does.
    struct PanicsAtDepthThree;

    impl Model for PanicsAtDepthThree {
        type State = u8;
        type Action = ();
        fn init_states(&self) -> Vec<u8> {
            vec![0]
        }
        fn actions(&self, _: &u8, actions: &mut Vec<()>) {
            actions.push(());
        }
        fn next_state(&self, state: &u8, _: ()) -> Option<u8> {
            assert!(*state < 3, "a handler's bug");
            Some(state + 1)
        }
        fn properties(&self) -> Vec<Property<Self>> {
            vec![Property::always("anything", |_, _| true)]
        }
    }

    /// A thread that panics ends the search (the other thread, waiting for work, is not left
    /// waiting for ever), and joining the checker passes the panic on.
    #[test]
    fn a_panicking_thread_ends_the_search_and_its_panic_is_passed_on() {
        let mut checker = spawn(PanicsAtDepthThree, 2, None, HasDiscoveries::All);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !checker.is_done() {
            assert!(Instant::now() < deadline, "the search hangs after a panic");
            std::thread::sleep(Duration::from_millis(10));
        }
        let joined: Vec<_> = checker.handles().into_iter().map(|h| h.join()).collect();
        assert!(joined.iter().any(|j| j.is_err()), "the panic was lost");
    }

    #[test]
    /// The same states, the same counts and the same verdicts as stateright's checker, on a
    /// preset where every property holds and on one where two are violated.
    fn agrees_with_stateright_and_its_counterexamples_replay() {
        let holds = preset("idempotent").unwrap().knobs;
        let violated = crate::knobs::Knobs {
            protocol: Protocol::HwmTruncation,
            ..preset("slow-follower").unwrap().knobs
        };
        let mut violations = 0;
        for knobs in [holds, violated] {
            for threads in [1, 2] {
                let ours = run(spawn(model(&knobs), threads, None, HasDiscoveries::All));
                let theirs = model(&knobs).checker().threads(threads).spawn_bfs().join();
                assert_eq!(ours.unique_state_count(), theirs.unique_state_count());
                assert_eq!(ours.state_count(), theirs.state_count());
                let (ours_found, theirs_found) = (ours.discoveries(), theirs.discoveries());
                let mut names: Vec<_> = ours_found.keys().copied().collect();
                let mut expected: Vec<_> = theirs_found.keys().copied().collect();
                names.sort();
                expected.sort();
                assert_eq!(names, expected, "{knobs:?}");
                let m = model(&knobs);
                for p in m.properties() {
                    let Some(path) = ours_found.get(p.name) else {
                        continue;
                    };
                    // The path replays from an initial state to a state that shows the
                    // discovery: a violation of an Always, an example of a Sometimes.
                    let last = path.last_state();
                    let holds_there = (p.condition)(&m, last);
                    match p.expectation {
                        Expectation::Always => {
                            assert!(!holds_there, "{}", p.name);
                            violations += 1;
                        }
                        _ => assert!(holds_there, "{}", p.name),
                    }
                }
            }
        }
        assert!(
            violations >= 2,
            "the violating configuration violated nothing"
        );
    }

    /// Stopping at the first violation stops early, with that violation's path.
    #[test]
    fn stops_at_the_first_violation_and_at_its_timeout() {
        let knobs = crate::knobs::Knobs {
            protocol: Protocol::HwmTruncation,
            ..preset("slow-follower").unwrap().knobs
        };
        let full = run(spawn(model(&knobs), 2, None, HasDiscoveries::All));
        let first = run(spawn(model(&knobs), 2, None, HasDiscoveries::AnyFailures));
        assert!(first.unique_state_count() < full.unique_state_count());
        let m = model(&knobs);
        let failures = m
            .properties()
            .into_iter()
            .filter(|p| p.expectation == Expectation::Always)
            .filter(|p| first.discoveries().contains_key(p.name))
            .count();
        assert!(failures >= 1);
        let timed = run(spawn(
            model(&preset("canonical").unwrap().knobs),
            2,
            Some(Duration::from_millis(200)),
            HasDiscoveries::All,
        ));
        assert!(timed.is_done());
        assert!(timed.unique_state_count() < 1_081_805);
    }
}
