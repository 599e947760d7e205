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

impl StoredSource<'_> {
    /// The chunk holding byte `offset`, loaded (and verified) unless it is the cached one: its
    /// offset in the file and its bytes.
    fn chunk_at(&mut self, offset: u64) -> io::Result<(u64, &[u8])> {
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
        Ok((c.offset, &self.cached.as_ref().expect("just loaded").1))
    }
}

impl Source for StoredSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn view(&mut self, offset: u64, max: usize) -> io::Result<&[u8]> {
        if offset >= self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let data = self.chunk_at(offset)?;
        let (c_offset, bytes) = data;
        let from = (offset - c_offset) as usize;
        let rest = bytes.get(from..).ok_or(io::ErrorKind::UnexpectedEof)?;
        if rest.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(&rest[..rest.len().min(max)])
    }

    fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        while !buf.is_empty() {
            let (c_offset, data) = self.chunk_at(offset)?;
            let from = (offset - c_offset) as usize;
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
