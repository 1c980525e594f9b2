//! Errors of the HTTP server: [`ServeError`] for starting and running it, [`ApiError`] for one
//! request.
//!
//! Invariant: every error a client sees is JSON, `{"error": "..."}`, with a status that says
//! whose fault it is (4xx: the request; 5xx: the server), never a plain-text body.

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a token would expose the journal unauthenticated.
    #[error(
        "refusing to listen on {0} without a token: it is not a loopback address; \
         set --token (or LOGBOOK_TOKEN) or listen on 127.0.0.1"
    )]
    NonLoopbackWithoutToken(SocketAddr),
    /// An empty or whitespace-only token would protect nothing.
    #[error(
        "the token must not be empty or only whitespace; set --token (or LOGBOOK_TOKEN) to a secret"
    )]
    EmptyToken,
    /// A token that could not be sent (or not unchanged) in an `Authorization` header.
    #[error(
        "the token cannot be used: {0}; use printable ASCII without surrounding spaces \
         (e.g. a random hex or base64 string)"
    )]
    BadToken(String),
    /// Binding or serving failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Whether this is the operator's usage error (exit code 2) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ServeError::NonLoopbackWithoutToken(_)
                | ServeError::EmptyToken
                | ServeError::BadToken(_)
        )
    }
}

/// An error answered to one request as `{"error": message}` with `status`, plus `"code"` and
/// `"reason"` for a refusal.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 503.
    pub retry_after_secs: Option<u64>,
    /// The machine-readable code of a refusal (`unknown_task`, `duplicate_id`...), the same
    /// as the Python package's `RefusedError.code`.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after_secs: None,
            code: None,
        }
    }

    /// This error with a machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// 409 for a refusal that conflicts with what is recorded (a duplicate id, a terminal
    /// status), 400 for other refusals; with the refusal's code.
    pub fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
        let status = match code {
            "duplicate_id" | "terminal_status" | "invalid_transition" => StatusCode::CONFLICT,
            "unknown_upgrade" | "unknown_session" | "unknown_artifact" => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, message).with_code(code)
    }

    /// 503: the server is at a limit; retrying after `retry_after_secs` may succeed.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 400: a malformed request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the server failed (the journal, a worker thread).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503 without `Retry-After`: the server is out of service until it is restarted (its
    /// journal failed: the recorder is poisoned), so retrying soon cannot succeed.
    pub fn out_of_service(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl From<crate::recorder::RecordError> for ApiError {
    /// The caller's input: 400. The journal or the state failed: 503 with the cause (the
    /// recorder refuses everything until it is reopened; see `recorder`).
    fn from(error: crate::recorder::RecordError) -> ApiError {
        match error.code() {
            Some(code) => ApiError::refused(code, error.to_string()),
            None => ApiError::out_of_service(error.to_string()),
        }
    }
}

impl From<crate::artifacts::ArtifactError> for ApiError {
    /// A refused artifact: its code (`too_large` is 413); the journal or a file failed: 503 or
    /// 500.
    fn from(error: crate::artifacts::ArtifactError) -> ApiError {
        use crate::artifacts::ArtifactError;
        match error {
            ArtifactError::Record(e) => e.into(),
            ArtifactError::Io { .. } => ApiError::internal(error.to_string()),
            ArtifactError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
                    .with_code("too_large")
            }
            other => ApiError::refused("invalid", other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.code {
            // `error` as before; `code` and `reason` as the Python package's RefusedError.
            Some(code) => {
                serde_json::json!({ "error": self.message, "code": code, "reason": self.message })
            }
            None => serde_json::json!({ "error": self.message }),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
