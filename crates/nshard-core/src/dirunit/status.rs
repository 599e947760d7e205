//! Status and diff of a directory unit: which files were added, removed or modified since the
//! committed listing. A file whose stat matches the stat cache is not read.

use super::{walk_unit, Found, Listing};
use crate::error::StoreError;
use crate::error::{Error, Result, VersionOrder};
use crate::fsutil;
use crate::id::ObjectId;
use crate::path::RepoPath;
use crate::repo::statcache::{now_ns, StatCache, StatEntry};
use crate::repo::Repo;

/// How a file differs from the committed listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirChangeKind {
    /// On disk, not in the listing.
    Added,
    /// In the listing, not on disk.
    Removed,
    /// Both, with different content.
    Modified,
}

/// One changed file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DirChange {
    /// Path relative to the unit.
    pub path: String,
    /// What changed.
    pub kind: DirChangeKind,
    /// Size on disk (added, modified) or in the listing (removed).
    pub size: u64,
    /// Size in the listing, for a modified file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// For a large modified file (one stored as chunks on either side), its blocks compared
    /// with the committed ones; only `diff` computes them (it reads the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<crate::manifest::BlockDiff>,
    /// In `status`: the older version of the unit this file holds, or was edited from (or
    /// removed from), where the unit's committed version changed it since. `commit` refuses it
    /// without `--force`, since it would take that change back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_older: Option<ObjectId>,
    /// In `status`: created here (nshard never wrote or committed it) where the unit's version
    /// has another file, which committing would replace. `commit` refuses it without `--force`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub created_over: bool,
}

/// The state of a directory unit, named like a file's state where they mean the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DirState {
    /// Every file matches the committed listing.
    Unchanged,
    /// Files were added, removed or modified since the committed listing.
    Modified,
    /// Never committed.
    New,
    /// The directory is absent or empty while the listing has files.
    NotCheckedOut,
    /// The listing is not in the local store.
    NotPulled,
    /// The files match the committed listing, but the local store lacks some of the packs or
    /// chunks they are kept in (gc'd, or moved aside as corrupt): `nshard pull`, or `nshard
    /// commit`, which stores them again from the files.
    DataMissing,
}

/// What a remote has of one committed version (`nshard status --remote`): its manifest object and
/// the objects it needs (a file's distinct chunks; a unit's listing, packs and chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteCheck {
    /// Objects the version needs (manifest included).
    pub objects: usize,
    /// How many of them the remote lacks.
    pub missing_objects: usize,
}

/// The state of a directory unit (or of a subtree of it).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DirStatus {
    /// The unit's directory.
    pub path: RepoPath,
    /// The subtree looked at, relative to the unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The version compared against (the committed one for `status`), if any.
    pub version: Option<ObjectId>,
    /// The other side when it is a stored version too (`diff --to`); `None`: the work tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<ObjectId>,
    /// How the files compare with the committed listing.
    pub state: DirState,
    /// Files in the committed listing (under `sub`).
    pub files: usize,
    /// Of those, files that are not in the work tree and that nshard never wrote or committed
    /// here (a part of the unit not checked out, e.g. after `nshard checkout data/val/`): not a
    /// change, and a commit keeps them as they are. A file nshard wrote or committed here that is
    /// gone is `removed`.
    pub not_checked_out: usize,
    /// The differences, in path order.
    pub changes: Vec<DirChange>,
    /// With [`DirState::DataMissing`]: how many packs and chunks the local store lacks.
    #[serde(skip_serializing_if = "is_zero")]
    pub missing_objects: usize,
    /// What a remote has of the committed version (`nshard status --remote`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteCheck>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A file of a unit that holds, or was edited from, an older version of the unit than its
/// manifest names, where that version changed the file since (see [`Repo::files_from_older`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FromOlder {
    /// Path relative to the unit.
    pub rel: String,
    /// The version of the unit the file last held.
    pub version: ObjectId,
    /// Edited since (or removed); `false`: it holds that version's bytes as they were.
    pub edited: bool,
    /// `Older`, or `Unrelated` when the local history cannot tell.
    pub order: VersionOrder,
    /// Created here (nshard never wrote or committed it) where `p` has another file: `version`
    /// is then `p`'s.
    pub created: bool,
}

/// The ancestors of a unit version walked so far (see [`Repo::never_here`]).
pub(super) struct AncestorWalk {
    seen: std::collections::HashSet<ObjectId>,
    next: Option<ObjectId>,
}

