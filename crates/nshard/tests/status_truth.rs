//! `nshard status` tells the truth with real git: after `git checkout HEAD~1` the file holds a
//! NEWER version than the manifest names (and the other way round after going back), a manifest
//! with git conflict markers is `conflicted` with the way out, and `status --remote` reports the
//! committed versions a remote lacks.

mod common;

use std::fs;
use std::path::Path;

use common::serve::Served;
use common::{git, nshard, random_bytes};
use nshard_core::ObjectId;

/// A git work tree with nshard initialised and `m.bin` tracked. No hooks: these tests look at
/// what status says when git moved a manifest and nothing checked the file out.
fn git_repo(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    common::ok(dir, &["init"]);
    common::ok(dir, &["git-init", "--no-hooks"]);
}

/// Writes `m.bin`, commits it with nshard and git; returns (data, version id).
fn version(dir: &Path, seed: u64, msg: &str) -> (Vec<u8>, String) {
    let data = random_bytes(300_000, seed);
    fs::write(dir.join("m.bin"), &data).expect("write");
    common::ok(dir, &["track", "m.bin"]);
    common::ok(dir, &["commit", "-m", msg]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    let id = ObjectId::of(&fs::read(dir.join("m.bin.shard.json")).expect("manifest")).to_hex();
    (data, id)
}

fn status(dir: &Path) -> (serde_json::Value, String) {
    let json = common::json(dir, &["status"]);
    let human = common::ok(dir, &["status"]);
    (json, human)
}

#[test]
fn outdated_says_newer_or_older_by_the_parent_chain() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r);
    let (v1, id1) = version(&r, 1, "v1");
    let (v2, id2) = version(&r, 2, "v2");

    // Back to the older commit: the manifest names v1, the file still holds v2, which is NEWER.
    git(&r, &["checkout", "-q", "HEAD~1"]);
    let (st, human) = status(&r);
    assert_eq!(st[0]["state"], "outdated", "{st}");
    assert_eq!(st[0]["version"], id1.as_str(), "{st}");
    assert_eq!(st[0]["file_version"], id2.as_str(), "{st}");
    assert_eq!(st[0]["file_is"], "newer", "{st}");
    assert!(human.contains("newer version"), "{human}");
    assert!(human.contains("`nshard checkout`"), "{human}");
    assert!(!human.contains("older version"), "{human}");
    // Committing would record v2's data again on top of v1: refused without --force, and the
    // message does not call the data older.
    let err = common::fails(&r, &["commit", "-m", "x"]);
    assert!(err.contains("newer"), "{err}");
    assert!(!err.contains("older content"), "{err}");
    common::ok(&r, &["checkout"]);
    assert!(fs::read(r.join("m.bin")).expect("read") == v1);
    assert_eq!(status(&r).0[0]["state"], "unchanged");

    // Forward again: the manifest names v2, the file holds v1, which is OLDER. Only checkout is
    // advised; `commit --force` would record old data as the newest version.
    git(&r, &["checkout", "-q", "main"]);
    let (st, human) = status(&r);
    assert_eq!(st[0]["state"], "outdated", "{st}");
    assert_eq!(st[0]["file_version"], id1.as_str(), "{st}");
    assert_eq!(st[0]["file_is"], "older", "{st}");
    assert!(human.contains("older version"), "{human}");
    assert!(human.contains("`nshard checkout`"), "{human}");
    assert!(!human.contains("--force"), "{human}");
    let err = common::fails(&r, &["commit", "-m", "x"]);
    assert!(err.contains("older"), "{err}");
    common::ok(&r, &["checkout"]);
    assert!(fs::read(r.join("m.bin")).expect("read") == v2);
}

#[test]
fn an_old_version_copied_in_by_hand_is_recognised_as_older() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r);
    let (v1, id1) = version(&r, 1, "v1");
    version(&r, 2, "v2");
    // No record of nshard writing it: the content matches v1 in the manifest's history.
    fs::remove_file(r.join("m.bin")).expect("rm");
    fs::remove_file(r.join(".shard/cache/stat.json")).expect("the stat cache of two commits");
    fs::write(r.join("m.bin"), &v1).expect("write");
    let (st, human) = status(&r);
    assert_eq!(st[0]["state"], "outdated", "{st}");
    assert_eq!(st[0]["file_version"], id1.as_str(), "{st}");
    assert_eq!(st[0]["file_is"], "older", "{st}");
    assert!(!human.contains("--force"), "{human}");
    // The advice works: checkout replaces it (its content is v1, safe in the store).
    common::ok(&r, &["checkout"]);
    assert_eq!(status(&r).0[0]["state"], "unchanged");
}

