//! Directory units: a directory of many files versioned as one unit. One small manifest
//! `<dir>.shard.json` (format [`DIR_FORMAT`]) goes into git; it names a [`Listing`] stored as an
//! object, which holds every file's path, size, executable bit, SHA-256 and where its bytes are.
//! Files under [`PACK_FILE_MAX`] bytes are concatenated into pack objects of about
//! [`PACK_TARGET`] bytes, compressed as a whole; larger files are cut into chunks like single
//! files. Packs, chunks and listings are ordinary content-addressed objects, so push, pull, the
//! server and S3 move them unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ManifestError;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::manifest::{check_placement, VersionInfo, MAX_FILE_SIZE, MAX_MESSAGE_BYTES};
use crate::path::RepoPath;
use crate::repo::Repo;

mod checkout;
mod commit;
mod delta;
mod diff;
mod history;
mod listing;
mod pack;
mod status;

pub use crate::outcome::DirCommit;
pub use checkout::{DirCheckout, DirCheckoutOptions, Unversioned};
pub use delta::{is_delta, ListingDelta, Resolved, DELTA_FORMAT, MAX_CHAIN};
pub use history::DirVersion;
pub use listing::{FileEntry, Listing, Location, PackRef, LISTING_FORMAT, MAX_DIR_FILES};
pub use status::{DirChange, DirChangeKind, DirState, DirStatus, RemoteCheck};

pub use crate::manifest::{is_dir_manifest, DIR_FORMAT};
/// Files smaller than this go into packs (the smallest chunk a large file is cut into is 1 MiB,
/// so a file below it is one object either way; packing it costs no deduplication between
/// versions and saves one object, one request and one fsync per file).
pub const PACK_FILE_MAX: u64 = 1 << 20;
/// A pack is closed once it holds this many bytes.
pub const PACK_TARGET: u64 = 4 << 20;
/// zstd level of packs. Level 1 (the default of chunks) suits float weights, where higher levels
/// gain nothing; packs hold small files of every kind (text, CSV, JSON, small binaries), where
/// level 3 is measured 8 % smaller than level 1 on bench/gen_dataset.py's 1 KB files in 4 MiB
/// packs (11.18 MB against 12.15 MB for 20 MB), for about 30 % more compression time.
const PACK_ZSTD_LEVEL: i32 = 3;
/// Default of `dir_threshold`: `nshard track DIR` makes a directory one unit when it holds at
/// least this many files.
pub const DEFAULT_DIR_THRESHOLD: usize = 1000;
/// Largest directory manifest accepted.
const MAX_DIR_MANIFEST_BYTES: u64 = 1 << 20;

/// A directory manifest: one version of one directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirManifest {
    /// Always [`DIR_FORMAT`].
    pub format: String,
    /// The directory's repository-relative path.
    pub path: RepoPath,
    /// Number of files.
    pub files: u64,
    /// Their total size in bytes.
    pub size: u64,
    /// The listing object.
    pub listing: ObjectId,
    /// Version metadata (the parent is the previous directory manifest's id).
    pub version: VersionInfo,
}

/// A directory manifest with its version id and bytes.
#[derive(Clone, Debug)]
pub struct DirVersionBytes {
    /// The manifest.
    pub manifest: DirManifest,
    /// Its version id (SHA-256 of `bytes`).
    pub version: ObjectId,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
}

impl DirManifest {
    /// Canonical bytes: pretty JSON and a newline; the version id is their SHA-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Parses and validates; with `expected`, it must describe that directory.
    pub fn parse(bytes: &[u8], source: &Path, expected: Option<&RepoPath>) -> Result<DirManifest> {
        let invalid = |reason: String| Error::invalid_manifest(source, reason);
        if bytes.len() as u64 > MAX_DIR_MANIFEST_BYTES {
            return Err(invalid(format!(
                "{} bytes, over the {MAX_DIR_MANIFEST_BYTES}-byte limit of directory manifests",
                bytes.len()
            )));
        }
        let m: DirManifest = serde_json::from_slice(bytes).map_err(|e| {
            if crate::manifest::has_conflict_markers(bytes) {
                Error::Manifest(ManifestError::ConflictMarkers(source.to_path_buf()))
            } else {
                invalid(format!("not valid: {e}"))
            }
        })?;
        if m.format != DIR_FORMAT {
            return Err(invalid(format!(
                "not a directory manifest ({:?})",
                m.format
            )));
        }
        if m.files > MAX_DIR_FILES as u64 {
            return Err(invalid(format!(
                "{} files, over the limit of {MAX_DIR_FILES}",
                m.files
            )));
        }
        if m.size > MAX_FILE_SIZE.saturating_mul(MAX_DIR_FILES as u64) {
            return Err(invalid(format!("size {} is over the limit", m.size)));
        }
        if m.version.message.len() > MAX_MESSAGE_BYTES {
            return Err(invalid("commit message over 64 KiB".into()));
        }
        time::OffsetDateTime::parse(
            &m.version.timestamp,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| invalid(format!("bad timestamp {:?}: {e}", m.version.timestamp)))?;
        check_placement(&m.path, expected).map_err(invalid)?;
        Ok(m)
    }

