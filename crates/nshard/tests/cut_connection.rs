//! A connection cut halfway through a PUT and through a GET (issue 11, permanent suite): a small
//! TCP proxy in the test forwards between the real `nshard` client and a real `nshard serve`, and
//! cuts the first connections after a number of bytes. Nothing partial may become visible on
//! either side, and running the command again completes the transfer byte for byte.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::serve::Served;
use common::{nshard, random_bytes, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::MAX_OBJECT_SIZE;

/// Which way the proxy counts bytes before cutting.
#[derive(Clone, Copy)]
enum Dir {
    /// Client to server (a PUT body).
    Up,
    /// Server to client (a GET body).
    Down,
}

/// A proxy on 127.0.0.1 in front of `upstream`. The first `cut_conns` connections that carry
/// more than `cut_after` bytes in direction `dir` are cut there (both sockets shut down).
struct Proxy {
    addr: String,
    cuts: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: String, dir: Dir, cut_after: usize, cut_conns: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let cuts = Arc::new(AtomicUsize::new(0));
        let cuts2 = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let cut = cuts2.clone();
                let (src_up, dst_up) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (src_down, dst_down) = (server, client);
                let limit = move |d: Dir| {
                    let active = matches!((d, dir), (Dir::Up, Dir::Up) | (Dir::Down, Dir::Down));
                    active.then_some(cut_after)
                };
                let c1 = cut.clone();
                std::thread::spawn(move || pump(src_up, dst_up, limit(Dir::Up), c1, cut_conns));
                std::thread::spawn(move || {
                    pump(src_down, dst_down, limit(Dir::Down), cut, cut_conns)
                });
            }
        });
        Proxy { addr, cuts }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies `src` to `dst`; with a limit (while fewer than `max_cuts` connections were cut), shuts
/// both down after that many bytes.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    limit: Option<usize>,
    cuts: Arc<AtomicUsize>,
    max_cuts: usize,
) {
    let _ = src.set_read_timeout(Some(Duration::from_secs(120)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = limit {
            if sent + n > l && cuts.load(Ordering::SeqCst) < max_cuts {
                cuts.fetch_add(1, Ordering::SeqCst);
                let _ = dst.write_all(&buf[..l.saturating_sub(sent)]);
                let _ = src.shutdown(Shutdown::Both);
                let _ = dst.shutdown(Shutdown::Both);
                return;
            }
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = dst.shutdown(Shutdown::Write);
}

/// Decodes and re-hashes every object in a store directory; returns how many there are.
fn verify_dir_store(root: &Path) -> usize {
    let st = LocalStore::at(root.join("objects"), root.join("tmp"));
    let ids = st.list().expect("list");
    for id in &ids {
        st.get(id, MAX_OBJECT_SIZE)
            .unwrap_or_else(|e| panic!("object {id} is bad: {e}"));
    }
    ids.len()
}

/// A repo with a 24 MiB file committed in several chunks.
fn committed() -> (TestRepo, Vec<u8>) {
    let repo = TestRepo::new();
    let data = random_bytes(24 << 20, 99);
    repo.write("m/model.bin", &data);
    repo.ok(&["track", "m/model.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    (repo, data)
}

fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = nshard(dir).args(args).output().expect("runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_put_cut_halfway_leaves_nothing_partial_and_push_completes() {
    let d = tempfile::tempdir().expect("tmp");
    let s = Served::start(&d.path().join("store"), &[], &[]);
    let (repo, data) = committed();
    // Cut three uploads 1.5 MiB into their bodies (more cuts than one push retries).
    let proxy = Proxy::start(s.addr.clone(), Dir::Up, 3 << 19, 3);
    let url = proxy.url();
    let mut pushed = false;
    for _ in 0..5 {
        let (ok, err) = run(repo.path(), &["push", "--remote", &url]);
        // Whatever happened, the server holds only whole, verified objects.
        verify_dir_store(&s.store);
        if ok {
            pushed = true;
            break;
        }
        assert!(!err.is_empty());
    }
    assert!(pushed, "push never completed through the proxy");
    assert!(
        proxy.cuts.load(Ordering::SeqCst) >= 1,
        "no connection was cut"
    );
    // The server's copy rebuilds the file byte for byte.
    let other = TestRepo::new();
    std::fs::create_dir_all(other.join("m")).expect("mkdir");
    std::fs::copy(
        repo.join("m/model.bin.shard.json"),
        other.join("m/model.bin.shard.json"),
    )
    .expect("copy manifest");
    other.ok(&["pull", "--remote", &s.url]);
    other.ok(&["checkout"]);
    assert_eq!(other.read("m/model.bin"), data);
    other.ok(&["verify"]);
}

#[test]
fn a_get_cut_halfway_leaves_nothing_partial_and_pull_completes() {
    let d = tempfile::tempdir().expect("tmp");
    let s = Served::start(&d.path().join("store"), &[], &[]);
    let (repo, data) = committed();
    repo.ok(&["push", "--remote", &s.url]);
    let proxy = Proxy::start(s.addr.clone(), Dir::Down, 3 << 19, 3);
    let url = proxy.url();
    let other = TestRepo::new();
    std::fs::create_dir_all(other.join("m")).expect("mkdir");
    std::fs::copy(
        repo.join("m/model.bin.shard.json"),
        other.join("m/model.bin.shard.json"),
    )
    .expect("copy manifest");
    let mut pulled = false;
    for _ in 0..5 {
        let (ok, err) = run(other.path(), &["pull", "--remote", &url]);
        // Whatever happened, the local store holds only whole, verified objects.
        verify_dir_store(&other.join(".shard"));
        if ok {
            pulled = true;
            break;
        }
        assert!(!err.is_empty());
    }
    assert!(pulled, "pull never completed through the proxy");
    assert!(
        proxy.cuts.load(Ordering::SeqCst) >= 1,
        "no connection was cut"
    );
    other.ok(&["checkout"]);
    assert_eq!(other.read("m/model.bin"), data);
    other.ok(&["verify"]);
}
