//! Float objects (format version 4, codec 4): a chunk of bf16, fp16 or fp32 weights stored on its
//! own, as the first version of a file and the newest version of a series are.
//!
//! Byte planes with zstd (format 1's byte-grouped objects) leave about 1 % of a bf16 file on the
//! table: the exponent is split over two bytes, its low bit sharing a byte with the mantissa,
//! which does not compress. So:
//!
//! 1. each element (u16 for bf16/fp16, u32 for fp32, little endian) is rotated left by one bit:
//!    the sign moves to bit 0 and the top byte is the whole exponent (fp16: its 5 exponent bits
//!    and the top 3 mantissa bits);
//! 2. the rotated elements are split into byte planes (plane `k` holds byte `k` of each);
//! 3. each plane is stored raw when a sample of it is nearly random (mantissa bits), else with
//!    zstd when that saves a 32nd of it, or with the four-lane rANS coder of the `lanes` module
//!    where that is estimated to save a tenth of zstd's size and does: planes where one symbol
//!    holds most of the plane (pruned or sparse tensors), on which Huffman codes spend at least
//!    a bit a symbol. On weights, zstd's Huffman code of the exponent plane comes within 2 % of
//!    its entropy and decodes two to three times faster than rANS, so zstd keeps it.
//!
//! ```text
//! header (16 bytes): b"NSOB", format version 4, codec 4, element width (2 or 4), 0,
//!                    raw length (u64 LE)
//! payload:           the planes, top first (k = width − 1, …, 0): mode (0 raw, 1 zstd,
//!                    2 lanes rANS), varint length, bytes
//!                    the raw_len % width tail bytes, raw
//! ```
//!
//! # Folded fields (codec 5, 2-byte elements)
//!
//! In bf16 weights the top mantissa bits are not random: within a binade smaller magnitudes are
//! more likely, so the two bits under the exponent carry less than two bits of information: 1.97
//! bits on the bench series' bf16 weights, 1.93 given the exponent. A plane that holds only the
//! exponent cannot use that. Where a chunk's low plane (after the rotation) is noise and its top bytes lie
//! within 64 values of the smallest one, `tmin`, each element becomes:
//!
//! - a symbol `(top − tmin) << 2 | the two bits under it` in the symbol plane (a few hundred
//!   values, coded like any plane: zstd's Huffman code on weights), and
//! - a six-bit residue (the rest of the mantissa and the sign, after the rotation) in the residue
//!   plane, packed four into three bytes per block of [`RESIDUE_BLOCK`] elements: with `q = m / 4`
//!   for a block of `m`, nibble byte `i < 2q` holds the low four bits of elements `i` and `i + 2q`,
//!   then byte `i < q` the top two bits of elements `i`, `i + q`, `i + 2q` and `i + 3q`, then the
//!   last `m % 4` residues a byte each (a layout whose unpacking the compiler vectorises).
//!
//! On the `bench/deltas.sh` series' bf16 weights that stores a version in 65.80 % of the file
//! against 66.21 % with rotated planes (z4ai: 66.02 %); fp16's top byte already holds three
//! mantissa bits, and its top bytes rarely fit 64 values. Pruned tensors keep rotated planes: their
//! low plane compresses, and packing it across bytes would cost more.
//!
//! ```text
//! header (16 bytes): b"NSOB", format version 4, codec 5, element width 2, folded bits (2),
//!                    raw length (u64 LE)
//! payload:           tmin (1 byte); the symbol plane, then the residue plane: mode (0 raw,
//!                    1 zstd, 2 lanes rANS), varint length, bytes; the raw_len % 2 tail byte
//! ```
//!
//! Another number of folded bits is a newer nshard's: "unsupported", never "corrupt".
//!
//! Format version 4 is new: nshard binaries from before it answer "unsupported object format:
//! upgrade nshard" for these objects (never "corrupt") and read every other object. A server that
//! refuses them gets the chunk in format 1 instead (see `transfer::engine::put_standalone`).

use super::delta::{put_varint, zstd_context, DecodeScratch, Reader};
use super::encode::{sampled_entropy, split_planes, RAW_ENTROPY_BITS};
use super::lanes::{self, LaneEncoder};

