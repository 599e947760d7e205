//! `ingest`: the one pipeline that turns a file into chunks. Commit, diff and verify use it; they
//! keep only their policy (what to compare, what to write).
//!
//! One file goes: plan (the format's header, parsed once: tensor-aligned segments) → cut (the
//! calling thread reads and cuts) → chunk ids (a pool of workers; with a store, they also encode
//! the chunks the store lacks, and syncer threads write, fsync and rename them into place) →
//! whole-file SHA-256 (one thread, over the chunks in order) → tensor table (one thread, taking
//! each chunk's id from its worker, so that a tensor cut into chunks of its own is identified by
//! their ids and its bytes are hashed twice in all, not three times). Queues are bounded, so memory stays bounded by a few
//! maximum-size chunks whatever the file size; the file must not change while it is read.
//!
//! Because commit and diff both cut through [`ingest_file`], "diff cuts exactly as commit does"
//! holds by construction.

use crate::error::RepoError;
use std::collections::BTreeSet;
use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

mod tensors;

pub(crate) use tensors::{checked as checked_table, How, TensorHasher};

use crate::chunk::{ChunkParams, ChunkReader, Cutter, RawChunk, Segment};
use crate::codec::Encoder;
use crate::error::{Error, Result};
use crate::formats::plan::{self, Params, Plan};
use crate::formats::{FormatKind, Layout, Parsed, Tensor};
use crate::fsutil;
use crate::fsutil::StatKey;
use crate::id::{Hasher, ObjectId};
use crate::manifest::{ChunkRef, TensorEntry};
use crate::progress::Progress;
use crate::store::DirectBuf;
use crate::store::LocalStore;

/// What to do with one file.
pub(crate) struct Options<'a> {
    /// How to choose the chunking parameters (those applied are in [`Ingested::chunking`]).
    pub params: Params,
    /// Store new chunks here; `None` only hashes (diff).
    pub store: Option<&'a LocalStore>,
    /// Progress, in bytes read, under this label.
    pub progress: &'a dyn Progress,
    /// The label (the file's repository path).
    pub label: &'a str,
    /// Fsync the fan-out directories of the file's new objects before returning. A caller that
    /// ingests many files passes `false` and calls [`sync_dirs`] once for all their chunks before
    /// anything durable names them (each object is fsynced before it is renamed into place either
    /// way; an entry lost in a crash before the directory fsync is a missing object, re-stored by
    /// the next commit, never a partial one).
    pub sync_dirs: bool,
    /// Whether a changed ctime between opening and the end of reading means the file changed
    /// (see [`StatKey::same`]).
    pub trust_ctime: bool,
}

/// Why a file has no tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoTable {
    /// No format recognises it.
    Unrecognized,
    /// A format recognises it but its header is not valid.
    Invalid(FormatKind, String),
    /// The table breaks the manifest's limits (names, counts, …).
    Limits(String),
    /// The bytes read did not cover the tensors (cannot happen for a file that did not change).
    Unhashed,
}

impl NoTable {
    /// A sentence about `subject` ("the working file", "version 1a2b3c").
    pub(crate) fn describe(&self, subject: &str) -> String {
        match self {
            NoTable::Unrecognized => format!(
                "{subject} is not in a format with tensors that nshard reads \
                 (safetensors, PyTorch zip, GGUF)"
            ),
            NoTable::Invalid(kind, why) => format!("{subject} is not a valid {kind} file: {why}"),
            NoTable::Limits(why) => {
                format!("{subject}'s tensor table breaks the manifest limits: {why}")
            }
            NoTable::Unhashed => format!("{subject}'s tensors could not be hashed"),
        }
    }

    fn of(parsed: &Parsed) -> Option<NoTable> {
        match parsed {
            Parsed::Layout(_) => None,
            Parsed::Unrecognized => Some(NoTable::Unrecognized),
            Parsed::Invalid(k, why) => Some(NoTable::Invalid(*k, why.clone())),
        }
    }
}

/// A file, cut, hashed and (with a store) stored.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// The chunks, in file order.
    pub chunks: Vec<ChunkRef>,
    /// Bytes read.
    pub size: u64,
    /// Whole-file SHA-256.
    pub sha256: ObjectId,
    /// The parameters to record: the configured ones with the layout really applied.
    pub chunking: ChunkParams,
    /// The tensor table, checked against the manifest's limits, or why there is none.
    pub tensors: std::result::Result<Vec<TensorEntry>, NoTable>,
    /// The file's metadata when it was opened (unchanged until it was read to the end).
    pub metadata: Metadata,
    /// Chunks newly stored.
    pub chunks_new: usize,
    /// Raw bytes of the new chunks.
    pub new_bytes: u64,
    /// Encoded bytes written for them.
    pub stored_bytes: u64,
}

