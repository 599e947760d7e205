//! The library's errors, one enum per area (the store, manifests, the repository and its work
//! tree, remotes, git), wrapped by [`Error`]. Every variant names its subject (a path, an object
//! id, the expected and actual values) and says what is wrong; what to do about it (which command
//! to run) is the binary's to say, since only it knows its commands and flags.

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
    /// A delta object's chain is malformed: the object is its own base, the chain runs in a
    /// cycle or past [`crate::codec::MAX_CHAIN`] deltas, or the base has another size.
    BadChain,
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

/// Everything that can go wrong in `nshard-core`: an I/O failure on a named path, or an error of
/// one area.
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
    /// Objects: missing or corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Manifests, paths and ids that come from outside.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The repository, its work tree, config and version history.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Remotes: naming, reaching, and what they answered.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reading git and installing hooks.
    #[error(transparent)]
    Git(#[from] GitError),
}

impl From<crate::id::InvalidId> for Error {
    fn from(e: crate::id::InvalidId) -> Error {
        Error::Manifest(ManifestError::InvalidId(e))
    }
}

/// Objects in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An object failed decoding or its hash does not match its id.
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
    /// An object written by a newer nshard, in a format or codec this one does not know. Not
    /// damage: nothing quarantines it.
    #[error("object {id} uses an unsupported object format (version {version}, codec {codec}): upgrade nshard")]
    UnsupportedFormat {
        /// The object's id.
        id: ObjectId,
        /// The format version byte.
        version: u8,
        /// The codec byte.
        codec: u8,
    },
    /// A delta object whose base is not in the store.
    #[error("object {id} is stored as a delta against {base}, which is missing from the store")]
    BaseMissing {
        /// The delta object.
        id: ObjectId,
        /// Its missing base.
        base: ObjectId,
    },
    /// A delta object met where it cannot be decoded: without a store to read its base from
    /// (remotes accept standalone objects only).
    #[error("object {id} is a delta against {base}; only standalone objects are accepted here")]
    DeltaNeedsBase {
        /// The delta object.
        id: ObjectId,
        /// Its base.
        base: ObjectId,
    },
}

/// Manifests, paths and ids that come from outside (other people's commits, the command line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A manifest holds git conflict markers (an unfinished merge).
    #[error("invalid manifest {0}: it holds git conflict markers (an unfinished merge)")]
    ConflictMarkers(PathBuf),
    /// A manifest failed validation.
    #[error("invalid manifest {path}: {reason}")]
    InvalidManifest {
        /// Where the manifest came from.
        path: PathBuf,
        /// Which rule it breaks.
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
    /// A string that should be a 64-hex object id is not one.
    #[error(transparent)]
    InvalidId(crate::id::InvalidId),
}

/// Why a version id or prefix names no single version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupProblem {
    /// Not 4 to 64 hex characters.
    #[error("is not a version id (4 to 64 hex characters)")]
    NotAnId,
    /// No version of `subject`'s history (as far as the local store has it) starts with it.
    #[error("matches no version in the history of {subject}{}", match unreachable {
        Some(v) => format!(" that is in the local store (version {} is not)", v.short()),
        None => String::new(),
    })]
    NoMatch {
        /// The file or unit.
        subject: String,
        /// The first version of the history that is not in the local store, if the walk
        /// stopped there.
        unreachable: Option<ObjectId>,
    },
    /// Several versions start with it.
    #[error("is ambiguous: {}", .0.iter().map(|v| v.short()).collect::<Vec<_>>().join(", "))]
    Ambiguous(Vec<ObjectId>),
    /// The version's parent, needed as the other side of a diff, is not in the local store.
    #[error("has a parent ({}) that is not in the local store", .0.short())]
    ParentNotLocal(ObjectId),
    /// Versions of directory units are pulled with their unit, not one by one.
    #[error("cannot be pulled for a directory unit")]
    UnitVersion,
    /// The version is deeper in `subject`'s history than a pull follows.
    #[error("is too deep in the history of {0} to pull")]
    TooDeep(String),
    /// A pull walked `subject`'s history through the remote and found no such version before
    /// the history stopped at `at`, a version neither the local store nor the remote has.
    #[error("matches no version in the history of {subject} as far as the remote has it (its history stops at version {}, which neither the local store nor the remote has)", .at.short())]
    BeyondRemoteHistory {
        /// The file.
        subject: String,
        /// The first version the walk could not fetch.
        at: ObjectId,
    },
}

