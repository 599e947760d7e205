//! Moving objects: the missing set in batches, bounded concurrency, retries with backoff.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{TransferOptions, TransferStats};
use crate::blocking::blocking;
use crate::error::{Corruption, Error, Result};
use crate::error::{RemoteError, StoreError};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::remote::Store;
use crate::retry::Retry;
use crate::store::LocalStore;

/// Of `ids`, those `remote` lacks, asked in batches of the store's
/// [`missing_batch_size`](Store::missing_batch_size).
pub(super) async fn remote_missing(
    remote: &Arc<dyn Store>,
    ids: &[ObjectId],
    retry: &Retry,
    stats: &mut TransferStats,
    progress: &dyn Progress,
) -> Result<HashSet<ObjectId>> {
    let mut out = HashSet::new();
    for batch in ids.chunks(remote.missing_batch_size().max(1)) {
        let (r, n) = retry.run(|| remote.missing(batch)).await;
        // A batch answered is progress too (no bytes moved): a watchdog sees the remote answer.
        progress.advance(0);
        stats.retries += n;
        let asked: HashSet<&ObjectId> = batch.iter().collect();
        for id in r? {
            // A store answering with ids that were not asked about is broken; ignore them.
            if asked.contains(&id) {
                out.insert(id);
            }
        }
    }
    Ok(out)
}

