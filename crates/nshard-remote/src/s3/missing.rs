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
//!
//! The rule is not tied to objects: [`S3Store::plan`] takes a [`FanOut`] (which root's fan-out
//! directories, what a listed key gives, what a page costs in the one-id requests it replaces)
//! and also serves `deltas_of` (module `deltas`), whose one-id requests are listings of
//! `deltas/ab/<id>.`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Pages of the listings `deltas_of` queries make: of `deltas/ab/<id>.` for an id asked about
    /// one at a time, of a whole fan-out directory `deltas/ab/` for a large batch.
    pub delta_list_pages: u64,
}

/// Keys spread over the 256 fan-out directories of one root (`PREFIX/objects/ab/…`,
/// `PREFIX/deltas/ab/…`): what a listing of them keeps, and what a page of it is worth.
pub(super) struct FanOut<'a, T> {
    /// The directory holding the fan-out directories (`PREFIX/objects`, `PREFIX/deltas`).
    pub(super) root: String,
    /// What a listed key gives, or `None` for a key to pass over (not of this kind, or not
    /// about an id of the batch).
    pub(super) keep: &'a (dyn Fn(&str) -> Option<T> + Sync),
    /// Where the listing pages are counted.
    pub(super) pages: &'a AtomicU64,
    /// What one listing page costs, in the one-id requests it replaces (at least 1).
    pub(super) page_cost: usize,
}

/// What [`S3Store::plan`] settled: what the directories it listed to the end gave, and the ids
/// left to ask about one at a time.
pub(super) struct Planned<T> {
    /// What [`FanOut::keep`] kept of the directories listed.
    pub(super) found: Vec<T>,
    /// The ids of the directories not listed, or abandoned over budget.
    pub(super) one_by_one: Vec<ObjectId>,
}

/// A fan-out directory listed to the end: how many keys it holds, and what was kept of them.
struct Listed<T> {
    keys: usize,
    kept: Vec<T>,
}

/// `ids` by fan-out directory (their first byte), in batch order.
pub(super) fn by_fan(ids: &[ObjectId]) -> BTreeMap<u8, Vec<ObjectId>> {
    let mut by_fan: BTreeMap<u8, Vec<ObjectId>> = BTreeMap::new();
    for id in ids {
        by_fan.entry(id.as_bytes()[0]).or_default().push(*id);
    }
    by_fan
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
        let by_fan = by_fan(ids);
        let asked: HashSet<ObjectId> = ids.iter().copied().collect();
        let keep = |key: &str| self.id_of_key(key).filter(|id| asked.contains(id));
        let fans = FanOut {
            root: self.objects.clone(),
            keep: &keep,
            pages: &self.list_pages,
            page_cost: LIST_PAGE_IN_HEADS,
        };
        let Planned { found, one_by_one } = match how {
            MissingStrategy::Head => Planned {
                found: Vec::new(),
                one_by_one: ids.to_vec(),
            },
            MissingStrategy::List => {
                let every = by_fan.keys().map(|f| (*f, None)).collect();
                let found = self
                    .list_fans(&fans, every)
                    .await?
                    .into_iter()
                    .flat_map(|(_, listed)| {
                        listed.expect("an unbounded listing always completes").kept
                    })
                    .collect();
                Planned {
                    found,
                    one_by_one: Vec::new(),
                }
            }
            MissingStrategy::Auto => self.plan(&fans, &by_fan).await?,
        };
        let mut present: HashSet<ObjectId> = found.into_iter().collect();
        let headed: Vec<(ObjectId, bool)> = futures::stream::iter(one_by_one)
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

    /// The module's rule, with a page worth `fans.page_cost` one-id requests: lists the
    /// directories of `by_fan` where that pays, leaves the ids of the others to the caller.
    pub(super) async fn plan<T: Send>(
        &self,
        fans: &FanOut<'_, T>,
        by_fan: &BTreeMap<u8, Vec<ObjectId>>,
    ) -> Result<Planned<T>> {
        let cost = fans.page_cost.max(1);
        let mut candidates: Vec<(u8, usize)> = by_fan
            .iter()
            .map(|(fan, ids)| (*fan, ids.len()))
            .filter(|(_, n)| *n >= cost)
            .collect();
        // Most ids first; the fan byte breaks ties so the plan is deterministic.
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let listed_fans: HashSet<u8> = candidates.iter().map(|(f, _)| *f).collect();
        let mut out = Planned {
            found: Vec::new(),
            one_by_one: by_fan
                .iter()
                .filter(|(fan, _)| !listed_fans.contains(fan))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect(),
        };
        let Some(&(probe, n)) = candidates.first() else {
            return Ok(out);
        };
        let mut first = self.list_fans(fans, vec![(probe, Some(n / cost))]).await?;
        let (_, listed) = first.pop().expect("one listing asked, one answered");
        let Some(Listed { keys, kept }) = listed else {
            // Fuller than the directory with the most ids can pay for: so is every other one.
            for (fan, _) in &candidates {
                out.one_by_one.extend(by_fan[fan].iter().copied());
            }
            return Ok(out);
        };
        out.found.extend(kept);
        // The others are expected to hold about as many keys (a quarter more, for the spread).
        let expected_pages = (keys + keys / 4).div_ceil(KEYS_PER_PAGE).max(1);
        let mut lists = Vec::new();
        for &(fan, n) in &candidates[1..] {
            if n >= expected_pages * cost {
                lists.push((fan, Some(n / cost)));
            } else {
                out.one_by_one.extend(by_fan[&fan].iter().copied());
            }
        }
        for (fan, listed) in self.list_fans(fans, lists).await? {
            match listed {
                Some(listed) => out.found.extend(listed.kept),
                None => out.one_by_one.extend(by_fan[&fan].iter().copied()),
            }
        }
        Ok(out)
    }

    /// Lists fan-out directories, [`LIST_CONCURRENCY`] at once: for each, what it holds, or
    /// `None` when it took more than its page budget (then it was abandoned).
    async fn list_fans<T: Send>(
        &self,
        fans: &FanOut<'_, T>,
        which: Vec<(u8, Option<usize>)>,
    ) -> Result<Vec<(u8, Option<Listed<T>>)>> {
        futures::stream::iter(which)
            .map(|(fan, budget)| async move { Ok((fan, self.list_fan(fans, fan, budget).await?)) })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Fan-out directory `fan` listed page after page (strict: a failed page is an error), or
    /// `None` once the listing passes `budget` pages.
    async fn list_fan<T: Send>(
        &self,
        fans: &FanOut<'_, T>,
        fan: u8,
        budget: Option<usize>,
    ) -> Result<Option<Listed<T>>> {
        let prefix = KeyPath::from(format!("{}/{fan:02x}", fans.root));
        let mut listing = self.store.list(Some(&prefix));
        let mut kept = Vec::new();
        let mut keys = 0usize;
        let mut pages = 1u64;
        let what = format!("listing {prefix}/");
        let out = loop {
            let Some(meta) = listing.next().await else {
                break Ok(Some(Listed { keys, kept }));
            };
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => break Err(self.error(&what, e)),
            };
            keys += 1;
            if keys > KEYS_PER_PAGE && keys % KEYS_PER_PAGE == 1 {
                pages += 1;
                if budget.is_some_and(|b| pages as usize > b) {
                    break Ok(None);
                }
            }
            kept.extend((fans.keep)(meta.location.as_ref()));
        };
        fans.pages.fetch_add(pages, Ordering::Relaxed);
        out
    }
}