/// The repository, its work tree, config and version history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No `.shard/` directory was found in the directory or any parent.
    #[error("not a NeuroShard repository (or any parent up to /): {0}")]
    NotARepo(PathBuf),
    /// A version id or prefix names no single version.
    #[error("version {prefix:?} {problem}")]
    VersionLookup {
        /// The id or prefix given.
        prefix: String,
        /// What is wrong with it.
        problem: LookupProblem,
    },
    /// A config file cannot be read or is invalid.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file changed size, mtime or content while it was being read for a commit.
    #[error("{0} changed while it was being read; it was not committed")]
    FileChangedDuringRead(PathBuf),
    /// A file holds another committed version than its manifest names; committing it would
    /// record that version's data again as the newest one.
    #[error("{path} holds version {}, {} the version its manifest names ({})", file_version.short(), match file_is {
        VersionOrder::Older => "older than",
        VersionOrder::Newer => "newer than",
        VersionOrder::Unrelated => "which is not in the local history of",
    }, manifest_version.short())]
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
    /// A file was edited from another committed version than its manifest names (a `git pull` or
    /// branch switch brought a new manifest while the edits kept the file): committing it would
    /// record the edits on top of the manifest's version and silently undo that version's changes.
    #[error("{path} was edited from version {}, {} the version its manifest names now ({}): committing it would undo the changes of {}", edited_from.short(), match file_is {
        VersionOrder::Older => "older than",
        VersionOrder::Newer => "newer than",
        VersionOrder::Unrelated => "which is not in the local history of",
    }, manifest_version.short(), manifest_version.short())]
    // Never raised for `Newer`: a file edited from a newer version holds the manifest's changes.
    EditedFromOther {
        /// The data file.
        path: String,
        /// The version the file held before it was edited.
        edited_from: ObjectId,
        /// The version its manifest names.
        manifest_version: ObjectId,
        /// How the edited version relates to the manifest's.
        file_is: VersionOrder,
    },
    /// Files of a directory unit hold, or were edited from, an older version of the unit than its
    /// manifest names (or one its local history does not reach), where that version changed
    /// them since: committing them would take those changes back.
    #[error("{}", unit_from_older(.0))]
    UnitFromOlder(Box<FromOlderFiles>),
    /// `--version`, `--from` or `--to` was given for several files or units at once.
    #[error("a version belongs to one file's or one directory's history: name exactly one file or directory")]
    VersionNeedsOneTarget,
    /// Checkout would overwrite local changes.
    #[error("{0} has local changes that are not committed")]
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
    /// A path the user named is not tracked, has no manifest, or is not what the command needs.
    #[error("{path}: {reason}")]
    NotTracked {
        /// The path.
        path: PathBuf,
        /// What is missing.
        reason: Untracked,
    },
    /// The directories or globs given select no manifest.
    #[error("the given directories and patterns match no manifest")]
    NothingSelected,
    /// Another process holds the repository lock.
    #[error("repository is locked by another nshard process ({0}); try again when it finishes")]
    Locked(PathBuf),
    /// A version in a file's history cannot be read, so gc cannot tell what it references.
    #[error("{path}: version {version} cannot be read ({reason}); gc cannot tell which objects it needs, so nothing was deleted")]
    HistoryUnreadable {
        /// The data file whose history it is.
        path: PathBuf,
        /// The unreadable version.
        version: ObjectId,
        /// Why it cannot be read.
        reason: String,
    },
    /// A directory unit holds names that would make an unreadable or ambiguous version (case
    /// twins, a file where a directory must be, names equal once Unicode-normalised).
    #[error("cannot commit {unit}/: {reason}")]
    UnitNames {
        /// The unit's directory.
        unit: String,
        /// Which names, and why.
        reason: String,
    },
    /// A part of a directory unit named for checkout matches no file of the version checked out
    /// and none in the work tree (a typo, or a part that version does not have).
    #[error("{path} matches no file of {unit}/ in its version {}", version.short())]
    NoSuchPart {
        /// The part, from the repository root.
        path: String,
        /// The unit.
        unit: String,
        /// The version checked out.
        version: ObjectId,
    },
    /// A command for single tracked files was given a directory unit or a path inside one.
    #[error("{path} {reason}")]
    InUnit {
        /// The path given.
        path: String,
        /// Which unit, and what to do instead.
        reason: String,
    },
    /// Chunks a file needs are not in the local store.
    #[error("{path}: {count} of its chunks are not in the local store (first: {first})")]
    ChunksMissing {
        /// The data file.
        path: String,
        /// How many distinct chunks are missing.
        count: usize,
        /// The first missing chunk.
        first: ObjectId,
    },
}

