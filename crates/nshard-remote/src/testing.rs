//! The contract every [`Store`] backend passes (behind the `testing` feature). Each backend's tests
//! open a real store (a directory, a real `nshard serve`, a real S3-compatible server) and call
//! [`contract`]; a backend that offers [`StoreAdmin`] also goes through [`admin_contract`].
//!
//! The store must be empty of the objects used here: give each run a fresh directory, server or
//! key prefix.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::s3::{MissingStrategy, RequestCounts, S3Store};
pub use crate::s3::{DELTA_PAGE_IN_LISTS, KEYS_PER_PAGE, LIST_CONCURRENCY, LIST_PAGE_IN_HEADS};
use nshard_core::backend::StoreAdmin;
use nshard_core::format::{decode_verified, encode_delta, DataHint, Encoder, MAX_OBJECT_SIZE};
use nshard_core::StoreError;
use nshard_core::{Error, ObjectId, Store};

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
        matches!(store.get(&a).await, Err(Error::Store(StoreError::ObjectMissing(id))) if id == a),
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

    // An object over S3's multipart threshold (uploaded in parts there), put twice.
    let (big, ebig) = object(17 << 20, seed.wrapping_mul(7).wrapping_add(4));
    assert!(
        store.put(&big, ebig.clone()).await.expect("put big"),
        "{name}"
    );
    assert!(
        !store.put(&big, ebig.clone()).await.expect("re-put big"),
        "{name}"
    );
    assert!(store.get(&big).await.expect("get big") == ebig, "{name}");

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

    // A delta object (its base is on the store): remotes hold standalone objects only, so it is
    // refused for good, naming the object, and nothing becomes visible.
    let mut raw_x = random_bytes(200_000, seed.wrapping_mul(7).wrapping_add(1));
    raw_x[1000] ^= 1;
    let x = ObjectId::of(&raw_x);
    let delta = encode_delta(
        &raw_x,
        &random_bytes(200_000, seed.wrapping_mul(7).wrapping_add(1)),
        &a,
        2,
        1,
    )
    .expect("a delta");
    let err = store.put(&x, delta).await.expect_err("delta");
    assert!(!err.is_transient(), "{name}: {err}");
    assert!(err.to_string().contains(&x.to_hex()), "{name}: {err}");
    assert_eq!(
        store.missing(&[x]).await.expect("missing"),
        vec![x],
        "{name}"
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

    // A batch as large as the store takes in one call (S3 may list instead of HEAD there).
    let n = store.missing_batch_size().max(3);
    let big: Vec<ObjectId> = (0..n)
        .map(|i| match i {
            7 => a,
            i if i == n / 2 => b,
            i => ObjectId::of(format!("{seed} big {i}").as_bytes()),
        })
        .collect();
    let want: Vec<ObjectId> = big
        .iter()
        .copied()
        .filter(|id| *id != a && *id != b)
        .collect();
    assert!(
        store.missing(&big).await.expect("missing big") == want,
        "{name}: a batch of {n} ids"
    );

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

    if store.stores_deltas() {
        delta_contract(&store, seed).await;
    }
}

/// `raw` with a few bytes changed (`step` apart) and its id: a close successor for deltas.
fn successor(raw: &[u8], step: usize, salt: u8) -> (ObjectId, Vec<u8>) {
    let mut next = raw.to_vec();
    for i in (0..next.len()).step_by(step) {
        next[i] ^= salt | 1;
    }
    (ObjectId::of(&next), next)
}

