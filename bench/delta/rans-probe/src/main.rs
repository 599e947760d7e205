//! rans-probe: speed of the delta codec of bench/delta/RESULTS.md in Rust.
//! Transform: osub-zz (order-preserving int map, wrapping new - parent, zigzag), little-endian
//! byte planes, context = parent's exponent byte `(p >> (bits-9)) & 0xFF`, per 4 MiB chunk.
//! Plane coders: (a) constriction AnsCoder + 12-bit contiguous categorical / lookup models,
//! (b) hand-written 4-way interleaved static rANS (32-bit state, byte renorm, 12-bit freqs),
//! (c) zstd-1 per plane. Every round trip is checked byte-exactly.
//! Usage: rans-probe DATA_DIR OUT_DIR   (prints a table; writes the raw "new" bytes to OUT_DIR)
use constriction::stream::model::{
    SmallContiguousCategoricalEntropyModel, SmallContiguousLookupDecoderModel,
};
use constriction::stream::stack::SmallAnsCoder;
use constriction::stream::{Decode, Encode};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const NS: usize = 4; // interleaved rANS states
const CHUNK: usize = 4 << 20;
const PREC: u32 = 12;
const TOT: u32 = 1 << PREC;
const RL: u32 = 1 << 23; // rANS lower bound of the normalised state interval
const TENSORS: [&str; 2] = ["layers.1.weight", "layers.2.weight"]; // the two largest

// ---------------------------------------------------------------- transform

fn cast<T>(b: &[u8]) -> &[T] {
    let (x, m, y) = unsafe { b.align_to::<T>() };
    assert!(x.is_empty() && y.is_empty());
    m
}
fn cast_mut<T>(b: &mut [u8]) -> &mut [T] {
    let (x, m, y) = unsafe { b.align_to_mut::<T>() };
    assert!(x.is_empty() && y.is_empty());
    m
}

/// Element types: u16 (bf16, fp16) and u32 (fp32); little-endian host (x86-64).
trait Elem: Copy {
    const W: usize;
    fn fwd(c: Self, p: Self) -> (u32, u8); // (z, ctx)
    fn inv(z: u32, p: Self) -> Self;
    fn ctx(p: Self) -> u8;
}
macro_rules! elem {
    ($u:ty, $i:ty) => {
        impl Elem for $u {
            const W: usize = std::mem::size_of::<$u>();
            #[inline(always)]
            fn fwd(c: $u, p: $u) -> (u32, u8) {
                const B: u32 = <$u>::BITS;
                const MAG: $u = <$u>::MAX >> 1;
                let o = |x: $u| x ^ ((((x as $i) >> (B - 1)) as $u) & MAG);
                let d = o(c).wrapping_sub(o(p)) as $i;
                (((d << 1) ^ (d >> (B - 1))) as $u as u32, (p >> (B - 9)) as u8)
            }
            #[inline(always)]
            fn inv(z: u32, p: $u) -> $u {
                const B: u32 = <$u>::BITS;
                const MAG: $u = <$u>::MAX >> 1;
                let o = |x: $u| x ^ ((((x as $i) >> (B - 1)) as $u) & MAG);
                let z = z as $u;
                let d = (z >> 1) ^ (0 as $u).wrapping_sub(z & 1);
                o(o(p).wrapping_add(d))
            }
            #[inline(always)]
            fn ctx(p: $u) -> u8 { (p >> (<$u>::BITS - 9)) as u8 }
        }
    };
}
elem!(u16, i16);
elem!(u32, i32);

/// new, parent -> W byte planes of z (LSB first) and the context byte of every element.
#[inline(never)]
fn forward<T: Elem>(cur: &[u8], par: &[u8], planes: &mut [Vec<u8>; 4], ctx: &mut Vec<u8>) {
    let (c, p) = (cast::<T>(cur), cast::<T>(par));
    let n = c.len();
    ctx.resize(n, 0);
    for q in planes.iter_mut() { q.resize(n, 0); }
    let [p0, p1, p2, p3] = planes;
    let (p0, p1, p2, p3, cx, p) = (&mut p0[..n], &mut p1[..n], &mut p2[..n], &mut p3[..n], &mut ctx[..n], &p[..n]);
    for i in 0..n {
        let (z, k) = T::fwd(c[i], p[i]);
        cx[i] = k;
        p0[i] = z as u8;
        p1[i] = (z >> 8) as u8;
        if T::W == 4 { p2[i] = (z >> 16) as u8; p3[i] = (z >> 24) as u8; }
    }
}

