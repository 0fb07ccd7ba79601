//! sgnode: a distributed batch-job execution platform made of identical peers.
//!
//! # Layout
//! - [`config`]: `cluster.toml`, the description of a cluster.
//! - [`queue`]: the funnel, the replicated state machine as pure code.
//! - [`raft`]: consensus plumbing: openraft types, sled log store and state
//!   machine adapter, HTTP transport.
//! - [`node`]: a running peer: bootstrap, write path (batching, forwarding,
//!   idempotent retries), leader housekeeping, shutdown.
//! - [`arbiter`]: the leader's placement loop and node-liveness monitor.
//! - [`dispatch`]: cron schedules, templates, backfill and induced jobs; the
//!   leader's dispatcher loop.
//! - [`runner`]: execution on each worker: process runner, shell runner,
//!   worker loop with lease and heartbeats, fencing guard.
//! - [`api`]: the HTTP surface: client API, Raft RPCs, errors.
//! - [`tls`]: optional HTTPS for the peer port and the CA every client trusts.
//! - [`metrics`]: counters fed by the apply path, Prometheus text format.
//! - [`ui`]: the web dashboard, assets embedded in the binary.
//! - [`client`]: typed HTTP client used by the CLI and the benchmark.
//! - [`cli`]: the `sgnode` command line (the only place `anyhow` is used).
//! - [`mod@bench`]: load generators behind `sgnode bench`.

pub mod api;
pub mod arbiter;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod members;
pub mod metrics;
pub mod node;
pub mod queue;
pub mod raft;
pub mod runner;
pub mod tls;
pub mod ui;
