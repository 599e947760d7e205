//! Checking out a directory unit (or a subtree of it): every file is written to a temporary file
//! beside its destination, verified by its SHA-256, the filesystem is synced once, then each is
//! renamed into place and the directories are synced. Nothing is written outside the unit's
//! directory or through a symlink; files with uncommitted changes are never overwritten without
//! `force`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;

use super::pack::read_pack;
use super::{remove_temps, walk_unit_with, FileEntry, Found, Location};
use crate::error::{Error, Result};
use crate::error::{RepoError, StoreError};
use crate::fsutil;
use crate::id::{Hasher, ObjectId};
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::statcache::{now_ns, StatCache, StatEntry};
use crate::repo::Repo;

/// The parts of each unit `nshard checkout` (or `pull --checkout`) was asked for in this clone,
/// kept in `.shard/cache/parts.json`: unit → paths inside it. A unit without an entry is whole.
type Parts = BTreeMap<String, BTreeSet<String>>;

impl Repo {
    fn parts_path(&self) -> PathBuf {
        self.shard_dir().join("cache").join("parts.json")
    }

    fn load_parts(&self) -> Parts {
        std::fs::read(self.parts_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The parts of `unit` (paths relative to it) this clone checked out by name, as `nshard
    /// checkout data/val/` asked: `None` when the unit was checked out whole (or the record is
    /// gone), so that the git hooks keep a unit checked out in part in part.
    pub fn checked_out_parts(&self, unit: &RepoPath) -> Option<Vec<String>> {
        self.load_parts()
            .remove(unit.as_str())
            .map(|s| s.into_iter().collect())
            .filter(|v: &Vec<String>| !v.is_empty())
    }

    /// Records that `sub` of `unit` (relative to it) was checked out by name, or, with `None`,
    /// that all of it was (which forgets its parts). Best effort: the record only narrows what
    /// the hooks write; without it they write the whole unit.
    pub fn record_checkout(&self, unit: &RepoPath, sub: Option<&str>) {
        let mut parts = self.load_parts();
        let before = parts.clone();
        match sub {
            None => {
                parts.remove(unit.as_str());
            }
            // A unit checked out whole here (files nshard wrote or committed outside `s` are in
            // the work tree) stays whole: checking out one part of it again (a file restored,
            // the files a commit refused brought up to date) must not narrow what the hooks
            // write.
            Some(s) if !parts.contains_key(unit.as_str()) && self.holds_outside(unit, s) => {}
            Some(s) => {
                let set = parts.entry(unit.to_string()).or_default();
                let under = |p: &str, dir: &str| super::listing::in_subtree(p, Some(dir));
                if !set.iter().any(|k| under(s, k)) {
                    set.retain(|k| !under(k, s));
                    set.insert(s.to_string());
                }
            }
        }
        if parts != before {
            if let Ok(bytes) = serde_json::to_vec(&parts) {
                let _ = fsutil::write_atomic(&self.parts_path(), &bytes);
            }
        }
    }

    /// Whether a file of `unit` outside its part `sub` that nshard wrote or committed (one the
    /// stat cache knows) is in the work tree.
    fn holds_outside(&self, unit: &RepoPath, sub: &str) -> bool {
        let cache = self.stat_cache();
        super::walk_unit(self.root(), unit).is_ok_and(|found| {
            found.iter().any(|f| {
                !super::listing::in_subtree(&f.rel, Some(sub))
                    && cache.get(&format!("{}/{}", unit.as_str(), f.rel)).is_some()
            })
        })
    }

    /// The files of `unit` (under `sub`, relative to the unit) that its version `before` (the
    /// manifest bytes before a git operation changed it) lists, that nshard wrote or committed
    /// here, and that are gone from the work tree: removals not committed yet, which a checkout
    /// of another version (the git hooks') must not undo. Paths relative to the repository;
    /// none when `before` cannot be read here.
    pub fn uncommitted_removals(
        &self,
        unit: &RepoPath,
        sub: Option<&str>,
        before: &[u8],
    ) -> Vec<(String, bool)> {
        let Ok(m) = super::DirManifest::parse(before, unit.as_str().as_ref(), Some(unit)) else {
            return Vec::new();
        };
        let Ok(listing) = self.load_listing(&m) else {
            return Vec::new();
        };
        let cache = self.stat_cache();
        listing
            .select(sub)
            .map(|f| (format!("{}/{}", unit.as_str(), f.path), f.exec))
            // Recorded as absent from the version it last saw: never here, not removed.
            .filter(|(p, _)| cache.get(p).is_some_and(|c| c.sha256 != StatEntry::ABSENT))
            .filter(|(p, _)| std::fs::symlink_metadata(self.root().join(p)).is_err())
            .collect()
    }
}

/// Options of a directory checkout.
pub struct DirCheckoutOptions<'a> {
    /// Only this subtree (relative to the unit).
    pub sub: Option<String>,
    /// A version id or unique prefix in the unit's history to restore instead of the work-tree
    /// manifest's version (the manifest stays; `status` then shows the unit modified).
    pub version: Option<String>,
    /// Overwrite (and remove) files with uncommitted changes.
    pub force: bool,
    /// Removals not committed to keep (see [`crate::CheckoutOptions::keep_removed`]).
    pub keep_removed: &'a [(String, bool)],
    /// See [`crate::CheckoutOptions::restore`].
    pub restore: bool,
    /// Progress (bytes written).
    pub progress: &'a dyn Progress,
}

/// What a directory checkout did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DirCheckout {
    /// The version checked out.
    pub version: ObjectId,
    /// Files written.
    pub written: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files that already held the right content.
    pub up_to_date: usize,
    /// Files removed (not in this version, and holding committed content).
    pub removed: usize,
    /// Files not in this version left in place (never committed, or edited: they may be new
    /// work).
    pub kept: usize,
    /// Edited files left as they are because this version holds, at their path, the bytes they
    /// were edited from (relative to the repository root): the edits carry over.
    pub edits_kept: Vec<String>,
    /// Files removed here and not committed that stay removed, this version holding the bytes
    /// they held (relative to the repository root).
    pub removals_kept: Vec<String>,
}

/// A file staged in the batch: where it goes in the unit and its content's hash.
struct Staged {
    full: String,
    sha: ObjectId,
}

impl Repo {
    /// Checks out the work tree's version of directory unit `unit`. Takes the repository lock.
    pub fn checkout_dir(
        &self,
        unit: &RepoPath,
        opts: &DirCheckoutOptions<'_>,
    ) -> Result<DirCheckout> {
        let _lock = self.lock(true)?;
        let d = self
            .read_dir_manifest(unit)?
            .ok_or(Error::Repo(RepoError::NotTracked {
                path: unit.manifest_path().as_str().into(),
                reason: crate::error::Untracked::NoManifest,
            }))?;
        self.store_dir_manifest_object(&d)?;
        let (version, manifest) = match &opts.version {
            None => (d.version, d.manifest.clone()),
            Some(prefix) => {
                let v = self.find_dir_version(unit, &d, prefix)?;
                (v, self.dir_manifest_at(&d, v)?)
            }
        };
        let listing = match self.load_listing(&manifest) {
            Err(Error::Store(StoreError::ObjectMissing(id))) => {
                return Err(Error::Repo(RepoError::ChunksMissing {
                    path: unit.as_str().into(),
                    count: 1,
                    first: id,
                }))
            }
            r => r?,
        };
        let sub = opts.sub.as_deref();
        let in_sub = |rel: &str| super::listing::in_subtree(rel, sub);
        let mut temps = Vec::new();
        let found: Vec<Found> = walk_unit_with(self.root(), unit, &mut temps)?
            .into_iter()
            .filter(|f| in_sub(&f.rel))
            .collect();
        remove_temps(&temps);
        // A part named that matches nothing, in this version or here (a typo), is an error, as
        // for `git checkout PATH`: writing nothing in silence would look like success (and the
        // part would be recorded for the hooks).
        if let Some(s) = sub.filter(|_| found.is_empty()) {
            if listing.select(Some(s)).next().is_none() {
                return Err(Error::Repo(RepoError::NoSuchPart {
                    path: format!("{unit}/{}", crate::portable::escape(s)),
                    unit: unit.to_string(),
                    version,
                }));
            }
        }
        let on_disk: HashMap<&str, &Found> = found.iter().map(|f| (f.rel.as_str(), f)).collect();
        let mut cache = self.stat_cache();
        let mut out = DirCheckout {
            version,
            written: 0,
            bytes: 0,
            up_to_date: 0,
            removed: 0,
            kept: 0,
            edits_kept: Vec::new(),
            removals_kept: Vec::new(),
        };
        let mut todo: Vec<&FileEntry> = Vec::new();
        let mut conflicts: Vec<String> = Vec::new();
        let keep_removed: HashMap<&str, bool> = match opts.force {
            true => HashMap::new(),
            false => opts
                .keep_removed
                .iter()
                .map(|(p, x)| (p.as_str(), *x))
                .collect(),
        };
        for e in listing.select(sub) {
            let full = format!("{}/{}", unit.as_str(), e.path);
            match on_disk.get(e.path.as_str()) {
                None if keep_removed.contains_key(full.as_str()) => match cache.get(&full) {
                    // This version holds the bytes removed, with the same execute bit: the
                    // removal carries over, recorded as made on this version.
                    Some(c)
                        if c.sha256 == e.sha256
                            && keep_removed.get(full.as_str()) == Some(&e.exec) =>
                    {
                        cache.set_version(&full, version);
                        out.removals_kept.push(full);
                    }
                    _ => {
                        conflicts.push(format!("{full} removed"));
                        todo.push(e);
                    }
                },
                None => todo.push(e),
                Some(f) => match cache.fresh(&full, &f.md) {
                    Some(c) if c.sha256 == e.sha256 => {
                        // It holds this version's bytes: recorded as holding this version (an
                        // entry may name an older one, or a file's own version from before the
                        // directory became a unit), which commit's check of edits relies on.
                        cache.set_version(&full, version);
                        out.up_to_date += 1
                    }
                    // Holds content nshard wrote or committed: safe to replace.
                    Some(_) => todo.push(e),
                    None => {
                        let observed = now_ns();
                        let sha = super::status::hash_found(f)?;
                        if sha == e.sha256 {
                            cache.set(&full, StatEntry::new(&f.md, sha, version, observed));
                            out.up_to_date += 1;
                        } else {
                            match cache.get(&full) {
                                // Content nshard committed or wrote at this path is safe to
                                // replace.
                                Some(c) if c.sha256 == sha => todo.push(e),
                                // Edited on another version from the bytes this one has at
                                // the path: moving to this version does not change the file,
                                // so the edit is carried over (as `git checkout` carries a
                                // change to a file the two commits agree on), recorded as made
                                // on this version. In a restore (see `restore`), an edit made
                                // on this version stays in the way: that asks for the file's
                                // committed bytes back, which takes `--force`. So does a file
                                // whose execute bit this version has otherwise (the version
                                // changed its mode, which a carried edit would take back).
                                Some(c)
                                    if c.sha256 == e.sha256
                                        && (c.version != version || !opts.restore)
                                        && super::is_exec(&f.md) == e.exec
                                        && !opts.force =>
                                {
                                    cache.set_version(&full, version);
                                    out.edits_kept.push(full);
                                }
                                // Edited (or created here) where this version has other bytes:
                                // replacing it would lose the edit.
                                _ => {
                                    conflicts.push(full);
                                    todo.push(e);
                                }
                            }
                        }
                    }
                },
            }
        }
        let listed: BTreeSet<&str> = listing.select(sub).map(|e| e.path.as_str()).collect();
        let mut extra: Vec<&Found> = Vec::new();
        for f in &found {
            if !listed.contains(f.rel.as_str()) {
                let full = format!("{}/{}", unit.as_str(), f.rel);
                // Content nshard committed or wrote here may be replaced; with --force also a
                // later edit of such a file. A file nshard never wrote is never deleted.
                let known = cache.get(&full).is_some();
                let committed = match cache.fresh(&full, &f.md) {
                    Some(_) => true,
                    None => match cache.get(&full) {
                        Some(c) => super::status::hash_found(f)? == c.sha256,
                        None => false,
                    },
                };
                if committed || (opts.force && known) {
                    extra.push(f);
                } else {
                    out.kept += 1;
                }
            }
        }
        if !conflicts.is_empty() && !opts.force {
            let more = if conflicts.len() > 1 {
                format!(" (and {} more)", conflicts.len() - 1)
            } else {
                String::new()
            };
            return Err(Error::Repo(RepoError::WouldOverwrite(
                format!("{}{more}", conflicts[0]).into(),
            )));
        }
        // Every object needed must be here before anything is written.
        let mut missing: Vec<ObjectId> = Vec::new();
        for e in &todo {
            match listing.location(e) {
                Location::Empty => {}
                Location::Pack { pack, .. } => {
                    missing.extend(Some(pack.id).filter(|id| !self.store().has(id)))
                }
                Location::Chunks(c) => missing.extend(
                    c.iter()
                        .map(|(id, _)| *id)
                        .filter(|id| !self.store().has(id)),
                ),
            }
        }
        missing.sort();
        missing.dedup();
        if let Some(first) = missing.first() {
            return Err(Error::Repo(RepoError::ChunksMissing {
                path: unit.as_str().into(),
                count: missing.len(),
                first: *first,
            }));
        }
        let observed = now_ns();
        let total: u64 = todo.iter().map(|e| e.size).sum();
        opts.progress.start(unit.as_str(), total);
        // Pack by pack, so that each pack is read once.
        let mut by_pack: BTreeMap<u32, Vec<&FileEntry>> = BTreeMap::new();
        let mut batch = fsutil::AtomicBatch::new(self.root());
        let mut staged: Vec<Staged> = Vec::with_capacity(todo.len());
        for e in &todo {
            match e.pack {
                Some((i, _)) => by_pack.entry(i).or_default().push(e),
                None => {
                    staged.push(self.stage_chunked(unit, &listing, e, &mut batch)?);
                    opts.progress.advance(e.size);
                }
            }
        }
        for (i, files) in by_pack {
            let pack = read_pack(self.store(), &listing.packs[i as usize])?;
            for e in files {
                let off = e.pack.expect("packed").1 as usize;
                let bytes = &pack[off..off + e.size as usize];
                staged.push(self.stage_file(unit, e, bytes, &mut batch)?);
                opts.progress.advance(e.size);
            }
        }
        opts.progress.finish();
        // One sync for every file written, then the renames.
        let mut dirs = batch.commit(&unit.to_path(self.root()), |i, _, md| {
            out.written += 1;
            out.bytes += md.len();
            let p = &staged[i];
            cache.set(&p.full, StatEntry::new(md, p.sha, version, observed));
            Ok(())
        })?;
        for f in extra {
            // Relative to its directory opened without following symlinks, as the writes.
            let rel = RepoPath::parse(&format!("{}/{}", unit.as_str(), f.rel))?;
            fsutil::remove_file_in(self.root(), &rel)?;
            // Absent from this version (see [`StatEntry::ABSENT`]).
            if let Some(e) = cache.get(rel.as_str()) {
                let mut e = e.clone();
                (e.sha256, e.version) = (StatEntry::ABSENT, version);
                cache.set(rel.as_str(), e);
            }
            out.removed += 1;
            dirs.extend(f.abs.parent().map(PathBuf::from));
        }
        for dir in dirs {
            fsutil::sync_dir(&dir)?;
        }
        cache.save()?;
        Ok(out)
    }

