//! `nshard serve` and signals, as documented: SIGINT (Ctrl-C) stops accepting connections and lets
//! requests in flight finish; a second signal stops at once; requests still running after 30 s
//! are abandoned. Uploads left unfinished never become visible.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::random_bytes;
use common::serve::{raw_connect, Served};
use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;

/// An upload of a 4 MiB object of which only the first `sent` bytes are sent; returns the
/// connection once the server counts it in flight.
fn partial_upload(s: &Served, sent: usize) -> (ObjectId, Vec<u8>, TcpStream) {
    let raw = random_bytes(4 << 20, 51);
    let id = ObjectId::of(&raw);
    let enc = Encoder::new().encode(&raw, DataHint::Unknown);
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        enc.len()
    );
    let mut c = raw_connect(&s.addr);
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(&enc[..sent]).expect("part of the body");
    s.wait_metric("nshard_uploads_in_flight", 1);
    (id, enc, c)
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
