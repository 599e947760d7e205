//! Chunking: where a file is cut into objects.
//!
//! [`Cutter`] is sans-IO: given the bytes from the start of the next chunk, it says where that chunk
//! ends. [`ChunkReader`] drives a cutter over any `Read`, one *segment* at a time: a segment is a byte
//! range cut independently of its neighbours (the whole file for plain files; the header and each
//! tensor group of a safetensors file), so no chunk ever straddles a segment boundary.
//!
//! Cut points are part of the on-disk format: the parameters are recorded in every manifest, and
//! golden tests pin the boundaries of seeded data so that a library upgrade cannot silently change
//! them.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use fastcdc::v2020;
use serde::{Deserialize, Serialize};

use crate::codec::DataHint;

/// Default content-defined chunking: 1 MiB min, 4 MiB average, 16 MiB max (FastCDC 2020,
/// normalization level 1). 4 MiB average is what the seed promised ("4 MB blocks") and the largest
/// average FastCDC supports; the 1–16 MiB window keeps objects large enough for cheap transfers and
/// small enough that a changed region re-stores little.
pub const DEFAULT_MIN: u32 = 1024 * 1024;
/// Default average chunk size.
pub const DEFAULT_AVG: u32 = 4 * 1024 * 1024;
/// Default maximum chunk size.
pub const DEFAULT_MAX: u32 = 16 * 1024 * 1024;
/// Default block size of fixed chunking.
pub const DEFAULT_FIXED: u32 = 4 * 1024 * 1024;

/// Where segment boundaries go before the chunker runs (see [`crate::format::plan_cuts`]).
///
/// In `config.toml` this says what to do for new commits; in a manifest it says what was done to
/// that file (`tensor-aligned` only when the file really was cut tensor-aligned). Manifests list every
/// chunk's offset, so reading never re-derives cuts: the field is a description, absent (`none`)
/// in manifests and configs written before it existed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LayoutMode {
    /// The whole file is one segment.
    #[default]
    None,
    /// Model files (safetensors, PyTorch zip, GGUF): the header is its own segment and each
    /// tensor's bytes (small neighbours grouped) another, with the tensor's dtype as the codec
    /// hint; every segment is cut by the algorithm. Other files: as `none`.
    TensorAligned,
    /// As `tensor-aligned`, but tensor segments are cut into fixed blocks (the average size, or
    /// the fixed size; a tail shorter than the minimum object joins the block before it) instead
    /// of by content. A tensor's bytes never shift inside it when a model is fine-tuned, so
    /// content-defined cuts buy nothing there, and fixed blocks spare the rolling hash over every
    /// byte and let the reader fill each chunk straight from the file. The header and bytes no
    /// tensor claims are still cut by the algorithm. The default for new repositories.
    TensorBlocks,
}

impl LayoutMode {
    /// Whether this is [`LayoutMode::None`] (kept out of serialized manifests and configs, so
    /// that they stay byte-identical to those written before layouts existed).
    pub fn is_none(&self) -> bool {
        *self == LayoutMode::None
    }

    /// Whether model files get a segment per tensor (`tensor-aligned` or `tensor-blocks`).
    pub fn is_tensor_layout(&self) -> bool {
        matches!(self, LayoutMode::TensorAligned | LayoutMode::TensorBlocks)
    }
}

/// Chunking parameters, as stored in `config.toml` and in every manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ChunkParams {
    /// FastCDC (2020 variant, gear table of the `fastcdc` crate, normalization level 1).
    #[serde(rename = "fastcdc-2020")]
    FastCdc {
        /// Minimum chunk size in bytes.
        min_size: u32,
        /// Average chunk size in bytes (a power of two).
        avg_size: u32,
        /// Maximum chunk size in bytes.
        max_size: u32,
        /// Segment layout (absent: `none`).
        #[serde(default, skip_serializing_if = "LayoutMode::is_none")]
        layout: LayoutMode,
    },
    /// Fixed-size blocks.
    Fixed {
        /// Block size in bytes.
        size: u32,
        /// Segment layout (absent: `none`).
        #[serde(default, skip_serializing_if = "LayoutMode::is_none")]
        layout: LayoutMode,
    },
}

