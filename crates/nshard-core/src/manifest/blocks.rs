//! Block-level comparison of two chunk lists: what `diff` and `status` report for a file.

use std::collections::HashSet;

use crate::id::ObjectId;

/// Block-level changes, counted over chunk positions.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BlockDiff {
    /// Whether both sides have the same content.
    pub identical: bool,
    /// Chunks of the new side whose content the old side also has.
    pub chunks_reused: usize,
    /// Chunks of the new side the old side does not have.
    pub chunks_new: usize,
    /// Chunks of the old side the new side no longer has.
    pub chunks_dropped: usize,
    /// Bytes of the reused chunks.
    pub bytes_reused: u64,
    /// Bytes of the new chunks.
    pub bytes_new: u64,
    /// Bytes of the dropped chunks.
    pub bytes_dropped: u64,
    /// `bytes_new` over the new side's size (0 for an empty file).
    pub changed_share: f64,
}

impl BlockDiff {
    /// Blocks of a new chunk list `new` against `old` (each (id, size), file order); `size` is the
    /// new side's size. `identical` is left false: only whole-file hashes can tell it.
    pub fn between(old: &[(ObjectId, u64)], new: &[(ObjectId, u64)], size: u64) -> BlockDiff {
        let old_ids: HashSet<ObjectId> = old.iter().map(|c| c.0).collect();
        let new_ids: HashSet<ObjectId> = new.iter().map(|c| c.0).collect();
        let mut d = BlockDiff::default();
        for (id, s) in new {
            if old_ids.contains(id) {
                d.chunks_reused += 1;
                d.bytes_reused += s;
            } else {
                d.chunks_new += 1;
                d.bytes_new += s;
            }
        }
        for (_, s) in old.iter().filter(|c| !new_ids.contains(&c.0)) {
            d.chunks_dropped += 1;
            d.bytes_dropped += s;
        }
        if size > 0 {
            d.changed_share = d.bytes_new as f64 / size as f64;
        }
        d
    }
}
