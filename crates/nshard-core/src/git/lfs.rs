//! What NeuroShard reads and writes of Git LFS: pointer files, which files of the index LFS
//! stores, each file's LFS versions in the branch's history, where git-lfs keeps its objects, the
//! `.gitattributes` lines that route a file to LFS, and the git config that makes git-lfs use
//! `nshard lfs agent`. Everything goes through `git` (and `git lfs fetch` to fetch objects).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{git, git_command, git_error, git_fed, read_blobs, text};
use crate::error::Result;
use crate::fsutil;
use crate::id::ObjectId;

/// The largest pointer file git-lfs writes or reads.
pub const MAX_POINTER_BYTES: u64 = 1024;

/// A Git LFS pointer: the SHA-256 and size of the file it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LfsPointer {
    /// The LFS oid (SHA-256 of the file).
    pub oid: ObjectId,
    /// The file's size.
    pub size: u64,
}

impl LfsPointer {
    /// Parses a pointer file (version 1 of the spec: `version`, then `oid sha256:…` and `size`
    /// among sorted `key value` lines). `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<LfsPointer> {
        if bytes.len() as u64 > MAX_POINTER_BYTES {
            return None;
        }
        let s = std::str::from_utf8(bytes).ok()?;
        let mut lines = s.lines();
        let version = lines.next()?.strip_prefix("version ")?;
        if version != "https://git-lfs.github.com/spec/v1"
            && version != "https://hawser.github.com/spec/v1"
        {
            return None;
        }
        let (mut oid, mut size) = (None, None);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            match key {
                "oid" => {
                    let hex = value.strip_prefix("sha256:")?;
                    oid = Some(ObjectId::parse(hex).ok()?);
                }
                "size" => size = Some(value.parse::<u64>().ok()?),
                _ => {}
            }
        }
        Some(LfsPointer {
            oid: oid?,
            size: size?,
        })
    }

    /// The pointer file git-lfs writes for this object.
    pub fn to_text(&self) -> String {
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
            self.oid.to_hex(),
            self.size
        )
    }
}

/// A file whose index entry is an LFS pointer under an LFS `filter` attribute.
#[derive(Clone, Debug)]
pub struct LfsFile {
    /// Path relative to the top of the git work tree.
    pub path: String,
    /// Its pointer in the index.
    pub pointer: LfsPointer,
}

/// An LFS version of a file in the current branch's history.
#[derive(Clone, Debug)]
pub struct LfsHistoryVersion {
    /// The commit that wrote it.
    pub commit: String,
    /// The commit's author date (RFC 3339).
    pub date: String,
    /// The commit's message.
    pub message: String,
    /// The pointer the commit holds.
    pub pointer: LfsPointer,
}

/// Of `paths` (relative to `top`), the value git gives attribute `attr` for each.
pub fn check_attr(top: &Path, attr: &str, paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let input: Vec<u8> = paths
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .collect();
    let out = git_fed(top, &["check-attr", "-z", "--stdin", attr], Some(input))?;
    // `path NUL attr NUL value NUL`, in order.
    let fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
    let mut values = Vec::with_capacity(paths.len());
    for rec in fields.chunks(3).take(paths.len()) {
        values.push(String::from_utf8_lossy(rec.get(2).copied().unwrap_or_default()).to_string());
    }
    if values.len() != paths.len() {
        return Err(git_error(
            "`git check-attr`",
            "answered fewer paths than asked",
        ));
    }
    Ok(values)
}

/// `(kind, size)` of each object name (`id`, `commit:path`), `None` when git has none.
fn object_sizes(top: &Path, names: &[String]) -> Result<Vec<Option<(String, u64)>>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let input: Vec<u8> = names
        .iter()
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    let out = git_fed(top, &["cat-file", "--batch-check"], Some(input))?;
    let text = String::from_utf8_lossy(&out);
    let mut res = Vec::with_capacity(names.len());
    for line in text.lines().take(names.len()) {
        let f: Vec<&str> = line.rsplitn(3, ' ').collect();
        // `<id> <kind> <size>`, or `<name> missing`.
        res.push(match f.as_slice() {
            [size, kind, _] => size.parse::<u64>().ok().map(|n| (kind.to_string(), n)),
            _ => None,
        });
    }
    if res.len() != names.len() {
        return Err(git_error(
            "`git cat-file --batch-check`",
            "answered fewer objects than asked",
        ));
    }
    Ok(res)
}

