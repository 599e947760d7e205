//! The stat cache: for each data file, the (size, mtime, inode) it had when its content was last
//! known to equal a committed version. A file whose stat still matches is not reread by commit,
//! status or checkout.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil;
use crate::id::ObjectId;

/// What the file system said about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number (0 where unavailable).
    pub ino: u64,
}

impl StatKey {
    /// Extracts the key from metadata.
    pub fn of(md: &Metadata) -> Self {
        let mtime_ns = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(md);
        #[cfg(not(unix))]
        let ino = 0;
        Self {
            size: md.len(),
            mtime_ns,
            ino,
        }
    }
}

/// One cache entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    /// The file's stat when its content was known.
    pub stat: StatKey,
    /// The whole-file SHA-256 of that content.
    pub sha256: ObjectId,
    /// The version (manifest id) whose content it is.
    pub version: ObjectId,
}

/// The cache, keyed by repository path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: BTreeMap<String, StatEntry>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    dirty: bool,
}

impl StatCache {
    /// Loads the cache; a missing or unreadable cache is simply empty (it is only an optimisation).
    pub fn load(path: &Path) -> Self {
        let mut c: StatCache = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        c.path = path.to_path_buf();
        c
    }

    /// The entry for `path` if its stat still matches `md`.
    pub fn fresh(&self, path: &str, md: &Metadata) -> Option<&StatEntry> {
        self.entries
            .get(path)
            .filter(|e| e.stat == StatKey::of(md) && !racy(&e.stat))
    }

    /// The entry for `path`, stale or not.
    pub fn get(&self, path: &str) -> Option<&StatEntry> {
        self.entries.get(path)
    }

    /// Records that `path` with `stat` holds `version`'s content.
    pub fn set(&mut self, path: &str, entry: StatEntry) {
        self.entries.insert(path.to_string(), entry);
        self.dirty = true;
    }

    /// Saves atomically when changed.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self).expect("cache serializes");
        fsutil::write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

/// A file modified within the same second as its cache entry was written could change again
/// without its mtime moving on coarse-timestamp filesystems ("racy git"); such entries are not
/// trusted. With nanosecond mtimes this only bites files modified in the last two seconds.
fn racy(stat: &StatKey) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    stat.mtime_ns % 1_000_000_000 == 0 && now - stat.mtime_ns < 2_000_000_000
}
