//! Push and pull: move the objects a repository's manifests need between the local store and a
//! remote [`Store`].
//!
//! Only what the other side lacks travels: push asks the remote which ids it is missing (in
//! batches of the store's [`missing_batch_size`](crate::remote::Store::missing_batch_size)), pull
//! checks the local store. A few objects move at once, transient failures are retried with
//! backoff, and every object is verified by whoever receives it before it becomes visible. Push
//! uploads chunks before the manifest objects that name them, so a manifest on a remote always has
//! its chunks. An interrupted transfer is resumed by running it again: what arrived is skipped,
//! nothing half-written exists.

mod check;
mod deltas;
mod dirs;
mod engine;
mod gc_lock;
mod lfs;
mod remote_gc;
mod repair;
mod roots;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use check::check_remote;
pub use gc_lock::STALE as GC_LOCK_STALE;
pub use lfs::{lfs_download, lfs_prepare, lfs_push, LfsFetched, LfsPushed, LfsVersion};

pub use remote_gc::{
    remote_gc, GcCandidate, GcState, GcWhy, RemoteGcOptions, RemoteGcReport, RetentionChange,
};
pub use repair::{verify_remote, RemoteVerifyReport, Unrepaired};
pub use roots::{pruned_versions, read_retention};

use crate::codec::{DataHint, Encoder};
use crate::error::{Error, Result};
use crate::error::{LookupProblem, ManifestError, RemoteError, RepoError, StoreError};
use crate::git::{Reach, RefUpdate};
use crate::id::ObjectId;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::remote::records::PrunedVersion;
use crate::remote::Store;
use crate::repo::{PathFilter, Repo, WorktreeManifest};
use crate::retry::Retry;

/// How a transfer runs.
pub struct TransferOptions<'a> {
    /// Objects moved at once.
    pub jobs: usize,
    /// Retries of transient failures.
    pub retry: Retry,
    /// Progress sink (bytes).
    pub progress: &'a dyn Progress,
    /// Work out what would move (asking the remote what it has) and move nothing: `objects` and
    /// `bytes` then count what would be sent or received (`bytes`: encoded size as stored
    /// locally for a push, raw size for a pull).
    pub dry_run: bool,
}

/// Default number of objects moved at once.
pub const DEFAULT_JOBS: u16 = 8;

/// What moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferStats {
    /// Objects sent (push) or received (pull).
    pub objects: usize,
    /// Their encoded bytes: what actually travelled (in a pull's dry run, the chunks' raw sizes
    /// from the manifests; in a push's, their encoded sizes as stored locally).
    pub bytes: u64,
    /// Objects not sent because the destination already had them.
    pub skipped: usize,
    /// Encoded bytes of the skipped objects (as stored locally; 0 for what pull skips but does not
    /// have locally yet, which cannot happen).
    pub skipped_bytes: u64,
    /// Requests that failed transiently and were retried.
    pub retries: u64,
    /// Objects sent in object format 1 in place of float objects (format 4), because the
    /// remote's server does not announce them or refused one (push only).
    pub older_format: usize,
    /// Older local versions queued to be re-encoded as deltas of versions received (pull only;
    /// `nshard repack` does it, by default in the background as after a commit).
    pub deltas_queued: usize,
    /// Of `objects`, those sent or received as deltas (to and from a remote that keeps them).
    pub deltas: usize,
}

/// What a push or pull did for one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FilePlan {
    /// The version transferred (the work-tree manifest's, or the one asked for with `--version`).
    pub version: ObjectId,
    /// How many versions of the file were included (more than 1 with `--all-versions`).
    pub versions: usize,
    /// Distinct chunks of the included versions.
    pub chunks: usize,
    /// With `--all-versions`: the newest ancestor that was left out because the source does not
    /// have it (the history beyond it is not there to send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_stops_at: Option<ObjectId>,
    /// Versions left out because retention pruned them from the remote (push: sent with
    /// `include_pruned`; pull `--all-versions`: those whose data this store lacks).
    #[serde(skip_serializing_if = "is_zero")]
    pub pruned: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The result for one file.
#[derive(Debug)]
pub struct FileTransfer {
    /// The data file.
    pub path: RepoPath,
    /// What was planned for it, or why it was left out (other files still transfer).
    pub result: Result<FilePlan>,
}

/// Which versions a push sends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PushScope {
    /// The work tree's versions only (`--current`).
    Current,
    /// The work tree's versions and every version named by a manifest in any commit reachable
    /// from local branches, tags or HEAD (the default).
    History,
    /// The versions named by manifests in the commits a `git push` sends (the `pre-push` hook).
    GitPush {
        /// The ref updates git announced.
        updates: Vec<RefUpdate>,
        /// The git remote's name (or URL).
        remote: String,
    },
}

/// Options of a push.
pub struct PushOptions<'a> {
    /// Which files (every file when it matches all).
    pub filter: PathFilter,
    /// Which of their versions.
    pub scope: PushScope,
    /// Also push every earlier version reachable through the manifests' parents.
    pub all_versions: bool,
    /// Also push versions that retention pruned from the remote.
    pub include_pruned: bool,
    /// How to move objects.
    pub transfer: TransferOptions<'a>,
}

/// Options of a pull.
pub struct PullOptions<'a> {
    /// Data files (empty: every manifest in the work tree).
    pub paths: Vec<RepoPath>,
    /// Pull this version (id or unique prefix) instead of the work-tree manifest's. Needs one path.
    pub version: Option<String>,
    /// Directory units (or subtrees of them: unit, path inside it) to pull. When both this and
    /// `paths` are empty, every file and every unit is pulled.
    pub dirs: Vec<(RepoPath, Option<String>)>,
    /// Also pull every earlier version.
    pub all_versions: bool,
    /// How to move objects.
    pub transfer: TransferOptions<'a>,
}

