//! Configured remotes: `nshard remote add|list|remove`, the default remote, and turning what the
//! user passed to `--remote` (a name or a URL) into a [`RemoteUrl`].

use std::fmt;
use std::path::Path;

use super::{Config, RemoteConfig, Repo};
use crate::error::{Error, Result};
use crate::remote::RemoteUrl;

/// A validated remote name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter
/// or digit. It cannot be mistaken for a path or URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteName(String);

impl RemoteName {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<RemoteName> {
        let bad = |reason| Error::InvalidRemoteName {
            name: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() || s.len() > 64 {
            return Err(bad("must be 1 to 64 characters"));
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("must start with a letter or digit"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(bad("may only hold letters, digits, '-', '_' and '.'"));
        }
        Ok(RemoteName(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configured remote as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteEntry {
    /// Its name.
    pub name: String,
    /// Its URL as stored.
    pub url: String,
    /// Whether it is the default remote.
    pub default: bool,
}

/// Where a push or pull goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRemote {
    /// The configured name, when the remote came from the config.
    pub name: Option<RemoteName>,
    /// The location.
    pub url: RemoteUrl,
}

impl Repo {
    /// The configured remotes, in the order they were added.
    pub fn remotes(&self) -> Vec<RemoteEntry> {
        self.config
            .remotes
            .iter()
            .map(|r| RemoteEntry {
                name: r.name.clone(),
                url: r.url.clone(),
                default: self.config.default_remote.as_deref() == Some(r.name.as_str()),
            })
            .collect()
    }

    /// Adds remote `name` at `url` (a directory relative to `cwd` is stored as an absolute path).
    /// The first remote added becomes the default, as does one added with `make_default`.
    /// Returns the entry as stored.
    pub fn add_remote(
        &mut self,
        name: &RemoteName,
        url: &str,
        cwd: &Path,
        make_default: bool,
    ) -> Result<RemoteEntry> {
        let _lock = self.lock(true)?;
        let mut cfg: Config = Config::load(&self.dot.join("config.toml"))?;
        if cfg.remotes.iter().any(|r| r.name == name.as_str()) {
            return Err(Error::RemoteExists(name.to_string()));
        }
        let parsed = RemoteUrl::parse(url, cwd)?;
        let stored = match &parsed {
            RemoteUrl::Dir(_) if !url.contains("://") => parsed.to_string(),
            _ => url.trim_end_matches('/').to_string(),
        };
        cfg.remotes.push(RemoteConfig {
            name: name.to_string(),
            url: stored.clone(),
        });
        let default = make_default
            || cfg.default_remote.is_none()
            || !cfg
                .remotes
                .iter()
                .any(|r| Some(&r.name) == cfg.default_remote.as_ref());
        if default {
            cfg.default_remote = Some(name.to_string());
        }
        self.save_config(cfg)?;
        Ok(RemoteEntry {
            name: name.to_string(),
            url: stored,
            default,
        })
    }

    /// Removes remote `name`. When it was the default, the first remaining remote (if any) becomes
    /// the default; returns that new default.
    pub fn remove_remote(&mut self, name: &str) -> Result<Option<String>> {
        let _lock = self.lock(true)?;
        let mut cfg: Config = Config::load(&self.dot.join("config.toml"))?;
        let before = cfg.remotes.len();
        cfg.remotes.retain(|r| r.name != name);
        if cfg.remotes.len() == before {
            return Err(unknown(name, &cfg));
        }
        let mut new_default = None;
        if cfg.default_remote.as_deref() == Some(name) {
            cfg.default_remote = cfg.remotes.first().map(|r| r.name.clone());
            new_default.clone_from(&cfg.default_remote);
        }
        self.save_config(cfg)?;
        Ok(new_default)
    }

    /// Resolves what the user passed to `--remote` (relative to `cwd`), or the default remote when
    /// nothing was passed. A bare word is a configured name; a path or URL is used as is.
    pub fn resolve_remote(&self, arg: Option<&str>, cwd: &Path) -> Result<ResolvedRemote> {
        let by_name = |name: &str| -> Result<ResolvedRemote> {
            let r = self
                .config
                .remotes
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| unknown(name, &self.config))?;
            Ok(ResolvedRemote {
                name: Some(RemoteName::parse(&r.name)?),
                // Relative directories in a hand-written config are relative to the repository.
                url: RemoteUrl::parse(&r.url, &self.root).map_err(|e| Error::Config {
                    path: self.dot.join("config.toml"),
                    reason: format!("remote {:?}: {e}", r.name),
                })?,
            })
        };
        match arg {
            Some(a) if self.config.remotes.iter().any(|r| r.name == a) => by_name(a),
            Some(a) if !RemoteUrl::looks_like_location(a) => Err(unknown(a, &self.config)),
            Some(a) => Ok(ResolvedRemote {
                name: None,
                url: RemoteUrl::parse(a, cwd)?,
            }),
            None => match &self.config.default_remote {
                Some(d) => by_name(d),
                None => Err(Error::NoRemote),
            },
        }
    }
}

fn unknown(name: &str, cfg: &Config) -> Error {
    let known: Vec<&str> = cfg.remotes.iter().map(|r| r.name.as_str()).collect();
    Error::UnknownRemote {
        name: name.chars().take(80).collect(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["origin", "a", "team-store_2", "s3.backup"] {
            RemoteName::parse(ok).expect(ok);
        }
        for bad in ["", "-x", ".x", "a/b", "a:b", "a b", &"x".repeat(65), "é"] {
            assert!(RemoteName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_list_default_resolve_remove() {
        let d = tempfile::tempdir().expect("tmp");
        let (mut repo, _) = Repo::init(d.path()).expect("init");
        let root = repo.root().to_path_buf();
        assert!(matches!(
            repo.resolve_remote(None, &root),
            Err(Error::NoRemote)
        ));
        let origin = RemoteName::parse("origin").expect("name");
        let backup = RemoteName::parse("backup").expect("name");
        let e = repo
            .add_remote(&origin, "../store", &root.join("sub"), false)
            .expect("add");
        assert!(e.default);
        assert_eq!(e.url, root.join("store").display().to_string());
        assert!(matches!(
            repo.add_remote(&origin, "/x", &root, false),
            Err(Error::RemoteExists(_))
        ));
        let e = repo
            .add_remote(&backup, "http://127.0.0.1:8000/", &root, false)
            .expect("add");
        assert!(!e.default);
        assert_eq!(e.url, "http://127.0.0.1:8000");
        let r = repo.resolve_remote(None, &root).expect("default");
        assert_eq!(r.name, Some(origin.clone()));
        assert_eq!(r.url, RemoteUrl::Dir(root.join("store")));
        let r = repo.resolve_remote(Some("backup"), &root).expect("name");
        assert_eq!(r.url, RemoteUrl::Http("http://127.0.0.1:8000".into()));
        let r = repo.resolve_remote(Some("./other"), &root).expect("dir");
        assert_eq!((r.name, r.url), (None, RemoteUrl::Dir(root.join("other"))));
        assert!(matches!(
            repo.resolve_remote(Some("nope"), &root),
            Err(Error::UnknownRemote { .. })
        ));
        // The config survives a reload.
        let again = Repo::discover(&root).expect("reopen");
        assert_eq!(again.remotes(), repo.remotes());
        assert_eq!(
            repo.remove_remote("origin").expect("remove"),
            Some("backup".into())
        );
        assert!(repo.remove_remote("origin").is_err());
        assert_eq!(repo.remotes().len(), 1);
        assert!(repo.remotes()[0].default);
    }
}
