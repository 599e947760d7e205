//! The local object store: encoded objects under `objects/ab/cdef…`, written through a temporary
//! directory on the same filesystem, write-once, verified on every read.
//!
//! The same layout serves the repository's own store (`.shard/objects`, `.shard/tmp`) and a
//! directory remote (`DIR/objects`, `DIR/tmp`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::codec;
use crate::error::StoreError;
use crate::error::{Corruption, Error, Result};
use crate::fsutil::{self, AtomicFile};
use crate::id::ObjectId;

mod direct;

pub use direct::write_file_once;
pub(crate) use direct::{DirectBuf, DirectWriter};

/// A directory of encoded objects.
#[derive(Clone, Debug)]
pub struct LocalStore {
    objects: PathBuf,
    tmp: PathBuf,
}

impl LocalStore {
    /// A store whose objects live under `objects` and whose partial writes go to `tmp` (same
    /// filesystem). Both directories are created when missing.
    pub fn open(objects: impl Into<PathBuf>, tmp: impl Into<PathBuf>) -> Result<Self> {
        let s = Self {
            objects: objects.into(),
            tmp: tmp.into(),
        };
        fsutil::create_dir_all(&s.objects)?;
        fsutil::create_dir_all(&s.tmp)?;
        Ok(s)
    }

    /// A store at `objects`/`tmp` without creating anything (a remote directory that may be
    /// read-only or not yet pushed to). Reads of a missing `objects` find nothing; writers create
    /// the directories first.
    pub fn at(objects: impl Into<PathBuf>, tmp: impl Into<PathBuf>) -> Self {
        Self {
            objects: objects.into(),
            tmp: tmp.into(),
        }
    }

    /// The directory for partial writes.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The directory holding the objects.
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    /// Where object `id` lives.
    pub fn path_of(&self, id: &ObjectId) -> PathBuf {
        self.objects.join(id.fanout_path())
    }

    /// Whether `id` is present (not verified).
    pub fn has(&self, id: &ObjectId) -> bool {
        self.path_of(id).is_file()
    }

    /// The encoded size of `id`, if present.
    pub fn encoded_size(&self, id: &ObjectId) -> Option<u64> {
        fs::metadata(self.path_of(id)).ok().map(|m| m.len())
    }

    /// Stores already-encoded bytes for `id` if absent. The caller vouches that `enc` decodes to
    /// bytes hashing to `id` (it just encoded them); use [`LocalStore::put_verified`] for bytes from
    /// elsewhere. Returns whether the object was new.
    pub fn put_trusted(&self, id: &ObjectId, enc: &[u8]) -> Result<bool> {
        match self.stage(id, enc, &mut DirectBuf::default())? {
            // fsync, rename and fsync the fan-out directory.
            Some(staged) => staged.file.commit_if_absent(),
            None => Ok(false),
        }
    }

