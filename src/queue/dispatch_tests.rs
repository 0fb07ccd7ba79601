//! Funnel tests for dispatch: exactly-once ticks, overlap policies, pause,
//! induced fires, dataset retention, and determinism across replicas.

use super::*;
use crate::queue::{Command, Funnel, JobState, Proposal};

const SECOND: Millis = 1000;

fn def(name: &str, overlap: Overlap) -> ScheduleDef {
    ScheduleDef {
        name: name.into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        catch_up: CatchUp::All,
        max_catch_up: 10,
        misfire_grace_ms: 0,
        overlap,
        job: JobSpec::new(name, vec!["true".into()]),
    }
}

fn apply(f: &mut Funnel, now: Millis, command: Command) -> Outcome {
    f.apply(&Proposal { now, commands: vec![command] }).remove(0)
}

fn fire(f: &mut Funnel, now: Millis, name: &str, tick: Millis) -> Outcome {
    let spec = Some(JobSpec::new(name, vec!["true".into()]));
    apply(f, now, Command::ScheduleFired { name: name.into(), tick, spec, skipped: 0 })
}

fn fired_job(outcome: &Outcome) -> JobId {
    match outcome {
        Outcome::Fired { job: Some(id), duplicate: false } => *id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

#[test]
fn a_tick_fires_once_however_often_it_is_proposed() {
    let mut f = Funnel::new();
    assert_eq!(
        apply(&mut f, 0, Command::ScheduleUpsert { def: def("s", Overlap::Allow) }),
        Outcome::Defined { created: true, changed: true }
    );
    let id = fired_job(&fire(&mut f, 2 * SECOND, "s", SECOND));
    assert_eq!(f.job(id).unwrap().dedup_key, "s@1970-01-01T00:00:01Z");
    // A deposed leader's late proposal of the same (or an older) tick.
    assert!(matches!(fire(&mut f, 3 * SECOND, "s", SECOND), Outcome::Refused(FunnelError::StaleTick { .. })));
    assert_eq!(f.stats().jobs, 1);
    fired_job(&fire(&mut f, 3 * SECOND, "s", 2 * SECOND));
    assert_eq!(f.dispatch().schedules["s"].fired, 2);
    // Ticks at or before creation never fire.
    apply(&mut f, 10 * SECOND, Command::ScheduleUpsert { def: def("t", Overlap::Allow) });
    assert!(matches!(fire(&mut f, 11 * SECOND, "t", 10 * SECOND), Outcome::Refused(_)));
}

#[test]
fn recreated_schedule_does_not_rerun_a_tick_inside_the_dedup_window() {
    let mut f = Funnel::new();
    apply(&mut f, 0, Command::ScheduleUpsert { def: def("s", Overlap::Allow) });
    fired_job(&fire(&mut f, 2 * SECOND, "s", SECOND));
    assert_eq!(apply(&mut f, 2 * SECOND, Command::ScheduleDelete { name: "s".into() }), Outcome::Deleted);
    apply(&mut f, 0, Command::ScheduleUpsert { def: def("s", Overlap::Allow) });
    // Creation time is the funnel clock (2 s), so tick 1 s is stale; the
    // dedup key still guards any tick a new definition could see again.
    assert!(matches!(fire(&mut f, 3 * SECOND, "s", SECOND), Outcome::Refused(_)));
    assert_eq!(f.stats().jobs, 1);
}

#[test]
fn schedule_count_is_bounded_with_a_named_error() {
    let mut f = Funnel::new();
    for i in 0..MAX_SCHEDULES {
        let outcome =
            apply(&mut f, 0, Command::ScheduleUpsert { def: def(&format!("s{i}"), Overlap::Allow) });
        assert!(matches!(outcome, Outcome::Defined { created: true, .. }), "{outcome:?}");
    }
    let extra = apply(&mut f, 0, Command::ScheduleUpsert { def: def("one-too-many", Overlap::Allow) });
    match extra {
        Outcome::Refused(e) => assert!(e.to_string().contains(&MAX_SCHEDULES.to_string()), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Replacing an existing one is still fine at the bound.
    let again = apply(&mut f, 1, Command::ScheduleUpsert { def: def("s0", Overlap::Forbid) });
    assert!(matches!(again, Outcome::Defined { created: false, changed: true }), "{again:?}");
}

#[test]
fn upsert_is_idempotent_and_keeps_the_record() {
    let mut f = Funnel::new();
    apply(&mut f, 0, Command::ScheduleUpsert { def: def("s", Overlap::Allow) });
    fired_job(&fire(&mut f, 2 * SECOND, "s", SECOND));
    let same = apply(&mut f, 3 * SECOND, Command::ScheduleUpsert { def: def("s", Overlap::Allow) });
    assert_eq!(same, Outcome::Defined { created: false, changed: false });
    let changed = apply(&mut f, 3 * SECOND, Command::ScheduleUpsert { def: def("s", Overlap::Forbid) });
    assert_eq!(changed, Outcome::Defined { created: false, changed: true });
    assert_eq!(f.dispatch().schedules["s"].last_tick, Some(SECOND), "past ticks stay handled");
}

#[test]
fn overlap_policies() {
    let mut f = Funnel::new();
    for (name, overlap) in
        [("allow", Overlap::Allow), ("forbid", Overlap::Forbid), ("replace", Overlap::Replace)]
    {
        apply(&mut f, 0, Command::ScheduleUpsert { def: def(name, overlap) });
    }
    // First ticks: nothing runs yet, all fire.
    let first: Vec<JobId> = ["allow", "forbid", "replace"]
        .iter()
        .map(|n| fired_job(&fire(&mut f, 2 * SECOND, n, SECOND)))
        .collect();
    // Second ticks while the first jobs are still queued.
    let allow2 = fired_job(&fire(&mut f, 3 * SECOND, "allow", 2 * SECOND));
    assert_ne!(allow2, first[0]);
    assert_eq!(f.job(first[0]).unwrap().state, JobState::Queued);
    assert_eq!(
        fire(&mut f, 3 * SECOND, "forbid", 2 * SECOND),
        Outcome::Fired { job: None, duplicate: false }
    );
    assert_eq!(f.dispatch().schedules["forbid"].skipped, 1);
    assert_eq!(f.dispatch().schedules["forbid"].last_tick, Some(2 * SECOND));
    let replace2 = fired_job(&fire(&mut f, 3 * SECOND, "replace", 2 * SECOND));
    assert_eq!(f.job(first[2]).unwrap().state, JobState::Cancelled);
    assert_eq!(f.job(replace2).unwrap().state, JobState::Queued);
    // Once forbid's job is over, the next tick fires again.
    apply(&mut f, 4 * SECOND, Command::Cancel { id: first[1] });
    fired_job(&fire(&mut f, 4 * SECOND, "forbid", 3 * SECOND));
}

#[test]
fn passed_over_ticks_and_pause() {
    let mut f = Funnel::new();
    apply(&mut f, 0, Command::ScheduleUpsert { def: def("s", Overlap::Allow) });
    let only_mark = Command::ScheduleFired { name: "s".into(), tick: 5 * SECOND, spec: None, skipped: 3 };
    assert_eq!(apply(&mut f, 6 * SECOND, only_mark), Outcome::Fired { job: None, duplicate: false });
    assert_eq!((f.dispatch().schedules["s"].skipped, f.stats().jobs), (4, 0));
    apply(&mut f, 7 * SECOND, Command::SchedulePause { name: "s".into(), paused: true });
    assert!(matches!(fire(&mut f, 8 * SECOND, "s", 7 * SECOND), Outcome::Refused(_)));
    apply(&mut f, 20 * SECOND, Command::SchedulePause { name: "s".into(), paused: false });
    // Ticks missed while paused are not replayed.
    assert!(matches!(fire(&mut f, 21 * SECOND, "s", 15 * SECOND), Outcome::Refused(_)));
    fired_job(&fire(&mut f, 21 * SECOND, "s", 21 * SECOND));
    assert!(matches!(
        apply(&mut f, 0, Command::SchedulePause { name: "nope".into(), paused: true }),
        Outcome::Refused(FunnelError::NoSuchDefinition { .. })
    ));
}

fn induced_def() -> InducedDef {
    InducedDef {
        name: "join".into(),
        inputs: vec!["dataset:a/{{date}}".into()],
        params: vec!["date".into()],
        lookback_days: 0,
        timezone: "UTC".into(),
        job: JobSpec::new("join", vec!["true".into()]),
    }
}

#[test]
fn induced_fire_dedups_inside_the_window_and_events_expire() {
    let mut f = Funnel::new();
    apply(&mut f, 0, Command::InducedUpsert { def: induced_def() });
    let params = BTreeMap::from([("date".to_string(), "2026-12-01".to_string())]);
    let published = Command::DatasetPublished { dataset: "a/2026-12-01".into(), params: params.clone() };
    assert_eq!(apply(&mut f, SECOND, published.clone()), Outcome::Published { first: true });
    let induce = Command::InducedFired {
        name: "join".into(),
        set: "date=2026-12-01".into(),
        spec: JobSpec::new("join", vec!["true".into()]),
    };
    let id = fired_job(&apply(&mut f, 2 * SECOND, induce.clone()));
    assert_eq!(f.job(id).unwrap().dedup_key, "join@date=2026-12-01");
    assert_eq!(apply(&mut f, 3 * SECOND, published), Outcome::Published { first: false });
    assert_eq!(apply(&mut f, 4 * SECOND, induce), Outcome::Fired { job: Some(id), duplicate: true });
    assert_eq!(f.dispatch().induced_fired[&("join".to_string(), "date=2026-12-01".to_string())], 4 * SECOND);
    // Past retention, GC drops the event and the fire record.
    let later = 4 * SECOND + f.settings().history_retention_ms;
    apply(&mut f, later, Command::Gc { limit: 100 });
    assert!(f.dispatch().datasets.is_empty() && f.dispatch().induced_fired.is_empty());
}

#[test]
fn replicas_and_restored_images_agree() {
    let commands = [
        Command::ScheduleUpsert { def: def("s", Overlap::Replace) },
        Command::InducedUpsert { def: induced_def() },
        Command::ScheduleFired {
            name: "s".into(),
            tick: SECOND,
            spec: Some(JobSpec::new("s", vec!["x".into()])),
            skipped: 0,
        },
        Command::DatasetPublished { dataset: "a/x".into(), params: BTreeMap::new() },
        Command::ScheduleFired {
            name: "s".into(),
            tick: 2 * SECOND,
            spec: Some(JobSpec::new("s", vec!["x".into()])),
            skipped: 1,
        },
    ];
    let run = || {
        let mut f = Funnel::new();
        for (i, c) in commands.iter().enumerate() {
            f.apply(&Proposal { now: i as Millis * SECOND, commands: vec![c.clone()] });
        }
        f
    };
    let (a, b) = (run(), run());
    assert_eq!(a.digest(), b.digest());
    assert_eq!(Funnel::from_image(a.image()).digest(), a.digest());
    assert_eq!(format_utc(1_764_806_400_123), "2025-12-04T00:00:00.123Z");
}
