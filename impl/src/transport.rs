//! Channels with the model's semantics over datagrams: per (sender, receiver) FIFO, lossy, never
//! duplicating. Pure and byte-level: no sockets, no clock, no randomness, so that a deterministic
//! simulator can run it as the host does.
//!
//! The model checker proves the protocol over stateright's ordered lossy network. Raw UDP also
//! duplicates and reorders, and a datagram holds at most 64 KiB. This module closes that gap:
//!
//! - **Sequencing.** Every message gets a sequence number, increasing over the whole process
//!   (so over each channel too). A receiver delivers a message only if its sequence number is
//!   above the last one it delivered from that sender: duplicates and older messages that
//!   arrive late are dropped, which is exactly a lossy FIFO channel.
//! - **Incarnations.** Every process has an incarnation, nonzero and increasing across restarts
//!   at one address. A datagram from an older incarnation of its sender is dropped; one from a
//!   newer incarnation starts the channel afresh. So the channel stays FIFO and duplicate-free
//!   across a *sender's* restart.
//! - **Sessions (receiver restarts).** A receiver's table of channels lives in memory. Each
//!   datagram carries the *session token* the receiver handed its sender; a datagram stamped
//!   with anything else (0 on first contact, a token of an earlier incarnation) is dropped and
//!   answered with a [`Reset`](#datagram-format) carrying the current token. The sender re-sends,
//!   stamped and with fresh sequence numbers, exactly the messages it had sent stamped 0 (they
//!   were certainly dropped); anything it stamped with a stale token is lost. Every datagram
//!   also carries its sender's own token for the way back (`reply_session`), so an answer needs
//!   no handshake of its own, and a process that hears from a restarted peer learns the new
//!   incarnation's token before it sends it anything. First contact costs one round trip. A token is the receiver's incarnation plus its *generation*, the
//!   number of channels it has evicted from its bounded table: a sender whose channel was
//!   evicted gets a token it never had, so a late datagram from before the eviction cannot be
//!   delivered a second time.
//! - **Fragmentation.** A message larger than one datagram travels as fragments with one
//!   sequence number, reassembled per sender and delivered when complete. Delivering sequence
//!   `n` discards partial messages below `n` (FIFO: they are lost). Everything is bounded.
//! - **Authentication.** With a cluster key, every datagram carries an HMAC-SHA256 tag over a
//!   domain string, the source and destination socket addresses and the datagram, so a datagram
//!   replayed from or to another address fails. A keyed receiver drops a bad tag, and drops an
//!   untagged datagram from a cluster node's address; other untagged datagrams are delivered
//!   with `authenticated = false`, for the admission policy to judge. A receiver without the key
//!   (a client) strips tags unverified.
//!
//! # Datagram format
//!
//! ```text
//! [version u8 = 2][flags u8][crc32 u32]
//! [sender_incarnation u64][receiver_session u64][reply_session u64][sequence u64]
//! [fragment_index u16][fragment_count u16][payload][tag: 32 bytes, if flags has MAC]
//! ```
//!
//! Integers are little-endian. Flags: bit 0 `MAC` (a tag follows the payload), bit 1 `RESET`;
//! other bits are refused. The CRC-32 covers every byte after it, tag included, so corruption
//! is told apart from forgery. The tag covers the domain string `watermark transport v2`, the
//! source and destination addresses (4 address bytes, then the port, little-endian) and the
//! datagram up to the tag with its CRC field read as zero. `receiver_session` is the token the
//! receiver gave (0 on first contact); `reply_session` is the token the sender gives the
//! receiver, to stamp on what it sends back. A Reset has sequence 0, fragment 0 of 1, no
//! payload, `receiver_session` set to the incarnation of the sender it answers (so that a Reset
//! meant for an earlier incarnation is ignored) and `reply_session` the token to stamp.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddrV4;
use std::num::NonZeroU64;

/// The format version this build reads and writes.
pub const VERSION: u8 = 2;
/// The largest datagram sent or accepted: 60 KiB, under UDP's 64 KiB limit with room to spare.
pub const DATAGRAM_BYTES_MAX: usize = 60 * 1024;
/// The largest message sent or reassembled. Larger ones are refused on send.
pub const MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The fixed header before the payload.
pub const HEADER_BYTES: usize = 42;
/// An HMAC-SHA256 tag.
pub const TAG_BYTES: usize = 32;
/// A cluster key.
pub const KEY_BYTES: usize = 32;
/// The payload of one fragment when the datagram carries a tag (the smaller case).
pub const FRAGMENT_BYTES_MIN: usize = DATAGRAM_BYTES_MAX - HEADER_BYTES - TAG_BYTES;
/// The most fragments a message can have; a datagram claiming more is malformed.
pub const FRAGMENTS_MAX: usize = MESSAGE_BYTES_MAX.div_ceil(FRAGMENT_BYTES_MIN);
/// The most channels a process may evict in one incarnation. Session tokens are
/// `incarnation + generation`, so the next incarnation at the same address must be larger than
/// this one by more than this (nodes space theirs by 2^32).
pub const GENERATIONS_MAX: u64 = u32::MAX as u64;

