//! JSON shapes of the client API, shared by the server and the typed client
//! so that the two can never drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::queue::{Job, JobSpec, JobState, Millis};

/// Body of `POST /api/v1/jobs` (and each item of a batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

impl From<SubmitRequest> for JobSpec {
    fn from(r: SubmitRequest) -> JobSpec {
        JobSpec { name: r.name, command: r.command, params: r.params, dedup_key: r.dedup_key }
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
