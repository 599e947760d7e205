//! The library's error type. Every variant names its subject (a path, an object id, the expected
//! and actual values) so that the binary can print a message a user can act on.

use std::io;
use std::path::PathBuf;

use crate::id::ObjectId;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a corrupt object, for callers that act on it (quarantine, re-fetch, refuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Corruption {
    /// The header is truncated or names an unknown format version or codec.
    BadHeader,
    /// The object is larger, or declares more raw bytes, than any object may.
    TooLarge,
    /// The payload does not decode to the declared length.
    Undecodable,
    /// The decoded bytes hash to another id.
    HashMismatch,
    /// The decoded bytes are not as long as the manifest says the chunk is.
    WrongSize,
    /// Where the object should be there is no regular file (a symlink, a directory, a FIFO).
    NotRegularFile,
    /// A server checked its own copy and reported it corrupt (protocol v1 does not say how).
    RemoteCopy,
}

/// What kind of failure a remote reported, for callers that act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RemoteFailure {
    /// Credentials are missing or were refused (HTTP 401, S3 access denied).
    Unauthorized,
    /// Credentials were accepted but do not allow this (HTTP 403).
    Forbidden,
    /// The remote itself (a directory, a bucket) does not exist.
    NotFound,
    /// Not a NeuroShard remote, or one speaking another protocol version.
    Incompatible,
    /// The remote refused the request as given (another 4xx, an object over its limit).
    Refused,
    /// The client could not be set up, or the remote answered something unexpected.
    Other,
}

/// How the version a file holds relates to the version its manifest names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum VersionOrder {
    /// An ancestor of the manifest's version.
    Older,
    /// A descendant of the manifest's version.
    Newer,
    /// Neither, as far as the local store shows (another branch, or history not pulled).
    Unrelated,
}

