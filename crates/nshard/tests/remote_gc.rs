//! `nshard remote gc` end to end with real git: versions pushed with git, a branch rewound and
//! force-pushed, two repositories sharing one data remote, a concurrent push racing gc, a
//! listing error, a crash mid-sweep, and retention. Directory remotes here; `nshard serve` and
//! S3 in `remote_gc_backends.rs`.

mod common;

use std::fs;

use common::failpoints::{
    kill_at_point, spawn_at, spawn_resumable, spawn_resumable_with, wait_at_point,
};
use common::gc_world::{fine_tune, model, version_objects, GcWorld};
use common::s3::S3Env;
use common::serve::Served;

const ADMIN: &str = "admin-token-0123456789abcdef";
const WRITE: &str = "write-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A world whose data remote is `nshard serve` with admin, write and read tokens: the clones
/// push with the write token, gc runs with the admin token.
fn served_world() -> GcWorld {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("served");
    fs::create_dir(&store).expect("store");
    let tokens = format!("admin:{ADMIN},write:{WRITE},read:{READ}");
    let served = Served::start(&store, &[], &[("NSHARD_SERVE_TOKENS", &tokens)]);
    let url = served.at("");
    GcWorld::with(
        tmp,
        url,
        env(&[("NSHARD_TOKEN", WRITE)]),
        env(&[("NSHARD_TOKEN", ADMIN)]),
        Some(served),
    )
}

/// A world whose data remote is a fresh prefix of the S3 test server (`None`, and the test is
/// skipped, outside CI when none runs).
fn s3_world() -> Option<GcWorld> {
    let s3 = S3Env::get()?;
    let tmp = tempfile::tempdir().expect("tempdir");
    Some(GcWorld::with(
        tmp,
        s3.fresh_url("remote-gc"),
        s3.vars(),
        s3.vars(),
        None,
    ))
}

#[test]
fn a_force_pushed_away_version_is_freed_and_the_rest_still_pulls() {
    force_push_then_gc(&GcWorld::dir());
}

#[test]
fn a_force_pushed_away_version_is_freed_on_a_server() {
    let w = served_world();
    force_push_then_gc(&w);
}

#[test]
fn a_force_pushed_away_version_is_freed_on_s3() {
    if let Some(w) = s3_world() {
        force_push_then_gc(&w);
    }
}

#[test]
fn only_an_admin_token_runs_gc_on_a_server() {
    let w = served_world();
    let (a, _) = w.three_versions();
    w.rewind(&a);
    let before = w.object_ids();
    for token in [WRITE, READ] {
        let err = w
            .nshard(&a)
            .env("NSHARD_TOKEN", token)
            .args(["remote", "gc", "data", "--grace", "0"])
            .output()
            .expect("runs");
        assert!(!err.status.success());
        let msg = String::from_utf8_lossy(&err.stderr);
        assert!(msg.contains("admin"), "{msg}");
        assert_eq!(w.object_ids(), before, "nothing deleted with a {token}");
    }
    let done = w.gc(&a, &["--grace", "0"]);
    assert_eq!(done["freed_objects"], 3, "{done:#}");
}

