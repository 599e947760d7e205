//! Manifests: the small JSON file `<file>.shard.json` that describes one version of a data file.
//!
//! A manifest is committed to git and also stored as an object (its version id is the SHA-256 of
//! its bytes), so history can be walked through the store alone. Manifests come from other people:
//! [`Manifest::parse`] validates everything before any of it is used.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkParams;
use crate::error::ManifestError;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::path::RepoPath;

mod blocks;
mod kind;
mod tensors;

pub use blocks::BlockDiff;
pub(crate) use kind::peek_is_dir_manifest;
pub use kind::{is_dir_manifest, DIR_FORMAT};
pub use tensors::{chunk_run_digest, chunks_digest, validate_tensors, TensorDigest, TensorEntry};

/// The format tag of manifests that need nothing newer (readable by every nshard).
pub const FORMAT: &str = "neuroshard.manifest/1";
/// The format tag of manifests whose tensor table identifies some tensors by their chunks
/// ([`TensorDigest::Chunks`]). Written only when a table uses it, so other manifests stay
/// readable by nshard versions that know only [`FORMAT`].
pub const FORMAT_V2: &str = "neuroshard.manifest/2";
pub use crate::path::MANIFEST_SUFFIX;

/// Largest manifest accepted, in bytes (about 500 000 chunks, i.e. a 2 TiB file at 4 MiB average).
pub const MAX_MANIFEST_BYTES: u64 = 128 * 1024 * 1024;
/// Largest data file a manifest may describe (16 TiB).
pub const MAX_FILE_SIZE: u64 = 16 << 40;
/// Most chunks one manifest may list.
pub const MAX_CHUNKS: usize = 4_000_000;
/// Longest commit message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most tensors one manifest may list.
pub const MAX_TENSORS: usize = 1_000_000;
/// Longest tensor name, in bytes.
pub const MAX_TENSOR_NAME_BYTES: usize = 1024;
/// Longest dtype name, in bytes.
pub const MAX_DTYPE_BYTES: usize = 16;

/// One chunk of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// SHA-256 of the chunk's raw bytes.
    pub id: ObjectId,
    /// Offset of the chunk in the file.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Who/when/why of a version, and its parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionInfo {
    /// The commit message.
    pub message: String,
    /// RFC 3339 UTC timestamp of the commit.
    pub timestamp: String,
    /// Version id (manifest object id) of the previous version of this file, if any.
    pub parent: Option<ObjectId>,
}

/// A manifest: one version of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The data file's repository-relative path.
    pub path: RepoPath,
    /// The data file's size in bytes.
    pub size: u64,
    /// SHA-256 of the whole data file.
    pub sha256: ObjectId,
    /// How the file was cut.
    pub chunking: ChunkParams,
    /// The chunks, in file order.
    pub chunks: Vec<ChunkRef>,
    /// Version metadata.
    pub version: VersionInfo,
    /// The tensors, in file order, when the file parsed as a model format at commit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<TensorEntry>>,
    /// Whether the file was executable (any execute bit set) when committed: checkout sets or
    /// clears the execute bits from it, as git does with its 100755 mode. Absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// A manifest found where `expected`'s manifest belongs must describe `expected` (a manifest
/// copied or renamed to another path would otherwise rebuild its data there).
pub(crate) fn check_placement(
    path: &RepoPath,
    expected: Option<&RepoPath>,
) -> std::result::Result<(), String> {
    match expected {
        Some(exp) if path != exp => Err(format!(
            "describes {:?} but sits where {:?}'s manifest belongs",
            path.as_str(),
            exp.as_str()
        )),
        _ => Ok(()),
    }
}

