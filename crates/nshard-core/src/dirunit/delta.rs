//! Delta listings: a new version of a directory's listing stored as its base listing's id, the
//! removed paths, the added or changed entries and the new packs, so a version that changes 1 %
//! of 100 000 files stores about 1 % of a listing, not a whole new one.
//!
//! A delta is an ordinary content-addressed object like a full listing (format
//! [`DELTA_FORMAT`], compact JSON, `format` first). Reading one follows its `base` (itself a full
//! listing or another delta) until a full listing, at most [`MAX_CHAIN`] deltas deep, then
//! applies the deltas oldest first. Pack indices of a delta's entries count the base's packs
//! first, then the delta's own; after each step packs no file uses any more are dropped and the
//! rest renumbered in order of first use, which is exactly the packs table a full listing of the
//! same files has. The resolved listing goes through the same validation as a full one (every
//! path, duplicates, case twins, limits), and a delta that removes an absent path, names a pack
//! out of range, or whose chain loops, is too deep or ends in something that is not a listing is
//! refused with a message naming the object.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::listing::{FileEntry, Listing, PackRef, MAX_DIR_FILES};
use crate::error::ManifestError;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::path::RepoPath;

/// The format tag of delta listings.
pub const DELTA_FORMAT: &str = "neuroshard.listing-delta/1";
/// Most deltas between a listing and the full listing it is based on. A commit writes a full
/// listing when its parent's chain is this deep, so reading a version never applies more.
pub const MAX_CHAIN: usize = 16;
/// How every canonical delta starts (serde writes the fields in declaration order).
const DELTA_PREFIX: &str = "{\"format\":\"neuroshard.listing-delta/1\"";

/// One delta listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingDelta {
    /// Always [`DELTA_FORMAT`].
    pub format: String,
    /// The listing (full or delta) this one changes.
    pub base: ObjectId,
    /// Packs added by this version; entries number them after the base's packs.
    pub packs: Vec<PackRef>,
    /// Paths of the base that are gone, in bytewise order.
    pub removed: Vec<String>,
    /// Entries added or changed, in bytewise order of their paths.
    pub files: Vec<FileEntry>,
}

/// Whether `bytes` are a delta listing (rather than a full one).
pub fn is_delta(bytes: &[u8]) -> bool {
    bytes.starts_with(DELTA_PREFIX.as_bytes())
}

impl ListingDelta {
    /// Canonical bytes: compact JSON; the object id is their SHA-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("delta serializes")
    }

    /// Parses a delta and checks what it can alone: format, order, counts. Its paths and packs
    /// are checked in the listing it resolves to.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ListingDelta> {
        let invalid = |reason: String| {
            Error::Manifest(ManifestError::InvalidManifest {
                path: what.into(),
                reason,
            })
        };
        let d: ListingDelta =
            super::listing::parse_bounded(bytes, "a delta listing").map_err(invalid)?;
        if d.format != DELTA_FORMAT {
            return Err(invalid(format!("unknown delta format {:?}", d.format)));
        }
        if d.files.len() > MAX_DIR_FILES || d.removed.len() > MAX_DIR_FILES {
            return Err(invalid(format!(
                "{} changed and {} removed files, over the limit of {MAX_DIR_FILES}",
                d.files.len(),
                d.removed.len()
            )));
        }
        let sorted = |v: &mut dyn Iterator<Item = &str>| -> std::result::Result<(), String> {
            let mut prev: Option<&str> = None;
            for p in v {
                if prev.is_some_and(|q| q.as_bytes() >= p.as_bytes()) {
                    return Err(format!(
                        "path {:?} is repeated or out of order",
                        p.chars().take(200).collect::<String>()
                    ));
                }
                prev = Some(p);
            }
            Ok(())
        };
        sorted(&mut d.removed.iter().map(String::as_str))
            .map_err(|e| invalid(format!("removed {e}")))?;
        sorted(&mut d.files.iter().map(|f| f.path.as_str()))
            .map_err(|e| invalid(format!("changed {e}")))?;
        Ok(d)
    }

    /// The delta that turns `base` (stored as object `base_id`) into `new`. Both are resolved,
    /// compact listings (packs in order of first use).
    pub fn between(base_id: ObjectId, base: &Listing, new: &Listing) -> ListingDelta {
        let mut index: HashMap<ObjectId, u32> = base
            .packs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        let mut packs = Vec::new();
        // `new`'s pack numbers in the delta's numbering (base packs, then the delta's own).
        let renumber: Vec<u32> = new
            .packs
            .iter()
            .map(|p| {
                *index.entry(p.id).or_insert_with(|| {
                    packs.push(*p);
                    (base.packs.len() + packs.len() - 1) as u32
                })
            })
            .collect();
        let mapped = |f: &FileEntry| {
            let mut f = f.clone();
            if let Some((i, off)) = f.pack {
                f.pack = Some((renumber[i as usize], off));
            }
            f
        };
        let (mut removed, mut files) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (base.files.iter().peekable(), new.files.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(o), Some(n)) if o.path == n.path => {
                    let n = mapped(n);
                    if **o != n {
                        files.push(n);
                    }
                    a.next();
                    b.next();
                }
                (Some(o), n) if n.is_none_or(|n| o.path.as_bytes() < n.path.as_bytes()) => {
                    removed.push(o.path.clone());
                    a.next();
                }
                (_, Some(n)) => {
                    files.push(mapped(n));
                    b.next();
                }
                (Some(_), None) => unreachable!("handled above"),
            }
        }
        ListingDelta {
            format: DELTA_FORMAT.into(),
            base: base_id,
            packs,
            removed,
            files,
        }
    }

    /// Applies this delta to `base` (a resolved listing); the result is compact but not yet
    /// validated as a whole.
    fn apply(self, base: Listing, what: &str) -> Result<Listing> {
        let invalid = |reason: String| {
            Error::Manifest(ManifestError::InvalidManifest {
                path: what.into(),
                reason,
            })
        };
        let name = |p: &str| p.chars().take(200).collect::<String>();
        let mut packs = base.packs;
        packs.extend(self.packs);
        let mut out = Vec::with_capacity(base.files.len() + self.files.len());
        let mut removed = self.removed.into_iter().peekable();
        let mut changed = self.files.into_iter().peekable();
        let mut old = base.files.into_iter().peekable();
        loop {
            // The smallest path among the three lists decides the next step.
            let next_old = old.peek().map(|f| f.path.as_bytes());
            let next_rm = removed.peek().map(|p| p.as_bytes());
            let next_ch = changed.peek().map(|f| f.path.as_bytes());
            let Some(min) = [next_old, next_rm, next_ch].into_iter().flatten().min() else {
                break;
            };
            let (o, r, c) = (
                next_old == Some(min),
                next_rm == Some(min),
                next_ch == Some(min),
            );
            if r && c {
                let p = removed.next().expect("peeked");
                return Err(invalid(format!(
                    "file {:?} is both removed and changed",
                    name(&p)
                )));
            }
            if r && !o {
                let p = removed.next().expect("peeked");
                return Err(invalid(format!(
                    "removes {:?}, which its base does not hold",
                    name(&p)
                )));
            }
            if o {
                let f = old.next().expect("peeked");
                if r {
                    removed.next();
                    continue;
                }
                if !c {
                    out.push(f);
                    continue;
                }
            }
            let f = changed.next().expect("peeked");
            if let Some((i, _)) = f.pack {
                if i as usize >= packs.len() {
                    return Err(invalid(format!(
                        "file {:?} names pack {i}, which is not listed",
                        name(&f.path)
                    )));
                }
            }
            out.push(f);
        }
        if out.len() > MAX_DIR_FILES {
            return Err(invalid(format!(
                "{} files, over the limit of {MAX_DIR_FILES}",
                out.len()
            )));
        }
        let mut l = Listing {
            format: base.format,
            packs,
            files: out,
        };
        compact(&mut l);
        Ok(l)
    }
}

