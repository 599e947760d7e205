//! `nshard log`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use nshard_core::{History, LogState, Repo, Target, VersionChange};

use crate::out;
use crate::output::{bytes, print_json, Ctx};

/// Show the versions of files, newest first.
///
/// Without arguments: every file's history, one after the other. FILE may be a data file, its
/// manifest, a directory or a quoted glob. --json prints an array of entries for a single named
/// file, else an object mapping each file to its entries.
///
/// Each line: version id, date, size, what the version adds to the local store as stored now
/// (its chunks no older version has, compressed, and as deltas where they are: an older
/// checkpoint of a series costs its deltas), and the message's first line; `+N raw` when its
/// chunks are not local (the raw bytes no older version has), `+?` when its parent is not
/// local. History is walked
/// through the manifests in the local store; where an older version is not there (not pulled, or
/// removed by `nshard gc --only-current`) the log says so and stops.
///
/// --stats PATH: for each version of one model file, how much it changed from its parent: the
/// relative L2 change of the whole model (‖Δ‖ / ‖old‖ over its float tensors), how many tensors
/// changed, the most changed tensor, NaN/Inf values. --html FILE draws the same as one row per
/// version (a small heat map each: tensor kinds down, layers across). Both read the versions'
/// data from the local store.
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
    /// For one model file: how much each version changed from its parent.
    #[arg(long, conflicts_with = "oneline")]
    pub stats: bool,
    /// Write an HTML report of the file's history (implies --stats) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "oneline")]
    pub html: Option<PathBuf>,
    /// With --stats: only tensors whose names match GLOB (`*` matches across dots).
    #[arg(long, value_name = "GLOB")]
    pub tensor: Option<String>,
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
    if a.stats || a.html.is_some() {
        return run_stats(&repo, &targets, &a);
    }
    if a.tensor.is_some() {
        anyhow::bail!("--tensor goes with --stats or --html");
    }
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

/// `log --stats` / `--html` of one model file.
fn run_stats(repo: &Repo, targets: &[Target], a: &LogArgs) -> Result<ExitCode> {
    let [Target::File(path)] = targets else {
        anyhow::bail!("--stats and --html follow one model file's history: name exactly one file");
    };
    let glob = super::diff::tensor_glob(a.tensor.as_deref())?;
    let versions = repo.log_stats(path, glob.as_ref())?;
    if let Some(file) = &a.html {
        let html = crate::report::log_report(path.as_str(), &versions);
        nshard_core::backend::write_atomic(file, html.as_bytes())?;
        eprintln!("wrote {}", file.display());
    }
    if a.json {
        print_json(&versions)?;
    } else if a.stats || a.html.is_none() {
        print_version_stats(&versions)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_version_stats(versions: &[VersionChange]) -> Result<()> {
    out!(
        "  {:<12}  {:>10}  {:>8}  {:<24}  most changed tensor",
        "version",
        "rel_l2",
        "changed",
        "message"
    );
    for v in versions {
        let msg: String = nshard_core::escape_path(first_line(&v.message))
            .chars()
            .take(24)
            .collect();
        let (rel, changed, most) = match &v.unavailable {
            Some(why) => ("-".to_string(), "-".to_string(), format!("({why})")),
            None => {
                let mut most = v
                    .most_changed
                    .as_ref()
                    .map(|m| {
                        let r = m
                            .rel_l2
                            .map(|r| format!("{r:.3e}"))
                            .unwrap_or_else(|| format!("old norm 0, l2 {:.2e}", m.l2));
                        format!("{} ({r})", m.name)
                    })
                    .unwrap_or_else(|| "-".into());
                if v.non_finite > 0 {
                    most += &format!("  !! {} NaN/Inf", v.non_finite);
                }
                (
                    v.rel_l2
                        .map(|r| format!("{r:.3e}"))
                        .unwrap_or_else(|| "-".into()),
                    format!("{}/{}", v.changed_tensors, v.tensors_total),
                    most,
                )
            }
        };
        out!(
            "  {:<12}  {rel:>10}  {changed:>8}  {msg:<24}  {most}",
            v.version.short()
        );
    }
    Ok(())
}
