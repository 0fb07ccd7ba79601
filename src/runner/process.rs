//! The one place that runs a job's process: spawn in a fresh process group
//! with a working directory and environment, stream stdout+stderr to a log
//! file, enforce a timeout, kill the whole group on request, and report the
//! exit status and the log tail. Every runner (shell, Hadoop, Luigi) is an
//! adapter that only builds a [`ProcessSpec`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::log_limit;
use crate::queue::LOG_TAIL_BYTES;

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the peer's own environment.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log_path: PathBuf,
    pub timeout: Option<Duration>,
    /// Run as this user instead of the peer's own (`run_as`); its
    /// `USER`/`LOGNAME`/`HOME` come before `env`.
    pub run_as: Option<super::user::RunAs>,
    /// Caps on what the job may write to `log_path`.
    pub log_limits: super::log_limit::LogLimits,
}

/// Why the worker stops an attempt from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// `sgnode cancel`.
    Cancelled,
    /// The worker could not renew its lease: another peer may get the job.
    LeaseExpired,
    /// The attempt is no longer this worker's (node declared lost, or
    /// superseded by a newer incarnation).
    Superseded,
    /// The peer is shutting down.
    Shutdown,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    Killed(KillReason),
    /// Could not be started at all (no such program, cwd missing, ...).
    SpawnFailed(String),
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct ProcessResult {
    pub termination: Termination,
    pub duration: Duration,
    pub log_tail: String,
}

fn killpg(pgid: i32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale pgid
    // yields ESRCH, which we ignore.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Runs `spec` to completion (or until killed). `on_spawn` gets the process
/// group id right after the spawn, before the process can have done much:
/// the caller records it so a later incarnation can fence it.
pub async fn run(
    spec: &ProcessSpec,
    mut kill: watch::Receiver<Option<KillReason>>,
    on_spawn: impl FnOnce(i32),
) -> ProcessResult {
    let started = Instant::now();
    let finish = |termination: Termination, log_tail: String| ProcessResult {
        termination,
        duration: started.elapsed(),
        log_tail,
    };
    let log = match tokio::fs::OpenOptions::new().create(true).append(true).open(&spec.log_path).await {
        Ok(f) => f,
        Err(e) => {
            return finish(
                Termination::SpawnFailed(format!("cannot open log {}: {e}", spec.log_path.display())),
                String::new(),
            )
        }
    };
    // stdout and stderr share one pipe, so their lines interleave in the
    // order the job wrote them, as they did when both went to one file.
    let pipe = tokio::net::unix::pipe::pipe().and_then(|(tx, rx)| {
        let out = tx.into_blocking_fd()?;
        let err = out.try_clone()?;
        Ok((rx, out, err))
    });
    let (pipe_rx, log_out, log_err) = match pipe {
        Ok(p) => p,
        Err(e) => {
            return finish(
                Termination::SpawnFailed(format!("cannot create the output pipe: {e}")),
                String::new(),
            )
        }
    };
    let mut command = tokio::process::Command::new(&spec.program);
    if let Some(user) = &spec.run_as {
        command.envs(user.env());
    }
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    // No pre_exec hook unless run_as needs one: without one the standard
    // library spawns with posix_spawn (vfork-like) instead of fork, which
    // matters for a peer holding a large funnel in memory. Jobs of a dead
    // worker are killed by the guard within 50 ms instead.
    if let Some(user) = &spec.run_as {
        user.apply(&mut command);
    }
    let spawned = command.spawn();
    // The command holds our copies of the pipe's write end: only once they
    // are closed does the copy see the end of the job's output.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let message = format!("cannot start `{}`: {e}", spec.program);
            return finish(Termination::SpawnFailed(message), String::new());
        }
    };
    let copy = tokio::spawn(log_limit::copy_output(pipe_rx, log, spec.log_limits));
    let pgid = child.id().map_or(0, |id| id as i32);
    on_spawn(pgid);

    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let sleep_until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let stopped_by = tokio::select! {
        // An exit that already happened wins over a kill request that
        // arrives at the same moment (e.g. a worker resuming from a freeze
        // during which its job finished): the job's real outcome counts.
        biased;
        status = child.wait() => {
            // The job is its process group: leave no stragglers behind.
            killpg(pgid, libc::SIGKILL);
            let termination = match status {
                Ok(status) => exit_termination(status),
                Err(e) => Termination::SpawnFailed(format!("cannot wait for the process: {e}")),
            };
            log_limit::finish_copy(copy).await;
            return finish(termination, read_tail(&spec.log_path).await);
        }
        _ = sleep_until_deadline => Termination::TimedOut,
        reason = wait_kill(&mut kill) => Termination::Killed(reason),
    };
    killpg(pgid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
        killpg(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    killpg(pgid, libc::SIGKILL);
    log_limit::finish_copy(copy).await;
    finish(stopped_by, read_tail(&spec.log_path).await)
}

/// Resolves when a kill is requested (or the requester went away).
pub async fn wait_kill(kill: &mut watch::Receiver<Option<KillReason>>) -> KillReason {
    match kill.wait_for(Option::is_some).await {
        Ok(reason) => reason.unwrap_or(KillReason::Shutdown),
        // The worker dropped the sender: it is going away.
        Err(_) => KillReason::Shutdown,
    }
}

fn exit_termination(status: std::process::ExitStatus) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        (None, None) => Termination::Exited(-1),
    }
}

