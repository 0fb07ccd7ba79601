//! Fencing of job processes that outlive their worker's lease.
//!
//! A job runs in its own process group, so freezing (SIGSTOP) or killing
//! (kill -9) the `sgnode` process does not stop it. The guard is a tiny
//! separate process per peer that watches the worker's lease file and the
//! registry of running process groups; once the lease has expired it kills
//! every registered group. That is what makes "the leader declares the node
//! lost after `node_timeout`" safe: by then the old attempts are dead even
//! if their worker is frozen or gone. A restarted worker also kills whatever
//! the registry still lists before it registers a new incarnation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::node::now_millis;

/// Registry and lease file locations under a peer's work dir.
#[derive(Debug, Clone)]
pub struct FenceDir {
    root: PathBuf,
}

impl FenceDir {
    pub fn new(work_dir: &Path) -> FenceDir {
        FenceDir { root: work_dir.to_path_buf() }
    }

    fn running(&self) -> PathBuf {
        self.root.join("running")
    }

    fn lease_file(&self) -> PathBuf {
        self.root.join("lease")
    }

    /// Creates the directories.
    ///
    /// # Errors
    /// File-system errors.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.running())
    }

    /// Records that the lease is valid until `until_ms` (wall clock).
    pub fn write_lease(&self, until_ms: u64) {
        let tmp = self.root.join("lease.tmp");
        // Rename is atomic, so the guard never reads a half-written value.
        if std::fs::write(&tmp, until_ms.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, self.lease_file());
        }
    }

    /// Marks the lease as expired now (clean shutdown, lost node).
    pub fn expire_lease(&self) {
        self.write_lease(0);
    }

    fn lease_until(&self) -> u64 {
        std::fs::read_to_string(self.lease_file()).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// Registers a running process group.
    pub fn register(&self, pgid: i32) {
        if let Some(start) = process_start_time(pgid) {
            let _ = std::fs::write(self.running().join(pgid.to_string()), start.to_string());
        }
    }

    /// Forgets a process group that was reaped.
    pub fn unregister(&self, pgid: i32) {
        let _ = std::fs::remove_file(self.running().join(pgid.to_string()));
    }

    /// Kills every registered group that is still the process we started
    /// (same start time, so a recycled pid is left alone). Returns how many.
    pub fn kill_all(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.running()) else { return 0 };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let pgid: Option<i32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
            let recorded: Option<u64> =
                std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
            if let (Some(pgid), Some(recorded)) = (pgid, recorded) {
                if pgid > 1 && process_start_time(pgid) == Some(recorded) {
                    // SAFETY: plain syscall; the start-time check above makes
                    // sure the group leader is the process we registered.
                    unsafe {
                        libc::killpg(pgid, libc::SIGKILL);
                    }
                    killed += 1;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }

    fn has_running(&self) -> bool {
        std::fs::read_dir(self.running()).map(|mut d| d.next().is_some()).unwrap_or(false)
    }
}

/// Start time of a process (clock ticks since boot, field 22 of
/// /proc/PID/stat), used to recognise a pid across reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The guard's main loop (`sgnode guard`): kills the registered jobs when
/// the lease expires (worker frozen or cut off) or at once when the worker
/// process is gone (nobody could ever report their outcome, so letting them
/// finish would only make their rerun a second run). Returns when the
/// worker is gone and nothing is left to fence.
pub fn run_guard(work_dir: &Path, parent: i32) {
    let fence = FenceDir::new(work_dir);
    loop {
        let parent_alive = alive(parent);
        if fence.has_running() && (!parent_alive || now_millis() > fence.lease_until()) {
            let killed = fence.kill_all();
            if killed > 0 {
                let why = if parent_alive { "lease expired" } else { "worker is gone" };
                eprintln!("sgnode guard: {why}, killed {killed} job process group(s)");
            }
        }
        if !parent_alive && !fence.has_running() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
