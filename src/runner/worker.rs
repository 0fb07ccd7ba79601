//! The worker loop that runs on every peer.
//!
//! It watches this peer's own replica for attempts placed on it, starts
//! them through the process runner, and reports `Started`/`Finished` as
//! replicated writes (batched, retried until they land or become stale).
//!
//! Fencing. An attempt runs only while the worker holds a lease: the time
//! of the last heartbeat the leader acknowledged, plus `lease`. When the
//! lease runs out (partition, frozen process, no leader) the worker kills
//! its attempts itself, and the separate guard process does the same if the
//! worker cannot. Each registration starts a new incarnation; attempts of an
//! older incarnation are never run and are requeued by the funnel.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::artifact::{Artifacts, Entry};
use super::guard::FenceDir;
use super::process::{self, KillReason, Termination};
use super::user::RunAs;
use super::{hadoop, luigi, shell, Launch};
use crate::config::{ClusterConfig, PeerConfig};
use crate::node::{now_millis, Heartbeat, HeartbeatReply, Peer};
use crate::queue::{AttemptEnd, AttemptOutcome, Command, Job, JobId, JobState, NodeId, Outcome, RunnerKind};

/// The lease as this worker holds it.
#[derive(Default)]
struct Lease {
    until: Mutex<Option<Instant>>,
}

impl Lease {
    fn valid(&self) -> bool {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t)
    }

    fn renew(&self, until: Instant) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn revoke(&self) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// One attempt this worker started. It stays here after its process ended
/// until the replica no longer lists the attempt as current, so that an
/// attempt whose `Started` report has not been applied yet is never started
/// a second time.
struct Running {
    kill: watch::Sender<Option<KillReason>>,
    ended: bool,
}

/// Paths of a peer's execution state.
struct Dirs {
    attempts: PathBuf,
    fence: FenceDir,
}

pub use super::log_sweep::log_path;

/// How often a worker removes the local logs of jobs retention removed.
const LOG_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removes, every [`LOG_SWEEP_EVERY`], the logs under `logs_dir` of jobs
/// this replica no longer has (ids below `next_id` that are absent: taken
/// by retention; a job not created yet is never "gone").
async fn run_log_sweeps(peer: Arc<Peer>, logs_dir: PathBuf, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(LOG_SWEEP_EVERY) => {}
        }
        let (peer, dir) = (peer.clone(), logs_dir.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let gone = |job| {
                let applied = peer.state.read();
                job < applied.funnel.meta().next_id && applied.funnel.job(job).is_none()
            };
            let local = super::log_sweep::sweep(&dir, gone);
            let leads = peer.metrics().state == openraft::ServerState::Leader;
            let shared = match &peer.config.shared_log_dir {
                Some(shared) if leads => super::log_sweep::sweep_shared(shared, gone),
                _ => Default::default(),
            };
            (local, shared)
        })
        .await;
        if let Ok((local, shared)) = swept {
            if local.files + local.dirs + shared.dirs > 0 {
                tracing::info!(
                    "removed logs of expired jobs: {} file(s) and {} directory(ies) here, {} in shared_log_dir",
                    local.files,
                    local.dirs,
                    shared.dirs
                );
            }
        }
    }
}

