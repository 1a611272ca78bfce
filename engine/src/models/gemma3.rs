//! Gemma 3 (Gemma Team, 2025, "Gemma 3 Technical Report", arXiv 2503.19786), text only, as
//! llama.cpp runs it from a GGUF file (`src/models/gemma3.cpp` and the `LLM_ARCH_GEMMA3` cases of
//! `src/llama-model.cpp`):
//! - the token embedding scaled by √d_model (in f32, as `sqrtf`);
//! - pre-norm blocks with RMSNorm before *and after* attention and the MLP (the norm weights in
//!   the GGUF already include Gemma's `1 +`: llama.cpp's converter adds it);
//! - grouped-query attention with RMSNorm on each head of q and k before RoPE, RoPE on halves
//!   (GPT-NeoX style), scores scaled by 1/√head_dim (1/√(d_model/heads) for the 27B model);
//! - five local layers (sliding-window attention, RoPE base 10,000 unless the GGUF says
//!   otherwise) for every global one (full attention, RoPE base from `rope.freq_base`): layer
//!   `i` is local unless `i % 6 == 5`;
//! - a GeGLU MLP with tanh-GELU; the output projection tied to the embedding.
//!
//! Departures from the reference, as for llama: the mask and positions are explicit inputs
//! (Set-Based Prompting), the sliding window is measured in positions as llama.cpp does, and
//! the KV cache of a local layer keeps every position (llama.cpp keeps only the window); the
//! window is applied as a mask, so the arithmetic is the same.

use super::pass::Pass;
use super::shape::{validate, Architecture, ModelConfig, Step};
use super::taps::Captures;
use super::weights::Weights;
use crate::backend::{AttentionShape, Backend, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorData};

/// Every sixth layer is global: llama.cpp's `set_swa_pattern(6)`.
const SLIDING_WINDOW_PATTERN: usize = 6;
/// The local layers' RoPE base when the GGUF has no `gemma3.rope.freq_base_swa`.
const LOCAL_ROPE_BASE: f64 = 10_000.0;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gemma3Config {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_len: usize,
    pub rms_eps: f32,
    pub sliding_window: usize,
    /// RoPE base of the global layers.
    pub rope_base: f32,
    /// RoPE base of the local (sliding-window) layers.
    pub local_rope_base: f32,
    /// The query scale: 1/√head_dim, or 1/√(d_model/heads) for the 27B model (62 layers).
    pub attention_scale: f32,
}

