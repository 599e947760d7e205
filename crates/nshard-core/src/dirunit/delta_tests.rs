use std::collections::HashMap;

use super::*;
use crate::dirunit::listing::LISTING_FORMAT;
use crate::error::StoreError;

fn entry(path: &str, size: u64, pack: Option<(u32, u64)>) -> FileEntry {
    FileEntry {
        path: path.into(),
        size,
        exec: false,
        sha256: ObjectId::of(path.as_bytes()),
        pack,
        chunks: None,
    }
}

fn pack(name: &str) -> PackRef {
    PackRef {
        id: ObjectId::of(name.as_bytes()),
        size: 100,
    }
}

fn unit() -> RepoPath {
    RepoPath::parse("data").expect("unit")
}

/// An object map standing in for a store (ids need not be the bytes' hashes here, which is
/// how a cycle can be built at all).
struct Objects(HashMap<ObjectId, Vec<u8>>);

impl Objects {
    fn put(&mut self, bytes: Vec<u8>) -> ObjectId {
        let id = ObjectId::of(&bytes);
        self.0.insert(id, bytes);
        id
    }

    fn resolve(&self, head: ObjectId) -> Result<Resolved> {
        resolve(head, &unit(), &mut |id| {
            self.0
                .get(id)
                .cloned()
                .ok_or(Error::Store(StoreError::ObjectMissing(*id)))
        })
    }
}

fn base() -> Listing {
    Listing {
        format: LISTING_FORMAT.into(),
        packs: vec![pack("p0"), pack("p1")],
        files: vec![
            entry("a", 10, Some((0, 0))),
            entry("b/c", 10, Some((1, 0))),
            entry("b/d", 10, Some((0, 10))),
            entry("e", 0, None),
        ],
    }
}

#[test]
fn a_delta_resolves_to_exactly_the_new_listing() {
    let mut objs = Objects(HashMap::new());
    let b = base();
    let base_id = objs.put(b.to_bytes());
    // "a" changed into a new pack, "b/c" removed (so pack p1 is no longer used), "b/e" added,
    // "e" became executable.
    let mut new = Listing {
        format: LISTING_FORMAT.into(),
        packs: vec![pack("p2"), pack("p0")],
        files: vec![
            entry("a", 20, Some((0, 0))),
            entry("b/d", 10, Some((1, 10))),
            entry("b/e", 5, Some((0, 20))),
            entry("e", 0, None),
        ],
    };
    new.files[3].exec = true;
    let d = ListingDelta::between(base_id, &b, &new);
    assert_eq!(d.removed, vec!["b/c".to_string()]);
    assert_eq!(d.packs, vec![pack("p2")]);
    let changed: Vec<&str> = d.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(changed, vec!["a", "b/e", "e"]);
    let bytes = d.to_bytes();
    assert!(is_delta(&bytes));
    assert!(!is_delta(&b.to_bytes()));
    let head = objs.put(bytes);
    let r = objs.resolve(head).expect("resolves");
    assert_eq!(r.listing, new);
    assert_eq!(r.chain, vec![head, base_id]);

    // A second delta on top: the chain grows, and resolves again.
    let mut newer = new.clone();
    newer.files.remove(0);
    newer.packs.remove(0);
    for f in &mut newer.files {
        f.pack = f.pack.map(|(_, off)| (0, off));
    }
    newer.files.retain(|f| f.path != "b/e");
    let d2 = ListingDelta::between(head, &new, &newer);
    let head2 = objs.put(d2.to_bytes());
    let r = objs.resolve(head2).expect("resolves");
    assert_eq!(r.listing, newer);
    assert_eq!(r.chain, vec![head2, head, base_id]);
}

