//! A directory unit's history (through the manifests' parents in the local store) and the
//! objects each version needs.

use super::{DirManifest, DirVersionBytes};
use crate::error::StoreError;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::path::RepoPath;
use crate::repo::Repo;

/// One version in a directory's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DirVersion {
    /// The version id.
    pub version: ObjectId,
    /// Its manifest, or `None` when the local store does not have it (the walk stops there).
    pub manifest: Option<DirManifest>,
}

impl Repo {
    /// The history of `d`, newest first, as far as the local store has it (at most 1 000 000
    /// versions; a cycle ends the walk).
    pub fn dir_history(&self, d: &DirVersionBytes) -> Result<Vec<DirVersion>> {
        let mut out = vec![DirVersion {
            version: d.version,
            manifest: Some(d.manifest.clone()),
        }];
        let mut seen = std::collections::HashSet::from([d.version]);
        let mut next = d.manifest.version.parent;
        while let Some(v) = next {
            if !seen.insert(v) || out.len() >= 1_000_000 {
                break;
            }
            match self.load_dir_version(&v) {
                Ok(m) => {
                    next = m.version.parent;
                    out.push(DirVersion {
                        version: v,
                        manifest: Some(m),
                    });
                }
                Err(Error::Store(StoreError::ObjectMissing(_))) => {
                    out.push(DirVersion {
                        version: v,
                        manifest: None,
                    });
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every object version `m` needs besides its manifest object: its listing objects (a delta
    /// listing and each base down to the full listing), then the packs and chunks of the files
    /// under `sub` (all files when `None`), with their raw sizes. `None` when a listing object is
    /// not in the local store.
    pub fn dir_objects(
        &self,
        m: &DirManifest,
        sub: Option<&str>,
    ) -> Result<Option<Vec<(ObjectId, u64)>>> {
        let r = match self.load_listing_chain(m) {
            Ok(r) => r,
            Err(Error::Store(StoreError::ObjectMissing(_))) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out: Vec<(ObjectId, u64)> =
            r.chain.iter().map(|id| (*id, super::MAX_LISTING)).collect();
        out.extend(r.listing.objects(sub));
        Ok(Some(out))
    }

    /// The version of unit `unit` (whose work-tree manifest is `d`) named by `prefix`: an id or
    /// unique prefix in its history, as far as the local store has it.
    pub(crate) fn find_dir_version(
        &self,
        unit: &RepoPath,
        d: &DirVersionBytes,
        prefix: &str,
    ) -> Result<ObjectId> {
        crate::repo::find_in_history(
            prefix,
            (d.version, d.manifest.version.parent),
            &format!("{unit}/"),
            |v| self.load_dir_version(v).map(|m| m.version.parent),
        )
    }

    /// The manifest of version `v` of the unit whose work-tree manifest is `d` (that one without
    /// reading the store).
    pub(crate) fn dir_manifest_at(&self, d: &DirVersionBytes, v: ObjectId) -> Result<DirManifest> {
        if v == d.version {
            Ok(d.manifest.clone())
        } else {
            self.load_dir_version(&v)
        }
    }
}
