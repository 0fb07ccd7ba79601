//! `{{...}}` templates in job names, commands, params and dedup keys.
//!
//! A template names a built-in time variable (rendered from the scheduled
//! time in the schedule's zone) or a job parameter, optionally shifted:
//! `{{date}}`, `{{date-1d}}`, `{{datetime+6h}}`, `{{region}}`. Parameters win
//! over built-ins, so a backfill or an induced set that carries `date` sees
//! its own date. Day and week shifts are calendar shifts in the zone (a DST
//! day is still one day); hour, minute and second shifts are exact.
//!
//! Rendering happens before a job reaches the funnel, once, so a template
//! error is a submit-time error naming the field, never a job failure.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;

use crate::queue::JobSpec;

/// Built-in variables, for error messages and docs.
pub const BUILTINS: [&str; 7] =
    ["date", "datetime", "scheduled_time", "hour", "minute", "second", "timestamp"];

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid template in `{field}`: {message}")]
pub struct TemplateError {
    /// Which field of the job (e.g. `command[2]`, `params.day`).
    pub field: String,
    pub message: String,
}

/// What a template is rendered against.
#[derive(Debug, Clone)]
pub struct TemplateContext<'a> {
    /// The scheduled time (tick, backfill date, or now for a manual submit).
    pub time: DateTime<Tz>,
    /// Job parameters; they shadow built-ins of the same name.
    pub params: &'a BTreeMap<String, String>,
}

/// A parsed shift such as `-1d`.
#[derive(Debug, Clone, Copy)]
struct Shift {
    amount: i64,
    unit: char,
}

/// Largest shift amount, in its unit: 100,000 weeks stay far inside both
/// chrono's range and `i64` arithmetic.
const MAX_SHIFT: i64 = 100_000;

fn parse_shift(text: &str) -> Result<Shift, String> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(format!("shift {text:?} must start with + or -")),
    };
    let rest = rest.trim();
    let unit = rest.chars().last().ok_or_else(|| format!("shift {text:?} lacks a number and unit"))?;
    if !matches!(unit, 's' | 'm' | 'h' | 'd' | 'w') {
        return Err(format!("shift {text:?}: unit must be one of s, m, h, d, w"));
    }
    let digits = rest[..rest.len() - 1].trim();
    // Digits only, bounded: a second sign (`+-9223372036854775808w`) would
    // otherwise reach the sign flip and the unit scaling below, which
    // overflow (and `TimeDelta::seconds` panics out of its range).
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("shift {text:?}: {digits:?} is not a number"));
    }
    match digits.parse::<i64>() {
        Ok(amount) if amount <= MAX_SHIFT => Ok(Shift { amount: sign * amount, unit }),
        _ => Err(format!("shift {text:?} is too large (at most {MAX_SHIFT})")),
    }
}

fn shift_time(time: DateTime<Tz>, shift: Shift) -> Result<DateTime<Tz>, String> {
    let out = match shift.unit {
        'd' | 'w' => {
            let days = if shift.unit == 'w' { shift.amount * 7 } else { shift.amount };
            let naive = time.naive_local();
            let moved = if days >= 0 {
                naive.checked_add_days(Days::new(days.unsigned_abs()))
            } else {
                naive.checked_sub_days(Days::new(days.unsigned_abs()))
            };
            // Same wall-clock time on the other day; a time in a DST gap
            // moves to the first instant after it.
            moved.and_then(|n| {
                time.timezone()
                    .from_local_datetime(&n)
                    .earliest()
                    .or_else(|| time.timezone().from_local_datetime(&(n + TimeDelta::hours(1))).earliest())
            })
        }
        unit => {
            let seconds = match unit {
                's' => shift.amount,
                'm' => shift.amount * 60,
                _ => shift.amount * 3600,
            };
            time.checked_add_signed(TimeDelta::seconds(seconds))
        }
    };
    out.ok_or_else(|| "the shifted time is out of range".to_string())
}

fn builtin(name: &str, time: DateTime<Tz>) -> Option<String> {
    let text = match name {
        "date" => time.format("%Y-%m-%d").to_string(),
        "datetime" | "second" => time.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "scheduled_time" => time.to_rfc3339(),
        "hour" => time.format("%Y-%m-%dT%H").to_string(),
        "minute" => time.format("%Y-%m-%dT%H:%M").to_string(),
        "timestamp" => time.timestamp().to_string(),
        _ => return None,
    };
    Some(text)
}

