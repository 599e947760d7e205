//! `missing` on S3: a HEAD per id, or a listing of the fan-out directories the batch touches when
//! that takes fewer requests.
//!
//! Ids are SHA-256 hashes, so objects spread evenly over the 256 fan-out directories
//! (`objects/00/` … `objects/ff/`). A HEAD answers for one id; listing a directory answers for every
//! id of the batch in it and costs one LIST request per [`KEYS_PER_PAGE`] keys the directory holds.
//! A LIST page costs more than a HEAD: [`LIST_PAGE_IN_HEADS`] HEADs, set from what it takes in
//! time on the local SeaweedFS of the tests (see the constant) and above what S3 charges (LIST
//! $0.005 and HEAD $0.0004 per 1,000 requests: 12.5×). So under [`MissingStrategy::Auto`] a
//! directory is listed when the batch asks about at least `LIST_PAGE_IN_HEADS` ids per page the
//! listing is expected to take, and HEADs answer for the others:
//!
//! 1. no directory gets `LIST_PAGE_IN_HEADS` ids of the batch (typical of batches of up to about
//!    10,000 ids): HEADs only;
//! 2. otherwise the directory with the most ids is listed first; its key count is the estimate for
//!    every other directory (hashes spread evenly), which are then listed or HEADed by the rule;
//! 3. a listing stops as soon as it has taken as many pages as its ids would cost in HEADs (a
//!    directory far fuller than estimated), and those ids are HEADed instead: a wrong guess at
//!    most doubles the cost of the ids concerned.
//!
//! A first push of a large checkpoint to an empty or small prefix is the case this is for: the
//! 23,850 objects of a 100 GB checkpoint (93 per directory) take 256 listing pages instead of
//! 23,850 HEADs while the prefix holds fewer than about 200,000 objects.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as KeyPath;
use object_store::ObjectStore;

use super::S3Store;
use nshard_core::{Error, ObjectId, Result};

/// HEAD requests in flight at once during a `missing` query.
pub const HEAD_CONCURRENCY: usize = 32;
/// Fan-out directories listed at once during a `missing` query.
pub const LIST_CONCURRENCY: usize = 8;
/// Keys in one page of an S3 listing (S3's maximum and default).
pub const KEYS_PER_PAGE: usize = 1000;
/// What one LIST page costs, in HEAD requests. Measured with `examples/s3_missing.rs` on the
/// local SeaweedFS (2 busy cores): a page of 1,000 keys took the time of 44 to 105 HEADs run 32 at
/// a time; S3's prices make it 12.5. With 64, a listing is cheaper in money on S3 and takes at
/// most about 1.6× the HEADs' time where listing was slowest (the busy local SeaweedFS).
pub const LIST_PAGE_IN_HEADS: usize = 64;
/// The largest `missing` batch an S3 store takes (see [`Store::missing_batch_size`]): large
/// enough for listings to pay (195 ids per directory: up to 3 pages each, prefixes of up to about
/// 600,000 objects), small enough that a retried batch of HEADs repeats a bounded amount (about
/// 15 s on the local SeaweedFS).
///
/// [`Store::missing_batch_size`]: nshard_core::Store::missing_batch_size
pub const S3_MISSING_BATCH: usize = 50_000;

/// How [`S3Store::missing_with`] finds out which objects exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingStrategy {
    /// HEADs or listings, whichever takes fewer requests for the batch (the module's rule).
    Auto,
    /// One HEAD per id.
    Head,
    /// A full listing of every fan-out directory the batch touches.
    List,
}

/// Requests an [`S3Store`] made since it was opened, for `missing` queries and everything else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// HEAD requests (`missing`, `size`, checks before multipart uploads).
    pub heads: u64,
    /// Pages of fan-out directory listings made by `missing` queries (a page holds up to
    /// [`KEYS_PER_PAGE`] keys; an empty directory takes one).
    pub list_pages: u64,
    /// Pages of the listings `deltas_of` queries make (at least one per id asked about).
    pub delta_list_pages: u64,
}