/// Runs `work` for every id with at most `jobs` at once. `work` returns what it moved; `done` is
/// called as each finishes. On the first permanent error no new work starts; work in flight is
/// awaited, then the error is returned.
pub(super) async fn bounded<F, Fut, T>(
    ids: Vec<ObjectId>,
    jobs: usize,
    work: F,
    mut done: impl FnMut(ObjectId, T, u64),
) -> Result<()>
where
    F: Fn(ObjectId) -> Fut,
    Fut: Future<Output = (Result<T>, u64)> + Send + 'static,
    T: Send + 'static,
{
    let mut set = JoinSet::new();
    let mut queue = ids.into_iter();
    let mut first_err: Option<Error> = None;
    loop {
        while first_err.is_none() && set.len() < jobs.max(1) {
            let Some(id) = queue.next() else { break };
            let fut = work(id);
            set.spawn(async move {
                let (r, retries) = fut.await;
                (id, r, retries)
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined {
            Ok((id, Ok(bytes), retries)) => done(id, bytes, retries),
            Ok((_, Err(e), _)) => {
                first_err.get_or_insert(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                first_err.get_or_insert(Error::Remote(RemoteError::Transient {
                    remote: "transfer".into(),
                    reason: format!("a transfer task was cancelled: {e}"),
                }));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs blocking local-store work off the async threads.
pub(super) async fn local_io<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    blocking("local store", f).await?
}

/// Uploads the objects of each group that `remote` lacks (`missing`, asked beforehand with
/// [`remote_missing`]), groups in order (a later group starts
/// only when the earlier ones are complete: chunks before the manifests that name them).
pub(super) async fn push_groups(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    groups: &[Vec<ObjectId>],
    missing: &HashSet<ObjectId>,
    mut stats: TransferStats,
    opts: &TransferOptions<'_>,
) -> Result<TransferStats> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for g in groups {
        all.extend(g.iter().copied().filter(|id| seen.insert(*id)));
    }
    let mut total = 0u64;
    for id in &all {
        let size = local.encoded_size(id).unwrap_or(0);
        if missing.contains(id) {
            total += size;
        } else {
            stats.skipped += 1;
            stats.skipped_bytes += size;
        }
    }
    if opts.dry_run {
        let would: HashSet<&ObjectId> = all.iter().filter(|id| missing.contains(id)).collect();
        stats.objects += would.len();
        stats.bytes += total;
        return Ok(stats);
    }
    opts.progress
        .start(&format!("push to {}", remote.display_url()), total);
    let mut sent = HashSet::new();
    let mut result = Ok(());
    // Format 1 for a server that does not announce float objects, or once a remote refuses one
    // (a server from before the announcement): the rest go in format 1 straight away.
    let format1 = Arc::new(AtomicBool::new(!remote.stores_float_objects()));
    for g in groups {
        let todo: Vec<ObjectId> = g
            .iter()
            .copied()
            .filter(|id| missing.contains(id) && sent.insert(*id))
            .collect();
        let r = put_each(local, remote, todo, &format1, &mut stats, opts, |_, _| {}).await;
        if r.is_err() {
            result = r;
            break;
        }
    }
    opts.progress.finish();
    result.map(|()| stats)
}

/// Uploads each of `ids` as a standalone object ([`put_standalone`], `opts.jobs` at a time,
/// each with retries), counting them in `stats` and the progress; `sent` hears of each object
/// uploaded with the bytes sent. Stops at the first failure.
pub(super) async fn put_each(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    ids: Vec<ObjectId>,
    format1: &Arc<AtomicBool>,
    stats: &mut TransferStats,
    opts: &TransferOptions<'_>,
    mut sent: impl FnMut(ObjectId, u64),
) -> Result<()> {
    let retry = opts.retry;
    bounded(
        ids,
        opts.jobs,
        |id| {
            let local = local.clone();
            let remote = Arc::clone(remote);
            let format1 = Arc::clone(format1);
            async move {
                retry
                    .run(|| {
                        let local = local.clone();
                        let remote = Arc::clone(&remote);
                        let format1 = Arc::clone(&format1);
                        async move { put_standalone(&local, &remote, id, &format1).await }
                    })
                    .await
            }
        },
        |id, (n, older), retries| {
            stats.objects += 1;
            stats.older_format += usize::from(older);
            stats.bytes += n;
            stats.retries += retries;
            opts.progress.advance(n);
            sent(id, n);
        },
    )
    .await
}

/// Uploads `id` as a standalone object (see [`LocalStore::get_standalone`]), in object format 1
/// when `format1` is set (a server that does not announce float objects); returns the bytes
/// sent and whether they went in format 1 in place of a float object. A server that refuses a
/// float object without having said so ([`refuses_format`]: one older than the announcement)
/// gets the chunk again in format 1, and `format1` is set for the uploads after it.
pub(super) async fn put_standalone(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    id: ObjectId,
    format1: &AtomicBool,
) -> Result<(u64, bool)> {
    let older = format1.load(Ordering::Relaxed);
    let l = local.clone();
    // A corrupt local copy is moved aside, as checkout and verify do: `commit` of the file then
    // stores it again (it reads the chunk as missing), or `pull` fetches a good copy.
    let (enc, reencoded) = local_io(move || standalone(&l, &id, older))
        .await
        .map_err(|e| local.quarantine_on(e))?;
    let n = enc.len() as u64;
    match remote.put(&id, enc).await {
        Ok(_) => Ok((n, reencoded)),
        Err(e) if !older && refuses_format(&e) => {
            let l = local.clone();
            let (enc, reencoded) = local_io(move || standalone(&l, &id, true))
                .await
                .map_err(|e| local.quarantine_on(e))?;
            if !reencoded {
                // Not a float object: the refusal stands.
                return Err(e);
            }
            format1.store(true, Ordering::Relaxed);
            let n = enc.len() as u64;
            remote.put(&id, enc).await?;
            Ok((n, true))
        }
        // The remote verified what it was sent and refused it: if the local copy is corrupt, that
        // is the error, and the copy goes aside as above.
        Err(e) => Err(corrupt_here(local, id).await.unwrap_or(e)),
    }
}

/// The error for the local copy of `id` when it fails verification (after moving it aside, see
/// [`LocalStore::quarantine_on`]); `None` when it reads correctly.
pub(super) async fn corrupt_here(local: &LocalStore, id: ObjectId) -> Option<Error> {
    let l = local.clone();
    match local_io(move || l.get(&id, crate::codec::MAX_OBJECT_SIZE)).await {
        Err(e @ Error::Store(StoreError::CorruptObject { .. })) => Some(local.quarantine_on(e)),
        _ => None,
    }
}

/// `id`'s standalone encoding, in object format 1 when `format1` (and whether that re-encoded it).
pub(super) fn standalone(
    local: &LocalStore,
    id: &ObjectId,
    format1: bool,
) -> Result<(Vec<u8>, bool)> {
    let encoder = &mut crate::codec::Encoder::new();
    if format1 {
        local.get_standalone_format1(id, encoder)
    } else {
        Ok((local.get_standalone(id, encoder)?, false))
    }
}

/// Whether `e` is a server's refusal of an object's format: an `nshard serve` older than the
/// format answers "unsupported object format", one started with `--max-object-format` names the
/// option; both as a refusal (422) of the upload.
pub(super) fn refuses_format(e: &Error) -> bool {
    matches!(
        e,
        Error::Remote(RemoteError::Failed { kind: crate::error::RemoteFailure::Refused, reason, .. })
            if reason.contains("unsupported object format") || reason.contains("--max-object-format")
    )
}

/// Downloads `wanted` (id → the most raw bytes it may decode to), verifying each object before it
/// is stored locally. Everything in `wanted` must be absent locally and present on the remote.
pub(super) async fn pull_objects(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    wanted: &HashMap<ObjectId, u64>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<()> {
    let total: u64 = wanted.values().sum();
    let url = remote.display_url();
    opts.progress.start(&format!("pull from {url}"), total);
    let mut ids: Vec<ObjectId> = wanted.keys().copied().collect();
    ids.sort();
    let retry = opts.retry;
    let r = bounded(
        ids,
        opts.jobs,
        |id| {
            let local = local.clone();
            let remote = Arc::clone(remote);
            let max_raw = wanted[&id];
            let url = url.clone();
            async move {
                let (enc, retries) = retry.run(|| remote.get(&id)).await;
                let enc = match enc {
                    Ok(e) => e,
                    Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
                        return (
                            Err(corrupt_on_remote(&remote, id, kind, reason).await),
                            retries,
                        )
                    }
                    Err(Error::Store(StoreError::ObjectMissing(_))) => {
                        return (
                            Err(Error::Remote(RemoteError::Lacks {
                                remote: url,
                                subject: "the pull (it disappeared while pulling)".into(),
                                missing: vec![id],
                            })),
                            retries,
                        )
                    }
                    Err(e) => return (Err(e), retries),
                };
                let n = enc.len() as u64;
                // The decode and hash take a turn of the cores; the write and fsync after them
                // do not (they wait on the disk, and the decoded bytes are gone by then).
                let stored = local_io(move || {
                    {
                        let _turn = crate::blocking::decode_slot();
                        crate::codec::decode_verified(&id, &enc, max_raw)?;
                    }
                    local.put_trusted(&id, &enc)
                })
                .await;
                let r = match stored {
                    Ok(_) => Ok(n),
                    Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
                        Err(corrupt_on_remote(&remote, id, kind, reason).await)
                    }
                    Err(e) => Err(e),
                };
                (r, retries)
            }
        },
        |id, n, retries| {
            stats.objects += 1;
            stats.bytes += n;
            stats.retries += retries;
            opts.progress.advance(wanted[&id]);
        },
    )
    .await;
    opts.progress.finish();
    r
}

/// The error for object `id` found corrupt as received from `remote` (nothing of it was stored
/// locally). Where the remote can, the bad copy is moved aside there (the remote checks it for
/// itself first), so that it reads as missing and the next push restores it; an HTTP server
/// does that itself when it reads one.
pub(super) async fn corrupt_on_remote(
    remote: &Arc<dyn Store>,
    id: ObjectId,
    kind: Corruption,
    reason: String,
) -> Error {
    let url = remote.display_url();
    let note = match remote.admin() {
        Some(admin) => match admin.quarantine_corrupt(&id).await {
            Ok(true) => "; moved aside to corrupt/ on the remote: `nshard push` from a repository with a good copy restores it".to_string(),
            Ok(false) => String::new(),
            Err(e) => format!("; moving it aside on the remote failed: {e}"),
        },
        None => String::new(),
    };
    Error::Store(StoreError::CorruptObject {
        id,
        kind,
        reason: format!("{reason} (as received from {url}; nothing was stored{note})"),
    })
}

/// Fetches one object (a manifest) from `remote`, verifies it, stores it locally and returns its
/// raw bytes. `Ok(None)` when the remote does not have it.
pub(super) async fn fetch_one(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    id: ObjectId,
    max_raw: u64,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<Option<Vec<u8>>> {
    let (enc, retries) = opts.retry.run(|| remote.get(&id)).await;
    stats.retries += retries;
    let enc = match enc {
        Ok(e) => e,
        Err(Error::Store(StoreError::ObjectMissing(_))) => return Ok(None),
        Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
            return Err(corrupt_on_remote(remote, id, kind, reason).await)
        }
        Err(e) => return Err(e),
    };
    let n = enc.len() as u64;
    let local = local.clone();
    let raw = local_io(move || {
        let raw = crate::codec::decode_verified(&id, &enc, max_raw)?;
        local.put_trusted(&id, &enc)?;
        Ok(raw)
    })
    .await;
    let raw = match raw {
        Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
            return Err(corrupt_on_remote(remote, id, kind, reason).await)
        }
        r => r?,
    };
    stats.objects += 1;
    stats.bytes += n;
    Ok(Some(raw))
}
