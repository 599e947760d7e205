//! Walking a file's history: from its work-tree manifest through the `parent` ids of the manifest
//! objects in the local store. `nshard log`, `diff`, `gc` and `verify` all walk it this way.
//!
//! History may be incomplete (older versions not pulled, or removed by `gc --only-current`): the
//! walk stops at the first version that is not in the store and says so; that is not an error.

use std::collections::HashSet;

use super::target::Target;
use crate::dirunit::DirVersion;
use crate::error::{Error, Result};
use crate::error::{ManifestError, RepoError, StoreError};
use crate::id::ObjectId;
use crate::manifest::Manifest;
use crate::path::RepoPath;
use crate::repo::{Repo, WorktreeManifest};

/// Most versions one walk visits (a bound against absurd stores; version ids are content hashes,
/// so a real cycle cannot exist).
pub const MAX_HISTORY: usize = 1_000_000;

/// One step of a history walk.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HistoryNode {
    /// The version's manifest was read (from the work tree for the first node, else the store).
    Present {
        /// Its version id.
        version: ObjectId,
        /// The manifest.
        manifest: Box<Manifest>,
    },
    /// The version's manifest object is not in the local store; the walk stops here.
    Missing {
        /// Its version id.
        version: ObjectId,
    },
    /// The version's manifest object is in the store but cannot be used; the walk stops here.
    Unreadable {
        /// Its version id.
        version: ObjectId,
        /// Why.
        reason: String,
    },
}

impl HistoryNode {
    /// The version id of this node.
    pub fn version(&self) -> ObjectId {
        match self {
            HistoryNode::Present { version, .. }
            | HistoryNode::Missing { version }
            | HistoryNode::Unreadable { version, .. } => *version,
        }
    }
}

/// One line of `nshard log`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogEntry {
    /// The version id.
    pub version: ObjectId,
    /// Whether this is the version the work-tree manifest names.
    pub current: bool,
    /// What is known about it.
    #[serde(flatten)]
    pub state: LogState,
}

/// What `nshard log` knows about one version.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LogState {
    /// The manifest is available.
    Present {
        /// RFC 3339 commit time.
        timestamp: String,
        /// The commit message.
        message: String,
        /// File size in bytes.
        size: u64,
        /// Number of chunks.
        chunks: usize,
        /// Number of tensors recorded (safetensors files).
        tensors: Option<usize>,
        /// The parent version, if any.
        parent: Option<ObjectId>,
        /// Bytes of the distinct chunks no older version in the local store has (`None` when the
        /// parent is not local).
        new_bytes: Option<u64>,
        /// What those chunks take in the local store as stored now (compressed, and as deltas
        /// where they are): what the version costs. `None` when the parent or some of the chunks
        /// are not local.
        stored_bytes: Option<u64>,
    },
    /// The version's manifest is not in the local store (not pulled, or removed by gc).
    Missing,
    /// The version's manifest object is corrupt or invalid.
    Unreadable {
        /// Why.
        reason: String,
    },
}

impl Repo {
    /// The history of `wt`, newest first: the work-tree version, then its ancestors, ending at the
    /// root or at the first version that is missing or unreadable. Fails only on I/O errors.
    pub fn history(&self, wt: &WorktreeManifest) -> Result<Vec<HistoryNode>> {
        let mut out = vec![HistoryNode::Present {
            version: wt.version,
            manifest: Box::new(wt.manifest.clone()),
        }];
        let mut seen = HashSet::from([wt.version]);
        let mut next = wt.manifest.version.parent;
        while let Some(v) = next {
            if !seen.insert(v) || out.len() >= MAX_HISTORY {
                break;
            }
            next = None;
            match self.load_version(&v) {
                Ok(m) => {
                    next = m.version.parent;
                    out.push(HistoryNode::Present {
                        version: v,
                        manifest: Box::new(m),
                    });
                }
                Err(Error::Store(StoreError::ObjectMissing(_))) => {
                    out.push(HistoryNode::Missing { version: v })
                }
                Err(
                    e @ (Error::Store(StoreError::CorruptObject { .. })
                    | Error::Manifest(
                        ManifestError::InvalidManifest { .. } | ManifestError::ConflictMarkers(_),
                    )),
                ) => out.push(HistoryNode::Unreadable {
                    version: v,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Reads the work-tree manifest of `path`, failing with a clear message when there is none.
    pub fn require_manifest(&self, path: &RepoPath) -> Result<WorktreeManifest> {
        self.read_worktree_manifest(path)?.ok_or_else(|| {
            Error::Repo(RepoError::NotTracked {
                path: path.manifest_path().as_str().into(),
                reason: crate::error::Untracked::NoManifest,
            })
        })
    }

    /// `nshard log`: the versions of `path`, newest first, with the bytes each added.
    pub fn log(&self, path: &RepoPath) -> Result<Vec<LogEntry>> {
        let wt = self.require_manifest(path)?;
        let nodes = self.history(&wt)?;
        // Each version's chunks that no older version here has: a chunk that comes back from a
        // grandparent (a tensor reverted) costs nothing again.
        let mut older: HashSet<ObjectId> = HashSet::new();
        let mut added: Vec<Vec<&crate::manifest::ChunkRef>> = vec![Vec::new(); nodes.len()];
        for (i, node) in nodes.iter().enumerate().rev() {
            if let HistoryNode::Present { manifest: m, .. } = node {
                added[i] = m.chunks.iter().filter(|c| older.insert(c.id)).collect();
            }
        }
        let mut out = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            let state = match node {
                HistoryNode::Present { manifest: m, .. } => {
                    let parent = match (m.version.parent, nodes.get(i + 1)) {
                        (None, _) => Some(None),
                        (Some(_), Some(HistoryNode::Present { manifest: p, .. })) => {
                            Some(Some(&**p))
                        }
                        _ => None,
                    };
                    let new_bytes = parent.map(|_| added[i].iter().map(|c| c.size).sum());
                    let stored_bytes = parent.and_then(|_| {
                        added[i]
                            .iter()
                            .map(|c| self.store().encoded_size(&c.id))
                            .sum::<Option<u64>>()
                    });
                    LogState::Present {
                        timestamp: m.version.timestamp.clone(),
                        message: m.version.message.clone(),
                        size: m.size,
                        chunks: m.chunks.len(),
                        tensors: m.tensors.as_ref().map(Vec::len),
                        parent: m.version.parent,
                        new_bytes,
                        stored_bytes,
                    }
                }
                HistoryNode::Missing { .. } => LogState::Missing,
                HistoryNode::Unreadable { reason, .. } => LogState::Unreadable {
                    reason: reason.clone(),
                },
            };
            out.push(LogEntry {
                version: node.version(),
                current: i == 0,
                state,
            });
        }
        Ok(out)
    }
}

/// The versions of one target, newest first.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum History {
    /// A data file's versions.
    File(Vec<LogEntry>),
    /// A directory unit's versions (empty when it was never committed).
    Unit(Vec<DirVersion>),
}

impl Repo {
    /// `log` of one target.
    pub fn log_target(&self, target: &Target) -> Result<History> {
        match target {
            Target::File(p) => self.log(p).map(History::File),
            Target::Unit { unit, .. } => match self.read_dir_manifest(unit)? {
                Some(d) => self.dir_history(&d).map(History::Unit),
                None => Ok(History::Unit(Vec::new())),
            },
        }
    }
}