/// The outcome of a push or pull.
#[derive(Debug)]
pub struct TransferReport {
    /// Per file.
    pub files: Vec<FileTransfer>,
    /// Totals.
    pub stats: TransferStats,
    /// Root records written on the remote (push; see `nshard remote gc`).
    pub records: usize,
    /// Things the user should know that did not fail the transfer.
    pub notes: Vec<String>,
}

/// The most objects [`remote_lacks`] looks for among a remote's deltas.
const MAX_DELTA_LOOKUPS: usize = 4096;

/// Of `ids`, those `remote` lacks: the batched `missing` question, with retries; on a remote
/// that keeps deltas, an object it holds only as one (`remote gc` re-encoded older versions) is
/// not lacking when its chain reaches a whole object.
pub async fn remote_lacks(
    remote: &Arc<dyn Store>,
    ids: &[ObjectId],
    retry: &Retry,
) -> Result<HashSet<ObjectId>> {
    let mut stats = TransferStats::default();
    let progress = &crate::progress::NoProgress;
    let mut lacking = engine::remote_missing(remote, ids, retry, &mut stats, progress).await?;
    if remote.stores_deltas() && !lacking.is_empty() {
        let opts = TransferOptions {
            jobs: DEFAULT_JOBS.into(),
            retry: *retry,
            progress,
            dry_run: false,
        };
        // Each costs a search through its chain: bounded, past which objects count as lacking
        // (kept: the safe side for gc, the only caller).
        let asked: Vec<ObjectId> = lacking.iter().copied().take(MAX_DELTA_LOOKUPS).collect();
        let held = deltas::resolving(remote, asked, &opts, &mut stats).await?;
        lacking.retain(|id| !held.contains(id));
    }
    Ok(lacking)
}

/// Distinct chunk ids of `m` with their sizes.
fn chunk_sizes(m: &Manifest, into: &mut HashMap<ObjectId, u64>) {
    for c in &m.chunks {
        let e = into.entry(c.id).or_insert(0);
        *e = (*e).max(c.size);
    }
}

/// The manifest paths to work on.
fn targets(repo: &Repo, paths: &[RepoPath]) -> Result<Vec<RepoPath>> {
    if paths.is_empty() {
        Ok(repo.scan_worktree()?.1)
    } else {
        Ok(paths.to_vec())
    }
}

/// The work-tree manifest of `path`, with its object stored locally unless `dry_run` (a clone has
/// the manifest from git but not necessarily the object).
fn worktree_manifest(repo: &Repo, path: &RepoPath, dry_run: bool) -> Result<WorktreeManifest> {
    let wt = repo
        .read_worktree_manifest(path)?
        .ok_or(Error::Repo(RepoError::NotTracked {
            path: path.manifest_path().as_str().into(),
            reason: crate::error::Untracked::NoManifest,
        }))?;
    if !dry_run && !repo.store().has(&wt.version) {
        let enc = Encoder::new().encode(&wt.bytes, DataHint::Unknown);
        repo.store().put_trusted(&wt.version, &enc)?;
    }
    Ok(wt)
}

/// The versions a push starts from, grouped by file: the work tree's manifest first, then the
/// ones found in git. A file whose manifest cannot be used gets an error instead.
fn push_roots(
    repo: &Repo,
    opts: &PushOptions<'_>,
    dir_roots: &mut dirs::DirRoots,
) -> Result<Vec<(RepoPath, Result<Vec<WorktreeManifest>>)>> {
    let mut roots: Vec<(RepoPath, Result<Vec<WorktreeManifest>>)> = Vec::new();
    let mut index: HashMap<RepoPath, usize> = HashMap::new();
    let mut dir_index: HashMap<RepoPath, usize> = HashMap::new();
    if !matches!(opts.scope, PushScope::GitPush { .. }) {
        let units = repo.dir_units()?;
        for u in units.iter().filter(|u| opts.filter.matches_unit(u)) {
            let r = repo.read_dir_manifest(u);
            if let Ok(None) = r {
                continue;
            }
            dir_index.insert(u.clone(), dir_roots.len());
            dir_roots.push((u.clone(), r.map(|d| d.into_iter().collect())));
        }
        let files = match repo.select_manifests(&opts.filter) {
            Err(Error::Repo(RepoError::NothingSelected)) if !dir_roots.is_empty() => Vec::new(),
            r => r?,
        };
        for path in files {
            if repo.unit_of(&units, &path).is_some() {
                continue;
            }
            let r = worktree_manifest(repo, &path, false).map(|wt| vec![wt]);
            index.insert(path.clone(), roots.len());
            roots.push((path, r));
        }
    }
    let reach = match &opts.scope {
        PushScope::Current => return Ok(roots),
        PushScope::History => Reach::BranchesAndTags,
        PushScope::GitPush { updates, remote } => Reach::Pushing {
            updates: updates.clone(),
            remote: remote.clone(),
        },
    };
    let Some(tree) = repo.git_tree().ok() else {
        return Ok(roots);
    };
    let mut seen: HashSet<ObjectId> = HashSet::new();
    for g in tree.manifests(&reach)? {
        let Some(path) = g.path.data_path_of_manifest() else {
            continue;
        };
        if g.bytes.is_empty() || !opts.filter.matches(&path) {
            continue;
        }
        let version = ObjectId::of(&g.bytes);
        if !seen.insert(version) {
            continue;
        }
        if crate::dirunit::is_dir_manifest(&g.bytes) {
            dirs::add_git_root(dir_roots, &mut dir_index, path, version, g.bytes, &g.origin);
            continue;
        }
        let parsed = Manifest::parse(&g.bytes, std::path::Path::new(&g.origin), Some(&path))
            .and_then(|manifest| {
                if !repo.store().has(&version) {
                    let enc = Encoder::new().encode(&g.bytes, DataHint::Unknown);
                    repo.store().put_trusted(&version, &enc)?;
                }
                Ok(WorktreeManifest {
                    manifest,
                    version,
                    bytes: g.bytes,
                })
            });
        let i = *index.entry(path.clone()).or_insert_with(|| {
            roots.push((path.clone(), Ok(Vec::new())));
            roots.len() - 1
        });
        match (&mut roots[i].1, parsed) {
            (Ok(list), Ok(wt)) => {
                if !list.iter().any(|w| w.version == wt.version) {
                    list.push(wt);
                }
            }
            (slot @ Ok(_), Err(e)) => *slot = Err(e),
            (Err(_), _) => {}
        }
    }
    Ok(roots)
}

