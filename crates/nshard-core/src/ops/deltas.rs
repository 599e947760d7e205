//! Reverse deltas: after a commit stores a new version of a model whole, the chunks of the
//! version before it are re-encoded as deltas against the new version's chunks at the same place
//! (same tensor name, dtype and byte range within the tensor).
//!
//! So the newest version is always stored whole (checking it out, or pulling it alone, costs what
//! it costs on its own) and each older version costs what changed. Chains are bounded: an old
//! chunk is re-encoded only while the chain of deltas through it stays within `delta_depth`
//! (otherwise it stays whole, a keyframe). Objects keep their ids (the SHA-256 of the raw chunk),
//! so manifests, dedup and every check are unchanged; only the stored encoding differs.
//!
//! Commit does not wait for the re-encoding: it stores the new version whole, queues the pair
//! (`.shard/cache/deltas/queue/`, one small file each, written atomically) and, by default, leaves it
//! to a background `nshard repack` (`delta_background = false` does it before commit returns).
//! [`Repo::repack`] works through the queue oldest first under `.shard/cache/deltas/lock`, which it
//! holds instead of the repository lock: commits, checkouts and pulls go on beside it (a chunk's
//! two encodings decode to the same bytes and replace each other atomically); gc, which deletes
//! objects, takes that lock too.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::codec::{self, DataHint, Encoder};
use crate::error::{Error, Result};
use crate::formats::plan::hint_for_dtype;
use crate::fsutil;
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

impl DeltaReport {
    fn add(&mut self, o: DeltaReport) {
        self.chunks += o.chunks;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
    }
}

/// What [`Repo::repack`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepackReport {
    /// Versions whose previous version was re-encoded (queued pairs worked through).
    pub versions: usize,
    /// Chunks now stored as deltas.
    pub delta_chunks: usize,
    /// Their stored size before (standalone).
    pub delta_bytes_before: u64,
    /// Their stored size as deltas.
    pub delta_bytes_after: u64,
    /// Queued pairs dropped: a version no longer in the store (gc'd), or a damaged entry.
    pub skipped: usize,
}

/// A queued pair: the new version and the one before it, whose chunks become deltas (`None`:
/// the entry is unreadable or damaged, nothing to do for it).
#[derive(Clone, Debug)]
struct Queued {
    file: PathBuf,
    new: ObjectId,
    parent: Option<ObjectId>,
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
    aligned(new, old, false)
}

