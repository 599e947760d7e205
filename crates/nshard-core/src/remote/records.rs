//! Root records: what each push tells a shared remote it relies on, so that `nshard remote gc`
//! can decide what is live without trusting one clone's view.
//!
//! A record is a small immutable blob in the remote's record space, named
//! `SPACE/KEY/STAMP.WRITER`:
//! - `SPACE` is the repository's id (16 hex digits, [`repository_id`]) or a reserved space of gc
//!   itself (`_gc` for its marks, `_retention` for the retention policy);
//! - `KEY` is 16 hex digits naming what the record is about (a ref: [`ref_key`]);
//! - `STAMP` is the writer's clock in nanoseconds (20 digits) and 8 random hex digits, so that
//!   names never collide and sort by age;
//! - `WRITER` is set by the store, never by the client: `admin` for a directory or a bucket (whoever
//!   can write there can delete there) and for the server's admin tokens, `w` and 16 hex digits
//!   for a server write token (a digest of its digest: it names the token, never reveals it),
//!   `anonymous` for an anonymous writer.
//!
//! Records are only ever added (put-if-absent); a newer record *supersedes* older ones of the same
//! space and key from the same writer, and an `admin` record supersedes every older one: so a
//! write token can add records but never make another writer's record stop counting. Only gc
//! (admin) deletes records, and only superseded ones, after what they alone named is gone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, RemoteError, RemoteFailure, Result};
use crate::id::ObjectId;

/// The format tag of a root record.
pub const RECORD_FORMAT: &str = "neuroshard.record/1";
/// The format tag of a retention record.
pub const RETENTION_FORMAT: &str = "neuroshard.retention/1";
/// The largest record a store accepts or a reader reads (about 900 000 version ids).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// The space of gc's own marks.
pub const GC_SPACE: &str = "_gc";
/// The space of the retention policy.
pub const RETENTION_SPACE: &str = "_retention";
/// The space of git-lfs objects stored by `nshard lfs agent` (any writer may add to it: every
/// record there is checked against the oid it claims before it is used).
pub const LFS_SPACE: &str = "_lfs";
/// The format tag of an LFS record.
pub const LFS_FORMAT: &str = "neuroshard.lfs/1";
/// The key of the single subject in gc's own spaces.
pub const SINGLE_KEY: &str = "0000000000000000";
/// The writer name of records written with full rights.
pub const ADMIN_WRITER: &str = "admin";
/// The writer name of records written without a token.
pub const ANONYMOUS_WRITER: &str = "anonymous";

/// The name of a record (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordName {
    space: String,
    key: String,
    stamp: String,
    writer: String,
}

