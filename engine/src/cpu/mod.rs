//! The CPU backend: candle-core tensors and ops, with our own integer kernels for the block
//! types candle has no SIMD path for (see [`quant_matmul`]). Natively it uses every core
//! (rayon); in the browser it runs on the worker's thread with wasm SIMD.

pub mod attention;
pub mod blocks;
#[cfg(not(target_arch = "wasm32"))]
pub mod pool;
pub mod quant_matmul;
pub mod retention;

use crate::backend::{AttentionShape, Backend, Mask, RetentionForm};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorInfo};
use candle_core::quantized::{ggml_file, GgmlDType, QMatMul};
use candle_core::{Device, Module, Tensor};
use quant_matmul::QMatrix;

#[derive(Clone, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

/// A weight matrix on the CPU.
pub enum CpuMatrix {
    /// Q4_0 / Q4_1 / Q8_0: our integer kernels; rows also serve as an embedding table.
    Blocks(QMatrix),
    /// Other types (F32, F16, Q4_K, Q6_K): candle's quantized matmul, and the f32 table for
    /// embedding lookups, made on first use.
    Candle {
        matmul: QMatMul,
        info: TensorInfo,
        bytes: Vec<u8>,
    },
}

impl CpuMatrix {
    /// (rows, columns)
    pub fn shape(&self) -> (usize, usize) {
        match self {
            CpuMatrix::Blocks(m) => (m.rows, m.cols),
            CpuMatrix::Candle { info, .. } => info.rows_cols(),
        }
    }

    /// Row `r`, dequantized.
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        match self {
            CpuMatrix::Blocks(m) => blocks::dequantize_to_vec(m.ty, m.row(r)),
            CpuMatrix::Candle { info, bytes, .. } => {
                let row_bytes = bytes.len() / info.rows_cols().0.max(1);
                blocks::dequantize_to_vec(
                    info.ggml_type,
                    &bytes[r * row_bytes..(r + 1) * row_bytes],
                )
            }
        }
    }
}

fn ggml_dtype(ty: GgmlType) -> GgmlDType {
    match ty {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Q6K => GgmlDType::Q6K,
    }
}

impl Backend for CpuBackend {
    type Tensor = Tensor;
    type Matrix = CpuMatrix;
    type Cache = attention::KvCache;

    fn name(&self) -> String {
        "CPU".to_string()
    }

    fn upload_matrix(&self, info: &TensorInfo, bytes: &[u8]) -> Result<CpuMatrix> {
        let (rows, cols) = info.rows_cols();
        if quant_matmul::is_supported(info.ggml_type) {
            let matrix = QMatrix::new(info.ggml_type, rows, cols, bytes.to_vec())
                .map_err(|e| Error::BadModel(format!("{}: {e}", info.name)))?;
            return Ok(CpuMatrix::Blocks(matrix));
        }
        // candle wants the PyTorch-order shape.
        let dims = vec![rows, cols];
        let qtensor =
            ggml_file::qtensor_from_ggml(ggml_dtype(info.ggml_type), bytes, dims, &Device::Cpu)?;
        Ok(CpuMatrix::Candle {
            matmul: QMatMul::from_qtensor(qtensor)?,
            info: info.clone(),
            bytes: bytes.to_vec(),
        })
    }

    fn upload_vector(&self, info: &TensorInfo, bytes: &[u8]) -> Result<Tensor> {
        let values = blocks::dequantize_to_vec(info.ggml_type, bytes);
        let n = values.len();
        Ok(Tensor::from_vec(values, (1, n), &Device::Cpu)?)
    }

    fn tensor(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        Ok(Tensor::from_slice(data, (rows, cols), &Device::Cpu)?)
    }

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<attention::KvCache> {
        Ok(attention::KvCache::new(shape, capacity))
    }

    fn cache_len(&self, cache: &attention::KvCache) -> usize {
        cache.len
    }

    fn cache_truncate(&self, cache: &mut attention::KvCache, len: usize) {
        cache.len = cache.len.min(len);
    }

