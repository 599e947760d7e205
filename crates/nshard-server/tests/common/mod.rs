//! The server under test: the real app of this crate ([`Server::bind`] and [`Server::run`], as
//! `nshard serve` runs them) on a free 127.0.0.1 port, served by a tokio runtime of its own inside
//! the test process, and reached over real sockets. Also protocol v1 by hand: raw requests no
//! well-behaved client would send.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nshard_core::{ObjectId, RemoteUrl};
use nshard_server::{Server, ServerConfig, Tokens};
use reqwest::blocking::Response;
use reqwest::StatusCode;

#[allow(unused_imports)]
pub use nshard_remote::testing::random_bytes;

mod raw;
#[allow(unused_imports)]
pub use raw::*;

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

    /// `GET /v1/health` (no token needed): its JSON.
    pub fn health(&self) -> serde_json::Value {
        client()
            .get(self.at("/v1/health"))
            .send()
            .expect("health")
            .json()
            .expect("health JSON")
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
    server_with(|_| {})
}

/// A temp dir and a server over `DIR/store` with the defaults as `edit` changes them (tokens,
/// limits).
pub fn server_with(edit: impl FnOnce(&mut ServerConfig)) -> (tempfile::TempDir, TestServer) {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    edit(&mut c);
    let s = TestServer::start_with(c);
    (d, s)
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
