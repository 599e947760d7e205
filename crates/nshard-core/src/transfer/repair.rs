//! `nshard verify --remote`: check a remote's copies of the objects the current versions need
//! (every work-tree manifest's object and its chunks) and repair the corrupt ones from the local
//! store.
//!
//! Each object the remote has is verified (decoded and re-hashed against its id): by the server
//! itself when it offers `POST /v1/objects/{id}/verify`, else by downloading it
//! ([`Store::check_object`]). A corrupt copy is moved aside on the remote (a server does that
//! itself when it finds one; a directory or S3 remote is asked to, and checks for itself first),
//! so the remote reads it as missing; then the local copy, verified first, is uploaded in its
//! place. Objects the remote lacks are reported: `nshard push` sends
//! them.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::engine::{corrupt_on_remote, remote_missing};
use super::{TransferOptions, TransferStats};
use crate::blocking::blocking;
use crate::codec::{self, MAX_OBJECT_SIZE};
use crate::error::RemoteError;
use crate::error::{Corruption, Error, Result};
use crate::id::ObjectId;
use crate::remote::{ObjectCheck, Store};
use crate::repo::Repo;
use crate::retry::Retry;
use crate::store::LocalStore;

/// A corrupt object that could not be repaired, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unrepaired {
    /// The object.
    pub id: ObjectId,
    /// Why it is still corrupt on the remote.
    pub reason: String,
}

/// The outcome of a remote verify.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RemoteVerifyReport {
    /// The remote has every object checked, intact or repaired.
    pub ok: bool,
    /// Objects the current versions need, downloaded and verified (the ones the remote has).
    pub checked: usize,
    /// Their encoded size (a corrupt copy counts with its local copy's size).
    pub bytes_checked: u64,
    /// Objects whose remote copy was corrupt.
    pub corrupt: Vec<ObjectId>,
    /// Of those, the ones replaced by a good copy from the local store.
    pub repaired: Vec<ObjectId>,
    /// Of those, the ones still corrupt or absent on the remote, with the reason.
    pub unrepaired: Vec<Unrepaired>,
    /// Objects the current versions need that the remote does not have (`nshard push` sends them).
    pub missing: Vec<ObjectId>,
    /// With `all_versions`: older versions left out because the remote's retention pruned them.
    #[serde(skip_serializing_if = "is_zero")]
    pub pruned_versions: usize,
    /// Requests that failed transiently and were retried.
    pub retries: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What became of one object.
enum Outcome {
    Good(u64),
    Missing,
    Repaired(u64),
    Unrepaired(u64, String),
}

