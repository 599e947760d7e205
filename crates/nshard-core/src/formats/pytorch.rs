//! PyTorch checkpoints as `torch.save` writes them since PyTorch 1.6: a zip archive, stored (not
//! compressed), holding `<prefix>/data.pkl` (the pickled object, in which every tensor refers to
//! a storage by key) and one `<prefix>/data/<key>` entry per storage with the raw bytes, aligned.
//!
//! The storages are the tensors of the layout. Their names, dtypes and shapes come from
//! `data.pkl`, read with a minimal pickle reader that rebuilds its structure without executing
//! anything: the path of dict keys down to a tensor names its storage (`model.layer.weight`),
//! the storage class gives the dtype (`torch.BFloat16Storage` → `BF16`) and a tensor that spans
//! the whole storage gives the shape. When the pickle cannot be read, or a storage is not
//! referenced by it, the storage is named by its key (`data/0`) as raw bytes.

use std::collections::{HashMap, HashSet};

use super::pickle::{self, Idx, Pickle, Value};
use super::{zip, Format, FormatKind, Layout, ParseError, Source, Tensor};

/// Largest `data.pkl` read (the pickle of a large model's state dict is a few MiB).
pub const MAX_PICKLE: u64 = 64 << 20;
/// Deepest nesting followed when naming tensors.
const MAX_DEPTH: usize = 64;

/// The PyTorch zip checkpoint format.
pub struct PytorchZip;

impl Format for PytorchZip {
    fn kind(&self) -> FormatKind {
        FormatKind::PytorchZip
    }

    fn detect(&self, head: &[u8]) -> bool {
        head.starts_with(b"PK\x03\x04")
    }

    fn parse(&self, src: &mut dyn Source) -> Result<Layout, ParseError> {
        let size = src.size();
        let entries = zip::entries(src)?;
        let pkl = entries
            .iter()
            .find(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
            .ok_or_else(|| bad("a zip archive without data.pkl (not a PyTorch checkpoint)"))?;
        let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
        let data_prefix = format!("{prefix}data/");
        let storages = if pkl.method == 0 && pkl.size <= MAX_PICKLE {
            let (a, b) = zip::data_range(src, pkl)?;
            let bytes = super::read_vec(src, a, b - a)?;
            pickle::parse(&bytes)
                .map(|p| storages_of(&p))
                .unwrap_or_default()
        } else {
            HashMap::new()
        };
        let mut tensors = Vec::new();
        for e in &entries {
            let Some(key) = e.name.strip_prefix(&data_prefix) else {
                continue;
            };
            if e.method != 0 || key.is_empty() || key.contains('/') {
                // A compressed storage is not a byte range of the file: left to plain chunking.
                continue;
            }
            let (start, end) = zip::data_range(src, e)?;
            let len = end - start;
            let fallback = || Tensor {
                name: format!("data/{key}"),
                dtype: "U8".into(),
                shape: vec![len],
                start,
                end,
            };
            let t = match storages.get(key) {
                Some(s) => {
                    let elem = s.dtype.and_then(crate::formats::safetensors::dtype_size);
                    match elem {
                        Some(el) if s.numel.checked_mul(el) == Some(len) => Tensor {
                            name: s.name.clone(),
                            dtype: s.dtype.unwrap_or("U8").to_string(),
                            shape: s.shape.clone().unwrap_or_else(|| vec![s.numel]),
                            start,
                            end,
                        },
                        _ => Tensor {
                            name: s.name.clone(),
                            ..fallback()
                        },
                    }
                }
                None => fallback(),
            };
            tensors.push(t);
        }
        if tensors.is_empty() && !entries.iter().any(|e| e.name.starts_with(&data_prefix)) {
            return Err(bad("no data/ entries (not a PyTorch checkpoint)"));
        }
        let header_len = tensors.iter().map(|t| t.start).min().unwrap_or(size);
        dedup_names(&mut tensors);
        Layout {
            kind: FormatKind::PytorchZip,
            header_len,
            tensors,
        }
        .checked(size)
    }
}

fn bad(why: impl Into<String>) -> ParseError {
    ParseError::Invalid(why.into())
}

/// What `data.pkl` says about one storage.
#[derive(Debug, Clone)]
struct StorageInfo {
    /// The first tensor found using it.
    name: String,
    dtype: Option<&'static str>,
    numel: u64,
    /// The shape of a tensor that spans the whole storage.
    shape: Option<Vec<u64>>,
}

/// The safetensors dtype of a PyTorch storage class.
fn storage_dtype(class: &str) -> Option<&'static str> {
    Some(match class {
        "FloatStorage" => "F32",
        "DoubleStorage" => "F64",
        "HalfStorage" => "F16",
        "BFloat16Storage" => "BF16",
        "LongStorage" => "I64",
        "IntStorage" => "I32",
        "ShortStorage" => "I16",
        "CharStorage" => "I8",
        "ByteStorage" | "UntypedStorage" => "U8",
        "BoolStorage" => "BOOL",
        _ => return None,
    })
}