impl Default for ChunkParams {
    /// The defaults for new repositories: FastCDC 1/4/16 MiB, tensor blocks of 4 MiB.
    fn default() -> Self {
        ChunkParams::FastCdc {
            min_size: DEFAULT_MIN,
            avg_size: DEFAULT_AVG,
            max_size: DEFAULT_MAX,
            layout: LayoutMode::TensorBlocks,
        }
    }
}

impl ChunkParams {
    /// Checks the parameters against what the chunker supports. Returns a description of the
    /// problem.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            ChunkParams::FastCdc {
                min_size,
                avg_size,
                max_size,
                ..
            } => {
                if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min_size) {
                    return Err(format!(
                        "min_size {min_size} must be in {}..={}",
                        v2020::MINIMUM_MIN,
                        v2020::MINIMUM_MAX
                    ));
                }
                if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg_size)
                    || !avg_size.is_power_of_two()
                {
                    return Err(format!(
                        "avg_size {avg_size} must be a power of two in {}..={}",
                        v2020::AVERAGE_MIN,
                        v2020::AVERAGE_MAX
                    ));
                }
                if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max_size) {
                    return Err(format!(
                        "max_size {max_size} must be in {}..={}",
                        v2020::MAXIMUM_MIN,
                        v2020::MAXIMUM_MAX
                    ));
                }
                if !(min_size <= avg_size && avg_size <= max_size) {
                    return Err("need min_size <= avg_size <= max_size".into());
                }
                Ok(())
            }
            ChunkParams::Fixed { size, .. } => {
                if (4096..=v2020::MAXIMUM_MAX).contains(&size) {
                    Ok(())
                } else {
                    Err(format!(
                        "fixed size {size} must be in 4096..={}",
                        v2020::MAXIMUM_MAX
                    ))
                }
            }
        }
    }

    /// The largest chunk these parameters produce.
    pub fn max_chunk(&self) -> u32 {
        match *self {
            ChunkParams::FastCdc { max_size, .. } => max_size,
            ChunkParams::Fixed { size, .. } => size,
        }
    }

    /// The block size of segments cut into fixed blocks: the average size, or the fixed size.
    pub fn block_size(&self) -> u32 {
        match *self {
            ChunkParams::FastCdc { avg_size, .. } => avg_size,
            ChunkParams::Fixed { size, .. } => size,
        }
    }

    /// The smallest object worth making on its own: CDC's minimum chunk, a quarter of a fixed
    /// block. Tensor-aligned layouts group small tensors up to this size.
    pub fn min_object(&self) -> u32 {
        match *self {
            ChunkParams::FastCdc { min_size, .. } => min_size,
            ChunkParams::Fixed { size, .. } => size / 4,
        }
    }

    /// The segment layout.
    pub fn layout(&self) -> LayoutMode {
        match *self {
            ChunkParams::FastCdc { layout, .. } | ChunkParams::Fixed { layout, .. } => layout,
        }
    }

    /// The same parameters with another layout.
    pub fn with_layout(mut self, mode: LayoutMode) -> Self {
        match &mut self {
            ChunkParams::FastCdc { layout, .. } | ChunkParams::Fixed { layout, .. } => {
                *layout = mode
            }
        }
        self
    }
}

/// The sans-IO cut-point finder for one set of parameters.
#[derive(Clone, Debug)]
pub struct Cutter {
    params: ChunkParams,
    masks: (u64, u64),
}

impl Cutter {
    /// A cutter for `params`, which must have passed [`ChunkParams::validate`].
    pub fn new(params: ChunkParams) -> Self {
        let masks = match params {
            ChunkParams::FastCdc { avg_size, .. } => {
                let bits = v2020::logarithm2(avg_size);
                // Normalization level 1, as `v2020::FastCDC::new` uses.
                (
                    v2020::MASKS[(bits + 1) as usize],
                    v2020::MASKS[(bits - 1) as usize],
                )
            }
            ChunkParams::Fixed { .. } => (0, 0),
        };
        Self { params, masks }
    }

    /// The largest chunk this cutter returns.
    pub fn max_chunk(&self) -> usize {
        self.params.max_chunk() as usize
    }

