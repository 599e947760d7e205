//! Upkeep: `nshard verify` and `nshard gc`, including their faults (corrupt, truncated and missing
//! objects, gc killed with SIGKILL, gc while a commit runs), on the real binary.

mod common;
mod history_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{git, random_bytes, TestRepo};
use history_support::*;

/// 4 KiB fixed blocks: many objects from little data.
const FIXED_4K: &str = "[chunking]\nalgorithm = \"fixed\"\nsize = 4096\n";

/// Two versions of `a.bin` (the second shares half its chunks with the first).
fn two_versions(chunking: &str, size: usize) -> (TestRepo, String, String) {
    let r = repo_with(chunking);
    let mut data = random_bytes(size, 1);
    r.write("a.bin", &data);
    r.ok(&["track", "a.bin"]);
    let v1 = commit(&r, "one");
    data[size / 2..].copy_from_slice(&random_bytes(size - size / 2, 2));
    r.write("a.bin", &data);
    let v2 = commit(&r, "two");
    (r, v1, v2)
}

#[test]
fn verify_passes_on_a_healthy_repository() {
    let (r, _, _) = two_versions(SMALL_CDC, 300_000);
    let v = r.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["files_checked"], 1);
    assert_eq!(v["versions_checked"], 1);
    assert_eq!(
        v["objects_checked"].as_u64(),
        Some(count_objects(&r) as u64)
    );
    let out = r.ok(&["verify", "--all-versions"]);
    assert!(
        out.contains("(1 rebuilt)") && out.contains("ok: no problems found"),
        "{out}"
    );
}

#[test]
fn verify_reports_a_corrupted_object() {
    let (r, _, v2) = two_versions(SMALL_CDC, 300_000);
    let id = r.chunk_ids("a.bin")[1].clone();
    let p = object_path(&r, &id);
    let mut bytes = std::fs::read(&p).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&p, &bytes).expect("write");
    let out = common::nshard(r.path())
        .arg("verify")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "error: corrupt object: a.bin version {} object {id}",
            &v2[..12]
        )),
        "{text}"
    );
    // It was moved aside (so that pull fetches a good copy); put the damaged copy back for the
    // JSON run.
    assert!(!p.exists() && text.contains("moved aside"), "{text}");
    std::fs::write(&p, &bytes).expect("write");
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["kind"], "corrupt-object");
    assert_eq!(v["problems"][0]["file"], "a.bin");
    assert_eq!(v["problems"][0]["object"], id.as_str());
}

#[test]
fn verify_reports_a_truncated_object() {
    let (r, _, _) = two_versions(SMALL_CDC, 300_000);
    let id = r.chunk_ids("a.bin").last().expect("chunk").clone();
    let p = object_path(&r, &id);
    let len = std::fs::metadata(&p).expect("md").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["ok"], false, "{v}");
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["kind"], "corrupt-object");
    assert_eq!(problems[0]["file"], "a.bin");
    assert_eq!(problems[0]["object"], id.as_str());
    r.fails(&["verify"]);
}

#[test]
fn verify_reports_a_missing_object() {
    let (r, _, v2) = two_versions(SMALL_CDC, 300_000);
    let id = r.chunk_ids("a.bin")[0].clone();
    std::fs::remove_file(object_path(&r, &id)).expect("rm");
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["ok"], false, "{v}");
    let p = &v["problems"][0];
    assert_eq!(
        (
            p["kind"].as_str(),
            p["file"].as_str(),
            p["object"].as_str(),
            p["version"].as_str()
        ),
        (
            Some("missing-object"),
            Some("a.bin"),
            Some(id.as_str()),
            Some(v2.as_str())
        )
    );
    let out = common::nshard(r.path())
        .arg("verify")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: missing object: a.bin"));
}

#[test]
fn verify_reports_chunks_that_do_not_rebuild_the_file() {
    let (r, _, v2) = two_versions(SMALL_CDC, 300_000);
    // A manifest whose chunks are all intact but whose whole-file hash is not theirs.
    let text = String::from_utf8(r.read("a.bin.shard.json")).expect("utf8");
    let m: serde_json::Value = serde_json::from_str(&text).expect("json");
    let sha = m["sha256"].as_str().expect("sha");
    let wrong = "0".repeat(64);
    r.write("a.bin.shard.json", text.replace(sha, &wrong).as_bytes());
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["ok"], false);
    let p = &v["problems"][0];
    assert_eq!(p["kind"], "file-hash-mismatch", "{v}");
    assert_eq!(p["file"], "a.bin");
    assert_ne!(
        p["version"],
        v2.as_str(),
        "the edited manifest is a different version"
    );
    assert!(p["detail"].as_str().expect("detail").contains(sha), "{p}");
}

