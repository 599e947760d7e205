//! `nshard remote gc`: delete from a remote what no live version needs.
//!
//! What is live is decided by the remote's root records ([`crate::remote::records`]), never by
//! one clone: the versions the current records name, with their parent chains, minus what a
//! retention policy prunes. Objects that only superseded records (a rewound or deleted ref) or
//! pruned versions needed are garbage; objects no record ever covered are "unrecorded" and only
//! deleted when asked.
//!
//! Deleting is two-phase, so that a concurrent push that relied on an object being present (it
//! skipped the upload) is never betrayed: a run marks garbage (the marks live on the remote), and
//! only a later run deletes what is still garbage, was marked at least the grace period ago and
//! was stored at least that long ago. Every listing and read happens before anything is deleted;
//! any error aborts the run with nothing deleted. Deletion goes version by version: a version's
//! manifest object first, then the objects only it used, so a crash never leaves a version that
//! looks present but is half gone; a rerun finishes the job. One run at a time changes a remote:
//! every run but a dry run holds the remote's gc lock ([`super::gc_lock`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::gc_lock::{is_mark, GcLock};
use super::{deltas, dirs, roots, TransferOptions, TransferStats};
use crate::dirunit::{DirManifest, MAX_DIR_MANIFEST};
use crate::error::{Error, GitError, RemoteError, RemoteFailure, Result, StoreError};
use crate::id::ObjectId;
use crate::manifest::{is_dir_manifest, Manifest, MAX_MANIFEST_BYTES};
use crate::remote::records::{
    now_secs, repository_id, supersede, LfsRecord, Mark, Marks, PrunedVersion, RecordName,
    RetentionRecord, RootRecord, GC_SPACE, MARKS_PER_RECORD, RETENTION_FORMAT, RETENTION_SPACE,
    SINGLE_KEY,
};
use crate::remote::{DeltaName, Store, StoredDelta, StoredObject, DELETE_BATCH};
use crate::repo::Repo;

/// What a run does to the retention policy recorded on the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionChange {
    /// Apply the recorded policy (none: keep every version).
    Keep,
    /// Keep only the newest N versions of each file (besides tips), and record that.
    KeepLast(u32),
    /// Remove the policy: keep every version again.
    KeepAll,
}

/// Options of [`remote_gc`].
pub struct RemoteGcOptions<'a> {
    /// Work everything out and change nothing on the remote.
    pub dry_run: bool,
    /// Seconds an object must have been stored, and marked as garbage, before it is deleted.
    pub grace: u64,
    /// Retention.
    pub retention: RetentionChange,
    /// Also delete objects no record covers (pushed by an nshard without records).
    pub include_unrecorded: bool,
    /// First bring this repository's records up to date with its git remote's refs.
    pub refresh: bool,
    /// Repositories (identities as records name them, or their 16-hex-digit record spaces)
    /// whose refs stop counting: a deleted fork's, a retired project's.
    pub forget: Vec<String>,
    /// Remove the gc lock of every other run first, whoever holds it (for a run known to have
    /// died on another machine).
    pub break_lock: bool,
    /// How to fetch manifests (retries, progress).
    pub transfer: TransferOptions<'a>,
}

/// Why an object is not live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GcWhy {
    /// Only versions that no current record keeps (a rewound or deleted ref) used it.
    Dropped {
        /// The file or unit.
        path: String,
        /// One version that used it.
        version: ObjectId,
    },
    /// Only versions pruned by retention used it.
    Pruned {
        /// The file or unit.
        path: String,
        /// One version that used it.
        version: ObjectId,
    },
    /// An earlier run found it unused (and a crash or a grace period kept it), and no live
    /// version needs it now.
    Marked,
    /// No record ever named a version that uses it.
    Unrecorded,
}

/// What happens to a garbage object in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum GcState {
    /// Deleted.
    Deleted,
    /// Would be deleted (dry run).
    WouldDelete,
    /// Marked: deleted by a run after `until` (seconds since the epoch) if still garbage.
    Waiting {
        /// When the grace period is over.
        until: u64,
    },
}

/// One garbage object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcCandidate {
    /// The object.
    pub id: ObjectId,
    /// Its stored size.
    pub size: u64,
    /// Why it is garbage.
    pub why: GcWhy,
    /// What this run does with it.
    #[serde(flatten)]
    pub state: GcState,
}

/// One root record, as a run found it.
#[derive(Clone, Debug, Serialize)]
pub struct RecordSummary {
    /// Its name on the remote.
    pub name: String,
    /// The repository.
    pub repository: String,
    /// The ref (or `clone/<id>`, `worktree`).
    #[serde(rename = "ref")]
    pub refname: String,
    /// The commit it names.
    pub commit: Option<String>,
    /// How many versions it names.
    pub versions: usize,
    /// Whether it counts (not superseded).
    pub current: bool,
}

