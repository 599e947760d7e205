//! `nshard init` and `nshard git-init`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::git::HookAction;
use nshard_core::Repo;

use crate::out;
use crate::output::Ctx;

/// Create a NeuroShard repository (.shard/) in the current directory.
///
/// Running it again is harmless: an existing repository is left as it is.
#[derive(Args, Debug)]
pub struct InitArgs {}

/// Connect git and NeuroShard: .gitignore entries and git hooks.
///
/// Writes a managed block into `.gitignore` so that `.shard/objects`, `.shard/cache`, `.shard/tmp`
/// and every tracked data file (tracked directories and globs as patterns, so files saved there
/// later are ignored too) never reach git, while `.shard/config.toml` and the `*.shard.json`
/// manifests are committed.
///
/// Then installs git hooks (unless --no-hooks): `pre-push` sends the data of every manifest
/// version in the commits being pushed to the default remote and refuses the git push if that
/// fails; `post-checkout`, `post-merge` and `post-rewrite` pull and check out the files whose
/// manifests changed, never overwriting uncommitted changes. Hooks go where git looks for them
/// (`core.hooksPath` is honoured); a hook already there is kept as `NAME.nshard-chained` and
/// still runs first. Fails outside a git repository.
#[derive(Args, Debug)]
pub struct GitInitArgs {
    /// Only write .gitignore; install no hooks.
    #[arg(long, conflicts_with = "uninstall_hooks")]
    pub no_hooks: bool,
    /// Remove NeuroShard's hooks (putting back the hooks they chained) and exit.
    #[arg(long)]
    pub uninstall_hooks: bool,
}

pub fn run(ctx: &Ctx, _a: InitArgs) -> Result<ExitCode> {
    let (repo, created) = Repo::init(&ctx.cwd)?;
    let dir = repo.shard_dir().display();
    if created {
        out!("Initialized empty NeuroShard repository in {dir}");
        out!("next: `nshard track <file>` then `nshard commit -m <message>`");
    } else {
        out!("NeuroShard repository already initialized in {dir} (nothing changed)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_git(ctx: &Ctx, a: GitInitArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let tree = repo.git_tree()?;
    if a.uninstall_hooks {
        for h in tree.uninstall_hooks()? {
            let what = match h.action {
                HookAction::Removed => "removed".to_string(),
                HookAction::Restored => "removed; the hook it chained is back in place".to_string(),
                _ => "not NeuroShard's; left alone".to_string(),
            };
            if h.action != HookAction::Absent || h.path.exists() {
                out!("{}: {what}", h.path.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let gitignore = repo.root().join(".gitignore");
    // The store stays out of git also on commits from before nshard was set up (where git
    // removes .shard/.gitignore from the work tree): the clone's own .git/info/exclude.
    repo.exclude_local_store()?;
    if repo.sync_gitignore()? {
        out!(
            "Updated {}: .shard/objects, cache, tmp and tracked data are ignored;",
            gitignore.display()
        );
    } else {
        out!(
            "{} is up to date: .shard/objects, cache, tmp and tracked data are ignored;",
            gitignore.display()
        );
    }
    out!("commit .shard/config.toml, .gitignore and the *.shard.json manifests to git.");
    if a.no_hooks {
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().ok();
    for h in tree.install_hooks(exe.as_deref())? {
        match &h.action {
            HookAction::Installed => out!("installed hook {}", h.path.display()),
            HookAction::Current => out!("hook {} is up to date", h.path.display()),
            HookAction::Chained { kept_as } => out!(
                "installed hook {}; the existing hook was kept as {} and still runs first",
                h.path.display(),
                kept_as.display()
            ),
            _ => {}
        }
    }
    if repo.resolve_remote(None, &ctx.cwd).is_err() {
        out!("no default remote yet: `git push` will not send data until you run `nshard remote add NAME URL`");
    }
    Ok(ExitCode::SUCCESS)
}
