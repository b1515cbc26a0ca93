//! The seeds' claims about each configuration, checked by the model (`watermark matrix`).
//!
//! Each scenario is a configuration, the one property it is about, and the verdict the model
//! gives. The seed documents in `../shared/seeds/` claim what each Kafka configuration loses when
//! a leader fails; a row whose verdict contradicts its claim says so (`refuted`), and README.md's
//! matrix section explains why.

use crate::ghost::event;
use crate::knobs::{Knobs, Network};
use crate::model::{controller, record_values, State, WatermarkModel};
use crate::properties::{self, PropertyDef};
use crate::runner::{run_properties, Outcome, RunOptions, Strategy, Verdict};
use serde::Serialize;
use stateright::Expectation;
use watermark_model::*;

/// What the scenario expects of its property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// An Always property holds in every reachable state.
    Holds,
    /// An Always property fails in some reachable state.
    Violated,
    /// A Sometimes property's situation occurs.
    Reachable,
    /// A Sometimes property's situation never occurs.
    Unreachable,
}

impl Expected {
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Holds => "holds",
            Expected::Violated => "violated",
            Expected::Reachable => "reachable",
            Expected::Unreachable => "unreachable",
        }
    }
    fn of(verdict: Verdict) -> Expected {
        match verdict {
            Verdict::Holds => Expected::Holds,
            Verdict::Violated => Expected::Violated,
            Verdict::Found => Expected::Reachable,
            Verdict::NotFound => Expected::Unreachable,
            // The matrix stops when its one property is found, never at another's violation.
            Verdict::Unknown => unreachable!("a matrix row checks one property"),
        }
    }
}

/// What the seed says about a scenario, compared with the model's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimStatus {
    /// The model agrees with the seed.
    Confirmed,
    /// The model contradicts the seed, for the configuration the seed names.
    Refuted,
    /// The seed says nothing about it (a row about the protocol's history).
    None,
}

pub struct Scenario {
    pub name: &'static str,
    /// The seed claim it tests: file and section.
    pub claim: &'static str,
    /// Whether the expected verdict confirms or refutes that claim.
    pub claim_status: ClaimStatus,
    pub knobs: Knobs,
    pub property: &'static str,
    pub expected: Expected,
}

/// Two brokers, replication factor 2, min.insync.replicas=1, one record, one broker crash: the
/// smallest cluster where a leader fails and another takes over.
fn pair() -> Knobs {
    Knobs {
        brokers: 2,
        replication_factor: 2,
        min_insync_replicas: 1,
        records: 1,
        broker_crashes: 1,
        leader_epoch_max: 1,
        preferred_leader_election: false,
        ..Knobs::canonical()
    }
}

/// A group whose member reads a topic of one replica (broker 1), commits after each poll and
/// may crash once, while the broker that holds `__consumer_offsets-0` (broker 2, with
/// `offsets_replication_factor` 1) or its leader (with 2) may lose power: Kafka's coordinator
/// acknowledges a commit once it is below the HWM, not once it is on disk. With one replica the
/// partition goes offline and comes back in two elections (leader epoch 2); with two, one
/// election fails it over.
fn group_under_power_loss(offsets_replication_factor: u32, offset_reset: OffsetReset) -> Knobs {
    Knobs {
        replication_factor: 1,
        records: 2,
        consumers: 1,
        group: true,
        consumer_crashes: 1,
        offsets_replication_factor,
        offset_reset,
        unclean_shutdown: true,
        leader_epoch_max: if offsets_replication_factor == 1 {
            2
        } else {
            1
        },
        ..pair()
    }
}

/// `pair`, but instead of crashing, a live broker may once be fenced by the controller (it is
/// cut off from it): a leader that goes on believing it leads.
fn isolated_leader() -> Knobs {
    Knobs {
        broker_crashes: 0,
        false_suspicions: true,
        ..pair()
    }
}

/// Three brokers, replication factor 3, one record, one broker crash.
fn trio(min_insync_replicas: u32) -> Knobs {
    Knobs {
        min_insync_replicas,
        records: 1,
        leader_epoch_max: 1,
        preferred_leader_election: false,
        ..Knobs::canonical()
    }
}

