//! NeuroShard core: content-addressed, deduplicated, compressed versioning of large model files
//! and datasets.
//!
//! A data file is cut into chunks, each stored once as an encoded object named by the SHA-256 of
//! its bytes ([`ObjectId`], [`Encoder`], [`LocalStore`]). A small JSON [`Manifest`] lists the
//! chunks and is committed to git. [`Repo`] ties it together: track, commit, status, checkout,
//! history; [`push`] and [`pull`] move objects to and from a [`Store`] (a directory, an
//! `nshard serve` server, S3).
//!
//! Everything is re-exported flat from here; the modules are private. Where the code lives, for a
//! reader of the source:
//!
//! | module | owns |
//! | --- | --- |
//! | `id`, `codec` | object ids (SHA-256) and the encoded object format (raw, zstd, byte-grouped floats) |
//! | `chunk` | content-defined and fixed cutting, the streaming chunk reader |
//! | `formats` | file formats (safetensors, PyTorch zip, GGUF): parse once, plan tensor-aligned cuts |
//! | `ingest` | the one read → cut → hash (→ store) pipeline used by commit, diff and verify |
//! | `manifest` | the manifest format, its validation and tensor digests |
//! | `path`, `portable` | [`RepoPath`] and the rules that keep a path safe on every OS |
//! | `fsutil` | atomic writes, safe opening of files, bounded reads |
//! | `store` | the local object store (with its page-cache-bypassing writer) |
//! | `staged` | uploads staged to a file and verified before they become visible |
//! | `repo` | the repository and every command's logic |
//! | `dirunit` | directories versioned as one unit: listings, packs of small files, their commit, checkout, status and history |
//! | `git` | reading git (what history reaches), `.gitignore` blocks, hooks |
//! | `remote`, `retry`, `blocking` | the [`Store`] contract and remote URLs (the backends are the `nshard-remote` crate); the one retry policy ([`Retry`]); the one way to run blocking work from async code ([`blocking()`]) |
//! | [`protocol`] | protocol v1's routes and JSON bodies, shared by server and client |
//! | `transfer` | push and pull: batched existence checks, parallel transfers, retries |
//!
//! ```no_run
//! use nshard_core::{CommitOptions, NoProgress, Repo};
//! # fn main() -> nshard_core::Result<()> {
//! let dir = std::path::Path::new("my-models");
//! let (mut repo, _created) = Repo::init(dir)?;
//! repo.track(dir, &["model.safetensors"])?;
//! let results = repo.commit(&CommitOptions {
//!     message: "first checkpoint".into(),
//!     paths: vec![],
//!     force: false,
//!     progress: &NoProgress,
//! })?;
//! for r in results {
//!     println!("{}: {:?}", r.path, r.result);
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

/// A point where a crash matters: with the `failpoints` feature, a `fail` point of that name (the
/// crash-test suite makes the process stop there and kills it); without it, nothing at all.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}
pub(crate) use crash_point;

mod blocking;
mod chunk;
mod codec;
mod dirunit;
mod error;
mod formats;
mod fsutil;
mod git;
mod id;
mod ingest;
mod manifest;
mod ops;
mod outcome;
mod path;
mod portable;
mod progress;
pub mod protocol;
mod remote;
mod repo;
mod retry;
mod staged;
mod store;
mod transfer;

// Objects: ids, encoding, the local store.
pub use codec::{
    decode, decode_verified, max_encoded_len, parse_header, Codec, DataHint, Encoder,
    Header as ObjectHeader, FORMAT_VERSION as OBJECT_FORMAT_VERSION,
    HEADER_LEN as OBJECT_HEADER_LEN, MAGIC as OBJECT_MAGIC, MAX_OBJECT_SIZE, ZSTD_LEVEL,
};
pub use id::{Hasher, ObjectId};
pub use staged::{verify_file as verify_staged_file, StagedUpload};
pub use store::{LocalStore, StagedObject};

