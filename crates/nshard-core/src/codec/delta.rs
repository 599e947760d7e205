//! Delta objects: a chunk of float weights stored against the chunk at the same place of another
//! version of the tensor (its *base*), the way a training run's checkpoints differ.
//!
//! The transform and coder were chosen by measurement (docs/storage.md, "Deltas"):
//!
//! 1. Per element (u16 for bf16/fp16, u32 for fp32, little endian): map both values to
//!    order-preserving integers (`x ^ MAG` when the sign bit is set), take the wrapping difference
//!    new − base (the distance in ulps) and zigzag it, so small moves either way are small numbers.
//! 2. Split the results into byte planes (plane `k` holds byte `k` of every element).
//! 3. Code every plane with static rANS (12-bit tables, four interleaved states) whose table is
//!    chosen by the *base's* exponent byte `(base >> (bits − 9)) & 0xFF`: the decoder has the base,
//!    so the context costs nothing, and an update of a given size is many ulps for small weights
//!    and none for large ones. A plane where rANS saves little over zstd (nearly all zeros, or
//!    nearly random) is coded with zstd, faster still; one neither shrinks is stored raw.
//!
//! ```text
//! header (48 bytes): b"NSOB", format version 3, codec 3, element width (2 or 4), rank,
//!                    raw length (u64 LE), base object id (32 bytes)
//! payload:           varint T, then T bytes: zstd frame of the tables
//!                    per plane k in 0..width: mode (0 raw, 2 zstd, 3 rANS), varint length, bytes
//!                    the raw_len % width tail bytes, XOR the base's
//! tables:            per rANS plane: a 32-byte bitmap of the contexts present, then per present
//!                    context: the largest symbol m (1 byte) and m+1 varint frequencies summing to
//!                    4096 (a single frequency of 4096: every symbol of that context is m)
//! rANS plane:        the four final states (u32 LE), then 16-bit words (LE) in reading order;
//!                    symbol i is coded by state i % 4 (states in [2^16, 2^32), one word moved
//!                    when a state leaves that range); a symbol of a one-symbol context is not
//!                    coded (no state change, no word); decoding ends with every state at 2^16
//! ```
//!
//! Format version 2 (the first delta format) differs only in its rANS planes: mode 1, one state,
//! the `constriction` crate's `SmallAnsCoder` stream. Readers still decode it; writers no longer
//! produce it (four states decode about twice as fast).
//!
//! `rank` is how many deltas the chain ending at this object held when it was written (this one
//! included); writers use it to bound chains, readers ignore it and bound chains themselves.

use constriction::stream::model::SmallContiguousLookupDecoderModel;
use constriction::stream::stack::SmallAnsCoder;
use constriction::stream::Decode;

use crate::buffers::Pool;
use crate::id::ObjectId;

/// Header length of a delta object (the common 16 bytes and the base id).
pub const DELTA_HEADER_LEN: usize = 48;
/// Format version written in delta objects (plain objects stay at version 1, readable by every
/// nshard).
pub const DELTA_FORMAT_VERSION: u8 = 3;
/// The first delta format (one rANS state a plane): still read, no longer written.
pub(crate) const DELTA_V2: u8 = 2;
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

pub(super) fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push(x as u8 | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// A bounds-checked reader over a byte slice (everything it reads may be hostile).
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(v)
    }
    pub(super) fn varint(&mut self) -> Result<u64, String> {
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
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
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
    settle(f, counts, max, i64::from(TOTAL) - sum);
    max
}

/// Brings frequencies that rounding left `diff` short of [`TOTAL`] (or over it, `diff < 0`) to
/// exactly [`TOTAL`], one step at a time on the symbols of `0..=max` that occur, most frequent
/// first (where a step costs least); no frequency goes below 1.
pub(super) fn settle(f: &mut [u32; 256], counts: &[u32], max: usize, mut diff: i64) {
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
}

/// Interleaved states of a rANS-coded plane (mode 3): symbol `i` is coded by state `i % 4`, so
/// a decoder works on four independent dependency chains at once (about twice the speed of one).
const RANS4_STATES: usize = 4;
/// Lower bound of a normalised rANS state; states live in `[RANS_L, 2^32)` and move 16-bit words.
const RANS_L: u32 = 1 << 16;

