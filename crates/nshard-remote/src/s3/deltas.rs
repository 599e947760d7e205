//! Delta encodings in a bucket: `PREFIX/deltas/ab/<id>.<base>`, the layout of a directory remote
//! (`ab` the id's first two hex digits), next to `PREFIX/objects/`.
//!
//! - **Writes** are create-only like object writes (conditional create, HEAD + PUT where a store
//!   has no conditional writes, parts over [`MULTIPART_THRESHOLD`](super::MULTIPART_THRESHOLD)),
//!   after two checks: the header must be a delta naming the base it is uploaded against, and the
//!   bucket must hold that base (whole, or as a delta of its own), so every chain in the bucket
//!   ends in a whole object. A bucket cannot decode the delta against its base: readers verify
//!   what they resolve ([`resolve`](nshard_core::backend::resolve) hashes every level).
//! - **`deltas_of`** lists `PREFIX/deltas/ab/<id>.` for each id asked about,
//!   [`LIST_CONCURRENCY`] at once (a raw key prefix: `object_store`'s plain listing only takes
//!   whole path segments), or, for a batch with many ids per fan-out directory (a push asks about
//!   thousands), lists whole directories `PREFIX/deltas/ab/` and keeps the deltas of the ids
//!   asked about: `missing`'s rule (module `missing`), with a page worth
//!   [`DELTA_PAGE_IN_LISTS`] listings of one id.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nshard_core::backend::{check_delta_header, holds, DeltaName, StoredDelta};
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::{Error, ObjectId, Result, StoreError};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as KeyPath;
use object_store::ObjectStore;

use super::missing::{by_fan, FanOut, Planned, LIST_CONCURRENCY};
use super::S3Store;

/// What one page of a fan-out directory listing costs, in listings of one id's deltas. S3
/// charges both as one LIST request (1). In time, on the local SeaweedFS of the tests (2 busy
/// cores), a full page of 1,000 keys took as long as 20 to 34 one-id listings (timed once, both
/// run 8 at a time, as here); a page of a smaller directory takes less, and on S3, where a
/// request's round trip weighs more than its size, the gap narrows. With 8, a listed directory
/// takes at most an eighth of the requests of its ids, and of the thousands of ids a push asks
/// about (about ten per directory) most are answered by one-page listings while a prefix holds
/// up to about 200,000 deltas (800 a directory).
pub const DELTA_PAGE_IN_LISTS: usize = 8;

impl S3Store {
    /// `PREFIX/deltas` (or `deltas`).
    fn deltas_prefix(&self) -> String {
        let root = self.objects.strip_suffix("objects").unwrap_or_default();
        format!("{root}deltas")
    }

    /// The key of delta `name`: `PREFIX/deltas/ab/<id>.<base>`.
    pub(super) fn delta_key(&self, name: &DeltaName) -> KeyPath {
        let key = name.key();
        KeyPath::from(format!("{}/{}/{key}", self.deltas_prefix(), &key[..2]))
    }

    /// The delta a key names (`PREFIX/deltas/ab/<id>.<base>`, in the fan-out directory of its
    /// id), or `None` for any other key.
    fn delta_of_key(&self, key: &str) -> Option<DeltaName> {
        let rest = key
            .strip_prefix(self.deltas_prefix().as_str())?
            .strip_prefix('/')?;
        let (fan, file) = rest.split_once('/')?;
        DeltaName::parse(file).filter(|n| n.key() == file && file.get(..2) == Some(fan))
    }

    /// [`Store::put_delta`](nshard_core::Store::put_delta): the header, then the base, then a
    /// create-only write.
    pub(super) async fn put_delta_checked(
        &self,
        name: &DeltaName,
        encoded: Vec<u8>,
    ) -> Result<bool> {
        check_delta_header(name, &encoded, MAX_OBJECT_SIZE)?;
        if !holds(self, &name.base).await? {
            return Err(Error::Store(StoreError::BaseMissing {
                id: name.id,
                base: name.base,
            }));
        }
        let what = format!("uploading {name}");
        self.put_key_if_absent(&self.delta_key(name), &what, Bytes::from(encoded))
            .await
    }

    /// [`Store::get_delta`](nshard_core::Store::get_delta), bounded like object reads.
    pub(super) async fn get_delta_capped(&self, name: &DeltaName) -> Result<Vec<u8>> {
        let what = format!("downloading {name}");
        let of = format!("its delta against {}: ", name.base);
        self.read_capped(&self.delta_key(name), &name.id, &of, &what)
            .await?
            .ok_or(Error::Store(StoreError::ObjectMissing(name.id)))
    }

