//! The admin scope and the record and gc routes of `nshard serve` (a real process on a 127.0.0.1
//! port): records written under the token's writer name, object listing in pages, batched
//! deletions, and which token may do what. Driven through the real HTTP `Store` client and, for
//! what a well-behaved client never sends, by hand.

mod common;

use std::sync::Arc;

use common::serve::{client, expect_error, metric_value, object, raw_request, Served};
use nshard_core::backend::{RecordName, StoredObject, ADMIN_WRITER};
use nshard_core::{Error, ObjectId, RemoteError, RemoteFailure, RemoteUrl, Store};
use nshard_remote::OpenOptions;
use reqwest::StatusCode;

const ADMIN: &str = "admin-token-for-tests-0123456789";
const WRITE: &str = "write-token-for-tests-0123456789";
const READ: &str = "read-token-for-tests-0123456789";

/// A repository's record space and a ref's key (16 hex digits each).
const SPACE: &str = "0123456789abcdef";
const KEY: &str = "fedcba9876543210";

/// A server with one token of each scope.
fn server() -> (tempfile::TempDir, Served) {
    let d = tempfile::tempdir().expect("tmp");
    let s = Served::start(
        &d.path().join("store"),
        &[],
        &[(
            "NSHARD_SERVE_TOKENS",
            &format!("admin:{ADMIN},write:{WRITE},read:{READ}"),
        )],
    );
    (d, s)
}

/// The HTTP store of `s` with `token`.
async fn open(s: &Served, token: Option<&str>) -> Arc<dyn Store> {
    let url = RemoteUrl::parse(&s.url, std::path::Path::new("/")).expect("url");
    let opts = OpenOptions {
        token: token.map(str::to_string),
        ..Default::default()
    };
    nshard_remote::open(&url, &opts).await.expect("open")
}

/// The writer name of a write token: `w` and 16 hex digits of the SHA-256 of its SHA-256.
fn writer_of(token: &str) -> String {
    let digest = ObjectId::of(token.as_bytes());
    format!("w{}", &ObjectId::of(digest.as_bytes()).to_hex()[..16])
}

