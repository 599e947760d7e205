//! The managed block of `.gitignore`: `.shard/` internals and every tracked data file, so that the
//! heavy files never end up in git while their manifests and `.shard/config.toml` do.

use std::fs;
use std::io;

use super::Repo;
use crate::error::{Error, Result};
use crate::fsutil::{self, RepoPath};

const BEGIN: &str = "# >>> nshard: managed block (nshard track/untrack/git-init rewrite it)";
const END: &str = "# <<< nshard";
const INTERNALS: [&str; 5] = [
    "/.shard/config.local.toml",
    "/.shard/objects/",
    "/.shard/cache/",
    "/.shard/tmp/",
    "/.shard/lock",
];

/// Escapes a repository path for use as an anchored gitignore pattern.
fn pattern(p: &RepoPath) -> String {
    let mut out = String::from("/");
    for ch in p.as_str().chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\' | '!' | '#' | ' ') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

impl Repo {
    /// Rewrites the managed block of `<root>/.gitignore` from the tracked files (atomically, only when
    /// it changed). Lines outside the block are kept as they are.
    pub fn sync_gitignore(&self) -> Result<()> {
        let files = self.tracked_files()?;
        let path = self.root.join(".gitignore");
        let old = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
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
        let mut new = String::new();
        for l in &kept {
            new.push_str(l);
            new.push('\n');
        }
        if !kept.is_empty() {
            new.push('\n');
        }
        new.push_str(BEGIN);
        new.push('\n');
        for l in INTERNALS {
            new.push_str(l);
            new.push('\n');
        }
        for f in &files {
            new.push_str(&pattern(f));
            new.push('\n');
        }
        new.push_str(END);
        new.push('\n');
        if new != old {
            fsutil::write_atomic(&path, new.as_bytes())?;
        }
        Ok(())
    }

    /// `nshard git-init`: requires a git work tree, then writes the managed block.
    pub fn git_init(&self) -> Result<()> {
        if !self.is_git_repo() {
            return Err(Error::NotAGitRepo(self.root.clone()));
        }
        self.sync_gitignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_special_characters() {
        let p = RepoPath::parse("a b/[x]*.bin").expect("p");
        assert_eq!(pattern(&p), "/a\\ b/\\[x\\]\\*.bin");
    }
}
