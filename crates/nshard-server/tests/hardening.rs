//! A server that holds under slow, stalled and numerous clients, and refuses foreign Host names
//! when it has no tokens (issue 11, items 3 and 6). The real server, real sockets on 127.0.0.1.
//! Timeouts are set short in the limits; every wait is "eventually, within a generous bound". (The
//! open-files limit is the `nshard serve` process's: the nshard crate's tests/server_startup.rs.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{config, metric_value, random_bytes, raw_connect, raw_request, TestServer};
use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::blocking::Client;
use reqwest::StatusCode;

/// The bound for anything that must happen "eventually" (a busy 2-core machine is slow).
const EVENTUALLY: Duration = Duration::from_secs(90);

fn object(len: usize, seed: u64) -> (ObjectId, Vec<u8>) {
    let raw = random_bytes(len, seed);
    (
        ObjectId::of(&raw),
        Encoder::new().encode(&raw, DataHint::Unknown),
    )
}

fn client() -> Client {
    nshard_remote::install_tls_provider();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Retries `f` every 100 ms until it returns `Some`, failing the test after [`EVENTUALLY`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {EVENTUALLY:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Retries a health check until it is answered (any status), then asserts it is 200.
fn health_eventually(s: &TestServer, what: &str) {
    let status = eventually(what, || {
        client()
            .get(s.at("/v1/health"))
            .send()
            .ok()
            .map(|r| r.status())
    });
    assert_eq!(status, StatusCode::OK, "{what}");
}

/// Whether the server has closed `c` (reads EOF or a reset; a pending read times out quickly).
fn wait_closed(c: &mut TcpStream, what: &str) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut got = Vec::new();
    eventually(what, || {
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(0) => Some(()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(_) => Some(()),
        }
    });
    got
}

/// Sends a PUT head announcing `enc.len()` bytes and `sent` of them, then stalls.
fn stalled_upload(addr: &str, id: &ObjectId, enc: &[u8], sent: usize) -> TcpStream {
    let mut c = raw_connect(addr);
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        enc.len()
    );
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(&enc[..sent]).expect("part of the body");
    c
}

#[test]
fn stalled_uploads_release_their_slots_and_a_legit_put_gets_through() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_concurrent_uploads = 4;
    c.limits.body_idle_timeout = Duration::from_secs(2);
    let s = TestServer::start_with(c);
    let (big, enc_big) = object(1 << 20, 1);
    let mut stalled: Vec<TcpStream> = (0..8)
        .map(|_| stalled_upload(&s.addr, &big, &enc_big, 1000))
        .collect();
    s.wait_metric("nshard_uploads_in_flight", 4);
    let (id, enc) = object(50_000, 2);
    let url = s.at(&format!("/v1/objects/{id}"));
    let status = eventually("a PUT beside stalled uploads", || {
        let r = client().put(&url).body(enc.clone()).send().ok()?;
        (r.status() != StatusCode::TOO_MANY_REQUESTS).then(|| r.status())
    });
    assert_eq!(status, StatusCode::CREATED);
    // Each stalled upload is answered before it is cut off: 400 when it held a slot and sent
    // nothing for the body-idle timeout, 429 when all four slots were taken. Four held one.
    let mut idle = 0;
    for c in &mut stalled {
        let answer = wait_closed(c, "a stalled upload is cut off");
        let text = String::from_utf8_lossy(&answer);
        if text.starts_with("HTTP/1.1 400") {
            assert!(text.contains("incomplete_body"), "{text}");
            idle += 1;
        } else {
            assert!(
                text.starts_with("HTTP/1.1 429") && text.contains("too_many_uploads"),
                "stalled upload got: {text:?}"
            );
        }
    }
    assert!(
        idle >= 4,
        "{idle} stalled uploads answered 400, not 4 or more"
    );
    s.wait_metric("nshard_uploads_in_flight", 0);
    // Nothing of the stalled uploads became visible.
    assert_eq!(s.object_files().len(), 1);
}

