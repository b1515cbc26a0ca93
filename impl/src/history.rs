//! What a nemesis run saw, and the checks run over it once the cluster is quiet (issue 11).
//!
//! The producers record every value they were given and every acknowledgement they got
//! ([`History`]). At the end, each partition is read twice: through the protocol, by a consumer
//! from offset 0 up to the leader's high watermark, and from every replica's segment files after
//! a clean stop ([`PartitionEnd`]). [`check`] then counts, per kind, what a correct cluster never
//! shows:
//!
//! - **lost**: an acknowledged record that is not at its acknowledged offset in what the consumer
//!   read (missing, elsewhere, or beyond the high watermark). Spec I12, AcknowledgedRecordsSurvive.
//! - **offsets_reused**: one offset acknowledged for two different values.
//! - **duplicates**: copies of a value beyond the first in what the consumer read. A fault for an
//!   idempotent producer only; without idempotence a retried batch may legitimately be written
//!   twice (at-least-once), and the count is reported but is not an anomaly.
//! - **gaps**: offsets missing from what the consumer read between 0 and the high watermark, or
//!   read out of place: each partition's offsets are dense and end at the high watermark.
//! - **divergent_replicas**: replicas whose log on disk is not the log the consumer read, value
//!   for value, or whose entries (leader epochs, producer sequences) differ from another
//!   replica's that does match it. After the quiet phase every replica holds the same log.
//! - **unexpected_values**: values no producer was given: corruption.
//!
//! Values of records that were sent but never acknowledged may or may not be in the log; the
//! checks allow both.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use watermark_model::{BrokerId, LeaderEpoch, LogEntry, Offset, Value};

/// How many anomalies are described in words; the counters count them all.
pub const EXAMPLES_MAX: usize = 20;

/// One acknowledgement: a producer was told `value` is at `offset` of `partition`.
#[derive(Clone, Debug, PartialEq)]
pub struct Acked {
    pub partition: u32,
    pub offset: Offset,
    pub value: Value,
    /// The epoch of the leader that acknowledged it.
    pub leader_epoch: LeaderEpoch,
    /// Seconds since the run started.
    pub at_s: f64,
}

/// What the producers did.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every value handed to a producer, acknowledged or not.
    pub attempted: HashSet<Value>,
    pub acked: Vec<Acked>,
}

/// How one partition ended.
#[derive(Clone, Debug, Default)]
pub struct PartitionEnd {
    /// The leader's high watermark once the cluster was quiet.
    pub high_watermark: Offset,
    /// What a consumer read from offset 0 up to the high watermark, in the order it read it.
    pub consumed: Vec<(Offset, Value)>,
    /// Each replica's log, read from its segment files after a clean stop.
    pub replicas: BTreeMap<BrokerId, Vec<LogEntry>>,
}

/// The counts of each anomaly, and the first few described.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Anomalies {
    /// Acknowledged records (acknowledgements, counted once each).
    pub acked: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub offsets_reused: u64,
    pub divergent_replicas: u64,
    pub gaps: u64,
    pub unexpected_values: u64,
    /// At most [`EXAMPLES_MAX`] anomalies in words.
    pub examples: Vec<String>,
}

impl Anomalies {
    /// Whether nothing unsafe happened. Duplicates count only for an idempotent producer.
    pub fn safe(&self, idempotent: bool) -> bool {
        self.lost == 0
            && self.offsets_reused == 0
            && self.divergent_replicas == 0
            && self.gaps == 0
            && self.unexpected_values == 0
            && (!idempotent || self.duplicates == 0)
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(what());
        }
    }
}

fn show(v: &Value) -> String {
    format!("{v:?}")
}