/// Pushes the selected versions' objects (and with `all_versions` their histories) to `remote`.
/// One round of `missing` questions covers every object; a version whose chunks neither the
/// remote nor the local store has fails (its manifest object is not sent), the others go.
pub async fn push(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &PushOptions<'_>,
) -> Result<TransferReport> {
    let _lock = repo.lock(false)?;
    let local = repo.store();
    // Per file: its plan and its versions (oldest first), each with its chunk ids.
    let mut planned: Vec<(RepoPath, Result<PushPlan>)> = Vec::new();
    let mut dir_roots = Vec::new();
    for (path, roots) in push_roots(repo, opts, &mut dir_roots)? {
        let r = roots.and_then(|roots| plan_push(repo, &roots, opts.all_versions));
        planned.push((path, r));
    }
    for (path, roots) in dir_roots {
        let r = roots.and_then(|roots| dirs::plan_push(repo, &roots, opts.all_versions));
        planned.push((path, r));
    }
    let mut notes = Vec::new();
    let mut state_retries_extra = 0;
    let (state, state_retries) = opts.transfer.retry.run(|| roots::gc_state(remote)).await;
    let (pruned, gc_active) = match state {
        Ok(s) => s,
        Err(e) => {
            notes.push(format!(
                "could not read the remote's records ({e}); retention is not applied to this push"
            ));
            (HashMap::new(), false)
        }
    };
    if !matches!(opts.scope, PushScope::Current) && !opts.all_versions {
        let (gaps, retries) =
            fill_history_gaps(repo, remote, &mut planned, &pruned, &opts.transfer).await?;
        notes.extend((gaps > 0).then(|| {
            format!(
                "also sending {gaps} version(s) committed with nshard between the ones git names, so that the remote's history has no gap"
            )
        }));
        state_retries_extra = retries;
    }
    if !opts.include_pruned && !pruned.is_empty() {
        for (_, r) in planned.iter_mut() {
            if let Ok((plan, versions)) = r {
                let before = versions.len();
                versions.retain(|(v, _)| !pruned.contains_key(v));
                plan.pruned = before - versions.len();
            }
        }
    }
    let mut all: Vec<ObjectId> = Vec::new();
    let mut seen = HashSet::new();
    for (_, r) in &planned {
        if let Ok((_, versions)) = r {
            for (v, chunks) in versions {
                all.extend(
                    chunks
                        .iter()
                        .chain([v])
                        .copied()
                        .filter(|id| seen.insert(*id)),
                );
            }
        }
    }
    let mut stats = TransferStats {
        retries: state_retries + state_retries_extra,
        ..TransferStats::default()
    };
    let missing = engine::remote_missing(
        remote,
        &all,
        &opts.transfer.retry,
        &mut stats,
        opts.transfer.progress,
    )
    .await?;
    // Chunks neither here nor whole on the remote may be there as deltas (older versions after
    // a gc there, in a clone that pulled only some of them): the push relies on their chains as
    // it does on the whole objects it finds, and sends what it has.
    let absent_here: Vec<ObjectId> = all
        .iter()
        .filter(|id| missing.contains(id) && !local.has(id))
        .copied()
        .collect();
    let via_deltas: HashSet<ObjectId> = if remote.stores_deltas() && !absent_here.is_empty() {
        deltas::resolving(remote, absent_here, &opts.transfer, &mut stats).await?
    } else {
        HashSet::new()
    };
    let mut data: Vec<ObjectId> = Vec::new();
    let mut manifests: Vec<ObjectId> = Vec::new();
    let mut files = Vec::new();
    for (path, r) in planned {
        let result = r.and_then(|(plan, versions)| {
            let mut lacking: Vec<ObjectId> = Vec::new();
            for (v, chunks) in &versions {
                let absent: Vec<ObjectId> = chunks
                    .iter()
                    .filter(|id| missing.contains(id) && !local.has(id) && !via_deltas.contains(id))
                    .copied()
                    .collect();
                if absent.is_empty() {
                    data.extend(chunks.iter().copied());
                    manifests.push(*v);
                } else {
                    lacking.extend(absent);
                }
            }
            if lacking.is_empty() {
                Ok(plan)
            } else {
                Err(Error::Remote(RemoteError::Lacks {
                    remote: remote.display_url(),
                    subject: format!(
                        "{path} (the local store lacks them too: pull them first from where they were pushed, or commit the file again)"
                    ),
                    missing: dedup(lacking),
                }))
            }
        });
        files.push(FileTransfer { path, result });
    }
    let relied_on: Vec<ObjectId> = data
        .iter()
        .chain(&manifests)
        .filter(|id| !missing.contains(id))
        .copied()
        .collect();
    // Chunks stored locally as deltas go as deltas where the remote keeps them (see `deltas`).
    let mut delta_plan = if remote.takes_deltas() && remote.stores_float_objects() {
        deltas::plan_push(
            local,
            remote,
            &dedup(data.clone()),
            &missing,
            &opts.transfer,
            &mut stats,
        )
        .await?
    } else {
        deltas::PushDeltas::default()
    };
    // What only the remote's chains hold is never sent (this clone has no copy to send), and is
    // checked again at the end like the other chains relied on.
    for id in &via_deltas {
        delta_plan.instead.insert(*id);
        if !delta_plan.relied.contains(id) {
            delta_plan.relied.push(*id);
        }
    }
    data.retain(|id| !delta_plan.instead.contains(id));
    // Chunks whole, then deltas (their bases are among those chunks or on the remote), then the
    // manifests that name them.
    let groups = [data, manifests];
    let mut stats =
        engine::push_groups(local, remote, &groups[..1], &missing, stats, &opts.transfer).await?;
    deltas::push(local, remote, &delta_plan, &mut stats, &opts.transfer).await?;
    let mut stats =
        engine::push_groups(local, remote, &groups[1..], &missing, stats, &opts.transfer).await?;
    let mut records = 0;
    if !opts.transfer.dry_run {
        crate::crash_point!("push-before-record");
        match record_push(repo, remote, opts).await {
            Ok(n) => records = n,
            Err(e) => notes.push(format!(
                "the data went, but the remote did not take the push's root record ({e}): \
                 `nshard remote gc` counts these versions as unrecorded and leaves them alone"
            )),
        }
        if gc_active && !relied_on.is_empty() {
            // gc runs on this remote: an object this push found there (and did not send) may have
            // been deleted by a run that listed the records before this push's record landed.
            // Send whatever vanished.
            let vanished = engine::remote_missing(
                remote,
                &relied_on,
                &opts.transfer.retry,
                &mut stats,
                opts.transfer.progress,
            )
            .await?;
            if !vanished.is_empty() {
                let again: Vec<Vec<ObjectId>> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .filter(|id| vanished.contains(id))
                            .copied()
                            .collect()
                    })
                    .collect();
                stats =
                    engine::push_groups(local, remote, &again, &vanished, stats, &opts.transfer)
                        .await?;
            }
        }
        if gc_active && (!delta_plan.relied.is_empty() || !delta_plan.held.is_empty()) {
            // The same for the chunks the push stands on as deltas the remote held: any whose
            // chain no longer resolves (through objects outside the push) or whose delta is gone
            // (with its base in the push, checked above or sent) goes whole.
            let mut gone: HashSet<ObjectId> = HashSet::new();
            if !delta_plan.relied.is_empty() {
                let still = deltas::resolving(
                    remote,
                    delta_plan.relied.clone(),
                    &opts.transfer,
                    &mut stats,
                )
                .await?;
                gone.extend(delta_plan.relied.iter().filter(|id| !still.contains(id)));
            }
            if !delta_plan.held.is_empty() {
                let ids = dedup(delta_plan.held.iter().map(|d| d.id).collect());
                let now: HashSet<crate::remote::DeltaName> =
                    deltas::remote_deltas(remote, &ids, &opts.transfer.retry, &mut stats)
                        .await?
                        .into_iter()
                        .collect();
                gone.extend(
                    delta_plan
                        .held
                        .iter()
                        .filter(|d| !now.contains(d))
                        .map(|d| d.id),
                );
            }
            let (here, mut lost): (Vec<ObjectId>, Vec<ObjectId>) =
                gone.iter().partition(|id| local.has(id));
            if !here.is_empty() {
                let again = vec![here];
                stats = engine::push_groups(local, remote, &again, &gone, stats, &opts.transfer)
                    .await?;
            }
            if !lost.is_empty() {
                lost.sort();
                return Err(Error::Remote(RemoteError::Lacks {
                    remote: remote.display_url(),
                    subject: "this push (a `nshard remote gc` deleted them while it ran, and this clone has no copy to send: push again from a clone that holds them)".into(),
                    missing: lost,
                }));
            }
        }
    }
    Ok(TransferReport {
        files,
        stats,
        records,
        notes,
    })
}

