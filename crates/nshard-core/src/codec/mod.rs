//! The encoded form of an object: a 16-byte header then the payload.
//!
//! ```text
//! offset  size  field
//! 0       4     magic  b"NSOB"
//! 4       1     format version (1; 2 and 3 delta objects, 4 float objects: below)
//! 5       1     codec: 0 raw, 1 zstd, 2 byte-grouped (version 1); 3 delta; 4 float
//! 6       1     codec parameter (byte-grouped: element width 2 or 4; otherwise 0)
//! 7       1     reserved (0)
//! 8       8     raw length, little endian
//! 16      ..    payload
//! ```
//!
//! Delta objects (format versions 2 and 3, codec 3) add the base's object id after those 16 bytes
//! and decode only together with the base's raw bytes: see the `delta` module. Float objects
//! (format version 4, codec 4) store chunks of float tensors on their own: see the `floats`
//! module. Other objects stay at version 1, readable by every nshard.
//!
//! Byte-grouped payload: for an element width `w`, the first `raw_len / w * w` bytes are split into
//! `w` planes (plane `k` holds byte `k` of every element), then the `raw_len % w` tail bytes. Each
//! plane is preceded by a 9-byte plane header: 1 byte plane codec (0 raw, 1 zstd) and 8 bytes encoded
//! length (LE). The tail is stored raw after the planes. Float exponent bytes compress well and
//! mantissa bytes do not, so only the planes that pay are compressed: smaller *and* faster than
//! compressing the interleaved bytes.
//!
//! The header carries the version and codec so that codecs can be added without breaking old stores;
//! a decoder refuses unknown values instead of guessing. Decoding is bounded: it never produces more
//! than the declared raw length, and the caller bounds the declared length (decompression bombs).

use crate::error::{Corruption, Error, Result, StoreError};
use crate::id::ObjectId;

mod delta;
mod encode;
mod floats;
mod lanes;

pub(crate) use delta::decode_delta;
pub use delta::{
    encode_delta, with_pooled_scratch, DecodeScratch, DELTA_FORMAT_VERSION, DELTA_HEADER_LEN,
    MAX_CHAIN,
};
pub use encode::{DataHint, Encoder};
pub use floats::{FLOAT_FORMAT_VERSION, MAX_FLOAT_OBJECT};

/// Magic bytes at the start of every encoded object.
pub const MAGIC: &[u8; 4] = b"NSOB";
/// Current object format version.
pub const FORMAT_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// The largest raw object NeuroShard creates or accepts (chunks are at most 16 MiB; manifests of very
/// large files and safetensors headers can be bigger).
pub const MAX_OBJECT_SIZE: u64 = 128 * 1024 * 1024;
/// zstd level used for new objects. Level 1 compresses bf16 weights as well as level 3, much faster.
pub const ZSTD_LEVEL: i32 = 1;
/// Compression is kept only when it saves at least this share of the bytes (1/32 ≈ 3 %).
const MIN_SAVING_DIVISOR: usize = 32;

/// How an object's payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is.
    Raw,
    /// One zstd frame.
    Zstd,
    /// Split into byte planes of this element width, each plane raw or zstd.
    ByteGrouped(u8),
    /// Floats of this element width rotated so that the exponent fills the top byte plane, each
    /// plane raw, zstd or rANS (see the `floats` module).
    FloatPlanes(u8),
    /// Floats of this element width (2) rotated likewise, the top byte and the top two bits
    /// below it coded as one symbol, the rest of each element packed (see the `floats` module).
    FloatFields(u8),
    /// A delta of floats of this element width against the object `base` (see the `delta`
    /// module). `rank` is the chain length its writer recorded.
    Delta {
        /// Element width in bytes (2 or 4).
        width: u8,
        /// Deltas in the chain ending here when it was written (this one included).
        rank: u8,
        /// The object the delta applies to.
        base: ObjectId,
    },
}

/// The largest encoded size accepted for an object of `raw_len` raw bytes: the raw bytes plus the
/// header, per-plane headers and zstd's worst-case expansion of incompressible input, with margin.
pub fn max_encoded_len(raw_len: u64) -> u64 {
    HEADER_LEN as u64 + raw_len + raw_len / 128 + 4096
}

/// A buffer holding the object header, with room for `payload` more bytes.
pub(crate) fn header(codec: Codec, raw_len: usize, payload: usize) -> Vec<u8> {
    let (c, p) = match codec {
        Codec::Raw => (0u8, 0u8),
        Codec::Zstd => (1, 0),
        Codec::ByteGrouped(w) => (2, w),
        Codec::Delta { .. } => unreachable!("delta headers are written by encode_delta"),
        Codec::FloatPlanes(_) | Codec::FloatFields(_) => {
            unreachable!("float headers are written by the float encoder")
        }
    };
    let mut h = Vec::with_capacity(HEADER_LEN + payload);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&[FORMAT_VERSION, c, p, 0]);
    h.extend_from_slice(&(raw_len as u64).to_le_bytes());
    h
}

