//! `s3://` remotes and `nshard serve --store s3://…` against a real SeaweedFS on 127.0.0.1 (see
//! `common::s3`): the seed's workflow, replicas sharing a bucket, racing pushes, refused keys, a
//! missing bucket, a corrupted object, and the store stopped in the middle of a push.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::s3::{OwnSeaweed, S3Env};
use common::serve::{metric_value, Served};
use common::{git, nshard, random_bytes};
use nshard_core::ObjectId;
use nshard_core::{RemoteUrl, Store};
use nshard_remote::{OpenOptions, S3Options};

/// Runs `nshard args…` in `dir` with the S3 variables of `env` (and `extra`); returns (success,
/// stdout, stderr).
fn run(dir: &Path, env: &S3Env, args: &[&str], extra: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = nshard(dir);
    c.args(args);
    for (k, v) in env.vars() {
        c.env(k, v);
    }
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, env: &S3Env, args: &[&str]) -> String {
    let (success, out, err) = run(dir, env, args, &[]);
    assert!(success, "nshard {args:?} failed: {err}\n{out}");
    out
}

fn json(dir: &Path, env: &S3Env, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(dir, env, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The bucket store behind `url`, opened directly.
async fn bucket(env: &S3Env, url: &str) -> Arc<dyn Store> {
    let opts = OpenOptions {
        token: None,
        s3: S3Options {
            settings: env.vars(),
        },
    };
    nshard_remote::open(&RemoteUrl::parse(url, Path::new("/")).expect("url"), &opts)
        .await
        .expect("open bucket")
}

fn bucket_objects(env: &S3Env, url: &str) -> Vec<ObjectId> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = bucket(env, url).await;
        s.admin().expect("lists").list().await.expect("list")
    })
}

/// A git repository with one committed model of `len` bytes at `models/m.bin`.
fn committed_repo(dir: &Path, len: usize, seed: u64) -> Vec<u8> {
    fs::create_dir_all(dir.join("models")).expect("mkdir");
    git(dir, &["init", "-q"]);
    common::ok(dir, &["init"]);
    common::ok(dir, &["git-init"]);
    let data = random_bytes(len, seed);
    fs::write(dir.join("models/m.bin"), &data).expect("write");
    common::ok(dir, &["track", "models/m.bin"]);
    common::ok(dir, &["commit", "-m", "Initial checkpoint"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "Add model"]);
    data
}

fn chunk_count(repo: &Path) -> usize {
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.join("models/m.bin.shard.json")).expect("m"))
            .expect("manifest");
    m["chunks"].as_array().expect("chunks").len()
}

#[test]
fn seed_workflow_with_an_s3_remote() {
    let Some(env) = S3Env::get() else { return };
    let url = env.fresh_url("seed");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    let data = committed_repo(&a, 9 << 20, 31);
    common::ok(&a, &["remote", "add", "origin", &url]);
    let out = ok(&a, &env, &["push"]);
    assert!(out.contains(&url), "{out}");
    let chunks = chunk_count(&a);
    assert_eq!(bucket_objects(&env, &url).len(), chunks + 1);
    let again = json(&a, &env, &["push"]);
    assert_eq!(num(&again, "objects"), 0, "{again}");

    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    ok(
        &b,
        &env,
        &["pull", "models/m.bin.shard.json", "--remote", &url],
    );
    common::ok(&b, &["checkout", "models/m.bin.shard.json"]);
    assert!(
        fs::read(b.join("models/m.bin")).expect("read") == data,
        "byte for byte"
    );
}

#[test]
fn push_through_one_replica_pull_through_another() {
    let Some(env) = S3Env::get() else { return };
    let store = env.fresh_url("replicas");
    let d = tempfile::tempdir().expect("tmp");
    let vars = env.vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let one = Served::start_store(&d.path().join("one"), &store, &[], &envs);
    let two = Served::start_store(&d.path().join("two"), &store, &[], &envs);

    let a = d.path().join("a");
    let data = committed_repo(&a, 6 << 20, 32);
    common::ok(&a, &["push", "--remote", &one.url]);
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    common::ok(
        &b,
        &["pull", "models/m.bin.shard.json", "--remote", &two.url],
    );
    common::ok(&b, &["checkout", "models/m.bin.shard.json"]);
    assert!(fs::read(b.join("models/m.bin")).expect("read") == data);
    // The servers keep nothing of their own: everything is in the bucket.
    assert_eq!(bucket_objects(&env, &store).len(), chunk_count(&a) + 1);
}

