//! `nshard verify`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::transfer::{verify_remote, RemoteVerifyReport, TransferOptions, DEFAULT_JOBS};
use nshard_core::{ProblemKind, Retry, VerifyOptions};

use super::remote::{label, runtime};
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
///
/// With --remote, checks the remote's copies instead: every object the current versions need
/// (with --all-versions, also every older version the local store has) is verified (by an
/// `nshard serve` itself, else by downloading it; an object the remote holds as a delta by
/// resolving its chain there); a corrupt one is moved aside on the remote and replaced by the
/// local copy (verified first; for a bad delta, a whole copy is stored beside it). Objects the remote lacks are
/// reported (`nshard push` sends them); the exit status is non-zero while any is missing or
/// still corrupt.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also rebuild and hash every older version whose data is local (reads each in full); with
    /// --remote, also check the remote's copies of every older version the local store has.
    #[arg(long)]
    pub all_versions: bool,
    /// Check and repair this remote's copies of the current versions (a remote name or URL).
    #[arg(long, short, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Objects checked at once (with --remote).
    #[arg(long, short, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: VerifyArgs) -> Result<ExitCode> {
    if a.remote.is_some() {
        return run_remote(ctx, &a);
    }
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
            "note: {} ({}) that no version in the work tree's histories uses; `nshard gc` removes those no git commit names either (`nshard gc --dry-run` lists them)",
            count(r.unreferenced_objects as u64, "object"),
            bytes(r.unreferenced_bytes)
        );
    }
    for p in &r.problems {
        let kind = match p.kind {
            ProblemKind::CorruptObject => "corrupt object",
            ProblemKind::MissingObject => "missing object",
            ProblemKind::MissingBase => "missing delta base",
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

/// `verify --remote` as JSON: the remote and the report.
#[derive(serde::Serialize)]
struct JsonRemoteReport<'a> {
    remote: String,
    remote_name: Option<&'a str>,
    #[serde(flatten)]
    report: &'a RemoteVerifyReport,
}

fn run_remote(ctx: &Ctx, a: &VerifyArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let bar = ctx.progress(a.json);
    let (resolved, r) = runtime()?.block_on(async {
        let (resolved, store) = super::remote::open(&repo, ctx, a.remote.as_deref()).await?;
        let opts = TransferOptions {
            jobs: a.jobs.into(),
            retry: Retry::default(),
            progress: &bar,
            dry_run: false,
        };
        let r = verify_remote(&repo, &store, &opts, a.all_versions).await?;
        anyhow::Ok((resolved, r))
    })?;
    let code = if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if a.json {
        print_json(&JsonRemoteReport {
            remote: resolved.url.to_string(),
            remote_name: resolved.name.as_ref().map(|n| n.as_str()),
            report: &r,
        })?;
        return Ok(code);
    }
    out!("verify {}", label(&resolved));
    out!(
        "checked {} ({}): {} corrupt, {} repaired, {} missing",
        count(r.checked as u64, "object"),
        bytes(r.bytes_checked),
        r.corrupt.len(),
        r.repaired.len(),
        r.missing.len()
    );
    for id in &r.repaired {
        out!("repaired: object {id} (a good copy from the local store replaced the corrupt one)");
    }
    for u in &r.unrepaired {
        out!("error: corrupt object {}: {}", u.id, u.reason);
    }
    for id in &r.missing {
        out!("missing: object {id}");
    }
    if !r.missing.is_empty() {
        // Older versions are sent only by `push --all-versions`.
        let push = if a.all_versions {
            "nshard push --all-versions"
        } else {
            "nshard push"
        };
        out!(
            "hint: `{push}` sends the {} the remote lacks",
            count(r.missing.len() as u64, "object")
        );
    }
    if r.pruned_versions > 0 {
        out!(
            "left out {} older version(s) the remote's retention pruned (`nshard remote gc --keep-last`)",
            r.pruned_versions
        );
    }
    if r.retries > 0 {
        out!("{} transient failures were retried", r.retries);
    }
    if r.ok {
        out!(
            "ok: the remote's copies of the {} are intact",
            if a.all_versions {
                "versions checked"
            } else {
                "current versions"
            }
        );
    }
    Ok(code)
}
