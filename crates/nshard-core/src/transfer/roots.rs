//! Root records written by pushes: which refs of which repository need which versions (see
//! [`crate::remote::records`]). `nshard remote gc` keeps the union of what they name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, RemoteError, RemoteFailure, Result};
use crate::git::{GitTree, Reach, RefUpdate};
use crate::id::ObjectId;
use crate::remote::records::{
    now_secs, ref_key, repository_id, repository_name, PrunedVersion, RecordName, RetentionRecord,
    RootRecord, RECORD_FORMAT, RETENTION_SPACE,
};
use crate::remote::Store;
use crate::repo::Repo;
use crate::retry::Retry;

/// The record of one ref: its commit (or `None` when it was deleted) and its versions.
#[derive(Clone, Debug)]
pub(crate) struct RefRoots {
    pub refname: String,
    pub commit: Option<String>,
    pub tips: Vec<ObjectId>,
    pub versions: Vec<ObjectId>,
    pub provisional: bool,
}

/// The ref name a plain push outside git records the work tree's versions under.
pub(crate) const WORKTREE_REF: &str = "worktree";

impl GitTree {
    /// This clone's own id (`git config nshard.cloneid`, made on first use): a plain `nshard
    /// push` records the work tree's versions under `clone/<id>`, which only this clone's next
    /// plain push replaces.
    pub(crate) fn clone_id(&self) -> Result<String> {
        if let Ok(id) = self.run(&["config", "--local", "--get", "nshard.cloneid"]) {
            let id = crate::git::text(id);
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id);
            }
        }
        let seed = format!(
            "{}.{}.{:?}",
            self.top.display(),
            std::process::id(),
            std::time::SystemTime::now()
        );
        let id = ObjectId::of(seed.as_bytes()).to_hex()[..16].to_string();
        self.run(&["config", "--local", "nshard.cloneid", &id])?;
        Ok(id)
    }
}

impl GitTree {
    /// The version ids of the manifests in `reach`.
    fn version_ids(&self, reach: &Reach) -> Result<Vec<ObjectId>> {
        let mut seen = HashSet::new();
        Ok(self
            .manifests(reach)?
            .into_iter()
            .filter(|g| !g.bytes.is_empty())
            .map(|g| ObjectId::of(&g.bytes))
            .filter(|v| seen.insert(*v))
            .collect())
    }

