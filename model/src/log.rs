//! A replica's log and the leader-epoch lookup that truncation relies on. Spec: "Logs and the
//! leader epoch cache".
//!
//! Every entry carries the leader epoch in which it was appended, so the epoch cache (Kafka's
//! `leader-epoch-checkpoint`: each epoch and its start offset) is derived from the entries. The
//! one thing the entries cannot show is a leader's current epoch while it has appended nothing
//! in it; a leader passes that in as `current` to [`Log::end_offset_for_epoch`].

use crate::msg::EpochEndOffset;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// The log of one replica of one partition. Offsets start at 0; the log end offset (LEO) is the
/// number of entries.
///
/// The entries are a persistent vector: a clone shares them, and an append or truncation of a
/// clone costs O(log n), not a copy of the log. The model's logs hold a few entries; the real
/// cluster's hold millions, and every handler step clones the replica it changes.
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(from = "im::Vector<LogEntry>", into = "im::Vector<LogEntry>")]
pub struct Log {
    entries: im::Vector<LogEntry>,
    /// A digest of every entry, kept as entries come and go: sum of `entry_hash(e_i) * P^i`
    /// (wrapping), so that an append costs O(1) and a truncation O(entries removed). `Hash`
    /// uses it, so that hashing a replica (the checker's fingerprints, the runtime's traced
    /// state hashes) does not walk a log of millions of entries.
    digest: u64,
    /// `P^len`.
    power: u64,
}

/// The digest's base: odd, so that its powers never vanish modulo 2^64.
const DIGEST_BASE: u64 = 0x9E37_79B9_7F4A_7C15;

/// One entry's hash, the same in every process of one build (SipHash with fixed keys).
fn entry_hash(entry: &LogEntry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    entry.hash(&mut h);
    h.finish()
}

fn digest_power(exponent: usize) -> u64 {
    let (mut base, mut e, mut acc) = (DIGEST_BASE, exponent, 1u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    acc
}

impl Default for Log {
    fn default() -> Self {
        Log {
            entries: im::Vector::new(),
            digest: 0,
            power: 1,
        }
    }
}

impl From<im::Vector<LogEntry>> for Log {
    fn from(entries: im::Vector<LogEntry>) -> Self {
        let mut log = Log::default();
        for e in entries {
            log.append_unchecked(e);
        }
        log
    }
}

impl From<Log> for im::Vector<LogEntry> {
    fn from(log: Log) -> Self {
        log.entries
    }
}

impl PartialEq for Log {
    /// Shared entries are equal without a walk: handlers compare a replica with its clone to
    /// learn whether anything changed. Different digests are different logs.
    fn eq(&self, other: &Self) -> bool {
        self.entries.ptr_eq(&other.entries)
            || (self.digest == other.digest && self.entries == other.entries)
    }
}

impl std::hash::Hash for Log {
    /// The length and the digest of every entry: O(1).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.entries.len());
        state.write_u64(self.digest);
    }
}

impl Log {
    pub fn new() -> Self {
        Log::default()
    }

    pub fn from_entries(entries: impl IntoIterator<Item = LogEntry>) -> Self {
        let mut log = Log::default();
        for e in entries {
            log.append_unchecked(e);
        }
        log
    }

    /// The digest of every entry (see the field): equal logs have equal digests.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn append_unchecked(&mut self, entry: LogEntry) {
        self.digest = self
            .digest
            .wrapping_add(entry_hash(&entry).wrapping_mul(self.power));
        self.power = self.power.wrapping_mul(DIGEST_BASE);
        self.entries.push_back(entry);
    }

    /// The log end offset: the offset the next record gets.
    pub fn log_end_offset(&self) -> Offset {
        self.entries.len() as Offset
    }

    pub fn get(&self, offset: Offset) -> Option<&LogEntry> {
        self.entries.get(usize::try_from(offset).ok()?)
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &LogEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The epoch of the last entry, which a follower sends as its last fetched epoch.
    pub fn last_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.back().map(|e| e.leader_epoch)
    }

    pub fn append(&mut self, entry: LogEntry) {
        debug_assert!(
            self.last_epoch()
                .is_none_or(|last| last <= entry.leader_epoch),
            "epochs never decrease along a log"
        );
        self.append_unchecked(entry);
    }

    /// Removes every entry at or after `offset`. Returns whether anything was removed.
    pub fn truncate(&mut self, offset: Offset) -> bool {
        if offset >= self.log_end_offset() {
            return false;
        }
        let mut power = digest_power(offset as usize);
        for e in self.entries.iter().skip(offset as usize) {
            self.digest = self.digest.wrapping_sub(entry_hash(e).wrapping_mul(power));
            power = power.wrapping_mul(DIGEST_BASE);
        }
        self.power = digest_power(offset as usize);
        self.entries.truncate(offset as usize);
        true
    }

    /// Entries from `offset` on, at least one and at most `bytes_max` bytes' worth after that:
    /// Kafka returns the first batch even when it alone exceeds the limit, so that a fetch always
    /// makes progress.
    pub fn read(&self, offset: Offset, end: Offset, bytes_max: u32) -> Vec<LogEntry> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let end = end.min(self.log_end_offset());
        let mut at = offset;
        while at < end {
            let entry = &self.entries[at as usize];
            bytes += entry.record.size_bytes();
            if !out.is_empty() && bytes > bytes_max as usize {
                break;
            }
            out.push(entry.clone());
            at += 1;
        }
        out
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest known epoch not after
    /// `requested`, and the offset where the next known epoch starts (the log end offset when
    /// `requested` is the latest epoch). `None` (Kafka's `UNDEFINED_EPOCH_OFFSET`) when
    /// `requested` is newer than every known epoch.
    ///
    /// The known epochs are those of the entries, plus `current`: a leader's own epoch and its
    /// start offset, which a leader's cache holds even before it appends in that epoch
    /// (KAFKA-7415, shipped with KIP-320).
    pub fn end_offset_for_epoch(
        &self,
        requested: LeaderEpoch,
        current: Option<(LeaderEpoch, Offset)>,
    ) -> EpochEndOffset {
        let latest = match (self.last_epoch(), current) {
            (Some(l), Some((c, _))) => l.max(c),
            (Some(l), None) => l,
            (None, Some((c, _))) => c,
            (None, None) => return None,
        };
        match requested.cmp(&latest) {
            Ordering::Equal => return Some((latest, self.log_end_offset())),
            Ordering::Greater => return None,
            Ordering::Less => {}
        }
        // The first epoch after `requested` starts where `requested` (or the largest epoch
        // before it) ends.
        let next_start = self
            .entries
            .iter()
            .position(|e| e.leader_epoch > requested)
            .map(|p| p as Offset)
            .or(current.filter(|(c, _)| *c > requested).map(|(_, s)| s))
            .unwrap_or(self.log_end_offset());
        let floor = self
            .entries
            .iter()
            .rev()
            .map(|e| e.leader_epoch)
            .find(|e| *e <= requested);
        // Older than anything known: Kafka answers the requested epoch itself, ending where the
        // first known epoch starts.
        Some((floor.unwrap_or(requested), next_start))
    }

    /// The follower's own end offset for `epoch` (see [`Log::end_offset_for_epoch`]).
    pub fn own_end_offset_for_epoch(&self, epoch: LeaderEpoch) -> EpochEndOffset {
        self.end_offset_for_epoch(epoch, None)
    }
}

