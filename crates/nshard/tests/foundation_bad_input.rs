//! End-to-end tests of the foundation (issue 2), bad input: hostile manifests, corrupt,
//! truncated and bomb objects, symlinks, files changing while read. They drive the real `nshard`
//! binary, and every case ends with nothing lost or written where it must not be.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{random_bytes, walk, TestRepo};
use nshard_core::format::{DataHint, Encoder};

const MIB: usize = 1024 * 1024;

/// Checks that checkout of a hostile manifest fails with `why` and writes nothing.
fn assert_refused(repo: &TestRepo, manifest_rel: &str, body: &[u8], why: &str) {
    repo.write(manifest_rel, body);
    let before: Vec<_> = walk(repo.path());
    let err = repo.fails(&["checkout", manifest_rel]);
    assert!(err.contains(why), "expected {why:?} in: {err}");
    assert_eq!(walk(repo.path()), before, "checkout wrote something");
    let st = repo.json_exit(&["status"], 1);
    assert_eq!(st[0]["state"], "invalid", "{st}");
    fs::remove_file(repo.join(manifest_rel)).expect("rm");
}

#[test]
fn hostile_manifests_are_refused_and_nothing_is_written() {
    let (repo, _) = TestRepo::committed(2 * MIB);
    let good: serde_json::Value = repo.manifest("m/model.bin");
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut m = good.clone();
        f(&mut m);
        serde_json::to_vec_pretty(&m).expect("json")
    };
    let rel = "m/model.bin.shard.json";
    assert_refused(&repo, rel, b"{not json", "not valid JSON");
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["format"] = "neuroshard.manifest/99".into()),
        "unknown format",
    );
    for (path, why) in [
        ("../evil.bin", "'..'"),
        ("/tmp/evil.bin", "absolute"),
        ("m\\model.bin", "backslash"),
        ("C:/evil.bin", "drive letter"),
        ("m/.git/hooks/pre-commit", ".git"),
        ("m/.SHARD/objects/x", ".shard"),
        ("m/other.bin", "describes"),
    ] {
        assert_refused(&repo, rel, &edit(&|m| m["path"] = path.into()), why);
    }
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["chunks"][0]["id"] = "abc123".into()),
        "64 hex",
    );
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["sha256"] = "../../etc/passwd".into()),
        "64 hex",
    );
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["chunks"][0]["offset"] = 7.into()),
        "starts at offset",
    );
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["size"] = (1u64 << 60).into()),
        "limit",
    );
    assert_refused(&repo, rel, &edit(&|m| m["size"] = 5.into()), "add up");
    assert_refused(
        &repo,
        rel,
        &edit(&|m| m["chunks"][0]["size"] = (1u64 << 40).into()),
        "outside 1..=",
    );
    // A manifest sitting at a `.git` path is never even considered.
    let err = repo.fails(&["checkout", ".git/x.shard.json"]);
    assert!(err.contains(".git"), "{err}");
}

/// Overwrites the first chunk's object of `m/model.bin` with `bytes`.
fn replace_first_object(repo: &TestRepo, bytes: &[u8]) -> String {
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    fs::write(repo.object_path(&id), bytes).expect("overwrite object");
    id
}

