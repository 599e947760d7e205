//! Transfers under faults, as documented: 429 and 5xx answers and dropped connections are
//! retried with backoff and counted in `retries`; a pull cut off by the network resumes where it
//! stopped; `pull` fetches again an object that checkout quarantined; a directory remote's objects
//! are read-only. Real `nshard serve` on 127.0.0.1, with a fault-injecting proxy in front.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::proxy::{Fault, FaultProxy};
use common::serve::{walkdir, Served};
use common::{random_bytes, TestRepo};

/// 16 KiB fixed blocks: many objects from little data.
const FIXED_16K: &str = "[chunking]\nalgorithm = \"fixed\"\nsize = 16384\n";

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A repo with `m.bin` (`size` random bytes) committed in 16 KiB blocks.
fn committed(size: usize) -> (TestRepo, Vec<u8>) {
    let r = TestRepo::new();
    fs::write(r.join(".shard/config.toml"), FIXED_16K).expect("config");
    let data = random_bytes(size, 41);
    r.write("m.bin", &data);
    r.ok(&["track", "m.bin"]);
    r.ok(&["commit", "-m", "v1"]);
    (r, data)
}

/// What `git clone` gives another user: the config and the manifest, no data.
fn clone_of(src: &TestRepo) -> TestRepo {
    let b = TestRepo::new();
    fs::copy(src.join(".shard/config.toml"), b.join(".shard/config.toml")).expect("config");
    fs::copy(src.join("m.bin.shard.json"), b.join("m.bin.shard.json")).expect("manifest");
    b
}

/// How many of `m.bin`'s chunks the local store has.
fn local_chunks(r: &TestRepo) -> usize {
    let m: serde_json::Value = serde_json::from_slice(&r.read("m.bin.shard.json")).expect("json");
    m["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .filter(|id| {
            r.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..]))
                .is_file()
        })
        .count()
}

fn server() -> (tempfile::TempDir, Served) {
    let d = tempfile::tempdir().expect("tmp");
    let s = Served::start(&d.path().join("store"), &[], &[]);
    (d, s)
}

#[test]
fn transient_answers_and_dropped_connections_are_retried_and_counted() {
    let (_d, s) = server();
    let (a, data) = committed(1 << 20);
    // The first request (the health check, made once when connecting) passes.
    let plan = [
        Fault::Pass,
        Fault::Status(503),
        Fault::Status(429),
        Fault::Status(500),
        Fault::CutResponseAfter(20),
    ];
    let proxy = FaultProxy::start(&s.addr, &plan);
    let p = a.json(&["push", "--remote", &proxy.url]);
    assert_eq!(proxy.faults_served(), plan.len() - 1, "every fault was hit");
    assert_eq!(num(&p, "retries"), plan.len() as u64 - 1, "{p}");
    assert_eq!(num(&p, "objects"), 65, "{p}");
    let b = clone_of(&a);
    let proxy = FaultProxy::start(&s.addr, &plan);
    let p = b.json(&["pull", "--remote", &proxy.url]);
    assert_eq!(proxy.faults_served(), plan.len() - 1, "every fault was hit");
    assert_eq!(num(&p, "retries"), plan.len() as u64 - 1, "{p}");
    b.ok(&["checkout"]);
    assert!(b.read("m.bin") == data, "pulled content differs");
    // Without faults nothing is retried.
    let c = clone_of(&a);
    let p = c.json(&["pull", "--remote", &s.url]);
    assert_eq!(num(&p, "retries"), 0, "{p}");
}

#[test]
fn a_busy_server_at_connect_time_is_retried() {
    let (_d, s) = server();
    let (a, _) = committed(1 << 20);
    // The health check made when connecting meets a busy server twice, then gets through.
    let plan = [Fault::Status(503), Fault::CutResponseAfter(20)];
    let proxy = FaultProxy::start(&s.addr, &plan);
    let p = a.json(&["push", "--remote", &proxy.url]);
    assert_eq!(proxy.faults_served(), plan.len(), "every fault was hit");
    assert_eq!(num(&p, "objects"), 65, "{p}");
    // A permanent refusal is not retried.
    let proxy = FaultProxy::start(&s.addr, &[Fault::Status(404), Fault::Status(404)]);
    let err = a.fails(&["push", "--remote", &proxy.url]);
    assert!(err.contains("404"), "{err}");
    assert_eq!(
        proxy.faults_served(),
        1,
        "a 404 at connect time is retried: {err}"
    );
}

#[test]
fn a_pull_cut_off_by_the_network_resumes_with_what_is_missing() {
    let (_d, s) = server();
    let (a, data) = committed(1 << 20);
    a.ok(&["push", "--remote", &s.url]);
    let b = clone_of(&a);
    // The network goes down after about 400 KiB of the 1 MiB.
    let proxy = FaultProxy::start(&s.addr, &[]);
    proxy.cut_all_after(400 << 10);
    let err = b.fails(&["pull", "--remote", &proxy.url]);
    assert!(err.contains(&proxy.url), "{err}");
    let got = local_chunks(&b);
    assert!(
        got > 0 && got < 64,
        "{got} of 64 chunks arrived before the cut"
    );
    assert!(!b.join("m.bin").exists());
    // Run again (the network is back): only what did not arrive travels.
    let p = b.json(&["pull", "--remote", &s.url]);
    assert_eq!(num(&p, "objects") as usize, 64 - got, "{p}");
    assert_eq!(num(&p, "skipped") as usize, got, "{p}");
    b.ok(&["checkout"]);
    assert!(b.read("m.bin") == data, "pulled content differs");
}

#[test]
fn pull_fetches_a_quarantined_object_again() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let (a, data) = committed(200_000);
    a.ok(&["push", "--remote", url]);
    let m: serde_json::Value = serde_json::from_slice(&a.read("m.bin.shard.json")).expect("json");
    let id = m["chunks"][3]["id"].as_str().expect("id").to_string();
    let obj = a.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..]));
    let mut bytes = fs::read(&obj).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&obj, bytes).expect("corrupt");
    fs::remove_file(a.join("m.bin")).expect("rm");
    let err = a.fails(&["checkout"]);
    assert!(err.contains(&id) && err.contains(".shard/corrupt"), "{err}");
    assert!(!obj.exists(), "the corrupt object is still in the store");
    let p = a.json(&["pull", "--remote", url]);
    assert_eq!(num(&p, "objects"), 1, "{p}");
    assert!(obj.is_file());
    a.ok(&["checkout"]);
    assert!(a.read("m.bin") == data, "checked-out content differs");
}

#[test]
fn directory_remote_objects_are_read_only() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let (a, _) = committed(100_000);
    a.ok(&["push", "--remote", url]);
    let files = walkdir(&remote.path().join("objects"));
    assert_eq!(files.len(), 8, "{files:?}");
    for f in &files {
        let mode = fs::metadata(f).expect("md").permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable ({mode:o})", f.display());
        assert_eq!(
            mode & 0o444,
            0o444,
            "{} is not readable by all ({mode:o})",
            f.display()
        );
    }
}
