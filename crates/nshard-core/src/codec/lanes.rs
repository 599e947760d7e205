//! Static order-0 rANS over four lanes, each with a word stream of its own: the coder of a float
//! object's skewed planes (see the `floats` module).
//!
//! Symbol `i` of a plane is coded by lane `i % 4`. A lane's state refills from its own stream of
//! 16-bit words, so the four lanes are independent chains of table lookups, multiplications and
//! refills that a CPU runs side by side, each state and read position in a register of its own
//! (eight lanes measured slower: their states no longer fit in registers). Frequencies are 12-bit
//! and an absent symbol gets none, so a plane costs within about 0.2 % of its order-0 entropy;
//! the encoder multiplies by reciprocals instead of dividing.
//!
//! ```text
//! byte          m, the largest symbol
//! varint × m+1  frequency of each symbol 0..=m (they sum to 4096; 0 for an absent symbol)
//! u32 LE × 4    each lane's state when decoding starts, in [2^15, 2^31)
//! varint × 4    the number of 16-bit words in each lane's stream
//! u16 LE × ..   the words, lane 0's stream first; each stream is read front to back
//! ```
//!
//! Decoding a symbol: `slot = x mod 4096`, the symbol `s` whose cumulative range holds `slot`,
//! `x = f[s] · (x >> 12) + slot − cum[s]`; a state below 2^15 then takes the next word of its
//! lane (`x = x << 16 | word`). Every lane ends at 2^15 with its stream used up exactly.

use super::delta::{put_varint, settle, Reader};

/// Lanes (independent states with a stream each).
pub(super) const LANES: usize = 4;
const PRECISION: u32 = 12;
const TOTAL: u32 = 1 << PRECISION;
const MASK: u32 = TOTAL - 1;
/// The lower bound of a state: states live in `[L, L << 16)`, below 2^31, where the encoder's
/// reciprocals divide exactly.
const L: u32 = 1 << 15;
/// Groups of [`LANES`] symbols decoded between two checks of the lanes' read positions.
const BLOCK: usize = 64;

/// Frequencies of `counts` normalised to [`TOTAL`]: every symbol that occurs gets at least 1,
/// absent ones 0. Returns the largest symbol present (0 for an empty plane, coded as symbol 0
/// with all the frequency).
fn normalise(counts: &[u32; 256], f: &mut [u32; 256]) -> usize {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let max = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    *f = [0; 256];
    if total == 0 || counts[max] as u64 == total {
        f[max] = TOTAL;
        return max;
    }
    let mut sum = 0i64;
    for s in 0..=max {
        if counts[s] > 0 {
            let v = ((u64::from(counts[s]) * u64::from(TOTAL) + total / 2) / total).max(1);
            f[s] = v as u32;
            sum += v as i64;
        }
    }
    settle(f, counts, max, i64::from(TOTAL) - sum);
    max
}

/// What the encoder needs of one symbol: `x / f` as a multiplication by a reciprocal and a
/// shift, exact for every `x < 2^31` (the method of F. Giesen's `ryg_rans`).
#[derive(Clone, Copy, Default)]
struct EncSym {
    /// A state at or above this is renormalised (one word out) before the symbol goes in.
    x_max: u32,
    rcp: u32,
    shift: u32,
    bias: u32,
    cmpl: u32,
}

impl EncSym {
    fn new(cum: u32, f: u32) -> Self {
        let x_max = ((L >> PRECISION) << 16) * f;
        let cmpl = TOTAL - f;
        if f == 1 {
            // x / 1 = x: with rcp = 2^32 − 1 and no shift the product gives x − 1, which the
            // bias makes up.
            return Self {
                x_max,
                rcp: u32::MAX,
                shift: 0,
                bias: cum + TOTAL - 1,
                cmpl,
            };
        }
        let shift = 32 - (f - 1).leading_zeros(); // ceil(log2 f)
        let rcp = (1u64 << (shift + 31)).div_ceil(u64::from(f));
        Self {
            x_max,
            rcp: rcp as u32,
            shift: shift - 1,
            bias: cum,
            cmpl,
        }
    }