/// Where a version of a unit stands against the one its manifest names (see
/// [`Repo::place_version`]).
#[derive(Clone)]
enum Place {
    Newer,
    /// On another line of history; the file hashes of the version where the two parted.
    Apart(std::rc::Rc<std::collections::HashMap<String, ObjectId>>),
    Unknown,
}

/// How far back the walks of a unit's history go when commit and status check edits.
const ORDER_WALK: usize = 100_000;

/// SHA-256 of a found file's content.
pub(super) fn hash_found(f: &Found) -> Result<ObjectId> {
    fsutil::hash_file(&f.abs)
}

impl Repo {
    /// Of `files` (paths relative to `unit`, each with its file or `None` when it is not in the
    /// work tree), those whose content would take back a change the unit's version `p` (with
    /// listing `l`) made: the stat cache records the version of the unit each file last held,
    /// and `p` holds other bytes for that file than it held then. Such a file is counted unless
    /// that version is proven newer than `p` (after `git checkout` of an older commit it holds
    /// `p`'s changes): one that holds the old bytes as they were always, one edited from them
    /// when the version is in `p`'s history or that history is not all here (a colleague's
    /// versions in between not pulled). A file edited into `p`'s own content changes nothing.
    pub(crate) fn files_from_older<'a>(
        &self,
        unit: &RepoPath,
        p: &super::DirVersionBytes,
        l: &Listing,
        files: impl Iterator<Item = (&'a str, Option<&'a Found>)>,
        cache: &crate::repo::statcache::StatCache,
    ) -> Result<Vec<FromOlder>> {
        use std::collections::{HashMap, HashSet};
        let committed: HashMap<&str, &ObjectId> = l
            .files
            .iter()
            .map(|f| (f.path.as_str(), &f.sha256))
            .collect();
        // `p`'s ancestors as far as the local store has them, nearest first; read once, and
        // only when a file needs them.
        let mut history: Option<(Vec<ObjectId>, HashSet<ObjectId>)> = None;
        let ancestors = |history: &mut Option<(Vec<ObjectId>, HashSet<ObjectId>)>| {
            if history.is_none() {
                let order = self.unit_ancestors(p.manifest.version.parent);
                let set = order.iter().copied().collect();
                *history = Some((order, set));
            }
        };
        let mut placed: HashMap<ObjectId, Place> = HashMap::new();
        // The paths of the version of the unit this clone last held (the nearest of `p`'s
        // ancestors its files' records name), for files created here; `None` inside: no record
        // places it.
        let mut here_before: Option<Option<HashSet<String>>> = None;
        let mut absent_memo = None;
        let mut out = Vec::new();
        for (rel, f) in files {
            let full = format!("{}/{rel}", unit.as_str());
            let Some(c) = cache.get(&full) else {
                // Never written or committed here, where `p` has a file that the version this
                // clone last held did not have (a colleague added one at the same path): not
                // based on `p`'s file, which committing would replace. Without a record that
                // places this clone (a fresh clone, a removed cache) nothing tells.
                let (Some(f), Some(theirs)) = (f, committed.get(rel)) else {
                    continue;
                };
                let before = here_before.get_or_insert_with(|| {
                    ancestors(&mut history);
                    let (order, _) = history.as_ref()?;
                    let held: HashSet<ObjectId> = l
                        .files
                        .iter()
                        .filter_map(|e| cache.get(&format!("{}/{}", unit.as_str(), e.path)))
                        .map(|e| e.version)
                        .collect();
                    let v = order.iter().find(|v| held.contains(v))?;
                    let listing = self
                        .load_dir_version(v)
                        .and_then(|m| self.load_listing(&m))
                        .ok()?;
                    Some(listing.files.into_iter().map(|e| e.path).collect())
                });
                let added_since = before.as_ref().is_some_and(|paths| !paths.contains(rel));
                if added_since && hash_found(f)? != **theirs {
                    out.push(FromOlder {
                        rel: rel.to_string(),
                        version: p.version,
                        edited: true,
                        order: VersionOrder::Unrelated,
                        created: true,
                    });
                }
                continue;
            };
            // Absent here and from an older version it last saw: not checked out since, and
            // commit keeps it as committed.
            if f.is_none() && self.never_here(Some(c), p.version, &mut absent_memo) {
                continue;
            }
            // Unchanged by `p` since the version the file last held (or was absent from, see
            // `StatEntry::ABSENT`): nothing to undo.
            let held = (c.sha256 != StatEntry::ABSENT).then_some(&c.sha256);
            if c.version == p.version || committed.get(rel).copied() == held {
                continue;
            }
            let holds = match f {
                None => None,
                Some(f) if cache.fresh(&full, &f.md).is_some() => Some(c.sha256),
                Some(f) => Some(hash_found(f)?),
            };
            if holds.is_some() && holds.as_ref() == committed.get(rel).copied() {
                continue;
            }
            ancestors(&mut history);
            let Some((_, older)) = history.as_ref() else {
                continue;
            };
            let order = if older.contains(&c.version) {
                VersionOrder::Older
            } else {
                match self.place_version(&c.version, p, older, &mut placed) {
                    Place::Newer => continue,
                    // Another line of history (a merge): only a file `p`'s line changed since
                    // the two parted is at stake; one only this line changed is its own change.
                    Place::Apart(base) if base.get(rel) == committed.get(rel).copied() => continue,
                    Place::Apart(_) | Place::Unknown => VersionOrder::Unrelated,
                }
            };
            let edited = holds != Some(c.sha256);
            out.push(FromOlder {
                rel: rel.to_string(),
                version: c.version,
                edited,
                order,
                created: false,
            });
        }
        Ok(out)
    }

    /// Where version `v` of a unit stands against `p`, which is not `v` and whose earlier
    /// versions (as far as the local store has them) are `p_older`: newer (`p` is among its
    /// ancestors), apart (on another line: its nearest ancestor that is one of `p`'s, with that
    /// version's file hashes), or unknown (the local store does not have enough of either
    /// history). Every version a walk passes shares its answer: `placed` keeps them, so a walk
    /// stops where an earlier one went, and each base listing is read once.
    fn place_version(
        &self,
        v: &ObjectId,
        p: &super::DirVersionBytes,
        p_older: &std::collections::HashSet<ObjectId>,
        placed: &mut std::collections::HashMap<ObjectId, Place>,
    ) -> Place {
        let mut walked = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(*v);
        let place = loop {
            let Some(id) = next else {
                break Place::Unknown;
            };
            if let Some(known) = placed.get(&id) {
                break known.clone();
            }
            if id == p.version {
                break Place::Newer;
            }
            if p_older.contains(&id) {
                let files = self
                    .load_dir_version(&id)
                    .and_then(|m| self.load_listing(&m))
                    .map(|l| {
                        l.files
                            .into_iter()
                            .map(|f| (f.path, f.sha256))
                            .collect::<std::collections::HashMap<String, ObjectId>>()
                    });
                break match files {
                    Ok(files) => Place::Apart(std::rc::Rc::new(files)),
                    Err(_) => Place::Unknown,
                };
            }
            if walked.len() >= ORDER_WALK || !seen.insert(id) {
                break Place::Unknown;
            }
            walked.push(id);
            next = match self.load_dir_version(&id) {
                Ok(m) => m.version.parent,
                Err(_) => None,
            };
        };
        for id in walked {
            placed.insert(id, place.clone());
        }
        place
    }

    /// The unit versions from `first` down its parents, nearest first, as far as the local
    /// store has them (at most [`ORDER_WALK`]; a manifest that is missing or unreadable, or a
    /// cycle, ends the walk).
    fn unit_ancestors(&self, first: Option<ObjectId>) -> Vec<ObjectId> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut next = first;
        while let Some(v) = next {
            if out.len() >= ORDER_WALK || !seen.insert(v) {
                break;
            }
            out.push(v);
            next = match self.load_dir_version(&v) {
                Ok(m) => m.version.parent,
                Err(_) => None,
            };
        }
        out
    }

    /// Whether a file that `base` (a version of a unit) lists and that is not in the work tree
    /// was never here at `base`, with `entry` its stat-cache record: nshard never wrote it, or
    /// recorded it absent from a version that is one of `base`'s ancestors (`base` added it
    /// since, and has not been checked out). Otherwise it was removed here; so is a file a newer
    /// version removed, or one the history cannot place. `walk` keeps `base`'s ancestors between
    /// calls and goes down only as far as a call needs (at most [`ORDER_WALK`] versions).
    pub(super) fn never_here(
        &self,
        entry: Option<&StatEntry>,
        base: ObjectId,
        walk: &mut Option<AncestorWalk>,
    ) -> bool {
        match entry {
            None => true,
            Some(c) if c.sha256 == StatEntry::ABSENT => {
                self.added_since_absent(base, c.version, walk)
            }
            Some(_) => false,
        }
    }

    /// Whether `absent_at` is one of `base`'s ancestors (see [`Repo::never_here`]).
    fn added_since_absent(
        &self,
        base: ObjectId,
        absent_at: ObjectId,
        walk: &mut Option<AncestorWalk>,
    ) -> bool {
        let w = walk.get_or_insert_with(|| AncestorWalk {
            seen: std::collections::HashSet::new(),
            next: self
                .load_dir_version(&base)
                .ok()
                .and_then(|m| m.version.parent),
        });
        while !w.seen.contains(&absent_at) {
            let Some(v) = w.next.take() else {
                return false;
            };
            if w.seen.len() >= ORDER_WALK || !w.seen.insert(v) {
                return false;
            }
            w.next = self
                .load_dir_version(&v)
                .ok()
                .and_then(|m| m.version.parent);
        }
        true
    }

    /// Compares the unit's files (under `sub`) with its committed listing. Files whose stat
    /// changed are hashed; the stat cache is refreshed for those that turn out unchanged.
    pub fn dir_status(&self, unit: &RepoPath, sub: Option<&str>) -> Result<DirStatus> {
        let d = self.read_dir_manifest(unit)?;
        let (mut st, listing, found, cache) = self.dir_status_read(
            unit,
            sub,
            d.as_ref().map(|d| (d.version, d.manifest.clone())),
        )?;
        let candidates =
            st.changes.iter().any(
                |c| match cache.get(&format!("{}/{}", unit.as_str(), c.path)) {
                    Some(e) => d.as_ref().is_some_and(|d| e.version != d.version),
                    None => c.kind == DirChangeKind::Modified,
                },
            );
        if let (Some(d), DirState::Modified, true, Some(l)) = (&d, st.state, candidates, &listing) {
            // Which of the changes would take back a newer version's changes (the listing and
            // the walk of the comparison serve again).
            let by_rel: std::collections::HashMap<&str, &Found> =
                found.iter().map(|f| (f.rel.as_str(), f)).collect();
            let changed = st
                .changes
                .iter()
                .map(|c| (c.path.as_str(), by_rel.get(c.path.as_str()).copied()));
            let older = self.files_from_older(unit, d, l, changed, &cache)?;
            let older: std::collections::HashMap<&str, &FromOlder> =
                older.iter().map(|o| (o.rel.as_str(), o)).collect();
            for c in &mut st.changes {
                if let Some(o) = older.get(c.path.as_str()) {
                    c.created_over = o.created;
                    c.from_older = (!o.created).then_some(o.version);
                }
            }
        }
        Ok(st)
    }

    /// Compares the unit's files (under `sub`) with the listing of `base` (a version and its
    /// manifest; `None`: never committed).
    pub(super) fn dir_status_against(
        &self,
        unit: &RepoPath,
        sub: Option<&str>,
        base: Option<(ObjectId, super::DirManifest)>,
    ) -> Result<DirStatus> {
        Ok(self.dir_status_read(unit, sub, base)?.0)
    }

    /// [`Repo::dir_status_against`], with what it read: the listing of `base` (when it has
    /// one and it is here), the unit's files under `sub` and the stat cache.
    fn dir_status_read(
        &self,
        unit: &RepoPath,
        sub: Option<&str>,
        base: Option<(ObjectId, super::DirManifest)>,
    ) -> Result<(DirStatus, Option<Listing>, Vec<Found>, StatCache)> {
        let d = base;
        let mut st = DirStatus {
            path: unit.clone(),
            sub: sub.map(String::from),
            version: d.as_ref().map(|d| d.0),
            to: None,
            state: DirState::Unchanged,
            files: 0,
            not_checked_out: 0,
            changes: Vec::new(),
            missing_objects: 0,
            remote: None,
        };
        let listing = match &d {
            None => None,
            Some(d) => match self.load_listing(&d.1) {
                Ok(l) => Some(l),
                Err(Error::Store(StoreError::ObjectMissing(_))) => {
                    st.state = DirState::NotPulled;
                    return Ok((st, None, Vec::new(), self.stat_cache()));
                }
                Err(e) => return Err(e),
            },
        };
        let in_sub = |rel: &str| super::listing::in_subtree(rel, sub);
        let found: Vec<Found> = walk_unit(self.root(), unit)?
            .into_iter()
            .filter(|f| in_sub(&f.rel))
            .collect();
        let empty = Listing {
            format: String::new(),
            packs: Vec::new(),
            files: Vec::new(),
        };
        let l = listing.as_ref().unwrap_or(&empty);
        let committed: Vec<_> = l.select(sub).collect();
        st.files = committed.len();
        if found.is_empty() && !committed.is_empty() {
            st.state = DirState::NotCheckedOut;
            return Ok((st, listing, found, self.stat_cache()));
        }
        let mut cache = self.stat_cache();
        // Both lists are in bytewise path order: one merge finds what was added, removed or
        // may have changed, without a map of either.
        let mut key = String::new();
        // Committed files present and unchanged: their packs and chunks must be in the store.
        let mut present: Vec<&super::FileEntry> = Vec::new();
        let mut ancestors = None;
        let (mut c, mut f) = (committed.iter().peekable(), found.iter().peekable());
        loop {
            let order = match (c.peek(), f.peek()) {
                (None, None) => break,
                (Some(e), Some(g)) => e.path.as_bytes().cmp(g.rel.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let e = c.next().expect("peeked");
                    key.clear();
                    key.push_str(unit.as_str());
                    key.push('/');
                    key.push_str(&e.path);
                    // Never written here, or recorded as absent from an older version (this one
                    // added it since and has not been checked out).
                    let entry = cache.get(&key);
                    let unseen = match st.version {
                        Some(v) => self.never_here(entry, v, &mut ancestors),
                        None => entry.is_none(),
                    };
                    if unseen {
                        st.not_checked_out += 1;
                        continue;
                    }
                    st.changes.push(DirChange {
                        path: e.path.clone(),
                        kind: DirChangeKind::Removed,
                        size: e.size,
                        old_size: None,
                        blocks: None,
                        from_older: None,
                        created_over: false,
                    });
                }
                std::cmp::Ordering::Greater => {
                    let g = f.next().expect("peeked");
                    st.changes.push(DirChange {
                        path: g.rel.clone(),
                        kind: DirChangeKind::Added,
                        size: g.md.len(),
                        old_size: None,
                        blocks: None,
                        from_older: None,
                        created_over: false,
                    });
                }
                std::cmp::Ordering::Equal => {
                    let (e, g) = (c.next().expect("peeked"), f.next().expect("peeked"));
                    key.clear();
                    key.push_str(unit.as_str());
                    key.push('/');
                    key.push_str(&e.path);
                    let same = match cache.fresh(&key, &g.md) {
                        Some(c) => c.sha256 == e.sha256,
                        None if g.md.len() != e.size => false,
                        None => {
                            let observed = now_ns();
                            let sha = hash_found(g)?;
                            if let (Some(v), true) = (st.version, sha == e.sha256) {
                                // The same bytes as recorded keep the version recorded: the
                                // version the clone last held, which commit's check reads.
                                let v = cache
                                    .get(&key)
                                    .filter(|c| c.sha256 == sha)
                                    .map_or(v, |c| c.version);
                                cache.set(&key, StatEntry::new(&g.md, sha, v, observed));
                            }
                            sha == e.sha256
                        }
                    };
                    if !same || e.exec != super::is_exec(&g.md) {
                        st.changes.push(DirChange {
                            path: e.path.clone(),
                            kind: DirChangeKind::Modified,
                            size: g.md.len(),
                            old_size: Some(e.size),
                            blocks: None,
                            from_older: None,
                            created_over: false,
                        });
                    } else {
                        present.push(e);
                    }
                }
            }
        }
        if d.is_none() {
            st.state = DirState::New;
        } else if !st.changes.is_empty() {
            st.state = DirState::Modified;
        } else {
            // Only the files here: a part never checked out may never have been pulled.
            let store = self.store();
            st.missing_objects = l
                .objects_of(present)
                .iter()
                .filter(|(id, _)| !store.has(id))
                .count();
            if st.missing_objects > 0 {
                st.state = DirState::DataMissing;
            }
        }
        // The cache is an optimisation: failing to save it must not fail status.
        let _ = cache.save();
        Ok((st, listing, found, cache))
    }
}
