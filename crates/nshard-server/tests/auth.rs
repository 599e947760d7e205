//! Tokens against the real server on a 127.0.0.1 port: missing, wrong and read-only tokens,
//! anonymous reads, and refusing to start without tokens where that would be unsafe. (Where
//! `nshard serve` reads tokens from — a file, the environment — is tested in the nshard crate's
//! tests/server_startup.rs.)

mod common;

use common::*;
use reqwest::StatusCode;

/// A server with one write token and one read token; `anonymous_read` as `--allow-anonymous-read`.
fn token_server(anonymous_read: bool) -> (tempfile::TempDir, TestServer) {
    let d = tempfile::tempdir().expect("tmp");
    let mut c = config(&d.path().join("store"));
    c.tokens = tokens(&format!("# test tokens\nwrite:{WRITE}\nread:{READ}\n"));
    c.allow_anonymous_read = anonymous_read;
    let s = TestServer::start_with(c);
    (d, s)
}

#[test]
fn wrong_or_missing_token_is_401() {
    let (_d, s) = token_server(false);
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
    // Tokens never reach the log (that `nshard serve` counts them at start is in the nshard crate's
    // server_startup.rs).
    let log = s.log();
    assert!(
        log.contains("/v1/objects/missing"),
        "requests are logged:\n{log}"
    );
    for t in [WRITE, READ, "not-the-right-token-at-all"] {
        assert!(!log.contains(t), "token in log:\n{log}");
    }
}

#[test]
fn read_token_that_writes_is_403() {
    let (_d, s) = token_server(false);
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
    let (_d, s) = token_server(true);
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

/// The policy `nshard serve` applies at start (its refusal as the process prints it is in the
/// nshard crate's tests/server_startup.rs): no tokens and no anonymous flag on an address other
/// machines reach is refused before anything is bound; with anonymous reads it serves read-only.
#[test]
fn a_public_address_needs_tokens_or_anonymous_read() {
    let d = tempfile::tempdir().expect("tmp");
    let public: std::net::SocketAddr = "0.0.0.0:0".parse().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = rt
        .block_on(nshard_server::Server::bind(
            config(&d.path().join("store")),
            public,
        ))
        .err()
        .expect("refused");
    assert!(
        matches!(err, nshard_server::ServeError::NoTokens { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("refusing to serve on 0.0.0.0:0 without tokens"),
        "{err}"
    );
    assert!(!d.path().join("store").exists(), "the store was created");
    // A bad token is refused without echoing it.
    let bad = nshard_server::Tokens::parse("write:tooshort\n", "tokens").expect_err("too short");
    let msg = bad.to_string();
    assert!(
        msg.contains("entry 1") && msg.contains("shorter than 16"),
        "{msg}"
    );
    assert!(!msg.contains("tooshort"), "{msg}");
    // With anonymous reads it starts, read-only.
    let mut c = config(&d.path().join("store2"));
    c.allow_anonymous_read = true;
    let s = TestServer::start_on(c, public);
    let (id, _, enc) = object(1000, 13);
    expect_error(put(&s, &id, enc), StatusCode::UNAUTHORIZED, "unauthorized");
    expect_error(get(&s, &id), StatusCode::NOT_FOUND, "not_found");
}

/// Issue 26, case 11: a token a client puts in the query string never reaches the log (only the
/// request's path is logged), and it authorizes nothing.
#[test]
fn a_token_in_the_query_string_is_not_logged() {
    let (_d, s) = token_server(false);
    let c = client();
    for path in [
        format!("/v1/health?token={WRITE}"),
        format!("/metrics?access_token={WRITE}"),
        format!("/v1/objects/missing?auth=Bearer%20{READ}"),
    ] {
        let _ = c.get(s.at(&path)).send().expect("send");
    }
    let r = c
        .get(s.at(&format!("/metrics?token={WRITE}")))
        .send()
        .expect("metrics");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a query token is no token"
    );
    let log = s.log();
    assert!(log.contains("/v1/health"), "requests are logged:\n{log}");
    for t in [WRITE, READ] {
        assert!(!log.contains(t), "token in log:\n{log}");
    }
}
