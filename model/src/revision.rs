//! The protocol revisions, one named variation point each. Spec: "Protocol revisions".
//!
//! Kafka fixed its replication bugs by changing how a follower finds where its log stops
//! agreeing with the leader's, and by fencing requests with the leader epoch. Each revision below
//! answers the same few questions; the handlers ask them and never test the revision themselves.
//!
//! | revision         | becoming a follower            | truncation offset                 | epoch fencing |
//! |------------------|--------------------------------|-----------------------------------|---------------|
//! | `hwm-truncation` | truncate to own HWM, fetch     | own HWM; leader LEO if out of range | none        |
//! | `kip-101`        | OffsetsForLeaderEpoch(latest)  | min(leader's end offset, own LEO) | none          |
//! | `kip-279`        | OffsetsForLeaderEpoch(latest)  | walk back to the largest common epoch | none      |
//! | `kip-320`        | fetch with last fetched epoch  | as kip-279, from the fetch response | current leader epoch |

use crate::log::Log;
use crate::msg::EpochEndOffset;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `protocol` knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// Before KIP-101: a new follower truncates to its own high watermark.
    HwmTruncation,
    /// KIP-101: truncate by leader-epoch lookup (OffsetsForLeaderEpoch).
    Kip101,
    /// KIP-279: the lookup walks back to the largest epoch both logs share.
    Kip279,
    /// KIP-320: fetches and epoch lookups carry the current leader epoch and are fenced by it;
    /// the divergence check rides on the fetch itself (KIP-595 style). The default.
    Kip320,
}

pub const PROTOCOLS: [Protocol; 4] = [
    Protocol::HwmTruncation,
    Protocol::Kip101,
    Protocol::Kip279,
    Protocol::Kip320,
];

impl Protocol {
    pub fn name(self) -> &'static str {
        self.revision().name()
    }

    /// The rules of this revision.
    pub fn revision(self) -> &'static dyn Revision {
        match self {
            Protocol::HwmTruncation => &HwmTruncation,
            Protocol::Kip101 => &Kip101,
            Protocol::Kip279 => &Kip279,
            Protocol::Kip320 => &Kip320,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PROTOCOLS
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = PROTOCOLS.iter().map(|p| p.name()).collect();
                format!(
                    "unknown protocol '{s}'; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What a replica does first when LeaderAndIsr makes it a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BecomeFollower {
    /// Truncate to the own high watermark, then fetch.
    TruncateToHighWatermark,
    /// Send OffsetsForLeaderEpoch for the latest own epoch, truncate by the answer, then fetch.
    AskEpochEndOffset,
    /// Fetch at once: the fetch carries the last fetched epoch and the leader checks it.
    Fetch,
}

/// Where a follower truncates, and whether its log then agrees with the leader's or it must ask
/// again with its new latest epoch (KIP-279's walk back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub offset: Offset,
    pub complete: bool,
}

/// One protocol revision's answers to the questions the handlers ask.
pub trait Revision: Sync {
    fn name(&self) -> &'static str;

    /// R15: a replica's first step as a follower.
    fn become_follower(&self) -> BecomeFollower;

    /// R23: whether Fetch and OffsetsForLeaderEpoch carry the sender's current leader epoch, and
    /// the receiver fences requests (and the follower responses) from any other epoch.
    fn fences_current_leader_epoch(&self) -> bool;

    /// R24: whether a fetch carries the follower's last fetched epoch, so that the leader checks
    /// divergence on every fetch (KIP-595 style, which current Kafka uses with KIP-320).
    fn fetch_carries_last_fetched_epoch(&self) -> bool {
        self.become_follower() == BecomeFollower::Fetch
    }

    /// R34: whether a leader's epoch cache holds its own epoch from the moment it becomes
    /// leader, before it appends in it (KAFKA-7415, shipped with KIP-320). Without it, a lookup
    /// for an epoch the leader skipped answers from the leader's older records only.
    fn leader_caches_own_epoch(&self) -> bool {
        self.fences_current_leader_epoch()
    }

