//! Funnel unit and property tests: dedup inside and outside the window,
//! retention, the queue bound, idempotent retries, and replica determinism.

use proptest::prelude::*;

use super::*;

const MINUTE: u64 = 60_000;

fn spec(name: &str, key: Option<&str>) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        command: vec!["true".to_string()],
        params: BTreeMap::new(),
        dedup_key: key.map(str::to_string),
    }
}

fn submit(funnel: &mut Funnel, now: Millis, spec: JobSpec) -> Outcome {
    let out = funnel.apply(&Proposal { now, commands: vec![Command::Submit { request: None, spec }] });
    out.into_iter().next().expect("one outcome per command")
}

fn submitted(outcome: &Outcome) -> (JobId, bool) {
    match outcome {
        Outcome::Submitted { id, duplicate, .. } => (*id, *duplicate),
        other => panic!("expected a submit, got {other:?}"),
    }
}

fn cancel(funnel: &mut Funnel, now: Millis, id: JobId) -> Outcome {
    funnel.apply(&Proposal { now, commands: vec![Command::Cancel { id }] }).remove(0)
}

fn gc(funnel: &mut Funnel, now: Millis) -> u64 {
    match funnel.apply(&Proposal { now, commands: vec![Command::Gc { limit: 1000 }] }).remove(0) {
        Outcome::Collected { removed } => removed,
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_key_while_active_is_a_duplicate() {
    let mut f = Funnel::new();
    let (a, dup_a) = submitted(&submit(&mut f, 1000, spec("etl", Some("k1"))));
    let (b, dup_b) = submitted(&submit(&mut f, 900_000_000, spec("other-name", Some("k1"))));
    assert_eq!((a, dup_a), (1, false));
    assert_eq!((b, dup_b), (1, true), "an active job blocks its key no matter how old");
    assert_eq!(f.stats().jobs, 1);
}

#[test]
fn derived_key_covers_name_params_and_command() {
    let mut f = Funnel::new();
    let base = spec("etl", None);
    let (a, _) = submitted(&submit(&mut f, 0, base.clone()));
    assert_eq!(submitted(&submit(&mut f, 1, base.clone())), (a, true));
    let mut other_param = base.clone();
    other_param.params.insert("date".into(), "2026-12-04".into());
    assert!(!submitted(&submit(&mut f, 2, other_param)).1);
    let mut other_cmd = base.clone();
    other_cmd.command.push("x".into());
    assert!(!submitted(&submit(&mut f, 3, other_cmd)).1);
    // Length prefixes: moving a byte between words must change the key.
    let mut split_a = base.clone();
    split_a.command = vec!["ab".into(), "c".into()];
    let mut split_b = base;
    split_b.command = vec!["a".into(), "bc".into()];
    assert_ne!(split_a.effective_dedup_key(), split_b.effective_dedup_key());
}

#[test]
fn finished_job_blocks_its_key_for_the_window_only() {
    let mut f = Funnel::new();
    let window = f.settings().dedup_window_ms;
    let (a, _) = submitted(&submit(&mut f, 0, spec("etl", Some("k"))));
    assert_eq!(cancel(&mut f, 10 * MINUTE, a), Outcome::Cancelled { id: a, state: JobState::Cancelled });
    let inside = 10 * MINUTE + window - 1;
    assert_eq!(submitted(&submit(&mut f, inside, spec("etl", Some("k")))), (a, true));
    let outside = 10 * MINUTE + window;
    let (b, dup) = submitted(&submit(&mut f, outside, spec("etl", Some("k"))));
    assert!(!dup && b != a, "after the window the key runs again");
    assert_eq!(f.job(a).map(|j| j.state), Some(JobState::Cancelled), "history keeps the old job");
}

#[test]
fn retention_gc_removes_only_expired_finished_jobs() {
    let mut f = Funnel::new();
    let retention = f.settings().history_retention_ms;
    let (a, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    let (b, _) = submitted(&submit(&mut f, 0, spec("b", None)));
    let (c, _) = submitted(&submit(&mut f, 0, spec("c", None)));
    cancel(&mut f, 1000, a);
    cancel(&mut f, 5000, b);
    assert_eq!(gc(&mut f, 1000 + retention - 1), 0);
    assert_eq!(gc(&mut f, 1000 + retention), 1);
    assert!(f.job(a).is_none() && f.job(b).is_some());
    assert_eq!(gc(&mut f, u64::MAX / 2), 1, "b expires; queued c never does");
    assert!(f.job(c).is_some());
    // After its job is collected, the key is free again.
    let (d, dup) = submitted(&submit(&mut f, u64::MAX / 2, spec("a", None)));
    assert!(!dup && d > c);
}

#[test]
fn gc_is_incremental() {
    let mut f = Funnel::new();
    for i in 0..50 {
        let (id, _) = submitted(&submit(&mut f, 0, spec(&format!("j{i}"), None)));
        cancel(&mut f, 1, id);
    }
    let out = f.apply(&Proposal { now: u64::MAX / 2, commands: vec![Command::Gc { limit: 20 }] });
    assert_eq!(out, vec![Outcome::Collected { removed: 20 }]);
    assert_eq!(f.stats().jobs, 30);
}

#[test]
fn full_queue_refuses_new_keys_but_still_answers_duplicates() {
    let mut f = Funnel::new();
    let settings = Settings { max_queued: 2, ..Settings::default() };
    f.apply(&Proposal { now: 0, commands: vec![Command::Configure(settings)] });
    submitted(&submit(&mut f, 0, spec("a", Some("a"))));
    submitted(&submit(&mut f, 0, spec("b", Some("b"))));
    assert_eq!(
        submit(&mut f, 0, spec("c", Some("c"))),
        Outcome::Refused(FunnelError::QueueFull { max_queued: 2 })
    );
    assert_eq!(submitted(&submit(&mut f, 0, spec("a", Some("a")))), (1, true));
    // Freeing a slot admits again.
    cancel(&mut f, 1, 1);
    assert!(!submitted(&submit(&mut f, 2, spec("c", Some("c")))).1);
}

#[test]
fn retried_request_gets_its_first_answer() {
    let mut f = Funnel::new();
    let request = Some(RequestRef { request_id: 42, index: 0 });
    let cmd = Command::Submit { request, spec: spec("etl", None) };
    let first = f.apply(&Proposal { now: 0, commands: vec![cmd.clone()] });
    let retry = f.apply(&Proposal { now: 5, commands: vec![cmd] });
    assert_eq!(first, retry, "the retry must not be reported as a duplicate or create a job");
    assert_eq!(f.stats().jobs, 1);
}

#[test]
fn invalid_specs_are_refused_naming_the_field() {
    let mut f = Funnel::new();
    let cases: Vec<(JobSpec, &str)> = vec![
        (spec("", None), "name"),
        (JobSpec { command: vec![], ..spec("x", None) }, "command"),
        (spec("x", Some("auto:abc")), "dedup_key"),
        (spec(&"n".repeat(MAX_NAME_LEN + 1), None), "name"),
        (
            JobSpec { params: [("1bad".to_string(), "v".to_string())].into(), ..spec("x", None) },
            "params.1bad",
        ),
    ];
    for (bad, field) in cases {
        match submit(&mut f, 0, bad) {
            Outcome::Refused(FunnelError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert_eq!(f.stats().jobs, 0);
}

#[test]
fn cancel_errors_are_specific() {
    let mut f = Funnel::new();
    assert_eq!(cancel(&mut f, 0, 7), Outcome::Refused(FunnelError::NotFound { id: 7 }));
    let (a, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    cancel(&mut f, 1, a);
    assert_eq!(cancel(&mut f, 2, a), Outcome::Cancelled { id: a, state: JobState::Cancelled });
}

#[test]
fn clock_never_goes_backwards() {
    let mut f = Funnel::new();
    submit(&mut f, 10_000, spec("a", None));
    let (b, _) = submitted(&submit(&mut f, 5_000, spec("b", None)));
    assert_eq!(f.job(b).map(|j| j.submitted_at), Some(10_000));
}

#[test]
fn history_is_newest_first_with_filters_and_cursor() {
    let mut f = Funnel::new();
    for i in 0..10 {
        let mut s = spec(if i % 2 == 0 { "even" } else { "odd" }, None);
        s.params.insert("i".into(), i.to_string());
        submit(&mut f, i, s);
    }
    let page = f.history(&HistoryQuery { name: Some("even".into()), limit: 3, ..Default::default() });
    let ids: Vec<JobId> = page.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![9, 7, 5]);
    let next = f.history(&HistoryQuery {
        name: Some("even".into()),
        limit: 3,
        before: Some(5),
        ..Default::default()
    });
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![3, 1]);
}

#[test]
fn rebuilt_funnel_behaves_like_the_original() {
    let mut f = Funnel::new();
    let (a, _) = submitted(&submit(&mut f, 0, spec("a", Some("k"))));
    let mut copy = Funnel::from_image(f.image());
    assert_eq!(copy.digest(), f.digest());
    assert_eq!(submitted(&submit(&mut copy, 1, spec("x", Some("k")))), (a, true));
}

fn arb_command() -> impl Strategy<Value = Command> {
    let key = prop::option::of(prop::sample::select(vec!["k1", "k2", "k3", "k4"]));
    let name = prop::sample::select(vec!["a", "b", "", "c"]);
    let request = prop::option::of(
        (0u128..4, 0u32..2).prop_map(|(request_id, index)| RequestRef { request_id, index }),
    );
    prop_oneof![
        6 => (name, key, request, 0usize..3).prop_map(|(name, key, request, words)| Command::Submit {
            request,
            spec: JobSpec {
                name: name.to_string(),
                command: (0..words).map(|w| format!("w{w}")).collect(),
                params: BTreeMap::new(),
                dedup_key: key.map(str::to_string),
            },
        }),
        2 => (1u64..12).prop_map(|id| Command::Cancel { id }),
        1 => (0u32..5).prop_map(|limit| Command::Gc { limit }),
        1 => (1u64..6, 0u64..4, 0u64..4).prop_map(|(max_queued, w, r)| Command::Configure(Settings {
            max_queued,
            dedup_window_ms: w * 1000,
            history_retention_ms: (w + r) * 1000,
        })),
    ]
}

fn arb_log() -> impl Strategy<Value = Vec<Proposal>> {
    prop::collection::vec(
        (0u64..20_000, prop::collection::vec(arb_command(), 1..5))
            .prop_map(|(now, commands)| Proposal { now, commands }),
        1..60,
    )
}

proptest! {
    /// Invariant 6: replicas applying the same log hold identical state —
    /// including one that restarted from an image half-way.
    #[test]
    fn replicas_applying_the_same_log_are_byte_identical(log in arb_log(), cut in 0usize..60) {
        let mut a = Funnel::new();
        let mut b = Funnel::new();
        let mut outcomes_a = Vec::new();
        let mut outcomes_b = Vec::new();
        for (i, p) in log.iter().enumerate() {
            if i == cut {
                b = Funnel::from_image(b.image());
            }
            outcomes_a.push(a.apply(p));
            outcomes_b.push(b.apply(p));
        }
        prop_assert_eq!(outcomes_a, outcomes_b);
        prop_assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        prop_assert_eq!(a.digest(), b.digest());
    }

    /// The queue bound holds and every active key maps to exactly one job.
    #[test]
    fn bound_and_dedup_hold_on_random_logs(log in arb_log()) {
        let mut f = Funnel::new();
        for command in log.iter().flat_map(|p| p.commands.iter().map(move |c| (p.now, c))) {
            let before = f.stats().queued;
            f.apply(&Proposal { now: command.0, commands: vec![command.1.clone()] });
            let max = f.settings().max_queued;
            // Lowering the bound never evicts, but nothing new gets in above it.
            prop_assert!(f.stats().queued <= max.max(before), "queue grew past its bound");
            let mut active_keys = BTreeSet::new();
            for job in f.jobs.values().filter(|j| !j.state.is_terminal()) {
                prop_assert!(active_keys.insert(job.dedup_key.clone()), "two active jobs share a key");
            }
        }
    }
}
