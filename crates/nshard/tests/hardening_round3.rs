//! Issue 26 (hardening, round three): the cases fixed so far, each end to end with the real
//! binary.

mod common;

use common::{git, TestRepo};

/// Case 10: a committed remote URL with a password is refused without printing the password.
#[test]
fn a_password_in_a_committed_remote_url_is_never_printed() {
    let repo = TestRepo::new();
    repo.ok(&["init"]);
    let cfg = repo.join(".shard/config.toml");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str("\n[[remote]]\nname = \"team\"\nurl = \"http://alice:s3cr3t-pw@127.0.0.1:9/\"\n");
    std::fs::write(&cfg, text).expect("write config");
    for args in [
        &["push", "--remote", "team"][..],
        &["remote", "list"][..],
        &["status", "--remote", "team"][..],
    ] {
        let out = common::nshard(repo.path())
            .args(args)
            .output()
            .expect("runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("s3cr3t-pw"),
            "{args:?} printed the password: {all}"
        );
        assert!(!all.contains("alice"), "{args:?} printed the user: {all}");
    }
    // On the command line too.
    let err = repo.fails(&["remote", "add", "x", "https://bob:hunter2@example.invalid"]);
    assert!(!err.contains("hunter2") && !err.contains("bob"), "{err}");
    assert!(err.contains("https://***@example.invalid"), "{err}");
}

/// Case 7: a manifest that git checks out as a symlink to a FIFO makes the post-checkout hook
/// report it and finish, never block on opening it.
#[cfg(unix)]
#[test]
fn a_hook_never_opens_a_fifo_manifest() {
    use std::time::{Duration, Instant};
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init"]);
    repo.write("m.bin", &common::random_bytes(100_000, 3));
    repo.ok(&["track", "m.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    // A commit whose manifest is a symlink to a FIFO outside the work tree.
    let fifo = repo.join(".shard/tmp/a-fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    git(repo.path(), &["checkout", "-q", "-b", "evil"]);
    std::fs::remove_file(repo.join("m.bin.shard.json")).expect("rm manifest");
    std::os::unix::fs::symlink(&fifo, repo.join("m.bin.shard.json")).expect("symlink");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "fifo manifest"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    // Checking the evil commit out runs post-checkout on the changed manifest; it must end.
    let started = Instant::now();
    let mut child = std::process::Command::new("git")
        .args(["checkout", "-q", "evil"])
        .current_dir(repo.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git checkout");
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("git checkout (post-checkout hook) hung on a FIFO manifest");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the hook reports, git's checkout completed and nothing blocked.
    let _ = status;
    assert!(std::fs::symlink_metadata(repo.join("m.bin.shard.json"))
        .expect("manifest")
        .file_type()
        .is_symlink());
}

/// Case 4: checkout never creates a setuid or setgid file, whatever the mode of the file it
/// replaces (it used to copy a 4777 file's mode, setuid bit included).
#[cfg(unix)]
#[test]
fn checkout_never_creates_a_setuid_file() {
    use std::os::unix::fs::PermissionsExt;
    let (repo, data) = TestRepo::committed(300_000);
    let path = repo.join("m/model.bin");
    std::fs::write(&path, b"someone else's content").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6777)).expect("chmod");
    assert_eq!(
        std::fs::metadata(&path).expect("md").permissions().mode() & 0o7000,
        0o6000,
        "the test file is setuid and setgid"
    );
    repo.ok(&["checkout", "--force"]);
    assert_eq!(repo.read("m/model.bin"), data);
    let mode = std::fs::metadata(&path).expect("md").permissions().mode();
    assert_eq!(mode & 0o7000, 0, "checkout created mode {mode:o}");
    // The read and write bits of the replaced file are kept (less the umask, as for any new
    // file); the execute bits come from the version, which was not executable.
    assert_eq!(mode & 0o700, 0o600, "the owner's bits: {mode:o}");
}

/// Case 4, the rest: a single file's execute bit is recorded at commit (as git's 100755) and
/// checkout gives each version the bit it recorded, on a new file and on one it replaces.
#[cfg(unix)]
#[test]
fn checkout_gives_each_version_its_recorded_execute_bit() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let path = repo.join("run.bin");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("md").permissions().mode();
    std::fs::write(&path, common::random_bytes(200_000, 3)).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    repo.ok(&["track", "run.bin"]);
    repo.ok(&["commit", "-m", "executable"]);
    assert_eq!(repo.manifest("run.bin")["executable"], true);
    let v1 = repo.json(&["log", "run.bin"])[0]["version"]
        .as_str()
        .expect("v1")
        .to_string();
    // Only the mode changes: that is a new version, as in git, and status says so first.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(repo.json(&["status"])[0]["state"], "modified");
    let out = repo.ok(&["commit", "-m", "not executable"]);
    assert!(out.contains("committed version"), "{out}");
    assert!(repo.manifest("run.bin").get("executable").is_none());
    assert_eq!(repo.json(&["status"])[0]["state"], "unchanged");
    repo.ok(&["checkout", "run.bin", "--version", &v1[..12]]);
    assert_eq!(mode(&path) & 0o111, 0o111, "{:o}", mode(&path));
    repo.ok(&["checkout", "run.bin"]);
    assert_eq!(mode(&path) & 0o111, 0, "{:o}", mode(&path));
    // A file checked out where there was none gets the version's bit too.
    std::fs::remove_file(&path).expect("rm");
    repo.ok(&["checkout", "run.bin", "--version", &v1[..12], "--force"]);
    assert_eq!(mode(&path) & 0o100, 0o100, "{:o}", mode(&path));
    assert_eq!(mode(&path) & 0o7000, 0, "{:o}", mode(&path));
}

/// Case 9: a NeuroShard repository under a directory whose name holds a line break: git cannot
/// list its manifests, so pre-push refuses the git push instead of letting the manifests through
/// without their data.
#[test]
fn pre_push_refuses_what_it_cannot_read_instead_of_sending_nothing() {
    let top = tempfile::tempdir().expect("tmp");
    git(top.path(), &["init", "-q", "-b", "main"]);
    let dir = top.path().join("sub\ndir");
    std::fs::create_dir(&dir).expect("mkdir");
    let remote = tempfile::tempdir().expect("remote");
    let bare = tempfile::tempdir().expect("bare");
    git(bare.path(), &["init", "-q", "--bare"]);
    common::ok(&dir, &["init"]);
    common::ok(&dir, &["git-init"]);
    common::ok(
        &dir,
        &[
            "remote",
            "add",
            "data",
            remote.path().to_str().expect("utf8"),
        ],
    );
    std::fs::write(dir.join("m.bin"), common::random_bytes(100_000, 9)).expect("write");
    common::ok(&dir, &["track", "m.bin"]);
    common::ok(&dir, &["commit", "-m", "v1"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "v1"]);
    git(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            bare.path().to_str().expect("utf8"),
        ],
    );
    let out = std::process::Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(&dir)
        .output()
        .expect("git push");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "git push went through: {err}");
    assert!(err.contains("line break"), "{err}");
    // Nothing reached the git remote.
    let refs = git(bare.path(), &["for-each-ref"]);
    assert!(refs.trim().is_empty(), "{refs}");
}

