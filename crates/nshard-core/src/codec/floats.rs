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

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const LANES: u8 = 2;

/// The float encoder's buffers, kept from chunk to chunk.
#[derive(Default)]
pub(super) struct FloatEncoder {
    lanes: LaneEncoder,
    planes: Vec<u8>,
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
        mut zstd: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    ) -> Option<Vec<u8>> {
        let width = usize::from(w);
        let n = raw.len() / width;
        split_rotated(&raw[..n * width], width, &mut self.planes);
        let mut out = Vec::with_capacity(super::HEADER_LEN + raw.len() / 2 + 64);
        out.extend_from_slice(super::MAGIC);
        out.extend_from_slice(&[FLOAT_FORMAT_VERSION, FLOAT_CODEC, w, 0]);
        out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        let mut any = false;
        for k in (0..width).rev() {
            let plane = &self.planes[k * n..(k + 1) * n];
            let mode = code_plane(plane, &mut zstd, &mut self.lanes, &mut self.scratch);
            any |= mode != RAW;
            put_plane(
                &mut out,
                mode,
                if mode == RAW { plane } else { &self.scratch },
            );
        }
        out.extend_from_slice(&raw[n * width..]);
        any.then_some(out)
    }
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
    let decoded = &mut scratch.grouped;
    decoded.resize(n * width, 0);
    // Where each plane is: in the payload (stored raw) or in `decoded`.
    let mut at: [Option<std::ops::Range<usize>>; 4] = Default::default();
    for k in (0..width).rev() {
        let mode = r.byte()?;
        let len = usize::try_from(r.varint()?).map_err(|_| "plane length too large")?;
        let start = r.pos;
        let bytes = r.take(len)?;
        let dst = &mut decoded[k * n..(k + 1) * n];
        match mode {
            RAW if len == n => at[k] = Some(start..start + len),
            RAW => return Err(format!("raw plane {k} is {len} bytes, expected {n}")),
            ZSTD => {
                let d = zstd_context(&mut scratch.zstd)?;
                let got = d
                    .decompress_to_buffer(bytes, dst)
                    .map_err(|e| format!("plane {k}: zstd: {e}"))?;
                if got != n {
                    return Err(format!("zstd plane {k} is {got} bytes, expected {n}"));
                }
            }
            LANES => {
                lanes::decode(bytes, dst, &mut scratch.luts[0], &mut scratch.words)
                    .map_err(|e| format!("plane {k}: {e}"))?;
            }
            m => return Err(format!("plane {k} has unknown mode {m}")),
        }
    }
    let tail = &payload[r.pos..];
    if tail.len() != raw_len - n * width {
        return Err(format!(
            "tail is {} bytes, expected {}",
            tail.len(),
            raw_len - n * width
        ));
    }
    let plane = |k: usize| match &at[k] {
        Some(range) => &payload[range.clone()],
        None => &decoded[k * n..(k + 1) * n],
    };
    out.resize(raw_len, 0);
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