#[test]
fn a_manifest_with_conflict_markers_is_conflicted() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r);
    version(&r, 1, "v1");
    git(&r, &["checkout", "-q", "-b", "theirs"]);
    let (v_theirs, id_theirs) = version(&r, 2, "theirs");
    git(&r, &["checkout", "-q", "main"]);
    common::ok(&r, &["checkout", "--force"]);
    let (v_ours, id_ours) = version(&r, 3, "ours");
    merge_conflicting_theirs(&r);
    let text = fs::read_to_string(r.join("m.bin.shard.json")).expect("manifest");
    assert!(text.contains("<<<<<<<"), "{text}");

    let out = nshard(&r)
        .args(["status", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "conflicted is a state, not a failure");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st[0]["state"], "conflicted", "{st}");
    assert_eq!(st[0]["ours"], id_ours.as_str(), "{st}");
    assert_eq!(st[0]["theirs"], id_theirs.as_str(), "{st}");
    let human = common::ok(&r, &["status"]);
    assert!(human.contains("conflicted"), "{human}");
    assert!(
        human.contains("git checkout --theirs m.bin.shard.json")
            && human.contains("--ours")
            && human.contains("then `nshard checkout`, or `nshard pull --checkout`"),
        "{human}"
    );
    assert!(!human.contains("not valid JSON"), "{human}");
    // Other commands say the same instead of a JSON parse error, and write nothing.
    let err = common::fails(&r, &["checkout"]);
    assert!(err.contains("conflict"), "{err}");
    assert!(fs::read(r.join("m.bin")).expect("read") == v_ours);

    // The way out works: take theirs, check it out.
    git(&r, &["checkout", "--theirs", "m.bin.shard.json"]);
    git(&r, &["add", "m.bin.shard.json"]);
    common::ok(&r, &["checkout"]);
    assert!(fs::read(r.join("m.bin")).expect("read") == v_theirs);
    assert_eq!(status(&r).0[0]["state"], "unchanged");
}

#[test]
fn status_remote_reports_versions_the_remote_lacks() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("server-store"), &[], &[]);
    let r = d.path().join("r");
    git_repo(&r);
    version(&r, 1, "v1");
    fs::write(r.join("other.bin"), random_bytes(200_000, 9)).expect("write");
    common::ok(&r, &["track", "other.bin"]);
    common::ok(&r, &["commit", "-m", "other"]);
    common::ok(&r, &["remote", "add", "origin", &server.url]);

    let st = common::json(&r, &["status", "--remote"]);
    for f in st.as_array().expect("array") {
        assert!(
            f["remote"]["missing_objects"].as_u64().expect("n") > 0,
            "nothing was pushed: {st}"
        );
    }
    let human = common::ok(&r, &["status", "--remote"]);
    assert!(human.contains("2 of 2 committed versions"), "{human}");
    assert!(human.contains("nshard push"), "{human}");

    common::ok(&r, &["push", "m.bin"]);
    let st = common::json(&r, &["status", "--remote", "origin"]);
    let by_path = |p: &str| {
        st.as_array()
            .expect("array")
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {st}"))
            .clone()
    };
    assert_eq!(by_path("m.bin")["remote"]["missing_objects"], 0, "{st}");
    assert!(
        by_path("other.bin")["remote"]["missing_objects"]
            .as_u64()
            .expect("n")
            > 0
    );
    let human = common::ok(&r, &["status", "--remote"]);
    assert!(human.contains("1 of 2 committed versions"), "{human}");

    // Paths restrict what is checked; written after --remote, a path is not taken for a remote.
    let st = common::json(&r, &["status", "other.bin", "--remote"]);
    assert_eq!(st.as_array().expect("array").len(), 1, "{st}");
    let err = common::fails(&r, &["status", "--remote", "other.bin"]);
    assert!(err.contains("nshard status other.bin --remote"), "{err}");

    common::ok(&r, &["push"]);
    let human = common::ok(&r, &["status", "--remote"]);
    assert!(human.contains("has every committed version"), "{human}");

    // A remote that cannot be reached is an error, not a report that everything is there.
    drop(server);
    let err = common::fails(&r, &["status", "--remote"]);
    assert!(err.contains("remote"), "{err}");
}

