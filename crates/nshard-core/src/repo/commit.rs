//! `commit`: chunk, hash, compress and store every changed tracked file, then write its manifest.
//!
//! One file is processed by a small pipeline: the calling thread reads and cuts chunks; one thread
//! computes the whole-file SHA-256 over the chunks in order; a pool of workers hashes each chunk,
//! and encodes and stages (with `O_DIRECT` where possible) only the chunks the store does not have
//! yet; syncer threads fsync and rename staged objects into place. For a safetensors file a tensor
//! thread builds the tensor table from the chunks in order, taking each chunk's id from its worker
//! so that unchanged tensors are not hashed again (see `tensors::TensorHasher`). Queues are
//! bounded, so memory stays bounded by a few maximum-size chunks whatever the file size.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::statcache::{now_ns, StatCache, StatEntry, StatKey};
use super::Repo;
use crate::chunk::{ChunkParams, ChunkReader, Cutter, LayoutMode, RawChunk};
use crate::codec::{DataHint, Encoder};
use crate::direct::DirectBuf;
use crate::error::{Error, Result};
use crate::formats::safetensors::Layout;
use crate::fsutil::{self, RepoPath};
use crate::id::{Hasher, ObjectId};
use crate::manifest::{
    ChunkRef, Manifest, TensorEntry, VersionInfo, FORMAT, MAX_MANIFEST_BYTES, MAX_MESSAGE_BYTES,
};
use crate::progress::Progress;
use crate::store::StagedObject;

/// Options of a commit.
pub struct CommitOptions<'a> {
    /// The commit message (required, non-empty).
    pub message: String,
    /// Restrict the commit to these tracked files (empty: all tracked files).
    pub paths: Vec<RepoPath>,
    /// Commit files that hold an older committed version than their manifest (a revert); without
    /// it they are refused, so a stale file after `git pull` never silently undoes a newer version.
    pub force: bool,
    /// Progress sink.
    pub progress: &'a dyn Progress,
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum CommitOutcome {
    /// A new version was recorded.
    Committed {
        /// The new version id.
        version: ObjectId,
        /// The previous version, if any.
        parent: Option<ObjectId>,
        /// File size in bytes.
        size: u64,
        /// Number of chunks in the file.
        chunks_total: usize,
        /// Chunks that were not in the store before.
        chunks_new: usize,
        /// Chunks already in the store (earlier versions, other files, repeats in this file).
        chunks_reused: usize,
        /// Raw bytes of the new chunks.
        new_bytes: u64,
        /// Bytes written to the store for the new chunks (after compression).
        stored_bytes: u64,
    },
    /// The file matches its committed version; nothing was written.
    Unchanged {
        /// The current version id.
        version: ObjectId,
    },
}

/// The result for one file.
#[derive(Debug)]
pub struct FileCommit {
    /// The data file.
    pub path: RepoPath,
    /// What happened, or why it failed (other files are still committed).
    pub result: Result<CommitOutcome>,
}

/// New objects waiting to be fsynced (bounds the unsynced data to a few chunks).
const SYNC_QUEUE: usize = 8;
/// Threads that fsync and rename new objects.
const SYNCERS: usize = 2;

struct Stored {
    chunks: Vec<ChunkRef>,
    sha256: ObjectId,
    size: u64,
    chunks_new: usize,
    new_bytes: u64,
    stored_bytes: u64,
    /// Per-tensor hashes, for a file that parsed as safetensors.
    tensors: Option<Vec<TensorEntry>>,
}

impl Repo {
    /// Commits the tracked files (or `opts.paths`). Takes the repository lock.
    pub fn commit(&self, opts: &CommitOptions<'_>) -> Result<Vec<FileCommit>> {
        let message = opts.message.trim().to_string();
        if message.is_empty() || message.len() > MAX_MESSAGE_BYTES {
            return Err(Error::InvalidManifest {
                path: "commit message".into(),
                reason: "must be non-empty and at most 64 KiB".into(),
            });
        }
        let _lock = self.lock(true)?;
        let tracked = self.tracked_files()?;
        let targets = if opts.paths.is_empty() {
            tracked
        } else {
            for p in &opts.paths {
                if !self.is_tracked(p) {
                    return Err(Error::NotTracked {
                        path: p.as_str().into(),
                        reason: "is not tracked; run `nshard track` first",
                    });
                }
            }
            opts.paths.clone()
        };
        let mut cache = StatCache::load(&self.dot.join("cache").join("stat.json"));
        let mut out = Vec::new();
        for path in targets {
            let result = self.commit_file(&path, &message, &mut cache, opts);
            out.push(FileCommit { path, result });
            cache.save()?;
        }
        // Files that appeared under a tracked directory or glob since `track` ran must not reach
        // git either.
        if self.is_git_repo() {
            self.sync_gitignore()?;
        }
        Ok(out)
    }

