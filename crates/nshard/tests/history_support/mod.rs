//! Helpers shared by the history and upkeep tests: safetensors files, checkpoints, object paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{random_bytes, TestRepo};

/// Small chunks so that a changed 64 KiB tensor touches only a few chunks of a 1 MiB file.
pub const SMALL_CDC: &str =
    "[chunking]\nalgorithm = \"fastcdc-2020\"\nmin_size = 8192\navg_size = 32768\nmax_size = 131072\n";

/// A repository whose chunking is `chunking` (a `[chunking]` TOML table).
pub fn repo_with(chunking: &str) -> TestRepo {
    let r = TestRepo::new();
    r.write(
        ".shard/config.toml",
        format!("track = []\n\n{chunking}").as_bytes(),
    );
    r
}

/// A safetensors file: 8-byte little-endian header length, JSON header, then the tensor data in
/// the order given.
pub fn safetensors(tensors: &[(String, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&Value::Object(header)).expect("json");
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// A checkpoint of 16 BF16 tensors of 64 KiB; tensor `i` holds `versions[i]`'s content.
pub fn checkpoint(versions: &[u64; 16]) -> Vec<u8> {
    let t: Vec<_> = versions
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (
                format!("layers.{i:02}.weight"),
                "BF16",
                vec![128, 256],
                random_bytes(64 * 1024, 1000 * i as u64 + v),
            )
        })
        .collect();
    safetensors(&t)
}

pub fn commit(r: &TestRepo, msg: &str) -> String {
    let v = r.json(&["commit", "-m", msg]);
    v[0]["version"].as_str().expect("committed").to_string()
}

pub fn count_objects(r: &TestRepo) -> usize {
    walk_files(&r.join(".shard/objects")).len()
}

/// The ids of every object in the local store.
pub fn object_ids(r: &TestRepo) -> Vec<String> {
    walk_files(&r.join(".shard/objects"))
        .iter()
        .map(|p| {
            let dir = p.parent().and_then(|d| d.file_name()).expect("fan-out dir");
            let name = p.file_name().expect("name");
            format!("{}{}", dir.to_string_lossy(), name.to_string_lossy())
        })
        .collect()
}

/// Where object `id` lives.
pub fn object_path(r: &TestRepo, id: &str) -> PathBuf {
    r.join(&format!(".shard/objects/{}/{}", &id[..2], &id[2..]))
}

pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
