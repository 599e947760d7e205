//! [`RepoPath`]: a validated repository-relative path, safe to join onto the repository root on
//! every OS. Every path that comes from a user, a manifest or a listing becomes one before use.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;
use crate::error::{Error, Result};

/// File name suffix of manifests.
pub const MANIFEST_SUFFIX: &str = ".shard.json";

/// Longest repository-relative path accepted (bytes).
pub const MAX_PATH_LEN: usize = 4096;

/// A validated, normalized repository-relative path with `/` separators: no empty, `.` or `..`
/// components, not absolute, no backslash, no drive letter, no control character, and no component
/// that any common filesystem would take for `.git` or `.shard` or that Windows cannot hold (see
/// [`crate::format::check_path_component`]). A `RepoPath` is safe to join onto the repository root on every OS.
/// Its `Display` escapes invisible and control characters; [`RepoPath::as_str`] is the raw name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason| {
            Err(Error::Manifest(ManifestError::UnsafePath {
                path: s.chars().take(200).collect(),
                reason,
            }))
        };
        if s.is_empty() {
            return bad("empty path");
        }
        if s.len() > MAX_PATH_LEN {
            return bad("path too long");
        }
        if s.contains('\0') {
            return bad("contains a NUL byte");
        }
        if s.contains('\\') {
            return bad("contains a backslash (paths use '/')");
        }
        if s.starts_with('/') {
            return bad("absolute path");
        }
        let b = s.as_bytes();
        if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
            return bad("drive letter");
        }
        for comp in s.split('/') {
            if comp.is_empty() {
                return bad("empty path component");
            }
            if let Some(reason) = crate::portable::check_component(comp) {
                return bad(reason);
            }
        }
        Ok(Self(s.to_string()))
    }

    /// Builds a `RepoPath` from a path relative to the repository root.
    pub fn from_relative(p: &Path) -> Result<Self> {
        let mut parts = Vec::new();
        for c in p.components() {
            match c {
                std::path::Component::Normal(os) => match os.to_str() {
                    Some(s) => parts.push(s),
                    None => {
                        return Err(Error::Manifest(ManifestError::UnsafePath {
                            path: p.display().to_string(),
                            reason: "not valid UTF-8",
                        }))
                    }
                },
                std::path::Component::CurDir => {}
                _ => {
                    return Err(Error::Manifest(ManifestError::UnsafePath {
                        path: p.display().to_string(),
                        reason: "not a plain relative path",
                    }))
                }
            }
        }
        Self::parse(&parts.join("/"))
    }

    /// The path as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Joins this path onto `root`.
    pub fn to_path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.0.split('/') {
            p.push(c);
        }
        p
    }

    /// The manifest path for this data file: `<path>.shard.json`.
    pub fn manifest_path(&self) -> RepoPath {
        RepoPath(format!("{}{}", self.0, MANIFEST_SUFFIX))
    }

    /// For a manifest path `x.shard.json`, the data file `x`.
    pub fn data_path_of_manifest(&self) -> Option<RepoPath> {
        self.0
            .strip_suffix(MANIFEST_SUFFIX)
            .filter(|s| !s.is_empty() && !s.ends_with('/'))
            .map(|s| RepoPath(s.to_string()))
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&crate::portable::escape(&self.0))
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for RepoPath {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RepoPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_path_validation() {
        for ok in [
            "a",
            "models/x.pth",
            "a/b/c.safetensors",
            ".gitignore",
            "a..b",
        ] {
            RepoPath::parse(ok).expect(ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "C:/x",
            "c:x",
            ".git/config",
            "a/.GIT/x",
            ".Shard/objects",
            "a/",
            "x\0y",
            "x/.g\u{200c}it/hooks/post-checkout",
            "GIT~1/config",
            ".git./config",
            ".git /config",
            ".git::$INDEX_ALLOCATION/config",
            "CON",
            "models/nul.txt",
            "a\x1b[2Jb",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
