//! Dispatch: the ways a job gets submitted besides a manual `submit` —
//! cron schedules, backfills and induced (data-triggered) jobs.
//!
//! Definitions live in the replicated funnel (`queue::dispatch`); this
//! module holds everything that needs a clock, cron maths, time zones or the
//! file system: validation before a definition is proposed, templates, and
//! the leader's dispatcher loop, which proposes `ScheduleFired` for due
//! ticks and `InducedFired` for complete input sets. The funnel refuses a
//! tick that is already handled, so a deposed leader's late proposal and the
//! new leader's catch-up can never both submit the same tick.

pub mod cli;
pub mod cron;
pub mod file;
pub mod template;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, TimeZone, Utc};
use chrono_tz::Tz;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::node::{now_millis, Peer};
use crate::queue::{param_set_key, Command, Dispatch, FunnelError, InducedDef, JobSpec, Millis, ScheduleDef};
use cron::CronSchedule;
use template::{parse_zone, render_spec, TemplateContext};

/// How often the leader looks for due ticks.
const SCHEDULE_TICK: Duration = Duration::from_millis(100);
/// Most fires proposed in one entry (a long catch-up goes in several).
const MAX_FIRES_PER_ROUND: usize = 1000;

fn invalid(field: String, message: impl Into<String>) -> FunnelError {
    FunnelError::Invalid { field, message: message.into() }
}

/// `ms` as a time in `zone` (the epoch if out of range).
pub fn zoned(ms: Millis, zone: Tz) -> DateTime<Tz> {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().with_timezone(&zone)
}

/// Full check of a schedule before it is proposed: structure, cron, zone,
/// and a trial render of its job at `now` (so template errors surface at
/// `schedule apply`, not at 2 a.m.).
///
/// # Errors
/// [`FunnelError::Invalid`] with a field such as `schedule[nightly].cron`.
pub fn check_schedule(def: &ScheduleDef, now: Millis) -> Result<CronSchedule, FunnelError> {
    def.validate()?;
    let field = |f: &str| format!("schedule[{}].{f}", def.name);
    let zone = parse_zone(&def.timezone).map_err(|m| invalid(field("timezone"), m))?;
    let cron = CronSchedule::parse(&def.cron, &def.timezone).map_err(|m| invalid(field("cron"), m))?;
    let ctx = TemplateContext { time: zoned(now, zone), params: &def.job.params };
    let spec =
        render_spec(&def.job, &ctx).map_err(|e| invalid(field(&format!("job.{}", e.field)), e.message))?;
    spec.validate().map_err(|e| prefix(e, &field("job")))?;
    Ok(cron)
}

/// Full check of an induced definition, with a trial render against a
/// parameter set where every parameter is `2000-01-01`.
///
/// # Errors
/// [`FunnelError::Invalid`] with a field such as `induced[join].inputs[1]`.
pub fn check_induced(def: &InducedDef, now: Millis) -> Result<(), FunnelError> {
    def.validate()?;
    let field = |f: &str| format!("induced[{}].{f}", def.name);
    let zone = parse_zone(&def.timezone).map_err(|m| invalid(field("timezone"), m))?;
    let mut params = def.job.params.clone();
    for name in &def.params {
        params.insert(name.clone(), "2000-01-01".to_string());
    }
    let ctx = TemplateContext { time: zoned(now, zone), params: &params };
    for (i, input) in def.inputs.iter().enumerate() {
        template::render_str(input, &ctx).map_err(|m| invalid(field(&format!("inputs[{i}]")), m))?;
    }
    let spec =
        render_spec(&def.job, &ctx).map_err(|e| invalid(field(&format!("job.{}", e.field)), e.message))?;
    spec.validate().map_err(|e| prefix(e, &field("job")))
}

fn prefix(e: FunnelError, outer: &str) -> FunnelError {
    match e {
        FunnelError::Invalid { field, message } => {
            FunnelError::Invalid { field: format!("{outer}.{field}"), message }
        }
        other => other,
    }
}

/// One parameter set of an induced job and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InducedSet {
    pub name: String,
    pub params: BTreeMap<String, String>,
    /// Rendered inputs that do not exist yet.
    pub missing: Vec<String>,
    /// When this set was last submitted.
    pub fired_at: Option<Millis>,
    /// All inputs exist and a dataset input is newer than the last fire.
    pub ready: bool,
}

