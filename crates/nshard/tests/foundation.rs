//! End-to-end tests of the foundation (issue 2): init, git-init, track, untrack, commit, status,
//! checkout. Bad input is in foundation_bad_input.rs. They drive the real `nshard` binary.

mod common;

use std::fs;

use common::{random_bytes, TestRepo};
use nshard_core::ObjectId;

const MIB: usize = 1024 * 1024;

#[test]
fn init_is_idempotent_and_commands_need_a_repo() {
    let dir = tempfile::tempdir().expect("tmp");
    let first = common::ok(dir.path(), &["init"]);
    assert!(
        first.contains("Initialized empty NeuroShard repository"),
        "{first}"
    );
    let second = common::ok(dir.path(), &["init"]);
    assert!(second.contains("already initialized"), "{second}");
    let outside = tempfile::tempdir().expect("tmp");
    for args in [
        &["status"][..],
        &["track", "x"],
        &["commit", "-m", "x"],
        &["checkout"],
        &["git-init"],
    ] {
        let err = common::fails(outside.path(), args);
        assert!(
            err.contains("not a NeuroShard repository"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn works_from_a_subdirectory() {
    let repo = TestRepo::new();
    repo.write("a/b/w.bin", &random_bytes(100_000, 1));
    let sub = repo.join("a/b");
    common::ok(&sub, &["track", "w.bin"]);
    let out = common::ok(&sub, &["commit", "-m", "from sub"]);
    assert!(out.contains("a/b/w.bin: committed"), "{out}");
    assert!(repo.join("a/b/w.bin.shard.json").is_file());
    let st = common::json(&sub, &["status"]);
    assert_eq!(st[0]["path"], "a/b/w.bin");
    assert_eq!(st[0]["state"], "unchanged");
}

#[test]
fn git_init_ignores_data_but_not_config_or_manifests() {
    let repo = TestRepo::new();
    let err = repo.fails(&["git-init"]);
    assert!(err.contains("not inside a git repository"), "{err}");
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo.path())
        .status()
        .expect("git runs");
    assert!(git.success());
    repo.ok(&["git-init"]);
    repo.write("models/w.bin", &random_bytes(50_000, 2));
    repo.ok(&["track", "models"]);
    repo.ok(&["commit", "-m", "v1"]);
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(repo.path())
        .output()
        .expect("git status");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(".shard/config.toml"), "{listed}");
    assert!(listed.contains("models/w.bin.shard.json"), "{listed}");
    assert!(listed.contains(".gitignore"), "{listed}");
    // A file that appears later under the tracked directory is ignored once committed.
    repo.write("models/later.bin", &random_bytes(50_000, 3));
    repo.ok(&["commit", "-m", "v2"]);
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(repo.path())
        .output()
        .expect("git status");
    let listed2 = String::from_utf8_lossy(&out.stdout);
    assert!(listed2.contains("models/later.bin.shard.json"), "{listed2}");
    assert!(!listed2.contains("models/later.bin\n"), "{listed2}");
    assert!(!listed.contains(".shard/objects"), "{listed}");
    assert!(!listed.contains(".shard/cache"), "{listed}");
    assert!(!listed.contains("models/w.bin\n"), "{listed}");
}

#[test]
fn track_globs_directories_and_refusals() {
    let repo = TestRepo::new();
    repo.write("d/one.bin", b"1");
    repo.write("d/sub/two.bin", b"2");
    repo.write("x.safetensors", b"3");
    repo.write("y.txt", b"4");
    let out = repo.ok(&["track", "d", "*.safetensors"]);
    assert!(out.contains("tracking d/ (2 files)"), "{out}");
    assert!(out.contains("tracking *.safetensors (1 file)"), "{out}");
    assert!(repo.ok(&["track", "d"]).contains("already tracked"));
    repo.ok(&["commit", "-m", "c"]);
    let st = repo.json(&["status"]);
    let paths: Vec<&str> = st
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["d/one.bin", "d/sub/two.bin", "x.safetensors"]);
    // Files added to a tracked directory later are picked up.
    repo.write("d/three.bin", b"3");
    assert!(repo.ok(&["status"]).contains("new"));
    let outside = tempfile::tempdir().expect("tmp");
    for (arg, why) in [
        ("../outside", "outside the repository"),
        ("/etc/passwd", "outside the repository"),
        ("d/one.bin.shard.json", "manifest"),
        (".shard/config.toml", ".shard"),
        ("nope.bin", "no such file"),
        ("linked/a.bin", "symlinked directory"),
        ("linked", "is a symlink"),
    ] {
        if arg.starts_with("linked") && !repo.join("linked").exists() {
            fs::write(outside.path().join("a.bin"), b"outside").expect("w");
            std::os::unix::fs::symlink(outside.path(), repo.join("linked")).expect("symlink");
        }
        let err = repo.fails(&["track", arg]);
        assert!(err.contains(why), "{arg}: {err}");
    }
    repo.ok(&["untrack", "d"]);
    let err = repo.fails(&["untrack", "y.txt"]);
    assert!(err.contains("not tracked"), "{err}");
}

#[test]
fn commit_skips_unchanged_and_dedups_a_changed_region() {
    let (repo, mut data) = TestRepo::committed(40 * MIB);
    let again = repo.json(&["commit", "-m", "again"]);
    assert_eq!(again[0]["result"], "unchanged");
    // Touching the file (same content, new mtime) is still no new version.
    repo.write("m/model.bin", &data);
    assert_eq!(
        repo.json(&["commit", "-m", "touched"])[0]["result"],
        "unchanged"
    );
    // v2: one 10 MiB region rewritten.
    let patch = random_bytes(10 * MIB, 7);
    data[15 * MIB..25 * MIB].copy_from_slice(&patch);
    repo.write("m/model.bin", &data);
    let v1 = repo.manifest("m/model.bin");
    let v1_id = ObjectId::of(&repo.read("m/model.bin.shard.json"));
    let r = repo.json(&["commit", "-m", "v2"]);
    assert_eq!(r[0]["result"], "committed", "{r}");
    let total = r[0]["chunks_total"].as_u64().expect("n");
    let new = r[0]["chunks_new"].as_u64().expect("n");
    assert!(new <= 5, "{new} of {total} chunks new for a 10 MiB change");
    assert!(
        r[0]["new_bytes"].as_u64().expect("n") < 24 * MIB as u64,
        "{r}"
    );
    let v2 = repo.manifest("m/model.bin");
    assert_ne!(v1, v2);
    assert_eq!(v2["version"]["parent"], v1_id.to_hex(), "v2's parent is v1");
}

#[test]
fn insertion_near_the_start_keeps_most_chunks_with_cdc() {
    let repo = TestRepo::new();
    let data = random_bytes(200 * MIB, 3);
    repo.write("big.bin", &data);
    repo.ok(&["track", "big.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let mut v2 = data[..5000].to_vec();
    v2.extend_from_slice(&random_bytes(1000, 9));
    v2.extend_from_slice(&data[5000..]);
    repo.write("big.bin", &v2);
    let r = repo.json(&["commit", "-m", "insert"]);
    let total = r[0]["chunks_total"].as_f64().expect("n");
    let reused = r[0]["chunks_reused"].as_f64().expect("n");
    assert!(
        reused / total >= 0.9,
        "only {reused} of {total} chunks reused"
    );
}

#[test]
fn checkout_restores_versions_and_protects_local_changes() {
    let (repo, v1) = TestRepo::committed(3 * MIB);
    let id1 = ObjectId::of(&repo.read("m/model.bin.shard.json")).to_hex();
    let mut v2 = v1.clone();
    v2[100] ^= 0xff;
    repo.write("m/model.bin", &v2);
    repo.ok(&["commit", "-m", "v2"]);
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    assert_eq!(repo.json(&["status"])[0]["state"], "missing");
    repo.ok(&["checkout"]);
    assert_eq!(repo.read("m/model.bin"), v2);
    // Restore v1 by a prefix of its version id.
    let out = repo.ok(&["checkout", "m/model.bin.shard.json", "--version", &id1[..8]]);
    assert!(out.contains(&id1[..12]), "{out}");
    assert_eq!(repo.read("m/model.bin"), v1);
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "outdated", "{st}");
    assert_eq!(st[0]["file_version"], id1);
    // Committing the older content needs --force (it would undo v2).
    let err = repo.fails(&["commit", "-m", "revert?"]);
    assert!(err.contains("--force"), "{err}");
    let err = repo.fails(&["checkout", "m/model.bin", "--version", "ffffffff"]);
    assert!(err.contains("matches no version"), "{err}");
    // A local edit is not overwritten without --force.
    repo.write("m/model.bin", b"my precious local edit");
    let err = repo.fails(&["checkout"]);
    assert!(err.contains("local changes"), "{err}");
    assert_eq!(repo.read("m/model.bin"), b"my precious local edit");
    repo.ok(&["checkout", "--force"]);
    assert_eq!(repo.read("m/model.bin"), v2);
    assert!(repo.ok(&["checkout"]).contains("up to date"));
}

/// Checkout dates the file it writes slightly in the past, so that its stat is trusted later
/// without re-hashing; an edit right after the checkout, in place and of the same size, must still
/// be seen (it sets a newer mtime).
#[test]
fn an_edit_right_after_checkout_is_seen() {
    let (repo, v1) = TestRepo::committed(2 * MIB);
    for round in 0..5u8 {
        fs::remove_file(repo.join("m/model.bin")).expect("rm");
        repo.ok(&["checkout"]);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(repo.join("m/model.bin"))
            .expect("open");
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[v1[1000] ^ (round + 1)], 1000)
            .expect("edit");
        drop(f);
        assert_eq!(
            fs::metadata(repo.join("m/model.bin")).expect("md").len(),
            v1.len() as u64
        );
        let st = repo.json(&["status"]);
        assert_eq!(st[0]["state"], "modified", "round {round}: {st}");
        let err = repo.fails(&["checkout"]);
        assert!(err.contains("local changes"), "{err}");
    }
}

#[test]
fn status_reports_every_state() {
    let (repo, _) = TestRepo::committed(MIB);
    repo.write("n.bin", b"new file");
    repo.ok(&["track", "n.bin"]);
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "unchanged");
    assert_eq!(st[1]["state"], "new");
    repo.write("m/model.bin", b"changed");
    assert_eq!(repo.json(&["status"])[0]["state"], "modified");
    repo.ok(&["checkout", "--force"]);
    // Data missing from the local store.
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    fs::remove_file(repo.object_path(&id)).expect("rm object");
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "data-missing", "{st}");
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "missing");
    assert_eq!(st[0]["data_present"], false);
    let err = repo.fails(&["checkout"]);
    assert!(err.contains(&id), "{err}");

    // The other four, each on a file of its own.
    let state_of = |st: &serde_json::Value, path: &str| -> String {
        st.as_array()
            .expect("status list")
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {st}"))["state"]
            .as_str()
            .expect("state")
            .to_string()
    };
    for f in ["o.bin", "c.bin", "i.bin", "u.bin"] {
        repo.write(f, f.as_bytes());
    }
    repo.ok(&["track", "o.bin", "c.bin", "i.bin", "u.bin"]);
    repo.ok(&["commit", "-m", "four more"]);
    // outdated: the file holds an older committed version than its manifest names.
    repo.write("o.bin", b"o.bin, second version");
    repo.ok(&["commit", "-m", "o v2", "o.bin"]);
    let log = repo.json(&["log", "o.bin"]);
    let v1_id = log[1]["version"].as_str().expect("v1").to_string();
    repo.ok(&["checkout", "o.bin", "--version", &v1_id, "--force"]);
    // conflicted: git conflict markers in the manifest.
    let m = String::from_utf8(repo.read("c.bin.shard.json")).expect("utf8");
    repo.write(
        "c.bin.shard.json",
        format!("<<<<<<< HEAD\n{m}=======\n{m}>>>>>>> theirs\n").as_bytes(),
    );
    // invalid: a manifest that is not one.
    repo.write("i.bin.shard.json", b"{\"format\": \"not a manifest\"}");
    // unreadable: the data file replaced by a symlink.
    let outside = tempfile::tempdir().expect("tmp");
    fs::rename(repo.join("u.bin"), outside.path().join("u.bin")).expect("mv");
    std::os::unix::fs::symlink(outside.path().join("u.bin"), repo.join("u.bin")).expect("ln");
    let st = repo.json_exit(&["status"], 1);
    assert_eq!(state_of(&st, "o.bin"), "outdated", "{st}");
    assert_eq!(state_of(&st, "c.bin"), "conflicted", "{st}");
    assert_eq!(state_of(&st, "i.bin"), "invalid", "{st}");
    assert_eq!(state_of(&st, "u.bin"), "unreadable", "{st}");
}
