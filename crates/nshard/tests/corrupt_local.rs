//! A corrupt object in the local store has a way out (issue 23, case 8): `verify` moves it aside
//! to `.shard/corrupt/`, as checkout does, so that `pull` no longer counts it as present and fetches
//! a good copy.

mod common;

use std::fs;

use common::TestRepo;

#[test]
fn verify_moves_a_corrupt_object_aside_and_pull_fetches_a_good_copy() {
    let (repo, data) = TestRepo::committed(3 << 20);
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8").to_string();
    repo.ok(&["push", "--remote", &url]);
    let m = repo.manifest("m/model.bin");
    let id = m["chunks"][0]["id"].as_str().expect("id").to_string();
    let p = repo.object_path(&id);
    let mut bytes = fs::read(&p).expect("object");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&p, &bytes).expect("corrupt it");

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