#[test]
fn corrupt_truncated_and_bomb_objects_fail_checkout_and_keep_the_old_file() {
    let (repo, data) = TestRepo::committed(3 * MIB);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let original = fs::read(repo.object_path(&id)).expect("read object");
    let old_file = b"old content the user still has".to_vec();
    let check = |bytes: &[u8], why: &str| {
        replace_first_object(&repo, bytes);
        repo.write("m/model.bin", &old_file);
        let err = repo.fails(&["checkout", "--force"]);
        assert!(
            err.contains(&id) && err.contains(why),
            "expected {why:?} naming {id}: {err}"
        );
        assert_eq!(repo.read("m/model.bin"), old_file, "old file was touched");
    };
    // Flip a payload byte.
    let mut corrupt = original.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    check(&corrupt, "corrupt");
    // Truncated.
    check(&original[..original.len() / 2], "corrupt");
    check(&original[..10], "truncated");
    // Decompression bomb: a header declaring 4 GiB.
    let mut bomb = original[..16].to_vec();
    bomb[5] = 1; // zstd
    bomb[8..16].copy_from_slice(&(4u64 << 30).to_le_bytes());
    bomb.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 8 * MIB], 1).expect("zstd"));
    check(&bomb, "declares");
    // A frame that inflates far past a small declared size stops at the declared size.
    let chunk_size = m["chunks"][0]["size"].as_u64().expect("size");
    let mut liar = original[..16].to_vec();
    liar[5] = 1;
    liar[6] = 0;
    liar[8..16].copy_from_slice(&chunk_size.to_le_bytes());
    liar.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 100 * MIB], 1).expect("zstd"));
    check(&liar, "does not decode");
    // An object that decodes fine but to other bytes.
    let other = random_bytes(chunk_size as usize, 99);
    check(
        &Encoder::new().encode(&other, DataHint::Unknown),
        "hashes to",
    );
    // Restore: checkout works again.
    replace_first_object(&repo, &original);
    repo.ok(&["checkout", "--force"]);
    assert_eq!(repo.read("m/model.bin"), data);
}

#[cfg(unix)]
#[test]
fn checkout_never_writes_through_symlinks() {
    use std::os::unix::fs::symlink;
    let (repo, _) = TestRepo::committed(MIB);
    let outside = tempfile::tempdir().expect("tmp");
    // Target file is a symlink to a file outside the repo.
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    let victim = outside.path().join("victim");
    fs::write(&victim, b"victim").expect("w");
    symlink(&victim, repo.join("m/model.bin")).expect("symlink");
    let err = repo.fails(&["checkout", "--force"]);
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(fs::read(&victim).expect("r"), b"victim");
    fs::remove_file(repo.join("m/model.bin")).expect("rm link");
    // Parent directory is a symlink pointing outside the repo.
    let manifest_bytes = repo.read("m/model.bin.shard.json");
    fs::remove_dir_all(repo.join("m")).expect("rm dir");
    symlink(outside.path(), repo.join("m")).expect("symlink dir");
    fs::write(outside.path().join("model.bin.shard.json"), &manifest_bytes).expect("w");
    let err = repo.fails(&["checkout", "m/model.bin.shard.json"]);
    assert!(err.contains("symlink"), "{err}");
    assert!(
        !outside.path().join("model.bin").exists(),
        "wrote outside the repo"
    );
}

#[test]
fn commit_detects_a_file_changing_or_vanishing_while_read() {
    for vanish in [false, true] {
        let repo = TestRepo::new();
        repo.write("w.bin", &random_bytes(600 * MIB, 6));
        repo.ok(&["track", "w.bin"]);
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("nshard"));
        let child = cmd
            .args(["commit", "-m", "racy", "--json"])
            .current_dir(repo.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // Wait (bounded) until the first chunk object lands: the commit is reading the file.
        let objects = repo.join(".shard/objects");
        let start = Instant::now();
        while fs::read_dir(&objects).expect("ls").count() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "commit never started"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if vanish {
            fs::remove_file(repo.join("w.bin")).expect("rm");
        } else {
            let f = fs::OpenOptions::new()
                .append(true)
                .open(repo.join("w.bin"))
                .expect("open");
            use std::io::Write;
            (&f).write_all(b"appended while reading").expect("append");
        }
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "commit succeeded: {stdout}");
        assert!(
            stdout.contains("changed while it was being read"),
            "{stdout}"
        );
        assert!(
            !repo.join("w.bin.shard.json").exists(),
            "a manifest was written"
        );
    }
}

