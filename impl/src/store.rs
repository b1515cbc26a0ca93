//! What a node keeps on disk, and how a step's `Save` reaches it. Spec: rule R0.
//!
//! The model's `Save` carries a node's whole durable state. The runtime writes only what changed:
//!
//! - **Broker.** Each replica's log is a [`SegmentLog`] in `<dir>/<topic>-<partition>/`; a save
//!   appends the entries past what was written (O(appended bytes)), or truncates the file first
//!   where the log diverged. The rest (broker and controller epochs, partition states, high
//!   watermark checkpoints) is a [`RecordLog`], `meta.log`, to which a save appends the replicas
//!   whose state changed; a change of high watermarks alone is checkpointed at most every
//!   [`HWM_CHECKPOINT_INTERVAL`], as Kafka's `replica.high.watermark.checkpoint.interval.ms`
//!   does. A save walks the storage saved before and the new one side by side and touches only
//!   what differs, so its cost is what the step changed, not the number of partitions.
//! - **Controller.** A [`RecordLog`] too, `metadata.log`: each save appends the partitions
//!   changed since the last (those with a newer metadata offset, R50), and the broker
//!   registrations and epochs.
//!
//! Directories written before the record logs (`meta`, `controller.state`) are migrated on load.
//!
//! [`FsyncPolicy`] says when the data reaches the device.

use crate::records::RecordLog;
use crate::segment::{unframe, SegmentLog};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watermark_model::broker::{BrokerStorage, ReplicaStorage};
use watermark_model::quorum::{MetadataEntry, NodeId, QuorumEpoch, QuorumStorage};
use watermark_model::*;

/// How often a change of high watermarks alone is written.
pub const HWM_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// When written data is forced to the device.
///
/// - `Never` (the default, like Kafka's default `log.flush.interval.messages`): every save is
///   written to the OS before any message of its step is sent, so a process crash (kill -9) loses
///   nothing, which is what the model's crash keeps. A machine crash may lose the unflushed tail:
///   the model's unclean shutdown.
/// - `Always`: every save is also fsynced before any message of its step is sent, so even a
///   machine crash loses nothing that was acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    #[default]
    Never,
    Always,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(FsyncPolicy::Never),
            "always" => Ok(FsyncPolicy::Always),
            _ => Err(format!("fsync policy must be never or always, not '{s}'")),
        }
    }
}

/// A node's durable state on disk.
pub trait Durable<S> {
    /// What was saved last, if anything.
    fn load(&mut self) -> io::Result<Option<S>>;
    /// Makes `storage` durable (per the fsync policy) before returning.
    fn save(&mut self, storage: &S) -> io::Result<()>;
    /// Writes anything deferred (a high watermark checkpoint); called on a clean shutdown.
    fn checkpoint(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// For clients, which keep nothing.
pub struct NoStore;

impl<S> Durable<S> for NoStore {
    fn load(&mut self) -> io::Result<Option<S>> {
        Ok(None)
    }
    fn save(&mut self, _: &S) -> io::Result<()> {
        Ok(())
    }
}

/// The directory name of a partition's log: `topic-partition`, with any byte outside
/// `[A-Za-z0-9._-]` written as `%XX`.
pub fn partition_dir_name(tp: &TopicPartition) -> String {
    let mut name = String::new();
    for b in tp.topic.as_str().bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{name}-{}", tp.partition)
}

/// The format of `meta` before the record log: one frame holding everything. Read once, to
/// migrate a directory written by an earlier version.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyBrokerMeta {
    broker_epoch: BrokerEpoch,
    controller_epoch: ControllerEpoch,
    replicas: Vec<PartitionState>,
    high_watermarks: Vec<Offset>,
}

/// What every frame of a broker's metadata log carries whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BrokerHeader {
    broker_epoch: BrokerEpoch,
    controller_epoch: ControllerEpoch,
}

/// A replica's metadata record: its partition state and high watermark checkpoint.
type ReplicaRecord = (PartitionState, Offset);

struct PersistedReplica {
    file: SegmentLog,
    /// The log as last written.
    log: Log,
}

