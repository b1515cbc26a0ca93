//! Trace files: every step of one node, as its host ran it, for `watermark validate` (spec §13).
//!
//! A node started with `--trace FILE` appends one record per step: the process's start (its
//! actor, address, incarnation and the storage it loaded), each message delivered to the actor
//! (sender, the sender's incarnation, the channel sequence number and the message's bytes) and
//! each timer that fired. With every record go the effects the host carried out, *in the order
//! it carried them out* (a digest of each storage saved, each message sent with its
//! destination, each timer set or cancelled), and a hash of the actor's state after the step.
//!
//! Inputs are kept whole, outputs as digests: replaying the inputs through the same actor code
//! gives the outputs back, and the digests say whether they are the ones the host produced.
//!
//! The record of a step is written, with one `write` call, before its effects run: a process
//! killed with `kill -9` has recorded every save it made (the kernel keeps what was written),
//! and at most the last step's effects may not all have happened. Restarts append to the same
//! file: each start begins a new incarnation.
//!
//! # File format
//!
//! ```text
//! "WMTRACE2" then frames: [length u32][crc32 u32][postcard of a Record]
//! ```
//!
//! Integers little-endian; the CRC-32 covers the payload. A torn last frame (a power loss while
//! the trace itself was written) ends the file; a bad frame before the end is corruption.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stateright::actor::{Actor, Command, Id};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::Path;

/// The format's magic. Digests are of this build's encodings and `Hash` layouts: a trace is
/// validated by the binary that recorded it (or one whose model and codec are unchanged).
pub const MAGIC: &[u8; 8] = b"WMTRACE2";
const FRAME_HEADER_BYTES: usize = 8;
/// The largest record read back: a start with a large storage.
pub const RECORD_BYTES_MAX: usize = 1 << 30;

/// A value's digest, the same in every process of one build (SipHash with fixed keys, over the
/// value's `Hash`: a log hashes by its running digest, so this is O(1) in a log's length).
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A message's digest: XXH3 of its encoded bytes (the codec's, as the transport carries them),
/// so that a sender's record and a receiver's payload compare without decoding, at memory speed.
/// 0 for a message that does not encode (oversized: the host drops it).
pub fn message_digest(encoded: Option<&[u8]>) -> u64 {
    encoded.map_or(0, xxhash_rust::xxh3::xxh3_64)
}

/// What a step handled.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event<A, T, S> {
    /// The process started (a recovery, if it loaded storage).
    Start {
        actor: A,
        id: Id,
        incarnation: u64,
        storage: Option<S>,
    },
    /// A message the transport delivered to the actor.
    Deliver {
        src: Id,
        sender_incarnation: u64,
        sequence: u64,
        /// The message as it arrived (the codec's bytes).
        payload: Vec<u8>,
    },
    Timeout {
        timer: T,
    },
}

/// One thing the host did for a step, in the order it did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    Save { digest: u64 },
    Send { to: Id, digest: u64 },
    SetTimer { digest: u64 },
    CancelTimer { digest: u64 },
    ChooseRandom,
}

impl Effect {
    /// The effect of one command; a send's digest is of `encoded`, the message's bytes
    /// ([`message_digest`]).
    pub fn of<A: Actor>(
        command: &Command<A::Msg, A::Timer, A::Random, A::Storage>,
        encoded: Option<&[u8]>,
    ) -> Effect
    where
        A::Timer: Hash,
        A::Storage: Hash,
    {
        match command {
            Command::Save(s) => Effect::Save { digest: digest(s) },
            Command::Send(to, _) => Effect::Send {
                to: *to,
                digest: message_digest(encoded),
            },
            Command::SetTimer(t, range) => Effect::SetTimer {
                digest: digest(&(t, range.start, range.end)),
            },
            Command::CancelTimer(t) => Effect::CancelTimer { digest: digest(t) },
            Command::ChooseRandom(..) => Effect::ChooseRandom,
        }
    }
}

/// A command of actor `A`, as its handlers emit them.
pub type StepCommand<A> =
    Command<<A as Actor>::Msg, <A as Actor>::Timer, <A as Actor>::Random, <A as Actor>::Storage>;

/// Each command's message, encoded (`None` for every other command, and for a message that does
/// not encode): the host sends these bytes, and digests them for the record.
pub fn encode_sends<A: Actor>(commands: &[StepCommand<A>]) -> Vec<Option<Vec<u8>>>
where
    A::Msg: Serialize,
{
    commands
        .iter()
        .map(|c| match c {
            Command::Send(_, m) => {
                let mut bytes = Vec::new();
                crate::codec::encode(m, &mut bytes).ok().map(|()| bytes)
            }
            _ => None,
        })
        .collect()
}

/// The effects of a step's commands, with their messages as [`encode_sends`] gives them.
pub fn effects<A: Actor>(commands: &[StepCommand<A>], encoded: &[Option<Vec<u8>>]) -> Vec<Effect>
where
    A::Timer: Hash,
    A::Storage: Hash,
{
    commands
        .iter()
        .zip(encoded)
        .map(|(c, e)| Effect::of::<A>(c, e.as_deref()))
        .collect()
}

