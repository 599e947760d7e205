//! File formats NeuroShard understands: one [`Format`] per kind of model file, each in its own
//! file, and the one place that knows them all ([`FORMATS`], [`parse_any`]).
//!
//! A format detects its files by their first bytes, parses the header once into a [`Layout`]
//! (the tensors and the byte range each occupies), and from that layout [`plan`] cuts the file
//! tensor-aligned so that an unchanged tensor always deduplicates. Files come from anywhere: every
//! parser is bounded (header sizes, counts, depths) and checks each range against the file size
//! before it is used, so a hostile header never drives a cut or an allocation outside the file.
//!
//! Adding a format means adding a file here and a line to [`FORMATS`]; nothing else changes.

use std::fs::File;
use std::io;

pub(crate) mod gguf;
mod pickle;
pub(crate) mod plan;
pub(crate) mod pytorch;
pub(crate) mod safetensors;
mod zip;

/// Which format a file was parsed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FormatKind {
    /// Hugging Face safetensors.
    Safetensors,
    /// A PyTorch checkpoint written by `torch.save` (a zip archive, PyTorch ≥ 1.6).
    PytorchZip,
    /// A GGUF file (llama.cpp).
    Gguf,
}

impl FormatKind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Safetensors => "safetensors",
            FormatKind::PytorchZip => "PyTorch zip",
            FormatKind::Gguf => "GGUF",
        }
    }
}

impl std::fmt::Display for FormatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor (or tensor storage) of a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Its name.
    pub name: String,
    /// Its element type, in safetensors spelling where one exists (`BF16`, `F32`, …; GGUF's
    /// quantized types keep their own names, such as `Q4_K`).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<u64>,
    /// Absolute offset of its first byte in the file.
    pub start: u64,
    /// Absolute offset one past its last byte.
    pub end: u64,
}

/// The parsed layout of a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The format it was parsed as.
    pub kind: FormatKind,
    /// Bytes before the first tensor's data that belong to the header: they are cut on their
    /// own, so a header edit never touches a tensor's chunks.
    pub header_len: u64,
    /// Tensors sorted by `start`, not overlapping, inside the file.
    pub tensors: Vec<Tensor>,
}

/// What a byte of a model file holds, for messages such as diff's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Region<'a> {
    /// The header (metadata, tensor descriptions).
    Header,
    /// A tensor's data.
    Tensor(&'a Tensor),
    /// Bytes between or after tensors (padding, archive records, trailers).
    Other,
}

impl Layout {
    /// What the byte at `offset` holds.
    pub fn region_at(&self, offset: u64) -> Region<'_> {
        if offset < self.header_len {
            return Region::Header;
        }
        let i = self.tensors.partition_point(|t| t.end <= offset);
        match self.tensors.get(i) {
            Some(t) if t.start <= offset => Region::Tensor(t),
            _ => Region::Other,
        }
    }

    /// Sorts the tensors by offset and checks that they lie inside a file of `size` bytes and do
    /// not overlap: every parser ends with this.
    fn checked(mut self, size: u64) -> Result<Layout, ParseError> {
        self.tensors.sort_by_key(|t| (t.start, t.end));
        if self.header_len > size {
            return Err(ParseError::Invalid(format!(
                "header of {} bytes is longer than the {size}-byte file",
                self.header_len
            )));
        }
        for t in &self.tensors {
            if t.start > t.end || t.end > size || t.start < self.header_len {
                return Err(ParseError::Invalid(format!(
                    "tensor {:?}: bytes {}..{} outside the data of the {size}-byte file",
                    shown(&t.name),
                    t.start,
                    t.end
                )));
            }
        }
        for w in self.tensors.windows(2) {
            if w[1].start < w[0].end {
                return Err(ParseError::Invalid(format!(
                    "tensors {:?} and {:?} overlap",
                    shown(&w[0].name),
                    shown(&w[1].name)
                )));
            }
        }
        Ok(self)
    }
}

/// A name cut short for messages (a hostile header may hold a megabyte-long one).
fn shown(name: &str) -> String {
    name.chars().take(80).collect()
}

/// Why a file is not (usable as) a given format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Reading failed.
    #[error("reading the header: {0}")]
    Io(#[from] io::Error),
    /// The header is not valid.
    #[error("{0}")]
    Invalid(String),
}

impl ParseError {
    /// Whether this is a real read error rather than a malformed (or truncated) file.
    pub fn is_io(&self) -> bool {
        matches!(self, ParseError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof)
    }
}

/// Random access to the bytes of a file being parsed. Reads past the end fail with
/// `UnexpectedEof`.
pub trait Source {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Up to `max` bytes from `offset`, without copying where the source holds them already (a
    /// stored version returns the rest of the chunk it has loaded, which may be fewer); at least
    /// one byte when `max` > 0 and `offset` is inside the file.
    fn view(&mut self, offset: u64, max: usize) -> io::Result<&[u8]>;
}

impl Source for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
    fn view(&mut self, offset: u64, max: usize) -> io::Result<&[u8]> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let rest = self.get(start..).ok_or(io::ErrorKind::UnexpectedEof)?;
        if rest.is_empty() && max > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(&rest[..rest.len().min(max)])
    }
}