/// Runs until `shutdown`.
pub async fn run_worker(peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let me = match peer.config.peer(peer.id) {
        Ok(me) => me.clone(),
        Err(e) => {
            tracing::error!("worker disabled: {e}");
            return;
        }
    };
    let work = me.data_dir.join("work");
    let dirs = Dirs { attempts: work.join("attempts"), fence: FenceDir::new(&work) };
    if let Err(e) = dirs.fence.create().and_then(|_| std::fs::create_dir_all(&dirs.attempts)) {
        tracing::error!("worker disabled: cannot create {}: {e}", work.display());
        return;
    }
    // Whatever a previous run of this peer left behind dies before we
    // announce a new incarnation (which requeues those attempts elsewhere).
    let artifacts = match Artifacts::open(&peer.config, &me.data_dir, &peer.trust) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            tracing::error!("worker disabled: {e}");
            return;
        }
    };
    let run_as = match RunAs::for_peer(&peer.config, &me) {
        Ok(run_as) => run_as,
        Err(e) => {
            tracing::error!("worker disabled: {e}");
            return;
        }
    };
    if run_as.is_some() {
        if let Err(e) = RunAs::close_data_dir(&me.data_dir) {
            tracing::error!("worker disabled: cannot close the data dir to jobs: {e}");
            return;
        }
    }
    let killed = dirs.fence.kill_all();
    if killed > 0 {
        tracing::warn!("killed {killed} job process group(s) left by a previous run");
    }
    dirs.fence.expire_lease();
    let mut guard = spawn_guard(&work);
    // Outcomes a previous run recorded but could not report: report them
    // before registering, while the attempts are still ours, so a job that
    // finished just before a crash is not run again.
    let pending_dir = work.join("reports");
    if let Err(e) = std::fs::create_dir_all(&pending_dir) {
        tracing::error!(
            "cannot create {}: {e}; outcomes of a crash window may be lost",
            pending_dir.display()
        );
    }
    replay_pending_reports(&peer, &pending_dir, &mut shutdown).await;

    let lease = Arc::new(Lease::default());
    let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
    let (incarnation_tx, incarnation_rx) = watch::channel(0u64);
    let mut tasks = JoinSet::new();
    tasks.spawn(run_reporter(peer.clone(), report_rx, shutdown.clone()));
    tasks.spawn(run_log_sweeps(peer.clone(), me.data_dir.join("logs"), shutdown.clone()));
    tasks.spawn(run_heartbeats(
        peer.clone(),
        lease.clone(),
        dirs.fence.clone(),
        incarnation_rx,
        shutdown.clone(),
    ));

    let mut running: HashMap<(JobId, u32), Running> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(JobId, u32)>();
    let context = AttemptContext {
        node: peer.id,
        data_dir: me.data_dir.clone(),
        attempts_dir: dirs.attempts.clone(),
        fence: dirs.fence.clone(),
        lease: lease.clone(),
        reports: report_tx.clone(),
        pending_dir: pending_dir.clone(),
        done: done_tx,
        artifacts,
        config: peer.config.clone(),
        run_as,
    };
    let mut attempt_tasks = JoinSet::new();
    let mut applied = peer.state.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut incarnation: Option<u64> = None;
    // Cancels of never-started attempts already reported (not state: a
    // repeat would only be ignored as stale, this just avoids the noise).
    let mut cancel_reported: HashSet<(JobId, u32)> = HashSet::new();

    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            changed = applied.changed() => if changed.is_err() { break },
            Some(key) = done_rx.recv() => mark_ended(&mut running, key),
            Some(_) = attempt_tasks.join_next(), if !attempt_tasks.is_empty() => {}
        }
        while let Ok(key) = done_rx.try_recv() {
            mark_ended(&mut running, key);
        }
        let lease_ok = lease.valid();
        if !lease_ok {
            for r in running.values() {
                r.kill.send_if_modified(|k| k.replace(KillReason::LeaseExpired).is_none());
            }
        }
        // Am I registered, and as which incarnation?
        let registered = {
            let applied = peer.state.read();
            applied.funnel.nodes().get(&peer.id).map(|n| (n.incarnation, n.lost))
        };
        let needs_registration = match (&registered, incarnation) {
            (_, None) => true,
            (None, Some(_)) => false, // our registration is not applied here yet
            // An older incarnation (maybe marked lost) means our registration
            // is not applied here yet: wait for it, or re-registering would
            // orphan what the leader just placed on the new incarnation.
            (Some((inc, _)), Some(mine)) if *inc < mine => false,
            (Some((inc, lost)), Some(mine)) => *lost || *inc > mine,
        };
        if needs_registration {
            // Never run two incarnations' attempts: stop everything first.
            for r in running.values() {
                r.kill.send_if_modified(|k| k.replace(KillReason::Superseded).is_none());
            }
            if running.values().any(|r| !r.ended) {
                continue;
            }
            running.clear();
            lease.revoke();
            match register(&peer, &me).await {
                Some(inc) => {
                    tracing::info!(
                        "registered as worker incarnation {inc} ({} slots, {} MiB)",
                        me.slots,
                        me.mem_mb
                    );
                    incarnation = Some(inc);
                    incarnation_tx.send_replace(inc);
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        }
        let Some(mine) = incarnation else { continue };
        // What the replica says this worker should be doing.
        let placed: Vec<Job> = peer.state.read().funnel.placed_on(peer.id).cloned().collect();
        let mut current: HashSet<(JobId, u32)> = HashSet::new();
        for job in &placed {
            let Some(attempt) = job.current() else { continue };
            if attempt.incarnation != mine {
                continue;
            }
            let key = (job.id, attempt.number);
            current.insert(key);
            if let Some(r) = running.get(&key) {
                if job.cancel_requested {
                    r.kill.send_if_modified(|k| k.replace(KillReason::Cancelled).is_none());
                }
                continue;
            }
            if job.state != JobState::Assigned {
                continue;
            }
            if job.cancel_requested {
                if !cancel_reported.insert(key) {
                    continue;
                }
                let end = attempt_end(
                    AttemptOutcome::Cancelled,
                    None,
                    None,
                    0,
                    "cancelled before it started".into(),
                    String::new(),
                );
                let _ = report_tx.send(Report::transient(Command::Finished {
                    job: job.id,
                    attempt: attempt.number,
                    node: peer.id,
                    end,
                }));
                continue;
            }
            if !lease_ok {
                continue;
            }
            let (kill_tx, kill_rx) = watch::channel(None);
            running.insert(key, Running { kill: kill_tx, ended: false });
            let holders = artifact_holders(&peer, job);
            attempt_tasks.spawn(run_attempt(job.clone(), attempt.number, holders, context.clone(), kill_rx));
        }
        cancel_reported.retain(|key| current.contains(key));
        // Attempts the replica no longer gives us (node declared lost, job
        // re-placed): stop them.
        for (key, r) in &running {
            if !current.contains(key) {
                r.kill.send_if_modified(|k| k.replace(KillReason::Superseded).is_none());
            }
        }
        running.retain(|key, r| !r.ended || current.contains(key));
    }

    // Shutdown: kill our attempts, wait for them, then let the guard go.
    for r in running.values() {
        r.kill.send_if_modified(|k| k.replace(KillReason::Shutdown).is_none());
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while attempt_tasks.join_next().await.is_some() {}
    })
    .await;
    dirs.fence.expire_lease();
    tasks.shutdown().await;
    if let Some(guard) = guard.as_mut() {
        let _ = guard.kill();
        let _ = guard.wait();
    }
}

