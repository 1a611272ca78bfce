//! The CPU backend: plain host tensors ([`crate::tensor::Tensor`]), our quantized matmul kernels
//! ([`quant`], one file per instruction set), attention over a KV cache and retention on slices,
//! and the small row-wise twins of the WGSL kernels ([`ops`]). Natively it uses every core (our
//! own [`pool`]); in the browser it runs with wasm SIMD on the engine worker's thread, and on a
//! pool of Web Workers too where the page is cross-origin isolated (the threaded build).
//!
//! Every op checks its arguments with [`crate::backend::checks`] first, as the WebGPU backend
//! does, so the slices below can be indexed without surprises.

mod attend_group;
pub mod attention;
pub mod float;
mod kv_cache;
pub mod matrix;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod retention;

pub use matrix::CpuMatrix;
pub use ops::{
    gelu, group_norm_rows, quantize_activations_8bit, rms_norm_rows, rope_halves, rope_interleaved,
};

use crate::backend::{
    checks, rope_shift_angles, AttentionShape, Backend, Mask, RetentionForm, RopeSpec, RopeStyle,
    Selection,
};
use crate::error::Result;
use crate::gguf::{blocks, TensorInfo};
use crate::tensor::Tensor;
use attention::KvCache;

#[derive(Clone, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    type Tensor = Tensor;
    type Matrix = CpuMatrix;
    type Cache = KvCache;

    fn name(&self) -> String {
        "CPU".to_string()
    }

    fn upload_matrix(&self, info: &TensorInfo, bytes: Vec<u8>) -> Result<CpuMatrix> {
        CpuMatrix::upload(info, bytes)
    }

    fn upload_vector(&self, info: &TensorInfo, bytes: &[u8]) -> Result<Tensor> {
        Ok(Tensor::row_vector(blocks::dequantize_to_vec(
            info.ggml_type,
            bytes,
        )))
    }

    fn tensor(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        Tensor::new(data.to_vec(), rows, cols)
    }

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<KvCache> {
        KvCache::new(shape, capacity)
    }

    fn cache_len(&self, cache: &KvCache) -> usize {
        cache.len
    }

    fn cache_truncate(&self, cache: &mut KvCache, len: usize) {
        cache.len = cache.len.min(len);
    }

    fn cache_keep(
        &self,
        cache: &mut KvCache,
        keep: &[usize],
        shifts: &[i32],
        rope: RopeSpec,
    ) -> Result<()> {
        checks::cache_keep(cache.len, keep, shifts)?;
        let angles = rope_shift_angles(shifts, cache.shape.head_dim, rope.base);
        cache.keep(keep, &angles, rope.style);
        Ok(())
    }

    fn embed(&self, table: &CpuMatrix, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = table.shape();
        checks::embed(ids, rows)?;
        let mut out = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            out.extend(table.row_f32(id as usize));
        }
        Tensor::new(out, ids.len(), cols)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
        checks::rms_norm(x.dims(), weight.data().len())?;
        let mut out = x.clone();
        let weight = weight.data();
        pool::for_each_chunk(out.data_mut(), weight.len(), |_, rows| {
            rms_norm_rows(rows, weight, eps)
        });
        Ok(out)
    }

    fn matmul(&self, x: &Tensor, weights: &[&CpuMatrix]) -> Result<Vec<Tensor>> {
        let shapes: Vec<_> = weights.iter().map(|w| w.shape()).collect();
        checks::matmul(x.dims(), &shapes)?;
        matrix::matmul(x, weights, false)
    }

    fn matmul_exact(&self, x: &Tensor, weights: &[&CpuMatrix]) -> Result<Vec<Tensor>> {
        let shapes: Vec<_> = weights.iter().map(|w| w.shape()).collect();
        checks::matmul(x.dims(), &shapes)?;
        matrix::matmul(x, weights, true)
    }

    fn rope(
        &self,
        x: &Tensor,
        head_dim: usize,
        positions: &[u32],
        base: f32,
        style: RopeStyle,
    ) -> Result<Tensor> {
        checks::rope(x.dims(), head_dim, positions)?;
        let mut out = x.clone();
        let rotate = match style {
            RopeStyle::Interleaved => rope_interleaved,
            RopeStyle::Halves => rope_halves,
        };
        let cols = x.cols();
        pool::for_each_chunk(out.data_mut(), cols, |start, rows| {
            let first = start / cols.max(1);
            let positions = &positions[first..first + rows.len() / cols.max(1)];
            rotate(rows, cols, head_dim, positions, base)
        });
        Ok(out)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
        shape: AttentionShape,
        mask: &Mask,
        want_probs: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        checks::attention(q.dims(), k.dims(), v.dims(), cache.state(), shape, mask)?;
        let t = q.rows();
        cache.append(k.data(), v.data(), t);
        let (out, probs) = attention::attend(q.data(), t, cache, mask, want_probs);
        let out = Tensor::new(out, t, shape.n_heads * shape.head_dim)?;
        let probs = match probs {
            Some(p) => Some(Tensor::new(p, shape.n_heads * t, cache.len)?),
            None => None,
        };
        Ok((out, probs))
    }

    fn retention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        head_dim: usize,
        decays: &[f32],
        form: RetentionForm,
        want_scores: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        checks::retention(q.dims(), k.dims(), v.dims(), head_dim, decays)?;
        let (t, width) = q.dims();
        let (q, k, v) = (q.data(), k.data(), v.data());
        let out = match form {
            RetentionForm::Parallel => retention::parallel(q, k, v, t, head_dim, decays),
            RetentionForm::Recurrent => retention::recurrent(q, k, v, t, head_dim, decays),
            RetentionForm::Chunkwise(chunk) => {
                retention::chunkwise(q, k, v, t, head_dim, decays, chunk)
            }
        };
        let out = Tensor::new(out, t, width)?;
        let scores = if want_scores {
            let s = retention::scores(q, k, t, head_dim, decays);
            Some(Tensor::new(s, decays.len() * t, t)?)
        } else {
            None
        };
        Ok((out, scores))
    }

    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        checks::group_norm(x.dims(), groups, weight.data().len(), bias.data().len())?;
        let mut out = x.clone();
        group_norm_rows(out.data_mut(), groups, weight.data(), bias.data(), eps);
        Ok(out)
    }

    fn gelu(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.map(gelu))
    }

    fn silu_mul(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        checks::same_shape("silu_mul", gate.dims(), up.dims())?;
        Ok(zip_map_in_parallel(gate, up, ops::silu_mul))
    }

    fn gelu_mul(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        checks::same_shape("gelu_mul", gate.dims(), up.dims())?;
        Ok(zip_map_in_parallel(gate, up, ops::gelu_mul))
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        checks::same_shape("add", a.dims(), b.dims())?;
        Ok(zip_map_in_parallel(a, b, |a, b| a + b))
    }

    fn scale(&self, x: &Tensor, factor: f32) -> Result<Tensor> {
        Ok(x.map(|v| v * factor))
    }

    fn reshape(&self, x: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        checks::reshape(x.dims(), rows, cols)?;
        Tensor::new(x.data().to_vec(), rows, cols)
    }

    fn column_affine(&self, x: &Tensor, coefficients: &Tensor) -> Result<Tensor> {
        checks::column_affine(x.dims(), coefficients.dims())?;
        let (scale, shift) = coefficients.data().split_at(x.cols());
        let mut out = x.data().to_vec();
        for row in out.chunks_exact_mut(x.cols().max(1)) {
            for ((v, a), b) in row.iter_mut().zip(scale).zip(shift) {
                *v = *v * a + b;
            }
        }
        Tensor::new(out, x.rows(), x.cols())
    }

    fn splice_rows(&self, x: &Tensor, first_row: usize, rows: &Tensor) -> Result<Tensor> {
        checks::splice_rows(x.dims(), first_row, rows.dims())?;
        let mut out = x.data().to_vec();
        let start = first_row * x.cols();
        out[start..start + rows.data().len()].copy_from_slice(rows.data());
        Tensor::new(out, x.rows(), x.cols())
    }

    fn quantize_activations(&self, x: &Tensor, keep_outliers_above: Option<f32>) -> Result<Tensor> {
        let out = ops::quantize_activations_8bit(x.data(), x.cols(), keep_outliers_above);
        Tensor::new(out, x.rows(), x.cols())
    }

    fn last_rows(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        Ok(x.last_rows(n))
    }

    fn dims(&self, x: &Tensor) -> (usize, usize) {
        x.dims()
    }

    async fn read(&self, x: &Tensor) -> Result<Vec<f32>> {
        Ok(x.data().to_vec())
    }

    async fn top_k(&self, logits: &Tensor, selection: &Selection) -> Result<Vec<(u32, f32)>> {
        checks::top_k(logits.dims(), selection)?;
        Ok(crate::numerics::penalized_top_k(
            logits.row(logits.rows() - 1),
            selection.k,
            &selection.penalized,
            selection.penalty,
        ))
    }
}

/// [`Tensor::zip_map`] spread over the pool where the tensors are large (a prompt's MLP).
fn zip_map_in_parallel(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Tensor {
    let mut out = a.clone();
    let b = b.data();
    pool::for_each_chunk(out.data_mut(), 1, |start, chunk| {
        zip_in_place(chunk, &b[start..], &f)
    });
    out
}

/// `v = f(v, w)` for each pair, compiled for AVX-512 where the CPU has it: the native build
/// targets plain x86-64, whose two-lane vectors ran GELU's f64 exponential at about ten
/// cycles an element (3% of a Gemma 3 prompt). The same operations in the same order, so the
/// same bits, with any vectors.
fn zip_in_place(out: &mut [f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
    #[inline(always)]
    fn each(out: &mut [f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
        for (v, &w) in out.iter_mut().zip(b) {
            *v = f(*v, w);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
        unsafe fn each_avx512(out: &mut [f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
            each(out, b, f)
        }
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features (checked just above).
            return unsafe { each_avx512(out, b, f) };
        }
    }
    each(out, b, f)
}