/// verify checks the tensor table too: commit carries unchanged tensors' hashes forward from the
/// previous version, so a wrong entry must not go unnoticed.
#[test]
fn verify_reports_a_wrong_tensor_hash() {
    let r = repo_with(SMALL_CDC);
    r.write("m.safetensors", &checkpoint(&[1; 16]));
    r.ok(&["track", "m.safetensors"]);
    commit(&r, "v1");
    let mut versions = [1; 16];
    versions[3] = 2;
    r.write("m.safetensors", &checkpoint(&versions));
    commit(&r, "v2");
    assert_eq!(r.json(&["verify"])["ok"], true);
    let text = String::from_utf8(r.read("m.safetensors.shard.json")).expect("utf8");
    let m: serde_json::Value = serde_json::from_str(&text).expect("json");
    let t = &m["tensors"][5];
    let (name, sha) = (
        t["name"].as_str().expect("name"),
        t["sha256"].as_str().expect("sha"),
    );
    r.write(
        "m.safetensors.shard.json",
        text.replace(sha, &"1".repeat(64)).as_bytes(),
    );
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["ok"], false, "{v}");
    let p = &v["problems"][0];
    assert_eq!(p["kind"], "tensor-hash-mismatch", "{v}");
    assert!(p["detail"].as_str().expect("detail").contains(name), "{p}");
}

#[test]
fn gc_deletes_unreferenced_objects_and_keeps_history_by_default() {
    let (r, v1, v2) = two_versions(SMALL_CDC, 300_000);
    // b.bin's objects become unreferenced when its manifest goes away.
    r.write("b.bin", &random_bytes(200_000, 7));
    r.ok(&["track", "b.bin"]);
    commit(&r, "b");
    let b_chunks = r.chunk_ids("b.bin");
    r.ok(&["untrack", "b.bin"]);
    std::fs::remove_file(r.join("b.bin.shard.json")).expect("rm manifest");
    let before = count_objects(&r);
    let dry = r.json(&["gc", "--dry-run", "--grace", "0"]);
    assert_eq!(dry["dry_run"], true);
    let n = dry["objects_deleted"].as_u64().expect("n") as usize;
    assert_eq!(
        n,
        b_chunks.len() + 1,
        "b's chunks and manifest object: {dry}"
    );
    assert_eq!(count_objects(&r), before, "dry run deletes nothing");
    let out = r.ok(&["gc", "--dry-run", "--grace", "0"]);
    assert!(
        out.contains(&format!("would delete {n} unreferenced objects")),
        "{out}"
    );
    let out = r.ok(&["gc", "--grace", "0"]);
    assert!(
        out.contains(&format!("deleted {n} unreferenced objects, freed ")),
        "{out}"
    );
    assert_eq!(count_objects(&r), before - n);
    assert!(b_chunks.iter().all(|id| !object_path(&r, id).exists()));
    assert_eq!(r.json(&["verify"])["ok"], true);
    // History is intact: the old version can still be checked out.
    let log = r.json(&["log", "a.bin"]);
    assert_eq!(log.as_array().map(Vec::len), Some(2));
    r.ok(&["checkout", "a.bin", "--version", &v1[..8]]);
    assert_eq!(r.read("a.bin"), random_bytes(300_000, 1));
    r.ok(&["checkout", "a.bin", "--version", &v2[..8]]);
    // --only-current keeps the old version while no remote has it (it is the only copy)...
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["objects_deleted"], 0, "{g}");
    assert!(g["objects_unpushed"].as_u64().expect("n") >= 2, "{g}");
    // ...and with --include-unpushed drops its manifest and its own chunks, nothing else.
    let g = r.json(&["gc", "--only-current", "--include-unpushed", "--grace", "0"]);
    assert!(g["objects_deleted"].as_u64().expect("n") >= 2, "{g}");
    let log = r.json(&["log", "a.bin"]);
    assert_eq!(log[1]["state"], "missing", "{log}");
    assert_eq!(r.json(&["verify"])["ok"], true);
    std::fs::remove_file(r.join("a.bin")).expect("rm");
    r.ok(&["checkout", "a.bin"]);
    assert_eq!(r.json(&["status"])[0]["state"], "unchanged");
}

