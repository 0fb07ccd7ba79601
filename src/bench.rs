//! `sgnode bench submit`: a closed-loop load generator against a running
//! cluster. Each client sends one request at a time (one job, or a batch)
//! and waits for the durable acknowledgement; clients are spread over the
//! given peers so followers' forwarding is part of what is measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::api::views::{BatchItem, BatchSubmitRequest, SubmitRequest};
use crate::client::Client;
use crate::config::ClusterConfig;

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
}

#[derive(Default)]
struct ClientReport {
    latencies: Vec<Duration>,
    acked: u64,
    errors: u64,
    last_error: Option<String>,
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
        let urls = if self.urls.is_empty() {
            let config = ClusterConfig::load(std::path::Path::new("cluster.toml"))
                .context("no --url given and ./cluster.toml is not usable")?;
            config.peers.iter().map(ClusterConfig::peer_url).collect()
        } else {
            self.urls.clone()
        };
        let run_id: u32 = rand::random();
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut handles = Vec::new();
        for c in 0..self.clients {
            let client = Client::new(&urls[c % urls.len()], self.token.clone());
            let next = next.clone();
            let (total, batch) = (self.jobs, self.batch);
            handles.push(tokio::spawn(async move {
                let mut report = ClientReport::default();
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= total {
                        return report;
                    }
                    let jobs: Vec<SubmitRequest> = (first..(first + batch).min(total))
                        .map(|i| SubmitRequest {
                            dedup_key: Some(format!("bench-{run_id:08x}-{i}")),
                            ..SubmitRequest::new("bench", vec!["true".into()])
                        })
                        .collect();
                    let t = Instant::now();
                    let result = if jobs.len() == 1 {
                        client.submit(&jobs[0], rand::random()).await.map(|_| 1)
                    } else {
                        let request = BatchSubmitRequest { jobs };
                        client.submit_batch(&request, rand::random()).await.map(|r| {
                            r.results.iter().filter(|i| matches!(i, BatchItem::Ok(_))).count() as u64
                        })
                    };
                    report.latencies.push(t.elapsed());
                    match result {
                        Ok(n) => {
                            report.acked += n;
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
        let (mut acked, mut errors, mut last_error) = (0, 0, None);
        for handle in handles {
            let report = handle.await?;
            latencies.extend(report.latencies);
            acked += report.acked;
            errors += report.errors;
            last_error = report.last_error.or(last_error);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("peers:       {}", urls.join(","));
        println!("clients:     {}  batch: {}  jobs: {}", self.clients, self.batch, self.jobs);
        println!("acked:       {acked}  errors: {errors}");
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