    /// Writes `enc` for `id` to a temporary file without syncing it; nothing is visible until
    /// [`StagedObject::persist`]. Returns `None` when the object is already present. Used by commit
    /// to keep hashing and compressing while earlier objects are being synced to disk.
    ///
    /// The bytes bypass the page cache where the filesystem allows it (see the private `direct` module);
    /// `buf` is the caller's reusable aligned buffer.
    pub fn stage(
        &self,
        id: &ObjectId,
        enc: &[u8],
        buf: &mut DirectBuf,
    ) -> Result<Option<StagedObject>> {
        let dest = self.path_of(id);
        if dest.is_file() {
            return Ok(None);
        }
        let dir = dest
            .parent()
            .expect("object paths have a fan-out directory")
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io("creating directory", &dir))?;
        let mut file = AtomicFile::create_in(&self.tmp, &dest)?;
        direct::write_file(file.file(), enc, buf).map_err(Error::io("writing object", &dest))?;
        Ok(Some(StagedObject { file }))
    }

    /// Verifies that `enc` decodes to bytes hashing to `id` (at most `max_raw_len` of them), then
    /// stores it if absent. Nothing is written for a bad object.
    pub fn put_verified(&self, id: &ObjectId, enc: &[u8], max_raw_len: u64) -> Result<bool> {
        codec::decode_verified(id, enc, max_raw_len)?;
        self.put_trusted(id, enc)
    }

    /// Reads the encoded bytes of `id` without decoding.
    pub fn get_encoded(&self, id: &ObjectId) -> Result<Vec<u8>> {
        self.read_bounded(id, codec::MAX_OBJECT_SIZE)
    }

    /// Reads the encoded bytes of `id`, refusing a symlink or anything but a regular file (a
    /// shared directory remote may hold planted files) and refusing files larger than any valid
    /// encoding of `max_raw_len` raw bytes, so a hostile store cannot exhaust memory.
    fn read_bounded(&self, id: &ObjectId, max_raw_len: u64) -> Result<Vec<u8>> {
        let p = self.path_of(id);
        let not_found = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::Store(StoreError::ObjectMissing(*id))
            } else {
                Error::io("reading object", &p)(e)
            }
        };
        let md = fs::symlink_metadata(&p).map_err(not_found)?;
        if !md.is_file() {
            return Err(Error::corrupt(
                *id,
                Corruption::NotRegularFile,
                format!("{} is not a regular file", p.display()),
            ));
        }
        let limit = codec::max_encoded_len(max_raw_len.min(codec::MAX_OBJECT_SIZE));
        if md.len() > limit {
            return Err(Error::corrupt(
                *id,
                Corruption::TooLarge,
                format!(
                    "{} bytes on disk, more than any encoding of it can take",
                    md.len()
                ),
            ));
        }
        crate::fsutil::read_limited(&p, limit).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                Error::corrupt(
                    *id,
                    Corruption::TooLarge,
                    "grew past its size limit while being read",
                )
            } else {
                not_found(e)
            }
        })
    }

    /// Reads and decodes `id` (at most `max_raw_len` bytes) without hashing the result: only for
    /// callers that verify the bytes another way before using them (checkout hashes the whole
    /// file against its manifest and re-verifies chunk by chunk when that fails).
    pub fn get_unverified(&self, id: &ObjectId, max_raw_len: u64) -> Result<Vec<u8>> {
        let enc = self.read_bounded(id, max_raw_len)?;
        codec::decode(id, &enc, max_raw_len)
    }

    /// Reads, decodes and verifies `id`, producing at most `max_raw_len` bytes.
    pub fn get(&self, id: &ObjectId, max_raw_len: u64) -> Result<Vec<u8>> {
        let enc = self.read_bounded(id, max_raw_len)?;
        codec::decode_verified(id, &enc, max_raw_len)
    }

    /// Moves a corrupt object out of the way (to `corrupt/` beside `objects/`, kept for
    /// inspection) so that the store no longer claims to have it: `pull` then fetches a good copy
    /// and `commit` of the file re-stores it. Only for objects that fail verification on their
    /// own, never because of a caller's bound. Returns whether it was moved.
    pub fn quarantine(&self, id: &ObjectId) -> bool {
        self.set_aside(id).is_ok_and(|p| p.is_some())
    }

    /// Moves `id` to `corrupt/<id>` beside `objects/` (`corrupt/<id>.<unix nanoseconds>` when an
    /// earlier copy is already kept there, so no copy is ever overwritten) and returns where it
    /// went; `None` when the store does not hold `id`. Whoever finds an object corrupt calls this
    /// (see [`LocalStore::quarantine`]) so that the store reads it as missing and a good copy can
    /// be written in its place.
    pub fn set_aside(&self, id: &ObjectId) -> Result<Option<PathBuf>> {
        let src = self.path_of(id);
        let Some(parent) = self.objects.parent() else {
            return Err(Error::io("moving aside", &src)(io::Error::other(
                "the object directory has no parent to hold corrupt/",
            )));
        };
        let dir = parent.join("corrupt");
        fsutil::create_dir_all(&dir)?;
        let mut dest = dir.join(id.to_hex());
        if fs::symlink_metadata(&dest).is_ok() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            dest = dir.join(format!("{}.{nanos}", id.to_hex()));
        }
        match fs::rename(&src, &dest) {
            Ok(()) => Ok(Some(dest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("moving aside", &src)(e)),
        }
    }

    /// Moves `id` aside (see [`LocalStore::set_aside`]) if the stored copy fails verification by
    /// itself; a good copy, or none, stays as it is. Returns whether it was moved.
    pub fn quarantine_if_corrupt(&self, id: &ObjectId) -> Result<bool> {
        if !self.is_corrupt(id) {
            return Ok(false);
        }
        Ok(self.set_aside(id)?.is_some())
    }

    /// Whether the stored object `id` fails verification by itself (whatever bound a manifest
    /// sets): unreadable header, payload that does not decode, or content with another hash.
    pub fn is_corrupt(&self, id: &ObjectId) -> bool {
        match self.read_bounded(id, codec::MAX_OBJECT_SIZE) {
            Ok(enc) => codec::decode_verified(id, &enc, codec::MAX_OBJECT_SIZE).is_err(),
            Err(Error::Store(StoreError::CorruptObject { .. })) => true,
            Err(_) => false,
        }
    }

    /// Removes `id` (missing is not an error).
    pub fn delete(&self, id: &ObjectId) -> Result<()> {
        let p = self.path_of(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("deleting object", p)(e)),
        }
    }

    /// Every object id in the store, sorted. Files that are not objects (stray names) are skipped.
    pub fn list(&self) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.objects) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("listing", &self.objects)(e)),
        };
        for fan in rd {
            let fan = fan.map_err(Error::io("listing", &self.objects))?;
            let name = fan.file_name();
            let Some(prefix) = name.to_str().filter(|n| n.len() == 2) else {
                continue;
            };
            let dir = fan.path();
            let inner = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(_) => continue,
            };
            for ent in inner {
                let ent = ent.map_err(Error::io("listing", &dir))?;
                if let Some(rest) = ent.file_name().to_str() {
                    if let Ok(id) = ObjectId::parse(&format!("{prefix}{rest}")) {
                        if id.to_hex() == format!("{prefix}{rest}") {
                            out.push(id);
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// An object written to the store's temporary directory, not yet visible.
pub struct StagedObject {
    file: AtomicFile,
}

impl StagedObject {
    /// fsyncs the object and renames it into place (if no other writer got there first). Returns
    /// whether it was new. The caller must fsync the object's fan-out directory (see
    /// [`fsutil::sync_dir`]) before anything durable refers to the object.
    pub fn persist(self) -> Result<bool> {
        self.file.persist_if_absent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DataHint, Encoder};

    #[test]
    fn put_get_list_delete() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = LocalStore::open(d.path().join("objects"), d.path().join("tmp")).expect("open");
        let raw = b"hello hello hello hello hello hello hello hello hello hello hello".to_vec();
        let id = ObjectId::of(&raw);
        let enc = Encoder::new().encode(&raw, DataHint::Unknown);
        assert!(s.put_verified(&id, &enc, 1 << 20).expect("put"));
        assert!(!s.put_verified(&id, &enc, 1 << 20).expect("put again"));
        assert_eq!(s.get(&id, 1 << 20).expect("get"), raw);
        assert_eq!(s.list().expect("list"), vec![id]);
        // A wrong id is refused and nothing is stored.
        let other = ObjectId::of(b"other");
        assert!(s.put_verified(&other, &enc, 1 << 20).is_err());
        assert!(!s.has(&other));
        // Corruption on disk is detected on read.
        fs::write(s.path_of(&id), b"NSOBgarbage").expect("corrupt");
        let err = s.get(&id, 1 << 20).expect_err("corrupt");
        assert!(err.to_string().contains(&id.to_hex()), "{err}");
        s.delete(&id).expect("delete");
        assert!(matches!(
            s.get(&id, 10),
            Err(Error::Store(StoreError::ObjectMissing(_)))
        ));
    }
}
