//! History: `nshard diff` (block and tensor level) and `nshard log`, on the real binary.

mod common;
mod history_support;

use common::random_bytes;
use history_support::*;
use serde_json::Value;

#[test]
fn diff_working_file_shows_blocks_and_changed_tensor() {
    let r = repo_with(SMALL_CDC);
    r.write("m.safetensors", &checkpoint(&[0; 16]));
    r.ok(&["track", "m.safetensors"]);
    commit(&r, "step 0");
    let manifest: Value =
        serde_json::from_slice(&r.read("m.safetensors.shard.json")).expect("manifest");
    assert_eq!(
        manifest["tensors"].as_array().expect("tensor table").len(),
        16
    );
    let mut v = [0; 16];
    v[5] = 1;
    r.write("m.safetensors", &checkpoint(&v));
    // Taken before the first diff: content addressing would hide what a later run stored.
    let objects_before_diff = count_objects(&r);
    let d = r.json(&["diff", "m.safetensors"]);
    assert_eq!(d["to"]["kind"], "working-file");
    let b = &d["blocks"];
    assert_eq!(b["identical"], false);
    let new = b["bytes_new"].as_u64().expect("n");
    assert!((64 * 1024..400 * 1024).contains(&new), "{b}");
    assert!(b["chunks_reused"].as_u64().expect("n") > 10, "{b}");
    let t = &d["tensors"];
    assert_eq!(
        (t["total"].as_u64(), t["changed"].as_u64()),
        (Some(16), Some(1))
    );
    assert_eq!(t["entries"][0]["name"], "layers.05.weight");
    assert_eq!(t["entries"][0]["change"], "changed");
    let human = r.ok(&["diff", "m.safetensors"]);
    assert!(
        human.contains("tensors: 1 of 16 tensors changed (64.0 KiB, 6.2 %)"),
        "{human}"
    );
    assert!(
        human.contains("changed  layers.05.weight  BF16 [128, 256]  64.0 KiB"),
        "{human}"
    );
    // Nothing was stored by the three diffs, although the working file has new chunks.
    assert_eq!(count_objects(&r), objects_before_diff);
}

#[test]
fn diff_of_unchanged_file_is_identical_and_reuses_every_chunk() {
    // Guards that diff cuts the working file exactly as commit did.
    for chunking in [SMALL_CDC, ""] {
        let r = repo_with(chunking);
        let mut data = checkpoint(&[3; 16]);
        data.extend_from_slice(&random_bytes(3 << 20, 9));
        r.write("m.safetensors", &data);
        r.ok(&["track", "m.safetensors"]);
        commit(&r, "one");
        let d = r.json(&["diff", "m.safetensors"]);
        assert_eq!(d["blocks"]["identical"], true, "{d}");
        assert_eq!(d["blocks"]["chunks_new"], 0, "{d}");
        assert_eq!(d["blocks"]["chunks_dropped"], 0, "{d}");
        assert_eq!(d["tensors"]["unchanged"], 16, "{d}");
    }
}

