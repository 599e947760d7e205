//! The listing of one version of a directory unit: every file's path (relative to the unit's
//! directory), size, executable bit, SHA-256, and where its bytes are: a slice of a pack object
//! (small files) or a chunk list (large files, cut by the same pipeline as single files).
//!
//! A listing is stored as an ordinary object (compact JSON, so its id is the SHA-256 of these
//! bytes). Files are in bytewise order of their paths, so the same tree committed from scratch
//! always has the same listing id. Listings come from other people: [`Listing::parse`] checks every
//! path through the same rules as every repository path, refuses duplicates, case-only twins and a
//! file standing where another file's directory must be, and bounds counts and sizes.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::ManifestError;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::manifest::{MAX_CHUNKS, MAX_FILE_SIZE};
use crate::path::RepoPath;

/// The format tag of listings.
pub const LISTING_FORMAT: &str = "neuroshard.listing/1";
/// Most files one directory unit may hold.
pub const MAX_DIR_FILES: usize = 1_000_000;
/// Largest listing object accepted, in bytes (the object size limit).
pub const MAX_LISTING_BYTES: u64 = crate::codec::MAX_OBJECT_SIZE;
/// Largest pack object accepted, in bytes.
pub const MAX_PACK_BYTES: u64 = 64 << 20;
/// Largest chunk a listing may name (the largest chunk any chunking parameters allow).
const MAX_CHUNK_BYTES: u64 = 64 << 20;

/// A pack object: small files' bytes concatenated in listing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackRef {
    /// SHA-256 of the pack's raw bytes.
    pub id: ObjectId,
    /// Raw length of the pack.
    pub size: u64,
}

/// One file of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the unit's directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file is executable (any execute bit set).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
    /// SHA-256 of the file's bytes.
    pub sha256: ObjectId,
    /// For a small file: (index into [`Listing::packs`], offset in that pack); its length is `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<(u32, u64)>,
    /// For a large file: its chunks in file order, (id, size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<(ObjectId, u64)>>,
}

/// One version of a directory's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Always [`LISTING_FORMAT`].
    pub format: String,
    /// The pack objects the files point into.
    pub packs: Vec<PackRef>,
    /// The files, in bytewise order of their paths.
    pub files: Vec<FileEntry>,
}

/// A file's path in messages, cut at 200 characters; formatted only when a message is built.
struct Name<'a>(&'a str);

impl std::fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut: String = self.0.chars().take(200).collect();
        write!(f, "{cut:?}")
    }
}

/// Where a file's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location<'a> {
    /// Empty file: no bytes anywhere.
    Empty,
    /// A slice of a pack.
    Pack {
        /// The pack.
        pack: &'a PackRef,
        /// Offset of the file's bytes in it.
        offset: u64,
    },
    /// Chunks, in order.
    Chunks(&'a [(ObjectId, u64)]),
}

