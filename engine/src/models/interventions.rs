//! Interventions: changes to a language model's forward pass, asked for up front and applied
//! inside the one forward pass on any backend (the writing counterpart of [`super::taps`]).
//! Empty, they cost nothing: every hook hands its input back untouched.
//!
//! Tokens are named by their index in the session (0 = the first token its cache holds), so a
//! prompt fed in several chunks, or after a reused prefix, is intervened on at the same places.

use super::shape::{ModelConfig, Step};
use crate::backend::{Backend, Mask};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// What to change in a forward pass (nothing by default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interventions {
    /// Heads whose output (their slice of the input to the attention output projection) is
    /// replaced, at every token.
    pub heads: Vec<HeadAblation>,
    /// Query → key edges blocked, in one layer each.
    pub knockouts: Vec<Knockout>,
    /// Residual-stream rows replaced after a block (activation patching).
    pub patches: Vec<ResidualPatch>,
    /// Vectors added to the residual stream after a block, at every token.
    pub steering: Vec<Steering>,
    /// Every matrix product's activations rounded to 8 bits first (the outlier view).
    #[serde(default)]
    pub activations_8bit: Option<Int8Activations>,
}

/// Activations rounded to 8 bits per block of 32 before each matrix product, as llama.cpp's
/// Q8_0 activations; with `keep_outliers_above`, the columns of a product's input whose
/// largest |value| reaches it stay wide, as LLM.int8 (Dettmers et al., 2022) keeps them
/// (it uses 6.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Int8Activations {
    pub keep_outliers_above: Option<f32>,
}

/// One head's output replaced: by zeros, or by fixed values (mean ablation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadAblation {
    pub layer: usize,
    pub head: usize,
    /// `None`: zeros. Else `head_dim` values, e.g. the head's mean output over a prompt.
    pub replacement: Option<Vec<f32>>,
}

/// Token `query` may not attend to token `key` in `layer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knockout {
    pub layer: usize,
    pub query: usize,
    pub key: usize,
}

/// The residual stream after block `layer` at token `token` becomes `values` (`d_model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualPatch {
    pub layer: usize,
    pub token: usize,
    pub values: Vec<f32>,
}

/// `vector` (`d_model`, already scaled) is added to the residual stream after block `layer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    pub layer: usize,
    pub vector: Vec<f32>,
}