#[test]
fn diff_between_stored_versions_needs_no_data() {
    let r = repo_with(SMALL_CDC);
    r.write("m.safetensors", &checkpoint(&[0; 16]));
    r.ok(&["track", "m.safetensors"]);
    let v1 = commit(&r, "v1");
    // v2: tensor 2 changed, tensor 15 reshaped, a tensor added.
    let mut t: Vec<_> = (0..15)
        .map(|i| {
            let seed = 1000 * i as u64 + u64::from(i == 2);
            (
                format!("layers.{i:02}.weight"),
                "BF16",
                vec![128, 256],
                random_bytes(64 * 1024, seed),
            )
        })
        .collect();
    t.push((
        "layers.15.weight".into(),
        "BF16",
        vec![256, 128],
        random_bytes(64 * 1024, 15000),
    ));
    t.push(("extra.bias".into(), "F32", vec![64], vec![0; 256]));
    r.write("m.safetensors", &safetensors(&t));
    let v2 = commit(&r, "v2");
    // Remove the data: the working file and every chunk object (manifest objects stay).
    std::fs::remove_file(r.join("m.safetensors")).expect("rm");
    for id in object_ids(&r) {
        if id != v1 && id != v2 {
            std::fs::remove_file(object_path(&r, &id)).expect("rm object");
        }
    }
    let d = r.json(&[
        "diff",
        "m.safetensors",
        "--from",
        &v1[..8],
        "--to",
        &v2[..10],
    ]);
    assert_eq!(d["from"]["version"], v1.as_str());
    assert_eq!(d["to"]["version"], v2.as_str());
    let t = &d["tensors"];
    assert_eq!(
        (
            t["changed"].as_u64(),
            t["retyped"].as_u64(),
            t["added"].as_u64(),
            t["removed"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(0)),
        "{t}"
    );
    // --to alone compares with its parent: the same diff.
    let d2 = r.json(&["diff", "m.safetensors", "--to", &v2]);
    assert_eq!(d2["from"]["version"], v1.as_str());
    assert_eq!(d2["tensors"], d["tensors"]);
    let human = r.ok(&["diff", "m.safetensors", "--to", &v2[..12]]);
    assert!(
        human.contains("tensors: 2 of 17 tensors changed (128.0 KiB,"),
        "{human}"
    );
    assert!(human.contains("1 added (256 B)"), "{human}");
    assert!(
        human.contains("retyped  layers.15.weight  BF16 [128, 256] -> BF16 [256, 128]"),
        "{human}"
    );
    // The first version against nothing: every tensor added.
    let d0 = r.json(&["diff", "m.safetensors", "--to", &v1]);
    assert_eq!(d0["from"]["kind"], "none");
    assert_eq!(d0["tensors"]["added"], 16);
    // Without the working file, diff says what to do instead.
    let err = r.fails(&["diff", "m.safetensors"]);
    assert!(
        err.contains("not in the work tree") && err.contains("--from"),
        "{err}"
    );
}

#[test]
fn diff_refuses_unknown_versions() {
    let r = repo_with(SMALL_CDC);
    r.write("a.bin", &random_bytes(100_000, 1));
    r.ok(&["track", "a.bin"]);
    commit(&r, "one");
    let err = r.fails(&["diff", "a.bin", "--from", "0000000"]);
    assert!(err.contains("matches no version"), "{err}");
    let err = r.fails(&["diff", "a.bin", "--from", "xyz!"]);
    assert!(err.contains("not a version id"), "{err}");
    let err = r.fails(&["diff", "never.bin"]);
    assert!(err.contains("never committed"), "{err}");
}

#[test]
fn diff_with_lying_safetensors_header_still_gives_blocks() {
    let r = repo_with(SMALL_CDC);
    // The header says the tensor's data runs far past the end of the file.
    let h = br#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}"#;
    let mk = |seed| {
        let mut f = (h.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(h);
        f.extend_from_slice(&random_bytes(500_000, seed));
        f
    };
    r.write("lie.safetensors", &mk(1));
    r.ok(&["track", "lie.safetensors"]);
    commit(&r, "one");
    let m: Value = serde_json::from_slice(&r.read("lie.safetensors.shard.json")).expect("json");
    assert!(m.get("tensors").is_none(), "no table for a lying header");
    r.write("lie.safetensors", &mk(2));
    let d = r.json(&["diff", "lie.safetensors"]);
    assert!(d["blocks"]["chunks_new"].as_u64().expect("n") > 0);
    assert!(d["tensors"].is_null());
    let why = d["tensors_unavailable"].as_str().expect("reason");
    assert!(
        why.contains("not a valid safetensors file") && why.contains("outside"),
        "{why}"
    );
    let human = r.ok(&["diff", "lie.safetensors"]);
    assert!(human.contains("blocks: "), "{human}");
    assert!(human.contains("tensors: no tensor-level diff: "), "{human}");
}

#[test]
fn diff_with_huge_safetensors_header_still_gives_blocks() {
    let r = repo_with(SMALL_CDC);
    let mk = |seed| {
        // Claims an 18-exabyte header: refused before any allocation.
        let mut f = (u64::MAX - 7).to_le_bytes().to_vec();
        f.extend_from_slice(b"{\"w\":");
        f.extend_from_slice(&random_bytes(300_000, seed));
        f
    };
    r.write("huge.safetensors", &mk(1));
    r.ok(&["track", "huge.safetensors"]);
    let v1 = commit(&r, "one");
    r.write("huge.safetensors", &mk(2));
    commit(&r, "two");
    // Between stored versions, the reason is read from the stored header chunk.
    let d = r.json(&["diff", "huge.safetensors", "--from", &v1]);
    assert!(d["blocks"]["bytes_new"].as_u64().expect("n") > 0);
    let why = d["tensors_unavailable"].as_str().expect("reason");
    assert!(why.contains("over the 100000000-byte limit"), "{why}");
    // Against the working file, from the working file's header.
    r.write("huge.safetensors", &mk(3));
    let d = r.json(&["diff", "huge.safetensors"]);
    assert!(d["blocks"]["bytes_new"].as_u64().expect("n") > 0);
    let why = d["tensors_unavailable"].as_str().expect("reason");
    assert!(
        why.contains("working file") && why.contains("over the 100000000-byte limit"),
        "{why}"
    );
}

#[test]
fn log_walks_history_with_sizes_and_new_bytes() {
    let r = repo_with(SMALL_CDC);
    r.write("m.safetensors", &checkpoint(&[0; 16]));
    r.ok(&["track", "m.safetensors"]);
    let v1 = commit(&r, "step 0");
    let mut v = [0; 16];
    v[3] = 1;
    r.write("m.safetensors", &checkpoint(&v));
    let v2 = commit(&r, "step 1\n\nlonger description");
    let log = r.json(&["log", "m.safetensors"]);
    let e = log.as_array().expect("array");
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0]["version"].as_str(), e[0]["current"].as_bool()),
        (Some(v2.as_str()), Some(true))
    );
    assert_eq!(e[1]["version"], v1.as_str());
    assert_eq!(e[0]["message"], "step 1\n\nlonger description");
    assert_eq!(e[0]["tensors"], 16);
    let size = e[1]["size"].as_u64().expect("size");
    assert_eq!(
        e[1]["new_bytes"].as_u64(),
        Some(size),
        "root: everything new"
    );
    let added = e[0]["new_bytes"].as_u64().expect("n");
    assert!((64 * 1024..size / 2).contains(&added), "{added}");
    let human = r.ok(&["log", "m.safetensors.shard.json"]);
    let lines: Vec<&str> = human.lines().collect();
    assert!(lines[0].starts_with(&format!("* {}", &v2[..12])), "{human}");
    assert!(
        lines[0].ends_with("step 1") && lines[0].contains(" UTC "),
        "{human}"
    );
    assert!(lines[1].starts_with(&format!("  {}", &v1[..12])), "{human}");
}

