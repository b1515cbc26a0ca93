//! A cluster on this machine: a controller and N brokers as child processes of a `watermark`
//! executable, on 127.0.0.1, for `cluster up` and for tests (raft-rs's harness, for processes).
//!
//! [`LocalCluster`] writes the cluster file (with a fresh key), starts, stops, kills, pauses and
//! restarts nodes, and knows every node's pid and address without parsing any output. Each
//! node's stderr goes to `<dir>/<node>.log` (appended across restarts), where its stop line
//! with every counter can be read back ([`LocalCluster::counters`]). A node counts as started
//! once it holds a UDP socket bound to its address. Children die with the thread that started
//! them (PR_SET_PDEATHSIG) and with the `LocalCluster` (SIGKILL on drop), and each is in a
//! process group of its own, so a terminal's Ctrl-C reaches the parent only.

use crate::cluster::{default_node_dir, BrokerEntry, ClusterFile, Role, TimingMs};
use crate::store::FsyncPolicy;
use crate::transport::Key;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The cluster file's name in the cluster directory.
pub const CLUSTER_FILE_NAME: &str = "cluster.json";
/// How long a node may take to bind its socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How to lay out a new cluster.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub brokers: u32,
    /// Controllers: 1, or a KRaft quorum of 3 or 5 (spec section 4b).
    pub controllers: u32,
    /// Racks of brokers 1, 2, ... in turn; empty for none.
    pub racks: Vec<String>,
    /// Brokers on `base_port`, `base_port + 1`, ..., the controller on the port after them;
    /// 0 picks free ports.
    pub base_port: u16,
    pub timing_ms: TimingMs,
    pub fsync: FsyncPolicy,
    /// A fault rules file for every node (see [`faults`](crate::faults)).
    pub faults: Option<PathBuf>,
    /// Generate a cluster key (the default). Without one, nodes authenticate nothing.
    pub key: bool,
    /// KIP-966's eligible leader replicas (R52–R54).
    pub eligible_leader_replicas: bool,
    /// Every node serves Prometheus metrics on the TCP port of its own (UDP) port's number.
    pub metrics: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            brokers: 3,
            controllers: 1,
            racks: Vec::new(),
            base_port: 0,
            timing_ms: TimingMs::default(),
            fsync: FsyncPolicy::Never,
            faults: None,
            key: true,
            eligible_leader_replicas: false,
            metrics: false,
        }
    }
}

/// A controller and brokers running as children of this process.
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    file: ClusterFile,
    fsync: FsyncPolicy,
    faults: Option<PathBuf>,
    /// Where nodes started from now on write their traces (`<dir>/controller.trace`,
    /// `<dir>/broker-<id>.trace`).
    trace_dir: Option<PathBuf>,
    /// Arguments added to one node's command line (tests: `--break-host`).
    extra_args: BTreeMap<Role, Vec<String>>,
    children: BTreeMap<Role, Child>,
}

/// A free UDP port on loopback, not in `taken`; with `tcp_too`, free for TCP as well (a node
/// serves its metrics on the TCP port of its own number).
fn free_port(taken: &[u16], tcp_too: bool) -> Result<u16, String> {
    for _ in 0..100 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        let tcp_free = !tcp_too || std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if !taken.contains(&port) && tcp_free {
            return Ok(port);
        }
    }
    Err("no free port found".into())
}

