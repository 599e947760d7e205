//! Behaviours the README and `--help` promise, each checked on the real binary: names of states,
//! help texts that match what the commands do, counts in human output.

mod common;

use std::fs;

use common::{random_bytes, TestRepo};
use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;

/// `status --help`, the README and `status --json` use the same name for an invalid manifest, and
/// status exits 1 as documented.
#[test]
fn an_invalid_manifest_is_state_invalid_with_exit_status_1() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(10_000, 1));
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    repo.write(
        "a.bin.shard.json",
        b"{\"format\": \"neuroshard.manifest/1\"}",
    );
    let st = repo.json_exit(&["status"], 1);
    assert_eq!(st[0]["state"], "invalid", "{st}");
    let help = repo.ok(&["status", "--help"]);
    assert!(
        help.contains("invalid (the manifest fails validation)"),
        "{help}"
    );
    let out = common::nshard(repo.path())
        .arg("status")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("invalid "), "{text}");
}

/// `checkout --help` says which state `status` shows after `checkout --version`.
#[test]
fn checkout_help_names_the_state_status_reports_after_checkout_version() {
    let repo = TestRepo::new();
    let mut data = random_bytes(10_000, 2);
    repo.write("a.bin", &data);
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let v1 = ObjectId::of(&repo.read("a.bin.shard.json")).to_hex();
    data[0] ^= 1;
    repo.write("a.bin", &data);
    repo.ok(&["commit", "-m", "v2"]);
    repo.ok(&["checkout", "a.bin", "--version", &v1[..8]]);
    let st = repo.json(&["status"]);
    let state = st[0]["state"].as_str().expect("state").to_string();
    assert_eq!(state, "outdated", "{st}");
    let help = repo.ok(&["checkout", "--help"]);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("`nshard status` shows the file {state}")),
        "{help}"
    );
    assert!(flat.contains("nshard commit --force"), "{help}");
}

/// Counts of one are singular in commit, push, pull and status output.
#[test]
fn one_chunk_is_one_chunk_not_1_chunks() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(5_000, 3));
    repo.ok(&["track", "a.bin"]);
    let out = repo.ok(&["commit", "-m", "v1"]);
    assert!(out.contains(" in 1 chunk: 1 new, 0 reused"), "{out}");
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let out = repo.ok(&["push", "--remote", url]);
    assert!(out.contains("(1 chunk)"), "{out}");
    // Drop the chunk locally: status counts it, pull brings it back.
    let m: serde_json::Value =
        serde_json::from_slice(&repo.read("a.bin.shard.json")).expect("manifest");
    let id = m["chunks"][0]["id"].as_str().expect("id");
    fs::remove_file(repo.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..])))
        .expect("rm chunk");
    let out = repo.ok(&["status"]);
    assert!(out.contains("(1 chunk not in the local store"), "{out}");
    let out = repo.ok(&["pull", "--remote", url]);
    assert!(out.contains("(1 chunk)"), "{out}");
    // A one-chunk file changed: "0 of 1 chunk reused".
    repo.write("a.bin", &random_bytes(5_000, 4));
    let out = repo.ok(&["diff", "a.bin"]);
    assert!(out.contains("blocks: 0 of 1 chunk reused"), "{out}");
}

/// `**` in a quoted glob crosses directories; `.git/` is refused like `.shard/`; `--json`.
#[test]
fn track_double_star_and_refusals() {
    let repo = TestRepo::new();
    common::git(repo.path(), &["init", "-q"]);
    repo.write("d/a.safetensors", b"1");
    repo.write("d/x/y/b.safetensors", b"2");
    repo.write("d/x/c.bin", b"3");
    let t = repo.json(&["track", "d/**/*.safetensors"]);
    assert_eq!(
        t,
        serde_json::json!([{"result": "added", "entry": "d/**/*.safetensors", "files": 2}]),
        "{t}"
    );
    repo.ok(&["commit", "-m", "c"]);
    let st = repo.json(&["status"]);
    let paths: Vec<&str> = st
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["d/a.safetensors", "d/x/y/b.safetensors"], "{st}");
    for arg in [".git/config", ".git", "d/../.git/HEAD"] {
        let err = repo.fails(&["track", arg]);
        assert!(err.contains(".git"), "{arg}: {err}");
    }
    let again = repo.json(&["track", "d/**/*.safetensors"]);
    assert_eq!(again[0]["result"], "already-tracked", "{again}");
}

