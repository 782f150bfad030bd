//! HTTP errors of the ingest API: a status and `{"error": "..."}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The log cannot keep up; the client should retry after the given seconds.
    #[error("{0}")]
    Overloaded(String, u32),
    /// The key's rate limit is spent; the client should retry after the given seconds.
    #[error("{0}")]
    RateLimited(String, u32),
    /// Details go to the server log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `{"error": message}` with a status.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error answering a request");
        }
        let mut resp = error_response(self.status(), &self.to_string());
        if let Self::Overloaded(_, secs) | Self::RateLimited(_, secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(
            self,
            Self::Overloaded(..) | Self::RateLimited(..) | Self::TooLarge(_)
        ) {
            // These are answered before the body is read (or after it was cut off): the
            // server closes the connection afterwards, and says so, so that a client does
            // not send its next request on a connection that is about to close.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<eventide_eventlog::LogError> for ApiError {
    fn from(e: eventide_eventlog::LogError) -> Self {
        match e {
            eventide_eventlog::LogError::Saturated(m) => {
                Self::Overloaded(format!("server is overloaded ({m}); retry later"), 1)
            }
            eventide_eventlog::LogError::Unavailable(m) => {
                tracing::warn!(error = %m, "log unavailable; answering 503");
                Self::Overloaded("the log is unavailable; retry later".into(), 2)
            }
            eventide_eventlog::LogError::DiskFull(m) => {
                tracing::error!(error = %m, "the log's disk is full; answering 503");
                Self::Overloaded(
                    "the server's disk is full: events cannot be stored durably; retry later"
                        .into(),
                    10,
                )
            }
            eventide_eventlog::LogError::Failed(m) => {
                tracing::error!(error = %m, "the log refuses writes; answering 503");
                Self::Overloaded(
                    "the log failed a write it could not undo and refuses writes until the \
                     server restarts; retry later"
                        .into(),
                    30,
                )
            }
            other => Self::Internal(other.to_string()),
        }
    }
}