#[inline(never)]
fn contexts<T: Elem>(par: &[u8], ctx: &mut Vec<u8>) {
    let p = cast::<T>(par);
    ctx.clear();
    ctx.extend(p.iter().map(|&x| T::ctx(x)));
}

#[inline(never)]
fn inverse<T: Elem>(planes: &[Vec<u8>; 4], par: &[u8], out: &mut [u8]) {
    let (p, o) = (cast::<T>(par), cast_mut::<T>(out));
    let n = p.len();
    let (p0, p1) = (&planes[0][..n], &planes[1][..n]);
    let (p2, p3) = if T::W == 4 { (&planes[2][..n], &planes[3][..n]) } else { (p0, p1) };
    let o = &mut o[..n];
    for i in 0..n {
        let mut z = p0[i] as u32 | (p1[i] as u32) << 8;
        if T::W == 4 { z |= (p2[i] as u32) << 16 | (p3[i] as u32) << 24; }
        o[i] = T::inv(z, p[i]);
    }
}

// ---------------------------------------------------------------- tables
fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 { v.push(x as u8 | 0x80); x >>= 7; }
    v.push(x as u8);
}
fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let (mut x, mut sh) = (0u64, 0);
    loop {
        let c = b[*pos];
        *pos += 1;
        x |= ((c & 0x7F) as u64) << sh;
        if c < 0x80 { return x; }
        sh += 7;
    }
}

/// Normalise counts to frequencies summing to 4096: every present symbol >= 1; with
/// `fill` every symbol in 0..=max also >= 1 (constriction's contiguous models need it).
fn normalise(cnt: &[u32], fill: bool, f: &mut [u32; 256]) -> usize {
    let total: u64 = cnt.iter().map(|&c| c as u64).sum();
    let max = cnt.iter().rposition(|&c| c > 0).unwrap();
    let present = cnt.iter().filter(|&&c| c > 0).count();
    *f = [0; 256];
    if present == 1 { f[max] = TOT; return max; }
    let mut sum = 0i64;
    for s in 0..=max {
        let v = if cnt[s] > 0 { (((cnt[s] as u64 * TOT as u64 + total / 2) / total) as u32).max(1) } else if fill { 1 } else { 0 };
        f[s] = v;
        sum += v as i64;
    }
    let mut diff = TOT as i64 - sum;
    if diff != 0 {
        let mut order: Vec<usize> = (0..=max).filter(|&s| cnt[s] > 0).collect();
        order.sort_unstable_by(|&a, &b| cnt[b].cmp(&cnt[a]));
        while diff != 0 {
            for &s in &order {
                if diff > 0 { f[s] += 1; diff -= 1; } else if diff < 0 && f[s] > 1 { f[s] -= 1; diff += 1; }
                if diff == 0 { break; }
            }
        }
    }
    max
}

fn ser_table(tb: &mut Vec<u8>, f: &[u32; 256], max: usize) {
    tb.push(max as u8);
    for s in 0..=max { put_varint(tb, f[s] as u64); }
}
fn de_table(tb: &[u8], pos: &mut usize, f: &mut [u32; 256]) -> usize {
    let max = tb[*pos] as usize;
    *pos += 1;
    *f = [0; 256];
    for s in 0..=max { f[s] = get_varint(tb, pos) as u32; }
    max
}

