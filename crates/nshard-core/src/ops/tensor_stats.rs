//! How much each tensor changed between two versions (`nshard diff --stats`, `log --stats`).
//!
//! For a float tensor (bf16, fp16, fp32, fp64, fp8 e4m3/e5m2) both versions' bytes are streamed
//! side by side in windows and every element pair is compared: `changed_elements` counts pairs
//! whose bits differ; `l2` = ‖new − old‖, `rel_l2` = ‖new − old‖ / ‖old‖ (none when ‖old‖ is 0)
//! and `max_abs` = max |new − old| are computed in f64 over the pairs where both values are
//! finite; `non_finite` counts the new side's NaN and ±Inf values. A quantized GGUF tensor is
//! compared block by block (`changed_blocks` of `blocks`): its values are not decoded.
//!
//! Memory is bounded by the window (two buffers of [`WINDOW`] bytes) plus what the sources cache
//! (one chunk each for a stored version), whatever the tensor's size.

use std::io;
use std::sync::OnceLock;

use serde::Serialize;

use crate::formats::Source;
use crate::manifest::TensorEntry;

/// Bytes read from each side at a time.
const WINDOW: usize = 1 << 20;

/// Figures for a float tensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FloatStats {
    /// Elements whose bits differ.
    pub changed_elements: u64,
    /// Elements in the tensor.
    pub elements: u64,
    /// ‖new − old‖ / ‖old‖ over the pairs where both are finite; `None` when ‖old‖ is 0.
    pub rel_l2: Option<f64>,
    /// ‖new − old‖ over the pairs where both are finite.
    pub l2: f64,
    /// The largest |new − old| over the pairs where both are finite.
    pub max_abs: f64,
    /// NaN and ±Inf values in the new version.
    pub non_finite: u64,
    /// ‖old‖² over the pairs where both are finite (for whole-model figures).
    #[serde(skip)]
    pub old_sq: f64,
    /// ‖new‖² over the pairs where both are finite.
    #[serde(skip)]
    pub new_sq: f64,
    /// Whether every pair was finite (then `old_sq` and `new_sq` are the sides' whole norms).
    #[serde(skip)]
    pub all_finite: bool,
}

/// Figures for a quantized tensor: changed blocks only, its values are not decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockStats {
    /// Blocks whose bytes differ.
    pub changed_blocks: u64,
    /// Blocks in the tensor.
    pub blocks: u64,
    /// Elements per block.
    pub block_elements: u64,
}

/// How much one tensor changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum TensorStats {
    /// A float tensor.
    Float(FloatStats),
    /// A quantized tensor.
    Blocks(BlockStats),
}

impl TensorStats {
    /// The figure tables are sorted by, largest first: `rel_l2`, or for a tensor whose old norm
    /// is 0 its `l2`, or for a quantized one its share of changed blocks. Non-finite values
    /// sort above everything.
    pub fn rank(&self) -> f64 {
        match self {
            TensorStats::Float(f) if f.non_finite > 0 => f64::INFINITY,
            TensorStats::Float(f) => f.rel_l2.unwrap_or(f.l2),
            TensorStats::Blocks(b) if b.blocks == 0 => 0.0,
            TensorStats::Blocks(b) => b.changed_blocks as f64 / b.blocks as f64,
        }
    }
}

/// Element types whose values are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    Bf16,
    F16,
    F32,
    F64,
    F8E4M3,
    F8E5M2,
}

impl Elem {
    fn of(dtype: &str) -> Option<Self> {
        Some(match dtype {
            "BF16" => Elem::Bf16,
            "F16" => Elem::F16,
            "F32" => Elem::F32,
            "F64" => Elem::F64,
            "F8_E4M3" => Elem::F8E4M3,
            "F8_E5M2" => Elem::F8E5M2,
            _ => return None,
        })
    }

    fn width(self) -> usize {
        match self {
            Elem::F8E4M3 | Elem::F8E5M2 => 1,
            Elem::Bf16 | Elem::F16 => 2,
            Elem::F32 => 4,
            Elem::F64 => 8,
        }
    }
}

/// Whether figures can be computed for tensors of `dtype`.
pub fn has_stats(dtype: &str) -> bool {
    Elem::of(dtype).is_some() || quantized(dtype).is_some()
}

