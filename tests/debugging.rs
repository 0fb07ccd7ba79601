//! Debugging from any peer, on real 3-peer clusters: `/metrics` (parsed by
//! a Prometheus parser, counters moving as jobs run), `logs --follow`
//! streaming from a peer that does not run the job, the web dashboard in
//! real headless Chromium, history filters with cursor paging, and full
//! logs from `shared_log_dir` after the worker that ran the job died.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sgnode::api::views::{BatchItem, BatchSubmitRequest, JobView, SubmitRequest};
use sgnode::queue::JobState;
use util::*;

fn shell(name: &str, script: &str) -> SubmitRequest {
    SubmitRequest::new(name, vec!["sh".into(), "-c".into(), script.into()])
}

async fn wait_terminal(cluster: &TestCluster, via: u64, id: &str, timeout: Duration) -> JobView {
    wait_until(&format!("job {id} to end"), timeout, || async move {
        cluster.client(via).status(id).await.ok().filter(|j| j.state.is_terminal())
    })
    .await
}

async fn fetch_metrics(url: &str) -> (String, prometheus_parse::Scrape) {
    let response = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    let text = response.text().await.expect("metrics body");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("metrics parse");
    (text, scrape)
}

/// The value of `metric` with `label` = `value` (or unlabelled when None).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    use prometheus_parse::Value;
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {metric} {label:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{metric} is not a plain value: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_jobs_on_every_peer() {
    let cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;

    let (text, scrape) = fetch_metrics(&cluster.url(2)).await;
    // Strict: every line is a HELP/TYPE comment or a sample the parser took.
    let sample_lines = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(sample_lines, parsed, "every sample line parses:\n{text}");
    for line in text.lines().filter(|l| l.starts_with('#')) {
        assert!(line.starts_with("# HELP sgnode_") || line.starts_with("# TYPE sgnode_"), "{line}");
    }
    assert!(scrape.docs.contains_key("sgnode_queue_depth"));
    assert_eq!(value(&scrape, "sgnode_raft_leader_id", None), leader as f64);
    assert_eq!(value(&scrape, "sgnode_jobs_submitted_total", None), 0.0);

    let mut ids = Vec::new();
    for i in 0..5 {
        let job = SubmitRequest {
            dedup_key: Some(format!("m{i}")),
            ..SubmitRequest::new("metered", vec!["true".into()])
        };
        ids.push(cluster.client(1 + i % 3).submit(&job, i as u128 + 1).await.expect("submit").id);
    }
    let dup =
        SubmitRequest { dedup_key: Some("m0".into()), ..SubmitRequest::new("again", vec!["true".into()]) };
    assert!(cluster.client(3).submit(&dup, 100).await.expect("duplicate").duplicate);
    let huge = SubmitRequest { slots: Some(1000), ..SubmitRequest::new("huge", vec!["true".into()]) };
    let refused = cluster.client(2).submit(&huge, 101).await.expect_err("unschedulable");
    assert_eq!(refused.status(), Some(422));
    for id in &ids {
        assert_eq!(wait_terminal(&cluster, 1, id, Duration::from_secs(30)).await.state, JobState::Succeeded);
    }

    // Every replica derives the same counters from the log it applied.
    for peer in 1..=cluster.size() {
        let url = cluster.url(peer);
        let scrape = wait_until(&format!("peer {peer}'s counters"), Duration::from_secs(15), || {
            let url = url.clone();
            async move {
                let (_, s) = fetch_metrics(&url).await;
                (value(&s, "sgnode_attempts_finished_total", Some(("outcome", "succeeded"))) == 5.0)
                    .then_some(s)
            }
        })
        .await;
        assert_eq!(value(&scrape, "sgnode_jobs_submitted_total", None), 5.0, "peer {peer}");
        assert_eq!(value(&scrape, "sgnode_dedup_hits_total", None), 1.0);
        assert_eq!(value(&scrape, "sgnode_submits_rejected_total", Some(("reason", "unschedulable"))), 1.0);
        assert_eq!(value(&scrape, "sgnode_assignments_total", None), 5.0);
        assert_eq!(value(&scrape, "sgnode_attempts_started_total", None), 5.0);
        assert_eq!(value(&scrape, "sgnode_jobs", Some(("state", "succeeded"))), 5.0);
        assert_eq!(value(&scrape, "sgnode_queue_depth", None), 0.0);
        assert_eq!(value(&scrape, "sgnode_submit_to_start_seconds_count", None), 5.0);
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == "sgnode_submit_to_start_seconds")
            .expect("latency histogram");
        match &histogram.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf bucket");
                assert_eq!(inf.count, 5.0);
            }
            other => panic!("not a histogram: {other:?}"),
        }
        assert!(value(&scrape, "sgnode_raft_term", None) >= 1.0);
        assert!(value(&scrape, "sgnode_raft_applied_index", None) > 0.0);
        assert_eq!(value(&scrape, "sgnode_node_slots", Some(("node", "1"))), 2.0);
        assert_eq!(value(&scrape, "sgnode_node_slots_used", Some(("node", "3"))), 0.0);
        assert_eq!(value(&scrape, "sgnode_raft_is_leader", None), if peer == leader { 1.0 } else { 0.0 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_live_from_a_peer_that_does_not_run_the_job() {
    let cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    let job = shell("ticker", "i=0; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); sleep 0.2; done");
    let id = cluster.client(1).submit(&job, 1).await.expect("submit").id;
    let cluster = &cluster;
    let worker = wait_until("the job to run", Duration::from_secs(20), || {
        let id = id.clone();
        async move {
            let j = cluster.client(1).status(&id).await.ok()?;
            (j.state == JobState::Running).then(|| j.attempts.last().map(|a| a.node)).flatten()
        }
    })
    .await;
    let via = (1..=cluster.size()).find(|&p| p != worker).expect("another peer");

    let mut child = spawn_follow(&id, &cluster.url(via));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    let state_at_first_line = cluster.client(via).status(&id).await.expect("status").state;
    if first.is_err() {
        signal(child.id(), "KILL");
    }
    assert_eq!(first.as_deref().ok(), Some("line 0"), "first streamed line");
    assert!(!state_at_first_line.is_terminal(), "a line arrived while the job was {state_at_first_line}");

    // The follow ends by itself when the job ends (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            signal(child.id(), "KILL");
            panic!("logs --follow did not end after the job ended");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    reader.join().expect("reader thread");
    assert!(status.success(), "logs --follow exited with {status}");
    let rest: Vec<String> = rx.try_iter().collect();
    let expected: Vec<String> = (1..20).map(|i| format!("line {i}")).collect();
    assert_eq!(rest, expected, "every line once, in order");
    let ended = wait_terminal(cluster, via, &id, Duration::from_secs(5)).await;
    assert_eq!(ended.state, JobState::Succeeded);
    assert_eq!(ended.attempts.last().map(|a| a.node), Some(worker));
}

/// Runs headless Chromium on `url` with `extra` flags, bounded, and returns
/// its stdout. Fails (never skips) when Chromium is missing.
fn chromium(dir: &Path, url: &str, extra: &[&str]) -> String {
    let binary = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new("which").arg(b).output().is_ok_and(|o| o.status.success()))
        .expect("chromium is missing: `apt-get install -y chromium` (.ci/run does it)");
    let profile = tempfile::tempdir_in(dir).expect("profile dir");
    let out_path = dir.join(format!("chromium-{}.out", rand_suffix()));
    let out = std::fs::File::create(&out_path).expect("chromium output file");
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait chromium") {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            signal(child.id(), "KILL");
            let _ = child.wait();
            panic!("chromium hung on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(&out_path).unwrap_or_default()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_cluster_jobs_and_logs_in_headless_chromium() {
    let cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let job = shell("dashboard-demo", "echo hello-from-the-dashboard-job");
    let id = cluster.client(1).submit(&job, 1).await.expect("submit").id;
    assert_eq!(wait_terminal(&cluster, 1, &id, Duration::from_secs(30)).await.state, JobState::Succeeded);
    let page = cluster.follower_of(leader);
    cluster.wait_converged().await;

    let dir = cluster.dir.path().to_path_buf();
    let base = cluster.url(page);
    // Without a token the page loads but the data does not: it says why.
    let locked = tokio::task::spawn_blocking({
        let (dir, base) = (dir.clone(), base.clone());
        move || chromium(&dir, &format!("{base}/"), &["--dump-dom"])
    })
    .await
    .expect("chromium task");
    assert!(locked.contains("needs a token"), "token prompt shown:\n{locked}");
    assert!(!locked.contains("dashboard-demo"), "no data without a token:\n{locked}");

    // The token travels in the URL fragment, which browsers never send.
    let dom = tokio::task::spawn_blocking({
        let (dir, base) = (dir.clone(), base.clone());
        move || chromium(&dir, &format!("{base}/#token={TOKEN}"), &["--dump-dom"])
    })
    .await
    .expect("chromium task");
    assert!(dom.contains(&format!("id=\"leader\">peer {leader}<")), "leader shown:\n{dom}");
    assert!(dom.contains("dashboard-demo"), "job listed:\n{dom}");
    assert!(dom.contains(&format!("href=\"#/jobs/{id}\"")), "job linked:\n{dom}");
    assert!(dom.contains("no schedules"), "schedules view:\n{dom}");

    let job_dom = tokio::task::spawn_blocking({
        let (dir, base, id) = (dir.clone(), base.clone(), id.clone());
        move || chromium(&dir, &format!("{base}/#/jobs/{id}&token={TOKEN}"), &["--dump-dom"])
    })
    .await
    .expect("chromium task");
    assert!(job_dom.contains("hello-from-the-dashboard-job"), "job log shown:\n{job_dom}");
    assert!(job_dom.contains("succeeded"), "attempt outcome shown:\n{job_dom}");

    let shot = dir.join("dashboard.png");
    tokio::task::spawn_blocking({
        let (dir, base, shot) = (dir.clone(), base.clone(), shot.clone());
        move || {
            chromium(
                &dir,
                &format!("{base}/#token={TOKEN}"),
                &[&format!("--screenshot={}", shot.display()), "--window-size=1400,900"],
            )
        }
    })
    .await
    .expect("chromium task");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..").join("dashboard.png");
    std::fs::write(&keep, &png).expect("keep the screenshot under target/");
}

fn page_ids(jobs: &[JobView]) -> Vec<u64> {
    jobs.iter().map(|j| j.id.parse().expect("numeric id")).collect()
}

/// Pages through `GET /api/v1/jobs` with `filters`, `limit` at a time.
async fn all_pages(
    cluster: &TestCluster,
    via: u64,
    filters: &[(&str, String)],
    limit: usize,
) -> Vec<JobView> {
    let mut out: Vec<JobView> = Vec::new();
    loop {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        query.push(("limit", limit.to_string()));
        if let Some(last) = out.last() {
            query.push(("before", last.id.clone()));
        }
        let page = cluster.client(via).history(&query).await.expect("history page");
        let done = page.len() < limit;
        out.extend(page);
        if done {
            return out;
        }
    }
}

fn millis(rfc3339: &str) -> u64 {
    let t = humantime::parse_rfc3339(rfc3339).expect("RFC 3339 timestamp");
    t.duration_since(std::time::UNIX_EPOCH).expect("after epoch").as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_page_every_job_exactly_once() {
    let cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    // A few jobs that run, to filter by node.
    let ran = BatchSubmitRequest {
        jobs: (0..30)
            .map(|i| SubmitRequest {
                dedup_key: Some(format!("r{i}")),
                ..SubmitRequest::new("ran", vec!["true".into()])
            })
            .collect(),
    };
    let ran_ids = ids(&cluster.client(1).submit_batch(&ran, 1).await.expect("batch"));
    for id in &ran_ids {
        wait_terminal(&cluster, 1, id, Duration::from_secs(60)).await;
    }
    // Then thousands that stay queued, in batches at different times.
    cluster.client(1).set_paused(true).await.expect("pause");
    for b in 0..6u32 {
        let batch = BatchSubmitRequest {
            jobs: (0..500)
                .map(|i| SubmitRequest {
                    dedup_key: Some(format!("q{b}-{i}")),
                    ..SubmitRequest::new(if i % 2 == 0 { "even" } else { "odd" }, vec!["true".into()])
                })
                .collect(),
        };
        cluster.client(1 + u64::from(b) % 3).submit_batch(&batch, 10 + u128::from(b)).await.expect("batch");
    }
    cluster.wait_converged().await;

    let everything = all_pages(&cluster, 2, &[], 137).await;
    let all_ids = page_ids(&everything);
    assert_eq!(all_ids.len(), 3030);
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");

    // since (RFC 3339, inclusive) and until (ms, exclusive) around the middle.
    let since_text = everything[2000].submitted_at.clone();
    let until_ms = millis(&everything[600].submitted_at);
    let expected: Vec<u64> = everything
        .iter()
        .filter(|j| millis(&j.submitted_at) >= millis(&since_text) && millis(&j.submitted_at) < until_ms)
        .map(|j| j.id.parse().expect("id"))
        .collect();
    assert!(!expected.is_empty() && expected.len() < 3030);
    let window =
        all_pages(&cluster, 3, &[("since", since_text.clone()), ("until", until_ms.to_string())], 97).await;
    assert_eq!(page_ids(&window), expected, "since/until pages hold each job exactly once");
    let odd = all_pages(&cluster, 1, &[("name", "odd".into()), ("since", since_text)], 61).await;
    assert!(odd.iter().all(|j| j.name == "odd"));

    // node: every job that ran is on exactly one node's pages.
    let mut seen = BTreeSet::new();
    for node in 1..=cluster.size() {
        for job in all_pages(&cluster, node, &[("node", node.to_string())], 7).await {
            assert_eq!(job.attempts.last().map(|a| a.node), Some(node));
            assert!(seen.insert(job.id.clone()), "job {} listed twice", job.id);
        }
    }
    assert_eq!(seen, ran_ids.into_iter().collect::<BTreeSet<_>>());

    let (code, _, err) =
        cli(&["history", "--url", &cluster.url(1), "--since", "yesterday"], cluster.dir.path());
    assert_eq!(code, 2, "bad --since is an invalid request: {err}");
    let (code, out, _) = cli(
        &["history", "--url", &cluster.url(1), "--node", "1", "--json", "--limit", "100"],
        cluster.dir.path(),
    );
    assert_eq!(code, 0);
    let listed: Vec<JobView> = serde_json::from_str(&out).expect("history --json");
    assert!(listed.iter().all(|j| j.attempts.iter().any(|a| a.node == 1)));
}

fn ids(response: &sgnode::api::views::BatchSubmitResponse) -> Vec<String> {
    response
        .results
        .iter()
        .map(|r| match r {
            BatchItem::Ok(s) => s.id.clone(),
            BatchItem::Err(e) => panic!("refused: {:?}", e.error),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_log_dir_serves_the_full_log_after_its_worker_is_killed() {
    // Relative: resolved against the cluster file's (temp) directory, which
    // all three peers share.
    let spec = ClusterSpec { extra: "shared_log_dir = \"shared-logs\"".into(), ..ClusterSpec::default() };
    let mut cluster = TestCluster::start(spec);
    cluster.wait_leader().await;
    // ~250 KB of output: far more than the 64 KiB tail the job record keeps.
    let lines = 20_000;
    let job = shell(
        "chatty",
        &format!("echo to-stderr >&2; i=0; while [ $i -lt {lines} ]; do echo \"line $i\"; i=$((i+1)); done"),
    );
    let id = cluster.client(1).submit(&job, 1).await.expect("submit").id;
    let ended = wait_terminal(&cluster, 1, &id, Duration::from_secs(60)).await;
    assert_eq!(ended.state, JobState::Succeeded);
    let worker = ended.attempts.last().expect("an attempt").node;
    let via = cluster.follower_of(worker);
    // The reader's replica must know the attempt ended before the worker dies.
    wait_terminal(&cluster, via, &id, Duration::from_secs(15)).await;

    cluster.kill(worker);
    let (code, out, err) = cli(&["logs", &id, "--url", &cluster.url(via)], cluster.dir.path());
    assert_eq!(code, 0, "sgnode logs: {err}");
    assert!(!err.contains("last 64 KiB"), "not marked as a tail: {err}");
    let mut expected = vec!["to-stderr".to_string()];
    expected.extend((0..lines).map(|i| format!("line {i}")));
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), expected.len(), "every line of stdout and stderr");
    assert!(got.iter().zip(&expected).all(|(a, b)| a == b), "every line, in order");
    let (source, _) = cluster.client(via).logs(&id, None).await.expect("logs via the API");
    assert_eq!(source, "shared");

    // Only the renamed copy is there: no temporary file left behind.
    let job_dir = cluster.dir.path().join("shared-logs").join(&id);
    let names: Vec<String> = std::fs::read_dir(&job_dir)
        .expect("the job's shared log dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["1.log".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_of_a_queued_job_waits_for_it_to_start() {
    let cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    let client = cluster.client(1);
    client.set_paused(true).await.expect("pause placement");
    let id = client.submit(&shell("later", "echo started late"), 1).await.expect("submit").id;
    let mut child = spawn_follow(&id, &cluster.url(2));
    // Observation window: a second in which the follow must not give up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = child.try_wait().expect("try_wait");
    client.set_paused(false).await.expect("resume placement");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if child.try_wait().expect("wait").is_none() {
        signal(child.id(), "KILL");
    }
    let out = child.wait_with_output().expect("output");
    assert!(waiting.is_none(), "logs --follow gave up on a queued job: {waiting:?}");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started late\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for it to start"));
}

/// `sgnode logs ID --follow` through `url`, output piped.
fn spawn_follow(id: &str, url: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sgnode"))
        .args(["logs", id, "--follow", "--url", url])
        .env_remove("SGNODE_URL")
        .env("SGNODE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sgnode logs --follow")
}
