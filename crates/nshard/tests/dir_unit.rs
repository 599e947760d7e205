//! Directories of many small files versioned as one unit (issue 14): one manifest in git, small
//! files packed, commands that list added/removed/modified files, subtree checkout and pull,
//! gc that keeps old versions' packs, and hostile listings refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::serve::{metric_value, Served};
use common::{git, ok, put_object, random_bytes, read_tree, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::ObjectId;

/// Compressible, distinct content for file `i` (text-like, as datasets of JSON or CSV are).
fn content(i: usize, seed: u64, len: usize) -> Vec<u8> {
    let noise = random_bytes(len / 4, seed.wrapping_mul(100_003) + i as u64);
    let mut out = Vec::with_capacity(len);
    let mut k = 0;
    while out.len() < len {
        let line = format!(
            "{{\"id\": {i}, \"k\": {k}, \"v\": {}}}\n",
            noise[k % noise.len()]
        );
        out.extend_from_slice(line.as_bytes());
        k += 1;
    }
    out.truncate(len);
    out
}

/// Writes `n` files of `len` bytes under `dir`, in ten subdirectories; returns path → bytes.
fn write_dataset(
    root: &Path,
    dir: &str,
    n: usize,
    len: usize,
    seed: u64,
) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..n {
        let rel = format!("{dir}/part{}/f{i:05}.json", i % 10);
        let data = content(i, seed, len);
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, &data).expect("write");
        files.insert(rel, data);
    }
    files
}

/// Every regular file under `root/dir` (relative to `root`) with its bytes.
fn count_objects(store: &Path) -> usize {
    common::serve::walkdir(&store.join("objects"))
        .into_iter()
        .filter(|p| p.is_file())
        .count()
}

/// A git repository with NeuroShard (no hooks) and a dataset of `n` files tracked as one unit.
fn dataset_repo(n: usize, len: usize) -> (TestRepo, BTreeMap<String, Vec<u8>>) {
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init", "--no-hooks"]);
    let files = write_dataset(repo.path(), "data", n, len, 1);
    repo.ok(&["track", "--dir", "data"]);
    (repo, files)
}

