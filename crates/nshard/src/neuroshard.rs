//! `neuroshard`: the same program as `nshard` under the Python package's name (so that `pipx run
//! neuroshard …` works). It runs the `nshard` binary installed next to it with the same arguments;
//! on Unix it replaces itself with it, so exit status, signals and the terminal are nshard's own.

use std::process::{Command, ExitCode};

/// The shell's status for "found but cannot be run".
const CANNOT_RUN: u8 = 126;

fn main() -> ExitCode {
    let nshard = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(format!("nshard{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => {
            eprintln!("error: neuroshard cannot find its own path: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let mut cmd = Command::new(&nshard);
    cmd.args(std::env::args_os().skip(1));
    let e = run(cmd);
    eprintln!(
        "error: cannot run {}: {e} (neuroshard runs the nshard installed next to it; reinstall the package)",
        nshard.display()
    );
    ExitCode::from(CANNOT_RUN)
}

/// Replaces this process with `cmd`; returns only if that fails.
#[cfg(unix)]
fn run(mut cmd: Command) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    cmd.exec()
}

/// Runs `cmd` and exits with its status.
#[cfg(not(unix))]
fn run(mut cmd: Command) -> std::io::Error {
    match cmd.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => e,
    }
}
