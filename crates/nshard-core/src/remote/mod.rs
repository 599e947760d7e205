//! Remote object stores: one [`Store`] trait, several backends (a directory, the NeuroShard HTTP
//! server). Objects travel in their encoded form; every receiver verifies them (decode + SHA-256)
//! before they become visible.
//!
//! The trait is async because its real backends are network stores; the directory backend runs its
//! filesystem work on tokio's blocking pool.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::ObjectId;

/// An object store a repository can push to and pull from.
#[async_trait]
pub trait Store: Send + Sync {
    /// The store's location for messages (never containing credentials).
    fn display_url(&self) -> String;

    /// Of `ids`, the ones the store does not have ("has many", inverted). Backends may cap the batch
    /// size; callers send batches of at most [`MISSING_BATCH`].
    async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>>;

    /// Stores the encoded object `id` if absent. The store verifies `encoded` (it must decode to
    /// bytes hashing to `id`) before it becomes visible; re-putting an existing object succeeds.
    async fn put(&self, id: &ObjectId, encoded: Vec<u8>) -> Result<()>;

    /// The encoded bytes of `id`. Callers verify them before use.
    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>>;

    /// Every object id in the store.
    async fn list(&self) -> Result<Vec<ObjectId>>;

    /// Removes `id` (absent is not an error).
    async fn delete(&self, id: &ObjectId) -> Result<()>;
}

/// The largest batch of ids sent in one `missing` query.
pub const MISSING_BATCH: usize = 1000;
