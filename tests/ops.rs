//! Operations end to end: the role every route demands, membership changes
//! under load, a cluster of three voters and seven learners, and a rolling
//! restart — all on real peer processes over loopback HTTP.

mod util;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sgnode::api::auth::token_hash_hex;
use sgnode::api::views::SubmitRequest;
use sgnode::client::Client;
use sgnode::queue::JobState;
use util::*;

const READ: &str = "read-token";
const SUBMIT: &str = "submit-token";
const ADMIN: &str = "admin-token";

fn client_tokens() -> String {
    [("viewer", "read", READ), ("ci", "submit", SUBMIT), ("ops", "admin", ADMIN)]
        .iter()
        .map(|(name, role, token)| {
            format!(
                "[[client_token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
                token_hash_hex(token)
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_demands_its_role() {
    let cluster =
        TestCluster::start(ClusterSpec { voters: 1, extra: client_tokens(), ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let url = cluster.url(1);
    let http = reqwest::Client::new();
    let hash = "0".repeat(64);
    // Least role per route: 0 read, 1 submit, 2 admin, 3 peer; None public.
    let routes: Vec<(&str, String, Option<usize>)> = vec![
        ("GET", "/".into(), None),
        ("GET", "/ui/app.js".into(), None),
        ("GET", "/ui/style.css".into(), None),
        ("GET", "/api/v1/local".into(), None),
        ("GET", "/api/v1/jobs".into(), Some(0)),
        ("GET", "/api/v1/jobs/1".into(), Some(0)),
        ("GET", "/api/v1/jobs/1/logs".into(), Some(0)),
        ("GET", "/api/v1/nodes".into(), Some(0)),
        ("GET", "/api/v1/digest".into(), Some(0)),
        ("GET", "/api/v1/schedules".into(), Some(0)),
        ("GET", "/api/v1/schedules/nightly".into(), Some(0)),
        ("GET", "/api/v1/datasets".into(), Some(0)),
        ("GET", "/api/v1/induced".into(), Some(0)),
        ("GET", "/api/v1/artifacts".into(), Some(0)),
        ("GET", format!("/api/v1/artifacts/{hash}"), Some(0)),
        ("GET", "/api/v1/members".into(), Some(0)),
        ("GET", "/metrics".into(), Some(0)),
        ("POST", "/api/v1/jobs".into(), Some(1)),
        ("POST", "/api/v1/jobs/batch".into(), Some(1)),
        ("POST", "/api/v1/jobs/1/cancel".into(), Some(1)),
        ("POST", "/api/v1/datasets".into(), Some(1)),
        ("PUT", format!("/api/v1/artifacts/{hash}"), Some(1)),
        ("POST", "/api/v1/schedules/apply".into(), Some(2)),
        ("DELETE", "/api/v1/schedules/nightly".into(), Some(2)),
        ("POST", "/api/v1/schedules/nightly/pause".into(), Some(2)),
        ("POST", "/api/v1/queue/resume".into(), Some(2)),
        ("POST", "/api/v1/members".into(), Some(2)),
        ("POST", "/api/v1/members/9/promote".into(), Some(2)),
        ("DELETE", "/api/v1/members/9".into(), Some(2)),
        ("POST", "/raft/vote".into(), Some(3)),
    ];
    let callers: [(Option<&str>, usize); 5] =
        [(None, 0), (Some(READ), 0), (Some(SUBMIT), 1), (Some(ADMIN), 2), (Some(TOKEN), 3)];
    let mut checked = 0;
    for (method, path, least) in &routes {
        for (token, rank) in callers {
            let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = http.request(method_value, format!("{url}{path}")).body("{}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let expected = match (least, token) {
                (None, _) => "allowed",
                (Some(_), None) => "401",
                (Some(least), Some(_)) if rank < *least => "403",
                _ => "allowed",
            };
            let who = token.unwrap_or("no token");
            match expected {
                "401" => assert_eq!(status, 401, "{method} {path} as {who}: {body}"),
                "403" => {
                    assert_eq!(status, 403, "{method} {path} as {who}: {body}");
                    assert!(body.contains("forbidden") && body.contains("needs"), "{body}");
                }
                _ => assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {who} refused: {status} {body}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * callers.len());
    // The CLI maps both refusals to exit code 3.
    let dir = cluster.dir.path();
    let (code, _, err) = cli(&["submit", "--url", &url, "--token", READ, "--name", "x", "--", "true"], dir);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("needs submit"), "{err}");
    let (code, out, err) =
        cli(&["submit", "--url", &url, "--token", SUBMIT, "--name", "x", "--", "true"], dir);
    assert_eq!(code, 0, "{out}{err}");
}

/// Submits a short job every 40 ms through `clients` in turn until stopped;
/// returns the ids of acknowledged submits.
fn start_load(clients: Vec<Client>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i: u64 = 0;
        // Bounded: stops on the flag or after 10 minutes' worth of submits.
        while !stop.load(Ordering::Relaxed) && i < 15_000 {
            let client = &clients[(i as usize) % clients.len()];
            let request = SubmitRequest::new(&format!("load-{i}"), vec!["sleep".into(), "0.2".into()]);
            if let Ok(response) = client.submit(&request, 1_000_000 + u128::from(i)).await {
                acked.push(response.id);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        acked
    })
}

/// Waits until every acknowledged job succeeded.
async fn all_succeed(client: &Client, acked: &[String]) {
    for id in acked {
        let job = wait_until(&format!("job {id} to end"), Duration::from_secs(90), || async {
            client.status(id).await.ok().filter(|j| j.state.is_terminal())
        })
        .await;
        assert_eq!(job.state, JobState::Succeeded, "job {id}: {job:?}");
    }
}

async fn voters(client: &Client) -> BTreeSet<u64> {
    client.members().await.expect("members").members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grows_to_five_voters_under_load_and_shrinks_back() {
    let mut cluster = TestCluster::start(ClusterSpec::default());
    let leader = cluster.wait_leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load((1..=3).map(|id| cluster.client(id)).collect(), stop.clone());

    let four = cluster.start_joining_peer();
    let five = cluster.start_joining_peer();
    // Through the CLI, sent to a follower: the change runs on the leader.
    let follower = cluster.follower_of(leader);
    let dir = cluster.dir.path().to_path_buf();
    let (code, out, err) = cli(
        &[
            "members",
            "add",
            "--url",
            &cluster.url(follower),
            "--token",
            TOKEN,
            "--id",
            "4",
            "--peer-url",
            &cluster.url(four),
        ],
        &dir,
    );
    assert_eq!(code, 0, "members add: {out}{err}");
    assert!(out.contains("voter"), "{out}");
    let request = sgnode::members::AddMemberRequest { id: five, address: cluster.url(five), voter: true };
    cluster.client(1).add_member(&request).await.expect("add peer 5");
    assert_eq!(voters(&cluster.client(1)).await, BTreeSet::from([1, 2, 3, 4, 5]));
    // The new peers take work like any other.
    for node in [four, five] {
        wait_until(&format!("a job on peer {node}"), Duration::from_secs(60), || async {
            let jobs = cluster.client(1).history(&[("node", node.to_string())]).await.ok()?;
            jobs.iter().any(|j| j.state == JobState::Succeeded).then_some(())
        })
        .await;
    }
    // A learner add that names a taken id at another address is refused.
    let clash = sgnode::members::AddMemberRequest { id: 4, address: "127.0.0.1:1".into(), voter: true };
    let err = cluster.client(1).add_member(&clash).await.expect_err("address clash refused");
    assert!(err.to_string().contains("already a member"), "{err}");

    let (code, out, err) =
        cli(&["members", "remove", "--url", &cluster.url(follower), "--token", TOKEN, "5"], &dir);
    assert_eq!(code, 0, "members remove: {out}{err}");
    cluster.client(1).remove_member(four).await.expect("remove peer 4");
    assert_eq!(voters(&cluster.client(1)).await, BTreeSet::from([1, 2, 3]));
    assert_eq!(cluster.client(2).members().await.expect("members").removed, vec![4, 5]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(four);
    cluster.kill(five);
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert!(acked.len() > 50, "only {} submits acknowledged", acked.len());
    all_succeed(&cluster.client(1), &acked).await;
    cluster.wait_converged().await;
    // The three left still elect and commit without the removed two.
    let leader = cluster.wait_leader().await;
    cluster.kill(leader);
    let next = cluster.wait_leader().await;
    let probe = SubmitRequest::new("after-shrink", vec!["true".into()]);
    cluster.client(next).submit(&probe, 42).await.expect("a write after shrinking and losing the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_and_seven_learners_share_a_burst() {
    let cluster = TestCluster::start(ClusterSpec { voters: 3, learners: 7, ..ClusterSpec::default() });
    cluster.wait_leader().await;
    let client = cluster.client(1);
    wait_until("ten registered workers", Duration::from_secs(60), || async {
        let nodes = client.nodes().await.ok()?;
        (nodes.nodes.iter().filter(|n| n.slots.is_some() && !n.lost).count() == 10).then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..60u32 {
        let request = SubmitRequest::new(&format!("burst-{i}"), vec!["sleep".into(), "1".into()]);
        // Through every peer in turn: learners forward writes.
        let via = cluster.client(u64::from(i % 10) + 1);
        ids.push(via.submit(&request, u128::from(i) + 500).await.expect("submit").id);
    }
    let mut ran_on = BTreeSet::new();
    for id in &ids {
        let job = wait_until(&format!("job {id}"), Duration::from_secs(90), || async {
            client.status(id).await.ok().filter(|j| j.state.is_terminal())
        })
        .await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        ran_on.extend(job.attempts.iter().map(|a| a.node));
    }
    assert_eq!(ran_on, (1..=10).collect::<BTreeSet<u64>>(), "work spread over all ten peers");

    // Promote a learner, then remove it: the leader must not re-add it
    // from the cluster file, which still lists it.
    client.promote_member(4).await.expect("promote 4");
    assert_eq!(voters(&client).await, BTreeSet::from([1, 2, 3, 4]));
    client.remove_member(4).await.expect("remove 4");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = client.members().await.expect("members");
    assert!(view.members.iter().all(|m| m.id != 4), "peer 4 re-added: {view:?}");
    assert_eq!(view.removed, vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() {
    let mut cluster = TestCluster::start(ClusterSpec::default());
    cluster.wait_leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load((1..=3).map(|id| cluster.client(id)).collect(), stop.clone());
    for id in 1..=3 {
        cluster.stop(id).expect("peer was running");
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.start_peer(id);
        cluster.wait_leader().await;
        // It keeps dispatching: a job submitted through the restarted peer runs.
        let probe = SubmitRequest::new(&format!("probe-{id}"), vec!["true".into()]);
        let submitted = wait_until("a write through the restarted peer", Duration::from_secs(30), || async {
            cluster.client(id).submit(&probe, 900 + u128::from(id)).await.ok()
        })
        .await;
        let job = wait_until("the probe to end", Duration::from_secs(60), || async {
            cluster.client(id).status(&submitted.id).await.ok().filter(|j| j.state.is_terminal())
        })
        .await;
        assert_eq!(job.state, JobState::Succeeded);
    }
    // Load after the last restart too, then stop it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert!(acked.len() >= 40, "only {} submits acknowledged", acked.len());
    all_succeed(&cluster.client(1), &acked).await;
    cluster.wait_converged().await;
}