/// A quantized GGUF type's (elements, bytes) per block.
fn quantized(dtype: &str) -> Option<(u64, u64)> {
    crate::formats::gguf::ggml_type_by_name(dtype).filter(|(elems, _)| *elems > 1)
}

/// A small float format: exponent and mantissa widths, and whether the all-ones exponent holds
/// infinities and NaNs (IEEE, fp16 and fp8 e5m2) or only one NaN, at all ones (fp8 e4m3 "fn").
#[derive(Clone, Copy)]
struct SmallFloat {
    exp_bits: u32,
    mant_bits: u32,
    ieee: bool,
}

const F16: SmallFloat = SmallFloat {
    exp_bits: 5,
    mant_bits: 10,
    ieee: true,
};
const F8_E4M3: SmallFloat = SmallFloat {
    exp_bits: 4,
    mant_bits: 3,
    ieee: false,
};
const F8_E5M2: SmallFloat = SmallFloat {
    exp_bits: 5,
    mant_bits: 2,
    ieee: true,
};

impl SmallFloat {
    /// The value of `bits` in this format.
    fn value(self, bits: u32) -> f64 {
        let sign = if bits >> (self.exp_bits + self.mant_bits) & 1 != 0 {
            -1.0
        } else {
            1.0
        };
        let max_exp = (1u32 << self.exp_bits) - 1;
        let mant_max = 1u32 << self.mant_bits;
        let exp = (bits >> self.mant_bits) & max_exp;
        let mant = bits & (mant_max - 1);
        let bias = (1i32 << (self.exp_bits - 1)) - 1;
        let m = f64::from(mant) / f64::from(mant_max);
        sign * match exp {
            0 => m * 2f64.powi(1 - bias),
            e if e == max_exp && self.ieee && mant == 0 => f64::INFINITY,
            e if e == max_exp && (self.ieee || mant == mant_max - 1) => f64::NAN,
            e => (1.0 + m) * 2f64.powi(e as i32 - bias),
        }
    }
}

/// Every half's value, built once (512 KiB).
fn f16_table() -> &'static [f64] {
    static T: OnceLock<Vec<f64>> = OnceLock::new();
    T.get_or_init(|| (0..=u32::from(u16::MAX)).map(|h| F16.value(h)).collect())
}

/// Every fp8 value of one kind (e5m2 when `e5m2`, else e4m3), built once.
fn f8_table(e5m2: bool) -> &'static [f64; 256] {
    static T: OnceLock<[[f64; 256]; 2]> = OnceLock::new();
    let t = T.get_or_init(|| {
        [
            std::array::from_fn(|i| F8_E4M3.value(i as u32)),
            std::array::from_fn(|i| F8_E5M2.value(i as u32)),
        ]
    });
    &t[usize::from(e5m2)]
}

/// Running sums for one tensor; each window is summed on its own first, then added (better
/// accuracy than one running sum over hundreds of millions of elements).
#[derive(Default)]
pub(crate) struct Acc {
    changed: u64,
    elements: u64,
    diff_sq: f64,
    old_sq: f64,
    new_sq: f64,
    max_abs: f64,
    non_finite: u64,
    excluded: u64,
}

/// Lanes of independent sums in the element loop (more additions in flight; the compiler turns
/// the branch-free body into vector code).
const LANES: usize = 8;

/// An element type's decoder: `W` bytes to (bits, value).
trait Decode<const W: usize>: Copy {
    fn get(self, b: &[u8]) -> (u64, f64);
}

impl<const W: usize, F: Fn(&[u8]) -> (u64, f64) + Copy> Decode<W> for F {
    #[inline(always)]
    fn get(self, b: &[u8]) -> (u64, f64) {
        self(b)
    }
}

