//! `nshard gc`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use std::collections::HashSet;

use nshard_core::Retry;
use nshard_core::{GcMode, GcOptions, GcReason, Unpushed};

use super::remote_gc::{duration_words, parse_duration};
use crate::out;
use crate::output::{bytes, count, print_json, Ctx};
use nshard_core::RemoteError;

/// Delete local objects that nothing needs any more.
///
/// Never deletes an object referenced by a manifest in the work tree or, inside a git repository,
/// by a manifest in any commit git can still reach: from any branch, tag or remote-tracking ref,
/// any reflog entry (so `git reset --hard HEAD~1` loses nothing), ORIG_HEAD and FETCH_HEAD, every
/// stash entry, the index and every worktree. By default it also keeps every older version
/// reachable from those manifests through the store (their history). --only-current drops those
/// older versions, but still keeps every object the default remote does not have (it may be the
/// only copy) unless --include-unpushed is given; with no remote configured it keeps them all.
///
/// If a manifest is invalid, git cannot be read, or a kept version cannot be read, it deletes
/// nothing and says why. --dry-run lists each object that would go and why.
///
/// Safe to run while other nshard commands run: it waits for the repository lock, and never
/// deletes objects younger than the grace period. A gc that is interrupted leaves a consistent
/// store; run it again to finish.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Show what would be deleted and why; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Keep the history reachable from the kept manifests (the default).
    #[arg(long, conflicts_with = "only_current")]
    pub keep_history: bool,
    /// Keep only the versions the work tree and git name (older versions the remote has go).
    #[arg(long)]
    pub only_current: bool,
    /// Also delete dropped versions' objects that the remote does not have (they may be lost).
    #[arg(long)]
    pub include_unpushed: bool,
    /// The remote asked which objects are pushed (a name or URL); default: the default remote.
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Never delete objects or temporary files modified less than this long ago: minutes (`60`,
    /// `0`) or a duration (`90s`, `30m`, `2h`, `1d`).
    #[arg(long, value_name = "MINUTES", default_value = "60", value_parser = parse_grace)]
    pub grace: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seconds in `--grace`: a bare number is minutes (as it always was), else a duration.
fn parse_grace(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return parse_duration(&format!("{t}m"));
    }
    parse_duration(t)
}

pub fn run(ctx: &Ctx, a: GcArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let mode = if a.only_current {
        GcMode::OnlyCurrent
    } else {
        GcMode::KeepHistory
    };
    let grace = Duration::from_secs(a.grace);
    // The remote that says which objects are safe elsewhere; only asked when versions are dropped.
    let resolved = match repo.resolve_remote(a.remote.as_deref(), &ctx.cwd) {
        Ok(r) => Some(r),
        Err(nshard_core::Error::Remote(RemoteError::NoRemote)) if a.remote.is_none() => None,
        Err(e) => return Err(e.into()),
    };
    let rt = super::remote::runtime()?;
    let name = resolved.as_ref().map(super::remote::label);
    let check =
        |ids: &[nshard_core::ObjectId]| -> nshard_core::Result<HashSet<nshard_core::ObjectId>> {
            rt.block_on(async {
                let (_, store) = super::remote::open(&repo, ctx, a.remote.as_deref())
                    .await
                    .map_err(|e| {
                        nshard_core::Error::Remote(RemoteError::Transient {
                            remote: name.clone().unwrap_or_default(),
                            reason: format!("{e:#}"),
                        })
                    })?;
                nshard_core::transfer::remote_lacks(&store, ids, &Retry::default()).await
            })
        };
    let unpushed = match (&name, a.include_unpushed) {
        (_, true) => Unpushed::Delete,
        (None, false) => Unpushed::NoRemote,
        (Some(n), false) => Unpushed::Remote {
            name: n,
            missing: &check,
        },
    };
    let r = repo.gc(&GcOptions {
        mode,
        dry_run: a.dry_run,
        grace,
        unpushed,
    })?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let what = match mode {
        GcMode::KeepHistory => "current and older",
        GcMode::OnlyCurrent => "current only",
        _ => "as configured",
    };
    let from_git = if r.git_versions > 0 {
        format!(
            ", {} of them found only in git (history, other branches, tags, reflogs, the stash, the index)",
            r.git_versions
        )
    } else {
        String::new()
    };
    out!(
        "kept {} ({what}) of {}{from_git}: {} of {} referenced",
        count(r.versions_kept as u64, "version"),
        count(r.files as u64, "file"),
        r.objects_referenced,
        count(r.objects_total as u64, "object")
    );
    if a.dry_run {
        out!(
            "would delete {}, freeing {} (dry run: nothing deleted)",
            count(r.objects_deleted as u64, "unreferenced object"),
            bytes(r.bytes_deleted)
        );
    } else {
        out!(
            "deleted {}, freed {}",
            count(r.objects_deleted as u64, "unreferenced object"),
            bytes(r.bytes_deleted)
        );
    }
    if r.objects_restored_whole > 0 {
        out!(
            "{} {} of kept versions whole again: {} deltas of deleted versions' chunks",
            if a.dry_run { "would store" } else { "stored" },
            count(r.objects_restored_whole as u64, "chunk"),
            if a.dry_run { "they are" } else { "they were" }
        );
    }
    if a.dry_run {
        for item in &r.deleted {
            let why = match &item.reason {
                GcReason::Unreferenced => "referenced by no version".to_string(),
                GcReason::DroppedVersion {
                    path,
                    version,
                    on_remote,
                } => format!(
                    "only in older version {} of {}{}",
                    version.short(),
                    path,
                    if *on_remote {
                        " (the remote has it)"
                    } else {
                        " (--include-unpushed)"
                    }
                ),
                other => format!("{other:?}"),
            };
            out!("  {} {:>10}  {why}", item.id.short(), bytes(item.bytes));
        }
    }
    if !r.git {
        out!("not in a git repository: only the work tree's manifests and their history were kept");
    }
    if r.objects_unpushed > 0 {
        let why = match (&r.remote, &r.remote_error) {
            (None, _) => "no remote is configured, so they may be the only copy".to_string(),
            (Some(n), Some(e)) => format!("remote {n} could not be asked ({e})"),
            (Some(n), None) => format!("remote {n} does not have them"),
        };
        out!(
            "kept {} ({}) of older versions: {why}; push them, or pass --include-unpushed",
            count(r.objects_unpushed as u64, "object"),
            bytes(r.bytes_unpushed)
        );
    }
    if r.objects_recent > 0 {
        out!(
            "kept {} ({}) younger than the grace period ({}; `--grace 0` deletes them)",
            count(r.objects_recent as u64, "unreferenced object"),
            bytes(r.bytes_recent),
            duration_words(a.grace)
        );
    }
    if r.temp_files_deleted > 0 {
        out!(
            "{} {} ({}) left by interrupted commands",
            if a.dry_run { "would remove" } else { "removed" },
            count(r.temp_files_deleted as u64, "stale temporary file"),
            bytes(r.temp_bytes_deleted)
        );
    }
    Ok(ExitCode::SUCCESS)
}
