//! Uploads staged on disk: a received object is written to a temporary file as it arrives, verified
//! from that file with bounded memory, and only then handed to a store
//! ([`Store::put_staged`](crate::remote::Store::put_staged)), which moves or copies it into place.
//!
//! Verification streams: the payload is decoded in blocks and hashed as it goes, so checking an
//! object of any size takes a few MiB (one zstd window per byte plane), not the object's size.
//! Float objects (format 4, at most 16 MiB of raw bytes) are the exception: they are decoded in
//! memory, which takes up to about four times the chunk (the encoded object, its planes, the
//! decoded chunk, rANS words).
//! The result is the same as [`codec::decode_verified`] for every object this crate's encoder
//! writes; zstd frames are refused above a window of 2^[`MAX_WINDOW_LOG`] bytes (the encoder's
//! level-1 frames use at most 2^19), which bounds what a hostile upload can make the server hold.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::codec::{self, Codec, HEADER_LEN};
use crate::error::{Corruption, Error, Result, StoreError};
use crate::fsutil::TMP_PREFIX;
use crate::id::{Hasher, ObjectId};

/// Largest zstd window accepted when verifying a staged upload, as a power of two (8 MiB).
pub const MAX_WINDOW_LOG: u32 = 23;

/// Bytes decoded and hashed at a time.
const BLOCK: usize = 1 << 20;

/// An object received into a temporary file (removed when dropped, unless a store took it).
#[derive(Debug)]
pub struct StagedUpload {
    file: NamedTempFile,
    len: u64,
}

impl StagedUpload {
    /// A new, empty staging file in `dir`.
    pub fn create_in(dir: &Path) -> Result<StagedUpload> {
        let file = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)
            .map_err(Error::io("creating a temporary file in", dir))?;
        Ok(StagedUpload { file, len: 0 })
    }

    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .as_file_mut()
            .write_all(data)
            .map_err(Error::io("writing", self.file.path()))?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The open file.
    pub fn file(&self) -> &File {
        self.file.as_file()
    }

    /// Gives up the temporary file (to a store that renames it into place).
    pub fn into_temp(self) -> NamedTempFile {
        self.file
    }

    /// Checks that the staged bytes are an encoded object that decodes to at most `max_raw_len`
    /// bytes hashing to `id`; see the module doc. Errors are [`StoreError::CorruptObject`](crate::error::StoreError::CorruptObject) for a bad
    /// object, [`Error::Io`] when the file cannot be read.
    pub fn verify(&self, id: &ObjectId, max_raw_len: u64) -> Result<()> {
        verify_file(id, self.file(), self.len, max_raw_len, self.path())
    }

    /// The object format version in the staged object's header, `None` when the bytes do not
    /// start with an object header (left to [`StagedUpload::verify`] to refuse).
    pub fn format_version(&self) -> Result<Option<u8>> {
        if self.len < HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        crate::fsutil::read_exact_at(self.file(), &mut head, 0)
            .map_err(|e| Error::io("reading", self.path())(e))?;
        Ok((&head[..4] == codec::MAGIC).then_some(head[4]))
    }
}

