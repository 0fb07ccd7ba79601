//! sgnode: a distributed batch-job execution platform made of identical peers.
//!
//! # Layout
//! - [`config`]: `cluster.toml`, the description of a cluster.
//! - [`queue`]: the funnel, the replicated state machine as pure code.
//! - [`raft`]: consensus plumbing: openraft types, sled log store and state
//!   machine adapter, HTTP transport.
//! - [`node`]: a running peer: bootstrap, write path (batching, forwarding,
//!   idempotent retries), leader housekeeping, shutdown.
//! - [`api`]: the HTTP surface: client API, Raft RPCs, errors.
//! - [`client`]: typed HTTP client used by the CLI and the benchmark.
//! - [`cli`]: the `sgnode` command line (the only place `anyhow` is used).

pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod node;
pub mod queue;
pub mod raft;
