//! Client calls of the built-in artifact store: upload (streamed, with a
//! progress callback) and listing.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Client, ClientError};
use crate::api::artifacts::{ArtifactPushView, ArtifactView};

/// Bound on one upload (the peer also copies it to another peer first).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
const CHUNK: usize = 256 * 1024;

fn read_error(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Usage(format!("cannot read {}: {e}", path.display()))
}

impl Client {
    /// SHA-256 (hex) and size of a local file; `progress` gets the bytes
    /// read so far.
    ///
    /// # Errors
    /// [`ClientError::Usage`] when the file cannot be read.
    pub async fn hash_file(&self, path: &Path, progress: impl Fn(u64)) -> Result<(String, u64), ClientError> {
        let mut file = tokio::fs::File::open(path).await.map_err(|e| read_error(path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(|e| read_error(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            done += n as u64;
            progress(done);
        }
        Ok((hex::encode(hasher.finalize()), done))
    }

    /// Uploads `path` to the built-in store as `hash` (its SHA-256),
    /// streamed; `progress` gets the bytes sent so far. Returns once the
    /// peer stored it and copied it to another peer.
    ///
    /// # Errors
    /// `invalid_request` (hash mismatch), 413 over `artifact_max_mb`,
    /// `unauthorized`, `unavailable` (no other peer took a copy).
    pub async fn push_artifact(
        &self,
        path: &Path,
        hash: &str,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<ArtifactPushView, ClientError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| read_error(path, e))?;
        let length = file.metadata().await.map_err(|e| read_error(path, e))?.len();
        let chunks = futures::stream::unfold((file, 0u64), |(mut file, sent)| async move {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<Vec<u8>, std::io::Error>(buf), (file, sent + n as u64)))
                }
                Err(e) => Some((Err(e), (file, sent))),
            }
        });
        let mut sent = 0u64;
        let counted = chunks.map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                progress(sent);
            }
            chunk
        });
        let url = self.url(&format!("artifacts/{hash}"));
        let request = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_LENGTH, length)
            .timeout(UPLOAD_TIMEOUT)
            .body(reqwest::Body::wrap_stream(counted));
        self.send(request, &url).await
    }

    /// Every artifact in the built-in store, with its holders.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn artifacts(&self) -> Result<Vec<ArtifactView>, ClientError> {
        let url = self.url("artifacts");
        self.send(self.http.get(&url), &url).await
    }
}
