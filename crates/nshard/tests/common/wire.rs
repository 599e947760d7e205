//! Protocol v1 by hand: raw requests against a real `nshard serve`, for the server's tests.

use std::time::Duration;

use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

use super::random_bytes;
use super::serve::Served;

pub const WRITE: &str = "write-token-for-tests-0123456789";
pub const READ: &str = "read-token-for-tests-0123456789";

pub fn object(len: usize, seed: u64) -> (ObjectId, Vec<u8>, Vec<u8>) {
    let raw = random_bytes(len, seed);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    (ObjectId::of(&raw), raw, enc)
}

/// A compressible object (its encoded form is zstd, not raw).
pub fn zstd_object(len: usize, seed: u64) -> (ObjectId, Vec<u8>) {
    let raw: Vec<u8> = random_bytes(len / 8, seed).repeat(8);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    (ObjectId::of(&raw), enc)
}

pub fn client() -> Client {
    nshard_remote::install_tls_provider();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Asserts a JSON error response with `status` and `code`; returns the message.
pub fn expect_error(r: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status(), status, "wrong status");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let v: serde_json::Value = r.json().expect("JSON error body");
    assert_eq!(v["code"], code, "{v}");
    let msg = v["error"].as_str().expect("error message").to_string();
    assert!(!msg.is_empty());
    msg
}

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
