//! A node's metadata as a log of keyed records: a snapshot of every key, then frames holding the
//! keys each save changed. KRaft keeps its metadata the same way (a log and snapshots); here it
//! means a save costs what the step changed, not the size of the whole table, so a controller or
//! broker with thousands of partitions does not rewrite them all on every ISR change.
//!
//! Every frame is `[length][CRC-32][payload]`, like a segment batch, and carries the header (the
//! node's epochs) whole. Loading replays the snapshot and then every change: the latest value of
//! each key wins. A torn or corrupt frame at the end (a crash in the middle of a write, or a power
//! loss under `--fsync never`) is cut, with everything after it, as segments are; the loss is at
//! most what was written since the last fsync. The log is rewritten as a fresh snapshot, atomically,
//! once the changes appended outgrow the snapshot (and [`COMPACT_BYTES_MIN`]).

use crate::segment::{frame, write_atomically};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Appended changes are folded into a new snapshot once they exceed the snapshot's size and this.
pub const COMPACT_BYTES_MIN: u64 = 1024 * 1024;
const FRAME_HEADER_BYTES: usize = 8;

#[derive(Serialize, Deserialize)]
enum Frame<H, K, V> {
    /// Every key, and the header.
    Snapshot { header: H, records: Vec<(K, V)> },
    /// The keys that changed, and the header.
    Changes { header: H, records: Vec<(K, V)> },
}

/// What [`RecordLog::load`] found.
pub struct Loaded<H, K, V> {
    pub header: H,
    pub records: BTreeMap<K, V>,
    /// Bytes cut from a torn tail.
    pub bytes_cut: u64,
}

pub struct RecordLog {
    path: PathBuf,
    sync: bool,
    /// Open for appending once the file holds a snapshot.
    file: Option<File>,
    snapshot_bytes: u64,
    appended_bytes: u64,
}

impl RecordLog {
    /// The log at `path`; nothing is read until [`RecordLog::load`].
    pub fn new(path: &Path, sync: bool) -> RecordLog {
        RecordLog {
            path: path.to_path_buf(),
            sync,
            file: None,
            snapshot_bytes: 0,
            appended_bytes: 0,
        }
    }

