//! `nshard commit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{CommitOptions, CommitOutcome};

use crate::output::{bytes, count, file_error, pct, print_json, Ctx};
use crate::{out, per_file};

/// Record a new version of every changed tracked file.
///
/// Cuts each changed file into chunks, stores the chunks the
/// store lacks (compressed), and writes `<file>.shard.json`. Unchanged files are skipped without
/// being reread. Then `git add` the manifests and `git commit`.
///
/// Model checkpoints (safetensors, PyTorch, GGUF) form a series: the new version is stored whole
/// and the version before it is re-stored as deltas of it by a background `nshard repack`, so an
/// older checkpoint costs only what changed (`delta = false` in .shard/config.toml turns this
/// off; `delta_background = false` does it before commit returns). `nshard log` shows what each
/// version costs in the store.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The version message.
    #[arg(short, long)]
    pub message: String,
    /// Only these tracked files (default: all tracked files). A path inside a directory unit
    /// commits only that file or subdirectory of it; the unit's other files keep their committed
    /// version, as with `git commit PATH`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also commit files that hold an older committed version than their manifest (after
    /// `git pull` or `checkout --version`), recording that content as the newest version (a
    /// revert). Without it such files are refused.
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
    outcome: Option<&'a CommitOutcome>,
    error: Option<String>,
    /// What to do about the error, as the text output's `hint:` line says.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    /// For a commit refused because it would take back a newer version's changes: the files and
    /// versions at stake (see [`from_older_json`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    from_older: Option<serde_json::Value>,
}

/// The files and versions of a commit refused because it would take back what a newer version
/// changed, for `--json`: `manifest_version`, and for a file `edited_from` and `order`; for a
/// unit `stale`, `edited` and `removed` (each `{path, version}`), `created` (paths) and
/// `unplaced`.
fn from_older_json(e: &nshard_core::Error) -> Option<serde_json::Value> {
    use nshard_core::{Error, RepoError, VersionOrder};
    let Error::Repo(r) = e else { return None };
    let order = |o: &VersionOrder| match o {
        VersionOrder::Older => "older",
        VersionOrder::Newer => "newer",
        _ => "unrelated",
    };
    match r {
        RepoError::EditedFromOther {
            edited_from,
            manifest_version,
            file_is,
            ..
        } => Some(serde_json::json!({
            "edited_from": edited_from,
            "manifest_version": manifest_version,
            "order": order(file_is),
        })),
        RepoError::UnitFromOlder(f) => {
            let files = |v: &[(String, nshard_core::ObjectId)]| {
                v.iter()
                    .map(|(p, id)| serde_json::json!({"path": p, "version": id}))
                    .collect::<Vec<_>>()
            };
            Some(serde_json::json!({
                "manifest_version": f.manifest_version,
                "stale": files(&f.stale),
                "edited": files(&f.edited),
                "removed": files(&f.removed),
                "created": f.created,
                "unplaced": f.unplaced,
            }))
        }
        _ => None,
    }
}

