//! Coming from Git LFS: `nshard lfs import` and `nshard lfs agent`, with the real git-lfs (Debian's)
//! and real git, in a HOME of their own (git-lfs's filters installed there).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::checkpoints::series;
use common::serve::{nshard_bin, Served};

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl World {
    /// `None` (with a loud skip; a failure in CI) when git-lfs is not installed.
    fn new(test: &str) -> Option<World> {
        if !common::tool_works(test, "git", &["lfs", "version"]) {
            return None;
        }
        let tmp = tempfile::tempdir().expect("makes a temporary directory");
        let root = tmp
            .path()
            .canonicalize()
            .expect("makes a temporary directory");
        let home = root.join("home");
        std::fs::create_dir_all(&home).expect("creates the directory");
        let w = World {
            _tmp: tmp,
            root,
            home,
        };
        for (k, v) in [
            ("user.name", "LFS Test"),
            ("user.email", "lfs@example.com"),
            ("init.defaultBranch", "main"),
        ] {
            w.git(&w.root, &["config", "--global", k, v]);
        }
        w.git(&w.root, &["lfs", "install"]);
        Some(w)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A new, empty directory `rel` (a NeuroShard directory remote).
    fn new_dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("creates the directory");
        p
    }

    fn env(&self, c: &mut Command) {
        c.env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
    }

    /// Runs `program args…` in `dir`, killed after two minutes (a hang fails the test, never
    /// blocks it).
    fn run(&self, dir: &Path, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Ran {
        let out = self.root.join(format!(".out-{}", std::process::id()));
        let err = self.root.join(format!(".err-{}", std::process::id()));
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("creates the output file"))
            .stderr(std::fs::File::create(&err).expect("creates the output file"));
        self.env(&mut c);
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().expect("waits") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program:?} {args:?} did not finish within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ran {
            ok: status.success(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    fn git_ran(&self, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Ran {
        self.run(dir, Path::new("git"), args, envs)
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let r = self.git_ran(dir, args, &[]);
        assert!(r.ok, "git {args:?} failed:\n{}\n{}", r.stderr, r.stdout);
        r.stdout
    }

    /// `git add -A`, `git commit -m MSG` and `git push origin main` (git-lfs's pre-push hook
    /// sends the LFS objects through whatever agent the clone has).
    fn commit_and_push(&self, dir: &Path, msg: &str) {
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-qm", msg]);
        self.git(dir, &["push", "-q", "origin", "main"]);
    }

    fn ns_ran(&self, dir: &Path, args: &[&str]) -> Ran {
        self.run(dir, &nshard_bin(), args, &[])
    }

    fn ns(&self, dir: &Path, args: &[&str]) -> String {
        let r = self.ns_ran(dir, args);
        assert!(r.ok, "nshard {args:?} failed:\n{}\n{}", r.stderr, r.stdout);
        r.stdout
    }

    fn ns_fails(&self, dir: &Path, args: &[&str]) -> String {
        let r = self.ns_ran(dir, args);
        assert!(
            !r.ok,
            "nshard {args:?} unexpectedly succeeded:\n{}",
            r.stdout
        );
        r.stderr
    }

    /// A bare git remote and a clone of it with `*.safetensors` and `*.bin` tracked by LFS.
    fn lfs_clone(&self, name: &str) -> (PathBuf, PathBuf) {
        let bare = self.path(&format!("{name}.git"));
        self.git(
            &self.root,
            &["init", "-q", "--bare", bare.to_str().expect("UTF-8 path")],
        );
        let work = self.path(name);
        self.git(
            &self.root,
            &[
                "clone",
                "-q",
                bare.to_str().expect("UTF-8 path"),
                work.to_str().expect("UTF-8 path"),
            ],
        );
        self.git(&work, &["lfs", "track", "*.safetensors", "*.bin"]);
        (bare, work)
    }

    /// A clone of `bare` named `name` that holds pointer files only (`GIT_LFS_SKIP_SMUDGE=1`).
    fn pointer_clone(&self, bare: &Path, name: &str) -> PathBuf {
        let clone = self.path(name);
        let r = self.git_ran(
            &self.root,
            &[
                "clone",
                "-q",
                bare.to_str().expect("UTF-8 path"),
                clone.to_str().expect("UTF-8 path"),
            ],
            &[("GIT_LFS_SKIP_SMUDGE", "1")],
        );
        assert!(r.ok, "git clone: {}", r.stderr);
        clone
    }

    /// `nshard lfs install --remote REMOTE` in `dir`.
    fn install(&self, dir: &Path, remote: &Path) -> String {
        self.ns(
            dir,
            &[
                "lfs",
                "install",
                "--remote",
                remote.to_str().expect("UTF-8 path"),
            ],
        )
    }

    fn lfs_files(&self, dir: &Path) -> String {
        self.git(dir, &["lfs", "ls-files", "--name-only"])
    }
}

/// Two versions of a model: the second changes one tensor (`layers.1.weight`, about 1 MB).
fn two_versions() -> (Vec<u8>, Vec<u8>) {
    let v1 = series(1).remove(0);
    let mut v2 = v1.clone();
    // layers.1.weight starts after the header and the 700 000 bf16 values of layers.0.weight.
    let header = 8 + u64::from_le_bytes(v1[..8].try_into().expect("eight bytes")) as usize;
    let start = header + 2 * 700_000;
    for (i, b) in v2[start..start + 2 * 500_000].iter_mut().enumerate() {
        *b = b.wrapping_add((i % 7) as u8 + 1);
    }
    (v1, v2)
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).expect("reads the file")
}

fn dir_bytes(dir: &Path) -> u64 {
    common::walk(dir).iter().map(|(_, n)| n).sum()
}

#[test]
fn import_with_history_keeps_the_file_and_every_version() {
    let Some(w) = World::new("import_with_history_keeps_the_file_and_every_version") else {
        return;
    };
    let (bare, work) = w.lfs_clone("repo");
    let (v1, v2) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    std::fs::write(
        work.join("tokenizer.bin"),
        b"another LFS file, not imported",
    )
    .expect("test step");
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "first checkpoint"]);
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.git(&work, &["commit", "-qam", "second checkpoint"]);
    assert!(w.lfs_files(&work).contains("model.safetensors"));

    w.ns(&work, &["init"]);
    w.ns(&work, &["git-init"]);
    let out = w.ns(&work, &["lfs", "import", "--history", "model.safetensors"]);
    assert!(out.contains("imported 2 versions"), "{out}");
    // git names only the newest version: the output says how the history reaches the remote.
    assert!(out.contains("`nshard push --all-versions`"), "{out}");
    assert_eq!(read(work.join("model.safetensors")), v2);

    // Ready for one commit: the manifest (and config files) staged, the data out of git.
    let staged = w.git(&work, &["diff", "--cached", "--name-status"]);
    assert!(staged.contains("D\tmodel.safetensors"), "{staged}");
    assert!(
        staged.contains("A\tmodel.safetensors.shard.json"),
        "{staged}"
    );
    w.git(&work, &["commit", "-qm", "move the model to NeuroShard"]);
    w.git(&work, &["add", "-A"]);
    assert_eq!(
        w.git(&work, &["status", "--porcelain"]),
        "",
        "git add -A staged more"
    );
    let lfs = w.lfs_files(&work);
    assert!(!lfs.contains("model.safetensors"), "{lfs}");
    assert!(lfs.contains("tokenizer.bin"), "{lfs}");
    let blob = w.git(
        &work,
        &["cat-file", "-p", "HEAD:model.safetensors.shard.json"],
    );
    assert!(
        blob.contains("\"sha256\""),
        "the manifest went through LFS: {blob}"
    );

    // Both versions, oldest first, with their commits' messages.
    let log = w.ns(&work, &["log", "model.safetensors", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&log).expect("parses JSON");
    let entries = log.as_array().expect("log --json is an array");
    let messages: Vec<&str> = entries
        .iter()
        .map(|e| e["message"].as_str().expect("a string"))
        .collect();
    assert_eq!(messages, ["second checkpoint", "first checkpoint"], "{log}");
    let old = entries[1]["version"]
        .as_str()
        .expect("a string")
        .to_string();
    let new = entries[0]["version"]
        .as_str()
        .expect("a string")
        .to_string();
    let diff = w.ns(
        &work,
        &["diff", "model.safetensors", "--from", &old, "--to", &new],
    );
    assert!(diff.contains("layers.1.weight"), "{diff}");
    w.ns(
        &work,
        &[
            "checkout",
            "model.safetensors",
            "--version",
            &old,
            "--force",
        ],
    );
    assert_eq!(read(work.join("model.safetensors")), v1);

    // Other LFS patterns still work: a new .bin goes to LFS.
    std::fs::write(work.join("vocab.bin"), b"new LFS data").expect("writes the file");
    w.git(&work, &["add", "vocab.bin"]);
    w.git(&work, &["commit", "-qm", "vocab"]);
    assert!(w.lfs_files(&work).contains("vocab.bin"));

    // One `git push` runs both pre-push hooks: git-lfs's (chained) sends the .bin files to the
    // LFS store, NeuroShard's sends the model's versions to its remote.
    let store = w.new_dir("ns-store");
    w.ns(
        &work,
        &[
            "remote",
            "add",
            "origin",
            store.to_str().expect("UTF-8 path"),
        ],
    );
    w.git(&work, &["commit", "-qam", "the NeuroShard remote"]);
    w.git(&work, &["push", "-q", "origin", "main"]);
    let lfs_objects: Vec<String> = common::walk(&bare.join("lfs/objects"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let vocab = nshard_core::ObjectId::of(b"new LFS data").to_hex();
    assert!(
        lfs_objects.iter().any(|p| p.ends_with(&vocab)),
        "{lfs_objects:?}"
    );
    let clone = w.path("colleague");
    w.git(
        &w.root,
        &[
            "clone",
            "-q",
            bare.to_str().expect("UTF-8 path"),
            clone.to_str().expect("UTF-8 path"),
        ],
    );
    w.ns(&clone, &["pull", "--checkout"]);
    assert_eq!(read(clone.join("model.safetensors")), v2);
    assert_eq!(read(clone.join("vocab.bin")), b"new LFS data");
}

#[test]
fn import_narrows_attributes_to_the_imported_files_only() {
    let Some(w) = World::new("import_narrows_attributes_to_the_imported_files_only") else {
        return;
    };
    let (_bare, work) = w.lfs_clone("repo");
    // A `git lfs track` line naming one file (with a space and glob characters), and a deeper
    // .gitattributes whose pattern wins over the top one's.
    w.git(&work, &["lfs", "track", "--filename", "my w[1].ckpt"]);
    std::fs::create_dir_all(work.join("models")).expect("creates the directory");
    std::fs::write(
        work.join("models/.gitattributes"),
        "*.pt filter=lfs diff=lfs merge=lfs -text\n",
    )
    .expect("writes the file");
    for (name, data) in [
        ("my w[1].ckpt", &b"one"[..]),
        ("models/a.pt", b"two"),
        ("models/b.pt", b"three"),
    ] {
        std::fs::write(work.join(name), data).expect("writes the file");
    }
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "lfs files"]);
    assert_eq!(
        w.lfs_files(&work).lines().count(),
        3,
        "{}",
        w.lfs_files(&work)
    );
    w.ns(&work, &["init"]);
    w.ns(&work, &["lfs", "import", "my w[1].ckpt", "models/a.pt"]);
    let attr = |p: &str| w.git(&work, &["check-attr", "filter", "--", p]);
    assert!(
        attr("my w[1].ckpt").ends_with(": unspecified\n"),
        "{}",
        attr("my w[1].ckpt")
    );
    assert!(
        attr("models/a.pt").ends_with(": unspecified\n"),
        "{}",
        attr("models/a.pt")
    );
    assert!(attr("models/a.pt.shard.json").ends_with(": unspecified\n"));
    assert!(
        attr("models/b.pt").ends_with(": lfs\n"),
        "{}",
        attr("models/b.pt")
    );
    let top = String::from_utf8(read(work.join(".gitattributes"))).expect("UTF-8");
    assert!(!top.contains("ckpt"), "the track line stayed: {top}");
    w.git(&work, &["commit", "-qm", "import"]);
    let lfs = w.lfs_files(&work);
    assert_eq!(lfs.trim(), "models/b.pt", "{lfs}");
    assert_eq!(read(work.join("my w[1].ckpt")), b"one");
}

#[test]
fn import_fetches_objects_that_are_not_local_and_drops_them_again() {
    let Some(w) = World::new("import_fetches_objects_that_are_not_local_and_drops_them_again")
    else {
        return;
    };
    let (bare, work) = w.lfs_clone("origin");
    let (v1, v2) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    // A name git-lfs's --include would read as a list and a pattern.
    let odd = "run,2 [b].safetensors";
    let mut other = v1.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    std::fs::write(work.join(odd), &other).expect("writes the file");
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "v1"]);
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.git(&work, &["commit", "-qam", "v2"]);
    w.git(&work, &["push", "-q", "origin", "main"]);

    // A clone that has pointers only.
    let clone = w.pointer_clone(&bare, "clone");
    assert!(std::fs::read(clone.join("model.safetensors"))
        .expect("reads the file")
        .starts_with(b"version https://git-lfs"));
    w.ns(&clone, &["init"]);
    let err = w.ns_fails(
        &clone,
        &[
            "lfs",
            "import",
            "model.safetensors",
            "--history",
            "--no-fetch",
        ],
    );
    assert!(err.contains("git lfs fetch"), "{err}");
    assert!(!clone.join("model.safetensors.shard.json").exists());

    let out = w.ns(&clone, &["lfs", "import", "model.safetensors", "--history"]);
    assert!(out.contains("fetched 2 LFS object(s)"), "{out}");
    assert_eq!(read(clone.join("model.safetensors")), v2);
    let objects = clone.join(".git/lfs/objects");
    assert_eq!(
        common::walk(&objects).len(),
        0,
        "the fetched objects stay: {:?}",
        common::walk(&objects)
    );
    let log = w.ns(&clone, &["log", "model.safetensors"]);
    assert!(log.contains("v1") && log.contains("v2"), "{log}");

    // A name git-lfs's --include would read as a list and a pattern: fetched by the import, and
    // the command its --no-fetch error names fetches it as written.
    let err = w.ns_fails(&clone, &["lfs", "import", odd, "--no-fetch"]);
    let cmd = err
        .split('`')
        .find(|s| s.starts_with("git lfs fetch origin"))
        .expect("names a command");
    assert!(cmd.contains("'--include=run?2 ?b?.safetensors'"), "{err}");
    let fetch = w.run(&clone, Path::new("sh"), &["-c", cmd], &[]);
    assert!(fetch.ok, "{cmd}: {}", fetch.stderr);
    assert_eq!(common::walk(&objects).len(), 1, "{cmd}");
    std::fs::remove_dir_all(&objects).expect("drop it again");
    let out = w.ns(&clone, &["lfs", "import", odd]);
    assert!(out.contains("fetched 1 LFS object(s)"), "{out}");
    assert_eq!(read(clone.join(odd)), other);
}

