//! Retrying what may pass: one policy (exponential backoff with jitter, transient errors only) for
//! every network request, whatever the backend, so that retries never nest.

use std::future::Future;
use std::hash::{BuildHasher, Hasher as _};
use std::time::Duration;

use crate::error::Result;

/// When and how often a failed request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled after each further failure.
    pub first_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// The delay before retry number `n` (1-based): exponential, capped, with jitter in
    /// `[delay/2, delay]` so that clients that failed together do not retry together.
    fn delay(&self, n: u32) -> Duration {
        let exp = self
            .first_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let d = exp.min(self.max_delay);
        let jitter = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half = d / 2;
        half + Duration::from_nanos(jitter % (half.as_nanos() as u64).max(1))
    }

    /// Runs `op` until it succeeds, fails permanently, or attempts run out. Returns the result and
    /// how many retries were made.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> (Result<T>, u64)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retries = 0u64;
        let mut attempt = 1u32;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                    retries += 1;
                }
                r => return (r, retries),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::error::{RemoteError, StoreError};
    use crate::id::ObjectId;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let r = Retry {
            attempts: 4,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        };
        let calls = AtomicU32::new(0);
        let (out, retries) = r
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::Remote(RemoteError::Transient {
                        remote: "x".into(),
                        reason: "flaky".into(),
                    }))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(out.expect("third attempt succeeds"), 7);
        assert_eq!(retries, 2);

        let calls = AtomicU32::new(0);
        let (out, retries) = r
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::Store(StoreError::ObjectMissing(ObjectId::of(b"x"))))
            })
            .await;
        assert!(out.is_err());
        assert_eq!((retries, calls.load(Ordering::SeqCst)), (0, 1));

        let calls = AtomicU32::new(0);
        let (out, retries) = r
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::Remote(RemoteError::Transient {
                    remote: "x".into(),
                    reason: "down".into(),
                }))
            })
            .await;
        assert!(out.is_err());
        assert_eq!((retries, calls.load(Ordering::SeqCst)), (3, 4));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry::default();
        for n in 1..10 {
            let d = r.delay(n);
            assert!(d <= r.max_delay, "{n}: {d:?}");
            assert!(d >= (r.first_delay * (1 << (n - 1))).min(r.max_delay) / 2);
        }
    }
}
