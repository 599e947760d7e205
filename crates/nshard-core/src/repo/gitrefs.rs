//! Manifests recorded in git outside the work tree: at the tip of every ref (branches, tags,
//! remote-tracking branches), at HEAD of every linked worktree, in every stash entry (with its
//! index and untracked-files commits) and in the index. `gc` keeps what they reference, so
//! switching branches and collecting garbage never deletes another branch's data.
//!
//! Read with the `git` command (plumbing only: `rev-parse`, `for-each-ref`, `ls-tree`, `ls-files`,
//! `cat-file --batch`), never by parsing `.git` ourselves.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::fsutil::RepoPath;
use crate::manifest::MAX_MANIFEST_BYTES;

/// A manifest blob found in git.
pub(crate) struct GitManifest {
    /// Where it was found, for messages: `refs/heads/main:models/m.safetensors.shard.json`.
    pub origin: String,
    /// The manifest's path relative to the NeuroShard repository root.
    pub path: RepoPath,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn git_error(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Git(format!("{what}: {detail}"))
}

/// `git`, without the repository overrides a git hook or wrapper may have set: the repository is
/// always the one containing the directory given with `-C`.
fn git_command() -> Command {
    let mut c = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `git -C dir args…` and returns its standard output; a failure is an error naming the
/// command and what git said.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = git_command()
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| git_error("could not run `git` (is it installed?)", e))?;
    if !out.status.success() {
        return Err(git_error(
            &format!("`git {}` failed", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(out.stdout)
}

/// Every `*.shard.json` blob at the tip of a git ref or in the index of the git repository that
/// contains `root`, with its path relative to `root`. Blobs are read once each, however many refs
/// hold them.
pub(crate) fn manifests_in_git(root: &Path) -> Result<Vec<GitManifest>> {
    let top = PathBuf::from(
        String::from_utf8_lossy(&git(root, &["rev-parse", "--show-toplevel"])?)
            .trim_end_matches('\n')
            .to_string(),
    );
    // Where the NeuroShard repository sits inside the git work tree ("" or "models/").
    let prefix = String::from_utf8_lossy(&git(root, &["rev-parse", "--show-prefix"])?)
        .trim_end_matches('\n')
        .to_string();

    // (blob id, origin, path inside the git tree)
    let mut found: Vec<(String, String, String)> = Vec::new();
    let mut commits: Vec<(String, String)> = Vec::new();
    let mut seen_commits = HashSet::new();
    let mut add = |id: &str, name: String| {
        if !id.is_empty() && seen_commits.insert(id.to_string()) {
            commits.push((id.to_string(), name));
        }
    };
    // Every ref, annotated tags peeled; refs to blobs (no tree) have nothing to look at.
    let refs = git(
        &top,
        &[
            "for-each-ref",
            "--format=%(objectname) %(objecttype) %(*objectname) %(*objecttype) %(refname)",
        ],
    )?;
    for line in String::from_utf8_lossy(&refs).lines() {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        let [obj, kind, peeled, peeled_kind, name] = f[..] else {
            return Err(git_error("unexpected `git for-each-ref` output", line));
        };
        let (mut id, mut kind) = if peeled.is_empty() {
            (obj.to_string(), kind.to_string())
        } else {
            (peeled.to_string(), peeled_kind.to_string())
        };
        if kind == "tag" {
            // A tag of a tag that this git peeled only one level: peel it all the way.
            id = text(git(
                &top,
                &["rev-parse", "--verify", &format!("{id}^{{}}")],
            )?);
            kind = text(git(&top, &["cat-file", "-t", &id])?);
        }
        if kind == "commit" || kind == "tree" {
            add(&id, name.to_string());
        }
    }
    // HEAD (detached HEAD is no ref; an unborn branch has no commit), and the HEADs of linked
    // worktrees.
    if let Ok(head) = git(&top, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) {
        add(&text(head), "HEAD".into());
    }
    let worktrees = git(&top, &["worktree", "list", "--porcelain"])?;
    let mut wt_path = String::new();
    for line in String::from_utf8_lossy(&worktrees).lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            wt_path = p.to_string();
        } else if let Some(h) = line.strip_prefix("HEAD ") {
            // An unborn branch (no commit yet) shows as all zeros.
            if !h.bytes().all(|b| b == b'0') {
                add(h, format!("HEAD of worktree {wt_path}"));
            }
        }
    }
    // Every stash entry, not only the newest (`refs/stash`), with the index and untracked-files
    // commits it records as its second and third parents.
    if git(&top, &["rev-parse", "--verify", "--quiet", "refs/stash"]).is_ok() {
        let log = git(&top, &["log", "-g", "--format=%H %P", "refs/stash", "--"])?;
        for (i, line) in String::from_utf8_lossy(&log).lines().enumerate() {
            let mut ids = line.split(' ');
            if let Some(c) = ids.next() {
                add(c, format!("stash@{{{i}}}"));
            }
            for (k, parent) in ids.enumerate().skip(1) {
                add(parent, format!("stash@{{{i}}}^{}", k + 1));
            }
        }
    }
    for (commit, name) in &commits {
        let mut args = vec!["ls-tree", "-r", "-z", "--full-tree", commit.as_str()];
        if !prefix.is_empty() {
            args.extend(["--", prefix.as_str()]);
        }
        for entry in git(&top, &args)?.split(|&b| b == 0) {
            // "<mode> SP <type> SP <object> TAB <path>"
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let mut m = meta.split(' ');
            let (_mode, kind, oid) = (m.next(), m.next(), m.next());
            if kind == Some("blob") && path.ends_with(".shard.json") {
                if let Some(oid) = oid {
                    found.push((oid.to_string(), format!("{name}:{path}"), path.to_string()));
                }
            }
        }
    }
    // The index: manifests `git add`ed but not committed yet.
    for entry in git(&top, &["ls-files", "-s", "-z"])?.split(|&b| b == 0) {
        // "<mode> SP <object> SP <stage> TAB <path>"
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        if path.ends_with(".shard.json") && path.starts_with(prefix.as_str()) {
            if let Some(oid) = meta.split(' ').nth(1) {
                found.push((oid.to_string(), format!("index:{path}"), path.to_string()));
            }
        }
    }

    // Read each distinct (blob, path) once.
    let mut unique: Vec<(String, String, String)> = Vec::new();
    let mut seen = HashSet::new();
    for f in found {
        if seen.insert((f.0.clone(), f.2.clone())) {
            unique.push(f);
        }
    }
    let blobs = read_blobs(&top, unique.iter().map(|f| f.0.as_str()))?;
    let mut out = Vec::with_capacity(unique.len());
    for ((_, origin, path), bytes) in unique.into_iter().zip(blobs) {
        let rel = path.strip_prefix(prefix.as_str()).unwrap_or(&path);
        let path = RepoPath::parse(rel)
            .map_err(|e| git_error(&format!("manifest path in git is not usable ({origin})"), e))?;
        out.push(GitManifest {
            origin,
            path,
            bytes,
        });
    }
    Ok(out)
}

/// Reads blobs with one `git cat-file --batch`, in order. A blob over the manifest size limit is
/// an error (it cannot be a valid manifest, and gc must not guess what it references).
fn read_blobs<'a>(top: &Path, ids: impl Iterator<Item = &'a str>) -> Result<Vec<Vec<u8>>> {
    let ids: Vec<&str> = ids.collect();
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
    for id in &ids {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            failure = Some(format!("no answer for blob {id}"));
            break;
        }
        let fields: Vec<&str> = header.trim_end().split(' ').collect();
        let size = match fields.as_slice() {
            [_, "blob", size] => size.parse::<u64>().ok(),
            _ => None,
        };
        let Some(size) = size else {
            failure = Some(format!("blob {id}: git answered `{}`", header.trim_end()));
            break;
        };
        if size > MAX_MANIFEST_BYTES {
            failure = Some(format!(
                "blob {id} is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte manifest limit"
            ));
            break;
        }
        let mut bytes = vec![0; size as usize + 1];
        if let Err(e) = reader.read_exact(&mut bytes) {
            failure = Some(format!("reading blob {id}: {e}"));
            break;
        }
        bytes.pop(); // the newline after each object
        out.push(bytes);
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

/// Git's one-line answer, trimmed.
fn text(out: Vec<u8>) -> String {
    String::from_utf8_lossy(&out).trim().to_string()
}
