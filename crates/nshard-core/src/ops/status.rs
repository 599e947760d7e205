//! `status`: the state of every tracked file and every manifest in the work tree.

use std::fs;

use std::collections::HashSet;

use super::target::{Selection, Target};
use super::MAX_HISTORY;
use crate::dirunit::DirStatus;
use crate::error::{Error, Result};
use crate::error::{ManifestError, StoreError};
use crate::id::ObjectId;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::path::RepoPath;
use crate::repo::statcache::{now_ns, StatCache, StatEntry};
use crate::repo::{Repo, WorktreeManifest};

/// The state of one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FileState {
    /// Committed, and the work-tree file matches the manifest.
    Unchanged,
    /// The work-tree file differs from its committed version.
    Modified,
    /// The file holds another committed version than its manifest names: an older one after `git
    /// pull` brought a newer manifest (or `checkout --version`), a newer one after `git checkout`
    /// of an older commit. `nshard checkout` makes the file match the manifest.
    Outdated {
        /// The version the file holds.
        file_version: ObjectId,
        /// How it relates to the manifest's version, by the chain of parents.
        file_is: VersionOrder,
        /// Whether every chunk of the manifest's version is in the local store (else `nshard pull`
        /// first: checkout alone cannot update the file).
        data_present: bool,
    },
    /// The manifest holds git conflict markers (a merge of two versions): take one side with `git
    /// checkout --theirs/--ours FILE.shard.json`, then `nshard checkout` (`nshard pull --checkout`
    /// if that side's data is not in the local store).
    Conflicted {
        /// The version on our side of the conflict, when that side is a valid manifest.
        ours: Option<ObjectId>,
        /// The version on their side of the conflict, when that side is a valid manifest.
        theirs: Option<ObjectId>,
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
    /// The manifest cannot be used (`"state": "invalid"`, as `nshard status` prints it).
    #[serde(rename = "invalid")]
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

pub use crate::error::VersionOrder;

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
    /// What a remote has of its committed version (`nshard status --remote`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteCheck>,
}

pub use crate::dirunit::RemoteCheck;

/// How many versions back `status` and `commit` look for an older version's bytes copied back
/// by hand.
const ANCESTOR_WALK: usize = 1000;

impl Repo {
    /// Whether the local store holds every chunk of `m` (the version is complete here).
    pub(crate) fn has_all_chunks(&self, m: &Manifest) -> bool {
        m.chunks.iter().all(|c| self.store().has(&c.id))
    }

