//! API errors: one enum, one mapping to HTTP status and a stable `code`
//! string that scripts can match on.

use std::time::Duration;

use warp::http::StatusCode;

use super::views::{ErrorBody, ErrorEnvelope};
use crate::node::WriteError;
use crate::queue::FunnelError;

/// Everything the HTTP layer can answer with instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "missing or unknown token: send `Authorization: Bearer <token>` (sgnode: --token or SGNODE_TOKEN)"
    )]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Funnel(#[from] FunnelError),
    #[error("request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Funnel(FunnelError::QueueFull { .. }) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Funnel(FunnelError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Funnel(FunnelError::Unschedulable { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Funnel(FunnelError::NotFound { .. })
            | ApiError::Funnel(FunnelError::NoSuchDefinition { .. }) => StatusCode::NOT_FOUND,
            ApiError::Funnel(FunnelError::StaleTick { .. }) => StatusCode::CONFLICT,
            ApiError::Funnel(FunnelError::WrongState { .. }) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Write(WriteError::NoQuorum(_))
            | ApiError::Write(WriteError::ShuttingDown)
            | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Write(WriteError::Fatal(_)) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Funnel(FunnelError::QueueFull { .. }) => "queue_full",
            ApiError::Funnel(FunnelError::Invalid { .. }) => "invalid_request",
            ApiError::Funnel(FunnelError::Unschedulable { .. }) => "unschedulable",
            ApiError::Funnel(FunnelError::NotFound { .. })
            | ApiError::Funnel(FunnelError::NoSuchDefinition { .. }) => "not_found",
            ApiError::Funnel(FunnelError::StaleTick { .. }) => "stale_tick",
            ApiError::Funnel(FunnelError::WrongState { .. }) => "wrong_state",
            ApiError::TooLarge(_) => "request_too_large",
            ApiError::Write(WriteError::NoQuorum(_)) | ApiError::Write(WriteError::ShuttingDown) => {
                "no_quorum"
            }
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Write(WriteError::Fatal(_)) | ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorEnvelope {
        ErrorEnvelope { error: ErrorBody { code: self.code().to_string(), message: self.to_string() } }
    }

    /// Seconds a client should wait before retrying, where that makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The full HTTP response.
    pub fn into_response(self) -> warp::reply::Response {
        let status = self.status();
        let retry = self.retry_after();
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.body()), status).into_response_inner();
        if let Some(retry) = retry {
            if let Ok(value) = warp::http::HeaderValue::from_str(&retry.as_secs().to_string()) {
                response.headers_mut().insert(warp::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

trait IntoResponseInner {
    fn into_response_inner(self) -> warp::reply::Response;
}

impl<T: warp::Reply> IntoResponseInner for T {
    fn into_response_inner(self) -> warp::reply::Response {
        self.into_response()
    }
}
