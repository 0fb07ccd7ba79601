//! What `/metrics` counts, and the Prometheus text format it is written in.
//!
//! [`Observed`] holds the counters. They are fed from the *apply path* of
//! this replica (see [`Observed::observe`]): every peer applies the same log,
//! so every peer reports the same cluster-wide numbers (since its process
//! started), whichever peer a client wrote through. Sum them over peers and
//! you count each event once per replica — take one peer's value, or `max`.
//! Observing reads only the command, its outcome and the funnel's replicated
//! records, never a clock: latencies are differences of leader timestamps.
//!
//! [`TextWriter`] renders the text exposition format 0.0.4 by hand: one
//! `# HELP` and `# TYPE` line per family, label values escaped (`\\`, `"`,
//! newline), help text escaped (`\\`, newline).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::queue::{Command, Funnel, FunnelError, JobId, Outcome};

/// Upper bounds (ms) of the submit-to-start latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 14] =
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000];

/// A cumulative histogram over [`LATENCY_BUCKETS_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations at or below each bound (not yet cumulative).
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    count: u64,
    sum_ms: u64,
}

impl Histogram {
    /// Records one value.
    pub fn observe(&mut self, ms: u64) {
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(upper bound in ms, cumulative count)` per bucket, `+Inf` excluded.
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS_MS
            .iter()
            .zip(self.buckets)
            .map(|(&bound, n)| {
                total += n;
                (bound, total)
            })
            .collect()
    }
}

/// Counters fed by the apply path of one replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Jobs created (manual, batch, schedule and induced submits).
    pub submitted: u64,
    /// Submits answered with an existing job (dedup key taken).
    pub dedup_hits: u64,
    /// Refused submits, by reason (`queue_full`, `unschedulable`, `invalid`).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Placements that held.
    pub assigned: u64,
    /// Attempts that started.
    pub started: u64,
    /// Attempts that ended, by outcome (`succeeded`, `failed`, ...).
    pub finished: BTreeMap<String, u64>,
    /// First attempts: job submitted -> attempt started (leader clocks).
    pub submit_to_start: Histogram,
}

fn rejection(e: &FunnelError) -> &'static str {
    match e {
        FunnelError::QueueFull { .. } => "queue_full",
        FunnelError::Unschedulable { .. } => "unschedulable",
        FunnelError::Invalid { .. } => "invalid",
        _ => "other",
    }
}

impl Observed {
    /// Counts what one applied entry did. `next_id_before` is the funnel's
    /// next job id before the entry: a submit outcome naming an id at or
    /// above it created that job (an idempotent retry names an older one).
    pub fn observe(
        &mut self,
        next_id_before: JobId,
        commands: &[Command],
        outcomes: &[Outcome],
        funnel: &Funnel,
    ) {
        for (command, outcome) in commands.iter().zip(outcomes) {
            match (command, outcome) {
                (Command::Submit { .. }, Outcome::Submitted { id, duplicate, .. })
                | (Command::ScheduleFired { .. }, Outcome::Fired { job: Some(id), duplicate })
                | (Command::InducedFired { .. }, Outcome::Fired { job: Some(id), duplicate }) => {
                    if *duplicate {
                        self.dedup_hits += 1;
                    } else if *id >= next_id_before {
                        self.submitted += 1;
                    }
                }
                (Command::Submit { .. }, Outcome::Refused(e)) => {
                    *self.rejected.entry(rejection(e)).or_default() += 1;
                }
                (Command::Assign { .. }, Outcome::Assigned { accepted }) => {
                    self.assigned += u64::from(*accepted);
                }
                (Command::Started { job, attempt, .. }, Outcome::Reported { current: true, .. })
                | (
                    Command::Finished { job, attempt, .. },
                    Outcome::Reported { current: true, started: true, .. },
                ) => {
                    self.started += 1;
                    let job = funnel.job(*job);
                    let first = job.filter(|_| *attempt == 1).and_then(|j| {
                        let a = j.attempts.iter().find(|a| a.number == 1)?;
                        Some(a.started_at?.saturating_sub(j.submitted_at))
                    });
                    if let Some(ms) = first {
                        self.submit_to_start.observe(ms);
                    }
                }
                _ => {}
            }
            if let (Command::Finished { end, .. }, Outcome::Reported { current: true, placed, .. }) =
                (command, outcome)
            {
                self.assigned += u64::from(*placed);
                let name = serde_json::to_value(end.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".into());
                *self.finished.entry(name).or_default() += 1;
            }
        }
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes families in the text exposition format.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
}

/// Metric kind, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

impl TextWriter {
    pub fn new() -> TextWriter {
        TextWriter::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {}\n# TYPE {name} {kind}", escape_help(help));
        self
    }

    /// One sample line; `labels` are (name, unescaped value).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.out, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A histogram family in seconds from a millisecond [`Histogram`].
    pub fn histogram_seconds(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        self.family(name, Kind::Histogram, help);
        for (bound, n) in h.cumulative() {
            let le = format!("{}", bound as f64 / 1000.0);
            self.sample(&format!("{name}_bucket"), &[("le", &le)], n as f64);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count as f64);
        self.sample(&format!("{name}_sum"), &[], h.sum_ms as f64 / 1000.0);
        self.sample(&format!("{name}_count"), &[], h.count as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// This process's resident memory now and at its peak (`VmRSS`, `VmHWM`
/// in `/proc/self/status`), bytes; `None` where procfs is missing.
pub fn process_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_overflow_only_in_inf() {
        let mut h = Histogram::default();
        for ms in [0, 1, 3, 60_001] {
            h.observe(ms);
        }
        let c = h.cumulative();
        assert_eq!(c[0], (1, 2));
        assert_eq!(c[2], (5, 3));
        assert_eq!(c.last(), Some(&(60_000, 3)));
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn metrics_text_escapes_labels_and_help() {
        let mut w = TextWriter::new();
        w.family("x_total", Kind::Counter, "a \\ b\nc").sample("x_total", &[("l", "q\"\\\n")], 2.0);
        assert_eq!(
            w.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{l=\"q\\\"\\\\\\n\"} 2\n"
        );
    }
}