/// An open file of a known size, read with positioned reads (the file position is not used).
pub struct FileSource<'a> {
    file: &'a File,
    size: u64,
    /// What [`Source::view`] returned last.
    buf: Vec<u8>,
}

impl<'a> FileSource<'a> {
    /// `file`, which is `size` bytes long.
    pub fn new(file: &'a File, size: u64) -> Self {
        Self {
            file,
            size,
            buf: Vec::new(),
        }
    }
}

impl Source for FileSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        crate::fsutil::read_exact_at(self.file, buf, offset)
    }
    fn view(&mut self, offset: u64, max: usize) -> io::Result<&[u8]> {
        let n = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max)
            .min(VIEW_WINDOW);
        if n == 0 && max > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.resize(n, 0);
        crate::fsutil::read_exact_at(self.file, &mut self.buf, offset)?;
        Ok(&self.buf)
    }
}

/// The most [`FileSource::view`] reads at a time.
const VIEW_WINDOW: usize = 4 << 20;

/// Reads `len` bytes at `offset` into a new buffer, after checking that they are inside the file
/// (so the allocation is never sized by a header alone).
pub(crate) fn read_vec(src: &mut dyn Source, offset: u64, len: u64) -> Result<Vec<u8>, ParseError> {
    if offset.checked_add(len).is_none_or(|end| end > src.size()) {
        return Err(ParseError::Invalid(format!(
            "{len} bytes at offset {offset} run past the end of the {}-byte file",
            src.size()
        )));
    }
    let mut v = vec![0u8; len as usize];
    src.read_at(offset, &mut v)?;
    Ok(v)
}

/// Bytes [`Format::detect`] is given (fewer for a shorter file).
pub const HEAD_LEN: usize = 16;

/// A file format.
pub trait Format: Sync {
    /// Which format this is.
    fn kind(&self) -> FormatKind;
    /// Whether a file starting with `head` (its first [`HEAD_LEN`] bytes, or the whole file if
    /// shorter) looks like this format. Cheap; [`Format::parse`] decides.
    fn detect(&self, head: &[u8]) -> bool;
    /// Parses the header into a layout whose tensors are checked to lie inside the file.
    fn parse(&self, src: &mut dyn Source) -> Result<Layout, ParseError>;
}

/// Every format, in detection order.
pub const FORMATS: &[&dyn Format] = &[&safetensors::Safetensors, &pytorch::PytorchZip, &gguf::Gguf];

/// The format whose magic `head` carries, if any.
pub fn detect(head: &[u8]) -> Option<&'static dyn Format> {
    FORMATS.iter().copied().find(|f| f.detect(head))
}

/// What [`parse_any`] made of a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum Parsed {
    /// A format recognised the file and its header is valid.
    Layout(Layout),
    /// No format recognises the file.
    Unrecognized,
    /// A format recognised the file but its header is not valid (or the file is truncated).
    Invalid(FormatKind, String),
}

/// Detects and parses a file. Only a failing read is an error: a malformed or truncated file is
/// [`Parsed::Invalid`].
pub fn parse_any(src: &mut dyn Source) -> io::Result<Parsed> {
    let mut head = [0u8; HEAD_LEN];
    let n = src.size().min(HEAD_LEN as u64) as usize;
    src.read_at(0, &mut head[..n])?;
    let Some(format) = detect(&head[..n]) else {
        return Ok(Parsed::Unrecognized);
    };
    match format.parse(src) {
        Ok(l) => Ok(Parsed::Layout(l)),
        Err(ParseError::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        Err(e) => Ok(Parsed::Invalid(format.kind(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, start: u64, end: u64) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: "U8".into(),
            shape: vec![end - start],
            start,
            end,
        }
    }

    #[test]
    fn regions_and_checks() {
        let l = Layout {
            kind: FormatKind::Gguf,
            header_len: 10,
            tensors: vec![t("b", 20, 30), t("a", 10, 15)],
        }
        .checked(40)
        .expect("valid");
        assert_eq!(l.tensors[0].name, "a");
        assert_eq!(l.region_at(3), Region::Header);
        assert_eq!(l.region_at(12), Region::Tensor(&l.tensors[0]));
        assert_eq!(l.region_at(17), Region::Other);
        assert_eq!(l.region_at(29), Region::Tensor(&l.tensors[1]));
        assert_eq!(l.region_at(35), Region::Other);
        for (tensors, size) in [
            (vec![t("a", 10, 50)], 40),
            (vec![t("a", 10, 20), t("b", 15, 25)], 40),
            (vec![t("a", 5, 12)], 40),
        ] {
            let l = Layout {
                kind: FormatKind::Gguf,
                header_len: 10,
                tensors,
            };
            assert!(l.checked(size).is_err());
        }
    }

    #[test]
    fn slices_refuse_reads_past_the_end() {
        let data = [1u8, 2, 3];
        let mut s: &[u8] = &data;
        let mut b = [0u8; 2];
        s.read_at(1, &mut b).expect("inside");
        assert_eq!(b, [2, 3]);
        assert!(s.read_at(2, &mut b).is_err());
        assert!(s.read_at(u64::MAX, &mut b).is_err());
        assert!(read_vec(&mut s, 1, u64::MAX).is_err());
    }
}
