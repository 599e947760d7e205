//! `gc`: delete local objects that nothing needs any more.
//!
//! Kept: every object a work-tree manifest references (its chunks and its own manifest object),
//! the same for every manifest version git can still reach (any commit reachable from any ref,
//! reflog entry, `ORIG_HEAD`/`FETCH_HEAD`, stash entry, index or worktree: see `git::refs`), and
//! by default the whole history reachable from those manifests through the store. With
//! `--only-current` the older versions are dropped, but an object the default remote does not have
//! is never deleted (it may be the only copy) unless `--include-unpushed` is given; with no remote
//! configured such objects are all kept. Safety:
//! - gc holds the repository lock exclusively, so no commit, checkout or pull runs meanwhile
//!   (commit stores chunks and writes its manifest under the same lock);
//! - objects (and temporary files) younger than a grace period are never deleted, in case some
//!   writer does not take the lock (another tool, a network filesystem without working locks);
//! - if any work-tree or git manifest is invalid, git cannot be read, or a kept history version
//!   cannot be read, nothing is deleted: gc cannot know what it references;
//! - deleting an object is one `unlink`, and only unreferenced objects are deleted, so a gc killed
//!   at any point leaves every referenced object in place. Dropped history manifests are deleted
//!   first (newest first), their chunks after, so an interrupted `--only-current` never leaves a
//!   reachable manifest whose chunks are half gone behind a complete one.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::HistoryNode;
use crate::dirunit::{DirManifest, DirVersionBytes};
use crate::error::{Error, Result};
use crate::error::{GitError, RepoError, StoreError};
use crate::git::{GitTree, Reach};
use crate::id::ObjectId;
use crate::manifest::Manifest;
use crate::repo::{Repo, WorktreeManifest};

/// Which manifests' objects gc keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GcMode {
    /// Every version git can reach, the work tree's, and every older version reachable from them
    /// through the store (default).
    KeepHistory,
    /// Only the versions git can reach and the work tree's: older versions must be pulled again to
    /// be used. Objects the remote lacks are still kept (see [`Unpushed`]).
    OnlyCurrent,
}

/// Asks a remote which of the given objects it lacks.
pub type MissingCheck<'a> = &'a dyn Fn(&[ObjectId]) -> Result<HashSet<ObjectId>>;

/// What gc does with objects of dropped versions that may exist nowhere else.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Unpushed<'a> {
    /// No remote is configured: every object a known version references is kept.
    NoRemote,
    /// Ask this remote (named for messages): objects it lacks are kept. When it cannot be asked,
    /// all of them are kept.
    Remote {
        /// The remote's name or URL, for the report.
        name: &'a str,
        /// The question.
        missing: MissingCheck<'a>,
    },
    /// Delete them too (`--include-unpushed`).
    Delete,
}

impl std::fmt::Debug for Unpushed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unpushed::NoRemote => f.write_str("NoRemote"),
            Unpushed::Remote { name, .. } => write!(f, "Remote({name})"),
            Unpushed::Delete => f.write_str("Delete"),
        }
    }
}

/// Options of a gc.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions<'a> {
    /// What to keep.
    pub mode: GcMode,
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Never delete objects or temporary files modified less than this long ago.
    pub grace: Duration,
    /// Objects of dropped versions that the remote may not have.
    pub unpushed: Unpushed<'a>,
}

/// Why gc deletes (or would delete) an object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GcReason {
    /// No version gc knows of references it (left by an interrupted commit, a version git no
    /// longer reaches, …).
    Unreferenced,
    /// Only older versions of a file reference it, and those are dropped (`--only-current`).
    DroppedVersion {
        /// The file.
        path: String,
        /// The newest dropped version that references it.
        version: ObjectId,
        /// Whether the remote was checked to have it (false with `--include-unpushed`).
        on_remote: bool,
    },
}

/// One object gc deletes (or would).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GcItem {
    /// The object.
    pub id: ObjectId,
    /// Its size on disk.
    pub bytes: u64,
    /// Why it goes.
    #[serde(flatten)]
    pub reason: GcReason,
}