    /// The deltas of `ids` (duplicates asked once): whole fan-out directories listed where the
    /// batch has enough ids in them to pay for it, one listing of `PREFIX/deltas/ab/<id>.` per
    /// other id, [`LIST_CONCURRENCY`] at once.
    pub(super) async fn list_deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        let mut asked = HashSet::new();
        let ids: Vec<ObjectId> = ids.iter().copied().filter(|id| asked.insert(*id)).collect();
        let keep = |key: &str| self.delta_of_key(key).filter(|n| asked.contains(&n.id));
        let fans = FanOut {
            root: self.deltas_prefix(),
            keep: &keep,
            pages: &self.delta_list_pages,
            page_cost: DELTA_PAGE_IN_LISTS,
        };
        let Planned {
            mut found,
            one_by_one,
        } = self.plan(&fans, &by_fan(&ids)).await?;
        let rest: Vec<Vec<DeltaName>> = futures::stream::iter(one_by_one)
            .map(|id| self.deltas_of_one(id))
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        found.extend(rest.into_iter().flatten());
        Ok(found)
    }

    /// The deltas of `id`: every page of the listing of `PREFIX/deltas/ab/<id>.` (counted in
    /// [`RequestCounts::delta_list_pages`](super::RequestCounts::delta_list_pages)).
    async fn deltas_of_one(&self, id: ObjectId) -> Result<Vec<DeltaName>> {
        let h = id.to_hex();
        // Built through `KeyPath` so that the prefix is spelled as the keys are.
        let dir = KeyPath::from(format!("{}/{}", self.deltas_prefix(), &h[..2]));
        let prefix = format!("{}/{h}.", dir.as_ref());
        let what = format!("listing the delta encodings of {id}");
        let mut out = Vec::new();
        let mut page_token = None;
        loop {
            self.delta_list_pages.fetch_add(1, Ordering::Relaxed);
            let opts = PaginatedListOptions {
                page_token,
                ..Default::default()
            };
            let page = PaginatedListStore::list_paginated(self.store.as_ref(), Some(&prefix), opts)
                .await
                .map_err(|e| self.error(&what, e))?;
            out.extend(
                page.result
                    .objects
                    .iter()
                    .filter_map(|meta| self.delta_of_key(meta.location.as_ref()))
                    .filter(|n| n.id == id),
            );
            match page.page_token {
                Some(t) => page_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Every delta in the bucket with its size and age, sorted by name; a listing that fails is
    /// an error.
    pub(super) async fn list_all_deltas(&self) -> Result<Vec<StoredDelta>> {
        let prefix = KeyPath::from(self.deltas_prefix());
        let mut keys = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(|e| self.error("listing delta encodings", e))?;
            if let Some(name) = self.delta_of_key(meta.location.as_ref()) {
                out.push(StoredDelta {
                    name,
                    size: meta.size,
                    modified: meta.last_modified.timestamp().max(0) as u64,
                });
            }
        }
        out.sort_by_key(|d| d.name);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::S3Options;
    use super::*;

    #[test]
    fn delta_keys_use_the_directory_fan_out_and_parse_back() {
        let a = ObjectId::of(b"a");
        let b = ObjectId::of(b"b");
        let name = DeltaName { id: a, base: b };
        let (ha, hb) = (a.to_hex(), b.to_hex());
        for (prefix, root) in [("team/models", "team/models/"), ("", "")] {
            let s = S3Store::open("bucket", prefix, &S3Options::default()).expect("open");
            let key = s.delta_key(&name);
            assert_eq!(key.as_ref(), format!("{root}deltas/{}/{ha}.{hb}", &ha[..2]));
            assert_eq!(s.delta_of_key(key.as_ref()), Some(name));
            // Anything else under deltas/ is no delta: wrong fan-out, no fan-out, a stray file.
            for other in [
                format!("{root}deltas/{}/{ha}.{hb}", &hb[..2]),
                format!("{root}deltas/{ha}.{hb}"),
                format!("{root}deltas/{}/{ha}.{ha}", &ha[..2]),
                format!("{root}deltas/{}/{ha}.{hb}.tmp", &ha[..2]),
                format!("{root}objects/{}/{}", &ha[..2], &ha[2..]),
            ] {
                assert_eq!(s.delta_of_key(&other), None, "{other}");
            }
        }
    }
}