#[test]
fn import_refuses_an_object_that_does_not_match_its_pointer() {
    let Some(w) = World::new("import_refuses_an_object_that_does_not_match_its_pointer") else {
        return;
    };
    let (_bare, work) = w.lfs_clone("repo");
    let (v1, v2) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "v1"]);
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.git(&work, &["commit", "-qam", "v2"]);
    // Damage git-lfs's copy of v1.
    let oid = w.git(&work, &["lfs", "ls-files", "--long", "HEAD~1"]);
    let oid = oid.split_whitespace().next().expect("a line").to_string();
    let obj = work
        .join(".git/lfs/objects")
        .join(&oid[..2])
        .join(&oid[2..4])
        .join(&oid);
    let mut bad = read(&obj);
    bad[5000] ^= 0xff;
    let mut perms = std::fs::metadata(&obj)
        .expect("file metadata")
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&obj, perms).expect("file metadata");
    std::fs::write(&obj, &bad).expect("writes the file");
    let attrs = read(work.join(".gitattributes"));

    w.ns(&work, &["init"]);
    let err = w.ns_fails(&work, &["lfs", "import", "--history"]);
    assert!(err.contains(&oid), "{err}");
    assert!(err.contains("hash"), "{err}");
    // Nothing written: no manifest, nothing tracked, attributes and index as they were.
    assert!(!work.join("model.safetensors.shard.json").exists());
    assert_eq!(read(work.join(".gitattributes")), attrs);
    assert_eq!(
        w.git(&work, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    assert!(!std::fs::read_to_string(work.join(".shard/config.toml"))
        .expect("reads the file")
        .contains("model.safetensors"));
    // The current version alone imports fine.
    w.ns(&work, &["lfs", "import"]);
    assert_eq!(read(work.join("model.safetensors")), v2);
}

/// Pushes two versions with the agent to `remote`; a fresh pointer-only clone with the agent
/// gets the file by `git lfs pull`. Returns the remote's growth for each version.
fn agent_round_trip(
    w: &World,
    remote: &str,
    remote_dir: Option<&Path>,
    extra: &[&str],
) -> (u64, u64) {
    let dir_bytes = |d: Option<&Path>| d.map_or(0, dir_bytes);
    let (bare, work) = w.lfs_clone("agent");
    let mut install = vec!["lfs", "install", "--remote", remote];
    install.extend_from_slice(extra);
    let out = w.ns(&work, &install);
    assert!(out.contains("stores objects through nshard"), "{out}");
    let (v1, v2) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "v1"]);
    let before = dir_bytes(remote_dir);
    w.git(&work, &["push", "-q", "origin", "main"]);
    let after1 = dir_bytes(remote_dir);
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.commit_and_push(&work, "v2");
    let after2 = dir_bytes(remote_dir);
    assert!(
        !bare.join("lfs").exists(),
        "git-lfs stored objects in the git remote itself"
    );

    let clone = w.pointer_clone(&bare, "agent-clone");
    w.ns(&clone, &["lfs", "install", "--remote", remote]);
    w.git(&clone, &["lfs", "pull"]);
    assert_eq!(read(clone.join("model.safetensors")), v2);
    w.git(&clone, &["checkout", "-q", "HEAD~1"]);
    assert_eq!(read(clone.join("model.safetensors")), v1);
    (after1 - before, after2 - after1)
}

