//! Delta listings (issue 14): a version of a directory unit that changes a few files stores a
//! delta of its listing, not a whole new one; the chain of bases travels with push and pull
//! (directory remote and a real `nshard serve`), gc keeps it, and a hostile delta is refused with
//! nothing written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::serve::{walkdir, Served};
use common::{git, ok, put_object, random_bytes, read_tree, TestRepo};
use nshard_core::backend::LocalStore;
use nshard_core::format::{is_delta, ListingDelta};
use nshard_core::ObjectId;

/// Text-like content for file `i` of generation `gen`.
fn content(i: usize, gen: u64) -> Vec<u8> {
    let mut d = format!("{{\"id\": {i}, \"gen\": {gen}, \"label\": \"cat\"}}\n")
        .repeat(4)
        .into_bytes();
    d.extend(random_bytes(48, gen * 1_000_003 + i as u64));
    d
}

fn objects_bytes(store: &Path) -> u64 {
    walkdir(&store.join("objects"))
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum()
}

fn store_of(repo: &Path) -> LocalStore {
    LocalStore::at(repo.join(".shard/objects"), repo.join(".shard/tmp"))
}

/// The listing id the work tree's `data.shard.json` names, and that object's raw bytes.
fn listing_of(repo: &Path) -> (ObjectId, Vec<u8>) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("data.shard.json")).expect("manifest"))
            .expect("json");
    let id = ObjectId::parse(m["listing"].as_str().expect("listing")).expect("id");
    let raw = store_of(repo).get(&id, 64 << 20).expect("listing object");
    (id, raw)
}

const N: usize = 2000;

/// A git repository whose `data/` unit has three committed versions (each also committed to
/// git): v1 of N files, v2 with 1 % changed, v3 with a file added, one removed, one changed.
/// Returns the repository, each version's tree, and the bytes v1's full listing, v1 and v2
/// stored.
type Versions = (TestRepo, Vec<BTreeMap<String, Vec<u8>>>, [u64; 3]);
fn three_versions() -> Versions {
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.ok(&["git-init", "--no-hooks"]);
    for i in 0..N {
        repo.write(&format!("data/p{}/f{i:04}.json", i % 8), &content(i, 1));
    }
    repo.ok(&["track", "--dir", "data"]);
    let before = objects_bytes(&repo.join(".shard"));
    repo.ok(&["commit", "-m", "v1"]);
    let v1_bytes = objects_bytes(&repo.join(".shard")) - before;
    let (v1_listing, _) = listing_of(repo.path());
    let full_listing = store_of(repo.path())
        .encoded_size(&v1_listing)
        .expect("v1 listing size");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "data v1"]);
    let mut trees = vec![read_tree(repo.path(), "data")];

    for i in (0..N).step_by(100) {
        repo.write(&format!("data/p{}/f{i:04}.json", i % 8), &content(i, 2));
    }
    let before = objects_bytes(&repo.join(".shard"));
    repo.ok(&["commit", "-m", "v2"]);
    let v2_bytes = objects_bytes(&repo.join(".shard")) - before;
    git(repo.path(), &["commit", "-q", "-am", "data v2"]);
    trees.push(read_tree(repo.path(), "data"));

    repo.write("data/new/added.json", &content(9999, 3));
    std::fs::remove_file(repo.join("data/p1/f0001.json")).expect("rm");
    repo.write("data/p2/f0002.json", &content(2, 3));
    repo.ok(&["commit", "-m", "v3"]);
    git(repo.path(), &["commit", "-q", "-am", "data v3"]);
    trees.push(read_tree(repo.path(), "data"));
    (repo, trees, [full_listing, v1_bytes, v2_bytes])
}

