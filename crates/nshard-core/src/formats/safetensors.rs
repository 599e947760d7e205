//! The safetensors header: an 8-byte little-endian length `N`, then `N` bytes of JSON mapping tensor
//! names to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data that follows
//! the header), plus an optional `__metadata__` map of strings.
//!
//! Files come from anywhere, so parsing is bounded: the header must be at most
//! [`MAX_HEADER_LEN`] bytes, hold at most [`MAX_TENSORS`] tensors, and every tensor's byte range must
//! lie inside the file, match its dtype and shape, and not overlap another.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

/// Largest header accepted (the reference implementation uses the same 100 MB cap).
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// Most tensors accepted in one file.
pub const MAX_TENSORS: usize = 1_000_000;
/// Most dimensions of one tensor.
pub const MAX_RANK: usize = 32;

use super::{Format, FormatKind, Source};
pub use super::{Layout, ParseError, Tensor};

/// The safetensors format.
pub struct Safetensors;

impl Format for Safetensors {
    fn kind(&self) -> FormatKind {
        FormatKind::Safetensors
    }

    /// No magic number: an 8-byte length, then a JSON object.
    fn detect(&self, head: &[u8]) -> bool {
        head.get(8) == Some(&b'{')
    }

    fn parse(&self, src: &mut dyn Source) -> Result<Layout, ParseError> {
        let size = src.size();
        parse(SourceReader { src, pos: 0 }, size)
    }
}

/// Sequential reads over a [`Source`].
struct SourceReader<'a> {
    src: &'a mut dyn Source,
    pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = (out.len() as u64).min(self.src.size().saturating_sub(self.pos)) as usize;
        self.src.read_at(self.pos, &mut out[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes per element of a dtype, if known.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Parses the header of a file of `file_size` bytes read from `r` (positioned at the start).
/// Reads only the header.
pub fn parse<R: Read>(mut r: R, file_size: u64) -> Result<Layout, ParseError> {
    let bad = |s: String| ParseError::Invalid(s);
    let mut len_buf = [0u8; 8];
    if file_size < 8 {
        return Err(bad("shorter than the 8-byte header length".into()));
    }
    r.read_exact(&mut len_buf)?;
    let n = u64::from_le_bytes(len_buf);
    if n > MAX_HEADER_LEN {
        return Err(bad(format!(
            "header claims {n} bytes, over the {MAX_HEADER_LEN}-byte limit"
        )));
    }
    if n < 2 || 8 + n > file_size {
        return Err(bad(format!(
            "header claims {n} bytes but the file has {file_size}"
        )));
    }
    let mut header = vec![0u8; n as usize];
    r.read_exact(&mut header)?;
    if header.first() != Some(&b'{') {
        return Err(bad("header is not a JSON object".into()));
    }
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    if map.len() > MAX_TENSORS + 1 {
        return Err(bad(format!("more than {MAX_TENSORS} tensors")));
    }
    let data_len = file_size - 8 - n;
    let header_len = 8 + n;
    let mut tensors = Vec::with_capacity(map.len());
    for (name, v) in map {
        if name == "__metadata__" {
            serde_json::from_value::<BTreeMap<String, String>>(v)
                .map_err(|e| bad(format!("__metadata__ must map strings to strings: {e}")))?;
            continue;
        }
        let t: RawTensor =
            serde_json::from_value(v).map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
        let [b, e] = t.data_offsets;
        if b > e || e > data_len {
            return Err(bad(format!(
                "tensor {name:?}: offsets {b}..{e} outside the {data_len} data bytes"
            )));
        }
        if t.shape.len() > MAX_RANK {
            return Err(bad(format!("tensor {name:?}: rank over {MAX_RANK}")));
        }
        let size = dtype_size(&t.dtype)
            .ok_or_else(|| bad(format!("tensor {name:?}: unknown dtype {:?}", t.dtype)))?;
        let elems = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| bad(format!("tensor {name:?}: shape overflows")))?;
        if elems != e - b {
            return Err(bad(format!(
                "tensor {name:?}: {} bytes by offsets but shape {:?} of {} needs {elems}",
                e - b,
                t.shape,
                t.dtype
            )));
        }
        tensors.push(Tensor {
            name,
            dtype: t.dtype,
            shape: t.shape,
            start: header_len + b,
            end: header_len + e,
        });
    }
    Layout {
        kind: FormatKind::Safetensors,
        header_len,
        tensors,
    }
    .checked(file_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.resize(v.len() + data_len, 0);
        v
    }

    #[test]
    fn parses_a_small_file() {
        let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
        let f = file(h, 12);
        let l = parse(&f[..], f.len() as u64).expect("valid");
        assert_eq!(l.header_len, 8 + h.len() as u64);
        assert_eq!(l.tensors[0].name, "a");
        assert_eq!(l.tensors[1].start, l.header_len + 4);
    }

    #[test]
    fn refuses_lying_headers() {
        let huge = {
            let mut v = (u64::MAX).to_le_bytes().to_vec();
            v.extend_from_slice(b"{}");
            v
        };
        assert!(parse(&huge[..], huge.len() as u64).is_err());
        for h in [
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
            r#"[1,2]"#,
        ] {
            let f = file(h, 8);
            assert!(parse(&f[..], f.len() as u64).is_err(), "{h}");
        }
    }
}
