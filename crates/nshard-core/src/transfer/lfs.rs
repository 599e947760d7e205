//! git-lfs objects on a NeuroShard remote: what `nshard lfs agent` does for each object git-lfs
//! hands it.
//!
//! An upload cuts the file into chunks in the local store like a commit does (so a second
//! version of a model adds only its changed chunks), stores a manifest object for it (path
//! `lfs/<oid>`, no parent: the same file always gives the same manifest), pushes what the remote
//! lacks (chunks before the manifest) and adds an LFS record mapping the oid to that manifest.
//!
//! A download lists the oid's LFS records, newest first, and for each: reads the manifest it
//! names, pulls the chunks the local store lacks (each verified against its id), rebuilds the
//! file and checks that it hashes to the oid. Anyone who can push can write a record, so a
//! record counts only once its file has been rebuilt and checked; a wrong one (planted, or naming
//! data that was lost) is skipped and the next one tried, and it never stops a right one from
//! being added: records are never replaced, only added.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::{fetch_one, push_groups, remote_missing};
use super::{TransferOptions, TransferStats};
use crate::error::{Error, RemoteError, RemoteFailure, Result};
use crate::id::{Hasher, ObjectId};
use crate::manifest::{Manifest, VersionInfo, MAX_MANIFEST_BYTES};
use crate::path::RepoPath;
use crate::progress::Progress;
use crate::remote::records::{lfs_key, LfsRecord, RecordName, LFS_FORMAT, LFS_SPACE};
use crate::remote::Store;
use crate::repo::Repo;

/// A git-lfs object cut into chunks in the local store, ready to push.
#[derive(Debug)]
pub struct LfsVersion {
    /// The LFS oid (SHA-256 of the file).
    pub oid: ObjectId,
    /// The file's size.
    pub size: u64,
    /// The manifest object that rebuilds it.
    pub version: ObjectId,
    /// Its manifest.
    pub manifest: Manifest,
}

/// The time every LFS manifest carries: the same file always gives the same manifest object,
/// so pushing an object twice adds nothing.
const LFS_TIMESTAMP: &str = "1970-01-01T00:00:00Z";

fn lfs_error(remote: &str, reason: String) -> Error {
    Error::Remote(RemoteError::Failed {
        remote: remote.to_string(),
        kind: RemoteFailure::Other,
        reason,
    })
}

/// Cuts the file git-lfs gave for `oid` into chunks in the local store and stores its manifest
/// object. The file must hash to `oid` and have `size` bytes (git-lfs's own promise, checked).
pub fn lfs_prepare(
    repo: &Repo,
    oid: ObjectId,
    size: u64,
    file: &Path,
    progress: &dyn Progress,
) -> Result<LfsVersion> {
    let _lock = repo.lock(false)?;
    let label = format!("lfs/{}", oid.to_hex());
    let path = RepoPath::parse(&label)?;
    let stored = repo.ingest_into_store(file, &label, progress)?;
    if stored.sha256 != oid || stored.size != size {
        return Err(Error::Repo(crate::error::RepoError::FileHashMismatch {
            path: file.to_path_buf(),
            expected: oid,
            actual: stored.sha256,
        }));
    }
    let info = VersionInfo {
        message: format!("git-lfs object {}", oid.to_hex()),
        timestamp: LFS_TIMESTAMP.to_string(),
        parent: None,
    };
    // The execute bit of a file in git-lfs's object store means nothing.
    let (manifest, _, version) = repo.store_version(&path, stored, info, false)?;
    Ok(LfsVersion {
        oid,
        size,
        version,
        manifest,
    })
}

/// What an upload did.
#[derive(Debug, Default)]
pub struct LfsPushed {
    /// Objects sent and skipped.
    pub stats: TransferStats,
    /// Whether a new LFS record was written (`false`: one naming the same manifest was there).
    pub recorded: bool,
}

/// Pushes `v` to `remote` (only what it lacks, chunks before the manifest) and records it.
pub async fn lfs_push(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    v: &LfsVersion,
    opts: &TransferOptions<'_>,
) -> Result<LfsPushed> {
    let mut stats = TransferStats::default();
    let mut chunks: Vec<ObjectId> = v.manifest.chunks.iter().map(|c| c.id).collect();
    chunks.sort_unstable();
    chunks.dedup();
    let mut ids = chunks.clone();
    ids.push(v.version);
    let missing = remote_missing(remote, &ids, &opts.retry, &mut stats, opts.progress).await?;
    let stats = push_groups(
        repo.store(),
        remote,
        &[chunks, vec![v.version]],
        &missing,
        stats,
        opts,
    )
    .await?;
    let mut pushed = LfsPushed {
        stats,
        recorded: false,
    };
    if opts.dry_run {
        return Ok(pushed);
    }
    let key = lfs_key(&v.oid);
    for name in lfs_records(remote, &key, opts).await? {
        let (got, _) = opts.retry.run(|| remote.get_record(&name)).await;
        if let Some(r) = got?.and_then(|b| LfsRecord::parse(&b, &name).ok()) {
            if r.oid == v.oid && r.size == v.size && r.version == v.version {
                return Ok(pushed);
            }
        }
    }
    let record = LfsRecord {
        format: LFS_FORMAT.to_string(),
        oid: v.oid,
        size: v.size,
        version: v.version,
    };
    let bytes = serde_json::to_vec(&record).expect("an LFS record serializes");
    let name = RecordName::new(LFS_SPACE, &key);
    let (r, _) = opts
        .retry
        .run(|| remote.put_record(&name, bytes.clone()))
        .await;
    r?;
    pushed.recorded = true;
    Ok(pushed)
}