/// Format version of float objects.
pub const FLOAT_FORMAT_VERSION: u8 = 4;
/// Codec byte of float objects.
pub(crate) const FLOAT_CODEC: u8 = 4;
/// The largest chunk written as a float object (the default largest chunk); larger float chunks
/// stay byte-grouped. A float object decodes in memory, so a server verifying an upload holds at
/// most this much for it.
pub const MAX_FLOAT_OBJECT: u64 = 16 << 20;
/// Smaller float chunks get plain zstd, as they did before float objects.
pub(crate) const MIN_FLOAT_OBJECT: usize = 4096;

/// Codec byte of float objects with folded fields (2-byte elements only).
pub(crate) const FIELDS_CODEC: u8 = 5;
/// Mantissa bits folded into the symbols of the top plane of a float object with folded fields
/// (header byte 7; objects with another value are from a newer nshard).
pub(crate) const FOLD: u8 = 2;
/// A chunk is written with folded fields when its top bytes lie within this many values.
const TOP_SPAN: usize = 256 >> FOLD;
/// Bits of each element left in the packed residue plane.
const RESIDUE_BITS: u8 = 8 - FOLD;
const RESIDUE_MASK: u8 = (1 << RESIDUE_BITS) - 1;
// A residue is a nibble and two bits (`pack_residues`, `decode_fields`).
const _: () = assert!(RESIDUE_BITS == 6);

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const LANES: u8 = 2;

/// The float encoder's buffers, kept from chunk to chunk.
#[derive(Default)]
pub(super) struct FloatEncoder {
    lanes: LaneEncoder,
    planes: Vec<u8>,
    /// The packed residues of a float object with folded fields.
    packed: Vec<u8>,
    scratch: Vec<u8>,
}

impl FloatEncoder {
    /// Encodes `raw` (elements of `w` bytes, 2 or 4, then a tail) as a float object, or `None`
    /// when no plane gets smaller than raw. `zstd(plane, out)` compresses a plane into `out` and
    /// says whether that saves a 32nd of it.
    pub(super) fn encode(
        &mut self,
        raw: &[u8],
        w: u8,
        zstd: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    ) -> Option<Vec<u8>> {
        self.encode_as(raw, w, zstd, true)
    }

    /// [`FloatEncoder::encode`], with folded fields only if `fields`.
    pub(super) fn encode_as(
        &mut self,
        raw: &[u8],
        w: u8,
        mut zstd: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
        fields: bool,
    ) -> Option<Vec<u8>> {
        let width = usize::from(w);
        let n = raw.len() / width;
        split_rotated(&raw[..n * width], width, &mut self.planes);
        // Folding pays where the low plane is noise (weights); where it compresses (pruned or
        // sparse tensors: mostly zeros), packing its bits across bytes would cost more.
        if width == 2 && fields && sampled_entropy(&self.planes[..n]) >= RAW_ENTROPY_BITS {
            if let Some(tmin) = top_window(&self.planes[n..2 * n]) {
                return self.encode_fields(raw, n, tmin, zstd);
            }
        }
        let planes: Vec<&[u8]> = (0..width)
            .rev()
            .map(|k| &self.planes[k * n..(k + 1) * n])
            .collect();
        let head = [FLOAT_CODEC, w, 0];
        let coder = (&mut self.lanes, &mut self.scratch);
        write_object(raw, head, &[], &planes, n * width, &mut zstd, coder)
    }

    /// Encodes `raw` (2-byte elements, split rotated into `self.planes`: `n` low bytes, then `n`
    /// top bytes, all within [`TOP_SPAN`] of `tmin`) as a float object with folded fields; see
    /// "Folded fields" in the module documentation.
    fn encode_fields(
        &mut self,
        raw: &[u8],
        n: usize,
        tmin: u8,
        mut zstd: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    ) -> Option<Vec<u8>> {
        let (lo, hi) = self.planes.split_at_mut(n);
        pack_residues(lo, &mut self.packed);
        for (t, &l) in hi.iter_mut().zip(lo.iter()) {
            *t = (*t - tmin) << FOLD | l >> RESIDUE_BITS;
        }
        let head = [FIELDS_CODEC, 2, FOLD];
        let coder = (&mut self.lanes, &mut self.scratch);
        write_object(
            raw,
            head,
            &[tmin],
            &[hi, &self.packed],
            n * 2,
            &mut zstd,
            coder,
        )
    }
}

