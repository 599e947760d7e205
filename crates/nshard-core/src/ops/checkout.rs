//! `checkout`: rebuild data files from the local store, atomically and verified.
//!
//! Chunks are read and decoded by a few decoder threads, while the calling thread writes
//! them in order to a temporary file beside the destination and hashes the whole file. Only when
//! the whole-file SHA-256 matches the manifest is the temporary file renamed over the destination,
//! so a corrupt or missing object leaves the old file untouched. Chunks are not hashed one by one
//! on the way: any altered chunk changes the whole-file hash (one SHA-256 pass instead of two); on
//! a mismatch every chunk is then verified against its id to name the bad object.

use std::fs;
use std::sync::{mpsc, Arc};

use super::target::Target;
use crate::dirunit::{DirCheckout, DirCheckoutOptions};
use crate::error::RepoError;
use crate::error::{Corruption, Error, Result};
use crate::fsutil::hash_file;
use crate::fsutil::{self, AtomicAt};
use crate::id::{Hasher, ObjectId};
use crate::manifest::Manifest;
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::repo::statcache::{now_ns, StatCache, StatEntry};
use crate::repo::Repo;
use crate::store::{DirectBuf, DirectWriter, ReadScratch};

/// Options of a checkout.
pub struct CheckoutOptions<'a> {
    /// A version id or unique prefix to restore instead of the work-tree manifest's version (of
    /// one target only: version ids belong to one file's or unit's history).
    pub version: Option<String>,
    /// Overwrite files with uncommitted changes.
    pub force: bool,
    /// Files of directory units removed here and not committed (relative to the repository
    /// root, with the execute bit they had; see [`Repo::uncommitted_removals`]): each stays
    /// removed where the version checked out holds the bytes and the mode it had, as git
    /// carries a deletion over a checkout; where the version holds other bytes or another mode,
    /// the unit is refused as for an edit. Files not named are written again (bringing a
    /// deleted file back is what `nshard checkout` is for).
    pub keep_removed: &'a [(String, bool)],
    /// A request to put the version's bytes back (`nshard checkout` without `--version`): in a
    /// directory unit, a file edited on the very version checked out is in the way (`--force`
    /// replaces it). Otherwise (the git hooks, `pull --checkout`, `--version`) such an edit
    /// stays, as every edit does where the version holds the bytes it was made from.
    pub restore: bool,
    /// Progress sink.
    pub progress: &'a dyn Progress,
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckoutOutcome {
    /// The file was (re)written.
    Written {
        /// The version written.
        version: ObjectId,
        /// Bytes written.
        size: u64,
    },
    /// The file already had that content.
    UpToDate {
        /// The version it matches.
        version: ObjectId,
    },
    /// A directory unit was checked out.
    Unit(DirCheckout),
}

/// The result for one target.
#[derive(Debug)]
pub struct Checked {
    /// The file or unit.
    pub target: Target,
    /// What happened, or why not (the other targets are still checked out).
    pub result: Result<CheckoutOutcome>,
}

/// Bytes written between background writeback requests during a checkout (page-cache writes).
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;
/// How far in the past a rebuilt file's mtime is set (more than the stat cache's racy window).
const BACKDATE: std::time::Duration = std::time::Duration::from_millis(200);
/// Bytes gathered before each direct write of the rebuilt file. Each write waits for the disk,
/// so not too few; but the window is memory faulted in fresh by every checkout (2 MiB: 4–5
/// fewer huge pages zeroed than 8 MiB, and no slower on the bench's 14.5 MiB file).
const WRITE_WINDOW: usize = 2 * 1024 * 1024;
/// Decoded chunks queued per decoder thread.
const DECODE_QUEUE: usize = 2;
/// Decoded chunks queued for the whole-file hash thread and for the write thread.
const HASH_QUEUE: usize = 4;
/// Chunk buffers per decoder thread, reused from chunk to chunk (see [`Pooled`]).
const BUFFERS_PER_DECODER: usize = 3;

/// A decoded chunk in a decoder's buffer, which goes back to that decoder when the last holder
/// (the hash or the write thread) drops it.
struct Pooled {
    buf: Vec<u8>,
    home: mpsc::SyncSender<Vec<u8>>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Never full (the decoder has at most BUFFERS_PER_DECODER buffers); a decoder that has
        // stopped no longer wants it.
        let _ = self.home.try_send(std::mem::take(&mut self.buf));
    }
}

