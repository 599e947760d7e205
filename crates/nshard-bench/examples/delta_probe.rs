//! Measures delta objects on two versions of a safetensors file (or raw tensor bytes) cut into
//! 4 MiB pieces: `cargo run --release -p nshard-bench --example delta_probe -- OLD NEW WIDTH`
//! encodes each piece of OLD against the piece of NEW at the same place (as a repack does) and
//! prints the stored size and the decode speed (one chain level: the base's bytes turned into the
//! older version's in place), beside SHA-256 and a copy of the same bytes.
mod common;

use common::{best_of, tensor_data};
use nshard_core::format::{decode_against_in_place, encode_delta, DecodeScratch};
use nshard_core::ObjectId;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (old, new) = (
        std::fs::read(&args[1]).expect("old"),
        std::fs::read(&args[2]).expect("new"),
    );
    let w: u8 = args[3].parse().expect("width");
    let (old, new) = (tensor_data(&old), tensor_data(&new));
    let n = old.len().min(new.len()) / usize::from(w) * usize::from(w);
    let (old, new) = (&old[..n], &new[..n]);
    let gb = n as f64 / 1e9;
    let piece = 4 << 20;
    let sha = best_of(5, || {
        for c in old.chunks(piece) {
            std::hint::black_box(ObjectId::of(c));
        }
    });
    let mut raw = Vec::new();
    let copy = best_of(5, || {
        for c in new.chunks(piece) {
            raw.clear();
            raw.extend_from_slice(c);
            std::hint::black_box(&raw);
        }
    });
    let deltas: Vec<(ObjectId, Option<Vec<u8>>)> = old
        .chunks(piece)
        .zip(new.chunks(piece))
        .map(|(o, b)| (ObjectId::of(o), encode_delta(o, b, &ObjectId::of(b), w, 1)))
        .collect();
    let stored: usize = deltas
        .iter()
        .map(|(_, d)| d.as_ref().map_or(0, Vec::len))
        .sum();
    let mut scratch = DecodeScratch::default();
    let dec = best_of(9, || {
        for ((id, d), b) in deltas.iter().zip(new.chunks(piece)) {
            let Some(d) = d else { continue };
            raw.clear();
            raw.extend_from_slice(b);
            decode_against_in_place(id, d, &mut raw, 1 << 30, &mut scratch).expect("decodes");
        }
    });
    println!(
        "{} MiB, delta {:.4} of raw; sha256 {:.2} GB/s; decode a level (copy of the base included) {:.2} GB/s = {:.2}x sha256, {:.2} ns/element; copy alone {:.2}x sha256",
        n >> 20,
        stored as f64 / n as f64,
        gb / sha,
        gb / dec,
        dec / sha,
        dec * 1e9 / (n / usize::from(w)) as f64,
        copy / sha,
    );
}