/// Walks the pickle from the top, naming each storage after the dict keys leading to the first
/// tensor that uses it.
fn storages_of(p: &Pickle) -> HashMap<String, StorageInfo> {
    let mut out = HashMap::new();
    let mut seen = HashSet::new();
    walk(p, p.top, Some(String::new()), 0, &mut seen, &mut out);
    out
}

/// Longest tensor name built from the pickle (the manifest's limit on tensor names).
const MAX_NAME: usize = 1024;

/// The dotted name of `key` under `path`; `None` once it would be longer than any tensor name a
/// manifest accepts (a hostile pickle can nest a long memoised key many levels deep: building
/// every level's name took gigabytes). Such a tensor is named after its storage key instead.
fn join(path: Option<&str>, key: &str) -> Option<String> {
    let path = path?;
    if path.len() + 1 + key.len() > MAX_NAME {
        return None;
    }
    Some(if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    })
}

fn walk(
    p: &Pickle,
    i: Idx,
    path: Option<String>,
    depth: usize,
    seen: &mut HashSet<Idx>,
    out: &mut HashMap<String, StorageInfo>,
) {
    if depth > MAX_DEPTH || !seen.insert(i) {
        return;
    }
    match p.get(i) {
        Value::Dict(items) => walk_items(p, items, path.as_deref(), depth, seen, out),
        Value::List(v) | Value::Tuple(v) => {
            for (n, &c) in v.iter().enumerate() {
                walk(
                    p,
                    c,
                    join(path.as_deref(), &n.to_string()),
                    depth + 1,
                    seen,
                    out,
                );
            }
        }
        Value::Call {
            callable,
            args,
            items,
            state,
        } => {
            if let Some(info) = tensor_of(p, *callable, *args, path.as_deref()) {
                out.entry(info.0).or_insert(info.1);
                return;
            }
            walk(p, *args, path.clone(), depth + 1, seen, out);
            walk_items(p, items, path.as_deref(), depth, seen, out);
            if let Some(s) = state {
                walk(p, *s, path, depth + 1, seen, out);
            }
        }
        _ => {}
    }
}

