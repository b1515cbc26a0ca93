//! KRaft: the controllers' quorum and its metadata log, `__cluster_metadata` (KIP-595, KIP-631).
//! Spec: section 4a, rules R63–R72.
//!
//! The controllers are the voters of a Raft quorum built on Kafka's own replication: followers
//! *fetch* the log from the leader, naming their fetch offset and last fetched epoch, and the
//! leader answers a divergence with the epoch and end offset to truncate to (as KIP-320 does for
//! partitions, R24). The leader's high watermark is the majority's fetch offset, not an ISR's,
//! and it passes nothing until a record of the leader's own epoch (its LeaderChange record)
//! is below it. Elections are by vote: a Vote names the candidate's last epoch and log end
//! offset, and a vote is persisted before it is answered. The active controller is the leader;
//! its epoch is the controller epoch brokers fence older controllers by. Brokers are observers:
//! they fetch the log like followers but neither vote nor count towards the high watermark,
//! and they apply a record only once it is below the high watermark they were told.
//!
//! `QuorumNode` is a stateright actor of its own (`watermark check --preset quorum` checks it);
//! the contract between it and the data plane's single controller is spec section 4a's.

use crate::controller::ControllerState;
use crate::rules::*;
use crate::types::Offset;
use serde::{Deserialize, Serialize};
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// A KRaft `node.id`: a voter's or an observer's.
pub type NodeId = u32;
/// The epoch of `__cluster_metadata`'s leader: the controller epoch.
pub type QuorumEpoch = u32;

/// A record of the metadata log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// What each new leader writes first (KRaft's LeaderChangeMessage control record): the high
    /// watermark passes records of earlier epochs only together with one of the leader's own.
    LeaderChange { leader: NodeId },
    /// A controller change (a registration, a partition change), numbered: the quorum preset's
    /// workload.
    Change(u32),
    /// The active controller's state after one of its decisions (R73): what the single
    /// controller of section 4 saves (R0), written to the log instead, to take effect once
    /// committed. Each record holds the whole state, so that the newest one is all a new active
    /// controller needs.
    Controller(Arc<ControllerState>),
}

impl fmt::Debug for MetadataRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataRecord::LeaderChange { leader } => write!(f, "LeaderChange({leader})"),
            MetadataRecord::Change(c) => write!(f, "Change({c})"),
            MetadataRecord::Controller(c) => write!(
                f,
                "Controller(epoch {}, metadata offset {})",
                c.controller_epoch, c.metadata_offset
            ),
        }
    }
}

/// A record and the epoch of the leader that appended it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub epoch: QuorumEpoch,
    pub record: MetadataRecord,
}

impl fmt::Debug for MetadataEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.record, self.epoch)
    }
}

/// The quorum's timers, in Kafka's names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumTiming {
    /// `controller.quorum.election.timeout.ms`: an unattached voter or a candidate that has not
    /// won starts an election.
    pub election_timeout: Range<Duration>,
    /// `controller.quorum.fetch.timeout.ms`: a follower that has heard nothing from its leader
    /// starts an election; an observer asks another voter.
    pub fetch_timeout: Range<Duration>,
    /// `controller.quorum.fetch.max.wait.ms`: how long a leader holds a fetch with nothing new
    /// before answering it empty, so that a quiet quorum's followers still hear from their
    /// leader before their fetch timeout. `None` in the model, whose fetch timeouts fire at any
    /// moment anyway (bounded as false suspicions), so that an empty answer adds no behaviour.
    #[serde(default)]
    pub fetch_max_wait: Option<Range<Duration>>,
    /// `controller.quorum.request.timeout.ms`: a fetch unanswered for this long is sent again,
    /// since a datagram (or the answer's) may be lost, and a lost fetch must not look like a
    /// dead leader. `None` in the model, whose network loses a message only as a bounded fault
    /// and whose fetch timeout covers it.
    #[serde(default)]
    pub fetch_retry: Option<Range<Duration>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// `controller.quorum.voters`: every voter's node id and address. A node not among them is
    /// an observer (a broker).
    pub voters: Vec<(NodeId, Id)>,
    /// The changes this node writes, in order, as soon as it is the active controller, those
    /// its log lacks (the quorum preset's workload: a new controller's first writes).
    pub changes: Vec<u32>,
    /// Entries per fetch response, at most (the model's is 1).
    pub fetch_entries_max: usize,
    /// Whether a first start finds the quorum running, led by the first voter in epoch 1 with
    /// its LeaderChange record committed (the model's start, spec section 1: "Bootstrap");
    /// otherwise every voter starts unattached in epoch 0 and the first election is explored.
    pub bootstrapped: bool,
    pub timing: QuorumTiming,
}

