//! Committing a directory unit: only files whose stat changed are read; small ones go into new
//! packs (unchanged files keep pointing into the packs they are already in), large ones through
//! the `ingest` pipeline; the listing, then the manifest object, then the work-tree manifest are
//! written last, so a crash leaves the old version or the new one.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use super::pack::PackWriter;
use super::{
    is_exec, remove_temps, walk_unit_with, DirManifest, FileEntry, Listing, ListingDelta, PackRef,
    Resolved, LISTING_FORMAT, MAX_CHAIN, PACK_FILE_MAX,
};
use crate::codec::{DataHint, Encoder};
use crate::error::{Error, Result};
use crate::error::{RepoError, StoreError};
use crate::formats::plan::Params;
use crate::fsutil;
use crate::id::ObjectId;
use crate::ingest;
use crate::manifest::{Manifest, VersionInfo};
use crate::outcome::{CommitOutcome, DirCommit};
use crate::path::RepoPath;
use crate::repo::statcache::{now_ns, StatCache, StatEntry, StatKey};
use crate::repo::Repo;

/// Where one file's bytes go while the listing is built.
enum Loc {
    Empty,
    /// An existing pack.
    Pack(PackRef, u64),
    /// A pack being written: (sequence number, offset).
    NewPack(usize, u64),
    Chunks(Vec<(ObjectId, u64)>),
}

/// The delta listing to store for `new` instead of its full listing (`full_len` bytes), with its
/// id: when the parent's listing was read (`prev`), its chain leaves room for one more delta, and
/// the delta is at most half the size of the full listing (otherwise reading it would cost more
/// than it saves).
fn listing_object(
    parent: Option<&super::DirVersionBytes>,
    prev: Option<&Resolved>,
    new: &Listing,
    full_len: usize,
) -> Option<(Vec<u8>, ObjectId)> {
    let (p, r) = (parent?, prev?);
    if r.chain.len() > MAX_CHAIN {
        return None;
    }
    let delta = ListingDelta::between(p.manifest.listing, &r.listing, new).to_bytes();
    (delta.len() * 2 <= full_len).then(|| {
        let id = ObjectId::of(&delta);
        (delta, id)
    })
}