/// Reads the blobs `names` that are small enough to be pointers and parses them: `None` for
/// anything that is not a pointer (a large or missing object, a file stored in git itself).
fn read_pointers(top: &Path, names: &[String]) -> Result<Vec<Option<LfsPointer>>> {
    let small: Vec<bool> = object_sizes(top, names)?
        .iter()
        .map(|s| matches!(s, Some((k, n)) if k == "blob" && *n <= MAX_POINTER_BYTES))
        .collect();
    let wanted: Vec<&str> = names
        .iter()
        .zip(&small)
        .filter(|(_, &s)| s)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut blobs = read_blobs(top, &wanted)?.into_iter();
    Ok(small
        .iter()
        .map(|&s| {
            s.then(|| blobs.next().flatten())
                .flatten()
                .and_then(|b| LfsPointer::parse(&b))
        })
        .collect())
}

/// What the index holds under `pathspecs` (relative to `top`; empty: everything): the files
/// stored with LFS (`filter=lfs` and a pointer blob), and those with `filter=lfs` whose blob is
/// the file itself (added while git-lfs was not installed).
pub fn lfs_files(top: &Path, pathspecs: &[String]) -> Result<(Vec<LfsFile>, Vec<String>)> {
    let literal: Vec<String> = pathspecs
        .iter()
        .map(|p| format!(":(top,literal){p}"))
        .collect();
    let mut args = vec!["ls-files", "-s", "-z", "--"];
    args.extend(literal.iter().map(String::as_str));
    let out = git(top, &args)?;
    let mut entries: Vec<(String, String)> = Vec::new();
    for rec in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        // `mode id stage\tpath`
        let rec = String::from_utf8_lossy(rec);
        let Some((meta, path)) = rec.split_once('\t') else {
            continue;
        };
        let f: Vec<&str> = meta.split(' ').collect();
        if let [mode, id, "0"] = f.as_slice() {
            if *mode == "100644" || *mode == "100755" {
                entries.push((path.to_string(), id.to_string()));
            }
        }
    }
    let paths: Vec<String> = entries.iter().map(|(p, _)| p.clone()).collect();
    let filters = check_attr(top, "filter", &paths)?;
    let (lfs, ids): (Vec<String>, Vec<String>) = entries
        .into_iter()
        .zip(filters)
        .filter(|(_, f)| f == "lfs")
        .map(|(e, _)| e)
        .unzip();
    let pointers = read_pointers(top, &ids)?;
    let mut files = Vec::new();
    let mut not_pointers = Vec::new();
    for (path, p) in lfs.into_iter().zip(pointers) {
        match p {
            Some(pointer) => files.push(LfsFile { path, pointer }),
            None => not_pointers.push(path),
        }
    }
    Ok((files, not_pointers))
}

/// The LFS versions of `path` (relative to `top`) in `HEAD`'s history, oldest first, one per
/// change of the pointer; and how many commits held the file as something else than a pointer.
pub fn lfs_history(top: &Path, path: &str) -> Result<(Vec<LfsHistoryVersion>, usize)> {
    let out = git(
        top,
        &[
            "log",
            "--reverse",
            "--diff-filter=ACMRT",
            "--format=%H%x00%aI%x00%B%x1e",
            "HEAD",
            "--",
            &format!(":(top,literal){path}"),
        ],
    )?;
    let mut commits: Vec<(String, String, String)> = Vec::new();
    for rec in out.split(|&b| b == 0x1e) {
        let rec = String::from_utf8_lossy(rec);
        let rec = rec.trim_start_matches('\n');
        let mut f = rec.splitn(3, '\0');
        let (Some(c), Some(d), Some(m)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        commits.push((c.to_string(), d.to_string(), m.trim_end().to_string()));
    }
    let names: Vec<String> = commits
        .iter()
        .map(|(c, _, _)| format!("{c}:{path}"))
        .collect();
    let pointers = read_pointers(top, &names)?;
    let mut versions: Vec<LfsHistoryVersion> = Vec::new();
    let mut other = 0;
    for ((commit, date, message), p) in commits.into_iter().zip(pointers) {
        let Some(pointer) = p else {
            other += 1;
            continue;
        };
        if versions.last().is_some_and(|v| v.pointer == pointer) {
            continue;
        }
        versions.push(LfsHistoryVersion {
            commit,
            date,
            message,
            pointer,
        });
    }
    Ok((versions, other))
}

/// Where git-lfs keeps object `oid` in the clone at `top` (`lfs.storage`, else
/// `<git common dir>/lfs`, then `objects/aa/bb/<oid>`).
pub fn lfs_object_path(top: &Path, oid: &ObjectId) -> Result<PathBuf> {
    let common = PathBuf::from(text(git(top, &["rev-parse", "--git-common-dir"])?));
    let common = if common.is_absolute() {
        common
    } else {
        top.join(common)
    };
    let storage = git(top, &["config", "--get", "lfs.storage"])
        .ok()
        .map(text)
        .filter(|s| !s.is_empty());
    let base = match storage {
        Some(s) if Path::new(&s).is_absolute() => PathBuf::from(s),
        Some(s) => common.join(s),
        None => common.join("lfs"),
    };
    let hex = oid.to_hex();
    Ok(base
        .join("objects")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex))
}