/// A float object: the header (`head`: codec, element width, codec parameter), `prefix`, each
/// of `planes` coded by [`code_plane`] with the lanes coder and scratch of `coder`, then the
/// bytes of `raw` after the first `body`. `None` when no plane gets smaller than raw.
fn write_object(
    raw: &[u8],
    head: [u8; 3],
    prefix: &[u8],
    planes: &[&[u8]],
    body: usize,
    zstd: &mut impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    (lanes, scratch): (&mut LaneEncoder, &mut Vec<u8>),
) -> Option<Vec<u8>> {
    // Room for the largest object possible (a plane is coded only where that is smaller than
    // its raw bytes, and the planes and tail together are the raw bytes: never more than those
    // plus the framing). Growing it would copy it into new pages, while room reserved and never
    // written is never faulted in.
    let framing = super::HEADER_LEN + prefix.len() + planes.len() * 11 + 128;
    let mut out = Vec::with_capacity(framing + raw.len());
    out.extend_from_slice(super::MAGIC);
    out.push(FLOAT_FORMAT_VERSION);
    out.extend_from_slice(&head);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(prefix);
    let mut any = false;
    for &plane in planes {
        let mode = code_plane(plane, zstd, lanes, scratch);
        any |= mode != RAW;
        put_plane(&mut out, mode, if mode == RAW { plane } else { scratch });
    }
    out.extend_from_slice(&raw[body..]);
    any.then_some(out)
}