// Chunking and file formats.
pub use chunk::{
    ChunkParams, ChunkReader, Cutter, LayoutMode, RawChunk, Segment,
    DEFAULT_AVG as DEFAULT_AVG_CHUNK, DEFAULT_FIXED as DEFAULT_FIXED_CHUNK,
    DEFAULT_MAX as DEFAULT_MAX_CHUNK, DEFAULT_MIN as DEFAULT_MIN_CHUNK,
};
pub use formats::plan::{
    hint_for_dtype, looks_like_text, plan as plan_cuts, Params as PlanParams, Plan as CutPlan,
    TEXT_MAX_FILE, TEXT_PARAMS, TEXT_SNIFF,
};
pub use formats::safetensors::parse as parse_safetensors;
pub use formats::{
    detect as detect_format, parse_any as parse_format, FileSource, Format, FormatKind, Layout,
    ParseError, Parsed, Region, Source, Tensor, FORMATS, HEAD_LEN as FORMAT_HEAD_LEN,
};

// Manifests and paths.
pub use manifest::{
    BlockDiff, ChunkRef, Manifest, TensorDigest, TensorEntry, VersionInfo,
    FORMAT as MANIFEST_FORMAT, FORMAT_V2 as MANIFEST_FORMAT_V2, MANIFEST_SUFFIX,
    MAX_MANIFEST_BYTES,
};
pub use path::{RepoPath, MAX_PATH_LEN};
pub use portable::{
    check_component as check_path_component, escape as escape_path, neutralize as neutralize_path,
};

// Directory units: a directory versioned as one unit.
pub use dirunit::{
    is_delta, is_dir_manifest, DirChange, DirChangeKind, DirCheckout, DirCheckoutOptions,
    DirCommit, DirManifest, DirState, DirStatus, DirVersion, DirVersionBytes,
    FileEntry as ListingEntry, Listing, ListingDelta, Location as ListingLocation, PackRef,
    DEFAULT_DIR_THRESHOLD, DELTA_FORMAT, DIR_FORMAT, LISTING_FORMAT, MAX_CHAIN, MAX_DIR_FILES,
    PACK_FILE_MAX, PACK_TARGET,
};

// Files on disk.
pub use fsutil::{
    create_dir_all, open_regular, read_limited, sync_dir, write_atomic, write_atomic_private,
    AtomicFile,
};

// The repository and its commands.
pub use ops::{
    Checked, CheckoutOptions, CheckoutOutcome, CommitOptions, CommitOutcome, Diff, DiffOptions,
    DiffSide, FileCommit, FileDiff, FileState, FileStatus, GcItem, GcMode, GcOptions, GcReason,
    GcReport, History, HistoryNode, HistoryNote, LogEntry, LogState, MissingCheck, Problem,
    ProblemKind, RemoteCheck, Selection, SideKind, Status, Target, TensorChange, TensorChangeKind,
    TensorDiff, TrackChange, TrackMode, Unpushed, VerifyOptions, VerifyReport, VersionOrder,
    MAX_HISTORY,
};
pub use repo::{
    choose_token, validate_token, Config, ConfigLevel, EnvTokens, Origin, PathFilter,
    PersonalConfig, RefusedManifest, RemoteConfig, RemoteEntry, RemoteName, RemoteSource,
    RemovedRemote, Repo, RepoLock, ResolvedRemote, StoredCredential, UserConfig, WorktreeManifest,
    LOCAL_CONFIG, SHARD_DIR,
};

// Git integration.
pub use git::{
    hooks_dir_of, GitTree, HookAction, HookResult, Reach, RefUpdate, HOOKS as GIT_HOOKS,
};

// Remotes and transfers.
pub use remote::{check_by_download, ObjectCheck, RemoteUrl, Store, StoreAdmin, MISSING_BATCH};
// What the backends (crate nshard-remote) build on: positioned reads of a staged upload, and the
// local store's one-shot object write (page cache bypassed where the filesystem allows).
pub use blocking::blocking;
pub use fsutil::read_exact_at;
pub use retry::Retry;
pub use store::write_file_once;
pub use transfer::{
    check_remote, pull, push, remote_lacks, verify_remote, FilePlan, FileTransfer, PullOptions,
    PushOptions, PushScope, RemoteVerifyReport, TransferOptions, TransferReport, TransferStats,
    Unrepaired, DEFAULT_JOBS,
};

// Progress and errors.
pub use error::{Corruption, Error, RemoteFailure, Result};
pub use progress::{NoProgress, Progress};
