//! Remote object stores: the one [`Store`] trait its backends implement (a directory, the
//! NeuroShard HTTP server, an S3 bucket: they live in the `nshard-remote` crate, with the network
//! clients). Objects travel in their encoded form; every receiver verifies them (decode + SHA-256)
//! before they become visible.
//!
//! [`Store`] is the contract every backend honours: health, missing, size, get, put-if-absent.
//! Listing, deleting and moving a corrupt object aside are a separate capability ([`StoreAdmin`],
//! reached through [`Store::admin`]) that only backends able to do them offer: the HTTP protocol
//! has none of them (the server moves corrupt objects aside itself when it reads them).
//!
//! The trait is async because its real backends are network stores; the directory backend runs its
//! filesystem work on tokio's blocking pool.
//!
//! A remote is named by a URL ([`RemoteUrl`]): a directory (`/srv/models`, `./store`,
//! `file:///srv/models`), an HTTP server (`http://host:8000`, `https://…`) or an S3 bucket
//! (`s3://bucket/prefix`); `nshard_remote::open` turns a parsed URL into a store.

pub mod deltas;
pub mod records;
mod url;

use async_trait::async_trait;

use crate::error::{Error, Result, StoreError};
use crate::id::ObjectId;
pub use crate::protocol::ObjectCheck;
use crate::staged::StagedUpload;

pub use deltas::{DeltaName, StoredDelta};
pub use records::{RecordName, StoredObject};
pub(crate) use url::redacted;
pub use url::RemoteUrl;

/// An object store a repository can push to and pull from: what every backend does.
///
/// Errors that may go away when the operation is retried (a dropped connection, a timeout, a busy
/// server) must be reported as [`RemoteError::Transient`](crate::error::RemoteError::Transient) (or an [`Error::Io`] of a transient kind,
/// see [`Error::is_transient`]); transfers retry those with backoff and fail fast on the rest.
#[async_trait]
pub trait Store: Send + Sync {
    /// The store's location for messages (never containing credentials).
    fn display_url(&self) -> String;

    /// Checks that the store is reachable and usable with the credentials given (a missing bucket
    /// or directory, a refused key or token is a permanent error naming the store).
    async fn health(&self) -> Result<()>;

    /// Of `ids`, the ones the store does not have ("has many", inverted), in request order.
    /// Backends may cap the batch size; callers send batches of at most
    /// [`Store::missing_batch_size`].
    async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>>;

    /// How many ids a caller should ask about in one [`Store::missing`] call: [`MISSING_BATCH`],
    /// unless the backend answers larger batches more cheaply as a whole (S3 lists fan-out
    /// directories when a batch is large enough).
    fn missing_batch_size(&self) -> usize {
        MISSING_BATCH
    }

    /// Whether the store keeps float objects (object format 4) as they are sent. A store that
    /// does not (a server older than them, or one told not to) gets those chunks in format 1.
    fn stores_float_objects(&self) -> bool {
        true
    }

    /// The encoded size of `id`, or `None` when the store does not have it.
    async fn size(&self, id: &ObjectId) -> Result<Option<u64>>;

    /// Stores the encoded object `id` if absent and returns whether this call wrote it. The store
    /// verifies `encoded` (it must decode to bytes hashing to `id`) before it becomes visible;
    /// re-putting an existing object is a cheap success (`false`).
    async fn put(&self, id: &ObjectId, encoded: Vec<u8>) -> Result<bool>;

    /// Stores an upload staged on disk if absent, like [`Store::put`], for callers that verified
    /// it already ([`StagedUpload::verify`]) and must not hold it in memory (the server). The
    /// default reads it and calls [`Store::put`]; backends override it to move or stream the file.
    async fn put_staged(&self, id: &ObjectId, staged: StagedUpload) -> Result<bool> {
        let mut data = vec![0u8; staged.len() as usize];
        crate::fsutil::read_exact_at(staged.file(), &mut data, 0)
            .map_err(Error::io("reading", staged.path()))?;
        self.put(id, data).await
    }

