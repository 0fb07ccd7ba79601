//! Execution on a worker: every peer watches its own replica for attempts
//! placed on it, gets the job's artifact ready, picks the runner, runs the
//! process through the shared process runner, and reports
//! `Started`/`Finished` as replicated writes.
//!
//! - [`process`]: spawn, environment, cwd, timeout, kill, log capture.
//! - [`artifact`]: fetch, verify, cache and unpack job archives; runner
//!   detection.
//! - [`shell`], [`hadoop`], [`luigi`]: the runners, each a small adapter
//!   that turns a job into a [`process::ProcessSpec`].
//! - [`worker`]: the per-peer loop, lease and heartbeats, reports.
//! - [`shared_log`]: copies of finished attempts' logs in `shared_log_dir`.
//! - [`log_limit`]: the pipe from a job to its log, with size and line caps.
//! - [`log_sweep`]: where local logs live, and their removal with their jobs.
//! - [`guard`]: the fencing process that kills jobs whose lease expired.
//! - [`user`]: `run_as`, jobs as an unprivileged user.

pub mod artifact;
pub mod guard;
pub mod hadoop;
pub mod log_limit;
pub mod log_sweep;
pub mod luigi;
pub mod process;
pub mod shared_log;
pub mod shell;
pub mod user;
pub mod worker;

use std::path::Path;
use std::time::Duration;

use self::process::ProcessSpec;
use crate::queue::{Job, NodeId};

/// What every runner adapter starts from: the attempt, its directory and
/// log, the arguments for the job and the environment every job gets.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub job: &'a Job,
    /// The attempt's own directory (the unpacked artifact, if any); cwd.
    pub dir: &'a Path,
    pub log: &'a Path,
    /// The job's arguments, or the manifest's defaults when it has none.
    pub args: Vec<String>,
    /// `SG_JOB_ID`, `SG_ATTEMPT`, `SG_NODE_ID`, `SG_PARAM_<NAME>`, ...
    pub env: Vec<(String, String)>,
}

impl<'a> Launch<'a> {
    /// The common part of every attempt: sgnode's variables, the params as
    /// `SG_PARAM_<NAME>`, then `extra_env` (a manifest's `[env]`).
    pub fn new(
        job: &'a Job,
        attempt: u32,
        node: NodeId,
        dir: &'a Path,
        log: &'a Path,
        extra_env: impl IntoIterator<Item = (String, String)>,
    ) -> Launch<'a> {
        let mut env = vec![
            ("SG_JOB_ID".to_string(), job.id.to_string()),
            ("SG_JOB_NAME".to_string(), job.spec.name.clone()),
            ("SG_ATTEMPT".to_string(), attempt.to_string()),
            ("SG_NODE_ID".to_string(), node.to_string()),
        ];
        if job.spec.artifact.is_some() {
            env.push(("SG_ARTIFACT_DIR".to_string(), dir.display().to_string()));
        }
        for (name, value) in &job.spec.params {
            env.push((format!("SG_PARAM_{}", name.to_ascii_uppercase()), value.clone()));
        }
        env.extend(extra_env);
        Launch { job, dir, log, args: job.spec.args.clone(), env }
    }

    /// Uses `defaults` when the job gives no arguments of its own.
    pub fn with_default_args(mut self, defaults: &[String]) -> Launch<'a> {
        if self.args.is_empty() {
            self.args = defaults.to_vec();
        }
        self
    }

    /// The process: `program` with `args`, in the attempt's directory.
    pub fn spec(self, program: String, args: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            program,
            args,
            env: self.env,
            cwd: self.dir.to_path_buf(),
            log_path: self.log.to_path_buf(),
            timeout: self.job.spec.timeout_ms.map(Duration::from_millis),
            run_as: None,
            log_limits: log_limit::LogLimits::default(),
        }
    }
}
