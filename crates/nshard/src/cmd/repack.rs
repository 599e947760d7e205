//! `nshard repack`, and the background repack `nshard commit` starts.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Result;
use clap::Args;

use crate::out;
use crate::output::{bytes, count, print_json, Ctx};

/// Re-encode older versions of models as deltas of the versions after them.
///
/// `nshard commit` stores a new version of a model whole and queues its previous version, whose
/// float tensors are then re-encoded as deltas of the new one (usually a fraction of their
/// size). By default a background `nshard repack`, started by commit, does that while you work;
/// with `delta_background = false` in `.shard/config.toml` commit does it before returning.
///
/// This command works through whatever is still queued (after a background repack was
/// interrupted, or to wait for one: it waits for a repack already running, then finishes the
/// queue) and says what it saved. Safe beside other nshard commands: it never holds the
/// repository lock, objects keep their ids, and each chunk's new encoding replaces the old one
/// atomically only after it was decoded back and checked.
///
/// `nshard pull` and the git hooks re-encode the versions before those they receive the same way.
/// With --all-versions, this command first looks through the history of every file for versions
/// still stored whole though the version after them is here (a store filled by pulls of an nshard
/// that did not do that yet, or deltas turned on late) and re-encodes those too.
#[derive(Args, Debug)]
pub struct RepackArgs {
    /// Also re-encode every older version of the work tree's files that is stored whole though
    /// the version after it is here.
    #[arg(long)]
    pub all_versions: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run as commit's background job: no output, errors go to `.shard/cache/deltas/repack.log`.
    #[arg(long, hide = true)]
    pub background: bool,
}

pub fn run(ctx: &Ctx, a: RepackArgs) -> Result<ExitCode> {
    let repo = ctx.repo()?;
    if a.background {
        let log = repo.deltas_dir().join("repack.log");
        let res = repo.repack(&nshard_core::NoProgress);
        // One line about the last background run; best effort (nobody waits for it).
        let line = match &res {
            Ok(r) => format!(
                "repacked {} version(s): {} chunk(s) {} -> {} bytes\n",
                r.versions, r.delta_chunks, r.delta_bytes_before, r.delta_bytes_after
            ),
            Err(e) => format!("error: {e}\n"),
        };
        let _ = fs::write(log, line);
        return Ok(if res.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let bar = ctx.progress(a.json);
    let found = if a.all_versions {
        repo.queue_history_deltas()?
    } else {
        0
    };
    if found > 0 && !a.json {
        let them = if found == 1 { "it" } else { "them" };
        out!(
            "{} stored whole though the version after {them} is here: looking at {them}",
            count(found as u64, "older version")
        );
    }
    let r = repo.repack(&bar)?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.versions == 0 && repo.config().delta == Some(false) {
        out!("nothing to repack: deltas are off (`delta = false` in .shard/config.toml)");
    } else if r.versions == 0 {
        out!("nothing to repack: no version waits to be re-encoded as deltas");
    } else if r.delta_chunks == 0 {
        out!(
            "nothing re-encoded for {}: keyframes stay whole (chains stay within `delta_depth`), as do chunks a delta would not make smaller",
            count(r.versions as u64, "version")
        );
    } else {
        out!(
            "re-encoded the previous version of {} as deltas: {} from {} to {}",
            count(r.versions as u64, "version"),
            count(r.delta_chunks as u64, "chunk"),
            bytes(r.delta_bytes_before),
            bytes(r.delta_bytes_after)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What became of the older versions a pull queued to become deltas of the versions received.
pub enum AfterPull {
    /// Nothing was queued.
    Nothing,
    /// A background `nshard repack` is re-encoding them.
    Background,
    /// Re-encoded before returning (`delta_background = false`), or why not.
    Done(nshard_core::Result<nshard_core::RepackReport>),
    /// The background repack could not start: they wait for the next `nshard repack` or commit.
    Waiting,
}

/// Starts the re-encoding of what a pull queued (`queued` pairs): as after a commit, in the
/// background unless `delta_background = false`. Call it after any checkout that follows the
/// pull, so the two do not compete.
pub fn after_pull(
    repo: &nshard_core::Repo,
    queued: usize,
    progress: &dyn nshard_core::Progress,
) -> AfterPull {
    if queued == 0 {
        AfterPull::Nothing
    } else if !repo.config().delta_background() {
        AfterPull::Done(repo.repack(progress))
    } else if spawn_background(repo.root()) {
        AfterPull::Background
    } else {
        AfterPull::Waiting
    }
}

/// The line `nshard pull` prints about [`AfterPull`] (`queued` versions).
pub fn after_pull_line(queued: usize, after: &AfterPull) -> Option<String> {
    let versions = count(queued as u64, "older version");
    Some(match after {
        AfterPull::Nothing => return None,
        AfterPull::Background => format!(
            "{versions} being re-encoded as deltas of newer versions in the background (`nshard repack` waits for it)"
        ),
        AfterPull::Done(Ok(r)) if r.delta_chunks == 0 => format!(
            "{versions} checked for deltas of newer versions: no chunk of {} is smaller as a delta",
            if queued == 1 { "it" } else { "them" }
        ),
        AfterPull::Done(Ok(r)) => format!(
            "{versions} re-encoded as deltas of newer versions: {} from {} to {}",
            count(r.delta_chunks as u64, "chunk"),
            bytes(r.delta_bytes_before),
            bytes(r.delta_bytes_after)
        ),
        AfterPull::Done(Err(e)) => {
            format!("{versions} stay stored whole for now ({e}); `nshard repack` re-encodes them")
        }
        AfterPull::Waiting => {
            format!("{versions} queued to be re-encoded as deltas; run `nshard repack`")
        }
    })
}

/// Starts `nshard repack --background` in `root`, detached (own process group and session, no
/// terminal, stdio on /dev/null), and does not wait for it. Returns whether it started.
pub fn spawn_background(root: &Path) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let mut cmd = Command::new(exe);
    cmd.args(["repack", "--background"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: a Ctrl-C meant for the shell's next command, or the terminal
        // closing, does not stop it half-way (which would lose nothing, only leave work queued).
        cmd.process_group(0);
    }
    cmd.spawn().is_ok()
}