    /// The encoded bytes of `id` ([`StoreError::ObjectMissing`](crate::error::StoreError::ObjectMissing) when absent). Callers verify them before
    /// use.
    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>>;

    /// Whether the store's copy of `id` is intact (decodes to bytes hashing to `id`). The default
    /// downloads and verifies it ([`check_by_download`]); a server that can hash its own copy is
    /// asked to instead, and moves a corrupt one aside itself.
    async fn check_object(&self, id: &ObjectId) -> Result<ObjectCheck> {
        check_by_download(self, id).await
    }

    /// Listing and deleting, for the backends that can (`None` for the others).
    fn admin(&self) -> Option<&dyn StoreAdmin> {
        None
    }

    /// Stores record `name` with `bytes` (at most 64 MiB), never
    /// replacing one of the same name. Returns the name as stored: a directory or a bucket keeps
    /// the writer part as given (who writes there has full rights; clients name themselves
    /// `admin`), a server sets it from the token (see docs/storage.md, *Root records*).
    async fn put_record(&self, name: &RecordName, bytes: Vec<u8>) -> Result<RecordName>;

    /// Every record name on the store, sorted. A listing that fails is an error, never an empty
    /// answer.
    async fn list_records(&self) -> Result<Vec<RecordName>>;

    /// The bytes of record `name`, `None` when it does not exist.
    async fn get_record(&self, name: &RecordName) -> Result<Option<Vec<u8>>>;

    /// Every object with its size and age, for gc (an admin operation on a server). A listing
    /// that fails is an error, never a partial answer.
    async fn list_objects(&self) -> Result<Vec<StoredObject>>;

    /// Up to `limit` objects whose ids come after `after`, in id order, and whether more follow
    /// (what a server answers a page request with). The default lists everything and slices;
    /// backends that can start a listing at a key override it.
    async fn list_objects_page(
        &self,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<(Vec<StoredObject>, bool)> {
        let mut all = self.list_objects().await?;
        all.sort_unstable_by_key(|o| o.id);
        Ok(page_of(all, after, limit))
    }

    /// Deletes objects (absent ones are no error), for gc (an admin operation on a server); at
    /// most [`DELETE_BATCH`] per call.
    async fn delete_objects(&self, ids: &[ObjectId]) -> Result<()>;

    /// Deletes records (absent ones are no error), for gc (an admin operation on a server); at
    /// most [`DELETE_BATCH`] per call.
    async fn delete_records(&self, names: &[RecordName]) -> Result<()>;

    /// Whether the store keeps delta encodings beside whole objects ([`DeltaName`]:
    /// `deltas/<id>.<base>`, see [`deltas`]). The other delta methods fail on a store that does
    /// not (a server older than them).
    fn stores_deltas(&self) -> bool {
        false
    }

    /// Whether the store takes new delta encodings and lets them stand for whole copies (`remote
    /// gc`). A store that holds deltas but does not (`nshard serve` with a `--max-object-format`
    /// below the delta format) still serves and lists those it has, and gc keeps their bases.
    fn takes_deltas(&self) -> bool {
        self.stores_deltas()
    }

    /// Stores `encoded`, a delta object (format 3) whose header names `name.base`, as
    /// `name` if absent, and returns whether this call wrote it. The store never holds a delta
    /// without its base: one whose base it holds neither whole nor as a delta is refused with
    /// [`StoreError::BaseMissing`](crate::error::StoreError::BaseMissing), permanently. A store
    /// that can read the base verifies the delta against it first ([`deltas::verify_delta`]: a
    /// directory, a server); an S3 bucket checks the header and the base's presence, and readers
    /// verify what they resolve.
    async fn put_delta(&self, name: &DeltaName, encoded: Vec<u8>) -> Result<bool> {
        let _ = (name, encoded);
        Err(deltas::unsupported(&self.display_url()))
    }

    /// The bytes of the delta `name` ([`StoreError::ObjectMissing`](crate::error::StoreError::ObjectMissing)
    /// of `name.id` when absent). Callers verify them before use.
    async fn get_delta(&self, name: &DeltaName) -> Result<Vec<u8>> {
        let _ = name;
        Err(deltas::unsupported(&self.display_url()))
    }

    /// The delta encodings the store holds of any of `ids` (any order; none for an id it holds
    /// none of). At most [`Store::missing_batch_size`] ids per call.
    async fn deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        let _ = ids;
        Err(deltas::unsupported(&self.display_url()))
    }

