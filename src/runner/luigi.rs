//! The Luigi runner: `python -m luigi --module M TASK --local-scheduler`
//! with the interpreter named by `python_bin` in `cluster.toml` and
//! `PYTHONPATH` starting at the unpacked artifact.
//!
//! Params become Luigi parameters of the task (`date` -> `--date VALUE`,
//! `out_dir` -> `--out-dir VALUE`), each value one argument, never pasted
//! into a command line; they are also in the environment as
//! `SG_PARAM_<NAME>`. The job's arguments follow.
//!
//! Success needs both: Luigi exits 0 even when tasks failed unless told
//! otherwise, so the runner passes `--retcode-*` options (non-zero exit for
//! failed, missing or unrun tasks) *and* requires Luigi's own summary line
//! `This progress looks :)` in the output.

use super::process::ProcessSpec;
use super::Launch;

/// Exit codes asked of Luigi, and what they mean.
const RETCODES: [(&str, i32, &str); 6] = [
    ("--retcode-already-running", 10, "the task is already running elsewhere"),
    ("--retcode-missing-data", 11, "an external dependency is missing"),
    ("--retcode-not-run", 12, "a task was not run"),
    ("--retcode-task-failed", 13, "a task failed"),
    ("--retcode-scheduling-error", 14, "a task could not be scheduled"),
    ("--retcode-unhandled-exception", 15, "luigi raised an unhandled exception"),
];

/// Luigi's summary line for a run without failures.
pub const SUCCESS_LINE: &str = "This progress looks :)";

/// `python_bin -m luigi --module MODULE TASK --local-scheduler ...`.
pub fn process_spec(mut launch: Launch<'_>, python_bin: &str, module: &str, task: &str) -> ProcessSpec {
    let mut args: Vec<String> = ["-m", "luigi", "--module", module, task, "--local-scheduler"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, code, _) in RETCODES {
        args.push(flag.to_string());
        args.push(code.to_string());
    }
    for (name, value) in &launch.job.spec.params {
        args.push(format!("--{}", name.replace('_', "-")));
        args.push(value.clone());
    }
    args.extend(launch.args.iter().cloned());
    let mut path = launch.dir.display().to_string();
    if let Ok(existing) = std::env::var("PYTHONPATH") {
        if !existing.is_empty() {
            path = format!("{path}:{existing}");
        }
    }
    launch.env.push(("PYTHONPATH".to_string(), path));
    launch.spec(python_bin.to_string(), args)
}

/// Luigi's verdict on a run that exited with `exit_code`, given the end of
/// its output: `None` when it succeeded, else why it did not.
pub fn failure(exit_code: i32, log_tail: &str) -> Option<String> {
    if exit_code == 0 {
        if log_tail.contains(SUCCESS_LINE) {
            return None;
        }
        let summary = log_tail.lines().rev().find(|l| l.contains("This progress looks")).map(str::trim);
        return Some(match summary {
            Some(line) => format!("exit code 0 but luigi reports failure: {line}"),
            None => "exit code 0 but no luigi execution summary in the output".to_string(),
        });
    }
    let meaning = RETCODES.iter().find(|(_, code, _)| *code == exit_code).map(|(_, _, what)| *what);
    Some(match meaning {
        Some(what) => format!("exit code {exit_code} (luigi: {what})"),
        None => format!("exit code {exit_code}"),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::api::views::SubmitRequest;
    use crate::queue::{Job, JobState};

    pub(crate) fn job(params: &[(&str, &str)], args: &[&str]) -> Job {
        let request = SubmitRequest {
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..SubmitRequest::new("etl", Vec::new())
        };
        Job {
            id: 7,
            spec: request.into(),
            dedup_key: "k".into(),
            state: JobState::Assigned,
            submitted_at: 0,
            finished_at: None,
            request: None,
            attempts: Vec::new(),
            not_before: 0,
            cancel_requested: false,
        }
    }

    #[test]
    fn params_become_luigi_parameters_one_argument_each() {
        let job = job(&[("date", "2026-12-04"), ("out_dir", "/tmp/a b; rm -rf /")], &["--workers", "2"]);
        let launch = Launch::new(&job, 1, 3, Path::new("/w/7-1"), Path::new("/l"), []);
        let spec = process_spec(launch, "/venv/bin/python", "pipeline", "Report");
        assert_eq!(spec.program, "/venv/bin/python");
        assert_eq!(&spec.args[..6], ["-m", "luigi", "--module", "pipeline", "Report", "--local-scheduler"]);
        let tail: Vec<&str> = spec.args[spec.args.len() - 6..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["--date", "2026-12-04", "--out-dir", "/tmp/a b; rm -rf /", "--workers", "2"]);
        assert!(spec.args.windows(2).any(|w| w == ["--retcode-task-failed", "13"]));
        let path = spec.env.iter().find(|(k, _)| k == "PYTHONPATH").map(|(_, v)| v.as_str()).unwrap();
        assert!(path.starts_with("/w/7-1"), "{path}");
        assert!(spec.env.iter().any(|(k, v)| k == "SG_PARAM_DATE" && v == "2026-12-04"));
    }

    #[test]
    fn summary_and_exit_code_both_decide() {
        let ok = "...\nThis progress looks :) because there were no failed tasks or missing dependencies\n";
        assert_eq!(failure(0, ok), None);
        let bad = "This progress looks :( because there were failed tasks\n";
        assert!(failure(0, bad).unwrap().contains("luigi reports failure: This progress looks :("));
        assert!(failure(0, "nothing").unwrap().contains("no luigi execution summary"));
        assert_eq!(failure(13, bad).unwrap(), "exit code 13 (luigi: a task failed)");
        assert_eq!(failure(2, "").unwrap(), "exit code 2");
    }
}