/// Works out every candidate parameter set of every induced definition and
/// which inputs each still misses. `file_exists` is the only I/O.
pub fn evaluate_induced(
    dispatch: &Dispatch,
    now: Millis,
    file_exists: &dyn Fn(&Path) -> bool,
) -> Vec<InducedSet> {
    let mut out = Vec::new();
    for def in dispatch.induced.values() {
        let Ok(zone) = parse_zone(&def.timezone) else { continue };
        let mut candidates: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
        for event in dispatch.datasets.values() {
            let set: BTreeMap<String, String> = def
                .params
                .iter()
                .filter_map(|p| event.params.get(p).map(|v| (p.clone(), v.clone())))
                .collect();
            if set.len() == def.params.len() {
                candidates.insert(set);
            }
        }
        if def.params == ["date"] {
            let today = zoned(now, zone).date_naive();
            for back in 0..=u64::from(def.lookback_days) {
                if let Some(day) = today.checked_sub_days(Days::new(back)) {
                    candidates
                        .insert(BTreeMap::from([("date".to_string(), day.format("%Y-%m-%d").to_string())]));
                }
            }
        }
        for set in candidates {
            let mut params = def.job.params.clone();
            params.extend(set.clone());
            let ctx = TemplateContext { time: zoned(now, zone), params: &params };
            let mut missing = Vec::new();
            let mut newest_publish: Option<Millis> = None;
            for input in &def.inputs {
                let Ok(rendered) = template::render_str(input, &ctx) else {
                    missing.push(input.clone());
                    continue;
                };
                if let Some(dataset) = rendered.strip_prefix("dataset:") {
                    match dispatch.datasets.get(dataset) {
                        Some(event) => newest_publish = newest_publish.max(Some(event.published_at)),
                        None => missing.push(rendered),
                    }
                } else if let Some(path) = rendered.strip_prefix("file:") {
                    if !file_exists(Path::new(path)) {
                        missing.push(rendered);
                    }
                }
            }
            let fired_at = dispatch.induced_fired.get(&(def.name.clone(), param_set_key(&set))).copied();
            let fresh = match (fired_at, newest_publish) {
                (None, _) => true,
                (Some(fired), Some(published)) => published > fired,
                (Some(_), None) => false,
            };
            out.push(InducedSet {
                name: def.name.clone(),
                params: set,
                ready: missing.is_empty() && fresh,
                missing,
                fired_at,
            });
        }
    }
    out
}

/// The job an induced set submits: the set's parameters join the job's.
///
/// # Errors
/// The template error, as text.
pub fn induced_spec(
    def: &InducedDef,
    set: &BTreeMap<String, String>,
    now: Millis,
) -> Result<JobSpec, String> {
    let zone = parse_zone(&def.timezone)?;
    let mut spec = def.job.clone();
    spec.params.extend(set.clone());
    let ctx = TemplateContext { time: zoned(now, zone), params: &spec.params };
    render_spec(&spec, &ctx).map_err(|e| e.to_string())
}

/// The job a schedule submits for `tick`.
///
/// # Errors
/// The template error, as text.
pub fn tick_spec(def: &ScheduleDef, tick: Millis) -> Result<JobSpec, String> {
    let zone = parse_zone(&def.timezone)?;
    let ctx = TemplateContext { time: zoned(tick, zone), params: &def.job.params };
    render_spec(&def.job, &ctx).map_err(|e| e.to_string())
}

/// Schedule fires due now, as commands, given each schedule's parsed cron.
fn due_fires(
    dispatch: &Dispatch,
    now: Millis,
    crons: &mut HashMap<String, (String, String, Option<CronSchedule>)>,
) -> Vec<Command> {
    let mut commands = Vec::new();
    crons.retain(|name, _| dispatch.schedules.contains_key(name));
    for (name, schedule) in &dispatch.schedules {
        if schedule.paused || commands.len() >= MAX_FIRES_PER_ROUND {
            continue;
        }
        let def = &schedule.def;
        let entry = crons.entry(name.clone()).or_insert_with(|| (String::new(), String::new(), None));
        if entry.0 != def.cron || entry.1 != def.timezone {
            *entry =
                (def.cron.clone(), def.timezone.clone(), CronSchedule::parse(&def.cron, &def.timezone).ok());
        }
        let Some(cron) = &entry.2 else { continue };
        let after = schedule.last_tick.unwrap_or(schedule.created_at).max(schedule.created_at);
        for action in cron.plan(def, after, now) {
            let spec = if action.fire {
                match tick_spec(def, action.tick) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        tracing::warn!("schedule {name}: tick skipped, {e}");
                        None
                    }
                }
            } else {
                None
            };
            commands.push(Command::ScheduleFired {
                name: name.clone(),
                tick: action.tick,
                spec,
                skipped: action.skipped,
            });
        }
    }
    commands
}

