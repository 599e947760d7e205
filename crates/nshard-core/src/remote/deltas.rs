//! Delta encodings on remotes.
//!
//! A remote keeps an object's first upload under its id for ever (objects are immutable: a cache
//! or a CDN may hold them). Another encoding of the same bytes, a delta against another object,
//! gets a stored name of its own, `deltas/<id>.<base>` ([`DeltaName`]): written once, never
//! replaced, removed only by `nshard remote gc`. A store holds a delta only while it holds its
//! base (whole, or as a delta of its own), so every chain on a remote ends in a whole object.
//!
//! Readers resolve an object the store holds only as deltas ([`resolve`]): down the chain by
//! names (at most [`MAX_CHAIN`] deltas, no cycle), then up, downloading one delta at a time and
//! checking each level's hash, so a bad link is named as itself.

use std::fmt;

use crate::buffers;
use crate::codec::{self, Codec, DataHint, Encoder, MAX_CHAIN};
use crate::error::{Corruption, Error, Result, StoreError};
use crate::id::ObjectId;
use crate::store::check_hash;

use super::Store;

/// The stored name of a delta encoding: object `id` encoded against object `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeltaName {
    /// The object the delta decodes to.
    pub id: ObjectId,
    /// The object it is decoded against.
    pub base: ObjectId,
}

impl DeltaName {
    /// `<id>.<base>` in hex: the file or key name under `deltas/`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.id.to_hex(), self.base.to_hex())
    }

    /// The name in a key written by [`DeltaName::key`]; `None` for anything else.
    pub fn parse(key: &str) -> Option<DeltaName> {
        let (id, base) = key.split_once('.')?;
        let name = DeltaName {
            id: ObjectId::parse(id).ok()?,
            base: ObjectId::parse(base).ok()?,
        };
        (name.id != name.base).then_some(name)
    }
}

impl fmt::Display for DeltaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (a delta against {})", self.id, self.base)
    }
}

/// A delta encoding as a store lists it for gc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredDelta {
    /// Its name.
    pub name: DeltaName,
    /// Its stored size.
    pub size: u64,
    /// When it was stored (seconds since the epoch; 0 when the store cannot say).
    pub modified: u64,
}

/// The error for a store that keeps no delta encodings.
pub(crate) fn unsupported(store: &str) -> Error {
    Error::Remote(crate::error::RemoteError::Failed {
        remote: store.to_string(),
        kind: crate::error::RemoteFailure::Refused,
        reason: "this store keeps no delta encodings".into(),
    })
}

/// Checks the header of `enc`, uploaded as `name`: a delta object (format 3) naming `name.base`,
/// of at most `max_raw_len` bytes. Returns its raw length.
pub fn check_delta_header(name: &DeltaName, enc: &[u8], max_raw_len: u64) -> Result<u64> {
    checked_header(name, enc, max_raw_len).map(|(raw_len, _)| raw_len)
}

/// [`check_delta_header`], with the element width the delta names.
fn checked_header(name: &DeltaName, enc: &[u8], max_raw_len: u64) -> Result<(u64, u8)> {
    let h = codec::parse_header(&name.id, enc)?;
    let width = match h.codec {
        Codec::Delta { base, width, .. } if base == name.base => width,
        Codec::Delta { base, .. } => {
            return Err(Error::corrupt(
                name.id,
                Corruption::BadChain,
                format!(
                    "was uploaded as a delta against {}, but is one against {base}",
                    name.base
                ),
            ))
        }
        _ => {
            return Err(Error::corrupt(
                name.id,
                Corruption::BadChain,
                "was uploaded as a delta but is a standalone object",
            ))
        }
    };
    if name.id == name.base {
        return Err(Error::corrupt(
            name.id,
            Corruption::BadChain,
            "is a delta against itself",
        ));
    }
    codec::check_raw_len(&name.id, &h, max_raw_len)?;
    Ok((h.raw_len, width))
}

