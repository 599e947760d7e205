//! `commit`: chunk, hash, compress and store every changed tracked file, then write its manifest.
//!
//! The reading, cutting, hashing and storing is the [`crate::ingest`] pipeline; commit decides
//! which files to read (the stat cache), refuses stale files, and writes the manifest object and
//! the work-tree manifest once every chunk is durable.

use std::collections::BTreeMap;
use std::fs;

use super::deltas::DeltaReport;
use super::target::{Selection, Target};
use crate::codec::{DataHint, Encoder};
use crate::error::Untracked;
use crate::error::{Error, Result};
use crate::error::{RepoError, VersionOrder};
use crate::formats::plan::Params;
use crate::fsutil;
use crate::id::ObjectId;
use crate::ingest;
use crate::manifest::{Manifest, VersionInfo, MAX_MANIFEST_BYTES, MAX_MESSAGE_BYTES};
use crate::outcome::CommitOutcome;
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::statcache::{now_ns, StatCache, StatEntry};
use crate::repo::Repo;

/// Options of a commit.
pub struct CommitOptions<'a> {
    /// The commit message (required, non-empty).
    pub message: String,
    /// Commit files that hold an older committed version than their manifest (a revert); without
    /// it they are refused, so a stale file after `git pull` never silently undoes a newer version.
    pub force: bool,
    /// Progress sink.
    pub progress: &'a dyn Progress,
}

/// The result for one file.
#[derive(Debug)]
pub struct FileCommit {
    /// The data file.
    pub path: RepoPath,
    /// What happened, or why it failed (other files are still committed).
    pub result: Result<CommitOutcome>,
}

impl Repo {
    /// Commits what `sel` selects: every tracked file and unit when it is everything, else the
    /// units and tracked files it names (a named file or unit that is not tracked is an error).
    /// Takes the repository lock.
    pub fn commit(&self, sel: &Selection, opts: &CommitOptions<'_>) -> Result<Vec<FileCommit>> {
        let message = opts.message.trim().to_string();
        if message.is_empty() || message.len() > MAX_MESSAGE_BYTES {
            return Err(Error::invalid_manifest(
                "commit message",
                "must be non-empty and at most 64 KiB",
            ));
        }
        let _lock = self.lock(true)?;
        // Units are committed when the config tracks them (`untrack` stops that; a manifest
        // alone is not enough, as for files).
        let configured = |u: &RepoPath| self.config().dirs.iter().any(|d| d == u.as_str());
        // Each unit with the paths inside it to commit (`None`: all of it), as `git commit PATH`
        // records only the paths named.
        let mut unit_targets: BTreeMap<RepoPath, Option<Vec<String>>> = BTreeMap::new();
        for t in sel.units() {
            match t {
                Target::Unit { unit, sub } if configured(unit) => {
                    let only = unit_targets
                        .entry(unit.clone())
                        .or_insert_with(|| Some(Vec::new()));
                    match (only.as_mut(), sub) {
                        (Some(subs), Some(sub)) => subs.push(sub.clone()),
                        _ => *only = None,
                    }
                }
                Target::Unit { unit, .. } if !sel.is_everything() => {
                    return Err(Error::Repo(RepoError::NotTracked {
                        path: unit.as_str().into(),
                        reason: Untracked::Unit,
                    }))
                }
                _ => {}
            }
        }
        let mut targets: Vec<RepoPath> = self
            .tracked_files()?
            .into_iter()
            .filter(|p| sel.matches_file(p))
            .collect();
        for p in sel.named_files() {
            if !self.is_tracked(p) {
                return Err(Error::Repo(RepoError::NotTracked {
                    path: p.as_str().into(),
                    reason: Untracked::File,
                }));
            }
            if !targets.contains(p) {
                targets.push(p.clone());
            }
        }
        let mut cache = self.stat_cache();
        let mut out = Vec::new();
        for (unit, only) in unit_targets {
            let result = self.commit_dir(
                &unit,
                only.as_deref(),
                &message,
                &mut cache,
                opts.force,
                opts.progress,
            );
            out.push(FileCommit { path: unit, result });
            cache.save()?;
        }
        for path in targets {
            let result = self.commit_file(&path, &message, &mut cache, opts);
            out.push(FileCommit { path, result });
            cache.save()?;
        }
        // Files that appeared under a tracked directory or glob since `track` ran must not reach
        // git either.
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(out)
    }