/// One step of one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record<A, T, S> {
    /// Wall-clock time of the step, µs since the Unix epoch (for reading; validation orders
    /// steps by causality, and by time only among the steps causality leaves free).
    pub at_us: u64,
    pub event: Event<A, T, S>,
    pub effects: Vec<Effect>,
    /// [`digest`] of the actor's state after the step.
    pub state_hash: u64,
}

/// Appends records to a trace file.
pub struct TraceWriter {
    file: File,
    buf: Vec<u8>,
    /// Bytes written by this process.
    pub bytes: u64,
    pub records: u64,
}

impl TraceWriter {
    /// Opens `path` for appending, creating it (with its magic) if it is new.
    pub fn open(path: &Path) -> io::Result<TraceWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        if file.metadata()?.len() == 0 {
            file.write_all(MAGIC)?;
        } else {
            let mut head = [0u8; 8];
            use std::io::Read;
            let mut f = File::open(path)?;
            if f.read_exact(&mut head).is_err() || &head != MAGIC {
                return Err(io::Error::other(format!(
                    "{} exists and is not a trace file",
                    path.display()
                )));
            }
        }
        Ok(TraceWriter {
            file,
            buf: Vec::with_capacity(4096),
            bytes: 0,
            records: 0,
        })
    }

    /// Appends one record with one `write` call.
    pub fn append<R: Serialize>(&mut self, record: &R) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(record, buf).map_err(io::Error::other)?;
        let len = (buf.len() - FRAME_HEADER_BYTES) as u32;
        let crc = crc32fast::hash(&buf[FRAME_HEADER_BYTES..]);
        buf[0..4].copy_from_slice(&len.to_le_bytes());
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let result = self.file.write_all(&buf);
        self.bytes += buf.len() as u64;
        self.records += 1;
        self.buf = buf;
        result
    }
}

/// What a trace file holds.
#[derive(Debug)]
pub struct TraceFile<R> {
    pub records: Vec<R>,
    /// Set when the file ends in a torn frame (how many bytes were ignored).
    pub torn_tail_bytes: Option<usize>,
}

/// Reads every record of a trace file. A torn last frame is reported, not an error; anything
/// else that does not parse is, with its offset.
pub fn read<R: DeserializeOwned>(path: &Path) -> Result<TraceFile<R>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a trace file's bytes (see [`read`]).
pub fn parse<R: DeserializeOwned>(bytes: &[u8]) -> Result<TraceFile<R>, String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(
            "not a trace file of this version (no WMTRACE2 magic: traces are validated by the build that recorded them)".into(),
        );
    }
    let mut at = MAGIC.len();
    let mut records = Vec::new();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < FRAME_HEADER_BYTES {
            return Ok(TraceFile {
                records,
                torn_tail_bytes: Some(rest.len()),
            });
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX {
            return Err(format!("a frame at byte {at} claims {len} bytes"));
        }
        if rest.len() < FRAME_HEADER_BYTES + len {
            return Ok(TraceFile {
                records,
                torn_tail_bytes: Some(rest.len()),
            });
        }
        let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
        let last = FRAME_HEADER_BYTES + len == rest.len();
        if crc32fast::hash(payload) != crc {
            if last {
                return Ok(TraceFile {
                    records,
                    torn_tail_bytes: Some(rest.len()),
                });
            }
            return Err(format!("the frame at byte {at} fails its CRC"));
        }
        let record = postcard::from_bytes(payload)
            .map_err(|e| format!("the frame at byte {at} does not decode: {e}"))?;
        records.push(record);
        at += FRAME_HEADER_BYTES + len;
    }
    Ok(TraceFile {
        records,
        torn_tail_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Record<u8, u8, u8>;

    fn record(at_us: u64) -> R {
        Record {
            at_us,
            event: Event::Timeout { timer: 3 },
            effects: vec![Effect::Send {
                to: Id::from(2),
                digest: 9,
            }],
            state_hash: 7,
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.trace");
        let mut w = TraceWriter::open(&path).unwrap();
        w.append(&record(1)).unwrap();
        w.append(&record(2)).unwrap();
        drop(w);
        // A restart appends.
        let mut w = TraceWriter::open(&path).unwrap();
        w.append(&record(3)).unwrap();
        drop(w);
        let t: TraceFile<R> = read(&path).unwrap();
        assert_eq!(
            t.records.iter().map(|r| r.at_us).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(t.torn_tail_bytes, None);
        let bytes = std::fs::read(&path).unwrap();
        // Cut in the last frame: the first two records remain.
        let t: TraceFile<R> = parse(&bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(t.records.len(), 2);
        assert!(t.torn_tail_bytes.is_some());
        // A flipped bit before the last frame is corruption.
        let mut bad = bytes.clone();
        bad[MAGIC.len() + FRAME_HEADER_BYTES + 1] ^= 1;
        assert!(parse::<R>(&bad).unwrap_err().contains("CRC"));
        assert!(parse::<R>(b"nonsense").is_err());
        // A file that is something else is refused, not appended to.
        let other = dir.path().join("other");
        std::fs::write(&other, b"hello world").unwrap();
        assert!(TraceWriter::open(&other).is_err());
    }
}