impl Gemma3Config {
    /// Reads `gemma3.*` keys, each checked for range, and every tensor's shape.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        if Architecture::from_gguf(header)? != Architecture::Gemma3 {
            return Err(Error::UnsupportedArchitecture(
                header.get_str("general.architecture")?.to_string(),
            ));
        }
        let key = |k: &str| format!("gemma3.{k}");
        let count = |k: &str, max: usize| validate::count(header, &key(k), max);
        let n_heads = count("attention.head_count", 1024)?;
        let d_model = count("embedding_length", 1 << 16)?;
        let n_kv_heads = validate::optional_count(header, &key("attention.head_count_kv"), 1024)?
            .unwrap_or(n_heads);
        let head_dim = validate::optional_count(header, &key("attention.key_length"), 1024)?
            .unwrap_or(d_model / n_heads);
        let value_dim = validate::optional_count(header, &key("attention.value_length"), 1024)?
            .unwrap_or(head_dim);
        let n_layers = count("block_count", 1024)?;
        let vocab_size = header
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| Error::BadModel("no token_embd.weight tensor".into()))?
            as usize;
        if !n_heads.is_multiple_of(n_kv_heads) || value_dim != head_dim || head_dim % 2 != 0 {
            return Err(Error::BadModel(format!(
                "inconsistent gemma3 shape: {n_heads} heads, {n_kv_heads} key/value heads, \
                 keys of {head_dim} and values of {value_dim}"
            )));
        }
        let attention_scale = if n_layers == 62 {
            1.0 / ((d_model / n_heads) as f32).sqrt()
        } else {
            1.0 / (head_dim as f32).sqrt()
        };
        let config = Gemma3Config {
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: count("feed_forward_length", 1 << 18)?,
            vocab_size,
            context_len: validate::context(header, &key("context_length"))?,
            rms_eps: validate::number(
                header,
                &key("attention.layer_norm_rms_epsilon"),
                1e-6,
                1e-12..=1e-1,
            )?,
            sliding_window: count("attention.sliding_window", 1 << 20)?,
            rope_base: validate::number(header, &key("rope.freq_base"), 1e6, 1.0..=1e12)?,
            local_rope_base: validate::number(
                header,
                &key("rope.freq_base_swa"),
                LOCAL_ROPE_BASE,
                1.0..=1e12,
            )?,
            attention_scale,
        };
        validate::tensors(header, &config.expected_tensors())?;
        Ok(config)
    }

    /// Whether layer `i` attends through the sliding window.
    pub fn is_local(&self, layer: usize) -> bool {
        layer % SLIDING_WINDOW_PATTERN < SLIDING_WINDOW_PATTERN - 1
    }

    /// Every tensor the model reads, with its ggml-order shape, and whether it may be missing.
    fn expected_tensors(&self) -> Vec<(String, Vec<u64>, bool)> {
        let (d, ffn, hd) = (
            self.d_model as u64,
            self.ffn_dim as u64,
            self.head_dim as u64,
        );
        let (q, kv) = (
            (self.n_heads * self.head_dim) as u64,
            (self.n_kv_heads * self.head_dim) as u64,
        );
        let vocab = self.vocab_size as u64;
        let mut out = vec![
            ("token_embd.weight".to_string(), vec![d, vocab], false),
            ("output.weight".to_string(), vec![d, vocab], true),
            ("output_norm.weight".to_string(), vec![d], false),
        ];
        for i in 0..self.n_layers {
            let blk = |name: &str| format!("blk.{i}.{name}.weight");
            out.extend([
                (blk("attn_norm"), vec![d], false),
                (blk("attn_q"), vec![d, q], false),
                (blk("attn_k"), vec![d, kv], false),
                (blk("attn_v"), vec![d, kv], false),
                (blk("attn_q_norm"), vec![hd], false),
                (blk("attn_k_norm"), vec![hd], false),
                (blk("attn_output"), vec![q, d], false),
                (blk("post_attention_norm"), vec![d], false),
                (blk("ffn_norm"), vec![d], false),
                (blk("ffn_gate"), vec![d, ffn], false),
                (blk("ffn_up"), vec![d, ffn], false),
                (blk("ffn_down"), vec![ffn, d], false),
                (blk("post_ffw_norm"), vec![d], false),
            ]);
        }
        out
    }

    pub fn attention_shape(&self) -> AttentionShape {
        AttentionShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }

    /// The shape the runtime and the analysis see.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Gemma3,
            n_layers: self.n_layers,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            ffn_dim: self.ffn_dim,
            vocab_size: self.vocab_size,
            context_len: self.context_len,
            sliding_window: Some(self.sliding_window),
            local_layers: (0..self.n_layers).map(|i| self.is_local(i)).collect(),
        }
    }
}

struct Attention<B: Backend> {
    query: B::Matrix,
    key: B::Matrix,
    value: B::Matrix,
    /// RMSNorm gains applied to each head of q and of k.
    query_norm: B::Tensor,
    key_norm: B::Tensor,
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
    post_attention_norm: B::Tensor,
    mlp_norm: B::Tensor,
    mlp: Mlp<B>,
    post_mlp_norm: B::Tensor,
}

pub struct Gemma3<B: Backend> {
    pub config: Gemma3Config,
    pub model_config: ModelConfig,
    embedding: B::Matrix,
    blocks: Vec<Block<B>>,
    final_norm: B::Tensor,
    /// None: tied to `embedding` (as Gemma always is).
    output: Option<B::Matrix>,
}

