//! The wire format of a datagram: a version byte, a CRC-32 of the payload, and the payload in
//! postcard (a compact binary serde format).
//!
//! ```text
//! [version: u8 = 1][crc32: u32 little-endian][postcard payload]
//! ```
//!
//! A datagram is at most [`DATAGRAM_BYTES_MAX`]. The protocol bounds what it puts in one message
//! by bytes (`replica.fetch.max.bytes`, `fetch.max.bytes`, `batch.size`), and the runtime keeps
//! those limits well under this one, so an oversized message is a configuration error: it is
//! refused here rather than fragmented.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// The format version this build reads and writes.
pub const CODEC_VERSION: u8 = 1;
/// The largest datagram sent or accepted: 60 KiB, under UDP's 64 KiB limit with room to spare.
pub const DATAGRAM_BYTES_MAX: usize = 60 * 1024;
const HEADER_BYTES: usize = 5;

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// Shorter than the header.
    Truncated,
    /// Larger than [`DATAGRAM_BYTES_MAX`].
    Oversized,
    /// A version byte this build does not know.
    WrongVersion(u8),
    /// The payload does not match its checksum.
    BadChecksum,
    /// The payload does not decode as a message.
    Malformed,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated => f.write_str("truncated datagram"),
            CodecError::Oversized => write!(f, "datagram over {DATAGRAM_BYTES_MAX} bytes"),
            CodecError::WrongVersion(v) => write!(f, "codec version {v}, expected {CODEC_VERSION}"),
            CodecError::BadChecksum => f.write_str("checksum mismatch"),
            CodecError::Malformed => f.write_str("malformed payload"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Encodes `msg` into `buf` (cleared first).
pub fn encode<M: Serialize>(msg: &M, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    buf.clear();
    buf.extend_from_slice(&[CODEC_VERSION, 0, 0, 0, 0]);
    let mut out = std::mem::take(buf);
    out = postcard::to_extend(msg, out).map_err(|_| CodecError::Malformed)?;
    if out.len() > DATAGRAM_BYTES_MAX {
        *buf = out;
        return Err(CodecError::Oversized);
    }
    let crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[1..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    *buf = out;
    Ok(())
}

/// Decodes one datagram.
pub fn decode<M: DeserializeOwned>(datagram: &[u8]) -> Result<M, CodecError> {
    if datagram.len() > DATAGRAM_BYTES_MAX {
        return Err(CodecError::Oversized);
    }
    if datagram.len() < HEADER_BYTES {
        return Err(CodecError::Truncated);
    }
    if datagram[0] != CODEC_VERSION {
        return Err(CodecError::WrongVersion(datagram[0]));
    }
    let crc = u32::from_le_bytes(datagram[1..HEADER_BYTES].try_into().expect("4 bytes"));
    let payload = &datagram[HEADER_BYTES..];
    if crc32fast::hash(payload) != crc {
        return Err(CodecError::BadChecksum);
    }
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|_| CodecError::Malformed)?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use watermark_model::*;

    fn produce(records: usize, value_bytes: usize) -> Msg {
        let records: Arc<[Record]> = (0..records)
            .map(|i| Record {
                value: Value(vec![i as u8; value_bytes].into()),
                producer: None,
            })
            .collect();
        Msg::Produce(ProduceRequest {
            topic_partition: TopicPartition::new(&Topic::new("t"), 2),
            acks: Acks::All,
            leader_epoch: 3,
            records,
            batch: 7,
            attempt: 1,
        })
    }

    #[test]
    fn round_trips_a_message() {
        let msg = produce(3, 10);
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        assert_eq!(decode::<Msg>(&buf).unwrap(), msg);
    }

    #[test]
    fn refuses_bad_datagrams() {
        let mut buf = Vec::new();
        encode(&produce(3, 10), &mut buf).unwrap();
        assert_eq!(decode::<Msg>(&buf[..3]), Err(CodecError::Truncated));
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode::<Msg>(&flipped), Err(CodecError::BadChecksum));
        let mut versioned = buf.clone();
        versioned[0] = 9;
        assert_eq!(decode::<Msg>(&versioned), Err(CodecError::WrongVersion(9)));
        // A valid checksum over a payload cut short.
        let mut cut = buf[..buf.len() - 4].to_vec();
        let crc = crc32fast::hash(&cut[5..]);
        cut[1..5].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode::<Msg>(&cut), Err(CodecError::Malformed));
        assert_eq!(
            decode::<Msg>(&vec![1u8; DATAGRAM_BYTES_MAX + 1]),
            Err(CodecError::Oversized)
        );
    }

    #[test]
    fn refuses_to_encode_oversized_messages() {
        let mut buf = Vec::new();
        assert_eq!(
            encode(&produce(70, 1024), &mut buf),
            Err(CodecError::Oversized)
        );
    }

    #[test]
    fn record_size_accounting_bounds_the_encoding() {
        // The protocol counts RECORD_OVERHEAD_BYTES per record; the encoding must not exceed it,
        // so that a batch bounded by bytes fits in a datagram.
        let msg = produce(400, 100);
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        assert!(buf.len() <= 400 * (100 + RECORD_OVERHEAD_BYTES) + 64);
    }
}