    /// Writes a chunked file to a temporary file chunk by chunk (each verified on read), so
    /// memory holds one chunk at a time.
    fn stage_chunked(
        &self,
        unit: &RepoPath,
        l: &super::Listing,
        e: &FileEntry,
        batch: &mut fsutil::AtomicBatch,
    ) -> Result<Staged> {
        let (mut tmp, dest, full) = self.temp_for(unit, e, batch)?;
        let mut h = Hasher::new();
        let mut n = 0u64;
        if let Location::Chunks(c) = l.location(e) {
            for (id, size) in c {
                let raw = self.store().get(id, *size)?;
                h.update(&raw);
                n += raw.len() as u64;
                tmp.write_all(&raw).map_err(Error::io("writing", &dest))?;
            }
        }
        let sha = h.finish();
        check(&dest, e, sha, n)?;
        Ok(Staged { full, sha })
    }

    /// Writes `bytes` (checked against the entry's SHA-256) to a temporary file beside the
    /// entry's destination, with the entry's mode. Not synced yet.
    fn stage_file(
        &self,
        unit: &RepoPath,
        e: &FileEntry,
        bytes: &[u8],
        batch: &mut fsutil::AtomicBatch,
    ) -> Result<Staged> {
        let (mut tmp, dest, full) = self.temp_for(unit, e, batch)?;
        let sha = ObjectId::of(bytes);
        check(&dest, e, sha, bytes.len() as u64)?;
        tmp.write_all(bytes).map_err(Error::io("writing", &dest))?;
        Ok(Staged { full, sha })
    }

