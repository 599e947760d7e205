//! The tensor table: each tensor's identity, from the chunks that already flow through the ingest
//! pipeline (or verify's rebuild), so that recording tensors never costs a second read of the
//! file, and costs no hashing at all where the chunk ids already say what the identity is:
//!
//! - a tensor cut into whole chunks of its own (tensor-aligned layout, at least the minimum
//!   object size) is identified by its chunks' ids ([`TensorDigest::Chunks`]), or, when it is
//!   exactly one chunk, by that chunk's id, which is the SHA-256 of its bytes;
//! - any other tensor (small ones grouped with neighbours, every tensor of a file cut without
//!   the layout) is hashed from its bytes as they stream past.

use crate::formats::Tensor;
use crate::id::{Hasher, ObjectId};
use crate::manifest::{chunks_digest, validate_tensors, TensorDigest, TensorEntry};

/// How one tensor is identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// SHA-256 of its bytes (from its chunk's id when it is exactly one chunk).
    Bytes,
    /// By its chunks' ids (it must be fed as whole chunks of its own).
    Chunks,
    /// As `Chunks`, but a tensor that is one chunk gets that chunk's id as a bytes digest.
    ChunksOrOne,
}

impl How {
    /// How a manifest's entry was identified (to check it again).
    pub(crate) fn of(entry: &TensorEntry) -> How {
        match entry.digest {
            TensorDigest::Bytes => How::Bytes,
            TensorDigest::Chunks => How::Chunks,
        }
    }
}

/// Identifies each tensor of a layout from the file's chunks, fed in order.
pub(crate) struct TensorHasher {
    tensors: Vec<Tensor>,
    how: Vec<How>,
    /// Index of the first tensor not finished yet.
    idx: usize,
    /// Hash state, byte count and chunk ids of tensor `idx`.
    cur: Hasher,
    filled: u64,
    ids: Vec<ObjectId>,
    /// The id of the chunk that is exactly tensor `idx` (a bytes digest needing no hashing).
    one: Option<ObjectId>,
    /// Offset the next piece must start at.
    pos: u64,
    out: Vec<TensorEntry>,
    broken: bool,
}

impl TensorHasher {
    /// A hasher for `tensors` (sorted by offset, not overlapping: the format parsers and
    /// manifest validation ensure it), each identified as `how` says.
    pub(crate) fn new(tensors: Vec<Tensor>, how: impl Fn(&Tensor) -> How) -> Self {
        let how = tensors.iter().map(how).collect();
        Self::with_how(tensors, how)
    }

    /// As [`TensorHasher::new`], with one `How` per tensor.
    pub(crate) fn with_how(tensors: Vec<Tensor>, how: Vec<How>) -> Self {
        debug_assert_eq!(tensors.len(), how.len());
        Self {
            out: Vec::with_capacity(tensors.len()),
            how,
            tensors,
            idx: 0,
            cur: Hasher::new(),
            filled: 0,
            ids: Vec::new(),
            one: None,
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
        let ids = std::mem::take(&mut self.ids);
        let (sha256, digest) = match self.how[self.idx] {
            How::Bytes => (
                self.one.take().unwrap_or_else(|| h.finish()),
                TensorDigest::Bytes,
            ),
            How::ChunksOrOne if ids.len() == 1 => (ids[0], TensorDigest::Bytes),
            How::Chunks | How::ChunksOrOne => (chunks_digest(&ids), TensorDigest::Chunks),
        };
        self.out.push(TensorEntry {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            offset: t.start,
            size,
            sha256,
            digest,
        });
        self.filled = 0;
        self.one = None;
        self.idx += 1;
    }

    /// Feeds the bytes at `offset..offset + data.len()` (not a whole chunk); pieces must be
    /// contiguous and in order.
    #[cfg(test)]
    pub(crate) fn update(&mut self, offset: u64, data: &[u8]) {
        self.feed(offset, data, None);
    }

    /// Feeds one whole chunk and its id (its SHA-256).
    pub(crate) fn update_chunk(&mut self, offset: u64, data: &[u8], id: ObjectId) {
        self.feed(offset, data, Some(id));
    }

    fn feed(&mut self, offset: u64, data: &[u8], id: Option<ObjectId>) {
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
            // The whole chunk lies inside the tensor.
            let inside = id.filter(|_| s == offset && e == end);
            match (self.how[self.idx], inside) {
                (How::Bytes, Some(id)) if s == start && e == stop => self.one = Some(id),
                (How::Bytes, _) => self
                    .cur
                    .update(&data[(s - offset) as usize..(e - offset) as usize]),
                (_, Some(id)) => self.ids.push(id),
                // A chunk that straddles a tensor identified by its chunks: the table does not
                // fit the cuts.
                (_, None) => self.broken = true,
            }
            self.filled += e - s;
            at = e;
            if e == stop {
                self.finish_current();
            } else {
                break;
            }
        }
    }