/// The parsed header of an encoded object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload codec.
    pub codec: Codec,
    /// Declared length of the raw bytes.
    pub raw_len: u64,
}

/// Parses and checks an object header. `id` names the object in errors.
pub fn parse_header(id: &ObjectId, enc: &[u8]) -> Result<Header> {
    let corrupt = |reason: String| Error::corrupt(*id, Corruption::BadHeader, reason);
    if enc.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            enc.len()
        )));
    }
    if &enc[..4] != MAGIC {
        return Err(corrupt("bad magic (not a NeuroShard object)".into()));
    }
    let unsupported = || {
        Error::Store(StoreError::UnsupportedFormat {
            id: *id,
            version: enc[4],
            codec: enc[5],
        })
    };
    let codec = match (enc[4], enc[5], enc[6]) {
        (FORMAT_VERSION, 0, 0) => Codec::Raw,
        (FORMAT_VERSION, 1, 0) => Codec::Zstd,
        (FORMAT_VERSION, 2, w @ (2 | 4)) => Codec::ByteGrouped(w),
        (FORMAT_VERSION, c, p) => {
            return Err(corrupt(format!("unknown codec {c} (parameter {p})")))
        }
        (FLOAT_FORMAT_VERSION, floats::FLOAT_CODEC, w @ (2 | 4)) => Codec::FloatPlanes(w),
        // Another number of folded bits is a newer nshard's (unsupported below).
        (FLOAT_FORMAT_VERSION, floats::FIELDS_CODEC, 2) if enc[7] == floats::FOLD => {
            Codec::FloatFields(2)
        }
        (DELTA_FORMAT_VERSION | delta::DELTA_V2, delta::DELTA_CODEC, w @ (2 | 4)) => {
            if enc.len() < DELTA_HEADER_LEN {
                return Err(corrupt(format!(
                    "truncated: {} bytes, shorter than the {DELTA_HEADER_LEN}-byte delta header",
                    enc.len()
                )));
            }
            let base = ObjectId::from_digest(enc[16..48].try_into().expect("32 bytes"));
            if base == *id {
                return Err(Error::corrupt(
                    *id,
                    Corruption::BadChain,
                    "is a delta against itself",
                ));
            }
            Codec::Delta {
                width: w,
                rank: enc[7],
                base,
            }
        }
        (DELTA_FORMAT_VERSION | delta::DELTA_V2, delta::DELTA_CODEC, w) => {
            return Err(corrupt(format!(
                "delta of element width {w} (only 2 and 4)"
            )))
        }
        // A version or codec from a newer nshard: not damage, and never quarantined.
        _ => return Err(unsupported()),
    };
    let raw_len = u64::from_le_bytes(enc[8..16].try_into().expect("8 bytes"));
    Ok(Header { codec, raw_len })
}

/// Refuses a header declaring more than `max_raw_len` (and than [`MAX_OBJECT_SIZE`]) raw bytes,
/// before anything is decoded (decompression bombs).
pub(crate) fn check_raw_len(id: &ObjectId, h: &Header, max_raw_len: u64) -> Result<()> {
    let limit = max_raw_len.min(MAX_OBJECT_SIZE);
    if h.raw_len > limit {
        return Err(Error::corrupt(
            *id,
            Corruption::TooLarge,
            format!(
                "declares {} raw bytes, more than the {limit} allowed here",
                h.raw_len
            ),
        ));
    }
    Ok(())
}

/// Refuses a float object larger than [`MAX_FLOAT_OBJECT`], which this nshard never writes and
/// decodes only in memory, as "unsupported" (a newer nshard may write larger ones: never
/// "corrupt", never moved aside).
pub(crate) fn check_float_len(id: &ObjectId, h: &Header) -> Result<()> {
    if h.raw_len > MAX_FLOAT_OBJECT {
        return Err(Error::Store(StoreError::UnsupportedFormat {
            id: *id,
            version: FLOAT_FORMAT_VERSION,
            codec: match h.codec {
                Codec::FloatFields(_) => floats::FIELDS_CODEC,
                _ => floats::FLOAT_CODEC,
            },
        }));
    }
    Ok(())
}

/// Gives `buf` room for `len` bytes, dropping what it holds if it must grow: a buffer too small
/// is replaced rather than reallocated, which would copy its stale bytes into fresh pages (for
/// reused multi-MiB buffers, costlier than the data they are about to hold).
pub(crate) fn reserve_fresh(buf: &mut Vec<u8>, len: usize) {
    if buf.capacity() < len {
        *buf = Vec::new();
        buf.reserve_exact(len);
    }
}

