//! The shell runner: runs an inline command (`sgnode submit -- CMD ARGS`),
//! or an artifact's script (`run.sh`, or the manifest's entry) with the
//! job's arguments. Always directly, without a shell in between, so params
//! can never be pasted into a command line; they travel as
//! `SG_PARAM_<NAME>` environment variables.

use std::path::Path;

use super::process::ProcessSpec;
use super::Launch;

/// An inline command: the job's `command` words (then its `args`, when an
/// artifact job overrides the entry point with a command).
pub fn command_spec(launch: Launch<'_>) -> ProcessSpec {
    let mut words = launch.job.spec.command.clone().into_iter();
    let program = words.next().unwrap_or_default();
    let mut args: Vec<String> = words.collect();
    args.extend(launch.args.iter().cloned());
    launch.spec(program, args)
}

/// A shipped script run with the job's arguments.
pub fn script_spec(launch: Launch<'_>, script: &Path) -> ProcessSpec {
    let args = launch.args.clone();
    launch.spec(script.display().to_string(), args)
}