/// Writes the root records of a push: one per ref a `git push` updates; for a plain push, one
/// for this clone's work tree (`clone/<id>`, or `worktree` outside git). Refs are recorded only
/// by `git push`, so a clone's stale branch never stands for the git remote's.
async fn record_push(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &PushOptions<'_>,
) -> Result<usize> {
    let tree = repo.git_tree().ok();
    let (repository, refs) = match (&opts.scope, tree) {
        (PushScope::Current, _) => return Ok(0),
        (
            PushScope::GitPush {
                updates,
                remote: git_remote,
            },
            Some(t),
        ) => (
            roots::repository_of(repo, Some(git_remote)),
            roots::records_for_updates(&t, updates)?,
        ),
        (_, Some(t)) => {
            let versions = worktree_versions(repo)?;
            let r = roots::RefRoots {
                refname: format!("clone/{}", t.clone_id()?),
                commit: None,
                tips: versions.clone(),
                versions,
                provisional: false,
            };
            (roots::repository_of(repo, None), vec![r])
        }
        (_, None) => {
            let versions = worktree_versions(repo)?;
            let r = roots::RefRoots {
                refname: roots::WORKTREE_REF.into(),
                commit: None,
                tips: versions.clone(),
                versions,
                provisional: false,
            };
            (roots::repository_of(repo, None), vec![r])
        }
    };
    roots::write_records(remote, &repository, refs, &opts.transfer.retry).await
}

/// The versions every manifest in the work tree names (files and units).
fn worktree_versions(repo: &Repo) -> Result<Vec<ObjectId>> {
    let mut out = Vec::new();
    for path in repo.scan_worktree()?.1 {
        if let Ok(Some(wt)) = repo.read_worktree_manifest(&path) {
            out.push(wt.version);
        }
    }
    for u in repo.dir_units()? {
        if let Ok(Some(d)) = repo.read_dir_manifest(&u) {
            out.push(d.version);
        }
    }
    Ok(out)
}

/// A file's push plan and its versions to send (oldest first), each with its distinct chunks.
type PushPlan = (FilePlan, Vec<(ObjectId, Vec<ObjectId>)>);