#[test]
fn two_clients_push_one_checkpoint_at_once_through_two_replicas() {
    let Some(env) = S3Env::get() else { return };
    let store = env.fresh_url("race");
    let d = tempfile::tempdir().expect("tmp");
    let vars = env.vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let servers = [
        Served::start_store(&d.path().join("one"), &store, &[], &envs),
        Served::start_store(&d.path().join("two"), &store, &[], &envs),
    ];
    // Two clones of one committed checkpoint.
    let a = d.path().join("a");
    committed_repo(&a, 24 << 20, 33);
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    // b gets the objects from a's own store (which has the directory remote layout).
    common::ok(
        &b,
        &["pull", "--remote", a.join(".shard").to_str().expect("u")],
    );
    let total = chunk_count(&a) + 1;
    let children: Vec<_> = [(&a, &servers[0]), (&b, &servers[1])]
        .iter()
        .map(|(dir, s)| {
            Command::new(common::serve::nshard_bin())
                .args(["push", "--json", "--remote", &s.url])
                .current_dir(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn push")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("push");
        assert!(
            out.status.success(),
            "both pushes succeed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(bucket_objects(&env, &store).len(), total);
    // Each object was written once, by one replica or the other.
    let stored: u64 = servers
        .iter()
        .map(|s| metric_value(&s.metrics(), "nshard_objects_stored_total").expect("metric"))
        .sum();
    assert_eq!(stored, total as u64);
}

#[test]
fn wrong_credentials_fail_once_with_a_clear_error() {
    let Some(env) = S3Env::get() else { return };
    let url = env.fresh_url("creds");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    committed_repo(&a, 1 << 20, 34);
    let (success, _, err) = run(
        &a,
        &env,
        &["push", "--remote", &url],
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    assert!(!success);
    assert!(err.contains(&url), "names the remote: {err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(
        !err.contains("not-the-secret"),
        "never prints the secret: {err}"
    );
    // A permanent error: the transfer engine does not retry it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let e = rt.block_on(async {
        let mut vars = env.vars();
        vars.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
        let opts = OpenOptions {
            token: None,
            s3: S3Options { settings: vars },
        };
        nshard_remote::open(&RemoteUrl::parse(&url, Path::new("/")).expect("url"), &opts)
            .await
            .err()
            .expect("refused")
    });
    assert!(!e.is_transient(), "{e}");
    // A server with refused keys does not start.
    let out = Command::new(common::serve::nshard_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &url])
        .envs(env.vars())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .stdin(Stdio::null())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access denied"), "{err}");
}

#[test]
fn a_missing_bucket_is_named() {
    let Some(env) = S3Env::get() else { return };
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    committed_repo(&a, 1 << 20, 35);
    let url = format!("s3://nshard-no-such-bucket-{}/p", std::process::id());
    let (success, _, err) = run(&a, &env, &["push", "--remote", &url], &[]);
    assert!(!success);
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("nshard-no-such-bucket"), "{err}");
}

#[test]
fn a_corrupted_object_in_the_bucket_fails_the_pull_naming_it() {
    let Some(env) = S3Env::get() else { return };
    let url = env.fresh_url("corrupt");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    committed_repo(&a, 3 << 20, 36);
    ok(&a, &env, &["push", "--remote", &url]);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("models/m.bin.shard.json")).expect("m"))
            .expect("manifest");
    let bad = ObjectId::parse(m["chunks"][0]["id"].as_str().expect("id")).expect("id");
    flip_in_bucket(&env, &url, &bad);
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    let (success, _, err) = run(
        &b,
        &env,
        &["pull", "models/m.bin.shard.json", "--remote", &url],
        &[],
    );
    assert!(!success);
    assert!(err.contains(&bad.to_hex()), "names the object: {err}");
    assert!(err.contains("corrupt"), "{err}");
    // Nothing bad was kept: the object is not in b's store and the file was not written.
    let objects = b.join(".shard/objects");
    let h = bad.to_hex();
    assert!(!objects.join(&h[..2]).join(&h[2..]).exists());
    let (success, _, _) = run(&b, &env, &["checkout", "models/m.bin.shard.json"], &[]);
    assert!(
        !success,
        "checkout cannot build the file without the object"
    );
    assert!(!b.join("models/m.bin").exists());
}

