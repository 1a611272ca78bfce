//! Named taps on a language model's forward pass (in the spirit of TransformerLens's hooks):
//! what to capture is asked for up front, and costs nothing when nothing is asked.

use crate::backend::Backend;

/// What to capture during a forward pass (nothing by default: no cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taps {
    /// Attention probabilities of every head.
    pub attention: bool,
    /// The residual stream after each block (for the logit lens).
    pub residual: bool,
    /// Queries and keys after RoPE, from which the pre-softmax scores follow.
    pub queries_keys: bool,
    /// Each layer's head outputs, before the attention output projection (mean ablation and
    /// logit attribution start from them).
    pub head_outputs: bool,
    /// Attention, queries and keys of this layer only (their memory grows with the square of
    /// the tokens); `None`: of every layer.
    pub only_layer: Option<usize>,
}

impl Taps {
    pub fn any(&self) -> bool {
        self.attention || self.residual || self.queries_keys || self.head_outputs
    }

    /// Everything the attention explorer shows.
    pub fn all() -> Self {
        Taps {
            attention: true,
            residual: true,
            queries_keys: true,
            head_outputs: false,
            only_layer: None,
        }
    }

    /// Whether layer `layer`'s attention (and queries and keys) are captured.
    pub fn attention_at(&self, layer: usize) -> bool {
        self.attention && self.only_layer.is_none_or(|only| only == layer)
    }

    pub fn queries_keys_at(&self, layer: usize) -> bool {
        self.queries_keys && self.only_layer.is_none_or(|only| only == layer)
    }
}

/// What a forward pass captured, still on the backend.
pub struct Captures<B: Backend> {
    /// Per layer: `(n_heads·tokens, cached + tokens)`.
    pub attention: Vec<B::Tensor>,
    /// Per layer: `(tokens, d_model)` after the block.
    pub residual: Vec<B::Tensor>,
    /// Per layer: `(tokens, n_heads·head_dim)` after RoPE.
    pub queries: Vec<B::Tensor>,
    /// Per layer: `(tokens, n_kv_heads·head_dim)` after RoPE (the new tokens' keys only).
    pub keys: Vec<B::Tensor>,
    /// Per layer: `(tokens, n_heads·head_dim)`, the heads' outputs (after any ablation).
    pub head_outputs: Vec<B::Tensor>,
}

impl<B: Backend> Default for Captures<B> {
    fn default() -> Self {
        Captures {
            attention: Vec::new(),
            residual: Vec::new(),
            queries: Vec::new(),
            keys: Vec::new(),
            head_outputs: Vec::new(),
        }
    }
}

impl<B: Backend> Captures<B> {
    /// Appends another forward pass's captures (the next chunk of a prompt).
    pub fn extend(&mut self, other: Captures<B>) {
        self.attention.extend(other.attention);
        self.residual.extend(other.residual);
        self.queries.extend(other.queries);
        self.keys.extend(other.keys);
        self.head_outputs.extend(other.head_outputs);
    }
}
