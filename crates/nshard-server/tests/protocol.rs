//! Protocol v1 against the real server on a 127.0.0.1 port: the happy path, and every bad-input and
//! fault case of the server issue, each its own test. (What needs the `nshard serve` process — a
//! kill -9, signals — is in the nshard crate's tests/server_signals.rs.)

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};

use common::*;

use nshard_core::ObjectId;
use reqwest::StatusCode;

#[test]
fn protocol_round_trip() {
    let (_d, s) = dev_server();
    let h: serde_json::Value = client()
        .get(s.at("/v1/health"))
        .send()
        .expect("health")
        .json()
        .expect("json");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["protocol"], 1);
    assert_eq!(h["limits"]["max_batch"], 1000);

    let (id, raw, enc) = object(300_000, 1);
    let (zid, zenc) = zstd_object(1 << 20, 2);
    let absent = ObjectId::of(b"never stored");
    let m: serde_json::Value = missing(&s, &[id.to_hex(), zid.to_hex(), absent.to_hex()])
        .json()
        .expect("json");
    assert_eq!(
        m["missing"],
        serde_json::json!([id.to_hex(), zid.to_hex(), absent.to_hex()])
    );
    assert_eq!(head_status(&s, &id), StatusCode::NOT_FOUND);
    expect_error(get(&s, &id), StatusCode::NOT_FOUND, "not_found");

    let r = put(&s, &id, enc.clone());
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["stored"], true);
    assert_eq!(put(&s, &zid, zenc.clone()).status(), StatusCode::CREATED);
    // Re-uploading is a cheap success.
    let r = put(&s, &id, enc.clone());
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().expect("json")["stored"],
        false
    );

    let m: serde_json::Value = missing(&s, &[id.to_hex(), zid.to_hex(), absent.to_hex()])
        .json()
        .expect("json");
    assert_eq!(m["missing"], serde_json::json!([absent.to_hex()]));
    let r = client()
        .head(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("HEAD");
    assert_eq!(r.status(), StatusCode::OK);
    let len = r.headers().get("content-length").expect("content-length");
    assert_eq!(len.to_str().expect("ascii"), enc.len().to_string());
    let got = get(&s, &id).bytes().expect("body");
    assert_eq!(&got[..], &enc[..]);
    let decoded = nshard_core::format::decode_verified(&id, &got, 1 << 30).expect("verifies");
    assert_eq!(decoded, raw);
    assert_eq!(&get(&s, &zid).bytes().expect("body")[..], &zenc[..]);
    // The store has the directory-remote layout.
    assert!(s.store.join("objects").join(id.fanout_path()).is_file());

    let metrics = s.metrics();
    assert_eq!(
        metric_value(&metrics, "nshard_objects_stored_total"),
        Some(2)
    );
    assert_eq!(
        metric_value(&metrics, "nshard_received_bytes_total"),
        Some((2 * enc.len() + zenc.len()) as u64)
    );
    assert_eq!(
        metric_value(&metrics, "nshard_sent_bytes_total"),
        Some((enc.len() + zenc.len()) as u64)
    );
    assert!(
        metrics.contains(
            "nshard_http_requests_total{route=\"/v1/objects/{id}\",method=\"PUT\",status=\"201\"} 2"
        ),
        "{metrics}"
    );
    // Unknown endpoints and methods are JSON errors too.
    let r = client().get(s.at("/v2/whatever")).send().expect("GET");
    expect_error(r, StatusCode::NOT_FOUND, "not_found");
    let r = client()
        .delete(s.at(&format!("/v1/objects/{id}")))
        .send()
        .expect("DELETE");
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[test]
fn put_whose_body_does_not_hash_to_its_id_is_rejected() {
    let (_d, s) = dev_server();
    let (_, _, enc) = object(100_000, 3);
    let other = ObjectId::of(b"some other content");
    let msg = expect_error(
        put(&s, &other, enc),
        StatusCode::UNPROCESSABLE_ENTITY,
        "object_rejected",
    );
    assert!(msg.contains("nothing was stored"), "{msg}");
    assert!(msg.contains(&other.to_hex()), "{msg}");
    // Garbage that is not an encoded object at all.
    let junk = b"definitely not an encoded object".to_vec();
    let jid = ObjectId::of(&junk);
    expect_error(
        put(&s, &jid, junk),
        StatusCode::UNPROCESSABLE_ENTITY,
        "object_rejected",
    );
    assert_eq!(head_status(&s, &other), StatusCode::NOT_FOUND);
    assert_eq!(head_status(&s, &jid), StatusCode::NOT_FOUND);
    assert!(s.object_files().is_empty(), "{:?}", s.object_files());
    assert_eq!(
        metric_value(&s.metrics(), "nshard_objects_rejected_total"),
        Some(2)
    );
}

#[test]
fn truncated_object_is_rejected() {
    let (_d, s) = dev_server();
    let (id, enc) = zstd_object(1 << 20, 4);
    let (rid, _, renc) = object(200_000, 5);
    // A complete request whose body is a cut-off object (zstd and raw codecs).
    for (id, enc) in [(id, &enc), (rid, &renc)] {
        expect_error(
            put(&s, &id, enc[..enc.len() - 100].to_vec()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "object_rejected",
        );
        assert_eq!(head_status(&s, &id), StatusCode::NOT_FOUND);
    }
    assert!(s.object_files().is_empty());
}

#[test]
fn body_that_ends_before_its_content_length_is_refused() {
    let (_d, s) = dev_server();
    let (id, _, enc) = object(500_000, 6);
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        enc.len()
    );
    let mut c = raw_connect(&s.addr);
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(&enc[..enc.len() / 2]).expect("half the body");
    c.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    // The client stopped sending mid-body (its read side is still open): the answer is a 400.
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
    assert!(resp.contains("incomplete_body"), "{resp}");
    assert_eq!(head_status(&s, &id), StatusCode::NOT_FOUND);
    assert!(s.object_files().is_empty());
    // The server is fine, and the full upload then works.
    assert_eq!(put(&s, &id, enc).status(), StatusCode::CREATED);
}

#[test]
fn body_over_the_limit_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_object_bytes = 50000;
    let s = TestServer::start_with(c);
    let (id, _, enc) = object(60_000, 7);
    let msg = expect_error(
        put(&s, &id, enc.clone()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    assert!(msg.contains("50000"), "{msg}");
    // Without a Content-Length (chunked), the limit holds while reading.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(enc.clone()));
    let r = client()
        .put(s.at(&format!("/v1/objects/{id}")))
        .body(body)
        .send()
        .expect("PUT chunked");
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert!(s.object_files().is_empty());
    // An object under the limit goes through.
    let (small, _, senc) = object(40_000, 8);
    assert_eq!(put(&s, &small, senc).status(), StatusCode::CREATED);
}

#[test]
fn bad_ids_are_refused_before_touching_the_store() {
    let (d, s) = dev_server();
    std::fs::write(d.path().join("secret"), b"outside the store").expect("write");
    let (_, _, enc) = object(1000, 9);
    let bad = [
        "abc".to_string(),
        "A".repeat(64),
        "g".repeat(64),
        "a".repeat(65),
        "..%2F..%2Fsecret".to_string(),
        "..%2f..%2f..%2f..%2fetc%2fpasswd".to_string(),
        format!("{}%00", "a".repeat(62)),
    ];
    for b in &bad {
        for method in ["GET", "PUT", "HEAD"] {
            let req = client().request(
                method.parse().expect("method"),
                s.at(&format!("/v1/objects/{b}")),
            );
            let r = req.body(enc.clone()).send().expect("send");
            if method == "HEAD" {
                assert_eq!(r.status(), StatusCode::BAD_REQUEST, "HEAD {b}");
            } else {
                expect_error(r, StatusCode::BAD_REQUEST, "invalid_id");
            }
        }
    }
    // Literal `..` segments (a client that does not normalize them) match no route.
    let resp = raw_request(
        &s.addr,
        &format!(
            "GET /v1/objects/../../secret HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr
        ),
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(resp.contains("\"not_found\""), "{resp}");
    assert!(!resp.contains("outside the store"), "{resp}");
    // Ids inside a missing query are checked the same way.
    let r = missing(&s, &["../../secret".to_string()]);
    let msg = expect_error(r, StatusCode::BAD_REQUEST, "invalid_id");
    assert!(msg.contains("../../secret"), "{msg}");
    assert!(s.object_files().is_empty());
    assert_eq!(
        std::fs::read(d.path().join("secret")).expect("read"),
        b"outside the store"
    );
}

#[test]
fn batch_over_the_limit_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_batch = 10;
    let s = TestServer::start_with(c);
    let ids: Vec<String> = (0..11u8).map(|i| ObjectId::of(&[i]).to_hex()).collect();
    let msg = expect_error(
        missing(&s, &ids),
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
    );
    assert!(msg.contains("11") && msg.contains("10"), "{msg}");
    let r = missing(&s, &ids[..10]);
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["missing"].as_array().expect("array").len(), 10);
    // A body far bigger than any allowed batch is cut off while reading.
    let huge = format!("{{\"ids\":[\"{}\"]}}", "a".repeat(2_000_000));
    let r = client()
        .post(s.at("/v1/objects/missing"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .expect("POST");
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
}

#[test]
fn malformed_json_is_refused() {
    let (_d, s) = dev_server();
    for body in [
        "",
        "{",
        "not json at all",
        "{\"ids\": \"abc\"}",
        "{\"idz\": []}",
        "{\"ids\": [1, 2, 3]}",
        "[\"ids\"]",
        "{\"ids\": [], \"extra\": true}",
    ] {
        let r = client()
            .post(s.at("/v1/objects/missing"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("POST");
        let msg = expect_error(r, StatusCode::BAD_REQUEST, "malformed_json");
        assert!(msg.contains("ids"), "{body}: {msg}");
    }
}

/// Starts a raw PUT of `enc`, sends `sent` bytes of the body, and waits until the server counts
/// the upload as in flight.
fn partial_upload(s: &TestServer, id: &ObjectId, enc: &[u8], sent: usize) -> std::net::TcpStream {
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

#[test]
fn client_disconnecting_mid_download_does_not_hurt_the_server() {
    let (_d, s) = dev_server();
    let (id, _, enc) = object(8 << 20, 15);
    assert_eq!(put(&s, &id, enc.clone()).status(), StatusCode::CREATED);
    for _ in 0..5 {
        let mut c = raw_connect(&s.addr);
        let head = format!("GET /v1/objects/{id} HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
        c.write_all(head.as_bytes()).expect("head");
        let mut buf = vec![0u8; 64 * 1024];
        let n = c.read(&mut buf).expect("some bytes");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        drop(c);
    }
    // Still serving the whole object, intact.
    assert_eq!(&get(&s, &id).bytes().expect("body")[..], &enc[..]);
    assert_eq!(
        metric_value(&s.metrics(), "nshard_uploads_in_flight"),
        Some(0)
    );
}

#[test]
fn two_clients_uploading_the_same_object_store_one_copy() {
    let (_d, s) = dev_server();
    let (id, _, enc) = object(8 << 20, 16);
    let barrier = Arc::new(Barrier::new(2));
    let url = s.at(&format!("/v1/objects/{id}"));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (b, url, enc) = (barrier.clone(), url.clone(), enc.clone());
            std::thread::spawn(move || {
                b.wait();
                client().put(url).body(enc).send().expect("PUT").status()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 201]);
    assert_eq!(s.object_files().len(), 1);
    assert_eq!(
        metric_value(&s.metrics(), "nshard_objects_stored_total"),
        Some(1)
    );
    assert_eq!(&get(&s, &id).bytes().expect("body")[..], &enc[..]);
}

#[test]
fn concurrent_upload_limit_answers_429() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_concurrent_uploads = 1;
    let s = TestServer::start_with(c);
    let (id, _, enc) = object(1 << 20, 17);
    let mut c = partial_upload(&s, &id, &enc, 1000);
    let (id2, _, enc2) = object(1000, 18);
    let r = put(&s, &id2, enc2.clone());
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads");
    // Finishing the first upload frees the slot.
    c.write_all(&enc[1000..]).expect("rest");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert_eq!(put(&s, &id2, enc2).status(), StatusCode::CREATED);
}

#[test]
fn a_large_upload_refused_with_429_reads_the_429_not_a_broken_pipe() {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.limits.max_concurrent_uploads = 1;
    let s = TestServer::start_with(c);
    let (id, _, enc) = object(1 << 20, 19);
    let _held = partial_upload(&s, &id, &enc, 1000);
    // One client, one pooled connection: every refusal must arrive as a 429 the client can read
    // while it is still sending 8 MiB, and the connection must stay usable for the next request.
    let c = client();
    for seed in 0..4 {
        let (id2, _, enc2) = object(8 << 20, 20 + seed);
        let r = c
            .put(s.at(&format!("/v1/objects/{id2}")))
            .body(enc2)
            .send()
            .unwrap_or_else(|e| panic!("attempt {seed}: no answer to a refused upload: {e:?}"));
        expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads");
    }
}

#[test]
fn object_corrupted_on_the_server_disk_is_not_served() {
    let (_d, s) = dev_server();
    let (id, _, enc) = object(100_000, 20);
    assert_eq!(put(&s, &id, enc.clone()).status(), StatusCode::CREATED);
    let path = s.store.join("objects").join(id.fanout_path());
    // Stored read-only for everyone; corrupting it takes a chmod first (even for a non-root user).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("md").permissions().mode();
    assert_eq!(mode & 0o222, 0, "stored object is writable: {mode:o}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bad = enc;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, bad).expect("corrupt");
    let msg = expect_error(
        get(&s, &id),
        StatusCode::INTERNAL_SERVER_ERROR,
        "corrupt_object",
    );
    assert!(msg.contains(&id.to_hex()), "{msg}");
    assert!(s.log().contains("is corrupt"), "{}", s.log());
    // Moved aside, so the store reads it as missing (see remote_repair.rs for the repair).
    assert_eq!(head_status(&s, &id), StatusCode::NOT_FOUND);
}