impl Interventions {
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
            && self.knockouts.is_empty()
            && self.patches.is_empty()
            && self.steering.is_empty()
            && self.activations_8bit.is_none()
    }

    /// Zero-ablation of `(layer, head)` pairs.
    pub fn ablate_heads(heads: &[(usize, usize)]) -> Self {
        Interventions {
            heads: heads
                .iter()
                .map(|&(layer, head)| HeadAblation {
                    layer,
                    head,
                    replacement: None,
                })
                .collect(),
            ..Interventions::default()
        }
    }

    /// Refuses what does not fit the model: a layer or head it does not have, values of the
    /// wrong width, a knockout of a later key (causal attention never sees it anyway).
    pub fn check(&self, config: &ModelConfig) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidRequest(what));
        let layer = |layer: usize, what: &str| {
            if layer >= config.n_layers {
                bad(format!(
                    "{what} at layer {layer}: the model has layers 0 to {}",
                    config.n_layers - 1
                ))
            } else {
                Ok(())
            }
        };
        let width = |got: usize, want: usize, what: &str| {
            if got != want {
                bad(format!("{what} has {got} values; the model wants {want}"))
            } else {
                Ok(())
            }
        };
        for h in &self.heads {
            layer(h.layer, "a head ablation")?;
            if h.head >= config.n_heads {
                return bad(format!(
                    "head {} of layer {}: the model has heads 0 to {}",
                    h.head,
                    h.layer,
                    config.n_heads - 1
                ));
            }
            if let Some(values) = &h.replacement {
                width(values.len(), config.head_dim, "a head's replacement")?;
            }
        }
        for k in &self.knockouts {
            layer(k.layer, "a knockout")?;
            if k.key > k.query {
                return bad(format!(
                    "a knockout of key {} for query {}: a token never sees later ones",
                    k.key, k.query
                ));
            }
        }
        for p in &self.patches {
            layer(p.layer, "a patch")?;
            width(p.values.len(), config.d_model, "a patch")?;
        }
        for s in &self.steering {
            layer(s.layer, "a steering vector")?;
            width(s.vector.len(), config.d_model, "a steering vector")?;
        }
        if let Some(Int8Activations {
            keep_outliers_above: Some(threshold),
        }) = self.activations_8bit
        {
            if threshold.is_nan() || threshold < 0.0 {
                return bad(format!(
                    "an outlier threshold of {threshold}: a magnitude is at least 0"
                ));
            }
        }
        Ok(())
    }

    /// The first token whose states these interventions change (`usize::MAX`: none): a KV
    /// cache computed without them is still right before it.
    pub fn first_token_changed(&self) -> usize {
        let everywhere =
            !self.heads.is_empty() || !self.steering.is_empty() || self.activations_8bit.is_some();
        let from_knockouts = self.knockouts.iter().map(|k| k.query);
        let from_patches = self.patches.iter().map(|p| p.token);
        let first = from_knockouts
            .chain(from_patches)
            .min()
            .unwrap_or(usize::MAX);
        if everywhere {
            0
        } else {
            first
        }
    }

    /// Hook on the input of every matrix product: rounded to 8 bits when asked.
    pub fn product_input<'x, B: Backend>(
        &self,
        backend: &B,
        x: &'x B::Tensor,
    ) -> Result<Cow<'x, B::Tensor>> {
        match self.activations_8bit {
            None => Ok(Cow::Borrowed(x)),
            Some(q) => Ok(Cow::Owned(
                backend.quantize_activations(x, q.keep_outliers_above)?,
            )),
        }
    }

    /// Hook on the heads' outputs `(t, n_heads·head_dim)` of `layer`, before the output
    /// projection.
    pub fn head_outputs<B: Backend>(
        &self,
        backend: &B,
        layer: usize,
        head_dim: usize,
        attended: B::Tensor,
    ) -> Result<B::Tensor> {
        let mut ablated = self.heads.iter().filter(|h| h.layer == layer).peekable();
        if ablated.peek().is_none() {
            return Ok(attended);
        }
        let cols = backend.dims(&attended).1;
        let mut coefficients = vec![1.0; cols];
        coefficients.resize(2 * cols, 0.0); // scales, then shifts
        for h in ablated {
            let slice = h.head * head_dim..(h.head + 1) * head_dim;
            coefficients[slice.clone()].fill(0.0);
            if let Some(values) = &h.replacement {
                coefficients[cols + slice.start..cols + slice.end].copy_from_slice(values);
            }
        }
        let coefficients = backend.tensor(&coefficients, 2, cols)?;
        backend.column_affine(&attended, &coefficients)
    }

    /// Hook on the mask `layer` attends under: `mask` with this layer's knockouts removed.
    pub fn mask<'m>(&self, step: &Step, layer: usize, mask: &'m Mask) -> Result<Cow<'m, Mask>> {
        let (t, cached) = (step.ids.len(), step.cached_positions.len());
        let total = cached + t;
        let mut here = self
            .knockouts
            .iter()
            .filter(|k| k.layer == layer && (cached..total).contains(&k.query))
            .peekable();
        if here.peek().is_none() {
            return Ok(Cow::Borrowed(mask));
        }
        let mut rows = mask.to_rows(t, cached);
        for k in here {
            rows[(k.query - cached) * total + k.key] = false;
        }
        for (i, row) in rows.chunks_exact(total).enumerate() {
            if !row.contains(&true) {
                return Err(Error::InvalidRequest(format!(
                    "the knockouts leave token {} of layer {layer} nothing to attend to",
                    cached + i
                )));
            }
        }
        Ok(Cow::Owned(Mask::Explicit(rows)))
    }

    /// Hook on the residual stream `(t, d_model)` after block `layer`: steering added, then
    /// patched rows replaced.
    pub fn residual<B: Backend>(
        &self,
        backend: &B,
        step: &Step,
        layer: usize,
        x: B::Tensor,
    ) -> Result<B::Tensor> {
        let (t, d) = backend.dims(&x);
        let mut x = x;
        let mut steering = self.steering.iter().filter(|s| s.layer == layer).peekable();
        if steering.peek().is_some() {
            let mut coefficients = vec![1.0; d];
            coefficients.resize(2 * d, 0.0);
            for s in steering {
                for (shift, v) in coefficients[d..].iter_mut().zip(&s.vector) {
                    *shift += v;
                }
            }
            x = backend.column_affine(&x, &backend.tensor(&coefficients, 2, d)?)?;
        }
        let cached = step.cached_positions.len();
        for p in &self.patches {
            if p.layer == layer && (cached..cached + t).contains(&p.token) {
                let row = backend.tensor(&p.values, 1, d)?;
                x = backend.splice_rows(&x, p.token - cached, &row)?;
            }
        }
        Ok(x)
    }
}