const SEED_ACKS_0: &str = "003 Configuration 1: acks=0 (Fire and Forget)";
const SEED_ACKS_1: &str = "003 Configuration 2: acks=1 (Leader Acknowledgment)";
const SEED_MIN_ISR_1: &str = "003 Configuration 3: acks=all with min.insync.replicas=1 (Weak)";
const SEED_MIN_ISR_2: &str = "003 Configuration 4: acks=all with min.insync.replicas=2 (Strong)";
const SEED_RF_1: &str = "003 Configuration 6: replication.factor=1 (No Replication)";
const SEED_UNCLEAN: &str = "003 Configuration 7: unclean.leader.election.enable=true";
const SEED_IDEMPOTENCE: &str = "003 Configuration 5: leader fails mid-replication (idempotence)";
const SEED_SPLIT_BRAIN: &str = "003 Data Loss Scenario 5: Split Brain (Very Rare)";
const SEED_OLD_LEADER: &str = "003 What Happens When Old Leader Returns?";
const SEED_BOTH_FAIL: &str = "003 Data Loss Scenario 2: acks=all, Both Leader and Follower Fail";
const SEED_OFFSETS_LOST: &str = "003 Data Loss Scenario 4: Committed Offsets Lost";
const SEED_OFFSETS_SAFE: &str = "003 Consumer Committed Offsets Are Safe";
const SEED_AUTO_COMMIT: &str = "003 Auto-commit Enabled (Default)";
const HISTORY: &str = "-";

