//! The git hooks' part for directory units: after git moved (checkout, merge, rewrite), each unit
//! whose manifest changed gets the objects its version needs (from the default remote, when the
//! local store lacks them) and is checked out, never over uncommitted changes.

use std::collections::BTreeSet;

use anyhow::Result;
use nshard_core::{DirCheckoutOptions, Error, PullOptions, Repo, RepoPath, Retry, TransferOptions};

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

/// Pulls what the units lack and checks them out. Returns whether any unit failed.
pub fn sync_units(ctx: &Ctx, repo: &Repo, units: &[RepoPath]) -> Result<bool> {
    let mut failed = false;
    let need: Vec<(RepoPath, Option<String>)> = units
        .iter()
        .filter(|u| complete(repo, u) == Some(false))
        .map(|u| (u.clone(), None))
        .collect();
    let bar = ctx.progress(false);
    let mut unavailable: BTreeSet<RepoPath> = BTreeSet::new();
    if !need.is_empty() {
        match repo.resolve_remote(None, &ctx.cwd) {
            Err(Error::NoRemote) => {
                eprintln!(
                    "nshard: {} director(y/ies) need data the local store lacks and no default \
                     remote is configured; run `nshard pull --checkout --remote URL`",
                    need.len()
                );
                unavailable.extend(need.iter().map(|(u, _)| u.clone()));
                failed = true;
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let r = runtime()?.block_on(async {
                    let (_, store) = super::remote::open(repo, ctx, None).await?;
                    let report = nshard_core::pull(
                        repo,
                        &store,
                        &PullOptions {
                            paths: Vec::new(),
                            dirs: need.clone(),
                            version: None,
                            all_versions: false,
                            transfer: TransferOptions {
                                jobs: nshard_core::DEFAULT_JOBS.into(),
                                retry: Retry::default(),
                                progress: &bar,
                            },
                        },
                    )
                    .await?;
                    anyhow::Ok(report)
                });
                match r {
                    Ok(report) => {
                        for f in &report.files {
                            if let Err(e) = &f.result {
                                eprintln!("nshard: {}/: {e}", f.path);
                                unavailable.insert(f.path.clone());
                                failed = true;
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("nshard: could not pull the changed directories' data: {e:#}");
                        unavailable.extend(need.iter().map(|(u, _)| u.clone()));
                        failed = true;
                    }
                }
            }
        }
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
