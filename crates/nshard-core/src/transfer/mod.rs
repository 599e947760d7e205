//! Push and pull: move the objects a repository's manifests need between the local store and a
//! remote [`Store`].
//!
//! Only what the other side lacks travels: push asks the remote which ids it is missing (in
//! batches of [`MISSING_BATCH`](crate::remote::MISSING_BATCH)), pull checks the local store. A few
//! objects move at once, transient failures are retried with backoff, and every object is verified
//! by whoever receives it before it becomes visible. Push uploads chunks before the manifest
//! objects that name them, so a manifest on a remote always has its chunks. An interrupted
//! transfer is resumed by running it again: what arrived is skipped, nothing half-written exists.

mod check;
mod engine;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use check::check_remote;
pub use engine::Retry;

use crate::codec::{DataHint, Encoder};
use crate::error::{Error, Result};
use crate::fsutil::RepoPath;
use crate::id::ObjectId;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::progress::Progress;
use crate::remote::Store;
use crate::repo::{Repo, WorktreeManifest};

/// How a transfer runs.
pub struct TransferOptions<'a> {
    /// Objects moved at once.
    pub jobs: usize,
    /// Retries of transient failures.
    pub retry: Retry,
    /// Progress sink (bytes).
    pub progress: &'a dyn Progress,
}

/// Default number of objects moved at once.
pub const DEFAULT_JOBS: u16 = 8;

/// What moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferStats {
    /// Objects sent (push) or received (pull).
    pub objects: usize,
    /// Their encoded bytes: what actually travelled.
    pub bytes: u64,
    /// Objects not sent because the destination already had them.
    pub skipped: usize,
    /// Encoded bytes of the skipped objects (as stored locally; 0 for what pull skips but does not
    /// have locally yet, which cannot happen).
    pub skipped_bytes: u64,
    /// Requests that failed transiently and were retried.
    pub retries: u64,
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
}

/// The result for one file.
#[derive(Debug)]
pub struct FileTransfer {
    /// The data file.
    pub path: RepoPath,
    /// What was planned for it, or why it was left out (other files still transfer).
    pub result: Result<FilePlan>,
}

/// Options of a push.
pub struct PushOptions<'a> {
    /// Data files (empty: every manifest in the work tree).
    pub paths: Vec<RepoPath>,
    /// Also push every earlier version reachable through the manifests' parents.
    pub all_versions: bool,
    /// How to move objects.
    pub transfer: TransferOptions<'a>,
}

/// Options of a pull.
pub struct PullOptions<'a> {
    /// Data files (empty: every manifest in the work tree).
    pub paths: Vec<RepoPath>,
    /// Pull this version (id or unique prefix) instead of the work-tree manifest's. Needs one path.
    pub version: Option<String>,
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

/// The work-tree manifest of `path`, with its object stored locally (a clone has the manifest from
/// git but not necessarily the object).
fn worktree_manifest(repo: &Repo, path: &RepoPath) -> Result<WorktreeManifest> {
    let wt = repo
        .read_worktree_manifest(path)?
        .ok_or(Error::NotTracked {
            path: path.manifest_path().as_str().into(),
            reason: "does not exist (commit the file, or get its manifest with git)",
        })?;
    if !repo.store().has(&wt.version) {
        let enc = Encoder::new().encode(&wt.bytes, DataHint::Unknown);
        repo.store().put_trusted(&wt.version, &enc)?;
    }
    Ok(wt)
}

/// Pushes the manifests' objects (and with `all_versions` their histories) to `remote`.
pub async fn push(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &PushOptions<'_>,
) -> Result<TransferReport> {
    let _lock = repo.lock(false)?;
    let local = repo.store();
    let mut files = Vec::new();
    let mut data: Vec<ObjectId> = Vec::new();
    let mut manifests: Vec<ObjectId> = Vec::new();
    let mut seen = HashSet::new();
    for path in targets(repo, &opts.paths)? {
        let result = plan_push(repo, &path, opts.all_versions).map(|(plan, chunks, versions)| {
            data.extend(chunks.into_iter().filter(|id| seen.insert(*id)));
            manifests.extend(versions);
            plan
        });
        files.push(FileTransfer { path, result });
    }
    let stats = engine::push_groups(local, remote, &[data, manifests], &opts.transfer).await?;
    Ok(TransferReport { files, stats })
}

