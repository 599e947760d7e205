//! `nshard doctor`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::git::GitTree;
use nshard_core::Repo;
use nshard_remote::OpenOptions;

use super::awsenv::s3_options;
use super::remote::{env_tokens, runtime};
use crate::out;
use crate::output::{bytes, count, print_json, Ctx};

/// Check this setup: the binary, the repository and its config files, the remotes (each asked for
/// its health, then one read with this setup's token), the git hooks, and the local store.
///
/// Like `git lfs env` and `dvc doctor`: what to paste into a bug report, and what is wrong. Exits
/// with status 1 when a check fails (a remote that does not answer or refuses the token, a hook
/// missing in a git repository, objects moved aside as corrupt with no good copy back yet).
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

pub fn run(ctx: &Ctx, a: DoctorArgs) -> Result<ExitCode> {
    let mut checks = vec![Check {
        what: "nshard".into(),
        ok: true,
        detail: format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    }];
    match ctx.repo() {
        Ok(repo) => repo_checks(ctx, &repo, &mut checks),
        Err(e) => checks.push(Check {
            what: "repository".into(),
            ok: false,
            detail: e.to_string(),
        }),
    }
    let failed = checks.iter().any(|c| !c.ok);
    if a.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            out!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.what,
                c.detail
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn repo_checks(ctx: &Ctx, repo: &Repo, checks: &mut Vec<Check>) {
    let mut push = |what: &str, ok: bool, detail: String| {
        checks.push(Check {
            what: what.into(),
            ok,
            detail,
        })
    };
    push(
        "repository",
        true,
        format!(
            "{} (store {})",
            repo.root().display(),
            repo.shard_dir().display()
        ),
    );
    for (level, path) in [
        ("shared config", repo.shard_dir().join("config.toml")),
        ("local config", repo.shard_dir().join("config.local.toml")),
    ] {
        let detail = if path.exists() {
            path.display().to_string()
        } else {
            format!("{} (none)", path.display())
        };
        push(level, true, detail);
    }
    if let Some(u) = ctx.user_config.as_ref() {
        let detail = if u.exists() {
            u.display().to_string()
        } else {
            format!("{} (none)", u.display())
        };
        push("user config", true, detail);
    }
    // Remotes: each one asked for its health, a few seconds at most.
    let remotes = repo.remotes();
    if remotes.is_empty() {
        push("remotes", true, "none configured".into());
    }
    for r in remotes.iter().filter(|r| r.overridden_by.is_none()) {
        let what = format!(
            "remote {}{}",
            r.name,
            if r.default { " (default)" } else { "" }
        );
        let result = repo
            .resolve_remote(Some(&r.name), &ctx.cwd)
            .map_err(anyhow::Error::from)
            .and_then(|res| {
                let opts = OpenOptions {
                    token: repo.token_for(&res, &env_tokens(&res)),
                    s3: s3_options(),
                };
                let token = opts.token.is_some();
                runtime()?.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(10), async {
                        let store = nshard_remote::open(&res.url, &opts).await?;
                        store.health().await?;
                        // The health check needs no credentials: one read that does (asking
                        // about an object no one stores) finds a missing or refused token.
                        store
                            .missing(&[nshard_core::ObjectId::of(b"nshard doctor")])
                            .await?;
                        Ok::<_, nshard_core::Error>(token)
                    })
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer within 10 s"))?
                    .map_err(anyhow::Error::from)
                })
            });
        match result {
            Ok(true) => push(
                &what,
                true,
                format!("{} reachable; its token is accepted for reading", r.url),
            ),
            Ok(false) => push(&what, true, format!("{} reachable and readable", r.url)),
            Err(e) => push(&what, false, format!("{}: {e}", r.url)),
        }
    }
    // Hooks, in a git repository.
    if repo.is_git_repo() {
        match GitTree::find(repo.root()).map(|t| t.installed_hooks()) {
            Some(Ok(hooks)) => {
                let missing: Vec<&str> = hooks
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(h, _)| *h)
                    .collect();
                if missing.is_empty() {
                    push(
                        "git hooks",
                        true,
                        "pre-push, post-checkout, post-merge, post-rewrite installed".into(),
                    );
                } else {
                    push(
                        "git hooks",
                        false,
                        format!(
                            "not installed: {} (run `nshard git-init`)",
                            missing.join(", ")
                        ),
                    );
                }
            }
            Some(Err(e)) => push("git hooks", false, e.to_string()),
            None => push("git hooks", false, "git cannot read this repository".into()),
        }
    } else {
        push("git hooks", true, "not a git repository".into());
    }
    // git-lfs's transfer agent, where `nshard lfs install` set it.
    if let Some(tree) = GitTree::find(repo.root()) {
        match nshard_core::git::lfs::agent_config(&tree.top) {
            Ok(Some((path, args))) if std::path::Path::new(&path).is_file() => {
                push("git-lfs agent", true, format!("{path} {args}"))
            }
            Ok(Some((path, _))) => push(
                "git-lfs agent",
                false,
                format!("{path} does not exist (moved?): run `nshard lfs install` again"),
            ),
            Ok(None) => push("git-lfs agent", true, "not installed".into()),
            Err(e) => push("git-lfs agent", false, e.to_string()),
        }
    }
    // The local store.
    match repo.store().list() {
        Ok(ids) => {
            let size: u64 = ids
                .iter()
                .filter_map(|id| repo.store().encoded_size(id))
                .sum();
            push(
                "local store",
                true,
                format!("{} objects, {}", ids.len(), bytes(size)),
            );
        }
        Err(e) => push("local store", false, e.to_string()),
    }
    // Older versions waiting to be re-encoded as deltas, and how the last background run ended.
    let pending = repo.pending_deltas();
    let last = std::fs::read_to_string(repo.deltas_dir().join("repack.log")).unwrap_or_default();
    if let Some(err) = last.trim().strip_prefix("error: ") {
        push(
            "deltas",
            false,
            format!("the last background repack failed: {err} (run `nshard repack` to retry)"),
        );
    } else if pending > 0 {
        let state = if repo.repack_running() {
            "a repack is running"
        } else {
            "run `nshard repack`"
        };
        push(
            "deltas",
            true,
            format!(
                "{} queued for re-encoding ({state})",
                count(pending as u64, "version")
            ),
        );
    }
    // Copies moved aside as corrupt: a problem while the store has no good copy in their place.
    let dir = repo.shard_dir().join("corrupt");
    let (mut replaced, mut lacking) = (0usize, 0usize);
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.get(..64))
            .and_then(|h| nshard_core::ObjectId::parse(h).ok());
        match id {
            Some(id) if repo.store().has(&id) && !repo.store().is_corrupt(&id) => replaced += 1,
            Some(_) => lacking += 1,
            None => {} // not a copy nshard moved aside (a note left there)
        }
    }
    if lacking > 0 {
        push(
            "corrupt objects",
            false,
            format!(
                "{lacking} moved aside to {} with no good copy in the store yet (`nshard verify`, then `nshard pull` fetches good copies)",
                dir.display()
            ),
        );
    } else if replaced > 0 {
        push(
            "corrupt objects",
            true,
            format!(
                "{replaced} moved aside to {} earlier; good copies are back in the store (the copies there can be deleted)",
                dir.display()
            ),
        );
    }
}