/// Histogram (ctx, symbol) of one plane; four sub-histograms against store-forwarding stalls.
#[inline(never)]
fn histogram(sym: &[u8], ctx: &[u8], h: &mut Vec<u32>) {
    h.clear();
    h.resize(4 * 65536, 0);
    let n = sym.len().min(ctx.len());
    let hp = h.as_mut_ptr();
    let (sc, cc) = (sym[..n].chunks_exact(4), ctx[..n].chunks_exact(4));
    let (sr, cr) = (sc.remainder(), cc.remainder());
    for (s4, c4) in sc.zip(cc) {
        for k in 0..4 { unsafe { *hp.add(k << 16 | (c4[k] as usize) << 8 | s4[k] as usize) += 1 } }
    }
    for (&s, &c) in sr.iter().zip(cr) { h[(c as usize) << 8 | s as usize] += 1; }
    let (a, b) = h.split_at_mut(2 * 65536);
    for k in 0..2 * 65536 { a[k] += b[k]; }
    let (a, b) = a.split_at_mut(65536);
    for k in 0..65536 { a[k] += b[k]; }
}

struct Log2 { t: Vec<f64> }
impl Log2 {
    fn new() -> Self { Log2 { t: (0..=TOT).map(|f| if f == 0 { 0.0 } else { (PREC as f64) - (f as f64).log2() }).collect() } }
}

/// Plane table for a coded plane: per context (bitmap) one normalised table. Returns the
/// estimated coded size in bytes (for the raw/coded decision).
fn build_tables(h: &[u32], fill: bool, lg: &Log2, tb: &mut Vec<u8>, mut each: impl FnMut(usize, &[u32; 256], usize)) -> f64 {
    let mut bitmap = [0u8; 32];
    let mut present = vec![];
    for c in 0..256 {
        if h[c << 8..(c << 8) + 256].iter().any(|&x| x > 0) { bitmap[c >> 3] |= 1 << (c & 7); present.push(c); }
    }
    tb.extend_from_slice(&bitmap);
    let mut f = [0u32; 256];
    let mut bits = 0.0;
    for &c in &present {
        let cnt = &h[c << 8..(c << 8) + 256];
        let max = normalise(cnt, fill, &mut f);
        for s in 0..=max { if cnt[s] > 0 { bits += cnt[s] as f64 * lg.t[f[s] as usize]; } }
        ser_table(tb, &f, max);
        each(c, &f, max);
    }
    bits / 8.0
}

fn parse_tables(tb: &[u8], pos: &mut usize, mut each: impl FnMut(usize, &[u32; 256], usize)) {
    let bitmap: [u8; 32] = tb[*pos..*pos + 32].try_into().unwrap();
    *pos += 32;
    let mut f = [0u32; 256];
    for c in 0..256 {
        if bitmap[c >> 3] >> (c & 7) & 1 == 1 { let max = de_table(tb, pos, &mut f); each(c, &f, max); }
    }
}

// ---------------------------------------------------------------- (b) hand-written rANS
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct EncSym { x_max: u32, rcp: u32, bias: u32, cmpl: u16, shift: u16 }

fn enc_sym(start: u32, freq: u32) -> EncSym {
    // ryg_rans RansEncSymbolInit, scale_bits = 12
    let x_max = ((RL >> PREC) << 8) * freq;
    let cmpl = (TOT - freq) as u16;
    if freq < 2 {
        EncSym { x_max, rcp: !0, bias: start + TOT - 1, cmpl, shift: 0 }
    } else {
        let mut shift = 0;
        while freq > (1u32 << shift) { shift += 1; }
        let rcp = (((1u64 << (shift + 31)) + freq as u64 - 1) / freq as u64) as u32;
        EncSym { x_max, rcp, bias: start, cmpl, shift: (shift - 1) as u16 }
    }
}

