//! The failpoint binary, `nshard-failpoints` (`nshard` built with the `failpoints` feature): a
//! command started with `NSHARD_FAILPOINTS=POINT` stops at that named point and waits, so a test
//! can kill it there (crash tests) or look at it (its peak memory so far).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// How long a command gets to reach its crash point (it takes a second or two).
pub const REACH: Duration = Duration::from_secs(120);

/// The `nshard-failpoints` binary (`nshard` with crash points), built once per test run into
/// the same target directory (only that binary: the `nshard` the other tests run is untouched).
pub fn failpoint_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let nshard = super::serve::nshard_bin();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "nshard",
                "--features",
                "failpoints",
            ])
            .args(["--bin", "nshard-failpoints"])
            .current_dir(manifest_dir)
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "building the failpoint binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        nshard.with_file_name("nshard-failpoints")
    })
}

/// Starts the failpoint binary with `args` in `dir`, stopping at the `nth` hit of `point`.
pub fn spawn_at(dir: &Path, args: &[&str], point: &str) -> (Child, mpsc::Receiver<String>) {
    spawn_with(dir, args, point, None, &[])
}

/// Like [`spawn_at`], but the command goes on from `point` once the file `resume` exists.
pub fn spawn_resumable(
    dir: &Path,
    args: &[&str],
    point: &str,
    resume: &Path,
) -> (Child, mpsc::Receiver<String>) {
    spawn_with(dir, args, point, Some(resume), &[])
}

/// [`spawn_resumable`] with more environment variables.
pub fn spawn_resumable_with(
    dir: &Path,
    args: &[&str],
    point: &str,
    resume: &Path,
    envs: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>) {
    spawn_with(dir, args, point, Some(resume), envs)
}

fn spawn_with(
    dir: &Path,
    args: &[&str],
    point: &str,
    resume: Option<&Path>,
    envs: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = Command::new(failpoint_bin());
    cmd.envs(envs.iter().copied());
    if let Some(r) = resume {
        cmd.env("NSHARD_FAILPOINT_RESUME", r);
    }
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .env("NSHARD_FAILPOINTS", point)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn failpoint nshard");
    // Both streams, line by line, into one channel.
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx2.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits for `child` to reach its crash point, then kills it with SIGKILL.
pub fn kill_at_point(mut child: Child, lines: &mpsc::Receiver<String>, what: &str) {
    wait_at_point(&mut child, lines, what);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// Waits for `child` to reach its crash point (where it stays until killed).
pub fn wait_at_point(child: &mut Child, lines: &mpsc::Receiver<String>, what: &str) {
    let deadline = std::time::Instant::now() + REACH;
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.starts_with("nshard-failpoint:") && l.ends_with("reached") => break,
            Ok(l) => seen.push(l),
            Err(_) => {}
        }
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!(
                "{what} finished ({st}) without reaching its crash point:\n{}",
                seen.join("\n")
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: crash point not reached"
        );
    }
}
