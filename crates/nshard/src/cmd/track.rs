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
    // A committed file keeps its manifest, so its data stays out of git (`.gitignore` keeps its
    // line while the manifest is there).
    if !a.json {
        for c in &changes {
            if let TrackChange::Removed { entry } = c {
                let p = repo
                    .root()
                    .join(format!("{entry}{}", nshard_core::format::MANIFEST_SUFFIX));
                if p.is_file() {
                    per_file!(
                        "{entry} keeps its manifest, so its data stays out of git; `nshard rm --cached {entry}` stops versioning it"
                    );
                }
            }
        }
    }
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

/// Stop versioning committed files: remove their manifests and the files themselves.
///
/// Like `git rm`: refuses a file with uncommitted changes (they would be lost) unless --force, and
/// --cached keeps the data file (only the manifest goes). An exact tracked entry naming the file
/// is removed; a directory or glob entry stays (untrack it to stop it matching). The file's
/// versions stay in the local store, and on remotes, until gc. In git, then `git add -A` (or `git
/// rm --cached FILE.shard.json`).
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Committed data files (or their manifests).
    #[arg(value_name = "FILE", required = true)]
    pub paths: Vec<PathBuf>,
    /// Keep the data files; remove only the manifests.
    #[arg(long)]
    pub cached: bool,
    /// Remove a file even when it holds uncommitted changes.
    #[arg(long, short)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_rm(ctx: &Ctx, a: RmArgs) -> Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let mut done = Vec::new();
    for p in &a.paths {
        done.push(repo.remove_file(&ctx.cwd, &strip_manifest_suffix(p), a.cached, a.force)?);
    }
    if a.json {
        print_json(&done)?;
    } else {
        for r in &done {
            per_file!(
                "removed {} (version {}{})",
                r.path,
                r.version.short(),
                if r.file_deleted {
                    ""
                } else {
                    "; the data file stays"
                }
            );
        }
        if repo.is_git_repo() && !done.is_empty() {
            out!("now `git add -A` (or `git rm --cached` the manifests)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