const FLAG_MAC: u8 = 1;
const FLAG_RESET: u8 = 2;
const FLAGS_KNOWN: u8 = FLAG_MAC | FLAG_RESET;
const DOMAIN: &[u8] = b"watermark transport v2";

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte cluster key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_BYTES]);

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Key {
        Key(bytes)
    }

    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<Key, String> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| format!("cannot generate a cluster key: {e}"))?;
        Ok(Key(bytes))
    }

    /// 64 hexadecimal digits.
    pub fn from_hex(s: &str) -> Result<Key, String> {
        let mut bytes = [0u8; KEY_BYTES];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|e| format!("a cluster key is {} hex digits: {e}", KEY_BYTES * 2))?;
        Ok(Key(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        Key::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Bounds on what a transport keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Peers (channels in either direction) kept; beyond, the least recently used peer that is
    /// not a cluster node is evicted.
    pub peers_max: usize,
    /// Partially reassembled messages kept per peer; beyond, the oldest is discarded.
    pub partials_per_peer_max: usize,
    /// Bytes held in partial messages over all peers; beyond, the oldest partial is discarded.
    pub reassembly_bytes_max: usize,
    /// Messages kept per peer for re-sending after first contact; beyond, the oldest is lost.
    pub first_contact_messages_max: usize,
    /// Bytes kept for re-sending after first contact over all peers; beyond, a message is
    /// sent but not kept (so it is lost if the peer has not seen this process yet).
    pub first_contact_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            peers_max: 4096,
            partials_per_peer_max: 4,
            reassembly_bytes_max: 64 * 1024 * 1024,
            // A follower's first fetches go out one per partition, thousands at once.
            first_contact_messages_max: 4096,
            first_contact_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// What a transport needs to start.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Nonzero, larger than any earlier incarnation at this address (by more than
    /// [`GENERATIONS_MAX`] if that one evicted peers).
    pub incarnation: NonZeroU64,
    pub key: Option<Key>,
    /// The cluster's nodes: never evicted, and (with a key) never accepted untagged.
    pub nodes: Vec<SocketAddrV4>,
    pub limits: Limits,
}

impl TransportConfig {
    /// A client's: no key, no nodes to protect.
    pub fn client(incarnation: NonZeroU64) -> TransportConfig {
        TransportConfig {
            incarnation,
            key: None,
            nodes: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// Counters of what a transport did and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handed to [`Transport::send`] and sent (re-sends not included).
    pub messages_sent: u64,
    /// Messages delivered to the caller.
    pub messages_delivered: u64,
    /// Datagrams produced, fragments, Resets and re-sends included.
    pub datagrams_sent: u64,
    /// Resets sent in answer to misaddressed datagrams.
    pub resets_sent: u64,
    /// Session tokens learned from peers, from a Reset or from the `reply_session` of a
    /// datagram.
    pub sessions_learned: u64,
    /// Resets ignored: for an earlier incarnation of this process, from a peer it never sent
    /// to, or repeating the token already known.
    pub resets_ignored: u64,
    /// Messages sent again, stamped, after a first contact's Reset.
    pub messages_resent: u64,
    /// Peers heard from in a newer incarnation than the one whose token this process knew.
    pub sessions_restarted: u64,
    /// Peers evicted from the bounded table.
    pub peers_evicted: u64,
    /// Datagrams that are not version-2 datagrams: truncated, oversized, bad CRC, unknown
    /// version or flags, impossible fields; or reassembled messages over the limit.
    pub dropped_malformed: u64,
    /// Datagrams whose tag does not verify, and untagged datagrams (Resets included) from a
    /// cluster node's address at a keyed receiver.
    pub dropped_unauthenticated: u64,
    /// Datagrams from an older incarnation of their sender, or with a sequence number below
    /// the last one delivered from it (a late, reordered datagram).
    pub dropped_stale: u64,
    /// Datagrams with the sequence number last delivered, or a fragment already held.
    pub dropped_duplicate: u64,
    /// Datagrams not stamped with the session token this process gave their sender: first
    /// contact, or stamped for an earlier incarnation of this process. Each is answered with a
    /// Reset.
    pub dropped_misaddressed: u64,
    /// Messages refused on send for exceeding [`MESSAGE_BYTES_MAX`].
    pub dropped_oversized: u64,
    /// Partial messages discarded: a later message was delivered first, or a bound was reached
    /// (partials per peer, reassembly bytes, peer eviction), or the sender restarted.
    pub dropped_incomplete: u64,
    /// Messages sent on first contact that the bounded re-send queue could not keep.
    pub dropped_first_contact_full: u64,
    /// Datagrams from, or messages to, a new peer while the table was full of peers that may
    /// not be evicted.
    pub dropped_peers_full: u64,
}

impl TransportStats {
    /// Every counter with its name, in a fixed order.
    pub fn counters(&self) -> [(&'static str, u64); 18] {
        [
            ("messages_sent", self.messages_sent),
            ("messages_delivered", self.messages_delivered),
            ("datagrams_sent", self.datagrams_sent),
            ("resets_sent", self.resets_sent),
            ("sessions_learned", self.sessions_learned),
            ("resets_ignored", self.resets_ignored),
            ("messages_resent", self.messages_resent),
            ("sessions_restarted", self.sessions_restarted),
            ("peers_evicted", self.peers_evicted),
            ("dropped_malformed", self.dropped_malformed),
            ("dropped_unauthenticated", self.dropped_unauthenticated),
            ("dropped_stale", self.dropped_stale),
            ("dropped_duplicate", self.dropped_duplicate),
            ("dropped_misaddressed", self.dropped_misaddressed),
            ("dropped_oversized", self.dropped_oversized),
            ("dropped_incomplete", self.dropped_incomplete),
            (
                "dropped_first_contact_full",
                self.dropped_first_contact_full,
            ),
            ("dropped_peers_full", self.dropped_peers_full),
        ]
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub to: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// Why a received datagram was dropped; each has its counter in [`TransportStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    Unauthenticated,
    Stale,
    Duplicate,
    Misaddressed,
    PeersFull,
}

/// What a received datagram came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A whole message. `authenticated`: every datagram of it carried a tag this process
    /// verified with its key.
    Deliver {
        payload: Cow<'a, [u8]>,
        authenticated: bool,
        /// The incarnation of the sender that sent it, and the message's sequence number in
        /// that incarnation: what a trace records to match the delivery with its send.
        sender_incarnation: u64,
        sequence: u64,
    },
    Dropped(DropReason),
    /// Nothing to deliver: a fragment held for reassembly, or a Reset handled.
    Nothing,
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Over [`MESSAGE_BYTES_MAX`].
    Oversized { bytes: usize },
    /// A new peer, and the table is full of peers that may not be evicted.
    PeersFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Oversized { bytes } => {
                write!(f, "a message of {bytes} bytes is over {MESSAGE_BYTES_MAX}")
            }
            SendError::PeersFull => f.write_str("the peer table is full"),
        }
    }
}

impl std::error::Error for SendError {}

/// The fixed header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub sender_incarnation: u64,
    pub receiver_session: u64,
    pub reply_session: u64,
    pub sequence: u64,
    pub fragment_index: u16,
    pub fragment_count: u16,
}

impl Header {
    fn is_reset(&self) -> bool {
        self.flags & FLAG_RESET != 0
    }
}

/// A datagram taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub header: Header,
    pub payload: &'a [u8],
    pub tag: Option<&'a [u8]>,
}

/// Takes a datagram apart. The CRC and every field's range are checked; the tag is not.
pub fn parse(datagram: &[u8]) -> Result<Parsed<'_>, DropReason> {
    use DropReason::Malformed;
    if datagram.len() < HEADER_BYTES || datagram.len() > DATAGRAM_BYTES_MAX {
        return Err(Malformed);
    }
    if datagram[0] != VERSION {
        return Err(Malformed);
    }
    if crc32fast::hash(&datagram[6..]) != read_u32(datagram, 2) {
        return Err(Malformed);
    }
    let header = Header {
        flags: datagram[1],
        sender_incarnation: read_u64(datagram, 6),
        receiver_session: read_u64(datagram, 14),
        reply_session: read_u64(datagram, 22),
        sequence: read_u64(datagram, 30),
        fragment_index: read_u16(datagram, 38),
        fragment_count: read_u16(datagram, 40),
    };
    if header.flags & !FLAGS_KNOWN != 0 {
        return Err(Malformed);
    }
    let (payload, tag) = if header.flags & FLAG_MAC != 0 {
        if datagram.len() < HEADER_BYTES + TAG_BYTES {
            return Err(Malformed);
        }
        let (rest, tag) = datagram.split_at(datagram.len() - TAG_BYTES);
        (&rest[HEADER_BYTES..], Some(tag))
    } else {
        (&datagram[HEADER_BYTES..], None)
    };
    let count = usize::from(header.fragment_count);
    if header.sender_incarnation == 0
        || count == 0
        || count > FRAGMENTS_MAX
        || header.fragment_index >= header.fragment_count
    {
        return Err(Malformed);
    }
    if header.is_reset() {
        if header.sequence != 0 || count != 1 || !payload.is_empty() || header.reply_session == 0 {
            return Err(Malformed);
        }
    } else if header.sequence == 0 {
        return Err(Malformed);
    }
    Ok(Parsed {
        header,
        payload,
        tag,
    })
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn address_bytes(a: SocketAddrV4) -> [u8; 6] {
    let ip = a.ip().octets();
    let port = a.port().to_le_bytes();
    [ip[0], ip[1], ip[2], ip[3], port[0], port[1]]
}

/// The tag of `datagram` (without its tag), with the CRC field read as zero.
fn tag(mac: &HmacSha256, from: SocketAddrV4, to: SocketAddrV4, datagram: &[u8]) -> HmacSha256 {
    let mut mac = mac.clone();
    mac.update(DOMAIN);
    mac.update(&address_bytes(from));
    mac.update(&address_bytes(to));
    mac.update(&datagram[..2]);
    mac.update(&[0; 4]);
    mac.update(&datagram[6..]);
    mac
}

