//! A corrupt object in the local store has a way out (issue 23, case 8): `verify` moves it aside
//! to `.shard/corrupt/`, as checkout does, so that `pull` no longer counts it as present and fetches
//! a good copy.

mod common;

use std::fs;

use common::TestRepo;

/// Flips the bits of one byte of the stored object at `p` (the last one by default).
fn flip_byte(p: &std::path::Path, at: Option<usize>) {
    let mut bytes = fs::read(p).expect("object");
    let at = at.unwrap_or(bytes.len() - 1);
    bytes[at] ^= 0x55;
    fs::write(p, &bytes).expect("corrupt it");
}

#[test]
fn verify_moves_a_corrupt_object_aside_and_pull_fetches_a_good_copy() {
    let (repo, data) = TestRepo::committed(3 << 20);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8").to_string();
    repo.ok(&["push", "--remote", &url]);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let p = repo.object_path(&id);
    flip_byte(&p, None);

    let v = repo.json_exit(&["verify"], 1);
    let problems = v["problems"].as_array().expect("problems");
    let p0 = problems
        .iter()
        .find(|q| q["kind"] == "corrupt-object")
        .unwrap_or_else(|| panic!("no corrupt-object problem: {v}"));
    assert_eq!(p0["object"], id.as_str(), "{v}");
    let detail = p0["detail"].as_str().expect("detail");
    assert!(
        detail.contains("moved aside") && detail.contains("nshard pull"),
        "{detail}"
    );
    assert!(!p.exists(), "the corrupt copy is still in the store");
    assert!(repo.join(&format!(".shard/corrupt/{id}")).exists());

    // pull sees the object as missing now and fetches it.
    let pulled = repo.json(&["pull", "--remote", &url]);
    assert!(
        pulled["objects"].as_u64().expect("objects") >= 1,
        "{pulled}"
    );
    repo.ok(&["verify"]);
    fs::remove_file(repo.join("m/model.bin")).expect("rm");
    repo.ok(&["checkout"]);
    assert!(repo.read("m/model.bin") == data);
}

/// A push that meets a corrupt local object the remote lacks moves it aside (never sends it),
/// so the way out its hint gives works: `commit` of the intact file stores the chunk again, and
/// the next push sends it.
#[test]
fn push_moves_a_corrupt_object_aside_so_commit_can_store_it_again() {
    let remote = tempfile::tempdir().expect("tmp");
    corrupt_then_push(remote.path().to_str().expect("utf8"));
}

/// The same through `nshard serve`, which refuses the corrupt upload with its own error.
#[test]
fn push_to_a_server_moves_a_corrupt_object_aside() {
    let store = tempfile::tempdir().expect("tmp");
    let served = common::serve::Served::start(store.path(), &[], &[]);
    corrupt_then_push(&served.at(""));
}

fn corrupt_then_push(url: &str) {
    let (repo, _) = TestRepo::committed(3 << 20);
    let url = url.to_string();
    repo.ok(&["push", "--remote", &url]);
    let data = common::random_bytes(3 << 20, 77);
    repo.write("m/model.bin", &data);
    repo.ok(&["commit", "-m", "v2"]);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let p = repo.object_path(&id);
    flip_byte(&p, None);

    let err = repo.fails(&["push", "--remote", &url]);
    assert!(
        err.contains(&id[..12]) && err.contains("moved to .shard/corrupt/"),
        "{err}"
    );
    assert!(!p.exists(), "the corrupt copy is still in the store");
    let out = repo.ok(&["commit", "-m", "v2 again"]);
    assert!(p.exists(), "commit did not store the chunk again");
    // The version is unchanged, and commit says what it stored again.
    assert!(
        out.contains("unchanged") && out.contains("stored again 1 chunk the store had lost"),
        "{out}"
    );
    repo.ok(&["push", "--remote", &url]);
    let clone = TestRepo::new();
    fs::create_dir_all(clone.join("m")).expect("mkdir");
    fs::copy(
        repo.join("m/model.bin.shard.json"),
        clone.join("m/model.bin.shard.json"),
    )
    .expect("manifest");
    clone.ok(&["pull", "--remote", &url, "--checkout"]);
    assert!(clone.read("m/model.bin") == data);
}

/// A pack of a directory unit found corrupt by push is moved aside; `commit` reads the files
/// whose committed bytes were in it again and stores them anew, and the next push sends them.
#[test]
fn a_corrupt_pack_of_a_unit_is_stored_again_by_commit() {
    let repo = TestRepo::new();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..5u64 {
        let rel = format!("data/f{i}");
        let bytes = common::random_bytes(5000, 100 + i);
        repo.write(&rel, &bytes);
        files.insert(rel, bytes);
    }
    repo.ok(&["track", "--dir", "data"]);
    repo.ok(&["commit", "-m", "v1"]);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8").to_string();
    // The largest object is the pack.
    let (pack, _) = common::walk(&repo.join(".shard/objects"))
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("objects");
    flip_byte(std::path::Path::new(&pack), Some(1000));

    let err = repo.fails(&["push", "--remote", &url]);
    assert!(err.contains("moved to .shard/corrupt/"), "{err}");
    // Status says what is missing, and how to get it back, instead of "unchanged".
    let st = repo.json(&["status"]);
    assert_eq!(st[0]["state"], "data-missing", "{st:#}");
    assert_eq!(st[0]["missing_objects"], 1, "{st:#}");
    let out = repo.ok(&["status"]);
    assert!(
        out.contains("1 pack or chunk not in the local store"),
        "{out}"
    );
    repo.ok(&["commit", "-m", "store the files again"]);
    assert_eq!(repo.json(&["status"])[0]["state"], "unchanged");
    repo.ok(&["push", "--remote", &url]);
    repo.ok(&["verify"]);
    let clone = TestRepo::new();
    fs::copy(repo.join("data.shard.json"), clone.join("data.shard.json")).expect("manifest");
    clone.ok(&["pull", "--remote", &url, "--checkout"]);
    assert!(common::read_tree(clone.path(), "data") == files);
}
