//! Deployment on a worker: get a job's archive onto this peer's disk,
//! verified, and unpacked into the attempt's fresh directory; then choose
//! the runner from what it holds.
//!
//! - [`fetch`]: http(s), `file://` and peer-to-peer downloads, streamed,
//!   size-bounded, hashed on the way.
//! - [`cache`]: the per-peer LRU cache by hash, with single-flight.
//! - [`store`]: the built-in store's files on this peer.
//! - [`unpack`]: safe extraction of tar.gz, tar, zip and jar.
//! - [`detect`]: `sgjob.toml`, or detection of Hadoop, Luigi and shell jobs.
//!
//! Workers are stateless about artifacts: everything needed to get one is
//! in the job (URL and hash) or in the funnel (which peers hold a store
//! hash). Failures become the attempt's reason, prefixed so that scripts
//! can tell them apart: `artifact_fetch:`, `artifact_checksum:`,
//! `artifact_too_large:`, `artifact_invalid:`, `artifact_io:`.

pub mod cache;
pub mod detect;
pub mod fetch;
pub mod store;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::detect::{Entry, RunPlan};
use self::unpack::UnpackLimits;
use crate::config::ClusterConfig;
use crate::queue::{ArtifactRef, NodeId};

/// Why an artifact could not be made ready. The `Display` text is what the
/// failed attempt records as its reason.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Could not get the bytes (HTTP status, unreachable, timeout, no holder).
    #[error("artifact_fetch: {0}")]
    Fetch(String),
    /// Got bytes, but not the promised ones.
    #[error("artifact_checksum: expected {expected} got {got}")]
    Checksum { expected: String, got: String },
    /// More bytes than `artifact_max_mb`.
    #[error("artifact_too_large: {origin} is larger than {max} bytes (artifact_max_mb)")]
    TooLarge { origin: String, max: u64 },
    /// The archive is unsafe, corrupt, or holds nothing runnable.
    #[error("artifact_invalid: {0}")]
    Invalid(String),
    /// This peer's own disk failed.
    #[error("artifact_io: {context}: {error}")]
    Io { context: String, error: std::io::Error },
}

impl ArtifactError {
    /// An I/O failure of this peer, with what it was doing.
    pub fn io(context: &str, error: std::io::Error) -> ArtifactError {
        ArtifactError::Io { context: context.to_string(), error }
    }
}

/// Deployment settings and state of one peer; share behind an `Arc`.
pub struct Artifacts {
    data_dir: PathBuf,
    cache: Arc<cache::Cache>,
    fetcher: fetch::Fetcher,
    limits: UnpackLimits,
    token: String,
}

const MIB: u64 = 1024 * 1024;

impl Artifacts {
    /// Opens this peer's cache under `data_dir` with the cluster's limits.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the cache directory is unusable.
    pub fn open(
        config: &ClusterConfig,
        data_dir: &Path,
        trust: &crate::tls::Trust,
    ) -> Result<Artifacts, ArtifactError> {
        let cache =
            cache::Cache::open(&store::cache_dir(data_dir), config.artifact_cache_mb.saturating_mul(MIB))
                .map_err(|e| ArtifactError::io("cannot open the artifact cache", e))?;
        Ok(Artifacts {
            data_dir: data_dir.to_path_buf(),
            cache: Arc::new(cache),
            fetcher: fetch::Fetcher::new(
                config.artifact_max_mb.saturating_mul(MIB),
                config.artifact_fetch_timeout,
                config.scheme(),
                trust,
            )?,
            limits: UnpackLimits {
                max_entries: config.artifact_max_entries,
                max_bytes: config.artifact_unpacked_max_mb.saturating_mul(MIB),
            },
            token: config.token.clone(),
        })
    }

    /// Makes `artifact` ready in `dir` (an empty directory): finds it in
    /// this peer's store or cache or fetches it (from its URL, or from one
    /// of `holders` for a store reference), verifies it, unpacks it, and
    /// chooses the runner.
    ///
    /// # Errors
    /// [`ArtifactError`], whose text is the attempt's failure reason.
    pub async fn prepare(
        &self,
        artifact: &ArtifactRef,
        holders: &[(NodeId, String)],
        dir: &Path,
    ) -> Result<RunPlan, ArtifactError> {
        let hash = artifact.sha256.as_str();
        let local = store::stored_path(&self.data_dir, hash);
        let pinned;
        let archive: PathBuf = if artifact.store_hash().is_some() && local.is_file() {
            local
        } else {
            let fetch = |dest: PathBuf| async move {
                match artifact.store_hash() {
                    Some(_) => self.fetcher.from_peers(hash, holders, &self.token, &dest).await,
                    None => self.fetcher.url(&artifact.url, hash, &dest).await,
                }
            };
            pinned = self
                .cache
                .get_or_fetch(hash, fetch, |e| ArtifactError::io("cannot cache the artifact", e))
                .await?;
            pinned.path().to_path_buf()
        };
        let (dir, limits) = (dir.to_path_buf(), self.limits);
        tokio::task::spawn_blocking(move || {
            unpack::unpack(&archive, &dir, limits)?;
            detect::detect(&dir)
        })
        .await
        .map_err(|e| ArtifactError::Invalid(format!("unpacking stopped: {e}")))?
    }

    /// The cache (for tests and metrics).
    pub fn cache(&self) -> &Arc<cache::Cache> {
        &self.cache
    }
}
