use crate::{util::HashableHashSet, Rewrite, RewritePlan};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Id;

/// A collection of timers that have been set for a given actor.
///
/// (watermark's fork: the set is shared, copy on write, by the states that hold it, and keeps
/// its hash, so that cloning and fingerprinting a state whose step left an actor's timers as
/// they were costs one reference count and one word. Setting a timer that is set, or cancelling
/// one that is not, copies nothing.)
pub struct Timers<T: Hash + Eq>(Arc<TimerSet<T>>);

struct TimerSet<T: Hash + Eq> {
    set: HashableHashSet<T>,
    /// The set's stable hash, or 0 until the first fingerprint asks for it.
    hash: AtomicU64,
}

impl<T: Hash + Eq + Clone> Clone for TimerSet<T> {
    fn clone(&self) -> Self {
        TimerSet {
            set: self.set.clone(),
            hash: AtomicU64::new(self.hash.load(Ordering::Relaxed)),
        }
    }
}

impl<T: Hash + Eq> Clone for Timers<T> {
    fn clone(&self) -> Self {
        Timers(Arc::clone(&self.0))
    }
}

impl<T: Hash + Eq> Default for Timers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Timers<T>
where
    T: Hash + Eq,
{
    /// Create a new timer set.
    pub fn new() -> Self {
        Self(Arc::new(TimerSet {
            set: HashableHashSet::new(),
            hash: AtomicU64::new(0),
        }))
    }

    /// Iterate through the currently set timers.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.set.iter()
    }
}

impl<T> Timers<T>
where
    T: Hash + Eq + Clone,
{
    /// The set, to change: copied first if another state shares it, its hash forgotten.
    fn set_mut(&mut self) -> &mut HashableHashSet<T> {
        let inner = Arc::make_mut(&mut self.0);
        *inner.hash.get_mut() = 0;
        &mut inner.set
    }

    /// Set a timer.
    pub fn set(&mut self, timer: T) -> bool {
        if self.0.set.contains(&timer) {
            return false;
        }
        self.set_mut().insert(timer)
    }

    /// Cancel a timer.
    pub fn cancel(&mut self, timer: &T) -> bool {
        if !self.0.set.contains(timer) {
            return false;
        }
        self.set_mut().remove(timer)
    }

    /// Cancels all timers.
    pub fn cancel_all(&mut self) {
        if !self.0.set.is_empty() {
            self.set_mut().clear();
        }
    }
}

impl<T: Hash + Eq> Hash for Timers<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut hash = self.0.hash.load(Ordering::Relaxed);
        if hash == 0 {
            let mut hasher = crate::stable::hasher();
            self.0.set.hash(&mut hasher);
            hash = hasher.finish().max(1);
            self.0.hash.store(hash, Ordering::Relaxed);
        }
        state.write_u64(hash);
    }
}

impl<T: Hash + Eq> PartialEq for Timers<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.set == other.0.set
    }
}

impl<T: Hash + Eq> Eq for Timers<T> {}

impl<T: Hash + Eq + fmt::Debug> fmt::Debug for Timers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timers").field(&self.0.set).finish()
    }
}

impl<T: Hash + Eq + serde::Serialize> serde::Serialize for Timers<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct("Timers", &self.0.set)
    }
}

impl<T> Rewrite<Id> for Timers<T>
where
    T: Eq + Hash + Clone,
{
    fn rewrite<S>(&self, _plan: &RewritePlan<Id, S>) -> Self {
        self.clone()
    }
}
