//! `diff`: what changed between two versions of a file, or between its committed version and the
//! working file. Block level (chunks reused, new and dropped) always; tensor level (added, removed,
//! changed, re-typed tensors) when both sides carry a tensor table. Two stored versions are
//! compared from their manifests alone; the working file goes through the same ingest pipeline as
//! a commit, with the old side's own parameters, and nothing is stored.

use std::collections::{HashMap, HashSet};
use std::fs;

use super::stored::StoredSource;
use super::target::Target;
use super::tensor_stats::{self, TensorStats};
use crate::chunk::ChunkParams;
use crate::dirunit::DirStatus;
use crate::error::{Error, Result};
use crate::error::{LookupProblem, ManifestError, RepoError, StoreError};
use crate::formats::plan::Params;
use crate::formats::{self, FileSource, Layout, Parsed, Source};
use crate::id::ObjectId;
use crate::ingest::{self, NoTable};
use crate::manifest::BlockDiff;
use crate::manifest::{chunk_run_digest, ChunkRef, Manifest, TensorEntry};
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::{Repo, WorktreeManifest};
use crate::store::LocalStore;

/// What to compare.
pub struct DiffOptions<'a> {
    /// The old side: a version id or unique prefix. Default: the parent of `to` when `to` is given,
    /// else the committed version (the work-tree manifest).
    pub from: Option<String>,
    /// The new side: a version id or unique prefix. Default: the working file.
    pub to: Option<String>,
    /// Progress of reading the working file.
    pub progress: &'a dyn Progress,
    /// Compute how much each changed tensor changed ([`TensorChange::stats`]): reads both
    /// versions' bytes of the changed tensors from the local store (and the working file).
    pub stats: bool,
    /// Only tensors whose names match.
    pub tensors: Option<&'a TensorGlob>,
}

/// A glob over tensor names (`*` matches across dots): `--tensor 'model.layers.*.q_proj*'`.
#[derive(Clone, Debug)]
pub struct TensorGlob(globset::GlobMatcher);

impl TensorGlob {
    /// Parses `pattern`.
    pub fn new(pattern: &str) -> std::result::Result<Self, String> {
        globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map(|g| TensorGlob(g.compile_matcher()))
            .map_err(|e| format!("invalid tensor pattern {pattern:?}: {e}"))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

/// What one side of a diff is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SideKind {
    /// A stored version.
    Version,
    /// The file in the work tree, as it is now.
    WorkingFile,
    /// Nothing: the old side of a first version.
    None,
}

/// One side of a diff.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiffSide {
    /// What it is.
    pub kind: SideKind,
    /// The version id (stored versions only).
    pub version: Option<ObjectId>,
    /// Commit time (stored versions only).
    pub timestamp: Option<String>,
    /// Commit message (stored versions only).
    pub message: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: usize,
    /// Whole-file SHA-256 (absent for the empty side).
    pub sha256: Option<ObjectId>,
    /// Number of tensors, when this side has a tensor table.
    pub tensors: Option<usize>,
}

/// How one tensor changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TensorChangeKind {
    /// Same name, dtype and shape; different bytes.
    Changed,
    /// Same name; different dtype or shape.
    Retyped,
    /// Only in the new side.
    Added,
    /// Only in the old side.
    Removed,
    /// Same name, dtype, shape and bytes (only in [`TensorDiff::unchanged_tensors`]).
    Unchanged,
}

/// One tensor that is not unchanged.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorChange {
    /// The tensor's name.
    pub name: String,
    /// How it changed.
    pub change: TensorChangeKind,
    /// dtype on the old side.
    pub from_dtype: Option<String>,
    /// Shape on the old side.
    pub from_shape: Option<Vec<u64>>,
    /// Byte size on the old side.
    pub from_size: Option<u64>,
    /// dtype on the new side.
    pub dtype: Option<String>,
    /// Shape on the new side.
    pub shape: Option<Vec<u64>>,
    /// Byte size on the new side.
    pub size: Option<u64>,
    /// How much it changed (changed tensors of a float or quantized dtype, with `stats`).
    #[serde(flatten)]
    pub stats: Option<TensorStats>,
    /// Why a changed tensor has no figures (with `stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_note: Option<String>,
    /// Its position in its side's file (the new side's; the old side's for a removed tensor).
    #[serde(skip)]
    pub index: usize,
}