    /// Checks that `listing` is the one this manifest names and agrees with its counts.
    fn check_listing(&self, l: &Listing) -> Result<()> {
        if l.files.len() as u64 != self.files || l.total_size() != self.size {
            return Err(Error::Manifest(ManifestError::InvalidManifest {
                path: format!("listing {}", self.listing).into(),
                reason: format!(
                    "holds {} files of {} bytes, the manifest of {} says {} files of {} bytes",
                    l.files.len(),
                    l.total_size(),
                    self.path,
                    self.files,
                    self.size
                ),
            }));
        }
        Ok(())
    }
}

impl Repo {
    /// The directory units: those in the config and those with a directory manifest in the work
    /// tree (a clone may have the manifest before the config names it). Sorted.
    pub fn dir_units(&self) -> Result<Vec<RepoPath>> {
        let mut out = self.scan_units()?;
        for d in &self.config().dirs {
            if let Ok(p) = RepoPath::parse(d) {
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The unit holding `p` (the unit itself, its manifest, or a path inside it) and the path
    /// inside it (`None` for the whole unit).
    pub fn unit_of(&self, units: &[RepoPath], p: &RepoPath) -> Option<(RepoPath, Option<String>)> {
        let s = p.data_path_of_manifest().unwrap_or_else(|| p.clone());
        for u in units {
            if s == *u {
                return Some((u.clone(), None));
            }
            if let Some(rest) = s.as_str().strip_prefix(u.as_str()) {
                if let Some(sub) = rest.strip_prefix('/') {
                    if !sub.is_empty() {
                        return Some((u.clone(), Some(sub.to_string())));
                    }
                }
            }
        }
        None
    }

    /// Reads the work tree's directory manifest of `unit`, if it exists.
    pub fn read_dir_manifest(&self, unit: &RepoPath) -> Result<Option<DirVersionBytes>> {
        let mpath = unit.manifest_path().to_path(self.root());
        let bytes = match crate::fsutil::read_limited(&mpath, MAX_DIR_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::Manifest(ManifestError::InvalidManifest {
                    path: mpath,
                    reason: e.to_string(),
                }))
            }
            Err(e) => return Err(Error::io("reading", mpath)(e)),
        };
        let manifest = DirManifest::parse(&bytes, &mpath, Some(unit))?;
        Ok(Some(DirVersionBytes {
            version: ObjectId::of(&bytes),
            manifest,
            bytes,
        }))
    }

    /// Loads directory version `v` from the local store.
    pub fn load_dir_version(&self, v: &ObjectId) -> Result<DirManifest> {
        let bytes = self.store().get(v, MAX_DIR_MANIFEST_BYTES)?;
        DirManifest::parse(&bytes, Path::new(&format!("object {v}")), None)
    }

    /// Loads and validates the listing `m` names from the local store (following a delta
    /// listing's bases).
    pub fn load_listing(&self, m: &DirManifest) -> Result<Listing> {
        Ok(self.load_listing_chain(m)?.listing)
    }

    /// Like [`Repo::load_listing`], also returning the ids of every listing object read.
    pub fn load_listing_chain(&self, m: &DirManifest) -> Result<Resolved> {
        let store = self.store();
        let r = delta::resolve(m.listing, &m.path, &mut |id| {
            store.get(id, listing::MAX_LISTING_BYTES)
        })?;
        m.check_listing(&r.listing)?;
        Ok(r)
    }

    /// Stores the manifest object of a work-tree directory manifest if the store lacks it (a
    /// clone has the manifest from git, not the object).
    pub fn store_dir_manifest_object(&self, d: &DirVersionBytes) -> Result<()> {
        if !self.store().has(&d.version) {
            let enc =
                crate::codec::Encoder::new().encode(&d.bytes, crate::codec::DataHint::Unknown);
            self.store().put_trusted(&d.version, &enc)?;
        }
        Ok(())
    }
}

/// The largest directory manifest, for callers fetching one.
pub const MAX_DIR_MANIFEST: u64 = MAX_DIR_MANIFEST_BYTES;
/// The largest listing, for callers fetching one.
pub const MAX_LISTING: u64 = listing::MAX_LISTING_BYTES;

/// One regular file found in a unit's directory.
pub(crate) struct Found {
    /// Path relative to the unit.
    pub rel: String,
    /// Absolute path.
    pub abs: std::path::PathBuf,
    /// Its metadata (lstat).
    pub md: std::fs::Metadata,
}

/// The regular files under the unit's directory, in bytewise order of their relative paths,
/// without following symlinks. A symlink or special file is an error (a unit holds regular files
/// only); temporary files of interrupted writers and `*.shard.json` manifests are skipped. A
/// missing directory holds no files.
pub(crate) fn walk_unit(root: &Path, unit: &RepoPath) -> Result<Vec<Found>> {
    walk_unit_with(root, unit, &mut Vec::new())
}

/// Removes the temporary files an interrupted checkout left inside the unit's directory. Only
/// under the exclusive repository lock (no other writer can be running), after [`walk_unit_with`].
pub(crate) fn remove_temps(temps: &[std::path::PathBuf]) {
    for t in temps {
        let _ = std::fs::remove_file(t);
    }
}

/// [`walk_unit`], also collecting the temporary files it skipped into `temps`.
pub(crate) fn walk_unit_with(
    root: &Path,
    unit: &RepoPath,
    temps: &mut Vec<std::path::PathBuf>,
) -> Result<Vec<Found>> {
    let dir = unit.to_path(root);
    // No component of the unit's own path may be a symlink either.
    let mut cur = root.to_path_buf();
    for c in unit.as_str().split('/') {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() || !md.is_dir() => {
                return Err(Error::Manifest(ManifestError::UnsafePath {
                    path: cur.display().to_string(),
                    reason: "is not a directory (a directory unit never follows symlinks)",
                }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("inspecting", &cur)(e)),
        }
    }
    let mut out = Vec::new();
    walk_dir(&dir, unit, "", &mut out, temps)?;
    // Paths are unique: an unstable sort gives the same order.
    out.sort_unstable_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(out)
}

/// Whether `name` may be a component of a repository path (the checks [`RepoPath::parse`]
/// applies to each component, done once per name rather than once per file below it).
fn plain_name(name: &str) -> bool {
    !name.contains('\\') && crate::portable::check_component(name).is_none()
}

/// Adds the regular files under `dir` (whose path relative to the unit is `rel`, `""` for the
/// unit itself) to `out`. Reads each directory once and stats each entry relative to it
/// (`DirEntry::metadata`), which is what makes `status` on 100 000 files fast.
fn walk_dir(
    dir: &Path,
    unit: &RepoPath,
    rel: &str,
    out: &mut Vec<Found>,
    temps: &mut Vec<std::path::PathBuf>,
) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(Error::io("scanning", dir))?;
    for ent in rd {
        let ent = ent.map_err(Error::io("scanning", dir))?;
        let abs = ent.path();
        let ft = ent.file_type().map_err(Error::io("inspecting", &abs))?;
        let os_name = ent.file_name();
        let lossy = os_name.to_string_lossy();
        if ft.is_file() && lossy.starts_with(fsutil::TMP_PREFIX) {
            temps.push(abs);
            continue;
        }
        let child = match os_name.to_str() {
            Some(n) if plain_name(n) => {
                if rel.is_empty() {
                    n.to_string()
                } else {
                    format!("{rel}/{n}")
                }
            }
            // The slow path only to name the reason (and whatever it refuses).
            _ => {
                let full = Path::new(unit.as_str()).join(rel).join(&os_name);
                let p = RepoPath::from_relative(&full)?;
                p.as_str()[unit.as_str().len() + 1..].to_string()
            }
        };
        if unit.as_str().len() + 1 + child.len() > crate::path::MAX_PATH_LEN {
            RepoPath::parse(&format!("{}/{child}", unit.as_str()))?;
        }
        if ft.is_dir() {
            walk_dir(&abs, unit, &child, out, temps)?;
            continue;
        }
        if lossy.ends_with(crate::manifest::MANIFEST_SUFFIX) {
            continue;
        }
        if !ft.is_file() {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: abs.display().to_string(),
                reason: "is a symlink or special file; a directory unit holds regular files only",
            }));
        }
        let md = ent.metadata().map_err(Error::io("inspecting", &abs))?;
        out.push(Found {
            rel: child,
            abs,
            md,
        });
        if out.len() > MAX_DIR_FILES {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: dir.display().to_string(),
                reason: "holds more files than a directory unit may (1 000 000)",
            }));
        }
    }
    Ok(())
}

/// Whether metadata says executable.
pub(crate) fn is_exec(md: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        md.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        false
    }
}
