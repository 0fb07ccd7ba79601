//! The replicated half of dispatch: schedule definitions and their firing
//! record, induced-job definitions, dataset events and which parameter sets
//! were induced.
//!
//! Like the rest of the funnel this is pure: the leader decides *when* a
//! tick is due or an input set is complete (that needs a clock, cron maths
//! and the file system, see `crate::dispatch`) and proposes `ScheduleFired`
//! or `InducedFired` with the rendered job. Applying those is what makes a
//! fire exactly-once: a tick at or before the schedule's `last_tick` is
//! refused as stale, so two leaders proposing the same tick (one deposed
//! mid-flight) produce one job, and the job's dedup key `NAME@TICK` covers
//! even a definition that was deleted and re-created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::{check_text, invalid, JobId, JobSpec, Millis, MAX_NAME_LEN};
use super::{FunnelError, Outcome};

/// What a new leader does about ticks nobody fired (no leader, or a pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip ticks older than the schedule's `misfire_grace`.
    None,
    /// Fire only the newest missed tick.
    #[default]
    Latest,
    /// Fire every missed tick, oldest first, at most `max_catch_up` of them.
    All,
}

/// What a tick does while the schedule's previous job has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Run side by side.
    Allow,
    /// Skip this tick.
    #[default]
    Forbid,
    /// Cancel the previous job and run this one.
    Replace,
}

/// A schedule as submitted: a cron expression in a time zone and the job it
/// fires. Strings in `job` may hold `{{...}}` templates rendered per tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDef {
    pub name: String,
    /// 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in (DST-aware).
    pub timezone: String,
    pub catch_up: CatchUp,
    /// Bound on ticks fired by one catch-up under [`CatchUp::All`].
    pub max_catch_up: u32,
    /// Under [`CatchUp::None`], how late a tick may still fire.
    pub misfire_grace_ms: u64,
    pub overlap: Overlap,
    pub job: JobSpec,
}

/// A schedule and its firing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub def: ScheduleDef,
    pub paused: bool,
    /// Ticks strictly after this are due (creation time at first).
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Newest tick handled (fired or skipped); never goes back.
    pub last_tick: Option<Millis>,
    /// The job of the newest fire, for the overlap policy.
    pub last_job: Option<JobId>,
    pub fired: u64,
    /// Ticks passed over: by the catch-up policy or by `overlap = forbid`.
    pub skipped: u64,
}

/// A job submitted once per parameter set when all its inputs exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InducedDef {
    pub name: String,
    /// `dataset:NAME` (a published dataset) or `file:PATH` (a marker file the
    /// leader polls); both templates over the parameter set.
    pub inputs: Vec<String>,
    /// Parameter names that make up one set, e.g. `["date"]`.
    pub params: Vec<String>,
    /// For sets keyed by `date` only: also consider the last this-many days
    /// (needed when inputs are marker files only, nobody publishes).
    pub lookback_days: u32,
    /// Time zone of "today" for `lookback_days`.
    pub timezone: String,
    pub job: JobSpec,
}

/// One published dataset instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetEvent {
    /// Parameters the publisher said the instance belongs to.
    pub params: BTreeMap<String, String>,
    pub first_published_at: Millis,
    pub published_at: Millis,
    pub count: u64,
}

/// Most schedules and induced definitions a cluster keeps.
pub const MAX_SCHEDULES: usize = 10_000;
/// Most inputs of one induced job.
pub const MAX_INPUTS: usize = 64;
/// Longest input or dataset name.
pub const MAX_INPUT_LEN: usize = 1024;

/// The dispatch part of the funnel state (persisted as one record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub schedules: BTreeMap<String, Schedule>,
    pub induced: BTreeMap<String, InducedDef>,
    /// Dataset instance name -> newest event.
    pub datasets: BTreeMap<String, DatasetEvent>,
    /// (induced name, canonical parameter set) -> when it was last fired.
    pub induced_fired: BTreeMap<(String, String), Millis>,
}

/// The key of a parameter set: `k=v,k=v` in name order.
pub fn param_set_key(params: &BTreeMap<String, String>) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

impl ScheduleDef {
    /// Structural checks the funnel can make without cron or zone data (the
    /// API layer parses those before proposing).
    ///
    /// # Errors
    /// [`FunnelError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), FunnelError> {
        check_text("schedule.name", &self.name, MAX_NAME_LEN)?;
        if self.name.contains('@') {
            return Err(invalid(
                "schedule.name",
                "must not contain `@` (it separates name and tick in keys)",
            ));
        }
        check_text("schedule.cron", &self.cron, 256)?;
        check_text("schedule.timezone", &self.timezone, 64)?;
        if self.catch_up == CatchUp::All && self.max_catch_up == 0 {
            return Err(invalid("schedule.max_catch_up", "must be at least 1 with catch_up = \"all\""));
        }
        if self.job.dedup_key.is_some() {
            return Err(invalid("schedule.job.dedup_key", "is set per tick (`NAME@TICK`); leave it out"));
        }
        Ok(())
    }
}