/// A client of the test bucket that bypasses nshard, and the key of `id` under `url`'s prefix.
fn raw_bucket(env: &S3Env, url: &str, id: &ObjectId) -> (object_store::aws::AmazonS3, String) {
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&env.bucket)
        .with_endpoint(&env.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(&env.key_id)
        .with_secret_access_key(&env.secret)
        .build()
        .expect("client");
    let prefix = url
        .trim_start_matches("s3://")
        .split_once('/')
        .expect("p")
        .1
        .to_string();
    let h = id.to_hex();
    (raw, format!("{prefix}/objects/{}/{}", &h[..2], &h[2..]))
}

/// Flips a byte of object `id` in the bucket, behind nshard's back.
fn flip_in_bucket(env: &S3Env, url: &str, id: &ObjectId) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    nshard_remote::install_tls_provider();
    rt.block_on(async {
        use object_store::{ObjectStoreExt, PutPayload};
        let (raw, key) = raw_bucket(env, url, id);
        let key = object_store::path::Path::from(key);
        let mut bytes = raw
            .get(&key)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        raw.put(&key, PutPayload::from(bytes)).await.expect("put");
    });
}

/// The keys under `PREFIX/corrupt/` of `url` that hold a copy of `id` set aside.
fn set_aside_in_bucket(env: &S3Env, url: &str, id: &ObjectId) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    nshard_remote::install_tls_provider();
    rt.block_on(async {
        use object_store::ObjectStore;
        let (raw, key) = raw_bucket(env, url, id);
        let prefix = key.split("/objects/").next().expect("prefix").to_string();
        let dir = object_store::path::Path::from(format!("{prefix}/corrupt"));
        let listed = raw.list_with_delimiter(Some(&dir)).await.expect("list");
        listed
            .objects
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| k.contains(&format!("/corrupt/{}", id.to_hex())))
            .collect()
    })
}

#[test]
fn a_corrupted_object_in_the_bucket_is_moved_aside_and_repaired() {
    let Some(env) = S3Env::get() else { return };
    let url = env.fresh_url("repair");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    let data = committed_repo(&a, 3 << 20, 37);
    ok(&a, &env, &["push", "--remote", &url]);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("models/m.bin.shard.json")).expect("m"))
            .expect("manifest");
    let bad = ObjectId::parse(m["chunks"][0]["id"].as_str().expect("id")).expect("id");
    flip_in_bucket(&env, &url, &bad);
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    let (success, _, err) = run(&b, &env, &["pull", "--remote", &url], &[]);
    assert!(!success && err.contains(&bad.to_hex()), "{err}");
    // The pull moved the bad copy aside: the bucket lacks it, and a push restores it.
    assert_eq!(set_aside_in_bucket(&env, &url, &bad).len(), 1);
    assert!(!bucket_objects(&env, &url).contains(&bad));
    let v = json(&a, &env, &["push", "--remote", &url]);
    assert_eq!(num(&v, "objects"), 1, "{v}");
    ok(&b, &env, &["pull", "--remote", &url, "--checkout"]);
    assert_eq!(fs::read(b.join("models/m.bin")).expect("data"), data);
    // verify --remote finds a corrupt copy and repairs it from the local one.
    flip_in_bucket(&env, &url, &bad);
    let v = json(&a, &env, &["verify", "--remote", &url]);
    let hex = serde_json::json!([bad.to_hex()]);
    assert_eq!((&v["corrupt"], &v["repaired"]), (&hex, &hex), "{v}");
    assert_eq!(set_aside_in_bucket(&env, &url, &bad).len(), 2);
    let v = json(&a, &env, &["verify", "--remote", &url]);
    assert_eq!(v["corrupt"], serde_json::json!([]), "{v}");
}

