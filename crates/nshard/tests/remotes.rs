//! Remotes, push and pull through a directory remote, driven through the real `nshard` binary.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::ObjectId;

/// Rewrites the repository's chunking to fixed blocks of `size` bytes (many small objects make a
/// transfer long enough to interrupt and cheap to reason about).
fn fixed_chunks(repo: &TestRepo, size: u32) {
    let p = repo.join(".shard/config.toml");
    let text = fs::read_to_string(&p).expect("config");
    let start = text.find("[chunking]").expect("chunking table");
    let rest = &text[start + 1..];
    let end = rest.find("\n[").map_or(text.len(), |i| start + 1 + i + 1);
    let new = format!(
        "{}[chunking]\nalgorithm = \"fixed\"\nsize = {size}\n\n{}",
        &text[..start],
        &text[end..]
    );
    fs::write(&p, new).expect("write config");
}

/// An empty directory to use as a remote.
fn remote_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A "clone" of `src` as git would make it: `.shard/config.toml` and every `*.shard.json`
/// manifest, no data and no objects.
fn clone_of(src: &TestRepo) -> TestRepo {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join(".shard")).expect("mkdir");
    fs::copy(
        src.join(".shard/config.toml"),
        dir.path().join(".shard/config.toml"),
    )
    .expect("copy config");
    copy_manifests(src.path(), src.path(), dir.path());
    TestRepo { dir }
}

fn copy_manifests(root: &Path, dir: &Path, dest_root: &Path) {
    for ent in fs::read_dir(dir).expect("ls") {
        let ent = ent.expect("entry");
        let p = ent.path();
        let name = ent.file_name().to_string_lossy().to_string();
        if ent.file_type().expect("type").is_dir() {
            if name != ".shard" && name != ".git" {
                copy_manifests(root, &p, dest_root);
            }
        } else if name.ends_with(".shard.json") {
            let rel = p.strip_prefix(root).expect("inside");
            let d = dest_root.join(rel);
            fs::create_dir_all(d.parent().expect("parent")).expect("mkdir");
            fs::copy(&p, d).expect("copy manifest");
        }
    }
}

/// The store in a remote directory.
fn remote_store(dir: &Path) -> LocalStore {
    LocalStore::at(dir.join("objects"), dir.join("tmp"))
}

/// Decodes and re-hashes every object in a remote directory; returns how many there are.
fn verify_remote(dir: &Path) -> usize {
    let s = remote_store(dir);
    let ids = s.list().expect("list remote");
    for id in &ids {
        s.get(id, MAX_OBJECT_SIZE)
            .unwrap_or_else(|e| panic!("remote object {id} is bad: {e}"));
    }
    ids.len()
}

fn count_objects(dir: &Path) -> usize {
    remote_store(dir).list().expect("list").len()
}

