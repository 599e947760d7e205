//! A real `nshard serve` process on a free 127.0.0.1 port, for tests.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `nshard serve`; killed when dropped.
pub struct Served {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The store directory.
    pub store: PathBuf,
    stderr_path: PathBuf,
}

/// Path of the `nshard` binary under test.
pub fn nshard_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("nshard")
}

impl Served {
    /// Starts `nshard serve --listen 127.0.0.1:0 --store STORE EXTRA…` with `envs`, waits for its
    /// address line. Logs go to `STORE.log` (appended, so restarts keep earlier logs).
    pub fn start(store: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Served {
        Self::start_on(store, "127.0.0.1:0", extra, envs)
    }

    /// Like [`Served::start`] on a given listen address.
    pub fn start_on(store: &Path, listen: &str, extra: &[&str], envs: &[(&str, &str)]) -> Served {
        Self::spawn(store.as_os_str(), store, listen, extra, envs)
    }

    /// `nshard serve --store STORE` for a store that is not a directory (`s3://…`); logs go to
    /// `LOG_BASE.log`.
    pub fn start_store(
        log_base: &Path,
        store: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Served {
        Self::spawn(store.as_ref(), log_base, "127.0.0.1:0", extra, envs)
    }

    fn spawn(
        store_arg: &std::ffi::OsStr,
        store: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Served {
        let stderr_path = store.with_extension("log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("open server log");
        let mut cmd = Command::new(nshard_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--store")
            .arg(store_arg)
            .args(extra)
            .env_remove("NSHARD_SERVE_TOKENS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn nshard serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nshard serve did not start (stdout {line:?}); log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let url = url.to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Served {
            child,
            addr,
            url,
            store: store.to_path_buf(),
            stderr_path,
        }
    }

    /// `URL/PATH`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        nshard_remote::install_tls_provider();
        reqwest::blocking::get(self.at("/metrics"))
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// Files under `objects/` (what a reader could see).
    pub fn object_files(&self) -> Vec<PathBuf> {
        walkdir(&self.store.join("objects"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../../../nshard-server/tests/common/raw.rs"]
mod raw;
// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use raw::{
    client, expect_error, metric_value, object, raw_connect, raw_request, walkdir, zstd_object,
};
