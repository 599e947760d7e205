//! `nshard track` / `nshard untrack`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{TrackChange, TrackMode};

use crate::output::{print_json, Ctx};
use crate::{out, per_file};

/// Start tracking files, directories (recursively) or glob patterns.
///
/// A directory is tracked recursively (files added to it later are tracked
/// too). A directory holding many files (at least `dir_threshold` in .shard/config.toml, default
/// 1000), or any directory with --dir, is versioned as one unit: one manifest `DIR.shard.json`
/// for the whole directory, small files packed together; --files keeps one manifest per file
/// (and converts a unit back). A quoted glob such as 'models/*.safetensors' tracks whatever matches it at each commit
/// (`**` crosses directories). Tracked files are added to .gitignore in a git repository.
#[derive(Args, Debug)]
pub struct TrackArgs {
    /// Files, directories or glob patterns inside the repository.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Version each directory as one unit (one manifest for the whole directory).
    #[arg(long = "dir", id = "as_unit", conflicts_with = "files")]
    pub as_unit: bool,
    /// One manifest per file, whatever the number of files (converts a directory unit back).
    #[arg(long)]
    pub files: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Stop tracking paths.
///
/// Their manifests and data files stay; `git rm` the manifests to drop them.
#[derive(Args, Debug)]
pub struct UntrackArgs {
    /// Tracked entries (as given to `nshard track`).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn print(changes: &[TrackChange], json: bool) -> Result<()> {
    if json {
        return print_json(&changes);
    }
    for c in changes {
        match c {
            TrackChange::Added { entry, files } => {
                per_file!(
                    "tracking {entry} ({files} file{})",
                    if *files == 1 { "" } else { "s" }
                )
            }
            TrackChange::AddedDir { entry, files } => {
                per_file!(
                    "tracking {entry} as one unit ({files} file{}; manifest {}.shard.json)",
                    if *files == 1 { "" } else { "s" },
                    entry.trim_end_matches('/')
                )
            }
            TrackChange::AlreadyTracked { entry } => per_file!("already tracked: {entry}"),
            TrackChange::Removed { entry } => per_file!("untracked {entry}"),
            other => per_file!("{other:?}"),
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: TrackArgs) -> Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let mode = if a.as_unit {
        TrackMode::Dir
    } else if a.files {
        TrackMode::Files
    } else {
        TrackMode::Auto
    };
    let changes = repo.track_with(&ctx.cwd, &a.paths, mode)?;
    print(&changes, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_untrack(ctx: &Ctx, a: UntrackArgs) -> Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let changes = repo.untrack(&ctx.cwd, &a.paths)?;
    print(&changes, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Rename a committed file with its manifest, keeping its history.
///
/// Moves FILE to DEST and its manifest to DEST.shard.json, and records a version at DEST (the
/// same chunks; its parent is the version FILE had), so `nshard log DEST` and `diff --from` reach
/// across the rename. A tracked entry naming FILE exactly is renamed; otherwise DEST is tracked
/// when no entry matches it. Uncommitted changes move with the file and stay uncommitted. In git,
/// then `git add -A` (or `git rm --cached FILE.shard.json` and `git add DEST.shard.json`).
#[derive(Args, Debug)]
pub struct MvArgs {
    /// The committed data file (or its manifest).
    #[arg(value_name = "FILE")]
    pub from: PathBuf,
    /// Where it goes.
    #[arg(value_name = "DEST")]
    pub to: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_mv(ctx: &Ctx, a: MvArgs) -> Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let from = strip_manifest_suffix(&a.from);
    let m = repo.move_file(&ctx.cwd, &from, &a.to)?;
    if a.json {
        print_json(&m)?;
    } else {
        out!(
            "renamed {} to {} (version {}, parent {}{})",
            m.from,
            m.to,
            m.version.short(),
            m.parent.short(),
            if m.data_moved {
                ""
            } else {
                "; the file was not checked out: its manifest moved"
            }
        );
        if repo.is_git_repo() {
            out!(
                "now `git add -A` (or `git rm --cached {}.shard.json` and `git add {}.shard.json`)",
                m.from,
                m.to
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `x.shard.json` names the data file `x`.
fn strip_manifest_suffix(p: &std::path::Path) -> PathBuf {
    let s = p.to_string_lossy();
    match s.strip_suffix(".shard.json") {
        Some(d) => PathBuf::from(d),
        None => p.to_path_buf(),
    }
}