/// Verifies `enc`, uploaded to `store` as `name`: its header ([`check_delta_header`]), then its
/// bytes decoded against the base as `store` holds it ([`resolve`]) must hash to `name.id`. A base
/// the store lacks is [`StoreError::BaseMissing`].
pub async fn verify_delta(store: &dyn Store, name: &DeltaName, enc: &[u8]) -> Result<()> {
    let raw_len = check_delta_header(name, enc, codec::MAX_OBJECT_SIZE)?;
    let mut raw = match resolve(store, &name.base, raw_len, &[name.id]).await {
        Err(Error::Store(StoreError::ObjectMissing(b))) if b == name.base => {
            return Err(Error::Store(StoreError::BaseMissing {
                id: name.id,
                base: name.base,
            }))
        }
        r => r?,
    };
    let id = name.id;
    let enc = enc.to_vec();
    crate::blocking::blocking(store.display_url(), move || {
        let _turn = crate::blocking::decode_slot();
        codec::with_pooled_scratch(|scratch| {
            codec::decode_against_in_place(&id, &enc, &mut raw, codec::MAX_OBJECT_SIZE, scratch)
        })?;
        let checked = check_hash(&id, &raw);
        buffers::give(raw);
        checked
    })
    .await?
}

/// Whether `store` holds `id`, whole or as a delta (by names only: nothing is downloaded).
pub async fn holds(store: &dyn Store, id: &ObjectId) -> Result<bool> {
    if store.missing(&[*id]).await?.is_empty() {
        return Ok(true);
    }
    Ok(store.stores_deltas() && !store.deltas_of(&[*id]).await?.is_empty())
}

/// The raw bytes of `id` as `store` holds it, verified: whole, or through a chain of its delta
/// encodings (at most [`MAX_CHAIN`] deltas, none of them `id` itself or one of `above`, the
/// objects a caller builds on this one). [`StoreError::ObjectMissing`] when the store holds `id`
/// neither way; a chain that breaks below `id` names the missing base ([`StoreError::BaseMissing`]).
pub async fn resolve(
    store: &dyn Store,
    id: &ObjectId,
    max_raw_len: u64,
    above: &[ObjectId],
) -> Result<Vec<u8>> {
    Ok(resolve_chain(store, id, max_raw_len, above).await?.0)
}

/// [`resolve`], with the element width the delta encoding `id` names (`None` when the store
/// holds `id` whole).
async fn resolve_chain(
    store: &dyn Store,
    id: &ObjectId,
    max_raw_len: u64,
    above: &[ObjectId],
) -> Result<(Vec<u8>, Option<u8>)> {
    let (chain, bottom) = find_chain(store, id, above).await?;
    let enc = store.get(&bottom).await?;
    let url = store.display_url();
    let mut raw = crate::blocking::blocking(url.clone(), move || {
        let _turn = crate::blocking::decode_slot();
        let mut raw = buffers::take(codec::parse_header(&bottom, &enc)?.raw_len as usize);
        codec::with_pooled_scratch(|s| {
            codec::decode_into(&bottom, &enc, max_raw_len, &mut raw, s)
        })?;
        buffers::give(enc);
        check_hash(&bottom, &raw)?;
        Ok::<_, Error>(raw)
    })
    .await??;
    let mut width = None;
    for d in chain.iter().rev() {
        let enc = store.get_delta(d).await?;
        let d = *d;
        let (r, back) = crate::blocking::blocking(url.clone(), move || {
            let _turn = crate::blocking::decode_slot();
            let r = checked_header(&d, &enc, max_raw_len).and_then(|(_, width)| {
                codec::with_pooled_scratch(|scratch| {
                    codec::decode_against_in_place(&d.id, &enc, &mut raw, max_raw_len, scratch)
                })?;
                check_hash(&d.id, &raw)?;
                Ok(Some(width))
            });
            buffers::give(enc);
            (r, raw)
        })
        .await?;
        width = r?;
        raw = back;
    }
    Ok((raw, width))
}

/// Whether `store` holds `id` whole or through a chain of its deltas that a reader takes (the
/// search [`resolve`] makes, by names: nothing is downloaded). A remote's failure is an error;
/// an object held neither way, or through no chain that resolves, is `false`.
pub async fn resolves(store: &dyn Store, id: &ObjectId) -> Result<bool> {
    match find_chain(store, id, &[]).await {
        Ok(_) => Ok(true),
        Err(e @ Error::Remote(_)) => Err(e),
        Err(_) => Ok(false),
    }
}

/// The most objects [`find_chain`] looks up (a `missing` and a `deltas_of` each): the longest
/// chain, and 16 dead ends beside it.
const MAX_LOOKUPS: usize = MAX_CHAIN + 16;