/// A section `[pos, end)` of a file, read with positioned reads (several sections of one file can
/// be read at once).
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        crate::fsutil::read_exact_at(self.file, &mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Streams `file` (an encoded object of `len` bytes) through decoding and hashing.
pub fn verify_file(
    id: &ObjectId,
    file: &File,
    len: u64,
    max_raw_len: u64,
    path: &Path,
) -> Result<()> {
    let corrupt = |reason: String| Error::corrupt(*id, Corruption::Undecodable, reason);
    let io_err = |e: io::Error| Error::io("reading", path)(e);
    let mut head = [0u8; codec::DELTA_HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Err(Error::corrupt(
            *id,
            Corruption::BadHeader,
            format!("truncated: {len} bytes, shorter than the {HEADER_LEN}-byte header"),
        ));
    }
    let head = &mut head[..(len as usize).min(codec::DELTA_HEADER_LEN)];
    crate::fsutil::read_exact_at(file, head, 0).map_err(io_err)?;
    let h = codec::parse_header(id, head)?;
    codec::check_raw_len(id, &h, max_raw_len)?;
    let payload = Section {
        file,
        pos: HEADER_LEN as u64,
        end: len,
    };
    let mut hasher = Hasher::new();
    match h.codec {
        Codec::Raw => {
            if len - HEADER_LEN as u64 != h.raw_len {
                return Err(corrupt(format!(
                    "raw payload is {} bytes, header says {}",
                    len - HEADER_LEN as u64,
                    h.raw_len
                )));
            }
            hash_exactly(payload, h.raw_len, &mut hasher, &corrupt, "raw payload")?;
        }
        Codec::Zstd => {
            let dec = zstd_reader(payload).map_err(|e| corrupt(format!("zstd: {e}")))?;
            hash_exactly(dec, h.raw_len, &mut hasher, &corrupt, "zstd payload")?;
        }
        Codec::ByteGrouped(w) => {
            verify_grouped(file, len, h.raw_len, w as usize, &mut hasher, &corrupt)?;
        }
        Codec::FloatPlanes(_) | Codec::FloatFields(_) => {
            // Decoded in memory (a rANS plane decodes as a whole), which the size bounds keep
            // to a chunk: at most MAX_FLOAT_OBJECT raw bytes, encoded in at most about as many.
            codec::check_float_len(id, &h)?;
            if len > codec::max_encoded_len(h.raw_len) {
                return Err(Error::corrupt(
                    *id,
                    Corruption::TooLarge,
                    format!(
                        "a float object of {} bytes is {len} bytes encoded, more than it can take",
                        h.raw_len
                    ),
                ));
            }
            let mut enc = vec![0u8; len as usize];
            crate::fsutil::read_exact_at(file, &mut enc, 0).map_err(io_err)?;
            let mut raw = Vec::new();
            codec::with_pooled_scratch(|scratch| {
                codec::decode_into(id, &enc, max_raw_len, &mut raw, scratch)
            })?;
            hasher.update(&raw);
        }
        Codec::Delta { base, .. } => {
            return Err(Error::Store(StoreError::DeltaNeedsBase { id: *id, base }));
        }
    }
    let actual = hasher.finish();
    if actual != *id {
        return Err(Error::corrupt(
            *id,
            Corruption::HashMismatch,
            format!("content hashes to {actual}"),
        ));
    }
    Ok(())
}

fn zstd_reader<R: Read>(r: R) -> io::Result<impl Read> {
    let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 16, r))?;
    d.window_log_max(MAX_WINDOW_LOG)?;
    Ok(d)
}

