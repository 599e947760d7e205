//! The tensor table: hash every tensor's bytes from the chunks that already flow through the
//! ingest pipeline (or verify's rebuild), so that recording tensors never costs a second read of
//! the file, and take hashes from chunk ids wherever they already say what the hash is.

use crate::formats::Tensor;
use crate::id::{Hasher, ObjectId};
use crate::manifest::{validate_tensors, Manifest, TensorEntry};

/// A tensor of the previous version whose bytes are exactly a run of whole chunks: if the new
/// version has a tensor of the same name, dtype and shape made of the same chunks (same ids, same
/// relative offsets), its bytes are the same and so is its hash, without hashing them again.
struct KnownTensor {
    dtype: String,
    shape: Vec<u64>,
    sha256: ObjectId,
    /// (offset relative to the tensor's start, size, id) of each chunk.
    chunks: Vec<(u64, u64, ObjectId)>,
}

/// Re-reads `start..end` of the file into a hash (for a tensor whose first chunks matched the
/// previous version but a later one did not).
pub(crate) type Reread<'a> =
    Box<dyn FnMut(u64, u64, &mut Hasher) -> std::io::Result<()> + Send + 'a>;

/// Hashes each tensor of a layout from the file's bytes, fed in order as contiguous pieces.
///
/// Fed with chunk ids too ([`TensorHasher::update_chunk`]), it avoids hashing where the chunk ids
/// already say what the hash is: a tensor that is exactly one chunk has that chunk's id as its
/// SHA-256, and a tensor made of the same chunks as in the previous version has its previous hash.
pub(crate) struct TensorHasher<'a> {
    tensors: Vec<Tensor>,
    /// Index of the first tensor not finished yet.
    idx: usize,
    /// Hash state and byte count of tensor `idx`.
    cur: Hasher,
    filled: u64,
    /// While the chunks of tensor `idx` so far match the previous version's: the known tensor and
    /// how many of its chunks matched. Those bytes are not in `cur` yet.
    deferred: Option<(usize, usize)>,
    known: Vec<KnownTensor>,
    known_by_name: std::collections::HashMap<String, usize>,
    reread: Option<Reread<'a>>,
    /// Offset the next piece must start at.
    pos: u64,
    out: Vec<TensorEntry>,
    broken: bool,
}

impl<'a> TensorHasher<'a> {
    /// A hasher for `tensors` (sorted by offset, not overlapping: the format parsers and
    /// manifest validation ensure it).
    pub(crate) fn new(tensors: Vec<Tensor>) -> Self {
        Self {
            out: Vec::with_capacity(tensors.len()),
            tensors,
            idx: 0,
            cur: Hasher::new(),
            filled: 0,
            deferred: None,
            known: Vec::new(),
            known_by_name: std::collections::HashMap::new(),
            reread: None,
            pos: 0,
            broken: false,
        }
    }

    /// Lets unchanged tensors take their hashes from `parent` (the previous version). `reread`
    /// hashes a range of the file being committed, for the rare tensor whose first chunks are
    /// unchanged and a later one is not.
    pub(crate) fn with_parent(mut self, parent: &Manifest, reread: Reread<'a>) -> Self {
        let Some(table) = &parent.tensors else {
            return self;
        };
        for t in table {
            let first = parent.chunks.partition_point(|c| c.offset < t.offset);
            let mut chunks = Vec::new();
            let mut at = t.offset;
            for c in &parent.chunks[first..] {
                if at >= t.offset + t.size || c.offset != at {
                    break;
                }
                chunks.push((c.offset - t.offset, c.size, c.id));
                at += c.size;
            }
            if at == t.offset + t.size && !chunks.is_empty() {
                self.known_by_name.insert(t.name.clone(), self.known.len());
                self.known.push(KnownTensor {
                    dtype: t.dtype.clone(),
                    shape: t.shape.clone(),
                    sha256: t.sha256,
                    chunks,
                });
            }
        }
        self.reread = Some(reread);
        self
    }

