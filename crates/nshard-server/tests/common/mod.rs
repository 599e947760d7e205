//! The server under test: the real app of this crate ([`Server::bind`] and [`Server::run`], as
//! `nshard serve` runs them) on a free 127.0.0.1 port, served by a tokio runtime of its own inside
//! the test process, and reached over real sockets. Also protocol v1 by hand: raw requests no
//! well-behaved client would send.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nshard_core::format::{DataHint, Encoder};
use nshard_core::{ObjectId, RemoteUrl};
use nshard_server::{Server, ServerConfig, Tokens};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

pub use nshard_remote::testing::random_bytes;

pub const WRITE: &str = "write-token-for-tests-0123456789";
pub const READ: &str = "read-token-for-tests-0123456789";

/// A running server; stopped (its runtime shut down) when dropped.
pub struct TestServer {
    runtime: Option<tokio::runtime::Runtime>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The store directory.
    pub store: PathBuf,
    log: Log,
}

/// The configuration `nshard serve --store STORE` starts with (no tokens, default limits).
pub fn config(store: &Path) -> ServerConfig {
    ServerConfig::new(RemoteUrl::Dir(store.to_path_buf()))
}

/// `tokens` (`SCOPE:TOKEN` lines) parsed as the server's token file would be.
pub fn tokens(text: &str) -> Tokens {
    Tokens::parse(text, "test tokens").expect("test tokens parse")
}

impl TestServer {
    /// A server over the directory store `store` with the defaults of `nshard serve`.
    pub fn start(store: &Path) -> TestServer {
        Self::start_with(config(store))
    }

    /// A server with `config`, listening on 127.0.0.1:0.
    pub fn start_with(config: ServerConfig) -> TestServer {
        Self::start_on(config, "127.0.0.1:0".parse().expect("address"))
    }

    /// A server with `config` on `listen` (port 0 picks a free one).
    pub fn start_on(config: ServerConfig, listen: SocketAddr) -> TestServer {
        let store = match &config.store {
            RemoteUrl::Dir(d) => d.clone(),
            other => panic!("test servers use directory stores, not {other}"),
        };
        let log = Log::default();
        let dispatch = log.dispatch();
        // Two workers: tests run in parallel on a small machine. Every thread of the runtime
        // (workers and blocking pool) logs into this server's own log.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("test-server")
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&dispatch);
                LOG_GUARD.with(|g| *g.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| LOG_GUARD.with(|g| drop(g.borrow_mut().take())))
            .build()
            .expect("test server runtime");
        let server = runtime
            .block_on(Server::bind(config, listen))
            .unwrap_or_else(|e| panic!("the test server did not start: {e}"));
        let port = server.local_addr().port();
        // As `nshard serve` runs it; the runtime's shutdown ends it.
        runtime.spawn(server.run(std::future::pending()));
        let addr = format!("127.0.0.1:{port}");
        TestServer {
            runtime: Some(runtime),
            url: format!("http://{addr}"),
            addr,
            store,
            log,
        }
    }

    /// `URL/PATH`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// What the server logged so far (its tracing output, as `nshard serve` writes to stderr).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Polls `GET /metrics` until `metric` has `value` (bounded).
    pub fn wait_metric(&self, metric: &str, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if metric_value(&self.metrics(), metric) == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metric {metric} never reached {value}:\n{}",
                self.metrics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics` (anonymous).
    pub fn metrics(&self) -> String {
        client()
            .get(self.at("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// Files under `objects/` (what a reader could see).
    pub fn object_files(&self) -> Vec<PathBuf> {
        walkdir(&self.store.join("objects"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Connections a test left stalled must not hold the test up.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

thread_local! {
    /// The log a runtime thread writes to, for as long as the thread lives.
    static LOG_GUARD: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A server's log: the `info` level and up, as `nshard serve` logs by default, in memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn dispatch(&self) -> tracing::Dispatch {
        let log = self.clone();
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .with_target(false)
                .with_writer(move || log.clone())
                .finish(),
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A temp dir and a server with the defaults over `DIR/store`.
pub fn dev_server() -> (tempfile::TempDir, TestServer) {
    let d = tempfile::tempdir().expect("tmp");
    let s = TestServer::start(&d.path().join("store"));
    (d, s)
}

/// Every file under `dir`, recursively.
pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A raw HTTP/1.1 connection for requests no well-behaved client would send.
pub fn raw_connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// Sends `head` then `body` on a fresh connection and returns the whole response as text (the
/// request asks the server to close the connection).
pub fn raw_request(addr: &str, head: &str, body: &[u8]) -> String {
    let mut s = raw_connect(addr);
    s.write_all(head.as_bytes()).expect("send head");
    s.write_all(body).expect("send body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// An object of `len` random bytes: its id, raw bytes and encoded form.
pub fn object(len: usize, seed: u64) -> (ObjectId, Vec<u8>, Vec<u8>) {
    let raw = random_bytes(len, seed);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    (ObjectId::of(&raw), raw, enc)
}

/// A compressible object (its encoded form is zstd, not raw).
pub fn zstd_object(len: usize, seed: u64) -> (ObjectId, Vec<u8>) {
    let raw: Vec<u8> = random_bytes(len / 8, seed).repeat(8);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    (ObjectId::of(&raw), enc)
}

pub fn client() -> Client {
    nshard_remote::install_tls_provider();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Asserts a JSON error response with `status` and `code`; returns the message.
pub fn expect_error(r: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status(), status, "wrong status");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let v: serde_json::Value = r.json().expect("JSON error body");
    assert_eq!(v["code"], code, "{v}");
    let msg = v["error"].as_str().expect("error message").to_string();
    assert!(!msg.is_empty());
    msg
}

pub fn put(s: &TestServer, id: &ObjectId, body: Vec<u8>) -> Response {
    client()
        .put(s.at(&format!("/v1/objects/{id}")))
        .body(body)
        .send()
        .expect("PUT")
}

pub fn get(s: &TestServer, id: &ObjectId) -> Response {
    client()
        .get(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("GET")
}

pub fn head_status(s: &TestServer, id: &ObjectId) -> StatusCode {
    client()
        .head(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("HEAD")
        .status()
}

pub fn missing(s: &TestServer, ids: &[String]) -> Response {
    client()
        .post(s.at("/v1/objects/missing"))
        .json(&serde_json::json!({ "ids": ids }))
        .send()
        .expect("POST missing")
}
