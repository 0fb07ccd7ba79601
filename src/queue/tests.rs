//! Funnel unit and property tests: dedup inside and outside the window,
//! retention, the queue bound, idempotent retries, and replica determinism.

use proptest::prelude::*;

use super::*;

const MINUTE: u64 = 60_000;

fn spec(name: &str, key: Option<&str>) -> JobSpec {
    JobSpec { dedup_key: key.map(str::to_string), ..JobSpec::new(name, vec!["true".to_string()]) }
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
        // Every size limit answers with its field, never a panic or a cut.
        (spec("x", Some(&"k".repeat(MAX_DEDUP_KEY_LEN + 1))), "dedup_key"),
        (
            JobSpec {
                params: (0..=MAX_PARAMS).map(|i| (format!("p{i}"), "v".to_string())).collect(),
                ..spec("x", None)
            },
            "params",
        ),
        (
            JobSpec {
                params: [("p".to_string(), "v".repeat(MAX_PARAM_VALUE_LEN + 1))].into(),
                ..spec("x", None)
            },
            "params.p",
        ),
        (JobSpec { command: vec!["w".to_string(); MAX_COMMAND_WORDS + 1], ..spec("x", None) }, "command"),
        (JobSpec { command: vec!["w".repeat(MAX_COMMAND_BYTES + 1)], ..spec("x", None) }, "command"),
        (JobSpec { slots: MAX_JOB_SLOTS + 1, ..spec("x", None) }, "slots"),
        (JobSpec { mem_mb: MAX_JOB_MEM_MB + 1, ..spec("x", None) }, "mem_mb"),
        (JobSpec { retries: MAX_RETRIES + 1, ..spec("x", None) }, "retries"),
        (JobSpec { timeout_ms: Some(0), ..spec("x", None) }, "timeout"),
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

/// History as a plain scan over every job: what the indexed query must equal.
fn naive_history<'a>(f: &'a Funnel, q: &HistoryQuery) -> Vec<&'a Job> {
    f.jobs
        .values()
        .rev()
        .filter(|j| q.before.is_none_or(|b| j.id < b))
        .filter(|j| q.since.is_none_or(|s| j.submitted_at >= s))
        .filter(|j| q.until.is_none_or(|u| j.submitted_at < u))
        .filter(|j| q.node.is_none_or(|n| j.attempts.iter().any(|a| a.node == n)))
        .filter(|j| q.name.as_ref().is_none_or(|n| &j.spec.name == n))
        .filter(|j| q.state.is_none_or(|s| j.state == s))
        .filter(|j| q.dedup_key.as_ref().is_none_or(|k| &j.dedup_key == k))
        .take(q.limit)
        .collect()
}

/// Every combination of the filters a test funnel can match (and some it
/// cannot), with cursors and time bounds, indexed vs. naive.
fn check_history_matches_scan(f: &Funnel, names: &[&str], keys: &[&str], max_time: Millis) {
    let ids: Vec<JobId> = f.jobs.keys().copied().collect();
    let mut cursors = vec![None];
    cursors.extend(ids.iter().step_by(3).map(|&id| Some(id)));
    let times = [None, Some(0), Some(max_time / 3), Some(max_time / 2 + 1), Some(max_time + 1)];
    let mut queries = Vec::new();
    for name in names.iter().map(|n| Some(n.to_string())).chain([None]) {
        for state in JobState::ALL.into_iter().map(Some).chain([None]) {
            for node in [None, Some(1), Some(2), Some(9)] {
                queries.push(HistoryQuery {
                    name: name.clone(),
                    state,
                    node,
                    limit: 4,
                    ..Default::default()
                });
            }
        }
    }
    for key in keys {
        queries.push(HistoryQuery { dedup_key: Some(key.to_string()), limit: 2, ..Default::default() });
    }
    for since in times {
        for until in times {
            queries.push(HistoryQuery { since, until, limit: 3, ..Default::default() });
            queries.push(HistoryQuery { since, until, node: Some(1), limit: 3, ..Default::default() });
        }
    }
    for query in queries {
        for &before in &cursors {
            let q = HistoryQuery { before, ..query.clone() };
            let got: Vec<JobId> = f.history(&q).iter().map(|j| j.id).collect();
            let want: Vec<JobId> = naive_history(f, &q).iter().map(|j| j.id).collect();
            assert_eq!(got, want, "{q:?}");
        }
    }
    let mut by_state = BTreeMap::new();
    for job in f.jobs.values() {
        *by_state.entry(job.state.as_str().to_string()).or_insert(0) += 1;
    }
    assert_eq!(f.stats().by_state, by_state, "counts from the state index");
}