impl Manifest {
    /// Parses and validates manifest bytes read from `source` (used in messages). When `expected`
    /// is given, the manifest must describe exactly that data path.
    pub fn parse(bytes: &[u8], source: &Path, expected: Option<&RepoPath>) -> Result<Manifest> {
        let invalid = |reason: String| {
            Error::Manifest(ManifestError::InvalidManifest {
                path: source.to_path_buf(),
                reason,
            })
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "{} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            )));
        }
        // Check the format tag first so that a future format gets a helpful message rather than a
        // complaint about some field. `Tag` skips every other value without building it, so a
        // hostile manifest cannot make this step allocate more than its own size.
        #[derive(Deserialize)]
        struct Tag {
            format: Option<String>,
        }
        let tag: Tag = serde_json::from_slice(bytes).map_err(|e| {
            if has_conflict_markers(bytes) {
                Error::Manifest(crate::error::ManifestError::ConflictMarkers(
                    source.to_path_buf(),
                ))
            } else {
                invalid(format!("not valid JSON: {e}"))
            }
        })?;
        match tag.format.as_deref() {
            Some(FORMAT | FORMAT_V2) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "unknown format {:?} (this nshard reads {FORMAT:?} and {FORMAT_V2:?})",
                    other.chars().take(100).collect::<String>()
                )))
            }
            None => {
                return Err(invalid(
                    "no \"format\" tag: not a NeuroShard manifest".into(),
                ))
            }
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(format!("{e}")))?;
        m.validate().map_err(invalid)?;
        check_placement(&m.path, expected).map_err(invalid)?;
        Ok(m)
    }

    /// Structural checks: sizes, limits, contiguous chunks.
    fn validate(&self) -> std::result::Result<(), String> {
        self.chunking
            .validate()
            .map_err(|e| format!("bad chunking parameters: {e}"))?;
        if self.size > MAX_FILE_SIZE {
            return Err(format!(
                "size {} is over the {MAX_FILE_SIZE}-byte limit",
                self.size
            ));
        }
        if self.chunks.len() > MAX_CHUNKS {
            return Err(format!(
                "{} chunks, over the limit of {MAX_CHUNKS}",
                self.chunks.len()
            ));
        }
        let max_chunk = self.chunking.max_chunk() as u64;
        let mut expect = 0u64;
        for (i, c) in self.chunks.iter().enumerate() {
            if c.offset != expect {
                return Err(format!(
                    "chunk {i} starts at offset {} but the previous chunks end at {expect}",
                    c.offset
                ));
            }
            if c.size == 0 || c.size > max_chunk {
                return Err(format!(
                    "chunk {i} has size {}, outside 1..={max_chunk}",
                    c.size
                ));
            }
            expect = expect
                .checked_add(c.size)
                .ok_or_else(|| "chunk sizes overflow".to_string())?;
        }
        if expect != self.size {
            return Err(format!(
                "chunk sizes add up to {expect} but the file size is {}",
                self.size
            ));
        }
        if self.version.message.len() > MAX_MESSAGE_BYTES {
            return Err("commit message over 64 KiB".into());
        }
        time::OffsetDateTime::parse(
            &self.version.timestamp,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("bad timestamp {:?}: {e}", self.version.timestamp))?;
        if let Some(t) = &self.tensors {
            validate_tensors(t, self.size).map_err(|e| format!("tensors: {e}"))?;
            if self.format == FORMAT && t.iter().any(|t| !t.digest.is_bytes()) {
                return Err(format!(
                    "tensor digests by chunks need format {FORMAT_V2:?}, not {FORMAT:?}"
                ));
            }
        }
        Ok(())
    }

    /// The format tag this manifest needs: [`FORMAT_V2`] when its tensor table uses chunk
    /// digests, else [`FORMAT`].
    pub fn needed_format(&self) -> &'static str {
        let chunks = self
            .tensors
            .iter()
            .flatten()
            .any(|t| t.digest == TensorDigest::Chunks);
        if chunks {
            FORMAT_V2
        } else {
            FORMAT
        }
    }

    /// The canonical bytes: pretty-printed JSON with a trailing newline. The version id is the
    /// SHA-256 of exactly these bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// The current time as an RFC 3339 UTC timestamp (second precision).
    pub fn now_timestamp() -> String {
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond");
        now.format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339 formats")
    }
}