#[test]
fn a_file_behind_a_pulled_manifest_is_outdated_not_modified() {
    // Alice commits v1 and v2; Bob has v1 checked out and then "git pull"s v2's manifest.
    let (repo, v1) = TestRepo::committed(2 * MIB);
    let v1_manifest = repo.read("m/model.bin.shard.json");
    let mut v2 = v1.clone();
    v2[7] ^= 1;
    repo.write("m/model.bin", &v2);
    repo.ok(&["commit", "-m", "v2"]);
    let v2_manifest = repo.read("m/model.bin.shard.json");
    repo.write("m/model.bin.shard.json", &v1_manifest);
    repo.ok(&["checkout", "--force"]);
    assert_eq!(repo.read("m/model.bin"), v1);
    repo.write("m/model.bin.shard.json", &v2_manifest);
    assert_eq!(repo.json(&["status"])[0]["state"], "outdated");
    let err = repo.fails(&["commit", "-m", "would undo v2"]);
    assert!(err.contains("nshard checkout"), "{err}");
    assert_eq!(repo.read("m/model.bin.shard.json"), v2_manifest);
    repo.ok(&["checkout"]);
    assert_eq!(repo.read("m/model.bin"), v2);
    // `--force` records the older content on purpose (a revert).
    repo.write("m/model.bin.shard.json", &v1_manifest);
    repo.ok(&["checkout"]);
    repo.write("m/model.bin.shard.json", &v2_manifest);
    let r = repo.json(&["commit", "-m", "revert to v1", "--force"]);
    assert_eq!(r[0]["result"], "committed", "{r}");
}

#[cfg(unix)]
#[test]
fn commit_never_reads_through_a_symlinked_directory() {
    let repo = TestRepo::new();
    let outside = tempfile::tempdir().expect("tmp");
    fs::write(outside.path().join("secret.bin"), b"outside the repository").expect("w");
    repo.write("models/keep.bin", b"inside");
    repo.ok(&["track", "models/keep.bin"]);
    // A clone whose tracked path now runs through a symlinked directory.
    fs::remove_dir_all(repo.join("models")).expect("rm");
    std::os::unix::fs::symlink(outside.path(), repo.join("models")).expect("symlink");
    fs::write(outside.path().join("keep.bin"), b"secret").expect("w");
    let out = common::nshard(repo.path())
        .args(["commit", "-m", "x"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("symlink"), "{err}");
    let objects = walk(&repo.join(".shard/objects"));
    assert!(
        objects.is_empty(),
        "read data through the symlink: {objects:?}"
    );
    // status flags that file and still reports the others.
    repo.write("other.bin", b"other");
    repo.ok(&["track", "other.bin"]);
    let st = repo.json_exit(&["status"], 1);
    let state = |p: &str| {
        st.as_array()
            .expect("list")
            .iter()
            .find(|s| s["path"] == p)
            .map(|s| s["state"].clone())
    };
    assert_eq!(state("models/keep.bin"), Some("unreadable".into()), "{st}");
    assert_eq!(state("other.bin"), Some("new".into()), "{st}");
    // Listed on stdout, and the exit status says not every state could be determined.
    let out = common::nshard(repo.path())
        .arg("status")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("unreadable") && stdout.contains("symlink") && stdout.contains("other.bin"),
        "{stdout}"
    );
}

#[test]
fn a_corrupt_object_is_quarantined_and_restored_by_commit() {
    let (repo, data) = TestRepo::committed(3 * MIB);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let mut bad = fs::read(repo.object_path(&id)).expect("read");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(repo.object_path(&id), &bad).expect("corrupt");
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    let err = repo.fails(&["checkout"]);
    assert!(err.contains(&id) && err.contains(".shard/corrupt"), "{err}");
    assert!(
        !repo.object_path(&id).exists(),
        "corrupt object still claimed"
    );
    assert!(repo.join(&format!(".shard/corrupt/{id}")).is_file());
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["data_present"], false, "{st}");
    // The user still has the file somewhere: committing it again re-stores the lost chunk.
    repo.write("m/model.bin", &data);
    repo.ok(&["commit", "-m", "same content"]);
    assert!(repo.object_path(&id).is_file(), "chunk not re-stored");
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    repo.ok(&["checkout"]);
    assert_eq!(repo.read("m/model.bin"), data);
}
