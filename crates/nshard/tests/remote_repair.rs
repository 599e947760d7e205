//! A corrupt object on a remote can be repaired: whoever finds it corrupt (a pull from a
//! directory remote, `nshard serve` on GET, `nshard verify --remote`) moves it aside to the
//! store's `corrupt/` directory, so the remote reads it as missing and the next push restores it.
//! Each case runs against a directory remote and a real `nshard serve` over a directory store.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::serve::{metric_value, Served};
use common::{random_bytes, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::ObjectId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    Server,
}

/// A repository `a` whose one committed file was pushed to a fresh remote of `kind`.
struct Setup {
    _dir: tempfile::TempDir,
    /// The directory holding the remote's `objects/` (the directory remote, or the server's store).
    store: PathBuf,
    server: Option<Served>,
    a: TestRepo,
}

impl Setup {
    fn new(kind: Kind, seed: u64) -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        let store = dir.path().join("store");
        fs::create_dir_all(&store).expect("mkdir");
        let server = match kind {
            Kind::Dir => None,
            Kind::Server => Some(Served::start(&store, &[], &[])),
        };
        let url = match &server {
            Some(s) => s.url.clone(),
            None => store.to_str().expect("utf8").to_string(),
        };
        let a = TestRepo::new();
        a.write("models/m.bin", &random_bytes(3 << 20, seed));
        a.ok(&["track", "models/m.bin"]);
        a.ok(&["commit", "-m", "v1"]);
        a.ok(&["remote", "add", "origin", &url]);
        a.ok(&["push"]);
        Setup {
            _dir: dir,
            store,
            server,
            a,
        }
    }

    fn remote(&self) -> LocalStore {
        LocalStore::at(self.store.join("objects"), self.store.join("tmp"))
    }

    /// The manifest's first chunk and the version (manifest object) id.
    fn ids(&self) -> (ObjectId, ObjectId) {
        let bytes = self.a.read("models/m.bin.shard.json");
        let m: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest json");
        let chunk = ObjectId::parse(m["chunks"][0]["id"].as_str().expect("id")).expect("id");
        (chunk, ObjectId::of(&bytes))
    }

    /// Flips a byte in the middle of the remote's copy of `id`, behind nshard's back.
    fn corrupt(&self, id: &ObjectId) {
        let path = self.remote().path_of(id);
        let mut bytes = fs::read(&path).expect("read remote object");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        fs::write(&path, &bytes).expect("corrupt");
        assert!(self.remote().get(id, MAX_OBJECT_SIZE).is_err());
    }

    /// The copies of `id` kept in the remote's `corrupt/` directory.
    fn set_aside(&self, id: &ObjectId) -> Vec<PathBuf> {
        set_aside(&self.store, id)
    }

    /// The remote's copy of `id` is present and intact.
    fn assert_good(&self, id: &ObjectId) {
        self.remote()
            .get(id, MAX_OBJECT_SIZE)
            .unwrap_or_else(|e| panic!("remote copy of {id} is not good: {e}"));
    }
}

fn set_aside(store: &Path, id: &ObjectId) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(store.join("corrupt")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&id.to_hex()))
        })
        .collect()
}

/// A "clone" of `src`: its config and manifest, no data and no objects.
fn clone_of(src: &TestRepo) -> TestRepo {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join(".shard")).expect("mkdir");
    for rel in [".shard/config.toml", "models/m.bin.shard.json"] {
        let dest = dir.path().join(rel);
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        fs::copy(src.join(rel), dest).expect("copy");
    }
    TestRepo { dir }
}

fn pull_finds_moves_aside_and_push_restores(kind: Kind) {
    let s = Setup::new(kind, 51);
    let (bad, _) = s.ids();
    s.corrupt(&bad);
    let b = clone_of(&s.a);
    let err = b.fails(&["pull"]);
    assert!(
        err.contains(&bad.to_hex()),
        "{kind:?}: names the object: {err}"
    );
    assert!(err.contains("corrupt"), "{kind:?}: {err}");
    assert!(
        !s.remote().path_of(&bad).exists(),
        "{kind:?}: the corrupt copy is still where readers look"
    );
    assert_eq!(s.set_aside(&bad).len(), 1, "{kind:?}: kept in corrupt/");
    // The remote now lacks it, so a push from a repository with a good copy restores it.
    let v = s.a.json(&["push"]);
    assert_eq!(v["objects"], 1, "{kind:?}: {v}");
    s.assert_good(&bad);
    b.ok(&["pull"]);
    b.ok(&["checkout"]);
    assert_eq!(b.read("models/m.bin"), s.a.read("models/m.bin"));
}

#[test]
fn directory_remote_pull_moves_a_corrupt_object_aside_and_push_restores_it() {
    pull_finds_moves_aside_and_push_restores(Kind::Dir);
}

#[test]
fn server_pull_moves_a_corrupt_object_aside_and_push_restores_it() {
    pull_finds_moves_aside_and_push_restores(Kind::Server);
}

/// Object bytes the server has sent so far (0 for a directory remote).
fn sent_bytes(s: &Setup) -> u64 {
    s.server.as_ref().map_or(0, |srv| {
        metric_value(&srv.metrics(), "nshard_sent_bytes_total").expect("metric")
    })
}