#[test]
fn indexed_history_equals_a_full_scan_through_runs_gc_and_rebuild() {
    let mut f = Funnel::new();
    let settings =
        Settings { history_retention_ms: 50 * MINUTE, dedup_window_ms: MINUTE, ..Settings::default() };
    f.apply(&Proposal { now: 0, commands: vec![Command::Configure(settings)] });
    for node in [1, 2] {
        let register = Command::RegisterNode { id: node, addr: format!("n{node}"), slots: 4, mem_mb: 1024 };
        f.apply(&Proposal { now: 0, commands: vec![register] });
    }
    let names = ["a", "b", "c"];
    let keys = ["k0", "k1", "k2", "k3"];
    for i in 0..90u64 {
        let now = i * MINUTE;
        // Keys repeat once their job ended a window ago: several jobs per key.
        let (id, duplicate) =
            submitted(&submit(&mut f, now, spec(names[(i % 3) as usize], Some(keys[(i % 4) as usize]))));
        if duplicate {
            continue;
        }
        let node = 1 + i % 2;
        f.apply(&Proposal { now, commands: vec![Command::Assign { placements: vec![(id, node)] }] });
        if i % 5 == 0 {
            continue; // stays assigned
        }
        let outcome = if i % 7 == 0 { AttemptOutcome::Failed } else { AttemptOutcome::Succeeded };
        let end = AttemptEnd {
            outcome,
            exit_code: Some(0),
            signal: None,
            duration_ms: 1,
            reason: String::new(),
            log_tail: String::new(),
            runner: None,
        };
        f.apply(&Proposal { now, commands: vec![Command::Finished { job: id, attempt: 1, node, end }] });
    }
    check_history_matches_scan(&f, &names, &keys, 90 * MINUTE);
    // A lost node requeues its attempts: node index keeps the old attempt.
    f.apply(&Proposal { now: 90 * MINUTE, commands: vec![Command::NodeLost { node: 1 }] });
    check_history_matches_scan(&f, &names, &keys, 90 * MINUTE);
    assert!(gc(&mut f, 110 * MINUTE) > 0, "retention removed old jobs");
    check_history_matches_scan(&f, &names, &keys, 110 * MINUTE);
    let rebuilt = Funnel::from_image(f.image());
    check_history_matches_scan(&rebuilt, &names, &keys, 110 * MINUTE);
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
                command: (0..words).map(|w| format!("w{w}")).collect(),
                ..spec(name, key)
            },
        }),
        2 => (1u64..12).prop_map(|id| Command::Cancel { id }),
        1 => (0u32..5).prop_map(|limit| Command::Gc { limit }),
        1 => (1u64..6, 0u64..4, 0u64..4).prop_map(|(max_queued, w, r)| Command::Configure(Settings {
            max_queued,
            dedup_window_ms: w * 1000,
            history_retention_ms: (w + r) * 1000,
            retry_backoff_ms: 10,
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

// ---- execution: placement, reports, retries, node loss ----

fn run(f: &mut Funnel, now: Millis, commands: Vec<Command>) -> Vec<Outcome> {
    f.apply(&Proposal { now, commands })
}

fn register(f: &mut Funnel, now: Millis, id: NodeId, slots: u32) -> u64 {
    match run(
        f,
        now,
        vec![Command::RegisterNode { id, addr: format!("127.0.0.1:{id}"), slots, mem_mb: 1000 }],
    )
    .remove(0)
    {
        Outcome::Registered { incarnation } => incarnation,
        other => panic!("{other:?}"),
    }
}

fn ok_end(outcome: AttemptOutcome) -> AttemptEnd {
    AttemptEnd {
        outcome,
        exit_code: Some(0),
        signal: None,
        duration_ms: 1,
        reason: String::new(),
        log_tail: "out".into(),
        runner: None,
    }
}

fn plan_and_assign(f: &mut Funnel, now: Millis) -> Vec<(JobId, NodeId)> {
    let alive: BTreeSet<NodeId> = f.nodes().keys().copied().collect();
    let plan = f.plan_placements(now, &alive, 100, 1000);
    run(f, now, vec![Command::Assign { placements: plan.clone() }]);
    plan
}

#[test]
fn placement_prefers_spare_capacity_and_never_overcommits() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 2);
    register(&mut f, 0, 2, 3);
    for i in 0..10 {
        submit(&mut f, 0, spec(&format!("j{i}"), None));
    }
    let plan = plan_and_assign(&mut f, 0);
    assert_eq!(plan.len(), 5, "2 + 3 slots");
    assert_eq!(plan[0].1, 2, "the node with the most spare slots goes first");
    assert_eq!(f.used(1).0, 2);
    assert_eq!(f.used(2).0, 3);
    // A forged over-assignment is refused at apply.
    let out = run(&mut f, 0, vec![Command::Assign { placements: vec![(9, 1), (10, 2)] }]);
    assert_eq!(out, vec![Outcome::Assigned { accepted: 0 }]);
}

#[test]
fn priority_then_fifo() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    submit(&mut f, 0, spec("low", None));
    submit(&mut f, 0, JobSpec { priority: 5, ..spec("high", None) });
    submit(&mut f, 0, JobSpec { priority: 5, ..spec("high-later", None) });
    let plan = plan_and_assign(&mut f, 0);
    assert_eq!(plan, vec![(2, 1)]);
}