/// The delta encodings a store keeps beside whole objects (`deltas/<id>.<base>`): stored once,
/// found by id, resolved through a chain; a delta without its base, naming another base, or not
/// a delta at all is refused for good with nothing visible. Run by [`contract`] on every store
/// that says it keeps them.
pub async fn delta_contract(store: &Arc<dyn Store>, seed: u64) {
    use nshard_core::backend::{resolve, DeltaName};
    let name = store.display_url();
    let raw_a = random_bytes(300_000, seed.wrapping_mul(13).wrapping_add(1));
    let a = ObjectId::of(&raw_a);
    let enc_a = Encoder::new().encode(&raw_a, DataHint::Unknown);
    store.put(&a, enc_a).await.expect("put a");
    // x: a delta of a; y: a delta of x (held only as a delta), z: a delta of a nobody holds.
    let (x, raw_x) = successor(&raw_a, 997, 2);
    let (y, raw_y) = successor(&raw_x, 1009, 4);
    let dx = encode_delta(&raw_x, &raw_a, &a, 2, 1).expect("delta x");
    let dy = encode_delta(&raw_y, &raw_x, &x, 2, 2).expect("delta y");
    let nx = DeltaName { id: x, base: a };
    let ny = DeltaName { id: y, base: x };
    assert!(
        store
            .deltas_of(&[x, y])
            .await
            .expect("deltas_of")
            .is_empty(),
        "{name}"
    );
    assert!(
        matches!(store.get_delta(&nx).await, Err(Error::Store(StoreError::ObjectMissing(id))) if id == x),
        "{name}: get of an absent delta"
    );

    // Bases first: y before x is refused, naming the base it lacks; nothing becomes visible.
    let err = store.put_delta(&ny, dy.clone()).await.expect_err("no base");
    assert!(!err.is_transient(), "{name}: {err}");
    assert!(
        matches!(&err, Error::Store(StoreError::BaseMissing { id, base }) if *id == y && *base == x),
        "{name}: {err:?}"
    );
    assert!(
        store.put_delta(&nx, dx.clone()).await.expect("put x"),
        "{name}"
    );
    assert!(
        !store.put_delta(&nx, dx.clone()).await.expect("re-put x"),
        "{name}: a re-put writes nothing"
    );
    assert!(
        store.put_delta(&ny, dy.clone()).await.expect("put y"),
        "{name}"
    );
    assert!(store.get_delta(&nx).await.expect("get x") == dx, "{name}");
    let mut found = store.deltas_of(&[y, a, x]).await.expect("deltas_of");
    found.sort();
    let mut want = vec![nx, ny];
    want.sort();
    assert_eq!(found, want, "{name}");
    assert_eq!(
        store.missing(&[x, y]).await.expect("missing"),
        vec![x, y],
        "{name}: a delta is not a whole object"
    );
    assert!(
        resolve(store.as_ref(), &y, MAX_OBJECT_SIZE, &[])
            .await
            .expect("resolve y")
            == raw_y,
        "{name}: y resolves through x to a"
    );
    // A delta whose base is gone (a remote damaged by hand, or by an older gc) is passed over
    // for another delta of the same object. Its base sorts first, so a store that lists deltas
    // in name order offers the broken one first.
    let (b, raw_b) = (1u8..)
        .map(|salt| successor(&raw_y, 211, salt.wrapping_mul(2)))
        .find(|(b, _)| *b < x)
        .expect("a base that sorts before x");
    store
        .put(&b, Encoder::new().encode(&raw_b, DataHint::Unknown))
        .await
        .expect("put b");
    let nyb = DeltaName { id: y, base: b };
    let dyb = encode_delta(&raw_y, &raw_b, &b, 2, 1).expect("delta y of b");
    assert!(
        store.put_delta(&nyb, dyb).await.expect("put y of b"),
        "{name}"
    );
    store.delete_objects(&[b]).await.expect("delete b");
    assert!(
        resolve(store.as_ref(), &y, MAX_OBJECT_SIZE, &[])
            .await
            .expect("resolve y past the delta whose base is gone")
            == raw_y,
        "{name}: y resolves through x when its delta of b cannot"
    );
    store.delete_deltas(&[nyb]).await.expect("delete y of b");

    // Refused for good, nothing visible: a header naming another base, a standalone object, a
    // delta of itself.
    let (w, raw_w) = successor(&raw_a, 389, 8);
    let dw = encode_delta(&raw_w, &raw_a, &a, 2, 1).expect("delta w");
    let wrong_base = DeltaName { id: w, base: x };
    let err = store
        .put_delta(&wrong_base, dw.clone())
        .await
        .expect_err("other base");
    assert!(!err.is_transient(), "{name}: {err}");
    let whole_w = Encoder::new().encode(&raw_w, DataHint::Unknown);
    let as_delta = DeltaName { id: w, base: a };
    let err = store
        .put_delta(&as_delta, whole_w)
        .await
        .expect_err("standalone");
    assert!(!err.is_transient(), "{name}: {err}");
    let own = DeltaName { id: a, base: a };
    let err = store
        .put_delta(&own, dx.clone())
        .await
        .expect_err("own base");
    assert!(!err.is_transient(), "{name}: {err}");
    assert!(
        store
            .deltas_of(&[w, a])
            .await
            .expect("deltas_of")
            .is_empty(),
        "{name}: refused deltas leave nothing visible"
    );
    // A delta that does not decode to its id: refused on upload, or (where the store cannot read
    // the base: S3) refused by every reader that resolves it.
    let liar = DeltaName {
        id: ObjectId::of(format!("not what it decodes to {seed}").as_bytes()),
        base: a,
    };
    match store.put_delta(&liar, dw.clone()).await {
        Err(e) => assert!(!e.is_transient(), "{name}: {e}"),
        Ok(_) => {
            let err = resolve(store.as_ref(), &liar.id, MAX_OBJECT_SIZE, &[])
                .await
                .expect_err("a lying delta");
            assert!(
                matches!(err, Error::Store(StoreError::CorruptObject { .. })),
                "{name}: {err:?}"
            );
            store.delete_deltas(&[liar]).await.expect("delete liar");
        }
    }

    // Listing and deleting, for gc.
    let listed: Vec<_> = store
        .list_deltas()
        .await
        .expect("list_deltas")
        .into_iter()
        .filter(|d| d.name == nx || d.name == ny)
        .collect();
    assert_eq!(listed.len(), 2, "{name}: {listed:?}");
    let sx = listed.iter().find(|d| d.name == nx).expect("x listed");
    assert_eq!(sx.size, dx.len() as u64, "{name}");
    store.delete_deltas(&[ny]).await.expect("delete y");
    store
        .delete_deltas(&[ny])
        .await
        .expect("deleting an absent delta");
    assert_eq!(
        store.deltas_of(&[x, y]).await.expect("deltas_of"),
        vec![nx],
        "{name}"
    );
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

/// `count` objects whose ids all start with byte `fan` (found by hashing candidates: about
/// 256 × `count` SHA-256 of a few bytes).
pub fn objects_in_fan(fan: u8, count: usize, seed: u64) -> Vec<(ObjectId, Vec<u8>)> {
    let mut enc = Encoder::new();
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count {
        let raw = format!("fan {fan} seed {seed} object {i}");
        i += 1;
        let id = ObjectId::of(raw.as_bytes());
        if id.as_bytes()[0] == fan {
            out.push((id, enc.encode(raw.as_bytes(), DataHint::Unknown)));
        }
    }
    out
}

/// `count` ids in fan-out directory `fan` that no store holds.
fn absent_in_fan(fan: u8, count: usize, seed: u64) -> Vec<ObjectId> {
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count {
        let id = ObjectId::of(format!("absent {seed} {i}").as_bytes());
        i += 1;
        if id.as_bytes()[0] == fan {
            out.push(id);
        }
    }
    out
}

fn delta(before: RequestCounts, after: RequestCounts) -> (u64, u64) {
    (
        after.heads - before.heads,
        after.list_pages - before.list_pages,
    )
}

/// S3's two ways of answering `missing`, HEADs and fan-out directory listings: both give the same
/// answers, listings page past [`KEYS_PER_PAGE`] keys, and [`MissingStrategy::Auto`] lists where
/// a batch has enough ids per directory, HEADs a small batch, and falls back to HEADs when a
/// directory is fuller than the ids asked about in it can pay for. `store` must be a fresh prefix.
pub async fn s3_missing_paths(store: Arc<S3Store>, seed: u64) {
    let name = store.display_url();
    let full = (seed.wrapping_mul(37) % 256) as u8;
    let other = full.wrapping_add(128);
    // One directory holding more than a page of keys.
    let stored = objects_in_fan(full, KEYS_PER_PAGE + 10, seed);
    let puts: Vec<bool> = futures::stream::iter(stored.iter().cloned())
        .map(|(id, enc)| {
            let s = Arc::clone(&store);
            async move { s.put(&id, enc).await }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .expect("put a full directory");
    assert!(puts.iter().all(|w| *w), "{name}: a fresh prefix");
    let held: Vec<ObjectId> = stored.iter().map(|(id, _)| *id).collect();

    // A large batch: every stored id, absent ids in the full directory and in two others.
    let mut batch = Vec::new();
    let absent_full = absent_in_fan(full, 300, seed);
    let absent_other = absent_in_fan(other, 3 * LIST_PAGE_IN_HEADS, seed);
    let absent_next = absent_in_fan(other.wrapping_add(1), 3 * LIST_PAGE_IN_HEADS, seed);
    for (i, id) in held.iter().enumerate() {
        batch.push(*id);
        if let Some(a) = absent_full.get(i) {
            batch.push(*a);
        }
        if let Some(a) = absent_other.get(i) {
            batch.push(*a);
        }
        if let Some(a) = absent_next.get(i) {
            batch.push(*a);
        }
    }
    let held_set: std::collections::HashSet<ObjectId> = held.iter().copied().collect();
    let want: Vec<ObjectId> = batch
        .iter()
        .copied()
        .filter(|id| !held_set.contains(id))
        .collect();

    let c0 = store.request_counts();
    let by_head = store
        .missing_with(&batch, MissingStrategy::Head)
        .await
        .expect("HEADs");
    let c1 = store.request_counts();
    assert!(by_head == want, "{name}: HEADs answer right");
    assert_eq!(
        delta(c0, c1),
        (batch.len() as u64, 0),
        "{name}: one HEAD per id"
    );

    let by_list = store
        .missing_with(&batch, MissingStrategy::List)
        .await
        .expect("listings");
    let c2 = store.request_counts();
    assert!(by_list == want, "{name}: listings answer right");
    assert_eq!(
        delta(c1, c2),
        (0, 2 + 1 + 1),
        "{name}: two pages for the full directory, one for each other"
    );

    let auto = store
        .missing_with(&batch, MissingStrategy::Auto)
        .await
        .expect("auto");
    let c3 = store.request_counts();
    assert!(auto == want, "{name}: the rule answers right");
    assert_eq!(
        delta(c2, c3),
        (0, 4),
        "{name}: a large batch is answered by listing the directories it touches"
    );
    assert!(
        store.missing(&batch).await.expect("missing") == want,
        "{name}: Store::missing is the rule"
    );

    // A small batch: HEADs only.
    let c3 = store.request_counts();
    let small: Vec<ObjectId> = held[..5]
        .iter()
        .chain(&absent_other[..5])
        .copied()
        .collect();
    let auto = store
        .missing_with(&small, MissingStrategy::Auto)
        .await
        .expect("auto small");
    let c4 = store.request_counts();
    assert_eq!(auto, absent_other[..5].to_vec(), "{name}");
    assert_eq!(delta(c3, c4), (10, 0), "{name}: a small batch takes HEADs");

    // Enough ids in the full directory to try a listing, too few to pay for its two pages: the
    // listing is abandoned after its one-page budget and those ids are HEADed.
    let few: Vec<ObjectId> = held[..LIST_PAGE_IN_HEADS]
        .iter()
        .chain(&absent_full[..LIST_PAGE_IN_HEADS / 2])
        .copied()
        .collect();
    let auto = store
        .missing_with(&few, MissingStrategy::Auto)
        .await
        .expect("auto few");
    let c5 = store.request_counts();
    assert_eq!(
        auto,
        absent_full[..LIST_PAGE_IN_HEADS / 2].to_vec(),
        "{name}"
    );
    assert_eq!(
        delta(c4, c5),
        (few.len() as u64, 2),
        "{name}: an over-full directory falls back to HEADs after a bounded listing"
    );
}

/// `count` close successors of `base` (a 2,048-byte object, id `base_id`) whose ids all start
/// with byte `fan`, each with its delta against `base`: (name, raw bytes, encoded delta).
pub fn deltas_in_fan(
    fan: u8,
    count: usize,
    base: &[u8],
    base_id: &ObjectId,
) -> Vec<(nshard_core::backend::DeltaName, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(count);
    let mut next = base.to_vec();
    let mut i = 0u64;
    while out.len() < count {
        i += 1;
        for (b, (o, t)) in next.iter_mut().zip(base.iter().zip(i.to_le_bytes())) {
            *b = o ^ t;
        }
        let id = ObjectId::of(&next);
        if id.as_bytes()[0] == fan {
            let enc = encode_delta(&next, base, base_id, 2, 1).expect("1,024 2-byte elements");
            let name = nshard_core::backend::DeltaName { id, base: *base_id };
            out.push((name, next.clone(), enc));
        }
    }
    out
}

/// S3's two ways of answering `deltas_of`, a listing of `deltas/ab/<id>.` per id and listings of
/// whole fan-out directories `deltas/ab/`: both give exactly the deltas stored for the ids asked
/// about (every base of an id), directory listings page past [`KEYS_PER_PAGE`] keys, a large batch
/// takes far fewer requests than one per id, a small one takes one per id, and a directory fuller
/// than its ids can pay for falls back to one per id. `store` must be a fresh prefix.
pub async fn s3_delta_paths(store: Arc<S3Store>, seed: u64) {
    use nshard_core::backend::DeltaName;
    use std::collections::HashSet;
    let name = store.display_url();
    let w = DELTA_PAGE_IN_LISTS;
    assert!(w >= 2, "a lone id is never worth a directory listing");
    let full = (seed.wrapping_mul(41) % 256) as u8;
    let (other, empty) = (full.wrapping_add(128), full.wrapping_add(64));
    let lone: Vec<u8> = (1..=3).map(|k| full.wrapping_add(k)).collect();

    // Two bases; a directory of more than a page of deltas of the first, a few deltas in
    // another directory, one of whose ids also has a delta against the second base.
    let mut enc = Encoder::new();
    let raw_a = random_bytes(2048, seed.wrapping_mul(17).wrapping_add(3));
    let raw_b = random_bytes(2048, seed.wrapping_mul(19).wrapping_add(5));
    let (a, b) = (ObjectId::of(&raw_a), ObjectId::of(&raw_b));
    for (id, raw) in [(a, &raw_a), (b, &raw_b)] {
        let fresh = store
            .put(&id, enc.encode(raw, DataHint::Unknown))
            .await
            .expect("put base");
        assert!(fresh, "{name}: a fresh prefix");
    }
    let in_full = deltas_in_fan(full, KEYS_PER_PAGE + 10, &raw_a, &a);
    let in_other = deltas_in_fan(other, 3, &raw_a, &a);
    let (twice, raw_twice, _) = &in_other[0];
    let against_b = DeltaName {
        id: twice.id,
        base: b,
    };
    let delta_b = encode_delta(raw_twice, &raw_b, &b, 2, 1).expect("delta against b");
    let uploads: Vec<(DeltaName, Vec<u8>)> = in_full
        .iter()
        .chain(&in_other)
        .map(|(n, _, d)| (*n, d.clone()))
        .chain([(against_b, delta_b)])
        .collect();
    let puts: Vec<bool> = futures::stream::iter(uploads.clone())
        .map(|(n, d)| {
            let s = Arc::clone(&store);
            async move { s.put_delta(&n, d).await }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .expect("put deltas");
    assert!(puts.iter().all(|fresh| *fresh), "{name}: a fresh prefix");
    let stored: Vec<DeltaName> = uploads.iter().map(|(n, _)| *n).collect();
    let names_of = |ids: &[ObjectId]| -> Vec<DeltaName> {
        let ids: HashSet<ObjectId> = ids.iter().copied().collect();
        let mut v: Vec<DeltaName> = stored
            .iter()
            .copied()
            .filter(|n| ids.contains(&n.id))
            .collect();
        v.sort();
        v
    };
    let pages =
        |before: RequestCounts| store.request_counts().delta_list_pages - before.delta_list_pages;
    let full_ids: Vec<ObjectId> = in_full.iter().map(|(n, _, _)| n.id).collect();
    let other_ids: Vec<ObjectId> = in_other.iter().map(|(n, _, _)| n.id).collect();

    // A large batch: every id with deltas, ids without in the full directory, enough in
    // `other` and `empty` to list them (one page each), lone ids in three more directories,
    // and a duplicate.
    let mut batch: Vec<ObjectId> = full_ids.clone();
    batch.extend(absent_in_fan(full, 100, seed));
    batch.extend(&other_ids);
    batch.extend(absent_in_fan(other, 2 * w, seed));
    batch.extend(absent_in_fan(empty, 2 * w, seed));
    for fan in &lone {
        batch.extend(absent_in_fan(*fan, 1, seed));
    }
    batch.push(full_ids[7]);
    let distinct: Vec<ObjectId> = {
        let mut seen = HashSet::new();
        batch
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect()
    };
    let want = names_of(&batch);
    assert_eq!(
        want.len(),
        stored.len(),
        "{name}: the batch covers every delta"
    );

    let c0 = store.request_counts();
    let mut listed = store.deltas_of(&batch).await.expect("deltas_of, listings");
    listed.sort();
    let by_listing = pages(c0);
    assert!(listed == want, "{name}: directory listings answer right");
    assert_eq!(
        by_listing,
        2 + 1 + 1 + lone.len() as u64,
        "{name}: two pages for the full directory, one each for `other` and `empty`, one listing per lone id"
    );

    // The same ids asked about one at a time: one listing each, the same answer.
    let c1 = store.request_counts();
    let one_by_one: Vec<Vec<DeltaName>> = futures::stream::iter(distinct.clone())
        .map(|id| {
            let s = Arc::clone(&store);
            async move { s.deltas_of(&[id]).await }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .expect("deltas_of, one id");
    let by_id = pages(c1);
    let mut one_by_one: Vec<DeltaName> = one_by_one.into_iter().flatten().collect();
    one_by_one.sort();
    assert!(
        one_by_one == want,
        "{name}: listings of one id answer right"
    );
    assert_eq!(by_id, distinct.len() as u64, "{name}: one listing per id");
    assert!(
        by_listing * 100 < by_id,
        "{name}: {by_listing} pages for the batch, {by_id} one id at a time"
    );

    // A small batch (fewer than `w` ids in each directory): one listing per id.
    let small: Vec<ObjectId> = full_ids[..w - 1]
        .iter()
        .chain(&other_ids[..other_ids.len().min(w - 1)])
        .copied()
        .chain(absent_in_fan(empty, w - 1, seed))
        .collect();
    let c2 = store.request_counts();
    let mut found = store.deltas_of(&small).await.expect("deltas_of, small");
    found.sort();
    assert!(
        found == names_of(&small),
        "{name}: a small batch answers right"
    );
    assert_eq!(pages(c2), small.len() as u64, "{name}: one listing per id");

    // Enough ids in the full directory to try a listing, too few to pay for its two pages: the
    // listing is abandoned after its one-page budget and those ids are listed one by one.
    let few = &full_ids[100..100 + w];
    let c3 = store.request_counts();
    let mut found = store.deltas_of(few).await.expect("deltas_of, few");
    found.sort();
    assert!(
        found == names_of(few),
        "{name}: an abandoned listing answers right"
    );
    assert_eq!(
        pages(c3),
        2 + w as u64,
        "{name}: an over-full directory falls back to one listing per id after a bounded listing"
    );
}
