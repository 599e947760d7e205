//! Directory units follow git like single files: the post-checkout hook pulls and checks out the
//! unit's version of the commit git moved to, and never overwrites uncommitted changes.

mod common;

use std::fs;
use std::path::Path;

use common::{git, ok, random_bytes, read_tree};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Runs git, returning whether it succeeded and its output (hooks print to stderr).
fn git_try(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn clone(root: &Path, name: &str) -> std::path::PathBuf {
    git(root, &["clone", "-q", "origin.git", name]);
    let d = root.join(name);
    git(&d, &["config", "user.name", "NeuroShard Test"]);
    git(&d, &["config", "user.email", "test@example.com"]);
    d
}

/// A bare `origin.git` and a directory data remote `store` in `root`, and the owner's clone `a`
/// with nshard, its hooks and the remote `origin`.
fn owner(root: &Path) -> std::path::PathBuf {
    git(root, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    fs::create_dir(root.join("store")).expect("store");
    let store = root.join("store").display().to_string();
    let a = clone(root, "a");
    ok(&a, &["init"]);
    ok(&a, &["git-init"]);
    ok(&a, &["remote", "add", "origin", &store]);
    a
}

#[test]
fn the_post_checkout_hook_moves_a_unit_with_git() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 60, 3000, "v1");
    let v1 = read_tree(&a, "data");
    for i in [3u64, 17, 42] {
        write(
            &a,
            &format!("data/p{}/f{i:03}.bin", i % 3),
            &random_bytes(3000, 1000 + i),
        );
    }
    write(&a, "data/new/added.bin", &random_bytes(500, 7));
    fs::remove_file(a.join("data/p1/f001.bin")).expect("rm");
    ok(&a, &["commit", "-m", "v2"]);
    git(&a, &["commit", "-q", "-am", "v2"]);
    let v2 = read_tree(&a, "data");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");

    // A colleague's clone pulls v2, then installs the hooks.
    let b = clone(root, "b");
    ok(&b, &["pull", "--checkout"]);
    assert_eq!(read_tree(&b, "data"), v2);
    ok(&b, &["git-init"]);

    // One commit back: the hook pulls v1's packs and checks v1 out; forward again: v2.
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert_eq!(read_tree(&b, "data"), v1, "{out}");
    assert!(!out.contains("error") && !out.contains("invalid"), "{out}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    assert_eq!(read_tree(&b, "data"), v2, "{out}");

    // An edit of a file the two versions agree on carries over, as git carries a change to a
    // file the two commits agree on: the rest of the unit moves.
    write(&b, "data/p0/f000.bin", b"my own work");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    let mut expected = v1.clone();
    expected.insert("data/p0/f000.bin".into(), b"my own work".to_vec());
    assert_eq!(read_tree(&b, "data"), expected, "{out}");
    assert!(
        out.contains("kept your edits to 1 file (data/p0/f000.bin)"),
        "{out}"
    );
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "modified", "{st:#}");
    let changes = st[0]["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{st:#}");
    assert_eq!(changes[0]["path"], "p0/f000.bin", "{st:#}");
    assert!(changes[0]["from_older"].is_null(), "{st:#}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    let mut expected = v2.clone();
    expected.insert("data/p0/f000.bin".into(), b"my own work".to_vec());
    assert_eq!(read_tree(&b, "data"), expected, "{out}");

    // An uncommitted change is never overwritten: where the version git moves to has other
    // bytes for an edited file, the unit is left as it is, with a message.
    write(&b, "data/p0/f003.bin", b"more of my work");
    let mine = read_tree(&b, "data");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert_eq!(read_tree(&b, "data"), mine, "{out}");
    assert!(
        out.contains("has uncommitted changes (data/p0/f003.bin)"),
        "{out}"
    );
}

/// A checkout of a commit from before the unit existed takes the unit's files away (as git
/// takes away the files a commit does not have), so `git add -A` cannot stage the dataset into
/// git; a file with other content stays; checking out the unit's commit brings them back.
#[test]
fn a_checkout_from_before_the_unit_takes_its_files_away() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = owner(tmp.path());
    write(&a, "README", b"before the dataset\n");
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "no dataset yet"]);
    unit_committed(&a, 30, 2000, "dataset");
    let files = read_tree(&a, "data");

    let (done, text) = git_try(&a, &["checkout", "-q", "HEAD~1"]);
    assert!(done, "{text}");
    assert!(text.contains("data/: removed 30 file(s)"), "{text}");
    assert!(!a.join("data").exists(), "{text}");
    let (_, staged) = git_try(&a, &["add", "-A", "--dry-run"]);
    assert!(!staged.contains("data/"), "{staged}");

    let (done, text) = git_try(&a, &["checkout", "-q", "main"]);
    assert!(done, "{text}");
    assert_eq!(read_tree(&a, "data"), files);

    // With an edited file the whole unit stays (as a checkout of a unit with changes leaves
    // it), so that going back finds it complete; the hook names the file.
    write(&a, "data/p0/f000.bin", b"edited");
    let (done, text) = git_try(&a, &["checkout", "-q", "HEAD~1"]);
    assert!(done, "{text}");
    assert!(
        text.contains("1 of its files hold other content (data/p0/f000.bin)")
            && text.contains("the directory is kept as it is"),
        "{text}"
    );
    let mut edited = files.clone();
    edited.insert("data/p0/f000.bin".into(), b"edited".to_vec());
    assert_eq!(read_tree(&a, "data"), edited);
    let (done, text) = git_try(&a, &["checkout", "-q", "main"]);
    assert!(done, "{text}");
    assert_eq!(read_tree(&a, "data"), edited);
    let st = common::json(&a, &["status", "data"]);
    assert_eq!(st[0]["changes"].as_array().map(Vec::len), Some(1), "{st}");
}

