//! Delta objects: a chunk of float weights stored against the chunk at the same place of another
//! version of the tensor (its *base*), the way a training run's checkpoints differ.
//!
//! The transform and coder were chosen by measurement (docs/storage.md, "Deltas"):
//!
//! 1. Per element (u16 for bf16/fp16, u32 for fp32, little endian): map both values to
//!    order-preserving integers (`x ^ MAG` when the sign bit is set), take the wrapping difference
//!    new − base (the distance in ulps) and zigzag it, so small moves either way are small numbers.
//! 2. Split the results into byte planes (plane `k` holds byte `k` of every element).
//! 3. Code every plane with static rANS (the `constriction` crate, 12-bit tables) whose table is
//!    chosen by the *base's* exponent byte `(base >> (bits − 9)) & 0xFF`: the decoder has the base,
//!    so the context costs nothing, and an update of a given size is many ulps for small weights
//!    and none for large ones. A plane where rANS saves little over zstd (nearly all zeros, or
//!    nearly random) is coded with zstd, several times faster; one neither shrinks is stored raw.
//!
//! ```text
//! header (48 bytes): b"NSOB", format version 2, codec 3, element width (2 or 4), rank,
//!                    raw length (u64 LE), base object id (32 bytes)
//! payload:           varint T, then T bytes: zstd frame of the tables
//!                    per plane k in 0..width: mode (0 raw, 1 rANS, 2 zstd), varint length, bytes
//!                    the raw_len % width tail bytes, XOR the base's
//! tables:            per rANS plane: a 32-byte bitmap of the contexts present, then per present
//!                    context: the largest symbol m (1 byte) and m+1 varint frequencies summing to
//!                    4096 (a single frequency of 4096: every symbol of that context is m)
//! ```
//!
//! `rank` is how many deltas the chain ending at this object held when it was written (this one
//! included); writers use it to bound chains, readers ignore it and bound chains themselves.

use constriction::stream::model::{
    SmallContiguousCategoricalEntropyModel, SmallContiguousLookupDecoderModel,
};
use constriction::stream::stack::SmallAnsCoder;
use constriction::stream::{Decode, Encode};

use crate::id::ObjectId;

/// Header length of a delta object (the common 16 bytes and the base id).
pub const DELTA_HEADER_LEN: usize = 48;
/// Format version written in delta objects (plain objects stay at version 1, readable by every
/// nshard).
pub const DELTA_FORMAT_VERSION: u8 = 2;
/// Codec byte of delta objects.
pub(crate) const DELTA_CODEC: u8 = 3;
/// The longest chain of deltas a reader follows from an object to its standalone ancestor.
/// Writers keep chains far shorter (the `delta_depth` setting); this bounds hostile stores.
pub const MAX_CHAIN: usize = 64;
/// Chunks with fewer elements than this are never delta-encoded (the tables would not pay).
const MIN_ELEMENTS: usize = 1024;

const PRECISION: usize = 12;
const TOTAL: u32 = 1 << PRECISION;
/// Largest decoded table section: per plane a bitmap and 256 tables of up to 257 varints.
const MAX_TABLES: usize = 4 * (32 + 256 * (1 + 256 * 3));

/// The element types deltas are defined for.
trait Elem: Copy {
    const W: usize;
    fn load(b: &[u8]) -> Self;
    fn store(self, b: &mut [u8]);
    /// Zigzagged ulp distance from `base` to `new`.
    fn forward(new: Self, base: Self) -> u32;
    fn inverse(z: u32, base: Self) -> Self;
    fn context(base: Self) -> u8;
}

