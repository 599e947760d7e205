//! Behaviours the README and `--help` promise, each checked on the real binary: names of states,
//! help texts that match what the commands do, counts in human output.

mod common;

use std::fs;

use common::{random_bytes, TestRepo};
use nshard_core::ObjectId;

/// `status --help`, the README and `status --json` use the same name for an invalid manifest, and
/// status exits 1 as documented.
#[test]
fn an_invalid_manifest_is_state_invalid_with_exit_status_1() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(10_000, 1));
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    repo.write(
        "a.bin.shard.json",
        b"{\"format\": \"neuroshard.manifest/1\"}",
    );
    let st = repo.json_exit(&["status"], 1);
    assert_eq!(st[0]["state"], "invalid", "{st}");
    let help = repo.ok(&["status", "--help"]);
    assert!(
        help.contains("invalid (the manifest fails validation)"),
        "{help}"
    );
    let out = common::nshard(repo.path())
        .arg("status")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("invalid "), "{text}");
}

/// `checkout --help` says which state `status` shows after `checkout --version`.
#[test]
fn checkout_help_names_the_state_status_reports_after_checkout_version() {
    let repo = TestRepo::new();
    let mut data = random_bytes(10_000, 2);
    repo.write("a.bin", &data);
    repo.ok(&["track", "a.bin"]);
    repo.ok(&["commit", "-m", "v1"]);
    let v1 = ObjectId::of(&repo.read("a.bin.shard.json")).to_hex();
    data[0] ^= 1;
    repo.write("a.bin", &data);
    repo.ok(&["commit", "-m", "v2"]);
    repo.ok(&["checkout", "a.bin", "--version", &v1[..8]]);
    let st = repo.json(&["status"]);
    let state = st[0]["state"].as_str().expect("state").to_string();
    assert_eq!(state, "outdated", "{st}");
    let help = repo.ok(&["checkout", "--help"]);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("`nshard status` shows the file {state}")),
        "{help}"
    );
    assert!(flat.contains("nshard commit --force"), "{help}");
}

/// Counts of one are singular in commit, push, pull and status output.
#[test]
fn one_chunk_is_one_chunk_not_1_chunks() {
    let repo = TestRepo::new();
    repo.write("a.bin", &random_bytes(5_000, 3));
    repo.ok(&["track", "a.bin"]);
    let out = repo.ok(&["commit", "-m", "v1"]);
    assert!(out.contains(" in 1 chunk: 1 new, 0 reused"), "{out}");
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let out = repo.ok(&["push", "--remote", url]);
    assert!(out.contains("(1 chunk)"), "{out}");
    // Drop the chunk locally: status counts it, pull brings it back.
    let m: serde_json::Value =
        serde_json::from_slice(&repo.read("a.bin.shard.json")).expect("manifest");
    let id = m["chunks"][0]["id"].as_str().expect("id");
    fs::remove_file(repo.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..])))
        .expect("rm chunk");
    let out = repo.ok(&["status"]);
    assert!(out.contains("(1 chunk not in the local store"), "{out}");
    let out = repo.ok(&["pull", "--remote", url]);
    assert!(out.contains("(1 chunk)"), "{out}");
    // A one-chunk file changed: "0 of 1 chunk reused".
    repo.write("a.bin", &random_bytes(5_000, 4));
    let out = repo.ok(&["diff", "a.bin"]);
    assert!(out.contains("blocks: 0 of 1 chunk reused"), "{out}");
}