impl QuorumConfig {
    pub fn is_voter(&self) -> bool {
        self.voters.iter().any(|(v, _)| *v == self.node_id)
    }

    fn address(&self, node: NodeId) -> Option<Id> {
        self.voters
            .iter()
            .find(|(v, _)| *v == node)
            .map(|(_, id)| *id)
    }

    fn other_voters(&self) -> impl Iterator<Item = Id> + '_ {
        self.voters
            .iter()
            .filter(move |(v, _)| *v != self.node_id)
            .map(|(_, id)| *id)
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// What a leader knows in its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderState {
    /// Its log end offset when elected: its LeaderChange record's offset.
    pub epoch_start: Offset,
    /// Each other voter's fetch offset in this epoch, once validated: how far it holds the log.
    pub voter_end_offsets: BTreeMap<NodeId, Offset>,
    /// Fetches with nothing to answer yet, by fetcher (a long poll), answered on the next append
    /// or high watermark move.
    pub held: BTreeMap<Id, QuorumFetch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QuorumRole {
    /// A voter that knows no leader in its epoch, or an observer between voters.
    Unattached,
    /// A voter asking for votes in its epoch; the voters that granted one.
    Candidate {
        granted: BTreeSet<NodeId>,
    },
    Leader(LeaderState),
    /// A voter or observer fetching from `QuorumState::leader`.
    Follower,
}

/// A node's quorum state. The epoch, the vote, the leader and the log are persisted
/// (`QuorumStorage`: KRaft's `quorum-state` file and the log); the rest is rebuilt.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumState {
    pub epoch: QuorumEpoch,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub log: Arc<Vec<MetadataEntry>>,
    /// Records below it are committed: a node applies them (and only them).
    pub high_watermark: Offset,
    pub role: QuorumRole,
    /// A follower's or an observer's outstanding fetch: where it went.
    pub fetching: Option<Id>,
    /// An observer that knows no leader asks `voters[bootstrap_index]` next.
    pub bootstrap_index: usize,
}

impl fmt::Debug for QuorumState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match &self.role {
            QuorumRole::Unattached => "unattached".to_string(),
            QuorumRole::Candidate { granted } => format!("candidate, votes {granted:?}"),
            QuorumRole::Leader(l) => format!("LEADER, voters at {:?}", l.voter_end_offsets),
            QuorumRole::Follower => match self.leader {
                Some(l) => format!("following {l}"),
                None => "following".into(),
            },
        };
        write!(
            f,
            "epoch {} {role}, voted {:?}, log {:?}, HWM {}",
            self.epoch, self.voted_for, self.log, self.high_watermark
        )
    }
}

impl QuorumState {
    pub fn log_end_offset(&self) -> Offset {
        self.log.len() as Offset
    }

    pub fn last_epoch(&self) -> QuorumEpoch {
        self.log.last().map_or(0, |e| e.epoch)
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, QuorumRole::Leader(_))
    }

    /// The records this node has applied: those below its high watermark.
    pub fn applied(&self) -> &[MetadataEntry] {
        &self.log[..(self.high_watermark as usize).min(self.log.len())]
    }

    /// The largest epoch at most `epoch` in the log, and where it ends (0, 0 if none): the
    /// leader's answer to a follower's last fetched epoch, and the follower's own cut.
    pub fn end_offset_for_epoch(&self, epoch: QuorumEpoch) -> (QuorumEpoch, Offset) {
        match self.log.iter().rposition(|e| e.epoch <= epoch) {
            Some(i) => (self.log[i].epoch, i as Offset + 1),
            None => (0, 0),
        }
    }

    fn storage(&self) -> QuorumStorage {
        QuorumStorage {
            epoch: self.epoch,
            voted_for: self.voted_for,
            leader: self.leader,
            log: self.log.clone(),
        }
    }
}

/// What survives a crash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumStorage {
    pub epoch: QuorumEpoch,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub log: Arc<Vec<MetadataEntry>>,
}

