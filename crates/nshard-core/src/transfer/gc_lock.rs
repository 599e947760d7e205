//! The gc lock of a remote: one `nshard remote gc` changes a remote at a time.
//!
//! Two runs at once can undo each other's choices: one lets a delta stand for a whole copy and
//! deletes the copy, while the other, which saw another live set (`--keep-last`) or another
//! delta plan (another clone's store), deletes that delta as superseded; the version is then
//! gone from the remote. So a run that may change the remote (every run but a dry run) first
//! takes the remote's gc lock and holds it until it is done.
//!
//! The lock is a record in gc's own space under [`LOCK_KEY`]. Records are only ever added, so
//! taking the lock needs no compare-and-swap (which not every store offers): a run writes its
//! lock record, then lists the records; if another lock record that still counts shows, it
//! removes its own and backs off, and tries again a few times before it gives up. A store whose
//! listing shows every record written before it (a directory, `nshard serve`, S3) makes this
//! exclusive: of two runs, the one that lists second sees the other's record. While it runs, the
//! holder writes a fresh record every [`REFRESH`] and removes its older one; before every batch
//! of deletions it checks its record is still there and was refreshed lately, and stops if not.
//!
//! A lock record stops counting when its run is gone: one written on this machine by a process
//! that no longer runs (same kernel boot, same pid namespace), and one not refreshed for
//! [`STALE`] (this machine's clock against the stamp the writer's clock gave the record: the
//! clocks of machines that run gc must agree to within minutes). `--break-lock` removes every
//! lock record at once, for a run known to be dead elsewhere.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, RemoteFailure, Result};
use crate::id::ObjectId;
use crate::remote::records::{now_secs, RecordName, GC_SPACE};
use crate::remote::Store;
use crate::retry::Retry;

/// The key of lock records in gc's space (marks use keys from 0 up, one per part).
pub const LOCK_KEY: &str = "ffffffffffffffff";
/// The format tag of a lock record.
pub const LOCK_FORMAT: &str = "neuroshard.gc-lock/1";
/// How often a holder writes a fresh lock record.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// How long a lock record counts without a fresher one.
pub const STALE: Duration = Duration::from_secs(30 * 60);
/// How often the refresher turns: [`REFRESH`], or in the crash-test build
/// `NSHARD_TEST_GC_LOCK_REFRESH_MS` (so that a test sees a refresh happen).
fn refresh_every() -> Duration {
    #[cfg(feature = "failpoints")]
    if let Some(ms) = std::env::var("NSHARD_TEST_GC_LOCK_REFRESH_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms.max(10));
    }
    REFRESH
}

/// Attempts at taking the lock when another run is taking it at the same moment.
const ATTEMPTS: u32 = 4;
/// The largest lock record read (they are about 200 bytes).
const MAX_LOCK_BYTES: usize = 4096;

/// What a lock record says about its run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LockBody {
    format: String,
    /// The machine's name, for people.
    host: String,
    /// The kernel boot and pid namespace of the run's process ("" where unknown): where `pid`
    /// means that process.
    place: String,
    pid: u32,
    /// When the run started (seconds since the epoch).
    started: u64,
}

impl LockBody {
    fn here() -> LockBody {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let host = read("/proc/sys/kernel/hostname")
            .or_else(|| read("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|p| p.display().to_string());
        let place = match (read("/proc/sys/kernel/random/boot_id"), ns) {
            (Some(boot), Some(ns)) => format!("{boot} {ns}"),
            _ => String::new(),
        };
        LockBody {
            format: LOCK_FORMAT.into(),
            host,
            place,
            pid: std::process::id(),
            started: now_secs(),
        }
    }

    /// Whether the record was written by a process of this machine that no longer runs.
    fn process_is_gone(&self, me: &LockBody) -> bool {
        if self.place.is_empty() || self.place != me.place || self.pid == me.pid {
            return false;
        }
        process_is_gone(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "host {}, pid {}, started {}",
            self.host,
            self.pid,
            utc(self.started)
        )
    }
}

/// Whether no process `pid` runs in this pid namespace: `kill(pid, 0)` finds none (a process of
/// another user answers "not permitted": it runs), or it is a zombie.
#[cfg(unix)]
fn process_is_gone(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Err(e) if e == rustix::io::Errno::SRCH => true,
        Err(_) => false,
        // A zombie (killed, not yet reaped) is gone too: its state follows the command name.
        Ok(()) => std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
            })
            .is_some_and(|state| state == 'Z' || state == 'X'),
    }
}