fn is_hex16(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_space(s: &str) -> bool {
    is_hex16(s) || s == GC_SPACE || s == RETENTION_SPACE || s == LFS_SPACE
}

fn valid_stamp(s: &str) -> bool {
    let Some((nanos, rand)) = s.split_once('-') else {
        return false;
    };
    nanos.len() == 20
        && nanos.bytes().all(|b| b.is_ascii_digit())
        && rand.len() == 8
        && rand
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_writer(s: &str) -> bool {
    s == ADMIN_WRITER || s == ANONYMOUS_WRITER || s.strip_prefix('w').is_some_and(is_hex16)
}

impl RecordName {
    /// A new name in `space` about `key`, stamped now; the writer is set by the store.
    pub fn new(space: &str, key: &str) -> RecordName {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Names only need to differ between writers stamping in the same nanosecond.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = format!("{nanos}.{}.{n}.{space}.{key}", std::process::id());
        let rand = &ObjectId::of(seed.as_bytes()).to_hex()[..8];
        RecordName {
            space: space.to_string(),
            key: key.to_string(),
            stamp: format!("{nanos:020}-{rand}"),
            writer: ADMIN_WRITER.to_string(),
        }
    }

    /// Parses `SPACE/KEY/STAMP.WRITER`; `None` for anything else (so a store never reads a name
    /// that could leave its record space).
    pub fn parse(s: &str) -> Option<RecordName> {
        let mut parts = s.split('/');
        let (space, key, last) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (stamp, writer) = last.split_once('.')?;
        (valid_space(space) && is_hex16(key) && valid_stamp(stamp) && valid_writer(writer)).then(
            || RecordName {
                space: space.into(),
                key: key.into(),
                stamp: stamp.into(),
                writer: writer.into(),
            },
        )
    }

    /// Parses the unwritten form `SPACE/KEY/STAMP` a client sends (the store adds the writer).
    pub fn parse_unwritten(s: &str) -> Option<RecordName> {
        RecordName::parse(&format!("{s}.{ADMIN_WRITER}"))
    }

    /// The same name written by `writer` (which must be a valid writer name).
    pub fn with_writer(&self, writer: &str) -> Option<RecordName> {
        valid_writer(writer).then(|| RecordName {
            writer: writer.to_string(),
            ..self.clone()
        })
    }

    /// `SPACE/KEY/STAMP`, without the writer.
    pub fn unwritten(&self) -> String {
        format!("{}/{}/{}", self.space, self.key, self.stamp)
    }

    /// The space (a repository id, or one of gc's own).
    pub fn space(&self) -> &str {
        &self.space
    }

    /// The key (a ref's).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Who wrote it.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// When it was written, in nanoseconds since the epoch (the writer's clock).
    pub fn nanos(&self) -> u128 {
        self.stamp[..20].parse().unwrap_or(0)
    }

    /// Whether it lies in one of gc's own spaces (only admins write there).
    pub fn is_reserved(&self) -> bool {
        self.space == GC_SPACE || self.space == RETENTION_SPACE
    }

    /// Whether it is a repository's root record (not gc's, not an LFS object's).
    pub fn is_root(&self) -> bool {
        is_hex16(&self.space)
    }

    /// Whether it maps a git-lfs object to its stored version ([`LfsRecord`]).
    pub fn is_lfs(&self) -> bool {
        self.space == LFS_SPACE
    }
}

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}.{}",
            self.space, self.key, self.stamp, self.writer
        )
    }
}

/// The first 16 hex digits of the SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    ObjectId::of(s.as_bytes()).to_hex()[..16].to_string()
}

/// The key of a ref's records.
pub fn ref_key(refname: &str) -> String {
    short_hash(refname)
}

