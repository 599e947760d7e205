//! Measures what one LIST page costs in HEAD requests' time on an S3-compatible store, the figure
//! behind `LIST_PAGE_IN_HEADS` (`nshard-remote/src/s3/missing.rs`).
//!
//! It puts 1,000 small objects into one fan-out directory of a fresh prefix, then answers
//! `missing` for those 1,000 ids both ways, alternating, ROUNDS times: HEADs (32 at a time), one
//! listing of the directory (one page), and 8 such listings at once (as a large batch runs them).
//! Prints the medians and their ratios.
//!
//! ```sh
//! eval "$(bash .ci/seaweedfs.sh env)"
//! cargo run --release -p nshard-remote --features testing --example s3_missing [ROUNDS]
//! ```
//! Reads the `AWS_*` variables (endpoint, keys, region, `AWS_ALLOW_HTTP`) and
//! `NSHARD_TEST_S3_BUCKET` (default `nshard-test`).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use nshard_core::Store;
use nshard_remote::testing::{objects_in_fan, KEYS_PER_PAGE, LIST_CONCURRENCY};
use nshard_remote::{MissingStrategy, S3Options, S3Store};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(7, |a| a.parse().expect("ROUNDS is a number"));
    let settings = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let bucket = std::env::var("NSHARD_TEST_S3_BUCKET").unwrap_or_else(|_| "nshard-test".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("list-vs-head-{nanos}");
    let store = Arc::new(S3Store::open(&bucket, &prefix, &S3Options { settings }).expect("open"));
    store.health().await.expect("health");

    let objects = objects_in_fan(0x5a, KEYS_PER_PAGE, nanos as u64);
    let ids: Vec<_> = objects.iter().map(|(id, _)| *id).collect();
    futures::stream::iter(objects)
        .map(|(id, enc)| {
            let s = Arc::clone(&store);
            async move { s.put(&id, enc).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<bool>>()
        .await
        .expect("put");

    let (mut heads, mut lists, mut parallel) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let m = store
            .missing_with(&ids, MissingStrategy::Head)
            .await
            .expect("heads");
        heads.push(t.elapsed().as_secs_f64());
        assert!(m.is_empty());
        let t = Instant::now();
        let m = store
            .missing_with(&ids, MissingStrategy::List)
            .await
            .expect("list");
        lists.push(t.elapsed().as_secs_f64());
        assert!(m.is_empty());
        // LIST_CONCURRENCY listings at once, as a large batch runs them.
        let t = Instant::now();
        futures::stream::iter(0..LIST_CONCURRENCY)
            .map(|_| store.missing_with(&ids, MissingStrategy::List))
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
            .expect("lists");
        parallel.push(t.elapsed().as_secs_f64() / LIST_CONCURRENCY as f64);
    }
    let (h, l, p) = (median(heads), median(lists), median(parallel));
    let per_head = h / ids.len() as f64;
    println!(
        "{} ids, {rounds} rounds: HEADs (32 at a time) {:.1} ms in all, {:.3} ms per id; one listing page {:.1} ms",
        ids.len(),
        h * 1e3,
        per_head * 1e3,
        l * 1e3
    );
    println!(
        "one LIST page of {} keys = {:.1} HEADs' time",
        ids.len(),
        l / per_head
    );
    println!(
        "{LIST_CONCURRENCY} listings at once: {:.1} ms per page = {:.1} HEADs' time",
        p * 1e3,
        p / per_head
    );
    println!("{:?}", store.request_counts());
}
