//! A checkpoint series for tests: bf16 safetensors files of one "training run", where every
//! step moves each weight by a small relative amount (most bf16 values stay the same), as
//! checkpoints of a real run do.

/// A deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        (0..6).map(|_| self.unit()).sum::<f32>() - 3.0
    }
}

/// Two weights and two small biases; the second weight (under 1 MiB) and the biases are grouped
/// into one chunk.
pub const TENSORS: [(&str, usize); 4] = [
    ("layers.0.weight", 700_000),
    ("layers.1.weight", 500_000),
    ("layers.0.bias", 30_000),
    ("layers.1.bias", 30_000),
];

fn bf16(x: f32) -> [u8; 2] {
    let b = x.to_bits();
    ((b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16).to_le_bytes()
}

/// `count` checkpoints of one "training run" as bf16 safetensors files: weights ~ N(0, 0.02), and
/// every step moves each weight by a small relative amount (most bf16 values stay the same).
pub fn series(count: usize) -> Vec<Vec<u8>> {
    series_of(count, &TENSORS)
}

/// Like [`series`], with these tensors (name, element count), in this order.
pub fn series_of(count: usize, tensors: &[(&str, usize)]) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut w: Vec<Vec<f32>> = tensors
        .iter()
        .map(|(_, n)| (0..*n).map(|_| 0.02 * rng.normal()).collect())
        .collect();
    let mut out = Vec::new();
    for _ in 0..count {
        let mut header = String::from("{");
        let mut off = 0;
        for (k, (name, n)) in tensors.iter().enumerate() {
            if k > 0 {
                header.push(',');
            }
            header.push_str(&format!(
                "\"{name}\":{{\"dtype\":\"BF16\",\"shape\":[{n}],\"data_offsets\":[{off},{}]}}",
                off + 2 * n
            ));
            off += 2 * n;
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        for t in &w {
            for &x in t {
                file.extend_from_slice(&bf16(x));
            }
        }
        out.push(file);
        for t in &mut w {
            for x in t.iter_mut() {
                *x *= 1.0 + 0.004 * rng.normal();
            }
        }
    }
    out
}
