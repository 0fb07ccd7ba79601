//! Jobs, commands and outcomes of the funnel: the vocabulary that travels in
//! the Raft log and comes back to clients.
//!
//! Everything here is plain serde data. Field order matters for bincode, so
//! adding a field is a format change of the log and the snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dispatch::{InducedDef, ScheduleDef};

/// Cluster-wide job id, assigned in log order by the funnel.
pub type JobId = u64;
/// Milliseconds since the Unix epoch, always stamped by the leader.
pub type Millis = u64;

/// Longest job name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest user-given dedup key, in bytes.
pub const MAX_DEDUP_KEY_LEN: usize = 512;
/// Most params per job.
pub const MAX_PARAMS: usize = 64;
/// Longest param value, in bytes.
pub const MAX_PARAM_VALUE_LEN: usize = 4096;
/// Most command words (program plus arguments).
pub const MAX_COMMAND_WORDS: usize = 256;
/// Largest command line (sum of word lengths), in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// What a user asks to run. Validated before it is proposed and again inside
/// `apply` (which must be total: a bad spec yields an error outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Human name; history can be filtered by it.
    pub name: String,
    /// Program and arguments, run without a shell.
    pub command: Vec<String>,
    /// User parameters (exposed to the job as `SG_PARAM_<NAME>`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Dedup key given by the user; when absent one is derived from the spec.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Slots the job occupies on its node while it runs.
    #[serde(default = "one_slot")]
    pub slots: u32,
    /// Memory the job reserves on its node, MiB (0 = none).
    #[serde(default)]
    pub mem_mb: u64,
    /// Higher runs first; equal priorities run in submit order.
    #[serde(default)]
    pub priority: i32,
    /// Failed or timed-out attempts retried this many times, with backoff.
    #[serde(default)]
    pub retries: u32,
    /// Kill the attempt's whole process group after this long.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A self-contained archive to fetch, verify and unpack before the run;
    /// the runner is then chosen from what the archive holds.
    #[serde(default)]
    pub artifact: Option<ArtifactRef>,
    /// Arguments for the artifact's runner (they replace the manifest's
    /// default arguments). Plain jobs put their arguments in `command`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Where a job's archive comes from and what its content must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// `http://`, `https://` or `file://` URL, or `sg:sha256:<hex>` for the
    /// cluster's built-in store.
    pub url: String,
    /// Expected SHA-256 of the archive, 64 lowercase hex digits.
    pub sha256: String,
}

/// Prefix of a reference into the cluster's built-in artifact store.
pub const STORE_PREFIX: &str = "sg:sha256:";
/// Longest artifact URL, in bytes.
pub const MAX_ARTIFACT_URL_LEN: usize = 4096;

/// Whether `hash` is a SHA-256 in the canonical form used everywhere: 64
/// lowercase hex digits.
pub fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactRef {
    /// Builds a reference from user input: `sg:sha256:HEX` (where `sha256`
    /// may be omitted) or a URL plus its hash. Hex is lowercased; checks
    /// are left to [`JobSpec::validate`].
    pub fn new(url: &str, sha256: Option<&str>) -> ArtifactRef {
        let sha256 = match (sha256, url.strip_prefix(STORE_PREFIX)) {
            (Some(h), _) => h.to_ascii_lowercase(),
            (None, Some(h)) => h.to_ascii_lowercase(),
            (None, None) => String::new(),
        };
        let url = match url.strip_prefix(STORE_PREFIX) {
            Some(h) => format!("{STORE_PREFIX}{}", h.to_ascii_lowercase()),
            None => url.to_string(),
        };
        ArtifactRef { url, sha256 }
    }

    /// The store hash when this names the built-in store.
    pub fn store_hash(&self) -> Option<&str> {
        self.url.strip_prefix(STORE_PREFIX)
    }

    fn validate(&self) -> Result<(), FunnelError> {
        check_text("artifact", &self.url, MAX_ARTIFACT_URL_LEN)?;
        if self.store_hash().is_some_and(|hash| !is_sha256_hex(hash)) {
            return Err(invalid("artifact", "a store reference is `sg:sha256:` and 64 hexadecimal digits"));
        }
        if !is_sha256_hex(&self.sha256) {
            return Err(invalid("sha256", "must be 64 hexadecimal digits (the archive's SHA-256)"));
        }
        if let Some(hash) = self.store_hash() {
            if hash != self.sha256 {
                return Err(invalid("sha256", "differs from the hash in the `sg:sha256:` reference"));
            }
            return Ok(());
        }
        let scheme = self.url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") if self.url.len() > "https://".len() => Ok(()),
            Some("file") if self.url["file://".len()..].starts_with('/') => Ok(()),
            Some("file") => Err(invalid("artifact", "a file:// URL needs an absolute path (file:///...)")),
            _ => Err(invalid(
                "artifact",
                "must be an http://, https:// or file:// URL, or sg:sha256:<hex> from `sgnode artifact push`",
            )),
        }
    }
}

