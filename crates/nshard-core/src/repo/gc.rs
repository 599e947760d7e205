//! `gc`: delete local objects that no kept manifest references.
//!
//! Kept: every object a work-tree manifest references (its chunks and its own manifest object),
//! the same for every manifest recorded in git (at the tip of any branch, tag, remote-tracking ref
//! or the stash, and in the index: see `gitrefs`), and by default the whole history reachable from
//! those manifests through the store. Safety:
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

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::history::HistoryNode;
use super::{gitrefs, Repo, WorktreeManifest};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::manifest::Manifest;

/// Which manifests' objects gc keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcMode {
    /// The work-tree manifests and every older version reachable from them (default).
    KeepHistory,
    /// Only the work-tree manifests: older versions must be pulled again to be used.
    OnlyCurrent,
}

/// Options of a gc.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// What to keep.
    pub mode: GcMode,
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Never delete objects or temporary files modified less than this long ago.
    pub grace: Duration,
}

/// What gc did (or would do, with `dry_run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Work-tree manifests found.
    pub files: usize,
    /// Other versions found in git (other branches, tags, remote-tracking refs, the stash, the
    /// index), kept like the work tree's.
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
    /// Stale temporary files removed from `.shard/tmp` (left by interrupted writers).
    pub temp_files_deleted: usize,
    /// Their size.
    pub temp_bytes_deleted: u64,
}

impl Repo {
    /// Deletes unreferenced local objects. Takes the repository lock exclusively.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let mut keep: HashSet<ObjectId> = HashSet::new();
        // History manifests that are not kept, newest first: deleted before anything else.
        let mut dropped_versions: Vec<ObjectId> = Vec::new();
        // (data path for messages, manifest) of every version to start from.
        let mut roots: Vec<(String, WorktreeManifest)> = Vec::new();
        for path in self.scan_worktree()?.1 {
            // An invalid manifest is an error here: gc cannot tell what it references.
            let Some(wt) = self.read_worktree_manifest(&path)? else {
                continue;
            };
            report.files += 1;
            roots.push((path.as_str().to_string(), wt));
        }
        if self.is_git_repo() {
            // Manifests on other branches, tags, remote-tracking refs, the stash and the index.
            let mut known: HashSet<ObjectId> = roots.iter().map(|(_, wt)| wt.version).collect();
            for g in gitrefs::manifests_in_git(&self.root)? {
                if g.bytes.is_empty() {
                    // References nothing (e.g. a `git add -N` placeholder in the index).
                    continue;
                }
                let version = ObjectId::of(&g.bytes);
                if !known.insert(version) {
                    continue;
                }
                let expected = g.path.data_path_of_manifest();
                let manifest = Manifest::parse(&g.bytes, Path::new(&g.origin), expected.as_ref())?;
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
        }
        for (path, wt) in &roots {
            for node in self.history(wt)? {
                let current = node.version() == wt.version;
                match (&node, current || opts.mode == GcMode::KeepHistory) {
                    (HistoryNode::Present { version, manifest }, true) => {
                        report.versions_kept += 1;
                        keep.insert(*version);
                        keep.extend(manifest.chunks.iter().map(|c| c.id));
                    }
                    (HistoryNode::Unreadable { version, reason }, true) => {
                        return Err(Error::HistoryUnreadable {
                            path: path.into(),
                            version: *version,
                            reason: reason.clone(),
                        })
                    }
                    (HistoryNode::Missing { .. }, _) => {}
                    (n, false) => dropped_versions.push(n.version()),
                }
            }
        }
        let all = self.store.list()?;
        report.objects_total = all.len();
        report.objects_referenced = all.iter().filter(|id| keep.contains(id)).count();
        let mut order: Vec<ObjectId> = Vec::new();
        let mut queued: HashSet<ObjectId> = HashSet::new();
        let present: HashSet<&ObjectId> = all.iter().collect();
        for v in dropped_versions.iter().chain(all.iter()) {
            if !keep.contains(v) && present.contains(v) && queued.insert(*v) {
                order.push(*v);
            }
        }
        let now = SystemTime::now();
        let young = |md: &fs::Metadata| {
            md.modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age < opts.grace)
        };
        for id in order {
            let p = self.store.path_of(&id);
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading", p)(e)),
            };
            if young(&md) {
                report.objects_recent += 1;
                report.bytes_recent += md.len();
                continue;
            }
            if !opts.dry_run {
                self.store.delete(&id)?;
            }
            report.objects_deleted += 1;
            report.bytes_deleted += md.len();
        }
        // Temporary files of writers killed mid-write. Under the exclusive lock no writer of this
        // repository is running; the grace period covers writers that do not lock.
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
        Ok(report)
    }
}