impl TensorChange {
    /// NaN and ±Inf values in the new side, when it has float figures.
    pub fn non_finite(&self) -> u64 {
        match &self.stats {
            Some(TensorStats::Float(f)) => f.non_finite,
            _ => 0,
        }
    }
}

/// Tensor-level changes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TensorDiff {
    /// Tensors in the new side.
    pub total: usize,
    /// Tensors with the same name, dtype, shape and bytes on both sides.
    pub unchanged: usize,
    /// Tensors whose bytes changed.
    pub changed: usize,
    /// Tensors whose dtype or shape changed.
    pub retyped: usize,
    /// Tensors only in the new side.
    pub added: usize,
    /// Tensors only in the old side.
    pub removed: usize,
    /// New-side bytes of the changed and re-typed tensors.
    pub changed_bytes: u64,
    /// Bytes of the added tensors.
    pub added_bytes: u64,
    /// Old-side bytes of the removed tensors.
    pub removed_bytes: u64,
    /// Every tensor that is not unchanged: changed, re-typed, added (new-side file order), then
    /// removed (old-side file order).
    pub entries: Vec<TensorChange>,
    /// The unchanged tensors, in new-side file order (for reports that draw every tensor).
    #[serde(skip)]
    pub unchanged_tensors: Vec<TensorChange>,
}

/// The diff of one file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileDiff {
    /// The data file.
    pub path: RepoPath,
    /// The old side.
    pub from: DiffSide,
    /// The new side.
    pub to: DiffSide,
    /// Block-level changes.
    pub blocks: BlockDiff,
    /// Tensor-level changes, when both sides have a tensor table.
    pub tensors: Option<TensorDiff>,
    /// Why there is no tensor-level diff.
    pub tensors_unavailable: Option<String>,
}

/// One side, as loaded.
struct Loaded {
    side: DiffSide,
    chunks: Vec<ChunkRef>,
    tensors: std::result::Result<Vec<TensorEntry>, String>,
}

impl Repo {
    /// Compares two versions of `path`, or a version with the working file.
    pub fn diff(&self, path: &RepoPath, opts: &DiffOptions<'_>) -> Result<FileDiff> {
        let wt = self.require_manifest(path)?;
        let to = match &opts.to {
            Some(p) => Some(self.resolve_version(&wt, path, p)?),
            None => None,
        };
        let from = match (&opts.from, &to) {
            (Some(p), _) => Some(self.resolve_version(&wt, path, p)?),
            (None, None) => Some((wt.version, wt.manifest.clone())),
            (None, Some((v, m))) => match m.version.parent {
                None => None,
                Some(parent) => match self.load_version(&parent) {
                    Ok(pm) => Some((parent, pm)),
                    Err(Error::Store(StoreError::ObjectMissing(_))) => {
                        return Err(Error::Repo(RepoError::VersionLookup {
                            prefix: v.short(),
                            problem: LookupProblem::ParentNotLocal(parent),
                        }))
                    }
                    Err(e) => return Err(e),
                },
            },
        };
        let old = match &from {
            Some((v, m)) => self.loaded_version(*v, m),
            None => Loaded {
                side: DiffSide {
                    kind: SideKind::None,
                    version: None,
                    timestamp: None,
                    message: None,
                    size: 0,
                    chunks: 0,
                    sha256: None,
                    tensors: None,
                },
                chunks: Vec::new(),
                tensors: Ok(Vec::new()),
            },
        };
        let new = match &to {
            Some((v, m)) => self.loaded_version(*v, m),
            None => {
                let base = from.as_ref().map(|f| &f.1);
                let params = base.map_or(wt.manifest.chunking, |m| m.chunking);
                let scan = self.scan_working_file(path, params, opts.progress)?;
                let tensors = scan.tensors.map_err(|why| why.describe("the working file"));
                Loaded {
                    side: DiffSide {
                        kind: SideKind::WorkingFile,
                        version: None,
                        timestamp: None,
                        message: None,
                        size: scan.size,
                        chunks: scan.chunks.len(),
                        sha256: Some(scan.sha256),
                        tensors: tensors.as_ref().ok().map(Vec::len),
                    },
                    chunks: scan.chunks,
                    tensors,
                }
            }
        };
        let blocks = block_diff(&old, &new);
        let (mut tensors, tensors_unavailable) = match (&old.tensors, &new.tensors) {
            (Ok(a), Ok(b)) => (Some(tensor_diff((a, &old.chunks), (b, &new.chunks))), None),
            (_, Err(e)) | (Err(e), _) => (None, Some(e.clone())),
        };
        if let (Some(td), Some(glob)) = (&mut tensors, opts.tensors) {
            td.entries.retain(|e| glob.matches(&e.name));
            td.unchanged_tensors.retain(|e| glob.matches(&e.name));
        }
        if let (true, Some(td), Some((fv, fm)), Ok(ot), Ok(nt)) =
            (opts.stats, &mut tensors, &from, &old.tensors, &new.tensors)
        {
            let new_bytes = match &to {
                Some((tv, tm)) => Bytes::Stored(*tv, tm),
                None => {
                    let abs = path.to_path(self.root());
                    let file = fs::File::open(&abs).map_err(Error::io("opening", &abs))?;
                    Bytes::File(file, new.side.size, abs)
                }
            };
            self.fill_stats(path, td, (ot, Bytes::Stored(*fv, fm)), (nt, new_bytes))?;
        }
        Ok(FileDiff {
            path: path.clone(),
            from: old.side,
            to: new.side,
            blocks,
            tensors,
            tensors_unavailable,
        })
    }

