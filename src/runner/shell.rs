//! The shell runner: runs an inline command (`sgnode submit -- CMD ARGS`)
//! directly, without a shell in between, so params can never be pasted into
//! a command line; they travel as `SG_PARAM_<NAME>` environment variables.

use std::path::Path;
use std::time::Duration;

use super::process::ProcessSpec;
use crate::queue::{Job, NodeId};

/// Builds the process for attempt `attempt` of `job` on `node`.
pub fn process_spec(job: &Job, attempt: u32, node: NodeId, cwd: &Path, log_path: &Path) -> ProcessSpec {
    let mut env = vec![
        ("SG_JOB_ID".to_string(), job.id.to_string()),
        ("SG_JOB_NAME".to_string(), job.spec.name.clone()),
        ("SG_ATTEMPT".to_string(), attempt.to_string()),
        ("SG_NODE_ID".to_string(), node.to_string()),
    ];
    for (name, value) in &job.spec.params {
        env.push((format!("SG_PARAM_{}", name.to_ascii_uppercase()), value.clone()));
    }
    let (program, args) =
        job.spec.command.split_first().map_or((String::new(), Vec::new()), |(p, a)| (p.clone(), a.to_vec()));
    ProcessSpec {
        program,
        args,
        env,
        cwd: cwd.to_path_buf(),
        log_path: log_path.to_path_buf(),
        timeout: job.spec.timeout_ms.map(Duration::from_millis),
    }
}
