//! The controller: broker sessions, leader election, ISR changes. Spec: "Controller", rules
//! R1–R9.
//!
//! The controller owns the authoritative partition table. Brokers heartbeat to it; a broker
//! whose session expires is fenced, dropped from every ISR it is in (never emptying one), and
//! its leaderships move to the first live in-ISR replica in assignment order. Leaders ask it to
//! change their ISR (AlterPartition) and it accepts only requests stamped with the current leader
//! and partition epochs. Everything it decides is persisted before it is sent.

use crate::collections::{BrokerIds, PartitionMap};
use crate::config::{initial_partitions, ControllerConfig};
use crate::msg::{Msg, PartitionState, TopicConfigChanges, TopicConfigs};
use crate::node::{Node, Storage, Timer};
use crate::outbox::Outbox;
use crate::rules::*;
use crate::types::*;
use serde::{Deserialize, Serialize};
use stateright::actor::{Id, Out};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The controller's view of one broker.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The incarnation the controller knows.
    pub broker_epoch: BrokerEpoch,
    /// Fenced brokers are considered dead: they lead nothing and join no ISR.
    pub fenced: bool,
}

/// The controller's whole state, which is also what it persists.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ControllerState {
    pub controller_epoch: ControllerEpoch,
    /// Indexed like `ClusterConfig::brokers`.
    pub brokers: Vec<(BrokerId, BrokerRegistration)>,
    pub partitions: PartitionMap<PartitionState>,
    /// R50: the offset of the newest metadata record. Every change of a partition's state is
    /// one record, as KRaft writes a `PartitionChangeRecord`; 0 is the bootstrapped state.
    pub metadata_offset: MetadataOffset,
    /// R50: the metadata offset of each partition's newest change (0: bootstrapped, unchanged).
    pub partition_offsets: PartitionMap<MetadataOffset>,
}

impl ControllerState {
    pub fn registration(&self, broker_id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers
            .iter()
            .find(|(b, _)| *b == broker_id)
            .map(|(_, r)| r)
    }

    fn registration_mut(&mut self, broker_id: BrokerId) -> Option<&mut BrokerRegistration> {
        self.brokers
            .iter_mut()
            .find(|(b, _)| *b == broker_id)
            .map(|(_, r)| r)
    }

    pub fn is_live(&self, broker_id: BrokerId) -> bool {
        self.registration(broker_id).is_some_and(|r| !r.fenced)
    }

    fn live_brokers(&self) -> Vec<BrokerId> {
        self.brokers
            .iter()
            .filter(|(_, r)| !r.fenced)
            .map(|(b, _)| *b)
            .collect()
    }

    /// R50: the partition changed; its new state is the next metadata record.
    fn record_change(&mut self, tp: &TopicPartition) {
        fired(R50);
        self.metadata_offset += 1;
        self.partition_offsets
            .insert(tp.clone(), self.metadata_offset);
    }

