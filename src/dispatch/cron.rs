//! Cron expressions in a time zone, and the catch-up rules that turn "what
//! ticks passed since the last one handled" into what the leader proposes.
//!
//! Parsing and occurrence maths come from `croner` (5 or 6 fields, DST-aware
//! with `chrono-tz`): a wall-clock time skipped by spring-forward fires at
//! the first instant after the gap, one repeated by fall-back fires once.
//! This module only adds the policy: which of the due ticks fire and how
//! many are passed over.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use super::template::parse_zone;
use crate::queue::{CatchUp, Millis, ScheduleDef};

/// Most due ticks counted when working out how many a catch-up passes over;
/// beyond it the count is a lower bound (it only feeds a statistic).
const MAX_COUNTED: usize = 100_000;

/// A parsed cron expression bound to a zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

/// One proposal the catch-up policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickAction {
    pub tick: Millis,
    /// Submit the job (false: only mark the tick handled).
    pub fire: bool,
    /// Ticks passed over before this one.
    pub skipped: u32,
}

fn to_zoned(ms: Millis, zone: Tz) -> Option<DateTime<Tz>> {
    let ms = i64::try_from(ms).ok()?;
    Utc.timestamp_millis_opt(ms).single().map(|t| t.with_timezone(&zone))
}

