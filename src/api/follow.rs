//! `GET /api/v1/jobs/{id}/logs?follow=1`: a running attempt's output, live.
//!
//! The worker that runs the attempt streams its log file as it grows: it
//! reads what is there, then polls every [`POLL`] until this replica has
//! applied the attempt's end (the file is complete once the process exited,
//! which is before the worker reports the end), drains the rest and closes
//! the response. Any other peer proxies the worker's follow response
//! through. Every follow is bounded by [`MAX_FOLLOW`] and by the peer's
//! shutdown, so an open follow never holds up a graceful stop for long.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{text, Response};
use crate::node::Peer;
use crate::queue::{JobId, NodeId};

/// How often a follower looks for new bytes.
pub const POLL: Duration = Duration::from_millis(200);
/// Longest one follow stays open.
pub const MAX_FOLLOW: Duration = Duration::from_secs(24 * 3600);
/// Largest chunk sent at once.
const CHUNK: usize = 64 * 1024;

/// Whether attempt `attempt` of `job` is over on this replica (ended, or the
/// job is gone).
fn attempt_over(peer: &Peer, job: JobId, attempt: u32) -> bool {
    let applied = peer.state.read();
    match applied.funnel.job(job) {
        None => true,
        Some(j) => {
            j.state.is_terminal()
                || j.attempts.iter().find(|a| a.number == attempt).is_none_or(|a| a.ended_at.is_some())
        }
    }
}

struct Following {
    peer: Arc<Peer>,
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    job: JobId,
    attempt: u32,
    deadline: tokio::time::Instant,
    /// The end was applied: the next empty read closes the stream.
    over: bool,
}

impl Following {
    /// The next chunk, waiting for one while the attempt runs.
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if self.file.is_none() {
                self.file = tokio::fs::File::open(&self.path).await.ok();
            }
            if let Some(file) = &mut self.file {
                let mut buf = vec![0u8; CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        return Some(Ok(Bytes::from(buf)));
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.over || self.peer.is_shutting_down() || tokio::time::Instant::now() >= self.deadline {
                return None;
            }
            if attempt_over(&self.peer, self.job, self.attempt) {
                // One more pass drains what was written before the end.
                self.over = true;
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A following response for attempt `attempt` of `job`, which runs (or ran)
/// on `node` at `node_addr`; None when this peer cannot follow it (the
/// worker does not answer), so the caller falls back to the stored tail.
pub async fn open(
    peer: &Arc<Peer>,
    job: JobId,
    attempt: u32,
    node: NodeId,
    node_addr: Option<&str>,
) -> Option<Response> {
    if node == peer.id {
        let data_dir = peer.config.peer(peer.id).map(|p| p.data_dir.clone()).unwrap_or_default();
        let path = crate::runner::worker::log_path(&data_dir, job, attempt);
        if !path.exists() && attempt_over(peer, job, attempt) {
            return None;
        }
        let following = Following {
            peer: peer.clone(),
            path,
            file: None,
            job,
            attempt,
            deadline: tokio::time::Instant::now() + MAX_FOLLOW,
            over: false,
        };
        let chunks = futures::stream::unfold(following, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((chunk, f))
        });
        return Some(text("file", warp::hyper::Body::wrap_stream(chunks)));
    }
    let base = peer.config.url(node_addr?);
    let url = format!("{base}/api/v1/jobs/{job}/logs?attempt={attempt}&local=1&follow=1");
    proxy(peer, url).await
}

/// Streams another peer's log answer through: a bounded wait for its head,
/// then the body for as long as that peer keeps it open. None when the
/// peer does not answer in time or answers with an error.
pub(super) async fn proxy(peer: &Peer, url: String) -> Option<Response> {
    let fetched = tokio::time::timeout(Duration::from_secs(5), peer.http.get(url).send()).await;
    match fetched {
        Ok(Ok(r)) if r.status().is_success() => {
            Some(text("peer", warp::hyper::Body::wrap_stream(r.bytes_stream())))
        }
        _ => None,
    }
}
