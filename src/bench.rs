//! `sgnode bench submit`: a closed-loop load generator against a running
//! cluster. Each client sends one request at a time (one job, or a batch)
//! and waits for the durable acknowledgement; clients are spread over the
//! given peers so followers' forwarding is part of what is measured.
//!
//! `sgnode bench run` times execution on a running cluster, and
//! `sgnode bench history` ([`history`]) a large history in-process, and
//! `sgnode bench overload` ([`overload`]) a cluster offered far more than it
//! can run.

pub mod history;
pub mod overload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::api::views::{BatchItem, BatchSubmitRequest, JobView, SubmitRequest};
use crate::client::Client;

/// Options of the submit benchmark.
#[derive(Debug, Clone, Args)]
pub struct SubmitBench {
    /// Peer URLs, comma separated [default: every peer in ./cluster.toml].
    #[arg(long = "url", env = "SGNODE_URL", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Cluster token.
    #[arg(long, env = "SGNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Jobs to submit in total.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// Jobs per request (1 = single submits via POST /jobs).
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Percent of submits that reuse the previous job's dedup key (they
    /// should come back as duplicates).
    #[arg(long, default_value_t = 0)]
    pub dup_percent: u64,
    /// Stop after this long even if jobs remain (e.g. for a failover run).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Offer this many jobs per second (open loop) instead of sending as
    /// fast as the clients can: request k is due at start + k x batch /
    /// rate, and its latency counts from when it was due, so a stall is not
    /// hidden by requests that were never sent. Needs enough --clients to
    /// keep up.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Write every request latency (ms, one per line) to this file.
    #[arg(long)]
    pub latencies: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct ClientReport {
    latencies: Vec<Duration>,
    /// When each successful request completed, since the start.
    successes: Vec<Duration>,
    acked: u64,
    duplicates: u64,
    errors: u64,
    last_error: Option<String>,
}

/// Longest stretch without a successful request: the failover gap when a
/// leader is killed mid-run.
fn longest_gap(mut successes: Vec<Duration>, elapsed: Duration) -> Duration {
    successes.sort_unstable();
    let mut previous = Duration::ZERO;
    let mut gap = Duration::ZERO;
    for t in successes.into_iter().chain(std::iter::once(elapsed)) {
        gap = gap.max(t.saturating_sub(previous));
        previous = t;
    }
    gap
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl SubmitBench {
    /// Runs the benchmark and prints a report.
    ///
    /// # Errors
    /// Bad options, or no usable peer URL.
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.clients > 0 && self.jobs > 0 && self.batch > 0,
            "--clients, --jobs and --batch must be positive"
        );
        anyhow::ensure!(
            self.rate.is_none_or(|r| r.is_finite() && r > 0.0),
            "--rate must be a positive number of jobs per second"
        );
        let urls = if self.urls.is_empty() {
            crate::cli::cluster_urls(std::path::Path::new("cluster.toml"))?
        } else {
            self.urls.clone()
        };
        let run_id: u32 = rand::random();
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = self.duration.map(|d| started + d);
        let mut handles = Vec::new();
        for c in 0..self.clients {
            // A short timeout, so a request stuck on a killed peer counts as
            // failed and the client moves on.
            let client =
                Client::with_timeout(&urls[c % urls.len()], self.token.clone(), Duration::from_secs(2));
            let next = next.clone();
            let (total, batch, dup_percent) = (self.jobs, self.batch, self.dup_percent.min(100));
            let rate = self.rate;
            handles.push(tokio::spawn(async move {
                let mut report = ClientReport::default();
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                        return report;
                    }
                    let jobs: Vec<SubmitRequest> = (first..(first + batch).min(total))
                        .map(|i| {
                            // Every (100/dup)th job repeats its predecessor's key.
                            let dup = dup_percent > 0 && i > 0 && (i * dup_percent) % 100 < dup_percent;
                            let key = if dup { i - 1 } else { i };
                            SubmitRequest {
                                dedup_key: Some(format!("bench-{run_id:08x}-{key}")),
                                ..SubmitRequest::new("bench", vec!["true".into()])
                            }
                        })
                        .collect();
                    let t = match rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(first as f64 / rate);
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    let result = if jobs.len() == 1 {
                        client.submit(&jobs[0], rand::random()).await.map(|r| (1, u64::from(r.duplicate)))
                    } else {
                        let request = BatchSubmitRequest { jobs };
                        client.submit_batch(&request, rand::random()).await.map(|r| {
                            let ok =
                                r.results.iter().filter(|i| matches!(i, BatchItem::Ok(_))).count() as u64;
                            let dups = r
                                .results
                                .iter()
                                .filter(|i| matches!(i, BatchItem::Ok(o) if o.duplicate))
                                .count();
                            (ok, dups as u64)
                        })
                    };
                    report.latencies.push(t.elapsed());
                    match result {
                        Ok((n, dups)) => {
                            report.successes.push(started.elapsed());
                            report.acked += n;
                            report.duplicates += dups;
                            report.errors += (first + batch).min(total) - first - n;
                        }
                        Err(e) => {
                            report.errors += (first + batch).min(total) - first;
                            report.last_error = Some(e.to_string());
                        }
                    }
                }
            }));
        }
        let mut latencies = Vec::new();
        let mut successes = Vec::new();
        let (mut acked, mut duplicates, mut errors, mut last_error) = (0, 0, 0, None);
        for handle in handles {
            let report = handle.await?;
            latencies.extend(report.latencies);
            successes.extend(report.successes);
            acked += report.acked;
            duplicates += report.duplicates;
            errors += report.errors;
            last_error = report.last_error.or(last_error);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let gap = longest_gap(successes, elapsed);
        if let Some(path) = &self.latencies {
            let text: String = latencies.iter().map(|l| format!("{:.3}\n", ms(*l))).collect();
            std::fs::write(path, text)?;
        }
        if self.json {
            let summary = serde_json::json!({
                "acked": acked,
                "duplicates": duplicates,
                "errors": errors,
                "elapsed_s": elapsed.as_secs_f64(),
                "jobs_per_s": acked as f64 / elapsed.as_secs_f64(),
                "p50_ms": ms(percentile(&latencies, 50.0)),
                "p99_ms": ms(percentile(&latencies, 99.0)),
                "longest_gap_s": gap.as_secs_f64(),
            });
            println!("{summary}");
            return Ok(());
        }
        println!("peers:       {}", urls.join(","));
        println!("clients:     {}  batch: {}  jobs: {}", self.clients, self.batch, self.jobs);
        println!("acked:       {acked} ({duplicates} duplicates)  errors: {errors}");
        println!("longest gap: {:.2} s without a successful request", gap.as_secs_f64());
        println!("elapsed:     {:.2} s", elapsed.as_secs_f64());
        println!("jobs/s:      {:.0}", acked as f64 / elapsed.as_secs_f64());
        println!("requests/s:  {:.0}", latencies.len() as f64 / elapsed.as_secs_f64());
        println!(
            "latency ms:  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 90.0)),
            ms(percentile(&latencies, 99.0)),
            ms(latencies.last().copied().unwrap_or_default())
        );
        if let Some(e) = last_error {
            println!("last error:  {e}");
        }
        Ok(())
    }
}

