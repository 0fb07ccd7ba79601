//! `sgnode bench history`: a large history through the real apply path.
//!
//! In-process, no network: the sled-backed [`StateMachine`] in a scratch
//! directory is fed Raft entries exactly as openraft would feed them
//! (`Configure`, `RegisterNode`, then per batch of jobs one entry each of
//! `Submit`s, `Assign`, `Started`s and `Finished`es), so the figures include
//! the funnel, its indexes and the sled batch of every apply. It then times
//! what a peer does with such a history: history pages (first, middle, last;
//! with and without filters) as the HTTP handler runs them, the job counts
//! behind `/metrics`, a snapshot build, and retention `Gc` entries that
//! expire half of the history, one bounded apply at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};

use crate::api::views::JobView;
use crate::queue::{
    AttemptEnd, AttemptOutcome, Command, HistoryQuery, JobId, JobSpec, JobState, Millis, NodeId, Outcome,
    Proposal, RunnerKind, Settings,
};
use crate::raft::state_machine::{SharedState, StateMachine};
use crate::raft::store::Store;
use crate::raft::{Entry, LogId};

/// Options of the history benchmark.
#[derive(Debug, Clone, Args)]
pub struct HistoryBench {
    /// Finished jobs to build the history from.
    #[arg(long, default_value_t = 1_000_000)]
    pub jobs: u64,
    /// Jobs per Raft entry while building.
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
    /// Bytes of log tail each attempt keeps in the job record.
    #[arg(long, default_value_t = 200)]
    pub tail_bytes: usize,
    /// Distinct job names (job i is named `job-{i % names}`).
    #[arg(long, default_value_t = 100)]
    pub names: u64,
    /// Jobs per history page.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Most jobs one `Gc` entry may remove (the leader proposes 2,000).
    #[arg(long, default_value_t = 2_000)]
    pub gc_limit: u32,
    /// Scratch directory for the sled files [default: a fresh one under
    /// the system temp dir, removed at the end].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Peak and current resident memory, MiB, from `/proc/self/status`.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Feeds entries to the state machine with consecutive log indexes.
struct Feeder {
    sm: StateMachine,
    index: u64,
}

impl Feeder {
    async fn apply(&mut self, now: Millis, commands: Vec<Command>) -> anyhow::Result<Vec<Outcome>> {
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Proposal { now, commands }),
        };
        let mut out = self.sm.apply([entry]).await.map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        Ok(out.pop().unwrap_or_default())
    }
}

const NODES: u64 = 3;
/// Leader clock of the first job; one job per simulated second after it.
const START: Millis = 1_700_000_000_000;
const SECOND: Millis = 1000;

