//! JSON shapes of the client API, shared by the server and the typed client
//! so that the two can never drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::queue::{ArtifactRef, Attempt, AttemptOutcome, Job, JobSpec, JobState, Millis, RunnerKind};

/// Body of `POST /api/v1/jobs` (and each item of a batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub name: String,
    /// Program and arguments; may be empty for an artifact job (the
    /// archive's entry point runs).
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Slots to reserve (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// MiB to reserve (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<u64>,
    /// Higher runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Retries after a failed or timed-out attempt (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Per-attempt time limit in milliseconds (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Archive to run: http(s)/file URL, or `sg:sha256:<hex>` from the
    /// built-in store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The archive's SHA-256 (implied by an `sg:sha256:` reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Arguments for the artifact's runner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl SubmitRequest {
    /// A request with only the required fields set.
    pub fn new(name: &str, command: Vec<String>) -> SubmitRequest {
        SubmitRequest {
            name: name.to_string(),
            command,
            params: BTreeMap::new(),
            dedup_key: None,
            slots: None,
            mem_mb: None,
            priority: None,
            retries: None,
            timeout_ms: None,
            artifact: None,
            sha256: None,
            args: Vec::new(),
        }
    }

    /// A request for an artifact job: `artifact` is a URL (with `sha256`)
    /// or an `sg:sha256:` reference; `args` go to the runner.
    pub fn artifact(name: &str, artifact: &str, sha256: Option<&str>, args: Vec<String>) -> SubmitRequest {
        SubmitRequest {
            artifact: Some(artifact.to_string()),
            sha256: sha256.map(str::to_string),
            args,
            ..SubmitRequest::new(name, Vec::new())
        }
    }
}

impl From<SubmitRequest> for JobSpec {
    fn from(r: SubmitRequest) -> JobSpec {
        JobSpec {
            name: r.name,
            command: r.command,
            params: r.params,
            dedup_key: r.dedup_key,
            slots: r.slots.unwrap_or(1),
            mem_mb: r.mem_mb.unwrap_or(0),
            priority: r.priority.unwrap_or(0),
            retries: r.retries.unwrap_or(0),
            timeout_ms: r.timeout_ms,
            artifact: r.artifact.map(|url| ArtifactRef::new(&url, r.sha256.as_deref())),
            args: r.args,
        }
    }
}

impl From<&JobSpec> for SubmitRequest {
    fn from(spec: &JobSpec) -> SubmitRequest {
        SubmitRequest {
            params: spec.params.clone(),
            dedup_key: spec.dedup_key.clone(),
            slots: Some(spec.slots),
            mem_mb: Some(spec.mem_mb),
            priority: Some(spec.priority),
            retries: Some(spec.retries),
            timeout_ms: spec.timeout_ms,
            ..SubmitRequest::new(&spec.name, spec.command.clone())
        }
    }
}

/// Body of `POST /api/v1/jobs/batch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmitRequest {
    pub jobs: Vec<SubmitRequest>,
}

/// Answer to a submit: the job that now stands for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub id: String,
    pub duplicate: bool,
    pub state: JobState,
}

/// The `error` object of every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// One item of a batch answer: a job or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem {
    Ok(SubmitResponse),
    Err(ErrorEnvelope),
}

/// Answer to a batch submit, items in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchSubmitResponse {
    pub results: Vec<BatchItem>,
}

/// A job as `status` and `history` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub dedup_key: String,
    /// RFC 3339, UTC.
    pub submitted_at: String,
    pub finished_at: Option<String>,
    pub command: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub slots: u32,
    pub mem_mb: u64,
    pub priority: i32,
    pub retries: u32,
    pub timeout_ms: Option<u64>,
    pub cancel_requested: bool,
    /// The archive the job runs, if any.
    pub artifact: Option<ArtifactRef>,
    /// Arguments for the artifact's runner.
    pub args: Vec<String>,
    /// Runner of the latest attempt that started.
    pub runner: Option<RunnerKind>,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

/// One attempt as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptView {
    pub number: u32,
    pub node: u64,
    pub assigned_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub outcome: Option<AttemptOutcome>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
    /// shell, hadoop or luigi, once started.
    pub runner: Option<RunnerKind>,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> AttemptView {
        AttemptView {
            number: a.number,
            node: a.node,
            assigned_at: rfc3339(a.assigned_at),
            started_at: a.started_at.map(rfc3339),
            ended_at: a.ended_at.map(rfc3339),
            outcome: a.end.as_ref().map(|e| e.outcome),
            exit_code: a.end.as_ref().and_then(|e| e.exit_code),
            signal: a.end.as_ref().and_then(|e| e.signal),
            duration_ms: a.end.as_ref().map(|e| e.duration_ms),
            reason: a.end.as_ref().map(|e| e.reason.clone()),
            runner: a.runner,
        }
    }
}

/// RFC 3339 with milliseconds for a leader timestamp.
pub fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> JobView {
        JobView {
            id: job.id.to_string(),
            name: job.spec.name.clone(),
            state: job.state,
            dedup_key: job.dedup_key.clone(),
            submitted_at: rfc3339(job.submitted_at),
            finished_at: job.finished_at.map(rfc3339),
            command: job.spec.command.clone(),
            params: job.spec.params.clone(),
            slots: job.spec.slots,
            mem_mb: job.spec.mem_mb,
            priority: job.spec.priority,
            retries: job.spec.retries,
            timeout_ms: job.spec.timeout_ms,
            cancel_requested: job.cancel_requested,
            artifact: job.spec.artifact.clone(),
            args: job.spec.args.clone(),
            runner: job.attempts.iter().rev().find_map(|a| a.runner),
            attempts: job.attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

/// One peer's own view of itself (`GET /api/v1/local`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalView {
    pub id: u64,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub jobs: u64,
    pub queued: u64,
    /// The replicated settings this replica applies.
    pub settings: crate::queue::Settings,
    /// Placement paused (`sgnode queue pause`).
    pub paused: bool,
    /// This peer's resident memory now and at its peak, bytes (Linux).
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// A peer as `nodes` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub url: String,
    pub voter: bool,
    pub reachable: bool,
    /// leader, follower, candidate, learner, or unreachable.
    pub role: String,
    pub term: Option<u64>,
    pub last_log: Option<u64>,
    pub last_applied: Option<u64>,
    /// Capacity as registered in the funnel (None before registration).
    pub slots: Option<u32>,
    pub slots_used: u64,
    pub mem_mb: Option<u64>,
    pub mem_used_mb: u64,
    /// Declared lost by the leader (its attempts were requeued).
    pub lost: bool,
}

/// `GET /api/v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesView {
    pub cluster: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub nodes: Vec<NodeView>,
}

/// `GET /api/v1/digest`: compared across replicas by tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestView {
    pub id: u64,
    pub last_applied: Option<u64>,
    pub digest: String,
}

/// Answer to `POST /api/v1/jobs/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelResponse {
    pub id: String,
    pub state: JobState,
}

/// Answer to `POST /api/v1/queue/pause` and `/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueView {
    pub paused: bool,
}
