//! `nshard diff`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{
    Diff, DiffOptions, DiffSide, DirState, FileDiff, FileState, SideKind, Status, TensorChange,
    TensorChangeKind, TensorGlob, TensorStats,
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
/// from its committed version (edited, or holding an older version after `checkout --version`).
/// --json prints one object for a single named file, else an array.
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
///
/// --stats: how much each changed tensor changed, computed from both versions' bytes in the local
/// store (and the working file): changed elements (bits differ), the relative L2 change ‖new −
/// old‖ / ‖old‖, the largest absolute change, and NaN/Inf values in the new version, most changed
/// first. Float tensors (bf16, fp16, fp32, fp64, fp8); quantized GGUF tensors give changed blocks
/// only. --html FILE writes the same as a self-contained page with a heat map (layers down, tensor
/// kinds across). Both need the changed tensors' data locally (`nshard pull --all-versions`).
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
    /// How much each changed tensor changed: changed elements, relative L2 change, largest
    /// absolute change, NaN/Inf count.
    #[arg(long)]
    pub stats: bool,
    /// Write an HTML report (heat map and sortable table; implies --stats) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Only tensors whose names match GLOB (`*` matches across dots), e.g. '*.q_proj.*'.
    #[arg(long, value_name = "GLOB")]
    pub tensor: Option<String>,
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
        // committed (edited, or holding another committed version), known from the stat cache
        // without reading unchanged files.
        if a.from.is_some() || a.to.is_some() {
            return Err(nshard_core::Error::Repo(RepoError::VersionNeedsOneTarget).into());
        }
        let changed: Vec<String> = repo
            .status_of(&sel)?
            .into_iter()
            .filter_map(|s| match s {
                Status::File(f)
                    if matches!(f.state, FileState::Modified | FileState::Outdated { .. }) =>
                {
                    Some(f.path.to_string())
                }
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
    if a.html.is_some() && targets.len() != 1 {
        anyhow::bail!("--html writes the report of one file: name exactly one model file");
    }
    let glob = tensor_glob(a.tensor.as_deref())?;
    let stats = a.stats || a.html.is_some();
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
                stats,
                tensors: glob.as_ref(),
            },
        );
        if let (Some(file), Ok(d)) = (&a.html, &d) {
            write_report(file, d)?;
        }
        match d {
            Ok(d) if a.json => diffs.push(d),
            Ok(Diff::File(d)) => {
                print_diff(&d)?;
                if let Some(g) = &a.tensor {
                    out!("(only tensors matching {g:?} are listed)");
                }
            }
            Ok(Diff::Unit(st)) => {
                super::dirs::print_status(&st, usize::MAX)?;
                if a.stats || a.tensor.is_some() {
                    out!(
                        "(--stats and --tensor look inside model files; a directory unit lists \
                         its files added, removed and modified)"
                    );
                }
            }
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
        (Some(t), Some(summary)) if t.entries.iter().any(|e| e.stats.is_some()) => {
            out!("tensors: {summary}");
            print_figures(&t.entries)?;
        }
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

/// `--tensor GLOB`, parsed.
pub fn tensor_glob(pattern: Option<&str>) -> Result<Option<TensorGlob>> {
    pattern
        .map(TensorGlob::new)
        .transpose()
        .map_err(anyhow::Error::msg)
}

/// The changed tensors with their figures, most changed first; then the tensors without figures.
fn print_figures(entries: &[TensorChange]) -> Result<()> {
    let mut with: Vec<&TensorChange> = entries.iter().filter(|e| e.stats.is_some()).collect();
    with.sort_by(|a, b| {
        let r = |e: &TensorChange| e.stats.as_ref().map_or(0.0, TensorStats::rank);
        r(b).total_cmp(&r(a))
    });
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let bad: u64 = with.iter().map(|e| e.non_finite()).sum();
    if bad > 0 {
        out!(
            "{} {bad} NaN/Inf values in the new version (marked !!)",
            crate::output::Paint::Warn.out("warning:")
        );
    }
    out!(
        "  {:>10}  {:>10}  {:>8}  {:<width$}  dtype [shape]",
        "rel_l2",
        "max_abs",
        "changed",
        "tensor"
    );
    for e in &with {
        let (rel, max, changed, flag) = match &e.stats {
            Some(TensorStats::Float(f)) => (
                f.rel_l2
                    .map(|r| format!("{r:.3e}"))
                    .unwrap_or_else(|| format!("l2 {:.2e}", f.l2)),
                format!("{:.3e}", f.max_abs),
                format!(
                    "{:.1} %",
                    f.changed_elements as f64 * 100.0 / f.elements.max(1) as f64
                ),
                if f.non_finite > 0 {
                    format!("  !! {} NaN/Inf", f.non_finite)
                } else {
                    String::new()
                },
            ),
            Some(TensorStats::Blocks(b)) => (
                "-".into(),
                "-".into(),
                format!(
                    "{:.1} %",
                    b.changed_blocks as f64 * 100.0 / b.blocks.max(1) as f64
                ),
                format!(
                    "  quantized: {} of {} blocks changed",
                    b.changed_blocks, b.blocks
                ),
            ),
            _ => continue,
        };
        out!(
            "  {rel:>10}  {max:>10}  {changed:>8}  {:<width$}  {}{flag}",
            e.name,
            shape(&e.dtype, &e.shape)
        );
    }
    for e in entries.iter().filter(|e| e.stats.is_none()) {
        let what = match (&e.change, &e.stats_note) {
            (_, Some(note)) => format!("changed ({note})"),
            (TensorChangeKind::Retyped, _) => format!(
                "retyped {} -> {}",
                shape(&e.from_dtype, &e.from_shape),
                shape(&e.dtype, &e.shape)
            ),
            (TensorChangeKind::Added, _) => format!("added {}", shape(&e.dtype, &e.shape)),
            (TensorChangeKind::Removed, _) => {
                format!("removed {}", shape(&e.from_dtype, &e.from_shape))
            }
            (other, _) => format!("{other:?}").to_lowercase(),
        };
        out!(
            "  {:>10}  {:>10}  {:>8}  {:<width$}  {what}",
            "",
            "",
            "",
            e.name
        );
    }
    Ok(())
}

/// Writes the HTML report of `d` to `file` (atomically: a temp file renamed over it).
fn write_report(file: &std::path::Path, d: &Diff) -> Result<()> {
    let Diff::File(d) = d else {
        anyhow::bail!("--html draws a model file's tensors; for a directory unit use --json");
    };
    if d.tensors.is_none() {
        anyhow::bail!(
            "{}: no tensor-level diff, so no report: {}",
            d.path,
            d.tensors_unavailable
                .as_deref()
                .unwrap_or("no tensor table")
        );
    }
    let html = crate::report::diff_report(
        d,
        &side(&d.from),
        &side(&d.to),
        &tensor_summary(d).unwrap_or_default(),
    );
    nshard_core::backend::write_atomic(file, html.as_bytes())?;
    eprintln!("wrote {}", file.display());
    Ok(())
}
