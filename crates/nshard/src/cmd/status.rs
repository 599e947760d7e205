//! `nshard status`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::escape_path;
use nshard_core::Retry;
use nshard_core::{FileState, FileStatus, Status, VersionOrder};

use super::remote::{label, runtime};
use crate::out;
use crate::output::{count, print_json, Ctx, Paint};

/// Show the state of every tracked file (or of the files, directories and quoted globs given).
///
/// States: unchanged, modified, outdated (holds another committed version than its manifest
/// names: older, or newer after `git checkout` of an older commit), new (never committed),
/// conflicted (the manifest has git conflict markers), missing from the work tree (checkout
/// needed), data missing from the local store (pull needed), invalid (the manifest fails
/// validation), unreadable (the file or its manifest cannot be read safely). Exits with status 1
/// when some file is invalid or unreadable.
///
/// With `--remote`, also asks the remote (default: the default remote) which objects of each
/// manifest's version it lacks, with the same batched queries a push uses; nothing is sent.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Data files, manifests, directories or quoted globs; default: every file.
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    /// Also report which committed versions this remote (name or URL; default: the default
    /// remote) lacks (`-c`, as `dvc status -c`).
    #[arg(
        short = 'c',
        long,
        value_name = "REMOTE",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub remote: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: StatusArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let sel = repo.select(&ctx.cwd, &a.paths)?;
    let mut st = repo.status_of(&sel)?;
    // Manifests whose own name is refused are never read; reported when no path narrows the view.
    let refused = if a.paths.is_empty() {
        repo.refused_manifests()?
    } else {
        Vec::new()
    };
    let remote = match &a.remote {
        None => None,
        Some(arg) => {
            let arg = Some(arg.as_str()).filter(|s| !s.is_empty());
            if let Some(v) = arg {
                // `status --remote models/x.bin` most likely meant a path, not a remote.
                let p = nshard_core::normalize_lexically(&ctx.cwd.join(v));
                if !repo.remotes().iter().any(|e| e.name == v)
                    && !v.contains("://")
                    && p.starts_with(repo.root())
                    && p.exists()
                {
                    anyhow::bail!(
                        "{v} is a path in the repository, not a remote: --remote takes an optional remote name or URL; to check paths against the default remote, put them first: `nshard status {v} --remote`"
                    );
                }
            }
            let resolved = runtime()?.block_on(async {
                let (resolved, store) = super::remote::open(&repo, ctx, arg).await?;
                nshard_core::transfer::check_remote(&repo, &mut st, &store, &Retry::default())
                    .await?;
                anyhow::Ok(resolved)
            })?;
            Some(resolved)
        }
    };
    // Exit 1 when the state of some file could not be determined, so scripts notice.
    let undetermined = !refused.is_empty()
        || st.iter().any(|s| {
            matches!(
                s,
                Status::File(FileStatus {
                    state: FileState::InvalidManifest { .. } | FileState::Unreadable { .. },
                    ..
                })
            )
        });
    let code = if undetermined {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if a.json {
        // Directory units follow the files, with their own fields (files, changes); refused
        // manifests are `invalid` entries under their own name, after the files.
        let mut rows = Vec::new();
        for s in &st {
            if let Status::File(_) = s {
                rows.push(serde_json::to_value(s)?);
            }
        }
        rows.extend(refused.iter().map(|r| {
            serde_json::json!({
                "path": r.path, "state": "invalid", "reason": r.reason,
                "version": null, "tracked": false, "manifest": r.path,
            })
        }));
        for s in &st {
            if let Status::Unit(_) = s {
                rows.push(serde_json::to_value(s)?);
            }
        }
        print_json(&rows)?;
        return Ok(code);
    }
    if st.is_empty() && refused.is_empty() {
        out!("no tracked files (use `nshard track <path>`)");
    }
    for s in &st {
        if let Status::Unit(d) = s {
            super::dirs::print_status(d, 20)?;
        }
    }
    for s in st.iter().filter_map(|s| match s {
        Status::File(f) => Some(f),
        _ => None,
    }) {
        let v = s.version.map(|v| v.short()).unwrap_or_default();
        let (label, hint) = match &s.state {
            FileState::Unchanged => ("unchanged", String::new()),
            FileState::Modified => ("modified", "  (run `nshard commit`)".to_string()),
            FileState::Outdated {
                file_version,
                file_is: _,
                data_present: false,
            } => (
                "outdated",
                format!(
                    "  (holds version {}; the data of {v} is not in the local store: `nshard pull --checkout` fetches and checks it out)",
                    file_version.short()
                ),
            ),
            FileState::Outdated {
                file_version,
                file_is,
                ..
            } => ("outdated", outdated_hint(file_version, *file_is, &v)),
            FileState::Conflicted { ours, theirs } => {
                let m = s.path.manifest_path();
                let side = |v: &Option<nshard_core::ObjectId>| {
                    v.map_or("not a valid manifest".to_string(), |v| v.short())
                };
                (
                    "conflicted",
                    format!(
                        "  (manifest has git conflict markers: ours {}, theirs {}; keep one with `git checkout --theirs {m}` or `git checkout --ours {m}`, `git add {m}`, then `nshard checkout`, or `nshard pull --checkout` if that side's data is not here)",
                        side(ours),
                        side(theirs)
                    ),
                )
            }
            FileState::New => ("new", "  (never committed)".to_string()),
            FileState::Missing { data_present: true } => {
                ("missing", "  (run `nshard checkout`)".to_string())
            }
            FileState::Missing {
                data_present: false,
            } => (
                "missing",
                "  (data not in the local store: run `nshard pull` then `nshard checkout`)"
                    .to_string(),
            ),
            FileState::DataMissing { missing_chunks } => (
                "data-missing",
                format!(
                    "  ({} not in the local store: run `nshard pull`)",
                    count(*missing_chunks as u64, "chunk")
                ),
            ),
            FileState::InvalidManifest { reason } => {
                ("invalid", format!("  ({})", escape_path(reason)))
            }
            FileState::Unreadable { reason } => {
                ("unreadable", format!("  ({})", escape_path(reason)))
            }
            other => ("other", format!("  ({other:?})")),
        };
        let untracked = if s.tracked {
            ""
        } else {
            "  [manifest only, not tracked]"
        };
        let on_remote = super::dirs::on_remote(s.remote.as_ref());
        // Padded before it is coloured, so the columns stay aligned.
        let padded = format!("{label:<13}");
        let label = match label {
            "unchanged" => padded,
            "new" => Paint::Good.out(&padded),
            "modified" | "outdated" => Paint::Warn.out(&padded),
            _ => Paint::Bad.out(&padded),
        };
        out!(
            "{label} {:<40} {v}{hint}{untracked}{on_remote}",
            s.path // Display escapes control and invisible characters.
        );
    }
    for r in &refused {
        // Both fields are escaped already.
        out!(
            "{} {:<40} ({})",
            Paint::Bad.out(&format!("{:<13}", "invalid")),
            r.path,
            r.reason
        );
    }
    if let Some(r) = remote {
        let checked: Vec<_> = st
            .iter()
            .filter_map(|s| match s {
                Status::File(f) => f.remote,
                Status::Unit(u) => u.remote,
            })
            .collect();
        let units = st
            .iter()
            .filter(|s| matches!(s, Status::Unit(u) if u.remote.is_some()))
            .count();
        let lacking = checked.iter().filter(|c| c.missing_objects > 0).count();
        if lacking == 0 {
            let what = if units > 0 {
                format!(
                    "{}, {}",
                    count((checked.len() - units) as u64, "file"),
                    count(units as u64, "directory unit")
                )
            } else {
                count(checked.len() as u64, "file")
            };
            out!("remote {} has every committed version ({what})", label(&r));
        } else {
            out!(
                "remote {} lacks {lacking} of {} committed versions: run `nshard push`",
                label(&r),
                checked.len()
            );
        }
    }
    Ok(code)
}