fn walk_items(
    p: &Pickle,
    items: &[(Idx, Idx)],
    path: Option<&str>,
    depth: usize,
    seen: &mut HashSet<Idx>,
    out: &mut HashMap<String, StorageInfo>,
) {
    for &(k, v) in items {
        let child = match p.get(k) {
            Value::Str(s) => join(path, s),
            Value::Int(n) => join(path, &n.to_string()),
            _ => continue,
        };
        walk(p, v, child, depth + 1, seen, out);
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` whose storage is a
/// persistent id `('storage', class, key, location, numel)`: (key, what it says).
fn tensor_of(
    p: &Pickle,
    callable: Idx,
    args: Idx,
    path: Option<&str>,
) -> Option<(String, StorageInfo)> {
    let Value::Global(module, name) = p.get(callable) else {
        return None;
    };
    if module != "torch._utils" || !name.starts_with("_rebuild_tensor") {
        return None;
    }
    let Value::Tuple(a) = p.get(args) else {
        return None;
    };
    let Value::PersId(pid) = p.get(*a.first()?) else {
        return None;
    };
    let Value::Tuple(pid) = p.get(*pid) else {
        return None;
    };
    if pid.len() < 5 || p.str(pid[0]) != Some("storage") {
        return None;
    }
    let dtype = match p.get(pid[1]) {
        Value::Global(_, class) => storage_dtype(class),
        _ => None,
    };
    let key = p.str(pid[2])?.to_string();
    let Value::Int(numel) = *p.get(pid[4]) else {
        return None;
    };
    let numel = u64::try_from(numel).ok()?;
    let offset = match a.get(1).map(|&o| p.get(o)) {
        Some(Value::Int(o)) => *o,
        _ => -1,
    };
    let shape = match a.get(2).map(|&s| p.get(s)) {
        Some(Value::Tuple(dims)) => dims
            .iter()
            .map(|&d| match p.get(d) {
                Value::Int(n) => u64::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>(),
        _ => None,
    };
    let whole = shape.filter(|s| {
        offset == 0 && s.iter().try_fold(1u64, |x, &d| x.checked_mul(d)) == Some(numel)
    });
    let name = match path {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!("data/{key}"),
    };
    Some((
        key,
        StorageInfo {
            name,
            dtype,
            numel,
            shape: whole,
        },
    ))
}

/// Names must be unique in a tensor table: a repeated one gets its storage key appended.
fn dedup_names(tensors: &mut [Tensor]) {
    let mut seen = HashSet::new();
    for t in tensors.iter_mut() {
        if !seen.insert(t.name.clone()) {
            t.name = format!("{} (storage {})", t.name, t.start);
            seen.insert(t.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::zip::tests::stored_zip;

    /// The pickle `torch.save({"layer.weight": t0, "layer.bias": t1})` writes (protocol 2) for a
    /// bf16 [4, 8] tensor in storage "0" and an f32 [8] tensor in storage "1".
    fn state_dict_pickle() -> Vec<u8> {
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(".to_vec();
        for (name, class, key, numel, shape) in [
            ("layer.weight", "BFloat16Storage", "0", 32u8, &[4u8, 8][..]),
            ("layer.bias", "FloatStorage", "1", 8, &[8][..]),
        ] {
            p.extend_from_slice(b"X");
            p.extend_from_slice(&(name.len() as u32).to_le_bytes());
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\n");
            p.extend_from_slice(class.as_bytes());
            p.extend_from_slice(b"\nX\x01\x00\x00\x00");
            p.extend_from_slice(key.as_bytes());
            p.extend_from_slice(b"X\x03\x00\x00\x00cpuK");
            p.push(numel);
            p.extend_from_slice(b"tQK\x00(");
            for d in shape {
                p.extend_from_slice(&[b'K', *d]);
            }
            p.extend_from_slice(b"t(K\x01t\x89ccollections\nOrderedDict\n)RtR");
        }
        p.extend_from_slice(b"u.");
        p
    }

    #[test]
    fn names_dtypes_and_shapes_from_the_pickle() {
        let pkl = state_dict_pickle();
        let w = [1u8; 64];
        let b = [2u8; 32];
        let z = stored_zip(
            &[
                ("ckpt/data.pkl", &pkl),
                ("ckpt/byteorder", b"little"),
                ("ckpt/data/0", &w),
                ("ckpt/data/1", &b),
                ("ckpt/version", b"3\n"),
            ],
            64,
        );
        let l = PytorchZip.parse(&mut &z[..]).expect("valid");
        let got: Vec<(&str, &str, Vec<u64>, u64)> = l
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.dtype.as_str(),
                    t.shape.clone(),
                    t.end - t.start,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("layer.weight", "BF16", vec![4, 8], 64),
                ("layer.bias", "F32", vec![8], 32),
            ]
        );
        assert_eq!(&z[l.tensors[0].start as usize..][..64], &w);
        assert_eq!(l.tensors[0].start % 64, 0);
        assert_eq!(l.header_len, l.tensors[0].start);

        // An unreadable pickle: storages named by key, raw bytes.
        let z = stored_zip(
            &[("ckpt/data.pkl", b"\x80\x02\xfe"), ("ckpt/data/0", &w)],
            64,
        );
        let l = PytorchZip.parse(&mut &z[..]).expect("valid");
        assert_eq!(l.tensors[0].name, "data/0");
        assert_eq!(l.tensors[0].dtype, "U8");
        assert_eq!(l.tensors[0].shape, vec![64]);

        // Not a checkpoint: no data.pkl.
        let z = stored_zip(&[("a.txt", b"hi")], 1);
        assert!(PytorchZip.parse(&mut &z[..]).is_err());
    }
}
