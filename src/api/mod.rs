//! The HTTP surface of a peer: one port serves the client API
//! (`/api/v1/...`), the Raft RPCs (`/raft/...`) and, later, the dashboard.
//!
//! Handlers never reject: every request gets either its result or an
//! [`ApiError`] rendered as `{"error": {"code", "message"}}` with a status
//! scripts can rely on. Bodies are parsed here (not by warp) so that a bad
//! field is named in the message. One gate ([`auth`]) in front of every
//! route checks the caller's token against the role the route needs.

pub mod artifacts;
pub mod auth;
pub mod dispatch;
pub mod error;
pub mod follow;
pub mod members;
pub mod metrics;
pub mod views;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::ServerState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

pub use self::error::ApiError;
use self::views::*;
use crate::node::{ForwardedWrite, Peer};
use crate::queue::{Command, HistoryQuery, JobSpec, JobState, Outcome, RequestRef};
use crate::raft::{decode, encode};

/// Largest client request body.
pub const MAX_CLIENT_BODY: u64 = 4 * 1024 * 1024;
/// Largest Raft RPC body (append batches, snapshot chunks).
const MAX_RAFT_BODY: u64 = 256 * 1024 * 1024;
/// Most jobs in one batch submit.
pub const MAX_BATCH_JOBS: usize = 10_000;
/// Most jobs one history page returns.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

type Response = warp::reply::Response;

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// A request the gate turned away, carried to [`recover`].
#[derive(Debug)]
struct Refused(auth::Denied);

impl warp::reject::Reject for Refused {}

/// Admits a request only if its token holds the role its route needs.
fn gate(authority: Arc<auth::Authority>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and_then(move |method: warp::http::Method, path: warp::path::FullPath, header: Option<String>| {
            let verdict = authority.check(auth::required(&method, path.as_str()), header.as_deref());
            async move { verdict.map_err(|denied| warp::reject::custom(Refused(denied))) }
        })
        .untuple_one()
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn request_id(header: Option<&str>) -> Result<u128, ApiError> {
    match header {
        None => Ok(rand::random()),
        Some(h) => u128::from_str_radix(h, 16).map_err(|_| {
            ApiError::BadRequest("header `x-request-id` must be 1-32 hexadecimal digits".to_string())
        }),
    }
}

fn parse_job_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest(format!("job id {raw:?} is not a number")))
}