/// Like [`pairs`], and with `same`, also the places where both versions hold the same chunk (a
/// tensor a step did not change, a version that changed only the file's mode): following chains
/// back through versions, such a place is the same object, not a break in the chain.
fn aligned(new: &Manifest, old: &Manifest, same: bool) -> Vec<Pair> {
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
            Some(o) if o.size == c.size && (same || o.id != c.id) => out.push(Pair {
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

/// Whether a pull `received` a chunk of `m`.
fn any_received(m: &Manifest, received: &dyn Fn(&ObjectId) -> bool) -> bool {
    m.chunks.iter().any(|c| received(&c.id))
}

impl Repo {
    fn delta_queue_dir(&self) -> PathBuf {
        self.deltas_dir().join("queue")
    }

    /// Queues the re-encoding of `parent`'s chunks as deltas of `new`'s when they have chunks at
    /// the same place (float tensors). Returns whether anything was queued.
    pub(crate) fn queue_deltas(
        &self,
        (nv, new): (&ObjectId, &Manifest),
        (pv, parent): (&ObjectId, &Manifest),
    ) -> Result<bool> {
        if self.config().delta_depth() == 0 || pairs(new, parent).is_empty() {
            return Ok(false);
        }
        let dir = self.delta_queue_dir();
        fsutil::create_dir_all(&dir)?;
        // Named by time, so a listing sorts oldest first (chains are ranked in commit order);
        // never the same time twice in one process (a pull queues several pairs at once).
        static LAST: std::sync::Mutex<i128> = std::sync::Mutex::new(0);
        let at = {
            let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
            *last = crate::repo::statcache::now_ns().max(*last + 1);
            *last
        };
        let name = format!("{:024}-{}", at.max(0), nv.to_hex());
        fsutil::write_atomic(&dir.join(name), format!("{}\n", pv.to_hex()).as_bytes())?;
        Ok(true)
    }

    /// After a pull: queues the re-encoding of the versions before the `count` versions of a file
    /// it received (newest first from `newest`, following parents), so that a store filled by
    /// pulls keeps a series the way the committer's store does: each version whose parent is
    /// here, complete and still stored whole, makes that parent deltas of it. Only pairs of which
    /// this pull `received` a chunk of either version count (pulling again queues nothing; a
    /// version pulled earlier pairs with its parent when that one comes), and a parent already
    /// re-encoded is skipped. When `newest` is older than the work tree's version `tip`
    /// (`pull --version`), the version after it in `tip`'s history, if here and complete, makes
    /// `newest` deltas of it in turn. Pairs are queued oldest first (as commits would have
    /// queued them). Returns how many pairs were queued.
    pub(crate) fn queue_pulled_deltas(
        &self,
        newest: ObjectId,
        count: usize,
        tip: Option<ObjectId>,
        received: &dyn Fn(&ObjectId) -> bool,
    ) -> Result<usize> {
        if self.config().delta_depth() == 0 {
            return Ok(0);
        }
        let mut pairs_found = Vec::new();
        let mut next = Some(newest);
        for _ in 0..count.min(crate::codec::MAX_CHAIN * 1024) {
            let Some(v) = next else { break };
            let Ok(new) = self.load_version(&v) else {
                break;
            };
            next = new.version.parent;
            let Some(pv) = new.version.parent else { break };
            let Ok(parent) = self.load_version(&pv) else {
                break;
            };
            // The pair is new when this pull brought either side: a version whose parent comes
            // in a later pull (the newest pulled first, the history after it) pairs then.
            if !any_received(&new, received) && !any_received(&parent, received) {
                continue;
            }
            if !self.has_all_chunks(&parent) || !self.has_all_chunks(&new) {
                continue;
            }
            if self.stored_whole(&new, &parent) {
                pairs_found.push((v, new, pv, parent));
            }
        }
        pairs_found.reverse();
        if let Some(pair) = tip
            .filter(|t| *t != newest)
            .and_then(|t| self.pulled_child_pair(t, newest, received))
        {
            pairs_found.push(pair);
        }
        let mut queued = 0;
        for (v, new, pv, parent) in &pairs_found {
            if self.queue_deltas((v, new), (pv, parent))? {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// The pair that makes the pulled version `old` deltas of the version after it in `tip`'s
    /// history: `None` when `old` is not an ancestor of `tip`, got no chunk from this pull, or is
    /// not complete and stored whole, or when the version after it is not complete here.
    fn pulled_child_pair(
        &self,
        tip: ObjectId,
        old: ObjectId,
        received: &dyn Fn(&ObjectId) -> bool,
    ) -> Option<(ObjectId, Manifest, ObjectId, Manifest)> {
        let mut v = tip;
        for _ in 0..crate::codec::MAX_CHAIN * 1024 {
            let child = self.load_version(&v).ok()?;
            match child.version.parent {
                Some(p) if p == old => {
                    let older = self.load_version(&old).ok()?;
                    let pairs = any_received(&older, received)
                        && self.has_all_chunks(&child)
                        && self.has_all_chunks(&older)
                        && self.stored_whole(&child, &older);
                    return pairs.then_some((v, child, old, older));
                }
                Some(p) => v = p,
                None => return None,
            }
        }
        None
    }

    /// Queues, for every file whose manifest is in the work tree, each version of its history
    /// whose parent is here, complete and still stored whole (a store filled by pulls before they
    /// re-encoded anything, or where deltas were turned on late): what `nshard repack
    /// --all-versions` catches up on. Returns how many pairs were queued.
    pub fn queue_history_deltas(&self) -> Result<usize> {
        let mut queued = 0;
        for path in self.scan_worktree()?.1 {
            if let Some(wt) = self.read_worktree_manifest(&path)? {
                queued += self.queue_pulled_deltas(wt.version, usize::MAX, None, &|_| true)?;
            }
        }
        Ok(queued)
    }

    /// Whether `old` is still stored whole where it pairs with `new`, judged by its largest
    /// chunk (the one deltas are made for; a small one may never pay and stay whole anywhere).
    fn stored_whole(&self, new: &Manifest, old: &Manifest) -> bool {
        representative(new, old)
            .is_some_and(|p| matches!(self.store().delta_base(&p.old), Ok(None)))
    }

    /// How many versions wait for their previous version to be re-encoded.
    pub fn pending_deltas(&self) -> usize {
        self.read_queue().map(|q| q.len()).unwrap_or(0)
    }

    /// Whether a repack (commit's background one, or `nshard repack`) is running now.
    pub fn repack_running(&self) -> bool {
        matches!(self.deltas_lock(false), Ok(None))
    }

    fn read_queue(&self) -> Result<Vec<Queued>> {
        let dir = self.delta_queue_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", &dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(Error::io("reading", &dir))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            // Temporary files of an interrupted write, and anything else, are not entries.
            let Some((_, new)) = name.split_once('-') else {
                continue;
            };
            let Ok(new) = ObjectId::parse(new) else {
                continue;
            };
            let parent = fsutil::read_limited(&ent.path(), 256)
                .ok()
                .and_then(|b| ObjectId::parse(String::from_utf8_lossy(&b).trim()).ok());
            out.push(Queued {
                file: ent.path(),
                new,
                parent,
            });
        }
        out.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(out)
    }

    /// Works through the queue of versions whose previous version waits to be re-encoded as
    /// deltas (oldest first, including pairs queued while it runs). Waits for a repack already
    /// running. Never takes the repository lock.
    pub fn repack(&self, progress: &dyn Progress) -> Result<RepackReport> {
        Ok(self.repack_reporting(progress, None)?.0)
    }

    /// [`Repo::repack`], also returning what it did for the version `only` (commit with
    /// `delta_background = false` reports its own previous version).
    pub(crate) fn repack_reporting(
        &self,
        progress: &dyn Progress,
        only: Option<&ObjectId>,
    ) -> Result<(RepackReport, DeltaReport)> {
        let _lock = self.deltas_lock(true)?;
        let (mut versions, mut skipped) = (0, 0);
        let mut total = DeltaReport::default();
        let mut mine = DeltaReport::default();
        let mut done: Vec<PathBuf> = Vec::new();
        loop {
            let queue: Vec<Queued> = self
                .read_queue()?
                .into_iter()
                .filter(|q| !done.contains(&q.file))
                .collect();
            if queue.is_empty() {
                break;
            }
            for q in queue {
                // A damaged entry, or a version no longer in the store (gc'd): nothing to do
                // (deltas only save space).
                let versions_of = |parent: &ObjectId| {
                    Some((
                        self.load_version(&q.new).ok()?,
                        self.load_version(parent).ok()?,
                    ))
                };
                match q.parent.as_ref().and_then(versions_of) {
                    Some((new, parent)) => {
                        if self.is_worktree_version(&new, &q.new) {
                            self.store_whole(&new);
                        }
                        let r = self.encode_parent_as_deltas(&new, &parent, progress);
                        versions += 1;
                        total.add(r);
                        if only == Some(&q.new) {
                            mine.add(r);
                        }
                    }
                    None => skipped += 1,
                }
                match fs::remove_file(&q.file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("removing", &q.file)(e)),
                }
                done.push(q.file);
            }
        }
        let report = RepackReport {
            versions,
            delta_chunks: total.chunks,
            delta_bytes_before: total.bytes_before,
            delta_bytes_after: total.bytes_after,
            skipped,
        };
        Ok((report, mine))
    }

    /// Whether `v` (whose manifest is `m`) is the version the work tree's manifest names.
    fn is_worktree_version(&self, m: &Manifest, v: &ObjectId) -> bool {
        self.read_worktree_manifest(&m.path)
            .ok()
            .flatten()
            .is_some_and(|w| w.version == *v)
    }

    /// Stores the chunks of `newest` that are deltas whole again. A version that reuses older
    /// chunks (a revert: `checkout --version OLD`, then `commit --force`) finds them stored as
    /// deltas of the version it replaces; whole, the newest version reads no deltas, as after
    /// any commit, and the version it replaces can become deltas of it. The chunks built on
    /// them only get shorter chains. Errors leave a chunk as it was (it stays readable).
    fn store_whole(&self, newest: &Manifest) {
        let mut encoder = Encoder::new();
        let mut seen = HashSet::new();
        for c in newest.chunks.iter().filter(|c| seen.insert(c.id)) {
            let _ = self.store().restore_whole(&c.id, &mut encoder);
        }
    }

    /// Re-encodes the chunks of `parent` (the previous version) as deltas of the chunks of `new`
    /// at the same place, where that is smaller and keeps chains within the configured depth.
    ///
    /// Chains from one version to the next stop `delta_depth / 4` short of the bound; the
    /// version where such a chain stops stays whole, a keyframe. When the next keyframe appears,
    /// the one before it is re-encoded as a delta of it (a longer step, typically several times
    /// smaller than the keyframe stored whole), within the full bound: so only every few
    /// keyframes one stays whole. Errors reading or writing a chunk stop nothing: that chunk
    /// stays as it was (deltas only save space).
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
        let jumps = depth / 4;
        let linear = depth - jumps;
        let mut report = self.encode_against(new, parent, linear, 0, progress);
        // `parent` is a keyframe when its largest chunk stayed whole (small ones may never pay).
        let keyframe = self.stored_whole(new, parent);
        if jumps == 0 || !keyframe {
            return report;
        }
        // The keyframe before it, if still whole, becomes a delta of it; the chain below that
        // one counts the jump that may already end at it.
        if let Step::Keyframe(prev) = self.walk_back(parent) {
            let into_prev = match self.walk_back(&prev) {
                Step::JumpedInto(rank) => rank,
                _ => 0,
            };
            report.add(self.encode_against(parent, &prev, depth, into_prev, progress));
        }
        report
    }

    /// Follows the chain of deltas from `top` back through the versions before it (each a delta
    /// of the next), judging each version by one representative chunk, to the version where the
    /// chain starts: a keyframe still whole, or one already re-encoded as a jump into `top`.
    fn walk_back(&self, top: &Manifest) -> Step {
        let store = self.store();
        let mut next = top.clone();
        for _ in 0..=crate::codec::MAX_CHAIN {
            let Some(cur) = next.version.parent.and_then(|v| self.load_version(&v).ok()) else {
                return Step::Start;
            };
            let Some(p) = representative(&next, &cur) else {
                if aligned(&next, &cur, true).is_empty() {
                    return Step::Start;
                }
                // Nothing changed at any place deltas are made for (a mode change, a frozen
                // model): the chain goes on through the version before.
                next = cur;
                continue;
            };
            match store.delta_base(&p.old) {
                Ok(Some((base, _))) if base == p.new => next = cur,
                Ok(Some((base, rank))) => {
                    let into_top = pairs(top, &cur)
                        .into_iter()
                        .any(|q| q.old == p.old && q.new == base);
                    return if into_top {
                        Step::JumpedInto(rank)
                    } else {
                        Step::Start
                    };
                }
                Ok(None) => return Step::Keyframe(Box::new(cur)),
                Err(_) => return Step::Start,
            }
        }
        Step::Start
    }

    /// Re-encodes the chunks of `old` as deltas of `new`'s at the same place, keeping every
    /// chain through them within `bound`. The rank below each old chunk comes from the versions
    /// before `old` whose chains of deltas end there (see [`Repo::ranks_below`]), and is at
    /// least `at_least`.
    fn encode_against(
        &self,
        new: &Manifest,
        old: &Manifest,
        bound: u8,
        at_least: u8,
        progress: &dyn Progress,
    ) -> DeltaReport {
        let candidates = pairs(new, old);
        if candidates.is_empty() {
            return DeltaReport::default();
        }
        let below = self.ranks_below(old);
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
                    let below = below.get(&p.old).copied().unwrap_or(0).max(at_least);
                    let r = encode_one(store, p, below, bound);
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

    /// How many deltas already end at each chunk of `top`: the longest chain of deltas that
    /// ends there, found by following the chunks at the same place back through the versions
    /// before it. A chunk joins a chain when it is the same object as a chunk already in it (a
    /// tensor a step did not change) or a delta of one, whether of the next version's chunk (a
    /// linear step) or of a chunk further up (a keyframe's jump into a later keyframe, which may
    /// sit below a chunk that later became a delta itself). A delta's rank counts the deltas
    /// that ended at its base through it when it was written, itself included; the chunks below
    /// it that the walk reaches count again, so a rank written before more deltas were added
    /// below (a version pulled later, a jump) is corrected by them.
    fn ranks_below(&self, top: &Manifest) -> HashMap<ObjectId, u8> {
        let store = self.store();
        let mut below: HashMap<ObjectId, u8> = HashMap::new();
        // Every chunk found in a chain → the chunk of `top` the chain ends at, and how many
        // deltas lie between them.
        let mut known: HashMap<ObjectId, (ObjectId, usize)> =
            top.chunks.iter().map(|c| (c.id, (c.id, 0))).collect();
        let mut cur = top.clone();
        // The walk stops after `MAX_IDLE` versions in a row that link no delta into a chain (no
        // jump between keyframes spans more), or after `MAX_RANK_WALK` versions. Where it stops
        // early, a chunk that still runs on into the versions below (unchanged there) may have
        // chains below it the walk did not see: its chain counts as full, so it stays whole
        // (a little space, never a chain past the bound).
        let (mut idle, mut steps) = (0, 0);
        let mut running: HashSet<ObjectId> = HashSet::new();
        let mut ended = false;
        while idle < MAX_IDLE && steps < MAX_RANK_WALK {
            steps += 1;
            let Some(prev) = cur.version.parent.and_then(|v| self.load_version(&v).ok()) else {
                ended = true;
                break;
            };
            let mut active = false;
            running.clear();
            for p in aligned(&cur, &prev, true) {
                if let Some(&(end, _)) = known.get(&p.old) {
                    // The same object as a chunk already in a chain.
                    running.insert(end);
                    continue;
                }
                let Ok(Some((base, rank))) = store.delta_base(&p.old) else {
                    continue;
                };
                let Some(&(end, d)) = known.get(&base) else {
                    continue;
                };
                let through = (d + usize::from(rank)).min(usize::from(u8::MAX)) as u8;
                let r = below.entry(end).or_insert(0);
                *r = (*r).max(through);
                known.insert(p.old, (end, d + 1));
                active = true;
            }
            idle = if active { 0 } else { idle + 1 };
            cur = prev;
        }
        if !ended {
            for end in running {
                below.insert(end, u8::MAX);
            }
        }
        below
    }
}

/// How many versions back [`Repo::ranks_below`] follows chains at most.
const MAX_RANK_WALK: usize = 256;

/// How many versions in a row without a delta into a chain end [`Repo::ranks_below`]'s walk: a
/// keyframe's jump into the next one spans fewer versions than the largest `delta_depth` (32).
const MAX_IDLE: usize = 33;

/// The pair that stands for a version when chains are followed: its largest chunk (the ones
/// deltas are made for; a small one may never pay and stay whole anywhere in a chain).
fn representative(new: &Manifest, old: &Manifest) -> Option<Pair> {
    pairs(new, old).into_iter().max_by_key(|p| (p.size, p.old))
}

/// Where the chain of deltas ending at a version starts (see [`Repo::walk_back`]).
enum Step {
    /// At a version still stored whole (not the first of the file's history).
    Keyframe(Box<Manifest>),
    /// At a keyframe already re-encoded as a delta of the version walked from, with this rank.
    JumpedInto(u8),
    /// At the file's first version, or somewhere the walk cannot judge.
    Start,
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
    // Never replace what decodes without doubt by something that might not (decoded in the new
    // chunk's buffer, which is not needed any more).
    let mut back = new;
    codec::with_pooled_scratch(|scratch| {
        codec::decode_against_in_place(&p.old, &enc, &mut back, p.size, scratch)
    })?;
    if ObjectId::of(&back) != p.old {
        return Ok(None);
    }
    Ok(store
        .replace_with_delta(&p.old, &enc)?
        .then_some((before, enc.len() as u64)))
}
