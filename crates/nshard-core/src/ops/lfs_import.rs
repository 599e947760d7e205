//! `lfs import`: files stored with Git LFS become NeuroShard-tracked files, optionally with every
//! LFS version of the current branch's history as the file's parent chain.
//!
//! Per file, oldest version first: the LFS object comes from git-lfs's store (fetched with
//! `git lfs fetch` when absent, and removed again afterwards so disk use stays at about one LFS
//! object beside the NeuroShard store), is verified against its oid before anything is written,
//! and is committed as the next version (its commit's message and date). Then the manifest is
//! written, the file tracked, the newest version checked out where the work tree held only a
//! pointer, `.gitattributes` stops routing it to LFS, and git's index is updated for one
//! `git commit`: the file leaves the index, the manifest and the changed config files enter it.
//! Git history is never rewritten.

use std::path::Path;

use super::target::Target;
use super::CheckoutOptions;
use crate::error::{Error, GitError, RepoError, Result};
use crate::fsutil;
use crate::git::lfs::{self, AttrChange, LfsPointer};
use crate::git::GitTree;
use crate::id::ObjectId;
use crate::manifest::{Manifest, VersionInfo};
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::Repo;

/// Options of `lfs import`.
pub struct LfsImportOptions<'a> {
    /// Files or directories to import (relative to `cwd`); empty: every LFS file under the
    /// repository root.
    pub paths: Vec<std::path::PathBuf>,
    /// Import every LFS version of each file in the current branch's history.
    pub history: bool,
    /// Fetch LFS objects that are not local with `git lfs fetch`.
    pub fetch: bool,
    /// Stage the result in git's index.
    pub stage: bool,
    /// Progress sink.
    pub progress: &'a dyn Progress,
}

/// One version imported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LfsImportedVersion {
    /// The NeuroShard version.
    pub version: ObjectId,
    /// The LFS oid it came from.
    pub oid: ObjectId,
    /// The file's size.
    pub size: u64,
    /// The git commit that held it (`None`: the index).
    pub commit: Option<String>,
}

/// One file imported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LfsImportedFile {
    /// The file.
    pub path: RepoPath,
    /// Its versions, oldest first (the last is the work tree's).
    pub versions: Vec<LfsImportedVersion>,
    /// LFS objects fetched for the import and removed again afterwards.
    pub fetched: usize,
    /// Commits of the history that held the file as something else than an LFS pointer (left
    /// out).
    pub not_pointers: usize,
}

/// What `lfs import` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct LfsImportReport {
    /// The files, in path order.
    pub files: Vec<LfsImportedFile>,
    /// `.gitattributes` files changed.
    pub attributes_files: Vec<String>,
    /// Lines removed from them.
    pub attributes_removed: Vec<String>,
    /// Lines added to them.
    pub attributes_added: Vec<String>,
    /// Files with `filter=lfs` whose blob is the file itself (not imported).
    pub not_pointers: Vec<String>,
    /// Paths staged in git's index (relative to the top of the git work tree).
    pub staged: Vec<String>,
}

fn lfs_problem(msg: String) -> Error {
    Error::Git(GitError::Command(msg))
}

/// One file to import.
struct Import {
    path: RepoPath,
    /// The path relative to the top of the git work tree.
    git_path: String,
    /// Its versions, oldest first (the last is the index's).
    planned: Vec<Planned>,
    not_pointers: usize,
    /// The index's pointer.
    index: LfsPointer,
    /// Whether the work-tree file holds the index's version (else it is checked out).
    worktree_holds: bool,
    /// When it does: its metadata before it was hashed, and when that was (so that the stat
    /// cache can record it as the newest version, unless it changed since).
    worktree_seen: Option<(std::fs::Metadata, i128)>,
}

/// A version to import.
struct Planned {
    pointer: LfsPointer,
    commit: Option<String>,
    message: String,
    timestamp: String,
}

