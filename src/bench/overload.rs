//! `sgnode bench overload`: offers a running cluster far more jobs than it
//! can run — a backfill of large batches plus many single submitters — at a
//! fixed rate for a bounded time (open loop: a slow answer does not slow the
//! offer down), while readers call `status` and `nodes` and a watcher polls
//! every peer's term and leader. Then it waits for every accepted job to
//! finish and reports refusals by reason, accepted jobs that did not
//! succeed, read latency during the overload, leader changes and each peer's
//! peak memory. The original design's first goal was a funnel that stays
//! stable under exactly this kind of load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{watch, Semaphore};

use super::percentile;
use crate::api::views::{BatchItem, BatchSubmitRequest, SubmitRequest};
use crate::client::{Client, ClientError};
use crate::queue::JobState;

/// Options of the overload benchmark.
#[derive(Debug, Clone, Args)]
pub struct OverloadBench {
    /// Peer URLs, comma separated [default: every peer in ./cluster.toml].
    #[arg(long = "url", env = "SGNODE_URL", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Cluster token.
    #[arg(long, env = "SGNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Jobs offered per second (open loop), e.g. ten times what the cluster
    /// runs per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// How long to offer.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Percent of the offered jobs sent as backfill batches; the rest are
    /// single submits.
    #[arg(long, default_value_t = 50)]
    pub backfill_percent: u64,
    /// Jobs per backfill request.
    #[arg(long, default_value_t = 200)]
    pub batch: u64,
    /// Most requests outstanding at once; jobs due while it is reached are
    /// counted as not sent.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Clients calling `status` and `nodes` in a loop during the overload.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// How long the accepted jobs may take to finish after the offer ends.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// What the submitters saw.
#[derive(Default)]
struct Offered {
    sent: u64,
    not_sent: u64,
    accepted: BTreeSet<String>,
    /// Recently accepted ids with when, for readers (bounded).
    recent: std::collections::VecDeque<(Instant, String)>,
    /// Refused jobs by error code (`queue_full`, `no_quorum`, ...).
    refused: BTreeMap<String, u64>,
    /// Jobs in requests that failed without an answer (timeouts, resets):
    /// they may or may not exist.
    unanswered: u64,
    latencies: Vec<Duration>,
}

/// What the readers saw.
#[derive(Default)]
struct Reads {
    status: Vec<Duration>,
    nodes: Vec<Duration>,
    errors: u64,
}

impl OverloadBench {
    /// Runs the benchmark and prints a report.
    ///
    /// # Errors
    /// Bad options, no usable peer, or jobs that do not finish within
    /// `--settle`.
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rate > 0 && self.batch > 0 && self.max_in_flight > 0,
            "--rate, --batch and --max-in-flight must be positive"
        );
        let urls = if self.urls.is_empty() {
            crate::cli::cluster_urls(std::path::Path::new("cluster.toml"))?
        } else {
            self.urls.clone()
        };
        let clients: Vec<Client> = urls
            .iter()
            .map(|u| Client::with_timeout(u, self.token.clone(), Duration::from_secs(10)))
            .collect();
        let name = format!("overload-{:08x}", rand::random::<u32>());
        let (stop_tx, stop_rx) = watch::channel(false);

        let terms = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
        let watcher = tokio::spawn(watch_leaders(clients.clone(), terms.clone(), stop_rx.clone()));
        let offered = Arc::new(Mutex::new(Offered::default()));
        let reads = Arc::new(Mutex::new(Reads::default()));
        let mut readers = Vec::new();
        for r in 0..self.readers {
            readers.push(tokio::spawn(read_loop(
                clients[r % clients.len()].clone(),
                offered.clone(),
                reads.clone(),
                stop_rx.clone(),
            )));
        }

        let started = Instant::now();
        self.offer(&clients, &name, &offered).await;
        let offer_elapsed = started.elapsed();
        stop_tx.send_replace(true);
        for r in readers {
            let _ = r.await;
        }
        let _ = watcher.await;