/// A repository with one committed random file `models/m.bin` and a default remote `origin`.
fn committed(remote: &Path, size: usize, seed: u64) -> TestRepo {
    let r = TestRepo::new();
    r.write("models/m.bin", &random_bytes(size, seed));
    r.ok(&["track", "models/m.bin"]);
    r.ok(&["commit", "-m", "v1"]);
    if remote.is_dir() {
        r.ok(&["remote", "add", "origin", remote.to_str().expect("utf8")]);
    } else {
        // A remote that is gone, or was mistyped in a config nshard did not write (remote add
        // refuses a directory that does not exist).
        let cfg = r.join(".shard/config.toml");
        let text = fs::read_to_string(&cfg).expect("config");
        let url = remote.to_str().expect("utf8");
        fs::write(
            &cfg,
            format!("default_remote = \"origin\"\n{text}\n[[remote]]\nname = \"origin\"\nurl = {url:?}\n"),
        )
        .expect("config");
    }
    r
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn seed_workflow_push_then_clone_pull_checkout() {
    let remote = remote_dir();
    let a = TestRepo::new();
    let data = random_bytes(9 << 20, 1);
    a.write("models/resnet50.pth", &data);
    a.ok(&["track", "models/resnet50.pth"]);
    a.ok(&["commit", "-m", "Initial checkpoint"]);
    let url = remote.path().to_str().expect("utf8");
    a.ok(&["remote", "add", "origin", url]);
    let out = a.ok(&["push"]);
    assert!(out.contains("push to"), "{out}");
    assert!(out.contains("sent "), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&a.read("models/resnet50.pth.shard.json")).expect("manifest");
    let chunks = manifest["chunks"].as_array().expect("chunks").len();
    let n = verify_remote(remote.path());
    assert_eq!(
        n,
        chunks + 1,
        "chunks and the manifest object are on the remote"
    );

    // Pushing again sends nothing.
    let again = a.json(&["push"]);
    assert_eq!(num(&again, "objects"), 0, "{again}");
    assert_eq!(num(&again, "skipped") as usize, n);

    let b = clone_of(&a);
    let out = b.ok(&["pull", "models/resnet50.pth.shard.json"]);
    assert!(out.contains("received"), "{out}");
    b.ok(&["checkout", "models/resnet50.pth.shard.json"]);
    assert!(b.read("models/resnet50.pth") == data, "byte-for-byte");
    let st = b.ok(&["status"]);
    assert!(st.contains("unchanged"), "{st}");
}

#[test]
fn second_version_sends_only_changed_chunks() {
    let remote = remote_dir();
    let a = TestRepo::new();
    fixed_chunks(&a, 64 * 1024);
    let mut data = random_bytes(4 << 20, 2);
    a.write("m.bin", &data);
    a.ok(&["track", "m.bin"]);
    a.ok(&["commit", "-m", "v1"]);
    let url = remote.path().to_str().expect("utf8");
    let first = a.json(&["push", "--remote", url]);
    assert_eq!(num(&first, "objects"), 64 + 1, "{first}");
    // Change 3 of the 64 blocks.
    for block in [5usize, 30, 63] {
        data[block * 65536 + 7] ^= 0xff;
    }
    a.write("m.bin", &data);
    let c = a.json(&["commit", "-m", "v2"]);
    let stored = num(&c[0], "stored_bytes");
    let second = a.json(&["push", "--remote", url]);
    assert_eq!(num(&second, "objects"), 3 + 1, "{second}");
    assert_eq!(num(&second, "skipped"), 61, "{second}");
    let manifest_obj = num(&second, "bytes") - stored;
    assert!(
        manifest_obj < 16 * 1024,
        "bytes sent are the changed chunks plus one manifest: {second}"
    );
    // Pull into a clone fetches exactly the same.
    let b = clone_of(&a);
    let p = b.json(&["pull", "--remote", url]);
    assert_eq!(num(&p, "objects"), 64, "{p}");
    b.ok(&["checkout"]);
    assert!(b.read("m.bin") == data);
}

#[test]
fn remote_add_list_remove_and_default() {
    let r = TestRepo::new();
    let s1 = remote_dir();
    let s2 = remote_dir();
    let out = r.ok(&["remote", "list"]);
    assert!(out.contains("no remotes"), "{out}");
    let out = r.ok(&["remote", "add", "origin", s1.path().to_str().expect("utf8")]);
    assert!(out.contains("(default)"), "{out}");
    let file_url = format!("file://{}", s2.path().display());
    let out = r.ok(&["remote", "add", "backup", &file_url]);
    assert!(!out.contains("default"), "{out}");
    let list = r.json(&["remote", "list"]);
    assert_eq!(list[0]["name"], "origin");
    assert_eq!(list[0]["default"], true);
    assert_eq!(list[1]["url"], file_url.as_str());
    assert_eq!(list[1]["default"], false);
    let cfg = fs::read_to_string(r.join(".shard/config.toml")).expect("config");
    assert!(cfg.contains("default_remote = \"origin\""), "{cfg}");
    // --default moves the default.
    let s3 = remote_dir();
    r.ok(&[
        "remote",
        "add",
        "third",
        s3.path().to_str().expect("utf8"),
        "--default",
    ]);
    assert_eq!(r.json(&["remote", "list"])[2]["default"], true);

    // Push by default, by name and by URL.
    r.write("f.bin", &random_bytes(100_000, 3));
    r.ok(&["track", "f.bin"]);
    r.ok(&["commit", "-m", "m"]);
    r.ok(&["push"]);
    assert!(count_objects(s3.path()) > 0);
    assert_eq!(count_objects(s2.path()), 0);
    r.ok(&["push", "--remote", "backup"]);
    assert!(count_objects(s2.path()) > 0);
    r.ok(&[
        "push",
        "--remote",
        &format!("file://{}", s1.path().display()),
    ]);
    assert!(count_objects(s1.path()) > 0);

    // Errors.
    let err = r.fails(&["remote", "add", "origin", "/elsewhere"]);
    assert!(err.contains("already exists"), "{err}");
    let err = r.fails(&["remote", "add", "bad/name", "/x"]);
    assert!(err.contains("invalid remote name"), "{err}");
    let err = r.fails(&["remote", "add", "x", "ftp://host/x"]);
    assert!(err.contains("unknown scheme"), "{err}");
    let err = r.fails(&["remote", "add", "x", "http://user:secret@host"]);
    assert!(err.contains("credentials"), "{err}");
    let err = r.fails(&["push", "--remote", "nosuch"]);
    assert!(err.contains("no remote named \"nosuch\""), "{err}");
    let err = r.fails(&["remote", "remove", "nosuch"]);
    assert!(err.contains("no remote named"), "{err}");

    // Removing the default promotes the first remaining remote.
    let out = r.ok(&["remote", "remove", "third"]);
    assert!(out.contains("default remote is now origin"), "{out}");
    r.ok(&["remote", "remove", "origin"]);
    r.ok(&["remote", "remove", "backup"]);
    let err = r.fails(&["push"]);
    assert!(err.contains("nshard remote add"), "{err}");
}

#[test]
fn no_remote_configured_is_a_clear_error() {
    let r = TestRepo::new();
    for cmd in ["push", "pull"] {
        let err = r.fails(&[cmd]);
        assert!(err.contains("no default remote configured"), "{err}");
        assert!(err.contains("nshard remote add"), "{err}");
    }
}

#[test]
fn nonexistent_remote_directory_is_a_clear_error() {
    let base = remote_dir();
    let missing = base.path().join("not-there");
    let r = committed(&missing, 10_000, 4);
    for cmd in ["push", "pull"] {
        let err = r.fails(&[cmd]);
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
    assert!(!missing.exists(), "a mistyped remote is never created");
}

#[test]
fn unreachable_remote_is_a_clear_error() {
    let base = remote_dir();
    // A path through a regular file cannot be reached.
    fs::write(base.path().join("file"), b"x").expect("w");
    let through_file = base.path().join("file/store");
    let r = committed(&through_file, 10_000, 5);
    let err = r.fails(&["push"]);
    assert!(err.contains("cannot reach the directory"), "{err}");
    // A regular file is not a directory remote.
    let err = r.fails(&[
        "push",
        "--remote",
        base.path().join("file").to_str().expect("u"),
    ]);
    assert!(err.contains("is not a directory"), "{err}");
    // An S3 endpoint where nothing listens: a clear error naming the remote.
    let out = common::nshard(r.path())
        .args(["push", "--remote", "s3://bucket/prefix"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("s3://bucket/prefix"), "{err}");
}

#[test]
fn corrupt_remote_object_fails_naming_it_and_keeps_nothing() {
    let remote = remote_dir();
    let a = committed(remote.path(), 3 << 20, 6);
    a.ok(&["push"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&a.read("models/m.bin.shard.json")).expect("manifest json");
    let bad = ObjectId::parse(manifest["chunks"][0]["id"].as_str().expect("id")).expect("id");
    let path = remote_store(remote.path()).path_of(&bad);
    let mut bytes = fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::write(&path, &bytes).expect("corrupt");

    let b = clone_of(&a);
    let err = b.fails(&["pull"]);
    assert!(err.contains(&bad.to_hex()), "names the object: {err}");
    assert!(err.contains("corrupt"), "{err}");
    let local = LocalStore::at(b.join(".shard/objects"), b.join(".shard/tmp"));
    assert!(!local.has(&bad), "the bad object was not kept");
    for id in local.list().expect("list") {
        local
            .get(&id, MAX_OBJECT_SIZE)
            .expect("everything kept is good");
    }
    let tmp_left = fs::read_dir(b.join(".shard/tmp")).expect("tmp").count();
    assert_eq!(tmp_left, 0, "no partial file left behind");
    let err = b.fails(&["checkout"]);
    assert!(err.contains("nshard pull"), "{err}");
}

#[test]
fn pull_names_chunks_the_remote_lacks() {
    let remote = remote_dir();
    let a = committed(remote.path(), 3 << 20, 7);
    a.ok(&["push"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&a.read("models/m.bin.shard.json")).expect("manifest json");
    let gone = ObjectId::parse(manifest["chunks"][0]["id"].as_str().expect("id")).expect("id");
    fs::remove_file(remote_store(remote.path()).path_of(&gone)).expect("delete");

    let b = clone_of(&a);
    let err = b.fails(&["pull", "models/m.bin"]);
    assert!(err.contains("lacks 1 object"), "{err}");
    assert!(err.contains(&gone.to_hex()), "{err}");
    assert!(err.contains("models/m.bin"), "{err}");
    // Pushing again repairs the remote and the pull then succeeds.
    a.ok(&["push"]);
    b.ok(&["pull", "--checkout"]);
    assert!(b.read("models/m.bin") == a.read("models/m.bin"));
}

#[test]
fn push_of_a_file_whose_chunks_are_not_local_names_them() {
    let remote = remote_dir();
    let a = committed(remote.path(), 200_000, 8);
    a.ok(&["push"]);
    // A clone that never pulled has the manifest but no chunks.
    let b = clone_of(&a);
    let other = remote_dir();
    let err = b.fails(&["push", "--remote", other.path().to_str().expect("u")]);
    assert!(err.contains("models/m.bin"), "{err}");
    assert!(err.contains("pull them first"), "{err}");
}

#[test]
fn versions_and_history() {
    let remote = remote_dir();
    let a = TestRepo::new();
    fixed_chunks(&a, 64 * 1024);
    let v1 = random_bytes(1 << 20, 9);
    a.write("m.bin", &v1);
    a.ok(&["track", "m.bin"]);
    let c1 = a.json(&["commit", "-m", "v1"]);
    let id1 = c1[0]["version"].as_str().expect("version").to_string();
    let mut v2 = v1.clone();
    v2[0] ^= 1;
    a.write("m.bin", &v2);
    a.ok(&["commit", "-m", "v2"]);
    let url = remote.path().to_str().expect("utf8");
    // Without --all-versions only the current version travels.
    let p = a.json(&["push", "--remote", url]);
    assert_eq!(num(&p, "objects"), 16 + 1, "{p}");
    let p = a.json(&["push", "--remote", url, "--all-versions"]);
    assert_eq!(
        num(&p, "objects"),
        1 + 1,
        "v1's own chunk and manifest: {p}"
    );
    assert_eq!(p["files"][0]["versions"], 2);

    let b = clone_of(&a);
    let out = b.ok(&[
        "pull",
        "m.bin",
        "--remote",
        url,
        "--version",
        &id1[..8],
        "--checkout",
    ]);
    assert!(
        out.contains(&format!("checked out version {}", &id1[..12])),
        "{out}"
    );
    assert!(b.read("m.bin") == v1, "the old version byte for byte");
    b.ok(&["pull", "--remote", url]);
    b.ok(&["checkout", "--force"]);
    assert!(b.read("m.bin") == v2);
    let err = b.fails(&["pull", "--remote", url, "--version", "ffffffff"]);
    assert!(err.contains("matches no version"), "{err}");

    let c = clone_of(&a);
    let p = c.json(&["pull", "--remote", url, "--all-versions"]);
    assert_eq!(p["files"][0]["versions"], 2, "{p}");
    c.ok(&["checkout", "m.bin", "--version", &id1[..8]]);
    assert!(c.read("m.bin") == v1);
}

/// Spawns `nshard args…` in `dir` with output discarded.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nshard"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nshard")
}

/// Waits (at most 60 s) until `ready()` holds, then kills `child` with SIGKILL. Returns whether
/// the child was still running when it was killed.
fn kill_when(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    running
}

/// A repository with a file of many small chunks: a transfer takes long enough to interrupt.
fn many_chunks(remote: &Path) -> (TestRepo, usize) {
    let r = TestRepo::new();
    fixed_chunks(&r, 16 * 1024);
    r.write("big.bin", &random_bytes(48 << 20, 10));
    r.ok(&["track", "big.bin"]);
    r.ok(&["commit", "-m", "big"]);
    r.ok(&["remote", "add", "origin", remote.to_str().expect("utf8")]);
    (r, 48 * 64 + 1)
}

fn entries(dir: &PathBuf) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn kill_9_mid_push_then_push_again_completes() {
    let remote = remote_dir();
    let (a, total) = many_chunks(remote.path());
    let objects = remote.path().join("objects");
    let mut child = spawn(a.path(), &["push", "--jobs", "1"]);
    let interrupted = kill_when(&mut child, || {
        entries(&objects) > 0 && count_objects(remote.path()) >= 5
    });
    assert!(
        interrupted,
        "push finished before it could be interrupted; the test file is too small"
    );
    let partial = verify_remote(remote.path());
    assert!(
        partial < total,
        "the push was cut short: {partial} of {total}"
    );

    let p = a.json(&["push"]);
    assert_eq!(num(&p, "skipped") as usize, partial, "{p}");
    assert_eq!(num(&p, "objects") as usize + partial, total, "{p}");
    assert_eq!(verify_remote(remote.path()), total, "the remote verifies");
    let b = clone_of(&a);
    b.ok(&["pull", "--checkout"]);
    assert!(b.read("big.bin") == a.read("big.bin"));
}

#[test]
fn kill_9_mid_pull_then_pull_again_completes() {
    let remote = remote_dir();
    let (a, total) = many_chunks(remote.path());
    a.ok(&["push"]);
    let b = clone_of(&a);
    b.ok(&["status"]); // creates .shard/objects
    let objects = b.join(".shard/objects");
    let mut child = spawn(b.path(), &["pull", "--jobs", "1"]);
    let local = LocalStore::at(&objects, b.join(".shard/tmp"));
    let interrupted = kill_when(&mut child, || {
        entries(&objects) > 0 && local.list().map_or(0, |l| l.len()) >= 5
    });
    assert!(
        interrupted,
        "pull finished before it could be interrupted; the test file is too small"
    );
    let partial = local.list().expect("list").len();
    for id in local.list().expect("list") {
        local
            .get(&id, MAX_OBJECT_SIZE)
            .expect("every object kept is whole");
    }
    // The manifest object is stored from the work tree, not received.
    assert!(
        partial < total,
        "the pull was cut short: {partial} of {total}"
    );

    let p = b.json(&["pull"]);
    let received = num(&p, "objects") as usize;
    assert!(received < total - 1, "only what was missing: {p}");
    assert_eq!(received + num(&p, "skipped") as usize, total - 1, "{p}");
    b.ok(&["checkout"]);
    assert!(b.read("big.bin") == a.read("big.bin"));
}

#[test]
fn two_clients_push_the_same_file_at_once() {
    let remote = remote_dir();
    let data = random_bytes(24 << 20, 11);
    let mk = || {
        let r = TestRepo::new();
        fixed_chunks(&r, 16 * 1024);
        r.write("same.bin", &data);
        r.ok(&["track", "same.bin"]);
        r.ok(&["commit", "-m", "same"]);
        r
    };
    let (a, b) = (mk(), mk());
    let url = remote.path().to_str().expect("utf8");
    let run = |r: &TestRepo| {
        Command::new(env!("CARGO_BIN_EXE_nshard"))
            .args(["push", "--remote", url, "--json"])
            .current_dir(r.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (ca, cb) = (run(&a), run(&b));
    let (oa, ob) = (
        ca.wait_with_output().expect("wait"),
        cb.wait_with_output().expect("wait"),
    );
    for o in [&oa, &ob] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let n = verify_remote(remote.path());
    // Each client's manifest has its own timestamp, so two manifest objects; chunks are shared.
    let chunks = (24 << 20) / (16 * 1024);
    assert!(n == chunks + 1 || n == chunks + 2, "{n}");
    let c = clone_of(&a);
    c.ok(&["pull", "--checkout", "--remote", url]);
    assert!(c.read("same.bin") == data);
}
