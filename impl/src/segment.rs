//! One replica's log on disk: append-only segment files of CRC-framed record batches.
//!
//! ```text
//! <dir>/<base offset, 20 digits>.log:  ([len: u32][crc32: u32][postcard (base offset, entries)])*
//! ```
//!
//! Each `append` writes one frame: O(appended bytes). A segment rolls over at
//! [`SEGMENT_BYTES_MAX`]. Truncation cuts the file at the first frame past the new end (and
//! rewrites the kept part of a frame cut in two), and deletes later segments. On open, frames are
//! read back and checked; the first torn or corrupt frame and everything after it is cut, so a
//! crash mid-write loses only that tail, which the broker then fetches again from its leader.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use watermark_model::{LogEntry, Offset};

/// A segment rolls over past this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
const FRAME_HEADER_BYTES: usize = 8;
/// A frame larger than this is taken as corruption (a batch fits in a datagram).
const FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Batch {
    base_offset: Offset,
    entries: Vec<LogEntry>,
}

#[derive(Serialize)]
struct BatchRef<'a> {
    base_offset: Offset,
    entries: &'a [LogEntry],
}

struct Segment {
    base_offset: Offset,
    path: PathBuf,
    file: File,
    bytes: u64,
}

/// Where a batch starts on disk.
#[derive(Clone, Copy)]
struct BatchPosition {
    base_offset: Offset,
    segment: usize,
    position: u64,
}

/// What recovery found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from a torn or corrupt tail.
    pub bytes_cut: u64,
}

