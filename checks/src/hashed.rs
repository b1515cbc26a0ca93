//! A value that keeps its own hash, so that a state's fingerprint does not hash again what did
//! not change since its parent state (BENCHMARKS.md, "Checker throughput").
//!
//! The checker fingerprints every state it reaches, and most of a state is shared with its
//! parent: one actor's state changes in a step, the others are the parent's `Arc`s. A `Hashed`
//! value hashes its content once, on the first fingerprint that asks, and then writes that one
//! word. Its content is reachable only through `Deref` (shared) and `get_mut` (which forgets the
//! hash), so the cached hash cannot outlive a change.

use serde::{Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

/// stateright's fingerprint (its `stable` hasher: ahash under fixed seeds), so that a state has
/// the same fingerprint in our breadth-first search as in stateright's checkers and Explorer.
pub fn fingerprint<T: Hash + ?Sized>(value: &T) -> u64 {
    const KEY1: u64 = 123_456_789_987_654_321;
    const KEY2: u64 = 98_765_432_123_456_789;
    ahash::RandomState::with_seeds(KEY1, KEY2, 0, 0).hash_one(value)
}

/// `T` with its hash cached. Equal values hash the same, as the content's own `Hash` does: the
/// cache holds the content's fingerprint, which is a function of the content alone.
#[derive(Default)]
pub struct Hashed<T> {
    value: T,
    /// The content's fingerprint, or 0 until the first fingerprint asks for it (a fingerprint
    /// of 0 is kept as 1). Written at most once per content, with the same value by any thread.
    hash: AtomicU64,
}

impl<T: Clone> Clone for Hashed<T> {
    fn clone(&self) -> Self {
        Hashed {
            value: self.value.clone(),
            hash: AtomicU64::new(self.hash.load(Ordering::Relaxed)),
        }
    }
}

impl<T> Hashed<T> {
    pub fn new(value: T) -> Self {
        Hashed {
            value,
            hash: AtomicU64::new(0),
        }
    }

    /// The content, to change: the cached hash is forgotten.
    pub fn get_mut(&mut self) -> &mut T {
        *self.hash.get_mut() = 0;
        &mut self.value
    }
}

impl<T> Deref for Hashed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Hash> Hash for Hashed<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut hash = self.hash.load(Ordering::Relaxed);
        if hash == 0 {
            hash = fingerprint(&self.value).max(1);
            self.hash.store(hash, Ordering::Relaxed);
        }
        state.write_u64(hash);
    }
}

impl<T: PartialEq> PartialEq for Hashed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Hashed<T> {}

impl<T: fmt::Debug> fmt::Debug for Hashed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: Serialize> Serialize for Hashed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached hash follows the content: a change through `get_mut` is seen, equal contents
    /// hash alike however they were reached, and a clone keeps a correct hash.
    #[test]
    fn the_cached_hash_follows_the_content() {
        let mut a = Hashed::new(vec![1, 2]);
        let before = fingerprint(&a);
        assert_eq!(fingerprint(&a), before, "cached");
        a.get_mut().push(3);
        assert_ne!(fingerprint(&a), before, "a change is hashed again");
        let b = Hashed::new(vec![1, 2, 3]);
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        assert_eq!(fingerprint(&c), fingerprint(&a));
        c.get_mut().pop();
        assert_eq!(fingerprint(&c), before);
        assert_eq!(
            fingerprint(&a),
            fingerprint(&b),
            "the original keeps its hash"
        );
    }
}
