//! The git workflow end to end, with real git: a bare origin, clones, hooks installed by
//! `nshard git-init`, a directory data remote (and an unreachable HTTP one), history-aware push
//! and gc, the seed's colleague flow and tracking by pattern.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{git, nshard, ok, random_bytes};

/// 64 KiB fixed chunks: small files still have many chunks, so "only the new chunks travelled"
/// can be counted.
const CONFIG: &str = "[chunking]\nalgorithm = \"fixed\"\nsize = 65536\n";

/// A bare origin, a directory data remote and the first clone, set up as the seed's owner would.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        git(&root, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        fs::create_dir(root.join("store")).expect("store dir");
        World { _tmp: tmp, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn store(&self) -> String {
        self.p("store").display().to_string()
    }

    fn clone(&self, name: &str) -> PathBuf {
        git(&self.root, &["clone", "-q", "origin.git", name]);
        let d = self.p(name);
        git(&d, &["config", "user.name", "NeuroShard Test"]);
        git(&d, &["config", "user.email", "test@example.com"]);
        d
    }

    /// Clone A with NeuroShard set up: init, git-init (hooks), fixed chunks, a default remote,
    /// `models/` tracked.
    fn owner(&self) -> PathBuf {
        let a = self.clone("a");
        ok(&a, &["init"]);
        fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
        ok(&a, &["git-init"]);
        ok(&a, &["remote", "add", "origin", &self.store()]);
        fs::create_dir_all(a.join("models")).expect("models");
        ok(&a, &["track", "models/"]);
        a
    }

    fn store_objects(&self) -> usize {
        count_objects(&self.p("store/objects"))
    }
}

fn count_objects(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| fs::read_dir(e.path()).map(|r| r.count()).unwrap_or(0))
        .sum()
}

