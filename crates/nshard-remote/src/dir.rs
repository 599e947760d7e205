//! The directory remote: a [`LocalStore`] layout (`DIR/objects/ab/cd…`, `DIR/tmp`) in a directory
//! that may sit on a shared or network filesystem.
//!
//! Several clients may push to one directory at once: every upload is verified, written to its own
//! temporary file in `DIR/tmp`, fsynced, then linked into place only if absent (write-if-absent).
//! Content addressing makes a lost race harmless: the object that won is the same bytes. Nothing
//! half-written is ever visible under `objects/`; a killed writer leaves at most a stray file in
//! `tmp/`, which the first upload of a later push removes once it is a day old (old enough that no
//! live writer on any machine can still own it).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use nshard_core::backend::{
    create_dir_all, open_regular, read_limited, verify_delta, write_file_once, AtomicFile,
    DeltaName, LocalStore, RecordName, StagedUpload, StoreAdmin, StoredDelta, StoredObject,
    MAX_RECORD_BYTES,
};
use nshard_core::format::{decode_verified, max_encoded_len, MAX_OBJECT_SIZE};
use nshard_core::RemoteError;
use nshard_core::{Error, ObjectId, RemoteFailure, Result, Store};

/// Temporary files older than this are left over from a killed writer.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// A directory of encoded objects used as a remote.
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
    store: LocalStore,
    swept: Arc<AtomicBool>,
}

impl DirStore {
    /// Opens the store in `root`, which must be an existing directory (create it with `mkdir`: a
    /// typo in a path must not silently create a new, empty remote). Nothing is created here.
    pub fn open(root: &Path) -> Result<DirStore> {
        let md = fs::metadata(root).map_err(|e| Error::Remote(RemoteError::Failed {
            remote: root.display().to_string(),
            kind: if e.kind() == std::io::ErrorKind::NotFound {
                RemoteFailure::NotFound
            } else {
                RemoteFailure::Other
            },
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "the directory does not exist (create it first, e.g. `mkdir -p` it, to use it as a remote)"
                        .to_string()
                }
                _ => format!("cannot reach the directory: {e}"),
            },
        }))?;
        if !md.is_dir() {
            return Err(Error::Remote(RemoteError::Failed {
                remote: root.display().to_string(),
                kind: RemoteFailure::NotFound,
                reason: "is not a directory".into(),
            }));
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            store: LocalStore::at(root.join("objects"), root.join("tmp")),
            swept: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store inside (for readers that need paths or sizes, like `nshard serve`).
    pub fn local(&self) -> &LocalStore {
        &self.store
    }

    /// Verifies and stores one object (blocking). Returns whether it was new.
    pub fn put_blocking(&self, id: &ObjectId, encoded: &[u8]) -> Result<bool> {
        if self.store.has(id) {
            return Ok(false);
        }
        decode_verified(id, encoded, MAX_OBJECT_SIZE)?;
        if !self.swept.swap(true, Ordering::Relaxed) {
            self.sweep_stale_tmp(STALE_TMP_AGE);
        }
        self.write_once(&self.store.path_of(id), encoded)
    }

    /// Writes `bytes` at `dest` (in a fan-out directory) if absent, through a temporary file in
    /// `tmp/`: returns whether this call wrote it. Objects and deltas are immutable and the
    /// directory may be shared between users: readable by all (the temporary file starts out
    /// private to its creator), writable by none.
    fn write_once(&self, dest: &Path, bytes: &[u8]) -> Result<bool> {
        create_dir_all(
            dest.parent()
                .expect("stored files live in a fan-out directory"),
        )?;
        create_dir_all(self.store.tmp_dir())?;
        let mut f = AtomicFile::create_in(self.store.tmp_dir(), dest)?;
        write_file_once(f.file(), bytes).map_err(Error::io("writing", dest))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.file()
                .set_permissions(fs::Permissions::from_mode(0o444))
                .map_err(Error::io("setting permissions of", dest))?;
        }
        f.commit_if_absent()
    }
}