/// Why a path cannot be worked on as asked ([`RepoError::NotTracked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Untracked {
    /// No tracked entry matches the file.
    #[error("is not tracked")]
    File,
    /// The directory is not tracked as a unit.
    #[error("is not tracked as a directory unit")]
    Unit,
    /// Tracked through a directory or glob entry, which is what must be untracked.
    #[error("is tracked through a directory or glob entry of .shard/config.toml")]
    ThroughEntry,
    /// There is no manifest (never committed, or not pulled with git).
    #[error("has no manifest: it was never committed here")]
    NoManifest,
    /// A directory unit with no committed version.
    #[error("has no committed version to compare with")]
    NoVersion,
    /// The data file is not in the work tree.
    #[error("is not in the work tree")]
    NotInWorkTree,
    /// An empty or missing directory: nothing to commit.
    #[error("is an empty or missing directory; nothing to commit")]
    EmptyDirectory,
    /// `--dir` names something that is not a directory.
    #[error("is not a directory")]
    NotADirectory,
}

/// Remotes: naming them, reaching them, and what they answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A remote operation failed.
    #[error("remote {remote}: {reason}")]
    Failed {
        /// The remote's URL or name.
        remote: String,
        /// What kind of failure.
        kind: RemoteFailure,
        /// What went wrong, for a person (often the remote's own words).
        reason: String,
    },
    /// A remote request failed in a way that may succeed when retried (a dropped connection, a
    /// timeout, a server that is busy or restarting). Transfers retry these with backoff.
    #[error("remote {remote}: {reason}")]
    Transient {
        /// The remote's URL.
        remote: String,
        /// What went wrong.
        reason: String,
    },
    /// A remote name is not acceptable.
    #[error("invalid remote name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A remote URL cannot be parsed or is not acceptable.
    #[error("invalid remote URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A remote URL names a backend this build cannot use.
    #[error("remote {url}: {reason}")]
    Unsupported {
        /// The URL.
        url: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// No remote was named and no default remote is configured.
    #[error("no remote given and no default remote configured")]
    NoRemote,
    /// A remote name is not configured.
    #[error("no remote named {name:?} (configured: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated, or "none".
        known: String,
    },
    /// Adding a remote whose name is already configured.
    #[error("a remote named {0:?} already exists")]
    Exists(String),
    /// A remote name is not configured at the config level asked for.
    #[error("no remote named {name:?} in the {level} config")]
    NotAtLevel {
        /// The name.
        name: String,
        /// The level (`user`, `shared`, `local`).
        level: &'static str,
    },
    /// The user's config file is needed but its location is unknown.
    #[error("cannot locate your user config file: set XDG_CONFIG_HOME or HOME")]
    NoUserConfig,
    /// A token is not acceptable.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why it was refused.
        reason: &'static str,
    },
    /// The remote lacks objects a pull needs.
    #[error("remote {remote} lacks {} object(s) needed for {subject}: {}{}", missing.len(), list_ids(missing), if missing.len() > MAX_LISTED { " …" } else { "" })]
    Lacks {
        /// The remote's URL.
        remote: String,
        /// What needed them (a file, a version).
        subject: String,
        /// The absent objects.
        missing: Vec<ObjectId>,
    },
    /// A version is gone from the remote because its retention policy pruned it (not corruption).
    #[error("{subject} was pruned from the remote {remote} by retention ({}); it cannot be pulled from there", pruned_when(*pruned))]
    Pruned {
        /// The remote's URL.
        remote: String,
        /// The file and version.
        subject: String,
        /// When it was pruned (seconds since the epoch).
        pruned: u64,
    },
}

