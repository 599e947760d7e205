//! Output helpers: the command context, human-readable sizes, and the indicatif progress bar.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nshard_core::git::GitTree;
use nshard_core::Progress;
use nshard_core::Repo;
use unit_prefix::NumberPrefix;

use crate::Cli;
use nshard_core::RepoError;

/// What every command gets: where it runs and how it should talk.
pub struct Ctx {
    /// The directory the command runs in (`-C` or the process's current directory).
    pub cwd: PathBuf,
    /// `-q`.
    pub quiet: bool,
    /// The user's config file (`$XDG_CONFIG_HOME/nshard/config.toml`, else
    /// `~/.config/nshard/config.toml`); `None` when neither variable is usable.
    pub user_config: Option<PathBuf>,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Result<Self> {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        let cwd = match &cli.dir {
            Some(d) => here.join(d),
            None => here,
        };
        QUIET.store(cli.quiet, Ordering::Relaxed);
        set_color(cli.color);
        Ok(Self {
            cwd,
            quiet: cli.quiet,
            user_config: user_config_path(),
        })
    }

    /// Opens the repository containing the working directory, with the user's config file.
    pub fn repo(&self) -> Result<Repo> {
        Ok(Repo::discover(&self.cwd)?.with_user_config(self.user_config.clone())?)
    }

    /// Opens the repository; in a git work tree that has manifests but no `.shard/` (a clone whose
    /// owner committed only manifests), creates the local store at the work tree's top first and
    /// says so in one line on stderr.
    pub fn repo_or_init(&self) -> Result<Repo> {
        match Repo::discover(&self.cwd) {
            Err(e @ nshard_core::Error::Repo(RepoError::NotARepo(_))) => {
                let Some(tree) = GitTree::find(&self.cwd) else {
                    return Err(e.into());
                };
                if !tree.has_manifests().unwrap_or(false) {
                    return Err(e.into());
                }
                let repo = self.create_local_store(&tree)?;
                eprintln!(
                    "nshard: no NeuroShard repository here yet; created the local store in {}",
                    repo.shard_dir().display()
                );
                Ok(repo)
            }
            r => Ok(r?.with_user_config(self.user_config.clone())?),
        }
    }

    /// Creates a clone's local store at the top of its git work tree, kept out of git through
    /// `.git/info/exclude`, and opens the repository there.
    pub fn create_local_store(&self, tree: &GitTree) -> Result<Repo> {
        let repo = Repo::init_for_clone(&tree.top)?;
        repo.exclude_local_store()?;
        Ok(repo.with_user_config(self.user_config.clone())?)
    }

    /// A progress sink: a bar on a terminal, nothing with `-q`, `--json` or when stderr is not a TTY.
    pub fn progress(&self, json: bool) -> Bar {
        Bar {
            enabled: !self.quiet && !json && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

/// The user's config file, as the XDG base directory spec places it: `$XDG_CONFIG_HOME` when it
/// is an absolute path, else `$HOME/.config`.
fn user_config_path() -> Option<PathBuf> {
    let abs = |v: &str| {
        std::env::var_os(v)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    abs("XDG_CONFIG_HOME")
        .or_else(|| abs("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("nshard").join("config.toml"))
}

/// Writes a line to stdout; returns the I/O error (a broken pipe ends the command quietly).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `-q` for the whole process (set once by [`Ctx::new`]), read by [`per_file!`].
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Like [`out!`], for a line about one file (`a.bin: committed version …`): `-q` silences it.
/// Summaries use `out!`, and errors go to stderr whatever `-q` says.
#[macro_export]
macro_rules! per_file {
    ($($arg:tt)*) => {{
        if !$crate::output::quiet() {
            $crate::out!($($arg)*)
        }
    }};
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // As an io::Error, so that a closed pipe (`nshard log --json | head`) is recognised.
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// When to colour output (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set (or `TERM` is `dumb`).
    #[default]
    Auto,
    /// Always, even into a pipe or file.
    Always,
    /// Never.
    Never,
}

/// Whether stdout (bit 0) and stderr (bit 1) are coloured; set once by [`Ctx::new`].
static COLOR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn set_color(when: ColorWhen) {
    use std::io::IsTerminal;
    let auto_ok = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
    let bits = match when {
        ColorWhen::Never => 0,
        ColorWhen::Always => 3,
        ColorWhen::Auto if !auto_ok => 0,
        ColorWhen::Auto => {
            u8::from(std::io::stdout().is_terminal())
                | (u8::from(std::io::stderr().is_terminal()) << 1)
        }
    };
    COLOR.store(bits, Ordering::Relaxed);
}

/// Colours of the output.
#[derive(Clone, Copy)]
pub enum Paint {
    /// Errors, and states that need action (missing data, conflicts, invalid manifests).
    Bad,
    /// Warnings, and states that differ from what was committed.
    Warn,
    /// New things.
    Good,
    /// Hints.
    Hint,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Bad => "\x1b[1;31m",
            Paint::Warn => "\x1b[33m",
            Paint::Good => "\x1b[32m",
            Paint::Hint => "\x1b[36m",
        }
    }

    /// `text` in this colour, when stdout is coloured.
    pub fn out(self, text: &str) -> String {
        self.paint(text, 1)
    }

    /// `text` in this colour, when stderr is coloured.
    pub fn err(self, text: &str) -> String {
        self.paint(text, 2)
    }

    fn paint(self, text: &str, bit: u8) -> String {
        if COLOR.load(Ordering::Relaxed) & bit == 0 {
            return text.to_string();
        }
        format!("{}{text}\x1b[0m", self.code())
    }
}

/// `error: MESSAGE` on stderr (coloured on a terminal).
pub fn error_line(msg: &str) {
    eprintln!("{} {msg}", Paint::Bad.err("error:"));
}

/// `hint: MESSAGE` on stderr.
pub fn hint_line(msg: &str) {
    eprintln!("{} {msg}", Paint::Hint.err("hint:"));
}

/// Prints a per-file error to stderr, and what to do about it.
pub fn file_error(path: &impl std::fmt::Display, e: &nshard_core::Error) {
    // Errors that name the file already are not prefixed with it a second time.
    let (p, m) = (path.to_string(), e.to_string());
    let line = if m.starts_with(&format!("{p}: ")) {
        m
    } else {
        format!("{p}: {m}")
    };
    error_line(&inert(&line));
    if let Some(h) = crate::hints::hint(e) {
        hint_line(&h);
    }
}

/// A message with control and invisible characters escaped (line breaks kept), so that a name
/// from someone else's manifest can never rewrite the terminal it is printed on.
pub fn inert(msg: &str) -> String {
    msg.split('\n')
        .map(nshard_core::neutralize_path)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.5 GiB`, `12.0 MiB`, `512 B` (binary units, one decimal).
pub fn bytes(n: u64) -> String {
    match NumberPrefix::binary(n as f64) {
        NumberPrefix::Standalone(_) => format!("{n} B"),
        NumberPrefix::Prefixed(prefix, v) => format!("{v:.1} {prefix}B"),
    }
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
            // Sized to the terminal: the label takes what the figures leave (and is cut only at
            // the terminal's edge), so the line never wraps on an 80-column terminal.
            ProgressStyle::with_template(
                "[{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}",
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

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(50 << 20), "50.0 MiB");
        assert_eq!(bytes((1 << 30) + (1 << 29)), "1.5 GiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }
}
