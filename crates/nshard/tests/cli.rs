//! What users of git-like tools expect from the command line: `add` as an alias of `track`, shell
//! completions, man pages, `-q` silencing per-file lines (never errors), and network errors that
//! say what to check.

mod common;

use std::fs;

use common::{fails, git, json, nshard, ok, random_bytes, TestRepo};

#[test]
fn add_is_an_alias_of_track() {
    let r = TestRepo::new();
    r.write("models/a.bin", &random_bytes(1000, 1));
    let out = r.ok(&["add", "models/a.bin"]);
    assert_eq!(out, "tracking models/a.bin (1 file)\n");
    let status = r.json(&["status"]);
    assert_eq!(status[0]["path"], "models/a.bin", "{status}");
    assert_eq!(status[0]["tracked"], true, "{status}");
    let help = r.ok(&["help"]);
    assert!(help.contains("[alias: add]"), "{help}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let d = tempfile::tempdir().expect("tempdir");
    let bash = ok(d.path(), &["completions", "bash"]);
    assert!(
        bash.contains("_nshard()") && bash.contains("complete -F _nshard"),
        "{bash}"
    );
    let zsh = ok(d.path(), &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef nshard"), "{zsh}");
    let fish = ok(d.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c nshard"), "{fish}");
    for script in [&bash, &zsh, &fish] {
        for sub in ["track", "commit", "push", "pull", "checkout", "completions"] {
            assert!(script.contains(sub), "{sub} missing from {script}");
        }
    }
    let err = fails(d.path(), &["completions", "tcsh"]);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// bash really loads the script and completes a subcommand.
#[test]
fn bash_completion_completes_subcommands() {
    let d = tempfile::tempdir().expect("tempdir");
    let script = d.path().join("nshard.bash");
    std::fs::write(&script, ok(d.path(), &["completions", "bash"])).expect("write");
    let probe = format!(
        "source '{}'; COMP_WORDS=(nshard comm); COMP_CWORD=1; COMP_LINE='nshard comm'; \
         COMP_POINT=${{#COMP_LINE}}; _nshard nshard comm nshard; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash runs");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.lines().any(|w| w == "commit"),
        "{words}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_to_stdout_and_to_a_directory() {
    let d = tempfile::tempdir().expect("tempdir");
    let page = ok(d.path(), &["man"]);
    assert!(page.contains(".TH nshard 1"), "{page}");
    assert!(page.contains("nshard\\-commit(1)"), "{page}");
    let dir = d.path().join("man1");
    let out = ok(d.path(), &["man", "--dir", "man1"]);
    assert!(out.contains("nshard-commit.1"), "{out}");
    for name in [
        "nshard.1",
        "nshard-commit.1",
        "nshard-remote.1",
        "nshard-remote-add.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{name}: {text}");
    }
    let commit = std::fs::read_to_string(dir.join("nshard-commit.1")).expect("read");
    assert!(commit.contains(".TH nshard-commit 1"), "{commit}");
    assert!(commit.contains("\\-\\-message"), "{commit}");
    // Nothing but the pages was left in the directory (each is written atomically).
    for e in std::fs::read_dir(&dir).expect("read_dir") {
        let name = e.expect("entry").file_name().into_string().expect("utf8");
        assert!(name.starts_with("nshard") && name.ends_with(".1"), "{name}");
    }
}

/// `-q` drops the per-file lines of commit, push, pull, checkout and track, keeps the one-line
/// summaries, and never hides an error.
#[test]
fn quiet_silences_per_file_lines_but_not_errors() {
    let a = TestRepo::new();
    git(a.path(), &["init", "-q"]);
    a.write("a.bin", &random_bytes(300_000, 2));
    a.write("b.bin", &random_bytes(300_000, 3));
    assert_eq!(a.ok(&["-q", "track", "a.bin", "b.bin"]), "");
    let out = a.ok(&["-q", "commit", "-m", "one"]);
    assert_eq!(
        out,
        "2 committed, 0 unchanged; now `git add` the .shard.json manifests\n"
    );
    let store = tempfile::tempdir().expect("tempdir");
    let store = store.path().to_str().expect("utf8");
    let out = a.ok(&["-q", "push", "--remote", store]);
    assert!(!out.contains("a.bin") && !out.contains("b.bin"), "{out}");
    assert!(
        out.contains("push to") && out.contains("sent 4 objects"),
        "{out}"
    );
    // Without -q the same commands name the files.
    a.write("a.bin", &random_bytes(300_000, 4));
    let out = a.ok(&["commit", "-m", "two"]);
    assert!(out.contains("a.bin: committed version"), "{out}");
    let out = a.ok(&["push", "--remote", store]);
    assert!(out.contains("a.bin: version"), "{out}");

    let b = TestRepo::new();
    for f in ["a.bin.shard.json", "b.bin.shard.json"] {
        std::fs::copy(a.join(f), b.join(f)).expect("copy manifest");
    }
    // checkout before pull: an error per file, printed even with -q.
    let out = nshard(b.path())
        .args(["-q", "checkout"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: a.bin:") && err.contains("error: b.bin:"),
        "{err}"
    );
    let out = b.ok(&["-q", "pull", "--remote", store]);
    assert!(!out.contains("a.bin") && out.contains("received"), "{out}");
    assert_eq!(b.ok(&["-q", "checkout"]), "");
    assert_eq!(b.read("a.bin"), a.read("a.bin"));
    assert_eq!(b.read("b.bin"), a.read("b.bin"));
}

/// A server that does not answer: the error names the remote and says to check that the server
/// is running.
#[test]
fn unreachable_server_error_says_what_to_check() {
    let r = TestRepo::new();
    r.write("m.bin", &random_bytes(10_000, 5));
    r.ok(&["track", "m.bin"]);
    r.ok(&["commit", "-m", "one"]);
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for cmd in ["push", "pull"] {
        let err = r.fails(&[cmd, "--remote", &url]);
        assert!(err.contains(&format!("remote {url}")), "{err}");
        assert!(
            err.contains(&format!(
                "hint: nothing answered at {url}: is the server running (`nshard serve`) and are the host and port right?"
            )),
            "{err}"
        );
    }
}

/// `neuroshard` (the Python package's name, for `pipx run neuroshard`) is the same program: same
/// output, same exit status, for any arguments.
#[test]
fn neuroshard_runs_nshard() {
    let d = tempfile::tempdir().expect("tempdir");
    let run = |bin: &str, args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin(bin)
            .expect("built")
            .args(args)
            .current_dir(d.path())
            .output()
            .expect("runs");
        (out.status.code(), out.stdout, out.stderr)
    };
    for args in [
        &["--version"][..],
        &["help"],
        &["status"],
        &["no-such-command"],
        &["-C", ".", "init"],
    ] {
        let want = run("nshard", args);
        if args.contains(&"init") {
            // Both initialise the same way; the second run finds the repository already there.
            std::fs::remove_dir_all(d.path().join(".shard")).expect("rm .shard");
        }
        let got = run("neuroshard", args);
        assert_eq!(got, want, "{args:?}");
    }
    assert!(d.path().join(".shard/config.toml").is_file());
}

/// `--grace` with a bare number means minutes to `nshard gc` (as it always did); `remote gc`,
/// which deletes from a shared remote, refuses it instead of reading it 60 times shorter.
#[test]
fn a_grace_period_without_a_unit_is_refused_by_remote_gc() {
    let d = tempfile::tempdir().expect("tempdir");
    let remote = d.path().join("remote");
    std::fs::create_dir(&remote).expect("remote dir");
    let url = remote.to_str().expect("utf-8 path");
    let err = fails(d.path(), &["remote", "gc", url, "--grace", "90"]);
    assert!(err.contains("has no unit") && err.contains("90m"), "{err}");
    assert!(
        std::fs::read_dir(&remote)
            .expect("remote dir")
            .next()
            .is_none(),
        "nothing was written to the remote"
    );
    let help = ok(d.path(), &["remote", "gc", "--help"]);
    assert!(help.contains("A bare number is refused"), "{help}");
}

/// `nshard log --json | head`: a reader that stops early is not an error (as for text output).
#[test]
fn json_into_a_closed_pipe_is_not_an_error() {
    let (r, _) = TestRepo::committed(10_000);
    for args in [
        &["log", "--json"][..],
        &["status", "--json"][..],
        &["log"][..],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("nshard"))
            .current_dir(r.path())
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nshard");
        // The reading end is closed before nshard writes: its first write fails with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("nshard ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
}

/// A version whose data was never pulled: the error says what to run.
#[test]
fn checkout_of_a_version_not_pulled_says_how_to_get_it() {
    let (r, _) = TestRepo::committed(10_000);
    let log = r.json(&["log", "m/model.bin"]);
    let v1 = log[0]["version"].as_str().expect("version")[..12].to_string();
    // Its manifest object gone from the store, as in a clone that never pulled it.
    fs::remove_file(r.object_path(log[0]["version"].as_str().expect("version")))
        .expect("remove the manifest object");
    r.write("m/model.bin", &random_bytes(10_000, 9));
    r.ok(&["commit", "-m", "v2"]);
    let err = r.fails(&["checkout", "m/model.bin", "--version", &v1, "--force"]);
    assert!(
        err.contains("hint:") && err.contains("nshard pull"),
        "{err}"
    );
}

/// `status --remote` takes a directory remote outside the repository as a relative path (as
/// push and pull do), and still tells a path inside the repository from a remote.
#[test]
fn status_remote_takes_a_relative_directory_outside_the_repository() {
    let (r, _) = TestRepo::committed(10_000);
    // A remote beside the repository's root (which is a fresh temporary directory).
    let name = format!(
        "{}-remote",
        r.path().file_name().and_then(|n| n.to_str()).expect("name")
    );
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let beside = Removed(r.path().parent().expect("parent").join(&name));
    fs::create_dir_all(&beside.0).expect("a remote beside the repository");
    let out = r.ok(&["status", "--remote", &format!("../{name}")]);
    assert!(out.contains("lacks 1 of 1 committed versions"), "{out}");
    let err = r.fails(&["status", "--remote", "m/model.bin"]);
    assert!(err.contains("is a path in the repository"), "{err}");
}

#[test]
fn git_init_run_twice_says_the_gitignore_is_up_to_date() {
    let d = tempfile::tempdir().expect("tempdir");
    git(d.path(), &["init", "-q"]);
    ok(d.path(), &["init"]);
    fs::remove_file(d.path().join(".gitignore")).expect("rm .gitignore");
    let first = ok(d.path(), &["git-init"]);
    assert!(first.contains("Updated "), "{first}");
    let before = fs::read(d.path().join(".gitignore")).expect("gitignore");
    let second = ok(d.path(), &["git-init"]);
    assert!(!second.contains("Updated "), "{second}");
    assert!(second.contains(".gitignore is up to date"), "{second}");
    assert_eq!(fs::read(d.path().join(".gitignore")).expect("read"), before);
}

#[test]
fn verify_remote_all_versions_points_at_push_all_versions() {
    let (r, _) = TestRepo::committed(200_000);
    r.write("m/model.bin", &random_bytes(200_000, 9));
    r.ok(&["commit", "-m", "v2"]);
    let remote = tempfile::tempdir().expect("remote");
    let url = remote.path().to_str().expect("utf8").to_string();
    r.ok(&["push", "--remote", &url]);
    let out = nshard(r.path())
        .args(["verify", "--remote", &url, "--all-versions"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("`nshard push --all-versions` sends the"),
        "{text}"
    );
    r.ok(&["push", "--remote", &url, "--all-versions"]);
    r.ok(&["verify", "--remote", &url, "--all-versions"]);
}

/// On a commit from before NeuroShard was set up, git removes `.shard/.gitignore` from the work
/// tree; the local store must still stay out of `git add -A` (git-init also writes the clone's
/// own `.git/info/exclude`).
#[test]
fn the_store_stays_out_of_git_on_commits_from_before_nshard() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = d.path();
    git(r, &["init", "-q", "-b", "main"]);
    fs::write(r.join("train.py"), "print('hi')\n").expect("write");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "code"]);
    ok(r, &["init"]);
    ok(r, &["git-init", "--no-hooks"]);
    fs::write(r.join("model.bin"), random_bytes(100_000, 4)).expect("write");
    ok(r, &["track", "model.bin"]);
    ok(r, &["commit", "-m", "model"]);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "model"]);
    git(r, &["checkout", "-q", "HEAD~1"]);
    assert!(!r.join(".shard/.gitignore").exists());
    let st = git(r, &["status", "--porcelain", "-uall"]);
    assert!(
        !st.contains(".shard/objects") && !st.contains(".shard/lock") && !st.contains("cache/"),
        "{st}"
    );
}

