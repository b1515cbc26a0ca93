//! The knobs of a model configuration, and the named presets. Spec: "Model bounds".

use serde::Serialize;
use std::fmt;
use watermark_model::{Acks, OffsetReset, Protocol};

/// What the network may do to a message in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Network {
    /// Per-channel FIFO, like Kafka's TCP connections. Otherwise messages overtake each other.
    pub ordered: bool,
    /// A message may be delivered any number of times.
    pub duplicating: bool,
    /// A message may be lost.
    pub lossy: bool,
}

impl Network {
    pub const UNORDERED: Network = Network {
        ordered: false,
        duplicating: false,
        lossy: false,
    };
    /// Per-channel FIFO, as Kafka's TCP connections deliver.
    pub const ORDERED: Network = Network {
        ordered: true,
        duplicating: false,
        lossy: false,
    };
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![if self.ordered { "ordered" } else { "unordered" }];
        if self.duplicating {
            parts.push("duplicating");
        }
        if self.lossy {
            parts.push("lossy");
        }
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    /// A comma-separated set of `unordered`, `ordered`, `duplicating`, `lossy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut network = Network::UNORDERED;
        for part in s.split([',', '+']).map(str::trim) {
            match part {
                "unordered" | "reliable" => {}
                "ordered" => network.ordered = true,
                "duplicating" => network.duplicating = true,
                "lossy" => network.lossy = true,
                _ => {
                    return Err(format!(
                        "unknown network '{part}'; expected a comma-separated set of unordered, ordered, duplicating, lossy"
                    ))
                }
            }
        }
        if network.ordered && network.duplicating {
            return Err("an ordered network cannot also be duplicating".into());
        }
        Ok(network)
    }
}

/// Everything that shapes a model: the cluster, the workload, the faults and the bounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Knobs {
    pub brokers: u32,
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    pub acks: Acks,
    pub unclean_leader_election: bool,
    pub idempotence: bool,
    pub producers: u32,
    pub consumers: u32,
    /// Records each producer writes.
    pub records: u32,
    /// Broker crashes in a run (each followed, or not, by a recovery).
    pub broker_crashes: u32,
    pub controller_crashes: u32,
    /// No partition's leader epoch goes past this.
    pub leader_epoch_max: u32,
    pub network: Network,
    pub protocol: Protocol,
    /// Attempts per batch (`retries` + 1).
    pub producer_attempts_max: u32,
    /// `max.in.flight.requests.per.connection`: each producer's unanswered batches, at most.
    pub max_in_flight_requests: u32,
    /// `fetch.max.bytes` and `replica.fetch.max.bytes`: a fetch response holds records up to
    /// this many bytes, and always at least one (KIP-74). A model record weighs
    /// `RECORD_OVERHEAD_BYTES` (24) plus its value (1 byte for `a`…`z`), so the default, 1, is
    /// one record per response, and 50 is two.
    pub fetch_bytes_max: u32,
    /// `batch.size`: likewise, the bytes of records one produce request holds, at least one.
    pub batch_bytes_max: u32,
    /// Whether producers and consumers time requests out.
    pub client_request_timeout: bool,
    /// `auto.leader.rebalance.enable`.
    pub preferred_leader_election: bool,
    /// How many times leaders may ask to drop lagging followers from the ISR. The model has no
    /// clock, so any follower short of the leader's log end may have lagged past
    /// `replica.lag.time.max.ms` at any moment; this bounds how often that happens.
    pub isr_shrinks: u32,
    /// Whether the controller may wrongly expire the session of a live broker (a GC pause, a
    /// partition between it and the controller). Crashed brokers are always fenced.
    pub false_suspicions: bool,
    /// Whether a broker crash may be an unclean shutdown (power loss) that cuts its logs to any
    /// prefix: nothing is fsynced under Kafka's default flush policy (`PowerLoss`).
    pub unclean_shutdown: bool,
    /// How many times brokers may pull metadata on their own (B7): the real cluster's periodic
    /// heartbeat, which carries the broker's metadata offset and is answered with what it
    /// lacks (R49). The model has no clock, so such a pull may come at any moment; this bounds
    /// how often. Pulls of what a broker knows it missed are not counted.
    pub metadata_pulls: u32,
    /// Whether a registered broker's heartbeat pulls what it lacks (R49). Off is the push-only
    /// variant, which never repairs a lost LeaderAndIsr: kept to show what the pull repairs.
    pub metadata_pull: bool,
    /// The high watermark advances while the ISR is under min.insync.replicas (before Kafka
    /// 3.7, KAFKA-15583; R28).
    pub hwm_under_min_isr: bool,
    /// Whether a broker crash may leave HWM checkpoints older than the HWM it had (Kafka
    /// checkpoints periodically): the checker injects such crashes, within `broker_crashes`.
    pub stale_hwm_checkpoints: bool,
    /// KIP-966: eligible leader replicas, and brokers that restart uncleanly leave every ISR and
    /// ELR (R52–R54). Needs Kafka 3.7's HWM rule.
    pub eligible_leader_replicas: bool,
    /// Whether the consumers are members of a group (`group.id`), with `__consumer_offsets`
    /// (one partition) among the topics (R57–R62).
    pub group: bool,
    /// `offsets.topic.replication.factor`, capped at the number of brokers as Kafka caps it
    /// when it creates the topic. Its replicas are the last brokers, the last one preferred, so
    /// that the coordinator and the data partition's leader are different brokers.
    pub offsets_replication_factor: u32,
    /// `auto.offset.reset` of the group's members.
    pub offset_reset: OffsetReset,
    /// `enable.auto.commit`: members commit on a timer; otherwise after each poll's records.
    pub auto_commit: bool,
    /// Consumer crashes in a run (each followed, or not, by a restart with an empty state).
    pub consumer_crashes: u32,
    /// Voters of the KRaft quorum (`controller.quorum.voters`). With more than one, `check`
    /// runs the quorum model (spec section 4a): these controllers, `brokers` observers, and
    /// `records` changes the active controller writes; the data plane is checked apart.
    pub controllers: u32,
}