/// Writes one datagram: header, payload, tag if `mac`, then the CRC.
fn write_datagram(
    header: &Header,
    payload: &[u8],
    mac: Option<(&HmacSha256, SocketAddrV4, SocketAddrV4)>,
) -> Vec<u8> {
    let mut flags = header.flags;
    if mac.is_some() {
        flags |= FLAG_MAC;
    }
    let tag_bytes = if mac.is_some() { TAG_BYTES } else { 0 };
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len() + tag_bytes);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&header.sender_incarnation.to_le_bytes());
    out.extend_from_slice(&header.receiver_session.to_le_bytes());
    out.extend_from_slice(&header.reply_session.to_le_bytes());
    out.extend_from_slice(&header.sequence.to_le_bytes());
    out.extend_from_slice(&header.fragment_index.to_le_bytes());
    out.extend_from_slice(&header.fragment_count.to_le_bytes());
    out.extend_from_slice(payload);
    if let Some((mac, from, to)) = mac {
        let t = tag(mac, from, to, &out).finalize().into_bytes();
        out.extend_from_slice(&t);
    }
    let crc = crc32fast::hash(&out[6..]);
    out[2..6].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Writes one datagram exactly as given (the MAC flag follows `auth`: a key, the source and
/// the destination), for tests and tools that forge or replay datagrams.
pub fn encode_datagram(
    header: &Header,
    payload: &[u8],
    auth: Option<(&Key, SocketAddrV4, SocketAddrV4)>,
) -> Vec<u8> {
    let mut header = *header;
    header.flags &= !FLAG_MAC;
    match auth {
        Some((key, from, to)) => {
            let mac = <HmacSha256 as Mac>::new_from_slice(&key.0)
                .expect("HMAC takes a key of any length");
            write_datagram(&header, payload, Some((&mac, from, to)))
        }
        None => write_datagram(&header, payload, None),
    }
}

/// A message being reassembled.
struct Partial {
    sequence: u64,
    fragments: Vec<Option<Vec<u8>>>,
    held: usize,
    bytes: usize,
    authenticated: bool,
    /// When it was started, over the whole process: the oldest is discarded first.
    started: u64,
}

/// The receiving end of one peer's channel to this process.
struct Inbound {
    /// The session token this process gave the peer; datagrams must carry it.
    session: u64,
    sender_incarnation: u64,
    /// The last sequence number delivered (0: none).
    delivered: u64,
    partials: Vec<Partial>,
}

#[derive(Default)]
struct Peer {
    last_used: u64,
    /// The session token the peer gave this process (0: not known yet).
    session: u64,
    /// The incarnation of the peer that gave `session`.
    session_incarnation: u64,
    /// Messages sent stamped 0, for re-sending once the peer's token is known.
    first_contact: VecDeque<Vec<u8>>,
    inbound: Option<Inbound>,
}

/// One process's end of every channel. See the module documentation.
pub struct Transport {
    incarnation: u64,
    mac: Option<HmacSha256>,
    limits: Limits,
    nodes: HashSet<SocketAddrV4>,
    peers: HashMap<SocketAddrV4, Peer>,
    sequence_next: u64,
    /// Channels evicted so far in this incarnation; new sessions get `incarnation + generation`.
    generation: u64,
    clock: u64,
    reassembly_bytes: usize,
    first_contact_bytes: usize,
    pub stats: TransportStats,
}

impl Transport {
    pub fn new(config: TransportConfig) -> Transport {
        let mac = config.key.as_ref().map(|k| {
            <HmacSha256 as Mac>::new_from_slice(&k.0).expect("HMAC takes a key of any length")
        });
        Transport {
            incarnation: config.incarnation.get(),
            mac,
            limits: config.limits,
            nodes: config.nodes.into_iter().collect(),
            peers: HashMap::new(),
            sequence_next: 1,
            generation: 0,
            clock: 0,
            reassembly_bytes: 0,
            first_contact_bytes: 0,
            stats: TransportStats::default(),
        }
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn is_keyed(&self) -> bool {
        self.mac.is_some()
    }

    /// How many peers the table holds.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Bytes held in partial messages.
    pub fn reassembly_bytes(&self) -> usize {
        self.reassembly_bytes
    }

    /// The payload one datagram carries.
    pub fn fragment_bytes(&self) -> usize {
        DATAGRAM_BYTES_MAX - HEADER_BYTES - if self.mac.is_some() { TAG_BYTES } else { 0 }
    }

    /// Sends `payload` from `from` (this process's address, for the tag) to `to`: appends its
    /// datagrams to `out`. A message to a peer whose session token is not known yet is stamped
    /// 0 and kept for re-sending when the peer's Reset arrives.
    pub fn send(
        &mut self,
        from: SocketAddrV4,
        to: SocketAddrV4,
        payload: &[u8],
        out: &mut Vec<Datagram>,
    ) -> Result<(), SendError> {
        if payload.len() > MESSAGE_BYTES_MAX {
            self.stats.dropped_oversized += 1;
            return Err(SendError::Oversized {
                bytes: payload.len(),
            });
        }
        if !self.make_room_for(to) {
            self.stats.dropped_peers_full += 1;
            return Err(SendError::PeersFull);
        }
        let now = self.tick();
        let limits = &self.limits;
        let peer = self.peers.entry(to).or_default();
        peer.last_used = now;
        let session = peer.session;
        if session == 0 {
            // First contact: kept (bounded) for re-sending once the peer's Reset arrives.
            if peer.first_contact.len() >= limits.first_contact_messages_max {
                if let Some(old) = peer.first_contact.pop_front() {
                    self.first_contact_bytes -= old.len();
                    self.stats.dropped_first_contact_full += 1;
                }
            }
            if self.first_contact_bytes + payload.len() <= limits.first_contact_bytes_max {
                self.first_contact_bytes += payload.len();
                peer.first_contact.push_back(payload.to_vec());
            } else {
                self.stats.dropped_first_contact_full += 1;
            }
        }
        self.emit(from, to, session, payload, out);
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Handles one datagram that `local` (this process's address) received from `from`.
    /// Datagrams to send in answer (a Reset, re-sent messages) are appended to `out`.
    pub fn receive<'a>(
        &mut self,
        local: SocketAddrV4,
        from: SocketAddrV4,
        datagram: &'a [u8],
        out: &mut Vec<Datagram>,
    ) -> Received<'a> {
        let Parsed {
            header,
            payload,
            tag: tag_bytes,
        } = match parse(datagram) {
            Ok(p) => p,
            Err(reason) => return self.drop(reason),
        };
        let authenticated = match (tag_bytes, &self.mac) {
            (Some(t), Some(mac)) => {
                let signed = &datagram[..datagram.len() - TAG_BYTES];
                if tag(mac, from, local, signed).verify_slice(t).is_err() {
                    return self.drop(DropReason::Unauthenticated);
                }
                true
            }
            // A client cannot check the cluster's tags: it trusts the network, like Kafka's
            // PLAINTEXT listener.
            (Some(_), None) => false,
            // Every node of a keyed cluster tags what it sends: an untagged datagram from a
            // node's address is forged. Dropping it here keeps it from touching the channel
            // (a forged sequence number could otherwise block the real node's datagrams).
            (None, Some(_)) if self.nodes.contains(&from) => {
                return self.drop(DropReason::Unauthenticated)
            }
            (None, _) => false,
        };
        if header.is_reset() {
            if header.receiver_session != self.incarnation
                || !self.learn_session(local, from, &header, out)
            {
                // Meant for an earlier incarnation of this process, from a peer this process
                // never sent to, or repeating what it knows.
                self.stats.resets_ignored += 1;
            }
            return Received::Nothing;
        }
        let received = self.on_data(local, from, &header, payload, authenticated, out);
        // Before the caller answers what was delivered: the answer goes out stamped.
        self.learn_session(local, from, &header, out);
        received
    }

    /// Learns the session token `from` gave this process: a Reset's, or the `reply_session`
    /// any datagram carries. Returns whether it was taken. If this process knew no token yet,
    /// the messages it sent stamped 0 (certainly dropped) are sent again, stamped.
    fn learn_session(
        &mut self,
        local: SocketAddrV4,
        from: SocketAddrV4,
        header: &Header,
        out: &mut Vec<Datagram>,
    ) -> bool {
        let now = self.tick();
        let Some(peer) = self.peers.get_mut(&from) else {
            return false;
        };
        let incarnation = header.sender_incarnation;
        if peer.session != 0 && incarnation > peer.session_incarnation {
            // A newer incarnation of the peer cannot hold its predecessor's token: stamp 0
            // again (kept, re-sent once the token is known) rather than have what is sent now
            // dropped there. The model allows the loss, but the protocol does not retransmit
            // everything: a LeaderAndIsr to a re-registered broker, for one.
            peer.session = 0;
            self.stats.sessions_restarted += 1;
        }
        let token = header.reply_session;
        // Tokens a peer gives only grow, so a smaller one is from a delayed datagram; a Reset
        // is the peer's word on the current one, whatever it is.
        let news = if header.is_reset() {
            token != peer.session
        } else {
            token > peer.session
        };
        if token == 0 || incarnation < peer.session_incarnation || !news {
            return false;
        }
        peer.last_used = now;
        let first_contact = peer.session == 0;
        peer.session = token;
        peer.session_incarnation = incarnation;
        let queued = std::mem::take(&mut peer.first_contact);
        self.stats.sessions_learned += 1;
        for payload in queued {
            self.first_contact_bytes -= payload.len();
            if first_contact {
                // Sent stamped 0, so certainly dropped: sending again cannot duplicate.
                self.emit(local, from, token, &payload, out);
                self.stats.messages_resent += 1;
            }
        }
        true
    }

    /// The token this process gives `peer` (made now if it has none yet), for the peer to
    /// stamp on what it sends here.
    fn inbound_session(&mut self, peer: SocketAddrV4) -> u64 {
        let session = self.incarnation.saturating_add(self.generation);
        let entry = self.peers.entry(peer).or_default();
        entry
            .inbound
            .get_or_insert_with(|| Inbound {
                session,
                sender_incarnation: 0,
                delivered: 0,
                partials: Vec::new(),
            })
            .session
    }

    fn drop<'a>(&mut self, reason: DropReason) -> Received<'a> {
        let s = &mut self.stats;
        match reason {
            DropReason::Malformed => s.dropped_malformed += 1,
            DropReason::Unauthenticated => s.dropped_unauthenticated += 1,
            DropReason::Stale => s.dropped_stale += 1,
            DropReason::Duplicate => s.dropped_duplicate += 1,
            DropReason::Misaddressed => s.dropped_misaddressed += 1,
            DropReason::PeersFull => s.dropped_peers_full += 1,
        }
        Received::Dropped(reason)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Writes one message's datagrams with a fresh sequence number.
    fn emit(
        &mut self,
        from: SocketAddrV4,
        to: SocketAddrV4,
        session: u64,
        payload: &[u8],
        out: &mut Vec<Datagram>,
    ) {
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        let reply_session = self.inbound_session(to);
        let chunk = self.fragment_bytes();
        let count = payload.len().div_ceil(chunk).max(1);
        debug_assert!(count <= FRAGMENTS_MAX, "send refuses oversized messages");
        let mac = self.mac.as_ref().map(|m| (m, from, to));
        for index in 0..count {
            let start = (index * chunk).min(payload.len());
            let piece = &payload[start..(start + chunk).min(payload.len())];
            let header = Header {
                flags: 0,
                sender_incarnation: self.incarnation,
                receiver_session: session,
                reply_session,
                sequence,
                fragment_index: index as u16,
                fragment_count: count as u16,
            };
            out.push(Datagram {
                to,
                bytes: write_datagram(&header, piece, mac),
            });
            self.stats.datagrams_sent += 1;
        }
    }

    fn on_data<'a>(
        &mut self,
        local: SocketAddrV4,
        from: SocketAddrV4,
        header: &Header,
        payload: &'a [u8],
        authenticated: bool,
        out: &mut Vec<Datagram>,
    ) -> Received<'a> {
        if !self.make_room_for(from) {
            return self.drop(DropReason::PeersFull);
        }
        let now = self.tick();
        let session_next = self.incarnation.saturating_add(self.generation);
        let peer = self.peers.entry(from).or_default();
        peer.last_used = now;
        let inbound = peer.inbound.get_or_insert_with(|| Inbound {
            session: session_next,
            sender_incarnation: header.sender_incarnation,
            delivered: 0,
            partials: Vec::new(),
        });
        if header.receiver_session != inbound.session {
            if header.sender_incarnation < inbound.sender_incarnation {
                // A dead incarnation of the sender: no Reset, it would be ignored.
                return self.drop(DropReason::Stale);
            }
            // First contact, or stamped for an earlier incarnation of this process (or before
            // this peer was evicted): the sender must learn the current token.
            let reset = Header {
                flags: FLAG_RESET,
                sender_incarnation: self.incarnation,
                receiver_session: header.sender_incarnation,
                reply_session: inbound.session,
                sequence: 0,
                fragment_index: 0,
                fragment_count: 1,
            };
            let mac = self.mac.as_ref().map(|m| (m, local, from));
            out.push(Datagram {
                to: from,
                bytes: write_datagram(&reset, &[], mac),
            });
            self.stats.resets_sent += 1;
            self.stats.datagrams_sent += 1;
            return self.drop(DropReason::Misaddressed);
        }
        if header.sender_incarnation < inbound.sender_incarnation {
            return self.drop(DropReason::Stale);
        }
        if header.sender_incarnation > inbound.sender_incarnation {
            // The sender restarted: its sequence numbers start again.
            inbound.sender_incarnation = header.sender_incarnation;
            inbound.delivered = 0;
            let discarded = std::mem::take(&mut inbound.partials);
            self.discard(discarded);
        }
        let Some(inbound) = self.peers.get_mut(&from).and_then(|p| p.inbound.as_mut()) else {
            return Received::Nothing;
        };
        if header.sequence < inbound.delivered {
            return self.drop(DropReason::Stale);
        }
        if header.sequence == inbound.delivered {
            return self.drop(DropReason::Duplicate);
        }
        if header.fragment_count == 1 {
            inbound.delivered = header.sequence;
            let (older, newer): (Vec<Partial>, Vec<Partial>) =
                std::mem::take(&mut inbound.partials)
                    .into_iter()
                    .partition(|p| p.sequence < header.sequence);
            inbound.partials = newer;
            self.discard(older);
            self.stats.messages_delivered += 1;
            return Received::Deliver {
                payload: Cow::Borrowed(payload),
                authenticated,
                sender_incarnation: header.sender_incarnation,
                sequence: header.sequence,
            };
        }
        self.on_fragment(from, header, payload, authenticated)
    }

    /// Holds one fragment; delivers its message if it is complete.
    fn on_fragment<'a>(
        &mut self,
        from: SocketAddrV4,
        header: &Header,
        payload: &[u8],
        authenticated: bool,
    ) -> Received<'a> {
        let count = usize::from(header.fragment_count);
        let index = usize::from(header.fragment_index);
        let held = |t: &Transport| {
            t.peers
                .get(&from)
                .and_then(|p| p.inbound.as_ref())
                .and_then(|i| i.partials.iter().find(|p| p.sequence == header.sequence))
                .map(|p| {
                    let held = p.fragments.get(index).is_some_and(|f| f.is_some());
                    (p.fragments.len(), held)
                })
        };
        match held(self) {
            Some((n, _)) if n != count => return self.drop(DropReason::Malformed),
            Some((_, true)) => return self.drop(DropReason::Duplicate),
            _ => {}
        }
        if payload.len() > self.limits.reassembly_bytes_max {
            return self.drop(DropReason::Malformed);
        }
        // Make room within the byte budget, oldest partial first (perhaps this one).
        while self.reassembly_bytes + payload.len() > self.limits.reassembly_bytes_max {
            if !self.discard_oldest_partial() {
                break;
            }
        }
        let started = self.tick();
        let partials_max = self.limits.partials_per_peer_max.max(1);
        let Some(inbound) = self.peers.get_mut(&from).and_then(|p| p.inbound.as_mut()) else {
            return Received::Nothing;
        };
        let position = match inbound
            .partials
            .iter()
            .position(|p| p.sequence == header.sequence)
        {
            Some(i) => i,
            None => {
                let mut discarded = Vec::new();
                if inbound.partials.len() >= partials_max {
                    let oldest = (0..inbound.partials.len())
                        .min_by_key(|i| inbound.partials[*i].sequence)
                        .filter(|i| inbound.partials[*i].sequence < header.sequence);
                    let Some(oldest) = oldest else {
                        // This message is older than every one held: it is the one to lose.
                        self.stats.dropped_incomplete += 1;
                        return Received::Nothing;
                    };
                    discarded.push(inbound.partials.swap_remove(oldest));
                }
                inbound.partials.push(Partial {
                    sequence: header.sequence,
                    fragments: vec![None; count],
                    held: 0,
                    bytes: 0,
                    authenticated: true,
                    started,
                });
                let i = inbound.partials.len() - 1;
                self.discard(discarded);
                i
            }
        };
        let Some(inbound) = self.peers.get_mut(&from).and_then(|p| p.inbound.as_mut()) else {
            return Received::Nothing;
        };
        let partial = &mut inbound.partials[position];
        partial.fragments[index] = Some(payload.to_vec());
        partial.held += 1;
        partial.bytes += payload.len();
        partial.authenticated &= authenticated;
        self.reassembly_bytes += payload.len();
        if partial.bytes > MESSAGE_BYTES_MAX {
            let p = inbound.partials.swap_remove(position);
            self.reassembly_bytes -= p.bytes;
            return self.drop(DropReason::Malformed);
        }
        if partial.held < count {
            return Received::Nothing;
        }
        let complete = inbound.partials.swap_remove(position);
        inbound.delivered = header.sequence;
        let (older, newer): (Vec<Partial>, Vec<Partial>) = std::mem::take(&mut inbound.partials)
            .into_iter()
            .partition(|p| p.sequence < header.sequence);
        inbound.partials = newer;
        self.discard(older);
        self.reassembly_bytes -= complete.bytes;
        let mut message = Vec::with_capacity(complete.bytes);
        for f in complete.fragments.into_iter().flatten() {
            message.extend_from_slice(&f);
        }
        self.stats.messages_delivered += 1;
        Received::Deliver {
            payload: Cow::Owned(message),
            authenticated: complete.authenticated,
            sender_incarnation: header.sender_incarnation,
            sequence: header.sequence,
        }
    }

    /// Partial messages that will never complete: their bytes are released and they count as
    /// lost.
    fn discard(&mut self, partials: Vec<Partial>) {
        for p in partials {
            self.reassembly_bytes -= p.bytes;
            self.stats.dropped_incomplete += 1;
        }
    }

    /// Discards the partial message started longest ago, over all peers. False if none.
    fn discard_oldest_partial(&mut self) -> bool {
        let oldest = self
            .peers
            .iter()
            .filter_map(|(a, p)| p.inbound.as_ref().map(|i| (a, i)))
            .flat_map(|(a, i)| i.partials.iter().map(move |p| (p.started, *a, p.sequence)))
            .min();
        let Some((_, address, sequence)) = oldest else {
            return false;
        };
        let Some(inbound) = self
            .peers
            .get_mut(&address)
            .and_then(|p| p.inbound.as_mut())
        else {
            return false;
        };
        let (gone, kept): (Vec<Partial>, Vec<Partial>) = std::mem::take(&mut inbound.partials)
            .into_iter()
            .partition(|p| p.sequence == sequence);
        inbound.partials = kept;
        self.discard(gone);
        true
    }

    /// Ensures `address` has, or may get, an entry: evicts the least recently used peer that
    /// is not a node when the table is full. False if nothing may be evicted.
    fn make_room_for(&mut self, address: SocketAddrV4) -> bool {
        if self.peers.contains_key(&address) || self.peers.len() < self.limits.peers_max {
            return true;
        }
        let may_evict_inbound = self.generation < GENERATIONS_MAX;
        let victim = self
            .peers
            .iter()
            .filter(|(a, p)| !self.nodes.contains(a) && (may_evict_inbound || p.inbound.is_none()))
            .min_by_key(|(_, p)| p.last_used)
            .map(|(a, _)| *a);
        let Some(victim) = victim else {
            // Only nodes (or no generation left): a node always gets its entry.
            return self.nodes.contains(&address);
        };
        if let Some(peer) = self.peers.remove(&victim) {
            for m in &peer.first_contact {
                self.first_contact_bytes -= m.len();
            }
            if let Some(inbound) = peer.inbound {
                // The peer's next session must get a token it never had: see GENERATIONS_MAX.
                self.generation += 1;
                self.discard(inbound.partials);
            }
            self.stats.peers_evicted += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivered message's payload and authentication, for comparing.
    fn payload_of(r: Received) -> Option<(Vec<u8>, bool)> {
        match r {
            Received::Deliver {
                payload,
                authenticated,
                ..
            } => Some((payload.to_vec(), authenticated)),
            _ => None,
        }
    }

    fn delivered(payload: &[u8]) -> Option<(Vec<u8>, bool)> {
        Some((payload.to_vec(), false))
    }
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    const A: u16 = 1001;
    const B: u16 = 1002;

    fn inc(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).expect("nonzero")
    }

    fn transport(incarnation: u64, key: Option<&Key>, nodes: &[u16]) -> Transport {
        Transport::new(TransportConfig {
            incarnation: inc(incarnation),
            key: key.cloned(),
            nodes: nodes.iter().map(|p| addr(*p)).collect(),
            limits: Limits::default(),
        })
    }

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    /// Two processes on A and B and a network in between that the test drives by hand.
    struct Pair {
        a: Transport,
        b: Transport,
    }

    /// What one process delivered, in order, with the authenticated flag.
    type Delivered = Vec<(Vec<u8>, bool)>;

    impl Pair {
        fn new(key: Option<&Key>) -> Pair {
            Pair {
                a: transport(10 << 32, key, &[A, B]),
                b: transport(20 << 32, key, &[A, B]),
            }
        }

        /// A sends `payload` to B; its datagrams, not yet delivered.
        fn a_sends(&mut self, payload: &[u8]) -> Vec<Datagram> {
            let mut out = Vec::new();
            self.a.send(addr(A), addr(B), payload, &mut out).unwrap();
            out
        }

        /// B receives `d` from A; what it delivered, and what it answered (delivered to A,
        /// whose answers in turn go back to B, and so on until quiet).
        fn deliver_to_b(&mut self, d: &Datagram) -> Delivered {
            let mut delivered = Vec::new();
            let mut to_b = vec![d.bytes.clone()];
            while !to_b.is_empty() {
                let mut to_a = Vec::new();
                for bytes in to_b.drain(..) {
                    let mut out = Vec::new();
                    if let Received::Deliver {
                        payload,
                        authenticated,
                        ..
                    } = self.b.receive(addr(B), addr(A), &bytes, &mut out)
                    {
                        delivered.push((payload.into_owned(), authenticated));
                    }
                    to_a.extend(out);
                }
                for reply in to_a {
                    let mut out = Vec::new();
                    let r = self.a.receive(addr(A), addr(B), &reply.bytes, &mut out);
                    assert!(
                        !matches!(r, Received::Deliver { .. }),
                        "A sent nothing to A"
                    );
                    to_b.extend(out.into_iter().map(|d| d.bytes));
                }
            }
            delivered
        }

        /// Sends `payload` from A and delivers all of it (handshake included); what B got.
        fn exchange(&mut self, payload: &[u8]) -> Delivered {
            let mut delivered = Vec::new();
            for d in self.a_sends(payload) {
                delivered.extend(self.deliver_to_b(&d));
            }
            delivered
        }
    }

    fn payloads(d: &Delivered) -> Vec<Vec<u8>> {
        d.iter().map(|(p, _)| p.clone()).collect()
    }

    #[test]
    fn first_contact_costs_a_reset_and_then_messages_arrive_in_order() {
        let mut p = Pair::new(None);
        let first = p.a_sends(b"one");
        let second = p.a_sends(b"two");
        // Both stamped 0: dropped, each answered with a Reset; the first Reset makes A re-send
        // both, stamped, in order; the second Reset is ignored.
        assert_eq!(
            payloads(&p.deliver_to_b(&first[0])),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert!(p.deliver_to_b(&second[0]).is_empty());
        assert_eq!(p.b.stats.dropped_misaddressed, 2);
        assert_eq!(p.a.stats.sessions_learned, 1);
        assert_eq!(p.a.stats.resets_ignored, 1);
        assert_eq!(p.a.stats.messages_resent, 2);
        for i in 0..100u32 {
            let d = p.exchange(&i.to_le_bytes());
            assert_eq!(payloads(&d), vec![i.to_le_bytes().to_vec()]);
        }
        assert_eq!(p.b.stats.messages_delivered, 102);
        assert_eq!(p.b.stats.resets_sent, 2, "one round trip, once");
    }

    #[test]
    fn a_duplicated_datagram_is_delivered_once() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        let d = p.a_sends(b"produce");
        assert_eq!(payloads(&p.deliver_to_b(&d[0])), vec![b"produce".to_vec()]);
        assert!(p.deliver_to_b(&d[0]).is_empty());
        assert!(p.deliver_to_b(&d[0]).is_empty());
        assert_eq!(p.b.stats.dropped_duplicate, 2);
    }

    #[test]
    fn an_older_datagram_arriving_after_a_newer_one_is_dropped() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        let older = p.a_sends(b"older");
        let newer = p.a_sends(b"newer");
        assert_eq!(
            payloads(&p.deliver_to_b(&newer[0])),
            vec![b"newer".to_vec()]
        );
        assert!(
            p.deliver_to_b(&older[0]).is_empty(),
            "FIFO: the older one is lost"
        );
        assert_eq!(p.b.stats.dropped_stale, 1);
    }

    #[test]
    fn a_restarted_sender_is_heard_and_its_earlier_incarnation_is_not() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        let late = p.a_sends(b"late");
        // A restarts: a new incarnation with sequence numbers from 1 again.
        p.a = transport(11 << 32, None, &[A, B]);
        assert_eq!(payloads(&p.exchange(b"again")), vec![b"again".to_vec()]);
        assert_eq!(payloads(&p.exchange(b"more")), vec![b"more".to_vec()]);
        assert!(
            p.deliver_to_b(&late[0]).is_empty(),
            "the dead incarnation's datagram"
        );
        assert_eq!(p.b.stats.dropped_stale, 1);
    }

    #[test]
    fn a_restarted_receiver_drops_what_was_stamped_for_its_earlier_incarnation() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        let in_flight = p.a_sends(b"in flight");
        // B delivered it before restarting; the network still holds a copy.
        assert_eq!(payloads(&p.deliver_to_b(&in_flight[0])).len(), 1);
        p.b = transport(21 << 32, None, &[A, B]);
        // The copy reaches the new incarnation: dropped and answered with a Reset; A learns
        // the new token but re-sends nothing (it was stamped, not first contact).
        assert!(p.deliver_to_b(&in_flight[0]).is_empty());
        assert_eq!(p.b.stats.dropped_misaddressed, 1);
        assert_eq!(
            p.a.stats.messages_resent, 1,
            "only the first contact's message"
        );
        assert_eq!(payloads(&p.exchange(b"after")), vec![b"after".to_vec()]);
        assert!(
            p.deliver_to_b(&in_flight[0]).is_empty(),
            "still never delivered twice"
        );
    }

    #[test]
    fn an_answer_needs_no_handshake_of_its_own_even_to_a_restarted_peer() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        // A's datagrams carried A's token: B answers stamped, with no Reset from A.
        let mut to_a = Vec::new();
        p.b.send(addr(B), addr(A), b"hi", &mut to_a).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            payload_of(p.a.receive(addr(A), addr(B), &to_a[0].bytes, &mut out)),
            delivered(b"hi")
        );
        assert!(out.is_empty());
        assert_eq!(p.a.stats.resets_sent, 0);
        // A restarts and speaks first: B learns the new incarnation's token at once, so what
        // it sends next is delivered, not dropped as stamped for the dead incarnation.
        p.a = transport(11 << 32, None, &[A, B]);
        assert_eq!(payloads(&p.exchange(b"I am back")).len(), 1);
        assert_eq!(p.b.stats.sessions_restarted, 1);
        let mut sent = Vec::new();
        p.b.send(addr(B), addr(A), b"welcome", &mut sent).unwrap();
        assert_eq!(
            payload_of(p.a.receive(addr(A), addr(B), &sent[0].bytes, &mut out)),
            delivered(b"welcome")
        );
        // The datagram stamped for the dead incarnation is never delivered to the new one.
        assert_eq!(
            p.a.receive(addr(A), addr(B), &to_a[0].bytes, &mut out),
            Received::Dropped(DropReason::Misaddressed)
        );
    }

    #[test]
    fn what_is_sent_to_a_restarted_peer_before_it_is_heard_from_is_lost_not_duplicated() {
        let mut p = Pair::new(None);
        p.exchange(b"hello");
        let mut to_a = Vec::new();
        p.b.send(addr(B), addr(A), b"before", &mut to_a).unwrap();
        p.a = transport(11 << 32, None, &[A, B]);
        // Stamped with the dead incarnation's token: dropped, answered with a Reset, and B
        // learns the new token without sending the message again (it may have been delivered
        // to the dead incarnation).
        let mut reset = Vec::new();
        assert_eq!(
            p.a.receive(addr(A), addr(B), &to_a[0].bytes, &mut reset),
            Received::Dropped(DropReason::Misaddressed)
        );
        let mut resent = Vec::new();
        p.b.receive(addr(B), addr(A), &reset[0].bytes, &mut resent);
        assert!(resent.is_empty());
        let mut after = Vec::new();
        p.b.send(addr(B), addr(A), b"after", &mut after).unwrap();
        assert!(matches!(
            p.a.receive(addr(A), addr(B), &after[0].bytes, &mut Vec::new()),
            Received::Deliver { .. }
        ));
    }

    #[test]
    fn a_reset_for_an_earlier_incarnation_of_the_sender_is_ignored() {
        let mut p = Pair::new(None);
        let first = p.a_sends(b"one");
        let mut out = Vec::new();
        assert_eq!(
            p.b.receive(addr(B), addr(A), &first[0].bytes, &mut out),
            Received::Dropped(DropReason::Misaddressed)
        );
        p.a = transport(11 << 32, None, &[A, B]);
        p.a_sends(b"two");
        let mut resent = Vec::new();
        assert_eq!(
            p.a.receive(addr(A), addr(B), &out[0].bytes, &mut resent),
            Received::Nothing
        );
        assert!(resent.is_empty());
        assert_eq!(p.a.stats.resets_ignored, 1);
    }

    #[test]
    fn messages_of_many_sizes_round_trip_through_fragments() {
        for key in [None, Some(key(7))] {
            let mut p = Pair::new(key.as_ref());
            p.exchange(b"handshake");
            let chunk = p.a.fragment_bytes();
            for len in [
                0,
                1,
                chunk - 1,
                chunk,
                chunk + 1,
                2 * chunk,
                2 * chunk + 1,
                1_000_000,
                MESSAGE_BYTES_MAX,
            ] {
                let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let datagrams = p.a_sends(&message);
                assert_eq!(datagrams.len(), len.div_ceil(chunk).max(1), "{len} bytes");
                assert!(datagrams
                    .iter()
                    .all(|d| d.bytes.len() <= DATAGRAM_BYTES_MAX));
                if len == chunk {
                    assert_eq!(datagrams[0].bytes.len(), DATAGRAM_BYTES_MAX);
                }
                let mut delivered = Vec::new();
                for d in &datagrams {
                    delivered.extend(p.deliver_to_b(d));
                }
                assert_eq!(delivered, vec![(message, key.is_some())], "{len} bytes");
            }
            assert_eq!(p.b.reassembly_bytes(), 0);
        }
    }

    #[test]
    fn fragments_out_of_order_reassemble_and_a_lost_fragment_loses_the_message() {
        let mut p = Pair::new(None);
        p.exchange(b"handshake");
        let message = vec![5u8; 3 * p.a.fragment_bytes() + 10];
        let mut datagrams = p.a_sends(&message);
        datagrams.reverse();
        let mut delivered = Vec::new();
        for d in &datagrams {
            delivered.extend(p.deliver_to_b(d));
        }
        assert_eq!(payloads(&delivered), vec![message.clone()]);
        // A message with a fragment lost never arrives, and the next one does.
        let lossy = p.a_sends(&message);
        for d in &lossy[1..] {
            assert!(p.deliver_to_b(d).is_empty());
        }
        assert_eq!(payloads(&p.exchange(b"next")), vec![b"next".to_vec()]);
        assert_eq!(
            p.b.stats.dropped_incomplete, 1,
            "the partial one is discarded"
        );
        assert!(
            p.deliver_to_b(&lossy[0]).is_empty(),
            "its last fragment comes too late"
        );
        assert_eq!(p.b.reassembly_bytes(), 0);
    }

    #[test]
    fn a_later_message_completing_first_discards_an_older_partial_one() {
        let mut p = Pair::new(None);
        p.exchange(b"handshake");
        let big = vec![1u8; 2 * p.a.fragment_bytes()];
        let older = p.a_sends(&big);
        let newer = p.a_sends(&big);
        assert!(p.deliver_to_b(&older[0]).is_empty());
        assert!(p.deliver_to_b(&newer[0]).is_empty());
        assert_eq!(payloads(&p.deliver_to_b(&newer[1])), vec![big.clone()]);
        assert!(
            p.deliver_to_b(&older[1]).is_empty(),
            "FIFO: the older message is lost"
        );
        assert_eq!(p.b.stats.dropped_incomplete, 1);
        assert_eq!(p.b.stats.dropped_stale, 1);
        assert_eq!(p.b.reassembly_bytes(), 0);
    }

    #[test]
    fn a_fragment_claiming_another_count_than_its_message_is_malformed() {
        let mut p = Pair::new(None);
        p.exchange(b"handshake");
        let big = vec![1u8; 2 * p.a.fragment_bytes()];
        let d = p.a_sends(&big);
        assert!(p.deliver_to_b(&d[0]).is_empty());
        // Fragment 4 of 5 of the same sequence number, CRC fixed up.
        let mut liar = d[1].bytes.clone();
        liar[38..40].copy_from_slice(&4u16.to_le_bytes());
        liar[40..42].copy_from_slice(&5u16.to_le_bytes());
        let crc = crc32fast::hash(&liar[6..]);
        liar[2..6].copy_from_slice(&crc.to_le_bytes());
        let mut out = Vec::new();
        assert_eq!(
            p.b.receive(addr(B), addr(A), &liar, &mut out),
            Received::Dropped(DropReason::Malformed)
        );
        assert_eq!(payloads(&p.deliver_to_b(&d[1])), vec![big]);
    }

    #[test]
    fn a_repeated_fragment_is_a_duplicate() {
        let mut p = Pair::new(None);
        p.exchange(b"handshake");
        let big = vec![1u8; 2 * p.a.fragment_bytes()];
        let d = p.a_sends(&big);
        assert!(p.deliver_to_b(&d[0]).is_empty());
        assert!(p.deliver_to_b(&d[0]).is_empty());
        assert_eq!(p.b.stats.dropped_duplicate, 1);
        assert_eq!(payloads(&p.deliver_to_b(&d[1])), vec![big]);
    }

    #[test]
    fn reassembly_stays_within_its_budgets() {
        let mut p = Pair::new(None);
        p.b.limits.reassembly_bytes_max = 3 * p.a.fragment_bytes();
        p.b.limits.partials_per_peer_max = 2;
        p.exchange(b"handshake");
        let big = vec![1u8; 2 * p.a.fragment_bytes()];
        // Five messages, each missing its last fragment.
        for _ in 0..5 {
            let d = p.a_sends(&big);
            assert!(p.deliver_to_b(&d[0]).is_empty());
            assert!(p.b.reassembly_bytes() <= p.b.limits.reassembly_bytes_max);
        }
        assert_eq!(p.b.stats.dropped_incomplete, 3);
        let d = p.a_sends(&big);
        for x in &d {
            p.deliver_to_b(x);
        }
        assert_eq!(
            p.b.stats.messages_delivered, 2,
            "handshake and the whole one"
        );
        assert_eq!(p.b.reassembly_bytes(), 0);
    }

    #[test]
    fn an_oversized_message_is_refused_on_send() {
        let mut p = Pair::new(None);
        let mut out = Vec::new();
        let big = vec![0u8; MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            p.a.send(addr(A), addr(B), &big, &mut out),
            Err(SendError::Oversized {
                bytes: MESSAGE_BYTES_MAX + 1
            })
        );
        assert!(out.is_empty());
        assert_eq!(p.a.stats.dropped_oversized, 1);
    }

    #[test]
    fn tags_bind_the_key_the_source_and_the_destination() {
        let k = key(1);
        let mut p = Pair::new(Some(&k));
        assert_eq!(p.exchange(b"hello"), vec![(b"hello".to_vec(), true)]);
        let d = p.a_sends(b"signed");
        let mut out = Vec::new();
        // From another address (even a node's), or to another one, it fails.
        assert_eq!(
            p.b.receive(addr(B), addr(3), &d[0].bytes, &mut out),
            Received::Dropped(DropReason::Unauthenticated)
        );
        assert_eq!(
            p.b.receive(addr(4), addr(A), &d[0].bytes, &mut out),
            Received::Dropped(DropReason::Unauthenticated)
        );
        // Signed with another key, it fails.
        let mut forger = transport(10 << 32, Some(&key(2)), &[]);
        let mut forged = Vec::new();
        forger.send(addr(A), addr(B), b"x", &mut forged).unwrap();
        assert_eq!(
            p.b.receive(addr(B), addr(A), &forged[0].bytes, &mut out),
            Received::Dropped(DropReason::Unauthenticated)
        );
        // A flipped payload bit with the CRC fixed up fails the tag.
        let mut tampered = d[0].bytes.clone();
        tampered[HEADER_BYTES] ^= 1;
        let crc = crc32fast::hash(&tampered[6..]);
        tampered[2..6].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            p.b.receive(addr(B), addr(A), &tampered, &mut out),
            Received::Dropped(DropReason::Unauthenticated)
        );
        assert!(out.is_empty(), "no Reset answers a forgery");
        assert_eq!(p.b.stats.dropped_unauthenticated, 4);
        assert_eq!(payloads(&p.deliver_to_b(&d[0])), vec![b"signed".to_vec()]);
    }

    #[test]
    fn a_keyed_receiver_drops_untagged_datagrams_from_nodes_and_flags_clients_unauthenticated() {
        let k = key(1);
        let mut b = transport(20 << 32, Some(&k), &[A, B]);
        let mut stranger = transport(30 << 32, None, &[]);
        for from in [A, 5555] {
            let mut sent = Vec::new();
            stranger
                .send(addr(from), addr(B), b"hi", &mut sent)
                .unwrap();
            let mut out = Vec::new();
            let r = b.receive(addr(B), addr(from), &sent[0].bytes, &mut out);
            if from == A {
                assert_eq!(r, Received::Dropped(DropReason::Unauthenticated));
                assert!(out.is_empty(), "the node's channel is untouched");
            } else {
                assert_eq!(r, Received::Dropped(DropReason::Misaddressed));
                // The client learns the token (it strips the tag it cannot check).
                let mut resent = Vec::new();
                stranger.receive(addr(from), addr(B), &out[0].bytes, &mut resent);
                let mut none = Vec::new();
                assert_eq!(
                    payload_of(b.receive(addr(B), addr(from), &resent[0].bytes, &mut none)),
                    delivered(b"hi")
                );
            }
        }
    }

    #[test]
    fn an_untagged_reset_from_a_node_is_ignored_by_a_keyed_sender() {
        let k = key(1);
        let mut a = transport(10 << 32, Some(&k), &[A, B]);
        let mut out = Vec::new();
        a.send(addr(A), addr(B), b"one", &mut out).unwrap();
        // B's Reset, forged without the key.
        let mut forger = transport(20 << 32, None, &[]);
        let mut reset = Vec::new();
        forger.receive(addr(B), addr(A), &out[0].bytes, &mut reset);
        let mut resent = Vec::new();
        assert_eq!(
            a.receive(addr(A), addr(B), &reset[0].bytes, &mut resent),
            Received::Dropped(DropReason::Unauthenticated)
        );
        assert!(resent.is_empty());
    }

    #[test]
    fn an_evicted_client_gets_a_new_token_and_its_old_datagrams_stay_dropped() {
        let mut b = transport(20 << 32, None, &[]);
        b.limits.peers_max = 2;
        let mut client = transport(30 << 32, None, &[]);
        let c = addr(7000);
        let handshake = |client: &mut Transport, b: &mut Transport, payload: &[u8]| {
            let mut sent = Vec::new();
            client.send(c, addr(B), payload, &mut sent).unwrap();
            let mut reset = Vec::new();
            b.receive(addr(B), c, &sent[0].bytes, &mut reset);
            let mut resent = Vec::new();
            if let Some(reset) = reset.first() {
                client.receive(c, addr(B), &reset.bytes, &mut resent);
            }
            resent
        };
        let resent = handshake(&mut client, &mut b, b"first");
        let mut out = Vec::new();
        assert!(matches!(
            b.receive(addr(B), c, &resent[0].bytes, &mut out),
            Received::Deliver { .. }
        ));
        // Two other peers push the client out of B's table.
        for port in [8000, 8001] {
            let mut other = transport(40 << 32, None, &[]);
            let mut sent = Vec::new();
            other.send(addr(port), addr(B), b"x", &mut sent).unwrap();
            b.receive(addr(B), addr(port), &sent[0].bytes, &mut out);
        }
        assert_eq!(b.stats.peers_evicted, 1);
        // The delivered datagram, replayed: a forgotten peer, so misaddressed, not delivered.
        let mut reset = Vec::new();
        assert_eq!(
            b.receive(addr(B), c, &resent[0].bytes, &mut reset),
            Received::Dropped(DropReason::Misaddressed)
        );
        // The client learns a token it never had...
        let mut none = Vec::new();
        client.receive(c, addr(B), &reset[0].bytes, &mut none);
        assert_eq!(client.stats.sessions_learned, 2);
        // ...so its next message arrives, and the old datagram still never does again.
        let mut sent = Vec::new();
        client.send(c, addr(B), b"second", &mut sent).unwrap();
        assert!(matches!(
            b.receive(addr(B), c, &sent[0].bytes, &mut out),
            Received::Deliver { .. }
        ));
        assert!(matches!(
            b.receive(addr(B), c, &resent[0].bytes, &mut out),
            Received::Dropped(_)
        ));
    }

    #[test]
    fn nodes_are_never_evicted() {
        let mut b = transport(20 << 32, None, &[A]);
        b.limits.peers_max = 2;
        let mut a = transport(10 << 32, None, &[]);
        let mut out = Vec::new();
        a.send(addr(A), addr(B), b"x", &mut out).unwrap();
        b.receive(addr(B), addr(A), &out[0].bytes, &mut Vec::new());
        for port in 8000..8010 {
            let mut other = transport(40 << 32, None, &[]);
            let mut sent = Vec::new();
            other.send(addr(port), addr(B), b"x", &mut sent).unwrap();
            b.receive(addr(B), addr(port), &sent[0].bytes, &mut Vec::new());
            assert!(b.peer_count() <= 2);
            assert!(b.peers.contains_key(&addr(A)));
        }
        assert_eq!(b.stats.peers_evicted, 9);
    }

    #[test]
    fn the_first_contact_queue_is_bounded() {
        let mut a = transport(10 << 32, None, &[]);
        a.limits.first_contact_messages_max = 3;
        let mut out = Vec::new();
        for i in 0..5u8 {
            a.send(addr(A), addr(B), &[i], &mut out).unwrap();
        }
        assert_eq!(a.stats.dropped_first_contact_full, 2);
        let mut b = transport(20 << 32, None, &[]);
        let mut reset = Vec::new();
        b.receive(addr(B), addr(A), &out[0].bytes, &mut reset);
        let mut resent = Vec::new();
        a.receive(addr(A), addr(B), &reset[0].bytes, &mut resent);
        let mut delivered = Vec::new();
        for d in &resent {
            if let Received::Deliver { payload, .. } =
                b.receive(addr(B), addr(A), &d.bytes, &mut Vec::new())
            {
                delivered.push(payload.into_owned());
            }
        }
        assert_eq!(
            delivered,
            vec![vec![2], vec![3], vec![4]],
            "the newest three, in order"
        );
    }

    /// splitmix64, for the property-style loop.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// A pair past the handshake, the datagrams of messages B has delivered (so that an
    /// unchanged copy is a duplicate), a Reset, and a fragment of a message B holds partially.
    fn fuzz_setup(key: Option<&Key>) -> (Pair, Vec<Datagram>) {
        let mut p = Pair::new(key);
        p.exchange(b"handshake");
        let mut samples = Vec::new();
        for len in [0usize, 10, 5000, 70_000] {
            samples.extend(p.a_sends(&vec![3u8; len]));
        }
        for d in &samples {
            p.deliver_to_b(d);
        }
        let mut fresh = transport(30 << 32, None, &[]);
        let mut sent = Vec::new();
        fresh.send(addr(9), addr(B), b"x", &mut sent).unwrap();
        p.b.receive(addr(B), addr(9), &sent[0].bytes, &mut samples);
        let partial = p.a_sends(&vec![4u8; 3 * p.a.fragment_bytes()]);
        p.deliver_to_b(&partial[0]);
        samples.push(partial[1].clone());
        (p, samples)
    }

    #[test]
    fn mutated_and_truncated_datagrams_never_panic_and_with_a_key_are_never_delivered() {
        let k = key(9);
        let mut rng = Rng(42);
        for keyed in [false, true] {
            // Fresh state every few hundred mutations: without a key, a forged sequence number
            // or incarnation soon wedges the channel, and later mutations would test little.
            for _round in 0..40 {
                let (mut p, samples) = fuzz_setup(keyed.then_some(&k));
                let delivered_before = p.b.stats.messages_delivered;
                for _ in 0..500 {
                    let mut bytes = samples[rng.below(samples.len())].bytes.clone();
                    let fix_crc = |bytes: &mut Vec<u8>| {
                        if bytes.len() >= HEADER_BYTES {
                            let crc = crc32fast::hash(&bytes[6..]);
                            bytes[2..6].copy_from_slice(&crc.to_le_bytes());
                        }
                    };
                    match rng.below(5) {
                        0 => bytes.truncate(rng.below(bytes.len() + 1)),
                        1 => {
                            for _ in 0..1 + rng.below(4) {
                                let i = rng.below(bytes.len());
                                if let Some(b) = bytes.get_mut(i) {
                                    *b ^= 1 << rng.below(8);
                                }
                            }
                        }
                        2 => {
                            // A header byte changed and the CRC fixed up: only the tag (or
                            // the receiver's rules) can stop it.
                            if let Some(b) = bytes.get_mut(1 + rng.below(HEADER_BYTES - 1)) {
                                *b = rng.next() as u8;
                            }
                            fix_crc(&mut bytes);
                        }
                        3 if bytes.len() >= HEADER_BYTES => {
                            // Another fragment index and count.
                            bytes[38..40].copy_from_slice(&(rng.below(8) as u16).to_le_bytes());
                            bytes[40..42].copy_from_slice(&(rng.below(8) as u16).to_le_bytes());
                            fix_crc(&mut bytes);
                        }
                        _ => bytes = (0..rng.below(100)).map(|_| rng.next() as u8).collect(),
                    }
                    let mut out = Vec::new();
                    let _ = p.b.receive(addr(B), addr(A), &bytes, &mut out);
                    let _ = p.a.receive(addr(A), addr(B), &bytes, &mut out);
                }
                assert!(p.b.stats.dropped_malformed > 50);
                if keyed {
                    assert_eq!(
                        p.b.stats.messages_delivered, delivered_before,
                        "with a key, no mutation of a datagram is delivered"
                    );
                    assert!(p.b.stats.dropped_unauthenticated > 50);
                    // And the channel still works. (Without a key, a forged sequence number or
                    // incarnation can wedge it: that is what the key is for.)
                    assert_eq!(payloads(&p.exchange(b"still")), vec![b"still".to_vec()]);
                }
            }
        }
    }

    #[test]
    fn a_lossy_duplicating_reordering_network_yields_an_ordered_duplicate_free_subsequence() {
        let mut rng = Rng(7);
        let mut p = Pair::new(Some(&key(3)));
        let mut network: Vec<(bool, Vec<u8>)> = Vec::new(); // (to B?, bytes)
        let mut delivered: Vec<u32> = Vec::new();
        let mut next = 0u32;
        for _ in 0..20_000 {
            match rng.below(3) {
                0 if next < 2_000 => {
                    let size = if rng.below(10) == 0 { 130_000 } else { 8 };
                    let mut m = next.to_le_bytes().to_vec();
                    m.resize(size, 0);
                    next += 1;
                    for d in p.a_sends(&m) {
                        network.push((true, d.bytes));
                    }
                }
                _ if !network.is_empty() => {
                    let i = rng.below(network.len());
                    let (to_b, bytes) = if rng.below(4) == 0 {
                        network[i].clone() // duplicate
                    } else {
                        network.swap_remove(i) // reorder
                    };
                    if rng.below(10) == 0 {
                        continue; // lose
                    }
                    let mut out = Vec::new();
                    if to_b {
                        if let Received::Deliver { payload, .. } =
                            p.b.receive(addr(B), addr(A), &bytes, &mut out)
                        {
                            let mut n = [0u8; 4];
                            n.copy_from_slice(&payload[..4]);
                            delivered.push(u32::from_le_bytes(n));
                        }
                        network.extend(out.into_iter().map(|d| (false, d.bytes)));
                    } else {
                        p.a.receive(addr(A), addr(B), &bytes, &mut out);
                        network.extend(out.into_iter().map(|d| (true, d.bytes)));
                    }
                }
                _ => {}
            }
        }
        assert!(
            delivered.len() > 100,
            "enough got through: {}",
            delivered.len()
        );
        assert!(
            delivered.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing: in order, no duplicates"
        );
        assert!(p.b.stats.dropped_duplicate > 0 && p.b.stats.dropped_stale > 0);
    }
}
