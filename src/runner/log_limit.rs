//! Bounds on what one attempt may write to its log (`max_log_mb` and
//! `max_log_line_kb` in `cluster.toml`).
//!
//! A job's stdout and stderr go through a pipe that the worker copies into
//! the attempt's log file, because a file handed straight to the job could
//! grow until the peer's disk is full — and a full disk stops the peer's
//! Raft log too. Over-long lines are cut (a job printing a 2 GiB line would
//! otherwise make every `logs` reader and the replicated tail hold one
//! unbreakable line), and past the size cap output is read and discarded so
//! the job never blocks on a full pipe. Both leave a marker in the log saying
//! what happened; the job itself keeps running and its outcome is its own.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Limits for one attempt's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes kept in the log file; output beyond is discarded.
    pub max_bytes: u64,
    /// Longest line kept; the rest of a longer line is discarded.
    pub max_line_bytes: usize,
}

impl LogLimits {
    /// The limits `cluster.toml` sets.
    pub fn from_config(config: &crate::config::ClusterConfig) -> LogLimits {
        LogLimits {
            max_bytes: config.max_log_mb.saturating_mul(1024 * 1024),
            max_line_bytes: usize::try_from(config.max_log_line_kb.saturating_mul(1024))
                .unwrap_or(usize::MAX),
        }
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { max_bytes: 1024 * 1024 * 1024, max_line_bytes: 64 * 1024 }
    }
}

/// What the limits did to one attempt's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes written to the log file (markers included).
    pub written: u64,
    /// Bytes the job wrote that were discarded (cut lines, past the cap).
    pub discarded: u64,
    /// Lines that were cut.
    pub lines_cut: u64,
    /// Whether the size cap was reached.
    pub capped: bool,
}

/// Applies [`LogLimits`] to a stream of output, chunk by chunk.
#[derive(Debug)]
pub struct LogLimiter {
    limits: LogLimits,
    /// Length of the current (unfinished) line as kept.
    line: usize,
    /// Inside a line that was cut: discard until its newline.
    cutting: bool,
    stats: LogStats,
}

impl LogLimiter {
    pub fn new(limits: LogLimits) -> LogLimiter {
        LogLimiter { limits, line: 0, cutting: false, stats: LogStats::default() }
    }

    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// Appends to `out` what of `input` is kept.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.stats.capped {
            self.stats.discarded += input.len() as u64;
            return;
        }
        let start = out.len();
        let mut rest = input;
        while !rest.is_empty() {
            let (content, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = &rest[content.len() + usize::from(newline)..];
            if self.cutting {
                self.stats.discarded += content.len() as u64;
            } else {
                let room = self.limits.max_line_bytes - self.line;
                let kept = content.len().min(room);
                out.extend_from_slice(&content[..kept]);
                self.line += kept;
                if kept < content.len() {
                    self.stats.discarded += (content.len() - kept) as u64;
                    self.stats.lines_cut += 1;
                    out.extend_from_slice(
                        format!(
                            " [sgnode: line cut at max_log_line_kb = {} KiB]",
                            self.limits.max_line_bytes / 1024
                        )
                        .as_bytes(),
                    );
                    self.cutting = true;
                }
            }
            if newline {
                out.push(b'\n');
                self.line = 0;
                self.cutting = false;
            }
        }
        let produced = (out.len() - start) as u64;
        let room = self.limits.max_bytes.saturating_sub(self.stats.written);
        if produced > room {
            // `room < produced <= usize`, so the cast cannot truncate.
            out.truncate(start + room as usize);
            self.stats.discarded += produced - room;
            self.stats.capped = true;
            out.extend_from_slice(
                format!(
                    "\n[sgnode: log reached max_log_mb = {} MiB; further output discarded]\n",
                    self.limits.max_bytes / (1024 * 1024)
                )
                .as_bytes(),
            );
        }
        self.stats.written += (out.len() - start) as u64;
    }
}

