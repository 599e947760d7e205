//! The S3 remote: `s3://bucket/prefix` on AWS S3 or any S3-compatible store (MinIO, Ceph RGW,
//! Cloudflare R2, SeaweedFS, …) through the `object_store` crate.
//!
//! Objects live under `PREFIX/objects/ab/cdef…`, the same fan-out as a directory remote, so a
//! bucket synced from a directory remote (or the reverse) is a valid store.
//!
//! - **Put-if-absent.** Every upload is verified first (decode + SHA-256 against its id), then
//!   written with a conditional create (`If-None-Match: *`): of two writers racing on one object,
//!   one writes it and the other learns it is there. A store that does not implement conditional
//!   writes (answers 501) is remembered and gets a HEAD then a plain PUT instead; since an object's
//!   key is the hash of its content, the worst a lost race can do there is write the same bytes
//!   twice. Objects over [`MULTIPART_THRESHOLD`] go up in parts, several at once, after a HEAD;
//!   S3 makes a multipart object visible only when it is complete.
//! - **Missing** runs HEAD requests concurrently, or lists the fan-out directories a large batch
//!   touches when that takes fewer requests (see [`MissingStrategy`]); answers in request order.
//! - **Reads** are bounded by the largest valid object and verified by the caller, as for every
//!   remote.
//! - **Delta encodings** live under `PREFIX/deltas/ab/<id>.<base>` (module `deltas`): written like
//!   objects once their header and the presence of their base are checked; readers verify them.
//! - **Errors.** A refused key or a missing bucket is permanent and says what to check; dropped
//!   connections, timeouts, 5xx and throttling are [`RemoteError::Transient`](nshard_core::RemoteError::Transient) for the transfer
//!   engine to retry. `object_store` makes no retries of its own, so that one policy
//!   ([`nshard_core::Retry`]) decides and the attempts never multiply.
//!
//! The library never reads the environment: the binary passes the `AWS_*` settings in
//! [`S3Options`].

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nshard_core::{RemoteError, StoreError};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as KeyPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};

mod deltas;
mod missing;

#[cfg(feature = "testing")]
pub use deltas::DELTA_PAGE_IN_LISTS;
use missing::S3_MISSING_BATCH;
pub use missing::{MissingStrategy, RequestCounts};
#[cfg(feature = "testing")]
pub use missing::{KEYS_PER_PAGE, LIST_CONCURRENCY, LIST_PAGE_IN_HEADS};

use nshard_core::backend::{
    blocking, read_exact_at, DeltaName, RecordName, StagedUpload, StoreAdmin, StoredDelta,
    StoredObject, MAX_RECORD_BYTES,
};
use nshard_core::format::{decode_verified, max_encoded_len, MAX_OBJECT_SIZE};
use nshard_core::{Corruption, Error, ObjectId, RemoteFailure, Result, Store};

use crate::error_chain as chain;

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of one part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one object uploaded at once.
pub const PART_CONCURRENCY: usize = 2;

/// Settings for S3 remotes: the standard `AWS_*` variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ALLOW_HTTP`, …) as name/value pairs. Names are case-insensitive; names `object_store` does
/// not know are ignored. Values are never printed.
#[derive(Clone, Default)]
pub struct S3Options {
    /// `(name, value)` pairs, e.g. `("AWS_REGION", "eu-west-1")`.
    pub settings: Vec<(String, String)>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.settings.iter().map(|(k, _)| k))
            .finish()
    }
}

/// An S3 bucket (and key prefix) used as a remote.
#[derive(Debug)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    url: String,
    bucket: String,
    /// `PREFIX/objects` (or `objects`).
    objects: String,
    /// Cleared when the store answers a conditional create with 501.
    conditional: AtomicBool,
    /// HEAD requests made (see [`RequestCounts`]).
    heads: AtomicU64,
    /// Listing pages made by `missing` queries.
    list_pages: AtomicU64,
    /// Listing pages made by `deltas_of` queries.
    delta_list_pages: AtomicU64,
}

