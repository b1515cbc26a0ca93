//! Prometheus metrics of one node, served over HTTP on `--metrics-addr` (GET /metrics).
//!
//! Names follow Kafka's JMX metrics as the Prometheus JMX exporter spells them
//! (`kafka_server_replicamanager_underreplicatedpartitions` for
//! `kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions`), so that dashboards and
//! alerts written for Kafka read them. The values come from a [`host::Observer`]: gauges from the
//! actor's state every [`host::SAMPLE_INTERVAL`], counters and latencies from the messages the
//! node handles and sends. Nothing here changes what the node does.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `kafka_server_replicamanager_underreplicatedpartitions` | gauge | partitions this broker leads whose ISR is smaller than their replicas |
//! | `kafka_server_replicamanager_leadercount` | gauge | partitions this broker leads |
//! | `kafka_server_replicamanager_partitioncount` | gauge | replicas this broker hosts |
//! | `kafka_server_replicamanager_isrshrinks_total`, `..._isrexpands_total` | counter | ISR changes this broker made as leader, counted when the controller accepts them (R7) |
//! | `kafka_server_replicafetchermanager_maxlag` | gauge | the largest lag, in records, of any follower of a partition this broker leads (leader's LEO minus the follower's last fetch offset) |
//! | `kafka_server_brokertopicmetrics_messagesin_total`, `..._bytesin_total` | counter | records and value bytes in produce requests |
//! | `kafka_server_brokertopicmetrics_messagesout_total`, `..._bytesout_total` | counter | records and value bytes in fetch responses, to consumers and followers |
//! | `kafka_network_requestmetrics_requests_total{request}` | counter | requests handled: `Produce`, `FetchConsumer`, `FetchFollower` |
//! | `kafka_network_requestmetrics_totaltime_seconds{request}` | histogram | from a request's arrival to its response (a held produce or fetch included) |
//! | `kafka_controller_kafkacontroller_activecontrollercount` | gauge | 1 on the controller, 0 on a broker |
//! | `kafka_controller_kafkacontroller_offlinepartitionscount` | gauge | partitions without a leader (controller) |
//! | `watermark_dropped_total{reason}` | counter | datagrams and messages dropped, by reason (the stop line's `dropped_*` and `fault_dropped` counters) |

use crate::host::{Observer, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use stateright::actor::Id;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watermark_model::*;

/// The most requests awaiting their response that latency tracking remembers; beyond, the
/// oldest are forgotten (an `acks=0` produce has no response).
const PENDING_MAX: usize = 16_384;

type Labels = Vec<(&'static str, &'static str)>;

/// A request awaiting its response: who sent it, and what the response echoes.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Pending {
    Produce(Id, TopicPartition, u32, u32),
    Fetch(Id, TopicPartition, Offset),
}