/// Codes `plane` (symbol `i` under context `ctx[i]`) with four interleaved static rANS states.
/// `tab[c << 8 | s]` holds the frequency of symbol `s` in context `c` (12-bit, summing to
/// [`TOTAL`]) in its low 16 bits and the cumulative frequency below it in the high ones; a context
/// whose frequency is [`TOTAL`] has one symbol and costs nothing. Output: the four final states
/// (u32 LE), then the 16-bit words (LE) in the order the decoder reads them.
fn rans4_encode(plane: &[u8], ctx: &[u8], tab: &[u32]) -> Vec<u8> {
    let mut st = [RANS_L; RANS4_STATES];
    let mut words: Vec<u16> = Vec::with_capacity(plane.len() / 4);
    for (i, (&sym, &c)) in plane.iter().zip(ctx).enumerate().rev() {
        let e = tab[usize::from(c) << 8 | usize::from(sym)];
        let f = e & 0xFFFF;
        debug_assert!(f != 0, "a coded symbol has a frequency of at least 1");
        if f >= TOTAL || f == 0 {
            // A one-symbol context: not coded (no state change, no word). (`f == 0` never
            // happens; were it to, the check that the delta decodes back would refuse it.)
            continue;
        }
        let x = &mut st[i % RANS4_STATES];
        if *x >= f << (32 - PRECISION) {
            words.push(*x as u16);
            *x >>= 16;
        }
        *x = ((*x / f) << PRECISION) + *x % f + (e >> 16);
    }
    let mut out = Vec::with_capacity(4 * RANS4_STATES + 2 * words.len());
    for x in st {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for w in words.iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// The decoding table of one plane's contexts: 4096 entries per context present (and one table
/// for the absent ones), each `symbol | (frequency − 1) << 8 | cumulative << 20`, and where each
/// context's table starts.
#[cfg_attr(test, derive(Clone))]
struct Rans4Tables {
    lut: Vec<u32>,
    /// `slot[c]`: where context `c`'s 4096 entries start in `lut`.
    slot: [usize; 256],
}

impl Rans4Tables {
    /// Reads one plane's tables (bitmap, then per context present: largest symbol and
    /// frequencies), refusing any that does not sum to [`TOTAL`].
    fn read(tr: &mut Reader<'_>, mut lut: Vec<u32>) -> Result<Self, String> {
        lut.clear();
        let mut slot = [usize::MAX; 256];
        let mut f = [0u32; 256];
        read_tables(tr, |c, freqs| {
            let max = freqs.len() - 1;
            for (x, &v) in f.iter_mut().zip(freqs) {
                *x = u32::try_from(v)
                    .ok()
                    .filter(|&x| x <= TOTAL)
                    .ok_or("frequency too large")?;
            }
            slot[c] = lut.len();
            lut.resize(lut.len() + (1 << PRECISION), 0);
            let entries = &mut lut[slot[c]..slot[c] + (1 << PRECISION)];
            if f[max] == TOTAL {
                // One symbol: the state does not move (frequency TOTAL, cumulative 0).
                entries.fill(max as u32 | (TOTAL - 1) << 8);
            } else {
                if f[..=max].contains(&0) || f[..=max].iter().sum::<u32>() != TOTAL {
                    return Err(format!("context {c} has an invalid frequency table"));
                }
                let mut cum = 0u32;
                for (sym, &fs) in f[..=max].iter().enumerate() {
                    let e = sym as u32 | (fs - 1) << 8 | cum << 20;
                    entries[cum as usize..(cum + fs) as usize].fill(e);
                    cum += fs;
                }
            }
            Ok(())
        })?;
        // One more table, last: where contexts without a table point. Its entries leave the state
        // as it is (frequency TOTAL) and give symbol 0, so a hostile object that uses such a
        // context decodes to bytes the caller's hash check refuses, without a branch per symbol.
        let absent = lut.len();
        lut.resize(absent + (1 << PRECISION), (TOTAL - 1) << 8);
        for s in slot.iter_mut().filter(|s| **s == usize::MAX) {
            *s = absent;
        }
        Ok(Self { lut, slot })
    }
}

/// Reads one rANS plane's tables (see the format above): for each context present in the
/// bitmap, in order, calls `each(context, frequencies of the symbols 0 ..= largest, as read)`.
fn read_tables(
    tr: &mut Reader<'_>,
    mut each: impl FnMut(usize, &[u64]) -> Result<(), String>,
) -> Result<(), String> {
    let bitmap = tr.take(32)?;
    let mut f = [0u64; 256];
    for c in (0..256).filter(|c| bitmap[c >> 3] >> (c & 7) & 1 == 1) {
        let max = usize::from(tr.byte()?);
        for x in &mut f[..=max] {
            *x = tr.varint()?;
        }
        each(c, &f[..=max])?;
    }
    Ok(())
}

/// A mode-3 plane being decoded (see [`rans4_encode`]), a block of symbols at a time: its four
/// states, its 16-bit words (read in place from the object) and its tables.
struct Rans4Stream<'a> {
    x: [u32; RANS4_STATES],
    /// The words, two bytes each (LE), in reading order.
    words: &'a [u8],
    /// The next word to read.
    pos: usize,
    t: Rans4Tables,
}

impl<'a> Rans4Stream<'a> {
    fn new(src: &'a [u8], t: Rans4Tables) -> Result<Self, String> {
        let states = 4 * RANS4_STATES;
        if src.len() < states || !(src.len() - states).is_multiple_of(2) {
            return Err("coded plane has a malformed length".into());
        }
        let mut x = [0u32; RANS4_STATES];
        for (x, b) in x.iter_mut().zip(src.chunks_exact(4)) {
            *x = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
        Ok(Self {
            x,
            words: &src[states..],
            pos: 0,
            t,
        })
    }

    /// Decodes the next `ctx.len()` symbols into `out` (as long as `ctx`). Every call but the last
    /// of a plane must take a multiple of four symbols (symbol `i` of the plane is state `i % 4`'s).
    /// Never fails: a malformed plane decodes to some bytes, and [`Rans4Stream::finish`] says so.
    fn decode(&mut self, ctx: &[u8], out: &mut [u8]) {
        let mask = TOTAL - 1;
        let (lut, slot, words) = (self.t.lut.as_slice(), &self.t.slot, self.words);
        let mut pos = self.pos;
        // One symbol: the table entry under the state's low bits gives the symbol, its frequency
        // and cumulative frequency; the state then drops those bits and refills from the words
        // (a word past the end reads as 0, and `finish` refuses the plane).
        // Any u32 state keeps the arithmetic in range: frequency × (x >> 12) + (x & 4095) − cum
        // ≤ 4096 × (2^20 − 1) + 4095 = 2^32 − 1, and the entry under (x & 4095) has cum ≤ x & 4095.
        macro_rules! step {
            ($x:expr, $c:expr, $o:expr) => {{
                // In range: every slot starts a whole table of TOTAL entries.
                let e = lut[slot[usize::from($c)] + ($x & mask) as usize];
                *$o = e as u8;
                $x = ((e >> 8 & mask) + 1) * ($x >> PRECISION) + ($x & mask) - (e >> 20);
                if $x < RANS_L {
                    let w = match words.get(2 * pos..2 * pos + 2) {
                        Some(b) => u16::from_le_bytes([b[0], b[1]]),
                        None => 0,
                    };
                    $x = $x << 16 | u32::from(w);
                    pos += 1;
                }
            }};
        }
        let [mut x0, mut x1, mut x2, mut x3] = self.x;
        let mut quads = out.chunks_exact_mut(RANS4_STATES);
        let mut cs = ctx.chunks_exact(RANS4_STATES);
        for (o, c) in (&mut quads).zip(&mut cs) {
            step!(x0, c[0], &mut o[0]);
            step!(x1, c[1], &mut o[1]);
            step!(x2, c[2], &mut o[2]);
            step!(x3, c[3], &mut o[3]);
        }
        let mut rest = [&mut x0, &mut x1, &mut x2, &mut x3];
        for ((o, &c), x) in quads
            .into_remainder()
            .iter_mut()
            .zip(cs.remainder())
            .zip(&mut rest)
        {
            step!(**x, c, o);
        }
        self.x = [x0, x1, x2, x3];
        self.pos = pos;
    }

    /// Whether the plane ended where its symbols do (every word read, every state back at its
    /// start); gives back the tables' buffer either way.
    fn finish(self) -> (Result<(), String>, Vec<u32>) {
        let ok = 2 * self.pos == self.words.len() && self.x == [RANS_L; RANS4_STATES];
        let r = if ok {
            Ok(())
        } else {
            Err("coded plane does not end where its symbols do".into())
        };
        (r, self.t.lut)
    }
}

/// Decodes a whole mode-3 plane of `ctx.len()` symbols into `out` (see [`rans4_encode`]).
#[cfg(test)]
fn rans4_decode(src: &[u8], ctx: &[u8], t: Rans4Tables, out: &mut Vec<u8>) -> Result<(), String> {
    let mut s = Rans4Stream::new(src, t)?;
    out.clear();
    out.resize(ctx.len(), 0);
    s.decode(ctx, out);
    s.finish().0
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
    let elems = new.chunks_exact(w).zip(base.chunks_exact(w)).zip(&mut ctx);
    // One loop per width with the planes as fixed slices (no per-element inner loop).
    let z = |(c, p): (&[u8], &[u8]), x: &mut u8| {
        let p = T::load(p);
        *x = T::context(p);
        T::forward(T::load(c), p)
    };
    match planes.as_mut_slice() {
        [a, b] => {
            for (((e, x), pa), pb) in elems.zip(a.iter_mut()).zip(b.iter_mut()) {
                let z = z(e, x);
                (*pa, *pb) = (z as u8, (z >> 8) as u8);
            }
        }
        [a, b, c, d] => {
            let planes = a
                .iter_mut()
                .zip(b.iter_mut())
                .zip(c.iter_mut())
                .zip(d.iter_mut());
            for ((e, x), (((pa, pb), pc), pd)) in elems.zip(planes) {
                let z = z(e, x);
                (*pa, *pb, *pc, *pd) = (z as u8, (z >> 8) as u8, (z >> 16) as u8, (z >> 24) as u8);
            }
        }
        _ => unreachable!("encode_delta takes widths 2 and 4 only"),
    }
    let mut tables = Vec::new();
    let mut body = Vec::new();
    let mut hist = vec![0u32; 65536];
    let mut f = [0u32; 256];
    // Per (context, symbol): frequency | cumulative frequency << 16.
    let mut enc_tab = vec![0u32; 65536];
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
        let mut bits = 0.0f64;
        for c in (0..256).filter(|c| bitmap[c >> 3] >> (c & 7) & 1 == 1) {
            let counts = &hist[c << 8..(c + 1) << 8];
            let max = normalise(counts, &mut f);
            tables.push(max as u8);
            for &x in &f[..=max] {
                put_varint(&mut tables, u64::from(x));
            }
            let mut cum = 0u32;
            for sym in 0..=max {
                if counts[sym] > 0 && f[max] != TOTAL {
                    bits += f64::from(counts[sym]) * (PRECISION as f64 - f64::from(f[sym]).log2());
                }
                enc_tab[c << 8 | sym] = f[sym] | cum << 16;
                cum += f[sym];
            }
        }
        let table_len = tables.len() - mark;
        let rans_est = bits / 8.0 + table_len as f64 + (4 * RANS4_STATES) as f64;
        // zstd (Huffman literals, runs) is faster than the rANS coder, to encode and to decode:
        // it codes the plane unless rANS saves at least 15 % of zstd's size and 1/64 of the plane
        // (a bf16 low plane: 0.77 bit a symbol against zstd's 1+). A plane neither shrinks is
        // stored raw.
        let z = zstd::bulk::compress(plane, 1).unwrap_or_default();
        let zlen = if z.is_empty() { n } else { z.len().min(n) };
        let rans_pays = (zlen as f64 - rans_est) > (0.15 * zlen as f64).max(n as f64 / 64.0);
        if rans_pays {
            body.push(3);
            let coded = rans4_encode(plane, &ctx, &enc_tab);
            put_varint(&mut body, coded.len() as u64);
            body.extend_from_slice(&coded);
        } else {
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

/// The buffers a decoder needs besides the chunk itself (for deltas: the zstd-coded planes, a
/// block of contexts and of rANS-decoded symbols, rANS tables, the decompressed table section;
/// for byte-grouped objects: the planes; for both: a zstd decompression context), kept from one
/// decode to the next: a reader going up a chain of deltas, or through the chunks of a file,
/// reuses them instead of allocating (and page-faulting in) fresh memory for every object.
#[derive(Default)]
pub struct DecodeScratch {
    /// The contexts of a whole chunk (version-2 planes only).
    ctx: Vec<u8>,
    /// Whole decoded planes: zstd-coded delta planes, version-2 rANS planes.
    planes: [Vec<u8>; 4],
    /// One block of contexts, then one block of symbols per rANS plane.
    block: Vec<u8>,
    /// rANS decoding tables, one per plane of a delta (a float object's lanes-coded planes,
    /// decoded one after another, use the first).
    pub(super) luts: [Vec<u32>; 4],
    /// rANS words (a float object's rANS planes).
    pub(super) words: Vec<u16>,
    tables: Vec<u8>,
    /// The byte planes of a byte-grouped object, back to back.
    pub(super) grouped: Vec<u8>,
    /// The zstd decompression context, made on first use (see [`zstd_context`]).
    pub(super) zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl DecodeScratch {
    /// Bytes its buffers hold on to.
    pub(crate) fn retained(&self) -> usize {
        let planes: usize = self.planes.iter().map(Vec::capacity).sum();
        let luts: usize = self.luts.iter().map(|l| l.capacity() * 4).sum();
        self.ctx.capacity()
            + planes
            + self.block.capacity()
            + luts
            + self.words.capacity() * 2
            + self.tables.capacity()
            + self.grouped.capacity()
    }
}

/// How many scratches the pool keeps.
const POOLED_SCRATCHES: usize = 4;

/// The most a pooled scratch may hold on to (one grown by an unusually large object is dropped).
const MAX_POOLED_BYTES: usize = 24 << 20;

/// Scratches kept between one-off decodes (see [`with_pooled_scratch`]).
static SCRATCHES: Pool<DecodeScratch> = Pool::new(POOLED_SCRATCHES, MAX_POOLED_BYTES);

/// Runs `f` with a decoder scratch taken from a small process-wide pool and given back after:
/// decodes made one object at a time on whichever thread (a pull's deltas, gc's and a remote's
/// checks, the re-encoding's round trips) reuse buffers (rANS tables take up to 4 MiB a plane)
/// instead of page-faulting in fresh memory every time, which costs more CPU than the decoding.
pub fn with_pooled_scratch<R>(f: impl FnOnce(&mut DecodeScratch) -> R) -> R {
    SCRATCHES.with(DecodeScratch::retained, f)
}

/// The zstd decompression context in `slot`, made on first use.
pub(super) fn zstd_context<'a>(
    slot: &'a mut Option<zstd::bulk::Decompressor<'static>>,
) -> Result<&'a mut zstd::bulk::Decompressor<'static>, String> {
    if slot.is_none() {
        *slot = Some(
            zstd::bulk::Decompressor::new()
                .map_err(|e| format!("zstd decompression context: {e}"))?,
        );
    }
    Ok(slot.as_mut().expect("made above"))
}

/// Decodes the payload of a delta object (`payload` follows the 48-byte header) against the base's
/// raw bytes in `buf`, which it turns into the object's raw bytes in place (no buffer of the
/// chunk's size is allocated for the result). The caller checked that `buf.len()` is the declared
/// raw length and will hash the result. Errors describe what is malformed; on an error `buf` holds
/// the base, except after a rANS-coded plane that turns out malformed only at its end (found after
/// the blocks before it were decoded): then it holds partly decoded bytes, and a caller that goes
/// on reads the base again.
pub(crate) fn decode_delta(
    payload: &[u8],
    version: u8,
    width: u8,
    buf: &mut [u8],
    scratch: &mut DecodeScratch,
) -> Result<(), String> {
    match width {
        2 => decode_planes::<u16>(payload, version, buf, scratch),
        4 => decode_planes::<u32>(payload, version, buf, scratch),
        w => Err(format!("element width {w} is not 2 or 4")),
    }
}

/// Elements a delta decodes at a time: contexts, rANS-decoded symbols and the result's bytes
/// of one block stay in the CPU's caches (a multiple of the rANS states).
const BLOCK: usize = 8192;

/// Where a delta's plane `k` comes from while its blocks are decoded.
enum PlaneSource<'a> {
    /// Stored raw: the object's own bytes.
    Raw(&'a [u8]),
    /// Decoded whole beforehand into `DecodeScratch::planes[k]` (zstd; version-2 rANS).
    Whole,
    /// rANS-coded: decoded a block at a time (boxed: its context table is 2 KiB).
    Rans(Box<Rans4Stream<'a>>),
}

fn decode_planes<T: Elem>(
    payload: &[u8],
    version: u8,
    buf: &mut [u8],
    scratch: &mut DecodeScratch,
) -> Result<(), String> {
    let w = T::W;
    let n = buf.len() / w;
    let mut r = Reader { b: payload, pos: 0 };
    let tlen = usize::try_from(r.varint()?).map_err(|_| "table length overflows")?;
    let tz = r.take(tlen).map_err(|e| format!("tables: {e}"))?;
    let DecodeScratch {
        ctx,
        planes,
        block,
        luts,
        tables,
        zstd,
        ..
    } = scratch;
    tables.clear();
    if tlen != 0 {
        tables.reserve(MAX_TABLES);
        zstd_context(zstd)?
            .decompress_to_buffer(tz, tables)
            .map_err(|e| format!("tables do not decode: {e}"))?;
        // The buffer's capacity bounds decompression; it may exceed what was reserved.
        if tables.len() > MAX_TABLES {
            return Err(format!("tables decode to more than {MAX_TABLES} bytes"));
        }
    }
    let mut tr = Reader { b: tables, pos: 0 };
    // Every plane is read and checked (lengths, tables, whole-plane decodes) before the first
    // byte of the base changes.
    let mut sources = Vec::with_capacity(w);
    let mut have_ctx = false;
    for (k, plane) in planes[..w].iter_mut().enumerate() {
        let mode = r.byte().map_err(|e| format!("plane {k}: {e}"))?;
        let len = usize::try_from(r.varint()?).map_err(|_| "plane length overflows")?;
        let src = r.take(len).map_err(|e| format!("plane {k}: {e}"))?;
        sources.push(match mode {
            0 => {
                if src.len() != n {
                    return Err(format!("raw plane {k} holds {} bytes, expected {n}", len));
                }
                PlaneSource::Raw(src)
            }
            1 if version == DELTA_V2 => {
                if !have_ctx {
                    ctx.clear();
                    ctx.extend(buf.chunks_exact(w).map(|p| T::context(T::load(p))));
                    have_ctx = true;
                }
                *plane =
                    decode_plane_v2(src, ctx, &mut tr).map_err(|e| format!("plane {k}: {e}"))?;
                PlaneSource::Whole
            }
            3 if version == DELTA_FORMAT_VERSION => {
                let t = Rans4Tables::read(&mut tr, std::mem::take(&mut luts[k]))
                    .map_err(|e| format!("plane {k}: {e}"))?;
                PlaneSource::Rans(Box::new(
                    Rans4Stream::new(src, t).map_err(|e| format!("plane {k}: {e}"))?,
                ))
            }
            2 => {
                plane.clear();
                plane.reserve(n);
                zstd_context(zstd)?
                    .decompress_to_buffer(src, plane)
                    .map_err(|e| format!("plane {k}: zstd: {e}"))?;
                if plane.len() != n {
                    return Err(format!(
                        "zstd plane {k} holds {} bytes, expected {n}",
                        plane.len()
                    ));
                }
                PlaneSource::Whole
            }
            m => return Err(format!("plane {k} has unknown mode {m}")),
        });
    }
    if tr.pos != tables.len() {
        return Err("tables hold more than the planes use".into());
    }
    let tail = r.take(payload.len() - r.pos)?;
    if tail.len() != buf.len() - n * w {
        return Err(format!(
            "tail is {} bytes, expected {}",
            tail.len(),
            buf.len() - n * w
        ));
    }
    // Block by block, the base's bytes become the result's: the contexts of the block (from the
    // base, before it changes), its rANS symbols, then the elements. A rANS plane that turns out
    // malformed is found at its end, when the base has partly changed.
    let coded = sources
        .iter()
        .filter(|s| matches!(s, PlaneSource::Rans(_)))
        .count();
    block.resize(BLOCK * (1 + coded), 0);
    let (bctx, bsym) = block.split_at_mut(BLOCK);
    for (b, elems) in buf[..n * w].chunks_mut(BLOCK * w).enumerate() {
        let (at, m) = (b * BLOCK, elems.len() / w);
        let bctx = &mut bctx[..m];
        if coded > 0 {
            for (c, p) in bctx.iter_mut().zip(elems.chunks_exact(w)) {
                *c = T::context(T::load(p));
            }
        }
        let mut syms = bsym.chunks_mut(BLOCK);
        let mut cur: [&[u8]; 4] = [&[]; 4];
        for ((k, src), slot) in sources.iter_mut().enumerate().zip(cur.iter_mut()) {
            *slot = match src {
                PlaneSource::Raw(p) => &p[at..at + m],
                PlaneSource::Whole => &planes[k][at..at + m],
                PlaneSource::Rans(s) => {
                    let out = &mut syms.next().expect("one block per rANS plane")[..m];
                    s.decode(bctx, out);
                    out
                }
            };
        }
        let elems = elems.chunks_exact_mut(w);
        // One loop per width with the planes as fixed slices (no per-element inner loop).
        match &cur[..w] {
            [a, b] => {
                for ((o, &x), &y) in elems.zip(*a).zip(*b) {
                    T::inverse(u32::from(x) | u32::from(y) << 8, T::load(o)).store(o);
                }
            }
            [a, b, c, d] => {
                for ((((o, &x), &y), &z), &v) in elems.zip(*a).zip(*b).zip(*c).zip(*d) {
                    let z =
                        u32::from(x) | u32::from(y) << 8 | u32::from(z) << 16 | u32::from(v) << 24;
                    T::inverse(z, T::load(o)).store(o);
                }
            }
            _ => unreachable!("elements are 2 or 4 bytes wide"),
        }
    }
    let mut ended = Ok(());
    for (k, src) in sources.into_iter().enumerate() {
        if let PlaneSource::Rans(s) = src {
            let (r, lut) = s.finish();
            luts[k] = lut;
            if ended.is_ok() {
                ended = r.map_err(|e| format!("plane {k}: {e}"));
            }
        }
    }
    ended?;
    for (o, &t) in buf[n * w..].iter_mut().zip(tail) {
        *o ^= t;
    }
    Ok(())
}

/// Decodes a mode-1 plane of a version-2 object (one rANS state, the `constriction` crate's
/// `SmallAnsCoder` stream), as the nshard that introduced deltas wrote them.
fn decode_plane_v2(src: &[u8], ctx: &[u8], tr: &mut Reader<'_>) -> Result<Vec<u8>, String> {
    let mut fixed = [None::<u8>; 256];
    let mut models: Vec<Option<SmallContiguousLookupDecoderModel>> = vec![None; 256];
    read_tables(tr, |c, freqs| {
        let max = freqs.len() - 1;
        let f = freqs
            .iter()
            .map(|&x| u16::try_from(x).map_err(|_| "frequency too large"))
            .collect::<Result<Vec<u16>, _>>()?;
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
        Ok(())
    })?;
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

    /// The mode of each plane of a delta object (0 raw, 2 zstd, 3 rANS; 1 in version 2).
    fn plane_modes(enc: &[u8], width: usize) -> Vec<u8> {
        planes_of(enc, width).into_iter().map(|(m, _)| m).collect()
    }

    /// Each plane's mode and where its coded bytes lie in `enc`.
    fn planes_of(enc: &[u8], width: usize) -> Vec<(u8, std::ops::Range<usize>)> {
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
                let start = DELTA_HEADER_LEN + r.pos;
                r.take(len).expect("plane");
                (mode, start..start + len)
            })
            .collect()
    }

    /// Each plane gets the coder that pays: rANS where it beats zstd clearly (the bf16 low byte,
    /// the fp32 third byte), zstd on nearly-all-zero planes, raw where nothing shrinks.
    #[test]
    fn each_plane_gets_the_coder_that_pays() {
        let (a, b) = series(1 << 18, 7, 0.001);
        let enc = roundtrip(&bf16(&b), &bf16(&a), 2);
        assert_eq!(plane_modes(&enc, 2), vec![3, 2]);
        let enc = roundtrip(&fp32(&b), &fp32(&a), 4);
        let modes = plane_modes(&enc, 4);
        assert_eq!(modes[0], 0, "{modes:?}");
        assert_eq!(modes[3], 2, "{modes:?}");
        assert!(modes.contains(&3), "{modes:?}");
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
        assert_eq!(&enc[..8], b"NSOB\x03\x03\x02\x01");
        assert_eq!(enc[8..16], (bb.len() as u64).to_le_bytes());
        assert_eq!(&enc[16..48], ObjectId::of(&ba).as_bytes());
        assert_eq!(
            plane_modes(&enc, 2),
            vec![2, 2],
            "zstd planes (small chunk)"
        );
        assert_eq!(
            ObjectId::of(&enc).to_hex(),
            GOLDEN_BF16,
            "the delta encoding of a fixed input changed ({} bytes)",
            enc.len()
        );
    }
    /// The same for an object whose low plane is rANS-coded (pins the four-state stream).
    #[test]
    fn golden_rans_object() {
        let (_, _, enc) = rans_object();
        assert_eq!(&enc[..8], b"NSOB\x03\x03\x02\x01");
        assert_eq!(
            ObjectId::of(enc).to_hex(),
            GOLDEN_RANS,
            "the delta encoding of a fixed input changed ({} bytes)",
            enc.len()
        );
    }
    const GOLDEN_RANS: &str = "e14594a9b336fbb61a790bf6bb5d466bedf49dce02d71230d130d2ca1b775674";

    /// The coder alone, on every length up to 9 and a few odd ones (the states take symbols in
    /// turn; the last quad is partial), mixing a context of four symbols with a one-symbol
    /// context (not coded); and any initial states decode to an error or the declared length.
    #[test]
    fn rans4_round_trips_every_length() {
        let f = [1000u32, 2000, 1000, 96];
        let mut tab = vec![0u32; 65536];
        let mut cum = 0;
        for (s, &x) in f.iter().enumerate() {
            tab[s] = x | cum << 16;
            cum += x;
        }
        tab[1 << 8 | 7] = TOTAL;
        let mut tables = vec![0u8; 32];
        tables[0] = 0b11;
        tables.push(3);
        for x in f {
            put_varint(&mut tables, u64::from(x));
        }
        tables.push(7);
        for _ in 0..7 {
            put_varint(&mut tables, 0);
        }
        put_varint(&mut tables, u64::from(TOTAL));
        let t = Rans4Tables::read(&mut Reader { b: &tables, pos: 0 }, Vec::new()).expect("tables");
        let mut r = Rng(5);
        let mut out = Vec::new();
        for n in (0..10).chain([31, 1001, 4099, 7, 0]) {
            let ctx: Vec<u8> = (0..n).map(|_| u8::from(r.unit() < 0.3)).collect();
            let plane: Vec<u8> = ctx
                .iter()
                .map(|&c| {
                    if c == 1 {
                        7
                    } else {
                        (r.unit() * 4.0) as u8 % 4
                    }
                })
                .collect();
            let enc = rans4_encode(&plane, &ctx, &tab);
            // The buffers hold the previous length's output: a decode overwrites them whole.
            rans4_decode(&enc, &ctx, t.clone(), &mut out).expect("decodes");
            assert_eq!(out, plane, "n = {n}");
            for x in [0u32, 1, 0xFFFF, u32::MAX] {
                let mut bad = enc.clone();
                bad[..4].copy_from_slice(&x.to_le_bytes());
                if rans4_decode(&bad, &ctx, t.clone(), &mut out).is_ok() {
                    assert_eq!(out.len(), n);
                }
            }
        }
    }

    /// Pooled scratches serve decodes one after another and nested ones (a nested call gets a
    /// scratch of its own), results match a fresh scratch's, and the pool keeps at most
    /// `POOLED_SCRATCHES`, none holding more than `MAX_POOLED_BYTES`.
    #[test]
    fn pooled_scratches_are_reused_and_bounded() {
        let mut objects = Vec::new();
        for (n, width, seed) in [(5000usize, 2u8, 11u64), (70_000, 4, 12), (1500, 2, 13)] {
            let (a, b) = series(n, seed, 0.01);
            let (new, base) = if width == 2 {
                (bf16(&b), bf16(&a))
            } else {
                (fp32(&b), fp32(&a))
            };
            let enc = encode_delta(&new, &base, &ObjectId::of(&base), width, 1).expect("encodes");
            objects.push((ObjectId::of(&new), enc, new, base));
        }
        let decode = |k: usize, scratch: &mut DecodeScratch| {
            let (id, enc, _, base) = &objects[k];
            let mut raw = base.clone();
            crate::codec::decode_against_in_place(id, enc, &mut raw, 1 << 30, scratch)
                .expect("decodes");
            raw
        };
        for round in 0..3 {
            for k in 0..objects.len() {
                let pooled = with_pooled_scratch(|outer| {
                    let inner = with_pooled_scratch(|s| decode((k + 1) % objects.len(), s));
                    assert_eq!(inner, objects[(k + 1) % objects.len()].2, "round {round}");
                    decode(k, outer)
                });
                assert_eq!(pooled, decode(k, &mut DecodeScratch::default()));
                assert_eq!(pooled, objects[k].2);
            }
        }
        let kept = SCRATCHES.kept(DecodeScratch::retained);
        assert!(kept.len() <= POOLED_SCRATCHES);
        assert!(kept.iter().all(|&held| held <= MAX_POOLED_BYTES));
    }

    /// One scratch serves objects of any width and size in turn (a reader keeps one per chain;
    /// nothing of an earlier object may leak into the next), and a truncated object is refused
    /// before the base changes.
    #[test]
    fn one_scratch_decodes_objects_of_any_width_and_size() {
        let mut scratch = DecodeScratch::default();
        let cases = [
            (5000usize, 2u8, 1u64),
            (70_000, 4, 2),
            (1500, 2, 3),
            (3000, 4, 4),
        ];
        for (n, width, seed) in cases {
            let (a, b) = series(n, seed, 0.01);
            let (new, base) = if width == 2 {
                (bf16(&b), bf16(&a))
            } else {
                (fp32(&b), fp32(&a))
            };
            let id = ObjectId::of(&new);
            let enc = encode_delta(&new, &base, &ObjectId::of(&base), width, 1).expect("encodes");
            let mut raw = base.clone();
            crate::codec::decode_against_in_place(&id, &enc, &mut raw, 1 << 30, &mut scratch)
                .expect("decodes");
            assert_eq!(raw, new, "n = {n}, width {width}");
            // A truncated object is refused and the base stays as it was.
            let mut raw = base.clone();
            let cut = &enc[..enc.len() - 3];
            crate::codec::decode_against_in_place(&id, cut, &mut raw, 1 << 30, &mut scratch)
                .expect_err("truncated");
            assert_eq!(raw, base);
        }
    }

    /// Deltas decode a block of elements at a time: chunks of every length around the block size
    /// (rANS planes end mid-block, the last block is short, a tail byte follows) decode exactly,
    /// with one scratch; a rANS plane damaged in its last word is found at its end and refused.
    #[test]
    fn chunks_around_the_block_size_decode_exactly() {
        let mut scratch = DecodeScratch::default();
        for (width, n) in [2u8, 4].into_iter().flat_map(|w| {
            [
                4 * BLOCK - 1,
                4 * BLOCK,
                4 * BLOCK + 1,
                4 * BLOCK + 6,
                5 * BLOCK + 7,
            ]
            .map(|n| (w, n))
        }) {
            let (a, b) = series(n, n as u64 + u64::from(width), 0.001);
            let (mut new, mut base) = if width == 2 {
                (bf16(&b), bf16(&a))
            } else {
                (fp32(&b), fp32(&a))
            };
            new.push(7);
            base.push(5);
            let id = ObjectId::of(&new);
            let enc = encode_delta(&new, &base, &ObjectId::of(&base), width, 1).expect("encodes");
            assert!(
                plane_modes(&enc, usize::from(width)).contains(&3),
                "a rANS plane (width {width}, {n} elements)"
            );
            let mut raw = base.clone();
            crate::codec::decode_against_in_place(&id, &enc, &mut raw, 1 << 30, &mut scratch)
                .expect("decodes");
            assert_eq!(raw, new, "width {width}, {n} elements");
            // The first rANS plane's last word, flipped: every block decodes, the end check fails.
            let last = last_rans_word(&enc, usize::from(width));
            let mut bad = enc.clone();
            bad[last] ^= 0x5A;
            let mut raw = base.clone();
            let err =
                crate::codec::decode_against_in_place(&id, &bad, &mut raw, 1 << 30, &mut scratch)
                    .expect_err("a damaged rANS plane");
            assert!(err.to_string().contains("does not end"), "{err}");
        }
    }

    /// The offset in `enc` of the last byte of the first rANS plane's words.
    fn last_rans_word(enc: &[u8], width: usize) -> usize {
        planes_of(enc, width)
            .into_iter()
            .find(|(mode, at)| *mode == 3 && at.len() > 4 * RANS4_STATES)
            .map(|(_, at)| at.end - 1)
            .expect("a rANS plane with words")
    }

    const GOLDEN_BF16: &str = "6fafec350838386754ec9aec3fe31db25467fee00a94acc134476a0b5e5a4d05";

    /// Version-2 delta objects (one rANS state a plane, written by the nshard that introduced
    /// deltas) keep decoding: fixtures written by that encoder from the inputs below.
    #[test]
    fn version_2_objects_still_decode() {
        let (a, b) = series(1 << 15, 7, 0.001);
        let (c, d) = series(1 << 14, 7, 0.001);
        for (width, base, new, fixture) in [
            (
                2,
                bf16(&a),
                bf16(&b),
                &include_bytes!("testdata/delta-v2-bf16.bin")[..],
            ),
            (
                4,
                fp32(&c),
                fp32(&d),
                &include_bytes!("testdata/delta-v2-fp32.bin")[..],
            ),
        ] {
            assert_eq!(&fixture[..6], b"NSOB\x02\x03");
            assert!(plane_modes(fixture, width).contains(&1), "a v2 rANS plane");
            let out = decode_against(&ObjectId::of(&new), fixture, &base, 1 << 30).expect("v2");
            assert_eq!(out, new);
            // A version-3 object never holds a version-2 plane (nor the reverse: below).
            let mut v3 = fixture.to_vec();
            v3[4] = 3;
            let err = decode_against(&ObjectId::of(&new), &v3, &base, 1 << 30).expect_err("mode");
            assert!(err.to_string().contains("unknown mode 1"), "{err}");
        }
        let (base, new, enc) = rans_object();
        let mut v2 = enc.clone();
        v2[4] = 2;
        let err = decode_against(&ObjectId::of(new), &v2, base, 1 << 30).expect_err("mode");
        assert!(err.to_string().contains("unknown mode 3"), "{err}");
    }

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

        /// The same for an object with a rANS plane, damaged in its coded bytes (states, words)
        /// or in its tables (decompressed, one byte changed, compressed again): never a panic,
        /// and any object that decodes has the declared length.
        #[test]
        fn damaged_rans_planes_are_errors(at: usize, byte: u8, in_tables: bool) {
            let (base, new, enc) = rans_object();
            let mut enc = enc.clone();
            if in_tables {
                let mut r = Reader { b: &enc[DELTA_HEADER_LEN..], pos: 0 };
                let tlen = r.varint().expect("tables") as usize;
                let start = DELTA_HEADER_LEN + r.pos;
                let mut tables = zstd::bulk::decompress(&enc[start..start + tlen], MAX_TABLES)
                    .expect("tables");
                let at = at % tables.len();
                tables[at] = byte;
                let z = zstd::bulk::compress(&tables, 1).expect("zstd");
                let mut out = enc[..DELTA_HEADER_LEN].to_vec();
                put_varint(&mut out, z.len() as u64);
                out.extend_from_slice(&z);
                out.extend_from_slice(&enc[start + tlen..]);
                enc = out;
            } else {
                let at = DELTA_HEADER_LEN + at % (enc.len() - DELTA_HEADER_LEN);
                enc[at] = byte;
            }
            if let Ok(out) = decode_against(&ObjectId::of(new), &enc, base, 1 << 30) {
                prop_assert!(out.len() == new.len());
            }
        }
    }

    /// A bf16 delta whose low plane is rANS-coded (base, new, object), built once.
    fn rans_object() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
        static OBJ: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
        OBJ.get_or_init(|| {
            let (a, b) = series(1 << 15, 7, 0.001);
            let (ba, bb) = (bf16(&a), bf16(&b));
            let enc = encode_delta(&bb, &ba, &ObjectId::of(&ba), 2, 1).expect("enc");
            assert_eq!(plane_modes(&enc, 2)[0], 3, "a rANS plane");
            (ba, bb, enc)
        })
    }
}
