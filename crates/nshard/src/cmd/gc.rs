//! `nshard gc`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use nshard_core::repo::{GcMode, GcOptions};

use crate::out;
use crate::output::{bytes, count, print_json, Ctx};

/// Delete local objects that no kept version references.
///
/// Prints what was (or, with --dry-run, would be) freed. Never deletes an object referenced by a
/// manifest in the work tree or, inside a git repository, by a manifest at the tip of any branch,
/// tag, remote-tracking branch or the stash, or staged in the index. By default it also keeps every
/// older version reachable from those manifests (their history); --only-current keeps only the
/// versions they name, so older ones must be pulled again before they can be checked out.
/// Versions that only older git commits name (not a ref's tip) are kept through the history of
/// later versions, or not at all with --only-current.
///
/// If a manifest is invalid, git cannot be read, or a kept version cannot be read, it deletes
/// nothing and says why.
///
/// Safe to run while other nshard commands run: it waits for the repository lock, and never
/// deletes objects younger than the grace period. A gc that is interrupted leaves a consistent
/// store; run it again to finish.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Show what would be deleted; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Keep the history reachable from the kept manifests (the default).
    #[arg(long, conflicts_with = "only_current")]
    pub keep_history: bool,
    /// Keep only the objects of the versions the work-tree and git manifests name.
    #[arg(long)]
    pub only_current: bool,
    /// Never delete objects or temporary files modified less than this many minutes ago.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub grace: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: GcArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let mode = if a.only_current {
        GcMode::OnlyCurrent
    } else {
        GcMode::KeepHistory
    };
    let r = repo.gc(&GcOptions {
        mode,
        dry_run: a.dry_run,
        grace: Duration::from_secs(a.grace.saturating_mul(60)),
    })?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let what = match mode {
        GcMode::KeepHistory => "current and older",
        GcMode::OnlyCurrent => "current only",
    };
    let from_git = if r.git_versions > 0 {
        format!(
            " and {} found only in git (other branches, tags, the index)",
            count(r.git_versions as u64, "more version")
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
    if r.objects_recent > 0 {
        out!(
            "kept {} ({}) younger than the {}-minute grace period \
             (`--grace 0` deletes them)",
            count(r.objects_recent as u64, "unreferenced object"),
            bytes(r.bytes_recent),
            a.grace
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
