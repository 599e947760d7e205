//! GGUF (llama.cpp): the magic `GGUF`, a version (2 or 3), the tensor and metadata counts, the
//! metadata key/value pairs, one description per tensor (name, dimensions, ggml type, offset
//! relative to the data section), padding to `general.alignment` (default 32), then the data.
//!
//! Only what the layout needs is kept: the alignment and the tensor descriptions. Every length
//! and count is checked against the bytes left in the file before it is used, metadata values are
//! skipped without being allocated, and nested arrays are bounded in depth.

use super::{Format, FormatKind, Layout, ParseError, Source, Tensor};

/// Most tensors accepted in one file.
pub const MAX_TENSORS: u64 = 1_000_000;
/// Longest tensor name or metadata key accepted, in bytes.
pub const MAX_NAME: u64 = 64 * 1024;
/// Most dimensions of one tensor.
pub const MAX_DIMS: u32 = 8;
/// Deepest nesting of metadata arrays.
const MAX_ARRAY_DEPTH: u32 = 4;

/// The GGUF format.
pub struct Gguf;

impl Format for Gguf {
    fn kind(&self) -> FormatKind {
        FormatKind::Gguf
    }

    fn detect(&self, head: &[u8]) -> bool {
        head.starts_with(b"GGUF")
    }

    fn parse(&self, src: &mut dyn Source) -> Result<Layout, ParseError> {
        let size = src.size();
        let mut c = Cursor::new(src);
        if c.bytes::<4>()? != *b"GGUF" {
            return Err(bad("no GGUF magic"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!(
                "version {version} is not supported (2 and 3 are)"
            )));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        // Each tensor description takes at least 24 bytes: a count larger than the file can hold
        // is refused before anything is sized from it.
        if n_tensors > MAX_TENSORS || n_tensors > c.left() / 24 {
            return Err(bad(format!(
                "claims {n_tensors} tensors, more than the file can hold or the limit of \
                 {MAX_TENSORS}"
            )));
        }
        let mut alignment = 32u64;
        for _ in 0..n_kv {
            let key = c.string(MAX_NAME)?;
            let ty = c.u32()?;
            if key == "general.alignment" {
                if ty != 4 {
                    return Err(bad("general.alignment is not a uint32"));
                }
                alignment = u64::from(c.u32()?);
                if !alignment.is_power_of_two() || alignment > 1 << 20 {
                    return Err(bad(format!(
                        "general.alignment {alignment} is not a power of two up to 1 MiB"
                    )));
                }
            } else {
                c.skip_value(ty, 0)?;
            }
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string(MAX_NAME)?;
            let n_dims = c.u32()?;
            if n_dims > MAX_DIMS {
                return Err(bad(format!(
                    "tensor {:?} has {n_dims} dimensions, over {MAX_DIMS}",
                    super::shown(&name)
                )));
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                shape.push(c.u64()?);
            }
            let ty = c.u32()?;
            let offset = c.u64()?;
            infos.push((name, shape, ty, offset));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        if data_start > size {
            return Err(bad(format!(
                "the data section would start at {data_start}, past the end of the {size}-byte file"
            )));
        }
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, shape, ty, offset) in infos {
            let (dtype, block, type_size) = ggml_type(ty).ok_or_else(|| {
                bad(format!(
                    "tensor {:?} has unknown ggml type {ty}",
                    super::shown(&name)
                ))
            })?;
            let elems = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let bytes = elems
                .filter(|e| e.is_multiple_of(block))
                .and_then(|e| (e / block).checked_mul(type_size))
                .ok_or_else(|| {
                    bad(format!(
                        "tensor {:?}: shape {shape:?} does not fit type {dtype}",
                        super::shown(&name)
                    ))
                })?;
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(bytes));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(bad(format!(
                    "tensor {:?}: offset {offset} overflows",
                    super::shown(&name)
                )));
            };
            tensors.push(Tensor {
                name,
                dtype: dtype.to_string(),
                shape,
                start,
                end,
            });
        }
        Layout {
            kind: FormatKind::Gguf,
            header_len: data_start,
            tensors,
        }
        .checked(size)
    }
}