/// Whether `bytes` has a line opening a git conflict (`<<<<<<<`).
pub(crate) fn has_conflict_markers(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .any(|l| l.starts_with(b"<<<<<<<") && matches!(l.get(7), None | Some(b' ' | b'\r')))
}

#[cfg(test)]
mod tests {
    use super::tensors::validate_tensors_limit;
    use super::*;

    fn sample() -> Manifest {
        let a = ObjectId::of(b"a");
        Manifest {
            format: FORMAT.into(),
            path: RepoPath::parse("models/m.bin").expect("path"),
            size: 10,
            sha256: a,
            chunking: ChunkParams::default(),
            chunks: vec![
                ChunkRef {
                    id: a,
                    offset: 0,
                    size: 4,
                },
                ChunkRef {
                    id: a,
                    offset: 4,
                    size: 6,
                },
            ],
            version: VersionInfo {
                message: "m".into(),
                timestamp: "2026-11-25T10:00:00Z".into(),
                parent: None,
            },
            tensors: None,
            executable: false,
        }
    }

    fn tensor(name: &str, offset: u64, size: u64) -> TensorEntry {
        TensorEntry {
            name: name.into(),
            dtype: "U8".into(),
            shape: vec![size],
            offset,
            size,
            sha256: ObjectId::of(name.as_bytes()),
            digest: TensorDigest::Bytes,
        }
    }

    fn check(json: &str) -> Result<Manifest> {
        Manifest::parse(json.as_bytes(), Path::new("t.shard.json"), None)
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        let back = Manifest::parse(&m.to_bytes(), Path::new("x"), Some(&m.path)).expect("valid");
        assert_eq!(back, m);
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let good = String::from_utf8(sample().to_bytes()).expect("utf8");
        let a = ObjectId::of(b"a").to_hex();
        // (what, manifest, words the refusal must contain: the rule that fired)
        let cases = [
            ("not json", "{".to_string(), "not valid JSON"),
            (
                "unknown format",
                good.replace(FORMAT, "neuroshard.manifest/9"),
                "unknown format",
            ),
            ("dotdot", good.replace("models/m.bin", "../m.bin"), "'..'"),
            (
                "absolute",
                good.replace("models/m.bin", "/etc/m.bin"),
                "absolute",
            ),
            (
                "backslash",
                good.replace("models/m.bin", "models\\\\m.bin"),
                "backslash",
            ),
            (
                "drive",
                good.replace("models/m.bin", "C:/m.bin"),
                "drive letter",
            ),
            (
                "dot git",
                good.replace("models/m.bin", "x/.Git/hooks/pre-commit"),
                ".git",
            ),
            ("bad id", good.replacen(&a, "abc", 1), "64 hex"),
            (
                "offsets",
                good.replace("\"offset\": 4", "\"offset\": 5"),
                "chunk 1 starts at offset 5 but the previous chunks end at 4",
            ),
            (
                "size sum",
                good.replace("\"size\": 10", "\"size\": 11"),
                "chunk sizes add up to 10 but the file size is 11",
            ),
        ];
        for (what, json, why) in cases {
            let err = check(&json).expect_err(what).to_string();
            assert!(err.contains(why), "{what}: expected {why:?} in: {err}");
        }
        let m = sample();
        let other = RepoPath::parse("other.bin").expect("p");
        let err = Manifest::parse(&m.to_bytes(), Path::new("x"), Some(&other))
            .expect_err("other path")
            .to_string();
        assert!(err.contains("describes \"models/m.bin\""), "{err}");
    }

    /// A manifest of `n` chunks of `chunk` bytes (the last one `last` bytes), valid in every
    /// other respect.
    fn with_chunks(n: usize, chunk: u64, last: u64) -> Manifest {
        let id = ObjectId::of(b"a");
        let mut m = sample();
        m.chunking = ChunkParams::default();
        m.chunks = (0..n as u64)
            .map(|i| ChunkRef {
                id,
                offset: i * chunk,
                size: if i + 1 == n as u64 { last } else { chunk },
            })
            .collect();
        m.size = (n as u64 - 1) * chunk + last;
        m
    }

