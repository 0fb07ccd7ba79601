//! Getting an archive's bytes onto this peer's disk, verified: from an
//! http(s) URL, a `file://` path, or another peer's built-in store.
//!
//! Every source streams into a [`VerifiedFile`], which hashes while it
//! writes, stops at the size limit, and only succeeds when the content
//! hashes to what the job promised. Nothing is ever unpacked from a file
//! that did not pass this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ArtifactError;
use crate::queue::NodeId;

/// How long one chunk of a download may take to arrive.
const READ_STALL: Duration = Duration::from_secs(60);

/// A file being written whose size is bounded and whose SHA-256 is
/// computed on the way.
pub struct VerifiedFile {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    max: u64,
    /// Names the source in the size error.
    source: String,
}

impl VerifiedFile {
    /// Creates `path` (which must not exist).
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the file cannot be created.
    pub async fn create(path: &Path, max: u64, source: &str) -> Result<VerifiedFile, ArtifactError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|e| ArtifactError::io("cannot create a download file", e))?;
        Ok(VerifiedFile {
            file,
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            size: 0,
            max,
            source: source.to_string(),
        })
    }

    /// Refuses up front a source that announces more than the limit.
    ///
    /// # Errors
    /// [`ArtifactError::TooLarge`].
    pub fn check_announced(&self, length: Option<u64>) -> Result<(), ArtifactError> {
        match length {
            Some(n) if n > self.max => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    fn too_large(&self) -> ArtifactError {
        ArtifactError::TooLarge { origin: self.source.clone(), max: self.max }
    }

    /// Appends a chunk.
    ///
    /// # Errors
    /// [`ArtifactError::TooLarge`] past the limit; I/O errors.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(self.too_large());
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await.map_err(|e| ArtifactError::io("cannot write a download file", e))
    }

    /// Flushes to disk and checks the hash; returns the size.
    ///
    /// # Errors
    /// [`ArtifactError::Checksum`] when the content is not what `expected`
    /// (lowercase hex) promises.
    pub async fn finish(mut self, expected: &str) -> Result<u64, ArtifactError> {
        let got = hex::encode(self.hasher.finalize_reset());
        if got != expected {
            return Err(ArtifactError::Checksum { expected: expected.to_string(), got });
        }
        self.file.flush().await.map_err(|e| ArtifactError::io("cannot write a download file", e))?;
        self.file.sync_all().await.map_err(|e| ArtifactError::io("cannot sync a download file", e))?;
        Ok(self.size)
    }

    /// Where the bytes go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Limits and the client every fetch uses.
#[derive(Clone)]
pub struct Fetcher {
    pub http: reqwest::Client,
    /// Largest archive, bytes.
    pub max_bytes: u64,
    /// Bound on one whole fetch.
    pub timeout: Duration,
    /// `http` or `https`: how the cluster's peers serve their stores.
    pub scheme: &'static str,
}

impl Fetcher {
    /// A fetcher with its own HTTP client (connect timeout 10 s) that trusts
    /// the public roots and the cluster CA (artifact URLs may point anywhere,
    /// store copies come from peers), reaching peers over `scheme`.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(
        max_bytes: u64,
        timeout: Duration,
        scheme: &'static str,
        trust: &crate::tls::Trust,
    ) -> Result<Fetcher, ArtifactError> {
        let http = trust
            .with_public_roots(reqwest::Client::builder())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ArtifactError::Fetch(format!("cannot build the HTTP client: {e}")))?;
        Ok(Fetcher { http, max_bytes, timeout, scheme })
    }

    /// Downloads `url` (http, https or file) into `dest`, verified.
    ///
    /// # Errors
    /// [`ArtifactError::Fetch`] (HTTP status, transport, timeout),
    /// [`ArtifactError::TooLarge`], [`ArtifactError::Checksum`].
    pub async fn url(&self, url: &str, sha256: &str, dest: &Path) -> Result<u64, ArtifactError> {
        let work = async {
            if let Some(path) = url.strip_prefix("file://") {
                self.file(Path::new(path), url, sha256, dest).await
            } else {
                self.http(url, None, sha256, dest).await
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ArtifactError::Fetch(format!(
                "{url} took longer than {:?} (artifact_fetch_timeout)",
                self.timeout
            ))),
        }
    }

    async fn file(&self, path: &Path, url: &str, sha256: &str, dest: &Path) -> Result<u64, ArtifactError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ArtifactError::Fetch(format!("cannot open {url}: {e}")))?;
        let mut out = VerifiedFile::create(dest, self.max_bytes, url).await?;
        out.check_announced(file.metadata().await.ok().map(|m| m.len()))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| ArtifactError::Fetch(format!("cannot read {url}: {e}")))?;
            if n == 0 {
                break;
            }
            out.write(&buf[..n]).await?;
        }
        out.finish(sha256).await
    }

    async fn http(
        &self,
        url: &str,
        token: Option<&str>,
        sha256: &str,
        dest: &Path,
    ) -> Result<u64, ArtifactError> {
        let mut request = self.http.get(url);
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ArtifactError::Fetch(format!("cannot get {url}: {}", error_chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ArtifactError::Fetch(format!("HTTP {} from {url}", status.as_u16())));
        }
        let mut out = VerifiedFile::create(dest, self.max_bytes, url).await?;
        out.check_announced(response.content_length())?;
        let mut body = response.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(READ_STALL, body.next()).await {
                Err(_) => return Err(ArtifactError::Fetch(format!("{url} sent nothing for {READ_STALL:?}"))),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(ArtifactError::Fetch(format!(
                        "download from {url} broke: {}",
                        error_chain(&e)
                    )))
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            out.write(&chunk).await?;
        }
        out.finish(sha256).await
    }

    /// Fetches a built-in store artifact from the first of `holders` (id,
    /// `host:port`) that serves it, into `dest`, verified.
    ///
    /// # Errors
    /// [`ArtifactError::Fetch`] naming every holder tried and why it
    /// failed; [`ArtifactError::Checksum`] if a holder sent other bytes.
    pub async fn from_peers(
        &self,
        hash: &str,
        holders: &[(NodeId, String)],
        token: &str,
        dest: &Path,
    ) -> Result<u64, ArtifactError> {
        if holders.is_empty() {
            return Err(ArtifactError::Fetch(format!(
                "sg:sha256:{hash} is not in the built-in store (push it with `sgnode artifact push`)"
            )));
        }
        let mut failures = Vec::new();
        for (id, addr) in holders {
            let url = format!("{}://{addr}/api/v1/artifacts/{hash}", self.scheme);
            let _ = tokio::fs::remove_file(dest).await;
            match tokio::time::timeout(self.timeout, self.http(&url, Some(token), hash, dest)).await {
                Ok(Ok(size)) => return Ok(size),
                // A holder that sends other bytes is broken, not absent.
                Ok(Err(e @ ArtifactError::Checksum { .. })) => return Err(e),
                Ok(Err(e)) => failures.push(format!("peer {id}: {e}")),
                Err(_) => failures.push(format!("peer {id}: took longer than {:?}", self.timeout)),
            }
        }
        Err(ArtifactError::Fetch(format!(
            "no holder of sg:sha256:{hash} could serve it ({})",
            failures.join("; ").replace("artifact_fetch: ", "")
        )))
    }
}

/// A reqwest error with its causes ("connection refused" hides in them).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
