//! What a command works on. Each path the user names is decided here, once, to be a tracked file
//! or a directory unit (or a subtree of one); the commands then take [`Target`]s and return one
//! typed outcome per target, whichever kind it is.

use std::path::Path;

use crate::error::RepoError;
use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repo::{PathFilter, Repo};

/// One thing a command works on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A data file (with a manifest, or tracked and not yet committed).
    File(RepoPath),
    /// A directory versioned as one unit, or the subtree `sub` of it.
    Unit {
        /// The unit's directory.
        unit: RepoPath,
        /// A path inside the unit the user named (relative to it), or `None` for all of it.
        sub: Option<String>,
    },
}

impl Target {
    /// How the target is shown: `models/a.bin`, `data/` or `data/train/` (escaped for a terminal).
    pub fn label(&self) -> String {
        match self {
            Target::File(p) => p.to_string(),
            Target::Unit { unit, sub: None } => format!("{unit}/"),
            Target::Unit {
                unit,
                sub: Some(sub),
            } => format!("{unit}/{}/", crate::portable::escape(sub)),
        }
    }

    /// The data file or the unit's directory.
    pub fn path(&self) -> &RepoPath {
        match self {
            Target::File(p) => p,
            Target::Unit { unit, .. } => unit,
        }
    }
}

/// What a command's arguments select: the units they name or contain, and a filter over files.
#[derive(Clone, Debug)]
pub struct Selection {
    units: Vec<Target>,
    /// The files named, or `None` when the arguments named units only.
    files: Option<PathFilter>,
    everything: bool,
    single: bool,
}

impl Selection {
    /// Whether no argument was given (everything is selected).
    pub fn is_everything(&self) -> bool {
        self.everything
    }

    /// Whether exactly one file was named, by itself (commands then print one result, not a
    /// list).
    pub fn is_single_file(&self) -> bool {
        self.single
    }

    /// The directory units selected.
    pub fn units(&self) -> &[Target] {
        &self.units
    }

    /// Whether data file `p` is selected.
    pub fn matches_file(&self, p: &RepoPath) -> bool {
        self.files.as_ref().is_some_and(|f| f.matches(p))
    }

    /// The files named one by one (not through a directory or glob).
    pub fn named_files(&self) -> impl Iterator<Item = &RepoPath> {
        self.files.iter().flat_map(|f| f.exact_files())
    }

    /// Whether the arguments name files (or everything) besides units.
    pub fn has_files(&self) -> bool {
        self.files.is_some()
    }
}

impl Repo {
    /// Turns command-line arguments (relative to `cwd`: data files, manifests, directories,
    /// quoted globs) into a selection. A path inside a directory unit selects the unit (or the
    /// subtree named); a directory or glob that holds units selects them as well as the files it
    /// holds. No argument selects everything.
    pub fn select(&self, cwd: &Path, args: &[impl AsRef<Path>]) -> Result<Selection> {
        let all_units = self.dir_units()?;
        if args.is_empty() {
            return Ok(Selection {
                units: all_units
                    .into_iter()
                    .map(|unit| Target::Unit { unit, sub: None })
                    .collect(),
                files: Some(PathFilter::all()),
                everything: true,
                single: false,
            });
        }
        let mut units: Vec<Target> = Vec::new();
        let mut rest = Vec::new();
        for a in args {
            let a = a.as_ref();
            match self
                .resolve_user_path(cwd, a)
                .ok()
                .and_then(|p| self.unit_of(&all_units, &p))
            {
                Some((unit, sub)) => units.push(Target::Unit { unit, sub }),
                None => rest.push(a),
            }
        }
        let files = if rest.is_empty() {
            None
        } else {
            let filter = self.path_filter(cwd, &rest)?;
            for u in &all_units {
                if filter.matches_unit(u) && !units.iter().any(|t| t.path() == u) {
                    units.push(Target::Unit {
                        unit: u.clone(),
                        sub: None,
                    });
                }
            }
            Some(filter)
        };
        let single = args.len() == 1
            && units.is_empty()
            && files.as_ref().is_some_and(|f| f.exact_files().count() == 1);
        Ok(Selection {
            units,
            files,
            everything: false,
            single,
        })
    }

    /// The targets of `sel` that have something committed to work on: its units, then every file
    /// with a manifest it selects (and each file named one by one, so the command can say what is
    /// wrong with it). A selection that names something holding neither is
    /// [`RepoError::NothingSelected`](crate::error::RepoError::NothingSelected).
    pub fn targets(&self, sel: &Selection) -> Result<Vec<Target>> {
        let mut out = sel.units.clone();
        if let Some(filter) = &sel.files {
            match self.select_manifests(filter) {
                Ok(files) => out.extend(files.into_iter().map(Target::File)),
                Err(Error::Repo(RepoError::NothingSelected)) if !out.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The target whose manifest is `manifest` (a repository path ending in `.shard.json`), by
    /// what the manifest file says it is: a directory unit's or a file's. `None` when there is no
    /// such manifest (or `manifest` does not name one). The file is opened safely: never through
    /// a symlink into a FIFO or device.
    pub fn target_of_manifest(&self, manifest: &RepoPath) -> Option<Target> {
        let data = manifest.data_path_of_manifest()?;
        let abs = manifest.to_path(self.root());
        if crate::manifest::peek_is_dir_manifest(&abs) {
            Some(Target::Unit {
                unit: data,
                sub: None,
            })
        } else if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_file()) {
            Some(Target::File(data))
        } else {
            None
        }
    }

    /// Whether the local store holds every object the target's work-tree version needs (`None`
    /// when it cannot be told, e.g. the manifest is invalid: a checkout then says why).
    pub fn has_data(&self, target: &Target) -> Option<bool> {
        match target {
            Target::File(p) => {
                let wt = self.read_worktree_manifest(p).ok()??;
                Some(self.missing_chunks(&wt.manifest).is_empty())
            }
            Target::Unit { unit, sub } => {
                let d = self.read_dir_manifest(unit).ok()??;
                match self.dir_objects(&d.manifest, sub.as_deref()) {
                    Ok(Some(objs)) => Some(objs.iter().all(|(id, _)| self.store().has(id))),
                    Ok(None) => Some(false),
                    Err(_) => None,
                }
            }
        }
    }
}
