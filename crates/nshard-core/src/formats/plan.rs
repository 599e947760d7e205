//! Tensor-aligned chunking: where segment boundaries go for files whose format NeuroShard
//! understands, before the chunker cuts inside each segment.
//!
//! A model file is split into the header (its own segment) and one segment per tensor; tensors
//! smaller than the minimum object size are grouped with their neighbours (in file order) until
//! the group reaches it, so objects stay large enough for cheap transfers. Because no chunk
//! straddles a tensor boundary, a tensor that did not change always deduplicates, whatever moved
//! around it (a grown header shifts every offset; CDC alone re-synchronises only a chunk later, and
//! chunks that straddle a changed and an unchanged tensor store both). The dtype of the tensor that
//! owns most of a segment tells the codec how to group bytes.
//!
//! Files in no known format, or whose header fails its bounded parser, are one plain segment.
//! The cut points this produces are part of the on-disk format (golden tests pin them), but
//! reading never depends on them: manifests list every chunk's offset.

use std::fs::File;
use std::io;

use super::{FileSource, Layout, Parsed, Source};
use crate::chunk::{ChunkParams, LayoutMode, Segment};
use crate::codec::DataHint;

/// How one file is to be cut.
#[derive(Debug)]
pub struct Plan {
    /// Segments covering the whole file (empty: one plain segment).
    pub segments: Vec<Segment>,
    /// The parameters to record in the manifest: the configured ones, with the layout that was
    /// really applied (`none` when the file fell back to plain chunking).
    pub chunking: ChunkParams,
    /// What the header parsed as (read whatever the layout, for the tensor table).
    pub parsed: Parsed,
}

impl Plan {
    /// The parsed layout, when the file is in a known format with a valid header.
    pub fn layout(&self) -> Option<&Layout> {
        match &self.parsed {
            Parsed::Layout(l) => Some(l),
            _ => None,
        }
    }
}

/// The codec hint for a safetensors dtype: floats are split into byte planes by width (fp8 is
/// one plane); everything else is left to plain zstd.
pub fn hint_for_dtype(dtype: &str) -> DataHint {
    match dtype {
        "BF16" | "F16" => DataHint::Float(2),
        "F32" => DataHint::Float(4),
        "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => DataHint::Float(1),
        _ => DataHint::Unknown,
    }
}

/// Chunk parameters for text and tabular data (CSV, JSON Lines, logs, source) up to
/// [`TEXT_MAX_FILE`]: FastCDC with a 64 KiB average (16 KiB minimum, 256 KiB maximum). An edit
/// to a dataset (rows inserted, changed or deleted anywhere) re-stores the rows and the two small
/// chunks around them instead of two 4 MiB chunks; the cost is a larger manifest (about 16 000
/// chunks per GiB).
pub const TEXT_PARAMS: ChunkParams = ChunkParams::FastCdc {
    min_size: 16 * 1024,
    avg_size: 64 * 1024,
    max_size: 256 * 1024,
    layout: LayoutMode::None,
};

/// Largest file cut with [`TEXT_PARAMS`]: about 260 000 chunks, a manifest of about 35 MB.
/// Larger text files get the configured parameters, so that their manifests stay well inside
/// the manifest limits.
pub const TEXT_MAX_FILE: u64 = 16 << 30;

/// Bytes [`looks_like_text`] looks at.
pub const TEXT_SNIFF: usize = 64 * 1024;

/// Whether a file starting with `head` (its first [`TEXT_SNIFF`] bytes) is text: UTF-8 (a
/// character cut at the end of the sample is fine), no NUL bytes, and at least one line break.
pub fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() || head.contains(&0) || !head.contains(&b'\n') {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// How a file's chunk parameters are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Params {
    /// The configured parameters for model and binary files; [`TEXT_PARAMS`] for text files when
    /// the configured algorithm is content-defined (a configured `fixed` applies to every file).
    ByKind(ChunkParams),
    /// Exactly these (re-cutting a file as a manifest records, as diff does).
    Exact(ChunkParams),
}

/// Plans the cutting of `file` (`size` bytes). Reads only the header (and, for a file in no
/// model format, its first [`TEXT_SNIFF`] bytes), with positioned reads (the file position is
/// left alone). A read error is the only error.
pub fn plan(file: &File, size: u64, params: Params) -> io::Result<Plan> {
    let mut src = FileSource::new(file, size);
    let parsed = super::parse_any(&mut src)?;
    let layout = match &parsed {
        Parsed::Layout(l) => Some(l),
        _ => None,
    };
    let params = match params {
        Params::Exact(p) => p,
        Params::ByKind(p @ ChunkParams::FastCdc { .. })
            if layout.is_none() && size <= TEXT_MAX_FILE =>
        {
            let mut head = vec![0u8; size.min(TEXT_SNIFF as u64) as usize];
            src.read_at(0, &mut head)?;
            if looks_like_text(&head) {
                TEXT_PARAMS
            } else {
                p
            }
        }
        Params::ByKind(p) => p,
    };
    let (segments, chunking) = segments_for(params, layout, size);
    Ok(Plan {
        segments,
        chunking,
        parsed,
    })
}