    /// Given `data` starting at a chunk boundary, returns the length of the next chunk, or `None`
    /// when more data is needed to decide. `end` says that `data` runs to the end of its segment.
    pub fn next_cut(&self, data: &[u8], end: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        let max = self.max_chunk();
        if data.len() < max && !end {
            return None;
        }
        let window = &data[..data.len().min(max)];
        Some(match self.params {
            ChunkParams::FastCdc {
                min_size, avg_size, ..
            } => {
                let (mask_s, mask_l) = self.masks;
                let (_, n) = v2020::cut(
                    window,
                    min_size as usize,
                    avg_size as usize,
                    max,
                    mask_s,
                    mask_l,
                    mask_s << 1,
                    mask_l << 1,
                );
                n
            }
            ChunkParams::Fixed { .. } => window.len(),
        })
    }

    /// The length of the next chunk of a segment cut into fixed blocks (see
    /// [`LayoutMode::TensorBlocks`]) with `left` bytes left: a block, or all that is left when it
    /// is at most a block, or when what a block would leave is shorter than the minimum object
    /// and the whole fits in a maximum-size chunk.
    pub fn block_cut(&self, left: u64) -> usize {
        let block = u64::from(self.params.block_size());
        let min = u64::from(self.params.min_object());
        let max = u64::from(self.params.max_chunk());
        let n = if left <= block || (left - block < min && left <= max) {
            left
        } else {
            block
        };
        n as usize
    }

    /// Cuts a whole in-memory segment; returns chunk lengths.
    pub fn cut_all(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(n) = self.next_cut(data, true) {
            out.push(n);
            data = &data[n..];
        }
        out
    }
}

/// A byte range of a file that is chunked on its own, with what is known about its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Length in bytes.
    pub len: u64,
    /// What the codec should assume about the bytes.
    pub hint: DataHint,
    /// Cut into fixed blocks ([`Cutter::block_cut`]) instead of by the algorithm.
    pub blocks: bool,
}

impl Segment {
    /// A segment cut by the algorithm.
    pub fn new(len: u64, hint: DataHint) -> Self {
        Self {
            len,
            hint,
            blocks: false,
        }
    }
}

/// One chunk read from a file. Its buffer goes back to the reader that made it when it is
/// dropped, for a later chunk.
#[derive(Debug)]
pub struct RawChunk {
    /// Offset of the chunk in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Codec hint from the segment.
    pub hint: DataHint,
    recycler: Recycler,
}

impl Drop for RawChunk {
    fn drop(&mut self) {
        self.recycler.put(std::mem::take(&mut self.data));
    }
}

/// Buffers of dropped chunks, for the reader to fill again. A fresh allocation of a few MiB per
/// chunk is mapped, page-faulted in and handed back to the OS every time (about a tenth of a
/// commit's CPU in `perf`); a reused one is not. Holds at most [`RECYCLED`] buffers, so memory
/// stays bounded by the chunks in flight.
#[derive(Clone, Debug, Default)]
struct Recycler(Arc<Mutex<Vec<Vec<u8>>>>);

/// Most buffers kept for reuse.
const RECYCLED: usize = 8;

impl Recycler {
    fn put(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        if let Ok(mut pool) = self.0.lock() {
            if pool.len() < RECYCLED {
                pool.push(buf);
            }
        }
    }

    /// A buffer of exactly `n` bytes with unspecified contents (old bytes are not cleared: the
    /// caller overwrites them all).
    /// A buffer too small to hold `n` bytes is dropped rather than grown: growing copies its
    /// old bytes into new pages. A fresh buffer is allocated zeroed: where the allocator maps
    /// fresh pages for it (large buffers), the kernel's zero pages are faulted in only as the
    /// reader fills them, with no extra pass to clear them.
    fn take(&self, n: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut p| p.pop());
        match reused {
            Some(mut buf) if buf.capacity() >= n => {
                buf.resize(n, 0);
                buf
            }
            _ => vec![0; n],
        }
    }
}

const READ_BLOCK: usize = 8 * 1024 * 1024;

/// Streams chunks out of a reader, segment by segment, with memory bounded by the read block plus
/// the maximum chunk size.
pub struct ChunkReader<R> {
    reader: R,
    cutter: Cutter,
    segments: Vec<Segment>,
    seg_idx: usize,
    seg_pos: u64,
    /// Read buffer, allocated (and zeroed) once: `buf[pos..filled]` holds unconsumed bytes.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    offset: u64,
    recycler: Recycler,
}

