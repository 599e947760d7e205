//! `nshard serve` and signals, as documented: SIGINT (Ctrl-C) stops accepting connections and lets
//! requests in flight finish; a second signal stops at once; requests still running after 30 s
//! are abandoned; SIGTERM does the same; kill -9 mid-upload leaves no partial object behind. Uploads
//! left unfinished never become visible. (What the server answers is tested on the app itself, in
//! the nshard-server crate's tests/.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::random_bytes;
use common::serve::{raw_connect, Served};
use common::wire::*;
use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::StatusCode;

/// An upload of a 4 MiB object of which only the first `sent` bytes are sent; returns the
/// connection once the server counts it in flight.
fn partial_upload(s: &Served, sent: usize) -> (ObjectId, Vec<u8>, TcpStream) {
    let raw = random_bytes(4 << 20, 51);
    let id = ObjectId::of(&raw);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    let c = partial_upload_of(s, &id, &enc, sent);
    (id, enc, c)
}

/// Starts a raw PUT of `enc`, sends `sent` bytes of the body, and waits until the server counts
/// the upload as in flight.
fn partial_upload_of(s: &Served, id: &ObjectId, enc: &[u8], sent: usize) -> TcpStream {
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        enc.len()
    );
    let mut c = raw_connect(&s.addr);
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(&enc[..sent]).expect("part of the body");
    s.wait_metric("nshard_uploads_in_flight", 1);
    c
}

/// Waits (bounded) until the server's log contains `text`.
fn wait_log(s: &Served, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "log never said {text:?}:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn health_ok(s: &Served) -> bool {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(s.at("/v1/health"))
        .send()
        .is_ok()
}

#[test]
fn sigint_stops_accepting_and_finishes_requests_in_flight() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = Served::start(&d.path().join("store"), &[], &[]);
    let (_, enc, mut c) = partial_upload(&s, 1 << 20);
    common::signal(s.pid(), "INT");
    wait_log(&s, "shutting down");
    let deadline = Instant::now() + Duration::from_secs(20);
    while health_ok(&s) {
        assert!(Instant::now() < deadline, "still accepting after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.write_all(&enc[1 << 20..]).expect("rest of the body");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let st = s.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st:?}\n{}", s.log());
    assert_eq!(s.object_files().len(), 1);
}

#[test]
fn a_second_signal_stops_at_once() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = Served::start(&d.path().join("store"), &[], &[]);
    let (_, _, _c) = partial_upload(&s, 1 << 20);
    common::signal(s.pid(), "INT");
    wait_log(&s, "shutting down");
    common::signal(s.pid(), "TERM");
    // Well before the 30 s drain cap.
    let st = s.wait_exit(Duration::from_secs(20));
    assert!(!st.success(), "{st:?}");
    assert!(
        s.log().contains("stopped by a second signal"),
        "{}",
        s.log()
    );
    assert!(s.object_files().is_empty(), "{:?}", s.object_files());
}

#[test]
fn requests_still_running_after_the_drain_cap_are_abandoned() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = Served::start(&d.path().join("store"), &[], &[]);
    // An upload that never finishes: a byte every half second (never idle, never complete).
    let (_, _, c) = partial_upload(&s, 1 << 20);
    let trickle = std::thread::spawn(move || {
        let mut c = c;
        for _ in 0..240 {
            if c.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    s.terminate();
    wait_log(&s, "shutting down");
    let st = s.wait_exit(Duration::from_secs(120));
    assert!(!st.success(), "{st:?}");
    assert!(
        s.log()
            .contains("requests still running 30s after the shutdown signal"),
        "{}",
        s.log()
    );
    assert!(s.object_files().is_empty(), "{:?}", s.object_files());
    trickle.join().expect("trickle thread");
}

#[test]
fn sigterm_finishes_requests_in_flight() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = Served::start(&d.path().join("store"), &[], &[]);
    let (id, _, enc) = object(4 << 20, 19);
    let mut c = partial_upload_of(&s, &id, &enc, 1 << 20);
    s.terminate();
    // New connections are soon no longer accepted…
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client().get(s.at("/v1/health")).send().is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // …but the upload in flight completes.
    c.write_all(&enc[1 << 20..]).expect("rest of the body");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let st = s.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "{st:?}\n{}", s.log());
    assert_eq!(s.object_files().len(), 1);
    assert!(s.log().contains("shutting down"), "{}", s.log());
}

#[test]
fn kill_9_mid_upload_leaves_no_partial_object() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let mut s = Served::start(&store, &[], &[]);
    let (id, raw, enc) = object(8 << 20, 14);
    let _c = partial_upload_of(&s, &id, &enc, enc.len() / 2);
    s.kill9();
    let s = Served::start(&store, &[], &[]);
    assert_eq!(head_status(&s, &id), StatusCode::NOT_FOUND);
    assert!(s.object_files().is_empty(), "{:?}", s.object_files());
    let m: serde_json::Value = missing(&s, &[id.to_hex()]).json().expect("json");
    assert_eq!(m["missing"], serde_json::json!([id.to_hex()]));
    // Uploading again completes.
    assert_eq!(put(&s, &id, enc).status(), StatusCode::CREATED);
    let got = get(&s, &id).bytes().expect("body");
    assert_eq!(
        nshard_core::format::decode_verified(&id, &got, 1 << 30).expect("ok"),
        raw
    );
}
