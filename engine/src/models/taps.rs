//! Named taps on a language model's forward pass (in the spirit of TransformerLens's hooks):
//! what to capture is asked for up front, and costs nothing when nothing is asked.

use crate::backend::Backend;

/// What to capture during a forward pass (nothing by default: no cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taps {
    /// Attention probabilities of every layer and head.
    pub attention: bool,
    /// The residual stream after each block (for the logit lens).
    pub residual: bool,
    /// Queries and keys after RoPE, from which the pre-softmax scores follow.
    pub queries_keys: bool,
}

impl Taps {
    pub fn any(&self) -> bool {
        self.attention || self.residual || self.queries_keys
    }

    /// Everything the attention explorer shows.
    pub fn all() -> Self {
        Taps {
            attention: true,
            residual: true,
            queries_keys: true,
        }
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
}

impl<B: Backend> Default for Captures<B> {
    fn default() -> Self {
        Captures {
            attention: Vec::new(),
            residual: Vec::new(),
            queries: Vec::new(),
            keys: Vec::new(),
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
    }
}
