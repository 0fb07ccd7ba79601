//! Multi-process tests of dispatch: cron schedules firing through a leader
//! kill (every tick exactly once, checked against an execution record
//! outside the cluster), crontab-style submits from every peer, backfill
//! idempotence, and induced jobs.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sgnode::api::dispatch::{InducedView, ScheduleView};
use sgnode::api::views::JobView;
use sgnode::queue::JobState;
use util::*;

fn spec() -> ClusterSpec {
    ClusterSpec { extra: "induced_poll = \"200ms\"\n".into(), slots: 8, ..ClusterSpec::default() }
}

async fn jobs_named(cluster: &TestCluster, peer: u64, name: &str) -> Vec<JobView> {
    let query = [("name", name.to_string()), ("limit", "10000".to_string())];
    cluster.client(peer).history(&query).await.expect("history")
}

async fn schedule(cluster: &TestCluster, peer: u64, name: &str) -> ScheduleView {
    cluster.client(peer).get_json(&format!("schedules/{name}")).await.expect("schedule")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

/// Jepsen's Chronos test, in small: a per-second schedule keeps firing while
/// the leader is killed and later restarted. Every tick between creation and
/// the pause must have run exactly once (catch_up = "all" fills the failover
/// gap), and no tick may run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_runs_exactly_once_through_a_leader_kill() {
    let mut cluster = TestCluster::start(spec());
    let leader = cluster.wait_leader().await;
    let dir = cluster.dir.path().to_path_buf();
    let record = dir.join("ticks.record");
    let file = dir.join("schedules.toml");
    write(
        &file,
        &format!(
            "[[schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\ncatch_up = \"all\"\n\
             max_catch_up = 120\noverlap = \"allow\"\n[schedule.job]\n\
             command = [\"sh\", \"-c\", \"echo {{{{timestamp}}}} $SG_JOB_ID $(date +%s) >> {}\"]\n",
            record.display()
        ),
    );
    let url = cluster.url(leader);
    let (code, out, err) =
        cli(&["schedule", "apply", "--url", &url, "--token", TOKEN, file.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "apply: {out} {err}");
    assert!(out.contains("created"), "{out}");

    tokio::time::sleep(Duration::from_secs(6)).await;
    let killed = cluster.wait_leader().await;
    cluster.kill(killed);
    let new_leader = cluster.wait_leader().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.start_peer(killed);
    tokio::time::sleep(Duration::from_secs(6)).await;

    let (code, out, err) = cli(
        &["schedule", "pause", "every-second", "--url", &cluster.url(new_leader), "--token", TOKEN],
        &dir,
    );
    assert_eq!(code, 0, "pause: {out} {err}");
    let view = schedule(&cluster, new_leader, "every-second").await;
    let created = view.def.name.clone();
    assert_eq!(created, "every-second");
    // Every fired job must finish; then the record is complete.
    wait_until("scheduled jobs to finish", Duration::from_secs(60), || async {
        let jobs = jobs_named(&cluster, new_leader, "every-second").await;
        jobs.iter().all(|j| j.state.is_terminal()).then_some(())
    })
    .await;
    let jobs = jobs_named(&cluster, new_leader, "every-second").await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");

    let mut runs: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut latest_start = 0;
    for line in std::fs::read_to_string(&record).unwrap_or_default().lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let tick: u64 = fields[0].parse().expect("tick");
        let started: u64 = fields[2].parse().expect("start time");
        latest_start = latest_start.max(started.saturating_sub(tick));
        runs.entry(tick).or_default().push(fields[1].to_string());
    }
    // Tolerance: a tick missed during the failover runs once a new leader
    // catches up, seconds later, not never and not twice.
    assert!(latest_start <= 15, "a tick started {latest_start} s late");
    eprintln!("{} ticks, latest start {latest_start} s after its tick", runs.len());
    let doubled: Vec<_> = runs.iter().filter(|(_, jobs)| jobs.len() > 1).collect();
    assert!(doubled.is_empty(), "ticks that ran more than once: {doubled:?}");
    let ticks: Vec<u64> = runs.keys().copied().collect();
    let (first, last) = (ticks[0], *ticks.last().unwrap());
    let missing: Vec<u64> = (first..=last).filter(|t| !runs.contains_key(t)).collect();
    assert!(missing.is_empty(), "ticks never run between {first} and {last}: {missing:?}");
    assert!(ticks.len() >= 15, "only {} ticks ran in ~18 s", ticks.len());
    assert_eq!(jobs.len(), ticks.len(), "one job per tick");
    assert_eq!(view.fired as usize, ticks.len());
    // Each job's dedup key names its tick.
    let keys: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.dedup_key.as_str()).collect();
    assert_eq!(keys.len(), jobs.len());
    cluster.wait_converged().await;
}