pub fn run(ctx: &Ctx, a: CommitArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let sel = repo.select(&ctx.cwd, &a.paths)?;
    let bar = ctx.progress(a.json);
    let results = repo.commit(
        &sel,
        &CommitOptions {
            message: a.message,
            force: a.force,
            progress: &bar,
        },
    )?;
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    let pending = results.iter().any(|r| {
        matches!(
            r.result,
            Ok(CommitOutcome::Committed {
                delta_pending: true,
                ..
            })
        )
    });
    // Re-encoding the previous versions as deltas runs after commit returns (the repository
    // lock is released: it never holds up the next command). If it cannot start, it is left
    // queued for the next commit or `nshard repack`.
    let background = pending && super::repack::spawn_background(repo.root());
    if a.json {
        let rows: Vec<JsonFile> = results
            .iter()
            .map(|r| JsonFile {
                path: r.path.as_str(),
                outcome: r.result.as_ref().ok(),
                error: r.result.as_ref().err().map(|e| e.to_string()),
                hint: r.result.as_ref().err().and_then(crate::hints::hint),
                from_older: r.result.as_ref().err().and_then(from_older_json),
            })
            .collect();
        print_json(&rows)?;
    } else {
        if results.is_empty() {
            // Files with a manifest that no tracked entry matches (a clone whose owner committed
            // only the manifests): say how to commit them.
            let untracked: Vec<String> = repo
                .status()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| !f.tracked)
                .map(|f| f.path.to_string())
                .collect();
            if untracked.is_empty() {
                out!("nothing to commit: no tracked files (use `nshard track <path>`)");
            } else {
                out!(
                    "nothing to commit: no tracked files; {} a manifest but no tracked entry here: `nshard track {}` to commit {}",
                    if untracked.len() == 1 { format!("{} has", untracked[0]) } else { format!("{} files have", untracked.len()) },
                    untracked.join(" "),
                    if untracked.len() == 1 { "it" } else { "them" }
                );
            }
        }
        let (mut committed, mut unchanged) = (0, 0);
        for r in &results {
            match &r.result {
                Ok(CommitOutcome::Committed {
                    version,
                    size,
                    chunks_total,
                    chunks_new,
                    chunks_reused,
                    new_bytes,
                    stored_bytes,
                    delta_chunks,
                    delta_bytes_before,
                    delta_bytes_after,
                    delta_pending,
                    ..
                }) => {
                    committed += 1;
                    per_file!("{}: committed version {}", r.path, version.short());
                    per_file!(
                        "  {} in {}: {chunks_new} new, {chunks_reused} reused",
                        bytes(*size),
                        count(*chunks_total as u64, "chunk")
                    );
                    per_file!(
                        "  new data {} stored as {}; dedup {} of the file reused",
                        bytes(*new_bytes),
                        bytes(*stored_bytes),
                        pct(size - new_bytes, *size)
                    );
                    if *delta_pending {
                        per_file!(
                            "  previous version: {}",
                            if background {
                                "being re-encoded as deltas of this one in the background (`nshard repack` waits for it)"
                            } else {
                                "queued to be re-encoded as deltas of this one (`nshard repack`)"
                            }
                        );
                    }
                    if *delta_chunks > 0 {
                        per_file!(
                            "  previous version re-stored as deltas of this one: {} from {} to {}",
                            count(*delta_chunks as u64, "chunk"),
                            bytes(*delta_bytes_before),
                            bytes(*delta_bytes_after)
                        );
                        let (grew, shrank) =
                            (stored_bytes + delta_bytes_after, *delta_bytes_before);
                        per_file!(
                            "  the store {} by {}",
                            if grew >= shrank { "grew" } else { "shrank" },
                            bytes(grew.abs_diff(shrank))
                        );
                    }
                }
                Ok(CommitOutcome::DirCommitted(d)) => {
                    committed += 1;
                    per_file!("{}/: committed version {}", r.path, d.version.short());
                    per_file!(
                        "  {} in {}: {} added, {} removed, {} modified, {} read",
                        bytes(d.size),
                        count(d.files as u64, "file"),
                        d.added,
                        d.removed,
                        d.modified,
                        d.read
                    );
                    per_file!(
                        "  new data {} stored as {} in {}",
                        bytes(d.new_bytes),
                        bytes(d.stored_bytes),
                        count(d.new_objects as u64, "new object")
                    );
                    if d.converted > 0 {
                        per_file!(
                            "  {} inside it removed (the directory manifest versions those files now; `git rm` them)",
                            count(d.converted as u64, "per-file manifest")
                        );
                    }
                }
                Ok(CommitOutcome::Unchanged { version, restored }) => {
                    unchanged += 1;
                    if *restored > 0 {
                        per_file!(
                            "{}: unchanged (version {}); stored again {} the store had lost",
                            r.path,
                            version.short(),
                            count(*restored as u64, "chunk")
                        );
                    } else {
                        per_file!("{}: unchanged (version {})", r.path, version.short());
                    }
                }
                Ok(other) => per_file!("{}: {other:?}", r.path),
                Err(e) => file_error(&r.path, e),
            }
        }
        if committed > 0 && repo.is_git_repo() {
            out!("{committed} committed, {unchanged} unchanged; now `git add` the .shard.json manifests");
        } else if committed > 0 {
            out!("{committed} committed, {unchanged} unchanged");
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
