//! Derives version 2 of a checkpoint from version 1, the way real histories change.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nshard_core::format::Tensor;

use crate::model::{header_bytes, write_random, TensorSpec, WEIGHT_STD};
use crate::rng::{Dtype, NormalTable, Rng};

/// A change to a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelKind {
    /// Re-randomise this fraction of the tensors (chosen at random, at least one).
    Tensors(f64),
    /// Re-randomise every tensor of the last `n` layers.
    LastLayers(u64),
    /// Add a rank-`r` update to these attention projections (`q`, `k`, `v`, `o`) in every layer.
    LowRank(Vec<String>, usize),
    /// Edit `__metadata__` (the header grows, so every tensor offset shifts).
    Metadata,
    /// Add a small tensor in front of all others (header and every offset shift).
    AddTensor,
    /// Multiply every weight by (1 + 1 % noise): every value changes a little.
    AllSlight,
}

/// What changed, for the benchmark's reference figures.
pub struct Changed {
    /// Names of new or changed tensors (plus `__header__` when the header changed).
    pub names: Vec<String>,
    /// Raw bytes of the changed tensors (and the header when it changed).
    pub bytes: u64,
    /// The same bytes compressed with zstd level 1, tensor by tensor.
    pub zstd_bytes: u64,
    /// Size of the new file.
    pub file_bytes: u64,
}

enum Source {
    Copy(u64),
    Random(TensorSpec),
    LowRank(u64, usize),
    Slight(u64),
}

