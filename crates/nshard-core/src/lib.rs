//! NeuroShard core: content-addressed, deduplicated, compressed versioning of large model files
//! and datasets.
//!
//! A data file is cut into chunks, each stored once as an encoded object named by the SHA-256 of
//! its bytes ([`ObjectId`]). A small JSON manifest lists the chunks and is committed to git.
//! [`Repo`] ties it together: track, commit, status, checkout, diff, history, over [`Target`]s
//! (a tracked file or a directory unit, decided once by [`Repo::select`]); [`transfer::push`]
//! and [`transfer::pull`] move objects to and from a [`Store`] (a directory, an `nshard serve`
//! server, S3: the backends are the `nshard-remote` crate).
//!
//! The root holds what a user of the library needs to run each command and read its results.
//! The modules group the rest: [`format`](mod@format) (the on-disk formats), [`backend`] (what store backends
//! and servers build on), [`config`] (config levels, remotes, credentials), [`git`], [`transfer`]
//! and [`protocol`]. docs/architecture.md maps the private modules and their layers, and
//! docs/library.md has a longer example (compiled as a test of `nshard-remote`).
//!
//! ```no_run
//! use nshard_core::{CommitOptions, NoProgress, Repo};
//! # fn main() -> nshard_core::Result<()> {
//! let dir = std::path::Path::new("my-models");
//! let (mut repo, _created) = Repo::init(dir)?;
//! repo.track(dir, &["model.safetensors"])?;
//! let everything = repo.select(dir, &[] as &[&str])?;
//! let results = repo.commit(&everything, &CommitOptions {
//!     message: "first checkpoint".into(),
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
mod buffers;
mod chunk;
mod codec;
mod dirunit;
mod error;
mod formats;
mod fsutil;
pub mod git;
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
pub mod transfer;

// The repository, what a command works on, and each command's options and results.
pub use dirunit::{
    DirChange, DirChangeKind, DirCheckout, DirCommit, DirState, DirStatus, DirVersion,
};
pub use fsutil::normalize_lexically;
pub use id::ObjectId;
pub use manifest::BlockDiff;
pub use ops::RepackReport;
pub use ops::{BlockStats, FloatStats, MostChanged, TensorGlob, TensorStats, VersionChange};
pub use ops::{
    Checked, CheckoutOptions, CheckoutOutcome, CommitOptions, CommitOutcome, Diff, DiffOptions,
    DiffSide, FileCommit, FileDiff, FileState, FileStatus, GcItem, GcMode, GcOptions, GcReason,
    GcReport, History, HistoryNote, LogEntry, LogState, MissingCheck, Moved, Problem, ProblemKind,
    RemoteCheck, Removed, Selection, SideKind, Status, Target, TensorChange, TensorChangeKind,
    TensorDiff, TrackChange, TrackMode, Unpushed, Unversioned, VerifyOptions, VerifyReport,
    VersionOrder,
};
pub use ops::{LfsImportOptions, LfsImportReport, LfsImportedFile, LfsImportedVersion};
pub use path::RepoPath;
pub use portable::{escape as escape_path, neutralize as neutralize_path, shell_word};
pub use repo::{PathFilter, Repo};

// Remotes: the contract every store honours, and how one is named.
pub use remote::{RemoteUrl, Store};
pub use retry::Retry;

// Progress and errors.
pub use error::{
    Corruption, Error, FromOlderFiles, GitError, LookupProblem, ManifestError, RemoteError,
    RemoteFailure, RepoError, Result, StoreError, Untracked,
};
pub use progress::{NoProgress, Progress};

