//! One contract every remote `Store` backend passes: the directory remote, and the HTTP remote against
//! a real `nshard serve` process (with a small batch limit, so that the client has to split).

mod common;

use std::sync::Arc;

use common::random_bytes;
use common::serve::Served;
use nshard_core::codec::{decode_verified, DataHint, Encoder, MAX_OBJECT_SIZE};
use nshard_core::remote::{self, OpenOptions, RemoteUrl, Store};
use nshard_core::{Error, ObjectId};

fn object(len: usize, seed: u64) -> (ObjectId, Vec<u8>) {
    let raw = random_bytes(len, seed);
    (
        ObjectId::of(&raw),
        Encoder::new().encode(&raw, DataHint::Unknown),
    )
}

async fn contract(store: Arc<dyn Store>, can_list: bool) {
    let name = store.display_url();
    let (a, ea) = object(200_000, 1);
    let (b, eb) = object(3 << 20, 2);
    let absent = ObjectId::of(b"absent");

    assert_eq!(
        store.missing(&[a, b, absent]).await.expect("missing"),
        vec![a, b, absent]
    );
    assert!(
        matches!(store.get(&a).await, Err(Error::ObjectMissing(id)) if id == a),
        "{name}"
    );

    store.put(&a, ea.clone()).await.expect("put a");
    store.put(&b, eb.clone()).await.expect("put b");
    store
        .put(&a, ea.clone())
        .await
        .expect("re-put is a success");
    assert_eq!(
        store.missing(&[a, absent, b]).await.expect("missing"),
        vec![absent]
    );

    let got = store.get(&b).await.expect("get b");
    assert_eq!(got, eb, "{name}: the encoded bytes come back unchanged");
    decode_verified(&b, &got, MAX_OBJECT_SIZE).expect("verifies");

    // A body that does not hash to its id: a permanent error naming the id; nothing visible.
    let wrong = ObjectId::of(b"some other content");
    let err = store.put(&wrong, ea.clone()).await.expect_err("wrong id");
    assert!(!err.is_transient(), "{name}: {err}");
    assert!(err.to_string().contains(&wrong.to_hex()), "{name}: {err}");
    let err = store
        .put(&absent, ea[..ea.len() / 2].to_vec())
        .await
        .expect_err("truncated");
    assert!(!err.is_transient(), "{name}: {err}");
    assert_eq!(
        store.missing(&[wrong, absent]).await.expect("missing"),
        vec![wrong, absent]
    );

    // More ids than one batch: answers keep the request order.
    let many: Vec<ObjectId> = (0..2500u32)
        .map(|i| {
            if i == 1234 {
                a
            } else {
                ObjectId::of(&i.to_le_bytes())
            }
        })
        .collect();
    let m = store.missing(&many).await.expect("missing many");
    assert_eq!(m.len(), 2499, "{name}");
    assert!(!m.contains(&a));
    assert_eq!(m[0], many[0]);
    assert_eq!(m[2498], many[2499]);

    if can_list {
        let mut l = store.list().await.expect("list");
        l.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(l, want, "{name}");
        store.delete(&a).await.expect("delete");
        assert_eq!(store.missing(&[a]).await.expect("missing"), vec![a]);
    } else {
        for r in [store.list().await.map(|_| ()), store.delete(&a).await] {
            assert!(
                matches!(r, Err(Error::RemoteUnsupported { .. })),
                "{name}: {r:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_remote_passes_the_contract() {
    let d = tempfile::tempdir().expect("tmp");
    let url = RemoteUrl::parse(d.path().to_str().expect("utf8"), d.path()).expect("url");
    let store = remote::open(&url, &OpenOptions::default())
        .await
        .expect("open");
    contract(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_remote_passes_the_contract() {
    const TOKEN: &str = "contract-write-token-0123456789";
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(
        &d.path().join("store"),
        &["--max-batch", "300"],
        &[("NSHARD_SERVE_TOKENS", &format!("write:{TOKEN}"))],
    );
    let url = RemoteUrl::parse(&server.url, d.path()).expect("url");
    let opts = OpenOptions {
        token: Some(TOKEN.into()),
    };
    let store = remote::open(&url, &opts).await.expect("open");
    assert_eq!(store.display_url(), server.url);
    assert!(!format!("{opts:?}").contains(TOKEN));
    contract(store, false).await;
    // Without the token the same store refuses, permanently, saying what to do.
    let anon = remote::open(&url, &OpenOptions::default())
        .await
        .expect("open");
    let err = anon.missing(&[ObjectId::of(b"x")]).await.expect_err("401");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("NSHARD_TOKEN"), "{err}");
}