impl LocalCluster {
    /// Writes a new cluster file in `dir` (which must not hold one); starts nothing.
    pub fn create(exe: &Path, dir: &Path, options: &LocalOptions) -> Result<LocalCluster, String> {
        if options.brokers == 0 {
            return Err("a cluster needs at least 1 broker".into());
        }
        if ![1, 3, 5].contains(&options.controllers) {
            return Err(format!(
                "--controllers must be 1, 3 or 5 (a quorum of an odd size, as KRaft's \
                 controller.quorum.voters), not {}",
                options.controllers
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(CLUSTER_FILE_NAME);
        if path.exists() {
            return Err(format!("{} already holds a cluster", dir.display()));
        }
        let mut taken = Vec::new();
        let mut port = |i: u32| -> Result<u16, String> {
            let p = if options.base_port == 0 {
                free_port(&taken, options.metrics)?
            } else {
                u16::try_from(u32::from(options.base_port) + i).map_err(|_| {
                    format!(
                        "base port {} leaves no room for {} nodes",
                        options.base_port,
                        options.brokers + options.controllers
                    )
                })?
            };
            taken.push(p);
            Ok(p)
        };
        let mut brokers = Vec::new();
        // With metrics, each node serves them on the TCP port of the same number as its own.
        let metrics = |a: SocketAddrV4| options.metrics.then_some(a);
        for i in 0..options.brokers {
            let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port(i)?);
            brokers.push(BrokerEntry {
                id: i + 1,
                address,
                rack: (!options.racks.is_empty())
                    .then(|| options.racks[i as usize % options.racks.len()].clone()),
                metrics: metrics(address),
            });
        }
        let controller = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port(options.brokers)?);
        let mut controllers = Vec::new();
        if options.controllers > 1 {
            controllers.push(controller);
            for i in 1..options.controllers {
                let p = port(options.brokers + i)?;
                controllers.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
            }
        }
        let file = ClusterFile {
            controller,
            controllers,
            brokers,
            timing_ms: options.timing_ms.clone(),
            cluster_key: if options.key {
                Some(Key::generate()?)
            } else {
                None
            },
            eligible_leader_replicas: options.eligible_leader_replicas,
            controller_metrics: metrics(controller),
        };
        file.validate()?;
        file.save(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            file,
            fsync: options.fsync,
            faults: options.faults.clone(),
            trace_dir: None,
            extra_args: BTreeMap::new(),
            children: BTreeMap::new(),
        })
    }