    fn embed(&self, table: &CpuMatrix, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = table.shape();
        let mut out = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            if id as usize >= rows {
                return Err(Error::InvalidRequest(format!(
                    "token id {id} is outside the vocabulary ({rows} tokens)"
                )));
            }
            out.extend(table.row_f32(id as usize));
        }
        Ok(Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)?)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
        let (rows, cols) = x.dims2()?;
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        rms_norm_rows(&mut data, &weight, eps);
        Ok(Tensor::from_vec(data, (rows, cols), &Device::Cpu)?)
    }

    fn matmul(&self, x: &Tensor, weights: &[&CpuMatrix]) -> Result<Vec<Tensor>> {
        let (tokens, cols) = x.dims2()?;
        let blocks: Option<Vec<&QMatrix>> = weights
            .iter()
            .map(|w| match w {
                CpuMatrix::Blocks(m) => Some(m),
                CpuMatrix::Candle { .. } => None,
            })
            .collect();
        if let Some(blocks) = blocks {
            if let Some(bad) = blocks.iter().find(|m| m.cols != cols) {
                return Err(Error::InvalidRequest(format!(
                    "matmul: input has {cols} features, the matrix expects {}",
                    bad.cols
                )));
            }
            let x = x.flatten_all()?.to_vec1::<f32>()?;
            return quant_matmul::matmul_many(&x, tokens, &blocks)
                .into_iter()
                .zip(&blocks)
                .map(|(y, m)| Ok(Tensor::from_vec(y, (tokens, m.rows), &Device::Cpu)?))
                .collect();
        }
        weights
            .iter()
            .map(|w| match w {
                CpuMatrix::Blocks(m) => {
                    let xs = x.flatten_all()?.to_vec1::<f32>()?;
                    let y = quant_matmul::matmul(&xs, tokens, m);
                    Ok(Tensor::from_vec(y, (tokens, m.rows), &Device::Cpu)?)
                }
                CpuMatrix::Candle { matmul, .. } => Ok(matmul.forward(x)?),
            })
            .collect()
    }

    fn matmul_exact(&self, x: &Tensor, weights: &[&CpuMatrix]) -> Result<Vec<Tensor>> {
        let (tokens, cols) = x.dims2()?;
        let blocks: Option<Vec<&QMatrix>> = weights
            .iter()
            .map(|w| match w {
                CpuMatrix::Blocks(m) if m.cols == cols => Some(m),
                _ => None,
            })
            .collect();
        // Other types go through candle, whose matmul is f32 already.
        let Some(blocks) = blocks else {
            return self.matmul(x, weights);
        };
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        quant_matmul::matmul_many_exact(&x, tokens, &blocks)
            .into_iter()
            .zip(&blocks)
            .map(|(y, m)| Ok(Tensor::from_vec(y, (tokens, m.rows), &Device::Cpu)?))
            .collect()
    }

    fn rope(&self, x: &Tensor, head_dim: usize, positions: &[u32], base: f32) -> Result<Tensor> {
        let (tokens, features) = x.dims2()?;
        if positions.len() != tokens
            || !features.is_multiple_of(head_dim)
            || !head_dim.is_multiple_of(2)
        {
            return Err(Error::InvalidRequest(format!(
                "rope: {tokens} tokens, {} positions, {features} features, head_dim {head_dim}",
                positions.len()
            )));
        }
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        rope_interleaved(&mut data, features, head_dim, positions, base);
        Ok(Tensor::from_vec(data, (tokens, features), &Device::Cpu)?)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut attention::KvCache,
        shape: AttentionShape,
        mask: &Mask,
        want_probs: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (t, _) = q.dims2()?;
        if cache.shape != shape {
            return Err(Error::InvalidRequest(
                "attention: the cache has another shape".into(),
            ));
        }
        if cache.len + t > cache.capacity {
            return Err(Error::ContextOverflow {
                prompt: cache.len + t,
                context: cache.capacity,
            });
        }
        let (k, v) = (
            k.flatten_all()?.to_vec1::<f32>()?,
            v.flatten_all()?.to_vec1::<f32>()?,
        );
        cache.append(&k, &v, t);
        let q = q.flatten_all()?.to_vec1::<f32>()?;
        let (out, probs) = attention::attend(&q, t, cache, mask, want_probs);
        let out = Tensor::from_vec(out, (t, shape.n_heads * shape.head_dim), &Device::Cpu)?;
        let probs = match probs {
            Some(p) => Some(Tensor::from_vec(
                p,
                (shape.n_heads * t, cache.len),
                &Device::Cpu,
            )?),
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
        let (t, width) = q.dims2()?;
        if width != decays.len() * head_dim || k.dims2()? != (t, width) || v.dims2()? != (t, width)
        {
            return Err(Error::InvalidRequest(format!(
                "retention: q {:?}, k {:?}, v {:?} for {} heads of {head_dim}",
                q.dims(),
                k.dims(),
                v.dims(),
                decays.len()
            )));
        }
        let [q, k, v] = [q, k, v].map(|x| x.flatten_all().and_then(|x| x.to_vec1::<f32>()));
        let (q, k, v) = (q?, k?, v?);
        let out = match form {
            RetentionForm::Parallel => retention::parallel(&q, &k, &v, t, head_dim, decays),
            RetentionForm::Recurrent => retention::recurrent(&q, &k, &v, t, head_dim, decays),
            RetentionForm::Chunkwise(chunk) => {
                retention::chunkwise(&q, &k, &v, t, head_dim, decays, chunk)
            }
        };
        let out = Tensor::from_vec(out, (t, width), &Device::Cpu)?;
        let scores = if want_scores {
            let s = retention::scores(&q, &k, t, head_dim, decays);
            Some(Tensor::from_vec(s, (decays.len() * t, t), &Device::Cpu)?)
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
        let (rows, cols) = x.dims2()?;
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.flatten_all()?.to_vec1::<f32>()?;
        if groups == 0 || !cols.is_multiple_of(groups) || weight.len() != cols || bias.len() != cols
        {
            return Err(Error::InvalidRequest(format!(
                "group_norm: {cols} features in {groups} groups, {} weights, {} biases",
                weight.len(),
                bias.len()
            )));
        }
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        group_norm_rows(&mut data, groups, &weight, &bias, eps);
        Ok(Tensor::from_vec(data, (rows, cols), &Device::Cpu)?)
    }

    fn gelu(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, cols) = x.dims2()?;
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let data = data.into_iter().map(gelu).collect();
        Ok(Tensor::from_vec(data, (rows, cols), &Device::Cpu)?)
    }

    fn silu_mul(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        Ok((gate.silu()? * up)?)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a + b)?)
    }

    fn last_rows(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        let (rows, _) = x.dims2()?;
        Ok(x.narrow(0, rows.saturating_sub(n), n.min(rows))?)
    }

    fn dims(&self, x: &Tensor) -> (usize, usize) {
        x.dims2().unwrap_or((0, 0))
    }

    async fn read(&self, x: &Tensor) -> Result<Vec<f32>> {
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }

    async fn top_k(
        &self,
        logits: &Tensor,
        k: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<(u32, f32)>> {
        let (rows, _) = logits.dims2()?;
        let last = logits
            .narrow(0, rows.saturating_sub(1), 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(crate::backend::penalized_top_k(
            &last, k, penalized, penalty,
        ))
    }
}

/// `x / sqrt(mean(x²) + eps) * weight` per row, the sum of squares in f64 as ggml does it.
/// The CPU twin of the WebGPU rms_norm kernel.
pub fn rms_norm_rows(data: &mut [f32], weight: &[f32], eps: f32) {
    for row in data.chunks_exact_mut(weight.len()) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / row.len() as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// LayerNorm (one group) or per-head GroupNorm on each row: the CPU twin of the WebGPU
/// group_norm kernel. Mean and variance are taken in two passes over the group.
pub fn group_norm_rows(data: &mut [f32], groups: usize, weight: &[f32], bias: &[f32], eps: f32) {
    let features = weight.len();
    let size = features / groups.max(1);
    for row in data.chunks_exact_mut(features) {
        for (g, group) in row.chunks_exact_mut(size).enumerate() {
            let mean = group.iter().sum::<f32>() / size as f32;
            let var = group.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / size as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for (i, v) in group.iter_mut().enumerate() {
                let f = g * size + i;
                *v = (*v - mean) * inv * weight[f] + bias[f];
            }
        }
    }
}

/// GELU, tanh approximation (as candle's `gelu` and the WebGPU kernel compute it).
pub fn gelu(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// RoPE on interleaved pairs (x[2i], x[2i+1]) of each head, rotated by the angles of
/// [`crate::backend::rope_angles`]. GGUF stores llama's Q and K rows permuted for exactly this
/// pairing. The CPU twin of the WebGPU rope kernel.
pub fn rope_interleaved(
    data: &mut [f32],
    features: usize,
    head_dim: usize,
    positions: &[u32],
    base: f32,
) {
    let half = head_dim / 2;
    let angles = crate::backend::rope_angles(positions, head_dim, base);
    for (row, angles) in data
        .chunks_exact_mut(features)
        .zip(angles.chunks_exact(half))
    {
        for head in row.chunks_exact_mut(head_dim) {
            for (i, [cos, sin]) in angles.iter().enumerate() {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos - b * sin;
                head[2 * i + 1] = a * sin + b * cos;
            }
        }
    }
}