/// A broker's logs and metadata.
pub struct BrokerStore {
    dir: PathBuf,
    fsync: FsyncPolicy,
    replicas: BTreeMap<TopicPartition, PersistedReplica>,
    /// Epochs, partition states and high watermark checkpoints (`meta.log`).
    meta: RecordLog,
    /// What was saved last (or loaded). A save walks it and the new storage side by side, in
    /// partition order, and touches only the replicas whose log or state changed: a broker with
    /// thousands of partitions pays for what a step changed, not for every partition.
    last: Option<Arc<BrokerStorage>>,
    /// Replicas whose high watermark changed and is not written yet: a change of high
    /// watermarks alone is checkpointed at most every `HWM_CHECKPOINT_INTERVAL`.
    hwm_pending: BTreeSet<TopicPartition>,
    meta_written_at: Option<Instant>,
    /// Bytes cut from torn tails on recovery.
    pub recovered_bytes_cut: u64,
}

impl BrokerStore {
    pub fn new(dir: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(BrokerStore {
            dir: dir.to_path_buf(),
            fsync,
            replicas: BTreeMap::new(),
            meta: RecordLog::new(&dir.join("meta.log"), fsync == FsyncPolicy::Always),
            last: None,
            hwm_pending: BTreeSet::new(),
            meta_written_at: None,
            recovered_bytes_cut: 0,
        })
    }

    fn replica_file(&mut self, tp: &TopicPartition) -> io::Result<&mut PersistedReplica> {
        if !self.replicas.contains_key(tp) {
            let (file, entries, recovery) =
                SegmentLog::open(&self.dir.join(partition_dir_name(tp)))?;
            self.recovered_bytes_cut += recovery.bytes_cut;
            self.replicas.insert(
                tp.clone(),
                PersistedReplica {
                    file,
                    log: Log::from_entries(entries),
                },
            );
        }
        Ok(self.replicas.get_mut(tp).expect("inserted above"))
    }

    fn save_broker(&mut self, storage: &Arc<BrokerStorage>) -> io::Result<()> {
        let sync = self.fsync == FsyncPolicy::Always;
        let last = self.last.take();
        let header = BrokerHeader {
            broker_epoch: storage.broker_epoch,
            controller_epoch: storage.controller_epoch,
        };
        let last_replicas = last.as_ref().map(|l| &l.replicas);
        let same_shape = last_replicas.is_some_and(|l| l.len() == storage.replicas.len());
        let mut rewrite_all = !same_shape;
        let header_changed = last.as_ref().is_none_or(|l| {
            l.broker_epoch != header.broker_epoch || l.controller_epoch != header.controller_epoch
        });
        let mut changed: Vec<TopicPartition> = Vec::new();
        let mut before_iter = last_replicas.filter(|_| same_shape).map(|l| l.iter());
        // Logs first: the metadata never names more than the logs hold.
        for (tp, replica) in storage.replicas.iter() {
            let before = before_iter.as_mut().and_then(|it| it.next());
            match before {
                Some((t, b)) if t == tp => {
                    if b.partition != replica.partition {
                        changed.push(tp.clone());
                    } else if b.high_watermark != replica.high_watermark {
                        self.hwm_pending.insert(tp.clone());
                    }
                    if b.log == replica.log {
                        continue; // Shared, or equal: nothing to write.
                    }
                }
                _ => rewrite_all = true,
            }
            let persisted = self.replica_file(tp)?;
            write_log_diff(persisted, &replica.log)?;
            if sync {
                persisted.file.sync()?;
            }
        }
        self.last = Some(storage.clone());
        let checkpoint_due = self
            .meta_written_at
            .is_none_or(|at| at.elapsed() >= HWM_CHECKPOINT_INTERVAL);
        if rewrite_all {
            self.write_meta_snapshot()?;
        } else if header_changed
            || !changed.is_empty()
            || (!self.hwm_pending.is_empty() && checkpoint_due)
        {
            changed.extend(std::mem::take(&mut self.hwm_pending));
            self.append_meta(&changed)?;
        }
        Ok(())
    }

    fn record(
        storage: &BrokerStorage,
        tp: &TopicPartition,
    ) -> Option<(TopicPartition, ReplicaRecord)> {
        let r = storage.replicas.get(tp)?;
        Some((tp.clone(), (r.partition.clone(), r.high_watermark)))
    }

    fn all_records(storage: &BrokerStorage) -> Vec<(TopicPartition, ReplicaRecord)> {
        storage
            .replicas
            .iter()
            .map(|(tp, r)| (tp.clone(), (r.partition.clone(), r.high_watermark)))
            .collect()
    }