/// Runs until `shutdown`; fires schedules and induced jobs while this peer
/// leads.
pub async fn run_dispatcher(peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SCHEDULE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut crons = HashMap::new();
    let mut last_induced = Instant::now() - peer.config.induced_poll;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if peer.metrics().state != ServerState::Leader {
            continue;
        }
        let now = now_millis();
        // Clone out of the lock: file checks and cron maths must not block
        // applies.
        let dispatch = peer.state.read().funnel.dispatch().clone();
        let mut commands = due_fires(&dispatch, now, &mut crons);
        if last_induced.elapsed() >= peer.config.induced_poll && !dispatch.induced.is_empty() {
            last_induced = Instant::now();
            let evaluated = {
                let dispatch = dispatch.clone();
                tokio::task::spawn_blocking(move || evaluate_induced(&dispatch, now, &|p: &Path| p.exists()))
                    .await
            };
            for set in evaluated.unwrap_or_default().into_iter().filter(|s| s.ready) {
                let Some(def) = dispatch.induced.get(&set.name) else { continue };
                match induced_spec(def, &set.params, now) {
                    Ok(spec) => commands.push(Command::InducedFired {
                        name: set.name.clone(),
                        set: param_set_key(&set.params),
                        spec,
                    }),
                    Err(e) => tracing::warn!("induced {}: {e}", set.name),
                }
            }
        }
        if commands.is_empty() {
            continue;
        }
        let count = commands.len();
        match peer.write_as_leader(commands).await {
            Ok(result) => tracing::debug!("dispatch: {count} fires -> {:?}", result.outcomes),
            Err(e) => tracing::warn!("dispatch: cannot propose {count} fires: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{CatchUp, DatasetEvent, Overlap};

    fn induced(inputs: &[&str]) -> InducedDef {
        InducedDef {
            name: "join".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            params: vec!["date".into()],
            lookback_days: 0,
            timezone: "UTC".into(),
            job: JobSpec::new("join", vec!["join".into(), "{{date}}".into()]),
        }
    }

    fn event(date: &str, at: Millis) -> DatasetEvent {
        DatasetEvent {
            params: BTreeMap::from([("date".into(), date.into())]),
            first_published_at: at,
            published_at: at,
            count: 1,
        }
    }

    #[test]
    fn induced_set_is_ready_only_with_every_input_and_once_per_publish() {
        let mut d = Dispatch::default();
        d.induced.insert("join".into(), induced(&["dataset:logs/{{date}}", "dataset:users/{{date}}"]));
        d.datasets.insert("logs/2026-12-01".into(), event("2026-12-01", 10));
        let none = |_: &Path| false;
        let sets = evaluate_induced(&d, 1000, &none);
        let set = sets.iter().find(|s| s.params["date"] == "2026-12-01").unwrap();
        assert!(!set.ready);
        assert_eq!(set.missing, vec!["dataset:users/2026-12-01".to_string()]);
        d.datasets.insert("users/2026-12-01".into(), event("2026-12-01", 20));
        let sets = evaluate_induced(&d, 1000, &none);
        assert!(sets.iter().any(|s| s.params["date"] == "2026-12-01" && s.ready));
        // Fired after the newest publish: not ready again until a re-publish.
        d.induced_fired.insert(("join".into(), "date=2026-12-01".into()), 30);
        assert!(!evaluate_induced(&d, 1000, &none).iter().any(|s| s.ready));
        d.datasets.insert("users/2026-12-01".into(), event("2026-12-01", 40));
        assert!(evaluate_induced(&d, 1000, &none).iter().any(|s| s.ready));
    }

    #[test]
    fn marker_files_use_the_date_lookback() {
        let mut d = Dispatch::default();
        let mut def = induced(&["file:/data/{{date}}/_SUCCESS"]);
        def.lookback_days = 2;
        d.induced.insert("join".into(), def.clone());
        let now = 1_764_806_400_000; // 2025-12-04T00:00:00Z
        let exists = |p: &Path| p == Path::new("/data/2025-12-03/_SUCCESS");
        let sets = evaluate_induced(&d, now, &exists);
        assert_eq!(sets.len(), 3);
        let ready: Vec<&str> = sets.iter().filter(|s| s.ready).map(|s| s.params["date"].as_str()).collect();
        assert_eq!(ready, vec!["2025-12-03"]);
        let spec = induced_spec(&def, &sets[1].params, now).unwrap();
        assert_eq!(spec.command, vec!["join".to_string(), "2025-12-03".to_string()]);
        assert_eq!(spec.params["date"], "2025-12-03");
    }

    #[test]
    fn checks_name_the_field() {
        let def = ScheduleDef {
            name: "nightly".into(),
            cron: "0 0 * *".into(),
            timezone: "UTC".into(),
            catch_up: CatchUp::Latest,
            max_catch_up: 1,
            misfire_grace_ms: 0,
            overlap: Overlap::Forbid,
            job: JobSpec::new("n", vec!["x".into()]),
        };
        let field = |e: FunnelError| match e {
            FunnelError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_schedule(&def, 0).unwrap_err()), "schedule[nightly].cron");
        let bad_zone = ScheduleDef { cron: "* * * * *".into(), timezone: "Moon".into(), ..def.clone() };
        assert_eq!(field(check_schedule(&bad_zone, 0).unwrap_err()), "schedule[nightly].timezone");
        let bad_template = ScheduleDef {
            cron: "* * * * *".into(),
            job: JobSpec::new("n", vec!["x".into(), "{{dat}}".into()]),
            ..def.clone()
        };
        assert_eq!(field(check_schedule(&bad_template, 0).unwrap_err()), "schedule[nightly].job.command[1]");
        let bad_input = induced(&["dataset:logs/{{when}}"]);
        assert_eq!(field(check_induced(&bad_input, 0).unwrap_err()), "induced[join].inputs[0]");
        assert!(check_induced(&induced(&["dataset:logs/{{date}}"]), 0).is_ok());
    }
}