        // Every accepted job must finish, and succeed (they are `true`).
        let accepted = std::mem::take(&mut offered.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.accepted);
        let settle_deadline = Instant::now() + self.settle;
        let (states, settled_in) = loop {
            let states = job_states(&clients[0], &name).await?;
            let open = states.values().filter(|s| !s.is_terminal()).count();
            if open == 0 && accepted.iter().all(|id| states.contains_key(id)) {
                break (states, started.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < settle_deadline,
                "{open} job(s) still open {:?} after the offer ended",
                self.settle
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let missing = accepted.iter().filter(|id| !states.contains_key(*id)).count();
        let not_succeeded: Vec<(&String, JobState)> = accepted
            .iter()
            .filter_map(|id| states.get(id).filter(|s| **s != JobState::Succeeded).map(|s| (id, *s)))
            .collect();
        let extra = states.keys().filter(|id| !accepted.contains(*id)).count();

        let mut memory = Vec::new();
        for client in &clients {
            let local = client.local().await?;
            memory.push((local.id, local.rss_bytes, local.peak_rss_bytes, local.term, local.leader));
        }
        let terms = terms.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        // A term has at most one leader, so every further term seen with a
        // leader is one election (even one that re-elected the same peer).
        let leader_changes = terms.len().saturating_sub(1);

        let offered = offered.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut reads = reads.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        reads.status.sort_unstable();
        reads.nodes.sort_unstable();
        let mut all_reads: Vec<Duration> = reads.status.iter().chain(&reads.nodes).copied().collect();
        all_reads.sort_unstable();
        let mut submit_latencies = offered.latencies.clone();
        submit_latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let refused: u64 = offered.refused.values().sum();
        let summary = serde_json::json!({
            "offered_per_s": self.rate,
            "offer_s": offer_elapsed.as_secs_f64(),
            "sent": offered.sent,
            "not_sent": offered.not_sent,
            "accepted": accepted.len(),
            "accepted_per_s": accepted.len() as f64 / offer_elapsed.as_secs_f64(),
            "refused": refused,
            "refused_by_code": offered.refused,
            "unanswered": offered.unanswered,
            "accepted_missing": missing,
            "accepted_not_succeeded": not_succeeded.len(),
            "unacknowledged_but_created": extra,
            "all_finished_s": settled_in.as_secs_f64(),
            "submit_p50_ms": ms(percentile(&submit_latencies, 50.0)),
            "submit_p99_ms": ms(percentile(&submit_latencies, 99.0)),
            "reads": all_reads.len(),
            "read_errors": reads.errors,
            "read_p50_ms": ms(percentile(&all_reads, 50.0)),
            "read_p99_ms": ms(percentile(&all_reads, 99.0)),
            "read_max_ms": ms(all_reads.last().copied().unwrap_or_default()),
            "status_p99_ms": ms(percentile(&reads.status, 99.0)),
            "nodes_p99_ms": ms(percentile(&reads.nodes, 99.0)),
            "terms_seen": terms,
            "leader_changes": leader_changes,
            "peers": memory.iter().map(|(id, rss, peak, _, _)| serde_json::json!({
                "id": id, "rss_mib": rss.map(|b| b / (1024 * 1024)), "peak_rss_mib": peak.map(|b| b / (1024 * 1024)),
            })).collect::<Vec<_>>(),
        });
        if self.json {
            println!("{summary}");
        } else {
            println!(
                "offered:           {} jobs/s for {:.1} s ({} jobs sent, {} not sent: {} requests in flight)",
                self.rate,
                offer_elapsed.as_secs_f64(),
                offered.sent,
                offered.not_sent,
                self.max_in_flight
            );
            println!(
                "accepted:          {} ({:.0}/s)",
                accepted.len(),
                accepted.len() as f64 / offer_elapsed.as_secs_f64()
            );
            println!("refused:           {refused} {:?}", offered.refused);
            println!("unanswered:        {} (request failed without an answer)", offered.unanswered);
            println!(
                "accepted, lost:    {missing} missing, {} not succeeded {:?}",
                not_succeeded.len(),
                not_succeeded.iter().take(5).collect::<Vec<_>>()
            );
            println!("all finished at:   {:.1} s", settled_in.as_secs_f64());
            println!(
                "submit ms:         p50 {:.1}  p99 {:.1}",
                ms(percentile(&submit_latencies, 50.0)),
                ms(percentile(&submit_latencies, 99.0))
            );
            println!(
                "reads during it:   {} (errors {}), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                all_reads.len(),
                reads.errors,
                ms(percentile(&all_reads, 50.0)),
                ms(percentile(&all_reads, 99.0)),
                ms(all_reads.last().copied().unwrap_or_default())
            );
            println!("leader changes:    {leader_changes} (terms seen {:?})", terms);
            for (id, rss, peak, _, _) in &memory {
                println!(
                    "peer {id}:            rss {} MiB, peak {} MiB",
                    rss.map_or("?".into(), |b| (b >> 20).to_string()),
                    peak.map_or("?".into(), |b| (b >> 20).to_string())
                );
            }
        }
        Ok(())
    }

    /// Sends jobs at `rate` for `duration`, never more than `max_in_flight`
    /// requests at once.
    async fn offer(&self, clients: &[Client], name: &str, offered: &Arc<Mutex<Offered>>) {
        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut due_sent = 0u64;
        let mut requests = tokio::task::JoinSet::new();
        let mut backfill_owed = 0u64;
        let mut n = 0usize;
        while started.elapsed() < self.duration {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            while due_sent < due {
                // Whole batches for the backfill share, single jobs otherwise.
                backfill_owed += self.backfill_percent.min(100);
                let size = if backfill_owed >= 100 * self.batch {
                    backfill_owed -= 100 * self.batch;
                    self.batch
                } else {
                    1
                };
                let first = due_sent;
                due_sent += size;
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if let Ok(mut o) = offered.lock() {
                        o.not_sent += size;
                    }
                    continue;
                };
                let client = clients[n % clients.len()].clone();
                n += 1;
                let jobs: Vec<SubmitRequest> = (first..first + size)
                    .map(|i| SubmitRequest {
                        dedup_key: Some(format!("{name}-{i}")),
                        ..SubmitRequest::new(name, vec!["true".into()])
                    })
                    .collect();
                let offered = offered.clone();
                requests.spawn(async move {
                    let t = Instant::now();
                    let outcome = if jobs.len() == 1 {
                        client.submit(&jobs[0], rand::random()).await.map(|r| vec![Ok(r.id)])
                    } else {
                        client
                            .submit_batch(&BatchSubmitRequest { jobs: jobs.clone() }, rand::random())
                            .await
                            .map(|r| {
                                r.results
                                    .into_iter()
                                    .map(|item| match item {
                                        BatchItem::Ok(ok) => Ok(ok.id),
                                        BatchItem::Err(e) => Err(e.error.code),
                                    })
                                    .collect()
                            })
                    };
                    let elapsed = t.elapsed();
                    drop(permit);
                    let Ok(mut o) = offered.lock() else { return };
                    o.sent += jobs.len() as u64;
                    o.latencies.push(elapsed);
                    match outcome {
                        Ok(items) => {
                            for item in items {
                                match item {
                                    Ok(id) => {
                                        if o.recent.len() >= 1024 {
                                            o.recent.pop_front();
                                        }
                                        o.recent.push_back((Instant::now(), id.clone()));
                                        o.accepted.insert(id);
                                    }
                                    Err(code) => *o.refused.entry(code).or_default() += 1,
                                }
                            }
                        }
                        Err(ClientError::Api { code, .. }) => {
                            *o.refused.entry(code).or_default() += jobs.len() as u64;
                        }
                        Err(_) => o.unanswered += jobs.len() as u64,
                    }
                });
            }
            while requests.try_join_next().is_some() {}
        }
        while requests.join_next().await.is_some() {}
    }
}

/// Records, until `stop`, every term in which some peer saw a leader.
async fn watch_leaders(
    clients: Vec<Client>,
    terms: Arc<Mutex<BTreeSet<u64>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for client in &clients {
            if let Ok(local) = client.local().await {
                if let (Some(_), Ok(mut terms)) = (local.leader, terms.lock()) {
                    terms.insert(local.term);
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Calls `status` (of a job accepted so far) and `nodes` in turn until
/// `stop`, recording each call's latency.
async fn read_loop(
    client: Client,
    offered: Arc<Mutex<Offered>>,
    reads: Arc<Mutex<Reads>>,
    stop: watch::Receiver<bool>,
) {
    let mut turn = 0u64;
    while !*stop.borrow() {
        turn += 1;
        // A job accepted at least a second ago: a peer other than the one
        // that acknowledged it may not have applied it sooner.
        let id = if turn.is_multiple_of(2) {
            offered.lock().ok().and_then(|o| {
                o.recent
                    .iter()
                    .rev()
                    .find(|(at, _)| at.elapsed() >= Duration::from_secs(1))
                    .map(|(_, id)| id.clone())
            })
        } else {
            None
        };
        let t = Instant::now();
        let result = match &id {
            Some(id) => client.status(id).await.map(drop),
            None => client.nodes().await.map(drop),
        };
        if let Err(e) = &result {
            tracing::warn!("read during the overload failed: {e}");
        }
        let ok = result.is_ok();
        let elapsed = t.elapsed();
        if !record_read(&reads, ok, id.is_some(), elapsed) {
            return;
        }
        // A pause between calls, like a dashboard or a script polling.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record_read(reads: &Mutex<Reads>, ok: bool, status: bool, elapsed: Duration) -> bool {
    let Ok(mut r) = reads.lock() else { return false };
    match (ok, status) {
        (false, _) => r.errors += 1,
        (true, true) => r.status.push(elapsed),
        (true, false) => r.nodes.push(elapsed),
    }
    true
}

/// Every job of the run by id.
async fn job_states(client: &Client, name: &str) -> anyhow::Result<BTreeMap<String, JobState>> {
    Ok(super::jobs_named(client, name).await?.into_iter().map(|j| (j.id, j.state)).collect())
}
