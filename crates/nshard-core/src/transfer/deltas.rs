//! Delta encodings between the local store and a remote that keeps them
//! ([`Store::stores_deltas`]).
//!
//! Push sends a chunk the local store holds as a delta as that delta (`deltas/<id>.<base>` on the
//! remote) wherever the remote will hold its base: already, or sent earlier in the same push
//! (whole objects first, then deltas level by level, each level's bases before it). A chunk whose
//! base the remote will not hold goes whole, as before. Push also sends the deltas of chunks the
//! remote holds whole, for the versions just before the pushed ones (where a commit's re-encoding
//! puts them), so that `nshard remote gc` can drop those whole copies.
//!
//! Pull fetches a chunk the remote holds only as deltas through them: the bases it lacks first
//! (whole where the remote has them whole), then the deltas upward, each verified against its base
//! before it is stored, as a delta, in the local store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::engine::{bounded, corrupt_on_remote, local_io};
use super::{TransferOptions, TransferStats};
use crate::codec::{self, DecodeScratch, Encoder, MAX_CHAIN};
use crate::error::{Error, Result, StoreError};
use crate::id::ObjectId;
use crate::remote::{DeltaName, Store};
use crate::retry::Retry;
use crate::store::LocalStore;

/// What a push sends as deltas: level by level (each level's bases are held by the remote once
/// the levels before it are sent), and the chunks that go as a delta in place of whole.
#[derive(Debug, Default)]
pub(super) struct PushDeltas {
    pub levels: Vec<Vec<DeltaName>>,
    pub instead: HashSet<ObjectId>,
}

impl PushDeltas {
    pub fn count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
}

/// The delta encodings `remote` holds of `ids`, asked in batches.
pub(super) async fn remote_deltas(
    remote: &Arc<dyn Store>,
    ids: &[ObjectId],
    retry: &Retry,
    stats: &mut TransferStats,
) -> Result<Vec<DeltaName>> {
    let mut out = Vec::new();
    for batch in ids.chunks(remote.missing_batch_size().max(1)) {
        let (r, n) = retry.run(|| remote.deltas_of(batch)).await;
        stats.retries += n;
        let asked: HashSet<&ObjectId> = batch.iter().collect();
        out.extend(r?.into_iter().filter(|d| asked.contains(&d.id)));
    }
    Ok(out)
}