    #[test]
    fn the_file_size_limit_holds_on_its_own() {
        let max = u64::from(ChunkParams::default().max_chunk());
        // Exactly 16 TiB in chunks of the largest size: accepted.
        let n = (MAX_FILE_SIZE / max) as usize;
        let m = with_chunks(n, max, max);
        assert_eq!(m.size, MAX_FILE_SIZE);
        m.validate().expect("16 TiB is within the limit");
        // One byte more, in a chunk of its own: only the size rule is broken.
        let m = with_chunks(n + 1, max, 1);
        assert_eq!(m.size, MAX_FILE_SIZE + 1);
        let err = m.validate().expect_err("over 16 TiB");
        assert!(
            err.contains(&format!("size {} is over the", MAX_FILE_SIZE + 1)),
            "{err}"
        );
    }

    #[test]
    fn the_chunk_count_limit_holds_on_its_own() {
        let mut m = with_chunks(MAX_CHUNKS, 1, 1);
        m.validate().expect("4 M chunks are within the limit");
        m.chunks.push(ChunkRef {
            id: ObjectId::of(b"a"),
            offset: m.size,
            size: 1,
        });
        m.size += 1;
        let err = m.validate().expect_err("one chunk too many");
        assert!(
            err.contains(&format!("{} chunks, over the limit", MAX_CHUNKS + 1)),
            "{err}"
        );
    }

    #[test]
    fn the_manifest_size_limit_holds_on_its_own() {
        // A valid manifest padded with whitespace (still valid JSON) to exactly the limit.
        let mut bytes = sample().to_bytes();
        bytes.resize(MAX_MANIFEST_BYTES as usize, b' ');
        check(std::str::from_utf8(&bytes).expect("utf8")).expect("128 MiB is within the limit");
        bytes.push(b' ');
        let err = Manifest::parse(&bytes, Path::new("t.shard.json"), None)
            .expect_err("over 128 MiB")
            .to_string();
        assert!(
            err.contains(&format!(
                "{} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                MAX_MANIFEST_BYTES + 1
            )),
            "{err}"
        );
    }

    #[test]
    fn tensor_table_roundtrips_and_is_absent_when_none() {
        let mut m = sample();
        let plain = String::from_utf8(m.to_bytes()).expect("utf8");
        assert!(!plain.contains("tensors"), "no tensors key when None");
        m.tensors = Some(vec![
            tensor("a", 0, 4),
            tensor("b", 4, 0),
            tensor("c", 6, 4),
        ]);
        let back = Manifest::parse(&m.to_bytes(), Path::new("x"), None).expect("valid");
        assert_eq!(back, m);
    }

