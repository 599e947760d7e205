//! A NeuroShard repository: the `.shard/` directory beside the user's files, its config, local
//! object store, stat cache and lock; and the operations on it (track, commit, status, checkout).

mod config;
mod credentials;
mod remotes;
mod select;
pub(crate) mod statcache;
mod worktree;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub use config::{Config, ConfigLevel, PersonalConfig, RemoteConfig, StoredCredential};
pub use credentials::{choose_token, validate_token, EnvTokens, Origin, UserConfig};
pub use remotes::{RemoteEntry, RemoteName, RemoteSource, RemovedRemote, ResolvedRemote};
pub use select::{escape_glob, is_glob, PathFilter};
pub(crate) use worktree::find_in_history;
pub use worktree::{RefusedManifest, WorktreeManifest};

use crate::error::{Error, Result};
use crate::error::{ManifestError, RepoError};
use crate::fsutil;
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
    /// The data files whose manifests are in git's index (read once, when first needed): they
    /// are tracked whatever the config says.
    pub(crate) in_git: std::sync::OnceLock<Vec<RepoPath>>,
    /// The git work tree holding the repository, as its top directory and the repository's
    /// prefix in it (asked of git once, when first needed; see `Repo::git_tree`).
    pub(crate) git_tree: std::sync::OnceLock<Option<(PathBuf, String)>>,
}

/// A lock on the repository, released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// Locks `p` (created when missing) with `flock`: shared or exclusive; blocking, or `None` when
/// `wait` is false and another process holds it.
fn lock_file(p: &Path, exclusive: bool, wait: bool) -> Result<Option<RepoLock>> {
    use fs2::FileExt;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map_err(Error::io("opening lock", p))?;
    let r = match (exclusive, wait) {
        (true, true) => FileExt::lock_exclusive(&f),
        (false, true) => FileExt::lock_shared(&f),
        (true, false) => FileExt::try_lock_exclusive(&f),
        (false, false) => FileExt::try_lock_shared(&f),
    };
    match r {
        Ok(()) => Ok(Some(RepoLock { _file: f })),
        Err(e) if !wait && e.kind() == fs2::lock_contended_error().kind() => Ok(None),
        Err(e) => Err(Error::io("locking", p)(e)),
    }
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
    /// committed only manifests): `.shard/objects`, `cache` and `tmp`, and nothing meant to be
    /// committed. No `.shard/config.toml` or `.shard/.gitignore` is written (the defaults apply
    /// until the owner's config arrives with `git pull`, which those files would block); keep the
    /// store out of git with `Repo::exclude_local_store` (lines in `.git/info/exclude`, which git
    /// never shares).
    pub fn init_for_clone(dir: &Path) -> Result<Repo> {
        let root = dir.canonicalize().map_err(Error::io("resolving", dir))?;
        let dot = root.join(SHARD_DIR);
        for sub in ["objects", "cache", "tmp"] {
            fsutil::create_dir_all(&dot.join(sub))?;
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
            // A config, or a local store alone (a clone whose owner committed only manifests).
            if dot.join("config.toml").is_file() || dot.join("objects").is_dir() {
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
            in_git: std::sync::OnceLock::new(),
            git_tree: std::sync::OnceLock::new(),
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
        lock_file(&self.dot.join("lock"), exclusive, true).map(|l| l.expect("a blocking lock"))
    }

    /// `.shard/cache/deltas`: the queue of versions waiting for their previous version to be
    /// re-encoded as deltas, the lock that serialises that work, and the last background run's
    /// log. Local to this machine (`.shard/cache/` is never committed); losing it loses no data,
    /// only space (the queued versions stay whole).
    pub fn deltas_dir(&self) -> PathBuf {
        self.dot.join("cache").join("deltas")
    }

    /// Takes the lock that serialises re-encoding old versions as deltas (`deltas_dir()/lock`),
    /// exclusively: held by `repack` and by whatever deletes objects (gc), never together with a
    /// wait for the repository lock, so a background repack never holds up a commit. `wait =
    /// false` returns `None` when another process holds it.
    pub(crate) fn deltas_lock(&self, wait: bool) -> Result<Option<RepoLock>> {
        let dir = self.deltas_dir();
        fsutil::create_dir_all(&dir)?;
        lock_file(&dir.join("lock"), true, wait)
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

    /// Whether a changed ctime means a changed file (`trust_ctime` in `.shard/config.local.toml`,
    /// default true).
    pub fn trust_ctime(&self) -> bool {
        self.local.trust_ctime.unwrap_or(true)
    }

    /// The stat cache of the work tree, judging changes as the config says.
    pub(crate) fn stat_cache(&self) -> statcache::StatCache {
        statcache::StatCache::load(
            &self.shard_dir().join("cache").join("stat.json"),
            self.trust_ctime(),
        )
    }

    /// Whether the repository lies inside a git work tree.
    pub fn is_git_repo(&self) -> bool {
        self.root.ancestors().any(|a| a.join(".git").exists())
    }
}