/// Shifts a parameter value that is a date or a date-time.
fn shift_param(name: &str, value: &str, shift: Shift) -> Result<String, String> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if !matches!(shift.unit, 'd' | 'w') {
            return Err(format!("parameter `{name}` is a date; shift it by days or weeks"));
        }
        let days = if shift.unit == 'w' { shift.amount * 7 } else { shift.amount };
        let moved = if days >= 0 {
            date.checked_add_days(Days::new(days.unsigned_abs()))
        } else {
            date.checked_sub_days(Days::new(days.unsigned_abs()))
        };
        return moved
            .map(|d| d.format("%Y-%m-%d").to_string())
            .ok_or_else(|| "date out of range".to_string());
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S") {
        let utc = chrono_tz::UTC.from_utc_datetime(&at);
        return Ok(shift_time(utc, shift)?.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string());
    }
    Err(format!(
        "parameter `{name}` = {value:?} is not a date (YYYY-MM-DD) or date-time, so it cannot be shifted"
    ))
}

fn render_variable(expr: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
    let expr = expr.trim();
    let split = expr.find(['+', '-']).filter(|&i| i > 0);
    let (name, shift) = match split {
        Some(i) => (expr[..i].trim(), Some(parse_shift(expr[i..].trim())?)),
        None => (expr, None),
    };
    if name.is_empty() {
        return Err("empty `{{}}`".to_string());
    }
    if let Some(value) = ctx.params.get(name) {
        return match shift {
            None => Ok(value.clone()),
            Some(shift) => shift_param(name, value, shift),
        };
    }
    let time = match shift {
        None => ctx.time,
        Some(shift) => shift_time(ctx.time, shift)?,
    };
    builtin(name, time).ok_or_else(|| {
        let params: Vec<&str> = ctx.params.keys().map(String::as_str).collect();
        format!(
            "unknown variable `{name}`; built-ins are {}{}",
            BUILTINS.join(", "),
            if params.is_empty() { String::new() } else { format!("; params are {}", params.join(", ")) }
        )
    })
}

/// Renders one string.
///
/// # Errors
/// A message for an unclosed `{{`, an unknown variable or a bad shift.
pub fn render_str(text: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| format!("unclosed `{{{{` in {text:?}"))?;
        out.push_str(&render_variable(&after[..close], ctx)?);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a string holds any template.
pub fn has_template(text: &str) -> bool {
    text.contains("{{")
}

/// Renders every templated field of a job: name, command, runner args,
/// params (against the unrendered params, so params may not refer to each
/// other's rendered values) and dedup key.
///
/// # Errors
/// [`TemplateError`] naming the first field that failed.
pub fn render_spec(spec: &JobSpec, ctx: &TemplateContext<'_>) -> Result<JobSpec, TemplateError> {
    let fail = |field: String| move |message: String| TemplateError { field, message };
    let mut out = spec.clone();
    out.name = render_str(&spec.name, ctx).map_err(fail("name".into()))?;
    for (i, word) in spec.command.iter().enumerate() {
        out.command[i] = render_str(word, ctx).map_err(fail(format!("command[{i}]")))?;
    }
    for (i, word) in spec.args.iter().enumerate() {
        out.args[i] = render_str(word, ctx).map_err(fail(format!("args[{i}]")))?;
    }
    for (key, value) in &spec.params {
        let rendered = render_str(value, ctx).map_err(fail(format!("params.{key}")))?;
        out.params.insert(key.clone(), rendered);
    }
    if let Some(key) = &spec.dedup_key {
        out.dedup_key = Some(render_str(key, ctx).map_err(fail("dedup_key".into()))?);
    }
    Ok(out)
}

