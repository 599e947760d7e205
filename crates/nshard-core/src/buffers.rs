//! Small process-wide pools of object-sized byte buffers (and, with [`Pool`], of decoders' and
//! readers' scratch), for work that reads and decodes objects one at a time on whichever thread
//! is free (a remote's chains of deltas resolved by `remote gc`,
//! a pull or a server; a directory remote's reads).
//!
//! Without it each such object costs fresh buffers: fresh pages, whose first touches cost more
//! CPU than decoding them, and memory the allocator keeps for the thread that freed it, while the
//! next object is read on another thread. A `remote gc` checking a few hundred deltas grew to
//! 400 MiB that way. With the pool, the buffers allocated are about as many as objects are in
//! flight at once.

use std::sync::Mutex;

/// The buffers given back and not yet taken again.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Buffers shorter than this are not pooled: fresh small buffers cost little, and a pooled large
/// one taken for a small read would be held by whoever keeps that read.
pub(crate) const MIN_POOLED: usize = 64 * 1024;

/// The most one pooled buffer may hold (chunks are 4 MiB unless configured larger).
const MAX_POOLED: usize = 16 << 20;

/// The most the pool holds in all.
const POOL_BYTES: usize = 64 << 20;

/// An empty buffer with room for `len` bytes: the smallest pooled one that has room and is not
/// much larger, else a fresh one, rounded up to a size class (so that objects of about the same
/// size reuse each other's buffers). `len` below [`MIN_POOLED`] always gets a fresh one.
pub(crate) fn take(len: usize) -> Vec<u8> {
    if len < MIN_POOLED {
        return Vec::with_capacity(len);
    }
    if let Ok(mut pool) = POOL.lock() {
        let best = (0..pool.len())
            .filter(|&i| (len..=len + len / 4).contains(&pool[i].capacity()))
            .min_by_key(|&i| pool[i].capacity());
        if let Some(i) = best {
            return pool.swap_remove(i);
        }
    }
    Vec::with_capacity(size_class(len))
}

/// `len` rounded up to a sixteenth of the power of two at or above it (less than 12.5 % more).
fn size_class(len: usize) -> usize {
    let step = (len.next_power_of_two() / 16).max(4096);
    len.div_ceil(step).saturating_mul(step)
}

/// Gives `buf` back for [`take`] (its contents are dropped). Kept when it is between
/// [`MIN_POOLED`] and 16 MiB and the pool holds less than 64 MiB with it; else freed.
pub(crate) fn give(mut buf: Vec<u8>) {
    let cap = buf.capacity();
    if !(MIN_POOLED..=MAX_POOLED).contains(&cap) {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock() {
        let held: usize = pool.iter().map(Vec::capacity).sum();
        if held + cap <= POOL_BYTES {
            pool.push(buf);
        }
    }
}

/// A small process-wide pool of reusable values (a decoder's or a reader's buffers): work done
/// one object at a time on whichever thread is free takes one and gives it back, instead of
/// touching fresh memory for every object.
pub(crate) struct Pool<T> {
    items: Mutex<Vec<T>>,
    /// How many values the pool keeps.
    keep: usize,
    /// The most bytes a kept value may hold on to (one grown by an unusually large object is
    /// dropped).
    max_held: usize,
}

impl<T: Default> Pool<T> {
    pub(crate) const fn new(keep: usize, max_held: usize) -> Self {
        Pool {
            items: Mutex::new(Vec::new()),
            keep,
            max_held,
        }
    }

    /// Runs `f` with a value from the pool (a new one when it is empty) and keeps the value
    /// after, unless the pool is full or `held(value)` is more than the pool keeps.
    pub(crate) fn with<R>(&self, held: impl Fn(&T) -> usize, f: impl FnOnce(&mut T) -> R) -> R {
        let taken = self.items.lock().ok().and_then(|mut pool| pool.pop());
        let mut value = taken.unwrap_or_default();
        let r = f(&mut value);
        if held(&value) <= self.max_held {
            if let Ok(mut pool) = self.items.lock() {
                if pool.len() < self.keep {
                    pool.push(value);
                }
            }
        }
        r
    }

    /// What each kept value holds on to, as `held` measures it.
    #[cfg(test)]
    pub(crate) fn kept(&self, held: impl Fn(&T) -> usize) -> Vec<usize> {
        self.items
            .lock()
            .map(|pool| pool.iter().map(held).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide: tests that fill it run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn drain() {
        if let Ok(mut pool) = POOL.lock() {
            pool.clear();
        }
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_by_the_closest_fit() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain();
        let mut big = Vec::with_capacity(4 << 20);
        big.extend_from_slice(b"stale");
        let big_at = big.as_ptr();
        give(big);
        let small = Vec::with_capacity(MIN_POOLED * 2);
        let small_at = small.as_ptr();
        give(small);
        let t = take(MIN_POOLED * 2 - 100);
        assert_eq!(t.as_ptr(), small_at, "the smallest buffer that fits");
        // A much larger buffer is not handed out for a small read.
        let t = take(1 << 20);
        assert_ne!(t.as_ptr(), big_at);
        assert_eq!(t.capacity(), 1 << 20);
        let t = take((4 << 20) - 1000);
        assert_eq!(t.as_ptr(), big_at);
        assert!(t.is_empty(), "contents are dropped");
        // Nothing left that fits: fresh, rounded up to its size class.
        let t = take((3 << 20) + 1);
        assert_eq!(t.capacity(), (3 << 20) + (256 << 10));
        drain();
    }

    #[test]
    fn the_pool_is_bounded() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain();
        // Small and oversized buffers are not kept; small asks get fresh buffers.
        give(Vec::with_capacity(MIN_POOLED - 1));
        give(Vec::with_capacity(MAX_POOLED + 1));
        assert!(POOL.lock().map(|p| p.is_empty()).unwrap_or(false));
        give(Vec::with_capacity(MIN_POOLED));
        assert_eq!(take(10).capacity(), 10);
        drain();
        // At most POOL_BYTES in all.
        for _ in 0..(POOL_BYTES / MAX_POOLED + 3) {
            give(Vec::with_capacity(MAX_POOLED));
        }
        let held: usize = POOL
            .lock()
            .map(|p| p.iter().map(Vec::capacity).sum())
            .unwrap_or(0);
        assert!(
            (POOL_BYTES - MAX_POOLED..=POOL_BYTES).contains(&held),
            "{held}"
        );
        drain();
    }
}