    /// R35, R32: where the follower truncates, given the leader's answer for its epoch.
    fn truncation(&self, log: &Log, high_watermark: Offset, answer: EpochEndOffset) -> Truncation;
}

/// Before KIP-101.
pub struct HwmTruncation;
/// KIP-101.
pub struct Kip101;
/// KIP-279.
pub struct Kip279;
/// KIP-320.
pub struct Kip320;

impl Revision for HwmTruncation {
    fn name(&self) -> &'static str {
        "hwm-truncation"
    }
    fn become_follower(&self) -> BecomeFollower {
        BecomeFollower::TruncateToHighWatermark
    }
    fn fences_current_leader_epoch(&self) -> bool {
        false
    }
    fn truncation(
        &self,
        _log: &Log,
        high_watermark: Offset,
        _answer: EpochEndOffset,
    ) -> Truncation {
        Truncation {
            offset: high_watermark,
            complete: true,
        }
    }
}

impl Revision for Kip101 {
    fn name(&self) -> &'static str {
        "kip-101"
    }
    fn become_follower(&self) -> BecomeFollower {
        BecomeFollower::AskEpochEndOffset
    }
    fn fences_current_leader_epoch(&self) -> bool {
        false
    }
    fn truncation(&self, log: &Log, high_watermark: Offset, answer: EpochEndOffset) -> Truncation {
        match answer {
            // The leader knows no epoch at or before ours: fall back to the high watermark.
            None => Truncation {
                offset: high_watermark,
                complete: true,
            },
            // KIP-101 trusts the leader's end offset for our epoch as it is.
            Some((_epoch, end_offset)) => Truncation {
                offset: end_offset.min(log.log_end_offset()),
                complete: true,
            },
        }
    }
}

/// KIP-279's rule, which KIP-320 keeps: compare the epoch the leader answered with our own.
fn walk_back(log: &Log, high_watermark: Offset, answer: EpochEndOffset) -> Truncation {
    let Some((leader_epoch, leader_end_offset)) = answer else {
        return Truncation {
            offset: high_watermark,
            complete: true,
        };
    };
    let log_end_offset = log.log_end_offset();
    match log.own_end_offset_for_epoch(leader_epoch) {
        // We track no epoch at or before the leader's (an empty log): the leader's end offset
        // stands, as in KIP-101.
        None => Truncation {
            offset: leader_end_offset.min(log_end_offset),
            complete: true,
        },
        // We hold the leader's epoch: the logs agree up to the smaller end of it.
        Some((epoch, end_offset)) if epoch == leader_epoch => Truncation {
            offset: leader_end_offset.min(end_offset).min(log_end_offset),
            complete: true,
        },
        // We do not hold the leader's epoch: cut back to the end of our largest earlier epoch
        // and ask again with it.
        Some((_epoch, end_offset)) => Truncation {
            offset: end_offset.min(log_end_offset),
            complete: false,
        },
    }
}

impl Revision for Kip279 {
    fn name(&self) -> &'static str {
        "kip-279"
    }
    fn become_follower(&self) -> BecomeFollower {
        BecomeFollower::AskEpochEndOffset
    }
    fn fences_current_leader_epoch(&self) -> bool {
        false
    }
    fn truncation(&self, log: &Log, high_watermark: Offset, answer: EpochEndOffset) -> Truncation {
        walk_back(log, high_watermark, answer)
    }
}

impl Revision for Kip320 {
    fn name(&self) -> &'static str {
        "kip-320"
    }
    fn become_follower(&self) -> BecomeFollower {
        BecomeFollower::Fetch
    }
    fn fences_current_leader_epoch(&self) -> bool {
        true
    }
    fn truncation(&self, log: &Log, high_watermark: Offset, answer: EpochEndOffset) -> Truncation {
        walk_back(log, high_watermark, answer)
    }
}