/// A dataset converted from a unit to single files and back through git: every file stays in
/// the work tree (the other form's manifests version it), and the per-file manifests reach git.
#[test]
fn converting_a_unit_to_single_files_keeps_every_file_across_checkouts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = owner(tmp.path());
    unit_committed(&a, 12, 1500, "as a unit");
    let files = read_tree(&a, "data");
    ok(&a, &["track", "--files", "data/"]);
    ok(&a, &["commit", "-m", "file by file"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "file by file"]);
    let in_git = git(&a, &["ls-files", "data"]);
    assert_eq!(
        in_git.lines().count(),
        12,
        "the per-file manifests are in git: {in_git}"
    );
    assert!(
        in_git.lines().all(|l| l.ends_with(".shard.json")),
        "{in_git}"
    );
    for rev in ["HEAD~1", "main", "HEAD~1", "main"] {
        let (done, text) = git_try(&a, &["checkout", "-q", rev]);
        assert!(done, "{text}");
        let mut now = read_tree(&a, "data");
        now.retain(|k, _| !k.ends_with(".shard.json"));
        let names: Vec<&String> = now.keys().collect();
        assert!(now == files, "after checking out {rev}: {names:?} {text}");
        let (_, staged) = git_try(&a, &["add", "-A", "--dry-run"]);
        assert!(!staged.contains(".bin'"), "{staged}");
    }
}

/// A unit version committed with nshard but in no git commit: `git push` sends it too, so a
/// clone's `pull --all-versions` reaches the versions before it.
#[test]
fn a_unit_version_between_git_commits_is_pushed_so_the_history_has_no_gap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 9, 800, "u1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    write(&a, "data/p0/f000.bin", b"u2");
    ok(&a, &["commit", "-m", "u2, never in git"]);
    write(&a, "data/p1/f001.bin", b"u3");
    ok(&a, &["commit", "-m", "u3"]);
    git(&a, &["commit", "-q", "-am", "u3"]);
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    assert!(out.contains("also sending 1 version(s)"), "{out}");

    let b = clone(root, "b");
    ok(&b, &["pull", "--all-versions"]);
    let log = common::json(&b, &["log", "data"]);
    let messages: Vec<&str> = log["data"]
        .as_array()
        .expect("the unit's versions")
        .iter()
        .filter_map(|e| e["manifest"]["version"]["message"].as_str())
        .collect();
    assert_eq!(messages, ["u3", "u2, never in git", "u1"], "{log:#}");
}

/// Writes `n` files of `len` random bytes under `a/data/` (in three subdirectories), tracks
/// `data` as a unit and commits it with nshard and git as `msg`.
fn unit_committed(a: &Path, n: u64, len: usize, msg: &str) {
    for i in 0..n {
        write(
            a,
            &format!("data/p{}/f{i:03}.bin", i % 3),
            &random_bytes(len, i),
        );
    }
    ok(a, &["track", "--dir", "data"]);
    ok(a, &["commit", "-m", msg]);
    git(a, &["add", "-A"]);
    git(a, &["commit", "-q", "-m", msg]);
}