/// For one file: the plan and, per version (its roots and, with `all_versions`, their ancestors
/// that the local store holds), the chunk ids.
fn plan_push(repo: &Repo, roots: &[WorktreeManifest], all_versions: bool) -> Result<PushPlan> {
    let mut versions: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
    let mut chunks: HashSet<ObjectId> = HashSet::new();
    let mut listed: HashSet<ObjectId> = HashSet::new();
    let mut stops = None;
    let ids_of = |m: &Manifest| dedup(m.chunks.iter().map(|c| c.id).collect());
    for wt in roots {
        let mut chain: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
        if listed.insert(wt.version) {
            chain.push((wt.version, ids_of(&wt.manifest)));
        }
        let mut next = wt.manifest.version.parent.filter(|_| all_versions);
        while let Some(v) = next {
            if !listed.insert(v) || listed.len() > 1_000_000 {
                break;
            }
            let m = match repo.load_version(&v) {
                Ok(m) => m,
                Err(Error::Store(StoreError::ObjectMissing(_))) => {
                    stops.get_or_insert(v);
                    break;
                }
                Err(e) => return Err(e),
            };
            if !repo.has_all_chunks(&m) {
                stops.get_or_insert(v);
                break;
            }
            chain.push((v, ids_of(&m)));
            next = m.version.parent;
        }
        // Oldest first, so that a remote never holds a manifest whose parent could have been
        // sent but was not.
        chain.reverse();
        versions.extend(chain);
    }
    for (_, c) in &versions {
        chunks.extend(c.iter().copied());
    }
    let first = roots
        .first()
        .ok_or(Error::Repo(RepoError::NothingSelected))?;
    let plan = FilePlan {
        version: first.version,
        versions: versions.len(),
        chunks: chunks.len(),
        history_stops_at: stops,
        pruned: 0,
    };
    Ok((plan, versions))
}

/// The most versions of one file a push walks back through to close a gap in the history.
const MAX_GAP: usize = 10_000;

/// Version `v` of a file or a directory unit as this store holds it: its parent and the objects
/// it needs besides its manifest object (a file's chunks; a unit's listing, packs and chunks).
/// `None` when the store lacks its manifest or any of those objects.
fn version_here(repo: &Repo, v: &ObjectId) -> Option<(Option<ObjectId>, Vec<ObjectId>)> {
    if let Ok(m) = repo.load_version(v) {
        return repo.has_all_chunks(&m).then(|| {
            (
                m.version.parent,
                dedup(m.chunks.iter().map(|c| c.id).collect()),
            )
        });
    }
    let m = repo.load_dir_version(v).ok()?;
    let objects = repo.dir_objects(&m, None).ok()??;
    let store = repo.store();
    objects.iter().all(|(id, _)| store.has(id)).then(|| {
        (
            m.version.parent,
            dedup(objects.into_iter().map(|(id, _)| id).collect()),
        )
    })
}

/// Versions below one a push plans (nearest first) that may fill a gap in the remote's history.
struct GapChain {
    /// The file's index in the plan.
    file: usize,
    /// The index of the version they lead to in the file's list.
    at: usize,
    /// The ancestors, nearest first, with their chunks.
    chain: Vec<(ObjectId, Vec<ObjectId>)>,
    /// Whether the walk ended at another version the push sends.
    anchored: bool,
}

/// Adds to each file's plan the versions between the ones it sends and their nearest ancestor
/// that the plan has or the remote holds: versions committed with nshard but named by no git
/// commit (a `nshard commit` without a `git commit`). Without them the remote's history would
/// stop at the gap, and a clone could not reach the older versions beyond it. The walk stops at a
/// version this store lacks (or lacks chunks of), a pruned one, or after [`MAX_GAP`] versions;
/// versions that lead to no version the remote holds or the push sends are not added.
/// Returns how many versions were added, and the retries of the one batched question.
async fn fill_history_gaps<P>(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    planned: &mut [(RepoPath, Result<PushPlan>)],
    pruned: &HashMap<ObjectId, P>,
    transfer: &TransferOptions<'_>,
) -> Result<(usize, u64)> {
    // Per file: chains of candidate ancestors (nearest first), each below one planned version,
    // and whether the walk ended at another planned version.
    let mut chains: Vec<GapChain> = Vec::new();
    for (i, (_, r)) in planned.iter().enumerate() {
        let Ok((_, versions)) = r else { continue };
        let sent: HashSet<ObjectId> = versions.iter().map(|(v, _)| *v).collect();
        let mut seen = HashSet::new();
        for (k, (v, _)) in versions.iter().enumerate() {
            let Some((parent, _)) = version_here(repo, v) else {
                continue;
            };
            let mut chain = Vec::new();
            let mut next = parent;
            let mut anchored = false;
            while let Some(p) = next {
                if sent.contains(&p) {
                    anchored = true;
                    break;
                }
                if pruned.contains_key(&p) || !seen.insert(p) {
                    break;
                }
                if chain.len() >= MAX_GAP {
                    break;
                }
                let Some((parent, objects)) = version_here(repo, &p) else {
                    break;
                };
                chain.push((p, objects));
                next = parent;
            }
            if !chain.is_empty() {
                chains.push(GapChain {
                    file: i,
                    at: k,
                    chain,
                    anchored,
                });
            }
        }
    }
    if chains.is_empty() {
        return Ok((0, 0));
    }
    let asked: Vec<ObjectId> = chains
        .iter()
        .flat_map(|g| g.chain.iter().map(|(v, _)| *v))
        .collect();
    let mut stats = TransferStats::default();
    let absent = engine::remote_missing(
        remote,
        &asked,
        &transfer.retry,
        &mut stats,
        &crate::progress::NoProgress,
    )
    .await?;
    let mut added = 0;
    // Later insertions first, so that the indices of earlier ones stay valid.
    for g in chains.into_iter().rev() {
        let whole = g.chain.len();
        let gap: Vec<(ObjectId, Vec<ObjectId>)> = g
            .chain
            .into_iter()
            .take_while(|(v, _)| absent.contains(v))
            .collect();
        // A gap lies between two known versions: one the remote holds (where the run of absent
        // ones stops) or one this push sends. History that leads nowhere known stays behind, as
        // without `--all-versions` it always did.
        let closed = gap.len() < whole || g.anchored;
        if gap.is_empty() || !closed {
            continue;
        }
        let (i, k) = (g.file, g.at);
        if let (_, Ok((plan, versions))) = &mut planned[i] {
            added += gap.len();
            // Oldest first, before the version they lead to.
            for g in gap.into_iter() {
                versions.insert(k, g);
            }
            plan.versions = versions.len();
            let chunks: HashSet<&ObjectId> = versions.iter().flat_map(|(_, c)| c).collect();
            plan.chunks = chunks.len();
        }
    }
    Ok((added, stats.retries))
}

