//! Documented behaviours that had no test (issue 26, "untested documented behaviours"): exit
//! status 2 for usage errors, `-C DIR` from anywhere, and the states of a directory unit that
//! `status` documents (`new`, `not-checked-out`, `not-pulled`).

mod common;

use common::TestRepo;

#[test]
fn usage_errors_exit_with_status_2() {
    let repo = TestRepo::new();
    for args in [
        &["commit"][..],
        &["no-such-command"][..],
        &["status", "--no-such-flag"][..],
        &["checkout", "--version"][..],
    ] {
        let out = common::nshard(repo.path())
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{args:?}: {out:?}"
        );
    }
}

#[test]
fn dash_c_runs_in_another_directory_from_anywhere() {
    let repo = TestRepo::new();
    repo.write("sub/m.bin", &common::random_bytes(20_000, 1));
    let elsewhere = tempfile::tempdir().expect("tmp");
    let dir = repo.path().to_str().expect("utf8");
    // From an unrelated directory: the repository is the one -C names.
    common::ok(elsewhere.path(), &["-C", dir, "track", "sub/m.bin"]);
    common::ok(elsewhere.path(), &["-C", dir, "commit", "-m", "v1"]);
    let st = common::json(elsewhere.path(), &["-C", dir, "status"]);
    assert_eq!(st[0]["path"], "sub/m.bin", "{st}");
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    // -C into a subdirectory: paths are relative to it, as from a shell there.
    let sub = repo.join("sub");
    let st = common::json(
        elsewhere.path(),
        &["-C", sub.to_str().expect("utf8"), "status", "m.bin"],
    );
    assert_eq!(st[0]["path"], "sub/m.bin", "{st}");
    // A directory outside any repository is an error naming it, exit status 1.
    let out = common::nshard(elsewhere.path())
        .args(["-C", elsewhere.path().to_str().expect("utf8"), "status"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a NeuroShard repository"),
        "{out:?}"
    );
}

#[test]
fn a_units_new_not_checked_out_and_not_pulled_states() {
    let repo = TestRepo::new();
    repo.write("data/a.txt", b"a\n");
    repo.write("data/b/c.txt", b"c\n");
    repo.ok(&["track", "--dir", "data"]);
    let state = |repo: &TestRepo| repo.json(&["status", "data"])[0]["state"].clone();
    assert_eq!(state(&repo), "new");
    repo.ok(&["commit", "-m", "v1"]);
    assert_eq!(state(&repo), "unchanged");
    std::fs::remove_dir_all(repo.join("data")).expect("rm");
    assert_eq!(state(&repo), "not-checked-out");
    let text = repo.ok(&["status"]);
    assert!(text.contains("nshard checkout data/"), "{text}");
    // The listing leaves the local store (as in a clone that has only the manifest).
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("data.shard.json")).expect("manifest"))
            .expect("json");
    let listing = m["listing"].as_str().expect("listing id");
    std::fs::remove_file(repo.object_path(listing)).expect("rm listing");
    assert_eq!(state(&repo), "not-pulled");
    let text = repo.ok(&["status"]);
    assert!(text.contains("nshard pull"), "{text}");
}

/// Outside a git repository, commit does not tell the user to `git add` (issue 23, case 9).
#[test]
fn commit_outside_git_does_not_mention_git_add() {
    let (repo, _) = common::TestRepo::committed(100_000);
    repo.write("m/model.bin", &common::random_bytes(100_000, 9));
    let out = repo.ok(&["commit", "-m", "v2"]);
    assert!(out.contains("1 committed, 0 unchanged"), "{out}");
    assert!(!out.contains("git add"), "{out}");
}

/// `nshard diff` without a path shows, like `git diff`, every tracked file that differs from its
/// committed version, and only those (issue 23, case 9: it was a usage error).
#[test]
fn diff_without_a_path_shows_what_changed() {
    let repo = TestRepo::new();
    repo.write("a.bin", &common::random_bytes(200_000, 1));
    repo.write("b.bin", &common::random_bytes(200_000, 2));
    repo.ok(&["track", "a.bin", "b.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let out = repo.ok(&["diff"]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(repo.json(&["diff"]), serde_json::json!([]));
    repo.write("b.bin", &common::random_bytes(200_000, 3));
    let d = repo.json(&["diff"]);
    let paths: Vec<&str> = d
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, vec!["b.bin"], "{d}");
    let out = repo.ok(&["diff"]);
    assert!(out.contains("b.bin") && !out.contains("a.bin"), "{out}");
    // A file holding an older committed version differs from its committed version too.
    repo.ok(&["commit", "-m", "v2"]);
    let log = repo.json(&["log", "b.bin"]);
    let v1 = log[1]["version"].as_str().expect("v1").to_string();
    repo.ok(&["checkout", "b.bin", "--version", &v1]);
    let d = repo.json(&["diff"]);
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d[0]["path"], "b.bin", "{d}");
    // Versions need one named target.
    let err = repo.fails(&["diff", "--from", "abcd"]);
    assert!(!err.is_empty());
}