/// What gc did (or would do, with `dry_run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Work-tree manifests found.
    pub files: usize,
    /// Other versions found in git (any commit reachable from a ref, a reflog entry, the stash, an
    /// index or a worktree), kept like the work tree's.
    pub git_versions: usize,
    /// Versions whose objects were kept (current and, by default, older ones).
    pub versions_kept: usize,
    /// Objects in the store before gc.
    pub objects_total: usize,
    /// Objects referenced by a kept version.
    pub objects_referenced: usize,
    /// Unreferenced objects deleted (or that would be).
    pub objects_deleted: usize,
    /// Their size on disk.
    pub bytes_deleted: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub objects_recent: usize,
    /// Their size on disk.
    pub bytes_recent: u64,
    /// Objects of dropped versions kept because the remote lacks them (or has not been asked).
    pub objects_unpushed: usize,
    /// Their size on disk.
    pub bytes_unpushed: u64,
    /// The remote asked about unpushed objects, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Why the remote could not be asked (every possibly unpushed object was kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_error: Option<String>,
    /// Whether the repository is in a git work tree (so git's history was kept).
    pub git: bool,
    /// Stale temporary files removed from `.shard/tmp` (left by interrupted writers).
    pub temp_files_deleted: usize,
    /// Their size.
    pub temp_bytes_deleted: u64,
    /// Kept chunks stored as deltas of objects gc deletes, stored whole again first (or that
    /// would be).
    pub objects_restored_whole: usize,
    /// Their new size on disk (0 in a dry run).
    pub bytes_restored_whole: u64,
    /// Every object deleted (or that would be), with the reason.
    pub deleted: Vec<GcItem>,
}

impl Repo {
    /// The versions gc starts from: the work tree's manifests and every manifest git can reach,
    /// each with a name for messages. Counts them into `report`.
    fn gc_roots(
        &self,
        report: &mut GcReport,
        dirs: &mut Vec<DirVersionBytes>,
    ) -> Result<Vec<(String, WorktreeManifest)>> {
        let mut roots: Vec<(String, WorktreeManifest)> = Vec::new();
        // A manifest whose own name is refused is never read, so what it references is unknown.
        self.refuse_if_refused_manifests("gc deleted nothing")?;
        for unit in self.dir_units()? {
            if let Some(d) = self.read_dir_manifest(&unit)? {
                report.files += 1;
                dirs.push(d);
            }
        }
        for path in self.scan_worktree()?.1 {
            // An invalid manifest is an error here: gc cannot tell what it references.
            let Some(wt) = self.read_worktree_manifest(&path)? else {
                continue;
            };
            report.files += 1;
            roots.push((path.as_str().to_string(), wt));
        }
        if !self.is_git_repo() {
            return Ok(roots);
        }
        // Inside a git repository, git must run: without it gc cannot know what other branches,
        // tags or the index reference, so it deletes nothing.
        let Some(tree) = GitTree::find(self.root()) else {
            return Err(Error::Git(GitError::Command(
                "could not run `git` (is it installed?) to find the git work tree; gc deleted nothing"
                    .into(),
            )));
        };
        report.git = true;
        let mut known: HashSet<ObjectId> = roots.iter().map(|(_, wt)| wt.version).collect();
        let found = tree
            .manifests(&Reach::Everything)
            .map_err(|e| Error::Git(GitError::Command(format!("{e}; gc deleted nothing"))))?;
        for g in found {
            if g.bytes.is_empty() {
                // References nothing (e.g. a `git add -N` placeholder in the index).
                continue;
            }
            let version = ObjectId::of(&g.bytes);
            if !known.insert(version) {
                continue;
            }
            let expected = g.path.data_path_of_manifest();
            if crate::dirunit::is_dir_manifest(&g.bytes) {
                let manifest =
                    DirManifest::parse(&g.bytes, Path::new(&g.origin), expected.as_ref()).or_else(
                        |_| {
                            let origin = tree.describe(&g);
                            DirManifest::parse(&g.bytes, Path::new(&origin), expected.as_ref())
                        },
                    )?;
                report.git_versions += 1;
                dirs.push(DirVersionBytes {
                    manifest,
                    version,
                    bytes: g.bytes,
                });
                continue;
            }
            let manifest = match Manifest::parse(&g.bytes, Path::new(&g.origin), expected.as_ref())
            {
                Ok(m) => m,
                // Say which ref holds it, so the user can fix or delete that branch.
                Err(_) => {
                    let origin = tree.describe(&g);
                    Manifest::parse(&g.bytes, Path::new(&origin), expected.as_ref())?
                }
            };
            report.git_versions += 1;
            roots.push((
                g.origin,
                WorktreeManifest {
                    manifest,
                    version,
                    bytes: g.bytes,
                },
            ));
        }
        Ok(roots)
    }

