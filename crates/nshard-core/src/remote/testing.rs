//! The contract every [`Store`] backend passes (behind the `testing` feature). Each backend's tests
//! open a real store (a directory, a real `nshard serve`, a real S3-compatible server) and call
//! [`contract`]; a backend that offers [`StoreAdmin`] also goes through [`admin_contract`].
//!
//! The store must be empty of the objects used here: give each run a fresh directory, server or
//! key prefix.

use std::sync::Arc;

use super::{Store, StoreAdmin};
use crate::codec::{decode_verified, DataHint, Encoder, MAX_OBJECT_SIZE};
use crate::error::Error;
use crate::id::ObjectId;

/// Deterministic incompressible bytes (xorshift64*), so that objects of a given size stay that size.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A test object of `len` raw bytes: its id and encoded form.
pub fn object(len: usize, seed: u64) -> (ObjectId, Vec<u8>) {
    let raw = random_bytes(len, seed);
    (
        ObjectId::of(&raw),
        Encoder::new().encode(&raw, DataHint::Unknown),
    )
}

/// Runs the store contract against `store`; panics naming the store on the first breach.
/// `seed` makes the objects unique to this run (several runs may share one bucket).
pub async fn contract(store: Arc<dyn Store>, seed: u64) {
    let name = store.display_url();
    let (a, ea) = object(200_000, seed.wrapping_mul(7).wrapping_add(1));
    let (b, eb) = object(3 << 20, seed.wrapping_mul(7).wrapping_add(2));
    let absent = ObjectId::of(format!("absent {seed}").as_bytes());

    store.health().await.expect("health");
    assert_eq!(
        store.missing(&[a, b, absent]).await.expect("missing"),
        vec![a, b, absent],
        "{name}"
    );
    assert!(
        matches!(store.get(&a).await, Err(Error::ObjectMissing(id)) if id == a),
        "{name}: get of an absent object"
    );
    assert_eq!(store.size(&a).await.expect("size"), None, "{name}");

    assert!(store.put(&a, ea.clone()).await.expect("put a"), "{name}");
    assert!(store.put(&b, eb.clone()).await.expect("put b"), "{name}");
    assert!(
        !store
            .put(&a, ea.clone())
            .await
            .expect("re-put is a success"),
        "{name}: a re-put writes nothing"
    );
    assert_eq!(
        store.missing(&[a, absent, b]).await.expect("missing"),
        vec![absent],
        "{name}"
    );
    assert_eq!(
        store.size(&b).await.expect("size"),
        Some(eb.len() as u64),
        "{name}"
    );

    let got = store.get(&b).await.expect("get b");
    assert!(got == eb, "{name}: the encoded bytes come back unchanged");
    decode_verified(&b, &got, MAX_OBJECT_SIZE).expect("verifies");

    // A body that does not hash to its id: a permanent error naming the id; nothing visible.
    let wrong = ObjectId::of(format!("some other content {seed}").as_bytes());
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
        vec![wrong, absent],
        "{name}: refused uploads leave nothing visible"
    );

    // More ids than one batch: answers keep the request order.
    let many: Vec<ObjectId> = (0..2500u32)
        .map(|i| {
            if i == 1234 {
                a
            } else {
                ObjectId::of(format!("{seed} {i}").as_bytes())
            }
        })
        .collect();
    let m = store.missing(&many).await.expect("missing many");
    assert_eq!(m.len(), 2499, "{name}");
    assert!(!m.contains(&a), "{name}");
    assert_eq!(m[0], many[0], "{name}");
    assert_eq!(m[2498], many[2499], "{name}");

    // Racing writers of one object: all succeed, exactly one wrote it.
    let (c, ec) = object(1 << 20, seed.wrapping_mul(7).wrapping_add(3));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = Arc::clone(&store);
        let e = ec.clone();
        tasks.push(tokio::spawn(async move { s.put(&c, e).await }));
    }
    let mut wrote = 0;
    for t in tasks {
        if t.await.expect("join").expect("racing put") {
            wrote += 1;
        }
    }
    assert_eq!(
        wrote, 1,
        "{name}: exactly one racing writer stores the object"
    );
    assert!(store.get(&c).await.expect("get c") == ec, "{name}");
}

/// The listing and deleting capability: lists exactly the objects put (among `expect_listed`,
/// objects the store already holds), deletes one, and deleting an absent object is no error.
pub async fn admin_contract(store: Arc<dyn Store>, seed: u64) {
    let name = store.display_url();
    let admin: &dyn StoreAdmin = store
        .admin()
        .expect("this store offers listing and deleting");
    let before = admin.list().await.expect("list");
    let (a, ea) = object(50_000, seed.wrapping_mul(11).wrapping_add(5));
    let (b, eb) = object(60_000, seed.wrapping_mul(11).wrapping_add(6));
    store.put(&a, ea).await.expect("put a");
    store.put(&b, eb).await.expect("put b");
    let mut l = admin.list().await.expect("list");
    l.retain(|id| !before.contains(id));
    l.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(l, want, "{name}: lists what was put");
    admin.delete(&a).await.expect("delete");
    admin.delete(&a).await.expect("deleting an absent object");
    assert_eq!(
        store.missing(&[a, b]).await.expect("missing"),
        vec![a],
        "{name}"
    );
    assert!(!admin.list().await.expect("list").contains(&a), "{name}");
}