#[test]
fn reports_move_the_job_and_stale_reports_are_ignored() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let (id, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    plan_and_assign(&mut f, 0);
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Assigned));
    // Wrong node or attempt: ignored.
    let out = run(
        &mut f,
        1,
        vec![
            Command::Started { job: id, attempt: 1, node: 2, runner: RunnerKind::Shell },
            Command::Started { job: id, attempt: 2, node: 1, runner: RunnerKind::Shell },
        ],
    );
    assert_eq!(
        out,
        vec![
            Outcome::Reported { current: false, placed: 0, started: false },
            Outcome::Reported { current: false, placed: 0, started: false }
        ]
    );
    run(&mut f, 2, vec![Command::Started { job: id, attempt: 1, node: 1, runner: RunnerKind::Shell }]);
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Running));
    run(
        &mut f,
        9,
        vec![Command::Finished { job: id, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Succeeded) }],
    );
    let job = f.job(id).expect("job");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.finished_at, Some(9));
    assert_eq!(f.used(1), (0, 0), "capacity released");
    // A duplicate report changes nothing.
    let again = run(
        &mut f,
        10,
        vec![Command::Finished { job: id, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Failed) }],
    );
    assert_eq!(again, vec![Outcome::Reported { current: false, placed: 0, started: false }]);
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Succeeded));
}