/// Makes `buf` `len` bytes long for the caller to overwrite whole: a buffer that must grow is
/// replaced (see [`reserve_fresh`]), and bytes it already holds are not zeroed again.
pub(crate) fn overwrite_len(buf: &mut Vec<u8>, len: usize) {
    reserve_fresh(buf, len);
    buf.resize(len, 0);
}

/// Decodes an encoded object, producing at most `max_raw_len` bytes (and never more than
/// [`MAX_OBJECT_SIZE`]). Does not check the hash: see [`decode_verified`].
pub fn decode(id: &ObjectId, enc: &[u8], max_raw_len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    with_pooled_scratch(|scratch| decode_into(id, enc, max_raw_len, &mut out, scratch))?;
    Ok(out)
}

/// [`decode`] into `out` (its old contents replaced), with the decoder's buffers in `scratch`:
/// a reader that decodes many objects keeps one of each, so that no object costs fresh memory
/// (first touches of fresh pages cost more CPU than decoding them). A delta object is refused
/// with [`StoreError::DeltaNeedsBase`].
pub fn decode_into(
    id: &ObjectId,
    enc: &[u8],
    max_raw_len: u64,
    out: &mut Vec<u8>,
    scratch: &mut DecodeScratch,
) -> Result<()> {
    let h = parse_header(id, enc)?;
    let corrupt = |reason: String| Error::corrupt(*id, Corruption::Undecodable, reason);
    check_raw_len(id, &h, max_raw_len)?;
    let raw_len = h.raw_len as usize;
    let payload = &enc[HEADER_LEN..];
    match h.codec {
        Codec::Raw => {
            if payload.len() != raw_len {
                return Err(corrupt(format!(
                    "raw payload is {} bytes, header says {raw_len}",
                    payload.len()
                )));
            }
            out.clear();
            out.extend_from_slice(payload);
        }
        Codec::Zstd => {
            overwrite_len(out, raw_len);
            let d = delta::zstd_context(&mut scratch.zstd).map_err(corrupt)?;
            unzstd_into(d, payload, out).map_err(corrupt)?;
        }
        Codec::ByteGrouped(w) => {
            ungroup(payload, raw_len, w as usize, out, scratch).map_err(corrupt)?
        }
        Codec::FloatPlanes(w) => {
            check_float_len(id, &h)?;
            floats::decode(payload, raw_len, w, out, scratch).map_err(corrupt)?
        }
        Codec::FloatFields(_) => {
            check_float_len(id, &h)?;
            floats::decode_fields(payload, raw_len, out, scratch).map_err(corrupt)?
        }
        Codec::Delta { base, .. } => {
            return Err(Error::Store(StoreError::DeltaNeedsBase { id: *id, base }))
        }
    }
    Ok(())
}

/// Decodes a delta object against its base's raw bytes (see [`Codec::Delta`]); does not check the
/// hash of the result. A base of another length than the delta declares is refused.
pub fn decode_against(
    id: &ObjectId,
    enc: &[u8],
    base_raw: &[u8],
    max_raw_len: u64,
) -> Result<Vec<u8>> {
    let mut raw = base_raw.to_vec();
    with_pooled_scratch(|scratch| {
        decode_against_in_place(id, enc, &mut raw, max_raw_len, scratch)
    })?;
    Ok(raw)
}

/// [`decode_against`] with the base's raw bytes in `raw`, turned into the object's in place, and
/// the decoder's other buffers in `scratch` (a reader going up a chain keeps one raw buffer and
/// one scratch). A standalone `enc` replaces `raw`. On an error `raw` holds the base, or partly
/// decoded bytes when a rANS-coded plane is found malformed at its end (see `delta::decode_delta`).
pub fn decode_against_in_place(
    id: &ObjectId,
    enc: &[u8],
    raw: &mut Vec<u8>,
    max_raw_len: u64,
    scratch: &mut DecodeScratch,
) -> Result<()> {
    let h = parse_header(id, enc)?;
    check_raw_len(id, &h, max_raw_len)?;
    let Codec::Delta { width, base, .. } = h.codec else {
        *raw = decode(id, enc, max_raw_len)?;
        return Ok(());
    };
    if raw.len() as u64 != h.raw_len {
        return Err(Error::corrupt(
            *id,
            Corruption::BadChain,
            format!(
                "is a delta of {} bytes against {base}, which holds {} bytes",
                h.raw_len,
                raw.len()
            ),
        ));
    }
    decode_delta(&enc[DELTA_HEADER_LEN..], enc[4], width, raw, scratch)
        .map_err(|reason| Error::corrupt(*id, Corruption::Undecodable, reason))
}

/// Decodes and checks that the bytes hash to `id`.
pub fn decode_verified(id: &ObjectId, enc: &[u8], max_raw_len: u64) -> Result<Vec<u8>> {
    let raw = decode(id, enc, max_raw_len)?;
    let actual = ObjectId::of(&raw);
    if actual != *id {
        return Err(Error::corrupt(
            *id,
            Corruption::HashMismatch,
            format!("content hashes to {actual}"),
        ));
    }
    Ok(raw)
}

