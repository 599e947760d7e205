//! Shared helpers for the integration tests: they drive the real `nshard` binary in temp dirs.
#![allow(dead_code)]

pub mod checkpoints;
pub mod failpoints;
pub mod gc_world;
pub mod proxy;
pub mod python;
pub mod s3;
pub mod serve;
pub mod wire;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A `nshard` command running in `dir`, with progress bars off.
pub fn nshard(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("nshard").expect("nshard binary is built");
    // Never the developer's own user config (remotes, tokens): a path that does not exist.
    c.current_dir(dir).env("NO_COLOR", "1").env(
        "XDG_CONFIG_HOME",
        std::env::temp_dir().join("nshard-tests-no-user-config"),
    );
    c
}

/// Runs `nshard args…` in `dir`, asserts success, returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = nshard(dir).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "nshard {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Runs `nshard args…` in `dir`, asserts failure, returns stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out: Output = nshard(dir).args(args).output().expect("runs");
    assert!(
        !out.status.success(),
        "nshard {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf8 stderr")
}

/// Runs `nshard args… --json`, asserts it exits 0, and parses stdout.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    json_exit(dir, args, 0)
}

/// Runs `nshard args… --json`, asserts it exits with `code` (documented exit statuses, e.g. 1
/// when `status` finds an invalid manifest or `verify` a problem), and parses stdout.
pub fn json_exit(dir: &Path, args: &[&str], code: i32) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = nshard(dir).args(&a).output().expect("runs");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "nshard {a:?}: bad JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(code),
        "nshard {a:?}: exit status\nstdout: {v}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// Deterministic pseudo-random bytes (xorshift64*): the contract suite's generator.
pub use nshard_remote::testing::random_bytes;

/// A fresh temp dir holding an initialised repository.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// The work tree's manifest of the data file `rel`, as JSON.
    pub fn manifest(&self, rel: &str) -> serde_json::Value {
        serde_json::from_slice(&self.read(&format!("{rel}.shard.json"))).expect("manifest json")
    }

    /// The chunk ids of the work-tree manifest of `rel`, in file order.
    pub fn chunk_ids(&self, rel: &str) -> Vec<String> {
        self.manifest(rel)["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Where the local store keeps the object `id` (64 hex characters).
    pub fn object_path(&self, id: &str) -> PathBuf {
        self.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..]))
    }

    /// A repo with one committed file `m/model.bin` of `len` random bytes.
    pub fn committed(len: usize) -> (TestRepo, Vec<u8>) {
        let repo = TestRepo::new();
        let data = random_bytes(len, 42);
        repo.write("m/model.bin", &data);
        repo.ok(&["track", "m/model.bin"]);
        repo.ok(&["commit", "-m", "v1"]);
        (repo, data)
    }

    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        ok(dir.path(), &["init"]);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Puts `line` (a top-level setting, e.g. `delta_background = false`) at the top of
    /// `.shard/config.toml`.
    pub fn config_line(&self, line: &str) {
        let cfg = self.join(".shard/config.toml");
        let text = std::fs::read_to_string(&cfg).expect("config");
        std::fs::write(&cfg, format!("{line}\n{text}")).expect("write config");
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.join(rel)).expect("read")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.path(), args)
    }

    pub fn fails(&self, args: &[&str]) -> String {
        fails(self.path(), args)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        json(self.path(), args)
    }

    pub fn json_exit(&self, args: &[&str], code: i32) -> serde_json::Value {
        json_exit(self.path(), args, code)
    }
}

/// Every file under `root` (directories named `cache`, such as `.shard/cache`, skipped) with its
/// size, sorted: compare two calls to see that a command wrote nothing.
pub fn walk(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls") {
            let e = e.expect("entry");
            let md = std::fs::symlink_metadata(e.path()).expect("md");
            if md.is_dir() {
                if e.file_name() != "cache" {
                    stack.push(e.path());
                }
            } else {
                out.push((e.path().display().to_string(), md.len()));
            }
        }
    }
    out.sort();
    out
}

/// The regular files under `root/dir`, each by its path relative to `root`, with its bytes.
pub fn read_tree(root: &Path, dir: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    serve::walkdir(&root.join(dir))
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let rel = p.strip_prefix(root).expect("under root");
            (
                rel.to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

/// Stores `raw` as an object (zstd-encoded) in the object store at `dir` (its `objects/` and
/// `tmp/`, as a directory remote lays them out); returns its id.
pub fn put_object(dir: &Path, raw: &[u8]) -> nshard_core::ObjectId {
    let s = nshard_core::backend::LocalStore::open(dir.join("objects"), dir.join("tmp"))
        .expect("store");
    let id = nshard_core::ObjectId::of(raw);
    s.put_trusted(
        &id,
        &nshard_core::format::Encoder::new().encode(raw, nshard_core::format::DataHint::Unknown),
    )
    .expect("put");
    id
}

/// Runs `git args…` in `dir` with a fixed identity; panics with git's message if it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=NeuroShard Test",
            "-c",
            "user.email=test@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `strace` can trace a process here (it needs the tool and ptrace). Tests that need it
/// call this and return early when it is false; in CI (the `CI` variable is set, and `.ci/run`
/// installs strace) a missing strace fails the test instead of skipping it silently.
pub fn strace_works(test: &str) -> bool {
    tool_works(test, "strace", &["-f", "-o", "/dev/null", "true"])
}

/// Whether `tool args…` runs successfully here; when it does not, fails the test in CI and
/// reports a skip loudly elsewhere (see [`strace_works`]).
pub fn tool_works(test: &str, tool: &str, args: &[&str]) -> bool {
    let works = std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        let msg = format!("{test}: SKIPPED: `{tool}` is missing or does not work here");
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg}; CI must provide it"
        );
        eprintln!("*** {msg} ***");
    }
    works
}

/// Sends `signal` (e.g. "STOP", "CONT", "KILL") to process `pid` with `kill(1)`.
pub fn signal(pid: u32, signal: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{signal} {pid}");
}
