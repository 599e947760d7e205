//! Memory bounded by the input on hostile model files (issue 26, case 6): committing one peaks at
//! no more than 4 times the file's size plus 64 MiB. Each commit runs in the failpoint build and
//! stops once every chunk is stored (`commit-before-manifest`), after the file was parsed, cut and
//! read; its peak resident memory so far (`VmHWM`) is read there, then it is killed. Linux only.

mod common;

use std::path::Path;

use common::failpoints::{spawn_at, wait_at_point};
use common::TestRepo;

/// The peak resident memory of a running process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Tracks `name` (written by `write`) and commits it up to the crash point; returns the peak RSS
/// and the file's size.
fn commit_peak(name: &str, data: &[u8]) -> (u64, u64) {
    let repo = TestRepo::new();
    repo.write(name, data);
    repo.ok(&["track", name]);
    let (mut child, lines) = spawn_at(
        repo.path(),
        &["commit", "-m", "hostile"],
        "commit-before-manifest",
    );
    wait_at_point(&mut child, &lines, &format!("commit of {name}"));
    let peak = peak_rss(child.id());
    child.kill().expect("kill");
    child.wait().expect("reap");
    (peak, data.len() as u64)
}

fn assert_bounded(what: &str, (peak, size): (u64, u64)) {
    let bound = 4 * size + (64 << 20);
    eprintln!(
        "{what}: peak {} MiB for a {} MiB file",
        peak >> 20,
        size >> 20
    );
    assert!(
        peak <= bound,
        "{what}: peak RSS {} MiB over 4 x {} MiB + 64 MiB",
        peak >> 20,
        size >> 20
    );
}

/// A safetensors file whose ~99 MB header is mostly tiny metadata values, then one tensor.
fn safetensors_tiny_values() -> Vec<u8> {
    let mut h = String::with_capacity(99_000_000);
    h.push_str("{\"__metadata__\":{");
    let mut i = 0u64;
    while h.len() < 98_900_000 {
        if i > 0 {
            h.push(',');
        }
        h.push_str(&format!("\"{i}\":\"\""));
        i += 1;
    }
    h.push_str("},\"w\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]}}");
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut f = (h.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(h.as_bytes());
    f.extend_from_slice(&[7u8; 16]);
    f
}

/// A stored zip of `entries` (CRCs zero: nothing reads them).
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let off = out.len() as u32;
        let len = (data.len() as u32).to_le_bytes();
        let nlen = (name.len() as u16).to_le_bytes();
        out.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&len);
        out.extend_from_slice(&len);
        out.extend_from_slice(&nlen);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0\0\0\0\0");
        central.extend_from_slice(&len);
        central.extend_from_slice(&len);
        central.extend_from_slice(&nlen);
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    let n = (entries.len() as u16).to_le_bytes();
    out.extend_from_slice(&n);
    out.extend_from_slice(&n);
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A PyTorch zip whose pickle memoises one 1 MiB string and uses it as the key of 71 nested
/// dicts (each level's dotted name would be a megabyte longer than the last).
fn pth_nested_memo() -> Vec<u8> {
    let key = vec![b'k'; 1 << 20];
    let mut p = vec![0x80, 2, b'}'];
    p.push(b'X');
    p.extend_from_slice(&(key.len() as u32).to_le_bytes());
    p.extend_from_slice(&key);
    p.extend_from_slice(b"q\x00");
    for _ in 0..70 {
        p.push(b'}');
        p.extend_from_slice(b"h\x00");
    }
    p.push(b'N');
    p.extend(std::iter::repeat_n(b's', 71));
    p.push(b'.');
    stored_zip(&[("archive/data.pkl", &p), ("archive/data/0", &[1u8; 64])])
}

#[test]
fn hostile_model_files_commit_in_memory_bounded_by_their_size() {
    if !Path::new("/proc/self/status").exists() {
        panic!("this test reads /proc (Linux)");
    }
    assert_bounded(
        "safetensors, 99 MB header of tiny values",
        commit_peak("model.safetensors", &safetensors_tiny_values()),
    );
    assert_bounded(
        "PyTorch zip, a 1 MiB key nested 71 levels deep",
        commit_peak("model.pth", &pth_nested_memo()),
    );
}