/// The owner's clone `a` with a unit of six files committed and pushed as v1, and a colleague's
/// clone `b` with it checked out and the hooks installed.
fn owner_and_colleague(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = owner(root);
    unit_committed(&a, 6, 1000, "v1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let b = clone(root, "b");
    ok(&b, &["pull", "--checkout"]);
    ok(&b, &["git-init"]);
    (a, b)
}

/// Commits the unit in clone `dir` with nshard and git as `msg`, and pushes it (the hook sends
/// the data).
fn commit_and_push(dir: &Path, msg: &str) {
    ok(dir, &["commit", "-m", msg]);
    git_commit_and_push(dir, msg);
}

/// `git commit` of the work tree in clone `dir` (the manifests nshard wrote), then `git push`.
fn git_commit_and_push(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    let (pushed, out) = git_try(dir, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
}

/// `git pull` in clone `dir` (the hooks run); what it printed.
fn pull(dir: &Path) -> String {
    let (pulled, out) = git_try(dir, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(pulled, "{out}");
    out
}

/// A clone that checked out only part of a unit (`nshard checkout data/p1/`) keeps only that part
/// across branch switches and pulls: the hooks fetch and write that part of each version, never
/// the rest, until `nshard checkout data/` asks for all of it.
#[test]
fn a_unit_checked_out_in_part_stays_in_part_across_git_checkouts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 30, 3000, "v1");
    let v1 = read_tree(&a, "data");
    write(&a, "data/p1/f001.bin", &random_bytes(3000, 501));
    write(&a, "data/p1/added.bin", &random_bytes(700, 502));
    write(&a, "data/p2/f002.bin", &random_bytes(3000, 503));
    ok(&a, &["commit", "-m", "v2"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "v2"]);
    let v2 = read_tree(&a, "data");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let part = |tree: &std::collections::BTreeMap<String, Vec<u8>>| {
        tree.iter()
            .filter(|(k, _)| k.starts_with("data/p1/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let objects = |d: &Path| common::walk(&d.join(".shard/objects")).len();
    // Compares file lists first, so that a failure prints names, not bytes.
    let same = |got: std::collections::BTreeMap<String, Vec<u8>>,
                want: &std::collections::BTreeMap<String, Vec<u8>>,
                out: &str| {
        let names =
            |t: &std::collections::BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&got), names(want), "{out}");
        assert!(got == *want, "same files, other bytes: {out}");
    };

    let b = clone(root, "b");
    ok(&b, &["git-init"]);
    ok(&b, &["pull", "data/p1/"]);
    ok(&b, &["checkout", "data/p1/"]);
    same(read_tree(&b, "data"), &part(&v2), "");
    let pulled = objects(&b);
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    same(read_tree(&b, "data"), &part(&v1), &out);
    assert!(out.contains("data/p1/: checked out version"), "{out}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    same(read_tree(&b, "data"), &part(&v2), &out);
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    // Only p1's packs of v1 came: far fewer objects than the other two parts hold.
    let all = objects(&a);
    assert!(objects(&b) - pulled < all / 2, "{} {all}", objects(&b));

    // Asked for whole, the unit is whole from then on.
    ok(&b, &["pull", "data/"]);
    ok(&b, &["checkout", "data/"]);
    same(read_tree(&b, "data"), &v2, "");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    same(read_tree(&b, "data"), &v1, &out);
}

/// A file of a unit deleted here and not committed is an uncommitted change like an edit: the
/// hooks keep it deleted where the version git moves to holds the bytes it held, and leave the
/// unit as it is rather than bring the file back where that version changed it.
#[test]
fn the_hooks_keep_an_uncommitted_removal_in_a_unit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 12, 1000, "v1");
    write(&a, "data/p1/f001.bin", &random_bytes(1000, 900));
    ok(&a, &["commit", "-m", "v2"]);
    git(&a, &["commit", "-q", "-am", "v2"]);
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let b = clone(root, "b");
    ok(&b, &["pull", "--checkout"]);
    ok(&b, &["git-init"]);
    let v2 = read_tree(&b, "data");
    fs::remove_file(b.join("data/p1/f001.bin")).expect("rm");
    let mine = read_tree(&b, "data");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert!(
        out.contains("has uncommitted changes (data/p1/f001.bin removed)"),
        "{out}"
    );
    assert!(read_tree(&b, "data") == mine, "{out}");
    // `checkout --force` takes the manifest's version, the file included.
    ok(&b, &["checkout", "--force", "data/"]);
    assert!(b.join("data/p1/f001.bin").exists());
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    assert!(read_tree(&b, "data") == v2, "{out}");

    // A file both versions hold alike stays removed, and the rest of the unit moves.
    fs::remove_file(b.join("data/p0/f000.bin")).expect("rm");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert!(
        out.contains("kept 1 file removed (data/p0/f000.bin)") && !out.contains("uncommitted"),
        "{out}"
    );
    let tree = read_tree(&b, "data");
    assert!(!tree.contains_key("data/p0/f000.bin"), "{out}");
    assert_eq!(tree["data/p1/f001.bin"], random_bytes(1000, 1), "{out}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    let tree = read_tree(&b, "data");
    assert!(!tree.contains_key("data/p0/f000.bin"), "{out}");
    assert_eq!(tree["data/p1/f001.bin"], random_bytes(1000, 900), "{out}");
    // `nshard checkout` brings a deleted file back.
    ok(&b, &["checkout", "data/"]);
    assert!(b.join("data/p0/f000.bin").exists());
    // A removal committed is no longer in the way: the hooks follow git again.
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    fs::remove_file(b.join("data/p0/f000.bin")).expect("rm");
    ok(&b, &["commit", "-m", "drop f000"]);
    git(&b, &["config", "user.name", "NeuroShard Test"]);
    git(&b, &["commit", "-q", "-am", "drop f000"]);
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~2"]);
    assert!(moved, "{out}");
    assert!(!out.contains("uncommitted"), "{out}");
    assert!(b.join("data/p0/f000.bin").exists(), "{out}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    assert!(!out.contains("uncommitted"), "{out}");
    assert!(!b.join("data/p0/f000.bin").exists(), "{out}");
}

/// The colleague flow with a unit: B edits one file while A pushes a version that changed
/// another; `git pull` brings A's file in and keeps B's edit, and the commit holds both. When
/// both changed one file, `git pull` leaves B's unit as it is; committing it as it is would take
/// A's changes back, since A's other files still hold the version before: commit refuses and
/// names them; `nshard checkout` of those brings A's changes in, and the file both changed is
/// refused as edited from the older version until `--force` commits it.
#[test]
fn a_unit_commit_never_undoes_a_colleagues_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());

    // A changes f001 and pushes v2; B edits f000 meanwhile and pulls: v2 has the bytes B's
    // edit started from, so the hook brings A's file in and keeps B's edit, as `git pull`
    // does, and the commit holds both.
    write(&a, "data/p1/f001.bin", b"A's change");
    commit_and_push(&a, "v2");
    write(&b, "data/p0/f000.bin", b"B's change");
    let out = pull(&b);
    assert!(
        out.contains("kept your edits to 1 file (data/p0/f000.bin)"),
        "{out}"
    );
    assert!(!out.contains("uncommitted changes"), "{out}");
    let st = common::json(&b, &["status"]);
    let changes = st[0]["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{st:#}");
    assert!(changes[0]["from_older"].is_null(), "{st:#}");
    commit_and_push(&b, "B's edit");
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p1/f001.bin"], b"A's change");
    assert_eq!(tree["data/p0/f000.bin"], b"B's change");

    // Both change f002 and A also f005: B's edit started from the version before A's, so the
    // hook leaves the unit as it is, and f005 still holds that version too. status names both
    // files and says why before commit refuses them.
    pull(&a);
    write(&a, "data/p2/f002.bin", b"A again");
    write(&a, "data/p2/f005.bin", b"A's f005");
    commit_and_push(&a, "v4");
    write(&b, "data/p2/f002.bin", b"B again");
    let out = pull(&b);
    assert!(
        out.contains("has uncommitted changes (data/p2/f002.bin)"),
        "{out}"
    );
    assert_eq!(
        fs::read(b.join("data/p2/f005.bin")).expect("read"),
        random_bytes(1000, 5)
    );
    let st = common::json(&b, &["status"]);
    let changes = st[0]["changes"].as_array().expect("changes");
    let mut older: Vec<&str> = changes
        .iter()
        .filter(|c| c["from_older"].is_string())
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    older.sort();
    assert_eq!(older, ["p2/f002.bin", "p2/f005.bin"], "{st:#}");
    let text = common::ok(&b, &["status"]);
    assert!(text.contains("2 files of them would take back"), "{text}");
    let text = common::fails(&b, &["commit", "-m", "B again"]);
    assert!(
        text.contains("data/p2/f005.bin (holds the bytes of version")
            && text.contains("data/p2/f002.bin (edited from version")
            && text.contains("would take back what its version")
            && text.contains("`nshard checkout data/p2/f005.bin`")
            && text.contains("nshard diff data/ --from")
            && text.contains("--force"),
        "{text}"
    );
    // `--json` names the same files, with the versions and the hint.
    let j = common::json_exit(&b, &["commit", "-m", "B again"], 1);
    let f = &j[0]["from_older"];
    assert_eq!(f["stale"][0]["path"], "data/p2/f005.bin", "{j:#}");
    assert_eq!(f["edited"][0]["path"], "data/p2/f002.bin", "{j:#}");
    assert_eq!(f["stale"][0]["version"], f["edited"][0]["version"], "{j:#}");
    assert_ne!(f["stale"][0]["version"], f["manifest_version"], "{j:#}");
    assert_eq!(f["unplaced"], false, "{j:#}");
    let hint = j[0]["hint"].as_str().expect("hint");
    assert!(hint.contains("`nshard checkout data/p2/f005.bin`"), "{j:#}");
    ok(&b, &["checkout", "data/p2/f005.bin"]);
    // Checking out that one file leaves the unit whole for the hooks.
    let parts = fs::read_to_string(b.join(".shard/cache/parts.json")).unwrap_or_default();
    assert!(!parts.contains("data"), "{parts}");
    let text = common::fails(&b, &["commit", "-m", "B again"]);
    assert!(
        text.contains("data/p2/f002.bin (edited from version") && !text.contains("f005"),
        "{text}"
    );
    ok(&b, &["commit", "-m", "B again", "--force"]);
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p2/f002.bin"], b"B again");
    assert_eq!(tree["data/p2/f005.bin"], b"A's f005");
    git_commit_and_push(&b, "B again");

    // A commits two versions before B pulls, and B edits the file the second one changed: the
    // version in between is not in B's store, and f003 still holds the version before both.
    pull(&a);
    write(&a, "data/p0/f003.bin", b"A, first");
    ok(&a, &["commit", "-m", "v6"]);
    git(&a, &["commit", "-q", "-am", "v6"]);
    write(&a, "data/p1/f004.bin", b"A, second");
    commit_and_push(&a, "v7");
    write(&b, "data/p1/f004.bin", b"B's third");
    pull(&b);
    let text = common::fails(&b, &["commit", "-m", "B's third"]);
    assert!(
        text.contains("data/p0/f003.bin (holds the bytes of version")
            && text.contains("data/p1/f004.bin (edited from version")
            && text.contains("--all-versions"),
        "{text}"
    );
    ok(&b, &["checkout", "data/p0/f003.bin"]);
    ok(&b, &["commit", "-m", "B's third", "--force"]);
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p0/f003.bin"], b"A, first");
    assert_eq!(tree["data/p1/f004.bin"], b"B's third");

    // A file removed in one version and created again later is new, not an old file's edit.
    fs::remove_file(b.join("data/p0/f000.bin")).expect("rm");
    ok(&b, &["commit", "-m", "drop f000"]);
    write(&b, "data/p0/f000.bin", b"a new f000");
    ok(&b, &["commit", "-m", "f000 again"]);

    // An older version restored with `checkout --version`: committing it is a revert.
    ok(&b, &["pull", "data/", "--all-versions"]);
    let log = common::json(&b, &["log", "data/"]);
    let first = log["data"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|v| v["version"].as_str())
        .expect("first version")
        .to_string();
    ok(&b, &["checkout", "data/", "--version", &first[..12]]);
    let text = common::fails(&b, &["commit", "-m", "revert"]);
    assert!(
        text.contains(&format!("holds the bytes of version {}", &first[..12]))
            && text.contains("a revert"),
        "{text}"
    );
    ok(&b, &["commit", "-m", "revert", "--force"]);
    assert_eq!(
        read_tree(&b, "data")["data/p2/f002.bin"],
        random_bytes(1000, 2)
    );
}

/// A unit kept as it is by `git pull` because a file deleted here was changed upstream still gets the new
/// version's listing: `status` compares with it, and `commit` refuses the file the colleague
/// changed rather than failing on a listing that is not here.
#[test]
fn a_unit_kept_for_a_removal_still_gets_the_new_listing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p1/f001.bin", b"A's change");
    write(&a, "data/p0/f000.bin", b"A's other change");
    commit_and_push(&a, "v2");

    fs::remove_file(b.join("data/p0/f000.bin")).expect("rm");
    let out = pull(&b);
    assert!(out.contains("(data/p0/f000.bin removed)"), "{out}");
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "modified", "{st:#}");
    let text = common::ok(&b, &["status"]);
    assert!(
        text.contains("data/p0/f000.bin  (16 B; removed here from version"),
        "{text}"
    );
    let text = common::fails(&b, &["commit", "-m", "drop f000"]);
    assert!(
        text.contains("data/p1/f001.bin (holds the bytes of version"),
        "{text}"
    );
    ok(&b, &["checkout", "data/p1/f001.bin"]);
    // Removing the file A changed would take A's change back too: named, and `--force` does it.
    let text = common::fails(&b, &["commit", "-m", "drop f000"]);
    assert!(
        text.contains("data/p0/f000.bin (removed here from version")
            && text.contains("`nshard checkout data/p0/f000.bin` brings back")
            && !text.contains("f001"),
        "{text}"
    );
    let j = common::json_exit(&b, &["commit", "-m", "drop f000"], 1);
    assert_eq!(
        j[0]["from_older"]["removed"][0]["path"], "data/p0/f000.bin",
        "{j:#}"
    );
    ok(&b, &["commit", "-m", "drop f000", "--force"]);
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p1/f001.bin"], b"A's change");
    assert!(!tree.contains_key("data/p0/f000.bin"));
}