    /// The chunks of `m` that the local store lacks.
    pub fn missing_chunks(&self, m: &Manifest) -> Vec<ObjectId> {
        let mut seen = std::collections::HashSet::new();
        m.chunks
            .iter()
            .filter(|c| seen.insert(c.id) && !self.store().has(&c.id))
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
        if all.is_empty() {
            // Nothing to look at: the stat cache (large with directory units) is not loaded.
            return Ok(Vec::new());
        }
        let mut cache = self.stat_cache();
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
                remote: None,
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
                match crate::fsutil::existing_file_in(self.root(), path) {
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                return Ok((FileState::New, None));
            }
            Err(
                e @ Error::Manifest(
                    ManifestError::InvalidManifest { .. } | ManifestError::ConflictMarkers(_),
                ),
            ) => {
                if let Some(state) = self.conflict_state(path) {
                    return Ok((state, None));
                }
                return Ok((
                    FileState::InvalidManifest {
                        reason: e.to_string(),
                    },
                    None,
                ));
            }
            Err(e) => return Err(e),
        };
        let v = Some(wt.version);
        let abs = path.to_path(self.root());
        let md = match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_file() => {
                // Never hash a file reached through a symlinked directory.
                crate::fsutil::existing_file_in(self.root(), path)?;
                md
            }
            // Replaced by a symlink, a FIFO, a directory…: not "missing", and never read.
            Ok(md) => return Err(Error::io("reading", &abs)(crate::fsutil::not_regular(&md))),
            Err(_) => {
                let data_present = self.missing_chunks(&wt.manifest).is_empty();
                return Ok((FileState::Missing { data_present }, v));
            }
        };
        let mut hashed_at = None;
        let sha = match cache.fresh(path.as_str(), &md) {
            Some(e) => e.sha256,
            None => {
                let observed = now_ns();
                hashed_at = Some(observed);
                let sha = crate::fsutil::hash_file(&abs)?;
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
            let known = match cache.get(path.as_str()) {
                Some(e) if e.sha256 == sha && e.version != wt.version => Some(e.version),
                // No record of nshard writing it: it may still be an earlier version. Recording
                // that in the cache lets `nshard checkout` replace it (its content is safe in the
                // store) instead of refusing to overwrite "local changes".
                _ => {
                    let found = self.ancestor_where(&wt, |m| {
                        m.sha256 == sha && self.missing_chunks(m).is_empty()
                    });
                    if let (Some(version), Some(observed)) = (found, hashed_at) {
                        cache.set(path.as_str(), StatEntry::new(&md, sha, version, observed));
                    }
                    found
                }
            };
            return Ok(match known {
                Some(file_version) => FileState::Outdated {
                    file_version,
                    file_is: self.version_order(&wt, &file_version)?,
                    data_present: self.missing_chunks(&wt.manifest).is_empty(),
                },
                None => FileState::Modified,
            }
            .with_version(v));
        }
        if wt.manifest.executable != crate::dirunit::is_exec(&md) {
            // Same bytes, another mode: `commit` records it as a new version, as git does.
            return Ok((FileState::Modified, v));
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

impl Repo {
    /// How `file_version` relates to `wt`'s version: older when it is in `wt`'s chain of parents,
    /// newer when `wt`'s version is in its chain. Walks manifests in the local store.
    pub fn version_order(
        &self,
        wt: &WorktreeManifest,
        file_version: &ObjectId,
    ) -> Result<VersionOrder> {
        if self
            .history(wt)?
            .iter()
            .any(|n| n.version() == *file_version)
        {
            return Ok(VersionOrder::Older);
        }
        let mut next = Some(*file_version);
        let mut seen = HashSet::new();
        while let Some(id) = next {
            if id == wt.version {
                return Ok(VersionOrder::Newer);
            }
            if !seen.insert(id) || seen.len() > MAX_HISTORY {
                break;
            }
            next = match self.load_version(&id) {
                Ok(m) => m.version.parent,
                Err(
                    Error::Store(StoreError::ObjectMissing(_))
                    | Error::Store(StoreError::CorruptObject { .. })
                    | Error::Manifest(
                        ManifestError::InvalidManifest { .. } | ManifestError::ConflictMarkers(_),
                    ),
                ) => None,
                Err(e) => return Err(e),
            };
        }
        Ok(VersionOrder::Unrelated)
    }

    /// Whether the local store holds all of `wt`'s history, back to its first version.
    pub(crate) fn history_complete(&self, wt: &WorktreeManifest) -> Result<bool> {
        Ok(matches!(
            self.history(wt)?.last(),
            Some(super::HistoryNode::Present { manifest, .. }) if manifest.version.parent.is_none()
        ))
    }

    /// The nearest earlier version of `wt` (by its chain of parents in the local store, at most
    /// [`ANCESTOR_WALK`] versions back, so that a long series does not make every commit or
    /// status read its whole history) whose manifest `pred` accepts; `None` when there is none
    /// or the chain cannot be read further.
    pub(crate) fn ancestor_where(
        &self,
        wt: &WorktreeManifest,
        pred: impl Fn(&Manifest) -> bool,
    ) -> Option<ObjectId> {
        let mut next = wt.manifest.version.parent;
        let mut seen = HashSet::new();
        while let Some(v) = next {
            if !seen.insert(v) || seen.len() > ANCESTOR_WALK {
                return None;
            }
            let m = self.load_version(&v).ok()?;
            if pred(&m) {
                return Some(v);
            }
            next = m.version.parent;
        }
        None
    }

    /// `Conflicted` when the manifest of `path` holds git conflict markers; the two sides' version
    /// ids when each side is a valid manifest of `path`.
    fn conflict_state(&self, path: &RepoPath) -> Option<FileState> {
        let mpath = path.manifest_path().to_path(self.root());
        let bytes = crate::fsutil::read_limited(&mpath, 2 * MAX_MANIFEST_BYTES + 4096).ok()?;
        let (ours, theirs) = conflict_sides(&bytes)?;
        // The exact sides from git's index (stages 2 and 3) while the merge is unresolved: the
        // sides rebuilt from the markers also hold the other side's merged hunks, so their ids
        // may name no version.
        let rel = path.manifest_path();
        let stage = |n: u8| crate::git::git(self.root(), &["show", &format!(":{n}:./{rel}")]).ok();
        let (ours, theirs) = match (stage(2), stage(3)) {
            (Some(o), Some(t)) => (o, t),
            _ => (ours, theirs),
        };
        let version = |side: Vec<u8>| {
            Manifest::parse(&side, &mpath, Some(path))
                .ok()
                .map(|_| ObjectId::of(&side))
        };
        Some(FileState::Conflicted {
            ours: version(ours),
            theirs: version(theirs),
        })
    }
}

/// Splits a file with git conflict markers into our side and their side (lines outside the
/// conflicts go to both; a diff3 base section to neither). `None` when there are no markers.
pub(crate) fn conflict_sides(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    #[derive(PartialEq)]
    enum Part {
        Both,
        Ours,
        Base,
        Theirs,
    }
    let marker = |line: &[u8], m: &[u8]| {
        line.starts_with(m) && matches!(line.get(m.len()), None | Some(b' ' | b'\n' | b'\r'))
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut part = Part::Both;
    let mut conflicts = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match part {
            Part::Both if marker(line, b"<<<<<<<") => {
                part = Part::Ours;
                conflicts += 1;
                continue;
            }
            Part::Ours if marker(line, b"|||||||") => {
                part = Part::Base;
                continue;
            }
            Part::Ours | Part::Base if marker(line, b"=======") => {
                part = Part::Theirs;
                continue;
            }
            Part::Theirs if marker(line, b">>>>>>>") => {
                part = Part::Both;
                continue;
            }
            _ => {}
        }
        match part {
            Part::Both => {
                ours.extend_from_slice(line);
                theirs.extend_from_slice(line);
            }
            Part::Ours => ours.extend_from_slice(line),
            Part::Theirs => theirs.extend_from_slice(line),
            Part::Base => {}
        }
    }
    (conflicts > 0 && part == Part::Both).then_some((ours, theirs))
}

#[cfg(test)]
mod tests {
    use super::conflict_sides;

    #[test]
    fn conflict_sides_split() {
        let text = b"{\n<<<<<<< HEAD\n  \"a\": 1\n=======\n  \"a\": 2\n>>>>>>> b\n}\n";
        let (o, t) = conflict_sides(text).expect("conflict");
        assert_eq!(o, b"{\n  \"a\": 1\n}\n");
        assert_eq!(t, b"{\n  \"a\": 2\n}\n");
        let diff3 = b"x\n<<<<<<< ours\no\n||||||| base\nb\n=======\nt\n>>>>>>> theirs\ny\n";
        let (o, t) = conflict_sides(diff3).expect("conflict");
        assert_eq!(
            (o.as_slice(), t.as_slice()),
            (&b"x\no\ny\n"[..], &b"x\nt\ny\n"[..])
        );
        assert!(conflict_sides(b"{\"a\": \"<<<<<<< not at line start\"}\n").is_none());
        assert!(conflict_sides(b"<<<<<<< HEAD\nunterminated\n").is_none());
    }
}

/// The state of one target: a file's, or a directory unit's.
#[derive(Clone, Debug)]
pub enum Status {
    /// A data file.
    File(FileStatus),
    /// A directory unit (or a subtree of it).
    Unit(DirStatus),
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Unit<'a> {
            #[serde(flatten)]
            status: &'a DirStatus,
            kind: &'static str,
        }
        match self {
            Status::File(f) => f.serialize(s),
            Status::Unit(status) => Unit {
                status,
                kind: "dir",
            }
            .serialize(s),
        }
    }
}

impl Repo {
    /// `status` of what `sel` selects: the files (sorted by path), then the units.
    pub fn status_of(&self, sel: &Selection) -> Result<Vec<Status>> {
        let mut out = Vec::new();
        if sel.has_files() {
            let mut files = self.status()?;
            files.retain(|s| sel.matches_file(&s.path));
            out.extend(files.into_iter().map(Status::File));
        }
        for t in sel.units() {
            if let Target::Unit { unit, sub } = t {
                out.push(Status::Unit(self.dir_status(unit, sub.as_deref())?));
            }
        }
        Ok(out)
    }
}