/// Two sides that change different chunks of the same version: git merges those hunks and
/// conflicts only on the header (hash, message, timestamp), so the sides rebuilt from the
/// markers name no real version. Status names the versions each side committed (git's index
/// holds them exactly), and the way out fetches what the kept side needs.
#[test]
fn conflict_sides_are_the_versions_each_side_committed() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r);
    fs::write(
        r.join(".shard/config.toml"),
        "[chunking]\nalgorithm = \"fixed\"\nsize = 65536\n",
    )
    .expect("fixed chunks, so that an edit changes one chunk line");
    let base = random_bytes(16 * 65536, 41);
    let commit = |data: &[u8], msg: &str| {
        fs::write(r.join("m.bin"), data).expect("write");
        common::ok(&r, &["track", "m.bin"]);
        common::ok(&r, &["commit", "-m", msg]);
        git(&r, &["add", "-A"]);
        git(&r, &["commit", "-q", "-m", msg]);
        ObjectId::of(&fs::read(r.join("m.bin.shard.json")).expect("manifest")).to_hex()
    };
    commit(&base, "base");
    git(&r, &["checkout", "-q", "-b", "theirs"]);
    let mut theirs = base.clone();
    theirs[..65536].copy_from_slice(&random_bytes(65536, 42));
    let id_theirs = commit(&theirs, "theirs: first chunk");
    git(&r, &["checkout", "-q", "main"]);
    common::ok(&r, &["checkout", "--force"]);
    let mut ours = base.clone();
    let n = ours.len();
    ours[n - 65536..].copy_from_slice(&random_bytes(65536, 43));
    let id_ours = commit(&ours, "ours: last chunk");
    merge_conflicting_theirs(&r);
    let st = common::json(&r, &["status"]);
    assert_eq!(st[0]["state"], "conflicted", "{st}");
    assert_eq!(st[0]["ours"], id_ours.as_str(), "{st}");
    assert_eq!(st[0]["theirs"], id_theirs.as_str(), "{st}");
    let human = common::ok(&r, &["status"]);
    assert!(
        human.contains("or `nshard pull --checkout` if that side's data is not here"),
        "{human}"
    );
}

/// `git merge theirs` in `r`, which must stop on conflicting manifests.
fn merge_conflicting_theirs(r: &Path) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args(["merge", "-q", "theirs"])
        .current_dir(r)
        .output()
        .expect("git merge");
    assert!(!out.status.success(), "the manifests conflict");
}

/// A file edited from another version than its manifest names now (a `git pull` or branch
/// switch moved the manifest while the edits kept the file) is refused by commit: recording it
/// on top of the manifest's version would silently undo that version's changes. The same for an
/// older version copied back by hand, which status has not seen: a revert takes `--force`.
#[test]
fn commit_refuses_edits_made_from_another_version_and_old_content_copied_back() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path().join("r");
    git_repo(&r);
    let (v1, id1) = version(&r, 1, "v1");
    version(&r, 2, "v2");

    // Edited from v2 after `git checkout` of the commit naming v1: the edits hold v1's
    // changes (v2 descends from it), so nothing is undone and the commit goes ahead.
    git(&r, &["checkout", "-q", "HEAD~1"]);
    fs::write(r.join("m.bin"), random_bytes(300_000, 3)).expect("edit");
    common::ok(&r, &["commit", "-m", "edited"]);
    git(&r, &["checkout", "-q", "-f", "main"]);
    common::ok(&r, &["checkout", "--force"]);
    common::ok(&r, &["commit", "-m", "edited v2"]);

    // Edited from v1 while the manifest names the newest version (as after a colleague's push
    // came in with `git pull`): refused, and --force records it.
    let log = common::json(&r, &["log", "m.bin"]);
    let newest = log[0]["version"].as_str().expect("v3").to_string();
    common::ok(&r, &["checkout", "m.bin", "--version", &id1[..12]]);
    let mut edited = v1.clone();
    edited[10] ^= 1;
    fs::write(r.join("m.bin"), &edited).expect("edit");
    let text = common::fails(&r, &["commit", "-m", "edited v1"]);
    assert!(
        text.contains(&format!("was edited from version {}", &id1[..12]))
            && text.contains("older than")
            && text.contains(&newest[..12]),
        "{text}"
    );
    common::ok(&r, &["commit", "-m", "edited v1", "--force"]);

    // v1's bytes copied back by hand, status never run: a revert, refused without --force.
    fs::write(r.join("m.bin"), &v1).expect("copy back");
    let text = common::fails(&r, &["commit", "-m", "copied back"]);
    assert!(
        text.contains(&format!("holds version {}", &id1[..12])) && text.contains("older than"),
        "{text}"
    );
    // The way out the hint names works: checkout replaces the old bytes (they are stored).
    common::ok(&r, &["checkout", "m.bin"]);
    assert!(fs::read(r.join("m.bin")).expect("read") != v1);
    fs::write(r.join("m.bin"), &v1).expect("copy back");
    common::ok(&r, &["commit", "-m", "copied back", "--force"]);
}