/// The smallest top byte of `top` when every one is less than [`TOP_SPAN`] above it.
fn top_window(top: &[u8]) -> Option<u8> {
    let (min, max) = top
        .iter()
        .fold((u8::MAX, 0u8), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    (min <= max && usize::from(max - min) < TOP_SPAN).then_some(min)
}

/// Elements per block of the residue plane (the last block may be shorter).
const RESIDUE_BLOCK: usize = 256;

/// Bytes of the residue plane of `n` elements: per block of `m` elements, `3·(m / 4)` in the
/// strided layout, then one byte for each of the last `m % 4` elements.
fn residue_len(n: usize) -> usize {
    let m = n % RESIDUE_BLOCK;
    n / RESIDUE_BLOCK * (RESIDUE_BLOCK / 4 * 3) + m / 4 * 3 + m % 4
}

/// Writes the residue plane of the low bytes `lo` into `out`, block by block (see "Folded
/// fields" in the module documentation).
fn pack_residues(lo: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(residue_len(lo.len()));
    for block in lo.chunks(RESIDUE_BLOCK) {
        pack_block(block, out);
    }
}

/// One block of `m` elements' residues: with `q = m / 4`, nibble byte `i < 2q` holds the low
/// four residue bits of elements `i` and `i + 2q`, then byte `i < q` the top two bits of
/// elements `i`, `i + q`, `i + 2q` and `i + 3q`; the last `m % 4` residues a byte each.
fn pack_block(lo: &[u8], out: &mut Vec<u8>) {
    let q = lo.len() / 4;
    let (half_a, half_b) = lo[..4 * q].split_at(2 * q);
    out.extend(
        half_a
            .iter()
            .zip(half_b)
            .map(|(&a, &b)| a & 15 | (b & 15) << 4),
    );
    let (l0, rest) = lo[..4 * q].split_at(q);
    let (l1, rest) = rest.split_at(q);
    let (l2, l3) = rest.split_at(q);
    out.extend(
        l0.iter()
            .zip(l1)
            .zip(l2)
            .zip(l3)
            .map(|(((&a, &b), &c), &d)| {
                a >> 4 & 3 | (b >> 4 & 3) << 2 | (c >> 4 & 3) << 4 | (d >> 4 & 3) << 6
            }),
    );
    out.extend(lo[4 * q..].iter().map(|&l| l & RESIDUE_MASK));
}

/// Codes one plane into `scratch` and returns its mode (for [`RAW`], `scratch` is not used); see
/// step 3 of the module documentation.
fn code_plane(
    plane: &[u8],
    zstd: &mut impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    lanes: &mut LaneEncoder,
    scratch: &mut Vec<u8>,
) -> u8 {
    let n = plane.len();
    let entropy = sampled_entropy(plane);
    if entropy >= RAW_ENTROPY_BITS {
        return RAW;
    }
    let zlen = if zstd(plane, scratch) {
        scratch.len()
    } else {
        n
    };
    let estimate = entropy * n as f64 / 8.0 + (lanes::LANES * 6 + 400) as f64;
    if estimate < 0.9 * zlen as f64 {
        let counts = lanes::histogram(plane);
        if lanes::estimate(&counts) < 0.9 * zlen as f64 {
            let mark = scratch.len();
            lanes.encode(plane, &counts, scratch);
            if scratch.len() - mark < zlen {
                scratch.drain(..mark);
                return LANES;
            }
            scratch.truncate(mark);
        }
    }
    if zlen < n {
        ZSTD
    } else {
        RAW
    }
}

fn put_plane(out: &mut Vec<u8>, mode: u8, bytes: &[u8]) {
    out.push(mode);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Rotates each element of `data` (a multiple of `w` bytes) left by one bit and writes the byte
/// planes of the results back to back into `out`: the planes of the elements as they are (the
/// byte gather of format 1), then the rotation plane by plane, byte by byte (byte `k` of a
/// rotated element is byte `k` shifted left by one, with the top bit of byte `k − 1` below it,
/// byte `w − 1` for byte 0), which the compiler vectorises.
fn split_rotated(data: &[u8], w: usize, out: &mut Vec<u8>) {
    let n = data.len() / w;
    split_planes(data, w, out);
    match w {
        2 => {
            let (p0, p1) = out.split_at_mut(n);
            for (a, b) in p0.iter_mut().zip(p1.iter_mut()) {
                (*a, *b) = (*a << 1 | *b >> 7, *b << 1 | *a >> 7);
            }
        }
        4 => {
            let (p01, p23) = out.split_at_mut(2 * n);
            let (p0, p1) = p01.split_at_mut(n);
            let (p2, p3) = p23.split_at_mut(n);
            let planes = p0
                .iter_mut()
                .zip(p1.iter_mut())
                .zip(p2.iter_mut())
                .zip(p3.iter_mut());
            for (((a, b), c), d) in planes {
                (*a, *b, *c, *d) = (
                    *a << 1 | *d >> 7,
                    *b << 1 | *a >> 7,
                    *c << 1 | *b >> 7,
                    *d << 1 | *c >> 7,
                );
            }
        }
        _ => unreachable!("float objects have elements of 2 or 4 bytes"),
    }
}

/// Decodes the payload of a float object (`payload` follows the 16-byte header) of `raw_len`
/// bytes and elements of `w` bytes into `out`, with the buffers in `scratch`. Errors describe
/// what is malformed.
pub(super) fn decode(
    payload: &[u8],
    raw_len: usize,
    w: u8,
    out: &mut Vec<u8>,
    scratch: &mut DecodeScratch,
) -> Result<(), String> {
    let width = usize::from(w);
    if width != 2 && width != 4 {
        return Err(format!("element width {w} is not 2 or 4"));
    }
    let n = raw_len / width;
    let mut r = Reader { b: payload, pos: 0 };
    let mut planes = Planes::new(&mut scratch.grouped, n * width);
    let mut at: [PlaneAt; 4] = Default::default();
    for k in (0..width).rev() {
        at[k] = planes.read(
            &mut r,
            k,
            n,
            &mut scratch.zstd,
            &mut scratch.luts[0],
            &mut scratch.words,
        )?;
    }
    let tail = tail_of(payload, &r, raw_len - n * width)?;
    let plane = |k: usize| planes.get(payload, &at[k]);
    super::overwrite_len(out, raw_len);
    match width {
        2 => {
            let elems = out[..n * 2].chunks_exact_mut(2);
            for ((o, &a), &b) in elems.zip(plane(0)).zip(plane(1)) {
                let v = u16::from_le_bytes([a, b]).rotate_right(1);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            let elems = out[..n * 4].chunks_exact_mut(4);
            let planes = plane(0).iter().zip(plane(1)).zip(plane(2)).zip(plane(3));
            for (o, (((&a, &b), &c), &d)) in elems.zip(planes) {
                let v = u32::from_le_bytes([a, b, c, d]).rotate_right(1);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    out[n * width..].copy_from_slice(tail);
    Ok(())
}

/// Where a plane of a float object is: in the payload (stored raw) or in the decoded planes.
#[derive(Clone, Default)]
enum PlaneAt {
    #[default]
    None,
    Payload(std::ops::Range<usize>),
    Decoded(std::ops::Range<usize>),
}

/// The planes of one object that had to be decoded, back to back in a reused buffer: a plane
/// stored raw is read where it lies, so its bytes are never copied nor its room touched.
struct Planes<'a> {
    buf: &'a mut Vec<u8>,
    used: usize,
}

impl<'a> Planes<'a> {
    /// Room for at most `most` decoded bytes, without copying what `buf` held.
    fn new(buf: &'a mut Vec<u8>, most: usize) -> Self {
        super::reserve_fresh(buf, most);
        Planes { buf, used: 0 }
    }

    /// Reads plane `k` (mode, length, bytes) of `n` decoded bytes at `r`: decodes it after the
    /// planes decoded before, or notes where it lies in the payload when it is stored raw.
    fn read(
        &mut self,
        r: &mut Reader<'_>,
        k: usize,
        n: usize,
        zstd: &mut Option<zstd::bulk::Decompressor<'static>>,
        lut: &mut Vec<u32>,
        words: &mut Vec<u16>,
    ) -> Result<PlaneAt, String> {
        let mode = r.byte()?;
        let len = usize::try_from(r.varint()?).map_err(|_| "plane length too large")?;
        let start = r.pos;
        let bytes = r.take(len)?;
        let at = self.used..self.used + n;
        if mode != RAW && self.buf.len() < at.end {
            // Only bytes never used before are zeroed.
            self.buf.resize(at.end, 0);
        }
        match mode {
            RAW if len == n => return Ok(PlaneAt::Payload(start..start + len)),
            RAW => return Err(format!("raw plane {k} is {len} bytes, expected {n}")),
            ZSTD => {
                let got = zstd_context(zstd)?
                    .decompress_to_buffer(bytes, &mut self.buf[at.clone()])
                    .map_err(|e| format!("plane {k}: zstd: {e}"))?;
                if got != n {
                    return Err(format!("zstd plane {k} is {got} bytes, expected {n}"));
                }
            }
            LANES => lanes::decode(bytes, &mut self.buf[at.clone()], lut, words)
                .map_err(|e| format!("plane {k}: {e}"))?,
            m => return Err(format!("plane {k} has unknown mode {m}")),
        }
        self.used = at.end;
        Ok(PlaneAt::Decoded(at))
    }

    /// The bytes of a plane read by [`Planes::read`].
    fn get<'p>(&'p self, payload: &'p [u8], at: &PlaneAt) -> &'p [u8] {
        match at {
            PlaneAt::Payload(r) => &payload[r.clone()],
            PlaneAt::Decoded(r) => &self.buf[r.clone()],
            PlaneAt::None => &[],
        }
    }
}

/// The tail bytes after the planes read by `r`, which must be `want` bytes.
fn tail_of<'a>(payload: &'a [u8], r: &Reader<'_>, want: usize) -> Result<&'a [u8], String> {
    let tail = &payload[r.pos..];
    if tail.len() != want {
        return Err(format!("tail is {} bytes, expected {want}", tail.len()));
    }
    Ok(tail)
}

/// Decodes the payload of a float object with folded fields (2-byte elements; `payload` follows
/// the 16-byte header) of `raw_len` bytes into `out`, with the buffers in `scratch`. Errors
/// describe what is malformed.
pub(super) fn decode_fields(
    payload: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
    scratch: &mut DecodeScratch,
) -> Result<(), String> {
    let n = raw_len / 2;
    let mut r = Reader { b: payload, pos: 0 };
    let tmin = u16::from(r.byte()?);
    let rlen = residue_len(n);
    let mut planes = Planes::new(&mut scratch.grouped, n + rlen);
    let (zstd, lut, words) = (&mut scratch.zstd, &mut scratch.luts[0], &mut scratch.words);
    let at_sym = planes.read(&mut r, 1, n, zstd, lut, words)?;
    let at_res = planes.read(&mut r, 0, rlen, zstd, lut, words)?;
    let tail = tail_of(payload, &r, raw_len - n * 2)?;
    let syms = planes.get(payload, &at_sym);
    let res = planes.get(payload, &at_res);
    // A top byte above 255 cannot come from the encoder.
    let top = syms.iter().fold(0u8, |a, &s| a.max(s)) >> FOLD;
    if tmin + u16::from(top) > 255 {
        return Err(format!("top byte {tmin} + {top} is over 255"));
    }
    // Only a last block's unpaired residues have a byte of their own.
    let m = n % RESIDUE_BLOCK;
    if res[res.len() - m % 4..].iter().any(|&r| r > RESIDUE_MASK) {
        return Err("a residue has more than six bits".into());
    }
    super::overwrite_len(out, raw_len);
    let blocks = out[..n * 2].chunks_mut(2 * RESIDUE_BLOCK);
    let mut res_at = 0;
    for (k, o) in blocks.enumerate() {
        let m = o.len() / 2;
        let len = m / 4 * 3 + m % 4;
        let s = &syms[k * RESIDUE_BLOCK..k * RESIDUE_BLOCK + m];
        unpack_block(o, s, &res[res_at..res_at + len], tmin);
        res_at += len;
    }
    out[n * 2..].copy_from_slice(tail);
    Ok(())
}

/// Writes the elements of one block (`o`: `m` elements of 2 bytes) from their symbols `syms` (`m`
/// bytes) and the block's residue bytes `res` (see [`pack_block`]), top bytes counted from
/// `tmin`.
fn unpack_block(o: &mut [u8], syms: &[u8], res: &[u8], tmin: u16) {
    // The rotated element: top byte (from `tmin`), two folded bits (the symbol's low bits, so
    // the symbol shifted by six covers both), six residue bits; rotated back.
    let base = tmin << 8;
    let element = |s: u8, res: u8| -> [u8; 2] {
        (base + (u16::from(s) << RESIDUE_BITS) + u16::from(res))
            .rotate_right(1)
            .to_le_bytes()
    };
    let q = syms.len() / 4;
    let (elems, rest) = o.split_at_mut(8 * q);
    let (o01, o23) = elems.split_at_mut(4 * q);
    let (o0, o1) = o01.split_at_mut(2 * q);
    let (o2, o3) = o23.split_at_mut(2 * q);
    let (nib_a, nib_b) = res[..2 * q].split_at(q);
    let twos = &res[2 * q..3 * q];
    let (s0, s) = syms[..4 * q].split_at(q);
    let (s1, s) = s.split_at(q);
    let (s2, s3) = s.split_at(q);
    let outs = o0.chunks_exact_mut(2).zip(o1.chunks_exact_mut(2));
    let outs = outs.zip(o2.chunks_exact_mut(2)).zip(o3.chunks_exact_mut(2));
    let syms4 = s0.iter().zip(s1).zip(s2).zip(s3);
    let res3 = nib_a.iter().zip(nib_b).zip(twos);
    for ((((a, b), c), d), ((((&sa, &sb), &sc), &sd), ((&na, &nb), &t))) in
        outs.zip(syms4.zip(res3))
    {
        a.copy_from_slice(&element(sa, na & 15 | (t & 3) << 4));
        b.copy_from_slice(&element(sb, nb & 15 | (t & 12) << 2));
        c.copy_from_slice(&element(sc, na >> 4 | t & 48));
        d.copy_from_slice(&element(sd, nb >> 4 | (t >> 2 & 48)));
    }
    let last = syms[4 * q..].iter().zip(&res[3 * q..]);
    for (o, (&s, &r)) in rest.chunks_exact_mut(2).zip(last) {
        o.copy_from_slice(&element(s, r));
    }
}
