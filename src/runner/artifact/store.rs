//! The built-in artifact store on one peer's disk: content-addressed files
//! under `<data_dir>/artifacts/store/<sha256>`, written only after their
//! content was verified (temporary file, hash check, fsync, rename).
//!
//! Which peers hold which hash is recorded in the funnel
//! (`ArtifactRegistered`); the files here are never evicted by the cache.

use std::path::{Path, PathBuf};

use super::fetch::VerifiedFile;
use super::ArtifactError;

/// The store directory of a peer.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("artifacts").join("store")
}

/// The cache directory of a peer (fetched archives, LRU-bounded).
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("artifacts").join("cache")
}

/// Where this peer keeps `hash` if it holds it.
pub fn stored_path(data_dir: &Path, hash: &str) -> PathBuf {
    store_dir(data_dir).join(hash)
}

/// An upload on its way into the store.
pub struct Incoming {
    file: VerifiedFile,
    guard: super::cache::RemoveOnDrop,
    hash: String,
    data_dir: PathBuf,
}

impl Incoming {
    /// Starts receiving `hash` (at most `max` bytes).
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the store cannot be written.
    pub async fn begin(
        data_dir: &Path,
        hash: &str,
        max: u64,
        source: &str,
    ) -> Result<Incoming, ArtifactError> {
        let dir = store_dir(data_dir);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| ArtifactError::io("cannot create the store", e))?;
        let partial = dir.join(format!(".{hash}.{:016x}.part", rand::random::<u64>()));
        let file = VerifiedFile::create(&partial, max, source).await?;
        let guard = super::cache::RemoveOnDrop(Some(partial));
        Ok(Incoming { file, guard, hash: hash.to_string(), data_dir: data_dir.to_path_buf() })
    }

    /// Refuses an announced length over the limit.
    ///
    /// # Errors
    /// [`ArtifactError::TooLarge`].
    pub fn check_announced(&self, length: Option<u64>) -> Result<(), ArtifactError> {
        self.file.check_announced(length)
    }

    /// Appends a chunk.
    ///
    /// # Errors
    /// As [`VerifiedFile::write`].
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        self.file.write(chunk).await
    }

    /// Verifies and moves the file into place; returns its size.
    ///
    /// # Errors
    /// [`ArtifactError::Checksum`] when the bytes do not hash to the name.
    pub async fn commit(self) -> Result<u64, ArtifactError> {
        let partial = self.file.path().to_path_buf();
        let size = self.file.finish(&self.hash).await?;
        let target = stored_path(&self.data_dir, &self.hash);
        tokio::fs::rename(&partial, &target)
            .await
            .map_err(|e| ArtifactError::io("cannot store the artifact", e))?;
        self.guard.disarm();
        Ok(size)
    }
}