    fn commit_file(
        &self,
        path: &RepoPath,
        message: &str,
        cache: &mut StatCache,
        opts: &CommitOptions<'_>,
    ) -> Result<CommitOutcome> {
        let progress = opts.progress;
        let abs = fsutil::existing_file_in(&self.root, path)?;
        let md0 = fs::symlink_metadata(&abs).map_err(Error::io("reading", &abs))?;
        let parent = self.read_worktree_manifest(path)?;
        let outdated = |sha: &ObjectId, cache: &StatCache| -> Result<()> {
            match (cache.get(path.as_str()), &parent) {
                (Some(e), Some(p)) if !opts.force && e.sha256 == *sha && e.version != p.version => {
                    Err(Error::Outdated {
                        path: path.to_string(),
                        file_version: e.version,
                        manifest_version: p.version,
                        file_is: self.version_order(p, &e.version)?,
                    })
                }
                _ => Ok(()),
            }
        };
        if let (Some(entry), Some(p)) = (cache.fresh(path.as_str(), &md0), &parent) {
            // Unchanged, unless the store lost some of its chunks (gc'd, or quarantined as
            // corrupt): then the file is read again, which re-stores them.
            if entry.sha256 == p.manifest.sha256 && self.missing_chunks(&p.manifest).is_empty() {
                return Ok(CommitOutcome::Unchanged { version: p.version });
            }
            outdated(&entry.sha256, cache)?;
        }
        let observed = now_ns();
        let file = File::open(&abs).map_err(Error::io("opening", &abs))?;
        let md1 = file.metadata().map_err(Error::io("reading", &abs))?;
        let params = self.config.chunking;
        // Tensor-aligned segments for safetensors files (reads the header only); plain otherwise.
        let mut plan =
            crate::layout::plan(&file, md1.len(), params).map_err(Error::io("reading", &abs))?;
        // Header only: the tensors themselves are hashed from the chunks as they stream past.
        let layout = match plan.safetensors.take() {
            Some(l) => Some(l),
            None if params.layout() == LayoutMode::None => {
                super::tensors::read_layout(&file, md1.len())
                    .map_err(Error::io("reading", &abs))?
                    .ok()
            }
            None => None,
        };
        progress.start(path.as_str(), md1.len());
        let stored = self.store_chunks(
            file,
            params,
            plan.segments,
            layout,
            parent.as_ref().map(|p| &p.manifest),
            progress,
        );
        progress.finish();
        let stored = stored.map_err(|e| match e {
            Error::Io { action, source, .. } => Error::Io {
                action,
                path: abs.clone(),
                source,
            },
            e => e,
        })?;
        // The file must be the same before and after reading, and still be at its path.
        let changed = Error::FileChangedDuringRead(abs.clone());
        let md_after = fs::symlink_metadata(&abs).map_err(|_| changed)?;
        if StatKey::of(&md1) != StatKey::of(&md_after) || stored.size != md1.len() {
            return Err(Error::FileChangedDuringRead(abs));
        }
        outdated(&stored.sha256, cache)?;
        if let Some(p) = &parent {
            if p.manifest.sha256 == stored.sha256 && p.manifest.chunks == stored.chunks {
                cache.set(
                    path.as_str(),
                    StatEntry::new(&md1, stored.sha256, p.version, observed),
                );
                return Ok(CommitOutcome::Unchanged { version: p.version });
            }
        }
        let tensors = stored
            .tensors
            .and_then(|t| super::tensors::checked(t, stored.size).ok());
        let mut manifest = Manifest {
            format: FORMAT.to_string(),
            path: path.clone(),
            size: stored.size,
            sha256: stored.sha256,
            chunking: plan.chunking,
            chunks: stored.chunks,
            version: VersionInfo {
                message: message.to_string(),
                timestamp: Manifest::now_timestamp(),
                parent: parent.as_ref().map(|p| p.version),
            },
            tensors,
        };
        let mut bytes = manifest.to_bytes();
        if bytes.len() as u64 > MAX_MANIFEST_BYTES && manifest.tensors.take().is_some() {
            // A tensor table too large for a manifest is left out rather than making it unreadable.
            bytes = manifest.to_bytes();
        }
        let version = ObjectId::of(&bytes);
        // The manifest object is stored before the work-tree manifest names it: a crash in between
        // leaves an unreferenced object, never a manifest pointing at nothing.
        let enc = Encoder::new().encode(&bytes, DataHint::Unknown);
        self.store.put_trusted(&version, &enc)?;
        let mpath = path.manifest_path();
        let mabs = fsutil::prepare_safe_destination(&self.root, &mpath)?;
        fsutil::write_atomic(&mabs, &bytes)?;
        cache.set(
            path.as_str(),
            StatEntry::new(&md1, stored.sha256, version, observed),
        );
        let total = manifest.chunks.len();
        Ok(CommitOutcome::Committed {
            version,
            parent: manifest.version.parent,
            size: stored.size,
            chunks_total: total,
            chunks_new: stored.chunks_new,
            chunks_reused: total - stored.chunks_new,
            new_bytes: stored.new_bytes,
            stored_bytes: stored.stored_bytes,
        })
    }