    /// A version of `path` by full id (even outside the work tree's history, if stored) or by a
    /// unique prefix within its history.
    fn resolve_version(
        &self,
        wt: &WorktreeManifest,
        path: &RepoPath,
        prefix: &str,
    ) -> Result<(ObjectId, Manifest)> {
        let full = ObjectId::parse(prefix)
            .ok()
            .filter(|id| *id == wt.version || self.store().has(id));
        let v = match full {
            Some(id) => id,
            None => self.find_version(wt, prefix)?,
        };
        Ok((v, self.version_manifest(wt, path, &v)?))
    }

    fn loaded_version(&self, v: ObjectId, m: &Manifest) -> Loaded {
        Loaded {
            side: DiffSide {
                kind: SideKind::Version,
                version: Some(v),
                timestamp: Some(m.version.timestamp.clone()),
                message: Some(m.version.message.clone()),
                size: m.size,
                chunks: m.chunks.len(),
                sha256: Some(m.sha256),
                tensors: m.tensors.as_ref().map(Vec::len),
            },
            chunks: m.chunks.clone(),
            tensors: match &m.tensors {
                Some(t) => Ok(t.clone()),
                None => Err(self.why_no_tensors(v, m)),
            },
        }
    }

    /// Explains a version without a tensor table, from its header if its chunks are local.
    fn why_no_tensors(&self, v: ObjectId, m: &Manifest) -> String {
        let name = format!("version {}", v.short());
        let parsed = formats::parse_any(&mut StoredSource::new(self.store(), m));
        let why = match parsed {
            Err(e) => {
                return format!(
                    "{name} has no tensor table (it was not recognised as a model file when \
                     committed; its header cannot be read to say why: {e})"
                )
            }
            Ok(Parsed::Unrecognized) => NoTable::Unrecognized,
            Ok(Parsed::Invalid(kind, why)) => NoTable::Invalid(kind, why),
            Ok(Parsed::Layout(layout)) => match table_limits(&layout, m.size) {
                Err(why) => NoTable::Limits(why),
                Ok(()) => {
                    return format!(
                        "{name} has no tensor table (committed by an nshard that did not \
                         record tensors for this format)"
                    )
                }
            },
        };
        why.describe(&name)
    }

    /// Chunks and hashes the working file of `path` with `params` through the ingest pipeline,
    /// storing nothing.
    fn scan_working_file(
        &self,
        path: &RepoPath,
        params: ChunkParams,
        progress: &dyn Progress,
    ) -> Result<ingest::Ingested> {
        let abs = path.to_path(self.root());
        let md0 = match fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Repo(RepoError::NotTracked {
                    path: abs,
                    reason: crate::error::Untracked::NotInWorkTree,
                }))
            }
            Err(e) => return Err(Error::io("reading", &abs)(e)),
        };
        if !md0.is_file() {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: path.to_string(),
                reason: "is not a regular file (symlinks are not followed)",
            }));
        }
        ingest::ingest_file(
            &abs,
            &ingest::Options {
                params: Params::Exact(params),
                store: None,
                progress,
                label: path.as_str(),
                trust_ctime: self.trust_ctime(),
                sync_dirs: true,
            },
        )
    }
}

