//! `status`: the state of every tracked file and every manifest in the work tree.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::statcache::{now_ns, StatCache, StatEntry};
use super::Repo;
use crate::error::{Error, Result};
use crate::fsutil::RepoPath;
use crate::id::{Hasher, ObjectId};
use crate::manifest::Manifest;

/// The state of one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum FileState {
    /// Committed, and the work-tree file matches the manifest.
    Unchanged,
    /// The work-tree file differs from its committed version.
    Modified,
    /// The file holds an older committed version than its manifest names (after `git pull`
    /// brought a newer manifest, or `checkout --version`): `nshard checkout` brings it up to date;
    /// `nshard commit --force` records it as the newest version instead (a revert).
    Outdated {
        /// The version the file holds.
        file_version: ObjectId,
    },
    /// Tracked but never committed.
    New,
    /// The manifest exists but the data file does not: `nshard checkout` needed (after `nshard pull`
    /// when `data_present` is false).
    Missing {
        /// Whether every chunk is in the local store.
        data_present: bool,
    },
    /// The file matches its manifest but the local store lacks some of its chunks.
    DataMissing {
        /// How many chunks are absent.
        missing_chunks: usize,
    },
    /// The manifest cannot be used.
    InvalidManifest {
        /// Why.
        reason: String,
    },
    /// The file or its manifest cannot be read safely (for example it is reached through a
    /// symlinked directory, or reading fails); the other files are still reported.
    Unreadable {
        /// Why.
        reason: String,
    },
}

impl FileState {
    fn with_version(self, v: Option<ObjectId>) -> (FileState, Option<ObjectId>) {
        (self, v)
    }
}

/// Status of one file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileStatus {
    /// The data file.
    pub path: RepoPath,
    /// Its state.
    #[serde(flatten)]
    pub state: FileState,
    /// Its committed version, if any.
    pub version: Option<ObjectId>,
    /// Whether a tracked entry matches it (false for a manifest whose file is no longer tracked).
    pub tracked: bool,
}

/// Streams a file through SHA-256.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<ObjectId> {
    let mut f = crate::fsutil::open_regular(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

impl Repo {
    /// The chunks of `m` that the local store lacks.
    pub fn missing_chunks(&self, m: &Manifest) -> Vec<ObjectId> {
        let mut seen = std::collections::HashSet::new();
        m.chunks
            .iter()
            .filter(|c| seen.insert(c.id) && !self.store.has(&c.id))
            .map(|c| c.id)
            .collect()
    }

    /// Status of every tracked file and every manifest, sorted by path. Files whose stat changed
    /// are re-hashed (like git), and the stat cache is refreshed.
    pub fn status(&self) -> Result<Vec<FileStatus>> {
        let (_, manifests) = self.scan_worktree()?;
        let tracked = self.tracked_files()?;
        let mut all: Vec<RepoPath> = tracked.iter().chain(manifests.iter()).cloned().collect();
        all.sort();
        all.dedup();
        let mut cache = StatCache::load(&self.dot.join("cache").join("stat.json"));
        let mut out = Vec::new();
        for path in all {
            let (state, version) = self.file_state(&path, &mut cache).unwrap_or_else(|e| {
                (
                    FileState::Unreadable {
                        reason: e.to_string(),
                    },
                    None,
                )
            });
            out.push(FileStatus {
                tracked: self.is_tracked(&path),
                path,
                state,
                version,
            });
        }
        // The cache is an optimisation: failing to save it must not fail status.
        let _ = cache.save();
        Ok(out)
    }

    fn file_state(
        &self,
        path: &RepoPath,
        cache: &mut StatCache,
    ) -> Result<(FileState, Option<ObjectId>)> {
        let wt = match self.read_worktree_manifest(path) {
            Ok(Some(w)) => w,
            Ok(None) => {
                // Only a file nshard could commit is `new`: not one behind a symlinked directory.
                match crate::fsutil::existing_file_in(&self.root, path) {
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                return Ok((FileState::New, None));
            }
            Err(e @ Error::InvalidManifest { .. }) => {
                return Ok((
                    FileState::InvalidManifest {
                        reason: e.to_string(),
                    },
                    None,
                ))
            }
            Err(e) => return Err(e),
        };
        let v = Some(wt.version);
        let abs = path.to_path(&self.root);
        let md = match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_file() => {
                // Never hash a file reached through a symlinked directory.
                crate::fsutil::existing_file_in(&self.root, path)?;
                md
            }
            // Replaced by a symlink, a FIFO, a directory…: not "missing", and never read.
            Ok(md) => return Err(Error::io("reading", &abs)(crate::fsutil::not_regular(&md))),
            Err(_) => {
                let data_present = self.missing_chunks(&wt.manifest).is_empty();
                return Ok((FileState::Missing { data_present }, v));
            }
        };
        let sha = match cache.fresh(path.as_str(), &md) {
            Some(e) => e.sha256,
            None => {
                let observed = now_ns();
                let sha = hash_file(&abs).map_err(Error::io("reading", &abs))?;
                if sha == wt.manifest.sha256 {
                    cache.set(
                        path.as_str(),
                        StatEntry::new(&md, sha, wt.version, observed),
                    );
                }
                sha
            }
        };
        if sha != wt.manifest.sha256 {
            // Content nshard itself committed or checked out earlier, while the manifest moved on
            // (a `git pull` brought a newer version, or `checkout --version` restored an old one).
            return Ok(match cache.get(path.as_str()) {
                Some(e) if e.sha256 == sha && e.version != wt.version => FileState::Outdated {
                    file_version: e.version,
                },
                _ => FileState::Modified,
            }
            .with_version(v));
        }
        let missing = self.missing_chunks(&wt.manifest).len();
        if missing > 0 {
            return Ok((
                FileState::DataMissing {
                    missing_chunks: missing,
                },
                v,
            ));
        }
        Ok((FileState::Unchanged, v))
    }
}
