//! One module per command.

pub mod awsenv;
pub mod checkout;
pub mod commit;
pub mod completions;
pub mod diff;
pub mod dirs;
pub mod gc;
pub mod hook;
pub mod init;
pub mod log;
pub mod login;
pub mod pull;
pub mod push;
pub mod remote;
pub mod serve;
pub mod status;
pub mod track;
pub mod verify;

use std::path::Path;

use anyhow::Result;
use nshard_core::Repo;
use nshard_core::RepoPath;

/// Resolves a user argument naming a tracked file either by its data path or by its manifest
/// (`x.shard.json`) to the data path.
pub fn data_path(repo: &Repo, cwd: &Path, arg: &Path) -> Result<RepoPath> {
    let p = repo.resolve_user_path(cwd, arg)?;
    Ok(p.data_path_of_manifest().unwrap_or(p))
}

/// [`data_path`] for every argument.
pub fn data_paths(repo: &Repo, cwd: &Path, args: &[impl AsRef<Path>]) -> Result<Vec<RepoPath>> {
    args.iter()
        .map(|a| data_path(repo, cwd, a.as_ref()))
        .collect()
}
