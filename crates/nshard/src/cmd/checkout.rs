//! `nshard checkout`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{Checked, CheckoutOptions, CheckoutOutcome, Target};

use crate::output::{bytes, file_error, print_json, Ctx};
use crate::{out, per_file};

/// Rebuild data files from the local store.
///
/// Verifies every chunk and the whole-file SHA-256
/// before atomically replacing the file. Refuses to overwrite uncommitted changes without --force.
/// With --version, restores an older version of the file (the manifest stays at the latest version,
/// so `nshard status` shows the file outdated; `nshard commit --force` records the revert).
///
/// In a tracked directory, an edited file stays as you left it where the version checked out
/// holds the bytes you edited from (the edit carries over, as with `git checkout`), and the other
/// files are written; where that version holds other bytes there, nothing is written. Without
/// --version, an edit made on the manifest's version itself is in the way: --force puts the
/// committed bytes back.
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

pub fn run(ctx: &Ctx, a: CheckoutArgs) -> Result<ExitCode> {
    let repo = ctx.repo_or_init()?;
    let sel = repo.select(&ctx.cwd, &a.paths)?;
    let targets = repo.targets(&sel)?;
    let bar = ctx.progress(a.json);
    let results = repo.checkout(
        &targets,
        &CheckoutOptions {
            restore: a.version.is_none(),
            version: a.version,
            force: a.force,
            keep_removed: &[],
            progress: &bar,
        },
    )?;
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if a.json {
        print_json(&json_rows(&results))?;
    } else {
        if results.is_empty() {
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

/// The `--json` rows: a file's outcome inline, a unit's under `outcome`; shared with `pull
/// --checkout`.
pub fn json_rows(results: &[Checked]) -> Vec<serde_json::Value> {
    results
        .iter()
        .map(|r| {
            let path = match &r.target {
                Target::File(p) => p.as_str().to_string(),
                unit => unit.label(),
            };
            match &r.result {
                Ok(CheckoutOutcome::Unit(c)) => serde_json::json!({"path": path, "outcome": c}),
                Ok(o) => {
                    let mut v = serde_json::json!({"path": path, "error": null});
                    if let (Some(row), Ok(serde_json::Value::Object(o))) =
                        (v.as_object_mut(), serde_json::to_value(o))
                    {
                        row.extend(o);
                    }
                    v
                }
                Err(e) => serde_json::json!({"path": path, "error": e.to_string()}),
            }
        })
        .collect()
}

/// One line per file or unit on stdout (errors on stderr); shared with `pull --checkout`.
pub fn print_human(results: &[Checked]) -> Result<()> {
    for r in results {
        let label = r.target.label();
        match &r.result {
            Ok(CheckoutOutcome::Written { version, size }) => {
                per_file!(
                    "{label}: checked out version {} ({})",
                    version.short(),
                    bytes(*size)
                )
            }
            Ok(CheckoutOutcome::UpToDate { version }) => {
                per_file!("{label}: up to date (version {})", version.short())
            }
            Ok(CheckoutOutcome::Unit(c)) => super::dirs::print_checkout(&label, c)?,
            Ok(other) => per_file!("{label}: {other:?}"),
            Err(e) => file_error(&label, e),
        }
    }
    Ok(())
}
