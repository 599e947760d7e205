//! `nshard log --stats`: for each version of a model file, how much it changed from its parent,
//! tensor by tensor and as a whole.
//!
//! The whole-model figure is ‖Δ‖ / ‖old‖ over every float tensor the two versions share (same
//! name, dtype and shape): unchanged tensors add to ‖old‖ only. Their norms are computed once per
//! distinct tensor content and reused along the history, which is walked oldest first, so a long
//! history reads each version's changed tensors and the oldest version's unchanged ones.

use std::collections::HashMap;

use serde::Serialize;

use super::diff::{tensor_diff, Bytes, TensorChange, TensorChangeKind, TensorGlob};
use super::history::HistoryNode;
use super::stored::StoredSource;
use super::tensor_stats::{self, TensorStats};
use crate::error::Result;
use crate::id::ObjectId;
use crate::manifest::{Manifest, TensorEntry};
use crate::path::RepoPath;
use crate::repo::Repo;

/// The most changed tensor of a version.
#[derive(Clone, Debug, Serialize)]
pub struct MostChanged {
    /// Its name.
    pub name: String,
    /// Its relative change (`None` when its old norm is 0).
    pub rel_l2: Option<f64>,
    /// Its absolute change.
    pub l2: f64,
}

/// How one version changed from its parent.
#[derive(Clone, Debug, Serialize)]
pub struct VersionChange {
    /// The version.
    pub version: ObjectId,
    /// Its parent, if any.
    pub parent: Option<ObjectId>,
    /// Commit time.
    pub timestamp: String,
    /// Commit message.
    pub message: String,
    /// ‖Δ‖ / ‖old‖ over every float tensor both versions have alike.
    pub rel_l2: Option<f64>,
    /// Tensors whose bytes changed.
    pub changed_tensors: usize,
    /// Tensors in the version.
    pub tensors_total: usize,
    /// NaN and ±Inf values in this version's changed tensors.
    pub non_finite: u64,
    /// The tensor with the largest relative change.
    pub most_changed: Option<MostChanged>,
    /// Why there are no figures (first version, parent or data not local, no tensor table).
    pub unavailable: Option<String>,
    /// Every tensor of the version: changed ones with their figures, then the unchanged ones.
    pub tensors: Vec<TensorChange>,
}

/// A tensor's content, as its manifest entry identifies it.
type ContentKey = (ObjectId, bool);

fn content_key(t: &TensorEntry) -> ContentKey {
    (t.sha256, t.digest.is_bytes())
}

impl Repo {
    /// How each version of `path` in its local history changed from its parent, newest first.
    pub fn log_stats(
        &self,
        path: &RepoPath,
        glob: Option<&TensorGlob>,
    ) -> Result<Vec<VersionChange>> {
        let wt = self.require_manifest(path)?;
        let history = self.history(&wt)?;
        let present: Vec<(ObjectId, &Manifest)> = history
            .iter()
            .map_while(|n| match n {
                HistoryNode::Present { version, manifest } => Some((*version, &**manifest)),
                _ => None,
            })
            .collect();
        let mut norms: HashMap<ContentKey, f64> = HashMap::new();
        let mut out = Vec::with_capacity(present.len());
        for (i, (v, m)) in present.iter().enumerate().rev() {
            let mut entry = VersionChange {
                version: *v,
                parent: m.version.parent,
                timestamp: m.version.timestamp.clone(),
                message: m.version.message.clone(),
                rel_l2: None,
                changed_tensors: 0,
                tensors_total: m.tensors.as_ref().map_or(0, Vec::len),
                non_finite: 0,
                most_changed: None,
                unavailable: None,
                tensors: Vec::new(),
            };
            match (present.get(i + 1), m.version.parent) {
                (_, None) => entry.unavailable = Some("first version".into()),
                (None, Some(p)) => {
                    entry.unavailable = Some(format!(
                        "its parent {} is not in the local store (nshard pull --all-versions)",
                        p.short()
                    ))
                }
                (Some((pv, pm)), Some(_)) => {
                    if let Err(why) =
                        self.version_change(path, (*pv, pm), (*v, m), glob, &mut norms, &mut entry)
                    {
                        entry.unavailable = Some(why);
                    }
                }
            }
            out.push(entry);
        }
        out.reverse();
        Ok(out)
    }