/// For one file: its plan, the chunk ids and the manifest ids to push.
fn plan_push(
    repo: &Repo,
    path: &RepoPath,
    all_versions: bool,
) -> Result<(FilePlan, Vec<ObjectId>, Vec<ObjectId>)> {
    let local = repo.store();
    let wt = worktree_manifest(repo, path)?;
    let lacking: Vec<ObjectId> = wt
        .manifest
        .chunks
        .iter()
        .map(|c| c.id)
        .filter(|id| !local.has(id))
        .collect();
    if !lacking.is_empty() {
        return Err(Error::RemoteLacks {
            remote: "the local store".into(),
            subject: format!("{path} (pull them first, or commit the file again)"),
            missing: dedup(lacking),
        });
    }
    let mut chunks = HashMap::new();
    chunk_sizes(&wt.manifest, &mut chunks);
    let mut versions = vec![wt.version];
    let mut stops = None;
    let mut next = wt.manifest.version.parent;
    while let Some(v) = next {
        if !all_versions {
            break;
        }
        if versions.contains(&v) || versions.len() > 1_000_000 {
            break;
        }
        let m = match repo.load_version(&v) {
            Ok(m) => m,
            Err(Error::ObjectMissing(_)) => {
                stops = Some(v);
                break;
            }
            Err(e) => return Err(e),
        };
        if m.chunks.iter().any(|c| !local.has(&c.id)) {
            stops = Some(v);
            break;
        }
        chunk_sizes(&m, &mut chunks);
        versions.push(v);
        next = m.version.parent;
    }
    // Oldest first, so that a remote never holds a manifest whose parent could have been sent but
    // was not.
    versions.reverse();
    let mut ids: Vec<ObjectId> = chunks.into_keys().collect();
    ids.sort();
    let plan = FilePlan {
        version: wt.version,
        versions: versions.len(),
        chunks: ids.len(),
        history_stops_at: stops,
    };
    Ok((plan, ids, versions))
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
    let paths = targets(repo, &opts.paths)?;
    if opts.version.is_some() && paths.len() != 1 {
        return Err(Error::VersionLookup {
            prefix: opts.version.clone().unwrap_or_default(),
            problem: "needs exactly one file (version ids belong to one file's history)".into(),
        });
    }
    let mut stats = TransferStats::default();
    // Per file: the plan and the chunks it needs (id → size).
    let mut planned: Vec<(RepoPath, Result<PullPlan>)> = Vec::new();
    for path in paths {
        let r = plan_pull(repo, remote, &path, opts, &mut stats).await;
        planned.push((path, r));
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
    stats.skipped = present.len();
    stats.skipped_bytes = present.iter().filter_map(|id| local.encoded_size(id)).sum();
    let mut ids: Vec<ObjectId> = wanted.keys().copied().collect();
    ids.sort();
    let absent = engine::remote_missing(remote, &ids, &opts.transfer.retry, &mut stats).await?;
    wanted.retain(|id, _| !absent.contains(id));
    engine::pull_objects(local, remote, &wanted, &opts.transfer, &mut stats).await?;
    let files = planned
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
                lacking.sort();
                Err(Error::RemoteLacks {
                    remote: remote.display_url(),
                    subject: format!("{path} (version {})", plan.version.short()),
                    missing: lacking,
                })
            });
            FileTransfer { path, result }
        })
        .collect();
    Ok(TransferReport { files, stats })
}

/// A file's pull plan and the chunks it needs (id → size).
type PullPlan = (FilePlan, HashMap<ObjectId, u64>);

/// For one file: which versions to pull (fetching manifest objects from the remote as the history
/// walk needs them) and the chunks they use.
async fn plan_pull(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    path: &RepoPath,
    opts: &PullOptions<'_>,
    stats: &mut TransferStats,
) -> Result<PullPlan> {
    let wt = worktree_manifest(repo, path)?;
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
            Err(Error::ObjectMissing(_)) => {
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
    let selected: Vec<(ObjectId, Manifest)> =
        match &opts.version {
            Some(prefix) => {
                let v = repo.find_version(&wt, prefix)?;
                let (_, m) = chain.into_iter().find(|(c, _)| *c == v).ok_or_else(|| {
                    Error::VersionLookup {
                        prefix: prefix.clone(),
                        problem: format!("is too deep in the history of {path} to pull"),
                    }
                })?;
                if m.path != *path {
                    return Err(Error::InvalidManifest {
                        path: format!("object {v}").into(),
                        reason: format!("describes {:?}, not {:?}", m.path.as_str(), path.as_str()),
                    });
                }
                vec![(v, m)]
            }
            None if opts.all_versions => chain,
            None => chain.into_iter().take(1).collect(),
        };
    let mut chunks = HashMap::new();
    for (_, m) in &selected {
        chunk_sizes(m, &mut chunks);
    }
    Ok((
        FilePlan {
            version: selected[0].0,
            versions: selected.len(),
            chunks: chunks.len(),
            history_stops_at: if opts.version.is_some() { None } else { stops },
        },
        chunks,
    ))
}
