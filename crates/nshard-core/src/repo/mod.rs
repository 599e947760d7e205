//! A NeuroShard repository: the `.shard/` directory beside the user's files, its config, local
//! object store, stat cache and lock; and the operations on it (track, commit, status, checkout).

mod config;
mod credentials;
mod remotes;
mod select;
pub(crate) mod statcache;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

pub use config::{Config, ConfigLevel, PersonalConfig, RemoteConfig, StoredCredential};
pub use credentials::{choose_token, validate_token, EnvTokens, Origin, UserConfig};
pub use remotes::{RemoteEntry, RemoteName, RemoteSource, RemovedRemote, ResolvedRemote};
pub use select::{is_glob, PathFilter};

use crate::error::{Error, Result};
use crate::error::{LookupProblem, ManifestError, RepoError};
use crate::fsutil;
use crate::id::ObjectId;
use crate::manifest::{Manifest, MANIFEST_SUFFIX};
use crate::path::RepoPath;
use crate::store::LocalStore;

/// Name of the repository directory.
pub const SHARD_DIR: &str = ".shard";

/// Temporary files in `.shard/tmp` older than this are left by a killed writer; any command
/// removes them (the same age as gc's default grace period).
pub const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `.shard/.gitignore`: what never leaves this machine, whatever the root `.gitignore` says.
const LOCAL_IGNORE: &str = "# Local to this machine, never committed (written by nshard init).\n\
/objects/\n/cache/\n/tmp/\n/corrupt/\n/lock\n/config.local.toml\n";

/// File name of the personal, git-ignored config inside `.shard/`.
pub const LOCAL_CONFIG: &str = "config.local.toml";

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    pub(crate) root: PathBuf,
    /// `.shard/`.
    pub(crate) dot: PathBuf,
    pub(crate) config: Config,
    /// `.shard/config.local.toml`.
    pub(crate) local: PersonalConfig,
    /// The user's own config file, when the caller named one ([`Repo::with_user_config`]).
    pub(crate) user: Option<UserConfig>,
    pub(crate) store: LocalStore,
}