    /// R49: every partition changed after `base` (every partition for `None`), in partition
    /// order.
    pub fn changed_since(&self, base: Option<MetadataOffset>) -> Vec<PartitionState> {
        self.partitions
            .iter()
            .filter(|(tp, _)| {
                base.is_none_or(|b| self.partition_offsets.get(tp).copied().unwrap_or(0) > b)
            })
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The bytes the whole partition table takes in a message, at most (R46).
    pub fn metadata_size_bytes_max(&self) -> u64 {
        self.partitions.values().map(|p| p.size_bytes_max()).sum()
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Controller {
    pub config: ControllerConfig,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Self {
        Controller { config }
    }

    fn arm_timers(&self, o: &mut Out<Node>) {
        let timing = &self.config.cluster.timing;
        for (broker_id, _) in &self.config.cluster.brokers {
            o.set_timer(
                Timer::SessionTimeout(*broker_id),
                timing.session_timeout.clone(),
            );
        }
        if self.config.preferred_leader_election {
            o.set_timer(
                Timer::PreferredLeaderElection,
                timing.preferred_leader_election_interval.clone(),
            );
        }
    }

    /// R1: on first start, take the configured topics' initial partition states, which every
    /// broker derives too (metadata offset 0), and treat every configured broker as registered in
    /// its first incarnation. On restart, bump the controller epoch and resend every partition's
    /// state stamped with it.
    pub fn start(
        &self,
        _id: Id,
        storage: Option<&ControllerState>,
        o: &mut Out<Node>,
    ) -> ControllerState {
        let epoch = storage.map_or(1, |s| s.controller_epoch + 1);
        self.start_in_epoch(storage, epoch, o)
    }

    /// R1, R73: start as [`Controller::start`] does, in `controller_epoch`: for a controller of
    /// a KRaft quorum, the epoch in which it leads the quorum, and `storage` the newest
    /// controller record of its log.
    pub fn start_in_epoch(
        &self,
        storage: Option<&ControllerState>,
        controller_epoch: ControllerEpoch,
        o: &mut Out<Node>,
    ) -> ControllerState {
        let state = match storage {
            Some(stored) => ControllerState {
                controller_epoch,
                ..stored.clone()
            },
            None => ControllerState {
                controller_epoch,
                brokers: self
                    .config
                    .cluster
                    .brokers
                    .iter()
                    .map(|(b, _)| {
                        (
                            *b,
                            BrokerRegistration {
                                broker_epoch: 0,
                                fenced: false,
                            },
                        )
                    })
                    .collect(),
                partitions: initial_partitions(&self.config.cluster.topics)
                    .into_iter()
                    .map(|p| (p.topic_partition.clone(), p))
                    .collect(),
                metadata_offset: 0,
                partition_offsets: PartitionMap::new(),
            },
        };
        fired(R1);
        self.arm_timers(o);
        let mut outbox = Outbox::new();
        outbox.persist();
        if storage.is_some() {
            self.propagate(&state, None, None, &mut outbox);
        }
        outbox.flush(o, || Storage::Controller(Arc::new(state.clone())));
        state
    }

    pub fn on_msg(&self, state: &mut Cow<ControllerState>, src: Id, msg: Msg, o: &mut Out<Node>) {
        let mut outbox = Outbox::new();
        let base = state.metadata_offset;
        match msg {
            Msg::BrokerHeartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
            } => match state.registration(broker_id).copied() {
                // Not a broker of this cluster.
                None => return,
                // R3: a heartbeat from an older incarnation of the broker is ignored.
                Some(r) if broker_epoch < r.broker_epoch => fired(R3),
                // R4: the broker restarted. Its previous incarnation is dead: fence it, then
                // register the new one.
                Some(r) if broker_epoch > r.broker_epoch => {
                    fired(R4);
                    self.register(state.to_mut(), broker_id, broker_epoch, &mut outbox);
                    self.answer_heartbeat(
                        state,
                        src,
                        broker_id,
                        metadata_offset,
                        base,
                        true,
                        &mut outbox,
                    );
                }
                // R5: a fenced broker that is alive asks to be unfenced.
                Some(r) if r.fenced => {
                    fired(R5);
                    self.unfence(state.to_mut(), broker_id, &mut outbox);
                    self.answer_heartbeat(
                        state,
                        src,
                        broker_id,
                        metadata_offset,
                        base,
                        true,
                        &mut outbox,
                    );
                }
                // R6: a heartbeat from a live broker keeps its session.
                Some(_) => {
                    fired(R6);
                    o.set_timer(
                        Timer::SessionTimeout(broker_id),
                        self.config.cluster.timing.session_timeout.clone(),
                    );
                    self.answer_heartbeat(
                        state,
                        src,
                        broker_id,
                        metadata_offset,
                        base,
                        self.config.cluster.metadata_pull,
                        &mut outbox,
                    );
                }
            },
            Msg::AlterPartition {
                broker_id,
                broker_epoch,
                topic_partition,
                leader_epoch,
                partition_epoch,
                new_isr,
                broker_epochs,
            } => {
                let result = self.alter_partition(
                    state,
                    broker_id,
                    broker_epoch,
                    &topic_partition,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                    &broker_epochs,
                );
                if state.metadata_offset > base {
                    outbox.persist();
                }
                let current = match result {
                    Ok(_) => None,
                    Err(_) => state
                        .partitions
                        .get(&topic_partition)
                        .cloned()
                        .map(Arc::new),
                };
                let result = result.map(Arc::new);
                // R7, R8: the leader learns the change from the answer; the other brokers pull
                // it with their next heartbeat (R49), as Kafka propagated ISR changes lazily.
                outbox.send(
                    src,
                    Msg::AlterPartitionResponse {
                        controller_epoch: state.controller_epoch,
                        topic_partition,
                        result,
                        current,
                        base_metadata_offset: Some(base),
                        metadata_offset: state.metadata_offset,
                    },
                );
            }
            Msg::CreateTopics {
                topic,
                partitions,
                replication_factor,
                configs,
                client,
            } => {
                let result =
                    self.create_topic(state, &topic, partitions, replication_factor, configs);
                if result.is_ok() {
                    // R46: persisted, then sent like any change (R0), then answered.
                    outbox.persist();
                    self.propagate(state, Some(base), None, &mut outbox);
                }
                let (result, error_message) = match result {
                    Ok(()) => (Ok(()), None),
                    Err((error, message)) => (Err(error), Some(Arc::from(message.as_str()))),
                };
                outbox.send(
                    client.unwrap_or(src),
                    Msg::CreateTopicsResponse {
                        topic,
                        result,
                        error_message,
                    },
                );
            }
            Msg::ElectLeaders {
                election,
                partitions,
                client,
            } => {
                // R55: elections on demand, persisted and pushed like any change, then answered.
                fired(R55);
                let results = self.elect_on_demand(state, election, partitions.as_deref());
                if state.metadata_offset > base {
                    outbox.persist();
                    self.propagate(state, Some(base), None, &mut outbox);
                }
                outbox.send(
                    client.unwrap_or(src),
                    Msg::ElectLeadersResponse {
                        election,
                        results: results.into(),
                    },
                );
            }
            Msg::IncrementalAlterConfigs {
                topic,
                changes,
                client,
            } => {
                // R56: persisted, then pushed like any change (R0, R50), then answered.
                fired(R56);
                let result = self.alter_configs(state, &topic, changes);
                if state.metadata_offset > base {
                    outbox.persist();
                    self.propagate(state, Some(base), None, &mut outbox);
                }
                let (result, error_message) = match result {
                    Ok(configs) => (Ok(configs), None),
                    Err((error, message)) => (Err(error), Some(Arc::from(message.as_str()))),
                };
                outbox.send(
                    client.unwrap_or(src),
                    Msg::IncrementalAlterConfigsResponse {
                        topic,
                        result,
                        error_message,
                    },
                );
            }
            Msg::DescribeTopics { topic, client } => {
                // R47: the authoritative partition table, and which brokers are live.
                fired(R47);
                let partitions: Vec<PartitionState> = state
                    .partitions
                    .values()
                    .filter(|p| topic.as_ref().is_none_or(|t| *t == p.topic_partition.topic))
                    .cloned()
                    .collect();
                let brokers: Vec<(BrokerId, bool)> =
                    state.brokers.iter().map(|(b, r)| (*b, !r.fenced)).collect();
                outbox.send(
                    client.unwrap_or(src),
                    Msg::DescribeTopicsResponse {
                        brokers: brokers.into(),
                        racks: self
                            .config
                            .racks
                            .iter()
                            .map(|(b, r)| (*b, Arc::from(r.as_str())))
                            .collect(),
                        partitions: partitions.into(),
                    },
                );
            }
            _ => {}
        }
        outbox.flush(o, || Storage::Controller(Arc::new(state.as_ref().clone())));
    }

    /// R55: a preferred election moves leadership to each named partition's preferred replica
    /// where it is live, in the ISR and not leading (as R9 does on its timer); an unclean one
    /// elects the first live replica of each named partition that has no leader, which becomes
    /// the whole ISR (as R2 does with `unclean.leader.election.enable`). Unknown partitions and
    /// those where nothing can or need be done get an error each.
    fn elect_on_demand(
        &self,
        state: &mut Cow<ControllerState>,
        election: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Result<BrokerId, ErrorCode>)> {
        let named: Vec<TopicPartition> = match partitions {
            Some(ps) => ps.to_vec(),
            None => state.partitions.keys().cloned().collect(),
        };
        let live = state.live_brokers();
        let mut results = Vec::with_capacity(named.len());
        for tp in named {
            let Some(p) = state.partitions.get(&tp) else {
                results.push((tp, Err(ErrorCode::UnknownTopicOrPartition)));
                continue;
            };
            let chosen = match election {
                ElectionType::Preferred => {
                    let preferred = p.replicas[0];
                    if p.leader == Some(preferred) {
                        Err(ErrorCode::ElectionNotNeeded)
                    } else if p.isr.contains(&preferred) && live.contains(&preferred) {
                        Ok(Election {
                            leader: Some(preferred),
                            isr: p.isr.clone(),
                            elr: p.elr.clone(),
                        })
                    } else {
                        Err(ErrorCode::PreferredLeaderNotAvailable)
                    }
                }
                ElectionType::Unclean if p.leader.is_some() => Err(ErrorCode::ElectionNotNeeded),
                ElectionType::Unclean => elect(&p.replicas, &p.isr, &p.elr, &live, true)
                    .ok_or(ErrorCode::EligibleLeadersNotAvailable),
            };
            match chosen {
                Ok(e) => {
                    let leader = e.leader.expect("an election names a leader");
                    let state = state.to_mut();
                    let p = state.partitions.get_mut(&tp).expect("looked up above");
                    if apply_change(p, e) {
                        state.record_change(&tp);
                    }
                    results.push((tp, Ok(leader)));
                }
                Err(error) => results.push((tp, Err(error))),
            }
        }
        results
    }

    /// R4: a new incarnation of a broker: its old one is fenced (its leaderships move, it leaves
    /// ISRs), then the new one is registered and unfenced.
    fn register(
        &self,
        state: &mut ControllerState,
        broker_id: BrokerId,
        broker_epoch: BrokerEpoch,
        outbox: &mut Outbox,
    ) {
        // R54: with KIP-966, the restart was unclean (there is no controlled shutdown): the
        // broker may have lost the tail of its logs, so it leaves every ISR and ELR.
        let departure = if self.config.cluster.eligible_leader_replicas {
            fired(R54);
            Departure::UncleanRestart
        } else {
            Departure::Fenced
        };
        self.fence(state, broker_id, departure);
        let r = state.registration_mut(broker_id).expect("registered");
        r.broker_epoch = broker_epoch;
        self.unfence(state, broker_id, outbox);
    }

    /// R4–R6, R49: push what changed to the other live brokers, and answer the heartbeat with
    /// every partition changed after the broker's metadata offset: for a restarted broker (no
    /// offset), the whole table. What changed is persisted already: R4 and R5 change state
    /// only through `unfence`, which persists, and R6 changes nothing. Without `pull` (the
    /// push-only variant, `ClusterConfig::metadata_pull`) a registered broker's heartbeat is
    /// answered with nothing.
    #[allow(clippy::too_many_arguments)]
    fn answer_heartbeat(
        &self,
        state: &ControllerState,
        src: Id,
        broker_id: BrokerId,
        metadata_offset: Option<MetadataOffset>,
        base: MetadataOffset,
        pull: bool,
        outbox: &mut Outbox,
    ) {
        if pull {
            fired(R49);
        }
        let metadata_offset = if pull {
            metadata_offset
        } else {
            Some(state.metadata_offset)
        };
        // The heartbeating broker learns the change from the answer.
        self.propagate(state, Some(base), Some(broker_id), outbox);
        let broker_epoch = state.registration(broker_id).map_or(0, |r| r.broker_epoch);
        outbox.send(
            src,
            Msg::BrokerHeartbeatResponse {
                controller_epoch: state.controller_epoch,
                broker_epoch,
                is_fenced: false,
                base_metadata_offset: metadata_offset,
                metadata_offset: state.metadata_offset,
                partitions: state.changed_since(metadata_offset).into(),
            },
        );
    }

    /// R46: create a topic, if the request is valid and the cluster can carry it. Replica `i` of
    /// partition `p` goes to the broker at position `(p + i) mod n` of the brokers in
    /// rack-alternated order (Kafka's assignment, starting at the first broker; with racks,
    /// consecutive replicas sit on different racks); the leader is the first live replica, and
    /// the ISR the live replicas (all of them, offline, if none is live).
    fn create_topic(
        &self,
        state: &mut Cow<ControllerState>,
        topic: &Topic,
        partitions: u32,
        replication_factor: u32,
        configs: TopicConfigs,
    ) -> Result<(), (ErrorCode, String)> {
        fired(R46);
        validate_topic_name(topic.as_str()).map_err(|m| (ErrorCode::InvalidTopic, m))?;
        if state.partitions.keys().any(|tp| tp.topic == *topic) {
            return Err((
                ErrorCode::TopicAlreadyExists,
                format!("topic '{topic}' already exists"),
            ));
        }
        if partitions == 0 {
            return Err((
                ErrorCode::InvalidPartitions,
                "the number of partitions must be at least 1".into(),
            ));
        }
        let ids: Vec<BrokerId> = state.brokers.iter().map(|(b, _)| *b).collect();
        let brokers = crate::config::rack_alternated(&ids, &self.config.racks);
        if replication_factor == 0 || replication_factor as usize > brokers.len() {
            return Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} must be between 1 and the number of brokers ({})",
                    brokers.len()
                ),
            ));
        }
        check_min_insync_replicas(configs.min_insync_replicas, replication_factor)?;
        let new_states: Vec<PartitionState> = (0..partitions)
            .map(|p| {
                let replicas: Vec<BrokerId> = (0..replication_factor)
                    .map(|i| brokers[((p as u64 + i as u64) % brokers.len() as u64) as usize])
                    .collect();
                let live: Vec<BrokerId> = replicas
                    .iter()
                    .copied()
                    .filter(|b| state.is_live(*b))
                    .collect();
                let isr: BrokerIds = if live.is_empty() {
                    replicas.as_slice().into()
                } else {
                    live.as_slice().into()
                };
                PartitionState {
                    topic_partition: TopicPartition::new(topic, p),
                    leader: live.first().copied(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr,
                    elr: BrokerIds::default(),
                    replicas: replicas.as_slice().into(),
                    min_insync_replicas: configs.min_insync_replicas,
                    unclean_leader_election: configs.unclean_leader_election,
                }
            })
            .collect();
        // The whole table travels in one message (a restarted broker's pull, DescribeTopics),
        // so it must stay within what the transport carries.
        let added: u64 = new_states.iter().map(|p| p.size_bytes_max()).sum();
        let total = state.metadata_size_bytes_max() + added;
        if total > self.config.metadata_bytes_max {
            let per_partition = added / u64::from(partitions);
            let room = self
                .config
                .metadata_bytes_max
                .saturating_sub(state.metadata_size_bytes_max());
            return Err((
                ErrorCode::PolicyViolation,
                format!(
                    "the cluster's metadata would take up to {total} bytes, over the {} bytes one message carries (metadata.bytes.max); room is left for about {} more partitions like these",
                    self.config.metadata_bytes_max,
                    room / per_partition.max(1)
                ),
            ));
        }
        let state = state.to_mut();
        for p in new_states {
            let tp = p.topic_partition.clone();
            state.partitions.insert(tp.clone(), p);
            state.record_change(&tp);
        }
        Ok(())
    }

    /// R56: change a topic's configs, if the topic exists and the new values are valid for
    /// every partition. Each partition whose configs change is a metadata record in a new
    /// partition epoch, so that its replicas take it (R12, R13). With KIP-966, a change of
    /// min.insync.replicas empties the ELR, whose members were chosen under the old minimum.
    /// Enabling unclean.leader.election.enable elects a leader, as R2 would, for each partition
    /// of the topic that has none. Returns the topic's configs after the change.
    fn alter_configs(
        &self,
        state: &mut Cow<ControllerState>,
        topic: &Topic,
        changes: TopicConfigChanges,
    ) -> Result<TopicConfigs, (ErrorCode, String)> {
        let tps: Vec<TopicPartition> = state
            .partitions
            .keys()
            .filter(|tp| tp.topic == *topic)
            .cloned()
            .collect();
        let Some(first) = tps.first().and_then(|tp| state.partitions.get(tp)) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("topic '{topic}' does not exist"),
            ));
        };
        let configs = changes.apply(first.topic_configs());
        for tp in &tps {
            let p = state.partitions.get(tp).expect("listed above");
            check_min_insync_replicas(configs.min_insync_replicas, p.replicas.len() as u32)?;
        }
        let live = state.live_brokers();
        let elr_on = self.config.cluster.eligible_leader_replicas;
        for tp in &tps {
            let old = state.partitions.get(tp).expect("listed above");
            let mut p = old.clone();
            p.min_insync_replicas = configs.min_insync_replicas;
            p.unclean_leader_election = configs.unclean_leader_election;
            if elr_on && p.min_insync_replicas != old.min_insync_replicas {
                p.elr = BrokerIds::default();
            }
            let election = p.leader.is_none().then(|| {
                elect(
                    &p.replicas,
                    &p.isr,
                    &p.elr,
                    &live,
                    p.unclean_leader_election,
                )
            });
            if let Some(Some(e)) = election {
                apply_change(&mut p, e);
            } else if p != *old {
                p.partition_epoch += 1;
            }
            if p != *old {
                let state = state.to_mut();
                state.partitions.insert(tp.clone(), p);
                state.record_change(tp);
            }
        }
        Ok(configs)
    }

    /// R7, R8: validate and apply a leader's ISR change.
    #[allow(clippy::too_many_arguments)]
    fn alter_partition(
        &self,
        state: &mut Cow<ControllerState>,
        broker_id: BrokerId,
        broker_epoch: BrokerEpoch,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: BrokerIds,
        broker_epochs: &[(BrokerId, BrokerEpoch)],
    ) -> Result<PartitionState, ErrorCode> {
        let Some(current) = state.partitions.get(tp) else {
            fired(R8);
            return Err(ErrorCode::UnknownTopicOrPartition);
        };
        if state
            .registration(broker_id)
            .is_none_or(|r| r.broker_epoch != broker_epoch)
        {
            // R8: KIP-903, a request from a dead incarnation.
            fired(R8);
            return Err(ErrorCode::StaleBrokerEpoch);
        }
        if current.leader != Some(broker_id) || current.leader_epoch != leader_epoch {
            // R8: only the current leader, in the current epoch, changes the ISR.
            fired(R8);
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if current.partition_epoch != partition_epoch {
            // R8: the leader's view of the ISR is stale.
            fired(R8);
            return Err(ErrorCode::InvalidUpdateVersion);
        }
        // KIP-841, KIP-903: a replica joins only if it is assigned, live, and in the incarnation
        // the leader saw fetching.
        let eligible = |b: &BrokerId| {
            if current.isr.contains(b) {
                return true;
            }
            let registration = state.registration(*b).filter(|r| !r.fenced);
            let seen = broker_epochs
                .iter()
                .find(|(id, _)| id == b)
                .map(|(_, e)| *e);
            current.replicas.contains(b)
                && registration.is_some_and(|r| seen == Some(r.broker_epoch))
        };
        if !new_isr.contains(&broker_id) || !new_isr.iter().all(eligible) {
            // R8: the leader never leaves, and only eligible replicas join. The rejection uses up
            // the partition epoch, so that no copy of this request (a retransmission, a
            // duplicate) can be accepted later, when the replica may have become eligible.
            fired(R8);
            let state = state.to_mut();
            let p = state.partitions.get_mut(tp).expect("checked above");
            p.partition_epoch += 1;
            state.record_change(tp);
            return Err(ErrorCode::IneligibleReplica);
        }
        // R7: accepted; the partition epoch moves on.
        fired(R7);
        let elr_on = self.config.cluster.eligible_leader_replicas;
        let state = state.to_mut();
        let p = state.partitions.get_mut(tp).expect("checked above");
        if elr_on {
            p.elr = elr_after_isr_change(p, &new_isr);
        }
        p.isr = new_isr;
        p.partition_epoch += 1;
        let accepted = p.clone();
        state.record_change(tp);
        Ok(accepted)
    }

    pub fn on_timer(&self, state: &mut Cow<ControllerState>, timer: &Timer, o: &mut Out<Node>) {
        let timing = &self.config.cluster.timing;
        let mut outbox = Outbox::new();
        let base = state.metadata_offset;
        match timer {
            Timer::SessionTimeout(broker_id) => {
                o.set_timer(timer.clone(), timing.session_timeout.clone());
                let Some(registration) = state.registration(*broker_id).copied() else {
                    return;
                };
                if registration.fenced {
                    return;
                }
                // R2: the session expired (the broker died, or the controller wrongly suspects
                // it). Fence it and tell it so, in case it is alive.
                fired(R2);
                let state = state.to_mut();
                self.fence(state, *broker_id, Departure::Fenced);
                outbox.persist();
                self.propagate(state, Some(base), None, &mut outbox);
                if let Some(address) = self.config.cluster.broker_address(*broker_id) {
                    outbox.send(
                        address,
                        Msg::BrokerHeartbeatResponse {
                            controller_epoch: state.controller_epoch,
                            broker_epoch: registration.broker_epoch,
                            is_fenced: true,
                            base_metadata_offset: Some(state.metadata_offset),
                            metadata_offset: state.metadata_offset,
                            partitions: Arc::new([]),
                        },
                    );
                }
            }
            Timer::PreferredLeaderElection => {
                o.set_timer(
                    timer.clone(),
                    timing.preferred_leader_election_interval.clone(),
                );
                // R9: move leadership back to the preferred replica once it is live and in sync.
                let movable: Vec<TopicPartition> = state
                    .partitions
                    .values()
                    .filter(|p| {
                        let preferred = p.replicas[0];
                        p.leader.is_some()
                            && p.leader != Some(preferred)
                            && p.isr.contains(&preferred)
                            && state.is_live(preferred)
                    })
                    .map(|p| p.topic_partition.clone())
                    .collect();
                if movable.is_empty() {
                    return;
                }
                fired(R9);
                let state = state.to_mut();
                for tp in &movable {
                    let p = state.partitions.get_mut(tp).expect("listed above");
                    p.leader = Some(p.replicas[0]);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                    state.record_change(tp);
                }
                outbox.persist();
                self.propagate(state, Some(base), None, &mut outbox);
            }
            _ => {}
        }
        outbox.flush(o, || Storage::Controller(Arc::new(state.as_ref().clone())));
    }

    /// Fences a broker: drops it from every ISR it is in, and moves every leadership it holds
    /// (R2). Without KIP-966 the last member of an ISR stays (the ISR is never empty); with it
    /// (R52), the broker leaves even the last, and becomes an eligible leader replica where the
    /// ISR is left under min.insync.replicas, unless it is leaving because it restarted
    /// uncleanly (R54), which also takes it out of every ELR. Every partition it changes is a
    /// metadata record.
    fn fence(&self, state: &mut ControllerState, broker_id: BrokerId, departure: Departure) {
        if let Some(r) = state.registration_mut(broker_id) {
            r.fenced = true;
        }
        let live = state.live_brokers();
        let elr_on = self.config.cluster.eligible_leader_replicas;
        let tps: Vec<TopicPartition> = state.partitions.keys().cloned().collect();
        for tp in tps {
            let p = state.partitions.get_mut(&tp).expect("listed above");
            let unclean = p.unclean_leader_election;
            let (isr, elr) = if elr_on {
                leave_with_elr(p, broker_id, departure)
            } else if p.isr.len() > 1 {
                let isr = p.isr.iter().copied().filter(|b| *b != broker_id).collect();
                (isr, p.elr.clone())
            } else {
                (p.isr.clone(), p.elr.clone())
            };
            let election = if p.leader == Some(broker_id) {
                elect(&p.replicas, &isr, &elr, &live, unclean).unwrap_or(Election {
                    leader: None,
                    isr,
                    elr,
                })
            } else {
                Election {
                    leader: p.leader,
                    isr,
                    elr,
                }
            };
            let changed = apply_change(p, election);
            if changed {
                state.record_change(&tp);
            }
        }
    }

    /// Unfences a broker and elects it wherever a partition is offline and it may lead (R5).
    /// Every partition it changes is a metadata record.
    fn unfence(&self, state: &mut ControllerState, broker_id: BrokerId, outbox: &mut Outbox) {
        if let Some(r) = state.registration_mut(broker_id) {
            r.fenced = false;
        }
        outbox.persist();
        let live = state.live_brokers();
        let tps: Vec<TopicPartition> = state.partitions.keys().cloned().collect();
        for tp in tps {
            let p = state.partitions.get_mut(&tp).expect("listed above");
            if p.leader.is_some() || !p.replicas.contains(&broker_id) {
                continue;
            }
            let unclean = p.unclean_leader_election;
            if let Some(election) = elect(&p.replicas, &p.isr, &p.elr, &live, unclean) {
                if apply_change(p, election) {
                    state.record_change(&tp);
                }
            }
        }
    }

    /// R50: pushes the partitions changed after `base` (every partition for `None`) to every live
    /// broker but `except`, in one message per broker: LeaderAndIsr if it replicates any of them,
    /// UpdateMetadata otherwise. Each push names the metadata offsets it spans, so that a broker
    /// can tell whether it missed one.
    fn propagate(
        &self,
        state: &ControllerState,
        base: Option<MetadataOffset>,
        except: Option<BrokerId>,
        outbox: &mut Outbox,
    ) {
        if base == Some(state.metadata_offset) {
            return; // Nothing changed.
        }
        let partitions: Arc<[PartitionState]> = state.changed_since(base).into();
        for (broker_id, address) in &self.config.cluster.brokers {
            if except == Some(*broker_id) {
                continue;
            }
            let Some(registration) = state.registration(*broker_id).filter(|r| !r.fenced) else {
                continue;
            };
            let replicates = partitions.iter().any(|p| p.replicas.contains(broker_id));
            let (controller_epoch, broker_epoch) =
                (state.controller_epoch, registration.broker_epoch);
            let metadata_offset = state.metadata_offset;
            let partitions = partitions.clone();
            outbox.send(
                *address,
                if replicates {
                    Msg::LeaderAndIsr {
                        controller_epoch,
                        broker_epoch,
                        base_metadata_offset: base,
                        metadata_offset,
                        partitions,
                    }
                } else {
                    Msg::UpdateMetadata {
                        controller_epoch,
                        broker_epoch,
                        base_metadata_offset: base,
                        metadata_offset,
                        partitions,
                    }
                },
            );
        }
    }
}