#[cfg(not(unix))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}

/// Whether `name` is a lock record (gc's marks, which share the space, are not).
pub fn is_lock(name: &RecordName) -> bool {
    name.space() == GC_SPACE && name.key() == LOCK_KEY
}

/// Whether `name` is a part of gc's marks: a record of its space that is not a lock.
pub fn is_mark(name: &RecordName) -> bool {
    name.space() == GC_SPACE && name.key() != LOCK_KEY
}

/// A lock record of another run, as found.
struct Found {
    name: RecordName,
    body: Option<LockBody>,
}

impl Found {
    /// Why it no longer counts (`None`: it does).
    fn gone(&self, me: &LockBody, now: u128) -> Option<String> {
        if let Some(b) = &self.body {
            if b.process_is_gone(me) {
                return Some(format!("its run ({}) died on this machine", b.describe()));
            }
        }
        let age = now.saturating_sub(self.name.nanos());
        (age > STALE.as_nanos()).then(|| {
            format!(
                "its run ({}) has not refreshed it for {} minutes",
                self.who(),
                age / 60_000_000_000
            )
        })
    }

    fn holder(&self, now: u128) -> String {
        let age = now.saturating_sub(self.name.nanos()) / 1_000_000_000;
        format!("{}; refreshed {age} s ago", self.who())
    }

    /// Its run, as the record describes it.
    fn who(&self) -> String {
        self.body
            .as_ref()
            .map_or_else(|| "an unreadable lock record".into(), LockBody::describe)
    }
}

/// What the holder and its refresher share.
struct Held {
    remote: Arc<dyn Store>,
    retry: Retry,
    /// The body of this run's records.
    body: Vec<u8>,
    /// This run's records, the newest last (the refresher adds one and removes the older).
    own: tokio::sync::Mutex<Vec<RecordName>>,
    /// Set when this run's record vanished: another run broke the lock.
    lost: AtomicBool,
    /// When this run's newest record was written (seconds since the epoch, this clock).
    refreshed: AtomicU64,
}

/// The lock, held: refreshed in the background until [`GcLock::release`].
pub struct GcLock {
    held: Arc<Held>,
    refresher: tokio::task::JoinHandle<()>,
    /// Tells the refresher to stop (between its turns, never half-way through one).
    stop: tokio::sync::oneshot::Sender<()>,
    /// Lock records of runs that were gone, removed when this one took the lock (why, for each).
    pub removed: Vec<String>,
}

