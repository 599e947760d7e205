//! Everything NeuroShard knows about git: which manifest versions git can still reach (for `gc`
//! and history-aware `push`), the managed `.gitignore` block, and the hooks that make data follow
//! git (`pre-push`, `post-checkout`, `post-merge`, `post-rewrite`).
//!
//! Git is read through the `git` command (plumbing only: `rev-parse`, `rev-list`, `for-each-ref`,
//! `ls-files`, `cat-file --batch`, `diff --name-only`), never by parsing `.git` ourselves, so every
//! layout git supports (worktrees, `core.hooksPath`, packed refs, alternates) works.

pub(crate) mod hooks;
pub(crate) mod ignore;
pub mod lfs;
pub(crate) mod refs;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::manifest::MAX_MANIFEST_BYTES;

use crate::error::GitError;
pub use hooks::{hooks_dir_of, HookAction, HookResult, HOOKS};
pub use refs::{Reach, RefUpdate};

fn git_error(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Git(GitError::Command(format!("{what}: {detail}")))
}

/// `git`, without the repository overrides a git hook or wrapper may have set: the repository is
/// always the one containing the directory given with `-C`.
pub(crate) fn git_command() -> Command {
    let mut c = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_PREFIX",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `git -C dir args…` and returns its standard output; a failure is an error naming the
/// command and what git said.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    git_fed(dir, args, None)
}

