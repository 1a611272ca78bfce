//! Llama (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models") as
//! llama.cpp runs it from a GGUF file (`src/models/llama.cpp` in llama.cpp): pre-norm blocks with
//! RMSNorm, grouped-query attention with rotary positions, a SwiGLU MLP, and an output
//! projection that may be tied to the token embedding (SmolLM2 ties it).
//!
//! Departures from the reference: the attention mask and the position ids are explicit inputs
//! (causal and 0, 1, 2… by default) so Set-Based Prompting can change them, and attention
//! probabilities, queries, keys and the residual stream can be captured per layer ([`Taps`]).

use super::pass::Pass;
use super::shape::{validate, Architecture, ModelConfig, Step};
use super::taps::Captures;
use super::weights::Weights;
use crate::backend::{AttentionShape, Backend, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorData};

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

    /// Reads `llama.*` keys, each checked for range.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        if Architecture::from_gguf(header)? != Architecture::Llama {
            return Err(Error::UnsupportedArchitecture(
                header.get_str("general.architecture")?.to_string(),
            ));
        }
        let count = |key: &str, max: usize| validate::count(header, &format!("llama.{key}"), max);
        let n_heads = count("attention.head_count", 1024)?;
        let d_model = count("embedding_length", 1 << 16)?;
        let n_kv_heads = validate::optional_count(header, "llama.attention.head_count_kv", 1024)?
            .unwrap_or(n_heads);
        let head_dim = validate::optional_count(header, "llama.rope.dimension_count", 1024)?
            .unwrap_or(d_model / n_heads);
        let vocab_size = header
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| Error::BadModel("no token_embd.weight tensor".into()))?
            as usize;
        let config = LlamaConfig {
            n_layers: count("block_count", 1024)?,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: count("feed_forward_length", 1 << 18)?,
            vocab_size,
            rope_base: validate::number(header, "llama.rope.freq_base", 10_000.0, 1.0..=1e12)?,
            rms_eps: validate::number(
                header,
                "llama.attention.layer_norm_rms_epsilon",
                1e-5,
                1e-12..=1e-1,
            )?,
            context_len: validate::context(header, "llama.context_length")?,
        };
        if !n_heads.is_multiple_of(n_kv_heads)
            || n_heads * head_dim != d_model
            || !head_dim.is_multiple_of(2)
        {
            return Err(Error::BadModel(format!(
                "inconsistent llama shape: {n_heads} heads of {head_dim} for a width of \
                 {d_model}, {n_kv_heads} key/value heads"
            )));
        }
        validate::tensors(header, &config.expected_tensors())?;
        Ok(config)
    }

    /// Every tensor the model reads, with its ggml-order shape, and whether it may be missing.
    fn expected_tensors(&self) -> Vec<(String, Vec<u64>, bool)> {
        let (d, ffn) = (self.d_model as u64, self.ffn_dim as u64);
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
                (blk("attn_output"), vec![q, d], false),
                (blk("ffn_norm"), vec![d], false),
                (blk("ffn_gate"), vec![d, ffn], false),
                (blk("ffn_up"), vec![d, ffn], false),
                (blk("ffn_down"), vec![ffn, d], false),
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
            architecture: Architecture::Llama,
            n_layers: self.n_layers,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            ffn_dim: self.ffn_dim,
            vocab_size: self.vocab_size,
            context_len: self.context_len,
            sliding_window: None,
            local_layers: vec![false; self.n_layers],
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
    pub model_config: ModelConfig,
    embedding: B::Matrix,
    blocks: Vec<Block<B>>,
    final_norm: B::Tensor,
    /// None: tied to `embedding`.
    output: Option<B::Matrix>,
}