/// A built-in store artifact as the funnel knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Bytes.
    pub size: u64,
    /// Peers that hold a verified copy on disk.
    pub holders: std::collections::BTreeSet<NodeId>,
    /// First registration.
    pub registered_at: Millis,
}

/// Which adapter ran an attempt (chosen from the artifact, or `shell` for
/// an inline command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerKind {
    Shell,
    Hadoop,
    Luigi,
}

impl RunnerKind {
    /// The snake_case name used in the CLI, JSON and `sgjob.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerKind::Shell => "shell",
            RunnerKind::Hadoop => "hadoop",
            RunnerKind::Luigi => "luigi",
        }
    }
}

impl std::fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn one_slot() -> u32 {
    1
}

/// Most slots one job may ask for.
pub const MAX_JOB_SLOTS: u32 = 1024;
/// Most memory one job may ask for, MiB (1 PiB: keeps sums far from overflow).
pub const MAX_JOB_MEM_MB: u64 = 1 << 30;
/// Most retries one job may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Lost attempts (worker vanished) are retried beyond `retries`, up to this
/// many per job: losing a node is not the job's fault, but a job that keeps
/// killing its node must not loop forever.
pub const MAX_LOST_ATTEMPTS: u32 = 3;
/// Largest log tail kept in the replicated record of an attempt.
pub const LOG_TAIL_BYTES: usize = 64 * 1024;

/// Cluster-wide peer id (the Raft node id).
pub type NodeId = u64;

/// A worker as the funnel knows it: where it is and what it can hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: String,
    pub slots: u32,
    pub mem_mb: u64,
    /// Bumped by every registration: attempts of an older incarnation were
    /// orphaned by a restart and are never run by the new one.
    pub incarnation: u64,
    /// Declared lost by the leader; its attempts were requeued.
    pub lost: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// The worker vanished, restarted, or lost its lease.
    Lost,
}

/// The worker's report of a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptEnd {
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    /// Human explanation, e.g. "exit code 3" or "cannot start `x`: not found".
    pub reason: String,
    /// Last bytes of stdout+stderr, so logs survive the worker.
    pub log_tail: String,
    /// The runner that ran it; `None` if it never started. Lets the report
    /// of an end stand in for a `Started` report that has not landed yet
    /// (they travel separately and may arrive in either order).
    pub runner: Option<RunnerKind>,
}

/// One try at running a job on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    pub node: NodeId,
    pub incarnation: u64,
    pub assigned_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub end: Option<AttemptEnd>,
    /// The runner the worker chose, from its `Started` report.
    pub runner: Option<RunnerKind>,
}

/// Which client request created a job: lets a retried request (same id,
/// e.g. after a leader change) get its first answer instead of a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestRef {
    /// Random id chosen by the client (or by the first peer it reached).
    pub request_id: u128,
    /// Position of the job inside a batch request.
    pub index: u32,
}

