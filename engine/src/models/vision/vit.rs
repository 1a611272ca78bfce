//! A small Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"),
//! trained by `trainer/` on MNIST: pre-LN blocks of softmax self-attention over every token and a
//! GELU MLP. Departures from the paper's recipe, shared with the ViR so the two compare: the
//! class token is the last token, not the first, and every linear layer is bias-free (see
//! `docs/vision.md`).

use super::parts::{ClassifierHead, Mlp, Norm, PatchStem, VisionConfig, VisionWeights};
use crate::backend::{AttentionShape, Backend, Mask};
use crate::error::{Error, Result};

struct SelfAttention<B: Backend> {
    norm: Norm<B>,
    query: B::Matrix,
    key: B::Matrix,
    value: B::Matrix,
    output: B::Matrix,
}

struct Block<B: Backend> {
    attention: SelfAttention<B>,
    mlp: Mlp<B>,
}

pub struct Vit<B: Backend> {
    pub config: VisionConfig,
    stem: PatchStem<B>,
    blocks: Vec<Block<B>>,
    head: ClassifierHead<B>,
}

impl<B: Backend> Vit<B> {
    pub(crate) fn load(config: VisionConfig, weights: &mut VisionWeights<B>) -> Result<Self> {
        let stem = weights.stem()?;
        let blocks = (0..config.n_blocks)
            .map(|i| {
                Ok(Block {
                    attention: SelfAttention {
                        norm: weights.norm(&format!("blk.{i}.attn_norm"))?,
                        query: weights.matrix(&format!("blk.{i}.attn_q.weight"))?,
                        key: weights.matrix(&format!("blk.{i}.attn_k.weight"))?,
                        value: weights.matrix(&format!("blk.{i}.attn_v.weight"))?,
                        output: weights.matrix(&format!("blk.{i}.attn_output.weight"))?,
                    },
                    mlp: weights.mlp(i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = weights.head()?;
        Ok(Vit {
            config,
            stem,
            blocks,
            head,
        })
    }

    /// Logits `(1, classes)` and, when `capture`, each block's attention probabilities
    /// `(heads·t, t)`.
    pub(crate) fn forward(
        &self,
        backend: &B,
        image: &[f32],
        capture: bool,
    ) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let c = &self.config;
        let t = c.n_tokens();
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim(),
        };
        let everything = Mask::Explicit(vec![true; t * t]); // no mask: every token sees all
        let mut attention_maps = Vec::new();
        let mut x = self.stem.forward(backend, c, image)?; // (t, d)
        for block in &self.blocks {
            let a = &block.attention;
            let h = a.norm.forward(backend, &x, 1, c.norm_eps)?;
            let [q, k, v]: [B::Tensor; 3] = backend
                .matmul(&h, &[&a.query, &a.key, &a.value])?
                .try_into()
                .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            // A fresh cache per image: the attention op appends k, v and attends over them.
            let mut cache = backend.new_cache(shape, t)?;
            let (mixed, probs) =
                backend.attention(&q, &k, &v, &mut cache, shape, &everything, capture)?; // (t, d)
            attention_maps.extend(probs);
            let projected = backend.matmul(&mixed, &[&a.output])?.remove(0);
            x = backend.add(&x, &projected)?;
            let m = block.mlp.forward(backend, &x, c.norm_eps)?;
            x = backend.add(&x, &m)?;
        }
        let logits = self.head.forward(backend, &x, c.norm_eps)?;
        Ok((logits, attention_maps))
    }
}
