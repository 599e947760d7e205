//! The one atomic-write primitive, safe opening of files, and bounded reads.
//!
//! Every durable write in NeuroShard goes through [`AtomicFile`] (or [`write_atomic`]): bytes go to a
//! temporary file in the destination's directory, are fsynced, renamed over the destination, and the
//! directory is fsynced. A crash at any point leaves either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::ManifestError;
use crate::error::{Error, Result};
use crate::path::RepoPath;

/// What the file system said about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number (0 where unavailable).
    pub ino: u64,
    /// Status-change time, nanoseconds since the epoch (0 where unavailable, and in caches
    /// written before it was recorded). Every write and every `utimes` moves it, so an in-place
    /// edit whose writer restored the mtime is still seen (git's racy-index rules).
    #[serde(default)]
    pub ctime_ns: i128,
}

impl StatKey {
    /// Extracts the key from metadata.
    pub fn of(md: &std::fs::Metadata) -> Self {
        let mtime_ns = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        #[cfg(unix)]
        let (ino, ctime_ns) = {
            use std::os::unix::fs::MetadataExt;
            (
                md.ino(),
                md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            )
        };
        #[cfg(not(unix))]
        let (ino, ctime_ns) = (0, 0);
        Self {
            size: md.len(),
            mtime_ns,
            ino,
            ctime_ns,
        }
    }

    /// Whether two stats say the file is unchanged: same size, mtime and inode, and (when
    /// `trust_ctime`) the same status-change time. Filesystems where ctime moves on its own
    /// (some network and FUSE filesystems) turn that part off, as git's `core.trustctime` does.
    pub fn same(&self, other: &StatKey, trust_ctime: bool) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ino == other.ino
            && (!trust_ctime || self.ctime_ns == other.ctime_ns)
    }
}

/// File name prefix of temporary files; work-tree scans ignore such files and checkout removes
/// stale ones left by an interrupted run.
pub const TMP_PREFIX: &str = ".nshard-tmp-";

/// A file being written atomically. Nothing is visible at the destination until [`AtomicFile::commit`];
/// dropping it without committing removes the temporary file.
pub struct AtomicFile {
    tmp: NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts writing a file that will replace `dest`. The temporary file lives in `tmp_dir`, which
    /// must be on the same filesystem as `dest` (its parent directory, or the repo's `.shard/tmp`).
    pub fn create_in(tmp_dir: &Path, dest: &Path) -> Result<Self> {
        Self::create_with(tmp_dir, dest, false)
    }

    /// `private`: the file is created with mode 0600 whatever the mode of the file it replaces
    /// (for files holding secrets); else the replaced file's permission bits are kept, but never
    /// its setuid, setgid or sticky bit: whoever owned the old file, the new one is this
    /// process's, and a setuid file holding new content must never appear.
    fn create_with(tmp_dir: &Path, dest: &Path, private: bool) -> Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(TMP_PREFIX);
        // Not tempfile's private 0600: keep the mode of the file being replaced, or create a new
        // file like any program would (0666 minus the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if private {
                0o600
            } else {
                fs::metadata(dest).map_or(0o666, |m| m.permissions().mode() & 0o777)
            };
            builder.permissions(fs::Permissions::from_mode(mode));
        }
        let tmp = builder
            .tempfile_in(tmp_dir)
            .map_err(Error::io("creating a temporary file in", tmp_dir))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Adopts an already written temporary file (same filesystem as `dest`) as the pending
    /// content of `dest`.
    pub fn from_temp(tmp: NamedTempFile, dest: &Path) -> Self {
        Self {
            tmp,
            dest: dest.to_path_buf(),
        }
    }

    /// Starts writing `dest` with the temporary file beside it.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = parent_dir(dest);
        Self::create_in(dir, dest)
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The destination.
    pub fn dest_path(&self) -> &Path {
        &self.dest
    }

    /// fsyncs the data, renames it over the destination and fsyncs the directory.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(Error::io("syncing", &dest))?;
        crate::crash_point!("atomic-before-rename");
        self.tmp
            .persist(&dest)
            .map_err(|e| Error::io("renaming into place", &dest)(e.error))?;
        sync_dir(parent_dir(&dest))
    }

    /// Like [`AtomicFile::commit`] but never replaces an existing destination (write-if-absent). Returns
    /// `false` when the destination already existed (another writer won; content-addressed data is
    /// identical, so that is a success).
    pub fn commit_if_absent(self) -> Result<bool> {
        let dir = parent_dir(&self.dest).to_path_buf();
        let new = self.persist_if_absent()?;
        if new {
            sync_dir(&dir)?;
        }
        Ok(new)
    }

    /// Like [`AtomicFile::commit_if_absent`] without the final directory fsync: for callers that
    /// write many files into a few directories and fsync each directory once at the end (before
    /// anything refers to the new files).
    pub fn persist_if_absent(self) -> Result<bool> {
        let dest = self.dest;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(Error::io("syncing", &dest))?;
        crate::crash_point!("atomic-before-rename");
        match self.tmp.persist_noclobber(&dest) {
            Ok(_) => Ok(true),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("renaming into place", &dest)(e.error)),
        }
    }
}