#[test]
fn a_trickled_body_is_cut_off_by_the_request_timeout() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_concurrent_uploads = 1;
    c.limits.request_timeout = Duration::from_secs(3);
    let s = TestServer::start_with(c);
    let (id, enc) = object(100_000, 3);
    let mut c = stalled_upload(&s.addr, &id, &enc, 10);
    s.wait_metric("nshard_uploads_in_flight", 1);
    // One byte every 200 ms never trips the (default, 60 s) body-idle timeout.
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + EVENTUALLY;
    let mut sent = 10;
    let mut answer = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "trickled upload never cut off");
        if c.write_all(&enc[sent..sent + 1]).is_err() {
            // The server answered and closed: its answer is still there to read.
            c.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            answer.extend_from_slice(&rest);
            break;
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        assert!(sent < enc.len(), "the whole body went through");
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "trickled upload got: {text:?}"
    );
    s.wait_metric("nshard_uploads_in_flight", 0);
    let (id2, enc2) = object(1000, 4);
    let r = client()
        .put(s.at(&format!("/v1/objects/{id2}")))
        .body(enc2)
        .send()
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.object_files().len(), 1);
}

#[test]
fn idle_and_half_sent_connections_are_closed() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.header_timeout = Duration::from_secs(2);
    let s = TestServer::start_with(c);
    let mut idle = raw_connect(&s.addr);
    let mut half = raw_connect(&s.addr);
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .expect("half a head");
    // A keep-alive connection after one answered request.
    let mut kept = raw_connect(&s.addr);
    kept.write_all(format!("GET /v1/health HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .expect("request");
    wait_closed(&mut idle, "an idle connection is closed");
    wait_closed(&mut half, "a half-sent head is cut off");
    let got = wait_closed(&mut kept, "an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    eventually("the connection gauge drops to zero", || {
        (metric_value(&s.metrics(), "nshard_connections_open") == Some(1)).then_some(())
    });
}