#[test]
fn failures_retry_with_exponential_backoff_then_fail() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let (id, _) = submitted(&submit(&mut f, 0, JobSpec { retries: 2, ..spec("flaky", None) }));
    let base = f.settings().retry_backoff_ms;
    let mut now = 0;
    for (attempt, wait) in [(1, base), (2, 2 * base)] {
        plan_and_assign(&mut f, now);
        run(
            &mut f,
            now,
            vec![Command::Finished { job: id, attempt, node: 1, end: ok_end(AttemptOutcome::Failed) }],
        );
        assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Queued));
        assert!(plan_and_assign(&mut f, now + wait - 1).is_empty(), "placed before its backoff ended");
        now += wait;
    }
    plan_and_assign(&mut f, now);
    run(
        &mut f,
        now,
        vec![Command::Finished { job: id, attempt: 3, node: 1, end: ok_end(AttemptOutcome::TimedOut) }],
    );
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::TimedOut));
    assert_eq!(f.job(id).map(|j| j.attempts.len()), Some(3));
}

#[test]
fn lost_node_requeues_its_attempts_and_ignores_its_late_reports() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    register(&mut f, 0, 2, 1);
    let (id, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    let plan = plan_and_assign(&mut f, 0);
    let first_node = plan[0].1;
    let other = if first_node == 1 { 2 } else { 1 };
    run(&mut f, 1, vec![Command::NodeLost { node: first_node }]);
    let job = f.job(id).expect("job");
    assert_eq!(job.state, JobState::Queued, "lost attempts do not need a retry budget");
    assert_eq!(job.attempts[0].end.as_ref().map(|e| e.outcome), Some(AttemptOutcome::Lost));
    // Only the live node gets it now.
    let alive: BTreeSet<NodeId> = [first_node, other].into();
    assert_eq!(f.plan_placements(2, &alive, 10, 10), vec![(id, other)]);
    run(&mut f, 2, vec![Command::Assign { placements: vec![(id, other)] }]);
    // The old worker's late report is stale.
    let late = run(
        &mut f,
        3,
        vec![Command::Finished {
            job: id,
            attempt: 1,
            node: first_node,
            end: ok_end(AttemptOutcome::Succeeded),
        }],
    );
    assert_eq!(late, vec![Outcome::Reported { current: false, placed: 0, started: false }]);
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Assigned));
}

#[test]
fn restarted_worker_orphans_its_old_attempts() {
    let mut f = Funnel::new();
    assert_eq!(register(&mut f, 0, 1, 1), 1);
    let (id, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    plan_and_assign(&mut f, 0);
    assert_eq!(register(&mut f, 5, 1, 1), 2);
    let job = f.job(id).expect("job");
    assert_eq!(job.state, JobState::Queued);
    plan_and_assign(&mut f, 6);
    assert_eq!(f.job(id).and_then(|j| j.current()).map(|a| a.incarnation), Some(2));
}

#[test]
fn cancel_of_a_running_job_is_carried_out_by_the_worker() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let (id, _) = submitted(&submit(&mut f, 0, JobSpec { retries: 3, ..spec("a", None) }));
    plan_and_assign(&mut f, 0);
    run(&mut f, 1, vec![Command::Started { job: id, attempt: 1, node: 1, runner: RunnerKind::Shell }]);
    assert_eq!(cancel(&mut f, 2, id), Outcome::Cancelled { id, state: JobState::Running });
    assert!(f.job(id).is_some_and(|j| j.cancel_requested && j.state == JobState::Running));
    // Even a failure report ends a cancel-requested job as cancelled, not retried.
    run(
        &mut f,
        3,
        vec![Command::Finished { job: id, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Failed) }],
    );
    assert_eq!(f.job(id).map(|j| j.state), Some(JobState::Cancelled));
}

