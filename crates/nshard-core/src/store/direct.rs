//! Sequential writes that bypass the page cache (`O_DIRECT`) where the filesystem allows it.
//!
//! Commit writes every new object and checkout writes every rebuilt file, and both fsync what they
//! write. Through the page cache each byte is first copied into freshly allocated cache pages; on
//! the virtual machines we measured, that allocation and copy cost more CPU than hashing the same
//! bytes (≈ 2.4 s of system time per GiB, against ≈ 0.1 s with `O_DIRECT`), and the pages are then
//! written out by the fsync anyway. With `O_DIRECT` the disk reads the bytes straight from an
//! aligned buffer of ours.
//!
//! `O_DIRECT` needs the memory address, the file offset and the length of each write to be
//! multiples of the device's block size; [`ALIGN`] (4096) covers every common device. Data that
//! starts at an aligned address while nothing waits in the window (with mimalloc, which the
//! `nshard` binary uses, large allocations do) is written in place, whole blocks at a time; other
//! bytes are gathered in an aligned window and written a window at a time; the last, partial block is
//! zero-padded and the file is then truncated to its real length. Where `O_DIRECT` cannot be set
//! (tmpfs, some network filesystems, non-Linux systems) or a direct write is refused, the writer
//! falls back to ordinary buffered writes for the rest of the file: slower, never wrong.

use std::fs::File;
use std::io;
#[cfg(unix)]
use std::os::unix::fs::FileExt;

/// Alignment of buffers, offsets and lengths of direct writes.
pub const ALIGN: usize = 4096;

/// Writes shorter than this go through the page cache: setting up a direct write costs more than
/// it saves.
const MIN_DIRECT: usize = 64 * 1024;

/// Largest window [`write_file`] copies unaligned data through: the syncers' buffers stay this
/// size whatever the objects' sizes (each a few MiB to fault in otherwise).
const WRITE_WINDOW: usize = 1 << 20;

/// A reusable buffer for [`DirectWriter`]: keep one per thread so windows are allocated once.
#[derive(Default)]
pub struct DirectBuf {
    mem: Vec<u8>,
}

impl DirectBuf {
    /// A buffer whose window will hold `window` bytes (rounded up to [`ALIGN`]).
    pub fn with_window(window: usize) -> Self {
        let mut b = Self::default();
        b.ensure(window);
        b
    }

    /// Makes room for an aligned window of at least `window` bytes; returns (start, capacity).
    fn ensure(&mut self, window: usize) -> (usize, usize) {
        let cap = window.div_ceil(ALIGN).max(1) * ALIGN;
        if self.mem.len() < cap + ALIGN {
            self.mem = vec![0; cap + ALIGN];
        }
        (self.mem.as_ptr().align_offset(ALIGN), cap)
    }
}

/// Writes a file from offset 0, in order, without the page cache where possible. Call
/// [`DirectWriter::finish`] to write the tail and set the file's length; dropping the writer
/// without it leaves the file incomplete (callers write temporary files, so that is harmless).
pub struct DirectWriter<'a> {
    file: &'a File,
    buf: &'a mut DirectBuf,
    start: usize,
    cap: usize,
    len: usize,
    /// Bytes already written to the file (a multiple of `ALIGN` while `direct`).
    pos: u64,
    direct: bool,
}

impl<'a> DirectWriter<'a> {
    /// Starts writing `file` (empty, opened for writing) through `buf`'s window of at least
    /// `window` bytes. `expected_len` is a hint: small files are written through the page cache.
    pub fn new(file: &'a File, buf: &'a mut DirectBuf, window: usize, expected_len: u64) -> Self {
        let (start, cap) = buf.ensure(window);
        let direct = expected_len >= MIN_DIRECT as u64 && set_direct(file, true);
        Self {
            file,
            buf,
            start,
            cap,
            len: 0,
            pos: 0,
            direct,
        }
    }

