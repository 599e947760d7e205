//! The configuration files, lowest precedence first:
//!
//! - the user's own file (`~/.config/nshard/config.toml`; the binary finds it, the library is handed
//!   its path): personal remotes, the default remote, and tokens stored by `nshard login`;
//! - `.shard/config.toml`, committed to git: tracked paths, chunking, shared remotes;
//! - `.shard/config.local.toml`, git-ignored: this user's remotes and default for this repository.
//!
//! Remotes and the default remote are merged (a higher level wins for the same name); tracked
//! paths and chunking exist only in the shared file, and tokens only in the user's file.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkParams;
use crate::error::RepoError;
use crate::error::{Error, Result};
use crate::fsutil;

/// A named remote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Its name (`origin`, …).
    pub name: String,
    /// Its URL: a directory, `file://`, `http(s)://` or `s3://`.
    pub url: String,
}

/// The repository configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the remote used when `--remote` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_remote: Option<String>,
    /// Tracked paths: repository-relative files, directories (recursive) or glob patterns.
    #[serde(default)]
    pub track: Vec<String>,
    /// Directories versioned as one unit (`nshard track --dir`), repository-relative, without a
    /// trailing slash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// `nshard track DIR` makes a directory one unit when it holds at least this many files
    /// (default [`crate::dirunit::DEFAULT_DIR_THRESHOLD`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_threshold: Option<usize>,
    /// Chunking for new commits (old manifests keep their own parameters).
    #[serde(default)]
    pub chunking: ChunkParams,
    /// `false` stores every version of a model whole; by default (`true`) the version before a
    /// new one is re-encoded as deltas of it (docs/storage.md, "Deltas").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<bool>,
    /// The most deltas between any chunk and a chunk stored whole (default
    /// [`DEFAULT_DELTA_DEPTH`], at most 32): checking out an old version reads at most this many
    /// deltas per chunk; deeper chains store old versions smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_depth: Option<u8>,
    /// `true` (default): commit returns once the new version is stored and the previous version
    /// is re-encoded as deltas by a background `nshard repack`; `false`: commit does it before
    /// returning (docs/storage.md, "Deltas").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_background: Option<bool>,
    /// Configured remotes.
    #[serde(default, rename = "remote", skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteConfig>,
}

/// Default for `delta_depth` (chosen by measurement: docs/storage.md, "Deltas"): on a long
/// checkpoint series, 16 stores a version in 0.92× (bf16) / 0.96× (fp32) of z4ai's delta where 8
/// takes 1.29× / 0.99×, for a deepest checkout of 7.3× the newest instead of 4.3×.
pub const DEFAULT_DELTA_DEPTH: u8 = 16;
/// Largest accepted `delta_depth`.
pub const MAX_DELTA_DEPTH: u8 = 32;

/// Where a setting comes from, lowest precedence first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConfigLevel {
    /// The user's own file, for every repository.
    User,
    /// `.shard/config.toml`, committed to git.
    Shared,
    /// `.shard/config.local.toml`, this user's, git-ignored.
    Local,
}

impl ConfigLevel {
    /// `user`, `shared` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigLevel::User => "user",
            ConfigLevel::Shared => "shared",
            ConfigLevel::Local => "local",
        }
    }

    /// Whether settings from this level are the user's own (not from a committed file): such
    /// remotes may receive the user's general token.
    pub fn is_personal(self) -> bool {
        self != ConfigLevel::Shared
    }
}

impl std::fmt::Display for ConfigLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token stored by `nshard login` for one origin.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCredential {
    /// The origin, `scheme://host:port`.
    pub origin: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("origin", &self.origin)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A personal configuration file: the user's file or `.shard/config.local.toml`. Tracked paths and
/// chunking are shared settings and are refused here; tokens are accepted only in the user's file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalConfig {
    /// Name of the remote used when `--remote` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_remote: Option<String>,
    /// Configured remotes.
    #[serde(default, rename = "remote", skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteConfig>,
    /// Tokens stored by `nshard login` (user file only).
    #[serde(default, rename = "credential", skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<StoredCredential>,
    /// `false` where the filesystem moves files' ctime on its own (some network and FUSE
    /// filesystems): a file is then judged unchanged by size, mtime and inode alone, as git's
    /// `core.trustctime = false` does. Default: true. A per-machine setting
    /// (`.shard/config.local.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_ctime: Option<bool>,
}

const USER_HEADER: &str =
    "# NeuroShard user configuration: personal remotes and tokens (`nshard login`).\n\
# Keep this file private (mode 0600); nshard writes it that way.\n\n";

const LOCAL_HEADER: &str =
    "# NeuroShard personal settings for this repository (git-ignored, never commit it).\n\n";

