//! Crashes at the moments that matter (issue 11, permanent suite): a `nshard` built with the
//! `failpoints` feature stops at a named crash point, and the test kills it with SIGKILL. After
//! each crash `nshard verify` passes and the data comes back byte for byte: a kill -9 in commit,
//! checkout, push, pull, gc or a server PUT never leaves a partial file or object visible.
//!
//! The failpoint binary, `nshard-failpoints`, is built on first use (`cargo build --features
//! failpoints --bin nshard-failpoints`); the normal `nshard` never carries crash points.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::failpoints::{kill_at_point, spawn_at, REACH};
use common::serve::Served;
use common::{random_bytes, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::MAX_OBJECT_SIZE;

/// Runs `nshard args` (failpoint build) in `dir` and kills it at `point`.
fn crash(dir: &Path, args: &[&str], point: &str) {
    let (child, lines) = spawn_at(dir, args, point);
    kill_at_point(child, &lines, &format!("nshard {args:?} at {point}"));
}

/// Decodes and re-hashes every object in a store directory; returns how many there are.
fn verify_dir_store(root: &Path) -> usize {
    let st = LocalStore::at(root.join("objects"), root.join("tmp"));
    let ids = st.list().expect("list");
    for id in &ids {
        st.get(id, MAX_OBJECT_SIZE)
            .unwrap_or_else(|e| panic!("object {id} is bad: {e}"));
    }
    ids.len()
}

const SIZE: usize = 12 << 20;

/// A repo with `m/model.bin` committed (v1).
fn committed(seed: u64) -> (TestRepo, Vec<u8>) {
    let repo = TestRepo::new();
    let data = random_bytes(SIZE, seed);
    repo.write("m/model.bin", &data);
    repo.ok(&["track", "m/model.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    (repo, data)
}

/// A second repo holding only `from`'s manifest.
fn clone_manifest(from: &TestRepo) -> TestRepo {
    let other = TestRepo::new();
    std::fs::create_dir_all(other.join("m")).expect("mkdir");
    std::fs::copy(
        from.join("m/model.bin.shard.json"),
        other.join("m/model.bin.shard.json"),
    )
    .expect("copy manifest");
    other
}

#[test]
fn kill_9_in_commit_keeps_the_old_version() {
    for point in ["atomic-before-rename@2", "commit-before-manifest"] {
        let (repo, v1) = committed(1);
        let manifest_v1 = repo.read("m/model.bin.shard.json");
        let mut v2 = v1.clone();
        v2[SIZE / 2..SIZE / 2 + 4096].fill(7);
        repo.write("m/model.bin", &v2);
        crash(repo.path(), &["commit", "-m", "v2"], point);
        repo.ok(&["verify"]);
        assert_eq!(repo.read("m/model.bin.shard.json"), manifest_v1, "{point}");
        assert_eq!(repo.read("m/model.bin"), v2);
        // The same commit runs again and its result checks out byte for byte.
        repo.ok(&["commit", "-m", "v2"]);
        repo.ok(&["verify"]);
        std::fs::remove_file(repo.join("m/model.bin")).expect("rm");
        repo.ok(&["checkout"]);
        assert_eq!(repo.read("m/model.bin"), v2, "{point}");
    }
}

#[test]
fn kill_9_in_checkout_installs_no_partial_file() {
    let (repo, v1) = committed(2);
    std::fs::remove_file(repo.join("m/model.bin")).expect("rm");
    crash(repo.path(), &["checkout"], "atomic-before-rename");
    assert!(
        !repo.join("m/model.bin").exists(),
        "a partial file was installed"
    );
    repo.ok(&["verify"]);
    repo.ok(&["checkout"]);
    assert_eq!(repo.read("m/model.bin"), v1);
}

#[test]
fn kill_9_in_push_and_pull_leaves_whole_objects_and_resumes() {
    let (repo, v1) = committed(3);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8").to_string();
    crash(
        repo.path(),
        &["push", "--remote", &url],
        "atomic-before-rename@2",
    );
    // The rerun sends only what the killed push did not store.
    let there = verify_dir_store(remote.path());
    assert!(there >= 1, "the first object was stored before the kill");
    let again = repo.json(&["push", "--remote", &url]);
    let total = verify_dir_store(remote.path());
    assert_eq!(again["skipped"].as_u64(), Some(there as u64), "{again}");
    assert_eq!(
        again["objects"].as_u64().map(|n| n + there as u64),
        Some(total as u64),
        "{again}"
    );
    let other = clone_manifest(&repo);
    // (The first object a pull stores is the version's manifest; the third rename is a chunk's.)
    crash(
        other.path(),
        &["pull", "--remote", &url],
        "atomic-before-rename@3",
    );
    // Likewise the pull: it fetches exactly the objects the store still lacks.
    let here = verify_dir_store(&other.join(".shard"));
    assert!(here >= 1, "an object was stored before the kill");
    let again = other.json(&["pull", "--remote", &url]);
    let after = verify_dir_store(&other.join(".shard"));
    assert_eq!(
        again["objects"].as_u64(),
        Some((after - here) as u64),
        "{again}"
    );
    assert!(again["skipped"].as_u64() >= Some(1), "{again}");
    other.ok(&["checkout"]);
    other.ok(&["verify"]);
    assert_eq!(other.read("m/model.bin"), v1);
}

#[test]
fn kill_9_in_gc_keeps_every_referenced_object() {
    let (repo, _v1) = committed(4);
    let mut v2 = random_bytes(SIZE, 5);
    v2.truncate(SIZE / 2);
    repo.write("m/model.bin", &v2);
    repo.ok(&["commit", "-m", "v2"]);
    crash(
        repo.path(),
        &["gc", "--only-current", "--include-unpushed", "--grace", "0"],
        "gc-before-delete@2",
    );
    repo.ok(&["verify"]);
    std::fs::remove_file(repo.join("m/model.bin")).expect("rm");
    repo.ok(&["checkout"]);
    assert_eq!(repo.read("m/model.bin"), v2);
    let after = repo.json(&["gc", "--only-current", "--include-unpushed", "--grace", "0"]);
    assert!(after["objects_deleted"].as_u64() > Some(0), "{after}");
    repo.ok(&["verify"]);
    assert_eq!(repo.read("m/model.bin"), v2);
}

#[test]
fn kill_9_of_the_server_in_a_put_leaves_no_partial_object() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let (repo, v1) = committed(6);
    let (server, lines) = spawn_at(
        d.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store.to_str().expect("utf8"),
        ],
        "atomic-before-rename@2",
    );
    let addr = loop {
        let l = lines
            .recv_timeout(REACH)
            .expect("the server's address line");
        if let Some(a) = l.strip_prefix("listening on http://") {
            break a.trim().to_string();
        }
    };
    let url = format!("http://{addr}");
    let mut push = Command::new(common::serve::nshard_bin())
        .args(["push", "--remote", &url])
        .current_dir(repo.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("push");
    kill_at_point(server, &lines, "nshard serve during a PUT");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while push.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "push never gave up");
        std::thread::sleep(Duration::from_millis(100));
    }
    verify_dir_store(&store);
    let s = Served::start(&store, &[], &[]);
    repo.ok(&["push", "--remote", &s.url]);
    verify_dir_store(&store);
    let other = clone_manifest(&repo);
    other.ok(&["pull", "--remote", &s.url]);
    other.ok(&["checkout"]);
    assert_eq!(other.read("m/model.bin"), v1);
}

