//! Request bodies over a limit: how much is drained before the refusal is sent (so the client can
//! read it), and the refusal itself. Used by the JSON routes and by uploads.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;

use crate::error::AppError;

/// How much of an over-limit body is read and discarded before the refusal is sent, and for how long.
///
/// If the server answered while the client was still sending, it would close a socket with unread
/// data; the kernel then resets the connection and the client sees "broken pipe" instead of the 413
/// that explains what went wrong (the "lingering close" of nginx and Apache). Draining a bounded
/// amount lets ordinary clients read the refusal; anything bigger or slower is cut off.
pub(crate) const DRAIN_MAX_BYTES: u64 = 16 << 20;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards up to `budget` bytes of `body`, for at most [`DRAIN_MAX_TIME`]. Returns
/// whether the body was read to its end (if not, the refusal must close the connection:
/// [`AppError::closing_unless`]).
pub(crate) async fn drain(mut body: Body, mut budget: u64) -> bool {
    tokio::time::timeout(DRAIN_MAX_TIME, async move {
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let n = data.len() as u64;
                        if n > budget {
                            return false;
                        }
                        budget -= n;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The error for a request body over `limit` bytes (`n`: its size, or what is known of it).
pub(crate) fn body_too_large(n: &dyn std::fmt::Display, limit: u64) -> AppError {
    AppError::too_large(
        "body_too_large",
        format!("request body of {n} bytes is over the server's limit of {limit} bytes"),
    )
}

/// The body's declared `Content-Length`. One over `limit` is refused without keeping any byte
/// (the body is drained, within bounds, so the client can read the refusal).
pub(crate) async fn declared_length(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<(Option<u64>, Body), AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit) {
        let drained = n <= DRAIN_MAX_BYTES && drain(body, n).await;
        return Err(body_too_large(&n, limit).closing_unless(drained));
    }
    Ok((declared, body))
}