/// Decompresses one zstd frame into `out`, which must decode to exactly `out.len()` bytes. The
/// slice bounds decompression: a frame that inflates beyond it is an error, not an allocation.
fn unzstd_into(
    d: &mut zstd::bulk::Decompressor<'static>,
    payload: &[u8],
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let want = out.len();
    let got = d
        .decompress_to_buffer(payload, out)
        .map_err(|e| format!("zstd payload does not decode to the declared {want} bytes: {e}"))?;
    if got != want {
        return Err(format!(
            "zstd payload decodes to {got} bytes, header says {want}"
        ));
    }
    Ok(())
}

/// Writes element `i`'s byte `k` from `planes[k][i]`: the inverse of splitting into byte planes.
/// One pass over the output for the common widths (the compiler vectorises these loops).
fn interleave(out: &mut [u8], planes: &[&[u8]]) {
    match planes {
        [a, b] => {
            for ((d, &x), &y) in out.chunks_exact_mut(2).zip(a.iter()).zip(b.iter()) {
                d.copy_from_slice(&[x, y]);
            }
        }
        [a, b, c, e] => {
            let planes = a.iter().zip(b.iter()).zip(c.iter()).zip(e.iter());
            for (d, (((&x, &y), &z), &v)) in out.chunks_exact_mut(4).zip(planes) {
                d.copy_from_slice(&[x, y, z, v]);
            }
        }
        _ => {
            let w = planes.len();
            for (k, plane) in planes.iter().enumerate() {
                for (d, &b) in out.chunks_exact_mut(w).zip(plane.iter()) {
                    d[k] = b;
                }
            }
        }
    }
}