/// The chain `store` holds `id` through, by names: `chain[k]` is built on `chain[k + 1]`, the
/// last on `bottom`, held whole (an empty chain when `id` is held whole). Where an object has
/// several deltas, those whose base is held whole are tried first, and the first whose chain
/// reaches a whole object within [`MAX_CHAIN`] deltas, with no cycle and none of `above`, is
/// taken: a delta whose base is gone (a remote damaged by hand, or by an older gc) is passed
/// over for another.
async fn find_chain(
    store: &dyn Store,
    id: &ObjectId,
    above: &[ObjectId],
) -> Result<(Vec<DeltaName>, ObjectId)> {
    // The path tried so far: each object with its delta options and the next one to try.
    let mut path: Vec<(ObjectId, Vec<DeltaName>, usize)> = Vec::new();
    let mut cur = *id;
    let mut lookups = 0;
    // Why the first dead end was one, for the error when no chain reaches a whole object.
    let mut dead_end: Option<Error> = None;
    // Objects held neither whole nor as a delta: a dead end by whatever path.
    let mut absent: Vec<ObjectId> = Vec::new();
    loop {
        if !absent.contains(&cur) && store.missing(&[cur]).await?.is_empty() {
            let chain = path.iter().map(|(_, opts, next)| opts[next - 1]).collect();
            return Ok((chain, cur));
        }
        lookups += 1;
        let on_path = |b: &ObjectId| b == id || above.contains(b) || path.iter().any(|p| p.0 == *b);
        let listed = if absent.contains(&cur) || !store.stores_deltas() {
            Vec::new()
        } else {
            store.deltas_of(&[cur]).await?
        };
        if !listed.iter().any(|d| d.id == cur) {
            absent.push(cur);
        }
        let mut options: Vec<DeltaName> = listed
            .into_iter()
            .filter(|d| d.id == cur && !on_path(&d.base))
            .collect();
        if options.len() > 1 {
            let bases: Vec<ObjectId> = options.iter().map(|d| d.base).collect();
            let lacking = store.missing(&bases).await?;
            options.sort_by_key(|d| lacking.contains(&d.base));
        }
        if options.is_empty() {
            dead_end.get_or_insert_with(|| match path.last() {
                None => Error::Store(StoreError::ObjectMissing(cur)),
                Some((below, _, _)) => Error::Store(StoreError::BaseMissing {
                    id: *below,
                    base: cur,
                }),
            });
        } else if path.len() >= MAX_CHAIN {
            dead_end.get_or_insert_with(|| {
                Error::corrupt(
                    *id,
                    Corruption::BadChain,
                    format!("its chain of deltas on the remote is longer than {MAX_CHAIN} deltas"),
                )
            });
        } else {
            path.push((cur, options, 0));
        }
        // The next option: of the deepest object that has one left.
        loop {
            let Some((_, opts, next)) = path.last_mut() else {
                return Err(dead_end.unwrap_or(Error::Store(StoreError::ObjectMissing(*id))));
            };
            if lookups >= MAX_LOOKUPS {
                return Err(dead_end.unwrap_or_else(|| {
                    Error::corrupt(
                        *id,
                        Corruption::BadChain,
                        "its deltas on the remote branch too much to follow",
                    )
                }));
            }
            if *next < opts.len() {
                cur = opts[*next].base;
                *next += 1;
                break;
            }
            path.pop();
        }
    }
}

/// `id` encoded on its own from what `store` holds of it only as deltas, for a reader of whole
/// objects (a client from before remote deltas): resolved and verified as [`resolve`] does, then
/// encoded as a float object where `float_objects`, else in format 1 (the floats' byte planes,
/// zstd); the stored object where `store` holds it whole after all. [`StoreError::ObjectMissing`]
/// when `store` holds it neither way.
pub async fn resolve_standalone(
    store: &dyn Store,
    id: &ObjectId,
    float_objects: bool,
) -> Result<Vec<u8>> {
    let (raw, width) = resolve_chain(store, id, codec::MAX_OBJECT_SIZE, &[]).await?;
    // Held whole after all (uploaded whole since the caller looked): served as it is stored,
    // as every whole object is.
    let Some(width) = width else {
        return store.get(id).await;
    };
    let hint = DataHint::Float(width);
    crate::blocking::blocking(store.display_url(), move || {
        let _turn = crate::blocking::decode_slot();
        let mut e = Encoder::new();
        if float_objects {
            e.encode(&raw, hint)
        } else {
            e.encode_format1(&raw, hint)
        }
    })
    .await
}
