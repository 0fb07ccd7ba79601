//! Multi-process tests of the replicated funnel: real `sgnode serve`
//! processes, real HTTP, real sled files, kill -9 and restarts.

mod util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sgnode::api::views::{BatchItem, BatchSubmitRequest, SubmitRequest};
use sgnode::queue::JobState;
use util::*;

fn job(name: &str, key: Option<String>) -> SubmitRequest {
    SubmitRequest { dedup_key: key, ..SubmitRequest::new(name, vec!["true".into()]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_leader_kill_and_full_restart() {
    let mut cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower_of(leader);

    // Submit through a follower: forwarded to the leader transparently.
    let first =
        cluster.client(follower).submit(&job("etl", Some("nightly@1".into())), 1).await.expect("submit");
    assert!(!first.duplicate);
    assert_eq!(first.state, JobState::Queued);
    // Read-your-write on the same follower.
    let seen = cluster.client(follower).status(&first.id).await.expect("status on follower");
    assert_eq!(seen.dedup_key, "nightly@1");
    // Same key from another peer, different request: the same job, marked duplicate.
    let dup =
        cluster.client(leader).submit(&job("etl-again", Some("nightly@1".into())), 2).await.expect("dup");
    assert_eq!((dup.id.as_str(), dup.duplicate), (first.id.as_str(), true));

    let mut acked = vec![first.id.clone()];
    for i in 0..30 {
        let via = 1 + (i % cluster.size());
        let r = cluster.client(via).submit(&job("burst", Some(format!("burst-{i}"))), 100 + i as u128).await;
        acked.push(r.expect("submit in burst").id);
    }

    cluster.kill(leader);
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    for id in 1..=cluster.size() {
        if !cluster.is_running(id) {
            continue;
        }
        for job_id in &acked {
            cluster
                .client(id)
                .status(job_id)
                .await
                .unwrap_or_else(|e| panic!("job {job_id} lost on peer {id}: {e}"));
        }
    }
    // Writes keep working with one peer down.
    let after = cluster
        .client(new_leader)
        .submit(&job("after-failover", None), 500)
        .await
        .expect("submit after failover");
    acked.push(after.id);

    // The killed peer comes back and catches up.
    cluster.start_peer(leader);
    cluster.wait_converged().await;

    // Full stop (clean) and restart: nothing acknowledged is lost, and the
    // restart does not re-initialise the cluster.
    for id in 1..=cluster.size() {
        let status = cluster.stop(id).expect("peer was running");
        assert!(status.success(), "peer {id} exited with {status}");
    }
    for id in 1..=cluster.size() {
        cluster.start_peer(id);
    }
    cluster.wait_leader().await;
    let digest = cluster.wait_converged().await;
    assert_eq!(digest.len(), 64);
    let history = cluster.client(2).history(&[("limit", "1000".into())]).await.expect("history");
    for job_id in &acked {
        assert!(history.iter().any(|j| &j.id == job_id), "job {job_id} missing after full restart");
    }
    assert_eq!(history.len(), acked.len(), "no job appeared twice or out of nowhere");
    // The dedup key still holds across restarts.
    let again =
        cluster.client(3).submit(&job("etl", Some("nightly@1".into())), 3).await.expect("dup after restart");
    assert!(again.duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_of_all_peers_keeps_acknowledged_jobs() {
    let mut cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    let request =
        BatchSubmitRequest { jobs: (0..200).map(|i| job("batch", Some(format!("b{i}")))).collect() };
    let response = cluster.client(1).submit_batch(&request, 7).await.expect("batch");
    let ids: Vec<String> = response
        .results
        .iter()
        .map(|r| match r {
            BatchItem::Ok(s) => s.id.clone(),
            BatchItem::Err(e) => panic!("batch item refused: {:?}", e.error),
        })
        .collect();
    // No clean shutdown anywhere: durability must come from the fsynced log.
    for id in 1..=cluster.size() {
        cluster.kill(id);
    }
    for id in 1..=cluster.size() {
        cluster.start_peer(id);
    }
    cluster.wait_leader().await;
    cluster.wait_converged().await;
    for id in &ids {
        cluster
            .client(2)
            .status(id)
            .await
            .unwrap_or_else(|e| panic!("job {id} lost after kill -9 of all: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_refuses_writes_with_503_instead_of_hanging() {
    let mut cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let survivor = cluster.follower_of(leader);
    for id in 1..=cluster.size() {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let started = Instant::now();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/v1/jobs", cluster.url(survivor)))
        .bearer_auth(TOKEN)
        .json(&job("lonely", None))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the survivor answers");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.expect("json error body");
    assert_eq!(body["error"]["code"], "no_quorum");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // Reads still work on the survivor.
    cluster.client(survivor).history(&[]).await.expect("reads work without quorum");
    // The CLI maps it to exit code 6 (when told not to wait).
    let url = cluster.url(survivor);
    let (code, _, err) = cli(
        &["submit", "--url", &url, "--token", TOKEN, "--retry-for", "0", "--name", "x", "--", "true"],
        cluster.dir.path(),
    );
    assert_eq!(code, 6, "stderr: {err}");
    // By default it keeps trying (same request id) and succeeds once a
    // quorum is back: one job, not one per try.
    let waiting = std::process::Command::new(env!("CARGO_BIN_EXE_sgnode"))
        .args([
            "submit",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--retry-for",
            "60s",
            "--name",
            "patient",
            "--",
            "true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the CLI");
    // An outage of a couple of seconds for the CLI to sit through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_peer(leader);
    let out =
        tokio::task::spawn_blocking(move || waiting.wait_with_output()).await.expect("join").expect("CLI");
    assert!(
        out.status.success(),
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = cluster.client(survivor).history(&[("name", "patient".to_string())]).await.expect("history");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_id_returns_the_first_answer() {
    let cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower_of(leader);
    let request_id = 0xfeed_u128;
    let first = cluster.client(follower).submit(&job("once", None), request_id).await.expect("first");
    let retry = cluster.client(leader).submit(&job("once", None), request_id).await.expect("retry");
    // A retry is not a duplicate: it is the same request, answered as the
    // first time (the state may have moved on since).
    assert_eq!((first.id.as_str(), first.duplicate), (retry.id.as_str(), false));
    let jobs = cluster.client(leader).history(&[("name", "once".into())]).await.expect("history");
    assert_eq!(jobs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_specific_errors_and_changes_nothing() {
    let cluster = TestCluster::start(ClusterSpec {
        voters: 1,
        extra: "max_queued = 2\n".into(),
        ..ClusterSpec::default()
    });
    cluster.wait_leader().await;
    let url = cluster.url(1);
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, token: Option<&str>| {
        let mut req =
            http.post(format!("{url}/api/v1/jobs")).body(body).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let check = |status: u16, code: &'static str, needle: &'static str| {
        move |r: reqwest::Response| async move {
            assert_eq!(r.status().as_u16(), status);
            let body: serde_json::Value = r.json().await.expect("json error");
            assert_eq!(body["error"]["code"], code, "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
            assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
        }
    };
    check(400, "invalid_request", "JSON")(post(b"{not json".to_vec(), Some(TOKEN)).await.unwrap()).await;
    check(400, "invalid_request", "name")(
        post(br#"{"command":["true"]}"#.to_vec(), Some(TOKEN)).await.unwrap(),
    )
    .await;
    check(400, "invalid_request", "name")(
        post(br#"{"name":"","command":["true"]}"#.to_vec(), Some(TOKEN)).await.unwrap(),
    )
    .await;
    check(400, "invalid_request", "priorty")(
        post(br#"{"name":"x","command":["true"],"priorty":1}"#.to_vec(), Some(TOKEN)).await.unwrap(),
    )
    .await;
    check(400, "invalid_request", "params.9x")(
        post(br#"{"name":"x","command":["true"],"params":{"9x":"v"}}"#.to_vec(), Some(TOKEN)).await.unwrap(),
    )
    .await;
    // A body over the limit is refused from its Content-Length, before it is
    // read (so a client still sending it may see the connection close).
    let head = too_large_head(&url, 5 * 1024 * 1024);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("request_too_large"), "{head}");
    check(401, "unauthorized", "token")(
        post(br#"{"name":"x","command":["true"]}"#.to_vec(), None).await.unwrap(),
    )
    .await;
    check(401, "unauthorized", "token")(
        post(br#"{"name":"x","command":["true"]}"#.to_vec(), Some("wrong")).await.unwrap(),
    )
    .await;
    // Raft RPCs are guarded too.
    let raft = http.post(format!("{url}/raft/vote")).body(vec![1, 2, 3]).send().await.unwrap();
    assert_eq!(raft.status().as_u16(), 401);
    let raft =
        http.post(format!("{url}/raft/vote")).bearer_auth(TOKEN).body(vec![1, 2, 3]).send().await.unwrap();
    assert_eq!(raft.status().as_u16(), 400, "garbage raft bodies are refused, not fatal");
    check(404, "not_found", "999")(
        http.get(format!("{url}/api/v1/jobs/999")).bearer_auth(TOKEN).send().await.unwrap(),
    )
    .await;
    check(400, "invalid_request", "state")(
        http.get(format!("{url}/api/v1/jobs?state=sleeping")).bearer_auth(TOKEN).send().await.unwrap(),
    )
    .await;
    // None of that created a job, and the peer is still healthy.
    let jobs = cluster.client(1).history(&[]).await.expect("history");
    assert!(jobs.is_empty(), "bad requests created {jobs:?}");

    // The queue bound (max_queued = 2) refuses with 429 queue_full. The
    // peer's two slots are taken by sleepers first, so the rest stays queued.
    let client = cluster.client(1);
    wait_until("replicated max_queued", Duration::from_secs(10), || async {
        (client.local().await.ok()?.settings.max_queued == 2).then_some(())
    })
    .await;
    for i in 0..2 {
        let sleeper = SubmitRequest::new(&format!("sleeper{i}"), vec!["sleep".into(), "60".into()]);
        let s = client.submit(&sleeper, 20 + i).await.expect("sleeper");
        wait_until("the sleeper to run", Duration::from_secs(20), || async {
            (client.status(&s.id).await.ok()?.state == JobState::Running).then_some(())
        })
        .await;
    }
    // A job larger than any peer is refused outright, not queued forever.
    let big =
        client.submit(&SubmitRequest { slots: Some(3), ..job("big", None) }, 30).await.expect_err("too big");
    assert_eq!((big.status(), big.code()), (Some(422), Some("unschedulable")));
    client.submit(&job("fill", Some("fill-a".into())), 11).await.expect("first fits");
    client.submit(&job("fill", Some("fill-b".into())), 12).await.expect("second fits");
    let full = client.submit(&job("fill", Some("fill-c".into())), 13).await.expect_err("third is refused");
    assert_eq!((full.status(), full.code()), (Some(429), Some("queue_full")));
    // ...and the CLI exits with 5.
    let (code, _, err) =
        cli(&["submit", "--url", &url, "--token", TOKEN, "--name", "x", "--", "true"], cluster.dir.path());
    assert_eq!(code, 5, "stderr: {err}");
    assert!(err.contains("queue is full"), "{err}");
    // Duplicates are still answered when full.
    let dup = client.submit(&job("fill", Some("fill-a".into())), 14).await.expect("dup while full");
    assert!(dup.duplicate);
    // Other CLI exit codes.
    let (code, _, _) = cli(&["status", "--url", &url, "424242"], cluster.dir.path());
    assert_eq!(code, 4);
    let (code, _, _) =
        cli(&["submit", "--url", &url, "--token", "nope", "--name", "x", "--", "true"], cluster.dir.path());
    assert_eq!(code, 3);
}

/// Sends only the head of a huge POST and returns the raw answer.
fn too_large_head(url: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).expect("read answer");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[test]
fn unknown_config_key_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        "max_queud = 3\n[[peer]]\nid = 1\naddress = \"127.0.0.1:1\"\ndata_dir = \"p1\"\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["serve", "--config", config.to_str().unwrap(), "--id", "1"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("max_queud"), "the error names the key: {err}");
    let (code, _, err) = cli(&["serve", "--config", "/nonexistent/cluster.toml", "--id", "1"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/cluster.toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_replicates_serves_reads_and_forwards_writes() {
    let cluster = TestCluster::start(ClusterSpec { learners: 1, ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let learner = cluster.client(4);
    wait_until("peer 4 to join as a learner", Duration::from_secs(20), || async {
        let view = learner.local().await.ok()?;
        (view.role == "learner" && view.leader.is_some()).then_some(())
    })
    .await;
    let submitted = learner.submit(&job("via-learner", None), 77).await.expect("write through a learner");
    let seen = learner.status(&submitted.id).await.expect("learner reads its write");
    assert_eq!(seen.name, "via-learner");
    let nodes = cluster.client(1).nodes().await.expect("nodes");
    let four = nodes.nodes.iter().find(|n| n.id == 4).expect("peer 4 listed");
    assert!(!four.voter && four.reachable);
    assert_eq!(nodes.nodes.iter().filter(|n| n.voter).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip_with_json_output() {
    let cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let url = cluster.url(cluster.follower_of(leader));
    let dir = cluster.dir.path();
    let submit = [
        "submit",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--json",
        "--name",
        "report",
        "--param",
        "date=2026-12-04",
        "--",
        "echo",
        "hi",
    ];
    let (code, out, err) = cli(&submit, dir);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(&out).expect("submit --json");
    assert_eq!(first["duplicate"], false);
    let (_, out, _) = cli(&submit, dir);
    let second: serde_json::Value = serde_json::from_str(&out).expect("submit --json");
    assert_eq!((&second["id"], &second["duplicate"]), (&first["id"], &serde_json::Value::Bool(true)));
    let id = first["id"].as_str().expect("id is a string");
    let (code, out, _) = cli(&["status", "--url", &url, "--json", id], dir);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json");
    for field in ["id", "name", "state", "dedup_key", "submitted_at"] {
        assert!(status.get(field).is_some(), "status lacks {field}: {status}");
    }
    assert_eq!(status["params"]["date"], "2026-12-04");
    let (code, out, _) = cli(&["history", "--url", &url, "--json", "--name", "report"], dir);
    assert_eq!(code, 0);
    let history: Vec<serde_json::Value> = serde_json::from_str(&out).expect("history --json");
    assert_eq!(history.len(), 1);
    let (code, out, _) = cli(&["nodes", "--url", &url, "--json"], dir);
    assert_eq!(code, 0);
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("nodes --json");
    assert_eq!(nodes["leader"], leader);
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3));
    assert!(nodes["nodes"][0].get("last_applied").is_some());
    // It ran by now; cancelling a finished job is a conflict (exit 7).
    let client = cluster.client(leader);
    wait_until("the report job to finish", Duration::from_secs(20), || async {
        client.status(id).await.ok().filter(|j| j.state.is_terminal())
    })
    .await;
    let (code, _, err) = cli(&["cancel", "--url", &url, "--token", TOKEN, id], dir);
    assert_eq!(code, 7, "{err}");
    let (code, out, _) = cli(&["logs", "--url", &url, id], dir);
    assert_eq!((code, out.as_str()), (0, "hi\n"));
    let (code, _, err) = cli(&["history", "--url", &url, "--state", "nope"], dir);
    assert_eq!(code, 2, "{err}");
}

// ---- execution ----

const FAST_LEASE: &str = "lease = \"2s\"\nnode_timeout = \"4s\"\nretry_backoff = \"1s\"\n";

fn recorded(name: &str, record: &std::path::Path, ticks: u32) -> SubmitRequest {
    SubmitRequest::new(name, recording_job(record, ticks))
}

async fn wait_state(
    client: &sgnode::client::Client,
    id: &str,
    pred: impl Fn(JobState) -> bool,
    what: &str,
) -> sgnode::api::views::JobView {
    wait_until(what, Duration::from_secs(60), || async {
        client.status(id).await.ok().filter(|j| pred(j.state))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_jobs_run_once_each_without_overcommitting_any_peer() {
    let cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    let record = cluster.dir.path().join("record");
    let jobs: Vec<SubmitRequest> = (0..60).map(|i| recorded(&format!("cap{i}"), &record, 3)).collect();
    // Spread over all peers, in batches.
    let mut ids = Vec::new();
    for (n, chunk) in jobs.chunks(20).enumerate() {
        let via = 1 + n as u64 % cluster.size();
        let request = BatchSubmitRequest { jobs: chunk.to_vec() };
        for item in cluster.client(via).submit_batch(&request, n as u128 + 1).await.expect("batch").results {
            match item {
                BatchItem::Ok(s) => ids.push(s.id),
                BatchItem::Err(e) => panic!("refused: {:?}", e.error),
            }
        }
    }
    let client = cluster.client(2);
    wait_until("all 60 jobs to succeed", Duration::from_secs(120), || async {
        let done = client.history(&[("state", "succeeded".into()), ("limit", "100".into())]).await.ok()?;
        (done.len() == 60).then_some(())
    })
    .await;
    let lines = read_record(&record);
    let spans = attempt_spans(&lines);
    assert_eq!(spans.len(), 60, "each job ran exactly one attempt");
    assert!(spans.values().all(|s| s.3), "every attempt ran to its end");
    let max = max_concurrency(&lines);
    assert!(max.values().all(|&m| m <= 2), "a peer ran more than its 2 slots: {max:?}");
    assert!(max.len() >= 2, "work was spread over peers: {max:?}");
    for id in &ids {
        let job = client.status(id).await.expect("status");
        assert_eq!(job.attempts.len(), 1);
        assert_eq!(job.attempts[0].exit_code, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_job_reruns_elsewhere_once_without_overlap() {
    let mut cluster = TestCluster::start(ClusterSpec { extra: FAST_LEASE.into(), ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let record = cluster.dir.path().join("record");
    let id = cluster.client(1).submit(&recorded("victim", &record, 40), 1).await.expect("submit").id;
    let running = wait_state(&cluster.client(1), &id, |s| s == JobState::Running, "the job to run").await;
    let worker = running.attempts[0].node;
    cluster.kill(worker);
    let observer = cluster.follower_of(worker);
    let client = cluster.client(observer);
    let done = wait_state(&client, &id, |s| s.is_terminal(), "the job to finish elsewhere").await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempts.len(), 2, "{:?}", done.attempts);
    assert_eq!(done.attempts[0].outcome, Some(sgnode::queue::AttemptOutcome::Lost));
    assert_ne!(done.attempts[1].node, worker);
    let lines = read_record(&record);
    assert_no_overlap(&lines);
    let ends = lines.iter().filter(|l| l.kind == "end").count();
    assert_eq!(ends, 1, "exactly one complete run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_and_its_job_reruns_once() {
    let cluster = TestCluster::start(ClusterSpec { extra: FAST_LEASE.into(), ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let record = cluster.dir.path().join("record");
    let id = cluster.client(1).submit(&recorded("frozen", &record, 60), 1).await.expect("submit").id;
    let running = wait_state(&cluster.client(1), &id, |s| s == JobState::Running, "the job to run").await;
    let worker = running.attempts[0].node;
    signal(cluster.pid(worker), "STOP");
    let client = cluster.client(cluster.follower_of(worker));
    // The job moves on without the frozen worker...
    let rerun = wait_until("a second attempt", Duration::from_secs(60), || async {
        client.status(&id).await.ok().filter(|j| j.attempts.len() >= 2 && j.attempts[1].started_at.is_some())
    })
    .await;
    assert_ne!(rerun.attempts[1].node, worker);
    signal(cluster.pid(worker), "CONT");
    let done = wait_state(&client, &id, |s| s.is_terminal(), "the rerun to finish").await;
    assert_eq!(done.state, JobState::Succeeded);
    let lines = read_record(&record);
    // ...and the frozen worker's attempt was dead before the rerun started.
    assert_no_overlap(&lines);
    assert_eq!(lines.iter().filter(|l| l.kind == "end").count(), 1);
    // The worker rejoins with a new incarnation and runs jobs again.
    let after = cluster.client(worker);
    wait_until("the frozen worker to rejoin", Duration::from_secs(30), || async {
        let nodes = after.nodes().await.ok()?;
        nodes.nodes.iter().any(|n| n.id == worker && !n.lost && n.slots.is_some()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_burst_every_job_finishes_once() {
    let mut cluster = TestCluster::start(ClusterSpec { extra: FAST_LEASE.into(), ..ClusterSpec::default() });
    let leader = cluster.wait_leader().await;
    let record = cluster.dir.path().join("record");
    let request =
        BatchSubmitRequest { jobs: (0..24).map(|i| recorded(&format!("burst{i}"), &record, 3)).collect() };
    cluster.client(leader).submit_batch(&request, 1).await.expect("burst");
    wait_until("some jobs to start", Duration::from_secs(30), || async {
        (read_record(&record).iter().filter(|l| l.kind == "start").count() >= 4).then_some(())
    })
    .await;
    cluster.kill(leader);
    let survivor = cluster.follower_of(leader);
    let client = cluster.client(survivor);
    // Later submits go to the new leader while the burst drains.
    let late = client.submit(&recorded("late", &record, 1), 2).await.expect("submit after leader loss");
    cluster.start_peer(leader);
    wait_until("all 25 jobs to finish", Duration::from_secs(120), || async {
        let jobs = client.history(&[("limit", "100".into())]).await.ok()?;
        (jobs.len() == 25 && jobs.iter().all(|j| j.state.is_terminal())).then_some(jobs)
    })
    .await
    .iter()
    .for_each(|j| assert_eq!(j.state, JobState::Succeeded, "job {} {:?}", j.id, j));
    let lines = read_record(&record);
    assert_no_overlap(&lines);
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.kind == "end") {
        *ends.entry(l.job.clone()).or_default() += 1;
    }
    assert_eq!(ends.len(), 25);
    for (job, n) in &ends {
        if *n > 1 {
            let status = client.status(job).await.expect("status");
            let runs: Vec<&RecordLine> = lines.iter().filter(|l| &l.job == job && l.kind != "tick").collect();
            panic!(
                "job {job} completed {n} times: {:#?}\nrecord: {runs:?}\nkilled leader {leader}",
                status.attempts
            );
        }
    }
    assert!(ends.contains_key(&late.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cancel_retries_and_bad_commands() {
    let cluster = TestCluster::start(ClusterSpec { voters: 1, slots: 1, ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let client = cluster.client(1);
    let sleep = |name: &str, secs: &str| SubmitRequest::new(name, vec!["sleep".into(), secs.into()]);

    // Timeout kills the process group and records timed_out.
    let t = client.submit(&SubmitRequest { timeout_ms: Some(500), ..sleep("slow", "30") }, 1).await.unwrap();
    let job = wait_state(&client, &t.id, |s| s.is_terminal(), "the timeout").await;
    assert_eq!(job.state, JobState::TimedOut);
    assert!(job.attempts[0].reason.as_deref().is_some_and(|r| r.contains("timed out")), "{job:?}");

    // Cancel a running job (kills it) and a queued one (never runs).
    let running = client.submit(&sleep("hog", "30"), 2).await.unwrap();
    wait_state(&client, &running.id, |s| s == JobState::Running, "the hog to run").await;
    let queued = client.submit(&sleep("waiter", "1"), 3).await.unwrap();
    let c = client.cancel(&queued.id).await.expect("cancel queued");
    assert_eq!(c.state, JobState::Cancelled);
    let c = client.cancel(&running.id).await.expect("cancel running");
    assert_eq!(c.state, JobState::Running, "a running job is cancelled by its worker");
    let job = wait_state(&client, &running.id, |s| s.is_terminal(), "the hog to be cancelled").await;
    assert_eq!(job.state, JobState::Cancelled);
    assert!(client.status(&queued.id).await.unwrap().attempts.is_empty(), "a cancelled queued job never ran");

    // Retries with exponential backoff: fails twice, succeeds on attempt 3.
    let flaky = SubmitRequest {
        retries: Some(3),
        ..SubmitRequest::new("flaky", vec!["sh".into(), "-c".into(), "[ \"$SG_ATTEMPT\" -ge 3 ]".into()])
    };
    let f = client.submit(&flaky, 4).await.unwrap();
    let job = wait_state(&client, &f.id, |s| s.is_terminal(), "the flaky job").await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempts.len(), 3);
    let starts: Vec<std::time::SystemTime> = job
        .attempts
        .iter()
        .map(|a| humantime::parse_rfc3339(a.started_at.as_deref().expect("started")).expect("rfc3339"))
        .collect();
    let gap = |i: usize| starts[i + 1].duration_since(starts[i]).unwrap_or_default();
    assert!(gap(0) >= Duration::from_millis(1000), "first backoff {:?}", gap(0));
    assert!(gap(1) >= Duration::from_millis(2000), "second backoff doubles: {:?}", gap(1));

    // A command that does not exist fails with a clear reason.
    let bad = client.submit(&SubmitRequest::new("ghost", vec!["/no/such/binary".into()]), 5).await.unwrap();
    let job = wait_state(&client, &bad.id, |s| s.is_terminal(), "the ghost").await;
    assert_eq!(job.state, JobState::Failed);
    let reason = job.attempts[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("cannot start") && reason.contains("/no/such/binary"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_readable_from_any_peer_and_after_the_worker_dies() {
    let mut cluster = TestCluster::start(ClusterSpec { extra: FAST_LEASE.into(), ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let script = "for i in 1 2 3; do echo line $i; done; echo oops >&2; echo env $SG_JOB_ID $SG_PARAM_DAY";
    let mut request = SubmitRequest::new("talker", vec!["sh".into(), "-c".into(), script.into()]);
    request.params.insert("day".into(), "2026-12-04".into());
    let s = cluster.client(1).submit(&request, 1).await.unwrap();
    let job = wait_state(&cluster.client(1), &s.id, |st| st.is_terminal(), "the talker").await;
    let worker = job.attempts[0].node;
    let other = cluster.follower_of(worker);
    let other = if other == worker { 1 + worker % 3 } else { other };
    let expected = format!("line 1\nline 2\nline 3\noops\nenv {} 2026-12-04\n", s.id);
    let (source, text) = cluster.client(other).logs(&s.id, None).await.expect("logs via another peer");
    assert_eq!((source.as_str(), text.as_str()), ("peer", expected.as_str()));
    cluster.kill(worker);
    let (source, text) =
        cluster.client(other).logs(&s.id, Some(1)).await.expect("logs after the worker died");
    assert_eq!((source.as_str(), text.as_str()), ("tail", expected.as_str()));
    let missing = cluster.client(other).logs(&s.id, Some(9)).await.expect_err("no attempt 9");
    assert_eq!(missing.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_down_past_node_timeout_rejoins_and_gets_work() {
    let mut cluster = TestCluster::start(ClusterSpec { extra: FAST_LEASE.into(), ..ClusterSpec::default() });
    let leader = cluster.wait_leader().await;
    let worker = cluster.follower_of(leader);
    cluster.kill(worker);
    let client = cluster.client(leader);
    wait_until("the worker to be declared lost", Duration::from_secs(30), || async {
        let nodes = client.nodes().await.ok()?;
        nodes.nodes.iter().any(|n| n.id == worker && n.lost).then_some(())
    })
    .await;
    cluster.start_peer(worker);
    wait_until("the worker to rejoin", Duration::from_secs(30), || async {
        let nodes = client.nodes().await.ok()?;
        nodes.nodes.iter().any(|n| n.id == worker && !n.lost).then_some(())
    })
    .await;
    // Longer than node_timeout: a rejoined worker must not be declared lost
    // again just because its last heartbeat before the crash is old.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let nodes = client.nodes().await.expect("nodes");
    assert!(nodes.nodes.iter().any(|n| n.id == worker && !n.lost), "worker lost again: {nodes:?}");
    // Fill every slot: the rejoined worker takes its share.
    let sleepers = BatchSubmitRequest {
        jobs: (0..6)
            .map(|i| SubmitRequest::new(&format!("fill{i}"), vec!["sleep".into(), "20".into()]))
            .collect(),
    };
    client.submit_batch(&sleepers, 9).await.expect("sleepers");
    wait_until("a job on the rejoined worker", Duration::from_secs(30), || async {
        let jobs = client.history(&[("state", "running".into())]).await.ok()?;
        let mut on_worker = false;
        for j in jobs {
            let status = client.status(&j.id).await.ok()?;
            on_worker |= status.attempts.last().is_some_and(|a| a.node == worker);
        }
        on_worker.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_runs_jobs_over_https_and_refuses_plaintext() {
    let cluster = TestCluster::start(ClusterSpec { tls: true, ..ClusterSpec::default() });
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower_of(leader);
    let reader = (1..=3).find(|&id| id != leader && id != follower).expect("a third peer");
    assert!(cluster.url(follower).starts_with("https://"));

    // Submitted through a follower: forwarded to the leader over https,
    // replicated over https, run, and read back from another peer.
    let request = SubmitRequest::new("over-tls", vec!["sh".into(), "-c".into(), "echo secret hello".into()]);
    let s = cluster.client(follower).submit(&request, 1).await.expect("submit over https");
    let job = wait_state(&cluster.client(reader), &s.id, |st| st.is_terminal(), "the https job").await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    // Every peer serves the log: from its own file or proxied over https.
    for id in 1..=3 {
        let (source, text) = cluster.client(id).logs(&s.id, None).await.expect("logs over https");
        assert_eq!(text, "secret hello\n", "peer {id} ({source})");
    }

    // The CLI trusts the CA given with --ca, and nothing else.
    let ca = cluster.ca.clone().expect("a TLS cluster has a CA");
    let url = cluster.url(reader);
    let (code, out, err) =
        cli(&["status", "--url", &url, "--ca", ca.to_str().unwrap(), "--json", &s.id], cluster.dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (code, _, err) = cli(&["status", "--url", &url, &s.id], cluster.dir.path());
    assert_ne!(code, 0, "a client without the CA must not talk to the peer");
    assert!(err.contains(&url), "{err}");

    // Plaintext to the TLS port fails, and does not hurt the server.
    let plain = url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new()
        .get(format!("{plain}/api/v1/local"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(answer.is_err(), "plaintext request got an answer: {answer:?}");
    cluster.client(reader).local().await.expect("https still served after a plaintext attempt");
}

#[test]
fn unusable_tls_files_and_run_as_users_stop_serve_with_a_named_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cluster.toml");
    let peer = format!("[[peer]]\nid = 1\naddress = \"127.0.0.1:{}\"\ndata_dir = \"p1\"\n", free_port());
    let serve = || cli(&["serve", "--config", config.to_str().unwrap(), "--id", "1"], dir.path());

    std::fs::write(
        &config,
        format!("[tls]\ncert = \"nope.pem\"\nkey = \"nope.key\"\nca = \"ca.pem\"\n{peer}"),
    )
    .unwrap();
    let (code, _, err) = serve();
    assert_ne!(code, 0);
    assert!(err.contains("nope.pem") && !err.contains("panicked"), "{err}");

    let (code, _, err) = cli(&["tls", "gen", "--out", "tls", "--peers", "127.0.0.1"], dir.path());
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("tls/broken.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    std::fs::write(
        &config,
        format!("[tls]\ncert = \"tls/peer.pem\"\nkey = \"tls/broken.key\"\nca = \"tls/ca.pem\"\n{peer}"),
    )
    .unwrap();
    let (code, _, err) = serve();
    assert_ne!(code, 0);
    assert!(err.contains("broken.key") && !err.contains("panicked"), "{err}");

    std::fs::write(&config, format!("run_as = \"no-such-user-sg\"\n{peer}")).unwrap();
    let (code, _, err) = serve();
    assert_ne!(code, 0);
    assert!(err.contains("no-such-user-sg"), "{err}");
    assert!(!dir.path().join("p1").exists(), "a refused peer must not create its data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_nobody_writes_its_own_directory_and_nothing_of_the_peer() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: run_as needs the peers to run as root");
        return;
    }
    let cluster = TestCluster::start(ClusterSpec {
        voters: 1,
        extra: "run_as = \"nobody\"\n".into(),
        ..ClusterSpec::default()
    });
    // Temp dirs are 0700: open the test's own so that only the peer's
    // permissions decide what the job may touch.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    cluster.wait_leader().await;
    let client = cluster.client(1);
    let data = cluster.dir.path().join("peer1");
    // Runs a shell command as a job; its final state and its output.
    let request_ids = std::sync::atomic::AtomicU64::new(1);
    let run = |name: &str, script: String| {
        let request = SubmitRequest::new(name, vec!["sh".into(), "-c".into(), script]);
        let client = client.clone();
        let request_id = request_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let s = client.submit(&request, u128::from(request_id)).await.expect("submit");
            let job = wait_state(&client, &s.id, |st| st.is_terminal(), "a run_as job").await;
            let (_, output) = client.logs(&s.id, None).await.expect("the job's log");
            (job.state, output)
        }
    };

    let (state, output) =
        run("own-dir", "id -u; echo mine > mine.txt && cat mine.txt; echo HOME=$HOME".into()).await;
    assert_eq!(state, JobState::Succeeded, "{output}");
    assert_eq!(output, "65534\nmine\nHOME=/nonexistent\n", "the peer still captures the job's output");

    let pid = std::process::id();
    let forbidden = [
        ("data-dir", data.join(format!("intruder-{pid}"))),
        ("attempts-dir", data.join(format!("work/attempts/intruder-{pid}"))),
        ("root-home", std::path::PathBuf::from(format!("/root/sgnode-intruder-{pid}"))),
    ];
    for (name, target) in &forbidden {
        let (state, output) = run(name, format!("echo x > {}", target.display())).await;
        assert_eq!(state, JobState::Failed, "{name}: {output}");
        assert!(output.contains("Permission denied"), "{name}: {output}");
        assert!(!target.exists(), "{name}: the job wrote {}", target.display());
    }
    let (state, output) = run("db", format!("ls {}", data.join("db").display())).await;
    assert_eq!(state, JobState::Failed, "{output}");
    assert!(output.contains("Permission denied"), "{output}");
}
