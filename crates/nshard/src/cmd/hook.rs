//! `nshard hook NAME`: what the git hooks installed by `nshard git-init` run.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nshard_core::git::RefUpdate;
use nshard_core::transfer::{PullOptions, PushOptions, PushScope, TransferOptions};
use nshard_core::Error;
use nshard_core::RepoPath;
use nshard_core::{CheckoutOptions, CheckoutOutcome, PathFilter, Repo, Target, Unversioned};
use nshard_core::{Progress, Retry};

use super::remote::{label, objects, runtime};
use crate::output::Ctx;
use nshard_core::{RemoteError, RepoError};

/// Run by the git hooks that `nshard git-init` installs (not meant to be typed).
///
/// pre-push sends the data of every manifest version in the commits being pushed to the default
/// remote and fails (so git refuses the push) when that fails. post-checkout, post-merge and
/// post-rewrite pull the data of manifests that changed and check those files out, never
/// overwriting uncommitted changes. All messages go to stderr; a hook never asks for input.
#[derive(Args, Debug)]
pub struct HookArgs {
    #[command(subcommand)]
    pub hook: Hook,
}

#[derive(Subcommand, Debug)]
pub enum Hook {
    /// git's pre-push: `<remote name> <remote url>`, ref lines on stdin.
    PrePush {
        remote: String,
        #[arg(default_value = "")]
        url: String,
    },
    /// git's post-checkout: `<previous HEAD> <new HEAD> <1 for a branch checkout>`.
    PostCheckout {
        previous: String,
        new: String,
        flag: String,
    },
    /// git's post-merge: `<1 for a squash merge>`.
    PostMerge {
        #[arg(default_value = "0")]
        squash: String,
    },
    /// git's post-rewrite: `amend|rebase`, `<old> <new>` lines on stdin.
    PostRewrite {
        #[arg(default_value = "")]
        kind: String,
    },
}

/// git's id of the empty tree: the "previous HEAD" of a fresh clone's checkout.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

pub fn run(ctx: &Ctx, a: HookArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let Ok(tree) = repo.git_tree() else {
        return Ok(ExitCode::SUCCESS);
    };
    match a.hook {
        Hook::PrePush { remote, .. } => pre_push(ctx, &repo, remote),
        Hook::PostCheckout {
            previous,
            new,
            flag,
        } => {
            if flag != "1" || previous == new {
                return Ok(ExitCode::SUCCESS); // a file checkout, or no move: nothing to sync
            }
            let from = if previous.bytes().all(|b| b == b'0') {
                EMPTY_TREE.to_string()
            } else {
                previous
            };
            let changed = tree.changed_manifests(&from, &new)?;
            let deleted = tree.deleted_manifests(&from, &new)?;
            sync(ctx, &repo, changed, deleted, Some(&from))
        }
        Hook::PostMerge { .. } => {
            let orig = tree.commit_id("ORIG_HEAD");
            let (changed, deleted) = match &orig {
                Some(orig) => (
                    tree.changed_manifests(orig, "HEAD")?,
                    tree.deleted_manifests(orig, "HEAD")?,
                ),
                None => (all_manifests(&repo)?, Vec::new()),
            };
            sync(ctx, &repo, changed, deleted, orig.as_deref())
        }
        Hook::PostRewrite { .. } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading the rewritten commits from git")?;
            let mut changed = BTreeSet::new();
            for line in input.lines() {
                let mut f = line.split(' ');
                if let (Some(old), Some(new)) = (f.next(), f.next()) {
                    changed.extend(tree.changed_manifests(old, new)?);
                }
            }
            let mut deleted = Vec::new();
            let orig = tree.commit_id("ORIG_HEAD");
            if let Some(orig) = &orig {
                changed.extend(tree.changed_manifests(orig, "HEAD")?);
                deleted = tree.deleted_manifests(orig, "HEAD")?;
            }
            sync(
                ctx,
                &repo,
                changed.into_iter().collect(),
                deleted,
                orig.as_deref(),
            )
        }
    }
}