#[test]
fn full_listings_of_earlier_versions_still_read() {
    // The exact bytes nshard wrote before delta listings existed.
    let golden = concat!(
        r#"{"format":"neuroshard.listing/1","packs":[{"id":"#,
        r#""2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","size":5}],"#,
        r#""files":[{"path":"a/x.txt","size":5,"sha256":"#,
        r#""2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","pack":[0,0]},"#,
        r#"{"path":"run.sh","size":0,"exec":true,"sha256":"#,
        r#""e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#
    );
    let mut objs = Objects(HashMap::new());
    let id = objs.put(golden.as_bytes().to_vec());
    let r = objs.resolve(id).expect("reads");
    assert_eq!(r.chain, vec![id]);
    assert_eq!(r.listing.files.len(), 2);
    assert_eq!(r.listing.files[0].pack, Some((0, 0)));
    assert!(r.listing.files[1].exec);
    assert_eq!(r.listing.to_bytes(), golden.as_bytes());
}

fn delta_on(base: ObjectId) -> ListingDelta {
    ListingDelta {
        format: DELTA_FORMAT.into(),
        base,
        packs: Vec::new(),
        removed: Vec::new(),
        files: Vec::new(),
    }
}

fn refused(objs: &Objects, head: ObjectId, why: &str) {
    let err = match objs.resolve(head) {
        Ok(_) => panic!("{why}: resolved"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(why), "expected {why:?} in {err}");
}

#[test]
fn hostile_deltas_are_refused() {
    let mut objs = Objects(HashMap::new());
    let base_id = objs.put(base().to_bytes());

    let mut d = delta_on(base_id);
    d.removed = vec!["zz".into()];
    let h = objs.put(d.to_bytes());
    refused(&objs, h, "which its base does not hold");

    let mut d = delta_on(base_id);
    d.removed = vec!["a".into()];
    d.files = vec![entry("a", 1, Some((0, 0)))];
    let h = objs.put(d.to_bytes());
    refused(&objs, h, "both removed and changed");

    let mut d = delta_on(base_id);
    d.files = vec![entry("x", 1, Some((2, 0)))];
    let h = objs.put(d.to_bytes());
    refused(&objs, h, "names pack 2, which is not listed");

    let mut d = delta_on(base_id);
    d.removed = vec!["b/d".into(), "a".into()];
    let h = objs.put(d.to_bytes());
    refused(&objs, h, "out of order");

    // The resolved listing is validated as a whole: paths, case twins, file-and-directory.
    for (path, why) in [
        ("../x", "'..'"),
        ("A", "only by case"),
        ("a/b", "also a directory"),
        ("x/.git/config", ".git"),
    ] {
        let mut d = delta_on(base_id);
        d.files = vec![entry(path, 1, Some((0, 0)))];
        let h = objs.put(d.to_bytes());
        refused(&objs, h, why);
    }

    // A base that is not a listing, or is not there.
    let not_listing = objs.put(b"{\"format\":\"neuroshard.dir/1\"}".to_vec());
    let h = objs.put(delta_on(not_listing).to_bytes());
    refused(&objs, h, "not a listing");
    let h = objs.put(delta_on(ObjectId::of(b"absent")).to_bytes());
    assert!(matches!(
        objs.resolve(h),
        Err(Error::Store(StoreError::ObjectMissing(_)))
    ));

    // A cycle (only possible with forged ids, but never followed forever).
    let (x, y) = (ObjectId::of(b"x"), ObjectId::of(b"y"));
    objs.0.insert(x, delta_on(y).to_bytes());
    objs.0.insert(y, delta_on(x).to_bytes());
    refused(&objs, x, "already in its own chain");

    // Chains up to the bound read; one more delta is refused.
    let mut head = base_id;
    for i in 0..MAX_CHAIN {
        let mut d = delta_on(head);
        d.files = vec![entry(&format!("n{i:02}"), 0, None)];
        head = objs.put(d.to_bytes());
    }
    assert_eq!(objs.resolve(head).expect("at the bound").chain.len(), 17);
    let over = objs.put(delta_on(head).to_bytes());
    refused(&objs, over, "longer than 16");
}
