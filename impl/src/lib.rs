//! # watermark-net: the model's actors as a real cluster
//!
//! The very same `impl Actor` types that `watermark-checks` explores run here as processes that
//! talk UDP and keep their logs on disk:
//!
//! - [`host`]: one event loop per node, generic over `stateright::actor::Actor`. It runs each
//!   step's commands in order, so a `Save` is durable before any `Send` after it (spec R0).
//! - [`transport`]: the model's network over UDP: per-channel FIFO, lossy, never duplicating,
//!   across restarts of either end; fragmentation up to 4 MiB; HMAC-SHA256 with a cluster key.
//! - [`codec`]: a message's bytes (postcard), the transport's payload.
//! - [`faults`]: drops, duplicates and delays outbound datagrams by rules, for tests.
//! - [`incarnation`]: where a process's incarnation comes from (a file for nodes, the clock for
//!   clients).
//! - [`segment`], [`store`]: append-only, CRC-framed segment files per replica, cut at a torn
//!   tail on recovery; the fsync policy.
//! - [`trace`]: trace files of every step of a node, for `watermark validate`.
//! - [`cluster`]: the cluster file mapping broker ids to socket addresses (and the key), real
//!   timings, admission policies, and running one node.
//! - [`local`]: a controller and brokers as child processes, for `cluster up` and tests.
//! - [`client`]: drivers that run the model's Producer and Consumer actors and the admin APIs.
//! - [`nemesis`]: a local cluster under seeded faults (kill -9, pause, partitions, loss,
//!   duplication, reordering, torn tails, power loss), and [`history`]: the checks of what its
//!   producers were told against what the replicas hold.
//!
//! `README.md` beside this crate documents the datagram format, the transport's guarantee,
//! authentication, every counter and the fault rules file.

pub mod client;
pub mod cluster;
pub mod codec;
pub mod faults;
pub mod history;
pub mod host;
pub mod incarnation;
pub mod local;
pub mod metrics;
pub mod nemesis;
pub mod records;
pub mod segment;
pub mod store;
pub mod trace;
pub mod transport;
