//! Which kind of manifest a file holds: a single file's, or a directory unit's. Decided from the
//! format tag at the start of the file, before anything else is parsed.

/// The format tag of directory manifests.
pub const DIR_FORMAT: &str = "neuroshard.dir/1";

/// Whether `bytes` (a manifest file's start is enough) is a directory manifest.
pub fn is_dir_manifest(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let needle = format!("\"format\": \"{DIR_FORMAT}\"");
    let compact = format!("\"format\":\"{DIR_FORMAT}\"");
    let s = String::from_utf8_lossy(head);
    s.contains(&needle) || s.contains(&compact)
}

/// Whether the manifest file at `path` is a directory manifest (reads its first bytes; anything
/// unreadable is not).
pub(crate) fn peek_is_dir_manifest(path: &std::path::Path) -> bool {
    use std::io::Read;
    let Ok(f) = crate::fsutil::open_regular(path) else {
        return false;
    };
    let mut buf = Vec::with_capacity(512);
    f.take(512).read_to_end(&mut buf).is_ok() && is_dir_manifest(&buf)
}