/// [`git`] with `input` on its standard input (written from a thread: git answers while it
/// reads, and both pipes have limited buffers); no input: standard input is empty.
pub(crate) fn git_fed(dir: &Path, args: &[&str], input: Option<Vec<u8>>) -> Result<Vec<u8>> {
    let mut child = git_command()
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| git_error("could not run `git` (is it installed?)", e))?;
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || stdin.write_all(&input))
    });
    let out = child
        .wait_with_output()
        .map_err(|e| git_error(&format!("`git {}`", args.join(" ")), e))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        return Err(git_error(
            &format!("`git {}` failed", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(out.stdout)
}

/// Git's one-line answer, trimmed.
pub(crate) fn text(out: Vec<u8>) -> String {
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The git work tree that holds a NeuroShard repository.
#[derive(Clone, Debug)]
pub struct GitTree {
    /// The git work tree's top directory.
    pub top: PathBuf,
    /// Where the NeuroShard repository sits inside it: `""` or `"models/"` (with `/`).
    pub prefix: String,
}

/// Git's output of one value, without the line's end.
fn one_line(out: Vec<u8>) -> String {
    String::from_utf8_lossy(&out)
        .trim_end_matches('\n')
        .to_string()
}

impl GitTree {
    /// The git work tree containing `dir`, or `None` when `dir` is not inside one (or git is not
    /// installed).
    pub fn find(dir: &Path) -> Option<GitTree> {
        // One git process for both (each costs a millisecond or two): a line each, the prefix
        // line empty at the top. A path with a newline in it is asked for on its own.
        let out = git(dir, &["rev-parse", "--show-toplevel", "--show-prefix"]).ok()?;
        let out = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = out.split('\n').collect();
        let (top, prefix) = match lines[..] {
            [top, prefix, ""] if !top.is_empty() => (top.to_string(), prefix.to_string()),
            _ => (
                one_line(git(dir, &["rev-parse", "--show-toplevel"]).ok()?),
                one_line(git(dir, &["rev-parse", "--show-prefix"]).ok()?),
            ),
        };
        Some(GitTree {
            top: PathBuf::from(top),
            prefix,
        })
    }

    /// Runs git in the work tree's top directory.
    pub(crate) fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        git(&self.top, args)
    }

    /// The directory git runs hooks from (honours `core.hooksPath`).
    pub fn hooks_dir(&self) -> Result<PathBuf> {
        let p = text(self.run(&["rev-parse", "--git-path", "hooks"])?);
        let p = PathBuf::from(p);
        Ok(if p.is_absolute() { p } else { self.top.join(p) })
    }

    /// Resolves `rev` to a commit id, `None` when it does not name a commit.
    pub fn commit_id(&self, rev: &str) -> Option<String> {
        let spec = format!("{rev}^{{commit}}");
        self.run(&["rev-parse", "--verify", "--quiet", &spec])
            .ok()
            .map(text)
            .filter(|s| !s.is_empty())
    }

    /// Whether the index holds any manifest (`*.shard.json`) under the NeuroShard root.
    pub fn has_manifests(&self) -> Result<bool> {
        let spec = format!(":(top){}*.shard.json", self.prefix);
        Ok(!self.run(&["ls-files", "-z", "--", &spec])?.is_empty())
    }

    /// The manifests (`*.shard.json`) in the index, relative to the NeuroShard root.
    pub fn manifests_in_index(&self) -> Result<Vec<String>> {
        self.manifests_listed(&["--cached"])
    }

    /// The manifests in the index, and those in the work tree that git does not ignore (written
    /// but not yet added): the files versioned with NeuroShard as far as `git add -A` can see,
    /// whatever the config tracks. Relative to the NeuroShard root.
    pub fn manifests_in_index_or_worktree(&self) -> Result<Vec<String>> {
        self.manifests_listed(&["--cached", "--others", "--exclude-standard"])
    }

    /// `git ls-files -z WHICH… -- *.shard.json` under the root, relative to it.
    fn manifests_listed(&self, which: &[&str]) -> Result<Vec<String>> {
        let spec = format!(":(top){}*.shard.json", self.prefix);
        let mut args = vec!["ls-files", "-z"];
        args.extend_from_slice(which);
        args.extend(["--", spec.as_str()]);
        let out = self.run(&args)?;
        Ok(self.under_root(&out))
    }

    /// The NUL-separated paths git printed (relative to the top of the work tree), relative to the
    /// NeuroShard root; paths outside it are left out.
    fn under_root(&self, out: &[u8]) -> Vec<String> {
        out.split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let p = String::from_utf8_lossy(p);
                p.strip_prefix(self.prefix.as_str()).map(str::to_string)
            })
            .collect()
    }

    /// The manifests (`*.shard.json`, paths relative to the NeuroShard root) that `from` has and
    /// `to` does not, each with its bytes in `from`: one `git diff` names them and their blobs,
    /// one `git cat-file --batch` reads them ([`read_blobs`]: a blob over the manifest size limit
    /// is an error).
    pub fn deleted_manifests(&self, from: &str, to: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let spec = format!("{}*.shard.json", self.prefix);
        let args = [
            "diff",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "--diff-filter=D",
            "-z",
            from,
            to,
            "--",
            &spec,
        ];
        let out = self.run(&args)?;
        // `-z` raw output: `:<mode> <mode> <old blob> <new blob> D`, NUL, the path, NUL.
        let fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
        let mut found: Vec<(String, String)> = Vec::new();
        for pair in fields.chunks_exact(2) {
            let meta = String::from_utf8_lossy(pair[0]);
            let Some(blob) = meta.split(' ').nth(2) else {
                continue;
            };
            if let Some(rel) = self.under_root(pair[1]).pop() {
                found.push((rel, blob.to_string()));
            }
        }
        let ids: Vec<&str> = found.iter().map(|(_, b)| b.as_str()).collect();
        let blobs = read_blobs(&self.top, &ids)?;
        Ok(found
            .into_iter()
            .zip(blobs)
            .filter_map(|((rel, _), bytes)| Some((rel, bytes?)))
            .collect())
    }

    /// The bytes of each file at commit `rev` (`paths` relative to the NeuroShard root), `None`
    /// where `rev` has no such file: one `git cat-file --batch` reads them all. Meant for
    /// manifests (a file over the manifest size limit is an error).
    pub fn files_at(&self, rev: &str, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        // cat-file reads one name a line: a path with a line break cannot be asked for.
        let names: Vec<Option<String>> = paths
            .iter()
            .map(|p| (!p.contains(['\n', '\r'])).then(|| format!("{rev}:{}{p}", self.prefix)))
            .collect();
        let asked: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
        let mut got = read_blobs_or_absent(&self.top, &asked, true)?.into_iter();
        Ok(names
            .iter()
            .map(|n| n.as_ref().and_then(|_| got.next().flatten()))
            .collect())
    }

    /// The manifests (`*.shard.json`, paths relative to the NeuroShard root) that differ between
    /// two commits. Cheap: git compares trees, no file is read.
    pub fn changed_manifests(&self, from: &str, to: &str) -> Result<Vec<String>> {
        let mut args = vec!["diff", "--name-only", "--no-renames", "-z", from, to, "--"];
        let spec = format!("{}*.shard.json", self.prefix);
        args.push(&spec);
        let out = self.run(&args)?;
        Ok(self.under_root(&out))
    }
}

/// Reads blobs with one `git cat-file --batch`, in order. An id that turns out not to be a blob
/// (a tree or commit named like a manifest) yields `None`. A blob over the manifest size limit is
/// an error: it cannot be a valid manifest, and gc must not guess what it references.
pub(crate) fn read_blobs(top: &Path, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
    read_blobs_or_absent(top, ids, false)
}

