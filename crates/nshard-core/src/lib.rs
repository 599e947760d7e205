//! NeuroShard core: content-addressed, deduplicated, compressed versioning of large model files.
//!
//! A data file is cut into chunks ([`chunk`]), each stored once as an encoded object ([`codec`],
//! [`store`]) named by the SHA-256 of its bytes ([`id`]). A small JSON [`manifest`] lists the chunks
//! and is committed to git. [`repo`] ties it together: track, commit, status, checkout.
//!
//! ```no_run
//! use nshard_core::repo::{Repo, CommitOptions};
//! use nshard_core::progress::NoProgress;
//! # fn main() -> nshard_core::error::Result<()> {
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

pub mod chunk;
pub mod codec;
pub mod direct;
pub mod dirunit;
pub mod error;
pub mod formats;
pub mod fsutil;
pub mod git;
pub mod id;
pub(crate) mod ingest;

pub mod manifest;
pub mod portable;
pub mod progress;
pub mod remote;
pub mod repo;
pub mod staged;
pub mod store;
pub mod transfer;

pub use error::{Error, Result};
pub use id::ObjectId;