#[test]
fn five_thousand_files_are_one_manifest_one_pattern_and_few_packs() {
    let (repo, files) = dataset_repo(5000, 4096);
    let c = &repo.json(&["commit", "-m", "v1"])[0];
    assert_eq!(c["result"], "dir-committed", "{c}");
    assert_eq!(c["files"], 5000, "{c}");
    assert_eq!(c["read"], 5000, "{c}");
    // 20 MB of small files: a handful of packs, the listing and the manifest.
    let objects = count_objects(&repo.join(".shard"));
    assert!((3..=12).contains(&objects), "{objects} objects");

    git(repo.path(), &["add", "-A"]);
    let staged = git(repo.path(), &["status", "--porcelain"]);
    let manifests: Vec<&str> = staged
        .lines()
        .filter(|l| l.ends_with(".shard.json"))
        .collect();
    assert_eq!(manifests, vec!["A  data.shard.json"], "{staged}");
    assert!(!staged.contains("data/"), "{staged}");
    let ignore = std::fs::read_to_string(repo.join(".gitignore")).expect("gitignore");
    let data_lines: Vec<&str> = ignore.lines().filter(|l| l.contains("data")).collect();
    assert_eq!(data_lines, vec!["/data/"], "{ignore}");

    // Nothing changed: clean, and a second commit reads nothing.
    let st = repo.json(&["status", "data"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[0]["files"], 5000, "{st}");
    let c = &repo.json(&["commit", "-m", "again"])[0];
    assert_eq!(c["result"], "unchanged", "{c}");

    // Push to a directory remote; a git clone pulls and checks out the same bytes.
    let remote = tempfile::tempdir().expect("remote");
    let url = remote.path().to_str().expect("utf8");
    repo.ok(&["push", "--remote", url]);
    assert_eq!(count_objects(remote.path()), objects);
    git(repo.path(), &["commit", "-q", "-m", "data v1"]);
    let clone = tempfile::tempdir().expect("clone");
    git(
        clone.path(),
        &["clone", "-q", repo.path().to_str().expect("utf8"), "b"],
    );
    let b = clone.path().join("b");
    ok(&b, &["pull", "--remote", url, "--checkout"]);
    assert_eq!(read_tree(&b, "data"), files);
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    ok(&b, &["verify"]);
}

#[test]
fn status_diff_and_a_small_second_version() {
    let (repo, mut files) = dataset_repo(600, 3000);
    repo.ok(&["commit", "-m", "v1"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    let v1 = files.clone();
    let objects_v1 = count_objects(&repo.join(".shard"));

    // 6 modified, 6 added, 6 removed.
    for i in 0..6 {
        let m = format!("data/part0/f{:05}.json", i * 10);
        let data = content(i, 99, 3000);
        repo.write(&m, &data);
        files.insert(m, data);
        let a = format!("data/new/n{i}.json");
        let data = content(i, 7, 2000);
        repo.write(&a, &data);
        files.insert(a, data);
        let r = format!("data/part{}/f{:05}.json", (i * 10 + 5) % 10, i * 10 + 5);
        std::fs::remove_file(repo.join(&r)).expect("rm");
        files.remove(&r);
    }
    let out = repo.ok(&["status", "data"]);
    assert!(
        out.contains("modified") && out.contains("6 added, 6 removed, 6 modified"),
        "{out}"
    );
    let d = repo.json(&["diff", "data/"]);
    let changes = d[0]["changes"].as_array().expect("changes");
    let kinds = |k: &str| changes.iter().filter(|c| c["kind"] == k).count();
    assert_eq!(
        (kinds("added"), kinds("removed"), kinds("modified")),
        (6, 6, 6),
        "{d}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "new/n0.json" && c["kind"] == "added"),
        "{d}"
    );
    // A subtree.
    let d = repo.json(&["diff", "data/new"]);
    assert_eq!(d[0]["changes"].as_array().expect("changes").len(), 6, "{d}");

    let c = &repo.json(&["commit", "-m", "v2"])[0];
    assert_eq!(c["result"], "dir-committed", "{c}");
    assert_eq!(
        (
            c["added"].as_u64(),
            c["removed"].as_u64(),
            c["modified"].as_u64()
        ),
        (Some(6), Some(6), Some(6)),
        "{c}"
    );
    // Only the 12 new contents were read; they went into one new pack (+ listing + manifest).
    assert_eq!(c["read"], 12, "{c}");
    assert_eq!(c["new_objects"], 3, "{c}");
    assert_eq!(count_objects(&repo.join(".shard")), objects_v1 + 3);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v2"]);
    let log = repo.ok(&["log", "data"]);
    assert!(
        log.contains("v1") && log.contains("v2") && log.contains("600 files"),
        "{log}"
    );

    // gc keeps v1's packs (git still reaches v1): going back restores v1 exactly.
    repo.ok(&["gc"]);
    repo.ok(&["verify"]);
    git(
        repo.path(),
        &["checkout", "-q", "HEAD~1", "--", "data.shard.json"],
    );
    repo.ok(&["checkout", "data"]);
    assert_eq!(read_tree(repo.path(), "data"), v1);
    git(
        repo.path(),
        &["checkout", "-q", "HEAD", "--", "data.shard.json"],
    );
    repo.ok(&["checkout", "data"]);
    assert_eq!(read_tree(repo.path(), "data"), files);
}

#[test]
fn a_server_sees_packs_and_a_subtree_pull_fetches_only_its_packs() {
    let (repo, files) = dataset_repo(5000, 4096);
    repo.ok(&["commit", "-m", "v1"]);
    let objects = count_objects(&repo.join(".shard"));
    let store = tempfile::tempdir().expect("store");
    let server = Served::start(&store.path().join("s"), &[], &[]);
    repo.ok(&["push", "--remote", &server.url]);
    let puts: u64 = server
        .metrics()
        .lines()
        .filter(|l| {
            l.starts_with("nshard_http_requests_total{route=\"/v1/objects/{id}\"")
                && l.contains("method=\"PUT\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(puts, objects as u64, "{}", server.metrics());
    assert_eq!(
        metric_value(&server.metrics(), "nshard_objects_stored_total"),
        Some(objects as u64)
    );

    let (_clone, b) = git_commit_and_clone(&repo);
    ok(&b, &["pull", "data/part3", "--remote", &server.url]);
    let fetched = count_objects(&b.join(".shard"));
    // The manifest, the listing and the packs holding part3 (a tenth of the data): not all.
    assert!(fetched < objects, "{fetched} of {objects}");
    ok(&b, &["checkout", "data/part3/"]);
    let want: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|(k, _)| k.starts_with("data/part3/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(read_tree(&b, "data"), want);
    let st = common::json(&b, &["status", "data/part3"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    // Another subtree needs its packs first.
    let err = common::fails(&b, &["checkout", "data/part7"]);
    assert!(err.contains("not in the local store"), "{err}");
    ok(&b, &["pull", "--remote", &server.url, "--checkout"]);
    assert_eq!(read_tree(&b, "data"), files);
}

#[test]
fn hostile_listings_are_refused_with_nothing_written() {
    let pack = b"hello world".to_vec();
    let cases: Vec<(&str, String, &str)> = vec![
        ("escape", r#"[{"path":"../escape","size":5,"sha256":"S","pack":[0,0]}]"#.into(), "'..'"),
        (
            "duplicate",
            r#"[{"path":"a","size":5,"sha256":"S","pack":[0,0]},{"path":"a","size":5,"sha256":"S","pack":[0,0]}]"#.into(),
            "appears twice",
        ),
        (
            "case twins",
            r#"[{"path":"A","size":5,"sha256":"S","pack":[0,0]},{"path":"a","size":5,"sha256":"S","pack":[0,0]}]"#.into(),
            "only by case",
        ),
        ("git dir", r#"[{"path":".git/hooks/x","size":5,"sha256":"S","pack":[0,0]}]"#.into(), ".git"),
        ("outside pack", r#"[{"path":"a","size":50,"sha256":"S","pack":[0,0]}]"#.into(), "outside its"),
    ];
    for (what, files, why) in cases {
        let repo = TestRepo::new();
        let remote = tempfile::tempdir().expect("remote");
        let pack_id = put_object(remote.path(), &pack);
        let sha = ObjectId::of(&pack[..5]).to_hex();
        let listing = format!(
            r#"{{"format":"neuroshard.listing/1","packs":[{{"id":"{}","size":{}}}],"files":{}}}"#,
            pack_id.to_hex(),
            pack.len(),
            files.replace("\"S\"", &format!("\"{sha}\""))
        );
        let n = files.matches("\"path\"").count();
        let size: u64 = if what == "outside pack" {
            50
        } else {
            5 * n as u64
        };
        let listing_id = put_object(remote.path(), listing.as_bytes());
        let manifest = format!(
            "{{\n  \"format\": \"neuroshard.dir/1\",\n  \"path\": \"data\",\n  \"files\": {n},\n  \"size\": {size},\n  \"listing\": \"{}\",\n  \"version\": {{\n    \"message\": \"m\",\n    \"timestamp\": \"2026-11-29T10:00:00Z\",\n    \"parent\": null\n  }}\n}}\n",
            listing_id.to_hex()
        );
        repo.write("data.shard.json", manifest.as_bytes());
        let url = remote.path().to_str().expect("utf8");
        let err = repo.fails(&["pull", "--remote", url, "--checkout"]);
        assert!(err.contains(why), "{what}: expected {why:?} in {err}");
        assert!(
            !repo.path().join("data").exists(),
            "{what}: data/ was created"
        );
        assert!(!repo
            .path()
            .parent()
            .expect("parent")
            .join("escape")
            .exists());
        let err = repo.fails(&["checkout", "data"]);
        assert!(err.contains(why), "{what}: expected {why:?} in {err}");
        assert!(
            !repo.path().join("data").exists(),
            "{what}: data/ was created"
        );
        // The store keeps no pack it was never sure it needed.
        assert!(
            !LocalStore::at(repo.join(".shard/objects"), repo.join(".shard/tmp")).has(&pack_id),
            "{what}"
        );
    }
    // A manifest claiming more files than a unit may hold is refused before any listing is read.
    let repo = TestRepo::new();
    let manifest = "{\n  \"format\": \"neuroshard.dir/1\",\n  \"path\": \"data\",\n  \"files\": 50000000,\n  \"size\": 1,\n  \"listing\": \"0000000000000000000000000000000000000000000000000000000000000000\",\n  \"version\": {\n    \"message\": \"m\",\n    \"timestamp\": \"2026-11-29T10:00:00Z\",\n    \"parent\": null\n  }\n}\n";
    repo.write("data.shard.json", manifest.as_bytes());
    let err = repo.fails(&["checkout", "data"]);
    assert!(err.contains("over the limit of 1000000"), "{err}");
}

#[test]
fn conversion_both_ways_and_the_threshold() {
    let repo = TestRepo::new();
    let files = write_dataset(repo.path(), "small", 12, 100, 3);
    repo.ok(&["track", "small"]);
    repo.ok(&["commit", "-m", "per file"]);
    assert!(repo.join("small/part0/f00000.json.shard.json").exists());
    // Into one unit: the per-file manifests inside go.
    let out = repo.ok(&["track", "--dir", "small"]);
    assert!(out.contains("as one unit"), "{out}");
    let c = &repo.json(&["commit", "-m", "unit"])[0];
    assert_eq!(c["result"], "dir-committed", "{c}");
    assert_eq!(c["converted"], 12, "{c}");
    assert!(!repo.join("small/part0/f00000.json.shard.json").exists());
    assert_eq!(read_tree(repo.path(), "small"), files);
    // And back: one manifest per file again.
    repo.ok(&["track", "--files", "small"]);
    assert!(!repo.join("small.shard.json").exists());
    repo.ok(&["commit", "-m", "per file again"]);
    assert!(repo.join("small/part0/f00000.json.shard.json").exists());
    assert_eq!(read_tree(repo.path(), "small").len(), 24);

    // `track DIR` makes a unit once the directory holds dir_threshold files.
    repo.config_line("dir_threshold = 10");
    write_dataset(repo.path(), "many", 10, 50, 4);
    write_dataset(repo.path(), "few", 9, 50, 5);
    repo.ok(&["track", "many", "few"]);
    repo.ok(&["commit", "-m", "t"]);
    assert!(repo.join("many.shard.json").exists());
    assert!(!repo.join("few.shard.json").exists());
    assert!(repo.join("few/part0/f00000.json.shard.json").exists());
}

#[test]
fn an_untracked_unit_is_no_longer_committed() {
    let repo = TestRepo::new();
    write_dataset(repo.path(), "data", 20, 100, 8);
    repo.ok(&["track", "--dir", "data"]);
    repo.ok(&["commit", "-m", "v1"]);
    let v1 = repo.read("data.shard.json");
    let out = repo.ok(&["untrack", "data"]);
    assert!(out.contains("untracked data/"), "{out}");
    repo.write("data/part0/f00000.json", b"changed");
    let c = repo.json(&["commit", "-m", "v2"]);
    assert_eq!(c.as_array().map(Vec::len), Some(0), "{c}");
    assert_eq!(repo.read("data.shard.json"), v1);
    let err = repo.fails(&["commit", "-m", "v2", "data"]);
    assert!(
        err.contains("data: is not tracked as a directory unit"),
        "{err}"
    );
    assert!(
        err.contains("hint: run `nshard track --dir data` first"),
        "{err}"
    );
    // Its manifest is still there: status shows it, and its files stay out of per-file tracking.
    let st = repo.json(&["status", "data"]);
    assert_eq!(st[0]["state"], "modified", "{st}");
}

#[test]
fn the_walk_of_a_unit_refuses_links_and_unsafe_names_and_skips_temporaries() {
    let (repo, files) = dataset_repo(30, 100);
    repo.ok(&["commit", "-m", "v1"]);
    // An interrupted writer's temporary file and a stray manifest are not files of the unit.
    repo.write("data/part1/.nshard-tmp-123", b"partial");
    repo.write("data/part1/x.bin.shard.json", b"{}");
    let st = repo.json(&["status", "data"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[0]["files"], files.len(), "{st}");
    std::fs::remove_file(repo.join("data/part1/x.bin.shard.json")).expect("rm");
    let unsafe_names = [
        ("data/part2/a:b", "contains ':'"),
        ("data/part2/CON", "reserved device name"),
        ("data/sub/dir./f", "ends with '.'"),
        ("data/back\\slash", "backslash"),
    ];
    for (name, why) in unsafe_names {
        repo.write(name, b"x");
        for cmd in [&["status", "data"][..], &["commit", "-m", "bad"][..]] {
            let err = repo.fails(cmd);
            assert!(
                err.contains(why),
                "{name} {cmd:?}: expected {why:?} in {err}"
            );
        }
        let top = name.split('/').take(3).collect::<Vec<_>>().join("/");
        let p = repo.join(&top);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm");
        } else {
            std::fs::remove_file(&p).expect("rm");
        }
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc", repo.join("data/part3/link")).expect("symlink");
        let err = repo.fails(&["status", "data"]);
        assert!(err.contains("regular files only"), "{err}");
    }
}

/// A unit checked out in part (`nshard checkout data/part3/` in a fresh clone): the other files
/// are not checked out, not removed, and a commit keeps them; a file nshard wrote here and that
/// was deleted is a removal.
#[test]
fn a_unit_checked_out_in_part_keeps_the_other_files() {
    let (repo, files) = dataset_repo(40, 512);
    repo.ok(&["commit", "-m", "v1"]);
    let (_remote, url, _clone, b) = clone_with_part_checked_out(&repo, "data/part3/");
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[0]["not_checked_out"], 36, "{st}");
    let text = ok(&b, &["status"]);
    assert!(
        text.contains("4 files unchanged; 36 files not checked out: `nshard checkout data/`"),
        "{text}"
    );
    let same = ok(&b, &["commit", "-m", "nothing changed"]);
    assert!(same.contains("unchanged"), "{same}");
    // A file checked out here and then deleted is removed; the others stay as committed.
    std::fs::remove_file(b.join("data/part3/f00003.json")).expect("delete");
    let st = common::json(&b, &["status"]);
    assert_eq!(st[0]["state"], "modified", "{st}");
    assert_eq!(st[0]["changes"].as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(st[0]["changes"][0]["kind"], "removed", "{st}");
    let committed = ok(&b, &["commit", "-m", "drop one file"]);
    assert!(
        committed.contains("39 files: 0 added, 1 removed"),
        "{committed}"
    );
    ok(&b, &["pull", "--remote", &url, "--checkout"]);
    let mut want = files.clone();
    want.remove("data/part3/f00003.json");
    assert_eq!(read_tree(&b, "data"), want);
}

/// `status --remote` checks directory units too: a unit that was never pushed is reported as
/// lacking, and once pushed, on the remote.
#[test]
fn status_remote_checks_units() {
    let (repo, _) = dataset_repo(30, 512);
    repo.write("m.bin", &random_bytes(100_000, 5));
    repo.ok(&["track", "m.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let remote = tempfile::tempdir().expect("remote");
    let url = remote.path().to_str().expect("utf8").to_string();
    repo.ok(&["push", "m.bin", "--remote", &url]);
    let unit = unit_row(&repo.json(&["status", "--remote", &url]));
    assert!(
        unit["remote"]["missing_objects"].as_u64() > Some(0),
        "{unit}"
    );
    let text = repo.ok(&["status", "--remote", &url]);
    assert!(text.contains("lacks 1 of 2 committed versions"), "{text}");
    repo.ok(&["push", "--remote", &url]);
    let unit = unit_row(&repo.json(&["status", "--remote", &url]));
    assert_eq!(unit["remote"]["missing_objects"], 0, "{unit}");
    let text = repo.ok(&["status", "--remote", &url]);
    assert!(
        text.contains("has every committed version (1 file, 1 directory unit)"),
        "{text}"
    );
}

/// `mv` and `rm` work on single tracked files: given a unit, or a path inside one (either end of
/// a move), they say so and change nothing.
#[test]
fn mv_and_rm_refuse_units_and_paths_inside_them() {
    let (repo, files) = dataset_repo(20, 256);
    repo.write("m.bin", &random_bytes(50_000, 6));
    repo.ok(&["track", "m.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let manifest = repo.read("m.bin.shard.json");
    for (args, want) in [
        (vec!["mv", "data/", "dataset/"], "data is a directory unit"),
        (
            vec!["mv", "m.bin", "data/part1/m.bin"],
            "data/part1/m.bin is inside the directory unit data/",
        ),
        (
            vec!["mv", "data/part1/f00001.json", "f.json"],
            "is inside the directory unit data/",
        ),
        (vec!["rm", "data"], "`nshard untrack data/`"),
        (vec!["rm", "--cached", "data"], "is a directory unit"),
        (
            vec!["rm", "data/part1/f00001.json"],
            "is inside the directory unit data/",
        ),
    ] {
        let err = repo.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("unknown format"), "{args:?}: {err}");
    }
    assert!(repo.read("m.bin.shard.json") == manifest);
    assert_eq!(read_tree(repo.path(), "data"), files);
    let st = repo.json(&["status"]);
    assert!(
        st.as_array()
            .expect("rows")
            .iter()
            .all(|r| r["state"] == "unchanged"),
        "{st}"
    );
}

/// Commits everything in `repo` with git and clones it: (the clone's temporary directory, the
/// clone `b` in it).
fn git_commit_and_clone(repo: &TestRepo) -> (tempfile::TempDir, std::path::PathBuf) {
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "data"]);
    let clone = tempfile::tempdir().expect("clone");
    git(
        clone.path(),
        &["clone", "-q", repo.path().to_str().expect("utf8"), "b"],
    );
    let b = clone.path().join("b");
    (clone, b)
}

/// `repo` pushed to a fresh directory remote and cloned with git, the clone holding only `part`
/// of the unit (pulled and checked out): (the remote, its URL, the clone's directory, the clone).
fn clone_with_part_checked_out(
    repo: &TestRepo,
    part: &str,
) -> (
    tempfile::TempDir,
    String,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let remote = tempfile::tempdir().expect("remote");
    let url = remote.path().to_str().expect("utf8").to_string();
    repo.ok(&["push", "--remote", &url]);
    let (clone, b) = git_commit_and_clone(repo);
    ok(&b, &["pull", part, "--remote", &url]);
    ok(&b, &["checkout", part]);
    (remote, url, clone, b)
}

/// The row of unit `data` in `status --json` output.
fn unit_row(st: &serde_json::Value) -> serde_json::Value {
    st.as_array()
        .expect("rows")
        .iter()
        .find(|r| r["path"] == "data")
        .expect("the unit's row")
        .clone()
}

/// Files whose manifests are in git, converted to a unit: the commit removes their manifests
/// (git then stages their deletion) and commits them neither as files nor again later.
#[test]
fn files_in_git_converted_to_a_unit_are_committed_only_by_the_unit() {
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init", "--no-hooks"]);
    let files = write_dataset(repo.path(), "small", 12, 100, 3);
    repo.ok(&["track", "--files", "small"]);
    repo.ok(&["commit", "-m", "per file"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "per file"]);
    repo.ok(&["track", "--dir", "small"]);
    let c = repo.json(&["commit", "-m", "unit"]);
    let rows = c.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "the unit only: {c:#}");
    assert_eq!(rows[0]["converted"], 12, "{c:#}");
    assert!(!repo.join("small/part0/f00000.json.shard.json").exists());
    let again = repo.json(&["commit", "-m", "again"]);
    assert!(
        again
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["result"] == "unchanged"),
        "{again:#}"
    );
    git(repo.path(), &["add", "-A"]);
    let staged = git(repo.path(), &["diff", "--cached", "--name-status"]);
    let deleted = staged.lines().filter(|l| l.starts_with('D')).count();
    assert_eq!(deleted, 12, "{staged}");
    assert!(staged.contains("A\tsmall.shard.json"), "{staged}");
    assert_eq!(read_tree(repo.path(), "small"), files);
}

/// `nshard commit PATH` inside a unit records only that file or subdirectory, as
/// `git commit PATH` does; the unit's other changes stay uncommitted. Without the committed
/// listing (a clone that never pulled the unit) it says how to get it.
#[test]
fn committing_a_path_inside_a_unit_records_only_that_path() {
    let (repo, files) = dataset_repo(30, 256);
    repo.ok(&["commit", "-m", "v1"]);
    let changed = |st: &serde_json::Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = unit_row(st)["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                (
                    format!("data/{}", c["path"].as_str().expect("path")),
                    c["kind"].as_str().expect("kind").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let pair = |p: &str, k: &str| (p.to_string(), k.to_string());
    let (a, b, gone) = (
        "data/part1/f00001.json",
        "data/part2/f00002.json",
        "data/part3/f00003.json",
    );
    repo.write(a, b"edited a");
    repo.write(b, b"edited b");
    std::fs::remove_file(repo.join(gone)).expect("rm");
    repo.write("data/part1/new.json", b"new");
    let out = repo.ok(&["commit", a, "-m", "only a"]);
    assert!(out.contains("0 added, 0 removed, 1 modified"), "{out}");
    assert_eq!(
        changed(&repo.json(&["status"])),
        vec![
            pair("data/part1/new.json", "added"),
            pair(b, "modified"),
            pair(gone, "removed"),
        ]
    );
    // A subdirectory, from inside it: its new file goes in, the rest still waits.
    let out = common::ok(&repo.join("data/part1"), &["commit", ".", "-m", "part1"]);
    assert!(out.contains("1 added, 0 removed, 0 modified"), "{out}");
    // A path that matches nothing is an error, as for `git commit PATH`.
    let err = repo.fails(&["commit", "data/part1/typo.json", "-m", "typo"]);
    assert!(err.contains("matches no file of data/"), "{err}");
    // A removed file can be named.
    let out = repo.ok(&["commit", gone, "-m", "drop"]);
    assert!(out.contains("0 added, 1 removed, 0 modified"), "{out}");
    assert_eq!(changed(&repo.json(&["status"])), vec![pair(b, "modified")]);
    // What was committed is exactly that: the work tree back at the unit's version differs
    // from the files first written only where the commits said.
    repo.write(b, &files[b]);
    let st = repo.json(&["status"]);
    assert_eq!(unit_row(&st)["state"], "unchanged", "{st}");
    let mut want = files.clone();
    want.insert(a.to_string(), b"edited a".to_vec());
    want.insert("data/part1/new.json".to_string(), b"new".to_vec());
    want.remove(gone);
    let remote = tempfile::tempdir().expect("remote");
    let url = remote.path().to_str().expect("utf8").to_string();
    repo.ok(&["push", "--remote", &url]);
    let (_clone, c) = git_commit_and_clone(&repo);
    // Without the unit's listing, part of it cannot be committed.
    std::fs::create_dir_all(c.join("data/part1")).expect("mkdir");
    std::fs::write(c.join(a), b"edited in the clone").expect("write");
    let err = common::fails(&c, &["commit", a, "-m", "x"]);
    assert!(err.contains("`nshard pull data/`"), "{err}");
    std::fs::remove_file(c.join(a)).expect("rm");
    ok(&c, &["pull", "--remote", &url, "--checkout"]);
    assert_eq!(read_tree(&c, "data"), want);
}

/// A clone that never pulled a unit cannot know which files its committed version holds: a plain
/// commit leaves the unit as committed (it used to commit an empty version, which colleagues'
/// hooks then applied as a deletion), and a commit of files written there is refused with the way
/// out.
#[test]
fn a_unit_not_pulled_is_never_committed_without_its_files() {
    let (repo, _) = dataset_repo(20, 256);
    repo.ok(&["commit", "-m", "v1"]);
    let (_clone, c) = git_commit_and_clone(&repo);
    let manifest = std::fs::read(c.join("data.shard.json")).expect("manifest");
    let out = ok(&c, &["commit", "-m", "nothing here"]);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(
        std::fs::read(c.join("data.shard.json")).expect("manifest"),
        manifest
    );
    std::fs::create_dir_all(c.join("data/part9")).expect("mkdir");
    std::fs::write(c.join("data/part9/new.json"), b"{}").expect("write");
    let err = common::fails(&c, &["commit", "-m", "one new file"]);
    assert!(
        err.contains("committed listing is not in the local store")
            && err.contains("`nshard pull data/`"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(c.join("data.shard.json")).expect("manifest"),
        manifest
    );
}

/// In a clone that checked out part of a unit, a file written where a directory of the part not
/// checked out is cannot be committed beside it: the listing would be one readers refuse. The
/// commit says why and writes nothing.
#[test]
fn a_commit_that_would_clash_with_files_kept_as_committed_is_refused() {
    let (repo, _) = dataset_repo(20, 256);
    repo.ok(&["commit", "-m", "v1"]);
    let (_remote, _url, _clone, c) = clone_with_part_checked_out(&repo, "data/part1/");
    let manifest = std::fs::read(c.join("data.shard.json")).expect("manifest");
    std::fs::write(c.join("data/part2"), b"a file where a directory is").expect("write");
    for args in [
        vec!["commit", "-m", "clash"],
        vec!["commit", "-m", "clash", "data/part2"],
    ] {
        let err = common::fails(&c, &args);
        assert!(
            err.contains("is a file and also a directory of") && err.contains("keeps"),
            "{args:?}: {err}"
        );
        assert_eq!(
            std::fs::read(c.join("data.shard.json")).expect("manifest"),
            manifest
        );
    }
    std::fs::remove_file(c.join("data/part2")).expect("rm");
    let st = common::json(&c, &["status"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
}

/// A file of a unit named by itself is checked out like a directory of it: an edit there is an
/// uncommitted change, never overwritten without --force, and `status` of it sees the edit.
#[test]
fn a_file_of_a_unit_named_alone_keeps_its_edits() {
    let (repo, files) = dataset_repo(10, 256);
    repo.ok(&["commit", "-m", "v1"]);
    let f = "data/part1/f00001.json";
    repo.write(f, b"my edit");
    let st = repo.json(&["status", f]);
    assert_eq!(st[0]["state"], "modified", "{st}");
    let err = repo.fails(&["checkout", f]);
    assert!(
        err.contains("local changes that are not committed"),
        "{err}"
    );
    assert_eq!(repo.read(f), b"my edit");
    repo.ok(&["checkout", "--force", f]);
    assert_eq!(repo.read(f), files[f]);
    // A path of the unit that matches nothing (a typo) is an error, not "0 files written".
    let err = repo.fails(&["checkout", "data/part1/f00001.jsno"]);
    assert!(err.contains("matches no file of data/"), "{err}");
}

/// `checkout --version` of another version carries over an edit of a file the two versions
/// hold alike, as `git checkout` does, and writes the rest; an edit of a file the versions hold
/// differently refuses the whole checkout with nothing written; `checkout` without `--version`
/// of the version an edit was made on is a restore, which takes `--force`.
#[test]
fn a_checkout_of_another_version_carries_edits_over() {
    let (repo, files) = dataset_repo(10, 256);
    repo.ok(&["commit", "-m", "v1"]);
    let (x, y) = ("data/part0/f00000.json", "data/part1/f00001.json");
    repo.write(x, b"x in v2");
    repo.ok(&["commit", "-m", "v2"]);
    let v1 = repo.json(&["log", "data/"])["data"][1]["version"]
        .as_str()
        .expect("v1")
        .to_string();

    repo.write(y, b"my edit");
    let err = repo.fails(&["checkout", "data/"]);
    assert!(
        err.contains("data/part1/f00001.json has local changes"),
        "{err}"
    );
    let out = repo.json(&["checkout", "data/", "--version", &v1[..12]]);
    let c = &out[0]["outcome"];
    assert_eq!(c["written"], 1, "{out:#}");
    assert_eq!(c["edits_kept"], serde_json::json!([y]), "{out:#}");
    assert_eq!(repo.read(x), files[x]);
    assert_eq!(repo.read(y), b"my edit");
    // Again: the edit stays (only `checkout` without `--version` asks for a file back).
    let text = repo.ok(&["checkout", "data/", "--version", &v1[..12]]);
    assert!(text.contains("kept your edits to 1 file"), "{text}");
    assert_eq!(repo.read(y), b"my edit");

    // Back to v2 with x edited too: v2 holds other bytes for x, so nothing is written.
    repo.write(x, b"my x");
    let err = repo.fails(&["checkout", "data/"]);
    assert!(
        err.contains("data/part0/f00000.json has local changes"),
        "{err}"
    );
    assert_eq!(repo.read(x), b"my x");
    assert_eq!(repo.read(y), b"my edit");
    // Without the edit of x, the move to v2 writes x and keeps y's edit, saying so.
    repo.write(x, &files[x]);
    let text = repo.ok(&["checkout", "data/"]);
    assert!(
        text.contains("kept your edits to 1 file (data/part1/f00001.json)"),
        "{text}"
    );
    assert_eq!(repo.read(x), b"x in v2");
    assert_eq!(repo.read(y), b"my edit");
    repo.ok(&["checkout", "--force", "data/"]);
    assert_eq!(repo.read(y), files[y]);
}

/// A file of a unit whose execute bit changes, and nothing else: status and diff show it
/// modified, commit counts it as modified (the listing records the bit), and `diff --from` the
/// version before names it, as git shows a mode change.
#[cfg(unix)]
#[test]
fn a_mode_change_in_a_unit_is_a_change() {
    use std::os::unix::fs::PermissionsExt;
    let (repo, _) = dataset_repo(20, 500);
    repo.ok(&["commit", "-m", "v1"]);
    let path = repo.join("data/part3/f00003.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let row = unit_row(&repo.json(&["status"]));
    assert_eq!(row["state"], "modified", "{row:#}");
    let d = repo.json(&["diff", "data/"]);
    let changes = d[0]["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{d:#}");
    assert_eq!(changes[0]["path"], "part3/f00003.json", "{d:#}");
    assert_eq!(changes[0]["kind"], "modified", "{d:#}");
    let c = &repo.json(&["commit", "-m", "v2"])[0];
    assert_eq!(c["modified"], 1, "{c}");
    assert_eq!(unit_row(&repo.json(&["status"]))["state"], "unchanged");
    let v1 = repo.json(&["log", "data/"])["data"][1]["version"]
        .as_str()
        .expect("v1")
        .to_string();
    let d = repo.json(&["diff", "data/", "--from", &v1]);
    let changes = d[0]["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{d:#}");
    assert_eq!(changes[0]["kind"], "modified", "{d:#}");
}