#[test]
fn unschedulable_jobs_are_refused_at_submit() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 2);
    match submit(&mut f, 0, JobSpec { slots: 3, ..spec("big", None) }) {
        Outcome::Refused(FunnelError::Unschedulable { max_slots: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    match submit(&mut f, 0, JobSpec { mem_mb: 5000, ..spec("fat", None) }) {
        Outcome::Refused(FunnelError::Unschedulable { max_mem_mb: 1000, .. }) => {}
        other => panic!("{other:?}"),
    }
}

fn arb_exec_command() -> impl Strategy<Value = Command> {
    let job = 1u64..10;
    let node = 1u64..4;
    let outcome = prop::sample::select(vec![
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::TimedOut,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Lost,
    ]);
    prop_oneof![
        3 => (0u32..3, 1u32..3).prop_map(|(retries, slots)| Command::Submit {
            request: None,
            spec: JobSpec { retries, slots, params: [("n".to_string(), format!("{retries}{slots}"))].into(), ..spec("p", None) },
        }),
        1 => (node.clone(), 1u32..4).prop_map(|(id, slots)| Command::RegisterNode { id, addr: String::new(), slots, mem_mb: 100 }),
        3 => prop::collection::vec((job.clone(), node.clone()), 1..4).prop_map(|placements| Command::Assign { placements }),
        2 => (job.clone(), 1u32..4, node.clone()).prop_map(|(job, attempt, node)| Command::Started { job, attempt, node, runner: RunnerKind::Luigi }),
        2 => (job.clone(), 1u32..4, node.clone(), outcome).prop_map(|(job, attempt, node, o)| Command::Finished { job, attempt, node, end: ok_end(o) }),
        1 => node.prop_map(|node| Command::NodeLost { node }),
        1 => job.prop_map(|id| Command::Cancel { id }),
    ]
}

proptest! {
    /// Invariant 4 (no node over capacity) and "one active attempt per job"
    /// over random interleavings of placements, reports and node loss; and
    /// replicas stay identical through it all.
    #[test]
    fn capacity_and_single_attempt_hold(commands in prop::collection::vec(arb_exec_command(), 1..120)) {
        let mut f = Funnel::new();
        let mut replica = Funnel::new();
        for (i, c) in commands.iter().enumerate() {
            let p = Proposal { now: i as u64 * 10, commands: vec![c.clone()] };
            prop_assert_eq!(f.apply(&p), replica.apply(&p));
            for (id, node) in f.nodes() {
                let (slots, _) = f.used(*id);
                if !node.lost {
                    prop_assert!(slots <= u64::from(node.slots), "node {} holds {} of {} slots", id, slots, node.slots);
                }
            }
            for job in f.jobs.values() {
                let open = job.attempts.iter().filter(|a| a.end.is_none()).count();
                prop_assert!(open <= 1, "job {} has {} open attempts", job.id, open);
                prop_assert_eq!(open == 1, job.holds_capacity(), "job {} state {:?}", job.id, job.state);
            }
        }
        prop_assert_eq!(f.digest(), replica.digest());
    }
}

#[test]
fn a_success_reported_after_the_attempt_was_given_up_counts_if_nothing_reran_it() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    register(&mut f, 0, 2, 1);
    let (a, _) = submitted(&submit(&mut f, 0, spec("a", None)));
    let (b, _) = submitted(&submit(&mut f, 0, spec("b", None)));
    run(&mut f, 0, vec![Command::Assign { placements: vec![(a, 1), (b, 2)] }]);
    run(&mut f, 1, vec![Command::NodeLost { node: 1 }, Command::NodeLost { node: 2 }]);
    // a is still queued: its late success is recorded, it will not rerun.
    let out = run(
        &mut f,
        2,
        vec![Command::Finished { job: a, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Succeeded) }],
    );
    assert_eq!(out, vec![Outcome::Reported { current: true, placed: 0, started: false }]);
    let job = f.job(a).expect("a");
    assert_eq!((job.state, job.attempts.len()), (JobState::Succeeded, 1));
    assert_eq!(job.attempts[0].end.as_ref().map(|e| e.outcome), Some(AttemptOutcome::Succeeded));
    // b was placed again meanwhile: the old success is stale.
    register(&mut f, 3, 1, 1);
    run(&mut f, 3, vec![Command::Assign { placements: vec![(b, 1)] }]);
    let out = run(
        &mut f,
        4,
        vec![Command::Finished { job: b, attempt: 1, node: 2, end: ok_end(AttemptOutcome::Succeeded) }],
    );
    assert_eq!(out, vec![Outcome::Reported { current: false, placed: 0, started: false }]);
    assert_eq!(f.job(b).map(|j| j.state), Some(JobState::Assigned));
    // A late failure never resurrects anything.
    let (c, _) = submitted(&submit(&mut f, 5, spec("c", None)));
    run(&mut f, 5, vec![Command::Assign { placements: vec![(c, 1)] }]);
    run(&mut f, 6, vec![Command::NodeLost { node: 1 }]);
    let out = run(
        &mut f,
        7,
        vec![Command::Finished { job: c, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Failed) }],
    );
    assert_eq!(out, vec![Outcome::Reported { current: false, placed: 0, started: false }]);
    assert_eq!(f.job(c).map(|j| j.state), Some(JobState::Queued));
}