/// Everything that can go wrong in `nshard-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No `.shard/` directory was found in the directory or any parent.
    #[error("not a NeuroShard repository (or any parent up to /): {0}\nhint: run `nshard init` to create one here")]
    NotARepo(PathBuf),
    /// A string that should be a 64-hex object id is not one.
    #[error(transparent)]
    InvalidId(#[from] crate::id::InvalidId),
    /// A version prefix matched nothing or several versions.
    #[error("version {prefix:?} {problem}")]
    VersionLookup {
        /// The prefix the user typed.
        prefix: String,
        /// "matches no stored version of …" or "is ambiguous: …".
        problem: String,
    },
    /// An object in a store failed decoding or its hash does not match its id.
    #[error("object {id} is corrupt: {reason}")]
    CorruptObject {
        /// The object's id.
        id: ObjectId,
        /// What kind of damage.
        kind: Corruption,
        /// What is wrong with it, for a person.
        reason: String,
    },
    /// An object is not in the store.
    #[error("object {0} is missing from the store")]
    ObjectMissing(ObjectId),
    /// A manifest failed validation.
    #[error("invalid manifest {path}: {reason}")]
    InvalidManifest {
        /// Where the manifest came from.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A path given by the user or found in a manifest is not acceptable.
    #[error("refusing path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// `.shard/config.toml` cannot be read or is invalid.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file changed size, mtime or content while it was being read for a commit.
    #[error("{0} changed while it was being read; it was not committed (run commit again once it is stable)")]
    FileChangedDuringRead(PathBuf),
    /// A file holds another committed version than its manifest names; committing it would
    /// record that version's data again as the newest one.
    #[error("{path} holds version {}, {}", file_version.short(), outdated_advice(*file_is, manifest_version))]
    Outdated {
        /// The data file.
        path: String,
        /// The version the file holds.
        file_version: ObjectId,
        /// The version its manifest names.
        manifest_version: ObjectId,
        /// How the file's version relates to the manifest's.
        file_is: VersionOrder,
    },
    /// `--version`, `--from` or `--to` was given for several files or units at once.
    #[error("a version belongs to one file's or one directory's history: name exactly one file or directory")]
    VersionNeedsOneTarget,
    /// Checkout would overwrite local changes.
    #[error("{0} has local changes that are not committed; use --force to overwrite them")]
    WouldOverwrite(PathBuf),
    /// The rebuilt file does not hash to what its manifest says.
    #[error("{path}: rebuilt file hashes to {actual}, manifest says {expected}")]
    FileHashMismatch {
        /// The file being rebuilt.
        path: PathBuf,
        /// Hash from the manifest.
        expected: ObjectId,
        /// Hash of the rebuilt bytes.
        actual: ObjectId,
    },
    /// A path the user named is not tracked / has no manifest.
    #[error("{path}: {reason}")]
    NotTracked {
        /// The path.
        path: PathBuf,
        /// Explanation.
        reason: &'static str,
    },
    /// The repository is not inside a git work tree (for `git-init`).
    #[error("{0} is not inside a git repository; run `git init` first")]
    NotAGitRepo(PathBuf),
    /// Reading git failed (gc then deletes nothing: it cannot know what git references).
    #[error("reading git failed: {0}")]
    Git(String),
    /// The directories or globs given select no manifest.
    #[error(
        "the given directories and patterns match no manifest (`nshard status` lists the files)"
    )]
    NothingSelected,
    /// A git hook file could not be installed or removed as asked.
    #[error("git hook {path}: {reason}")]
    Hook {
        /// The hook file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the repository lock.
    #[error("repository is locked by another nshard process ({0}); try again when it finishes")]
    Locked(PathBuf),
    /// A version in a file's history cannot be read, so gc cannot tell what it references.
    #[error("{path}: version {version} cannot be read ({reason}); gc cannot tell which objects it needs, so nothing was deleted. Run `nshard verify`, or `nshard gc --only-current` to keep only the current versions")]
    HistoryUnreadable {
        /// The data file whose history it is.
        path: PathBuf,
        /// The unreadable version.
        version: ObjectId,
        /// Why it cannot be read.
        reason: String,
    },
    /// Chunks a file needs are not in the local store.
    #[error("{path}: {count} of its chunks are not in the local store (first: {first}); run `nshard pull` first")]
    ChunksMissing {
        /// The data file.
        path: String,
        /// How many distinct chunks are missing.
        count: usize,
        /// The first missing chunk.
        first: ObjectId,
    },
    /// A remote operation failed.
    #[error("remote {remote}: {reason}")]
    Remote {
        /// The remote's URL or name.
        remote: String,
        /// What kind of failure.
        kind: RemoteFailure,
        /// What went wrong, for a person.
        reason: String,
    },
    /// A remote request failed in a way that may succeed when retried (a dropped connection, a
    /// timeout, a server that is busy or restarting). Transfers retry these with backoff.
    #[error("remote {remote}: {reason}")]
    RemoteTransient {
        /// The remote's URL.
        remote: String,
        /// What went wrong.
        reason: String,
    },
    /// A remote name is not acceptable.
    #[error("invalid remote name {name:?}: {reason}")]
    InvalidRemoteName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A remote URL cannot be parsed or is not acceptable.
    #[error("invalid remote URL {url:?}: {reason}")]
    InvalidRemoteUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A remote URL names a backend this build cannot use.
    #[error("remote {url}: {reason}")]
    RemoteUnsupported {
        /// The URL.
        url: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// `--remote` was not given and no default remote is configured.
    #[error("no remote given and no default remote configured\nhint: add one with `nshard remote add NAME URL` (e.g. a directory: `nshard remote add origin /srv/models`) or pass `--remote URL`")]
    NoRemote,
    /// A remote name is not configured.
    #[error("no remote named {name:?} (configured: {known}); add it with `nshard remote add {name} URL`, or write a directory as ./{name}")]
    UnknownRemote {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated, or "none".
        known: String,
    },
    /// `remote add` of a name that is already configured.
    #[error(
        "a remote named {0:?} already exists; remove it first with `nshard remote remove {0}`"
    )]
    RemoteExists(String),
    /// A remote name is not configured at the config level asked for.
    #[error("no remote named {name:?} in the {level} config")]
    RemoteNotAtLevel {
        /// The name.
        name: String,
        /// The level (`user`, `shared`, `local`).
        level: &'static str,
    },
    /// The user's config file is needed but its location is unknown.
    #[error("cannot locate your user config file: set XDG_CONFIG_HOME or HOME")]
    NoUserConfig,
    /// A token given to `nshard login` is not acceptable.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why it was refused.
        reason: &'static str,
    },
    /// The remote lacks objects a pull needs.
    #[error("remote {remote} lacks {} object(s) needed for {subject}: {}{}", missing.len(), list_ids(missing), if missing.len() > MAX_LISTED { " …" } else { "" })]
    RemoteLacks {
        /// The remote's URL.
        remote: String,
        /// What needed them (a file, a version).
        subject: String,
        /// The absent objects.
        missing: Vec<ObjectId>,
    },
}

fn outdated_advice(order: VersionOrder, manifest: &ObjectId) -> String {
    let m = manifest.short();
    match order {
        VersionOrder::Older => format!(
            "older than the version its manifest names ({m}): run `nshard checkout` to update the file, or `nshard commit --force` to record the older content as the newest version (a revert)"
        ),
        VersionOrder::Newer => format!(
            "newer than the version its manifest names ({m}, e.g. after `git checkout` of an older commit): run `nshard checkout` to make the file match the manifest; `nshard commit --force` would record this data again as a new version on top of {m}"
        ),
        VersionOrder::Unrelated => format!(
            "which is not in the history of the version its manifest names ({m}): run `nshard checkout` to make the file match the manifest, or `nshard commit --force` to record its content as a new version on top of {m}"
        ),
    }
}

/// How many ids an error message lists before eliding the rest.
const MAX_LISTED: usize = 5;

fn list_ids(ids: &[ObjectId]) -> String {
    ids.iter()
        .take(MAX_LISTED)
        .map(|i| i.to_hex())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// Whether retrying the operation may succeed: a transient remote failure, or an I/O error of a
    /// kind that networks and network filesystems produce and then recover from.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::RemoteTransient { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }

    /// An [`Error::CorruptObject`].
    pub fn corrupt(id: ObjectId, kind: Corruption, reason: impl Into<String>) -> Error {
        Error::CorruptObject {
            id,
            kind,
            reason: reason.into(),
        }
    }

    /// An [`Error::Remote`].
    pub fn remote(
        remote: impl Into<String>,
        kind: RemoteFailure,
        reason: impl Into<String>,
    ) -> Error {
        Error::Remote {
            remote: remote.into(),
            kind,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
