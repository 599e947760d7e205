//! `store-sim`: what a sequence of file versions would add to a store under a chunking/codec choice
//! that `config.toml` cannot express (byte grouping without tensor alignment, tensor alignment
//! without byte grouping). Uses the library's own planner, chunker and encoder; nothing is written.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use nshard_core::format::{
    hint_for_dtype, parse_safetensors, plan_cuts, ChunkReader, Cutter, DataHint, Encoder,
    PlanParams, Segment,
};
use nshard_core::ObjectId;

/// How chunks are hinted to the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SimCodec {
    /// As commit does: the layout's hints.
    Auto,
    /// Every chunk plain zstd (no byte grouping).
    Zstd,
    /// One segment for the whole file, hinted with the dtype that holds most of a safetensors
    /// file's bytes: byte grouping without tensor alignment.
    FileDtype,
}

/// Prints one JSON line per file: raw bytes of new chunks and their encoded size.
pub fn run(params: PlanParams, codec: SimCodec, files: &[PathBuf]) -> Result<()> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut enc = Encoder::new();
    let mut stored_total = 0u64;
    for path in files {
        let t0 = Instant::now();
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata()?.len();
        let plan = plan_cuts(&f, size, params)?;
        let cut = plan.chunking;
        let segments = match codec {
            SimCodec::Auto => plan.segments,
            SimCodec::Zstd => plan
                .segments
                .into_iter()
                .map(|s| Segment {
                    hint: DataHint::Unknown,
                    ..s
                })
                .collect(),
            SimCodec::FileDtype => {
                let mut r = &f;
                let hint = parse_safetensors(&mut r, size)
                    .ok()
                    .and_then(|l| {
                        let mut by: Vec<(u64, DataHint)> = Vec::new();
                        for t in &l.tensors {
                            let h = hint_for_dtype(&t.dtype);
                            match by.iter_mut().find(|x| x.1 == h) {
                                Some(x) => x.0 += t.end - t.start,
                                None => by.push((t.end - t.start, h)),
                            }
                        }
                        by.into_iter().max_by_key(|x| x.0).map(|x| x.1)
                    })
                    .unwrap_or_default();
                std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0))?;
                vec![Segment::new(size, hint)]
            }
        };
        let mut reader = ChunkReader::new(&f, Cutter::new(cut), segments);
        let (mut chunks, mut new_chunks, mut new_raw, mut stored) = (0u64, 0u64, 0u64, 0u64);
        while let Some(c) = reader.next_chunk()? {
            chunks += 1;
            let id = ObjectId::of(&c.data);
            if seen.insert(id) {
                new_chunks += 1;
                new_raw += c.data.len() as u64;
                stored += enc.encode(&c.data, c.hint).len() as u64;
            }
        }
        stored_total += stored;
        println!(
            "{}",
            serde_json::json!({
                "file": path, "size": size, "chunks": chunks, "new_chunks": new_chunks,
                "new_raw": new_raw, "stored_added": stored, "stored_total": stored_total,
                "seconds": (t0.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            })
        );
    }
    Ok(())
}