/// Reads exactly `n` bytes from `r` into the hash, then checks that `r` is exhausted.
fn hash_exactly(
    mut r: impl Read,
    n: u64,
    hasher: &mut Hasher,
    corrupt: &dyn Fn(String) -> Error,
    what: &str,
) -> Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut left = n;
    while left > 0 {
        let want = left.min(BLOCK as u64) as usize;
        read_full(&mut r, &mut buf[..want]).map_err(|e| {
            corrupt(format!(
                "{what} does not decode to the declared {n} bytes: {e}"
            ))
        })?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt(format!(
            "{what} decodes to more than the declared {n} bytes"
        ))),
        Err(e) => Err(corrupt(format!("{what}: {e}"))),
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The byte-grouped payload: `w` planes (each raw or zstd, with a 9-byte header) then a raw tail;
/// decoded plane by plane in step, interleaved block by block into the hash.
fn verify_grouped(
    file: &File,
    len: u64,
    raw_len: u64,
    w: usize,
    hasher: &mut Hasher,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<()> {
    let n = raw_len / w as u64;
    let mut pos = HEADER_LEN as u64;
    let mut planes: Vec<Box<dyn Read + '_>> = Vec::with_capacity(w);
    for k in 0..w {
        let mut ph = [0u8; 9];
        if len < pos + 9 {
            return Err(corrupt(format!("truncated before plane {k}")));
        }
        crate::fsutil::read_exact_at(file, &mut ph, pos)
            .map_err(|e| corrupt(format!("plane {k}: {e}")))?;
        let plen = u64::from_le_bytes(ph[1..9].try_into().expect("8 bytes"));
        pos += 9;
        let end = pos
            .checked_add(plen)
            .filter(|&e| e <= len)
            .ok_or_else(|| corrupt(format!("plane {k} runs past the end of the object")))?;
        let section = Section { file, pos, end };
        planes.push(match ph[0] {
            0 if plen == n => Box::new(section),
            0 => {
                return Err(corrupt(format!(
                    "plane {k} holds {plen} bytes, expected {n}"
                )))
            }
            1 => Box::new(
                zstd_reader(section).map_err(|e| corrupt(format!("plane {k}: zstd: {e}")))?,
            ),
            c => return Err(corrupt(format!("plane {k} has unknown codec {c}"))),
        });
        pos = end;
    }
    let tail_len = raw_len - n * w as u64;
    if len - pos != tail_len {
        return Err(corrupt(format!(
            "tail is {} bytes, expected {tail_len}",
            len - pos
        )));
    }
    let per = BLOCK / w;
    let mut bufs = vec![vec![0u8; per]; w];
    let mut out = vec![0u8; per * w];
    let mut left = n;
    while left > 0 {
        let m = left.min(per as u64) as usize;
        for (k, (p, b)) in planes.iter_mut().zip(bufs.iter_mut()).enumerate() {
            read_full(p, &mut b[..m])
                .map_err(|e| corrupt(format!("plane {k} does not decode to {n} bytes: {e}")))?;
        }
        for (i, chunk) in out[..m * w].chunks_exact_mut(w).enumerate() {
            for (k, byte) in chunk.iter_mut().enumerate() {
                *byte = bufs[k][i];
            }
        }
        hasher.update(&out[..m * w]);
        left -= m as u64;
    }
    for (k, p) in planes.iter_mut().enumerate() {
        let mut extra = [0u8; 1];
        if !matches!(p.read(&mut extra), Ok(0)) {
            return Err(corrupt(format!("plane {k} decodes to more than {n} bytes")));
        }
    }
    let mut tail = vec![0u8; tail_len as usize];
    crate::fsutil::read_exact_at(file, &mut tail, pos)
        .map_err(|e| corrupt(format!("tail: {e}")))?;
    hasher.update(&tail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_OBJECT_SIZE;
    use crate::codec::{DataHint, Encoder};
    use crate::error::StoreError;
    use proptest::prelude::*;

    fn staged(enc: &[u8]) -> (tempfile::TempDir, StagedUpload) {
        let d = tempfile::tempdir().expect("tmp");
        let mut s = StagedUpload::create_in(d.path()).expect("create");
        s.write(enc).expect("write");
        (d, s)
    }

    /// Streaming verification agrees with the in-memory decoder on every codec and on damage.
    /// The streamed check and the in-memory decode agree on `raw` encoded by today's encoder and
    /// in format 1 (float objects and byte-grouped ones), with byte `flip` damaged.
    fn agrees(raw: &[u8], hint: DataHint, flip: Option<usize>) {
        agrees_on(raw, Encoder::new().encode(raw, hint), flip);
        agrees_on(raw, Encoder::new().encode_format1(raw, hint), flip);
    }

    fn agrees_on(raw: &[u8], mut enc: Vec<u8>, flip: Option<usize>) {
        let id = ObjectId::of(raw);
        if let Some(i) = flip {
            let i = i % enc.len();
            enc[i] ^= 0x20;
        }
        let (_d, s) = staged(&enc);
        let streamed = s.verify(&id, MAX_OBJECT_SIZE);
        let in_memory = codec::decode_verified(&id, &enc, MAX_OBJECT_SIZE);
        assert_eq!(
            streamed.is_ok(),
            in_memory.is_ok(),
            "{:?} vs {:?}",
            streamed.err().map(|e| e.to_string()),
            in_memory.err().map(|e| e.to_string())
        );
        // Damage reads as corruption; damage to the format version byte reads as a format from a
        // newer nshard, which is never called corrupt (nor moved aside).
        if let Err(e) = streamed {
            assert!(
                matches!(
                    e,
                    Error::Store(
                        StoreError::CorruptObject { .. } | StoreError::UnsupportedFormat { .. }
                    )
                ),
                "{e}"
            );
        }
    }

    fn floats(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .flat_map(|i| (((i.wrapping_mul(seed) % 1000) as f32) * 0.001).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_verifies_and_damage_is_caught() {
        let text: Vec<u8> = b"abcabcabc hello "
            .iter()
            .copied()
            .cycle()
            .take(3 << 20)
            .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..2 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let f32s = floats(700_001, 7);
        let bf16: Vec<u8> = f32s.chunks(4).flat_map(|c| [c[2], c[3]]).collect();
        for (raw, hint) in [
            (&text, DataHint::Unknown),
            (&noise, DataHint::Unknown),
            (&f32s, DataHint::Float(4)),
            (&bf16, DataHint::Float(2)),
        ] {
            agrees(raw, hint, None);
            for flip in [3, 9, 17, 100, 5000, usize::MAX / 2] {
                agrees(raw, hint, Some(flip));
            }
        }
        // Wrong id and truncation.
        let enc = Encoder::new().encode(&text, DataHint::Unknown);
        let (_d, s) = staged(&enc);
        assert!(s.verify(&ObjectId::of(b"other"), MAX_OBJECT_SIZE).is_err());
        let (_d, s) = staged(&enc[..enc.len() - 1]);
        assert!(s.verify(&ObjectId::of(&text), MAX_OBJECT_SIZE).is_err());
        let (_d, s) = staged(&enc[..10]);
        assert!(s.verify(&ObjectId::of(&text), MAX_OBJECT_SIZE).is_err());
        // A bound below the declared length.
        let (_d, s) = staged(&enc);
        assert!(s.verify(&ObjectId::of(&text), 1000).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn streaming_matches_in_memory(len in 0usize..200_000, seed in 1u32..1000, w in prop::sample::select(vec![0u8, 2, 4]), flip in prop::option::of(any::<usize>())) {
            let raw = floats(len / 4 + 1, seed);
            let raw = &raw[..len.min(raw.len())];
            let hint = if w == 0 { DataHint::Unknown } else { DataHint::Float(w) };
            agrees(raw, hint, flip);
        }
    }
}