/// Decodes a byte-grouped payload into `out`: zstd planes into the scratch's plane buffer, raw
/// ones read where they lie, then one interleaving pass.
fn ungroup(
    payload: &[u8],
    raw_len: usize,
    w: usize,
    out: &mut Vec<u8>,
    scratch: &mut DecodeScratch,
) -> std::result::Result<(), String> {
    let n = raw_len / w;
    let (grouped, zstd) = (&mut scratch.grouped, &mut scratch.zstd);
    grouped.resize(n * w, 0);
    // Where each plane is: `Some(range)` in the payload (raw), `None` in the plane buffer.
    let mut raw_at: Vec<Option<std::ops::Range<usize>>> = Vec::with_capacity(w);
    let mut pos = 0usize;
    for k in 0..w {
        if payload.len() < pos + 9 {
            return Err(format!("truncated before plane {k}"));
        }
        let pc = payload[pos];
        let len = u64::from_le_bytes(payload[pos + 1..pos + 9].try_into().expect("8 bytes"));
        pos += 9;
        let len = usize::try_from(len).map_err(|_| format!("plane {k} length overflows"))?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| format!("plane {k} runs past the end of the object"))?;
        match pc {
            0 if len == n => raw_at.push(Some(pos..end)),
            0 => return Err(format!("plane {k} holds {len} bytes, expected {n}")),
            1 => {
                let d = delta::zstd_context(zstd)?;
                unzstd_into(d, &payload[pos..end], &mut grouped[k * n..(k + 1) * n])
                    .map_err(|e| format!("plane {k}: {e}"))?;
                raw_at.push(None);
            }
            c => return Err(format!("plane {k} has unknown codec {c}")),
        }
        pos = end;
    }
    let tail = &payload[pos..];
    if tail.len() != raw_len - n * w {
        return Err(format!(
            "tail is {} bytes, expected {}",
            tail.len(),
            raw_len - n * w
        ));
    }
    let planes: Vec<&[u8]> = raw_at
        .iter()
        .enumerate()
        .map(|(k, r)| match r {
            Some(r) => &payload[r.clone()],
            None => &grouped[k * n..(k + 1) * n],
        })
        .collect();
    overwrite_len(out, raw_len);
    interleave(&mut out[..n * w], &planes);
    out[n * w..].copy_from_slice(tail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::encode::{sampled_entropy, split_planes, RAW_ENTROPY_BITS};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time plane split equals the plain definition (plane k holds byte k of
        /// every element) for every width and length, tails included.
        #[test]
        fn split_planes_is_the_byte_gather(data in proptest::collection::vec(any::<u8>(), 0..200), w in 1usize..6) {
            let n = data.len() / w;
            let mut got = Vec::new();
            split_planes(&data, w, &mut got);
            let want: Vec<u8> = (0..w)
                .flat_map(|k| data.chunks_exact(w).map(move |e| e[k]))
                .collect();
            prop_assert_eq!(got.len(), n * w);
            prop_assert_eq!(got, want);
        }
    }

    fn roundtrip(raw: &[u8], hint: DataHint) -> Vec<u8> {
        let id = ObjectId::of(raw);
        let enc = Encoder::new().encode(raw, hint);
        decode_verified(&id, &enc, raw.len() as u64).expect("decodes")
    }

    /// One scratch and one output buffer decode objects of every codec and of any size, larger
    /// then smaller, exactly as fresh buffers do; a bad object between them is refused and the
    /// next one decodes.
    #[test]
    fn one_scratch_and_buffer_decode_objects_of_every_codec_in_turn() {
        let weights4: Vec<u8> = bf16_weights(40_000, 9).repeat(2);
        let objects: Vec<(Vec<u8>, DataHint)> = vec![
            (bf16_weights(50_000, 3), DataHint::Float(2)),
            (vec![7u8; 100_000], DataHint::Unknown),
            (bf16_weights(3_001, 4), DataHint::Float(2)),
            (weights4, DataHint::Float(4)),
            (
                (0..5_000u32)
                    .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
                    .collect(),
                DataHint::Unknown,
            ),
            (bf16_weights(2_500, 5)[..4_999].to_vec(), DataHint::Float(2)),
            (fp16_weights(30_000, 6), DataHint::Float(2)),
            (Vec::new(), DataHint::Unknown),
        ];
        let mut scratch = DecodeScratch::default();
        let mut out = vec![0xAAu8; 7];
        let mut codecs = Vec::new();
        // Each float object also byte-grouped (what float chunks over MAX_FLOAT_OBJECT
        // become).
        let encoded = objects.iter().flat_map(|(raw, hint)| {
            let mut e = vec![(raw, Encoder::new().encode(raw, *hint))];
            if let DataHint::Float(w @ (2 | 4)) = hint {
                e.push((raw, Encoder::new().encode_grouped(raw, *w)));
            }
            e
        });
        for (raw, enc) in encoded {
            let id = ObjectId::of(raw);
            codecs.push(parse_header(&id, &enc).expect("header").codec);
            decode_into(&id, &enc, raw.len() as u64, &mut out, &mut scratch).expect("decodes");
            assert!(out == *raw, "{:?} of {} bytes", codecs.last(), raw.len());
            // A truncated object is an error; the scratch still serves the next one.
            if enc.len() > HEADER_LEN + 20 {
                let cut = &enc[..enc.len() - 10];
                assert!(decode_into(&id, cut, raw.len() as u64, &mut out, &mut scratch).is_err());
            }
        }
        for c in [
            Codec::Raw,
            Codec::Zstd,
            Codec::ByteGrouped(2),
            Codec::ByteGrouped(4),
            Codec::FloatPlanes(2),
            Codec::FloatPlanes(4),
            Codec::FloatFields(2),
        ] {
            assert!(codecs.contains(&c), "{c:?} not covered: {codecs:?}");
        }
    }

    #[test]
    fn compressible_uses_zstd_random_stays_raw() {
        let zeros = vec![0u8; 100_000];
        let enc = Encoder::new().encode(&zeros, DataHint::Unknown);
        assert_eq!(
            parse_header(&ObjectId::of(&zeros), &enc)
                .expect("hdr")
                .codec,
            Codec::Zstd
        );
        let mut x = 1u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let enc = Encoder::new().encode(&noise, DataHint::Unknown);
        assert_eq!(
            parse_header(&ObjectId::of(&noise), &enc)
                .expect("hdr")
                .codec,
            Codec::Raw
        );
        assert_eq!(roundtrip(&noise, DataHint::Float(2)), noise);
    }

    #[test]
    fn bomb_is_refused() {
        let zeros = vec![0u8; 1_000_000];
        let id = ObjectId::of(&zeros);
        let enc = Encoder::new().encode(&zeros, DataHint::Unknown);
        // The caller expects at most 1000 bytes: the declared length is refused before decoding.
        assert!(decode(&id, &enc, 1000).is_err());
        // A header that lies low about a large frame: decoding stops at the declared size.
        let mut lying = enc.clone();
        lying[8..16].copy_from_slice(&1000u64.to_le_bytes());
        let err = decode(&id, &lying, 1_000_000).expect_err("must fail");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let data = vec![7u8; 10_000];
        let id = ObjectId::of(&data);
        let enc = Encoder::new().encode(&data, DataHint::Float(2));
        for cut in [0, 5, HEADER_LEN, enc.len() / 2, enc.len() - 1] {
            assert!(
                decode_verified(&id, &enc[..cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = enc.clone();
        bad[5] = 9;
        assert!(decode(&id, &bad, 1 << 20).is_err());
    }

    /// `n` draws of normal(0, 1), as the sum of twelve uniforms minus six (xorshift from `seed`).
    fn normals(n: usize, seed: u64) -> impl Iterator<Item = f64> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).map(move |_| (0..12).map(|_| next()).sum::<f64>() - 6.0)
    }

    /// bf16-like values: normal(0, 0.02), rounded to bf16.
    fn bf16_weights(n: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * n);
        for z in normals(n, seed) {
            let bits = ((0.02 * z) as f32).to_bits();
            out.extend_from_slice(
                &((bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16).to_le_bytes(),
            );
        }
        out
    }

    /// fp16-like values: normal(0, 1) rounded to fp16 (subnormals flushed to zero). Their rotated
    /// top bytes (five exponent bits, three mantissa bits) take more values than folded fields
    /// allow.
    fn fp16_weights(n: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * n);
        for z in normals(n, seed) {
            let b = (z as f32).to_bits();
            let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
            let h = if exp <= 0 {
                0
            } else {
                (b >> 16 & 0x8000) | (exp as u32) << 10 | (b >> 13 & 0x3ff)
            };
            out.extend_from_slice(&(h as u16).to_le_bytes());
        }
        out
    }

    /// Plane codecs of a byte-grouped object.
    fn plane_codecs(enc: &[u8]) -> Vec<u8> {
        let w = enc[6] as usize;
        let mut pos = HEADER_LEN;
        let mut out = Vec::new();
        for _ in 0..w {
            out.push(enc[pos]);
            let len = u64::from_le_bytes(enc[pos + 1..pos + 9].try_into().expect("8")) as usize;
            pos += 9 + len;
        }
        out
    }

    /// The modes of a float object's planes, top plane first.
    fn float_plane_modes(enc: &[u8]) -> Vec<u8> {
        let mut r = delta::Reader {
            b: &enc[HEADER_LEN..],
            pos: 0,
        };
        if enc[5] == floats::FIELDS_CODEC {
            r.byte().expect("smallest top byte");
        }
        (0..enc[6])
            .map(|_| {
                let mode = r.byte().expect("mode");
                let len = r.varint().expect("length") as usize;
                r.take(len).expect("plane");
                mode
            })
            .collect()
    }

    /// Golden codec choices: bf16 weights become float objects with folded fields, the symbol
    /// plane (exponent and two mantissa bits) zstd-coded and the packed residues stored raw
    /// without a zstd attempt; that beats rotated planes (codec 4, what fp16 weights keep), byte
    /// planes with zstd (what float chunks over MAX_FLOAT_OBJECT still become) and plain zstd.
    #[test]
    fn golden_codec_choice_for_bf16_weights() {
        let raw = bf16_weights(1 << 20, 42);
        let enc = Encoder::new().encode(&raw, DataHint::Float(2));
        let h = parse_header(&ObjectId::of(&raw), &enc).expect("hdr");
        assert_eq!(h.codec, Codec::FloatFields(2));
        assert_eq!(float_plane_modes(&enc), vec![1, 0]);
        let rotated = Encoder::new()
            .encode_rotated_planes(&raw, 2)
            .expect("rotated planes pay");
        assert_eq!(
            parse_header(&ObjectId::of(&raw), &rotated)
                .expect("hdr")
                .codec,
            Codec::FloatPlanes(2)
        );
        assert_eq!(float_plane_modes(&rotated), vec![1, 0]);
        assert!(
            enc.len() + raw.len() * 2 / 1000 < rotated.len(),
            "fields {} vs rotated planes {}",
            enc.len(),
            rotated.len()
        );
        let grouped = Encoder::new().encode_grouped(&raw, 2);
        assert_eq!(plane_codecs(&grouped), vec![0, 1]);
        assert!(
            rotated.len() + raw.len() * 3 / 1000 < grouped.len(),
            "float {} vs grouped {}",
            rotated.len(),
            grouped.len()
        );
        let plain = Encoder::new().encode(&raw, DataHint::Unknown);
        assert!(
            (enc.len() as f64) < 0.70 * raw.len() as f64 && enc.len() < plain.len(),
            "{} vs {}",
            enc.len(),
            plain.len()
        );
        assert_eq!(roundtrip(&raw, DataHint::Float(2)), raw);
        // The mantissa plane (7 mantissa bits and the sign after the rotation) is judged
        // incompressible from a sample; the exponent plane is not.
        let (lo, hi): (Vec<u8>, Vec<u8>) = raw
            .chunks_exact(2)
            .map(|e| {
                let [a, b] = u16::from_le_bytes([e[0], e[1]])
                    .rotate_left(1)
                    .to_le_bytes();
                (a, b)
            })
            .unzip();
        assert!(sampled_entropy(&lo) > RAW_ENTROPY_BITS);
        assert!(sampled_entropy(&hi) < 4.0);
    }

    /// A pruned tensor (seven weights in eight zero): every plane is mostly one symbol, which costs
    /// Huffman codes a bit a symbol; its planes are rANS-coded, well under zstd's size.
    #[test]
    fn pruned_weights_get_rans_planes() {
        let mut raw = bf16_weights(1 << 20, 7);
        for (i, e) in raw.chunks_exact_mut(2).enumerate() {
            if (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 != 0 {
                e.fill(0);
            }
        }
        let enc = Encoder::new().encode(&raw, DataHint::Float(2));
        let id = ObjectId::of(&raw);
        // Rotated planes: packing the mostly-zero low bytes into residues would cost more.
        assert_eq!(
            parse_header(&id, &enc).expect("hdr").codec,
            Codec::FloatPlanes(2)
        );
        assert_eq!(float_plane_modes(&enc), vec![2, 2]);
        let grouped = Encoder::new().encode_grouped(&raw, 2);
        assert!(
            enc.len() * 10 < grouped.len() * 9,
            "{} vs {}",
            enc.len(),
            grouped.len()
        );
        assert_eq!(decode_verified(&id, &enc, 1 << 22).expect("decodes"), raw);
    }

    #[test]
    fn fp8_is_one_plane_and_exact() {
        let raw: Vec<u8> = bf16_weights(50_000, 3)
            .chunks_exact(2)
            .map(|e| e[1])
            .collect();
        let enc = Encoder::new().encode(&raw, DataHint::Float(1));
        let id = ObjectId::of(&raw);
        assert_eq!(parse_header(&id, &enc).expect("hdr").codec, Codec::Zstd);
        assert_eq!(decode_verified(&id, &enc, 1 << 20).expect("decodes"), raw);
    }

    /// A float object with folded fields built by hand from the format's description (raw
    /// planes, which the encoder never writes for weights but readers take): six elements (one
    /// strided group of four, two residues a byte each) and a tail byte.
    fn hand_built_fields(tmin: u8, elems: &[u16], tail: &[u8]) -> Vec<u8> {
        let rot: Vec<u16> = elems.iter().map(|e| e.rotate_left(1)).collect();
        let syms: Vec<u8> = rot
            .iter()
            .map(|r| ((r >> 8) as u8 - tmin) << 2 | (r >> 6 & 3) as u8)
            .collect();
        let res: Vec<u8> = rot.iter().map(|r| (r & 63) as u8).collect();
        assert_eq!(elems.len(), 6, "one group of four, two single residues");
        let mut planes = vec![
            res[0] & 15 | (res[2] & 15) << 4,
            res[1] & 15 | (res[3] & 15) << 4,
            res[0] >> 4 | (res[1] >> 4) << 2 | (res[2] >> 4) << 4 | (res[3] >> 4) << 6,
        ];
        planes.extend_from_slice(&res[4..]);
        let raw_len = elems.len() * 2 + tail.len();
        let mut enc = b"NSOB\x04\x05\x02\x02".to_vec();
        enc.extend_from_slice(&(raw_len as u64).to_le_bytes());
        enc.push(tmin);
        enc.extend_from_slice(&[0, syms.len() as u8]);
        enc.extend_from_slice(&syms);
        enc.extend_from_slice(&[0, planes.len() as u8]);
        enc.extend_from_slice(&planes);
        enc.extend_from_slice(tail);
        enc
    }

    /// The format of float objects with folded fields is fixed: a hand-built object decodes, and
    /// today's encoder writes exactly these bytes for a fixed input (change the format only with
    /// a new codec byte).
    #[test]
    fn golden_float_fields_object() {
        let elems = [0x3c01u16, 0xbf7f, 0x3a80, 0xb8c3, 0x4049, 0xc0ff];
        let tail = [0xab];
        let raw: Vec<u8> = elems
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .chain(tail)
            .collect();
        let enc = hand_built_fields(0x70, &elems, &tail);
        let id = ObjectId::of(&raw);
        assert_eq!(
            parse_header(&id, &enc).expect("hdr").codec,
            Codec::FloatFields(2)
        );
        assert_eq!(decode_verified(&id, &enc, 64).expect("decodes"), raw);
        let weights = bf16_weights(5_003, 11);
        let enc = Encoder::new().encode(&weights, DataHint::Float(2));
        assert_eq!(&enc[..8], b"NSOB\x04\x05\x02\x02");
        assert_eq!(
            ObjectId::of(&enc).to_hex(),
            GOLDEN_FIELDS,
            "the float encoding of a fixed input changed ({} bytes)",
            enc.len()
        );
    }
    const GOLDEN_FIELDS: &str = "2d1ff22b3729c44f9e94e669367b5dd15b580bc177254b4bdc72d49a407cb45c";

    /// Weights of every length around the block and group sizes round-trip, odd byte counts
    /// too.
    #[test]
    fn float_fields_round_trip_every_block_shape() {
        let weights = bf16_weights(2600, 12);
        for n in (2048..2048 + 9).chain([2303, 2304, 2305, 2559, 2560, 2561]) {
            for extra in [0, 1] {
                let raw = &weights[..2 * n + extra];
                let enc = Encoder::new().encode(raw, DataHint::Float(2));
                let id = ObjectId::of(raw);
                assert_eq!(
                    parse_header(&id, &enc).expect("hdr").codec,
                    Codec::FloatFields(2)
                );
                assert_eq!(
                    decode_verified(&id, &enc, 1 << 20).expect("decodes"),
                    raw,
                    "{n}+{extra}"
                );
            }
        }
    }

    /// Hostile float objects with folded fields are refused as corrupt, never decoded wrong or
    /// with a panic; another number of folded bits is a newer nshard's ("unsupported").
    #[test]
    fn hostile_float_fields_objects_are_refused() {
        let elems = [0x3c01u16, 0xbf7f, 0x3a80, 0xb8c3, 0x4049, 0xc0ff];
        let good = hand_built_fields(0x70, &elems, &[]);
        let id = ObjectId::of(b"whatever");
        let corrupt = |enc: &[u8]| {
            let e = decode(&id, enc, 64).expect_err("refused");
            assert!(
                matches!(e, Error::Store(StoreError::CorruptObject { .. })),
                "{e}"
            );
            e.to_string()
        };
        // Top bytes counted from a `tmin` that overflows.
        let mut over = good.clone();
        over[HEADER_LEN] = 250;
        assert!(corrupt(&over).contains("over 255"));
        // A single residue with more than six bits.
        let mut wide = good.clone();
        let last = wide.len() - 1;
        wide[last] |= 0x40;
        assert!(corrupt(&wide).contains("six bits"));
        // A residue plane one byte short, a symbol plane of another length, an unknown mode.
        let plane_at = HEADER_LEN + 1 + 2 + elems.len();
        let mut short = good.clone();
        short[plane_at + 1] -= 1;
        short.pop();
        corrupt(&short);
        let mut long = good.clone();
        long[HEADER_LEN + 2] += 1;
        long.insert(HEADER_LEN + 3, 0);
        corrupt(&long);
        let mut mode = good.clone();
        mode[plane_at] = 9;
        assert!(corrupt(&mode).contains("unknown mode"));
        // A trailing byte where the element count leaves no tail.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(corrupt(&trailing).contains("tail"));
        // Folding three bits: a newer format, not damage.
        let mut newer = good.clone();
        newer[7] = 3;
        assert!(matches!(
            decode(&id, &newer, 64),
            Err(Error::Store(StoreError::UnsupportedFormat { .. }))
        ));
    }

    /// Objects written by earlier encoders (any zstd level, any plane choice) keep decoding:
    /// the format fixes the layout, not how the encoder chose.
    #[test]
    fn hand_built_grouped_objects_decode() {
        let raw = bf16_weights(4096, 9);
        let current = Encoder::new().encode_format1(&raw, DataHint::Float(2));
        assert_eq!(
            parse_header(&ObjectId::of(&raw), &current)
                .expect("hdr")
                .codec,
            Codec::ByteGrouped(2)
        );
        let (lo, hi): (Vec<u8>, Vec<u8>) = raw.chunks_exact(2).map(|e| (e[0], e[1])).unzip();
        for (c0, c1) in [(0u8, 0u8), (0, 1), (1, 1), (1, 0)] {
            let mut enc = header(Codec::ByteGrouped(2), raw.len(), 0);
            for (c, p) in [(c0, &lo), (c1, &hi)] {
                let body = if c == 1 {
                    zstd::bulk::compress(p, 19).expect("zstd")
                } else {
                    p.to_vec()
                };
                enc.push(c);
                enc.extend_from_slice(&(body.len() as u64).to_le_bytes());
                enc.extend_from_slice(&body);
            }
            let id = ObjectId::of(&raw);
            assert_eq!(
                decode_verified(&id, &enc, 1 << 20).expect("decodes"),
                raw,
                "{c0}{c1}"
            );
            // These are layouts today's encoder does not write (level 19, other plane choices).
            assert_ne!(enc, current, "{c0}{c1}");
        }
    }

    proptest! {
        #[test]
        fn codec_roundtrips_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..20_000), w in 0u8..5) {
            let hint = if w == 0 { DataHint::Unknown } else { DataHint::Float(w) };
            prop_assert_eq!(roundtrip(&raw, hint), raw);
        }

        #[test]
        fn grouped_roundtrips_low_entropy(len in 4096usize..30_000, w in prop_oneof![Just(2u8), Just(4u8)], seed: u8) {
            let raw: Vec<u8> = (0..len).map(|i| if i % w as usize == 0 { seed } else { (i * 31 % 251) as u8 }).collect();
            prop_assert_eq!(roundtrip(&raw, DataHint::Float(w)), raw.clone());
            let id = ObjectId::of(&raw);
            let grouped = Encoder::new().encode_format1(&raw, DataHint::Float(w));
            prop_assert_eq!(decode_verified(&id, &grouped, len as u64).expect("decodes"), raw);
        }
    }
}