impl PersonalConfig {
    /// Reads and validates the personal config at `path` (absent = empty). `level` is
    /// [`ConfigLevel::User`] or [`ConfigLevel::Local`]; only the user's file may hold tokens.
    pub fn load(path: &Path, level: ConfigLevel) -> Result<PersonalConfig> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PersonalConfig::default()),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        let bad = |reason: String| {
            Error::Repo(RepoError::Config {
                path: path.to_path_buf(),
                reason,
            })
        };
        let cfg: PersonalConfig = toml::from_str(&text).map_err(|e| {
            let shared_only = ["`track`", "`chunking`"]
                .iter()
                .any(|k| e.message().contains(&format!("unknown field {k}")));
            let mut reason = e.to_string();
            if shared_only {
                reason.push_str("\ntracked paths and chunking are shared settings: they belong in .shard/config.toml");
            }
            bad(reason)
        })?;
        if level != ConfigLevel::User && !cfg.credentials.is_empty() {
            return Err(bad(
                "tokens belong in your user config file (use `nshard login URL`), not in the repository".into(),
            ));
        }
        Ok(cfg)
    }

    /// Writes the file atomically. The user's file is created with mode 0600 (it may hold tokens)
    /// and its directory is created if needed.
    pub fn save(&self, path: &Path, level: ConfigLevel) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| {
            Error::Repo(RepoError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })?;
        let header = if level == ConfigLevel::User {
            USER_HEADER
        } else {
            LOCAL_HEADER
        };
        let text = format!("{header}{body}");
        if level != ConfigLevel::User {
            return fsutil::write_atomic(path, text.as_bytes());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fsutil::create_dir_all(dir)?;
        }
        fsutil::write_atomic_private(path, text.as_bytes())
    }
}

const HEADER: &str = "# NeuroShard repository configuration (commit this file to git).\n\
# Chunking applies to new commits; every manifest records the parameters it was cut with.\n\n";

impl Config {
    /// The longest chain of deltas commit may make; 0 when deltas are off.
    pub fn delta_depth(&self) -> u8 {
        if self.delta == Some(false) {
            0
        } else {
            self.delta_depth.unwrap_or(DEFAULT_DELTA_DEPTH)
        }
    }

    /// Whether commit leaves the re-encoding of the previous version to a background
    /// `nshard repack` (the default) instead of doing it before it returns.
    pub fn delta_background(&self) -> bool {
        self.delta_background != Some(false)
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        let bad = |reason: String| {
            Error::Repo(RepoError::Config {
                path: path.to_path_buf(),
                reason,
            })
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.chunking
            .validate()
            .map_err(|e| bad(format!("[chunking]: {e}")))?;
        if cfg
            .delta_depth
            .is_some_and(|d| d == 0 || d > MAX_DELTA_DEPTH)
        {
            return Err(bad(format!(
                "delta_depth must be 1 to {MAX_DELTA_DEPTH} (to store every version whole, set delta = false)"
            )));
        }
        Ok(cfg)
    }

    /// Writes the config atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| {
            Error::Repo(RepoError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })?;
        fsutil::write_atomic(path, format!("{HEADER}{body}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_files() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("sub/config.toml");
        let mut c = PersonalConfig::default();
        c.remotes.push(RemoteConfig {
            name: "mine".into(),
            url: "/srv/mine".into(),
        });
        c.credentials.push(StoredCredential {
            origin: "http://127.0.0.1:8000".into(),
            token: "secret-token".into(),
        });
        c.save(&p, ConfigLevel::User).expect("save");
        assert_eq!(
            PersonalConfig::load(&p, ConfigLevel::User).expect("load"),
            c
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).expect("md").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // A file made readable by others by hand is private again after the next write.
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
            c.save(&p, ConfigLevel::User).expect("save again");
            let mode = fs::metadata(&p).expect("md").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let e = PersonalConfig::load(&p, ConfigLevel::Local).expect_err("tokens refused");
        assert!(e.to_string().contains("nshard login"), "{e}");
        fs::write(&p, "track = [\"a\"]\n").expect("w");
        let e = PersonalConfig::load(&p, ConfigLevel::Local).expect_err("track refused");
        assert!(e.to_string().contains("shared settings"), "{e}");
        assert_eq!(
            PersonalConfig::load(&d.path().join("none.toml"), ConfigLevel::Local).expect("absent"),
            PersonalConfig::default()
        );
    }

    #[test]
    fn roundtrip_and_defaults() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("config.toml");
        let mut c = Config::default();
        c.track.push("models/a.bin".into());
        c.remotes.push(RemoteConfig {
            name: "origin".into(),
            url: "/srv/store".into(),
        });
        c.default_remote = Some("origin".into());
        c.save(&p).expect("save");
        assert_eq!(Config::load(&p).expect("load"), c);
        fs::write(&p, "[chunking]\nalgorithm = \"fixed\"\nsize = 1\n").expect("w");
        assert!(Config::load(&p).is_err());
    }
}
