//! `cluster.toml`: the one file that describes a cluster.
//!
//! Every peer reads the same file and picks its own entry with `--id`. The
//! file is the bootstrap source for membership: on the very first start the
//! voters form the cluster from it; after that the replicated membership is the
//! truth and the file only supplies addresses and local settings. Unknown keys
//! are rejected so that a typo never silently falls back to a default.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors found while reading or validating a cluster file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid cluster file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid cluster file: {0}")]
    Invalid(String),
    #[error("peer id {0} is not listed in the cluster file")]
    UnknownPeer(u64),
}

/// The whole cluster file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Human name of the cluster, shown by `nodes` and the dashboard.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// The peer token: the shared secret peers present to each other (Raft
    /// RPCs, forwarded writes, artifact copies) as `Authorization: Bearer`.
    /// It holds every right. Stored in clear because peers must send it;
    /// keep the file readable only by the account running sgnode. Empty
    /// means "no authentication" and is only sensible on a laptop.
    #[serde(default)]
    pub token: String,
    /// Tokens for people and scripts, each with a role, stored as SHA-256
    /// hashes (`sgnode token new` makes one).
    #[serde(rename = "client_token", default)]
    pub client_tokens: Vec<ClientToken>,
    /// A submit whose dedup key matches a job that is active, or that ended
    /// less than this long ago, returns the existing job instead of a new one.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
    /// How long finished jobs stay in the replicated history. Must be at least
    /// `dedup_window`, because the dedup index is derived from the history.
    #[serde(default = "default_history_retention", with = "humantime_serde")]
    pub history_retention: Duration,
    /// Most jobs that may wait in the queue; beyond it submits get `queue_full`.
    #[serde(default = "default_max_queued")]
    pub max_queued: u64,
    /// How often the leader proposes a `Gc` entry that enforces retention.
    #[serde(default = "default_gc_interval", with = "humantime_serde")]
    pub gc_interval: Duration,
    /// How long a write may wait for a leader/quorum before it gets 503.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// A worker runs attempts only while its lease, renewed by heartbeats to
    /// the leader, is fresh; past it the worker kills its own attempts.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// The leader declares a silent node lost (and requeues its attempts)
    /// after this long. Must exceed `lease` by at least one second, so the
    /// worker has fenced itself before its jobs run elsewhere.
    #[serde(default = "default_node_timeout", with = "humantime_serde")]
    pub node_timeout: Duration,
    /// First retry of a failed attempt waits this long; each further retry
    /// doubles it (up to 64x).
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How often the leader checks induced jobs' marker files (and input
    /// sets in general). Marker paths must be visible to whichever peer leads.
    #[serde(default = "default_induced_poll", with = "humantime_serde")]
    pub induced_poll: Duration,
    /// Size bound of each peer's cache of fetched job artifacts, MiB; least
    /// recently used archives are evicted past it. Per peer (each peer keeps
    /// its own cache); the built-in store's copies are not counted.
    #[serde(default = "default_artifact_cache_mb")]
    pub artifact_cache_mb: u64,
    /// Largest artifact a peer downloads or accepts into its store, MiB.
    #[serde(default = "default_artifact_max_mb")]
    pub artifact_max_mb: u64,
    /// Most bytes an artifact may unpack to (actual bytes written, headers
    /// are not trusted), MiB.
    #[serde(default = "default_artifact_unpacked_max_mb")]
    pub artifact_unpacked_max_mb: u64,
    /// Most entries (files, directories, links) an artifact may hold.
    #[serde(default = "default_artifact_max_entries")]
    pub artifact_max_entries: u64,
    /// Time limit of one artifact download (or store upload/copy).
    #[serde(default = "default_artifact_fetch_timeout", with = "humantime_serde")]
    pub artifact_fetch_timeout: Duration,
    /// The `hadoop` launcher the Hadoop runner calls as `hadoop jar ...`.
    #[serde(default = "default_hadoop_bin")]
    pub hadoop_bin: String,
    /// The Python interpreter the Luigi runner calls as `python -m luigi`.
    #[serde(default = "default_python_bin")]
    pub python_bin: String,
    /// Run every job as this local user (name resolved to uid/gid at start)
    /// instead of as the peer's own user. Needs the peer to run as root.
    /// A peer's own `run_as` overrides it. Absent: jobs run as the peer.
    #[serde(default)]
    pub run_as: Option<String>,
    /// A directory every peer can read and write (e.g. an NFS mount): when
    /// set, each worker copies an attempt's full log there as the attempt
    /// ends, and `logs` on any peer reads it from there once the worker that
    /// ran it is gone. Unset (the default): only the replicated tail outlives
    /// the worker. Relative paths are resolved like `data_dir`.
    #[serde(default)]
    pub shared_log_dir: Option<PathBuf>,
    /// Most bytes one attempt's log keeps, MiB; output beyond is read and
    /// discarded (the job goes on) after a marker line.
    #[serde(default = "default_max_log_mb")]
    pub max_log_mb: u64,
    /// Longest line kept in a job's log, KiB; the rest of a longer line is
    /// discarded and a marker says so.
    #[serde(default = "default_max_log_line_kb")]
    pub max_log_line_kb: u64,
    /// Raft timing; defaults are tuned for a loaded 2-core machine with fsyncs.
    #[serde(default)]
    pub raft: RaftTiming,
    /// TLS for every peer's HTTP port. Absent: plain `http://` (the local
    /// default); present: peers serve and call each other over `https://`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The peers. Ids are unique and non-zero.
    #[serde(rename = "peer", default)]
    pub peers: Vec<PeerConfig>,
}

