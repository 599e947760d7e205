//! `verify`: re-hash every local object and check that every manifest can be rebuilt.
//!
//! 1. Each work-tree manifest is rebuilt in memory, chunk by chunk in file order: every chunk must
//!    be present, decode, hash to its id and have the manifest's size, and the whole file must
//!    hash to the manifest's SHA-256.
//! 2. Older versions reachable through the store are parsed and their chunks looked up; chunks of
//!    old versions that are not local (never pulled, or removed by `gc --only-current`) are noted,
//!    not errors. With `all_versions` they are rebuilt and hashed like current ones.
//! 3. Every other object in the store is decoded and re-hashed.
//!
//! Each problem names the file, the version and the object. A corrupt object is moved aside to
//! `.shard/corrupt/` (as checkout does), so that `pull` fetches a good copy. The repository lock is
//! held shared so that a gc cannot delete objects while they are being checked.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::HistoryNode;
use crate::codec::MAX_OBJECT_SIZE;
use crate::error::StoreError;
use crate::error::{Error, Result};
use crate::id::{Hasher, ObjectId};
use crate::ingest::{table_tensors, How, TensorHasher};
use crate::manifest::Manifest;
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::Repo;

/// Options of a verify.
pub struct VerifyOptions<'a> {
    /// Also rebuild and hash every older version whose data is local (reads each one in full).
    pub all_versions: bool,
    /// Progress, in encoded bytes of objects checked.
    pub progress: &'a dyn Progress,
}

/// What kind of problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// An object does not decode, or its bytes do not hash to its id.
    CorruptObject,
    /// An object a current version needs is not in the store, or a chunk of an older version
    /// was moved aside as corrupt.
    MissingObject,
    /// A delta object whose base (a chunk of a newer version) is not in the store: the object
    /// is intact, the version cannot be rebuilt until the base is back.
    MissingBase,
    /// A chunk decodes to a different length than the manifest says.
    SizeMismatch,
    /// All chunks are fine but together they do not hash to the manifest's whole-file SHA-256.
    FileHashMismatch,
    /// The file rebuilds correctly but a tensor's bytes do not hash to the tensor table's SHA-256.
    TensorHashMismatch,
    /// A work-tree manifest fails validation.
    InvalidManifest,
    /// A stored older version's manifest cannot be used.
    UnreadableVersion,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The data file concerned (none for an unreferenced object).
    pub file: Option<RepoPath>,
    /// The version concerned.
    pub version: Option<ObjectId>,
    /// The object concerned.
    pub object: Option<ObjectId>,
    /// Details.
    pub detail: String,
}

/// An older version that is present as a manifest but lacks chunks locally (not an error).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryNote {
    /// The data file.
    pub file: RepoPath,
    /// The version.
    pub version: ObjectId,
    /// `None`: the version's manifest itself is not local (history stops here); otherwise how
    /// many of its chunks are not local.
    pub chunks_missing: Option<usize>,
}

/// The outcome of a verify.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// No problems.
    pub ok: bool,
    /// Distinct objects decoded and re-hashed.
    pub objects_checked: usize,
    /// Their encoded size.
    pub bytes_checked: u64,
    /// Work-tree manifests rebuilt and hashed.
    pub files_checked: usize,
    /// Older versions whose manifests were read.
    pub versions_checked: usize,
    /// Older versions rebuilt and hashed (with `all_versions`).
    pub versions_rebuilt: usize,
    /// Objects no current or older version references (`nshard gc` removes them).
    pub unreferenced_objects: usize,
    /// Their size on disk.
    pub unreferenced_bytes: u64,
    /// Gaps in local history (not errors).
    pub history_notes: Vec<HistoryNote>,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

/// A chunk's encoded size and, unless it was already known bad, its decoded bytes.
type Decoded = (Option<u64>, Option<Result<Vec<u8>>>);

/// Verification state shared by the passes.
struct Checker<'a> {
    repo: &'a Repo,
    progress: &'a dyn Progress,
    /// Objects already checked: `None` when good, else why not.
    seen: HashMap<ObjectId, Option<(ProblemKind, String)>>,
    report: VerifyReport,
}