/// gc keeps what another git branch, or only the git index, references; once the branch is gone
/// its objects go too. A broken manifest on any branch stops gc from deleting anything.
#[test]
fn gc_keeps_what_other_git_branches_and_the_index_reference() {
    let r = repo_with(SMALL_CDC);
    git(r.path(), &["init", "-q", "-b", "main"]);
    r.ok(&["git-init"]);
    let v1 = random_bytes(300_000, 11);
    r.write("a.bin", &v1);
    r.ok(&["track", "a.bin"]);
    commit(&r, "v1");
    git(r.path(), &["add", "-A"]);
    git(r.path(), &["commit", "-q", "-m", "v1"]);
    // A branch with a version of its own (no chunk in common with v1).
    git(r.path(), &["checkout", "-q", "-b", "exp"]);
    let v2 = random_bytes(300_000, 12);
    r.write("a.bin", &v2);
    commit(&r, "v2");
    git(r.path(), &["commit", "-q", "-am", "v2"]);
    let exp_chunks = r.chunk_ids("a.bin");
    git(r.path(), &["checkout", "-q", "main"]);
    r.ok(&["checkout"]);
    assert_eq!(r.read("a.bin"), v1);

    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["git_versions"], 1, "{g}");
    assert!(exp_chunks.iter().all(|id| object_path(&r, id).exists()));
    let out = r.ok(&["gc", "--dry-run", "--grace", "0"]);
    assert!(
        out.contains("kept 2 versions (current and older) of 1 file, 1 of them found only in git"),
        "{out}"
    );
    git(r.path(), &["checkout", "-q", "exp"]);
    r.ok(&["checkout"]);
    assert_eq!(r.read("a.bin"), v2);

    // A version only staged in the index is kept too.
    git(r.path(), &["checkout", "-q", "main"]);
    r.ok(&["checkout"]);
    let v3 = random_bytes(300_000, 13);
    r.write("a.bin", &v3);
    commit(&r, "v3");
    let staged_chunks = r.chunk_ids("a.bin");
    git(r.path(), &["add", "a.bin.shard.json"]);
    let head_manifest = git(r.path(), &["show", "HEAD:a.bin.shard.json"]);
    r.write("a.bin.shard.json", head_manifest.as_bytes());
    r.ok(&["checkout", "--force"]);
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["git_versions"], 2, "{g}");
    assert!(staged_chunks.iter().all(|id| object_path(&r, id).exists()));
    git(r.path(), &["reset", "-q"]);

    // Versions only in the stash, older entries included (not only `refs/stash`).
    let mut stashed = Vec::new();
    for seed in [14, 15] {
        r.write("a.bin", &random_bytes(300_000, seed));
        commit(&r, "to be stashed");
        stashed.extend(r.chunk_ids("a.bin"));
        git(r.path(), &["stash", "-q"]);
    }
    r.ok(&["checkout", "--force"]);
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    // The two stashed versions and the exp branch's.
    assert_eq!(g["git_versions"], 3, "{g}");
    assert!(stashed.iter().all(|id| object_path(&r, id).exists()), "{g}");
    git(r.path(), &["stash", "clear"]);

    // A broken manifest on some branch: gc cannot know what it references, so it deletes nothing.
    git(r.path(), &["checkout", "-q", "-b", "broken"]);
    r.write("a.bin.shard.json", b"{\"format\": \"not a manifest\"}");
    git(r.path(), &["commit", "-q", "-am", "broken"]);
    git(r.path(), &["checkout", "-q", "main"]);
    let before = count_objects(&r);
    let err = r.fails(&["gc", "--only-current", "--grace", "0"]);
    assert!(err.contains("refs/heads/broken:a.bin.shard.json"), "{err}");
    assert_eq!(count_objects(&r), before);
    git(r.path(), &["branch", "-q", "-D", "broken"]);
    // Still reachable through HEAD's reflog: still refused.
    let err = r.fails(&["gc", "--only-current", "--grace", "0"]);
    assert!(err.contains("a.bin.shard.json"), "{err}");
    git(r.path(), &["reflog", "expire", "--expire=now", "--all"]);

    // A deleted branch's version is still kept while a reflog entry reaches it...
    git(r.path(), &["checkout", "-q", "exp"]);
    git(r.path(), &["checkout", "-q", "main"]);
    git(r.path(), &["branch", "-q", "-D", "exp"]);
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["git_versions"], 1, "{g}");
    assert!(exp_chunks.iter().all(|id| object_path(&r, id).exists()));
    // ...and once git has expired the reflog, its objects are garbage.
    git(r.path(), &["reflog", "expire", "--expire=now", "--all"]);
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["git_versions"], 0, "{g}");
    assert!(exp_chunks.iter().all(|id| !object_path(&r, id).exists()));
    assert_eq!(r.json(&["verify"])["ok"], true);
}

