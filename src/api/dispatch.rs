//! HTTP routes for dispatch: schedules, dataset events and induced jobs.
//!
//! Definitions are fully validated here (cron, zone, a trial render of every
//! template) before anything is proposed, so a bad file is a 400 naming the
//! field and costs no log entry. Reads answer from this peer's replica; the
//! next fire times are computed with this peer's clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::{body, json, parse_json, respond, with_peer, ApiError, Response, MAX_CLIENT_BODY};
use crate::dispatch::{check_induced, check_schedule, evaluate_induced, template, zoned, InducedSet};
use crate::node::{now_millis, Peer};
use crate::queue::{format_utc, Command, DatasetEvent, InducedDef, Millis, Outcome, Schedule, ScheduleDef};

/// `POST /api/v1/schedules/apply`: the content of one schedule file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    #[serde(default)]
    pub schedules: Vec<ScheduleDef>,
    #[serde(default)]
    pub induced: Vec<InducedDef>,
    /// Also delete definitions this request does not name.
    #[serde(default)]
    pub prune: bool,
}

/// What applying did to one definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyItem {
    pub name: String,
    /// `schedule` or `induced`.
    pub kind: String,
    /// `created`, `changed`, `unchanged` or `deleted`.
    pub result: String,
}

/// A schedule with its next fire time (by the answering peer's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub paused: bool,
    /// Next tick, RFC 3339 in the schedule's zone.
    pub next_fire: Option<String>,
    pub next_fire_ms: Option<Millis>,
    pub last_tick: Option<String>,
    pub last_job: Option<String>,
    pub fired: u64,
    pub skipped: u64,
    pub def: ScheduleDef,
}

/// `POST /api/v1/datasets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Dataset instance name; may hold templates over `params`
    /// (`logs/{{date}}`).
    pub dataset: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A published dataset instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetView {
    pub dataset: String,
    pub first: bool,
    #[serde(flatten)]
    pub event: Option<DatasetEvent>,
}

/// `GET /api/v1/induced`: definitions and every candidate set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InducedView {
    pub definitions: Vec<InducedDef>,
    pub sets: Vec<InducedSet>,
}

fn schedule_view(schedule: &Schedule, now: Millis) -> ScheduleView {
    let cron = crate::dispatch::cron::CronSchedule::parse(&schedule.def.cron, &schedule.def.timezone).ok();
    let after = schedule.last_tick.unwrap_or(schedule.created_at).max(now);
    let next = cron.as_ref().and_then(|c| c.next_after(after).map(|t| (t, zoned(t, c.zone()).to_rfc3339())));
    ScheduleView {
        name: schedule.def.name.clone(),
        cron: schedule.def.cron.clone(),
        timezone: schedule.def.timezone.clone(),
        paused: schedule.paused,
        next_fire: if schedule.paused { None } else { next.as_ref().map(|n| n.1.clone()) },
        next_fire_ms: if schedule.paused { None } else { next.map(|n| n.0) },
        last_tick: schedule.last_tick.map(format_utc),
        last_job: schedule.last_job.map(|id| id.to_string()),
        fired: schedule.fired,
        skipped: schedule.skipped,
        def: schedule.def.clone(),
    }
}

fn refused(outcome: Option<Outcome>) -> ApiError {
    match outcome {
        Some(Outcome::Refused(e)) => ApiError::Funnel(e),
        other => ApiError::Internal(format!("unexpected outcome {other:?}")),
    }
}

async fn apply(peer: Arc<Peer>, body: Bytes) -> Result<Response, ApiError> {
    let request: ApplyRequest = parse_json(&body)?;
    let now = now_millis();
    let mut commands = Vec::new();
    let mut items = Vec::new();
    for def in &request.schedules {
        check_schedule(def, now)?;
        commands.push(Command::ScheduleUpsert { def: def.clone() });
        items.push(ApplyItem { name: def.name.clone(), kind: "schedule".into(), result: String::new() });
    }
    for def in &request.induced {
        check_induced(def, now)?;
        commands.push(Command::InducedUpsert { def: def.clone() });
        items.push(ApplyItem { name: def.name.clone(), kind: "induced".into(), result: String::new() });
    }
    if request.prune {
        let applied = peer.state.read();
        let dispatch = applied.funnel.dispatch();
        let named: Vec<String> = items.iter().map(|i| i.name.clone()).collect();
        for (name, kind) in dispatch
            .schedules
            .keys()
            .map(|n| (n, "schedule"))
            .chain(dispatch.induced.keys().map(|n| (n, "induced")))
        {
            if !named.contains(name) {
                commands.push(Command::ScheduleDelete { name: name.clone() });
                items.push(ApplyItem { name: name.clone(), kind: kind.into(), result: String::new() });
            }
        }
    }
    if commands.is_empty() {
        return Ok(json(StatusCode::OK, &items));
    }
    let outcomes = peer.write(commands).await?.outcomes;
    for (item, outcome) in items.iter_mut().zip(outcomes) {
        item.result = match outcome {
            Outcome::Defined { created: true, .. } => "created".into(),
            Outcome::Defined { changed: true, .. } => "changed".into(),
            Outcome::Defined { .. } => "unchanged".into(),
            Outcome::Deleted => "deleted".into(),
            other => return Err(refused(Some(other))),
        };
    }
    Ok(json(StatusCode::OK, &items))
}

