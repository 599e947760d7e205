//! The work tree as the repository sees it: the manifests beside the data files (read and
//! validated), the versions they name and their history in the local store, and the walk that
//! finds them.

use std::io;
use std::path::{Path, PathBuf};

use super::{Repo, SHARD_DIR};
use crate::error::{Error, Result};
use crate::error::{LookupProblem, ManifestError, RepoError};
use crate::fsutil;
use crate::id::ObjectId;
use crate::manifest::{Manifest, MANIFEST_SUFFIX};
use crate::path::RepoPath;

/// A manifest as found in the work tree, with its version id.
#[derive(Clone, Debug)]
pub struct WorktreeManifest {
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// Its version id: the SHA-256 of its bytes.
    pub version: ObjectId,
    /// The exact bytes (what is stored as the manifest object).
    pub bytes: Vec<u8>,
}

impl Repo {
    /// Reads and validates the work-tree manifest of `data` (`<data>.shard.json`), if it exists.
    pub fn read_worktree_manifest(&self, data: &RepoPath) -> Result<Option<WorktreeManifest>> {
        let mpath = data.manifest_path().to_path(&self.root);
        let bytes = match fsutil::read_limited(&mpath, crate::manifest::MAX_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // Over the size limit: a manifest that fails validation, like any other.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::Manifest(ManifestError::InvalidManifest {
                    path: mpath,
                    reason: e.to_string(),
                }))
            }
            Err(e) => return Err(Error::io("reading", mpath)(e)),
        };
        let manifest = Manifest::parse(&bytes, &mpath, Some(data))?;
        Ok(Some(WorktreeManifest {
            version: ObjectId::of(&bytes),
            manifest,
            bytes,
        }))
    }

    /// Loads the manifest stored as object `version` (for history: `--version`, log, diff).
    pub fn load_version(&self, version: &ObjectId) -> Result<Manifest> {
        let bytes = self
            .store
            .get(version, crate::manifest::MAX_MANIFEST_BYTES)?;
        Manifest::parse(&bytes, &PathBuf::from(format!("object {version}")), None)
    }

    /// The manifest of version `v` of `path` (the work-tree one when `v` is current), refusing a
    /// stored manifest that describes another file.
    pub fn version_manifest(
        &self,
        wt: &WorktreeManifest,
        path: &RepoPath,
        v: &ObjectId,
    ) -> Result<Manifest> {
        let m = if *v == wt.version {
            wt.manifest.clone()
        } else {
            self.load_version(v)?
        };
        // A version of this file's own history may carry an older path (`nshard mv`); any
        // other manifest describing another file is refused.
        if m.path != *path && !self.in_history(wt, v) {
            return Err(Error::Manifest(ManifestError::InvalidManifest {
                path: format!("object {v}").into(),
                reason: format!("describes {:?}, not {:?}", m.path.as_str(), path.as_str()),
            }));
        }
        Ok(m)
    }

    /// Whether `v` is `wt`'s version or one of its ancestors in the local store.
    fn in_history(&self, wt: &WorktreeManifest, v: &ObjectId) -> bool {
        let mut next = Some(wt.version);
        let mut parent_of_current = wt.manifest.version.parent;
        // The same bound as every history walk (ops::MAX_HISTORY).
        for _ in 0..1_000_000 {
            match next {
                Some(x) if x == *v => return true,
                Some(_) => {}
                None => return false,
            }
            next = parent_of_current;
            parent_of_current = match next {
                Some(x) => match self.load_version(&x) {
                    Ok(m) => m.version.parent,
                    Err(_) => None,
                },
                None => None,
            };
        }
        false
    }

    /// Finds the version of `current`'s history whose id starts with `prefix` (at least 4 hex
    /// characters), walking parents through the local store.
    pub fn find_version(&self, current: &WorktreeManifest, prefix: &str) -> Result<ObjectId> {
        find_in_history(
            prefix,
            (current.version, current.manifest.version.parent),
            &current.manifest.path.to_string(),
            |v| self.load_version(v).map(|m| m.version.parent),
        )
    }

    /// Walks the work tree (not following symlinks, skipping `.git` and `.shard`) and returns the
    /// regular data files (manifests excluded) and the manifests' data paths, both sorted. Every
    /// `*.shard.json` that is not a directory counts as a manifest, even a symlink or a FIFO: reading
    /// it then fails, which every command reports instead of skipping it. A `*.shard.json` whose
    /// own path is refused (see [`Repo::refused_manifests`]) is not listed.
    /// Directory units (see [`crate::dirunit`]) are left out, with everything inside them: see
    /// [`Repo::dir_units`].
    pub fn scan_worktree(&self) -> Result<(Vec<RepoPath>, Vec<RepoPath>)> {
        let scan = self.walk_worktree()?;
        Ok((scan.files, scan.manifests))
    }

    /// The directory units found by a work-tree walk: directories named in the config and
    /// directory manifests.
    pub(crate) fn scan_units(&self) -> Result<Vec<RepoPath>> {
        Ok(self.walk_worktree()?.units)
    }

    /// The `*.shard.json` files in the work tree whose own path nshard refuses (a name git
    /// refuses, a control character, not UTF-8, no data file name): never read, but reported by
    /// `status`, and gc deletes nothing while one exists (it cannot tell what it references).
    pub fn refused_manifests(&self) -> Result<Vec<RefusedManifest>> {
        Ok(self.walk_worktree()?.refused)
    }

    /// Fails, naming the first refused manifest, when the work tree has any (see
    /// [`Repo::refused_manifests`]); `what` says what was not done.
    pub(crate) fn refuse_if_refused_manifests(&self, what: &str) -> Result<()> {
        match self.refused_manifests()?.into_iter().next() {
            None => Ok(()),
            Some(r) => Err(Error::Manifest(ManifestError::InvalidManifest {
                path: r.path.into(),
                reason: format!("{}; {what} (rename or remove that file first)", r.reason),
            })),
        }
    }

    fn walk_worktree(&self) -> Result<WorktreeScan> {
        let mut scan = WorktreeScan::default();
        let configured: std::collections::HashSet<&str> =
            self.config.dirs.iter().map(String::as_str).collect();
        let root = self.root.clone();
        // A directory is a unit when the config names it or a directory manifest sits beside it.
        let is_unit = |p: &Path| -> bool {
            let Ok(rel) = p.strip_prefix(&root) else {
                return false;
            };
            let Ok(rp) = RepoPath::from_relative(rel) else {
                return false;
            };
            configured.contains(rp.as_str())
                || crate::manifest::peek_is_dir_manifest(&rp.manifest_path().to_path(&root))
        };
        let walker = walkdir::WalkDir::new(&self.root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                !(e.depth() > 0
                    && e.file_type().is_dir()
                    && (e.file_name().to_str().is_some_and(|n| {
                        n.eq_ignore_ascii_case(".git") || n.eq_ignore_ascii_case(SHARD_DIR)
                    }) || is_unit(e.path())))
            });
        for ent in walker {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                    return Err(Error::io("scanning", path)(e.into()));
                }
            };
            // Manifests are listed whatever their type (a symlink or FIFO where a manifest belongs
            // must be reported, and must stop gc), data files only when regular.
            if ent.file_type().is_dir()
                || ent
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(fsutil::TMP_PREFIX))
            {
                continue;
            }
            let Ok(rel) = ent.path().strip_prefix(&self.root) else {
                continue;
            };
            let rp = match RepoPath::from_relative(rel) {
                Ok(rp) => rp,
                Err(e) => {
                    let lossy = rel.to_string_lossy();
                    if lossy.ends_with(MANIFEST_SUFFIX) {
                        scan.refused
                            .push(RefusedManifest::new(&lossy, &e.to_string()));
                    }
                    continue;
                }
            };
            match rp.data_path_of_manifest() {
                Some(data)
                    if ent.file_type().is_file()
                        && crate::manifest::peek_is_dir_manifest(ent.path()) =>
                {
                    scan.units.push(data)
                }
                Some(data) if configured.contains(data.as_str()) => {}
                Some(data) => scan.manifests.push(data),
                None if rp.as_str().ends_with(MANIFEST_SUFFIX) => {
                    scan.refused.push(RefusedManifest::new(
                        rp.as_str(),
                        "its name leaves no valid data file name before `.shard.json`",
                    ));
                }
                None if ent.file_type().is_file() => scan.files.push(rp),
                None => {}
            }
        }
        for d in &self.config.dirs {
            if let Ok(p) = RepoPath::parse(d) {
                scan.units.push(p);
            }
        }
        scan.units.sort();
        scan.units.dedup();
        Ok(scan)
    }
}