    /// Appends the metadata of `changed` replicas of the storage saved last.
    fn append_meta(&mut self, changed: &[TopicPartition]) -> io::Result<()> {
        let Some(storage) = self.last.clone() else {
            return Ok(());
        };
        let header = BrokerHeader {
            broker_epoch: storage.broker_epoch,
            controller_epoch: storage.controller_epoch,
        };
        let records = changed
            .iter()
            .filter_map(|tp| Self::record(&storage, tp))
            .collect();
        self.meta
            .append(&header, records, || Self::all_records(&storage))?;
        self.hwm_pending.clear();
        self.meta_written_at = Some(Instant::now());
        Ok(())
    }

    /// Rewrites the metadata of the storage saved last as a snapshot.
    fn write_meta_snapshot(&mut self) -> io::Result<()> {
        let Some(storage) = self.last.clone() else {
            return Ok(());
        };
        let header = BrokerHeader {
            broker_epoch: storage.broker_epoch,
            controller_epoch: storage.controller_epoch,
        };
        self.meta
            .write_snapshot(&header, Self::all_records(&storage))?;
        self.hwm_pending.clear();
        self.meta_written_at = Some(Instant::now());
        Ok(())
    }

    /// A directory written before the record log keeps its metadata in `meta`, one frame: read
    /// it, write it as the log's snapshot, then remove it.
    fn migrate_legacy_meta(&mut self) -> io::Result<()> {
        let legacy = self.dir.join("meta");
        let data = match fs::read(&legacy) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta: LegacyBrokerMeta = unframe(&data)
            .and_then(|p| postcard::from_bytes(p).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt", legacy.display()),
                )
            })?;
        let header = BrokerHeader {
            broker_epoch: meta.broker_epoch,
            controller_epoch: meta.controller_epoch,
        };
        let records = meta
            .replicas
            .into_iter()
            .zip(meta.high_watermarks)
            .map(|(p, hwm)| (p.topic_partition.clone(), (p, hwm)))
            .collect();
        self.meta.write_snapshot(&header, records)?;
        fs::remove_file(&legacy)
    }
}

/// Writes the difference between what `persisted` holds and `log`: truncate where they diverge,
/// then append the rest. Entries at the same offset with the same epoch and record are taken to
/// agree on everything before them (the Log Matching property, I9), so the walk back is as long
/// as the divergent suffix, not the log.
fn write_log_diff(persisted: &mut PersistedReplica, log: &Log) -> io::Result<()> {
    let old = &persisted.log;
    let mut common = old.log_end_offset().min(log.log_end_offset());
    while common > 0 && old.get(common - 1) != log.get(common - 1) {
        common -= 1;
    }
    if common < persisted.file.log_end_offset() {
        persisted.file.truncate(common, log)?;
    }
    if common < log.log_end_offset() {
        let appended: Vec<LogEntry> = (common..log.log_end_offset())
            .map(|o| log.get(o).expect("below the log end offset").clone())
            .collect();
        persisted.file.append(&appended)?;
    }
    persisted.log = log.clone();
    Ok(())
}

impl Durable<Storage> for BrokerStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        self.migrate_legacy_meta()?;
        let Some(loaded) = self
            .meta
            .load::<BrokerHeader, TopicPartition, ReplicaRecord>()?
        else {
            return Ok(None);
        };
        let mut replicas = Vec::new();
        for (tp, (partition, high_watermark)) in loaded.records {
            let log = self.replica_file(&tp)?.log.clone();
            replicas.push((
                tp,
                ReplicaStorage {
                    partition,
                    log,
                    high_watermark,
                },
            ));
        }
        let storage = Arc::new(BrokerStorage {
            broker_epoch: loaded.header.broker_epoch,
            controller_epoch: loaded.header.controller_epoch,
            replicas: replicas.into_iter().collect(),
        });
        self.last = Some(storage.clone());
        Ok(Some(Storage::Broker(storage)))
    }

    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        match storage {
            Storage::Broker(s) => self.save_broker(s),
            _ => Err(io::Error::other("a broker saves broker storage")),
        }
    }

    fn checkpoint(&mut self) -> io::Result<()> {
        if !self.hwm_pending.is_empty() {
            let pending: Vec<TopicPartition> =
                std::mem::take(&mut self.hwm_pending).into_iter().collect();
            self.append_meta(&pending)?;
        }
        Ok(())
    }
}

