//! How directory units' status, diff and checkout are printed.

use anyhow::Result;
use nshard_core::{DirChangeKind, DirCheckout, DirState, DirStatus};

use crate::output::{bytes, count};
use crate::{out, per_file};

/// One status line for a unit, then (unless `-q`) its changed files, at most `limit` of them.
pub fn print_status(s: &DirStatus, limit: usize) -> Result<()> {
    let v = match s.to {
        Some(to) => format!(
            "{} -> {}",
            s.version.map_or("(nothing)".to_string(), |v| v.short()),
            to.short()
        ),
        None => s.version.map(|v| v.short()).unwrap_or_default(),
    };
    let label = match &s.sub {
        Some(sub) => format!("{}/{sub}/", s.path),
        None => format!("{}/", s.path),
    };
    let count_of = |k: DirChangeKind| s.changes.iter().filter(|c| c.kind == k).count();
    // Files never checked out here: not changes (a commit keeps them as committed).
    let absent = if s.not_checked_out > 0 {
        format!(
            "; {} not checked out: `nshard checkout {label}` writes them",
            count(s.not_checked_out as u64, "file")
        )
    } else {
        String::new()
    };
    let hint = match s.state {
        DirState::Unchanged => format!(
            "  ({} unchanged{absent})",
            count((s.files - s.not_checked_out) as u64, "file")
        ),
        DirState::Modified => format!(
            "  ({} added, {} removed, {} modified{}{absent})",
            count_of(DirChangeKind::Added),
            count_of(DirChangeKind::Removed),
            count_of(DirChangeKind::Modified),
            match (
                s.to,
                s.changes
                    .iter()
                    .filter(|c| c.from_older.is_some() || c.created_over)
                    .count(),
            ) {
                (Some(_), _) => String::new(),
                (None, 0) => ": run `nshard commit`".to_string(),
                (None, n) => format!(
                    ": {} of them would take back what the unit's version changed (`nshard checkout` those you did not edit; carry its changes into the others, then `nshard commit --force`)",
                    count(n as u64, "file")
                ),
            }
        ),
        DirState::New => format!(
            "  ({}, never committed: run `nshard commit`)",
            count(s.changes.len() as u64, "file")
        ),
        DirState::NotCheckedOut => format!(
            "  ({} not in the work tree: run `nshard checkout {label}`)",
            count(s.files as u64, "file")
        ),
        DirState::DataMissing => format!(
            "  ({} not in the local store: run `nshard pull`, or `nshard commit` to store them again from the files)",
            count(s.missing_objects as u64, "pack or chunk")
        ),
        _ => "  (listing not in the local store: run `nshard pull`)".to_string(),
    };
    let on_remote = on_remote(s.remote.as_ref());
    out!(
        "{:<13} {:<40} {v}{hint}{on_remote}",
        dir_state_label(s.state),
        label
    );
    for c in s.changes.iter().take(limit) {
        let what = match c.kind {
            DirChangeKind::Added => "added",
            DirChangeKind::Removed => "removed",
            DirChangeKind::Modified => "modified",
        };
        let mut size = match c.old_size {
            Some(old) if old != c.size => format!("{} -> {}", bytes(old), bytes(c.size)),
            _ => bytes(c.size),
        };
        if c.created_over {
            size += "; created here, where the unit's version has another file";
        }
        if let Some(v) = &c.from_older {
            size += &match c.kind {
                DirChangeKind::Removed => format!(
                    "; removed here from version {}, which the unit's version changed",
                    v.short()
                ),
                _ => format!(
                    "; holds or was edited from version {}, which the unit's version changed",
                    v.short()
                ),
            };
        }
        if let Some(b) = &c.blocks {
            size += &format!(
                "; {} of {} blocks reused, {} new",
                b.chunks_reused,
                b.chunks_reused + b.chunks_new,
                bytes(b.bytes_new)
            );
        }
        per_file!(
            "    {what:<9} {}  ({size})",
            nshard_core::escape_path(&format!("{}/{}", s.path.as_str(), c.path))
        );
    }
    if s.changes.len() > limit {
        per_file!(
            "    … and {} more (`nshard diff {label}` lists them all)",
            s.changes.len() - limit
        );
    }
    Ok(())
}

/// The line for a checked-out unit.
pub fn print_checkout(label: &str, c: &DirCheckout) -> Result<()> {
    let mut line = format!(
        "{label}: checked out version {}: {} written ({}), {} up to date",
        c.version.short(),
        count(c.written as u64, "file"),
        bytes(c.bytes),
        c.up_to_date
    );
    if c.removed > 0 {
        line.push_str(&format!(", {} removed", c.removed));
    }
    if c.kept > 0 {
        line.push_str(&format!(
            ", {} not in this version left in place (never committed, or edited)",
            count(c.kept as u64, "file")
        ));
    }
    line.push_str(&changes_kept(c));
    per_file!("{line}");
    Ok(())
}

/// `; kept your edits to …` and `; kept … removed` for the uncommitted changes a unit checkout
/// carried over (empty when none).
pub fn changes_kept(c: &DirCheckout) -> String {
    let list = |paths: &[String]| {
        let more = match paths.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        format!("{}{more}", nshard_core::escape_path(&paths[0]))
    };
    let mut out = String::new();
    if !c.edits_kept.is_empty() {
        out.push_str(&format!(
            "; kept your edits to {} ({})",
            count(c.edits_kept.len() as u64, "file"),
            list(&c.edits_kept)
        ));
    }
    if !c.removals_kept.is_empty() {
        out.push_str(&format!(
            "; kept {} removed ({})",
            count(c.removals_kept.len() as u64, "file"),
            list(&c.removals_kept)
        ));
    }
    if !out.is_empty() {
        out.push_str(": this version has the bytes they held before your changes (`nshard checkout --force PATH` replaces an edit with the manifest's version, `nshard checkout PATH` brings a removed file back)");
    }
    out
}

/// A unit's state as `status` prints it (the same words as `--json`).
fn dir_state_label(s: DirState) -> &'static str {
    match s {
        DirState::Unchanged => "unchanged",
        DirState::Modified => "modified",
        DirState::New => "new",
        DirState::NotCheckedOut => "not-checked-out",
        DirState::NotPulled => "not-pulled",
        DirState::DataMissing => "data-missing",
        _ => "other",
    }
}

/// The status line's note on what `status --remote` found of a committed version.
pub fn on_remote(check: Option<&nshard_core::RemoteCheck>) -> String {
    match check {
        Some(c) if c.missing_objects == 0 => "  [on the remote]".to_string(),
        Some(c) => format!(
            "  [remote lacks {} of {} objects]",
            c.missing_objects, c.objects
        ),
        None => String::new(),
    }
}
