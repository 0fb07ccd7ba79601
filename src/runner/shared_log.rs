//! The optional shared log directory (`shared_log_dir` in `cluster.toml`,
//! typically an NFS mount every peer sees).
//!
//! When an attempt ends, its worker copies the attempt's full log to
//! `<shared_log_dir>/<job id>/<attempt>.log`, the same layout as the
//! worker's own `<data_dir>/logs/`. The copy is written to a temporary
//! file in the same directory, synced, then renamed into place, so a reader
//! on any peer sees either no file or the whole log, never half of one.
//! A failed copy costs the job nothing: the worker logs it and reports the
//! attempt as usual (the replicated tail is still there).

use std::io;
use std::path::{Path, PathBuf};

use crate::queue::{JobId, NodeId};

/// Where the shared copy of `job`'s attempt `attempt` lives under `dir`.
pub fn path(dir: &Path, job: JobId, attempt: u32) -> PathBuf {
    dir.join(job.to_string()).join(format!("{attempt}.log"))
}

/// Copies the log at `log` to its shared place under `dir`, atomically
/// (temp file + fsync + rename); returns the bytes copied. Blocking: call
/// it from a blocking thread.
///
/// The temporary name carries `node`, so two peers can never write the
/// same temporary file (fencing already keeps two of them from running one
/// attempt; this keeps even a confused one from tearing the other's copy).
///
/// # Errors
/// Any I/O error reading the log or writing the copy; the temporary file
/// is removed on failure.
pub fn copy(log: &Path, dir: &Path, job: JobId, attempt: u32, node: NodeId) -> io::Result<u64> {
    let target = path(dir, job, attempt);
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{attempt}.log.{node}.tmp"));
    let written = (|| {
        let mut from = std::fs::File::open(log)?;
        let mut to = std::fs::File::create(&tmp)?;
        let bytes = io::copy(&mut from, &mut to)?;
        to.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        Ok(bytes)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lands_whole_under_job_and_attempt_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("local.log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, &text).expect("write log");
        let shared = dir.path().join("shared");
        let bytes = copy(&log, &shared, 42, 3, 1).expect("copy");
        assert_eq!(bytes, text.len() as u64);
        assert_eq!(std::fs::read_to_string(shared.join("42").join("3.log")).expect("copy"), text);
        let names: Vec<_> = std::fs::read_dir(shared.join("42")).expect("dir").flatten().collect();
        assert_eq!(names.len(), 1, "only the renamed copy remains");
    }

    #[test]
    fn a_missing_log_fails_without_leaving_anything_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = dir.path().join("shared");
        assert!(copy(&dir.path().join("absent.log"), &shared, 7, 1, 2).is_err());
        assert!(!path(&shared, 7, 1).exists());
        assert_eq!(std::fs::read_dir(shared.join("7")).expect("dir").count(), 0);
    }
}