#[test]
fn a_one_percent_change_stores_a_small_delta_and_the_chain_travels() {
    let (repo, trees, [full_listing, v1_bytes, v2_bytes]) = three_versions();
    // What v2 added (new packs, the delta, the manifest) is a small fraction of v1's listing,
    // which v2 would otherwise have stored again.
    assert!(
        v2_bytes * 5 < full_listing,
        "v2 stored {v2_bytes} bytes; the full listing is {full_listing} (v1 stored {v1_bytes})"
    );
    // v1's listing is a full one; v3's is a delta on v2's, itself a delta on v1's.
    let (v3_id, v3_raw) = listing_of(repo.path());
    assert!(is_delta(&v3_raw), "v3 listing is not a delta");
    let v3 = ListingDelta::parse(&v3_raw, "v3").expect("delta");
    assert_eq!(v3.removed, vec!["p1/f0001.json".to_string()]);
    assert_eq!(v3.files.len(), 2, "{:?}", v3.files);
    let v2_raw = store_of(repo.path())
        .get(&v3.base, 64 << 20)
        .expect("v2 listing");
    let v2 = ListingDelta::parse(&v2_raw, "v2").expect("v2 is a delta");
    let v1_raw = store_of(repo.path()).get(&v2.base, 64 << 20).expect("v1");
    assert!(!is_delta(&v1_raw));
    let st = repo.json(&["status", "data"]);
    assert_eq!(st[0]["state"], "unchanged", "{st}");
    assert_eq!(st[0]["files"], N, "{st}");
    repo.ok(&["verify"]);
    let log = repo.ok(&["log", "data/"]);
    for m in ["v1", "v2", "v3"] {
        assert!(log.contains(m), "{m} not in {log}");
    }

    // A directory remote and a real server: each fresh clone pulls v3 (three listing objects),
    // checks it out byte for byte, and after a gc still has the whole chain.
    let remote = tempfile::tempdir().expect("remote");
    let store = tempfile::tempdir().expect("server store");
    let server = Served::start(&store.path().join("s"), &[], &[]);
    let dir_url = remote.path().to_str().expect("utf8").to_string();
    for url in [dir_url.as_str(), server.url.as_str()] {
        repo.ok(&["push", "--remote", url]);
        let clone = tempfile::tempdir().expect("clone");
        git(
            clone.path(),
            &["clone", "-q", repo.path().to_str().expect("utf8"), "b"],
        );
        let b = clone.path().join("b");
        ok(&b, &["pull", "--remote", url, "--checkout"]);
        assert_eq!(read_tree(&b, "data"), trees[2], "{url}");
        for id in [v3_id, v3.base, v2.base] {
            assert!(store_of(&b).has(&id), "{url}: listing {id} not pulled");
        }
        // Only v3's manifest came: gc has no older version to walk, yet keeps the chain.
        ok(&b, &["gc"]);
        for id in [v3_id, v3.base, v2.base] {
            assert!(store_of(&b).has(&id), "{url}: gc deleted listing {id}");
        }
        ok(&b, &["verify"]);
        std::fs::remove_dir_all(b.join("data")).expect("rm");
        ok(&b, &["checkout", "data"]);
        assert_eq!(read_tree(&b, "data"), trees[2], "{url}");
        let st = common::json(&b, &["status"]);
        assert_eq!(st[0]["state"], "unchanged", "{url}: {st}");
        // An older commit of git: its version (v2, a delta) pulls and checks out.
        git(&b, &["checkout", "-q", "HEAD~1"]);
        ok(&b, &["pull", "--remote", url, "--checkout"]);
        assert_eq!(read_tree(&b, "data"), trees[1], "{url}");
    }
}