/// The fixed list of scenarios, in the order the table prints them.
pub fn scenarios() -> Vec<Scenario> {
    use ClaimStatus::*;
    use Expected::*;
    let row = |name, claim, claim_status, knobs, property, expected| Scenario {
        name,
        claim,
        claim_status,
        knobs,
        property,
        expected,
    };
    let acks = |acks: &str| acks.parse::<Acks>().expect("valid acks");
    let mut rows = vec![
        row(
            "acks-0",
            SEED_ACKS_0,
            Confirmed,
            Knobs {
                acks: acks("0"),
                ..pair()
            },
            "SentRecordLost",
            Reachable,
        ),
        row(
            "acks-1",
            SEED_ACKS_1,
            Confirmed,
            Knobs {
                acks: acks("1"),
                ..pair()
            },
            "AcknowledgedRecordsSurvive",
            Violated,
        ),
        row(
            "acks-all-min-isr-1",
            SEED_MIN_ISR_1,
            Refuted,
            Knobs {
                isr_shrinks: 1,
                ..trio(1)
            },
            "AcknowledgedRecordsSurvive",
            Holds,
        ),
        row(
            "acks-all-min-isr-2",
            SEED_MIN_ISR_2,
            Confirmed,
            trio(2),
            "AcknowledgedRecordsSurvive",
            Holds,
        ),
        row(
            "acks-all-under-min-isr",
            HISTORY,
            None,
            Knobs {
                min_insync_replicas: 2,
                ..pair()
            },
            "ProduceUnderMinIsr",
            Reachable,
        ),
        row(
            "acks-all-under-min-isr-refused",
            HISTORY,
            None,
            Knobs {
                min_insync_replicas: 2,
                ..pair()
            },
            "NoAppendUnderMinIsr",
            Holds,
        ),
        // ... and an ISR of exactly min.insync.replicas takes it: the bound is not off by one.
        row(
            "acks-all-at-min-isr",
            HISTORY,
            None,
            Knobs {
                min_insync_replicas: 2,
                ..pair()
            },
            "AppendAtMinIsr",
            Reachable,
        ),
        row(
            "rf-1-offline",
            SEED_RF_1,
            Confirmed,
            Knobs {
                replication_factor: 1,
                ..pair()
            },
            "PartitionOffline",
            Reachable,
        ),
        row(
            "unclean-election-on",
            SEED_UNCLEAN,
            Confirmed,
            Knobs {
                unclean_leader_election: true,
                isr_shrinks: 1,
                ..pair()
            },
            "AcknowledgedRecordsSurvive",
            Violated,
        ),
        row(
            "unclean-election-off",
            SEED_UNCLEAN,
            Confirmed,
            Knobs {
                isr_shrinks: 1,
                ..pair()
            },
            "AcknowledgedRecordsSurvive",
            Holds,
        ),
        // The leader loses leadership while it holds the producer's request, which fails with
        // NotLeaderOrFollower, and the producer retries on the new leader. (The leader is cut
        // off rather than crashed: a crashed leader never answers, and the producer's
        // request.timeout.ms multiplies this space by more than 300.)
        row(
            "idempotence-off-retries",
            SEED_IDEMPOTENCE,
            Confirmed,
            isolated_leader(),
            "RecordDuplicated",
            Reachable,
        ),
        row(
            "idempotence-on-retries",
            SEED_IDEMPOTENCE,
            Confirmed,
            Knobs {
                idempotence: true,
                ..isolated_leader()
            },
            "RecordDuplicated",
            Unreachable,
        ),
        row(
            "split-brain-acks-1",
            SEED_SPLIT_BRAIN,
            Confirmed,
            Knobs {
                acks: acks("1"),
                ..isolated_leader()
            },
            "AcknowledgedRecordsSurvive",
            Violated,
        ),
        row(
            "split-brain-acks-all",
            SEED_SPLIT_BRAIN,
            Confirmed,
            isolated_leader(),
            "AcknowledgedRecordsSurvive",
            Holds,
        ),
        // Power loss: a broker restarts with only a prefix of its log (nothing was fsynced).
        // One such failure costs nothing; with the leader failing too, a replica that lost
        // its tail but stayed in the ISR is elected, and acknowledged records are gone although
        // unclean election is off.
        row(
            "unclean-shutdown-one",
            SEED_BOTH_FAIL,
            Confirmed,
            Knobs {
                min_insync_replicas: 2,
                unclean_shutdown: true,
                ..pair()
            },
            "AcknowledgedRecordsSurvive",
            Holds,
        ),
        row(
            "unclean-shutdown-then-leader-fails",
            SEED_BOTH_FAIL,
            Refuted,
            Knobs {
                min_insync_replicas: 2,
                unclean_shutdown: true,
                broker_crashes: 2,
                leader_epoch_max: 2,
                ..pair()
            },
            "AcknowledgedRecordsSurvive",
            Violated,
        ),
        row(
            "old-leader-truncates",
            SEED_OLD_LEADER,
            Confirmed,
            Knobs {
                acks: acks("1"),
                ..pair()
            },
            "DivergentTailTruncated",
            Reachable,
        ),
        row(
            "old-leader-logs-match",
            SEED_OLD_LEADER,
            Confirmed,
            Knobs {
                acks: acks("1"),
                ..pair()
            },
            "LogMatching",
            Holds,
        ),
    ];
    // KAFKA-15583 (Kafka 3.7): the HWM no longer advances while the ISR is under
    // min.insync.replicas. Before, a record appended while a follower was in the ISR was
    // committed by the leader alone once the follower dropped out, and the producer was told
    // NotEnoughReplicasAfterAppend; its retry wrote the record twice.
    for (name, before_3_7, expected) in [
        ("hwm-under-min-isr-before-3-7", true, Reachable),
        ("hwm-under-min-isr", false, Unreachable),
    ] {
        rows.push(row(
            name,
            HISTORY,
            None,
            Knobs {
                hwm_under_min_isr: before_3_7,
                ..under_min_isr()
            },
            "RecordDuplicated",
            expected,
        ));
    }
    // KIP-966: the same power loss and leader failure as `unclean-shutdown-then-leader-fails`.
    // With eligible leader replicas, the broker that lost its tail leaves the ISR when it
    // registers again (R54), even as its last member, and only a replica that left the ISR
    // under min.insync.replicas (R52, R53) or none may lead: no acknowledged record is lost.
    rows.push(row(
        "unclean-shutdown-then-leader-fails-kip-966",
        HISTORY,
        None,
        Knobs {
            min_insync_replicas: 2,
            unclean_shutdown: true,
            broker_crashes: 2,
            leader_epoch_max: 2,
            eligible_leader_replicas: true,
            ..pair()
        },
        "AcknowledgedRecordsSurvive",
        Holds,
    ));
    // KIP-966's bookkeeping (I33) where a replica is fenced twice: cut off (a false suspicion)
    // while the ISR is at min.insync.replicas, it joins the ELR; unfenced without rejoining the
    // ISR (a heartbeat sent before its crash), then fenced again, it stays eligible. The model
    // dropped it from the ELR until I33 found it (spec section 11).
    rows.push(row(
        "kip-966-fenced-twice-stays-eligible",
        HISTORY,
        None,
        Knobs {
            min_insync_replicas: 2,
            false_suspicions: true,
            leader_epoch_max: 2,
            eligible_leader_replicas: true,
            ..pair()
        },
        "EligibleLeaderReplicasKept",
        Holds,
    ));
    // Stale HWM checkpoints: Kafka writes them periodically, so a broker may restart with an
    // older HWM than it had. It happens within these bounds (M6), and costs no committed or
    // consumed record: a new leader's HWM that lags only hides records until it catches up.
    let stale = Knobs {
        stale_hwm_checkpoints: true,
        ..kip101_bug()
    };
    let consumed = Knobs {
        consumers: 1,
        ..stale.clone()
    };
    for (name, knobs, property, expected) in [
        (
            "stale-hwm-checkpoint",
            &stale,
            "StaleHwmCheckpoint",
            Reachable,
        ),
        (
            "stale-hwm-checkpoint-committed",
            &stale,
            "CommittedRecordsSurvive",
            Holds,
        ),
        (
            "stale-hwm-checkpoint-consumed",
            &consumed,
            "ConsumedRecordsStable",
            Holds,
        ),
    ] {
        rows.push(row(name, HISTORY, None, knobs.clone(), property, expected));
    }
    // Each earlier revision fails in the smallest configuration where its historical bug
    // occurs, and KIP-320 holds in that same configuration.
    for (protocol, property, knobs) in revision_configs() {
        rows.push(row(
            protocol.name(),
            HISTORY,
            None,
            Knobs {
                protocol,
                ..knobs.clone()
            },
            property,
            Violated,
        ));
    }
    // One configuration under two revisions, one property: the rule the later revision added
    // makes the difference.
    let across_revisions =
        |property: &'static str, knobs: Knobs, cases: [(&'static str, Protocol, Expected); 2]| {
            cases.map(|(name, protocol, expected)| {
                let knobs = Knobs {
                    protocol,
                    ..knobs.clone()
                };
                row(name, HISTORY, None, knobs, property, expected)
            })
        };
    // KAFKA-6361, which KIP-279 fixed: the epoch lookup of KIP-101 leaves a divergent log
    // after a fast failover back to a leader that never saw the follower's epoch.
    rows.extend(across_revisions(
        "EpochLookupLeftDivergence",
        kip279_bug(),
        [
            ("kip-101-fast-failover", Protocol::Kip101, Reachable),
            ("kip-279-fast-failover", Protocol::Kip279, Unreachable),
        ],
    ));
    rows.push(row(
        "kip-101-two-restarts",
        HISTORY,
        None,
        Knobs {
            protocol: Protocol::Kip101,
            ..kip101_bug()
        },
        "StrongIsr",
        Holds,
    ));
    rows.push(row(
        "kip-320-two-restarts",
        HISTORY,
        None,
        kip101_bug(),
        "StrongIsr",
        Holds,
    ));
    // R24's first comparison: a follower holds a record of an epoch its new leader skipped (it
    // led that epoch by preferred election and crashed before the other replica fetched), at an
    // offset the leader's log reaches. Only the epoch comparison finds that divergence; the end
    // offset comparison alone lets the follower rejoin the ISR with the wrong record.
    rows.push(row(
        "kip-320-skipped-epoch",
        HISTORY,
        None,
        skipped_epoch(),
        "StrongIsr",
        Holds,
    ));
    // R34 (KAFKA-7415): in the same configuration, a new leader is asked where an epoch it
    // skipped ends before it appends in its own (the shortest case: a preferred election to a
    // replica holding no record). Without its own epoch in its cache (KIP-279) it knows no epoch
    // at or after the one asked about and answers undefined; from KIP-320 on it answers.
    rows.extend(across_revisions(
        "EpochLookupUndefined",
        skipped_epoch(),
        [
            (
                "kip-279-skipped-epoch-undefined",
                Protocol::Kip279,
                Reachable,
            ),
            (
                "kip-320-skipped-epoch-answered",
                Protocol::Kip320,
                Unreachable,
            ),
        ],
    ));
    rows.push(row(
        "kip-320-stale-fetch",
        HISTORY,
        None,
        kip320_bug(),
        "NoAppendFromStaleEpoch",
        Holds,
    ));
    // KIP-320's fencing on the leader's side (R23): a follower fetch from another leader epoch
    // does reach a leader, and the leader refuses it.
    rows.push(row(
        "kip-320-fetch-from-other-epoch",
        HISTORY,
        None,
        kip320_bug(),
        "FetchFromOtherEpoch",
        Reachable,
    ));
    rows.push(row(
        "kip-320-fetch-fenced",
        HISTORY,
        None,
        kip320_bug(),
        "FetchFromOtherEpochTaken",
        Unreachable,
    ));
    // R26's sweep: a follower that caught up while the leader's ISR shrink was in flight is
    // proposed again when the controller's answer arrives, not only on a later record.
    rows.push(row(
        "isr-rejoin-on-isr-change",
        HISTORY,
        None,
        Knobs {
            isr_shrinks: 1,
            ..pair()
        },
        "IsrRejoinOnIsrChange",
        Reachable,
    ));
    // R1: a restarted controller bumps its controller epoch, so a request its earlier
    // incarnation sent, delivered late, is one brokers can tell is stale (R2 fences it).
    rows.push(row(
        "controller-restart-new-epoch",
        HISTORY,
        None,
        Knobs {
            controller_crashes: 1,
            network: Network::UNORDERED,
            ..pair()
        },
        "StaleControllerRequestInFlight",
        Reachable,
    ));
    rows.extend(group_scenarios());
    rows
}

