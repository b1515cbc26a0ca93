//! One node's event loop: an `Actor` over a UDP socket, a [`Transport`], a timer wheel and a
//! store. Spec: R0.
//!
//! Each step (start, message or timer) runs the actor's handler and then its commands *in the
//! order they were emitted*: a `Save` is written to the store (and fsynced, if the policy says
//! so) before the next command runs, so no `Send` after it can leave before its data is durable.
//! The model's handlers emit `Save` first (the Outbox, rule R0); the host keeps that order.
//!
//! Every message goes through the [`Transport`], so the actors see the model's network: per
//! channel FIFO, lossy, never duplicated, messages of any size up to
//! [`MESSAGE_BYTES_MAX`](crate::transport::MESSAGE_BYTES_MAX). The datagrams the transport
//! produces in answer (Resets, re-sends) are sent by the host. An optional fault layer
//! ([`FaultsFile`]) may drop, duplicate or delay outbound datagrams; delayed ones wait in a
//! queue ordered by release time, and the receive wait accounts for them.
//!
//! Timers draw a real duration from the range the actor gives, with a seeded generator, so that
//! a run's jitter is reproducible. Ids are socket addresses (`Id` packs an IPv4 address and port);
//! the host converts them at the socket and nowhere else.
//!
//! What the transport drops, messages that do not decode, and messages the node's [`Admission`]
//! policy refuses (such as a LeaderAndIsr that does not come, authenticated, from the
//! controller) are counted in [`Stats`].

use crate::codec;
use crate::faults::{FaultStats, FaultsFile};
use crate::store::Durable;
use crate::trace::{self, digest, Event, Record, TraceWriter};
use crate::transport::DATAGRAM_BYTES_MAX;
use crate::transport::{Datagram, Received, Transport, TransportConfig, TransportStats};
use serde::de::DeserializeOwned;
use serde::Serialize;
use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use watermark_model::application;

/// The most datagrams the fault layer may hold back at once; beyond, a delayed copy is dropped
/// (and counted in `fault_dropped`).
pub const DELAYED_DATAGRAMS_MAX: usize = 65_536;

/// Counters of what a host did and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams handed to the socket.
    pub sent: u64,
    pub saves: u64,
    /// Messages the transport delivered whose bytes are not a message of this build.
    pub dropped_undecodable: u64,
    /// Messages refused by the admission policy: unexpected senders, or node-only messages
    /// without authentication.
    pub dropped_unknown_sender: u64,
    /// Datagrams from a non-IPv4 address.
    pub dropped_non_ipv4: u64,
    pub transport: TransportStats,
    pub faults: FaultStats,
}

impl Stats {
    /// Every counter as `name=value`, space-separated, in a fixed order.
    pub fn summary(&self) -> String {
        let host = [
            ("received", self.received),
            ("sent", self.sent),
            ("saves", self.saves),
            ("dropped_undecodable", self.dropped_undecodable),
            ("dropped_unknown_sender", self.dropped_unknown_sender),
            ("dropped_non_ipv4", self.dropped_non_ipv4),
        ];
        host.iter()
            .chain(self.transport.counters().iter())
            .chain(self.faults.counters().iter())
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The socket's read timeout, set once: a read follows a poll that found a datagram, so it
/// waits only if the kernel dropped that datagram in between. Setting the timeout to each
/// step's wait instead cost a `setsockopt` in most steps: one syscall in ten under load.
const READ_GUARD: Duration = Duration::from_millis(1);

/// How often, at most, a host shows its state and counters to its [`Observer`].
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Watches a host's traffic and state from outside the actor, for metrics. The hooks run in the
/// node's loop, between steps, and see everything read-only: an observer changes no behaviour.
pub trait Observer<A: Actor>: Send {
    /// A message about to be handled, and the state it finds.
    fn delivered(&mut self, _src: Id, _msg: &A::Msg, _state: &A::State) {}
    /// A message the actor sent.
    fn sent(&mut self, _to: Id, _msg: &A::Msg) {}
    /// The state and counters, at most every [`SAMPLE_INTERVAL`].
    fn sample(&mut self, _state: &A::State, _stats: &Stats) {}
}

/// Decides whether a decoded message from `src` may reach the actor; the flag says whether the
/// transport authenticated it with the cluster key.
pub type Admission<M> = Box<dyn Fn(Id, &M, bool) -> bool + Send>;

/// A datagram the fault layer holds back until `at`.
struct Delayed {
    at: Instant,
    /// Ties broken by order of arrival.
    order: u64,
    datagram: Datagram,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// A deterministic generator for timer jitter (splitmix64).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn duration(&mut self, range: &Range<Duration>) -> Duration {
        let span = range.end.saturating_sub(range.start).as_nanos() as u64;
        if span == 0 {
            return range.start;
        }
        range.start + Duration::from_nanos(self.next() % span)
    }
}

/// A deliberately broken host, for showing that `watermark validate` notices one (tests only;
/// `broker --break-host`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// Runs a step's sends before its saves: a message may acknowledge data that is not durable.
    SendBeforeSave,
}