/// The original design's first iteration: the same crontab line on every
/// peer, `sgnode submit --dedup-key 'tick@{{second}}'`, gives one run per
/// tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crontab_lines_on_every_peer_run_once_per_tick() {
    let cluster = TestCluster::start(spec());
    cluster.wait_leader().await;
    let dir = cluster.dir.path().to_path_buf();
    let mut rounds = Vec::new();
    for _ in 0..6 {
        // Wake just after the next second boundary, like cron does.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let to_next = Duration::from_millis(1000 - u64::from(now.subsec_millis()) + 50);
        tokio::time::sleep(to_next).await;
        let mut handles = Vec::new();
        for peer in 1..=cluster.size() {
            let url = cluster.url(peer);
            let dir = dir.clone();
            handles.push(std::thread::spawn(move || {
                cli(
                    &[
                        "submit",
                        "--url",
                        &url,
                        "--token",
                        TOKEN,
                        "--json",
                        "--name",
                        "crontab",
                        "--dedup-key",
                        "crontab@{{second}}",
                        "--",
                        "true",
                    ],
                    &dir,
                )
            }));
        }
        let answers: Vec<(i32, String, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        rounds.push(answers);
    }
    let mut ids_per_round = Vec::new();
    for answers in &rounds {
        let ids: std::collections::BTreeSet<String> = answers
            .iter()
            .map(|(code, out, err)| {
                assert_eq!(*code, 0, "{out} {err}");
                let v: serde_json::Value = serde_json::from_str(out).expect("json answer");
                v["id"].as_str().expect("id").to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1, "three peers, one tick, but jobs {ids:?}");
        ids_per_round.push(ids.into_iter().next().unwrap());
    }
    let distinct: std::collections::BTreeSet<&String> = ids_per_round.iter().collect();
    assert_eq!(distinct.len(), rounds.len(), "each tick is its own job");
    let jobs = jobs_named(&cluster, 1, "crontab").await;
    assert_eq!(jobs.len(), rounds.len());
    assert!(jobs.iter().all(|j| j.dedup_key.starts_with("crontab@20")), "{jobs:?}");
    // A template error is a submit-time error (exit 2), not a job.
    let (code, _, err) = cli(
        &["submit", "--url", &cluster.url(1), "--name", "x", "--dedup-key", "k@{{sec}}", "--", "true"],
        &dir,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dedup_key") && err.contains("unknown variable `sec`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_files_backfill_and_bad_input() {
    let cluster = TestCluster::start(spec());
    let leader = cluster.wait_leader().await;
    let dir = cluster.dir.path().to_path_buf();
    let url = cluster.url(cluster.follower_of(leader));
    let file = dir.join("schedules.toml");
    write(
        &file,
        "[[schedule]]\nname = \"daily\"\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n\
         [schedule.job]\ncommand = [\"echo\", \"{{date}}\", \"{{date-1d}}\"]\n",
    );
    let apply =
        |url: &str| cli(&["schedule", "apply", "--url", url, "--token", TOKEN, file.to_str().unwrap()], &dir);
    let (code, out, err) = apply(&url);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("created"), "{out}");
    let (code, out, _) = apply(&cluster.url(leader));
    assert_eq!(code, 0);
    assert!(out.contains("unchanged"), "re-applying is a no-op: {out}");
    let (code, out, _) = cli(&["schedule", "list", "--url", &url], &dir);
    assert_eq!(code, 0);
    assert!(out.contains("daily") && out.contains("02:30:00+01:00"), "next fire in Berlin time: {out}");

    let backfill = || {
        cli(
            &[
                "backfill",
                "daily",
                "--url",
                &url,
                "--token",
                TOKEN,
                "--json",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
            ],
            &dir,
        )
    };
    let (code, out, err) = backfill();
    assert_eq!(code, 0, "{out} {err}");
    let first: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((first["runs"].as_u64(), first["submitted"].as_u64()), (Some(30), Some(30)), "{out}");
    let (code, out, _) = backfill();
    assert_eq!(code, 0);
    let second: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((second["submitted"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(30)), "{out}");
    let jobs = jobs_named(&cluster, leader, "daily").await;
    assert_eq!(jobs.len(), 30);
    let nov15 = jobs.iter().find(|j| j.dedup_key == "daily@backfill:2026-11-15").expect("Nov 15");
    assert_eq!(nov15.command, vec!["echo", "2026-11-15", "2026-11-14"]);

    // Bad definitions: a 400 naming the field, exit code 2, nothing stored.
    for (text, field) in [
        ("[[schedule]]\nname='b'\ncron='61 * * * *'\n[schedule.job]\ncommand=['x']\n", "schedule[b].cron"),
        (
            "[[schedule]]\nname='b'\ncron='* * * * *'\ntimezone='Mars/Base'\n[schedule.job]\ncommand=['x']\n",
            "schedule[b].timezone",
        ),
        (
            "[[schedule]]\nname='b'\ncron='* * * * *'\n[schedule.job]\ncommand=['{{tomorrow}}']\n",
            "schedule[b].job.command[0]",
        ),
    ] {
        write(&file, text);
        let (code, out, err) = apply(&url);
        assert_eq!(code, 2, "{text}: {out} {err}");
        assert!(err.contains(field), "{field} not named in {err}");
    }
    write(&file, "[[schedule]]\nname='b'\ncron='* * * * *'\nwhen='now'\n[schedule.job]\ncommand=['x']\n");
    let (code, _, err) = apply(&url);
    assert_ne!(code, 0);
    assert!(err.contains("when"), "{err}");
    let views: Vec<ScheduleView> = cluster.client(leader).get_json("schedules").await.expect("list");
    assert_eq!(views.len(), 1, "bad files stored nothing");
    let (code, _, _) = cli(&["schedule", "rm", "nope", "--url", &url, "--token", TOKEN], &dir);
    assert_eq!(code, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn induced_job_fires_once_when_all_inputs_exist() {
    let cluster = TestCluster::start(spec());
    let leader = cluster.wait_leader().await;
    let dir = cluster.dir.path().to_path_buf();
    let markers = dir.join("markers");
    let file = dir.join("induced.toml");
    write(
        &file,
        &format!(
            "[[induced]]\nname = \"join\"\ninputs = [\"dataset:logs/{{{{date}}}}\", \"file:{}/{{{{date}}}}/_SUCCESS\"]\n\
             params = [\"date\"]\nlookback_days = 0\n[induced.job]\ncommand = [\"echo\", \"joined\", \"{{{{date}}}}\"]\n",
            markers.display()
        ),
    );
    let url = cluster.url(cluster.follower_of(leader));
    let (code, out, err) =
        cli(&["schedule", "apply", "--url", &url, "--token", TOKEN, file.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{out} {err}");
    let publish = || {
        cli(
            &["publish", "logs/{{date}}", "--param", "date=2026-12-01", "--url", &url, "--token", TOKEN],
            &dir,
        )
    };
    let (code, out, err) = publish();
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("logs/2026-12-01"), "{out}");

    // One input of two: nothing fires.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(jobs_named(&cluster, leader, "join").await.is_empty(), "fired with an input missing");
    let view: InducedView = cluster.client(leader).get_json("induced").await.expect("induced");
    let set =
        view.sets.iter().find(|s| s.params.get("date").map(String::as_str) == Some("2026-12-01")).unwrap();
    assert_eq!(set.missing.len(), 1);
    assert!(set.missing[0].ends_with("2026-12-01/_SUCCESS"), "{set:?}");
    let (code, out, _) = cli(&["induced", "list", "--url", &url], &dir);
    assert_eq!(code, 0);
    assert!(out.contains("waiting for file:"), "{out}");

    std::fs::create_dir_all(markers.join("2026-12-01")).unwrap();
    write(&markers.join("2026-12-01/_SUCCESS"), "");
    let job = wait_until("the induced job", Duration::from_secs(15), || async {
        jobs_named(&cluster, leader, "join").await.into_iter().next()
    })
    .await;
    assert_eq!(job.command, vec!["echo", "joined", "2026-12-01"]);
    assert_eq!(job.dedup_key, "join@date=2026-12-01");

    // Re-publishing inside the dedup window does not run it again.
    let (code, _, _) = publish();
    assert_eq!(code, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(jobs_named(&cluster, leader, "join").await.len(), 1);
    }
}
