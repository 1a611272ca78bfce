//! The narrow set of operations the models need, implemented once per backend.
//!
//! Models (`models/*.rs`) are written once against [`Backend`]; the CPU backend (our kernels on
//! plain host tensors) and the WebGPU backend (our WGSL kernels) implement it. Activations
//! are 2-D, `(tokens, features)`, row-major f32. Nothing here reads data back to the CPU except
//! [`Backend::read`] and [`Backend::top_k`], which are async because on WebGPU they wait for
//! the GPU.
//!
//! Both backends check their arguments with the same functions ([`checks`]), so a bad shape gets
//! the same message wherever it runs.

pub mod checks;

use crate::error::Result;
use crate::gguf::TensorInfo;
use std::future::Future;

pub use crate::numerics::{penalized_top_k, rope_angles, rope_shift_angles};

/// Which keys each new query may attend to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// New token i sees every cached key and new keys 0..=i.
    Causal,
    /// Row-major `(new tokens, cached + new tokens)`; `true` = visible. Set-Based Prompting
    /// passes a block mask here.
    Explicit(Vec<bool>),
}

impl Mask {
    /// Whether new token `query` may see key `key` (indices over cached + new keys).
    pub fn visible(&self, query: usize, key: usize, cached: usize, total: usize) -> bool {
        match self {
            Mask::Causal => key <= cached + query,
            Mask::Explicit(visible) => visible[query * total + key],
        }
    }

    /// The mask as rows of booleans, for drawing and for backends that upload it.
    pub fn to_rows(&self, new_tokens: usize, cached: usize) -> Vec<bool> {
        let total = cached + new_tokens;
        (0..new_tokens)
            .flat_map(|q| (0..total).map(move |k| (q, k)))
            .map(|(q, k)| self.visible(q, k, cached, total))
            .collect()
    }
}

/// How retention computes its output. All three give the same numbers (up to rounding); they
/// differ in cost: parallel holds a `(t, t)` matrix per head, recurrent a `(d_head, d_head)`
/// state and one token at a time, chunkwise both, per chunk of the given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RetentionForm {
    Parallel,
    Recurrent,
    Chunkwise(usize),
}

/// Which elements of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RopeStyle {
    /// Pairs `(x[2i], x[2i+1])`: llama's GGUF layout (its Q and K rows are permuted for it).
    Interleaved,
    /// Pairs `(x[i], x[i + head_dim/2])` (GPT-NeoX's "rotate half"): Gemma and most others.
    Halves,
}

/// How a layer's keys were rotated: what [`Backend::cache_keep`] needs to turn them further.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    pub base: f32,
    pub style: RopeStyle,
}

/// Attention shape: query heads share key/value heads in groups (GQA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Which next-token candidates [`Backend::top_k`] returns: the `k` best of the last row of
/// logits after the repetition penalty on `penalized` ids (see [`penalized_top_k`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub k: usize,
    pub penalized: Vec<u32>,
    pub penalty: f32,
}

impl Selection {
    /// The single most likely token.
    pub fn greedy() -> Self {
        Selection {
            k: 1,
            penalized: Vec::new(),
            penalty: 1.0,
        }
    }
}

pub trait Backend {
    /// Activations: `(tokens, features)` f32.
    type Tensor: Clone;
    /// A weight matrix `(out_features, in_features)`, possibly quantized.
    type Matrix;
    /// One layer's key/value cache.
    type Cache;

    /// People-facing name: "CPU", "WebGPU (adapter)".
    fn name(&self) -> String;

