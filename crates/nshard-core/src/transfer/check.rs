//! `nshard status --remote`: which committed versions a remote lacks, asked with the same batched
//! `missing` queries a push uses (one round for the whole repository), without moving anything.

use std::collections::HashSet;
use std::sync::Arc;

use super::engine::remote_missing;
use super::TransferStats;
use crate::error::Result;
use crate::id::ObjectId;
use crate::ops::{RemoteCheck, Status};
use crate::remote::Store;
use crate::repo::Repo;
use crate::retry::Retry;

/// Fills in [`FileStatus::remote`] for every file with a readable committed version: how many of
/// the objects it needs (its manifest object and its distinct chunks) `remote` lacks; and
/// [`crate::DirStatus::remote`] for every committed directory unit (its manifest object, listing
/// objects, packs and chunks; the listing alone when it is not in the local store).
pub async fn check_remote(
    repo: &Repo,
    statuses: &mut [Status],
    remote: &Arc<dyn Store>,
    retry: &Retry,
) -> Result<()> {
    let mut needs: Vec<Option<Vec<ObjectId>>> = Vec::with_capacity(statuses.len());
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for s in statuses.iter() {
        let ids = match s {
            Status::File(f) => {
                let wt = match f.version {
                    Some(_) => repo.read_worktree_manifest(&f.path).ok().flatten(),
                    None => None,
                };
                wt.map(|wt| {
                    std::iter::once(wt.version)
                        .chain(wt.manifest.chunks.iter().map(|c| c.id))
                        .collect::<Vec<_>>()
                })
            }
            Status::Unit(u) if u.version.is_some() => match repo.read_dir_manifest(&u.path)? {
                Some(d) => Some(
                    std::iter::once(d.version)
                        .chain(super::dirs::version_objects(repo, &d.manifest)?)
                        .collect(),
                ),
                None => None,
            },
            _ => None,
        };
        let ids = ids.map(|ids| {
            let mut mine = HashSet::new();
            ids.into_iter()
                .filter(|id| mine.insert(*id))
                .collect::<Vec<_>>()
        });
        if let Some(ids) = &ids {
            all.extend(ids.iter().filter(|id| seen.insert(**id)).copied());
        }
        needs.push(ids);
    }
    let mut stats = TransferStats::default();
    let mut missing = remote_missing(
        remote,
        &all,
        retry,
        &mut stats,
        &crate::progress::NoProgress,
    )
    .await?;
    if remote.stores_deltas() && !missing.is_empty() {
        // Held as deltas is held.
        let ids: Vec<ObjectId> = missing.iter().copied().collect();
        for d in super::deltas::remote_deltas(remote, &ids, retry, &mut stats).await? {
            missing.remove(&d.id);
        }
    }
    for (s, ids) in statuses.iter_mut().zip(needs) {
        let check = ids.map(|ids| RemoteCheck {
            objects: ids.len(),
            missing_objects: ids.iter().filter(|id| missing.contains(id)).count(),
        });
        match s {
            Status::File(f) => f.remote = check,
            Status::Unit(u) => u.remote = check,
        }
    }
    Ok(())
}
