//! Push and pull of directory units: a version needs its manifest object, its listing (a delta
//! listing with every base down to a full one), and the packs and chunks the listing names (for a pull of a subtree, only those of its files).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{engine, FilePlan, PullOptions, PushPlan, TransferOptions, TransferStats};
use crate::dirunit::{
    is_delta, DirManifest, DirVersionBytes, ListingDelta, MAX_CHAIN, MAX_DIR_MANIFEST, MAX_LISTING,
};
use crate::error::{Error, Result};
use crate::error::{RemoteError, RepoError};
use crate::id::ObjectId;
use crate::path::RepoPath;
use crate::remote::Store;
use crate::repo::Repo;

/// Per unit, the versions a push starts from (or why its manifest cannot be used).
pub(super) type DirRoots = Vec<(RepoPath, Result<Vec<DirVersionBytes>>)>;

/// Adds a directory manifest found in git (`bytes`, version `version`, found at `origin`) to the
/// roots of unit `path`.
pub(super) fn add_git_root(
    roots: &mut DirRoots,
    index: &mut HashMap<RepoPath, usize>,
    path: RepoPath,
    version: ObjectId,
    bytes: Vec<u8>,
    origin: &str,
) {
    let parsed =
        DirManifest::parse(&bytes, std::path::Path::new(origin), Some(&path)).map(|manifest| {
            DirVersionBytes {
                manifest,
                version,
                bytes,
            }
        });
    let i = *index.entry(path.clone()).or_insert_with(|| {
        roots.push((path, Ok(Vec::new())));
        roots.len() - 1
    });
    match (&mut roots[i].1, parsed) {
        (Ok(list), Ok(d)) => {
            if !list.iter().any(|w| w.version == d.version) {
                list.push(d);
            }
        }
        (slot @ Ok(_), Err(e)) => *slot = Err(e),
        (Err(_), _) => {}
    }
}

/// The objects of one version besides its manifest: the listing and, when the listing is local,
/// its packs and chunks (when it is not, only the listing id: the remote has the rest if it has
/// the listing, which push checks).
pub(super) fn version_objects(repo: &Repo, m: &DirManifest) -> Result<Vec<ObjectId>> {
    Ok(match repo.dir_objects(m, None)? {
        Some(objs) => objs.into_iter().map(|(id, _)| id).collect(),
        None => vec![m.listing],
    })
}

/// For one unit: the plan and its versions to send, oldest first, each with its objects.
pub(super) fn plan_push(
    repo: &Repo,
    roots: &[DirVersionBytes],
    all_versions: bool,
) -> Result<PushPlan> {
    let mut versions: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
    let mut listed: HashSet<ObjectId> = HashSet::new();
    let mut stops = None;
    for d in roots {
        repo.store_dir_manifest_object(d)?;
        let mut chain = Vec::new();
        if listed.insert(d.version) {
            chain.push((d.version, version_objects(repo, &d.manifest)?));
        }
        if all_versions {
            for v in repo.dir_history(d)?.into_iter().skip(1) {
                if !listed.insert(v.version) {
                    break;
                }
                match v.manifest {
                    Some(m) if repo.store().has(&m.listing) => {
                        chain.push((v.version, version_objects(repo, &m)?))
                    }
                    _ => {
                        stops.get_or_insert(v.version);
                        break;
                    }
                }
            }
        }
        chain.reverse();
        versions.extend(chain);
    }
    let first = roots
        .first()
        .ok_or(Error::Repo(RepoError::NothingSelected))?;
    let objects: HashSet<&ObjectId> = versions.iter().flat_map(|(_, o)| o).collect();
    Ok((
        FilePlan {
            version: first.version,
            versions: versions.len(),
            chunks: objects.len(),
            history_stops_at: stops,
            pruned: 0,
        },
        versions,
    ))
}

/// Makes sure the local store has object `id` (a manifest or listing), fetching it from the
/// remote; `false` when neither has it.
pub(super) async fn ensure_local(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    id: ObjectId,
    max: u64,
    transfer: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<bool> {
    if repo.store().has(&id) {
        return Ok(true);
    }
    let got = engine::fetch_one(repo.store(), remote, id, max, transfer, stats).await?;
    Ok(got.is_some())
}

/// Makes sure the local store has the listing of `m` and each base of a delta listing down to
/// the full one (one more than the bound, so that an over-long chain is refused by name when it
/// is read), fetching them from the remote. Returns their ids, or the first one neither has.
pub(super) async fn ensure_listings(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    m: &DirManifest,
    transfer: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<std::result::Result<Vec<ObjectId>, ObjectId>> {
    let mut at = m.listing;
    let mut listings = Vec::new();
    for _ in 0..=MAX_CHAIN {
        listings.push(at);
        if !ensure_local(repo, remote, at, MAX_LISTING, transfer, stats).await? {
            return Ok(Err(at));
        }
        let bytes = repo.store().get(&at, MAX_LISTING)?;
        if !is_delta(&bytes) {
            break;
        }
        at = ListingDelta::parse(&bytes, &format!("listing {at}"))?.base;
    }
    Ok(Ok(listings))
}

/// For one unit (or the subtree `sub` of it): the plan and the objects to pull (id → size).
pub(super) async fn plan_pull(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    unit: &RepoPath,
    sub: Option<&str>,
    opts: &PullOptions<'_>,
    stats: &mut TransferStats,
) -> Result<super::PullPlan> {
    let d = repo
        .read_dir_manifest(unit)?
        .ok_or(Error::Repo(RepoError::NotTracked {
            path: unit.manifest_path().as_str().into(),
            reason: crate::error::Untracked::NoManifest,
        }))?;
    repo.store_dir_manifest_object(&d)?;
    let mut chain: Vec<(ObjectId, DirManifest)> = vec![(d.version, d.manifest.clone())];
    let mut stops = None;
    let mut next = d.manifest.version.parent.filter(|_| opts.all_versions);
    while let Some(v) = next {
        if chain.len() > 1_000_000 || chain.iter().any(|(c, _)| *c == v) {
            break;
        }
        if !ensure_local(repo, remote, v, MAX_DIR_MANIFEST, &opts.transfer, stats).await? {
            stops = Some(v);
            break;
        }
        let m = repo.load_dir_version(&v)?;
        next = m.version.parent;
        chain.push((v, m));
    }
    let mut wanted: HashMap<ObjectId, u64> = HashMap::new();
    for (v, m) in &chain {
        let listings = match ensure_listings(repo, remote, m, &opts.transfer, stats).await? {
            Ok(l) => l,
            Err(at) => {
                return Err(Error::Remote(RemoteError::Lacks {
                    remote: remote.display_url(),
                    subject: format!("{unit} (listing of version {})", v.short()),
                    missing: vec![at],
                }))
            }
        };
        let sub = if *v == d.version { sub } else { None };
        let objects = repo.dir_objects(m, sub)?.unwrap_or_default();
        for (id, size) in objects {
            if !listings.contains(&id) {
                let e = wanted.entry(id).or_insert(0);
                *e = (*e).max(size);
            }
        }
    }
    Ok((
        FilePlan {
            version: d.version,
            versions: chain.len(),
            chunks: wanted.len(),
            history_stops_at: stops,
            pruned: 0,
        },
        wanted,
    ))
}
