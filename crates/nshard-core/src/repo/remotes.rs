//! Configured remotes: `nshard remote add|list|remove|set-url|default`, the default remote, and
//! turning what the user passed to `--remote` (a name or a URL) into a [`RemoteUrl`] that
//! remembers where it came from (which decides the tokens it may receive).
//!
//! Remotes live at three levels ([`ConfigLevel`]): the user's file, the shared
//! `.shard/config.toml` and the personal `.shard/config.local.toml`. The merged view has each name
//! once, from the highest level that defines it; the default remote is the one named by the
//! highest level that names one.

use std::fmt;
use std::path::Path;

use super::config::ConfigLevel;
use super::{Config, PersonalConfig, RemoteConfig, Repo, LOCAL_CONFIG};
use crate::error::{Error, Result};
use crate::error::{RemoteError, RemoteFailure, RepoError};
use crate::remote::RemoteUrl;

/// A validated remote name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter
/// or digit. It cannot be mistaken for a path or URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteName(String);

impl RemoteName {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<RemoteName> {
        let bad = |reason| {
            Error::Remote(RemoteError::InvalidName {
                name: s.chars().take(80).collect(),
                reason,
            })
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
    /// Its URL as stored, without any user or password a URL carries (never printed).
    pub url: String,
    /// The config file it is defined in.
    pub level: ConfigLevel,
    /// Whether it is the default remote.
    pub default: bool,
    /// The higher level whose remote of the same name hides this one, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden_by: Option<ConfigLevel>,
}

/// Where a remote's URL came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RemoteSource {
    /// The user typed the URL (`--remote URL`).
    CommandLine,
    /// A config file at this level.
    Config(ConfigLevel),
}

/// Where a push or pull goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRemote {
    /// The configured name, when the remote came from the config.
    pub name: Option<RemoteName>,
    /// The location.
    pub url: RemoteUrl,
    /// Where the URL came from.
    pub source: RemoteSource,
}

/// What `remove_remote` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedRemote {
    /// The level it was removed from.
    pub level: ConfigLevel,
    /// The default remote afterwards, when it changed.
    pub new_default: Option<Option<String>>,
    /// A remote of the same name at a lower level that is now visible.
    pub uncovered: Option<ConfigLevel>,
}

/// The remotes and default of one level.
struct Level<'a> {
    level: ConfigLevel,
    remotes: &'a [RemoteConfig],
    default: Option<&'a str>,
}