/// Many files written atomically together: each goes to a temporary file beside its
/// destination, then one filesystem sync makes them all durable, then each is renamed into place
/// and each directory is synced once. For writing thousands of files at once (a directory unit's
/// checkout), where an fsync per file would dominate. The temporaries are closed while they wait,
/// so a batch never holds a descriptor per file; dropping a batch before
/// [`AtomicBatch::commit`] removes them.
///
/// Every step happens relative to a directory opened from the repository root without
/// following symlinks ([`open_safe_destination`]): the temporary is created in it, and at commit
/// the directory is opened the same way again and must be the same directory (device and inode)
/// before the rename. A directory swapped for a symlink meanwhile makes the commit fail; nothing
/// is written, renamed or removed outside the repository.
pub struct AtomicBatch {
    root: PathBuf,
    pending: Vec<BatchEntry>,
}

struct BatchEntry {
    rel: RepoPath,
    tmp_name: String,
    dest: PathBuf,
    /// The directory's (device, inode) when the temporary was created.
    dir_id: (u64, u64),
}

#[cfg(unix)]
fn dir_id(dir: &impl std::os::fd::AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(dir)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

impl AtomicBatch {
    /// An empty batch for files under `root` (the repository).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            pending: Vec::new(),
        }
    }

    /// A temporary file beside `rel`'s destination (missing directories are created, never
    /// through a symlink), created with `mode` on Unix, to be renamed over it at
    /// [`AtomicBatch::commit`]. Returns the file to write and the destination's path.
    pub fn create(&mut self, rel: &RepoPath, mode: u32) -> Result<(File, PathBuf)> {
        let safe = open_safe_destination(&self.root, rel)?;
        crate::crash_point!("batch-before-temp");
        #[cfg(unix)]
        {
            let (file, tmp_name) = create_temp_in(&safe, mode)?;
            let id = dir_id(&safe.dir).map_err(Error::io("inspecting", &safe.path))?;
            self.pending.push(BatchEntry {
                rel: rel.clone(),
                tmp_name,
                dest: safe.path.clone(),
                dir_id: id,
            });
            Ok((file, safe.path))
        }
        #[cfg(not(unix))]
        {
            let _ = mode;
            let dir = parent_dir(&safe.path);
            let tmp = tempfile::Builder::new()
                .prefix(TMP_PREFIX)
                .tempfile_in(dir)
                .map_err(Error::io("creating a temporary file in", dir))?;
            let (file, path) = tmp.keep().map_err(|e| Error::io("keeping", dir)(e.error))?;
            let tmp_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.pending.push(BatchEntry {
                rel: rel.clone(),
                tmp_name,
                dest: safe.path.clone(),
                dir_id: (0, 0),
            });
            Ok((file, safe.path))
        }
    }

    /// The destination's directory opened again, checked to be the one the temporary was
    /// created in.
    #[cfg(unix)]
    fn reopen(&self, e: &BatchEntry) -> Result<SafeDest> {
        let safe = open_safe_destination(&self.root, &e.rel)?;
        let id = dir_id(&safe.dir).map_err(Error::io("inspecting", &safe.path))?;
        if id != e.dir_id {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: safe.path.display().to_string(),
                reason: "its directory was replaced while it was being checked out",
            }));
        }
        Ok(safe)
    }

    /// Makes every file durable (one `syncfs` of the filesystem holding `fs_dir` on Linux, an
    /// fsync per file elsewhere), renames each into place in the order added, calling
    /// `renamed(i, dest, metadata)` after the `i`th (the metadata read from the renamed file,
    /// not through its path), and returns the directories to fsync once the caller is done
    /// changing them (see [`sync_dir`]).
    pub fn commit(
        mut self,
        fs_dir: &Path,
        mut renamed: impl FnMut(usize, &Path, &fs::Metadata) -> Result<()>,
    ) -> Result<std::collections::BTreeSet<PathBuf>> {
        let mut dirs = std::collections::BTreeSet::new();
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(dirs);
        }
        // Until renamed, a temporary stays in `self.pending` so that an error removes it.
        self.pending = pending;
        #[cfg(target_os = "linux")]
        {
            let f = File::open(fs_dir).map_err(Error::io("opening directory", fs_dir))?;
            rustix::fs::syncfs(&f)
                .map_err(|e| Error::io("syncing the filesystem of", fs_dir)(e.into()))?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = fs_dir;
            for e in &self.pending {
                let tmp = parent_dir(&e.dest).join(&e.tmp_name);
                let f = File::open(&tmp).map_err(Error::io("opening", &e.dest))?;
                f.sync_all().map_err(Error::io("syncing", &e.dest))?;
            }
        }
        crate::crash_point!("batch-before-rename");
        let pending = std::mem::take(&mut self.pending);
        let mut rest = pending.into_iter().enumerate();
        while let Some((i, e)) = rest.next() {
            let done = self.rename_one(&e);
            if let Err(err) = done {
                // Put back what is left (this one included) for Drop to remove.
                self.pending.push(e);
                self.pending.extend(rest.map(|(_, e)| e));
                return Err(err);
            }
            let md = done.expect("checked");
            renamed(i, &e.dest, &md)?;
            dirs.insert(parent_dir(&e.dest).to_path_buf());
        }
        Ok(dirs)
    }

    /// Renames one temporary over its destination; the renamed file's metadata.
    fn rename_one(&self, e: &BatchEntry) -> Result<fs::Metadata> {
        #[cfg(unix)]
        {
            use rustix::fs::{openat, renameat, Mode, OFlags};
            let safe = self.reopen(e)?;
            renameat(
                &safe.dir,
                e.tmp_name.as_str(),
                &safe.dir,
                safe.name.as_str(),
            )
            .map_err(|err| Error::io("renaming into place", &e.dest)(err.into()))?;
            let fd = openat(
                &safe.dir,
                safe.name.as_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map_err(|err| Error::io("inspecting", &e.dest)(err.into()))?;
            File::from(fd)
                .metadata()
                .map_err(Error::io("inspecting", &e.dest))
        }
        #[cfg(not(unix))]
        {
            let tmp = parent_dir(&e.dest).join(&e.tmp_name);
            fs::rename(&tmp, &e.dest).map_err(Error::io("renaming into place", &e.dest))?;
            fs::symlink_metadata(&e.dest).map_err(Error::io("inspecting", &e.dest))
        }
    }
}