#[test]
fn agent_pushes_changed_chunks_only_and_pulls_byte_identical_files_on_a_directory() {
    let Some(w) = World::new("agent_pushes_changed_chunks_only_and_pulls_byte_identical_files")
    else {
        return;
    };
    let store = w.new_dir("store");
    let (first, second) =
        agent_round_trip(&w, store.to_str().expect("UTF-8 path"), Some(&store), &[]);
    let changed = 2 * 500_000u64;
    assert!(first > changed, "v1 added {first}");
    assert!(
        second < changed + changed / 2,
        "v2 changed {changed} bytes of one tensor but added {second} (v1 added {first})"
    );
    assert!(second < first / 2, "v2 added {second}, v1 {first}");

    // remote gc keeps what LFS records name, even with --include-unrecorded and no grace.
    let objects = common::walk(&store.join("objects")).len();
    let out = w.ns(
        &w.path("agent"),
        &[
            "remote",
            "gc",
            store.to_str().expect("UTF-8 path"),
            "--grace",
            "0",
            "--include-unrecorded",
        ],
    );
    assert_eq!(common::walk(&store.join("objects")).len(), objects, "{out}");
    let again = w.pointer_clone(&w.path("agent.git"), "after-gc");
    w.install(&again, &store);
    w.git(&again, &["lfs", "pull"]);
    assert_eq!(read(again.join("model.safetensors")), two_versions().1);

    // Uninstalled, a pointer-only clone gets git-lfs's own error, and the pointer stays.
    let clone = w.pointer_clone(&w.path("agent.git"), "plain-clone");
    let r = w.git_ran(&clone, &["lfs", "pull"], &[]);
    assert!(!r.ok, "git lfs pull found the objects without the agent");
    assert!(std::fs::read(clone.join("model.safetensors"))
        .expect("reads the file")
        .starts_with(b"version https://git-lfs"));
    let doctor = w.ns_ran(&w.path("agent-clone"), &["doctor"]).stdout;
    assert!(doctor.contains("ok   git-lfs agent: "), "{doctor}");
    w.ns(&w.path("agent-clone"), &["lfs", "uninstall"]);
    let doctor = w.ns_ran(&w.path("agent-clone"), &["doctor"]).stdout;
    assert!(doctor.contains("git-lfs agent: not installed"), "{doctor}");
    let cfg = w.git(&w.path("agent-clone"), &["config", "--local", "-l"]);
    assert!(!cfg.contains("customtransfer"), "{cfg}");
}