impl DirStore {
    /// Stores a verified staged upload if absent (blocking): renamed into place when it was staged
    /// in this store's `tmp/`, copied through a temporary file there otherwise.
    pub fn put_staged_blocking(&self, id: &ObjectId, staged: StagedUpload) -> Result<bool> {
        if self.store.has(id) {
            return Ok(false);
        }
        let dest = self.store.path_of(id);
        let fan = dest
            .parent()
            .expect("object paths have a fan-out directory");
        create_dir_all(fan)?;
        create_dir_all(self.store.tmp_dir())?;
        let same_dir = staged.path().parent() == Some(self.store.tmp_dir());
        let mut f = if same_dir {
            AtomicFile::from_temp(staged.into_temp(), &dest)
        } else {
            let mut f = AtomicFile::create_in(self.store.tmp_dir(), &dest)?;
            let mut src =
                fs::File::open(staged.path()).map_err(Error::io("reading", staged.path()))?;
            std::io::copy(&mut src, f.file()).map_err(Error::io("writing", &dest))?;
            f
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.file()
                .set_permissions(fs::Permissions::from_mode(0o444))
                .map_err(Error::io("setting permissions of", &dest))?;
        }
        f.commit_if_absent()
    }

    /// Where delta `name` lives: `DIR/deltas/ab/<id>.<base>` (`ab` the id's first two hex digits).
    fn delta_path(&self, name: &DeltaName) -> PathBuf {
        let key = name.key();
        self.root.join("deltas").join(&key[..2]).join(key)
    }

    /// Stores a delta the caller verified, if absent (blocking).
    fn put_delta_blocking(&self, name: &DeltaName, encoded: &[u8]) -> Result<bool> {
        let dest = self.delta_path(name);
        if fs::symlink_metadata(&dest).is_ok() {
            return Ok(false);
        }
        self.write_once(&dest, encoded)
    }

