//! What the attention explorer shows, computed from one captured forward pass: attention
//! probabilities per layer and head, pre-softmax scores, attention rollout (Abnar & Zuidema,
//! 2020, "Quantifying Attention Flow in Transformers") and the logit lens (nostalgebraist,
//! 2020: the final norm and output projection applied to each layer's residual stream).
//!
//! An [`Inspection`] runs the tokens through a fresh session with every tap on, so prompt and
//! generated tokens alike get a full row of attention, and keeps the captures as plain host
//! data. Everything else here is computed from that data on request.

use super::rollout::rollout;
use crate::error::{Error, Result};
use crate::models::taps::Taps;
use crate::numerics::{log_sum_exp, top_k};
use crate::runtime::{Engine, Feed, Layout};
use serde::{Deserialize, Serialize};

/// The page inspects at most this many tokens: every head of every layer is kept,
/// `layers · heads · t²` floats (110 MB for SmolLM2 at 320 tokens).
pub const MAX_INSPECTED_TOKENS: usize = 320;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
    /// Row-major `(t, t)`: whether token i may attend to token j.
    pub visible: Vec<bool>,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_model: usize,
    /// The layers whose attention, queries and keys were kept, in order (all of them, or one).
    pub attention_layers: Vec<usize>,
    /// `(attention_layers, heads, t, t)`: row i is what token i attends to.
    probs: Vec<f32>,
    /// `(attention_layers, t, heads·head_dim)` after RoPE.
    queries: Vec<f32>,
    /// `(attention_layers, t, kv_heads·head_dim)` after RoPE.
    keys: Vec<f32>,
    /// `(layers, t, d_model)` after each block.
    residual: Vec<f32>,
}

/// One layer's top next-token candidates through the logit lens: (id, probability).
pub type LensRow = Vec<(u32, f32)>;

impl Inspection {
    /// Runs `layout` (positions from 0, its own mask) through a fresh session with every tap
    /// on.
    pub async fn capture(engine: &Engine, layout: Layout<'_>) -> Result<Self> {
        Self::capture_with(engine, layout, Taps::all()).await
    }

    /// [`Inspection::capture`] keeping the attention of `layer` only (and every layer's
    /// residual stream): memory `heads · t²` rather than `layers · heads · t²`.
    pub async fn capture_layer(engine: &Engine, layout: Layout<'_>, layer: usize) -> Result<Self> {
        let layers = engine.config().n_layers;
        if layer >= layers {
            return Err(Error::InvalidRequest(format!(
                "layer {layer} does not exist ({layers} layers)"
            )));
        }
        let taps = Taps {
            only_layer: Some(layer),
            ..Taps::all()
        };
        Self::capture_with(engine, layout, taps).await
    }

