//! Protocol v1 by hand: raw requests against a real `nshard serve`, for the server's tests.

use nshard_core::ObjectId;
use reqwest::blocking::Response;
use reqwest::StatusCode;

use super::serve::Served;

pub const WRITE: &str = "write-token-for-tests-0123456789";
pub const READ: &str = "read-token-for-tests-0123456789";

#[allow(unused_imports)]
pub use super::serve::{client, expect_error, object, zstd_object};

pub fn put(s: &Served, id: &ObjectId, body: Vec<u8>) -> Response {
    client()
        .put(s.at(&format!("/v1/objects/{id}")))
        .body(body)
        .send()
        .expect("PUT")
}

pub fn get(s: &Served, id: &ObjectId) -> Response {
    client()
        .get(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("GET")
}

pub fn head_status(s: &Served, id: &ObjectId) -> StatusCode {
    client()
        .head(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("HEAD")
        .status()
}

pub fn missing(s: &Served, ids: &[String]) -> Response {
    client()
        .post(s.at("/v1/objects/missing"))
        .json(&serde_json::json!({ "ids": ids }))
        .send()
        .expect("POST missing")
}

pub fn dev_server() -> (tempfile::TempDir, Served) {
    let d = tempfile::tempdir().expect("tmp");
    let s = Served::start(&d.path().join("store"), &[], &[]);
    (d, s)
}
