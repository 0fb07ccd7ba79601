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
}

/// Extra top-level lines for the cluster file.
pub struct ClusterSpec {
    pub voters: usize,
    pub learners: usize,
    pub extra: String,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec { voters: 3, learners: 0, extra: String::new() }
    }
}

impl TestCluster {
    /// Writes the cluster file and starts every peer.
    pub fn start(spec: ClusterSpec) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let total = spec.voters + spec.learners;
        let ports: Vec<u16> = (0..total).map(|_| free_port()).collect();
        let mut text = format!(
            "cluster_name = \"test\"\ntoken = \"{TOKEN}\"\nwrite_timeout = \"3s\"\n{}\n\
             [raft]\nheartbeat_ms = 100\nelection_min_ms = 600\nelection_max_ms = 1000\n",
            spec.extra
        );
        for (i, port) in ports.iter().enumerate() {
            text.push_str(&format!(
                "\n[[peer]]\nid = {}\naddress = \"127.0.0.1:{port}\"\ndata_dir = \"peer{}\"\nvoter = {}\n",
                i + 1,
                i + 1,
                i < spec.voters
            ));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).expect("write cluster file");
        let mut cluster = TestCluster { dir, config, ports, children: (0..total).map(|_| None).collect() };
        for id in 1..=total as u64 {
            cluster.start_peer(id);
        }
        cluster
    }

    pub fn size(&self) -> u64 {
        self.ports.len() as u64
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[(id - 1) as usize])
    }

    pub fn client(&self, id: u64) -> Client {
        Client::new(&self.url(id), Some(TOKEN.to_string()))
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("peer{id}.log"))
    }

    /// Starts (or restarts) peer `id`, appending to its log.
    pub fn start_peer(&mut self, id: u64) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id)).expect("log file");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(env!("CARGO_BIN_EXE_sgnode"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string()])
            .env("RUST_LOG", "info,openraft=warn")
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

/// Runs the CLI binary; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sgnode"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SGNODE_URL")
        .env_remove("SGNODE_TOKEN")
        .output()
        .expect("run sgnode");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