impl S3Store {
    /// Sets up a client for `s3://bucket/prefix` (`prefix` validated, no leading or trailing `/`).
    /// Nothing is sent until the first request; see [`Store::health`].
    pub fn open(bucket: &str, prefix: &str, opts: &S3Options) -> Result<S3Store> {
        crate::install_tls_provider();
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut b = AmazonS3Builder::new();
        for (k, v) in &opts.settings {
            if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
                b = b.with_config(key, v);
            }
        }
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(15))
            .with_timeout(Duration::from_secs(300));
        let client = match opts
            .settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("AWS_ALLOW_HTTP"))
        {
            Some((_, v)) => client.with_allow_http(v.eq_ignore_ascii_case("true") || v == "1"),
            None => client,
        };
        let store = b
            .with_bucket_name(bucket)
            .with_client_options(client)
            // One retry policy: the caller's (`nshard_core::Retry`, around every request, with
            // the retries counted in its report). object_store's own would run inside it and
            // multiply the attempts.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| {
                Error::Remote(RemoteError::Failed {
                    remote: url.clone(),
                    kind: RemoteFailure::Other,
                    reason: format!("cannot set up the S3 client: {e}"),
                })
            })?;
        let objects = if prefix.is_empty() {
            "objects".to_string()
        } else {
            format!("{prefix}/objects")
        };
        Ok(S3Store {
            store: Arc::new(store),
            url,
            bucket: bucket.to_string(),
            objects,
            conditional: AtomicBool::new(true),
            heads: AtomicU64::new(0),
            list_pages: AtomicU64::new(0),
            delta_list_pages: AtomicU64::new(0),
        })
    }

    /// The key of object `id`.
    fn key(&self, id: &ObjectId) -> KeyPath {
        let h = id.to_hex();
        KeyPath::from(format!("{}/{}/{}", self.objects, &h[..2], &h[2..]))
    }

    /// `PREFIX/records` (or `records`).
    fn records_prefix(&self) -> String {
        let root = self.objects.strip_suffix("objects").unwrap_or_default();
        format!("{root}records")
    }

    /// The key of record `name`.
    fn record_key(&self, name: &RecordName) -> KeyPath {
        KeyPath::from(format!("{}/{name}", self.records_prefix()))
    }

    /// Deletes `keys` with batched DeleteObjects requests (absent keys are no error).
    async fn delete_keys(&self, keys: Vec<KeyPath>, what: &str) -> Result<()> {
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(stream);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(what, e)),
            }
        }
        Ok(())
    }

    /// The object a key names (`PREFIX/objects/ab/cdef…`), or `None` for any other key.
    fn id_of_key(&self, key: &str) -> Option<ObjectId> {
        let rest = key.strip_prefix(self.objects.as_str())?.strip_prefix('/')?;
        let (fan, tail) = rest.split_once('/')?;
        if fan.len() != 2 || tail.contains('/') {
            return None;
        }
        let hex = format!("{fan}{tail}");
        ObjectId::parse(&hex).ok().filter(|id| id.to_hex() == hex)
    }

    /// Turns an `object_store` error into ours: permanent with a hint for refused credentials and
    /// missing buckets, transient for what may pass.
    fn error(&self, what: &str, e: object_store::Error) -> Error {
        use object_store::Error as E;
        let text = chain(&e);
        // Listing errors come as `Generic` whatever the status: look at the answer too.
        let refused = [
            "403 Forbidden",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
        ]
        .iter()
        .any(|m| text.contains(m));
        let denied = refused || matches!(e, E::PermissionDenied { .. } | E::Unauthenticated { .. });
        if text.contains("NoSuchBucket") {
            self.no_bucket(what)
        } else if denied {
            Error::Remote(RemoteError::Failed {
                remote: self.url.clone(),
                kind: RemoteFailure::Unauthorized,
                reason: format!(
                    "{what}: access denied ({text})\nhint: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
                ),
            })
        } else if is_transient(&e, &text) {
            Error::Remote(RemoteError::Transient {
                remote: self.url.clone(),
                reason: format!("{what}: {text}"),
            })
        } else {
            Error::Remote(RemoteError::Failed {
                remote: self.url.clone(),
                kind: RemoteFailure::Other,
                reason: format!("{what}: {text}"),
            })
        }
    }

    fn no_bucket(&self, what: &str) -> Error {
        Error::Remote(RemoteError::Failed {
            remote: self.url.clone(),
            kind: RemoteFailure::NotFound,
            reason: format!(
                "{what}: the bucket {:?} does not exist (create it first; nshard never creates buckets), or AWS_ENDPOINT_URL / AWS_REGION point elsewhere",
                self.bucket
            ),
        })
    }

    /// HEAD of `id`: its size, or `None`.
    async fn head(&self, id: &ObjectId) -> Result<Option<u64>> {
        self.head_key(&self.key(id), &format!("looking up {id}"))
            .await
    }

    /// HEAD of `key` (an object's or a delta's): its size, or `None`. Counted in
    /// [`RequestCounts::heads`].
    async fn head_key(&self, key: &KeyPath, what: &str) -> Result<Option<u64>> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(what, e)),
        }
    }

    /// Uploads the `len` bytes of `key` in parts (after checking that it is absent), taking part
    /// `n` bytes at `offset` from `part(offset, n)`, [`PART_CONCURRENCY`] parts in flight. On any
    /// error the upload is aborted: S3 shows a multipart object only once it is complete.
    async fn put_multipart<F, Fut>(
        &self,
        key: &KeyPath,
        what: &str,
        len: u64,
        mut part: F,
    ) -> Result<bool>
    where
        F: FnMut(u64, usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        if self.head_key(key, what).await?.is_some() {
            return Ok(false);
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.error(what, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut offset = 0u64;
        while offset < len {
            let n = (len - offset).min(PART_SIZE as u64) as usize;
            let next = match w.wait_for_capacity(PART_CONCURRENCY).await {
                Ok(()) => part(offset, n).await,
                Err(e) => Err(self.error(what, e)),
            };
            match next {
                Ok(bytes) => w.put(bytes),
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
            offset += n as u64;
        }
        w.finish().await.map_err(|e| self.error(what, e))?;
        Ok(true)
    }

    /// Uploads `data` for `id` unless present; returns whether this call wrote it.
    async fn put_if_absent(&self, id: &ObjectId, data: Bytes) -> Result<bool> {
        self.put_key_if_absent(&self.key(id), &format!("uploading {id}"), data)
            .await
    }

    /// Uploads `data` as `key` (an object's or a delta's) unless present; returns whether this
    /// call wrote it.
    async fn put_key_if_absent(&self, key: &KeyPath, what: &str, data: Bytes) -> Result<bool> {
        if data.len() > MULTIPART_THRESHOLD {
            let whole = data.clone();
            return self
                .put_multipart(key, what, data.len() as u64, |offset, n| {
                    let o = offset as usize;
                    futures::future::ready(Ok(whole.slice(o..o + n)))
                })
                .await;
        }
        if self.conditional.load(Ordering::Relaxed) {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(key, PutPayload::from_bytes(data.clone()), opts)
                .await
            {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
                Err(e) if chain(&e).contains("501") => {
                    // No conditional writes here: fall back to HEAD + PUT from now on.
                    self.conditional.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error(what, e)),
            }
        }
        if self.head_key(key, what).await?.is_some() {
            return Ok(false);
        }
        self.store
            .put(key, PutPayload::from_bytes(data))
            .await
            .map_err(|e| self.error(what, e))?;
        Ok(true)
    }

    /// The bytes of `key` (an encoding of `id`), `None` when absent, refused past the largest
    /// encoding an object can have: a corrupt or hostile bucket cannot make a reader buffer more.
    /// `of` names what the key holds in the error (`""` for the whole object).
    async fn read_capped(
        &self,
        key: &KeyPath,
        id: &ObjectId,
        of: &str,
        what: &str,
    ) -> Result<Option<Vec<u8>>> {
        let r = match self.store.get(key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(what, e)),
        };
        let limit = max_encoded_len(MAX_OBJECT_SIZE);
        if r.meta.size > limit {
            return Err(Error::Store(StoreError::CorruptObject {
                id: *id,
                kind: Corruption::TooLarge,
                reason: format!(
                    "{of}{} bytes in {}, more than any encoding of it can take",
                    r.meta.size, self.url
                ),
            }));
        }
        let mut out = Vec::with_capacity(r.meta.size as usize);
        let mut stream = r.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(what, e))?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(Error::Store(StoreError::CorruptObject {
                    id: *id,
                    kind: Corruption::TooLarge,
                    reason: format!(
                        "{of}grew past its size limit while being read from {}",
                        self.url
                    ),
                }));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }
}

