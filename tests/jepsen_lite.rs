//! jepsen-lite: drives a real 3-peer cluster with concurrent clients while a
//! seeded nemesis kills, freezes and restarts peers, then checks the
//! cluster's promises against the client log and an execution record kept
//! outside the cluster:
//!
//! - every acknowledged submit is in the history of every replica and ends
//!   terminal (after healing and quiescence);
//! - submits sharing a dedup key got one job, and it completed at most once;
//! - no two attempts of one job overlapped in time;
//! - no peer ran more attempts at once than its slots;
//! - all replicas report the same state digest.
//!
//! Nemeses: kill -9 of a peer or the leader and restart, SIGSTOP past the
//! lease, full-cluster stop and restart, and — where the test can create
//! network namespaces (root + iproute2; CI runs as root) — partitions that
//! isolate a peer or the leader by taking its veth link down.
//!
//! Short mode (default, CI): `JEPSEN_SECONDS=45`. Longer:
//! `JEPSEN_SECONDS=600 JEPSEN_SEED=42 cargo test --release --test jepsen_lite -- --nocapture`.
//! The seed is printed so a failing schedule can be replayed.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sgnode::api::views::SubmitRequest;
use util::*;

const SLOTS: u32 = 2;

#[derive(Default)]
struct ClientLog {
    /// dedup key -> job ids acknowledged for it.
    acked: BTreeMap<String, BTreeSet<String>>,
    operations: u64,
    failures: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jepsen_lite() {
    let seconds = env_u64("JEPSEN_SECONDS", 45);
    let seed = env_u64("JEPSEN_SEED", rand::random::<u16>() as u64);
    println!("jepsen-lite: seed {seed}, {seconds}s of faults (replay with JEPSEN_SEED={seed})");
    let lease = "lease = \"2s\"\nnode_timeout = \"4s\"\nretry_backoff = \"500ms\"\n";
    let mut cluster = TestCluster::start(ClusterSpec {
        extra: lease.into(),
        slots: SLOTS,
        netns: true,
        ..ClusterSpec::default()
    });
    match cluster.net {
        Some(_) => println!("jepsen-lite: peers in network namespaces; partitions drop real traffic"),
        None => {
            println!("jepsen-lite: no network namespaces here (needs root + iproute2): partitions skipped")
        }
    }
    cluster.wait_leader().await;
    let record = cluster.dir.path().join("record");
    let urls: Vec<String> = (1..=cluster.size()).map(|id| cluster.url(id)).collect();

    // Clients: unique keys, and every fifth submit reuses a recent key
    // through a different peer.
    let log = Arc::new(Mutex::new(ClientLog::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (log, stop, urls, record) = (log.clone(), stop.clone(), urls.clone(), record.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (c + 1));
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let key = if n.is_multiple_of(5) {
                    format!("c{c}-k{}", n - 1 - rng.gen_range(0..3))
                } else {
                    format!("c{c}-k{n}")
                };
                let url = &urls[rng.gen_range(0..urls.len())];
                let client =
                    sgnode::client::Client::with_timeout(url, Some(TOKEN.into()), Duration::from_secs(5));
                let request = SubmitRequest {
                    dedup_key: Some(key.clone()),
                    retries: Some(1),
                    ..SubmitRequest::new("jepsen", recording_job(&record, rng.gen_range(2..8)))
                };
                let result = client.submit(&request, rng.gen()).await;
                {
                    let mut log = log.lock().expect("log");
                    log.operations += 1;
                    match result {
                        Ok(r) => {
                            log.acked.entry(key).or_default().insert(r.id);
                        }
                        Err(_) => log.failures += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))).await;
            }
        }));
    }

    // Nemesis.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1000..3000))).await;
        let running: Vec<u64> = (1..=cluster.size()).filter(|&id| cluster.is_running(id)).collect();
        let leader = sgnode::client::Client::new(&cluster.url(running[0]), None)
            .local()
            .await
            .ok()
            .and_then(|v| v.leader);
        match rng.gen_range(0..7) {
            5 | 6 if cluster.net.is_some() => {
                // Cut one peer off (the leader half of the time): a
                // minority/majority split with real dropped packets.
                let victim = match (rng.gen_bool(0.5), leader) {
                    (true, Some(l)) if cluster.is_running(l) => l,
                    _ => running[rng.gen_range(0..running.len())],
                };
                let net = cluster.net.as_ref().expect("netns");
                net.isolate(victim);
                *faults
                    .entry(if Some(victim) == leader {
                        "partition: leader isolated"
                    } else {
                        "partition: peer isolated"
                    })
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(2000..7000))).await;
                net.heal(victim);
            }
            0 | 1 => {
                // kill -9 one peer (the leader half of the time), restart it later.
                let victim = match (rng.gen_bool(0.5), leader) {
                    (true, Some(l)) if cluster.is_running(l) => l,
                    _ => running[rng.gen_range(0..running.len())],
                };
                cluster.kill(victim);
                *faults
                    .entry(if Some(victim) == leader { "kill -9 leader" } else { "kill -9 peer" })
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(500..4000))).await;
                cluster.start_peer(victim);
            }
            2 => {
                // Freeze a peer past its lease.
                let victim = running[rng.gen_range(0..running.len())];
                signal(cluster.pid(victim), "STOP");
                *faults.entry("SIGSTOP past lease").or_default() += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(2500..5000))).await;
                signal(cluster.pid(victim), "CONT");
            }
            3 => {
                // Full-cluster stop (clean) and restart.
                for id in 1..=cluster.size() {
                    cluster.stop(id);
                }
                *faults.entry("full stop+restart").or_default() += 1;
                for id in 1..=cluster.size() {
                    cluster.start_peer(id);
                }
            }
            _ => {
                *faults.entry("none (calm)").or_default() += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }

    // Heal and wait for quiescence: every acknowledged job terminal.
    for id in 1..=cluster.size() {
        if !cluster.is_running(id) {
            cluster.start_peer(id);
        }
    }
    cluster.wait_leader().await;
    let log = Arc::try_unwrap(log).ok().expect("clients done").into_inner().expect("log");
    let ids: BTreeSet<String> = log.acked.values().flatten().cloned().collect();
    let observer = cluster.client(1);
    let states = wait_until("every acknowledged job to end", Duration::from_secs(180), || async {
        let mut states = BTreeMap::new();
        for id in &ids {
            let job = observer.status(id).await.ok()?;
            if !job.state.is_terminal() {
                return None;
            }
            states.insert(id.clone(), job.state);
        }
        Some(states)
    })
    .await;
    let digest = cluster.wait_converged().await;

    // Checks.
    let mut violations: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for id in 1..=cluster.size() {
        let client = cluster.client(id);
        for job in &ids {
            if client.status(job).await.is_err() {
                violations
                    .entry("acknowledged job missing")
                    .or_default()
                    .push(format!("job {job} on peer {id}"));
            }
        }
    }
    for (key, jobs) in &log.acked {
        if jobs.len() > 1 {
            violations.entry("dedup key got two jobs").or_default().push(format!("{key}: {jobs:?}"));
        }
    }
    let lines = read_record(&record);
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.kind == "end") {
        *ends.entry(l.job.as_str()).or_default() += 1;
    }
    let mut reruns_after_loss = 0;
    for (job, n) in &ends {
        if *n > 1 {
            // A run that completed while its worker was frozen or dead, whose
            // outcome could not be reported before the leader declared the
            // worker lost, is retried (at-least-once). That is only a
            // violation if the funnel recorded the earlier run as finished.
            let status = observer.status(job).await.expect("status");
            let finished_runs = status
                .attempts
                .iter()
                .filter(|a| a.outcome == Some(sgnode::queue::AttemptOutcome::Succeeded))
                .count();
            if finished_runs > 1 {
                violations
                    .entry("job completed twice")
                    .or_default()
                    .push(format!("job {job}: {n} runs: {:?}", status.attempts));
            } else {
                reruns_after_loss += 1;
                println!(
                    "rerun after loss: job {job}: {:?}",
                    status.attempts.iter().map(|a| (a.node, a.outcome, a.reason.clone())).collect::<Vec<_>>()
                );
            }
        }
    }
    let spans = attempt_spans(&lines);
    let mut by_job: BTreeMap<&str, Vec<(u128, u128)>> = BTreeMap::new();
    for ((job, _), (_, start, end, _)) in &spans {
        by_job.entry(job.as_str()).or_default().push((*start, *end));
    }
    for (job, mut s) in by_job {
        s.sort();
        if s.windows(2).any(|w| w[0].1 >= w[1].0) {
            violations.entry("attempts overlapped").or_default().push(format!("job {job}"));
        }
    }
    for (node, max) in max_concurrency(&lines) {
        if max > SLOTS as usize {
            // Name the attempts that overlapped on that peer.
            let on_node: Vec<_> = spans.iter().filter(|(_, s)| s.0 == node).collect();
            let mut detail = Vec::new();
            for (a, sa) in &on_node {
                let overlapping: Vec<String> = on_node
                    .iter()
                    .filter(|(b, sb)| a != b && sb.1 < sa.2 && sa.1 < sb.2)
                    .map(|(b, _)| format!("{}#{}", b.0, b.1))
                    .collect();
                if overlapping.len() >= SLOTS as usize {
                    detail.push(format!("{}#{} overlaps {overlapping:?}", a.0, a.1));
                }
            }
            violations
                .entry("peer over capacity")
                .or_default()
                .push(format!("peer {node}: {max} at once: {detail:?}"));
        }
    }
    let succeeded = states.values().filter(|s| **s == sgnode::queue::JobState::Succeeded).count();

    println!("\n| jepsen-lite (seed {seed}, {seconds}s) | count |\n| --- | --- |");
    println!("| submit operations | {} |", log.operations);
    println!("| acknowledged (distinct jobs) | {} |", ids.len());
    println!("| failed / unknown outcome | {} |", log.failures);
    println!("| jobs succeeded / terminal | {succeeded} / {} |", states.len());
    println!("| attempts recorded | {} |", spans.len());
    println!("| reruns after a lost worker's unreported run | {reruns_after_loss} |");
    for (kind, n) in &faults {
        println!("| fault: {kind} | {n} |");
    }
    let kinds = [
        "acknowledged job missing",
        "dedup key got two jobs",
        "job completed twice",
        "attempts overlapped",
        "peer over capacity",
    ];
    for kind in kinds {
        println!("| violations: {kind} | {} |", violations.get(kind).map_or(0, Vec::len));
    }
    println!("| replicas converged on digest | {}… |", &digest[..12]);
    assert!(violations.is_empty(), "violations (seed {seed}): {violations:#?}");
    assert!(!ids.is_empty(), "no submit was acknowledged at all");
}