/// The identity of a repository: its git remote's URL made comparable (scheme, credentials, port
/// spelling, a trailing `.git` or `/` and the case of the host removed), so that every clone and
/// CI runner of one repository agrees, whether it cloned over SSH or HTTPS; or `local:<path>` for
/// a repository without a git remote.
pub fn repository_name(git_remote_url: Option<&str>, root: &std::path::Path) -> String {
    let Some(url) = git_remote_url.map(str::trim).filter(|u| !u.is_empty()) else {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        return format!("local:{}", root.display());
    };
    let mut rest = url;
    let mut is_path = false;
    if let Some((scheme, tail)) = url.split_once("://") {
        if scheme == "file" {
            is_path = true;
        }
        rest = tail;
    } else if let Some((host, path)) = url.split_once(':').filter(|(h, _)| {
        // scp-like `user@host:path` (not a Windows drive, not a path).
        h.len() > 1 && !h.contains('/')
    }) {
        return normalize_host_path(host, path);
    } else {
        is_path = true;
    }
    if is_path {
        let p = std::path::Path::new(rest);
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let s = p.display().to_string();
        return format!("path:{}", s.trim_end_matches('/').trim_end_matches(".git"));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    normalize_host_path(host, path)
}

fn normalize_host_path(host: &str, path: &str) -> String {
    let host = host.rsplit('@').next().unwrap_or(host).to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or(&host).to_string();
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    format!("{host}/{path}")
}

/// The record space of a repository named `name` ([`repository_name`]).
pub fn repository_id(name: &str) -> String {
    short_hash(name)
}

/// A root record: one ref of one repository, and every version it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRecord {
    /// `neuroshard.record/1`.
    pub format: String,
    /// The repository (its git remote's URL made comparable, or `local:<path>`).
    pub repository: String,
    /// The ref (`refs/heads/main`), as the git remote names it.
    #[serde(rename = "ref")]
    pub refname: String,
    /// The commit the ref named, or `None` when the ref was deleted.
    pub commit: Option<String>,
    /// When the record was made (seconds since the epoch).
    pub created: u64,
    /// The versions named by manifests in the ref's commit itself (kept by any retention).
    pub tips: Vec<ObjectId>,
    /// Every version named by a manifest in the ref's history (the tips included).
    pub versions: Vec<ObjectId>,
    /// Written by a `pre-push` hook for an update git may still refuse (not a fast-forward, or
    /// a deletion): `versions` then also holds what the ref named before, and gc's refresh
    /// replaces the record once the git remote shows where the ref went.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

impl RootRecord {
    /// Parses and checks a record read from a remote.
    pub fn parse(bytes: &[u8], name: &RecordName) -> Result<RootRecord> {
        let r: RootRecord = parse_json(bytes, name)?;
        if r.format != RECORD_FORMAT {
            return Err(bad_record(name, &unknown_format(&r.format)));
        }
        Ok(r)
    }
}

/// The key of the LFS records of `oid` (its first 16 hex digits; the record names the whole oid).
pub fn lfs_key(oid: &ObjectId) -> String {
    oid.to_hex()[..16].to_string()
}

/// An LFS record: git-lfs object `oid` (the SHA-256 of the file) is stored as the file version
/// `version` (a manifest object on the same remote, naming the chunks). Anyone may write one, so
/// a reader trusts it only once the file it rebuilds hashes to `oid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LfsRecord {
    /// `neuroshard.lfs/1`.
    pub format: String,
    /// The LFS oid (SHA-256 of the file's bytes).
    pub oid: ObjectId,
    /// The file's size in bytes.
    pub size: u64,
    /// The manifest object that rebuilds the file.
    pub version: ObjectId,
}

impl LfsRecord {
    /// Parses and checks an LFS record read from a remote.
    pub fn parse(bytes: &[u8], name: &RecordName) -> Result<LfsRecord> {
        let r: LfsRecord = parse_json(bytes, name)?;
        if r.format != LFS_FORMAT {
            return Err(bad_record(name, &unknown_format(&r.format)));
        }
        if name.key() != lfs_key(&r.oid) {
            return Err(bad_record(name, "names another object than its key"));
        }
        Ok(r)
    }
}

/// A version pruned by retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedVersion {
    /// The version.
    pub version: ObjectId,
    /// The file (or unit) it is a version of.
    pub path: String,
    /// When it was pruned (seconds since the epoch).
    pub pruned: u64,
}

/// The retention policy recorded on a remote, and what it pruned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRecord {
    /// `neuroshard.retention/1`.
    pub format: String,
    /// Versions kept per file (besides tips).
    pub keep_last: Option<u32>,
    /// Versions pruned so far.
    pub pruned: Vec<PrunedVersion>,
}

impl RetentionRecord {
    /// Parses and checks a retention record.
    pub fn parse(bytes: &[u8], name: &RecordName) -> Result<RetentionRecord> {
        let r: RetentionRecord = parse_json(bytes, name)?;
        if r.format != RETENTION_FORMAT {
            return Err(bad_record(name, &unknown_format(&r.format)));
        }
        Ok(r)
    }
}

fn unknown_format(f: &str) -> String {
    format!("format {f:?} is not one this nshard knows (written by a newer nshard? upgrade nshard)")
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], name: &RecordName) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| bad_record(name, &format!("not a record: {e}")))
}

fn bad_record(name: &RecordName, reason: &str) -> Error {
    Error::Remote(RemoteError::Failed {
        remote: format!("record {name}"),
        kind: RemoteFailure::Other,
        reason: reason.to_string(),
    })
}

