//! Cron expressions and `{{...}}` templates driven directly (the schedule
//! file target mostly spends its effort on TOML): any expression in any
//! zone at any time, catch-up plans over any window, and any template
//! rendered against any parameters at any instant. Must never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sgnode::dispatch::cron::CronSchedule;
use sgnode::dispatch::template::{parse_zone, render_spec, render_str, TemplateContext};
use sgnode::dispatch::zoned;
use sgnode::queue::{CatchUp, JobSpec, Overlap, ScheduleDef};

/// Zones with DST gaps and overlaps, half-hour offsets and far-east dates:
/// random strings would almost never name one.
const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Kiritimati",
];

/// Longest catch-up window planned: ~50 days, long enough for monthly and
/// DST cases, short enough that a per-second cron stays fast.
const WINDOW: u64 = 50 * 86_400_000;
/// Most ticks a catch-up-all plan may fire, for the same reason.
const MAX_CATCH_UP: u64 = 1000;

/// The input, as text so that seeds are readable and hand-made:
///
/// ```text
/// 30 2 * * *                      <- cron expression
/// Europe/Berlin                   <- zone (or an index into ZONES)
/// AFTER SPAN CATCH_UP MAX GRACE TIME   <- numbers, missing ones are 0
/// param date=2024-03-31           <- parameters
/// report-{{date-1d}}              <- templates, one per line
/// ```
struct Input<'a> {
    expr: &'a str,
    zone: &'a str,
    numbers: [u64; 6],
    params: BTreeMap<String, String>,
    templates: Vec<&'a str>,
}

impl<'a> Input<'a> {
    fn parse(text: &'a str) -> Input<'a> {
        let mut lines = text.split('\n');
        let expr = lines.next().unwrap_or_default();
        let zone = lines.next().unwrap_or_default();
        let zone = zone.parse::<usize>().ok().and_then(|i| ZONES.get(i).copied()).unwrap_or(zone);
        let mut numbers = [0u64; 6];
        let words = lines.next().unwrap_or_default().split_whitespace();
        for (slot, word) in numbers.iter_mut().zip(words) {
            *slot = word.parse().unwrap_or(0);
        }
        let mut params = BTreeMap::new();
        let mut templates = Vec::new();
        for line in lines {
            match line.strip_prefix("param ").and_then(|p| p.split_once('=')) {
                Some((k, v)) => drop(params.insert(k.to_string(), v.to_string())),
                None => templates.push(line),
            }
        }
        Input { expr, zone, numbers, params, templates }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let input = Input::parse(text);
    let [after, span, catch_up, max_catch_up, grace, time_ms] = input.numbers;
    let zone = input.zone;
    let params = &input.params;

    if let Ok(cron) = CronSchedule::parse(input.expr, zone) {
        if let Some(next) = cron.next_after(after) {
            assert!(next > after, "next_after({}) = {next}", after);
        }
        let _ = cron.latest_at_or_before(after);
        let catch_up = match catch_up % 3 {
            0 => CatchUp::None,
            1 => CatchUp::Latest,
            _ => CatchUp::All,
        };
        let def = ScheduleDef {
            name: "fuzz".to_string(),
            cron: input.expr.to_string(),
            timezone: zone.to_string(),
            catch_up,
            max_catch_up: (max_catch_up % (MAX_CATCH_UP + 1)) as u32,
            misfire_grace_ms: grace,
            overlap: Overlap::Forbid,
            job: JobSpec::new("fuzz", vec!["true".to_string()]),
        };
        let now = after.saturating_add(span % WINDOW);
        let plan = cron.plan(&def, after, now);
        for pair in plan.windows(2) {
            assert!(pair[0].tick < pair[1].tick, "plan not in tick order: {plan:?}");
        }
        for action in &plan {
            assert!(action.tick > after && action.tick <= now, "tick outside the window: {action:?}");
        }
    }

    if let Ok(tz) = parse_zone(zone) {
        let ctx = TemplateContext { time: zoned(time_ms, tz), params };
        for text in &input.templates {
            let _ = render_str(text, &ctx);
        }
        let mut words = input.templates.iter().map(|t| t.to_string());
        if let Some(name) = words.next() {
            let mut spec = JobSpec::new(name, words.collect());
            spec.params = params.clone();
            let _ = render_spec(&spec, &ctx);
        }
    }
});
