//! A small Vision Retention Network (Hatamizadeh et al., 2023, "ViR: Vision Retention
//! Networks", arXiv 2310.19731), trained by `trainer/` on MNIST: pre-LN blocks of multi-head causal
//! retention (RetNet, arXiv 2307.08621) and a GELU MLP, the class token appended last so that it
//! retains every patch.
//!
//! Retention runs in any of its three forms ([`RetentionForm`]); they compute the same output.
//! Departures from the released ViR code: no softmax after the decay mask (it contradicts the
//! recurrent form), no xPos rotation (learned positions, as in the ViT), bias-free linear layers
//! (see `docs/vision.md`).

use super::parts::{ClassifierHead, Mlp, Norm, PatchStem, VisionConfig, VisionWeights};
use crate::backend::{Backend, RetentionForm};
use crate::error::{Error, Result};

struct Retention<B: Backend> {
    norm: Norm<B>,
    query: B::Matrix,
    key: B::Matrix,
    value: B::Matrix,
    gate: B::Matrix,
    /// RetNet's GroupNorm, one group per head: retention has no softmax to fix its scale.
    head_norm: Norm<B>,
    output: B::Matrix,
}

struct Block<B: Backend> {
    retention: Retention<B>,
    mlp: Mlp<B>,
}

pub struct Vir<B: Backend> {
    pub config: VisionConfig,
    stem: PatchStem<B>,
    blocks: Vec<Block<B>>,
    head: ClassifierHead<B>,
}

impl<B: Backend> Vir<B> {
    pub(crate) fn load(config: VisionConfig, weights: &mut VisionWeights<B>) -> Result<Self> {
        let stem = weights.stem()?;
        let blocks = (0..config.n_blocks)
            .map(|i| {
                Ok(Block {
                    retention: Retention {
                        norm: weights.norm(&format!("blk.{i}.attn_norm"))?,
                        query: weights.matrix(&format!("blk.{i}.attn_q.weight"))?,
                        key: weights.matrix(&format!("blk.{i}.attn_k.weight"))?,
                        value: weights.matrix(&format!("blk.{i}.attn_v.weight"))?,
                        gate: weights.matrix(&format!("blk.{i}.ret_gate.weight"))?,
                        head_norm: weights.norm(&format!("blk.{i}.ret_norm"))?,
                        output: weights.matrix(&format!("blk.{i}.attn_output.weight"))?,
                    },
                    mlp: weights.mlp(i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = weights.head()?;
        Ok(Vir {
            config,
            stem,
            blocks,
            head,
        })
    }

    /// Logits `(1, classes)` and, when `capture`, each block's retention scores
    /// `(q kᵀ/√d) ⊙ D` as `(heads·t, t)`.
    pub(crate) fn forward(
        &self,
        backend: &B,
        image: &[f32],
        form: RetentionForm,
        capture: bool,
    ) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let c = &self.config;
        let mut retention_maps = Vec::new();
        let mut x = self.stem.forward(backend, c, image)?; // (t, d)
        for block in &self.blocks {
            let r = &block.retention;
            let h = r.norm.forward(backend, &x, 1, c.norm_eps)?;
            let [q, k, v, g]: [B::Tensor; 4] = backend
                .matmul(&h, &[&r.query, &r.key, &r.value, &r.gate])?
                .try_into()
                .map_err(|_| Error::InvalidRequest("matmul returned the wrong count".into()))?;
            let (retained, scores) =
                backend.retention(&q, &k, &v, c.head_dim(), &c.decays, form, capture)?; // (t, d)
            retention_maps.extend(scores);
            let normed = r
                .head_norm
                .forward(backend, &retained, c.n_heads, c.norm_eps)?;
            let gated = backend.silu_mul(&g, &normed)?; // silu(g) ⊙ groupnorm(o)
            let projected = backend.matmul(&gated, &[&r.output])?.remove(0);
            x = backend.add(&x, &projected)?;
            let m = block.mlp.forward(backend, &x, c.norm_eps)?;
            x = backend.add(&x, &m)?;
        }
        let logits = self.head.forward(backend, &x, c.norm_eps)?;
        Ok((logits, retention_maps))
    }
}