fn dedup(mut ids: Vec<ObjectId>) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

/// Pulls what the manifests (or one chosen version, or whole histories) need from `remote`.
pub async fn pull(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &PullOptions<'_>,
) -> Result<TransferReport> {
    let _lock = repo.lock(false)?;
    let local = repo.store();
    let everything = opts.paths.is_empty() && opts.dirs.is_empty();
    let paths = if everything || !opts.paths.is_empty() {
        targets(repo, &opts.paths)?
    } else {
        Vec::new()
    };
    let dir_targets: Vec<(RepoPath, Option<String>)> = if everything && opts.version.is_none() {
        repo.dir_units()?
            .into_iter()
            .filter(|u| repo.read_dir_manifest(u).is_ok_and(|d| d.is_some()))
            .map(|u| (u, None))
            .collect()
    } else {
        opts.dirs.clone()
    };
    if opts.version.is_some() && !dir_targets.is_empty() {
        return Err(Error::Repo(RepoError::VersionLookup {
            prefix: opts.version.clone().unwrap_or_default(),
            problem: LookupProblem::UnitVersion,
        }));
    }
    if opts.version.is_some() && paths.len() != 1 {
        return Err(Error::Repo(RepoError::VersionNeedsOneTarget));
    }
    let mut stats = TransferStats::default();
    let mut notes = Vec::new();
    // Versions retention pruned from the remote: `--all-versions` leaves out those this store
    // lacks data of (their manifests may be here, from git or an earlier pull); other pulls read
    // them only when the remote lacks something (below).
    let whole_histories = opts.all_versions && opts.version.is_none();
    let mut pruned = if whole_histories {
        retention_or_note(remote, &mut notes).await
    } else {
        HashMap::new()
    };
    // Per file: the plan and the chunks it needs (id → size).
    let mut planned: Vec<(RepoPath, Result<PullPlan>)> = Vec::new();
    for path in paths {
        let r = plan_pull(repo, remote, &path, opts, &pruned, &mut stats).await;
        planned.push((path, r));
    }
    let dir_count = dir_targets.len();
    for (unit, sub) in dir_targets {
        let r = dirs::plan_pull(repo, remote, &unit, sub.as_deref(), opts, &mut stats).await;
        let shown = match &sub {
            Some(s) => RepoPath::parse(&format!("{}/{s}", unit.as_str()))?,
            None => unit,
        };
        planned.push((shown, r));
    }
    // What the local store lacks, and of that what the remote lacks.
    let mut wanted: HashMap<ObjectId, u64> = HashMap::new();
    let mut present = HashSet::new();
    for (_, r) in &planned {
        if let Ok((_, chunks)) = r {
            for (id, size) in chunks {
                if local.has(id) {
                    present.insert(*id);
                } else {
                    let e = wanted.entry(*id).or_insert(0);
                    *e = (*e).max(*size);
                }
            }
        }
    }
    // A pull of older versions (which are stored as deltas) also fetches again the chunks here
    // whose chain of deltas cannot be read: their local copy is moved aside just before the
    // fetch (once the remote answered), and put back whatever way the pull ends unless a good
    // copy came.
    let mut broken = Vec::new();
    if opts.all_versions || opts.version.is_some() {
        let sizes: HashMap<ObjectId, u64> = planned
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flat_map(|(_, chunks)| chunks.iter().map(|(id, n)| (*id, *n)))
            .collect();
        let found = broken_chains(local, &present, &wanted, &sizes);
        if !found.is_empty() {
            broken = found.iter().map(|(id, _)| *id).collect();
            notes.push(broken_note(&broken, opts.transfer.dry_run));
        }
        for (id, size) in found {
            present.remove(&id);
            wanted.insert(id, size);
        }
    }
    stats.skipped = present.len();
    stats.skipped_bytes = present.iter().filter_map(|id| local.encoded_size(id)).sum();
    let mut ids: Vec<ObjectId> = wanted.keys().copied().collect();
    ids.sort();
    let absent = engine::remote_missing(
        remote,
        &ids,
        &opts.transfer.retry,
        &mut stats,
        opts.transfer.progress,
    )
    .await?;
    let mut aside = PutBack {
        local,
        moved: Vec::new(),
    };
    if !opts.transfer.dry_run {
        for id in broken {
            // One that cannot be moved stays as it is; the pull goes on without it.
            if let Ok(Some(path)) = local.set_aside(&id) {
                aside.moved.push((id, path));
            }
        }
    }
    let fetched = deltas::fetch(local, remote, wanted, absent, &opts.transfer, &mut stats).await;
    let put_back = aside.finish();
    let (absent, received_ids) = fetched?;
    put_back?;
    // A version the remote lacks may have been pruned by retention: say so rather than call it
    // missing data.
    let any_lacking = planned.iter().any(|(_, r)| {
        r.as_ref()
            .is_ok_and(|(_, c)| c.keys().any(|id| absent.contains(id)))
    });
    if any_lacking && !whole_histories {
        pruned = retention_or_note(remote, &mut notes).await;
    }
    let file_count = planned.len() - dir_count;
    let files: Vec<FileTransfer> = planned
        .into_iter()
        .map(|(path, r)| {
            let result = r.and_then(|(plan, chunks)| {
                let mut lacking: Vec<ObjectId> = chunks
                    .keys()
                    .filter(|id| absent.contains(id))
                    .copied()
                    .collect();
                if lacking.is_empty() {
                    return Ok(plan);
                }
                if let Some(p) = pruned.get(&plan.version) {
                    return Err(Error::Remote(RemoteError::Pruned {
                        remote: remote.display_url(),
                        subject: format!("{path} (version {})", plan.version.short()),
                        pruned: p.pruned,
                    }));
                }
                lacking.sort();
                Err(Error::Remote(RemoteError::Lacks {
                    remote: remote.display_url(),
                    subject: format!("{path} (version {})", plan.version.short()),
                    missing: lacking,
                }))
            });
            FileTransfer { path, result }
        })
        .collect();
    // The versions before those received become deltas of them, as after a commit (files only:
    // directory units keep their own encoding).
    if !opts.transfer.dry_run {
        for f in &files[..file_count] {
            if let Ok(plan) = &f.result {
                let received = |id: &ObjectId| received_ids.contains(id);
                // Without `--version` the pulled version is the work tree's.
                let tip = opts
                    .version
                    .as_ref()
                    .and_then(|_| repo.read_worktree_manifest(&f.path).ok().flatten())
                    .map(|w| w.version);
                match repo.queue_pulled_deltas(plan.version, plan.versions, tip, &received) {
                    Ok(n) => stats.deltas_queued += n,
                    Err(e) => notes.push(format!(
                        "{}: older versions stay stored whole (queuing their re-encoding failed: {e})",
                        f.path
                    )),
                }
            }
        }
    }
    Ok(TransferReport {
        files,
        stats,
        records: 0,
        notes,
    })
}