/// Encode `sym` (context `ctx`) with table `tab[ctx << 8 | sym]`, N interleaved states
/// (element i uses state i % N), appended to `out`. `scratch` is grown as needed.
#[inline(never)]
fn rans_encode<const N: usize, const BL: bool>(sym: &[u8], ctx: &[u8], tab: &[EncSym], scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    let n = sym.len();
    assert!(ctx.len() == n && tab.len() == 65536);
    if scratch.len() < 2 * n + 4 * N { scratch.resize(2 * n + 4 * N, 0); }
    let end = scratch.len();
    let mut ptr = end;
    let buf = scratch.as_mut_ptr();
    let mut st = [RL; N];
    macro_rules! put {
        ($x:expr, $i:expr) => {{
            let e = unsafe { *tab.get_unchecked((*ctx.get_unchecked($i) as usize) << 8 | *sym.get_unchecked($i) as usize) };
            let mut x: u32 = $x;
            if BL {
                // branch-free: at most two bytes (x < 2^31, x_max >= 2^19)
                for _ in 0..2 {
                    let b = (x >= e.x_max) as usize;
                    unsafe { *buf.add(ptr - 1) = x as u8 };
                    ptr -= b;
                    x >>= 8 * b as u32;
                }
            } else {
                while x >= e.x_max { ptr -= 1; unsafe { *buf.add(ptr) = x as u8 }; x >>= 8; }
            }
            let q = (((x as u64) * (e.rcp as u64)) >> 32) as u32 >> e.shift;
            $x = x.wrapping_add(e.bias).wrapping_add(q.wrapping_mul(e.cmpl as u32));
        }};
    }
    let nn = n - n % N;
    let mut i = n;
    while i > nn { i -= 1; put!(st[i % N], i); }
    while i > 0 {
        i -= N;
        for k in (0..N).rev() { put!(st[k], i + k); }
    }
    for k in (0..N).rev() { ptr -= 4; scratch[ptr..ptr + 4].copy_from_slice(&st[k].to_le_bytes()); }
    out.extend_from_slice(&scratch[ptr..end]);
}

/// Decode table entry: symbol | (freq-1) << 8 | (slot - cum) << 20, at lut[ctx << 12 | slot].
fn fill_lut(lut: &mut [u32], c: usize, f: &[u32; 256], max: usize) {
    let t = &mut lut[c << 12..(c + 1) << 12];
    let mut cum = 0usize;
    for s in 0..=max {
        let fs = f[s] as usize;
        for k in 0..fs { t[cum + k] = s as u32 | ((fs as u32 - 1) << 8) | (k as u32) << 20; }
        cum += fs;
    }
    assert_eq!(cum, TOT as usize);
}

#[inline(never)]
fn rans_decode<const N: usize, const BL: bool>(src: &[u8], ctx: &[u8], lut: &[u32], out: &mut [u8]) -> usize {
    let n = out.len();
    assert!(ctx.len() == n && lut.len() == 256 << 12 && src.len() >= 4 * N);
    let mut st = [0u32; N];
    for k in 0..N { st[k] = u32::from_le_bytes(src[4 * k..4 * k + 4].try_into().unwrap()); }
    let mut p = 4 * N;
    let last = src.len() - 1;
    let sp = src.as_ptr();
    macro_rules! get {
        ($x:expr, $i:expr) => {{
            let x0: u32 = $x;
            let e = unsafe { *lut.get_unchecked((*ctx.get_unchecked($i) as usize) << 12 | (x0 & (TOT - 1)) as usize) };
            unsafe { *out.get_unchecked_mut($i) = e as u8 };
            let mut x = (((e >> 8) & 0xFFF) + 1) * (x0 >> PREC) + (e >> 20);
            if BL {
                // branch-free: at most two bytes (x >= 2^11 after the step)
                for _ in 0..2 {
                    let b = x < RL;
                    let v = (x << 8) | unsafe { *sp.add(p.min(last)) } as u32;
                    x = if b { v } else { x };
                    p += b as usize;
                }
            } else {
                while x < RL { x = (x << 8) | unsafe { *sp.add(p) } as u32; p += 1; }
            }
            $x = x;
        }};
    }
    let nn = n - n % N;
    let mut i = 0;
    while i < nn {
        for k in 0..N { get!(st[k], i + k); }
        i += N;
    }
    while i < n { get!(st[i % N], i); i += 1; }
    assert!(p <= src.len());
    p
}

// ---------------------------------------------------------------- codecs
#[derive(Clone, Copy, PartialEq, Debug)]
enum Coder { Constriction, Rans, Zstd }

struct Codec {
    coder: Coder,
    planes: [Vec<u8>; 4],
    ctx: Vec<u8>,
    hist: Vec<u32>,
    tb: Vec<u8>,
    enc: Vec<EncSym>,
    lut: Vec<u32>,
    scratch: Vec<u8>,
    rscratch: Vec<u8>,
    body: Vec<u8>,
    zc: zstd::bulk::Compressor<'static>,
    zd: zstd::bulk::Decompressor<'static>,
    lg: Log2,
    prof: [f64; 5], // seconds: forward, histogram, tables, coding, table zstd + output
}