    /// Takes a weight matrix as the GGUF stores it (any supported type). The bytes are given,
    /// not lent: the CPU keeps them as they are, without a copy.
    fn upload_matrix(&self, info: &TensorInfo, bytes: Vec<u8>) -> Result<Self::Matrix>;
    /// Takes a 1-D weight (norm gains), dequantized to f32.
    fn upload_vector(&self, info: &TensorInfo, bytes: &[u8]) -> Result<Self::Tensor>;
    /// An f32 tensor of shape `(rows, cols)` from host data.
    fn tensor(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<Self::Cache>;
    fn cache_len(&self, cache: &Self::Cache) -> usize;
    /// Forgets every cached position from `len` on (regenerate, undo).
    fn cache_truncate(&self, cache: &mut Self::Cache, len: usize);
    /// Keeps the cached rows `keep` (ascending slots below the cache's length) at the front,
    /// in order, and forgets the others (attention policies evict tokens this way). Kept key
    /// `i` is turned by RoPE through `shifts[i]` positions (negative: back), so a key cached
    /// at position `p` answers as if it had been fed at `p + shifts[i]`; values only move.
    fn cache_keep(
        &self,
        cache: &mut Self::Cache,
        keep: &[usize],
        shifts: &[i32],
        rope: RopeSpec,
    ) -> Result<()>;

    /// Rows `ids` of an embedding table: `(tokens, d)`.
    fn embed(&self, table: &Self::Matrix, ids: &[u32]) -> Result<Self::Tensor>;
    /// `x / rms(x) * weight`, per row.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;
    /// `x · Wᵀ` for each matrix in `weights` (same input; backends may share work).
    fn matmul(&self, x: &Self::Tensor, weights: &[&Self::Matrix]) -> Result<Vec<Self::Tensor>>;
    /// [`Backend::matmul`] with the activations kept in f32 throughout. The CPU's matmul
    /// quantizes them to 16 bits (fast, and close); the explorer's captures use this one so
    /// both backends capture the same values. WebGPU's matmul is already this.
    fn matmul_exact(
        &self,
        x: &Self::Tensor,
        weights: &[&Self::Matrix],
    ) -> Result<Vec<Self::Tensor>> {
        self.matmul(x, weights)
    }
    /// Rotary position embedding of each head, its pairs chosen by `style`, with an explicit
    /// position per token.
    fn rope(
        &self,
        x: &Self::Tensor,
        head_dim: usize,
        positions: &[u32],
        base: f32,
        style: RopeStyle,
    ) -> Result<Self::Tensor>;
    /// Appends `k`, `v` (new tokens) to `cache`, then attends `q` over everything cached under
    /// `mask`. Returns `(tokens, n_heads·head_dim)` and, when `want_probs`, the attention
    /// probabilities `(n_heads·tokens, cached + tokens)` (head-major).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        cache: &mut Self::Cache,
        shape: AttentionShape,
        mask: &Mask,
        want_probs: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)>;
    /// Multi-head causal retention (RetNet): per head `o = ((q kᵀ / √d_head) ⊙ D) v` with
    /// `D[n, m] = decays[h]^(n−m)` for `n ≥ m`, else 0, computed in `form`. `q`, `k`, `v` are
    /// `(tokens, n_heads·head_dim)`. Returns `(tokens, n_heads·head_dim)` and, when
    /// `want_scores`, the matrix `(q kᵀ / √d_head) ⊙ D` as `(n_heads·tokens, tokens)`
    /// (head-major), whatever the form.
    #[allow(clippy::too_many_arguments)]
    fn retention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        head_dim: usize,
        decays: &[f32],
        form: RetentionForm,
        want_scores: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)>;
    /// Normalises each row's `groups` consecutive feature groups to zero mean and unit variance,
    /// then scales and shifts per feature: LayerNorm with one group, RetNet's per-head
    /// GroupNorm with one group per head. `weight` and `bias` are `(1, features)`.
    fn group_norm(
        &self,
        x: &Self::Tensor,
        groups: usize,
        weight: &Self::Tensor,
        bias: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// GELU, tanh approximation.
    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `silu(gate) * up` (SwiGLU).
    fn silu_mul(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    /// `gelu(gate) * up`, GELU's tanh approximation (GeGLU).
    fn gelu_mul(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x · factor`.
    fn scale(&self, x: &Self::Tensor, factor: f32) -> Result<Self::Tensor>;
    /// The same values read as `(rows, cols)` (row-major, so rows of `x` split or join).
    fn reshape(&self, x: &Self::Tensor, rows: usize, cols: usize) -> Result<Self::Tensor>;
    /// `x · coefficients[0] + coefficients[1]`, per column: `coefficients` is `(2, cols)`, a
    /// row of scales then a row of shifts. Interventions use it to ablate heads (scale 0, shift
    /// the replacement) and to steer (scale 1, shift the vector).
    fn column_affine(&self, x: &Self::Tensor, coefficients: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x` with rows `first_row ..` replaced by `rows` (activation patching).
    fn splice_rows(
        &self,
        x: &Self::Tensor,
        first_row: usize,
        rows: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// `x` as a product with 8-bit activations sees it: per row, blocks of 32 columns rounded
    /// to 8 bits with one scale each (amax / 127, as llama.cpp's Q8_0); with
    /// `keep_outliers_above`, the columns whose largest |value| over the rows reaches it stay
    /// as they were (LLM.int8's decomposition). The Lab's outlier view compares both with f32.
    fn quantize_activations(
        &self,
        x: &Self::Tensor,
        keep_outliers_above: Option<f32>,
    ) -> Result<Self::Tensor>;
    /// The last `n` rows.
    fn last_rows(&self, x: &Self::Tensor, n: usize) -> Result<Self::Tensor>;
    /// `(rows, cols)`.
    fn dims(&self, x: &Self::Tensor) -> (usize, usize);

    /// Copies a tensor to the CPU, row-major.
    fn read(&self, x: &Self::Tensor) -> impl Future<Output = Result<Vec<f32>>>;

    /// The candidates `selection` asks for from the last row of `logits`, as (id, logit),
    /// highest first (ties: lower id). On WebGPU only these few pairs are read back.
    fn top_k(
        &self,
        logits: &Self::Tensor,
        selection: &Selection,
    ) -> impl Future<Output = Result<Vec<(u32, f32)>>>;
}
