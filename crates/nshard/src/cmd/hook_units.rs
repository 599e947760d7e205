//! The git hooks' part for directory units: after git moved (checkout, merge, rewrite), each unit
//! whose manifest changed gets the objects its version needs (from the default remote, when the
//! local store lacks them) and is checked out, never over uncommitted changes.

use std::collections::BTreeSet;

use anyhow::Result;
use nshard_core::{
    DirCheckoutOptions, Error, Progress, PullOptions, Repo, RepoPath, Retry, TransferOptions,
};

use super::remote::runtime;
use crate::output::Ctx;

/// Whether the local store holds everything version `unit`'s manifest names (`None`: it cannot
/// be told, e.g. the manifest is invalid; the checkout will say why).
fn complete(repo: &Repo, unit: &RepoPath) -> Option<bool> {
    let d = repo.read_dir_manifest(unit).ok()??;
    match repo.dir_objects(&d.manifest, None) {
        Ok(Some(objs)) => Some(objs.iter().all(|(id, _)| repo.store().has(id))),
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

/// Pulls from the default remote what the local store lacks for the data files `paths` and the
/// units `dirs`, for a hook. `names` = (what they are in a count, their possessive, the suffix
/// printed after a path). Returns the paths whose data could not be had and whether anything
/// failed; a missing default remote is a failure that names `nshard pull --remote`.
pub fn pull_missing(
    ctx: &Ctx,
    repo: &Repo,
    progress: &dyn Progress,
    paths: Vec<RepoPath>,
    dirs: Vec<(RepoPath, Option<String>)>,
    names: (&str, &str, &str),
) -> Result<(BTreeSet<RepoPath>, bool)> {
    let (plural, possessive, suffix) = names;
    let all: BTreeSet<RepoPath> = paths
        .iter()
        .cloned()
        .chain(dirs.iter().map(|(u, _)| u.clone()))
        .collect();
    match repo.resolve_remote(None, &ctx.cwd) {
        Err(Error::NoRemote) => {
            eprintln!(
                "nshard: {} {plural} need data the local store lacks and no default remote is \
                 configured; run `nshard pull --checkout --remote URL`",
                all.len()
            );
            Ok((all, true))
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            let r = runtime()?.block_on(async {
                let (_, store) = super::remote::open(repo, ctx, None).await?;
                let report = nshard_core::pull(
                    repo,
                    &store,
                    &PullOptions {
                        paths,
                        dirs,
                        version: None,
                        all_versions: false,
                        transfer: TransferOptions {
                            jobs: nshard_core::DEFAULT_JOBS.into(),
                            retry: Retry::default(),
                            progress,
                        },
                    },
                )
                .await?;
                anyhow::Ok(report)
            });
            match r {
                Ok(report) => {
                    let mut lacking = BTreeSet::new();
                    for f in &report.files {
                        if let Err(e) = &f.result {
                            eprintln!("nshard: {}{suffix}: {e}", f.path);
                            lacking.insert(f.path.clone());
                        }
                    }
                    let failed = !lacking.is_empty();
                    Ok((lacking, failed))
                }
                Err(e) => {
                    eprintln!("nshard: could not pull the changed {possessive} data: {e:#}");
                    Ok((all, true))
                }
            }
        }
    }
}

/// Pulls what the units lack and checks them out. Returns whether any unit failed.
pub fn sync_units(ctx: &Ctx, repo: &Repo, units: &[RepoPath]) -> Result<bool> {
    let mut failed = false;
    let need: Vec<(RepoPath, Option<String>)> = units
        .iter()
        .filter(|u| complete(repo, u) == Some(false))
        .map(|u| (u.clone(), None))
        .collect();
    let bar = ctx.progress(false);
    let mut unavailable = BTreeSet::new();
    if !need.is_empty() {
        let (lacking, pull_failed) = pull_missing(
            ctx,
            repo,
            &bar,
            Vec::new(),
            need,
            ("director(y/ies)", "directories'", "/"),
        )?;
        unavailable = lacking;
        failed |= pull_failed;
    }
    for u in units.iter().filter(|u| !unavailable.contains(*u)) {
        let r = repo.checkout_dir(
            u,
            &DirCheckoutOptions {
                sub: None,
                force: false,
                progress: &bar,
            },
        );
        match r {
            Ok(c) if !ctx.quiet && (c.written > 0 || c.removed > 0) => eprintln!(
                "nshard: {u}/: checked out version {} ({} written, {} removed)",
                c.version.short(),
                c.written,
                c.removed
            ),
            Ok(_) => {}
            Err(Error::WouldOverwrite(what)) => eprintln!(
                "nshard: {u}/: has uncommitted changes ({}), left as it is; `nshard commit` \
                 keeps them, `nshard checkout --force {u}/` replaces them with the manifest's \
                 version",
                what.display()
            ),
            Err(e) => {
                failed = true;
                eprintln!("nshard: {u}/: {e}");
            }
        }
    }
    Ok(failed)
}
