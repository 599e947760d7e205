//! `fill-remote`: many small, distinct, valid objects put on a remote, for gc and listing
//! benchmarks (a million objects is not something a real push makes quickly).
//!
//! Object `i` of seed `s` holds `size` deterministic bytes; its id is their hash and it is stored
//! encoded exactly as a commit would store it, so that every reader (gc, verify, pull) takes it
//! for a real object. No record names them: to `nshard remote gc` they are unrecorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use nshard_core::format::{DataHint, Encoder};
use nshard_core::{ObjectId, RemoteUrl, Retry, Store};
use nshard_remote::{OpenOptions, S3Options};

/// Where and what to put.
pub struct Fill {
    /// The remote URL as given (a directory, `http(s)://`, `s3://`).
    pub url: String,
    /// How many objects.
    pub objects: u64,
    /// Raw bytes per object (at least 8, so that every index makes distinct bytes).
    pub size: usize,
    /// Puts in flight at once.
    pub jobs: usize,
    /// Makes the objects of one fill distinct from another's.
    pub seed: u64,
}

/// The raw bytes of object `index`: the seed and index, then xorshift64* bytes.
fn raw_object(size: usize, seed: u64, index: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    out.extend_from_slice(&index.to_le_bytes());
    let mut x = (seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(size.max(8));
    // The index alone would repeat across seeds: fold the seed into the first bytes too.
    for (b, s) in out.iter_mut().zip(seed.to_le_bytes()) {
        *b ^= s;
    }
    out
}

/// Puts the objects; returns the JSON summary (objects written, already there, encoded bytes).
pub fn run(f: &Fill) -> Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(fill(f))
}

async fn fill(f: &Fill) -> Result<serde_json::Value> {
    let cwd = std::env::current_dir().context("current directory")?;
    let url = RemoteUrl::parse(&f.url, &cwd)?;
    if let RemoteUrl::Dir(path) = &url {
        // `open` wants the directory to exist, as a remote created by hand would.
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    let opts = OpenOptions {
        token: std::env::var("NSHARD_TOKEN").ok(),
        s3: S3Options {
            settings: std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
        },
    };
    let store: Arc<dyn Store> = nshard_remote::open(&url, &opts)
        .await
        .with_context(|| format!("opening {}", f.url))?;

    let written = Arc::new(AtomicU64::new(0));
    let present = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    // Sparse progress: about every tenth of the work, and at most every 10 seconds otherwise.
    let step = (f.objects / 10).max(1);
    let mut last = Instant::now();
    let mut done = 0u64;
    let size = f.size.max(8);
    let seed = f.seed;
    let retry = Retry::default();
    let mut puts = futures::stream::iter(0..f.objects)
        .map(|i| {
            let store = Arc::clone(&store);
            let (written, present, bytes, retries) = (
                Arc::clone(&written),
                Arc::clone(&present),
                Arc::clone(&bytes),
                Arc::clone(&retries),
            );
            async move {
                let raw = raw_object(size, seed, i);
                let id = ObjectId::of(&raw);
                let encoded = Encoder::new().encode(&raw, DataHint::Unknown);
                let len = encoded.len() as u64;
                let (r, n) = retry.run(|| store.put(&id, encoded.clone())).await;
                retries.fetch_add(n, Ordering::Relaxed);
                if r.with_context(|| format!("putting object {i} ({id})"))? {
                    written.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(len, Ordering::Relaxed);
                } else {
                    present.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(f.jobs.max(1));
    while puts.try_next().await?.is_some() {
        done += 1;
        if done.is_multiple_of(step) || last.elapsed() >= Duration::from_secs(10) {
            last = Instant::now();
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "fill-remote: {done}/{} objects, {s:.0} s, {:.0}/s",
                f.objects,
                done as f64 / s.max(1e-9)
            );
        }
    }
    Ok(serde_json::json!({
        "url": store.display_url(),
        "objects": f.objects,
        "written": written.load(Ordering::Relaxed),
        "already_present": present.load(Ordering::Relaxed),
        "encoded_bytes": bytes.load(Ordering::Relaxed),
        "raw_bytes_each": size,
        "retries": retries.load(Ordering::Relaxed),
        "objects_per_second": (f.objects as f64 / t0.elapsed().as_secs_f64().max(1e-9)).round(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_distinct_and_sized() {
        let a = raw_object(100, 1, 0);
        assert_eq!(a.len(), 100);
        assert_ne!(a, raw_object(100, 1, 1));
        assert_ne!(a, raw_object(100, 2, 0));
        assert_eq!(a, raw_object(100, 1, 0));
        assert_eq!(raw_object(3, 1, 0).len(), 8);
    }

    #[test]
    fn fills_a_directory_remote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("remote").display().to_string();
        let f = Fill {
            url,
            objects: 25,
            size: 100,
            jobs: 4,
            seed: 7,
        };
        let s = run(&f).expect("fill");
        assert_eq!(s["written"], 25);
        let again = run(&f).expect("refill");
        assert_eq!(again["already_present"], 25);
    }
}
