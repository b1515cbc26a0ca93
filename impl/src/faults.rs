//! A fault layer for tests and a nemesis: drops, duplicates and delays outbound datagrams by
//! rules, with a seeded generator (never the operating system's randomness).
//!
//! It acts on datagrams after the transport made them (fragments, Resets and re-sends alike),
//! so it exercises exactly what the transport must tolerate. Delays reorder datagrams.
//!
//! Rules come from a JSON file, re-read when its modification time changes (looked at no more
//! than every [`RELOAD_INTERVAL`]); a missing file means no faults, and a file that does not
//! parse leaves the previous rules in force (and says why on stderr):
//!
//! ```json
//! {
//!   "seed": 7,
//!   "rules": [
//!     { "from": "127.0.0.1:9092", "to": "*", "drop": 0.1 },
//!     { "from": "*", "to": "*", "duplicate": 1.0, "delay_ms": [0, 20] }
//!   ]
//! }
//! ```
//!
//! A datagram takes the first rule whose `from` and `to` match (`"*"`, the default, matches any
//! address). It is dropped with probability `drop`; otherwise sent twice with probability
//! `duplicate`; each copy is held back by a delay drawn uniformly from `delay_ms` (inclusive,
//! default none).

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Deserialize;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the rules file's modification time is looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(100);
/// The longest delay a rule may ask for.
pub const DELAY_MS_MAX: u64 = 60_000;
/// The most rules a file may hold.
pub const RULES_MAX: usize = 1024;
/// The largest rules file read.
pub const FILE_BYTES_MAX: u64 = 1024 * 1024;

/// One end of a rule: any address, or one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    #[default]
    Any,
    Address(SocketAddrV4),
}

impl Endpoint {
    fn matches(&self, a: SocketAddrV4) -> bool {
        match self {
            Endpoint::Any => true,
            Endpoint::Address(x) => *x == a,
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(Endpoint::Any);
        }
        s.parse()
            .map(Endpoint::Address)
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is neither * nor IPv4:port")))
    }
}

/// One rule of the file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    pub from: Endpoint,
    pub to: Endpoint,
    pub drop: f64,
    pub duplicate: f64,
    pub delay_ms: Option<[u64; 2]>,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub seed: u64,
    pub rules: Vec<Rule>,
}

