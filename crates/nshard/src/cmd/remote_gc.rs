//! `nshard remote gc`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use nshard_core::transfer::{
    GcState, GcWhy, RemoteGcOptions, RetentionChange, TransferOptions, DEFAULT_JOBS,
};
use nshard_core::Retry;

use super::remote::{label, objects, runtime};
use crate::out;
use crate::output::{print_json, Ctx};

/// Delete from a remote every object that no live version needs.
///
/// What is live is decided by the remote, not by this clone: every push leaves a root record on
/// the remote (which repository, which ref, which versions), and gc keeps the union of the
/// current records of every repository that pushes there, with each version's history (its
/// parent versions), minus what a retention policy prunes. What only superseded records named (a
/// branch reset and force-pushed, a deleted branch) is garbage. Data no record covers (pushed by
/// an nshard without records) is reported and left alone unless --include-unrecorded.
///
/// Deleting is two-phase and never races a push: a run marks garbage, and a later run deletes
/// what is still garbage once it was marked, and stored, at least --grace ago (default 24h). Any
/// listing or read error stops the run before anything is deleted. Run from a git repository, gc
/// first brings that repository's records up to date with its git remote's branches and tags
/// (`git ls-remote`; --no-refresh skips that). On `nshard serve` it needs a token with the admin
/// scope.
///
/// Older versions of a checkpoint series: push sends each new version whole, so a remote holds
/// every version whole until gc runs. gc uploads the deltas this clone's store holds of older
/// versions the remote holds only whole (run it from a clone that has the history: the one that
/// commits, or one after `pull --all-versions`; one the remote refuses is skipped with a
/// warning), and keeps one encoding of each object it keeps: a delta whose chain reaches a kept
/// whole object, once stored --grace ago and checked against its base, stands for the whole
/// copy, which is deleted.
///
/// One gc at a time changes a remote: a run takes the remote's gc lock (a record there), and a
/// second run meanwhile stops with nothing changed, naming the first (`--dry-run` takes no
/// lock). The lock of a run that died stops counting: at once on the machine it ran on, after
/// 30 minutes without a refresh elsewhere; `--break-lock` removes it now.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// The remote: a name or URL (default: the default remote).
    pub remote: Option<String>,
    /// Show what would be deleted and why; change nothing on the remote.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// How long garbage must have been marked, and stored, before it is deleted: a number with
    /// its unit (`24h`, `30m`, `7d`, `90s`; s, m, h, d or w), or `0` (delete at once: for a
    /// remote only you push to). A bare number is refused (`nshard gc` reads it as minutes).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub grace: u64,
    /// Keep only the N newest versions of each file (plus the versions branch and tag tips name),
    /// and record this policy on the remote so later runs and pushes follow it. A larger N than
    /// before keeps again the pruned versions within it (the next push that has them sends them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "keep_all")]
    pub keep_last: Option<u32>,
    /// Remove a recorded --keep-last policy: keep every version again.
    #[arg(long)]
    pub keep_all: bool,
    /// Also delete objects that no record covers.
    #[arg(long)]
    pub include_unrecorded: bool,
    /// Do not refresh this repository's records from its git remote first.
    #[arg(long)]
    pub no_refresh: bool,
    /// Stop keeping what a repository's refs name (a deleted fork, a retired project): its
    /// identity as `--dry-run` lists it (e.g. `github.com/org/model`), or its record space.
    /// Repeatable.
    #[arg(long, value_name = "REPOSITORY")]
    pub forget_repository: Vec<String>,
    /// Remove the gc lock another run holds on the remote before taking it: only for a run
    /// known to have died (killed on another machine less than 30 minutes ago). Two runs at once
    /// can delete data the other relies on.
    #[arg(long, conflicts_with = "dry_run")]
    pub break_lock: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seconds in `24h`, `30m`, `7d`, `90s`, `0`.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        // A bare number would be read 60 times apart by `gc --grace` (minutes) and here:
        // refused, so that no grace period is shorter than meant.
        None if !s.is_empty() && s.bytes().any(|b| b != b'0') => {
            return Err(format!(
                "{s:?} has no unit: write {s}s, {s}m, {s}h or {s}d (`0` deletes at once)"
            ))
        }
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 24h, 30m, 7d, 90s, 0)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

