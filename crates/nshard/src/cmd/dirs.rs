//! Directory units in the commands: which arguments name a unit (or a path inside one), and how
//! their status, diff, log and checkout are printed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use nshard_core::Repo;
use nshard_core::RepoPath;
use nshard_core::{DirChangeKind, DirCheckout, DirCheckoutOptions, DirStatus};

use crate::output::{bytes, count, Ctx};
use crate::{out, per_file};

/// A unit, and the path inside it the user named (`None`: the whole unit).
pub type UnitSel = (RepoPath, Option<String>);

/// Splits command-line arguments into directory-unit selections and the other arguments. With
/// no arguments: every unit with a manifest (or in the config), and no other argument.
pub fn split(repo: &Repo, cwd: &Path, args: &[PathBuf]) -> Result<(Vec<UnitSel>, Vec<PathBuf>)> {
    let units = repo.dir_units()?;
    if args.is_empty() {
        return Ok((units.into_iter().map(|u| (u, None)).collect(), Vec::new()));
    }
    let mut sel = Vec::new();
    let mut rest = Vec::new();
    for a in args {
        match repo
            .resolve_user_path(cwd, a)
            .ok()
            .and_then(|p| repo.unit_of(&units, &p))
        {
            Some(s) => sel.push(s),
            None => rest.push(a.clone()),
        }
    }
    Ok((sel, rest))
}

/// Like [`split`], but when the arguments name something (a directory, a glob) that holds units,
/// those units are selected too.
pub fn split_with_filter(
    repo: &Repo,
    cwd: &Path,
    args: &[PathBuf],
) -> Result<(Vec<UnitSel>, Vec<PathBuf>)> {
    let (mut sel, rest) = split(repo, cwd, args)?;
    if !rest.is_empty() {
        let filter = repo.path_filter(cwd, &rest)?;
        for u in repo.dir_units()? {
            if filter.matches_unit(&u) && !sel.iter().any(|(s, _)| *s == u) {
                sel.push((u, None));
            }
        }
    }
    Ok((sel, rest))
}

/// The label of a selection: `data/` or `data/train/`.
pub fn shown(s: &UnitSel) -> String {
    match &s.1 {
        Some(sub) => format!("{}/{sub}/", s.0),
        None => format!("{}/", s.0),
    }
}

/// One status line for a unit, then (unless `-q`) its changed files, at most `limit` of them.
pub fn print_status(s: &DirStatus, limit: usize) -> Result<()> {
    let v = s.version.map(|v| v.short()).unwrap_or_default();
    let label = match &s.sub {
        Some(sub) => format!("{}/{sub}/", s.path),
        None => format!("{}/", s.path),
    };
    let count_of = |k: DirChangeKind| s.changes.iter().filter(|c| c.kind == k).count();
    let hint = match s.state {
        "clean" => format!("  ({} unchanged)", count(s.files as u64, "file")),
        "modified" => format!(
            "  ({} added, {} removed, {} modified: run `nshard commit`)",
            count_of(DirChangeKind::Added),
            count_of(DirChangeKind::Removed),
            count_of(DirChangeKind::Modified)
        ),
        "new" => format!(
            "  ({}, never committed: run `nshard commit`)",
            count(s.changes.len() as u64, "file")
        ),
        "not-checked-out" => format!(
            "  ({} not in the work tree: run `nshard checkout {label}`)",
            count(s.files as u64, "file")
        ),
        _ => "  (listing not in the local store: run `nshard pull`)".to_string(),
    };
    out!("{:<13} {:<40} {v}{hint}", s.state, label);
    for c in s.changes.iter().take(limit) {
        let what = match c.kind {
            DirChangeKind::Added => "added",
            DirChangeKind::Removed => "removed",
            DirChangeKind::Modified => "modified",
        };
        let mut size = match c.old_size {
            Some(old) if old != c.size => format!("{} -> {}", bytes(old), bytes(c.size)),
            _ => bytes(c.size),
        };
        if let Some(b) = &c.blocks {
            size += &format!(
                "; {} of {} blocks reused, {} new",
                b.chunks_reused,
                b.chunks_reused + b.chunks_new,
                bytes(b.bytes_new)
            );
        }
        per_file!(
            "    {what:<9} {}  ({size})",
            nshard_core::escape_path(&format!("{}/{}", s.path.as_str(), c.path))
        );
    }
    if s.changes.len() > limit {
        per_file!(
            "    … and {} more (`nshard diff {label}` lists them all)",
            s.changes.len() - limit
        );
    }
    Ok(())
}

/// Checks out each selected unit; prints a line per unit. Returns how many failed.
pub fn checkout(
    ctx: &Ctx,
    repo: &Repo,
    sel: &[UnitSel],
    force: bool,
    json: bool,
) -> Result<(usize, Vec<serde_json::Value>)> {
    let bar = ctx.progress(json);
    let mut failed = 0;
    let mut rows = Vec::new();
    for s in sel {
        let r = repo.checkout_dir(
            &s.0,
            &DirCheckoutOptions {
                sub: s.1.clone(),
                force,
                progress: &bar,
            },
        );
        match r {
            Ok(c) => {
                if json {
                    rows.push(serde_json::json!({"path": shown(s), "outcome": c}));
                } else {
                    print_checkout(s, &c)?;
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    rows.push(serde_json::json!({"path": shown(s), "error": e.to_string()}));
                } else {
                    crate::output::file_error(&shown(s), &e);
                }
            }
        }
    }
    Ok((failed, rows))
}

fn print_checkout(s: &UnitSel, c: &DirCheckout) -> Result<()> {
    let mut line = format!(
        "{}: checked out version {}: {} written ({}), {} up to date",
        shown(s),
        c.version.short(),
        count(c.written as u64, "file"),
        bytes(c.bytes),
        c.up_to_date
    );
    if c.removed > 0 {
        line.push_str(&format!(", {} removed", c.removed));
    }
    if c.kept > 0 {
        line.push_str(&format!(
            ", {} not in this version left in place (never committed)",
            count(c.kept as u64, "file")
        ));
    }
    per_file!("{line}");
    Ok(())
}
