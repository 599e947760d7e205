//! The managed block of `.gitignore`: `.shard/` internals and every tracked entry as a pattern, so
//! that heavy files never end up in git, including files saved later into a tracked directory or
//! matching a tracked glob, while their manifests and `.shard/config.toml` do.
//!
//! A tracked directory `d/` becomes `/d/**` (everything inside) plus `!/d/**/` (directories are
//! re-included, so that git looks at each file inside them; git cannot re-include a file whose
//! parent directory is excluded), and the block ends with `!*.shard.json`, which re-includes every
//! manifest. `untrack` removes exactly the lines `track` added: the block is rewritten from the
//! tracked entries each time.

use std::fs;
use std::io;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::repo::{is_glob, Repo};

const BEGIN: &str = "# >>> nshard: managed block (nshard track/untrack/git-init rewrite it)";
const END: &str = "# <<< nshard";
const INTERNALS: [&str; 6] = [
    "/.shard/objects/",
    "/.shard/cache/",
    "/.shard/tmp/",
    "/.shard/corrupt/",
    "/.shard/lock",
    "/.shard/config.local.toml",
];

/// Escapes a path for use as an anchored gitignore pattern; with `keep_glob`, the glob
/// characters `*`, `?`, `[` and `]` keep their meaning (gitignore and the tracked globs agree on
/// them: `*` stays inside one directory, `**` crosses directories).
fn escape(p: &str, keep_glob: bool) -> String {
    let mut out = String::from("/");
    for ch in p.chars() {
        let glob = matches!(ch, '*' | '?' | '[' | ']');
        if (glob && !keep_glob) || matches!(ch, '\\' | '!' | '#' | ' ') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The gitignore lines for one tracked entry (as stored in `config.toml`).
pub(crate) fn patterns(entry: &str) -> Vec<String> {
    if is_glob(entry) {
        let g = escape(entry, true);
        // A directory the glob happens to match must not hide the files inside it.
        vec![g.clone(), format!("!{g}/")]
    } else if let Some(dir) = entry.strip_suffix('/') {
        let d = escape(dir, false);
        vec![format!("{d}/**"), format!("!{d}/**/")]
    } else {
        vec![escape(entry, false)]
    }
}

impl Repo {
    /// Rewrites the managed block of `<root>/.gitignore` from the tracked entries (atomically,
    /// only when it changed). Lines outside the block are kept as they are. Returns whether the
    /// file changed.
    pub fn sync_gitignore(&self) -> Result<bool> {
        let path = self.root().join(".gitignore");
        let old = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        // Files and units whose manifests git versions, or that have a manifest in the work tree
        // git would add, stay ignored whatever the config says (a clone whose owner committed only
        // the manifests, an entry untracked later): a line that keeps their data out of git is
        // never dropped while its manifest is there (`nshard rm --cached` removes both).
        let mut units = self.config().dirs.clone();
        let mut files = Vec::new();
        let in_git = if self.is_git_repo() {
            self.git_tree()?.manifests_in_index_or_worktree()?
        } else {
            Vec::new()
        };
        for m in in_git {
            let Some(data) = m.strip_suffix(crate::path::MANIFEST_SUFFIX) else {
                continue;
            };
            let Ok(p) = crate::path::RepoPath::parse(data) else {
                continue;
            };
            if self.tracked_by_config(&p) || units.iter().any(|u| u == data) {
                continue;
            }
            // A unit converted to single files (`track --files DIR`): the directory's entry keeps
            // its data out of git and lets the new per-file manifests in, which the unit's line
            // (the whole directory) would hide from git.
            let dir_entry = format!("{data}/");
            if self.config().track.contains(&dir_entry) {
                continue;
            }
            if p.to_path(self.root()).is_dir() {
                units.push(data.to_string());
            } else {
                files.push(data.to_string());
            }
        }
        let new = rewrite_block(&old, &self.config().track, &units, &files);
        if new == old {
            return Ok(false);
        }
        fsutil::write_atomic(&path, new.as_bytes())?;
        Ok(true)
    }
}

/// `old` with its managed block replaced by the one for `entries`, directory `units` and literal
/// `files` (appended when absent).
fn rewrite_block(old: &str, entries: &[String], units: &[String], files: &[String]) -> String {
    let mut kept = Vec::new();
    let mut inside = false;
    for line in old.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END && inside {
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut lines: Vec<String> = kept.iter().map(|l| l.to_string()).collect();
    if !kept.is_empty() {
        lines.push(String::new());
    }
    lines.push(BEGIN.into());
    lines.extend(INTERNALS.map(String::from));
    for e in entries {
        lines.extend(patterns(e));
    }
    lines.extend(files.iter().map(|f| escape(f, false)));
    // A directory unit is ignored whole (one pattern); its manifest sits beside it.
    for u in units {
        lines.push(format!("{}/", escape(u, false)));
    }
    // Manifests are always committed, whatever a pattern above matched.
    lines.push("!*.shard.json".into());
    lines.push(END.into());
    let mut new = lines.join("\n");
    new.push('\n');
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_special_characters() {
        assert_eq!(patterns("a b/x!.bin"), vec!["/a\\ b/x\\!.bin"]);
        assert_eq!(
            patterns("models/*.safetensors"),
            vec!["/models/*.safetensors", "!/models/*.safetensors/"]
        );
        assert_eq!(patterns("data/"), vec!["/data/**", "!/data/**/"]);
    }

    #[test]
    fn block_is_replaced_and_user_lines_kept() {
        let once = rewrite_block("*.log\n", &["models/".into()], &["data/x".into()], &[]);
        assert!(once.starts_with("*.log\n\n# >>> nshard"));
        assert!(once.contains("/models/**\n!/models/**/\n/data/x/\n!*.shard.json\n# <<< nshard\n"));
        let twice = rewrite_block(&once, &[], &[], &[]);
        assert!(!twice.contains("/models/"), "{twice}");
        assert!(twice.starts_with("*.log\n\n# >>> nshard"));
        assert_eq!(rewrite_block(&twice, &[], &[], &[]), twice);
    }
}