/// An RFC 3339 date with any offset, as the UTC timestamp manifests carry.
fn utc_timestamp(date: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(date, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(Manifest::now_timestamp)
}

impl Repo {
    /// Imports files stored with Git LFS (see the module documentation). Takes the repository
    /// lock.
    pub fn lfs_import(
        &mut self,
        cwd: &Path,
        opts: &LfsImportOptions<'_>,
    ) -> Result<LfsImportReport> {
        let tree = GitTree::find(self.root()).ok_or_else(|| {
            lfs_problem("`nshard lfs import` works in a git work tree, and this is none".into())
        })?;
        let top = tree.top.clone();
        let mut specs = Vec::new();
        for p in &opts.paths {
            let rp = self.resolve_user_path(cwd, p)?;
            specs.push(format!("{}{}", tree.prefix, rp.as_str()));
        }
        if specs.is_empty() && !tree.prefix.is_empty() {
            specs.push(tree.prefix.clone());
        }
        let (found, not_pointers) = lfs::lfs_files(&top, &specs)?;
        let mut report = LfsImportReport {
            not_pointers,
            ..Default::default()
        };
        if found.is_empty() {
            let what = if opts.paths.is_empty() {
                "no file here is stored with Git LFS (`git lfs ls-files` lists them)".to_string()
            } else {
                format!(
                    "{} {} not stored with Git LFS (`git lfs ls-files` lists what is)",
                    specs.join(", "),
                    if specs.len() == 1 { "is" } else { "are" }
                )
            };
            return Err(lfs_problem(what));
        }
        // Everything is checked before anything is written.
        let mut files: Vec<Import> = Vec::new();
        for f in &found {
            let Some(rel) = f.path.strip_prefix(tree.prefix.as_str()) else {
                continue;
            };
            let path = RepoPath::parse(rel)?;
            if self.read_worktree_manifest(&path)?.is_some() {
                return Err(lfs_problem(format!(
                    "{path} already has a NeuroShard manifest ({}); nothing was imported",
                    path.manifest_path()
                )));
            }
            let abs = path.to_path(self.root());
            let seen = (
                std::fs::symlink_metadata(&abs).ok(),
                crate::repo::statcache::now_ns(),
            );
            let holds = worktree_holds(&abs, &f.pointer, &path)?;
            let worktree_seen = match seen {
                (Some(md), at) if holds => Some((md, at)),
                _ => None,
            };
            let (mut planned, other) = if opts.history {
                let (hist, other) = lfs::lfs_history(&top, &f.path)?;
                let planned: Vec<Planned> = hist
                    .into_iter()
                    .map(|v| Planned {
                        pointer: v.pointer,
                        commit: Some(v.commit),
                        message: v.message,
                        timestamp: utc_timestamp(&v.date),
                    })
                    .collect();
                (planned, other)
            } else {
                (Vec::new(), 0)
            };
            if planned.last().map(|p| p.pointer) != Some(f.pointer) {
                planned.push(Planned {
                    pointer: f.pointer,
                    commit: None,
                    message: "imported from Git LFS".into(),
                    timestamp: Manifest::now_timestamp(),
                });
            }
            files.push(Import {
                path,
                git_path: f.path.clone(),
                planned,
                not_pointers: other,
                index: f.pointer,
                worktree_holds: holds,
                worktree_seen,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));

        // The manifests are written once every version of every file is stored: an import that
        // fails half-way leaves only objects nothing names (gc removes them), and can be rerun.
        let lock = self.lock(true)?;
        // Older versions are re-encoded as deltas as they are imported, in order.
        let _deltas = self.deltas_lock(true)?;
        let mut manifests_bytes = Vec::new();
        for f in &files {
            let (imported, bytes) = self.import_one(&top, f, opts)?;
            report.files.push(imported);
            manifests_bytes.push((f.path.manifest_path(), bytes));
        }
        for (mpath, bytes) in &manifests_bytes {
            fsutil::write_atomic_in(self.root(), mpath, bytes)?;
        }
        drop(lock);

        // Track the files, then check out those the work tree held only as pointers.
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        self.track(self.root().to_path_buf().as_path(), &names)?;
        // A work-tree file that already holds the newest version is recorded as holding it, as
        // commit records what it read: a later `git checkout` (its hook) then knows the file is
        // clean and replaces it, instead of taking it for uncommitted changes.
        let mut cache = self.stat_cache();
        for (f, imported) in files.iter().zip(&report.files) {
            let (Some((before, seen)), Some(newest)) = (&f.worktree_seen, imported.versions.last())
            else {
                continue;
            };
            let abs = f.path.to_path(self.root());
            if let Ok(md) = std::fs::symlink_metadata(&abs) {
                let same =
                    fsutil::StatKey::of(&md).same(&fsutil::StatKey::of(before), self.trust_ctime());
                if same {
                    cache.set(
                        f.path.as_str(),
                        crate::repo::statcache::StatEntry::new(
                            &md,
                            f.index.oid,
                            newest.version,
                            *seen,
                        ),
                    );
                }
            }
        }
        cache.save()?;
        for f in files.iter().filter(|f| !f.worktree_holds) {
            let checked = self.checkout(
                &[Target::File(f.path.clone())],
                &CheckoutOptions {
                    version: None,
                    force: true,
                    keep_removed: &[],
                    restore: false,
                    progress: opts.progress,
                },
            )?;
            for c in checked {
                c.result?;
            }
        }

        // Git: LFS stops routing them, the index takes the manifests.
        let git_paths: Vec<String> = files.iter().map(|f| f.git_path.clone()).collect();
        let manifests: Vec<String> = files
            .iter()
            .map(|f| format!("{}{}", tree.prefix, f.path.manifest_path()))
            .collect();
        let AttrChange {
            files: attr_files,
            removed,
            added,
        } = lfs::stop_lfs_for(&top, &git_paths, &manifests)?;
        report.attributes_files = attr_files.clone();
        report.attributes_removed = removed;
        report.attributes_added = added;
        if opts.stage {
            let mut add: Vec<String> = manifests.clone();
            add.extend(attr_files);
            for extra in [".gitignore", ".shard/config.toml", ".shard/.gitignore"] {
                let p = format!("{}{extra}", tree.prefix);
                if top.join(&p).is_file() {
                    add.push(p);
                }
            }
            lfs::stage_import(&top, &git_paths, &add)?;
            report.staged = git_paths.iter().chain(&add).cloned().collect();
        }
        Ok(report)
    }

    /// Imports the planned versions of one file, oldest first; returns what was imported and
    /// the newest version's manifest.
    fn import_one(
        &self,
        top: &Path,
        f: &Import,
        opts: &LfsImportOptions<'_>,
    ) -> Result<(LfsImportedFile, Vec<u8>)> {
        let (path, git_path) = (&f.path, f.git_path.as_str());
        let abs = path.to_path(self.root());
        let mut out = LfsImportedFile {
            path: path.clone(),
            versions: Vec::new(),
            fetched: 0,
            not_pointers: f.not_pointers,
        };
        let mut parent: Option<(Manifest, ObjectId)> = None;
        let mut final_bytes = Vec::new();
        for p in &f.planned {
            let oid = p.pointer.oid;
            let object = lfs::lfs_object_path(top, &oid)?;
            // The work tree's copy (verified when the import was planned) serves for the index's
            // version when git-lfs has none.
            let worktree_has_it = f.worktree_holds && p.pointer == f.index;
            let mut fetched = false;
            let source = if object.is_file() {
                object.clone()
            } else if worktree_has_it {
                abs.clone()
            } else if opts.fetch {
                let rev = p.commit.clone().unwrap_or_else(|| "HEAD".into());
                lfs::lfs_fetch(top, std::slice::from_ref(&rev), &[git_path.to_string()])?;
                if !object.is_file() {
                    return Err(not_local(git_path, &oid, p.commit.as_deref()));
                }
                fetched = true;
                object.clone()
            } else {
                return Err(not_local(git_path, &oid, p.commit.as_deref()));
            };
            // Verified before anything of it is written (the work tree's copy was, when planned).
            let md = std::fs::metadata(&source).map_err(Error::io("reading", &source))?;
            let actual = if source == abs {
                oid
            } else {
                fsutil::hash_file(&source)?
            };
            if actual != oid || md.len() != p.pointer.size {
                return Err(Error::Repo(RepoError::FileHashMismatch {
                    path: source.clone(),
                    expected: oid,
                    actual,
                }));
            }
            let stored = self.ingest_into_store(&source, path.as_str(), opts.progress)?;
            if stored.sha256 != oid {
                return Err(Error::Repo(RepoError::FileHashMismatch {
                    path: source.clone(),
                    expected: oid,
                    actual: stored.sha256,
                }));
            }
            let info = VersionInfo {
                message: if p.message.trim().is_empty() {
                    "imported from Git LFS".into()
                } else {
                    p.message.clone()
                },
                timestamp: p.timestamp.clone(),
                parent: parent.as_ref().map(|(_, v)| *v),
            };
            // git-lfs's store says nothing of the execute bit (the index's mode does, and
            // checkout of a pointer file sets none).
            let (manifest, bytes, version) = self.store_version(path, stored, info, false)?;
            if let Some((pm, _)) = &parent {
                self.encode_parent_as_deltas(&manifest, pm, opts.progress);
            }
            if fetched {
                // Still on the LFS server; the import keeps one object at a time.
                let _ = std::fs::remove_file(&object);
                out.fetched += 1;
            }
            out.versions.push(LfsImportedVersion {
                version,
                oid,
                size: p.pointer.size,
                commit: p.commit.clone(),
            });
            final_bytes = bytes;
            parent = Some((manifest, version));
        }
        Ok((out, final_bytes))
    }
}

fn not_local(git_path: &str, oid: &ObjectId, commit: Option<&str>) -> Error {
    let rev = commit.unwrap_or("HEAD");
    let include = crate::portable::shell_word(&format!(
        "--include={}",
        crate::git::lfs::include_pattern(git_path)
    ));
    lfs_problem(format!(
        "the Git LFS object of {git_path} at {} (sha256 {}) is not in this clone; fetch it with \
         `git lfs fetch origin {rev} {include}` (or `git lfs fetch --all`) and run the import \
         again; nothing was imported",
        &rev[..rev.len().min(12)],
        oid.to_hex()
    ))
}

/// Whether the work-tree file holds the content the index's pointer names (`false`: it holds the
/// pointer itself, not checked out by git-lfs, or is missing). Anything else holds changes git
/// has not seen, and is refused.
fn worktree_holds(abs: &Path, pointer: &LfsPointer, path: &RepoPath) -> Result<bool> {
    let Ok(md) = std::fs::symlink_metadata(abs) else {
        return Ok(false);
    };
    if !md.is_file() {
        return Err(lfs_problem(format!(
            "{path} is not a regular file in the work tree"
        )));
    }
    if md.len() <= lfs::MAX_POINTER_BYTES {
        let b = std::fs::read(abs).map_err(Error::io("reading", abs))?;
        if LfsPointer::parse(&b) == Some(*pointer) {
            return Ok(false);
        }
    }
    if md.len() == pointer.size && fsutil::hash_file(abs)? == pointer.oid {
        return Ok(true);
    }
    Err(lfs_problem(format!(
        "{path} has changes git has not seen (it is neither its LFS pointer nor the file it \
         names); commit them with git, or `git checkout -- {path}`, then import; nothing was \
         imported"
    )))
}