/// "on 2026-12-05" for a time in seconds since the epoch.
/// The files of [`RepoError::UnitFromOlder`].
#[derive(Debug)]
pub struct FromOlderFiles {
    /// The unit's directory.
    pub unit: String,
    /// Files (paths from the repository root) that hold the bytes of the version they last held
    /// as they were, with that version.
    pub stale: Vec<(String, ObjectId)>,
    /// Files edited from the version they last held, with that version.
    pub edited: Vec<(String, ObjectId)>,
    /// Files removed here since the version they last held, with that version.
    pub removed: Vec<(String, ObjectId)>,
    /// Files created here where the unit's version has another file.
    pub created: Vec<String>,
    /// The version the unit's manifest names.
    pub manifest_version: ObjectId,
    /// Whether the local history leaves some of those versions unplaced (not shown older than
    /// the manifest's: versions in between not pulled, or another line of history).
    pub unplaced: bool,
}

/// The message of [`RepoError::UnitFromOlder`].
fn unit_from_older(f: &FromOlderFiles) -> String {
    let m = f.manifest_version.short();
    let n = f.stale.len() + f.edited.len() + f.removed.len() + f.created.len();
    let mut named: Vec<String> = f
        .stale
        .iter()
        .map(|(p, v)| format!("{p} (holds the bytes of version {})", v.short()))
        .chain(
            f.edited
                .iter()
                .map(|(p, v)| format!("{p} (edited from version {})", v.short())),
        )
        .chain(
            f.removed
                .iter()
                .map(|(p, v)| format!("{p} (removed here from version {})", v.short())),
        )
        .chain(
            f.created
                .iter()
                .map(|p| format!("{p} (created here; {m} has another file there)")),
        )
        .take(5)
        .collect();
    if n > named.len() {
        named.push(format!("and {} more", n - named.len()));
    }
    let unplaced = if f.unplaced {
        format!(" (the local history does not show all those versions older than {m}: the versions in between may not be here, or they are on another line of history)")
    } else {
        String::new()
    };
    format!(
        "{n} file(s) of {}/ would take back what its version {m} changed: {}{unplaced}",
        f.unit,
        named.join(", ")
    )
}

fn pruned_when(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .map(|t| format!("`nshard remote gc --keep-last`, on {}", t.date()))
        .unwrap_or_else(|_| "`nshard remote gc --keep-last`".into())
}

/// Reading git, and installing hooks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The repository is not inside a git work tree.
    #[error("{0} is not inside a git repository")]
    NotAGitRepo(PathBuf),
    /// Running or reading git failed (gc then deletes nothing: it cannot know what git
    /// references).
    #[error("reading git failed: {0}")]
    Command(String),
    /// A git hook file could not be installed or removed as asked.
    #[error("git hook {path}: {reason}")]
    Hook {
        /// The hook file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
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
            Error::Remote(RemoteError::Transient { .. }) => true,
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

    /// A [`StoreError::CorruptObject`].
    pub fn corrupt(id: ObjectId, kind: Corruption, reason: impl Into<String>) -> Error {
        Error::Store(StoreError::CorruptObject {
            id,
            kind,
            reason: reason.into(),
        })
    }

    /// A [`RemoteError::Failed`].
    pub fn remote(
        remote: impl Into<String>,
        kind: RemoteFailure,
        reason: impl Into<String>,
    ) -> Error {
        Error::Remote(RemoteError::Failed {
            remote: remote.into(),
            kind,
            reason: reason.into(),
        })
    }

    /// A [`ManifestError::InvalidManifest`] for the manifest (or listing) at `path`.
    pub fn invalid_manifest(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Manifest(ManifestError::InvalidManifest {
            path: path.into(),
            reason: reason.into(),
        })
    }

    /// A [`RemoteError::Transient`].
    pub fn transient(remote: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Remote(RemoteError::Transient {
            remote: remote.into(),
            reason: reason.into(),
        })
    }

    /// Whether this is a manifest that fails validation (including one with git conflict
    /// markers): commands report it for that file and go on with the others.
    pub fn is_invalid_manifest(&self) -> bool {
        matches!(
            self,
            Error::Manifest(
                ManifestError::InvalidManifest { .. } | ManifestError::ConflictMarkers(_)
            )
        )
    }

    /// The id of the missing object, for a [`StoreError::ObjectMissing`].
    pub fn missing_object(&self) -> Option<ObjectId> {
        match self {
            Error::Store(StoreError::ObjectMissing(id)) => Some(*id),
            _ => None,
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