fn layer_of(name: &str) -> Option<u64> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Applies `kind` to the safetensors file `from`, writing `to`.
pub fn mutate_model(from: &Path, to: &Path, kind: &ModelKind, seed: u64) -> Result<Changed> {
    let mut f = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let size = f.metadata()?.len();
    let layout = nshard_core::format::parse_safetensors(&mut f, size)
        .with_context(|| format!("{} is not a safetensors file", from.display()))?;
    f.seek(SeekFrom::Start(0))?;
    let mut header = vec![0u8; layout.header_len as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header[8..])?;
    let mut meta: Vec<(String, String)> = json
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let ts = &layout.tensors;
    let dtype_of = |t: &Tensor| {
        Dtype::from_name(&t.dtype)
            .with_context(|| format!("tensor {}: dtype {} is not generated here", t.name, t.dtype))
    };
    let spec_of = |t: &Tensor| -> Result<TensorSpec> {
        Ok(TensorSpec {
            name: t.name.clone(),
            dtype: dtype_of(t)?,
            shape: t.shape.clone(),
            mean: if t.shape.len() == 1 { 1.0 } else { 0.0 },
        })
    };
    let mut rng = Rng::new(seed ^ 0x6d75_7461_7465);
    let mut sources: Vec<(String, String, Vec<u64>, u64, Source)> = Vec::new();
    let keep = |t: &Tensor| {
        (
            t.name.clone(),
            t.dtype.clone(),
            t.shape.clone(),
            t.end - t.start,
            Source::Copy(t.start),
        )
    };
    let mut header_changed = false;
    match kind {
        ModelKind::Tensors(frac) => {
            let k = ((ts.len() as f64 * frac).ceil() as usize).clamp(1, ts.len());
            let mut pick: Vec<usize> = (0..ts.len()).collect();
            for i in 0..k {
                let j = i + rng.below((ts.len() - i) as u64) as usize;
                pick.swap(i, j);
            }
            let chosen: std::collections::HashSet<usize> = pick[..k].iter().copied().collect();
            for (i, t) in ts.iter().enumerate() {
                if chosen.contains(&i) {
                    sources.push((
                        t.name.clone(),
                        t.dtype.clone(),
                        t.shape.clone(),
                        t.end - t.start,
                        Source::Random(spec_of(t)?),
                    ));
                } else {
                    sources.push(keep(t));
                }
            }
        }
        ModelKind::LastLayers(n) => {
            let max = ts
                .iter()
                .filter_map(|t| layer_of(&t.name))
                .max()
                .context("no model.layers.N tensors")?;
            for t in ts {
                match layer_of(&t.name) {
                    Some(l) if l + n > max => sources.push((
                        t.name.clone(),
                        t.dtype.clone(),
                        t.shape.clone(),
                        t.end - t.start,
                        Source::Random(spec_of(t)?),
                    )),
                    _ => sources.push(keep(t)),
                }
            }
        }
        ModelKind::LowRank(which, r) => {
            for t in ts {
                let hit = which
                    .iter()
                    .any(|x| t.name.ends_with(&format!(".self_attn.{x}_proj.weight")));
                if hit && t.shape.len() == 2 {
                    dtype_of(t)?;
                    sources.push((
                        t.name.clone(),
                        t.dtype.clone(),
                        t.shape.clone(),
                        t.end - t.start,
                        Source::LowRank(t.start, *r),
                    ));
                } else {
                    sources.push(keep(t));
                }
            }
        }
        ModelKind::Metadata => {
            header_changed = true;
            meta.push((
                "description".into(),
                "fine-tuned on the 2024-06 instruction mix; see the model card for the evaluation"
                    .into(),
            ));
            sources.extend(ts.iter().map(keep));
        }
        ModelKind::AddTensor => {
            header_changed = true;
            let t0 = ts.first().context("no tensors")?;
            let d = *t0.shape.last().context("scalar tensor")?;
            let spec = TensorSpec {
                name: "model.embed_positions.weight".into(),
                dtype: dtype_of(t0)?,
                shape: vec![16, d],
                mean: 0.0,
            };
            sources.push((
                spec.name.clone(),
                spec.dtype.name().into(),
                spec.shape.clone(),
                spec.len(),
                Source::Random(spec),
            ));
            sources.extend(ts.iter().map(keep));
        }
        ModelKind::AllSlight => {
            for t in ts {
                dtype_of(t)?;
                sources.push((
                    t.name.clone(),
                    t.dtype.clone(),
                    t.shape.clone(),
                    t.end - t.start,
                    Source::Slight(t.start),
                ));
            }
        }
    }
    let new_header = if header_changed {
        let desc: Vec<_> = sources
            .iter()
            .map(|(n, d, s, l, _)| (n.clone(), d.as_str(), s.clone(), *l))
            .collect();
        header_bytes(&meta, &desc)
    } else {
        header.clone()
    };
    let table = NormalTable::new();
    let mut zstd = zstd::bulk::Compressor::new(1)?;
    let mut changed = Changed {
        names: vec![],
        bytes: 0,
        zstd_bytes: 0,
        file_bytes: 0,
    };
    let mut note = |name: &str, data: &[u8], zstd: &mut zstd::bulk::Compressor| -> Result<()> {
        changed.names.push(name.to_string());
        changed.bytes += data.len() as u64;
        changed.zstd_bytes += zstd.compress(data)?.len().min(data.len()) as u64;
        Ok(())
    };
    if header_changed {
        note("__header__", &new_header, &mut zstd)?;
    }
    let mut w = BufWriter::with_capacity(
        4 << 20,
        File::create(to).with_context(|| format!("creating {}", to.display()))?,
    );
    w.write_all(&new_header)?;
    let mut total = new_header.len() as u64;
    let mut buf = Vec::new();
    for (name, dtype, shape, len, src) in &sources {
        buf.resize(*len as usize, 0);
        match src {
            Source::Copy(start) => {
                f.seek(SeekFrom::Start(*start))?;
                f.read_exact(&mut buf)?;
            }
            Source::Random(spec) => {
                buf.clear();
                write_random(&mut buf, &table, spec, seed ^ 0x7632)?;
                note(name, &buf, &mut zstd)?;
            }
            Source::LowRank(start, r) => {
                f.seek(SeekFrom::Start(*start))?;
                f.read_exact(&mut buf)?;
                let dt = Dtype::from_name(dtype).context("dtype")?;
                low_rank(
                    &mut buf,
                    dt,
                    shape[0] as usize,
                    shape[1] as usize,
                    *r,
                    &table,
                    &mut Rng::named(seed, name),
                );
                note(name, &buf, &mut zstd)?;
            }
            Source::Slight(start) => {
                f.seek(SeekFrom::Start(*start))?;
                f.read_exact(&mut buf)?;
                let dt = Dtype::from_name(dtype).context("dtype")?;
                let mut rng = Rng::named(seed, name);
                let n = buf.len() / dt.size();
                for i in 0..n {
                    let v = dt.get(&buf, i);
                    dt.set(&mut buf, i, v * (1.0 + 0.01 * table.sample(rng.next_u64())));
                }
                note(name, &buf, &mut zstd)?;
            }
        }
        w.write_all(&buf)?;
        total += len;
    }
    w.flush()?;
    if total != new_header.len() as u64 + sources.iter().map(|s| s.3).sum::<u64>() {
        bail!("internal: wrote {total} bytes");
    }
    changed.file_bytes = total;
    Ok(changed)
}

/// W (rows × cols) += A · B with A (rows × r) and B (r × cols) normal, scaled so that the update's
/// entries have a tenth of the weights' standard deviation: every value of the tensor changes, as
/// when a LoRA adapter is merged.
fn low_rank(
    buf: &mut [u8],
    dt: Dtype,
    rows: usize,
    cols: usize,
    r: usize,
    table: &NormalTable,
    rng: &mut Rng,
) {
    let s = ((WEIGHT_STD / 10.0) / (r as f32).sqrt()).sqrt();
    let a: Vec<f32> = (0..rows * r)
        .map(|_| s * table.sample(rng.next_u64()))
        .collect();
    let b: Vec<f32> = (0..r * cols)
        .map(|_| s * table.sample(rng.next_u64()))
        .collect();
    let mut row = vec![0f32; cols];
    for i in 0..rows {
        row.iter_mut().for_each(|x| *x = 0.0);
        for k in 0..r {
            let aik = a[i * r + k];
            for (x, bk) in row.iter_mut().zip(&b[k * cols..(k + 1) * cols]) {
                *x += aik * bk;
            }
        }
        for (j, u) in row.iter().enumerate() {
            let idx = i * cols + j;
            let v = dt.get(buf, idx);
            dt.set(buf, idx, v + u);
        }
    }
}
