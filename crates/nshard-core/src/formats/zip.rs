//! Just enough of the zip format to find the entries of an archive and where each one's data
//! lies: the end-of-central-directory record (zip64 too), the central directory, and each local
//! header's length. Nothing is decompressed; sizes and offsets are checked against the file.

use super::{read_vec, ParseError, Source};

/// Most entries read from one archive.
pub(crate) const MAX_ENTRIES: u64 = 4_000_000;
/// Largest central directory read.
const MAX_CENTRAL_DIR: u64 = 512 << 20;

/// One entry of the central directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// 0: stored; anything else is compressed.
    pub(crate) method: u16,
    pub(crate) compressed_size: u64,
    pub(crate) size: u64,
    local_offset: u64,
}

fn bad(why: impl Into<String>) -> ParseError {
    ParseError::Invalid(why.into())
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Reads the central directory.
pub(crate) fn entries(src: &mut dyn Source) -> Result<Vec<Entry>, ParseError> {
    let size = src.size();
    let tail_len = size.min(22 + 65535);
    let tail = read_vec(src, size - tail_len, tail_len)?;
    let at = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("no end of central directory record (truncated?)"))?;
    let eocd = &tail[at..];
    let eocd_pos = size - tail_len + at as u64;
    let mut count = u64::from(u16_at(eocd, 10));
    let mut cd_size = u64::from(u32_at(eocd, 12));
    let mut cd_offset = u64::from(u32_at(eocd, 16));
    if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        // Zip64: a locator just before the record points at the zip64 record.
        if eocd_pos < 20 {
            return Err(bad("zip64 locator missing"));
        }
        let loc = read_vec(src, eocd_pos - 20, 20)?;
        if !loc.starts_with(b"PK\x06\x07") {
            return Err(bad("zip64 locator missing"));
        }
        let rec_at = u64_at(&loc, 8);
        let rec = read_vec(src, rec_at, 56)?;
        if !rec.starts_with(b"PK\x06\x06") {
            return Err(bad("zip64 end of central directory record missing"));
        }
        count = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_offset = u64_at(&rec, 48);
    }
    if count > MAX_ENTRIES || cd_size > MAX_CENTRAL_DIR || count > cd_size / 46 {
        return Err(bad(format!(
            "central directory of {count} entries in {cd_size} bytes is implausible"
        )));
    }
    let cd = read_vec(src, cd_offset, cd_size)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut p = 0usize;
    for _ in 0..count {
        if p + 46 > cd.len() || !cd[p..].starts_with(b"PK\x01\x02") {
            return Err(bad("central directory entry is malformed"));
        }
        let h = &cd[p..p + 46];
        let (n, m, k) = (
            u16_at(h, 28) as usize,
            u16_at(h, 30) as usize,
            u16_at(h, 32) as usize,
        );
        if p + 46 + n + m + k > cd.len() {
            return Err(bad("central directory entry runs past the directory"));
        }
        let name = String::from_utf8_lossy(&cd[p + 46..p + 46 + n]).into_owned();
        let mut e = Entry {
            name,
            method: u16_at(h, 10),
            compressed_size: u64::from(u32_at(h, 20)),
            size: u64::from(u32_at(h, 24)),
            local_offset: u64::from(u32_at(h, 42)),
        };
        zip64_extra(&cd[p + 46 + n..p + 46 + n + m], &mut e)?;
        out.push(e);
        p += 46 + n + m + k;
    }
    Ok(out)
}

/// Applies a zip64 extended-information extra field: the 64-bit values replace, in order, those
/// of the 32-bit fields that hold 0xffffffff.
fn zip64_extra(mut extra: &[u8], e: &mut Entry) -> Result<(), ParseError> {
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
        if extra.len() < 4 + len {
            return Err(bad("extra field runs past its entry"));
        }
        if id == 1 {
            let mut f = &extra[4..4 + len];
            for v in [&mut e.size, &mut e.compressed_size, &mut e.local_offset] {
                if *v == 0xffff_ffff {
                    if f.len() < 8 {
                        return Err(bad("zip64 extra field too short"));
                    }
                    *v = u64_at(f, 0);
                    f = &f[8..];
                }
            }
        }
        extra = &extra[4 + len..];
    }
    Ok(())
}

/// Where an entry's (stored) bytes lie in the file.
pub(crate) fn data_range(src: &mut dyn Source, e: &Entry) -> Result<(u64, u64), ParseError> {
    let h = read_vec(src, e.local_offset, 30)?;
    if !h.starts_with(b"PK\x03\x04") {
        return Err(bad(format!("no local header for entry {:?}", e.name)));
    }
    let start = e.local_offset + 30 + u64::from(u16_at(&h, 26)) + u64::from(u16_at(&h, 28));
    let end = start
        .checked_add(e.compressed_size)
        .filter(|&end| end <= src.size())
        .ok_or_else(|| bad(format!("entry {:?} runs past the end of the file", e.name)))?;
    Ok((start, end))
}

#[cfg(test)]
pub(crate) mod tests {
    /// A stored (uncompressed) zip of `entries`, each data start padded to `align` bytes with an
    /// extra field, as PyTorch's writer does. CRCs are left zero: nothing here reads them.
    pub(crate) fn stored_zip(entries: &[(&str, &[u8])], align: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let off = out.len();
            let base = off + 30 + name.len();
            let pad = if align > 1 {
                (align - (base + 4) % align) % align + 4
            } else {
                0
            };
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(pad as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            if pad > 0 {
                out.extend_from_slice(&0xfeedu16.to_le_bytes());
                out.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
                out.resize(out.len() + pad - 4, b'Z');
            }
            out.extend_from_slice(data);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&(off as u32).to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_at = out.len();
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&(cd_at as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn finds_entries_and_their_data() {
        let z = stored_zip(&[("a/x", b"hello"), ("a/data/0", &[7u8; 100])], 64);
        let mut s: &[u8] = &z;
        let es = super::entries(&mut s).expect("zip");
        assert_eq!(es.len(), 2);
        let (a, b) = super::data_range(&mut s, &es[1]).expect("range");
        assert_eq!(a % 64, 0);
        assert_eq!(&z[a as usize..b as usize], &[7u8; 100]);
        for cut in [0, 10, z.len() - 30, z.len() - 1] {
            let mut t: &[u8] = &z[..cut];
            assert!(super::entries(&mut t).is_err(), "cut {cut}");
        }
    }
}
