//! Progress reporting. The library reports; the binary decides how (indicatif bars on a terminal,
//! nothing otherwise).

/// Receives progress of long operations. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A new phase starts: `label` (e.g. a file name) with `total` units (bytes) of work.
    fn start(&self, _label: &str, _total: u64) {}
    /// `n` more units are done. `advance(0)` says that work goes on without units to count (a
    /// request answered), so that a watchdog can tell a slow operation from a stalled one.
    fn advance(&self, _n: u64) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
