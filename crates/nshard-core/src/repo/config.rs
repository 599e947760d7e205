//! `.shard/config.toml`: tracked paths, chunking settings and remotes. Committed to git so that a
//! clone knows what is tracked and where the data lives.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkParams;
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
    /// Chunking for new commits (old manifests keep their own parameters).
    #[serde(default)]
    pub chunking: ChunkParams,
    /// Configured remotes.
    #[serde(default, rename = "remote", skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteConfig>,
}

const HEADER: &str = "# NeuroShard repository configuration (commit this file to git).\n\
# Chunking applies to new commits; every manifest records the parameters it was cut with.\n\n";

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.chunking
            .validate()
            .map_err(|e| bad(format!("[chunking]: {e}")))?;
        Ok(cfg)
    }

    /// Writes the config atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(path, format!("{HEADER}{body}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
