//! Hostile names and non-regular files (issue 11, items 1 and 2), against the real `nshard` binary.
//!
//! - Names git refuses with `core.protectHFS` and `core.protectNTFS` (and control characters) are
//!   refused on every OS: nothing is written, and nothing raw reaches the terminal.
//! - A manifest that is a FIFO or a symlink is never read: every command reports it as unreadable
//!   (none hangs), and gc deletes nothing while one exists. A committed file replaced by a FIFO or
//!   a symlink is `unreadable` with exit status 1.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, walk, TestRepo};

/// Every command must finish well within this (they take well under a second); a command still
/// running after it is hanging (on a FIFO) and fails the test.
const HANG_BOUND: Duration = Duration::from_secs(60);

/// Runs `nshard args…` in `dir`, killing it and failing the test if it does not finish in time.
fn bounded(dir: &Path, args: &[&str]) -> Output {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("nshard"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nshard");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > HANG_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nshard {args:?} still running after {HANG_BOUND:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count_objects(repo: &TestRepo) -> usize {
    walk(&repo.join(".shard/objects")).len()
}

/// A repo with one committed file `m/model.bin`; returns its manifest as JSON.
fn committed() -> (TestRepo, serde_json::Value) {
    let repo = TestRepo::new();
    repo.write("m/model.bin", &random_bytes(300_000, 7));
    repo.ok(&["track", "m/model.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let m = serde_json::from_slice(&repo.read("m/model.bin.shard.json")).expect("manifest");
    (repo, m)
}

fn has_raw_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && c != '\n')
}

/// Names that git's `verify_path` refuses with protectHFS/protectNTFS, and control characters.
const HOSTILE: [&str; 10] = [
    "x/.g\u{200c}it/hooks/post-checkout",
    "x/GIT~1/hooks/post-checkout",
    "x/.git./hooks/post-checkout",
    "x/.git /hooks/post-checkout",
    "x/.git::$INDEX_ALLOCATION/hooks/post-checkout",
    "x/.sh\u{200d}ard/config.toml",
    "CON",
    "m/nul.txt",
    "a\u{1b}[2Jb",
    "m/evil\u{9b}2J.bin",
];

#[test]
fn names_git_refuses_are_refused_and_never_written() {
    let (repo, good) = committed();
    for name in HOSTILE {
        let mut m = good.clone();
        m["path"] = name.into();
        let rel = format!("{name}.shard.json");
        repo.write(&rel, &serde_json::to_vec_pretty(&m).expect("json"));
        let before = walk(repo.path());
        for args in [vec!["checkout", rel.as_str()], vec!["checkout"]] {
            let out = bounded(repo.path(), &args);
            assert!(
                !repo.join(name).exists(),
                "nshard {args:?} wrote {name:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!has_raw_control(&out.stdout) && !has_raw_control(&out.stderr));
        }
        let named = bounded(repo.path(), &["checkout", rel.as_str()]);
        assert!(!named.status.success(), "checkout of {name:?} succeeded");
        assert_eq!(
            walk(repo.path()),
            before,
            "checkout of {name:?} wrote something"
        );
        for args in [&["status"][..], &["gc", "--grace", "0"], &["verify"]] {
            let out = bounded(repo.path(), args);
            assert!(
                !has_raw_control(&out.stdout) && !has_raw_control(&out.stderr),
                "nshard {args:?} printed a raw control character for {name:?}"
            );
        }
        fs::remove_file(repo.join(&rel)).expect("rm");
        // The same manifest where a legitimate one belongs is invalid, with the name escaped.
        repo.write(
            "m/model.bin.shard.json",
            &serde_json::to_vec_pretty(&m).expect("json"),
        );
        let st = bounded(repo.path(), &["status"]);
        assert_eq!(st.status.code(), Some(1), "status accepted {name:?}");
        assert!(String::from_utf8_lossy(&st.stdout).contains("invalid"));
        assert!(!has_raw_control(&st.stdout) && !has_raw_control(&st.stderr));
        let co = bounded(repo.path(), &["checkout", "m/model.bin.shard.json"]);
        assert!(!co.status.success() && !has_raw_control(&co.stderr));
        assert!(!repo.join(name).exists());
    }
    repo.write(
        "m/model.bin.shard.json",
        &serde_json::to_vec_pretty(&good).expect("json"),
    );
    repo.ok(&["status"]);
}

/// A committed manifest renamed to `name.shard.json`: `status` reports it `invalid` under its
/// escaped name (exit 1) instead of skipping it, and gc deletes nothing while it is there (the
/// objects it names are referenced by nothing else).
fn hostile_named_manifest_is_reported(name: &std::ffi::OsStr, shown: &str) {
    let (repo, _) = committed();
    let mut rel = name.to_os_string();
    rel.push(".shard.json");
    let dest = repo.path().join(&rel);
    fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    fs::rename(repo.join("m/model.bin.shard.json"), &dest).expect("mv");
    let objects = count_objects(&repo);
    let st = bounded(repo.path(), &["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert_eq!(
        st.status.code(),
        Some(1),
        "status skipped {shown:?}: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("invalid") && l.contains(shown)),
        "{shown:?}: {text}"
    );
    assert!(!has_raw_control(&st.stdout) && !has_raw_control(&st.stderr));
    let json = bounded(repo.path(), &["status", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let entry = v
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["state"] == "invalid")
        .unwrap_or_else(|| panic!("{shown:?} not in {v}"));
    assert!(
        entry["path"].as_str().expect("path").contains(shown),
        "{entry}"
    );
    for args in [
        &["gc", "--grace", "0"][..],
        &["gc", "--grace", "0", "--only-current"],
    ] {
        let out = bounded(repo.path(), args);
        assert!(!out.status.success(), "nshard {args:?} ignored {shown:?}");
        assert!(!has_raw_control(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(shown),
            "names it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count_objects(&repo), objects, "gc deleted objects");
}

#[test]
fn hostile_named_manifests_are_reported_not_skipped() {
    for (name, shown) in [
        ("CON", "CON.shard.json"),
        ("x/.git./hooks/post-checkout", "x/.git./hooks/post-checkout"),
        ("x/.g\u{200c}it/y", "x/.g\\u{200c}it/y"),
        ("a\u{1b}[2Jb", "a\\u{1b}[2Jb"),
        ("", ".shard.json"),
    ] {
        hostile_named_manifest_is_reported(std::ffi::OsStr::new(name), shown);
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        hostile_named_manifest_is_reported(std::ffi::OsStr::from_bytes(b"m/\xffx"), "m/\u{fffd}x");
    }
}

#[test]
fn hostile_names_cannot_be_tracked_either() {
    let repo = TestRepo::new();
    for name in ["CON", "x/.git./y", "a\u{1b}[2Jb", "nul.bin"] {
        repo.write(name, b"data");
        let out = bounded(repo.path(), &["track", name]);
        assert!(!out.status.success(), "tracked {name:?}");
        assert!(!has_raw_control(&out.stderr));
    }
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}", p.display());
}

fn symlink(target: &Path, link: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Every command that reads manifests, with `m/model.bin.shard.json` replaced by `plant`: none
/// hangs, each fails or reports the file unreadable, and gc deletes nothing.
fn special_manifest(plant: impl Fn(&TestRepo, &Path)) {
    let (repo, _) = committed();
    let outside = tempfile::tempdir().expect("tempdir");
    let saved = outside.path().join("real.shard.json");
    fs::rename(repo.join("m/model.bin.shard.json"), &saved).expect("mv");
    plant(&repo, &saved);
    let objects = count_objects(&repo);
    let st = bounded(repo.path(), &["status"]);
    assert_eq!(st.status.code(), Some(1));
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("unreadable"), "{text}");
    let json = bounded(repo.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v[0]["state"], "unreadable", "{v}");
    for args in [
        &["commit", "-m", "again"][..],
        &["diff", "m/model.bin"],
        &["log", "m/model.bin"],
        &["checkout", "m/model.bin.shard.json"],
        &["checkout", "--force"],
        &["gc", "--grace", "0"],
        &["gc", "--grace", "0", "--only-current"],
        &["verify"],
    ] {
        let out = bounded(repo.path(), args);
        assert!(
            !out.status.success(),
            "nshard {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "nshard {args:?}: {err}");
    }
    assert_eq!(count_objects(&repo), objects, "gc deleted objects");
    assert_eq!(repo.read("m/model.bin"), random_bytes(300_000, 7));
    // Put back the real manifest: everything is as it was.
    fs::remove_file(repo.join("m/model.bin.shard.json")).expect("rm");
    fs::rename(&saved, repo.join("m/model.bin.shard.json")).expect("mv");
    repo.ok(&["status"]);
    repo.ok(&["verify"]);
}

#[test]
fn a_fifo_manifest_is_unreadable_and_nothing_hangs() {
    special_manifest(|repo, _| mkfifo(&repo.join("m/model.bin.shard.json")));
}

#[test]
fn a_symlinked_manifest_is_unreadable_and_stops_gc() {
    special_manifest(|repo, saved| symlink(saved, &repo.join("m/model.bin.shard.json")));
}

/// A committed file replaced by `plant` is `unreadable` (status exit 1) and commit fails.
fn special_data_file(plant: impl Fn(&TestRepo, &Path)) {
    let (repo, _) = committed();
    let outside = tempfile::tempdir().expect("tempdir");
    let saved = outside.path().join("model.bin");
    fs::rename(repo.join("m/model.bin"), &saved).expect("mv");
    plant(&repo, &saved);
    let v = serde_json::from_slice::<serde_json::Value>(
        &bounded(repo.path(), &["status", "--json"]).stdout,
    )
    .expect("json");
    assert_eq!(v[0]["state"], "unreadable", "{v}");
    let st = bounded(repo.path(), &["status"]);
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stdout).contains("unreadable"));
    let c = bounded(repo.path(), &["commit", "-m", "v2"]);
    assert_eq!(
        c.status.code(),
        Some(1),
        "commit: {}",
        String::from_utf8_lossy(&c.stdout)
    );
    assert!(!String::from_utf8_lossy(&c.stdout).contains("nothing to commit"));
    let d = bounded(repo.path(), &["diff", "m/model.bin"]);
    assert!(!d.status.success());
}

#[test]
fn a_committed_file_replaced_by_a_fifo_is_unreadable() {
    special_data_file(|repo, _| mkfifo(&repo.join("m/model.bin")));
}

#[test]
fn a_committed_file_replaced_by_a_symlink_is_unreadable() {
    special_data_file(|repo, saved| symlink(saved, &repo.join("m/model.bin")));
}

/// Sets `p`'s modification time `hours` into the past.
fn age(p: &Path, hours: u64) {
    let st = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("{hours} hours ago"))
        .arg(p)
        .status()
        .expect("touch");
    assert!(st.success());
}

#[test]
fn stale_temporary_files_are_removed_by_the_next_run() {
    let repo = TestRepo::new();
    let old = repo.join(".shard/tmp/.nshard-tmp-killedcommit");
    let young = repo.join(".shard/tmp/.nshard-tmp-running");
    let other = repo.join(".shard/tmp/not-ours");
    for p in [&old, &young, &other] {
        fs::write(p, b"partial").expect("write");
    }
    age(&old, 2);
    age(&other, 2);
    bounded(repo.path(), &["status"]);
    assert!(
        !old.exists(),
        "a stale temporary file survived the next run"
    );
    assert!(young.exists(), "a young temporary file was removed");
    assert!(other.exists(), "a file nshard did not name was removed");
}