    /// Whether writes currently bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if !self.direct {
                // From the start, or since a direct write was refused (the window was written
                // out then): the rest goes straight to the file, in order.
                return self.write_buffered(data);
            }
            if self.len == 0 && data.as_ptr().align_offset(ALIGN) == 0 {
                // Aligned already (mimalloc's large allocations are; glibc's are not): written in
                // place, whole blocks at a time, without a copy through the window.
                let n = data.len() / ALIGN * ALIGN;
                if n > 0 {
                    self.write_in_place(&data[..n])?;
                    data = &data[n..];
                    continue;
                }
            }
            let n = data.len().min(self.cap - self.len);
            let at = self.start + self.len;
            self.buf.mem[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == self.cap {
                self.flush_window(self.cap)?;
            }
        }
        Ok(())
    }

    /// Writes what is left and sets the file's length. Returns the number of bytes written.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.len > 0 {
            let real = self.pos + self.len as u64;
            let tail = self.len;
            let padded = tail.div_ceil(ALIGN) * ALIGN;
            let at = self.start + tail;
            self.buf.mem[at..self.start + padded].fill(0);
            self.flush_window(padded)?;
            // Always cut the padding off, even after a fallback (a refused padded write may have
            // partly landed past the real end).
            if padded != tail || self.pos != real {
                self.file.set_len(real)?;
                self.pos = real;
            }
        }
        if self.direct {
            // Leave the descriptor as it was opened: later readers or writers of it (fsync,
            // rename, a caller's own writes) expect ordinary semantics.
            set_direct(self.file, false);
        }
        Ok(self.pos)
    }

    /// Writes the first `n` bytes of the window (n a multiple of ALIGN) at `pos`. Only called
    /// while `direct`.
    fn flush_window(&mut self, n: usize) -> io::Result<()> {
        let window = &self.buf.mem[self.start..self.start + n];
        if !direct_write(self.file, window, self.pos)? {
            // The filesystem took O_DIRECT at open but refuses this write (alignment rules
            // stricter than ALIGN): write the window again through the page cache.
            self.go_buffered();
            let keep = self.len.min(n);
            let data = &self.buf.mem[self.start..self.start + keep];
            write_all_at(self.file, data, self.pos)?;
            self.pos += keep as u64;
            self.len = 0;
            return Ok(());
        }
        self.pos += n as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes `data` (at an aligned address, a multiple of ALIGN long) at `pos` with the window
    /// empty. Only called while `direct`; a refused write goes through the page cache.
    fn write_in_place(&mut self, data: &[u8]) -> io::Result<()> {
        if !direct_write(self.file, data, self.pos)? {
            self.go_buffered();
            write_all_at(self.file, data, self.pos)?;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// After a refused direct write: the rest of the file goes through the page cache.
    fn go_buffered(&mut self) {
        self.direct = false;
        set_direct(self.file, false);
    }

    fn write_buffered(&mut self, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(
            self.len, 0,
            "nothing may wait in the window in buffered mode"
        );
        write_all_at(self.file, data, self.pos)?;
        self.pos += data.len() as u64;
        Ok(())
    }
}

/// A direct write of `data` at `offset`: `false` when the filesystem refuses it (`EINVAL`:
/// alignment rules stricter than [`ALIGN`]; a refused write may have partly landed, and is
/// written again by the caller).
fn direct_write(file: &File, data: &[u8], offset: u64) -> io::Result<bool> {
    #[cfg(test)]
    let written = tests::inject_einval().map_or_else(|| write_all_at(file, data, offset), Err);
    #[cfg(not(test))]
    let written = write_all_at(file, data, offset);
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes all of `data` at `offset`.
fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        file.write_all_at(data, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(data)
    }
}

/// Turns `O_DIRECT` on or off for `file`; returns whether it is now in the requested state.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    #[cfg(test)]
    if on && tests::refuse_direct() {
        return false;
    }
    let Ok(flags) = fcntl_getfl(file) else {
        return !on;
    };
    let wanted = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    wanted == flags || fcntl_setfl(file, wanted).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> bool {
    !on
}

/// Writes `data` as the whole content of the empty `file`, bypassing the page cache for large
/// data where possible.
pub fn write_file(file: &File, data: &[u8], buf: &mut DirectBuf) -> io::Result<()> {
    if data.len() < MIN_DIRECT {
        return write_all_at(file, data, 0);
    }
    // The window takes only what is not written in place: all of `data` when it is not
    // aligned, at most a block otherwise (the tail).
    let window = if data.as_ptr().align_offset(ALIGN) == 0 {
        ALIGN
    } else {
        data.len().min(WRITE_WINDOW)
    };
    let mut w = DirectWriter::new(file, buf, window, data.len() as u64);
    w.write_all(data)?;
    w.finish().map(|_| ())
}

/// [`write_file`] with a buffer of its own, for callers that write one file now and then.
pub fn write_file_once(file: &File, data: &[u8]) -> io::Result<()> {
    write_file(file, data, &mut DirectBuf::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Direct writes left before the next one fails with EINVAL (None: never).
        static EINVAL_AFTER: Cell<Option<usize>> = const { Cell::new(None) };
        /// Direct writes refused so far by [`inject_einval`].
        static EINVAL_COUNT: Cell<usize> = const { Cell::new(0) };
        /// Whether setting O_DIRECT is refused, as on a filesystem without direct I/O.
        static REFUSE_DIRECT: Cell<bool> = const { Cell::new(false) };
        /// Direct writes tried so far (refused ones included).
        static DIRECT_TRIED: Cell<usize> = const { Cell::new(0) };
    }

    /// Fault injection for every direct write ([`direct_write`]: window flushes and writes in
    /// place): a filesystem that takes O_DIRECT at open but refuses a later write (alignment
    /// stricter than ALIGN). Counts the writes tried.
    pub(super) fn inject_einval() -> Option<io::Error> {
        DIRECT_TRIED.with(|n| n.set(n.get() + 1));
        EINVAL_AFTER.with(|c| match c.get() {
            Some(0) => {
                EINVAL_COUNT.with(|n| n.set(n.get() + 1));
                Some(io::ErrorKind::InvalidInput.into())
            }
            Some(n) => {
                c.set(Some(n - 1));
                None
            }
            None => None,
        })
    }

    /// Fault injection for [`set_direct`]: a filesystem that refuses O_DIRECT altogether.
    pub(super) fn refuse_direct() -> bool {
        REFUSE_DIRECT.with(Cell::get)
    }

    /// Whether files in `dir` open with O_DIRECT, probed with `open(2)` itself rather than with
    /// the code under test.
    fn direct_io_works_in(dir: &std::path::Path) -> bool {
        use rustix::fs::{open, Mode, OFlags};
        let probe = dir.join("o_direct_probe");
        let opened = open(
            &probe,
            OFlags::CREATE | OFlags::WRONLY | OFlags::DIRECT,
            Mode::from_raw_mode(0o600),
        );
        let _ = std::fs::remove_file(&probe);
        opened.is_ok()
    }

    /// A temporary directory on a filesystem that takes O_DIRECT, which `test` needs to check what
    /// it names. Without one the test cannot fail: it fails in CI (the `CI` variable is set) and
    /// reports a skip loudly elsewhere.
    fn direct_dir(test: &str) -> Option<tempfile::TempDir> {
        let d = tempfile::tempdir().expect("tmp");
        if direct_io_works_in(d.path()) {
            return Some(d);
        }
        let msg = format!("{test}: SKIPPED: {} refuses O_DIRECT", d.path().display());
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg}; CI must run it on a filesystem that takes O_DIRECT"
        );
        eprintln!("*** {msg} ***");
        None
    }

    /// A direct write refused mid-file: the rest goes through the page cache, bytes in order,
    /// whatever the piece sizes and wherever the refusal happens (first window, later window, the
    /// padded tail).
    #[test]
    fn a_direct_write_refused_mid_file_keeps_every_byte_in_order() {
        let Some(d) = direct_dir("a_direct_write_refused_mid_file_keeps_every_byte_in_order")
        else {
            return;
        };
        // Five full 64 KiB windows and a padded tail: six direct writes (the data is not aligned,
        // so it goes through the window).
        let n = (5 << 16) + 777;
        let (backing, start) = aligned_pattern(n + 1);
        let data = &backing[start + 1..start + 1 + n];
        for fail_after in 0..7 {
            for piece in [1000usize, 65_536, 100_003, data.len()] {
                EINVAL_AFTER.with(|c| c.set(Some(fail_after)));
                EINVAL_COUNT.with(|c| c.set(0));
                let path = d.path().join(format!("f{fail_after}-{piece}"));
                let file = File::create(&path).expect("create");
                let mut buf = DirectBuf::default();
                let mut w = DirectWriter::new(&file, &mut buf, 1 << 16, data.len() as u64);
                assert!(w.is_direct(), "O_DIRECT was not in use to begin with");
                for p in data.chunks(piece) {
                    w.write_all(p).expect("write");
                }
                assert_eq!(w.finish().expect("finish"), data.len() as u64);
                EINVAL_AFTER.with(|c| c.set(None));
                assert_eq!(
                    EINVAL_COUNT.with(Cell::get),
                    usize::from(fail_after < 6),
                    "refused after {fail_after} writes: one refusal, then buffered writes"
                );
                drop(file);
                let got = std::fs::read(&path).expect("read");
                assert!(
                    got == data,
                    "refused after {fail_after} writes, pieces of {piece}: content differs"
                );
            }
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    /// A pattern with room for `n` bytes from an [`ALIGN`]-aligned start, and that start.
    fn aligned_pattern(n: usize) -> (Vec<u8>, usize) {
        let backing = pattern(n + ALIGN);
        let start = backing.as_ptr().align_offset(ALIGN);
        (backing, start)
    }

    /// Data at an aligned address is written in place (the window takes only the tail), and a
    /// refusal of the in-place write or of the tail keeps every byte in order.
    #[test]
    fn aligned_data_is_written_in_place_and_survives_a_refusal() {
        let Some(d) = direct_dir("aligned_data_is_written_in_place_and_survives_a_refusal") else {
            return;
        };
        let n = (3 << 20) + 777;
        let (backing, start) = aligned_pattern(n);
        let data = &backing[start..start + n];
        // In place: the aligned blocks in one direct write, then the padded tail (two writes);
        // a refusal turns the rest buffered.
        for (fail_after, tried) in [(None, 2), (Some(0), 1), (Some(1), 2)] {
            EINVAL_AFTER.with(|c| c.set(fail_after));
            EINVAL_COUNT.with(|c| c.set(0));
            DIRECT_TRIED.with(|c| c.set(0));
            let path = d.path().join(format!("f{fail_after:?}"));
            let file = File::create(&path).expect("create");
            let mut buf = DirectBuf::default();
            write_file(&file, data, &mut buf).expect("write");
            EINVAL_AFTER.with(|c| c.set(None));
            assert!(
                buf.mem.len() <= 2 * ALIGN,
                "aligned data was copied through a window of {} bytes",
                buf.mem.len()
            );
            assert_eq!(
                EINVAL_COUNT.with(Cell::get),
                usize::from(fail_after.is_some()),
                "refused after {fail_after:?} writes"
            );
            assert_eq!(
                DIRECT_TRIED.with(Cell::get),
                tried,
                "direct writes tried, refused after {fail_after:?}"
            );
            drop(file);
            let got = std::fs::read(&path).expect("read");
            assert!(got == data, "refused after {fail_after:?}: content differs");
        }
    }

    /// A writer fed pieces that start aligned and unaligned, with the window empty or not,
    /// keeps every byte in order, whichever of its direct writes is refused.
    #[test]
    fn pieces_aligned_or_not_keep_every_byte_in_order() {
        let Some(d) = direct_dir("pieces_aligned_or_not_keep_every_byte_in_order") else {
            return;
        };
        let n = 300_000;
        let (backing, start) = aligned_pattern(n);
        let data = &backing[start..start + n];
        // In place (3 blocks), in place then 904 bytes to the window, unaligned through the
        // window, an aligned start with the window not empty (copied), the rest.
        let cuts = [
            0,
            3 * ALIGN,
            3 * ALIGN + 5000,
            40_000,
            16 * ALIGN,
            200_001,
            n,
        ];
        let mut tried_without_refusal = None;
        for fail_after in (0..12).map(Some).chain([None]) {
            EINVAL_AFTER.with(|c| c.set(fail_after));
            DIRECT_TRIED.with(|c| c.set(0));
            let path = d.path().join(format!("p{fail_after:?}"));
            let file = File::create(&path).expect("create");
            let mut buf = DirectBuf::default();
            let mut w = DirectWriter::new(&file, &mut buf, 1 << 16, n as u64);
            assert!(w.is_direct(), "O_DIRECT was not in use to begin with");
            for piece in cuts.windows(2) {
                w.write_all(&data[piece[0]..piece[1]]).expect("write");
            }
            assert_eq!(w.finish().expect("finish"), n as u64);
            EINVAL_AFTER.with(|c| c.set(None));
            if fail_after.is_none() {
                tried_without_refusal = Some(DIRECT_TRIED.with(Cell::get));
            }
            drop(file);
            let got = std::fs::read(&path).expect("read");
            assert!(
                got == data,
                "refused after {fail_after:?} writes: content differs"
            );
        }
        // In place 3 blocks, in place 1 block, a full window, in place 28 blocks, a full window,
        // in place 9 blocks (the window's end fell on an aligned byte), the padded tail; through
        // the window alone it would be 4 windows and the tail.
        assert_eq!(tried_without_refusal, Some(7), "direct writes");
    }

    /// Writes files of `sizes` through windows of `window` bytes and reads them back; `direct`:
    /// whether writers of at least [`MIN_DIRECT`] bytes must be bypassing the page cache.
    fn roundtrip(dir: &std::path::Path, sizes: &[usize], window: usize, direct: bool) {
        let mut buf = DirectBuf::default();
        for &n in sizes {
            let path = dir.join(format!("f{n}-{window}"));
            let file = File::create(&path).expect("create");
            let data = pattern(n);
            let mut w = DirectWriter::new(&file, &mut buf, window, n as u64);
            assert_eq!(w.is_direct(), direct && n >= MIN_DIRECT, "size {n}");
            // Uneven pieces, so windows fill across calls.
            for piece in data.chunks(7919) {
                w.write_all(piece).expect("write");
            }
            assert_eq!(w.finish().expect("finish"), n as u64);
            drop(file);
            assert_eq!(std::fs::read(&path).expect("read"), data, "size {n}");
        }
    }

    #[test]
    fn writes_exact_contents_whatever_the_size() {
        let Some(d) = direct_dir("writes_exact_contents_whatever_the_size") else {
            return;
        };
        let sizes = [
            0,
            1,
            4095,
            4096,
            4097,
            65_535,
            65_536,
            300_001,
            1 << 20,
            3 << 20 | 5,
        ];
        roundtrip(d.path(), &sizes, 1 << 20, true);
        roundtrip(d.path(), &sizes, ALIGN, true);
    }

    /// A filesystem that refuses O_DIRECT (injected: tmpfs takes it on recent kernels): every
    /// size is written through the page cache, exactly.
    #[test]
    fn falls_back_where_direct_io_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        REFUSE_DIRECT.with(|c| c.set(true));
        roundtrip(
            d.path(),
            &[0, 4097, 100_000, 1 << 20, 3 << 20 | 5],
            1 << 16,
            false,
        );
        REFUSE_DIRECT.with(|c| c.set(false));
    }

    /// `write_file` writes exactly its data (no padding left past the end) and touches no other
    /// file of the directory.
    #[test]
    fn write_file_writes_exactly_its_data_and_nothing_else() {
        let d = tempfile::tempdir().expect("tmp");
        let other = d.path().join("other");
        std::fs::write(&other, b"a neighbour").expect("write other");
        let mut buf = DirectBuf::with_window(1 << 16);
        for n in [10, MIN_DIRECT - 1, MIN_DIRECT, 200_001] {
            let data = pattern(n);
            let p = d.path().join(format!("obj{n}"));
            let f = File::create(&p).expect("create");
            write_file(&f, &data, &mut buf).expect("write");
            drop(f);
            assert_eq!(std::fs::metadata(&p).expect("md").len(), n as u64);
            assert!(std::fs::read(&p).expect("read") == data, "size {n}");
        }
        assert_eq!(std::fs::read(&other).expect("read other"), b"a neighbour");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 5);
    }
}