/// Runs git and returns (success, stdout + stderr).
fn git_try(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A 1 MiB model (16 chunks of 64 KiB), deterministic per seed.
fn model(seed: u64) -> Vec<u8> {
    random_bytes(1 << 20, seed)
}

/// `base` with `chunks` of its 64 KiB chunks (the first ones) replaced.
fn fine_tune(base: &[u8], chunks: usize, seed: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    let fresh = random_bytes(chunks * 65536, seed);
    v[..fresh.len()].copy_from_slice(&fresh);
    v
}

fn commit(dir: &Path, file: &str, data: &[u8], msg: &str) {
    fs::write(dir.join(file), data).expect("write model");
    ok(dir, &["commit", "-m", msg]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
}

#[test]
fn hooks_move_data_with_git_and_history_stays_reachable() {
    let w = World::new();
    let a = w.owner();
    let v1 = model(1);
    commit(&a, "models/m.bin", &v1, "v1");
    assert_eq!(w.store_objects(), 0, "nothing is pushed before git push");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    assert_eq!(w.store_objects(), 17, "16 chunks and the manifest: {out}");

    // Clone B gets the data by `nshard pull --checkout`, then installs the hooks.
    let b = w.clone("b");
    assert!(!b.join("models/m.bin").exists());
    ok(&b, &["pull", "--checkout"]);
    assert_eq!(fs::read(b.join("models/m.bin")).expect("b v1"), v1);
    ok(&b, &["git-init"]);

    // A fine-tunes two chunks and pushes; B's `git pull` brings v2 with only the new chunks.
    let v2 = fine_tune(&v1, 2, 2);
    commit(&a, "models/m.bin", &v2, "v2");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    assert_eq!(w.store_objects(), 17 + 3, "2 new chunks and the manifest");
    let before = count_objects(&b.join(".shard/objects"));
    let (pulled, out) = git_try(&b, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(pulled, "{out}");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("b v2"), v2, "{out}");
    assert_eq!(
        count_objects(&b.join(".shard/objects")),
        before + 3,
        "only v2's new chunks and its manifest travelled: {out}"
    );

    // B goes back one commit: the post-checkout hook restores v1.
    let (moved, out) = git_try(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(moved, "{out}");
    assert_eq!(
        fs::read(b.join("models/m.bin")).expect("b back at v1"),
        v1,
        "{out}"
    );
    let (moved, out) = git_try(&b, &["checkout", "-q", "main"]);
    assert!(moved, "{out}");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("b at v2"), v2);

    // With the data remote unreachable, the git push is refused and the git remote keeps its
    // old tip.
    ok(
        &a,
        &["remote", "add", "down", "http://127.0.0.1:9", "--default"],
    );
    commit(&a, "models/m.bin", &fine_tune(&v2, 1, 3), "v3");
    let tip_before = git(&w.p("origin.git"), &["rev-parse", "main"]);
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(!pushed, "the push must be refused: {out}");
    assert!(out.contains("refusing the git push"), "{out}");
    assert_eq!(git(&w.p("origin.git"), &["rev-parse", "main"]), tip_before);
}

#[test]
fn a_fresh_clone_checks_out_an_older_commit_after_a_plain_push() {
    let w = World::new();
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
    ok(&a, &["git-init", "--no-hooks"]);
    ok(&a, &["remote", "add", "origin", &w.store()]);
    fs::create_dir_all(a.join("models")).expect("models");
    ok(&a, &["track", "models/"]);
    let v1 = model(10);
    let v2 = fine_tune(&v1, 3, 11);
    commit(&a, "models/m.bin", &v1, "v1");
    commit(&a, "models/m.bin", &v2, "v2");
    // `--current` sends only the work tree's version.
    ok(&a, &["push", "--current"]);
    assert_eq!(w.store_objects(), 17);
    git(&a, &["push", "-q", "origin", "main"]);
    let c = w.clone("c");
    git(&c, &["checkout", "-q", "HEAD~1"]);
    let out = nshard(&c).args(["pull"]).output().expect("runs");
    assert!(!out.status.success(), "v1 is not on the remote yet");
    // A plain `nshard push` sends the history git reaches.
    let sent = ok(&a, &["push"]);
    assert_eq!(w.store_objects(), 17 + 4, "{sent}");
    // A second push asks one round of questions and sends nothing.
    let again = ok(&a, &["push", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(again["objects"], 0, "{again}");
    ok(&c, &["pull", "--checkout"]);
    assert_eq!(fs::read(c.join("models/m.bin")).expect("c v1"), v1);
}

#[test]
fn the_seeds_colleague_flow_works_in_a_clone_without_shard_dir() {
    let w = World::new();
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::create_dir_all(a.join("models")).expect("models");
    let data = model(20);
    fs::write(a.join("models/x.pth"), &data).expect("write");
    ok(&a, &["track", "models/x.pth"]);
    ok(&a, &["commit", "-m", "Initial checkpoint"]);
    // The seed's quickstart: only the manifest goes into git.
    git(&a, &["add", "models/x.pth.shard.json"]);
    git(&a, &["commit", "-q", "-m", "Add model"]);
    git(&a, &["push", "-q", "origin", "main"]);
    ok(&a, &["push", "--remote", &w.store()]);

    let b = w.clone("b");
    assert!(!b.join(".shard").exists());
    let out = nshard(&b)
        .args(["pull", "models/x.pth.shard.json", "--remote", &w.store()])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created the local store"),
        "says so in one line"
    );
    ok(&b, &["checkout", "models/x.pth.shard.json"]);
    assert_eq!(fs::read(b.join("models/x.pth")).expect("x"), data);
    // The clone's git status shows the new local store only as an untracked `.shard/` with its
    // own ignore file (objects never show).
    let st = git(&b, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(!st.contains("objects/"), "{st}");
}

#[test]
fn a_tracked_directory_ignores_files_saved_later() {
    let w = World::new();
    let a = w.owner();
    commit(&a, "models/m.bin", &model(30), "v1");
    // A checkpoint saved later into the tracked directory, in a new subdirectory too.
    fs::create_dir_all(a.join("models/run2")).expect("mkdir");
    fs::write(a.join("models/run2/step-100.bin"), model(31)).expect("write");
    let st = git(&a, &["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(
        st.trim(),
        "",
        "the new checkpoint is ignored before commit: {st}"
    );
    ok(&a, &["commit", "-m", "step 100"]);
    git(&a, &["add", "-A"]);
    let staged = git(&a, &["diff", "--cached", "--name-only"]);
    assert_eq!(
        staged.trim(),
        "models/run2/step-100.bin.shard.json",
        "only the manifest is staged"
    );
    // untrack removes exactly the lines track added; a file whose manifest git holds keeps a line
    // of its own (its data must never reach git).
    ok(&a, &["untrack", "models/"]);
    let ignore = fs::read_to_string(a.join(".gitignore")).expect(".gitignore");
    assert!(!ignore.contains("/models/**"), "{ignore}");
    assert!(ignore.contains("/models/run2/step-100.bin\n"), "{ignore}");
    ok(&a, &["track", "models/"]);
    let again = fs::read_to_string(a.join(".gitignore")).expect(".gitignore");
    assert!(again.contains("/models/**\n!/models/**/\n"), "{again}");
}

/// gc output as JSON.
fn gc(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["gc", "--grace", "0", "--json"];
    args.extend_from_slice(extra);
    let out = ok(dir, &args);
    serde_json::from_str(&out).expect("gc json")
}

/// Checks out `file` from its work-tree manifest and compares it with `want`.
fn restore(dir: &Path, file: &str, want: &[u8]) {
    let m = format!("{file}.shard.json");
    ok(dir, &["checkout", "--force", &m]);
    assert_eq!(fs::read(dir.join(file)).expect("restored"), want);
}

#[test]
fn gc_keeps_every_version_git_can_reach() {
    let w = World::new();
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
    ok(&a, &["git-init", "--no-hooks"]);
    fs::create_dir_all(a.join("models")).expect("models");
    ok(&a, &["track", "models/"]);

    // 1. A file removed at the tip.
    let gone = model(40);
    commit(&a, "models/gone.bin", &gone, "gone v1");
    let gone_commit = git(&a, &["rev-parse", "HEAD"]).trim().to_string();
    git(&a, &["rm", "-q", "models/gone.bin.shard.json"]);
    fs::remove_file(a.join("models/gone.bin")).expect("rm");
    git(&a, &["commit", "-q", "-m", "remove gone"]);
    // 2. A commit reachable only through the reflog (and ORIG_HEAD).
    let r1 = model(41);
    let r2 = fine_tune(&r1, 4, 42);
    commit(&a, "models/r.bin", &r1, "r v1");
    commit(&a, "models/r.bin", &r2, "r v2");
    let r2_commit = git(&a, &["rev-parse", "HEAD"]).trim().to_string();
    git(&a, &["reset", "-q", "--hard", "HEAD~1"]);
    // 3. A stash entry holding a manifest change.
    let s2 = fine_tune(&r1, 2, 43);
    fs::write(a.join("models/r.bin"), &s2).expect("write");
    ok(&a, &["commit", "-m", "r stashed"]);
    git(&a, &["stash", "-q"]);
    ok(&a, &["checkout", "--force", "models/r.bin.shard.json"]);
    // 4. Another branch.
    git(&a, &["checkout", "-q", "-b", "other"]);
    let o = model(44);
    commit(&a, "models/o.bin", &o, "o v1");
    git(&a, &["checkout", "-q", "main"]);
    fs::remove_file(a.join("models/o.bin")).expect("rm o");
    // 5. A manifest recreated with no parent (the old version only in git history).
    let p1 = model(45);
    commit(&a, "models/p.bin", &p1, "p v1");
    let p1_commit = git(&a, &["rev-parse", "HEAD"]).trim().to_string();
    fs::remove_file(a.join("models/p.bin.shard.json")).expect("rm manifest");
    let p2 = model(46);
    commit(&a, "models/p.bin", &p2, "p recreated");
    let pm: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("models/p.bin.shard.json")).expect("m"))
            .expect("manifest");
    assert!(pm["version"]["parent"].is_null(), "{pm}");

    let before = count_objects(&a.join(".shard/objects"));
    for extra in [&[][..], &["--only-current"][..]] {
        let r = gc(&a, extra);
        assert_eq!(r["objects_deleted"], 0, "{extra:?}: {r}");
    }
    assert_eq!(count_objects(&a.join(".shard/objects")), before);

    // Every old version can still be restored.
    for (rev, file, want) in [
        (gone_commit.as_str(), "models/gone.bin", &gone),
        (r2_commit.as_str(), "models/r.bin", &r2),
        ("stash@{0}", "models/r.bin", &s2),
        ("other", "models/o.bin", &o),
        (p1_commit.as_str(), "models/p.bin", &p1),
    ] {
        git(
            &a,
            &["checkout", "-q", rev, "--", &format!("{file}.shard.json")],
        );
        restore(&a, file, want);
    }
}

#[test]
fn gc_only_current_never_deletes_the_only_copy() {
    let w = World::new();
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
    fs::create_dir_all(a.join("models")).expect("models");
    ok(&a, &["track", "models/"]);
    let v1 = model(50);
    fs::write(a.join("models/m.bin"), &v1).expect("v1");
    ok(&a, &["commit", "-m", "v1"]);
    fs::write(a.join("models/m.bin"), fine_tune(&v1, 4, 51)).expect("v2");
    ok(&a, &["commit", "-m", "v2"]);
    // v1 is named by no git commit, only by v2's parent link. No remote: kept.
    let r = gc(&a, &["--only-current"]);
    assert_eq!(r["objects_deleted"], 0, "{r}");
    assert_eq!(r["objects_unpushed"], 5, "v1's 4 chunks and manifest: {r}");
    let text = ok(&a, &["gc", "--grace", "0", "--only-current"]);
    assert!(text.contains("no remote is configured"), "{text}");
    // A remote that is down: still kept, and said so.
    ok(&a, &["remote", "add", "down", "http://127.0.0.1:9"]);
    let r = gc(&a, &["--only-current"]);
    assert_eq!(r["objects_deleted"], 0, "{r}");
    assert!(r["remote_error"].is_string(), "{r}");
    // Once the remote has v1, --only-current may drop it locally.
    ok(&a, &["remote", "add", "origin", &w.store(), "--default"]);
    ok(&a, &["push", "--all-versions"]);
    let dry = ok(&a, &["gc", "--grace", "0", "--only-current", "--dry-run"]);
    assert!(dry.contains("only in older version"), "{dry}");
    let r = gc(&a, &["--only-current"]);
    assert_eq!(r["objects_deleted"], 5, "{r}");
    ok(&a, &["pull", "--all-versions"]);
    ok(
        &a,
        &[
            "checkout",
            "--version",
            &short_of_first_version(&a),
            "models/m.bin",
        ],
    );
    assert_eq!(fs::read(a.join("models/m.bin")).expect("v1 back"), v1);
}

/// The oldest version id in `nshard log`.
fn short_of_first_version(dir: &Path) -> String {
    let log = ok(dir, &["log", "models/m.bin", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&log).expect("json");
    let entries = log.as_array().expect("array");
    entries.last().expect("entry")["version"]
        .as_str()
        .expect("id")
        .to_string()
}

#[test]
fn existing_hooks_keep_running_and_their_status_counts() {
    let w = World::new();
    let a = w.clone("a");
    let hooks = a.join(".git/hooks");
    fs::create_dir_all(&hooks).expect("hooks dir");
    let marker = a.join("pre-push-ran");
    let script = format!(
        "#!/bin/sh\ncat > '{}'\nexit ${{PRE_PUSH_STATUS:-0}}\n",
        marker.display()
    );
    write_hook(&hooks.join("pre-push"), &script);
    write_hook(
        &hooks.join("post-checkout"),
        &format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\n",
            a.join("checkout-ran").display()
        ),
    );
    ok(&a, &["init"]);
    ok(&a, &["remote", "add", "origin", &w.store()]);
    let out = ok(&a, &["git-init"]);
    assert!(out.contains("still runs first"), "{out}");
    fs::write(a.join("f.bin"), model(60)).expect("write");
    ok(&a, &["track", "f.bin"]);
    ok(&a, &["commit", "-m", "v1"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "v1"]);
    // The user's pre-push hook refuses: git refuses, whatever nshard would say.
    let out = std::process::Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .env("PRE_PUSH_STATUS", "1")
        .current_dir(&a)
        .output()
        .expect("git");
    assert!(!out.status.success());
    assert!(
        fs::read_to_string(&marker)
            .expect("ran")
            .contains("refs/heads/main"),
        "the user's hook got git's ref lines"
    );
    let (pushed, text) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{text}");
    assert_eq!(w.store_objects(), 2, "the data went too");
    git(&a, &["checkout", "-q", "-b", "side"]);
    assert!(
        a.join("checkout-ran").exists(),
        "the user's post-checkout ran"
    );
    // Uninstalling puts the user's hooks back.
    ok(&a, &["git-init", "--uninstall-hooks"]);
    assert_eq!(
        fs::read_to_string(hooks.join("pre-push")).expect("restored"),
        script
    );
    assert!(!hooks.join("pre-push.nshard-chained").exists());
}

#[test]
fn hooks_go_to_core_hooks_path() {
    let w = World::new();
    let a = w.clone("a");
    let custom = w.p("team-hooks");
    fs::create_dir_all(&custom).expect("dir");
    git(
        &a,
        &["config", "core.hooksPath", &custom.display().to_string()],
    );
    ok(&a, &["init"]);
    ok(&a, &["git-init"]);
    assert!(custom.join("pre-push").exists());
    assert!(!a.join(".git/hooks/pre-push").exists());
}

#[test]
fn a_hook_never_overwrites_uncommitted_changes() {
    let w = World::new();
    let a = w.owner();
    let v1 = model(70);
    commit(&a, "models/m.bin", &v1, "v1");
    git(&a, &["push", "-q", "origin", "main"]);
    let b = w.clone("b");
    ok(&b, &["git-init"]);
    ok(&b, &["pull", "--checkout"]);
    commit(&a, "models/m.bin", &fine_tune(&v1, 1, 71), "v2");
    git(&a, &["push", "-q", "origin", "main"]);
    // B edits the model without committing it, then pulls.
    let mine = fine_tune(&v1, 1, 72);
    fs::write(b.join("models/m.bin"), &mine).expect("edit");
    let (pulled, out) = git_try(&b, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(pulled, "{out}");
    assert!(out.contains("uncommitted changes"), "{out}");
    assert!(out.contains("nshard checkout --force"), "{out}");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("kept"), mine);
}

fn write_hook(path: &Path, text: &str) {
    fs::write(path, text).expect("hook");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// The same flow through a real `nshard serve`: the pre-push hook uploads to the server, a second
/// clone's `git pull` fetches from it, and with the server gone the git push is refused.
#[test]
fn hooks_move_data_through_a_real_server() {
    let w = World::new();
    let served_store = w.p("served");
    let mut server = common::serve::Served::start(&served_store, &[], &[]);
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
    ok(&a, &["git-init"]);
    ok(&a, &["remote", "add", "origin", &server.url]);
    fs::create_dir_all(a.join("models")).expect("models");
    ok(&a, &["track", "models/"]);
    let v1 = model(80);
    commit(&a, "models/m.bin", &v1, "v1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    assert_eq!(count_objects(&served_store.join("objects")), 17, "{out}");

    let b = w.clone("b");
    ok(&b, &["git-init"]);
    ok(&b, &["pull", "--checkout"]);
    assert_eq!(fs::read(b.join("models/m.bin")).expect("b v1"), v1);
    let v2 = fine_tune(&v1, 2, 81);
    commit(&a, "models/m.bin", &v2, "v2");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    assert_eq!(count_objects(&served_store.join("objects")), 20, "{out}");
    let (pulled, out) = git_try(&b, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(pulled, "{out}");
    assert_eq!(fs::read(b.join("models/m.bin")).expect("b v2"), v2, "{out}");

    // The server is gone: the next git push is refused and names it.
    server.kill9();
    commit(&a, "models/m.bin", &fine_tune(&v2, 1, 82), "v3");
    let tip_before = git(&w.p("origin.git"), &["rev-parse", "main"]);
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(!pushed, "{out}");
    assert!(out.contains("refusing the git push"), "{out}");
    assert!(out.contains(&server.url), "{out}");
    assert_eq!(git(&w.p("origin.git"), &["rev-parse", "main"]), tip_before);
}

/// docs/git.md: with no data remote configured, pre-push warns that the data was not sent and
/// lets the git push through (issue 26, untested documented behaviours); once a remote is
/// added, the next push sends the data.
#[test]
fn pre_push_without_a_data_remote_warns_and_lets_the_push_through() {
    let w = World::new();
    let a = w.clone("a");
    ok(&a, &["init"]);
    fs::write(a.join(".shard/config.toml"), CONFIG).expect("config");
    ok(&a, &["git-init"]);
    fs::create_dir_all(a.join("models")).expect("models");
    ok(&a, &["track", "models/"]);
    commit(&a, "models/m.bin", &model(41), "v1");
    let (pushed, text) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{text}");
    assert!(
        text.contains("no default data remote is configured") && text.contains("was not sent"),
        "{text}"
    );
    assert_eq!(w.store_objects(), 0);
    ok(&a, &["remote", "add", "data", &w.store()]);
    commit(&a, "models/m.bin", &model(42), "v2");
    let (pushed, text) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{text}");
    assert!(w.store_objects() > 0, "{text}");
}

/// docs/git.md: post-rewrite checks out what a rewrite changed (issue 26, untested documented
/// behaviours). An amend that takes a file's (or a directory unit's) manifest back to the earlier
/// version leaves the work tree holding that version's data.
#[test]
fn post_rewrite_checks_out_files_and_units_an_amend_changed() {
    let w = World::new();
    let a = w.owner();
    let v1 = model(51);
    commit(&a, "models/m.bin", &v1, "v1");
    fs::create_dir_all(a.join("data")).expect("data");
    fs::write(a.join("data/x.txt"), b"unit v1").expect("x");
    ok(&a, &["track", "--dir", "data"]);
    ok(&a, &["commit", "-m", "unit v1"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "unit v1"]);
    let file_v1 = fs::read(a.join("models/m.bin.shard.json")).expect("manifest");
    let unit_v1 = fs::read(a.join("data.shard.json")).expect("unit manifest");
    commit(&a, "models/m.bin", &fine_tune(&v1, 3, 52), "v2");
    fs::write(a.join("data/x.txt"), b"unit v2").expect("x");
    ok(&a, &["commit", "-m", "unit v2"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "unit v2"]);
    // Amend the last commit so that it holds the v1 manifests again.
    fs::write(a.join("models/m.bin.shard.json"), &file_v1).expect("manifest");
    fs::write(a.join("data.shard.json"), &unit_v1).expect("unit manifest");
    git(&a, &["add", "models/m.bin.shard.json", "data.shard.json"]);
    let (ok_amend, text) = git_try(&a, &["commit", "-q", "--amend", "-m", "back to v1"]);
    assert!(ok_amend, "{text}");
    assert_eq!(
        fs::read(a.join("models/m.bin")).expect("m.bin"),
        v1,
        "{text}"
    );
    assert_eq!(
        fs::read(a.join("data/x.txt")).expect("x"),
        b"unit v1",
        "{text}"
    );
}

/// A manifest removed through git (a colleague's `nshard rm`, or a checkout of a commit from
/// before the file was versioned): the hooks delete the data file when it holds exactly the
/// removed version, as git deletes a file removed upstream, and keep a file with other content;
/// checking out a commit that has the manifest brings the file back.
#[test]
fn a_manifest_removed_through_git_takes_its_unchanged_file_along() {
    use common::gc_world::GcWorld;
    let w = GcWorld::dir();
    let (a, [_, _, v3]) = w.three_versions();
    let b = w.colleague("b");
    let model = b.join("models/m.bin");
    assert!(fs::read(&model).expect("v3") == v3);
    // The owner stops versioning the model.
    w.ok(&a, &["rm", "models/m.bin"]);
    w.git(&a, &["add", "-A"]);
    w.git(&a, &["commit", "-q", "-m", "drop the model"]);
    w.git(&a, &["push", "-q", "origin", "HEAD"]);
    // The colleague's pull takes the file away: no "new" file left for the next commit.
    w.git(&b, &["pull", "-q"]);
    assert!(!model.exists(), "the unchanged file went with its manifest");
    let st = w.json(&b, &["status"]);
    assert_eq!(st, serde_json::json!([]), "{st}");
    // Back to a commit that versions it, and forward again.
    w.git(&b, &["checkout", "-q", "HEAD~1"]);
    assert!(fs::read(&model).expect("v3 back") == v3);
    w.git(&b, &["checkout", "-q", "-"]);
    assert!(!model.exists());
    // A file with other content is kept, and the hook says so.
    w.git(&b, &["checkout", "-q", "HEAD~1"]);
    fs::write(&model, b"edited, not committed").expect("edit");
    let out = std::process::Command::new("git")
        .args(["checkout", "-q", "-"])
        .current_dir(&b)
        .output()
        .expect("git checkout");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models/m.bin: git removed its manifest, but the file holds other content"),
        "{err}"
    );
    assert_eq!(fs::read(&model).expect("kept"), b"edited, not committed");
}

/// A version committed with nshard but named by no git commit (two `nshard commit`s, one `git
/// commit`): the push sends it too, so the remote's history has no gap and a clone's `pull
/// --all-versions` reaches every older version.
#[test]
fn a_version_between_git_commits_is_pushed_so_the_history_has_no_gap() {
    use common::gc_world::{fine_tune, model, GcWorld};
    let w = GcWorld::dir();
    let a = w.owner_of("origin.git", "a");
    let v0 = model(1);
    let v1 = fine_tune(&v0, 2, 2);
    let v2 = fine_tune(&v1, 2, 3);
    w.commit_push(&a, &v0, "v0");
    fs::write(a.join("models/m.bin"), &v1).expect("v1");
    w.ok(&a, &["commit", "-m", "v1, never in git"]);
    w.commit_push(&a, &v2, "v2");
    let b = w.colleague("b");
    w.ok(&b, &["pull", "--all-versions"]);
    let log = w.json(&b, &["log", "models/m.bin"]);
    let versions: Vec<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["version"].as_str())
        .collect();
    assert_eq!(versions.len(), 3, "{log:#}");
    for (v, want) in versions.iter().zip([&v2, &v1, &v0]) {
        w.ok(&b, &["checkout", "models/m.bin", "--version", v, "--force"]);
        assert!(&fs::read(b.join("models/m.bin")).expect("checked out") == want);
    }
}

/// A checkout of a commit from before a file moved to NeuroShard: git versions the file itself
/// there and writes it; the post-checkout hook leaves it to git, even where its bytes equal the
/// version the removed manifest named (before, the hook deleted the file git had just written).
#[test]
fn a_commit_from_before_the_move_keeps_the_file_git_writes() {
    let d = tempfile::tempdir().expect("tmp");
    let r = d.path();
    git(r, &["init", "-q", "-b", "main"]);
    let data = common::random_bytes(200_000, 7);
    fs::write(r.join("model.bin"), &data).expect("write");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "model in git"]);
    ok(r, &["init"]);
    ok(r, &["git-init"]);
    git(r, &["rm", "-q", "--cached", "model.bin"]);
    ok(r, &["track", "model.bin"]);
    ok(r, &["commit", "-m", "moved"]);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "moved to nshard"]);
    let out = std::process::Command::new("git")
        .args(["checkout", "-q", "HEAD~1"])
        .current_dir(r)
        .output()
        .expect("git runs");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("left to git"), "{err}");
    assert_eq!(fs::read(r.join("model.bin")).expect("git's file"), data);
    assert_eq!(
        git(r, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    // And back: the manifest returns and the file is versioned by nshard again.
    git(r, &["checkout", "-q", "main"]);
    assert_eq!(fs::read(r.join("model.bin")).expect("the file"), data);
    assert_eq!(common::json(r, &["status"])[0]["state"], "unchanged");
}

/// A colleague commits two versions before this clone pulls, so the version in between is not
/// in this clone's store: edits made from the version before both are still refused (the local
/// history cannot show them newer), with the way to bring the history in.
#[test]
fn edits_from_a_version_two_commits_back_are_refused_without_the_history() {
    let w = World::new();
    let a = w.owner();
    let v1 = model(1);
    commit(&a, "models/m.bin", &v1, "v1");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let b = w.clone("b");
    ok(&b, &["pull", "--checkout"]);
    ok(&b, &["git-init"]);

    let v2 = fine_tune(&v1, 2, 2);
    commit(&a, "models/m.bin", &v2, "v2");
    commit(&a, "models/m.bin", &fine_tune(&v2, 1, 3), "v3");
    let (pushed, out) = git_try(&a, &["push", "-q", "origin", "main"]);
    assert!(pushed, "{out}");
    let mut mine = v1.clone();
    mine[1 << 19] ^= 1;
    fs::write(b.join("models/m.bin"), &mine).expect("edit");
    let (pulled, out) = git_try(&b, &["pull", "-q", "--no-rebase", "origin", "main"]);
    assert!(pulled, "{out}");
    assert_eq!(
        fs::read(b.join("models/m.bin")).expect("kept"),
        mine,
        "{out}"
    );
    let text = common::fails(&b, &["commit", "-m", "mine"]);
    assert!(
        text.contains("was edited from version")
            && text.contains("not in the local history of")
            && text.contains("--all-versions"),
        "{text}"
    );
    let j = common::json_exit(&b, &["commit", "-m", "mine"], 1);
    assert_eq!(j[0]["from_older"]["order"], "unrelated", "{j:#}");
    assert!(j[0]["from_older"]["edited_from"].is_string(), "{j:#}");
    assert!(
        j[0]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--all-versions")),
        "{j:#}"
    );
    ok(&b, &["commit", "-m", "mine", "--force"]);
}