/// Case 5: names every reader refuses (case twins, a file where a directory is) and names that
/// are one file on macOS (NFC and NFD forms) are refused when a unit is committed, with nothing
/// written, instead of making a version nobody can read.
#[test]
fn a_unit_with_names_readers_refuse_is_not_committed() {
    for (a, b) in [
        ("A.txt", "a.txt"),
        ("x", "X/y.txt"),
        ("caf\u{e9}.txt", "cafe\u{301}.txt"),
    ] {
        let repo = TestRepo::new();
        repo.write("data/ok.txt", b"fine\n");
        repo.write(&format!("data/{a}"), b"one\n");
        repo.write(&format!("data/{b}"), b"two\n");
        repo.ok(&["track", "--dir", "data"]);
        let err = repo.fails(&["commit", "-m", "v1"]);
        assert!(err.contains("cannot commit data/"), "{a} / {b}: {err}");
        assert!(
            !repo.join("data.shard.json").exists(),
            "{a} / {b}: a manifest was written"
        );
        // Once one of the pair is gone, the unit commits and reads back.
        std::fs::remove_file(repo.join(&format!("data/{b}"))).expect("rm");
        if b.contains('/') {
            std::fs::remove_dir(repo.join("data/X")).expect("rmdir");
        }
        repo.ok(&["commit", "-m", "v1"]);
        assert_eq!(repo.json(&["status", "data"])[0]["state"], "unchanged");
    }
}