/// The on-disk formats: encoded objects, chunking, model file formats, manifests and directory
/// listings. What a tool that reads or writes a NeuroShard store without a repository needs.
pub mod format {
    pub use crate::chunk::{
        ChunkParams, ChunkReader, Cutter, LayoutMode, RawChunk, Segment,
        DEFAULT_AVG as DEFAULT_AVG_CHUNK, DEFAULT_FIXED as DEFAULT_FIXED_CHUNK,
        DEFAULT_MAX as DEFAULT_MAX_CHUNK, DEFAULT_MIN as DEFAULT_MIN_CHUNK,
    };
    pub use crate::codec::{
        decode, decode_against, decode_against_in_place, decode_into, decode_verified,
        encode_delta, max_encoded_len, parse_header, Codec, DataHint, DecodeScratch, Encoder,
        Header as ObjectHeader, DELTA_FORMAT_VERSION, DELTA_HEADER_LEN, FLOAT_FORMAT_VERSION,
        FORMAT_VERSION as OBJECT_FORMAT_VERSION, HEADER_LEN as OBJECT_HEADER_LEN,
        MAGIC as OBJECT_MAGIC, MAX_CHAIN as MAX_DELTA_CHAIN, MAX_FLOAT_OBJECT, MAX_OBJECT_SIZE,
        ZSTD_LEVEL,
    };
    pub use crate::dirunit::{
        is_delta, is_dir_manifest, DirManifest, DirVersionBytes, FileEntry as ListingEntry,
        Listing, ListingDelta, Location as ListingLocation, PackRef, DEFAULT_DIR_THRESHOLD,
        DELTA_FORMAT, DIR_FORMAT, LISTING_FORMAT, MAX_CHAIN, MAX_DIR_FILES, PACK_FILE_MAX,
        PACK_TARGET,
    };
    pub use crate::formats::plan::{
        hint_for_dtype, looks_like_text, plan as plan_cuts, Params as PlanParams, Plan as CutPlan,
        TEXT_MAX_FILE, TEXT_PARAMS, TEXT_SNIFF,
    };
    pub use crate::formats::safetensors::parse as parse_safetensors;
    pub use crate::formats::{
        detect as detect_format, parse_any as parse_format, FileSource, Format, FormatKind, Layout,
        ParseError, Parsed, Region, Source, Tensor, FORMATS, HEAD_LEN as FORMAT_HEAD_LEN,
    };
    pub use crate::id::Hasher;
    pub use crate::manifest::{
        ChunkRef, Manifest, TensorDigest, TensorEntry, VersionInfo, FORMAT as MANIFEST_FORMAT,
        FORMAT_V2 as MANIFEST_FORMAT_V2, MANIFEST_SUFFIX, MAX_MANIFEST_BYTES,
    };
    pub use crate::path::MAX_PATH_LEN;
    pub use crate::portable::check_component as check_path_component;
}

/// What a [`Store`](crate::Store) backend and a server build on: the local object store, staged
/// uploads, the optional listing/deleting capability, durable file writes, and the blocking-work
/// helper.
pub mod backend {
    pub use crate::blocking::blocking;
    pub use crate::fsutil::{
        create_dir_all, open_regular, read_exact_at, read_limited, sync_dir, write_atomic,
        write_atomic_private, AtomicFile,
    };
    pub use crate::remote::deltas::{
        check_delta_header, holds, resolve, resolve_standalone, verify_delta,
    };
    pub use crate::remote::records::{
        Marks, RecordName, RootRecord, StoredObject, ADMIN_WRITER, ANONYMOUS_WRITER,
        MAX_RECORD_BYTES,
    };
    pub use crate::remote::{
        check_by_download, page_of, DeltaName, ObjectCheck, StoreAdmin, StoredDelta, DELETE_BATCH,
        MISSING_BATCH,
    };
    pub use crate::staged::{verify_file as verify_staged_file, StagedUpload};
    pub use crate::store::{write_file_once, LocalStore, StagedObject};
}

/// Configuration levels, remotes and credentials, as the repository reads them.
pub mod config {
    pub use crate::repo::{
        choose_token, validate_token, Config, ConfigLevel, EnvTokens, Origin, PersonalConfig,
        RefusedManifest, RemoteConfig, RemoteEntry, RemoteName, RemoteSource, RemovedRemote,
        RepoLock, ResolvedRemote, StoredCredential, UserConfig, WorktreeManifest, LOCAL_CONFIG,
        SHARD_DIR,
    };
}