impl HistoryBench {
    /// Builds the history and prints every figure.
    ///
    /// # Errors
    /// Bad options, sled errors in the scratch directory, or an entry whose
    /// outcome is not what the build expects.
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.jobs > 0 && self.batch > 0 && self.names > 0 && self.limit > 0 && self.gc_limit > 0,
            "--jobs, --batch, --names, --limit and --gc-limit must be positive"
        );
        let (dir, remove) = match &self.dir {
            Some(d) => (d.clone(), false),
            None => (std::env::temp_dir().join(format!("sgnode-bench-history-{}", std::process::id())), true),
        };
        let result = self.run_in(&dir).await;
        if remove {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn run_in(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let store = Arc::new(Store::open(dir)?);
        let sm = StateMachine::open(store.clone()).map_err(|e| anyhow::anyhow!("open: {e}"))?;
        let shared = sm.shared();
        let mut feeder = Feeder { sm, index: 0 };
        let (hwm0, _) = memory_mib();
        println!(
            "history bench: {} jobs, {} per entry, {} B tail, {} names",
            self.jobs, self.batch, self.tail_bytes, self.names
        );
        println!("memory before build:        {hwm0:.0} MiB peak RSS");

        // Retention long enough that nothing expires while building.
        let span = self.jobs * SECOND;
        let settings = Settings {
            history_retention_ms: span * 4,
            max_queued: self.batch.max(1_000_000),
            ..Settings::default()
        };
        feeder.apply(START, vec![Command::Configure(settings)]).await?;
        let slots = u32::try_from(self.batch).unwrap_or(u32::MAX);
        let register = (1..=NODES)
            .map(|id| Command::RegisterNode {
                id,
                addr: format!("127.0.0.1:{}", 7100 + id),
                slots,
                mem_mb: 1 << 20,
            })
            .collect();
        feeder.apply(START, register).await?;

        let built = Instant::now();
        let tail_line = "0123456789abcdefghijklmnopqrstuvwxyz-the-job-said-something\n";
        let tail: String = tail_line.chars().cycle().take(self.tail_bytes).collect();
        let mut next = 0u64;
        let mut slowest_build_apply = Duration::ZERO;
        while next < self.jobs {
            let count = self.batch.min(self.jobs - next);
            let now = START + next * SECOND;
            let submits = (next..next + count)
                .map(|i| {
                    let mut spec = JobSpec::new(format!("job-{}", i % self.names), vec!["true".into()]);
                    spec.dedup_key = Some(format!("bench-{i}"));
                    Command::Submit { request: None, spec }
                })
                .collect();
            let t = Instant::now();
            let outcomes = feeder.apply(now, submits).await?;
            slowest_build_apply = slowest_build_apply.max(t.elapsed());
            let ids: Vec<(u64, JobId)> = outcomes
                .iter()
                .zip(next..)
                .map(|(o, i)| match o {
                    Outcome::Submitted { id, duplicate: false, .. } => Ok((i, *id)),
                    other => Err(anyhow::anyhow!("job {i}: unexpected outcome {other:?}")),
                })
                .collect::<anyhow::Result<_>>()?;
            let node = |i: u64| -> NodeId { 1 + i % NODES };
            let placements = ids.iter().map(|&(i, id)| (id, node(i))).collect();
            let started = ids
                .iter()
                .map(|&(i, id)| Command::Started {
                    job: id,
                    attempt: 1,
                    node: node(i),
                    runner: RunnerKind::Shell,
                })
                .collect();
            let finished = ids
                .iter()
                .map(|&(i, id)| {
                    // 2% fail: a selective state filter.
                    let failed = i % 50 == 0;
                    let end = AttemptEnd {
                        outcome: if failed { AttemptOutcome::Failed } else { AttemptOutcome::Succeeded },
                        exit_code: Some(i32::from(failed)),
                        signal: None,
                        duration_ms: 10,
                        reason: format!("exit code {}", i32::from(failed)),
                        log_tail: tail.clone(),
                        runner: Some(crate::queue::RunnerKind::Shell),
                    };
                    Command::Finished { job: id, attempt: 1, node: node(i), end }
                })
                .collect();
            for commands in [vec![Command::Assign { placements }], started, finished] {
                let t = Instant::now();
                feeder.apply(now + SECOND / 2, commands).await?;
                slowest_build_apply = slowest_build_apply.max(t.elapsed());
            }
            next += count;
        }
        store.flush().await?;
        let build = built.elapsed();
        let (hwm, rss) = memory_mib();
        let entries = feeder.index;
        println!(
            "build:                      {:.1} s ({} entries, {:.0} jobs/s through apply; slowest apply {:.1} ms)",
            build.as_secs_f64(),
            entries,
            self.jobs as f64 / build.as_secs_f64(),
            ms(slowest_build_apply)
        );
        println!("memory after build:         {hwm:.0} MiB peak RSS (VmHWM), {rss:.0} MiB resident now");
        println!("sled files:                 {:.0} MiB", dir_size(dir) as f64 / 1048576.0);
        {
            let applied = shared.read();
            let succeeded = applied.funnel.stats().by_state.get("succeeded").copied().unwrap_or(0);
            anyhow::ensure!(succeeded + self.jobs / 50 + 1 >= self.jobs, "only {succeeded} jobs succeeded");
        }

        self.time_pages(&shared);
        let t = Instant::now();
        let reps = 20;
        for _ in 0..reps {
            std::hint::black_box(shared.read().funnel.stats());
        }
        println!("job counts (/metrics, nodes): {:.2} ms per call", ms(t.elapsed()) / f64::from(reps));

        let t = Instant::now();
        let mut builder = feeder.sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
        let snapshot_bytes = snapshot.snapshot.get_ref().len();
        let (hwm, _) = memory_mib();
        println!(
            "snapshot:                   {:.0} MiB built and stored in {:.2} s (peak RSS now {hwm:.0} MiB)",
            snapshot_bytes as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        drop(snapshot);

        // Retention: half of the history is past it at `now`.
        let now = START + span + span / 2 + SECOND;
        let settings = Settings { history_retention_ms: span, ..settings };
        feeder.apply(now, vec![Command::Configure(settings)]).await?;
        let mut gc_applies = Vec::new();
        let mut removed_total = 0u64;
        let gc_started = Instant::now();
        loop {
            let t = Instant::now();
            let outcomes = feeder.apply(now, vec![Command::Gc { limit: self.gc_limit }]).await?;
            gc_applies.push(t.elapsed());
            let removed = match outcomes.first() {
                Some(Outcome::Collected { removed }) => *removed,
                other => anyhow::bail!("unexpected Gc outcome {other:?}"),
            };
            removed_total += removed;
            if removed == 0 {
                break;
            }
        }
        let gc_total = gc_started.elapsed();
        let mut sorted = gc_applies.clone();
        sorted.sort_unstable();
        println!(
            "gc:                         {removed_total} jobs removed by {} Gc entries (limit {}) in {:.1} s; \
             largest single apply {:.1} ms, median {:.1} ms",
            gc_applies.len(),
            self.gc_limit,
            gc_total.as_secs_f64(),
            ms(sorted.last().copied().unwrap_or_default()),
            ms(sorted[sorted.len() / 2])
        );
        println!("after gc:");
        self.time_pages(&shared);
        let (hwm, rss) = memory_mib();
        println!("memory at the end:          {hwm:.0} MiB peak RSS, {rss:.0} MiB resident now");
        Ok(())
    }

    /// Times first, middle and last pages for several filters, as the
    /// history handler runs them (query plus conversion to JSON views).
    fn time_pages(&self, shared: &SharedState) {
        let filters: Vec<(&str, HistoryQuery)> = vec![
            ("no filter", HistoryQuery::default()),
            ("name=job-7 (1%)", HistoryQuery { name: Some("job-7".into()), ..HistoryQuery::default() }),
            ("state=failed (2%)", HistoryQuery { state: Some(JobState::Failed), ..HistoryQuery::default() }),
            ("node=2 (33%)", HistoryQuery { node: Some(2), ..HistoryQuery::default() }),
            (
                "name=job-7 & node=2 (0.33%)",
                HistoryQuery { name: Some("job-7".into()), node: Some(2), ..HistoryQuery::default() },
            ),
            (
                "name=nobody (0 matches)",
                HistoryQuery { name: Some("nobody".into()), ..HistoryQuery::default() },
            ),
            (
                "dedup_key=bench-<mid>",
                HistoryQuery {
                    dedup_key: Some(format!("bench-{}", self.jobs / 2)),
                    ..HistoryQuery::default()
                },
            ),
        ];
        println!("  history page of {} (ms: first / middle / last page; matches)", self.limit);
        for (label, filter) in filters {
            // Cursors a client paging through would send (found untimed).
            let matching: Vec<JobId> = {
                let applied = shared.read();
                let all = HistoryQuery { limit: usize::MAX, ..filter.clone() };
                applied.funnel.history(&all).into_iter().map(|j| j.id).collect()
            };
            let pages = matching.len().div_ceil(self.limit).max(1);
            let cursor =
                |page: usize| if page == 0 { None } else { matching.get(page * self.limit - 1).copied() };
            let mut times = Vec::new();
            for page in [0, pages / 2, pages - 1] {
                let query = HistoryQuery { limit: self.limit, before: cursor(page), ..filter.clone() };
                let mut best = Duration::MAX;
                for _ in 0..3 {
                    let t = Instant::now();
                    let views: Vec<JobView> =
                        shared.read().funnel.history(&query).into_iter().map(JobView::from).collect();
                    best = best.min(t.elapsed());
                    std::hint::black_box(views);
                }
                times.push(ms(best));
            }
            println!(
                "  {label:<28} {:>9.3} / {:>9.3} / {:>9.3}   {}",
                times[0],
                times[1],
                times[2],
                matching.len()
            );
        }
    }
}