fn bad(why: impl Into<String>) -> ParseError {
    ParseError::Invalid(why.into())
}

/// A ggml type's name (safetensors spelling for plain types), block size in elements, and bytes
/// per block (from ggml.h / ggml.c's type traits).
pub fn ggml_type(ty: u32) -> Option<(&'static str, u64, u64)> {
    Some(match ty {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

/// A ggml type's block size in elements and bytes per block, by its name in [`ggml_type`].
pub fn ggml_type_by_name(name: &str) -> Option<(u64, u64)> {
    (0..64).find_map(|ty| {
        ggml_type(ty)
            .filter(|(n, _, _)| *n == name)
            .map(|(_, e, b)| (e, b))
    })
}

/// Sequential little-endian reads over a source through a small window.
struct Cursor<'a> {
    src: &'a mut dyn Source,
    pos: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

const WINDOW: u64 = 64 * 1024;

impl<'a> Cursor<'a> {
    fn new(src: &'a mut dyn Source) -> Self {
        Self {
            src,
            pos: 0,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    fn left(&self) -> u64 {
        self.src.size().saturating_sub(self.pos)
    }

    fn skip(&mut self, n: u64) -> Result<(), ParseError> {
        if n > self.left() {
            return Err(bad(format!(
                "{n} bytes at offset {} run past the end of the file (truncated?)",
                self.pos
            )));
        }
        self.pos += n;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let n = N as u64;
        self.skip(n)?;
        let at = self.pos - n;
        if at < self.buf_at || at + n > self.buf_at + self.buf.len() as u64 {
            let len = WINDOW.max(n).min(self.src.size() - at);
            self.buf.resize(len as usize, 0);
            self.src.read_at(at, &mut self.buf)?;
            self.buf_at = at;
        }
        let i = (at - self.buf_at) as usize;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[i..i + N]);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, max: u64) -> Result<String, ParseError> {
        let len = self.u64()?;
        if len > max {
            return Err(bad(format!(
                "a name of {len} bytes at offset {}, over the {max}-byte limit",
                self.pos
            )));
        }
        let at = self.pos;
        self.skip(len)?;
        let v = super::read_vec(self.src, at, len)?;
        String::from_utf8(v).map_err(|_| bad(format!("a name at offset {at} is not UTF-8")))
    }

    /// Skips one metadata value of type `ty`.
    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<(), ParseError> {
        if let Some(n) = fixed_size(ty) {
            return self.skip(n);
        }
        match ty {
            8 => {
                let len = self.u64()?;
                self.skip(len)
            }
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(bad("metadata arrays nested too deep"));
                }
                let ety = self.u32()?;
                let count = self.u64()?;
                match fixed_size(ety) {
                    Some(n) => {
                        let total = count
                            .checked_mul(n)
                            .ok_or_else(|| bad("metadata array size overflows"))?;
                        self.skip(total)
                    }
                    None => {
                        // Strings and arrays take at least 8 bytes each.
                        if count > self.left() / 8 {
                            return Err(bad(format!(
                                "metadata array of {count} entries is longer than the file"
                            )));
                        }
                        for _ in 0..count {
                            self.skip_value(ety, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            _ => Err(bad(format!("unknown metadata value type {ty}"))),
        }
    }
}

/// Size of a fixed-size metadata value type.
fn fixed_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }

    /// A GGUF v3 file following the specification: metadata (a string, a string array, the
    /// alignment), then tensors of (name, dims, ggml type), data aligned, filled with `fill`.
    pub(crate) fn gguf(tensors: &[(&str, &[u64], u32)], alignment: u32, fill: u8) -> Vec<u8> {
        let mut f = b"GGUF".to_vec();
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        f.extend_from_slice(&3u64.to_le_bytes());
        s(&mut f, "general.name");
        f.extend_from_slice(&8u32.to_le_bytes());
        s(&mut f, "tiny");
        s(&mut f, "tokenizer.tokens");
        f.extend_from_slice(&9u32.to_le_bytes());
        f.extend_from_slice(&8u32.to_le_bytes());
        f.extend_from_slice(&2u64.to_le_bytes());
        s(&mut f, "a");
        s(&mut f, "bc");
        s(&mut f, "general.alignment");
        f.extend_from_slice(&4u32.to_le_bytes());
        f.extend_from_slice(&alignment.to_le_bytes());
        let a = u64::from(alignment);
        let mut off = 0u64;
        let mut sizes = Vec::new();
        for (name, dims, ty) in tensors {
            s(&mut f, name);
            f.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                f.extend_from_slice(&d.to_le_bytes());
            }
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&off.to_le_bytes());
            let (_, block, ts) = ggml_type(*ty).expect("type");
            let n = dims.iter().product::<u64>() / block * ts;
            sizes.push((off, n));
            off = (off + n).div_ceil(a) * a;
        }
        let start = (f.len() as u64).div_ceil(a) * a;
        f.resize(start as usize, 0);
        for (o, n) in sizes {
            f.resize((start + o) as usize, 0);
            f.extend(std::iter::repeat_n(fill, n as usize));
        }
        f
    }

    #[test]
    fn parses_a_spec_file() {
        let f = gguf(
            &[
                ("tok_embd.weight", &[64, 8], 1),
                ("blk.0.attn_q.weight", &[256, 4], 12),
                ("output_norm.weight", &[64], 0),
            ],
            64,
            7,
        );
        let l = Gguf.parse(&mut &f[..]).expect("valid");
        assert_eq!(l.kind, FormatKind::Gguf);
        assert_eq!(l.header_len % 64, 0);
        let got: Vec<(&str, &str, u64, u64)> = l
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype.as_str(), t.start, t.end - t.start))
            .collect();
        let h = l.header_len;
        assert_eq!(
            got,
            vec![
                ("tok_embd.weight", "F16", h, 1024),
                ("blk.0.attn_q.weight", "Q4_K", h + 1024, 576),
                ("output_norm.weight", "F32", h + 1600, 256),
            ]
        );
        assert_eq!(h + 1856, f.len() as u64);
    }

    #[test]
    fn refuses_truncated_and_lying_files() {
        let f = gguf(&[("w", &[64, 8], 1), ("v", &[64], 0)], 32, 1);
        // Truncated anywhere: refused, never a panic.
        for cut in [3, 8, 20, 40, 90, f.len() - 1] {
            assert!(Gguf.parse(&mut &f[..cut]).is_err(), "cut at {cut}");
        }
        // A tensor count of 2^60: refused before anything is allocated.
        let mut lie = f.clone();
        lie[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err());
        // A metadata count larger than the file: runs out of bytes.
        let mut lie = f.clone();
        lie[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err());
        // A string length of 2^63.
        let mut lie = f.clone();
        lie[24..32].copy_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err());
        // A tensor whose offset points past the end, overlapping tensors, an unknown type.
        let name_at = f
            .windows(9)
            .position(|w| w == b"\x01\0\0\0\0\0\0\0v")
            .expect("name")
            + 9;
        let mut lie = f.clone();
        // After "v": n_dims (4), dim (8), type (4), offset (8).
        lie[name_at + 16..name_at + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err(), "offset past the end");
        let mut lie = f.clone();
        lie[name_at + 16..name_at + 24].copy_from_slice(&0u64.to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err(), "overlap");
        let mut lie = f.clone();
        lie[name_at + 12..name_at + 16].copy_from_slice(&99u32.to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err(), "unknown type");
        let mut lie = f;
        lie[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(Gguf.parse(&mut &lie[..]).is_err(), "version 1");
    }
}
