//! Llama (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models") as
//! llama.cpp runs it from a GGUF file (`src/models/llama.cpp` in llama.cpp): pre-norm blocks with
//! RMSNorm, grouped-query attention with rotary positions, a SwiGLU MLP, and an output
//! projection that may be tied to the token embedding (SmolLM2 ties it).
//!
//! Departures from the reference: the attention mask and the position ids are explicit inputs
//! (causal and 0, 1, 2… by default) so Set-Based Prompting can change them, and attention
//! probabilities, queries, keys and the residual stream can be captured per layer ([`Taps`]).

use super::taps::{Captures, Taps};
use crate::backend::{AttentionShape, Backend, Mask, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorData};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub context_len: usize,
}

impl LlamaConfig {
    /// SmolLM2-135M-Instruct, the bundled chat model.
    pub fn smollm2_135m() -> Self {
        LlamaConfig {
            n_layers: 30,
            d_model: 576,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            ffn_dim: 1536,
            vocab_size: 49152,
            rope_base: 100_000.0,
            rms_eps: 1e-5,
            context_len: 8192,
        }
    }

    /// Reads `llama.*` keys; any other `general.architecture` is refused by name.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        let arch = header.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::UnsupportedArchitecture(arch.to_string()));
        }
        let get =
            |key: &str| -> Result<usize> { Ok(header.get_u64(&format!("llama.{key}"))? as usize) };
        let n_heads = get("attention.head_count")?;
        let d_model = get("embedding_length")?;
        let n_kv_heads = get("attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = get("rope.dimension_count").unwrap_or(d_model / n_heads.max(1));
        let vocab_size = header
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| Error::BadModel("no token_embd.weight tensor".into()))?
            as usize;
        let config = LlamaConfig {
            n_layers: get("block_count")?,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: get("feed_forward_length")?,
            vocab_size,
            rope_base: header.get_f64("llama.rope.freq_base").unwrap_or(10_000.0) as f32,
            rms_eps: header
                .get_f64("llama.attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5) as f32,
            context_len: get("context_length")?,
        };
        if n_heads == 0
            || n_kv_heads == 0
            || n_heads % n_kv_heads != 0
            || n_heads * head_dim != d_model
            || config.n_layers == 0
            || config.n_layers > 1024
        {
            return Err(Error::BadModel(format!(
                "inconsistent llama shape: {config:?}"
            )));
        }
        Ok(config)
    }

    pub fn attention_shape(&self) -> AttentionShape {
        AttentionShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }
}

struct Attention<B: Backend> {
    query: B::Matrix,
    key: B::Matrix,
    value: B::Matrix,
    output: B::Matrix,
}

struct Mlp<B: Backend> {
    gate: B::Matrix,
    up: B::Matrix,
    down: B::Matrix,
}

struct Block<B: Backend> {
    attention_norm: B::Tensor,
    attention: Attention<B>,
    mlp_norm: B::Tensor,
    mlp: Mlp<B>,
}

pub struct Llama<B: Backend> {
    pub config: LlamaConfig,
    embedding: B::Matrix,
    blocks: Vec<Block<B>>,
    final_norm: B::Tensor,
    /// None: tied to `embedding`.
    output: Option<B::Matrix>,
}

