//! `diff` of a directory unit: the status's list of added, removed and modified files, and for
//! each large modified file (stored as chunks) how its blocks compare with the committed ones.

use std::collections::HashSet;

use super::{DirChangeKind, DirStatus, Location, PACK_FILE_MAX};
use crate::error::Result;
use crate::formats::plan::Params;
use crate::id::ObjectId;
use crate::ingest;
use crate::path::RepoPath;
use crate::repo::{BlockDiff, Repo};

/// Blocks of a new chunk list `new` against the committed `old` (each (id, size), file order).
fn blocks(old: &[(ObjectId, u64)], new: &[(ObjectId, u64)], size: u64) -> BlockDiff {
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

impl Repo {
    /// Like [`Repo::dir_status`], and each modified file that is large on either side (stored
    /// as chunks, or now at least [`PACK_FILE_MAX`] bytes) is cut as a commit would cut it
    /// (nothing is stored) and its blocks compared with the committed chunk list.
    pub fn dir_diff(&self, unit: &RepoPath, sub: Option<&str>) -> Result<DirStatus> {
        let mut st = self.dir_status(unit, sub)?;
        if !st.changes.iter().any(|c| c.kind == DirChangeKind::Modified) {
            return Ok(st);
        }
        let Some(d) = self.read_dir_manifest(unit)? else {
            return Ok(st);
        };
        let listing = self.load_listing(&d.manifest)?;
        for c in st
            .changes
            .iter_mut()
            .filter(|c| c.kind == DirChangeKind::Modified)
        {
            let Ok(i) = listing
                .files
                .binary_search_by(|f| f.path.as_bytes().cmp(c.path.as_bytes()))
            else {
                continue;
            };
            let old: Vec<(ObjectId, u64)> = match listing.location(&listing.files[i]) {
                Location::Chunks(ch) => ch.to_vec(),
                _ if c.size >= PACK_FILE_MAX => Vec::new(),
                _ => continue,
            };
            let full = format!("{}/{}", unit.as_str(), c.path);
            let abs = RepoPath::parse(&full)?.to_path(self.root());
            let got = ingest::ingest_file(
                &abs,
                &ingest::Options {
                    params: Params::ByKind(self.config().chunking),
                    store: None,
                    progress: &crate::progress::NoProgress,
                    label: &full,
                    sync_dirs: true,
                },
            )?;
            let new: Vec<(ObjectId, u64)> = got.chunks.iter().map(|k| (k.id, k.size)).collect();
            c.blocks = Some(blocks(&old, &new, got.size));
        }
        Ok(st)
    }
}
