//! Seeded randomness: xorshift64* plus a table of normal samples, fast enough to fill a GiB in about
//! a second.

/// xorshift64* (Vigna): tiny, fast, the same on every platform.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(splitmix(seed) | 1)
    }

    /// A generator for a named stream under `seed` (each tensor gets its own).
    pub fn named(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, mixed with the seed.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(seed ^ splitmix(h))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 65,536 samples of a standard normal (Box–Muller, fixed seed); values are drawn by a random
/// 16-bit index. fp32 values get their 15 low mantissa bits randomised on top, so that their low
/// bytes carry full entropy as real trained weights do.
pub struct NormalTable {
    f32s: Vec<f32>,
}

impl NormalTable {
    /// Builds the table.
    pub fn new() -> Self {
        let mut r = Rng::new(0x6e6f_726d);
        let mut f32s = Vec::with_capacity(1 << 16);
        while f32s.len() < 1 << 16 {
            let u1 = r.unit().max(1e-300);
            let u2 = r.unit();
            let m = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            f32s.push((m * a.cos()) as f32);
            f32s.push((m * a.sin()) as f32);
        }
        Self { f32s }
    }

    /// A standard normal sample from 16 random bits.
    #[inline]
    pub fn sample(&self, bits16: u64) -> f32 {
        self.f32s[(bits16 & 0xffff) as usize]
    }

    /// Fills `out` with little-endian values `mean + std * N(0, 1)` of the given dtype.
    pub fn fill(&self, rng: &mut Rng, dtype: Dtype, mean: f32, std: f32, out: &mut [u8]) {
        match dtype {
            Dtype::Bf16 => {
                for c in out.chunks_mut(8) {
                    let mut r = rng.next_u64();
                    for e in c.chunks_exact_mut(2) {
                        let v = mean + std * self.sample(r);
                        e.copy_from_slice(&to_bf16(v).to_le_bytes());
                        r >>= 16;
                    }
                }
            }
            Dtype::F32 => {
                for c in out.chunks_mut(8) {
                    let mut r = rng.next_u64();
                    for e in c.chunks_exact_mut(4) {
                        let v = mean + std * self.sample(r);
                        let bits = v.to_bits() ^ ((r >> 16) as u32 & 0x7fff);
                        e.copy_from_slice(&bits.to_le_bytes());
                        r >>= 32;
                    }
                }
            }
        }
    }
}

/// Element types the generator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// bfloat16.
    Bf16,
    /// IEEE float32.
    F32,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bf16 => 2,
            Dtype::F32 => 4,
        }
    }

    /// The safetensors dtype name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bf16 => "BF16",
            Dtype::F32 => "F32",
        }
    }

    /// From a safetensors dtype name.
    pub fn from_name(s: &str) -> Option<Dtype> {
        match s {
            "BF16" => Some(Dtype::Bf16),
            "F32" => Some(Dtype::F32),
            _ => None,
        }
    }

    /// Reads element `i` of `bytes` as f32.
    #[inline]
    pub fn get(self, bytes: &[u8], i: usize) -> f32 {
        match self {
            Dtype::Bf16 => {
                f32::from_bits((u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32) << 16)
            }
            Dtype::F32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
        }
    }

    /// Writes element `i` of `bytes` from an f32 (bf16: round to nearest even).
    #[inline]
    pub fn set(self, bytes: &mut [u8], i: usize, v: f32) {
        match self {
            Dtype::Bf16 => bytes[2 * i..2 * i + 2].copy_from_slice(&to_bf16(v).to_le_bytes()),
            Dtype::F32 => bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }
}

/// f32 → bf16, round to nearest even (finite inputs).
#[inline]
pub fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    ((b.wrapping_add(0x7fff + ((b >> 16) & 1))) >> 16) as u16
}