/// What every frame of the controller's metadata log carries whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ControllerHeader {
    controller_epoch: ControllerEpoch,
    brokers: Vec<(BrokerId, watermark_model::controller::BrokerRegistration)>,
    metadata_offset: MetadataOffset,
}

/// A partition's metadata record: its state and the metadata offset of its newest change.
type PartitionRecord = (PartitionState, MetadataOffset);

/// The controller's state as a metadata log (`metadata.log`): each save appends the partitions
/// changed since the last one (those whose metadata offset is newer), R50.
pub struct ControllerStore {
    dir: PathBuf,
    log: RecordLog,
    /// The metadata offset of the last save: partitions changed after it are appended next.
    saved_offset: Option<MetadataOffset>,
}

impl ControllerStore {
    pub fn new(dir: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(ControllerStore {
            dir: dir.to_path_buf(),
            log: RecordLog::new(&dir.join("metadata.log"), fsync == FsyncPolicy::Always),
            saved_offset: None,
        })
    }

    fn header(state: &ControllerState) -> ControllerHeader {
        ControllerHeader {
            controller_epoch: state.controller_epoch,
            brokers: state.brokers.clone(),
            metadata_offset: state.metadata_offset,
        }
    }

    fn record(
        state: &ControllerState,
        tp: &TopicPartition,
        p: &PartitionState,
    ) -> (TopicPartition, PartitionRecord) {
        let offset = state.partition_offsets.get(tp).copied().unwrap_or(0);
        (tp.clone(), (p.clone(), offset))
    }

    fn all_records(state: &ControllerState) -> Vec<(TopicPartition, PartitionRecord)> {
        state
            .partitions
            .iter()
            .map(|(tp, p)| Self::record(state, tp, p))
            .collect()
    }

    /// A directory written before the metadata log keeps the state in `controller.state`, one
    /// frame: read it, write it as the log's snapshot, then remove it.
    fn migrate_legacy_state(&mut self) -> io::Result<()> {
        let legacy = self.dir.join("controller.state");
        let data = match fs::read(&legacy) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let state: ControllerState = unframe(&data)
            .and_then(|p| postcard::from_bytes(p).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is corrupt (or written by a version without metadata offsets)",
                        legacy.display()
                    ),
                )
            })?;
        self.log
            .write_snapshot(&Self::header(&state), Self::all_records(&state))?;
        fs::remove_file(&legacy)
    }
}

impl Durable<Storage> for ControllerStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        self.migrate_legacy_state()?;
        let Some(loaded) = self
            .log
            .load::<ControllerHeader, TopicPartition, PartitionRecord>()?
        else {
            return Ok(None);
        };
        let mut partitions = PartitionMap::new();
        let mut partition_offsets = PartitionMap::new();
        for (tp, (p, offset)) in loaded.records {
            if offset > 0 {
                partition_offsets.insert(tp.clone(), offset);
            }
            partitions.insert(tp, p);
        }
        let state = ControllerState {
            controller_epoch: loaded.header.controller_epoch,
            brokers: loaded.header.brokers,
            partitions,
            metadata_offset: loaded.header.metadata_offset,
            partition_offsets,
        };
        self.saved_offset = Some(state.metadata_offset);
        Ok(Some(Storage::Controller(Arc::new(state))))
    }

    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        let Storage::Controller(state) = storage else {
            return Err(io::Error::other("the controller saves controller storage"));
        };
        let header = Self::header(state);
        match self.saved_offset {
            Some(saved) => {
                let changed = state
                    .partitions
                    .iter()
                    .filter(|(tp, _)| state.partition_offsets.get(tp).is_some_and(|o| *o > saved))
                    .map(|(tp, p)| Self::record(state, tp, p))
                    .collect();
                self.log
                    .append(&header, changed, || Self::all_records(state))?;
            }
            None => self.log.write_snapshot(&header, Self::all_records(state))?,
        }
        self.saved_offset = Some(state.metadata_offset);
        Ok(())
    }
}

/// What every frame of a quorum controller's log carries whole: KRaft's `quorum-state`, and
/// where the metadata log ends (entries at or past it are a truncated tail).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QuorumHeader {
    epoch: QuorumEpoch,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    log_end_offset: Offset,
}