/// The segments for a file of `size` bytes under `params`, given its parsed header (`None`: no
/// known format), and the parameters to record.
pub fn segments_for(
    params: ChunkParams,
    parsed: Option<&Layout>,
    size: u64,
) -> (Vec<Segment>, ChunkParams) {
    match (params.layout(), parsed) {
        (mode, Some(l)) if mode.is_tensor_layout() => {
            let blocks = mode == LayoutMode::TensorBlocks;
            (
                tensor_segments(l, size, params.min_object() as u64, blocks),
                params,
            )
        }
        _ => (Vec::new(), params.with_layout(LayoutMode::None)),
    }
}

/// The segments of a model file of `file_size` bytes: the header alone, then each tensor of
/// at least `min_group` bytes alone, and runs of smaller neighbouring tensors grouped until a group
/// holds `min_group` bytes (a run cut short by a large tensor stays a smaller group). Bytes no
/// tensor claims (gaps, a tail) count as small pieces of their own. In a PyTorch zip the gaps are
/// the zip entries' local headers, which name the archive's root folder (torch names it after the
/// file): there every gap is a segment of its own and no group spans one, so a checkpoint saved
/// under another name re-stores only those headers, not the tensors beside them. The segments
/// cover the file exactly. With `blocks`, every segment but the header is cut into fixed blocks
/// ([`LayoutMode::TensorBlocks`]).
pub fn tensor_segments(
    layout: &Layout,
    file_size: u64,
    min_group: u64,
    blocks: bool,
) -> Vec<Segment> {
    let mut segments = vec![Segment::new(layout.header_len, DataHint::Unknown)];
    // Each piece: (length, hint, whether it is a gap between tensors).
    let mut pieces: Vec<(u64, DataHint, bool)> = Vec::with_capacity(layout.tensors.len() + 1);
    let mut pos = layout.header_len;
    for t in &layout.tensors {
        if t.start > pos {
            pieces.push((t.start - pos, DataHint::Unknown, true));
        }
        if t.end > t.start {
            pieces.push((t.end - t.start, hint_for_dtype(&t.dtype), false));
        }
        pos = pos.max(t.end);
    }
    if file_size > pos {
        pieces.push((file_size - pos, DataHint::Unknown, true));
    }
    let gaps_apart = layout.kind == super::FormatKind::PytorchZip;
    // Group: (length, hint of the largest piece, its length). A piece of at least `min_group`
    // bytes is a group of its own; smaller pieces in a row are grouped until the group reaches
    // `min_group`. A run of small pieces between two large ones stays a (small) group of its own
    // rather than joining a large tensor: otherwise a changed norm, or a small tensor added in
    // front, would re-store the first chunk of the large tensor next to it.
    let mut groups: Vec<(u64, DataHint, u64)> = Vec::new();
    let mut run: Option<(u64, DataHint, u64)> = None;
    for (len, hint, gap) in pieces {
        if len >= min_group || (gap && gaps_apart) {
            groups.extend(run.take());
            groups.push((len, hint, len));
            continue;
        }
        let g = run.get_or_insert((0, hint, 0));
        g.0 += len;
        if len > g.2 {
            g.1 = hint;
            g.2 = len;
        }
        if g.0 >= min_group {
            groups.extend(run.take());
        }
    }
    groups.extend(run);
    segments.extend(
        groups
            .into_iter()
            .map(|(len, hint, _)| Segment { len, hint, blocks }),
    );
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkReader, Cutter};
    use crate::formats::{safetensors, FormatKind, Tensor};

    fn tensor(name: &str, dtype: &str, start: u64, end: u64) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: dtype.into(),
            shape: vec![],
            start,
            end,
        }
    }

    #[test]
    fn groups_small_tensors_and_covers_the_file() {
        let l = Layout {
            kind: FormatKind::Safetensors,
            header_len: 100,
            tensors: vec![
                tensor("norm", "F32", 100, 140),
                tensor("big", "BF16", 140, 1140),
                tensor("a", "F32", 1140, 1200),
                tensor("b", "F32", 1210, 1300),
                tensor("c", "F8_E4M3", 1300, 1500),
                tensor("tail", "F32", 1500, 1520),
            ],
        };
        let s = tensor_segments(&l, 1530, 200, false);
        let lens: Vec<u64> = s.iter().map(|s| s.len).collect();
        // header | norm (alone: the tensor after it is large) | big | a+gap+b (reaches 200) |
        // c (large) | tail + trailing bytes
        assert_eq!(lens, vec![100, 40, 1000, 160, 200, 30]);
        assert_eq!(s[1].hint, DataHint::Float(4));
        assert_eq!(s[2].hint, DataHint::Float(2));
        assert_eq!(s[3].hint, DataHint::Float(4));
        assert_eq!(s[4].hint, DataHint::Float(1));
        assert_eq!(lens.iter().sum::<u64>(), 1530);
        // Only the header: one segment, then plain.
        let empty = Layout {
            kind: FormatKind::Safetensors,
            header_len: 50,
            tensors: vec![],
        };
        assert_eq!(tensor_segments(&empty, 50, 200, false).len(), 1);
        // Tensor blocks: the same segments, every one but the header cut into blocks.
        let b = tensor_segments(&l, 1530, 200, true);
        assert_eq!(b.iter().map(|s| s.len).collect::<Vec<_>>(), lens);
        assert_eq!(
            b.iter().map(|s| s.blocks).collect::<Vec<_>>(),
            vec![false, true, true, true, true, true]
        );
    }

    /// A seeded safetensors-like file: header, then tensors of the given (dtype, bytes).
    pub(crate) fn seeded_safetensors(tensors: &[(&str, u64)], seed: u64) -> Vec<u8> {
        let mut json = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
        let mut off = 0;
        for (i, (dtype, len)) in tensors.iter().enumerate() {
            let el = safetensors::dtype_size(dtype).expect("dtype");
            json.push_str(&format!(
                ",\"t{i:03}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
                len / el,
                off + len
            ));
            off += len;
        }
        json.push('}');
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.extend_from_slice(&crate::chunk::tests::seeded(off as usize, seed));
        f
    }

    fn cut(file: &[u8], params: ChunkParams) -> (Vec<(u64, usize, DataHint)>, ChunkParams) {
        let tmp = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(tmp.path(), file).expect("write");
        let f = File::open(tmp.path()).expect("open");
        let p = plan(&f, file.len() as u64, Params::ByKind(params)).expect("plan");
        let mut r = ChunkReader::new(&f, Cutter::new(p.chunking), p.segments);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            out.push((c.offset, c.data.len(), c.hint));
        }
        (out, p.chunking)
    }

    /// The seeded model file of the golden cut tests.
    fn golden_file() -> Vec<u8> {
        let mib = 1 << 20;
        seeded_safetensors(
            &[
                ("BF16", 9 * mib),
                ("F32", 4096),
                ("BF16", 3 * mib),
                ("F32", 4096),
                ("F32", 4096),
                ("BF16", 20 * mib + 6),
                ("F8_E4M3", 300_000),
                ("I64", 64),
            ],
            0x7e45,
        )
    }

    /// Golden cut points and codec hints of the tensor-aligned layout (the default of
    /// repositories made before tensor blocks) on a seeded file: part of the on-disk format (new
    /// commits of old files deduplicate against old objects only if these stay put).
    #[test]
    fn golden_tensor_aligned_cuts() {
        let file = golden_file();
        let aligned = ChunkParams::default().with_layout(LayoutMode::TensorAligned);
        let (chunks, recorded) = cut(&file, aligned);
        assert_eq!(recorded, aligned);
        let got: Vec<(usize, DataHint)> = chunks.iter().map(|c| (c.1, c.2)).collect();
        let f2 = DataHint::Float(2);
        assert_eq!(
            got,
            vec![
                // The header alone.
                (629, DataHint::Unknown),
                // Tensor 0 (9 MiB), cut by CDC inside.
                (8_830_373, f2),
                (606_811, f2),
                // A 4 KiB fp32 norm alone (the tensors around it are large), the 3 MiB tensor.
                (4096, DataHint::Float(4)),
                (3 * (1 << 20), f2),
                // Two norms grouped, then the 20 MiB tensor cut by CDC.
                (8192, DataHint::Float(4)),
                (8_265_652, f2),
                (9_286_226, f2),
                (3_419_648, f2),
                // The fp8 and i64 tail: small, grouped, hinted by the larger (one fp8 plane).
                (300_064, DataHint::Float(1)),
            ],
            "tensor-aligned cut points changed"
        );
        let total: usize = chunks.iter().map(|c| c.1).sum();
        assert_eq!(total, file.len());
    }

    /// Golden cut points of the default layout, tensor blocks, on the same file: the header by
    /// CDC, each tensor segment in 4 MiB blocks, a tail under 1 MiB joined to the block before it.
    #[test]
    fn golden_tensor_block_cuts() {
        let file = golden_file();
        let (chunks, recorded) = cut(&file, ChunkParams::default());
        assert_eq!(recorded, ChunkParams::default());
        assert_eq!(recorded.layout(), LayoutMode::TensorBlocks);
        let got: Vec<(usize, DataHint)> = chunks.iter().map(|c| (c.1, c.2)).collect();
        let (f2, mib) = (DataHint::Float(2), 1 << 20);
        assert_eq!(
            got,
            vec![
                (629, DataHint::Unknown),
                // Tensor 0 (9 MiB): 4 MiB, then 5 MiB (a 1 MiB tail is not under the minimum).
                (4 * mib, f2),
                (4 * mib, f2),
                (mib, f2),
                (4096, DataHint::Float(4)),
                (3 * mib, f2),
                (8192, DataHint::Float(4)),
                // 20 MiB + 6: four blocks, then the 4 MiB + 6 tail in one.
                (4 * mib, f2),
                (4 * mib, f2),
                (4 * mib, f2),
                (4 * mib, f2),
                (4 * mib + 6, f2),
                (300_064, DataHint::Float(1)),
            ],
            "tensor-block cut points changed"
        );
        let total: usize = chunks.iter().map(|c| c.1).sum();
        assert_eq!(total, file.len());
        // Read through the generic chunker and in short reads: the same cuts.
        let p = plan(
            &{
                let tmp = tempfile::NamedTempFile::new().expect("tmp");
                std::fs::write(tmp.path(), &file).expect("write");
                File::open(tmp.path()).expect("open")
            },
            file.len() as u64,
            Params::ByKind(ChunkParams::default()),
        )
        .expect("plan");
        for step in [1000, 65_537, 3 << 20] {
            let mut r = ChunkReader::new(
                crate::chunk::tests::Trickle(&file, step),
                Cutter::new(p.chunking),
                p.segments.clone(),
            );
            let mut joined = Vec::new();
            let mut lens = Vec::new();
            while let Some(c) = r.next_chunk().expect("read") {
                assert_eq!(c.offset as usize, joined.len());
                lens.push(c.data.len());
                joined.extend_from_slice(&c.data);
            }
            assert_eq!(
                lens,
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                "step {step}"
            );
            assert!(joined == file, "step {step}: bytes differ");
        }
        // A file that ends early (truncated while read) gives a short last chunk, then the end.
        let short = &file[..6 * mib + 100];
        let mut r = ChunkReader::new(short, Cutter::new(p.chunking), p.segments.clone());
        let mut lens = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            lens.push(c.data.len());
        }
        assert_eq!(lens, vec![629, 4 * mib, 2 * mib + 100 - 629]);
    }

    #[test]
    fn text_files_get_the_text_parameters() {
        let csv: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("{i},ü{},{}\n", i * 7, i % 13).into_bytes())
            .collect();
        let (chunks, recorded) = cut(&csv, ChunkParams::default());
        assert_eq!(recorded, TEXT_PARAMS);
        assert_eq!(
            chunks.iter().map(|c| c.1).collect::<Vec<_>>(),
            Cutter::new(TEXT_PARAMS).cut_all(&csv)
        );
        // Fixed blocks apply to every file; binary data keeps the configured parameters.
        let fixed = ChunkParams::Fixed {
            size: 1 << 20,
            layout: LayoutMode::None,
        };
        assert_eq!(cut(&csv, fixed).1, fixed);
        let bin = crate::chunk::tests::seeded(1 << 20, 3);
        assert_eq!(
            cut(&bin, ChunkParams::default()).1,
            ChunkParams::default().with_layout(LayoutMode::None)
        );
        assert!(
            looks_like_text(b"a,b\nc,\xc3"),
            "a character cut by the sample"
        );
        assert!(!looks_like_text(b"a,b\nc\xff,d"), "not UTF-8");
        assert!(!looks_like_text(b"a\0b\n"), "NUL");
        assert!(!looks_like_text(b"no line break"));
    }

    #[test]
    fn not_safetensors_falls_back_to_plain() {
        let data = crate::chunk::tests::seeded(3 << 20, 5);
        let (chunks, recorded) = cut(&data, ChunkParams::default());
        assert_eq!(recorded.layout(), LayoutMode::None);
        let plain = Cutter::new(ChunkParams::default()).cut_all(&data);
        assert_eq!(chunks.iter().map(|c| c.1).collect::<Vec<_>>(), plain);
        // A header that lies about its length is refused by the parser: plain as well.
        let mut lying = seeded_safetensors(&[("BF16", 1 << 20)], 1);
        lying[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(
            cut(&lying, ChunkParams::default()).1.layout(),
            LayoutMode::None
        );
        // Layout `none` never looks at the file.
        let file = seeded_safetensors(&[("BF16", 2 << 20)], 1);
        let none = ChunkParams::default().with_layout(LayoutMode::None);
        let (chunks, recorded) = cut(&file, none);
        assert_eq!(recorded, none);
        assert_eq!(
            chunks.iter().map(|c| c.1).collect::<Vec<_>>(),
            Cutter::new(none).cut_all(&file)
        );
    }
}