impl Repo {
    fn levels(&self) -> Vec<Level<'_>> {
        let mut out = Vec::with_capacity(3);
        if let Some(u) = &self.user {
            out.push(Level {
                level: ConfigLevel::User,
                remotes: &u.config().remotes,
                default: u.config().default_remote.as_deref(),
            });
        }
        out.push(Level {
            level: ConfigLevel::Shared,
            remotes: &self.config.remotes,
            default: self.config.default_remote.as_deref(),
        });
        out.push(Level {
            level: ConfigLevel::Local,
            remotes: &self.local.remotes,
            default: self.local.default_remote.as_deref(),
        });
        out
    }

    /// The effective definition of remote `name`: from the highest level that defines it.
    fn find_remote(&self, name: &str) -> Option<(ConfigLevel, &RemoteConfig)> {
        self.levels().into_iter().rev().find_map(|l| {
            l.remotes
                .iter()
                .find(|r| r.name == name)
                .map(|r| (l.level, r))
        })
    }

    /// The default remote's name and the level that names it: the highest level with a default.
    pub fn default_remote(&self) -> Option<(String, ConfigLevel)> {
        self.levels()
            .into_iter()
            .rev()
            .find_map(|l| l.default.map(|d| (d.to_string(), l.level)))
    }

    fn remote_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .levels()
            .iter()
            .flat_map(|l| l.remotes.iter().map(|r| r.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every remote definition, level by level (user, shared, local) in the order added. A
    /// definition hidden by a higher level's remote of the same name says so.
    pub fn remotes(&self) -> Vec<RemoteEntry> {
        let default = self.default_remote().map(|(d, _)| d);
        let levels = self.levels();
        let mut out = Vec::new();
        for (i, l) in levels.iter().enumerate() {
            for r in l.remotes {
                let overridden_by = levels[i + 1..]
                    .iter()
                    .rev()
                    .find(|h| h.remotes.iter().any(|x| x.name == r.name))
                    .map(|h| h.level);
                out.push(RemoteEntry {
                    name: r.name.clone(),
                    url: crate::remote::redacted(&r.url),
                    level: l.level,
                    default: overridden_by.is_none() && default.as_deref() == Some(&r.name),
                    overridden_by,
                });
            }
        }
        out
    }

    /// Runs `edit` on the remotes and default of `level`'s file, freshly read under the repository
    /// lock, then saves it atomically.
    fn edit_level<T>(
        &mut self,
        level: ConfigLevel,
        edit: impl FnOnce(&mut Vec<RemoteConfig>, &mut Option<String>) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock(true)?;
        match level {
            ConfigLevel::Shared => {
                let mut cfg = Config::load(&self.dot.join("config.toml"))?;
                let t = edit(&mut cfg.remotes, &mut cfg.default_remote)?;
                self.save_config(cfg)?;
                Ok(t)
            }
            ConfigLevel::Local => {
                let path = self.dot.join(LOCAL_CONFIG);
                let mut cfg = PersonalConfig::load(&path, level)?;
                let t = edit(&mut cfg.remotes, &mut cfg.default_remote)?;
                cfg.save(&path, level)?;
                self.local = cfg;
                Ok(t)
            }
            ConfigLevel::User => {
                let user = self
                    .user
                    .as_mut()
                    .ok_or(Error::Remote(RemoteError::NoUserConfig))?;
                let mut cfg = PersonalConfig::load(user.path(), level)?;
                let t = edit(&mut cfg.remotes, &mut cfg.default_remote)?;
                user.replace(cfg)?;
                Ok(t)
            }
        }
    }

    /// Turns a URL typed by the user into what is stored: a directory relative to `cwd` becomes
    /// an absolute path, a trailing `/` is dropped.
    fn stored_url(url: &str, cwd: &Path) -> Result<String> {
        let parsed = RemoteUrl::parse(url, cwd)?;
        Ok(match &parsed {
            RemoteUrl::Dir(_) if !url.contains("://") => parsed.to_string(),
            _ => url.trim_end_matches('/').to_string(),
        })
    }

    /// Adds remote `name` at `url` to the config file of `level` (a directory relative to `cwd`
    /// is stored as an absolute path). It becomes the default of its file with `make_default`, when
    /// it is the shared file's first remote (so that clones have a default), or when no default
    /// remote is configured at any level. Returns the entry as now listed.
    pub fn add_remote(
        &mut self,
        name: &RemoteName,
        url: &str,
        cwd: &Path,
        make_default: bool,
        level: ConfigLevel,
    ) -> Result<RemoteEntry> {
        let stored = Self::stored_url(url, cwd)?;
        // A typo in a path is caught now, not at the first push.
        let missing_dir = match RemoteUrl::parse(&stored, cwd)? {
            RemoteUrl::Dir(dir) if !dir.is_dir() => Some(Error::Remote(RemoteError::Failed {
                remote: dir.display().to_string(),
                kind: RemoteFailure::NotFound,
                reason: if dir.exists() {
                    "is not a directory".into()
                } else {
                    "the directory does not exist (create it first, e.g. `mkdir -p` it, to use it as a remote)".into()
                },
            })),
            _ => None,
        };
        let has_default = self
            .default_remote()
            .is_some_and(|(d, _)| self.find_remote(&d).is_some());
        self.edit_level(level, |remotes, default| {
            if remotes.iter().any(|r| r.name == name.as_str()) {
                return Err(Error::Remote(RemoteError::Exists(name.to_string())));
            }
            if let Some(e) = missing_dir {
                return Err(e);
            }
            remotes.push(RemoteConfig {
                name: name.to_string(),
                url: stored.clone(),
            });
            // The shared file gets a default of its own, for everyone who clones the repository;
            // a personal remote becomes the default only when asked, or when there is none.
            let needs_default = match level {
                ConfigLevel::Shared => !default
                    .as_ref()
                    .is_some_and(|d| remotes.iter().any(|r| &r.name == d)),
                _ => !has_default,
            };
            if make_default || needs_default {
                *default = Some(name.to_string());
            }
            Ok(())
        })?;
        self.entry(name.as_str(), level)
    }

    fn entry(&self, name: &str, level: ConfigLevel) -> Result<RemoteEntry> {
        self.remotes()
            .into_iter()
            .find(|e| e.name == name && e.level == level)
            .ok_or_else(|| {
                Error::Remote(RemoteError::NotAtLevel {
                    name: name.to_string(),
                    level: level.as_str(),
                })
            })
    }

    /// The level to change for remote `name`: `level` when given (it must define the remote),
    /// else the level of its effective definition.
    fn level_of(&self, name: &str, level: Option<ConfigLevel>) -> Result<ConfigLevel> {
        match level {
            Some(l)
                if self
                    .remotes()
                    .iter()
                    .any(|e| e.name == name && e.level == l) =>
            {
                Ok(l)
            }
            Some(l) if l == ConfigLevel::User && self.user.is_none() => {
                Err(Error::Remote(RemoteError::NoUserConfig))
            }
            Some(l) => Err(Error::Remote(RemoteError::NotAtLevel {
                name: name.chars().take(80).collect(),
                level: l.as_str(),
            })),
            None => self
                .find_remote(name)
                .map(|(l, _)| l)
                .ok_or_else(|| unknown(name, &self.remote_names())),
        }
    }

    /// Changes the URL of remote `name` in `level`'s file (by default where its effective
    /// definition is). Returns the entry as now listed.
    pub fn set_remote_url(
        &mut self,
        name: &str,
        url: &str,
        cwd: &Path,
        level: Option<ConfigLevel>,
    ) -> Result<RemoteEntry> {
        let level = self.level_of(name, level)?;
        let stored = Self::stored_url(url, cwd)?;
        self.edit_level(level, |remotes, _| {
            let r = remotes.iter_mut().find(|r| r.name == name).ok_or_else(|| {
                Error::Remote(RemoteError::NotAtLevel {
                    name: name.to_string(),
                    level: level.as_str(),
                })
            })?;
            r.url = stored;
            Ok(())
        })?;
        self.entry(name, level)
    }

    /// Removes remote `name` from `level`'s file (by default where its effective definition is).
    /// When it was that file's default, the file's first remaining remote (if any) becomes its
    /// default.
    pub fn remove_remote(
        &mut self,
        name: &str,
        level: Option<ConfigLevel>,
    ) -> Result<RemovedRemote> {
        let level = self.level_of(name, level)?;
        let before = self.default_remote().map(|(d, _)| d);
        self.edit_level(level, |remotes, default| {
            remotes.retain(|r| r.name != name);
            if default.as_deref() == Some(name) {
                *default = remotes.first().map(|r| r.name.clone());
            }
            Ok(())
        })?;
        let after = self.default_remote().map(|(d, _)| d);
        Ok(RemovedRemote {
            level,
            new_default: (before != after).then_some(after),
            uncovered: self.find_remote(name).map(|(l, _)| l),
        })
    }

    /// Sets (or with `None` unsets) the default remote in `level`'s file. A name must be a
    /// configured remote at some level.
    pub fn set_default_remote(&mut self, name: Option<&str>, level: ConfigLevel) -> Result<()> {
        if let Some(n) = name {
            if self.find_remote(n).is_none() {
                return Err(unknown(n, &self.remote_names()));
            }
        }
        self.edit_level(level, |_, default| {
            *default = name.map(str::to_string);
            Ok(())
        })
    }

    /// Resolves what the user passed to `--remote` (relative to `cwd`), or the default remote when
    /// nothing was passed. A bare word is a configured name; a path or URL is used as is.
    pub fn resolve_remote(&self, arg: Option<&str>, cwd: &Path) -> Result<ResolvedRemote> {
        let by_name = |name: &str| -> Result<ResolvedRemote> {
            let (level, r) = self
                .find_remote(name)
                .ok_or_else(|| unknown(name, &self.remote_names()))?;
            let file = match level {
                ConfigLevel::Shared => self.dot.join("config.toml"),
                ConfigLevel::Local => self.dot.join(LOCAL_CONFIG),
                ConfigLevel::User => self
                    .user
                    .as_ref()
                    .map(|u| u.path().to_path_buf())
                    .unwrap_or_default(),
            };
            Ok(ResolvedRemote {
                name: Some(RemoteName::parse(&r.name)?),
                // Relative directories in a hand-written config are relative to the repository.
                url: RemoteUrl::parse(&r.url, &self.root).map_err(|e| {
                    Error::Repo(RepoError::Config {
                        path: file,
                        reason: format!("remote {:?}: {e}", r.name),
                    })
                })?,
                source: RemoteSource::Config(level),
            })
        };
        match arg {
            Some(a) if self.find_remote(a).is_some() => by_name(a),
            Some(a) if !RemoteUrl::looks_like_location(a) => Err(unknown(a, &self.remote_names())),
            Some(a) => Ok(ResolvedRemote {
                name: None,
                url: RemoteUrl::parse(a, cwd)?,
                source: RemoteSource::CommandLine,
            }),
            None => match self.default_remote() {
                Some((d, _)) => by_name(&d),
                None => Err(Error::Remote(RemoteError::NoRemote)),
            },
        }
    }
}

fn unknown(name: &str, known: &[String]) -> Error {
    Error::Remote(RemoteError::Unknown {
        name: name.chars().take(80).collect(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: ConfigLevel = ConfigLevel::Shared;

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
            Err(Error::Remote(RemoteError::NoRemote))
        ));
        let origin = RemoteName::parse("origin").expect("name");
        let backup = RemoteName::parse("backup").expect("name");
        // Directory remotes must exist when added.
        std::fs::create_dir(root.join("store")).expect("mkdir");
        let e = repo
            .add_remote(&origin, "../store", &root.join("sub"), false, SHARED)
            .expect("add");
        assert!(e.default);
        assert_eq!(e.url, root.join("store").display().to_string());
        assert!(matches!(
            repo.add_remote(&origin, "/x", &root, false, SHARED),
            Err(Error::Remote(RemoteError::Exists(_)))
        ));
        let e = repo
            .add_remote(&backup, "http://127.0.0.1:8000/", &root, false, SHARED)
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
            Err(Error::Remote(RemoteError::Unknown { .. }))
        ));
        // The config survives a reload.
        let again = Repo::discover(&root).expect("reopen");
        assert_eq!(again.remotes(), repo.remotes());
        assert_eq!(
            repo.remove_remote("origin", None)
                .expect("remove")
                .new_default,
            Some(Some("backup".into()))
        );
        assert!(repo.remove_remote("origin", None).is_err());
        assert_eq!(repo.remotes().len(), 1);
        assert!(repo.remotes()[0].default);
    }

    #[test]
    fn levels_merge_and_say_where_a_url_came_from() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(d.path().join("r")).expect("mkdir");
        let (repo, _) = Repo::init(&d.path().join("r")).expect("init");
        let user_file = d.path().join("user/config.toml");
        let mut repo = repo
            .with_user_config(Some(user_file.clone()))
            .expect("user");
        let root = repo.root().to_path_buf();
        let n = |s: &str| RemoteName::parse(s).expect(s);
        // Directory remotes must exist when added.
        let dir = |rel: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(&p).expect("mkdir");
            p.display().to_string()
        };
        let (ua, sa, lb) = (dir("u/a"), dir("s/a"), dir("l/b"));
        repo.add_remote(&n("a"), &ua, &root, false, ConfigLevel::User)
            .expect("user a");
        // The user's remote is the only one: it is the default.
        assert_eq!(repo.default_remote(), Some(("a".into(), ConfigLevel::User)));
        repo.add_remote(&n("a"), &sa, &root, false, SHARED)
            .expect("shared a");
        repo.add_remote(&n("b"), &lb, &root, false, ConfigLevel::Local)
            .expect("local b");
        // The shared file's first remote is its default and beats the user's.
        assert_eq!(repo.default_remote(), Some(("a".into(), SHARED)));
        let r = repo.resolve_remote(None, &root).expect("default");
        assert_eq!(r.source, RemoteSource::Config(SHARED));
        assert_eq!(r.url, RemoteUrl::Dir(sa.clone().into()));
        let r = repo.resolve_remote(Some("b"), &root).expect("b");
        assert_eq!(r.source, RemoteSource::Config(ConfigLevel::Local));
        let r = repo.resolve_remote(Some("/x"), &root).expect("url");
        assert_eq!(r.source, RemoteSource::CommandLine);
        let list = repo.remotes();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].overridden_by, Some(SHARED));
        assert!(!list[0].default && list[1].default);
        // Removing the shared `a` uncovers the user's, which becomes the default again.
        let removed = repo.remove_remote("a", None).expect("remove");
        assert_eq!(removed.level, SHARED);
        assert_eq!(removed.uncovered, Some(ConfigLevel::User));
        let r = repo.resolve_remote(None, &root).expect("default");
        assert_eq!(r.source, RemoteSource::Config(ConfigLevel::User));
        // Everything was written where it belongs.
        let again = Repo::discover(&root)
            .expect("reopen")
            .with_user_config(Some(user_file))
            .expect("user");
        assert_eq!(again.remotes(), repo.remotes());
        // Without a user file, --user cannot work.
        let mut bare = Repo::discover(&root).expect("reopen");
        assert!(matches!(
            bare.add_remote(&n("c"), "/c", &root, false, ConfigLevel::User),
            Err(Error::Remote(RemoteError::NoUserConfig))
        ));
    }
}