pub fn run(ctx: &Ctx, a: GcArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    let retention = match (a.keep_last, a.keep_all) {
        (Some(n), _) => RetentionChange::KeepLast(n),
        (None, true) => RetentionChange::KeepAll,
        (None, false) => RetentionChange::Keep,
    };
    if a.keep_all && a.keep_last.is_some() {
        bail!("--keep-last and --keep-all contradict each other");
    }
    runtime()?.block_on(async {
        let (resolved, store) = super::remote::open(&repo, ctx, a.remote.as_deref()).await?;
        let bar = ctx.progress(true);
        let report = nshard_core::transfer::remote_gc(
            &repo,
            &store,
            &RemoteGcOptions {
                dry_run: a.dry_run,
                grace: a.grace,
                retention,
                include_unrecorded: a.include_unrecorded,
                refresh: !a.no_refresh,
                forget: a.forget_repository.clone(),
                break_lock: a.break_lock,
                transfer: TransferOptions {
                    jobs: DEFAULT_JOBS.into(),
                    retry: Retry::default(),
                    progress: &bar,
                    dry_run: false,
                },
            },
        )
        .await?;
        if let Some(why) = &report.lock_left {
            eprintln!(
                "nshard: warning: could not remove this run's gc lock from the remote ({why}): other runs wait until it stops counting ({} minutes after this run's last refresh), or `nshard remote gc --break-lock`",
                nshard_core::transfer::GC_LOCK_STALE.as_secs() / 60
            );
        }
        if a.json {
            print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        out!("gc of {}", label(&resolved));
        for l in &report.removed_locks {
            out!("removed the gc lock of a run that is gone: {l}");
        }
        for r in &report.refreshed {
            if a.dry_run {
                out!("would refresh {r}");
            } else {
                out!("refreshed {r}");
            }
        }
        let n = report.keep_last.unwrap_or(0);
        for (list, [did, would], why) in [
            (
                &report.pruned,
                ["pruned", "would prune"],
                format!("retention: keep the last {n}"),
            ),
            (
                &report.unpruned,
                ["kept again", "would keep again"],
                format!("within the last {n} again: the next push that has it sends it"),
            ),
        ] {
            for p in list {
                let verb = if a.dry_run { would } else { did };
                out!("{verb} {}: version {} ({why})", p.path, p.version.short());
            }
        }
        if a.dry_run {
            for r in report.record_list.iter().filter(|r| r.current) {
                out!(
                    "  record  {}  {}  {}  {} version{}",
                    r.repository,
                    r.refname,
                    r.commit.as_deref().map_or("-", |c| &c[..c.len().min(12)]),
                    r.versions,
                    if r.versions == 1 { "" } else { "s" }
                );
            }
            for c in &report.candidates {
                let why = match &c.why {
                    GcWhy::Dropped { path, version } => {
                        format!("{path} version {}, no longer named by any ref", version.short())
                    }
                    GcWhy::Pruned { path, version } => {
                        format!("{path} version {}, pruned by retention", version.short())
                    }
                    GcWhy::Marked => "found unused by an earlier run".into(),
                    GcWhy::Unrecorded => "no record names it".into(),
                };
                let state = match c.state {
                    GcState::Waiting { until } => format!("garbage; deletable after {}", when(until)),
                    _ => "would delete".into(),
                };
                out!("  {} {}  {state}: {why}", c.id.short(), crate::output::bytes(c.size));
            }
        }
        if a.dry_run && report.candidates_omitted > 0 {
            out!("  … and {} more (the totals below count them)", report.candidates_omitted);
        }
        out!(
            "kept {} of {} live version{}",
            objects(report.live_objects, report.live_bytes),
            report.live_versions,
            if report.live_versions == 1 { "" } else { "s" }
        );
        out!(
            "{} {}",
            if a.dry_run { "would free" } else { "freed" },
            objects(report.freed_objects, report.freed_bytes)
        );
        if report.whole_again > 0 {
            out!(
                "{} {} whole from this clone's store: objects of the newest versions the remote held only as deltas (an older version committed again), so that pulling them reads no chain",
                if a.dry_run { "would upload" } else { "uploaded" },
                objects(report.whole_again, report.whole_again_bytes)
            );
        }
        if report.whole_again_lacking > 0 {
            eprintln!(
                "nshard: warning: {} object(s) of the newest versions are held on the remote only as deltas and this clone lacks them: run `nshard remote gc` from a clone that has them (the one that committed them, or one after `nshard pull`) to store them whole there",
                report.whole_again_lacking
            );
        }
        if report.uploaded_deltas > 0 {
            let settle = if a.grace == 0 {
                "they stand for those whole copies from this run on".to_string()
            } else {
                format!(
                    "a run after the grace period ({}) lets them stand for those whole copies",
                    duration_words(a.grace)
                )
            };
            out!(
                "{} {} delta{} ({}) from this clone's store, of older versions the remote held only whole: {settle}",
                if a.dry_run { "would upload" } else { "uploaded" },
                report.uploaded_deltas,
                if report.uploaded_deltas == 1 { "" } else { "s" },
                crate::output::bytes(report.uploaded_delta_bytes)
            );
        }
        for refused in &report.refused_deltas {
            eprintln!("nshard: warning: did not upload a delta, so the whole copy it was to stand for stays: {refused}");
        }
        if report.superseded_objects > 0 {
            out!(
                "{} {} that kept deltas make redundant (whole copies of versions now stored as deltas, and deltas no version reads through)",
                if a.dry_run { "would free" } else { "freed" },
                objects(report.superseded_objects, report.superseded_bytes)
            );
        }
        for bad in &report.bad_deltas {
            eprintln!("nshard: warning: kept the whole copy a delta was to stand for: the delta fails its check ({bad})");
        }
        if report.removed_bad_deltas > 0 {
            out!(
                "deleted {} {}: the whole {} to stand for {}",
                crate::output::count(report.removed_bad_deltas as u64, "delta"),
                if report.removed_bad_deltas == 1 {
                    "that fails its check"
                } else {
                    "that fail their check"
                },
                if report.removed_bad_deltas == 1 {
                    "copy it was"
                } else {
                    "copies they were"
                },
                if report.removed_bad_deltas == 1 { "stays" } else { "stay" }
            );
        }
        if report.waiting_objects > 0 {
            out!(
                "{} {} as garbage: deleted by a run after the grace period ({}) if still unused",
                if a.dry_run { "would mark" } else { "marked" },
                objects(report.waiting_objects, report.waiting_bytes),
                duration_words(a.grace)
            );
        }
        if report.unrecorded_objects > 0 {
            out!(
                "left {} that no record covers (pushed by an older nshard?); --include-unrecorded deletes them",
                objects(report.unrecorded_objects, report.unrecorded_bytes)
            );
        }
        if report.absent_versions > 0 {
            out!(
                "{} version(s) named in git history are on neither the remote nor here",
                report.absent_versions
            );
        }
        if report.deleted_records > 0 && !a.dry_run {
            out!("retired {} superseded record(s)", report.deleted_records);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `24h`, `90m`, `45s`.
pub(crate) fn duration_words(secs: u64) -> String {
    match secs {
        0 => "none".into(),
        s if s % 86_400 == 0 && s > 86_400 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `2026-12-06 19:50 UTC`.
fn when(secs: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs as i64) else {
        return secs.to_string();
    };
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("90s"), Ok(90));
        let bare = parse_duration("90").expect_err("a bare number has no unit");
        assert!(bare.contains("90m"), "{bare}");
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }
}