/// `n` bytes of a staged file at `offset`, read off the async threads.
async fn read_at(staged: &Arc<StagedUpload>, offset: u64, n: usize) -> Result<Bytes> {
    let s = Arc::clone(staged);
    blocking("local staging file", move || {
        let mut buf = vec![0u8; n];
        read_exact_at(s.file(), &mut buf, offset)
            .map(|()| Bytes::from(buf))
            .map_err(Error::io("reading", s.path()))
    })
    .await?
}

/// Whether an `object_store` error may pass on retry: a transport failure (connection refused or
/// reset, timeout) or a 5xx / 429 / throttling answer.
fn is_transient(e: &object_store::Error, text: &str) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        cur = c.source();
    }
    [
        "status code: 5",
        "429",
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
    ]
    .iter()
    .any(|m| text.contains(m))
}

#[async_trait]
impl Store for S3Store {
    fn display_url(&self) -> String {
        self.url.clone()
    }

    async fn health(&self) -> Result<()> {
        // A listing (not a HEAD: its answer has no body to tell "no such bucket" from "no such
        // key") of at most the fan-out directories.
        let prefix = KeyPath::from(self.objects.as_str());
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(self.no_bucket("health check")),
            Err(e) => Err(self.error("health check", e)),
        }
    }

    async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        self.missing_with(ids, MissingStrategy::Auto).await
    }

    fn missing_batch_size(&self) -> usize {
        S3_MISSING_BATCH
    }

    async fn size(&self, id: &ObjectId) -> Result<Option<u64>> {
        self.head(id).await
    }

    async fn put(&self, id: &ObjectId, encoded: Vec<u8>) -> Result<bool> {
        let data = Bytes::from(encoded);
        let check = data.clone();
        let id_ = *id;
        blocking(&self.url, move || {
            decode_verified(&id_, &check, MAX_OBJECT_SIZE).map(|_| ())
        })
        .await??;
        self.put_if_absent(id, data).await
    }

    async fn put_staged(&self, id: &ObjectId, staged: StagedUpload) -> Result<bool> {
        let staged = Arc::new(staged);
        let len = staged.len();
        if len as usize > MULTIPART_THRESHOLD {
            let what = format!("uploading {id}");
            return self
                .put_multipart(&self.key(id), &what, len, |offset, n| {
                    read_at(&staged, offset, n)
                })
                .await;
        }
        let data = read_at(&staged, 0, len as usize).await?;
        self.put_if_absent(id, data).await
    }

    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let what = format!("downloading {id}");
        self.read_capped(&self.key(id), id, "", &what)
            .await?
            .ok_or(Error::Store(StoreError::ObjectMissing(*id)))
    }

    fn admin(&self) -> Option<&dyn StoreAdmin> {
        Some(self)
    }

    async fn put_record(&self, name: &RecordName, bytes: Vec<u8>) -> Result<RecordName> {
        let name = name.clone();
        let what = format!("storing record {name}");
        let key = self.record_key(&name);
        let mode = if self.conditional.load(Ordering::Relaxed) {
            PutMode::Create
        } else {
            // Names carry a nanosecond stamp and a random part: an overwrite cannot happen
            // between honest writers, and a store without conditional writes cannot do better.
            PutMode::Overwrite
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(name),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(Error::Remote(nshard_core::RemoteError::Failed {
                    remote: self.url.clone(),
                    kind: RemoteFailure::Refused,
                    reason: format!("record {name} exists already"),
                }))
            }
            Err(e) if chain(&e).contains("501") => {
                self.conditional.store(false, Ordering::Relaxed);
                self.store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.error(&what, e))?;
                Ok(name)
            }
            Err(e) => Err(self.error(&what, e)),
        }
    }

    async fn list_records(&self) -> Result<Vec<RecordName>> {
        let prefix = self.records_prefix();
        let mut keys = self.store.list(Some(&KeyPath::from(prefix.as_str())));
        let mut out = Vec::new();
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(|e| self.error("listing records", e))?;
            let key = meta.location.as_ref();
            if let Some(rest) = key
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                out.extend(RecordName::parse(rest));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn get_record(&self, name: &RecordName) -> Result<Option<Vec<u8>>> {
        let what = format!("reading record {name}");
        let r = match self.store.get(&self.record_key(name)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(&what, e)),
        };
        if r.meta.size > MAX_RECORD_BYTES {
            return Err(Error::Remote(nshard_core::RemoteError::Failed {
                remote: self.url.clone(),
                kind: RemoteFailure::Other,
                reason: format!("record {name} is larger than {MAX_RECORD_BYTES} bytes"),
            }));
        }
        let bytes = r.bytes().await.map_err(|e| self.error(&what, e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn list_objects(&self) -> Result<Vec<StoredObject>> {
        let prefix = KeyPath::from(self.objects.as_str());
        let mut keys = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(|e| self.error("listing objects", e))?;
            if let Some(id) = self.id_of_key(meta.location.as_ref()) {
                out.push(StoredObject {
                    id,
                    size: meta.size,
                    modified: meta.last_modified.timestamp().max(0) as u64,
                });
            }
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    async fn list_objects_page(
        &self,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<(Vec<StoredObject>, bool)> {
        // Keys sort as ids do (`PREFIX/objects/ab/cdef…`): start the listing after `after`'s key.
        let prefix = KeyPath::from(self.objects.as_str());
        let mut keys = match after {
            Some(a) => self.store.list_with_offset(Some(&prefix), &self.key(&a)),
            None => self.store.list(Some(&prefix)),
        };
        let mut out = Vec::new();
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(|e| self.error("listing objects", e))?;
            if let Some(id) = self.id_of_key(meta.location.as_ref()) {
                if after.is_some_and(|a| id <= a) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(StoredObject {
                    id,
                    size: meta.size,
                    modified: meta.last_modified.timestamp().max(0) as u64,
                });
            }
        }
        Ok((out, false))
    }

    async fn delete_objects(&self, ids: &[ObjectId]) -> Result<()> {
        let keys = ids.iter().map(|id| self.key(id)).collect();
        self.delete_keys(keys, "deleting objects").await
    }

    async fn delete_records(&self, names: &[RecordName]) -> Result<()> {
        let keys = names.iter().map(|n| self.record_key(n)).collect();
        self.delete_keys(keys, "deleting records").await
    }

    fn stores_deltas(&self) -> bool {
        true
    }

    async fn put_delta(&self, name: &DeltaName, encoded: Vec<u8>) -> Result<bool> {
        self.put_delta_checked(name, encoded).await
    }

    async fn get_delta(&self, name: &DeltaName) -> Result<Vec<u8>> {
        self.get_delta_capped(name).await
    }

    async fn deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        self.list_deltas_of(ids).await
    }

    async fn list_deltas(&self) -> Result<Vec<StoredDelta>> {
        self.list_all_deltas().await
    }

    async fn delete_deltas(&self, names: &[DeltaName]) -> Result<()> {
        let keys = names.iter().map(|n| self.delta_key(n)).collect();
        self.delete_keys(keys, "deleting delta encodings").await
    }
}

#[async_trait]
impl StoreAdmin for S3Store {
    async fn list(&self) -> Result<Vec<ObjectId>> {
        let prefix = KeyPath::from(self.objects.as_str());
        let mut keys = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(|e| self.error("listing objects", e))?;
            out.extend(self.id_of_key(meta.location.as_ref()));
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, id: &ObjectId) -> Result<()> {
        match self.store.delete(&self.key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&format!("deleting {id}"), e)),
        }
    }

    /// Checks the stored copy, then copies it to `PREFIX/corrupt/<id>.<unix nanoseconds>` and
    /// deletes it (S3 has no rename). The copy comes first, so a failure in between leaves the
    /// object where it was, to be moved by the next reader that finds it.
    async fn quarantine_corrupt(&self, id: &ObjectId) -> Result<bool> {
        let corrupt = match Store::get(self, id).await {
            Ok(enc) => {
                let id_ = *id;
                blocking(&self.url, move || {
                    decode_verified(&id_, &enc, MAX_OBJECT_SIZE).is_err()
                })
                .await?
            }
            Err(Error::Store(StoreError::ObjectMissing(_))) => false,
            Err(Error::Store(StoreError::CorruptObject { .. })) => true,
            Err(e) => return Err(e),
        };
        if !corrupt {
            return Ok(false);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let root = self.objects.strip_suffix("objects").unwrap_or_default();
        let aside = KeyPath::from(format!("{root}corrupt/{}.{nanos}", id.to_hex()));
        let what = format!("moving corrupt object {id} aside");
        self.store
            .copy(&self.key(id), &aside)
            .await
            .map_err(|e| self.error(&what, e))?;
        StoreAdmin::delete(self, id).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_directory_fan_out() {
        let s = S3Store::open("bucket", "team/models", &S3Options::default()).expect("open");
        let id = ObjectId::of(b"x");
        let h = id.to_hex();
        assert_eq!(
            s.key(&id).as_ref(),
            format!("team/models/objects/{}/{}", &h[..2], &h[2..])
        );
        assert_eq!(s.display_url(), "s3://bucket/team/models");
        let s = S3Store::open("bucket", "", &S3Options::default()).expect("open");
        assert_eq!(
            s.key(&id).as_ref(),
            format!("objects/{}/{}", &h[..2], &h[2..])
        );
    }

    #[test]
    fn settings_are_redacted() {
        let o = S3Options {
            settings: vec![("AWS_SECRET_ACCESS_KEY".into(), "very-secret-value".into())],
        };
        let d = format!("{o:?}");
        assert!(
            d.contains("AWS_SECRET_ACCESS_KEY") && !d.contains("very-secret"),
            "{d}"
        );
    }
}