#[test]
fn store_stopped_mid_push_then_restarted() {
    let d = tempfile::tempdir().expect("tmp");
    let Some(mut weed) = OwnSeaweed::start(&d.path().join("weed"), "restart-test") else {
        return;
    };
    let env = weed.env.clone();
    let url = format!("s3://{}/p", env.bucket);
    let a = d.path().join("a");
    committed_repo(&a, 160 << 20, 37);
    let total = chunk_count(&a) + 1;
    let mut child = Command::new(common::serve::nshard_bin())
        .args(["push", "--jobs", "1", "--remote", &url])
        .current_dir(&a)
        .envs(env.vars())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    // Wait until part of the checkpoint is in the bucket, then stop the store.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = bucket_objects(&env, &url).len();
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "push ended early"
        );
        assert!(Instant::now() < deadline, "push made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    weed.stop();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "push did not give up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(!status.success(), "push fails while the store is down");
    assert!(err.contains(&url), "{err}");

    weed.restart();
    let present = bucket_objects(&env, &url).len();
    assert!(present < total, "the first push did not finish");
    let again = json(&a, &env, &["push", "--remote", &url]);
    assert_eq!(num(&again, "skipped") as usize, present, "{again}");
    assert_eq!(num(&again, "objects") as usize, total - present, "{again}");
    assert_eq!(bucket_objects(&env, &url).len(), total);
    // And the bucket's content is whole: a fresh clone pulls and checks out.
    let b = d.path().join("b");
    git(d.path(), &["clone", "-q", a.to_str().expect("utf8"), "b"]);
    ok(
        &b,
        &env,
        &["pull", "models/m.bin.shard.json", "--remote", &url],
    );
    common::ok(&b, &["checkout", "models/m.bin.shard.json"]);
}

/// docs/s3.md: a store that answers conditional writes with 501 is remembered and gets a HEAD
/// then a plain PUT; the push completes and a second push sends nothing (issue 26, untested
/// documented behaviours). The 501s come from a proxy in front of SeaweedFS.
#[test]
fn a_store_without_conditional_writes_gets_head_then_put() {
    let Some(env) = S3Env::get() else { return };
    let upstream = env
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = common::proxy::FaultProxy::start(&upstream, &[]);
    proxy.refuse_conditional_writes();
    let url = env.fresh_url("no-conditional");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    committed_repo(&a, 3 << 20, 61);
    let (success, out, err) = run(
        &a,
        &env,
        &["push", "--remote", &url, "--json"],
        &[("AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    assert!(success, "{err}\n{out}");
    assert!(
        proxy.conditional_writes_refused() >= 1,
        "no conditional write was tried"
    );
    assert_eq!(bucket_objects(&env, &url).len(), chunk_count(&a) + 1);
    let (success, out, err) = run(
        &a,
        &env,
        &["push", "--remote", &url, "--json"],
        &[("AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    assert!(success, "{err}");
    let again: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(num(&again, "objects"), 0, "{again}");
}

/// docs/s3.md: without `AWS_ACCESS_KEY_ID`, the key comes from `~/.aws/credentials` (the
/// `default` profile, or `AWS_PROFILE`'s); variables win over the files (issue 26, untested
/// documented behaviours).
#[test]
fn aws_profile_supplies_the_key_and_variables_win_over_the_files() {
    let Some(env) = S3Env::get() else { return };
    let url = env.fresh_url("profile");
    let d = tempfile::tempdir().expect("tmp");
    let a = d.path().join("a");
    committed_repo(&a, 1 << 20, 62);
    let home = d.path().join("home");
    fs::create_dir_all(home.join(".aws")).expect("mkdir");
    fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = wrong-secret-in-default\n\n\
             [ml]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            env.key_id, env.key_id, env.secret
        ),
    )
    .expect("credentials");
    let push = |vars: &[(&str, &str)]| {
        let mut c = nshard(&a);
        c.args(["push", "--remote", &url]);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", &home)
            .env("AWS_ENDPOINT_URL", &env.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            // No instance metadata service here: fail fast instead of probing for it.
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The default profile's key is wrong: refused.
    let (success, err) = push(&[]);
    assert!(!success && err.contains("access denied"), "{err}");
    assert!(!err.contains("wrong-secret-in-default"), "{err}");
    // AWS_PROFILE picks the right one.
    let (success, err) = push(&[("AWS_PROFILE", "ml")]);
    assert!(success, "{err}");
    // Variables win over the profile.
    let (success, err) = push(&[
        ("AWS_PROFILE", "ml"),
        ("AWS_ACCESS_KEY_ID", &env.key_id),
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret-in-the-environment"),
    ]);
    assert!(!success && err.contains("access denied"), "{err}");
}