#[test]
fn a_finished_attempt_hands_its_slot_to_the_next_queued_job_that_fits() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 2);
    let ids: Vec<JobId> =
        (0..4).map(|i| submitted(&submit(&mut f, 0, spec(&format!("j{i}"), None))).0).collect();
    let big = submitted(&submit(&mut f, 0, JobSpec { slots: 2, ..spec("big", None) })).0;
    let small = submitted(&submit(&mut f, 0, spec("small", None))).0;
    run(&mut f, 1, vec![Command::Assign { placements: vec![(ids[0], 1), (ids[1], 1)] }]);
    let done = |job| Command::Finished { job, attempt: 1, node: 1, end: ok_end(AttemptOutcome::Succeeded) };
    // One slot freed: the head of the queue gets it in the same entry.
    assert_eq!(
        run(&mut f, 2, vec![done(ids[0])]),
        vec![Outcome::Reported { current: true, placed: 1, started: false }]
    );
    assert_eq!(f.job(ids[2]).map(|j| j.state), Some(JobState::Assigned));
    assert_eq!(f.job(ids[2]).map(|j| j.attempts[0].assigned_at), Some(2));
    // Two slots freed in one entry: FIFO order, and a job too big for the
    // spare capacity at that moment is passed over, not waited for.
    let out = run(&mut f, 3, vec![done(ids[1]), done(ids[2])]);
    assert_eq!(
        out,
        vec![
            Outcome::Reported { current: true, placed: 1, started: false },
            Outcome::Reported { current: true, placed: 1, started: false }
        ]
    );
    assert_eq!(f.job(ids[3]).map(|j| j.state), Some(JobState::Assigned));
    assert_eq!(f.job(big).map(|j| j.state), Some(JobState::Queued), "needs 2 slots, only 1 free");
    assert_eq!(f.job(small).map(|j| j.state), Some(JobState::Assigned));
    assert_eq!(f.used(1), (2, 0));
    // Whatever the refills, the node is never overcommitted.
    assert!(f.spare(1).is_some_and(|s| s.0 == 0));
}