impl Repo {
    /// Commits the directory unit `unit`, or only the paths in `only` (relative to the unit; a
    /// file or a directory): every other file keeps its committed version, as `git commit PATH`
    /// does; `force` commits files that would take back a newer version's changes (see
    /// [`Repo::files_from_older`]). The caller holds the repository lock and saves `cache`.
    pub(crate) fn commit_dir(
        &self,
        unit: &RepoPath,
        only: Option<&[String]>,
        message: &str,
        cache: &mut StatCache,
        force: bool,
        progress: &dyn crate::progress::Progress,
    ) -> Result<CommitOutcome> {
        let parent = self.read_dir_manifest(unit)?;
        // `None` with a parent: the committed listing is not here (not pulled).
        let prev_chain: Option<Resolved> = match &parent {
            Some(p) => match self.load_listing_chain(&p.manifest) {
                Ok(r) => Some(r),
                Err(Error::Store(StoreError::ObjectMissing(_))) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let prev: Option<&Listing> = prev_chain.as_ref().map(|r| &r.listing);
        // Whether a path of the unit is one the commit records (all of them without `only`).
        // Looked up by each ancestor of a path, so that many paths named stay linear.
        let named: Option<HashSet<&str>> =
            only.map(|subs| subs.iter().map(String::as_str).collect());
        let inside = |rel: &str| {
            named.as_ref().is_none_or(|set| {
                set.contains(rel) || rel.match_indices('/').any(|(i, _)| set.contains(&rel[..i]))
            })
        };
        let mut temps = Vec::new();
        let found = walk_unit_with(self.root(), unit, &mut temps)?;
        remove_temps(&temps);
        // Refuse what readers would refuse (or macOS would merge) before anything is written.
        super::listing::check_names(found.iter().map(|f| f.rel.as_str())).map_err(|reason| {
            Error::Repo(RepoError::UnitNames {
                unit: unit.to_string(),
                reason,
            })
        })?;
        if let (Some(p), None) = (&parent, &prev_chain) {
            // Not pulled: nothing here to commit is the unit as committed; anything else cannot
            // be committed, since which files the committed version holds cannot be known (a
            // new version would drop every file not in the work tree, and colleagues' hooks
            // would apply that as a deletion).
            if found.is_empty() {
                return Ok(CommitOutcome::Unchanged {
                    version: p.version,
                    restored: 0,
                });
            }
            let what = match only {
                Some(subs) => format!(
                    "{unit}/{} is part of {unit}/, whose",
                    crate::portable::escape(&subs.join(", "))
                ),
                None => format!("{unit}/: its"),
            };
            return Err(Error::Repo(RepoError::InUnit {
                path: what,
                reason: format!(
                    "committed listing is not in the local store, so a new version could not \
                     keep the files it does not see: `nshard pull {unit}/` fetches the listing \
                     (and the data), then commit"
                ),
            }));
        }
        if found.is_empty() && parent.is_none() {
            return Err(Error::Repo(RepoError::NotTracked {
                path: unit.as_str().into(),
                reason: crate::error::Untracked::EmptyDirectory,
            }));
        }
        let prev_by_path: HashMap<&str, &FileEntry> = prev
            .iter()
            .flat_map(|l| l.files.iter().map(|f| (f.path.as_str(), f)))
            .collect();
        // A path named that matches no file, here or committed (a typo), is an error, as for
        // `git commit PATH`: committing nothing in silence would look like success.
        let known: std::collections::BTreeSet<&str> = found
            .iter()
            .map(|f| f.rel.as_str())
            .chain(prev_by_path.keys().copied())
            .collect();
        for sub in only.into_iter().flatten() {
            // `sub` itself, or the first path after `sub/` inside it.
            let dir = format!("{sub}/");
            let inner = known
                .range::<&str, _>((
                    std::ops::Bound::Included(dir.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .is_some_and(|p| p.starts_with(&dir));
            if !known.contains(sub.as_str()) && !inner {
                return Err(Error::Repo(RepoError::InUnit {
                    path: format!("{unit}/{}", crate::portable::escape(sub)),
                    reason: format!(
                        "matches no file of {unit}/, in the work tree or in its committed version"
                    ),
                }));
            }
        }
        if let (Some(p), Some(l), false) = (&parent, prev, force) {
            self.refuse_undoing(unit, p, l, &found, &inside, cache)?;
        }
        // Content already stored under some path (earlier version or this one): stored once.
        let mut by_sha: HashMap<ObjectId, Loc> = HashMap::new();
        let prev_loc = |f: &FileEntry| -> Loc {
            let l = prev
                .as_ref()
                .expect("entries come from the previous listing");
            match l.location(f) {
                super::Location::Empty => Loc::Empty,
                super::Location::Pack { pack, offset } => Loc::Pack(*pack, offset),
                super::Location::Chunks(c) => Loc::Chunks(c.to_vec()),
            }
        };
        let store = self.store();
        // Whether the objects a location names are in the local store (a pack or chunk moved
        // aside as corrupt, or deleted, is not): a file whose committed bytes are not here is
        // read again and stored anew, as a commit of a single file re-stores its chunks.
        let mut packs_here: HashMap<ObjectId, bool> = HashMap::new();
        let mut here = |loc: &Loc| -> bool {
            match loc {
                Loc::Pack(p, _) => *packs_here.entry(p.id).or_insert_with(|| store.has(&p.id)),
                Loc::Chunks(c) => c.iter().all(|(id, _)| store.has(id)),
                Loc::Empty | Loc::NewPack(..) => true,
            }
        };
        let mut packer = PackWriter::new(store);
        let mut entries: Vec<(FileEntry, Loc)> = Vec::with_capacity(found.len());
        let mut stat_updates: Vec<(String, StatEntry)> = Vec::new();
        let (mut added, mut modified, mut read) = (0usize, 0usize, 0usize);
        let (mut chunk_objects, mut chunk_new, mut chunk_stored) = (0usize, 0u64, 0u64);
        let total: u64 = found.iter().map(|f| f.md.len()).sum();
        progress.start(unit.as_str(), total);
        let mut chunk_ids: Vec<ObjectId> = Vec::new();
        for f in &found {
            let full = format!("{}/{}", unit.as_str(), f.rel);
            let old = prev_by_path.get(f.rel.as_str()).copied();
            if !inside(&f.rel) {
                // Not named: stays as committed (a new file stays out).
                if let Some(o) = old {
                    entries.push((o.clone(), prev_loc(o)));
                }
                progress.advance(f.md.len());
                continue;
            }
            let exec = is_exec(&f.md);
            if let (Some(c), Some(o)) = (cache.fresh(&full, &f.md), old) {
                let loc = prev_loc(o);
                if c.sha256 == o.sha256 && o.size == f.md.len() && here(&loc) {
                    // Recorded as holding the version this commit makes (or keeps), as the files
                    // it reads are: commit's check of edits reads that version.
                    stat_updates.push((full.clone(), c.clone()));
                    let mut e = o.clone();
                    if e.exec != exec {
                        // The same bytes with another mode: a change, as in git.
                        modified += 1;
                        e.exec = exec;
                    }
                    entries.push((e, loc));
                    progress.advance(f.md.len());
                    continue;
                }
            }
            read += 1;
            let observed = now_ns();
            let (sha, size, loc, md_after) = if f.md.len() < PACK_FILE_MAX {
                let file = fsutil::open_regular(&f.abs).map_err(Error::io("opening", &f.abs))?;
                let mut data = Vec::with_capacity(f.md.len() as usize);
                file.take(PACK_FILE_MAX)
                    .read_to_end(&mut data)
                    .map_err(Error::io("reading", &f.abs))?;
                let after = std::fs::symlink_metadata(&f.abs)
                    .map_err(|_| Error::Repo(RepoError::FileChangedDuringRead(f.abs.clone())))?;
                if !StatKey::of(&after).same(&StatKey::of(&f.md), self.trust_ctime())
                    || data.len() as u64 != f.md.len()
                {
                    return Err(Error::Repo(RepoError::FileChangedDuringRead(f.abs.clone())));
                }
                let sha = ObjectId::of(&data);
                let kept = old
                    .filter(|o| o.sha256 == sha)
                    .map(prev_loc)
                    .filter(|l| here(l));
                let elsewhere = by_sha.get(&sha).filter(|l| here(l));
                let loc = match (kept, elsewhere) {
                    (Some(l), _) => l,
                    (None, Some(Loc::Pack(p, off))) => Loc::Pack(*p, *off),
                    (None, Some(Loc::NewPack(s, off))) => Loc::NewPack(*s, *off),
                    _ if data.is_empty() => Loc::Empty,
                    _ => {
                        let (s, off) = packer.add(&data)?;
                        Loc::NewPack(s, off)
                    }
                };
                (sha, data.len() as u64, loc, after)
            } else {
                let got = ingest::ingest_file(
                    &f.abs,
                    &ingest::Options {
                        params: Params::ByKind(self.config().chunking),
                        store: Some(store),
                        progress: &crate::progress::NoProgress,
                        label: &full,
                        // Once for the whole unit, below.
                        trust_ctime: self.trust_ctime(),
                        sync_dirs: false,
                    },
                )?;
                chunk_ids.extend(got.chunks.iter().map(|c| c.id));
                chunk_objects += got.chunks_new;
                chunk_new += got.new_bytes;
                chunk_stored += got.stored_bytes;
                let chunks = got.chunks.iter().map(|c| (c.id, c.size)).collect();
                (got.sha256, got.size, Loc::Chunks(chunks), got.metadata)
            };
            progress.advance(size);
            match old {
                None => added += 1,
                Some(o) if o.sha256 != sha || o.exec != exec => modified += 1,
                Some(_) => {}
            }
            if let Loc::Pack(p, off) = &loc {
                by_sha.entry(sha).or_insert(Loc::Pack(*p, *off));
            } else if let Loc::NewPack(s, off) = &loc {
                by_sha.entry(sha).or_insert(Loc::NewPack(*s, *off));
            }
            stat_updates.push((full, StatEntry::new(&md_after, sha, sha, observed)));
            entries.push((
                FileEntry {
                    path: f.rel.clone(),
                    size,
                    exec,
                    sha256: sha,
                    pack: None,
                    chunks: None,
                },
                loc,
            ));
        }
        // A committed file that is not here and that nshard never wrote or saw here (a part of
        // the unit never checked out, e.g. after `nshard checkout data/val/`, or one recorded as
        // absent from the version the clone last held, which a later version added) was not
        // removed: it stays as committed. A file nshard wrote or committed here and that is gone
        // was.
        let here: HashSet<&str> = found.iter().map(|f| f.rel.as_str()).collect();
        let mut carried = false;
        let mut absent_memo = None;
        for o in prev.iter().flat_map(|l| l.files.iter()) {
            let unseen = |memo: &mut Option<super::status::AncestorWalk>| {
                let entry = cache.get(&format!("{}/{}", unit.as_str(), o.path));
                match &parent {
                    Some(p) => self.never_here(entry, p.version, memo),
                    None => entry.is_none(),
                }
            };
            if !here.contains(o.path.as_str()) && (!inside(&o.path) || unseen(&mut absent_memo)) {
                entries.push((o.clone(), prev_loc(o)));
                carried = true;
            }
        }
        if carried {
            entries.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
            // Files kept as committed beside the ones read here: together they must still be a
            // listing readers take (a file here where a kept file's directory is, or the other
            // way round, is not).
            super::listing::check_names(entries.iter().map(|(e, _)| e.path.as_str())).map_err(
                |reason| {
                    Error::Repo(RepoError::UnitNames {
                        unit: unit.to_string(),
                        reason: format!(
                            "{reason} (with the files of the committed version not checked out \
                             or not named here, which the new version keeps)"
                        ),
                    })
                },
            )?;
        }
        packer.flush()?;
        // The fan-out directories of the large files' chunks, each once, before the listing can
        // name them.
        crate::ingest::sync_dirs(store, &chunk_ids)?;
        progress.finish();
        let removed = prev_by_path.len() + added - entries.len();
        // The packs table, in order of first use.
        let mut packs: Vec<PackRef> = Vec::new();
        let mut index: HashMap<ObjectId, u32> = HashMap::new();
        let mut files = Vec::with_capacity(entries.len());
        for (mut e, loc) in entries {
            let mut slot = |p: PackRef| -> u32 {
                *index.entry(p.id).or_insert_with(|| {
                    packs.push(p);
                    (packs.len() - 1) as u32
                })
            };
            match loc {
                Loc::Empty => {}
                Loc::Pack(p, off) => e.pack = Some((slot(p), off)),
                Loc::NewPack(s, off) => e.pack = Some((slot(packer.done[s]), off)),
                Loc::Chunks(c) => e.chunks = Some(c),
            }
            files.push(e);
        }
        let listing = Listing {
            format: LISTING_FORMAT.into(),
            packs,
            files,
        };
        let full_bytes = listing.to_bytes();
        let full_id = ObjectId::of(&full_bytes);
        let unchanged = |p: &&super::DirVersionBytes| {
            p.manifest.listing == full_id || prev.is_some_and(|l| *l == listing)
        };
        if let Some(p) = parent.as_ref().filter(unchanged) {
            for (path, mut e) in stat_updates {
                e.version = p.version;
                cache.set(&path, e);
            }
            if p.manifest.listing == full_id && !store.has(&full_id) {
                store.put_trusted(
                    &full_id,
                    &Encoder::with_level(super::PACK_ZSTD_LEVEL)
                        .encode(&full_bytes, DataHint::Unknown),
                )?;
            }
            self.store_dir_manifest_object(p)?;
            return Ok(CommitOutcome::Unchanged {
                version: p.version,
                restored: 0,
            });
        }
        let (lbytes, listing_id) = listing_object(
            parent.as_ref(),
            prev_chain.as_ref(),
            &listing,
            full_bytes.len(),
        )
        .unwrap_or((full_bytes, full_id));
        let mut enc = Encoder::with_level(super::PACK_ZSTD_LEVEL);
        let mut new_objects = packer.new_objects + chunk_objects;
        let mut stored_bytes = packer.stored_bytes + chunk_stored;
        let lenc = enc.encode(&lbytes, DataHint::Unknown);
        if store.put_trusted(&listing_id, &lenc)? {
            new_objects += 1;
            stored_bytes += lenc.len() as u64;
        }
        let manifest = DirManifest {
            format: super::DIR_FORMAT.into(),
            path: unit.clone(),
            files: listing.files.len() as u64,
            size: listing.total_size(),
            listing: listing_id,
            version: VersionInfo {
                message: message.to_string(),
                timestamp: Manifest::now_timestamp(),
                parent: parent.as_ref().map(|p| p.version),
            },
        };
        let bytes = manifest.to_bytes();
        let version = ObjectId::of(&bytes);
        let menc = enc.encode(&bytes, DataHint::Unknown);
        if store.put_trusted(&version, &menc)? {
            new_objects += 1;
            stored_bytes += menc.len() as u64;
        }
        crate::crash_point!("dir-commit-before-manifest");
        fsutil::write_atomic_in(self.root(), &unit.manifest_path(), &bytes)?;
        for (path, mut e) in stat_updates {
            e.version = version;
            cache.set(&path, e);
        }
        // Files this version no longer has are recorded as absent from it, so that a file
        // created again at that path later is new, not an edit of the old one (and `diff` of an
        // older version still counts them removed, not never checked out).
        let now_listed: HashSet<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
        for gone in prev_by_path.keys().filter(|p| !now_listed.contains(*p)) {
            let key = format!("{}/{gone}", unit.as_str());
            if let Some(e) = cache.get(&key) {
                let mut e = e.clone();
                (e.sha256, e.version) = (StatEntry::ABSENT, version);
                cache.set(&key, e);
            }
        }
        let converted = self.remove_file_manifests_in(unit)?;
        Ok(CommitOutcome::DirCommitted(DirCommit {
            version,
            parent: manifest.version.parent,
            listing: listing_id,
            files: listing.files.len(),
            size: manifest.size,
            added,
            removed,
            modified,
            read,
            new_objects,
            new_bytes: packer.new_bytes + chunk_new,
            stored_bytes,
            converted,
        }))
    }

    /// Refuses a commit that would undo the changes of the unit's committed version `p` (with
    /// listing `l`): a file (among those `inside` the commit) that last held, or was edited from,
    /// an older version of the unit than `p` (as after a `git pull` whose hook left the unit
    /// alone because of edits, or `nshard checkout DIR --version`), where `p` changed that file
    /// since (see [`Repo::files_from_older`]). Its content would go into the new version on top
    /// of `p` and silently take back what `p` changed.
    fn refuse_undoing(
        &self,
        unit: &RepoPath,
        p: &super::DirVersionBytes,
        l: &Listing,
        found: &[super::Found],
        inside: &dyn Fn(&str) -> bool,
        cache: &StatCache,
    ) -> Result<()> {
        let on_disk: HashSet<&str> = found.iter().map(|f| f.rel.as_str()).collect();
        let removed = l
            .files
            .iter()
            .filter(|e| !on_disk.contains(e.path.as_str()))
            .map(|e| (e.path.as_str(), None));
        let present = found.iter().map(|f| (f.rel.as_str(), Some(f)));
        let older = self.files_from_older(
            unit,
            p,
            l,
            present.chain(removed).filter(|(rel, _)| inside(rel)),
            cache,
        )?;
        if older.is_empty() {
            return Ok(());
        }
        let full = |o: &super::status::FromOlder| format!("{}/{}", unit.as_str(), o.rel);
        let with_version = |o: &super::status::FromOlder| (full(o), o.version);
        Err(Error::Repo(RepoError::UnitFromOlder(Box::new(
            crate::error::FromOlderFiles {
                unit: unit.to_string(),
                stale: older
                    .iter()
                    .filter(|o| !o.edited)
                    .map(with_version)
                    .collect(),
                edited: older
                    .iter()
                    .filter(|o| o.edited && !o.created && on_disk.contains(o.rel.as_str()))
                    .map(with_version)
                    .collect(),
                removed: older
                    .iter()
                    .filter(|o| o.edited && !on_disk.contains(o.rel.as_str()))
                    .map(with_version)
                    .collect(),
                created: older.iter().filter(|o| o.created).map(full).collect(),
                manifest_version: p.version,
                unplaced: older
                    .iter()
                    .any(|o| !o.created && o.order != crate::error::VersionOrder::Older),
            },
        ))))
    }

    /// Removes the per-file manifests inside `unit` (left from before the directory became a
    /// unit): the unit's listing now versions those files. Only valid file manifests are
    /// removed; git and the store still hold them.
    fn remove_file_manifests_in(&self, unit: &RepoPath) -> Result<usize> {
        let dir = unit.to_path(self.root());
        let mut n = 0;
        for ent in walkdir::WalkDir::new(&dir).follow_links(false).min_depth(1) {
            let Ok(ent) = ent else { continue };
            if !ent.file_type().is_file() {
                continue;
            }
            let Ok(rel) = ent.path().strip_prefix(self.root()) else {
                continue;
            };
            let Some(data) = RepoPath::from_relative(rel)
                .ok()
                .and_then(|p| p.data_path_of_manifest())
            else {
                continue;
            };
            if let Ok(Some(_)) = self.read_worktree_manifest(&data) {
                std::fs::remove_file(ent.path()).map_err(Error::io("removing", ent.path()))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