/// Both commit the unit on their own lines and B merges A's line, taking A's manifest: B's own
/// committed file is B's change, not one to take back, so commit refuses only the file A
/// changed (still at the version both started from); checking that one out, the commit holds
/// both changes.
#[test]
fn a_merge_of_two_lines_of_a_unit_refuses_only_what_the_other_line_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p1/f001.bin", b"A's change");
    commit_and_push(&a, "A");
    write(&b, "data/p2/f002.bin", b"B's change");
    ok(&b, &["commit", "-m", "B"]);
    git(&b, &["commit", "-q", "-am", "B"]);

    let (merged, out) = git_try(&b, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(!merged, "the manifests conflict: {out}");
    // status names the unfinished merge, not a JSON syntax error.
    let out = common::nshard(&b).args(["status"]).output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("git conflict markers"), "{text}");
    git(&b, &["checkout", "--theirs", "data.shard.json"]);
    ok(&b, &["pull", "data/"]);
    let text = common::fails(&b, &["commit", "-m", "merge"]);
    assert!(
        text.contains("1 file(s) of data/")
            && text.contains("data/p1/f001.bin (holds the bytes of version"),
        "{text}"
    );
    ok(&b, &["checkout", "data/p1/f001.bin"]);
    ok(&b, &["commit", "-m", "merge"]);
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p1/f001.bin"], b"A's change");
    assert_eq!(tree["data/p2/f002.bin"], b"B's change");
}

