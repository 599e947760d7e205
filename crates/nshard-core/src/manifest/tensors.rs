//! The tensor table of a manifest: one entry per tensor of a model file, how its identity was
//! computed, and the checks an entry must pass before it is used.

use serde::{Deserialize, Serialize};

use super::{ChunkRef, MAX_DTYPE_BYTES, MAX_TENSORS, MAX_TENSOR_NAME_BYTES};
use crate::id::ObjectId;

/// What a tensor entry's `sha256` is the SHA-256 of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TensorDigest {
    /// The tensor's bytes.
    #[default]
    Bytes,
    /// The 32-byte ids of the tensor's chunks, concatenated in file order: the tensor is cut into
    /// whole chunks of its own, so this names its bytes exactly (chunk ids are their SHA-256)
    /// without hashing them a third time. Only in [`super::FORMAT_V2`] manifests.
    Chunks,
}

impl TensorDigest {
    /// Whether this is the default (kept out of serialized entries).
    pub fn is_bytes(&self) -> bool {
        *self == TensorDigest::Bytes
    }
}

/// The chunk digest of a run of chunks (see [`TensorDigest::Chunks`]).
pub fn chunks_digest<'a>(ids: impl IntoIterator<Item = &'a ObjectId>) -> ObjectId {
    let mut h = crate::id::Hasher::new();
    for id in ids {
        h.update(id.as_bytes());
    }
    h.finish()
}

/// The chunk digest of bytes `offset..offset + size` of a file cut into `chunks` (in order),
/// when those bytes are exactly a run of whole chunks (see [`TensorDigest::Chunks`]).
pub fn chunk_run_digest(chunks: &[ChunkRef], offset: u64, size: u64) -> Option<ObjectId> {
    let first = chunks.partition_point(|c| c.offset < offset);
    let mut at = offset;
    let mut ids = Vec::new();
    for c in &chunks[first..] {
        if at == offset + size || c.offset != at {
            break;
        }
        ids.push(&c.id);
        at += c.size;
    }
    (at == offset + size && !ids.is_empty()).then(|| chunks_digest(ids))
}

/// One tensor of a model file (safetensors, PyTorch zip, GGUF), recorded at commit so that
/// `nshard diff` can compare tensors between any two versions from their manifests alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// The tensor's name in the file's header.
    pub name: String,
    /// Its dtype as written in the file (`BF16`, `F32`, …).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<u64>,
    /// Absolute offset of its first byte in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, or of its chunks' ids (see `digest`).
    pub sha256: ObjectId,
    /// What `sha256` covers (absent: the bytes).
    #[serde(default, skip_serializing_if = "TensorDigest::is_bytes")]
    pub digest: TensorDigest,
}

/// Checks a tensor table against the file it describes: at most [`MAX_TENSORS`] entries, names
/// unique, at most [`MAX_TENSOR_NAME_BYTES`] bytes and free of control characters, short
/// alphanumeric dtypes, bounded rank, byte ranges inside the file, sorted by offset and not
/// overlapping, and (for known dtypes) sizes that match the shape. Commit applies the same check
/// before recording a table, so it never writes a manifest it would refuse to read.
pub fn validate_tensors(
    tensors: &[TensorEntry],
    file_size: u64,
) -> std::result::Result<(), String> {
    validate_tensors_limit(tensors, file_size, MAX_TENSORS)
}

pub(crate) fn validate_tensors_limit(
    tensors: &[TensorEntry],
    file_size: u64,
    max_tensors: usize,
) -> std::result::Result<(), String> {
    use crate::formats::safetensors::{dtype_size, MAX_RANK};
    if tensors.len() > max_tensors {
        return Err(format!(
            "{} tensors, over the limit of {max_tensors}",
            tensors.len()
        ));
    }
    let mut names = std::collections::HashSet::with_capacity(tensors.len());
    let mut prev_end = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let shown: String = t.name.chars().take(80).collect();
        if t.name.len() > MAX_TENSOR_NAME_BYTES {
            return Err(format!(
                "tensor {i} has a name of {} bytes, over {MAX_TENSOR_NAME_BYTES}",
                t.name.len()
            ));
        }
        if t.name.chars().any(char::is_control) {
            return Err(format!(
                "tensor {i} ({shown:?}) has control characters in its name"
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(format!("tensor name {shown:?} appears twice"));
        }
        if t.dtype.is_empty()
            || t.dtype.len() > MAX_DTYPE_BYTES
            || !t
                .dtype
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            let d: String = t.dtype.chars().take(20).collect();
            return Err(format!("tensor {shown:?} has a bad dtype {d:?}"));
        }
        if t.shape.len() > MAX_RANK {
            return Err(format!("tensor {shown:?} has rank over {MAX_RANK}"));
        }
        let end = t
            .offset
            .checked_add(t.size)
            .filter(|&e| e <= file_size)
            .ok_or_else(|| {
                format!(
                    "tensor {shown:?} spans {}+{} bytes, outside the {file_size}-byte file",
                    t.offset, t.size
                )
            })?;
        if t.offset < prev_end {
            return Err(format!(
                "tensor {shown:?} starts at {} before the previous tensor ends at {prev_end} \
                 (tensors must be sorted by offset and must not overlap)",
                t.offset
            ));
        }
        prev_end = end;
        if let Some(elem) = dtype_size(&t.dtype) {
            let need = t.shape.iter().try_fold(elem, |acc, &d| acc.checked_mul(d));
            if need != Some(t.size) {
                return Err(format!(
                    "tensor {shown:?} has {} bytes but shape {:?} of {} needs {}",
                    t.size,
                    t.shape,
                    t.dtype,
                    need.map_or("more than 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
    }
    Ok(())
}