#[test]
fn hostile_delta_listings_are_refused_with_nothing_written() {
    let pack = b"hello world".to_vec();
    let sha = ObjectId::of(&pack[..5]).to_hex();
    // (what, the delta's fields after "base", files and bytes it resolves to, expected error)
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "removes an absent path",
            r#""packs":[],"removed":["zz"],"files":[]"#.into(),
            "which its base does not hold",
        ),
        (
            "pack out of range",
            format!(
                r#""packs":[],"removed":[],"files":[{{"path":"b","size":5,"sha256":"{sha}","pack":[7,0]}}]"#
            ),
            "names pack 7",
        ),
        (
            "escape",
            format!(
                r#""packs":[],"removed":[],"files":[{{"path":"../b","size":5,"sha256":"{sha}","pack":[0,0]}}]"#
            ),
            "'..'",
        ),
        (
            "case twin",
            format!(
                r#""packs":[],"removed":[],"files":[{{"path":"A","size":5,"sha256":"{sha}","pack":[0,0]}}]"#
            ),
            "only by case",
        ),
    ];
    for (what, fields, why) in cases {
        let repo = TestRepo::new();
        let remote = tempfile::tempdir().expect("remote");
        let pack_id = put_object(remote.path(), &pack);
        let base = format!(
            r#"{{"format":"neuroshard.listing/1","packs":[{{"id":"{}","size":{}}}],"files":[{{"path":"a","size":5,"sha256":"{sha}","pack":[0,0]}}]}}"#,
            pack_id.to_hex(),
            pack.len()
        );
        let base_id = put_object(remote.path(), base.as_bytes());
        let delta = format!(
            r#"{{"format":"neuroshard.listing-delta/1","base":"{}",{fields}}}"#,
            base_id.to_hex()
        );
        let delta_id = put_object(remote.path(), delta.as_bytes());
        let (n, size) = if what == "removes an absent path" {
            (1, 5)
        } else {
            (2, 10)
        };
        let manifest = format!(
            "{{\n  \"format\": \"neuroshard.dir/1\",\n  \"path\": \"data\",\n  \"files\": {n},\n  \"size\": {size},\n  \"listing\": \"{}\",\n  \"version\": {{\n    \"message\": \"m\",\n    \"timestamp\": \"2026-11-29T10:00:00Z\",\n    \"parent\": null\n  }}\n}}\n",
            delta_id.to_hex()
        );
        repo.write("data.shard.json", manifest.as_bytes());
        let url = remote.path().to_str().expect("utf8");
        let err = repo.fails(&["pull", "--remote", url, "--checkout"]);
        assert!(err.contains(why), "{what}: expected {why:?} in {err}");
        assert!(!repo.join("data").exists(), "{what}: data/ was created");
        assert!(!store_of(repo.path()).has(&pack_id), "{what}: pack fetched");
        let err = repo.fails(&["checkout", "data"]);
        assert!(err.contains(why), "{what}: expected {why:?} in {err}");
        assert!(!repo.join("data").exists(), "{what}: data/ was created");
    }
}

#[test]
fn diff_of_a_unit_shows_block_stats_for_large_modified_files() {
    let repo = TestRepo::new();
    std::fs::write(
        repo.join(".shard/config.toml"),
        "[chunking]\nalgorithm = \"fixed\"\nsize = 65536\n",
    )
    .expect("config");
    let big = random_bytes(2 << 20, 1);
    repo.write("data/big.bin", &big);
    for i in 0..5 {
        repo.write(&format!("data/s{i}.json"), &content(i, 1));
    }
    repo.ok(&["track", "--dir", "data"]);
    repo.ok(&["commit", "-m", "v1"]);
    // One 64 KiB block of the large file changes; one small file too.
    let mut changed = big.clone();
    changed[100_000] ^= 0xff;
    repo.write("data/big.bin", &changed);
    repo.write("data/s1.json", &content(1, 2));
    let d = repo.json(&["diff", "data"]);
    let changes = d[0]["changes"].as_array().expect("changes");
    let big_change = changes
        .iter()
        .find(|c| c["path"] == "big.bin")
        .expect("big.bin listed");
    let b = &big_change["blocks"];
    assert_eq!(b["chunks_new"], 1, "{d}");
    assert_eq!(b["chunks_reused"], 31, "{d}");
    assert_eq!(b["bytes_new"], 65536, "{d}");
    let small = changes
        .iter()
        .find(|c| c["path"] == "s1.json")
        .expect("s1.json listed");
    assert!(small.get("blocks").is_none(), "{d}");
    let text = repo.ok(&["diff", "data"]);
    assert!(
        text.contains("31 of 32 blocks reused, 64.0 KiB new"),
        "{text}"
    );
    // status stays cheap: it reads no block.
    let st = repo.json(&["status", "data"]);
    assert!(st[0]["changes"][0].get("blocks").is_none(), "{st}");
}