/// R52: the ELR after the leader changes the ISR to `new_isr` (R7), with KIP-966. Members that
/// join the ISR leave the ELR; members the leader drops join it while the new ISR is under
/// min.insync.replicas; an ISR at min.insync.replicas or above needs no ELR, which is emptied.
fn elr_after_isr_change(p: &PartitionState, new_isr: &[BrokerId]) -> BrokerIds {
    if new_isr.len() as u32 >= p.min_insync_replicas {
        return BrokerIds::default();
    }
    let mut elr: Vec<BrokerId> = p
        .elr
        .iter()
        .copied()
        .filter(|b| !new_isr.contains(b))
        .collect();
    for dropped in p.isr.iter().filter(|b| !new_isr.contains(b)) {
        fired(R52);
        if !elr.contains(dropped) {
            elr.push(*dropped);
        }
    }
    elr.as_slice().into()
}

/// R46, R56: min.insync.replicas must be between 1 and the replication factor.
fn check_min_insync_replicas(
    min_insync_replicas: u32,
    replication_factor: u32,
) -> Result<(), (ErrorCode, String)> {
    if min_insync_replicas == 0 || min_insync_replicas > replication_factor {
        return Err((
            ErrorCode::InvalidConfig,
            format!(
                "min.insync.replicas {min_insync_replicas} must be between 1 and the replication factor ({replication_factor})"
            ),
        ));
    }
    Ok(())
}