    /// A temporary file beside the entry's destination (whose directories are created, never
    /// through a symlink), with the entry's mode.
    fn temp_for(
        &self,
        unit: &RepoPath,
        e: &FileEntry,
        batch: &mut fsutil::AtomicBatch,
    ) -> Result<(std::fs::File, PathBuf, String)> {
        let full = format!("{}/{}", unit.as_str(), e.path);
        let rp = RepoPath::parse(&full)?;
        let (tmp, dest) = batch.create(&rp, if e.exec { 0o755 } else { 0o644 })?;
        Ok((tmp, dest, full))
    }
}

/// The rebuilt bytes must be the listed file's.
fn check(dest: &std::path::Path, e: &FileEntry, sha: ObjectId, len: u64) -> Result<()> {
    if sha != e.sha256 || len != e.size {
        return Err(Error::Repo(RepoError::FileHashMismatch {
            path: dest.to_path_buf(),
            expected: e.sha256,
            actual: sha,
        }));
    }
    Ok(())
}

/// What became of a data file whose manifest a git operation deleted (see
/// [`Repo::remove_unversioned`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unversioned {
    /// It held exactly the version the deleted manifest named: deleted, as git deletes a file
    /// removed upstream that has no local changes (the version stays in the store and on
    /// remotes until gc).
    Deleted,
    /// It holds other content: kept, no longer versioned.
    KeptChanged,
    /// A directory unit's manifest: its files that held the listed content were deleted; files
    /// its listing does not name stay.
    Unit {
        /// Files deleted.
        removed: usize,
        /// Files kept because the listing does not name them.
        unlisted: usize,
    },
    /// A directory unit's manifest, and some of its listed files hold other content: the whole
    /// unit stays as it is (as git refuses to remove a file with changes), so that going
    /// back finds it complete.
    UnitKept {
        /// The edited files (up to a few, relative to the repository root).
        changed: Vec<String>,
        /// How many files are edited in all.
        count: usize,
    },
    /// Nothing to do: no data file, a manifest there again, or not a file's manifest.
    Untouched,
    /// git versions the file itself in the new tree (a commit from before it moved to
    /// NeuroShard, or from Git LFS): git wrote it, and it stays git's.
    InGit,
}