#[test]
fn agent_works_with_nshard_serve() {
    let Some(w) = World::new("agent_works_with_nshard_serve") else {
        return;
    };
    let store = w.new_dir("served");
    let served = Served::start(&store, &["--insecure-allow-anonymous-write"], &[]);
    let (first, second) = agent_round_trip(&w, &served.url, Some(&store), &["--write-lfsconfig"]);
    assert!(second < first / 2, "v2 added {second}, v1 {first}");

    // `.lfsconfig` sends a clone without the agent to the server, which says what to run.
    let clone = w.pointer_clone(&w.path("agent.git"), "plain-clone");
    let r = w.git_ran(&clone, &["lfs", "pull"], &[]);
    assert!(!r.ok, "git lfs pull found the objects without the agent");
    let hint = format!("nshard lfs install --remote {}", served.url);
    assert!(r.stderr.contains(&hint), "{}", r.stderr);
    assert!(std::fs::read(clone.join("model.safetensors"))
        .expect("reads the file")
        .starts_with(b"version https://git-lfs"));
    // A directory remote has no server to answer: the option says so.
    let err = w.ns_fails(
        &clone,
        &[
            "lfs",
            "install",
            "--remote",
            store.to_str().expect("UTF-8 path"),
            "--write-lfsconfig",
        ],
    );
    assert!(err.contains("nshard serve"), "{err}");
}