fn mark_ended(running: &mut HashMap<(JobId, u32), Running>, key: (JobId, u32)) {
    if let Some(r) = running.get_mut(&key) {
        r.ended = true;
    }
}

fn spawn_guard(work: &std::path::Path) -> Option<std::process::Child> {
    let exe = std::env::current_exe().ok()?;
    let child = std::process::Command::new(exe)
        .arg("guard")
        .arg("--work-dir")
        .arg(work)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(
                "cannot start the fencing guard: {e}; jobs of a frozen worker may outlive its lease"
            );
            None
        }
    }
}

async fn register(peer: &Peer, me: &PeerConfig) -> Option<u64> {
    let command =
        Command::RegisterNode { id: peer.id, addr: me.address.clone(), slots: me.slots, mem_mb: me.mem_mb };
    match peer.write(vec![command]).await {
        Ok(result) => match result.outcomes.first() {
            Some(Outcome::Registered { incarnation }) => Some(*incarnation),
            other => {
                tracing::warn!("unexpected registration outcome {other:?}");
                None
            }
        },
        Err(e) => {
            tracing::debug!("registration failed: {e}");
            None
        }
    }
}

/// Renews the lease every third of its length.
async fn run_heartbeats(
    peer: Arc<Peer>,
    lease: Arc<Lease>,
    fence: FenceDir,
    mut incarnation: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = peer.config.lease / 3;
    let mut tick = tokio::time::interval(period.min(Duration::from_millis(1000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            changed = incarnation.changed() => if changed.is_err() { return },
        }
        let inc = *incarnation.borrow_and_update();
        if inc == 0 {
            continue;
        }
        // The lease counts from when we *asked*: the leader's last_seen is
        // later than that, so we always fence before it gives up on us.
        let sent_at = Instant::now();
        let sent_wall = now_millis();
        match peer.send_heartbeat(&Heartbeat { node: peer.id, incarnation: inc }).await {
            HeartbeatReply::Alive => {
                // File first: the guard must never see an older lease than
                // the one the worker starts attempts under.
                fence.write_lease(sent_wall + peer.config.lease.as_millis() as u64);
                lease.renew(sent_at + peer.config.lease);
            }
            HeartbeatReply::Stale => {
                lease.revoke();
                fence.expire_lease();
            }
            HeartbeatReply::NotLeader { .. } => {}
        }
    }
}

/// A report on its way to the leader, with the file that keeps it across a
/// crash until it has landed.
struct Report {
    command: Command,
    persisted: Option<PathBuf>,
}

impl Report {
    fn transient(command: Command) -> Report {
        Report { command, persisted: None }
    }

    /// Writes the report to `dir` first (write + rename), so it survives a
    /// crash of this peer.
    fn durable(command: Command, dir: &std::path::Path, name: &str) -> Report {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        let written = crate::raft::encode(&command)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => Report { command, persisted: Some(path) },
            Err(e) => {
                tracing::warn!("cannot persist report {name}: {e}");
                Report { command, persisted: None }
            }
        }
    }
}

