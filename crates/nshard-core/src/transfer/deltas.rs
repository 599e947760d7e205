//! Delta encodings between the local store and a remote that keeps them
//! ([`Store::stores_deltas`]).
//!
//! Push sends a chunk the remote lacks and the local store holds as a delta as that delta
//! (`deltas/<id>.<base>` on the remote) wherever the remote will hold its base: already, or sent earlier in the same push
//! (whole objects first, then deltas level by level, each level's bases before it). A chunk whose
//! base the remote will not hold goes whole, as before. Chunks of older versions the remote holds
//! whole get their deltas from `nshard remote gc` ([`plan_offer`]), which can then drop those
//! whole copies; a remote where gc never runs holds each version whole, as it did before deltas.
//!
//! Pull fetches a chunk the remote holds only as deltas through them: the bases it lacks first
//! (whole where the remote has them whole), then the deltas upward, each verified against its base
//! before it is stored, as a delta, in the local store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::engine::{bounded, corrupt_here, corrupt_on_remote, local_io, put_each, remote_missing};
use super::{TransferOptions, TransferStats};
use crate::codec::{self, Encoder, MAX_CHAIN};
use crate::error::{Error, Result, StoreError};
use crate::id::ObjectId;
use crate::progress::NoProgress;
use crate::remote::{DeltaName, Store, StoredDelta, StoredObject};
use crate::retry::Retry;
use crate::store::LocalStore;
use std::sync::atomic::AtomicBool;