/// Consumer groups (R57–R62): where committed offsets live decides what a restarted member
/// skips or reads again.
fn group_scenarios() -> Vec<Scenario> {
    use ClaimStatus::*;
    use Expected::*;
    let row = |name, claim, knobs, property, expected| Scenario {
        name,
        claim,
        claim_status: Confirmed,
        knobs,
        property,
        expected,
    };
    // Rows of the protocol's own rules, not of a seed claim.
    let rule_row = |name, knobs, property, expected| Scenario {
        name,
        claim: HISTORY,
        claim_status: None,
        knobs,
        property,
        expected,
    };
    vec![
        // The seed: offsets on one broker that fails, a new member finds nothing committed and
        // `latest` skips what was written meanwhile. A broker that merely stops leaves the
        // group without a coordinator (it waits, and skips nothing); one that loses power loses
        // the commit its HWM had acknowledged.
        row(
            "offsets-rf-1-latest",
            SEED_OFFSETS_LOST,
            group_under_power_loss(1, OffsetReset::Latest),
            "AtLeastOnce",
            Violated,
        ),
        // The seed's mitigation: `earliest` reads everything again rather than skip.
        row(
            "offsets-rf-1-earliest",
            SEED_OFFSETS_LOST,
            group_under_power_loss(1, OffsetReset::Earliest),
            "AtLeastOnce",
            Holds,
        ),
        row(
            "offsets-rf-1-earliest-reprocesses",
            SEED_OFFSETS_LOST,
            group_under_power_loss(1, OffsetReset::Earliest),
            "Reprocessed",
            Reachable,
        ),
        // The seed's other mitigation: replicated offsets survive the power loss. The one slow
        // row (5.4 million states): `SLOW_SCENARIOS`.
        row(
            "offsets-replicated-latest",
            SEED_OFFSETS_SAFE,
            group_under_power_loss(3, OffsetReset::Latest),
            "AtLeastOnce",
            Holds,
        ),
        // Auto-commit: a member that crashes between reading and its next commit reads again
        // what it had read, and loses nothing.
        row(
            "auto-commit-crash-duplicates",
            SEED_AUTO_COMMIT,
            auto_commit_crash(),
            "Reprocessed",
            Reachable,
        ),
        row(
            "auto-commit-crash-no-loss",
            SEED_AUTO_COMMIT,
            auto_commit_crash(),
            "AtLeastOnce",
            Holds,
        ),
        // R18 for the coordinator (`offsets.commit.required.acks=-1`): a coordinator whose ISR
        // is under min.insync.replicas writes no group record.
        rule_row(
            "coordinator-under-min-isr",
            coordinator_under_min_isr(),
            "GroupWriteUnderMinIsr",
            Reachable,
        ),
        rule_row(
            "coordinator-under-min-isr-refused",
            coordinator_under_min_isr(),
            "NoAppendUnderMinIsr",
            Holds,
        ),
    ]
}