fn to_millis(t: &DateTime<Tz>) -> Millis {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

impl CronSchedule {
    /// Parses `expr` (5 fields, or 6 with seconds first) in the IANA `zone`.
    ///
    /// # Errors
    /// A message saying what is wrong with the expression or the zone.
    pub fn parse(expr: &str, zone: &str) -> Result<CronSchedule, String> {
        let fields = expr.split_whitespace().count();
        if !(fields == 5 || fields == 6 || expr.trim_start().starts_with('@')) {
            return Err(format!(
                "cron expression {expr:?} has {fields} fields; expected 5 (minute hour day month weekday) \
                 or 6 (with seconds first)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(expr).map_err(|e| format!("cron expression {expr:?}: {e}"))?;
        let zone = parse_zone(zone)?;
        Ok(CronSchedule { cron, zone })
    }

    /// The zone ticks are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// First tick strictly after `after`.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let start = to_zoned(after, self.zone)?;
        self.cron.find_next_occurrence(&start, false).ok().map(|t| to_millis(&t))
    }

    /// Newest tick at or before `at`.
    pub fn latest_at_or_before(&self, at: Millis) -> Option<Millis> {
        let start = to_zoned(at, self.zone)?;
        self.cron.find_previous_occurrence(&start, true).ok().map(|t| to_millis(&t))
    }

    /// Due ticks in `(after, now]`, newest first, at most `limit`.
    fn newest_due(&self, after: Millis, now: Millis, limit: usize) -> Vec<Millis> {
        // croner searches whole seconds, exclusive of the start: start one
        // second late and drop what lies after `now`.
        let Some(start) = to_zoned(now.saturating_add(1000), self.zone) else { return Vec::new() };
        self.cron
            .iter_before(start)
            .map(|t| to_millis(&t))
            .skip_while(|&t| t > now)
            .take_while(|&t| t > after)
            .take(limit)
            .collect()
    }

    /// How many ticks lie in `(after, until)`, counting at most [`MAX_COUNTED`].
    fn count_between(&self, after: Millis, until: Millis) -> u32 {
        let Some(start) = to_zoned(after, self.zone) else { return 0 };
        let n = self
            .cron
            .iter_after(start)
            .map(|t| to_millis(&t))
            .take_while(|&t| t < until)
            .take(MAX_COUNTED)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// What to propose for schedule `def` whose ticks up to `after` are
    /// handled, at leader time `now`. Empty when nothing is due.
    pub fn plan(&self, def: &ScheduleDef, after: Millis, now: Millis) -> Vec<TickAction> {
        match def.catch_up {
            CatchUp::Latest | CatchUp::None => {
                let Some(newest) = self.newest_due(after, now, 1).first().copied() else { return Vec::new() };
                let skipped = self.count_between(after, newest);
                let fire =
                    def.catch_up == CatchUp::Latest || now.saturating_sub(newest) <= def.misfire_grace_ms;
                vec![TickAction { tick: newest, fire, skipped }]
            }
            CatchUp::All => {
                let mut due = self.newest_due(after, now, def.max_catch_up.max(1) as usize);
                due.reverse();
                let Some(&oldest) = due.first() else { return Vec::new() };
                let skipped = self.count_between(after, oldest);
                due.iter()
                    .enumerate()
                    .map(|(i, &tick)| TickAction {
                        tick,
                        fire: true,
                        skipped: if i == 0 { skipped } else { 0 },
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{JobSpec, Overlap};

    fn ms(rfc3339: &str) -> Millis {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis() as Millis
    }

    fn def(cron: &str, zone: &str, catch_up: CatchUp, max: u32) -> ScheduleDef {
        ScheduleDef {
            name: "s".into(),
            cron: cron.into(),
            timezone: zone.into(),
            catch_up,
            max_catch_up: max,
            misfire_grace_ms: 5_000,
            overlap: Overlap::Allow,
            job: JobSpec::new("s", vec!["true".into()]),
        }
    }

    #[test]
    fn five_and_six_fields() {
        let five = CronSchedule::parse("30 2 * * *", "UTC").unwrap();
        assert_eq!(five.next_after(ms("2026-12-04T00:00:00Z")), Some(ms("2026-12-04T02:30:00Z")));
        let six = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(six.next_after(ms("2026-12-04T00:00:01Z")), Some(ms("2026-12-04T00:00:10Z")));
        assert_eq!(six.latest_at_or_before(ms("2026-12-04T00:00:19.5Z")), Some(ms("2026-12-04T00:00:10Z")));
        let e = CronSchedule::parse("* * *", "UTC").unwrap_err();
        assert!(e.contains("has 3 fields"), "{e}");
        assert!(CronSchedule::parse("61 * * * *", "UTC").is_err());
        assert!(CronSchedule::parse("* * * * *", "Nowhere/City").unwrap_err().contains("time zone"));
    }

    #[test]
    fn daily_time_in_a_zone_follows_dst() {
        let daily = CronSchedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // Winter: 09:00 CET = 08:00 UTC; summer: 09:00 CEST = 07:00 UTC.
        assert_eq!(daily.next_after(ms("2026-03-28T12:00:00Z")), Some(ms("2026-03-29T07:00:00Z")));
        assert_eq!(daily.next_after(ms("2026-03-27T12:00:00Z")), Some(ms("2026-03-28T08:00:00Z")));
    }

    #[test]
    fn spring_forward_gap_fires_once_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00).
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let tick = s.next_after(ms("2026-03-28T23:00:00Z")).unwrap();
        assert_eq!(tick, ms("2026-03-29T03:00:00+02:00"));
        let next = s.next_after(tick).unwrap();
        assert_eq!(next, ms("2026-03-30T02:30:00+02:00"));
    }

    #[test]
    fn fall_back_repeated_hour_fires_once() {
        // 02:30 happens twice in Berlin on 2026-10-25.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let first = s.next_after(ms("2026-10-24T23:00:00Z")).unwrap();
        assert_eq!(first, ms("2026-10-25T02:30:00+02:00"));
        let next = s.next_after(first).unwrap();
        assert_eq!(next, ms("2026-10-26T02:30:00+01:00"));
    }

    #[test]
    fn catch_up_policies() {
        let every_minute = "0 * * * * *";
        let s = CronSchedule::parse(every_minute, "UTC").unwrap();
        let after = ms("2026-12-04T10:00:00Z");
        let now = ms("2026-12-04T10:10:30Z");
        // latest: fire 10:10, pass over 10:01..10:09.
        let plan = s.plan(&def(every_minute, "UTC", CatchUp::Latest, 0), after, now);
        assert_eq!(plan, vec![TickAction { tick: ms("2026-12-04T10:10:00Z"), fire: true, skipped: 9 }]);
        // none: 10:10 is 30 s late, beyond the 5 s grace: mark handled only.
        let plan = s.plan(&def(every_minute, "UTC", CatchUp::None, 0), after, now);
        assert_eq!(plan, vec![TickAction { tick: ms("2026-12-04T10:10:00Z"), fire: false, skipped: 9 }]);
        let plan = s.plan(&def(every_minute, "UTC", CatchUp::None, 0), after, ms("2026-12-04T10:10:02Z"));
        assert!(plan[0].fire);
        // all, bounded to 4: 10:07..10:10 fire, 6 passed over.
        let plan = s.plan(&def(every_minute, "UTC", CatchUp::All, 4), after, now);
        let ticks: Vec<Millis> = plan.iter().map(|a| a.tick).collect();
        assert_eq!(
            ticks,
            ["10:07", "10:08", "10:09", "10:10"].map(|t| ms(&format!("2026-12-04T{t}:00Z"))).to_vec()
        );
        assert_eq!(plan[0].skipped, 6);
        assert!(plan.iter().all(|a| a.fire) && plan[1..].iter().all(|a| a.skipped == 0));
        // Nothing due: nothing to do; a tick exactly at `now` is due.
        assert!(s.plan(&def(every_minute, "UTC", CatchUp::All, 4), now, now).is_empty());
        let at = ms("2026-12-04T10:11:00Z");
        assert_eq!(s.plan(&def(every_minute, "UTC", CatchUp::None, 0), now, at)[0].tick, at);
    }
}