impl<B: Backend> Llama<B> {
    /// Runs `ids` (new tokens at `positions`, under `mask`) through the model, appending to
    /// `caches`, and returns the logits of the last `logit_rows` tokens: `(logit_rows, vocab)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        backend: &B,
        ids: &[u32],
        positions: &[u32],
        mask: &Mask,
        caches: &mut [B::Cache],
        logit_rows: usize,
        taps: Taps,
    ) -> Result<(B::Tensor, Captures<B>)> {
        let c = &self.config;
        let shape = c.attention_shape();
        let mut captures = Captures::default();
        // Captured values are shown and compared across backends: keep activations in f32.
        let matmul = |x: &B::Tensor, weights: &[&B::Matrix]| {
            if taps.any() {
                backend.matmul_exact(x, weights)
            } else {
                backend.matmul(x, weights)
            }
        };
        let mut x = backend.embed(&self.embedding, ids)?; // (t, d)
        for (block, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            let h = backend.rms_norm(&x, &block.attention_norm, c.rms_eps)?;
            let a = &block.attention;
            let [q, k, v]: [B::Tensor; 3] =
                matmul(&h, &[&a.query, &a.key, &a.value])?
                    .try_into()
                    .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            // q: (t, heads·head_dim), k and v: (t, kv_heads·head_dim)
            let q = backend.rope(
                &q,
                c.head_dim,
                positions,
                c.rope_base,
                RopeStyle::Interleaved,
            )?;
            let k = backend.rope(
                &k,
                c.head_dim,
                positions,
                c.rope_base,
                RopeStyle::Interleaved,
            )?;
            if taps.queries_keys {
                captures.queries.push(q.clone());
                captures.keys.push(k.clone());
            }
            let (attended, probs) =
                backend.attention(&q, &k, &v, cache, shape, mask, taps.attention)?; // (t, d)
            captures.attention.extend(probs);
            let projected = matmul(&attended, &[&a.output])?.remove(0);
            x = backend.add(&x, &projected)?;

            let h = backend.rms_norm(&x, &block.mlp_norm, c.rms_eps)?;
            let m = &block.mlp;
            let [gate, up]: [B::Tensor; 2] = matmul(&h, &[&m.gate, &m.up])?
                .try_into()
                .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            let hidden = backend.silu_mul(&gate, &up)?; // (t, ffn)
            let down = matmul(&hidden, &[&m.down])?.remove(0); // (t, d)
            x = backend.add(&x, &down)?;
            if taps.residual {
                captures.residual.push(x.clone());
            }
        }
        let last = backend.last_rows(&x, logit_rows)?;
        let logits = self.logits(backend, &last)?;
        Ok((logits, captures))
    }

    /// Final norm and output projection of residual rows `(n, d)` → `(n, vocab)`; also the
    /// logit lens applied to an intermediate layer.
    pub fn logits(&self, backend: &B, residual: &B::Tensor) -> Result<B::Tensor> {
        let h = backend.rms_norm(residual, &self.final_norm, self.config.rms_eps)?;
        let output = self.output.as_ref().unwrap_or(&self.embedding);
        Ok(backend.matmul(&h, &[output])?.remove(0))
    }

    pub fn new_caches(&self, backend: &B, capacity: usize) -> Result<Vec<B::Cache>> {
        (0..self.config.n_layers)
            .map(|_| backend.new_cache(self.config.attention_shape(), capacity))
            .collect()
    }
}

/// Collects the weights as the GGUF stream hands them out, uploading each to the backend at
/// once (so on WebGPU the upload overlaps the download), then assembles the model.
pub struct LlamaLoader<B: Backend> {
    config: LlamaConfig,
    matrices: HashMap<String, B::Matrix>,
    vectors: HashMap<String, B::Tensor>,
}

impl<B: Backend> LlamaLoader<B> {
    pub fn new(header: &GgufHeader) -> Result<Self> {
        Ok(LlamaLoader {
            config: LlamaConfig::from_gguf(header)?,
            matrices: HashMap::new(),
            vectors: HashMap::new(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Uploads one tensor: 1-D tensors are norm gains, the rest matrices.
    pub fn accept(&mut self, backend: &B, tensor: &TensorData) -> Result<()> {
        let info = &tensor.info;
        if info.dims.len() == 1 {
            let v = backend.upload_vector(info, &tensor.bytes)?;
            self.vectors.insert(info.name.clone(), v);
        } else {
            let m = backend.upload_matrix(info, &tensor.bytes)?;
            self.matrices.insert(info.name.clone(), m);
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Llama<B>> {
        // Checkpoint names live here only.
        let mut matrix = |name: String| {
            self.matrices
                .remove(&name)
                .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))
        };
        let embedding = matrix("token_embd.weight".into())?;
        let output = matrix("output.weight".into()).ok();
        let mut blocks_matrices = Vec::with_capacity(self.config.n_layers);
        for i in 0..self.config.n_layers {
            let attention = Attention {
                query: matrix(format!("blk.{i}.attn_q.weight"))?,
                key: matrix(format!("blk.{i}.attn_k.weight"))?,
                value: matrix(format!("blk.{i}.attn_v.weight"))?,
                output: matrix(format!("blk.{i}.attn_output.weight"))?,
            };
            let mlp = Mlp {
                gate: matrix(format!("blk.{i}.ffn_gate.weight"))?,
                up: matrix(format!("blk.{i}.ffn_up.weight"))?,
                down: matrix(format!("blk.{i}.ffn_down.weight"))?,
            };
            blocks_matrices.push((attention, mlp));
        }
        let mut vector = |name: String| {
            self.vectors
                .remove(&name)
                .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))
        };
        let mut blocks = Vec::with_capacity(self.config.n_layers);
        for (i, (attention, mlp)) in blocks_matrices.into_iter().enumerate() {
            blocks.push(Block {
                attention_norm: vector(format!("blk.{i}.attn_norm.weight"))?,
                attention,
                mlp_norm: vector(format!("blk.{i}.ffn_norm.weight"))?,
                mlp,
            });
        }
        let final_norm = vector("output_norm.weight".into())?;
        Ok(Llama {
            config: self.config,
            embedding,
            blocks,
            final_norm,
            output,
        })
    }
}
