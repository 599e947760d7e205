//! What to do about a library error: the library says what is wrong, the binary (which knows its
//! commands and flags) says which command helps. Printed as `hint: …` after the error.

use nshard_core::{Error, GitError, LookupProblem, RemoteError, RepoError, VersionOrder};

/// The advice for `e`, if there is a command or flag that helps.
pub fn hint(e: &Error) -> Option<String> {
    Some(match e {
        Error::Repo(r) => match r {
            RepoError::NotARepo(_) => "run `nshard init` to create one here".into(),
            RepoError::Outdated {
                file_is,
                manifest_version,
                ..
            } => {
                let m = manifest_version.short();
                match file_is {
                    VersionOrder::Older => "run `nshard checkout` to update the file, or `nshard commit --force` to record the older content as the newest version (a revert)".into(),
                    VersionOrder::Newer => format!("after `git checkout` of an older commit: run `nshard checkout` to make the file match the manifest; `nshard commit --force` would record this data again as a new version on top of {m}"),
                    _ => format!("run `nshard checkout` to make the file match the manifest, or `nshard commit --force` to record its content as a new version on top of {m}"),
                }
            }
            RepoError::FileChangedDuringRead(_) => {
                "run `nshard commit` again once the file is stable".into()
            }
            RepoError::WouldOverwrite(_) => {
                "`nshard commit` keeps the changes; use --force to overwrite them".into()
            }
            RepoError::NothingSelected => "`nshard status` lists the files".into(),
            RepoError::HistoryUnreadable { .. } => {
                "run `nshard verify`, or `nshard gc --only-current` to keep only the current versions".into()
            }
            RepoError::ChunksMissing { .. } => "run `nshard pull` first".into(),
            RepoError::VersionLookup { problem, .. } => match problem {
                LookupProblem::NoMatch {
                    unreachable: Some(_),
                    ..
                } => "run `nshard pull --all-versions` to fetch older history from a remote".into(),
                LookupProblem::ParentNotLocal(_) => {
                    "pass --from to choose what to compare it with".into()
                }
                LookupProblem::UnitVersion => {
                    "pull the unit's current version, or check out an older git commit".into()
                }
                _ => return None,
            },
            _ => return None,
        },
        Error::Remote(r) => match r {
            RemoteError::NoRemote => "add one with `nshard remote add NAME URL` (e.g. a directory: `nshard remote add origin /srv/models`) or pass `--remote URL`".into(),
            RemoteError::Unknown { name, .. } => format!(
                "add it with `nshard remote add {name} URL`, or write a directory as ./{name}"
            ),
            RemoteError::Exists(name) => {
                format!("remove it first with `nshard remote remove {name}`")
            }
            _ => return None,
        },
        Error::Git(GitError::NotAGitRepo(_)) => "run `git init` first".into(),
        _ => return None,
    })
}
