//! The tensor table of a safetensors file: read the header (only the header), then hash every
//! tensor's bytes from the chunks that already flow through commit's (or diff's) pipeline, so that
//! recording tensors never costs a second read of the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::formats::safetensors::{self, Layout, Tensor};
use crate::id::Hasher;
use crate::manifest::{validate_tensors, ChunkRef, Manifest, TensorEntry};
use crate::store::LocalStore;

/// Parses the safetensors header of an open file of `size` bytes, then rewinds it to the start.
/// `Err` says why the file is not (usable as) safetensors; an I/O error while rewinding is the
/// only hard error.
pub(crate) fn read_layout(file: &File, size: u64) -> std::io::Result<Result<Layout, String>> {
    let mut f = file;
    let parsed = safetensors::parse(&mut f, size).map_err(|e| e.to_string());
    f.seek(SeekFrom::Start(0))?;
    Ok(parsed)
}

/// Hashes each tensor of a layout from the file's bytes, fed in order as contiguous pieces.
pub(crate) struct TensorHasher {
    tensors: Vec<Tensor>,
    /// Index of the first tensor not finished yet.
    idx: usize,
    /// Hash state and byte count of tensor `idx`.
    cur: Hasher,
    filled: u64,
    /// Offset the next piece must start at.
    pos: u64,
    out: Vec<TensorEntry>,
    broken: bool,
}

impl TensorHasher {
    /// A hasher for `layout`'s tensors (sorted by offset, not overlapping: the parser ensures it).
    pub(crate) fn new(layout: Layout) -> Self {
        Self {
            out: Vec::with_capacity(layout.tensors.len()),
            tensors: layout.tensors,
            idx: 0,
            cur: Hasher::new(),
            filled: 0,
            pos: 0,
            broken: false,
        }
    }

    fn finish_current(&mut self) {
        let t = &self.tensors[self.idx];
        let size = t.end - t.start;
        if self.filled != size {
            self.broken = true;
        }
        let h = std::mem::take(&mut self.cur);
        self.out.push(TensorEntry {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            offset: t.start,
            size,
            sha256: h.finish(),
        });
        self.filled = 0;
        self.idx += 1;
    }

    /// Feeds the bytes at `offset..offset + data.len()`; pieces must be contiguous and in order.
    pub(crate) fn update(&mut self, offset: u64, data: &[u8]) {
        if offset != self.pos {
            self.broken = true;
            return;
        }
        let end = offset + data.len() as u64;
        self.pos = end;
        let mut at = offset;
        while self.idx < self.tensors.len() {
            let (start, stop) = (self.tensors[self.idx].start, self.tensors[self.idx].end);
            if stop < at {
                // Cannot happen for contiguous pieces; finishing marks the table broken.
                self.finish_current();
                continue;
            }
            if start >= end {
                break;
            }
            let s = start.max(at);
            let e = stop.min(end);
            self.cur
                .update(&data[(s - offset) as usize..(e - offset) as usize]);
            self.filled += e - s;
            at = e;
            if e == stop {
                self.finish_current();
            } else {
                break;
            }
        }
    }

    /// The table, or `None` if the bytes fed did not cover every tensor exactly.
    pub(crate) fn finish(mut self) -> Option<Vec<TensorEntry>> {
        while self.idx < self.tensors.len() {
            if self.tensors[self.idx].end > self.pos {
                return None;
            }
            self.finish_current();
        }
        (!self.broken).then_some(self.out)
    }
}

/// The table to record in a manifest for a file of `size` bytes: `Err` when it breaks the
/// manifest's limits (then the manifest is written without one).
pub(crate) fn checked(table: Vec<TensorEntry>, size: u64) -> Result<Vec<TensorEntry>, String> {
    validate_tensors(&table, size).map(|()| table)
}

/// Reads a stored version's bytes from the local store, chunk after chunk, for callers that need
/// only the beginning of a file (the safetensors header). Each chunk is verified as it is loaded.
pub(crate) struct StoredReader<'a> {
    store: &'a LocalStore,
    chunks: &'a [ChunkRef],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> StoredReader<'a> {
    pub(crate) fn new(store: &'a LocalStore, m: &'a Manifest) -> Self {
        Self {
            store,
            chunks: &m.chunks,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for StoredReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(c) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            self.buf = self
                .store
                .get(&c.id, c.size)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    fn layout(ranges: &[(u64, u64)]) -> Layout {
        Layout {
            header_len: 0,
            tensors: ranges
                .iter()
                .enumerate()
                .map(|(i, &(start, end))| Tensor {
                    name: format!("t{i}"),
                    dtype: "U8".into(),
                    shape: vec![end - start],
                    start,
                    end,
                })
                .collect(),
        }
    }

    /// Every way of cutting the data into pieces gives the same hashes as hashing each range.
    #[test]
    fn hashes_match_for_any_piece_boundaries() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        let ranges = [
            (0, 0),
            (3, 10),
            (10, 10),
            (10, 64),
            (70, 71),
            (71, 190),
            (200, 200),
        ];
        let expect: Vec<ObjectId> = ranges
            .iter()
            .map(|&(s, e)| ObjectId::of(&data[s as usize..e as usize]))
            .collect();
        for piece in [1usize, 2, 3, 7, 10, 60, 64, 199, 200] {
            let mut h = TensorHasher::new(layout(&ranges));
            let mut off = 0;
            for p in data.chunks(piece) {
                h.update(off, p);
                off += p.len() as u64;
            }
            let got: Vec<ObjectId> = h
                .finish()
                .expect("complete")
                .iter()
                .map(|t| t.sha256)
                .collect();
            assert_eq!(got, expect, "piece size {piece}");
        }
        assert_eq!(expect[0], ObjectId::of(b""));
    }

    #[test]
    fn short_or_gappy_input_gives_no_table() {
        let mut h = TensorHasher::new(layout(&[(0, 10)]));
        h.update(0, &[0; 5]);
        assert!(h.finish().is_none());
        let mut h = TensorHasher::new(layout(&[(0, 10)]));
        h.update(0, &[0; 5]);
        h.update(6, &[0; 5]);
        assert!(h.finish().is_none());
    }
}
