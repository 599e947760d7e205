//! NeuroShard remote stores: the backends of [`nshard_core::Store`].
//!
//! | URL | backend |
//! | --- | --- |
//! | `/path/to/dir`, `file:///path` | [`DirStore`]: a directory, possibly on a shared filesystem |
//! | `http://host:8000`, `https://…` | [`HttpStore`]: a NeuroShard server (`nshard serve`) |
//! | `s3://bucket/prefix` | [`S3Store`]: S3 and S3-compatible stores, through `object_store` |
//!
//! nshard-core holds the [`Store`] contract, the URL type ([`RemoteUrl`]) and the transfer engine,
//! which works on `Arc<dyn Store>` only; this crate holds the clients (reqwest, object_store,
//! rustls), so that a user of the core library does not build them. [`open`] turns a parsed URL
//! into a store. Every backend reports what may pass on retry as
//! [`RemoteError::Transient`](nshard_core::RemoteError::Transient)) and makes no retries of its
//! own: the caller retries with one policy ([`nshard_core::Retry`]).
//!
//! ```no_run
//! use nshard_remote::{open, OpenOptions};
//! # async fn run() -> nshard_core::Result<()> {
//! let url = nshard_core::RemoteUrl::parse("/srv/models", std::path::Path::new("/"))?;
//! let store = open(&url, &OpenOptions::default()).await?;
//! store.health().await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod dir;
mod http;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use nshard_core::backend::blocking;
use nshard_core::{RemoteUrl, Result, Retry, Store};

pub use dir::DirStore;
pub use http::HttpStore;
pub use s3::{MissingStrategy, RequestCounts, S3Options, S3Store};

/// How to open a remote, beyond its URL. The binary fills this from flags, the environment and
/// `.shard/config.toml`; the library never reads the environment itself.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Bearer token for HTTP remotes (never part of the URL, never printed).
    pub token: Option<String>,
    /// Credentials, region and endpoint for S3 remotes.
    pub s3: S3Options,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("s3", &self.s3)
            .finish()
    }
}

/// Opens the store behind `url`. A directory remote must exist (its `objects/` and `tmp/`
/// subdirectories are created on the first push); an unreachable or unsupported remote is a clear
/// error here, before any work starts.
pub async fn open(url: &RemoteUrl, opts: &OpenOptions) -> Result<Arc<dyn Store>> {
    match url {
        RemoteUrl::Dir(path) => {
            let path = path.clone();
            let store = blocking(url, move || DirStore::open(&path)).await??;
            Ok(Arc::new(store))
        }
        RemoteUrl::Http(base) => Ok(Arc::new(HttpStore::connect(base, opts).await?)),
        RemoteUrl::S3 { bucket, prefix } => {
            let store = S3Store::open(bucket, prefix, &opts.s3)?;
            // A busy store at open time is retried like any other request (the S3 client makes
            // no retries of its own).
            Retry::default().run(|| store.health()).await.0?;
            Ok(Arc::new(store))
        }
        other => Err(nshard_core::Error::Remote(
            nshard_core::RemoteError::Unsupported {
                url: other.to_string(),
                reason: "this build has no backend for it",
            },
        )),
    }
}

/// Makes ring rustls' process-wide crypto provider (the tree builds only this one; reqwest is
/// built without a provider of its own). Idempotent; every HTTP client in this crate calls it
/// before it is built, and so must other code that builds a reqwest client in the same process.
pub fn install_tls_provider() {
    // An error means a provider is already installed, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error and its sources on one line (the clients' own messages alone are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_str = c.to_string();
        if !s.contains(&c_str) {
            s.push_str(": ");
            s.push_str(&c_str);
        }
        cur = c.source();
    }
    s
}

/// docs/library.md ("using the library"), compiled and run as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/library.md")]
struct LibraryGuide;