fn all_manifests(repo: &Repo) -> Result<Vec<String>> {
    let mut out: Vec<String> = repo
        .scan_worktree()?
        .1
        .iter()
        .map(|p| p.manifest_path().as_str().to_string())
        .collect();
    // Directory units too, those whose manifest is here.
    for u in repo.dir_units()? {
        let m = u.manifest_path();
        if repo.root().join(m.as_str()).is_file() && !out.contains(&m.as_str().to_string()) {
            out.push(m.as_str().to_string());
        }
    }
    Ok(out)
}

fn pre_push(ctx: &Ctx, repo: &Repo, git_remote: String) -> Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the pushed refs from git")?;
    let updates = RefUpdate::parse_lines(&input)?;
    let resolved = match repo.resolve_remote(None, &ctx.cwd) {
        Ok(r) => r,
        Err(Error::Remote(RemoteError::NoRemote)) => {
            eprintln!(
                "nshard: no default data remote is configured, so the data of the manifests in this \
                 push was not sent; add one with `nshard remote add NAME URL` (or push by hand with \
                 `nshard push --remote URL`)"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let bar = ctx.progress(false);
    let watched = Watched::new(&bar);
    let result = runtime()?.block_on(watched.or_give_up(async {
        let (resolved, store) = super::remote::open(repo, ctx, None).await?;
        let report = nshard_core::transfer::push(
            repo,
            &store,
            &PushOptions {
                filter: PathFilter::all(),
                scope: PushScope::GitPush {
                    updates,
                    remote: git_remote,
                },
                all_versions: false,
                include_pruned: false,
                transfer: TransferOptions {
                    jobs: nshard_core::transfer::DEFAULT_JOBS.into(),
                    retry: Retry::default(),
                    progress: &watched,
                    dry_run: false,
                },
            },
        )
        .await?;
        anyhow::Ok((resolved, report))
    }));
    let (resolved, report) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "nshard: refusing the git push: the data could not be sent to {}: {e:#}",
                label(&resolved)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let failed: Vec<_> = report.files.iter().filter(|f| f.result.is_err()).collect();
    for f in &failed {
        if let Err(e) = &f.result {
            eprintln!("nshard: {}: {e}", f.path);
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "nshard: refusing the git push: the data of {} file(s) could not be sent to {}",
            failed.len(),
            label(&resolved)
        );
        return Ok(ExitCode::FAILURE);
    }
    for n in &report.notes {
        eprintln!("nshard: note: {n}");
    }
    let s = &report.stats;
    if let Some(note) = super::push::older_format_note(s.older_format) {
        eprintln!("nshard: note: {note}");
    }
    if !report.files.is_empty() && !ctx.quiet {
        eprintln!(
            "nshard: data of {} file(s) is on {}: sent {}, {} already there",
            report.files.len(),
            label(&resolved),
            objects(s.objects, s.bytes),
            objects(s.skipped, s.skipped_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Says that `label` was not checked out because of its uncommitted changes (`which`, e.g.
/// ` (data/x removed)`), and how `arg` can be replaced all the same.
fn left_as_it_is(label: &str, which: &str, arg: &str) {
    eprintln!(
        "nshard: {label}: has uncommitted changes{which}, left as it is; `nshard commit` keeps \
         them (when the version git brought is newer than the one they were made on, it first \
         asks you to carry that version's changes in, so as not to undo them), `nshard checkout \
         --force {arg}` replaces them with the manifest's version"
    );
}

/// `targets` with each directory unit this clone has checked out only in part (`nshard checkout
/// data/val/`, recorded by [`Repo::record_checkout`]) replaced by those parts, so that a branch
/// switch or a pull does not fetch and write the rest.
fn in_checked_out_parts(repo: &Repo, targets: Vec<Target>) -> Vec<Target> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let parts = match &t {
            Target::Unit { unit, sub: None } => repo.checked_out_parts(unit),
            _ => None,
        };
        match (parts, t) {
            (Some(parts), Target::Unit { unit, .. }) => {
                out.extend(parts.into_iter().map(|p| Target::Unit {
                    unit: unit.clone(),
                    sub: Some(p),
                }))
            }
            (_, t) => out.push(t),
        }
    }
    out
}

/// The files of the units in `targets` deleted here and not committed (judged against each
/// unit's version at commit `before`, else, when git gave no commit before, against the version
/// the work tree's manifest names now; relative to the repository root): the checkout keeps them
/// removed, or leaves the unit as it is where the new version changed them.
fn uncommitted_removals(
    repo: &Repo,
    targets: &[Target],
    before: Option<&str>,
) -> Vec<(String, bool)> {
    let units: Vec<&Target> = targets
        .iter()
        .filter(|t| matches!(t, Target::Unit { .. }))
        .collect();
    if units.is_empty() {
        return Vec::new();
    }
    let paths: Vec<String> = units
        .iter()
        .map(|t| t.path().manifest_path().to_string())
        .collect();
    let old: Vec<Option<Vec<u8>>> = match before {
        Some(before) => match repo.git_tree().and_then(|t| t.files_at(before, &paths)) {
            Ok(old) => old,
            Err(_) => return Vec::new(),
        },
        None => paths
            .iter()
            .map(|p| std::fs::read(repo.root().join(p)).ok())
            .collect(),
    };
    let mut out = Vec::new();
    for (t, bytes) in units.into_iter().zip(old) {
        if let (Target::Unit { unit, sub }, Some(bytes)) = (t, bytes) {
            out.extend(repo.uncommitted_removals(unit, sub.as_deref(), &bytes));
        }
    }
    out
}

/// Pulls the data the changed manifests need and checks their files and directory units out,
/// keeping uncommitted changes. `manifests` are manifest paths relative to the repository root.
/// For each file manifest the git operation deleted (`deleted`: path and its bytes before), the
/// data file goes too when it holds exactly that version, as git deletes a file removed
/// upstream; a file with other content stays, and the hook says so. A directory unit this clone
/// has checked out only in part (as of commit `before`) stays in part: only those parts are
/// pulled and checked out.
fn sync(
    ctx: &Ctx,
    repo: &Repo,
    manifests: Vec<String>,
    deleted: Vec<(String, Vec<u8>)>,
    before: Option<&str>,
) -> Result<ExitCode> {
    let targets: Vec<Target> = manifests
        .iter()
        .filter_map(|m| RepoPath::parse(m).ok())
        .filter_map(|m| repo.target_of_manifest(&m))
        .collect();
    let targets = in_checked_out_parts(repo, targets);
    // The data of every changed manifest is pulled, that of units the checkout leaves as they
    // are included (their new listing is what `status` and `commit` compare the kept files with).
    let need: Vec<Target> = targets
        .iter()
        .filter(|t| repo.has_data(t) == Some(false))
        .cloned()
        .collect();
    let mut failed = false;
    let bar = ctx.progress(false);
    let mut unavailable = BTreeSet::new();
    let mut deltas_queued = 0;
    if !need.is_empty() {
        let (lacking, pull_failed, queued) = pull_missing(ctx, repo, &bar, &need)?;
        unavailable = lacking;
        failed |= pull_failed;
        deltas_queued = queued;
    }
    let ready: Vec<Target> = targets
        .into_iter()
        .filter(|t| !unavailable.contains(t.path()))
        .collect();
    // Files of units deleted here and not committed stay deleted, as edits stay edited (judged
    // once the listings are here).
    let removed = uncommitted_removals(repo, &ready, before);
    let results = repo.checkout(
        &ready,
        &CheckoutOptions {
            version: None,
            force: false,
            keep_removed: &removed,
            restore: false,
            progress: &bar,
        },
    )?;
    for r in results {
        let label = r.target.label();
        match r.result {
            Ok(CheckoutOutcome::Written { version, .. }) if !ctx.quiet => {
                eprintln!("nshard: {label}: checked out version {}", version.short())
            }
            Ok(CheckoutOutcome::Unit(c))
                if !ctx.quiet
                    && (c.written > 0
                        || c.removed > 0
                        || !c.edits_kept.is_empty()
                        || !c.removals_kept.is_empty()) =>
            {
                eprintln!(
                    "nshard: {label}: checked out version {} ({} written, {} removed){}",
                    c.version.short(),
                    c.written,
                    c.removed,
                    super::dirs::changes_kept(&c)
                )
            }
            Ok(_) => {}
            Err(Error::Repo(RepoError::WouldOverwrite(what))) => {
                let (which, arg) = match &r.target {
                    Target::File(p) => (String::new(), p.manifest_path().to_string()),
                    Target::Unit { .. } => (format!(" ({})", what.display()), label.clone()),
                };
                left_as_it_is(&label, &which, &arg)
            }
            // A part this clone checked out that the new version no longer has: nothing to
            // write there.
            Err(Error::Repo(RepoError::NoSuchPart { .. })) => {}
            Err(e) => {
                failed = true;
                eprintln!("nshard: {label}: {e}");
            }
        }
    }
    let deleted: Vec<(RepoPath, Vec<u8>)> = deleted
        .into_iter()
        .filter_map(|(m, old)| Some((RepoPath::parse(&m).ok()?, old)))
        .collect();
    let removals = if deleted.is_empty() {
        Vec::new()
    } else {
        repo.remove_unversioned(&deleted).unwrap_or_else(|e| {
            failed = true;
            eprintln!("nshard: {e}");
            Vec::new()
        })
    };
    for (data, r) in removals {
        match r {
            Ok(Unversioned::Deleted) if !ctx.quiet => {
                eprintln!("nshard: {data}: removed (git removed its manifest)")
            }
            Ok(Unversioned::InGit) if !ctx.quiet => eprintln!(
                "nshard: {data}: git removed its manifest and versions the file itself at this commit (from before it moved to NeuroShard): left to git"
            ),
            Ok(Unversioned::KeptChanged) => eprintln!(
                "nshard: {data}: git removed its manifest, but the file holds other content: kept, no longer versioned (delete it, or `nshard commit` it to version it again)"
            ),
            Ok(Unversioned::Unit { removed, unlisted }) if !ctx.quiet && removed + unlisted > 0 => {
                let also = if unlisted > 0 {
                    format!("; kept {unlisted} file(s) its listing does not name")
                } else {
                    String::new()
                };
                eprintln!(
                    "nshard: {data}/: removed {removed} file(s) (git removed the unit's manifest){also}"
                )
            }
            Ok(Unversioned::UnitKept { changed, count }) => {
                let more = if count > changed.len() {
                    format!(" and {} more", count - changed.len())
                } else {
                    String::new()
                };
                eprintln!(
                    "nshard: {data}/: git removed the unit's manifest, but {count} of its files hold other content ({}{more}): the directory is kept as it is, no longer versioned",
                    changed.join(", ")
                )
            }
            Ok(_) => {}
            Err(e) => {
                failed = true;
                eprintln!("nshard: {data}: {e}");
            }
        }
    }
    // As after `nshard pull`: the versions before those received become deltas of them.
    let after = super::repack::after_pull(repo, deltas_queued, &bar);
    if let super::repack::AfterPull::Done(Err(_)) | super::repack::AfterPull::Waiting = after {
        if let Some(line) = super::repack::after_pull_line(deltas_queued, &after) {
            eprintln!("nshard: {line}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Pulls from the default remote what the local store lacks for `targets`, for a hook. Returns
/// the paths whose data could not be had, whether anything failed, and how many older versions
/// the pull queued to become deltas; a missing default remote is a failure that names
/// `nshard pull --remote`.
fn pull_missing(
    ctx: &Ctx,
    repo: &Repo,
    progress: &dyn Progress,
    targets: &[Target],
) -> Result<(BTreeSet<RepoPath>, bool, usize)> {
    let all: BTreeSet<RepoPath> = targets.iter().map(|t| t.path().clone()).collect();
    let (mut paths, mut dirs) = (Vec::new(), Vec::new());
    for t in targets {
        match t {
            Target::File(p) => paths.push(p.clone()),
            Target::Unit { unit, sub } => dirs.push((unit.clone(), sub.clone())),
        }
    }
    match repo.resolve_remote(None, &ctx.cwd) {
        Err(Error::Remote(RemoteError::NoRemote)) => {
            eprintln!(
                "nshard: {} changed file(s) or director(y/ies) need data the local store lacks \
                 and no default remote is configured; run `nshard pull --checkout --remote URL`",
                all.len()
            );
            Ok((all, true, 0))
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            let watched = Watched::new(progress);
            let r = runtime()?.block_on(watched.or_give_up(async {
                let (_, store) = super::remote::open(repo, ctx, None).await?;
                let report = nshard_core::transfer::pull(
                    repo,
                    &store,
                    &PullOptions {
                        paths,
                        dirs,
                        version: None,
                        all_versions: false,
                        transfer: TransferOptions {
                            jobs: nshard_core::transfer::DEFAULT_JOBS.into(),
                            retry: Retry::default(),
                            progress: &watched,
                            dry_run: false,
                        },
                    },
                )
                .await?;
                anyhow::Ok(report)
            }));
            match r {
                Ok(report) => {
                    let mut lacking = BTreeSet::new();
                    for f in &report.files {
                        if let Err(e) = &f.result {
                            let label = targets
                                .iter()
                                .find(|t| t.path() == &f.path)
                                .map_or_else(|| f.path.to_string(), Target::label);
                            eprintln!("nshard: {label}: {e}");
                            lacking.insert(f.path.clone());
                        }
                    }
                    let failed = !lacking.is_empty();
                    Ok((lacking, failed, report.stats.deltas_queued))
                }
                Err(e) => {
                    eprintln!("nshard: could not pull the changed files' data: {e:#}");
                    Ok((all, true, 0))
                }
            }
        }
    }
}

/// How long a hook waits for any sign of progress (a byte moved, a request answered) before it
/// gives up: `NSHARD_HOOK_STALL_SECS`, default 30. A large transfer that keeps moving goes on.
fn stall_limit() -> std::time::Duration {
    let secs = std::env::var("NSHARD_HOOK_STALL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(30);
    std::time::Duration::from_secs(secs)
}

/// A progress sink that passes events on and remembers when the last one came, so that a hook
/// can give up on a remote that accepts connections but never answers.
struct Watched<'a> {
    inner: &'a dyn Progress,
    started: std::time::Instant,
    /// Milliseconds after `started` of the last event.
    last: std::sync::atomic::AtomicU64,
}

impl<'a> Watched<'a> {
    fn new(inner: &'a dyn Progress) -> Self {
        Watched {
            inner,
            started: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `work`, or fails once nothing has happened for [`stall_limit`].
    async fn or_give_up<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let limit = stall_limit();
        let stalled = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
                let idle = (self.started.elapsed().as_millis() as u64).saturating_sub(last);
                if idle >= limit.as_millis() as u64 {
                    return;
                }
            }
        };
        tokio::select! {
            r = work => r,
            () = stalled => Err(anyhow::anyhow!(
                "no progress for {} s: the data remote accepts connections but does not answer",
                limit.as_secs()
            )),
        }
    }
}

impl Progress for Watched<'_> {
    fn start(&self, label: &str, total: u64) {
        self.touch();
        self.inner.start(label, total);
    }
    fn advance(&self, n: u64) {
        self.touch();
        self.inner.advance(n);
    }
    fn finish(&self) {
        self.touch();
        self.inner.finish();
    }
}