impl Checker<'_> {
    fn record(&mut self, id: &ObjectId, size: Option<u64>, r: &Result<Vec<u8>>) {
        if self.seen.contains_key(id) {
            return;
        }
        let verdict = match r {
            Ok(_) => None,
            Err(Error::Store(StoreError::ObjectMissing(_))) => Some((
                ProblemKind::MissingObject,
                "not in the local store".to_string(),
            )),
            // The problem names the object already; keep only why it is bad. The damaged object
            // (for a delta, possibly its base) is moved aside, as checkout does, so that it reads
            // as missing and `pull` or `commit` can put a good copy in its place.
            Err(Error::Store(StoreError::CorruptObject {
                id: bad, reason, ..
            })) => {
                let moved = matches!(self.repo.store().quarantine_if_corrupt(bad), Ok(true));
                let at = if bad == id {
                    String::new()
                } else {
                    format!(" (in object {bad}, which it is built on)")
                };
                let detail = if moved {
                    format!("{reason}{at}; moved aside to .shard/corrupt/: `nshard pull` fetches a good copy, or `nshard commit` re-stores it from an intact file")
                } else {
                    format!("{reason}{at}")
                };
                Some((ProblemKind::CorruptObject, detail))
            }
            Err(Error::Store(StoreError::BaseMissing { base, .. })) => Some((
                ProblemKind::MissingBase,
                format!(
                    "stored as a delta of {base}, which is not in the local store{}: `nshard pull` fetches it (`nshard pull --all-versions` when it is a chunk of a version the work tree does not name)",
                    if self.repo.store().was_set_aside(base) {
                        " (it was moved aside to .shard/corrupt/ as corrupt)"
                    } else {
                        ""
                    }
                ),
            )),
            Err(e) => Some((ProblemKind::CorruptObject, e.to_string())),
        };
        if !matches!(r, Err(Error::Store(StoreError::ObjectMissing(_)))) {
            self.report.objects_checked += 1;
            self.report.bytes_checked += size.unwrap_or(0);
            self.progress.advance(size.unwrap_or(0));
        }
        self.seen.insert(*id, verdict);
    }

    fn problem(
        &mut self,
        kind: ProblemKind,
        file: &RepoPath,
        v: ObjectId,
        obj: Option<ObjectId>,
        detail: String,
    ) {
        self.report.problems.push(Problem {
            kind,
            file: Some(file.clone()),
            version: Some(v),
            object: obj,
            detail,
        });
    }

    /// A work-tree manifest that fails validation (it names no version).
    fn invalid_manifest(&mut self, file: &RepoPath, e: &Error) {
        self.report.problems.push(Problem {
            kind: ProblemKind::InvalidManifest,
            file: Some(file.clone()),
            version: None,
            object: None,
            detail: e.to_string(),
        });
    }

    /// Rebuilds `m` in memory in file order and checks every chunk and the whole-file hash.
    /// Chunks are decoded in parallel batches; each problem is reported once per file.
    fn rebuild(&mut self, file: &RepoPath, v: ObjectId, m: &Manifest) {
        let batch = 2 * rayon::current_num_threads().max(1);
        let mut hasher = Hasher::new();
        // The tensor table is checked too, each entry the way it says it was made (bytes, or
        // chunk ids: those need no hashing, the chunks are verified against their ids).
        let mut tensors = m
            .tensors
            .as_ref()
            .map(|t| TensorHasher::with_how(table_tensors(t), t.iter().map(How::of).collect()));
        let mut whole = true;
        let mut reported: HashSet<ObjectId> = HashSet::new();
        for group in m.chunks.chunks(batch) {
            let store = &self.repo.store;
            let seen = &self.seen;
            let decoded: Vec<Decoded> = group
                .par_iter()
                .map(|c| match seen.get(&c.id) {
                    Some(Some(_)) => (None, None),
                    _ => (store.encoded_size(&c.id), Some(store.get(&c.id, c.size))),
                })
                .collect();
            for (c, (size, r)) in group.iter().zip(decoded) {
                let data = match r {
                    Some(r) => {
                        self.record(&c.id, size, &r);
                        r.ok()
                    }
                    None => None,
                };
                match data {
                    Some(d) if d.len() as u64 == c.size => {
                        hasher.update(&d);
                        if let Some(t) = tensors.as_mut() {
                            // `store.get` checked these bytes against the chunk id, so a tensor
                            // that is exactly this chunk needs no second hash.
                            t.update_chunk(c.offset, &d, c.id);
                        }
                    }
                    Some(d) => {
                        whole = false;
                        if reported.insert(c.id) {
                            let detail = format!(
                                "chunk at offset {} holds {} bytes, the manifest says {}",
                                c.offset,
                                d.len(),
                                c.size
                            );
                            self.problem(ProblemKind::SizeMismatch, file, v, Some(c.id), detail);
                        }
                    }
                    None => {
                        whole = false;
                        if reported.insert(c.id) {
                            let (kind, why) = self.seen.get(&c.id).cloned().flatten().unwrap_or((
                                ProblemKind::CorruptObject,
                                "could not be read".to_string(),
                            ));
                            self.problem(kind, file, v, Some(c.id), why);
                        }
                    }
                }
            }
        }
        if whole {
            let actual = hasher.finish();
            if actual != m.sha256 {
                let detail = format!(
                    "the chunks rebuild to content hashing to {actual}, the manifest says {}",
                    m.sha256
                );
                self.problem(ProblemKind::FileHashMismatch, file, v, None, detail);
            } else if let (Some(t), Some(table)) = (tensors, &m.tensors) {
                let Some(actual) = t.finish() else {
                    let detail = "the tensor table does not match the file's layout".to_string();
                    self.problem(ProblemKind::TensorHashMismatch, file, v, None, detail);
                    return;
                };
                for (want, got) in table.iter().zip(actual.iter()) {
                    if want.sha256 != got.sha256 {
                        let detail = format!(
                            "tensor {:?} hashes to {}, the tensor table says {}",
                            want.name, got.sha256, want.sha256
                        );
                        self.problem(ProblemKind::TensorHashMismatch, file, v, None, detail);
                    }
                }
            }
        }
    }
}