/// What a run found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteGcReport {
    /// The root records (after a refresh), current ones first.
    pub record_list: Vec<RecordSummary>,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Root records on the remote (after a refresh).
    pub records: usize,
    /// Of those, superseded by newer ones.
    pub superseded_records: usize,
    /// Superseded records deleted (everything only they named is gone).
    pub deleted_records: usize,
    /// Refs whose records were refreshed from the git remote (`ref: what`).
    pub refreshed: Vec<String>,
    /// Refs of the git remote that no record names, at commits this clone lacks: what they need
    /// cannot be known, so retention prunes nothing new in this run (`git fetch --tags`, then run
    /// gc again).
    pub unknown_refs: Vec<String>,
    /// Versions kept.
    pub live_versions: usize,
    /// Objects kept (on the remote).
    pub live_objects: usize,
    /// Their stored bytes.
    pub live_bytes: u64,
    /// Versions named by records that neither the remote nor this clone has (their objects, if
    /// any, count as unrecorded).
    pub absent_versions: usize,
    /// Objects deleted (or that would be, in a dry run).
    pub freed_objects: usize,
    /// Their stored bytes.
    pub freed_bytes: u64,
    /// Garbage objects waiting for their grace period.
    pub waiting_objects: usize,
    /// Their stored bytes.
    pub waiting_bytes: u64,
    /// Objects no record covers, left alone (without `include_unrecorded`).
    pub unrecorded_objects: usize,
    /// Their stored bytes.
    pub unrecorded_bytes: u64,
    /// The retention policy in force after this run.
    pub keep_last: Option<u32>,
    /// Versions pruned by retention in this run.
    pub pruned: Vec<PrunedVersion>,
    /// Versions pruned earlier that are within the newest `keep_last` again (the bound was
    /// raised): no longer pruned, so the next push that has them sends them.
    pub unpruned: Vec<PrunedVersion>,
    /// Garbage objects, with why and what happened to each (the first [`MAX_CANDIDATES`]).
    pub candidates: Vec<GcCandidate>,
    /// Garbage objects left out of `candidates`.
    pub candidates_omitted: usize,
    /// Requests made to the remote for listings and deletes.
    pub requests: u64,
    /// Delta encodings kept (on a remote that keeps them; included in `live_objects`' bytes).
    pub live_deltas: usize,
    /// Whole objects deleted (or that would be) because a kept delta holds the same bytes, and
    /// delta encodings no kept chain uses: the versions stay, stored smaller.
    pub superseded_objects: usize,
    /// Their stored bytes.
    pub superseded_bytes: u64,
    /// Deltas that failed their check before the whole copy they stand for was deleted (the
    /// whole copy stays), with why.
    pub bad_deltas: Vec<String>,
    /// Of those, the ones deleted: they do not decode to their object (damaged, or built on a
    /// damaged base), and the whole copy they were to stand for stays, so nothing reads them.
    pub removed_bad_deltas: usize,
    /// Deltas uploaded from this clone's store (or that would be, in a dry run): of live objects
    /// the remote held only whole, each against another live object it holds. They stand for
    /// those whole copies once stored `grace` ago (in this run with a grace of 0).
    pub uploaded_deltas: usize,
    /// Their stored bytes.
    pub uploaded_delta_bytes: u64,
    /// Objects of the newest versions (named by a ref or a clone's work tree, with no kept
    /// version descending from them) that the remote held only as deltas (an older version committed again after a gc made it deltas), uploaded
    /// whole from this clone's store (or that would be, in a dry run), so that a clone pulling
    /// the newest version reads no chain. Those objects stay whole from then on.
    pub whole_again: usize,
    /// Their stored bytes.
    pub whole_again_bytes: u64,
    /// Such objects this clone's store lacks: they stay deltas on the remote until a run from a
    /// clone that has them.
    pub whole_again_lacking: usize,
    /// Deltas this clone offered that the remote refused or that failed to upload, with why
    /// (the whole copies they were to stand for stay).
    pub refused_deltas: Vec<String>,
    /// gc locks of runs that were gone (or broken with `break_lock`), removed by this run, with
    /// why.
    pub removed_locks: Vec<String>,
    /// Why this run could not remove its own gc lock at the end (`None`: it did, or it took
    /// none). Other runs wait until it stops counting, or use `break_lock`.
    pub lock_left: Option<String>,
}

/// One version as gc sees it.
struct Node {
    path: String,
    timestamp: String,
    parent: Option<ObjectId>,
    /// The objects it needs besides its own manifest object.
    objects: Vec<ObjectId>,
}

/// Versions read so far (`None`: on neither the remote nor here).
type Graph = HashMap<ObjectId, Option<Node>>;

/// Runs gc on `remote` from `repo` (which refreshes its own records and caches the manifests it
/// reads). A run that may change the remote holds its gc lock throughout ([`GcLock`]); a dry run
/// takes none.
pub async fn remote_gc(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &RemoteGcOptions<'_>,
) -> Result<RemoteGcReport> {
    if opts.dry_run {
        return run(repo, remote, opts, None).await;
    }
    let lock = GcLock::acquire(remote, opts.transfer.retry, opts.break_lock).await?;
    crate::crash_point!("remote-gc-locked");
    let result = run(repo, remote, opts, Some(&lock)).await;
    let removed = lock.removed.clone();
    let released = lock.release().await;
    let mut report = result?;
    report.removed_locks = removed;
    // The run itself is done: a lock record it could not remove (the remote failing just now)
    // is said, and stops counting by itself.
    report.lock_left = released.err().map(|e| e.to_string());
    Ok(report)
}