/// A git repository without any commit yet (the usual first steps; `git worktree list` shows its
/// unborn HEAD as zeros): gc works, keeping the work tree's and the index's versions.
#[test]
fn gc_works_in_a_git_repository_without_commits() {
    let r = repo_with(SMALL_CDC);
    git(r.path(), &["init", "-q", "-b", "main"]);
    r.ok(&["git-init"]);
    r.write("a.bin", &random_bytes(200_000, 21));
    r.ok(&["track", "a.bin"]);
    commit(&r, "v1");
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["files"], 1, "{g}");
    // Staged, then replaced in the work tree by a newer version: the staged one is kept.
    git(r.path(), &["add", "a.bin.shard.json"]);
    let staged = r.chunk_ids("a.bin");
    r.write("a.bin", &random_bytes(200_000, 22));
    commit(&r, "v2");
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert_eq!(g["git_versions"], 1, "{g}");
    assert!(staged.iter().all(|id| object_path(&r, id).exists()));
}

#[test]
fn gc_keeps_unreferenced_objects_younger_than_the_grace_period() {
    let r = repo_with(SMALL_CDC);
    r.write("b.bin", &random_bytes(200_000, 7));
    r.ok(&["track", "b.bin"]);
    commit(&r, "b");
    std::fs::remove_file(r.join("b.bin.shard.json")).expect("rm manifest");
    let before = count_objects(&r);
    let g = r.json(&["gc"]);
    assert_eq!(g["objects_deleted"], 0, "{g}");
    assert_eq!(g["objects_recent"].as_u64(), Some(before as u64));
    assert_eq!(count_objects(&r), before);
    let out = r.ok(&["gc"]);
    assert!(
        out.contains("younger than the grace period (1h; `--grace 0` deletes them)"),
        "{out}"
    );
    // A duration as remote gc takes it; a bare number stays minutes.
    let g = r.json(&["gc", "--grace", "2h"]);
    assert_eq!(g["objects_recent"].as_u64(), Some(before as u64), "{g}");
    let g = r.json(&["gc", "--grace", "0s"]);
    assert_eq!(g["objects_deleted"].as_u64(), Some(before as u64), "{g}");
    r.fails(&["gc", "--grace", "5x"]);
}

#[test]
fn gc_refuses_to_run_with_an_invalid_or_unreadable_manifest() {
    let (r, v1, _) = two_versions(SMALL_CDC, 300_000);
    r.write("b.bin", &random_bytes(100_000, 3));
    r.ok(&["track", "b.bin"]);
    commit(&r, "b");
    std::fs::remove_file(r.join("b.bin.shard.json")).expect("rm");
    let before = count_objects(&r);
    // An invalid work-tree manifest: gc cannot know what it references.
    let good = r.read("a.bin.shard.json");
    r.write(
        "a.bin.shard.json",
        b"{\"format\": \"neuroshard.manifest/1\"}",
    );
    let err = r.fails(&["gc", "--grace", "0"]);
    assert!(err.contains("invalid manifest"), "{err}");
    assert_eq!(count_objects(&r), before);
    r.write("a.bin.shard.json", &good);
    // A corrupt older version: the default (keep history) refuses, verify names it.
    let p = object_path(&r, &v1);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[20] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let err = r.fails(&["gc", "--grace", "0"]);
    assert!(
        err.contains(&v1) && err.contains("nothing was deleted"),
        "{err}"
    );
    assert_eq!(count_objects(&r), before);
    let v = r.json_exit(&["verify"], 1);
    assert_eq!(v["problems"][0]["kind"], "unreadable-version", "{v}");
    assert_eq!(v["problems"][0]["object"], v1.as_str());
    // log shows it as unreadable and fails.
    let out = common::nshard(r.path())
        .args(["log", "a.bin"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}  (unreadable: ", &v1[..12])),
        "{text}"
    );
}

#[test]
fn gc_killed_mid_way_leaves_a_consistent_store() {
    if !common::strace_works("gc_killed_mid_way_leaves_a_consistent_store") {
        return;
    }
    // 1 MiB in 4 KiB blocks, rewritten: 256 objects only the old version references.
    let (r, _, v2) = two_versions(FIXED_4K, 2 << 20);
    let before = count_objects(&r);
    let bin = assert_cmd::cargo::cargo_bin("nshard");
    let gc_args = ["gc", "--only-current", "--include-unpushed", "--grace", "0"];
    // SIGKILL on the 40th file deletion, deterministically mid-way.
    let st = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "trace=unlink,unlinkat"])
        .args(["-e", "inject=unlink,unlinkat:signal=KILL:when=40"])
        .arg(&bin)
        .args(gc_args)
        .current_dir(r.path())
        .status()
        .expect("strace runs");
    assert!(!st.success(), "gc was killed");
    let after = count_objects(&r);
    assert_eq!(after, before - 39, "killed exactly at the 40th deletion");
    // Nothing referenced was lost; the store verifies; the file can be rebuilt.
    let v = r.json(&["verify"]);
    assert_eq!(v["ok"], true, "first problem: {}", v["problems"][0]);
    assert!(r
        .chunk_ids("a.bin")
        .iter()
        .all(|id| object_path(&r, id).exists()));
    // The old version's manifest went first, so history simply ends (no half-deleted version).
    let log = r.json(&["log", "a.bin"]);
    assert_eq!(log[0]["version"], v2.as_str());
    assert_eq!(log[1]["state"], "missing", "{log}");
    std::fs::remove_file(r.join("a.bin")).expect("rm");
    r.ok(&["checkout", "a.bin"]);
    assert_eq!(r.json(&["status"])[0]["state"], "unchanged");
    // Running gc again finishes the job.
    r.ok(&gc_args);
    assert_eq!(r.json(&["verify"])["unreferenced_objects"], 0);
}