// Object layout: [varint zlen][zstd(tables)] then per plane [mode u8: 0 raw, 1 coded][varint len][bytes]
impl Codec {
    fn new(coder: Coder) -> Self {
        Codec {
            coder,
            planes: Default::default(),
            ctx: vec![],
            hist: vec![],
            tb: vec![],
            enc: vec![EncSym::default(); 65536],
            lut: vec![0u32; 256 << 12],
            scratch: vec![],
            rscratch: vec![],
            body: vec![],
            zc: zstd::bulk::Compressor::new(1).unwrap(),
            zd: zstd::bulk::Decompressor::new().unwrap(),
            lg: Log2::new(),
            prof: [0.0; 5],
        }
    }

    fn encode<T: Elem>(&mut self, cur: &[u8], par: &[u8], out: &mut Vec<u8>) {
        assert!(cur.len() % T::W == 0 && cur.len() == par.len());
        out.clear();
        let t0 = Instant::now();
        forward::<T>(cur, par, &mut self.planes, &mut self.ctx);
        self.prof[0] += t0.elapsed().as_secs_f64();
        let n = cur.len() / T::W;
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        self.tb.clear();
        for j in 0..T::W {
            let plane = &self.planes[j];
            match self.coder {
                Coder::Zstd => {
                    self.scratch.clear();
                    self.scratch.reserve(zstd::zstd_safe::compress_bound(n));
                    let m = self.zc.compress_to_buffer(&plane[..], &mut self.scratch).unwrap();
                    if m < n { body.push(1); put_varint(&mut body, m as u64); body.extend_from_slice(&self.scratch[..m]); } else { body.push(0); put_varint(&mut body, n as u64); body.extend_from_slice(plane); }
                }
                Coder::Rans | Coder::Constriction => {
                    let t1 = Instant::now();
                    histogram(plane, &self.ctx, &mut self.hist);
                    self.prof[1] += t1.elapsed().as_secs_f64();
                    let t1 = Instant::now();
                    let mark = self.tb.len();
                    let fill = self.coder == Coder::Constriction;
                    let enc = &mut self.enc;
                    let mut cmodels: Vec<Option<SmallContiguousCategoricalEntropyModel>> = vec![None; if fill { 256 } else { 0 }];
                    let est = build_tables(&self.hist, fill, &self.lg, &mut self.tb, |c, f, max| {
                        if fill {
                            if f[max] != TOT { cmodels[c] = Some(SmallContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(f[..=max].iter().map(|&x| x as u16), false).unwrap()); }
                        } else {
                            let mut cum = 0;
                            for s in 0..=max { if f[s] > 0 { enc[c << 8 | s] = enc_sym(cum, f[s]); } cum += f[s]; }
                        }
                    });
                    self.prof[2] += t1.elapsed().as_secs_f64();
                    let t1 = Instant::now();
                    if est + (self.tb.len() - mark) as f64 >= n as f64 {
                        self.tb.truncate(mark);
                        body.push(0); put_varint(&mut body, n as u64); body.extend_from_slice(plane);
                        continue;
                    }
                    body.push(1);
                    if fill {
                        let mut coder = SmallAnsCoder::new();
                        for i in (0..n).rev() {
                            if let Some(m) = &cmodels[self.ctx[i] as usize] { coder.encode_symbol(plane[i] as usize, m).unwrap(); }
                        }
                        let words = coder.into_compressed().unwrap();
                        put_varint(&mut body, 2 * words.len() as u64);
                        for w in words { body.extend_from_slice(&w.to_le_bytes()); }
                    } else {
                        let mark = body.len();
                        rans_encode::<NS, false>(plane, &self.ctx, &self.enc, &mut self.rscratch, &mut body);
                        let len = body.len() - mark;
                        let mut hdr = vec![];
                        put_varint(&mut hdr, len as u64);
                        body.splice(mark..mark, hdr);
                    }
                    self.prof[3] += t1.elapsed().as_secs_f64();
                }
            }
        }
        let t1 = Instant::now();
        if self.tb.is_empty() { put_varint(out, 0); } else {
            self.scratch.clear();
            self.scratch.reserve(zstd::zstd_safe::compress_bound(self.tb.len()));
            let m = self.zc.compress_to_buffer(&self.tb[..], &mut self.scratch).unwrap();
            put_varint(out, m as u64);
            out.extend_from_slice(&self.scratch[..m]);
        }
        out.extend_from_slice(&body);
        self.body = body;
        self.prof[4] += t1.elapsed().as_secs_f64();
    }