async fn run(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    opts: &RemoteGcOptions<'_>,
    lock: Option<&GcLock>,
) -> Result<RemoteGcReport> {
    let now = now_secs();
    let mut report = RemoteGcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let retry = &opts.transfer.retry;
    let mut stats = TransferStats::default();

    // 1. Records (refreshed first from the git remote when asked).
    let mut names = retried(retry, || remote.list_records()).await?;
    report.requests += 1;
    let mut virtual_records: HashMap<RecordName, RootRecord> = HashMap::new();
    if opts.refresh {
        let fresh = refresh(repo, remote, &names, opts, &mut report).await?;
        for (name, record) in fresh {
            names.push(name.clone());
            virtual_records.insert(name, record);
        }
    }
    if !opts.forget.is_empty() {
        let forgotten = forget(remote, &names, &virtual_records, opts, &mut report).await?;
        for (name, record) in forgotten {
            names.push(name.clone());
            virtual_records.insert(name, record);
        }
    }
    let root_names: Vec<RecordName> = names.iter().filter(|n| n.is_root()).cloned().collect();
    let (current, superseded) = supersede(&root_names);
    report.records = root_names.len();
    report.superseded_records = superseded.len();
    let mut records: HashMap<RecordName, RootRecord> = HashMap::new();
    for name in current.iter().chain(&superseded) {
        let r = match virtual_records.remove(name) {
            Some(r) => r,
            None => read_root(remote, name, retry).await?,
        };
        report.record_list.push(RecordSummary {
            name: name.to_string(),
            repository: r.repository.clone(),
            refname: r.refname.clone(),
            commit: r.commit.clone(),
            versions: r.versions.len(),
            current: current.binary_search(name).is_ok(),
        });
        records.insert(name.clone(), r);
    }
    let newest_in = |space: &str| {
        names
            .iter()
            .filter(|n| n.space() == space)
            .max_by_key(|n| n.nanos())
            .cloned()
    };
    let old_retention = match newest_in(RETENTION_SPACE) {
        Some(n) => match retried(retry, || remote.get_record(&n)).await? {
            Some(b) => Some(RetentionRecord::parse(&b, &n)?),
            None => return Err(changed_under_us(remote)),
        },
        None => None,
    };
    let marks = read_marks(remote, &names, retry).await?;

    // 2. What is live: the current records' versions and their parents.
    let mut graph: Graph = HashMap::new();
    let mut live_roots: Vec<ObjectId> = Vec::new();
    let mut tips: HashSet<ObjectId> = HashSet::new();
    for n in &current {
        let r = &records[n];
        live_roots.extend(r.versions.iter().chain(&r.tips).copied());
        tips.extend(r.tips.iter().copied());
    }
    // Every git-lfs object stored by `nshard lfs agent` stays.
    let lfs_names: Vec<RecordName> = names.iter().filter(|n| n.is_lfs()).cloned().collect();
    let lfs_roots = lfs_versions(remote, &lfs_names, retry).await?;
    live_roots.extend(lfs_roots.iter().copied());
    report.requests += lfs_names.len() as u64;
    expand(
        repo,
        remote,
        &live_roots,
        &mut graph,
        &opts.transfer,
        &mut stats,
    )
    .await?;
    let live_versions = reach(&graph, &live_roots);

    // 3. Retention.
    let keep_last = match opts.retention {
        RetentionChange::Keep => old_retention.as_ref().and_then(|r| r.keep_last),
        RetentionChange::KeepLast(n) => Some(n),
        RetentionChange::KeepAll => None,
    };
    report.keep_last = keep_last;
    let mut pruned: HashMap<ObjectId, PrunedVersion> = match (&old_retention, opts.retention) {
        (Some(r), RetentionChange::Keep | RetentionChange::KeepLast(_)) => {
            r.pruned.iter().map(|p| (p.version, p.clone())).collect()
        }
        _ => HashMap::new(),
    };
    // Versions an LFS record names (and their history) are never pruned; one an earlier run
    // listed as pruned is kept again.
    let never: HashSet<ObjectId> = reach(&graph, &lfs_roots).into_iter().collect();
    if let Some(n) = keep_last {
        // The newest N versions of each file in each repository: repositories sharing a remote
        // (forks, projects with files of the same name) each keep their own N. A version that
        // several reach (a fork's shared history) is kept when any of them keeps it.
        let mut roots_of: BTreeMap<&str, Vec<ObjectId>> = BTreeMap::new();
        for name in &current {
            let r = &records[name];
            roots_of
                .entry(r.repository.as_str())
                .or_default()
                .extend(r.versions.iter().chain(&r.tips).copied());
        }
        let mut generations: HashMap<ObjectId, usize> = HashMap::new();
        let mut within: HashSet<ObjectId> = HashSet::new();
        let mut beyond: BTreeMap<ObjectId, &str> = BTreeMap::new();
        for roots in roots_of.values() {
            let mut by_path: HashMap<&str, Vec<(&str, usize, ObjectId)>> = HashMap::new();
            for v in reach(&graph, roots) {
                if let Some(Some(node)) = graph.get(&v) {
                    let generation = generation(&graph, v, &mut generations);
                    by_path
                        .entry(&node.path)
                        .or_default()
                        .push((&node.timestamp, generation, v));
                }
            }
            for (path, mut versions) in by_path {
                // Newest first: by time (RFC 3339 UTC timestamps sort as text), then, for
                // versions made within one second, by how many ancestors they have; ties by id.
                versions.sort_by(|a, b| b.cmp(a));
                within.extend(versions.iter().take(n as usize).map(|(_, _, v)| *v));
                for (_, _, v) in versions.into_iter().skip(n as usize) {
                    beyond.insert(v, path);
                }
            }
        }
        for v in &within {
            if let Some(p) = pruned.remove(v) {
                report.unpruned.push(p);
            }
        }
        for (v, path) in beyond {
            if report.unknown_refs.is_empty()
                && !within.contains(&v)
                && !never.contains(&v)
                && !tips.contains(&v)
                && !pruned.contains_key(&v)
            {
                let p = PrunedVersion {
                    version: v,
                    path: path.to_string(),
                    pruned: now,
                };
                report.pruned.push(p.clone());
                pruned.insert(v, p);
            }
        }
    }
    pruned.retain(|v, _| !tips.contains(v));
    let lfs_kept: Vec<ObjectId> = pruned
        .keys()
        .filter(|v| never.contains(v))
        .copied()
        .collect();
    for v in lfs_kept {
        if let Some(p) = pruned.remove(&v) {
            report.unpruned.push(p);
        }
    }
    for list in [&mut report.pruned, &mut report.unpruned] {
        list.sort_by(|a, b| (&a.path, &a.version).cmp(&(&b.path, &b.version)));
    }
    let kept: HashSet<ObjectId> = live_versions
        .iter()
        .filter(|v| !pruned.contains_key(v))
        .copied()
        .collect();
    let mut live_objects: HashSet<ObjectId> = HashSet::new();
    for v in &kept {
        live_objects.insert(*v);
        match graph.get(v) {
            Some(Some(node)) => live_objects.extend(node.objects.iter().copied()),
            _ => report.absent_versions += 1,
        }
    }
    report.live_versions = kept.len() - report.absent_versions;
    // The objects of the newest versions: those a ref or a clone's work tree names now and that
    // no kept version descends from (a branch's head, a version committed again as the newest;
    // not a tag or a checkout of an older step). Kept whole on a remote that keeps deltas, so
    // that pulling a branch's newest version reads no chain.
    let parents: HashSet<ObjectId> = kept
        .iter()
        .filter_map(|v| match graph.get(v) {
            Some(Some(node)) => node.parent,
            _ => None,
        })
        .collect();
    let mut head_objects: HashSet<ObjectId> = HashSet::new();
    for n in &current {
        for v in records[n].tips.iter().filter(|v| !parents.contains(v)) {
            if let Some(Some(node)) = graph.get(v) {
                head_objects.extend(node.objects.iter().copied());
            }
        }
    }

    // 4. What only superseded records or pruned versions needed.
    let mut dropped_roots: Vec<ObjectId> = Vec::new();
    for n in &superseded {
        dropped_roots.extend(records[n].versions.iter().copied());
    }
    dropped_roots.retain(|v| !kept.contains(v));
    dropped_roots.extend(pruned.keys().copied());
    expand(
        repo,
        remote,
        &dropped_roots,
        &mut graph,
        &opts.transfer,
        &mut stats,
    )
    .await?;
    let mut garbage: HashMap<ObjectId, GcWhy> = HashMap::new();
    let mut dropped_versions: HashSet<ObjectId> = HashSet::new();
    for v in reach(&graph, &dropped_roots) {
        if kept.contains(&v) {
            continue;
        }
        dropped_versions.insert(v);
        let Some(Some(node)) = graph.get(&v) else {
            continue;
        };
        let why = if pruned.contains_key(&v) {
            GcWhy::Pruned {
                path: node.path.clone(),
                version: v,
            }
        } else {
            GcWhy::Dropped {
                path: node.path.clone(),
                version: v,
            }
        };
        for id in std::iter::once(&v).chain(&node.objects) {
            if !live_objects.contains(id) {
                garbage.entry(*id).or_insert_with(|| why.clone());
            }
        }
    }

    // 5. What the remote holds: whole objects and, where it keeps them, delta encodings (an id
    // held either way counts as one object, its deltas' bytes with it).
    let mut listed = retried(retry, || remote.list_objects()).await?;
    report.requests += 1 + listed.len() as u64 / 1000;
    let mut deltas_by_id: HashMap<ObjectId, Vec<StoredDelta>> = HashMap::new();
    let mut encodings = deltas::Encodings::default();
    // The objects held whole, by id.
    let mut whole: HashMap<ObjectId, StoredObject> = HashMap::new();
    if remote.stores_deltas() {
        let stored = retried(retry, || remote.list_deltas()).await?;
        report.requests += 1 + stored.len() as u64 / 1000;
        for d in stored {
            deltas_by_id.entry(d.name.id).or_default().push(d);
        }
        whole = listed.iter().map(|o| (o.id, *o)).collect();
        // Objects of the newest versions held only as deltas (an older version committed again
        // after a gc made it deltas) go up whole first, from this clone's store.
        let mut again: Vec<ObjectId> = head_objects
            .iter()
            .filter(|id| !whole.contains_key(id) && deltas_by_id.contains_key(id))
            .copied()
            .collect();
        again.sort_unstable();
        let (have, lacking): (Vec<ObjectId>, Vec<ObjectId>) =
            again.into_iter().partition(|id| repo.store().has(id));
        report.whole_again_lacking = lacking.len();
        let sent: Vec<(ObjectId, u64)> = if opts.dry_run {
            // Counted as uploaded (at the size the local copy has), so that the dry run says
            // what a run would keep and free.
            have.iter()
                .map(|id| (*id, repo.store().encoded_size(id).unwrap_or(0)))
                .collect()
        } else if have.is_empty() {
            Vec::new()
        } else {
            let sent =
                deltas::push_whole(repo.store(), remote, &have, &mut stats, &opts.transfer).await?;
            report.requests += sent.len() as u64;
            sent
        };
        for (id, size) in sent {
            report.whole_again += 1;
            report.whole_again_bytes += size;
            whole.insert(
                id,
                StoredObject {
                    id,
                    size,
                    modified: now,
                },
            );
        }
        // Deltas this clone holds of live objects the remote holds only whole go up first (a
        // push sends versions whole, so a remote where gc never runs stays as it was before
        // deltas): like those pushed, they stand for the whole copies once settled.
        // A remote that holds deltas but takes no new ones (a server kept readable by nshard
        // binaries older than deltas) gets none, and keeps its whole copies.
        let takes = remote.takes_deltas();
        let offer: Vec<DeltaName> = if takes {
            deltas::plan_offer(repo.store(), &live_objects, &whole, &deltas_by_id)
                .levels
                .into_iter()
                .flatten()
                .collect()
        } else {
            Vec::new()
        };
        let settled = |m: u64| now >= m.saturating_add(opts.grace);
        let offer = deltas::would_stand_keeping(
            offer,
            &live_objects,
            &whole,
            &deltas_by_id,
            &head_objects,
            now,
            settled,
        );
        // A dry run counts them as uploaded, so that it says what a run would free.
        let uploaded = if opts.dry_run || offer.is_empty() {
            offer
        } else {
            let (sent, refused) =
                deltas::push_offer(repo.store(), remote, &offer, &mut stats, &opts.transfer)
                    .await?;
            report.requests += (sent.len() + refused.len()) as u64;
            report.refused_deltas = refused
                .into_iter()
                .map(|(d, why)| format!("{}: {why}", d.key()))
                .collect();
            sent
        };
        report.uploaded_deltas = uploaded.len();
        for d in uploaded {
            let size = repo.store().encoded_size(&d.id).unwrap_or(0);
            report.uploaded_delta_bytes += size;
            deltas_by_id.entry(d.id).or_default().push(StoredDelta {
                name: d,
                size,
                modified: now,
            });
        }
        encodings = deltas::choose_encodings_keeping(
            &live_objects,
            &whole,
            &deltas_by_id,
            &head_objects,
            |m| takes && settled(m),
        );
        live_objects.extend(encodings.bases.iter().copied());
        report.live_deltas = encodings.deltas_kept;
        let gone: HashSet<DeltaName> = encodings.deltas_superseded.iter().copied().collect();
        for (id, _) in &encodings.whole_superseded {
            report.superseded_objects += 1;
            report.superseded_bytes += whole_size(&whole, id);
        }
        for d in deltas_by_id.values().flatten() {
            if gone.contains(&d.name) {
                report.superseded_objects += 1;
                report.superseded_bytes += d.size;
            }
        }
        // The stored bytes of a kept object count what it keeps.
        let dropped_whole: HashSet<ObjectId> = encodings
            .whole_superseded
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let mut merged = whole.clone();
        for (id, list) in &deltas_by_id {
            let e = merged.entry(*id).or_insert(StoredObject {
                id: *id,
                size: 0,
                modified: 0,
            });
            if dropped_whole.contains(id) {
                e.size = 0;
            }
            for d in list.iter().filter(|d| !gone.contains(&d.name)) {
                e.size += d.size;
                e.modified = e.modified.max(d.modified);
            }
        }
        listed = merged.into_values().collect();
        listed.sort_unstable_by_key(|o| o.id);
    }
    // The listing is sorted by id, so these are too.
    let mut new_marks = Marks::default();
    let mut waiting: Vec<ObjectId> = Vec::new();
    let mut delete: Vec<(ObjectId, u64)> = Vec::new();
    for o in &listed {
        if live_objects.contains(&o.id) {
            report.live_objects += 1;
            report.live_bytes += o.size;
            continue;
        }
        let old_mark = marks.get(&o.id);
        let why = garbage
            .remove(&o.id)
            .unwrap_or(if old_mark.is_some_and(|m| !m.unrecorded) {
                GcWhy::Marked
            } else {
                GcWhy::Unrecorded
            });
        if why == GcWhy::Unrecorded && !opts.include_unrecorded {
            report.unrecorded_objects += 1;
            report.unrecorded_bytes += o.size;
            continue;
        }
        let marked = old_mark.map_or(now, |m| m.at).min(now);
        let until = marked.max(o.modified).saturating_add(opts.grace);
        // Marked whether it waits or goes now: should this run stop half-way, the next one
        // knows it was garbage even if it can no longer tell which version used it.
        new_marks.entries.push(Mark {
            id: o.id,
            at: marked,
            unrecorded: why == GcWhy::Unrecorded,
        });
        let state = if now < until {
            waiting.push(o.id);
            report.waiting_objects += 1;
            report.waiting_bytes += o.size;
            GcState::Waiting { until }
        } else {
            delete.push((o.id, o.size));
            report.freed_objects += 1;
            report.freed_bytes += o.size;
            if opts.dry_run {
                GcState::WouldDelete
            } else {
                GcState::Deleted
            }
        };
        if report.candidates.len() < MAX_CANDIDATES {
            report.candidates.push(GcCandidate {
                id: o.id,
                size: o.size,
                why,
                state,
            });
        } else {
            report.candidates_omitted += 1;
        }
    }
    drop(listed);

    // Superseded records that can go once this run's deletions are done: nothing they alone
    // named is still waiting.
    let is_waiting = |id: &ObjectId| waiting.binary_search(id).is_ok();
    let mut retire: Vec<RecordName> = Vec::new();
    for n in &superseded {
        let roots: Vec<ObjectId> = records[n]
            .versions
            .iter()
            .filter(|v| !kept.contains(v))
            .copied()
            .collect();
        let pending = reach(&graph, &roots).into_iter().any(|v| {
            is_waiting(&v)
                || matches!(graph.get(&v), Some(Some(node)) if node.objects.iter().any(is_waiting))
        });
        if !pending {
            retire.push(n.clone());
        }
    }
    report.deleted_records = retire.len();
    let Some(lock) = lock else {
        return Ok(report);
    };
    // Nothing has changed on the remote but the deltas offered and the whole copies uploaded
    // (which change nothing a reader sees): make sure no other run took over meanwhile.
    lock.confirm().await?;

    // 6. Write the new state, then delete: versions' manifest objects first, then the rest.
    let retention_changed = match &old_retention {
        None => keep_last.is_some() || !pruned.is_empty(),
        Some(r) => r.keep_last != keep_last || r.pruned.len() != pruned.len(),
    };
    if retention_changed {
        let mut list: Vec<PrunedVersion> = pruned.into_values().collect();
        list.sort_by(|a, b| (&a.path, &a.version).cmp(&(&b.path, &b.version)));
        let record = RetentionRecord {
            format: RETENTION_FORMAT.into(),
            keep_last,
            pruned: list,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| encode_error(remote, &e))?;
        put_record(remote, RETENTION_SPACE, bytes, retry).await?;
    }
    let marks_written = write_marks(remote, &new_marks.entries, retry).await?;
    let old_state: Vec<RecordName> = names
        .iter()
        .filter(|n| {
            (is_mark(n) || (retention_changed && n.space() == RETENTION_SPACE))
                && !virtual_records.contains_key(n)
        })
        .cloned()
        .collect();
    // Versions' manifest objects first (a version is then gone as a whole, never half), then
    // the objects only they used.
    let (manifests, rest): (Vec<ObjectId>, Vec<ObjectId>) = delete
        .iter()
        .map(|(id, _)| *id)
        .partition(|id| dropped_versions.contains(id));
    let mut seen: HashSet<RecordName> = names.iter().cloned().collect();
    let mut spared: HashSet<ObjectId> = HashSet::new();
    // What was left undeleted because it was spared (some of `spared` may have gone in a batch
    // before a push needed it).
    let mut kept_back: HashSet<ObjectId> = HashSet::new();
    let batches = manifests.chunks(DELETE_BATCH).map(|b| (b, false)).chain(
        rest.chunks(DELETE_BATCH)
            .enumerate()
            .map(|(i, b)| (b, i == 0)),
    );
    for (batch, first_of_rest) in batches {
        if first_of_rest && !manifests.is_empty() {
            crate::crash_point!("remote-gc-between-deletes");
        }
        crate::crash_point!("remote-gc-before-delete");
        lock.confirm().await?;
        // A push that finished since the listing may rely on what this batch would delete (it
        // skipped uploading objects the remote had): its record says so; spare those.
        let fresh: Vec<RecordName> = retried(retry, || remote.list_records())
            .await?
            .into_iter()
            .filter(|n| (n.is_root() || n.is_lfs()) && !seen.contains(n))
            .collect();
        report.requests += 1;
        if !fresh.is_empty() {
            let (lfs, fresh): (Vec<RecordName>, Vec<RecordName>) =
                fresh.into_iter().partition(|n| n.is_lfs());
            let mut roots = lfs_versions(remote, &lfs, retry).await?;
            seen.extend(lfs);
            for n in &fresh {
                let r = read_root(remote, n, retry).await?;
                roots.extend(r.versions.iter().chain(&r.tips).copied());
                seen.insert(n.clone());
            }
            expand(repo, remote, &roots, &mut graph, &opts.transfer, &mut stats).await?;
            for v in reach(&graph, &roots) {
                spared.insert(v);
                if let Some(Some(node)) = graph.get(&v) {
                    spared.extend(node.objects.iter().copied());
                }
            }
            // An object the push found on the remote only as deltas (a client from before
            // remote deltas counts those as present) needs the bases of its chains too.
            let bases = deltas::bases_below(spared.iter().copied(), &deltas_by_id);
            spared.extend(bases);
        }
        let (ids, held): (Vec<ObjectId>, Vec<ObjectId>) =
            batch.iter().partition(|id| !spared.contains(id));
        kept_back.extend(held);
        retried(retry, || remote.delete_objects(&ids)).await?;
        report.requests += 1;
        let names: Vec<DeltaName> = ids
            .iter()
            .filter_map(|id| deltas_by_id.get(id))
            .flatten()
            .map(|d| d.name)
            .collect();
        for batch in names.chunks(DELETE_BATCH) {
            retried(retry, || remote.delete_deltas(batch)).await?;
            report.requests += 1;
        }
    }
    // Encodings superseded by kept deltas: unused deltas first, then whole copies (a version
    // stays readable throughout: every kept chain is in place).
    for batch in encodings.deltas_superseded.chunks(DELETE_BATCH) {
        crate::crash_point!("remote-gc-before-delta-delete");
        lock.confirm().await?;
        retried(retry, || remote.delete_deltas(batch)).await?;
        report.requests += 1;
    }
    // A whole copy goes only once the delta standing for it is checked: decoded against its
    // base as the remote holds it, it hashes to the object's id (each link of a chain so).
    // Checked `jobs` at a time; a transient failure stops the run before any whole copy goes.
    let standing: Arc<HashMap<ObjectId, DeltaName>> =
        Arc::new(encodings.whole_superseded.iter().copied().collect());
    let mut outcomes: Vec<(ObjectId, Option<(String, bool)>)> = Vec::new();
    super::engine::bounded(
        encodings
            .whole_superseded
            .iter()
            .map(|(id, _)| *id)
            .collect(),
        opts.transfer.jobs,
        |id| {
            let remote = Arc::clone(remote);
            let standing = Arc::clone(&standing);
            let retry = *retry;
            async move {
                let Some(name) = standing.get(&id).copied() else {
                    return (
                        Ok(Some((format!("{id}: no delta was planned for it"), false))),
                        0,
                    );
                };
                let checked = async {
                    let enc = retried(&retry, || remote.get_delta(&name)).await?;
                    crate::remote::deltas::verify_delta(remote.as_ref(), &name, &enc).await
                };
                match checked.await {
                    Ok(()) => (Ok(None), 0),
                    Err(e) if e.is_transient() => (Err(e), 0),
                    Err(e) => {
                        let corrupt = matches!(e, Error::Store(StoreError::CorruptObject { .. }));
                        (Ok(Some((format!("{}: {e}", name.key()), corrupt))), 0)
                    }
                }
            }
        },
        |id, outcome, _| outcomes.push((id, outcome)),
    )
    .await?;
    outcomes.sort_unstable_by_key(|(id, _)| *id);
    let mut verified: Vec<ObjectId> = Vec::new();
    // Deltas that do not decode to their object: the whole copy stays, so nothing reads them,
    // and a later run would only check them again.
    let mut damaged: Vec<DeltaName> = Vec::new();
    for (id, outcome) in outcomes {
        match outcome {
            None => verified.push(id),
            Some((bad, corrupt)) => {
                report.superseded_objects -= 1;
                report.superseded_bytes = report
                    .superseded_bytes
                    .saturating_sub(whole_size(&whole, &id));
                report.bad_deltas.push(bad);
                damaged.extend(standing.get(&id).filter(|_| corrupt));
            }
        }
    }
    for batch in damaged.chunks(DELETE_BATCH) {
        lock.confirm().await?;
        retried(retry, || remote.delete_deltas(batch)).await?;
        report.requests += 1;
        report.removed_bad_deltas += batch.len();
    }
    for batch in verified.chunks(DELETE_BATCH) {
        crate::crash_point!("remote-gc-before-whole-delete");
        lock.confirm().await?;
        retried(retry, || remote.delete_objects(batch)).await?;
        report.requests += 1;
    }
    if !spared.is_empty() {
        // What a concurrent push turned out to need was not deleted: count it as live.
        for (id, size) in &delete {
            if kept_back.contains(id) {
                report.freed_objects -= 1;
                report.freed_bytes -= size;
                report.live_objects += 1;
                report.live_bytes += size;
            }
        }
        report.candidates.retain(|c| !kept_back.contains(&c.id));
        // Records that named what was spared stay, in case they are the ones a later run needs.
        retire.clear();
        report.deleted_records = 0;
    }
    // The deletions are done: the marks keep only what waits (the set written before the
    // deletions, which also named what went, is retired with the older ones).
    let mut done_state = old_state;
    if !delete.is_empty() {
        new_marks.entries.retain(|m| is_waiting(&m.id));
        write_marks(remote, &new_marks.entries, retry).await?;
        done_state.extend(marks_written);
    }
    for batch in retire
        .chunks(DELETE_BATCH)
        .chain(done_state.chunks(DELETE_BATCH))
    {
        retried(retry, || remote.delete_records(batch)).await?;
        report.requests += 1;
    }
    Ok(report)
}

