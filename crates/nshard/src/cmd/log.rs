//! `nshard log`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{History, LogState};

use crate::out;
use crate::output::{bytes, print_json, Ctx};

/// Show the versions of files, newest first.
///
/// Without arguments: every file's history, one after the other. FILE may be a data file, its
/// manifest, a directory or a quoted glob. --json prints an array of entries for a single named
/// file, else an object mapping each file to its entries.
///
/// Each line: version id, date, size, the bytes the version added to the store (chunks its
/// parent did not have), and the message's first line. History is walked
/// through the manifests in the local store; where an older version is not there (not pulled, or
/// removed by `nshard gc --only-current`) the log says so and stops.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Data files, manifests, directories or quoted globs; default: every file.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the result as JSON (full ids and messages).
    #[arg(long)]
    pub json: bool,
    /// One line per version: its short id and the first line of its message.
    #[arg(long, conflicts_with = "json")]
    pub oneline: bool,
}

/// `2026-05-01T10:00:00Z` → `2026-05-01 10:00:00 UTC`; other forms are shown as they are.
pub fn date(ts: &str) -> String {
    match ts.strip_suffix('Z') {
        Some(t) if t.len() == 19 && t.as_bytes()[10] == b'T' => {
            format!("{} {} UTC", &t[..10], &t[11..])
        }
        _ => ts.to_string(),
    }
}

/// The first line of a message, for one-line displays.
pub fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("")
}

pub fn run(ctx: &Ctx, a: LogArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let sel = repo.select(&ctx.cwd, &a.files)?;
    let single = sel.is_single_file();
    let targets = repo.targets(&sel)?;
    let mut all = std::collections::BTreeMap::new();
    let mut unreadable = false;
    let mut shown = 0;
    for t in &targets {
        let history = match repo.log_target(t) {
            Ok(h) => h,
            Err(e) if single => return Err(e.into()),
            Err(e) => {
                unreadable = true;
                crate::output::file_error(&t.label(), &e);
                continue;
            }
        };
        if let History::Unit(v) = &history {
            if v.is_empty() {
                continue; // a unit in the config, never committed
            }
        }
        if let History::File(entries) = &history {
            unreadable |= entries
                .iter()
                .any(|e| matches!(e.state, LogState::Unreadable { .. }));
        }
        if a.json {
            all.insert(t.path().as_str().to_string(), history);
            continue;
        }
        if !single {
            if shown > 0 {
                out!("");
            }
            out!("{}", t.label());
        }
        shown += 1;
        match &history {
            History::File(entries) if a.oneline => {
                for e in entries {
                    let msg = match &e.state {
                        LogState::Present { message, .. } => {
                            nshard_core::escape_path(first_line(message)).to_string()
                        }
                        _ => "(not in the local store)".to_string(),
                    };
                    out!("{} {msg}", e.version.short());
                }
            }
            History::Unit(versions) if a.oneline => {
                for v in versions {
                    let msg = v
                        .manifest
                        .as_ref()
                        .map(|m| {
                            nshard_core::escape_path(first_line(&m.version.message)).to_string()
                        })
                        .unwrap_or_else(|| "(not in the local store)".to_string());
                    out!("{} {msg}", v.version.short());
                }
            }
            History::File(entries) => print_entries(entries)?,
            History::Unit(versions) => print_unit(versions)?,
        }
    }
    if a.json {
        if single {
            match all.into_values().next() {
                Some(h) => print_json(&h)?,
                None => print_json(&Vec::<()>::new())?,
            }
        } else {
            print_json(&all)?;
        }
    } else if targets.is_empty() {
        out!("no committed files (commit one with `nshard commit -m MESSAGE`)");
    }
    Ok(if unreadable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_entries(entries: &[nshard_core::LogEntry]) -> Result<()> {
    for e in entries {
        let mark = if e.current { "*" } else { " " };
        let v = e.version.short();
        match &e.state {
            LogState::Present {
                timestamp,
                message,
                size,
                new_bytes,
                stored_bytes,
                ..
            } => {
                // What the version costs in the store; raw bytes when its chunks are not local.
                let added = match (stored_bytes, new_bytes) {
                    (Some(n), _) => format!("+{}", bytes(*n)),
                    (None, Some(n)) => format!("+{} raw", bytes(*n)),
                    (None, None) => "+?".to_string(),
                };
                out!(
                    "{mark} {v}  {}  {:>10}  {:>11}  {}",
                    date(timestamp),
                    bytes(*size),
                    added,
                    nshard_core::escape_path(first_line(message))
                );
            }
            LogState::Missing => out!(
                "{mark} {v}  (not in the local store: `nshard pull --all-versions` fetches older \
                 history from a remote that has it)"
            ),
            LogState::Unreadable { reason } => {
                out!("{mark} {v}  (unreadable: {reason}; run `nshard verify`)")
            }
            other => out!("{mark} {v}  ({other:?})"),
        }
    }
    Ok(())
}

/// A directory unit's history: version, date, size, files, message.
fn print_unit(versions: &[nshard_core::DirVersion]) -> Result<()> {
    for (i, v) in versions.iter().enumerate() {
        let mark = if i == 0 { "*" } else { " " };
        match &v.manifest {
            Some(m) => out!(
                "{mark} {}  {}  {:>10}  {:>12}  {}",
                v.version.short(),
                date(&m.version.timestamp),
                bytes(m.size),
                crate::output::count(m.files, "file"),
                nshard_core::escape_path(first_line(&m.version.message))
            ),
            None => out!(
                "{mark} {}  (not in the local store: `nshard pull --all-versions` fetches older history)",
                v.version.short()
            ),
        }
    }
    Ok(())
}
