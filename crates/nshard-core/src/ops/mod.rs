//! The commands: commit, checkout, status, diff, log, track, gc and verify, one file each, over
//! the repository handle ([`crate::repo`]) and the directory-unit engine ([`crate::dirunit`]).

mod checkout;
mod commit;
mod deltas;
mod diff;
mod gc;
mod history;
mod history_stats;
mod lfs_import;
mod mv;
mod status;
mod stored;
mod target;
mod tensor_stats;
mod track;
mod verify;

pub use crate::outcome::CommitOutcome;
pub use checkout::{Checked, CheckoutOptions, CheckoutOutcome};
pub use commit::{CommitOptions, FileCommit};
pub use deltas::RepackReport;
pub use diff::{
    Diff, DiffOptions, DiffSide, FileDiff, SideKind, TensorChange, TensorChangeKind, TensorDiff,
    TensorGlob,
};
pub use gc::{GcItem, GcMode, GcOptions, GcReason, GcReport, MissingCheck, Unpushed};
pub use history::{History, HistoryNode, LogEntry, LogState, MAX_HISTORY};
pub use history_stats::{MostChanged, VersionChange};
pub use lfs_import::{LfsImportOptions, LfsImportReport, LfsImportedFile, LfsImportedVersion};
pub use mv::{Moved, Removed, Unversioned};
pub use status::{FileState, FileStatus, RemoteCheck, Status, VersionOrder};
pub use target::{Selection, Target};
pub use tensor_stats::{BlockStats, FloatStats, TensorStats};
pub use track::{TrackChange, TrackMode};
pub use verify::{HistoryNote, Problem, ProblemKind, VerifyOptions, VerifyReport};