/// Where one side's bytes are read from, for figures.
pub(super) enum Bytes<'a> {
    /// A stored version.
    Stored(ObjectId, &'a Manifest),
    /// The working file (open), its size at the scan, and its path.
    File(fs::File, u64, std::path::PathBuf),
}

impl Bytes<'_> {
    fn source<'s>(&'s self, store: &'s LocalStore) -> Box<dyn Source + Send + 's> {
        match self {
            Bytes::Stored(_, m) => Box::new(StoredSource::new(store, m)),
            Bytes::File(f, size, _) => Box::new(FileSource::new(f, *size)),
        }
    }

    /// The chunks of a stored side that cover `ranges` and are not in the local store.
    fn missing<'r>(
        &self,
        store: &LocalStore,
        ranges: impl Iterator<Item = (u64, u64)> + 'r,
    ) -> Vec<ObjectId> {
        let Bytes::Stored(_, m) = self else {
            return Vec::new();
        };
        let mut out: Vec<ObjectId> = Vec::new();
        for (offset, size) in ranges {
            let first = m.chunks.partition_point(|c| c.offset + c.size <= offset);
            for c in m.chunks[first..]
                .iter()
                .take_while(|c| c.offset < offset + size)
            {
                if !out.contains(&c.id) && !store.has(&c.id) {
                    out.push(c.id);
                }
            }
        }
        out
    }

    /// The offsets of the chunks that start inside `offset..offset + size` (none for the working
    /// file).
    fn chunk_starts(&self, offset: u64, size: u64) -> impl Iterator<Item = u64> + '_ {
        let chunks = match self {
            Bytes::Stored(_, m) => &m.chunks[..],
            Bytes::File(..) => &[],
        };
        let first = chunks.partition_point(|c| c.offset <= offset);
        chunks[first..]
            .iter()
            .take_while(move |c| c.offset < offset + size)
            .map(|c| c.offset)
    }

    /// Names this side in errors.
    fn describe(&self, path: &RepoPath) -> std::path::PathBuf {
        match self {
            Bytes::Stored(v, _) => format!("{path} (version {})", v.short()).into(),
            Bytes::File(_, _, abs) => abs.clone(),
        }
    }
}