/// Rows too slow for every test run (minutes each on this machine): `watermark matrix` runs
/// them, `tests/matrix.rs` leaves them to `scripts/matrix-slow.sh`, and BENCHMARKS.md records
/// their verdicts.
pub const SLOW_SCENARIOS: [&str; 1] = ["offsets-replicated-latest"];

/// An auto-committing member that crashes once, its offsets replicated, no broker crash.
fn auto_commit_crash() -> Knobs {
    Knobs {
        replication_factor: 1,
        records: 2,
        consumers: 1,
        group: true,
        auto_commit: true,
        consumer_crashes: 1,
        broker_crashes: 0,
        ..pair()
    }
}

/// A member of a group whose `__consumer_offsets` has two replicas and min.insync.replicas 2
/// (the topic's as well), whose leader may drop its follower from the ISR once: the coordinator
/// is left under the minimum (10,322 states; with a broker crash instead of the shrink, 1.9
/// million).
fn coordinator_under_min_isr() -> Knobs {
    Knobs {
        min_insync_replicas: 2,
        records: 1,
        consumers: 1,
        group: true,
        auto_commit: true,
        offsets_replication_factor: 2,
        broker_crashes: 0,
        isr_shrinks: 1,
        ..pair()
    }
}

/// KIP-101's bug: two replicas that both restart. The follower truncates to its HWM, which
/// lags the leader's, then the leader crashes and the follower leads without the record.
fn kip101_bug() -> Knobs {
    Knobs {
        broker_crashes: 2,
        leader_epoch_max: 2,
        ..pair()
    }
}

/// `kip101_bug` with leader epochs up to 3 and preferred election: a replica leads an epoch by
/// preference that the next leader skips (R24's epoch comparison, R34's own epoch).
fn skipped_epoch() -> Knobs {
    Knobs {
        leader_epoch_max: 3,
        preferred_leader_election: true,
        ..kip101_bug()
    }
}