impl Repo {
    /// After a git operation deleted the manifest of unit `unit` (its bytes in the commit before
    /// were `old`): deletes the unit's files that hold exactly the content its listing names
    /// (known from the stat cache, else hashed), then the directories that leaves empty. Files
    /// the listing does not name stay, and so do files another manifest of the work tree
    /// versions (a unit converted to single files). When a listed file holds other content,
    /// nothing is deleted (the unit stays whole, as git refuses to remove a file with changes).
    /// `None` when `old` is not the unit's manifest or its listing is not in the local store
    /// (then nothing is touched). The caller checked that the manifest is gone from the work
    /// tree, holds the repository lock and saves `cache`.
    pub(crate) fn remove_unversioned_unit(
        &self,
        unit: &RepoPath,
        old: &[u8],
        cache: &mut StatCache,
    ) -> Result<Option<Unversioned>> {
        let mpath = unit.manifest_path().to_path(self.root());
        let Ok(m) = super::DirManifest::parse(old, &mpath, Some(unit)) else {
            return Ok(None);
        };
        let listing = match self.load_listing(&m) {
            Ok(l) => l,
            Err(Error::Store(StoreError::ObjectMissing(_))) => return Ok(None),
            Err(e) => return Err(e),
        };
        let listed: HashMap<&str, &FileEntry> =
            listing.files.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut unlisted = 0;
        let mut changed: Vec<String> = Vec::new();
        let mut doomed: Vec<(String, PathBuf)> = Vec::new();
        for f in super::walk_unit(self.root(), unit)? {
            let full = format!("{}/{}", unit.as_str(), f.rel);
            let Some(e) = listed.get(f.rel.as_str()) else {
                unlisted += 1;
                continue;
            };
            let mut own = f.abs.clone().into_os_string();
            own.push(crate::path::MANIFEST_SUFFIX);
            if std::fs::symlink_metadata(&own).is_ok() {
                // Versioned by a manifest of its own now.
                continue;
            }
            if cache.holds(&full, &f.abs, &f.md, &e.sha256, e.size)? {
                doomed.push((full, f.abs));
            } else {
                changed.push(full);
            }
        }
        if !changed.is_empty() {
            let count = changed.len();
            changed.truncate(3);
            return Ok(Some(Unversioned::UnitKept { changed, count }));
        }
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let top = unit.to_path(self.root());
        for (full, abs) in &doomed {
            fsutil::remove_file_in(self.root(), &RepoPath::parse(full)?)?;
            cache.remove(full);
            let mut d = abs.parent();
            while let Some(p) = d.filter(|p| p.starts_with(&top)) {
                dirs.insert(p.to_path_buf());
                d = p.parent();
            }
        }
        // Deepest first; a directory that still holds something stays.
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        Ok(Some(Unversioned::Unit {
            removed: doomed.len(),
            unlisted,
        }))
    }
}