    /// Deletes objects nothing needs. Takes the repository lock exclusively, and the deltas lock
    /// (waits for a background repack: it may be encoding against an object gc would delete).
    pub fn gc(&self, opts: &GcOptions<'_>) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let _deltas = self.deltas_lock(true)?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let mut dir_roots = Vec::new();
        let roots = self.gc_roots(&mut report, &mut dir_roots)?;
        let mut keep: HashSet<ObjectId> = HashSet::new();
        // Directory units keep their whole history: every version the local store has, with
        // its listing, packs and chunks. A listing that cannot be read stops gc.
        let mut dir_versions: HashSet<ObjectId> = HashSet::new();
        for d in &dir_roots {
            keep.insert(d.version);
            for v in self.dir_history(d)? {
                keep.insert(v.version);
                let Some(m) = v.manifest else { continue };
                if !dir_versions.insert(v.version) {
                    continue;
                }
                if let Some(objs) = self.dir_objects(&m, None)? {
                    keep.extend(objs.into_iter().map(|(id, _)| id));
                }
            }
        }
        for (_, wt) in &roots {
            // Every root is kept whatever the mode: git (or the work tree) names it.
            keep.insert(wt.version);
            keep.extend(wt.manifest.chunks.iter().map(|c| c.id));
        }
        // History manifests that are not kept, newest first: deleted before anything else.
        let mut dropped_versions: Vec<ObjectId> = Vec::new();
        // Objects of dropped versions → (file, newest dropped version naming them).
        let mut dropped: HashMap<ObjectId, (String, ObjectId)> = HashMap::new();
        let mut walked: HashSet<ObjectId> = HashSet::new();
        let root_versions: HashSet<ObjectId> = roots.iter().map(|(_, wt)| wt.version).collect();
        let mut kept_versions: HashSet<ObjectId> = HashSet::new();
        for (path, wt) in &roots {
            for node in self.history(wt)? {
                let v = node.version();
                if v != wt.version && !walked.insert(v) {
                    break; // the rest of this history was walked from another root
                }
                let kept = root_versions.contains(&v) || opts.mode == GcMode::KeepHistory;
                match &node {
                    HistoryNode::Present { version, manifest } if kept => {
                        kept_versions.insert(*version);
                        keep.insert(*version);
                        keep.extend(manifest.chunks.iter().map(|c| c.id));
                    }
                    HistoryNode::Unreadable { version, reason } if kept => {
                        return Err(Error::Repo(RepoError::HistoryUnreadable {
                            path: path.into(),
                            version: *version,
                            reason: reason.clone(),
                        }))
                    }
                    HistoryNode::Present { version, manifest } => {
                        dropped_versions.push(*version);
                        let file = manifest.path.as_str().to_string();
                        for id in
                            std::iter::once(*version).chain(manifest.chunks.iter().map(|c| c.id))
                        {
                            dropped
                                .entry(id)
                                .or_insert_with(|| (file.clone(), *version));
                        }
                    }
                    HistoryNode::Unreadable { version, .. } => dropped_versions.push(*version),
                    HistoryNode::Missing { .. } => {}
                }
            }
        }
        report.versions_kept = kept_versions.len() + dir_versions.len();
        let all = self.store().list()?;
        report.objects_total = all.len();
        report.objects_referenced = all.iter().filter(|id| keep.contains(id)).count();
        let present: HashSet<&ObjectId> = all.iter().collect();
        let mut order: Vec<ObjectId> = Vec::new();
        let mut queued: HashSet<ObjectId> = HashSet::new();
        for v in dropped_versions.iter().chain(all.iter()) {
            if !keep.contains(v) && present.contains(v) && queued.insert(*v) {
                order.push(*v);
            }
        }
        // Of the dropped versions' objects, those that may exist nowhere else.
        let at_risk: Vec<ObjectId> = order
            .iter()
            .filter(|id| dropped.contains_key(id))
            .copied()
            .collect();
        let (unpushed, on_remote): (HashSet<ObjectId>, bool) = match opts.unpushed {
            Unpushed::Delete => (HashSet::new(), false),
            Unpushed::NoRemote => (at_risk.iter().copied().collect(), false),
            Unpushed::Remote { name, missing } => {
                report.remote = Some(name.to_string());
                if at_risk.is_empty() {
                    (HashSet::new(), true)
                } else {
                    match missing(&at_risk) {
                        Ok(m) => (m, true),
                        Err(e) => {
                            report.remote_error = Some(e.to_string());
                            (at_risk.iter().copied().collect(), false)
                        }
                    }
                }
            }
        };
        let now = SystemTime::now();
        let young = |md: &fs::Metadata| {
            md.modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age < opts.grace)
        };
        // Sort the candidates first: an object that stays (unpushed, recent) keeps its delta base.
        let mut doomed: Vec<(ObjectId, u64)> = Vec::new();
        // Unreferenced objects that stay all the same.
        let mut staying: Vec<ObjectId> = Vec::new();
        for id in order {
            let p = self.store().path_of(&id);
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading", p)(e)),
            };
            if unpushed.contains(&id) {
                report.objects_unpushed += 1;
                report.bytes_unpushed += md.len();
                staying.push(id);
                continue;
            }
            if young(&md) {
                report.objects_recent += 1;
                report.bytes_recent += md.len();
                staying.push(id);
                continue;
            }
            doomed.push((id, md.len()));
        }
        // Kept chunks stored as deltas of objects that go (a version reset away, its chunks the
        // bases of the versions kept) are stored whole again first: otherwise every base of
        // every deleted newer version would stay, and the version now newest would be read
        // through them.
        // (Objects that stay for another reason, unpushed or recent, keep their bases anyway.)
        let their_bases = self.delta_bases_of(&staying, &HashSet::new())?;
        let going: HashSet<ObjectId> = doomed
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !their_bases.contains(id))
            .collect();
        let mut whole: HashSet<ObjectId> = HashSet::new();
        let mut encoder = crate::codec::Encoder::new();
        let mut kept_sorted: Vec<&ObjectId> = keep.iter().collect();
        kept_sorted.sort();
        for id in kept_sorted {
            let Ok(Some((base, _))) = self.store().delta_base(id) else {
                continue;
            };
            if !going.contains(&base) {
                continue;
            }
            if opts.dry_run {
                whole.insert(*id);
                continue;
            }
            // A chain that cannot be read is left as it is (its bases stay); verify names it.
            if let Ok(Some(size)) = self.store().restore_whole(id, &mut encoder) {
                whole.insert(*id);
                report.bytes_restored_whole += size;
            }
        }
        report.objects_restored_whole = whole.len();
        let protected: Vec<ObjectId> = keep.iter().copied().chain(staying).collect();
        let bases = self.delta_bases_of(&protected, &whole)?;
        for (id, len) in doomed {
            if bases.contains(&id) {
                report.objects_referenced += 1;
                continue;
            }
            if !opts.dry_run {
                crate::crash_point!("gc-before-delete");
                self.store().delete(&id)?;
            }
            report.objects_deleted += 1;
            report.bytes_deleted += len;
            report.deleted.push(GcItem {
                id,
                bytes: len,
                reason: match dropped.get(&id) {
                    Some((path, version)) => GcReason::DroppedVersion {
                        path: path.clone(),
                        version: *version,
                        on_remote,
                    },
                    None => GcReason::Unreferenced,
                },
            });
        }
        self.remove_stale_temp_files(opts, &young, &mut report)?;
        Ok(report)
    }

    /// Every object the delta objects among `ids` are built on, through their whole chains: gc
    /// deletes none of them. An object whose format this nshard does not read may be a delta
    /// too, so it stops gc rather than risk its base. Objects in `whole` count as standalone
    /// (in a dry run, those a real run would store whole).
    fn delta_bases_of(
        &self,
        ids: &[ObjectId],
        whole: &HashSet<ObjectId>,
    ) -> Result<HashSet<ObjectId>> {
        let mut bases = HashSet::new();
        for id in ids {
            let mut cur = *id;
            for _ in 0..crate::codec::MAX_CHAIN {
                if whole.contains(&cur) {
                    break;
                }
                match self.store().delta_base(&cur) {
                    Ok(Some((base, _))) if bases.insert(base) => cur = base,
                    Err(e @ Error::Store(StoreError::UnsupportedFormat { .. })) => return Err(e),
                    _ => break,
                }
            }
        }
        Ok(bases)
    }

    /// Temporary files of writers killed mid-write. Under the exclusive lock no writer of this
    /// repository is running; the grace period covers writers that do not lock.
    fn remove_stale_temp_files(
        &self,
        opts: &GcOptions<'_>,
        young: &dyn Fn(&fs::Metadata) -> bool,
        report: &mut GcReport,
    ) -> Result<()> {
        let tmp = self.tmp_dir();
        let entries = match fs::read_dir(&tmp) {
            Ok(rd) => rd.collect::<io::Result<Vec<_>>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(Error::io("listing", &tmp))?;
        for ent in entries {
            let Ok(md) = ent.metadata() else { continue };
            if !md.is_file() || young(&md) {
                continue;
            }
            if !opts.dry_run {
                match fs::remove_file(ent.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("deleting", ent.path())(e)),
                }
            }
            report.temp_files_deleted += 1;
            report.temp_bytes_deleted += md.len();
        }
        Ok(())
    }
}