impl Knobs {
    /// The canonical configuration: 3 brokers, one partition with 3 replicas,
    /// min.insync.replicas=2, acks=all, KIP-320, one producer writing 2 records, one broker crash.
    pub fn canonical() -> Self {
        Knobs {
            brokers: 3,
            partitions: 1,
            replication_factor: 3,
            min_insync_replicas: 2,
            acks: Acks::All,
            unclean_leader_election: false,
            idempotence: false,
            producers: 1,
            consumers: 0,
            records: 2,
            broker_crashes: 1,
            controller_crashes: 0,
            leader_epoch_max: 2,
            network: Network::ORDERED,
            protocol: Protocol::Kip320,
            producer_attempts_max: 2,
            max_in_flight_requests: 1,
            fetch_bytes_max: 1,
            batch_bytes_max: 1,
            client_request_timeout: false,
            preferred_leader_election: true,
            isr_shrinks: 0,
            false_suspicions: false,
            unclean_shutdown: false,
            metadata_pulls: 0,
            metadata_pull: true,
            hwm_under_min_isr: false,
            stale_hwm_checkpoints: false,
            eligible_leader_replicas: false,
            group: false,
            offsets_replication_factor: 3,
            offset_reset: OffsetReset::Earliest,
            auto_commit: false,
            consumer_crashes: 0,
            controllers: 1,
        }
    }

    /// Whether `check` runs the quorum model (spec section 4a) rather than the data plane.
    pub fn is_quorum(&self) -> bool {
        self.controllers > 1
    }

    /// The replication factor `__consumer_offsets` gets: `offsets_replication_factor`, capped
    /// at the number of brokers.
    pub fn offsets_rf(&self) -> u32 {
        self.offsets_replication_factor.min(self.brokers)
    }