/// Runs `git lfs fetch REMOTE COMMITS… --include=PATHS` (git-lfs prints its own progress on
/// stderr). The remote is the current branch's, else `origin`.
pub fn lfs_fetch(top: &Path, commits: &[String], paths: &[String]) -> Result<()> {
    let branch = git(top, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .ok()
        .map(text);
    let remote = branch
        .and_then(|b| git(top, &["config", "--get", &format!("branch.{b}.remote")]).ok())
        .map(text)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "origin".to_string());
    let include = format!(
        "--include={}",
        paths
            .iter()
            .map(|p| include_pattern(p))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut cmd = git_command();
    cmd.arg("-C")
        .arg(top)
        .args(["lfs", "fetch", &include, &remote]);
    cmd.args(commits);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| git_error("could not run `git lfs fetch`", e))?;
    if !status.success() {
        return Err(git_error(
            &format!("`git lfs fetch {remote}` failed"),
            "see its messages above",
        ));
    }
    Ok(())
}

/// `path` as a `git lfs fetch --include` pattern: git-lfs splits the list at commas and reads
/// `*`, `?`, `[`, `]` and backslashes as pattern syntax, so each of those stands as `?` (any one
/// character): the pattern matches the file, and at most other names of the same shape.
pub fn include_pattern(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            ',' | '*' | '?' | '[' | ']' | '\\' => '?',
            c => c,
        })
        .collect()
}

/// How to write `path` (relative to the attributes file's directory) as an anchored
/// `.gitattributes` pattern that matches only it.
fn attr_pattern(path: &str) -> String {
    let mut out = String::from("/");
    for ch in path.chars() {
        match ch {
            '\\' | '*' | '?' | '[' => {
                out.push('\\');
                out.push(ch);
            }
            ' ' => out.push_str("[[:space:]]"),
            c => out.push(c),
        }
    }
    out
}

