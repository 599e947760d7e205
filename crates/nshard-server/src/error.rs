//! Errors: [`AppError`] is a refused or failed request (a status and a JSON body), [`ServeError`] a
//! server that cannot start or stopped abnormally.

use std::io;
use std::net::SocketAddr;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::TokenError;

/// A request the server refuses or cannot serve. Rendered as
/// `{"error": "<message for a human>", "code": "<stable machine code>"}` with its status.
#[derive(Debug)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, machine-readable code (`invalid_id`, `body_too_large`, …).
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// Seconds after which a retry may succeed (429/503).
    pub retry_after: Option<u32>,
    /// The request body was not read to its end: the response says `Connection: close` (and the
    /// connection is closed), so the client does not send its next request on it.
    pub close: bool,
}

impl AppError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// The same error, closing the connection unless `drained` (the body was read to its end).
    pub fn closing_unless(mut self, drained: bool) -> Self {
        self.close = !drained;
        self
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 404 for an object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: the message goes to the log, the client gets a generic one plus `what`.
    pub fn internal(what: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!("{what}: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}: internal server error (see the server log)"),
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message, "code": self.code }));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nshard\""),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No tokens on an address other machines can reach, and no explicit anonymous flag.
    #[error(
        "refusing to serve on {addr} without tokens: anyone who can reach it could read and write"
    )]
    NoTokens {
        /// The non-loopback address.
        addr: SocketAddr,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error (part of the message, so not also a `source`).
        error: io::Error,
    },
    /// The store cannot be opened.
    #[error("cannot open the store {store}: {error}")]
    Store {
        /// The store's directory or URL.
        store: String,
        /// The error (part of the message).
        error: nshard_core::Error,
    },
    /// A token file or variable is invalid.
    #[error(transparent)]
    Tokens(#[from] TokenError),
    /// The server loop failed.
    #[error("server failed: {0}")]
    Io(io::Error),
}