/// Of `names`, which records count and which are superseded: per space and key, the newest
/// admin record supersedes every older record, and any writer's newest record supersedes that
/// writer's older ones. Returns (current, superseded), each sorted.
pub fn supersede(names: &[RecordName]) -> (Vec<RecordName>, Vec<RecordName>) {
    let mut by_subject: HashMap<(&str, &str), Vec<&RecordName>> = HashMap::new();
    for n in names {
        by_subject.entry((&n.space, &n.key)).or_default().push(n);
    }
    let mut current = Vec::new();
    let mut superseded = Vec::new();
    for (_, mut list) in by_subject {
        // Newest first (the stamp orders by time; ties by the random part and writer).
        list.sort_by(|a, b| (&b.stamp, &b.writer).cmp(&(&a.stamp, &a.writer)));
        let admin_at = list.iter().position(|n| n.writer == ADMIN_WRITER);
        let mut newest_of: BTreeMap<&str, ()> = BTreeMap::new();
        for (i, n) in list.iter().enumerate() {
            let older_than_admin = admin_at.is_some_and(|a| i > a);
            if !older_than_admin && newest_of.insert(&n.writer, ()).is_none() {
                current.push((*n).clone());
            } else {
                superseded.push((*n).clone());
            }
        }
    }
    current.sort();
    superseded.sort();
    (current, superseded)
}

/// An object as a store lists it for gc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its id.
    pub id: ObjectId,
    /// Its stored (encoded) size.
    pub size: u64,
    /// When it was stored (seconds since the epoch; 0 when the store cannot say, which makes it
    /// old).
    pub modified: u64,
}

/// One mark: when an unreferenced object was first seen unreferenced (seconds since the
/// epoch), and whether no record ever covered it (marked by a run with `--include-unrecorded`,
/// which later runs honour only when asked again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The object.
    pub id: ObjectId,
    /// When it was first marked.
    pub at: u64,
    /// Whether no record covered it.
    pub unrecorded: bool,
}

/// gc's marks, sorted by id. Stored as one or more records in the `_gc` space sharing a stamp
/// (at most [`MARKS_PER_RECORD`] each, so no record outgrows [`MAX_RECORD_BYTES`]), each the
/// magic line then 41 bytes per mark (id, time little-endian, 1 for unrecorded else 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// The marks, sorted by id.
    pub entries: Vec<Mark>,
}

/// Marks per record: 20.5 MB.
pub const MARKS_PER_RECORD: usize = 500_000;

const MARKS_MAGIC: &[u8] = b"neuroshard.gc-marks/1\n";

impl Marks {
    /// The mark of `id`.
    pub fn get(&self, id: &ObjectId) -> Option<&Mark> {
        self.entries
            .binary_search_by_key(id, |m| m.id)
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The stored form of `part` (a slice of the sorted entries).
    pub fn part_bytes(part: &[Mark]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MARKS_MAGIC.len() + part.len() * 41);
        out.extend_from_slice(MARKS_MAGIC);
        for m in part {
            out.extend_from_slice(m.id.as_bytes());
            out.extend_from_slice(&m.at.to_le_bytes());
            out.push(u8::from(m.unrecorded));
        }
        out
    }

    /// Parses one stored part read from a remote, appending its marks.
    pub fn parse_part(&mut self, bytes: &[u8], name: &RecordName) -> Result<()> {
        let body = bytes
            .strip_prefix(MARKS_MAGIC)
            .filter(|b| b.len() % 41 == 0)
            .ok_or_else(|| bad_record(name, "not gc marks"))?;
        self.entries.reserve(body.len() / 41);
        for e in body.chunks_exact(41) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&e[..32]);
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[32..40]);
            self.entries.push(Mark {
                id: ObjectId::from_digest(id),
                at: u64::from_le_bytes(t),
                unrecorded: e[40] == 1,
            });
        }
        Ok(())
    }

    /// Sorts the entries by id (after parsing parts).
    pub fn sort(&mut self) {
        self.entries.sort_unstable_by_key(|m| m.id);
        self.entries.dedup_by_key(|m| m.id);
    }
}

impl RecordName {
    /// A name with the same space, stamp and writer about another key (the parts of one state).
    pub fn with_key(&self, key: &str) -> Option<RecordName> {
        is_hex16(key).then(|| RecordName {
            key: key.to_string(),
            ..self.clone()
        })
    }

