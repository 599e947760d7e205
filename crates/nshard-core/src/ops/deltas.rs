//! Reverse deltas: after a commit stores a new version of a model whole, the chunks of the
//! version before it are re-encoded as deltas against the new version's chunks at the same place
//! (same tensor name, dtype and byte range within the tensor).
//!
//! So the newest version is always stored whole (checking it out, or pulling it alone, costs what
//! it costs on its own) and each older version costs what changed. Chains are bounded: an old
//! chunk is re-encoded only while the chain of deltas through it stays within `delta_depth`
//! (otherwise it stays whole, a keyframe). Objects keep their ids (the SHA-256 of the raw chunk),
//! so manifests, dedup and every check are unchanged; only the stored encoding differs.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::codec::{self, DataHint};
use crate::error::Result;
use crate::formats::plan::hint_for_dtype;
use crate::id::ObjectId;
use crate::manifest::{ChunkRef, Manifest};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::store::LocalStore;

/// What re-encoding the previous version as deltas did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeltaReport {
    /// Chunks of the previous version now stored as deltas of this version's chunks.
    pub chunks: usize,
    /// Their stored size before (standalone).
    pub bytes_before: u64,
    /// Their stored size after (as deltas).
    pub bytes_after: u64,
}

/// One candidate: the old chunk, the new chunk at the same place, and their element width.
#[derive(Clone, Copy, Debug)]
struct Pair {
    old: ObjectId,
    new: ObjectId,
    size: u64,
    width: u8,
}

/// The chunks of `old` at the same place as chunks of `new`: same tensor name and dtype (a float
/// type deltas are defined for), same byte range within the tensor, different content. A chunk
/// holding several whole small tensors of one float width pairs with the parent's chunk holding
/// the same tensors, of the same sizes, laid out alike.
fn pairs(new: &Manifest, old: &Manifest) -> Vec<Pair> {
    let (Some(nt), Some(ot)) = (&new.tensors, &old.tensors) else {
        return Vec::new();
    };
    let old_tensors: HashMap<&str, (&str, u64, u64)> = ot
        .iter()
        .map(|t| (t.name.as_str(), (t.dtype.as_str(), t.offset, t.size)))
        .collect();
    let old_at: HashMap<u64, &ChunkRef> = old.chunks.iter().map(|c| (c.offset, c)).collect();
    let mut out = Vec::new();
    let mut ti = 0;
    for c in &new.chunks {
        // Tensors are sorted by offset and do not overlap (validated): walk them with the chunks.
        while ti < nt.len() && nt[ti].offset + nt[ti].size <= c.offset {
            ti += 1;
        }
        let Some(t) = nt.get(ti) else { break };
        let end = c.offset + c.size;
        if c.offset < t.offset {
            continue;
        }
        // The tensors the chunk holds: part of one, or several whole ones in a row (small
        // tensors grouped into one chunk), all of one float width.
        let members: Vec<&crate::manifest::TensorEntry> = if end <= t.offset + t.size {
            vec![t]
        } else if c.offset == t.offset {
            let mut m = Vec::new();
            let mut at = t.offset;
            for u in &nt[ti..] {
                if u.offset != at || u.offset + u.size > end {
                    break;
                }
                m.push(u);
                at = u.offset + u.size;
            }
            if at != end {
                continue;
            }
            m
        } else {
            continue;
        };
        let widths: Vec<DataHint> = members.iter().map(|u| hint_for_dtype(&u.dtype)).collect();
        let DataHint::Float(width @ (2 | 4)) = widths[0] else {
            continue;
        };
        if widths.iter().any(|w| *w != DataHint::Float(width)) {
            continue;
        }
        // The same tensors in the parent, with the same dtypes and sizes, laid out alike.
        let Some(&(_, o_first, _)) = old_tensors.get(members[0].name.as_str()) else {
            continue;
        };
        let rel = c.offset - members[0].offset;
        let alike = members.iter().all(|u| {
            old_tensors
                .get(u.name.as_str())
                .is_some_and(|&(dtype, off, size)| {
                    dtype == u.dtype
                        && (members.len() == 1 || size == u.size)
                        && off == o_first + (u.offset - members[0].offset)
                        && (members.len() > 1 || rel + c.size <= size)
                })
        });
        if !alike {
            continue;
        }
        match old_at.get(&(o_first + rel)) {
            Some(o) if o.size == c.size && o.id != c.id => out.push(Pair {
                old: o.id,
                new: c.id,
                size: c.size,
                width,
            }),
            _ => {}
        }
    }
    out
}