/// Both add a file at the same path: B's, created here, is not based on A's, which B's commit
/// would replace: status marks it and commit refuses it.
#[test]
fn a_file_both_add_at_one_path_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p0/new.bin", b"A's new file");
    commit_and_push(&a, "v2");
    write(&b, "data/p0/new.bin", b"B's new file");
    pull(&b);
    let st = common::json(&b, &["status"]);
    let marked: Vec<&serde_json::Value> = st[0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["created_over"] == true)
        .collect();
    assert_eq!(marked.len(), 1, "{st:#}");
    let text = common::fails(&b, &["commit", "-m", "B"]);
    assert!(
        text.contains("data/p0/new.bin (created here;") && text.contains("move the files"),
        "{text}"
    );
    ok(&b, &["commit", "-m", "B", "--force"]);
}

/// Files nshard never wrote here are not taken for a colleague's: a clone that regenerates the
/// unit without checking it out commits, and so does one whose stat cache was deleted.
#[test]
fn files_written_without_nshard_commit_as_before() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 6, 1000, "v1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let c = clone(root, "c");
    ok(&c, &["pull", "data/"]);
    for i in 0..6u64 {
        write(
            &c,
            &format!("data/p{}/f{i:03}.bin", i % 3),
            &random_bytes(1000, 500 + i),
        );
    }
    ok(&c, &["commit", "-m", "regenerated"]);
    fs::remove_dir_all(a.join(".shard/cache")).expect("rm cache");
    write(&a, "data/p1/f001.bin", b"edited after the cache went");
    ok(&a, &["commit", "-m", "edit"]);
}