    /// The record of ref `refname` at `commit` (`None`: deleted).
    pub(crate) fn ref_roots(&self, refname: &str, commit: Option<&str>) -> Result<RefRoots> {
        let (tips, versions) = match commit {
            Some(c) => (
                self.version_ids(&Reach::Tips(vec![c.to_string()]))?,
                self.version_ids(&Reach::History(vec![c.to_string()]))?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(RefRoots {
            refname: refname.to_string(),
            commit: commit.map(str::to_string),
            tips,
            versions,
            provisional: false,
        })
    }

    /// Whether commit `a` is an ancestor of (or is) commit `b`.
    pub(crate) fn is_ancestor(&self, a: &str, b: &str) -> bool {
        self.run(&["merge-base", "--is-ancestor", a, b]).is_ok()
    }

    /// The URL of git remote `remote` (a configured name, or already a URL or path as git passes
    /// it to a hook when none is configured).
    pub(crate) fn remote_url(&self, remote: &str) -> Option<String> {
        self.run(&["remote", "get-url", "--", remote])
            .ok()
            .map(crate::git::text)
            .filter(|u| !u.is_empty())
            .or_else(|| {
                (remote.contains(['/', ':']) || remote.starts_with('.')).then(|| remote.to_string())
            })
    }

    /// The git remote a push of the current branch goes to: its upstream's remote, else
    /// `origin`, else the only remote.
    pub(crate) fn default_remote(&self) -> Option<String> {
        let branch = self
            .run(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()
            .map(crate::git::text);
        if let Some(b) = branch.filter(|b| !b.is_empty()) {
            let key = format!("branch.{b}.remote");
            if let Ok(r) = self.run(&["config", "--get", &key]).map(crate::git::text) {
                if !r.is_empty() && r != "." {
                    return Some(r);
                }
            }
        }
        let remotes = crate::git::text(self.run(&["remote"]).ok()?);
        let names: Vec<&str> = remotes.lines().collect();
        if names.contains(&"origin") {
            Some("origin".into())
        } else if names.len() == 1 {
            Some(names[0].to_string())
        } else {
            None
        }
    }

    /// The branches and tags git remote `remote` has now, peeled to commits (`git ls-remote`).
    pub(crate) fn ls_remote(&self, remote: &str) -> Result<HashMap<String, String>> {
        let out = self.run(&["ls-remote", "--heads", "--tags", "--", remote])?;
        let mut refs = HashMap::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let Some((id, name)) = line.split_once('\t') else {
                continue;
            };
            match name.strip_suffix("^{}") {
                // An annotated tag's peeled commit wins over the tag object.
                Some(tag) => {
                    refs.insert(tag.to_string(), id.to_string());
                }
                None => {
                    refs.entry(name.to_string())
                        .or_insert_with(|| id.to_string());
                }
            }
        }
        Ok(refs)
    }
}

/// The repository a clone belongs to, as records name it: the URL of git remote `git_remote`
/// (or of the default one), or the local path when there is none.
pub(crate) fn repository_of(repo: &Repo, git_remote: Option<&str>) -> String {
    let tree = repo.git_tree().ok();
    let url = tree.as_ref().and_then(|t| {
        let name = git_remote
            .map(str::to_string)
            .or_else(|| t.default_remote())?;
        t.remote_url(&name)
    });
    repository_name(url.as_deref(), repo.root())
}

/// The records a `git push` with `updates` should leave (one per ref; a deletion records no
/// versions).
///
/// A fast-forward or a new ref is recorded as it will be. An update git may still refuse (not a
/// fast-forward: a force-push, or a push git rejects because the remote moved; a deletion) is
/// recorded *provisionally*, keeping what the ref named before too, until gc's refresh sees where
/// the git remote's ref went. An update over a commit this clone does not have (git refuses it
/// unless forced) records nothing: the ref's record stays as it was.
pub(crate) fn records_for_updates(tree: &GitTree, updates: &[RefUpdate]) -> Result<Vec<RefRoots>> {
    let zero = |id: &str| id.bytes().all(|b| b == b'0');
    let mut out = Vec::new();
    for u in updates {
        let new = (!zero(&u.local_id)).then_some(u.local_id.as_str());
        let old = (!zero(&u.remote_id)).then_some(u.remote_id.as_str());
        let mut r = tree.ref_roots(&u.remote_ref, new)?;
        if let Some(old) = old {
            if tree.commit_id(old).is_none() {
                continue;
            }
            if !new.is_some_and(|n| tree.is_ancestor(old, n)) {
                let before = tree.ref_roots(&u.remote_ref, Some(old))?;
                for v in before.versions {
                    if !r.versions.contains(&v) {
                        r.versions.push(v);
                    }
                }
                r.provisional = true;
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Writes one root record per ref. Returns how many were written.
pub(crate) async fn write_records(
    remote: &Arc<dyn Store>,
    repository: &str,
    refs: Vec<RefRoots>,
    retry: &Retry,
) -> Result<usize> {
    let space = repository_id(repository);
    let mut n = 0;
    for r in refs {
        let record = RootRecord {
            format: RECORD_FORMAT.into(),
            repository: repository.to_string(),
            refname: r.refname.clone(),
            commit: r.commit,
            created: now_secs(),
            tips: r.tips,
            versions: r.versions,
            provisional: r.provisional,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| {
            Error::Remote(RemoteError::Failed {
                remote: remote.display_url(),
                kind: RemoteFailure::Other,
                reason: format!("cannot encode a record: {e}"),
            })
        })?;
        let name = RecordName::new(&space, &ref_key(&r.refname));
        let (res, _) = retry.run(|| remote.put_record(&name, bytes.clone())).await;
        res?;
        n += 1;
    }
    Ok(n)
}

/// The newest retention record on `remote` (`None` when no retention was ever set).
pub async fn read_retention(remote: &Arc<dyn Store>) -> Result<Option<RetentionRecord>> {
    let names = remote.list_records().await?;
    retention_in(remote, &names).await
}

/// What a push needs to know of the remote's gc state: the versions retention pruned, and
/// whether gc runs there (it has left marks), in which case a push re-checks at its end the
/// objects it relied on.
pub(crate) async fn gc_state(
    remote: &Arc<dyn Store>,
) -> Result<(HashMap<ObjectId, PrunedVersion>, bool)> {
    let names = remote.list_records().await?;
    let active = names
        .iter()
        .any(|n| n.space() == crate::remote::records::GC_SPACE);
    let pruned = retention_in(remote, &names)
        .await?
        .map(|r| r.pruned.into_iter().map(|p| (p.version, p)).collect())
        .unwrap_or_default();
    Ok((pruned, active))
}

/// The newest retention record among `names`.
async fn retention_in(
    remote: &Arc<dyn Store>,
    names: &[RecordName],
) -> Result<Option<RetentionRecord>> {
    let Some(newest) = names
        .iter()
        .filter(|n| n.space() == RETENTION_SPACE)
        .max_by_key(|n| n.nanos())
    else {
        return Ok(None);
    };
    match remote.get_record(newest).await? {
        Some(bytes) => RetentionRecord::parse(&bytes, newest).map(Some),
        // Replaced by a gc run since the listing: read again once.
        None => Ok(None),
    }
}

/// The versions retention pruned from `remote`, by id.
pub async fn pruned_versions(remote: &Arc<dyn Store>) -> Result<HashMap<ObjectId, PrunedVersion>> {
    Ok(read_retention(remote)
        .await?
        .map(|r| r.pruned.into_iter().map(|p| (p.version, p)).collect())
        .unwrap_or_default())
}
