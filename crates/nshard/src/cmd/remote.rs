//! `nshard remote add|list|remove`, and what push and pull share: opening the remote, the async
//! runtime, printing transfer results.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nshard_core::remote::{self, OpenOptions, Store};
use nshard_core::repo::{RemoteName, Repo, ResolvedRemote};
use nshard_core::transfer::{FileTransfer, TransferStats};

use crate::out;
use crate::output::{bytes, file_error, print_json, Ctx};

/// Manage the remotes stored in `.shard/config.toml` (committed to git, so clones share them).
///
/// A remote is a directory (`/srv/models`, `./store`, `file:///srv/models`), a NeuroShard server
/// (`http://host:8000`) or an S3 bucket (`s3://bucket/prefix`, credentials from the AWS_* variables). The first remote added is
/// the default one, used by push and pull when `--remote` is not given.
#[derive(Args, Debug)]
pub struct RemoteArgs {
    #[command(subcommand)]
    pub command: RemoteCommand,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a remote. A relative directory is stored as an absolute path.
    Add(AddArgs),
    /// List the remotes (the default one is marked with `*`).
    List(ListArgs),
    /// Remove a remote from the config (its data is left alone).
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Its name: letters, digits, '-', '_', '.' (e.g. `origin`).
    pub name: String,
    /// Where it is: a directory, file:///dir, http(s)://host:port or s3://bucket/prefix.
    pub url: String,
    /// Make it the default remote (the first remote added is the default anyway).
    #[arg(long)]
    pub default: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The remote's name.
    pub name: String,
}

pub fn run(ctx: &Ctx, a: RemoteArgs) -> Result<ExitCode> {
    let mut repo = ctx.repo()?;
    match a.command {
        RemoteCommand::Add(a) => {
            let name = RemoteName::parse(&a.name)?;
            let e = repo.add_remote(&name, &a.url, &ctx.cwd, a.default)?;
            let def = if e.default { " (default)" } else { "" };
            out!("added remote {} → {}{def}", e.name, e.url);
        }
        RemoteCommand::List(a) => {
            let list = repo.remotes();
            if a.json {
                print_json(&list)?;
            } else if list.is_empty() {
                out!("no remotes (add one with `nshard remote add NAME URL`)");
            } else {
                for r in list {
                    let mark = if r.default { "*" } else { " " };
                    out!("{mark} {:<16} {}", r.name, r.url);
                }
            }
        }
        RemoteCommand::Remove(a) => {
            let new_default = repo.remove_remote(&a.name)?;
            out!("removed remote {}", a.name);
            if let Some(d) = new_default {
                out!("default remote is now {d}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub use super::awsenv::s3_options;

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves `--remote` (or the default remote) and opens it.
pub async fn open(
    repo: &Repo,
    ctx: &Ctx,
    arg: Option<&str>,
) -> Result<(ResolvedRemote, Arc<dyn Store>)> {
    let r = repo.resolve_remote(arg, &ctx.cwd)?;
    let opts = OpenOptions {
        token: token_for(&r),
        s3: s3_options(),
    };
    let store = remote::open(&r.url, &opts).await?;
    Ok((r, store))
}

/// The bearer token for a remote, from the environment (never from the URL or config.toml, which
/// is committed): `NSHARD_TOKEN_<NAME>` for a configured remote (name upper-cased, other characters
/// than letters and digits as `_`), else `NSHARD_TOKEN`.
pub fn token_for(r: &ResolvedRemote) -> Option<String> {
    let named = r.name.as_ref().map(|n| {
        let suffix: String = n
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("NSHARD_TOKEN_{suffix}")
    });
    let token = named
        .iter()
        .map(String::as_str)
        .chain(["NSHARD_TOKEN"])
        .find_map(|var| std::env::var(var).ok().filter(|t| !t.trim().is_empty()))
        .map(|t| t.trim().to_string());
    token
}

/// `URL (name)` or `URL`.
pub fn label(r: &ResolvedRemote) -> String {
    match &r.name {
        Some(n) => format!("{} ({n})", r.url),
        None => r.url.to_string(),
    }
}

#[derive(serde::Serialize)]
pub struct JsonFile<'a> {
    pub path: &'a str,
    #[serde(flatten)]
    pub plan: Option<&'a nshard_core::transfer::FilePlan>,
    pub error: Option<String>,
}

#[derive(serde::Serialize)]
pub struct JsonReport<'a> {
    pub remote: String,
    pub remote_name: Option<&'a str>,
    #[serde(flatten)]
    pub stats: &'a TransferStats,
    pub seconds: f64,
    pub files: Vec<JsonFile<'a>>,
}

impl<'a> JsonReport<'a> {
    pub fn new(
        r: &'a ResolvedRemote,
        stats: &'a TransferStats,
        files: &'a [FileTransfer],
        elapsed: Duration,
    ) -> Self {
        Self {
            remote: r.url.to_string(),
            remote_name: r.name.as_ref().map(|n| n.as_str()),
            stats,
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            files: files
                .iter()
                .map(|f| JsonFile {
                    path: f.path.as_str(),
                    plan: f.result.as_ref().ok(),
                    error: f.result.as_ref().err().map(|e| e.to_string()),
                })
                .collect(),
        }
    }
}

/// One line per file; returns how many failed. `source` names where missing history is missing.
pub fn print_files(files: &[FileTransfer], source: &str) -> Result<usize> {
    let mut failed = 0;
    for f in files {
        match &f.result {
            Ok(p) if p.versions == 1 => out!(
                "{}: version {} ({} chunks)",
                f.path,
                p.version.short(),
                p.chunks
            ),
            Ok(p) => out!(
                "{}: {} versions up to {} ({} distinct chunks)",
                f.path,
                p.versions,
                p.version.short(),
                p.chunks
            ),
            Err(e) => {
                failed += 1;
                file_error(&f.path, e);
            }
        }
        if let Ok(p) = &f.result {
            if let Some(v) = p.history_stops_at {
                out!(
                    "  history from version {} back is not in {source}; not included",
                    v.short()
                );
            }
        }
    }
    Ok(failed)
}

/// `12 objects (48.0 MiB)`.
pub fn objects(n: usize, b: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} object{s} ({})", bytes(b))
}

/// `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