/// The stored size of `id` held whole (0 when it is not).
fn whole_size(whole: &HashMap<ObjectId, StoredObject>, id: &ObjectId) -> u64 {
    whole.get(id).map_or(0, |o| o.size)
}

/// The report lists at most this many garbage objects (the counts cover them all).
pub const MAX_CANDIDATES: usize = 10_000;

/// The newest marks on the remote: every part of the newest stamp in the `_gc` space.
async fn read_marks(
    remote: &Arc<dyn Store>,
    names: &[RecordName],
    retry: &crate::retry::Retry,
) -> Result<Marks> {
    let mut marks = Marks::default();
    let Some(newest) = names
        .iter()
        .filter(|n| is_mark(n))
        .max_by_key(|n| (n.nanos(), n.stamp().to_string()))
    else {
        return Ok(marks);
    };
    for n in names
        .iter()
        .filter(|n| is_mark(n) && n.stamp() == newest.stamp())
    {
        match retried(retry, || remote.get_record(n)).await? {
            Some(b) => marks.parse_part(&b, n)?,
            None => return Err(changed_under_us(remote)),
        }
    }
    marks.sort();
    Ok(marks)
}

/// Writes `entries` (sorted) as one set of marks: parts of at most [`MARKS_PER_RECORD`] sharing
/// one stamp (one empty part when there are none). Returns the names written.
async fn write_marks(
    remote: &Arc<dyn Store>,
    entries: &[Mark],
    retry: &crate::retry::Retry,
) -> Result<Vec<RecordName>> {
    let first = RecordName::new(GC_SPACE, SINGLE_KEY);
    let mut written = Vec::new();
    let parts: Vec<&[Mark]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(MARKS_PER_RECORD).collect()
    };
    for (i, part) in parts.into_iter().enumerate() {
        let name = first
            .with_key(&format!("{i:016x}"))
            .expect("a 16-hex-digit key");
        let bytes = Marks::part_bytes(part);
        written.push(retried(retry, || remote.put_record(&name, bytes.clone())).await?);
    }
    Ok(written)
}

