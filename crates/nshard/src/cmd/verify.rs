//! `nshard verify`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{ProblemKind, VerifyOptions};

use crate::out;
use crate::output::{bytes, count, print_json, Ctx};

/// Check that everything stored is intact.
///
/// Re-hashes every object in the local store, rebuilds every
/// work-tree manifest's file in memory (every chunk present, whole-file SHA-256 as recorded), and
/// reads the older versions reachable from them. Each problem is reported with its file, version
/// and object id; the exit status is non-zero if there is any.
///
/// Older versions whose data is not local (not pulled, or removed by `nshard gc --only-current`)
/// are noted, not errors.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also rebuild and hash every older version whose data is local (reads each in full).
    #[arg(long)]
    pub all_versions: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: VerifyArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let bar = ctx.progress(a.json);
    let r = repo.verify(&VerifyOptions {
        all_versions: a.all_versions,
        progress: &bar,
    })?;
    let code = if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if a.json {
        print_json(&r)?;
        return Ok(code);
    }
    out!(
        "checked {} ({}), {}, {}{}",
        count(r.objects_checked as u64, "object"),
        bytes(r.bytes_checked),
        count(r.files_checked as u64, "file"),
        count(r.versions_checked as u64, "older version"),
        if a.all_versions {
            format!(" ({} rebuilt)", r.versions_rebuilt)
        } else {
            String::new()
        }
    );
    for n in &r.history_notes {
        match n.chunks_missing {
            None => out!(
                "note: {}: history from version {} on is not in the local store",
                n.file,
                n.version.short()
            ),
            Some(k) => out!(
                "note: {}: older version {} has {} not in the local store",
                n.file,
                n.version.short(),
                count(k as u64, "chunk")
            ),
        }
    }
    if r.unreferenced_objects > 0 {
        out!(
            "note: {} ({}); `nshard gc` removes them",
            count(r.unreferenced_objects as u64, "unreferenced object"),
            bytes(r.unreferenced_bytes)
        );
    }
    for p in &r.problems {
        let kind = match p.kind {
            ProblemKind::CorruptObject => "corrupt object",
            ProblemKind::MissingObject => "missing object",
            ProblemKind::SizeMismatch => "wrong chunk size",
            ProblemKind::FileHashMismatch => "file hash mismatch",
            ProblemKind::TensorHashMismatch => "tensor hash mismatch",
            ProblemKind::InvalidManifest => "invalid manifest",
            ProblemKind::UnreadableVersion => "unreadable version",
            _ => "problem",
        };
        let file = p
            .file
            .as_ref()
            .map_or("(unreferenced)".to_string(), |f| f.to_string());
        let version = p
            .version
            .map(|v| format!(" version {}", v.short()))
            .unwrap_or_default();
        let object = p.object.map(|o| format!(" object {o}")).unwrap_or_default();
        out!("error: {kind}: {file}{version}{object}: {}", p.detail);
    }
    if r.ok {
        out!("ok: no problems found");
    } else {
        out!("{} found", count(r.problems.len() as u64, "problem"));
    }
    Ok(code)
}
