//! `nshard checkout`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{CheckoutOptions, CheckoutOutcome, FileCheckout};

use crate::output::{bytes, file_error, print_json, Ctx};
use crate::{out, per_file};

/// Rebuild data files from the local store.
///
/// Verifies every chunk and the whole-file SHA-256
/// before atomically replacing the file. Refuses to overwrite uncommitted changes without --force.
/// With --version, restores an older version of the file (the manifest stays at the latest version,
/// so `nshard status` shows the file outdated; `nshard commit --force` records the revert).
#[derive(Args, Debug)]
pub struct CheckoutArgs {
    /// Data files, manifests (`x.shard.json`), directories or quoted globs; default: every file.
    #[arg(value_name = "MANIFEST")]
    pub paths: Vec<PathBuf>,
    /// Restore this version (an id or a unique prefix of at least 4 characters, see `nshard log`).
    #[arg(long, value_name = "ID")]
    pub version: Option<String>,
    /// Overwrite files that have uncommitted changes.
    #[arg(long, short)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct JsonFile<'a> {
    path: &'a str,
    #[serde(flatten)]
    outcome: Option<&'a CheckoutOutcome>,
    error: Option<String>,
}

pub fn run(ctx: &Ctx, a: CheckoutArgs) -> Result<ExitCode> {
    let repo = ctx.repo_or_init()?;
    let (units, rest) = super::dirs::split(&repo, &ctx.cwd, &a.paths)?;
    if a.version.is_some() && !a.paths.is_empty() && !units.is_empty() {
        anyhow::bail!("--version is not available for directory units (check out an older git commit, then `nshard checkout DIR`)");
    }
    let (dir_failed, dir_rows) = if a.version.is_none() {
        super::dirs::checkout(ctx, &repo, &units, a.force, a.json)?
    } else {
        (0, Vec::new())
    };
    if !a.paths.is_empty() && rest.is_empty() {
        if a.json {
            print_json(&dir_rows)?;
        }
        return Ok(if dir_failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let paths = super::select(&repo, &ctx.cwd, &rest)?;
    if a.version.is_some() && paths.len() != 1 {
        anyhow::bail!(
            "--version needs exactly one file (version ids belong to one file's history)"
        );
    }
    let bar = ctx.progress(a.json);
    let results = repo.checkout(&CheckoutOptions {
        paths,
        version: a.version,
        force: a.force,
        progress: &bar,
    })?;
    let failed = results.iter().filter(|r| r.result.is_err()).count() + dir_failed;
    if a.json {
        let mut rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::to_value(JsonFile {
                    path: r.path.as_str(),
                    outcome: r.result.as_ref().ok(),
                    error: r.result.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect::<Result<_, _>>()?;
        rows.extend(dir_rows);
        print_json(&rows)?;
    } else {
        if results.is_empty() && units.is_empty() {
            out!("no manifests to check out");
        }
        print_human(&results)?;
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per file on stdout (errors on stderr); shared with `pull --checkout`.
pub fn print_human(results: &[FileCheckout]) -> Result<()> {
    for r in results {
        match &r.result {
            Ok(CheckoutOutcome::Written { version, size }) => {
                per_file!(
                    "{}: checked out version {} ({})",
                    r.path,
                    version.short(),
                    bytes(*size)
                )
            }
            Ok(CheckoutOutcome::UpToDate { version }) => {
                per_file!("{}: up to date (version {})", r.path, version.short())
            }
            Ok(other) => per_file!("{}: {other:?}", r.path),
            Err(e) => file_error(&r.path, e),
        }
    }
    Ok(())
}
