//! `nshard remote add|list|remove`, and what push and pull share: opening the remote, the async
//! runtime, printing transfer results.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nshard_core::config::{ConfigLevel, EnvTokens, RemoteName, ResolvedRemote};
use nshard_core::transfer::{FileTransfer, TransferStats};
use nshard_core::Repo;
use nshard_core::Store;
use nshard_remote::OpenOptions;

use crate::output::{bytes, count, file_error, print_json, Ctx};
use crate::{out, per_file};

/// Manage remotes: where `push` and `pull` send and fetch data.
///
/// Remotes live in three config files, lowest precedence first: your user file
/// (`~/.config/nshard/config.toml`, `--user`), the repository's shared `.shard/config.toml`
/// (committed to git, so clones share it; the default for `add`) and your personal
/// `.shard/config.local.toml` (git-ignored, `--local`). A name defined at several levels is taken
/// from the highest one. A remote is a directory (`/srv/models`, `./store`, `file:///srv/models`),
/// a NeuroShard server (`http://host:8000`) or an S3 bucket (`s3://bucket/prefix`; credentials,
/// region and endpoint from the AWS_* environment variables or ~/.aws files).
#[derive(Args, Debug)]
pub struct RemoteArgs {
    #[command(subcommand)]
    pub command: RemoteCommand,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a remote (to the shared config unless --local or --user). A relative directory is
    /// stored as an absolute path.
    Add(AddArgs),
    /// List the remotes with the config file each comes from (the default one is marked `*`).
    List(ListArgs),
    /// Change a remote's URL (in the file it comes from, unless a level is given).
    SetUrl(SetUrlArgs),
    /// Show, set or unset the default remote (set in the shared config unless --local or --user).
    Default(DefaultArgs),
    /// Remove a remote from its config file (its data is left alone).
    Remove(RemoveArgs),
    Gc(super::remote_gc::GcArgs),
}

/// Which config file to write.
#[derive(Args, Debug, Default)]
#[group(multiple = false)]
pub struct LevelArgs {
    /// Your personal file for this repository, `.shard/config.local.toml` (git-ignored).
    #[arg(long)]
    pub local: bool,
    /// Your user file, `~/.config/nshard/config.toml` (every repository; `--global` also works).
    #[arg(long, visible_alias = "global")]
    pub user: bool,
    /// The repository's shared `.shard/config.toml` (committed to git).
    #[arg(long)]
    pub shared: bool,
}

