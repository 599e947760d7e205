//! Measures the object encoder on a safetensors file's data cut into 4 MiB pieces.
use std::time::Instant;

use nshard_core::format::{DataHint, Encoder};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("read");
    let w: u8 = args[2].parse().expect("w");
    let hl = u64::from_le_bytes(data[..8].try_into().expect("8")) as usize + 8;
    let body = &data[hl..hl + (256 << 20).min(data.len() - hl)];
    let mut enc = Encoder::new();
    for hint in [DataHint::Unknown, DataHint::Float(w)] {
        let mut best = f64::MAX;
        let mut tot = 0;
        for _ in 0..3 {
            let t = Instant::now();
            tot = 0;
            for c in body.chunks(4 << 20) {
                tot += enc.encode(c, hint).len();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{hint:?}: {:.3} of raw at {:.2} GB/s",
            tot as f64 / body.len() as f64,
            body.len() as f64 / 1e9 / best
        );
    }
}