impl Repo {
    /// Fills [`TensorChange::stats`] for the changed tensors of `d`, reading both sides' bytes
    /// (several tensors at once). Fails, before reading anything, when a chunk they need is not
    /// in the local store.
    pub(super) fn fill_stats(
        &self,
        path: &RepoPath,
        d: &mut TensorDiff,
        (old_table, old): (&[TensorEntry], Bytes<'_>),
        (new_table, new): (&[TensorEntry], Bytes<'_>),
    ) -> Result<()> {
        use rayon::prelude::*;
        let old_by: HashMap<&str, &TensorEntry> =
            old_table.iter().map(|t| (t.name.as_str(), t)).collect();
        let new_by: HashMap<&str, &TensorEntry> =
            new_table.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut todo = Vec::new();
        for (i, e) in d.entries.iter_mut().enumerate() {
            if e.change != TensorChangeKind::Changed {
                continue;
            }
            match (old_by.get(e.name.as_str()), new_by.get(e.name.as_str())) {
                (Some(o), Some(n)) if tensor_stats::has_stats(&n.dtype) => todo.push((i, *o, *n)),
                _ => {
                    e.stats_note = Some(format!(
                        "{}: no figures for this dtype (its bytes changed)",
                        e.dtype.as_deref().unwrap_or("?")
                    ))
                }
            }
        }
        let store = self.store();
        for (side, pick) in [(&old, 1), (&new, 2)] {
            let missing = side.missing(
                store,
                todo.iter().map(|(_, o, n)| {
                    let t = if pick == 1 { o } else { n };
                    (t.offset, t.size)
                }),
            );
            if let Some(first) = missing.first() {
                return Err(Error::Repo(RepoError::ChunksMissing {
                    path: side.describe(path).display().to_string(),
                    count: missing.len(),
                    first: *first,
                }));
            }
        }
        // Tasks of one chunk of the new side each (a tensor is often one chunk, a large one
        // many): both cores stay busy to the end, and each task's sources load each chunk once.
        let mut tasks = Vec::new();
        for (k, (_, _, n)) in todo.iter().enumerate() {
            let unit = tensor_stats::unit_of(&n.dtype).unwrap_or(1).max(1);
            let mut cuts: Vec<u64> = new
                .chunk_starts(n.offset, n.size)
                .map(|c| (c - n.offset) / unit * unit)
                .filter(|c| *c > 0 && *c < n.size)
                .collect();
            cuts.dedup();
            let mut at = 0;
            for c in cuts.into_iter().chain([n.size]) {
                if c > at {
                    tasks.push((k, at, c - at));
                    at = c;
                }
            }
        }
        let parts: Vec<Result<Option<tensor_stats::Partial>>> = tasks
            .par_iter()
            .map(|(k, at, len)| {
                let (_, o, n) = todo[*k];
                let (mut a, mut b) = (old.source(store), new.source(store));
                tensor_stats::compare_part(&mut *a, o, &mut *b, n, (*at, *len))
                    .map_err(|e| Error::io("reading", new.describe(path).join(&n.name))(e))
            })
            .collect();
        let mut merged: Vec<Option<tensor_stats::Partial>> = todo.iter().map(|_| None).collect();
        for ((k, _, _), part) in tasks.iter().zip(parts) {
            match (&mut merged[*k], part?) {
                (Some(m), Some(p)) => m.merge(p),
                (slot @ None, p) => *slot = p,
                (Some(_), None) => {}
            }
        }
        for ((i, _, n), m) in todo.iter().zip(merged) {
            d.entries[*i].stats = m.and_then(|m| m.finish(n));
        }
        Ok(())
    }
}

/// Checks a layout's table against the manifest limits (names, counts, …) without hashing it.
fn table_limits(layout: &Layout, size: u64) -> std::result::Result<(), String> {
    let zero = ObjectId::from_digest([0; 32]);
    let table: Vec<TensorEntry> = layout
        .tensors
        .iter()
        .map(|t| TensorEntry {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            offset: t.start,
            size: t.end - t.start,
            sha256: zero,
            digest: Default::default(),
        })
        .collect();
    ingest::checked_table(table, size).map(|_| ())
}

fn block_diff(old: &Loaded, new: &Loaded) -> BlockDiff {
    let pairs = |l: &Loaded| l.chunks.iter().map(|c| (c.id, c.size)).collect::<Vec<_>>();
    let mut d = BlockDiff::between(&pairs(old), &pairs(new), new.side.size);
    d.identical = old.side.sha256.is_some() && old.side.sha256 == new.side.sha256;
    d
}

/// Whether tensor `o` of the old side and `t` of the new side (same name, dtype and shape) hold
/// the same bytes. Entries identified the same way compare directly; otherwise (a format 1
/// table against a chunk-digest one) both are compared by the ids of the chunks that cover them,
/// from each side's chunk list: equal when both are whole runs of the same chunks.
fn same_bytes(o: &TensorEntry, oc: &[ChunkRef], t: &TensorEntry, tc: &[ChunkRef]) -> bool {
    if o.digest == t.digest {
        return o.sha256 == t.sha256;
    }
    let a = chunk_run_digest(oc, o.offset, o.size);
    a.is_some() && a == chunk_run_digest(tc, t.offset, t.size)
}

/// Tensor-level changes between two (table, chunk list) sides.
pub(super) fn tensor_diff(
    (old, old_chunks): (&[TensorEntry], &[ChunkRef]),
    (new, new_chunks): (&[TensorEntry], &[ChunkRef]),
) -> TensorDiff {
    let by_name: HashMap<&str, &TensorEntry> = old.iter().map(|t| (t.name.as_str(), t)).collect();
    let new_names: HashSet<&str> = new.iter().map(|t| t.name.as_str()).collect();
    let mut d = TensorDiff {
        total: new.len(),
        ..TensorDiff::default()
    };
    let (mut changed, mut retyped, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for (index, t) in new.iter().enumerate() {
        let entry = |change, o: Option<&TensorEntry>| TensorChange {
            index,
            name: t.name.clone(),
            change,
            from_dtype: o.map(|o| o.dtype.clone()),
            from_shape: o.map(|o| o.shape.clone()),
            from_size: o.map(|o| o.size),
            dtype: Some(t.dtype.clone()),
            shape: Some(t.shape.clone()),
            size: Some(t.size),
            stats: None,
            stats_note: None,
        };
        match by_name.get(t.name.as_str()) {
            None => {
                d.added += 1;
                d.added_bytes += t.size;
                added.push(entry(TensorChangeKind::Added, None));
            }
            Some(o) if o.dtype != t.dtype || o.shape != t.shape => {
                d.retyped += 1;
                d.changed_bytes += t.size;
                retyped.push(entry(TensorChangeKind::Retyped, Some(o)));
            }
            Some(o) if !same_bytes(o, old_chunks, t, new_chunks) => {
                d.changed += 1;
                d.changed_bytes += t.size;
                changed.push(entry(TensorChangeKind::Changed, Some(o)));
            }
            Some(_) => {
                d.unchanged += 1;
                d.unchanged_tensors.push(entry(
                    TensorChangeKind::Unchanged,
                    by_name.get(t.name.as_str()).copied(),
                ));
            }
        }
    }
    let removed = old
        .iter()
        .enumerate()
        .filter(|(_, o)| !new_names.contains(o.name.as_str()))
        .map(|(index, o)| {
            d.removed += 1;
            d.removed_bytes += o.size;
            TensorChange {
                index,
                name: o.name.clone(),
                change: TensorChangeKind::Removed,
                from_dtype: Some(o.dtype.clone()),
                from_shape: Some(o.shape.clone()),
                from_size: Some(o.size),
                dtype: None,
                shape: None,
                size: None,
                stats: None,
                stats_note: None,
            }
        })
        .collect::<Vec<_>>();
    d.entries = [changed, retyped, added, removed].concat();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dtype: &str, shape: &[u64], offset: u64, content: &[u8]) -> TensorEntry {
        TensorEntry {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
            offset,
            size: shape.iter().product::<u64>(),
            sha256: ObjectId::of(content),
            digest: Default::default(),
        }
    }

    #[test]
    fn tensor_diff_classifies_every_kind() {
        let old = vec![
            t("a", "U8", &[4], 0, b"a"),
            t("b", "U8", &[4], 4, b"b"),
            t("c", "U8", &[4], 8, b"c"),
            t("gone", "U8", &[2], 12, b"g"),
        ];
        let new = vec![
            t("a", "U8", &[4], 0, b"a"),
            t("b", "U8", &[4], 4, b"B"),
            t("c", "U8", &[2, 3], 8, b"c"),
            t("fresh", "U8", &[5], 14, b"f"),
        ];
        let d = tensor_diff((&old, &[]), (&new, &[]));
        assert_eq!(
            (
                d.total,
                d.unchanged,
                d.changed,
                d.retyped,
                d.added,
                d.removed
            ),
            (4, 1, 1, 1, 1, 1)
        );
        assert_eq!(
            (d.changed_bytes, d.added_bytes, d.removed_bytes),
            (10, 5, 2)
        );
        let kinds: Vec<_> = d
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.change))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b", TensorChangeKind::Changed),
                ("c", TensorChangeKind::Retyped),
                ("fresh", TensorChangeKind::Added),
                ("gone", TensorChangeKind::Removed)
            ]
        );
    }
}

/// What changed in one target.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Diff {
    /// A data file: blocks and tensors.
    File(Box<FileDiff>),
    /// A directory unit: files added, removed and modified.
    Unit(DirStatus),
}

impl Repo {
    /// `diff` of one target, with the same version options for files and units.
    pub fn diff_target(&self, target: &Target, opts: &DiffOptions<'_>) -> Result<Diff> {
        match target {
            Target::File(p) => self.diff(p, opts).map(|d| Diff::File(Box::new(d))),
            Target::Unit { unit, sub } => self
                .dir_diff_versions(
                    unit,
                    sub.as_deref(),
                    opts.from.as_deref(),
                    opts.to.as_deref(),
                )
                .map(Diff::Unit),
        }
    }
}