/// The last [`LOG_TAIL_BYTES`] of a log, as text.
pub async fn read_tail(path: &std::path::Path) -> String {
    let Ok(mut file) = tokio::fs::File::open(path).await else { return String::new() };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES as u64);
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return String::new();
    }
    let mut bytes = Vec::with_capacity((len - start) as usize);
    let _ = file.read_to_end(&mut bytes).await;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // Replacement characters can make the text longer than the bytes read.
    if text.len() > LOG_TAIL_BYTES {
        let mut cut = text.len() - LOG_TAIL_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, program: &str, args: &[&str], timeout: Option<Duration>) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("SG_TEST".into(), "yes".into())],
            cwd: dir.to_path_buf(),
            log_path: dir.join("out.log"),
            timeout,
            run_as: None,
            log_limits: super::super::log_limit::LogLimits::default(),
        }
    }

    #[tokio::test]
    async fn captures_exit_code_env_cwd_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        let s = spec(dir.path(), "sh", &["-c", "echo env=$SG_TEST; pwd; echo oops >&2; exit 3"], None);
        let result = run(&s, rx, |_| {}).await;
        assert_eq!(result.termination, Termination::Exited(3));
        assert!(result.log_tail.contains("env=yes"));
        assert!(result.log_tail.contains("oops"));
        assert!(result.log_tail.contains(dir.path().to_str().unwrap()));
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_spawn_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        let result = run(&spec(dir.path(), "/no/such/program", &[], None), rx, |_| {}).await;
        match result.termination {
            Termination::SpawnFailed(m) => assert!(m.contains("/no/such/program"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        // A grandchild that would outlive a plain kill of the shell.
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let result =
            run(&spec(dir.path(), "sh", &["-c", &script], Some(Duration::from_millis(300))), rx, |_| {})
                .await;
        assert_eq!(result.termination, Termination::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // Gone, or a zombie waiting for a reaper that is not us.
        let deadline = Instant::now() + Duration::from_secs(5);
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
                .unwrap_or(false)
        };
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn kill_request_stops_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(None);
        let handle = tokio::spawn({
            let s = spec(dir.path(), "sleep", &["30"], None);
            async move { run(&s, rx, |_| {}).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send_replace(Some(KillReason::Cancelled));
        let result = handle.await.unwrap();
        assert_eq!(result.termination, Termination::Killed(KillReason::Cancelled));
        assert!(result.duration < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_flood_of_output_is_capped_and_long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        // One 300,000-byte line, then 600,000 bytes of short lines.
        let script = "head -c 300000 /dev/zero | tr '\\0' x; echo; yes line | head -n 120000; echo done";
        let mut s = spec(dir.path(), "sh", &["-c", script], None);
        s.log_limits = super::super::log_limit::LogLimits { max_bytes: 200_000, max_line_bytes: 100_000 };
        let result = run(&s, rx, |_| {}).await;
        assert_eq!(result.termination, Termination::Exited(0), "the job itself is not stopped");
        let log = std::fs::read_to_string(&s.log_path).unwrap();
        assert!(log.len() < 200_200, "log holds {} bytes", log.len());
        let first = log.lines().next().unwrap();
        assert_eq!(first.bytes().take_while(|&b| b == b'x').count(), 100_000);
        assert!(first.ends_with("[sgnode: line cut at max_log_line_kb = 97 KiB]"), "{}", &first[99_990..]);
        assert!(log.ends_with("[sgnode: log reached max_log_mb = 0 MiB; further output discarded]\n"));
        assert!(!log.contains("done"));
        assert!(result.log_tail.ends_with("further output discarded]\n"));
    }

    #[tokio::test]
    async fn a_descendant_holding_the_output_open_does_not_hold_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(None);
        // Leaves the process group (setsid), so the group kill misses it,
        // and keeps stdout open for 30 s.
        let pidfile = dir.path().join("escaped.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {0}.tmp; mv {0}.tmp {0}; exec sleep 30' & \
             while [ ! -s {0} ]; do sleep 0.01; done; echo started",
            pidfile.display()
        );
        let result = run(&spec(dir.path(), "sh", &["-c", &script], None), rx, |_| {}).await;
        let pid: Option<i32> = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok());
        let pid = pid.expect("the escaped process wrote its pid");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(result.termination, Termination::Exited(0));
        assert!(result.log_tail.contains("started"), "{:?}", result.log_tail);
        assert!(result.duration < Duration::from_secs(20), "waited {:?} for the pipe", result.duration);
    }
}
