//! # watermark-net: the model's actors as a real cluster
//!
//! The very same `impl Actor` types that `watermark-checks` explores run here as processes that
//! talk UDP and keep their logs on disk:
//!
//! - [`host`]: one event loop per node, generic over `stateright::actor::Actor`. It runs each
//!   step's commands in order, so a `Save` is durable before any `Send` after it (spec R0).
//! - [`codec`]: datagrams as a version byte, a CRC-32 and a postcard payload, at most 60 KiB.
//! - [`segment`], [`store`]: append-only, CRC-framed segment files per replica, cut at a torn
//!   tail on recovery; the fsync policy.
//! - [`cluster`]: the cluster file mapping broker ids to socket addresses, and real timings.
//! - [`client`]: drivers that run the model's Producer and Consumer actors and the admin APIs.

pub mod client;
pub mod cluster;
pub mod codec;
pub mod faults;
pub mod incarnation;
pub mod host;
pub mod local;
pub mod segment;
pub mod store;
pub mod transport;
