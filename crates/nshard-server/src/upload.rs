//! Receiving an upload without holding it in memory: the body streams into a staging file (in
//! blocks of [`STAGE_BLOCK`]), is verified from that file with bounded memory
//! ([`StagedUpload::verify`]), and is then handed to the store, which renames it into place
//! (directory) or uploads it with a conditional put (S3). Peak memory per upload is one block
//! while receiving; verifying and storing run at most [`Limits::max_concurrent_commits`] at once.
//!
//! [`Limits::max_concurrent_commits`]: crate::Limits::max_concurrent_commits

use std::path::PathBuf;

use axum::body::Body;
use axum::http::HeaderMap;
use http_body_util::BodyExt;
use nshard_core::backend::StagedUpload;

use crate::body::{body_too_large, declared_length, drain, DRAIN_MAX_BYTES};
use crate::error::AppError;

/// Bytes gathered from the body before they are written to the staging file.
pub const STAGE_BLOCK: usize = 256 << 10;

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    nshard_core::backend::blocking("staging an upload", f)
        .await
        .map_err(|e| AppError::internal("staging an upload", &e))
}

/// Writes `buf` to the staging file and empties it (keeping its capacity).
async fn flush(staged: StagedUpload, buf: &mut Vec<u8>) -> Result<StagedUpload, AppError> {
    let data = std::mem::take(buf);
    let (r, mut data) = blocking(move || {
        let mut staged = staged;
        let r = staged.write(&data).map(|()| staged);
        (r, data)
    })
    .await?;
    data.clear();
    *buf = data;
    r.map_err(|e| AppError::internal("staging an upload", &e))
}

/// Streams a body of at most `limit` bytes into a new staging file in `dir`. An over-limit
/// `Content-Length` is refused before anything is written (the body is drained, within bounds, so
/// the client can read the refusal); a body that ends early or breaks off is a 400. The staging
/// file is removed when the result is dropped.
pub async fn receive(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    dir: PathBuf,
) -> Result<StagedUpload, AppError> {
    let (declared, body) = declared_length(headers, body, limit).await?;
    let mut staged = blocking(move || StagedUpload::create_in(&dir))
        .await?
        .map_err(|e| AppError::internal("staging an upload", &e))?;
    let mut buf = Vec::with_capacity(STAGE_BLOCK);
    let mut total = 0u64;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AppError::bad_request(
                "incomplete_body",
                format!("the request body broke off after {total} bytes: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > limit {
                let drained = drain(body, DRAIN_MAX_BYTES).await;
                return Err(
                    body_too_large(&format!("more than {limit}"), limit).closing_unless(drained)
                );
            }
            buf.extend_from_slice(&data);
            if buf.len() >= STAGE_BLOCK {
                staged = flush(staged, &mut buf).await?;
            }
        }
    }
    if !buf.is_empty() {
        staged = flush(staged, &mut buf).await?;
    }
    if let Some(n) = declared.filter(|&n| n != total) {
        return Err(AppError::bad_request(
            "incomplete_body",
            format!("Content-Length says {n} bytes but the body has {total}"),
        ));
    }
    Ok(staged)
}