/// How a broker leaves the partitions it is in when it is fenced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Its session expired (R2), or it restarted without KIP-966 (R4).
    Fenced,
    /// It registered a new incarnation after an unclean shutdown, with KIP-966 (R54).
    UncleanRestart,
}

/// A partition's leader, ISR and ELR after an election or an ISR change.
#[derive(Clone, PartialEq, Eq)]
pub struct Election {
    pub leader: Option<BrokerId>,
    pub isr: BrokerIds,
    pub elr: BrokerIds,
}

/// R52, R54: the ISR and ELR once `broker` leaves them, with KIP-966. Leaving the ISR for any
/// reason but an unclean restart while it is (or is left) under min.insync.replicas makes the
/// broker an eligible leader replica: the HWM did not advance without it (R28). A fenced broker
/// already in the ELR stays in it, as Kafka's `PartitionChangeBuilder` keeps it: it still holds
/// every committed record. An unclean restart takes it out of both.
fn leave_with_elr(
    p: &PartitionState,
    broker: BrokerId,
    departure: Departure,
) -> (BrokerIds, BrokerIds) {
    let isr: Vec<BrokerId> = p.isr.iter().copied().filter(|b| *b != broker).collect();
    let left_isr = isr.len() < p.isr.len();
    let elr: Vec<BrokerId> = match departure {
        Departure::Fenced if left_isr && (isr.len() as u32) < p.min_insync_replicas => {
            fired(R52);
            p.elr.iter().copied().chain([broker]).collect()
        }
        Departure::Fenced => p.elr.to_vec(),
        Departure::UncleanRestart => p.elr.iter().copied().filter(|b| *b != broker).collect(),
    };
    (isr.as_slice().into(), elr.as_slice().into())
}

