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

/// Turns transparent huge pages off for this process and every process it starts (the flag is
/// inherited across `fork` and `execve`), whatever the system's setting and the allocator's
/// `madvise`. On this project's machine, a 2-core VM with THP on `madvise`, mimalloc's huge
/// pages made a few steps a second wait 5–40 ms for a page fault, which set the p99 latency of a
/// cluster under load (BENCHMARKS.md: 4.8–10.9 ms with them, 0.5–1.2 ms without). Latency-bound
/// servers commonly run without THP for the same reason. The checker keeps them. Returns
/// whether the kernel took the flag: without it a node runs as before.
pub fn disable_transparent_huge_pages() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(test)]
mod tests {
    /// The flag is taken, and the kernel reports this process without transparent huge pages.
    #[test]
    fn transparent_huge_pages_are_turned_off_for_the_process() {
        assert!(super::disable_transparent_huge_pages());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // Kernels since 6.0 print the flag; older ones take it silently.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
