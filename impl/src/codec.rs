//! A message's bytes: the `Msg` in postcard (a compact binary serde format).
//!
//! These bytes are a [`transport`](crate::transport) payload. The transport's datagram header
//! carries the one version byte and a CRC-32 over the whole datagram, fragments a message over
//! several datagrams when it must, and bounds a message at
//! [`MESSAGE_BYTES_MAX`](crate::transport::MESSAGE_BYTES_MAX).

use crate::transport::MESSAGE_BYTES_MAX;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// Why a message was not encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// Larger than [`MESSAGE_BYTES_MAX`].
    Oversized,
    /// The bytes do not decode as a message, or have bytes left over.
    Malformed,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Oversized => write!(f, "message over {MESSAGE_BYTES_MAX} bytes"),
            CodecError::Malformed => f.write_str("malformed message"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Encodes `msg` into `buf` (cleared first).
pub fn encode<M: Serialize>(msg: &M, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    buf.clear();
    let out = postcard::to_extend(msg, std::mem::take(buf)).map_err(|_| CodecError::Malformed)?;
    *buf = out;
    if buf.len() > MESSAGE_BYTES_MAX {
        return Err(CodecError::Oversized);
    }
    Ok(())
}

/// Decodes one message; every byte must belong to it.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, CodecError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(CodecError::Oversized);
    }
    let (msg, rest) = postcard::take_from_bytes(bytes).map_err(|_| CodecError::Malformed)?;
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
    fn refuses_bytes_that_are_not_exactly_one_message() {
        let mut buf = Vec::new();
        encode(&produce(3, 10), &mut buf).unwrap();
        assert_eq!(
            decode::<Msg>(&buf[..buf.len() - 4]),
            Err(CodecError::Malformed)
        );
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(decode::<Msg>(&longer), Err(CodecError::Malformed));
        assert_eq!(decode::<Msg>(&[0xFF; 16]), Err(CodecError::Malformed));
    }

    #[test]
    fn refuses_to_encode_oversized_messages() {
        let mut buf = Vec::new();
        assert_eq!(
            encode(&produce(5, 1024 * 1024), &mut buf),
            Err(CodecError::Oversized)
        );
    }

    #[test]
    fn record_size_accounting_bounds_the_encoding() {
        // The protocol counts RECORD_OVERHEAD_BYTES per record; the encoding must not exceed it,
        // so that a batch bounded by bytes fits in the datagram the runtime budgets for it.
        let msg = produce(400, 100);
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        assert!(buf.len() <= 400 * (100 + RECORD_OVERHEAD_BYTES) + 64);
    }

    fn partition_state(
        topic: &str,
        partition: u32,
        replicas: usize,
        epochs: u32,
    ) -> PartitionState {
        let ids: Vec<BrokerId> = (0..replicas as u32).map(|i| u32::MAX - i).collect();
        PartitionState {
            topic_partition: TopicPartition::new(&Topic::new(topic), partition),
            leader: Some(u32::MAX),
            leader_epoch: epochs,
            partition_epoch: epochs,
            isr: ids.as_slice().into(),
            elr: Default::default(),
            replicas: ids.as_slice().into(),
            min_insync_replicas: epochs,
            unclean_leader_election: epochs % 2 == 1,
        }
    }

    #[test]
    fn partition_state_size_accounting_bounds_the_encoding() {
        // The controller refuses topics by `PartitionState::size_bytes_max` (R46): the encoding
        // must never take more, at the widest values, or a table it accepted could outgrow a
        // message.
        let long = "x".repeat(TOPIC_NAME_BYTES_MAX);
        for (topic, replicas, epochs) in [
            ("t", 1, 0),
            ("t", 3, u32::MAX),
            (long.as_str(), 7, u32::MAX),
        ] {
            let ps = partition_state(topic, u32::MAX, replicas, epochs);
            let mut buf = Vec::new();
            encode(&ps, &mut buf).unwrap();
            assert!(
                buf.len() as u64 <= ps.size_bytes_max(),
                "{} bytes encoded, {} counted",
                buf.len(),
                ps.size_bytes_max()
            );
        }
    }

    #[test]
    fn a_partition_table_at_the_metadata_limit_fits_in_one_message() {
        // The largest table the controller accepts (METADATA_BYTES_MAX), sent whole to a
        // restarted broker with the message's other fields, still encodes under the transport's
        // limit.
        let one = partition_state(&"x".repeat(TOPIC_NAME_BYTES_MAX), 0, 3, u32::MAX);
        let count = crate::cluster::METADATA_BYTES_MAX / one.size_bytes_max();
        let partitions: Vec<PartitionState> = (0..count as u32)
            .map(|p| partition_state(&"x".repeat(TOPIC_NAME_BYTES_MAX), p, 3, u32::MAX))
            .collect();
        let msg = Msg::BrokerHeartbeatResponse {
            controller_epoch: u32::MAX,
            broker_epoch: u32::MAX,
            is_fenced: false,
            base_metadata_offset: None,
            metadata_offset: u64::MAX,
            partitions: partitions.into(),
        };
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        assert!(buf.len() <= MESSAGE_BYTES_MAX);
    }
}