/// Lifecycle of a job. `queued -> assigned -> running -> terminal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    Lost,
}

impl JobState {
    /// All states, for parsing and listing.
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
        JobState::Lost,
    ];

    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Assigned | JobState::Running)
    }

    /// The snake_case name used in the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
            JobState::Lost => "lost",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown state {s:?}; expected one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as the funnel keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    /// The effective dedup key: the user's, or the derived `auto:` hash.
    pub dedup_key: String,
    pub state: JobState,
    pub submitted_at: Millis,
    /// When the job reached a terminal state.
    pub finished_at: Option<Millis>,
    /// The request that created the job, for idempotent retries.
    pub request: Option<RequestRef>,
    /// Every attempt, oldest first; the last one is current.
    pub attempts: Vec<Attempt>,
    /// Not placed before this time (retry backoff).
    pub not_before: Millis,
    /// A cancel arrived while the job was assigned or running.
    pub cancel_requested: bool,
}

impl Job {
    /// The current attempt, if any.
    pub fn current(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Whether an attempt holds capacity on a node right now.
    pub fn holds_capacity(&self) -> bool {
        matches!(self.state, JobState::Assigned | JobState::Running)
    }
}

/// Replicated settings. They live in the log (a `Configure` command) rather
/// than being read from each peer's file, so that every replica applies the
/// same rules even if the files disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub dedup_window_ms: u64,
    pub history_retention_ms: u64,
    pub max_queued: u64,
    /// First retry waits this long; each further retry doubles it (max 64x).
    pub retry_backoff_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dedup_window_ms: 3_600_000,
            history_retention_ms: 7 * 24 * 3_600_000,
            max_queued: 1_000_000,
            retry_backoff_ms: 1000,
        }
    }
}

/// One state-machine command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Queue a job unless its dedup key is taken or the queue is full.
    Submit { request: Option<RequestRef>, spec: JobSpec },
    /// Replace the replicated settings.
    Configure(Settings),
    /// Cancel a job: dequeued at once if queued, killed by its worker if
    /// assigned or running.
    Cancel { id: JobId },
    /// A worker (re)announces itself; a new incarnation orphans, and so
    /// requeues, whatever its previous incarnation was running.
    RegisterNode { id: NodeId, addr: String, slots: u32, mem_mb: u64 },
    /// Leader placements, re-checked against capacity when applied.
    Assign { placements: Vec<(JobId, NodeId)> },
    /// A worker started attempt `attempt` of `job` with `runner`.
    Started { job: JobId, attempt: u32, node: NodeId, runner: RunnerKind },
    /// A worker finished attempt `attempt` of `job`.
    Finished { job: JobId, attempt: u32, node: NodeId, end: AttemptEnd },
    /// The leader gave up on a node: its attempts are lost and requeued.
    NodeLost { node: NodeId },
    /// Pause or resume placement (maintenance, benchmarks of the queue).
    SetPaused { paused: bool },
    /// Drop finished jobs past retention (at most `limit` per command so that
    /// one Gc never stalls the state machine).
    Gc { limit: u32 },
    /// Create or replace a schedule (idempotent: an identical definition
    /// changes nothing).
    ScheduleUpsert { def: ScheduleDef },
    /// Remove a schedule or an induced definition.
    ScheduleDelete { name: String },
    /// Pause or resume one schedule; resuming does not replay missed ticks.
    SchedulePause { name: String, paused: bool },
    /// The leader found `tick` due: submit `spec` (if any) with the dedup
    /// key `NAME@TICK`, or record the tick as passed over.
    ScheduleFired { name: String, tick: Millis, spec: Option<JobSpec>, skipped: u32 },
    /// Create or replace an induced-job definition.
    InducedUpsert { def: InducedDef },
    /// A dataset instance was published (or re-published).
    DatasetPublished { dataset: String, params: BTreeMap<String, String> },
    /// The leader found every input of parameter set `set` present.
    InducedFired { name: String, set: String, spec: JobSpec },
    /// Peer `node` holds the built-in store's artifact `hash` (`size`
    /// bytes) on its disk, verified; workers fetch it from its holders.
    ArtifactRegistered { hash: String, size: u64, node: NodeId },
    /// An operator removed peer `node` from the Raft membership: a leader
    /// must not re-add it as a learner just because the cluster file
    /// lists it.
    MemberRemoved { node: NodeId },
    /// An operator added peer `node` (again): lifts a removal.
    MemberAdded { node: NodeId },
}