/// A part of a unit this clone checked out by name that a later version no longer has: the
/// hooks write nothing there and the git command succeeds.
#[test]
fn a_checked_out_part_removed_upstream_is_nothing_to_write() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let a = owner(root);
    unit_committed(&a, 6, 1000, "v1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let b = clone(root, "b");
    ok(&b, &["pull", "data/p1/", "--checkout"]);
    ok(&b, &["git-init"]);
    assert!(b.join("data/p1/f001.bin").exists());
    fs::remove_dir_all(a.join("data/p1")).expect("rm p1");
    write(&a, "data/p0/f000.bin", b"A's change");
    commit_and_push(&a, "v2 without p1");
    pull(&b);
    assert!(!b.join("data/p1").exists() || read_tree(&b, "data/p1").is_empty());
    // Later versions without it: nothing to write, no error, and git checkout succeeds.
    write(&a, "data/p2/f002.bin", b"A again");
    commit_and_push(&a, "v3");
    let out = pull(&b);
    assert!(!out.contains("matches no file"), "{out}");
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved && !out.contains("matches no file"), "{out}");
    assert!(
        !b.join("data/p0").exists(),
        "only the part checked out is written"
    );
}

/// A file the hook removed with a version that dropped it, and that a later version adds again
/// while `git pull` leaves the unit as it is (an edit in the way), was never here at that version:
/// `status` counts it not checked out, not removed, and a commit keeps it as committed rather
/// than drop the colleague's file.
#[test]
fn a_file_added_again_upstream_is_not_removed_by_the_next_commit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    fs::remove_file(a.join("data/p0/f003.bin")).expect("rm");
    commit_and_push(&a, "v2: drop f003");
    let out = pull(&b);
    assert!(!b.join("data/p0/f003.bin").exists(), "{out}");

    write(&a, "data/p0/f003.bin", b"f003 again");
    write(&a, "data/p2/f002.bin", b"A's f002");
    commit_and_push(&a, "v3: f003 again");
    write(&b, "data/p2/f002.bin", b"B's f002");
    let out = pull(&b);
    assert!(
        out.contains("has uncommitted changes (data/p2/f002.bin)"),
        "{out}"
    );
    assert!(!b.join("data/p0/f003.bin").exists(), "{out}");

    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["not_checked_out"], 1, "{st:#}");
    let changes = st[0]["changes"].as_array().expect("changes");
    assert!(changes.iter().all(|c| c["path"] != "p0/f003.bin"), "{st:#}");
    let text = common::fails(&b, &["commit", "-m", "B's f002"]);
    assert!(
        text.contains("data/p2/f002.bin (edited from version") && !text.contains("f003"),
        "{text}"
    );
    ok(&b, &["commit", "-m", "B's f002", "--force"]);
    ok(&b, &["checkout", "data/"]);
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p0/f003.bin"], b"f003 again");
    assert_eq!(tree["data/p2/f002.bin"], b"B's f002");
}

