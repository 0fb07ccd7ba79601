//! A schedule file as `sgnode schedule apply` reads it, then everything the
//! cluster does with what parses: the full pre-proposal checks, cron
//! occurrence maths and catch-up planning, and rendering the job of each
//! planned tick or induced set. Must never panic or hang.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sgnode::dispatch::file::ScheduleFile;
use sgnode::dispatch::{check_induced, check_schedule, induced_spec, tick_spec};

/// 2023-11-14T22:13:20Z: a fixed "now" keeps runs reproducible.
const NOW: u64 = 1_700_000_000_000;
/// Plan over the last three days, as a leader back from an outage would.
const LOOKBACK: u64 = 3 * 86_400_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = ScheduleFile::parse(text) else { return };
    for def in &file.schedules {
        let Ok(cron) = check_schedule(def, NOW) else { continue };
        if let Some(next) = cron.next_after(NOW) {
            assert!(next > NOW, "next_after({NOW}) = {next}");
        }
        if let Some(latest) = cron.latest_at_or_before(NOW) {
            assert!(latest <= NOW, "latest_at_or_before({NOW}) = {latest}");
        }
        let after = NOW - LOOKBACK;
        let plan = cron.plan(def, after, NOW);
        for pair in plan.windows(2) {
            assert!(pair[0].tick < pair[1].tick, "plan not in tick order: {plan:?}");
        }
        for action in plan.iter().take(8) {
            assert!(action.tick > after && action.tick <= NOW, "tick outside ({after}, {NOW}]: {action:?}");
            let _ = tick_spec(def, action.tick);
        }
    }
    for def in &file.induced {
        if check_induced(def, NOW).is_ok() {
            let set: BTreeMap<String, String> =
                def.params.iter().map(|p| (p.clone(), "2023-11-14".to_string())).collect();
            let _ = induced_spec(def, &set, NOW);
        }
    }
});