/// Parses an IANA zone name with an error that says what was expected.
///
/// # Errors
/// A message naming the zone.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}; expected an IANA name such as UTC or Europe/Berlin")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_at<'a>(zone: &str, rfc3339: &str, params: &'a BTreeMap<String, String>) -> TemplateContext<'a> {
        let tz = parse_zone(zone).unwrap();
        let time = DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&tz);
        TemplateContext { time, params }
    }

    #[test]
    fn builtins_render_in_the_zone() {
        let none = BTreeMap::new();
        // 23:30 UTC is already the next day in Berlin.
        let ctx = ctx_at("Europe/Berlin", "2026-12-03T23:30:00Z", &none);
        assert_eq!(render_str("{{date}}", &ctx).unwrap(), "2026-12-04");
        assert_eq!(render_str("x/{{ date - 1d }}/y", &ctx).unwrap(), "x/2026-12-03/y");
        assert_eq!(render_str("{{datetime}}", &ctx).unwrap(), "2026-12-04T00:30:00");
        assert_eq!(render_str("{{minute}}", &ctx).unwrap(), "2026-12-04T00:30");
        assert_eq!(render_str("{{hour+2h}}", &ctx).unwrap(), "2026-12-04T02");
        assert_eq!(render_str("{{scheduled_time}}", &ctx).unwrap(), "2026-12-04T00:30:00+01:00");
        assert_eq!(render_str("{{date+1w}}", &ctx).unwrap(), "2026-12-11");
        assert_eq!(render_str("plain", &ctx).unwrap(), "plain");
    }

    #[test]
    fn day_shift_across_dst_keeps_wall_clock_time() {
        let none = BTreeMap::new();
        // 2026-03-29 is the spring-forward day in Berlin (23 hours long).
        let ctx = ctx_at("Europe/Berlin", "2026-03-30T00:30:00+02:00", &none);
        assert_eq!(render_str("{{datetime-1d}}", &ctx).unwrap(), "2026-03-29T00:30:00");
        assert_eq!(render_str("{{datetime-24h}}", &ctx).unwrap(), "2026-03-28T23:30:00");
    }

    #[test]
    fn params_shadow_builtins_and_shift_as_dates() {
        let params = BTreeMap::from([("date".to_string(), "2026-01-01".to_string())]);
        let ctx = ctx_at("UTC", "2026-12-04T10:00:00Z", &params);
        assert_eq!(render_str("{{date}}", &ctx).unwrap(), "2026-01-01");
        assert_eq!(render_str("{{date-1d}}", &ctx).unwrap(), "2025-12-31");
        assert!(render_str("{{date-1h}}", &ctx).unwrap_err().contains("days or weeks"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let params = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let ctx = ctx_at("UTC", "2026-12-04T10:00:00Z", &params);
        let e = render_str("{{dat}}", &ctx).unwrap_err();
        assert!(e.contains("unknown variable `dat`") && e.contains("region"), "{e}");
        assert!(render_str("{{date", &ctx).unwrap_err().contains("unclosed"));
        assert!(render_str("{{date-1y}}", &ctx).unwrap_err().contains("unit"));
        assert!(render_str("{{region-1d}}", &ctx).unwrap_err().contains("not a date"));
        let spec = JobSpec::new("n", vec!["echo".into(), "{{nope}}".into()]);
        let e = render_spec(&spec, &ctx).unwrap_err();
        assert_eq!(e.field, "command[1]");
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    /// Found by `fuzz/cron_template`: a signed amount after the shift's
    /// own sign overflowed the sign flip or the unit scaling (a panic in
    /// debug builds, a wrong time or a `TimeDelta` panic in release).
    #[test]
    fn signed_or_huge_shift_amounts_are_errors_not_overflows() {
        let params = BTreeMap::from([("day".to_string(), "2026-01-01".to_string())]);
        let ctx = ctx_at("UTC", "2026-12-04T10:00:00Z", &params);
        for text in [
            "{{date+-9223372036854775808w}}",
            "{{date--9223372036854775808d}}",
            "{{date+-9000000000000000h}}",
            "{{date+-9000000000000000000s}}",
            "{{day--9223372036854775808w}}",
            "{{date-+1d}}",
            "{{date+99999999999999999999d}}",
        ] {
            assert!(render_str(text, &ctx).is_err(), "{text} should be refused");
        }
        assert!(render_str("{{date-100001d}}", &ctx).unwrap_err().contains("too large"));
        assert_eq!(render_str("{{ day - 100000d }}", &ctx).unwrap(), "1752-03-18");
        assert_eq!(render_str("{{date+ 2 d}}", &ctx).unwrap(), "2026-12-06");
    }
}
