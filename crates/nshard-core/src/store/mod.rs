//! The local object store: encoded objects under `objects/ab/cdef…`, written through a temporary
//! directory on the same filesystem, write-once, verified on every read.
//!
//! The same layout serves the repository's own store (`.shard/objects`, `.shard/tmp`) and a
//! directory remote (`DIR/objects`, `DIR/tmp`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::buffers::Pool;
use crate::codec::{self, Codec, DataHint, Encoder};
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
        let mut buf = Vec::new();
        self.read_bounded_into(id, max_raw_len, &mut buf)?;
        Ok(buf)
    }

    /// [`LocalStore::read_bounded`] into `buf` (its old contents replaced).
    fn read_bounded_into(&self, id: &ObjectId, max_raw_len: u64, buf: &mut Vec<u8>) -> Result<()> {
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
        crate::fsutil::read_limited_into(&p, limit, buf).map_err(|e| {
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
    /// file against its manifest and re-verifies chunk by chunk when that fails). A delta object
    /// is decoded through its chain of bases.
    pub fn get_unverified(&self, id: &ObjectId, max_raw_len: u64) -> Result<Vec<u8>> {
        self.resolve(id, max_raw_len, Verify::No)
    }

    /// [`LocalStore::get_unverified`] into `out` (its old contents replaced), with the reader's
    /// buffers in `scratch`: a caller reading many objects keeps one of each per thread.
    pub fn get_unverified_into(
        &self,
        id: &ObjectId,
        max_raw_len: u64,
        out: &mut Vec<u8>,
        scratch: &mut ReadScratch,
    ) -> Result<()> {
        self.resolve_into(id, max_raw_len, Verify::No, out, scratch)
    }

    /// Reads, decodes and verifies `id`, producing at most `max_raw_len` bytes. A delta object is
    /// decoded through its chain of bases and the result verified.
    pub fn get(&self, id: &ObjectId, max_raw_len: u64) -> Result<Vec<u8>> {
        self.resolve(id, max_raw_len, Verify::Result)
    }

    /// The encoded bytes of `id` as a standalone object: the stored bytes when `id` is stored on
    /// its own, else its raw bytes (decoded through its chain and verified) encoded anew with
    /// `encoder`. A remote's `objects/` holds standalone objects only; push sends these there.
    pub fn get_standalone(&self, id: &ObjectId, encoder: &mut Encoder) -> Result<Vec<u8>> {
        let enc = self.get_encoded(id)?;
        match codec::parse_header(id, &enc)?.codec {
            Codec::Delta { width, .. } => {
                let raw = self.get(id, codec::MAX_OBJECT_SIZE)?;
                Ok(encoder.encode(&raw, DataHint::Float(width)))
            }
            _ => Ok(enc),
        }
    }

    /// [`LocalStore::get_standalone`] in object format 1, which every nshard reads: a float
    /// object or a delta is decoded (and verified) and encoded anew with
    /// [`Encoder::encode_format1`]; returns whether it was. For remotes whose server refuses
    /// float objects.
    pub fn get_standalone_format1(
        &self,
        id: &ObjectId,
        encoder: &mut Encoder,
    ) -> Result<(Vec<u8>, bool)> {
        let enc = self.get_encoded(id)?;
        match codec::parse_header(id, &enc)?.codec {
            Codec::Delta { width, .. } | Codec::FloatPlanes(width) | Codec::FloatFields(width) => {
                let raw = self.get(id, codec::MAX_OBJECT_SIZE)?;
                Ok((encoder.encode_format1(&raw, DataHint::Float(width)), true))
            }
            _ => Ok((enc, false)),
        }
    }

    /// How `id` is stored: `Some((base, rank))` for a delta object, `None` for a standalone one.
    /// Reads only the header.
    pub fn delta_base(&self, id: &ObjectId) -> Result<Option<(ObjectId, u8)>> {
        let p = self.path_of(id);
        let mut head = [0u8; codec::DELTA_HEADER_LEN];
        let f = fsutil::open_regular(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::Store(StoreError::ObjectMissing(*id))
            } else {
                Error::io("reading object", &p)(e)
            }
        })?;
        let len = f.metadata().map_err(Error::io("reading object", &p))?.len();
        let head = &mut head[..(len as usize).min(codec::DELTA_HEADER_LEN)];
        fsutil::read_exact_at(&f, head, 0).map_err(Error::io("reading object", &p))?;
        match codec::parse_header(id, head)?.codec {
            Codec::Delta { base, rank, .. } => Ok(Some((base, rank))),
            _ => Ok(None),
        }
    }

    /// The objects `id` is built on, nearest first, down to the standalone one (empty for a
    /// standalone object), following headers only. Errors on a chain that is broken, cyclic or
    /// longer than [`codec::MAX_CHAIN`] deltas.
    pub fn bases(&self, id: &ObjectId) -> Result<Vec<ObjectId>> {
        let mut chain = match self.delta_base(id)? {
            Some((base, _)) => self.walk_chain(id, base)?,
            None => return Ok(Vec::new()),
        };
        chain.remove(0);
        Ok(chain)
    }

    /// The chain of the delta object `id` whose header names `base`: `id`, then each object's
    /// base in turn (read from headers only), ending at the standalone one. At most
    /// [`codec::MAX_CHAIN`] deltas; a cycle, a longer chain or a missing base is an error.
    fn walk_chain(&self, id: &ObjectId, base: ObjectId) -> Result<Vec<ObjectId>> {
        let mut chain = vec![*id];
        let mut base = base;
        loop {
            // `chain` holds the deltas found so far; `base` would be one more object.
            if chain.contains(&base) {
                let reason = format!("its chain of deltas runs in a cycle through {base}");
                return Err(Error::corrupt(*id, Corruption::BadChain, reason));
            }
            if chain.len() > codec::MAX_CHAIN {
                let reason = format!(
                    "its chain of deltas is longer than {} deltas",
                    codec::MAX_CHAIN
                );
                return Err(Error::corrupt(*id, Corruption::BadChain, reason));
            }
            let top = *chain.last().expect("chain starts with id");
            chain.push(base);
            match as_base_of(&top, &base, self.delta_base(&base))? {
                Some((next, _)) => base = next,
                None => return Ok(chain),
            }
        }
    }

    /// How many deltas lie between `id` and its standalone ancestor (0 for a standalone object):
    /// see [`LocalStore::bases`].
    pub fn chain_depth(&self, id: &ObjectId) -> Result<usize> {
        Ok(self.bases(id)?.len())
    }

    /// Replaces the standalone encoding of `id` with `delta` (an encoding of the same bytes
    /// against another object, which the caller checked decodes to `id`). Atomic: a reader sees
    /// either encoding, both decode to the same bytes. Returns whether it was replaced (`false`
    /// when `id` is gone or no longer standalone).
    pub fn replace_with_delta(&self, id: &ObjectId, delta: &[u8]) -> Result<bool> {
        if !matches!(self.delta_base(id), Ok(None)) {
            return Ok(false);
        }
        let file = self.replacement(id, delta)?;
        crate::crash_point!("delta-before-replace");
        file.commit()?;
        Ok(true)
    }

    /// A temporary file holding `enc`, another encoding of `id`, that replaces the stored one
    /// atomically when committed.
    fn replacement(&self, id: &ObjectId, enc: &[u8]) -> Result<AtomicFile> {
        let dest = self.path_of(id);
        let mut file = AtomicFile::create_in(&self.tmp, &dest)?;
        io::Write::write_all(file.file(), enc).map_err(Error::io("writing object", &dest))?;
        Ok(file)
    }

    /// Replaces the delta encoding of `id` with a standalone one (its bytes decoded through its
    /// chain, verified, and encoded anew with `encoder`), so that the objects below it are no
    /// longer needed for it. Atomic: a reader sees either encoding. Returns the new encoding's
    /// size, `None` when `id` is not stored as a delta.
    pub fn restore_whole(&self, id: &ObjectId, encoder: &mut Encoder) -> Result<Option<u64>> {
        if !matches!(self.delta_base(id), Ok(Some(_))) {
            return Ok(None);
        }
        let enc = self.get_standalone(id, encoder)?;
        let file = self.replacement(id, &enc)?;
        crate::crash_point!("gc-before-restore-whole");
        file.commit()?;
        Ok(Some(enc.len() as u64))
    }

    /// Reads `id`, following delta objects down to the standalone object they build on (at most
    /// [`codec::MAX_CHAIN`] deltas, by their headers), then applies the deltas upward, reading
    /// each one when its turn comes. Memory: two encoded objects, one raw chunk decoded in place
    /// and the decoder's scratch (about one more chunk), whatever the depth. A chain that changes
    /// while it is read (a repack re-encodes one of its objects as a delta; each object changes
    /// at most once) is walked again.
    fn resolve(&self, id: &ObjectId, max_raw_len: u64, verify: Verify) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        ReadScratch::pooled(|scratch| {
            self.resolve_into(id, max_raw_len, verify, &mut out, scratch)
        })?;
        Ok(out)
    }

    /// [`LocalStore::resolve`] into `out`, with the reader's buffers in `scratch`.
    fn resolve_into(
        &self,
        id: &ObjectId,
        max_raw_len: u64,
        verify: Verify,
        out: &mut Vec<u8>,
        scratch: &mut ReadScratch,
    ) -> Result<()> {
        for _ in 0..=codec::MAX_CHAIN {
            if self.resolve_once(id, max_raw_len, verify, out, scratch)? {
                return Ok(());
            }
        }
        Err(Error::corrupt(
            *id,
            Corruption::BadChain,
            "its chain of deltas kept changing while it was read",
        ))
    }

    /// One attempt of [`LocalStore::resolve_into`]: `false` when an object of the chain was
    /// re-encoded between the walk down and the way up.
    fn resolve_once(
        &self,
        id: &ObjectId,
        max_raw_len: u64,
        verify: Verify,
        raw: &mut Vec<u8>,
        scratch: &mut ReadScratch,
    ) -> Result<bool> {
        let ReadScratch {
            top,
            level,
            codec: dec,
        } = scratch;
        self.read_bounded_into(id, max_raw_len, top)?;
        let h = codec::parse_header(id, top)?;
        let Codec::Delta { base, .. } = h.codec else {
            codec::decode_into(id, top, max_raw_len, raw, dec)?;
            if verify != Verify::No {
                check_hash(id, raw)?;
            }
            return Ok(true);
        };
        codec::check_raw_len(id, &h, max_raw_len)?;
        let raw_len = h.raw_len;
        // Down by the headers: `chain[k + 1]` is the base of `chain[k]`; the last one is
        // standalone.
        let chain = self.walk_chain(id, base)?;
        let read = |k: usize, buf: &mut Vec<u8>| {
            as_base_of(
                &chain[k - 1],
                &chain[k],
                self.read_bounded_into(&chain[k], raw_len, buf),
            )
        };
        let bottom = chain.len() - 1;
        read(bottom, level)?;
        if let Codec::Delta { .. } = codec::parse_header(&chain[bottom], level)?.codec {
            return Ok(false);
        }
        codec::decode_into(&chain[bottom], level, raw_len, raw, dec)?;
        if verify == Verify::EachLevel {
            check_hash(&chain[bottom], raw)?;
        }
        for k in (0..bottom).rev() {
            if k != 0 {
                read(k, level)?;
            }
            let cenc: &[u8] = if k == 0 { top } else { level };
            let cid = &chain[k];
            match codec::parse_header(cid, cenc)?.codec {
                Codec::Delta { base, .. } if base == chain[k + 1] => {}
                _ => return Ok(false),
            }
            match codec::decode_against_in_place(cid, cenc, raw, max_raw_len, dec) {
                Ok(()) => {}
                // A damaged base can make a good delta undecodable (its contexts come from the
                // base): check every level to name the object at fault, never the delta by default.
                Err(_) if verify != Verify::EachLevel => {
                    return self
                        .resolve_into(id, max_raw_len, Verify::EachLevel, raw, scratch)
                        .map(|()| true)
                }
                Err(e) => return Err(e),
            };
            if verify == Verify::EachLevel {
                check_hash(cid, raw)?;
            }
        }
        if verify == Verify::Result && ObjectId::of(raw) != *id {
            // Name the object that is damaged, not every delta built on it.
            return self
                .resolve_into(id, max_raw_len, Verify::EachLevel, raw, scratch)
                .map(|()| true);
        }
        Ok(true)
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
        let Some(dir) = self.corrupt_dir() else {
            return Err(Error::io("moving aside", &src)(io::Error::other(
                "the object directory has no parent to hold corrupt/",
            )));
        };
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

    /// `e`, after moving its object aside when `e` says a stored object is corrupt and the object
    /// fails verification by itself (see [`LocalStore::quarantine`]); the reason then says where
    /// it went, so that `pull` or `commit` can put a good copy in its place. Other errors pass
    /// through.
    pub fn quarantine_on(&self, e: Error) -> Error {
        match e {
            Error::Store(StoreError::CorruptObject { id, kind, reason })
                if self.is_corrupt(&id) =>
            {
                let reason = if self.quarantine(&id) {
                    format!("{reason} (moved to .shard/corrupt/)")
                } else {
                    reason
                };
                Error::Store(StoreError::CorruptObject { id, kind, reason })
            }
            e => e,
        }
    }

    /// Puts back `from`, a copy of `id` that [`LocalStore::set_aside`] moved there, unless the
    /// store holds `id` again meanwhile (then `from` stays where it is).
    pub fn put_back(&self, id: &ObjectId, from: &Path) -> Result<()> {
        let dest = self.path_of(id);
        // A link never replaces a copy another writer put there meanwhile.
        match fs::hard_link(from, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(Error::io("putting back", &dest)(e)),
        }
        if let Some(dir) = dest.parent() {
            fsutil::sync_dir(dir)?;
        }
        fs::remove_file(from).map_err(Error::io("putting back", from))
    }

    /// Whether a copy of `id` was moved aside as corrupt (see [`LocalStore::set_aside`]) and is
    /// still kept in `corrupt/`: a chunk missing for that reason was lost here, not never fetched.
    pub fn was_set_aside(&self, id: &ObjectId) -> bool {
        self.corrupt_dir()
            .is_some_and(|d| fs::symlink_metadata(d.join(id.to_hex())).is_ok())
    }

    /// `corrupt/` beside `objects/`, where objects found corrupt are kept.
    fn corrupt_dir(&self) -> Option<PathBuf> {
        self.objects.parent().map(|p| p.join("corrupt"))
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
    /// sets): unreadable header, payload that does not decode, or content with another hash. An
    /// object in a format this nshard does not know is not corrupt, and a delta object is judged
    /// only against a base that reads correctly (a damaged or missing base is the base's fault).
    pub fn is_corrupt(&self, id: &ObjectId) -> bool {
        let max = codec::MAX_OBJECT_SIZE;
        let judged = match self.read_bounded(id, max) {
            Ok(enc) => match codec::parse_header(id, &enc) {
                Ok(codec::Header {
                    codec: Codec::Delta { base, .. },
                    ..
                }) => match self.get(&base, max) {
                    Ok(mut raw) => codec::with_pooled_scratch(|scratch| {
                        codec::decode_against_in_place(id, &enc, &mut raw, max, scratch)
                    })
                    .and_then(|()| check_hash(id, &raw)),
                    Err(_) => return false,
                },
                Ok(_) => codec::decode_verified(id, &enc, max).map(|_| ()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        matches!(judged, Err(Error::Store(StoreError::CorruptObject { .. })))
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

/// How much of a chain [`LocalStore::resolve`] hashes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Nothing (the caller verifies).
    No,
    /// The final bytes.
    Result,
    /// Every object of the chain (to name the damaged one).
    EachLevel,
}

/// The buffers a reader of the store keeps from one object to the next (the encoded bytes of the
/// object asked for and of a chain level, the decoder's buffers): one per reading thread, so that
/// a checkout's chunks do not each cost fresh memory (first touches of fresh pages cost more CPU
/// than decoding them).
#[derive(Default)]
pub struct ReadScratch {
    top: Vec<u8>,
    level: Vec<u8>,
    codec: codec::DecodeScratch,
}

/// Readers' buffers kept between one-off reads (see [`ReadScratch::pooled`]): at most 4, of at
/// most 48 MiB each.
static READ_SCRATCHES: Pool<ReadScratch> = Pool::new(4, 48 << 20);

impl ReadScratch {
    /// Runs `f` with a reader's buffers taken from a small process-wide pool and given back
    /// after: one-off reads on whichever thread (a remote store's reads and checks, a pull's
    /// bases, the re-encoding's round trips) reuse buffers instead of touching fresh memory
    /// for every object, which costs more CPU than decoding it, and memory the allocator keeps
    /// for the thread that freed it.
    pub fn pooled<R>(f: impl FnOnce(&mut ReadScratch) -> R) -> R {
        READ_SCRATCHES.with(
            |s| s.top.capacity() + s.level.capacity() + s.codec.retained(),
            f,
        )
    }
}

/// `r`, a read of `base` on behalf of the delta `id`, with "object missing" said as what it is:
/// the base that `id` needs is missing.
fn as_base_of<T>(id: &ObjectId, base: &ObjectId, r: Result<T>) -> Result<T> {
    match r {
        Err(Error::Store(StoreError::ObjectMissing(_))) => {
            Err(Error::Store(StoreError::BaseMissing {
                id: *id,
                base: *base,
            }))
        }
        r => r,
    }
}

pub(crate) fn check_hash(id: &ObjectId, raw: &[u8]) -> Result<()> {
    let actual = ObjectId::of(raw);
    if actual != *id {
        return Err(Error::corrupt(
            *id,
            Corruption::HashMismatch,
            format!("content hashes to {actual}"),
        ));
    }
    Ok(())
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

    /// A series of bf16-like versions: each a few values away from the previous one.
    fn versions(count: usize) -> Vec<Vec<u8>> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut v: Vec<u8> = (0..16384).map(|_| next() as u8).collect();
        (0..count)
            .map(|_| {
                for _ in 0..300 {
                    let i = (next() % v.len() as u64) as usize;
                    v[i] = v[i].wrapping_add(1);
                }
                v.clone()
            })
            .collect()
    }

    fn store() -> (tempfile::TempDir, LocalStore) {
        let d = tempfile::tempdir().expect("tempdir");
        let s = LocalStore::open(d.path().join("objects"), d.path().join("tmp")).expect("open");
        (d, s)
    }

    fn put(s: &LocalStore, raw: &[u8]) -> ObjectId {
        let id = ObjectId::of(raw);
        let enc = Encoder::new().encode(raw, DataHint::Float(2));
        s.put_trusted(&id, &enc).expect("put");
        id
    }

    /// Stores `vs` as a reverse chain: the last standalone, each earlier one a delta of the next.
    fn chain(s: &LocalStore, vs: &[Vec<u8>]) -> Vec<ObjectId> {
        let ids: Vec<ObjectId> = vs.iter().map(|v| put(s, v)).collect();
        for k in (0..vs.len() - 1).rev() {
            let enc = codec::encode_delta(&vs[k], &vs[k + 1], &ids[k + 1], 2, 1).expect("delta");
            assert!(s.replace_with_delta(&ids[k], &enc).expect("replace"));
        }
        ids
    }

    #[test]
    fn chains_decode_and_report_depth() {
        let (_d, s) = store();
        let vs = versions(5);
        let ids = chain(&s, &vs);
        for (k, id) in ids.iter().enumerate() {
            assert_eq!(s.get(id, 1 << 20).expect("get"), vs[k]);
            assert_eq!(s.get_unverified(id, 1 << 20).expect("get"), vs[k]);
            assert_eq!(s.chain_depth(id).expect("depth"), vs.len() - 1 - k);
            assert!(!s.is_corrupt(id));
        }
        // Replacing is for standalone objects only.
        let enc = codec::encode_delta(&vs[0], &vs[2], &ids[2], 2, 1).expect("delta");
        assert!(!s.replace_with_delta(&ids[0], &enc).expect("replace"));
        // The standalone form for a remote decodes on its own.
        let alone = s
            .get_standalone(&ids[0], &mut Encoder::new())
            .expect("standalone");
        assert_eq!(
            codec::decode_verified(&ids[0], &alone, 1 << 20).expect("decodes"),
            vs[0]
        );
        // A delta is refused where no base can be read (remotes).
        let enc = s.get_encoded(&ids[0]).expect("enc");
        let err = codec::decode_verified(&ids[0], &enc, 1 << 20).expect_err("needs base");
        assert!(
            matches!(err, Error::Store(StoreError::DeltaNeedsBase { .. })),
            "{err}"
        );
        assert!(s.put_verified(&ObjectId::of(b"x"), &enc, 1 << 20).is_err());
    }

    /// One reader's buffers serve chunks of chains of any depth and standalone ones in any order,
    /// and a missing object between them.
    #[test]
    fn one_read_scratch_serves_chains_and_standalone_objects() {
        let (_d, s) = store();
        let vs = versions(4);
        let ids = chain(&s, &vs);
        let other = b"a standalone object that is no float at all".repeat(100);
        let other_id = put(&s, &other);
        let mut scratch = ReadScratch::default();
        let mut out = Vec::new();
        for &k in &[0usize, 3, 1, 2, 0] {
            s.get_unverified_into(&ids[k], 1 << 20, &mut out, &mut scratch)
                .expect("reads");
            assert!(out == vs[k], "version {k}");
            s.get_unverified_into(&other_id, 1 << 20, &mut out, &mut scratch)
                .expect("reads");
            assert_eq!(out, other);
        }
        let missing = ObjectId::of(b"never stored");
        let err = s
            .get_unverified_into(&missing, 1 << 20, &mut out, &mut scratch)
            .expect_err("missing");
        assert!(
            matches!(err, Error::Store(StoreError::ObjectMissing(_))),
            "{err}"
        );
        s.get_unverified_into(&ids[0], 1 << 20, &mut out, &mut scratch)
            .expect("reads");
        assert!(out == vs[0]);
    }

    #[test]
    fn a_corrupt_base_is_named_and_quarantined_alone() {
        let (_d, s) = store();
        let vs = versions(3);
        let ids = chain(&s, &vs);
        // Damage the standalone object at the end of the chain (keep its header valid).
        let p = s.path_of(&ids[2]);
        let mut enc = fs::read(&p).expect("read");
        let last = enc.len() - 1;
        enc[last] ^= 0x55;
        fs::write(&p, &enc).expect("write");
        let err = s.get(&ids[0], 1 << 20).expect_err("corrupt");
        match &err {
            Error::Store(StoreError::CorruptObject { id, .. }) => assert_eq!(*id, ids[2], "{err}"),
            _ => panic!("{err}"),
        }
        assert!(!s.is_corrupt(&ids[0]) && !s.is_corrupt(&ids[1]));
        assert!(s.is_corrupt(&ids[2]));
        assert!(s.quarantine_if_corrupt(&ids[2]).expect("q"));
        assert!(!s.quarantine_if_corrupt(&ids[0]).expect("q"));
        // Now the base is missing: the error names it, and the delta that needs it, whether the
        // chain is read or only walked.
        for err in [
            s.get(&ids[0], 1 << 20).expect_err("missing base"),
            s.chain_depth(&ids[0]).expect_err("missing base"),
        ] {
            assert!(
                matches!(err, Error::Store(StoreError::BaseMissing { id, base }) if id == ids[1] && base == ids[2]),
                "{err}"
            );
        }
    }

    /// Whatever the damage to a base does to the deltas on it (wrong bytes, or a delta that no
    /// longer decodes because its contexts come from the base), the error names the base.
    #[test]
    fn damage_anywhere_in_a_base_names_the_base() {
        let vs = versions(3);
        for at in [20usize, 100, 1000, 5000, 9000, 12000] {
            let (_d, s) = store();
            let ids = chain(&s, &vs);
            let p = s.path_of(&ids[2]);
            let mut enc = fs::read(&p).expect("read");
            let i = codec::HEADER_LEN + at % (enc.len() - codec::HEADER_LEN);
            enc[i] ^= 0x5A;
            fs::write(&p, &enc).expect("write");
            // Verified reads name the base; unverified ones (checkout hashes the file itself)
            // may return the wrong bytes, and when they fail they name the base too.
            let verified = s.get(&ids[0], 1 << 20);
            let unverified = s.get_unverified(&ids[0], 1 << 20);
            assert!(verified.is_err(), "at {at}: damage went unnoticed");
            for r in [verified, unverified] {
                match r {
                    Err(Error::Store(StoreError::CorruptObject { id, .. })) => {
                        assert_eq!(id, ids[2], "at {at}")
                    }
                    Err(e) => panic!("at {at}: {e}"),
                    Ok(raw) => assert_ne!(raw, vs[0], "at {at}"),
                }
            }
            assert!(!s.is_corrupt(&ids[0]) && !s.is_corrupt(&ids[1]), "at {at}");
        }
    }

    #[test]
    fn hostile_chains_are_refused() {
        let (_d, s) = store();
        let vs = versions(3);
        let ids: Vec<ObjectId> = vs.iter().map(|v| put(&s, v)).collect();
        // A cycle: 0 -> 1 -> 0.
        let d01 = codec::encode_delta(&vs[0], &vs[1], &ids[1], 2, 1).expect("d");
        let d10 = codec::encode_delta(&vs[1], &vs[0], &ids[0], 2, 1).expect("d");
        assert!(s.replace_with_delta(&ids[0], &d01).expect("r"));
        fs::write(s.path_of(&ids[1]), &d10).expect("plant");
        let err = s.get(&ids[0], 1 << 20).expect_err("cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
        assert!(s.chain_depth(&ids[0]).is_err());
        // An object that is its own base.
        let mut own = d01.clone();
        own[16..48].copy_from_slice(ids[0].as_bytes());
        fs::write(s.path_of(&ids[0]), &own).expect("plant");
        assert!(s
            .get(&ids[0], 1 << 20)
            .expect_err("self")
            .to_string()
            .contains("itself"));
        assert!(s.is_corrupt(&ids[0]));
        // A delta whose result does not hash to its id: named as the delta's fault.
        let d21 = codec::encode_delta(&vs[2], &vs[1], &ids[1], 2, 1).expect("d");
        fs::write(
            s.path_of(&ids[1]),
            Encoder::new().encode(&vs[1], DataHint::Unknown),
        )
        .expect("restore");
        fs::write(s.path_of(&ids[0]), &d21).expect("plant");
        let err = s.get(&ids[0], 1 << 20).expect_err("wrong result");
        assert!(
            matches!(&err, Error::Store(StoreError::CorruptObject { id, kind: Corruption::HashMismatch, .. }) if *id == ids[0]),
            "{err}"
        );
        assert!(s.is_corrupt(&ids[0]));
        // A chain longer than any reader follows (65 deltas), and one at the bound (64): the
        // walk by headers and the reader agree.
        let (_d2, s) = store();
        let vs = versions(codec::MAX_CHAIN + 2);
        let ids = chain(&s, &vs);
        for err in [
            s.get(&ids[0], 1 << 20).expect_err("long"),
            s.chain_depth(&ids[0]).expect_err("long"),
        ] {
            assert!(err.to_string().contains("longer than 64 deltas"), "{err}");
        }
        assert_eq!(s.get(&ids[1], 1 << 20).expect("at the bound"), vs[1]);
        assert_eq!(
            s.chain_depth(&ids[1]).expect("at the bound"),
            codec::MAX_CHAIN
        );
        assert_eq!(s.get(&ids[2], 1 << 20).expect("within bound"), vs[2]);
    }

    #[test]
    fn unknown_formats_are_not_corrupt() {
        let (_d, s) = store();
        let vs = versions(1);
        let id = put(&s, &vs[0]);
        let mut enc = fs::read(s.path_of(&id)).expect("read");
        enc[4] = 9;
        fs::write(s.path_of(&id), &enc).expect("write");
        let err = s.get(&id, 1 << 20).expect_err("unsupported");
        assert!(matches!(
            err,
            Error::Store(StoreError::UnsupportedFormat { version: 9, .. })
        ));
        assert!(err.to_string().contains("upgrade nshard"), "{err}");
        assert!(!s.is_corrupt(&id));
        assert!(!s.quarantine_if_corrupt(&id).expect("q"));
        assert!(s.has(&id));
    }
}