    /// Fills `entry` with the figures of `new` against its parent `old`; an error is why there
    /// are none.
    fn version_change(
        &self,
        path: &RepoPath,
        (ov, old): (ObjectId, &Manifest),
        (nv, new): (ObjectId, &Manifest),
        glob: Option<&TensorGlob>,
        norms: &mut HashMap<ContentKey, f64>,
        entry: &mut VersionChange,
    ) -> std::result::Result<(), String> {
        let (Some(ot), Some(nt)) = (&old.tensors, &new.tensors) else {
            return Err("no tensor table (not a recognised model file)".into());
        };
        let mut d = tensor_diff((ot, &old.chunks), (nt, &new.chunks));
        if let Some(g) = glob {
            d.entries.retain(|e| g.matches(&e.name));
            d.unchanged_tensors.retain(|e| g.matches(&e.name));
        }
        self.fill_stats(
            path,
            &mut d,
            (ot, Bytes::Stored(ov, old)),
            (nt, Bytes::Stored(nv, new)),
        )
        .map_err(|e| e.to_string())?;
        let old_by: HashMap<&str, &TensorEntry> = ot.iter().map(|t| (t.name.as_str(), t)).collect();
        let new_by: HashMap<&str, &TensorEntry> = nt.iter().map(|t| (t.name.as_str(), t)).collect();
        let (mut diff_sq, mut old_sq) = (0.0f64, 0.0f64);
        for e in &d.entries {
            let Some(TensorStats::Float(f)) = &e.stats else {
                continue;
            };
            diff_sq += f.l2 * f.l2;
            old_sq += f.old_sq;
            entry.non_finite += f.non_finite;
            if f.all_finite {
                if let Some(o) = old_by.get(e.name.as_str()) {
                    norms.insert(content_key(o), f.old_sq);
                }
                if let Some(n) = new_by.get(e.name.as_str()) {
                    norms.insert(content_key(n), f.new_sq);
                }
            }
        }
        // Unchanged float tensors add their norm to ‖old‖.
        let mut src = StoredSource::new(self.store(), old);
        for e in &d.unchanged_tensors {
            let Some(o) = old_by.get(e.name.as_str()) else {
                continue;
            };
            let key = content_key(o);
            let sq = match norms.get(&key) {
                Some(sq) => Some(*sq),
                None => {
                    let sq = tensor_stats::sum_sq(&mut src, o)
                        .map_err(|e| format!("reading {path} (version {}): {e}", ov.short()))?;
                    if let Some(sq) = sq {
                        norms.insert(key, sq);
                    }
                    sq
                }
            };
            old_sq += sq.unwrap_or(0.0);
        }
        entry.changed_tensors = d.changed + d.retyped;
        entry.rel_l2 = (old_sq > 0.0).then(|| diff_sq.sqrt() / old_sq.sqrt());
        entry.most_changed = d
            .entries
            .iter()
            .filter(|e| e.change == TensorChangeKind::Changed)
            .filter_map(|e| Some((e, e.stats.as_ref()?)))
            .filter_map(|(e, s)| match s {
                TensorStats::Float(f) => Some((e, f)),
                _ => None,
            })
            .max_by(|a, b| {
                let key = |f: &tensor_stats::FloatStats| f.rel_l2.unwrap_or(f64::INFINITY);
                key(a.1).total_cmp(&key(b.1))
            })
            .map(|(e, f)| MostChanged {
                name: e.name.clone(),
                rel_l2: f.rel_l2,
                l2: f.l2,
            });
        entry.tensors = d.entries;
        entry.tensors.append(&mut d.unchanged_tensors);
        Ok(())
    }
}