#[test]
fn agent_works_with_s3() {
    let Some(w) = World::new("agent_works_with_s3") else {
        return;
    };
    let Some(s3) = common::s3::S3Env::get() else {
        return;
    };
    agent_round_trip(&w, &s3.fresh_url("lfs-agent"), None, &[]);
}

#[test]
fn a_corrupt_chunk_fails_that_object_with_a_clear_error_and_keeps_the_pointer() {
    let Some(w) = World::new("a_corrupt_chunk_fails_that_object") else {
        return;
    };
    let store = w.new_dir("store");
    let (bare, work) = w.lfs_clone("repo");
    w.install(&work, &store);
    let (v1, _) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    std::fs::write(work.join("small.bin"), b"a second object, intact").expect("writes the file");
    w.commit_and_push(&work, "v1");
    // Damage the largest object on the remote (a chunk of the model).
    let (largest, _) = common::walk(&store.join("objects"))
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("the remote has objects");
    let p = store.join("objects").join(&largest);
    let mut b = read(&p);
    let n = b.len();
    b[n / 2] ^= 0x55;
    std::fs::write(&p, &b).expect("writes the file");

    let clone = w.pointer_clone(&bare, "clone");
    w.install(&clone, &store);
    let r = w.git_ran(&clone, &["lfs", "pull"], &[]);
    assert!(!r.ok, "git lfs pull succeeded over a corrupt chunk");
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(std::fs::read(clone.join("model.safetensors"))
        .expect("reads the file")
        .starts_with(b"version https://git-lfs"));
    assert_eq!(read(clone.join("small.bin")), b"a second object, intact");
    // What the error's hint says: a clone that has the file restores it.
    assert!(
        r.stderr.contains("git lfs push --all origin"),
        "{}",
        r.stderr
    );
    w.git(&work, &["lfs", "push", "--all", "origin"]);
    w.git(&clone, &["lfs", "pull"]);
    assert_eq!(read(clone.join("model.safetensors")), v1);
}