/// A directory unit of `n` small files under `data/` committed as v1; returns the files.
fn committed_dir(n: usize, seed: u64) -> (TestRepo, Vec<(String, Vec<u8>)>) {
    let repo = TestRepo::new();
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut d = format!("file {i} of the dataset\n")
                .repeat(200)
                .into_bytes();
            d.extend(random_bytes(2000, seed * 10_000 + i as u64));
            (format!("data/d{}/f{i:04}.txt", i % 7), d)
        })
        .collect();
    for (p, d) in &files {
        repo.write(p, d);
    }
    repo.ok(&["track", "--dir", "data"]);
    repo.ok(&["commit", "-m", "v1"]);
    (repo, files)
}

#[test]
fn kill_9_in_a_directory_commit_leaves_the_old_or_the_new_version() {
    // After the first of several packs, and after everything but the manifest.
    for point in ["dir-commit-after-pack", "dir-commit-before-manifest"] {
        let (repo, mut files) = committed_dir(3000, 5);
        let manifest_v1 = repo.read("data.shard.json");
        for (i, (p, d)) in files.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
            d.extend_from_slice(format!("changed {i}\n").as_bytes());
            repo.write(p, d);
        }
        crash(repo.path(), &["commit", "-m", "v2"], point);
        assert_eq!(repo.read("data.shard.json"), manifest_v1, "{point}");
        repo.ok(&["verify"]);
        let st = repo.json(&["status", "data"]);
        assert_eq!(st[0]["state"], "modified", "{point}: {st}");
        // The commit runs again; its result checks out byte for byte.
        repo.ok(&["commit", "-m", "v2"]);
        repo.ok(&["verify"]);
        std::fs::remove_dir_all(repo.join("data")).expect("rm");
        repo.ok(&["checkout", "data"]);
        for (p, d) in &files {
            assert_eq!(&repo.read(p), d, "{point}: {p}");
        }
    }
}