/// The path an attributes pattern names when it names exactly one path (no glob), relative to
/// the attributes file's directory; `None` for a glob.
fn exact_path(pattern: &str) -> Option<String> {
    let p = pattern.replace("[[:space:]]", " ");
    let p = p.strip_prefix('/').unwrap_or(&p);
    let mut out = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '*' | '?' | '[' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// What [`stop_lfs_for`] changed.
#[derive(Debug, Default)]
pub struct AttrChange {
    /// `.gitattributes` files written (relative to the top).
    pub files: Vec<String>,
    /// Lines removed (the file's own `git lfs track` lines).
    pub removed: Vec<String>,
    /// Lines added (a file a wider pattern routes to LFS, excepted from it).
    pub added: Vec<String>,
}

/// Makes git stop routing `paths` (relative to `top`) through LFS: lines that name exactly one
/// of them go; where a wider pattern still matches one, a line after it excepts that one path
/// (`!filter !diff !merge !text`), so other files keep their LFS routing. The same is ensured
/// for `also` (the manifests), which must reach git as themselves. Checked with
/// `git check-attr` afterwards.
pub fn stop_lfs_for(top: &Path, paths: &[String], also: &[String]) -> Result<AttrChange> {
    let mut change = AttrChange::default();
    // Attribute files of every directory from the top down to each path's own.
    let mut attr_files: Vec<String> = Vec::new();
    for p in paths {
        let mut dir = String::new();
        attr_files.push(".gitattributes".into());
        let comps: Vec<&str> = p.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            dir.push_str(c);
            dir.push('/');
            attr_files.push(format!("{dir}.gitattributes"));
        }
    }
    attr_files.sort();
    attr_files.dedup();
    for af in &attr_files {
        let abs = top.join(af);
        let Ok(content) = std::fs::read_to_string(&abs) else {
            continue;
        };
        let base = af.strip_suffix(".gitattributes").unwrap_or("");
        let mut kept = String::new();
        let mut changed = false;
        for line in content.split_inclusive('\n') {
            let t = line.trim();
            let mut words = t.split_whitespace();
            let pattern = words.next().unwrap_or("");
            let is_lfs = words.any(|w| w == "filter=lfs");
            let names_one = is_lfs
                && !t.starts_with('#')
                && exact_path(pattern).is_some_and(|e| paths.contains(&format!("{base}{e}")));
            if names_one {
                change.removed.push(format!("{af}: {t}"));
                changed = true;
            } else {
                kept.push_str(line);
            }
        }
        if changed {
            fsutil::write_atomic(&abs, kept.as_bytes())?;
            change.files.push(af.clone());
        }
    }
    let all: Vec<String> = paths.iter().chain(also).cloned().collect();
    // Exceptions go to the top `.gitattributes`; where a deeper one still wins, to the one in
    // the file's own directory (which every other attributes file in the tree gives way to).
    let still = still_lfs(top, &all)?;
    except(top, &still, false, &mut change)?;
    let still = still_lfs(top, &all)?;
    except(top, &still, true, &mut change)?;
    let left = still_lfs(top, &all)?;
    if !left.is_empty() {
        return Err(git_error(
            "git still routes these through LFS after .gitattributes excepted them \
             (.git/info/attributes sets filter=lfs for them; remove that line)",
            left.join(", "),
        ));
    }
    Ok(change)
}

/// Appends a line excepting each of `paths` from LFS to the top `.gitattributes`, or (`own_dir`)
/// to the one in each path's directory.
fn except(top: &Path, paths: &[String], own_dir: bool, change: &mut AttrChange) -> Result<()> {
    let mut by_file: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in paths {
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) if own_dir => (format!("{d}/"), n.to_string()),
            _ => (String::new(), p.clone()),
        };
        by_file
            .entry(format!("{dir}.gitattributes"))
            .or_default()
            .push(name);
    }
    for (af, names) in by_file {
        let abs = top.join(&af);
        let mut content = std::fs::read_to_string(&abs).unwrap_or_default();
        if !content.is_empty() && !content.ends_with('\n') {
            content.push('\n');
        }
        for n in names {
            let line = format!("{} !filter !diff !merge !text", attr_pattern(&n));
            content.push_str(&line);
            content.push('\n');
            change.added.push(format!("{af}: {line}"));
        }
        fsutil::write_atomic(&abs, content.as_bytes())?;
        if !change.files.contains(&af) {
            change.files.push(af);
        }
    }
    Ok(())
}

fn still_lfs(top: &Path, paths: &[String]) -> Result<Vec<String>> {
    let filters = check_attr(top, "filter", paths)?;
    Ok(paths
        .iter()
        .zip(filters)
        .filter(|(_, f)| f == "lfs")
        .map(|(p, _)| p.clone())
        .collect())
}

/// The git config keys `nshard lfs install` sets.
pub const AGENT_NAME: &str = "nshard";

/// Makes git-lfs in the clone at `top` use `program lfs agent ARGS…` as its standalone
/// transfer agent (git config of this clone only). `args` is one string as git-lfs reads it.
pub fn install_agent(top: &Path, program: &str, args: &str) -> Result<()> {
    let key = |k: &str| format!("lfs.customtransfer.{AGENT_NAME}.{k}");
    git(top, &["config", "--local", &key("path"), program])?;
    git(top, &["config", "--local", &key("args"), args])?;
    git(top, &["config", "--local", &key("concurrent"), "false"])?;
    git(
        top,
        &[
            "config",
            "--local",
            "lfs.standalonetransferagent",
            AGENT_NAME,
        ],
    )?;
    Ok(())
}