    /// The stamp (time and random part).
    pub fn stamp(&self) -> &str {
        &self.stamp
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(space: &str, nanos: u64, writer: &str) -> RecordName {
        RecordName::parse(&format!(
            "{space}/{}/{nanos:020}-0000000a.{writer}",
            ref_key("refs/heads/main")
        ))
        .expect("valid")
    }

    #[test]
    fn names_round_trip_and_refuse_anything_else() {
        let n = RecordName::new(&repository_id("github.com/a/b"), &ref_key("refs/heads/x"));
        assert_eq!(RecordName::parse(&n.to_string()), Some(n.clone()));
        assert_eq!(RecordName::parse_unwritten(&n.unwritten()), Some(n.clone()));
        for bad in [
            "../x/00000000000000000001-0000000a.admin",
            "0123456789abcdef/0123456789abcdef/00000000000000000001-0000000a.root",
            "0123456789abcdef/0123456789abcdef/00000000000000000001-0000000a",
            "0123456789ABCDEF/0123456789abcdef/00000000000000000001-0000000a.admin",
            "0123456789abcdef/0123456789abcdef/00000000000000000001-0000000a.admin/x",
            "_other/0123456789abcdef/00000000000000000001-0000000a.admin",
            "0123456789abcdef/0123456789abcdef/1-0000000a.admin",
        ] {
            assert_eq!(RecordName::parse(bad), None, "{bad}");
        }
        assert!(n.with_writer("../x").is_none());
        assert_eq!(
            n.with_writer("w0123456789abcdef")
                .map(|w| w.writer().to_string()),
            Some("w0123456789abcdef".into())
        );
    }

    #[test]
    fn newest_per_writer_counts_and_admin_supersedes_all_older() {
        let s = repository_id("x");
        let w1 = "w0000000000000001";
        let w2 = "w0000000000000002";
        let names = vec![
            name(&s, 1, w1),
            name(&s, 2, w2),
            name(&s, 3, w1),
            name(&s, 4, ADMIN_WRITER),
            name(&s, 5, w2),
        ];
        let (current, superseded) = supersede(&names);
        assert_eq!(current, vec![name(&s, 4, ADMIN_WRITER), name(&s, 5, w2)]);
        assert_eq!(
            superseded,
            vec![name(&s, 1, w1), name(&s, 2, w2), name(&s, 3, w1)]
        );
        // A write token cannot make another writer's record stop counting.
        let (current, _) = supersede(&[name(&s, 1, w1), name(&s, 9, w2)]);
        assert_eq!(current.len(), 2);
    }

    #[test]
    fn clones_of_one_repository_agree_on_its_name() {
        let root = std::path::Path::new("/nonexistent");
        let a = repository_name(Some("git@GitHub.com:org/model.git"), root);
        let b = repository_name(Some("https://user:pw@github.com/org/model"), root);
        let c = repository_name(Some("ssh://git@github.com:22/org/model.git/"), root);
        assert_eq!(a, "github.com/org/model");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(
            a,
            repository_name(Some("https://github.com/fork/model"), root)
        );
        assert!(repository_name(None, root).starts_with("local:"));
        assert!(repository_name(Some("/srv/git/m.git"), root).starts_with("path:/srv/git/m"));
    }

    #[test]
    fn marks_round_trip() {
        let mark = |seed: &[u8], at, unrecorded| Mark {
            id: ObjectId::of(seed),
            at,
            unrecorded,
        };
        let mut m = Marks {
            entries: vec![mark(b"a", 7, false), mark(b"b", 9, true)],
        };
        m.sort();
        let n = RecordName::new(GC_SPACE, SINGLE_KEY);
        let mut back = Marks::default();
        back.parse_part(&Marks::part_bytes(&m.entries), &n)
            .expect("parse");
        back.sort();
        assert_eq!(back, m);
        assert_eq!(back.get(&ObjectId::of(b"b")).map(|x| x.at), Some(9));
        assert!(back.get(&ObjectId::of(b"c")).is_none());
        assert!(Marks::default().parse_part(b"junk", &n).is_err());
    }
}
