//! `track` / `untrack`: the tracked set lives in `config.toml` as repository-relative entries:
//! a file (`models/a.bin`), a directory with a trailing slash (`models/`, recursive, so files added
//! later are tracked too) or a glob (`models/*.safetensors`, `**` crosses directories).

use std::fs;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::error::{ManifestError, RepoError};
use crate::manifest::MANIFEST_SUFFIX;
use crate::path::RepoPath;
use crate::repo::{is_glob, Repo};

/// What `track`/`untrack` did with one argument.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TrackChange {
    /// The entry was added; `files` files currently match it.
    Added {
        /// The config entry.
        entry: String,
        /// Files it matches now.
        files: usize,
    },
    /// The entry was already tracked.
    AlreadyTracked {
        /// The config entry.
        entry: String,
    },
    /// The directory became a unit (`entry` ends with `/`); `files` files are in it now.
    AddedDir {
        /// The directory, with a trailing slash.
        entry: String,
        /// Files in it now.
        files: usize,
    },
    /// The entry was removed.
    Removed {
        /// The config entry.
        entry: String,
    },
}

/// How `track` treats a directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrackMode {
    /// A directory with at least `dir_threshold` files becomes a unit, a smaller one gets one
    /// manifest per file.
    #[default]
    Auto,
    /// Directories become units (`--dir`).
    Dir,
    /// One manifest per file (`--files`); a unit is converted back.
    Files,
}

/// Regular files under `dir` (not following symlinks), counting no further than `limit`.
fn count_files(dir: &Path, limit: usize) -> usize {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .take(limit)
        .count()
}

enum Entry {
    File(String),
    Dir(String),
    Glob(GlobMatcher),
}

fn parse_entry(e: &str) -> Option<Entry> {
    if is_glob(e) {
        GlobBuilder::new(e)
            .literal_separator(true)
            .build()
            .ok()
            .map(|g| Entry::Glob(g.compile_matcher()))
    } else if let Some(d) = e.strip_suffix('/') {
        Some(Entry::Dir(format!("{d}/")))
    } else {
        Some(Entry::File(e.to_string()))
    }
}

impl Entry {
    fn matches(&self, p: &RepoPath) -> bool {
        match self {
            Entry::File(f) => p.as_str() == f,
            Entry::Dir(d) => p.as_str().starts_with(d.as_str()),
            Entry::Glob(g) => g.is_match(p.as_str()),
        }
    }
}

impl Repo {
    /// The data files currently matched by the tracked entries: existing regular files, and
    /// committed files that were replaced by a symlink or special file (reading those fails, which
    /// callers report). Sorted.
    pub fn tracked_files(&self) -> Result<Vec<RepoPath>> {
        let entries: Vec<Entry> = self
            .config
            .track
            .iter()
            .filter_map(|e| parse_entry(e))
            .collect();
        let needs_walk = entries.iter().any(|e| !matches!(e, Entry::File(_)));
        let mut out = Vec::new();
        // A committed file (one with a manifest) that is now a symlink, FIFO or other special file
        // stays in the list, so that commit and status report it instead of skipping it.
        let replaced = |p: &RepoPath| {
            fs::symlink_metadata(p.to_path(&self.root)).is_ok_and(|m| !m.is_file() && !m.is_dir())
                && fs::symlink_metadata(p.manifest_path().to_path(&self.root)).is_ok()
        };
        if needs_walk {
            let (files, manifests) = self.scan_worktree()?;
            out.extend(
                files
                    .into_iter()
                    .chain(manifests.into_iter().filter(|p| replaced(p)))
                    .filter(|f| entries.iter().any(|e| e.matches(f))),
            );
        } else {
            for e in &entries {
                if let Entry::File(f) = e {
                    if let Ok(p) = RepoPath::parse(f) {
                        let abs = p.to_path(&self.root);
                        if fs::symlink_metadata(&abs).is_ok_and(|m| m.is_file()) || replaced(&p) {
                            out.push(p);
                        }
                    }
                }
            }
        }
        // A file whose manifest is in git is tracked, whatever the config says (a clone whose
        // owner committed only the manifests, an entry untracked later), unless a directory
        // unit now versions it (files converted to a unit: their manifests leave git with the
        // next git commit).
        out.sort();
        out.dedup();
        let extra: Vec<&RepoPath> = self
            .files_in_git()
            .iter()
            .filter(|p| out.binary_search(p).is_err())
            .filter(|p| {
                fs::symlink_metadata(p.to_path(&self.root)).is_ok_and(|m| m.is_file())
                    || replaced(p)
            })
            .collect();
        // Only files the entries did not match need the units (a walk of the work tree).
        if !extra.is_empty() {
            let units = self.dir_units()?;
            out.extend(
                extra
                    .into_iter()
                    .filter(|p| self.unit_of(&units, p).is_none())
                    .cloned(),
            );
            out.sort();
        }
        Ok(out)
    }