/// Whether git-lfs's filters are set up (`git lfs install`, usually once per user).
pub fn filters_installed(top: &Path) -> bool {
    git(top, &["config", "--get", "filter.lfs.process"]).is_ok()
}

/// Undoes [`install_agent`]; returns whether anything was set.
pub fn uninstall_agent(top: &Path) -> Result<bool> {
    let was = agent_config(top)?.is_some();
    let section = format!("lfs.customtransfer.{AGENT_NAME}");
    let _ = git(top, &["config", "--local", "--remove-section", &section]);
    let standalone = git(
        top,
        &["config", "--local", "--get", "lfs.standalonetransferagent"],
    )
    .ok()
    .map(text);
    if standalone.as_deref() == Some(AGENT_NAME) {
        git(
            top,
            &[
                "config",
                "--local",
                "--unset",
                "lfs.standalonetransferagent",
            ],
        )?;
    }
    Ok(was || standalone.as_deref() == Some(AGENT_NAME))
}

/// The agent's `(path, args)` when [`install_agent`] set them and git-lfs uses it.
pub fn agent_config(top: &Path) -> Result<Option<(String, String)>> {
    let get = |k: &str| {
        git(top, &["config", "--local", "--get", k])
            .ok()
            .map(text)
            .filter(|s| !s.is_empty())
    };
    if get("lfs.standalonetransferagent").as_deref() != Some(AGENT_NAME) {
        return Ok(None);
    }
    let path = get(&format!("lfs.customtransfer.{AGENT_NAME}.path"));
    let args = get(&format!("lfs.customtransfer.{AGENT_NAME}.args")).unwrap_or_default();
    Ok(path.map(|p| (p, args)))
}

/// Writes `lfs.url = URL` into the clone's `.lfsconfig` (the file git-lfs reads from the
/// repository, so every clone sees it) and stages it.
pub fn write_lfsconfig(top: &Path, url: &str) -> Result<()> {
    git(top, &["config", "--file", ".lfsconfig", "lfs.url", url])?;
    git(top, &["add", "--", ".lfsconfig"])?;
    Ok(())
}

/// Removes `paths` (relative to `top`) from git's index (the work-tree files stay) and stages
/// `add` (the files the import wrote).
pub fn stage_import(top: &Path, removed: &[String], add: &[String]) -> Result<()> {
    if !removed.is_empty() {
        let mut args = vec!["rm", "--cached", "--quiet", "--"];
        args.extend(removed.iter().map(String::as_str));
        git(top, &args)?;
    }
    if !add.is_empty() {
        let mut args = vec!["add", "--"];
        args.extend(add.iter().map(String::as_str));
        git(top, &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_parse_and_print() {
        let oid = ObjectId::of(b"x");
        let p = LfsPointer { oid, size: 1 };
        assert_eq!(LfsPointer::parse(p.to_text().as_bytes()), Some(p));
        let with_ext = format!(
            "version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{}\noid sha256:{}\nsize 1\n",
            oid.to_hex(),
            oid.to_hex()
        );
        assert_eq!(LfsPointer::parse(with_ext.as_bytes()), Some(p));
        assert_eq!(LfsPointer::parse(b"hello"), None);
        assert_eq!(
            LfsPointer::parse(
                b"version https://git-lfs.github.com/spec/v1\noid sha256:zz\nsize 1\n"
            ),
            None
        );
        let no_size = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\n",
            oid.to_hex()
        );
        assert_eq!(LfsPointer::parse(no_size.as_bytes()), None);
    }

    #[test]
    fn attribute_patterns_round_trip() {
        for p in ["model.bin", "dir/a b.bin", "w[1]*?.bin", "back\\slash"] {
            let pat = attr_pattern(p);
            assert_eq!(exact_path(&pat).as_deref(), Some(p), "{pat}");
        }
        assert_eq!(exact_path("*.bin"), None);
        assert_eq!(exact_path("models/**"), None);
        assert_eq!(exact_path("model.bin").as_deref(), Some("model.bin"));
    }
}