/// Edited files made on different versions of a unit: the commit's hint names one `diff` per
/// version they were made on, each of which works as printed.
#[test]
fn the_hint_names_a_diff_per_version_the_edits_were_made_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p0/f000.bin", b"A's f000");
    write(&a, "data/p1/f001.bin", b"A's f001");
    commit_and_push(&a, "v2");
    write(&b, "data/p0/f000.bin", b"B's f000");
    let out = pull(&b);
    assert!(out.contains("has uncommitted changes"), "{out}");
    // f001 brought to v2 alone, then edited there.
    ok(&b, &["checkout", "data/p1/f001.bin"]);
    write(&b, "data/p1/f001.bin", b"B's f001");
    write(&a, "data/p1/f001.bin", b"A's f001 again");
    commit_and_push(&a, "v3");
    pull(&b);
    let j = common::json_exit(&b, &["commit", "-m", "B"], 1);
    let edited = j[0]["from_older"]["edited"].as_array().expect("edited");
    assert_eq!(edited.len(), 2, "{j:#}");
    assert_ne!(edited[0]["version"], edited[1]["version"], "{j:#}");
    let hint = j[0]["hint"].as_str().expect("hint");
    let mut diffs = 0;
    for part in hint
        .split('`')
        .filter(|p| p.starts_with("nshard diff data/ --from"))
    {
        let args: Vec<&str> = part.split(' ').skip(1).collect();
        ok(&b, &args);
        diffs += 1;
    }
    assert_eq!(diffs, 2, "{hint}");
    for e in edited {
        let v = e["version"].as_str().expect("version");
        assert!(hint.contains(&format!("--from {}", &v[..12])), "{hint}");
    }
}