/// KIP-320's bug: a fetch (or its response) from an older leader epoch, delayed past a leader
/// change, is applied: with two records, two replicas and two restarts.
fn kip320_bug() -> Knobs {
    Knobs {
        records: 2,
        ..kip101_bug()
    }
}

/// RF=2, min.insync.replicas=2, one record with `acks=all`, no idempotence; the follower may
/// crash once, and the leader never changes (leader epoch 0): the ISR goes under
/// min.insync.replicas and back, and nothing else duplicates a record.
fn under_min_isr() -> Knobs {
    Knobs {
        min_insync_replicas: 2,
        leader_epoch_max: 0,
        ..pair()
    }
}

/// KAFKA-6361 (KIP-279's bug): leader A appends a record its follower B has not fetched, both
/// crash in turn, and leadership goes A → B → A (B elected cleanly, A uncleanly) while A never
/// hears of B's epoch. B asks A where B's epoch ends; A, which never saw it, answers with where
/// its own next epoch starts, and under KIP-101 B keeps the record B wrote in its epoch at an
/// offset where A holds another. Three records, `acks=1` and unclean election, two restarts.
fn kip279_bug() -> Knobs {
    Knobs {
        records: 3,
        acks: Acks::Leader,
        unclean_leader_election: true,
        ..kip101_bug()
    }
}

/// Each earlier revision, the property it violates, and the smallest configuration found where
/// it does. `kip-101` and `kip-279` also differ, in `kip279_bug`'s configuration (M5).
fn revision_configs() -> Vec<(Protocol, &'static str, Knobs)> {
    vec![
        (Protocol::HwmTruncation, "StrongIsr", kip101_bug()),
        (Protocol::Kip101, "NoAppendFromStaleEpoch", kip320_bug()),
        (Protocol::Kip279, "NoAppendFromStaleEpoch", kip320_bug()),
    ]
}

/// Properties only the matrix asks about, beside spec.md's I and S properties.
pub fn matrix_properties() -> Vec<PropertyDef> {
    let p = |id, name, description, condition: properties::Condition| PropertyDef {
        name,
        id,
        expectation: Expectation::Sometimes,
        description,
        twin_of: Option::None,
        condition,
        applies: |_| true,
    };
    vec![
        p("M1", "SentRecordLost",
          "A record the producer has sent and moved past is in no log and no message in flight.",
          sent_record_lost),
        p("M2", "PartitionOffline",
          "The controller has no leader for a partition.",
          partition_offline),
        p("M3", "RecordDuplicated",
          "A log holds the same value at two offsets.",
          record_duplicated),
        p("M4", "DivergentTailTruncated",
          "A replica truncates a tail the current leader does not hold (e.g. a returning old leader's).",
          has_event::<{ event::DIVERGENT_TAIL_TRUNCATED}>),
        p("M5", "EpochLookupLeftDivergence",
          "A follower finished its epoch lookup (KIP-101, KIP-279) and fetches on, holding an entry other than the one its leader holds at that offset.",
          has_event::<{ event::LOOKUP_LEFT_DIVERGENCE}>),
        p("M6", "StaleHwmCheckpoint",
          "A broker crashed with a HWM checkpoint older than the HWM it had.",
          has_event::<{ event::HWM_CHECKPOINT_LAGGED}>),
        p("M7", "FetchFromOtherEpoch",
          "A follower fetch naming a current leader epoch other than the leader's reaches the leader.",
          has_event::<{ event::FETCH_FROM_OTHER_EPOCH}>),
        p("M8", "FetchFromOtherEpochTaken",
          "A leader takes a follower fetch naming another current leader epoch (records its progress or holds it) instead of refusing it (KIP-320).",
          has_event::<{ event::FETCH_FROM_OTHER_EPOCH_TAKEN}>),
        p("M9", "AppendAtMinIsr",
          "A leader appends an acks=all batch while its ISR is exactly min.insync.replicas, the smallest ISR that may take it (R18).",
          has_event::<{ event::APPEND_AT_MIN_ISR}>),
        p("M10", "IsrRejoinOnIsrChange",
          "A leader applying an ISR change from the controller asks, in the same step, to add a follower that caught up while the change was in flight (R26).",
          has_event::<{ event::ISR_REJOIN_ON_ISR_CHANGE}>),
        p("M11", "EpochLookupUndefined",
          "A leader answers a follower's epoch lookup with undefined for an epoch no newer than its own: its epoch cache lacks its own epoch (KAFKA-7415, R34), so the follower falls back to its HWM.",
          has_event::<{ event::EPOCH_LOOKUP_UNDEFINED}>),
    ]
}

/// M4–M11: the ghost recorded event `E` in the last step.
fn has_event<const E: u16>(_: &WatermarkModel, state: &State) -> bool {
    state.history.has_event(E)
}

