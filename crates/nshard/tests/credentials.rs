//! Which token goes where: a URL from the committed `.shard/config.toml` never receives the
//! user's `NSHARD_TOKEN`, only a token stored with `nshard login` for that exact origin. A tiny
//! HTTP listener on a 127.0.0.1 port records the `Authorization` header of every request.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{git, nshard, random_bytes, TestRepo};

const ENV_TOKEN: &str = "env-general-token-0123456789";
const ENV_NAMED: &str = "env-named-token-0123456789";

/// A fake server: answers `GET /v1/health` like protocol 1 and everything else with 401, and
/// records each request's `Authorization` header (`None` when absent).
struct Listener {
    url: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 10 minutes and 10,000 connections, whatever happens.
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut served = 0;
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline && served < 10_000 {
                match l.accept() {
                    Ok((conn, _)) => {
                        served += 1;
                        let s = s.clone();
                        // One thread per connection: a client may hold an idle keep-alive
                        // connection open while it uses another.
                        std::thread::spawn(move || serve(conn, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener {
            url,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The `Authorization` headers of the requests so far (one entry per request).
    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("lock").clone()
    }

    fn clear(&self) {
        self.seen.lock().expect("lock").clear();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the requests of one connection (keep-alive) until it closes.
fn serve(conn: TcpStream, seen: &Mutex<Vec<Option<String>>>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    for _ in 0..100 {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut auth = None;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => auth = Some(v.trim().to_string()),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        seen.lock().expect("lock").push(auth);
        let (status, body) = if request_line.starts_with("GET /v1/health ") {
            ("200 OK", r#"{"protocol":1}"#)
        } else {
            ("401 Unauthorized", r#"{"error":"token required"}"#)
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs nshard in `dir` with the user config under `home` and the given environment tokens.
/// Returns (success, stdout + stderr).
fn run(
    dir: &Path,
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (bool, String) {
    let mut c = nshard(dir);
    c.args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("NSHARD_TOKEN")
        .env_remove("NSHARD_TOKEN_ORIGIN")
        .write_stdin(stdin);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const TOKENS: [(&str, &str); 2] = [
    ("NSHARD_TOKEN", ENV_TOKEN),
    ("NSHARD_TOKEN_ORIGIN", ENV_NAMED),
];

/// A repository with one committed file whose committed config names `url` as remote `origin`
/// (what a clone of someone else's repository holds).
fn committed_repo(url: &str) -> TestRepo {
    let r = TestRepo::new();
    r.write("m.bin", &random_bytes(200_000, 7));
    r.ok(&["track", "m.bin"]);
    r.ok(&["commit", "-m", "v1"]);
    std::fs::write(
        r.join(".shard/config.toml"),
        format!("default_remote = \"origin\"\ntrack = [\"m.bin\"]\n\n[[remote]]\nname = \"origin\"\nurl = \"{url}\"\n"),
    )
    .expect("write committed config");
    r
}

fn assert_no_env_token(l: &Listener, what: &str) {
    let seen = l.seen();
    assert!(!seen.is_empty(), "{what}: the listener saw no request");
    for auth in &seen {
        let a = auth.as_deref().unwrap_or("");
        assert!(
            !a.contains(ENV_TOKEN) && !a.contains(ENV_NAMED),
            "{what}: a committed URL received the user's token: {seen:?}"
        );
    }
}

#[test]
fn committed_config_url_never_receives_the_users_token() {
    let foreign = Listener::start();
    let home = tempfile::tempdir().expect("home");
    let r = committed_repo(&foreign.url);
    for args in [
        &["push"][..],
        &["push", "--remote", "origin"],
        &["pull", "--all-versions"],
    ] {
        foreign.clear();
        let (ok, out) = run(r.path(), home.path(), args, &TOKENS, "");
        assert_no_env_token(&foreign, &format!("{args:?}"));
        assert!(
            foreign.seen().iter().all(Option::is_none),
            "{args:?}: {:?}",
            foreign.seen()
        );
        if args[0] == "push" {
            // The fake server refuses the upload; the hint says what to do.
            assert!(!ok, "{args:?}: {out}");
            assert!(out.contains("nshard login"), "{args:?}: {out}");
        }
    }

    // Control: the same listener does receive NSHARD_TOKEN when the user names the URL.
    foreign.clear();
    let (ok, _) = run(
        r.path(),
        home.path(),
        &["push", "--remote", &foreign.url],
        &TOKENS,
        "",
    );
    assert!(!ok);
    assert_eq!(
        foreign.seen()[0].as_deref(),
        Some(&*format!("Bearer {ENV_TOKEN}"))
    );

    // A remote in the user's own files (local or user level) may receive it too.
    r.ok(&["remote", "add", "--local", "mine", &foreign.url]);
    foreign.clear();
    let (ok, _) = run(
        r.path(),
        home.path(),
        &["push", "--remote", "mine"],
        &TOKENS,
        "",
    );
    assert!(!ok);
    assert_eq!(
        foreign.seen()[0].as_deref(),
        Some(&*format!("Bearer {ENV_TOKEN}"))
    );
}

#[test]
fn a_personal_remote_of_the_same_name_overrides_the_committed_one() {
    let foreign = Listener::start();
    let mine = Listener::start();
    let home = tempfile::tempdir().expect("home");
    let r = committed_repo(&foreign.url);
    // The user points `origin` at their own server in config.local.toml: that URL is theirs.
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["remote", "add", "--local", "origin", &mine.url],
        &[],
        "",
    );
    assert!(ok, "{out}");
    let (ok, _) = run(r.path(), home.path(), &["push"], &TOKENS, "");
    assert!(!ok);
    assert!(foreign.seen().is_empty(), "{:?}", foreign.seen());
    assert_eq!(
        mine.seen()[0].as_deref(),
        Some(&*format!("Bearer {ENV_NAMED}"))
    );
    // A user-level `origin` is lower than the committed one: the committed URL wins, and it still
    // gets no token.
    mine.clear();
    run(
        r.path(),
        home.path(),
        &["remote", "remove", "--local", "origin"],
        &[],
        "",
    );
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["remote", "add", "--user", "origin", &mine.url],
        &[],
        "",
    );
    assert!(ok, "{out}");
    let (ok, _) = run(r.path(), home.path(), &["push"], &TOKENS, "");
    assert!(!ok);
    assert!(mine.seen().is_empty(), "{:?}", mine.seen());
    assert_no_env_token(&foreign, "user-level origin shadowed by the committed one");
}

#[test]
fn login_binds_a_token_to_one_origin() {
    let team = Listener::start();
    let other = Listener::start();
    let home = tempfile::tempdir().expect("home");
    let r = committed_repo(&team.url);

    // Never from argv; without a terminal, only with --token-stdin.
    let (ok, out) = run(r.path(), home.path(), &["login", &team.url, "tok"], &[], "");
    assert!(!ok, "{out}");
    let (ok, out) = run(r.path(), home.path(), &["login", &team.url], &[], "");
    assert!(!ok && out.contains("--token-stdin"), "{out}");
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["login", &team.url, "--token-stdin"],
        &[],
        "  \n",
    );
    assert!(!ok && out.contains("empty"), "{out}");

    let (ok, out) = run(
        r.path(),
        home.path(),
        &["login", &team.url, "--token-stdin", "--no-check"],
        &[],
        "stored-team-token\n",
    );
    assert!(ok, "{out}");
    let user_file = home.path().join("nshard/config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&user_file)
            .expect("user file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    assert!(!out.contains("stored-team-token"), "{out}");
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["login", "origin", "--token-stdin", "--no-check"],
        &[],
        "stored-team-token-2",
    );
    assert!(
        ok && out.contains("replaced"),
        "a remote name resolves to its origin: {out}"
    );
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["login", &other.url, "--token-stdin", "--no-check"],
        &[],
        "stored-other-token",
    );
    assert!(ok, "{out}");

    // The committed URL now receives exactly the token stored for its origin, never NSHARD_TOKEN.
    let (ok, _) = run(r.path(), home.path(), &["push"], &TOKENS, "");
    assert!(!ok);
    let seen = team.seen();
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer stored-team-token-2")),
        "{seen:?}"
    );
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    // A URL the user types gets the token stored for its origin before NSHARD_TOKEN.
    let (ok, _) = run(
        r.path(),
        home.path(),
        &["push", "--remote", &other.url],
        &TOKENS,
        "",
    );
    assert!(!ok);
    assert_eq!(
        other.seen()[0].as_deref(),
        Some("Bearer stored-other-token")
    );

    // After logout nothing is sent to the committed URL again.
    let (ok, out) = run(r.path(), home.path(), &["logout", &team.url], &[], "");
    assert!(ok && out.contains("removed"), "{out}");
    team.clear();
    let (ok, _) = run(r.path(), home.path(), &["push"], &TOKENS, "");
    assert!(!ok);
    assert!(team.seen().iter().all(Option::is_none), "{:?}", team.seen());
    let (ok, out) = run(r.path(), home.path(), &["logout", &team.url], &[], "");
    assert!(ok && out.contains("no token"), "{out}");
    // Without --no-check the server is asked first: this one refuses every token, so nothing
    // is stored.
    let (ok, out) = run(
        r.path(),
        home.path(),
        &["login", &team.url, "--token-stdin"],
        &[],
        "refused-team-token",
    );
    assert!(!ok && out.contains("did not accept the token"), "{out}");
    assert!(out.contains("nothing was stored"), "{out}");
    let cfg = std::fs::read_to_string(&user_file).expect("user file");
    assert!(!cfg.contains("refused-team-token"), "{cfg}");
}

/// `login` asks a real server whether it accepts the token: a wrong one stores nothing and the
/// token stored before stays; a right one is stored.
#[test]
fn login_checks_the_token_with_the_server() {
    let store = tempfile::tempdir().expect("store");
    let served = common::serve::Served::start(
        store.path(),
        &[],
        &[("NSHARD_SERVE_TOKENS", "write:good-token-0123456789abcdef")],
    );
    let url = served.at("");
    let home = tempfile::tempdir().expect("home");
    let d = tempfile::tempdir().expect("dir");
    let login = |token: &str| {
        run(
            d.path(),
            home.path(),
            &["login", &url, "--token-stdin"],
            &[],
            token,
        )
    };
    let (ok, out) = login("good-token-0123456789abcdef");
    assert!(ok && out.contains("stored the token"), "{out}");
    let (ok, out) = login("wrong-token-0123456789abcdef");
    assert!(!ok && out.contains("did not accept the token"), "{out}");
    assert!(!out.contains("hint: check the token stored"), "{out}");
    let (ok, out) = login("short");
    assert!(!ok && out.contains("nothing was stored"), "{out}");
    // Nothing answering is not a refusal.
    let (ok, out) = run(
        d.path(),
        home.path(),
        &["login", "http://127.0.0.1:9", "--token-stdin"],
        &[],
        "some-token-0123456789abcdef",
    );
    assert!(!ok && out.contains("could not ask"), "{out}");
    let cfg = std::fs::read_to_string(home.path().join("nshard/config.toml")).expect("user file");
    assert!(cfg.contains("good-token-0123456789abcdef"), "{cfg}");
    assert!(
        !cfg.contains("wrong-token") && !cfg.contains("short"),
        "{cfg}"
    );
}

#[test]
fn config_levels_list_set_url_default_remove() {
    let home = tempfile::tempdir().expect("home");
    let d = tempfile::tempdir().expect("tmp");
    let repo = d.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    let r = |args: &[&str]| {
        let (ok, out) = run(&repo, home.path(), args, &[], "");
        assert!(ok, "nshard {args:?}: {out}");
        out
    };
    let fails = |args: &[&str]| {
        let (ok, out) = run(&repo, home.path(), args, &[], "");
        assert!(!ok, "nshard {args:?} should fail: {out}");
        out
    };
    r(&["init"]);
    r(&["git-init"]);
    // Directory remotes must exist when they are added.
    let store = |n: &str| {
        let p = d.path().join(n);
        std::fs::create_dir_all(&p).expect("mkdir");
        p.display().to_string()
    };
    let out = r(&["remote", "add", "team", &store("team")]);
    assert!(
        out.contains("shared config") && out.contains("(default)"),
        "{out}"
    );
    r(&["remote", "add", "--user", "personal", &store("personal")]);
    r(&["remote", "add", "--local", "scratch", &store("scratch")]);
    let list = |()| {
        let (ok, out) = run(&repo, home.path(), &["remote", "list", "--json"], &[], "");
        assert!(ok, "{out}");
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    };
    let l = list(());
    let levels: Vec<(&str, &str, bool)> = l
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name"),
                e["level"].as_str().expect("level"),
                e["default"].as_bool().expect("default"),
            )
        })
        .collect();
    assert_eq!(
        levels,
        [
            ("personal", "user", false),
            ("team", "shared", true),
            ("scratch", "local", false)
        ]
    );
    // Where each one is written.
    let shared = std::fs::read_to_string(repo.join(".shard/config.toml")).expect("shared");
    let local = std::fs::read_to_string(repo.join(".shard/config.local.toml")).expect("local");
    let user = std::fs::read_to_string(home.path().join("nshard/config.toml")).expect("user");
    assert!(shared.contains("team") && !shared.contains("scratch") && !shared.contains("personal"));
    assert!(local.contains("scratch") && !local.contains("team"));
    assert!(user.contains("personal") && !user.contains("team"));
    let human = r(&["remote", "list"]);
    assert!(
        human.contains("* team") && human.contains("local"),
        "{human}"
    );

    // The personal file never reaches git.
    git(&repo, &["add", "-A"]);
    let staged = git(&repo, &["diff", "--cached", "--name-only"]);
    assert!(staged.contains(".shard/config.toml"), "{staged}");
    assert!(!staged.contains("config.local.toml"), "{staged}");

    // A local default beats the shared one; --unset brings it back.
    let out = r(&["remote", "default", "--local", "scratch"]);
    assert!(out.contains("default remote is now scratch"), "{out}");
    assert!(r(&["remote", "default"]).contains("scratch  (set in the local config)"));
    r(&["remote", "default", "--local", "--unset"]);
    assert!(r(&["remote", "default"]).contains("team"));
    let out = fails(&["remote", "default", "nosuch"]);
    assert!(out.contains("no remote named \"nosuch\""), "{out}");

    // set-url changes the file the remote comes from.
    r(&["remote", "set-url", "scratch", &store("scratch2")]);
    let local = std::fs::read_to_string(repo.join(".shard/config.local.toml")).expect("local");
    assert!(local.contains("scratch2"), "{local}");
    let out = fails(&["remote", "set-url", "--shared", "scratch", "/x"]);
    assert!(
        out.contains("no remote named \"scratch\" in the shared config"),
        "{out}"
    );

    // Same name at two levels: the higher one is used, the other is listed as overridden.
    r(&["remote", "add", "--local", "team", &store("team-mine")]);
    let l = list(());
    let team: Vec<&serde_json::Value> = l
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["name"] == "team")
        .collect();
    assert_eq!(team.len(), 2);
    assert_eq!(team[0]["overridden_by"], "local");
    assert_eq!(team[1]["default"], true);
    // Push goes to the local definition.
    std::fs::write(repo.join("f.bin"), random_bytes(50_000, 1)).expect("write");
    r(&["track", "f.bin"]);
    r(&["commit", "-m", "v1"]);
    std::fs::create_dir_all(d.path().join("team-mine")).expect("mkdir");
    std::fs::create_dir_all(d.path().join("team")).expect("mkdir");
    r(&["push"]);
    assert!(d.path().join("team-mine/objects").exists());
    assert!(!d.path().join("team/objects").exists());
    // Removing it uncovers the shared one.
    let out = r(&["remote", "remove", "team"]);
    assert!(
        out.contains("from the local config") && out.contains("shared config's remote team"),
        "{out}"
    );
    r(&["push"]);
    assert!(d.path().join("team/objects").exists());

    // Tracked paths and chunking stay shared.
    std::fs::write(repo.join(".shard/config.local.toml"), "track = [\"x\"]\n").expect("write");
    let out = fails(&["status"]);
    assert!(out.contains("shared settings"), "{out}");
}