/// Plans the deltas of a push. `send` are the chunks the push sends or relies on (`missing`: those
/// the remote lacks whole), `older` chunks of the versions just before the pushed ones.
pub(super) async fn plan_push(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    send: &[ObjectId],
    missing: &HashSet<ObjectId>,
    older: &[ObjectId],
    retry: &Retry,
    stats: &mut TransferStats,
) -> Result<PushDeltas> {
    // Chunks stored locally as deltas: those the remote lacks whole (sent as a delta in place of
    // whole where it can be) and those it holds whole (a delta beside it lets gc drop it).
    let sending: HashSet<ObjectId> = send.iter().copied().collect();
    let mut cands: HashMap<ObjectId, ObjectId> = HashMap::new();
    let mut unknown: Vec<ObjectId> = Vec::new();
    for id in send.iter().chain(older) {
        if cands.contains_key(id) {
            continue;
        }
        if let Ok(Some((base, _))) = local.delta_base(id) {
            cands.insert(*id, base);
            if !sending.contains(id) {
                unknown.push(*id);
            }
        }
    }
    if cands.is_empty() {
        return Ok(PushDeltas::default());
    }
    // Which of them, and of their bases, the remote holds whole or as deltas already.
    for base in cands.values() {
        if !sending.contains(base) && !cands.contains_key(base) {
            unknown.push(*base);
        }
    }
    unknown.sort();
    unknown.dedup();
    let absent: HashSet<ObjectId> = {
        let mut out = HashSet::new();
        for batch in unknown.chunks(remote.missing_batch_size().max(1)) {
            let (r, n) = retry.run(|| remote.missing(batch)).await;
            stats.retries += n;
            out.extend(r?);
        }
        out
    };
    let asked_whole: HashSet<ObjectId> = unknown.iter().copied().collect();
    let lacks_whole = |id: &ObjectId| {
        if sending.contains(id) {
            missing.contains(id)
        } else {
            !asked_whole.contains(id) || absent.contains(id)
        }
    };
    let mut asked: Vec<ObjectId> = cands.keys().copied().collect();
    asked.extend(cands.values().copied());
    asked.sort();
    asked.dedup();
    let existing = remote_deltas(remote, &asked, retry, stats).await?;
    let held_as_delta: HashSet<ObjectId> = existing.iter().map(|d| d.id).collect();
    let existing: HashSet<DeltaName> = existing.into_iter().collect();

    // A chunk the remote lacks whole and not already held as a delta, outside this push, is left
    // alone (its version is not being sent).
    cands.retain(|id, base| {
        let name = DeltaName {
            id: *id,
            base: *base,
        };
        !existing.contains(&name)
            && !(lacks_whole(id) && !sending.contains(id))
            && !(held_as_delta.contains(id) && !lacks_whole(id))
    });
    // Chunks the remote lacks whole and holds as a delta already need neither.
    let mut instead: HashSet<ObjectId> = send
        .iter()
        .filter(|id| missing.contains(id) && held_as_delta.contains(id))
        .copied()
        .collect();
    cands.retain(|id, _| !instead.contains(id));

    // Levels: a delta goes once its base is held (whole before this push, sent whole by it, or as
    // a delta of an earlier level). A chunk the remote lacks whole whose base never will be goes
    // whole after all; that may make other bases held, so the assignment runs again.
    let mut levels: Vec<Vec<DeltaName>>;
    let mut whole_after_all: HashSet<ObjectId> = HashSet::new();
    loop {
        let held = |b: &ObjectId, placed: &HashSet<ObjectId>| {
            placed.contains(b)
                || held_as_delta.contains(b)
                || whole_after_all.contains(b)
                || !lacks_whole(b)
                || (sending.contains(b) && !cands.contains_key(b))
        };
        levels = Vec::new();
        let mut placed: HashSet<ObjectId> = HashSet::new();
        let mut left: Vec<(ObjectId, ObjectId)> = cands
            .iter()
            .filter(|(id, _)| !whole_after_all.contains(*id))
            .map(|(i, b)| (*i, *b))
            .collect();
        left.sort();
        while !left.is_empty() && levels.len() < MAX_CHAIN {
            let (now, later): (Vec<_>, Vec<_>) =
                left.into_iter().partition(|(_, b)| held(b, &placed));
            left = later;
            if now.is_empty() {
                break;
            }
            placed.extend(now.iter().map(|(id, _)| *id));
            levels.push(
                now.into_iter()
                    .map(|(id, base)| DeltaName { id, base })
                    .collect(),
            );
        }
        let stuck: Vec<ObjectId> = left
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| lacks_whole(id))
            .collect();
        if stuck.is_empty() {
            instead.extend(placed.iter().filter(|id| lacks_whole(id)));
            break;
        }
        whole_after_all.extend(stuck);
    }
    Ok(PushDeltas { levels, instead })
}

/// Uploads the planned deltas, level after level.
pub(super) async fn push(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    plan: &PushDeltas,
    stats: &mut TransferStats,
    opts: &TransferOptions<'_>,
) -> Result<()> {
    let total: u64 = plan
        .levels
        .iter()
        .flatten()
        .filter_map(|d| local.encoded_size(&d.id))
        .sum();
    if opts.dry_run {
        stats.objects += plan.count();
        stats.deltas += plan.count();
        stats.bytes += total;
        return Ok(());
    }
    opts.progress.start(
        &format!("push deltas to {}", remote.display_url()),
        total,
    );
    let mut result = Ok(());
    for level in &plan.levels {
        let names: HashMap<ObjectId, DeltaName> = level.iter().map(|d| (d.id, *d)).collect();
        let ids: Vec<ObjectId> = names.keys().copied().collect();
        let retry = opts.retry;
        let r = bounded(
            ids,
            opts.jobs,
            |id| {
                let local = local.clone();
                let remote = Arc::clone(remote);
                let name = names[&id];
                async move {
                    let enc = match local_io(move || local.get_encoded(&name.id)).await {
                        Ok(e) => e,
                        Err(e) => return (Err(e), 0),
                    };
                    let n = enc.len() as u64;
                    let (r, retries) = retry.run(|| remote.put_delta(&name, enc.clone())).await;
                    (r.map(|_| n), retries)
                }
            },
            |_, n, retries| {
                stats.objects += 1;
                stats.deltas += 1;
                stats.bytes += n;
                stats.retries += retries;
                opts.progress.advance(n);
            },
        )
        .await;
        if r.is_err() {
            result = r;
            break;
        }
    }
    opts.progress.finish();
    result
}