    fn decode<T: Elem>(&mut self, obj: &[u8], par: &[u8], out: &mut [u8]) {
        let n = par.len() / T::W;
        let mut pos = 0;
        let zl = get_varint(obj, &mut pos) as usize;
        self.tb.clear();
        if zl > 0 {
            self.tb.reserve(1 << 20);
            self.zd.decompress_to_buffer(&obj[pos..pos + zl], &mut self.tb).unwrap();
        }
        pos += zl;
        if self.coder != Coder::Zstd { contexts::<T>(par, &mut self.ctx); }
        let mut tpos = 0;
        for j in 0..T::W {
            let mode = obj[pos];
            pos += 1;
            let len = get_varint(obj, &mut pos) as usize;
            let src = &obj[pos..pos + len];
            pos += len;
            let plane = &mut self.planes[j];
            if mode == 0 { plane.clear(); plane.extend_from_slice(src); continue; }
            match self.coder {
                Coder::Zstd => {
                    plane.clear();
                    plane.reserve(n);
                    let m = self.zd.decompress_to_buffer(src, plane).unwrap();
                    assert_eq!(m, n);
                }
                Coder::Rans => {
                    let lut = &mut self.lut;
                    parse_tables(&self.tb, &mut tpos, |c, f, max| fill_lut(lut, c, f, max));
                    plane.resize(n, 0);
                    let used = rans_decode::<NS, false>(src, &self.ctx, &self.lut, plane);
                    assert_eq!(used, len);
                }
                Coder::Constriction => {
                    let mut det = [0u16; 256]; // 0x100 | s: deterministic symbol s
                    let mut models: Vec<Option<SmallContiguousLookupDecoderModel>> = vec![None; 256];
                    parse_tables(&self.tb, &mut tpos, |c, f, max| {
                        if f[max] == TOT { det[c] = 0x100 | max as u16 } else {
                            models[c] = Some(SmallContiguousLookupDecoderModel::from_nonzero_fixed_point_probabilities(f[..=max].iter().map(|&x| x as u16), false).unwrap());
                        }
                    });
                    let words: Vec<u16> = src.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                    let mut coder = SmallAnsCoder::from_compressed(words).unwrap();
                    plane.resize(n, 0);
                    for i in 0..n {
                        let c = self.ctx[i] as usize;
                        plane[i] = match &models[c] { Some(m) => coder.decode_symbol(m).unwrap() as u8, None => det[c] as u8 };
                    }
                    assert!(coder.is_empty());
                }
            }
        }
        assert_eq!(pos, obj.len());
        inverse::<T>(&self.planes, par, out);
    }
}

// ---------------------------------------------------------------- harness
fn read_pair(dir: &str, dt: &str, step: u32) -> Vec<Vec<u8>> {
    TENSORS.iter().map(|t| std::fs::read(format!("{dir}/step_{step:04}/{dt}/{t}.bin")).unwrap()).collect()
}
/// (offset, len) of every 4 MiB chunk; chunks never cross tensors
fn chunks(tensors: &[Vec<u8>]) -> Vec<(usize, usize, usize)> {
    let mut v = vec![];
    for (t, b) in tensors.iter().enumerate() {
        let mut o = 0;
        while o < b.len() { let l = CHUNK.min(b.len() - o); v.push((t, o, l)); o += l; }
    }
    v
}
fn best_of(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps).map(|_| { let t = Instant::now(); f(); t.elapsed() }).min().unwrap()
}