/// Objects moved aside for a pull to fetch again: each one the store still lacks is put back
/// when the pull ends, by [`PutBack::finish`] or, on an early return or a panic, on drop. (A
/// process killed meanwhile leaves them in `.shard/corrupt/`: they were unreadable here.)
struct PutBack<'a> {
    local: &'a crate::store::LocalStore,
    moved: Vec<(ObjectId, std::path::PathBuf)>,
}

impl PutBack<'_> {
    /// Puts back every object the store lacks; the first error, after trying them all.
    fn finish(mut self) -> Result<()> {
        self.put_all()
    }

    fn put_all(&mut self) -> Result<()> {
        let mut first = None;
        for (id, path) in std::mem::take(&mut self.moved) {
            if let Err(e) = self.local.put_back(&id, &path) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        let _ = self.put_all();
    }
}

/// For the chunks `present` here, the objects stored as deltas that break their chains, with
/// their raw size bound (a delta and its base have the size of the chunk built on them): the
/// one whose base is missing (and not among the `wanted` objects this pull fetches; a chunk of
/// another version may be one), or a chunk whose chain runs in a cycle or past the bound. A base
/// id damaged on disk leaves such a delta for good: no version names that base, so no pull would
/// fetch it. Objects in a format this binary does not know, or unreadable ones, are left to the
/// checks that read them. Each object's header is read once: chunks share chains.
fn broken_chains(
    local: &crate::store::LocalStore,
    present: &HashSet<ObjectId>,
    wanted: &HashMap<ObjectId, u64>,
    sizes: &HashMap<ObjectId, u64>,
) -> Vec<(ObjectId, u64)> {
    // Object → the object its chain breaks at (`None`: it reads, or is left alone).
    let mut verdict: HashMap<ObjectId, Option<ObjectId>> = HashMap::new();
    let mut out = Vec::new();
    for id in present {
        let mut walked: Vec<ObjectId> = Vec::new();
        let mut cur = *id;
        let found = loop {
            if let Some(v) = verdict.get(&cur) {
                break *v;
            }
            if walked.contains(&cur) || walked.len() > crate::codec::MAX_CHAIN {
                // A cycle or an overlong chain: each chunk on it is fetched again (no verdict
                // is shared, so that every one of them is).
                walked.clear();
                break Some(*id);
            }
            match local.delta_base(&cur) {
                Ok(Some((base, _))) => {
                    walked.push(cur);
                    if !local.has(&base) && !wanted.contains_key(&base) {
                        break Some(cur);
                    }
                    if !local.has(&base) {
                        break None;
                    }
                    cur = base;
                }
                Ok(None) | Err(_) => break None,
            }
        };
        for w in walked {
            verdict.insert(w, found);
        }
        let size = |at: &ObjectId| sizes.get(at).or(sizes.get(id)).copied().unwrap_or(0);
        out.extend(found.map(|at| (at, size(&at))));
    }
    out.sort();
    out.dedup_by_key(|(at, _)| *at);
    out
}

/// The note for chunks fetched again because their chain of deltas cannot be read here.
fn broken_note(broken: &[ObjectId], dry_run: bool) -> String {
    let more = match broken.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    let (verb, kept) = match dry_run {
        true => ("would be fetched", ""),
        false => (
            "fetched",
            "; the local copies are kept in .shard/corrupt/, or put back where the remote lacks the object",
        ),
    };
    format!(
        "{} chunk(s) stored here as deltas whose chain cannot be read (a base missing, or a chain that runs in a cycle: {}{more}) {verb} again from the remote{kept}",
        broken.len(),
        broken[0].short()
    )
}

/// The versions the remote's retention pruned; when its record cannot be read, none, with a note
/// saying so.
async fn retention_or_note(
    remote: &Arc<dyn Store>,
    notes: &mut Vec<String>,
) -> HashMap<ObjectId, PrunedVersion> {
    pruned_versions(remote).await.unwrap_or_else(|e| {
        notes.push(format!("could not read the remote's retention policy: {e}"));
        HashMap::new()
    })
}