    fn commit_file(
        &self,
        path: &RepoPath,
        message: &str,
        cache: &mut StatCache,
        opts: &CommitOptions<'_>,
    ) -> Result<CommitOutcome> {
        let progress = opts.progress;
        let abs = fsutil::existing_file_in(self.root(), path)?;
        let md0 = fs::symlink_metadata(&abs).map_err(Error::io("reading", &abs))?;
        let parent = self.read_worktree_manifest(path)?;
        // The stat cache records the version the file last held (written or committed by nshard,
        // or recognised by status). When that is not the manifest's version, the file holds an
        // older or newer version than the manifest names, or was edited from one.
        let outdated = |sha: &ObjectId, cache: &StatCache| -> Result<()> {
            match (cache.get(path.as_str()), &parent) {
                (Some(e), Some(p)) if !opts.force && e.version != p.version => {
                    if e.sha256 == *sha {
                        return Err(Error::Repo(RepoError::Outdated {
                            path: path.to_string(),
                            file_version: e.version,
                            manifest_version: p.version,
                            file_is: self.version_order(p, &e.version)?,
                        }));
                    }
                    if *sha == p.manifest.sha256 {
                        // Edited into the manifest's own content: nothing is undone.
                        return Ok(());
                    }
                    // Refused where the manifest's version is proven newer than the one the
                    // edits started from (that one is in its history): committing would undo
                    // it; and where the local history does not reach that far (a colleague's
                    // versions in between were never pulled), so it cannot tell. Edits from a
                    // newer version hold the manifest's changes, and edits of a history proven
                    // apart (all of it here) undo nothing of it.
                    let refuse = |file_is| {
                        Err(Error::Repo(RepoError::EditedFromOther {
                            path: path.to_string(),
                            edited_from: e.version,
                            manifest_version: p.version,
                            file_is,
                        }))
                    };
                    match self.version_order(p, &e.version)? {
                        VersionOrder::Older => refuse(VersionOrder::Older),
                        VersionOrder::Unrelated if !self.history_complete(p)? => {
                            refuse(VersionOrder::Unrelated)
                        }
                        _ => Ok(()),
                    }
                }
                _ => Ok(()),
            }
        };
        if let (Some(entry), Some(p)) = (cache.fresh(path.as_str(), &md0), &parent) {
            // Unchanged, unless the store lost some of its chunks (gc'd, or quarantined as
            // corrupt): then the file is read again, which re-stores them.
            if entry.sha256 == p.manifest.sha256
                && p.manifest.executable == crate::dirunit::is_exec(&md0)
                && self.missing_chunks(&p.manifest).is_empty()
            {
                return Ok(CommitOutcome::Unchanged {
                    version: p.version,
                    restored: 0,
                });
            }
            outdated(&entry.sha256, cache)?;
        }
        let observed = now_ns();
        let stored = self.ingest_into_store(&abs, path.as_str(), progress)?;
        let md1 = &stored.metadata;
        outdated(&stored.sha256, cache)?;
        if let Some(p) = parent
            .as_ref()
            .filter(|p| p.manifest.sha256 != stored.sha256)
        {
            // An older version copied back by hand (the cache has no record of it): a revert,
            // which takes --force, as when nshard itself wrote it. A history that cannot be read
            // does not stop the commit.
            let older = (!opts.force)
                .then(|| self.ancestor_where(p, |m| m.sha256 == stored.sha256))
                .flatten();
            if let Some(older) = older {
                // Recorded as holding that version (its chunks are stored now), as status
                // records it: `nshard checkout`, which the hint names, then replaces it.
                cache.set(
                    path.as_str(),
                    StatEntry::new(md1, stored.sha256, older, observed),
                );
                return Err(Error::Repo(RepoError::Outdated {
                    path: path.to_string(),
                    file_version: older,
                    manifest_version: p.version,
                    file_is: VersionOrder::Older,
                }));
            }
        }
        if let Some(p) = &parent {
            if p.manifest.sha256 == stored.sha256
                && p.manifest.chunks == stored.chunks
                && p.manifest.executable == crate::dirunit::is_exec(md1)
            {
                cache.set(
                    path.as_str(),
                    StatEntry::new(md1, stored.sha256, p.version, observed),
                );
                return Ok(CommitOutcome::Unchanged {
                    version: p.version,
                    restored: stored.chunks_new,
                });
            }
        }
        let version_info = VersionInfo {
            message: message.to_string(),
            timestamp: Manifest::now_timestamp(),
            parent: parent.as_ref().map(|p| p.version),
        };
        let chunks_new = stored.chunks_new;
        let (new_bytes, stored_bytes) = (stored.new_bytes, stored.stored_bytes);
        let md1 = stored.metadata.clone();
        let exec = crate::dirunit::is_exec(&md1);
        let (manifest, bytes, version) = self.store_version(path, stored, version_info, exec)?;
        crate::crash_point!("commit-before-manifest");
        let mpath = path.manifest_path();
        fsutil::write_atomic_in(self.root(), &mpath, &bytes)?;
        cache.set(
            path.as_str(),
            StatEntry::new(&md1, manifest.sha256, version, observed),
        );
        // The previous version becomes deltas of this one (this one stays whole): queued, then
        // re-encoded now or by a background `nshard repack`. Only an encoding changes, never an
        // id: a crash anywhere here loses nothing (a queued pair is redone by the next repack).
        let queued = match &parent {
            Some(p) => self
                .queue_deltas((&version, &manifest), (&p.version, &p.manifest))
                .unwrap_or(false),
            None => false,
        };
        let mut delta_pending = queued && self.config().delta_background();
        let mut deltas = DeltaReport::default();
        if queued && !delta_pending {
            // The re-encoding takes a while: the record of what the file holds is saved first,
            // so that a kill meanwhile does not leave it naming the previous version (the next
            // commit would take the file for one edited from that version).
            cache.save()?;
            match self.repack_reporting(progress, Some(&version)) {
                Ok((_, mine)) => deltas = mine,
                // Deltas only save space: the pair stays queued for the next repack.
                Err(_) => delta_pending = true,
            }
        }
        let total = manifest.chunks.len();
        Ok(CommitOutcome::Committed {
            version,
            parent: manifest.version.parent,
            size: manifest.size,
            chunks_total: total,
            chunks_new,
            chunks_reused: total - chunks_new,
            new_bytes,
            stored_bytes,
            delta_chunks: deltas.chunks,
            delta_bytes_before: deltas.bytes_before,
            delta_bytes_after: deltas.bytes_after,
            delta_pending,
        })
    }

