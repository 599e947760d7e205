//! Property-based fuzzing of what comes from other people: the path validator and the manifest
//! parser. Neither may panic on any input, and whatever they accept must be safe to use: a path
//! stays inside the repository on every OS, a manifest describes contiguous chunks that add up.
//!
//! The number of cases follows `PROPTEST_CASES` (`.ci/run` raises it for a longer, bounded run).

use std::path::{Component, Path};

use nshard_core::format::{check_path_component as check_component, Manifest};
use nshard_core::RepoPath;
use proptest::prelude::*;

/// Fragments that make names dangerous somewhere: git's and Windows' special names, HFS+
/// ignorable code points, separators, control characters.
const FRAGMENTS: &[&str] = &[
    ".git",
    ".GiT",
    "git",
    "GIT",
    "~1",
    "~2",
    ".shard",
    "shard",
    ".",
    "..",
    " ",
    ":",
    "$",
    "/",
    "\\",
    "\u{200c}",
    "\u{200d}",
    "\u{200e}",
    "\u{202e}",
    "\u{206a}",
    "\u{feff}",
    "\u{1b}",
    "\n",
    "\0",
    "\u{7f}",
    "\u{85}",
    "CON",
    "nul",
    "com1",
    "LPT9",
    "conin$",
    ".txt",
    "a",
    "b",
    "hooks",
    "é",
    "C:",
    "INDEX_ALLOCATION",
];

fn hostile_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..12).prop_map(|v| v.concat())
}

/// What HFS+ and NTFS would make of a component: ignorable code points dropped, ASCII folded,
/// trailing dots and spaces stripped, and an alternate data stream suffix cut.
fn as_the_filesystem_sees_it(c: &str) -> String {
    let mut s: String = c
        .chars()
        .filter(|&ch| {
            !matches!(ch as u32, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
        })
        .collect::<String>()
        .to_ascii_lowercase();
    if let Some(i) = s.find(':') {
        s.truncate(i);
    }
    s.trim_end_matches(['.', ' ']).to_string()
}

/// Everything an accepted path must satisfy.
fn check_accepted(s: &str, p: &RepoPath) {
    assert_eq!(p.as_str(), s);
    assert!(!s.starts_with('/') && !s.contains('\\') && !s.contains('\0'));
    assert!(!s.chars().any(char::is_control), "{s:?}");
    let root = Path::new("/repo/root");
    let joined = p.to_path(root);
    assert!(
        joined.starts_with(root),
        "{s:?} escapes: {}",
        joined.display()
    );
    assert!(joined
        .components()
        .skip(root.components().count())
        .all(|c| matches!(c, Component::Normal(_))));
    for c in s.split('/') {
        let seen = as_the_filesystem_sees_it(c);
        assert!(
            !matches!(seen.as_str(), ".git" | ".shard" | "git~1" | "shard~1"),
            "{s:?}: component {c:?} is {seen:?} on some filesystem"
        );
        assert!(check_component(c).is_none());
    }
    // The display form never carries a control or invisible character.
    assert!(!p.to_string().chars().any(char::is_control));
    assert_eq!(RepoPath::parse(s).expect("re-parse").as_str(), s);
}

const SAMPLE: &str = r#"{
  "format": "neuroshard.manifest/1",
  "path": "models/m.bin",
  "size": 10,
  "sha256": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
  "chunking": null,
  "chunks": [
    {"id": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb", "offset": 0, "size": 4},
    {"id": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb", "offset": 4, "size": 6}
  ],
  "version": {"message": "m", "timestamp": "2026-11-25T10:00:00Z", "parent": null}
}"#;

/// [`SAMPLE`] with the default chunking parameters filled in.
fn sample() -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(SAMPLE).expect("sample");
    v["chunking"] =
        serde_json::to_value(nshard_core::format::ChunkParams::default()).expect("params");
    v
}

/// A JSON value of a few shapes: what a hostile or broken manifest field might hold.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (0u64..64).prop_map(serde_json::Value::from),
        hostile_path().prop_map(serde_json::Value::from),
        "[0-9a-f]{0,70}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop::collection::vec(inner, 0..3).prop_map(serde_json::Value::from)
    })
}

/// Everything an accepted manifest must satisfy.
fn check_manifest(m: &Manifest) {
    let mut end = 0u64;
    for c in &m.chunks {
        assert_eq!(c.offset, end);
        assert!(c.size > 0);
        end += c.size;
    }
    assert_eq!(end, m.size);
    check_accepted(m.path.as_str(), &m.path);
    let again = Manifest::parse(&m.to_bytes(), Path::new("again"), None).expect("round trip");
    assert_eq!(&again, m);
}

proptest! {
    #[test]
    fn any_string_is_refused_or_safe(s in any::<String>()) {
        if let Ok(p) = RepoPath::parse(&s) {
            check_accepted(&s, &p);
        }
    }

    #[test]
    fn hostile_fragments_are_refused_or_safe(s in hostile_path()) {
        if let Ok(p) = RepoPath::parse(&s) {
            check_accepted(&s, &p);
        }
    }

    #[test]
    fn any_bytes_never_panic_the_manifest_parser(b in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Manifest::parse(&b, Path::new("fuzz"), None) {
            check_manifest(&m);
        }
    }

    #[test]
    fn mutated_manifests_are_refused_or_consistent(
        edits in prop::collection::vec(
            (prop::sample::select(&[
                "/path", "/size", "/sha256", "/chunks/0/id", "/chunks/0/offset", "/chunks/0/size",
                "/chunks/1/offset", "/chunks/1/size", "/chunks", "/chunking", "/chunking/max_size",
                "/version/message", "/version/timestamp", "/version/parent", "/format", "/tensors",
            ][..]), json_value()),
            1..4,
        )
    ) {
        let mut v = sample();
        for (ptr, val) in edits {
            if let Some(slot) = v.pointer_mut(ptr) {
                *slot = val;
            } else if let Some((parent, key)) = ptr.rsplit_once('/') {
                if let Some(obj) = v.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
                    obj.insert(key.to_string(), val);
                }
            }
        }
        let bytes = serde_json::to_vec_pretty(&v).expect("json");
        if let Ok(m) = Manifest::parse(&bytes, Path::new("fuzz"), None) {
            check_manifest(&m);
        }
    }
}

#[test]
fn the_sample_manifest_is_valid() {
    let bytes = serde_json::to_vec(&sample()).expect("json");
    let m = Manifest::parse(&bytes, Path::new("sample"), None).expect("valid");
    check_manifest(&m);
}