    fn finish_current(&mut self, known: Option<ObjectId>) {
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
            sha256: known.unwrap_or_else(|| h.finish()),
        });
        self.filled = 0;
        self.deferred = None;
        self.idx += 1;
    }

    /// The known tensor the current one may match, by name, dtype and shape.
    fn known_for_current(&self) -> Option<usize> {
        let t = &self.tensors[self.idx];
        let k = *self.known_by_name.get(&t.name)?;
        let kt = &self.known[k];
        (kt.dtype == t.dtype && kt.shape == t.shape).then_some(k)
    }

    /// Feeds the bytes at `offset..offset + data.len()`; pieces must be contiguous and in order.
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
                self.finish_current(None);
                continue;
            }
            if start >= end {
                break;
            }
            let s = start.max(at);
            let e = stop.min(end);
            // A whole chunk lying inside the tensor: perhaps its hash is known.
            if let Some(id) = id.filter(|_| s == offset && e == end) {
                if s == start && e == stop {
                    // The tensor is exactly this chunk.
                    self.filled = e - s;
                    self.finish_current(Some(id));
                    at = e;
                    continue;
                }
                if self.try_match(s - start, e - s, id) {
                    self.filled += e - s;
                    at = e;
                    if e < stop {
                        break;
                    }
                    // Every chunk matched: the known chunks cover the tensor exactly.
                    let known = self.deferred.map(|(k, _)| self.known[k].sha256);
                    self.finish_current(known);
                    continue;
                }
            }
            if self.deferred.is_some() {
                self.catch_up(start, s);
            }
            self.cur
                .update(&data[(s - offset) as usize..(e - offset) as usize]);
            self.filled += e - s;
            at = e;
            if e == stop {
                self.finish_current(None);
            } else {
                break;
            }
        }
    }

    /// Whether the chunk at `rel` (relative to the current tensor's start) of `size` bytes with
    /// `id` continues a match with the previous version; updates the match state.
    fn try_match(&mut self, rel: u64, size: u64, id: ObjectId) -> bool {
        let (k, n) = match self.deferred {
            Some(st) => st,
            None if rel == 0 && self.filled == 0 => match self.known_for_current() {
                Some(k) => (k, 0),
                None => return false,
            },
            None => return false,
        };
        if self.known[k].chunks.get(n) == Some(&(rel, size, id)) {
            self.deferred = Some((k, n + 1));
            true
        } else {
            false
        }
    }

    /// Stops deferring: hashes the current tensor's bytes `start..upto` (which matched the
    /// previous version chunk by chunk) by reading them again.
    fn catch_up(&mut self, start: u64, upto: u64) {
        if self.deferred.take().is_none() || upto == start {
            return;
        }
        let ok = match self.reread.as_mut() {
            Some(read) => read(start, upto, &mut self.cur).is_ok(),
            None => false,
        };
        if !ok {
            self.broken = true;
        }
    }

    /// The table, or `None` if the bytes fed did not cover every tensor exactly.
    pub(crate) fn finish(mut self) -> Option<Vec<TensorEntry>> {
        while self.idx < self.tensors.len() {
            if self.tensors[self.idx].end > self.pos {
                return None;
            }
            self.finish_current(None);
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
    use crate::manifest::ChunkRef;

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
    fn hashes(h: TensorHasher<'_>) -> Vec<ObjectId> {
        h.finish()
            .expect("complete")
            .iter()
            .map(|t| t.sha256)
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
        let expect: Vec<ObjectId> = ranges
            .iter()
            .map(|&(s, e)| ObjectId::of(&data[s as usize..e as usize]))
            .collect();
        for piece in [1usize, 2, 3, 7, 10, 60, 64, 199, 200] {
            let mut h = TensorHasher::new(tensors_at(&ranges));
            let mut off = 0;
            for p in data.chunks(piece) {
                h.update(off, p);
                off += p.len() as u64;
            }
            assert_eq!(hashes(h), expect, "piece size {piece}");
        }
        assert_eq!(expect[0], ObjectId::of(b""));
    }

    /// Cuts `data` at `cuts` (sorted offsets) into whole chunks.
    fn cut(data: &[u8], cuts: &[usize]) -> Vec<ChunkRef> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            if c > at {
                out.push(ChunkRef {
                    id: ObjectId::of(&data[at..c]),
                    offset: at as u64,
                    size: (c - at) as u64,
                });
                at = c;
            }
        }
        out
    }

    fn manifest_of(data: &[u8], chunks: Vec<ChunkRef>, table: Vec<TensorEntry>) -> Manifest {
        Manifest {
            format: crate::manifest::FORMAT.into(),
            path: crate::fsutil::RepoPath::parse("m.safetensors").expect("path"),
            size: data.len() as u64,
            sha256: ObjectId::of(data),
            chunking: crate::chunk::ChunkParams::default(),
            chunks,
            version: crate::manifest::VersionInfo {
                message: "v".into(),
                timestamp: "2026-01-01T00:00:00Z".into(),
                parent: None,
            },
            tensors: Some(table),
        }
    }

    /// With chunk ids and a previous version, every hash is still the SHA-256 of the tensor's
    /// bytes, whatever changed and however both versions were cut; and unchanged tensors made of
    /// whole chunks are not read again.
    #[test]
    fn shortcuts_give_the_same_hashes_as_hashing() {
        let ranges = [
            (0u64, 0u64),
            (5, 40),
            (40, 41),
            (41, 120),
            (120, 200),
            (200, 260),
        ];
        let old: Vec<u8> = (0..260u32).map(|i| (i * 13 % 241) as u8).collect();
        let mut new = old.clone();
        new[100] ^= 0xff; // inside tensor 3 (41..120)
        new[250] ^= 0x0f; // inside tensor 5 (200..260)
        let expect: Vec<ObjectId> = ranges
            .iter()
            .map(|&(a, b)| ObjectId::of(&new[a as usize..b as usize]))
            .collect();
        let old_table = {
            let mut h = TensorHasher::new(tensors_at(&ranges));
            h.update(0, &old);
            h.finish().expect("old table")
        };
        let cut_sets: [&[usize]; 6] = [
            &[5, 40, 41, 120, 200],              // tensor-aligned
            &[5, 20, 40, 41, 80, 120, 160, 200], // aligned, several chunks per tensor
            &[5, 40, 41, 60, 120, 200, 230],     // change lands in a later chunk
            &[7, 50, 130],                       // straddling chunks
            &[],                                 // one chunk
            &[1, 2, 3, 4, 5, 6, 40, 41, 119, 120, 121, 200, 259],
        ];
        for old_cuts in cut_sets {
            for new_cuts in cut_sets {
                let parent = manifest_of(&old, cut(&old, old_cuts), old_table.clone());
                let rereads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let log = std::sync::Arc::clone(&rereads);
                let src = new.clone();
                let mut h = TensorHasher::new(tensors_at(&ranges)).with_parent(
                    &parent,
                    Box::new(move |a, b, h: &mut Hasher| {
                        log.lock().expect("log").push((a, b));
                        h.update(&src[a as usize..b as usize]);
                        Ok(())
                    }),
                );
                for c in cut(&new, new_cuts) {
                    let (a, b) = (c.offset as usize, (c.offset + c.size) as usize);
                    h.update_chunk(c.offset, &new[a..b], c.id);
                }
                let got = hashes(h);
                assert_eq!(got, expect, "old cuts {old_cuts:?}, new cuts {new_cuts:?}");
                if old_cuts == new_cuts && new_cuts.first() == Some(&5) {
                    // Only changed tensors are re-read, and only up to the changed chunk.
                    let log = rereads.lock().expect("log");
                    if new_cuts.contains(&80) {
                        assert!(log.contains(&(41, 80)), "{log:?}");
                    }
                    if new_cuts.contains(&230) {
                        assert!(log.contains(&(200, 230)), "{log:?}");
                    }
                    for &(a, b) in log.iter() {
                        assert!(
                            (a, b) == (41, 80) || (a, b) == (41, 60) || (a, b) == (200, 230),
                            "re-read {a}..{b} with cuts {new_cuts:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn short_or_gappy_input_gives_no_table() {
        let mut h = TensorHasher::new(tensors_at(&[(0, 10)]));
        h.update(0, &[0; 5]);
        assert!(h.finish().is_none());
        let mut h = TensorHasher::new(tensors_at(&[(0, 10)]));
        h.update(0, &[0; 5]);
        h.update(6, &[0; 5]);
        assert!(h.finish().is_none());
    }
}
