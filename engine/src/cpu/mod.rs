//! The CPU backend: candle-core tensors and ops, with our own integer kernels for the block
//! types candle has no SIMD path for (see [`quant_matmul`]). Natively it uses every core
//! (rayon); in the browser it runs on the worker's thread with wasm SIMD.

pub mod blocks;
#[cfg(not(target_arch = "wasm32"))]
pub mod pool;
pub mod quant_matmul;

use crate::backend::{AttentionShape, Backend, Mask};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorInfo};
use candle_core::quantized::{ggml_file, GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Tensor};
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

/// One layer's keys and values, preallocated: `(kv_heads, capacity, head_dim)` each.
pub struct CpuCache {
    keys: Tensor,
    values: Tensor,
    len: usize,
    capacity: usize,
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
    type Cache = CpuCache;

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

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<CpuCache> {
        let dims = (shape.n_kv_heads, capacity, shape.head_dim);
        Ok(CpuCache {
            keys: Tensor::zeros(dims, DType::F32, &Device::Cpu)?,
            values: Tensor::zeros(dims, DType::F32, &Device::Cpu)?,
            len: 0,
            capacity,
        })
    }

    fn cache_len(&self, cache: &CpuCache) -> usize {
        cache.len
    }

    fn cache_truncate(&self, cache: &mut CpuCache, len: usize) {
        cache.len = cache.len.min(len);
    }

    fn embed(&self, table: &CpuMatrix, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols, row_of): (usize, usize, Box<dyn Fn(usize) -> Vec<f32> + '_>) = match table
        {
            CpuMatrix::Blocks(m) => (
                m.rows,
                m.cols,
                Box::new(move |r| blocks::dequantize_to_vec(m.ty, m.row(r))),
            ),
            CpuMatrix::Candle { info, bytes, .. } => {
                let (rows, cols) = info.rows_cols();
                let row_bytes = bytes.len() / rows.max(1);
                (
                    rows,
                    cols,
                    Box::new(move |r| {
                        blocks::dequantize_to_vec(
                            info.ggml_type,
                            &bytes[r * row_bytes..(r + 1) * row_bytes],
                        )
                    }),
                )
            }
        };
        let mut out = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            if id as usize >= rows {
                return Err(Error::InvalidRequest(format!(
                    "token id {id} is outside the vocabulary ({rows} tokens)"
                )));
            }
            out.extend(row_of(id as usize));
        }
        Ok(Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)?)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &weight.flatten_all()?, eps)?)
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

    fn rope(&self, x: &Tensor, head_dim: usize, positions: &[u32], base: f32) -> Result<Tensor> {
        let (tokens, features) = x.dims2()?;
        if positions.len() != tokens || features % head_dim != 0 || head_dim % 2 != 0 {
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
        cache: &mut CpuCache,
        shape: AttentionShape,
        mask: &Mask,
        want_probs: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let (t, _) = q.dims2()?;
        let cached = cache.len;
        let total = cached + t;
        if total > cache.capacity {
            return Err(Error::ContextOverflow {
                prompt: total,
                context: cache.capacity,
            });
        }
        let group = n_heads / n_kv_heads;

        // (t, kv_heads·d) → (kv_heads, t, d), written into the cache at [cached, total).
        let k = k
            .reshape((t, n_kv_heads, head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let v = v
            .reshape((t, n_kv_heads, head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        cache.keys.slice_set(&k, 1, cached)?;
        cache.values.slice_set(&v, 1, cached)?;
        cache.len = total;
        let keys = cache.keys.narrow(1, 0, total)?; // (kv_heads, total, d)
        let values = cache.values.narrow(1, 0, total)?; // (kv_heads, total, d)

        // Query heads h = kv·group + g share kv head kv: (t, heads·d) → (kv_heads, group·t, d).
        let q = q
            .reshape((t, n_kv_heads, group, head_dim))?
            .permute((1, 2, 0, 3))?
            .contiguous()?
            .reshape((n_kv_heads, group * t, head_dim))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&keys.t()?)? * scale)?; // (kv_heads, group·t, total)
        let bias: Vec<f32> = mask
            .to_rows(t, cached)
            .into_iter()
            .map(|visible| if visible { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let bias = Tensor::from_vec(bias, (1, 1, t, total), &Device::Cpu)?;
        let scores = scores
            .reshape((n_kv_heads, group, t, total))?
            .broadcast_add(&bias)?
            .reshape((n_kv_heads, group * t, total))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&values)?; // (kv_heads, group·t, d)
                                          // → (t, heads·d)
        let out = out
            .reshape((n_kv_heads, group, t, head_dim))?
            .permute((2, 0, 1, 3))?
            .contiguous()?
            .reshape((t, n_heads * head_dim))?;
        let probs = if want_probs {
            Some(probs.reshape((n_heads * t, total))?)
        } else {
            None
        };
        Ok((out, probs))
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
}

/// RoPE on interleaved pairs (x[2i], x[2i+1]) of each head, rotated by position·base^(-2i/d).
/// GGUF stores llama's Q and K rows permuted for exactly this pairing. The CPU twin of the
/// WebGPU rope kernel.
pub fn rope_interleaved(
    data: &mut [f32],
    features: usize,
    head_dim: usize,
    positions: &[u32],
    base: f32,
) {
    let half = head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| (base as f64).powf(-2.0 * i as f64 / head_dim as f64))
        .collect();
    for (row, &pos) in data.chunks_exact_mut(features).zip(positions) {
        let (sin, cos): (Vec<f32>, Vec<f32>) = inv_freq
            .iter()
            .map(|f| {
                let angle = pos as f64 * f;
                (angle.sin() as f32, angle.cos() as f32)
            })
            .unzip();
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos[i] - b * sin[i];
                head[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }
}