/// Overwrites 4 bytes of `path` at `offset` in place (same size, same inode), then puts its
/// modification time back, as some tools do.
#[cfg(unix)]
fn edit_in_place_keeping_mtime(path: &std::path::Path, offset: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mtime = std::fs::metadata(path)
        .expect("md")
        .modified()
        .expect("mtime");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(b"EDIT").expect("edit");
    f.set_modified(mtime).expect("restore mtime");
}

/// Case 2: an in-place edit whose writer restored the mtime (same size, same inode) is seen: the
/// ctime moved. `status` says modified and `checkout` keeps the edit instead of replacing it.
#[cfg(unix)]
#[test]
fn an_in_place_edit_with_a_restored_mtime_is_seen() {
    let (repo, _v1) = TestRepo::committed(300_000);
    let path = repo.join("m/model.bin");
    let v1_id = repo.json(&["log", "m/model.bin"])[0]["version"]
        .as_str()
        .expect("v1")
        .to_string();
    std::fs::write(&path, common::random_bytes(300_000, 77)).expect("v2");
    repo.ok(&["commit", "-m", "v2"]);
    // Let the stat cache settle past its racy window, then record the file as unchanged.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(repo.json(&["status"])[0]["state"], "unchanged");
    std::thread::sleep(std::time::Duration::from_millis(20));
    edit_in_place_keeping_mtime(&path, 1000);
    let edited = std::fs::read(&path).expect("read");
    assert_eq!(repo.json(&["status"])[0]["state"], "modified");
    let err = repo.fails(&["checkout", "m/model.bin", "--version", &v1_id[..8]]);
    assert!(err.contains("local changes"), "{err}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        edited,
        "the edit was overwritten"
    );
}

/// Case 2's opt-out: `trust_ctime = false` in `.shard/config.local.toml` judges files by size,
/// mtime and inode only (for filesystems that move ctime on their own), as git's
/// `core.trustctime = false` does: the same restored-mtime edit then goes unseen, which is the
/// price of that setting.
#[cfg(unix)]
#[test]
fn trust_ctime_false_judges_by_size_mtime_and_inode() {
    let (repo, _) = TestRepo::committed(100_000);
    let path = repo.join("m/model.bin");
    std::fs::write(
        repo.join(".shard/config.local.toml"),
        "trust_ctime = false\n",
    )
    .expect("cfg");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(repo.json(&["status"])[0]["state"], "unchanged");
    edit_in_place_keeping_mtime(&path, 10);
    assert_eq!(repo.json(&["status"])[0]["state"], "unchanged");
    // With the default, the same file is seen as modified.
    std::fs::remove_file(repo.join(".shard/config.local.toml")).expect("rm cfg");
    assert_eq!(repo.json(&["status"])[0]["state"], "modified");
}

/// Case 8: `git push` with a data server that accepts connections but never answers: the
/// pre-push hook gives up once nothing has moved for its stall limit (30 s by default; 2 s here
/// through NSHARD_HOOK_STALL_SECS) and refuses the push, instead of blocking for minutes.
#[test]
fn pre_push_gives_up_on_a_remote_that_never_answers() {
    use std::time::{Duration, Instant};
    // Accepts every connection and never answers; dropped (closed) when the test ends.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&held);
    silent.set_nonblocking(true).expect("nonblocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let acceptor = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            match silent.accept() {
                Ok((s, _)) => keep.lock().expect("lock").push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });

    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init"]);
    repo.ok(&["remote", "add", "data", &format!("http://{addr}")]);
    repo.write("m.bin", &common::random_bytes(50_000, 5));
    repo.ok(&["track", "m.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    let bare = tempfile::tempdir().expect("bare");
    git(bare.path(), &["init", "-q", "--bare"]);
    git(
        repo.path(),
        &[
            "remote",
            "add",
            "origin",
            bare.path().to_str().expect("utf8"),
        ],
    );
    let started = Instant::now();
    let out = std::process::Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(repo.path())
        .env("NSHARD_HOOK_STALL_SECS", "2")
        .output()
        .expect("git push");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    acceptor.join().expect("acceptor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "git push went through: {err}");
    assert!(err.contains("refusing the git push"), "{err}");
    assert!(err.contains("no progress for 2 s"), "{err}");
    assert!(took < Duration::from_secs(60), "the hook took {took:?}");
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the hook reached the server"
    );
}

/// A server that answers the health check with an endless JSON body (issue 26, case 6): the
/// client stops reading at its cap and says so, instead of buffering gigabytes.
#[test]
fn a_huge_answer_from_a_server_is_refused_not_buffered() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        // One connection (the client retries only transient failures); at most 256 MiB sent.
        let (mut c, _) = listener.accept().expect("accept");
        let mut head = [0u8; 4096];
        let _ = c.read(&mut head);
        let _ = c.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"service\":\"",
        );
        let block = vec![b'a'; 1 << 20];
        for _ in 0..256 {
            if c.write_all(&block).is_err() {
                break;
            }
        }
    });
    let (repo, _) = TestRepo::committed(10_000);
    let err = repo.fails(&["push", "--remote", &url]);
    assert!(err.contains("larger than"), "{err}");
    server.join().expect("server thread");
}

