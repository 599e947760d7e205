//! The colleague flow as random sequences (issue 23): in a clone of an owner's repository, any
//! order of `nshard pull`, `checkout`, `commit` (after an edit), `track`, `untrack`, `git-init`,
//! `git pull` (of the owner's next model version, or of the owner's config commit) and `git
//! checkout` of an older commit. After every step, `git add -A` must not stage the data of any file
//! whose manifest is in the work tree or in git: the rule "a file whose manifest is in git is
//! tracked" holds whatever was run before, and nshard never crashes (exit status 0 or 1 only).
//!
//! Bounded: 40 sequences of at most 7 steps, each step a few processes.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{git, random_bytes};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Step {
    Pull,
    Checkout,
    EditAndCommit,
    TrackNew,
    Untrack,
    GitInit,
    OwnerNewVersion,
    OwnerCommitsConfig,
    GitCheckoutOlder,
    GitCheckoutBack,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Pull),
        Just(Step::Checkout),
        Just(Step::EditAndCommit),
        Just(Step::TrackNew),
        Just(Step::Untrack),
        Just(Step::GitInit),
        Just(Step::OwnerNewVersion),
        Just(Step::OwnerCommitsConfig),
        Just(Step::GitCheckoutOlder),
        Just(Step::GitCheckoutBack),
    ]
}

/// Runs nshard; any exit status but 0 or 1 (a crash, a panic) fails the test.
fn nshard(dir: &Path, args: &[&str]) -> bool {
    let out = common::nshard(dir)
        .args(args)
        .output()
        .expect("nshard runs");
    let code = out.status.code();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(code, Some(0 | 1)) && !err.contains("panicked"),
        "nshard {args:?} in {} exited {code:?}: {err}",
        dir.display()
    );
    code == Some(0)
}

/// Runs git, whatever its exit status (a refused merge or checkout is a legitimate outcome).
fn git_try(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs")
        .status
        .success()
}

/// The data files whose manifests are in the work tree or in HEAD.
fn tracked_data(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = git(dir, &["ls-tree", "-r", "--name-only", "HEAD"])
        .lines()
        .filter_map(|p| p.strip_suffix(".shard.json").map(str::to_string))
        .collect();
    for e in walkdir(dir) {
        if let Some(p) = e.strip_suffix(".shard.json") {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
    }
    out
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == ".git" || name == ".shard" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("inside").to_string_lossy();
                out.push(rel.into_owned());
            }
        }
    }
    out
}

/// `git add -A` stages no tracked file's data; the index is reset afterwards (the colleague
/// never commits to git here, so the owner's history always fast-forwards).
fn check_add_all(dir: &Path, history: &[Step]) {
    let tracked = tracked_data(dir);
    git(dir, &["add", "-A"]);
    let staged = git(dir, &["diff", "--cached", "--name-only"]);
    git(dir, &["reset", "-q"]);
    for p in staged.lines() {
        assert!(
            !tracked.iter().any(|t| t == p),
            "after {history:?}: `git add -A` stages the data of tracked file {p} (staged: {staged})"
        );
    }
}

struct World {
    _tmp: tempfile::TempDir,
    owner: std::path::PathBuf,
    clone: std::path::PathBuf,
    store: String,
    version: u64,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tmp");
        let owner = tmp.path().join("owner");
        fs::create_dir_all(owner.join("models")).expect("mkdir");
        git(&owner, &["init", "-q", "-b", "main"]);
        assert!(nshard(&owner, &["init"]));
        assert!(nshard(&owner, &["git-init"]));
        fs::write(owner.join("models/model.bin"), random_bytes(300_000, 1)).expect("write");
        assert!(nshard(&owner, &["track", "models/model.bin"]));
        assert!(nshard(&owner, &["commit", "-m", "v1"]));
        let store = tmp.path().join("store");
        fs::create_dir_all(&store).expect("mkdir");
        let store = store.to_str().expect("utf8").to_string();
        assert!(nshard(&owner, &["push", "--remote", &store]));
        // As the seed's quickstart: only the manifest and .gitignore go to git.
        git(
            &owner,
            &["add", "models/model.bin.shard.json", ".gitignore"],
        );
        git(&owner, &["commit", "-qm", "model v1"]);
        git(
            tmp.path(),
            &["clone", "-q", owner.to_str().expect("utf8"), "clone"],
        );
        let clone = tmp.path().join("clone");
        World {
            _tmp: tmp,
            owner,
            clone,
            store,
            version: 1,
        }
    }

    fn run(&mut self, s: Step) {
        let c = self.clone.as_path();
        let store = self.store.as_str();
        match s {
            Step::Pull => {
                nshard(c, &["pull", "--remote", store]);
            }
            Step::Checkout => {
                nshard(c, &["checkout"]);
            }
            Step::EditAndCommit => {
                let f = c.join("models/model.bin");
                if f.exists() {
                    let mut data = fs::read(&f).expect("read");
                    data[0] ^= 0xff;
                    fs::write(&f, data).expect("write");
                }
                nshard(c, &["commit", "-m", "colleague edit"]);
            }
            Step::TrackNew => {
                fs::write(c.join("models/extra.bin"), random_bytes(50_000, 9)).expect("write");
                nshard(c, &["track", "models/extra.bin"]);
                nshard(c, &["commit", "-m", "extra"]);
            }
            Step::Untrack => {
                nshard(c, &["untrack", "models/extra.bin"]);
            }
            Step::GitInit => {
                nshard(c, &["git-init"]);
            }
            Step::OwnerNewVersion => {
                self.version += 1;
                let o = self.owner.as_path();
                fs::write(
                    o.join("models/model.bin"),
                    random_bytes(300_000, self.version),
                )
                .expect("write");
                assert!(nshard(o, &["commit", "-m", "owner"]));
                assert!(nshard(o, &["push", "--remote", store]));
                git(o, &["add", "models/model.bin.shard.json", ".gitignore"]);
                git(o, &["commit", "-qm", "owner's next version"]);
                git_try(c, &["pull", "-q", "--no-rebase", "origin", "main"]);
            }
            Step::OwnerCommitsConfig => {
                let o = self.owner.as_path();
                if git_try(o, &["add", ".shard/config.toml", ".shard/.gitignore"])
                    && git_try(o, &["commit", "-qm", "nshard config"])
                {
                    git_try(c, &["pull", "-q", "--no-rebase", "origin", "main"]);
                }
            }
            Step::GitCheckoutOlder => {
                git_try(c, &["checkout", "-q", "HEAD~1"]);
            }
            Step::GitCheckoutBack => {
                git_try(c, &["checkout", "-q", "main"]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn git_add_all_never_stages_a_tracked_files_data(steps in prop::collection::vec(step(), 1..8)) {
        let mut w = World::new();
        check_add_all(&w.clone, &[]);
        for (i, s) in steps.iter().enumerate() {
            w.run(*s);
            check_add_all(&w.clone, &steps[..=i]);
        }
    }
}
