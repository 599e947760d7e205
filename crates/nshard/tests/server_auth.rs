//! Tokens against a real `nshard serve` process on a 127.0.0.1 port: missing, wrong and read-only
//! tokens, anonymous reads, and refusing to start without tokens where that would be unsafe.

mod common;

use common::fails;
use common::serve::Served;
use common::wire::*;
use reqwest::StatusCode;

fn token_server(extra: &[&str]) -> (tempfile::TempDir, Served) {
    let d = tempfile::tempdir().expect("tmp");
    let tokens = d.path().join("tokens");
    std::fs::write(&tokens, format!("# test tokens\nwrite:{WRITE}\n")).expect("tokens");
    let mut args = vec!["--tokens", tokens.to_str().expect("utf8")];
    args.extend_from_slice(extra);
    let s = Served::start(
        &d.path().join("store"),
        &args,
        &[("NSHARD_SERVE_TOKENS", &format!("read:{READ}"))],
    );
    (d, s)
}

#[test]
fn wrong_or_missing_token_is_401() {
    let (_d, s) = token_server(&[]);
    let (id, _, enc) = object(10_000, 10);
    let url = s.at(&format!("/v1/objects/{id}"));
    let c = client();
    for auth in [
        None,
        Some("Bearer not-the-right-token-at-all"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
    ] {
        let mut put = c.put(&url).body(enc.clone());
        let mut get = c.get(&url);
        let mut miss = c
            .post(s.at("/v1/objects/missing"))
            .json(&serde_json::json!({"ids": []}));
        if let Some(a) = auth {
            put = put.header("authorization", a);
            get = get.header("authorization", a);
            miss = miss.header("authorization", a);
        }
        for req in [put, get, miss] {
            let r = req.send().expect("send");
            assert_eq!(
                r.headers().get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer realm=\"nshard\""[..])
            );
            expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    expect_error(
        c.get(s.at("/metrics")).send().expect("metrics"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // Health needs no token; the right token works.
    assert_eq!(
        c.get(s.at("/v1/health")).send().expect("health").status(),
        StatusCode::OK
    );
    let r = c
        .put(&url)
        .bearer_auth(WRITE)
        .body(enc)
        .send()
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(s.object_files().len() == 1);
    // Tokens never reach the log.
    let log = s.log();
    assert!(log.contains("1 write token(s), 1 read token(s)"), "{log}");
    for t in [WRITE, READ, "not-the-right-token-at-all"] {
        assert!(!log.contains(t), "token in log:\n{log}");
    }
}

#[test]
fn read_token_that_writes_is_403() {
    let (_d, s) = token_server(&[]);
    let (id, _, enc) = object(10_000, 11);
    let url = s.at(&format!("/v1/objects/{id}"));
    let c = client();
    let msg = expect_error(
        c.put(&url)
            .bearer_auth(READ)
            .body(enc.clone())
            .send()
            .expect("PUT"),
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert!(msg.contains("write token"), "{msg}");
    assert!(s.object_files().is_empty());
    // Reading with the read token works.
    let r = c
        .post(s.at("/v1/objects/missing"))
        .bearer_auth(READ)
        .json(&serde_json::json!({"ids": [id.to_hex()]}))
        .send()
        .expect("missing");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.put(&url)
            .bearer_auth(WRITE)
            .body(enc.clone())
            .send()
            .expect("PUT")
            .status(),
        StatusCode::CREATED
    );
    let got = c.get(&url).bearer_auth(READ).send().expect("GET");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(&got.bytes().expect("body")[..], &enc[..]);
    assert_eq!(
        c.get(s.at("/metrics"))
            .bearer_auth(READ)
            .send()
            .expect("m")
            .status(),
        StatusCode::OK
    );
}

#[test]
fn anonymous_read_with_tokens() {
    let (_d, s) = token_server(&["--allow-anonymous-read"]);
    let (id, _, enc) = object(10_000, 12);
    let c = client();
    let url = s.at(&format!("/v1/objects/{id}"));
    expect_error(
        c.put(&url).body(enc.clone()).send().expect("PUT"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        c.put(&url)
            .bearer_auth(WRITE)
            .body(enc)
            .send()
            .expect("PUT")
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(c.get(&url).send().expect("GET").status(), StatusCode::OK);
}

#[test]
fn refuses_to_start_without_tokens_on_a_public_address() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    let store = store.to_str().expect("utf8");
    let err = fails(
        d.path(),
        &["serve", "--listen", "0.0.0.0:0", "--store", store],
    );
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0 without tokens"),
        "{err}"
    );
    assert!(err.contains("--allow-anonymous-read"), "{err}");
    // A bad token file is refused without echoing the token.
    let tokens = d.path().join("tokens");
    std::fs::write(&tokens, "write:tooshort\n").expect("w");
    let err = fails(
        d.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--tokens",
            tokens.to_str().expect("utf8"),
        ],
    );
    assert!(
        err.contains("entry 1") && err.contains("shorter than 16"),
        "{err}"
    );
    assert!(!err.contains("tooshort"), "{err}");
    // With an explicit anonymous-read flag it starts, read-only.
    let s = Served::start_on(
        d.path().join("store2").as_path(),
        "0.0.0.0:0",
        &["--allow-anonymous-read"],
        &[],
    );
    let port = s.addr.rsplit(':').next().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let (id, _, enc) = object(1000, 13);
    let r = client()
        .put(format!("{url}/v1/objects/{id}"))
        .body(enc)
        .send()
        .expect("PUT");
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = client()
        .get(format!("{url}/v1/objects/{id}"))
        .send()
        .expect("GET");
    expect_error(r, StatusCode::NOT_FOUND, "not_found");
}