    /// Every delta encoding with its size and age, for gc (an admin operation on a server). A
    /// listing that fails is an error, never a partial answer.
    async fn list_deltas(&self) -> Result<Vec<StoredDelta>> {
        Err(deltas::unsupported(&self.display_url()))
    }

    /// Deletes delta encodings (absent ones are no error), for gc; at most [`DELETE_BATCH`] per
    /// call.
    async fn delete_deltas(&self, names: &[DeltaName]) -> Result<()> {
        let _ = names;
        Err(deltas::unsupported(&self.display_url()))
    }
}

/// The page of sorted `all` after `after`: at most `limit` objects, and whether more follow.
pub fn page_of(
    all: Vec<StoredObject>,
    after: Option<ObjectId>,
    limit: usize,
) -> (Vec<StoredObject>, bool) {
    let start = after.map_or(0, |a| all.partition_point(|o| o.id <= a));
    let end = start.saturating_add(limit).min(all.len());
    let more = end < all.len();
    (all[start..end].to_vec(), more)
}

/// The most ids or names one delete call takes (S3's DeleteObjects limit).
pub const DELETE_BATCH: usize = 1000;

/// [`Store::check_object`] by downloading the object and verifying it here.
pub async fn check_by_download<S: Store + ?Sized>(store: &S, id: &ObjectId) -> Result<ObjectCheck> {
    let corrupt = |reason| {
        Ok(ObjectCheck::Corrupt {
            reason,
            moved_aside: false,
        })
    };
    let enc = match store.get(id).await {
        Ok(enc) => enc,
        Err(Error::Store(StoreError::ObjectMissing(_))) => return Ok(ObjectCheck::Missing),
        Err(Error::Store(StoreError::CorruptObject { reason, .. })) => return corrupt(reason),
        Err(e) => return Err(e),
    };
    let size = enc.len() as u64;
    let id = *id;
    let verified = crate::blocking::blocking(store.display_url(), move || {
        crate::codec::decode_verified(&id, &enc, crate::codec::MAX_OBJECT_SIZE).map(|_| ())
    })
    .await?;
    match verified {
        Ok(()) => Ok(ObjectCheck::Intact { size }),
        Err(Error::Store(StoreError::CorruptObject { reason, .. })) => corrupt(reason),
        Err(e) => Err(e),
    }
}

/// What only some stores can do: enumerate and remove objects.
#[async_trait]
pub trait StoreAdmin: Send + Sync {
    /// Every object id in the store.
    async fn list(&self) -> Result<Vec<ObjectId>>;

    /// Removes `id` (absent is not an error).
    async fn delete(&self, id: &ObjectId) -> Result<()>;

    /// Moves the stored copy of `id` aside (to the store's `corrupt/`, kept for inspection) if it
    /// fails verification by itself, so that the store reads it as missing and the next push
    /// restores it. A good copy, or none, stays as it is: the store checks for itself, whatever
    /// the caller saw. Returns whether a copy was moved.
    async fn quarantine_corrupt(&self, id: &ObjectId) -> Result<bool>;
}

/// The largest batch of ids sent in one `missing` query, unless the store says otherwise
/// ([`Store::missing_batch_size`]).
pub const MISSING_BATCH: usize = 1000;