impl InducedDef {
    /// Structural checks, as for [`ScheduleDef::validate`].
    ///
    /// # Errors
    /// [`FunnelError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), FunnelError> {
        check_text("induced.name", &self.name, MAX_NAME_LEN)?;
        if self.name.contains('@') {
            return Err(invalid("induced.name", "must not contain `@`"));
        }
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return Err(invalid("induced.inputs", format!("must list 1 to {MAX_INPUTS} inputs")));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            check_text(&format!("induced.inputs[{i}]"), input, MAX_INPUT_LEN)?;
            if !(input.starts_with("dataset:") || input.starts_with("file:")) {
                return Err(invalid(
                    &format!("induced.inputs[{i}]"),
                    format!("{input:?} must start with `dataset:` or `file:`"),
                ));
            }
        }
        if self.params.is_empty() {
            return Err(invalid("induced.params", "must name at least one parameter (e.g. [\"date\"])"));
        }
        if self.job.dedup_key.is_some() {
            return Err(invalid("induced.job.dedup_key", "is set per parameter set; leave it out"));
        }
        check_text("induced.timezone", &self.timezone, 64)
    }
}

/// A fire's dedup key: the schedule and the tick in UTC, to the millisecond
/// only when the tick has one.
pub fn tick_key(name: &str, tick: Millis) -> String {
    format!("{name}@{}", format_utc(tick))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time in ms (pure integer civil-date maths so
/// the funnel needs no time library).
pub fn format_utc(ms: Millis) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = ms % 1000;
    let base =
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60);
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:03}Z")
    }
}

