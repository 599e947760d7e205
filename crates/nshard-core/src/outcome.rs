//! What the commands report, shared by the file and directory-unit engines (so that neither
//! imports the other's types): the typed outcome each command's `--json` is made from.

use crate::id::ObjectId;

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CommitOutcome {
    /// A new version was recorded.
    Committed {
        /// The new version id.
        version: ObjectId,
        /// The previous version, if any.
        parent: Option<ObjectId>,
        /// File size in bytes.
        size: u64,
        /// Number of chunks in the file.
        chunks_total: usize,
        /// Chunks that were not in the store before.
        chunks_new: usize,
        /// Chunks already in the store (earlier versions, other files, repeats in this file).
        chunks_reused: usize,
        /// Raw bytes of the new chunks.
        new_bytes: u64,
        /// Bytes written to the store for the new chunks (after compression).
        stored_bytes: u64,
        /// Chunks of the previous version re-stored as deltas of this version's chunks.
        delta_chunks: usize,
        /// Their stored size before that (standalone).
        delta_bytes_before: u64,
        /// Their stored size as deltas.
        delta_bytes_after: u64,
        /// The previous version waits to be re-encoded as deltas of this one (by a background
        /// `nshard repack`, the default); the three `delta_*` counts are then 0.
        delta_pending: bool,
    },
    /// A new version of a directory unit was recorded.
    DirCommitted(DirCommit),
    /// The file matches its committed version; no new version was recorded.
    Unchanged {
        /// The current version id.
        version: ObjectId,
        /// Chunks of it the local store had lost (gc'd, or moved aside as corrupt) and that were
        /// stored again from the file.
        #[serde(skip_serializing_if = "is_zero")]
        restored: usize,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a directory commit recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DirCommit {
    /// The new version id.
    pub version: ObjectId,
    /// The previous version, if any.
    pub parent: Option<ObjectId>,
    /// The listing object.
    pub listing: ObjectId,
    /// Files in the directory.
    pub files: usize,
    /// Their total size.
    pub size: u64,
    /// Files not in the previous version.
    pub added: usize,
    /// Files of the previous version that are gone.
    pub removed: usize,
    /// Files whose content changed.
    pub modified: usize,
    /// Files read (the others were known unchanged from their stat).
    pub read: usize,
    /// Objects written that the store did not have (packs, chunks, the listing, the manifest).
    pub new_objects: usize,
    /// Raw bytes of the new packs and chunks.
    pub new_bytes: u64,
    /// Bytes written to the store for all new objects (after compression).
    pub stored_bytes: u64,
    /// Per-file manifests inside the directory that were removed (the unit now versions them).
    pub converted: usize,
}