    /// The pipeline: cut on this thread, whole-file hash on one thread, chunk hash + encode + store
    /// on the workers.
    fn store_chunks(
        &self,
        file: File,
        params: ChunkParams,
        segments: Vec<crate::chunk::Segment>,
        layout: Option<Layout>,
        parent: Option<&Manifest>,
        progress: &dyn Progress,
    ) -> Result<Stored> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let abort = AtomicBool::new(false);
        // Each job carries a one-shot channel on which its worker reports the chunk's id to the
        // tensor thread, which needs the ids in file order.
        type Job = (usize, Arc<RawChunk>, Option<mpsc::SyncSender<ObjectId>>);
        // (index, chunk ref, newly stored, encoded bytes written)
        type Done = Result<(usize, ChunkRef, bool, u64)>;
        type ToSync = (usize, ChunkRef, StagedObject, u64);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers);
        let job_rx = Mutex::new(job_rx);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<RawChunk>>(2);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        // New objects are written unsynced by the workers and fsynced + renamed into place by the
        // syncers, so that hashing and compression go on while the disk catches up. Each fan-out
        // directory is fsynced once at the end, before the manifest can refer to its objects.
        let (sync_tx, sync_rx) = mpsc::sync_channel::<ToSync>(SYNC_QUEUE);
        let sync_rx = Mutex::new(sync_rx);
        std::thread::scope(|s| {
            let hasher = s.spawn(move || {
                let mut h = Hasher::new();
                for c in hash_rx {
                    h.update(&c.data);
                }
                h.finish()
            });
            for _ in 0..SYNCERS {
                let (sync_rx, done_tx) = (&sync_rx, done_tx.clone());
                s.spawn(move || loop {
                    let next = sync_rx.lock().expect("sync queue lock").recv();
                    let Ok((idx, cref, staged, len)) = next else {
                        break;
                    };
                    let r = staged
                        .persist()
                        .map(|new| (idx, cref, new, if new { len } else { 0 }));
                    if done_tx.send(r).is_err() {
                        break;
                    }
                });
            }
            // Tensor hashes on their own thread, from the same chunks: no second read of the file.
            // Unchanged tensors take their hash from the chunk ids (see `TensorHasher`), so a
            // new version hashes only the tensors that changed; re-reading is for the rare tensor
            // whose first chunks match the previous version and a later one does not.
            let mut tensor_tx = None;
            let reread_file = match &layout {
                Some(_) => Some(file.try_clone().map_err(Error::io("reading", ""))?),
                None => None,
            };
            let tensor_job = layout.map(|l| {
                // Deep enough that every worker can hash a chunk while the tensor thread waits.
                let (tx, rx) =
                    mpsc::sync_channel::<(Arc<RawChunk>, mpsc::Receiver<ObjectId>)>(2 * workers);
                tensor_tx = Some(tx);
                s.spawn(move || {
                    let mut t = super::tensors::TensorHasher::new(l.tensors);
                    if let (Some(p), Some(f)) = (parent, reread_file) {
                        t = t.with_parent(
                            p,
                            Box::new(move |start, end, h| reread(&f, start, end, h)),
                        );
                    }
                    for (c, id_rx) in rx {
                        match id_rx.recv() {
                            Ok(id) => t.update_chunk(c.offset, &c.data, id),
                            // The commit was aborted: no table.
                            Err(_) => return None,
                        }
                    }
                    t.finish()
                })
            });
            for _ in 0..workers {
                let (job_rx, done_tx, sync_tx, abort) =
                    (&job_rx, done_tx.clone(), sync_tx.clone(), &abort);
                s.spawn(move || {
                    let mut enc = Encoder::new();
                    let mut dbuf = DirectBuf::default();
                    loop {
                        let job = job_rx.lock().expect("job queue lock").recv();
                        let Ok((idx, chunk, id_tx)) = job else { break };
                        if abort.load(Ordering::Relaxed) {
                            continue;
                        }
                        let cref = ChunkRef {
                            id: ObjectId::of(&chunk.data),
                            offset: chunk.offset,
                            size: chunk.data.len() as u64,
                        };
                        if let Some(tx) = id_tx {
                            // Capacity 1 and sent once: never blocks.
                            let _ = tx.try_send(cref.id);
                        }
                        let staged = if self.store.has(&cref.id) {
                            Ok(None)
                        } else {
                            let bytes = enc.encode(&chunk.data, chunk.hint);
                            let len = bytes.len() as u64;
                            self.store
                                .stage(&cref.id, &bytes, &mut dbuf)
                                .map(|s| s.map(|s| (s, len)))
                        };
                        let sent = match staged {
                            Ok(Some((st, len))) => sync_tx.send((idx, cref, st, len)).is_ok(),
                            Ok(None) => done_tx.send(Ok((idx, cref, false, 0))).is_ok(),
                            Err(e) => {
                                abort.store(true, Ordering::Relaxed);
                                done_tx.send(Err(e)).is_ok()
                            }
                        };
                        if !sent {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            drop(sync_tx);
            let mut reader = ChunkReader::new(file, Cutter::new(params), segments);
            let mut read_err = None;
            let mut count = 0usize;
            while !abort.load(Ordering::Relaxed) {
                match reader.next_chunk() {
                    Ok(Some(c)) => {
                        let n = c.data.len() as u64;
                        let c = Arc::new(c);
                        let mut id_tx = None;
                        let tensor_sent = tensor_tx.as_ref().is_none_or(|tx| {
                            let (itx, irx) = mpsc::sync_channel(1);
                            id_tx = Some(itx);
                            tx.send((Arc::clone(&c), irx)).is_ok()
                        });
                        if hash_tx.send(Arc::clone(&c)).is_err()
                            || !tensor_sent
                            || job_tx.send((count, c, id_tx)).is_err()
                        {
                            break;
                        }
                        count += 1;
                        progress.advance(n);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        read_err = Some(e);
                        break;
                    }
                }
            }
            drop(job_tx);
            drop(hash_tx);
            drop(tensor_tx);
            let size = reader.bytes_read();
            let sha256 = hasher.join().expect("hasher thread");
            let tensors = tensor_job.and_then(|j| j.join().expect("tensor hasher thread"));
            let mut slots: Vec<Option<ChunkRef>> = vec![None; count];
            let mut first_err = None;
            let (mut chunks_new, mut new_bytes, mut stored_bytes) = (0, 0, 0);
            for d in done_rx {
                match d {
                    Ok((i, cref, new, bytes)) => {
                        if new {
                            chunks_new += 1;
                            new_bytes += cref.size;
                            stored_bytes += bytes;
                        }
                        slots[i] = Some(cref);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = read_err {
                return Err(Error::io("reading", "")(e));
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            let chunks: Vec<ChunkRef> = slots
                .into_iter()
                .map(|c| c.expect("every chunk was processed"))
                .collect();
            // Make every object the manifest will name durable, including ones an earlier,
            // interrupted commit renamed into place without reaching its directory fsync: fsync
            // each fan-out directory involved (at most 256, cheap when clean) and `objects/`
            // itself, which may have gained fan-out directories.
            let dirs: BTreeSet<PathBuf> = chunks
                .iter()
                .filter_map(|c| self.store.path_of(&c.id).parent().map(PathBuf::from))
                .collect();
            for dir in &dirs {
                fsutil::sync_dir(dir)?;
            }
            fsutil::sync_dir(self.store.objects_dir())?;
            Ok(Stored {
                chunks,
                sha256,
                size,
                chunks_new,
                new_bytes,
                stored_bytes,
                tensors,
            })
        })
    }
}

/// Hashes bytes `start..end` of `file` into `h`, reading them again (positioned reads: the
/// commit's reader owns the file position).
fn reread(file: &File, start: u64, end: u64, h: &mut Hasher) -> std::io::Result<()> {
    let mut buf = vec![0u8; (end - start).min(1 << 20) as usize];
    let mut at = start;
    while at < end {
        let n = buf.len().min((end - at) as usize);
        fsutil::read_exact_at(file, &mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}
