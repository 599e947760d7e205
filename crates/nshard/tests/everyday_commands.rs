//! The everyday commands git-lfs and DVC users reach for (issue 23): `ls-files`, `fetch`,
//! `log --oneline`, `status -c`, `push/pull --dry-run`, `rm`, `doctor`.

mod common;

use std::fs;

use common::{random_bytes, TestRepo};

/// A new repository holding only `from`'s `m/model.bin` manifest (a colleague's clone).
fn with_manifest_of(from: &TestRepo) -> TestRepo {
    let other = TestRepo::new();
    other.ok(&["init"]);
    fs::create_dir_all(other.join("m")).expect("mkdir");
    fs::copy(
        from.join("m/model.bin.shard.json"),
        other.join("m/model.bin.shard.json"),
    )
    .expect("copy");
    other
}

#[test]
fn ls_files_lists_tracked_files_with_version_and_whether_checked_out() {
    let (repo, _) = TestRepo::committed(100_000);
    repo.write("b.bin", &random_bytes(50_000, 2));
    repo.ok(&["track", "b.bin"]);
    repo.ok(&["commit", "-m", "b"]);
    repo.write("b.bin", &random_bytes(50_000, 3));
    // A tracked file never committed is not listed.
    repo.write("new.bin", b"new");
    repo.ok(&["track", "new.bin"]);
    let rows = repo.json(&["ls-files"]);
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let by = |p: &str| rows.iter().find(|r| r["path"] == p).expect(p).clone();
    let m = by("m/model.bin");
    assert_eq!(m["checked_out"], true);
    assert_eq!(m["size"], 100_000);
    assert_eq!(
        m["version"],
        common::json(repo.path(), &["status", "m/model.bin"])[0]["version"]
    );
    assert_eq!(by("b.bin")["checked_out"], false);
    assert_eq!(by("b.bin")["state"], "modified");
    let text = repo.ok(&["ls-files"]);
    let line = text
        .lines()
        .find(|l| l.contains("m/model.bin"))
        .expect("listed");
    assert!(line.contains(" * m/model.bin (97.7 KiB)"), "{line}");
    assert!(text.lines().any(|l| l.contains(" - b.bin")), "{text}");
}

#[test]
fn fetch_is_pull_without_checkout_and_log_oneline_and_status_c() {
    let (repo, _) = TestRepo::committed(200_000);
    repo.write("m/model.bin", &random_bytes(200_000, 5));
    repo.ok(&["commit", "-m", "second\n\nwith a body"]);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    // status -c: what the remote lacks, as `dvc status -c`.
    let st = repo.json(&["status", "-c", url]);
    assert!(
        st[0]["remote"]["missing_objects"].as_u64() > Some(0),
        "{st}"
    );
    repo.ok(&["push", "--remote", url, "--all-versions"]);
    let st = repo.json(&["status", "-c", url]);
    assert_eq!(st[0]["remote"]["missing_objects"], 0, "{st}");

    let other = with_manifest_of(&repo);
    let f = other.json(&["fetch", "--remote", url]);
    assert!(f["objects"].as_u64() > Some(0), "{f}");
    assert!(
        !other.join("m/model.bin").exists(),
        "fetch does not check out"
    );
    other.ok(&["checkout"]);

    let log = repo.ok(&["log", "--oneline", "m/model.bin"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].ends_with(" second"), "{log}");
    assert!(lines[1].ends_with(" v1"), "{log}");
    assert_eq!(lines[0].split(' ').next().map(str::len), Some(12), "{log}");
}

/// `push --dry-run` and `pull --dry-run` say what would move, and move nothing.
#[test]
fn push_and_pull_dry_run_move_nothing() {
    let (repo, _) = TestRepo::committed(300_000);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let dry = repo.json(&["push", "--dry-run", "--remote", url]);
    assert!(
        common::walk(remote.path()).is_empty(),
        "a dry run sent something"
    );
    let text = repo.ok(&["push", "-n", "--remote", url]);
    assert!(text.contains("dry run: would send"), "{text}");
    let real = repo.json(&["push", "--remote", url]);
    assert_eq!(dry["objects"], real["objects"], "{dry} vs {real}");
    assert_eq!(dry["bytes"], real["bytes"], "{dry} vs {real}");

    let other = with_manifest_of(&repo);
    let before = common::walk(&other.join(".shard/objects")).len();
    let dry = other.json(&["pull", "--dry-run", "--remote", url]);
    assert_eq!(common::walk(&other.join(".shard/objects")).len(), before);
    let real = other.json(&["pull", "--remote", url]);
    assert_eq!(dry["objects"], real["objects"], "{dry} vs {real}");
    assert!(real["objects"].as_u64() > Some(0));
}