impl super::Funnel {
    /// The dispatch state.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    pub(super) fn schedule_upsert(&mut self, now: Millis, def: &ScheduleDef) -> Outcome {
        if let Err(e) = def.validate() {
            return Outcome::Refused(e);
        }
        match self.dispatch.schedules.get_mut(&def.name) {
            Some(existing) if existing.def == *def => Outcome::Defined { created: false, changed: false },
            Some(existing) => {
                // Ticks already handled stay handled: a changed definition
                // never re-fires the past.
                existing.def = def.clone();
                existing.updated_at = now;
                self.dispatch_dirty = true;
                Outcome::Defined { created: false, changed: true }
            }
            None => {
                if self.dispatch.schedules.len() >= MAX_SCHEDULES {
                    return Outcome::Refused(invalid(
                        "schedule",
                        format!("at most {MAX_SCHEDULES} schedules"),
                    ));
                }
                let schedule = Schedule {
                    def: def.clone(),
                    paused: false,
                    created_at: now,
                    updated_at: now,
                    last_tick: None,
                    last_job: None,
                    fired: 0,
                    skipped: 0,
                };
                self.dispatch.schedules.insert(def.name.clone(), schedule);
                self.dispatch_dirty = true;
                Outcome::Defined { created: true, changed: true }
            }
        }
    }

    pub(super) fn schedule_delete(&mut self, name: &str) -> Outcome {
        let removed =
            self.dispatch.schedules.remove(name).is_some() || self.dispatch.induced.remove(name).is_some();
        if !removed {
            return Outcome::Refused(FunnelError::NoSuchDefinition { name: name.to_string() });
        }
        self.dispatch.induced_fired.retain(|(n, _), _| n != name);
        self.dispatch_dirty = true;
        Outcome::Deleted
    }

    pub(super) fn schedule_pause(&mut self, now: Millis, name: &str, paused: bool) -> Outcome {
        let Some(schedule) = self.dispatch.schedules.get_mut(name) else {
            return Outcome::Refused(FunnelError::NoSuchDefinition { name: name.to_string() });
        };
        if schedule.paused != paused {
            schedule.paused = paused;
            schedule.updated_at = now;
            if !paused {
                // Resuming does not replay what was missed while paused.
                schedule.last_tick = Some(schedule.last_tick.unwrap_or(0).max(now));
            }
            self.dispatch_dirty = true;
        }
        Outcome::Paused { paused }
    }

    /// A tick the leader found due; `spec` is `None` when the tick is only
    /// passed over (catch-up policy), `skipped` counts ticks passed over
    /// before it.
    pub(super) fn schedule_fired(
        &mut self,
        now: Millis,
        name: &str,
        tick: Millis,
        spec: Option<&JobSpec>,
        skipped: u32,
    ) -> Outcome {
        let Some(schedule) = self.dispatch.schedules.get(name) else {
            return Outcome::Refused(FunnelError::NoSuchDefinition { name: name.to_string() });
        };
        if schedule.paused {
            return Outcome::Refused(FunnelError::StaleTick {
                name: name.to_string(),
                tick: format_utc(tick),
            });
        }
        if schedule.last_tick.is_some_and(|last| tick <= last) || tick <= schedule.created_at {
            return Outcome::Refused(FunnelError::StaleTick {
                name: name.to_string(),
                tick: format_utc(tick),
            });
        }
        let previous =
            schedule.last_job.and_then(|id| self.jobs.get(&id)).filter(|job| !job.state.is_terminal());
        let overlap = schedule.def.overlap;
        let mut outcome = Outcome::Fired { job: None, duplicate: false };
        let mut passed_over = u64::from(skipped);
        let mut last_job = schedule.last_job;
        match (spec, previous) {
            (None, _) => passed_over += 1,
            (Some(_), Some(_)) if overlap == Overlap::Forbid => passed_over += 1,
            (Some(spec), previous) => {
                if let (Overlap::Replace, Some(previous)) = (overlap, previous) {
                    let id = previous.id;
                    self.cancel(now, id);
                }
                let mut spec = spec.clone();
                spec.dedup_key = Some(tick_key(name, tick));
                outcome = match self.submit(now, None, &spec) {
                    Outcome::Submitted { id, duplicate, .. } => {
                        last_job = Some(id);
                        Outcome::Fired { job: Some(id), duplicate }
                    }
                    // Full queue or bad template: the tick is consumed (a
                    // retry could fire it twice after a leader change) and
                    // the refusal is the answer.
                    other => other,
                };
            }
        }
        if let Some(schedule) = self.dispatch.schedules.get_mut(name) {
            schedule.last_tick = Some(tick);
            schedule.last_job = last_job;
            schedule.skipped += passed_over;
            if matches!(outcome, Outcome::Fired { job: Some(_), .. }) {
                schedule.fired += 1;
            }
        }
        self.dispatch_dirty = true;
        outcome
    }

    pub(super) fn induced_upsert(&mut self, def: &InducedDef) -> Outcome {
        if let Err(e) = def.validate() {
            return Outcome::Refused(e);
        }
        match self.dispatch.induced.get(&def.name) {
            Some(existing) if existing == def => Outcome::Defined { created: false, changed: false },
            existing => {
                if existing.is_none() && self.dispatch.induced.len() >= MAX_SCHEDULES {
                    return Outcome::Refused(invalid(
                        "induced",
                        format!("at most {MAX_SCHEDULES} definitions"),
                    ));
                }
                let created = existing.is_none();
                self.dispatch.induced.insert(def.name.clone(), def.clone());
                self.dispatch_dirty = true;
                Outcome::Defined { created, changed: true }
            }
        }
    }

    pub(super) fn dataset_published(
        &mut self,
        now: Millis,
        dataset: &str,
        params: &BTreeMap<String, String>,
    ) -> Outcome {
        if let Err(e) = check_text("dataset", dataset, MAX_INPUT_LEN) {
            return Outcome::Refused(e);
        }
        if params.len() > super::job::MAX_PARAMS {
            return Outcome::Refused(invalid("params", "too many parameters"));
        }
        let event = self.dispatch.datasets.entry(dataset.to_string()).or_insert_with(|| DatasetEvent {
            params: params.clone(),
            first_published_at: now,
            published_at: now,
            count: 0,
        });
        event.params = params.clone();
        event.published_at = now;
        event.count += 1;
        let first = event.count == 1;
        self.dispatch_dirty = true;
        Outcome::Published { first }
    }

    /// The leader found every input of `set` present. The submit's dedup key
    /// (`NAME@SET`) keeps a re-published input inside the dedup window from
    /// running the job again.
    pub(super) fn induced_fired(&mut self, now: Millis, name: &str, set: &str, spec: &JobSpec) -> Outcome {
        if !self.dispatch.induced.contains_key(name) {
            return Outcome::Refused(FunnelError::NoSuchDefinition { name: name.to_string() });
        }
        let mut spec = spec.clone();
        spec.dedup_key = Some(format!("{name}@{set}"));
        let outcome = match self.submit(now, None, &spec) {
            Outcome::Submitted { id, duplicate, .. } => Outcome::Fired { job: Some(id), duplicate },
            other => other,
        };
        self.dispatch.induced_fired.insert((name.to_string(), set.to_string()), now);
        self.dispatch_dirty = true;
        outcome
    }

    /// Drops dataset events and induced-fire records past retention; returns
    /// how many went (at most `limit`).
    pub(super) fn gc_dispatch(&mut self, now: Millis, limit: u64) -> u64 {
        let retention = self.meta.settings.history_retention_ms;
        let expired = |t: Millis| now >= t.saturating_add(retention);
        let old_events: Vec<String> = self
            .dispatch
            .datasets
            .iter()
            .filter(|(_, e)| expired(e.published_at))
            .map(|(k, _)| k.clone())
            .take(limit as usize)
            .collect();
        let old_fires: Vec<(String, String)> = self
            .dispatch
            .induced_fired
            .iter()
            .filter(|(_, &t)| expired(t))
            .map(|(k, _)| k.clone())
            .take((limit as usize).saturating_sub(old_events.len()))
            .collect();
        let removed = (old_events.len() + old_fires.len()) as u64;
        for key in old_events {
            self.dispatch.datasets.remove(&key);
        }
        for key in old_fires {
            self.dispatch.induced_fired.remove(&key);
        }
        if removed > 0 {
            self.dispatch_dirty = true;
        }
        removed
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