macro_rules! elem {
    ($u:ty, $i:ty) => {
        impl Elem for $u {
            const W: usize = std::mem::size_of::<$u>();
            #[inline(always)]
            fn load(b: &[u8]) -> Self {
                <$u>::from_le_bytes(b.try_into().expect("element width"))
            }
            #[inline(always)]
            fn store(self, b: &mut [u8]) {
                b.copy_from_slice(&self.to_le_bytes())
            }
            #[inline(always)]
            fn forward(new: $u, base: $u) -> u32 {
                const B: u32 = <$u>::BITS;
                let d = ordered::<$u>(new).wrapping_sub(ordered::<$u>(base)) as $i;
                ((d << 1) ^ (d >> (B - 1))) as $u as u32
            }
            #[inline(always)]
            fn inverse(z: u32, base: $u) -> $u {
                let z = z as $u;
                let d = (z >> 1) ^ (0 as $u).wrapping_sub(z & 1);
                ordered::<$u>(ordered::<$u>(base).wrapping_add(d))
            }
            #[inline(always)]
            fn context(base: $u) -> u8 {
                (base >> (<$u>::BITS - 9)) as u8
            }
        }
    };
}

/// The order-preserving integer of a float's bits (an involution).
#[inline(always)]
fn ordered<U>(x: U) -> U
where
    U: Ordered,
{
    x.ordered()
}

trait Ordered {
    fn ordered(self) -> Self;
}
impl Ordered for u16 {
    #[inline(always)]
    fn ordered(self) -> u16 {
        self ^ ((((self as i16) >> 15) as u16) & 0x7FFF)
    }
}
impl Ordered for u32 {
    #[inline(always)]
    fn ordered(self) -> u32 {
        self ^ ((((self as i32) >> 31) as u32) & 0x7FFF_FFFF)
    }
}

elem!(u16, i16);
elem!(u32, i32);

fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push(x as u8 | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// A bounds-checked reader over a byte slice (everything it reads may be hostile).
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(v)
    }
    fn varint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let c = self.byte()?;
            x |= u64::from(c & 0x7F) << shift;
            if c < 0x80 {
                return Ok(x);
            }
        }
        Err("varint too long".into())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("runs past the end")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Frequencies of one context normalised to [`TOTAL`]; every symbol in `0..=max` gets at least 1
/// (the contiguous models need it) unless only one symbol occurs. Returns `max`.
fn normalise(counts: &[u32], f: &mut [u32; 256]) -> usize {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let max = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    *f = [0; 256];
    if counts.iter().filter(|&&c| c > 0).count() <= 1 {
        f[max] = TOTAL;
        return max;
    }
    let mut sum = 0i64;
    for s in 0..=max {
        let v = if counts[s] > 0 {
            (((u64::from(counts[s]) * u64::from(TOTAL) + total / 2) / total) as u32).max(1)
        } else {
            1
        };
        f[s] = v;
        sum += i64::from(v);
    }
    let mut diff = i64::from(TOTAL) - sum;
    let mut order: Vec<usize> = (0..=max).filter(|&s| counts[s] > 0).collect();
    order.sort_unstable_by(|&a, &b| counts[b].cmp(&counts[a]));
    while diff != 0 {
        let before = diff;
        for &s in &order {
            if diff > 0 {
                f[s] += 1;
                diff -= 1;
            } else if diff < 0 && f[s] > 1 {
                f[s] -= 1;
                diff += 1;
            }
            if diff == 0 {
                break;
            }
        }
        if diff == before {
            // Cannot happen (at most 256 symbols of at least 1 each in 4096), but never loop.
            break;
        }
    }
    max
}

/// Encodes `new` against `base` (same length, a whole number of `width`-byte elements or a
/// tail). Returns the full object (header included), or `None` when the chunk is too small or the
/// width is not 2 or 4. The caller keeps the delta only if it is smaller than the chunk stored
/// on its own.
pub fn encode_delta(
    new: &[u8],
    base: &[u8],
    base_id: &ObjectId,
    width: u8,
    rank: u8,
) -> Option<Vec<u8>> {
    if new.len() != base.len() || new.len() / usize::from(width.max(1)) < MIN_ELEMENTS {
        return None;
    }
    let mut out = delta_header(new.len(), width, rank, base_id);
    match width {
        2 => encode_planes::<u16>(new, base, &mut out),
        4 => encode_planes::<u32>(new, base, &mut out),
        _ => return None,
    }
    Some(out)
}