#[test]
fn kill_9_in_a_directory_checkout_leaves_whole_files() {
    let (repo, files) = committed_dir(500, 6);
    std::fs::remove_dir_all(repo.join("data")).expect("rm");
    crash(repo.path(), &["checkout", "data"], "batch-before-rename");
    // Nothing was renamed into place: no file, whole or partial.
    for (p, _) in &files {
        assert!(!repo.join(p).exists(), "{p} was installed");
    }
    repo.ok(&["verify"]);
    repo.ok(&["checkout", "data"]);
    for (p, d) in &files {
        assert_eq!(&repo.read(p), d, "{p}");
    }
    // The killed checkout's temporary files are gone too.
    let left: Vec<_> = common::serve::walkdir(&repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    let temps = left
        .iter()
        .filter(|p| p.to_string_lossy().contains(".nshard-tmp-"))
        .count();
    assert_eq!(
        (left.len(), temps),
        (files.len(), 0),
        "files in data/, temporaries"
    );
}

/// A kill -9 while commit re-stores the previous version as deltas (issue 20): the new version is
/// recorded, every version still checks out byte for byte, `repack` finishes the interrupted
/// work, and the next commit carries on.
#[test]
fn kill_9_while_deltas_are_written_loses_nothing() {
    let files = common::checkpoints::series(3);
    let repo = TestRepo::new();
    // Commit re-encodes before returning (the background repack runs the same code).
    repo.config_line("delta_background = false");
    repo.write("model.safetensors", &files[0]);
    repo.ok(&["track", "model.safetensors"]);
    repo.ok(&["commit", "-m", "step 0"]);
    repo.write("model.safetensors", &files[1]);
    // The second re-encoded chunk: the first one is already a delta.
    crash(
        repo.path(),
        &["commit", "-m", "step 1"],
        "delta-before-replace@2",
    );
    repo.ok(&["verify", "--all-versions"]);
    // The interrupted pair stayed queued: repack finishes it.
    let r = repo.json(&["repack"]);
    assert_eq!(r["versions"], 1, "{r}");
    assert!(
        r["delta_chunks"].as_u64().expect("delta_chunks") >= 1,
        "{r}"
    );
    repo.ok(&["verify", "--all-versions"]);
    repo.write("model.safetensors", &files[2]);
    repo.ok(&["commit", "-m", "step 2"]);
    repo.ok(&["verify", "--all-versions"]);
    let log = repo.json(&["log", "model.safetensors"]);
    let versions: Vec<String> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["version"].as_str().expect("version").to_string())
        .collect();
    assert_eq!(versions.len(), 3, "{log}");
    for (v, want) in versions.iter().zip(files.iter().rev()) {
        repo.ok(&["checkout", "model.safetensors", "--version", v, "--force"]);
        assert!(&repo.read("model.safetensors") == want, "version {v}");
    }
}