impl<B: Backend> Llama<B> {
    /// Runs `step` (new tokens at their positions, under its mask) through the model as `pass`
    /// says, appending to `caches`, and returns the logits of the last `logit_rows`
    /// tokens: `(logit_rows, vocab)`.
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
        let rope = |x: &B::Tensor| {
            backend.rope(
                x,
                c.head_dim,
                step.positions,
                c.rope_base,
                RopeStyle::Interleaved,
            )
        };
        let mut x = backend.embed(&self.embedding, step.ids)?; // (t, d)
        for (i, (block, cache)) in self.blocks.iter().zip(caches.iter_mut()).enumerate() {
            let h = backend.rms_norm(&x, &block.attention_norm, c.rms_eps)?;
            let a = &block.attention;
            let [q, k, v]: [B::Tensor; 3] =
                matmul(&h, &[&a.query, &a.key, &a.value])?
                    .try_into()
                    .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            // q: (t, heads·head_dim), k and v: (t, kv_heads·head_dim)
            let (q, k) = (rope(&q)?, rope(&k)?);
            if taps.queries_keys_at(i) {
                captures.queries.push(q.clone());
                captures.keys.push(k.clone());
            }
            let mask = interventions.mask(step, i, step.mask)?;
            let (attended, probs) =
                backend.attention(&q, &k, &v, cache, shape, &mask, taps.attention_at(i))?; // (t, d)
            captures.attention.extend(probs);
            let attended = interventions.head_outputs(backend, i, c.head_dim, attended)?;
            if taps.head_outputs {
                captures.head_outputs.push(attended.clone());
            }
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
            x = interventions.residual(backend, step, i, x)?;
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
        self.unembed(backend, residual, false)
    }

    /// [`Self::logits`] with the activations in f32 (logit attribution sums its parts).
    pub fn logits_exact(&self, backend: &B, residual: &B::Tensor) -> Result<B::Tensor> {
        self.unembed(backend, residual, true)
    }

    fn unembed(&self, backend: &B, residual: &B::Tensor, exact: bool) -> Result<B::Tensor> {
        let h = backend.rms_norm(residual, &self.final_norm, self.config.rms_eps)?;
        let output = self.output.as_ref().unwrap_or(&self.embedding);
        let logits = if exact {
            backend.matmul_exact(&h, &[output])?
        } else {
            backend.matmul(&h, &[output])?
        };
        Ok(logits.into_iter().next().expect("one matrix, one product"))
    }

    /// The residual stream before the first block: the tokens' embeddings, `(n, d)`.
    pub fn embed(&self, backend: &B, ids: &[u32]) -> Result<B::Tensor> {
        backend.embed(&self.embedding, ids)
    }

    /// Head-output rows `(n, heads·head_dim)` through block `layer`'s attention output
    /// projection, in f32: what those head outputs add to the residual stream, `(n, d)`.
    pub fn project_heads(&self, backend: &B, layer: usize, rows: &B::Tensor) -> Result<B::Tensor> {
        let block = self.blocks.get(layer).ok_or_else(|| {
            Error::InvalidRequest(format!("layer {layer} of {}", self.blocks.len()))
        })?;
        Ok(backend
            .matmul_exact(rows, &[&block.attention.output])?
            .remove(0))
    }
}

/// Collects the weights as the GGUF stream hands them out, uploading each to the backend at
/// once (so on WebGPU the upload overlaps the download), then assembles the model.
pub struct LlamaLoader<B: Backend> {
    config: LlamaConfig,
    model_config: ModelConfig,
    weights: Weights<B>,
}

impl<B: Backend> LlamaLoader<B> {
    /// Reads the config and checks every tensor's shape against it.
    pub fn new(header: &GgufHeader) -> Result<Self> {
        let config = LlamaConfig::from_gguf(header)?;
        Ok(LlamaLoader {
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

    pub fn finish(mut self) -> Result<Llama<B>> {
        // Checkpoint names live here only.
        let mut matrix = |name: String| self.weights.matrix(name);
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
        let mut vector = |name: String| self.weights.vector(name);
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
            model_config: self.model_config,
            embedding,
            blocks,
            final_norm,
            output,
        })
    }
}