/// Runs `op` with the transfer's retries.
async fn retried<T, F, Fut>(retry: &crate::retry::Retry, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    retry.run(op).await.0
}

async fn read_root(
    remote: &Arc<dyn Store>,
    name: &RecordName,
    retry: &crate::retry::Retry,
) -> Result<RootRecord> {
    match retried(retry, || remote.get_record(name)).await? {
        Some(b) => RootRecord::parse(&b, name),
        None => Err(changed_under_us(remote)),
    }
}

/// The versions the LFS records `names` map git-lfs objects to. A record that does not parse
/// names nothing (anyone may write one; readers check what it rebuilds anyway).
async fn lfs_versions(
    remote: &Arc<dyn Store>,
    names: &[RecordName],
    retry: &crate::retry::Retry,
) -> Result<Vec<ObjectId>> {
    let mut out = Vec::new();
    for n in names {
        if let Some(b) = retried(retry, || remote.get_record(n)).await? {
            if let Ok(r) = LfsRecord::parse(&b, n) {
                out.push(r.version);
            }
        }
    }
    Ok(out)
}

async fn put_record(
    remote: &Arc<dyn Store>,
    space: &str,
    bytes: Vec<u8>,
    retry: &crate::retry::Retry,
) -> Result<RecordName> {
    let name = RecordName::new(space, SINGLE_KEY);
    retried(retry, || remote.put_record(&name, bytes.clone())).await
}