/// Fails when anything was written into `dir` (outside the repository).
fn assert_nothing_in(dir: &std::path::Path, what: &str) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("read outside")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{what}: wrote outside the repository: {left:?}"
    );
}

/// Case 1: a parent directory swapped for a symlink to a directory outside the repository after
/// checkout checked the path, but before it wrote (the checkout is held at that moment and goes on
/// once the swap is done): nothing lands outside. The write and the rename happen in the directory
/// checkout opened (now renamed aside inside the repository), never through the new symlink.
#[cfg(unix)]
#[test]
fn checkout_never_writes_outside_when_a_directory_is_swapped_for_a_symlink() {
    use common::failpoints::{spawn_resumable, wait_at_point};
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.join("m")).expect("mkdir");
    let data = common::random_bytes(200_000, 7);
    repo.write("m/model.bin", &data);
    repo.ok(&["track", "m/model.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    std::fs::remove_file(repo.join("m/model.bin")).expect("rm");
    let outside = tempfile::tempdir().expect("outside");
    let resume = repo.join("resume");
    let (mut child, lines) = spawn_resumable(
        repo.path(),
        &["checkout", "m/model.bin"],
        "checkout-before-write",
        &resume,
    );
    wait_at_point(&mut child, &lines, "checkout");
    std::fs::rename(repo.join("m"), repo.join("m.real")).expect("move m aside");
    std::os::unix::fs::symlink(outside.path(), repo.join("m")).expect("plant symlink");
    std::fs::write(&resume, b"").expect("resume");
    let st = child.wait().expect("wait");
    assert_nothing_in(outside.path(), &format!("checkout ({st})"));
    // It wrote into the directory it had opened, under its new name.
    assert!(st.success(), "{st}");
    assert_eq!(repo.read("m.real/model.bin"), data);
}

/// Case 1 for directory units: a subdirectory swapped for a symlink to a directory outside the
/// repository, once after its path was checked but before the temporary file was created in it,
/// once after the files were written, before they are renamed into place: checkout refuses the
/// swapped directory, and nothing is written or renamed outside.
#[cfg(unix)]
#[test]
fn unit_checkout_never_writes_into_a_directory_swapped_for_a_symlink() {
    use common::failpoints::{spawn_resumable, wait_at_point};
    for point in ["batch-before-temp", "batch-before-rename"] {
        let repo = TestRepo::new();
        std::fs::create_dir_all(repo.join("data/sub")).expect("mkdir");
        repo.write("data/sub/a.txt", b"alpha");
        repo.write("data/b.txt", b"beta");
        repo.ok(&["track", "--dir", "data"]);
        repo.ok(&["commit", "-m", "v1"]);
        std::fs::remove_file(repo.join("data/sub/a.txt")).expect("rm");
        let outside = tempfile::tempdir().expect("outside");
        let resume = repo.join("resume");
        let (mut child, lines) =
            spawn_resumable(repo.path(), &["checkout", "data"], point, &resume);
        wait_at_point(&mut child, &lines, point);
        std::fs::rename(repo.join("data/sub"), repo.join("sub.real")).expect("move aside");
        std::os::unix::fs::symlink(outside.path(), repo.join("data/sub")).expect("plant symlink");
        std::fs::write(&resume, b"").expect("resume");
        let st = child.wait().expect("wait");
        assert_nothing_in(outside.path(), &format!("{point} ({st})"));
        assert!(!st.success(), "{point}: the swap must be refused: {st}");
    }
}
