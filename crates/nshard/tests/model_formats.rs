//! Model files written by their formats' own writers (gguf-py, safetensors) and a PyTorch zip
//! checkpoint laid out as `torch.save` writes it, committed through the real binary: the tensor
//! table matches what the writers say, tensors are cut on their own, an edited tensor re-stores
//! only itself, and truncated files fall back to plain chunking with a clear reason.
//!
//! The writers run in a Python virtual environment with `gguf safetensors numpy`: the one named
//! by `NSHARD_TEST_PYTHON` (`.ci/run` creates it), else one created under the target directory
//! on first use. A missing Python or package fails the test; it never skips.

mod common;

use std::path::Path;
use std::process::Command;

use common::python::python;
use common::TestRepo;
use serde_json::Value;

const FILES: [&str; 3] = ["model.gguf", "model.safetensors", "model.pth"];

/// Writes the three model files (VARIANT 1 or 2) into `dir`; returns each writer's tensor list.
fn write_models(dir: &Path, variant: u32) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_formats/write_models.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir)
        .arg(variant.to_string())
        .output()
        .expect("running the writers");
    assert!(
        out.status.success(),
        "write_models.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("writer JSON")
}

fn small_chunks(repo: &TestRepo) {
    repo.write(
        ".shard/config.toml",
        b"track = []\n[chunking]\nalgorithm = \"fastcdc-2020\"\nmin_size = 65536\n\
          avg_size = 262144\nmax_size = 1048576\nlayout = \"tensor-aligned\"\n",
    );
}

fn manifest(repo: &TestRepo, rel: &str) -> Value {
    serde_json::from_slice(&repo.read(&format!("{rel}.shard.json"))).expect("manifest json")
}

/// (name, dtype, shape, offset, size) sorted by offset.
fn rows(tensors: &Value) -> Vec<(String, String, Value, u64, u64)> {
    let mut v: Vec<_> = tensors
        .as_array()
        .expect("tensor list")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["dtype"].as_str().expect("dtype").to_string(),
                t["shape"].clone(),
                t["offset"].as_u64().expect("offset"),
                t["size"].as_u64().expect("size"),
            )
        })
        .collect();
    v.sort_by_key(|r| r.3);
    v
}