    /// A manifest as nshard wrote it before chunk digests existed (format 1, a tensor table of
    /// byte digests): it still reads, and serializes back byte for byte, so its version id (the
    /// SHA-256 of those bytes) and everything naming it stay valid.
    const GOLDEN_V1: &str = r#"{
  "format": "neuroshard.manifest/1",
  "path": "m.safetensors",
  "size": 20,
  "sha256": "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90",
  "chunking": {
    "algorithm": "fastcdc-2020",
    "min_size": 1048576,
    "avg_size": 4194304,
    "max_size": 16777216,
    "layout": "tensor-aligned"
  },
  "chunks": [
    {
      "id": "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90",
      "offset": 0,
      "size": 20
    }
  ],
  "version": {
    "message": "v1",
    "timestamp": "2026-11-25T10:00:00Z",
    "parent": null
  },
  "tensors": [
    {
      "name": "w",
      "dtype": "F32",
      "shape": [
        3
      ],
      "offset": 8,
      "size": 12,
      "sha256": "a3b4f9ef8d1f4c6d5d2e9b1a7c0f3e2d1c4b5a6978877665544332211000ffee"
    }
  ]
}
"#;

    #[test]
    fn format_1_manifests_still_read_byte_for_byte() {
        let m = check(GOLDEN_V1).expect("format 1 reads");
        assert_eq!(m.format, FORMAT);
        assert_eq!(m.to_bytes(), GOLDEN_V1.as_bytes());
        assert_eq!(m.needed_format(), FORMAT);
        let t = &m.tensors.as_ref().expect("table")[0];
        assert_eq!(t.digest, TensorDigest::Bytes);
        // Chunk digests need format 2; format 2 reads; an unknown format is refused by name.
        let chunks = GOLDEN_V1.replace("ffee\"\n", "ffee\",\n      \"digest\": \"chunks\"\n");
        let err = check(&chunks).expect_err("chunk digests in format 1");
        assert!(err.to_string().contains(FORMAT_V2), "{err}");
        let v2 = chunks.replace(FORMAT, FORMAT_V2);
        let m2 = check(&v2).expect("format 2 reads");
        assert_eq!(m2.needed_format(), FORMAT_V2);
        assert_eq!(m2.to_bytes(), v2.as_bytes());
        let err = check(&v2.replace(FORMAT_V2, "neuroshard.manifest/3")).expect_err("v3");
        assert!(err.to_string().contains("unknown format"), "{err}");
    }

    #[test]
    fn hostile_tensor_tables_are_refused() {
        let long = "x".repeat(MAX_TENSOR_NAME_BYTES + 1);
        let mut shape = tensor("s", 0, 4);
        shape.shape = vec![5];
        let mut dtype = tensor("d", 0, 4);
        dtype.dtype = "F32\u{1b}[31m".into();
        let mut rank = tensor("r", 0, 1);
        rank.dtype = "Q9".into();
        rank.shape = vec![1; 40];
        let mut overflow = tensor("o", 0, 4);
        overflow.dtype = "F64".into();
        overflow.shape = vec![u64::MAX, 4];
        let cases: Vec<(&str, Vec<TensorEntry>, &str)> = vec![
            (
                "past the end",
                vec![tensor("a", 8, 4)],
                "spans 8+4 bytes, outside the 10-byte file",
            ),
            (
                "offset overflow",
                vec![tensor("a", u64::MAX, 2)],
                "outside the 10-byte file",
            ),
            (
                "overlap",
                vec![tensor("a", 0, 6), tensor("b", 4, 4)],
                "starts at 4 before the previous tensor ends at 6",
            ),
            (
                "unsorted",
                vec![tensor("a", 5, 1), tensor("b", 0, 4)],
                "starts at 0 before the previous tensor ends at 6",
            ),
            (
                "duplicate",
                vec![tensor("a", 0, 2), tensor("a", 2, 2)],
                "appears twice",
            ),
            (
                "long name",
                vec![tensor(&long, 0, 2)],
                "a name of 1025 bytes",
            ),
            (
                "control char",
                vec![tensor("a\u{1b}[2J", 0, 2)],
                "control characters",
            ),
            ("shape mismatch", vec![shape], "shape [5] of U8 needs 5"),
            ("bad dtype", vec![dtype], "bad dtype"),
            ("rank", vec![rank], "rank over"),
            ("shape overflow", vec![overflow], "more than 2^64"),
        ];
        for (what, t, why) in cases {
            let mut m = sample();
            m.tensors = Some(t);
            let err = Manifest::parse(&m.to_bytes(), Path::new("x"), None)
                .expect_err(what)
                .to_string();
            assert!(err.contains(why), "{what}: expected {why:?} in: {err}");
        }
        let many: Vec<TensorEntry> = (0..5).map(|i| tensor(&format!("t{i}"), i, 1)).collect();
        assert!(validate_tensors_limit(&many, 10, 5).is_ok());
        let err = validate_tensors_limit(&many, 10, 4).expect_err("count limit");
        assert!(err.contains("5 tensors, over the limit of 4"), "{err}");
    }
}