/// Runs every check of the module's list over the history and the partitions' ends. A partition
/// that has acknowledgements but no end counts all of them lost.
pub fn check(
    topic: &str,
    history: &History,
    ends: &BTreeMap<u32, PartitionEnd>,
    idempotent: bool,
) -> Anomalies {
    let mut a = Anomalies {
        acked: history.acked.len() as u64,
        ..Anomalies::default()
    };
    // What the consumer read, by partition and offset (the first value read there).
    let read: BTreeMap<u32, HashMap<Offset, &Value>> = ends
        .iter()
        .map(|(p, end)| {
            let mut at = HashMap::with_capacity(end.consumed.len());
            for (o, v) in &end.consumed {
                at.entry(*o).or_insert(v);
            }
            (*p, at)
        })
        .collect();

    // lost: every acknowledgement checked against the offset it named.
    for ack in &history.acked {
        let found = read.get(&ack.partition).and_then(|r| r.get(&ack.offset));
        if found != Some(&&ack.value) {
            a.lost += 1;
            a.note(|| {
                let hwm = ends.get(&ack.partition).map(|e| e.high_watermark);
                let there = match found {
                    Some(v) => format!("the log holds {} there", show(v)),
                    None => format!("nothing was read there (high watermark {hwm:?})"),
                };
                format!(
                    "lost: {} acknowledged at {topic}-{}@{} in leader epoch {} at {:.1} s; {there}",
                    show(&ack.value),
                    ack.partition,
                    ack.offset,
                    ack.leader_epoch,
                    ack.at_s
                )
            });
        }
    }

    // offsets_reused: one offset acknowledged for two values.
    let mut by_offset: BTreeMap<(u32, Offset), Vec<&Value>> = BTreeMap::new();
    for ack in &history.acked {
        let values = by_offset.entry((ack.partition, ack.offset)).or_default();
        if !values.contains(&&ack.value) {
            values.push(&ack.value);
        }
    }
    for ((p, o), values) in &by_offset {
        if values.len() > 1 {
            a.offsets_reused += 1;
            a.note(|| {
                let names: Vec<String> = values.iter().map(|v| show(v)).collect();
                format!(
                    "offset reused: {topic}-{p}@{o} acknowledged for {}",
                    names.join(" and ")
                )
            });
        }
    }

    let mut copies: HashMap<&Value, Vec<(u32, Offset)>> = HashMap::new();
    for (p, end) in ends {
        // gaps: offsets 0, 1, ... up to the high watermark, each read once, in order.
        let mut missing = 0u64;
        for (i, (o, _)) in end.consumed.iter().enumerate() {
            if *o != i as Offset {
                missing += 1;
            }
        }
        missing += end.high_watermark.abs_diff(end.consumed.len() as Offset);
        if missing > 0 {
            a.gaps += missing;
            a.note(|| {
                format!(
                    "gaps: {topic}-{p} read {} records for high watermark {}, {missing} out of place or missing",
                    end.consumed.len(),
                    end.high_watermark
                )
            });
        }
        for (o, v) in &end.consumed {
            copies.entry(v).or_default().push((*p, *o));
        }
        // divergent_replicas: against what the consumer read, then against each other.
        let values: Vec<&Value> = end.consumed.iter().map(|(_, v)| v).collect();
        let matches = |log: &[LogEntry]| {
            log.iter()
                .map(|e| &e.record.value)
                .eq(values.iter().copied())
        };
        let reference = end.replicas.values().find(|log| matches(log));
        for (b, log) in &end.replicas {
            let same_values = matches(log);
            if !same_values || reference.is_some_and(|r| r != log) {
                a.divergent_replicas += 1;
                a.note(|| {
                    let first = (0..log.len().max(values.len()))
                        .find(|i| log.get(*i).map(|e| &e.record.value) != values.get(*i).copied())
                        .map_or("entries differ in epochs or producer sequences".to_string(), |i| {
                            format!("first differs at offset {i}")
                        });
                    format!(
                        "divergent replica: broker {b} holds {} records of {topic}-{p}, the consumer read {}; {first}",
                        log.len(),
                        values.len()
                    )
                });
            }
        }
    }

    // duplicates and unexpected values, over everything the consumer read.
    let mut duplicated: Vec<(&Value, &Vec<(u32, Offset)>)> = copies
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(v, at)| (*v, at))
        .collect();
    duplicated.sort();
    for (v, at) in duplicated {
        a.duplicates += at.len() as u64 - 1;
        if idempotent {
            a.note(|| {
                let places: Vec<String> =
                    at.iter().map(|(p, o)| format!("{topic}-{p}@{o}")).collect();
                format!("duplicate: {} at {}", show(v), places.join(", "))
            });
        }
    }
    let mut unexpected: Vec<(&Value, &Vec<(u32, Offset)>)> = copies
        .iter()
        .filter(|(v, _)| !history.attempted.contains(**v))
        .map(|(v, at)| (*v, at))
        .collect();
    unexpected.sort();
    for (v, at) in unexpected {
        a.unexpected_values += at.len() as u64;
        a.note(|| {
            format!(
                "unexpected value: {} at {topic}-{}@{}, never given to a producer",
                show(v),
                at[0].0,
                at[0].1
            )
        });
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use watermark_model::Record;

    fn v(s: &str) -> Value {
        Value::from(s)
    }

    fn entry(value: &str, leader_epoch: LeaderEpoch) -> LogEntry {
        LogEntry {
            leader_epoch,
            record: Record {
                value: v(value),
                producer: None,
            },
        }
    }

    fn acked(offset: Offset, value: &str) -> Acked {
        Acked {
            partition: 0,
            offset,
            value: v(value),
            leader_epoch: 0,
            at_s: 1.0,
        }
    }

    /// Partition 0 holding `values` at offsets 0.., read by the consumer and on all three
    /// replicas, with every value attempted and acknowledged where it is.
    fn clean(values: &[&str]) -> (History, BTreeMap<u32, PartitionEnd>) {
        let history = History {
            attempted: values.iter().map(|s| v(s)).collect(),
            acked: values
                .iter()
                .enumerate()
                .map(|(o, s)| acked(o as Offset, s))
                .collect(),
        };
        let log: Vec<LogEntry> = values.iter().map(|s| entry(s, 0)).collect();
        let end = PartitionEnd {
            high_watermark: values.len() as Offset,
            consumed: values
                .iter()
                .enumerate()
                .map(|(o, s)| (o as Offset, v(s)))
                .collect(),
            replicas: (1..=3).map(|b| (b, log.clone())).collect(),
        };
        (history, [(0, end)].into_iter().collect())
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let (h, ends) = clean(&["a", "b", "c"]);
        let a = check("t", &h, &ends, true);
        assert_eq!(a.acked, 3);
        assert!(a.safe(true), "{a:?}");
        assert!(a.examples.is_empty(), "{a:?}");
    }

    #[test]
    fn an_acknowledged_record_replaced_at_its_offset_is_lost_and_its_offset_reused() {
        let (mut h, ends) = clean(&["a", "b", "c"]);
        h.attempted.insert(v("x"));
        h.acked.push(acked(1, "x"));
        let a = check("t", &h, &ends, false);
        assert_eq!((a.lost, a.offsets_reused), (1, 1), "{a:?}");
        assert!(!a.safe(false));
        assert!(a.examples.iter().any(|e| e.contains("t-0@1")), "{a:?}");
    }

    #[test]
    fn an_acknowledged_record_past_the_high_watermark_is_lost() {
        let (mut h, ends) = clean(&["a", "b"]);
        h.attempted.insert(v("c"));
        h.acked.push(acked(2, "c"));
        let a = check("t", &h, &ends, false);
        assert_eq!(a.lost, 1, "{a:?}");
    }

    #[test]
    fn a_value_read_twice_is_a_duplicate_and_unsafe_only_when_idempotent() {
        let (h, mut ends) = clean(&["a", "b"]);
        let end = ends.get_mut(&0).unwrap();
        end.consumed.push((2, v("a")));
        end.high_watermark = 3;
        for log in end.replicas.values_mut() {
            log.push(entry("a", 0));
        }
        let a = check("t", &h, &ends, false);
        assert_eq!(a.duplicates, 1, "{a:?}");
        assert!(a.safe(false), "{a:?}");
        assert!(!check("t", &h, &ends, true).safe(true));
    }

    #[test]
    fn an_offset_missing_below_the_high_watermark_is_a_gap() {
        let (h, mut ends) = clean(&["a", "b", "c"]);
        let end = ends.get_mut(&0).unwrap();
        end.consumed.remove(1);
        let a = check("t", &h, &ends, false);
        // Offset 1 missing, offset 2 out of place, and one record short of the watermark.
        assert!(a.gaps >= 1, "{a:?}");
        assert!(!a.safe(false));
    }

    #[test]
    fn a_replica_with_another_value_or_another_epoch_diverges() {
        let (h, mut ends) = clean(&["a", "b"]);
        let end = ends.get_mut(&0).unwrap();
        end.replicas.insert(2, vec![entry("a", 0), entry("z", 0)]);
        end.replicas.insert(3, vec![entry("a", 0), entry("b", 1)]);
        let a = check("t", &h, &ends, false);
        assert_eq!(a.divergent_replicas, 2, "{a:?}");
        assert_eq!(a.lost, 0, "{a:?}");
    }

    #[test]
    fn a_value_no_producer_was_given_is_unexpected() {
        let (mut h, ends) = clean(&["a", "b"]);
        h.attempted.remove(&v("b"));
        let a = check("t", &h, &ends, false);
        assert_eq!(a.unexpected_values, 1, "{a:?}");
        assert!(!a.safe(false));
    }
}