    /// The cluster whose file is in `dir`; starts nothing.
    pub fn open(exe: &Path, dir: &Path) -> Result<LocalCluster, String> {
        let file = ClusterFile::load(&dir.join(CLUSTER_FILE_NAME))?;
        Ok(LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            file,
            fsync: FsyncPolicy::Never,
            faults: None,
            trace_dir: None,
            extra_args: BTreeMap::new(),
            children: BTreeMap::new(),
        })
    }

    /// The fsync policy of nodes started from now on.
    pub fn set_fsync(&mut self, fsync: FsyncPolicy) {
        self.fsync = fsync;
    }

    /// The fault rules file of nodes started from now on.
    pub fn set_faults(&mut self, faults: Option<PathBuf>) {
        self.faults = faults;
    }

    /// The trace directory of nodes started from now on (see [`trace`](crate::trace)).
    pub fn set_trace_dir(&mut self, dir: Option<PathBuf>) {
        self.trace_dir = dir;
    }

    /// The trace file of a node in `dir`.
    pub fn trace_file(dir: &Path, node: Role) -> PathBuf {
        match node {
            Role::Controller(1) => dir.join("controller.trace"),
            Role::Controller(n) => dir.join(format!("controller-{n}.trace")),
            Role::Broker(id) => dir.join(format!("broker-{id}.trace")),
        }
    }

    /// Extra command-line arguments for `node` from its next start on.
    pub fn set_extra_args(&mut self, node: Role, args: Vec<String>) {
        self.extra_args.insert(node, args);
    }

    pub fn file(&self) -> &ClusterFile {
        &self.file
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cluster_path(&self) -> PathBuf {
        self.dir.join(CLUSTER_FILE_NAME)
    }

    /// The controllers, then the brokers in id order.
    pub fn nodes(&self) -> Vec<Role> {
        let mut ids: Vec<u32> = self.file.brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        self.controllers()
            .into_iter()
            .chain(ids.into_iter().map(Role::Broker))
            .collect()
    }

    /// The controllers: controller 1 alone, or every controller of the quorum.
    pub fn controllers(&self) -> Vec<Role> {
        (1..=self.file.controller_addresses().len() as u32)
            .map(Role::Controller)
            .collect()
    }

    /// Where a node keeps its data.
    pub fn node_dir(&self, node: Role) -> PathBuf {
        default_node_dir(&self.cluster_path(), node)
    }

    /// Where a node's stderr goes.
    pub fn log_path(&self, node: Role) -> PathBuf {
        match node {
            Role::Controller(1) => self.dir.join("controller.log"),
            Role::Controller(n) => self.dir.join(format!("controller-{n}.log")),
            Role::Broker(id) => self.dir.join(format!("broker-{id}.log")),
        }
    }

    pub fn address(&self, node: Role) -> Option<SocketAddrV4> {
        match node {
            Role::Controller(n) => self.file.controller_address(n),
            Role::Broker(id) => self.file.broker(id).map(|b| b.address),
        }
    }

    /// Where a node serves its metrics, if it does.
    pub fn metrics_address(&self, node: Role) -> Option<SocketAddrV4> {
        self.file.metrics_address(node)
    }

    /// A broker's address for clients: the first broker's.
    pub fn bootstrap(&self) -> SocketAddrV4 {
        self.file.brokers[0].address
    }

    /// The pid of a node this cluster started, if it has not been reaped.
    pub fn pid(&self, node: Role) -> Option<u32> {
        self.children.get(&node).map(|c| c.id())
    }

    /// Whether the node is running (a paused node is).
    pub fn is_running(&mut self, node: Role) -> bool {
        match self.children.get_mut(&node).map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.children.remove(&node);
                false
            }
            None => false,
        }
    }

    /// Nodes that exited since last asked, with their status (reaped).
    pub fn exited(&mut self) -> Vec<(Role, ExitStatus)> {
        let mut gone = Vec::new();
        for (role, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                gone.push((*role, status));
            }
        }
        for (role, _) in &gone {
            self.children.remove(role);
        }
        gone
    }

    fn spawn(&mut self, node: Role) -> Result<(), String> {
        if self.is_running(node) {
            return Err(format!("{} is already running", node.name()));
        }
        if self.address(node).is_none() {
            return Err(format!("{} is not in the cluster file", node.name()));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))
            .map_err(|e| format!("cannot open {}: {e}", self.log_path(node).display()))?;
        let mut command = Command::new(&self.exe);
        match node {
            Role::Controller(n) => command.args(["controller", "--node-id", &n.to_string()]),
            Role::Broker(id) => command.args(["broker", "--id", &id.to_string()]),
        };
        command
            .arg("--cluster")
            .arg(self.cluster_path())
            .arg("--log-dir")
            .arg(self.node_dir(node))
            .args([
                "--fsync",
                match self.fsync {
                    FsyncPolicy::Always => "always",
                    FsyncPolicy::Never => "never",
                },
            ]);
        if let Some(f) = &self.faults {
            command.arg("--faults").arg(f);
        }
        if let Some(d) = &self.trace_dir {
            command.arg("--trace").arg(Self::trace_file(d, node));
        }
        if let Some(extra) = self.extra_args.get(&node) {
            command.args(extra);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // A process group of its own: Ctrl-C in a terminal reaches the parent only, which
            // stops its nodes itself (`cluster up`) or first ends its run (`nemesis`, whose
            // nodes must not stop behind its back).
            command.process_group(0);
            // SAFETY: prctl is async-signal-safe. If the thread that started the node dies, so
            // does the node.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", node.name()))?;
        self.children.insert(node, child);
        Ok(())
    }

    /// Waits until the node holds a socket on its address, for at most [`READY_TIMEOUT`].
    fn await_ready(&mut self, node: Role) -> Result<(), String> {
        let address = self
            .address(node)
            .ok_or_else(|| format!("{} is not in the cluster file", node.name()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(pid) = self.pid(node) else {
                return Err(format!("{} is not running", node.name()));
            };
            if !self.is_running(node) {
                return Err(format!(
                    "{} exited at start: {}",
                    node.name(),
                    self.log_tail(node)
                ));
            }
            if holds_udp_socket(pid, address) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not bind {address} within {} s: {}",
                    node.name(),
                    READY_TIMEOUT.as_secs(),
                    self.log_tail(node)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self, node: Role) -> String {
        let text = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Starts a node and waits until it has bound its address.
    pub fn start(&mut self, node: Role) -> Result<(), String> {
        self.spawn(node)?;
        self.await_ready(node)
    }

    /// Starts every node that is not running, and waits until each has bound its address.
    pub fn start_all(&mut self) -> Result<(), String> {
        let nodes: Vec<Role> = self
            .nodes()
            .into_iter()
            .filter(|n| !self.is_running(*n))
            .collect();
        for n in &nodes {
            self.spawn(*n)?;
        }
        for n in &nodes {
            self.await_ready(*n)?;
        }
        Ok(())
    }

    fn signal(&mut self, node: Role, signal: libc::c_int) -> Result<(), String> {
        let pid = self
            .pid(node)
            .ok_or_else(|| format!("{} is not running", node.name()))?;
        // SAFETY: signalling our own child, which has not been reaped (its pid is still ours).
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(format!(
                "cannot signal {}: {}",
                node.name(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self, node: Role) -> Result<(), String> {
        self.signal(node, libc::SIGKILL)?;
        if let Some(mut child) = self.children.remove(&node) {
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGTERM (the node checkpoints and prints its counters), then SIGKILL after
    /// [`STOP_TIMEOUT`]. Returns how it ended.
    pub fn stop(&mut self, node: Role) -> Result<ExitStatus, String> {
        if !self.is_running(node) {
            return Err(format!("{} is not running", node.name()));
        }
        // A paused node must run to handle SIGTERM.
        let _ = self.signal(node, libc::SIGCONT);
        self.signal(node, libc::SIGTERM)?;
        self.reap(node, Instant::now() + STOP_TIMEOUT)
    }

    fn reap(&mut self, node: Role, deadline: Instant) -> Result<ExitStatus, String> {
        let Some(mut child) = self.children.remove(&node) else {
            return Err(format!("{} is not running", node.name()));
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().map_err(|e| e.to_string());
                }
            }
        }
    }

    /// Stops every running node: SIGTERM to all, then waits for each (SIGKILL after
    /// [`STOP_TIMEOUT`]).
    pub fn stop_all(&mut self) -> Vec<(Role, ExitStatus)> {
        let running: Vec<Role> = self.children.keys().copied().collect();
        for n in &running {
            let _ = self.signal(*n, libc::SIGCONT);
            let _ = self.signal(*n, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        running
            .into_iter()
            .filter_map(|n| self.reap(n, deadline).ok().map(|s| (n, s)))
            .collect()
    }

    /// SIGSTOP: the node keeps its socket but handles nothing.
    pub fn pause(&mut self, node: Role) -> Result<(), String> {
        self.signal(node, libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&mut self, node: Role) -> Result<(), String> {
        self.signal(node, libc::SIGCONT)
    }

    /// Stops the node (if it runs) and starts it again on its directory.
    pub fn restart(&mut self, node: Role) -> Result<(), String> {
        if self.is_running(node) {
            self.stop(node)?;
        }
        self.start(node)
    }

    /// The last stop line in the node's log: `<node> stopped: name=value ...`.
    pub fn stop_line(&self, node: Role) -> Option<String> {
        let text = std::fs::read_to_string(self.log_path(node)).ok()?;
        let prefix = format!("{} stopped:", node.name());
        text.lines()
            .rev()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_string)
    }

    /// The counters of the node's last stop line, by name.
    pub fn counters(&self, node: Role) -> Option<BTreeMap<String, u64>> {
        let line = self.stop_line(node)?;
        Some(
            line.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect(),
        )
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether process `pid` holds a UDP socket bound to `address` (or to 0.0.0.0 on its port).
#[cfg(target_os = "linux")]
fn holds_udp_socket(pid: u32, address: SocketAddrV4) -> bool {
    // The node's own view: it may run in another network namespace than this process's main
    // thread (tests put clusters in namespaces of their own).
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/udp")) else {
        return false;
    };
    // Lines: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`,
    // the local address as the raw 32-bit IP in hex (native byte order) and the port in hex.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = fields.get(1)?.split_once(':')?;
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            let matches = port == address.port() && (ip == *address.ip() || ip.is_unspecified());
            matches.then(|| fields.get(9).map(|s| s.to_string()))?
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| {
            let t = target.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
}

/// Elsewhere: the address cannot be bound (a brief probe; a node binding at that very instant
/// could fail, which Linux's check avoids).
#[cfg(not(target_os = "linux"))]
fn holds_udp_socket(_pid: u32, address: SocketAddrV4) -> bool {
    UdpSocket::bind(address).is_err()
}