impl Drop for AtomicBatch {
    fn drop(&mut self) {
        for e in std::mem::take(&mut self.pending) {
            #[cfg(unix)]
            if let Ok(safe) = self.reopen(&e) {
                let _ = rustix::fs::unlinkat(
                    &safe.dir,
                    e.tmp_name.as_str(),
                    rustix::fs::AtFlags::empty(),
                );
            }
            #[cfg(not(unix))]
            let _ = fs::remove_file(parent_dir(&e.dest).join(&e.tmp_name));
        }
    }
}

/// Writes `data` to `rel` under `root` atomically, in its directory opened without following
/// symlinks ([`open_safe_destination`], [`AtomicAt`]).
pub fn write_atomic_in(root: &Path, rel: &RepoPath, data: &[u8]) -> Result<()> {
    let safe = open_safe_destination(root, rel)?;
    let path = safe.path.clone();
    let mut out = AtomicAt::create(safe)?;
    out.file()
        .write_all(data)
        .map_err(Error::io("writing", &path))?;
    out.commit().map(|_| ())
}

/// Removes the regular file `rel` under `root`, relative to its directory opened without
/// following symlinks (a missing file is not an error).
pub fn remove_file_in(root: &Path, rel: &RepoPath) -> Result<()> {
    let safe = open_safe_destination(root, rel)?;
    #[cfg(unix)]
    {
        match rustix::fs::unlinkat(&safe.dir, safe.name.as_str(), rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("removing", &safe.path)(e.into())),
        }
    }
    #[cfg(not(unix))]
    {
        match fs::remove_file(&safe.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &safe.path)(e)),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.as_file_mut().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.as_file_mut().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Reads exactly `buf.len()` bytes at `offset` without moving the file's position (which a reader