/// Drops packs no file uses and numbers the rest in order of first use.
fn compact(l: &mut Listing) {
    let mut map = vec![u32::MAX; l.packs.len()];
    let mut packs = Vec::new();
    for f in &mut l.files {
        if let Some((i, off)) = f.pack {
            let slot = &mut map[i as usize];
            if *slot == u32::MAX {
                *slot = packs.len() as u32;
                packs.push(l.packs[i as usize]);
            }
            f.pack = Some((*slot, off));
        }
    }
    l.packs = packs;
}

/// A listing read through its chain: the resolved listing and the ids of every listing object it
/// took, `head` first and the full listing last.
pub struct Resolved {
    /// The files of the version.
    pub listing: Listing,
    /// The listing objects read, newest first (`chain.len() - 1` deltas).
    pub chain: Vec<ObjectId>,
}

/// Reads listing `head` of the unit at `unit`, following delta bases through `get` (which
/// returns an object's verified bytes).
pub fn resolve(
    head: ObjectId,
    unit: &RepoPath,
    get: &mut dyn FnMut(&ObjectId) -> Result<Vec<u8>>,
) -> Result<Resolved> {
    let mut chain = vec![head];
    let mut deltas: Vec<(ObjectId, ListingDelta)> = Vec::new();
    let mut cur = head;
    let full = loop {
        let bytes = get(&cur)?;
        let what = if cur == head {
            format!("listing {cur}")
        } else {
            format!("listing {cur} (base of listing {head})")
        };
        if !is_delta(&bytes) {
            if deltas.is_empty() {
                // A full listing read directly: validated once, as it is (compacted, so a
                // delta written on it numbers packs as its reader will).
                let mut listing = Listing::parse(&bytes, unit, &what)?;
                compact(&mut listing);
                return Ok(Resolved { listing, chain });
            }
            // A base: its entries are checked in the resolved listing; only what applying
            // the deltas relies on (pack numbers in range) is checked now.
            break Listing::parse_base(&bytes, &what)?;
        }
        let d = ListingDelta::parse(&bytes, &what)?;
        if deltas.len() >= MAX_CHAIN {
            return Err(Error::Manifest(ManifestError::InvalidManifest {
                path: format!("listing {head}").into(),
                reason: format!("its chain of delta listings is longer than {MAX_CHAIN}"),
            }));
        }
        if chain.contains(&d.base) {
            return Err(Error::Manifest(ManifestError::InvalidManifest {
                path: what.into(),
                reason: format!("its base {} is already in its own chain", d.base),
            }));
        }
        let base = d.base;
        deltas.push((cur, d));
        cur = base;
        chain.push(cur);
    };
    let mut applied = full;
    compact(&mut applied);
    while let Some((id, d)) = deltas.pop() {
        applied = d.apply(applied, &format!("listing {id}"))?;
    }
    let listing = Listing::parse_value(applied, unit, &format!("listing {head}"))?;
    Ok(Resolved { listing, chain })
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