fn run<T: Elem>(dir: &str, outdir: &str, dt: &str, a: u32, b: u32, reps: usize) {
    let par = read_pair(dir, dt, a);
    let cur = read_pair(dir, dt, b);
    let ch = chunks(&cur);
    let raw: usize = cur.iter().map(|t| t.len()).sum();
    let mb = raw as f64 / 1e6;
    let flat: Vec<u8> = cur.concat();
    std::fs::write(format!("{outdir}/{dt}-{a}-{b}.bin"), &flat).unwrap();
    let sha = best_of(reps, || { std::hint::black_box(Sha256::digest(std::hint::black_box(&flat[..]))); });
    let sha_mbs = mb / sha.as_secs_f64();
    println!("## {dt} {a}->{b}: {} chunks, {:.2} MB raw; sha2 0.11 SHA-256 {:.0} MB/s", ch.len(), mb, sha_mbs);
    println!("| coder | size % | encode MB/s | decode MB/s | enc/SHA time | dec/SHA time |");
    for coder in [Coder::Constriction, Coder::Rans, Coder::Zstd] {
        let mut codec = Codec::new(coder);
        let mut objs: Vec<Vec<u8>> = vec![vec![]; ch.len()];
        let te = best_of(reps, || {
            for (k, &(t, o, l)) in ch.iter().enumerate() { codec.encode::<T>(&cur[t][o..o + l], &par[t][o..o + l], &mut objs[k]); }
        });
        let size: usize = objs.iter().map(|o| o.len()).sum();
        let pr: Vec<String> = codec.prof.iter().map(|t| format!("{:.1}", t * 1e3 / reps as f64)).collect();
        eprintln!("  {coder:?} encode ms/run: forward, histogram, tables, coding, tables-zstd+out = {}", pr.join(", "));
        let mut outb: Vec<Vec<u8>> = cur.iter().map(|t| vec![0u8; t.len()]).collect();
        let td = best_of(reps, || {
            for (k, &(t, o, l)) in ch.iter().enumerate() { codec.decode::<T>(&objs[k], &par[t][o..o + l], &mut outb[t][o..o + l]); }
        });
        assert!(outb == cur, "round trip failed for {coder:?}");
        let (e, d) = (mb / te.as_secs_f64(), mb / td.as_secs_f64());
        println!("| {:?} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} |", coder, 100.0 * size as f64 / raw as f64, e, d, te.as_secs_f64() / sha.as_secs_f64(), td.as_secs_f64() / sha.as_secs_f64());
    }
    // breakdown for the hand-written coder: transform alone, histogram+tables share
    let mut planes: [Vec<u8>; 4] = Default::default();
    let mut ctx = vec![];
    let tf = best_of(reps, || { for &(t, o, l) in &ch { forward::<T>(&cur[t][o..o + l], &par[t][o..o + l], &mut planes, &mut ctx); } });
    let mut out = vec![0u8; CHUNK];
    let ti = best_of(reps, || { for &(t, o, l) in &ch { inverse::<T>(&planes, &par[t][o..o + l], &mut out[..l]); } });
    let mut h = vec![];
    let th = best_of(reps, || { for &(_, _, l) in &ch { for j in 0..T::W { histogram(&planes[j][..l / T::W], &ctx[..l / T::W], &mut h); } } });
    println!("(parts: forward transform {:.0} MB/s, inverse {:.0} MB/s, histograms {:.0} MB/s)\n", mb / tf.as_secs_f64(), mb / ti.as_secs_f64(), mb / th.as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(|s| s.as_str()).unwrap_or("/tmp/delta-data");
    let outdir = args.get(2).map(|s| s.as_str()).unwrap_or("/tmp/rans-probe");
    let reps = 5;
    let only = args.get(3).cloned().unwrap_or_default(); // e.g. "bf16" or "fp32:200" (optional filter)
    for (a, b) in [(190, 200), (200, 400)] {
        for dt in ["bf16", "fp32"] {
            let tag = format!("{dt}:{a}");
            if !only.is_empty() && !tag.starts_with(&only) { continue; }
            if dt == "bf16" { run::<u16>(dir, outdir, dt, a, b, reps) } else { run::<u32>(dir, outdir, dt, a, b, reps) }
        }
    }
}