/// A kill -9 while gc stores a kept version's chunks whole again (their bases belong to versions
/// git no longer names): every kept version still checks out byte for byte, and the next gc
/// finishes the work and frees the deleted versions' chunks.
#[test]
fn kill_9_while_gc_stores_kept_chunks_whole_loses_nothing() {
    let files = common::checkpoints::series(4);
    let repo = TestRepo::new();
    common::git(repo.path(), &["init", "-q"]);
    for (k, f) in files.iter().enumerate() {
        repo.write("model.safetensors", f);
        if k == 0 {
            repo.ok(&["track", "model.safetensors"]);
        }
        repo.ok(&["commit", "-m", &format!("v{k}")]);
        common::git(repo.path(), &["add", "-A"]);
        common::git(repo.path(), &["commit", "-qm", &format!("v{k}")]);
    }
    repo.ok(&["repack"]);
    // Back to v1: v2 and v3 leave git's history, and v1's chunks are deltas of v2's.
    common::git(repo.path(), &["reset", "-q", "--hard", "HEAD~2"]);
    common::git(repo.path(), &["update-ref", "-d", "ORIG_HEAD"]);
    common::git(repo.path(), &["reflog", "expire", "--expire=now", "--all"]);
    let gc = ["gc", "--include-unpushed", "--grace", "0"];
    crash(repo.path(), &gc, "gc-before-restore-whole@2");
    repo.ok(&["verify"]);
    let check = |k: usize| {
        repo.ok(&["checkout", "model.safetensors", "--force"]);
        assert!(repo.read("model.safetensors") == files[k], "v{k}");
    };
    check(1);
    let r = repo.json(&gc);
    assert!(r["objects_restored_whole"].as_u64() > Some(0), "{r}");
    assert!(r["objects_deleted"].as_u64() > Some(0), "{r}");
    repo.ok(&["verify", "--all-versions"]);
    check(1);
    let log = repo.json(&["log", "model.safetensors"]);
    let v0 = log[1]["version"].as_str().expect("v0").to_string();
    repo.ok(&["checkout", "model.safetensors", "--version", &v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[0], "v0");
}

/// A kill -9 while push sends deltas to a directory remote, while remote gc uploads deltas of
/// versions the remote holds whole, and while it deletes the whole copies deltas stand for: the
/// remote never holds a delta without its base, the next push and gc finish the work, and a fresh
/// clone gets every version back byte for byte.
#[test]
fn kill_9_while_deltas_go_to_a_remote_or_replace_whole_copies_loses_nothing() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = common::checkpoints::series(4);
    let repo = TestRepo::new();
    repo.config_line("delta_background = false");
    let mut versions = Vec::new();
    for (k, f) in files.iter().enumerate() {
        repo.write("model.safetensors", f);
        if k == 0 {
            repo.ok(&["track", "model.safetensors"]);
        }
        let c = repo.json(&["commit", "-m", &format!("v{k}")]);
        versions.push(c[0]["version"].as_str().expect("version").to_string());
        // v0 and v1 go whole, one push each; v2 goes with v3, as a delta of it.
        if k < 2 {
            repo.ok(&["push", "--remote", url]);
        }
    }
    // gc uploads v0's delta (its base, v1, is on the remote whole).
    crash(
        repo.path(),
        &["remote", "gc", url, "--grace", "0"],
        "push-before-delta",
    );
    crash(
        repo.path(),
        &["push", "--remote", url, "--all-versions"],
        "push-before-delta",
    );
    let pushed = repo.json(&["push", "--remote", url, "--all-versions"]);
    assert!(pushed["deltas"].as_u64() > Some(0), "{pushed}");
    crash(
        repo.path(),
        &["remote", "gc", url, "--grace", "0"],
        "remote-gc-before-whole-delete",
    );
    let gc = repo.json(&["remote", "gc", url, "--grace", "0"]);
    assert!(gc["superseded_objects"].as_u64() > Some(0), "{gc}");
    repo.ok(&["verify", "--remote", url, "--all-versions"]);
    let fresh = TestRepo::new();
    std::fs::copy(
        repo.join("model.safetensors.shard.json"),
        fresh.join("model.safetensors.shard.json"),
    )
    .expect("copy manifest");
    fresh.ok(&["pull", "--remote", url, "--all-versions"]);
    for (v, want) in versions.iter().zip(&files) {
        fresh.ok(&["checkout", "model.safetensors", "--version", v, "--force"]);
        assert!(&fresh.read("model.safetensors") == want, "version {v}");
    }
}