/// Checks `remote`'s copies of every object the work tree's current versions need, repairing
/// corrupt ones from the local store. Files whose manifest cannot be read are skipped (`nshard
/// status` and `nshard verify` report them).
/// With `all_versions`, also every older version of each file whose manifest the local store
/// has (as far back as it goes).
pub async fn verify_remote(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &TransferOptions<'_>,
    all_versions: bool,
) -> Result<RemoteVerifyReport> {
    let _lock = repo.lock(false)?;
    let local = repo.store().clone();
    // Older versions retention pruned from the remote are not looked for there.
    let pruned = if all_versions {
        let (p, _) = opts.retry.run(|| super::pruned_versions(remote)).await;
        p?
    } else {
        Default::default()
    };
    let mut pruned_seen = HashSet::new();
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for path in repo.scan_worktree()?.1 {
        let Ok(Some(wt)) = repo.read_worktree_manifest(&path) else {
            continue;
        };
        let chunks = wt.manifest.chunks.iter().map(|c| c.id);
        ids.extend(chunks.chain([wt.version]).filter(|id| seen.insert(*id)));
        let mut next = wt.manifest.version.parent.filter(|_| all_versions);
        let mut walked = HashSet::new();
        while let Some(v) = next.filter(|v| walked.insert(*v) && walked.len() <= 1_000_000) {
            let Ok(m) = repo.load_version(&v) else { break };
            next = m.version.parent;
            if pruned.contains_key(&v) {
                pruned_seen.insert(v);
                continue;
            }
            let chunks = m.chunks.iter().map(|c| c.id);
            ids.extend(chunks.chain([v]).filter(|id| seen.insert(*id)));
        }
    }
    let mut stats = TransferStats::default();
    let absent = remote_missing(remote, &ids, &opts.retry, &mut stats, opts.progress).await?;
    let mut report = RemoteVerifyReport {
        retries: stats.retries,
        pruned_versions: pruned_seen.len(),
        ..RemoteVerifyReport::default()
    };
    // On a remote that keeps deltas, an object it lacks whole may be held as one: checked by
    // resolving its chain.
    let deltas = remote.stores_deltas();
    let todo: Vec<ObjectId> = ids
        .iter()
        .filter(|id| deltas || !absent.contains(id))
        .copied()
        .collect();
    let total = todo.iter().filter_map(|id| local.encoded_size(id)).sum();
    opts.progress
        .start(&format!("verify {}", remote.display_url()), total);
    let mut queue = todo.into_iter();
    let mut set = JoinSet::new();
    let mut first_err = None;
    loop {
        while first_err.is_none() && set.len() < opts.jobs.max(1) {
            let Some(id) = queue.next() else { break };
            let (remote, local, retry) = (Arc::clone(remote), local.clone(), opts.retry);
            let whole = !absent.contains(&id);
            set.spawn(async move {
                let mut retries = 0;
                let r = check_one(&remote, &local, id, whole, &retry, &mut retries).await;
                (id, r, retries)
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (id, r, retries) = match joined {
            Ok(x) => x,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                first_err.get_or_insert(Error::Remote(RemoteError::Transient {
                    remote: remote.display_url(),
                    reason: format!("a verify task was cancelled: {e}"),
                }));
                continue;
            }
        };
        report.retries += retries;
        match r {
            Ok(outcome) => tally(&mut report, id, outcome, opts),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        opts.progress.finish();
        return Err(e);
    }
    // An object held as deltas whose chain ran through a corrupt object this run repaired read
    // as missing while that object was aside: checked again now.
    if deltas && !report.repaired.is_empty() {
        for id in std::mem::take(&mut report.missing) {
            let mut retries = 0;
            let whole = !absent.contains(&id);
            let r = check_one(remote, &local, id, whole, &opts.retry, &mut retries).await;
            report.retries += retries;
            match r {
                Ok(outcome) => tally(&mut report, id, outcome, opts),
                Err(e) => {
                    opts.progress.finish();
                    return Err(e);
                }
            }
        }
    }
    opts.progress.finish();
    if !deltas {
        report.missing.extend(absent);
    }
    for list in [
        &mut report.corrupt,
        &mut report.repaired,
        &mut report.missing,
    ] {
        list.sort();
    }
    report.unrepaired.sort_by_key(|u| u.id);
    report.ok = report.unrepaired.is_empty() && report.missing.is_empty();
    Ok(report)
}

/// Counts what checking `id` found.
fn tally(
    report: &mut RemoteVerifyReport,
    id: ObjectId,
    outcome: Outcome,
    opts: &TransferOptions<'_>,
) {
    match outcome {
        Outcome::Good(n) => {
            report.checked += 1;
            report.bytes_checked += n;
            opts.progress.advance(n);
        }
        Outcome::Missing => report.missing.push(id),
        Outcome::Repaired(n) => {
            report.checked += 1;
            report.bytes_checked += n;
            report.corrupt.push(id);
            report.repaired.push(id);
            opts.progress.advance(n);
        }
        Outcome::Unrepaired(n, reason) => {
            report.checked += 1;
            report.bytes_checked += n;
            report.corrupt.push(id);
            report.unrepaired.push(Unrepaired { id, reason });
        }
    }
}

/// Downloads and verifies one object (`whole`: the remote holds it whole; else through its
/// deltas); repairs it when it is corrupt.
async fn check_one(
    remote: &Arc<dyn Store>,
    local: &LocalStore,
    id: ObjectId,
    whole: bool,
    retry: &Retry,
    retries: &mut u64,
) -> Result<Outcome> {
    let len = local.encoded_size(&id).unwrap_or(0);
    let found = if whole {
        let (checked, n) = retry.run(|| remote.check_object(&id)).await;
        *retries += n;
        let reason = match checked? {
            ObjectCheck::Intact { size } => return Ok(Outcome::Good(size)),
            ObjectCheck::Missing => return Ok(Outcome::Missing),
            ObjectCheck::Corrupt { reason, .. } => reason,
        };
        // Moved aside where the remote can (the server did so already when it answered).
        corrupt_on_remote(remote, id, Corruption::RemoteCopy, reason).await
    } else {
        let (resolved, n) = retry
            .run(|| crate::remote::deltas::resolve(remote.as_ref(), &id, MAX_OBJECT_SIZE, &[]))
            .await;
        *retries += n;
        match resolved {
            Ok(_) => return Ok(Outcome::Good(len)),
            Err(Error::Store(
                crate::error::StoreError::ObjectMissing(_)
                | crate::error::StoreError::BaseMissing { .. },
            )) => return Ok(Outcome::Missing),
            // A delta of its chain is bad: a whole copy uploaded beside it repairs the object.
            Err(e @ Error::Store(crate::error::StoreError::CorruptObject { .. })) => {
                Error::Remote(RemoteError::Failed {
                    remote: remote.display_url(),
                    kind: crate::error::RemoteFailure::Other,
                    reason: format!("its chain of deltas does not resolve: {e}"),
                })
            }
            Err(e) => return Err(e),
        }
    };
    let local_ = local.clone();
    let format1 = !remote.stores_float_objects();
    let good = blocking("local store", move || {
        let (enc, _) = super::engine::standalone(&local_, &id, format1)?;
        codec::decode_verified(&id, &enc, MAX_OBJECT_SIZE)?;
        Ok::<_, Error>(enc)
    })
    .await?;
    let enc = match good {
        Ok(enc) => enc,
        Err(e) => {
            return Ok(Outcome::Unrepaired(
                len,
                format!("{found}; no good local copy to repair it from: {e}"),
            ))
        }
    };
    let (mut put, n) = retry.run(|| remote.put(&id, enc.clone())).await;
    *retries += n;
    if matches!(&put, Err(e) if super::engine::refuses_format(e)) {
        // A server that does not store float objects and did not say so (older than the
        // announcement): the chunk in format 1.
        let local_ = local.clone();
        let older = blocking("local store", move || {
            super::engine::standalone(&local_, &id, true)
        })
        .await?;
        if let Ok((enc, true)) = older {
            let (again, n) = retry.run(|| remote.put(&id, enc.clone())).await;
            *retries += n;
            put = again;
        }
    }
    match put {
        Ok(true) => Ok(Outcome::Repaired(len)),
        Ok(false) => Ok(Outcome::Unrepaired(
            len,
            format!("{found}; the remote still holds its copy, so the good one was not written (move the bad copy out of the remote's objects/ by hand, then push)"),
        )),
        Err(e) => Ok(Outcome::Unrepaired(len, format!("{found}; uploading the good copy failed: {e}"))),
    }
}
