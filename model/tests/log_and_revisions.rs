//! The leader-epoch lookup (Kafka's `LeaderEpochFileCache.endOffsetFor`) and each revision's
//! truncation rule.

mod support;
use support::*;
use watermark_model::revision::{BecomeFollower, Truncation};
use watermark_model::*;

#[test]
fn end_offset_for_the_latest_epoch_is_the_log_end() {
    let l = log(&[(0, "a"), (0, "b"), (2, "c")]);
    assert_eq!(l.end_offset_for_epoch(2, None), Some((2, 3)));
}

#[test]
fn end_offset_for_an_earlier_epoch_is_where_the_next_one_starts() {
    let l = log(&[(0, "a"), (0, "b"), (2, "c")]);
    assert_eq!(l.end_offset_for_epoch(0, None), Some((0, 2)));
    // Epoch 1 is unknown: the largest epoch before it is 0, which ends at 2.
    assert_eq!(l.end_offset_for_epoch(1, None), Some((0, 2)));
}

#[test]
fn end_offset_for_an_epoch_newer_than_any_known_is_undefined() {
    let l = log(&[(0, "a"), (2, "c")]);
    assert_eq!(l.end_offset_for_epoch(3, None), None);
    assert_eq!(Log::new().end_offset_for_epoch(0, None), None);
}

#[test]
fn end_offset_for_an_epoch_older_than_any_known_is_the_first_start() {
    let l = log(&[(2, "a"), (3, "b")]);
    assert_eq!(l.end_offset_for_epoch(1, None), Some((1, 0)));
}

#[test]
fn a_leader_that_caches_its_own_epoch_answers_for_epochs_it_skipped() {
    // Leader of epoch 4 since offset 2, no records in it yet.
    let l = log(&[(0, "a"), (1, "b")]);
    assert_eq!(l.end_offset_for_epoch(3, None), None, "without KAFKA-7415");
    assert_eq!(l.end_offset_for_epoch(3, Some((4, 2))), Some((1, 2)));
    assert_eq!(l.end_offset_for_epoch(4, Some((4, 2))), Some((4, 2)));
}

#[test]
fn read_returns_at_least_one_record_and_then_respects_the_byte_limit() {
    let l = log(&[(0, "a"), (0, "b"), (0, "c")]);
    assert_eq!(l.read(0, 3, 1).len(), 1);
    let two = 2 * (RECORD_OVERHEAD_BYTES + 1) as u32;
    assert_eq!(l.read(0, 3, two).len(), 2);
    assert_eq!(l.read(1, 2, 10_000).len(), 1, "stops at the end given");
}

#[test]
fn truncate_reports_whether_it_removed_anything() {
    let mut l = log(&[(0, "a"), (0, "b")]);
    assert!(!l.truncate(2));
    assert!(l.truncate(1));
    assert_eq!(l, log(&[(0, "a")]));
}

#[test]
fn each_revision_names_its_first_step_and_its_fencing() {
    let cases = [
        (
            Protocol::HwmTruncation,
            BecomeFollower::TruncateToHighWatermark,
            false,
        ),
        (Protocol::Kip101, BecomeFollower::AskEpochEndOffset, false),
        (Protocol::Kip279, BecomeFollower::AskEpochEndOffset, false),
        (Protocol::Kip320, BecomeFollower::Fetch, true),
    ];
    for (protocol, first, fencing) in cases {
        let r = protocol.revision();
        assert_eq!(r.become_follower(), first, "{protocol}");
        assert_eq!(r.fences_current_leader_epoch(), fencing, "{protocol}");
        assert_eq!(protocol.name().parse::<Protocol>(), Ok(protocol));
    }
    assert!("kip-999".parse::<Protocol>().is_err());
}

#[test]
fn hwm_truncation_truncates_to_the_high_watermark_whatever_the_leader_says() {
    let l = log(&[(0, "a"), (0, "b"), (1, "c")]);
    let t = Protocol::HwmTruncation
        .revision()
        .truncation(&l, 1, Some((1, 3)));
    assert_eq!(
        t,
        Truncation {
            offset: 1,
            complete: true
        }
    );
}

#[test]
fn kip_101_and_kip_279_differ_when_the_follower_holds_an_epoch_the_leader_lacks() {
    // Follower [0@0 1@1 2@2]; the leader answers (1, 3) for epoch 2: it never had epoch 2.
    let l = log(&[(0, "a"), (1, "b"), (2, "c")]);
    let answer = Some((1, 3));
    assert_eq!(
        Protocol::Kip101.revision().truncation(&l, 0, answer),
        Truncation {
            offset: 3,
            complete: true
        },
        "KIP-101 keeps the divergent 2@2"
    );
    assert_eq!(
        Protocol::Kip279.revision().truncation(&l, 0, answer),
        Truncation {
            offset: 2,
            complete: true
        },
        "KIP-279 cuts to the end of epoch 1 in its own log"
    );
}

#[test]
fn walk_back_asks_again_when_the_follower_lacks_the_answered_epoch() {
    let l = log(&[(0, "a"), (2, "b")]);
    let t = Protocol::Kip320.revision().truncation(&l, 0, Some((1, 2)));
    assert_eq!(
        t,
        Truncation {
            offset: 1,
            complete: false
        }
    );
}

#[test]
fn an_undefined_answer_falls_back_to_the_high_watermark() {
    let l = log(&[(0, "a"), (0, "b")]);
    for p in [Protocol::Kip101, Protocol::Kip279, Protocol::Kip320] {
        assert_eq!(
            p.revision().truncation(&l, 1, None),
            Truncation {
                offset: 1,
                complete: true
            }
        );
    }
}
