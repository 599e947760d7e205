//! `diff` of a directory unit: the status's list of added, removed and modified files, and for
//! each large modified file (stored as chunks) how its blocks compare with the committed ones.

use super::{
    DirChange, DirChangeKind, DirManifest, DirState, DirStatus, Listing, Location, PACK_FILE_MAX,
};
use crate::error::RepoError;
use crate::error::{Error, Result};
use crate::formats::plan::Params;
use crate::id::ObjectId;
use crate::ingest;
use crate::manifest::BlockDiff;
use crate::path::RepoPath;
use crate::repo::Repo;

impl Repo {
    /// Like [`Repo::dir_status`], and each modified file that is large on either side (stored
    /// as chunks, or now at least [`PACK_FILE_MAX`] bytes) is cut as a commit would cut it
    /// (nothing is stored) and its blocks compared with the committed chunk list.
    pub fn dir_diff(&self, unit: &RepoPath, sub: Option<&str>) -> Result<DirStatus> {
        self.dir_diff_versions(unit, sub, None, None)
    }

    /// `diff` of a unit with versions, as for a file: `to` (a version id or unique prefix in the
    /// unit's history) against `from` (default: `to`'s parent, nothing for a first version); without
    /// `to`, the work tree against `from` (default: the committed version). Comparing two stored
    /// versions needs only their listings, not the files' data.
    pub fn dir_diff_versions(
        &self,
        unit: &RepoPath,
        sub: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<DirStatus> {
        if from.is_none() && to.is_none() {
            return self.work_tree_diff(unit, sub, None);
        }
        let d = self
            .read_dir_manifest(unit)?
            .ok_or(Error::Repo(RepoError::NotTracked {
                path: unit.manifest_path().as_str().into(),
                reason: crate::error::Untracked::NoVersion,
            }))?;
        let find = |prefix: &str| self.find_dir_version(unit, &d, prefix);
        let load = |v: ObjectId| self.dir_manifest_at(&d, v);
        let from_v = from.map(find).transpose()?;
        let Some(to) = to else {
            let v = from_v.expect("from is given when to is not");
            return self.work_tree_diff(unit, sub, Some((v, load(v)?)));
        };
        let to_v = find(to)?;
        let new_m = load(to_v)?;
        let old = match from_v.or(new_m.version.parent) {
            Some(v) => Some((v, load(v)?)),
            None => None,
        };
        let new_l = self.load_listing(&new_m)?;
        let old_l = match &old {
            Some((_, m)) => self.load_listing(m)?,
            None => Listing {
                format: String::new(),
                packs: Vec::new(),
                files: Vec::new(),
            },
        };
        let changes = compare_listings(&old_l, &new_l, sub);
        Ok(DirStatus {
            path: unit.clone(),
            sub: sub.map(String::from),
            version: old.map(|o| o.0),
            to: Some(to_v),
            state: if changes.is_empty() {
                DirState::Unchanged
            } else {
                DirState::Modified
            },
            files: new_l.select(sub).count(),
            not_checked_out: 0,
            changes,
            missing_objects: 0,
            remote: None,
        })
    }

    /// The work tree against `base` (default: the committed version), with block stats for large
    /// modified files.
    fn work_tree_diff(
        &self,
        unit: &RepoPath,
        sub: Option<&str>,
        base: Option<(ObjectId, DirManifest)>,
    ) -> Result<DirStatus> {
        let base = match base {
            Some(b) => Some(b),
            None => self
                .read_dir_manifest(unit)?
                .map(|d| (d.version, d.manifest)),
        };
        let mut st = self.dir_status_against(unit, sub, base.clone())?;
        if !st.changes.iter().any(|c| c.kind == DirChangeKind::Modified) {
            return Ok(st);
        }
        let Some((_, m)) = base else {
            return Ok(st);
        };
        let listing = self.load_listing(&m)?;
        for c in st
            .changes
            .iter_mut()
            .filter(|c| c.kind == DirChangeKind::Modified)
        {
            let Ok(i) = listing
                .files
                .binary_search_by(|f| f.path.as_bytes().cmp(c.path.as_bytes()))
            else {
                continue;
            };
            let old: Vec<(ObjectId, u64)> = match listing.location(&listing.files[i]) {
                Location::Chunks(ch) => ch.to_vec(),
                _ if c.size >= PACK_FILE_MAX => Vec::new(),
                _ => continue,
            };
            let full = format!("{}/{}", unit.as_str(), c.path);
            let abs = RepoPath::parse(&full)?.to_path(self.root());
            let got = ingest::ingest_file(
                &abs,
                &ingest::Options {
                    params: Params::ByKind(self.config().chunking),
                    store: None,
                    progress: &crate::progress::NoProgress,
                    label: &full,
                    trust_ctime: self.trust_ctime(),
                    sync_dirs: true,
                },
            )?;
            let new: Vec<(ObjectId, u64)> = got.chunks.iter().map(|k| (k.id, k.size)).collect();
            c.blocks = Some(BlockDiff::between(&old, &new, got.size));
        }
        Ok(st)
    }
}

/// Files added, removed and modified from listing `old` to listing `new` (under `sub`), in path
/// order; a file stored as chunks on either side gets its blocks compared.
fn compare_listings(old: &Listing, new: &Listing, sub: Option<&str>) -> Vec<DirChange> {
    let chunks = |l: &Listing, f: &super::FileEntry| match l.location(f) {
        Location::Chunks(c) => Some(c.to_vec()),
        _ => None,
    };
    let change = |path: &str, kind, size, old_size| DirChange {
        path: path.to_string(),
        kind,
        size,
        old_size,
        blocks: None,
        from_older: None,
        created_over: false,
    };
    let mut out = Vec::new();
    let (mut o, mut n) = (old.select(sub).peekable(), new.select(sub).peekable());
    loop {
        let order = match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) => a.path.as_bytes().cmp(b.path.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let a = o.next().expect("peeked");
                out.push(change(&a.path, DirChangeKind::Removed, a.size, None));
            }
            std::cmp::Ordering::Greater => {
                let b = n.next().expect("peeked");
                out.push(change(&b.path, DirChangeKind::Added, b.size, None));
            }
            std::cmp::Ordering::Equal => {
                let (a, b) = (o.next().expect("peeked"), n.next().expect("peeked"));
                if a.sha256 == b.sha256 && a.exec == b.exec {
                    continue;
                }
                let mut c = change(&b.path, DirChangeKind::Modified, b.size, Some(a.size));
                let (oc, nc) = (chunks(old, a), chunks(new, b));
                if oc.is_some() || nc.is_some() {
                    c.blocks = Some(BlockDiff::between(
                        &oc.unwrap_or_default(),
                        &nc.unwrap_or_default(),
                        b.size,
                    ));
                }
                out.push(c);
            }
        }
    }
    out
}