impl LevelArgs {
    /// The level asked for, if any.
    pub fn level(&self) -> Option<ConfigLevel> {
        if self.local {
            Some(ConfigLevel::Local)
        } else if self.user {
            Some(ConfigLevel::User)
        } else if self.shared {
            Some(ConfigLevel::Shared)
        } else {
            None
        }
    }
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Its name: letters, digits, '-', '_', '.' (e.g. `origin`).
    pub name: String,
    /// Where it is: a directory, file:///dir, http(s)://host:port or s3://bucket/prefix.
    pub url: String,
    /// Make it the default remote, in the same config file. Without it, the shared config's first
    /// remote becomes its default, and a --local or --user remote only when no default exists.
    #[arg(long)]
    pub default: bool,
    #[command(flatten)]
    pub level: LevelArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SetUrlArgs {
    /// The remote's name.
    pub name: String,
    /// Its new URL.
    pub url: String,
    #[command(flatten)]
    pub level: LevelArgs,
}

#[derive(Args, Debug)]
pub struct DefaultArgs {
    /// The remote to make the default; without it, the current default is shown.
    pub name: Option<String>,
    /// Remove the default setting from the chosen config file.
    #[arg(long, conflicts_with = "name")]
    pub unset: bool,
    #[command(flatten)]
    pub level: LevelArgs,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The remote's name.
    pub name: String,
    #[command(flatten)]
    pub level: LevelArgs,
}

pub fn run(ctx: &Ctx, a: RemoteArgs) -> Result<ExitCode> {
    if let RemoteCommand::Gc(a) = a.command {
        return super::remote_gc::run(ctx, a);
    }
    let mut repo = ctx.repo()?;
    match a.command {
        RemoteCommand::Gc(_) => unreachable!("handled above"),
        RemoteCommand::Add(a) => {
            let name = RemoteName::parse(&a.name)?;
            let level = a.level.level().unwrap_or(ConfigLevel::Shared);
            let e = repo.add_remote(&name, &a.url, &ctx.cwd, a.default, level)?;
            let def = if e.default { " (default)" } else { "" };
            out!(
                "added remote {} → {} to the {level} config{def}",
                e.name,
                e.url
            );
            if let Some(h) = e.overridden_by {
                out!(
                    "note: the {h} config also defines {}, and that one is used",
                    e.name
                );
            }
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
                    let hidden = match r.overridden_by {
                        Some(h) => format!("  (overridden by the {h} one)"),
                        None => String::new(),
                    };
                    out!(
                        "{mark} {:<16} {:<7} {}{hidden}",
                        r.name,
                        r.level.as_str(),
                        r.url
                    );
                }
            }
        }
        RemoteCommand::SetUrl(a) => {
            let e = repo.set_remote_url(&a.name, &a.url, &ctx.cwd, a.level.level())?;
            out!("remote {} ({} config) → {}", e.name, e.level, e.url);
        }
        RemoteCommand::Default(a) => {
            if a.name.is_none() && !a.unset {
                match repo.default_remote() {
                    Some((d, level)) => out!("{d}  (set in the {level} config)"),
                    None => out!("no default remote"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let level = a.level.level().unwrap_or(ConfigLevel::Shared);
            repo.set_default_remote(a.name.as_deref(), level)?;
            match (a.name, repo.default_remote()) {
                (Some(n), Some((d, l))) if d == n => {
                    out!("default remote is now {n} (set in the {level} config)");
                    debug_assert_eq!(l, level);
                }
                (Some(n), Some((d, l))) => out!(
                    "set {n} as the default in the {level} config; {d} from the {l} config still takes precedence"
                ),
                (_, Some((d, l))) => out!(
                    "unset the default in the {level} config; the default remote is now {d} (from the {l} config)"
                ),
                (_, None) => out!("unset the default in the {level} config; there is no default remote now"),
            }
        }
        RemoteCommand::Remove(a) => {
            let r = repo.remove_remote(&a.name, a.level.level())?;
            out!("removed remote {} from the {} config", a.name, r.level);
            if let Some(l) = r.uncovered {
                out!("the {l} config's remote {} is used from now on", a.name);
            }
            match r.new_default {
                Some(Some(d)) => out!("default remote is now {d}"),
                Some(None) => out!("there is no default remote now"),
                None => {}
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
        token: repo.token_for(&r, &env_tokens(&r)),
        s3: s3_options(),
    };
    let store = nshard_remote::open(&r.url, &opts).await?;
    Ok((r, store))
}

/// The tokens the environment offers for a remote: `NSHARD_TOKEN_<NAME>` for a configured remote
/// (name upper-cased, other characters than letters and digits as `_`) and `NSHARD_TOKEN`. Which
/// of them (or of the token stored by `nshard login`) the remote receives is decided by
/// [`Repo::token_for`]: a URL from the committed config never receives these.
pub fn env_tokens(r: &ResolvedRemote) -> EnvTokens {
    let var = |name: &str| std::env::var(name).ok().filter(|t| !t.trim().is_empty());
    let for_name = r.name.as_ref().and_then(|n| {
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
        var(&format!("NSHARD_TOKEN_{suffix}"))
    });
    EnvTokens {
        for_name,
        general: var("NSHARD_TOKEN"),
    }
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
            Ok(p) if p.versions == 1 => per_file!(
                "{}: version {} ({})",
                f.path,
                p.version.short(),
                count(p.chunks as u64, "chunk")
            ),
            Ok(p) => per_file!(
                "{}: {} versions up to {} ({})",
                f.path,
                p.versions,
                p.version.short(),
                count(p.chunks as u64, "distinct chunk")
            ),
            Err(e) => {
                failed += 1;
                file_error(&f.path, e);
            }
        }
        if let Ok(p) = &f.result {
            if let Some(v) = p.history_stops_at {
                per_file!(
                    "  history from version {} back is not in {source}; not included",
                    v.short()
                );
            }
        }
    }
    Ok(failed)
}

/// The versions the files' plans left out because the remote's retention pruned them.
pub fn pruned_total(files: &[FileTransfer]) -> usize {
    files
        .iter()
        .filter_map(|f| f.result.as_ref().ok())
        .map(|p| p.pruned)
        .sum()
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
