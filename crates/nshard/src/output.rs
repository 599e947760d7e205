//! Output helpers: the command context, human-readable sizes, and the indicatif progress bar.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nshard_core::progress::Progress;
use nshard_core::repo::Repo;

use crate::Cli;

/// What every command gets: where it runs and how it should talk.
pub struct Ctx {
    /// The directory the command runs in (`-C` or the process's current directory).
    pub cwd: PathBuf,
    /// `-q`.
    pub quiet: bool,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Result<Self> {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        let cwd = match &cli.dir {
            Some(d) => here.join(d),
            None => here,
        };
        Ok(Self {
            cwd,
            quiet: cli.quiet,
        })
    }

    /// Opens the repository containing the working directory.
    pub fn repo(&self) -> Result<Repo> {
        Ok(Repo::discover(&self.cwd)?)
    }

    /// A progress sink: a bar on a terminal, nothing with `-q`, `--json` or when stderr is not a TTY.
    pub fn progress(&self, json: bool) -> Bar {
        Bar {
            enabled: !self.quiet && !json && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

/// Writes a line to stdout; returns the I/O error (a broken pipe ends the command quietly).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a per-file error to stderr.
pub fn file_error(path: &impl std::fmt::Display, e: &nshard_core::Error) {
    eprintln!("error: {}", inert(&format!("{path}: {e}")));
}

/// A message with control and invisible characters escaped (line breaks kept), so that a name
/// from someone else's manifest can never rewrite the terminal it is printed on.
pub fn inert(msg: &str) -> String {
    msg.split('\n')
        .map(nshard_core::portable::neutralize)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// `1 chunk`, `3 chunks`: a count with its noun (plural by adding "s").
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A percentage with one decimal.
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0 %".into();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

/// indicatif progress bar behind the library's `Progress` trait.
pub struct Bar {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb.set_message(label.to_string());
        *self.bar.lock().expect("progress lock") = Some(pb);
    }
    fn advance(&self, n: u64) {
        if let Some(pb) = self.bar.lock().expect("progress lock").as_ref() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().expect("progress lock").take() {
            pb.finish_and_clear();
        }
    }
}
