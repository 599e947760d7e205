//! A transformer-like checkpoint: embeddings, per-layer attention (q/k/v/o) and MLP (up/down)
//! projections with two norms, a final norm and an LM head, written as safetensors.

use std::io::Write;

use crate::rng::{Dtype, NormalTable, Rng};

/// Standard deviation of generated weights.
pub const WEIGHT_STD: f32 = 0.02;

/// A tensor to write: its name, dtype, shape and how its values are distributed.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// Name in the header.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Mean of the values (1.0 for norms, 0.0 for weights).
    pub mean: f32,
}

impl TensorSpec {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size() as u64
    }
}

/// The model's shape, chosen from a size target.
#[derive(Clone, Copy, Debug)]
pub struct Arch {
    /// Hidden size.
    pub hidden: u64,
    /// Number of layers.
    pub layers: u64,
    /// Vocabulary size.
    pub vocab: u64,
}

impl Arch {
    /// The architecture whose checkpoint is closest to `bytes` in `dtype`: hidden size a multiple
    /// of 64 (about 24 layers), vocabulary 8 × hidden, MLP width 2 × hidden (so q and v are a quarter
    /// of every layer's bytes).
    pub fn for_size(bytes: u64, dtype: Dtype) -> Arch {
        let elems = (bytes / dtype.size() as u64).max(1) as f64;
        let hidden = ((elems / (8.0 * 24.0 + 16.0)).sqrt() / 64.0)
            .round()
            .max(1.0) as u64
            * 64;
        let vocab = 8 * hidden;
        let fixed = (2 * vocab * hidden + hidden) as f64;
        let per_layer = (8 * hidden * hidden + 2 * hidden) as f64;
        let layers = ((elems - fixed) / per_layer).round().max(1.0) as u64;
        Arch {
            hidden,
            layers,
            vocab,
        }
    }

    /// The tensors in file order.
    pub fn tensors(&self, dtype: Dtype) -> Vec<TensorSpec> {
        let d = self.hidden;
        let t = |name: String, shape: Vec<u64>, mean: f32| TensorSpec {
            name,
            dtype,
            shape,
            mean,
        };
        let mut v = vec![t(
            "model.embed_tokens.weight".into(),
            vec![self.vocab, d],
            0.0,
        )];
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            v.push(t(format!("{p}.input_layernorm.weight"), vec![d], 1.0));
            for x in ["q", "k", "v", "o"] {
                v.push(t(format!("{p}.self_attn.{x}_proj.weight"), vec![d, d], 0.0));
            }
            v.push(t(
                format!("{p}.post_attention_layernorm.weight"),
                vec![d],
                1.0,
            ));
            v.push(t(format!("{p}.mlp.up_proj.weight"), vec![2 * d, d], 0.0));
            v.push(t(format!("{p}.mlp.down_proj.weight"), vec![d, 2 * d], 0.0));
        }
        v.push(t("model.norm.weight".into(), vec![d], 1.0));
        v.push(t("lm_head.weight".into(), vec![self.vocab, d], 0.0));
        v
    }
}

/// The safetensors header for `tensors` laid out back to back in this order: the 8-byte length,
/// then the JSON, padded with spaces so that data starts 8-byte aligned (as the reference writer
/// does).
pub fn header_bytes(
    metadata: &[(String, String)],
    tensors: &[(String, &str, Vec<u64>, u64)],
) -> Vec<u8> {
    let mut json = String::from("{\"__metadata__\":{");
    for (i, (k, v)) in metadata.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(k).expect("string"));
        json.push(':');
        json.push_str(&serde_json::to_string(v).expect("string"));
    }
    json.push('}');
    let mut off = 0u64;
    for (name, dtype, shape, len) in tensors {
        let shape: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        json.push_str(&format!(
            ",{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            serde_json::to_string(name).expect("string"),
            shape.join(","),
            off + len
        ));
        off += len;
    }
    json.push('}');
    while (8 + json.len()) % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

/// Writes the values of `spec` drawn from the stream `(seed, name)`.
pub fn write_random<W: Write>(
    w: &mut W,
    table: &NormalTable,
    spec: &TensorSpec,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = Rng::named(seed, &spec.name);
    let mut left = spec.len() as usize;
    let mut buf = vec![0u8; left.min(1 << 20)];
    while left > 0 {
        let n = left.min(buf.len());
        table.fill(&mut rng, spec.dtype, spec.mean, WEIGHT_STD, &mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n;
    }
    Ok(())
}

/// Writes a whole checkpoint; returns (architecture, tensor count, bytes written).
pub fn generate<W: Write>(
    w: &mut W,
    bytes: u64,
    dtype: Dtype,
    seed: u64,
) -> std::io::Result<(Arch, usize, u64)> {
    let arch = Arch::for_size(bytes, dtype);
    let specs = arch.tensors(dtype);
    let table = NormalTable::new();
    let meta = vec![
        ("format".to_string(), "pt".to_string()),
        ("generator".to_string(), "nshard-gen".to_string()),
        ("seed".to_string(), seed.to_string()),
    ];
    let desc: Vec<_> = specs
        .iter()
        .map(|s| (s.name.clone(), s.dtype.name(), s.shape.clone(), s.len()))
        .collect();
    let header = header_bytes(&meta, &desc);
    w.write_all(&header)?;
    let mut total = header.len() as u64;
    for s in &specs {
        write_random(w, &table, s, seed)?;
        total += s.len();
    }
    Ok((arch, specs.len(), total))
}