/// What a pull fetches through deltas: bases fetched whole first, then deltas level by level.
#[derive(Debug, Default)]
pub(super) struct PullDeltas {
    /// Bases outside the pull fetched whole first (id → their raw size bound).
    pub bases: HashMap<ObjectId, u64>,
    pub levels: Vec<Vec<DeltaName>>,
}

impl PullDeltas {
    /// Every id this plan makes local.
    pub fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.bases
            .keys()
            .copied()
            .chain(self.levels.iter().flatten().map(|d| d.id))
    }
}

/// Plans fetching `absent` (ids the remote lacks whole; id → raw size bound) through the remote's
/// deltas. `coming` are the ids fetched whole anyway. Ids with no usable chain stay out.
pub(super) async fn plan_pull(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    absent: &HashMap<ObjectId, u64>,
    coming: &HashSet<ObjectId>,
    retry: &Retry,
    stats: &mut TransferStats,
) -> Result<PullDeltas> {
    let mut plan = PullDeltas::default();
    if absent.is_empty() || !remote.stores_deltas() {
        return Ok(plan);
    }
    // id → its chosen delta; walked down until every base is local, coming, or fetched whole.
    let mut chosen: HashMap<ObjectId, DeltaName> = HashMap::new();
    let mut bound: HashMap<ObjectId, u64> = absent.clone();
    let mut ask: Vec<ObjectId> = absent.keys().copied().collect();
    ask.sort();
    let mut dead: HashSet<ObjectId> = HashSet::new();
    for _ in 0..=MAX_CHAIN {
        if ask.is_empty() {
            break;
        }
        let found = remote_deltas(remote, &ask, retry, stats).await?;
        let mut by_id: HashMap<ObjectId, Vec<DeltaName>> = HashMap::new();
        for d in found {
            by_id.entry(d.id).or_default().push(d);
        }
        let mut next_bases: Vec<ObjectId> = Vec::new();
        for id in &ask {
            let mut options = by_id.remove(id).unwrap_or_default();
            options.sort();
            // Prefer a base already local or coming; else any other (a cycle never becomes
            // ready below and stays out).
            let pick = options
                .iter()
                .find(|d| local.has(&d.base) || coming.contains(&d.base))
                .or_else(|| options.iter().find(|d| d.base != *id))
                .copied();
            match pick {
                Some(d) => {
                    chosen.insert(*id, d);
                    let b = bound.get(id).copied().unwrap_or(codec::MAX_OBJECT_SIZE);
                    if !local.has(&d.base) && !coming.contains(&d.base) {
                        bound.entry(d.base).or_insert(b);
                        next_bases.push(d.base);
                    }
                }
                None => {
                    dead.insert(*id);
                }
            }
        }
        next_bases.sort();
        next_bases.dedup();
        next_bases.retain(|b| !chosen.contains_key(b) && !plan.bases.contains_key(b));
        // Bases the remote holds whole are fetched whole; the others are walked further.
        let mut whole_absent = HashSet::new();
        for batch in next_bases.chunks(remote.missing_batch_size().max(1)) {
            let (r, n) = retry.run(|| remote.missing(batch)).await;
            stats.retries += n;
            whole_absent.extend(r?);
        }
        ask = Vec::new();
        for b in next_bases {
            if whole_absent.contains(&b) {
                ask.push(b);
            } else {
                plan.bases.insert(b, bound[&b]);
            }
        }
    }
    dead.extend(ask);
    // Levels: a delta whose base is local, coming or fetched whole first; then upward. An id
    // whose chain ends in a dead one stays out.
    let ready = |b: &ObjectId, placed: &HashSet<ObjectId>| {
        local.has(b) || coming.contains(b) || plan.bases.contains_key(b) || placed.contains(b)
    };
    let mut placed = HashSet::new();
    let mut left: Vec<DeltaName> = chosen
        .values()
        .filter(|d| !dead.contains(&d.id))
        .copied()
        .collect();
    left.sort();
    let mut levels = Vec::new();
    while !left.is_empty() && levels.len() <= MAX_CHAIN {
        let (now, later): (Vec<_>, Vec<_>) = left.into_iter().partition(|d| ready(&d.base, &placed));
        left = later;
        if now.is_empty() {
            break;
        }
        placed.extend(now.iter().map(|d| d.id));
        levels.push(now);
    }
    plan.levels = levels;
    // Bases fetched whole only for chains that stay out are not needed.
    Ok(plan)
}