/// The advice for a file holding another version than its manifest names.
fn outdated_hint(file: &nshard_core::ObjectId, order: VersionOrder, manifest: &str) -> String {
    let f = file.short();
    match order {
        VersionOrder::Older => format!(
            "  (holds older version {f}: `nshard checkout` updates it to {manifest})"
        ),
        VersionOrder::Newer => format!(
            "  (holds newer version {f}, e.g. after `git checkout` of an older commit: `nshard checkout` makes it match the manifest's {manifest}; {f} stays in the store)"
        ),
        VersionOrder::Unrelated => format!(
            "  (holds version {f}, not in this manifest's history: `nshard checkout` makes it match {manifest})"
        ),
        _ => format!("  (holds version {f}; `nshard checkout` makes it match {manifest})"),
    }
}

/// List the files NeuroShard versions: version, whether the work tree holds it, size, path.
///
/// Like `git lfs ls-files`: one line per tracked file with a manifest, `*` when the file in the
/// work tree is that version, `-` when it is not (modified, outdated, missing). Directory units
/// are listed with their version and a trailing `/`.
#[derive(Args, Debug)]
pub struct LsFilesArgs {
    /// Data files, manifests, directories or quoted globs; default: every file.
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
    /// Print the result as JSON: path, version, size, state, checked_out.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Listed {
    path: String,
    version: String,
    size: Option<u64>,
    state: String,
    checked_out: bool,
}

pub fn run_ls_files(ctx: &Ctx, a: LsFilesArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let sel = repo.select(&ctx.cwd, &a.paths)?;
    let mut rows = Vec::new();
    for s in repo.status_of(&sel)? {
        let (path, version, state, size) = match &s {
            Status::File(f) => {
                let Some(v) = f.version else { continue };
                let size = repo
                    .read_worktree_manifest(&f.path)
                    .ok()
                    .flatten()
                    .map(|w| w.manifest.size);
                let state = serde_json::to_value(&f.state)
                    .ok()
                    .and_then(|j| j["state"].as_str().map(str::to_string))
                    .unwrap_or_default();
                (f.path.to_string(), v, state, size)
            }
            Status::Unit(u) => {
                let Some(v) = u.version else { continue };
                let state = serde_json::to_value(u.state)
                    .ok()
                    .and_then(|j| j.as_str().map(str::to_string))
                    .unwrap_or_default();
                (format!("{}/", u.path), v, state, None)
            }
        };
        rows.push(Listed {
            checked_out: state == "unchanged",
            path,
            version: version.to_hex(),
            size,
            state,
        });
    }
    if a.json {
        print_json(&rows)?;
    } else {
        for r in &rows {
            out!(
                "{} {} {}{}",
                &r.version[..12],
                if r.checked_out { '*' } else { '-' },
                nshard_core::escape_path(&r.path),
                r.size
                    .map(|n| format!(" ({})", crate::output::bytes(n)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