fn submit_outcome(outcome: Outcome) -> Result<SubmitResponse, ApiError> {
    match outcome {
        Outcome::Submitted { id, duplicate, state } => {
            Ok(SubmitResponse { id: id.to_string(), duplicate, state })
        }
        Outcome::Refused(e) => Err(ApiError::Funnel(e)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Turns submit requests into specs, each validated on its own so that a
/// bad job in a batch refuses only itself.
fn checked_specs(jobs: Vec<SubmitRequest>) -> Vec<Result<JobSpec, ApiError>> {
    jobs.into_iter()
        .map(|job| {
            let spec = JobSpec::from(job);
            spec.validate().map(|()| spec).map_err(ApiError::Funnel)
        })
        .collect()
}

/// Parses the body of `POST /api/v1/jobs/batch`, bounding its length.
fn parse_batch(body: &[u8]) -> Result<BatchSubmitRequest, ApiError> {
    let request: BatchSubmitRequest = parse_json(body)?;
    if request.jobs.is_empty() || request.jobs.len() > MAX_BATCH_JOBS {
        return Err(ApiError::BadRequest(format!(
            "field `jobs` must hold 1 to {MAX_BATCH_JOBS} jobs, got {}",
            request.jobs.len()
        )));
    }
    Ok(request)
}

/// Entry points for the fuzz targets in `fuzz/`: the submit handlers' body
/// parsing and validation, run without a peer. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{checked_specs, parse_batch, parse_json, ApiError, JobSpec, SubmitRequest};

    /// `POST /api/v1/jobs`: the body as the one checked spec it holds.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when the body is not a submit request.
    pub fn submit_body(body: &[u8]) -> Result<Vec<Result<JobSpec, ApiError>>, ApiError> {
        Ok(checked_specs(vec![parse_json::<SubmitRequest>(body)?]))
    }

    /// `POST /api/v1/jobs/batch`: one checked spec per job, in order.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when the body is not a batch of 1 to
    /// `MAX_BATCH_JOBS` submit requests.
    pub fn batch_body(body: &[u8]) -> Result<Vec<Result<JobSpec, ApiError>>, ApiError> {
        Ok(checked_specs(parse_batch(body)?.jobs))
    }
}

/// Validates the jobs (a bad job costs no log entry), proposes the valid
/// ones as one write, and returns one result per job, in order.
async fn execute_submits(
    peer: &Peer,
    rid: Option<&str>,
    jobs: Vec<SubmitRequest>,
) -> Result<Vec<Result<SubmitResponse, ApiError>>, ApiError> {
    let request_id = request_id(rid)?;
    let mut commands = Vec::new();
    let mut checked = Vec::new();
    for (index, spec) in checked_specs(jobs).into_iter().enumerate() {
        match spec {
            Ok(spec) => {
                let request = Some(RequestRef { request_id, index: index as u32 });
                commands.push(Command::Submit { request, spec });
                checked.push(None);
            }
            Err(e) => checked.push(Some(e)),
        }
    }
    let mut outcomes =
        if commands.is_empty() { Vec::new() } else { peer.write(commands).await?.outcomes }.into_iter();
    Ok(checked
        .into_iter()
        .map(|refused| match refused {
            Some(e) => Err(e),
            None => outcomes
                .next()
                .ok_or_else(|| ApiError::Internal("missing outcome".into()))
                .and_then(submit_outcome),
        })
        .collect())
}

async fn submit(peer: Arc<Peer>, rid: Option<String>, body: Bytes) -> Result<Response, ApiError> {
    let request: SubmitRequest = parse_json(&body)?;
    let response = execute_submits(&peer, rid.as_deref(), vec![request])
        .await?
        .pop()
        .unwrap_or_else(|| Err(ApiError::Internal("no outcome".into())))?;
    let status = if response.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok(json(status, &response))
}

async fn submit_batch(peer: Arc<Peer>, rid: Option<String>, body: Bytes) -> Result<Response, ApiError> {
    let request = parse_batch(&body)?;
    let results = execute_submits(&peer, rid.as_deref(), request.jobs)
        .await?
        .into_iter()
        .map(|result| match result {
            Ok(r) => BatchItem::Ok(r),
            Err(e) => BatchItem::Err(e.body()),
        })
        .collect();
    Ok(json(StatusCode::OK, &BatchSubmitResponse { results }))
}

async fn cancel(peer: Arc<Peer>, raw_id: String) -> Result<Response, ApiError> {
    let id = parse_job_id(&raw_id)?;
    let result = peer.write(vec![Command::Cancel { id }]).await?;
    match result.outcomes.into_iter().next() {
        Some(Outcome::Cancelled { id, state }) => {
            Ok(json(StatusCode::OK, &CancelResponse { id: id.to_string(), state }))
        }
        Some(Outcome::Refused(e)) => Err(ApiError::Funnel(e)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn set_paused(peer: Arc<Peer>, action: String) -> Result<Response, ApiError> {
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => return Err(ApiError::NotFound(format!("no queue action {other:?}; use pause or resume"))),
    };
    peer.write(vec![Command::SetPaused { paused }]).await?;
    Ok(json(StatusCode::OK, &QueueView { paused }))
}

fn job_status(peer: &Peer, raw_id: &str) -> Result<Response, ApiError> {
    let id = parse_job_id(raw_id)?;
    let applied = peer.state.read();
    let job = applied.funnel.job(id).ok_or_else(|| {
        ApiError::NotFound(format!("job {id} does not exist on this peer (unknown, or removed by retention)"))
    })?;
    Ok(json(StatusCode::OK, &JobView::from(job)))
}

/// A history time bound: RFC 3339 (any offset) or milliseconds since the epoch.
fn parse_time(field: &str, raw: &str) -> Result<crate::queue::Millis, ApiError> {
    if let Ok(ms) = raw.parse::<crate::queue::Millis>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .and_then(|t| crate::queue::Millis::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "query `{field}` must be RFC 3339 (2026-12-04T10:00:00Z) or milliseconds since the epoch, got {raw:?}"
            ))
        })
}

fn history(peer: &Peer, params: BTreeMap<String, String>) -> Result<Response, ApiError> {
    let mut query = HistoryQuery { limit: 50, ..HistoryQuery::default() };
    for (key, value) in params {
        match key.as_str() {
            "name" => query.name = Some(value),
            "dedup_key" => query.dedup_key = Some(value),
            "state" => {
                query.state = Some(
                    value
                        .parse::<JobState>()
                        .map_err(|e| ApiError::BadRequest(format!("query `state`: {e}")))?,
                )
            }
            "limit" => {
                query.limit =
                    value.parse().ok().filter(|l| (1..=MAX_HISTORY_LIMIT).contains(l)).ok_or_else(|| {
                        ApiError::BadRequest(format!("query `limit` must be 1 to {MAX_HISTORY_LIMIT}"))
                    })?;
            }
            "before" => query.before = Some(parse_job_id(&value)?),
            "node" => {
                query.node = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(format!("query `node` must be a peer id, got {value:?}"))
                })?)
            }
            "since" => query.since = Some(parse_time("since", &value)?),
            "until" => query.until = Some(parse_time("until", &value)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`; expected name, state, dedup_key, node, since, until, \
                     limit, before"
                )))
            }
        }
    }
    let applied = peer.state.read();
    let jobs: Vec<JobView> = applied.funnel.history(&query).into_iter().map(JobView::from).collect();
    Ok(json(StatusCode::OK, &jobs))
}

/// Where a log answer came from (`x-sgnode-log-source`).
pub const LOG_SOURCE_HEADER: &str = "x-sgnode-log-source";

fn text(source: &'static str, body: warp::hyper::Body) -> Response {
    let mut response = warp::reply::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(LOG_SOURCE_HEADER, warp::http::HeaderValue::from_static(source));
    response
}

/// Streams a file in 64 KiB chunks, so a huge log never sits in memory.
fn file_body(file: tokio::fs::File) -> warp::hyper::Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    warp::hyper::Body::wrap_stream(chunks)
}

/// Where this peer keeps the log of an attempt it ran.
fn local_log(peer: &Peer, job: crate::queue::JobId, attempt: u32) -> std::path::PathBuf {
    let data_dir = peer.config.peer(peer.id).map(|p| p.data_dir.clone()).unwrap_or_default();
    crate::runner::worker::log_path(&data_dir, job, attempt)
}

/// An attempt's log: from this peer's disk if it ran here, else (once the
/// attempt ended) from `shared_log_dir` when configured, else fetched from
/// the peer that ran it, else the tail kept in the replicated record.
async fn logs(
    peer: Arc<Peer>,
    raw_id: String,
    params: BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&raw_id)?;
    let local_only = params.get("local").is_some_and(|v| v == "1" || v == "true");
    let follow = params.get("follow").is_some_and(|v| v == "1" || v == "true");
    let wanted: Option<u32> = match params.get("attempt") {
        None => None,
        Some(a) => Some(
            a.parse()
                .map_err(|_| ApiError::BadRequest(format!("query `attempt` must be a number, got {a:?}")))?,
        ),
    };
    let (attempt, node_addr, tail) = {
        let applied = peer.state.read();
        let job = applied
            .funnel
            .job(id)
            .ok_or_else(|| ApiError::NotFound(format!("job {id} does not exist on this peer")))?;
        let attempt = match wanted {
            Some(n) => job.attempts.iter().find(|a| a.number == n),
            None => job.attempts.last(),
        }
        .ok_or_else(|| match wanted {
            Some(n) => {
                ApiError::NotFound(format!("job {id} has no attempt {n} (it has {})", job.attempts.len()))
            }
            None => ApiError::NotFound(format!("job {id} has not been placed yet: no log")),
        })?;
        let addr = applied.funnel.nodes().get(&attempt.node).map(|n| n.addr.clone());
        let tail = attempt.end.as_ref().map(|e| e.log_tail.clone());
        ((attempt.number, attempt.node), addr, tail)
    };
    let (number, node) = attempt;
    // An ended attempt's full log may sit in the shared log dir: complete
    // (it is renamed into place before the end is reported) and readable
    // without the worker, which may be gone or cut off.
    if let (Some(dir), true, false) = (&peer.config.shared_log_dir, tail.is_some(), local_only) {
        let ran_here_and_kept = node == peer.id && local_log(&peer, id, number).exists();
        if !ran_here_and_kept {
            if let Ok(file) = tokio::fs::File::open(crate::runner::shared_log::path(dir, id, number)).await {
                return Ok(text("shared", file_body(file)));
            }
        }
    }
    if follow {
        if let Some(response) = follow::open(&peer, id, number, node, node_addr.as_deref()).await {
            return Ok(response);
        }
    }
    if node == peer.id {
        match tokio::fs::File::open(local_log(&peer, id, number)).await {
            Ok(file) => return Ok(text("file", file_body(file))),
            Err(_) if local_only => {
                return Err(ApiError::NotFound(format!("no log file for job {id} attempt {number} here")))
            }
            Err(_) => {}
        }
    } else if local_only {
        return Err(ApiError::NotFound(format!("job {id} attempt {number} did not run on peer {}", peer.id)));
    } else if let Some(addr) = node_addr {
        let url = format!("{}/api/v1/jobs/{id}/logs?attempt={number}&local=1", peer.config.url(&addr));
        if let Some(response) = follow::proxy(&peer, url).await {
            return Ok(response);
        }
    }
    match tail {
        Some(tail) => Ok(text("tail", tail.into())),
        None => Err(ApiError::Unavailable(format!(
            "job {id} attempt {number} runs on peer {node}, which does not answer; its log tail is kept once it ends"
        ))),
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// This peer's own view.
pub fn local_view(peer: &Peer) -> LocalView {
    let metrics = peer.metrics();
    let (stats, settings, paused) = {
        let applied = peer.state.read();
        (applied.funnel.stats(), *applied.funnel.settings(), applied.funnel.meta().paused)
    };
    let memory = crate::metrics::process_memory();
    LocalView {
        id: peer.id,
        role: role(metrics.state).to_string(),
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log: metrics.last_log_index,
        last_applied: metrics.last_applied.map(|l| l.index),
        snapshot: metrics.snapshot.map(|l| l.index),
        jobs: stats.jobs,
        queued: stats.queued,
        settings,
        paused,
        rss_bytes: memory.map(|m| m.0),
        peak_rss_bytes: memory.map(|m| m.1),
    }
}

async fn nodes(peer: Arc<Peer>) -> Result<Response, ApiError> {
    let me = local_view(&peer);
    let metrics = peer.metrics();
    let membership = metrics.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    // Every configured peer plus any member the file does not know.
    let mut addresses: BTreeMap<u64, String> =
        peer.config.peers.iter().map(|p| (p.id, p.address.clone())).collect();
    for (id, node) in membership.nodes() {
        addresses.insert(*id, node.addr.clone());
    }
    let asks = addresses.into_iter().map(|(id, address)| {
        let peer = peer.clone();
        let me = me.clone();
        let voter = voters.contains(&id);
        let (registered, used) = {
            let applied = peer.state.read();
            (applied.funnel.nodes().get(&id).cloned(), applied.funnel.used(id))
        };
        async move {
            let url = peer.config.url(&address);
            let view = if id == peer.id {
                Some(me)
            } else {
                let fetched = peer
                    .http
                    .get(format!("{url}/api/v1/local"))
                    .timeout(Duration::from_millis(800))
                    .send()
                    .await
                    .ok();
                match fetched {
                    Some(r) if r.status().is_success() => r.json::<LocalView>().await.ok(),
                    _ => None,
                }
            };
            NodeView {
                id,
                url,
                voter,
                reachable: view.is_some(),
                role: view.as_ref().map_or("unreachable".to_string(), |v| v.role.clone()),
                term: view.as_ref().map(|v| v.term),
                last_log: view.as_ref().and_then(|v| v.last_log),
                last_applied: view.as_ref().and_then(|v| v.last_applied),
                slots: registered.as_ref().map(|n| n.slots),
                slots_used: used.0,
                mem_mb: registered.as_ref().map(|n| n.mem_mb),
                mem_used_mb: used.1,
                lost: registered.as_ref().is_some_and(|n| n.lost),
            }
        }
    });
    let nodes = futures::future::join_all(asks).await;
    let view =
        NodesView { cluster: peer.config.cluster_name.clone(), leader: me.leader, term: me.term, nodes };
    Ok(json(StatusCode::OK, &view))
}

fn digest(peer: &Peer) -> Response {
    let applied = peer.state.read();
    let view = DigestView {
        id: peer.id,
        last_applied: applied.last_applied.map(|l| l.index),
        digest: applied.funnel.digest(),
    };
    json(StatusCode::OK, &view)
}

fn octets(bytes: Vec<u8>) -> Response {
    let mut response = warp::reply::Response::new(bytes.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn raft_rpc(peer: Arc<Peer>, kind: String, body: Bytes) -> Result<Response, ApiError> {
    let bad = |e: bincode::Error| ApiError::BadRequest(format!("undecodable raft {kind} body: {e}"));
    let encoded = match kind.as_str() {
        "append" => encode(&peer.raft.append_entries(decode(&body).map_err(bad)?).await),
        "vote" => encode(&peer.raft.vote(decode(&body).map_err(bad)?).await),
        "snapshot" => encode(&peer.raft.install_snapshot(decode(&body).map_err(bad)?).await),
        "heartbeat" => {
            let heartbeat: crate::node::Heartbeat = decode(&body).map_err(bad)?;
            encode(&peer.handle_heartbeat(&heartbeat).await)
        }
        "write" => {
            let write: ForwardedWrite = decode(&body).map_err(bad)?;
            encode(&peer.handle_forwarded(write).await?)
        }
        other => return Err(ApiError::NotFound(format!("no raft rpc named {other:?}"))),
    };
    encoded.map(octets).map_err(|e| ApiError::Internal(e.to_string()))
}

fn with_peer(peer: Arc<Peer>) -> impl Filter<Extract = (Arc<Peer>,), Error = Infallible> + Clone {
    warp::any().map(move || peer.clone())
}

fn body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(limit).and(warp::body::bytes())
}

/// All routes of a peer.
pub fn routes(peer: Arc<Peer>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let authority = Arc::new(auth::Authority::new(&peer.config));
    let api = warp::path("api").and(warp::path("v1"));
    let submit_route = api
        .and(warp::path("jobs"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .and(warp::header::optional::<String>("x-request-id"))
        .and(body(MAX_CLIENT_BODY))
        .then(|p, r, b| async move { respond(submit(p, r, b).await) });
    let batch_route = api
        .and(warp::path!("jobs" / "batch"))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .and(warp::header::optional::<String>("x-request-id"))
        .and(body(MAX_CLIENT_BODY))
        .then(|p, r, b| async move { respond(submit_batch(p, r, b).await) });
    let cancel_route = api
        .and(warp::path!("jobs" / String / "cancel"))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .then(|id, p| async move { respond(cancel(p, id).await) });
    let status_route = api
        .and(warp::path!("jobs" / String))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|id: String, p: Arc<Peer>| respond(job_status(&p, &id)));
    let history_route = api
        .and(warp::path("jobs"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .and(warp::query::<BTreeMap<String, String>>())
        .map(|p: Arc<Peer>, q| respond(history(&p, q)));
    let queue_route = api
        .and(warp::path!("queue" / String))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .then(|action, p| async move { respond(set_paused(p, action).await) });
    let logs_route = api
        .and(warp::path!("jobs" / String / "logs"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .and(warp::query::<BTreeMap<String, String>>())
        .then(|id, p, q| async move { respond(logs(p, id, q).await) });
    let nodes_route = api
        .and(warp::path!("nodes"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .then(|p| async move { respond(nodes(p).await) });
    let local_route = api
        .and(warp::path!("local"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| json(StatusCode::OK, &local_view(&p)));
    let digest_route = api
        .and(warp::path!("digest"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| digest(&p));
    let artifact_routes = artifacts::routes(peer.clone());
    let dispatch_routes = dispatch::routes(peer.clone());
    let member_routes = members::routes(peer.clone());
    let metrics_route = warp::path!("metrics")
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| metrics::response(&p));
    let raft_route = warp::path!("raft" / String)
        .and(warp::post())
        .and(with_peer(peer))
        .and(body(MAX_RAFT_BODY))
        .then(|kind, p, b| async move { respond(raft_rpc(p, kind, b).await) });
    // Boxed in two halves: the whole chain of nested filter types inside
    // the gate kept rustc busy for over fifteen CPU-minutes without end.
    let jobs = submit_route
        .or(batch_route)
        .unify()
        .or(cancel_route)
        .unify()
        .or(status_route)
        .unify()
        .or(logs_route)
        .unify()
        .or(queue_route)
        .unify()
        .or(history_route)
        .unify()
        .boxed();
    let rest = nodes_route
        .or(local_route)
        .unify()
        .or(digest_route)
        .unify()
        .or(dispatch_routes)
        .unify()
        .or(member_routes)
        .unify()
        .or(metrics_route)
        .unify()
        .or(crate::ui::routes())
        .unify()
        .or(raft_route)
        .unify()
        .or(artifact_routes)
        .unify()
        .boxed();
    gate(authority).and(jobs.or(rest).unify()).recover(recover).unify()
}

/// Turns warp's own rejections (no route, body too large, ...) into the
/// same JSON error shape as everything else.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(Refused(denied)) = rejection.find() {
        match denied {
            auth::Denied::Unauthenticated => ApiError::Unauthorized,
            auth::Denied::Forbidden { holder, has, needs } => ApiError::Forbidden(format!(
                "token {holder:?} has role {}; this route needs {}",
                has.as_str(),
                needs.as_str()
            )),
        }
    } else if rejection.is_not_found() {
        ApiError::NotFound("no such route; see the README for the API".into())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::TooLarge(MAX_CLIENT_BODY)
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::BadRequest("a Content-Length header is required".into())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        let e = ApiError::BadRequest("method not allowed on this route".into());
        let mut response = e.into_response();
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(response);
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest(format!("invalid query string: {e}"))
    } else {
        ApiError::Internal(format!("{rejection:?}"))
    };
    Ok(error.into_response())
}

/// Binds `addr` and serves until `shutdown` resolves: plain HTTP, or HTTPS
/// when `tls` is given (see [`crate::tls::incoming`]).
///
/// # Errors
/// The bind error (address in use, permission).
pub fn serve(
    peer: Arc<Peer>,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, futures::future::BoxFuture<'static, ()>), std::io::Error> {
    let server = warp::serve(routes(peer));
    let Some(tls) = tls else {
        let (bound, running) =
            server.try_bind_with_graceful_shutdown(addr, shutdown).map_err(std::io::Error::other)?;
        return Ok((bound, Box::pin(running)));
    };
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    let running = server.serve_incoming_with_graceful_shutdown(crate::tls::incoming(listener, tls), shutdown);
    Ok((bound, Box::pin(running)))
}
