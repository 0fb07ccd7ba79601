//! Jobs, commands and outcomes of the funnel: the vocabulary that travels in
//! the Raft log and comes back to clients.
//!
//! Everything here is plain serde data. Field order matters for bincode, so
//! adding a field is a format change of the log and the snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

/// Replicated settings. They live in the log (a `Configure` command) rather
/// than being read from each peer's file, so that every replica applies the
/// same rules even if the files disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub dedup_window_ms: u64,
    pub history_retention_ms: u64,
    pub max_queued: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dedup_window_ms: 3_600_000,
            history_retention_ms: 7 * 24 * 3_600_000,
            max_queued: 1_000_000,
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
    /// Cancel a job that is still queued (running jobs need the executor).
    Cancel { id: JobId },
    /// Drop finished jobs past retention (at most `limit` per command so that
    /// one Gc never stalls the state machine).
    Gc { limit: u32 },
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
    #[error("invalid field `{field}`: {message}")]
    Invalid { field: String, message: String },
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
    Refused(FunnelError),
}

fn invalid(field: &str, message: impl Into<String>) -> FunnelError {
    FunnelError::Invalid { field: field.to_string(), message: message.into() }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), FunnelError> {
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

impl JobSpec {
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
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err(invalid("command", "must name a program to run"));
        }
        if self.command.len() > MAX_COMMAND_WORDS {
            return Err(invalid(
                "command",
                format!("has {} words, at most {MAX_COMMAND_WORDS}", self.command.len()),
            ));
        }
        let bytes: usize = self.command.iter().map(String::len).sum();
        if bytes > MAX_COMMAND_BYTES {
            return Err(invalid("command", format!("is {bytes} bytes, at most {MAX_COMMAND_BYTES}")));
        }
        if self.command.iter().any(|w| w.contains('\0')) {
            return Err(invalid("command", "must not contain NUL bytes"));
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
    /// canonical, length-prefixed encoding of name, params and command, so
    /// that no two different specs can encode to the same bytes.
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
        let digest = hasher.finalize();
        format!("auto:{}", hex::encode(&digest[..16]))
    }
}
