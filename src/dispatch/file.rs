//! The schedule file: TOML kept in a job's source tree and applied by
//! `sgnode schedule apply FILE` (typically from a CD pipeline).
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-report"
//! cron = "30 2 * * *"            # or 6 fields with seconds first
//! timezone = "Europe/Berlin"     # IANA; default UTC
//! catch_up = "latest"            # none | latest | all
//! max_catch_up = 100             # bound for catch_up = "all"
//! misfire_grace = "1m"           # how late catch_up = "none" still fires
//! overlap = "forbid"             # allow | forbid | replace
//! [schedule.job]
//! command = ["report", "--day", "{{date-1d}}"]
//! # or: artifact = "sg:sha256:..." and args = ["--day", "{{date-1d}}"]
//! params = { region = "eu" }
//! retries = 2
//! timeout = "1h"
//!
//! [[induced]]
//! name = "join-logs"
//! inputs = ["dataset:logs/{{date}}", "file:/data/users/{{date}}/_SUCCESS"]
//! params = ["date"]
//! [induced.job]
//! command = ["join", "{{date}}"]
//! ```
//!
//! Unknown keys are errors, so a typo never silently drops a setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::queue::{ArtifactRef, CatchUp, InducedDef, JobSpec, Overlap, ScheduleDef};

/// Why a schedule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleFileError {
    #[error("cannot parse schedule file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("schedule file defines {0:?} twice")]
    Duplicate(String),
}

/// The job a schedule or induced definition submits (templates allowed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    /// Defaults to the schedule's name.
    pub name: Option<String>,
    /// Program and arguments; may be left out when `artifact` is given (the
    /// archive's entry point runs).
    #[serde(default)]
    pub command: Vec<String>,
    /// `sg:sha256:HEX` from `sgnode artifact push`, or an http(s)/file URL.
    pub artifact: Option<String>,
    /// SHA-256 of a URL artifact (implied by an `sg:` reference).
    pub sha256: Option<String>,
    /// Arguments for the artifact's runner.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub slots: u32,
    #[serde(default)]
    pub mem_mb: u64,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub retries: u32,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn one() -> u32 {
    1
}

fn utc() -> String {
    "UTC".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    name: String,
    cron: String,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default = "default_max_catch_up")]
    max_catch_up: u32,
    #[serde(default = "default_grace", with = "humantime_serde")]
    misfire_grace: Duration,
    #[serde(default)]
    overlap: Overlap,
    job: JobTemplate,
}

fn default_max_catch_up() -> u32 {
    100
}

fn default_grace() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InducedEntry {
    name: String,
    inputs: Vec<String>,
    #[serde(default = "date_param")]
    params: Vec<String>,
    #[serde(default = "default_lookback")]
    lookback_days: u32,
    #[serde(default = "utc")]
    timezone: String,
    job: JobTemplate,
}

fn date_param() -> Vec<String> {
    vec!["date".to_string()]
}

fn default_lookback() -> u32 {
    3
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    #[serde(default)]
    schedule: Vec<ScheduleEntry>,
    #[serde(default)]
    induced: Vec<InducedEntry>,
}

/// Everything one file defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleFile {
    pub schedules: Vec<ScheduleDef>,
    pub induced: Vec<InducedDef>,
}

impl JobTemplate {
    /// The template as a job spec (templates still unrendered).
    pub fn to_spec(&self, default_name: &str) -> JobSpec {
        JobSpec {
            params: self.params.clone(),
            slots: self.slots,
            mem_mb: self.mem_mb,
            priority: self.priority,
            retries: self.retries,
            timeout_ms: self.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            artifact: self.artifact.as_deref().map(|url| ArtifactRef::new(url, self.sha256.as_deref())),
            args: self.args.clone(),
            ..JobSpec::new(
                self.name.clone().unwrap_or_else(|| default_name.to_string()),
                self.command.clone(),
            )
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ScheduleFile {
    /// Parses the TOML text (checks only its shape; the cluster validates
    /// cron, zones and templates when the definitions are applied).
    ///
    /// # Errors
    /// [`ScheduleFileError`] with the line for syntax and unknown keys.
    pub fn parse(text: &str) -> Result<ScheduleFile, ScheduleFileError> {
        let body: FileBody = toml::from_str(text)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut file = ScheduleFile::default();
        for entry in body.schedule {
            if !seen.insert(entry.name.clone()) {
                return Err(ScheduleFileError::Duplicate(entry.name));
            }
            file.schedules.push(ScheduleDef {
                job: entry.job.to_spec(&entry.name),
                name: entry.name,
                cron: entry.cron,
                timezone: entry.timezone,
                catch_up: entry.catch_up,
                max_catch_up: entry.max_catch_up,
                misfire_grace_ms: millis(entry.misfire_grace),
                overlap: entry.overlap,
            });
        }
        for entry in body.induced {
            if !seen.insert(entry.name.clone()) {
                return Err(ScheduleFileError::Duplicate(entry.name));
            }
            file.induced.push(InducedDef {
                job: entry.job.to_spec(&entry.name),
                name: entry.name,
                inputs: entry.inputs,
                params: entry.params,
                lookback_days: entry.lookback_days,
                timezone: entry.timezone,
            });
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
[[schedule]]
name = "nightly-report"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
catch_up = "all"
max_catch_up = 7
overlap = "replace"
[schedule.job]
command = ["report", "--day", "{{date-1d}}"]
params = { region = "eu" }
retries = 2
timeout = "1h"

[[induced]]
name = "join-logs"
inputs = ["dataset:logs/{{date}}", "file:/data/users/{{date}}/_SUCCESS"]
[induced.job]
command = ["join", "{{date}}"]
"#;
        let file = ScheduleFile::parse(text).unwrap();
        let s = &file.schedules[0];
        assert_eq!((s.catch_up, s.overlap, s.max_catch_up), (CatchUp::All, Overlap::Replace, 7));
        assert_eq!(s.job.name, "nightly-report");
        assert_eq!(s.job.timeout_ms, Some(3_600_000));
        assert_eq!(s.misfire_grace_ms, 60_000);
        let i = &file.induced[0];
        let art = ScheduleFile::parse(&format!(
            "[[schedule]]\nname='a'\ncron='* * * * *'\n[schedule.job]\nartifact='sg:sha256:{}'\nargs=['{{{{date}}}}']\n",
            "ab".repeat(32)
        ))
        .unwrap();
        let spec = &art.schedules[0].job;
        assert_eq!(spec.artifact.as_ref().map(|a| a.sha256.clone()), Some("ab".repeat(32)));
        assert!(spec.command.is_empty() && spec.args == vec!["{{date}}".to_string()]);
        assert_eq!(i.params, vec!["date".to_string()]);
        assert_eq!((i.lookback_days, i.timezone.as_str()), (3, "UTC"));
    }

    #[test]
    fn unknown_keys_and_duplicates_are_refused() {
        let e = ScheduleFile::parse(
            "[[schedule]]\nname='a'\ncron='* * * * *'\ncatchup='all'\n[schedule.job]\ncommand=['x']\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("catchup"), "{e}");
        let twice = "[[schedule]]\nname='a'\ncron='* * * * *'\n[schedule.job]\ncommand=['x']\n".repeat(2);
        assert!(matches!(ScheduleFile::parse(&twice), Err(ScheduleFileError::Duplicate(n)) if n == "a"));
        let e = ScheduleFile::parse(
            "[[schedule]]\nname='a'\ncron='* * * * *'\ncatch_up='sometimes'\n[schedule.job]\ncommand=['x']\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
    }
}