/// on a clone of the descriptor may be using).
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Opens the existing file `path` for reading only if it is a regular file: never through a
/// symlink at its last component, never blocking on a FIFO, never a device or socket. Checked
/// three times, because the name can be swapped between checks: `lstat` first, then the open
/// itself refuses symlinks and does not wait for a FIFO's writer (`O_NOFOLLOW | O_NONBLOCK`), then
/// `fstat` on the open descriptor must show a regular file, the same one `lstat` saw.
/// A refusal is an [`io::ErrorKind::InvalidInput`] error naming what was found.
///
/// A name that another regular file replaced between the `lstat` and the open (a writer putting a
/// new version in place with a rename, as a repack re-encoding an object does) is checked again
/// from the start, a few times: each attempt gives the same guarantees.
pub fn open_regular(path: &Path) -> io::Result<File> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(f) = open_regular_once(path)? {
            return Ok(f);
        }
    }
    Err(replaced())
}

/// The refusal of a name that no longer holds the regular file `lstat` saw.
fn replaced() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "was replaced while it was being opened; not reading it",
    )
}

/// Attempts of [`open_regular`] when the name keeps being replaced by another regular file.
const OPEN_ATTEMPTS: usize = 8;

/// One attempt of [`open_regular`]: `None` when the name now holds another regular file than the
/// one `lstat` saw.
fn open_regular_once(path: &Path) -> io::Result<Option<File>> {
    let md = fs::symlink_metadata(path)?;
    if !md.is_file() {
        return Err(not_regular(&md));
    }
    let mut oo = fs::OpenOptions::new();
    oo.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        oo.custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    }
    let f = oo.open(path)?;
    let md2 = f.metadata()?;
    if !md2.is_file() {
        return Err(replaced());
    }
    #[cfg(unix)]
    let same = {
        use std::os::unix::fs::MetadataExt;
        md.dev() == md2.dev() && md.ino() == md2.ino()
    };
    #[cfg(not(unix))]
    let same = true;
    Ok(same.then_some(f))
}

/// Reads a whole regular file (see [`open_regular`]: never a symlink, FIFO or device),
/// refusing files over `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_limited_into(path, limit, &mut buf)?;
    Ok(buf)
}

/// [`read_limited`] into `buf` (its old contents replaced; a reader of many files keeps one
/// buffer instead of fresh memory for each).
pub fn read_limited_into(path: &Path, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    let f = open_regular(path)?;
    // Sized from the file (within the limit): one allocation and a few large reads, not a buffer
    // doubling from a few bytes (each step a copy and fresh pages for multi-MiB objects).
    let size = usize::try_from(f.metadata().map_or(0, |m| m.len()).min(limit)).unwrap_or(0);
    buf.clear();
    if buf.capacity() < size {
        // Another buffer (pooled, else fresh): growing this one would copy its stale bytes into
        // the new pages (the codec layer's `reserve_fresh` does the same for decoded chunks).
        let old = std::mem::replace(buf, crate::buffers::take(size));
        crate::buffers::give(old);
    }
    f.take(limit + 1).read_to_end(buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {limit}-byte limit"),
        ));
    }
    Ok(())
}

/// What a non-regular file is, as an error.
pub(crate) fn not_regular(md: &fs::Metadata) -> io::Error {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        "a symlink"
    } else if ft.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                "a FIFO (named pipe)"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            }
        }
        #[cfg(not(unix))]
        {
            "not a regular file"
        }
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {kind}, not a regular file; nshard reads only regular files here"),
    )
}

/// fsyncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Opening a directory read-only and fsyncing it is how POSIX makes a rename durable.
    match File::open(dir) {
        Ok(f) => f
            .sync_all()
            .or_else(ignore_unsupported)
            .map_err(Error::io("syncing directory", dir)),
        Err(e) => Err(Error::io("opening directory", dir)(e)),
    }
}

fn ignore_unsupported(e: io::Error) -> io::Result<()> {
    // Some filesystems (and all of Windows) refuse fsync on directories; the rename is still atomic.
    if matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    ) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Writes `data` to `dest` atomically (temp file beside it, fsync, rename, fsync dir).
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(data).map_err(Error::io("writing", dest))?;
    f.commit()
}