impl Acc {
    /// Adds the element pairs of one window (`a` old, `b` new, whole elements of `W` bytes).
    /// Branch-free over fixed groups of [`LANES`] elements, so that it compiles to vector code.
    #[inline(always)]
    fn window<const W: usize>(&mut self, a: &[u8], b: &[u8], dec: impl Decode<W>) {
        let mut d2 = [0.0f64; LANES];
        let mut o2 = [0.0f64; LANES];
        let mut n2 = [0.0f64; LANES];
        let mut mx = [0.0f64; LANES];
        let mut changed = [0u64; LANES];
        let mut non_finite = [0u64; LANES];
        let mut excluded = [0u64; LANES];
        let step = W * LANES;
        let (mut xs, mut ys) = (a.chunks_exact(step), b.chunks_exact(step));
        for (x, y) in (&mut xs).zip(&mut ys) {
            let x: &[u8] = &x[..step];
            let y: &[u8] = &y[..step];
            for l in 0..LANES {
                let (xb, xv) = dec.get(&x[l * W..l * W + W]);
                let (yb, yv) = dec.get(&y[l * W..l * W + W]);
                changed[l] += u64::from(xb != yb);
                non_finite[l] += u64::from(!yv.is_finite());
                let both = xv.is_finite() & yv.is_finite();
                excluded[l] += u64::from(!both);
                let xv = if both { xv } else { 0.0 };
                let yv = if both { yv } else { 0.0 };
                let d = yv - xv;
                d2[l] += d * d;
                o2[l] += xv * xv;
                n2[l] += yv * yv;
                mx[l] = if d.abs() > mx[l] { d.abs() } else { mx[l] };
            }
        }
        for (x, y) in xs
            .remainder()
            .chunks_exact(W)
            .zip(ys.remainder().chunks_exact(W))
        {
            let (xb, xv) = dec.get(x);
            let (yb, yv) = dec.get(y);
            changed[0] += u64::from(xb != yb);
            non_finite[0] += u64::from(!yv.is_finite());
            if xv.is_finite() && yv.is_finite() {
                let d = yv - xv;
                d2[0] += d * d;
                o2[0] += xv * xv;
                n2[0] += yv * yv;
                mx[0] = mx[0].max(d.abs());
            } else {
                excluded[0] += 1;
            }
        }
        self.elements += (a.len().min(b.len()) / W) as u64;
        self.changed += changed.iter().sum::<u64>();
        self.non_finite += non_finite.iter().sum::<u64>();
        self.excluded += excluded.iter().sum::<u64>();
        self.diff_sq += d2.iter().sum::<f64>();
        self.old_sq += o2.iter().sum::<f64>();
        self.new_sq += n2.iter().sum::<f64>();
        self.max_abs = mx.iter().copied().fold(self.max_abs, f64::max);
    }

    /// [`Acc::window`] for element type `e`: one loop per type, the type chosen outside it.
    fn window_of(&mut self, e: Elem, a: &[u8], b: &[u8]) {
        match e {
            Elem::Bf16 => self.window::<2>(a, b, |c: &[u8]| {
                let bits = u16::from_le_bytes([c[0], c[1]]);
                (
                    u64::from(bits),
                    f64::from(f32::from_bits(u32::from(bits) << 16)),
                )
            }),
            Elem::F16 => {
                let half = f16_table();
                self.window::<2>(a, b, move |c: &[u8]| {
                    let bits = u16::from_le_bytes([c[0], c[1]]);
                    (u64::from(bits), half[usize::from(bits)])
                })
            }
            Elem::F32 => self.window::<4>(a, b, |c: &[u8]| {
                let bits = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (u64::from(bits), f64::from(f32::from_bits(bits)))
            }),
            Elem::F64 => self.window::<8>(a, b, |c: &[u8]| {
                let bits = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                (bits, f64::from_bits(bits))
            }),
            Elem::F8E4M3 => {
                let t = f8_table(false);
                self.window::<1>(a, b, move |c: &[u8]| {
                    (u64::from(c[0]), t[usize::from(c[0])])
                })
            }
            Elem::F8E5M2 => {
                let t = f8_table(true);
                self.window::<1>(a, b, move |c: &[u8]| {
                    (u64::from(c[0]), t[usize::from(c[0])])
                })
            }
        }
    }

    fn finish(self) -> FloatStats {
        let l2 = self.diff_sq.sqrt();
        FloatStats {
            changed_elements: self.changed,
            elements: self.elements,
            rel_l2: (self.old_sq > 0.0).then(|| l2 / self.old_sq.sqrt()),
            l2,
            max_abs: self.max_abs,
            non_finite: self.non_finite,
            old_sq: self.old_sq,
            new_sq: self.new_sq,
            all_finite: self.excluded == 0,
        }
    }
}