/// A file whose name holds glob characters (`ckpt[1].bin`) is tracked as that file, not as the
/// pattern its name reads as (which matched `ckpt1.bin` and let the real file into git).
#[test]
fn a_file_named_like_a_glob_is_tracked_as_itself() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = d.path();
    git(r, &["init", "-q", "-b", "main"]);
    ok(r, &["init"]);
    ok(r, &["git-init", "--no-hooks"]);
    fs::write(r.join("ckpt[1].bin"), random_bytes(50_000, 1)).expect("write");
    fs::write(r.join("ckpt1.bin"), b"not a checkpoint").expect("write");
    ok(r, &["track", "ckpt[1].bin"]);
    let st = json(r, &["status"]);
    let paths: Vec<&str> = st
        .as_array()
        .expect("rows")
        .iter()
        .map(|s| s["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["ckpt[1].bin"], "{st:#}");
    ok(r, &["commit", "-m", "v1"]);
    assert!(r.join("ckpt[1].bin.shard.json").exists());
    let added = git(r, &["add", "-A", "--dry-run"]);
    assert!(!added.contains("'ckpt[1].bin'"), "{added}");
    assert!(added.contains("'ckpt1.bin'"), "{added}");
    assert_eq!(json(r, &["status", "ckpt[1].bin"])[0]["state"], "unchanged");
    ok(r, &["untrack", "ckpt[1].bin"]);
    let cfg = fs::read_to_string(r.join(".shard/config.toml")).expect("config");
    assert!(cfg.contains("track = []"), "{cfg}");
}