impl Repo {
    /// Directory units: each current version's listing must read and validate and every pack and
    /// chunk it names must be in the store (the object pass re-hashes them); older versions'
    /// objects count as referenced.
    fn verify_units(&self, ck: &mut Checker<'_>, referenced: &mut HashSet<ObjectId>) -> Result<()> {
        for unit in self.dir_units()? {
            let d = match self.read_dir_manifest(&unit) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) if e.is_invalid_manifest() => {
                    ck.invalid_manifest(&unit, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            ck.report.files_checked += 1;
            let history = match self.dir_history(&d) {
                Ok(h) => h,
                Err(e) => {
                    ck.problem(
                        ProblemKind::UnreadableVersion,
                        &unit,
                        d.version,
                        None,
                        e.to_string(),
                    );
                    vec![crate::dirunit::DirVersion {
                        version: d.version,
                        manifest: Some(d.manifest.clone()),
                    }]
                }
            };
            for v in history {
                referenced.insert(v.version);
                let current = v.version == d.version;
                let Some(m) = v.manifest else {
                    ck.report.history_notes.push(HistoryNote {
                        file: unit.clone(),
                        version: v.version,
                        chunks_missing: None,
                    });
                    continue;
                };
                if !current {
                    ck.report.versions_checked += 1;
                }
                match self.dir_objects(&m, None) {
                    Ok(Some(objs)) => {
                        let missing: Vec<ObjectId> = objs
                            .iter()
                            .map(|(id, _)| *id)
                            .filter(|id| !self.store().has(id))
                            .collect();
                        referenced.extend(objs.into_iter().map(|(id, _)| id));
                        if missing.is_empty() {
                            continue;
                        }
                        if current {
                            ck.problem(
                                ProblemKind::MissingObject,
                                &unit,
                                v.version,
                                missing.first().copied(),
                                format!("{} pack(s) or chunk(s) of the directory are not in the local store", missing.len()),
                            );
                        } else {
                            ck.report.history_notes.push(HistoryNote {
                                file: unit.clone(),
                                version: v.version,
                                chunks_missing: Some(missing.len()),
                            });
                        }
                    }
                    Ok(None) if current => ck.problem(
                        ProblemKind::MissingObject,
                        &unit,
                        v.version,
                        Some(m.listing),
                        "the directory's listing is not in the local store".into(),
                    ),
                    Ok(None) => ck.report.history_notes.push(HistoryNote {
                        file: unit.clone(),
                        version: v.version,
                        chunks_missing: None,
                    }),
                    Err(e) => {
                        let kind = match e {
                            Error::Store(StoreError::CorruptObject { .. }) => {
                                ProblemKind::CorruptObject
                            }
                            _ => ProblemKind::InvalidManifest,
                        };
                        ck.seen.insert(m.listing, Some((kind, e.to_string())));
                        ck.problem(kind, &unit, v.version, Some(m.listing), e.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Verifies the local store and every manifest. Takes the repository lock (shared).
    pub fn verify(&self, opts: &VerifyOptions<'_>) -> Result<VerifyReport> {
        let _lock = self.lock(false)?;
        let all = self.store().list()?;
        let total: u64 = all
            .iter()
            .filter_map(|id| self.store().encoded_size(id))
            .sum();
        opts.progress.start("verifying objects", total);
        let mut ck = Checker {
            repo: self,
            progress: opts.progress,
            seen: HashMap::new(),
            report: VerifyReport::default(),
        };
        let mut referenced: HashSet<ObjectId> = HashSet::new();
        // (file, version, manifest) of every readable version, newest first per file.
        let mut versions: Vec<(RepoPath, ObjectId, Box<Manifest>)> = Vec::new();
        for path in self.scan_worktree()?.1 {
            let wt = match self.read_worktree_manifest(&path) {
                Ok(Some(wt)) => wt,
                Ok(None) => continue,
                Err(e) if e.is_invalid_manifest() => {
                    ck.invalid_manifest(&path, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            ck.report.files_checked += 1;
            ck.rebuild(&path, wt.version, &wt.manifest);
            for node in self.history(&wt)? {
                let v = node.version();
                referenced.insert(v);
                match node {
                    HistoryNode::Present { manifest, .. } => {
                        referenced.extend(manifest.chunks.iter().map(|c| c.id));
                        if v != wt.version {
                            // Loading it verified the manifest object.
                            ck.record(&v, self.store().encoded_size(&v), &Ok(Vec::new()));
                        }
                        versions.push((path.clone(), v, manifest));
                    }
                    HistoryNode::Missing { .. } => ck.report.history_notes.push(HistoryNote {
                        file: path.clone(),
                        version: v,
                        chunks_missing: None,
                    }),
                    HistoryNode::Unreadable { reason, .. } => {
                        // Reported here with its file; the object pass skips it.
                        ck.seen
                            .insert(v, Some((ProblemKind::UnreadableVersion, reason.clone())));
                        ck.problem(ProblemKind::UnreadableVersion, &path, v, Some(v), reason);
                    }
                }
            }
        }
        self.verify_units(&mut ck, &mut referenced)?;
        // Older versions: chunk presence, or a full rebuild with `all_versions`.
        for (path, v, m) in &versions {
            let current = versions
                .iter()
                .find(|(p, _, _)| p == path)
                .is_some_and(|(_, cv, _)| cv == v);
            if current {
                continue;
            }
            ck.report.versions_checked += 1;
            let missing = self.missing_chunks(m);
            // A chunk moved aside as corrupt is lost here, not merely never fetched: a problem
            // until a good copy is back.
            if let Some(lost) = missing.iter().find(|id| self.store().was_set_aside(id)) {
                ck.problem(
                    ProblemKind::MissingObject,
                    path,
                    *v,
                    Some(*lost),
                    format!(
                        "moved aside to .shard/corrupt/ as corrupt ({} of the version's chunks are not in the local store): `nshard pull --version {}` fetches a good copy",
                        missing.len(),
                        v.short()
                    ),
                );
                continue;
            }
            let missing = missing.len();
            if missing > 0 {
                ck.report.history_notes.push(HistoryNote {
                    file: path.clone(),
                    version: *v,
                    chunks_missing: Some(missing),
                });
            } else if opts.all_versions {
                ck.report.versions_rebuilt += 1;
                ck.rebuild(path, *v, m);
            }
        }
        // Every other object.
        let rest: Vec<ObjectId> = all
            .iter()
            .filter(|id| !ck.seen.contains_key(id))
            .copied()
            .collect();
        let batch = 4 * rayon::current_num_threads().max(1);
        for group in rest.chunks(batch) {
            let results: Vec<(Option<u64>, Result<Vec<u8>>)> = group
                .par_iter()
                .map(|id| {
                    let size = self.store().encoded_size(id);
                    // Only the verdict is kept, not the bytes.
                    let r = self.store().get(id, MAX_OBJECT_SIZE).map(|_| Vec::new());
                    (size, r)
                })
                .collect();
            for (id, (size, r)) in group.iter().zip(results) {
                ck.record(id, size, &r);
                let Some(Some((kind, why))) = ck.seen.get(id).cloned() else {
                    continue;
                };
                // Name the newest version referencing it, if any.
                let owner = versions
                    .iter()
                    .find(|(_, v, m)| v == id || m.chunks.iter().any(|c| c.id == *id));
                ck.report.problems.push(Problem {
                    kind,
                    file: owner.map(|o| o.0.clone()),
                    version: owner.map(|o| o.1),
                    object: Some(*id),
                    detail: why,
                });
            }
        }
        for id in &all {
            if !referenced.contains(id) {
                ck.report.unreferenced_objects += 1;
                ck.report.unreferenced_bytes += self.store().encoded_size(id).unwrap_or(0);
            }
        }
        opts.progress.finish();
        ck.report.ok = ck.report.problems.is_empty();
        Ok(ck.report)
    }
}