    /// The bytes of delta `name`: a regular file no larger than any encoding can be.
    fn get_delta_blocking(&self, name: &DeltaName) -> Result<Vec<u8>> {
        let path = self.delta_path(name);
        let missing = || Error::Store(nshard_core::StoreError::ObjectMissing(name.id));
        match open_regular(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Error::io("reading", &path)(e)),
        }
        match read_limited(&path, max_encoded_len(MAX_OBJECT_SIZE)) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(Error::io("reading", &path)(e)),
        }
    }

    /// The deltas of `ids` (one directory read per fan-out directory asked about).
    fn deltas_of_blocking(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        let wanted: std::collections::HashSet<ObjectId> = ids.iter().copied().collect();
        let mut fans: Vec<String> = ids.iter().map(|id| id.to_hex()[..2].to_string()).collect();
        fans.sort();
        fans.dedup();
        let top = self.root.join("deltas");
        let mut out = Vec::new();
        for fan in fans {
            for file in read_dir_strict(&top.join(&fan))? {
                out.extend(
                    DeltaName::parse(&file).filter(|n| wanted.contains(&n.id) && n.key() == file),
                );
            }
        }
        Ok(out)
    }

    /// Every delta with its size and modification time (strict, like the object listing).
    fn list_deltas_blocking(&self) -> Result<Vec<StoredDelta>> {
        let top = self.root.join("deltas");
        let mut out = Vec::new();
        for fan in read_dir_strict(&top)? {
            for file in read_dir_strict(&top.join(&fan))? {
                let Some(name) = DeltaName::parse(&file).filter(|n| n.key() == file) else {
                    continue;
                };
                let path = top.join(&fan).join(&file);
                let md = match fs::symlink_metadata(&path) {
                    Ok(md) => md,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("reading", &path)(e)),
                };
                out.push(StoredDelta {
                    name,
                    size: md.len(),
                    modified: modified_secs(&md),
                });
            }
        }
        out.sort_by_key(|d| d.name);
        Ok(out)
    }

    /// Where record `name` lives: `DIR/records/SPACE/KEY/STAMP.WRITER`.
    fn record_path(&self, name: &RecordName) -> PathBuf {
        self.root.join("records").join(name.to_string())
    }

    fn put_record_blocking(&self, name: &RecordName, bytes: &[u8]) -> Result<RecordName> {
        let name = name.clone();
        let dest = self.record_path(&name);
        create_dir_all(dest.parent().expect("records live in a directory"))?;
        create_dir_all(self.store.tmp_dir())?;
        let mut f = AtomicFile::create_in(self.store.tmp_dir(), &dest)?;
        write_file_once(f.file(), bytes).map_err(Error::io("writing", &dest))?;
        if f.commit_if_absent()? {
            Ok(name)
        } else {
            Err(Error::Remote(RemoteError::Failed {
                remote: self.root.display().to_string(),
                kind: RemoteFailure::Refused,
                reason: format!("record {name} exists already"),
            }))
        }
    }

    /// Every record name (strict: any unreadable directory is an error; foreign files are skipped).
    fn list_records_blocking(&self) -> Result<Vec<RecordName>> {
        let top = self.root.join("records");
        let mut out = Vec::new();
        for space in read_dir_strict(&top)? {
            for key in read_dir_strict(&top.join(&space))? {
                for file in read_dir_strict(&top.join(&space).join(&key))? {
                    out.extend(RecordName::parse(&format!("{space}/{key}/{file}")));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every object with its size and modification time (strict, like the record listing).
    fn list_objects_blocking(&self) -> Result<Vec<StoredObject>> {
        let top = self.root.join("objects");
        let mut out = Vec::new();
        for fan in read_dir_strict(&top)? {
            if fan.len() != 2 {
                continue;
            }
            self.list_fan(&top, &fan, &mut out)?;
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    /// A page of objects after `after`, read fan-out directory by fan-out directory from the one
    /// `after` is in.
    fn list_objects_page_blocking(
        &self,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<(Vec<StoredObject>, bool)> {
        let top = self.root.join("objects");
        let mut fans: Vec<String> = read_dir_strict(&top)?
            .into_iter()
            .filter(|f| f.len() == 2)
            .collect();
        fans.sort();
        let from = after.map(|a| a.to_hex()[..2].to_string());
        let mut out = Vec::new();
        for fan in fans
            .iter()
            .filter(|f| from.as_ref().is_none_or(|s| *f >= s))
        {
            let mut here = Vec::new();
            self.list_fan(&top, fan, &mut here)?;
            here.sort_by_key(|o| o.id);
            here.retain(|o| after.is_none_or(|a| o.id > a));
            out.extend(here);
            if out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    /// The objects of fan-out directory `fan`, appended to `out`.
    fn list_fan(&self, top: &Path, fan: &str, out: &mut Vec<StoredObject>) -> Result<()> {
        {
            let dir = top.join(fan);
            for rest in read_dir_strict(&dir)? {
                let hex = format!("{fan}{rest}");
                let Some(id) = ObjectId::parse(&hex).ok().filter(|id| id.to_hex() == hex) else {
                    continue;
                };
                let path = dir.join(&rest);
                let md = match fs::symlink_metadata(&path) {
                    Ok(md) => md,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("reading", &path)(e)),
                };
                out.push(StoredObject {
                    id,
                    size: md.len(),
                    modified: modified_secs(&md),
                });
            }
        }
        Ok(())
    }

    /// Removes temporary files older than `age` from `tmp/` (best effort: a file another writer is
    /// still using is never that old, and a failure here must not fail an upload).
    fn sweep_stale_tmp(&self, age: Duration) {
        let Ok(rd) = fs::read_dir(self.store.tmp_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for ent in rd.flatten() {
            let stale = ent
                .file_name()
                .to_string_lossy()
                .starts_with(".nshard-tmp-")
                && ent
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d > age);
            if stale {
                let _ = fs::remove_file(ent.path());
            }
        }
    }
}

/// When a file was last modified, in seconds since the epoch (0 when the filesystem cannot say).
fn modified_secs(md: &fs::Metadata) -> u64 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Deletes `paths`; absent ones are no error.
fn remove_files(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("deleting", p)(e)),
        }
    }
    Ok(())
}

/// The names in directory `dir` (none when it does not exist); any other failure is an error, so
/// that gc never reads an unreadable directory as an empty one.
fn read_dir_strict(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir)(e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(Error::io("listing", dir))?;
        if let Ok(name) = ent.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

/// Runs blocking filesystem work on a clone of `remote` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    remote: &DirStore,
    f: impl FnOnce(DirStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let me = remote.clone();
    nshard_core::backend::blocking(remote.root.display(), move || f(me)).await?
}

#[async_trait]
impl Store for DirStore {
    fn display_url(&self) -> String {
        self.root.display().to_string()
    }

    async fn health(&self) -> Result<()> {
        blocking(self, |s| DirStore::open(&s.root).map(|_| ())).await
    }

    async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let ids = ids.to_vec();
        blocking(self, move |s| {
            Ok(ids.into_iter().filter(|id| !s.store.has(id)).collect())
        })
        .await
    }

    async fn size(&self, id: &ObjectId) -> Result<Option<u64>> {
        let id = *id;
        // The object file itself, never what a planted symlink points to.
        blocking(self, move |s| {
            Ok(fs::symlink_metadata(s.store.path_of(&id))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()))
        })
        .await
    }

    async fn put(&self, id: &ObjectId, encoded: Vec<u8>) -> Result<bool> {
        let id = *id;
        blocking(self, move |s| s.put_blocking(&id, &encoded)).await
    }

    async fn put_staged(&self, id: &ObjectId, staged: StagedUpload) -> Result<bool> {
        let id = *id;
        blocking(self, move |s| s.put_staged_blocking(&id, staged)).await
    }

    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let id = *id;
        blocking(self, move |s| s.store.get_encoded(&id)).await
    }

    fn admin(&self) -> Option<&dyn StoreAdmin> {
        Some(self)
    }

    async fn put_record(&self, name: &RecordName, bytes: Vec<u8>) -> Result<RecordName> {
        let name = name.clone();
        blocking(self, move |s| s.put_record_blocking(&name, &bytes)).await
    }

    async fn list_records(&self) -> Result<Vec<RecordName>> {
        blocking(self, |s| s.list_records_blocking()).await
    }

    async fn get_record(&self, name: &RecordName) -> Result<Option<Vec<u8>>> {
        let path = self.record_path(name);
        blocking(self, move |_| match read_limited(&path, MAX_RECORD_BYTES) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path)(e)),
        })
        .await
    }

    async fn list_objects(&self) -> Result<Vec<StoredObject>> {
        blocking(self, |s| s.list_objects_blocking()).await
    }

    async fn list_objects_page(
        &self,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<(Vec<StoredObject>, bool)> {
        blocking(self, move |s| s.list_objects_page_blocking(after, limit)).await
    }

    async fn delete_objects(&self, ids: &[ObjectId]) -> Result<()> {
        let ids = ids.to_vec();
        blocking(self, move |s| {
            ids.iter().try_for_each(|id| s.store.delete(id))
        })
        .await
    }

    async fn delete_records(&self, names: &[RecordName]) -> Result<()> {
        let paths: Vec<PathBuf> = names.iter().map(|n| self.record_path(n)).collect();
        blocking(self, move |_| remove_files(&paths)).await
    }

    fn stores_deltas(&self) -> bool {
        true
    }

    async fn put_delta(&self, name: &DeltaName, encoded: Vec<u8>) -> Result<bool> {
        let name = *name;
        let path = self.delta_path(&name);
        if blocking(self, move |_| Ok(fs::symlink_metadata(&path).is_ok())).await? {
            return Ok(false);
        }
        verify_delta(self, &name, &encoded).await?;
        blocking(self, move |s| s.put_delta_blocking(&name, &encoded)).await
    }

    async fn get_delta(&self, name: &DeltaName) -> Result<Vec<u8>> {
        let name = *name;
        blocking(self, move |s| s.get_delta_blocking(&name)).await
    }

    async fn deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        let ids = ids.to_vec();
        blocking(self, move |s| s.deltas_of_blocking(&ids)).await
    }

    async fn list_deltas(&self) -> Result<Vec<StoredDelta>> {
        blocking(self, |s| s.list_deltas_blocking()).await
    }

    async fn delete_deltas(&self, names: &[DeltaName]) -> Result<()> {
        let paths: Vec<PathBuf> = names.iter().map(|n| self.delta_path(n)).collect();
        blocking(self, move |_| remove_files(&paths)).await
    }
}