/// [`read_blobs`]; with `absent_ok`, a name git does not find (`rev:path` of a file that commit
/// lacks) yields `None` instead of an error.
fn read_blobs_or_absent(top: &Path, ids: &[&str], absent_ok: bool) -> Result<Vec<Option<Vec<u8>>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = git_command()
        .arg("-C")
        .arg(top)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| git_error("could not run `git cat-file`", e))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let request: String = ids.iter().map(|id| format!("{id}\n")).collect();
    // Written from a thread: git answers while it reads, and both pipes have limited buffers.
    let writer = std::thread::spawn(move || {
        let r = stdin.write_all(request.as_bytes());
        drop(stdin);
        r
    });
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut out = Vec::with_capacity(ids.len());
    let mut failure = None;
    for id in ids {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            failure = Some(format!("no answer for blob {id}"));
            break;
        }
        if absent_ok && header.trim_end().ends_with(" missing") {
            // A `rev:path` name that does not exist (git's answer for an absent object).
            out.push(None);
            continue;
        }
        let fields: Vec<&str> = header.trim_end().split(' ').collect();
        let (kind, size) = match fields.as_slice() {
            [_, kind, size] => (*kind, size.parse::<u64>().ok()),
            _ => ("", None),
        };
        let Some(size) = size else {
            failure = Some(format!("blob {id}: git answered `{}`", header.trim_end()));
            break;
        };
        if kind == "blob" && size > MAX_MANIFEST_BYTES {
            failure = Some(format!(
                "blob {id} is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte manifest limit"
            ));
            break;
        }
        if kind != "blob" {
            // Skip the object's bytes (trees and commits are small).
            let mut sink = vec![0; size as usize + 1];
            if let Err(e) = reader.read_exact(&mut sink) {
                failure = Some(format!("reading object {id}: {e}"));
                break;
            }
            out.push(None);
            continue;
        }
        let mut bytes = vec![0; size as usize + 1];
        if let Err(e) = reader.read_exact(&mut bytes) {
            failure = Some(format!("reading blob {id}: {e}"));
            break;
        }
        bytes.pop(); // the newline after each object
        out.push(Some(bytes));
    }
    drop(reader);
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();
    match failure {
        Some(f) => Err(git_error("`git cat-file --batch`", f)),
        None => Ok(out),
    }
}

/// The lines [`exclude_local_store`] adds to `.git/info/exclude`.
const EXCLUDE_BEGIN: &str = "# >>> nshard: this clone's local store (never shared)";
const EXCLUDE_END: &str = "# <<< nshard";

/// Keeps the local store of the NeuroShard repository at `root` out of git through the clone's own
/// `.git/info/exclude` (once; idempotent). Does nothing outside a git work tree.
fn exclude_local_store(root: &Path) -> Result<()> {
    let Some(tree) = GitTree::find(root) else {
        return Ok(());
    };
    let path = text(tree.run(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "info/exclude",
    ])?);
    let path = std::path::PathBuf::from(path.trim());
    let old = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("reading", &path)(e)),
    };
    if old.contains(EXCLUDE_BEGIN) {
        return Ok(());
    }
    let base = format!("/{}.shard", tree.prefix);
    let mut new = old.clone();
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(EXCLUDE_BEGIN);
    new.push('\n');
    for sub in [
        "objects/",
        "cache/",
        "tmp/",
        "corrupt/",
        "lock",
        "config.local.toml",
    ] {
        new.push_str(&format!("{base}/{sub}\n"));
    }
    new.push_str(EXCLUDE_END);
    new.push('\n');
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(&path, new.as_bytes())
}

impl crate::repo::Repo {
    /// Keeps this repository's local store out of git through the clone's own
    /// `.git/info/exclude` (for a store made by [`Repo::init_for_clone`](crate::repo::Repo::init_for_clone), which writes no
    /// `.gitignore`). Idempotent; nothing outside a git work tree.
    pub fn exclude_local_store(&self) -> Result<()> {
        exclude_local_store(self.root())
    }

    /// The git work tree holding this repository ([`GitError::NotAGitRepo`](crate::error::GitError::NotAGitRepo) when there is none).
    pub fn git_tree(&self) -> Result<GitTree> {
        if !self.is_git_repo() {
            return Err(Error::Git(GitError::NotAGitRepo(self.root().to_path_buf())));
        }
        self.git_tree
            .get_or_init(|| GitTree::find(self.root()).map(|t| (t.top, t.prefix)))
            .clone()
            .map(|(top, prefix)| GitTree { top, prefix })
            .ok_or_else(|| Error::Git(GitError::NotAGitRepo(self.root().to_path_buf())))
    }
}