/// A controller of a KRaft quorum (`quorum.log`): the quorum state, and the metadata log's
/// entries keyed by offset. A save appends the entries from the first one that differs from the
/// last save. Raft's log matching makes that cheap to find: two entries at one offset in one
/// epoch are the same, and so is everything before them, so the search runs from the end and
/// costs what changed.
pub struct QuorumStore {
    log: RecordLog,
    /// The epoch of each entry saved last.
    saved_epochs: Option<Vec<QuorumEpoch>>,
}

impl QuorumStore {
    pub fn new(dir: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(QuorumStore {
            log: RecordLog::new(&dir.join("quorum.log"), fsync == FsyncPolicy::Always),
            saved_epochs: None,
        })
    }

    fn header(s: &QuorumStorage) -> QuorumHeader {
        QuorumHeader {
            epoch: s.epoch,
            voted_for: s.voted_for,
            leader: s.leader,
            log_end_offset: s.log.len() as Offset,
        }
    }

    fn entries(s: &QuorumStorage, from: usize) -> Vec<(Offset, MetadataEntry)> {
        s.log[from.min(s.log.len())..]
            .iter()
            .enumerate()
            .map(|(i, e)| ((from + i) as Offset, e.clone()))
            .collect()
    }
}

/// How many leading entries of `log` the entries of `saved_epochs` hold: the offset after the
/// last one that matches by epoch.
fn matching_prefix(saved_epochs: &[QuorumEpoch], log: &[MetadataEntry]) -> usize {
    let common = saved_epochs.len().min(log.len());
    (0..common)
        .rev()
        .find(|&i| saved_epochs[i] == log[i].epoch)
        .map_or(0, |i| i + 1)
}

impl Durable<Storage> for QuorumStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        let Some(loaded) = self.log.load::<QuorumHeader, Offset, MetadataEntry>()? else {
            return Ok(None);
        };
        let end = loaded.header.log_end_offset;
        let log: Vec<MetadataEntry> = loaded
            .records
            .into_iter()
            .take_while(|(offset, _)| *offset < end)
            .enumerate()
            .map(|(i, (offset, e))| match offset == i as Offset {
                true => Ok(e),
                false => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("quorum.log lacks the metadata record at offset {i}"),
                )),
            })
            .collect::<io::Result<_>>()?;
        if (log.len() as Offset) < end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "quorum.log ends at offset {} but its header says {end}",
                    log.len()
                ),
            ));
        }
        self.saved_epochs = Some(log.iter().map(|e| e.epoch).collect());
        Ok(Some(Storage::Quorum(Arc::new(QuorumStorage {
            epoch: loaded.header.epoch,
            voted_for: loaded.header.voted_for,
            leader: loaded.header.leader,
            log: Arc::new(log),
        }))))
    }

    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        let Storage::Quorum(s) = storage else {
            return Err(io::Error::other("a quorum controller saves quorum storage"));
        };
        let header = Self::header(s);
        let from = match &self.saved_epochs {
            Some(saved) => {
                let from = matching_prefix(saved, &s.log);
                self.log
                    .append(&header, Self::entries(s, from), || Self::entries(s, 0))?;
                from
            }
            None => {
                self.log.write_snapshot(&header, Self::entries(s, 0))?;
                0
            }
        };
        // What was saved now: the matching prefix, then the entries just written.
        let saved = self.saved_epochs.get_or_insert_with(Vec::new);
        saved.truncate(from);
        saved.extend(s.log[from..].iter().map(|e| e.epoch));
        Ok(())
    }
}

/// Either role's store, so that one host type runs both.
pub enum NodeStore {
    Controller(ControllerStore),
    Broker(BrokerStore),
    Quorum(QuorumStore),
    None,
}