    /// Reads `abs` through the ingest pipeline with the repository's chunking, storing the chunks
    /// the local store lacks (progress under `label`).
    pub(crate) fn ingest_into_store(
        &self,
        abs: &std::path::Path,
        label: &str,
        progress: &dyn Progress,
    ) -> Result<ingest::Ingested> {
        ingest::ingest_file(
            abs,
            &ingest::Options {
                params: Params::ByKind(self.config().chunking),
                store: Some(self.store()),
                progress,
                label,
                trust_ctime: self.trust_ctime(),
                sync_dirs: true,
            },
        )
    }

    /// Builds the manifest of a version of `path` from what ingest read, and stores its manifest
    /// object (before anything names it). Returns the manifest, its bytes and the version id.
    pub(crate) fn store_version(
        &self,
        path: &RepoPath,
        stored: ingest::Ingested,
        version: VersionInfo,
        executable: bool,
    ) -> Result<(Manifest, Vec<u8>, ObjectId)> {
        let mut manifest = Manifest {
            format: String::new(),
            path: path.clone(),
            size: stored.size,
            sha256: stored.sha256,
            chunking: stored.chunking,
            chunks: stored.chunks,
            version,
            tensors: stored.tensors.ok(),
            executable,
        };
        manifest.format = manifest.needed_format().to_string();
        let mut bytes = manifest.to_bytes();
        if bytes.len() as u64 > MAX_MANIFEST_BYTES && manifest.tensors.take().is_some() {
            // A tensor table too large for a manifest is left out rather than making it unreadable.
            manifest.format = manifest.needed_format().to_string();
            bytes = manifest.to_bytes();
        }
        let id = ObjectId::of(&bytes);
        let enc = Encoder::new().encode(&bytes, DataHint::Unknown);
        self.store().put_trusted(&id, &enc)?;
        Ok((manifest, bytes, id))
    }
}