/// Removes the temporary files (named [`TMP_PREFIX`]…) in `dir` last modified more than `age`
/// ago: what a writer killed mid-write left behind. Younger ones may belong to a writer still
/// running and are kept. Best effort: a file that cannot be removed is left for the next run.
/// Returns how many were removed.
pub fn sweep_stale_temporaries(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for ent in rd.flatten() {
        let stale = ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX))
            && ent.metadata().is_ok_and(|md| {
                md.is_file()
                    && md
                        .modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|a| a > age)
            });
        if stale && fs::remove_file(ent.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// [`write_atomic`] for a file holding secrets: created with mode 0600 from the start (never
/// readable by others, not even briefly), replacing whatever mode the old file had.
pub fn write_atomic_private(dest: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create_with(parent_dir(dest), dest, true)?;
    f.write_all(data).map_err(Error::io("writing", dest))?;
    f.commit()
}

/// Lexically normalizes a path (`.` dropped, `..` pops) without touching the filesystem.
pub fn normalize_lexically(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io("creating directory", dir))
}

/// The absolute path of the existing regular file `rel` under `root`, refusing it when any
/// component on the way is a symlink, so that commit and status never read a file outside the
/// repository through a planted symlinked directory.
pub fn existing_file_in(root: &Path, rel: &RepoPath) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    let comps: Vec<&str> = rel.as_str().split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let md = fs::symlink_metadata(&cur).map_err(Error::io("reading", &cur))?;
        let last = i + 1 == comps.len();
        if md.file_type().is_symlink() {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: cur.display().to_string(),
                reason: "is a symlink; nshard does not follow symlinks inside the repository",
            }));
        }
        if (last && !md.is_file()) || (!last && !md.is_dir()) {
            return Err(Error::Manifest(ManifestError::UnsafePath {
                path: cur.display().to_string(),
                reason: if last {
                    "is not a regular file"
                } else {
                    "is not a directory"
                },
            }));
        }
    }
    Ok(cur)
}

/// Checks that every existing component of `rel` under `root`, except the last, is a real directory
/// (not a symlink), and that the last, if it exists, is a regular file, not a symlink. Creates missing
/// directories. Returns the absolute destination path. This is what keeps a checkout from writing
/// outside the repository through a planted symlink.
pub fn prepare_safe_destination(root: &Path, rel: &RepoPath) -> Result<PathBuf> {
    let comps: Vec<&str> = rel.as_str().split('/').collect();
    let mut cur = root.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(Error::Manifest(ManifestError::UnsafePath {
                    path: cur.display().to_string(),
                    reason: "is a symlink; nshard never writes through symlinks",
                }))
            }
            Ok(md) if !last && !md.is_dir() => {
                return Err(Error::Manifest(ManifestError::UnsafePath {
                    path: cur.display().to_string(),
                    reason: "is not a directory",
                }))
            }
            Ok(md) if last && !md.is_file() => {
                return Err(Error::Manifest(ManifestError::UnsafePath {
                    path: cur.display().to_string(),
                    reason: "exists and is not a regular file",
                }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !last {
                    fs::create_dir(&cur).map_err(Error::io("creating directory", &cur))?;
                }
            }
            Err(e) => return Err(Error::io("inspecting", &cur)(e)),
        }
    }
    Ok(cur)
}

/// A destination inside the repository whose directory is held open: opened from the root one
/// component at a time without following symlinks (creating missing directories on the way), so
/// that the write and the rename that follow happen in that directory even if a component is
/// swapped for a symlink meanwhile (see [`AtomicAt`]).
pub struct SafeDest {
    /// The absolute path, for messages and for later reads.
    pub path: PathBuf,
    #[cfg(unix)]
    dir: std::os::fd::OwnedFd,
    #[cfg(unix)]
    name: String,
}