    async fn capture_with(engine: &Engine, layout: Layout<'_>, taps: Taps) -> Result<Self> {
        let t = layout.ids.len();
        let (ids, positions) = (layout.ids.to_vec(), layout.positions.to_vec());
        let visible = match &layout.visible {
            Some(visible) => visible.clone(),
            None => (0..t * t).map(|i| i % t <= i / t).collect(),
        };
        let mut session = engine.session(t)?;
        let captured = session
            .feed(Feed::layout(layout).taps(taps))
            .await?
            .captured;
        let c = engine.config();
        let attention_layers: Vec<usize> = match taps.only_layer {
            Some(layer) => vec![layer],
            None => (0..c.n_layers).collect(),
        };
        let inspection = Inspection {
            attention_layers,
            ids,
            positions,
            visible,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            d_model: c.d_model,
            probs: captured.attention.concat(),
            queries: captured.queries.concat(),
            keys: captured.keys.concat(),
            residual: captured.residual.concat(),
        };
        let expected = inspection.attention_layers.len() * c.n_heads * t * t;
        if inspection.probs.len() != expected {
            return Err(Error::InvalidRequest(format!(
                "captured {} attention weights, expected {expected}",
                inspection.probs.len()
            )));
        }
        Ok(inspection)
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Where layer `layer`'s attention is kept, after checking that the head exists and the
    /// layer was captured.
    fn slot(&self, layer: usize, head: usize) -> Result<usize> {
        if layer >= self.n_layers || head >= self.n_heads {
            return Err(Error::InvalidRequest(format!(
                "layer {layer} head {head} does not exist ({} layers of {} heads)",
                self.n_layers, self.n_heads
            )));
        }
        self.attention_layers
            .iter()
            .position(|&l| l == layer)
            .ok_or_else(|| Error::InvalidRequest(format!("layer {layer} was not captured")))
    }

    /// One head's attention probabilities, `(t, t)` row-major.
    pub fn head(&self, layer: usize, head: usize) -> Result<&[f32]> {
        let slot = self.slot(layer, head)?;
        let t = self.tokens();
        let start = (slot * self.n_heads + head) * t * t;
        Ok(&self.probs[start..start + t * t])
    }

    /// One head's scores before the softmax, `q·k / √head_dim`, `(t, t)` row-major; `None`
    /// where the mask hides the key.
    pub fn scores(&self, layer: usize, head: usize) -> Result<Vec<Option<f32>>> {
        let slot = self.slot(layer, head)?;
        let (t, hd) = (self.tokens(), self.head_dim);
        let q_width = self.n_heads * hd;
        let k_width = self.n_kv_heads * hd;
        // Grouped-query attention: consecutive query heads share a key head.
        let kv_head = head / (self.n_heads / self.n_kv_heads);
        let queries = &self.queries[slot * t * q_width..(slot + 1) * t * q_width];
        let keys = &self.keys[slot * t * k_width..(slot + 1) * t * k_width];
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = Vec::with_capacity(t * t);
        for i in 0..t {
            let q = &queries[i * q_width + head * hd..][..hd];
            for j in 0..t {
                if !self.visible[i * t + j] {
                    scores.push(None);
                    continue;
                }
                let k = &keys[j * k_width + kv_head * hd..][..hd];
                let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                scores.push(Some(dot * scale));
            }
        }
        Ok(scores)
    }

    /// Attention rollout over the captured layers (all of them, unless captured with
    /// [`Inspection::capture_layer`]), `(t, t)`: row i says how much of token i's final
    /// representation flows from each input token.
    pub fn rollout(&self) -> Vec<f32> {
        let t = self.tokens();
        let layers: Vec<Vec<f32>> = self
            .probs
            .chunks(self.n_heads * t * t)
            .map(|heads| {
                let mut mean = vec![0f32; t * t];
                for head in heads.chunks(t * t) {
                    for (m, p) in mean.iter_mut().zip(head) {
                        *m += p / self.n_heads as f32;
                    }
                }
                mean
            })
            .collect();
        rollout(&layers, t)
    }

    /// The logit lens at token `index`: for each layer, the `k` most likely next tokens if the
    /// model stopped after that layer.
    pub async fn logit_lens(
        &self,
        engine: &Engine,
        index: usize,
        k: usize,
    ) -> Result<Vec<LensRow>> {
        let (t, d) = (self.tokens(), self.d_model);
        if index >= t {
            return Err(Error::InvalidRequest(format!(
                "token {index} does not exist ({t} tokens)"
            )));
        }
        let rows: Vec<f32> = (0..self.n_layers)
            .flat_map(|layer| {
                let start = (layer * t + index) * d;
                self.residual[start..start + d].iter().copied()
            })
            .collect();
        let logits = engine.logits_of_residuals(&rows, self.n_layers).await?; // (layers, vocab)
        let vocab = logits.len() / self.n_layers;
        Ok(logits
            .chunks(vocab)
            .map(|row| {
                let lse = log_sum_exp(row);
                top_k(row, k)
                    .into_iter()
                    .map(|(id, logit)| (id, (logit - lse).exp()))
                    .collect()
            })
            .collect())
    }

    /// Every head as a small picture for the model view: `(layers, heads, side, side)` bytes,
    /// each pixel the largest weight in its block of the matrix, as `255·√weight`.
    pub fn thumbnails(&self, side: usize) -> (usize, Vec<u8>) {
        let t = self.tokens();
        let side = side.min(t).max(1);
        let mut out = vec![0u8; self.n_layers * self.n_heads * side * side];
        for (matrix, picture) in self.probs.chunks(t * t).zip(out.chunks_mut(side * side)) {
            for i in 0..t {
                for j in 0..t {
                    let cell = (i * side / t) * side + j * side / t;
                    let value = (matrix[i * t + j].max(0.0).sqrt() * 255.0).round() as u8;
                    picture[cell] = picture[cell].max(value);
                }
            }
        }
        (side, out)
    }
}
