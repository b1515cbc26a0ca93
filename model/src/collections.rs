//! Small collections for protocol state: cheap to clone and hash at the model's sizes, and
//! mutated in place by the real runtime, which owns its state.

use crate::types::TopicPartition;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A list of broker ids: an assignment (in preference order) or an ISR. Shared, since messages
/// and states copy it often and change it rarely.
pub type BrokerIds = Arc<[BrokerId]>;
use crate::types::BrokerId;

/// A map keyed by topic-partition, kept sorted. A broker holds a handful of partitions in the
/// model; a sorted `Vec` clones and hashes faster there than a tree, and the runtime mutates it
/// in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionMap<V>(Vec<(TopicPartition, V)>);

impl<V> Default for PartitionMap<V> {
    fn default() -> Self {
        PartitionMap(Vec::new())
    }
}

impl<V> PartitionMap<V> {
    pub fn new() -> Self {
        PartitionMap(Vec::new())
    }

    fn position(&self, tp: &TopicPartition) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(tp))
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&V> {
        self.position(tp).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut V> {
        match self.position(tp) {
            Ok(i) => Some(&mut self.0[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, tp: &TopicPartition) -> bool {
        self.position(tp).is_ok()
    }

    /// Inserts or replaces.
    pub fn insert(&mut self, tp: TopicPartition, value: V) {
        match self.position(&tp) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (tp, value)),
        }
    }

    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&TopicPartition, &V)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &TopicPartition> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> FromIterator<(TopicPartition, V)> for PartitionMap<V> {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, V)>>(iter: I) -> Self {
        let mut entries: Vec<(TopicPartition, V)> = iter.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        PartitionMap(entries)
    }
}

impl<V> std::ops::Index<&TopicPartition> for PartitionMap<V> {
    type Output = V;
    fn index(&self, tp: &TopicPartition) -> &V {
        self.get(tp).expect("no such topic-partition")
    }
}

impl<'a, V> IntoIterator for &'a PartitionMap<V> {
    type Item = (&'a TopicPartition, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (TopicPartition, V)>,
        fn(&'a (TopicPartition, V)) -> (&'a TopicPartition, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}
