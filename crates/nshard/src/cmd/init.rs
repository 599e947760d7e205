//! `nshard init` and `nshard git-init`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::repo::Repo;

use crate::out;
use crate::output::Ctx;

/// Create a NeuroShard repository (.shard/) in the current directory.
///
/// Running it again is harmless: an existing repository is left as it is.
#[derive(Args, Debug)]
pub struct InitArgs {}

/// Add .gitignore entries so that chunk data and caches never reach git.
///
/// Keeps `.shard/objects`, `.shard/cache`, `.shard/tmp` and every tracked data file out of git, while
/// `.shard/config.toml` and the `*.shard.json` manifests are committed. Fails outside a git repository.
#[derive(Args, Debug)]
pub struct GitInitArgs {}

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

pub fn run_git(ctx: &Ctx, _a: GitInitArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    repo.git_init()?;
    out!(
        "Updated {}: .shard/objects, cache, tmp and tracked data files are ignored;",
        repo.root().join(".gitignore").display()
    );
    out!("commit .shard/config.toml, .gitignore and the *.shard.json manifests to git.");
    Ok(ExitCode::SUCCESS)
}