/// `nshard rm` stops versioning a file: manifest and file go, uncommitted changes are refused
/// without --force, --cached keeps the file, and the versions stay in the store.
#[test]
fn rm_removes_a_file_and_its_manifest_keeping_its_versions() {
    let (repo, _) = TestRepo::committed(100_000);
    let m = repo.manifest("m/model.bin");
    let chunk = m["chunks"][0]["id"].as_str().expect("id").to_string();
    repo.write("m/model.bin", &random_bytes(100_000, 9));
    let err = repo.fails(&["rm", "m/model.bin"]);
    assert!(err.contains("local changes"), "{err}");
    assert!(repo.join("m/model.bin.shard.json").exists());
    let out = repo.json(&["rm", "--force", "m/model.bin"]);
    assert_eq!(out[0]["file_deleted"], true, "{out}");
    assert_eq!(out[0]["untracked"], true, "{out}");
    assert!(!repo.join("m/model.bin").exists() && !repo.join("m/model.bin.shard.json").exists());
    assert!(
        repo.object_path(&chunk).exists(),
        "its versions stay in the store"
    );
    let config = String::from_utf8(repo.read(".shard/config.toml")).expect("utf8");
    assert!(!config.contains("m/model.bin"), "{config}");

    repo.write("b.bin", &random_bytes(50_000, 4));
    repo.ok(&["track", "b.bin"]);
    repo.ok(&["commit", "-m", "b"]);
    repo.ok(&["rm", "--cached", "b.bin.shard.json"]);
    assert!(repo.join("b.bin").exists() && !repo.join("b.bin.shard.json").exists());
    let err = repo.fails(&["rm", "b.bin"]);
    assert!(err.contains("no manifest"), "{err}");
}

/// On an 80-column terminal the progress bar fits its line (issue 23, case 9: it was 160
/// columns wide and wrapped). Run under `script`, which gives the command a terminal.
#[test]
fn progress_bars_fit_an_80_column_terminal() {
    if !common::tool_works(
        "progress_bars_fit_an_80_column_terminal",
        "script",
        &["--version"],
    ) {
        return;
    }
    let repo = TestRepo::new();
    repo.write("big.bin", &random_bytes(64 << 20, 11));
    repo.ok(&["track", "big.bin"]);
    let bin = common::serve::nshard_bin();
    let cmd = format!(
        "stty cols 80 rows 24; {} commit -m 'a long message for a big file'",
        bin.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(repo.path())
        .env("NO_COLOR", "1")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("nshard-tests-no-user-config"),
        )
        .output()
        .expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Strip escape sequences; every piece between carriage returns and newlines is one drawn line.
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    let drawn: Vec<&str> = plain
        .split(['\r', '\n'])
        .filter(|l| l.contains(" eta "))
        .collect();
    assert!(!drawn.is_empty(), "no progress bar was drawn: {plain:?}");
    for l in drawn {
        assert!(
            l.chars().count() <= 80,
            "{} columns: {l:?}",
            l.chars().count()
        );
    }
}

/// `nshard doctor` reports the setup and fails on what is wrong: a remote that does not answer,
/// hooks missing in a git repository, objects moved aside as corrupt.
#[test]
fn doctor_reports_the_setup_and_what_is_wrong() {
    let (repo, _) = TestRepo::committed(50_000);
    let store = tempfile::tempdir().expect("tmp");
    repo.ok(&[
        "remote",
        "add",
        "origin",
        store.path().to_str().expect("utf8"),
    ]);
    repo.ok(&["push"]);
    let checks = repo.json(&["doctor"]);
    let find = |v: &serde_json::Value, what: &str| {
        v.as_array()
            .expect("checks")
            .iter()
            .find(|c| c["what"].as_str().is_some_and(|w| w.starts_with(what)))
            .unwrap_or_else(|| panic!("{what} not in {v}"))
            .clone()
    };
    assert_eq!(find(&checks, "remote origin")["ok"], true, "{checks}");
    assert_eq!(find(&checks, "local store")["ok"], true, "{checks}");
    assert!(
        checks
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["ok"] == true),
        "{checks}"
    );

    // An unreachable remote, missing hooks and a corrupt object each fail the check.
    repo.ok(&["remote", "add", "--local", "gone", "http://127.0.0.1:9"]);
    common::git(repo.path(), &["init", "-q"]);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let p = repo.object_path(&id);
    let mut bytes = fs::read(&p).expect("object");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&p, &bytes).expect("corrupt");
    repo.json_exit(&["verify"], 1);
    let checks = repo.json_exit(&["doctor"], 1);
    assert_eq!(find(&checks, "remote gone")["ok"], false, "{checks}");
    assert_eq!(find(&checks, "git hooks")["ok"], false, "{checks}");
    assert_eq!(find(&checks, "corrupt objects")["ok"], false, "{checks}");
    let out = common::nshard(repo.path())
        .arg("doctor")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL git hooks") && text.contains("nshard git-init"),
        "{text}"
    );
    // Once a good copy is back, the copy moved aside is no longer a problem (nor is a note
    // someone left beside it).
    repo.ok(&["pull", "--remote", "origin"]);
    fs::write(repo.join(".shard/corrupt/notes.txt"), b"seen on Monday").expect("note");
    let checks = repo.json_exit(&["doctor"], 1);
    let corrupt = find(&checks, "corrupt objects");
    assert_eq!(corrupt["ok"], true, "{checks}");
    assert!(
        corrupt["detail"]
            .as_str()
            .is_some_and(|d| d.contains("good copies are back")),
        "{checks}"
    );
}

