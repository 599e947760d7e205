//! One target type for files and directory units: `checkout --version` and `diff --from/--to`
//! work for a unit as for a file, and a unit's unchanged state reads `unchanged` like a file's.

mod common;

use common::{git, read_tree, TestRepo};

/// A repository with a file `model.bin` and a directory unit `data/`, each committed twice.
/// Returns the repo and the two versions' ids of the unit (v1, v2).
fn two_versions() -> (TestRepo, String, String) {
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init", "--no-hooks"]);
    repo.write("data/a.txt", b"alpha v1\n");
    repo.write("data/sub/b.txt", b"beta\n");
    repo.write("data/gone.txt", b"only in v1\n");
    repo.write("model.bin", &common::random_bytes(200_000, 7));
    repo.ok(&["track", "--dir", "data"]);
    repo.ok(&["track", "model.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let v1 = repo.json(&["log", "data"])["data"][0]["version"]
        .as_str()
        .expect("v1")
        .to_string();
    repo.write("data/a.txt", b"alpha v2, longer\n");
    std::fs::remove_file(repo.join("data/gone.txt")).expect("rm");
    repo.write("data/new.txt", b"new in v2\n");
    repo.write("model.bin", &common::random_bytes(200_000, 8));
    repo.ok(&["commit", "-m", "v2"]);
    let v2 = repo.json(&["log", "data"])["data"][0]["version"]
        .as_str()
        .expect("v2")
        .to_string();
    assert_ne!(v1, v2);
    (repo, v1, v2)
}

#[test]
fn a_units_unchanged_state_reads_like_a_files() {
    let (repo, _, _) = two_versions();
    let st = repo.json(&["status"]);
    let states: Vec<(&str, &str)> = st
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("model.bin", "unchanged"), ("data", "unchanged")],
        "{st}"
    );
    let text = repo.ok(&["status"]);
    assert!(text.contains("unchanged     data/"), "{text}");
}

#[test]
fn checkout_version_restores_an_older_version_of_a_unit() {
    let (repo, v1, v2) = two_versions();
    let out = repo.ok(&["checkout", "data", "--version", &v1[..8]]);
    assert!(
        out.contains(&format!("checked out version {}", &v1[..12])),
        "{out}"
    );
    let tree = read_tree(repo.path(), "data");
    let names: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["data/a.txt", "data/gone.txt", "data/sub/b.txt"],
        "{tree:?}"
    );
    assert_eq!(tree["data/a.txt"], b"alpha v1\n");
    // The manifest still names v2: the unit reads as modified until it is checked out again.
    let st = repo.json(&["status", "data"]);
    assert_eq!(st[0]["state"], "modified", "{st}");
    assert_eq!(st[0]["version"], v2.as_str(), "{st}");
    repo.ok(&["checkout", "data"]);
    let tree = read_tree(repo.path(), "data");
    assert_eq!(tree["data/a.txt"], b"alpha v2, longer\n");
    assert!(!tree.contains_key("data/gone.txt"), "{tree:?}");
    assert_eq!(repo.json(&["status", "data"])[0]["state"], "unchanged");
}

#[test]
fn diff_from_to_compares_two_stored_versions_of_a_unit() {
    let (repo, v1, v2) = two_versions();
    let d = repo.json(&["diff", "data", "--from", &v1[..8], "--to", &v2[..8]]);
    let d = &d[0];
    assert_eq!(d["version"], v1.as_str(), "{d}");
    assert_eq!(d["to"], v2.as_str(), "{d}");
    let changes: Vec<(String, String)> = d["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["path"].to_string(), c["kind"].to_string()))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("\"a.txt\"".into(), "\"modified\"".into()),
            ("\"gone.txt\"".into(), "\"removed\"".into()),
            ("\"new.txt\"".into(), "\"added\"".into()),
        ],
        "{d}"
    );
    // --to alone compares with the parent; the same three changes.
    let alone = repo.json(&["diff", "data", "--to", &v2[..8]]);
    assert_eq!(alone[0]["changes"], d["changes"], "{alone}");
    // --from alone: the work tree (at v2) against v1.
    let wt = repo.json(&["diff", "data", "--from", &v1[..8]]);
    assert_eq!(wt[0]["changes"], d["changes"], "{wt}");
    assert!(wt[0].get("to").is_none(), "{wt}");
    // Text output names both sides.
    let text = repo.ok(&["diff", "data", "--from", &v1[..8], "--to", &v2[..8]]);
    assert!(
        text.contains(&format!("{} -> {}", &v1[..12], &v2[..12])),
        "{text}"
    );
    // The first version against nothing: every file added.
    let first = repo.json(&["diff", "data", "--to", &v1[..8]]);
    assert_eq!(
        first[0]["changes"].as_array().map(Vec::len),
        Some(3),
        "{first}"
    );
}

#[test]
fn a_version_names_one_target() {
    let (repo, v1, _) = two_versions();
    let err = repo.fails(&["checkout", "data", "model.bin", "--version", &v1[..8]]);
    assert!(err.contains("name exactly one file or directory"), "{err}");
    let err = repo.fails(&["diff", "data", "model.bin", "--to", &v1[..8]]);
    assert!(err.contains("name exactly one file or directory"), "{err}");
    // A unit's version id is not a version of the file, and the other way round.
    let err = repo.fails(&["checkout", "model.bin", "--version", &v1[..8]]);
    assert!(err.contains("matches no version"), "{err}");
}

/// Issue 26, case 3: `checkout --force` of a unit overwrites uncommitted changes, but never
/// deletes a file nshard neither committed nor wrote.
#[test]
fn checkout_force_of_a_unit_keeps_files_nshard_never_wrote() {
    let (repo, v1, _) = two_versions();
    repo.write("data/mine.txt", b"my own notes, never committed\n");
    repo.write("data/a.txt", b"an uncommitted edit\n");
    let out = repo.ok(&["checkout", "--force", "data", "--version", &v1[..8]]);
    assert!(
        out.contains("1 file not in this version left in place"),
        "{out}"
    );
    assert_eq!(
        repo.read("data/mine.txt"),
        b"my own notes, never committed\n"
    );
    assert_eq!(repo.read("data/a.txt"), b"alpha v1\n");
    // A file nshard wrote (new.txt, from v2) and not in v1 is removed.
    assert!(!repo.join("data/new.txt").exists());
    let out = repo.ok(&["checkout", "--force", "data"]);
    assert!(out.contains("left in place"), "{out}");
    assert_eq!(
        repo.read("data/mine.txt"),
        b"my own notes, never committed\n"
    );
}