/// v1..v3 pushed with git, v3 dropped by a reset and a force-push: a dry run lists v3's objects
/// and deletes nothing; gc with no grace frees exactly them; a fresh clone still gets v1 and v2.
fn force_push_then_gc(w: &GcWorld) {
    let (a, [v1, v2, _]) = w.three_versions();
    let (v3_manifest, v3_chunks) = version_objects(&a, "HEAD");
    w.rewind(&a);
    let before = w.object_ids();
    // Only v3's manifest and its two new chunks are v3's alone.
    let v3_only: Vec<&String> = std::iter::once(&v3_manifest)
        .chain(&v3_chunks[..2])
        .collect();

    let dry = w.gc(&a, &["--dry-run", "--grace", "0"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["freed_objects"], 3, "{dry:#}");
    let mut listed: Vec<&str> = dry["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            assert_eq!(c["state"], "would-delete", "{c}");
            assert_eq!(c["why"]["kind"], "dropped", "{c}");
            assert_eq!(c["why"]["path"], "models/m.bin", "{c}");
            c["id"].as_str().expect("id")
        })
        .collect();
    listed.sort();
    let mut expected: Vec<&str> = v3_only.iter().map(|s| s.as_str()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(w.object_ids(), before, "a dry run deletes nothing");
    let out = w
        .gc_cmd(&a)
        .args(["remote", "gc", "data", "--dry-run", "--grace", "0"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("would free 3 objects"), "{text}");
    assert!(text.contains("no longer named by any ref"), "{text}");

    let done = w.gc(&a, &["--grace", "0"]);
    assert_eq!(done["freed_objects"], 3, "{done:#}");
    for id in &v3_only {
        assert!(!w.has_object(id), "{id} of v3 is gone");
    }
    assert_eq!(w.object_ids().len(), before.len() - 3);
    // Superseded records went with it: one record for main, plus gc's marks.
    assert_eq!(done["deleted_records"], 4, "{done:#}");
    let again = w.gc(&a, &["--grace", "0"]);
    assert_eq!(again["freed_objects"], 0, "{again:#}");
    assert_eq!(again["records"], 1, "{again:#}");

    // A fresh clone still gets v2, and v1 by checking out its commit.
    let b = w.colleague("b");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("v2"), v2);
    w.git(&b, &["checkout", "-q", "HEAD~1"]);
    assert_eq!(fs::read(b.join("models/m.bin")).expect("v1"), v1);
}

#[test]
fn the_default_grace_marks_first_and_a_later_run_deletes() {
    let w = GcWorld::dir();
    let (a, _) = w.three_versions();
    w.rewind(&a);
    let before = w.object_ids();
    let first = w.gc(&a, &[]);
    assert_eq!(first["freed_objects"], 0, "{first:#}");
    assert_eq!(first["waiting_objects"], 3, "{first:#}");
    assert_eq!(w.object_ids(), before);
    let text = w.ok(&a, &["remote", "gc", "data"]);
    assert!(text.contains("marked 3 objects"), "{text}");
    assert_eq!(w.object_ids(), before, "still within the grace period");
    // Marked over a second ago, stored over a second ago: a run with a 1 s grace deletes.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let later = w.gc(&a, &["--grace", "1s"]);
    assert_eq!(later["freed_objects"], 3, "{later:#}");
    assert_eq!(w.object_ids().len(), before.len() - 3);
}

#[test]
fn a_push_that_relies_on_garbage_while_gc_runs_keeps_it() {
    let w = GcWorld::dir();
    let (a, [_, _, v3]) = w.three_versions();
    // A colleague has v3 (cloned before the rewind) and builds v4 on it, not yet in git.
    let b = w.colleague("b");
    w.rewind(&a);
    let (v3_manifest, v3_chunks) = version_objects(&b, "HEAD");
    let v4 = fine_tune(&v3, 1, 4);
    fs::write(b.join("models/m.bin"), &v4).expect("v4");
    w.ok(&b, &["commit", "-m", "v4, on top of v3"]);

    // gc decides v3's objects are garbage and stops before deleting...
    let resume = w.p("resume");
    let (mut child, lines) = spawn_resumable(
        &a,
        &["remote", "gc", "data", "--grace", "0", "--json"],
        "remote-gc-before-delete",
        &resume,
    );
    wait_at_point(&mut child, &lines, "remote gc");
    // ...while the colleague pushes v4: v3's chunks are on the remote, so only v4's new chunk
    // and manifest travel, and the push's record names v4 (whose parent is v3).
    let pushed = w.json(&b, &["push", "--remote", "data"]);
    assert_eq!(pushed["objects"], 2, "{pushed:#}");
    fs::write(&resume, b"go").expect("resume");
    let out = child.wait_with_output().expect("gc finishes");
    assert!(out.status.success());
    let text: String = lines.iter().collect::<Vec<_>>().join("\n");
    let json = &text[text.find('{').expect("json")..=text.rfind('}').expect("json")];
    let report: serde_json::Value = serde_json::from_str(json).expect("gc's json report");
    assert_eq!(report["freed_objects"], 0, "{report:#}");
    assert!(w.has_object(&v3_manifest));
    for c in &v3_chunks {
        assert!(w.has_object(c), "v3 chunk {c} kept for v4");
    }
    // And later runs keep them too: v4's record names its history.
    let later = w.gc(&a, &["--grace", "0"]);
    assert_eq!(later["freed_objects"], 0, "{later:#}");
    // The colleague's v4 comes back whole from the remote.
    assert_eq!(w.rebuild_elsewhere(&b, "c"), v4);
}

#[test]
fn a_version_pushed_outside_git_survives_the_default_grace() {
    let w = GcWorld::dir();
    let (a, [_, _, v3]) = w.three_versions();
    // A colleague pushes a version no commit names, and no record either (`--current`).
    let b = w.colleague("b");
    let v4 = fine_tune(&v3, 1, 40);
    fs::write(b.join("models/m.bin"), &v4).expect("v4");
    w.ok(&b, &["commit", "-m", "v4, not in git"]);
    let pushed = w.json(&b, &["push", "--current"]);
    assert_eq!(pushed["objects"], 2, "{pushed:#}");
    // Even a run told to delete unrecorded data keeps it for the grace period.
    let r = w.gc(&a, &["--include-unrecorded"]);
    assert_eq!(r["freed_objects"], 0, "{r:#}");
    assert_eq!(r["waiting_objects"], 2, "{r:#}");
    let kept = w.gc(&a, &[]);
    assert_eq!(kept["unrecorded_objects"], 2, "{kept:#}");
    assert_eq!(w.rebuild_elsewhere(&b, "c"), v4);
}

#[test]
fn two_repositories_sharing_a_remote_never_lose_each_others_data() {
    let w = GcWorld::dir();
    w.git(
        &w.root,
        &["init", "-q", "--bare", "-b", "main", "other.git"],
    );
    let (a, _) = w.three_versions();
    let x = w.owner_of("other.git", "x");
    let other = fine_tune(&model(9), 3, 10);
    w.commit_push(&x, &model(9), "x1");
    w.commit_push(&x, &other, "x2");
    let (xm, xc) = version_objects(&x, "HEAD");
    let (xm1, xc1) = version_objects(&x, "HEAD~1");
    w.rewind(&a);
    let report = w.gc(&a, &["--grace", "0"]);
    assert_eq!(report["freed_objects"], 3, "{report:#}");
    for id in [xm, xm1].iter().chain(&xc).chain(&xc1) {
        assert!(w.has_object(id), "the other repository's {id} is kept");
    }
    // And the other way round.
    let report = w.gc(&x, &["--grace", "0"]);
    assert_eq!(report["freed_objects"], 0, "{report:#}");
    let b = w.colleague("b");
    w.ok(&b, &["verify"]);
}

#[test]
fn an_admin_retires_a_deleted_forks_records() {
    let w = GcWorld::dir();
    w.git(&w.root, &["init", "-q", "--bare", "-b", "main", "fork.git"]);
    let (a, _) = w.three_versions();
    let f = w.owner_of("fork.git", "fork");
    w.commit_push(&f, &model(20), "fork's own model");
    let before = w.object_ids();
    // The fork's records are listed under its identity.
    let out = w.ok(&a, &["remote", "gc", "data", "--dry-run", "--grace", "0"]);
    let fork_line = out
        .lines()
        .find(|l| l.contains("record") && l.contains("fork"))
        .unwrap_or_else(|| panic!("the fork's record is listed: {out}"));
    let identity = fork_line.split_whitespace().nth(1).expect("identity");
    let err = w.fails(
        &a,
        &[
            "remote",
            "gc",
            "data",
            "--forget-repository",
            "example.com/nothing",
        ],
    );
    assert!(err.contains("no records of example.com/nothing"), "{err}");
    let r = w.gc(&a, &["--grace", "0", "--forget-repository", identity]);
    // The fork's model (16 chunks and its manifest) goes; the origin's data stays.
    assert_eq!(r["freed_objects"], 17, "{r:#}");
    assert_eq!(w.object_ids().len(), before.len() - 17);
    let b = w.colleague("b");
    w.ok(&b, &["verify"]);
}

#[test]
fn a_listing_error_deletes_nothing() {
    let w = GcWorld::dir();
    let (a, _) = w.three_versions();
    w.rewind(&a);
    let before = w.object_ids();
    // A fan-out "directory" that cannot be listed.
    fs::write(w.p("store/objects/zz"), b"not a directory").expect("plant");
    let err = w.fails(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert!(err.contains("listing"), "{err}");
    fs::remove_file(w.p("store/objects/zz")).expect("unplant");
    assert_eq!(w.object_ids(), before, "nothing deleted");
    assert!(lock_records(&w).is_empty(), "a failed run leaves no lock");
    // Records are listed strictly too.
    fs::create_dir_all(w.p("store/records")).expect("records");
    // A repository's space (gc's own holds a directory of that name: its lock's).
    let space = fs::read_dir(w.p("store/records"))
        .expect("records")
        .flatten()
        .find(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .expect("a space")
        .path();
    fs::write(space.join("ffffffffffffffff"), b"not a directory").expect("plant");
    w.fails(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert_eq!(w.object_ids(), before, "nothing deleted");
    fs::remove_file(space.join("ffffffffffffffff")).expect("unplant");
    assert!(lock_records(&w).is_empty(), "a failed run leaves no lock");
}

#[test]
fn a_gc_killed_mid_sweep_is_finished_by_the_next_run() {
    let w = GcWorld::dir();
    let (a, [_, v2, _]) = w.three_versions();
    let (v3_manifest, v3_chunks) = version_objects(&a, "HEAD");
    w.rewind(&a);
    let before = w.object_ids();
    let (child, lines) = spawn_at(
        &a,
        &["remote", "gc", "data", "--grace", "0"],
        "remote-gc-between-deletes",
    );
    kill_at_point(child, &lines, "remote gc");
    // The version went first, as a whole; its chunks are still there.
    assert!(!w.has_object(&v3_manifest));
    assert!(v3_chunks[..2].iter().all(|c| w.has_object(c)));
    // A clone that never had v3 finishes the job (gc's marks remember what was garbage).
    let b = w.colleague("b");
    let report = w.gc(&b, &["--grace", "0"]);
    assert_eq!(report["freed_objects"], 2, "{report:#}");
    assert_eq!(w.object_ids().len(), before.len() - 3);
    let c = w.colleague("c");
    assert_eq!(fs::read(c.join("models/m.bin")).expect("v2"), v2);
}

#[test]
fn keep_last_prunes_old_versions_and_says_so_on_pull() {
    keep_last_then_pull(&GcWorld::dir());
}

#[test]
fn keep_last_on_a_server() {
    keep_last_then_pull(&served_world());
}

#[test]
fn keep_last_on_s3() {
    if let Some(w) = s3_world() {
        keep_last_then_pull(&w);
    }
}

/// `--keep-last 1` frees v1 and v2; a pull of v1 says it was pruned; pushes leave pruned
/// versions out unless asked; the policy stays until `--keep-all`.
fn keep_last_then_pull(w: &GcWorld) {
    let (a, [_, _, v3]) = w.three_versions();
    let before = w.object_ids();
    let report = w.gc(&a, &["--keep-last", "1", "--grace", "0"]);
    // v1 and v2 go: each one's manifest and the two chunks no later version kept.
    assert_eq!(report["freed_objects"], 6, "{report:#}");
    assert_eq!(report["pruned"].as_array().expect("pruned").len(), 2);
    assert_eq!(report["keep_last"], 1);
    assert_eq!(w.object_ids().len(), before.len() - 6);
    // `verify --remote --all-versions` does not look there for what retention pruned.
    let verified = w.ok(&a, &["verify", "--remote", "data", "--all-versions"]);
    assert!(
        verified.contains("0 missing")
            && verified.contains("left out 2 older version(s) the remote's retention pruned"),
        "{verified}"
    );
    // The newest version is whole.
    let b = w.colleague("b");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("v3"), v3);
    // An old one is reported as pruned, not as corruption.
    w.git(
        &b,
        &["checkout", "-q", "HEAD~2", "--", "models/m.bin.shard.json"],
    );
    let err = w.fails(&b, &["pull", "models/m.bin"]);
    assert!(err.contains("pruned from the remote"), "{err}");
    assert!(err.contains("retention"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    // `pull --version` of a pruned version, from the newest, says the same (the history walk
    // through the remote stops at the pruned v2).
    w.git(
        &b,
        &["checkout", "-q", "HEAD", "--", "models/m.bin.shard.json"],
    );
    let log = w.json(&a, &["log", "models/m.bin"]);
    let v1 = log[2]["version"].as_str().expect("v1")[..12].to_string();
    let err = w.fails(&b, &["pull", "models/m.bin", "--version", &v1]);
    assert!(
        err.contains(&format!("(version {v1}) was pruned from the remote")),
        "{err}"
    );
    assert!(
        err.contains("retention") && !err.contains("--all-versions"),
        "{err}"
    );
    // A prefix of no version: the history from v2 back was pruned.
    let err = w.fails(&b, &["pull", "models/m.bin", "--version", "0000ffff"]);
    assert!(
        err.contains("its history from version") && err.contains("retention"),
        "{err}"
    );
    // `pull --all-versions` leaves out pruned versions whose manifests this clone holds (from
    // a pull of one of them) but whose data is gone, instead of failing the newest version.
    w.git(
        &b,
        &["checkout", "-q", "HEAD~1", "--", "models/m.bin.shard.json"],
    );
    w.fails(&b, &["pull", "models/m.bin"]);
    w.git(
        &b,
        &["checkout", "-q", "HEAD", "--", "models/m.bin.shard.json"],
    );
    let all = w.ok(&b, &["pull", "--all-versions"]);
    assert!(
        all.contains("left out 2 older version(s) the remote's retention pruned"),
        "{all}"
    );
    assert_eq!(fs::read(b.join("models/m.bin")).expect("v3"), v3);
    // A plain push leaves the pruned versions out; asked, it sends them.
    let pushed = w.ok(&a, &["push", "--remote", "data"]);
    assert!(pushed.contains("left out 2 version(s)"), "{pushed}");
    assert_eq!(w.object_ids().len(), before.len() - 6);
    let forced = w.json(&a, &["push", "--remote", "data", "--include-pruned"]);
    assert_eq!(forced["objects"], 6, "{forced:#}");
    // The policy is recorded: a plain run prunes them again.
    let again = w.gc(&a, &["--grace", "0"]);
    assert_eq!(again["keep_last"], 1);
    assert_eq!(again["freed_objects"], 6, "{again:#}");
    // --keep-all lifts it.
    let all = w.gc(&a, &["--keep-all", "--grace", "0"]);
    assert_eq!(all["keep_last"], serde_json::Value::Null);
    w.json(&a, &["push", "--remote", "data"]);
    assert_eq!(w.object_ids().len(), before.len());
    // Raising the bound keeps again the versions within it: the next push sends them.
    w.gc(&a, &["--keep-last", "1", "--grace", "0"]);
    assert_eq!(w.object_ids().len(), before.len() - 6);
    let raised = w.gc(&a, &["--keep-last", "2", "--grace", "0"]);
    assert_eq!(
        raised["unpruned"].as_array().expect("unpruned").len(),
        1,
        "{raised:#}"
    );
    assert_eq!(raised["pruned"], serde_json::json!([]), "{raised:#}");
    let pushed = w.json(&a, &["push", "--remote", "data"]);
    assert_eq!(pushed["objects"], 3, "v2's manifest and chunks: {pushed:#}");
    assert_eq!(w.object_ids().len(), before.len() - 3);
    let stays = w.gc(&a, &["--grace", "0"]);
    assert_eq!(stays["freed_objects"], 0, "{stays:#}");
}

#[test]
fn records_name_a_repository_the_same_way_from_every_clone() {
    let w = GcWorld::dir();
    let (a, _) = w.three_versions();
    let b = w.colleague("b");
    fs::write(b.join("models/m.bin"), fine_tune(&model(1), 1, 7)).expect("b's version");
    w.ok(&b, &["commit", "-m", "b"]);
    w.git(&b, &["add", "-A"]);
    w.git(&b, &["commit", "-q", "-m", "b"]);
    w.git(&b, &["push", "-q", "origin", "HEAD:main"]);
    // One repository, one space, one current record for main.
    let spaces: Vec<_> = fs::read_dir(w.p("store/records"))
        .expect("records")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .collect();
    assert_eq!(spaces.len(), 1);
    let r = w.gc(&a, &["--dry-run", "--grace", "0"]);
    assert_eq!(r["records"], 4, "{r:#}");
    assert_eq!(r["superseded_records"], 3, "{r:#}");
    assert_eq!(r["freed_objects"], 0, "{r:#}");
}

#[test]
fn a_branch_deleted_on_the_git_remote_is_dropped_by_the_refresh() {
    let w = GcWorld::dir();
    let a = w.owner_of("origin.git", "a");
    w.commit_push(&a, &model(1), "v1");
    w.git(&a, &["checkout", "-q", "-b", "experiment"]);
    w.commit_push(&a, &fine_tune(&model(1), 2, 5), "experiment");
    w.git(&a, &["checkout", "-q", "main"]);
    // Deleted on the git remote behind nshard's back (a web UI, another tool).
    w.git(&w.p("origin.git"), &["branch", "-D", "experiment"]);
    w.git(&a, &["branch", "-D", "experiment"]);
    let r = w.gc(&a, &["--grace", "0"]);
    let refreshed = r["refreshed"].as_array().expect("refreshed");
    assert!(
        refreshed.iter().any(|x| x
            .as_str()
            .unwrap_or("")
            .contains("refs/heads/experiment: deleted")),
        "{r:#}"
    );
    assert_eq!(r["freed_objects"], 3, "{r:#}");
    let kept = w.gc(&a, &["--grace", "0", "--no-refresh"]);
    assert_eq!(kept["freed_objects"], 0, "{kept:#}");
}

/// A clone with garbage on the world's directory remote (v3 rewound away), and a `remote gc
/// --grace 0` held at `point` until the returned file exists: (clone, the remote's objects
/// before, the run, its output, the file).
fn held_gc(
    w: &GcWorld,
    point: &str,
    envs: &[(&str, &str)],
) -> (
    std::path::PathBuf,
    Vec<String>,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::path::PathBuf,
) {
    let (a, _) = w.three_versions();
    w.rewind(&a);
    let before = w.object_ids();
    let resume = w.p("resume");
    let (mut child, lines) = spawn_resumable_with(
        &a,
        &["remote", "gc", "data", "--grace", "0"],
        point,
        &resume,
        envs,
    );
    wait_at_point(&mut child, &lines, "remote gc");
    (a, before, child, lines, resume)
}

/// The lock record a run on another machine would write, stamped `age_secs` ago.
fn foreign_lock(w: &GcWorld, age_secs: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let stamp = now - u128::from(age_secs) * 1_000_000_000;
    let body = serde_json::json!({
        "format": "neuroshard.gc-lock/1",
        "host": "elsewhere",
        "place": "another machine",
        "pid": 4242,
        "started": (stamp / 1_000_000_000) as u64,
    });
    w.put_record(
        &format!("_gc/ffffffffffffffff/{stamp:020}-0000abcd"),
        body.to_string().as_bytes(),
    );
}

fn lock_records(w: &GcWorld) -> Vec<String> {
    w.record_names()
        .into_iter()
        .filter(|n| n.starts_with("_gc/ffffffffffffffff/"))
        .collect()
}

#[test]
fn one_gc_at_a_time_changes_a_remote() {
    let w = GcWorld::dir();
    // A run holds the lock (stopped right after taking it)...
    let (a, before, child, _lines, resume) = held_gc(&w, "remote-gc-locked", &[]);
    assert_eq!(lock_records(&w).len(), 1);
    // ...so a second one stops with nothing changed, naming it.
    let err = w.gc_fails(&a);
    assert!(
        err.contains("another `nshard remote gc` is running on it")
            && err.contains(&format!("pid {}", child.id()))
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(w.object_ids(), before);
    // A dry run takes no lock.
    let dry = w.gc(&a, &["--dry-run", "--grace", "0"]);
    assert_eq!(dry["freed_objects"], 3, "{dry:#}");
    // The first run finishes, and lets go of the lock.
    fs::write(&resume, b"go").expect("resume");
    let out = child.wait_with_output().expect("gc finishes");
    assert!(out.status.success());
    assert_eq!(w.object_ids().len(), before.len() - 3);
    assert!(lock_records(&w).is_empty(), "{:?}", w.record_names());
    let again = w.gc(&a, &["--grace", "0"]);
    assert_eq!(again["freed_objects"], 0, "{again:#}");
    assert!(lock_records(&w).is_empty());
}

#[test]
fn the_gc_lock_of_a_run_that_is_gone_is_taken_over() {
    let w = GcWorld::dir();
    // Killed while holding the lock on this machine: the next run takes it over at once.
    let (a, before, mut child, _lines, _) = held_gc(&w, "remote-gc-locked", &[]);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(lock_records(&w).len(), 1);
    let text = w.ok(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert!(
        text.contains("removed the gc lock of a run that is gone")
            && text.contains("died on this machine"),
        "{text}"
    );
    assert_eq!(w.object_ids().len(), before.len() - 3);
    assert!(lock_records(&w).is_empty());

    // A fresh lock of a run on another machine counts...
    let before = w.object_ids();
    foreign_lock(&w, 5);
    let err = w.fails(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert!(
        err.contains("another `nshard remote gc` is running on it (host elsewhere, pid 4242")
            && err.contains("--break-lock"),
        "{err}"
    );
    assert_eq!(w.object_ids(), before);
    assert_eq!(lock_records(&w).len(), 1, "the other run's lock stays");
    // ...until --break-lock (which a dry run has no use for).
    let err = w.fails(&a, &["remote", "gc", "data", "--dry-run", "--break-lock"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let text = w.ok(&a, &["remote", "gc", "data", "--break-lock"]);
    assert!(
        text.contains("removed the gc lock of a run that is gone")
            && text.contains("removed by --break-lock (host elsewhere, pid 4242"),
        "{text}"
    );
    assert!(lock_records(&w).is_empty());
    // One not refreshed for 30 minutes stops counting by itself.
    foreign_lock(&w, 31 * 60);
    let text = w.ok(&a, &["remote", "gc", "data"]);
    assert!(
        text.contains("has not refreshed it for 3") && text.contains(" minutes"),
        "{text}"
    );
    assert!(lock_records(&w).is_empty());
}

#[test]
fn the_gc_lock_holds_on_nshard_serve() {
    let w = served_world();
    let a = a_lock_of_another_machine_counts_until_broken(&w);
    // A write token may not take the lock (gc needs the admin scope anyway): refused, with
    // nothing changed and no lock left.
    let before = w.object_ids();
    let err = w.fails(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert!(err.contains("admin"), "{err}");
    assert_eq!(w.object_ids(), before);
    assert!(lock_records(&w).is_empty(), "{:?}", w.record_names());
}

#[test]
fn the_gc_lock_holds_on_s3() {
    let Some(w) = s3_world() else {
        return;
    };
    a_lock_of_another_machine_counts_until_broken(&w);
}

/// A foreign lock stops gc on the world's remote, `--break-lock` removes it, and the run leaves
/// none behind. Returns the clone.
fn a_lock_of_another_machine_counts_until_broken(w: &GcWorld) -> std::path::PathBuf {
    let (a, _) = w.three_versions();
    w.rewind(&a);
    let before = w.object_ids();
    foreign_lock(w, 5);
    let err = w.gc_fails(&a);
    assert!(err.contains("host elsewhere, pid 4242"), "{err}");
    assert_eq!(w.object_ids(), before);
    let r = w.gc(&a, &["--grace", "0", "--break-lock"]);
    assert_eq!(
        r["removed_locks"].as_array().map(Vec::len),
        Some(1),
        "{r:#}"
    );
    assert_eq!(r["freed_objects"], 3, "{r:#}");
    assert!(lock_records(w).is_empty(), "{:?}", w.record_names());
    a
}

#[test]
fn a_gc_whose_lock_was_broken_deletes_nothing() {
    let w = GcWorld::dir();
    let (_, before, child, lines, resume) = held_gc(&w, "remote-gc-locked", &[]);
    // Someone elsewhere judged the run dead and broke its lock (`--break-lock`).
    let locks = lock_records(&w);
    assert_eq!(locks.len(), 1);
    let path = w.p(&format!("store/records/{}", locks[0]));
    fs::remove_file(&path).expect("break the lock");
    fs::write(&resume, b"go").expect("resume");
    let out = child.wait_with_output().expect("gc finishes");
    assert!(!out.status.success());
    let text: String = lines.iter().collect::<Vec<_>>().join("\n");
    assert!(
        text.contains("this gc's lock was removed by another run")
            && text.contains("stopped before deleting"),
        "{text}"
    );
    assert_eq!(w.object_ids(), before, "nothing deleted");
}

#[test]
fn a_gc_refreshes_its_lock_while_it_runs() {
    let w = GcWorld::dir();
    // A run held at its first deletion, its lock refreshed every 100 ms (5 minutes outside the
    // crash-test build).
    let (a, before, child, _lines, resume) = held_gc(
        &w,
        "remote-gc-before-delete",
        &[("NSHARD_TEST_GC_LOCK_REFRESH_MS", "100")],
    );
    let first = lock_records(&w);
    assert!(!first.is_empty());
    // The record is replaced by fresher ones, and the older ones go (at most two at a moment:
    // the fresh one is written before the one before is removed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let now = loop {
        let now = lock_records(&w);
        if !now.is_empty() && now.iter().all(|n| !first.contains(n)) {
            break now;
        }
        assert!(now.len() <= 2, "{now:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was not refreshed: {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(now.len() <= 2, "{now:?}");
    // Another run still finds it held.
    let err = w.fails(&a, &["remote", "gc", "data", "--grace", "0"]);
    assert!(
        err.contains("another `nshard remote gc` is running on it"),
        "{err}"
    );
    fs::write(&resume, b"go").expect("resume");
    let out = child.wait_with_output().expect("gc finishes");
    assert!(out.status.success());
    assert_eq!(w.object_ids().len(), before.len() - 3);
    assert!(lock_records(&w).is_empty(), "{:?}", w.record_names());
}

/// A version a tag keeps among versions `--keep-last` pruned: gc keeps it on the remote as
/// deltas whose bases are chunks of pruned versions (kept as bases). A later plain push relies
/// on those chains instead of sending the version whole again (which the next gc would delete
/// again, on every round), and the version still pulls and checks out.
#[test]
fn a_tagged_version_among_pruned_ones_is_not_sent_whole_again() {
    let w = GcWorld::dir();
    let a = w.owner_of("origin.git", "a");
    format_aware_chunking(&a);
    let files = common::checkpoints::series(6);
    for (k, f) in files.iter().enumerate() {
        w.commit_push(&a, f, &format!("step {k}"));
        w.ok(&a, &["repack"]);
        if k == 1 {
            w.git(&a, &["tag", "keep"]);
            w.git(&a, &["push", "-q", "origin", "keep"]);
        }
    }
    // Every older version goes to deltas on the remote, then retention prunes all but the
    // two newest and the tagged one, whose chain runs through the pruned step 2.
    let all = w.gc(&a, &["--grace", "0"]);
    assert!(all["uploaded_deltas"].as_u64() > Some(0), "{all:#}");
    let gc = w.gc(&a, &["--keep-last", "2", "--grace", "0"]);
    assert_eq!(gc["pruned"].as_array().expect("pruned").len(), 3, "{gc:#}");
    let again = w.json(&a, &["push", "--remote", "data"]);
    assert_eq!(again["objects"], 0, "nothing is sent again: {again:#}");
    let later = w.gc(&a, &["--grace", "0"]);
    assert_eq!(later["superseded_objects"], 0, "{later:#}");
    assert_eq!(later["uploaded_deltas"], 0, "{later:#}");
    // The tagged version still comes back whole in a fresh clone.
    let b = w.colleague("b");
    w.git(&b, &["checkout", "-q", "keep"]);
    w.ok(&b, &["pull"]);
    w.ok(&b, &["checkout", "--force", "models/m.bin"]);
    assert!(fs::read(b.join("models/m.bin")).expect("step 1") == files[1]);
}

/// A clone that pulled one older version but not the versions before it: the remote holds those
/// only as deltas (after a gc there), and the clone's push relies on them rather than failing
/// because neither the clone nor the remote holds them whole.
#[test]
fn a_push_relies_on_older_versions_the_remote_holds_only_as_deltas() {
    let w = GcWorld::dir();
    let (a, b, _) = steps_as_deltas_and_a_branch_at_step_1(&w, &["pull", "--checkout"]);
    let pushed = w.json(&b, &["push", "--remote", "data"]);
    assert_eq!(pushed["objects"], 0, "{pushed:#}");
    assert!(
        pushed["files"][0]["error"].is_null(),
        "nothing is missing: {pushed:#}"
    );
    // Nothing changed on the remote: a gc finds nothing to do.
    let later = w.gc(&a, &["--grace", "0"]);
    assert_eq!(later["freed_objects"], 0, "{later:#}");
    assert_eq!(later["uploaded_deltas"], 0, "{later:#}");
    // Step 1 is not the newest of its history (step 2 descends from it): it stays deltas.
    assert_eq!(later["whole_again"], 0, "{later:#}");
    assert_eq!(later["superseded_objects"], 0, "{later:#}");
}

/// A push that relies on a chain of deltas on the remote (a chunk stored there only as a delta of
/// a chunk outside the push) while a gc run deletes that chain before the push's record lands:
/// the push checks its chains again once its record is written and sends whole what no longer
/// resolves, so the version it recorded still comes back from the remote alone.
#[test]
fn a_push_whose_delta_chain_gc_deletes_meanwhile_sends_the_chunks_whole() {
    use common::failpoints::spawn_resumable;
    let w = GcWorld::dir();
    // A colleague holds step 1's data and step 0's.
    let (a, b, files) =
        steps_as_deltas_and_a_branch_at_step_1(&w, &["pull", "--all-versions", "--checkout"]);
    w.ok(&b, &["repack"]);
    assert!(fs::read(b.join("models/m.bin")).expect("step 1") == files[1]);
    let (_, step1_chunks) = version_objects(&b, "HEAD");
    let (_, step0_chunks) = version_objects(&b, "HEAD~1");
    let log = w.json(&b, &["log", "models/m.bin"]);
    let step0 = log[1]["version"].as_str().expect("step 0").to_string();
    // The colleague's push finds step 1 on the remote (its chunks through chains that end in
    // step 2's) and stops before writing its record...
    let resume = w.p("resume");
    let (mut child, lines) = spawn_resumable(
        &b,
        &["push", "--remote", "data", "--json"],
        "push-before-record",
        &resume,
    );
    wait_at_point(&mut child, &lines, "push");
    // ...while main is replaced by a history without the model and a gc deletes every step: no
    // record names them yet.
    w.git(&a, &["checkout", "-q", "--orphan", "fresh"]);
    w.git(&a, &["rm", "-q", "--cached", "models/m.bin.shard.json"]);
    w.git(&a, &["commit", "-q", "-m", "a new start"]);
    w.git(&a, &["push", "-q", "-f", "origin", "fresh:main"]);
    let gc = w.gc(&a, &["--grace", "0"]);
    assert!(gc["freed_objects"].as_u64() > Some(0), "{gc:#}");
    let gone: Vec<&String> = step1_chunks.iter().filter(|c| !w.has_object(c)).collect();
    assert!(
        !gone.is_empty(),
        "step 1's chunks were deleted as garbage: {gc:#}"
    );
    // The push goes on: its record lands, and what it relied on goes again.
    fs::write(&resume, b"go").expect("resume");
    let out = child.wait_with_output().expect("push finishes");
    let text: String = lines.try_iter().collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "{text}");
    for c in step1_chunks.iter().chain(&step0_chunks) {
        assert!(w.has_object(c), "chunk {c} sent again whole: {text}");
    }
    // Steps 1 and 0 come back from the remote alone (in clones of a main that no longer has the
    // model: the colleague hands the manifest over), also after a later gc.
    let rebuild = |name: &str| {
        let c = w.colleague(name);
        fs::create_dir_all(c.join("models")).expect("models");
        fs::copy(
            b.join("models/m.bin.shard.json"),
            c.join("models/m.bin.shard.json"),
        )
        .expect("hand over the manifest");
        w.ok(&c, &["pull", "--checkout"]);
        assert!(fs::read(c.join("models/m.bin")).expect("step 1") == files[1]);
        c
    };
    rebuild("c");
    let later = w.gc(&a, &["--grace", "0"]);
    assert_eq!(later["freed_objects"], 0, "{later:#}");
    let d = rebuild("d");
    w.ok(&d, &["pull", "models/m.bin", "--version", &step0]);
    w.ok(
        &d,
        &["checkout", "models/m.bin", "--version", &step0, "--force"],
    );
    assert!(fs::read(d.join("models/m.bin")).expect("step 0") == files[0]);
}

/// Format-aware chunking in clone `a` (the world's fixed chunks pair no tensors).
fn format_aware_chunking(a: &std::path::Path) {
    let config = fs::read_to_string(a.join(".shard/config.toml")).expect("config");
    let kept: Vec<&str> = config
        .lines()
        .filter(|l| {
            !l.starts_with("[chunking]") && !l.starts_with("algorithm") && !l.starts_with("size")
        })
        .collect();
    fs::write(a.join(".shard/config.toml"), kept.join("\n") + "\n").expect("config");
}

/// Four steps of a checkpoint series pushed from clone `a`, the older ones made deltas on the
/// remote by a gc (step 1's chunks become deltas of step 2's), and a colleague's clone `b` on a
/// local branch at step 1, pulled with `pull`: (a, b, the steps).
fn steps_as_deltas_and_a_branch_at_step_1(
    w: &GcWorld,
    pull: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf, Vec<Vec<u8>>) {
    let a = w.owner_of("origin.git", "a");
    format_aware_chunking(&a);
    let files = common::checkpoints::series(4);
    for (k, f) in files.iter().enumerate() {
        w.commit_push(&a, f, &format!("step {k}"));
        w.ok(&a, &["repack"]);
    }
    let all = w.gc(&a, &["--grace", "0"]);
    assert!(all["uploaded_deltas"].as_u64() > Some(0), "{all:#}");
    let b = w.colleague("b");
    w.git(&b, &["checkout", "-q", "-b", "old", "HEAD~2"]);
    w.ok(&b, pull);
    (a, b, files)
}

/// Branches and tags that reach the git remote without nshard's hook (a release made in a web
/// UI, a push from a clone without `nshard git-init`) are found by gc's refresh: what their tips
/// name survives retention. A ref at a commit this clone lacks holds retention back until the
/// clone has fetched it.
#[test]
fn retention_keeps_what_refs_made_without_the_hooks_name() {
    let w = GcWorld::dir();
    let (a, [v1, _, _]) = w.three_versions();
    let version_at = |rev: &str| version_objects(&a, rev).0;
    let (old, middle) = (version_at("main~2"), version_at("main~1"));
    // v1 tagged on the git remote itself.
    w.git(&w.p("origin.git"), &["tag", "release", "main~2"]);
    // A tag pushed from a clone without the hooks, at a commit `a` has not fetched.
    w.git(&w.root, &["clone", "-q", "origin.git", "c"]);
    let c = w.p("c");
    w.git(&c, &["commit", "-q", "--allow-empty", "-m", "code only"]);
    w.git(&c, &["push", "-q", "origin", "HEAD:refs/tags/unseen"]);

    let held = w.gc(&a, &["--keep-last", "1", "--grace", "0"]);
    assert_eq!(held["pruned"], serde_json::json!([]), "{held:#}");
    assert_eq!(
        held["unknown_refs"],
        serde_json::json!(["refs/tags/unseen"]),
        "{held:#}"
    );
    let text = held["refreshed"].to_string();
    assert!(text.contains("which this clone lacks"), "{held:#}");
    assert!(
        text.contains("refs/tags/release: at ") && text.contains("which no push recorded"),
        "{held:#}"
    );

    // A tag of a blob (a key, as git.git has) names no version and holds nothing back.
    let origin = w.p("origin.git");
    let key = std::process::Command::new("git")
        .args(["hash-object", "-w", "--stdin"])
        .current_dir(&origin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"a key\n")?;
            c.wait_with_output()
        })
        .expect("git hash-object");
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    w.git(&origin, &["tag", "key", &key]);
    w.git(&a, &["fetch", "-q", "--tags", "origin"]);
    let gc = w.gc(&a, &["--keep-last", "1", "--grace", "0"]);
    let pruned: Vec<&str> = gc["pruned"]
        .as_array()
        .expect("pruned")
        .iter()
        .map(|p| p["version"].as_str().expect("id"))
        .collect();
    assert_eq!(pruned, vec![middle.as_str()], "{gc:#}");
    assert_eq!(gc["unknown_refs"], serde_json::json!([]), "{gc:#}");
    // The records the refresh wrote keep the tagged version without a refresh too.
    let later = w.gc(&a, &["--grace", "0", "--no-refresh"]);
    assert_eq!(later["freed_objects"], 0, "{later:#}");
    assert_eq!(later["pruned"], serde_json::json!([]), "{later:#}");
    assert!(!gc.to_string().contains(&old), "{gc:#}");
    let b = w.colleague("b");
    w.git(&b, &["checkout", "-q", "release"]);
    w.ok(&b, &["pull"]);
    w.ok(&b, &["checkout", "--force", "models/m.bin"]);
    assert!(fs::read(b.join("models/m.bin")).expect("v1") == v1);
    // The git remote moved (records are kept under its old URL): gc says it checked no refs.
    w.git(
        &w.root,
        &["clone", "-q", "--bare", "origin.git", "moved.git"],
    );
    let moved = w.p("moved.git").display().to_string();
    w.git(&a, &["remote", "set-url", "origin", &moved]);
    let r = w.gc(&a, &["--grace", "0", "--dry-run"]);
    assert!(
        r["refreshed"]
            .to_string()
            .contains("no records of this repository on the remote"),
        "{r:#}"
    );
}

/// `verify --remote --all-versions` on a remote holding older versions as deltas: a corrupt
/// whole object that deltas are built on is repaired, and the objects held through it are then
/// found, not reported missing (they read as missing only while it was aside).
#[test]
fn verify_remote_repairs_a_delta_base_and_then_finds_what_stands_on_it() {
    let w = GcWorld::dir();
    let (a, _, _) = steps_as_deltas_and_a_branch_at_step_1(&w, &["pull"]);
    let store = w.p("store");
    let deltas = common::walk(&store.join("deltas"));
    let base = deltas
        .iter()
        .filter_map(|(rel, _)| rel.rsplit('/').next()?.split_once('.').map(|(_, b)| b))
        .find(|b| store.join("objects").join(&b[..2]).join(&b[2..]).is_file())
        .unwrap_or_else(|| panic!("no delta with a whole base: {deltas:?}"))
        .to_string();
    let p = store.join("objects").join(&base[..2]).join(&base[2..]);
    let mut bytes = fs::read(&p).expect("base");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&p, &bytes).expect("corrupt the base");

    let out = w
        .nshard(&a)
        .args(["verify", "--remote", "data", "--all-versions", "--json"])
        .output()
        .expect("runs");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(out.status.success(), "{r:#}");
    // Objects checked through the base while it was still in place are repaired too (whole
    // copies beside their deltas); none may read as missing.
    let repaired = r["repaired"].as_array().expect("repaired");
    assert!(repaired.iter().any(|x| x == base.as_str()), "{r:#}");
    assert_eq!(r["missing"], serde_json::json!([]), "{r:#}");
    let again = w.json(&a, &["verify", "--remote", "data", "--all-versions"]);
    assert_eq!(again["corrupt"], serde_json::json!([]), "{again:#}");
    assert_eq!(again["missing"], serde_json::json!([]), "{again:#}");
}

/// `nshard gc --only-current` counts an older version the remote holds only as deltas as pushed:
/// its local copy goes in one run (not kept as "not on the remote"), and it comes back from the
/// remote.
#[test]
fn local_gc_counts_versions_the_remote_holds_as_deltas_as_pushed() {
    let w = GcWorld::dir();
    let a = w.owner_of("origin.git", "a");
    format_aware_chunking(&a);
    let files = common::checkpoints::series(4);
    // Steps 1 and 2 are nshard commits between git commits: no git commit names them.
    for (k, f) in files.iter().enumerate() {
        if k == 0 || k == 3 {
            w.commit_push(&a, f, &format!("step {k}"));
        } else {
            fs::write(a.join("models/m.bin"), f).expect("write");
            w.ok(&a, &["commit", "-m", &format!("step {k}")]);
        }
        w.ok(&a, &["repack"]);
    }
    let all = w.gc(&a, &["--grace", "0"]);
    assert!(all["uploaded_deltas"].as_u64() > Some(0), "{all:#}");
    let r = w.json(&a, &["gc", "--only-current", "--grace", "0"]);
    assert_eq!(r["objects_unpushed"], 0, "{r:#}");
    assert!(r["objects_deleted"].as_u64() > Some(0), "{r:#}");
    let again = w.json(&a, &["gc", "--only-current", "--grace", "0"]);
    assert_eq!(again["objects_deleted"], 0, "{again:#}");
    w.ok(&a, &["pull", "--all-versions"]);
    w.ok(&a, &["verify", "--all-versions"]);
    let log = w.json(&a, &["log", "models/m.bin"]);
    let step1 = log[2]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("{log:#}"))
        .to_string();
    w.ok(&a, &["checkout", "--version", &step1, "models/m.bin"]);
    assert!(fs::read(a.join("models/m.bin")).expect("step 1") == files[1]);
}

/// `pull --all-versions` in a fresh clone after retention pruned older versions says they were
/// pruned, not that the history is missing from the remote.
#[test]
fn pull_all_versions_names_versions_retention_pruned() {
    let w = GcWorld::dir();
    let (a, _) = w.three_versions();
    let gc = w.gc(&a, &["--keep-last", "1", "--grace", "0"]);
    assert_eq!(gc["pruned"].as_array().map(Vec::len), Some(2), "{gc:#}");
    let b = w.colleague("b");
    let out = w.ok(&b, &["pull", "--all-versions"]);
    assert!(
        out.contains("left out 2 older version(s) the remote's retention pruned"),
        "{out}"
    );
    assert!(!out.contains("not included"), "{out}");
}

/// Two repositories push a file of the same name to one remote: `--keep-last N` keeps N versions
/// of it in each, not N in all (the newer repository's versions used to push the older one's out,
/// down to its tip).
#[test]
fn keep_last_counts_the_versions_of_each_repository_apart() {
    let w = GcWorld::dir();
    w.git(
        &w.root,
        &["init", "-q", "--bare", "-b", "main", "other.git"],
    );
    let a = w.owner_of("origin.git", "a");
    let b = w.owner_of("other.git", "b");
    let mut a_versions = Vec::new();
    let mut b_versions = Vec::new();
    for (k, dir) in [&a, &a, &a, &b, &b, &b].into_iter().enumerate() {
        w.commit_push(dir, &model(100 + k as u64), &format!("v{k}"));
        let v = w.json(dir, &["log", "models/m.bin"])[0]["version"]
            .as_str()
            .expect("version")
            .to_string();
        if k < 3 {
            a_versions.push(v);
        } else {
            b_versions.push(v);
        }
    }
    let report = w.gc(&a, &["--keep-last", "2", "--grace", "0"]);
    let mut pruned: Vec<String> = report["pruned"]
        .as_array()
        .expect("pruned")
        .iter()
        .map(|p| p["version"].as_str().expect("version").to_string())
        .collect();
    pruned.sort();
    let mut want = vec![a_versions[0].clone(), b_versions[0].clone()];
    want.sort();
    assert_eq!(pruned, want, "{report:#}");
    // Each repository's two newest versions still come back from the remote.
    for (dir, versions) in [(&a, &a_versions), (&b, &b_versions)] {
        let out = w.ok(dir, &["verify", "--remote", "data", "--all-versions"]);
        assert!(
            out.contains("0 missing") && out.contains("left out 1 older version(s)"),
            "{out}"
        );
        assert!(
            !w.has_object(&versions[0]),
            "the oldest version's manifest is freed"
        );
        assert!(w.has_object(&versions[1]) && w.has_object(&versions[2]));
    }
}

/// An older step committed again as the newest version (a revert) after a gc made its chunks
/// deltas on the remote: the push finds them there and sends nothing, so the remote holds the
/// branch's newest version only as deltas. The next gc stores them whole again from the
/// committer's store (and keeps them whole), so a fresh clone pulls the newest version without a
/// chain, and the older steps still come back.
#[test]
fn the_newest_version_is_whole_on_the_remote_again_after_a_revert() {
    revert_then_gc(&GcWorld::dir());
}

#[test]
fn the_newest_version_is_whole_again_after_a_revert_on_a_server() {
    revert_then_gc(&served_world());
}

#[test]
fn the_newest_version_is_whole_again_after_a_revert_on_s3() {
    if let Some(w) = s3_world() {
        revert_then_gc(&w);
    }
}

fn revert_then_gc(w: &GcWorld) {
    let a = w.owner_of("origin.git", "a");
    format_aware_chunking(&a);
    let files = common::checkpoints::series(4);
    for (k, f) in files.iter().enumerate() {
        w.commit_push(&a, f, &format!("step {k}"));
        w.ok(&a, &["repack"]);
    }
    let first = w.gc(&a, &["--grace", "0"]);
    assert!(first["uploaded_deltas"].as_u64() > Some(0), "{first:#}");
    let (_, step1_chunks) = version_objects(&a, "HEAD~2");
    let as_deltas: Vec<&String> = step1_chunks.iter().filter(|c| !w.has_object(c)).collect();
    assert!(
        !as_deltas.is_empty(),
        "step 1 is stored as deltas: {first:#}"
    );

    // Step 1's content committed again as the newest version, pushed with git.
    fs::write(a.join("models/m.bin"), &files[1]).expect("write");
    w.ok(&a, &["commit", "--force", "-m", "back to step 1"]);
    // The commit's background re-encoding done, so that both gc runs below see the same local
    // deltas (a second run would otherwise upload what the first one ran beside).
    w.ok(&a, &["repack"]);
    w.git(&a, &["commit", "-q", "-am", "back to step 1"]);
    w.git(&a, &["push", "-q", "origin", "HEAD"]);
    let (_, newest) = version_objects(&a, "HEAD");
    assert!(
        newest.iter().any(|c| !w.has_object(c)),
        "held only as deltas"
    );

    let gc = w.gc(&a, &["--grace", "0"]);
    assert_eq!(
        gc["whole_again"].as_u64(),
        Some(as_deltas.len() as u64),
        "{gc:#}"
    );
    for c in &newest {
        assert!(
            w.has_object(c),
            "chunk {c} of the newest version is whole: {gc:#}"
        );
    }
    // It stays whole: the next run finds nothing to change.
    let later = w.gc(&a, &["--grace", "0"]);
    assert_eq!(later["whole_again"], 0, "{later:#}");
    assert_eq!(later["superseded_objects"], 0, "{later:#}");
    for c in &newest {
        assert!(w.has_object(c), "chunk {c} stays whole: {later:#}");
    }

    // A fresh clone pulls the newest version alone, with no delta; the older steps still resolve.
    w.git(&w.root, &["clone", "-q", "origin.git", "c"]);
    let c = w.p("c");
    w.ok(
        &c,
        &["remote", "add", "data", &w.url, "--local", "--default"],
    );
    let pulled = w.json(&c, &["pull", "--checkout"]);
    assert_eq!(pulled["deltas"], 0, "{pulled:#}");
    assert!(fs::read(c.join("models/m.bin")).expect("newest") == files[1]);
    w.ok(&a, &["verify", "--remote", "data", "--all-versions"]);
}