/// What a push sends as deltas: level by level (each level's bases are held by the remote once
/// the levels before it are sent), and the chunks that go as a delta in place of whole.
#[derive(Debug, Default)]
pub(super) struct PushDeltas {
    pub levels: Vec<Vec<DeltaName>>,
    pub instead: HashSet<ObjectId>,
    /// Of `instead`, chunks the remote holds as deltas whose chains run through objects outside
    /// the push: checked again at its end where gc runs (see [`resolving`]).
    pub relied: Vec<ObjectId>,
    /// The deltas the remote holds already that `instead` stands on, with bases among the
    /// push's chunks: checked again at its end where gc runs (a run that listed the records
    /// before this push's landed may have deleted them), as the whole objects it relied on are.
    pub held: Vec<DeltaName>,
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
/// the remote lacks whole).
pub(super) async fn plan_push(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    send: &[ObjectId],
    missing: &HashSet<ObjectId>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<PushDeltas> {
    let retry = &opts.retry;
    // Chunks stored locally as deltas that the remote lacks whole: sent as a delta in place of
    // whole where they can be. (One the remote holds whole gets no delta from a push: a remote
    // where gc never runs keeps each version whole; gc uploads the deltas it lets stand.)
    let sending: HashSet<ObjectId> = send.iter().copied().collect();
    let lacking: Vec<ObjectId> = send
        .iter()
        .filter(|id| missing.contains(id))
        .copied()
        .collect();
    if lacking.is_empty() {
        return Ok(PushDeltas::default());
    }
    let mut cands: HashMap<ObjectId, ObjectId> = HashMap::new();
    for id in &lacking {
        if let Ok(Some((base, _))) = local.delta_base(id) {
            cands.insert(*id, base);
        }
    }
    // Which of their bases the remote holds whole, and which of them and their bases it holds as
    // deltas already (chunks it lacks whole may have been pushed as deltas from another clone).
    let mut unknown: Vec<ObjectId> = Vec::new();
    for base in cands.values() {
        if !sending.contains(base) && !cands.contains_key(base) {
            unknown.push(*base);
        }
    }
    unknown.sort();
    unknown.dedup();
    let absent = remote_missing(remote, &unknown, retry, stats, &NoProgress).await?;
    let asked_whole: HashSet<ObjectId> = unknown.iter().copied().collect();
    let lacks_whole = |id: &ObjectId| {
        if sending.contains(id) {
            missing.contains(id)
        } else {
            !asked_whole.contains(id) || absent.contains(id)
        }
    };
    let mut asked: Vec<ObjectId> = cands.values().copied().collect();
    asked.extend(lacking);
    asked.sort();
    asked.dedup();
    let existing = remote_deltas(remote, &asked, retry, stats).await?;
    let held_as_delta: HashSet<ObjectId> = existing.iter().map(|d| d.id).collect();
    let existing: HashSet<DeltaName> = existing.into_iter().collect();

    // Deltas the remote holds already are not sent again.
    cands.retain(|id, base| {
        !existing.contains(&DeltaName {
            id: *id,
            base: *base,
        })
    });
    // A chunk stands on a delta in place of its whole copy only where the base is a chunk of
    // the versions this push sends: their root record names it, so a gc running meanwhile keeps
    // it (a base of another version could be garbage that such a gc is deleting).
    // Chunks the remote lacks whole and holds as such a delta already need neither.
    let mut held: Vec<DeltaName> = existing
        .iter()
        .filter(|d| missing.contains(&d.id) && sending.contains(&d.id) && sending.contains(&d.base))
        .copied()
        .collect();
    held.sort();
    let mut instead: HashSet<ObjectId> = held.iter().map(|d| d.id).collect();
    // Chunks held as deltas whose bases are outside the push (a version a tag keeps among
    // versions retention pruned: gc kept their chunks as bases): relied on where a reader's
    // chain reaches a whole object, rather than sent whole by every push and deleted again by
    // the next gc. A gc running meanwhile could change such a chain, so the push checks them
    // again at its end where gc runs, as it does the whole objects it relied on.
    let mut outside: Vec<ObjectId> = existing
        .iter()
        .filter(|d| missing.contains(&d.id) && sending.contains(&d.id) && !instead.contains(&d.id))
        .map(|d| d.id)
        .collect();
    outside.sort();
    outside.dedup();
    let relied: Vec<ObjectId> = if outside.len() <= MAX_RELIED {
        let mut r: Vec<ObjectId> = resolving(remote, outside, opts, stats)
            .await?
            .into_iter()
            .collect();
        r.sort();
        r
    } else {
        Vec::new()
    };
    instead.extend(relied.iter().copied());
    cands.retain(|id, _| !instead.contains(id));

    // Levels: a delta goes once its base is held (whole before this push, sent whole by it, or as
    // a delta of an earlier level). A chunk the remote lacks whole whose base never will be goes
    // whole after all; that may make other bases held, so the assignment runs again.
    let mut levels: Vec<Vec<DeltaName>>;
    let mut whole_after_all: HashSet<ObjectId> = HashSet::new();
    loop {
        let held = |id: &ObjectId, b: &ObjectId, placed: &HashSet<ObjectId>| {
            (placed.contains(b)
                || held_as_delta.contains(b)
                || whole_after_all.contains(b)
                || !lacks_whole(b)
                || (sending.contains(b) && !cands.contains_key(b)))
                && (!lacks_whole(id) || sending.contains(b))
        };
        let candidates: Vec<DeltaName> = cands
            .iter()
            .filter(|(id, _)| !whole_after_all.contains(*id))
            .map(|(id, base)| DeltaName {
                id: *id,
                base: *base,
            })
            .collect();
        let (placed, left) = in_levels(candidates, MAX_CHAIN, |d, placed| {
            held(&d.id, &d.base, placed)
        });
        levels = placed;
        let stuck: Vec<ObjectId> = left
            .iter()
            .map(|d| d.id)
            .filter(|id| lacks_whole(id))
            .collect();
        if stuck.is_empty() {
            instead.extend(
                levels
                    .iter()
                    .flatten()
                    .map(|d| d.id)
                    .filter(|id| lacks_whole(id)),
            );
            break;
        }
        whole_after_all.extend(stuck);
    }
    Ok(PushDeltas {
        levels,
        instead,
        relied,
        held,
    })
}

/// The most chunks held as deltas through objects outside a push that the push checks (each a
/// search through its chain, by names); past that, they are sent whole.
const MAX_RELIED: usize = 4096;

/// Of `ids`, those `remote` holds whole or through a chain of deltas a reader takes (by names),
/// `opts.jobs` at a time.
pub(super) async fn resolving(
    remote: &Arc<dyn Store>,
    ids: Vec<ObjectId>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<HashSet<ObjectId>> {
    let retry = opts.retry;
    let mut out = HashSet::new();
    bounded(
        ids,
        opts.jobs,
        |id| {
            let remote = Arc::clone(remote);
            async move {
                retry
                    .run(|| crate::remote::deltas::resolves(remote.as_ref(), &id))
                    .await
            }
        },
        |id, held, retries| {
            stats.retries += retries;
            if held {
                out.insert(id);
            }
        },
    )
    .await?;
    Ok(out)
}

/// Plans the deltas `nshard remote gc` uploads from the local store: of the live objects the
/// remote holds whole and as no delta, those the local store holds as a delta of another live
/// object the remote holds (whole or as a delta). One level: every base is on the remote already.
/// Best effort: an object this clone lacks, or holds whole, adds nothing.
pub(super) fn plan_offer(
    local: &LocalStore,
    live: &HashSet<ObjectId>,
    whole: &HashMap<ObjectId, StoredObject>,
    held_as_delta: &HashMap<ObjectId, Vec<StoredDelta>>,
) -> PushDeltas {
    let held = |id: &ObjectId| whole.contains_key(id) || held_as_delta.contains_key(id);
    let mut level: Vec<DeltaName> = whole
        .keys()
        .filter(|id| live.contains(id) && !held_as_delta.contains_key(id))
        .filter_map(|id| match local.delta_base(id) {
            Ok(Some((base, _))) if live.contains(&base) && held(&base) => {
                Some(DeltaName { id: *id, base })
            }
            _ => None,
        })
        .collect();
    level.sort_unstable_by_key(|d| d.id);
    PushDeltas {
        levels: if level.is_empty() {
            vec![]
        } else {
            vec![level]
        },
        instead: HashSet::new(),
        relied: Vec::new(),
        held: Vec::new(),
    }
}

/// Of `offer` (deltas [`plan_offer`] found), those that would stand for their objects: this run
/// ([`choose_encodings`] with `settled`, the offered deltas stored `now`) lets what it can
/// stand and deletes what that makes redundant, and a later run, once everything left has
/// settled, still chooses them: a chain within [`REMOTE_DEPTH`], not the other half of a cycle
/// with a delta the remote holds. Any other would be uploaded only to be deleted as superseded.
/// Nor one that would put an object the remote holds only as deltas out of reach: a delta of an
/// object others are deltas of deepens their chains, and past the bound they would resolve no
/// more (each run in a training loop would add a level); that object stays whole, a keyframe.
/// Without `whole_only` (see [`choose_encodings_keeping`]).
#[cfg(test)]
pub(super) fn would_stand(
    offer: Vec<DeltaName>,
    live: &HashSet<ObjectId>,
    whole: &HashMap<ObjectId, StoredObject>,
    held_as_delta: &HashMap<ObjectId, Vec<StoredDelta>>,
    now: u64,
    settled: impl Fn(u64) -> bool,
) -> Vec<DeltaName> {
    would_stand_keeping(
        offer,
        live,
        whole,
        held_as_delta,
        &HashSet::new(),
        now,
        settled,
    )
}

/// [`would_stand`] where the objects of `whole_only` held whole stay whole.
pub(super) fn would_stand_keeping(
    mut offer: Vec<DeltaName>,
    live: &HashSet<ObjectId>,
    whole: &HashMap<ObjectId, StoredObject>,
    held_as_delta: &HashMap<ObjectId, Vec<StoredDelta>>,
    whole_only: &HashSet<ObjectId>,
    now: u64,
    settled: impl Fn(u64) -> bool,
) -> Vec<DeltaName> {
    offer.retain(|d| !(whole_only.contains(&d.id) && whole.contains_key(&d.id)));
    if offer.is_empty() {
        return offer;
    }
    let choose_encodings = |live: &HashSet<ObjectId>,
                            whole: &HashMap<ObjectId, StoredObject>,
                            deltas: &HashMap<ObjectId, Vec<StoredDelta>>,
                            settled: &dyn Fn(u64) -> bool| {
        choose_encodings_keeping(live, whole, deltas, whole_only, settled)
    };
    let before = choose_encodings(live, whole, held_as_delta, &|_| true).unresolved;
    // Each round drops at least one offered delta, or ends.
    for _ in 0..=offer.len() {
        let mut trial = held_as_delta.clone();
        for d in &offer {
            trial.entry(d.id).or_default().push(StoredDelta {
                name: *d,
                size: 0,
                modified: now,
            });
        }
        let first = choose_encodings(live, whole, &trial, &settled);
        let mut whole_after = whole.clone();
        for (id, _) in &first.whole_superseded {
            whole_after.remove(id);
        }
        let gone: HashSet<DeltaName> = first.deltas_superseded.iter().copied().collect();
        for list in trial.values_mut() {
            list.retain(|d| !gone.contains(&d.name));
        }
        trial.retain(|_, list| !list.is_empty());
        let later = choose_encodings(live, &whole_after, &trial, &|_| true);
        // Objects that resolve now and would not: the offered deltas below them (of their
        // bases, down their chains) go.
        let below = bases_below(later.unresolved.difference(&before).copied(), &trial);
        let count = offer.len();
        if !below.is_empty() {
            offer.retain(|d| !below.contains(&d.id));
        }
        if below.is_empty() || offer.len() == count {
            offer.retain(|d| later.chosen.contains(d));
            return offer;
        }
    }
    Vec::new()
}

/// The bases of the deltas of `from` in `deltas` (an id's delta encodings), theirs, and so on
/// down every chain.
pub(super) fn bases_below(
    from: impl IntoIterator<Item = ObjectId>,
    deltas: &HashMap<ObjectId, Vec<StoredDelta>>,
) -> HashSet<ObjectId> {
    let mut below: HashSet<ObjectId> = HashSet::new();
    let mut todo: Vec<ObjectId> = from.into_iter().collect();
    while let Some(o) = todo.pop() {
        for d in deltas.get(&o).into_iter().flatten() {
            if below.insert(d.name.base) {
                todo.push(d.name.base);
            }
        }
    }
    below
}

/// Uploads the deltas `nshard remote gc` offers (one level, see [`plan_offer`]), best effort:
/// one the remote refuses (its base turned out broken there, the local copy was re-encoded
/// meanwhile…) is left out and returned with why, and the rest go on; the whole copy it would
/// have stood for simply stays. A transient failure (the remote unreachable after the retries)
/// stops the upload with an error. Returns the deltas uploaded and those refused.
pub(super) async fn push_offer(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    offer: &[DeltaName],
    stats: &mut TransferStats,
    opts: &TransferOptions<'_>,
) -> Result<(Vec<DeltaName>, Vec<(DeltaName, String)>)> {
    let names: HashMap<ObjectId, DeltaName> = offer.iter().map(|d| (d.id, *d)).collect();
    let total = offer.iter().filter_map(|d| local.encoded_size(&d.id)).sum();
    let what = format!("deltas to {}", remote.display_url());
    opts.progress.start(&what, total);
    let retry = opts.retry;
    let (mut sent, mut failed) = (Vec::new(), Vec::new());
    let r = bounded(
        names.keys().copied().collect(),
        opts.jobs,
        |id| {
            let upload = upload_delta(local.clone(), Arc::clone(remote), names[&id], retry);
            async move {
                match upload.await {
                    // The remote is unreachable (after the retries): the run stops here, before
                    // it deletes anything, as for any listing or check that fails so.
                    (Err(e), retries) if e.is_transient() => (Err(e), retries),
                    (r, retries) => (Ok(r), retries),
                }
            }
        },
        |id, r: Result<u64>, retries| {
            stats.retries += retries;
            match r {
                Ok(n) => {
                    stats.objects += 1;
                    stats.deltas += 1;
                    stats.bytes += n;
                    opts.progress.advance(n);
                    sent.push(names[&id]);
                }
                Err(e) => failed.push((names[&id], e.to_string())),
            }
        },
    )
    .await;
    opts.progress.finish();
    r?;
    sent.sort_unstable();
    failed.sort_unstable_by_key(|(d, _)| *d);
    Ok((sent, failed))
}

/// Uploads each of `ids` whole from `local` (`opts.jobs` at a time), as a push sends an object;
/// returns each with the bytes sent. Any failure stops it (after the retries).
pub(super) async fn push_whole(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    ids: &[ObjectId],
    stats: &mut TransferStats,
    opts: &TransferOptions<'_>,
) -> Result<Vec<(ObjectId, u64)>> {
    let total = ids.iter().filter_map(|id| local.encoded_size(id)).sum();
    opts.progress.start(
        &format!("newest versions whole to {}", remote.display_url()),
        total,
    );
    let format1 = Arc::new(AtomicBool::new(!remote.stores_float_objects()));
    let mut sent = Vec::with_capacity(ids.len());
    let r = put_each(
        local,
        remote,
        ids.to_vec(),
        &format1,
        stats,
        opts,
        |id, n| sent.push((id, n)),
    )
    .await;
    opts.progress.finish();
    r?;
    sent.sort_unstable();
    Ok(sent)
}

/// The stored bytes of the planned deltas (as the local store holds them).
fn planned_bytes(local: &LocalStore, plan: &PushDeltas) -> u64 {
    plan.levels
        .iter()
        .flatten()
        .filter_map(|d| local.encoded_size(&d.id))
        .sum()
}

/// Uploads the planned deltas, level after level.
pub(super) async fn push(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    plan: &PushDeltas,
    stats: &mut TransferStats,
    opts: &TransferOptions<'_>,
) -> Result<()> {
    let total = planned_bytes(local, plan);
    if opts.dry_run {
        stats.objects += plan.count();
        stats.deltas += plan.count();
        stats.bytes += total;
        return Ok(());
    }
    let what = format!("deltas to {}", remote.display_url());
    let retry = opts.retry;
    by_levels(&plan.levels, &what, total, opts, stats, |name| {
        upload_delta(local.clone(), Arc::clone(remote), name, retry)
    })
    .await
}

/// Uploads the local store's encoding of `name.id` (a delta against `name.base`) as `name`:
/// the bytes sent, and the retries it took.
async fn upload_delta(
    local: LocalStore,
    remote: Arc<dyn Store>,
    name: DeltaName,
    retry: Retry,
) -> (Result<u64>, u64) {
    let l = local.clone();
    let enc = match local_io(move || l.get_encoded(&name.id)).await {
        Ok(e) => e,
        Err(e) => return (Err(e), 0),
    };
    let n = enc.len() as u64;
    crate::crash_point!("push-before-delta");
    let (r, retries) = retry.run(|| remote.put_delta(&name, enc.clone())).await;
    match r {
        Ok(_) => (Ok(n), retries),
        // The remote checked the delta against its base and refused it: if the local copy is
        // damaged, that is the error, and the copy is moved aside (as push does with a whole
        // object), so that `pull` fetches a good one and the next push goes through.
        Err(e) => (
            Err(corrupt_here(&local, name.id).await.unwrap_or(e)),
            retries,
        ),
    }
}

/// Runs `work` on every delta of `levels`, a level once the ones before it are done (at most
/// `opts.jobs` at once), counting what each moved (`work`'s bytes and retries) as a delta in
/// `stats`, with progress under `what` (of `total` bytes).
async fn by_levels<F, Fut>(
    levels: &[Vec<DeltaName>],
    what: &str,
    total: u64,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
    work: F,
) -> Result<()>
where
    F: Fn(DeltaName) -> Fut,
    Fut: std::future::Future<Output = (Result<u64>, u64)> + Send + 'static,
{
    opts.progress.start(what, total);
    let mut result = Ok(());
    for level in levels {
        let names: HashMap<ObjectId, DeltaName> = level.iter().map(|d| (d.id, *d)).collect();
        let ids: Vec<ObjectId> = names.keys().copied().collect();
        let r = bounded(
            ids,
            opts.jobs,
            |id| work(names[&id]),
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

/// Fetches `wanted` (id → the most raw bytes it may decode to; all absent locally) from `remote`:
/// whole where it holds them whole, else through its deltas (bases first). `absent` are the ids
/// it lacks whole (asked beforehand). Returns the ids it holds neither way, and the ids received
/// (with a dry run, counted in `stats` and none moved).
pub(super) async fn fetch(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    mut wanted: HashMap<ObjectId, u64>,
    mut absent: HashSet<ObjectId>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<(HashSet<ObjectId>, HashSet<ObjectId>)> {
    let lacking_whole: HashMap<ObjectId, u64> = wanted
        .iter()
        .filter(|(id, _)| absent.contains(id))
        .map(|(id, n)| (*id, *n))
        .collect();
    wanted.retain(|id, _| !absent.contains(id));
    let coming: HashSet<ObjectId> = wanted.keys().copied().collect();
    let via = plan_pull(local, remote, &lacking_whole, &coming, &opts.retry, stats).await?;
    for id in via.ids() {
        absent.remove(&id);
    }
    let mut whole = wanted;
    whole.extend(via.bases.iter().map(|(id, n)| (*id, *n)));
    if opts.dry_run {
        stats.deltas = via.levels.iter().map(Vec::len).sum::<usize>();
        stats.objects = whole.len() + stats.deltas;
        stats.bytes = whole.values().sum::<u64>()
            + via
                .levels
                .iter()
                .flatten()
                .map(|d| lacking_whole.get(&d.id).copied().unwrap_or(0))
                .sum::<u64>();
    } else {
        super::engine::pull_objects(local, remote, &whole, opts, stats).await?;
        pull(local, remote, &via, &lacking_whole, opts, stats).await?;
    }
    let received = whole.keys().copied().chain(via.ids()).collect();
    Ok((absent, received))
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
        let whole_absent = remote_missing(remote, &next_bases, retry, stats, &NoProgress).await?;
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
    let left: Vec<DeltaName> = chosen
        .values()
        .filter(|d| !dead.contains(&d.id))
        .copied()
        .collect();
    // Bases planned whole for a chain that stays out are still fetched (only a broken chain on
    // the remote leaves one).
    (plan.levels, _) = in_levels(left, MAX_CHAIN + 1, |d, placed| ready(&d.base, placed));
    Ok(plan)
}

/// Sorts `left` into levels (at most `max_levels`): a delta goes in the first level where
/// `ready(delta, ids placed in the levels before)` holds. Returns the levels and what never became
/// ready (a chain through a cycle, a base that never comes, or one too deep).
fn in_levels(
    mut left: Vec<DeltaName>,
    max_levels: usize,
    ready: impl Fn(&DeltaName, &HashSet<ObjectId>) -> bool,
) -> (Vec<Vec<DeltaName>>, Vec<DeltaName>) {
    left.sort();
    let mut levels: Vec<Vec<DeltaName>> = Vec::new();
    let mut placed: HashSet<ObjectId> = HashSet::new();
    while !left.is_empty() && levels.len() < max_levels {
        let (now, later): (Vec<_>, Vec<_>) = left.into_iter().partition(|d| ready(d, &placed));
        left = later;
        if now.is_empty() {
            break;
        }
        placed.extend(now.iter().map(|d| d.id));
        levels.push(now);
    }
    (levels, left)
}

/// Fetches the planned deltas, each verified against its base before it is stored (as a delta,
/// or whole where the local chain would grow past [`MAX_CHAIN`]). A chain goes in one task, from
/// the delta built on an object already here upward, each delta decoded against the bytes just
/// produced for its base (never by re-reading the chain below it): at most `opts.jobs` chains at
/// once.
pub(super) async fn pull(
    local: &LocalStore,
    remote: &Arc<dyn Store>,
    plan: &PullDeltas,
    bounds: &HashMap<ObjectId, u64>,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<()> {
    let mut above: HashMap<ObjectId, Vec<DeltaName>> = HashMap::new();
    for d in plan.levels.iter().skip(1).flatten() {
        above.entry(d.base).or_default().push(*d);
    }
    let above = Arc::new(above);
    let bounds = Arc::new(bounds.clone());
    let roots: HashMap<ObjectId, DeltaName> = plan
        .levels
        .first()
        .map(|l| l.iter().map(|d| (d.id, *d)).collect())
        .unwrap_or_default();
    let ids: Vec<ObjectId> = roots.keys().copied().collect();
    let retry = opts.retry;
    opts.progress
        .start(&format!("pull deltas from {}", remote.display_url()), 0);
    let r = bounded(
        ids,
        opts.jobs,
        |id| {
            let (local, remote) = (local.clone(), Arc::clone(remote));
            let (above, bounds) = (Arc::clone(&above), Arc::clone(&bounds));
            let root = roots[&id];
            async move {
                let (mut count, mut bytes, mut retries) = (0usize, 0u64, 0u64);
                let mut todo: Vec<(DeltaName, Option<Arc<Vec<u8>>>)> = vec![(root, None)];
                while let Some((name, base)) = todo.pop() {
                    let (enc, n) = retry.run(|| remote.get_delta(&name)).await;
                    retries += n;
                    let enc = match enc {
                        Ok(e) => e,
                        Err(e) => return (Err(e), retries),
                    };
                    bytes += enc.len() as u64;
                    let max_raw = bounds
                        .get(&name.id)
                        .copied()
                        .unwrap_or(codec::MAX_OBJECT_SIZE);
                    let l = local.clone();
                    let stored =
                        local_io(move || store_delta(&l, &name, &enc, max_raw, base)).await;
                    let raw = match stored {
                        Ok(raw) => Arc::new(raw),
                        Err(Error::Store(StoreError::CorruptObject { id, kind, reason })) => {
                            let e = corrupt_on_remote(&remote, id, kind, reason).await;
                            return (Err(e), retries);
                        }
                        Err(e) => return (Err(e), retries),
                    };
                    count += 1;
                    for d in above.get(&name.id).into_iter().flatten() {
                        todo.push((*d, Some(Arc::clone(&raw))));
                    }
                }
                (Ok((count, bytes)), retries)
            }
        },
        |_, (count, n), retries| {
            stats.objects += count;
            stats.deltas += count;
            stats.bytes += n;
            stats.retries += retries;
            opts.progress.advance(n);
        },
    )
    .await;
    opts.progress.finish();
    r
}

/// Verifies the delta `name` (bytes `enc`) against its base and stores it; returns its raw
/// bytes. `base`: the base's bytes when the caller has them (verified), else they are read from
/// the local store.
fn store_delta(
    local: &LocalStore,
    name: &DeltaName,
    enc: &[u8],
    max_raw: u64,
    base: Option<Arc<Vec<u8>>>,
) -> Result<Vec<u8>> {
    let turn = crate::blocking::decode_slot();
    if local.has(&name.id) {
        return local.get(&name.id, max_raw);
    }
    crate::remote::deltas::check_delta_header(name, enc, max_raw)?;
    let mut raw = match base {
        Some(b) => Arc::try_unwrap(b).unwrap_or_else(|shared| shared.as_ref().clone()),
        None => local.get(&name.base, max_raw)?,
    };
    codec::with_pooled_scratch(|scratch| {
        codec::decode_against_in_place(&name.id, enc, &mut raw, max_raw, scratch)
    })?;
    crate::store::check_hash(&name.id, &raw)?;
    // Storing it is disk work, not a core's.
    drop(turn);
    if local.chain_depth(&name.base)? + 1 < MAX_CHAIN {
        local.put_trusted(&name.id, enc)?;
    } else {
        let hint = match codec::parse_header(&name.id, enc)?.codec {
            codec::Codec::Delta { width, .. } => codec::DataHint::Float(width),
            _ => codec::DataHint::Unknown,
        };
        local.put_trusted(&name.id, &Encoder::new().encode(&raw, hint))?;
    }
    Ok(raw)
}

/// The longest chain of deltas `nshard remote gc` builds on a remote when it lets deltas stand
/// for whole objects (a local store's default `delta_depth`).
pub(super) const REMOTE_DEPTH: usize = 16;

/// How gc keeps what a remote holds of the objects it must keep ([`choose_encodings`]).
#[derive(Debug, Default)]
pub(super) struct Encodings {
    /// Kept objects whose whole copy goes, with the kept delta that holds each (its chain
    /// ending in a kept whole object within [`REMOTE_DEPTH`] deltas).
    pub whole_superseded: Vec<(ObjectId, DeltaName)>,
    /// Deltas of kept objects that no kept chain uses.
    pub deltas_superseded: Vec<DeltaName>,
    /// Objects kept only as the base of a kept delta (beyond the live ones).
    pub bases: HashSet<ObjectId>,
    /// Deltas kept.
    pub deltas_kept: usize,
    /// The deltas chosen to stand for their objects (those of `whole_superseded` among them).
    pub chosen: HashSet<DeltaName>,
    /// Objects held only as deltas none of whose chains reaches a kept whole object within
    /// [`REMOTE_DEPTH`] deltas (kept with everything they have).
    pub unresolved: HashSet<ObjectId>,
}

/// Chooses, for each of `live` the remote holds (`whole`: the objects it holds whole, as listed;
/// `deltas`: its delta encodings by id), one way to keep it: whole, or a delta whose
/// chain ends in a kept whole object. Objects held whole with no delta are kept whole; the others
/// become deltas where a chain of at most [`REMOTE_DEPTH`] deltas reaches a whole one, else stay
/// whole; an object held only as deltas keeps one whose chain resolves, its bases kept with it
/// (even those no live version names). Only what has `settled` (stored longer ago than the grace
/// period) is deleted or relied on to delete something else; an object with no chain that
/// resolves keeps everything it has.
#[cfg(test)]
pub(super) fn choose_encodings(
    live: &HashSet<ObjectId>,
    whole: &HashMap<ObjectId, StoredObject>,
    deltas: &HashMap<ObjectId, Vec<crate::remote::StoredDelta>>,
    settled: impl Fn(u64) -> bool,
) -> Encodings {
    choose_encodings_keeping(live, whole, deltas, &HashSet::new(), settled)
}

/// [`choose_encodings`] where each object of `whole_only` the remote holds whole is kept whole
/// (an anchor), whatever deltas it has: the objects of the versions branches name now, so that
/// pulling the newest version reads no chain.
pub(super) fn choose_encodings_keeping(
    live: &HashSet<ObjectId>,
    whole: &HashMap<ObjectId, StoredObject>,
    deltas: &HashMap<ObjectId, Vec<crate::remote::StoredDelta>>,
    whole_only: &HashSet<ObjectId>,
    settled: impl Fn(u64) -> bool,
) -> Encodings {
    let mut out = Encodings::default();
    let mut need: Vec<ObjectId> = live
        .iter()
        .filter(|id| whole.contains_key(id) || deltas.contains_key(id))
        .copied()
        .collect();
    need.sort();
    let mut needed: HashSet<ObjectId> = need.iter().copied().collect();
    // id → (chosen delta or whole, deltas between it and a whole object).
    let mut chosen: HashMap<ObjectId, (Option<DeltaName>, usize)> = HashMap::new();
    let options = |id: &ObjectId| -> Vec<crate::remote::StoredDelta> {
        let mut v = deltas.get(id).cloned().unwrap_or_default();
        v.sort_by_key(|d| d.name);
        v
    };
    // Whole objects nothing else can stand for are the anchors.
    for id in &need {
        if whole.contains_key(id)
            && (whole_only.contains(id) || !options(id).iter().any(|d| settled(d.modified)))
        {
            chosen.insert(*id, (None, 0));
        }
    }
    for _ in 0..need.len().saturating_add(2).min(1 << 20) {
        // Grow chains on what is chosen, one level at a time.
        loop {
            let mut grew = false;
            for id in &need {
                if chosen.contains_key(id) {
                    continue;
                }
                let relied_on = whole.contains_key(id);
                let pick = options(id).into_iter().find_map(|d| {
                    let (_, depth) = chosen.get(&d.name.base)?;
                    (*depth < REMOTE_DEPTH && (!relied_on || settled(d.modified)))
                        .then_some((d.name, depth + 1))
                });
                if let Some((name, depth)) = pick {
                    chosen.insert(*id, (Some(name), depth));
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        // What is left and held whole stays whole, the top of each chain first (a delta of an
        // object also left can grow on it next; in a cycle, the lowest id stays whole); that
        // may let more chains grow.
        let left: HashSet<ObjectId> = need
            .iter()
            .filter(|id| !chosen.contains_key(id) && whole.contains_key(id))
            .copied()
            .collect();
        let on_left = |id: &ObjectId, below: bool| {
            options(id).iter().any(|d| {
                settled(d.modified) && left.contains(&d.name.base) && (!below || d.name.base < *id)
            })
        };
        let mut anchors: Vec<ObjectId> = left
            .iter()
            .filter(|id| !on_left(id, false))
            .copied()
            .collect();
        if anchors.is_empty() {
            anchors = left
                .iter()
                .filter(|id| !on_left(id, true))
                .copied()
                .collect();
        }
        if !anchors.is_empty() {
            for id in anchors {
                chosen.insert(id, (None, 0));
            }
            continue;
        }
        // Held only as deltas of objects outside the set: their bases are needed too.
        let mut added = false;
        for id in need.clone() {
            if chosen.contains_key(&id) {
                continue;
            }
            for d in options(&id) {
                let b = d.name.base;
                if !needed.contains(&b) && (whole.contains_key(&b) || deltas.contains_key(&b)) {
                    needed.insert(b);
                    need.push(b);
                    out.bases.insert(b);
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
    for id in &need {
        let all = options(id);
        match chosen.get(id) {
            Some((Some(name), _)) => {
                out.deltas_kept += 1;
                out.chosen.insert(*name);
                if whole.get(id).is_some_and(|o| settled(o.modified)) {
                    out.whole_superseded.push((*id, *name));
                }
                out.deltas_superseded.extend(
                    all.iter()
                        .filter(|d| d.name != *name && settled(d.modified))
                        .map(|d| d.name),
                );
            }
            // A whole copy kept for `whole_only` supersedes its deltas once it has settled
            // itself (one uploaded by this run has not: a reader may still be on its deltas).
            Some((None, _))
                if whole_only.contains(id)
                    && !whole.get(id).is_some_and(|o| settled(o.modified)) =>
            {
                out.deltas_kept += all.len();
            }
            Some((None, _)) => out
                .deltas_superseded
                .extend(all.iter().filter(|d| settled(d.modified)).map(|d| d.name)),
            // No chain resolves: keep everything it has.
            None => {
                out.deltas_kept += all.len();
                out.unresolved.insert(*id);
            }
        }
    }
    // A delta kept without being chosen (stored within the grace period, or on a remote that
    // lets no delta stand) keeps its base too, and the bases below it: a delta is never left
    // without its base, whatever version the base belongs to.
    let superseded: HashSet<DeltaName> = out.deltas_superseded.iter().copied().collect();
    let mut todo: Vec<ObjectId> = need
        .iter()
        .flat_map(&options)
        .filter(|d| !superseded.contains(&d.name))
        .map(|d| d.name.base)
        .collect();
    while let Some(b) = todo.pop() {
        if needed.contains(&b) || !out.bases.insert(b) {
            continue;
        }
        // Not among the objects chosen for: everything it has stays, its deltas' bases too.
        todo.extend(options(&b).iter().map(|d| d.name.base));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::StoredDelta;

    fn id(n: u8) -> ObjectId {
        ObjectId::of(&[n])
    }

    fn delta(i: u8, b: u8, modified: u64) -> StoredDelta {
        StoredDelta {
            name: DeltaName {
                id: id(i),
                base: id(b),
            },
            size: 10,
            modified,
        }
    }

    /// Objects `ns` held whole, stored at time 0.
    fn held_whole(ns: impl IntoIterator<Item = u8>) -> HashMap<ObjectId, StoredObject> {
        ns.into_iter()
            .map(|n| {
                let o = StoredObject {
                    id: id(n),
                    size: 10,
                    modified: 0,
                };
                (o.id, o)
            })
            .collect()
    }

    fn by_id(list: &[StoredDelta]) -> HashMap<ObjectId, Vec<StoredDelta>> {
        let mut m: HashMap<ObjectId, Vec<StoredDelta>> = HashMap::new();
        for d in list {
            m.entry(d.name.id).or_default().push(*d);
        }
        m
    }

    /// gc offers only deltas that would stand: a chain of 20 objects held whole, each offered as
    /// a delta of the next, gets the deltas within the depth bound (one object stays whole as
    /// the anchor of the rest); a delta closing a cycle with one the remote holds is not offered.
    #[test]
    fn gc_offers_only_deltas_that_would_stand() {
        let n = 20u8;
        let live: HashSet<ObjectId> = (1..=n).map(id).collect();
        let whole = held_whole(1..=n);
        let offer: Vec<DeltaName> = (1..n)
            .map(|i| DeltaName {
                id: id(i),
                base: id(i + 1),
            })
            .collect();
        let kept = would_stand(offer.clone(), &live, &whole, &HashMap::new(), 0, |_| true);
        assert_eq!(
            kept.len(),
            REMOTE_DEPTH + (n as usize - 1 - REMOTE_DEPTH - 1)
        );
        assert!(kept.iter().all(|d| offer.contains(d)));
        let e = choose_encodings(
            &live,
            &whole,
            &kept
                .iter()
                .map(|d| (d.id, vec![delta_named(*d, 0)]))
                .collect(),
            |_| true,
        );
        assert_eq!(e.chosen.len(), kept.len(), "every delta offered stands");

        // The remote holds 2 as a delta of 1; 1 as a delta of 2 would close a cycle.
        let live: HashSet<ObjectId> = [1, 2].map(id).into_iter().collect();
        let whole = held_whole([1, 2]);
        let held: HashMap<ObjectId, Vec<StoredDelta>> = [(id(2), vec![delta(2, 1, 0)])].into();
        let back = DeltaName {
            id: id(1),
            base: id(2),
        };
        let kept = would_stand(vec![back], &live, &whole, &held, 0, |_| true);
        let e = choose_encodings(&live, &whole, &held, |_| true);
        assert_eq!(e.chosen.len(), 1, "one of the pair stands");
        assert_eq!(
            kept.is_empty(),
            e.chosen.contains(&DeltaName {
                id: id(2),
                base: id(1)
            })
        );

        // With a grace period, whichever way the ids fall: the remote holds `b` as a settled
        // delta of `x`; `x` against `b` (uploaded now, unsettled) would let this run delete
        // `b`'s whole copy, after which a later run keeps `x` whole and deletes the upload.
        let (b, x) = if id(1) < id(2) { (1, 2) } else { (2, 1) };
        let held: HashMap<ObjectId, Vec<StoredDelta>> = [(id(b), vec![delta(b, x, 0)])].into();
        let back = DeltaName {
            id: id(x),
            base: id(b),
        };
        let now = 1000;
        let kept = would_stand(vec![back], &live, &whole, &held, now, |m| now >= m + 100);
        assert!(kept.is_empty(), "{kept:?}");
    }

    /// Each gc of a training loop offers the version before the newest as a delta of it. Where
    /// the remote holds a chain of the older versions only as deltas of that one, the offer
    /// deepens their chains: at the bound, it is not made (that version stays whole, a
    /// keyframe), so the chain's oldest object still resolves; below it, it is.
    #[test]
    fn gc_offers_no_delta_that_puts_a_chain_past_the_bound() {
        let offer = vec![DeltaName {
            id: id(17),
            base: id(18),
        }];
        for (from, fits) in [(1u8, false), (10, true)] {
            // `from` … 16 held only as deltas, each of the next; 17 and 18 whole.
            let live: HashSet<ObjectId> = (from..=18).map(id).collect();
            let whole = held_whole([17, 18]);
            let held: HashMap<ObjectId, Vec<StoredDelta>> = (from..=16)
                .map(|i| (id(i), vec![delta(i, i + 1, 0)]))
                .collect();
            assert!(choose_encodings(&live, &whole, &held, |_| true)
                .unresolved
                .is_empty());
            for grace in [0, 100] {
                let kept = would_stand(offer.clone(), &live, &whole, &held, 1000, |m| {
                    1000 >= m + grace
                });
                assert_eq!(kept.len(), usize::from(fits), "from {from}, grace {grace}");
            }
        }
    }

    /// A delta that stays without standing for its object (stored within the grace period, or
    /// on a remote that lets none stand) keeps its base, and the bases below it, even where no
    /// kept version names them.
    #[test]
    fn deltas_kept_without_standing_keep_their_bases() {
        // 1 (live, held whole) also has a delta against 2 (no live version names it), which
        // is held only as a delta of 3 (held whole, not live either).
        let live: HashSet<ObjectId> = [id(1)].into_iter().collect();
        let whole = held_whole([1, 3]);
        let held: HashMap<ObjectId, Vec<StoredDelta>> =
            [(id(1), vec![delta(1, 2, 0)]), (id(2), vec![delta(2, 3, 0)])].into();
        let e = choose_encodings(&live, &whole, &held, |_| false);
        let want: HashSet<ObjectId> = [id(2), id(3)].into_iter().collect();
        assert_eq!(e.bases, want, "{e:?}");
    }

    fn delta_named(name: DeltaName, modified: u64) -> StoredDelta {
        StoredDelta {
            name,
            size: 10,
            modified,
        }
    }

    #[test]
    fn a_reverse_chain_keeps_the_newest_whole_and_the_rest_as_deltas() {
        // 1 → 2 → 3 (3 the newest), all held whole too.
        let live: HashSet<ObjectId> = [1, 2, 3].map(id).into_iter().collect();
        let whole = held_whole([1, 2, 3]);
        let e = choose_encodings(
            &live,
            &whole,
            &by_id(&[delta(1, 2, 0), delta(2, 3, 0)]),
            |_| true,
        );
        let mut gone: Vec<ObjectId> = e.whole_superseded.iter().map(|(i, _)| *i).collect();
        gone.sort();
        let mut want = vec![id(1), id(2)];
        want.sort();
        assert_eq!(gone, want);
        assert_eq!(e.deltas_kept, 2);
        assert!(e.deltas_superseded.is_empty() && e.bases.is_empty());
    }

    #[test]
    fn unsettled_deltas_stand_for_nothing_yet_and_cycles_keep_one_whole() {
        let live: HashSet<ObjectId> = [1, 2].map(id).into_iter().collect();
        let whole = held_whole([1, 2]);
        // A delta pushed a moment ago: the whole copy stays, and so does the delta.
        let e = choose_encodings(&live, &whole, &by_id(&[delta(1, 2, 100)]), |m| m < 50);
        assert!(e.whole_superseded.is_empty() && e.deltas_superseded.is_empty());
        // 1 and 2 deltas of each other: one stays whole, the other a delta of it.
        let e = choose_encodings(
            &live,
            &whole,
            &by_id(&[delta(1, 2, 0), delta(2, 1, 0)]),
            |_| true,
        );
        assert_eq!(e.whole_superseded.len(), 1);
        assert_eq!(e.deltas_superseded.len(), 1);
    }

    #[test]
    fn bases_outside_the_live_set_are_kept_and_chains_stop_at_the_bound() {
        // 1 is held only as a delta of 2, which no live version names.
        let live: HashSet<ObjectId> = [id(1)].into_iter().collect();
        let whole = held_whole([2]);
        let e = choose_encodings(&live, &whole, &by_id(&[delta(1, 2, 0)]), |_| true);
        assert!(e.bases.contains(&id(2)));
        assert!(e.whole_superseded.is_empty());
        // A chain longer than the bound: the object at the bound stays whole.
        let n = REMOTE_DEPTH as u8 + 3;
        let live: HashSet<ObjectId> = (1..=n).map(id).collect();
        let whole = held_whole(1..=n);
        let chain: Vec<StoredDelta> = (1..n).map(|k| delta(k, k + 1, 0)).collect();
        let e = choose_encodings(&live, &whole, &by_id(&chain), |_| true);
        assert_eq!(e.whole_superseded.len(), n as usize - 2);
        // A delta whose base is gone keeps the object whole (nothing it has is deleted).
        let e = choose_encodings(
            &[id(1)].into_iter().collect(),
            &held_whole([1]),
            &by_id(&[delta(1, 9, 0)]),
            |_| true,
        );
        assert!(e.whole_superseded.is_empty());
    }
}