#[test]
fn no_refill_when_paused_after_a_lost_attempt_or_for_jobs_backing_off() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let a = submitted(&submit(&mut f, 0, spec("a", None))).0;
    let b = submitted(&submit(&mut f, 0, spec("b", None))).0;
    let finish = |job, outcome| Command::Finished { job, attempt: 1, node: 1, end: ok_end(outcome) };
    // Paused: nothing is placed, refill included.
    run(&mut f, 1, vec![Command::Assign { placements: vec![(a, 1)] }, Command::SetPaused { paused: true }]);
    assert_eq!(
        run(&mut f, 2, vec![finish(a, AttemptOutcome::Succeeded)])[0],
        Outcome::Reported { current: true, placed: 0, started: false }
    );
    assert_eq!(f.job(b).map(|j| j.state), Some(JobState::Queued));
    // A lost attempt (the worker lost its lease) does not earn the node a new job.
    run(&mut f, 3, vec![Command::SetPaused { paused: false }, Command::Assign { placements: vec![(b, 1)] }]);
    let c = submitted(&submit(&mut f, 3, spec("c", None))).0;
    assert_eq!(
        run(&mut f, 4, vec![finish(b, AttemptOutcome::Lost)])[0],
        Outcome::Reported { current: true, placed: 0, started: false }
    );
    assert_eq!(f.job(c).map(|j| j.state), Some(JobState::Queued));
    // A failed job waiting out its retry backoff is not refilled early.
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let r = submitted(&submit(&mut f, 0, JobSpec { retries: 1, ..spec("r", None) })).0;
    run(&mut f, 1, vec![Command::Assign { placements: vec![(r, 1)] }]);
    let out = run(&mut f, 2, vec![finish(r, AttemptOutcome::Failed)]);
    assert_eq!(out[0], Outcome::Reported { current: true, placed: 0, started: false });
    assert_eq!(f.job(r).map(|j| (j.state, j.attempts.len())), Some((JobState::Queued, 1)));
}

#[test]
fn an_end_that_overtakes_its_start_records_the_start_and_the_late_start_is_stale() {
    let mut f = Funnel::new();
    register(&mut f, 0, 1, 1);
    let a = submitted(&submit(&mut f, 0, spec("a", None))).0;
    run(&mut f, 100, vec![Command::Assign { placements: vec![(a, 1)] }]);
    let end =
        AttemptEnd { duration_ms: 30, runner: Some(RunnerKind::Shell), ..ok_end(AttemptOutcome::Succeeded) };
    let out = run(&mut f, 150, vec![Command::Finished { job: a, attempt: 1, node: 1, end }]);
    assert_eq!(out, vec![Outcome::Reported { current: true, placed: 0, started: true }]);
    let attempt = &f.job(a).expect("a").attempts[0];
    assert_eq!(
        (attempt.started_at, attempt.ended_at, attempt.runner),
        (Some(120), Some(150), Some(RunnerKind::Shell))
    );
    let late =
        run(&mut f, 160, vec![Command::Started { job: a, attempt: 1, node: 1, runner: RunnerKind::Shell }]);
    assert_eq!(late, vec![Outcome::Reported { current: false, placed: 0, started: false }]);
    assert_eq!(f.job(a).map(|j| (j.state, j.attempts[0].started_at)), Some((JobState::Succeeded, Some(120))));
    // Dated back never before the assignment; a start already recorded stays.
    let b = submitted(&submit(&mut f, 200, spec("b", None))).0;
    run(&mut f, 200, vec![Command::Assign { placements: vec![(b, 1)] }]);
    let end =
        AttemptEnd { duration_ms: 5_000, runner: Some(RunnerKind::Shell), ..ok_end(AttemptOutcome::Failed) };
    run(&mut f, 210, vec![Command::Finished { job: b, attempt: 1, node: 1, end }]);
    assert_eq!(f.job(b).and_then(|j| j.attempts[0].started_at), Some(200));
    let c = submitted(&submit(&mut f, 300, spec("c", None))).0;
    run(&mut f, 300, vec![Command::Assign { placements: vec![(c, 1)] }]);
    run(&mut f, 305, vec![Command::Started { job: c, attempt: 1, node: 1, runner: RunnerKind::Luigi }]);
    let end =
        AttemptEnd { duration_ms: 1, runner: Some(RunnerKind::Luigi), ..ok_end(AttemptOutcome::Succeeded) };
    let out = run(&mut f, 400, vec![Command::Finished { job: c, attempt: 1, node: 1, end }]);
    assert_eq!(out, vec![Outcome::Reported { current: true, placed: 0, started: false }]);
    assert_eq!(f.job(c).and_then(|j| j.attempts[0].started_at), Some(305));
}