#[test]
fn without_tokens_only_loopback_host_names_are_answered() {
    let d = tempfile::tempdir().expect("tmp");
    let s = TestServer::start(&d.path().join("store"));
    let port = s.addr.rsplit(':').next().expect("port");
    let ask = |host: &str| {
        raw_request(
            &s.addr,
            &format!("GET /v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            b"",
        )
    };
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
    ] {
        assert!(ask(&good).starts_with("HTTP/1.1 200"), "{good}");
    }
    for evil in [
        format!("evil.example:{port}"),
        "rebind.attacker.test".to_string(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let r = ask(&evil);
        assert!(r.starts_with("HTTP/1.1 403"), "{evil}: {r}");
        assert!(r.contains("host_not_allowed"), "{r}");
    }
    // A write through a rebound name is refused too, and stores nothing.
    let (id, enc) = object(1000, 5);
    let r = raw_request(
        &s.addr,
        &format!(
            "PUT /v1/objects/{id} HTTP/1.1\r\nHost: evil.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            enc.len()
        ),
        &enc,
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(s.object_files().is_empty());
}

#[test]
fn with_tokens_any_host_name_may_be_used() {
    let d = tempfile::tempdir().expect("tmp");
    let token = "read-token-for-hardening-tests-0123";
    let mut c = config(&d.path().join("store"));
    c.tokens = common::tokens(&format!("read:{token}"));
    let s = TestServer::start_with(c);
    let r = raw_request(
        &s.addr,
        &format!(
            "POST /v1/objects/missing HTTP/1.1\r\nHost: models.example.org\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        ),
        b"{\"ids\":[]}",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn a_client_that_stops_reading_a_get_is_cut_off_and_frees_its_slot() {
    nshard_remote::install_tls_provider();
    let d = tempfile::tempdir().expect("tmp");
    // One connection slot: while the stalled reader holds it, nobody else is served.
    let mut c = config(&d.path().join("store"));
    c.limits.send_idle_timeout = Duration::from_secs(2);
    c.limits.max_connections = 1;
    let s = TestServer::start_with(c);
    // Far more than loopback socket buffers hold, so the server must wait for the reader.
    let (id, enc) = object(24 << 20, 9);
    let r = client()
        .put(s.at(&format!("/v1/objects/{id}")))
        .body(enc.clone())
        .send()
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    drop(r);
    let mut c = raw_connect(&s.addr);
    let head = format!("GET /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    c.write_all(head.as_bytes()).expect("request");
    let mut first = [0u8; 1000];
    c.read_exact(&mut first).expect("start of the response");
    assert!(first.starts_with(b"HTTP/1.1 200"));
    // Stop reading. Another client is served once the server gives up on this one.
    health_eventually(&s, "a health check beside a stalled reader");
    // The stalled response was cut short: what it still delivers ends (EOF or reset) before the
    // object does. A server that kept the connection would block this read until the timeout.
    c.set_read_timeout(Some(EVENTUALLY)).expect("timeout");
    let mut rest = Vec::new();
    if let Err(e) = c.read_to_end(&mut rest) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the stalled reader's connection is still open after {EVENTUALLY:?}"
        );
    }
    assert!(
        first.len() + rest.len() < enc.len(),
        "the whole object was delivered to a reader that stopped: {} bytes",
        first.len() + rest.len()
    );
}

/// A refusal sent before the body was read to its end says `Connection: close` and closes: a
/// client that had pushed its body into socket buffers would otherwise take the connection for
/// reusable, and its next request on it (a GET, in the load benchmark's mix) would fail with
/// "connection closed before message completed".
#[test]
fn a_refusal_that_leaves_the_body_unread_closes_the_connection() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_object_bytes = 50000;
    let s = TestServer::start_with(c);
    let (id, _) = object(1000, 3);
    // Declares more than the server drains (16 MiB) and sends none of it, keep-alive.
    let mut c = raw_connect(&s.addr);
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        40u64 << 20
    );
    c.write_all(head.as_bytes()).expect("head");
    let resp = String::from_utf8_lossy(&wait_closed(&mut c, "the refused upload's connection"))
        .to_lowercase();
    assert!(resp.starts_with("http/1.1 413"), "{resp}");
    assert!(resp.contains("\r\nconnection: close\r\n"), "{resp}");
    // A refusal whose body was read in full keeps the connection usable (no close).
    let (big, enc) = object(60_000, 4);
    let r = client()
        .put(s.at(&format!("/v1/objects/{big}")))
        .body(enc)
        .send()
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
}

/// With the connection cap taken by half-sent heads (slowloris), a new client still gets in: the
/// connection that has waited longest for its head is shed. A connection whose request is in
/// progress (a slow upload) is never shed. Nothing here times out on its own: the header and
/// body timeouts are an hour.
#[test]
fn at_the_connection_cap_half_open_connections_make_room_and_requests_in_progress_stay() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_connections = 4;
    c.limits.header_timeout = Duration::from_secs(3600);
    c.limits.body_idle_timeout = Duration::from_secs(3600);
    let s = TestServer::start_with(c);
    let (id, enc) = object(100_000, 3);
    let mut upload = stalled_upload(&s.addr, &id, &enc, 1000);
    s.wait_metric("nshard_uploads_in_flight", 1);
    // More half-sent heads than the cap holds.
    let _half: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut h = raw_connect(&s.addr);
            h.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .expect("half a head");
            h
        })
        .collect();
    health_eventually(&s, "a health check at the connection cap");
    assert!(
        metric_value(&s.metrics(), "nshard_connections_shed_total").is_some_and(|n| n >= 1),
        "{}",
        s.metrics()
    );
    // The upload in progress kept its connection: it completes.
    upload.write_all(&enc[1000..]).expect("rest of the body");
    upload.set_read_timeout(Some(EVENTUALLY)).expect("timeout");
    let mut answer = [0u8; 12];
    upload
        .read_exact(&mut answer)
        .expect("the upload is answered");
    assert_eq!(
        &answer,
        b"HTTP/1.1 201",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