fn changed_under_us(remote: &Arc<dyn Store>) -> Error {
    Error::Remote(RemoteError::Failed {
        remote: remote.display_url(),
        kind: RemoteFailure::Other,
        reason: "a record vanished while gc read it (another gc running?); nothing was deleted, run it again".into(),
    })
}

fn encode_error(remote: &Arc<dyn Store>, e: &serde_json::Error) -> Error {
    Error::Remote(RemoteError::Failed {
        remote: remote.display_url(),
        kind: RemoteFailure::Other,
        reason: format!("cannot encode a record: {e}"),
    })
}

/// How many versions `v`'s parent chain holds (itself included), memoised in `known`.
fn generation(graph: &Graph, v: ObjectId, known: &mut HashMap<ObjectId, usize>) -> usize {
    let mut path = Vec::new();
    let mut on_path = HashSet::new();
    let mut at = Some(v);
    let mut base = 0;
    while let Some(x) = at {
        if let Some(g) = known.get(&x) {
            base = *g;
            break;
        }
        if !on_path.insert(x) {
            break;
        }
        path.push(x);
        at = parent_in(graph, &x);
    }
    for (i, x) in path.iter().rev().enumerate() {
        known.insert(*x, base + i + 1);
    }
    known.get(&v).copied().unwrap_or(base)
}

