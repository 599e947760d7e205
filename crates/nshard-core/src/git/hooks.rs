//! The git hooks NeuroShard installs so that data follows git: `pre-push` sends the data of the
//! manifests being pushed (and refuses the git push when that fails), `post-checkout`,
//! `post-merge` and `post-rewrite` pull and check out the files whose manifests changed.
//!
//! A hook is a small POSIX shell script that runs `nshard hook NAME`. Installing never overwrites
//! a hook that is already there: it is renamed to `NAME.nshard-chained` and the script runs it
//! first, with the same arguments and standard input; its exit status still counts. Uninstalling
//! restores it. Hooks go where git looks for them (`core.hooksPath` is honoured).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::GitTree;
use crate::error::GitError;
use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;

/// The hooks NeuroShard manages.
pub const HOOKS: [&str; 4] = ["pre-push", "post-checkout", "post-merge", "post-rewrite"];

/// The first lines of every hook NeuroShard writes; how it recognises its own.
const MARKER: &str = "# nshard-managed-hook";

/// Suffix of a user's hook kept and run by ours.
pub const CHAINED_SUFFIX: &str = ".nshard-chained";

/// What happened to one hook.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
#[non_exhaustive]
pub enum HookAction {
    /// Written (there was none).
    Installed,
    /// Written; the hook that was there is kept as `NAME.nshard-chained` and still runs first.
    Chained {
        /// Where the user's hook now lives.
        kept_as: PathBuf,
    },
    /// Already NeuroShard's (rewritten if it was an older version).
    Current,
    /// Removed (`--uninstall-hooks`).
    Removed,
    /// Removed, and the user's hook it chained put back in place.
    Restored,
    /// Nothing of NeuroShard's was there.
    Absent,
}

/// One hook's result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HookResult {
    /// The hook's name (`pre-push`, …).
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// What was done.
    #[serde(flatten)]
    pub action: HookAction,
}

/// Whether `path` holds a hook NeuroShard wrote.
fn is_ours(path: &Path) -> bool {
    fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b[..b.len().min(512)])
                .lines()
                .take(3)
                .any(|l| l.starts_with(MARKER))
        })
        .unwrap_or(false)
}

/// Single-quotes `s` for the shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script for hook `name`. `subdir` is where the NeuroShard repository sits in the git work
/// tree (hooks run at its top), `fallback` the nshard binary to use when none is on `PATH`.
fn script(name: &str, subdir: &str, fallback: Option<&Path>) -> String {
    let pre_push = name == "pre-push";
    let fallback = fallback
        .and_then(|p| p.to_str())
        .map(sh_quote)
        .unwrap_or_else(|| "''".into());
    let dir = if subdir.is_empty() {
        ".".to_string()
    } else {
        sh_quote(subdir.trim_end_matches('/'))
    };
    // A post-* hook cannot undo what git did; when nshard is missing it warns and lets git
    // finish. A pre-push hook refuses: the manifests must not reach the git remote without data.
    let missing_status = if pre_push { 1 } else { 0 };
    let chained = format!(
        r#"chained="$(dirname "$0")/{name}{CHAINED_SUFFIX}"
"#
    );
    let run = if pre_push {
        // The ref lines on standard input go to both hooks.
        r#"input=$(cat)
if [ -x "$chained" ]; then
    if [ -n "$input" ]; then printf '%s\n' "$input"; fi | "$chained" "$@" || exit $?
fi
if [ -n "$input" ]; then printf '%s\n' "$input"; fi | "$nshard" -C "$dir" hook pre-push "$@"
"#
        .to_string()
    } else if name == "post-rewrite" {
        r#"input=$(cat)
status=0
if [ -x "$chained" ]; then
    if [ -n "$input" ]; then printf '%s\n' "$input"; fi | "$chained" "$@" || status=$?
fi
if [ -n "$input" ]; then printf '%s\n' "$input"; fi | "$nshard" -C "$dir" hook post-rewrite "$@" || status=$?
exit $status
"#
        .to_string()
    } else {
        format!(
            r#"status=0
if [ -x "$chained" ]; then
    "$chained" "$@" || status=$?
fi
"$nshard" -C "$dir" hook {name} "$@" </dev/null || status=$?
exit $status
"#
        )
    };
    format!(
        r#"#!/bin/sh
{MARKER} v1: installed by `nshard git-init`; `nshard git-init --uninstall-hooks` removes it.
# Runs the hook that was here before (kept as {name}{CHAINED_SUFFIX}), then NeuroShard's.
{chained}dir={dir}
nshard=$(command -v nshard 2>/dev/null || true)
if [ -z "$nshard" ]; then nshard={fallback}; fi
if [ -z "$nshard" ] || [ ! -x "$nshard" ]; then
    echo "nshard hook {name}: nshard is not on PATH; NeuroShard data was not synced (install it, or remove the hooks with 'nshard git-init --uninstall-hooks')" >&2
    exit {missing_status}
fi
{run}"#
    )
}

