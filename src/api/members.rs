//! Membership routes (`/api/v1/members`), admin only (see [`super::auth`]).
//! Changes must run on the leader: a follower passes the request on to it
//! unchanged and returns its answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::{body, json, parse_json, respond, with_peer, ApiError, Response, MAX_CLIENT_BODY};
use crate::members::{self, AddMemberRequest, MemberError};
use crate::node::Peer;

/// A joining learner may take a while to catch up; the leader's own
/// deadline is shorter, so this only guards a hung leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(90);

impl From<MemberError> for ApiError {
    fn from(e: MemberError) -> ApiError {
        match e {
            MemberError::Invalid(m) => ApiError::BadRequest(m),
            MemberError::NotMember(id) => ApiError::NotFound(format!("peer {id} is not a member")),
            MemberError::NotLeader => ApiError::Unavailable("no leader to change the membership".into()),
            MemberError::Raft(m) => ApiError::Unavailable(m),
            MemberError::Write(w) => ApiError::Write(w),
        }
    }
}

/// Runs `change` here if this peer leads, else sends the same request to
/// the leader.
async fn on_leader<F, Fut>(
    peer: Arc<Peer>,
    method: Method,
    path: String,
    body: Bytes,
    change: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<Peer>) -> Fut,
    Fut: std::future::Future<Output = Result<members::MembersView, MemberError>>,
{
    match change(peer.clone()).await {
        Ok(view) => Ok(json(StatusCode::OK, &view)),
        Err(MemberError::NotLeader) => {
            let leader = peer.metrics().current_leader.filter(|&l| l != peer.id);
            let address = leader.and_then(|l| peer.peer_address(l)).ok_or(MemberError::NotLeader)?;
            let url = format!("{}{path}", peer.config.url(&address));
            let answer = peer
                .http
                .request(method, &url)
                .header("content-type", "application/json")
                .body(body)
                .timeout(FORWARD_TIMEOUT)
                .send()
                .await
                .map_err(|e| ApiError::Unavailable(format!("cannot reach the leader at {address}: {e}")))?;
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = answer
                .bytes()
                .await
                .map_err(|e| ApiError::Unavailable(format!("leader at {address} broke off: {e}")))?;
            let mut response = Response::new(bytes.into());
            *response.status_mut() = status;
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("peer id {raw:?} is not a positive number")))
}

/// The membership routes.
pub fn routes(peer: Arc<Peer>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let api = warp::path("api").and(warp::path("v1"));
    let list = api
        .and(warp::path!("members"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| json(StatusCode::OK, &members::view(&p)));
    let add = api
        .and(warp::path!("members"))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .and(body(MAX_CLIENT_BODY))
        .then(|p: Arc<Peer>, b: Bytes| async move {
            let request: AddMemberRequest = match parse_json(&b) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            respond(
                on_leader(p, Method::POST, "/api/v1/members".into(), b, |p| async move {
                    members::add(&p, &request).await
                })
                .await,
            )
        });
    let promote =
        api.and(warp::path!("members" / String / "promote"))
            .and(warp::post())
            .and(with_peer(peer.clone()))
            .then(|raw: String, p: Arc<Peer>| async move {
                let id = match parse_id(&raw) {
                    Ok(id) => id,
                    Err(e) => return e.into_response(),
                };
                let path = format!("/api/v1/members/{id}/promote");
                respond(
                    on_leader(p, Method::POST, path, Bytes::new(), |p| async move {
                        members::promote(&p, id).await
                    })
                    .await,
                )
            });
    let remove =
        api.and(warp::path!("members" / String)).and(warp::delete()).and(with_peer(peer)).then(
            |raw: String, p: Arc<Peer>| async move {
                let id = match parse_id(&raw) {
                    Ok(id) => id,
                    Err(e) => return e.into_response(),
                };
                let path = format!("/api/v1/members/{id}");
                respond(
                    on_leader(p, Method::DELETE, path, Bytes::new(), |p| async move {
                        members::remove(&p, id).await
                    })
                    .await,
                )
            },
        );
    list.or(add).unify().or(promote).unify().or(remove).unify()
}