/// The parent of version `v`, as far as `graph` knows it.
fn parent_in(graph: &Graph, v: &ObjectId) -> Option<ObjectId> {
    graph.get(v).and_then(|n| n.as_ref()).and_then(|n| n.parent)
}

/// Every version reachable from `roots` through parents, as far as `graph` knows them.
fn reach(graph: &Graph, roots: &[ObjectId]) -> Vec<ObjectId> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut out = Vec::new();
    for r in roots {
        let mut at = Some(*r);
        while let Some(v) = at {
            if !seen.insert(v) {
                break;
            }
            out.push(v);
            at = parent_in(graph, &v);
        }
    }
    out
}

/// Reads every version reachable from `roots` (through parents) into `graph`, fetching manifest
/// and listing objects from the remote when this clone lacks them.
async fn expand(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    roots: &[ObjectId],
    graph: &mut Graph,
    transfer: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<()> {
    let mut stack: Vec<ObjectId> = roots.to_vec();
    let mut budget = 10_000_000usize;
    while let Some(v) = stack.pop() {
        if graph.contains_key(&v) {
            continue;
        }
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let node = load_node(repo, remote, v, transfer, stats).await?;
        if let Some(p) = node.as_ref().and_then(|n| n.parent) {
            stack.push(p);
        }
        graph.insert(v, node);
    }
    Ok(())
}

/// Version `v` (a file's or a unit's), or `None` when neither the remote nor here has it.
async fn load_node(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    v: ObjectId,
    transfer: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<Option<Node>> {
    let max = MAX_MANIFEST_BYTES.max(MAX_DIR_MANIFEST);
    if !dirs::ensure_local(repo, remote, v, max, transfer, stats).await? {
        return Ok(None);
    }
    let bytes = repo.store().get(&v, max)?;
    let source = format!("object {v}");
    if is_dir_manifest(&bytes) {
        let m = DirManifest::parse(&bytes, Path::new(&source), None)?;
        let mut objects = match dirs::ensure_listings(repo, remote, &m, transfer, stats).await? {
            Ok(l) => l,
            // The listing is lost: what the version used cannot be known; its objects count
            // as unrecorded (kept unless asked).
            Err(_) => return Ok(None),
        };
        if let Some(objs) = repo.dir_objects(&m, None)? {
            objects.extend(objs.into_iter().map(|(id, _)| id));
        }
        Ok(Some(Node {
            path: m.path.as_str().to_string(),
            timestamp: m.version.timestamp.clone(),
            parent: m.version.parent,
            objects,
        }))
    } else {
        let m = Manifest::parse(&bytes, Path::new(&source), None)?;
        Ok(Some(Node {
            path: m.path.as_str().to_string(),
            timestamp: m.version.timestamp.clone(),
            parent: m.version.parent,
            objects: m.chunks.iter().map(|c| c.id).collect(),
        }))
    }
}

/// Brings this repository's records up to date with its git remote's refs: a ref the git remote
/// no longer has gets a record of no versions, a ref that moved (to a commit this clone has) a
/// record of its new history. Written as admin records unless `dry_run` (then only returned).
async fn refresh(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    names: &[RecordName],
    opts: &RemoteGcOptions<'_>,
    report: &mut RemoteGcReport,
) -> Result<Vec<(RecordName, RootRecord)>> {
    let Some(tree) = repo.git_tree().ok() else {
        return Ok(Vec::new());
    };
    let Some(git_remote) = tree.default_remote() else {
        return Ok(Vec::new());
    };
    let repository = roots::repository_of(repo, Some(&git_remote));
    let space = repository_id(&repository);
    let mine: Vec<RecordName> = names
        .iter()
        .filter(|n| n.space() == space)
        .cloned()
        .collect();
    if mine.is_empty() {
        // Records are kept per repository, named by its git remote's URL: none under this one
        // (no push from a clone of it reached this remote, or the URL changed since), so its
        // refs cannot be compared, and refs made without the hook are not known.
        report.refreshed.push(format!(
            "{repository}: no records of this repository on the remote, so its git remote's refs \
             were not checked (a git push with the hooks records them)"
        ));
        return Ok(Vec::new());
    }
    let refs = tree.ls_remote(&git_remote).map_err(|e| {
        Error::Git(GitError::Command(format!(
            "cannot read the refs of git remote {git_remote:?} to refresh this repository's records ({e}); \
             nothing was deleted (use --no-refresh to go by the records as they are)"
        )))
    })?;
    let (current, _) = supersede(&mine);
    let mut out = Vec::new();
    let mut recorded: HashSet<String> = HashSet::new();
    for name in current {
        let r = read_root(remote, &name, &opts.transfer.retry).await?;
        recorded.insert(r.refname.clone());
        if !r.refname.starts_with("refs/") {
            continue;
        }
        let now_at = refs.get(&r.refname);
        if now_at == r.commit.as_ref() && !r.provisional {
            continue;
        }
        let roots = match now_at {
            None => tree.ref_roots(&r.refname, None)?,
            Some(c) if tree.commit_id(c).is_some() => tree.ref_roots(&r.refname, Some(c))?,
            Some(c) => {
                report.refreshed.push(format!(
                    "{}: moved to {} on the git remote, which this clone lacks (git fetch, then run gc again); kept as recorded",
                    r.refname,
                    &c[..c.len().min(12)]
                ));
                continue;
            }
        };
        report.refreshed.push(match now_at {
            None => format!("{}: deleted on the git remote", r.refname),
            Some(c) if Some(c) == r.commit.as_ref() => {
                format!("{}: confirmed at {}", r.refname, &c[..c.len().min(12)])
            }
            Some(c) => format!("{}: now at {}", r.refname, &c[..c.len().min(12)]),
        });
        out.push(record_ref(remote, &space, &repository, roots, opts).await?);
    }
    // Branches and tags that reached the git remote without a hook (made in a web UI, pushed
    // from a clone without `nshard git-init`): no push recorded them, yet retention must keep
    // what their tips name.
    let mut unrecorded: Vec<(&String, &String)> = refs
        .iter()
        .filter(|(name, _)| !recorded.contains(*name))
        .collect();
    unrecorded.sort();
    for (refname, commit) in unrecorded {
        let short = &commit[..commit.len().min(12)];
        if tree.commit_id(commit).is_none() {
            if tree.run(&["cat-file", "-e", commit]).is_ok() {
                continue; // a tag of a blob or tree (a key, a file): it names no version
            }
            report.refreshed.push(format!(
                "{refname}: at {short} on the git remote, which this clone lacks (`git fetch \
                 --tags`, then run gc again); retention prunes nothing new until then"
            ));
            report.unknown_refs.push(refname.clone());
            continue;
        }
        let roots = tree.ref_roots(refname, Some(commit))?;
        if roots.tips.is_empty() && roots.versions.is_empty() {
            continue; // no NeuroShard data at that commit
        }
        report
            .refreshed
            .push(format!("{refname}: at {short} on the git remote, which no push recorded: what it names is kept"));
        out.push(record_ref(remote, &space, &repository, roots, opts).await?);
    }
    Ok(out)
}

/// Writes the admin record of ref `roots` of `repository` in `space` (in a dry run, only names it).
async fn record_ref(
    remote: &Arc<dyn Store>,
    space: &str,
    repository: &str,
    roots: roots::RefRoots,
    opts: &RemoteGcOptions<'_>,
) -> Result<(RecordName, RootRecord)> {
    let record = RootRecord {
        format: crate::remote::records::RECORD_FORMAT.into(),
        repository: repository.to_string(),
        refname: roots.refname,
        commit: roots.commit,
        created: now_secs(),
        tips: roots.tips,
        versions: roots.versions,
        provisional: false,
    };
    let key = crate::remote::records::ref_key(&record.refname);
    let name = record_now(remote, space, &key, &record, opts).await?;
    Ok((name, record))
}

/// Writes `record` as a new admin record in `space` about `key` (in a dry run, only names it).
async fn record_now(
    remote: &Arc<dyn Store>,
    space: &str,
    key: &str,
    record: &RootRecord,
    opts: &RemoteGcOptions<'_>,
) -> Result<RecordName> {
    let name = RecordName::new(space, key);
    if opts.dry_run {
        return Ok(name);
    }
    let bytes = serde_json::to_vec(record).map_err(|e| encode_error(remote, &e))?;
    retried(&opts.transfer.retry, || {
        remote.put_record(&name, bytes.clone())
    })
    .await
}

/// Records, for every current ref record of the repositories in `opts.forget`, that the ref
/// names nothing any more (an admin record: it supersedes every writer's).
async fn forget(
    remote: &Arc<dyn Store>,
    names: &[RecordName],
    known: &HashMap<RecordName, RootRecord>,
    opts: &RemoteGcOptions<'_>,
    report: &mut RemoteGcReport,
) -> Result<Vec<(RecordName, RootRecord)>> {
    let spaces: HashSet<String> = opts
        .forget
        .iter()
        .map(|f| {
            if f.len() == 16 && f.bytes().all(|b| b.is_ascii_hexdigit()) {
                f.to_ascii_lowercase()
            } else {
                repository_id(f)
            }
        })
        .collect();
    let roots: Vec<RecordName> = names
        .iter()
        .filter(|n| n.is_root() && spaces.contains(n.space()))
        .cloned()
        .collect();
    if roots.is_empty() {
        return Err(Error::Remote(RemoteError::Failed {
            remote: remote.display_url(),
            kind: RemoteFailure::NotFound,
            reason: format!(
                "no records of {} on this remote (`nshard remote gc --dry-run` lists the repositories it has)",
                opts.forget.join(", ")
            ),
        }));
    }
    let (current, _) = supersede(&roots);
    let mut out = Vec::new();
    for n in current {
        let r = match known.get(&n) {
            Some(r) => r.clone(),
            None => read_root(remote, &n, &opts.transfer.retry).await?,
        };
        if r.versions.is_empty() && r.tips.is_empty() {
            continue;
        }
        let record = RootRecord {
            commit: None,
            created: now_secs(),
            tips: Vec::new(),
            versions: Vec::new(),
            provisional: false,
            ..r
        };
        report.refreshed.push(format!(
            "{} {}: forgotten (what only it named is no longer kept)",
            record.repository, record.refname
        ));
        let name = record_now(remote, n.space(), n.key(), &record, opts).await?;
        out.push((name, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::of(&[n])
    }

    fn held(i: u8, base: u8) -> (ObjectId, Vec<StoredDelta>) {
        let name = DeltaName {
            id: id(i),
            base: id(base),
        };
        (
            id(i),
            vec![StoredDelta {
                name,
                size: 1,
                modified: 0,
            }],
        )
    }

    /// What a push relied on keeps the chains it is held through: 1 is a delta of 2, a delta
    /// of 3 (held whole); 4 is a delta of 5, which nothing spared needs.
    #[test]
    fn sparing_an_object_spares_the_bases_of_its_deltas() {
        let deltas: HashMap<ObjectId, Vec<StoredDelta>> =
            [held(1, 2), held(2, 3), held(4, 5)].into_iter().collect();
        let mut spared: HashSet<ObjectId> = [id(1), id(9)].into_iter().collect();
        let bases = deltas::bases_below(spared.iter().copied(), &deltas);
        spared.extend(bases);
        let want: HashSet<ObjectId> = [1, 2, 3, 9].map(id).into_iter().collect();
        assert_eq!(spared, want);
    }
}