/// A fetch of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuorumFetch {
    /// The epoch of the leader the fetcher follows.
    pub epoch: QuorumEpoch,
    pub replica: NodeId,
    pub fetch_offset: Offset,
    pub last_fetched_epoch: QuorumEpoch,
    /// The fetcher's high watermark: a leader holds a fetch that would tell it nothing new.
    pub high_watermark: Offset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumError {
    /// The fetch names an older epoch than the receiver's.
    FencedLeaderEpoch,
    /// The fetch names a newer epoch than the receiver's.
    UnknownLeaderEpoch,
    /// The receiver does not lead the fetch's epoch.
    NotLeader,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumFetchResult {
    Records {
        entries: Vec<MetadataEntry>,
        high_watermark: Offset,
    },
    /// Truncate to the end of `epoch` (at most `end_offset`), then fetch again.
    Diverging {
        epoch: QuorumEpoch,
        end_offset: Offset,
    },
    Error(QuorumError),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumMsg {
    Vote {
        epoch: QuorumEpoch,
        candidate: NodeId,
        last_epoch: QuorumEpoch,
        log_end_offset: Offset,
    },
    VoteResponse {
        epoch: QuorumEpoch,
        voter: NodeId,
        granted: bool,
    },
    BeginQuorumEpoch {
        epoch: QuorumEpoch,
        leader: NodeId,
    },
    Fetch(QuorumFetch),
    /// Carries the responder's epoch and the leader it knows, so that a fetcher of an older
    /// epoch learns where to go.
    FetchResponse {
        epoch: QuorumEpoch,
        leader: Option<NodeId>,
        fetch_offset: Offset,
        result: QuorumFetchResult,
    },
}

impl QuorumMsg {
    /// KRaft's name for the API this message belongs to.
    pub fn api_name(&self) -> &'static str {
        match self {
            QuorumMsg::Vote { .. } => "Vote",
            QuorumMsg::VoteResponse { .. } => "VoteResponse",
            QuorumMsg::BeginQuorumEpoch { .. } => "BeginQuorumEpoch",
            QuorumMsg::Fetch(_) => "QuorumFetch",
            QuorumMsg::FetchResponse { .. } => "QuorumFetchResponse",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumTimer {
    /// Voters: `controller.quorum.election.timeout.ms`.
    Election,
    /// Followers and observers: `controller.quorum.fetch.timeout.ms`.
    FetchTimeout,
    /// The leader: `controller.quorum.fetch.max.wait.ms` (the real cluster only).
    FetchMaxWait,
    /// Followers and observers: `controller.quorum.request.timeout.ms` (the real cluster only).
    FetchRetry,
}

/// What `watermark quorum --describe` shows of one controller (KRaft's DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub node_id: NodeId,
    pub epoch: QuorumEpoch,
    pub leader: Option<NodeId>,
    pub log_end_offset: Offset,
    pub high_watermark: Offset,
    /// Whom this node voted for in its epoch.
    pub voted_for: Option<NodeId>,
    /// The leader's view of every voter: its log end offset as of its last fetch in this epoch
    /// (`None`: it has not fetched yet). Empty unless this node leads.
    pub voters: Vec<(NodeId, Option<Offset>)>,
}

impl QuorumDescription {
    /// A candidate, or a voter that stood and lost its epoch.
    pub fn voted_for_self(&self) -> bool {
        self.leader.is_none() && self.voted_for == Some(self.node_id)
    }
}

/// A voter (a controller) or an observer (a broker) of the metadata log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuorumNode {
    pub config: QuorumConfig,
}

/// A step's commands, saved before sent (R0).
struct Step {
    sends: Vec<(Id, QuorumMsg)>,
    persist: bool,
    /// The node heard from its leader: its fetch timeout starts over.
    heard_from_leader: bool,
}

impl QuorumNode {
    pub fn new(config: QuorumConfig) -> Self {
        QuorumNode { config }
    }

    fn me(&self) -> NodeId {
        self.config.node_id
    }

    /// R63: start from the persisted epoch, vote, leader and log. A voter that led its epoch
    /// resigns (it never leads an epoch twice); one that followed fetches from its leader again.
    fn start(&self, storage: &Option<QuorumStorage>, o: &mut Out<Self>) -> QuorumState {
        fired(R63);
        let mut s = QuorumState {
            epoch: 0,
            voted_for: None,
            leader: None,
            log: Arc::new(Vec::new()),
            high_watermark: 0,
            role: QuorumRole::Unattached,
            fetching: None,
            bootstrap_index: 0,
        };
        let timing = &self.config.timing;
        if self.config.is_voter() {
            o.set_timer(QuorumTimer::Election, timing.election_timeout.clone());
        }
        o.set_timer(QuorumTimer::FetchTimeout, timing.fetch_timeout.clone());
        if let (true, Some(wait)) = (self.config.is_voter(), &timing.fetch_max_wait) {
            o.set_timer(QuorumTimer::FetchMaxWait, wait.clone());
        }
        if let Some(retry) = &timing.fetch_retry {
            o.set_timer(QuorumTimer::FetchRetry, retry.clone());
        }
        match storage {
            Some(stored) => {
                s.epoch = stored.epoch;
                s.voted_for = stored.voted_for;
                s.leader = stored.leader.filter(|l| *l != self.me());
                s.log = stored.log.clone();
            }
            None if self.config.bootstrapped => return self.start_running(s, o),
            None => {}
        }
        let mut step = Step::new();
        let target = match s.leader {
            Some(leader) => self.config.address(leader),
            None if !self.config.is_voter() => self.config.voters.first().map(|(_, id)| *id),
            None => None,
        };
        if let Some(to) = target {
            s.role = QuorumRole::Follower;
            self.send_fetch(&mut s, to, &mut step);
        }
        step.flush(o, &s, &self.config.timing);
        s
    }

    /// R63: the quorum as a running cluster's: the first voter leads epoch 1, every node holds
    /// its LeaderChange record below the HWM, and the others fetch from it.
    fn start_running(&self, mut s: QuorumState, o: &mut Out<Self>) -> QuorumState {
        let Some(&(first, first_id)) = self.config.voters.first() else {
            return s;
        };
        s.epoch = 1;
        s.leader = Some(first);
        s.voted_for = self.config.is_voter().then_some(first);
        s.log = Arc::new(vec![MetadataEntry {
            epoch: 1,
            record: MetadataRecord::LeaderChange { leader: first },
        }]);
        s.high_watermark = 1;
        let mut step = Step::new();
        step.persist = true;
        if first == self.me() {
            s.role = QuorumRole::Leader(LeaderState {
                epoch_start: 0,
                voter_end_offsets: self.config.voters.iter().map(|(v, _)| (*v, 1)).collect(),
                held: BTreeMap::new(),
            });
            let mut cow = Cow::Owned(s);
            self.write_changes(&mut cow, &mut step);
            s = cow.into_owned();
        } else {
            s.role = QuorumRole::Follower;
            self.send_fetch(&mut s, first_id, &mut step);
        }
        step.flush(o, &s, &self.config.timing);
        s
    }

    fn on_msg(&self, s: &mut Cow<QuorumState>, src: Id, msg: QuorumMsg, o: &mut Out<Self>) {
        let mut step = Step::new();
        match msg {
            // R66: a vote from an older epoch is refused with ours.
            QuorumMsg::Vote { epoch, .. } if epoch < s.epoch => {
                fired(R66);
                self.answer_vote(s, src, false, &mut step);
            }
            // R64, R66: a newer epoch first; then a vote is granted at most once an epoch, to a
            // candidate whose log is at least as long in the last epoch.
            QuorumMsg::Vote {
                epoch,
                candidate,
                last_epoch,
                log_end_offset,
            } => {
                fired(R66);
                self.step_to_newer(s, epoch, None, &mut step);
                let granted = self.may_vote_for(s, candidate, last_epoch, log_end_offset);
                if granted {
                    self.record_vote(s, candidate, &mut step);
                }
                self.answer_vote(s, src, granted, &mut step);
            }
            // R64: an answer from a newer epoch deposes a candidate.
            QuorumMsg::VoteResponse { epoch, .. } if epoch > s.epoch => {
                self.step_to_newer(s, epoch, None, &mut step);
            }
            // R67: a granted vote in the candidate's epoch counts.
            QuorumMsg::VoteResponse {
                epoch,
                voter,
                granted: true,
            } if epoch == s.epoch && matches!(s.role, QuorumRole::Candidate { .. }) => {
                fired(R67);
                self.count_vote(s, voter, &mut step);
            }
            QuorumMsg::VoteResponse { .. } => {}
            // R68: the leader of a newer epoch, or of ours when we know none, is followed.
            QuorumMsg::BeginQuorumEpoch { epoch, leader }
                if epoch > s.epoch || (epoch == s.epoch && s.leader.is_none()) =>
            {
                fired(R68);
                self.follow(s, epoch, leader, &mut step);
            }
            QuorumMsg::BeginQuorumEpoch { .. } => {}
            // R69: only the leader of the fetch's epoch serves it.
            QuorumMsg::Fetch(fetch) if fetch.epoch == s.epoch && s.is_leader() => {
                fired(R69);
                self.serve_fetch(s, src, fetch, &mut step);
            }
            QuorumMsg::Fetch(fetch) => {
                fired(R69);
                self.refuse_fetch(s, src, &fetch, &mut step);
            }
            // R70: an answer from an older epoch (a deposed leader) is never applied.
            QuorumMsg::FetchResponse { epoch, .. } if epoch < s.epoch => fired(R70),
            // R70, R64: a newer epoch's answer names its leader: follow it.
            QuorumMsg::FetchResponse {
                epoch,
                leader: Some(leader),
                ..
            } if epoch > s.epoch || (epoch == s.epoch && s.leader.is_none()) => {
                fired(R70);
                self.follow(s, epoch, leader, &mut step);
            }
            QuorumMsg::FetchResponse { epoch, .. } if epoch > s.epoch => {
                self.step_to_newer(s, epoch, None, &mut step);
            }
            // R70: only the answer to the outstanding fetch, at the log's end, is taken.
            QuorumMsg::FetchResponse {
                fetch_offset,
                result,
                ..
            } if s.fetching == Some(src) && fetch_offset == s.log_end_offset() => {
                fired(R70);
                self.take_fetch_response(s, src, result, &mut step);
            }
            QuorumMsg::FetchResponse { .. } => {}
        }
        step.flush(o, s, &self.config.timing);
    }

    fn on_timer(&self, s: &mut Cow<QuorumState>, timer: &QuorumTimer, o: &mut Out<Self>) {
        let timing = &self.config.timing;
        let mut step = Step::new();
        match timer {
            // R65: an unattached voter or a losing candidate stands in the next epoch.
            QuorumTimer::Election => {
                o.set_timer(QuorumTimer::Election, timing.election_timeout.clone());
                if matches!(
                    s.role,
                    QuorumRole::Unattached | QuorumRole::Candidate { .. }
                ) {
                    fired(R65);
                    self.stand_for_election(s, &mut step);
                }
            }
            // R65: a voter whose leader went quiet stands in the next epoch.
            QuorumTimer::FetchTimeout if self.config.is_voter() => {
                o.set_timer(QuorumTimer::FetchTimeout, timing.fetch_timeout.clone());
                if matches!(s.role, QuorumRole::Follower) {
                    fired(R65);
                    self.stand_for_election(s, &mut step);
                }
            }
            // R72: an observer asks the next voter (its fetch, if any, is abandoned).
            QuorumTimer::FetchTimeout => {
                o.set_timer(QuorumTimer::FetchTimeout, timing.fetch_timeout.clone());
                fired(R72);
                self.fetch_from_next_voter(s, &mut step);
            }
            // R70: a fetch unanswered for the request timeout goes again, as it was.
            QuorumTimer::FetchRetry => {
                if let Some(retry) = &timing.fetch_retry {
                    o.set_timer(QuorumTimer::FetchRetry, retry.clone());
                }
                if let (QuorumRole::Follower, Some(to)) = (&s.role, s.fetching) {
                    fired(R70);
                    self.send_fetch(s.to_mut(), to, &mut step);
                }
            }
            // R69: a leader answers the fetches it held for fetch.max.wait.ms, empty if need be.
            QuorumTimer::FetchMaxWait => {
                if let Some(wait) = &timing.fetch_max_wait {
                    o.set_timer(QuorumTimer::FetchMaxWait, wait.clone());
                }
                if s.is_leader() {
                    fired(R69);
                    self.answer_every_held_fetch(s, &mut step);
                }
            }
        }
        step.flush(o, s, &self.config.timing);
    }

    /// R64: a message from a newer epoch moves this node to it, with no vote and `leader` (if
    /// known). A leader or candidate steps down; a deposed leader answers its held fetches.
    fn step_to_newer(
        &self,
        s: &mut Cow<QuorumState>,
        epoch: QuorumEpoch,
        leader: Option<NodeId>,
        step: &mut Step,
    ) {
        if epoch <= s.epoch {
            return;
        }
        fired(R64);
        let s = s.to_mut();
        let was = std::mem::replace(&mut s.role, QuorumRole::Unattached);
        s.epoch = epoch;
        s.voted_for = None;
        s.leader = leader;
        s.fetching = None;
        step.persist = true;
        if let QuorumRole::Leader(l) = was {
            self.answer_held_as_deposed(s, l, step);
        }
    }

    /// A deposed leader answers every fetch it held: it leads no more.
    fn answer_held_as_deposed(&self, s: &QuorumState, l: LeaderState, step: &mut Step) {
        for (to, fetch) in l.held {
            step.send(
                to,
                QuorumMsg::FetchResponse {
                    epoch: s.epoch,
                    leader: s.leader,
                    fetch_offset: fetch.fetch_offset,
                    result: QuorumFetchResult::Error(QuorumError::NotLeader),
                },
            );
        }
    }

    /// R66: whether this voter may vote for `candidate` in its epoch.
    fn may_vote_for(
        &self,
        s: &QuorumState,
        candidate: NodeId,
        last_epoch: QuorumEpoch,
        log_end_offset: Offset,
    ) -> bool {
        let free = match s.voted_for {
            Some(v) => v == candidate,
            None => s.leader.is_none(),
        };
        let up_to_date = (last_epoch, log_end_offset) >= (s.last_epoch(), s.log_end_offset());
        self.config.is_voter() && free && up_to_date
    }

    /// R66: a vote is durable before it is answered.
    fn record_vote(&self, s: &mut Cow<QuorumState>, candidate: NodeId, step: &mut Step) {
        if s.voted_for != Some(candidate) {
            s.to_mut().voted_for = Some(candidate);
            step.persist = true;
        }
    }

    fn answer_vote(&self, s: &QuorumState, to: Id, granted: bool, step: &mut Step) {
        step.send(
            to,
            QuorumMsg::VoteResponse {
                epoch: s.epoch,
                voter: self.me(),
                granted,
            },
        );
    }

    /// R65: next epoch, a vote for itself (persisted), and a Vote to every other voter naming
    /// its last epoch and log end offset.
    fn stand_for_election(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let me = self.me();
        {
            let s = s.to_mut();
            s.epoch += 1;
            s.voted_for = Some(me);
            s.leader = None;
            s.fetching = None;
            s.role = QuorumRole::Candidate {
                granted: BTreeSet::from([me]),
            };
        }
        step.persist = true;
        let vote = QuorumMsg::Vote {
            epoch: s.epoch,
            candidate: me,
            last_epoch: s.last_epoch(),
            log_end_offset: s.log_end_offset(),
        };
        for to in self.config.other_voters() {
            step.send(to, vote.clone());
        }
        self.become_leader_if_elected(s, step);
    }

    /// R67: count a granted vote.
    fn count_vote(&self, s: &mut Cow<QuorumState>, voter: NodeId, step: &mut Step) {
        if let QuorumRole::Candidate { granted } = &mut s.to_mut().role {
            granted.insert(voter);
        }
        self.become_leader_if_elected(s, step);
    }

    /// R67: a candidate with a majority leads its epoch. It writes a LeaderChange record at the
    /// epoch's start and tells the other voters (BeginQuorumEpoch).
    fn become_leader_if_elected(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let elected = match &s.role {
            QuorumRole::Candidate { granted } => granted.len() >= self.config.majority(),
            _ => false,
        };
        if !elected {
            return;
        }
        let me = self.me();
        {
            let s = s.to_mut();
            s.role = QuorumRole::Leader(LeaderState {
                epoch_start: s.log_end_offset(),
                voter_end_offsets: BTreeMap::new(),
                held: BTreeMap::new(),
            });
            s.leader = Some(me);
        }
        let begin = QuorumMsg::BeginQuorumEpoch {
            epoch: s.epoch,
            leader: me,
        };
        for to in self.config.other_voters() {
            step.send(to, begin.clone());
        }
        self.append(s, MetadataRecord::LeaderChange { leader: me }, step);
        self.write_changes(s, step);
    }

    /// R68: follow `leader` in `epoch` (persisted, as KRaft's quorum-state keeps the leader) and
    /// fetch from it.
    fn follow(
        &self,
        s: &mut Cow<QuorumState>,
        epoch: QuorumEpoch,
        leader: NodeId,
        step: &mut Step,
    ) {
        self.step_to_newer(s, epoch, Some(leader), step);
        let Some(to) = self.config.address(leader) else {
            return;
        };
        {
            let s = s.to_mut();
            s.leader = Some(leader);
            s.role = QuorumRole::Follower;
        }
        step.persist = true;
        step.heard_from_leader = true;
        self.send_fetch(s.to_mut(), to, step);
    }

    fn send_fetch(&self, s: &mut QuorumState, to: Id, step: &mut Step) {
        s.fetching = Some(to);
        step.send(
            to,
            QuorumMsg::Fetch(QuorumFetch {
                epoch: s.epoch,
                replica: self.me(),
                fetch_offset: s.log_end_offset(),
                last_fetched_epoch: s.last_epoch(),
                high_watermark: s.high_watermark,
            }),
        );
    }

    /// R69: a fetch the receiver cannot serve is answered with its epoch and the leader it
    /// knows, so that the fetcher finds the leader.
    fn refuse_fetch(&self, s: &QuorumState, to: Id, fetch: &QuorumFetch, step: &mut Step) {
        let error = if fetch.epoch < s.epoch {
            QuorumError::FencedLeaderEpoch
        } else if fetch.epoch > s.epoch {
            QuorumError::UnknownLeaderEpoch
        } else {
            QuorumError::NotLeader
        };
        step.send(
            to,
            QuorumMsg::FetchResponse {
                epoch: s.epoch,
                leader: s.leader,
                fetch_offset: fetch.fetch_offset,
                result: QuorumFetchResult::Error(error),
            },
        );
    }

    /// R69: the leader checks the fetcher's last fetched epoch against its own log. A
    /// divergence is answered with where the fetcher's epoch ends here; otherwise the fetch
    /// offset is the voter's progress (the high watermark may move), and the fetch is answered
    /// if there is anything new for it, or held until there is.
    fn serve_fetch(&self, s: &mut Cow<QuorumState>, src: Id, fetch: QuorumFetch, step: &mut Step) {
        let (epoch, end_offset) = s.end_offset_for_epoch(fetch.last_fetched_epoch);
        if epoch != fetch.last_fetched_epoch || end_offset < fetch.fetch_offset {
            step.send(
                src,
                QuorumMsg::FetchResponse {
                    epoch: s.epoch,
                    leader: s.leader,
                    fetch_offset: fetch.fetch_offset,
                    result: QuorumFetchResult::Diverging { epoch, end_offset },
                },
            );
            return;
        }
        let voter = self.config.address(fetch.replica) == Some(src);
        if let QuorumRole::Leader(l) = &mut s.to_mut().role {
            if voter {
                l.voter_end_offsets
                    .insert(fetch.replica, fetch.fetch_offset);
            }
            l.held.remove(&src);
        }
        self.advance_high_watermark(s, step);
        if self.has_news_for(s, &fetch) {
            self.answer_fetch(s, src, &fetch, step);
        } else if let QuorumRole::Leader(l) = &mut s.to_mut().role {
            l.held.insert(src, fetch);
        }
    }

    fn has_news_for(&self, s: &QuorumState, fetch: &QuorumFetch) -> bool {
        fetch.fetch_offset < s.log_end_offset() || fetch.high_watermark < s.high_watermark
    }

    fn answer_fetch(&self, s: &QuorumState, to: Id, fetch: &QuorumFetch, step: &mut Step) {
        let from = fetch.fetch_offset as usize;
        let entries = s.log[from..]
            .iter()
            .take(self.config.fetch_entries_max.max(1))
            .cloned()
            .collect();
        step.send(
            to,
            QuorumMsg::FetchResponse {
                epoch: s.epoch,
                leader: s.leader,
                fetch_offset: fetch.fetch_offset,
                result: QuorumFetchResult::Records {
                    entries,
                    high_watermark: s.high_watermark,
                },
            },
        );
    }

    /// R69: the high watermark is the largest offset a majority of voters hold (the leader its
    /// whole log), once that passes the leader's own LeaderChange record. It never goes back.
    /// Held fetches are answered when it moves.
    fn advance_high_watermark(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let QuorumRole::Leader(l) = &s.role else {
            return;
        };
        let mut held: Vec<Offset> = self
            .config
            .voters
            .iter()
            .map(|(v, _)| match *v == self.me() {
                true => s.log_end_offset(),
                false => l.voter_end_offsets.get(v).copied().unwrap_or(0),
            })
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority_holds = held[self.config.majority() - 1];
        if majority_holds > l.epoch_start && majority_holds > s.high_watermark {
            s.to_mut().high_watermark = majority_holds;
            self.answer_held_fetches(s, step);
        }
    }

    /// R69: every held fetch is answered, news or not.
    fn answer_every_held_fetch(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let held = match &mut s.to_mut().role {
            QuorumRole::Leader(l) => std::mem::take(&mut l.held),
            _ => return,
        };
        for (to, fetch) in &held {
            self.answer_fetch(s, *to, fetch, step);
        }
    }

    /// R69: every held fetch that now has news is answered.
    fn answer_held_fetches(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let QuorumRole::Leader(l) = &s.role else {
            return;
        };
        let due: Vec<(Id, QuorumFetch)> = l
            .held
            .iter()
            .filter(|(_, f)| self.has_news_for(s, f))
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        for (to, fetch) in &due {
            self.answer_fetch(s, *to, fetch, step);
        }
        if let QuorumRole::Leader(l) = &mut s.to_mut().role {
            for (to, _) in due {
                l.held.remove(&to);
            }
        }
    }

    /// R70: records are appended, persisted, and applied up to the leader's high watermark (never
    /// past the log's end, never back); a divergence truncates to where the leader's epoch ends
    /// in this log; an error leaves the fetch to the fetch timeout. Then fetch again.
    fn take_fetch_response(
        &self,
        s: &mut Cow<QuorumState>,
        src: Id,
        result: QuorumFetchResult,
        step: &mut Step,
    ) {
        match result {
            QuorumFetchResult::Records {
                entries,
                high_watermark,
            } => {
                step.heard_from_leader = true;
                let s = s.to_mut();
                if !entries.is_empty() {
                    Arc::make_mut(&mut s.log).extend(entries);
                    step.persist = true;
                }
                let applied = high_watermark.min(s.log_end_offset());
                s.high_watermark = s.high_watermark.max(applied);
                self.send_fetch(s, src, step);
            }
            QuorumFetchResult::Diverging { epoch, end_offset } => {
                step.heard_from_leader = true;
                let s = s.to_mut();
                let cut = end_offset.min(s.end_offset_for_epoch(epoch).1);
                Arc::make_mut(&mut s.log).truncate(cut as usize);
                s.high_watermark = s.high_watermark.min(cut);
                step.persist = true;
                self.send_fetch(s, src, step);
            }
            QuorumFetchResult::Error(_) => s.to_mut().fetching = None,
        }
    }

    /// R72: an observer asks the leader it knows, or else the next voter in turn.
    fn fetch_from_next_voter(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        let voters = &self.config.voters;
        if voters.is_empty() {
            return;
        }
        let s = s.to_mut();
        let known = s.leader.and_then(|l| self.config.address(l));
        let to = match (known, s.fetching) {
            (Some(leader), None) => leader,
            _ => {
                s.bootstrap_index = (s.bootstrap_index + 1) % voters.len();
                s.leader = None;
                voters[s.bootstrap_index].1
            }
        };
        s.role = QuorumRole::Follower;
        self.send_fetch(s, to, step);
    }

    /// R71: the active controller writes the configured changes its log lacks.
    fn write_changes(&self, s: &mut Cow<QuorumState>, step: &mut Step) {
        for &change in &self.config.changes {
            let record = MetadataRecord::Change(change);
            if !s.log.iter().any(|e| e.record == record) {
                fired(R71);
                self.append(s, record, step);
            }
        }
    }

    /// R73: the active controller writes a record. Only a leader appends; anywhere else this
    /// is a no-op. Returns the log end offset after it: the record is committed once the high
    /// watermark reaches that.
    pub fn append_record(
        &self,
        s: &mut Cow<QuorumState>,
        record: MetadataRecord,
        o: &mut Out<Self>,
    ) -> Offset {
        if s.is_leader() {
            let mut step = Step::new();
            self.append(s, record, &mut step);
            step.flush(o, s, &self.config.timing);
        }
        s.log_end_offset()
    }

    /// R75: this node's view of the quorum.
    pub fn describe(&self, s: &QuorumState) -> QuorumDescription {
        let voters = match &s.role {
            QuorumRole::Leader(l) => self
                .config
                .voters
                .iter()
                .map(|(v, _)| match *v == self.me() {
                    true => (*v, Some(s.log_end_offset())),
                    false => (*v, l.voter_end_offsets.get(v).copied()),
                })
                .collect(),
            _ => Vec::new(),
        };
        QuorumDescription {
            node_id: self.me(),
            epoch: s.epoch,
            leader: s.leader,
            log_end_offset: s.log_end_offset(),
            high_watermark: s.high_watermark,
            voted_for: s.voted_for,
            voters,
        }
    }

    /// The address of a voter.
    pub fn voter_address(&self, node: NodeId) -> Option<Id> {
        self.config.address(node)
    }

    /// R67, R71: the leader appends a record in its epoch (persisted), then its high watermark
    /// may move (a quorum of one) and held fetches have news.
    fn append(&self, s: &mut Cow<QuorumState>, record: MetadataRecord, step: &mut Step) {
        {
            let s = s.to_mut();
            let epoch = s.epoch;
            Arc::make_mut(&mut s.log).push(MetadataEntry { epoch, record });
        }
        step.persist = true;
        self.advance_high_watermark(s, step);
        self.answer_held_fetches(s, step);
    }
}

impl Step {
    fn new() -> Self {
        Step {
            sends: Vec::new(),
            persist: false,
            heard_from_leader: false,
        }
    }

    fn send(&mut self, to: Id, msg: QuorumMsg) {
        self.sends.push((to, msg));
    }

    /// R0: the save goes out before every send. A node that heard from its leader re-arms its
    /// fetch timeout (a no-op for the checker, whose timers are a set and fire at any moment).
    fn flush(self, o: &mut Out<QuorumNode>, s: &QuorumState, timing: &QuorumTiming) {
        if self.heard_from_leader {
            o.set_timer(QuorumTimer::FetchTimeout, timing.fetch_timeout.clone());
        }
        if self.persist {
            o.save(s.storage());
        }
        for (to, msg) in self.sends {
            o.send(to, msg);
        }
    }
}

impl Actor for QuorumNode {
    type Msg = QuorumMsg;
    type State = QuorumState;
    type Timer = QuorumTimer;
    type Storage = QuorumStorage;
    type Random = ();

    fn name(&self) -> String {
        match self.config.is_voter() {
            true => format!("controller {}", self.config.node_id),
            false => format!("broker {}", self.config.node_id),
        }
    }

    fn on_start(&self, _id: Id, storage: &Option<QuorumStorage>, o: &mut Out<Self>) -> QuorumState {
        self.start(storage, o)
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<QuorumState>,
        src: Id,
        msg: QuorumMsg,
        o: &mut Out<Self>,
    ) {
        QuorumNode::on_msg(self, state, src, msg, o)
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<QuorumState>,
        timer: &QuorumTimer,
        o: &mut Out<Self>,
    ) {
        self.on_timer(state, timer, o)
    }
}