/// An edit, or a deletion, is not carried over a version that changed the file's execute bit
/// (carrying it would take the colleague's mode change back): the unit is left as it is.
#[cfg(unix)]
#[test]
fn an_edit_is_not_carried_over_a_mode_change() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    let f = a.join("data/p1/f001.bin");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("chmod");
    commit_and_push(&a, "v2: f001 executable");
    write(&b, "data/p1/f001.bin", b"B's f001");
    let out = pull(&b);
    assert!(
        out.contains("has uncommitted changes (data/p1/f001.bin)"),
        "{out}"
    );
    assert_eq!(
        fs::read(b.join("data/p1/f001.bin")).expect("read"),
        b"B's f001"
    );

    // Nor a deletion.
    ok(&b, &["checkout", "--force", "data/"]);
    let f = a.join("data/p2/f002.bin");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).expect("chmod");
    commit_and_push(&a, "v3: f002 executable");
    fs::remove_file(b.join("data/p2/f002.bin")).expect("rm");
    let out = pull(&b);
    assert!(
        out.contains("has uncommitted changes (data/p2/f002.bin removed)"),
        "{out}"
    );
    assert!(!b.join("data/p2/f002.bin").exists(), "{out}");
}

/// An edit carried into an older version by a partial `checkout --version` carries on when git
/// moves the whole unit to that version (the hooks never take an edit for a request to restore
/// the file), and so does a whole `checkout --version` of it.
#[test]
fn an_edit_carried_into_a_version_carries_on_when_git_moves_there() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p1/f001.bin", b"A's f001");
    commit_and_push(&a, "v2");
    pull(&b);
    let log = common::json(&b, &["log", "data/"]);
    let v1 = log["data"][1]["version"].as_str().expect("v1").to_string();
    write(&b, "data/p2/f002.bin", b"B's f002");
    let text = ok(&b, &["checkout", "data/p2/", "--version", &v1[..12]]);
    assert!(text.contains("kept your edits to 1 file"), "{text}");

    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert!(
        out.contains("kept your edits to 1 file (data/p2/f002.bin)")
            && !out.contains("uncommitted"),
        "{out}"
    );
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p1/f001.bin"], random_bytes(1000, 1), "{out}");
    assert_eq!(tree["data/p2/f002.bin"], b"B's f002", "{out}");
    ok(&b, &["checkout", "data/", "--version", &v1[..12]]);
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    let tree = read_tree(&b, "data");
    assert_eq!(tree["data/p1/f001.bin"], b"A's f001", "{out}");
    assert_eq!(tree["data/p2/f002.bin"], b"B's f002", "{out}");
    // By hand, without `--version`, the edit is in the way of the version it was made on.
    let err = common::fails(&b, &["checkout", "data/"]);
    assert!(err.contains("has local changes"), "{err}");
}

/// A post-merge hook that git gives no commit before (no `ORIG_HEAD`) still keeps a file
/// deleted here, judged against the version the work tree's manifest names.
#[test]
fn a_removal_is_kept_by_a_hook_without_the_commit_before() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = owner_and_colleague(tmp.path());
    write(&a, "data/p1/f001.bin", b"A's change");
    commit_and_push(&a, "v2");
    fs::remove_file(b.join("data/p0/f000.bin")).expect("rm");
    // The merge without hooks, then the hook by hand with no ORIG_HEAD.
    git(
        &b,
        &[
            "-c",
            "core.hooksPath=/nonexistent",
            "pull",
            "-q",
            "origin",
            "main",
        ],
    );
    let _ = fs::remove_file(b.join(".git/ORIG_HEAD"));
    let out = common::nshard(&b)
        .args(["hook", "post-merge", "0"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("kept 1 file removed (data/p0/f000.bin)"),
        "{text}"
    );
    assert!(!b.join("data/p0/f000.bin").exists(), "{text}");
    assert_eq!(
        fs::read(b.join("data/p1/f001.bin")).expect("read"),
        b"A's change"
    );
}