/// The event of a step, as traced.
type TracedEvent<A> = Event<A, <A as Actor>::Timer, <A as Actor>::Storage>;
type StepCommands<A> = Vec<trace::StepCommand<A>>;

pub struct Host<A: Actor, D>
where
    A::State: 'static,
{
    actor: A,
    id: Id,
    local: SocketAddrV4,
    socket: UdpSocket,
    store: D,
    /// Always owned: handlers mutate it in place instead of copying it on their first change
    /// (the checker hands them borrowed states, and a copy is what it needs).
    state: Cow<'static, A::State>,
    timers: HashMap<A::Timer, Instant>,
    jitter: Jitter,
    admission: Option<Admission<A::Msg>>,
    transport: Transport,
    faults: Option<FaultsFile>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    delayed_count: u64,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    outgoing: Vec<Datagram>,
    stats: Stats,
    trace: Option<TraceWriter>,
    breakage: Option<Breakage>,
    observer: Option<Box<dyn Observer<A>>>,
    /// What the actor sent to [`application`] since the program last took it.
    delivered: Vec<A::Msg>,
}

impl<A, D> Host<A, D>
where
    A: Actor + Serialize + Clone,
    A::State: 'static,
    A::Msg: Serialize + DeserializeOwned,
    A::Timer: Serialize,
    A::Storage: Serialize,
    D: Durable<A::Storage>,
{
    /// Loads the store and starts the actor on `socket` (which must be bound to IPv4) with a
    /// transport of the given incarnation and key. `faults`, if any, applies to every datagram
    /// sent, from the first one on. With `trace`, every step is recorded there, this start
    /// first ([`crate::trace`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        actor: A,
        socket: UdpSocket,
        mut store: D,
        seed: u64,
        admission: Option<Admission<A::Msg>>,
        transport: TransportConfig,
        faults: Option<FaultsFile>,
        trace: Option<TraceWriter>,
    ) -> io::Result<Self> {
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(io::Error::other("the cluster runs on IPv4")),
        };
        let id = Id::from(local);
        socket.set_read_timeout(Some(READ_GUARD))?;
        let storage = store.load()?;
        let mut out = Out::new();
        let state = actor.on_start(id, &storage, &mut out);
        let incarnation = transport.incarnation.get();
        let start = trace.is_some().then(|| Event::Start {
            actor: actor.clone(),
            id,
            incarnation,
            storage,
        });
        let mut host = Host {
            actor,
            id,
            local,
            socket,
            store,
            state: Cow::Owned(state),
            timers: HashMap::new(),
            jitter: Jitter(seed ^ u64::from(id_port(id))),
            admission,
            transport: Transport::new(transport),
            faults,
            delayed: BinaryHeap::new(),
            delayed_count: 0,
            recv_buf: vec![0; DATAGRAM_BYTES_MAX + 1],
            send_buf: Vec::new(),
            outgoing: Vec::new(),
            stats: Stats::default(),
            trace,
            breakage: None,
            observer: None,
            delivered: Vec::new(),
        };
        host.finish_step(start, out)?;
        Ok(host)
    }

    /// Breaks this host on purpose from the next step on (see [`Breakage`]).
    /// What the actor handed the program that hosts it (a client's acknowledgements and
    /// consumed records, sent to [`application`]) since the last call, in order. The host keeps
    /// nothing once it is taken.
    pub fn take_delivered(&mut self) -> Vec<A::Msg> {
        std::mem::take(&mut self.delivered)
    }

    /// Shows every step's traffic, and the state every [`SAMPLE_INTERVAL`], to `observer`.
    pub fn observe(&mut self, observer: Box<dyn Observer<A>>) {
        self.observer = Some(observer);
    }

    pub fn break_on_purpose(&mut self, breakage: Breakage) {
        self.breakage = Some(breakage);
    }

    /// Bytes and records this process appended to its trace, if it keeps one.
    pub fn trace_written(&self) -> Option<(u64, u64)> {
        self.trace.as_ref().map(|t| (t.bytes, t.records))
    }

    pub fn id(&self) -> Id {
        self.id
    }

    pub fn state(&self) -> &A::State {
        &self.state
    }

    pub fn actor(&self) -> &A {
        &self.actor
    }

    /// Every counter, the transport's and the fault layer's included.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.transport = self.transport.stats.clone();
        if let Some(f) = &self.faults {
            stats.faults = f.faults.stats.clone();
        }
        stats
    }

    /// Writes what the store deferred; for a clean shutdown.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.store.checkpoint()
    }

    /// Runs due timers and releases due delayed datagrams, then waits for one datagram until
    /// the next timer, the next delayed datagram or `wait_max`, whichever is sooner, and
    /// handles it. Errors are the store's: the node must stop.
    pub fn step(&mut self, wait_max: Duration) -> io::Result<()> {
        self.fire_due_timers()?;
        let now = Instant::now();
        if let Some(f) = &mut self.faults {
            f.refresh(now);
        }
        self.release_delayed(now);
        let next_delayed = self.delayed.peek().map(|Reverse(d)| d.at);
        let wait = self
            .timers
            .values()
            .copied()
            .chain(next_delayed)
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(wait_max)
            .min(wait_max)
            .max(Duration::from_micros(100));
        if !readable_within(&self.socket, wait)? {
            return Ok(());
        }
        // Ready, so the read returns at once; the socket's read timeout, READ_GUARD, only
        // guards against a datagram the kernel drops between the poll and the read (a bad
        // checksum).
        let (len, from) = match self.socket.recv_from(&mut self.recv_buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.stats.received += 1;
        let SocketAddr::V4(from) = from else {
            self.stats.dropped_non_ipv4 += 1;
            return Ok(());
        };
        let mut replies = std::mem::take(&mut self.outgoing);
        let received =
            self.transport
                .receive(self.local, from, &self.recv_buf[..len], &mut replies);
        let src = Id::from(from);
        let tracing = self.trace.is_some();
        let delivered = match received {
            Received::Deliver {
                payload,
                authenticated,
                sender_incarnation,
                sequence,
            } => {
                let event = tracing.then(|| Event::Deliver {
                    src,
                    sender_incarnation,
                    sequence,
                    payload: payload.to_vec(),
                });
                Some((codec::decode::<A::Msg>(&payload), authenticated, event))
            }
            Received::Dropped(_) | Received::Nothing => None,
        };
        for d in replies.drain(..) {
            self.transmit(d);
        }
        self.outgoing = replies;
        let Some((decoded, authenticated, event)) = delivered else {
            return Ok(());
        };
        let Ok(msg) = decoded else {
            self.stats.dropped_undecodable += 1;
            return Ok(());
        };
        if let Some(admit) = &self.admission {
            if !admit(src, &msg, authenticated) {
                self.stats.dropped_unknown_sender += 1;
                return Ok(());
            }
        }
        if let Some(o) = &mut self.observer {
            o.delivered(src, &msg, &self.state);
        }
        let mut out = Out::new();
        self.actor
            .on_msg(self.id, &mut self.state, src, msg, &mut out);
        self.finish_step(event, out)
    }

    /// Hands the actor a message from the program that hosts it (`src`, an id no datagram
    /// comes from: the model's `application`), as one step: a producer's `send()`. A trace
    /// records it as a delivery from `src`, which has no trace of its own.
    pub fn deliver_local(&mut self, src: Id, msg: A::Msg) -> io::Result<()> {
        let event = match &self.trace {
            Some(_) => {
                let mut payload = Vec::new();
                codec::encode(&msg, &mut payload).map_err(|e| io::Error::other(e.to_string()))?;
                Some(Event::Deliver {
                    src,
                    sender_incarnation: 0,
                    sequence: 0,
                    payload,
                })
            }
            None => None,
        };
        let mut out = Out::new();
        self.actor
            .on_msg(self.id, &mut self.state, src, msg, &mut out);
        self.finish_step(event, out)
    }

    /// Steps until `done` holds for the state or `stop` is raised.
    pub fn run_until(
        &mut self,
        stop: &AtomicBool,
        mut done: impl FnMut(&A::State) -> bool,
    ) -> io::Result<()> {
        let mut sampled: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) && !done(&self.state) {
            if self.observer.is_some() && sampled.is_none_or(|t| t.elapsed() >= SAMPLE_INTERVAL) {
                let stats = self.stats();
                if let Some(o) = &mut self.observer {
                    o.sample(&self.state, &stats);
                }
                sampled = Some(Instant::now());
            }
            self.step(Duration::from_millis(100))?;
        }
        Ok(())
    }

    fn fire_due_timers(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut due: Vec<(Instant, A::Timer)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*at, t.clone()))
            .collect();
        due.sort_by_key(|(at, _)| *at);
        for (_, timer) in due {
            // A handler earlier in this loop may have reset or cancelled it.
            if self.timers.get(&timer).is_none_or(|at| *at > now) {
                continue;
            }
            self.timers.remove(&timer);
            let mut out = Out::new();
            self.actor
                .on_timeout(self.id, &mut self.state, &timer, &mut out);
            let event = self.trace.is_some().then(|| Event::Timeout { timer });
            self.finish_step(event, out)?;
        }
        Ok(())
    }

    /// Records the step (if tracing) with the effects about to run, in the order they will
    /// run, then runs them. The record goes first: a process killed in between has recorded
    /// every save it made.
    fn finish_step(&mut self, event: Option<TracedEvent<A>>, out: Out<A>) -> io::Result<()> {
        let mut commands: StepCommands<A> = out.into_iter().collect();
        if self.breakage == Some(Breakage::SendBeforeSave) {
            commands.sort_by_key(|c| !matches!(c, Command::Send(..)));
        }
        let mut encoded: Vec<Option<Vec<u8>>> = Vec::new();
        if let (Some(trace), Some(event)) = (&mut self.trace, event) {
            // Messages are encoded once, here: their digests go on record and their bytes out.
            encoded = trace::encode_sends::<A>(&commands);
            let record = Record {
                at_us: now_us(),
                event,
                effects: trace::effects::<A>(&commands, &encoded),
                state_hash: digest(&*self.state),
            };
            trace.append(&record)?;
        }
        self.run_commands(&commands, &encoded)
    }

    /// R0: the commands of one step, in order. A store error stops the node: it cannot promise
    /// durability any more, and a message sent after a failed save could acknowledge lost data.
    fn run_commands(
        &mut self,
        commands: &StepCommands<A>,
        encoded: &[Option<Vec<u8>>],
    ) -> io::Result<()> {
        for (i, command) in commands.iter().enumerate() {
            match command {
                Command::Save(storage) => {
                    self.store.save(storage)?;
                    self.stats.saves += 1;
                }
                // Not a datagram: the hosting program's, to take.
                Command::Send(to, msg) if *to == application() => {
                    self.delivered.push(msg.clone());
                }
                Command::Send(to, msg) => {
                    if let Some(o) = &mut self.observer {
                        o.sent(*to, msg);
                    }
                    match encoded.get(i) {
                        Some(Some(bytes)) => self.send_encoded(*to, bytes),
                        _ => self.send(*to, msg),
                    }
                }
                Command::SetTimer(timer, range) => {
                    let at = Instant::now() + self.jitter.duration(range);
                    self.timers.insert(timer.clone(), at);
                }
                Command::CancelTimer(timer) => {
                    self.timers.remove(timer);
                }
                Command::ChooseRandom(..) => {
                    // The model's actors make no random choices.
                }
            }
        }
        Ok(())
    }

    /// A message the actor sent. Refusals (oversized) are counted by the transport: the
    /// protocol treats them as lost messages.
    fn send(&mut self, to: Id, msg: &A::Msg) {
        let mut buf = std::mem::take(&mut self.send_buf);
        if codec::encode(msg, &mut buf).is_err() {
            self.transport.stats.dropped_oversized += 1;
        } else {
            self.send_encoded(to, &buf);
        }
        self.send_buf = buf;
    }

    /// A message already encoded.
    fn send_encoded(&mut self, to: Id, bytes: &[u8]) {
        let mut datagrams = std::mem::take(&mut self.outgoing);
        let to = SocketAddrV4::from(to);
        let _ = self.transport.send(self.local, to, bytes, &mut datagrams);
        for d in datagrams.drain(..) {
            self.transmit(d);
        }
        self.outgoing = datagrams;
    }

    /// One datagram onto the wire, through the fault layer if there is one.
    fn transmit(&mut self, datagram: Datagram) {
        let Some(f) = &mut self.faults else {
            self.send_now(&datagram);
            return;
        };
        let copies = f.faults.decide(self.local, datagram.to).copies;
        let now = Instant::now();
        let last = copies.len();
        let mut datagram = Some(datagram);
        for (i, delay) in copies.into_iter().enumerate() {
            let copy = if i + 1 == last {
                datagram.take()
            } else {
                datagram.clone()
            };
            let Some(copy) = copy else { break };
            if delay.is_zero() {
                self.send_now(&copy);
            } else if self.delayed.len() < DELAYED_DATAGRAMS_MAX {
                self.delayed_count += 1;
                self.delayed.push(Reverse(Delayed {
                    at: now + delay,
                    order: self.delayed_count,
                    datagram: copy,
                }));
            } else if let Some(f) = &mut self.faults {
                f.faults.stats.fault_dropped += 1;
            }
        }
    }

    fn send_now(&mut self, datagram: &Datagram) {
        // A lost datagram is the network's business: the protocol retransmits.
        let _ = self.socket.send_to(&datagram.bytes, datagram.to);
        self.stats.sent += 1;
    }

    fn release_delayed(&mut self, now: Instant) {
        while self.delayed.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = self.delayed.pop() {
                self.send_now(&d.datagram);
            }
        }
    }
}

