//! `nshard diff`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{
    Diff, DiffOptions, DiffSide, DirState, FileDiff, FileState, SideKind, Status, TensorChangeKind,
};

use super::log::{date, first_line};
use crate::out;
use crate::output::{bytes, count, pct, print_json, Ctx};
use nshard_core::RepoError;

/// Show what changed in files: their chunks, and their tensors for model files; in directory
/// units, the files added, removed and modified.
///
/// FILE may be a data file, its manifest, a directory or a quoted glob; each selected file or unit
/// is compared in turn. Without FILE, like `git diff`: every tracked file and unit that differs
/// from its committed version. --json prints one object for a single named file, else an array.
///
/// Block level: chunks reused, new and dropped, and the share of the file that changed. Tensor
/// level (safetensors, PyTorch zip checkpoints, GGUF): tensors changed, re-typed or reshaped,
/// added and removed, with sizes.
///
/// Without versions: the working file against its committed version (the file is read and cut
/// exactly as commit would, but nothing is stored). With --from and/or --to: stored versions, by
/// id or unique prefix (see `nshard log`), for a file or a directory unit alike; comparing two
/// stored versions needs only their manifests (a unit's listings), not their data. --to alone
/// compares that version with its parent.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Data files, manifests, directories or quoted globs [default: every tracked file and unit
    /// that differs from its committed version].
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Old side: a version id or prefix [default: the parent of --to if given, else the
    /// committed version].
    #[arg(long, value_name = "VERSION")]
    pub from: Option<String>,
    /// New side: a version id or prefix [default: the working file].
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn side(s: &DiffSide) -> String {
    match s.kind {
        SideKind::Version => format!(
            "{}  {}  {}",
            s.version.map(|v| v.short()).unwrap_or_default(),
            s.timestamp.as_deref().map(date).unwrap_or_default(),
            s.message.as_deref().map(first_line).unwrap_or_default()
        ),
        SideKind::WorkingFile => "working file".to_string(),
        SideKind::None => "(nothing: first version)".to_string(),
        other => format!("{other:?}"),
    }
}

fn shape(dtype: &Option<String>, shape: &Option<Vec<u64>>) -> String {
    let dims = shape
        .as_ref()
        .map(|s| s.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    format!("{} [{dims}]", dtype.as_deref().unwrap_or("?"))
}

/// The one-line tensor summary, e.g. "6 of 291 tensors changed (52.0 MiB, 4.9 %)".
pub fn tensor_summary(d: &FileDiff) -> Option<String> {
    let t = d.tensors.as_ref()?;
    let n = t.changed + t.retyped;
    let mut s = format!(
        "{n} of {} changed ({}, {})",
        count(t.total as u64, "tensor"),
        bytes(t.changed_bytes),
        pct(t.changed_bytes, d.to.size)
    );
    if t.retyped > 0 {
        s += &format!(", {} of them in dtype or shape", t.retyped);
    }
    if t.added > 0 {
        s += &format!("; {} added ({})", t.added, bytes(t.added_bytes));
    }
    if t.removed > 0 {
        s += &format!("; {} removed ({})", t.removed, bytes(t.removed_bytes));
    }
    Some(s)
}

pub fn run(ctx: &Ctx, a: DiffArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let sel = repo.select(&ctx.cwd, &a.files)?;
    let single = sel.is_single_file();
    let mut targets = repo.targets(&sel)?;
    if a.files.is_empty() {
        // Like `git diff`: every tracked file and unit whose work tree differs from what was
        // committed, known from the stat cache without reading unchanged files.
        if a.from.is_some() || a.to.is_some() {
            return Err(nshard_core::Error::Repo(RepoError::VersionNeedsOneTarget).into());
        }
        let changed: Vec<String> = repo
            .status_of(&sel)?
            .into_iter()
            .filter_map(|s| match s {
                Status::File(f) if f.state == FileState::Modified => Some(f.path.to_string()),
                Status::Unit(u) if u.state == DirState::Modified => Some(format!("{}/", u.path)),
                _ => None,
            })
            .collect();
        targets.retain(|t| changed.contains(&t.label()));
        if targets.is_empty() && !a.json {
            out!("no changes: every tracked file matches its committed version");
        }
    }
    if (a.from.is_some() || a.to.is_some()) && targets.len() != 1 {
        return Err(nshard_core::Error::Repo(RepoError::VersionNeedsOneTarget).into());
    }
    let bar = ctx.progress(a.json);
    let mut diffs = Vec::new();
    let mut failed = false;
    for t in &targets {
        let d = repo.diff_target(
            t,
            &DiffOptions {
                from: a.from.clone(),
                to: a.to.clone(),
                progress: &bar,
            },
        );
        match d {
            Ok(d) if a.json => diffs.push(d),
            Ok(Diff::File(d)) => print_diff(&d)?,
            Ok(Diff::Unit(st)) => super::dirs::print_status(&st, usize::MAX)?,
            Err(e) if single => return Err(e.into()),
            Err(e) => {
                failed = true;
                crate::output::file_error(&t.label(), &e);
            }
        }
    }
    if a.json {
        if single {
            print_json(&diffs[0])?;
        } else {
            print_json(&diffs)?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_diff(d: &FileDiff) -> Result<()> {
    out!("{}", d.path);
    out!(
        "  from  {}  ({}, {})",
        side(&d.from),
        bytes(d.from.size),
        count(d.from.chunks as u64, "chunk")
    );
    out!(
        "  to    {}  ({}, {})",
        side(&d.to),
        bytes(d.to.size),
        count(d.to.chunks as u64, "chunk")
    );
    let b = &d.blocks;
    if b.identical {
        out!(
            "blocks: identical content ({})",
            count(d.to.chunks as u64, "chunk")
        );
    } else {
        out!(
            "blocks: {} of {} reused ({}), {} new ({}), {} dropped ({}): {} of the file changed",
            b.chunks_reused,
            count(d.to.chunks as u64, "chunk"),
            bytes(b.bytes_reused),
            b.chunks_new,
            bytes(b.bytes_new),
            b.chunks_dropped,
            bytes(b.bytes_dropped),
            pct(b.bytes_new, d.to.size)
        );
    }
    match (&d.tensors, tensor_summary(d)) {
        (Some(t), Some(summary)) => {
            out!("tensors: {summary}");
            let width = t
                .entries
                .iter()
                .map(|e| e.name.chars().count())
                .max()
                .unwrap_or(0)
                .min(60);
            for e in &t.entries {
                let new_side = || {
                    format!(
                        "{}  {}",
                        shape(&e.dtype, &e.shape),
                        bytes(e.size.unwrap_or(0))
                    )
                };
                let (label, detail) = match e.change {
                    TensorChangeKind::Changed => ("changed", new_side()),
                    TensorChangeKind::Added => ("added", new_side()),
                    TensorChangeKind::Retyped => (
                        "retyped",
                        format!("{} -> {}", shape(&e.from_dtype, &e.from_shape), new_side()),
                    ),
                    TensorChangeKind::Removed => (
                        "removed",
                        format!(
                            "{}  {}",
                            shape(&e.from_dtype, &e.from_shape),
                            bytes(e.from_size.unwrap_or(0))
                        ),
                    ),
                    other => ("other", format!("{other:?}")),
                };
                out!("  {label:<8} {:<width$}  {detail}", e.name);
            }
        }
        _ => {
            let name = d.path.as_str().to_ascii_lowercase();
            let looks_like = [".safetensors", ".pth", ".pt", ".ckpt", ".gguf"]
                .iter()
                .any(|ext| name.ends_with(ext))
                || d.from.tensors.is_some()
                || d.to.tensors.is_some();
            if let (true, Some(why)) = (looks_like, &d.tensors_unavailable) {
                out!("tensors: no tensor-level diff: {why}");
            }
        }
    }
    Ok(())
}
