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

/// Decode turns taken now, process-wide (see [`decode_slot`]).
static DECODING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
/// Signalled when a turn ends.
static TURN_ENDED: std::sync::Condvar = std::sync::Condvar::new();

/// How many decode turns may run at once: one per core.
fn decode_turns() -> usize {
    static TURNS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *TURNS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// A turn to decode (and hash) an object on a blocking thread, waiting for one if every core has
/// one already. Transfers run `--jobs` at once for the network's sake, but decoding is CPU work,
/// and each decode holds a chunk's raw bytes and a decoder's buffers: more at once than cores
/// adds memory, not speed. The turn ends when the value is dropped. Take it on a blocking thread
/// only, and never a second one while holding one.
pub fn decode_slot() -> DecodeSlot {
    let mut taken = DECODING.lock().unwrap_or_else(|e| e.into_inner());
    while *taken >= decode_turns() {
        taken = TURN_ENDED.wait(taken).unwrap_or_else(|e| e.into_inner());
    }
    *taken += 1;
    DecodeSlot(())
}

/// A turn of [`decode_slot`], given back when dropped.
pub struct DecodeSlot(());

impl Drop for DecodeSlot {
    fn drop(&mut self) {
        let mut taken = DECODING.lock().unwrap_or_else(|e| e.into_inner());
        *taken = taken.saturating_sub(1);
        drop(taken);
        TURN_ENDED.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most one decode turn per core runs at once, however many threads ask.
    #[test]
    fn decode_turns_are_bounded_by_the_cores() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..(decode_turns() * 3 + 2) {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _turn = decode_slot();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= decode_turns(), "{most}");
    }

    #[tokio::test]
    async fn returns_the_value_and_resumes_panics() {
        assert_eq!(blocking("here", || 7).await.expect("ran"), 7);
        let r = tokio::spawn(blocking("here", || -> u8 { panic!("boom") })).await;
        assert!(r.expect_err("the panic is resumed").is_panic());
    }
}
