//! The safetensors header: an 8-byte little-endian length `N`, then `N` bytes of JSON mapping tensor
//! names to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data that follows
//! the header), plus an optional `__metadata__` map of strings.
//!
//! Files come from anywhere, so parsing is bounded: the header must be at most
//! [`MAX_HEADER_LEN`] bytes, hold at most [`MAX_TENSORS`] tensors, and every tensor's byte range must
//! lie inside the file, match its dtype and shape, and not overlap another.

use std::fmt;
use std::io::Read;

use serde::de::{self, Deserializer, Error as _, MapAccess, Visitor};
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

/// The header's top level, visited entry by entry: each tensor checked and kept as it comes (at
/// most [`MAX_TENSORS`]); `__metadata__` checked to map strings to strings, and dropped.
struct TopLevel {
    data_len: u64,
    header_len: u64,
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Vec<Tensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping tensor names to tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Vec<Tensor>, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = m.next_key::<String>()? {
            if name == "__metadata__" {
                m.next_value::<Metadata>()?;
                continue;
            }
            if out.len() >= MAX_TENSORS {
                return Err(A::Error::custom(format!("more than {MAX_TENSORS} tensors")));
            }
            let t: RawTensor = m
                .next_value()
                .map_err(|e| A::Error::custom(format!("tensor {name:?}: {e}")))?;
            out.push(self.tensor(name, t).map_err(A::Error::custom)?);
        }
        Ok(out)
    }
}

impl TopLevel {
    /// Checks one tensor's offsets, rank, dtype and size against each other and the file.
    fn tensor(&self, name: String, t: RawTensor) -> Result<Tensor, String> {
        let [b, e] = t.data_offsets;
        if b > e || e > self.data_len {
            return Err(format!(
                "tensor {name:?}: offsets {b}..{e} outside the {} data bytes",
                self.data_len
            ));
        }
        if t.shape.len() > MAX_RANK {
            return Err(format!("tensor {name:?}: rank over {MAX_RANK}"));
        }
        let size = dtype_size(&t.dtype)
            .ok_or_else(|| format!("tensor {name:?}: unknown dtype {:?}", t.dtype))?;
        let elems = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| format!("tensor {name:?}: shape overflows"))?;
        if elems != e - b {
            return Err(format!(
                "tensor {name:?}: {} bytes by offsets but shape {:?} of {} needs {elems}",
                e - b,
                t.shape,
                t.dtype
            ));
        }
        Ok(Tensor {
            name,
            dtype: t.dtype,
            shape: t.shape,
            start: self.header_len + b,
            end: self.header_len + e,
        })
    }
}

/// `__metadata__`: a map of strings to strings, checked and not kept.
struct Metadata;

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("__metadata__ mapping strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Metadata, A::Error> {
                while m.next_entry::<StrOnly, StrOnly>()?.is_some() {}
                Ok(Metadata)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string, checked and dropped.
struct StrOnly;

impl<'de> Deserialize<'de> for StrOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrOnly, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrOnly;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("__metadata__ must map strings to strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<StrOnly, E> {
                Ok(StrOnly)
            }
        }
        d.deserialize_str(V)
    }
}

/// A serde_json data error's message without its " at line L column C" suffix.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
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
    let data_len = file_size - 8 - n;
    let header_len = 8 + n;
    // Read straight into tensors, without a JSON tree (a tree of a 100 MB header of tiny values
    // took 16 times its size): memory is the header plus the tensor list.
    let mut de = serde_json::Deserializer::from_slice(&header);
    let mut tensors = de
        .deserialize_map(TopLevel {
            data_len,
            header_len,
        })
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => bad(strip_position(&e)),
            _ => bad(format!("header is not valid JSON: {e}")),
        })?;
    de.end()
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    drop(header);
    // The order a map into a sorted tree gave before: by name.
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(bad(format!("tensor {:?} is named twice", w[0].name)));
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