impl Durable<Storage> for NodeStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        match self {
            NodeStore::Controller(s) => s.load(),
            NodeStore::Broker(s) => s.load(),
            NodeStore::Quorum(s) => s.load(),
            NodeStore::None => Ok(None),
        }
    }
    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        match self {
            NodeStore::Controller(s) => s.save(storage),
            NodeStore::Broker(s) => s.save(storage),
            NodeStore::Quorum(s) => s.save(storage),
            NodeStore::None => Ok(()),
        }
    }
    fn checkpoint(&mut self) -> io::Result<()> {
        match self {
            NodeStore::Broker(s) => s.checkpoint(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watermark_model::broker::BrokerStorage;

    use crate::segment::tests::entry;

    fn storage(log: &[LogEntry], hwm: Offset) -> Storage {
        let topic = Topic::new("orders/eu");
        let tp = TopicPartition::new(&topic, 1);
        let partition = PartitionState {
            topic_partition: tp.clone(),
            leader: Some(1),
            leader_epoch: 2,
            partition_epoch: 3,
            isr: [1, 2].as_slice().into(),
            elr: Default::default(),
            replicas: [1, 2].as_slice().into(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        };
        let replicas = [(
            tp,
            ReplicaStorage {
                partition,
                log: Log::from_entries(log.iter().cloned()),
                high_watermark: hwm,
            },
        )]
        .into_iter()
        .collect();
        Storage::Broker(Arc::new(BrokerStorage {
            broker_epoch: 4,
            controller_epoch: 5,
            replicas,
        }))
    }

    #[test]
    fn a_broker_store_recovers_what_was_saved_through_appends_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(&storage(&[entry(0, "a")], 0)).unwrap();
        store
            .save(&storage(&[entry(0, "a"), entry(0, "b"), entry(1, "c")], 1))
            .unwrap();
        // Divergence: the tail is replaced by a newer epoch's entries in one step.
        let last = storage(&[entry(0, "a"), entry(2, "x"), entry(2, "y")], 2);
        store.save(&last).unwrap();
        drop(store);
        // Without a clean shutdown the high watermark checkpoint may lag (never lead).
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        let Some(Storage::Broker(recovered)) = store.load().unwrap() else {
            panic!("saved storage")
        };
        let r = recovered.replicas.values().next().unwrap();
        assert!(r.high_watermark <= 2);
        store.save(&last).unwrap();
        store.checkpoint().unwrap();
        drop(store);
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(store.load().unwrap(), Some(last));
        assert!(dir.path().join("orders%2Feu-1").is_dir());
    }

    #[test]
    fn a_corrupt_meta_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        store.save(&storage(&[entry(0, "a")], 0)).unwrap();
        let meta = dir.path().join("meta.log");
        let mut data = fs::read(&meta).unwrap();
        data[10] ^= 1;
        fs::write(&meta, data).unwrap();
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(store.load().is_err());
    }

    /// `storage` with `count` partitions of topic `t`, partition `bumped` in partition epoch 1.
    fn wide(count: u32, bumped: Option<u32>, hwm: Offset) -> Storage {
        let topic = Topic::new("t");
        let replicas = (0..count)
            .map(|p| {
                let tp = TopicPartition::new(&topic, p);
                let partition = PartitionState {
                    topic_partition: tp.clone(),
                    leader: Some(1),
                    leader_epoch: 0,
                    partition_epoch: u32::from(bumped == Some(p)),
                    isr: [1, 2, 3].as_slice().into(),
                    elr: Default::default(),
                    replicas: [1, 2, 3].as_slice().into(),
                    min_insync_replicas: 2,
                    unclean_leader_election: false,
                };
                (
                    tp,
                    ReplicaStorage {
                        partition,
                        log: Log::new(),
                        high_watermark: hwm,
                    },
                )
            })
            .collect();
        Storage::Broker(Arc::new(BrokerStorage {
            broker_epoch: 0,
            controller_epoch: 1,
            replicas,
        }))
    }

    #[test]
    fn a_save_that_changes_one_partition_of_thousands_appends_only_that_one() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta.log");
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        store.save(&wide(4000, None, 0)).unwrap();
        let snapshot = fs::metadata(&meta).unwrap().len();
        store.save(&wide(4000, Some(17), 0)).unwrap();
        let appended = fs::metadata(&meta).unwrap().len() - snapshot;
        assert!(
            appended < 200,
            "{appended} bytes appended for one partition, the snapshot is {snapshot}"
        );
        drop(store);
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(store.load().unwrap(), Some(wide(4000, Some(17), 0)));
    }

    #[test]
    fn a_directory_written_before_the_metadata_log_is_migrated_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let Storage::Broker(s) = wide(3, Some(1), 0) else {
            unreachable!()
        };
        let legacy = LegacyBrokerMeta {
            broker_epoch: s.broker_epoch,
            controller_epoch: s.controller_epoch,
            replicas: s.replicas.values().map(|r| r.partition.clone()).collect(),
            high_watermarks: s.replicas.values().map(|r| r.high_watermark).collect(),
        };
        let bytes = crate::segment::frame(&postcard::to_allocvec(&legacy).unwrap());
        fs::write(dir.path().join("meta"), bytes).unwrap();
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(store.load().unwrap(), Some(wide(3, Some(1), 0)));
        assert!(!dir.path().join("meta").exists());
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(store.load().unwrap(), Some(wide(3, Some(1), 0)));
    }

    #[test]
    fn the_controller_store_appends_changed_partitions_and_recovers_the_last_state() {
        use watermark_model::controller::BrokerRegistration;
        let dir = tempfile::tempdir().unwrap();
        let topic = Topic::new("t");
        let state = |epochs: &[(u32, u32, MetadataOffset)], offset: MetadataOffset| {
            let mut partitions = PartitionMap::new();
            let mut partition_offsets = PartitionMap::new();
            for (p, epoch, changed_at) in epochs {
                let tp = TopicPartition::new(&topic, *p);
                partitions.insert(
                    tp.clone(),
                    PartitionState {
                        topic_partition: tp.clone(),
                        leader: Some(1),
                        leader_epoch: *epoch,
                        partition_epoch: *epoch,
                        isr: [1].as_slice().into(),
                        elr: Default::default(),
                        replicas: [1].as_slice().into(),
                        min_insync_replicas: 1,
                        unclean_leader_election: false,
                    },
                );
                if *changed_at > 0 {
                    partition_offsets.insert(tp, *changed_at);
                }
            }
            Storage::Controller(Arc::new(ControllerState {
                controller_epoch: 2,
                brokers: vec![(
                    1,
                    BrokerRegistration {
                        broker_epoch: 3,
                        fenced: false,
                    },
                )],
                partitions,
                metadata_offset: offset,
                partition_offsets,
            }))
        };
        let mut store = ControllerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(&state(&[(0, 0, 1), (1, 0, 2)], 2)).unwrap();
        store.save(&state(&[(0, 1, 3), (1, 0, 2)], 3)).unwrap();
        let last = state(&[(0, 1, 3), (1, 2, 4)], 4);
        store.save(&last).unwrap();
        let mut store = ControllerStore::new(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(store.load().unwrap(), Some(last));
    }

    #[test]
    fn a_quorum_log_reloads_as_last_saved_across_appends_truncations_and_a_new_epoch() {
        use watermark_model::quorum::{MetadataRecord, QuorumStorage};
        let dir = tempfile::tempdir().unwrap();
        let entry = |epoch, change| MetadataEntry {
            epoch,
            record: MetadataRecord::Change(change),
        };
        let storage = |epoch, log: Vec<MetadataEntry>| {
            Storage::Quorum(Arc::new(QuorumStorage {
                epoch,
                voted_for: Some(2),
                leader: Some(2),
                log: Arc::new(log),
            }))
        };
        let mut store = QuorumStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(store.load().unwrap().is_none());
        store
            .save(&storage(1, vec![entry(1, 0), entry(1, 1), entry(1, 2)]))
            .unwrap();
        // A divergence: the tail of epoch 1 is cut, and epoch 2 writes over it.
        store.save(&storage(2, vec![entry(1, 0)])).unwrap();
        let last = storage(2, vec![entry(1, 0), entry(2, 5), entry(2, 6)]);
        store.save(&last).unwrap();
        let mut reopened = QuorumStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(reopened.load().unwrap(), Some(last));
        // A truncation alone reloads without the cut tail.
        let cut = storage(3, vec![entry(1, 0)]);
        reopened.save(&cut).unwrap();
        let mut again = QuorumStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(again.load().unwrap(), Some(cut));
    }

    #[test]
    fn the_matching_prefix_is_found_by_epoch_from_the_end() {
        use watermark_model::quorum::MetadataRecord;
        let log: Vec<MetadataEntry> = [1, 1, 3]
            .iter()
            .map(|e| MetadataEntry {
                epoch: *e,
                record: MetadataRecord::LeaderChange { leader: 1 },
            })
            .collect();
        assert_eq!(matching_prefix(&[1, 1, 2, 2], &log), 2);
        assert_eq!(matching_prefix(&[1, 1, 3, 3], &log), 3);
        assert_eq!(matching_prefix(&[2], &log), 0);
        assert_eq!(matching_prefix(&[], &log), 0);
    }
}