/// A lock on the repository, released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

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
    /// Creates `.shard/` in `dir` (idempotent). Returns the repo and whether it was newly created.
    pub fn init(dir: &Path) -> Result<(Repo, bool)> {
        let root = dir.canonicalize().map_err(Error::io("resolving", dir))?;
        let dot = root.join(SHARD_DIR);
        let config_path = dot.join("config.toml");
        let created = !config_path.exists();
        for sub in ["objects", "cache", "tmp"] {
            fsutil::create_dir_all(&dot.join(sub))?;
        }
        if created {
            Config::default().save(&config_path)?;
        }
        let ignore = dot.join(".gitignore");
        if !ignore.exists() {
            fsutil::write_atomic(&ignore, LOCAL_IGNORE.as_bytes())?;
        }
        let repo = Self::open(root)?;
        if repo.is_git_repo() {
            repo.sync_gitignore()?;
        }
        Ok((repo, created))
    }

    /// Creates the local store for a git clone that has manifests but no `.shard/` (the owner
    /// committed only manifests): like [`Repo::init`] at `dir`, but the user's `.gitignore` is left
    /// alone (`.shard/.gitignore` keeps the store out of git).
    pub fn init_for_clone(dir: &Path) -> Result<Repo> {
        let root = dir.canonicalize().map_err(Error::io("resolving", dir))?;
        let dot = root.join(SHARD_DIR);
        for sub in ["objects", "cache", "tmp"] {
            fsutil::create_dir_all(&dot.join(sub))?;
        }
        let config_path = dot.join("config.toml");
        if !config_path.exists() {
            Config::default().save(&config_path)?;
        }
        let ignore = dot.join(".gitignore");
        if !ignore.exists() {
            fsutil::write_atomic(&ignore, LOCAL_IGNORE.as_bytes())?;
        }
        Self::open(root)
    }

    /// Finds the repository containing `start` (walking up like git).
    pub fn discover(start: &Path) -> Result<Repo> {
        let start = start
            .canonicalize()
            .map_err(Error::io("resolving", start))?;
        let mut cur: &Path = &start;
        loop {
            let dot = cur.join(SHARD_DIR);
            if dot.join("config.toml").is_file() {
                return Self::open(cur.to_path_buf());
            }
            match cur.parent() {
                Some(p) => cur = p,
                None => return Err(Error::Repo(RepoError::NotARepo(start))),
            }
        }
    }

    fn open(root: PathBuf) -> Result<Repo> {
        let dot = root.join(SHARD_DIR);
        let config = Config::load(&dot.join("config.toml"))?;
        let local = PersonalConfig::load(&dot.join(LOCAL_CONFIG), ConfigLevel::Local)?;
        let store = LocalStore::open(dot.join("objects"), dot.join("tmp"))?;
        // Partial writes of a commit, checkout or pull that was killed: every run clears those
        // older than gc's default grace period, so they never pile up between gcs.
        fsutil::sweep_stale_temporaries(&dot.join("tmp"), STALE_TMP_AGE);
        fsutil::create_dir_all(&dot.join("cache"))?;
        Ok(Repo {
            root,
            dot,
            config,
            local,
            user: None,
            store,
        })
    }

    /// Adds the user's own config file (`path`, which need not exist yet) as the lowest config
    /// level: its remotes, default remote and stored tokens. The library never looks for it
    /// itself; without this call only the repository's two files are used.
    pub fn with_user_config(mut self, path: Option<PathBuf>) -> Result<Repo> {
        self.user = path.map(|p| UserConfig::load(&p)).transpose()?;
        Ok(self)
    }

    /// The user's config file, when one was given.
    pub fn user_config(&self) -> Option<&UserConfig> {
        self.user.as_ref()
    }

    /// The work tree root (the directory holding `.shard/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.shard/` directory.
    pub fn shard_dir(&self) -> &Path {
        &self.dot
    }

    /// The repository's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces and saves the configuration.
    pub fn save_config(&mut self, config: Config) -> Result<()> {
        config.save(&self.dot.join("config.toml"))?;
        self.config = config;
        Ok(())
    }

    /// The local object store.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// `.shard/tmp`, for partial writes on the repository's filesystem.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dot.join("tmp")
    }

    /// Takes the repository lock: exclusive for commands that write manifests or delete objects
    /// (commit, checkout, gc), shared for those that only add objects (pull). Blocks until free.
    pub fn lock(&self, exclusive: bool) -> Result<RepoLock> {
        use fs2::FileExt;
        let p = self.dot.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Error::io("opening lock", &p))?;
        let r = if exclusive {
            f.lock_exclusive()
        } else {
            f.lock_shared()
        };
        r.map_err(Error::io("locking", &p))?;
        Ok(RepoLock { _file: f })
    }

    /// Turns a path the user typed (relative to `cwd`, or absolute) into a repository path,
    /// refusing anything outside the repository, under `.shard/` or `.git/`.
    pub fn resolve_user_path(&self, cwd: &Path, arg: &Path) -> Result<RepoPath> {
        let abs = fsutil::normalize_lexically(&cwd.join(arg));
        let rel = abs.strip_prefix(&self.root).map_err(|_| {
            Error::Manifest(ManifestError::UnsafePath {
                path: arg.display().to_string(),
                reason: "outside the repository",
            })
        })?;
        if rel.as_os_str().is_empty() {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: arg.display().to_string(),
                reason: "is the repository root; name files or directories inside it",
            }));
        }
        RepoPath::from_relative(rel)
    }

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
        if m.path != *path {
            return Err(Error::Manifest(ManifestError::InvalidManifest {
                path: format!("object {v}").into(),
                reason: format!("describes {:?}, not {:?}", m.path.as_str(), path.as_str()),
            }));
        }
        Ok(m)
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

    /// Whether the repository lies inside a git work tree.
    pub fn is_git_repo(&self) -> bool {
        self.root.ancestors().any(|a| a.join(".git").exists())
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
