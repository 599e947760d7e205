//! Format-aware storage through the real binary: tensor-aligned chunking of safetensors files,
//! plain fallback, the `layout` setting, and manifests written before layouts existed.

mod common;

use common::{random_bytes, TestRepo};

const KIB: u64 = 1024;

/// A safetensors file: header (with `meta`), then tensors of (name, dtype, bytes) with seeded data.
fn safetensors(meta: &str, tensors: &[(&str, &str, u64)], seed: u64) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut json = format!("{{\"__metadata__\":{{\"note\":\"{meta}\"}}");
    let mut off = 0;
    let mut ranges = Vec::new();
    for (name, dtype, len) in tensors {
        let el = if *dtype == "F32" { 4 } else { 2 };
        json.push_str(&format!(
            ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            len / el,
            off + len
        ));
        ranges.push((off, off + len));
        off += len;
    }
    json.push('}');
    let mut f = (json.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(json.as_bytes());
    let base = f.len() as u64;
    f.extend_from_slice(&random_bytes(off as usize, seed));
    (
        f,
        ranges
            .into_iter()
            .map(|(a, b)| (a + base, b + base))
            .collect(),
    )
}

fn small_chunks(repo: &TestRepo, layout: Option<&str>) {
    let mut cfg = String::from(
        "track = []\n[chunking]\nalgorithm = \"fastcdc-2020\"\nmin_size = 65536\navg_size = 262144\nmax_size = 1048576\n",
    );
    if let Some(l) = layout {
        cfg.push_str(&format!("layout = \"{l}\"\n"));
    }
    repo.write(".shard/config.toml", cfg.as_bytes());
}