impl fmt::Debug for Log {
    /// `[0@1:a 1@1:b 2@2:c]`: offset@epoch:value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (offset, entry) in self.entries.iter().enumerate() {
            if offset > 0 {
                f.write_str(" ")?;
            }
            write!(
                f,
                "{offset}@{}:{:?}",
                entry.leader_epoch, entry.record.value
            )?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: LeaderEpoch, value: &str) -> LogEntry {
        LogEntry {
            leader_epoch: epoch,
            record: Record {
                value: Value::from(value),
                producer: None,
            },
        }
    }

    #[test]
    fn digest_follows_appends_and_truncations() {
        let mut a = Log::new();
        for (i, v) in ["a", "b", "c", "d"].iter().enumerate() {
            a.append(entry(i as LeaderEpoch / 2, v));
        }
        let b = Log::from_entries(a.entries().cloned());
        assert_eq!(a.digest(), b.digest());
        let mut c = a.clone();
        c.truncate(2);
        let d = Log::from_entries(a.entries().take(2).cloned());
        assert_eq!(c.digest(), d.digest());
        assert_ne!(c.digest(), a.digest());
        c.append(entry(1, "c"));
        c.append(entry(1, "d"));
        assert_eq!(c.digest(), a.digest());
        assert_eq!(c, a);
        // A different entry at the same offset, or the same entries in another order, differ.
        let e = Log::from_entries([entry(0, "a"), entry(0, "x")]);
        let f = Log::from_entries([entry(0, "x"), entry(0, "a")]);
        assert_ne!(e.digest(), f.digest());
        assert_ne!(e, f);
        // The digest survives serialization (it is recomputed).
        let bytes = postcard::to_allocvec(&a).unwrap();
        let back: Log = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.digest(), a.digest());
        assert_eq!(Log::new().digest(), Log::from_entries([]).digest());
        let mut g = Log::new();
        g.append(entry(0, "a"));
        g.truncate(0);
        assert_eq!(g, Log::new());
        assert_eq!(g.digest(), 0);
    }

    fn hash_of(log: &Log) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        log.hash(&mut h);
        h.finish()
    }

    /// A truncation at any offset leaves the digest and hash of the log built from the entries
    /// kept (the checker's fingerprints depend on it: equal logs must hash equal), and every
    /// distinct log of up to 6 entries over two values has its own digest and hash (states that
    /// differ only in a log must not be merged).
    #[test]
    fn truncation_at_any_offset_keeps_digest_and_hash_and_distinct_logs_differ() {
        let full: Vec<LogEntry> = (0..9)
            .map(|i| entry(i / 3, ["a", "b", "c"][i as usize % 3]))
            .collect();
        for offset in 0..=full.len() {
            let mut cut = Log::from_entries(full.iter().cloned());
            cut.truncate(offset as Offset);
            let built = Log::from_entries(full[..offset].iter().cloned());
            assert_eq!(cut.digest(), built.digest(), "truncated at {offset}");
            assert_eq!(hash_of(&cut), hash_of(&built), "truncated at {offset}");
            assert_eq!(cut, built);
        }
        let mut digests = std::collections::HashMap::new();
        let mut hashes = std::collections::HashMap::new();
        for len in 0..=6u32 {
            for bits in 0..(1u32 << len) {
                let log = Log::from_entries(
                    (0..len).map(|i| entry(0, if bits >> i & 1 == 1 { "x" } else { "y" })),
                );
                let name = format!("{len}:{bits}");
                assert_eq!(digests.insert(log.digest(), name.clone()), None, "{name}");
                assert_eq!(hashes.insert(hash_of(&log), name.clone()), None, "{name}");
            }
        }
    }
}
