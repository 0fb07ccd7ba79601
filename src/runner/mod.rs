//! Execution on a worker: every peer watches its own replica for attempts
//! placed on it, runs them through the shared process runner, and reports
//! `Started`/`Finished` as replicated writes.
//!
//! - [`process`]: spawn, environment, cwd, timeout, kill, log capture.
//! - [`shell`]: the shell runner (inline commands).
//! - [`worker`]: the per-peer loop, lease and heartbeats, reports.
//! - [`guard`]: the fencing process that kills jobs whose lease expired.

pub mod guard;
pub mod process;
pub mod shell;
pub mod worker;
