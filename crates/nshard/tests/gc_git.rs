//! gc and git, as documented: versions named only at a tag or a remote-tracking branch are kept;
//! when git cannot run, nothing is deleted; leftover temporary files obey the grace period.

mod common;
mod history_support;

use std::fs;
use std::time::{Duration, SystemTime};

use common::{git, random_bytes, TestRepo};
use history_support::*;

/// A git repository on `main` with a committed v1 of `a.bin`, and a commit holding another
/// version of it (no chunk in common) that no branch names. Returns the repo, that commit and its
/// version's chunk ids.
fn repo_with_a_dangling_version() -> (TestRepo, String, Vec<String>) {
    let r = repo_with(SMALL_CDC);
    git(r.path(), &["init", "-q", "-b", "main"]);
    r.ok(&["git-init"]);
    r.write("a.bin", &random_bytes(300_000, 31));
    r.ok(&["track", "a.bin"]);
    commit(&r, "v1");
    git(r.path(), &["add", "-A"]);
    git(r.path(), &["commit", "-q", "-m", "v1"]);
    git(r.path(), &["checkout", "-q", "-b", "side"]);
    r.write("a.bin", &random_bytes(300_000, 32));
    commit(&r, "v2");
    git(r.path(), &["commit", "-q", "-am", "v2"]);
    let side = git(r.path(), &["rev-parse", "HEAD"]).trim().to_string();
    let chunks = r.chunk_ids("a.bin");
    git(r.path(), &["checkout", "-q", "main"]);
    git(r.path(), &["branch", "-q", "-D", "side"]);
    r.ok(&["checkout"]);
    (r, side, chunks)
}

fn all_present(r: &TestRepo, ids: &[String]) -> bool {
    ids.iter().all(|id| object_path(r, id).exists())
}

#[test]
fn gc_keeps_versions_named_by_a_tag_or_a_remote_tracking_branch() {
    for (kind, git_ref) in [
        ("tag", "refs/tags/v2"),
        ("remote-tracking branch", "refs/remotes/origin/side"),
    ] {
        let (r, side, chunks) = repo_with_a_dangling_version();
        // The reflog still names the commit; expire it so that only `git_ref` keeps it.
        git(r.path(), &["reflog", "expire", "--expire=now", "--all"]);
        git(r.path(), &["update-ref", git_ref, &side]);
        let g = r.json(&["gc", "--only-current", "--grace", "0"]);
        assert_eq!(g["git_versions"], 1, "{kind}: {g}");
        assert!(all_present(&r, &chunks), "{kind}: its objects were deleted");
        // Once the ref is gone, its version is garbage.
        git(r.path(), &["update-ref", "-d", git_ref]);
        let g = r.json(&["gc", "--only-current", "--grace", "0"]);
        assert_eq!(g["git_versions"], 0, "{kind}: {g}");
        assert!(
            chunks.iter().all(|id| !object_path(&r, id).exists()),
            "{kind}: {g}"
        );
    }
}

#[test]
fn gc_deletes_nothing_when_git_cannot_run() {
    let (r, side, chunks) = repo_with_a_dangling_version();
    git(r.path(), &["update-ref", "refs/tags/v2", &side]);
    // Also an unreferenced object that a working gc would delete.
    r.write("b.bin", &random_bytes(100_000, 33));
    r.ok(&["track", "b.bin"]);
    commit(&r, "b");
    fs::remove_file(r.join("b.bin.shard.json")).expect("rm");
    let before = count_objects(&r);
    let empty = tempfile::tempdir().expect("tmp");
    let out = common::nshard(r.path())
        .args(["gc", "--only-current", "--grace", "0"])
        .env("PATH", empty.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "gc succeeded without git");
    assert!(
        err.contains("could not run `git`") && err.contains("gc deleted nothing"),
        "{err}"
    );
    assert_eq!(count_objects(&r), before);
    assert!(all_present(&r, &chunks));
    // With git back, the unreferenced objects go and the tagged version stays.
    let g = r.json(&["gc", "--only-current", "--grace", "0"]);
    assert!(g["objects_deleted"].as_u64().expect("n") >= 2, "{g}");
    assert!(all_present(&r, &chunks));
}

#[test]
fn gc_keeps_temporary_files_younger_than_the_grace_period() {
    let r = repo_with(SMALL_CDC);
    let tmp = r.join(".shard/tmp");
    fs::create_dir_all(&tmp).expect("mkdir");
    let young = tmp.join("young-leftover");
    let old = tmp.join("old-leftover");
    fs::write(&young, vec![1u8; 1000]).expect("w");
    fs::write(&old, vec![2u8; 3000]).expect("w");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(two_hours_ago)
        .expect("set mtime");
    // Default grace (60 minutes): only the old one goes.
    let g = r.json(&["gc"]);
    assert_eq!(g["temp_files_deleted"], 1, "{g}");
    assert_eq!(g["temp_bytes_deleted"], 3000, "{g}");
    assert!(young.exists() && !old.exists());
    // A dry run with no grace would delete the young one, and deletes nothing.
    let g = r.json(&["gc", "--grace", "0", "--dry-run"]);
    assert_eq!(g["temp_files_deleted"], 1, "{g}");
    assert!(young.exists());
    let g = r.json(&["gc", "--grace", "0"]);
    assert_eq!(g["temp_files_deleted"], 1, "{g}");
    assert!(!young.exists());
}

/// docs/git.md: gc keeps what `FETCH_HEAD`, `MERGE_HEAD` or another worktree names (issue 26,
/// untested documented behaviours); once that is gone, the version is garbage.
#[test]
fn gc_keeps_versions_named_by_fetch_head_merge_head_or_a_worktree() {
    for kind in ["FETCH_HEAD", "MERGE_HEAD", "worktree"] {
        let (r, side, chunks) = repo_with_a_dangling_version();
        git(r.path(), &["reflog", "expire", "--expire=now", "--all"]);
        let wt = r.path().with_extension("wt");
        match kind {
            "FETCH_HEAD" => std::fs::write(
                r.join(".git/FETCH_HEAD"),
                format!("{side}\t\tbranch 'side' of ../elsewhere\n"),
            )
            .expect("FETCH_HEAD"),
            "MERGE_HEAD" => {
                std::fs::write(r.join(".git/MERGE_HEAD"), format!("{side}\n")).expect("MERGE_HEAD")
            }
            _ => {
                // Without the hooks: the new worktree has no local store to check out from.
                git(
                    r.path(),
                    &[
                        "-c",
                        "core.hooksPath=/dev/null",
                        "worktree",
                        "add",
                        "-q",
                        "--detach",
                        wt.to_str().expect("utf8"),
                        &side,
                    ],
                );
            }
        }
        let g = r.json(&["gc", "--only-current", "--grace", "0"]);
        assert!(
            all_present(&r, &chunks),
            "{kind}: its objects were deleted: {g}"
        );
        match kind {
            "FETCH_HEAD" | "MERGE_HEAD" => {
                std::fs::remove_file(r.join(".git").join(kind)).expect("remove")
            }
            _ => {
                git(
                    r.path(),
                    &["worktree", "remove", "--force", wt.to_str().expect("utf8")],
                );
                git(r.path(), &["reflog", "expire", "--expire=now", "--all"]);
            }
        }
        let g = r.json(&["gc", "--only-current", "--grace", "0"]);
        assert!(
            chunks.iter().all(|id| !object_path(&r, id).exists()),
            "{kind}: kept after it was gone: {g}"
        );
    }
}
