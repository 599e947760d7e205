//! Pack objects: small files' bytes concatenated, stored as one object compressed as a whole
//! (far better than file by file), fsynced once per pack.

use crate::codec::{DataHint, Encoder};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::store::LocalStore;

use super::{PackRef, PACK_TARGET, PACK_ZSTD_LEVEL};
use crate::error::StoreError;

/// Collects small files into packs and stores each pack when it is full.
pub(crate) struct PackWriter<'a> {
    store: &'a LocalStore,
    buf: Vec<u8>,
    enc: Encoder,
    /// Finished packs, by sequence number.
    pub done: Vec<PackRef>,
    /// Packs that were not in the store before.
    pub new_objects: usize,
    /// Raw bytes of those packs.
    pub new_bytes: u64,
    /// Encoded bytes written for them.
    pub stored_bytes: u64,
}

impl<'a> PackWriter<'a> {
    pub(crate) fn new(store: &'a LocalStore) -> Self {
        Self {
            store,
            buf: Vec::new(),
            enc: Encoder::with_level(PACK_ZSTD_LEVEL),
            done: Vec::new(),
            new_objects: 0,
            new_bytes: 0,
            stored_bytes: 0,
        }
    }

    /// Appends one file's bytes; returns (pack sequence number, offset). The pack's id is known
    /// once it is flushed: `done[seq]`.
    pub(crate) fn add(&mut self, data: &[u8]) -> Result<(usize, u64)> {
        let at = (self.done.len(), self.buf.len() as u64);
        self.buf.extend_from_slice(data);
        if self.buf.len() as u64 >= PACK_TARGET {
            self.flush()?;
        }
        Ok(at)
    }

    /// Stores the pack being filled, if any.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let id = ObjectId::of(&self.buf);
        let enc = self.enc.encode(&self.buf, DataHint::Unknown);
        if self.store.put_trusted(&id, &enc)? {
            self.new_objects += 1;
            self.new_bytes += self.buf.len() as u64;
            self.stored_bytes += enc.len() as u64;
        }
        crate::crash_point!("dir-commit-after-pack");
        self.done.push(PackRef {
            id,
            size: self.buf.len() as u64,
        });
        self.buf.clear();
        Ok(())
    }
}

/// Reads pack `p` from `store`, verified (decoded, re-hashed, and of the size the listing says).
pub(crate) fn read_pack(store: &LocalStore, p: &PackRef) -> Result<Vec<u8>> {
    let raw = store.get(&p.id, p.size)?;
    if raw.len() as u64 != p.size {
        return Err(Error::Store(StoreError::CorruptObject {
            id: p.id,
            kind: crate::error::Corruption::WrongSize,
            reason: format!(
                "pack holds {} bytes, the listing says {}",
                raw.len(),
                p.size
            ),
        }));
    }
    Ok(raw)
}