fn delta_header(raw_len: usize, width: u8, rank: u8, base: &ObjectId) -> Vec<u8> {
    let mut h = Vec::with_capacity(DELTA_HEADER_LEN + raw_len / 8);
    h.extend_from_slice(super::MAGIC);
    h.extend_from_slice(&[DELTA_FORMAT_VERSION, DELTA_CODEC, width, rank]);
    h.extend_from_slice(&(raw_len as u64).to_le_bytes());
    h.extend_from_slice(base.as_bytes());
    h
}

fn encode_planes<T: Elem>(new: &[u8], base: &[u8], out: &mut Vec<u8>) {
    let w = T::W;
    let n = new.len() / w;
    let mut planes = vec![vec![0u8; n]; w];
    let mut ctx = vec![0u8; n];
    for (i, (c, p)) in new.chunks_exact(w).zip(base.chunks_exact(w)).enumerate() {
        let p = T::load(p);
        let z = T::forward(T::load(c), p);
        ctx[i] = T::context(p);
        for (k, plane) in planes.iter_mut().enumerate() {
            plane[i] = (z >> (8 * k)) as u8;
        }
    }
    let mut tables = Vec::new();
    let mut body = Vec::new();
    let mut hist = vec![0u32; 65536];
    let mut f = [0u32; 256];
    for plane in &planes {
        hist.iter_mut().for_each(|h| *h = 0);
        for (&s, &c) in plane.iter().zip(&ctx) {
            hist[usize::from(c) << 8 | usize::from(s)] += 1;
        }
        let mark = tables.len();
        let mut bitmap = [0u8; 32];
        for c in 0..256 {
            if hist[c << 8..(c + 1) << 8].iter().any(|&x| x > 0) {
                bitmap[c >> 3] |= 1 << (c & 7);
            }
        }
        tables.extend_from_slice(&bitmap);
        let mut models: Vec<Option<SmallContiguousCategoricalEntropyModel>> = vec![None; 256];
        let mut bits = 0.0f64;
        let mut bad = false;
        for c in (0..256).filter(|c| bitmap[c >> 3] >> (c & 7) & 1 == 1) {
            let counts = &hist[c << 8..(c + 1) << 8];
            let max = normalise(counts, &mut f);
            tables.push(max as u8);
            for &x in &f[..=max] {
                put_varint(&mut tables, u64::from(x));
            }
            if f[max] != TOTAL {
                for s in 0..=max {
                    if counts[s] > 0 {
                        bits += f64::from(counts[s]) * (PRECISION as f64 - f64::from(f[s]).log2());
                    }
                }
                models[c] =
                    SmallContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
                        f[..=max].iter().map(|&x| x as u16),
                        false,
                    )
                    .ok();
                bad |= models[c].is_none();
            }
        }
        let table_len = tables.len() - mark;
        let rans_est = bits / 8.0 + table_len as f64 + 16.0;
        // zstd (Huffman literals, runs) is several times faster than the rANS coder, to encode
        // and to decode: it codes the plane unless rANS saves at least 15 % of zstd's size and
        // 1/64 of the plane (a bf16 low plane: 0.77 bit a symbol against zstd's 1+). A plane
        // neither shrinks is stored raw. (`bad`: a table the model refused; never expected, the
        // frequencies are valid by construction, but then rANS is not used.)
        let z = zstd::bulk::compress(plane, 1).unwrap_or_default();
        let zlen = if z.is_empty() { n } else { z.len().min(n) };
        let rans_pays =
            !bad && (zlen as f64 - rans_est) > (0.15 * zlen as f64).max(n as f64 / 64.0);
        if !rans_pays {
            tables.truncate(mark);
            if zlen < n {
                body.push(2);
                put_varint(&mut body, z.len() as u64);
                body.extend_from_slice(&z);
            } else {
                body.push(0);
                put_varint(&mut body, n as u64);
                body.extend_from_slice(plane);
            }
            continue;
        }
        let mut coder = SmallAnsCoder::new();
        let mut ok = true;
        for i in (0..n).rev() {
            if let Some(m) = &models[usize::from(ctx[i])] {
                if coder.encode_symbol(usize::from(plane[i]), m).is_err() {
                    ok = false;
                    break;
                }
            }
        }
        let words = if ok {
            coder.into_compressed().ok()
        } else {
            None
        };
        match words {
            Some(words) => {
                body.push(1);
                put_varint(&mut body, 2 * words.len() as u64);
                for wd in words {
                    body.extend_from_slice(&wd.to_le_bytes());
                }
            }
            None => {
                tables.truncate(mark);
                body.push(0);
                put_varint(&mut body, n as u64);
                body.extend_from_slice(plane);
            }
        }
    }
    if tables.is_empty() {
        put_varint(out, 0);
    } else {
        let z = zstd::bulk::compress(&tables, 1).expect("zstd compresses into a vector");
        put_varint(out, z.len() as u64);
        out.extend_from_slice(&z);
    }
    out.extend_from_slice(&body);
    let tail = n * w;
    out.extend(new[tail..].iter().zip(&base[tail..]).map(|(a, b)| a ^ b));
}

