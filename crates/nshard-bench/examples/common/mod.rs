//! Helpers the codec probes share.
use std::time::Instant;

/// The fastest of `runs` runs of `f`, in seconds.
pub fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// A safetensors file's tensor data, or the whole file (raw tensor bytes).
pub fn tensor_data(data: &[u8]) -> &[u8] {
    let hl = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|h| h.checked_add(8))
        .filter(|&h| h < data.len() as u64 && data.get(8) == Some(&b'{'))
        .map_or(0, |h| h as usize);
    &data[hl..]
}