impl<R: Read> ChunkReader<R> {
    /// Chunks `reader`. `segments` partition the file; bytes past the last segment (or all bytes,
    /// when `segments` is empty) form one final segment with no hint.
    pub fn new(reader: R, cutter: Cutter, segments: Vec<Segment>) -> Self {
        let mut segments: Vec<Segment> = segments.into_iter().filter(|s| s.len > 0).collect();
        segments.push(Segment::new(u64::MAX, DataHint::Unknown));
        Self {
            reader,
            cutter,
            segments,
            seg_idx: 0,
            seg_pos: 0,
            buf: Vec::new(),
            recycler: Recycler::default(),
            pos: 0,
            filled: 0,
            eof: false,
            offset: 0,
        }
    }

    /// Total bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<RawChunk>> {
        loop {
            let seg = self.segments[self.seg_idx];
            if seg.blocks {
                return self.next_block(seg);
            }
            let avail = self.filled - self.pos;
            let seg_left = seg.len - self.seg_pos;
            let seg_complete = seg_left <= avail as u64;
            let window = if seg_complete {
                seg_left as usize
            } else {
                avail
            };
            if let Some(n) = self.cutter.next_cut(
                &self.buf[self.pos..self.pos + window],
                seg_complete || self.eof,
            ) {
                let mut data = self.recycler.take(n);
                data.copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(Some(self.emit(data, seg.hint)));
            }
            if self.eof {
                return Ok(None);
            }
            // Need more bytes: move the unconsumed tail (shorter than a maximum chunk, or the cutter
            // would have cut) to the front and read another block behind it.
            if self.buf.is_empty() {
                self.buf = vec![0; READ_BLOCK + self.cutter.max_chunk()];
            }
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
            // Read no further than the segments cut here need: bytes of a fixed-block segment
            // after them are read straight into their chunks' buffers, so reading them here
            // would copy them (and fault in pages for them) twice.
            let want = (self.filled as u64).saturating_add(self.cut_bytes_ahead());
            let end = usize::try_from(want).map_or(self.buf.len(), |w| w.min(self.buf.len()));
            let n = loop {
                match self.reader.read(&mut self.buf[self.filled..end]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.filled += n;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// The bytes from the reader's position to the end of the run of segments cut by the
    /// algorithm that starts at the current one (`u64::MAX` when it runs to the end of the file).
    fn cut_bytes_ahead(&self) -> u64 {
        let mut ahead = 0u64;
        let mut pos = self.seg_pos + (self.filled - self.pos) as u64;
        for seg in self.segments[self.seg_idx..]
            .iter()
            .take_while(|s| !s.blocks)
        {
            ahead = ahead.saturating_add(seg.len.saturating_sub(pos));
            pos = 0;
        }
        ahead
    }

    /// The next fixed block of `seg` (the current segment): the bytes already buffered, the rest
    /// read straight into the chunk's own buffer (no copy through the read buffer). A file that
    /// ends early gives a short chunk, then the end.
    fn next_block(&mut self, seg: Segment) -> io::Result<Option<RawChunk>> {
        let n = self.cutter.block_cut(seg.len - self.seg_pos);
        let mut data = self.recycler.take(n);
        let have = (self.filled - self.pos).min(n);
        data[..have].copy_from_slice(&self.buf[self.pos..self.pos + have]);
        self.pos += have;
        let mut got = have;
        while got < n && !self.eof {
            match self.reader.read(&mut data[got..]) {
                Ok(0) => self.eof = true,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        data.truncate(got);
        Ok(Some(self.emit(data, seg.hint)))
    }

    /// Hands out `data` as the next chunk of the current segment and moves past it.
    fn emit(&mut self, data: Vec<u8>, hint: DataHint) -> RawChunk {
        let n = data.len() as u64;
        let chunk = RawChunk {
            offset: self.offset,
            data,
            hint,
            recycler: self.recycler.clone(),
        };
        self.offset += n;
        self.seg_pos += n;
        if self.seg_pos == self.segments[self.seg_idx].len {
            self.seg_idx += 1;
            self.seg_pos = 0;
        }
        chunk
    }
}

#[cfg(test)]
pub(crate) mod tests;
