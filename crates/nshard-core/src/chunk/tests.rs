//! Tests of the chunker: golden cut points, streaming versus in-memory cutting, short reads.
use super::*;

/// Deterministic pseudo-random bytes (xorshift64*), the same on every platform.
pub(crate) fn seeded(len: usize, mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn stream_lengths(data: &[u8], params: ChunkParams, segments: Vec<Segment>) -> Vec<usize> {
    let mut r = ChunkReader::new(data, Cutter::new(params), segments);
    let mut lens = Vec::new();
    while let Some(c) = r.next_chunk().expect("read") {
        lens.push(c.data.len());
    }
    lens
}

/// Golden cut points: these numbers are part of the on-disk format. If this test fails, the
/// chunker changed and old stores would stop deduplicating against new commits.
#[test]
fn golden_default_cdc_boundaries() {
    let data = seeded(40 << 20, 0x4e53_4841_5244);
    let lens = stream_lengths(&data, ChunkParams::default(), vec![]);
    assert_eq!(lens.iter().sum::<usize>(), data.len());
    // Same cut points as the crate's own iterator (FastCDC 2020, normalization level 1).
    let reference: Vec<usize> = v2020::FastCDC::new(&data, DEFAULT_MIN, DEFAULT_AVG, DEFAULT_MAX)
        .map(|c| c.length)
        .collect();
    assert_eq!(lens, reference);
    let small = ChunkParams::FastCdc {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
        layout: LayoutMode::None,
    };
    let small_lens = stream_lengths(&data[..1 << 20], small, vec![]);
    assert_eq!(
        (lens.clone(), small_lens[..8].to_vec()),
        (GOLDEN_DEFAULT.to_vec(), GOLDEN_SMALL.to_vec()),
        "chunk boundaries changed"
    );
}

const GOLDEN_DEFAULT: &[usize] = &[
    1811123, 1298348, 4648150, 2083290, 5567686, 12675142, 3165597, 2812321, 5688530, 2192853,
];
const GOLDEN_SMALL: &[usize] = &[70923, 74150, 94479, 125386, 87184, 112123, 142396, 24474];

#[test]
fn streaming_equals_in_memory_and_respects_segments() {
    let data = seeded(9 << 20, 7);
    let p = ChunkParams::FastCdc {
        min_size: 64 * 1024,
        avg_size: 256 * 1024,
        max_size: 1 << 20,
        layout: LayoutMode::None,
    };
    assert_eq!(
        stream_lengths(&data, p, vec![]),
        Cutter::new(p).cut_all(&data)
    );
    let segs = vec![
        Segment::new(1000, DataHint::Unknown),
        Segment::new(3 << 20, DataHint::Float(2)),
    ];
    let lens = stream_lengths(&data, p, segs);
    assert_eq!(lens[0], 1000);
    let mut acc = 0;
    let mut boundary_hit = false;
    for l in &lens {
        acc += l;
        boundary_hit |= acc == 1000 + (3 << 20);
    }
    assert!(boundary_hit, "no chunk ends at the segment boundary");
    assert_eq!(acc, data.len());
}

/// Parameters written before layouts existed read as `none` and serialize back byte for byte,
/// so old manifests keep their ids and meaning.
#[test]
fn params_without_layout_read_as_none() {
    let old =
        r#"{"algorithm":"fastcdc-2020","min_size":1048576,"avg_size":4194304,"max_size":16777216}"#;
    let p: ChunkParams = serde_json::from_str(old).expect("old params");
    assert_eq!(p.layout(), LayoutMode::None);
    assert_eq!(p, ChunkParams::default().with_layout(LayoutMode::None));
    assert_eq!(serde_json::to_string(&p).expect("json"), old);
    let fixed: ChunkParams =
        serde_json::from_str(r#"{"algorithm":"fixed","size":4194304}"#).expect("fixed");
    assert_eq!(fixed.layout(), LayoutMode::None);
    let new = serde_json::to_string(&ChunkParams::default()).expect("json");
    assert!(new.ends_with(r#","layout":"tensor-blocks"}"#), "{new}");
    assert_eq!(
        serde_json::from_str::<ChunkParams>(&new).expect("new"),
        ChunkParams::default()
    );
    for bad in [
        r#"{"algorithm":"fixed","size":4194304,"layout":"diagonal"}"#,
        r#"{"algorithm":"fixed","size":4194304,"layuot":"tensor-aligned"}"#,
    ] {
        assert!(serde_json::from_str::<ChunkParams>(bad).is_err(), "{bad}");
    }
}

/// A reader that hands out at most `step` bytes per call (pipes, slow disks).
pub(crate) struct Trickle<'a>(pub &'a [u8], pub usize);
impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(out.len()).min(self.1);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_cut_the_same() {
    let data = seeded(5 << 20, 11);
    let p = ChunkParams::FastCdc {
        min_size: 64 * 1024,
        avg_size: 256 * 1024,
        max_size: 1 << 20,
        layout: LayoutMode::None,
    };
    for step in [1000, 65_537, 3 << 20] {
        let mut r = ChunkReader::new(Trickle(&data, step), Cutter::new(p), vec![]);
        let mut got = Vec::new();
        let mut joined = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            got.push(c.data.len());
            joined.extend_from_slice(&c.data);
        }
        assert_eq!(got, Cutter::new(p).cut_all(&data), "step {step}");
        assert_eq!(joined, data);
    }
}

#[test]
fn fixed_blocks() {
    let data = seeded(10_000, 1);
    let lens = stream_lengths(
        &data,
        ChunkParams::Fixed {
            size: 4096,
            layout: LayoutMode::None,
        },
        vec![],
    );
    assert_eq!(lens, vec![4096, 4096, 1808]);
    assert!(stream_lengths(&[], ChunkParams::default(), vec![]).is_empty());
}

/// A dropped chunk's buffer is filled again by the next one (no fresh allocation per chunk), with
/// no stale bytes, and chunks still alive keep their own buffers.
#[test]
fn buffers_of_dropped_chunks_are_reused() {
    let data = seeded(3 << 20, 21);
    let p = ChunkParams::Fixed {
        size: 64 * 1024,
        layout: LayoutMode::None,
    };
    let mut r = ChunkReader::new(&data[..], Cutter::new(p), vec![]);
    let first = r.next_chunk().expect("read").expect("chunk");
    let first_ptr = first.data.as_ptr();
    let kept = r.next_chunk().expect("read").expect("chunk");
    assert_ne!(kept.data.as_ptr(), first_ptr);
    drop(first);
    let mut joined = Vec::new();
    let mut reused = 0;
    while let Some(c) = r.next_chunk().expect("read") {
        reused += usize::from(c.data.as_ptr() == first_ptr);
        joined.extend_from_slice(&c.data);
    }
    assert!(reused > 0, "no buffer was reused");
    assert_eq!(kept.data, data[64 * 1024..128 * 1024]);
    assert!(joined == data[128 * 1024..], "bytes differ");
}

/// A reader that records how many bytes each read call may fill.
struct Offered<'a>(&'a [u8], Vec<usize>);
impl Read for Offered<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.1.push(out.len());
        let n = self.0.len().min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// A header cut by the algorithm in front of fixed-block segments is read on its own, and two
/// cut segments between blocks together: the blocks' bytes go straight into their chunks'
/// buffers, never through the read buffer first (which faulted in and copied the whole file
/// twice); the chunks are those the segments give.
#[test]
fn blocks_after_a_header_are_not_read_through_the_buffer() {
    let p = ChunkParams::Fixed {
        size: 1 << 20,
        layout: LayoutMode::None,
    };
    let cutter = Cutter::new(p);
    let block = |len| Segment {
        len,
        hint: DataHint::Float(2),
        blocks: true,
    };
    let segments = vec![
        Segment::new(1000, DataHint::Unknown),
        block((2 << 20) - 1000),
        Segment::new(500, DataHint::Unknown),
        Segment::new(700, DataHint::Unknown),
        block(1 << 20),
    ];
    let total: u64 = segments.iter().map(|s| s.len).sum();
    let data = seeded(total as usize, 5);
    // What each segment cuts into, and the reads that should fetch it: a block's bytes in one
    // read of the block, cut segments in one read per run of them.
    let (mut want_lens, mut want_reads) = (Vec::new(), Vec::new());
    let mut run = 0;
    let mut at = 0usize;
    for s in &segments {
        let len = s.len as usize;
        if s.blocks {
            if run > 0 {
                want_reads.push(run);
                run = 0;
            }
            let mut left = s.len;
            while left > 0 {
                let n = cutter.block_cut(left);
                want_lens.push(n);
                want_reads.push(n);
                left -= n as u64;
            }
        } else {
            run += len;
            want_lens.extend(cutter.cut_all(&data[at..at + len]));
        }
        at += len;
    }
    assert_eq!(run, 0, "the table ends with a block segment");
    let mut r = ChunkReader::new(Offered(&data, Vec::new()), cutter, segments);
    let mut lens = Vec::new();
    let mut joined = Vec::new();
    while let Some(c) = r.next_chunk().expect("read") {
        lens.push(c.data.len());
        joined.extend_from_slice(&c.data);
    }
    assert!(joined == data, "bytes differ");
    assert_eq!(lens, want_lens);
    // The last read finds the end of the file (offered the whole read buffer).
    let offered = &r.reader.1;
    assert_eq!(
        offered[..offered.len() - 1],
        want_reads[..],
        "reads offered"
    );
    assert_eq!(want_reads[..4], [1000, 1 << 20, (1 << 20) - 1000, 1200]);
}