/// One node's metrics, and the observer that keeps them.
pub struct NodeMetrics {
    registry: Arc<Registry>,
    under_replicated: Gauge,
    leaders: Gauge,
    partitions: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    max_lag: Gauge,
    messages_in: Counter,
    bytes_in: Counter,
    messages_out: Counter,
    bytes_out: Counter,
    requests: Family<Labels, Counter>,
    total_time: Family<Labels, Histogram, fn() -> Histogram>,
    active_controller: Gauge,
    offline: Gauge,
    dropped: Family<Labels, Counter>,
    /// The drop counters as last synced, to add only what grew.
    dropped_seen: HashMap<&'static str, u64>,
    pending: HashMap<Pending, (Instant, &'static str)>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut m = NodeMetrics {
            registry: Arc::default(),
            under_replicated: Gauge::default(),
            leaders: Gauge::default(),
            partitions: Gauge::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            max_lag: Gauge::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            requests: Family::default(),
            total_time: Family::new_with_constructor(latency_histogram),
            active_controller: Gauge::default(),
            offline: Gauge::default(),
            dropped: Family::default(),
            dropped_seen: HashMap::new(),
            pending: HashMap::new(),
        };
        let r = Arc::get_mut(&mut m.registry).expect("not shared yet");
        r.register(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions this broker leads whose ISR is smaller than their replicas",
            m.under_replicated.clone(),
        );
        r.register(
            "kafka_server_replicamanager_leadercount",
            "Partitions this broker leads",
            m.leaders.clone(),
        );
        r.register(
            "kafka_server_replicamanager_partitioncount",
            "Replicas this broker hosts",
            m.partitions.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrshrinks",
            "ISR shrinks this broker made as leader, accepted by the controller",
            m.isr_shrinks.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrexpands",
            "ISR expansions this broker made as leader, accepted by the controller",
            m.isr_expands.clone(),
        );
        r.register(
            "kafka_server_replicafetchermanager_maxlag",
            "The largest lag in records of a follower of a partition this broker leads",
            m.max_lag.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_messagesin",
            "Records received in produce requests",
            m.messages_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesin",
            "Value bytes received in produce requests",
            m.bytes_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_messagesout",
            "Records sent in fetch responses, to consumers and followers",
            m.messages_out.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesout",
            "Value bytes sent in fetch responses, to consumers and followers",
            m.bytes_out.clone(),
        );
        r.register(
            "kafka_network_requestmetrics_requests",
            "Requests handled, by type",
            m.requests.clone(),
        );
        r.register(
            "kafka_network_requestmetrics_totaltime_seconds",
            "Time from a request's arrival to its response, by type",
            m.total_time.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller",
            m.active_controller.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader, as the controller sees them",
            m.offline.clone(),
        );
        r.register(
            "watermark_dropped",
            "Datagrams and messages dropped, by reason",
            m.dropped.clone(),
        );
        m
    }

    /// The registry to serve; it reads the same metrics this observer updates.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    fn request_arrived(&mut self, key: Pending, request: &'static str) {
        self.requests
            .get_or_create(&vec![("request", request)])
            .inc();
        if self.pending.len() >= PENDING_MAX {
            let cutoff = Instant::now() - Duration::from_secs(60);
            self.pending.retain(|_, (at, _)| *at >= cutoff);
            if self.pending.len() >= PENDING_MAX {
                self.pending.clear();
            }
        }
        self.pending.insert(key, (Instant::now(), request));
    }

    fn response_sent(&mut self, key: &Pending) {
        if let Some((at, request)) = self.pending.remove(key) {
            self.total_time
                .get_or_create(&vec![("request", request)])
                .observe(at.elapsed().as_secs_f64());
        }
    }

    fn sample_broker(&self, b: &BrokerState) {
        let mut leaders = 0;
        let mut under = 0;
        let mut lag: Offset = 0;
        for (_, r) in b.replicas.iter() {
            if let Role::Leader(l) = &r.role {
                leaders += 1;
                if r.partition.isr.len() < r.partition.replicas.len() {
                    under += 1;
                }
                let leo = r.log_end_offset();
                for f in &l.followers {
                    if let Some(f_leo) = f.log_end_offset {
                        lag = lag.max(leo.saturating_sub(f_leo));
                    }
                }
            }
        }
        self.partitions.set(b.replicas.len() as i64);
        self.leaders.set(leaders);
        self.under_replicated.set(under);
        self.max_lag.set(lag as i64);
        self.active_controller.set(0);
    }

    fn sample_controller(&self, c: &ControllerState) {
        self.active_controller.set(1);
        self.offline
            .set(c.partitions.values().filter(|p| p.leader.is_none()).count() as i64);
    }

    fn sync_drops(&mut self, stats: &Stats) {
        let host = [
            ("dropped_undecodable", stats.dropped_undecodable),
            ("dropped_unknown_sender", stats.dropped_unknown_sender),
            ("dropped_non_ipv4", stats.dropped_non_ipv4),
        ];
        let counters = host
            .into_iter()
            .chain(stats.transport.counters())
            .chain(stats.faults.counters())
            .filter(|(name, _)| name.starts_with("dropped_") || *name == "fault_dropped");
        for (name, value) in counters {
            let seen = self.dropped_seen.entry(name).or_insert(0);
            if value > *seen {
                let reason = name.strip_prefix("dropped_").unwrap_or(name);
                self.dropped
                    .get_or_create(&vec![("reason", reason)])
                    .inc_by(value - *seen);
                *seen = value;
            }
        }
    }
}

fn value_bytes<'a>(records: impl Iterator<Item = &'a Record>) -> (u64, u64) {
    records.fold((0, 0), |(n, b), r| (n + 1, b + r.value.len() as u64))
}