    /// Checks that the knobs describe a cluster that can exist.
    pub fn validate(&self) -> Result<(), String> {
        if self.controllers == 0 {
            return Err("--controllers must be at least 1".to_string());
        }
        if self.is_quorum() {
            return self.validate_quorum();
        }
        let mut problems = Vec::new();
        if self.brokers == 0 {
            problems.push("--brokers must be at least 1".to_string());
        }
        if self.partitions == 0 {
            problems.push("--partitions must be at least 1".to_string());
        }
        if self.replication_factor == 0 || self.replication_factor > self.brokers {
            problems.push(format!(
                "--replication-factor must be between 1 and the number of brokers ({}), not {}",
                self.brokers, self.replication_factor
            ));
        }
        if self.min_insync_replicas == 0 || self.min_insync_replicas > self.replication_factor {
            problems.push(format!(
                "--min-insync-replicas must be between 1 and the replication factor ({}), not {}",
                self.replication_factor, self.min_insync_replicas
            ));
        }
        if self.producers == 0 && self.consumers == 0 {
            problems.push("a model needs at least one producer or consumer".to_string());
        }
        if self.producer_attempts_max == 0 {
            problems.push("producers need at least one attempt per batch".to_string());
        }
        if self.max_in_flight_requests == 0 {
            problems.push("--max-in-flight-requests must be at least 1".to_string());
        }
        if self.fetch_bytes_max == 0 || self.batch_bytes_max == 0 {
            problems.push(
                "--fetch-bytes-max and --batch-bytes-max must be at least 1 (1 is one record)"
                    .to_string(),
            );
        }
        if self.brokers > 9 || self.partitions > 8 || self.producers + self.consumers > 8 {
            problems.push("these knobs are far beyond what a model check can explore".to_string());
        }
        if self.group && self.consumers == 0 {
            problems.push("--group needs at least one consumer (--consumers)".to_string());
        }
        if self.group && self.offsets_replication_factor == 0 {
            problems.push("--offsets-replication-factor must be at least 1".to_string());
        }
        if self.consumers > self.partitions && self.group {
            problems.push(format!(
                "a group has one member per partition: at most --partitions ({}) consumers, not {}",
                self.partitions, self.consumers
            ));
        }
        if self.consumer_crashes > 0 && self.consumers == 0 {
            problems.push("--consumer-crashes needs a consumer (--consumers)".to_string());
        }
        if self.eligible_leader_replicas && self.hwm_under_min_isr {
            problems.push(
                "--eligible-leader-replicas needs Kafka 3.7's HWM rule: an eligible leader replica holds every committed record only because the HWM does not advance under min.insync.replicas (drop --hwm-under-min-isr)".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The quorum model's knobs (spec section 4a): it has controllers, observing brokers and
    /// metadata changes, and no partitions or clients.
    fn validate_quorum(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.controllers > 5 {
            problems.push(format!(
                "--controllers must be 1, 3 or 5 or so, at most 5, not {}",
                self.controllers
            ));
        }
        if self.producers > 0 || self.consumers > 0 || self.broker_crashes > 0 {
            problems.push(
                "with --controllers above 1, check runs the quorum model, which has no producers, consumers or broker crashes (the data plane is checked apart, spec section 4a): set --producers 0 --consumers 0 --broker-crashes 0, or start from --preset quorum".to_string(),
            );
        }
        if self.brokers > 3 || self.records > 3 || self.leader_epoch_max == 0 {
            problems.push(
                "the quorum model takes at most 3 observing brokers (--brokers, 0 is none) and 3 changes (--records), and --leader-epoch-max of at least 1".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// One line in Kafka's terms.
    pub fn summary(&self) -> String {
        let mut s = self.cluster_summary();
        if self.metadata_pulls > 0 {
            s.push_str(&format!(
                ", {} metadata pull{}",
                self.metadata_pulls,
                plural(self.metadata_pulls)
            ));
        }
        s.push_str(&format!(
            ", {} broker crash{}",
            self.broker_crashes,
            if self.broker_crashes == 1 { "" } else { "es" }
        ));
        if self.consumer_crashes > 0 {
            s.push_str(&format!(
                ", {} consumer crash{}",
                self.consumer_crashes,
                if self.consumer_crashes == 1 { "" } else { "es" }
            ));
        }
        if self.controller_crashes > 0 {
            s.push_str(&format!(
                ", {} controller crash{}",
                self.controller_crashes,
                if self.controller_crashes == 1 {
                    ""
                } else {
                    "es"
                }
            ));
        }
        s.push_str(&format!(
            ", leader epoch <= {}, {} network",
            self.leader_epoch_max, self.network
        ));
        s
    }

    /// The cluster and its clients, without the checker's bounds (crashes, epochs, network):
    /// what `watermark simulate` runs, where faults come from rates instead.
    pub fn cluster_summary(&self) -> String {
        let mut s = format!(
            "{} brokers, {} partition{}, RF={}, min.insync.replicas={}, acks={}, {}, {} producer{} x {} record{}",
            self.brokers,
            self.partitions,
            plural(self.partitions),
            self.replication_factor,
            self.min_insync_replicas,
            self.acks,
            self.protocol,
            self.producers,
            plural(self.producers),
            self.records,
            plural(self.records),
        );
        if self.consumers > 0 {
            s.push_str(&format!(
                ", {} consumer{}",
                self.consumers,
                plural(self.consumers)
            ));
        }
        if self.group {
            s.push_str(&format!(
                ", group (offsets RF={}, auto.offset.reset={}, {} commit)",
                self.offsets_rf(),
                self.offset_reset,
                if self.auto_commit { "auto" } else { "manual" }
            ));
        }
        if self.idempotence {
            s.push_str(", idempotent");
        }
        if self.max_in_flight_requests > 1 {
            s.push_str(&format!(
                ", {} requests in flight",
                self.max_in_flight_requests
            ));
        }
        if self.batch_bytes_max > 1 {
            s.push_str(&format!(", batch.size={}", self.batch_bytes_max));
        }
        if self.fetch_bytes_max > 1 {
            s.push_str(&format!(", fetch.max.bytes={}", self.fetch_bytes_max));
        }
        if self.unclean_leader_election {
            s.push_str(", unclean election");
        }
        if self.false_suspicions {
            s.push_str(", false suspicions");
        }
        if self.unclean_shutdown {
            s.push_str(", unclean shutdowns");
        }
        if !self.metadata_pull {
            s.push_str(", push-only metadata");
        }
        if self.hwm_under_min_isr {
            s.push_str(", HWM under min ISR (before 3.7)");
        }
        if self.stale_hwm_checkpoints {
            s.push_str(", stale HWM checkpoints");
        }
        if self.eligible_leader_replicas {
            s.push_str(", eligible leader replicas (KIP-966)");
        }
        s
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A named configuration.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub knobs: Knobs,
}

/// Every preset; the first is the default of `watermark check`.
pub fn presets() -> Vec<Preset> {
    let canonical = Knobs::canonical();
    // Two brokers with min.insync.replicas=1 keep the smaller presets small while leaving room
    // for a failover: the surviving replica can still take acks=all writes.
    let pair = Knobs {
        brokers: 2,
        replication_factor: 2,
        min_insync_replicas: 1,
        ..canonical.clone()
    };
    // The KRaft quorum (spec section 4a): 3 controllers, one change, epochs up to 2 (one
    // election after the running start), an ordered network.
    let quorum = Knobs {
        controllers: 3,
        brokers: 0,
        records: 1,
        producers: 0,
        consumers: 0,
        broker_crashes: 0,
        controller_crashes: 1,
        leader_epoch_max: 2,
        network: Network::ORDERED,
        ..canonical.clone()
    };
    vec![
        Preset {
            name: "canonical",
            description: "The reference configuration, checked exhaustively.",
            knobs: canonical.clone(),
        },
        Preset {
            name: "two-partitions",
            description: "Two partitions led by different brokers; a crash hits both.",
            knobs: Knobs {
                partitions: 2,
                records: 3,
                ..pair.clone()
            },
        },
        Preset {
            name: "controller-crash",
            description: "The controller restarts; brokers fence requests of its older epoch, which the unordered network can deliver late.",
            knobs: Knobs {
                controller_crashes: 1,
                records: 1,
                network: Network::UNORDERED,
                ..pair.clone()
            },
        },
        Preset {
            name: "lossy-duplicating",
            description: "Messages are lost and duplicated; brokers retransmit, the idempotent producer's retries are deduplicated. No leader change or ISR shrink: with either, the space exceeds this machine's memory.",
            knobs: Knobs {
                records: 1,
                broker_crashes: 0,
                leader_epoch_max: 0,
                idempotence: true,
                network: Network {
                    ordered: false,
                    duplicating: true,
                    lossy: true,
                },
                preferred_leader_election: false,
                ..pair.clone()
            },
        },
        Preset {
            name: "lossy",
            description: "Ordered channels that lose messages, controller messages included: the real cluster's transport. Everything is retransmitted; a restarted broker's repeated registration pulls what it lacks.",
            knobs: Knobs {
                records: 1,
                network: Network {
                    ordered: true,
                    duplicating: false,
                    lossy: true,
                },
                ..pair.clone()
            },
        },
        Preset {
            name: "lossy-metadata",
            description: "A LeaderAndIsr lost in a failover is repaired by the broker's next heartbeat, which pulls what it lacks (KIP-631). Ordered lossy channels, one pull at any moment; no records, so that the pull fits.",
            knobs: Knobs {
                records: 0,
                leader_epoch_max: 1,
                preferred_leader_election: false,
                network: Network {
                    ordered: true,
                    duplicating: false,
                    lossy: true,
                },
                metadata_pulls: 1,
                ..pair.clone()
            },
        },
        Preset {
            name: "metadata-gap",
            description: "Two partitions, each led by its own broker, whose leaders shrink their ISRs: an AlterPartition answer can follow on another leader's change this broker never got, and its metadata offset must not move over the gap (I35). One metadata pull, no records, no crash.",
            knobs: Knobs {
                partitions: 2,
                records: 0,
                broker_crashes: 0,
                isr_shrinks: 2,
                leader_epoch_max: 1,
                preferred_leader_election: false,
                metadata_pulls: 1,
                ..pair.clone()
            },
        },
        Preset {
            name: "consumer",
            description: "A consumer reads while leadership moves.",
            knobs: Knobs {
                consumers: 1,
                ..pair.clone()
            },
        },
        Preset {
            name: "consumer-group",
            description: "A group member auto-commits as it reads, crashes and resumes at its group's committed offset, while the coordinator (the leader of __consumer_offsets-0, RF=2) may fail over. The data partition has one replica, to keep the space small.",
            knobs: Knobs {
                replication_factor: 1,
                consumers: 1,
                records: 1,
                group: true,
                auto_commit: true,
                consumer_crashes: 1,
                leader_epoch_max: 1,
                preferred_leader_election: false,
                ..pair.clone()
            },
        },
        Preset {
            name: "idempotent",
            description: "An idempotent producer whose retries after a leader change must not duplicate.",
            knobs: Knobs {
                idempotence: true,
                ..pair.clone()
            },
        },
        Preset {
            name: "pipelined",
            description: "An idempotent producer with 2 batches in flight (max.in.flight.requests.per.connection=2) across a leader change: records stay in order, once each.",
            knobs: Knobs {
                idempotence: true,
                records: 3,
                max_in_flight_requests: 2,
                ..pair.clone()
            },
        },
        Preset {
            name: "batched",
            description: "Produce requests and fetch responses of two records (batch.size and fetch.max.bytes of 50 bytes, two model records) while leadership moves; a consumer reads.",
            knobs: Knobs {
                records: 3,
                consumers: 1,
                fetch_bytes_max: 50,
                batch_bytes_max: 50,
                ..pair.clone()
            },
        },
        Preset {
            name: "slow-follower",
            description: "A leader may drop a lagging follower from the ISR, which then catches up and rejoins.",
            knobs: Knobs {
                isr_shrinks: 1,
                ..pair
            },
        },
        Preset {
            name: "quorum",
            description: "KRaft: 3 controllers replicate the metadata log; the active one writes a change, one controller crashes (the active one or not) and the others elect a leader by vote. Checked as a model of its own (spec section 4a).",
            knobs: quorum.clone(),
        },
        Preset {
            name: "quorum-elections",
            description: "KRaft with epochs up to 3: a controller suspects its live leader once, and elections may split, so a third epoch is elected over the second's candidates and votes. No crash.",
            knobs: Knobs {
                controller_crashes: 0,
                false_suspicions: true,
                leader_epoch_max: 3,
                ..quorum.clone()
            },
        },
        Preset {
            name: "quorum-observer",
            description: "KRaft with a broker observing the metadata log: a controller suspects its live leader once and stands for election; the broker follows the new leader and applies only committed metadata.",
            knobs: Knobs {
                brokers: 1,
                controller_crashes: 0,
                false_suspicions: true,
                ..quorum
            },
        },
    ]
}

pub fn preset(name: &str) -> Result<Preset, String> {
    presets()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = presets().iter().map(|p| p.name).collect();
            format!(
                "unknown preset '{name}'; known presets: {}",
                names.join(", ")
            )
        })
}

impl Knobs {
    /// The `watermark` knob flags that turn `base` into these knobs, e.g.
    /// `["--broker-crashes", "2"]`. Boolean knobs are spelled `--idempotence=false`.
    pub fn flags_from(&self, base: &Knobs) -> Vec<String> {
        let mut flags = Vec::new();
        let mut set = |flag: &str, value: String| {
            flags.push(format!("--{flag}"));
            flags.push(value);
        };
        macro_rules! diff {
            ($($field:ident => $flag:literal),* $(,)?) => {
                $(if self.$field != base.$field { set($flag, self.$field.to_string()); })*
            };
        }
        diff!(
            brokers => "brokers",
            partitions => "partitions",
            replication_factor => "replication-factor",
            min_insync_replicas => "min-insync-replicas",
            acks => "acks",
            producers => "producers",
            consumers => "consumers",
            records => "records",
            broker_crashes => "broker-crashes",
            controller_crashes => "controller-crashes",
            leader_epoch_max => "leader-epoch-max",
            network => "network",
            protocol => "protocol",
            producer_attempts_max => "producer-attempts-max",
            max_in_flight_requests => "max-in-flight-requests",
            fetch_bytes_max => "fetch-bytes-max",
            batch_bytes_max => "batch-bytes-max",
            isr_shrinks => "isr-shrinks",
            metadata_pulls => "metadata-pulls",
            offsets_replication_factor => "offsets-replication-factor",
            offset_reset => "auto-offset-reset",
            consumer_crashes => "consumer-crashes",
        );
        let mut toggle = |flag: &str, value: bool| flags.push(format!("--{flag}={value}"));
        macro_rules! diff_bool {
            ($($field:ident => $flag:literal),* $(,)?) => {
                $(if self.$field != base.$field { toggle($flag, self.$field); })*
            };
        }
        diff_bool!(
            unclean_leader_election => "unclean-election",
            idempotence => "idempotence",
            client_request_timeout => "client-request-timeout",
            preferred_leader_election => "preferred-leader-election",
            false_suspicions => "false-suspicions",
            unclean_shutdown => "unclean-shutdown",
            metadata_pull => "metadata-pull",
            hwm_under_min_isr => "hwm-under-min-isr",
            stale_hwm_checkpoints => "stale-hwm-checkpoints",
            eligible_leader_replicas => "eligible-leader-replicas",
            group => "group",
            auto_commit => "enable-auto-commit",
        );
        flags
    }

    /// The shortest `--preset NAME` plus knob flags that give these knobs.
    pub fn preset_and_flags(&self) -> Vec<String> {
        presets()
            .into_iter()
            .map(|p| {
                let mut args = vec!["--preset".to_string(), p.name.to_string()];
                args.extend(self.flags_from(&p.knobs));
                args
            })
            .min_by_key(|args| args.len())
            .expect("there are presets")
    }
}