/// A client token's rights; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// status, history, logs, nodes, schedules, metrics, the dashboard.
    Read,
    /// read, plus submit, cancel, backfill, publish and artifact push.
    Submit,
    /// everything a client can do, including schedules, queue pause and
    /// membership.
    Admin,
    /// Raft RPCs: only the peer token has it.
    Peer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
            Role::Peer => "peer",
        }
    }
}

/// One `[[client_token]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientToken {
    /// Who holds it; shown in errors and logs instead of the token.
    pub name: String,
    /// `read`, `submit` or `admin`.
    pub role: Role,
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
}

/// Raft timing knobs.
///
/// A follower that stops hearing from its leader starts an election after
/// `election_max_ms` (openraft's leader lease, during which it also refuses
/// to vote for anyone else) plus a random timeout in
/// [`election_min_ms`, `election_max_ms`): 0.8-1.0 s with the defaults,
/// which is most of the write gap after a leader dies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTiming {
    /// Leader heartbeat period in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout, milliseconds.
    #[serde(default = "default_election_min_ms")]
    pub election_min_ms: u64,
    /// Upper bound of the randomised election timeout, milliseconds.
    #[serde(default = "default_election_max_ms")]
    pub election_max_ms: u64,
    /// Take a snapshot (and allow log purge) after this many applied entries.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: default_heartbeat_ms(),
            election_min_ms: default_election_min_ms(),
            election_max_ms: default_election_max_ms(),
            snapshot_every: default_snapshot_every(),
        }
    }
}

/// The `[tls]` table. Paths are PEM files; relative ones are resolved
/// against the directory holding the cluster file. The files are read when
/// a peer starts (a missing or unusable one stops it with the file's name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (leaf first) every peer presents, unless a peer
    /// names its own `tls_cert`. It must list each peer's address IP as a
    /// subject alternative name, since clients check it against the URL.
    pub cert: PathBuf,
    /// Private key of `cert`.
    pub key: PathBuf,
    /// CA certificates (one or more) that peers and clients trust for the
    /// cluster's HTTP ports.
    pub ca: PathBuf,
}

/// One peer of the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Unique, non-zero peer id.
    pub id: u64,
    /// `host:port` this peer listens on for clients, peers and the dashboard.
    pub address: String,
    /// Directory for this peer's sled database and logs. Relative paths are
    /// resolved against the directory holding the cluster file.
    pub data_dir: PathBuf,
    /// Whether this peer is a Raft voter. Non-voters join as learners: they
    /// replicate, serve reads, forward writes and (later) run jobs.
    #[serde(default = "default_true")]
    pub voter: bool,
    /// Job slots this peer offers (a job takes 1 unless it asks for more).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Memory this peer offers to jobs, MiB.
    #[serde(default = "default_mem_mb")]
    pub mem_mb: u64,
    /// This peer's own certificate chain, instead of `[tls] cert`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Private key of `tls_cert` (required with it).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The user this peer's jobs run as, instead of the cluster's `run_as`.
    #[serde(default)]
    pub run_as: Option<String>,
}

fn default_cluster_name() -> String {
    "sgnode".to_string()
}
fn default_dedup_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_history_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_max_queued() -> u64 {
    1_000_000
}
fn default_gc_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_lease() -> Duration {
    Duration::from_secs(3)
}
fn default_node_timeout() -> Duration {
    Duration::from_secs(8)
}
fn default_induced_poll() -> Duration {
    Duration::from_secs(1)
}

fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_artifact_cache_mb() -> u64 {
    2048
}
fn default_artifact_max_mb() -> u64 {
    1024
}
fn default_artifact_unpacked_max_mb() -> u64 {
    4096
}
fn default_artifact_max_entries() -> u64 {
    100_000
}
fn default_artifact_fetch_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_log_mb() -> u64 {
    1024
}
fn default_max_log_line_kb() -> u64 {
    64
}
fn default_hadoop_bin() -> String {
    "hadoop".to_string()
}
fn default_python_bin() -> String {
    "python3".to_string()
}
pub fn default_slots() -> u32 {
    2
}
pub fn default_mem_mb() -> u64 {
    4096
}
fn default_heartbeat_ms() -> u64 {
    50
}
fn default_election_min_ms() -> u64 {
    300
}
fn default_election_max_ms() -> u64 {
    500
}
fn default_snapshot_every() -> u64 {
    20_000
}
fn default_true() -> bool {
    true
}

impl ClusterConfig {
    /// Reads and validates a cluster file; relative data dirs are resolved
    /// against the file's directory.
    ///
    /// # Errors
    /// I/O errors, TOML errors (including unknown keys, naming the key), and
    /// semantic errors such as duplicate ids or no voters.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = ClusterConfig::parse(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for peer in &mut config.peers {
            resolve(&mut peer.data_dir);
            for file in [&mut peer.tls_cert, &mut peer.tls_key].into_iter().flatten() {
                resolve(file);
            }
        }
        if let Some(tls) = &mut config.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            resolve(&mut tls.ca);
        }
        if let Some(dir) = config.shared_log_dir.as_mut().filter(|d| d.is_relative()) {
            *dir = base.join(&*dir);
        }
        Ok(config)
    }

    /// Adds a peer that is not in the file, given on `serve`'s command line:
    /// a peer joining a running cluster (`sgnode members add` makes it a
    /// member). It starts as a non-voter: the replicated membership, not
    /// this entry, decides whether it votes.
    ///
    /// # Errors
    /// The id is already in the file, or the address is not numeric.
    pub fn with_joining_peer(mut self, peer: PeerConfig) -> Result<ClusterConfig, ConfigError> {
        if self.peers.iter().any(|p| p.id == peer.id) {
            return Err(ConfigError::Invalid(format!(
                "peer {} is in the cluster file already; --address/--data-dir are for peers that are not",
                peer.id
            )));
        }
        if peer.id == 0 || peer.slots == 0 {
            return Err(ConfigError::Invalid("a joining peer needs an id and slots of at least 1".into()));
        }
        if peer.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "--address {:?} is not host:port with a numeric IP",
                peer.address
            )));
        }
        self.peers.push(PeerConfig { voter: false, ..peer });
        Ok(self)
    }

    /// Parses and validates cluster-file text.
    ///
    /// # Errors
    /// See [`ClusterConfig::load`].
    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.peers.is_empty() {
            return Err(ConfigError::Invalid("at least one [[peer]] is required".into()));
        }
        let mut ids = BTreeSet::new();
        for peer in &self.peers {
            if peer.id == 0 {
                return Err(ConfigError::Invalid("peer id 0 is reserved; ids start at 1".into()));
            }
            if !ids.insert(peer.id) {
                return Err(ConfigError::Invalid(format!("peer id {} is listed twice", peer.id)));
            }
            if peer.address.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "peer {}: address {:?} is not host:port with a numeric IP",
                    peer.id, peer.address
                )));
            }
        }
        for peer in &self.peers {
            match (&peer.tls_cert, &peer.tls_key, &self.tls) {
                (None, None, _) => {}
                (Some(_), Some(_), Some(_)) => {}
                (_, _, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "peer {}: tls_cert/tls_key need a [tls] table (with the ca peers trust)",
                        peer.id
                    )))
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "peer {}: tls_cert and tls_key go together",
                        peer.id
                    )))
                }
            }
        }
        let users = self.peers.iter().map(|p| (format!("peer {}: run_as", p.id), &p.run_as));
        for (what, user) in std::iter::once(("run_as".to_string(), &self.run_as)).chain(users) {
            if user.as_deref().is_some_and(|u| u.is_empty() || u.contains('\0')) {
                return Err(ConfigError::Invalid(format!("{what} must be a user name")));
            }
        }
        if let Some(p) = self.peers.iter().find(|p| p.slots == 0) {
            return Err(ConfigError::Invalid(format!("peer {}: slots must be at least 1", p.id)));
        }
        if self.lease < Duration::from_millis(500) {
            return Err(ConfigError::Invalid("lease must be at least 500ms".into()));
        }
        if self.node_timeout < self.lease + Duration::from_secs(1) {
            return Err(ConfigError::Invalid(format!(
                "node_timeout ({}) must exceed lease ({}) by at least 1s, or a partitioned worker's \
                 jobs could run twice",
                humantime::format_duration(self.node_timeout),
                humantime::format_duration(self.lease)
            )));
        }
        self.validate_client_tokens()?;
        if !self.peers.iter().any(|p| p.voter) {
            return Err(ConfigError::Invalid("at least one peer must have voter = true".into()));
        }
        if self.history_retention < self.dedup_window {
            return Err(ConfigError::Invalid(format!(
                "history_retention ({}) must be at least dedup_window ({})",
                humantime::format_duration(self.history_retention),
                humantime::format_duration(self.dedup_window)
            )));
        }
        if self.artifact_max_mb == 0 || self.artifact_unpacked_max_mb == 0 || self.artifact_max_entries == 0 {
            return Err(ConfigError::Invalid(
                "artifact_max_mb, artifact_unpacked_max_mb and artifact_max_entries must be at least 1"
                    .into(),
            ));
        }
        if self.hadoop_bin.is_empty() || self.python_bin.is_empty() {
            return Err(ConfigError::Invalid("hadoop_bin and python_bin must not be empty".into()));
        }
        if self.shared_log_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid(
                "shared_log_dir must not be empty (leave it out to disable)".into(),
            ));
        }
        if self.max_log_mb == 0 || self.max_log_line_kb == 0 {
            return Err(ConfigError::Invalid("max_log_mb and max_log_line_kb must be at least 1".into()));
        }
        if self.max_queued == 0 {
            return Err(ConfigError::Invalid("max_queued must be at least 1".into()));
        }
        let t = &self.raft;
        if t.heartbeat_ms == 0
            || t.election_min_ms <= t.heartbeat_ms
            || t.election_max_ms <= t.election_min_ms
        {
            return Err(ConfigError::Invalid(
                "raft timing must satisfy 0 < heartbeat_ms < election_min_ms < election_max_ms".into(),
            ));
        }
        Ok(())
    }

    /// The entry for peer `id`.
    ///
    /// # Errors
    /// [`ConfigError::UnknownPeer`] when `id` is not in the file.
    fn validate_client_tokens(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, entry) in self.client_tokens.iter().enumerate() {
            let field = format!("client_token[{i}]");
            if entry.name.is_empty() || !names.insert(entry.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "{field}.name must be non-empty and unique, got {:?}",
                    entry.name
                )));
            }
            if !crate::queue::is_sha256_hex(&entry.sha256) {
                return Err(ConfigError::Invalid(format!(
                    "{field}.sha256 must be 64 lower-case hex digits (the token's SHA-256; \
                     `sgnode token hash` prints it)"
                )));
            }
            if entry.role == Role::Peer {
                return Err(ConfigError::Invalid(format!(
                    "{field}.role: `peer` belongs to the peer token (`token`); use read, submit or admin"
                )));
            }
        }
        if !self.client_tokens.is_empty() && self.token.is_empty() {
            return Err(ConfigError::Invalid(
                "client tokens need a peer token too: set `token`, or anyone could act as a peer".into(),
            ));
        }
        Ok(())
    }

    pub fn peer(&self, id: u64) -> Result<&PeerConfig, ConfigError> {
        self.peers.iter().find(|p| p.id == id).ok_or(ConfigError::UnknownPeer(id))
    }

    /// `https` when the cluster has a `[tls]` table, else `http`: every
    /// peer serves the same scheme, so one setting decides every URL.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Base URL of the HTTP port at `address` (`host:port`, as peers are
    /// listed in the file and in the replicated membership).
    pub fn url(&self, address: &str) -> String {
        format!("{}://{address}", self.scheme())
    }

    /// Base URL of a peer's HTTP port.
    pub fn peer_url(&self, peer: &PeerConfig) -> String {
        self.url(&peer.address)
    }

    /// Certificate and key files `peer` presents, when TLS is on.
    pub fn tls_identity<'a>(&'a self, peer: &'a PeerConfig) -> Option<(&'a Path, &'a Path)> {
        let tls = self.tls.as_ref()?;
        match (&peer.tls_cert, &peer.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => Some((&tls.cert, &tls.key)),
        }
    }

    /// The user `peer`'s jobs run as, if not the peer's own.
    pub fn run_as<'a>(&'a self, peer: &'a PeerConfig) -> Option<&'a str> {
        peer.run_as.as_deref().or(self.run_as.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_cluster_file_parses() {
        let text = include_str!("../cluster.toml");
        let config = ClusterConfig::parse(text).expect("sample cluster.toml must parse");
        assert_eq!(config.peers.len(), 3);
        assert!(config.peers.iter().all(|p| p.voter));
        assert_eq!(config.dedup_window, Duration::from_secs(3600));
        assert_eq!(config.artifact_cache_mb, 2048);
        assert_eq!((config.hadoop_bin.as_str(), config.python_bin.as_str()), ("hadoop", "python3"));
        assert_eq!(config.shared_log_dir, None, "off unless configured");
    }

    #[test]
    fn shared_log_dir_is_resolved_against_the_cluster_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.toml");
        let text =
            "shared_log_dir = \"nfs/logs\"\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"d\"\n";
        std::fs::write(&path, text).expect("write cluster file");
        let config = ClusterConfig::load(&path).expect("loads");
        assert_eq!(config.shared_log_dir, Some(dir.path().join("nfs/logs")));
        let empty = "shared_log_dir = \"\"\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"d\"\n";
        assert!(ClusterConfig::parse(empty).unwrap_err().to_string().contains("shared_log_dir"));
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let text = "cluster_name = \"x\"\nmax_queud = 5\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"d\"\n";
        let err = ClusterConfig::parse(text).unwrap_err().to_string();
        assert!(err.contains("max_queud"), "{err}");
        let text = "[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"d\"\nvotes = true\n";
        let err = ClusterConfig::parse(text).unwrap_err().to_string();
        assert!(err.contains("votes"), "{err}");
    }

    #[test]
    fn semantic_errors_are_specific() {
        let dup = "[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"a\"\n[[peer]]\nid = 1\naddress = \"127.0.0.1:2\"\ndata_dir = \"b\"\n";
        assert!(ClusterConfig::parse(dup).unwrap_err().to_string().contains("listed twice"));
        let window = "dedup_window = \"2h\"\nhistory_retention = \"1h\"\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"a\"\n";
        assert!(ClusterConfig::parse(window).unwrap_err().to_string().contains("history_retention"));
        let addr = "[[peer]]\nid = 1\naddress = \"localhost\"\ndata_dir = \"a\"\n";
        assert!(ClusterConfig::parse(addr).unwrap_err().to_string().contains("address"));
        let no_log = "max_log_line_kb = 0\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"a\"\n";
        assert!(ClusterConfig::parse(no_log).unwrap_err().to_string().contains("max_log_line_kb"));
    }

    const ONE_PEER: &str = "[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"a\"\n";

    #[test]
    fn tls_table_switches_the_scheme_and_resolves_paths() {
        let plain = ClusterConfig::parse(ONE_PEER).unwrap();
        assert_eq!(plain.peer_url(&plain.peers[0]), "http://127.0.0.1:1");
        assert!(plain.tls_identity(&plain.peers[0]).is_none());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.toml");
        let text = format!("[tls]\ncert = \"c.pem\"\nkey = \"/abs/k.pem\"\nca = \"ca.pem\"\n{ONE_PEER}");
        std::fs::write(&file, text).unwrap();
        let config = ClusterConfig::load(&file).unwrap();
        assert_eq!(config.peer_url(&config.peers[0]), "https://127.0.0.1:1");
        let (cert, key) = config.tls_identity(&config.peers[0]).unwrap();
        assert_eq!((cert, key), (dir.path().join("c.pem").as_path(), Path::new("/abs/k.pem")));
        assert_eq!(config.tls.as_ref().unwrap().ca, dir.path().join("ca.pem"));
    }

    #[test]
    fn tls_and_run_as_mistakes_are_named() {
        let missing_ca = format!("[tls]\ncert = \"c\"\nkey = \"k\"\n{ONE_PEER}");
        assert!(ClusterConfig::parse(&missing_ca).unwrap_err().to_string().contains("ca"));
        let typo = format!("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\ncrt = \"x\"\n{ONE_PEER}");
        assert!(ClusterConfig::parse(&typo).unwrap_err().to_string().contains("crt"));
        let half = format!("{ONE_PEER}tls_cert = \"c\"\n");
        assert!(ClusterConfig::parse(&half).unwrap_err().to_string().contains("[tls]"));
        let empty_user = format!("run_as = \"\"\n{ONE_PEER}");
        assert!(ClusterConfig::parse(&empty_user).unwrap_err().to_string().contains("run_as"));
        let per_peer = format!("run_as = \"nobody\"\n{ONE_PEER}run_as = \"daemon\"\n");
        let config = ClusterConfig::parse(&per_peer).unwrap();
        assert_eq!(config.run_as(&config.peers[0]), Some("daemon"));
    }
}