#[test]
fn log_shows_missing_parent_without_failing() {
    let r = repo_with(SMALL_CDC);
    r.write("a.bin", &random_bytes(200_000, 1));
    r.ok(&["track", "a.bin"]);
    let v1 = commit(&r, "one");
    r.write("a.bin", &random_bytes(200_000, 2));
    let v2 = commit(&r, "two");
    r.write("a.bin", &random_bytes(200_000, 3));
    let v3 = commit(&r, "three");
    // The middle version's manifest object is gone (as after a partial pull).
    std::fs::remove_file(object_path(&r, &v2)).expect("rm");
    let log = r.json(&["log", "a.bin"]);
    let e = log.as_array().expect("array");
    assert_eq!(e.len(), 2, "{log}");
    assert_eq!(e[0]["version"], v3.as_str());
    assert!(e[0]["new_bytes"].is_null(), "unknown without the parent");
    assert_eq!(
        (e[1]["version"].as_str(), e[1]["state"].as_str()),
        (Some(v2.as_str()), Some("missing"))
    );
    let human = r.ok(&["log", "a.bin"]);
    assert!(
        human.contains(&format!("{}  (not in the local store", &v2[..12])),
        "{human}"
    );
    assert!(!human.contains(&v1[..12]), "history stops at the gap");
    // diff of v3 against its absent parent says how to proceed.
    let err = r.fails(&["diff", "a.bin", "--to", &v3]);
    assert!(
        err.contains("not in the local store") && err.contains("--from"),
        "{err}"
    );
    // Not an integrity problem: verify passes and notes the gap.
    let out = r.ok(&["verify"]);
    assert!(out.contains("history from version"), "{out}");
}

/// `log` counts what a version added to the store against every older version, not only its
/// parent: a version that goes back to earlier content adds nothing.
#[test]
fn log_counts_a_return_to_earlier_content_as_adding_nothing() {
    let (repo, v1) = common::TestRepo::committed(300_000);
    repo.write("m/model.bin", &common::random_bytes(300_000, 8));
    repo.ok(&["commit", "-m", "v2"]);
    repo.write("m/model.bin", &v1);
    // Going back to an older version's bytes is a revert: it takes --force.
    repo.fails(&["commit", "-m", "back to v1"]);
    repo.ok(&["commit", "-m", "back to v1", "--force"]);
    let log = repo.json(&["log", "m/model.bin"]);
    assert_eq!(log[0]["message"], "back to v1", "{log:#}");
    assert_eq!(log[0]["new_bytes"], 0, "{log:#}");
    assert_eq!(log[0]["stored_bytes"], 0, "{log:#}");
    assert_eq!(log[1]["new_bytes"], 300_000, "{log:#}");
    let text = repo.ok(&["log", "m/model.bin"]);
    let first = text.lines().next().expect("a line");
    assert!(first.contains("+0 B"), "{text}");
}