/// Reads `abs` once: plans, cuts, hashes, builds the tensor table and (with a store) stores the
/// chunks. Fails with [`RepoError::FileChangedDuringRead`](crate::error::RepoError::FileChangedDuringRead) if the file changed while it was read.
pub(crate) fn ingest_file(abs: &Path, opts: &Options<'_>) -> Result<Ingested> {
    // Never a FIFO (which would block), a device or a symlink: only a regular file is read.
    let file = crate::fsutil::open_regular(abs).map_err(Error::io("opening", abs))?;
    let md = file.metadata().map_err(Error::io("reading", abs))?;
    let plan = plan::plan(&file, md.len(), opts.params).map_err(Error::io("reading", abs))?;
    opts.progress.start(opts.label, md.len());
    let run = run(file, &plan, opts);
    opts.progress.finish();
    // Read errors come back without a path (the reader threads do not know it): they are about
    // the data file. Write errors name the object being written (disk full); keep that.
    let out = run.map_err(|e| match e {
        Error::Io {
            action,
            source,
            path,
        } if path.as_os_str().is_empty() => Error::Io {
            action,
            path: abs.to_path_buf(),
            source,
        },
        e => e,
    })?;
    // The file must be the same before and after reading, and still be at its path.
    let changed = || Error::Repo(RepoError::FileChangedDuringRead(abs.to_path_buf()));
    let md_after = fs::symlink_metadata(abs).map_err(|_| changed())?;
    if !StatKey::of(&md).same(&StatKey::of(&md_after), opts.trust_ctime) || out.size != md.len() {
        return Err(changed());
    }
    let tensors = match (NoTable::of(&plan.parsed), out.table) {
        (Some(why), _) => Err(why),
        (None, None) => Err(NoTable::Unhashed),
        (None, Some(t)) => checked_table(t, out.size).map_err(NoTable::Limits),
    };
    Ok(Ingested {
        chunks: out.chunks,
        size: out.size,
        sha256: out.sha256,
        chunking: plan.chunking,
        tensors,
        metadata: md,
        chunks_new: out.chunks_new,
        new_bytes: out.new_bytes,
        stored_bytes: out.stored_bytes,
    })
}

/// The tensors a manifest's tensor table describes (validated on read: sorted, not overlapping).
pub(crate) fn table_tensors(table: &[TensorEntry]) -> Vec<Tensor> {
    table
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            start: t.offset,
            end: t.offset + t.size,
        })
        .collect()
}

/// New objects waiting to be fsynced (bounds the unsynced data to a few chunks).
const SYNC_QUEUE: usize = 8;
/// Threads that fsync and rename new objects.
const SYNCERS: usize = 2;

struct Run {
    chunks: Vec<ChunkRef>,
    size: u64,
    sha256: ObjectId,
    table: Option<Vec<TensorEntry>>,
    chunks_new: usize,
    new_bytes: u64,
    stored_bytes: u64,
}