    /// `x` with this symbol coded into it (`x` already renormalised: below `x_max`).
    #[inline(always)]
    fn put(&self, x: u32) -> u32 {
        let q = ((u64::from(x) * u64::from(self.rcp)) >> 32) as u32 >> self.shift;
        x + self.bias + q * self.cmpl
    }
}

/// The size in bytes that [`LaneEncoder::encode`] would give `plane`, estimated from its symbol
/// counts (the entropy under the normalised table, plus the table, states and lengths).
pub(super) fn estimate(counts: &[u32; 256]) -> f64 {
    let mut f = [0u32; 256];
    let max = normalise(counts, &mut f);
    let bits: f64 = (0..=max)
        .filter(|&s| counts[s] > 0)
        .map(|s| f64::from(counts[s]) * (f64::from(PRECISION) - f64::from(f[s]).log2()))
        .sum();
    bits / 8.0 + (max + 1) as f64 * 1.5 + (LANES * 6) as f64
}

/// Symbol counts of `plane` (four partial histograms, so that runs of one symbol do not wait on
/// their own increments).
pub(super) fn histogram(plane: &[u8]) -> [u32; 256] {
    let mut h = [[0u32; 256]; 4];
    let mut quads = plane.chunks_exact(4);
    for q in &mut quads {
        h[0][usize::from(q[0])] += 1;
        h[1][usize::from(q[1])] += 1;
        h[2][usize::from(q[2])] += 1;
        h[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        h[0][usize::from(b)] += 1;
    }
    let mut out = [0u32; 256];
    for (s, o) in out.iter_mut().enumerate() {
        *o = h[0][s] + h[1][s] + h[2][s] + h[3][s];
    }
    out
}

/// The encoder's lane streams, kept from plane to plane.
#[derive(Default)]
pub(super) struct LaneEncoder {
    streams: [Vec<u16>; LANES],
}

impl LaneEncoder {
    /// Appends `plane` coded as described in the module documentation to `out`; `counts` is its
    /// [`histogram`].
    pub(super) fn encode(&mut self, plane: &[u8], counts: &[u32; 256], out: &mut Vec<u8>) {
        let mut f = [0u32; 256];
        let max = normalise(counts, &mut f);
        let mut syms = [EncSym::default(); 256];
        let mut cum = 0u32;
        for s in 0..=max {
            if f[s] > 0 {
                syms[s] = EncSym::new(cum, f[s]);
                cum += f[s];
            }
        }
        for s in &mut self.streams {
            s.clear();
            s.reserve(plane.len() / LANES / 4 + 16);
        }
        let mut x = [L; LANES];
        let streams = &mut self.streams;
        let mut put = |j: usize, x: &mut u32, s: u8| {
            let e = &syms[usize::from(s)];
            if *x >= e.x_max {
                streams[j].push(*x as u16);
                *x >>= 16;
            }
            *x = e.put(*x);
        };
        // Backwards: the tail first (its symbols are the last each lane decodes), then whole
        // groups of four.
        let full = plane.len() / LANES * LANES;
        for (j, &s) in plane[full..].iter().enumerate().rev() {
            put(j, &mut x[j], s);
        }
        for group in plane[..full].chunks_exact(LANES).rev() {
            for j in (0..LANES).rev() {
                put(j, &mut x[j], group[j]);
            }
        }
        out.push(max as u8);
        for &fs in &f[..=max] {
            put_varint(out, u64::from(fs));
        }
        for s in x {
            out.extend_from_slice(&s.to_le_bytes());
        }
        for s in &self.streams {
            put_varint(out, s.len() as u64);
        }
        for s in &self.streams {
            for &w in s.iter().rev() {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
}

/// Decodes a lanes-coded plane (`coded`, exactly its bytes) of `out.len()` symbols into `out`,
/// with the decoding table in `lut` and the words in `words` (both reused). Errors describe what
/// is malformed; everything read is checked.
pub(super) fn decode(
    coded: &[u8],
    out: &mut [u8],
    lut: &mut Vec<u32>,
    words: &mut Vec<u16>,
) -> Result<(), String> {
    let mut r = Reader { b: coded, pos: 0 };
    let max = usize::from(r.byte()?);
    lut.clear();
    lut.resize(TOTAL as usize, 0);
    let mut cum = 0u32;
    let mut only = None;
    for s in 0..=max {
        let f = r.varint()?;
        if f > u64::from(TOTAL - cum) {
            return Err("frequencies sum to more than 4096".into());
        }
        let f = f as u32;
        if f == TOTAL {
            only = Some(s as u8);
        }
        // Each slot: the symbol, its frequency and the slot's offset in the symbol's range (a
        // symbol with all the frequency is decoded apart, below, so both fit in 12 bits).
        for (k, slot) in lut[cum as usize..(cum + f) as usize].iter_mut().enumerate() {
            *slot = s as u32 | (f & MASK) << 8 | (k as u32) << 20;
        }
        cum += f;
    }
    if cum != TOTAL {
        return Err(format!("frequencies sum to {cum}, not 4096"));
    }
    let mut x = [0u32; LANES];
    for s in x.iter_mut() {
        let b = r.take(4)?;
        *s = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !(L..L << 16).contains(s) {
            return Err(format!("a lane state {s:#x} is out of range"));
        }
    }
    let mut start = [0usize; LANES];
    let mut end = [0usize; LANES];
    let mut total = 0usize;
    for (s, e) in start.iter_mut().zip(&mut end) {
        let n = r.varint()?;
        *s = total;
        total = usize::try_from(n)
            .ok()
            .and_then(|n| total.checked_add(n))
            .filter(|&t| t <= coded.len() / 2)
            .ok_or("a lane stream runs past the end")?;
        *e = total;
    }
    let bytes = r.take(total * 2)?;
    if r.pos != coded.len() {
        return Err("bytes after the last lane stream".into());
    }
    if let Some(sym) = only {
        // One symbol: no lane ever moves or reads a word.
        out.fill(sym);
        return if total == 0 && x == [L; LANES] {
            Ok(())
        } else {
            Err("coded plane of one symbol has words or moved states".into())
        };
    }
    words.clear();
    words.extend(
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]])),
    );
    // Padding: between two checks of the read positions (every BLOCK groups) a lane reads at
    // most BLOCK words, so no read runs past the end whatever a hostile stream says.
    words.resize(total + BLOCK + 1, 0);
    let words = words.as_slice();
    let lut: &[u32; TOTAL as usize] = lut
        .as_slice()
        .try_into()
        .map_err(|_| "decoding table of the wrong size".to_string())?;
    // Each lane's state and read position in locals of their own (in registers: kept in arrays,
    // every step would wait on a store and a reload of the state).
    let [mut x0, mut x1, mut x2, mut x3] = x;
    let [mut p0, mut p1, mut p2, mut p3] = start;
    macro_rules! step {
        ($x:ident, $p:ident, $o:expr) => {{
            let e = lut[($x & MASK) as usize];
            *$o = e as u8;
            let v = (e >> 8 & MASK) * ($x >> PRECISION) + (e >> 20);
            let need = u32::from(v < L);
            let w = u32::from(words[$p]);
            $x = (v << (need << 4)) | (w & need.wrapping_neg());
            $p += need as usize;
        }};
    }
    let mut blocks = out.chunks_exact_mut(LANES * BLOCK);
    for block in &mut blocks {
        if p0 > end[0] || p1 > end[1] || p2 > end[2] || p3 > end[3] {
            return Err("a lane reads past its stream".into());
        }
        for o in block.chunks_exact_mut(LANES) {
            step!(x0, p0, &mut o[0]);
            step!(x1, p1, &mut o[1]);
            step!(x2, p2, &mut o[2]);
            step!(x3, p3, &mut o[3]);
        }
    }
    if p0 > end[0] || p1 > end[1] || p2 > end[2] || p3 > end[3] {
        return Err("a lane reads past its stream".into());
    }
    let mut groups = blocks.into_remainder().chunks_exact_mut(LANES);
    for o in &mut groups {
        step!(x0, p0, &mut o[0]);
        step!(x1, p1, &mut o[1]);
        step!(x2, p2, &mut o[2]);
        step!(x3, p3, &mut o[3]);
    }
    let rest = groups.into_remainder();
    if let Some(o) = rest.get_mut(0) {
        step!(x0, p0, o);
    }
    if let Some(o) = rest.get_mut(1) {
        step!(x1, p1, o);
    }
    if let Some(o) = rest.get_mut(2) {
        step!(x2, p2, o);
    }
    let (x, p) = ([x0, x1, x2, x3], [p0, p1, p2, p3]);
    if p != end || x != [L; LANES] {
        return Err("coded plane does not end where its symbols do".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(plane: &[u8]) -> Vec<u8> {
        let mut enc = LaneEncoder::default();
        let mut coded = Vec::new();
        enc.encode(plane, &histogram(plane), &mut coded);
        let mut out = vec![0xAA; plane.len()];
        let (mut lut, mut words) = (Vec::new(), Vec::new());
        decode(&coded, &mut out, &mut lut, &mut words).expect("decodes");
        assert_eq!(out, plane);
        coded
    }

    /// A plane like a bf16 exponent plane: a few values around 120, skewed.
    fn exponents(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let r = (s >> 40) as u32 & 0xFFFF;
                (122 - (r.trailing_ones() + (r >> 14)).min(30)) as u8
            })
            .collect()
    }

    #[test]
    fn every_reciprocal_divides_exactly() {
        for f in 1..=TOTAL {
            let e = EncSym::new(0, f);
            // States the encoder puts a symbol into: renormalised, so in [8 f, x_max).
            let top = e.x_max - 1;
            for x in [
                8 * f,
                8 * f + 1,
                L,
                L + 1,
                top,
                top - 1,
                top / f * f,
                top / f * f - 1,
            ]
            .into_iter()
            .chain((1..64u64).map(|k| 8 * f + (k * u64::from(top - 8 * f) / 64) as u32))
            {
                let want = (x / f) * TOTAL + x % f;
                assert_eq!(e.put(x), want, "f {f} x {x}");
            }
        }
    }

    #[test]
    fn planes_of_every_shape_round_trip() {
        for n in [0usize, 1, 7, 8, 9, 63, 4096, 100_003] {
            roundtrip(&exponents(n, n as u64 + 1));
            roundtrip(&vec![7u8; n]);
            let all: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            roundtrip(&all);
        }
        // One symbol costs no words at all.
        let coded = roundtrip(&vec![200u8; 1 << 16]);
        assert!(coded.len() < 280, "{}", coded.len());
    }

    #[test]
    fn a_skewed_plane_costs_its_entropy() {
        let plane = exponents(1 << 21, 9);
        let counts = histogram(&plane);
        let n = plane.len() as f64;
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2() * n / 8.0
            })
            .sum();
        let coded = roundtrip(&plane);
        assert!(
            (coded.len() as f64) < entropy * 1.002 + 200.0,
            "{} bytes for an entropy of {entropy:.0}",
            coded.len()
        );
        let est = estimate(&counts);
        assert!(
            (est - coded.len() as f64).abs() < 0.002 * est + 64.0,
            "{est} vs {}",
            coded.len()
        );
    }

    #[test]
    fn damaged_planes_are_refused_not_misread() {
        let plane = exponents(10_000, 3);
        let mut enc = LaneEncoder::default();
        let mut coded = Vec::new();
        enc.encode(&plane, &histogram(&plane), &mut coded);
        let (mut lut, mut words) = (Vec::new(), Vec::new());
        let mut out = vec![0u8; plane.len()];
        // Truncated anywhere, or a byte more: refused.
        for cut in [0, 1, 5, coded.len() / 2, coded.len() - 1] {
            assert!(
                decode(&coded[..cut], &mut out, &mut lut, &mut words).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = coded.clone();
        longer.push(0);
        assert!(decode(&longer, &mut out, &mut lut, &mut words).is_err());
        // A flipped bit anywhere either fails or decodes to other symbols, never panics; in the
        // words it is caught by the end check nearly always.
        let mut caught = 0;
        for i in 0..coded.len() {
            let mut bad = coded.clone();
            bad[i] ^= 0x10;
            match decode(&bad, &mut out, &mut lut, &mut words) {
                Err(_) => caught += 1,
                Ok(()) => assert_ne!(out, plane, "flip at {i} decoded to the same plane"),
            }
        }
        assert!(caught > coded.len() * 9 / 10, "{caught} of {}", coded.len());
        // Fewer symbols than coded: the lanes do not end at their start state.
        let mut short = vec![0u8; plane.len() - 8];
        assert!(decode(&coded, &mut short, &mut lut, &mut words).is_err());
    }
}
