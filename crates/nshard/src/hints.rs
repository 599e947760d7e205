//! What to do about a library error: the library says what is wrong, the binary (which knows its
//! commands and flags) says which command helps. Printed as `hint: …` after the error.

use nshard_core::{
    Error, GitError, LookupProblem, ManifestError, RemoteError, RepoError, StoreError, Untracked,
    VersionOrder,
};

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
            RepoError::EditedFromOther {
                path,
                edited_from,
                manifest_version,
                file_is,
            } => {
                let (f, m) = (edited_from.short(), manifest_version.short());
                let pull = if *file_is == VersionOrder::Older {
                    String::new()
                } else {
                    format!("`nshard pull {path} --all-versions` brings the versions in between; then ")
                };
                format!("{pull}`nshard diff {path} --from {f} --to {m}` shows what {m} changed; carry those changes into your file (or merge them) and `nshard commit --force`, or `nshard commit --force` to record your file as it is on top of {m}")
            }
            RepoError::UnitFromOlder(files) => {
                let nshard_core::FromOlderFiles {
                    unit,
                    stale,
                    edited,
                    removed,
                    created,
                    manifest_version,
                    unplaced,
                } = files.as_ref();
                let m = manifest_version.short();
                let mut steps = Vec::new();
                if *unplaced {
                    steps.push(format!(
                        "`nshard pull {unit}/ --all-versions` brings the versions in between"
                    ));
                }
                if !stale.is_empty() {
                    let words: Vec<String> = stale
                        .iter()
                        .take(10)
                        .map(|(p, _)| nshard_core::shell_word(&nshard_core::escape_path(p)))
                        .collect();
                    let more = if stale.len() > 10 {
                        format!(
                            " (and {} more: `nshard status {unit}/` lists them)",
                            stale.len() - 10
                        )
                    } else {
                        String::new()
                    };
                    steps.push(format!(
                        "`nshard checkout {}`{more} brings the files you did not edit up to date",
                        words.join(" ")
                    ));
                }
                // One diff per version the edited files were made on (usually one).
                let mut froms: Vec<nshard_core::ObjectId> = Vec::new();
                for (_, from) in edited {
                    if !froms.contains(from) {
                        froms.push(*from);
                    }
                }
                if !froms.is_empty() {
                    let diffs: Vec<String> = froms
                        .iter()
                        .take(3)
                        .map(|f| format!("`nshard diff {unit}/ --from {} --to {m}`", f.short()))
                        .collect();
                    let (shows, more) = match froms.len() {
                        1 => ("shows", String::new()),
                        n if n <= 3 => ("show", String::new()),
                        n => ("show", format!(" (and {} more versions)", n - 3)),
                    };
                    steps.push(format!(
                        "{}{more} {shows} what {m} changed: carry that into the edited files, then `nshard commit --force`",
                        diffs.join(", ")
                    ));
                }
                if let Some((first, _)) = removed.first() {
                    let more = match removed.len() {
                        1 => String::new(),
                        n => format!(" (and the {} other removed files)", n - 1),
                    };
                    steps.push(format!(
                        "`nshard checkout {}`{more} brings back {m}'s file you removed; to remove it all the same, `nshard commit --force`",
                        nshard_core::shell_word(&nshard_core::escape_path(first))
                    ));
                }
                if !created.is_empty() {
                    steps.push(format!(
                        "move the files created here aside and `nshard checkout` them to see {m}'s, then merge and `nshard commit --force`"
                    ));
                }
                if edited.is_empty() && created.is_empty() && removed.is_empty() {
                    steps.push(
                        "`nshard commit --force` records the files as they are (a revert of those changes)"
                            .to_string(),
                    );
                }
                steps.join("; ")
            }
            RepoError::FileChangedDuringRead(_) => {
                "run `nshard commit` again once the file is stable".into()
            }
            RepoError::WouldOverwrite(_) => {
                "`nshard commit` keeps the changes (`nshard status` marks any it would refuse as taking back a newer version's); `--force` overwrites them".into()
            }
            RepoError::NothingSelected => "`nshard status` lists the files".into(),
            RepoError::HistoryUnreadable { .. } => {
                "run `nshard verify`, or `nshard gc --only-current` to keep only the current versions".into()
            }
            RepoError::ChunksMissing { .. } => {
                "run `nshard pull` first (`nshard pull --all-versions` for older versions)".into()
            }
            RepoError::NotTracked { path, reason } => {
                let p = path.display();
                match reason {
                    Untracked::File => format!("run `nshard track {p}` first"),
                    Untracked::Unit => format!("run `nshard track --dir {p}` first"),
                    Untracked::ThroughEntry => {
                        "untrack that entry (`nshard untrack` with the entry as written in .shard/config.toml)".into()
                    }
                    Untracked::NoManifest => {
                        "commit it with `nshard commit`, or get its manifest with git".into()
                    }
                    Untracked::NotInWorkTree => "compare stored versions with --from and --to, or run `nshard checkout` first".into(),
                    Untracked::NotADirectory => "--dir versions a directory as one unit; track a file without it".into(),
                    _ => return None,
                }
            }
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
            // `--remote localhost:8000`: a server's address without its scheme.
            RemoteError::Unknown { name, .. } if looks_like_host(name) => {
                format!("to reach a NeuroShard server, give its URL: `--remote http://{name}`")
            }
            RemoteError::Unknown { name, .. } => format!(
                "add it with `nshard remote add {name} URL`, or write a directory as ./{name}"
            ),
            RemoteError::Exists(name) => {
                format!("remove it first with `nshard remote remove {name}`")
            }
            _ => return None,
        },
        Error::Git(GitError::NotAGitRepo(_)) => "run `git init` first".into(),
        Error::Manifest(ManifestError::ConflictMarkers(path)) => {
            let f = path.display();
            format!("keep one side with `git checkout --theirs {f}` (or `--ours`) and `git add {f}`, then run `nshard checkout` (`nshard pull --checkout` if that side's data is not here)")
        }
        // Damaged on a remote (nothing was stored here): a pull again would get the same copy.
        Error::Store(StoreError::CorruptObject { reason, .. })
            if reason.contains("(as received from ") =>
        {
            "the remote's copy is damaged: `nshard verify --remote` lists every damaged object there, and run from a clone that holds this version uploads good copies".into()
        }
        Error::Store(StoreError::CorruptObject { .. }) => {
            "`nshard pull` fetches a good copy, or `nshard commit` re-stores it from an intact file".into()
        }
        Error::Store(StoreError::ObjectMissing(_)) => {
            "`nshard pull` fetches what the current versions need; `nshard pull FILE --version ID` an older version (or says that the remote's retention pruned it), `nshard pull --all-versions` every one".into()
        }
        Error::Store(StoreError::BaseMissing { .. }) => {
            "the base is a chunk of a newer version: `nshard pull --all-versions` fetches it".into()
        }
        Error::Store(StoreError::UnsupportedFormat { .. }) => {
            "this store was written by a newer nshard; install the newer version (nothing was changed)".into()
        }
        _ => return None,
    })
}

/// Whether a remote name is really a host, `HOST:PORT` or `localhost`.
fn looks_like_host(name: &str) -> bool {
    name == "localhost"
        || name
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// The advice for the first error in `e`'s chain that has one (a library error, or the server's
/// refusal to start).
pub fn hint_chain(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        if let Some(e) = c.downcast_ref::<Error>() {
            return hint(e);
        }
        match c.downcast_ref::<nshard_server::ServeError>() {
            Some(nshard_server::ServeError::NoTokens { .. }) => Some(
                "give tokens (--tokens FILE or NSHARD_SERVE_TOKENS), or --allow-anonymous-read for a public read-only server, or listen on 127.0.0.1".into(),
            ),
            _ => None,
        }
    })
}