/// Options of the execution benchmark.
#[derive(Debug, Clone, Args)]
pub struct RunBench {
    /// Peer URL to submit to and read from.
    #[arg(long, env = "SGNODE_URL")]
    pub url: Option<String>,
    /// Cluster token.
    #[arg(long, env = "SGNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// No-op jobs (`true`) to run.
    #[arg(long, default_value_t = 2000)]
    pub jobs: u64,
    /// Jobs per submit request.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Submit one job at a time, waiting for it to start before the next
    /// (light-load latency) instead of all at once (throughput).
    #[arg(long)]
    pub sequential: bool,
    /// Queue every job with placement paused, then resume and time the
    /// drain (resume to last job finished, client clock).
    #[arg(long, conflicts_with = "sequential")]
    pub drain: bool,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

fn parse_ms(rfc3339: &str) -> Option<u128> {
    let t = humantime::parse_rfc3339(rfc3339).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis())
}

impl RunBench {
    /// Submits no-op jobs, waits until all finished, and reports how fast
    /// they were started and the submit-to-start latency (leader clock:
    /// `submitted_at` to the applied `Started` report).
    ///
    /// # Errors
    /// Client errors, or jobs that do not finish within 10 minutes.
    pub async fn run(self) -> anyhow::Result<()> {
        let url = match self.url.clone() {
            Some(u) => u,
            None => crate::cli::default_url(std::path::Path::new("cluster.toml"))?,
        };
        let client = Client::new(&url, self.token.clone());
        let name = format!("bench-run-{:08x}", rand::random::<u32>());
        let job = |i: u64| SubmitRequest {
            params: [("i".to_string(), i.to_string())].into(),
            ..SubmitRequest::new(&name, vec!["true".into()])
        };
        let started = Instant::now();
        if self.sequential {
            for i in 0..self.jobs {
                let s = client.submit(&job(i), rand::random()).await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while client
                    .status(&s.id)
                    .await?
                    .attempts
                    .first()
                    .and_then(|a| a.started_at.as_ref())
                    .is_none()
                {
                    anyhow::ensure!(Instant::now() < deadline, "job {} did not start within 30s", s.id);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        } else {
            if self.drain {
                client.set_paused(true).await?;
            }
            let mut i = 0;
            while i < self.jobs {
                let jobs: Vec<SubmitRequest> = (i..(i + self.batch).min(self.jobs)).map(job).collect();
                i += jobs.len() as u64;
                client.submit_batch(&BatchSubmitRequest { jobs }, rand::random()).await?;
            }
        }
        let resumed = Instant::now();
        if self.drain {
            client.set_paused(false).await?;
        }
        // Poll cheaply (index lookups for open jobs of this run), so the
        // measuring does not load the peer it measures; fetch everything once.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let mut open = false;
            for state in ["queued", "assigned", "running"] {
                let query =
                    [("name", name.clone()), ("state", state.to_string()), ("limit", "1".to_string())];
                open |= !client.history(&query).await?.is_empty();
            }
            if !open {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "jobs did not finish within 10 minutes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let drained = resumed.elapsed();
        let finished = jobs_named(&client, &name).await?;
        anyhow::ensure!(
            finished.len() as u64 == self.jobs,
            "{} of {} jobs in the history",
            finished.len(),
            self.jobs
        );
        let mut latencies = Vec::new();
        let (mut first_submit, mut last_start) = (u128::MAX, 0u128);
        for j in &finished {
            let submitted = parse_ms(&j.submitted_at).unwrap_or_default();
            first_submit = first_submit.min(submitted);
            if let Some(start) = j.attempts.first().and_then(|a| a.started_at.as_deref()).and_then(parse_ms) {
                last_start = last_start.max(start);
                latencies.push(Duration::from_millis(start.saturating_sub(submitted) as u64));
            }
        }
        latencies.sort_unstable();
        let succeeded = finished.iter().filter(|j| j.state == crate::queue::JobState::Succeeded).count();
        let span_s = (last_start.saturating_sub(first_submit)).max(1) as f64 / 1000.0;
        if self.json {
            let summary = serde_json::json!({
                "jobs": self.jobs,
                "succeeded": succeeded,
                "wall_s": elapsed.as_secs_f64(),
                "started_per_s": latencies.len() as f64 / span_s,
                "drained_per_s": if self.drain { Some(self.jobs as f64 / drained.as_secs_f64()) } else { None },
                "start_p50_ms": percentile(&latencies, 50.0).as_millis() as u64,
                "start_p99_ms": percentile(&latencies, 99.0).as_millis() as u64,
            });
            println!("{summary}");
            return Ok(());
        }
        if self.drain {
            println!(
                "drained/s:         {:.0} (resume to all finished)",
                self.jobs as f64 / drained.as_secs_f64()
            );
        }
        println!(
            "jobs:              {}  succeeded: {succeeded}  ({})",
            self.jobs,
            if self.sequential { "sequential" } else { "all at once" }
        );
        println!(
            "wall time:         {:.2} s (submit to all finished, as seen by this client)",
            elapsed.as_secs_f64()
        );
        println!(
            "started/s:         {:.0} (first submit to last start, leader clock)",
            latencies.len() as f64 / span_s
        );
        println!(
            "submit->start ms:  p50 {}  p99 {}  max {}",
            percentile(&latencies, 50.0).as_millis(),
            percentile(&latencies, 99.0).as_millis(),
            latencies.last().copied().unwrap_or_default().as_millis()
        );
        Ok(())
    }
}

/// Every job with this name, newest first, from the history in pages of
/// 10,000 (bounded: at most 10,000 pages).
async fn jobs_named(client: &Client, name: &str) -> anyhow::Result<Vec<JobView>> {
    let mut jobs = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..10_000 {
        let mut query = vec![("name", name.to_string()), ("limit", "10000".to_string())];
        if let Some(b) = &before {
            query.push(("before", b.clone()));
        }
        let page = client.history(&query).await?;
        let done = page.len() < 10_000;
        before = page.last().map(|j| j.id.clone());
        jobs.extend(page);
        if done {
            break;
        }
    }
    Ok(jobs)
}
