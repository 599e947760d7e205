//! The seed's colleague flow, then what a colleague does next (issue 23, case 1): the owner commits
//! only the manifest and `.gitignore`; the colleague pulls and checks out in a clone, edits the
//! model and commits. Whatever nshard rewrites, the model's data never reaches git: `git add -A`
//! stages no data file, and `commit` commits the edit: a file whose manifest is in git is tracked.

mod common;

use std::fs;
use std::path::Path;

use common::{git, random_bytes};

fn ok(dir: &Path, args: &[&str]) -> String {
    common::ok(dir, args)
}

/// A new git repository at `dir` with nshard set up (`git-init` with `extra` arguments).
fn git_repo(dir: &Path, extra: &[&str]) {
    fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    ok(dir, &["init"]);
    let mut args = vec!["git-init"];
    args.extend_from_slice(extra);
    ok(dir, &args);
}

/// Writes `data` to `name` in `dir`, tracks it and commits it with nshard.
fn track_and_commit(dir: &Path, name: &str, data: &[u8], message: &str) {
    fs::write(dir.join(name), data).expect("write");
    ok(dir, &["track", name]);
    ok(dir, &["commit", "-m", message]);
}

/// What `git add -A` stages in `dir`.
fn staged_after_add_all(dir: &Path) -> Vec<String> {
    git(dir, &["add", "-A"]);
    git(dir, &["diff", "--cached", "--name-only"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_colleagues_next_commit_never_exposes_the_model_to_git() {
    let d = tempfile::tempdir().expect("tmp");
    let owner = d.path().join("owner");
    git_repo(&owner, &[]);
    fs::create_dir_all(owner.join("models")).expect("mkdir");
    track_and_commit(
        &owner,
        "models/model.pth",
        &random_bytes(2_000_000, 1),
        "v1",
    );
    // As the original quickstart did: only the manifest and .gitignore go to git.
    git(
        &owner,
        &["add", "models/model.pth.shard.json", ".gitignore"],
    );
    git(&owner, &["commit", "-qm", "model v1"]);
    let store = d.path().join("store");
    fs::create_dir_all(&store).expect("mkdir");
    let url = store.to_str().expect("utf8");
    ok(&owner, &["push", "--remote", url]);

    let clone = d.path().join("clone");
    git(
        d.path(),
        &["clone", "-q", owner.to_str().expect("utf8"), "clone"],
    );
    ok(
        &clone,
        &["pull", "models/model.pth.shard.json", "--remote", url],
    );
    ok(&clone, &["checkout", "models/model.pth.shard.json"]);
    let staged = staged_after_add_all(&clone);
    assert!(
        !staged.iter().any(|p| p == "models/model.pth"),
        "{staged:?}"
    );
    git(&clone, &["reset", "-q"]);

    // The colleague edits the model and commits: a file whose manifest is in git is tracked,
    // so the edit is committed as the next version, and the data stays out of git.
    let st = common::json(&clone, &["status"]);
    assert_eq!(st[0]["tracked"], true, "{st}");
    fs::write(clone.join("models/model.pth"), random_bytes(2_000_000, 2)).expect("edit");
    let c = common::json(&clone, &["commit", "-m", "edit"]);
    assert_eq!(c[0]["result"], "committed", "{c}");
    let ignore = fs::read_to_string(clone.join(".gitignore")).expect(".gitignore");
    assert!(ignore.contains("/models/model.pth\n"), "{ignore}");
    let staged = staged_after_add_all(&clone);
    assert!(
        !staged.iter().any(|p| p == "models/model.pth"),
        "{staged:?}"
    );
    git(&clone, &["reset", "-q"]);

    // git-init in the clone (the docs' colleague step) keeps the line too.
    ok(&clone, &["git-init"]);
    let ignore = fs::read_to_string(clone.join(".gitignore")).expect(".gitignore");
    assert!(ignore.contains("/models/model.pth\n"), "{ignore}");

    // Tracking it there too changes nothing: the next edit is committed the same way.
    ok(&clone, &["track", "models/model.pth"]);
    fs::write(clone.join("models/model.pth"), random_bytes(2_000_000, 3)).expect("edit");
    let c = common::json(&clone, &["commit", "-m", "edit 2"]);
    assert_eq!(c[0]["result"], "committed", "{c}");
    let staged = staged_after_add_all(&clone);
    assert!(
        !staged.iter().any(|p| p == "models/model.pth"),
        "{staged:?}"
    );
    assert!(
        staged.iter().any(|p| p == "models/model.pth.shard.json"),
        "{staged:?}"
    );
    // Untracking does not expose it while its manifest is in git.
    ok(&clone, &["untrack", "models/model.pth"]);
    let ignore = fs::read_to_string(clone.join(".gitignore")).expect(".gitignore");
    assert!(ignore.contains("/models/model.pth\n"), "{ignore}");
}

/// Files nshard creates in such a clone never block a `git pull` (issue 23, case 2): pull and
/// checkout create only the local store, kept out of git by `.git/info/exclude`, not
/// `.shard/config.toml` or `.shard/.gitignore`, which the owner commits later.
#[test]
fn the_owners_later_config_commit_pulls_cleanly() {
    let d = tempfile::tempdir().expect("tmp");
    let owner = d.path().join("owner");
    git_repo(&owner, &[]);
    track_and_commit(&owner, "model.bin", &random_bytes(500_000, 3), "v1");
    git(&owner, &["add", "model.bin.shard.json", ".gitignore"]);
    git(&owner, &["commit", "-qm", "model v1"]);
    let store = d.path().join("store");
    fs::create_dir_all(&store).expect("mkdir");
    let url = store.to_str().expect("utf8");
    ok(&owner, &["push", "--remote", url]);

    git(
        d.path(),
        &["clone", "-q", owner.to_str().expect("utf8"), "clone"],
    );
    let clone = d.path().join("clone");
    ok(&clone, &["pull", "model.bin.shard.json", "--remote", url]);
    ok(&clone, &["checkout", "model.bin.shard.json"]);
    assert!(!clone.join(".shard/config.toml").exists());
    assert!(!clone.join(".shard/.gitignore").exists());
    let status = git(&clone, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(
        !status.contains(".shard") && !status.contains("model.bin\n"),
        "{status}"
    );
    ok(&clone, &["status"]);

    // The owner commits the config as docs/git.md says; the colleague's pull goes through.
    ok(&owner, &["remote", "add", "origin", url]);
    git(&owner, &["add", ".shard/config.toml", ".shard/.gitignore"]);
    git(&owner, &["commit", "-qm", "config"]);
    git(&clone, &["pull", "-q", "--no-rebase", "origin", "HEAD"]);
    assert!(clone.join(".shard/config.toml").exists());
    let st = common::json(&clone, &["status"]);
    assert_eq!(st[0]["tracked"], true, "{st}");
    assert_eq!(st[0]["state"], "unchanged", "{st}");
}

/// `git checkout` of a commit from before `.shard/config.toml` was committed (issue 23, case 3):
/// the hook finds the repository by its local store, checks out that commit's version, and git
/// succeeds.
#[test]
fn a_hook_on_a_commit_from_before_the_config_checks_out_its_version() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r, &[]);
    let v1 = random_bytes(300_000, 4);
    track_and_commit(&r, "model.bin", &v1, "v1");
    git(&r, &["add", "model.bin.shard.json", ".gitignore"]);
    git(&r, &["commit", "-qm", "v1, manifest only"]);
    let v2 = random_bytes(300_000, 5);
    fs::write(r.join("model.bin"), &v2).expect("write");
    ok(&r, &["commit", "-m", "v2"]);
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-qm", "v2 and the config"]);
    // Back to the first commit: git removes .shard/config.toml; the hook still works.
    git(&r, &["checkout", "-q", "HEAD~1"]);
    assert!(!r.join(".shard/config.toml").exists());
    assert!(fs::read(r.join("model.bin")).expect("model") == v1);
    git(&r, &["checkout", "-q", "-"]);
    assert!(fs::read(r.join("model.bin")).expect("model") == v2);
}

/// After a `git pull` without hooks, a file holding the old version whose new data is not local is
/// `outdated` with the advice that works, `nshard pull --checkout` (issue 23, case 4: it said
/// `nshard checkout`, which then failed, naming the path twice).
#[test]
fn outdated_without_its_data_says_pull_and_checkout_names_the_file_once() {
    let d = tempfile::tempdir().expect("tmp");
    let owner = d.path().join("owner");
    git_repo(&owner, &["--no-hooks"]);
    let store = d.path().join("store");
    fs::create_dir_all(&store).expect("mkdir");
    ok(
        &owner,
        &["remote", "add", "origin", store.to_str().expect("utf8")],
    );
    track_and_commit(&owner, "model.bin", &random_bytes(300_000, 6), "v1");
    ok(&owner, &["push"]);
    git(&owner, &["add", "-A"]);
    git(&owner, &["commit", "-qm", "v1"]);
    git(
        d.path(),
        &["clone", "-q", owner.to_str().expect("utf8"), "clone"],
    );
    let clone = d.path().join("clone");
    ok(&clone, &["pull", "--checkout"]);

    let v2 = random_bytes(300_000, 7);
    fs::write(owner.join("model.bin"), &v2).expect("write");
    ok(&owner, &["commit", "-m", "v2"]);
    ok(&owner, &["push"]);
    git(&owner, &["commit", "-qam", "v2"]);
    git(&clone, &["pull", "-q", "--no-rebase", "origin", "HEAD"]);

    let st = common::json_exit(&clone, &["status"], 0);
    assert_eq!(st[0]["state"], "outdated", "{st}");
    assert_eq!(st[0]["data_present"], false, "{st}");
    let text = ok(&clone, &["status"]);
    assert!(text.contains("nshard pull --checkout"), "{text}");
    let err = common::fails(&clone, &["checkout"]);
    assert_eq!(err.matches("model.bin:").count(), 1, "{err}");
    assert!(err.contains("nshard pull"), "{err}");
    ok(&clone, &["pull", "--checkout"]);
    assert!(fs::read(clone.join("model.bin")).expect("model") == v2);
}

/// A rename has a way through (issue 23, case 5): `nshard mv` moves the file and its manifest,
/// records a version at the new path whose parent is the old one, and keeps the data out of git.
#[test]
fn mv_renames_a_file_and_keeps_its_history() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r, &[]);
    let v1 = random_bytes(200_000, 8);
    track_and_commit(&r, "a.bin", &v1, "v1");
    let v2 = random_bytes(200_000, 9);
    fs::write(r.join("a.bin"), &v2).expect("write");
    ok(&r, &["commit", "-m", "v2"]);
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-qm", "a"]);

    let m = common::json(&r, &["mv", "a.bin", "models/b.bin"]);
    assert_eq!(m["to"], "models/b.bin", "{m}");
    assert!(!r.join("a.bin").exists() && !r.join("a.bin.shard.json").exists());
    assert!(fs::read(r.join("models/b.bin")).expect("moved") == v2);
    let st = common::json(&r, &["status"]);
    assert_eq!(st[0]["path"], "models/b.bin", "{st}");
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[0]["tracked"], true, "{st}");
    let log = common::json(&r, &["log", "models/b.bin"]);
    let versions: Vec<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["version"].as_str().expect("version"))
        .collect();
    assert_eq!(versions.len(), 3, "{log}");
    assert_eq!(versions[1], m["parent"].as_str().expect("parent"));
    // The first version, from before the rename, checks out at the new path.
    ok(
        &r,
        &[
            "checkout",
            "models/b.bin",
            "--version",
            versions[2],
            "--force",
        ],
    );
    assert!(fs::read(r.join("models/b.bin")).expect("v1") == v1);
    ok(&r, &["checkout", "models/b.bin", "--force"]);
    let staged = staged_after_add_all(&r);
    assert!(
        staged.iter().any(|p| p == "models/b.bin.shard.json"),
        "{staged:?}"
    );
    assert!(!staged.iter().any(|p| p.ends_with(".bin")), "{staged:?}");
    // Refused: a destination that exists, and a file that was never committed.
    fs::write(r.join("c.bin"), b"x").expect("write");
    let err = common::fails(&r, &["mv", "models/b.bin", "c.bin"]);
    assert!(err.contains("exists"), "{err}");
    let err = common::fails(&r, &["mv", "c.bin", "d.bin"]);
    assert!(err.contains("no manifest"), "{err}");
}