/// `doctor` checks that a server accepts this setup's token (its health check needs none): a
/// missing or wrong token fails the check.
#[test]
fn doctor_fails_a_server_that_refuses_the_token() {
    let store = tempfile::tempdir().expect("tmp");
    let served = common::serve::Served::start(
        store.path(),
        &[],
        &[("NSHARD_SERVE_TOKENS", "write:doctor-token-0123456789abcdef")],
    );
    let repo = TestRepo::new();
    repo.ok(&["remote", "add", "--local", "srv", &served.at("")]);
    let doctor = |token: Option<&str>| {
        let mut c = common::nshard(repo.path());
        c.args(["doctor", "--json"]);
        if let Some(t) = token {
            c.env("NSHARD_TOKEN", t);
        }
        let out = c.output().expect("runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v.as_array()
            .expect("checks")
            .iter()
            .find(|c| {
                c["what"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("remote srv"))
            })
            .expect("the remote's check")
            .clone()
    };
    let none = doctor(None);
    assert_eq!(none["ok"], false, "{none}");
    let wrong = doctor(Some("wrong-token-0123456789abcdef"));
    assert_eq!(wrong["ok"], false, "{wrong}");
    assert!(wrong["detail"].to_string().contains("token"), "{wrong}");
    let right = doctor(Some("doctor-token-0123456789abcdef"));
    assert_eq!(right["ok"], true, "{right}");
    assert!(
        right["detail"].to_string().contains("token is accepted"),
        "{right}"
    );
}

/// Terminal manners (issue 23, case 9): `--color always` colours states and errors, `never` and a
/// pipe (`auto`) do not, `NO_COLOR` turns `auto` off; the man page's synopsis names `-C`'s value.
#[test]
fn colour_follows_the_flag_and_no_color_and_the_man_synopsis_names_values() {
    let repo = TestRepo::new();
    repo.write("a.bin", &common::random_bytes(20_000, 1));
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "one"]);
    repo.write("a.bin", &common::random_bytes(20_000, 2));
    let run = |args: &[&str], no_color: bool| {
        let mut c = common::nshard(repo.path());
        c.env_remove("NO_COLOR");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        c.args(args).output().expect("runs")
    };
    let always = run(&["--color", "always", "status"], false);
    let text = String::from_utf8_lossy(&always.stdout);
    assert!(text.contains("\x1b[33mmodified"), "{text:?}");
    for (args, no_color) in [
        (&["--color", "never", "status"][..], false),
        (&["status"][..], false),
        (&["--color", "auto", "status"][..], true),
    ] {
        let out = run(args, no_color);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("modified") && !text.contains('\x1b'),
            "{args:?}: {text:?}"
        );
    }
    let err = run(&["--color", "always", "checkout", "nope.bin"], false);
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(text.starts_with("\x1b[1;31merror:"), "{text:?}");
    let err = run(&["--color", "never", "checkout", "nope.bin"], false);
    assert!(String::from_utf8_lossy(&err.stderr).starts_with("error: "));

    let man = repo.ok(&["man"]);
    assert!(man.contains("[\\fB\\-C\\fR \\fIDIR\\fR]"), "{man}");
    assert!(!man.contains("[\\fB\\-C \\fR]"), "{man}");
}
