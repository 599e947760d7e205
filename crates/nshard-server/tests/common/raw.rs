//! Server-agnostic helpers for talking to a NeuroShard server by hand: raw HTTP/1.1 requests,
//! objects to send, a client, error-body checks, metrics. Shared by this crate's tests (the
//! server in-process) and the `nshard` crate's (the `nshard serve` process), which include this
//! file by path.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use nshard_remote::testing::random_bytes;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

/// Every file under `dir`, recursively.
pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Asserts unlabelled metrics in Prometheus text: each `(name, value)` of `want`.
pub fn assert_counters(text: &str, want: &[(&str, u64)]) {
    for &(name, value) in want {
        assert_eq!(metric_value(text, name), Some(value), "{name}:\n{text}");
    }
}

/// A raw HTTP/1.1 connection for requests no well-behaved client would send.
pub fn raw_connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// Sends `head` then `body` on a fresh connection and returns the whole response as text (the
/// request asks the server to close the connection).
pub fn raw_request(addr: &str, head: &str, body: &[u8]) -> String {
    let mut s = raw_connect(addr);
    s.write_all(head.as_bytes()).expect("send head");
    s.write_all(body).expect("send body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// An object of `len` random bytes: its id, raw bytes and encoded form.
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
