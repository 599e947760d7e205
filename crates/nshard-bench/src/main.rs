//! `nshard-gen`: deterministic checkpoint and dataset histories for NeuroShard's benchmarks.
//!
//! The same arguments always produce the same bytes (seeded xorshift64* and a fixed table of normal
//! samples), so benchmark figures can be reproduced anywhere.

mod dataset;
mod fill;
mod model;
mod mutate;
mod rng;
mod sim;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::rng::Dtype;

/// Writes deterministic safetensors checkpoints and CSV/JSONL datasets, and derives later versions
/// from earlier ones. A one-line JSON summary goes to stdout.
#[derive(Parser)]
#[command(name = "nshard-gen", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a transformer-like safetensors checkpoint (embeddings, q/k/v/o, MLP, norms, LM head;
    /// weights normal(0, 0.02)).
    Model {
        /// Approximate file size: 1GiB, 256MiB, 100MB, 12345.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Element type.
        #[arg(long, value_enum, default_value = "bf16")]
        dtype: DtypeArg,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write a dataset of about `--size` bytes.
    Dataset {
        /// Approximate file size.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Row format.
        #[arg(long, value_enum, default_value = "csv")]
        format: FormatArg,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Derive a new version of a checkpoint or dataset.
    ///
    /// Checkpoint kinds: tensors:5% (re-randomise 5 % of the tensors), last-layers:N (re-randomise
    /// the last N layers), low-rank:q,v[:R] (add a rank-R update, default 8, to those attention
    /// projections in every layer), metadata (edit __metadata__: every offset shifts), add-tensor
    /// (a new tensor in front: every offset shifts), all-slight (every weight changes by ~1 %).
    /// Dataset kinds: append:10% (rows added at the end), insert:1% (a block of rows inserted in the
    /// middle).
    Mutate {
        /// The change.
        #[arg(long)]
        kind: String,
        /// The earlier version.
        #[arg(long)]
        from: PathBuf,
        /// Random seed of the change.
        #[arg(long, default_value_t = 2)]
        seed: u64,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Simulate committing FILES in order to an empty store (nothing is written): one JSON line
    /// per file with the raw and encoded bytes of its new chunks. For chunking/codec choices that
    /// `.shard/config.toml` cannot select.
    StoreSim {
        /// Chunker.
        #[arg(long, value_enum, default_value = "cdc")]
        chunking: ChunkingArg,
        /// Cut model files tensor-aligned.
        #[arg(long)]
        tensor_aligned: bool,
        /// FastCDC with this average chunk size (a power of two; minimum a quarter, maximum four
        /// times) for every file, instead of choosing parameters by kind of file as commit does.
        #[arg(long, value_parser = parse_size)]
        cdc_avg: Option<u64>,
        /// Codec hints.
        #[arg(long, value_enum, default_value = "auto")]
        codec: sim::SimCodec,
        /// The versions, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Put N small, distinct, valid encoded objects on a remote (a directory, `http(s)://`,
    /// `s3://bucket/prefix`), for gc and listing benchmarks. No record names them. S3 settings
    /// come from the AWS_* variables, an HTTP token from NSHARD_TOKEN.
    FillRemote {
        /// The remote URL.
        #[arg(long)]
        url: String,
        /// How many objects.
        #[arg(long)]
        objects: u64,
        /// Raw bytes per object (before encoding; at least 8).
        #[arg(long, value_parser = parse_size, default_value = "100")]
        size: u64,
        /// Puts in flight at once.
        #[arg(long, default_value_t = 32)]
        jobs: usize,
        /// Random seed (objects of different seeds are distinct).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ChunkingArg {
    /// FastCDC 1/4/16 MiB.
    Cdc,
    /// Fixed 4 MiB blocks.
    Fixed,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    Bf16,
    Fp32,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Jsonl,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "unknown size unit {u:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok((n * mul as f64) as u64)
}

fn parse_pct(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("bad percentage {s:?}"))?;
    if !(0.0..=100.0).contains(&v) {
        bail!("percentage {s:?} must be in 0..100");
    }
    Ok(v / 100.0)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let t0 = Instant::now();
    let summary = match cli.cmd {
        Cmd::StoreSim {
            chunking,
            tensor_aligned,
            cdc_avg,
            codec,
            files,
        } => {
            use nshard_core::format::PlanParams as Params;
            use nshard_core::format::{ChunkParams, LayoutMode};
            let base = match chunking {
                ChunkingArg::Cdc => ChunkParams::default(),
                ChunkingArg::Fixed => ChunkParams::Fixed {
                    size: nshard_core::format::DEFAULT_FIXED_CHUNK,
                    layout: LayoutMode::None,
                },
            };
            let mode = if tensor_aligned {
                LayoutMode::TensorAligned
            } else {
                LayoutMode::None
            };
            let params = match cdc_avg {
                Some(avg) => {
                    let avg = u32::try_from(avg).context("--cdc-avg too large")?;
                    let p = ChunkParams::FastCdc {
                        min_size: avg / 4,
                        avg_size: avg,
                        max_size: avg.saturating_mul(4),
                        layout: mode,
                    };
                    p.validate().map_err(anyhow::Error::msg)?;
                    Params::Exact(p)
                }
                None => Params::ByKind(base.with_layout(mode)),
            };
            return sim::run(params, codec, &files);
        }
        Cmd::FillRemote {
            url,
            objects,
            size,
            jobs,
            seed,
        } => fill::run(&fill::Fill {
            url,
            objects,
            size: usize::try_from(size).context("--size too large")?,
            jobs,
            seed,
        })?,
        Cmd::Model {
            size,
            dtype,
            seed,
            out,
        } => {
            let dtype = match dtype {
                DtypeArg::Bf16 => Dtype::Bf16,
                DtypeArg::Fp32 => Dtype::F32,
            };
            let mut w = BufWriter::with_capacity(
                4 << 20,
                File::create(&out).with_context(|| format!("creating {}", out.display()))?,
            );
            let (arch, tensors, bytes) = model::generate(&mut w, size, dtype, seed)?;
            w.flush()?;
            serde_json::json!({
                "out": out, "bytes": bytes, "dtype": dtype.name(), "tensors": tensors,
                "layers": arch.layers, "hidden": arch.hidden, "vocab": arch.vocab,
            })
        }
        Cmd::Dataset {
            size,
            format,
            seed,
            out,
        } => {
            let format = match format {
                FormatArg::Csv => dataset::Format::Csv,
                FormatArg::Jsonl => dataset::Format::Jsonl,
            };
            let mut w = BufWriter::with_capacity(
                4 << 20,
                File::create(&out).with_context(|| format!("creating {}", out.display()))?,
            );
            let (rows, bytes) = dataset::generate(&mut w, format, size, seed)?;
            w.flush()?;
            serde_json::json!({ "out": out, "bytes": bytes, "rows": rows })
        }
        Cmd::Mutate {
            kind,
            from,
            seed,
            out,
        } => {
            let (name, arg) = kind.split_once(':').unwrap_or((kind.as_str(), ""));
            let model_kind = match name {
                "tensors" => Some(mutate::ModelKind::Tensors(parse_pct(arg)?)),
                "last-layers" => Some(mutate::ModelKind::LastLayers(
                    arg.parse().context("last-layers:N needs a count")?,
                )),
                "low-rank" => {
                    let (which, rank) = match arg.split_once(':') {
                        Some((w, r)) => (w, r.parse().context("low-rank rank")?),
                        None => (arg, 8),
                    };
                    let which: Vec<String> = which.split(',').map(str::to_string).collect();
                    if which
                        .iter()
                        .any(|w| !["q", "k", "v", "o"].contains(&w.as_str()))
                        || rank == 0
                    {
                        bail!(
                            "low-rank:LIST[:RANK] takes projections among q,k,v,o and a rank > 0"
                        );
                    }
                    Some(mutate::ModelKind::LowRank(which, rank))
                }
                "metadata" => Some(mutate::ModelKind::Metadata),
                "add-tensor" => Some(mutate::ModelKind::AddTensor),
                "all-slight" => Some(mutate::ModelKind::AllSlight),
                "append" | "insert" => None,
                _ => bail!("unknown kind {kind:?} (see --help)"),
            };
            if let Some(k) = model_kind {
                let c = mutate::mutate_model(&from, &out, &k, seed)?;
                serde_json::json!({
                    "out": out, "bytes": c.file_bytes, "changed_tensors": c.names.len(),
                    "changed_bytes": c.bytes, "changed_zstd_bytes": c.zstd_bytes,
                })
            } else {
                let p = parse_pct(arg)?;
                let k = if name == "append" {
                    dataset::DataKind::Append(p)
                } else {
                    dataset::DataKind::Insert(p)
                };
                let (rows, bytes, z) = dataset::mutate(&from, &out, k, seed)?;
                serde_json::json!({ "out": out, "rows_added": rows, "changed_bytes": bytes, "changed_zstd_bytes": z })
            }
        }
    };
    let mut s = summary;
    s["seconds"] = serde_json::json!((t0.elapsed().as_secs_f64() * 100.0).round() / 100.0);
    println!("{s}");
    Ok(())
}