fn verify_remote_finds_and_repairs(kind: Kind) {
    let s = Setup::new(kind, 52);
    let (bad, version) = s.ids();
    let sent = sent_bytes(&s);
    let v = s.a.json(&["verify", "--remote", "origin"]);
    assert_eq!(v["checked"], 2, "{kind:?}: one chunk and the manifest: {v}");
    assert_eq!(v["corrupt"], serde_json::json!([]), "{kind:?}: {v}");

    s.corrupt(&bad);
    let v = s.a.json(&["verify", "--remote", "origin"]);
    let hex = serde_json::json!([bad.to_hex()]);
    assert_eq!(v["checked"], 2, "{kind:?}: {v}");
    assert_eq!(v["corrupt"], hex, "{kind:?}: {v}");
    assert_eq!(v["repaired"], hex, "{kind:?}: {v}");
    assert_eq!(v["missing"], serde_json::json!([]), "{kind:?}: {v}");
    s.assert_good(&bad);
    assert_eq!(s.set_aside(&bad).len(), 1, "{kind:?}: the bad copy is kept");

    // Human output: the summary line, and nothing left to repair.
    let out = s.a.ok(&["verify", "--remote", "origin"]);
    assert!(
        out.contains("checked 2 objects") && out.contains("0 corrupt"),
        "{kind:?}: {out}"
    );

    // The server hashed its own copies: no object was downloaded to check it (a directory
    // remote has no server: the client reads and hashes each copy itself).
    if kind == Kind::Server {
        assert_eq!(sent_bytes(&s), sent, "{kind:?}: verify downloaded objects");
    }

    // An object the remote lacks is reported (a push sends it) and the exit status says so.
    fs::remove_file(s.remote().path_of(&version)).expect("remove");
    let v = s.a.json_exit(&["verify", "--remote", "origin"], 1);
    assert_eq!(v["missing"], serde_json::json!([version.to_hex()]), "{v}");
    let out = common::nshard(s.a.path())
        .args(["verify", "--remote", "origin"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{kind:?}: {text}");
    assert!(
        text.contains("1 missing") && text.contains("nshard push"),
        "{kind:?}: {text}"
    );
    drop(s.server);
}

#[test]
fn directory_remote_verify_remote_finds_and_repairs() {
    verify_remote_finds_and_repairs(Kind::Dir);
}

#[test]
fn server_verify_remote_finds_and_repairs() {
    verify_remote_finds_and_repairs(Kind::Server);
}

#[test]
fn server_get_of_a_corrupt_object_moves_it_aside_and_a_put_restores_it() {
    let s = Setup::new(Kind::Server, 53);
    let server = s.server.as_ref().expect("server");
    let (bad, _) = s.ids();
    let good = fs::read(s.remote().path_of(&bad)).expect("good copy");
    s.corrupt(&bad);
    nshard_remote::install_tls_provider();
    let client = reqwest::blocking::Client::new();
    let url = server.at(&format!("/v1/objects/{bad}"));
    let r = client.get(&url).send().expect("GET");
    assert_eq!(r.status().as_u16(), 500);
    let body: serde_json::Value = r.json().expect("JSON error");
    assert_eq!(body["code"], "corrupt_object", "{body}");
    let msg = body["error"].as_str().expect("message");
    assert!(msg.contains(&bad.to_hex()), "{msg}");
    assert_eq!(s.set_aside(&bad).len(), 1);
    let head = client.head(&url).send().expect("HEAD");
    assert_eq!(head.status().as_u16(), 404, "reads as missing");
    let put = client.put(&url).body(good).send().expect("PUT");
    assert_eq!(put.status().as_u16(), 201, "the good copy is stored");
    s.assert_good(&bad);
}

#[test]
fn server_verify_endpoint_hashes_its_copy_and_needs_a_read_token() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let read = "read-token-0123456789abcdef";
    let write = "write-token-0123456789abcdef";
    let tokens = format!("read:{read},write:{write}");
    let server = Served::start(&store, &[], &[("NSHARD_SERVE_TOKENS", &tokens)]);
    nshard_remote::install_tls_provider();
    let client = reqwest::blocking::Client::new();
    let health: serde_json::Value = client
        .get(server.at("/v1/health"))
        .send()
        .expect("health")
        .json()
        .expect("json");
    assert_eq!(
        health["features"],
        serde_json::json!(["verify", "float-objects", "deltas"]),
        "{health}"
    );
    let (id, enc) = nshard_remote::testing::object(100_000, 31);
    let verify = |token: Option<&str>| {
        let mut r = client.post(server.at(&format!("/v1/objects/{id}/verify")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().expect("verify")
    };
    assert_eq!(verify(None).status().as_u16(), 401, "needs a token");
    let missing: serde_json::Value = verify(Some(read)).json().expect("json");
    assert_eq!(missing["state"], "missing", "{missing}");
    let put = client
        .put(server.at(&format!("/v1/objects/{id}")))
        .bearer_auth(write)
        .body(enc.clone())
        .send()
        .expect("put");
    assert_eq!(put.status().as_u16(), 201);
    let intact: serde_json::Value = verify(Some(read)).json().expect("json");
    assert_eq!(intact["state"], "intact", "{intact}");
    assert_eq!(intact["size"], enc.len() as u64, "{intact}");
    let objects = LocalStore::at(store.join("objects"), store.join("tmp"));
    let path = objects.path_of(&id);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::write(&path, &enc[..enc.len() - 1]).expect("truncate");
    let corrupt: serde_json::Value = verify(Some(read)).json().expect("json");
    assert_eq!(corrupt["state"], "corrupt", "{corrupt}");
    assert_eq!(corrupt["moved_aside"], true, "{corrupt}");
    assert!(!path.exists() && set_aside(&store, &id).len() == 1);
    let bad = client
        .post(server.at("/v1/objects/..%2F..%2Fetc/verify"))
        .bearer_auth(read)
        .send()
        .expect("bad id");
    assert_eq!(bad.status().as_u16(), 400);
}