impl Repo {
    /// Checks out `targets`: the units, then the files. Takes the repository lock.
    pub fn checkout(&self, targets: &[Target], opts: &CheckoutOptions<'_>) -> Result<Vec<Checked>> {
        if opts.version.is_some() && targets.len() != 1 {
            return Err(Error::Repo(RepoError::VersionNeedsOneTarget));
        }
        let mut out = Vec::new();
        for t in targets {
            if let Target::Unit { unit, sub } = t {
                let result = self.checkout_dir(
                    unit,
                    &DirCheckoutOptions {
                        sub: sub.clone(),
                        version: opts.version.clone(),
                        force: opts.force,
                        keep_removed: opts.keep_removed,
                        restore: opts.restore,
                        progress: opts.progress,
                    },
                );
                if result.is_ok() {
                    // What the git hooks write of this unit from now on: this part, or all.
                    self.record_checkout(unit, sub.as_deref());
                }
                out.push(Checked {
                    target: t.clone(),
                    result: result.map(CheckoutOutcome::Unit),
                });
            }
        }
        let files: Vec<&RepoPath> = targets
            .iter()
            .filter_map(|t| match t {
                Target::File(p) => Some(p),
                Target::Unit { .. } => None,
            })
            .collect();
        if files.is_empty() {
            return Ok(out);
        }
        let _lock = self.lock(true)?;
        let mut cache = self.stat_cache();
        for path in files {
            let result = self.checkout_file(path, opts, &mut cache);
            out.push(Checked {
                target: Target::File(path.clone()),
                result,
            });
            cache.save()?;
        }
        Ok(out)
    }

    fn checkout_file(
        &self,
        path: &RepoPath,
        opts: &CheckoutOptions<'_>,
        cache: &mut StatCache,
    ) -> Result<CheckoutOutcome> {
        let wt = self
            .read_worktree_manifest(path)?
            .ok_or(Error::Repo(RepoError::NotTracked {
                path: path.manifest_path().as_str().into(),
                reason: crate::error::Untracked::NoManifest,
            }))?;
        let (target, version) = match &opts.version {
            None => (wt.manifest.clone(), wt.version),
            Some(prefix) => {
                let v = self.find_version(&wt, prefix)?;
                (self.version_manifest(&wt, path, &v)?, v)
            }
        };
        // The destination's directory is held open from here on: a component swapped for a
        // symlink meanwhile cannot redirect the write (issue 26, case 1).
        let safe = fsutil::open_safe_destination(self.root(), path)?;
        let dest = safe.path.clone();
        if let Ok(md) = fs::symlink_metadata(&dest) {
            let (known, observed) = match cache.fresh(path.as_str(), &md) {
                Some(e) => (e.sha256, e.observed_ns),
                None => {
                    let observed = now_ns();
                    let sha = hash_file(&dest)?;
                    (sha, observed)
                }
            };
            if known == target.sha256 {
                let md = fix_exec_bits(&dest, md, target.executable)?;
                cache.set(path.as_str(), StatEntry::new(&md, known, version, observed));
                return Ok(CheckoutOutcome::UpToDate { version });
            }
            let clean = known == wt.manifest.sha256
                || cache.get(path.as_str()).is_some_and(|e| e.sha256 == known);
            if !clean && !opts.force {
                return Err(Error::Repo(RepoError::WouldOverwrite(dest)));
            }
        }
        let missing = self.missing_chunks(&target);
        if let Some(first) = missing.first() {
            return Err(Error::Repo(RepoError::ChunksMissing {
                path: path.to_string(),
                count: missing.len(),
                first: *first,
            }));
        }
        opts.progress.start(path.as_str(), target.size);
        let written = self.rebuild(&target, safe, opts.progress);
        opts.progress.finish();
        // The written file's own metadata, not the path's (which may no longer lead to it).
        let md = written?;
        cache.set(
            path.as_str(),
            // Observed after the rename: nobody else can have written the file before (it had a
            // random temporary name), so only later writes matter, and those change the mtime
            // unless they land within the racy window, which `StatCache::fresh` accounts for.
            StatEntry::new(&md, target.sha256, version, now_ns()),
        );
        Ok(CheckoutOutcome::Written {
            version,
            size: target.size,
        })
    }