#[test]
fn writers_files_get_exact_tensor_tables_and_aligned_chunks() {
    let repo = TestRepo::new();
    small_chunks(&repo);
    let expect = write_models(repo.path(), 1);
    let mut args = vec!["track"];
    args.extend(FILES);
    repo.ok(&args);
    repo.ok(&["commit", "-m", "v1"]);
    for f in FILES {
        let m = manifest(&repo, f);
        let data = repo.read(f);
        assert_eq!(m["chunking"]["layout"], "tensor-aligned", "{f}");
        let table = rows(&m["tensors"]);
        assert_eq!(table, rows(&expect[f]), "{f}: tensor table");
        let offsets: Vec<u64> = m["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|c| c["offset"].as_u64().expect("offset"))
            .collect();
        for (name, _, _, off, size) in &table {
            let bytes = &data[*off as usize..(*off + *size) as usize];
            let t = m["tensors"]
                .as_array()
                .expect("tensors")
                .iter()
                .find(|t| t["name"] == name.as_str())
                .expect("entry");
            // The SHA-256 of the bytes, or for a tensor cut into several chunks of its own, of
            // their ids.
            let want = if t["digest"] == "chunks" {
                let ids: Vec<u8> = m["chunks"]
                    .as_array()
                    .expect("chunks")
                    .iter()
                    .filter(|c| {
                        let o = c["offset"].as_u64().expect("o");
                        o >= *off && o < off + size
                    })
                    .flat_map(|c| {
                        let h = c["id"].as_str().expect("id").to_string();
                        (0..32).map(move |i| {
                            u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex")
                        })
                    })
                    .collect();
                nshard_core::ObjectId::of(&ids)
            } else {
                nshard_core::ObjectId::of(bytes)
            };
            assert_eq!(t["sha256"], want.to_hex().as_str(), "{f}: {name}");
            // Tensors of at least the minimum object size start a chunk of their own.
            if *size >= 65536 {
                assert!(offsets.contains(off), "{f}: {name} at {off}: {offsets:?}");
            }
        }
    }

    // v2 re-randomises one 512 KiB fp32 tensor: each file re-stores exactly that tensor.
    let expect2 = write_models(repo.path(), 2);
    let out = repo.json(&["commit", "-m", "v2"]);
    for (f, name) in [
        ("model.gguf", "blk.1.ffn"),
        ("model.safetensors", "ffn"),
        ("model.pth", "model.layer1.weight"),
    ] {
        let c = out
            .as_array()
            .expect("results")
            .iter()
            .find(|c| c["path"] == f)
            .expect("file result");
        let t = expect2[f]
            .as_array()
            .expect("tensors")
            .iter()
            .find(|t| t["name"] == name)
            .expect("changed tensor");
        assert_eq!(c["result"], "committed", "{f}: {c}");
        let (new, size) = (
            c["new_bytes"].as_u64().expect("n"),
            t["size"].as_u64().expect("s"),
        );
        if f == "model.pth" {
            // A zip records each entry's CRC-32 in its local header and in the central directory
            // at the end: those small records (and the small tensors grouped with them) change too.
            assert!(size <= new && new <= size + 8192, "{f}: {c}");
        } else {
            assert_eq!(new, size, "{f}: {c}");
        }
        let d = repo.json(&["diff", f, "--from", c["parent"].as_str().expect("p")]);
        let changed: Vec<&str> = d["tensors"]["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["name"].as_str().expect("name"))
            .collect();
        assert_eq!(changed, vec![name], "{f}: {d}");
    }
    let v = repo.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn truncated_files_are_chunked_plain_with_a_reason() {
    let repo = TestRepo::new();
    small_chunks(&repo);
    write_models(repo.path(), 1);
    let mut args = vec!["track"];
    for f in FILES {
        // Cut the file in the middle of its data: the header still parses but the tensors run
        // past the end (and for the zip, the central directory is gone).
        let data = repo.read(f);
        repo.write(f, &data[..data.len() / 2]);
        args.push(f);
    }
    repo.ok(&args);
    repo.ok(&["commit", "-m", "truncated"]);
    for f in FILES {
        let m = manifest(&repo, f);
        assert!(m.get("tensors").is_none(), "{f}: {m}");
        assert!(m["chunking"].get("layout").is_none(), "{f}: {m}");
        let data = repo.read(f);
        let mut v2 = data.clone();
        v2.extend_from_slice(b"more");
        repo.write(f, &v2);
        let d = repo.json(&["diff", f]);
        let why = d["tensors_unavailable"].as_str().expect("reason");
        let kind = match f {
            "model.gguf" => "GGUF",
            "model.pth" => "PyTorch zip",
            _ => "safetensors",
        };
        assert!(
            why.contains(&format!("not a valid {kind} file")),
            "{f}: {why}"
        );
        // Restore so that the files stay tracked and consistent.
        repo.write(f, &data);
    }
}

/// Writes the Transformer-like checkpoint of `write_torch_run.py` to `path` with the zip root
/// folder `root`; returns the size of the tensor VARIANT 2 changes.
fn write_torch_run(path: &Path, root: &str, variant: u32) -> u64 {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_formats/write_torch_run.py");
    let out = Command::new(python())
        .arg(script)
        .arg(path)
        .arg(root)
        .arg(variant.to_string())
        .output()
        .expect("running the writer");
    assert!(
        out.status.success(),
        "write_torch_run.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("size")
}

/// What a commit added to the store: the new chunks, plus the previous version's change of
/// encoding (deltas).
fn growth(c: &Value) -> u64 {
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}"));
    (n("stored_bytes") + n("delta_bytes_after")).saturating_sub(n("delta_bytes_before"))
}

/// torch names the zip's root folder after the file: a per-step checkpoint copied over the
/// tracked one differs from it in every entry's local header. Those headers are chunks of their
/// own, so the new version adds about what changed whether it was saved under the same name or
/// another one, with the default chunking.
#[test]
fn a_torch_checkpoint_saved_under_another_name_adds_only_what_changed() {
    let repo = TestRepo::new();
    let file = repo.join("model.pth");
    write_torch_run(&file, "model", 1);
    repo.ok(&["track", "model.pth"]);
    repo.ok(&["commit", "-m", "step 1000"]);
    let v1 = repo.read("model.pth");
    // Saved as ckpt1.pth (same name length) and copied over model.pth.
    let changed = write_torch_run(&file, "ckpt1", 2);
    let other_name = repo.read("model.pth");
    let c = repo.json(&["commit", "-m", "step 2000, saved under another name"]);
    let added = growth(&c[0]);
    assert!(
        added as f64 <= 1.5 * changed as f64,
        "added {added} bytes for a {changed}-byte tensor: {}",
        c[0]
    );
    // The next checkpoint saved under the same name as the last one: the same bound.
    write_torch_run(&file, "ckpt1", 3);
    let same_name = repo.read("model.pth");
    let c = repo.json(&["commit", "-m", "step 3000"]);
    let added = growth(&c[0]);
    assert!(added as f64 <= 1.5 * changed as f64, "{}", c[0]);
    // Every version checks out byte for byte.
    let log = repo.json(&["log", "model.pth"]);
    let ids: Vec<&str> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["version"].as_str().expect("version"))
        .collect();
    for (id, want) in ids.iter().zip([&same_name, &other_name, &v1]) {
        repo.ok(&["checkout", "model.pth", "--version", id, "--force"]);
        assert!(&repo.read("model.pth") == want, "version {id}");
    }
}
