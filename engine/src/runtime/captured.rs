//! What a feed's taps captured, read back to the host ([`Captured`]).

use crate::backend::Backend;
use crate::error::Result;
use crate::models::taps::Captures;

/// Captures read back to the host, one entry per layer, row-major (see [`Captures`]).
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// `(n_heads·tokens, cached + tokens)`.
    pub attention: Vec<Vec<f32>>,
    /// `(tokens, d_model)` after each block.
    pub residual: Vec<Vec<f32>>,
    /// `(tokens, n_heads·head_dim)` after RoPE.
    pub queries: Vec<Vec<f32>>,
    /// `(tokens, n_kv_heads·head_dim)` after RoPE.
    pub keys: Vec<Vec<f32>>,
    /// `(tokens, n_heads·head_dim)` before the attention output projection.
    pub head_outputs: Vec<Vec<f32>>,
}

/// Reads captured tensors back to the host, one after another.
pub(super) async fn read_captures<B: Backend>(
    backend: &B,
    captures: Captures<B>,
) -> Result<Captured> {
    async fn read_all<B: Backend>(backend: &B, tensors: Vec<B::Tensor>) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(tensors.len());
        for tensor in &tensors {
            out.push(backend.read(tensor).await?);
        }
        Ok(out)
    }
    Ok(Captured {
        attention: read_all(backend, captures.attention).await?,
        residual: read_all(backend, captures.residual).await?,
        queries: read_all(backend, captures.queries).await?,
        keys: read_all(backend, captures.keys).await?,
        head_outputs: read_all(backend, captures.head_outputs).await?,
    })
}