impl GcLock {
    /// Takes the gc lock of `remote`: with `break_lock`, every other lock record is removed
    /// first, whoever wrote it.
    pub async fn acquire(remote: &Arc<dyn Store>, retry: Retry, break_lock: bool) -> Result<Self> {
        let me = LockBody::here();
        let body = serde_json::to_vec(&me).map_err(|e| failed(remote, e.to_string()))?;
        let mut removed = Vec::new();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let break_all = break_lock && attempt == 1;
            let (gone, mut live) = others(remote, &retry, &me, break_all, None).await?;
            for (f, why) in &gone {
                retry
                    .run(|| remote.delete_records(std::slice::from_ref(&f.name)))
                    .await
                    .0?;
                removed.push(format!("{}: {why}", f.name));
            }
            if live.is_empty() {
                let own = put_own(remote, &retry, &body).await?;
                crate::crash_point!("remote-gc-lock-written");
                live = match others(remote, &retry, &me, false, Some(&own)).await {
                    Ok((_, live)) => live,
                    Err(e) => {
                        let _ = remote.delete_records(std::slice::from_ref(&own)).await;
                        return Err(e);
                    }
                };
                if live.is_empty() {
                    let held = Arc::new(Held {
                        remote: Arc::clone(remote),
                        retry,
                        body,
                        own: tokio::sync::Mutex::new(vec![own]),
                        lost: AtomicBool::new(false),
                        refreshed: AtomicU64::new(now_secs()),
                    });
                    let (stop, stopped) = tokio::sync::oneshot::channel();
                    let refresher = tokio::spawn(refresh(Arc::clone(&held), stopped));
                    return Ok(GcLock {
                        held,
                        refresher,
                        stop,
                        removed,
                    });
                }
                // Another run is taking it at this very moment: both step back, and try again
                // after a pause of their own.
                retry
                    .run(|| remote.delete_records(std::slice::from_ref(&own)))
                    .await
                    .0?;
            }
            if attempt >= ATTEMPTS {
                return Err(locked(remote, &live[0].holder(now_nanos())));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Fails when this run no longer holds the lock (another run broke it, or it could not be
    /// refreshed for so long that other runs may judge it gone): checked before every batch of
    /// deletions (one request).
    pub async fn confirm(&self) -> Result<()> {
        let h = &self.held;
        let current = h.own.lock().await.last().cloned();
        let present = match current {
            Some(name) => h
                .retry
                .run(|| h.remote.get_record(&name))
                .await
                .0?
                .is_some(),
            None => false,
        };
        if !present {
            h.lost.store(true, Ordering::SeqCst);
        }
        if h.lost.load(Ordering::SeqCst) {
            return Err(failed(
                &h.remote,
                "this gc's lock was removed by another run (`--break-lock`, or it judged this run dead): stopped before deleting more; run gc again".into(),
            ));
        }
        let since = now_secs().saturating_sub(h.refreshed.load(Ordering::SeqCst));
        if since + REFRESH.as_secs() * 2 > STALE.as_secs() {
            return Err(failed(
                &h.remote,
                format!("this gc could not refresh its lock for {since} s (the remote failing, or this machine suspended), so other runs may take it: stopped before deleting more; run gc again"),
            ));
        }
        Ok(())
    }

    /// Stops refreshing and removes this run's lock records.
    pub async fn release(self) -> Result<()> {
        // The refresher finishes a turn it is in (a new record written, the old one removed),
        // then stops; what it leaves are the records to remove.
        let _ = self.stop.send(());
        let _ = self.refresher.await;
        let h = &self.held;
        let own = h.own.lock().await.clone();
        h.retry.run(|| h.remote.delete_records(&own)).await.0
    }
}

/// Writes a lock record of this run. A retried write that had landed before is this run's own
/// record (a store that cannot tell answers "exists already").
async fn put_own(remote: &Arc<dyn Store>, retry: &Retry, body: &[u8]) -> Result<RecordName> {
    let name = RecordName::new(GC_SPACE, LOCK_KEY);
    match retry
        .run(|| remote.put_record(&name, body.to_vec()))
        .await
        .0
    {
        Ok(n) => Ok(n),
        Err(e) => match remote.get_record(&name).await {
            Ok(Some(b)) if b == body => Ok(name),
            _ => Err(e),
        },
    }
}

/// Writes a fresh record every [`REFRESH`] and removes the ones before, until told to stop; stops
/// (and sets `lost`) when this run's record is gone.
async fn refresh(h: Arc<Held>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let (remote, retry) = (&h.remote, &h.retry);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(refresh_every()) => {}
            _ = &mut stopped => return,
        }
        let mut names = h.own.lock().await;
        // A failed refresh is tried again at the next turn (gc stops before deleting more once
        // the record is close to stopping counting).
        let Ok(fresh) = put_own(remote, retry, &h.body).await else {
            continue;
        };
        names.push(fresh);
        // Written first, checked after: a run that broke the lock before the fresh record
        // existed removed the one before it.
        let Some(old) = names.len().checked_sub(2).map(|i| names[i].clone()) else {
            continue;
        };
        match retry.run(|| remote.get_record(&old)).await.0 {
            Ok(Some(_)) => {}
            Ok(None) => {
                h.lost.store(true, Ordering::SeqCst);
                let _ = remote.delete_records(&names).await;
                names.clear();
                return;
            }
            Err(_) => continue,
        }
        h.refreshed.store(now_secs(), Ordering::SeqCst);
        let keep = names.len() - 1;
        let older: Vec<RecordName> = names[..keep].to_vec();
        if retry.run(|| remote.delete_records(&older)).await.0.is_ok() {
            names.drain(..keep);
        }
    }
}

/// The lock records of other runs: those gone (with why; all of them with `break_all`) and
/// those that count.
async fn others(
    remote: &Arc<dyn Store>,
    retry: &Retry,
    me: &LockBody,
    break_all: bool,
    own: Option<&RecordName>,
) -> Result<(Vec<(Found, String)>, Vec<Found>)> {
    let names = retry.run(|| remote.list_records()).await.0?;
    let now = now_nanos();
    let (mut gone, mut live) = (Vec::new(), Vec::new());
    for name in names.into_iter().filter(is_lock) {
        if Some(&name) == own {
            continue;
        }
        // A record removed since the listing counts: its run may have let go, or may have
        // replaced it with a fresher one this listing missed.
        let bytes = retry.run(|| remote.get_record(&name)).await.0?;
        let body = bytes
            .filter(|b| b.len() <= MAX_LOCK_BYTES)
            .and_then(|b| serde_json::from_slice::<LockBody>(&b).ok())
            .filter(|b| b.format == LOCK_FORMAT);
        let found = Found { name, body };
        if break_all {
            let why = format!("removed by --break-lock ({})", found.holder(now));
            gone.push((found, why));
        } else if let Some(why) = found.gone(me, now) {
            gone.push((found, why));
        } else {
            live.push(found);
        }
    }
    Ok((gone, live))
}

/// A pause of 0.2–1.2 s times the attempt, different for each run.
fn backoff(attempt: u32) -> Duration {
    let seed = format!("{}.{}.{attempt}", now_nanos(), std::process::id());
    let r = ObjectId::of(seed.as_bytes()).as_bytes()[0];
    Duration::from_millis((200 + u64::from(r) * 4) * u64::from(attempt))
}

fn locked(remote: &Arc<dyn Store>, holder: &str) -> Error {
    failed(
        remote,
        format!(
            "another `nshard remote gc` is running on it ({holder}): nothing was changed; run gc again once it has finished (`--dry-run` needs no lock). The lock of a run killed on another machine stops counting {} minutes after its last refresh; `--break-lock` removes it now",
            STALE.as_secs() / 60
        ),
    )
}

fn failed(remote: &Arc<dyn Store>, reason: String) -> Error {
    Error::remote(remote.display_url(), RemoteFailure::Other, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(nanos: u128, body: Option<LockBody>) -> Found {
        let name = RecordName::parse(&format!("{GC_SPACE}/{LOCK_KEY}/{nanos:020}-00000000.admin"))
            .expect("a lock record name");
        Found { name, body }
    }

    #[test]
    fn a_lock_counts_until_its_run_is_gone() {
        let me = LockBody::here();
        let now = now_nanos();
        let other_host = LockBody {
            host: "elsewhere".into(),
            place: "another boot".into(),
            pid: 1,
            ..me.clone()
        };
        // Fresh, of another machine: counts.
        assert!(found(now - 1_000_000_000, Some(other_host.clone()))
            .gone(&me, now)
            .is_none());
        // Not refreshed for longer than STALE: gone, whoever wrote it.
        let old = now - STALE.as_nanos() - 1_000_000_000;
        let why = found(old, Some(other_host)).gone(&me, now).expect("stale");
        assert!(why.contains("has not refreshed it for 30 minutes"), "{why}");
        assert!(found(old, None).gone(&me, now).is_some());
        // An unreadable fresh record counts (it may be a newer nshard's).
        assert!(found(now, None).gone(&me, now).is_none());
        if me.place.is_empty() {
            return; // no /proc: no judging by process
        }
        // A process of this machine that runs (this one's parent, pid 1 of the namespace, or
        // this one itself) keeps its lock; one that does not run lets go of it.
        for pid in [me.pid, 1] {
            let b = LockBody { pid, ..me.clone() };
            assert!(found(now, Some(b)).gone(&me, now).is_none());
        }
        let dead = (2..=i32::MAX as u32)
            .rev()
            .step_by(7919)
            .find(|p| !Path::new("/proc").join(p.to_string()).exists())
            .expect("a free pid");
        let b = LockBody {
            pid: dead,
            ..me.clone()
        };
        let why = found(now, Some(b)).gone(&me, now).expect("dead");
        assert!(why.contains("died on this machine"), "{why}");
    }

    #[test]
    fn lock_records_are_not_marks() {
        let lock = RecordName::new(GC_SPACE, LOCK_KEY);
        assert!(is_lock(&lock));
        let mark = RecordName::new(GC_SPACE, &format!("{:016x}", 0));
        assert!(!is_lock(&mark));
        assert!(!lock.is_root() && !lock.is_lfs());
    }
}
