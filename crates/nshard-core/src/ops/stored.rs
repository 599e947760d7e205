//! Random access to a stored version's bytes, for callers that need only a few ranges of a file
//! (a format's header, a zip's central directory). Each chunk is verified as it is loaded.

use std::io;

use crate::formats::Source;
use crate::manifest::{ChunkRef, Manifest};
use crate::store::LocalStore;

/// A stored version as a [`Source`].
pub(crate) struct StoredSource<'a> {
    store: &'a LocalStore,
    chunks: &'a [ChunkRef],
    size: u64,
    /// The last chunk loaded: (index, bytes).
    cached: Option<(usize, Vec<u8>)>,
}

impl<'a> StoredSource<'a> {
    pub(crate) fn new(store: &'a LocalStore, m: &'a Manifest) -> Self {
        Self {
            store,
            chunks: &m.chunks,
            size: m.size,
            cached: None,
        }
    }
}

impl Source for StoredSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        while !buf.is_empty() {
            // Manifests are validated: chunks are contiguous from 0 and cover the file.
            let i = self.chunks.partition_point(|c| c.offset + c.size <= offset);
            let c = self.chunks.get(i).ok_or(io::ErrorKind::UnexpectedEof)?;
            if self.cached.as_ref().is_none_or(|(ci, _)| *ci != i) {
                let data = self
                    .store
                    .get(&c.id, c.size)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                self.cached = Some((i, data));
            }
            let data = &self.cached.as_ref().expect("just loaded").1;
            let from = (offset - c.offset) as usize;
            let n = buf.len().min(data.len().saturating_sub(from));
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf[..n].copy_from_slice(&data[from..from + n]);
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}