/// `untrack` removes the entry only: data files, manifests and objects stay; `--json`.
#[test]
fn untrack_leaves_data_manifests_and_objects() {
    let repo = TestRepo::new();
    let data = random_bytes(300_000, 5);
    repo.write("a.bin", &data);
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let manifest = repo.read("a.bin.shard.json");
    let chunks = repo.chunk_ids("a.bin");
    let u = repo.json(&["untrack", "a.bin"]);
    assert_eq!(
        u,
        serde_json::json!([{"result": "removed", "entry": "a.bin"}]),
        "{u}"
    );
    assert_eq!(repo.read("a.bin"), data);
    assert_eq!(repo.read("a.bin.shard.json"), manifest);
    assert!(chunks.iter().all(|id| repo.object_path(id).is_file()));
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["tracked"], false, "{st}");
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    let config = String::from_utf8(repo.read(".shard/config.toml")).expect("utf8");
    assert!(!config.contains("a.bin"), "{config}");
}

/// `commit -m MSG PATH…` commits only the named files.
#[test]
fn commit_with_paths_commits_only_those_files() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(50_000, 6));
    repo.write("b.bin", &random_bytes(50_000, 7));
    repo.ok(&["track", "a.bin", "b.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let b_manifest = repo.read("b.bin.shard.json");
    repo.write("a.bin", &random_bytes(50_000, 8));
    repo.write("b.bin", &random_bytes(50_000, 9));
    let r = repo.json(&["commit", "-m", "only a", "a.bin"]);
    assert_eq!(r.as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(
        (r[0]["path"].as_str(), r[0]["result"].as_str()),
        (Some("a.bin"), Some("committed"))
    );
    assert_eq!(
        repo.read("b.bin.shard.json"),
        b_manifest,
        "b.bin was committed"
    );
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[1]["state"], "modified", "{st}");
    let log = repo.json(&["log", "a.bin"]);
    assert_eq!(log[0]["message"], "only a", "{log}");
}

/// Files whose size, mtime and inode are unchanged are not read again: the commit does not even
/// open them (seen with strace), while a touched file is read.
#[test]
fn commit_does_not_reread_unchanged_files() {
    if !common::strace_works("commit_does_not_reread_unchanged_files") {
        return;
    }
    let repo = TestRepo::new();
    let data = random_bytes(2 << 20, 10);
    repo.write("a.bin", &data);
    // Dated well in the past, so the stat cache never distrusts the entry as "racy" (a file
    // modified within moments of being read is always re-read, whatever the machine's speed).
    fs::File::options()
        .write(true)
        .open(repo.join("a.bin"))
        .expect("open")
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .expect("set mtime");
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let trace = repo.join("trace");
    let opened = |label: &str| {
        let st = std::process::Command::new("strace")
            .args(["-f", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .arg(assert_cmd::cargo::cargo_bin("nshard"))
            .args(["commit", "-m", label])
            .current_dir(repo.path())
            .output()
            .expect("strace runs");
        assert!(st.status.success(), "{label}: {st:?}");
        let t = fs::read_to_string(&trace).expect("trace");
        t.lines().any(|l| l.contains("/a.bin\""))
    };
    assert!(!opened("unchanged"), "an unchanged file was opened");
    // Same bytes, new mtime: now it is read (and found unchanged).
    repo.write("a.bin", &data);
    assert!(opened("touched"), "a touched file was not read");
}

/// `verify` re-hashes every object but only looks up the chunks of older versions;
/// `--all-versions` rebuilds them too, and catches an old version whose intact chunks do not make
/// the file it describes.
#[test]
fn verify_all_versions_catches_a_corrupt_old_version() {
    let repo = TestRepo::new();
    let mut data = random_bytes(300_000, 11);
    repo.write("a.bin", &data);
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    // An old version whose whole-file hash is wrong (every object in the store stays intact).
    let v1 = String::from_utf8(repo.read("a.bin.shard.json")).expect("utf8");
    let m: serde_json::Value = serde_json::from_str(&v1).expect("json");
    let sha = m["sha256"].as_str().expect("sha");
    // (Only the `sha256` field: a one-chunk file's chunk id is the same hash.)
    let field = format!("\"sha256\": \"{sha}\"");
    assert!(v1.contains(&field), "{v1}");
    let bad_v1 = v1.replace(&field, &format!("\"sha256\": \"{}\"", "0".repeat(64)));
    let bad_id = ObjectId::of(bad_v1.as_bytes());
    let enc = Encoder::new().encode(bad_v1.as_bytes(), DataHint::Unknown);
    let p = repo.object_path(&bad_id.to_hex());
    fs::create_dir_all(p.parent().expect("fan-out dir")).expect("mkdir");
    fs::write(&p, enc).expect("store the old version");
    data[0] ^= 1;
    repo.write("a.bin", &data);
    repo.ok(&["commit", "-m", "v2"]);
    // v2's parent is made the bad old version.
    let v2 = String::from_utf8(repo.read("a.bin.shard.json")).expect("utf8");
    let parent = ObjectId::of(v1.as_bytes()).to_hex();
    assert!(v2.contains(&parent));
    repo.write(
        "a.bin.shard.json",
        v2.replace(&parent, &bad_id.to_hex()).as_bytes(),
    );
    let v = repo.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let v = repo.json_exit(&["verify", "--all-versions"], 1);
    assert_eq!(v["versions_rebuilt"], 1, "{v}");
    let p = &v["problems"][0];
    assert_eq!(p["kind"], "file-hash-mismatch", "{v}");
    assert_eq!(p["version"], bad_id.to_hex().as_str(), "{v}");
}

/// Progress bars show on a terminal, and `-q` turns them off (`script` gives the command a
/// terminal).
#[test]
fn quiet_turns_progress_bars_off_on_a_terminal() {
    if !common::tool_works(
        "quiet_turns_progress_bars_off",
        "script",
        &["-qec", "true", "/dev/null"],
    ) {
        return;
    }
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(24 << 20, 13));
    repo.ok(&["track", "a.bin"]);
    let bin = assert_cmd::cargo::cargo_bin("nshard");
    let on_a_terminal = |args: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
            .current_dir(repo.path())
            .output()
            .expect("script runs");
        assert!(out.status.success(), "{args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let loud = on_a_terminal("commit -m v1");
    assert!(
        loud.contains("MiB/s"),
        "no progress bar on a terminal: {loud}"
    );
    repo.write("a.bin", &random_bytes(24 << 20, 14));
    let quiet = on_a_terminal("-q commit -m v2");
    assert!(
        !quiet.contains("MiB/s") && !quiet.contains("\u{1b}["),
        "{quiet:?}"
    );
    // -q also silences per-file lines; the summary still prints.
    assert!(!quiet.contains("a.bin: committed version"), "{quiet}");
    assert!(quiet.contains("1 committed"), "{quiet}");
}

/// `checkout --json`: one entry per file, with its result.
#[test]
fn checkout_json_reports_each_file() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(20_000, 15));
    repo.write("b.bin", &random_bytes(20_000, 16));
    repo.ok(&["track", "a.bin", "b.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let va = ObjectId::of(&repo.read("a.bin.shard.json")).to_hex();
    fs::remove_file(repo.join("a.bin")).expect("rm");
    let c = repo.json(&["checkout"]);
    assert_eq!(c[0]["path"], "a.bin", "{c}");
    assert_eq!(c[0]["result"], "written", "{c}");
    assert_eq!(c[0]["version"], va.as_str(), "{c}");
    assert_eq!(c[0]["size"], 20_000, "{c}");
    assert_eq!(c[1]["path"], "b.bin", "{c}");
    assert_eq!(c[1]["result"], "up-to-date", "{c}");
    // A failure is reported per file, with exit status 1.
    repo.write("b.bin", b"local edit");
    let c = repo.json_exit(&["checkout"], 1);
    assert_eq!(c[0]["result"], "up-to-date", "{c}");
    assert!(
        c[1]["error"]
            .as_str()
            .expect("error")
            .contains("local changes"),
        "{c}"
    );
}

/// A manifest over 128 MiB is refused before it is parsed: status says invalid (exit 1),
/// checkout writes nothing.
#[test]
fn a_manifest_over_128_mib_is_refused() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(10_000, 17));
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    fs::remove_file(repo.join("a.bin")).expect("rm");
    // The real manifest, padded with whitespace (still valid JSON) to one byte over the limit.
    let mut m = repo.read("a.bin.shard.json");
    m.resize((128 << 20) + 1, b' ');
    repo.write("a.bin.shard.json", &m);
    let st = repo.json_exit(&["status"], 1);
    assert_eq!(st[0]["state"], "invalid", "{st}");
    let reason = st[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("larger than the 134217728-byte limit"),
        "{reason}"
    );
    let err = repo.fails(&["checkout"]);
    assert!(err.contains("134217728-byte limit"), "{err}");
    assert!(!repo.join("a.bin").exists());
    // One byte less is within the limit: the same manifest checks out.
    m.pop();
    repo.write("a.bin.shard.json", &m);
    repo.ok(&["checkout"]);
    assert!(repo.join("a.bin").is_file());
}