/// The pipeline: cut on this thread, whole-file hash on one thread, tensor table on another,
/// chunk ids (+ encode) on the workers, write + fsync + rename on the syncers.
fn run(file: File, plan: &Plan, opts: &Options<'_>) -> Result<Run> {
    let store = opts.store;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let abort = AtomicBool::new(false);
    // Each job carries a one-shot channel on which its worker reports the chunk's id to the
    // tensor thread, which needs the ids in file order.
    type Job = (usize, Arc<RawChunk>, Option<mpsc::SyncSender<ObjectId>>);
    // (index, chunk ref, newly stored, encoded bytes written)
    type Done = Result<(usize, ChunkRef, bool, u64)>;
    // (index, chunk ref, encoded bytes): written, fsynced and renamed by a syncer.
    type ToSync = (usize, ChunkRef, Vec<u8>);
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers);
    let job_rx = Mutex::new(job_rx);
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<RawChunk>>(2);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    // New objects are encoded by the workers and written (bypassing the page cache, so each
    // write waits for the disk), fsynced and renamed into place by the syncers, so that hashing
    // and compression go on while the disk catches up. Each fan-out directory is fsynced once at
    // the end, before a manifest can refer to its objects.
    let (sync_tx, sync_rx) = mpsc::sync_channel::<ToSync>(SYNC_QUEUE);
    let sync_rx = Mutex::new(sync_rx);
    let layout: Option<&Layout> = plan.layout();
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Hasher::new();
            for c in hash_rx {
                h.update(&c.data);
            }
            h.finish()
        });
        if let Some(st) = store {
            for _ in 0..SYNCERS {
                let (sync_rx, done_tx, abort) = (&sync_rx, done_tx.clone(), &abort);
                s.spawn(move || {
                    let mut dbuf = DirectBuf::default();
                    loop {
                        let next = sync_rx.lock().expect("sync queue lock").recv();
                        let Ok((idx, cref, bytes)) = next else {
                            break;
                        };
                        let len = bytes.len() as u64;
                        let r = match st.stage(&cref.id, &bytes, &mut dbuf) {
                            Ok(Some(staged)) => staged
                                .persist()
                                .map(|new| (idx, cref, new, if new { len } else { 0 })),
                            // Another writer stored it meanwhile.
                            Ok(None) => Ok((idx, cref, false, 0)),
                            Err(e) => Err(e),
                        };
                        if r.is_err() {
                            abort.store(true, Ordering::Relaxed);
                        }
                        if done_tx.send(r).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        // The tensor table on its own thread, from the same chunks: no second read of the file.
        // Tensors cut into whole chunks of their own take their identity from the chunk ids
        // (see `TensorHasher`): their bytes are hashed only twice, for the chunk ids and the
        // whole file.
        let mut tensor_tx = None;
        let aligned = plan.chunking.layout().is_tensor_layout();
        let min_object = u64::from(plan.chunking.min_object());
        let tensor_job = layout.map(|l| {
            // Deep enough that every worker can hash a chunk while the tensor thread waits.
            let (tx, rx) =
                mpsc::sync_channel::<(Arc<RawChunk>, mpsc::Receiver<ObjectId>)>(2 * workers);
            tensor_tx = Some(tx);
            let tensors = l.tensors.clone();
            s.spawn(move || {
                // Tensor-aligned segments give every tensor of at least the minimum object size
                // a segment of its own (see `formats::plan::tensor_segments`).
                let mut t = TensorHasher::new(tensors, |t| {
                    if aligned && t.end - t.start >= min_object {
                        How::ChunksOrOne
                    } else {
                        How::Bytes
                    }
                });
                for (c, id_rx) in rx {
                    match id_rx.recv() {
                        Ok(id) => t.update_chunk(c.offset, &c.data, id),
                        // The run was aborted: no table.
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
                    let sent = match store {
                        Some(st) if !st.has(&cref.id) => {
                            let bytes = enc.encode(&chunk.data, chunk.hint);
                            sync_tx.send((idx, cref, bytes)).is_ok()
                        }
                        _ => done_tx.send(Ok((idx, cref, false, 0))).is_ok(),
                    };
                    if !sent {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(sync_tx);
        let segments: Vec<Segment> = plan.segments.clone();
        let mut reader = ChunkReader::new(file, Cutter::new(plan.chunking), segments);
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
                    opts.progress.advance(n);
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
        let table = tensor_job.and_then(|j| j.join().expect("tensor hasher thread"));
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
        if let Some(store) = store.filter(|_| opts.sync_dirs) {
            sync_dirs(store, chunks.iter().map(|c| &c.id))?;
        }
        Ok(Run {
            chunks,
            size,
            sha256,
            table,
            chunks_new,
            new_bytes,
            stored_bytes,
        })
    })
}

/// Makes every object a manifest will name durable, including ones an earlier, interrupted
/// commit renamed into place without reaching its directory fsync: fsyncs each fan-out directory
/// involved (at most 256, cheap when clean) and `objects/` itself, which may have gained fan-out
/// directories.
pub(crate) fn sync_dirs<'a>(
    store: &LocalStore,
    ids: impl IntoIterator<Item = &'a ObjectId>,
) -> Result<()> {
    let dirs: BTreeSet<PathBuf> = ids
        .into_iter()
        .filter_map(|id| store.path_of(id).parent().map(PathBuf::from))
        .collect();
    for dir in &dirs {
        fsutil::sync_dir(dir)?;
    }
    fsutil::sync_dir(store.objects_dir())
}