/// The Raft entry payload: a batch of commands with the leader's clock.
/// Batching many client commands into one entry is the main throughput lever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Leader wall clock when proposing; `apply` never reads a clock.
    pub now: Millis,
    pub commands: Vec<Command>,
}

/// Why the funnel refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FunnelError {
    #[error("queue is full ({max_queued} jobs waiting); retry later")]
    QueueFull { max_queued: u64 },
    #[error("job {id} does not exist (or was removed by retention)")]
    NotFound { id: JobId },
    #[error("job {id} is {state} and cannot be {action}")]
    WrongState { id: JobId, state: JobState, action: String },
    #[error("no node can ever hold this job: it asks for {slots} slots and {mem_mb} MiB, the largest node has {max_slots} slots and {max_mem_mb} MiB")]
    Unschedulable { slots: u32, mem_mb: u64, max_slots: u32, max_mem_mb: u64 },
    #[error("invalid field `{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("no schedule or induced job named {name:?}")]
    NoSuchDefinition { name: String },
    #[error("tick {tick} of schedule {name:?} was already handled (or the schedule is paused)")]
    StaleTick { name: String, tick: String },
}

/// Result of one command, in command order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A submit: the job that now represents it.
    Submitted {
        id: JobId,
        duplicate: bool,
        state: JobState,
    },
    /// A cancel: the job's state afterwards.
    Cancelled {
        id: JobId,
        state: JobState,
    },
    Configured,
    Collected {
        removed: u64,
    },
    /// A registration: the node's new incarnation.
    Registered {
        incarnation: u64,
    },
    /// Placements that held; the others were stale and skipped.
    Assigned {
        accepted: u32,
    },
    /// A worker report; `current` is false when it was stale (ignored).
    /// `placed`: queued jobs given the slots a finished attempt freed.
    Reported {
        current: bool,
        placed: u32,
        /// A `Finished` that also recorded the attempt's start (its
        /// `Started` had not been applied).
        started: bool,
    },
    Paused {
        paused: bool,
    },
    NodeMarkedLost {
        requeued: u32,
    },
    /// A schedule or induced definition was stored.
    Defined {
        created: bool,
        changed: bool,
    },
    Deleted,
    /// A membership change was recorded.
    MembershipNoted,
    /// A schedule tick or input set: the job it submitted, if any.
    Fired {
        job: Option<JobId>,
        duplicate: bool,
    },
    Published {
        first: bool,
    },
    Refused(FunnelError),
    /// An artifact registration: how many peers now hold it.
    ArtifactHolders {
        holders: u32,
    },
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> FunnelError {
    FunnelError::Invalid { field: field.to_string(), message: message.into() }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), FunnelError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("is {} bytes, at most {max} allowed", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn check_words(field: &str, words: &[String]) -> Result<(), FunnelError> {
    if words.len() > MAX_COMMAND_WORDS {
        return Err(invalid(field, format!("has {} words, at most {MAX_COMMAND_WORDS}", words.len())));
    }
    let bytes: usize = words.iter().map(String::len).sum();
    if bytes > MAX_COMMAND_BYTES {
        return Err(invalid(field, format!("is {bytes} bytes, at most {MAX_COMMAND_BYTES}")));
    }
    if words.iter().any(|w| w.contains('\0')) {
        return Err(invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}

impl JobSpec {
    /// A spec with default resources: one slot, no memory reservation, no
    /// retries, no timeout.
    pub fn new(name: impl Into<String>, command: Vec<String>) -> JobSpec {
        JobSpec {
            name: name.into(),
            command,
            params: BTreeMap::new(),
            dedup_key: None,
            slots: 1,
            mem_mb: 0,
            priority: 0,
            retries: 0,
            timeout_ms: None,
            artifact: None,
            args: Vec::new(),
        }
    }

    /// Checks every limit and naming rule; the error names the field.
    ///
    /// # Errors
    /// [`FunnelError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), FunnelError> {
        check_text("name", &self.name, MAX_NAME_LEN)?;
        if let Some(key) = &self.dedup_key {
            check_text("dedup_key", key, MAX_DEDUP_KEY_LEN)?;
            if key.starts_with("auto:") {
                return Err(invalid("dedup_key", "the prefix `auto:` is reserved for derived keys"));
            }
        }
        if let Some(artifact) = &self.artifact {
            artifact.validate()?;
        }
        // With an artifact the command may be empty: the archive's entry
        // point runs.
        match self.command.first() {
            None if self.artifact.is_none() => {
                return Err(invalid("command", "must name a program to run (or give an artifact)"))
            }
            Some(program) if program.is_empty() => {
                return Err(invalid("command", "must name a program to run"))
            }
            _ => {}
        }
        check_words("command", &self.command)?;
        check_words("args", &self.args)?;
        if self.artifact.is_none() && !self.args.is_empty() {
            return Err(invalid("args", "only for artifact jobs; put a plain job's arguments in `command`"));
        }
        if self.slots == 0 || self.slots > MAX_JOB_SLOTS {
            return Err(invalid("slots", format!("must be 1 to {MAX_JOB_SLOTS}, got {}", self.slots)));
        }
        if self.mem_mb > MAX_JOB_MEM_MB {
            return Err(invalid(
                "mem_mb",
                format!("must be at most {MAX_JOB_MEM_MB} MiB, got {}", self.mem_mb),
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(invalid("retries", format!("must be at most {MAX_RETRIES}, got {}", self.retries)));
        }
        if self.timeout_ms == Some(0) {
            return Err(invalid("timeout", "must be positive"));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(invalid(
                "params",
                format!("has {} entries, at most {MAX_PARAMS}", self.params.len()),
            ));
        }
        for (name, value) in &self.params {
            let mut chars = name.chars();
            let ok_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !ok_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > 64 {
                return Err(invalid(
                    &format!("params.{name}"),
                    "param names are 1-64 characters of [A-Za-z0-9_], not starting with a digit",
                ));
            }
            if value.len() > MAX_PARAM_VALUE_LEN || value.contains('\0') {
                return Err(invalid(
                    &format!("params.{name}"),
                    format!("value must be at most {MAX_PARAM_VALUE_LEN} bytes without NUL"),
                ));
            }
        }
        Ok(())
    }

    /// The effective dedup key: the user's key, or `auto:` plus a hash of a
    /// canonical, length-prefixed encoding of name, params, command, and
    /// the artifact's content hash and runner arguments when given, so that
    /// no two different specs can encode to the same bytes. (The artifact's
    /// URL is left out: the same content from a mirror is the same job.)
    pub fn effective_dedup_key(&self) -> String {
        if let Some(key) = &self.dedup_key {
            return key.clone();
        }
        let mut hasher = Sha256::new();
        let mut field = |tag: u8, bytes: &[u8]| {
            hasher.update([tag]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(b'n', self.name.as_bytes());
        for (k, v) in &self.params {
            field(b'k', k.as_bytes());
            field(b'v', v.as_bytes());
        }
        for word in &self.command {
            field(b'c', word.as_bytes());
        }
        if let Some(artifact) = &self.artifact {
            field(b'a', artifact.sha256.as_bytes());
        }
        for arg in &self.args {
            field(b'g', arg.as_bytes());
        }
        let digest = hasher.finalize();
        format!("auto:{}", hex::encode(&digest[..16]))
    }
}