impl Listing {
    /// Canonical bytes: compact JSON. The listing id is the SHA-256 of exactly these bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("listing serializes")
    }

    /// Parses and validates listing bytes for the unit at `unit` (`what` names it in messages).
    pub fn parse(bytes: &[u8], unit: &RepoPath, what: &str) -> Result<Listing> {
        Self::parse_limited(bytes, unit, what, MAX_DIR_FILES)
    }

    pub(crate) fn parse_limited(
        bytes: &[u8],
        unit: &RepoPath,
        what: &str,
        max_files: usize,
    ) -> Result<Listing> {
        let invalid = |reason: String| {
            Error::Manifest(ManifestError::InvalidManifest {
                path: what.into(),
                reason,
            })
        };
        let l: Listing = parse_bounded(bytes, "a listing").map_err(invalid)?;
        l.validate(unit, max_files).map_err(invalid)?;
        Ok(l)
    }

    /// Parses listing bytes that are the base of a delta: the format, limits and the pack
    /// numbers of its files are checked; everything else is checked in the listing the deltas
    /// resolve to (with [`Listing::parse_value`]).
    pub(crate) fn parse_base(bytes: &[u8], what: &str) -> Result<Listing> {
        let invalid = |reason: String| Error::invalid_manifest(what, reason);
        if bytes.len() as u64 > MAX_LISTING_BYTES {
            return Err(invalid(format!(
                "{} bytes, over the {MAX_LISTING_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let l: Listing =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a listing: {e}")))?;
        if l.format != LISTING_FORMAT {
            return Err(invalid(format!("unknown listing format {:?}", l.format)));
        }
        if l.files.len() > MAX_DIR_FILES {
            return Err(invalid(format!("{} files, over the limit", l.files.len())));
        }
        if let Some(f) = l
            .files
            .iter()
            .find(|f| f.pack.is_some_and(|(i, _)| i as usize >= l.packs.len()))
        {
            return Err(invalid(format!(
                "file {:?} names a pack that is not listed",
                Name(&f.path)
            )));
        }
        Ok(l)
    }

    /// Validates a listing built in memory (a delta applied to its base) exactly as
    /// [`Listing::parse`] validates one read from bytes.
    pub(crate) fn parse_value(self, unit: &RepoPath, what: &str) -> Result<Listing> {
        self.validate(unit, MAX_DIR_FILES).map_err(|reason| {
            Error::Manifest(ManifestError::InvalidManifest {
                path: what.into(),
                reason,
            })
        })?;
        Ok(self)
    }

    fn validate(&self, unit: &RepoPath, max_files: usize) -> std::result::Result<(), String> {
        if self.format != LISTING_FORMAT {
            return Err(format!(
                "unknown listing format {:?} (this nshard reads {LISTING_FORMAT:?})",
                self.format.chars().take(100).collect::<String>()
            ));
        }
        if self.files.len() > max_files {
            return Err(format!(
                "{} files, over the limit of {max_files}",
                self.files.len()
            ));
        }
        if self.packs.len() > self.files.len() {
            return Err(format!(
                "{} packs for {} files",
                self.packs.len(),
                self.files.len()
            ));
        }
        for (i, p) in self.packs.iter().enumerate() {
            if p.size == 0 || p.size > MAX_PACK_BYTES {
                return Err(format!(
                    "pack {i} has size {}, outside 1..={MAX_PACK_BYTES}",
                    p.size
                ));
            }
        }
        let mut lower: HashSet<String> = HashSet::with_capacity(self.files.len());
        let mut prev: Option<&str> = None;
        let mut total: u64 = 0;
        for f in &self.files {
            let name = Name(&f.path);
            RepoPath::parse(&format!("{}/{}", unit.as_str(), f.path))
                .map_err(|e| format!("file {name:?}: {e}"))?;
            if let Some(p) = prev {
                if p.as_bytes() >= f.path.as_bytes() {
                    return Err(if p == f.path {
                        format!("file {name:?} appears twice")
                    } else {
                        format!("file {name:?} is out of order (paths must be sorted bytewise)")
                    });
                }
            }
            prev = Some(&f.path);
            if !lower.insert(f.path.to_lowercase()) {
                return Err(format!(
                    "file {name:?} differs from another only by case (they would be one file on macOS and Windows)"
                ));
            }
            if f.size > MAX_FILE_SIZE {
                return Err(format!("file {name:?} has size {}, over the limit", f.size));
            }
            total = total
                .checked_add(f.size)
                .ok_or_else(|| "file sizes overflow".to_string())?;
            match (&f.pack, &f.chunks) {
                (None, None) if f.size == 0 => {}
                (Some((i, off)), None) => {
                    let p = self.packs.get(*i as usize).ok_or_else(|| {
                        format!("file {name:?} names pack {i}, which is not listed")
                    })?;
                    if off.checked_add(f.size).is_none_or(|end| end > p.size) || f.size == 0 {
                        return Err(format!(
                            "file {name:?} spans {off}+{} bytes, outside its {}-byte pack",
                            f.size, p.size
                        ));
                    }
                }
                (None, Some(c)) => {
                    if c.len() > MAX_CHUNKS {
                        return Err(format!("file {name:?} has too many chunks"));
                    }
                    let mut sum: u64 = 0;
                    for (_, s) in c {
                        if *s == 0 || *s > MAX_CHUNK_BYTES {
                            return Err(format!("file {name:?} has a chunk of size {s}"));
                        }
                        sum = sum.saturating_add(*s);
                    }
                    if sum != f.size {
                        return Err(format!(
                            "file {name:?}: chunk sizes add up to {sum}, not its size {}",
                            f.size
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "file {name:?} needs exactly one of a pack slice or a chunk list"
                    ))
                }
            }
        }
        // A file where another file's parent directory must be (`a` and `a/b`, in any case).
        for f in &self.files {
            let l = f.path.to_lowercase();
            let mut at = 0;
            while let Some(i) = l[at..].find('/') {
                let dir = &l[..at + i];
                if lower.contains(dir) {
                    return Err(format!(
                        "file {:?} is also a directory of {:?}",
                        &f.path[..at + i],
                        f.path.chars().take(200).collect::<String>()
                    ));
                }
                at += i + 1;
            }
        }
        Ok(())
    }

    /// Where `f`'s bytes are (the listing was validated, so indexes are in range).
    pub fn location<'a>(&'a self, f: &'a FileEntry) -> Location<'a> {
        match (&f.pack, &f.chunks) {
            (Some((i, off)), _) => Location::Pack {
                pack: &self.packs[*i as usize],
                offset: *off,
            },
            (None, Some(c)) => Location::Chunks(c),
            (None, None) => Location::Empty,
        }
    }

    /// Total size of the files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The files under `sub` (a path relative to the unit, without trailing slash), or all.
    pub fn select<'a>(&'a self, sub: Option<&'a str>) -> impl Iterator<Item = &'a FileEntry> + 'a {
        self.files.iter().filter(move |f| in_subtree(&f.path, sub))
    }

    /// Every object the files under `sub` need, with its raw size: packs and chunks, each once.
    pub fn objects(&self, sub: Option<&str>) -> Vec<(ObjectId, u64)> {
        self.objects_of(self.select(sub))
    }

    /// Every object `files` (entries of this listing) need, with its raw size, each once.
    pub fn objects_of<'a>(
        &'a self,
        files: impl IntoIterator<Item = &'a FileEntry>,
    ) -> Vec<(ObjectId, u64)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for f in files {
            match self.location(f) {
                Location::Empty => {}
                Location::Pack { pack, .. } => {
                    if seen.insert(pack.id) {
                        out.push((pack.id, pack.size));
                    }
                }
                Location::Chunks(c) => {
                    for (id, s) in c {
                        if seen.insert(*id) {
                            out.push((*id, *s));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Parses `bytes` as JSON of a listing object (`noun` in the message: "a listing", "a delta
/// listing"), refusing more than [`MAX_LISTING_BYTES`] first. Errors are reasons, for the
/// caller's `InvalidManifest`.
pub(super) fn parse_bounded<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    noun: &str,
) -> std::result::Result<T, String> {
    if bytes.len() as u64 > MAX_LISTING_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_LISTING_BYTES}-byte limit",
            bytes.len()
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not {noun}: {e}"))
}

/// Whether unit path `path` is under `sub` (a file named by itself, or a directory; all of
/// them with `None`).
pub(crate) fn in_subtree(path: &str, sub: Option<&str>) -> bool {
    sub.is_none_or(|s| {
        path.strip_prefix(s)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether the file names of a unit (relative paths, any order) can be committed: no two the
/// same but for case, no file where another file's directory is (in any case), and no two the
/// same once NFC-normalised (one file on macOS, whose filesystem normalises names). Readers
/// refuse the first two; the third reads today, so it is refused only when committing.
pub(crate) fn check_names<'a>(
    paths: impl Iterator<Item = &'a str>,
) -> std::result::Result<(), String> {
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    let mut by_lower: HashMap<String, &str> = HashMap::new();
    let mut by_nfc: HashMap<String, &str> = HashMap::new();
    for p in paths {
        if let Some(other) = by_lower.insert(p.to_lowercase(), p) {
            return Err(format!(
                "{:?} and {:?} differ only by case (one file on macOS and Windows)",
                Name(other),
                Name(p)
            ));
        }
        let n = nfc.normalize(p).into_owned();
        if let Some(other) = by_nfc.insert(n, p) {
            return Err(format!(
                "{:?} and {:?} are the same name once Unicode-normalised (one file on macOS)",
                Name(other),
                Name(p)
            ));
        }
    }
    for p in by_lower.keys() {
        let mut at = 0;
        while let Some(i) = p[at..].find('/') {
            if let Some(file) = by_lower.get(&p[..at + i]) {
                return Err(format!(
                    "{:?} is a file and also a directory of {:?}",
                    Name(file),
                    Name(by_lower[p])
                ));
            }
            at += i + 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64, pack: Option<(u32, u64)>) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            exec: false,
            sha256: ObjectId::of(path.as_bytes()),
            pack,
            chunks: None,
        }
    }

    fn listing(files: Vec<FileEntry>) -> Listing {
        Listing {
            format: LISTING_FORMAT.into(),
            packs: vec![PackRef {
                id: ObjectId::of(b"p"),
                size: 100,
            }],
            files,
        }
    }

    fn check(l: &Listing) -> std::result::Result<Listing, String> {
        let unit = RepoPath::parse("data").expect("unit");
        Listing::parse_limited(&l.to_bytes(), &unit, "listing x", 3).map_err(|e| e.to_string())
    }

    #[test]
    fn a_valid_listing_round_trips() {
        let l = listing(vec![
            entry("a", 4, Some((0, 0))),
            entry("b/c", 4, Some((0, 4))),
            entry("e", 0, None),
        ]);
        assert_eq!(check(&l).expect("valid"), l);
        assert_eq!(l.objects(Some("b")).len(), 1);
        assert_eq!(l.select(Some("b")).count(), 1);
        assert_eq!(l.select(Some("")).count(), 0);
    }

    #[test]
    fn hostile_listings_are_refused() {
        let cases: Vec<(&str, Vec<FileEntry>, &str)> = vec![
            ("dotdot", vec![entry("../x", 1, Some((0, 0)))], "'..'"),
            (
                "absolute",
                vec![entry("/x", 1, Some((0, 0)))],
                "empty path component",
            ),
            ("git", vec![entry("a/.git/config", 1, Some((0, 0)))], ".git"),
            (
                "control",
                vec![entry("a\u{1b}[2J", 1, Some((0, 0)))],
                "control",
            ),
            (
                "duplicate",
                vec![entry("a", 1, Some((0, 0))), entry("a", 1, Some((0, 0)))],
                "appears twice",
            ),
            (
                "order",
                vec![entry("b", 1, Some((0, 0))), entry("a", 1, Some((0, 0)))],
                "out of order",
            ),
            (
                "case twins",
                vec![entry("A", 1, Some((0, 0))), entry("a", 1, Some((0, 0)))],
                "only by case",
            ),
            (
                "file and dir",
                vec![entry("a", 1, Some((0, 0))), entry("a/b", 1, Some((0, 0)))],
                "also a directory",
            ),
            (
                "count",
                (0..4).map(|i| entry(&format!("f{i}"), 0, None)).collect(),
                "4 files, over the limit of 3",
            ),
            (
                "pack range",
                vec![entry("a", 10, Some((0, 95)))],
                "outside its 100-byte pack",
            ),
            (
                "pack index",
                vec![entry("a", 1, Some((3, 0)))],
                "names pack 3",
            ),
            ("no data", vec![entry("a", 1, None)], "exactly one"),
        ];
        for (what, files, why) in cases {
            let err = check(&listing(files)).expect_err(what);
            assert!(err.contains(why), "{what}: expected {why:?} in {err}");
        }
        let mut l = listing(vec![entry("a", 4, None)]);
        l.files[0].chunks = Some(vec![(ObjectId::of(b"c"), 3)]);
        assert!(check(&l).expect_err("sum").contains("add up to 3"));
        l.format = "neuroshard.listing/9".into();
        assert!(check(&l)
            .expect_err("format")
            .contains("unknown listing format"));
    }
}
