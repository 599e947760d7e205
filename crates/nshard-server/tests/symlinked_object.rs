//! A store directory may hold planted files: HEAD on an object that is a symlink must not report
//! the length of whatever the link points to (the object is not a regular file, so it is absent).

mod common;

use common::TestServer;
use nshard_core::backend::LocalStore;
use nshard_remote::testing::object;

#[cfg(unix)]
#[test]
fn head_on_a_symlinked_object_does_not_report_the_target_length() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let server = TestServer::start(&store);
    let (id, enc) = object(10_000, 5);
    let path = LocalStore::at(store.join("objects"), store.join("tmp")).path_of(&id);
    std::fs::create_dir_all(path.parent().expect("fan-out")).expect("mkdir");
    let target = d.path().join("big");
    std::fs::write(&target, vec![7u8; 123_457]).expect("target");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    nshard_remote::install_tls_provider();
    let client = reqwest::blocking::Client::new();
    let head = client
        .head(server.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("head");
    let len = head
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_ne!(
        len.as_deref(),
        Some("123457"),
        "reported the symlink target's length"
    );
    assert_eq!(head.status().as_u16(), 404, "a symlink is not an object");
    // An upload of the object never writes through the link.
    client
        .put(server.at(&format!("/v1/objects/{id}")))
        .body(enc)
        .send()
        .expect("put");
    assert_eq!(std::fs::read(&target).expect("target"), vec![7u8; 123_457]);
}