/// A property by name: spec.md's or the matrix's.
pub fn property(name: &str) -> Option<PropertyDef> {
    properties::all()
        .into_iter()
        .chain(matrix_properties())
        .find(|p| p.name == name)
}

/// M1.
fn sent_record_lost(model: &WatermarkModel, state: &State) -> bool {
    let values = record_values(&model.knobs);
    let sent: Vec<&Value> = model
        .producer_indices()
        .enumerate()
        .filter_map(|(p, i)| state.actor_states[i].as_producer().map(|s| (p, s)))
        .flat_map(|(p, s)| {
            let first = p * model.knobs.records as usize;
            values[first..first + s.next_record as usize].iter()
        })
        .collect();
    sent.iter().any(|value| {
        let in_a_log = model.broker_indices().any(|i| {
            state.actor_states[i].as_broker().is_some_and(|b| {
                b.replicas
                    .values()
                    .any(|r| r.log.entries().any(|e| &e.record.value == *value))
            })
        });
        // (`Network::iter_all` does not terminate on stateright 0.31's ordered network.)
        let in_flight = properties::in_flight(state)
            .into_iter()
            .any(|(_, msg)| match msg {
                Msg::Produce(request) => request.records.iter().any(|r| &r.value == *value),
                _ => false,
            });
        !in_a_log && !in_flight
    })
}

/// M2.
fn partition_offline(_: &WatermarkModel, state: &State) -> bool {
    controller(state).is_some_and(|c| c.partitions.values().any(|p| p.leader.is_none()))
}

/// M3.
fn record_duplicated(model: &WatermarkModel, state: &State) -> bool {
    model.broker_indices().any(|i| {
        state.actor_states[i].as_broker().is_some_and(|b| {
            b.replicas.values().any(|r| {
                let entries: Vec<&LogEntry> = r.log.entries().collect();
                entries.iter().enumerate().any(|(o, e)| {
                    entries[o + 1..]
                        .iter()
                        .any(|f| f.record.value == e.record.value)
                })
            })
        })
    })
}

/// One row of the matrix, after checking.
pub struct Row<'a> {
    pub scenario: &'a Scenario,
    pub outcome: Outcome,
    pub verdict: Expected,
}

impl Row<'_> {
    pub fn matches(&self) -> bool {
        self.verdict == self.scenario.expected
    }
}

/// Checks one scenario: breadth first, so a counterexample is a shortest one, and stopping at
/// the first discovery, which decides the verdict.
pub fn check(scenario: &Scenario, threads: usize) -> Row<'_> {
    let def = property(scenario.property).expect("a known property");
    let outcome = run_properties(
        &scenario.knobs,
        vec![def],
        &RunOptions {
            strategy: Strategy::Bfs,
            threads,
            stop_when_found: Some(vec![scenario.property]),
            ..RunOptions::default()
        },
    );
    let p = outcome
        .property(scenario.property)
        .expect("the property was checked");
    let verdict = Expected::of(p.verdict);
    Row {
        scenario,
        outcome,
        verdict,
    }
}

/// A short configuration for the table: what differs between scenarios.
pub fn short_config(k: &Knobs) -> String {
    let mut parts = vec![
        format!("{} brokers RF={}", k.brokers, k.replication_factor),
        format!("minISR={}", k.min_insync_replicas),
        format!("acks={}", k.acks.as_str()),
        k.protocol.to_string(),
    ];
    if k.broker_crashes > 0 {
        parts.push(format!(
            "{} crash{}",
            k.broker_crashes,
            if k.broker_crashes == 1 { "" } else { "es" }
        ));
    }
    if k.controller_crashes > 0 {
        parts.push(format!("{} controller crash", k.controller_crashes));
    }
    if !k.network.ordered {
        parts.push("unordered".into());
    }
    if k.unclean_leader_election {
        parts.push("unclean".into());
    }
    if k.idempotence {
        parts.push("idempotent".into());
    }
    if k.false_suspicions {
        parts.push("isolation".into());
    }
    if k.unclean_shutdown {
        parts.push("power loss".into());
    }
    if k.group {
        parts.push(format!(
            "group offsets RF={} {} {} commit",
            k.offsets_rf(),
            k.offset_reset,
            if k.auto_commit { "auto" } else { "manual" }
        ));
    }
    if k.consumer_crashes > 0 {
        parts.push(format!("{} consumer crash", k.consumer_crashes));
    }
    if k.records > 1 {
        parts.push(format!("{} records", k.records));
    }
    if k.isr_shrinks > 0 {
        parts.push(format!("{} ISR shrink", k.isr_shrinks));
    }
    if k.leader_epoch_max == 0 {
        parts.push("no leader change".into());
    } else if k.leader_epoch_max > 1 {
        parts.push(format!("leader epoch <= {}", k.leader_epoch_max));
    }
    if k.preferred_leader_election {
        parts.push("preferred election".into());
    }
    if k.hwm_under_min_isr {
        parts.push("HWM under min ISR (before 3.7)".into());
    }
    if k.stale_hwm_checkpoints {
        parts.push("stale HWM checkpoints".into());
    }
    if k.eligible_leader_replicas {
        parts.push("KIP-966 ELR".into());
    }
    parts.join(" ")
}