    /// Replays the log: `None` if there is none. The first frame must be an intact snapshot;
    /// a file that starts otherwise is corrupt, and that is an error, never a fresh start.
    pub fn load<H, K, V>(&mut self) -> io::Result<Option<Loaded<H, K, V>>>
    where
        H: DeserializeOwned,
        K: DeserializeOwned + Ord,
        V: DeserializeOwned,
    {
        let data = match fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt, or was written by an earlier version of watermark (before KIP-966 partition states); nothing was changed",
                    self.path.display()
                ),
            )
        };
        let mut at = 0;
        let (header, mut records) = match next_frame::<H, K, V>(&data, &mut at) {
            Some(Frame::Snapshot { header, records }) => (header, records),
            _ => return Err(corrupt()),
        };
        let snapshot_bytes = at as u64;
        let mut header = header;
        let mut map: BTreeMap<K, V> = records.drain(..).collect();
        while let Some(frame) = next_frame::<H, K, V>(&data, &mut at) {
            match frame {
                Frame::Changes { header: h, records } | Frame::Snapshot { header: h, records } => {
                    header = h;
                    map.extend(records);
                }
            }
        }
        let bytes_cut = (data.len() - at) as u64;
        if bytes_cut > 0 {
            // A torn tail: cut it, so that what is appended next follows intact frames.
            let file = OpenOptions::new().write(true).open(&self.path)?;
            file.set_len(at as u64)?;
            if self.sync {
                file.sync_all()?;
            }
        }
        self.snapshot_bytes = snapshot_bytes;
        self.appended_bytes = at as u64 - snapshot_bytes;
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        Ok(Some(Loaded {
            header,
            records: map,
            bytes_cut,
        }))
    }

    /// Appends the changed records; once the changes outgrow the snapshot, rewrites the log as a
    /// snapshot of `all()` instead. Durable (per the fsync policy) when it returns.
    pub fn append<H, K, V>(
        &mut self,
        header: &H,
        changed: Vec<(K, V)>,
        all: impl FnOnce() -> Vec<(K, V)>,
    ) -> io::Result<()>
    where
        H: Serialize + Clone,
        K: Serialize,
        V: Serialize,
    {
        let compact = self.appended_bytes > self.snapshot_bytes.max(COMPACT_BYTES_MIN);
        let Some(file) = self.file.as_mut().filter(|_| !compact) else {
            return self.write_snapshot(header, all());
        };
        let payload = postcard::to_allocvec(&Frame::<&H, K, V>::Changes {
            header,
            records: changed,
        })
        .map_err(io::Error::other)?;
        let bytes = frame(&payload);
        file.write_all(&bytes)?;
        if self.sync {
            file.sync_data()?;
        }
        self.appended_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Replaces the log with a snapshot of every record, atomically.
    pub fn write_snapshot<H, K, V>(&mut self, header: &H, records: Vec<(K, V)>) -> io::Result<()>
    where
        H: Serialize,
        K: Serialize,
        V: Serialize,
    {
        let payload = postcard::to_allocvec(&Frame::<&H, K, V>::Snapshot { header, records })
            .map_err(io::Error::other)?;
        let bytes = frame(&payload);
        self.file = None;
        write_atomically(&self.path, &bytes, self.sync)?;
        self.snapshot_bytes = bytes.len() as u64;
        self.appended_bytes = 0;
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

/// The frame at `*at`, moving past it; `None` at the end or at a torn or corrupt frame.
fn next_frame<H, K, V>(data: &[u8], at: &mut usize) -> Option<Frame<H, K, V>>
where
    H: DeserializeOwned,
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    let rest = data.get(*at..)?;
    let header = rest.get(..FRAME_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let payload = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let frame = postcard::from_bytes(payload).ok()?;
    *at += FRAME_HEADER_BYTES + len;
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Header = (u32, String);

    fn h(n: u32, s: &str) -> Header {
        (n, s.to_string())
    }

    fn load(log: &mut RecordLog) -> Loaded<Header, u32, u64> {
        log.load().unwrap().expect("a log")
    }

    #[test]
    fn replays_the_snapshot_and_then_every_change_latest_value_winning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut log = RecordLog::new(&path, false);
        assert!(log.load::<Header, u32, u64>().unwrap().is_none());
        let header = h(1, "a");
        log.write_snapshot(&header, vec![(1u32, 10u64), (2, 20)])
            .unwrap();
        log.append(&h(2, "b"), vec![(2u32, 21u64), (3, 30)], Vec::new)
            .unwrap();
        log.append(&h(3, "c"), vec![(1u32, 11u64)], Vec::new)
            .unwrap();
        let loaded = load(&mut RecordLog::new(&path, false));
        assert_eq!(loaded.header, (3, "c".to_string()));
        assert_eq!(
            loaded.records.into_iter().collect::<Vec<_>>(),
            vec![(1, 11), (2, 21), (3, 30)]
        );
        assert_eq!(loaded.bytes_cut, 0);
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_appending_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut log = RecordLog::new(&path, false);
        log.write_snapshot(&h(1, "a"), vec![(1u32, 10u64)]).unwrap();
        log.append(&h(1, "a"), vec![(2u32, 20u64)], Vec::new)
            .unwrap();
        let mut data = fs::read(&path).unwrap();
        let full = data.len();
        data.truncate(full - 3);
        fs::write(&path, &data).unwrap();
        let mut log = RecordLog::new(&path, false);
        let loaded = load(&mut log);
        assert_eq!(
            loaded.records.len(),
            1,
            "the torn change is lost, nothing else"
        );
        assert!(loaded.bytes_cut > 0);
        log.append(&h(2, "b"), vec![(3u32, 30u64)], Vec::new)
            .unwrap();
        let loaded = load(&mut RecordLog::new(&path, false));
        assert_eq!(loaded.header.0, 2);
        assert_eq!(
            loaded.records.into_iter().collect::<Vec<_>>(),
            vec![(1, 10), (3, 30)]
        );
    }

    #[test]
    fn a_file_that_does_not_start_with_a_snapshot_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        fs::write(&path, b"not a log at all").unwrap();
        assert!(RecordLog::new(&path, false)
            .load::<Header, u32, u64>()
            .is_err());
        let mut log = RecordLog::new(&path, false);
        log.write_snapshot(&h(1, "a"), vec![(1u32, 10u64)]).unwrap();
        let mut data = fs::read(&path).unwrap();
        data[FRAME_HEADER_BYTES + 1] ^= 1;
        fs::write(&path, &data).unwrap();
        assert!(RecordLog::new(&path, false)
            .load::<Header, u32, u64>()
            .is_err());
    }

    #[test]
    fn changes_are_folded_into_a_snapshot_once_they_outgrow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut log = RecordLog::new(&path, false);
        log.write_snapshot(&h(0, ""), vec![(0u32, 0u64)]).unwrap();
        let big = "x".repeat(64 * 1024);
        for i in 0..40u32 {
            log.append(
                &(i, big.clone()) as &Header,
                vec![(i, u64::from(i))],
                || (0..=i).map(|k| (k, u64::from(k))).collect(),
            )
            .unwrap();
        }
        let size = fs::metadata(&path).unwrap().len();
        assert!(
            size < 2 * COMPACT_BYTES_MIN + 128 * 1024,
            "compacted: {size} bytes"
        );
        let loaded = load(&mut RecordLog::new(&path, false));
        assert_eq!(loaded.records.len(), 40);
        assert_eq!(loaded.header.0, 39);
    }
}
