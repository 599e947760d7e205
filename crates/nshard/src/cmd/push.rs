//! `nshard push`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nshard_core::transfer::{PushOptions, PushScope, TransferOptions, DEFAULT_JOBS};
use nshard_core::Retry;

use super::remote::{label, objects, print_files, runtime, secs, JsonReport};
use crate::out;
use crate::output::{print_json, Ctx};

/// Upload committed versions to a remote (only the objects it lacks).
///
/// By default it sends the work tree's versions and, in a git repository, every version named by a
/// manifest in any commit reachable from local branches, tags or HEAD, so a clone can check out
/// any commit. --current sends only the work tree's versions. Paths, directories and quoted globs
/// restrict which files are pushed.
///
/// The remote is asked which objects it lacks (in batches); those are uploaded several at a time,
/// chunks before the manifests that name them, and transient failures are retried with backoff.
/// The remote verifies every object before it becomes visible. An interrupted push resumes by
/// running it again.
///
/// Older versions of a checkpoint series, stored locally as deltas of the next version, go as
/// those deltas (after their bases) to a remote that keeps them (`--all-versions`, or a first
/// push of a history). The newest version always goes whole, so in the training loop (commit,
/// push, commit, push) the remote holds each version whole until `nshard remote gc` uploads the
/// deltas of the older ones and drops their whole copies.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Data files, manifests (`x.shard.json`), directories or quoted globs; default: every file.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only the versions the work tree's manifests name (not those in git history).
    #[arg(long)]
    pub current: bool,
    /// A remote name or URL (directory, file://, http(s)://); default: the default remote.
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Also push every earlier version in the files' histories (that the local store holds).
    #[arg(long)]
    pub all_versions: bool,
    /// Also push versions that the remote's retention policy pruned (`nshard remote gc
    /// --keep-last`); by default they are left out.
    #[arg(long)]
    pub include_pruned: bool,
    /// Objects uploaded at once.
    #[arg(long, short, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Show what would be sent (objects and bytes, after asking the remote what it has); send
    /// nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: PushArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let filter = repo.path_filter(&ctx.cwd, &a.paths)?;
    let scope = if a.current {
        PushScope::Current
    } else {
        PushScope::History
    };
    let bar = ctx.progress(a.json);
    let started = Instant::now();
    runtime()?.block_on(async {
        let (resolved, store) = super::remote::open(&repo, ctx, a.remote.as_deref()).await?;
        let report = nshard_core::transfer::push(
            &repo,
            &store,
            &PushOptions {
                filter,
                scope,
                all_versions: a.all_versions,
                include_pruned: a.include_pruned,
                transfer: TransferOptions {
                    jobs: a.jobs.into(),
                    retry: Retry::default(),
                    progress: &bar,
                    dry_run: a.dry_run,
                },
            },
        )
        .await?;
        let elapsed = started.elapsed();
        for n in &report.notes {
            eprintln!("nshard: note: {n}");
        }
        let s = &report.stats;
        let failed;
        if a.json {
            failed = report.files.iter().filter(|f| f.result.is_err()).count();
            print_json(&JsonReport::new(&resolved, s, &report.files, elapsed))?;
        } else {
            out!("push to {}", label(&resolved));
            failed = print_files(&report.files, "the local store")?;
            if report.files.is_empty() {
                out!("no manifests to push (commit a tracked file first)");
            }
            out!(
                "{} {}; {} already on the remote; {}",
                if a.dry_run {
                    "dry run: would send"
                } else {
                    "sent"
                },
                objects(s.objects, s.bytes),
                objects(s.skipped, s.skipped_bytes),
                secs(elapsed)
            );
            if s.deltas > 0 {
                out!(
                    "{} of them as deltas of newer chunks (older versions, at the cost of what changed)",
                    s.deltas
                );
            }
            if s.retries > 0 {
                out!("{} transient failures were retried", s.retries);
            }
            if let Some(note) = older_format_note(s.older_format) {
                out!("{note}");
            }
            let pruned = super::remote::pruned_total(&report.files);
            if pruned > 0 {
                out!("left out {pruned} version(s) the remote's retention pruned (--include-pruned sends them)");
            }
        }
        Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// What push says when the server refused float objects and `n` chunks went in format 1.
pub(crate) fn older_format_note(n: usize) -> Option<String> {
    (n > 0).then(|| {
        format!(
            "the server does not store this nshard's float objects (object format 4): sent {n} chunk(s) in object format 1, readable by every nshard and up to 1.5 % larger (see docs/server.md)"
        )
    })
}