#[test]
fn a_planted_record_neither_blocks_the_right_one_nor_serves_a_wrong_file() {
    let Some(w) = World::new("a_planted_record") else {
        return;
    };
    let store = w.new_dir("store");
    let (bare, work) = w.lfs_clone("repo");
    w.install(&work, &store);
    let (v1, v2) = two_versions();
    // v2 pushed first: its manifest is what the planted record will name.
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.commit_and_push(&work, "decoy");
    let records = store.join("records/_lfs");
    let decoy = common::walk(&records);
    assert_eq!(decoy.len(), 1, "{decoy:?}");
    let decoy_body = std::fs::read_to_string(records.join(&decoy[0].0)).expect("reads the file");
    let decoy: serde_json::Value = serde_json::from_str(&decoy_body).expect("parses JSON");

    // A record for v1's oid, written before v1 is pushed and stamped in the future, that names
    // v2's manifest: a reader must skip it, and the push must still record v1.
    let oid1 = nshard_core::ObjectId::of(&v1).to_hex();
    let planted = serde_json::json!({
        "format": "neuroshard.lfs/1",
        "oid": oid1,
        "size": v1.len(),
        "version": decoy["version"],
    });
    let dir = records.join(&oid1[..16]);
    std::fs::create_dir_all(&dir).expect("creates the directory");
    std::fs::write(
        dir.join("99999999999999999999-deadbeef.anonymous"),
        planted.to_string(),
    )
    .expect("test step");
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    w.commit_and_push(&work, "v1");
    assert_eq!(
        common::walk(&dir).len(),
        2,
        "the right record was not added"
    );

    let clone = w.pointer_clone(&bare, "clone");
    w.install(&clone, &store);
    w.git(&clone, &["lfs", "pull"]);
    assert_eq!(read(clone.join("model.safetensors")), v1);
}