    /// The table, or `None` if the bytes fed did not cover every tensor as the table needs.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors_at(ranges: &[(u64, u64)]) -> Vec<Tensor> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| Tensor {
                name: format!("t{i}"),
                dtype: "U8".into(),
                shape: vec![end - start],
                start,
                end,
            })
            .collect()
    }

    /// The hashes of a finished table (which must be complete).
    fn hashes(h: TensorHasher) -> Vec<(ObjectId, TensorDigest)> {
        h.finish()
            .expect("complete")
            .iter()
            .map(|t| (t.sha256, t.digest))
            .collect()
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
        let expect: Vec<(ObjectId, TensorDigest)> = ranges
            .iter()
            .map(|&(s, e)| {
                (
                    ObjectId::of(&data[s as usize..e as usize]),
                    TensorDigest::Bytes,
                )
            })
            .collect();
        for piece in [1usize, 2, 3, 7, 10, 60, 64, 199, 200] {
            let mut h = TensorHasher::new(tensors_at(&ranges), |_| How::Bytes);
            let mut off = 0;
            for p in data.chunks(piece) {
                h.update(off, p);
                off += p.len() as u64;
            }
            assert_eq!(hashes(h), expect, "piece size {piece}");
            // As whole chunks with their ids: the same hashes (one-chunk tensors take the id).
            let mut h = TensorHasher::new(tensors_at(&ranges), |_| How::Bytes);
            let mut off = 0;
            for p in data.chunks(piece) {
                h.update_chunk(off, p, ObjectId::of(p));
                off += p.len() as u64;
            }
            assert_eq!(hashes(h), expect, "chunks of {piece}");
        }
        assert_eq!(expect[0].0, ObjectId::of(b""));
    }

    /// Tensors cut into whole chunks of their own are identified by their chunks' ids without
    /// hashing their bytes (the ids fed here are deliberately not the bytes' hashes, to show it);
    /// one chunk gives its id as a bytes digest; a chunk straddling such a tensor breaks the table.
    #[test]
    fn chunk_identity_uses_only_the_ids() {
        let data = [0u8; 100];
        let ranges = [(0, 10), (10, 40), (40, 100)];
        let fake = |n: u8| ObjectId::from_digest([n; 32]);
        // Cuts: 0..10 | 10..20 | 20..40 | 40..100.
        let feed = |how: fn(&Tensor) -> How| {
            let mut h = TensorHasher::new(tensors_at(&ranges), how);
            for (i, (a, b)) in [(0, 10), (10, 20), (20, 40), (40, 100)].iter().enumerate() {
                h.update_chunk(*a, &data[*a as usize..*b as usize], fake(i as u8));
            }
            h
        };
        let got = hashes(feed(|t| {
            if t.start == 0 {
                How::Bytes
            } else {
                How::ChunksOrOne
            }
        }));
        assert_eq!(
            got,
            vec![
                (fake(0), TensorDigest::Bytes),
                (chunks_digest(&[fake(1), fake(2)]), TensorDigest::Chunks),
                (fake(3), TensorDigest::Bytes),
            ]
        );
        // Checking a table that says `chunks` for a one-chunk tensor: digest of the one id.
        let got = hashes(feed(|_| How::Chunks));
        assert_eq!(got[2], (chunks_digest(&[fake(3)]), TensorDigest::Chunks));
        // A chunk straddling tensors 1 and 2.
        let mut h = TensorHasher::new(tensors_at(&ranges), |_| How::ChunksOrOne);
        h.update_chunk(0, &data[..10], fake(0));
        h.update_chunk(10, &data[10..50], fake(1));
        h.update_chunk(50, &data[50..], fake(2));
        assert!(h.finish().is_none());
    }

    #[test]
    fn short_or_gappy_input_gives_no_table() {
        let mut h = TensorHasher::new(tensors_at(&[(0, 10)]), |_| How::Bytes);
        h.update(0, &[0; 5]);
        assert!(h.finish().is_none());
        let mut h = TensorHasher::new(tensors_at(&[(0, 10)]), |_| How::Bytes);
        h.update(0, &[0; 5]);
        h.update(6, &[0; 5]);
        assert!(h.finish().is_none());
    }
}