impl<B: Backend> Gemma3<B> {
    /// Runs `step` through the model as `pass` says, appending to `caches`, and returns
    /// the logits of the last `logit_rows` tokens: `(logit_rows, vocab)`.
    pub fn forward(
        &self,
        backend: &B,
        step: &Step,
        caches: &mut [B::Cache],
        logit_rows: usize,
        pass: Pass,
    ) -> Result<(B::Tensor, Captures<B>)> {
        let (taps, interventions) = (pass.taps, pass.interventions);
        let c = &self.config;
        let (t, hd) = (step.ids.len(), c.head_dim);
        let shape = c.attention_shape();
        let mut captures = Captures::default();
        // Captured values are shown and compared across backends: keep activations in f32.
        let matmul = |x: &B::Tensor, weights: &[&B::Matrix]| {
            let x = interventions.product_input(backend, x)?;
            if pass.exact() {
                backend.matmul_exact(&x, weights)
            } else {
                backend.matmul(&x, weights)
            }
        };
        // RMSNorm of each head: the rows of (t·heads, head_dim).
        let norm_heads = |x: &B::Tensor, heads: usize, gain: &B::Tensor| {
            let per_head = backend.reshape(x, t * heads, hd)?;
            let normed = backend.rms_norm(&per_head, gain, c.rms_eps)?;
            backend.reshape(&normed, t, heads * hd)
        };
        // The attention op scales scores by 1/√head_dim; a model that wants another scale gets
        // its queries rescaled first (only the 27B model).
        let query_rescale = c.attention_scale * (hd as f32).sqrt();
        let local_mask = step.windowed_mask(c.sliding_window);

        let x = backend.embed(&self.embedding, step.ids)?; // (t, d)
        let mut x = backend.scale(&x, (c.d_model as f32).sqrt())?;
        for (i, (block, cache)) in self.blocks.iter().zip(caches.iter_mut()).enumerate() {
            let (mask, rope_base) = if c.is_local(i) {
                (&local_mask, c.local_rope_base)
            } else {
                (step.mask, c.rope_base)
            };
            let rope =
                |x: &B::Tensor| backend.rope(x, hd, step.positions, rope_base, RopeStyle::Halves);

            let h = backend.rms_norm(&x, &block.attention_norm, c.rms_eps)?;
            let a = &block.attention;
            let [q, k, v]: [B::Tensor; 3] =
                matmul(&h, &[&a.query, &a.key, &a.value])?
                    .try_into()
                    .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            // q: (t, heads·head_dim), k and v: (t, kv_heads·head_dim)
            let q = rope(&norm_heads(&q, c.n_heads, &a.query_norm)?)?;
            let k = rope(&norm_heads(&k, c.n_kv_heads, &a.key_norm)?)?;
            let q = if query_rescale != 1.0 {
                backend.scale(&q, query_rescale)?
            } else {
                q
            };
            if taps.queries_keys_at(i) {
                captures.queries.push(q.clone());
                captures.keys.push(k.clone());
            }
            let mask = interventions.mask(step, i, mask)?;
            let (attended, probs) =
                backend.attention(&q, &k, &v, cache, shape, &mask, taps.attention_at(i))?; // (t, heads·hd)
            captures.attention.extend(probs);
            let attended = interventions.head_outputs(backend, i, hd, attended)?;
            if taps.head_outputs {
                captures.head_outputs.push(attended.clone());
            }
            let projected = matmul(&attended, &[&a.output])?.remove(0); // (t, d)
            let projected = backend.rms_norm(&projected, &block.post_attention_norm, c.rms_eps)?;
            x = backend.add(&x, &projected)?;

            let h = backend.rms_norm(&x, &block.mlp_norm, c.rms_eps)?;
            let m = &block.mlp;
            let [gate, up]: [B::Tensor; 2] = matmul(&h, &[&m.gate, &m.up])?
                .try_into()
                .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            let hidden = backend.gelu_mul(&gate, &up)?; // (t, ffn)
            let down = matmul(&hidden, &[&m.down])?.remove(0); // (t, d)
            let down = backend.rms_norm(&down, &block.post_mlp_norm, c.rms_eps)?;
            x = backend.add(&x, &down)?;
            x = interventions.residual(backend, step, i, x)?;
            if taps.residual {
                captures.residual.push(x.clone());
            }
        }
        let last = backend.last_rows(&x, logit_rows)?;
        let logits = self.logits(backend, &last)?;
        Ok((logits, captures))
    }

