//! `mv`: renames a committed file together with its manifest, keeping its history. The manifest
//! records the file's path, so the moved file gets a new version (same chunks, the new path) whose
//! parent is the version it had: `log` and `diff --from` reach across the rename.

use std::fs;

use crate::codec::{DataHint, Encoder};
use crate::error::{Error, ManifestError, RepoError, Result, Untracked};
use crate::fsutil;
use crate::id::ObjectId;
use crate::manifest::{Manifest, VersionInfo};
use crate::path::RepoPath;
use crate::repo::statcache::StatCache;
use crate::repo::Repo;

/// What `mv` did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    /// The old path.
    pub from: RepoPath,
    /// The new path.
    pub to: RepoPath,
    /// The version recorded at the new path.
    pub version: ObjectId,
    /// The version the file had at the old path (the new version's parent).
    pub parent: ObjectId,
    /// Whether the data file was there to move (a file not checked out moves its manifest only).
    pub data_moved: bool,
}

impl Repo {
    /// Moves the committed file `src` and its manifest to `dst` (both given relative to `cwd`),
    /// recording a version at `dst` whose parent is `src`'s version, and updates the tracked
    /// entries (an exact entry is renamed; a `dst` no entry matches gets one) and `.gitignore`.
    /// Refuses a `dst` that exists (file or manifest), a directory unit, and a file with
    /// uncommitted changes is moved as it is (its changes stay uncommitted). Takes the lock.
    pub fn move_file(
        &mut self,
        cwd: &std::path::Path,
        src: &std::path::Path,
        dst: &std::path::Path,
    ) -> Result<Moved> {
        let from = self.resolve_user_path(cwd, src)?;
        let to = self.resolve_user_path(cwd, dst)?;
        let units = self.dir_units()?;
        if let Some((u, sub)) = self.unit_of(&units, &from) {
            let reason = match sub {
                None => "is a directory unit: `nshard mv` renames single tracked files".to_string(),
                Some(_) => format!(
                    "is inside the directory unit {u}/: its files are versioned by the unit's listing (rename it with your shell, then `nshard commit`)"
                ),
            };
            return Err(Error::Repo(RepoError::InUnit {
                path: from.to_string(),
                reason,
            }));
        }
        if let Some((u, _)) = self.unit_of(&units, &to) {
            return Err(Error::Repo(RepoError::InUnit {
                path: to.to_string(),
                reason: format!(
                    "is inside the directory unit {u}/: files there are versioned by the unit's listing, not by manifests of their own (copy the file there with your shell, then `nshard commit` the unit)"
                ),
            }));
        }
        let _lock = self.lock(true)?;
        let wt = self.read_worktree_manifest(&from)?.ok_or_else(|| {
            Error::Repo(RepoError::NotTracked {
                path: src.to_path_buf(),
                reason: Untracked::NoManifest,
            })
        })?;
        let refuse = |reason: &'static str| {
            Error::Manifest(ManifestError::UnsafePath {
                path: to.as_str().into(),
                reason,
            })
        };
        if to == from {
            return Err(refuse("is where the file already is"));
        }
        let dst_abs = to.to_path(self.root());
        let dst_manifest = to.manifest_path().to_path(self.root());
        if fs::symlink_metadata(&dst_abs).is_ok() || fs::symlink_metadata(&dst_manifest).is_ok() {
            return Err(refuse("exists already (move it away first)"));
        }
        let mut manifest = Manifest {
            path: to.clone(),
            version: VersionInfo {
                message: format!("rename {from} to {to}"),
                timestamp: Manifest::now_timestamp(),
                parent: Some(wt.version),
            },
            ..wt.manifest.clone()
        };
        manifest.format = manifest.needed_format().to_string();
        let bytes = manifest.to_bytes();
        let version = ObjectId::of(&bytes);
        // The manifest object first, then the new manifest, the data, and last the old manifest:
        // a crash in between leaves both manifests (the old one reads as missing data), never a
        // file without one.
        let enc = Encoder::new().encode(&bytes, DataHint::Unknown);
        self.store().put_trusted(&version, &enc)?;
        fsutil::write_atomic_in(self.root(), &to.manifest_path(), &bytes)?;
        let src_abs = fsutil::existing_file_in(self.root(), &from).ok();
        let data_moved = match src_abs {
            Some(s) => {
                let d = fsutil::prepare_safe_destination(self.root(), &to)?;
                fs::rename(&s, &d).map_err(Error::io("moving", &s))?;
                true
            }
            None => false,
        };
        let old_manifest = from.manifest_path().to_path(self.root());
        fs::remove_file(&old_manifest).map_err(Error::io("removing", &old_manifest))?;
        // Tracked entries: an exact entry follows the file; otherwise the new path gets one when
        // nothing matches it.
        // A name with glob characters is written escaped (any other name as it is), so the entry
        // names only that file.
        let entry_of = |p: &RepoPath| crate::repo::escape_glob(p.as_str());
        let mut cfg = self.config().clone();
        if let Some(e) = cfg
            .track
            .iter_mut()
            .find(|e| e.as_str() == from.as_str() || **e == entry_of(&from))
        {
            *e = entry_of(&to);
        }
        self.save_config(cfg.clone())?;
        if !self.is_tracked(&to) {
            cfg.track.push(entry_of(&to));
            self.save_config(cfg)?;
        }
        // The stat cache entry moves with the file (same inode after a rename).
        let mut cache = self.stat_cache();
        cache.rename(from.as_str(), to.as_str(), version);
        cache.save()?;
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(Moved {
            from,
            to,
            version,
            parent: wt.version,
            data_moved,
        })
    }
}

