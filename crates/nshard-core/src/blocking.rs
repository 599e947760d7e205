//! The one way async code runs blocking work (filesystem, hashing, decoding) off the async threads.

use std::fmt;

use crate::error::RemoteError;
use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and returns what it returns.
///
/// A panic in `f` is resumed in the caller (it is a bug, not something to retry). A task that
/// never ran to the end because the runtime is shutting down is an [`RemoteError::Transient`](crate::error::RemoteError::Transient)
/// naming `subject`, what the work was for (a store's URL, `"local store"`). When `f` itself
/// returns a [`Result`], the caller gets a nested one: `blocking(..).await??`.
pub async fn blocking<T: Send + 'static>(
    subject: impl fmt::Display,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Remote(RemoteError::Transient {
            remote: subject.to_string(),
            reason: format!("the operation was cancelled: {e}"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_and_resumes_panics() {
        assert_eq!(blocking("here", || 7).await.expect("ran"), 7);
        let r = tokio::spawn(blocking("here", || -> u8 { panic!("boom") })).await;
        assert!(r.expect_err("the panic is resumed").is_panic());
    }
}
