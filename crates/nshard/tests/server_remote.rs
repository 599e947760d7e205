//! Push and pull over HTTP: the real `nshard` client against a real `nshard serve` process on a
//! 127.0.0.1 port, including the seed's quickstart with git, tokens, and a server killed mid-push.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{metric_value, nshard_bin, Served};
use common::{git, nshard, random_bytes, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::MAX_OBJECT_SIZE;

/// Decodes and re-hashes every object in the server's store; returns how many there are.
fn verify_store(s: &Served) -> usize {
    let st = LocalStore::at(s.store.join("objects"), s.store.join("tmp"));
    let ids = st.list().expect("list");
    for id in &ids {
        st.get(id, MAX_OBJECT_SIZE)
            .unwrap_or_else(|e| panic!("server object {id} is bad: {e}"));
    }
    ids.len()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Runs `nshard args…` in `dir` with extra environment; returns (success, stdout, stderr).
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = nshard(dir);
    c.args(args)
        .env_remove("NSHARD_TOKEN")
        .env_remove("NSHARD_TOKEN_ORIGIN");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seed_quickstart_with_nshard_serve() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("server-store"), &[], &[]);
    let url = server.url.clone();

    // Terminal 2, machine A: the seed's quickstart.
    let a = d.path().join("a");
    fs::create_dir_all(a.join("models")).expect("mkdir");
    git(&a, &["init", "-q"]);
    common::ok(&a, &["init"]);
    common::ok(&a, &["git-init"]);
    let data = random_bytes(9 << 20, 21);
    fs::write(a.join("models/resnet50.pth"), &data).expect("write model");
    common::ok(&a, &["track", "models/resnet50.pth"]);
    common::ok(&a, &["commit", "-m", "Initial checkpoint"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "Add model"]);
    let out = common::ok(&a, &["push", "--remote", &url]);
    assert!(out.contains(&format!("push to {url}")), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("models/resnet50.pth.shard.json")).expect("m"))
            .expect("manifest");
    let chunks = manifest["chunks"].as_array().expect("chunks").len();
    assert_eq!(verify_store(&server), chunks + 1, "chunks and the manifest");
    // Pushing again sends nothing.
    let again = common::json(&a, &["push", "--remote", &url]);
    assert_eq!(num(&again, "objects"), 0, "{again}");

    // Machine B: git clone, pull, checkout.
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    assert!(
        !b.join("models/resnet50.pth").exists(),
        "data is not in git"
    );
    let out = common::ok(
        &b,
        &["pull", "models/resnet50.pth.shard.json", "--remote", &url],
    );
    assert!(out.contains("received"), "{out}");
    common::ok(&b, &["checkout", "models/resnet50.pth.shard.json"]);
    assert!(
        fs::read(b.join("models/resnet50.pth")).expect("read") == data,
        "byte-for-byte"
    );
    let st = common::ok(&b, &["status"]);
    assert!(st.contains("unchanged"), "{st}");
    let m = server.metrics();
    assert_eq!(
        metric_value(&m, "nshard_objects_stored_total"),
        Some(chunks as u64 + 1)
    );
}

#[test]
fn tokens_over_http() {
    const WRITE: &str = "e2e-write-token-0123456789abcdef";
    const READ: &str = "e2e-read-token-0123456789abcdef";
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(
        &d.path().join("store"),
        &[],
        &[("NSHARD_SERVE_TOKENS", &format!("write:{WRITE},read:{READ}"))],
    );
    let a = TestRepo::new();
    let data = random_bytes(3 << 20, 22);
    a.write("m.bin", &data);
    a.ok(&["track", "m.bin"]);
    a.ok(&["commit", "-m", "v1"]);
    // The user's own remote (config.local.toml): tokens from the environment may go there. (A
    // remote from the committed config.toml receives only a token stored with `nshard login`;
    // tests/credentials.rs covers that.)
    a.ok(&["remote", "add", "--local", "origin", &server.url]);

    let (ok, _, err) = run_env(a.path(), &["push"], &[]);
    assert!(!ok);
    assert!(
        err.contains("needs a token") && err.contains("NSHARD_TOKEN"),
        "{err}"
    );
    let (ok, _, err) = run_env(
        a.path(),
        &["push"],
        &[("NSHARD_TOKEN", "wrong-token-wrong-token")],
    );
    assert!(!ok);
    assert!(err.contains("refused the token"), "{err}");
    let (ok, _, err) = run_env(a.path(), &["push"], &[("NSHARD_TOKEN", READ)]);
    assert!(!ok);
    assert!(err.contains("403") && err.contains("write token"), "{err}");
    assert_eq!(verify_store(&server), 0, "nothing was stored");

    // The per-remote variable wins over NSHARD_TOKEN.
    let (ok, out, err) = run_env(
        a.path(),
        &["push"],
        &[("NSHARD_TOKEN", READ), ("NSHARD_TOKEN_ORIGIN", WRITE)],
    );
    assert!(ok, "{err}");
    for text in [&out, &err, &server.log()] {
        assert!(
            !text.contains(WRITE) && !text.contains(READ),
            "token leaked: {text}"
        );
    }

    // A read token is enough to pull.
    let b = TestRepo::new();
    fs::copy(a.join(".shard/config.toml"), b.join(".shard/config.toml")).expect("config");
    fs::copy(
        a.join(".shard/config.local.toml"),
        b.join(".shard/config.local.toml"),
    )
    .expect("local config");
    fs::copy(a.join("m.bin.shard.json"), b.join("m.bin.shard.json")).expect("manifest");
    let (ok, _, err) = run_env(b.path(), &["pull", "--checkout"], &[("NSHARD_TOKEN", READ)]);
    assert!(ok, "{err}");
    assert!(b.read("m.bin") == data);
}

