//! Measures the object encoder and decoder on a safetensors file's data (or raw tensor bytes) cut into 4 MiB pieces:
//! `cargo run --release -p nshard-bench --example codec_probe -- FILE WIDTH` prints, per
//! encoding, the stored size and the encode and decode speed, beside SHA-256 of the same bytes.
mod common;

use common::{best_of, tensor_data};
use nshard_core::format::{decode_into, DataHint, DecodeScratch, Encoder};
use nshard_core::ObjectId;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("read");
    let w: u8 = args[2].parse().expect("w");
    let body = tensor_data(&data);
    let body = &body[..(256 << 20).min(body.len())];
    let gb = body.len() as f64 / 1e9;
    let sha = best_of(5, || {
        for c in body.chunks(4 << 20) {
            std::hint::black_box(ObjectId::of(c));
        }
    });
    println!("sha256: {:.2} GB/s", gb / sha);
    let mut enc = Encoder::new();
    for hint in [DataHint::Unknown, DataHint::Float(w)] {
        let mut objects = Vec::new();
        let t_enc = best_of(3, || {
            objects = body.chunks(4 << 20).map(|c| enc.encode(c, hint)).collect();
        });
        let tot: usize = objects.iter().map(Vec::len).sum();
        let ids: Vec<ObjectId> = body.chunks(4 << 20).map(ObjectId::of).collect();
        let mut out = Vec::new();
        let mut scratch = DecodeScratch::default();
        let t_dec = best_of(5, || {
            for (id, o) in ids.iter().zip(&objects) {
                decode_into(id, o, 1 << 30, &mut out, &mut scratch).expect("decodes");
            }
        });
        println!(
            "{hint:?}: {:.4} of raw, encode {:.2} GB/s ({:.2}x sha256), decode {:.2} GB/s ({:.2}x sha256)",
            tot as f64 / body.len() as f64,
            gb / t_enc,
            t_enc / sha,
            gb / t_dec,
            t_dec / sha,
        );
    }
}
