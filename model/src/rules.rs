//! Which spec rules fired, counted outside the actors' state, as malachite's traces record the
//! rule that fired. Every handler arm calls [`fired`] with the rule it implements (`R0`…`R75` of
//! spec.md); `watermark check` and `watermark simulate` report the counts, and a test asserts
//! that every rule fires somewhere.
//!
//! The counts live in process-wide atomics, not in any state: recording changes no state, no
//! fingerprint and no state count, and the checker's worker threads all count into them.
//! Counting is off (one relaxed load per call) until [`Recording::start`] turns it on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A rule of spec.md: `R26` is `Rule(26)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule(pub u8);

/// The number of rules, R0 to R75.
pub const RULE_COUNT: usize = 76;

macro_rules! rules {
    ($($name:ident = $n:expr),* $(,)?) => {
        $(pub const $name: Rule = Rule($n);)*
    };
}

rules!(
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
    R6 = 6,
    R7 = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
    R16 = 16,
    R17 = 17,
    R18 = 18,
    R19 = 19,
    R20 = 20,
    R21 = 21,
    R22 = 22,
    R23 = 23,
    R24 = 24,
    R25 = 25,
    R26 = 26,
    R27 = 27,
    R28 = 28,
    R29 = 29,
    R30 = 30,
    R31 = 31,
    R32 = 32,
    R33 = 33,
    R34 = 34,
    R35 = 35,
    R36 = 36,
    R37 = 37,
    R38 = 38,
    R39 = 39,
    R40 = 40,
    R41 = 41,
    R42 = 42,
    R43 = 43,
    R44 = 44,
    R45 = 45,
    R46 = 46,
    R47 = 47,
    R48 = 48,
    R49 = 49,
    R50 = 50,
    R51 = 51,
    R52 = 52,
    R53 = 53,
    R54 = 54,
    R55 = 55,
    R56 = 56,
    R57 = 57,
    R58 = 58,
    R59 = 59,
    R60 = 60,
    R61 = 61,
    R62 = 62,
    R63 = 63,
    R64 = 64,
    R65 = 65,
    R66 = 66,
    R67 = 67,
    R68 = 68,
    R69 = 69,
    R70 = 70,
    R71 = 71,
    R72 = 72,
    R73 = 73,
    R74 = 74,
    R75 = 75,
);

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "R{}", self.0)
    }
}

/// How many [`Recording`]s are alive: counting is on while any is.
static RECORDING: AtomicUsize = AtomicUsize::new(0);
static COUNTS: [AtomicU64; RULE_COUNT] = [const { AtomicU64::new(0) }; RULE_COUNT];

/// A handler arm implementing `rule` ran.
#[inline]
pub fn fired(rule: Rule) {
    if RECORDING.load(Ordering::Relaxed) > 0 {
        COUNTS[usize::from(rule.0)].fetch_add(1, Ordering::Relaxed);
    }
}

/// How often each rule fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage(pub [u64; RULE_COUNT]);

impl Default for Coverage {
    fn default() -> Self {
        Coverage([0; RULE_COUNT])
    }
}

impl Coverage {
    pub fn count(&self, rule: Rule) -> u64 {
        self.0[usize::from(rule.0)]
    }

    /// The rules that never fired.
    pub fn unfired(&self) -> Vec<Rule> {
        (0..RULE_COUNT as u8)
            .map(Rule)
            .filter(|r| self.count(*r) == 0)
            .collect()
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: &Coverage) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// One line for reports: `rules fired: 42 of 52 (never: R3 R19)`.
    pub fn summary(&self) -> String {
        let unfired: Vec<String> = self.unfired().iter().map(|r| r.to_string()).collect();
        let mut s = format!(
            "rules fired: {} of {}",
            RULE_COUNT - unfired.len(),
            RULE_COUNT
        );
        if !unfired.is_empty() {
            s.push_str(&format!(" (never: {})", unfired.join(" ")));
        }
        s
    }

    /// `(rule, count)` for every rule, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        self.0.iter().enumerate().map(|(i, c)| (Rule(i as u8), *c))
    }
}

/// A map from rule name to count: `{"R0": 12, "R1": 3, ...}`.
impl serde::Serialize for Coverage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(RULE_COUNT))?;
        for (rule, count) in self.iter() {
            map.serialize_entry(&rule.to_string(), &count)?;
        }
        map.end()
    }
}

/// Counting for the lifetime of this value: the counts of whatever ran meanwhile, on any thread.
/// With two at once (tests in one process), each sees the other's counts too, so a test that
/// needs exact counts runs alone in its process; counting stops only when the last one ends.
pub struct Recording {
    start: Coverage,
}

impl Recording {
    pub fn start() -> Recording {
        RECORDING.fetch_add(1, Ordering::Relaxed);
        Recording { start: snapshot() }
    }

    /// The counts since the recording started.
    pub fn coverage(&self) -> Coverage {
        let now = snapshot();
        let mut counts = [0; RULE_COUNT];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = now.0[i] - self.start.0[i];
        }
        Coverage(counts)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDING.fetch_sub(1, Ordering::Relaxed);
    }
}

fn snapshot() -> Coverage {
    let mut counts = [0; RULE_COUNT];
    for (c, a) in counts.iter_mut().zip(COUNTS.iter()) {
        *c = a.load(Ordering::Relaxed);
    }
    Coverage(counts)
}