async fn replay_pending_reports(peer: &Peer, dir: &std::path::Path, shutdown: &mut watch::Receiver<bool>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut commands = Vec::new();
    let mut paths = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::read(&path).ok().and_then(|b| crate::raft::decode::<Command>(&b).ok()) {
            Some(c) if path.extension().is_none() => {
                commands.push(c);
                paths.push(path);
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if commands.is_empty() {
        return;
    }
    tracing::info!("reporting {} outcome(s) recorded before a restart", commands.len());
    loop {
        match peer.write(commands.clone()).await {
            Ok(_) => break,
            Err(e) => {
                tracing::debug!("replaying reports failed: {e}");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// Most report batches on their way to the leader at once.
const REPORTS_IN_FLIGHT: usize = 4;
/// A batch is sent alongside others only while fewer reports than this are
/// on their way.
const PIPELINE_BELOW_REPORTS: usize = 8;

/// Sends worker reports in batches, several batches in flight, each retried
/// until it lands.
///
/// With one batch at a time, a job's start and end waited for whatever the
/// previous batch was waiting for — most of a slot cycle for short jobs.
/// Batches in flight may land in any order (a follower forwards them over
/// separate connections); the funnel allows for that: an end applied before
/// its attempt's start records the start itself, and the late `Started` is
/// ignored as stale.
async fn run_reporter(
    peer: Arc<Peer>,
    mut rx: mpsc::UnboundedReceiver<Report>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut waiting: Vec<Report> = Vec::new();
    let mut in_flight: JoinSet<Option<usize>> = JoinSet::new();
    let mut reports_in_flight = 0usize;
    let mut open = true;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            received = rx.recv(), if open => match received {
                Some(report) => waiting.push(report),
                None => open = false,
            },
            Some(landed) = in_flight.join_next(), if !in_flight.is_empty() => match landed {
                Ok(Some(count)) => reports_in_flight -= count,
                // Shut down mid-retry (or the task panicked): stop too.
                _ => return,
            },
        }
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        if !open && waiting.is_empty() && in_flight.is_empty() {
            return;
        }
        // Another batch alongside those in flight only while few reports
        // are on their way: under load one batch at a time makes the next
        // one big (fewer, larger Raft entries), which matters more then.
        let room = in_flight.is_empty()
            || (in_flight.len() < REPORTS_IN_FLIGHT && reports_in_flight < PIPELINE_BELOW_REPORTS);
        if room && !waiting.is_empty() {
            reports_in_flight += waiting.len();
            in_flight.spawn(deliver(peer.clone(), std::mem::take(&mut waiting), shutdown.clone()));
        }
    }
}

/// Writes one batch of reports until it lands, then drops their files.
/// Returns how many reports landed, or `None` when shut down first.
async fn deliver(
    peer: Arc<Peer>,
    reports: Vec<Report>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<usize> {
    let batch: Vec<Command> = reports.iter().map(|r| r.command.clone()).collect();
    // Until it lands: a lost report would leave the attempt holding its
    // slot forever (the funnel ignores it once stale, so retrying is safe).
    let mut failures = 0u32;
    loop {
        match peer.write(batch.clone()).await {
            Ok(_) => {
                for path in reports.iter().filter_map(|r| r.persisted.as_ref()) {
                    let _ = std::fs::remove_file(path);
                }
                return Some(reports.len());
            }
            Err(e) => {
                failures += 1;
                if failures % 50 == 1 {
                    tracing::warn!("{} report(s) not delivered yet ({failures} tries): {e}", batch.len());
                }
                tokio::select! {
                    _ = shutdown.changed() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

fn attempt_end(
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    signal: Option<i32>,
    duration_ms: u64,
    reason: String,
    log_tail: String,
) -> AttemptEnd {
    AttemptEnd { outcome, exit_code, signal, duration_ms, reason, log_tail, runner: None }
}

/// Peers that hold a store artifact, as (id, `host:port`), for fetching.
fn artifact_holders(peer: &Peer, job: &Job) -> Vec<(NodeId, String)> {
    let Some(hash) = job.spec.artifact.as_ref().and_then(|a| a.store_hash()) else { return Vec::new() };
    let applied = peer.state.read();
    let funnel = &applied.funnel;
    let Some(info) = funnel.artifacts().get(hash) else { return Vec::new() };
    info.holders
        .iter()
        .filter(|&&id| id != peer.id)
        .filter_map(|&id| {
            let addr = funnel.nodes().get(&id).map(|n| n.addr.clone());
            addr.or_else(|| peer.config.peer(id).ok().map(|p| p.address.clone())).map(|a| (id, a))
        })
        .collect()
}

/// What every attempt of this worker shares.
#[derive(Clone)]
struct AttemptContext {
    node: NodeId,
    data_dir: PathBuf,
    attempts_dir: PathBuf,
    fence: FenceDir,
    lease: Arc<Lease>,
    reports: mpsc::UnboundedSender<Report>,
    pending_dir: PathBuf,
    done: mpsc::UnboundedSender<(JobId, u32)>,
    artifacts: Arc<Artifacts>,
    config: Arc<ClusterConfig>,
    /// The user jobs run as, when not the peer's own.
    run_as: Option<RunAs>,
}

/// With `run_as`, hands the prepared attempt directory (and the unpacked
/// artifact in it) to the job's user and makes the process switch to it.
async fn as_job_user(
    launched: Result<(RunnerKind, process::ProcessSpec), Termination>,
    ctx: &AttemptContext,
    dir: &std::path::Path,
) -> Result<(RunnerKind, process::ProcessSpec), Termination> {
    let (kind, mut spec) = launched?;
    let Some(user) = &ctx.run_as else { return Ok((kind, spec)) };
    let (owner, path) = (user.clone(), dir.to_path_buf());
    match tokio::task::spawn_blocking(move || owner.give(&path)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Termination::SpawnFailed(e.to_string())),
        Err(e) => return Err(Termination::SpawnFailed(format!("cannot prepare {}: {e}", dir.display()))),
    }
    spec.run_as = Some(user.clone());
    Ok((kind, spec))
}

/// Gets the attempt ready to spawn: the artifact fetched, verified and
/// unpacked into `dir` (if the job has one), the runner chosen and its
/// process built. A failure is the attempt's termination.
async fn launch(
    job: &Job,
    attempt: u32,
    holders: &[(NodeId, String)],
    ctx: &AttemptContext,
    dir: &std::path::Path,
    log: &std::path::Path,
    kill: &mut watch::Receiver<Option<KillReason>>,
) -> Result<(RunnerKind, process::ProcessSpec), Termination> {
    let Some(artifact) = &job.spec.artifact else {
        let launch = Launch::new(job, attempt, ctx.node, dir, log, []);
        return Ok((RunnerKind::Shell, shell::command_spec(launch)));
    };
    let plan = tokio::select! {
        plan = ctx.artifacts.prepare(artifact, holders, dir) => {
            plan.map_err(|e| Termination::SpawnFailed(e.to_string()))?
        }
        reason = process::wait_kill(kill) => return Err(Termination::Killed(reason)),
    };
    let launch =
        Launch::new(job, attempt, ctx.node, dir, log, plan.env.clone()).with_default_args(&plan.default_args);
    if !job.spec.command.is_empty() {
        // An explicit command overrides the archive's entry point.
        return Ok((RunnerKind::Shell, shell::command_spec(launch)));
    }
    Ok(match &plan.entry {
        Entry::Shell { script } => (RunnerKind::Shell, shell::script_spec(launch, script)),
        Entry::Hadoop { jar, main_class } => (
            RunnerKind::Hadoop,
            hadoop::process_spec(launch, &ctx.config.hadoop_bin, jar, main_class.as_deref()),
        ),
        Entry::Luigi { module, task } => {
            (RunnerKind::Luigi, luigi::process_spec(launch, &ctx.config.python_bin, module, task))
        }
    })
}

/// Longest the worker waits for the shared copy of a log before it
/// reports the attempt's end anyway (a hung NFS mount must not hold a slot).
const SHARED_COPY_WAIT: Duration = Duration::from_secs(10);

/// Copies the attempt's log to the shared log directory before the end is
/// reported, so that once any peer sees the attempt ended, the full log is
/// already there. Failures are logged; the attempt's outcome is unchanged.
async fn copy_to_shared(
    log: &std::path::Path,
    dir: &std::path::Path,
    job: JobId,
    attempt: u32,
    node: NodeId,
) {
    if !log.exists() {
        return; // nothing ran (e.g. the artifact could not be fetched)
    }
    let (log, dir) = (log.to_path_buf(), dir.to_path_buf());
    let copy = tokio::task::spawn_blocking(move || super::shared_log::copy(&log, &dir, job, attempt, node));
    match tokio::time::timeout(SHARED_COPY_WAIT, copy).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!("cannot copy the log of job {job} attempt {attempt} to the shared log dir: {e}")
        }
        Ok(Err(e)) => tracing::warn!("copying the log of job {job} attempt {attempt} failed: {e}"),
        // The copy goes on in the background and lands atomically or not at all.
        Err(_) => tracing::warn!(
            "copying the log of job {job} attempt {attempt} to the shared log dir takes over {}s; reporting \
             the end without waiting",
            SHARED_COPY_WAIT.as_secs()
        ),
    }
}

async fn run_attempt(
    job: Job,
    attempt: u32,
    holders: Vec<(NodeId, String)>,
    ctx: AttemptContext,
    mut kill: watch::Receiver<Option<KillReason>>,
) {
    let node = ctx.node;
    let cwd = ctx.attempts_dir.join(format!("{}-{attempt}", job.id));
    let log = log_path(&ctx.data_dir, job.id, attempt);
    // A fresh directory: whatever a crash left there is not this attempt's.
    let _ = std::fs::remove_dir_all(&cwd);
    let prepared = std::fs::create_dir_all(&cwd).and_then(|_| match log.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    });
    let not_started = |termination| process::ProcessResult {
        termination,
        duration: Duration::ZERO,
        log_tail: String::new(),
    };
    let mut runner = None;
    let result = match prepared {
        Err(e) => not_started(Termination::SpawnFailed(format!("cannot prepare {}: {e}", cwd.display()))),
        Ok(()) => {
            match as_job_user(launch(&job, attempt, &holders, &ctx, &cwd, &log, &mut kill).await, &ctx, &cwd)
                .await
            {
                Err(termination) => not_started(termination),
                Ok((kind, mut spec)) => {
                    runner = Some(kind);
                    spec.log_limits = super::log_limit::LogLimits::from_config(&ctx.config);
                    let mut spawned_pgid = None;
                    let result = process::run(&spec, kill, |pgid| {
                        ctx.fence.register(pgid);
                        spawned_pgid = Some(pgid);
                        let started = Command::Started { job: job.id, attempt, node, runner: kind };
                        let _ = ctx.reports.send(Report::transient(started));
                    })
                    .await;
                    if let Some(pgid) = spawned_pgid {
                        ctx.fence.unregister(pgid);
                    }
                    result
                }
            }
        }
    };
    let lease = &ctx.lease;
    let duration_ms = result.duration.as_millis() as u64;
    let tail = result.log_tail;
    let mut end = match result.termination {
        Termination::Exited(0) => {
            attempt_end(AttemptOutcome::Succeeded, Some(0), None, duration_ms, "exit code 0".into(), tail)
        }
        Termination::Exited(code) => attempt_end(
            AttemptOutcome::Failed,
            Some(code),
            None,
            duration_ms,
            format!("exit code {code}"),
            tail,
        ),
        // The guard may beat us to it when the lease runs out.
        Termination::Signaled(signal) if !lease.valid() => attempt_end(
            AttemptOutcome::Lost,
            None,
            Some(signal),
            duration_ms,
            "killed: the worker lost its lease".into(),
            tail,
        ),
        Termination::Signaled(signal) => attempt_end(
            AttemptOutcome::Failed,
            None,
            Some(signal),
            duration_ms,
            format!("killed by signal {signal}"),
            tail,
        ),
        Termination::TimedOut => {
            let limit = job.spec.timeout_ms.unwrap_or(0);
            attempt_end(
                AttemptOutcome::TimedOut,
                None,
                None,
                duration_ms,
                format!("timed out after {limit} ms"),
                tail,
            )
        }
        Termination::Killed(KillReason::Cancelled) => {
            attempt_end(AttemptOutcome::Cancelled, None, None, duration_ms, "cancelled".into(), tail)
        }
        Termination::Killed(KillReason::LeaseExpired) => attempt_end(
            AttemptOutcome::Lost,
            None,
            None,
            duration_ms,
            "killed: the worker lost its lease".into(),
            tail,
        ),
        Termination::Killed(KillReason::Superseded) => attempt_end(
            AttemptOutcome::Lost,
            None,
            None,
            duration_ms,
            "killed: attempt taken away from this worker".into(),
            tail,
        ),
        Termination::Killed(KillReason::Shutdown) => attempt_end(
            AttemptOutcome::Lost,
            None,
            None,
            duration_ms,
            "killed: the worker shut down".into(),
            tail,
        ),
        Termination::SpawnFailed(reason) => {
            attempt_end(AttemptOutcome::Failed, None, None, duration_ms, reason, tail)
        }
    };
    end.runner = runner;
    // Luigi can exit 0 with failed tasks: its own summary has a say too.
    if let (Some(RunnerKind::Luigi), Some(code)) = (runner, end.exit_code) {
        if let Some(reason) = luigi::failure(code, &end.log_tail) {
            end.outcome = AttemptOutcome::Failed;
            end.reason = reason;
        }
    }
    if let Some(dir) = &ctx.config.shared_log_dir {
        copy_to_shared(&log, dir, job.id, attempt, node).await;
    }
    let finished = Command::Finished { job: job.id, attempt, node, end };
    let _ = ctx.reports.send(Report::durable(finished, &ctx.pending_dir, &format!("{}-{attempt}", job.id)));
    let _ = std::fs::remove_dir_all(&cwd);
    let _ = ctx.done.send((job.id, attempt));
}