impl Observer<Node> for NodeMetrics {
    fn delivered(&mut self, src: Id, msg: &Msg, state: &NodeState) {
        match msg {
            Msg::Produce(p) => {
                let (n, b) = value_bytes(p.records.iter());
                self.messages_in.inc_by(n);
                self.bytes_in.inc_by(b);
                let key = Pending::Produce(src, p.topic_partition.clone(), p.batch, p.attempt);
                self.request_arrived(key, "Produce");
            }
            Msg::Fetch(f) => {
                let kind = if f.replica_id.is_some() {
                    "FetchFollower"
                } else {
                    "FetchConsumer"
                };
                let key = Pending::Fetch(src, f.topic_partition.clone(), f.fetch_offset);
                self.request_arrived(key, kind);
            }
            Msg::AlterPartitionResponse {
                topic_partition,
                result: Ok(accepted),
                ..
            } => {
                let known = match state {
                    NodeState::Broker(b) => b.replicas.get(topic_partition),
                    _ => None,
                };
                if let Some(r) = known {
                    match accepted.isr.len().cmp(&r.partition.isr.len()) {
                        std::cmp::Ordering::Less => self.isr_shrinks.inc(),
                        std::cmp::Ordering::Greater => self.isr_expands.inc(),
                        std::cmp::Ordering::Equal => 0,
                    };
                }
            }
            _ => {}
        }
    }

    fn sent(&mut self, to: Id, msg: &Msg) {
        match msg {
            Msg::ProduceResponse(p) => {
                let key = Pending::Produce(to, p.topic_partition.clone(), p.batch, p.attempt);
                self.response_sent(&key);
            }
            Msg::FetchResponse(f) => {
                if let FetchResult::Records { records, .. } = &f.result {
                    let (n, b) = value_bytes(records.iter().map(|e| &e.record));
                    self.messages_out.inc_by(n);
                    self.bytes_out.inc_by(b);
                }
                let key = Pending::Fetch(to, f.topic_partition.clone(), f.fetch_offset);
                self.response_sent(&key);
            }
            _ => {}
        }
    }

    fn sample(&mut self, state: &NodeState, stats: &Stats) {
        match state {
            NodeState::Broker(b) => self.sample_broker(b),
            NodeState::Controller(c) => self.sample_controller(c),
            _ => {}
        }
        self.sync_drops(stats);
    }
}

/// The registry in Prometheus' text format (OpenMetrics).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// Serves `registry` at `http://address/metrics` from a thread of its own, for the life of the
/// process. Returns the address bound (the port, if `address` asked for 0).
pub fn serve(address: SocketAddrV4, registry: Arc<Registry>) -> Result<SocketAddrV4, String> {
    let server = tiny_http::Server::http(address)
        .map_err(|e| format!("cannot serve metrics on {address}: {e}"))?;
    let bound = match server.server_addr() {
        tiny_http::ListenAddr::IP(std::net::SocketAddr::V4(a)) => a,
        _ => address,
    };
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(render(&registry)).with_header(content_type)
                } else {
                    tiny_http::Response::from_string("metrics are at /metrics\n")
                        .with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason_once_each() {
        let mut m = NodeMetrics::new();
        let mut stats = Stats {
            dropped_undecodable: 2,
            ..Stats::default()
        };
        m.sync_drops(&stats);
        m.sync_drops(&stats);
        stats.dropped_undecodable = 5;
        m.sync_drops(&stats);
        let text = render(&m.registry());
        assert!(
            text.contains("watermark_dropped_total{reason=\"undecodable\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn a_produce_is_counted_and_timed_until_its_response() {
        let mut m = NodeMetrics::new();
        let tp = TopicPartition::new(&Topic::new("t"), 0);
        let state = NodeState::Controller(ControllerState {
            controller_epoch: 1,
            brokers: Vec::new(),
            partitions: PartitionMap::new(),
            metadata_offset: 0,
            partition_offsets: PartitionMap::new(),
        });
        let request = Msg::Produce(ProduceRequest {
            topic_partition: tp.clone(),
            acks: Acks::All,
            leader_epoch: 0,
            records: vec![Record {
                value: Value::new(b"abc"),
                producer: None,
            }]
            .into(),
            batch: 7,
            attempt: 0,
        });
        m.delivered(Id::from(9), &request, &state);
        m.sent(
            Id::from(9),
            &Msg::ProduceResponse(ProduceResponse {
                topic_partition: tp,
                batch: 7,
                attempt: 0,
                leader_epoch: 0,
                result: Ok(0),
            }),
        );
        m.sample(&state, &Stats::default());
        let text = render(&m.registry());
        for line in [
            "kafka_server_brokertopicmetrics_messagesin_total 1",
            "kafka_server_brokertopicmetrics_bytesin_total 3",
            "kafka_network_requestmetrics_requests_total{request=\"Produce\"} 1",
            "kafka_network_requestmetrics_totaltime_seconds_count{request=\"Produce\"} 1",
            "kafka_controller_kafkacontroller_activecontrollercount 1",
            "kafka_controller_kafkacontroller_offlinepartitionscount 0",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(m.pending.is_empty(), "the response settles the request");
    }
}
