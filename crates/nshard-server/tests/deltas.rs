//! Delta encodings over protocol v1 against the real server on a 127.0.0.1 port: stored only
//! after they are verified against their base as the store holds it, refused naming the base when
//! it lacks it and naming the object when the bytes lie, written by write tokens only, listed and
//! deleted by admins, served but not taken by a server whose `--max-object-format` is below the
//! delta format, and never deleted from under a delta by a client that does not know deltas.

mod common;

use common::*;

use nshard_core::format::{encode_delta, DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::blocking::Response;
use reqwest::StatusCode;

const ADMIN: &str = "admin-token-for-tests-0123456789";

/// A server over `DIR/store` with a write, a read and an admin token, and `max_object_format`.
fn token_server(max_object_format: u8) -> (tempfile::TempDir, TestServer) {
    server_with(|c| {
        c.tokens = tokens(&format!("write:{WRITE}\nread:{READ}\nadmin:{ADMIN}\n"));
        c.limits.max_object_format = max_object_format;
    })
}

/// `raw` with a few bytes changed (`step` apart): a close successor, and its id.
fn successor(raw: &[u8], step: usize, salt: u8) -> (ObjectId, Vec<u8>) {
    let mut next = raw.to_vec();
    for i in (0..next.len()).step_by(step) {
        next[i] ^= salt | 1;
    }
    (ObjectId::of(&next), next)
}

/// A base object (`id`, raw, encoded) and a delta of a successor against it (`id`, raw, delta).
struct Family {
    base: ObjectId,
    raw_base: Vec<u8>,
    enc_base: Vec<u8>,
    x: ObjectId,
    raw_x: Vec<u8>,
    dx: Vec<u8>,
}

fn family(seed: u64) -> Family {
    let raw_base = random_bytes(200_000, seed);
    let base = ObjectId::of(&raw_base);
    let enc_base = Encoder::new().encode(&raw_base, DataHint::Unknown);
    let (x, raw_x) = successor(&raw_base, 997, 2);
    let dx = encode_delta(&raw_x, &raw_base, &base, 2, 1).expect("a delta");
    Family {
        base,
        raw_base,
        enc_base,
        x,
        raw_x,
        dx,
    }
}

fn key(id: &ObjectId, base: &ObjectId) -> String {
    format!("{}.{}", id.to_hex(), base.to_hex())
}

fn with(req: reqwest::blocking::RequestBuilder, token: Option<&str>) -> Response {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
    .send()
    .expect("request")
}

fn put_delta(s: &TestServer, token: Option<&str>, name: &str, body: Vec<u8>) -> Response {
    with(
        client().put(s.at(&format!("/v1/deltas/{name}"))).body(body),
        token,
    )
}

fn get_delta(s: &TestServer, token: Option<&str>, name: &str) -> Response {
    with(client().get(s.at(&format!("/v1/deltas/{name}"))), token)
}

/// `POST /v1/deltas/of` with the JSON `body`.
fn ask_deltas_of(s: &TestServer, token: Option<&str>, body: &serde_json::Value) -> Response {
    with(client().post(s.at("/v1/deltas/of")).json(body), token)
}

/// The delta encodings the server holds of `ids`, sorted.
fn deltas_of(s: &TestServer, token: Option<&str>, ids: &[ObjectId]) -> Vec<String> {
    let ids: Vec<String> = ids.iter().map(ObjectId::to_hex).collect();
    let r = ask_deltas_of(s, token, &serde_json::json!({ "ids": ids }));
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().expect("json");
    let mut names: Vec<String> = v["deltas"]
        .as_array()
        .expect("deltas")
        .iter()
        .map(|n| n.as_str().expect("a name").to_string())
        .collect();
    names.sort();
    names
}

fn put_object(s: &TestServer, id: &ObjectId, enc: Vec<u8>) {
    let r = with(
        client().put(s.at(&format!("/v1/objects/{id}"))).body(enc),
        Some(WRITE),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// `GET /v1/deltas` with `query` (`?after=…&limit=…`, or nothing).
fn list_deltas(s: &TestServer, token: Option<&str>, query: &str) -> Response {
    with(client().get(s.at(&format!("/v1/deltas{query}"))), token)
}

/// `POST /v1/deltas/delete` with the JSON `body`.
fn delete_deltas(s: &TestServer, token: Option<&str>, body: &serde_json::Value) -> Response {
    with(client().post(s.at("/v1/deltas/delete")).json(body), token)
}

/// `GET /metrics` with a read token.
fn metrics(s: &TestServer) -> String {
    with(client().get(s.at("/metrics")), Some(READ))
        .text()
        .expect("metrics")
}

fn features(s: &TestServer) -> Vec<String> {
    s.health()["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f.as_str().expect("a feature").to_string())
        .collect()
}

/// Files under the store's `deltas/`.
fn delta_files(s: &TestServer) -> Vec<std::path::PathBuf> {
    walkdir(&s.store.join("deltas"))
}

#[test]
fn deltas_round_trip_and_are_listed_and_deleted_by_admins() {
    let (_d, s) = token_server(4);
    assert!(features(&s).contains(&"deltas".to_string()));
    let f = family(1);
    put_object(&s, &f.base, f.enc_base.clone());
    let name = key(&f.x, &f.base);
    let r = put_delta(&s, Some(WRITE), &name, f.dx.clone());
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v, serde_json::json!({"name": name, "stored": true}));
    // Re-uploading is a cheap success that writes nothing.
    let r = put_delta(&s, Some(WRITE), &name, f.dx.clone());
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().expect("json")["stored"],
        false
    );
    assert_eq!(delta_files(&s).len(), 1);

    let r = get_delta(&s, Some(READ), &name);
    assert_eq!(r.status(), StatusCode::OK);
    let got = r.bytes().expect("body");
    assert_eq!(&got[..], &f.dx[..]);
    let mut raw = f.raw_base.clone();
    nshard_core::format::decode_against_in_place(
        &f.x,
        &got,
        &mut raw,
        1 << 30,
        &mut Default::default(),
    )
    .expect("decodes");
    assert!(raw == f.raw_x);
    let absent = key(&ObjectId::of(b"nobody"), &f.base);
    expect_error(
        get_delta(&s, Some(READ), &absent),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        deltas_of(&s, Some(READ), &[f.base, f.x, ObjectId::of(b"nobody")]),
        vec![name.clone()]
    );
    // To a client that reads deltas (it says so in a header), a delta is not a whole object; to
    // one from before remote deltas (no header) the object is there, and a GET sends it whole.
    let ask_missing = |knows: bool| -> serde_json::Value {
        let mut req = client()
            .post(s.at("/v1/objects/missing"))
            .json(&serde_json::json!({ "ids": [f.x.to_hex()] }));
        if knows {
            req = req.header(nshard_core::protocol::DELTAS_HEADER, "1");
        }
        with(req, Some(READ)).json().expect("json")
    };
    assert_eq!(
        ask_missing(true)["missing"],
        serde_json::json!([f.x.to_hex()])
    );
    assert_eq!(ask_missing(false)["missing"], serde_json::json!([]));
    let object = s.at(&format!("/v1/objects/{}", f.x));
    let whole = with(client().get(&object), Some(READ));
    assert_eq!(whole.status(), StatusCode::OK);
    let enc = whole.bytes().expect("body");
    let raw = nshard_core::format::decode_verified(&f.x, &enc, 1 << 30).expect("whole");
    assert!(raw == f.raw_x);
    let knows = client()
        .get(&object)
        .header(nshard_core::protocol::DELTAS_HEADER, "1");
    assert_eq!(with(knows, Some(READ)).status(), StatusCode::NOT_FOUND);

    // A second delta (of the first), then the admin listing a page at a time.
    let (y, raw_y) = successor(&f.raw_x, 1009, 4);
    let dy = encode_delta(&raw_y, &f.raw_x, &f.x, 2, 2).expect("a delta");
    let name_y = key(&y, &f.x);
    assert_eq!(
        put_delta(&s, Some(WRITE), &name_y, dy.clone()).status(),
        StatusCode::CREATED
    );
    let mut want = [name.clone(), name_y.clone()];
    want.sort();
    for token in [Some(WRITE), Some(READ)] {
        let msg = expect_error(
            list_deltas(&s, token, ""),
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        assert!(msg.contains("admin"), "{msg}");
    }
    let page: serde_json::Value = list_deltas(&s, Some(ADMIN), "?limit=1")
        .json()
        .expect("json");
    assert_eq!(page["deltas"].as_array().expect("deltas").len(), 1);
    assert_eq!(page["deltas"][0]["name"], want[0]);
    assert!(page["deltas"][0]["modified"].as_u64().expect("modified") > 0);
    assert_eq!(page["next"], want[0]);
    let size = |n: &str| if n == name { f.dx.len() } else { dy.len() };
    assert_eq!(page["deltas"][0]["size"], size(&want[0]));
    let page: serde_json::Value =
        list_deltas(&s, Some(ADMIN), &format!("?after={}&limit=1", want[0]))
            .json()
            .expect("json");
    assert_eq!(page["deltas"][0]["name"], want[1]);
    assert_eq!(page["deltas"][0]["size"], size(&want[1]));
    assert_eq!(page["next"], serde_json::Value::Null);
    expect_error(
        list_deltas(&s, Some(ADMIN), "?after=../x"),
        StatusCode::BAD_REQUEST,
        "invalid_delta_name",
    );

    // Deleting: admins only, absent names are no error.
    let body = serde_json::json!({ "names": [name_y, absent] });
    expect_error(
        delete_deltas(&s, Some(WRITE), &body),
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = delete_deltas(&s, Some(ADMIN), &body);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().expect("json"),
        serde_json::json!({"deleted": 2})
    );
    assert_eq!(deltas_of(&s, Some(READ), &[f.x, y]), vec![name.clone()]);

    let metrics = metrics(&s);
    assert_counters(
        &metrics,
        &[
            ("nshard_deltas_stored_total", 2),
            ("nshard_deltas_deleted_total", 2),
        ],
    );
    for route in [
        r#"route="/v1/deltas/{name}",method="PUT",status="201""#,
        r#"route="/v1/deltas/{name}",method="GET",status="200""#,
        r#"route="/v1/deltas/of",method="POST",status="200""#,
        r#"route="/v1/deltas",method="GET",status="200""#,
        r#"route="/v1/deltas/delete",method="POST",status="200""#,
    ] {
        assert!(metrics.contains(route), "{route}:\n{metrics}");
    }
}

#[test]
fn a_delta_without_its_base_is_refused_naming_the_base() {
    let (_d, s) = token_server(4);
    let f = family(2);
    // The base was never uploaded.
    let name = key(&f.x, &f.base);
    let msg = expect_error(
        put_delta(&s, Some(WRITE), &name, f.dx.clone()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "base_missing",
    );
    assert!(msg.contains(&f.base.to_hex()), "{msg}");
    assert!(delta_files(&s).is_empty(), "{:?}", delta_files(&s));
    assert!(deltas_of(&s, Some(READ), &[f.x]).is_empty());
    // Once the base is there, the same upload goes through.
    put_object(&s, &f.base, f.enc_base.clone());
    assert_eq!(
        put_delta(&s, Some(WRITE), &name, f.dx.clone()).status(),
        StatusCode::CREATED
    );
}

#[test]
fn a_delta_that_does_not_decode_to_its_id_is_refused_and_nothing_is_visible() {
    let (_d, s) = token_server(4);
    let f = family(3);
    put_object(&s, &f.base, f.enc_base.clone());
    let liar = ObjectId::of(b"not what the delta decodes to");
    let other = ObjectId::of(b"some other base");
    let whole_x = Encoder::new().encode(&f.raw_x, DataHint::Unknown);
    for (name, body, id) in [
        // Bytes that decode to another id.
        (key(&liar, &f.base), f.dx.clone(), liar),
        // A header naming another base than the name does.
        (key(&f.x, &other), f.dx.clone(), f.x),
        // A standalone object, not a delta.
        (key(&f.x, &f.base), whole_x, f.x),
        // Not an object at all.
        (key(&f.x, &f.base), b"garbage".to_vec(), f.x),
        // Cut short.
        (key(&f.x, &f.base), f.dx[..f.dx.len() / 2].to_vec(), f.x),
    ] {
        let msg = expect_error(
            put_delta(&s, Some(WRITE), &name, body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "object_rejected",
        );
        assert!(msg.contains(&id.to_hex()), "{msg}");
        assert!(msg.contains("nothing was stored"), "{msg}");
    }
    assert!(delta_files(&s).is_empty(), "{:?}", delta_files(&s));
    assert!(deltas_of(&s, Some(READ), &[f.x, liar]).is_empty());
    expect_error(
        get_delta(&s, Some(READ), &key(&liar, &f.base)),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Names that are not two different lowercase ids are refused before the store is touched.
    for bad in [
        key(&f.base, &f.base),
        key(&f.x, &f.base).to_uppercase(),
        f.x.to_hex(),
        format!("{}.x", f.x.to_hex()),
    ] {
        expect_error(
            put_delta(&s, Some(WRITE), &bad, f.dx.clone()),
            StatusCode::BAD_REQUEST,
            "invalid_delta_name",
        );
    }
    assert_counters(
        &metrics(&s),
        &[
            ("nshard_objects_rejected_total", 5),
            ("nshard_deltas_stored_total", 0),
        ],
    );
}

#[test]
fn only_write_tokens_put_deltas() {
    let (_d, s) = token_server(4);
    let f = family(4);
    put_object(&s, &f.base, f.enc_base.clone());
    let name = key(&f.x, &f.base);
    let msg = expect_error(
        put_delta(&s, Some(READ), &name, f.dx.clone()),
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert!(msg.contains("write"), "{msg}");
    expect_error(
        put_delta(&s, None, &name, f.dx.clone()),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert!(delta_files(&s).is_empty());
    // Reading needs a token too, a read token will do.
    expect_error(
        get_delta(&s, None, &name),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    expect_error(
        get_delta(&s, Some(READ), &name),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        put_delta(&s, Some(ADMIN), &name, f.dx.clone()).status(),
        StatusCode::CREATED,
        "admin includes write"
    );
}

/// A server whose `--max-object-format` is below the delta format takes no new delta (422 naming
/// the format) and says so (`deltas-frozen` beside `deltas`), but serves the deltas its store
/// already holds (here from a run at the default format), so that clients keep their bases: the
/// client sees deltas it reads and does not add. A client from before remote deltas gets such an
/// object resolved, in format 1.
#[test]
fn a_server_below_the_delta_format_takes_no_deltas_but_serves_those_it_holds() {
    let (d, before) = token_server(4);
    let f = family(5);
    put_object(&before, &f.base, f.enc_base.clone());
    let held = key(&f.x, &f.base);
    assert_eq!(
        put_delta(&before, Some(WRITE), &held, f.dx.clone()).status(),
        StatusCode::CREATED
    );
    drop(before);
    let mut c = config(&d.path().join("store"));
    c.tokens = tokens(&format!("write:{WRITE}\nread:{READ}\nadmin:{ADMIN}\n"));
    c.limits.max_object_format = 1;
    let s = TestServer::start_with(c);

    let features = features(&s);
    assert!(features.contains(&"deltas".to_string()), "{features:?}");
    assert!(
        features.contains(&"deltas-frozen".to_string()),
        "{features:?}"
    );
    let (y, raw_y) = successor(&f.raw_x, 1009, 4);
    let dy = encode_delta(&raw_y, &f.raw_x, &f.x, 2, 2).expect("a delta");
    let msg = expect_error(
        put_delta(&s, Some(WRITE), &key(&y, &f.x), dy.clone()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "object_rejected",
    );
    assert!(msg.contains(&y.to_hex()), "{msg}");
    assert!(msg.contains("object format 3"), "{msg}");
    assert!(msg.contains("--max-object-format"), "{msg}");
    assert_eq!(delta_files(&s).len(), 1, "only the delta held before");

    // What it holds is listed and served.
    assert_eq!(deltas_of(&s, Some(READ), &[f.x]), vec![held.clone()]);
    let got = get_delta(&s, Some(READ), &held);
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().expect("body").as_ref() == f.dx.as_slice());
    // A client from before remote deltas gets the object resolved, in format 1.
    let whole = with(
        client().get(s.at(&format!("/v1/objects/{}", f.x))),
        Some(READ),
    );
    assert_eq!(whole.status(), StatusCode::OK);
    let enc = whole.bytes().expect("body");
    assert_eq!(enc[4], 1, "object format 1");
    let raw = nshard_core::format::decode_verified(&f.x, &enc, 1 << 30).expect("whole");
    assert!(raw == f.raw_x);

    // The client reads those deltas and adds none.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let opts = nshard_remote::OpenOptions {
            token: Some(WRITE.into()),
            ..Default::default()
        };
        let store = nshard_remote::HttpStore::connect(&s.url, &opts)
            .await
            .expect("connect");
        use nshard_core::Store;
        assert!(store.stores_deltas());
        assert!(!store.takes_deltas());
        let name = nshard_core::backend::DeltaName { id: y, base: f.x };
        let err = store.put_delta(&name, dy.clone()).await.expect_err("no");
        assert!(!err.is_transient(), "{err}");
        let of = store.deltas_of(&[f.x]).await.expect("deltas of");
        assert_eq!(of.len(), 1);
    });
}

/// A client from before remote deltas (no `x-nshard-deltas` header) may not delete an object
/// that is the base of a delta the server keeps: its `remote gc` does not know the delta needs
/// it (409 `upgrade_required`, naming the object). Other objects it may delete, and a client
/// that sends the header may delete the base (its gc deletes the delta with it).
#[test]
fn clients_from_before_remote_deltas_cannot_delete_the_base_of_a_delta() {
    let (_d, s) = token_server(4);
    let f = family(6);
    put_object(&s, &f.base, f.enc_base.clone());
    assert_eq!(
        put_delta(&s, Some(WRITE), &key(&f.x, &f.base), f.dx.clone()).status(),
        StatusCode::CREATED
    );
    let other = random_bytes(5000, 61);
    let other_id = ObjectId::of(&other);
    put_object(
        &s,
        &other_id,
        Encoder::new().encode(&other, DataHint::Unknown),
    );
    let delete = |ids: &[ObjectId], header: bool| {
        let ids: Vec<String> = ids.iter().map(ObjectId::to_hex).collect();
        let mut req = client()
            .post(s.at("/v1/objects/delete"))
            .json(&serde_json::json!({ "ids": ids }));
        if header {
            req = req.header(nshard_core::protocol::DELTAS_HEADER, "1");
        }
        with(req, Some(ADMIN))
    };
    let msg = expect_error(
        delete(&[other_id, f.base], false),
        StatusCode::CONFLICT,
        "upgrade_required",
    );
    assert!(msg.contains(&f.base.to_hex()), "{msg}");
    assert!(msg.contains("upgrade nshard"), "{msg}");
    let status =
        |id: &ObjectId| with(client().get(s.at(&format!("/v1/objects/{id}"))), Some(READ)).status();
    assert_eq!(status(&other_id), StatusCode::OK, "nothing deleted");
    assert_eq!(delete(&[other_id], false).status(), StatusCode::OK);
    assert_eq!(status(&other_id), StatusCode::NOT_FOUND);
    assert_eq!(delete(&[f.base], true).status(), StatusCode::OK);
}

#[test]
fn batch_queries_of_deltas_are_bounded_and_checked() {
    let (_d, s) = server_with(|c| c.limits.max_batch = 5);
    let ids: Vec<String> = (0..6u8).map(|i| ObjectId::of(&[i]).to_hex()).collect();
    for (body, status, code) in [
        (
            serde_json::json!({ "ids": ids }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
        (
            serde_json::json!({ "ids": ["../../etc"] }),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            serde_json::json!({ "names": [] }),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ] {
        expect_error(ask_deltas_of(&s, None, &body), status, code);
    }
    // A GET of the static route is not taken for a delta name.
    expect_error(
        client().get(s.at("/v1/deltas/of")).send().expect("send"),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}