    /// The data files whose manifests are in git's index (none outside git, or when git cannot
    /// be asked). Directory units are left out: the config decides those.
    pub(crate) fn files_in_git(&self) -> &[RepoPath] {
        self.in_git.get_or_init(|| {
            if !self.is_git_repo() {
                return Vec::new();
            }
            let Ok(tree) = self.git_tree() else {
                return Vec::new();
            };
            let units = &self.config.dirs;
            tree.manifests_in_index()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.strip_suffix(crate::path::MANIFEST_SUFFIX))
                .filter(|d| !units.iter().any(|u| u == d))
                .filter_map(|d| RepoPath::parse(d).ok())
                .filter(|p| !p.to_path(&self.root).is_dir())
                .collect()
        })
    }

    /// Whether `p` is matched by a tracked entry, or its manifest is in git.
    pub fn is_tracked(&self, p: &RepoPath) -> bool {
        self.tracked_by_config(p) || self.files_in_git().contains(p)
    }

    /// Whether `p` is matched by a tracked entry of the config.
    pub(crate) fn tracked_by_config(&self, p: &RepoPath) -> bool {
        self.config
            .track
            .iter()
            .filter_map(|e| parse_entry(e))
            .any(|e| e.matches(p))
    }

    /// Turns one user argument into a config entry, checking it.
    fn entry_for(&self, cwd: &Path, arg: &Path) -> Result<String> {
        let s = arg.to_string_lossy();
        let refuse = |reason| {
            Error::Manifest(ManifestError::UnsafePath {
                path: s.to_string(),
                reason,
            })
        };
        let rel = self.resolve_user_path(cwd, arg)?;
        if rel.as_str().ends_with(MANIFEST_SUFFIX) {
            return Err(refuse(
                "is a NeuroShard manifest; track the data file it describes",
            ));
        }
        let literal = is_glob(rel.as_str()) && self.names_a_path(&rel);
        if is_glob(rel.as_str()) && !literal {
            GlobBuilder::new(rel.as_str())
                .literal_separator(true)
                .build()
                .map_err(|_| refuse("is not a valid glob pattern"))?;
            return Ok(rel.as_str().to_string());
        }
        // No directory on the way may be a symlink: commit and status would refuse the file.
        let mut dir = self.root.clone();
        let parts: Vec<&str> = rel.as_str().split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir.push(part);
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(refuse(
                    "runs through a symlinked directory; nshard does not follow symlinks inside the repository",
                ));
            }
        }
        let abs = rel.to_path(&self.root);
        let md = fs::symlink_metadata(&abs).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                refuse("no such file or directory")
            } else {
                Error::io("inspecting", &abs)(e)
            }
        })?;
        if md.file_type().is_symlink() {
            Err(refuse("is a symlink; track the file it points to"))
        } else if md.is_dir() && literal {
            Err(refuse(
                "is a directory whose name holds *, ?, [, { or }: rename it, or track a glob matching its files",
            ))
        } else if md.is_dir() {
            Ok(format!("{}/", rel.as_str()))
        } else if md.is_file() && literal {
            // The file itself, not what its name read as a glob would match.
            Ok(crate::repo::escape_glob(rel.as_str()))
        } else if md.is_file() {
            Ok(rel.as_str().to_string())
        } else {
            Err(refuse("is not a regular file or directory"))
        }
    }

    /// Adds tracked entries. Every argument is checked before anything is saved. A directory
    /// holding at least `dir_threshold` files becomes a unit (see [`TrackMode`]).
    pub fn track(&mut self, cwd: &Path, args: &[impl AsRef<Path>]) -> Result<Vec<TrackChange>> {
        self.track_with(cwd, args, TrackMode::Auto)
    }

    /// [`Repo::track`] with an explicit choice between directory units and per-file manifests.
    pub fn track_with(
        &mut self,
        cwd: &Path,
        args: &[impl AsRef<Path>],
        mode: TrackMode,
    ) -> Result<Vec<TrackChange>> {
        let mut entries = Vec::new();
        for a in args {
            let entry = self.entry_for(cwd, a.as_ref())?;
            if mode == TrackMode::Dir && !entry.ends_with('/') {
                return Err(Error::Repo(RepoError::NotTracked {
                    path: a.as_ref().to_path_buf(),
                    reason: crate::error::Untracked::NotADirectory,
                }));
            }
            entries.push(entry);
        }
        let threshold = self
            .config
            .dir_threshold
            .unwrap_or(crate::dirunit::DEFAULT_DIR_THRESHOLD);
        let mut cfg = self.config.clone();
        let mut out = Vec::new();
        let mut units_added = Vec::new();
        for entry in entries {
            if let Some(d) = entry.strip_suffix('/') {
                let is_unit = cfg.dirs.iter().any(|u| u == d);
                let files = if is_unit || mode == TrackMode::Files {
                    0
                } else {
                    count_files(&self.root.join(d), threshold.max(1))
                };
                let unit = match mode {
                    TrackMode::Dir => true,
                    TrackMode::Files => false,
                    TrackMode::Auto => {
                        is_unit || (!cfg.track.contains(&entry) && files >= threshold)
                    }
                };
                if unit {
                    if is_unit {
                        out.push(TrackChange::AlreadyTracked { entry });
                    } else {
                        // Per-file entries inside the directory give way to the unit.
                        cfg.track
                            .retain(|e| !(e == &entry || e.starts_with(entry.as_str())));
                        cfg.dirs.push(d.to_string());
                        cfg.dirs.sort();
                        units_added.push(out.len());
                        out.push(TrackChange::AddedDir { entry, files: 0 });
                    }
                    continue;
                }
                if is_unit {
                    // Back to one manifest per file: the directory manifest goes (git and the
                    // store keep its versions); `nshard commit` writes the per-file manifests.
                    cfg.dirs.retain(|u| u != d);
                    let m = RepoPath::parse(d)?.manifest_path().to_path(&self.root);
                    if crate::manifest::peek_is_dir_manifest(&m) {
                        fs::remove_file(&m).map_err(Error::io("removing", &m))?;
                    }
                }
            }
            if cfg.track.contains(&entry) {
                out.push(TrackChange::AlreadyTracked { entry });
            } else {
                cfg.track.push(entry.clone());
                out.push(TrackChange::Added { entry, files: 0 });
            }
        }
        self.save_config(cfg)?;
        let files = self.tracked_files()?;
        for i in units_added {
            if let TrackChange::AddedDir { entry, files } = &mut out[i] {
                *files = count_files(&self.root.join(entry.as_str()), usize::MAX);
            }
        }
        for c in &mut out {
            if let TrackChange::Added { entry, files: n } = c {
                if let Some(m) = parse_entry(entry) {
                    *n = files.iter().filter(|f| m.matches(f)).count();
                }
            }
        }
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(out)
    }

    /// Removes tracked entries. Manifests and data files stay where they are.
    pub fn untrack(&mut self, cwd: &Path, args: &[impl AsRef<Path>]) -> Result<Vec<TrackChange>> {
        let mut cfg = self.config.clone();
        let mut out = Vec::new();
        for a in args {
            let a = a.as_ref();
            let rel = self.resolve_user_path(cwd, a)?;
            // A file whose name holds glob characters is tracked by an escaped entry.
            let candidates = [
                rel.as_str().to_string(),
                format!("{}/", rel.as_str()),
                crate::repo::escape_glob(rel.as_str()),
            ];
            if let Some(i) = cfg.dirs.iter().position(|u| u == rel.as_str()) {
                cfg.dirs.remove(i);
                out.push(TrackChange::Removed {
                    entry: format!("{}/", rel.as_str()),
                });
                continue;
            }
            match cfg.track.iter().position(|e| candidates.contains(e)) {
                Some(i) => {
                    let entry = cfg.track.remove(i);
                    out.push(TrackChange::Removed { entry });
                }
                None => {
                    let via = cfg
                        .track
                        .iter()
                        .find(|e| parse_entry(e).is_some_and(|m| m.matches(&rel)));
                    return Err(Error::Repo(RepoError::NotTracked {
                        path: a.to_path_buf(),
                        reason: if via.is_some() {
                            crate::error::Untracked::ThroughEntry
                        } else {
                            crate::error::Untracked::File
                        },
                    }));
                }
            }
        }
        self.save_config(cfg)?;
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(out)
    }
}
