//! Which files a command works on: the paths, manifests, directories and quoted globs the user
//! named, as one filter over repository paths. `push`, `pull`, `checkout`, `status`, `diff` and
//! `log` all select files this way.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use super::Repo;
use crate::error::{Error, Result};
use crate::error::{ManifestError, RepoError};
use crate::fsutil;
use crate::path::RepoPath;

/// One thing the user named.
#[derive(Clone, Debug)]
enum Part {
    /// A data file (a manifest named by the user is turned into its data file).
    File(RepoPath),
    /// Everything under a directory (`"models/"`, with the slash).
    Dir(String),
    /// A glob over data paths (`*` stays in one directory, `**` crosses them).
    Glob(GlobMatcher),
}

/// A set of data files named by the user; empty means every file.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    parts: Vec<Part>,
}

impl PathFilter {
    /// The filter that matches every file.
    pub fn all() -> PathFilter {
        PathFilter::default()
    }

    /// Whether it matches every file.
    pub fn is_all(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether data file `p` is selected.
    pub fn matches(&self, p: &RepoPath) -> bool {
        self.is_all()
            || self.parts.iter().any(|part| match part {
                Part::File(f) => f == p,
                Part::Dir(d) => p.as_str().starts_with(d.as_str()),
                Part::Glob(g) => g.is_match(p.as_str()),
            })
    }

    /// Whether directory unit `u` is selected: named itself (or by its manifest), by a directory
    /// it is in, by a path inside it, or by a glob matching it.
    pub fn matches_unit(&self, u: &RepoPath) -> bool {
        let with_slash = format!("{}/", u.as_str());
        self.is_all()
            || self.parts.iter().any(|part| match part {
                Part::File(f) => f == u || f.as_str().starts_with(&with_slash),
                Part::Dir(d) => with_slash.starts_with(d.as_str()) || d.starts_with(&with_slash),
                Part::Glob(g) => g.is_match(u.as_str()),
            })
    }

    /// The files named one by one (not through a directory or glob).
    pub fn exact_files(&self) -> impl Iterator<Item = &RepoPath> {
        self.parts.iter().filter_map(|p| match p {
            Part::File(f) => Some(f),
            _ => None,
        })
    }
}

impl Repo {
    /// Turns command-line arguments (relative to `cwd`) into a filter: a data file or its manifest,
    /// a directory (everything under it), a quoted glob, or the repository root (everything).
    pub fn path_filter(&self, cwd: &Path, args: &[impl AsRef<Path>]) -> Result<PathFilter> {
        let mut parts = Vec::new();
        for a in args {
            let a = a.as_ref();
            let abs = fsutil::normalize_lexically(&cwd.join(a));
            if abs == self.root() {
                return Ok(PathFilter::all());
            }
            let p = self.resolve_user_path(cwd, a)?;
            if is_glob(p.as_str()) && !self.names_a_path(&p) {
                let pattern = p
                    .as_str()
                    .strip_suffix(crate::manifest::MANIFEST_SUFFIX)
                    .unwrap_or(p.as_str());
                let g = GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|_| {
                        Error::Manifest(ManifestError::UnsafePath {
                            path: a.display().to_string(),
                            reason: "is not a valid glob pattern",
                        })
                    })?;
                parts.push(Part::Glob(g.compile_matcher()));
            } else if let Some(data) = p.data_path_of_manifest() {
                parts.push(Part::File(data));
            } else if std::fs::symlink_metadata(p.to_path(self.root())).is_ok_and(|m| m.is_dir()) {
                parts.push(Part::Dir(format!("{}/", p.as_str())));
            } else {
                parts.push(Part::File(p));
            }
        }
        Ok(PathFilter { parts })
    }

    /// The work tree's manifests (as data paths) that `filter` selects, plus every file it names
    /// one by one even without a manifest (so commands can say what is wrong with it). A directory
    /// or glob that selects no manifest is an error naming it.
    pub fn select_manifests(&self, filter: &PathFilter) -> Result<Vec<RepoPath>> {
        let manifests = self.scan_worktree()?.1;
        if filter.is_all() {
            return Ok(manifests);
        }
        let mut out: Vec<RepoPath> = manifests
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect();
        for f in filter.exact_files() {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        if out.is_empty() {
            return Err(Error::Repo(RepoError::NothingSelected));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Whether a tracked entry is a glob pattern rather than a path.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A glob pattern that matches exactly the path `s` (for a file whose name holds `*`, `?`,
/// `[`, `{` or `}`: each goes in a character class of its own, which globset and git's
/// `.gitignore` both read as that character).
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '*' | '?' | '[' | '{' | '}' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

impl Repo {
    /// Whether `p` names a file or directory of the work tree, or a file whose manifest is
    /// there: an argument that does is taken as that path, even when it looks like a glob
    /// (`ckpt[1].bin`).
    pub(crate) fn names_a_path(&self, p: &RepoPath) -> bool {
        std::fs::symlink_metadata(p.to_path(self.root())).is_ok()
            || std::fs::symlink_metadata(p.manifest_path().to_path(self.root())).is_ok()
    }
}