/// A child process that is resumed and killed if the test fails while it is stopped.
struct Resumed(std::process::Child);

impl Drop for Resumed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.id().to_string()])
                .status();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn gc_during_a_commit_keeps_what_the_commit_stores() {
    let r = repo_with(FIXED_4K);
    r.write("a.bin", &random_bytes(1 << 20, 1));
    r.ok(&["track", "a.bin"]);
    commit(&r, "small");
    // A big new version: its commit writes thousands of objects before its manifest.
    let big = random_bytes(16 << 20, 2);
    r.write("a.bin", &big);
    let before = count_objects(&r);
    let v1_manifest = r.read("a.bin.shard.json");
    let mut c = Resumed(
        Command::new(assert_cmd::cargo::cargo_bin("nshard"))
            .args(["commit", "-m", "big"])
            .current_dir(r.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("commit starts"),
    );
    // Freeze the commit as soon as it has stored new objects: it holds the lock, and none of those
    // objects is referenced yet (its manifest is written last).
    let t0 = Instant::now();
    while count_objects(&r) < before + 10 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(1));
    }
    common::signal(c.0.id(), "STOP");
    assert!(
        c.0.try_wait().expect("wait").is_none(),
        "the commit had finished before it could be stopped"
    );
    assert_eq!(
        r.read("a.bin.shard.json"),
        v1_manifest,
        "manifest already written"
    );
    assert!(count_objects(&r) > before, "the commit stored nothing yet");
    // No grace period: only the lock protects the commit's new objects.
    let mut gc = Command::new(assert_cmd::cargo::cargo_bin("nshard"))
        .args([
            "gc",
            "--only-current",
            "--include-unpushed",
            "--grace",
            "0",
            "--json",
        ])
        .current_dir(r.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gc runs");
    // gc waits for the lock (a blocked request shows in /proc/locks as `->` with its pid).
    let waiting = |pid: u32| {
        std::fs::read_to_string("/proc/locks")
            .expect("/proc/locks")
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|f| f == pid.to_string()))
    };
    let t0 = Instant::now();
    while !waiting(gc.id()) {
        assert!(
            gc.try_wait().expect("wait").is_none(),
            "gc ran while the commit held the lock"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "gc never blocked on the repository lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    common::signal(c.0.id(), "CONT");
    assert!(c.0.wait().expect("commit ends").success());
    let out = gc.wait_with_output().expect("gc ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = r.json(&["verify"]);
    let n = v["problems"].as_array().map_or(0, Vec::len);
    assert_eq!(v["ok"], true, "{n} problems, first: {}", v["problems"][0]);
    std::fs::remove_file(r.join("a.bin")).expect("rm");
    r.ok(&["checkout", "a.bin"]);
    assert!(r.read("a.bin") == big, "checked-out content differs");
}