#[async_trait]
impl StoreAdmin for DirStore {
    async fn list(&self) -> Result<Vec<ObjectId>> {
        blocking(self, |s| s.store.list()).await
    }

    async fn delete(&self, id: &ObjectId) -> Result<()> {
        let id = *id;
        blocking(self, move |s| s.store.delete(&id)).await
    }

    async fn quarantine_corrupt(&self, id: &ObjectId) -> Result<bool> {
        let id = *id;
        blocking(self, move |s| s.store.quarantine_if_corrupt(&id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nshard_core::format::{DataHint, Encoder};

    fn object(seed: u8) -> (ObjectId, Vec<u8>) {
        let raw: Vec<u8> = (0..10_000u32)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect();
        (
            ObjectId::of(&raw),
            Encoder::new().encode(&raw, DataHint::Unknown),
        )
    }

    #[tokio::test]
    async fn put_get_missing_list_delete() {
        let d = tempfile::tempdir().expect("tmp");
        let s = DirStore::open(d.path()).expect("open");
        let (a, ea) = object(3);
        let (b, _) = object(5);
        assert_eq!(s.missing(&[a, b]).await.expect("missing"), vec![a, b]);
        assert!(s.list().await.expect("list").is_empty());
        assert!(s.put(&a, ea.clone()).await.expect("put"));
        assert!(!s.put(&a, ea.clone()).await.expect("re-put is a success"));
        assert_eq!(s.missing(&[a, b]).await.expect("missing"), vec![b]);
        assert_eq!(s.get(&a).await.expect("get"), ea);
        assert!(matches!(
            s.get(&b).await,
            Err(Error::Store(nshard_core::StoreError::ObjectMissing(_)))
        ));
        assert_eq!(s.list().await.expect("list"), vec![a]);
        s.delete(&a).await.expect("delete");
        s.delete(&a).await.expect("delete absent");
        assert!(s.list().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn bad_objects_never_become_visible() {
        let d = tempfile::tempdir().expect("tmp");
        let s = DirStore::open(d.path()).expect("open");
        let (a, ea) = object(3);
        let (b, _) = object(5);
        // Right bytes, wrong id.
        let err = s.put(&b, ea.clone()).await.expect_err("wrong id");
        assert!(err.to_string().contains(&b.to_hex()), "{err}");
        // Truncated upload.
        assert!(s.put(&a, ea[..ea.len() / 2].to_vec()).await.is_err());
        assert!(s.list().await.expect("list").is_empty());
        let tmp = d.path().join("tmp");
        assert!(
            !tmp.exists() || fs::read_dir(&tmp).expect("tmp").count() == 0,
            "no temporary file is left behind"
        );
    }

    #[tokio::test]
    async fn first_upload_sweeps_stale_temporary_files() {
        let d = tempfile::tempdir().expect("tmp");
        let tmp = d.path().join("tmp");
        fs::create_dir_all(&tmp).expect("mkdir");
        let old = tmp.join(".nshard-tmp-old");
        let fresh = tmp.join(".nshard-tmp-fresh");
        let other = tmp.join("not-ours");
        for p in [&old, &fresh, &other] {
            fs::write(p, b"partial").expect("w");
        }
        let two_days = SystemTime::now() - Duration::from_secs(48 * 3600);
        for p in [&old, &other] {
            fs::File::options()
                .write(true)
                .open(p)
                .and_then(|f| f.set_modified(two_days))
                .expect("age");
        }
        let s = DirStore::open(d.path()).expect("open");
        let (a, ea) = object(7);
        s.put(&a, ea).await.expect("put");
        assert!(!old.exists(), "a day-old temporary file is removed");
        assert!(fresh.exists(), "a recent one may belong to a live writer");
        assert!(other.exists(), "files that are not ours are left alone");
    }

    #[tokio::test]
    async fn only_a_corrupt_copy_is_moved_aside() {
        let d = tempfile::tempdir().expect("tmp");
        let s = DirStore::open(d.path()).expect("open");
        let (a, ea) = object(3);
        assert!(!s.quarantine_corrupt(&a).await.expect("absent"));
        s.put(&a, ea.clone()).await.expect("put");
        assert!(
            !s.quarantine_corrupt(&a).await.expect("good"),
            "a good copy stays"
        );
        assert!(s.missing(&[a]).await.expect("missing").is_empty());
        let p = s.local().path_of(&a);
        fs::remove_file(&p).expect("rm");
        fs::write(&p, &ea[..ea.len() - 1]).expect("truncated copy");
        assert!(s.quarantine_corrupt(&a).await.expect("corrupt"));
        assert_eq!(s.missing(&[a]).await.expect("missing"), vec![a]);
        assert!(d.path().join("corrupt").join(a.to_hex()).is_file());
        // A second bad copy is kept beside the first, not over it.
        assert!(s.put(&a, ea.clone()).await.expect("restored"));
        fs::remove_file(&p).expect("rm");
        fs::write(&p, b"junk").expect("junk");
        assert!(s.quarantine_corrupt(&a).await.expect("corrupt again"));
        assert_eq!(
            fs::read_dir(d.path().join("corrupt")).expect("ls").count(),
            2
        );
    }

    #[test]
    fn refuses_missing_or_non_directory() {
        let d = tempfile::tempdir().expect("tmp");
        let err = DirStore::open(&d.path().join("nope")).expect_err("missing");
        assert!(err.to_string().contains("does not exist"), "{err}");
        fs::write(d.path().join("f"), b"x").expect("w");
        assert!(DirStore::open(&d.path().join("f")).is_err());
    }
}
