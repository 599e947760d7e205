//! `nshard init` and `nshard git-init`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::repo::Repo;

use crate::out;
use crate::output::Ctx;

/// Create a NeuroShard repository here. Running it again is harmless.
#[derive(Args, Debug)]
pub struct InitArgs {}

/// Add the `.gitignore` entries that keep `.shard/objects`, `.shard/cache` and `.shard/tmp` (and
/// tracked data files) out of git, while `.shard/config.toml` and manifests are committed.
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