/// What `rm` did to one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// The data file.
    pub path: RepoPath,
    /// The version its manifest named (its history stays in the store until gc).
    pub version: ObjectId,
    /// Whether the data file was deleted (not with `keep_file`, or when it was not there).
    pub file_deleted: bool,
    /// Whether an exact tracked entry was removed.
    pub untracked: bool,
}

impl Repo {
    /// `rm`: stops versioning the committed file `path` (given relative to `cwd`): removes its
    /// manifest, an exact tracked entry naming it, and the data file unless `keep_file`. Refuses a
    /// file whose content is not its committed version (uncommitted changes would be lost)
    /// unless `force`. Its versions stay in the store (and on remotes) until gc. Takes the lock.
    pub fn remove_file(
        &mut self,
        cwd: &std::path::Path,
        path: &std::path::Path,
        keep_file: bool,
        force: bool,
    ) -> Result<Removed> {
        let p = self.resolve_user_path(cwd, path)?;
        if let Some((u, sub)) = self.unit_of(&self.dir_units()?, &p) {
            let reason = match sub {
                None => format!(
                    "is a directory unit: `nshard rm` removes single committed files (`nshard untrack {u}/` stops versioning the unit)"
                ),
                Some(_) => format!(
                    "is inside the directory unit {u}/: delete it with your shell, then `nshard commit` the unit"
                ),
            };
            return Err(Error::Repo(RepoError::InUnit {
                path: p.to_string(),
                reason,
            }));
        }
        let wt = self.read_worktree_manifest(&p)?.ok_or_else(|| {
            Error::Repo(RepoError::NotTracked {
                path: path.to_path_buf(),
                reason: Untracked::NoManifest,
            })
        })?;
        let _lock = self.lock(true)?;
        let abs = fsutil::existing_file_in(self.root(), &p).ok();
        if let (Some(a), false, false) = (&abs, keep_file, force) {
            let same = fsutil::hash_file(a)? == wt.manifest.sha256;
            if !same {
                return Err(Error::Repo(RepoError::WouldOverwrite(p.as_str().into())));
            }
        }
        let mpath = p.manifest_path().to_path(self.root());
        fs::remove_file(&mpath).map_err(Error::io("removing", &mpath))?;
        let file_deleted = match abs {
            Some(a) if !keep_file => {
                fs::remove_file(&a).map_err(Error::io("removing", &a))?;
                true
            }
            _ => false,
        };
        let mut cfg = self.config().clone();
        let before = cfg.track.len();
        cfg.track
            .retain(|e| e.as_str() != p.as_str() && *e != crate::repo::escape_glob(p.as_str()));
        let untracked = cfg.track.len() != before;
        if untracked {
            self.save_config(cfg)?;
        }
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(Removed {
            path: p,
            version: wt.version,
            file_deleted,
            untracked,
        })
    }
}

pub use crate::dirunit::Unversioned;

impl Repo {
    /// After a git operation (checkout, merge, rebase) deleted the manifests `deleted` (each with
    /// its bytes in the commit before): deletes each data file that holds exactly the version its
    /// manifest named, and keeps a file with other content; for a directory unit's manifest, the
    /// same file by file (see `remove_unversioned_unit`). One lock, one read of the stat cache
    /// and of the units for the whole batch. Returns each data path with what became of it.
    pub fn remove_unversioned(
        &self,
        deleted: &[(RepoPath, Vec<u8>)],
    ) -> Result<Vec<(RepoPath, Result<Unversioned>)>> {
        let _lock = self.lock(true)?;
        let units = self.dir_units()?;
        let mut cache = self.stat_cache();
        let mut out = Vec::new();
        for (manifest, old) in deleted {
            let Some(data) = manifest.data_path_of_manifest() else {
                continue;
            };
            let r = self.remove_one_unversioned(manifest, &data, old, &units, &mut cache);
            out.push((data, r));
        }
        cache.save()?;
        Ok(out)
    }

    /// One manifest of [`Repo::remove_unversioned`].
    fn remove_one_unversioned(
        &self,
        manifest: &RepoPath,
        data: &RepoPath,
        old: &[u8],
        units: &[RepoPath],
        cache: &mut StatCache,
    ) -> Result<Unversioned> {
        let mpath = manifest.to_path(self.root());
        if fs::symlink_metadata(&mpath).is_ok() {
            return Ok(Unversioned::Untouched);
        }
        let Ok(m) = Manifest::parse(old, &mpath, Some(data)) else {
            return Ok(self
                .remove_unversioned_unit(data, old, cache)?
                .unwrap_or(Unversioned::Untouched));
        };
        // Still versioned, by a directory unit of the new tree (a dataset converted to a unit).
        if self.unit_of(units, data).is_some() {
            return Ok(Unversioned::Untouched);
        }
        let Ok(abs) = fsutil::existing_file_in(self.root(), data) else {
            return Ok(Unversioned::Untouched);
        };
        // The file is in git's index now: git itself versions (and just wrote) it here.
        if crate::git::git(
            self.root(),
            &["ls-files", "--error-unmatch", "--", data.as_str()],
        )
        .is_ok()
        {
            cache.remove(data.as_str());
            return Ok(Unversioned::InGit);
        }
        let md = fs::symlink_metadata(&abs).map_err(Error::io("reading", &abs))?;
        if !cache.holds(data.as_str(), &abs, &md, &m.sha256, m.size)? {
            return Ok(Unversioned::KeptChanged);
        }
        fs::remove_file(&abs).map_err(Error::io("removing", &abs))?;
        cache.remove(data.as_str());
        Ok(Unversioned::Deleted)
    }
}