    /// Writes `m`'s content to `dest` atomically, verifying every chunk and the whole file.
    fn rebuild(
        &self,
        m: &Manifest,
        safe: fsutil::SafeDest,
        progress: &dyn Progress,
    ) -> Result<fs::Metadata> {
        let dest_path = safe.path.clone();
        let dest = dest_path.as_path();
        remove_stale_temporaries(dest);
        crate::crash_point!("checkout-before-write");
        let mut out = AtomicAt::create_for_version(safe, m.executable)?;
        // Decoders take chunks round-robin (decoder k: chunks k, k + n, k + 2n, …), each into its
        // own short queue, and the writer below takes them from the queues in the same order: file
        // order without a reordering buffer, memory bounded by the queues, no batch barrier.
        let decoders = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        let written: Result<ObjectId> = std::thread::scope(|s| {
            let mut queues = Vec::with_capacity(decoders);
            for k in 0..decoders {
                let (tx, rx) = mpsc::sync_channel::<Result<Pooled>>(DECODE_QUEUE);
                queues.push(rx);
                // The decoder's own chunk buffers: each comes back when the hash and write
                // threads are done with it, so a checkout touches fresh memory for a few chunks,
                // not for the whole file.
                let (home, pool) = mpsc::sync_channel::<Vec<u8>>(BUFFERS_PER_DECODER);
                for _ in 0..BUFFERS_PER_DECODER {
                    let _ = home.try_send(Vec::new());
                }
                s.spawn(move || {
                    let mut scratch = ReadScratch::default();
                    for c in m.chunks.iter().skip(k).step_by(decoders) {
                        // Never fails: this thread holds a sender, and every buffer handed out
                        // comes back when it is dropped.
                        let Ok(mut buf) = pool.recv() else { return };
                        let d = self
                            .load_chunk_into(c, &mut buf, &mut scratch)
                            .map(|()| Pooled {
                                buf,
                                home: home.clone(),
                            });
                        let stop = d.is_err();
                        if tx.send(d).is_err() || stop {
                            return;
                        }
                    }
                });
            }
            let rx = (0..m.chunks.len()).map(|i| {
                queues[i % decoders].recv().unwrap_or_else(|_| {
                    let stopped = std::io::Error::other("a decoder thread stopped");
                    Err(Error::io("rebuilding", dest)(stopped))
                })
            });
            let file: &fs::File = out.file();
            // The whole-file hash and the writing each run on their own thread; this one hands
            // them the decoded chunks in order.
            let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<Pooled>>(HASH_QUEUE);
            let hasher = s.spawn(move || {
                let mut h = Hasher::new();
                for data in hash_rx {
                    h.update(&data.buf);
                }
                h.finish()
            });
            let (write_tx, write_rx) = mpsc::sync_channel::<Arc<Pooled>>(HASH_QUEUE);
            let writer = s.spawn(move || write_sequentially(file, m.size, write_rx));
            let mut failed = None;
            for d in rx {
                let data = match d {
                    Ok(d) => Arc::new(d),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                let n = data.buf.len() as u64;
                if hash_tx.send(Arc::clone(&data)).is_err() || write_tx.send(data).is_err() {
                    break;
                }
                progress.advance(n);
            }
            drop(queues);
            drop(hash_tx);
            drop(write_tx);
            let actual = hasher.join().expect("checkout hash thread");
            let wrote = writer.join().expect("checkout write thread");
            if let Some(e) = failed {
                return Err(e);
            }
            wrote.map_err(|(action, e)| Error::io(action, dest)(e))?;
            Ok(actual)
        });
        let actual = written?;
        if actual != m.sha256 {
            // Name the culprit: re-read every chunk, this time verifying each against its id.
            let mut seen = std::collections::HashSet::new();
            for c in m.chunks.iter().filter(|c| seen.insert(c.id)) {
                self.store()
                    .get(&c.id, c.size)
                    .map_err(|e| self.store().quarantine_on(e))?;
            }
            return Err(Error::Repo(RepoError::FileHashMismatch {
                path: dest.to_path_buf(),
                expected: m.sha256,
                actual,
            }));
        }
        // Date the finished file slightly in the past. Its stat is recorded right after the
        // rename; with an mtime of "now" that record would fall in the racy window (see
        // `statcache`) and the next status or checkout would hash the whole file again. Nobody
        // else can have written the temporary file, and any later write sets a newer mtime.
        let written_at = std::time::SystemTime::now() - BACKDATE;
        let _ = out
            .file()
            .set_times(fs::FileTimes::new().set_modified(written_at));
        out.commit()
    }
}

/// Writes the chunks received on `rx` to `file` (empty) in order, bypassing the page cache where
/// possible, and returns once they are on disk up to the final fsync. An error names the action.
fn write_sequentially(
    file: &fs::File,
    size: u64,
    rx: mpsc::Receiver<Arc<Pooled>>,
) -> std::result::Result<(), (&'static str, std::io::Error)> {
    let mut dbuf = DirectBuf::with_window(WRITE_WINDOW);
    let mut writer = DirectWriter::new(file, &mut dbuf, WRITE_WINDOW, size);
    if writer.is_direct() {
        for data in rx {
            writer.write_all(&data.buf).map_err(|e| ("writing", e))?;
        }
        return writer.finish().map(|_| ()).map_err(|e| ("writing", e));
    }
    // Through the page cache: start writeback early. A background thread syncs what has been
    // written every FLUSH_EVERY bytes, so the disk works while chunks are still being decoded and
    // the final fsync has little left to do. The descriptor is shared with the caller's: the
    // kernel reports a writeback error to only one fsync caller, so the flusher's first error is
    // returned and fails the checkout.
    let flush_file = file.try_clone().map_err(|e| ("writing", e))?;
    std::thread::scope(|s| {
        let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
        let flusher = s.spawn(move || -> std::io::Result<()> {
            for () in flush_rx {
                flush_file.sync_data()?;
            }
            Ok(())
        });
        let mut unflushed = 0u64;
        let mut wrote = Ok(());
        for data in rx {
            if let Err(e) = writer.write_all(&data.buf) {
                wrote = Err(("writing", e));
                break;
            }
            unflushed += data.buf.len() as u64;
            if unflushed >= FLUSH_EVERY {
                // Skipped when the previous flush is still running.
                let _ = flush_tx.try_send(());
                unflushed = 0;
            }
        }
        drop(flush_tx);
        let flushed = flusher.join().expect("checkout flush thread");
        wrote?;
        writer.finish().map_err(|e| ("writing", e))?;
        flushed.map_err(|e| ("syncing", e))
    })
}

impl Repo {
    /// Reads and decodes one chunk for checkout into `buf`, without hashing it: chunks are hashed
    /// once, as part of the whole file (see `rebuild`).
    fn load_chunk_into(
        &self,
        c: &crate::manifest::ChunkRef,
        buf: &mut Vec<u8>,
        scratch: &mut ReadScratch,
    ) -> Result<()> {
        self.store()
            .get_unverified_into(&c.id, c.size, buf, scratch)
            .map_err(|e| self.store().quarantine_on(e))?;
        if buf.len() as u64 != c.size {
            return Err(Error::corrupt(
                c.id,
                Corruption::WrongSize,
                format!("holds {} bytes, the manifest says {}", buf.len(), c.size),
            ));
        }
        Ok(())
    }
}

/// Removes temporary files an interrupted checkout (Ctrl-C, kill -9, power loss) left beside
/// `dest`. Safe because checkout and commit, the only writers of such files in the work tree, hold
/// the exclusive repository lock. Best effort: a file that cannot be removed is left alone.
fn remove_stale_temporaries(dest: &std::path::Path) {
    let Some(dir) = dest.parent() else { return };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let is_tmp = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(fsutil::TMP_PREFIX));
        if is_tmp && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The content of `dest` is right: makes its execute bits what the version says (a regular
/// file only), and returns its metadata as it is then.
fn fix_exec_bits(
    dest: &std::path::Path,
    md: fs::Metadata,
    executable: bool,
) -> Result<fs::Metadata> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = md.permissions().mode();
        let want = fsutil::exec_mode(mode, executable);
        if md.is_file() && want != mode & 0o777 {
            let f = fsutil::open_regular(dest).map_err(Error::io("opening", dest))?;
            f.set_permissions(fs::Permissions::from_mode(want))
                .map_err(Error::io("setting the mode of", dest))?;
            return f.metadata().map_err(Error::io("reading", dest));
        }
    }
    let _ = (dest, executable);
    Ok(md)
}