/// Leader election (R2, R5): the first replica in assignment order that is live and in the ISR.
/// With KIP-966 and no such replica, the first live eligible leader replica, which becomes the
/// whole ISR and leaves the ELR (R53). With unclean election allowed and no such replica, the
/// first live replica, which becomes the whole ISR (the ELR is emptied). `None` leaves the
/// partition offline.
pub fn elect(
    replicas: &[BrokerId],
    isr: &[BrokerId],
    elr: &[BrokerId],
    live: &[BrokerId],
    unclean: bool,
) -> Option<Election> {
    let first_live_in = |set: &[BrokerId]| {
        replicas
            .iter()
            .copied()
            .find(|b| set.contains(b) && live.contains(b))
    };
    if let Some(leader) = first_live_in(isr) {
        return Some(Election {
            leader: Some(leader),
            isr: isr.into(),
            elr: elr.into(),
        });
    }
    if let Some(leader) = first_live_in(elr) {
        fired(R53);
        let rest: Vec<BrokerId> = elr.iter().copied().filter(|b| *b != leader).collect();
        return Some(Election {
            leader: Some(leader),
            isr: [leader].as_slice().into(),
            elr: rest.as_slice().into(),
        });
    }
    if !unclean {
        return None;
    }
    first_live_in(replicas).map(|leader| Election {
        leader: Some(leader),
        isr: [leader].as_slice().into(),
        elr: BrokerIds::default(),
    })
}

/// Applies a new leader, ISR and ELR to a partition, bumping the leader epoch when the leader
/// changes and the partition epoch on any change. Returns whether anything changed.
fn apply_change(p: &mut PartitionState, e: Election) -> bool {
    if p.leader == e.leader && p.isr == e.isr && p.elr == e.elr {
        return false;
    }
    if p.leader != e.leader {
        p.leader_epoch += 1;
    }
    p.leader = e.leader;
    p.isr = e.isr;
    p.elr = e.elr;
    p.partition_epoch += 1;
    true
}

impl fmt::Debug for ControllerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "controller epoch {} | brokers", self.controller_epoch)?;
        for (b, r) in &self.brokers {
            let status = if r.fenced { "fenced" } else { "live" };
            write!(f, " {b}:{status}(epoch {})", r.broker_epoch)?;
        }
        for p in self.partitions.values() {
            write!(f, " | {p:?}")?;
        }
        Ok(())
    }
}
