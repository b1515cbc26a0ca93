//! Client drivers for the tools: the model's Producer and Consumer actors run in a [`Host`] on
//! an ephemeral socket, and the admin APIs (Metadata, CreateTopics, DescribeTopics, ListOffsets)
//! as plain request and response. Clients speak the [`transport`](crate::transport) like nodes
//! do, with an incarnation from the wall clock and no key (they need none: Kafka's PLAINTEXT).
//! [`group`] holds the consumer-group requests.

pub mod group;

use crate::cluster::{TimingMs, BATCH_BYTES_MAX};
use crate::codec;
use crate::host::{bind, Host, Observer};
use crate::incarnation;
use crate::store::NoStore;
use crate::transport::{Received, Transport, TransportConfig, DATAGRAM_BYTES_MAX};
use serde::Serialize;
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use watermark_model::consumer::MemberStep;
use watermark_model::group::GroupEvent;
use watermark_model::producer::Ack;
use watermark_model::quorum::QuorumDescription;
use watermark_model::*;

/// How long an admin request waits for its answer, across retransmissions.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
const ADMIN_RETRANSMIT: Duration = Duration::from_millis(500);

fn client_socket(server: SocketAddrV4) -> io::Result<UdpSocket> {
    let ip = if server.ip().is_loopback() {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    bind(SocketAddrV4::new(ip, 0))
}

/// Sends `request` to `server` and waits for the first answer `pick` accepts, resending now and
/// then (UDP may lose either), for at most [`ADMIN_TIMEOUT`]. Each resend is a new message with
/// a new sequence number: the same datagram again would be dropped as a duplicate.
pub fn request<T>(
    server: SocketAddrV4,
    request: &Msg,
    pick: impl FnMut(Msg) -> Option<T>,
) -> Result<T, String> {
    request_within(server, request, ADMIN_TIMEOUT, pick)
}

/// [`request`] with another bound than [`ADMIN_TIMEOUT`]: a health probe that polls wants a
/// short one.
pub fn request_within<T>(
    server: SocketAddrV4,
    request: &Msg,
    timeout: Duration,
    mut pick: impl FnMut(Msg) -> Option<T>,
) -> Result<T, String> {
    // Not connected: forwarded requests are answered by the controller, not by `server`.
    let socket = client_socket(server).map_err(|e| format!("cannot open a socket: {e}"))?;
    let local = match socket.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => return Err("the client socket is not IPv4".into()),
    };
    let mut transport = Transport::new(TransportConfig::client(incarnation::clock()));
    let mut payload = Vec::new();
    codec::encode(request, &mut payload).map_err(|e| format!("cannot encode request: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut recv = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    let mut datagrams = Vec::new();
    let send_all = |datagrams: &mut Vec<crate::transport::Datagram>| -> Result<(), String> {
        for d in datagrams.drain(..) {
            socket
                .send_to(&d.bytes, d.to)
                .map_err(|e| format!("cannot reach {}: {e}", d.to))?;
        }
        Ok(())
    };
    while Instant::now() < deadline {
        transport
            .send(local, server, &payload, &mut datagrams)
            .map_err(|e| format!("cannot send request: {e}"))?;
        send_all(&mut datagrams)?;
        let resend_at = (Instant::now() + ADMIN_RETRANSMIT).min(deadline);
        loop {
            let now = Instant::now();
            if now >= resend_at {
                break;
            }
            socket
                .set_read_timeout(Some(resend_at - now))
                .map_err(|e| e.to_string())?;
            let Ok((len, std::net::SocketAddr::V4(from))) = socket.recv_from(&mut recv) else {
                continue;
            };
            let received = transport.receive(local, from, &recv[..len], &mut datagrams);
            let msg = match received {
                Received::Deliver { payload, .. } => codec::decode::<Msg>(&payload).ok(),
                Received::Dropped(_) | Received::Nothing => None,
            };
            // A Reset, or first contact from the controller: answer before anything else.
            send_all(&mut datagrams)?;
            if let Some(t) = msg.and_then(&mut pick) {
                return Ok(t);
            }
        }
    }
    let within = if timeout.subsec_millis() == 0 {
        timeout.as_secs().to_string()
    } else {
        format!("{:.1}", timeout.as_secs_f64())
    };
    Err(format!(
        "bootstrap server {server} did not answer within {within} s (is the cluster up?)"
    ))
}

/// A broker's answer to Metadata: every broker's address and the topic's partitions.
pub struct Metadata {
    pub brokers: Vec<(BrokerId, SocketAddrV4)>,
    pub partitions: Vec<PartitionMetadata>,
}

pub fn metadata(bootstrap: SocketAddrV4, topic: &str) -> Result<Metadata, String> {
    request(
        bootstrap,
        &Msg::Metadata {
            topic: Topic::new(topic),
        },
        |m| match m {
            Msg::MetadataResponse {
                brokers,
                partitions,
            } => Some(Metadata {
                brokers: brokers
                    .iter()
                    .map(|(b, id)| (*b, SocketAddrV4::from(*id)))
                    .collect(),
                partitions: partitions.to_vec(),
            }),
            _ => None,
        },
    )
}

/// How long a client waits for a topic to show up in a broker's metadata (a topic just created
/// reaches each broker a little later), like Kafka's `max.block.ms` but shorter.
pub const TOPIC_WAIT: Duration = Duration::from_secs(2);

/// Metadata for a topic that must exist.
pub fn topic_metadata(bootstrap: SocketAddrV4, topic: &str) -> Result<Metadata, String> {
    let deadline = Instant::now() + TOPIC_WAIT;
    let mut m = metadata(bootstrap, topic)?;
    while m.partitions.is_empty() || m.partitions.iter().any(|p| p.leader.is_none()) {
        if Instant::now() >= deadline {
            if m.partitions.is_empty() {
                return Err(format!("unknown topic '{topic}'"));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        m = metadata(bootstrap, topic)?;
    }
    m.partitions.sort_by_key(|p| p.topic_partition.partition);
    Ok(m)
}

/// Kafka's error names, as its tools print them.
pub fn error_name(e: ErrorCode) -> &'static str {
    match e {
        ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
        ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
        ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
        ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        ErrorCode::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
        ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
        ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
        ErrorCode::OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
        ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
        ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
        ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
        ErrorCode::InvalidTopic => "INVALID_TOPIC_EXCEPTION",
        ErrorCode::InvalidConfig => "INVALID_CONFIG",
        ErrorCode::PolicyViolation => "POLICY_VIOLATION",
        ErrorCode::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
        ErrorCode::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
        ErrorCode::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        ErrorCode::NotCoordinator => "NOT_COORDINATOR",
        ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
        ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
    }
}

/// Per partition, the leader elected or why none was.
pub type ElectionResults = Vec<(TopicPartition, Result<BrokerId, ErrorCode>)>;

/// ElectLeaders (R55). `None` names every partition of the cluster.
pub fn elect_leaders(
    bootstrap: SocketAddrV4,
    election: ElectionType,
    partitions: Option<Vec<TopicPartition>>,
) -> Result<ElectionResults, String> {
    request(
        bootstrap,
        &Msg::ElectLeaders {
            election,
            partitions: partitions.map(Into::into),
            client: None,
        },
        |m| match m {
            Msg::ElectLeadersResponse {
                election: e,
                results,
            } if e == election => Some(results.to_vec()),
            _ => None,
        },
    )
}

/// CreateTopics (R46), with the topic's configs.
pub fn create_topic(
    bootstrap: SocketAddrV4,
    topic: &str,
    partitions: u32,
    replication_factor: u32,
    configs: TopicConfigs,
) -> Result<(), String> {
    let (result, message) =
        create_topic_answer(bootstrap, topic, partitions, replication_factor, configs)?;
    admin_result(result, message, || format!("cannot create topic '{topic}'"))
}

/// The controller's answer to an admin request, and the message it gave with an error.
pub type AdminAnswer = (Result<(), ErrorCode>, Option<Arc<str>>);

/// CreateTopics (R46): the controller's answer as it is, and its message.
pub(crate) fn create_topic_answer(
    bootstrap: SocketAddrV4,
    topic: &str,
    partitions: u32,
    replication_factor: u32,
    configs: TopicConfigs,
) -> Result<AdminAnswer, String> {
    let topic = Topic::new(topic);
    request(
        bootstrap,
        &Msg::CreateTopics {
            topic,
            partitions,
            replication_factor,
            configs,
            client: None,
        },
        |m| match m {
            Msg::CreateTopicsResponse {
                topic: t,
                result,
                error_message,
            } if t == topic => Some((result, error_message)),
            _ => None,
        },
    )
}

/// An admin answer as the tools report it: the controller says what was wrong (R46, R56), and
/// Kafka's tools print the error name and its message; without a message, `what` failed.
fn admin_result<T>(
    result: Result<T, ErrorCode>,
    message: Option<Arc<str>>,
    what: impl FnOnce() -> String,
) -> Result<T, String> {
    result.map_err(|e| match message {
        Some(m) => format!("{}: {m}", error_name(e)),
        None => format!("{}: {}", what(), error_name(e)),
    })
}

/// IncrementalAlterConfigs (R56): returns the topic's configs after the change.
pub fn alter_configs(
    bootstrap: SocketAddrV4,
    topic: &str,
    changes: TopicConfigChanges,
) -> Result<TopicConfigs, String> {
    let topic = Topic::new(topic);
    let (result, message) = request(
        bootstrap,
        &Msg::IncrementalAlterConfigs {
            topic,
            changes,
            client: None,
        },
        |m| match m {
            Msg::IncrementalAlterConfigsResponse {
                topic: t,
                result,
                error_message,
            } if t == topic => Some((result, error_message)),
            _ => None,
        },
    )?;
    admin_result(result, message, || {
        format!("cannot alter the configs of '{topic}'")
    })
}

/// One partition as `describe` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionDescription {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub min_insync_replicas: u32,
    pub unclean_leader_election: bool,
    /// The leader's, from ListOffsets; `None` if it did not answer.
    pub log_end_offset: Option<Offset>,
    pub high_watermark: Option<Offset>,
    pub under_replicated: bool,
}

impl PartitionDescription {
    /// The topic configs this partition carries.
    pub fn topic_configs(&self) -> TopicConfigs {
        TopicConfigs {
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election: self.unclean_leader_election,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerDescription {
    pub id: BrokerId,
    pub address: Option<SocketAddrV4>,
    pub live: bool,
    /// `broker.rack`, if it has one.
    pub rack: Option<String>,
    pub leader_count: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Description {
    pub partitions: Vec<PartitionDescription>,
    pub brokers: Vec<BrokerDescription>,
}

/// What DescribeTopics (R47) answers: every broker and whether it is live, the brokers' racks,
/// and the partitions of `topic` (of every topic with `None`; none if it does not exist).
pub type TopicsDescription = (
    Vec<(BrokerId, bool)>,
    Vec<(BrokerId, Arc<str>)>,
    Vec<PartitionState>,
);

/// DescribeTopics (R47), answered from the controller's table.
pub fn describe_topics(
    bootstrap: SocketAddrV4,
    topic: Option<&str>,
) -> Result<TopicsDescription, String> {
    request(
        bootstrap,
        &Msg::DescribeTopics {
            topic: topic.map(Topic::new),
            client: None,
        },
        |m| match m {
            Msg::DescribeTopicsResponse {
                brokers,
                racks,
                partitions,
            } => Some((brokers.to_vec(), racks.to_vec(), partitions.to_vec())),
            _ => None,
        },
    )
}

pub fn describe(bootstrap: SocketAddrV4, topic: Option<&str>) -> Result<Description, String> {
    let (brokers, racks, partitions) = describe_topics(bootstrap, topic)?;
    if let Some(t) = topic {
        if partitions.is_empty() {
            return Err(format!("unknown topic '{t}'"));
        }
    }
    let addresses: BTreeMap<BrokerId, SocketAddrV4> = metadata(bootstrap, topic.unwrap_or(""))?
        .brokers
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for p in &partitions {
        let offsets = p
            .leader
            .and_then(|l| addresses.get(&l))
            .and_then(|a| list_offsets(*a, &p.topic_partition).ok());
        out.push(PartitionDescription {
            topic: p.topic_partition.topic.to_string(),
            partition: p.topic_partition.partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.to_vec(),
            isr: p.isr.to_vec(),
            min_insync_replicas: p.min_insync_replicas,
            unclean_leader_election: p.unclean_leader_election,
            log_end_offset: offsets.map(|o| o.log_end_offset),
            high_watermark: offsets.map(|o| o.high_watermark),
            under_replicated: p.isr.len() < p.replicas.len(),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let brokers = brokers
        .iter()
        .map(|(id, live)| BrokerDescription {
            id: *id,
            address: addresses.get(id).copied(),
            live: *live,
            rack: racks
                .iter()
                .find(|(b, _)| b == id)
                .map(|(_, r)| r.to_string()),
            leader_count: out.iter().filter(|p| p.leader == Some(*id)).count(),
        })
        .collect();
    Ok(Description {
        partitions: out,
        brokers,
    })
}

/// ListOffsets against one broker, waiting at most [`ADMIN_TIMEOUT`].
pub fn list_offsets(broker: SocketAddrV4, tp: &TopicPartition) -> Result<ReplicaOffsets, String> {
    list_offsets_within(broker, tp, ADMIN_TIMEOUT)
}

/// ListOffsets against one broker, waiting at most `timeout`: a dead leader should not hold a
/// tool long.
pub fn list_offsets_within(
    broker: SocketAddrV4,
    tp: &TopicPartition,
    timeout: Duration,
) -> Result<ReplicaOffsets, String> {
    let result = request_within(
        broker,
        &Msg::ListOffsets {
            topic_partition: tp.clone(),
        },
        timeout,
        |m| match m {
            Msg::ListOffsetsResponse {
                topic_partition,
                result,
            } if topic_partition == *tp => Some(result),
            _ => None,
        },
    )?;
    result.map_err(|e| error_name(e).to_string())
}

/// Bootstrap servers for an actor client: the one given first, then every other broker, so that
/// metadata keeps flowing when the first one dies.
fn bootstrap_list(bootstrap: SocketAddrV4, metadata: &Metadata) -> Vec<Id> {
    let mut list = vec![Id::from(bootstrap)];
    for (_, a) in &metadata.brokers {
        if *a != bootstrap {
            list.push(Id::from(*a));
        }
    }
    list
}

pub struct ProduceOptions {
    pub topic: String,
    pub acks: Acks,
    pub idempotent: bool,
    pub partition: Option<u32>,
    /// `delivery.timeout.ms`: a record not acknowledged by then has failed.
    pub delivery_timeout: Duration,
    /// `max.in.flight.requests.per.connection`, per partition.
    pub max_in_flight_requests: u32,
    /// Records per second handed to the producers' `send()`, as kafka-producer-perf-test's
    /// `--throughput`: record `i` is handed over `i / throughput` seconds after the producers
    /// start. `None`: every record at once.
    pub throughput: Option<f64>,
    pub timing: TimingMs,
}

pub struct ProduceReport {
    pub records: usize,
    pub acknowledged: usize,
    pub elapsed: Duration,
    /// The last error a leader answered a produce request with, if any: why records that were
    /// not acknowledged were not (NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, ...).
    pub last_error: Option<ErrorCode>,
}

/// Watches a producer's host for error answers, so that the tool can say why records failed.
struct LastProduceError(Arc<Mutex<Option<ErrorCode>>>);

impl Observer<Node> for LastProduceError {
    fn delivered(&mut self, _src: Id, msg: &Msg, _state: &NodeState) {
        if let Msg::ProduceResponse(ProduceResponse { result: Err(e), .. }) = msg {
            if let Ok(mut last) = self.0.lock() {
                *last = Some(*e);
            }
        }
    }
}

/// Produces `values` with the model's Producer actor. Records go to `--partition`, or to the
/// partitions in turn, one batch's worth (`batch.size`) at a time, like Kafka's sticky
/// partitioner. `on_ack` sees each acknowledged record in order, with its latency: from when it
/// was handed to `send()` until its producer took the acknowledgement (the send callback).
pub fn produce(
    bootstrap: SocketAddrV4,
    options: &ProduceOptions,
    values: Vec<Value>,
    stop: &AtomicBool,
    mut on_ack: impl FnMut(&Ack, Duration),
) -> Result<ProduceReport, String> {
    let metadata = topic_metadata(bootstrap, &options.topic)?;
    let partition_count = metadata.partitions.len() as u32;
    if let Some(p) = options.partition {
        if p >= partition_count {
            return Err(format!(
                "topic '{}' has no partition {p} (it has {partition_count})",
                options.topic
            ));
        }
    }
    let mut records = Vec::with_capacity(values.len());
    let mut partition = 0u32;
    let mut batch_bytes = 0usize;
    for value in values {
        let size = value.0.len() + RECORD_OVERHEAD_BYTES;
        if options.partition.is_none()
            && batch_bytes > 0
            && batch_bytes + size > BATCH_BYTES_MAX as usize
        {
            partition = (partition + 1) % partition_count;
            batch_bytes = 0;
        }
        batch_bytes += size;
        records.push((options.partition.unwrap_or(partition), value));
    }
    let total = records.len();
    let start = Instant::now();
    if total == 0 {
        return Ok(ProduceReport {
            records: 0,
            acknowledged: 0,
            elapsed: start.elapsed(),
            last_error: None,
        });
    }
    let producer_id = (std::process::id() as u64) << 32
        | (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0) as u64);
    // One Producer actor per partition, each on its own thread and socket: the model's producer
    // has one batch in flight (`max.in.flight.requests.per.connection=1`), and Kafka's sends to
    // each partition's leader in parallel.
    // Per partition: each record's index in the input, and the record.
    type PartitionRecords = (Vec<usize>, Vec<(u32, Value)>);
    let mut by_partition: BTreeMap<u32, PartitionRecords> = BTreeMap::new();
    for (index, record) in records.into_iter().enumerate() {
        let entry = by_partition.entry(record.0).or_default();
        entry.0.push(index);
        entry.1.push(record);
    }
    let bootstrap_ids = bootstrap_list(bootstrap, &metadata);
    let deadline = start + options.delivery_timeout;
    let done = Arc::new(AtomicBool::new(false));
    let last_error = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel::<Result<(usize, Ack, Duration), String>>();
    let mut threads = Vec::new();
    let throughput = options.throughput.filter(|t| *t > 0.0);
    // When record `index` is handed to `send()`.
    let origin = Instant::now();
    let offered = move |index: usize| match throughput {
        Some(t) => origin + Duration::from_secs_f64(index as f64 / t),
        None => origin,
    };
    for (partition, (indexes, records)) in by_partition {
        // How many of this partition's records are handed over by `now`.
        let handed_over = {
            let indexes = indexes.clone();
            move |now: Instant| -> u32 { indexes.partition_point(|i| offered(*i) <= now) as u32 }
        };
        let config = ProducerConfig {
            bootstrap: bootstrap_ids.clone(),
            topic: Topic::new(&options.topic),
            acks: options.acks,
            // Sequences are per partition, so one producer id serves every partition.
            idempotence: options.idempotent.then_some(producer_id),
            records,
            accumulated_at_start: throughput.map(|_| handed_over(origin)),
            attempts_max: u32::MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            request_timeout: true,
            max_in_flight_requests: options.max_in_flight_requests,
            timing: options.timing.timing(),
        };
        let tx = tx.clone();
        let done = done.clone();
        let last_error = last_error.clone();
        threads.push(std::thread::spawn(move || {
            let total = indexes.len();
            let run = || -> Result<(), String> {
                let socket = client_socket(bootstrap).map_err(|e| e.to_string())?;
                let mut host = Host::start(
                    Node::Producer(Producer::new(config)),
                    socket,
                    NoStore,
                    producer_id ^ u64::from(partition),
                    None,
                    TransportConfig::client(incarnation::clock()),
                    None,
                    None,
                )
                .map_err(|e| e.to_string())?;
                host.observe(Box::new(LastProduceError(last_error.clone())));
                // The producer acknowledges this host's records in their order (R38).
                let mut acked = 0usize;
                loop {
                    for msg in host.take_delivered() {
                        if let Msg::RecordAcknowledged(ack) = msg {
                            let index = indexes[acked];
                            let latency = offered(index).elapsed();
                            let _ = tx.send(Ok((index, ack, latency)));
                            acked += 1;
                        }
                    }
                    let Some(state) = host.state().as_producer() else {
                        unreachable!("a producer host")
                    };
                    let finished =
                        state.next_record as usize >= total && state.in_flight.is_empty();
                    let now = Instant::now();
                    if finished || done.load(Ordering::Relaxed) || now >= deadline {
                        return Ok(());
                    }
                    let accumulated = state.accumulated;
                    let mut wait = Duration::from_millis(50);
                    if throughput.is_some() && (accumulated as usize) < total {
                        let due = handed_over(now);
                        if due > accumulated {
                            // R38: the application's send().
                            host.deliver_local(application(), Msg::Send { records: due })
                                .map_err(|e| e.to_string())?;
                            continue;
                        }
                        let next = offered(indexes[accumulated as usize]);
                        wait = wait.min(next.saturating_duration_since(now));
                    }
                    host.step(wait).map_err(|e| e.to_string())?;
                }
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e));
            }
        }));
    }
    drop(tx);
    // Acknowledgements are handed on in record order, as soon as every earlier record's is in.
    let mut acked: Vec<Option<(Ack, Duration)>> = vec![None; total];
    let mut next = 0usize;
    let mut count = 0usize;
    let mut error = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            done.store(true, Ordering::Relaxed);
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok((index, ack, latency))) => {
                acked[index] = Some((ack, latency));
                count += 1;
                while next < total {
                    match &acked[next] {
                        Some((a, latency)) => on_ack(a, *latency),
                        None => break,
                    }
                    next += 1;
                }
            }
            Ok(Err(e)) => {
                error = Some(e);
                done.store(true, Ordering::Relaxed);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for t in threads {
        let _ = t.join();
    }
    // Records after one that failed were still acknowledged: hand them on too.
    for (a, latency) in acked[next..].iter().flatten() {
        on_ack(a, *latency);
    }
    if let Some(e) = error {
        return Err(e);
    }
    let last_error = *last_error.lock().map_err(|_| "a producer panicked")?;
    Ok(ProduceReport {
        records: total,
        acknowledged: count,
        elapsed: start.elapsed(),
        last_error,
    })
}

pub struct ConsumeOptions {
    pub topic: String,
    pub partition: Option<u32>,
    pub from_beginning: bool,
    /// Stop after this many records.
    pub max_records: Option<u64>,
    /// Stop when no record came for this long.
    pub idle_timeout: Option<Duration>,
    pub timing: TimingMs,
    /// Where each partition's Consumer actor records its steps (`consumer-p<P>.trace`), for
    /// `watermark validate`.
    pub trace_dir: Option<std::path::PathBuf>,
}

/// A consumer's group, as kafka-console-consumer's `--group` and consumer properties give it.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// `group.id`.
    pub group: String,
    /// `auto.offset.reset`: where a partition the group has committed nothing for is read from.
    pub offset_reset: OffsetReset,
    /// `enable.auto.commit`.
    pub auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
}

/// What a [`consume_in_group`] run did.
#[derive(Clone, Debug)]
pub struct ConsumeReport {
    /// Records handed to the caller.
    pub records: u64,
    /// Why the commit on exit failed, if it did; the group then resumes before records that
    /// were handed on (they are read again: at least once).
    pub commit_error: Option<String>,
}

/// A record as `consume` prints it.
#[derive(Clone, Debug)]
pub struct ConsumedRecord {
    pub partition: u32,
    pub offset: Offset,
    pub value: Value,
}

/// How long, at most, the commit on exit takes, over every partition (Kafka's consumer commits
/// on close, within its `close()` timeout).
pub const EXIT_COMMIT_WAIT: Duration = Duration::from_secs(2);
/// How long one commit made while reading may take (Kafka's `commitSync` blocks up to
/// `default.api.timeout.ms`); a failed one is made again with the next records.
pub const COMMIT_WAIT: Duration = Duration::from_secs(2);
/// The auto-commit interval of a member whose commits the tool makes itself (see
/// [`consume_in_group`]): its timer never fires within a run.
const AUTO_COMMIT_NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a stopping member is given to finish a commit of its own (R62).
const MEMBER_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A consumer host's generation and coordinator, once it has joined.
type MemberSeen = Option<(Generation, Option<(BrokerId, SocketAddrV4)>)>;

/// Hands what a consumer host's actor delivered to the tool's thread, and its generation and
/// coordinator when either changed since `seen`. Records are handed on and forgotten: memory
/// stays flat however long this runs. `false` once the tool's thread stopped listening.
fn hand_over(
    host: &mut Host<Node, NoStore>,
    p: u32,
    tx: &mpsc::SyncSender<Delivery>,
    seen: &mut MemberSeen,
) -> bool {
    let member = host
        .state()
        .as_consumer()
        .and_then(|s| s.member.as_ref())
        .filter(|m| m.generation > 0)
        .map(|m| {
            let coordinator = m.coordinator.map(|(b, a)| (b, SocketAddrV4::from(a)));
            (m.generation, coordinator)
        });
    if let Some((generation, coordinator)) = member.filter(|_| member != *seen) {
        *seen = member;
        if tx
            .send(Delivery::Member(p, generation, coordinator))
            .is_err()
        {
            return false;
        }
    }
    for msg in host.take_delivered() {
        let delivery = match msg {
            Msg::RecordConsumed(c) => Delivery::Record(ConsumedRecord {
                partition: p,
                offset: c.offset,
                value: c.entry.record.value.clone(),
            }),
            Msg::Group(event) => Delivery::Group(p, event),
            _ => continue,
        };
        if tx.send(delivery).is_err() {
            return false;
        }
    }
    true
}

/// Whether a consumer host's member has a commit of its own in flight, or one due because it
/// stopped at `records_max` with its position uncommitted (R62).
fn closing_commit_pending(host: &Host<Node, NoStore>) -> bool {
    let Some(state) = host.state().as_consumer() else {
        return false;
    };
    state.member.as_ref().is_some_and(|m| {
        m.step == MemberStep::Consuming
            && (m.committing.is_some()
                || (state.records_left == Some(0) && m.committed < state.position))
    })
}

/// What a consumer's thread hands the tool's thread.
enum Delivery {
    Record(ConsumedRecord),
    /// A resume or an acknowledged commit (R61, R62).
    Group(u32, GroupEvent),
    /// The member's generation (R58) and coordinator, each time either changes.
    Member(u32, Generation, Option<(BrokerId, SocketAddrV4)>),
    Failed(String),
}

/// A group member's progress, as far as the tool's thread knows it.
#[derive(Default)]
struct MemberProgress {
    generation: Option<Generation>,
    /// Where the member resumed (R61).
    resumed_at: Option<Offset>,
    /// The group's offset as last known: the one the member resumed from, then each commit
    /// acknowledged, the member's or the tool's.
    committed: Option<Offset>,
    /// The offset after the last record handed on.
    handed_on: Option<Offset>,
}

impl MemberProgress {
    /// What a member's event says of the group's offset.
    fn apply(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::Resumed {
                committed,
                position,
                ..
            } => {
                self.resumed_at = Some(*position);
                self.committed = *committed;
                // It reads from `position` again, whatever was handed on before.
                self.handed_on = None;
            }
            GroupEvent::Committed { offset, .. } => self.committed = Some(*offset),
        }
    }

    /// The commit that would make the group's offset the position after what was handed on:
    /// `(generation, offset)`, or `None` if there is nothing to commit. With `auto`, a member
    /// that handed nothing on commits where it resumed, as Kafka's auto-commit commits the
    /// position.
    fn pending(&self, auto: bool) -> Option<(Generation, Offset)> {
        let target = self.handed_on.or(self.resumed_at.filter(|_| auto))?;
        let generation = self.generation?;
        (Some(target) != self.committed).then_some((generation, target))
    }
}

/// Reads partitions with the model's Consumer actor, one host per partition, each on its own
/// thread; records arrive in offset order per partition. Without `from_beginning`, each
/// partition's consumer starts at the high watermark it had at start (Kafka's
/// `auto.offset.reset=latest`); with it, at offset 0.
/// Returns how many records were handed to `on_record`.
pub fn consume(
    bootstrap: SocketAddrV4,
    options: &ConsumeOptions,
    stop: &AtomicBool,
    on_record: impl FnMut(&ConsumedRecord),
) -> Result<u64, String> {
    consume_in_group(bootstrap, options, None, stop, on_record, |_| {}).map(|r| r.records)
}

/// [`consume`], and with `group` each partition's consumer is a member of it (R61, R62):
/// `__consumer_offsets` is created if need be, and each member starts at the group's committed
/// offset, or where `auto.offset.reset` says, and commits as it reads. `on_group_event` sees
/// each member's resume and each commit the member had acknowledged.
///
/// Who commits what, so that the group's offset ends at the record after the last one handed
/// to `on_record`:
/// - the members, as R62 says: after each fetch's records are handed on (manual), or on their
///   timer (auto); with `max_records` on one partition, the member reads exactly that many
///   (`records_max`) and commits them as it stops;
/// - with `max_records` over several partitions, the limit is no one member's: the members make
///   no commit, and the tool commits the offset after the last record handed on (R59, with the
///   member's generation) after each batch handed on (manual) or every interval (auto);
/// - on exit, whatever stopped it, each member is given [`MEMBER_CLOSE_WAIT`] to finish a
///   commit of its own, then the tool commits the offset after the last record handed on
///   wherever the group's offset is not known to be that (Kafka's consumer commits on close),
///   within [`EXIT_COMMIT_WAIT`] in all.
pub fn consume_in_group(
    bootstrap: SocketAddrV4,
    options: &ConsumeOptions,
    group: Option<&GroupOptions>,
    stop: &AtomicBool,
    mut on_record: impl FnMut(&ConsumedRecord),
    mut on_group_event: impl FnMut(&GroupEvent),
) -> Result<ConsumeReport, String> {
    if let Some(g) = group {
        group::validate_group(&g.group)?;
    }
    let metadata = topic_metadata(bootstrap, &options.topic)?;
    if group.is_some() {
        group::ensure_offsets_topic(bootstrap)?;
    }
    let partitions: Vec<u32> = match options.partition {
        Some(p) if p as usize >= metadata.partitions.len() => {
            return Err(format!(
                "topic '{}' has no partition {p} (it has {})",
                options.topic,
                metadata.partitions.len()
            ))
        }
        Some(p) => vec![p],
        None => metadata
            .partitions
            .iter()
            .map(|p| p.topic_partition.partition)
            .collect(),
    };
    let topic = Topic::new(&options.topic);
    let mut start_offsets = BTreeMap::new();
    for p in &partitions {
        let mut start = 0;
        // A member starts where its group says (R61), not here.
        if !options.from_beginning && group.is_none() {
            let tp = TopicPartition::new(&topic, *p);
            let leader = metadata.partitions[*p as usize]
                .leader
                .and_then(|l| metadata.brokers.iter().find(|(b, _)| *b == l))
                .map(|(_, a)| *a);
            if let Some(Ok(o)) = leader.map(|a| list_offsets(a, &tp)) {
                start = o.high_watermark;
            }
        }
        start_offsets.insert(*p, start);
    }
    // A limit on one partition is its member's; over several, the tool's (see above).
    let records_max = options.max_records.filter(|_| partitions.len() == 1);
    let tool_commits = group.is_some() && options.max_records.is_some() && records_max.is_none();
    let group_config = group.map(|g| {
        let (commit, interval) = match (tool_commits, g.auto_commit) {
            // A member that never commits: auto, on a timer that does not fire.
            (true, _) => (CommitMode::Auto, AUTO_COMMIT_NEVER),
            (false, true) => (CommitMode::Auto, g.auto_commit_interval),
            (false, false) => (CommitMode::Manual, g.auto_commit_interval),
        };
        GroupConfig {
            group: Group::new(&g.group),
            offset_reset: g.offset_reset,
            commit,
            auto_commit_interval: interval..interval + Duration::from_millis(1),
        }
    });
    let mut coordinator = match group {
        Some(g) => Some(group::Coordinator::new(bootstrap, &g.group)?),
        None => None,
    };
    let bootstrap_ids = bootstrap_list(bootstrap, &metadata);
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel::<Delivery>(65_536);
    let mut threads = Vec::new();
    for p in partitions.iter().copied() {
        let config = ConsumerConfig {
            bootstrap: bootstrap_ids.clone(),
            topic_partition: TopicPartition::new(&topic, p),
            fetch_bytes_max: BATCH_BYTES_MAX,
            request_timeout: true,
            timing: options.timing.timing(),
            // auto.offset.reset: the consumer reads from here, not from 0.
            start_offset: start_offsets[&p],
            group: group_config.clone(),
            records_max: records_max.filter(|_| group.is_some()),
        };
        let tx = tx.clone();
        let done = done.clone();
        let trace_path = options
            .trace_dir
            .as_ref()
            .map(|d| d.join(format!("consumer-p{p}.trace")));
        threads.push(std::thread::spawn(move || {
            let run = || -> Result<(), String> {
                let socket = client_socket(bootstrap).map_err(|e| e.to_string())?;
                let trace = match &trace_path {
                    Some(path) => Some(
                        crate::trace::TraceWriter::open(path)
                            .map_err(|e| format!("trace {}: {e}", path.display()))?,
                    ),
                    None => None,
                };
                let mut host = Host::start(
                    Node::Consumer(Consumer::new(config)),
                    socket,
                    NoStore,
                    u64::from(p),
                    None,
                    TransportConfig::client(incarnation::clock()),
                    None,
                    trace,
                )
                .map_err(|e| e.to_string())?;
                let mut member_seen = None;
                while !done.load(Ordering::Relaxed) {
                    host.step(Duration::from_millis(50))
                        .map_err(|e| e.to_string())?;
                    if !hand_over(&mut host, p, &tx, &mut member_seen) {
                        return Ok(());
                    }
                }
                // R62: a commit the member makes itself, in flight or due as it stops at
                // `records_max`, is let finish.
                let deadline = Instant::now() + MEMBER_CLOSE_WAIT;
                while Instant::now() < deadline && closing_commit_pending(&host) {
                    host.step(Duration::from_millis(50))
                        .map_err(|e| e.to_string())?;
                    if !hand_over(&mut host, p, &tx, &mut member_seen) {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.send(Delivery::Failed(e));
            }
        }));
    }
    drop(tx);
    let auto = group.is_some_and(|g| g.auto_commit);
    let mut members: BTreeMap<u32, MemberProgress> = BTreeMap::new();
    // The tool's commits while reading: `deadline` bounds them.
    let commit_pending = |members: &mut BTreeMap<u32, MemberProgress>,
                          coordinator: &mut Option<group::Coordinator>,
                          deadline: Instant|
     -> Option<String> {
        let coordinator = coordinator.as_mut()?;
        let mut error = None;
        for (p, m) in members.iter_mut() {
            let Some((generation, offset)) = m.pending(auto) else {
                continue;
            };
            let tp = TopicPartition::new(&topic, *p);
            match coordinator.offset_commit(&tp, generation, offset, deadline) {
                Ok(()) => m.committed = Some(offset),
                Err(e) => error = Some(e),
            }
        }
        error
    };
    let mut count = 0u64;
    let mut last = Instant::now();
    let mut last_auto_commit = Instant::now();
    let max_reached = |count: u64| options.max_records.is_some_and(|m| count >= m);
    let result = 'read: loop {
        if stop.load(Ordering::Relaxed) || max_reached(count) {
            break Ok(());
        }
        if options.idle_timeout.is_some_and(|t| last.elapsed() >= t) {
            break Ok(());
        }
        // One delivery, waiting for it, then every one already there: a batch.
        let mut next = rx.recv_timeout(Duration::from_millis(50));
        let mut handed_on = false;
        loop {
            match next {
                Ok(Delivery::Record(record)) => {
                    if max_reached(count) {
                        // Read, never handed on: it is not committed either.
                        break;
                    }
                    on_record(&record);
                    count += 1;
                    last = Instant::now();
                    handed_on = true;
                    let m = members.entry(record.partition).or_default();
                    m.handed_on = Some(record.offset + 1);
                }
                Ok(Delivery::Group(p, event)) => {
                    members.entry(p).or_default().apply(&event);
                    on_group_event(&event);
                }
                Ok(Delivery::Member(p, generation, found)) => {
                    members.entry(p).or_default().generation = Some(generation);
                    if let Some(c) = coordinator.as_mut().filter(|c| c.found.is_none()) {
                        c.found = found;
                    }
                }
                Ok(Delivery::Failed(e)) => break 'read Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break 'read Ok(()),
            }
            next = rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
            });
        }
        let commit_now = if auto {
            last_auto_commit.elapsed() >= group.map_or(Duration::MAX, |g| g.auto_commit_interval)
        } else {
            handed_on
        };
        if tool_commits && commit_now {
            last_auto_commit = Instant::now();
            // One that fails is made again with the next batch, and on exit.
            let _ = commit_pending(&mut members, &mut coordinator, Instant::now() + COMMIT_WAIT);
        }
    };
    done.store(true, Ordering::Relaxed);
    // Drain while the members stop (a thread may wait on a full channel), keeping what they
    // say of the group; records not handed on by now never are.
    for delivery in rx.iter() {
        match delivery {
            Delivery::Group(p, event) => members.entry(p).or_default().apply(&event),
            Delivery::Member(p, generation, _) => {
                members.entry(p).or_default().generation = Some(generation)
            }
            Delivery::Record(_) | Delivery::Failed(_) => {}
        }
    }
    for t in threads {
        let _ = t.join();
    }
    // Every member has stopped: no commit of theirs follows this one.
    let commit_error = commit_pending(
        &mut members,
        &mut coordinator,
        Instant::now() + EXIT_COMMIT_WAIT,
    );
    result.map(|()| ConsumeReport {
        records: count,
        commit_error,
    })
}

/// How the quorum stands as `controllers` (controller 1's address first) say, each asked at
/// once and waited for at most `timeout`.
pub fn quorum_status(controllers: &[SocketAddrV4], timeout: Duration) -> QuorumStatus {
    QuorumStatus::from_answers(controllers, &describe_quorum(controllers, timeout))
}

/// One controller's answer to DescribeQuorum (R75), or why there was none.
pub type QuorumAnswer = (SocketAddrV4, Result<QuorumDescription, String>);

/// DescribeQuorum to every controller at once, each waiting at most `timeout`: a dead one must
/// not hide the others.
pub fn describe_quorum(controllers: &[SocketAddrV4], timeout: Duration) -> Vec<QuorumAnswer> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = controllers
            .iter()
            .map(|c| {
                scope.spawn(move || {
                    let answer = request_within(*c, &Msg::DescribeQuorum, timeout, |m| match m {
                        Msg::DescribeQuorumResponse(d) => Some(d),
                        _ => None,
                    })
                    .map_err(|_| format!("controller {c} did not answer"));
                    (*c, answer)
                })
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join().expect("a DescribeQuorum thread panicked"))
            .collect()
    })
}

/// How the quorum stands, as kafka-metadata-quorum's `describe --status` and `--replication`
/// show it: from the leader's answer, with every voter's log end offset and lag.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QuorumStatus {
    /// `None`: no controller that answered leads (an election may be under way).
    pub leader_id: Option<u32>,
    pub leader_epoch: u32,
    pub high_watermark: u64,
    pub max_follower_lag: Option<u64>,
    pub voters: Vec<QuorumVoterStatus>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QuorumVoterStatus {
    pub node_id: u32,
    pub address: Option<String>,
    /// As the leader last saw it (`None`: it has not fetched in this epoch).
    pub log_end_offset: Option<u64>,
    pub lag: Option<u64>,
    /// Leader, Follower, Candidate or Unattached as the node itself says; Unreachable if it
    /// did not answer.
    pub status: String,
}

impl QuorumStatus {
    /// From every controller's answer: the leader of the newest epoch among them speaks for the
    /// quorum; each node says its own role. `controllers[n - 1]` is controller `n`.
    pub fn from_answers(controllers: &[SocketAddrV4], answers: &[QuorumAnswer]) -> QuorumStatus {
        let described: Vec<&QuorumDescription> = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .collect();
        let leader = described
            .iter()
            .filter(|d| d.leader == Some(d.node_id) && !d.voters.is_empty())
            .max_by_key(|d| d.epoch);
        let epoch = described.iter().map(|d| d.epoch).max().unwrap_or(0);
        let leader_end = leader.map(|l| l.log_end_offset);
        let voters = (1..=controllers.len() as u32)
            .map(|n| {
                let address = controllers[n as usize - 1];
                let own = answers
                    .iter()
                    .find(|(a, _)| *a == address)
                    .and_then(|(_, d)| d.as_ref().ok());
                let log_end_offset = leader
                    .and_then(|l| l.voters.iter().find(|(v, _)| *v == n).and_then(|(_, o)| *o));
                let status = match own {
                    None => "Unreachable",
                    Some(d) if d.leader == Some(d.node_id) && !d.voters.is_empty() => "Leader",
                    Some(d) if d.leader.is_some() => "Follower",
                    Some(d) if d.voted_for_self() => "Candidate",
                    Some(_) => "Unattached",
                };
                QuorumVoterStatus {
                    node_id: n,
                    address: Some(address.to_string()),
                    log_end_offset,
                    lag: leader_end
                        .zip(log_end_offset)
                        .map(|(e, o)| e.saturating_sub(o)),
                    status: status.into(),
                }
            })
            .collect::<Vec<_>>();
        QuorumStatus {
            leader_id: leader.map(|l| l.node_id),
            leader_epoch: leader.map_or(epoch, |l| l.epoch),
            high_watermark: leader.map_or(0, |l| l.high_watermark),
            max_follower_lag: leader
                .map(|_| voters.iter().filter_map(|v| v.lag).max().unwrap_or(0)),
            voters,
        }
    }
}