/// Wall-clock µs since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn id_port(id: Id) -> u16 {
    SocketAddrV4::from(id).port()
}

/// Whether a datagram is ready on `socket` within `wait`. ppoll(2) sleeps on a high-resolution
/// timer, where a blocking read's timeout (SO_RCVTIMEO) runs on the kernel's timer wheel and
/// wakes up to an eighth late (5 ms for a 40 ms wait): a producer handed a record at its time
/// sent it that late, and a timer fired that late.
fn readable_within(socket: &UdpSocket, wait: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask; nothing outlives the call.
    match unsafe { libc::ppoll(&mut fd, 1, &timeout, std::ptr::null()) } {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            e => Err(e),
        },
    }
}

/// A UDP socket on `address` with large kernel buffers, so that bursts of full datagrams are
/// not dropped at the socket.
pub fn bind(address: SocketAddrV4) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(8 * 1024 * 1024);
    let _ = socket.set_send_buffer_size(8 * 1024 * 1024);
    socket.bind(&SocketAddr::V4(address).into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_is_seeded() {
        let range = Duration::from_millis(10)..Duration::from_millis(20);
        let mut a = Jitter(7);
        let mut b = Jitter(7);
        for _ in 0..1000 {
            let d = a.duration(&range);
            assert!(range.contains(&d));
            assert_eq!(d, b.duration(&range));
        }
    }
}
