//! Test helpers: a real cluster of `sgnode serve` processes on loopback,
//! each with its own data dir in a temp dir, stopped by PID on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sgnode::client::Client;

pub const TOKEN: &str = "test-token";

/// Picks a free loopback port (bind to 0, read, release).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster of real peer processes.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    /// Set when the peers live in network namespaces.
    pub net: Option<Netns>,
    /// Environment added to every peer process.
    env: Vec<(String, String)>,
    /// Peers listed in the cluster file; ids above it joined at runtime
    /// and are started with `--address`/`--data-dir`.
    configured: usize,
    /// The CA clients trust, when the peers serve https.
    pub ca: Option<PathBuf>,
}

/// Network namespaces made by a test: one per peer, each with a veth into a
/// bridge in the test's own namespace. Removed on drop.
pub struct Netns {
    tag: String,
    peers: usize,
    /// Third octet of this test's 10.199.x.0/24: concurrent test processes
    /// must not route to each other's peers.
    subnet: u8,
}

/// A 10.199.x.0/24 no interface on this machine uses yet.
fn free_subnet() -> Option<u8> {
    let start = (std::process::id() % 250) as u8;
    (0..250u8).map(|i| (start.wrapping_add(i) % 250) + 1).find(|x| {
        Command::new("ip")
            .args(["-o", "addr", "show", "to", &format!("10.199.{x}.0/24")])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    })
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// Creates the namespaces, or None where this machine cannot.
    pub fn create(peers: usize) -> Option<Netns> {
        let tag = format!("sg{}", std::process::id() % 100_000);
        let net = Netns { tag, peers, subnet: free_subnet()? };
        let bridge = net.bridge();
        let mut ok = ip(&["link", "add", &bridge, "type", "bridge"])
            && ip(&["addr", "add", &format!("10.199.{}.254/24", net.subnet), "dev", &bridge])
            && ip(&["link", "set", &bridge, "up"]);
        for i in 1..=peers {
            let (ns, host, inner) = (net.ns(i), net.host_if(i), format!("{}p{i}", net.tag));
            let addr = format!("10.199.{}.{i}/24", net.subnet);
            ok = ok
                && ip(&["netns", "add", &ns])
                && ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])
                && ip(&["link", "set", &inner, "netns", &ns])
                && ip(&["link", "set", &host, "master", &bridge])
                && ip(&["link", "set", &host, "up"])
                && ip(&["netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner])
                && ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"])
                && ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        if ok {
            Some(net)
        } else {
            drop(net);
            None
        }
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn host_if(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    pub fn address(&self, i: usize) -> String {
        format!("10.199.{}.{i}:7100", self.subnet)
    }

    /// Cuts peer `i` off from everyone (its link goes down).
    pub fn isolate(&self, i: u64) {
        ip(&["link", "set", &self.host_if(i as usize), "down"]);
    }

    /// Reconnects peer `i`.
    pub fn heal(&self, i: u64) {
        ip(&["link", "set", &self.host_if(i as usize), "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 1..=self.peers {
            ip(&["netns", "del", &self.ns(i)]);
            ip(&["link", "del", &self.host_if(i)]);
        }
        ip(&["link", "del", &self.bridge()]);
    }
}

/// Extra top-level lines for the cluster file.
pub struct ClusterSpec {
    pub voters: usize,
    pub learners: usize,
    /// Top-level lines added to the cluster file.
    pub extra: String,
    /// Slots of every peer.
    pub slots: u32,
    /// Run each peer in its own network namespace behind a bridge, so that
    /// partitions can drop real traffic (needs root and iproute2).
    pub netns: bool,
    /// Environment added to every peer process (and so to its jobs).
    pub env: Vec<(String, String)>,
    /// Serve https with a CA and certificate made by `sgnode tls gen` at
    /// start (never a committed key).
    pub tls: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            voters: 3,
            learners: 0,
            extra: String::new(),
            slots: 2,
            netns: false,
            env: Vec::new(),
            tls: false,
        }
    }
}

impl TestCluster {
    /// Writes the cluster file and starts every peer.
    pub fn start(spec: ClusterSpec) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let total = spec.voters + spec.learners;
        let net = if spec.netns { Netns::create(total) } else { None };
        let ports: Vec<u16> = (0..total).map(|_| if net.is_some() { 7100 } else { free_port() }).collect();
        let mut text = format!(
            "cluster_name = \"test\"\ntoken = \"{TOKEN}\"\nwrite_timeout = \"3s\"\n{}\n\
             [raft]\nheartbeat_ms = 100\nelection_min_ms = 600\nelection_max_ms = 1000\n",
            spec.extra
        );
        let addresses: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| match &net {
                Some(net) => net.address(i + 1),
                None => format!("127.0.0.1:{port}"),
            })
            .collect();
        let ca = spec.tls.then(|| {
            let out = dir.path().join("tls");
            let hosts: Vec<&str> = addresses.iter().filter_map(|a| a.split(':').next()).collect();
            let (code, stdout, stderr) = cli(
                &["tls", "gen", "--out", out.to_str().expect("utf-8 path"), "--peers", &hosts.join(",")],
                dir.path(),
            );
            assert_eq!(code, 0, "sgnode tls gen: {stdout}{stderr}");
            text.push_str("\n[tls]\ncert = \"tls/peer.pem\"\nkey = \"tls/peer.key\"\nca = \"tls/ca.pem\"\n");
            out.join("ca.pem")
        });
        for (i, address) in addresses.iter().enumerate() {
            text.push_str(&format!(
                "\n[[peer]]\nid = {}\naddress = \"{address}\"\ndata_dir = \"peer{}\"\nvoter = {}\nslots = {}\n",
                i + 1,
                i + 1,
                i < spec.voters,
                spec.slots
            ));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("write cluster file");
        let mut cluster = TestCluster {
            dir,
            config,
            ports,
            children: (0..total).map(|_| None).collect(),
            net,
            env: spec.env,
            configured: total,
            ca,
        };
        for id in 1..=total as u64 {
            cluster.start_peer(id);
        }
        cluster
    }

    /// Starts a new peer that is not in the cluster file (loopback only);
    /// returns its id. It is not a member until `members add`.
    pub fn start_joining_peer(&mut self) -> u64 {
        assert!(self.net.is_none(), "joining peers are loopback-only");
        self.ports.push(free_port());
        self.children.push(None);
        let id = self.size();
        self.start_peer(id);
        id
    }

    pub fn size(&self) -> u64 {
        self.ports.len() as u64
    }

    pub fn url(&self, id: u64) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        match &self.net {
            Some(net) => format!("{scheme}://{}", net.address(id as usize)),
            None => format!("{scheme}://127.0.0.1:{}", self.ports[(id - 1) as usize]),
        }
    }

    pub fn client(&self, id: u64) -> Client {
        match &self.ca {
            Some(ca) => {
                let trust = sgnode::tls::Trust::load(ca).expect("the test CA loads");
                Client::with_trust(&self.url(id), Some(TOKEN.to_string()), Duration::from_secs(30), &trust)
                    .expect("https client")
            }
            None => Client::new(&self.url(id), Some(TOKEN.to_string())),
        }
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("peer{id}.log"))
    }

    /// Starts (or restarts) peer `id`, appending to its log.
    pub fn start_peer(&mut self, id: u64) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id)).expect("log file");
        let err = log.try_clone().expect("clone log");
        // In a namespace, `ip netns exec` execs sgnode in place: same PID.
        let mut command = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.ns(id as usize), env!("CARGO_BIN_EXE_sgnode")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sgnode")),
        };
        command.args(["serve", "--config"]).arg(&self.config).args(["--id", &id.to_string()]);
        if id as usize > self.configured {
            let port = self.ports[(id - 1) as usize];
            command
                .args(["--address", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(self.dir.path().join(format!("peer{id}")));
        }
        let child = command
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn sgnode serve");
        self.children[(id - 1) as usize] = Some(child);
    }

    /// SIGKILL: no shutdown path, no final flush.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let mut child = self.children[(id - 1) as usize].take()?;
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// PID of a running peer.
    pub fn pid(&self, id: u64) -> u32 {
        self.children[(id - 1) as usize].as_ref().map(Child::id).expect("peer is running")
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.children[(id - 1) as usize].is_some()
    }

    /// Waits until every running peer agrees on one leader; returns it.
    pub async fn wait_leader(&self) -> u64 {
        let running: Vec<u64> = (1..=self.size()).filter(|&id| self.is_running(id)).collect();
        wait_until("an agreed leader", Duration::from_secs(30), || {
            let running = running.clone();
            async move {
                let mut leader = None;
                for id in running {
                    let view = self.client(id).local().await.ok()?;
                    let l = view.leader?;
                    if leader.is_some_and(|x| x != l) {
                        return None;
                    }
                    leader = Some(l);
                }
                leader.filter(|l| self.is_running(*l))
            }
        })
        .await
    }

    /// Waits until every running peer reports the same digest at the same
    /// applied index; returns the digest.
    pub async fn wait_converged(&self) -> String {
        let running: Vec<u64> = (1..=self.size()).filter(|&id| self.is_running(id)).collect();
        wait_until("replicas to converge", Duration::from_secs(30), || {
            let running = running.clone();
            async move {
                let mut seen = None;
                for id in running {
                    let d = self.client(id).digest().await.ok()?;
                    let key = (d.last_applied, d.digest);
                    if seen.as_ref().is_some_and(|s| s != &key) {
                        return None;
                    }
                    seen = Some(key);
                }
                seen.map(|s| s.1)
            }
        })
        .await
    }

    pub fn follower_of(&self, leader: u64) -> u64 {
        (1..=self.size()).find(|&id| id != leader && self.is_running(id)).expect("a running follower")
    }

    pub fn logs(&self) -> String {
        (1..=self.size())
            .map(|id| {
                let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!("--- peer {id} ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sends a signal by PID (only to processes this test started).
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // SIGTERM first: a clean stop kills the peer's running jobs and its
        // fencing guard; SIGKILL whatever is still there after a bound.
        let mut children: Vec<Child> = self.children.iter_mut().filter_map(Option::take).collect();
        for child in &children {
            signal(child.id(), "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && children.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the CLI binary with the test token; returns (exit code, stdout,
/// stderr).
pub fn cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sgnode"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SGNODE_URL")
        // The test clusters' peer token: reads need a token too (`--token`
        // on the command line wins).
        .env("SGNODE_TOKEN", TOKEN)
        .env_remove("SGNODE_CA")
        .output()
        .expect("run sgnode");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A command for a job that records its run in `record` (a file outside
/// the cluster): a start line, a tick every 100 ms for `ticks` ticks, an end
/// line; each line is `KIND JOB ATTEMPT NODE NANOS`.
pub fn recording_job(record: &Path, ticks: u32) -> Vec<String> {
    let script = format!(
        "r={rec}; line() {{ echo \"$1 $SG_JOB_ID $SG_ATTEMPT $SG_NODE_ID $(date +%s%N)\" >> $r; }}; \
         line start; i=0; while [ $i -lt {ticks} ]; do sleep 0.1; line tick; i=$((i+1)); done; line end",
        rec = record.display()
    );
    vec!["sh".into(), "-c".into(), script]
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub kind: String,
    pub job: String,
    pub attempt: u32,
    pub node: u64,
    pub nanos: u128,
}

pub fn read_record(record: &Path) -> Vec<RecordLine> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(RecordLine {
                kind: f.first()?.to_string(),
                job: f.get(1)?.to_string(),
                attempt: f.get(2)?.parse().ok()?,
                node: f.get(3)?.parse().ok()?,
                nanos: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// Each attempt's observed span: first line to last line, per (job, attempt).
pub fn attempt_spans(
    lines: &[RecordLine],
) -> std::collections::BTreeMap<(String, u32), (u64, u128, u128, bool)> {
    let mut spans = std::collections::BTreeMap::new();
    for l in lines {
        let e = spans.entry((l.job.clone(), l.attempt)).or_insert((l.node, l.nanos, l.nanos, false));
        e.1 = e.1.min(l.nanos);
        e.2 = e.2.max(l.nanos);
        e.3 |= l.kind == "end";
    }
    spans
}

/// Asserts that no two attempts of one job overlap in time.
pub fn assert_no_overlap(lines: &[RecordLine]) {
    let spans = attempt_spans(lines);
    let mut by_job: std::collections::BTreeMap<&str, Vec<(u128, u128, u32)>> = Default::default();
    for ((job, attempt), (_, start, end, _)) in &spans {
        by_job.entry(job.as_str()).or_default().push((*start, *end, *attempt));
    }
    for (job, mut spans) in by_job {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "job {job}: attempts {} and {} overlap: {pair:?}",
                pair[0].2,
                pair[1].2
            );
        }
    }
}

/// Highest number of attempts running at once on each node.
pub fn max_concurrency(lines: &[RecordLine]) -> std::collections::BTreeMap<u64, usize> {
    let mut events: Vec<(u64, u128, i32)> = Vec::new();
    for (node, start, end, _) in attempt_spans(lines).values() {
        events.push((*node, *start, 1));
        // A span covers [start, end]; an attempt killed right after its
        // first line has start == end and must still count.
        events.push((*node, *end + 1, -1));
    }
    // Ends sort before starts at the same instant.
    events.sort_by_key(|e| (e.0, e.1, e.2));
    let mut max = std::collections::BTreeMap::new();
    let mut current: std::collections::BTreeMap<u64, i32> = Default::default();
    for (node, _, delta) in events {
        let c = current.entry(node).or_default();
        *c += delta;
        let m = max.entry(node).or_insert(0usize);
        *m = (*m).max(usize::try_from(*c).unwrap_or(0));
    }
    max
}
