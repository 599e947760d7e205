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

pub use crate::fsutil::StatKey;

/// One cache entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    /// The file's stat when its content was known.
    pub stat: StatKey,
    /// The whole-file SHA-256 of that content.
    pub sha256: ObjectId,
    /// The version (manifest id) whose content it is.
    pub version: ObjectId,
    /// When the content was observed: taken *before* the file was read or hashed (nanoseconds
    /// since the epoch). An entry whose mtime is too close to this moment is not trusted, see
    /// [`racy`]. Caches written before this field existed load as 0: never trusted, rehashed once.
    #[serde(default)]
    pub observed_ns: i128,
}

impl StatEntry {
    /// The content hash an entry holds for a file a version of its directory unit no longer has
    /// (removed by a commit or a checkout of that version): no file hashes to it, and commit's
    /// check of edits reads "absent at `version`" from it.
    pub const ABSENT: ObjectId = ObjectId::from_digest([0; 32]);

    /// An entry for a file with metadata `md` whose content (hashing to `sha256`, the content of
    /// `version`) was observed starting at `observed_ns` (see [`now_ns`]).
    pub fn new(md: &Metadata, sha256: ObjectId, version: ObjectId, observed_ns: i128) -> Self {
        Self {
            stat: StatKey::of(md),
            sha256,
            version,
            observed_ns,
        }
    }
}

/// The current time in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The cache, keyed by repository path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: BTreeMap<String, StatEntry>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    dirty: bool,
    /// Whether a changed ctime means a changed file (see [`StatKey::same`]).
    #[serde(skip)]
    trust_ctime: bool,
}

impl StatCache {
    /// Loads the cache; a missing or unreadable cache is simply empty (it is only an optimisation).
    /// `trust_ctime`: see [`StatKey::same`].
    pub fn load(path: &Path, trust_ctime: bool) -> Self {
        let mut c: StatCache = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        c.path = path.to_path_buf();
        c.trust_ctime = trust_ctime;
        c
    }

    /// The entry for `path` if its stat still matches `md`.
    pub fn fresh(&self, path: &str, md: &Metadata) -> Option<&StatEntry> {
        self.entries
            .get(path)
            .filter(|e| e.stat.same(&StatKey::of(md), self.trust_ctime) && !racy(e))
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

    /// Whether the file `path` (at `abs`, with metadata `md`) holds the content `sha256` of
    /// `size` bytes: by its entry when the stat still matches, else by hashing the file.
    pub fn holds(
        &self,
        path: &str,
        abs: &Path,
        md: &Metadata,
        sha256: &ObjectId,
        size: u64,
    ) -> Result<bool> {
        Ok(match self.fresh(path, md) {
            Some(e) => e.sha256 == *sha256,
            None => md.len() == size && fsutil::hash_file(abs)? == *sha256,
        })
    }

    /// Forgets `path` (a file nshard deleted: it is no longer here, and was not removed by the
    /// user).
    pub fn remove(&mut self, path: &str) {
        if self.entries.remove(path).is_some() {
            self.dirty = true;
        }
    }

    /// Records `path`'s entry (if any) as holding `version`: its bytes are that version's too.
    pub fn set_version(&mut self, path: &str, version: crate::id::ObjectId) {
        if let Some(e) = self.entries.get_mut(path) {
            if e.version != version {
                e.version = version;
                self.dirty = true;
            }
        }
    }

    /// Moves `from`'s entry to `to` (a renamed file keeps its stat), recording `version` as what
    /// it holds.
    pub fn rename(&mut self, from: &str, to: &str, version: crate::id::ObjectId) {
        if let Some(mut e) = self.entries.remove(from) {
            e.version = version;
            self.entries.insert(to.to_string(), e);
            self.dirty = true;
        }
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

/// "Racy git": a file rewritten within the same filesystem timestamp tick as the moment its content
/// was observed keeps its mtime (and, with the same length, its whole stat), so the cache could
/// not see the change. Entries whose mtime is not clearly older than the observation are therefore
/// not trusted (the file is re-hashed once and the entry renewed). Whole-second mtimes come from
/// coarse filesystems and get a 2-second window; otherwise the kernel's timestamps are at worst a
/// scheduler tick (≤ 10 ms) coarse, and 50 ms is kept as margin.
fn racy(e: &StatEntry) -> bool {
    let window = if e.stat.mtime_ns % 1_000_000_000 == 0 {
        2_000_000_000
    } else {
        50_000_000
    };
    e.stat.mtime_ns + window > e.observed_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mtime_ns: i128, observed_ns: i128) -> StatEntry {
        let id = ObjectId::of(b"x");
        StatEntry {
            stat: StatKey {
                size: 1,
                mtime_ns,
                ino: 1,
                ctime_ns: mtime_ns,
            },
            sha256: id,
            version: id,
            observed_ns,
        }
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let s = 1_000_000_000i128;
        // Coarse (whole-second) mtime observed 0.3 s later: the file could still change unseen.
        assert!(racy(&entry(100 * s, 100 * s + 300_000_000)));
        assert!(!racy(&entry(100 * s, 103 * s)));
        // Fine-grained mtimes: a short window.
        assert!(racy(&entry(100 * s + 1, 100 * s + 1_000_000)));
        assert!(!racy(&entry(100 * s + 1, 101 * s)));
        // Entries from caches without the field.
        assert!(racy(&entry(100 * s + 1, 0)));
    }
}