/// Writes `text` to `path` as an executable file, atomically (the mode is set before the rename,
/// so git never sees a half-written or non-executable hook).
fn write_executable(path: &Path, text: &str) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.file()
        .write_all(text.as_bytes())
        .map_err(Error::io("writing", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.file()
            .set_permissions(fs::Permissions::from_mode(0o755))
            .map_err(Error::io("setting the mode of", path))?;
    }
    f.commit()
}

impl GitTree {
    /// Which of [`HOOKS`] are installed by nshard in this clone (`nshard doctor`).
    pub fn installed_hooks(&self) -> Result<Vec<(&'static str, bool)>> {
        let dir = self.hooks_dir()?;
        Ok(HOOKS.iter().map(|h| (*h, is_ours(&dir.join(h)))).collect())
    }

    /// Installs (or updates) NeuroShard's hooks, chaining any hook already there.
    /// `fallback` is the nshard binary the hooks use when none is on `PATH`.
    pub fn install_hooks(&self, fallback: Option<&Path>) -> Result<Vec<HookResult>> {
        let dir = self.hooks_dir()?;
        crate::fsutil::create_dir_all(&dir)?;
        let mut out = Vec::new();
        for name in HOOKS {
            let path = dir.join(name);
            let text = script(name, &self.prefix, fallback);
            let action = match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => HookAction::Installed,
                Err(e) => return Err(Error::io("inspecting", &path)(e)),
                Ok(_) if is_ours(&path) => HookAction::Current,
                Ok(md) => {
                    let kept = dir.join(format!("{name}{CHAINED_SUFFIX}"));
                    if fs::symlink_metadata(&kept).is_ok() {
                        return Err(Error::Git(GitError::Hook {
                            path,
                            reason: format!(
                                "is not NeuroShard's, and {} already exists; merge them by hand",
                                kept.display()
                            ),
                        }));
                    }
                    if md.is_dir() {
                        return Err(Error::Git(GitError::Hook {
                            path,
                            reason: "is a directory".into(),
                        }));
                    }
                    fs::rename(&path, &kept).map_err(Error::io("renaming", &path))?;
                    HookAction::Chained { kept_as: kept }
                }
            };
            if action == HookAction::Current && fs::read_to_string(&path).is_ok_and(|t| t == text) {
                out.push(HookResult {
                    name: name.into(),
                    path,
                    action,
                });
                continue;
            }
            write_executable(&path, &text)?;
            out.push(HookResult {
                name: name.into(),
                path,
                action,
            });
        }
        Ok(out)
    }

    /// Removes NeuroShard's hooks, putting back the hooks they chained.
    pub fn uninstall_hooks(&self) -> Result<Vec<HookResult>> {
        let dir = self.hooks_dir()?;
        let mut out = Vec::new();
        for name in HOOKS {
            let path = dir.join(name);
            let kept = dir.join(format!("{name}{CHAINED_SUFFIX}"));
            let action = if !is_ours(&path) {
                HookAction::Absent
            } else if fs::symlink_metadata(&kept).is_ok() {
                // One rename replaces our hook with the user's: never a moment without either.
                fs::rename(&kept, &path).map_err(Error::io("restoring", &kept))?;
                HookAction::Restored
            } else {
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
                HookAction::Removed
            };
            out.push(HookResult {
                name: name.into(),
                path,
                action,
            });
        }
        Ok(out)
    }
}

/// Where the hooks of the git work tree containing `dir` live, for messages.
pub fn hooks_dir_of(dir: &Path) -> Option<PathBuf> {
    GitTree::find(dir).and_then(|t| t.hooks_dir().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_marked_and_quote_paths() {
        let s = script(
            "post-checkout",
            "sub dir/",
            Some(Path::new("/opt/it's/nshard")),
        );
        assert!(s.starts_with("#!/bin/sh\n# nshard-managed-hook v1"));
        assert!(s.contains("dir='sub dir'"));
        assert!(s.contains(r"nshard='/opt/it'\''s/nshard'"));
        assert!(s.contains("hook post-checkout \"$@\" </dev/null"));
        let p = script("pre-push", "", None);
        assert!(p.contains("dir=."));
        assert!(p.contains("exit 1\n"));
    }
}
