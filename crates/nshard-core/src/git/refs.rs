//! Which manifest versions git can still reach. `gc` keeps every version named by a manifest in
//! any commit reachable from any ref, any reflog entry (HEAD's and every branch's, so commits
//! dropped by `git reset --hard` or an amend stay until git itself expires them), `ORIG_HEAD`,
//! `FETCH_HEAD` and the other special heads, every stash entry (with its index and untracked-files
//! commits), the index of every worktree and every worktree's HEAD. `push` sends what local
//! branches and tags reach; the `pre-push` hook what the commits being pushed add.
//!
//! One `git rev-list --objects` walk lists the blobs; one `git cat-file --batch` reads the
//! manifests among them, each distinct blob once however many commits hold it.

use std::collections::HashSet;

use super::{read_blobs, text, GitTree};
use crate::error::GitError;
use crate::error::{Error, Result};
use crate::path::RepoPath;

/// A manifest blob found in git.
#[derive(Clone, Debug)]
pub(crate) struct GitManifest {
    /// The blob's git object id.
    pub oid: String,
    /// Where it was found, for messages: `git:models/m.safetensors.shard.json (blob 1a2b3c4d)`.
    pub origin: String,
    /// The manifest's path relative to the NeuroShard repository root.
    pub path: RepoPath,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One line of what git gives a `pre-push` hook on its standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// The local ref being pushed (`refs/heads/main`), or `(delete)`.
    pub local_ref: String,
    /// Its commit (all zeros for a deletion).
    pub local_id: String,
    /// The ref on the git remote.
    pub remote_ref: String,
    /// What the git remote has there now (all zeros when the ref is new).
    pub remote_id: String,
}

impl RefUpdate {
    /// Parses git's `<local ref> SP <local id> SP <remote ref> SP <remote id>` lines.
    pub fn parse_lines(input: &str) -> Result<Vec<RefUpdate>> {
        let mut out = Vec::new();
        for line in input.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(' ').collect();
            let [local_ref, local_id, remote_ref, remote_id] = f[..] else {
                return Err(Error::Git(GitError::Command(format!(
                    "unexpected pre-push input line `{}`",
                    line.escape_debug()
                ))));
            };
            if !is_hex_id(local_id) || !is_hex_id(remote_id) {
                return Err(Error::Git(GitError::Command(format!(
                    "unexpected pre-push input line `{}`",
                    line.escape_debug()
                ))));
            }
            out.push(RefUpdate {
                local_ref: local_ref.into(),
                local_id: local_id.into(),
                remote_ref: remote_ref.into(),
                remote_id: remote_id.into(),
            });
        }
        Ok(out)
    }
}

fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// Which commits to look in.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reach {
    /// Everything git can still reach (what `gc` keeps).
    Everything,
    /// Commits reachable from local branches, tags and HEAD (what `push` sends).
    BranchesAndTags,
    /// The commits a `git push` is about to send: reachable from the updates' local commits but
    /// not from what the git remote already has (its current ids and its remote-tracking refs).
    Pushing {
        /// The ref updates git announced.
        updates: Vec<RefUpdate>,
        /// The git remote's name as git passed it (a name, or a URL when none was configured).
        remote: String,
    },
    /// Every commit reachable from these commits (a ref's history, for its root record).
    History(Vec<String>),
    /// These commits' own trees, without their history (a ref's tip versions).
    Tips(Vec<String>),
}

impl GitTree {
    /// The arguments of `git rev-list --objects` for `reach`; `None` when there is nothing to walk.
    fn revs(&self, reach: &Reach) -> Result<Option<Vec<String>>> {
        let mut revs: Vec<String> = Vec::new();
        match reach {
            Reach::Everything => {
                revs.extend(["--all", "--reflog", "--indexed-objects"].map(String::from));
                // Special heads are no refs: ORIG_HEAD (before a reset, merge or rebase),
                // FETCH_HEAD (every line), MERGE_HEAD and friends.
                for name in [
                    "ORIG_HEAD",
                    "MERGE_HEAD",
                    "CHERRY_PICK_HEAD",
                    "REVERT_HEAD",
                    "REBASE_HEAD",
                ] {
                    revs.extend(self.commit_id(name));
                }
                let fetch_head = text(self.run(&["rev-parse", "--git-path", "FETCH_HEAD"])?);
                let fetch_head = self.top.join(fetch_head);
                if let Ok(s) = std::fs::read_to_string(&fetch_head) {
                    for line in s.lines() {
                        let id = line.split('\t').next().unwrap_or("");
                        if is_hex_id(id) && self.commit_id(id).is_some() {
                            revs.push(id.to_string());
                        }
                    }
                }
                // HEADs of linked worktrees (recent git includes them in --all; older git not).
                let worktrees = self.run(&["worktree", "list", "--porcelain"])?;
                for line in String::from_utf8_lossy(&worktrees).lines() {
                    if let Some(h) = line.strip_prefix("HEAD ") {
                        if is_hex_id(h) && !is_zero(h) {
                            revs.push(h.to_string());
                        }
                    }
                }
            }
            Reach::BranchesAndTags => {
                let refs = self.run(&[
                    "for-each-ref",
                    "--format=%(objectname)",
                    "refs/heads",
                    "refs/tags",
                ])?;
                for id in String::from_utf8_lossy(&refs).lines() {
                    // Tags may point at trees or blobs; only what peels to a commit counts.
                    revs.extend(self.commit_id(id));
                }
                revs.extend(self.commit_id("HEAD"));
                if revs.is_empty() {
                    return Ok(None);
                }
            }
            Reach::History(ids) | Reach::Tips(ids) => {
                if matches!(reach, Reach::Tips(_)) {
                    revs.push("--no-walk".into());
                }
                revs.extend(ids.iter().filter_map(|id| self.commit_id(id)));
                if revs.iter().all(|r| r.starts_with("--")) {
                    return Ok(None);
                }
            }
            Reach::Pushing { updates, remote } => {
                let mut not = Vec::new();
                for u in updates {
                    if is_zero(&u.local_id) {
                        continue; // a deletion sends nothing
                    }
                    revs.push(u.local_id.clone());
                    if !is_zero(&u.remote_id) && self.commit_id(&u.remote_id).is_some() {
                        not.push(u.remote_id.clone());
                    }
                }
                if revs.is_empty() {
                    return Ok(None);
                }
                if !not.is_empty() || is_remote_name(remote) {
                    revs.push("--not".into());
                    revs.extend(not);
                    if is_remote_name(remote) {
                        revs.push(format!("--remotes={remote}"));
                    }
                }
            }
        }
        Ok(Some(revs))
    }