/// [`prepare_safe_destination`]'s checks, keeping the destination's directory open.
pub fn open_safe_destination(root: &Path, rel: &RepoPath) -> Result<SafeDest> {
    #[cfg(unix)]
    {
        use rustix::fs::{mkdirat, openat, statat, AtFlags, FileType, Mode, OFlags, CWD};
        let unsafe_path = |p: &Path, reason| {
            Error::Manifest(ManifestError::UnsafePath {
                path: p.display().to_string(),
                reason,
            })
        };
        let dir_flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
        let mut dir = openat(CWD, root, dir_flags, Mode::empty())
            .map_err(|e| Error::io("opening", root)(e.into()))?;
        let comps: Vec<&str> = rel.as_str().split('/').collect();
        let mut cur = root.to_path_buf();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            if i + 1 == comps.len() {
                match statat(&dir, *c, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Symlink => {
                            return Err(unsafe_path(
                                &cur,
                                "is a symlink; nshard never writes through symlinks",
                            ))
                        }
                        FileType::RegularFile => {}
                        _ => return Err(unsafe_path(&cur, "exists and is not a regular file")),
                    },
                    Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(Error::io("inspecting", &cur)(e.into())),
                }
                return Ok(SafeDest {
                    path: cur,
                    dir,
                    name: (*c).to_string(),
                });
            }
            let next = match openat(&dir, *c, dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    match mkdirat(&dir, *c, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(Error::io("creating directory", &cur)(e.into())),
                    }
                    openat(&dir, *c, dir_flags, Mode::empty()).map_err(|e| match e {
                        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => unsafe_path(
                            &cur,
                            "is a symlink or not a directory; nshard never writes through symlinks",
                        ),
                        e => Error::io("opening", &cur)(e.into()),
                    })?
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(unsafe_path(
                        &cur,
                        "is a symlink or not a directory; nshard never writes through symlinks",
                    ))
                }
                Err(e) => return Err(Error::io("opening", &cur)(e.into())),
            };
            dir = next;
        }
        Err(unsafe_path(root, "is not a path inside the repository"))
    }
    #[cfg(not(unix))]
    {
        Ok(SafeDest {
            path: prepare_safe_destination(root, rel)?,
        })
    }
}

/// `mode` (permission bits only) with the execute bits set where its read bits are, or cleared.
pub fn exec_mode(mode: u32, executable: bool) -> u32 {
    let mode = mode & 0o777;
    if executable {
        mode | ((mode & 0o444) >> 2)
    } else {
        mode & !0o111
    }
}

/// A new temporary file in `dest`'s directory, created with `mode` (less the umask). Returns it
/// and its name.
#[cfg(unix)]
fn create_temp_in(dest: &SafeDest, mode: u32) -> Result<(File, String)> {
    use rustix::fs::{openat, Mode, OFlags};
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..64 {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp_name = format!("{TMP_PREFIX}{:x}-{stamp:x}-{seq:x}", std::process::id());
        match openat(
            &dest.dir,
            tmp_name.as_str(),
            flags,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => return Ok((File::from(fd), tmp_name)),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => {
                return Err(Error::io("creating a temporary file beside", &dest.path)(
                    e.into(),
                ))
            }
        }
    }
    Err(Error::io("creating a temporary file beside", &dest.path)(
        io::ErrorKind::AlreadyExists.into(),
    ))
}

/// A file written to a temporary beside its [`SafeDest`] and renamed over it, both relative to
/// the destination's open directory (never by path): the atomic write of a checkout. The
/// temporary is removed if the write is dropped before [`AtomicAt::commit`].
pub struct AtomicAt {
    #[cfg(unix)]
    dest: SafeDest,
    #[cfg(unix)]
    tmp_name: String,
    #[cfg(unix)]
    file: File,
    #[cfg(unix)]
    committed: bool,
    #[cfg(not(unix))]
    inner: AtomicFile,
}

impl AtomicAt {
    /// Like [`AtomicAt::create`], with the execute bits set (where the read bits are) or
    /// cleared as `executable` says: the mode a checkout of a version gives its file.
    pub fn create_for_version(dest: SafeDest, executable: bool) -> Result<Self> {
        Self::create_with(dest, |mode| exec_mode(mode, executable))
    }

    /// Starts writing `dest`: keeps the replaced file's permission bits (never setuid, setgid or
    /// sticky), else 0666 less the umask, as [`AtomicFile`] does.
    pub fn create(dest: SafeDest) -> Result<Self> {
        Self::create_with(dest, |mode| mode)
    }

