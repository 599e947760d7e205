//! A git world for `nshard remote gc` tests on any backend: a bare origin, clones set up with
//! hooks, and a data remote (a directory, `nshard serve`, or an S3 prefix) reached with the
//! credentials given to every command (and to git, whose hooks run nshard).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use nshard_core::{ObjectId, Store};

use super::random_bytes;

/// 64 KiB fixed chunks: a 1 MiB model has 16 chunks, and a fine-tune of two of them adds two.
const CONFIG: &str = "[chunking]\nalgorithm = \"fixed\"\nsize = 65536\n";

pub struct GcWorld {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// The data remote's URL.
    pub url: String,
    /// Environment of every command (credentials).
    pub envs: Vec<(String, String)>,
    /// Environment of `remote gc` (an admin token on a server).
    pub gc_envs: Vec<(String, String)>,
    /// How the test itself opens the remote (with full rights) to look at it.
    open: nshard_remote::OpenOptions,
    /// Keeps a server alive for the world's lifetime.
    pub served: Option<super::serve::Served>,
}

impl GcWorld {
    /// A world whose data remote is a directory.
    pub fn dir() -> GcWorld {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        fs::create_dir(root.join("store")).expect("store dir");
        let url = root.join("store").display().to_string();
        Self::with(tmp, url, Vec::new(), Vec::new(), None)
    }

