//! Typed HTTP client for the client API, used by the CLI, the benchmark and
//! the tests. Errors keep the server's `code` so callers can branch on it,
//! and map to the CLI's documented exit codes.

mod artifacts;

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::views::*;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} (HTTP {status}, {code})")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// Refused before sending (e.g. a template that does not render).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Exit code for scripts: 2 invalid request, 3 unauthorized, 4 not
    /// found, 5 queue full, 6 unavailable (no quorum / unreachable), 7
    /// conflict, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Api { status, .. } => match status {
                400 | 405 | 413 => 2,
                401 | 403 => 3,
                404 => 4,
                429 => 5,
                503 => 6,
                409 => 7,
                _ => 1,
            },
            ClientError::Usage(_) => 2,
            ClientError::Unreachable { .. } => 6,
            ClientError::Http { source, .. } if source.is_timeout() => 6,
            _ => 1,
        }
    }
}

/// Connection failures mean "unreachable" (exit code 6); others are plain
/// HTTP failures.
fn transport_error(url: &str, source: reqwest::Error) -> ClientError {
    if source.is_connect() {
        ClientError::Unreachable { url: url.to_string(), source }
    } else {
        ClientError::Http { url: url.to_string(), source }
    }
}

/// A client bound to one peer.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the peer at `base` (e.g. `http://127.0.0.1:7101`).
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::with_timeout(base, token, Duration::from_secs(30))
    }

    /// Same, with a different per-request time limit.
    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Client {
        let http = Client::builder(timeout).build().unwrap_or_default();
        Client { base: base.trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()), http }
    }

    /// A client for an `https://` peer whose certificate is signed by a CA
    /// in `trust` (the cluster's own CA), in addition to the public roots.
    ///
    /// # Errors
    /// [`ClientError::Usage`] when the TLS client cannot be built; unlike
    /// the plain constructors this never falls back to a client that would
    /// not trust the CA.
    pub fn with_trust(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        trust: &crate::tls::Trust,
    ) -> Result<Client, ClientError> {
        let http = trust
            .with_public_roots(Client::builder(timeout))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot build the HTTPS client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    fn builder(timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .tcp_nodelay(true)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|source| transport_error(url, source))?;
        let status = response.status();
        let bytes =
            response.bytes().await.map_err(|source| ClientError::Http { url: url.to_string(), source })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Decode { url: url.to_string(), message: e.to_string() });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(envelope) => Err(ClientError::Api {
                status: status.as_u16(),
                code: envelope.error.code,
                message: envelope.error.message,
            }),
            Err(_) => Err(ClientError::Api {
                status: status.as_u16(),
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
        }
    }

    /// `GET /api/v1/{path}`, decoded.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.get(&url), &url).await
    }

    /// `POST /api/v1/{path}` with a JSON body, decoded.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.post(&url).json(body), &url).await
    }

    /// `DELETE /api/v1/{path}`, decoded.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.delete(&url), &url).await
    }

    /// The replicated membership.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn members(&self) -> Result<crate::members::MembersView, ClientError> {
        self.get_json("members").await
    }

    /// Adds a peer; waits while it catches up (up to about a minute).
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn add_member(
        &self,
        request: &crate::members::AddMemberRequest,
    ) -> Result<crate::members::MembersView, ClientError> {
        let url = self.url("members");
        self.send(self.http.post(&url).json(request).timeout(Duration::from_secs(120)), &url).await
    }

    /// Makes a learner a voter.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn promote_member(&self, id: u64) -> Result<crate::members::MembersView, ClientError> {
        self.post_json(&format!("members/{id}/promote"), &serde_json::json!({})).await
    }

    /// Removes a peer from the membership.
    ///
    /// # Errors
    /// [`ClientError`] with the API's code.
    pub async fn remove_member(&self, id: u64) -> Result<crate::members::MembersView, ClientError> {
        self.delete_json(&format!("members/{id}")).await
    }

    /// Submits one job. `request_id` makes retries idempotent.
    ///
    /// # Errors
    /// [`ClientError`]; `queue_full` (429) and `no_quorum` (503) are the ones
    /// worth retrying, with the same request id.
    pub async fn submit(&self, job: &SubmitRequest, request_id: u128) -> Result<SubmitResponse, ClientError> {
        let url = self.url("jobs");
        let req = self.http.post(&url).header("x-request-id", format!("{request_id:x}")).json(job);
        self.send(req, &url).await
    }

    /// Submits many jobs in one request (one Raft entry).
    ///
    /// # Errors
    /// As [`Client::submit`]; per-job refusals come back inside the result.
    pub async fn submit_batch(
        &self,
        jobs: &BatchSubmitRequest,
        request_id: u128,
    ) -> Result<BatchSubmitResponse, ClientError> {
        let url = self.url("jobs/batch");
        let req = self.http.post(&url).header("x-request-id", format!("{request_id:x}")).json(jobs);
        self.send(req, &url).await
    }

    /// One job.
    ///
    /// # Errors
    /// `not_found` (404) if the peer does not know the job.
    pub async fn status(&self, id: &str) -> Result<JobView, ClientError> {
        let url = self.url(&format!("jobs/{id}"));
        self.send(self.http.get(&url), &url).await
    }

    /// History, newest first. `query` holds `name`, `state`, `limit`, ...
    ///
    /// # Errors
    /// `invalid_request` for a bad filter.
    pub async fn history(&self, query: &[(&str, String)]) -> Result<Vec<JobView>, ClientError> {
        let url = self.url("jobs");
        self.send(self.http.get(&url).query(query), &url).await
    }

    /// An attempt's log (the latest attempt when `attempt` is None), and
    /// where it came from: `file`, `peer` or `shared` (complete; `shared` is
    /// the copy in `shared_log_dir`), or `tail` (the last 64 KiB kept in the
    /// replicated record, when the worker is gone).
    ///
    /// # Errors
    /// `not_found` for an unknown job or attempt; `unavailable` while the
    /// worker of a running attempt cannot be reached.
    pub async fn logs(&self, id: &str, attempt: Option<u32>) -> Result<(String, String), ClientError> {
        let (source, response) = self.logs_stream(id, attempt, false).await?;
        let bytes =
            response.bytes().await.map_err(|source| ClientError::Http { url: self.url("jobs"), source })?;
        Ok((source, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The log response with its source, body not read yet. With `follow`
    /// the body stays open and grows while the attempt runs (no time limit
    /// on the body; read it with `chunk()`).
    ///
    /// # Errors
    /// As [`Client::logs`].
    pub async fn logs_stream(
        &self,
        id: &str,
        attempt: Option<u32>,
        follow: bool,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let url = self.url(&format!("jobs/{id}/logs"));
        let mut request = self.http.get(&url);
        if let Some(a) = attempt {
            request = request.query(&[("attempt", a)]);
        }
        if follow {
            request = request.query(&[("follow", "1")]).timeout(crate::api::follow::MAX_FOLLOW);
        }
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|source| transport_error(&url, source))?;
        let status = response.status();
        let source = response
            .headers()
            .get(crate::api::LOG_SOURCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("file")
            .to_string();
        if status.is_success() {
            return Ok((source, response));
        }
        let bytes =
            response.bytes().await.map_err(|source| ClientError::Http { url: url.clone(), source })?;
        let envelope: Option<ErrorEnvelope> = serde_json::from_slice(&bytes).ok();
        Err(ClientError::Api {
            status: status.as_u16(),
            code: envelope.as_ref().map_or("http_error".into(), |e| e.error.code.clone()),
            message: envelope
                .map_or_else(|| String::from_utf8_lossy(&bytes).into_owned(), |e| e.error.message),
        })
    }

    /// Cancels a queued job.
    ///
    /// # Errors
    /// `not_found`, or `wrong_state` (409) when it already runs or ended.
    pub async fn cancel(&self, id: &str) -> Result<CancelResponse, ClientError> {
        let url = self.url(&format!("jobs/{id}/cancel"));
        self.send(self.http.post(&url), &url).await
    }

    /// Pauses (`true`) or resumes placement cluster-wide.
    ///
    /// # Errors
    /// `unauthorized`, `no_quorum`.
    pub async fn set_paused(&self, paused: bool) -> Result<QueueView, ClientError> {
        let url = self.url(if paused { "queue/pause" } else { "queue/resume" });
        self.send(self.http.post(&url), &url).await
    }

    /// The cluster as this peer sees it.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn nodes(&self) -> Result<NodesView, ClientError> {
        let url = self.url("nodes");
        self.send(self.http.get(&url), &url).await
    }

    /// This peer's own Raft view.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn local(&self) -> Result<LocalView, ClientError> {
        let url = self.url("local");
        self.send(self.http.get(&url).timeout(Duration::from_secs(2)), &url).await
    }

    /// State digest of this replica.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn digest(&self) -> Result<DigestView, ClientError> {
        let url = self.url("digest");
        self.send(self.http.get(&url), &url).await
    }
}
