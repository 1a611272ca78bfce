//! [`Decoder`]: the language model architecture a GGUF's `general.architecture` names (llama
//! or gemma3), dispatching to the model file that implements it.

use super::gemma3::{Gemma3, Gemma3Loader};
use super::llama::{Llama, LlamaLoader};
use super::pass::Pass;
use super::shape::{Architecture, ModelConfig, Step};
use super::taps::Captures;
use crate::backend::{Backend, RopeSpec, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorData};

/// The config of the model a header describes, every tensor's shape checked against it;
/// an unsupported architecture or a header that disagrees with itself is an error.
pub fn read_config(header: &GgufHeader) -> Result<ModelConfig> {
    Ok(match Architecture::from_gguf(header)? {
        Architecture::Llama => super::llama::LlamaConfig::from_gguf(header)?.model_config(),
        Architecture::Gemma3 => super::gemma3::Gemma3Config::from_gguf(header)?.model_config(),
    })
}

/// A language model of one of the supported architectures.
pub enum Decoder<B: Backend> {
    Llama(Llama<B>),
    Gemma3(Gemma3<B>),
}

impl<B: Backend> Decoder<B> {
    pub fn config(&self) -> &ModelConfig {
        match self {
            Decoder::Llama(m) => &m.model_config,
            Decoder::Gemma3(m) => &m.model_config,
        }
    }

    /// Runs `step` through the model as `pass` says (captures, interventions, precision),
    /// appending to `caches`, and returns the logits of the last `logit_rows` tokens,
    /// `(logit_rows, vocab)`, and what the taps captured.
    pub fn forward(
        &self,
        backend: &B,
        step: &Step,
        caches: &mut [B::Cache],
        logit_rows: usize,
        pass: Pass,
    ) -> Result<(B::Tensor, Captures<B>)> {
        match self {
            Decoder::Llama(m) => m.forward(backend, step, caches, logit_rows, pass),
            Decoder::Gemma3(m) => m.forward(backend, step, caches, logit_rows, pass),
        }
    }

    /// The final norm and output projection of residual rows `(n, d)` → `(n, vocab)`.
    pub fn logits(&self, backend: &B, residual: &B::Tensor) -> Result<B::Tensor> {
        match self {
            Decoder::Llama(m) => m.logits(backend, residual),
            Decoder::Gemma3(m) => m.logits(backend, residual),
        }
    }

    /// The final norm's epsilon (`x / sqrt(mean(x²) + eps) · weight`).
    pub fn rms_eps(&self) -> f32 {
        match self {
            Decoder::Llama(m) => m.config.rms_eps,
            Decoder::Gemma3(m) => m.config.rms_eps,
        }
    }

    /// [`Self::logits`] with the activations in f32.
    pub fn logits_exact(&self, backend: &B, residual: &B::Tensor) -> Result<B::Tensor> {
        match self {
            Decoder::Llama(m) => m.logits_exact(backend, residual),
            Decoder::Gemma3(_) => Err(Self::no_attribution()),
        }
    }

    /// The residual stream before the first block, `(n, d)`.
    pub fn embed(&self, backend: &B, ids: &[u32]) -> Result<B::Tensor> {
        match self {
            Decoder::Llama(m) => m.embed(backend, ids),
            Decoder::Gemma3(_) => Err(Self::no_attribution()),
        }
    }

    /// What head-output rows add to the residual stream in block `layer`, `(n, d)`.
    pub fn project_heads(&self, backend: &B, layer: usize, rows: &B::Tensor) -> Result<B::Tensor> {
        match self {
            Decoder::Llama(m) => m.project_heads(backend, layer, rows),
            Decoder::Gemma3(_) => Err(Self::no_attribution()),
        }
    }

    /// Gemma 3 normalizes each block's attention and MLP outputs before adding them, so a
    /// head's share needs that norm's scale frozen as well: not done yet.
    fn no_attribution() -> Error {
        Error::InvalidRequest(
            "logit attribution splits a residual stream that blocks add to; Gemma 3 normalizes \
             what its blocks add (sandwich norms), which this does not handle yet"
                .into(),
        )
    }

    /// How layer `layer` rotates its keys (what an attention policy needs to move them).
    pub fn rope_spec(&self, layer: usize) -> RopeSpec {
        match self {
            Decoder::Llama(m) => RopeSpec {
                base: m.config.rope_base,
                style: RopeStyle::Interleaved,
            },
            Decoder::Gemma3(m) => RopeSpec {
                base: if m.config.is_local(layer) {
                    m.config.local_rope_base
                } else {
                    m.config.rope_base
                },
                style: RopeStyle::Halves,
            },
        }
    }

    /// One KV cache per layer, for `capacity` tokens.
    pub fn new_caches(&self, backend: &B, capacity: usize) -> Result<Vec<B::Cache>> {
        let c = self.config();
        let shape = crate::backend::AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        (0..c.n_layers)
            .map(|_| backend.new_cache(shape, capacity))
            .collect()
    }
}

/// Takes the weights as the GGUF stream hands them out, for the architecture its header names.
pub enum DecoderLoader<B: Backend> {
    Llama(LlamaLoader<B>),
    Gemma3(Gemma3Loader<B>),
}

impl<B: Backend> DecoderLoader<B> {
    /// Reads and checks the config and every tensor's shape against it: an unsupported
    /// architecture or a header that disagrees with itself is refused before any weight.
    pub fn new(header: &GgufHeader) -> Result<Self> {
        Ok(match Architecture::from_gguf(header)? {
            Architecture::Llama => DecoderLoader::Llama(LlamaLoader::new(header)?),
            Architecture::Gemma3 => DecoderLoader::Gemma3(Gemma3Loader::new(header)?),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            DecoderLoader::Llama(l) => l.model_config(),
            DecoderLoader::Gemma3(l) => l.model_config(),
        }
    }

    /// Uploads one tensor to the backend.
    pub fn accept(&mut self, backend: &B, tensor: TensorData) -> Result<()> {
        match self {
            DecoderLoader::Llama(l) => l.accept(backend, tensor),
            DecoderLoader::Gemma3(l) => l.accept(backend, tensor),
        }
    }

    pub fn finish(self) -> Result<Decoder<B>> {
        Ok(match self {
            DecoderLoader::Llama(l) => Decoder::Llama(l.finish()?),
            DecoderLoader::Gemma3(l) => Decoder::Gemma3(l.finish()?),
        })
    }
}
