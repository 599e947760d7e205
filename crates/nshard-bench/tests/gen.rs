//! Runs the real `nshard-gen`: output is deterministic, parses as safetensors, and each mutation
//! changes what it says.

use std::path::Path;

use assert_cmd::Command;
use nshard_core::format::{parse_safetensors, Layout};

fn gen(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::cargo_bin("nshard-gen")
        .expect("built")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json summary")
}

fn layout(p: &Path) -> Layout {
    let b = std::fs::read(p).expect("read");
    parse_safetensors(&b[..], b.len() as u64).expect("valid safetensors")
}

#[test]
fn model_is_deterministic_and_mutations_change_what_they_say() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path();
    gen(
        p,
        &["model", "--size", "4MiB", "--dtype", "bf16", "-o", "a"],
    );
    gen(
        p,
        &["model", "--size", "4MiB", "--dtype", "bf16", "-o", "b"],
    );
    gen(
        p,
        &[
            "model", "--size", "4MiB", "--dtype", "bf16", "--seed", "9", "-o", "c",
        ],
    );
    let a = std::fs::read(p.join("a")).expect("a");
    assert_eq!(a, std::fs::read(p.join("b")).expect("b"));
    assert_ne!(a, std::fs::read(p.join("c")).expect("c"));
    let la = layout(&p.join("a"));
    assert!(la.tensors.iter().all(|t| t.dtype == "BF16"));
    assert!((3 << 20..5 << 20).contains(&a.len()), "{}", a.len());

    // low-rank q,v: exactly the q and v projections change, header and offsets stay.
    let s = gen(
        p,
        &[
            "mutate",
            "--kind",
            "low-rank:q,v",
            "--from",
            "a",
            "-o",
            "lr",
        ],
    );
    let lr = std::fs::read(p.join("lr")).expect("lr");
    assert_eq!(lr.len(), a.len());
    let mut changed = 0;
    for t in &la.tensors {
        let r = t.start as usize..t.end as usize;
        let differs = a[r.clone()] != lr[r];
        let qv = t.name.ends_with("q_proj.weight") || t.name.ends_with("v_proj.weight");
        assert_eq!(differs, qv, "{}", t.name);
        changed += differs as u64 * (t.end - t.start);
    }
    assert_eq!(s["changed_bytes"], changed);

    // metadata: same tensor bytes, every offset shifted.
    gen(
        p,
        &["mutate", "--kind", "metadata", "--from", "a", "-o", "m"],
    );
    let lm = layout(&p.join("m"));
    assert!(lm.header_len > la.header_len);
    let m = std::fs::read(p.join("m")).expect("m");
    for (x, y) in la.tensors.iter().zip(&lm.tensors) {
        assert_eq!(
            a[x.start as usize..x.end as usize],
            m[y.start as usize..y.end as usize]
        );
    }

    // last-layers:1 touches only the last layer.
    gen(
        p,
        &[
            "mutate",
            "--kind",
            "last-layers:1",
            "--from",
            "a",
            "-o",
            "ll",
        ],
    );
    let ll = std::fs::read(p.join("ll")).expect("ll");
    let last = la
        .tensors
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .expect("layers");
    for t in &la.tensors {
        let r = t.start as usize..t.end as usize;
        assert_eq!(
            a[r.clone()] != ll[r],
            t.name.starts_with(&format!("model.layers.{last}.")),
            "{}",
            t.name
        );
    }
    gen(
        p,
        &["mutate", "--kind", "add-tensor", "--from", "a", "-o", "at"],
    );
    assert_eq!(layout(&p.join("at")).tensors.len(), la.tensors.len() + 1);
}

#[test]
fn dataset_insert_and_append() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path();
    gen(
        p,
        &[
            "dataset", "--size", "200KiB", "--format", "jsonl", "-o", "d1",
        ],
    );
    let s = gen(
        p,
        &["mutate", "--kind", "insert:5%", "--from", "d1", "-o", "d2"],
    );
    let (d1, d2) = (
        std::fs::read(p.join("d1")).expect("d1"),
        std::fs::read(p.join("d2")).expect("d2"),
    );
    let added = s["changed_bytes"].as_u64().expect("n") as usize;
    assert_eq!(d2.len(), d1.len() + added);
    let pre = d1.iter().zip(&d2).take_while(|(x, y)| x == y).count();
    assert!(
        pre > d1.len() / 3 && pre < d1.len() * 2 / 3,
        "insert point {pre}"
    );
    assert_eq!(d1[pre..], d2[pre + added..]);
    gen(
        p,
        &["mutate", "--kind", "append:10%", "--from", "d1", "-o", "d3"],
    );
    let d3 = std::fs::read(p.join("d3")).expect("d3");
    assert!(d3.starts_with(&d1) && d3.len() > d1.len());
    let out = Command::cargo_bin("nshard-gen")
        .expect("built")
        .current_dir(p)
        .args(["mutate", "--kind", "bogus", "--from", "d1", "-o", "x"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
}