/// Fetches the planned deltas, level after level, each verified against its base as the local
/// store holds it before it is stored (as a delta, or whole where the local chain would grow past
/// [`MAX_CHAIN`]).
pub(super) async fn pull(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    plan: &PullDeltas,
    bounds: &HashMap<ObjectId, u64>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<()> {
    let url = remote.display_url();
    opts.progress
        .start(&format!("pull deltas from {url}"), 0);
    let mut result = Ok(());
    for level in &plan.levels {
        let names: HashMap<ObjectId, DeltaName> = level.iter().map(|d| (d.id, *d)).collect();
        let ids: Vec<ObjectId> = names.keys().copied().collect();
        let retry = opts.retry;
        let r = bounded(
            ids,
            opts.jobs,
            |id| {
                let local = local.clone();
                let remote = Arc::clone(remote);
                let name = names[&id];
                let max_raw = bounds.get(&id).copied().unwrap_or(codec::MAX_OBJECT_SIZE);
                async move {
                    let (enc, retries) = retry.run(|| remote.get_delta(&name)).await;
                    let enc = match enc {
                        Ok(e) => e,
                        Err(e) => return (Err(e), retries),
                    };
                    let n = enc.len() as u64;
                    let stored =
                        local_io(move || store_delta(&local, &name, &enc, max_raw)).await;
                    let r = match stored {
                        Ok(()) => Ok(n),
                        Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
                            Err(corrupt_on_remote(&remote, id, kind, reason).await)
                        }
                        Err(e) => Err(e),
                    };
                    (r, retries)
                }
            },
            |_, n, retries| {
                stats.objects += 1;
                stats.deltas += 1;
                stats.bytes += n;
                stats.retries += retries;
                opts.progress.advance(n);
            },
        )
        .await;
        if r.is_err() {
            result = r;
            break;
        }
    }
    opts.progress.finish();
    result
}

/// Verifies the delta `name` (bytes `enc`) against its base in the local store and stores it.
fn store_delta(local: &LocalStore, name: &DeltaName, enc: &[u8], max_raw: u64) -> Result<()> {
    if local.has(&name.id) {
        return Ok(());
    }
    crate::remote::deltas::check_delta_header(name, enc, max_raw)?;
    let mut raw = local.get(&name.base, max_raw)?;
    codec::decode_against_in_place(&name.id, enc, &mut raw, max_raw, &mut DecodeScratch::default())?;
    crate::store::check_hash(&name.id, &raw)?;
    if local.chain_depth(&name.base)? + 1 < MAX_CHAIN {
        local.put_trusted(&name.id, enc)?;
    } else {
        let hint = match codec::parse_header(&name.id, enc)?.codec {
            codec::Codec::Delta { width, .. } => codec::DataHint::Float(width),
            _ => codec::DataHint::Unknown,
        };
        local.put_trusted(&name.id, &Encoder::new().encode(&raw, hint))?;
    }
    Ok(())
}