/// The LFS record names about `key`, newest first.
async fn lfs_records(
    remote: &Arc<dyn Store>,
    key: &str,
    opts: &TransferOptions<'_>,
) -> Result<Vec<RecordName>> {
    let (names, _) = opts.retry.run(|| remote.list_records()).await;
    let mut names: Vec<RecordName> = names?
        .into_iter()
        .filter(|n| n.is_lfs() && n.key() == key)
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.nanos()));
    Ok(names)
}

/// What a download did.
#[derive(Debug, Default)]
pub struct LfsFetched {
    /// Objects received.
    pub stats: TransferStats,
    /// Records skipped because what they named did not rebuild the object.
    pub skipped_records: usize,
}

/// Rebuilds git-lfs object `oid` of `size` bytes from `remote` into a new file `dest` (removed
/// again on failure), trying the oid's records newest first until one rebuilds a file that
/// hashes to `oid`.
pub async fn lfs_download(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    oid: ObjectId,
    size: u64,
    dest: &Path,
    opts: &TransferOptions<'_>,
) -> Result<LfsFetched> {
    let url = remote.display_url();
    let names = lfs_records(remote, &lfs_key(&oid), opts).await?;
    if names.is_empty() {
        return Err(lfs_error(
            &url,
            format!(
                "has no copy of git-lfs object {} (no NeuroShard record of it): push it from a \
                 clone that has it, with the agent installed (`nshard lfs install`, then \
                 `git lfs push --all`)",
                oid.to_hex()
            ),
        ));
    }
    let mut fetched = LfsFetched::default();
    let mut first_error: Option<Error> = None;
    for name in &names {
        match try_record(
            repo,
            remote,
            name,
            oid,
            size,
            dest,
            opts,
            &mut fetched.stats,
        )
        .await
        {
            Ok(()) => return Ok(fetched),
            Err(e) => {
                let _ = std::fs::remove_file(dest);
                if e.is_transient() {
                    return Err(e);
                }
                fetched.skipped_records += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one record was tried"))
}

#[allow(clippy::too_many_arguments)]
async fn try_record(
    repo: &Repo,
    remote: &Arc<dyn Store>,
    name: &RecordName,
    oid: ObjectId,
    size: u64,
    dest: &Path,
    opts: &TransferOptions<'_>,
    stats: &mut TransferStats,
) -> Result<()> {
    let url = remote.display_url();
    let bad = |why: String| lfs_error(&url, format!("LFS record {name}: {why}"));
    let (got, _) = opts.retry.run(|| remote.get_record(name)).await;
    let Some(bytes) = got? else {
        return Err(bad("vanished while it was read".into()));
    };
    let r = LfsRecord::parse(&bytes, name)?;
    if r.oid != oid || r.size != size {
        return Err(bad(format!(
            "names object {} of {} bytes, not {} of {size}",
            r.oid.to_hex(),
            r.size,
            oid.to_hex()
        )));
    }
    let local = repo.store();
    let manifest_bytes = if local.has(&r.version) {
        local.get(&r.version, MAX_MANIFEST_BYTES)?
    } else {
        match fetch_one(local, remote, r.version, MAX_MANIFEST_BYTES, opts, stats).await? {
            Some(b) => b,
            None => {
                return Err(bad(format!(
                    "names version {} that the remote does not have",
                    r.version.short()
                )))
            }
        }
    };
    let m = Manifest::parse(
        &manifest_bytes,
        Path::new(&format!("version {}", r.version.short())),
        None,
    )?;
    if m.sha256 != oid || m.size != size {
        return Err(bad(format!(
            "its version {} is another file ({} bytes, sha256 {})",
            r.version.short(),
            m.size,
            m.sha256.to_hex()
        )));
    }
    let mut wanted: HashMap<ObjectId, u64> = HashMap::new();
    for c in &m.chunks {
        if !local.has(&c.id) {
            wanted.insert(c.id, c.size);
        }
    }
    if !wanted.is_empty() {
        let mut ids: Vec<ObjectId> = wanted.keys().copied().collect();
        ids.sort_unstable();
        let lacking = remote_missing(remote, &ids, &opts.retry, stats, opts.progress).await?;
        let (lacking, _) =
            super::deltas::fetch(local, remote, wanted, lacking, opts, stats).await?;
        if !lacking.is_empty() {
            let mut lacking: Vec<ObjectId> = lacking.into_iter().collect();
            lacking.sort_unstable();
            return Err(Error::Remote(RemoteError::Lacks {
                remote: url.clone(),
                subject: format!("git-lfs object {}", oid.to_hex()),
                missing: lacking,
            }));
        }
    }
    let store = local.clone();
    let dest: PathBuf = dest.to_path_buf();
    crate::blocking::blocking("rebuilding", move || rebuild(&store, &m, &dest)).await??;
    Ok(())
}

/// Writes `m`'s content to the new file `dest` from the local store, verifying every chunk and
/// the whole file.
fn rebuild(store: &crate::store::LocalStore, m: &Manifest, dest: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(Error::io("creating", dest))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut h = Hasher::new();
    for c in &m.chunks {
        let data = store.get(&c.id, c.size)?;
        h.update(&data);
        out.write_all(&data).map_err(Error::io("writing", dest))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io("writing", dest)(e.into_error()))?;
    file.sync_all().map_err(Error::io("syncing", dest))?;
    let actual = h.finish();
    if actual != m.sha256 {
        return Err(Error::Repo(crate::error::RepoError::FileHashMismatch {
            path: dest.to_path_buf(),
            expected: m.sha256,
            actual,
        }));
    }
    Ok(())
}
