//! Where a process's transport incarnation comes from.
//!
//! An incarnation must be nonzero and larger than any earlier one at the same address, by more
//! than [`GENERATIONS_MAX`](crate::transport::GENERATIONS_MAX) if the earlier process evicted
//! peers. Both kinds below are `seconds << 32 | low bits`, so that the two kinds compare sensibly
//! when a client happens to bind a port a dead node used:
//!
//! - **Nodes** (controller, broker) keep the last one in `<dir>/incarnation` and take
//!   `max(last seconds + 1, now in seconds) << 32`, written atomically and fsynced before the
//!   node sends anything. The file guards against a clock stepping back; the clock against a
//!   lost directory.
//! - **Clients** take the wall clock: seconds, and nanoseconds in the low 32 bits. Clients on
//!   ephemeral ports do not restart in place within a nanosecond, and never evict enough peers
//!   to reach the next one.

use crate::segment::write_atomically;
use std::io;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The name of a node's incarnation file in its directory.
pub const FILE_NAME: &str = "incarnation";

fn now() -> (u64, u32) {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0))
}

/// A client's incarnation, from the wall clock.
pub fn clock() -> NonZeroU64 {
    let (secs, nanos) = now();
    NonZeroU64::new(secs << 32 | u64::from(nanos)).unwrap_or(NonZeroU64::MIN)
}

/// A node's next incarnation: larger than the one stored in `dir` (if any), made durable there
/// before it is returned.
pub fn next_for_node(dir: &Path) -> io::Result<NonZeroU64> {
    let path = dir.join(FILE_NAME);
    let last_secs = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let last: u64 = text.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a number", path.display()),
                )
            })?;
            Some(last >> 32)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let secs = last_secs.map_or(0, |s| s + 1).max(now().0).max(1);
    if secs >= 1 << 32 {
        return Err(io::Error::other(format!(
            "{}: incarnations exhausted",
            path.display()
        )));
    }
    let incarnation = secs << 32;
    std::fs::create_dir_all(dir)?;
    write_atomically(&path, format!("{incarnation}\n").as_bytes(), true)?;
    NonZeroU64::new(incarnation).ok_or_else(|| io::Error::other("zero incarnation"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_incarnation_increases_on_every_start_even_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut last = 0;
        for _ in 0..5 {
            let i = next_for_node(dir.path()).unwrap().get();
            assert!(
                i > last + crate::transport::GENERATIONS_MAX,
                "{i} after {last}"
            );
            assert_eq!(i & 0xFFFF_FFFF, 0, "the low 32 bits are the generations'");
            last = i;
        }
        let stored: u64 = std::fs::read_to_string(dir.path().join(FILE_NAME))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(stored, last);
    }

    #[test]
    fn a_node_incarnation_survives_a_clock_far_behind_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let future = (now().0 + 1000) << 32;
        std::fs::write(dir.path().join(FILE_NAME), future.to_string()).unwrap();
        assert_eq!(next_for_node(dir.path()).unwrap().get(), future + (1 << 32));
    }

    #[test]
    fn a_garbled_incarnation_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "banana").unwrap();
        let e = next_for_node(dir.path()).unwrap_err();
        assert!(e.to_string().contains("does not hold a number"), "{e}");
    }

    #[test]
    fn a_client_incarnation_is_later_than_a_node_started_in_an_earlier_second() {
        let node = now().0 << 32;
        assert!(clock().get() >= node);
    }
}