impl Row<'_> {
    /// "confirmed" or "refuted" for rows about a seed claim; "-" for the protocol's history.
    pub fn claim_verdict(&self) -> &'static str {
        match (self.scenario.claim_status, self.matches()) {
            (ClaimStatus::None, _) => "-",
            (ClaimStatus::Confirmed, true) | (ClaimStatus::Refuted, false) => "confirmed",
            (ClaimStatus::Refuted, true) | (ClaimStatus::Confirmed, false) => "refuted",
        }
    }

    /// The discovery's trace (violation or reachable situation), if there is one.
    pub fn trace(&self) -> Option<Vec<crate::trace::TraceStep>> {
        self.outcome.trace(self.scenario.property)
    }

    /// The discovery as a sequence diagram (stateright's SVG).
    pub fn svg(&self) -> Option<String> {
        let path = self
            .outcome
            .property(self.scenario.property)?
            .path
            .clone()?;
        let model = WatermarkModel::new(self.outcome.knobs.clone());
        stateright::Model::as_svg(&model, path)
    }

    /// The Explorer path that opens the discovery (`watermark explore` with the same knobs).
    pub fn explorer_path(&self) -> Option<String> {
        let path = self
            .outcome
            .property(self.scenario.property)?
            .path
            .as_ref()?;
        crate::explorer::steps_path(&self.outcome.knobs, path).map(|s| format!("/#/steps/{s}"))
    }
}

/// The table and the traces, as `watermark matrix` prints them.
pub fn text(rows: &[Row]) -> String {
    let mut out = String::new();
    let header = [
        "scenario",
        "seed claim",
        "claim",
        "configuration",
        "property",
        "expected",
        "verdict",
        "unique states",
        "seconds",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.name.to_string(),
                r.scenario.claim.to_string(),
                r.claim_verdict().to_string(),
                short_config(&r.scenario.knobs),
                r.scenario.property.to_string(),
                r.scenario.expected.as_str().to_string(),
                if r.matches() {
                    r.verdict.as_str().to_string()
                } else {
                    format!("{} MISMATCH", r.verdict.as_str())
                },
                r.outcome.unique_states.to_string(),
                format!("{:.1}", r.outcome.seconds),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let mut s = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                s.push_str(&format!("{cell:>w$}", w = widths[c]));
            } else if c + 2 == row.len() {
                s.push_str(&format!("{cell:>w$}  ", w = widths[c]));
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header.map(String::from)));
    for row in &cells {
        out.push_str(&line(row));
    }
    let mismatches = rows.iter().filter(|r| !r.matches()).count();
    out.push_str(&format!(
        "\n{} scenarios, {} as expected, {} not\n",
        rows.len(),
        rows.len() - mismatches,
        mismatches
    ));
    for r in rows {
        let Some(steps) = r.trace() else {
            continue;
        };
        let kind = match r.verdict {
            Expected::Violated => "counterexample",
            _ => "trace",
        };
        out.push_str(&format!(
            "\n{} {} for {} ({}; {} steps):\n",
            r.scenario.name,
            kind,
            r.scenario.property,
            short_config(&r.scenario.knobs),
            steps.len()
        ));
        out.push_str(&crate::trace::to_text(&steps, "  "));
        if let Some(path) = r
            .outcome
            .property(r.scenario.property)
            .and_then(|p| p.path.as_ref())
        {
            out.push_str(&crate::explorer::open_hint(&r.outcome.knobs, path, "  "));
        }
    }
    out
}

/// The `--json` object.
pub fn json(rows: &[Row]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario.name,
                "claim": r.scenario.claim,
                "claim_verdict": r.claim_verdict(),
                "config": crate::report::knobs_json(&r.scenario.knobs),
                "property": r.scenario.property,
                "expected": r.scenario.expected.as_str(),
                "verdict": r.verdict.as_str(),
                "matches": r.matches(),
                "unique_states": r.outcome.unique_states,
                "seconds": r.outcome.seconds,
                "trace": r.trace(),
                "explorer_path": r.explorer_path(),
            })
        })
        .collect();
    serde_json::json!({ "rows": rows })
}