/// A `*.shard.json` in the work tree whose own path is refused (see
/// [`Repo::refused_manifests`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefusedManifest {
    /// Its repository-relative path, escaped for printing (control and invisible characters as
    /// `\u{…}`; bytes that are not UTF-8 as U+FFFD).
    pub path: String,
    /// Why the path is refused, escaped likewise.
    pub reason: String,
}

impl RefusedManifest {
    fn new(path: &str, reason: &str) -> Self {
        Self {
            path: crate::portable::escape(path).into_owned(),
            reason: crate::portable::neutralize(reason).into_owned(),
        }
    }
}

/// What a walk of the work tree found.
#[derive(Default)]
struct WorktreeScan {
    files: Vec<RepoPath>,
    manifests: Vec<RepoPath>,
    refused: Vec<RefusedManifest>,
    units: Vec<RepoPath>,
}

/// The one version whose id starts with `prefix` in the history that starts at `start` (a
/// version and its parent), walking parents with `parent_of` as far as the local store has them.
/// `subject` names the file or unit in messages.
pub(crate) fn find_in_history(
    prefix: &str,
    start: (ObjectId, Option<ObjectId>),
    subject: &str,
    parent_of: impl Fn(&ObjectId) -> Result<Option<ObjectId>>,
) -> Result<ObjectId> {
    let p = prefix.to_ascii_lowercase();
    let lookup = |problem: LookupProblem| {
        Error::Repo(RepoError::VersionLookup {
            prefix: prefix.to_string(),
            problem,
        })
    };
    if p.len() < 4 || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(lookup(LookupProblem::NotAnId));
    }
    let mut matches = Vec::new();
    let mut next = Some(start.0);
    let mut seen = 0usize;
    let mut unreachable = None;
    while let Some(v) = next {
        if v.to_hex().starts_with(&p) {
            matches.push(v);
            // A whole id names one version: nothing further back can make it ambiguous.
            if p.len() == 64 {
                break;
            }
        }
        seen += 1;
        if seen > 1_000_000 {
            break;
        }
        next = if v == start.0 {
            start.1
        } else {
            match parent_of(&v) {
                Ok(parent) => parent,
                Err(e) if e.missing_object().is_some() => {
                    unreachable = Some(v);
                    None
                }
                Err(e) => return Err(e),
            }
        };
    }
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(lookup(LookupProblem::NoMatch {
            subject: subject.to_string(),
            unreachable,
        })),
        many => Err(lookup(LookupProblem::Ambiguous(many.to_vec()))),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A history of `n` versions, newest first, as ids of their index.
    fn history(n: u8) -> Vec<ObjectId> {
        (0..n).map(|i| ObjectId::of(&[i])).collect()
    }

    /// Looks `prefix` up in `h` (newest first); returns the result and how many parents were
    /// read.
    fn find(h: &[ObjectId], prefix: &str) -> (Result<ObjectId>, usize) {
        let reads = Cell::new(0);
        let r = find_in_history(prefix, (h[0], h.get(1).copied()), "f", |v| {
            reads.set(reads.get() + 1);
            let i = h
                .iter()
                .position(|x| x == v)
                .expect("a version of the history");
            Ok(h.get(i + 1).copied())
        });
        (r, reads.get())
    }

    #[test]
    fn a_whole_id_stops_the_walk_where_it_matches() {
        let h = history(30);
        let (found, reads) = find(&h, &h[3].to_hex());
        assert_eq!(found.expect("found"), h[3]);
        // Versions 0 … 3 visited: the parents of 1 and 2 read, nothing beyond.
        assert_eq!(reads, 2);
    }

    #[test]
    fn a_prefix_walks_the_whole_history_to_rule_out_another_match() {
        let h = history(30);
        let (found, reads) = find(&h, &h[3].to_hex()[..12]);
        assert_eq!(found.expect("found"), h[3]);
        assert_eq!(reads, 29);
        let (none, _) = find(&h, &ObjectId::of(b"elsewhere").to_hex());
        assert!(matches!(
            none,
            Err(Error::Repo(RepoError::VersionLookup {
                problem: LookupProblem::NoMatch { .. },
                ..
            }))
        ));
    }
}