impl Repo {
    /// Re-encodes the chunks of `parent` (the previous version) as deltas of the chunks of `new`
    /// at the same place, where that is smaller and keeps chains within the configured depth.
    /// `grandparent` (the version before `parent`, when in the store) tells how long the chain
    /// below each old chunk already is. Errors reading or writing a chunk stop nothing: that
    /// chunk stays as it was (deltas only save space).
    pub(crate) fn encode_parent_as_deltas(
        &self,
        new: &Manifest,
        parent: &Manifest,
        progress: &dyn Progress,
    ) -> DeltaReport {
        let depth = self.config().delta_depth();
        if depth == 0 {
            return DeltaReport::default();
        }
        let candidates = pairs(new, parent);
        if candidates.is_empty() {
            return DeltaReport::default();
        }
        // The rank below each old chunk: how many deltas already end at it (from the version
        // before it, re-encoded when `parent` was committed).
        let below: HashMap<ObjectId, u8> = parent
            .version
            .parent
            .and_then(|gp| self.load_version(&gp).ok())
            .map(|gp| {
                pairs(parent, &gp)
                    .into_iter()
                    .filter_map(|p| match self.store().delta_base(&p.old) {
                        Ok(Some((base, rank))) if base == p.new => Some((p.new, rank)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total: u64 = candidates.iter().map(|p| p.size).sum();
        progress.start("deltas of the previous version", total);
        let store = self.store();
        // Two workers: each holds two raw chunks and an encoding at a time, so memory stays
        // bounded whatever the machine.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        let run = || {
            candidates
                .par_iter()
                .map(|p| {
                    let r = encode_one(store, p, below.get(&p.old).copied().unwrap_or(0), depth);
                    progress.advance(p.size);
                    r.unwrap_or(None)
                })
                .collect::<Vec<_>>()
        };
        let results = match pool {
            Ok(pool) => pool.install(run),
            Err(_) => run(),
        };
        progress.finish();
        let mut report = DeltaReport::default();
        for (before, after) in results.into_iter().flatten() {
            report.chunks += 1;
            report.bytes_before += before;
            report.bytes_after += after;
        }
        report
    }
}

/// Re-encodes `p.old` against `p.new` if it is stored whole, the chain stays within `depth`, and
/// the delta is smaller. Returns the stored sizes before and after.
fn encode_one(store: &LocalStore, p: &Pair, below: u8, depth: u8) -> Result<Option<(u64, u64)>> {
    if store.delta_base(&p.old)?.is_some() {
        return Ok(None);
    }
    // The chain above the new chunk (usually none: it was just stored whole) must not pass
    // through the old one (a cycle), and the whole chain must fit the bound.
    let above = store.bases(&p.new)?;
    if above.contains(&p.old) {
        return Ok(None);
    }
    let rank = usize::from(below) + 1;
    if rank + above.len() > usize::from(depth) {
        return Ok(None);
    }
    let Some(before) = store.encoded_size(&p.old) else {
        return Ok(None);
    };
    // The base is verified (future reads of the old chunk depend on it); the old chunk need not
    // be: the delta is kept only if it decodes back to bytes that hash to the old id.
    let old = store.get_unverified(&p.old, p.size)?;
    let new = store.get(&p.new, p.size)?;
    let Some(enc) = codec::encode_delta(&old, &new, &p.new, p.width, rank as u8) else {
        return Ok(None);
    };
    // Worth it only where it saves at least 1/32 of the stored bytes.
    if enc.len() as u64 + before / 32 >= before {
        return Ok(None);
    }
    // Never replace what decodes without doubt by something that might not.
    let back = codec::decode_against(&p.old, &enc, &new, p.size)?;
    if ObjectId::of(&back) != p.old {
        return Ok(None);
    }
    Ok(store
        .replace_with_delta(&p.old, &enc)?
        .then_some((before, enc.len() as u64)))
}