/// A file's pull plan and the chunks it needs (id → size).
type PullPlan = (FilePlan, HashMap<ObjectId, u64>);

/// Why `pull --version PREFIX` of `path` found nothing before the history walk stopped at `stop`:
/// the version was pruned from the remote by retention (the retention record names it, or the
/// version where the history stops), else the history as far as the remote has it.
async fn beyond_history(
    remote: &Arc<dyn Store>,
    path: &RepoPath,
    prefix: &str,
    stop: ObjectId,
) -> Error {
    if let Ok(pruned) = pruned_versions(remote).await {
        let p = prefix.to_ascii_lowercase();
        let named = pruned.iter().find(|(v, _)| v.to_hex().starts_with(&p));
        let (what, when) = match (named, pruned.get(&stop)) {
            (Some((v, pv)), _) => (format!("version {}", v.short()), pv.pruned),
            (None, Some(pv)) => (
                format!("its history from version {} back", stop.short()),
                pv.pruned,
            ),
            (None, None) => (String::new(), 0),
        };
        if !what.is_empty() {
            return Error::Remote(RemoteError::Pruned {
                remote: remote.display_url(),
                subject: format!("{path} ({what})"),
                pruned: when,
            });
        }
    }
    Error::Repo(RepoError::VersionLookup {
        prefix: prefix.to_string(),
        problem: LookupProblem::BeyondRemoteHistory {
            subject: path.to_string(),
            at: stop,
        },
    })
}

/// For one file: which versions to pull (fetching manifest objects from the remote as the history
/// walk needs them) and the chunks they use.
async fn plan_pull(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    path: &RepoPath,
    opts: &PullOptions<'_>,
    pruned: &HashMap<ObjectId, PrunedVersion>,
    stats: &mut TransferStats,
) -> Result<PullPlan> {
    let wt = worktree_manifest(repo, path, opts.transfer.dry_run)?;
    let walk = opts.all_versions || opts.version.is_some();
    // (version, manifest) of the chain, newest first, as far as the local store or the remote have it.
    let mut chain = vec![(wt.version, wt.manifest.clone())];
    let mut stops = None;
    let mut next = wt.manifest.version.parent;
    while let Some(v) = next.filter(|_| walk) {
        if chain.len() > 1_000_000 || chain.iter().any(|(c, _)| *c == v) {
            break;
        }
        let m = match repo.load_version(&v) {
            Ok(m) => m,
            Err(Error::Store(StoreError::ObjectMissing(_))) => {
                let fetched = engine::fetch_one(
                    repo.store(),
                    remote,
                    v,
                    MAX_MANIFEST_BYTES,
                    &opts.transfer,
                    stats,
                )
                .await?;
                match fetched {
                    Some(_) => repo.load_version(&v)?,
                    None => {
                        stops = Some(v);
                        break;
                    }
                }
            }
            Err(e) => return Err(e),
        };
        next = m.version.parent;
        chain.push((v, m));
    }
    let planned: HashSet<ObjectId> = chain.iter().map(|(v, _)| *v).collect();
    let selected: Vec<(ObjectId, Manifest)> = match &opts.version {
        Some(prefix) => {
            let found = repo
                .find_version(&wt, prefix)
                .map(|v| chain.iter().position(|(c, _)| *c == v));
            let no_match = |e: &Error| {
                matches!(
                    e,
                    Error::Repo(RepoError::VersionLookup {
                        problem: LookupProblem::NoMatch { .. },
                        ..
                    })
                )
            };
            let at = match (found, stops) {
                (Ok(Some(at)), _) => at,
                (Err(e), _) if !no_match(&e) => return Err(e),
                // The walk stopped short of it: a version the remote no longer has (pruned by
                // retention, most likely) or never had.
                (_, Some(stop)) => {
                    return Err(beyond_history(remote, path, prefix, stop).await);
                }
                (Err(e), None) => return Err(e),
                (Ok(None), None) => {
                    return Err(Error::Repo(RepoError::VersionLookup {
                        prefix: prefix.clone(),
                        problem: LookupProblem::TooDeep(path.to_string()),
                    }))
                }
            };
            let (v, m) = chain.swap_remove(at);
            if m.path != *path {
                return Err(Error::Manifest(ManifestError::InvalidManifest {
                    path: format!("object {v}").into(),
                    reason: format!("describes {:?}, not {:?}", m.path.as_str(), path.as_str()),
                }));
            }
            vec![(v, m)]
        }
        None if opts.all_versions => chain,
        None => chain.into_iter().take(1).collect(),
    };
    // Older versions retention pruned from the remote are left out unless this store holds
    // their data already (the work tree's version is always planned: a pull of it says when
    // it was pruned).
    let before = selected.len();
    let local = repo.store();
    let selected: Vec<(ObjectId, Manifest)> = selected
        .into_iter()
        .enumerate()
        .filter(|(k, (v, m))| {
            *k == 0 || !pruned.contains_key(v) || m.chunks.iter().all(|c| local.has(&c.id))
        })
        .map(|(_, vm)| vm)
        .collect();
    let mut left_out = before - selected.len();
    // A walk that stopped at a version retention pruned (its manifest went with it) did not
    // stop at a gap: the versions pruned from this file's history are left out, as retention
    // meant.
    let mut stops = if opts.version.is_some() { None } else { stops };
    if let Some(stop) = stops.filter(|s| pruned.contains_key(s)) {
        left_out += pruned
            .values()
            .filter(|p| p.path == path.as_str() && !planned.contains(&p.version))
            .count()
            .max(usize::from(!planned.contains(&stop)));
        stops = None;
    }
    let mut chunks = HashMap::new();
    for (_, m) in &selected {
        chunk_sizes(m, &mut chunks);
    }
    Ok((
        FilePlan {
            version: selected[0].0,
            versions: selected.len(),
            chunks: chunks.len(),
            history_stops_at: stops,
            pruned: left_out,
        },
        chunks,
    ))
}