impl Rules {
    pub fn parse(text: &str) -> Result<Rules, String> {
        let rules: Rules = serde_json::from_str(text).map_err(|e| e.to_string())?;
        rules.validate()?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), String> {
        if self.rules.len() > RULES_MAX {
            return Err(format!("more than {RULES_MAX} rules"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            for (name, p) in [("drop", r.drop), ("duplicate", r.duplicate)] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("rule {i}: {name} must be between 0 and 1, not {p}"));
                }
            }
            if let Some([lo, hi]) = r.delay_ms {
                if lo > hi || hi > DELAY_MS_MAX {
                    return Err(format!(
                        "rule {i}: delay_ms [{lo}, {hi}] must be ascending and at most {DELAY_MS_MAX}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Counters of what the fault layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub fault_dropped: u64,
    pub fault_duplicated: u64,
    /// Copies held back by a delay.
    pub fault_delayed: u64,
}

impl FaultStats {
    pub fn counters(&self) -> [(&'static str, u64); 3] {
        [
            ("fault_dropped", self.fault_dropped),
            ("fault_duplicated", self.fault_duplicated),
            ("fault_delayed", self.fault_delayed),
        ]
    }
}

/// What to do with one datagram: send a copy after each delay (none: dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub copies: Vec<Duration>,
}

/// Rules and the generator that applies them.
pub struct Faults {
    rules: Rules,
    salt: u64,
    rng: Pcg64Mcg,
    pub stats: FaultStats,
}

impl Faults {
    /// `salt` tells nodes sharing a rules file apart (their address, say), so that they do not
    /// draw the same sequence.
    pub fn new(rules: Rules, salt: u64) -> Faults {
        let rng = Pcg64Mcg::seed_from_u64(rules.seed ^ salt);
        Faults {
            rules,
            salt,
            rng,
            stats: FaultStats::default(),
        }
    }

    /// New rules, and the generator seeded afresh from them.
    pub fn replace(&mut self, rules: Rules) {
        self.rng = Pcg64Mcg::seed_from_u64(rules.seed ^ self.salt);
        self.rules = rules;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        p > 0.0 && ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Decides the fate of one datagram from `from` to `to`.
    pub fn decide(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> Verdict {
        let Some(rule) = self
            .rules
            .rules
            .iter()
            .find(|r| r.from.matches(from) && r.to.matches(to))
            .cloned()
        else {
            return Verdict {
                copies: vec![Duration::ZERO],
            };
        };
        if self.chance(rule.drop) {
            self.stats.fault_dropped += 1;
            return Verdict::default();
        }
        let n = if self.chance(rule.duplicate) {
            self.stats.fault_duplicated += 1;
            2
        } else {
            1
        };
        let mut copies = Vec::with_capacity(n);
        for _ in 0..n {
            let delay = match rule.delay_ms {
                Some([lo, hi]) if hi > 0 => lo + self.rng.next_u64() % (hi - lo + 1),
                _ => 0,
            };
            if delay > 0 {
                self.stats.fault_delayed += 1;
            }
            copies.push(Duration::from_millis(delay));
        }
        Verdict { copies }
    }
}

/// A rules file, watched: [`FaultsFile::refresh`] re-reads it when its modification time
/// changes.
pub struct FaultsFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked_at: Option<Instant>,
    pub faults: Faults,
}

impl FaultsFile {
    /// Watches `path` (which need not exist yet).
    pub fn new(path: &Path, salt: u64) -> FaultsFile {
        let mut file = FaultsFile {
            path: path.to_path_buf(),
            modified: None,
            checked_at: None,
            faults: Faults::new(Rules::default(), salt),
        };
        file.refresh(Instant::now());
        file
    }

    /// Re-reads the file if it changed, at most every [`RELOAD_INTERVAL`].
    pub fn refresh(&mut self, now: Instant) {
        if self
            .checked_at
            .is_some_and(|t| now.saturating_duration_since(t) < RELOAD_INTERVAL)
        {
            return;
        }
        self.checked_at = Some(now);
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return;
        }
        self.modified = modified;
        if modified.is_none() {
            // Gone: no faults.
            self.faults.replace(Rules::default());
            return;
        }
        match read_rules(&self.path) {
            Ok(rules) => self.faults.replace(rules),
            Err(e) => eprintln!(
                "faults file {}: {e}; keeping the previous rules",
                self.path.display()
            ),
        }
    }
}

fn read_rules(path: &Path) -> Result<Rules, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(FILE_BYTES_MAX + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(format!("larger than {FILE_BYTES_MAX} bytes"));
    }
    Rules::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn rules_parse_and_bad_files_are_clear_errors() {
        let r = Rules::parse(
            r#"{"seed": 3, "rules": [{"from": "127.0.0.1:9092", "drop": 0.5},
                                     {"to": "*", "duplicate": 1, "delay_ms": [1, 5]}]}"#,
        )
        .unwrap();
        assert_eq!(r.seed, 3);
        assert_eq!(r.rules[0].from, Endpoint::Address(addr(9092)));
        assert_eq!(r.rules[1].from, Endpoint::Any);
        for (bad, why) in [
            (r#"{"rules": [{"drop": 1.5}]}"#, "between 0 and 1"),
            (r#"{"rules": [{"drop": -0.1}]}"#, "between 0 and 1"),
            (r#"{"rules": [{"delay_ms": [5, 1]}]}"#, "ascending"),
            (r#"{"rules": [{"delay_ms": [0, 999999]}]}"#, "at most"),
            (r#"{"rules": [{"from": "somewhere"}]}"#, "neither"),
            (r#"{"rules": [{"dorp": 1}]}"#, "unknown field"),
            ("[1, 2", "expected"),
        ] {
            let e = Rules::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_with_its_probabilities() {
        let rules = Rules::parse(
            r#"{"rules": [{"from": "127.0.0.1:1", "drop": 1},
                          {"from": "127.0.0.1:2", "duplicate": 1, "delay_ms": [3, 3]},
                          {"from": "127.0.0.1:3", "drop": 0.25}]}"#,
        )
        .unwrap();
        let mut f = Faults::new(rules, 0);
        assert!(f.decide(addr(1), addr(9)).copies.is_empty());
        assert_eq!(
            f.decide(addr(2), addr(9)).copies,
            vec![Duration::from_millis(3); 2]
        );
        assert_eq!(f.decide(addr(4), addr(9)).copies, vec![Duration::ZERO]);
        let dropped = (0..10_000)
            .filter(|_| f.decide(addr(3), addr(9)).copies.is_empty())
            .count();
        assert!((2_200..2_800).contains(&dropped), "{dropped} of 10000");
        assert_eq!(f.stats.fault_duplicated, 1);
        assert_eq!(f.stats.fault_delayed, 2);
        assert_eq!(f.stats.fault_dropped, 1 + dropped as u64);
    }

    #[test]
    fn the_same_seed_gives_the_same_decisions() {
        let rules =
            Rules::parse(r#"{"seed": 9, "rules": [{"drop": 0.5, "delay_ms": [0, 50]}]}"#).unwrap();
        let run = || {
            let mut f = Faults::new(rules.clone(), 77);
            (0..100)
                .map(|_| f.decide(addr(1), addr(2)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn the_file_is_reread_when_it_changes_and_a_missing_one_means_no_faults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        let mut file = FaultsFile::new(&path, 0);
        assert!(file.faults.rules().rules.is_empty());
        std::fs::write(&path, r#"{"rules": [{"drop": 1}]}"#).unwrap();
        let t = Instant::now() + RELOAD_INTERVAL;
        file.refresh(t);
        assert_eq!(file.faults.rules().rules.len(), 1);
        // A broken rewrite keeps the rules in force.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "{ not json").unwrap();
        file.refresh(t + RELOAD_INTERVAL);
        assert_eq!(file.faults.rules().rules.len(), 1);
        std::fs::remove_file(&path).unwrap();
        file.refresh(t + 2 * RELOAD_INTERVAL);
        assert!(file.faults.rules().rules.is_empty());
    }
}