/// Decodes the payload of a delta object (`payload` follows the 48-byte header) against the base's
/// raw bytes. The caller checked that `base.len()` is the declared raw length and will hash the
/// result. Errors describe what is malformed.
pub(crate) fn decode_delta(payload: &[u8], width: u8, base: &[u8]) -> Result<Vec<u8>, String> {
    match width {
        2 => decode_planes::<u16>(payload, base),
        4 => decode_planes::<u32>(payload, base),
        w => Err(format!("element width {w} is not 2 or 4")),
    }
}

fn decode_planes<T: Elem>(payload: &[u8], base: &[u8]) -> Result<Vec<u8>, String> {
    let w = T::W;
    let n = base.len() / w;
    let mut r = Reader { b: payload, pos: 0 };
    let tlen = usize::try_from(r.varint()?).map_err(|_| "table length overflows")?;
    let tz = r.take(tlen).map_err(|e| format!("tables: {e}"))?;
    let tables = if tlen == 0 {
        Vec::new()
    } else {
        let mut t = Vec::with_capacity(MAX_TABLES);
        zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(tz, &mut t))
            .map_err(|e| format!("tables do not decode: {e}"))?;
        t
    };
    let mut tr = Reader { b: &tables, pos: 0 };
    let ctx: Vec<u8> = base
        .chunks_exact(w)
        .map(|p| T::context(T::load(p)))
        .collect();
    let mut planes: Vec<Vec<u8>> = Vec::with_capacity(w);
    for k in 0..w {
        let mode = r.byte().map_err(|e| format!("plane {k}: {e}"))?;
        let len = usize::try_from(r.varint()?).map_err(|_| "plane length overflows")?;
        let src = r.take(len).map_err(|e| format!("plane {k}: {e}"))?;
        match mode {
            0 => {
                if src.len() != n {
                    return Err(format!("raw plane {k} holds {} bytes, expected {n}", len));
                }
                planes.push(src.to_vec());
            }
            1 => planes
                .push(decode_plane(src, &ctx, &mut tr).map_err(|e| format!("plane {k}: {e}"))?),
            2 => {
                let mut plane = Vec::with_capacity(n);
                zstd::bulk::Decompressor::new()
                    .and_then(|mut d| d.decompress_to_buffer(src, &mut plane))
                    .map_err(|e| format!("plane {k}: zstd: {e}"))?;
                if plane.len() != n {
                    return Err(format!(
                        "zstd plane {k} holds {} bytes, expected {n}",
                        plane.len()
                    ));
                }
                planes.push(plane);
            }
            m => return Err(format!("plane {k} has unknown mode {m}")),
        }
    }
    if tr.pos != tables.len() {
        return Err("tables hold more than the planes use".into());
    }
    let tail = r.take(payload.len() - r.pos)?;
    if tail.len() != base.len() - n * w {
        return Err(format!(
            "tail is {} bytes, expected {}",
            tail.len(),
            base.len() - n * w
        ));
    }
    let mut out = vec![0u8; base.len()];
    for (i, (o, p)) in out
        .chunks_exact_mut(w)
        .zip(base.chunks_exact(w))
        .enumerate()
    {
        let mut z = 0u32;
        for (k, plane) in planes.iter().enumerate() {
            z |= u32::from(plane[i]) << (8 * k);
        }
        T::inverse(z, T::load(p)).store(o);
    }
    for ((o, &t), &b) in out[n * w..].iter_mut().zip(tail).zip(&base[n * w..]) {
        *o = t ^ b;
    }
    Ok(out)
}