/// Calls `each` with successive runs of `size` bytes from `offset` in both sources, each run a
/// multiple of `unit` bytes long: slices of the chunks the sources hold, not copies, except for a
/// unit that straddles two chunks, which is copied.
fn windows(
    (old, old_at): (&mut dyn Source, u64),
    (new, new_at): (&mut dyn Source, u64),
    size: u64,
    unit: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let (mut a_tmp, mut b_tmp) = (Vec::new(), Vec::new());
    let mut done = 0u64;
    while done < size {
        let want = usize::try_from(size - done).unwrap_or(usize::MAX);
        let n = {
            let a = old.view(old_at + done, want)?;
            let b = new.view(new_at + done, a.len())?;
            let n = a.len().min(b.len()) / unit * unit;
            if n > 0 {
                each(&a[..n], &b[..n]);
            }
            n
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        let k = unit.min(want);
        a_tmp.resize(k, 0);
        b_tmp.resize(k, 0);
        old.read_at(old_at + done, &mut a_tmp)?;
        new.read_at(new_at + done, &mut b_tmp)?;
        each(&a_tmp, &b_tmp);
        done += k as u64;
    }
    Ok(())
}

/// What a part of a tensor contributes (see [`compare_part`]).
pub(crate) enum Partial {
    /// Float figures so far.
    Float(Acc),
    /// Changed blocks so far.
    Blocks(u64),
}

impl Partial {
    /// Adds `other` (a later part of the same tensor).
    pub(crate) fn merge(&mut self, other: Partial) {
        match (self, other) {
            (Partial::Float(a), Partial::Float(b)) => {
                a.changed += b.changed;
                a.elements += b.elements;
                a.diff_sq += b.diff_sq;
                a.old_sq += b.old_sq;
                a.new_sq += b.new_sq;
                a.max_abs = a.max_abs.max(b.max_abs);
                a.non_finite += b.non_finite;
                a.excluded += b.excluded;
            }
            (Partial::Blocks(a), Partial::Blocks(b)) => *a += b,
            _ => {}
        }
    }

    /// The figures of tensor `n`, all of whose parts were merged.
    pub(crate) fn finish(self, n: &TensorEntry) -> Option<TensorStats> {
        match self {
            Partial::Float(acc) => Some(TensorStats::Float(acc.finish())),
            Partial::Blocks(changed_blocks) => {
                let (block_elements, block_bytes) = quantized(&n.dtype)?;
                Some(TensorStats::Blocks(BlockStats {
                    changed_blocks,
                    blocks: n.size.div_ceil(block_bytes),
                    block_elements,
                }))
            }
        }
    }
}

/// The bytes a part of a tensor of `dtype` must be a multiple of (element or block), for a dtype
/// with figures.
pub(crate) fn unit_of(dtype: &str) -> Option<u64> {
    Elem::of(dtype)
        .map(|e| e.width() as u64)
        .or_else(|| quantized(dtype).map(|(_, b)| b))
}

/// Compares `len` bytes of tensor `o` (old side) and `n` (new side) from `at` bytes into each;
/// `at` and `len` are multiples of [`unit_of`]. `None` for a dtype without figures.
pub(crate) fn compare_part(
    old: &mut dyn Source,
    o: &TensorEntry,
    new: &mut dyn Source,
    n: &TensorEntry,
    (at, len): (u64, u64),
) -> io::Result<Option<Partial>> {
    if o.size != n.size || o.dtype != n.dtype {
        return Ok(None);
    }
    let (oa, na) = (o.offset + at, n.offset + at);
    if let Some(e) = Elem::of(&n.dtype) {
        let mut acc = Acc::default();
        windows((old, oa), (new, na), len, e.width(), |a, b| {
            acc.window_of(e, a, b)
        })?;
        return Ok(Some(Partial::Float(acc)));
    }
    let Some((_, block_bytes)) = quantized(&n.dtype) else {
        return Ok(None);
    };
    let bb = block_bytes as usize;
    let mut changed = 0;
    windows((old, oa), (new, na), len, bb, |a, b| {
        changed += a
            .chunks(bb)
            .zip(b.chunks(bb))
            .filter(|(x, y)| x != y)
            .count() as u64;
    })?;
    Ok(Some(Partial::Blocks(changed)))
}

/// How much tensor `n` of the new side differs from tensor `o` of the old side (same dtype and
/// size), in one pass. `None` for a dtype without figures.
#[cfg(test)]
pub(crate) fn compare(
    old: &mut dyn Source,
    o: &TensorEntry,
    new: &mut dyn Source,
    n: &TensorEntry,
) -> io::Result<Option<TensorStats>> {
    Ok(compare_part(old, o, new, n, (0, n.size))?.and_then(|p| p.finish(n)))
}

/// ‖t‖² over the finite elements of a float tensor (`None` for other dtypes): the old-side norm
/// of a tensor that did not change, for whole-model figures.
pub(crate) fn sum_sq(src: &mut dyn Source, t: &TensorEntry) -> io::Result<Option<f64>> {
    let Some(e) = Elem::of(&t.dtype) else {
        return Ok(None);
    };
    let step = (WINDOW / e.width()) * e.width();
    let mut buf = vec![0u8; usize::try_from(t.size).unwrap_or(usize::MAX).min(step)];
    let (mut total, mut done) = (0.0f64, 0u64);
    while done < t.size {
        let n = usize::try_from(t.size - done)
            .unwrap_or(usize::MAX)
            .min(step);
        src.read_at(t.offset + done, &mut buf[..n])?;
        // The tensor against itself: ‖old‖² over its finite elements.
        let mut acc = Acc::default();
        acc.window_of(e, &buf[..n], &buf[..n]);
        total += acc.old_sq;
        done += n as u64;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    fn entry(dtype: &str, offset: u64, size: u64) -> TensorEntry {
        TensorEntry {
            name: "t".into(),
            dtype: dtype.into(),
            shape: vec![size],
            offset,
            size,
            sha256: ObjectId::of(b""),
            digest: Default::default(),
        }
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn f32_figures_and_non_finite_values() {
        let old = f32s(&[3.0, 4.0, 1.0, 2.0, 0.0]);
        let new = f32s(&[3.0, 4.0, 1.5, f32::NAN, 0.0]);
        let (o, n) = (entry("F32", 0, 20), entry("F32", 0, 20));
        let s = compare(&mut old.as_slice(), &o, &mut new.as_slice(), &n)
            .expect("reads")
            .expect("figures");
        let TensorStats::Float(f) = s else {
            panic!("float")
        };
        assert_eq!((f.changed_elements, f.elements, f.non_finite), (2, 5, 1));
        // Finite pairs: old (3, 4, 1, 0) has norm sqrt(26); the difference is 0.5.
        assert!((f.rel_l2.expect("ok") - 0.5 / 26f64.sqrt()).abs() < 1e-12);
        assert_eq!((f.l2, f.max_abs), (0.5, 0.5));
        assert_eq!(s_rank(&TensorStats::Float(f)), f64::INFINITY);
    }

    fn s_rank(s: &TensorStats) -> f64 {
        s.rank()
    }

    #[test]
    fn zero_old_norm_gives_no_relative_change() {
        let old = vec![0u8; 8];
        let new: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .chain([0, 0, 0, 0])
            .collect();
        let (o, n) = (entry("BF16", 0, 8), entry("BF16", 0, 8));
        let s = compare(&mut old.as_slice(), &o, &mut new.as_slice(), &n)
            .expect("reads")
            .expect("figures");
        let TensorStats::Float(f) = s else {
            panic!("float")
        };
        assert_eq!(f.rel_l2, None);
        assert!((f.l2 - 5f64.sqrt()).abs() < 1e-12);
        assert_eq!((f.max_abs, f.changed_elements), (2.0, 2));
    }

    #[test]
    fn small_float_formats_decode() {
        assert_eq!(F16.value(0x3c00), 1.0);
        assert_eq!(F16.value(0xc000), -2.0);
        assert_eq!(F16.value(0x0001), 2f64.powi(-24));
        assert!(F16.value(0x7c00).is_infinite() && F16.value(0x7e00).is_nan());
        assert_eq!(F8_E4M3.value(0x38), 1.0);
        assert_eq!(F8_E4M3.value(0x7e), 448.0);
        assert_eq!(F8_E4M3.value(0x01), 2f64.powi(-9));
        assert!(F8_E4M3.value(0x7f).is_nan() && F8_E4M3.value(0xff).is_nan());
        assert_eq!(F8_E5M2.value(0x3c), 1.0);
        assert_eq!(F8_E5M2.value(0x7b), 57344.0);
        assert!(F8_E5M2.value(0x7c).is_infinite() && F8_E5M2.value(0x7d).is_nan());
        assert_eq!(F8_E5M2.value(0xfc), f64::NEG_INFINITY);
    }

    #[test]
    fn quantized_tensors_count_changed_blocks() {
        // Q8_0: 32 elements in 34 bytes; three blocks, the middle one changed.
        let old = vec![0u8; 102];
        let mut new = old.clone();
        new[40] = 1;
        let (o, n) = (entry("Q8_0", 0, 102), entry("Q8_0", 0, 102));
        let s = compare(&mut old.as_slice(), &o, &mut new.as_slice(), &n).expect("ok");
        assert_eq!(
            s,
            Some(TensorStats::Blocks(BlockStats {
                changed_blocks: 1,
                blocks: 3,
                block_elements: 32
            }))
        );
        assert_eq!(
            compare(
                &mut old.as_slice(),
                &entry("I32", 0, 100),
                &mut new.as_slice(),
                &entry("I32", 0, 100)
            )
            .expect("ok"),
            None
        );
    }

    /// A source that hands out pieces of at most `piece` bytes, like chunks whose boundaries fall
    /// inside elements.
    struct Choppy<'a>(&'a [u8], usize);

    impl Source for Choppy<'_> {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.0.read_at(offset, buf)
        }
        fn view(&mut self, offset: u64, max: usize) -> io::Result<&[u8]> {
            let piece = self.1 - (offset as usize % self.1);
            let rest = self
                .0
                .get(offset as usize..)
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            Ok(&rest[..rest.len().min(max).min(piece)])
        }
    }

    #[test]
    fn elements_and_blocks_across_piece_boundaries_count_once() {
        let old: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let mut new = old.clone();
        for i in (0..1000).step_by(7) {
            new[i] += 1.0;
        }
        let (ob, nb) = (f32s(&old), f32s(&new));
        let e = entry("F32", 0, ob.len() as u64);
        let whole = compare(&mut ob.as_slice(), &e, &mut nb.as_slice(), &e)
            .expect("reads")
            .expect("figures");
        for (pa, pb) in [(7, 5), (3, 13), (4, 4), (1, 9)] {
            let chopped = compare(&mut Choppy(&ob, pa), &e, &mut Choppy(&nb, pb), &e)
                .expect("reads")
                .expect("figures");
            assert_eq!(chopped, whole, "pieces of {pa} and {pb} bytes");
        }
        // Q8_0 blocks (34 bytes) across pieces of 10 and 16 bytes.
        let old = vec![0u8; 34 * 9];
        let mut new = old.clone();
        new[34 * 4 + 33] = 1;
        new[34 * 8] = 2;
        let q = entry("Q8_0", 0, old.len() as u64);
        let s = compare(&mut Choppy(&old, 10), &q, &mut Choppy(&new, 16), &q)
            .expect("reads")
            .expect("figures");
        assert_eq!(
            s,
            TensorStats::Blocks(BlockStats {
                changed_blocks: 2,
                blocks: 9,
                block_elements: 32
            })
        );
    }

    #[test]
    fn windows_cover_tensors_larger_than_a_window() {
        let n = WINDOW / 4 * 3 + 5;
        let old: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut new = old.clone();
        new[n - 1] += 1.0;
        new[0] = -1.0;
        let (ob, nb) = (f32s(&old), f32s(&new));
        let (o, t) = (
            entry("F32", 0, ob.len() as u64),
            entry("F32", 0, nb.len() as u64),
        );
        let Some(TensorStats::Float(f)) =
            compare(&mut ob.as_slice(), &o, &mut nb.as_slice(), &t).expect("ok")
        else {
            panic!("float")
        };
        assert_eq!((f.changed_elements, f.elements), (2, n as u64));
        assert_eq!(f.max_abs, 1.0);
        let sq = sum_sq(&mut ob.as_slice(), &o).expect("ok").expect("ok");
        assert!((sq - f.old_sq).abs() <= 1e-9 * sq);
    }
}
