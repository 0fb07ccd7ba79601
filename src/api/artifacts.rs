//! The built-in artifact store over HTTP.
//!
//! - `PUT /api/v1/artifacts/{sha256}` (token): the body streams to disk,
//!   is verified against the hash in the path, and is registered in the
//!   funnel (`ArtifactRegistered`). Unless the request is itself a copy
//!   (`x-sgnode-replica: 1`), the receiving peer then copies the file to at
//!   least one other peer before it answers, so the artifact survives the
//!   loss of the peer that received it.
//! - `GET /api/v1/artifacts/{sha256}` (token): the file, from this peer's
//!   store; what workers fetch from each other.
//! - `GET /api/v1/artifacts`: every stored hash with its size and holders.

use std::sync::Arc;

use bytes::Buf;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::Filter;

use super::{file_body, json, respond, with_peer, ApiError, Response};
use crate::node::Peer;
use crate::queue::{is_sha256_hex, Command, NodeId, Outcome, STORE_PREFIX};
use crate::runner::artifact::{store, ArtifactError};

/// Header marking an upload as a peer's copy (not copied any further).
pub const REPLICA_HEADER: &str = "x-sgnode-replica";
const MIB: u64 = 1024 * 1024;

/// Answer to an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactPushView {
    pub hash: String,
    /// `sg:sha256:<hash>`, what jobs name it by.
    pub reference: String,
    pub size: u64,
    /// Peers holding it once the answer is sent.
    pub holders: Vec<NodeId>,
}

/// One artifact of `GET /api/v1/artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactView {
    pub hash: String,
    pub reference: String,
    pub size: u64,
    pub holders: Vec<NodeId>,
    /// RFC 3339, UTC.
    pub registered_at: String,
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> ApiError {
        match e {
            ArtifactError::Checksum { .. } | ArtifactError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            ArtifactError::TooLarge { max, .. } => ApiError::TooLarge(max),
            ArtifactError::Fetch(_) => ApiError::Unavailable(e.to_string()),
            ArtifactError::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

fn parse_hash(raw: &str) -> Result<String, ApiError> {
    let hash = raw.to_ascii_lowercase();
    if is_sha256_hex(&hash) {
        Ok(hash)
    } else {
        Err(ApiError::BadRequest(format!("artifact hash {raw:?} must be 64 hexadecimal digits")))
    }
}

fn data_dir(peer: &Peer) -> Result<std::path::PathBuf, ApiError> {
    peer.config.peer(peer.id).map(|p| p.data_dir.clone()).map_err(|e| ApiError::Internal(e.to_string()))
}

fn holders(peer: &Peer, hash: &str) -> Vec<NodeId> {
    let applied = peer.state.read();
    applied.funnel.artifacts().get(hash).map(|i| i.holders.iter().copied().collect()).unwrap_or_default()
}

async fn upload<S, B>(
    peer: Arc<Peer>,
    raw: String,
    replica: Option<String>,
    length: Option<u64>,
    mut body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let hash = parse_hash(&raw)?;
    let dir = data_dir(&peer)?;
    let max = peer.config.artifact_max_mb.saturating_mul(MIB);
    let mut incoming = store::Incoming::begin(&dir, &hash, max, "the upload").await?;
    incoming.check_announced(length)?;
    let deadline = tokio::time::Instant::now() + peer.config.artifact_fetch_timeout;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => {
                return Err(ApiError::BadRequest("the upload took longer than artifact_fetch_timeout".into()))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::BadRequest(format!("the upload broke off: {e}"))),
            Ok(Some(Ok(mut chunk))) => chunk.copy_to_bytes(chunk.remaining()),
        };
        incoming.write(&chunk).await?;
    }
    let size = incoming.commit().await?;
    register(&peer, &hash, size, peer.id).await?;
    tracing::info!("stored artifact {hash} ({size} bytes)");
    let mut holders = holders(&peer, &hash);
    let is_replica = replica.is_some_and(|r| r == "1");
    if !is_replica {
        // The copy's own registration may not be applied here yet.
        holders.extend(replicate(&peer, &hash, &dir).await?);
        holders.sort_unstable();
        holders.dedup();
    }
    let view = ArtifactPushView { reference: format!("{STORE_PREFIX}{hash}"), size, holders, hash };
    Ok(json(StatusCode::CREATED, &view))
}