    /// Starts writing `dest` with the mode `adjust` makes of the replaced file's permission bits
    /// (0666 when there is none; the umask applies).
    fn create_with(dest: SafeDest, adjust: impl FnOnce(u32) -> u32) -> Result<Self> {
        #[cfg(unix)]
        {
            use rustix::fs::{statat, AtFlags};
            let base = statat(&dest.dir, dest.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_or(0o666, |st| st.st_mode & 0o777);
            let (file, tmp_name) = create_temp_in(&dest, adjust(base))?;
            Ok(Self {
                dest,
                tmp_name,
                file,
                committed: false,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = adjust;
            Ok(Self {
                inner: AtomicFile::create(&dest.path)?,
            })
        }
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        #[cfg(unix)]
        {
            &mut self.file
        }
        #[cfg(not(unix))]
        {
            self.inner.file()
        }
    }

    /// fsyncs the data, renames it over the destination within its directory and fsyncs the
    /// directory. Returns the written file's metadata (read from the open file, not the path).
    pub fn commit(mut self) -> Result<fs::Metadata> {
        #[cfg(unix)]
        {
            let path = self.dest.path.clone();
            self.file.sync_all().map_err(Error::io("syncing", &path))?;
            crate::crash_point!("atomic-before-rename");
            rustix::fs::renameat(
                &self.dest.dir,
                self.tmp_name.as_str(),
                &self.dest.dir,
                self.dest.name.as_str(),
            )
            .map_err(|e| Error::io("renaming into place", &path)(e.into()))?;
            self.committed = true;
            // After the rename, which moves the file's ctime.
            let md = self.file.metadata().map_err(Error::io("reading", &path))?;
            rustix::fs::fsync(&self.dest.dir).map_err(|e| Error::io("syncing", &path)(e.into()))?;
            Ok(md)
        }
        #[cfg(not(unix))]
        {
            let path = self.inner.dest_path().to_path_buf();
            self.inner.commit()?;
            fs::symlink_metadata(&path).map_err(Error::io("reading", &path))
        }
    }
}

#[cfg(unix)]
impl Drop for AtomicAt {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(
                &self.dest.dir,
                self.tmp_name.as_str(),
                rustix::fs::AtFlags::empty(),
            );
        }
    }
}

/// Streams a regular file (never through a symlink or into a FIFO, see [`open_regular`]) through
/// SHA-256; an error names the file.
pub fn hash_file(path: &Path) -> Result<crate::id::ObjectId> {
    use std::io::Read;
    let read = || -> io::Result<crate::id::ObjectId> {
        let mut f = open_regular(path)?;
        let mut h = crate::id::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    };
    read().map_err(Error::io("reading", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        {
            let mut f = AtomicFile::create(&p).expect("create");
            f.write_all(b"never").expect("write");
            // dropped without commit
        }
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    /// A file that a writer keeps replacing with renames (as a repack re-encodes objects) is
    /// always read whole, one version or another, never refused as swapped.
    #[test]
    fn open_regular_reads_a_file_replaced_by_renames() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("object");
        let versions: Vec<Vec<u8>> = (0..4u8).map(|k| vec![k; 64 * 1024]).collect();
        write_atomic(&p, &versions[0]).expect("write");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let started = std::time::Instant::now();
                let mut k = 0;
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < std::time::Duration::from_secs(10)
                {
                    k = (k + 1) % versions.len();
                    // Written beside and renamed over it (no fsync: many renames a second).
                    let tmp = dir.path().join("object.tmp");
                    fs::write(&tmp, &versions[k]).expect("write");
                    fs::rename(&tmp, &p).expect("replace");
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            });
            for _ in 0..2000 {
                let got = read_limited(&p, 1 << 20).expect("read while replaced");
                assert!(versions.contains(&got), "a whole version");
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_keeps_the_existing_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_atomic(&p, b"one").expect("write");
        // A new file gets the same mode as one made by plain `fs::write` (0666 minus the umask).
        let plain = dir.path().join("plain");
        fs::write(&plain, b"x").expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("md").permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&plain));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(mode(&p), 0o640);
    }

    #[test]
    fn write_if_absent_keeps_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("obj");
        let mut a = AtomicFile::create(&p).expect("create");
        a.write_all(b"x").expect("w");
        assert!(a.commit_if_absent().expect("commit"));
        let mut b = AtomicFile::create(&p).expect("create");
        b.write_all(b"y").expect("w");
        assert!(!b.commit_if_absent().expect("commit"));
        assert_eq!(fs::read(&p).expect("read"), b"x");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinked_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        let rel = RepoPath::parse("link/file").expect("path");
        assert!(prepare_safe_destination(dir.path(), &rel).is_err());
    }
}
