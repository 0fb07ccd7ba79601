//! Retention for the job logs a worker keeps on its own disk.
//!
//! Logs live under `<data_dir>/logs/<job id / 1000>/<job id>-<attempt>.log`:
//! a thousand jobs share a directory, so starting an attempt rarely creates
//! one (inode allocation showed in profiles of busy workers), and whole
//! directories go at once when their jobs are gone. A log goes once the
//! funnel no longer has its job — `history_retention` removed it — so local
//! logs live exactly as long as the history that points at them; without
//! this sweep they were never deleted and would fill the disk in time. The
//! leader sweeps `shared_log_dir` the same way (one peer is enough there).

use std::path::{Path, PathBuf};

use crate::queue::JobId;

/// Jobs per log directory.
const JOBS_PER_DIR: JobId = 1000;

/// Where the log of `job`'s attempt `attempt` lives on the peer that ran it.
pub fn log_path(data_dir: &Path, job: JobId, attempt: u32) -> PathBuf {
    data_dir.join("logs").join((job / JOBS_PER_DIR).to_string()).join(format!("{job}-{attempt}.log"))
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub dirs: u64,
}

/// Removes the logs under `logs_dir` of jobs for which `gone` is true. A
/// directory whose whole id range is gone is removed in one go without
/// reading it; others are read file by file. Names it does not recognise
/// are left alone.
pub fn sweep(logs_dir: &Path, gone: impl Fn(JobId) -> bool) -> Swept {
    let mut swept = Swept::default();
    let Ok(shards) = std::fs::read_dir(logs_dir) else { return swept };
    for shard in shards.flatten() {
        let Some(index) = shard.file_name().to_str().and_then(|n| n.parse::<JobId>().ok()) else { continue };
        let first = index.saturating_mul(JOBS_PER_DIR);
        let path = shard.path();
        if (first..first.saturating_add(JOBS_PER_DIR)).all(&gone) {
            if std::fs::remove_dir_all(&path).is_ok() {
                swept.dirs += 1;
            }
            continue;
        }
        let Ok(files) = std::fs::read_dir(&path) else { continue };
        for file in files.flatten() {
            let name = file.file_name();
            let job =
                name.to_str().and_then(|n| n.split_once('-')).and_then(|(j, _)| j.parse::<JobId>().ok());
            if job.is_some_and(&gone) && std::fs::remove_file(file.path()).is_ok() {
                swept.files += 1;
            }
        }
    }
    swept
}

/// Removes the per-job directories (`<dir>/<job id>/`) of `shared_log_dir`
/// whose job is gone. Names that are not job ids are left alone.
pub fn sweep_shared(dir: &Path, gone: impl Fn(JobId) -> bool) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(dir) else { return swept };
    for entry in entries.flatten() {
        let job = entry.file_name().to_str().and_then(|n| n.parse::<JobId>().ok());
        if job.is_some_and(&gone) && std::fs::remove_dir_all(entry.path()).is_ok() {
            swept.dirs += 1;
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_of_gone_jobs_go_whole_directories_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let paths: Vec<PathBuf> = [(5, 1), (999, 2), (1000, 1), (1500, 1), (1500, 2), (2999, 1)]
            .iter()
            .map(|&(job, attempt)| log_path(data, job, attempt))
            .collect();
        for p in &paths {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        std::fs::write(data.join("logs/1/notes.txt"), "kept").unwrap();
        assert_eq!(paths[2], data.join("logs/1/1000-1.log"));
        // Jobs below 1500 are gone, and so is 2999.
        let swept = sweep(&data.join("logs"), |job| job < 1500 || job == 2999);
        assert_eq!(swept, Swept { files: 2, dirs: 1 });
        assert!(!data.join("logs/0").exists(), "all of 0..1000 gone: the directory goes");
        assert!(!paths[2].exists());
        assert!(paths[3].exists() && paths[4].exists());
        assert!(data.join("logs/1/notes.txt").exists(), "unknown names are left alone");
        assert!(!paths[5].exists() && data.join("logs/2").exists());
        assert_eq!(sweep(&data.join("no-such-dir"), |_| true), Swept::default());
    }

    #[test]
    fn shared_copies_of_gone_jobs_go() {
        let dir = tempfile::tempdir().unwrap();
        for job in ["7", "8", "tmp"] {
            std::fs::create_dir_all(dir.path().join(job)).unwrap();
            std::fs::write(dir.path().join(job).join("1.log"), "x").unwrap();
        }
        assert_eq!(sweep_shared(dir.path(), |job| job == 7), Swept { files: 0, dirs: 1 });
        assert!(!dir.path().join("7").exists());
        assert!(dir.path().join("8/1.log").exists() && dir.path().join("tmp").exists());
    }
}