fn offsets(m: &serde_json::Value) -> Vec<u64> {
    m["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["offset"].as_u64().expect("offset"))
        .collect()
}

fn commit(repo: &TestRepo, msg: &str) -> serde_json::Value {
    let out = repo.json(&["commit", "-m", msg]);
    out[0].clone()
}

/// A repository with small chunks and the given layout, and `TENSORS` committed as v1 of
/// `m.safetensors`: (repo, v1's bytes, each tensor's byte range).
fn committed_v1(layout: &str) -> (TestRepo, Vec<u8>, Vec<(u64, u64)>) {
    let repo = TestRepo::new();
    small_chunks(&repo, Some(layout));
    let (v1, ranges) = safetensors("v1", TENSORS, 1);
    repo.write("m.safetensors", &v1);
    repo.ok(&["track", "m.safetensors"]);
    commit(&repo, "v1");
    (repo, v1, ranges)
}

const TENSORS: &[(&str, &str, u64)] = &[
    ("embed", "BF16", 700 * KIB),
    ("norm0", "F32", 4 * KIB),
    ("q0", "BF16", 512 * KIB),
    ("k0", "BF16", 512 * KIB),
    ("norm1", "F32", 4 * KIB),
    ("q1", "BF16", 512 * KIB),
    ("bias0", "F32", 30 * KIB),
    ("bias1", "F32", 30 * KIB),
    ("bias2", "F32", 30 * KIB),
    ("head", "F32", 900 * KIB),
];

#[test]
fn tensors_are_cut_on_their_own_and_an_edited_tensor_stores_only_itself() {
    tensors_on_their_own("tensor-aligned");
}

/// The default layout: the same promises, and fixed blocks inside each tensor.
#[test]
fn tensor_blocks_cut_fixed_blocks_inside_tensors() {
    let repo = TestRepo::new();
    repo.write("m.safetensors", &safetensors("v1", TENSORS, 1).0);
    repo.ok(&["track", "m.safetensors"]);
    commit(&repo, "v1");
    let m = repo.manifest("m.safetensors");
    assert_eq!(m["chunking"]["layout"], "tensor-blocks", "the default");
    let offs = tensors_on_their_own("tensor-blocks");
    // The 700 KiB embedding in 256 KiB blocks (the configured average); its 188 KiB tail is not
    // under the 64 KiB minimum, so it is a block of its own.
    let (_, ranges) = safetensors("v1", TENSORS, 1);
    let e = ranges[0].0;
    assert_eq!(
        offs.iter()
            .filter(|&&o| o >= e && o < ranges[0].1)
            .copied()
            .collect::<Vec<_>>(),
        vec![e, e + 256 * KIB, e + 512 * KIB]
    );
}

/// Commits v1 under `layout` with small chunks, checks every tensor starts a chunk, then edits
/// tensors and the header and checks what is re-stored. Returns v1's chunk offsets.
fn tensors_on_their_own(layout: &str) -> Vec<u64> {
    let (repo, v1, ranges) = committed_v1(layout);
    let m1 = repo.manifest("m.safetensors");
    assert_eq!(m1["chunking"]["layout"], layout);
    let offs = offsets(&m1);
    // The header is its own chunk; every tensor starts a chunk, except that small neighbours
    // (the three 30 KiB biases, under the 64 KiB minimum) are grouped into one; a small tensor
    // between large ones (a norm) stays on its own.
    assert_eq!(offs[1], ranges[0].0);
    for (i, r) in ranges.iter().enumerate() {
        let grouped = i == 7 || i == 8;
        assert_eq!(
            offs.contains(&r.0),
            !grouped,
            "tensor {i} at {}: {offs:?}",
            r.0
        );
    }

    // Rewrite k0 in place: only k0's bytes are new.
    let mut v2 = v1.clone();
    let (a, b) = ranges[3];
    v2[a as usize..b as usize].copy_from_slice(&random_bytes((b - a) as usize, 99));
    repo.write("m.safetensors", &v2);
    let c = commit(&repo, "v2");
    assert_eq!(c["result"], "committed");
    assert_eq!(c["new_bytes"], b - a, "{c}");

    // Rewrite a norm: only the norm, not the first chunk of the tensor after it.
    let mut v2b = v2.clone();
    let (a, b) = ranges[4];
    v2b[a as usize..b as usize].copy_from_slice(&random_bytes((b - a) as usize, 98));
    repo.write("m.safetensors", &v2b);
    let c = commit(&repo, "v2b");
    assert_eq!(c["new_bytes"], b - a, "{c}");

    // Grow the header: every offset shifts, every tensor is reused.
    let (v3, _) = safetensors(
        "v3 with a much longer note that shifts every offset",
        TENSORS,
        1,
    );
    repo.write("m.safetensors", &v3);
    let c = commit(&repo, "v3");
    let header = v3.len() as u64 - v1.len() as u64 + ranges[0].0;
    assert_eq!(c["new_bytes"], header, "{c}");

    std::fs::remove_file(repo.join("m.safetensors")).expect("rm");
    repo.ok(&["checkout", "m.safetensors.shard.json"]);
    assert_eq!(repo.read("m.safetensors"), v3);
    offs
}

#[test]
fn other_files_and_layout_none_are_cut_plain() {
    let repo = TestRepo::new();
    small_chunks(&repo, Some("tensor-aligned"));
    let data = random_bytes(3 << 20, 4);
    repo.write("data.bin", &data);
    // Claims a header longer than the file: not usable as safetensors.
    let mut lying = safetensors("x", TENSORS, 2).0;
    lying[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    repo.write("lying.safetensors", &lying);
    repo.ok(&["track", "data.bin", "lying.safetensors"]);
    commit(&repo, "plain");
    for f in ["data.bin", "lying.safetensors"] {
        let m = repo.manifest(f);
        assert!(
            m["chunking"].get("layout").is_none(),
            "{f}: {}",
            m["chunking"]
        );
    }

    // layout = "none": a safetensors file is cut like any other file (header not separate).
    let (repo, v1, ranges) = committed_v1("none");
    let m = repo.manifest("m.safetensors");
    assert!(m["chunking"].get("layout").is_none());
    assert_ne!(offsets(&m)[1], ranges[0].0);

    // A config without the key (written before layouts existed) behaves the same.
    let repo = TestRepo::new();
    small_chunks(&repo, None);
    repo.write("m.safetensors", &v1);
    repo.ok(&["track", "m.safetensors"]);
    commit(&repo, "v1");
    assert_eq!(offsets(&repo.manifest("m.safetensors")), offsets(&m));

    // An unknown layout is refused with the config file named.
    small_chunks(&repo, Some("diagonal"));
    let err = repo.fails(&["commit", "-m", "x"]);
    assert!(err.contains("config.toml"), "{err}");
}

/// The ids of the chunks that cover exactly `off..off + size`, if they do.
fn chunk_ids(m: &serde_json::Value, off: u64, size: u64) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for c in m["chunks"].as_array().expect("chunks") {
        let (o, s) = (
            c["offset"].as_u64().expect("o"),
            c["size"].as_u64().expect("s"),
        );
        if o >= off && o + s <= off + size {
            ids.push(c["id"].as_str().expect("id").to_string());
        } else if o < off + size && o + s > off {
            return None;
        }
    }
    Some(ids)
}

/// SHA-256 of the chunk ids' bytes, concatenated.
fn ids_digest(ids: &[String]) -> String {
    let raw: Vec<u8> = ids
        .iter()
        .flat_map(|h| {
            (0..32).map(move |i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
        })
        .collect();
    nshard_core::ObjectId::of(&raw).to_hex()
}

/// Each recorded tensor hash is the SHA-256 of the tensor's bytes in the committed file, or,
/// for a tensor marked `"digest": "chunks"`, of its chunks' ids (which are their bytes' SHA-256).
fn assert_tensor_hashes(repo: &TestRepo, data: &[u8]) {
    let m = repo.manifest("m.safetensors");
    let table = m["tensors"].as_array().expect("tensor table");
    assert_eq!(table.len(), TENSORS.len());
    for t in table {
        let (off, size) = (
            t["offset"].as_u64().expect("offset"),
            t["size"].as_u64().expect("size"),
        );
        let want = match t.get("digest").and_then(|d| d.as_str()) {
            None => nshard_core::ObjectId::of(&data[off as usize..(off + size) as usize]).to_hex(),
            Some("chunks") => ids_digest(&chunk_ids(&m, off, size).expect("whole chunks")),
            Some(other) => panic!("unknown digest {other}"),
        };
        assert_eq!(t["sha256"], want.as_str(), "tensor {}", t["name"]);
    }
}

/// A tensor cut into several chunks is identified by its chunks' ids, so a first commit hashes
/// its bytes only twice (chunk ids, whole file): the manifest says so (format 2, `"digest":
/// "chunks"`). A tensor that is one chunk keeps the SHA-256 of its bytes (its chunk's id).
#[test]
fn multi_chunk_tensors_are_identified_by_their_chunks() {
    let (repo, v1, ranges) = committed_v1("tensor-aligned");
    let m = repo.manifest("m.safetensors");
    assert_eq!(m["format"], "neuroshard.manifest/2");
    let mut by_chunks = 0;
    for (t, &(a, b)) in m["tensors"].as_array().expect("table").iter().zip(&ranges) {
        let ids = chunk_ids(&m, a, b - a);
        match ids {
            Some(ids) if ids.len() > 1 => {
                by_chunks += 1;
                assert_eq!(t["digest"], "chunks", "{t}");
                assert_eq!(t["sha256"], ids_digest(&ids).as_str(), "{t}");
            }
            _ => {
                assert!(t.get("digest").is_none(), "{t}");
                let want = nshard_core::ObjectId::of(&v1[a as usize..b as usize]).to_hex();
                assert_eq!(t["sha256"], want.as_str(), "{t}");
            }
        }
    }
    assert!(by_chunks >= 2, "{m}");
    // Layout none: tensors straddle chunks, so they are hashed as bytes: format 1.
    let (repo, _, _) = committed_v1("none");
    let m = repo.manifest("m.safetensors");
    assert_eq!(m["format"], "neuroshard.manifest/1");
    assert!(!String::from_utf8(repo.read("m.safetensors.shard.json"))
        .expect("utf8")
        .contains("digest"));
}

/// A manifest written before chunk digests (format 1, every tensor hashed as bytes) still reads,
/// and diff compares its tensors with a new version's chunk digests: only the edited tensor
/// shows as changed.
#[test]
fn format_1_tables_compare_with_chunk_digests() {
    let (repo, v1, ranges) = committed_v1("tensor-aligned");
    let mut m = repo.manifest("m.safetensors");
    m["format"] = "neuroshard.manifest/1".into();
    for (t, &(a, b)) in m["tensors"]
        .as_array_mut()
        .expect("table")
        .iter_mut()
        .zip(&ranges)
    {
        let o = t.as_object_mut().expect("entry");
        o.remove("digest");
        o.insert(
            "sha256".into(),
            nshard_core::ObjectId::of(&v1[a as usize..b as usize])
                .to_hex()
                .into(),
        );
    }
    let mut text = serde_json::to_vec_pretty(&m).expect("json");
    text.push(b'\n');
    repo.write("m.safetensors.shard.json", &text);
    let mut v2 = v1.clone();
    let (a, b) = ranges[0];
    v2[a as usize..b as usize].copy_from_slice(&random_bytes((b - a) as usize, 77));
    repo.write("m.safetensors", &v2);
    let d = repo.json(&["diff", "m.safetensors"]);
    assert_eq!(d["tensors"]["changed"], 1, "{d}");
    assert_eq!(d["tensors"]["unchanged"], TENSORS.len() - 1, "{d}");
    assert_eq!(d["tensors"]["entries"][0]["name"], "embed", "{d}");
}

/// A new version takes unchanged tensors' hashes from the chunk ids and the previous version
/// instead of hashing them again; whatever changed, and however, the table stays exact.
#[test]
fn tensor_table_stays_exact_across_versions() {
    let (repo, v1, ranges) = committed_v1("tensor-aligned");
    assert_tensor_hashes(&repo, &v1);
    let mut cur = v1;
    // (tensor, byte range inside it to rewrite): a whole tensor; the last bytes of a tensor cut
    // into several chunks (its first chunks are unchanged); the first byte; a grouped bias.
    let (head_a, head_b) = ranges[9];
    let edits = [
        (3, 0, (ranges[3].1 - ranges[3].0) as usize),
        (
            9,
            (head_b - head_a) as usize - 10,
            (head_b - head_a) as usize,
        ),
        (0, 0, 1),
        (7, 5, 6),
    ];
    for (n, &(t, a, b)) in edits.iter().enumerate() {
        let start = ranges[t].0 as usize;
        let fresh = random_bytes(b - a, 500 + n as u64);
        cur[start + a..start + b].copy_from_slice(&fresh);
        repo.write("m.safetensors", &cur);
        let c = commit(&repo, &format!("edit {n}"));
        assert_eq!(c["result"], "committed", "{c}");
        assert_tensor_hashes(&repo, &cur);
    }
    // A grown header shifts every tensor: all reused, table still exact.
    let (v3, _) = safetensors("a longer note that shifts every offset", TENSORS, 1);
    repo.write("m.safetensors", &v3);
    commit(&repo, "shifted");
    assert_tensor_hashes(&repo, &v3);
}