    /// A world around an existing remote: `envs` for the commands, `gc_envs` for `remote gc`
    /// and the test's own look at the remote (its `NSHARD_TOKEN`, its `AWS_*` settings).
    pub fn with(
        tmp: tempfile::TempDir,
        url: String,
        envs: Vec<(String, String)>,
        gc_envs: Vec<(String, String)>,
        served: Option<super::serve::Served>,
    ) -> GcWorld {
        let admin_token = gc_envs
            .iter()
            .find(|(k, _)| k == "NSHARD_TOKEN")
            .map(|(_, v)| v.clone());
        let root = tmp.path().to_path_buf();
        super::git(&root, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        let s3 = nshard_remote::S3Options {
            settings: gc_envs
                .iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .cloned()
                .collect(),
        };
        GcWorld {
            _tmp: tmp,
            root,
            url,
            envs,
            gc_envs,
            open: nshard_remote::OpenOptions {
                token: admin_token,
                s3,
            },
            served,
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `nshard` in `dir` with the world's credentials.
    pub fn nshard(&self, dir: &Path) -> assert_cmd::Command {
        let mut c = super::nshard(dir);
        c.envs(self.envs.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `nshard args…` that must succeed; its stdout.
    pub fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.nshard(dir).args(args).output().expect("runs");
        assert!(out.status.success(), "nshard {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `nshard args… --json` that must succeed.
    pub fn json(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let out = self
            .nshard(dir)
            .args(args)
            .arg("--json")
            .output()
            .expect("runs");
        assert!(out.status.success(), "nshard {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// `nshard args…` that must fail; its stderr.
    pub fn fails(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.nshard(dir).args(args).output().expect("runs");
        assert!(
            !out.status.success(),
            "nshard {args:?} succeeded: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `nshard remote gc data ARGS… --json`, with gc's credentials.
    pub fn gc(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let out = self
            .gc_cmd(dir)
            .args(["remote", "gc", "data"])
            .args(args)
            .arg("--json")
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "nshard remote gc {args:?}: {}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// `nshard remote gc data --grace 0` with gc's credentials, which must fail; its stderr.
    pub fn gc_fails(&self, dir: &Path) -> String {
        let out = self
            .gc_cmd(dir)
            .args(["remote", "gc", "data", "--grace", "0"])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "remote gc succeeded: {}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `nshard` in `dir` with gc's credentials.
    pub fn gc_cmd(&self, dir: &Path) -> assert_cmd::Command {
        let mut c = self.nshard(dir);
        c.envs(self.gc_envs.iter().map(|(k, v)| (k, v)));
        c
    }

    /// git in `dir` with the world's credentials (the hooks run nshard).
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=NeuroShard Test"])
            .args(["-c", "user.email=test@example.com"])
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn clone_of(&self, origin: &str, name: &str) -> PathBuf {
        self.git(&self.root, &["clone", "-q", origin, name]);
        self.p(name)
    }

    /// A clone of `origin` set up with NeuroShard: hooks, fixed chunks, the data remote `data`
    /// (in the clone's own config, where credentials from the environment may go).
    pub fn owner_of(&self, origin: &str, name: &str) -> PathBuf {
        let a = self.clone_of(origin, name);
        self.ok(&a, &["init"]);
        fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
        self.ok(&a, &["git-init"]);
        self.ok(
            &a,
            &["remote", "add", "data", &self.url, "--local", "--default"],
        );
        fs::create_dir_all(a.join("models")).expect("models");
        self.ok(&a, &["track", "models/"]);
        a
    }

    /// A later clone: git clone, the remote, the data of its checkout, then the hooks.
    pub fn colleague(&self, name: &str) -> PathBuf {
        let b = self.clone_of("origin.git", name);
        self.ok(
            &b,
            &["remote", "add", "data", &self.url, "--local", "--default"],
        );
        self.ok(&b, &["pull", "--checkout"]);
        self.ok(&b, &["git-init"]);
        b
    }

    /// `models/m.bin` as the manifest in clone `from` names it, rebuilt from the remote alone in
    /// a fresh clone `name` (the manifest handed over, then pull and checkout).
    pub fn rebuild_elsewhere(&self, from: &Path, name: &str) -> Vec<u8> {
        let c = self.colleague(name);
        fs::copy(
            from.join("models/m.bin.shard.json"),
            c.join("models/m.bin.shard.json"),
        )
        .expect("hand over the manifest");
        self.ok(&c, &["pull"]);
        self.ok(&c, &["checkout", "--force", "models/m.bin"]);
        fs::read(c.join("models/m.bin")).expect("rebuilt file")
    }

    /// Commits `data` as `models/m.bin` with nshard and git, and pushes with git (the hook sends
    /// the data and the root record).
    pub fn commit_push(&self, dir: &Path, data: &[u8], msg: &str) {
        fs::write(dir.join("models/m.bin"), data).expect("write model");
        self.ok(dir, &["commit", "-m", msg]);
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-q", "-m", msg]);
        self.git(dir, &["push", "-q", "origin", "HEAD"]);
    }

    /// v1, v2, v3 pushed with git from a fresh owner clone `a`.
    pub fn three_versions(&self) -> (PathBuf, [Vec<u8>; 3]) {
        let a = self.owner_of("origin.git", "a");
        let v1 = model(1);
        let v2 = fine_tune(&v1, 2, 2);
        let v3 = fine_tune(&v2, 2, 3);
        self.commit_push(&a, &v1, "v1");
        self.commit_push(&a, &v2, "v2");
        self.commit_push(&a, &v3, "v3");
        (a, [v1, v2, v3])
    }

    /// Rewinds main to its parent and force-pushes: the old tip is named by no ref.
    pub fn rewind(&self, a: &Path) {
        self.git(a, &["reset", "-q", "--hard", "HEAD~1"]);
        self.git(a, &["push", "-q", "-f", "origin", "HEAD"]);
    }

    fn store(&self) -> Arc<dyn Store> {
        runtime()
            .block_on(nshard_remote::open(
                &nshard_core::RemoteUrl::parse(&self.url, &self.root).expect("url"),
                &self.open,
            ))
            .expect("open the remote")
    }

    /// Every object id on the remote, sorted.
    pub fn object_ids(&self) -> Vec<String> {
        let store = self.store();
        let mut ids: Vec<String> = runtime()
            .block_on(store.list_objects())
            .expect("list")
            .into_iter()
            .map(|o| o.id.to_hex())
            .collect();
        ids.sort();
        ids
    }

    /// Writes record `unwritten` (`SPACE/KEY/STAMP`) with `bytes` on the remote, as an admin.
    pub fn put_record(&self, unwritten: &str, bytes: &[u8]) {
        let name =
            nshard_core::backend::RecordName::parse_unwritten(unwritten).expect("a record name");
        let store = self.store();
        runtime()
            .block_on(store.put_record(&name, bytes.to_vec()))
            .expect("put record");
    }

    /// Every record name on the remote, as text.
    pub fn record_names(&self) -> Vec<String> {
        let store = self.store();
        runtime()
            .block_on(store.list_records())
            .expect("list records")
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }

    pub fn has_object(&self, id: &str) -> bool {
        let id = ObjectId::parse(id).expect("id");
        let store = self.store();
        runtime().block_on(store.size(&id)).expect("size").is_some()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn model(seed: u64) -> Vec<u8> {
    random_bytes(1 << 20, seed)
}

/// `base` with its first `chunks` 64 KiB chunks replaced.
pub fn fine_tune(base: &[u8], chunks: usize, seed: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    let fresh = random_bytes(chunks * 65536, seed);
    v[..fresh.len()].copy_from_slice(&fresh);
    v
}

/// The manifest object id and chunk ids of `models/m.bin` at git revision `rev`.
pub fn version_objects(dir: &Path, rev: &str) -> (String, Vec<String>) {
    let bytes = std::process::Command::new("git")
        .args(["show", &format!("{rev}:models/m.bin.shard.json")])
        .current_dir(dir)
        .output()
        .expect("git show")
        .stdout;
    let m: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest json");
    let chunks = m["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    (ObjectId::of(&bytes).to_hex(), chunks)
}