    /// Final norm and output projection of residual rows `(n, d)` → `(n, vocab)`.
    pub fn logits(&self, backend: &B, residual: &B::Tensor) -> Result<B::Tensor> {
        let h = backend.rms_norm(residual, &self.final_norm, self.config.rms_eps)?;
        let output = self.output.as_ref().unwrap_or(&self.embedding);
        Ok(backend.matmul(&h, &[output])?.remove(0))
    }
}

/// Collects the weights as the GGUF stream hands them out, uploading each to the backend at
/// once, then assembles the model.
pub struct Gemma3Loader<B: Backend> {
    config: Gemma3Config,
    model_config: ModelConfig,
    weights: Weights<B>,
}

impl<B: Backend> Gemma3Loader<B> {
    /// Reads the config and checks every tensor's shape against it.
    pub fn new(header: &GgufHeader) -> Result<Self> {
        let config = Gemma3Config::from_gguf(header)?;
        Ok(Gemma3Loader {
            model_config: config.model_config(),
            config,
            weights: Weights::default(),
        })
    }

    pub fn model_config(&self) -> &ModelConfig {
        &self.model_config
    }

    /// Uploads one tensor (see [`Weights::accept`]).
    pub fn accept(&mut self, backend: &B, tensor: TensorData) -> Result<()> {
        self.weights.accept(backend, tensor)
    }

    pub fn finish(mut self) -> Result<Gemma3<B>> {
        // Checkpoint names live here only.
        let mut matrix = |name: String| self.weights.matrix(name);
        let embedding = matrix("token_embd.weight".into())?;
        let output = matrix("output.weight".into()).ok();
        let mut matrices = Vec::with_capacity(self.config.n_layers);
        for i in 0..self.config.n_layers {
            let blk = |name: &str| format!("blk.{i}.{name}.weight");
            matrices.push([
                matrix(blk("attn_q"))?,
                matrix(blk("attn_k"))?,
                matrix(blk("attn_v"))?,
                matrix(blk("attn_output"))?,
                matrix(blk("ffn_gate"))?,
                matrix(blk("ffn_up"))?,
                matrix(blk("ffn_down"))?,
            ]);
        }
        let mut vector = |name: String| self.weights.vector(name);
        let mut blocks = Vec::with_capacity(self.config.n_layers);
        for (i, [query, key, value, output, gate, up, down]) in matrices.into_iter().enumerate() {
            let blk = |name: &str| format!("blk.{i}.{name}.weight");
            blocks.push(Block {
                attention_norm: vector(blk("attn_norm"))?,
                attention: Attention {
                    query,
                    key,
                    value,
                    query_norm: vector(blk("attn_q_norm"))?,
                    key_norm: vector(blk("attn_k_norm"))?,
                    output,
                },
                post_attention_norm: vector(blk("post_attention_norm"))?,
                mlp_norm: vector(blk("ffn_norm"))?,
                mlp: Mlp { gate, up, down },
                post_mlp_norm: vector(blk("post_ffw_norm"))?,
            });
        }
        let final_norm = vector("output_norm.weight".into())?;
        Ok(Gemma3 {
            config: self.config,
            model_config: self.model_config,
            embedding,
            blocks,
            final_norm,
            output,
        })
    }
}