#[test]
fn unreachable_or_wrong_server_is_a_clear_error() {
    let a = TestRepo::new();
    a.write("m.bin", &random_bytes(100_000, 23));
    a.ok(&["track", "m.bin"]);
    a.ok(&["commit", "-m", "v1"]);
    // Port 9 on loopback: nothing listens.
    let err = a.fails(&["push", "--remote", "http://127.0.0.1:9"]);
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    // A URL whose path is not an nshard server.
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    let err = a.fails(&["push", "--remote", &format!("{}/not/here", server.url)]);
    assert!(err.contains("health check") && err.contains("404"), "{err}");
    // Credentials in the URL are refused before anything is sent.
    let err = a.fails(&[
        "push",
        "--remote",
        &format!("http://user:secret@{}", server.addr),
    ]);
    assert!(
        err.contains("credentials do not belong in the URL"),
        "{err}"
    );
}

/// A repository with one file of many small fixed chunks (a push long enough to interrupt).
fn many_chunks(url: &str) -> (TestRepo, usize) {
    let r = TestRepo::new();
    let p = r.join(".shard/config.toml");
    let text = fs::read_to_string(&p).expect("config");
    let start = text.find("[chunking]").expect("chunking table");
    let rest = &text[start + 1..];
    let end = rest.find("\n[").map_or(text.len(), |i| start + 1 + i + 1);
    let new = format!(
        "{}[chunking]\nalgorithm = \"fixed\"\nsize = 16384\n\n{}",
        &text[..start],
        &text[end..]
    );
    fs::write(&p, new).expect("write config");
    r.write("big.bin", &random_bytes(32 << 20, 24));
    r.ok(&["track", "big.bin"]);
    r.ok(&["commit", "-m", "big"]);
    r.ok(&["remote", "add", "origin", url]);
    (r, 32 * 64 + 1)
}

#[test]
fn server_killed_mid_push_then_push_again_completes() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let mut server = Served::start(&store, &[], &[]);
    let (a, total) = many_chunks(&server.url);
    let mut push = Command::new(nshard_bin())
        .args(["push", "--jobs", "1", "-q"])
        .current_dir(a.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn push");
    // Kill the server with SIGKILL once part of the push has landed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_value(&server.metrics(), "nshard_objects_stored_total").unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "push made no progress");
        assert!(
            push.try_wait().expect("try_wait").is_none(),
            "push finished before the server could be killed; the file is too small"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let out = push.wait_with_output().expect("push ends");
    assert!(
        !out.status.success(),
        "push cannot succeed without its server"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&server.url), "{err}");

    // After a restart (on a new port) no partial object is visible: everything verifies.
    let server = Served::start(&store, &[], &[]);
    let partial = verify_store(&server);
    assert!(partial > 0 && partial < total, "{partial} of {total}");
    a.ok(&["remote", "remove", "origin"]);
    a.ok(&["remote", "add", "origin", &server.url]);
    let p = a.json(&["push"]);
    assert_eq!(num(&p, "skipped") as usize, partial, "{p}");
    assert_eq!(num(&p, "objects") as usize + partial, total, "{p}");
    assert_eq!(verify_store(&server), total);

    let b = TestRepo::new();
    fs::copy(a.join(".shard/config.toml"), b.join(".shard/config.toml")).expect("config");
    fs::copy(a.join("big.bin.shard.json"), b.join("big.bin.shard.json")).expect("manifest");
    b.ok(&["pull", "--checkout"]);
    assert!(b.read("big.bin") == a.read("big.bin"), "byte-for-byte");
}

#[test]
fn two_clients_push_the_same_file_to_one_server() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    let data = random_bytes(8 << 20, 25);
    let mk = || {
        let r = TestRepo::new();
        r.write("same.bin", &data);
        r.ok(&["track", "same.bin"]);
        r.ok(&["commit", "-m", "same"]);
        r
    };
    let (a, b) = (mk(), mk());
    let spawn = |r: &TestRepo| {
        Command::new(nshard_bin())
            .args(["push", "--remote", &server.url, "-q"])
            .current_dir(r.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for c in [ca, cb] {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&a.read("same.bin.shard.json")).expect("manifest");
    let chunks = manifest["chunks"].as_array().expect("chunks").len();
    // Chunks are shared; each client's manifest has its own timestamp.
    let n = verify_store(&server);
    assert!(
        n == chunks + 1 || n == chunks + 2,
        "{n} objects for {chunks} chunks"
    );
    let c = TestRepo::new();
    fs::copy(b.join("same.bin.shard.json"), c.join("same.bin.shard.json")).expect("manifest");
    c.ok(&["pull", "--checkout", "--remote", &server.url]);
    assert!(c.read("same.bin") == data);
}