fn decode_plane(src: &[u8], ctx: &[u8], tr: &mut Reader<'_>) -> Result<Vec<u8>, String> {
    let bitmap = tr.take(32)?;
    let mut fixed = [None::<u8>; 256];
    let mut models: Vec<Option<SmallContiguousLookupDecoderModel>> = vec![None; 256];
    for c in (0..256).filter(|c| bitmap[c >> 3] >> (c & 7) & 1 == 1) {
        let max = usize::from(tr.byte()?);
        let mut f = Vec::with_capacity(max + 1);
        for _ in 0..=max {
            let x = tr.varint()?;
            f.push(u16::try_from(x).map_err(|_| "frequency too large")?);
        }
        if f[max] as u32 == TOTAL {
            fixed[c] = Some(max as u8);
        } else {
            models[c] = Some(
                SmallContiguousLookupDecoderModel::from_nonzero_fixed_point_probabilities(
                    f.iter().copied(),
                    false,
                )
                .map_err(|()| format!("context {c} has an invalid frequency table"))?,
            );
        }
    }
    if !src.len().is_multiple_of(2) {
        return Err("coded plane has an odd length".into());
    }
    let words: Vec<u16> = src
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut coder =
        SmallAnsCoder::from_compressed(words).map_err(|_| "coded plane ends with a zero word")?;
    let mut out = Vec::with_capacity(ctx.len());
    for &c in ctx {
        let c = usize::from(c);
        let s = match (&models[c], fixed[c]) {
            (Some(m), _) => coder.decode_symbol(m).map_err(|e| format!("rANS: {e:?}"))? as u8,
            (None, Some(s)) => s,
            (None, None) => return Err(format!("no table for context {c}")),
        };
        out.push(s);
    }
    if !coder.is_empty() {
        return Err("coded plane holds more than its symbols".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_against, parse_header, Codec};
    use proptest::prelude::*;

    /// A deterministic generator (xorshift) for test weights.
    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
        }
    }

    /// Weights ~ N(0, 0.02) as f32, and a "training step" of them: every weight moves by
    /// lr·N(0, 1)·|w| (Adam-like: relative moves).
    fn series(n: usize, seed: u64, lr: f64) -> (Vec<f32>, Vec<f32>) {
        let mut r = Rng(seed | 1);
        let a: Vec<f32> = (0..n).map(|_| (0.02 * r.normal()) as f32).collect();
        let b = a
            .iter()
            .map(|&w| (f64::from(w) + lr * 0.02 * r.normal()) as f32)
            .collect();
        (a, b)
    }

    fn bf16(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| {
                let bits = x.to_bits();
                ((bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16).to_le_bytes()
            })
            .collect()
    }

    fn fp32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn roundtrip(new: &[u8], base: &[u8], width: u8) -> Vec<u8> {
        let base_id = ObjectId::of(base);
        let id = ObjectId::of(new);
        let enc = encode_delta(new, base, &base_id, width, 1).expect("encodes");
        let h = parse_header(&id, &enc).expect("header");
        assert_eq!(
            h.codec,
            Codec::Delta {
                width,
                rank: 1,
                base: base_id
            }
        );
        let out = decode_against(&id, &enc, base, 1 << 30).expect("decodes");
        assert_eq!(out, new);
        enc
    }

    #[test]
    fn small_training_steps_cost_a_fraction_of_the_chunk() {
        let (a, b) = series(1 << 18, 7, 0.001);
        let (ba, bb) = (bf16(&a), bf16(&b));
        let enc = roundtrip(&bb, &ba, 2);
        // Most bf16 values do not move at all after one small step: far below the ~65 % a
        // standalone encoding takes.
        assert!(
            enc.len() < bb.len() / 5,
            "bf16 delta {} of {}",
            enc.len(),
            bb.len()
        );
        let (fa, fb) = (fp32(&a), fp32(&b));
        let enc = roundtrip(&fb, &fa, 4);
        assert!(
            enc.len() < fb.len() * 3 / 4,
            "fp32 delta {} of {}",
            enc.len(),
            fb.len()
        );
    }

    /// The mode of each plane of a delta object (0 raw, 1 rANS, 2 zstd).
    fn plane_modes(enc: &[u8], width: usize) -> Vec<u8> {
        let mut r = Reader {
            b: &enc[DELTA_HEADER_LEN..],
            pos: 0,
        };
        let t = r.varint().expect("tables") as usize;
        r.take(t).expect("tables");
        (0..width)
            .map(|_| {
                let mode = r.byte().expect("mode");
                let len = r.varint().expect("len") as usize;
                r.take(len).expect("plane");
                mode
            })
            .collect()
    }

    /// Each plane gets the coder that pays: rANS where it beats zstd clearly (the bf16 low byte,
    /// the fp32 third byte), zstd on nearly-all-zero planes, raw where nothing shrinks.
    #[test]
    fn each_plane_gets_the_coder_that_pays() {
        let (a, b) = series(1 << 18, 7, 0.001);
        let enc = roundtrip(&bf16(&b), &bf16(&a), 2);
        assert_eq!(plane_modes(&enc, 2), vec![1, 2]);
        let enc = roundtrip(&fp32(&b), &fp32(&a), 4);
        let modes = plane_modes(&enc, 4);
        assert_eq!(modes[0], 0, "{modes:?}");
        assert_eq!(modes[3], 2, "{modes:?}");
        assert!(modes.contains(&1), "{modes:?}");
    }

    #[test]
    fn identical_and_unrelated_chunks_round_trip() {
        let (a, _) = series(4096, 3, 0.0);
        let x = bf16(&a);
        // A delta against itself would make an object its own base: readers refuse it (the
        // writer never makes one: equal chunks are one object).
        let enc = encode_delta(&x, &x, &ObjectId::of(&x), 2, 1).expect("encodes");
        assert!(enc.len() < 200, "identical: {} bytes", enc.len());
        let err = parse_header(&ObjectId::of(&x), &enc).expect_err("self base");
        assert!(err.to_string().contains("against itself"), "{err}");
        let mut y = x.clone();
        y[0] ^= 1;
        let enc = roundtrip(&y, &x, 2);
        assert!(enc.len() < 200, "one bit: {} bytes", enc.len());
        let (c, _) = series(4096, 99, 0.0);
        roundtrip(&bf16(&c), &x, 2);
        // Special values: NaN, infinities, signed zeros, subnormals, both signs.
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
            -1e-40,
        ];
        let s: Vec<f32> = (0..8192).map(|i| specials[i % specials.len()]).collect();
        let t: Vec<f32> = s.iter().rev().copied().collect();
        roundtrip(&fp32(&s), &fp32(&t), 4);
        roundtrip(&bf16(&s), &bf16(&t), 2);
    }

    #[test]
    fn odd_tails_and_small_chunks() {
        let (a, b) = series(5000, 11, 0.01);
        let (mut fa, mut fb) = (fp32(&a), fp32(&b));
        fa.extend_from_slice(&[1, 2, 3]);
        fb.extend_from_slice(&[1, 9, 3]);
        roundtrip(&fb, &fa, 4);
        assert!(encode_delta(&fb[..400], &fa[..400], &ObjectId::of(b"x"), 4, 1).is_none());
        assert!(encode_delta(&fb, &fa[..fa.len() - 1], &ObjectId::of(b"x"), 4, 1).is_none());
        assert!(encode_delta(&fb, &fa, &ObjectId::of(b"x"), 3, 1).is_none());
    }

    /// The format is fixed: these bytes must keep decoding, and today's encoder writes exactly
    /// them (change the format only with a new version byte).
    #[test]
    fn golden_delta_object() {
        let (a, b) = series(2048, 5, 0.01);
        let (ba, bb) = (bf16(&a), bf16(&b));
        let enc = roundtrip(&bb, &ba, 2);
        assert_eq!(&enc[..8], b"NSOB\x02\x03\x02\x01");
        assert_eq!(enc[8..16], (bb.len() as u64).to_le_bytes());
        assert_eq!(&enc[16..48], ObjectId::of(&ba).as_bytes());
        assert_eq!(
            ObjectId::of(&enc).to_hex(),
            GOLDEN_BF16,
            "the delta encoding of a fixed input changed ({} bytes)",
            enc.len()
        );
    }
    const GOLDEN_BF16: &str = "6e199b75bfb52447deaf1e248f63a96c1d1c5a374efc9cfb216a7a32ac4435ce";

    #[test]
    fn wrong_base_size_is_refused() {
        let (a, b) = series(4096, 1, 0.01);
        let (ba, bb) = (bf16(&a), bf16(&b));
        let enc = encode_delta(&bb, &ba, &ObjectId::of(&ba), 2, 1).expect("enc");
        let id = ObjectId::of(&bb);
        let err = decode_against(&id, &enc, &ba[..ba.len() - 2], 1 << 30).expect_err("size");
        assert!(err.to_string().contains("holds"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any bytes as a base and a different new version round-trip, for both widths.
        #[test]
        fn any_bytes_round_trip(seed: u64, flips in 0usize..3000, w in prop_oneof![Just(2u8), Just(4u8)], extra in 0usize..4) {
            let mut r = Rng(seed | 1);
            let n = 8192 + extra;
            let base: Vec<u8> = (0..n).map(|_| (r.unit() * 256.0) as u8).collect();
            let mut new = base.clone();
            for _ in 0..flips {
                let i = (r.unit() * n as f64) as usize % n;
                new[i] = (r.unit() * 256.0) as u8;
            }
            // Commit pairs only chunks that differ (a chunk is never its own base).
            let i = (r.unit() * n as f64) as usize % n;
            new[i] = new[i].wrapping_add(u8::from(new == base));
            roundtrip(&new, &base, w);
        }

        /// Damaged delta payloads never panic and never decode to the wrong bytes unnoticed:
        /// either an error or bytes that the caller's hash check refuses.
        #[test]
        fn damaged_payloads_are_errors(seed: u64, at in 48usize..2000, byte: u8) {
            let (a, b) = series(4096, seed | 1, 0.01);
            let (ba, bb) = (bf16(&a), bf16(&b));
            let mut enc = encode_delta(&bb, &ba, &ObjectId::of(&ba), 2, 1).expect("enc");
            let at = at % enc.len();
            if enc[at] != byte {
                enc[at] = byte;
                if let Ok(out) = decode_against(&ObjectId::of(&bb), &enc, &ba, 1 << 30) {
                    prop_assert!(out.len() == bb.len());
                }
            }
            let cut = at % enc.len();
            let _ = decode_against(&ObjectId::of(&bb), &enc[..cut], &ba, 1 << 30);
        }
    }
}