#[test]
fn the_agent_answers_protocol_errors_per_object_and_never_hangs() {
    let Some(w) = World::new("the_agent_answers_protocol_errors_per_object") else {
        return;
    };
    let store = w.new_dir("store");
    let (_bare, work) = w.lfs_clone("repo");
    w.ns(&work, &["init"]);
    let oid = "0".repeat(64);
    let input = format!(
        "{{\"event\":\"init\",\"operation\":\"download\",\"remote\":\"origin\",\"concurrent\":false,\"concurrenttransfers\":1}}\n\
         {{\"event\":\"download\",\"oid\":\"{oid}\",\"size\":10,\"action\":null}}\n\
         {{\"event\":\"download\",\"oid\":\"not-an-oid\",\"size\":10,\"action\":null}}\n\
         {{\"event\":\"terminate\"}}\n"
    );
    let mut c = Command::new(nshard_bin());
    c.args([
        "lfs",
        "agent",
        "--remote",
        store.to_str().expect("UTF-8 path"),
    ])
    .current_dir(&work)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    w.env(&mut c);
    let mut child = c.spawn().expect("starts");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("writes to the agent");
    let out = child.wait_with_output().expect("finishes");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("parses JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({}));
    assert_eq!(lines[1]["event"], "complete");
    assert_eq!(lines[1]["oid"], oid.as_str());
    let msg = lines[1]["error"]["message"].as_str().expect("a string");
    assert!(msg.contains("no copy of git-lfs object"), "{msg}");
    assert!(lines[2]["error"]["message"]
        .as_str()
        .expect("a string")
        .contains("not a SHA-256"));

    // A remote that cannot be reached fails `init` with an error, not a hang.
    let mut c = Command::new(nshard_bin());
    c.args(["lfs", "agent", "--remote", "http://127.0.0.1:9/"])
        .current_dir(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    w.env(&mut c);
    let mut child = c.spawn().expect("starts");
    child
        .stdin
        .take()
        .expect("starts")
        .write_all(b"{\"event\":\"init\",\"operation\":\"upload\"}\n{\"event\":\"terminate\"}\n")
        .expect("test step");
    let out = child.wait_with_output().expect("finishes");
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .expect("parses JSON")
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("a line");
    assert!(first["error"]["message"].as_str().is_some(), "{first}");
}

/// git-lfs starts the agent from the directory it runs in: a directory remote given to
/// `lfs install` as a relative path is stored absolute, so `git lfs pull` works from a
/// subdirectory too.
#[test]
fn a_relative_remote_path_works_from_a_subdirectory() {
    let Some(w) = World::new("a_relative_remote_path_works_from_a_subdirectory") else {
        return;
    };
    let store = w.new_dir("store");
    let (_, work) = w.lfs_clone("repo");
    w.ns(&work, &["lfs", "install", "--remote", "../store"]);
    let args = w.git(
        &work,
        &["config", "--get", "lfs.customtransfer.nshard.args"],
    );
    assert!(args.contains(store.to_str().expect("UTF-8 path")), "{args}");
    let (v1, _) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    w.commit_and_push(&work, "v1");
    std::fs::remove_dir_all(work.join(".git/lfs/objects")).expect("drops git-lfs's copies");
    std::fs::remove_file(work.join("model.safetensors")).expect("removes the file");
    let sub = work.join("sub");
    std::fs::create_dir_all(&sub).expect("creates the directory");
    let r = w.git_ran(&sub, &["lfs", "pull"], &[]);
    assert!(r.ok, "git lfs pull from a subdirectory: {}", r.stderr);
    assert!(read(work.join("model.safetensors")) == v1);
}

/// The file an import finds already in the work tree is recorded as holding the version it
/// became: after importing on two branches, switching between them checks out each branch's
/// version (before, the hook took the file for uncommitted changes and left the other branch's
/// bytes under this branch's manifest).
#[test]
fn imported_files_follow_branch_switches() {
    let Some(w) = World::new("imported_files_follow_branch_switches") else {
        return;
    };
    let (_bare, work) = w.lfs_clone("repo");
    let (v1, v2) = two_versions();
    std::fs::write(work.join("model.safetensors"), &v1).expect("writes the file");
    w.git(&work, &["add", "-A"]);
    w.git(&work, &["commit", "-qm", "v1"]);
    w.git(&work, &["checkout", "-qb", "exp"]);
    std::fs::write(work.join("model.safetensors"), &v2).expect("writes the file");
    w.git(&work, &["commit", "-qam", "v2"]);
    w.git(&work, &["checkout", "-q", "main"]);
    w.ns(&work, &["init"]);
    w.ns(&work, &["git-init"]);
    w.ns(&work, &["lfs", "import"]);
    w.git(&work, &["commit", "-qm", "move to nshard"]);
    w.git(&work, &["checkout", "-q", "exp"]);
    assert_eq!(read(work.join("model.safetensors")), v2);
    w.ns(&work, &["lfs", "import"]);
    w.git(&work, &["commit", "-qm", "move to nshard"]);
    let r = w.git_ran(&work, &["checkout", "-q", "main"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(!r.stderr.contains("uncommitted changes"), "{}", r.stderr);
    assert_eq!(read(work.join("model.safetensors")), v1);
    w.git(&work, &["checkout", "-q", "exp"]);
    assert_eq!(read(work.join("model.safetensors")), v2);
}