async fn register(peer: &Peer, hash: &str, size: u64, node: NodeId) -> Result<(), ApiError> {
    let command = Command::ArtifactRegistered { hash: hash.to_string(), size, node };
    match peer.write(vec![command]).await?.outcomes.into_iter().next() {
        Some(Outcome::ArtifactHolders { .. }) => Ok(()),
        Some(Outcome::Refused(e)) => Err(ApiError::Funnel(e)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Copies the stored file to the first other peer that takes it (in id
/// order after this one) and returns that peer. One copy elsewhere is the
/// guarantee; a single-peer cluster has nowhere to copy to.
async fn replicate(peer: &Peer, hash: &str, dir: &std::path::Path) -> Result<Option<NodeId>, ApiError> {
    let mut others: Vec<(NodeId, String)> =
        peer.config.peers.iter().filter(|p| p.id != peer.id).map(|p| (p.id, p.address.clone())).collect();
    if others.is_empty() {
        return Ok(None);
    }
    others.sort_by_key(|(id, _)| (*id < peer.id, *id));
    let path = store::stored_path(dir, hash);
    let mut failures = Vec::new();
    for (id, address) in others {
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => return Err(ApiError::Internal(format!("cannot read the stored artifact: {e}"))),
        };
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let response = peer
            .http
            .put(format!("{}/api/v1/artifacts/{hash}", peer.config.url(&address)))
            .header(REPLICA_HEADER, "1")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .timeout(peer.config.artifact_fetch_timeout)
            .body(reqwest::Body::wrap_stream(file_body(file)))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                tracing::info!("copied artifact {hash} to peer {id}");
                return Ok(Some(id));
            }
            Ok(r) => failures.push(format!("peer {id}: HTTP {}", r.status().as_u16())),
            Err(e) => failures.push(format!("peer {id}: {e}")),
        }
    }
    Err(ApiError::Unavailable(format!(
        "artifact {hash} is stored on peer {} only: no other peer took a copy ({}); push again later",
        peer.id,
        failures.join("; ")
    )))
}

async fn download(peer: Arc<Peer>, raw: String) -> Result<Response, ApiError> {
    let hash = parse_hash(&raw)?;
    let path = store::stored_path(&data_dir(&peer)?, &hash);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound(format!("peer {} does not hold artifact {hash}", peer.id)))?;
    let length = file.metadata().await.map(|m| m.len()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = warp::reply::Response::new(file_body(file));
    let headers = response.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(warp::http::header::CONTENT_LENGTH, warp::http::HeaderValue::from(length));
    Ok(response)
}

fn list(peer: &Peer) -> Response {
    let applied = peer.state.read();
    let views: Vec<ArtifactView> = applied
        .funnel
        .artifacts()
        .iter()
        .map(|(hash, info)| ArtifactView {
            hash: hash.clone(),
            reference: format!("{STORE_PREFIX}{hash}"),
            size: info.size,
            holders: info.holders.iter().copied().collect(),
            registered_at: super::views::rfc3339(info.registered_at),
        })
        .collect();
    json(StatusCode::OK, &views)
}

/// The artifact routes.
pub fn routes(peer: Arc<Peer>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let base = warp::path("api").and(warp::path("v1")).and(warp::path("artifacts"));
    let put = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::put())
        .and(with_peer(peer.clone()))
        .and(warp::header::optional::<String>(REPLICA_HEADER))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(|raw, p, r, l, body| async move { respond(upload(p, raw, r, l, Box::pin(body)).await) });
    let get = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .then(|raw, p| async move { respond(download(p, raw).await) });
    let ls = base.and(warp::path::end()).and(warp::get()).and(with_peer(peer)).map(|p: Arc<Peer>| list(&p));
    put.or(get).unify().or(ls).unify()
}