fn list(peer: &Peer) -> Response {
    let now = now_millis();
    let applied = peer.state.read();
    let views: Vec<ScheduleView> =
        applied.funnel.dispatch().schedules.values().map(|s| schedule_view(s, now)).collect();
    json(StatusCode::OK, &views)
}

fn show(peer: &Peer, name: &str) -> Result<Response, ApiError> {
    let applied = peer.state.read();
    let schedule = applied
        .funnel
        .dispatch()
        .schedules
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no schedule named {name:?}")))?;
    Ok(json(StatusCode::OK, &schedule_view(schedule, now_millis())))
}

async fn delete(peer: Arc<Peer>, name: String) -> Result<Response, ApiError> {
    let mut outcomes = peer.write(vec![Command::ScheduleDelete { name: name.clone() }]).await?.outcomes;
    match outcomes.pop() {
        Some(Outcome::Deleted) => {
            Ok(json(StatusCode::OK, &ApplyItem { name, kind: "definition".into(), result: "deleted".into() }))
        }
        other => Err(refused(other)),
    }
}

async fn pause(peer: Arc<Peer>, name: String, action: String) -> Result<Response, ApiError> {
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(ApiError::NotFound(format!("no schedule action {other:?}; use pause or resume")))
        }
    };
    let mut outcomes =
        peer.write(vec![Command::SchedulePause { name: name.clone(), paused }]).await?.outcomes;
    match outcomes.pop() {
        Some(Outcome::Paused { .. }) => show(&peer, &name),
        other => Err(refused(other)),
    }
}

async fn publish(peer: Arc<Peer>, body: Bytes) -> Result<Response, ApiError> {
    let request: PublishRequest = parse_json(&body)?;
    let ctx =
        template::TemplateContext { time: zoned(now_millis(), chrono_tz::UTC), params: &request.params };
    let dataset = template::render_str(&request.dataset, &ctx).map_err(|m| {
        ApiError::Funnel(crate::queue::FunnelError::Invalid { field: "dataset".into(), message: m })
    })?;
    let command = Command::DatasetPublished { dataset: dataset.clone(), params: request.params };
    let mut outcomes = peer.write(vec![command]).await?.outcomes;
    match outcomes.pop() {
        Some(Outcome::Published { first }) => {
            let event = peer.state.read().funnel.dispatch().datasets.get(&dataset).cloned();
            Ok(json(StatusCode::OK, &DatasetView { dataset, first, event }))
        }
        other => Err(refused(other)),
    }
}

fn datasets(peer: &Peer) -> Response {
    let applied = peer.state.read();
    let views: Vec<DatasetView> = applied
        .funnel
        .dispatch()
        .datasets
        .iter()
        .map(|(name, event)| DatasetView {
            dataset: name.clone(),
            first: event.count == 1,
            event: Some(event.clone()),
        })
        .collect();
    json(StatusCode::OK, &views)
}

async fn induced(peer: Arc<Peer>) -> Result<Response, ApiError> {
    let dispatch = peer.state.read().funnel.dispatch().clone();
    let now = now_millis();
    let view = tokio::task::spawn_blocking(move || {
        let sets = evaluate_induced(&dispatch, now, &|p: &Path| p.exists());
        InducedView { definitions: dispatch.induced.into_values().collect(), sets }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &view))
}

/// The dispatch routes, under `/api/v1`.
pub fn routes(peer: Arc<Peer>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let api = warp::path("api").and(warp::path("v1"));
    let apply_route = api
        .and(warp::path!("schedules" / "apply"))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .and(body(MAX_CLIENT_BODY))
        .then(|p, b| async move { respond(apply(p, b).await) });
    let list_route = api
        .and(warp::path!("schedules"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| list(&p));
    let show_route = api
        .and(warp::path!("schedules" / String))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|name: String, p: Arc<Peer>| respond(show(&p, &name)));
    let delete_route = api
        .and(warp::path!("schedules" / String))
        .and(warp::delete())
        .and(with_peer(peer.clone()))
        .then(|name, p| async move { respond(delete(p, name).await) });
    let pause_route = api
        .and(warp::path!("schedules" / String / String))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .then(|name, action, p| async move { respond(pause(p, name, action).await) });
    let publish_route = api
        .and(warp::path!("datasets"))
        .and(warp::post())
        .and(with_peer(peer.clone()))
        .and(body(MAX_CLIENT_BODY))
        .then(|p, b| async move { respond(publish(p, b).await) });
    let datasets_route = api
        .and(warp::path!("datasets"))
        .and(warp::get())
        .and(with_peer(peer.clone()))
        .map(|p: Arc<Peer>| datasets(&p));
    let induced_route = api
        .and(warp::path!("induced"))
        .and(warp::get())
        .and(with_peer(peer))
        .then(|p| async move { respond(induced(p).await) });
    apply_route
        .or(list_route)
        .unify()
        .or(show_route)
        .unify()
        .or(delete_route)
        .unify()
        .or(pause_route)
        .unify()
        .or(publish_route)
        .unify()
        .or(datasets_route)
        .unify()
        .or(induced_route)
        .unify()
}