/// Asserts a permanent refusal of `kind` whose message contains `needle`.
fn assert_refused<T: std::fmt::Debug>(
    r: nshard_core::Result<T>,
    kind: RemoteFailure,
    needle: &str,
) {
    match r {
        Err(Error::Remote(RemoteError::Failed {
            kind: k, reason, ..
        })) => {
            assert_eq!(k, kind, "{reason}");
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected a {kind:?} refusal, got {other:?}"),
    }
}

/// Writes an object file straight into the server's store directory (listing does not read it).
fn plant_object(s: &Served, id: &ObjectId, len: usize) {
    let hex = id.to_hex();
    let dir = s.store.join("objects").join(&hex[..2]);
    std::fs::create_dir_all(&dir).expect("fan-out dir");
    std::fs::write(dir.join(&hex[2..]), vec![0u8; len]).expect("object file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_objects_across_pages_and_deletes_them_in_batches() {
    let (_d, s) = server();
    let admin = open(&s, Some(ADMIN)).await;
    let write = open(&s, Some(WRITE)).await;
    // Real objects, uploaded and downloadable.
    let mut real = Vec::new();
    for seed in 0..3 {
        let (id, _, enc) = object(20_000 + seed as usize, seed);
        assert!(write.put(&id, enc.clone()).await.expect("put"));
        real.push((id, enc.len() as u64));
    }
    // More than a page of the listing (10 000), planted where the server lists them.
    let planted: Vec<ObjectId> = (0..10_050u32)
        .map(|i| ObjectId::of(&i.to_le_bytes()))
        .collect();
    for id in &planted {
        plant_object(&s, id, 7);
    }
    let listed = admin.list_objects().await.expect("list objects");
    assert_eq!(listed.len(), planted.len() + real.len());
    assert!(
        listed.windows(2).all(|w| w[0].id < w[1].id),
        "in id order, none twice"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (id, size) in &real {
        let o: &StoredObject = listed.iter().find(|o| o.id == *id).expect("listed");
        assert_eq!(o.size, *size);
        assert!(o.modified > now - 600 && o.modified <= now + 5, "{o:?}");
    }

    // Delete everything planted (11 requests of at most 1000) and one real object.
    let (gone, _) = real[0];
    let mut doomed = planted.clone();
    doomed.push(gone);
    admin.delete_objects(&doomed).await.expect("delete");
    let left: Vec<ObjectId> = admin
        .list_objects()
        .await
        .expect("list again")
        .iter()
        .map(|o| o.id)
        .collect();
    let mut expected: Vec<ObjectId> = real[1..].iter().map(|(id, _)| *id).collect();
    expected.sort();
    assert_eq!(left, expected);
    assert!(matches!(
        admin.get(&gone).await,
        Err(Error::Store(nshard_core::StoreError::ObjectMissing(_)))
    ));
    assert_eq!(admin.size(&gone).await.expect("size"), None);
    // Deleting again (and absent objects) is fine.
    admin
        .delete_objects(&doomed[..5])
        .await
        .expect("idempotent");
    admin.delete_objects(&[gone]).await.expect("idempotent");
    admin.delete_objects(&[]).await.expect("nothing to delete");
    // The others are untouched.
    for (id, size) in &real[1..] {
        assert_eq!(admin.get(id).await.expect("get").len() as u64, *size);
    }
}

#[test]
fn object_pages_follow_next_until_null() {
    let (_d, s) = server();
    let mut ids: Vec<ObjectId> = (0..25u32).map(|i| ObjectId::of(&i.to_be_bytes())).collect();
    for id in &ids {
        plant_object(&s, id, 3);
    }
    ids.sort();
    let c = client();
    let page = |query: &str| -> serde_json::Value {
        let r = c
            .get(s.at(&format!("/v1/objects{query}")))
            .bearer_auth(ADMIN)
            .send()
            .expect("GET /v1/objects");
        assert_eq!(r.status(), StatusCode::OK);
        r.json().expect("JSON page")
    };
    let mut seen = Vec::new();
    let mut query = "?limit=10".to_string();
    let mut pages = 0;
    loop {
        let p = page(&query);
        pages += 1;
        for o in p["objects"].as_array().expect("objects") {
            assert_eq!(o["size"], 3, "{o}");
            assert!(o["modified"].as_u64().expect("modified") > 0, "{o}");
            seen.push(ObjectId::parse(o["id"].as_str().expect("id")).expect("hex id"));
        }
        match p["next"].as_str() {
            None => {
                assert!(p["next"].is_null(), "{p}");
                break;
            }
            Some(next) => query = format!("?after={next}&limit=10"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    // The default page holds everything here; `after` the last id is an empty last page.
    let all = page("");
    assert_eq!(all["objects"].as_array().expect("objects").len(), 25);
    assert!(all["next"].is_null());
    let last = ids.last().expect("ids");
    let empty = page(&format!("?after={last}"));
    assert_eq!(empty["objects"], serde_json::json!([]));
    assert!(empty["next"].is_null());
    // A limit over the maximum is the maximum; a bad one or a bad id is a 400.
    assert_eq!(
        page("?limit=99999999")["objects"]
            .as_array()
            .expect("objects")
            .len(),
        25
    );
    for q in ["?limit=0", "?limit=ten", "?after=../../etc", "?after=ABC"] {
        let r = c
            .get(s.at(&format!("/v1/objects{q}")))
            .bearer_auth(ADMIN)
            .send()
            .expect("GET");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_writer_of_the_token() {
    let (_d, s) = server();
    let admin = open(&s, Some(ADMIN)).await;
    let write = open(&s, Some(WRITE)).await;
    let read = open(&s, Some(READ)).await;
    assert_eq!(read.list_records().await.expect("empty list"), vec![]);

    let by_writer = write
        .put_record(&RecordName::new(SPACE, KEY), b"from a write token".to_vec())
        .await
        .expect("write token puts a record");
    assert_eq!(by_writer.writer(), writer_of(WRITE));
    assert_eq!(by_writer.space(), SPACE);
    let by_admin = admin
        .put_record(&RecordName::new(SPACE, KEY), b"from an admin".to_vec())
        .await
        .expect("admin puts a record");
    assert_eq!(by_admin.writer(), ADMIN_WRITER);
    let marks = admin
        .put_record(
            &RecordName::new("_gc", "0000000000000000"),
            b"marks".to_vec(),
        )
        .await
        .expect("admin writes into gc's space");
    assert_eq!(marks.writer(), ADMIN_WRITER);

    let mut expected = vec![by_writer.clone(), by_admin.clone(), marks.clone()];
    expected.sort();
    assert_eq!(read.list_records().await.expect("list"), expected);
    assert_eq!(
        read.get_record(&by_writer).await.expect("get"),
        Some(b"from a write token".to_vec())
    );
    // Another writer's name with the same stamp is another record.
    let other = by_writer.with_writer(ADMIN_WRITER).expect("writer");
    assert_eq!(read.get_record(&other).await.expect("absent"), None);

    // A name is never written twice.
    let again = write.put_record(&by_writer, b"replacement".to_vec()).await;
    assert_refused(again, RemoteFailure::Refused, "409");
    assert_eq!(
        read.get_record(&by_writer).await.expect("get"),
        Some(b"from a write token".to_vec())
    );

    // Admins delete records (absent ones are no error).
    admin
        .delete_records(&[by_writer.clone(), other.clone()])
        .await
        .expect("delete records");
    admin
        .delete_records(std::slice::from_ref(&by_writer))
        .await
        .expect("idempotent");
    let mut left = vec![by_admin, marks];
    left.sort();
    assert_eq!(read.list_records().await.expect("list"), left);
    assert_eq!(read.get_record(&by_writer).await.expect("gone"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_tokens_list_delete_or_write_gc_records() {
    let (_d, s) = server();
    let write = open(&s, Some(WRITE)).await;
    let read = open(&s, Some(READ)).await;
    let anon = open(&s, None).await;
    let (id, _, enc) = object(5_000, 9);
    write.put(&id, enc).await.expect("put");
    let name = write
        .put_record(&RecordName::new(SPACE, KEY), b"r".to_vec())
        .await
        .expect("record");

    for store in [&write, &read] {
        assert_refused(
            store.list_objects().await,
            RemoteFailure::Forbidden,
            "needs a token with the admin scope",
        );
        assert_refused(
            store.delete_objects(&[id]).await,
            RemoteFailure::Forbidden,
            "admin:<token>",
        );
        assert_refused(
            store.delete_records(std::slice::from_ref(&name)).await,
            RemoteFailure::Forbidden,
            "admin scope",
        );
        for space in ["_gc", "_retention"] {
            assert_refused(
                store
                    .put_record(&RecordName::new(space, "0000000000000000"), b"x".to_vec())
                    .await,
                RemoteFailure::Forbidden,
                "admin scope",
            );
        }
    }
    assert_refused(
        read.put_record(&RecordName::new(SPACE, KEY), b"x".to_vec())
            .await,
        RemoteFailure::Forbidden,
        "403",
    );
    assert_refused(
        anon.list_records().await,
        RemoteFailure::Unauthorized,
        "401",
    );
    assert_refused(
        anon.list_objects().await,
        RemoteFailure::Unauthorized,
        "401",
    );
    // Nothing was deleted or written.
    assert!(write.size(&id).await.expect("size").is_some());
    assert_eq!(read.list_records().await.expect("list"), vec![name]);
}

#[test]
fn refusals_over_raw_http() {
    let (_d, s) = server();
    let c = client();
    let forbidden = |r: reqwest::blocking::Response| {
        let msg = expect_error(r, StatusCode::FORBIDDEN, "forbidden");
        assert!(msg.contains("needs a token with the admin scope"), "{msg}");
    };
    for t in [WRITE, READ] {
        forbidden(
            c.get(s.at("/v1/objects"))
                .bearer_auth(t)
                .send()
                .expect("GET"),
        );
        forbidden(
            c.post(s.at("/v1/objects/delete"))
                .bearer_auth(t)
                .json(&serde_json::json!({"ids": []}))
                .send()
                .expect("POST"),
        );
        forbidden(
            c.post(s.at("/v1/records/delete"))
                .bearer_auth(t)
                .json(&serde_json::json!({"names": []}))
                .send()
                .expect("POST"),
        );
    }
    forbidden(
        c.put(s.at("/v1/records/_gc/0000000000000000/00000000000000000001-0000000a"))
            .bearer_auth(WRITE)
            .body("x")
            .send()
            .expect("PUT"),
    );
    let msg = expect_error(
        c.put(s.at(&format!(
            "/v1/records/{SPACE}/{KEY}/00000000000000000001-0000000a"
        )))
        .bearer_auth(READ)
        .body("x")
        .send()
        .expect("PUT"),
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert!(msg.contains("read scope"), "{msg}");
    for path in ["/v1/objects", "/v1/records"] {
        let r = c.get(s.at(path)).send().expect("GET");
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = c
        .post(s.at("/v1/objects/delete"))
        .json(&serde_json::json!({"ids": []}))
        .send()
        .expect("POST");
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized");

    // Batches over 1000, and what is not an id or a name.
    let many: Vec<String> = (0..1001u32)
        .map(|i| ObjectId::of(&i.to_le_bytes()).to_hex())
        .collect();
    let r = c
        .post(s.at("/v1/objects/delete"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "ids": many }))
        .send()
        .expect("POST");
    expect_error(r, StatusCode::BAD_REQUEST, "batch_too_large");
    let r = c
        .post(s.at("/v1/objects/delete"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"ids": ["../../etc/passwd"]}))
        .send()
        .expect("POST");
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_id");
    let r = c
        .post(s.at("/v1/records/delete"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"names": ["../records/x"]}))
        .send()
        .expect("POST");
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_record_name");
    let r = c
        .post(s.at("/v1/records/delete"))
        .bearer_auth(ADMIN)
        .body("{\"names\": 3}")
        .send()
        .expect("POST");
    expect_error(r, StatusCode::BAD_REQUEST, "malformed_json");
}

#[test]
fn record_names_from_the_path_are_checked() {
    let (_d, s) = server();
    let stamp = "00000000000000000001-0000000a";
    let get = |path: &str| {
        raw_request(
            &s.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n",
                s.addr
            ),
            b"",
        )
    };
    let put = |path: &str| {
        raw_request(
            &s.addr,
            &format!(
                "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
                s.addr
            ),
            b"x",
        )
    };
    let bad = [
        format!("/v1/records/%2e%2e/{KEY}/{stamp}.admin"),
        format!("/v1/records/..%2F..%2F/{KEY}/{stamp}.admin"),
        format!("/v1/records/0123456789ABCDEF/{KEY}/{stamp}.admin"),
        format!("/v1/records/{SPACE}/{KEY}/{stamp}.admin/extra"),
        format!("/v1/records/{SPACE}/{KEY}/{stamp}.root"),
        format!("/v1/records/{SPACE}/{KEY}/1-0000000a.admin"),
        format!("/v1/records/_other/{KEY}/{stamp}.admin"),
        format!("/v1/records/{SPACE}/{stamp}.admin"),
        format!("/v1/records/{SPACE}%2F{KEY}%2F{stamp}.admin%2Fx"),
    ];
    for path in &bad {
        let r = get(path);
        assert!(r.starts_with("HTTP/1.1 400"), "GET {path}:\n{r}");
        assert!(r.contains("invalid_record_name"), "GET {path}:\n{r}");
    }
    // A PUT names no writer: the server sets it.
    for path in bad
        .iter()
        .map(|p| p.trim_end_matches(".admin").to_string())
        .chain([format!("/v1/records/{SPACE}/{KEY}/{stamp}.admin")])
    {
        let r = put(&path);
        assert!(r.starts_with("HTTP/1.1 400"), "PUT {path}:\n{r}");
    }
    assert!(
        std::fs::read_dir(s.store.join("records")).map_or(true, |mut d| d.next().is_none()),
        "nothing was written"
    );
    // The same name twice: 201, then 409; another writer's same stamp is another record.
    let path = format!("/v1/records/{SPACE}/{KEY}/{stamp}");
    let r = put(&path);
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    assert!(
        r.contains(&format!("\"name\":\"{SPACE}/{KEY}/{stamp}.admin\"")),
        "{r}"
    );
    let r = put(&path);
    assert!(r.starts_with("HTTP/1.1 409"), "{r}");
    assert!(r.contains("record_exists"), "{r}");
    let c = client();
    let r = c
        .put(s.at(&path))
        .bearer_auth(WRITE)
        .body("w")
        .send()
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(
        v["name"],
        format!("{SPACE}/{KEY}/{stamp}.{}", writer_of(WRITE))
    );
    let r = c
        .get(s.at(&format!("{path}.admin")))
        .bearer_auth(READ)
        .send()
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/octet-stream"[..])
    );
    assert_eq!(r.bytes().expect("body").as_ref(), b"x");
    let r = c
        .get(s.at(&format!("{path}.anonymous")))
        .bearer_auth(READ)
        .send()
        .expect("GET");
    expect_error(r, StatusCode::NOT_FOUND, "no_such_record");
    // Over the record limit: refused from the declared length, nothing kept.
    let r = raw_request(
        &s.addr,
        &format!(
            "PUT /v1/records/{SPACE}/{KEY}/00000000000000000003-0000000a HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            s.addr,
            (64u64 << 20) + 1
        ),
        b"",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("body_too_large"), "{r}");
    let r = put(&format!(
        "/v1/records/{SPACE}/{KEY}/00000000000000000002-0000000a"
    ));
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
}

#[test]
fn object_routes_still_work_next_to_the_admin_ones() {
    let (_d, s) = server();
    let c = client();
    let (id, _, enc) = object(10_000, 3);
    let r = c
        .put(s.at(&format!("/v1/objects/{id}")))
        .bearer_auth(WRITE)
        .body(enc.clone())
        .send()
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(s.at(&format!("/v1/objects/{id}")))
        .bearer_auth(READ)
        .send()
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().expect("body").as_ref(), &enc[..]);
    let r = c
        .head(s.at(&format!("/v1/objects/{id}")))
        .bearer_auth(READ)
        .send()
        .expect("HEAD");
    assert_eq!(r.status(), StatusCode::OK);
    // `delete` is never taken for an object id.
    for (method, code) in [
        (reqwest::Method::GET, "method_not_allowed"),
        (reqwest::Method::PUT, "method_not_allowed"),
    ] {
        let r = c
            .request(method, s.at("/v1/objects/delete"))
            .bearer_auth(ADMIN)
            .send()
            .expect("request");
        expect_error(r, StatusCode::METHOD_NOT_ALLOWED, code);
    }
    let r = c
        .post(s.at("/v1/objects/delete"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "ids": [id.to_hex()] }))
        .send()
        .expect("POST");
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v, serde_json::json!({"deleted": 1}));
    let r = c
        .get(s.at(&format!("/v1/objects/{id}")))
        .bearer_auth(READ)
        .send()
        .expect("GET");
    expect_error(r, StatusCode::NOT_FOUND, "not_found");
    // Again: idempotent.
    let r = c
        .post(s.at("/v1/objects/delete"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "ids": [id.to_hex()] }))
        .send()
        .expect("POST");
    assert_eq!(r.status(), StatusCode::OK);

    // The routes are counted under their patterns.
    let m = c
        .get(s.at("/metrics"))
        .bearer_auth(READ)
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        m.contains("route=\"/v1/objects/delete\",method=\"POST\",status=\"200\"} 2"),
        "{m}"
    );
    assert_eq!(metric_value(&m, "nshard_objects_deleted_total"), Some(2));
}