    /// Every manifest blob in the commits `reach` names (and, for [`Reach::Everything`], in the
    /// indexes), with its path relative to the NeuroShard root.
    pub(crate) fn manifests(&self, reach: &Reach) -> Result<Vec<GitManifest>> {
        // `git rev-list --objects` cuts a path at a line break (and has no `-z` before git 2.48):
        // under such a directory it would report no manifest at all, and a push would send no
        // data while git pushed the manifests. Refuse instead of reading nothing.
        if self.prefix.contains('\n') {
            return Err(Error::Git(GitError::Command(format!(
                "the NeuroShard repository sits at {:?} inside the git work tree; git cannot list \
                 the files under a directory whose name holds a line break",
                self.prefix
            ))));
        }
        let Some(revs) = self.revs(reach)? else {
            return Ok(Vec::new());
        };
        let mut args = vec!["rev-list", "--objects"];
        args.extend(revs.iter().map(String::as_str));
        args.push("--");
        let listing = self.run(&args)?;
        let mut found: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for line in String::from_utf8_lossy(&listing).lines() {
            // "<object id> <path>" for trees and blobs; commits have no path.
            let Some((oid, path)) = line.split_once(' ') else {
                continue;
            };
            if !path.ends_with(".shard.json") {
                continue;
            }
            let Some(rel) = path.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            if seen.insert((oid.to_string(), rel.to_string())) {
                found.push((oid.to_string(), rel.to_string()));
            }
        }
        let ids: Vec<&str> = found.iter().map(|(oid, _)| oid.as_str()).collect();
        let blobs = read_blobs(&self.top, &ids)?;
        let mut out = Vec::with_capacity(found.len());
        for ((oid, rel), bytes) in found.into_iter().zip(blobs) {
            let Some(bytes) = bytes else { continue };
            let origin = format!(
                "git:{}{rel} (blob {})",
                self.prefix,
                &oid[..oid.len().min(12)]
            );
            let path = RepoPath::parse(&rel).map_err(|e| {
                Error::Git(GitError::Command(format!(
                    "manifest path in git is not usable ({origin}): {e}"
                )))
            })?;
            out.push(GitManifest {
                oid,
                origin,
                path,
                bytes,
            });
        }
        Ok(out)
    }
}

impl GitTree {
    /// Where manifest blob `g` can be found, for an error message: `refs/heads/x:path` (the ref
    /// through which the newest commit holding it is reached), `index:path`, or its plain origin.
    /// Slow (a history search): only for errors.
    pub(crate) fn describe(&self, g: &GitManifest) -> String {
        let path = format!("{}{}", self.prefix, g.path.as_str());
        let find = format!("--find-object={}", g.oid);
        let source = self
            .run(&[
                "log",
                "--all",
                "--reflog",
                "--source",
                "-1",
                "--format=%S",
                &find,
            ])
            .map(text)
            .unwrap_or_default();
        if !source.is_empty() {
            return format!("{source}:{path}");
        }
        let staged = self
            .run(&["ls-files", "-s", "--", &format!(":(top,literal){path}")])
            .map(text)
            .unwrap_or_default();
        if staged.contains(&g.oid) {
            return format!("index:{path}");
        }
        g.origin.clone()
    }
}

/// Whether git passed a configured remote's name (not a URL or a path) to the hook.
fn is_remote_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', ':', '\\']) && !s.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pre_push_lines() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let input = format!("refs/heads/main {a} refs/heads/main {z}\n\n");
        let u = RefUpdate::parse_lines(&input).expect("parse");
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].local_id, a);
        assert!(RefUpdate::parse_lines("refs/heads/main xyz refs/heads/main 00").is_err());
        assert!(RefUpdate::parse_lines("one two three").is_err());
    }

    #[test]
    fn remote_names_and_urls() {
        assert!(is_remote_name("origin"));
        assert!(!is_remote_name("https://example.com/x.git"));
        assert!(!is_remote_name("../bare.git"));
        assert!(!is_remote_name("/srv/bare.git"));
    }
}
