//! One node's event loop: an `Actor` over a UDP socket, a timer wheel and a store. Spec: R0.
//!
//! Each step (start, message or timer) runs the actor's handler and then its commands *in the
//! order they were emitted*: a `Save` is written to the store (and fsynced, if the policy says
//! so) before the next command runs, so no `Send` after it can leave before its data is durable.
//! The model's handlers emit `Save` first (the Outbox, rule R0); the host keeps that order.
//!
//! Timers draw a real duration from the range the actor gives, with a seeded generator, so that
//! a run's jitter is reproducible. Ids are socket addresses (`Id` packs an IPv4 address and port);
//! the host converts them at the socket and nowhere else.
//!
//! Datagrams that fail to decode, and messages the node's [`Admission`] policy refuses (such as
//! a LeaderAndIsr that does not come from the controller), are dropped and counted in [`Stats`].

use crate::codec::{self, CodecError, DATAGRAM_BYTES_MAX};
use crate::store::Durable;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stateright::actor::{Actor, Command, Id, Out};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Counters of what a host did and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub saves: u64,
    /// Datagrams that failed to decode: truncated, corrupt, wrong version, oversized.
    pub dropped_malformed: u64,
    /// Messages refused by the admission policy (unknown or unexpected senders).
    pub dropped_unknown_sender: u64,
    /// Messages the actor emitted that would not fit in a datagram.
    pub dropped_oversized: u64,
    /// Datagrams from a non-IPv4 address.
    pub dropped_non_ipv4: u64,
}

/// Decides whether a decoded message from `src` may reach the actor.
pub type Admission<M> = Box<dyn Fn(Id, &M) -> bool + Send>;

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

pub struct Host<A: Actor, D> {
    actor: A,
    id: Id,
    socket: UdpSocket,
    store: D,
    state: A::State,
    timers: HashMap<A::Timer, Instant>,
    jitter: Jitter,
    admission: Option<Admission<A::Msg>>,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    read_timeout: Option<Duration>,
    pub stats: Stats,
}

impl<A, D> Host<A, D>
where
    A: Actor,
    A::Msg: Serialize + DeserializeOwned,
    D: Durable<A::Storage>,
{
    /// Loads the store and starts the actor on `socket` (which must be bound to IPv4).
    pub fn start(
        actor: A,
        socket: UdpSocket,
        mut store: D,
        seed: u64,
        admission: Option<Admission<A::Msg>>,
    ) -> io::Result<Self> {
        let id = match socket.local_addr()? {
            SocketAddr::V4(a) => Id::from(a),
            SocketAddr::V6(_) => return Err(io::Error::other("the cluster runs on IPv4")),
        };
        let storage = store.load()?;
        let mut out = Out::new();
        let state = actor.on_start(id, &storage, &mut out);
        let mut host = Host {
            actor,
            id,
            socket,
            store,
            state,
            timers: HashMap::new(),
            jitter: Jitter(seed ^ u64::from(id_port(id))),
            admission,
            recv_buf: vec![0; DATAGRAM_BYTES_MAX + 1],
            send_buf: Vec::with_capacity(DATAGRAM_BYTES_MAX),
            read_timeout: None,
            stats: Stats::default(),
        };
        host.run_commands(out)?;
        Ok(host)
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

    /// Writes what the store deferred; for a clean shutdown.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.store.checkpoint()
    }

    /// Runs due timers, then waits for one datagram until the next timer or `wait_max`,
    /// whichever is sooner, and handles it. Errors are the store's: the node must stop.
    pub fn step(&mut self, wait_max: Duration) -> io::Result<()> {
        self.fire_due_timers()?;
        let now = Instant::now();
        let wait = self
            .timers
            .values()
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(wait_max)
            .min(wait_max)
            .max(Duration::from_micros(100));
        if self.read_timeout != Some(wait) {
            self.socket.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
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
        let src = Id::from(from);
        let msg: A::Msg = match codec::decode(&self.recv_buf[..len]) {
            Ok(m) => m,
            Err(CodecError::Oversized) if len > DATAGRAM_BYTES_MAX => {
                self.stats.dropped_malformed += 1;
                return Ok(());
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return Ok(());
            }
        };
        if let Some(admit) = &self.admission {
            if !admit(src, &msg) {
                self.stats.dropped_unknown_sender += 1;
                return Ok(());
            }
        }
        let mut out = Out::new();
        let mut state = Cow::Borrowed(&self.state);
        self.actor.on_msg(self.id, &mut state, src, msg, &mut out);
        if let Cow::Owned(next) = state {
            self.state = next;
        }
        self.run_commands(out)
    }

    /// Steps until `done` holds for the state or `stop` is raised.
    pub fn run_until(
        &mut self,
        stop: &AtomicBool,
        mut done: impl FnMut(&A::State) -> bool,
    ) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) && !done(&self.state) {
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
            let mut state = Cow::Borrowed(&self.state);
            self.actor.on_timeout(self.id, &mut state, &timer, &mut out);
            if let Cow::Owned(next) = state {
                self.state = next;
            }
            self.run_commands(out)?;
        }
        Ok(())
    }

    /// R0: the commands of one step, in order. A store error stops the node: it cannot promise
    /// durability any more, and a message sent after a failed save could acknowledge lost data.
    fn run_commands(&mut self, out: Out<A>) -> io::Result<()> {
        for command in out.iter() {
            match command {
                Command::Save(storage) => {
                    self.store.save(storage)?;
                    self.stats.saves += 1;
                }
                Command::Send(to, msg) => self.send(*to, msg),
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

    fn send(&mut self, to: Id, msg: &A::Msg) {
        match codec::encode(msg, &mut self.send_buf) {
            Ok(()) => {
                let to = SocketAddrV4::from(to);
                // A lost datagram is the network's business: the protocol retransmits.
                let _ = self.socket.send_to(&self.send_buf, to);
                self.stats.sent += 1;
            }
            Err(_) => self.stats.dropped_oversized += 1,
        }
    }
}

fn id_port(id: Id) -> u16 {
    SocketAddrV4::from(id).port()
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
