//! `nshard pull`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nshard_core::transfer::{PullOptions, TransferOptions, DEFAULT_JOBS};
use nshard_core::Retry;
use nshard_core::{CheckoutOptions, Target};

use super::remote::{label, objects, print_files, runtime, secs, JsonReport};
use crate::out;
use crate::output::{bytes, count, print_json, Ctx};

/// Download from a remote what the work tree's manifests need and the local store lacks.
///
/// Every object is verified (decoded and re-hashed) as it arrives; nothing bad is kept.
/// Then `nshard checkout` rebuilds the files (or pass --checkout). An interrupted pull resumes by
/// running it again. A chunk the remote holds only as a delta (an older version of a checkpoint
/// series) comes as that delta, after the newer chunks it is built on.
///
/// As after a commit, the local versions before those received whole become deltas of them (a
/// background `nshard repack` re-encodes them, `--json` says how many were queued;
/// `delta_background = false` does it before pull returns, `delta = false` not at all), so a
/// store filled by pulls stays as small as the committer's.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Data files, manifests (`x.shard.json`), directories or quoted globs; default: every file.
    #[arg(value_name = "MANIFEST")]
    pub paths: Vec<PathBuf>,
    /// A remote name or URL (directory, file://, http(s)://); default: the default remote.
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Pull this version of one file (an id or a unique prefix of at least 4 characters) instead
    /// of the manifest's current one.
    #[arg(long, value_name = "ID", conflicts_with = "all_versions")]
    pub version: Option<String>,
    /// Also pull every earlier version in the files' histories.
    #[arg(long)]
    pub all_versions: bool,
    /// Check the files out after pulling (refuses to overwrite uncommitted changes).
    #[arg(long)]
    pub checkout: bool,
    /// Objects downloaded at once.
    #[arg(long, short, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Show what would be received (objects, and their raw bytes), after asking the remote what
    /// it has; receive no data (with --all-versions, the small manifests of older versions are
    /// fetched to plan).
    #[arg(long, short = 'n', conflicts_with = "checkout")]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: PullArgs) -> Result<ExitCode> {
    let repo = ctx.repo_or_init()?;
    let sel = repo.select(&ctx.cwd, &a.paths)?;
    let targets = repo.targets(&sel)?;
    // No argument: every file and unit (empty lists); else what was named.
    let (mut paths, mut dirs) = (Vec::new(), Vec::new());
    if !sel.is_everything() {
        for t in &targets {
            match t {
                Target::File(p) => paths.push(p.clone()),
                Target::Unit { unit, sub } => dirs.push((unit.clone(), sub.clone())),
            }
        }
    }
    let bar = ctx.progress(a.json);
    let started = Instant::now();
    let (resolved, report) = runtime()?.block_on(async {
        let (resolved, store) = super::remote::open(&repo, ctx, a.remote.as_deref()).await?;
        let report = nshard_core::transfer::pull(
            &repo,
            &store,
            &PullOptions {
                paths,
                dirs,
                version: a.version.clone(),
                all_versions: a.all_versions,
                transfer: TransferOptions {
                    jobs: a.jobs.into(),
                    retry: Retry::default(),
                    progress: &bar,
                    dry_run: a.dry_run,
                },
            },
        )
        .await?;
        anyhow::Ok((resolved, report))
    })?;
    let elapsed = started.elapsed();
    for n in &report.notes {
        eprintln!("nshard: note: {n}");
    }
    let s = &report.stats;
    let mut failed = report.files.iter().filter(|f| f.result.is_err()).count();
    let source = format!("{}", resolved.url);
    if a.json && !a.checkout {
        print_json(&JsonReport::new(&resolved, s, &report.files, elapsed))?;
    } else if !a.json {
        out!("pull from {}", label(&resolved));
        print_files(&report.files, &source)?;
        if report.files.is_empty() {
            out!("no manifests to pull for (get them with `git pull` first)");
        }
        // A dry run knows the chunks' sizes from the manifests, not what they take on the remote.
        let received = if a.dry_run {
            format!(
                "dry run: would receive {} ({} of chunk data before compression)",
                count(s.objects as u64, "object"),
                bytes(s.bytes)
            )
        } else {
            format!("received {}", objects(s.objects, s.bytes))
        };
        out!(
            "{received}; {} already present locally; {}",
            objects(s.skipped, s.skipped_bytes),
            secs(elapsed)
        );
        if s.deltas > 0 {
            out!(
                "{} of them {} as deltas of newer chunks, decoded and verified against them",
                s.deltas,
                if a.dry_run { "would come" } else { "came" }
            );
        }
        if s.retries > 0 {
            out!("{} transient failures were retried", s.retries);
        }
        let pruned = super::remote::pruned_total(&report.files);
        if pruned > 0 {
            out!("left out {pruned} older version(s) the remote's retention pruned: their data is no longer there");
        }
    }
    if a.checkout {
        // What was pulled completely: a file by its own entry, a unit by any of its entries.
        let pulled = |t: &Target| {
            report.files.iter().any(|f| {
                f.result.is_ok()
                    && match t {
                        Target::File(p) => f.path == *p,
                        Target::Unit { unit, .. } => {
                            repo.unit_of(std::slice::from_ref(unit), &f.path).is_some()
                        }
                    }
            })
        };
        let ready: Vec<Target> = targets.iter().filter(|t| pulled(t)).cloned().collect();
        let results = if ready.is_empty() {
            Vec::new()
        } else {
            repo.checkout(
                &ready,
                &CheckoutOptions {
                    version: a.version.clone(),
                    force: false,
                    keep_removed: &[],
                    restore: false,
                    progress: &bar,
                },
            )?
        };
        failed += results.iter().filter(|r| r.result.is_err()).count();
        if a.json {
            #[derive(serde::Serialize)]
            struct Both<'a> {
                #[serde(flatten)]
                pull: JsonReport<'a>,
                checkout: Vec<serde_json::Value>,
            }
            let checkout = results
                .iter()
                .map(|r| {
                    let path = match &r.target {
                        Target::File(p) => p.as_str().to_string(),
                        unit => unit.label(),
                    };
                    match &r.result {
                        Ok(o) => serde_json::json!({"path": path, "outcome": o}),
                        Err(e) => serde_json::json!({"path": path, "error": e.to_string()}),
                    }
                })
                .collect();
            print_json(&Both {
                pull: JsonReport::new(&resolved, s, &report.files, elapsed),
                checkout,
            })?;
        } else {
            super::checkout::print_human(&results)?;
        }
    }
    // The versions before those received become deltas of them, as after a commit (after the
    // checkout, so the two do not compete).
    let after = super::repack::after_pull(&repo, s.deltas_queued, &bar);
    if !a.json {
        if let Some(line) = super::repack::after_pull_line(s.deltas_queued, &after) {
            out!("{line}");
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