pub struct SegmentLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    batches: Vec<BatchPosition>,
    log_end_offset: Offset,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, recovering its entries and cutting a bad tail.
    pub fn open(dir: &Path) -> io::Result<(SegmentLog, Vec<LogEntry>, Recovery)> {
        fs::create_dir_all(dir)?;
        let mut bases: Vec<Offset> = fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            batches: Vec::new(),
            log_end_offset: 0,
            buf: Vec::new(),
        };
        let mut entries = Vec::new();
        let mut recovery = Recovery::default();
        let mut cut = false;
        for base in bases {
            let path = segment_path(dir, base);
            if cut || base != log.log_end_offset {
                // After a bad frame, or not where the log left off: not part of the log.
                recovery.bytes_cut += fs::metadata(&path)?.len();
                fs::remove_file(&path)?;
                cut = true;
                continue;
            }
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let segment = log.segments.len();
            let mut at = 0usize;
            while at < data.len() {
                match parse_frame(&data[at..], log.log_end_offset) {
                    Some((batch, frame_bytes)) => {
                        log.batches.push(BatchPosition {
                            base_offset: batch.base_offset,
                            segment,
                            position: at as u64,
                        });
                        log.log_end_offset += batch.entries.len() as Offset;
                        entries.extend(batch.entries);
                        at += frame_bytes;
                    }
                    None => {
                        cut = true;
                        break;
                    }
                }
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            if cut {
                recovery.bytes_cut += (data.len() - at) as u64;
                file.set_len(at as u64)?;
                file.sync_all()?;
            }
            log.segments.push(Segment {
                base_offset: base,
                path,
                file,
                bytes: at as u64,
            });
        }
        Ok((log, entries, recovery))
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    /// Appends `entries` at the log end offset as one frame.
    pub fn append(&mut self, entries: &[LogEntry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        let batch = BatchRef {
            base_offset: self.log_end_offset,
            entries,
        };
        let mut out = std::mem::take(&mut self.buf);
        out = postcard::to_extend(&batch, out).map_err(io::Error::other)?;
        let payload_bytes = (out.len() - FRAME_HEADER_BYTES) as u32;
        let crc = crc32fast::hash(&out[FRAME_HEADER_BYTES..]);
        out[0..4].copy_from_slice(&payload_bytes.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        let roll = match self.segments.last() {
            None => true,
            Some(s) => s.bytes > 0 && s.bytes + out.len() as u64 > SEGMENT_BYTES_MAX,
        };
        if roll {
            self.roll()?;
        }
        let index = self.segments.len() - 1;
        let segment = &mut self.segments[index];
        write_at_end(&mut segment.file, segment.bytes, &out)?;
        self.batches.push(BatchPosition {
            base_offset: self.log_end_offset,
            segment: index,
            position: segment.bytes,
        });
        segment.bytes += out.len() as u64;
        self.log_end_offset += entries.len() as Offset;
        self.buf = out;
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = segment_path(&self.dir, self.log_end_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        self.segments.push(Segment {
            base_offset: self.log_end_offset,
            path,
            file,
            bytes: 0,
        });
        // The new file's name must survive a crash too.
        File::open(&self.dir)?.sync_all()
    }

    /// Removes every entry at or after `offset`. `kept` gives the entries from the start of the
    /// batch that holds `offset` up to `offset`, to be written back; pass the in-memory log.
    pub fn truncate(&mut self, offset: Offset, log: &watermark_model::Log) -> io::Result<()> {
        if offset >= self.log_end_offset {
            return Ok(());
        }
        let index = self.batches.partition_point(|b| b.base_offset <= offset) - 1;
        let batch = self.batches[index];
        self.batches.truncate(index);
        for s in self.segments.drain(batch.segment + 1..) {
            fs::remove_file(&s.path)?;
        }
        let segment = self.segments.last_mut().expect("the batch's segment");
        segment.file.set_len(batch.position)?;
        segment.bytes = batch.position;
        self.log_end_offset = batch.base_offset;
        if segment.bytes == 0 && self.segments.len() > 1 {
            let s = self.segments.pop().expect("non-empty");
            fs::remove_file(&s.path)?;
        }
        let kept: Vec<LogEntry> = (batch.base_offset..offset)
            .map(|o| log.get(o).expect("kept entries are in the log").clone())
            .collect();
        self.append(&kept)
    }

    /// Flushes written frames to the device.
    pub fn sync(&mut self) -> io::Result<()> {
        match self.segments.last() {
            Some(s) => s.file.sync_data(),
            None => Ok(()),
        }
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn first_segment_base_offset(&self) -> Option<Offset> {
        self.segments.first().map(|s| s.base_offset)
    }
}

fn write_at_end(file: &mut File, position: u64, bytes: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(position))?;
    file.write_all(bytes)
}

/// One frame at the start of `data`, if whole, intact and starting at `expected_base`.
fn parse_frame(data: &[u8], expected_base: Offset) -> Option<(Batch, usize)> {
    if data.len() < FRAME_HEADER_BYTES {
        return None;
    }
    let len = u32::from_le_bytes(data[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(data[4..8].try_into().ok()?);
    if len > FRAME_BYTES_MAX || data.len() < FRAME_HEADER_BYTES + len as usize {
        return None;
    }
    let payload = &data[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len as usize];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let batch: Batch = postcard::from_bytes(payload).ok()?;
    if batch.base_offset != expected_base || batch.entries.is_empty() {
        return None;
    }
    Some((batch, FRAME_HEADER_BYTES + len as usize))
}

/// Where each intact frame of a segment file's bytes starts, and where the intact frames end:
/// what recovery would keep. Read-only; for tools that inspect or damage a segment (the
/// nemesis tears the last frame and checks that recovery will cut it).
pub fn intact_frames(data: &[u8], base_offset: Offset) -> (Vec<usize>, usize) {
    let mut starts = Vec::new();
    let mut at = 0usize;
    let mut next_offset = base_offset;
    while at < data.len() {
        let Some((batch, frame_bytes)) = parse_frame(&data[at..], next_offset) else {
            break;
        };
        starts.push(at);
        next_offset += batch.entries.len() as Offset;
        at += frame_bytes;
    }
    (starts, at)
}

/// The base offset a segment file's name gives (`<20 digits>.log`).
pub fn segment_base_offset(path: &Path) -> Option<Offset> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Writes `bytes` to `path` atomically: a temporary file, then a rename. With `sync`, the data
/// and the rename are on the device before this returns.
pub fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if sync {
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// A small file framed like a segment batch: `[len][crc][payload]`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + FRAME_HEADER_BYTES);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a [`frame`], if intact.
pub fn unframe(data: &[u8]) -> Option<&[u8]> {
    if data.len() < FRAME_HEADER_BYTES {
        return None;
    }
    let len = u32::from_le_bytes(data[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().ok()?);
    let payload = data.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    (crc32fast::hash(payload) == crc && data.len() == FRAME_HEADER_BYTES + len).then_some(payload)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use watermark_model::{Log, Record, Value};

    pub(crate) fn entry(epoch: u32, value: &str) -> LogEntry {
        LogEntry {
            leader_epoch: epoch,
            record: Record {
                value: Value(value.as_bytes().into()),
                producer: None,
            },
        }
    }

    #[test]
    fn appends_and_recovers_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, entries, _) = SegmentLog::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        log.append(&[entry(0, "a"), entry(0, "b")]).unwrap();
        log.append(&[entry(1, "c")]).unwrap();
        drop(log);
        let (log, entries, recovery) = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(entries, vec![entry(0, "a"), entry(0, "b"), entry(1, "c")]);
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(recovery, Recovery::default());
    }

    #[test]
    fn truncation_cuts_the_file_and_keeps_a_split_batch_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = SegmentLog::open(dir.path()).unwrap();
        let all = vec![entry(0, "a"), entry(0, "b"), entry(0, "c"), entry(1, "d")];
        log.append(&all[..3]).unwrap();
        log.append(&all[3..]).unwrap();
        let memory = Log::from_entries(all.clone());
        log.truncate(2, &memory).unwrap();
        log.append(&[entry(2, "x")]).unwrap();
        drop(log);
        let (_, entries, recovery) = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(entries, vec![entry(0, "a"), entry(0, "b"), entry(2, "x")]);
        assert_eq!(recovery.bytes_cut, 0);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = SegmentLog::open(dir.path()).unwrap();
        log.append(&[entry(0, "a")]).unwrap();
        log.append(&[entry(0, "b")]).unwrap();
        drop(log);
        let path = segment_path(dir.path(), 0);
        let full = fs::read(&path).unwrap();
        // A torn write: half of a third frame.
        let mut torn = full.clone();
        torn.extend_from_slice(&frame(b"garbage")[..6]);
        fs::write(&path, &torn).unwrap();
        let (log, entries, recovery) = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(entries, vec![entry(0, "a"), entry(0, "b")]);
        assert_eq!(recovery.bytes_cut, 6);
        drop(log);
        assert_eq!(
            fs::read(&path).unwrap(),
            full,
            "the tail is cut on disk too"
        );
        // A flipped bit in the second frame: it and everything after it go.
        let mut corrupt = full.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        fs::write(&path, &corrupt).unwrap();
        let (mut log, entries, _) = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(entries, vec![entry(0, "a")]);
        log.append(&[entry(1, "c")]).unwrap();
        drop(log);
        let (_, entries, _) = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(entries, vec![entry(0, "a"), entry(1, "c")]);
    }

    #[test]
    fn framed_files_detect_corruption() {
        let framed = frame(b"hello");
        assert_eq!(unframe(&framed), Some(&b"hello"[..]));
        let mut bad = framed.clone();
        bad[9] ^= 1;
        assert_eq!(unframe(&bad), None);
        assert_eq!(unframe(&framed[..7]), None);
    }
}
