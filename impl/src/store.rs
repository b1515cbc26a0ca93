//! What a node keeps on disk, and how a step's `Save` reaches it. Spec: rule R0.
//!
//! The model's `Save` carries a node's whole durable state. The runtime writes only what changed:
//!
//! - **Broker.** Each replica's log is a [`SegmentLog`] in `<dir>/<topic>-<partition>/`; a save
//!   appends the entries past what was written (O(appended bytes)), or truncates the file first
//!   where the log diverged. The rest (broker and controller epochs, partition states, high
//!   watermark checkpoints) is a small `meta` file replaced atomically when it changes; a change
//!   of high watermarks alone is checkpointed at most every [`HWM_CHECKPOINT_INTERVAL`], as
//!   Kafka's `replica.high.watermark.checkpoint.interval.ms` does.
//! - **Controller.** Its whole state, replaced atomically on every save (saves are rare).
//!
//! [`FsyncPolicy`] says when the data reaches the device.

use crate::segment::{frame, unframe, write_atomically, SegmentLog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watermark_model::broker::{BrokerStorage, ReplicaStorage};
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
    for b in tp.topic.0.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{name}-{}", tp.partition)
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BrokerMeta {
    broker_epoch: BrokerEpoch,
    controller_epoch: ControllerEpoch,
    replicas: Vec<PartitionState>,
    high_watermarks: Vec<Offset>,
}

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
    meta: Option<BrokerMeta>,
    /// Metadata whose only change is high watermarks, not yet written.
    meta_pending: Option<BrokerMeta>,
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
            meta: None,
            meta_pending: None,
            meta_written_at: None,
            recovered_bytes_cut: 0,
        })
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("meta")
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

    fn save_broker(&mut self, storage: &BrokerStorage) -> io::Result<()> {
        // Logs first: the metadata never names more than the logs hold.
        for (tp, replica) in storage.replicas.iter() {
            let sync = self.fsync == FsyncPolicy::Always;
            let persisted = self.replica_file(tp)?;
            write_log_diff(persisted, &replica.log)?;
            if sync {
                persisted.file.sync()?;
            }
        }
        let meta = BrokerMeta {
            broker_epoch: storage.broker_epoch,
            controller_epoch: storage.controller_epoch,
            replicas: storage
                .replicas
                .values()
                .map(|r| r.partition.clone())
                .collect(),
            high_watermarks: storage
                .replicas
                .values()
                .map(|r| r.high_watermark)
                .collect(),
        };
        let structural_change = self.meta.as_ref().is_none_or(|m| {
            m.broker_epoch != meta.broker_epoch
                || m.controller_epoch != meta.controller_epoch
                || m.replicas != meta.replicas
        });
        let hwm_change = self
            .meta
            .as_ref()
            .is_some_and(|m| m.high_watermarks != meta.high_watermarks);
        let checkpoint_due = self
            .meta_written_at
            .is_none_or(|at| at.elapsed() >= HWM_CHECKPOINT_INTERVAL);
        if structural_change || (hwm_change && checkpoint_due) {
            self.write_meta(meta)?;
        } else if hwm_change {
            self.meta_pending = Some(meta);
        }
        Ok(())
    }

    fn write_meta(&mut self, meta: BrokerMeta) -> io::Result<()> {
        let payload = postcard::to_allocvec(&meta).map_err(io::Error::other)?;
        write_atomically(
            &self.meta_path(),
            &frame(&payload),
            self.fsync == FsyncPolicy::Always,
        )?;
        self.meta = Some(meta);
        self.meta_pending = None;
        self.meta_written_at = Some(Instant::now());
        Ok(())
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
        let data = match fs::read(self.meta_path()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: BrokerMeta = unframe(&data)
            .and_then(|p| postcard::from_bytes(p).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt", self.meta_path().display()),
                )
            })?;
        let mut replicas = Vec::new();
        for (partition, high_watermark) in meta.replicas.iter().zip(&meta.high_watermarks) {
            let tp = partition.topic_partition.clone();
            let log = self.replica_file(&tp)?.log.clone();
            replicas.push((
                tp,
                ReplicaStorage {
                    partition: partition.clone(),
                    log,
                    high_watermark: *high_watermark,
                },
            ));
        }
        let storage = BrokerStorage {
            broker_epoch: meta.broker_epoch,
            controller_epoch: meta.controller_epoch,
            replicas: replicas.into_iter().collect(),
        };
        self.meta = Some(meta);
        Ok(Some(Storage::Broker(Arc::new(storage))))
    }

    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        match storage {
            Storage::Broker(s) => self.save_broker(s),
            Storage::Controller(_) => Err(io::Error::other("a broker saves broker storage")),
        }
    }

    fn checkpoint(&mut self) -> io::Result<()> {
        match self.meta_pending.take() {
            Some(meta) => self.write_meta(meta),
            None => Ok(()),
        }
    }
}

/// The controller's state in one file.
pub struct ControllerStore {
    path: PathBuf,
    fsync: FsyncPolicy,
}

impl ControllerStore {
    pub fn new(dir: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(ControllerStore {
            path: dir.join("controller.state"),
            fsync,
        })
    }
}

impl Durable<Storage> for ControllerStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        let data = match fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let state: ControllerState = unframe(&data)
            .and_then(|p| postcard::from_bytes(p).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt", self.path.display()),
                )
            })?;
        Ok(Some(Storage::Controller(Arc::new(state))))
    }

    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        let Storage::Controller(state) = storage else {
            return Err(io::Error::other("the controller saves controller storage"));
        };
        let payload = postcard::to_allocvec(&**state).map_err(io::Error::other)?;
        write_atomically(
            &self.path,
            &frame(&payload),
            self.fsync == FsyncPolicy::Always,
        )
    }
}

/// Either role's store, so that one host type runs both.
pub enum NodeStore {
    Controller(ControllerStore),
    Broker(BrokerStore),
    None,
}

impl Durable<Storage> for NodeStore {
    fn load(&mut self) -> io::Result<Option<Storage>> {
        match self {
            NodeStore::Controller(s) => s.load(),
            NodeStore::Broker(s) => s.load(),
            NodeStore::None => Ok(None),
        }
    }
    fn save(&mut self, storage: &Storage) -> io::Result<()> {
        match self {
            NodeStore::Controller(s) => s.save(storage),
            NodeStore::Broker(s) => s.save(storage),
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
            replicas: [1, 2].as_slice().into(),
            min_insync_replicas: 1,
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
        let meta = dir.path().join("meta");
        let mut data = fs::read(&meta).unwrap();
        data[10] ^= 1;
        fs::write(&meta, data).unwrap();
        let mut store = BrokerStore::new(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(store.load().is_err());
    }
}
