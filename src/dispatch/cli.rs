//! The dispatch subcommands of the CLI: `schedule`, `backfill`, `publish`
//! and `induced`. Like the rest of the CLI this is the program's edge, so it
//! uses `anyhow` and leaves exit codes to `cli::exit_code`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use clap::Subcommand;

use super::file::ScheduleFile;
use super::template::parse_zone;
use super::{tick_spec, InducedSet};
use crate::api::dispatch::{ApplyItem, ApplyRequest, DatasetView, InducedView, PublishRequest, ScheduleView};
use crate::api::views::{BatchItem, BatchSubmitRequest, BatchSubmitResponse, SubmitRequest};
use crate::cli::{print_json, Connection, Exit};
use crate::queue::Millis;

/// `sgnode schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create or update the schedules and induced jobs of a TOML file
    /// (idempotent: re-applying an unchanged file changes nothing).
    Apply {
        #[command(flatten)]
        conn: Connection,
        /// The schedule file.
        file: PathBuf,
        /// Also delete definitions the file does not name.
        #[arg(long)]
        prune: bool,
    },
    /// List schedules with their next fire times.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a schedule (or an induced definition).
    Rm {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Stop firing a schedule.
    Pause {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
    /// Fire a paused schedule again (ticks missed while paused are not replayed).
    Resume {
        #[command(flatten)]
        conn: Connection,
        name: String,
    },
}

/// `sgnode induced ...`
#[derive(Debug, Subcommand)]
pub enum InducedCommand {
    /// Every candidate parameter set and the inputs it still misses.
    List {
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `sgnode schedule ...`.
///
/// # Errors
/// File, transport and API errors.
pub async fn schedule(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Apply { conn, file, prune } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = ScheduleFile::parse(&text).with_context(|| format!("in {}", file.display()))?;
            let request = ApplyRequest { schedules: parsed.schedules, induced: parsed.induced, prune };
            let items: Vec<ApplyItem> =
                conn.client()?.post_json("schedules/apply", &request).await.map_err(Exit)?;
            if conn.json {
                return print_json(&items);
            }
            for item in &items {
                println!("{:<9} {:<9} {}", item.kind, item.result, item.name);
            }
            if items.is_empty() {
                println!("nothing to apply");
            }
            Ok(())
        }
        ScheduleCommand::List { conn } => {
            let views: Vec<ScheduleView> = conn.client()?.get_json("schedules").await.map_err(Exit)?;
            if conn.json {
                return print_json(&views);
            }
            println!(
                "{:<24} {:<18} {:<16} {:<7} {:>6} {:>7}  NEXT FIRE",
                "NAME", "CRON", "ZONE", "STATE", "FIRED", "SKIPPED"
            );
            for v in &views {
                println!(
                    "{:<24} {:<18} {:<16} {:<7} {:>6} {:>7}  {}",
                    v.name,
                    v.cron,
                    v.timezone,
                    if v.paused { "paused" } else { "active" },
                    v.fired,
                    v.skipped,
                    v.next_fire.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        ScheduleCommand::Rm { conn, name } => {
            let item: ApplyItem = conn
                .client()?
                .delete_json(&format!("schedules/{}", path_segment(&name)))
                .await
                .map_err(Exit)?;
            if conn.json {
                return print_json(&item);
            }
            println!("deleted {name}");
            Ok(())
        }
        ScheduleCommand::Pause { conn, name } => pause(conn, &name, "pause").await,
        ScheduleCommand::Resume { conn, name } => pause(conn, &name, "resume").await,
    }
}

async fn pause(conn: Connection, name: &str, action: &str) -> anyhow::Result<()> {
    let path = format!("schedules/{}/{action}", path_segment(name));
    let view: ScheduleView = conn.client()?.post_json(&path, &()).await.map_err(Exit)?;
    if conn.json {
        return print_json(&view);
    }
    println!("{} {}", view.name, if view.paused { "paused" } else { "active" });
    Ok(())
}

/// Percent-encodes a name for use as one URL path segment.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `sgnode publish DATASET`.
///
/// # Errors
/// Transport and API errors.
pub async fn publish(conn: Connection, dataset: String, params: Vec<(String, String)>) -> anyhow::Result<()> {
    let request = PublishRequest { dataset, params: params.into_iter().collect() };
    let view: DatasetView = conn.client()?.post_json("datasets", &request).await.map_err(Exit)?;
    if conn.json {
        return print_json(&view);
    }
    let count = view.event.as_ref().map_or(1, |e| e.count);
    println!(
        "published {} ({})",
        view.dataset,
        if view.first { "first time".to_string() } else { format!("{count} times") }
    );
    Ok(())
}

/// `sgnode induced list`.
///
/// # Errors
/// Transport and API errors.
pub async fn induced(command: InducedCommand) -> anyhow::Result<()> {
    let InducedCommand::List { conn } = command;
    let view: InducedView = conn.client()?.get_json("induced").await.map_err(Exit)?;
    if conn.json {
        return print_json(&view);
    }
    let describe = |set: &InducedSet| {
        let params: Vec<String> = set.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let state = if set.ready {
            "ready".to_string()
        } else if set.missing.is_empty() {
            "fired".to_string()
        } else {
            format!("waiting for {}", set.missing.join(", "))
        };
        println!("{:<24} {:<28} {state}", set.name, params.join(","));
    };
    println!("{:<24} {:<28} STATE", "NAME", "PARAMETERS");
    view.sets.iter().for_each(describe);
    Ok(())
}

/// `sgnode backfill NAME --from --to [--step]`.
#[derive(Debug, clap::Args)]
pub struct Backfill {
    #[command(flatten)]
    pub conn: Connection,
    /// The schedule whose job template to use.
    pub name: String,
    /// First date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SS), in the schedule's zone.
    #[arg(long)]
    pub from: String,
    /// Last date or date-time, inclusive.
    #[arg(long)]
    pub to: String,
    /// Distance between runs.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Jobs per submit request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

const MAX_BACKFILL: usize = 100_000;

fn parse_point(text: &str, zone: chrono_tz::Tz) -> anyhow::Result<Millis> {
    let naive = match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => date.and_hms_opt(0, 0, 0).context("midnight")?,
        Err(_) => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
            .with_context(|| format!("{text:?} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM:SS"))?,
    };
    let at = zone
        .from_local_datetime(&naive)
        .earliest()
        .with_context(|| format!("{text} does not exist in {zone} (DST gap)"))?;
    Ok(u64::try_from(at.timestamp_millis()).unwrap_or(0))
}

impl Backfill {
    /// Submits one job per step with keys `NAME@backfill:LABEL`; re-running
    /// submits nothing new while the earlier jobs are inside the dedup window.
    ///
    /// # Errors
    /// Bad range, unknown schedule, transport and API errors.
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.conn.client()?;
        let view: ScheduleView =
            client.get_json(&format!("schedules/{}", path_segment(&self.name))).await.map_err(Exit)?;
        let zone = parse_zone(&view.def.timezone).map_err(anyhow::Error::msg)?;
        let from = parse_point(&self.from, zone).context("--from")?;
        let to = parse_point(&self.to, zone).context("--to")?;
        anyhow::ensure!(from <= to, "--from must not be after --to");
        let step = u64::try_from(self.step.as_millis()).unwrap_or(u64::MAX);
        anyhow::ensure!(step >= 1000, "--step must be at least 1s");
        let whole_days = step % 86_400_000 == 0;
        let mut points = Vec::new();
        let mut at = from;
        while at <= to {
            anyhow::ensure!(points.len() < MAX_BACKFILL, "more than {MAX_BACKFILL} runs; narrow the range");
            points.push(at);
            at = if whole_days {
                // Calendar days, so a DST change does not shift the time of day.
                let days = step / 86_400_000;
                let local = super::zoned(at, zone).naive_local();
                let next = local.checked_add_days(chrono::Days::new(days)).context("date out of range")?;
                let next = zone.from_local_datetime(&next).earliest().context("next date in a DST gap")?;
                u64::try_from(next.timestamp_millis()).unwrap_or(u64::MAX)
            } else {
                at.saturating_add(step)
            };
        }
        let mut jobs = Vec::with_capacity(points.len());
        for &point in &points {
            let spec = tick_spec(&view.def, point).map_err(anyhow::Error::msg)?;
            let local = super::zoned(point, zone);
            let label = if whole_days { local.format("%Y-%m-%d") } else { local.format("%Y-%m-%dT%H:%M:%S") };
            let mut request = SubmitRequest::from(&spec);
            request.dedup_key = Some(format!("{}@backfill:{label}", self.name));
            jobs.push(request);
        }
        let bar = if self.conn.json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(jobs.len() as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} jobs {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (mut created, mut duplicates) = (0u64, 0u64);
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for chunk in jobs.chunks(self.batch.clamp(1, crate::api::MAX_BATCH_JOBS)) {
            let request = BatchSubmitRequest { jobs: chunk.to_vec() };
            let response: BatchSubmitResponse =
                client.submit_batch(&request, rand::random()).await.map_err(Exit)?;
            for item in response.results {
                match item {
                    BatchItem::Ok(r) if r.duplicate => duplicates += 1,
                    BatchItem::Ok(_) => created += 1,
                    BatchItem::Err(e) => *refused.entry(e.error.message).or_default() += 1,
                }
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let summary = serde_json::json!({
            "schedule": self.name,
            "runs": points.len(),
            "submitted": created,
            "duplicates": duplicates,
            "refused": refused,
        });
        if self.conn.json {
            return print_json(&summary);
        }
        println!(
            "backfill {}: {} runs, {created} submitted, {duplicates} already there{}",
            self.name,
            points.len(),
            if refused.is_empty() { String::new() } else { format!(", refused: {refused:?}") }
        );
        anyhow::ensure!(refused.is_empty(), "some runs were refused");
        Ok(())
    }
}