impl S3Store {
    /// The requests this store has made so far.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            heads: self.heads.load(Ordering::Relaxed),
            list_pages: self.list_pages.load(Ordering::Relaxed),
            delta_list_pages: self.delta_list_pages.load(Ordering::Relaxed),
        }
    }

    /// Of `ids`, those the bucket lacks, in request order, found the way `how` says.
    pub async fn missing_with(
        &self,
        ids: &[ObjectId],
        how: MissingStrategy,
    ) -> Result<Vec<ObjectId>> {
        let mut by_fan: BTreeMap<u8, Vec<ObjectId>> = BTreeMap::new();
        for id in ids {
            by_fan.entry(id.as_bytes()[0]).or_default().push(*id);
        }
        let mut present: HashSet<ObjectId> = HashSet::new();
        let mut to_head: Vec<ObjectId> = Vec::new();
        match how {
            MissingStrategy::Head => to_head.extend(ids.iter().copied()),
            MissingStrategy::List => {
                let fans: Vec<(u8, Option<usize>)> = by_fan.keys().map(|f| (*f, None)).collect();
                for (fan, found) in self.list_fans(fans).await? {
                    let found = found.expect("an unbounded listing always completes");
                    present.extend(by_fan[&fan].iter().filter(|id| found.contains(id)));
                }
            }
            MissingStrategy::Auto => {
                self.plan(&by_fan, &mut present, &mut to_head).await?;
            }
        }
        let headed: Vec<(ObjectId, bool)> = futures::stream::iter(to_head)
            .map(|id| async move { Ok::<_, Error>((id, self.head(&id).await?.is_some())) })
            .buffer_unordered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        present.extend(headed.into_iter().filter(|(_, p)| *p).map(|(id, _)| id));
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !present.contains(id))
            .collect())
    }

    /// The module's rule: lists what pays, leaves the rest in `to_head`.
    async fn plan(
        &self,
        by_fan: &BTreeMap<u8, Vec<ObjectId>>,
        present: &mut HashSet<ObjectId>,
        to_head: &mut Vec<ObjectId>,
    ) -> Result<()> {
        let mut candidates: Vec<(u8, usize)> = by_fan
            .iter()
            .map(|(fan, ids)| (*fan, ids.len()))
            .filter(|(_, n)| *n >= LIST_PAGE_IN_HEADS)
            .collect();
        // Most ids first; the fan byte breaks ties so the plan is deterministic.
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let listed_fans: HashSet<u8> = candidates.iter().map(|(f, _)| *f).collect();
        for (fan, ids) in by_fan {
            if !listed_fans.contains(fan) {
                to_head.extend(ids.iter().copied());
            }
        }
        let Some(&(probe, n)) = candidates.first() else {
            return Ok(());
        };
        let mut take =
            |fan: u8, found: Option<HashSet<ObjectId>>, to_head: &mut Vec<ObjectId>| match found {
                Some(found) => present.extend(by_fan[&fan].iter().filter(|id| found.contains(id))),
                None => to_head.extend(by_fan[&fan].iter().copied()),
            };
        let mut first = self
            .list_fans(vec![(probe, Some(n / LIST_PAGE_IN_HEADS))])
            .await?;
        let (_, found) = first.pop().expect("one listing asked, one answered");
        let Some(keys) = found.as_ref().map(HashSet::len) else {
            // Fuller than the directory with the most ids can pay for: so is every other one.
            take(probe, None, to_head);
            for (fan, _) in &candidates[1..] {
                to_head.extend(by_fan[fan].iter().copied());
            }
            return Ok(());
        };
        take(probe, found, to_head);
        // The others are expected to hold about as many keys (a quarter more, for the spread).
        let expected_pages = (keys + keys / 4).div_ceil(KEYS_PER_PAGE).max(1);
        let mut lists = Vec::new();
        for &(fan, n) in &candidates[1..] {
            if n >= expected_pages * LIST_PAGE_IN_HEADS {
                lists.push((fan, Some(n / LIST_PAGE_IN_HEADS)));
            } else {
                to_head.extend(by_fan[&fan].iter().copied());
            }
        }
        for (fan, found) in self.list_fans(lists).await? {
            take(fan, found, to_head);
        }
        Ok(())
    }

    /// Lists fan-out directories, [`LIST_CONCURRENCY`] at once: for each, the ids it holds, or
    /// `None` when it took more than its page budget (then it was abandoned).
    async fn list_fans(
        &self,
        fans: Vec<(u8, Option<usize>)>,
    ) -> Result<Vec<(u8, Option<HashSet<ObjectId>>)>> {
        futures::stream::iter(fans)
            .map(|(fan, budget)| async move { Ok((fan, self.list_fan(fan, budget).await?)) })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The ids in fan-out directory `fan`, or `None` once the listing passes `budget` pages.
    async fn list_fan(&self, fan: u8, budget: Option<usize>) -> Result<Option<HashSet<ObjectId>>> {
        let prefix = KeyPath::from(format!("{}/{fan:02x}", self.objects));
        let mut keys = self.store.list(Some(&prefix));
        let mut found = HashSet::new();
        let mut seen = 0usize;
        let mut pages = 1u64;
        let what = format!("listing {prefix}/");
        let out = loop {
            let Some(meta) = keys.next().await else {
                break Some(found);
            };
            let meta = meta.map_err(|e| self.error(&what, e))?;
            seen += 1;
            if seen > KEYS_PER_PAGE && seen % KEYS_PER_PAGE == 1 {
                pages += 1;
                if budget.is_some_and(|b| pages as usize > b) {
                    break None;
                }
            }
            if let Some(id) = self.id_of_key(meta.location.as_ref()) {
                found.insert(id);
            }
        };
        self.list_pages.fetch_add(pages, Ordering::Relaxed);
        Ok(out)
    }
}