/// How long the copy may go on after the job's process group was killed: a
/// descendant that left the group (setsid) may still hold the pipe open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Copies a job's output pipe into its log file under `limits` until the
/// pipe closes.
pub async fn copy_output(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut file: tokio::fs::File,
    limits: LogLimits,
) -> std::io::Result<LogStats> {
    let mut limiter = LogLimiter::new(limits);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buffer.len() + 256);
    loop {
        let n = pipe.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        out.clear();
        limiter.feed(&buffer[..n], &mut out);
        if !out.is_empty() {
            file.write_all(&out).await?;
        }
    }
    file.flush().await?;
    Ok(limiter.stats())
}

/// Waits for a copy started with [`copy_output`] once the job has ended,
/// giving up 2 s after (the task is aborted then): a descendant that left
/// the job's process group may hold the pipe open.
pub async fn finish_copy(mut copy: tokio::task::JoinHandle<std::io::Result<LogStats>>) -> Option<LogStats> {
    match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut copy).await {
        Ok(Ok(Ok(stats))) => Some(stats),
        Ok(Ok(Err(e))) => {
            tracing::warn!("copying a job's output to its log failed: {e}");
            None
        }
        Ok(Err(_)) => None,
        Err(_) => {
            tracing::warn!("a job's output pipe stayed open {DRAIN_AFTER_EXIT:?} after it ended; log closed");
            copy.abort();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limits: LogLimits, chunks: &[&[u8]]) -> (String, LogStats) {
        let mut limiter = LogLimiter::new(limits);
        let mut out = Vec::new();
        for chunk in chunks {
            limiter.feed(chunk, &mut out);
        }
        assert_eq!(limiter.stats().written, out.len() as u64, "written counts what was produced");
        (String::from_utf8(out).unwrap(), limiter.stats())
    }

    #[test]
    fn output_within_limits_passes_through_unchanged() {
        let limits = LogLimits { max_bytes: 1000, max_line_bytes: 10 };
        let (out, stats) = run(limits, &[b"one\ntw", b"o\n", b"", b"three"]);
        assert_eq!(out, "one\ntwo\nthree");
        assert_eq!(stats, LogStats { written: 13, discarded: 0, lines_cut: 0, capped: false });
    }

    #[test]
    fn long_lines_are_cut_with_a_marker_even_across_chunks() {
        let limits = LogLimits { max_bytes: 10_000, max_line_bytes: 2048 };
        let long = vec![b'x'; 3000];
        let (out, stats) = run(limits, &[&long[..1500], &long[1500..], b"\nshort\n"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(2048)));
        assert!(lines[0].ends_with("[sgnode: line cut at max_log_line_kb = 2 KiB]"), "{}", &lines[0][2040..]);
        assert_eq!(lines[0].bytes().take_while(|&b| b == b'x').count(), 2048);
        assert_eq!(lines[1], "short");
        assert_eq!((stats.lines_cut, stats.discarded), (1, 952));
    }

    #[test]
    fn output_past_the_cap_is_discarded_after_one_marker() {
        let limits = LogLimits { max_bytes: 20, max_line_bytes: 1024 };
        let (out, stats) = run(limits, &[b"0123456789\n", b"0123456789\n", b"more\n", b"and more\n"]);
        let (kept, marker) = out.split_at(20);
        assert_eq!(kept, "0123456789\n012345678");
        assert_eq!(marker, "\n[sgnode: log reached max_log_mb = 0 MiB; further output discarded]\n");
        assert!(stats.capped);
        assert_eq!(stats.discarded, 2 + 5 + 9);
    }

    #[tokio::test]
    async fn copy_output_drains_a_pipe_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let file = tokio::fs::File::create(&path).await.unwrap();
        let limits = LogLimits { max_bytes: 1 << 20, max_line_bytes: 100 };
        let copy = tokio::spawn(copy_output(rx, file, limits));
        tx.write_all(&[b'y'; 150]).await.unwrap();
        tx.write_all(b"\nend\n").await.unwrap();
        drop(tx);
        let stats = finish_copy(copy).await.expect("copied");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("KiB]\nend\n"), "{text}");
        assert_eq!(stats.lines_cut, 1);
    }
}
