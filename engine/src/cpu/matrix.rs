//! Weight matrices on the CPU, and which kernel multiplies by each.
//!
//! Q4_0, Q4_1 and Q8_0 go through our integer kernels ([`super::quant`]). Every other type the
//! GGUF reader accepts goes through candle-core's quantized matmul: that is the one place the
//! CPU backend still uses candle, because there its kernels do the work.

use super::quant::{self, QMatrix};
use crate::error::{Error, Result};
use crate::gguf::blocks;
use crate::gguf::{GgmlType, TensorInfo};
use crate::tensor::Tensor;
use candle_core::quantized::{ggml_file, GgmlDType, QMatMul};
use candle_core::{Device, Module};

/// A weight matrix on the CPU.
pub enum CpuMatrix {
    /// Q4_0 / Q4_1 / Q8_0: our integer kernels; rows also serve as an embedding table.
    Blocks(QMatrix),
    /// Other types: candle's quantized matmul; the raw bytes serve embedding lookups.
    Candle {
        matmul: QMatMul,
        info: TensorInfo,
        bytes: Vec<u8>,
    },
}

fn ggml_dtype(ty: GgmlType) -> GgmlDType {
    match ty {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Q5K => GgmlDType::Q5K,
        GgmlType::Q6K => GgmlDType::Q6K,
    }
}

impl CpuMatrix {
    /// Takes a weight matrix as the GGUF stores it (the reader has checked its byte length).
    pub fn upload(info: &TensorInfo, bytes: &[u8]) -> Result<Self> {
        let (rows, cols) = info.rows_cols();
        if quant::is_supported(info.ggml_type) {
            let matrix = QMatrix::new(info.ggml_type, rows, cols, bytes.to_vec())
                .map_err(|e| Error::BadModel(format!("{}: {e}", info.name)))?;
            return Ok(CpuMatrix::Blocks(matrix));
        }
        // candle wants the PyTorch-order shape.
        let qtensor = ggml_file::qtensor_from_ggml(
            ggml_dtype(info.ggml_type),
            bytes,
            vec![rows, cols],
            &Device::Cpu,
        )?;
        Ok(CpuMatrix::Candle {
            matmul: QMatMul::from_qtensor(qtensor)?,
            info: info.clone(),
            bytes: bytes.to_vec(),
        })
    }

    /// (rows, columns)
    pub fn shape(&self) -> (usize, usize) {
        match self {
            CpuMatrix::Blocks(m) => (m.rows, m.cols),
            CpuMatrix::Candle { info, .. } => info.rows_cols(),
        }
    }

    /// Row `r` (checked by the caller), dequantized.
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

    /// The matrices as our integer kernels' type, if they all are.
    fn all_blocks<'a>(weights: &[&'a CpuMatrix]) -> Option<Vec<&'a QMatrix>> {
        weights
            .iter()
            .map(|w| match w {
                CpuMatrix::Blocks(m) => Some(m),
                CpuMatrix::Candle { .. } => None,
            })
            .collect()
    }

    /// `x · Wᵀ` through candle (its matmul is f32 throughout).
    fn candle_matmul(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, cols) = x.dims();
        match self {
            CpuMatrix::Blocks(m) => Tensor::new(quant::matmul(x.data(), tokens, m), tokens, m.rows),
            CpuMatrix::Candle { matmul, .. } => {
                let input =
                    candle_core::Tensor::from_slice(x.data(), (tokens, cols), &Device::Cpu)?;
                let output = matmul.forward(&input)?;
                let (rows, outputs) = output.dims2()?;
                Tensor::new(output.flatten_all()?.to_vec1::<f32>()?, rows, outputs)
            }
        }
    }
}

/// `x · Wᵀ` for each of `weights` (shapes checked by the caller). When every matrix has an
/// integer kernel, the activations are quantized to 16 bits once for all of them (`exact`
/// keeps them in f32 instead); otherwise each matrix goes its own way.
pub fn matmul(x: &Tensor, weights: &[&CpuMatrix], exact: bool) -> Result<Vec<Tensor>> {
    let tokens = x.rows();
    if let Some(blocks) = CpuMatrix::all_blocks(weights) {
        let outputs = if exact {
            quant::matmul_many_exact(x.data(), tokens, &blocks)
        } else {
            quant::matmul_many(x.data(), tokens, &blocks)
        };
        return outputs
            .into_iter()
            .zip(&blocks)
            .map(|(y, m)| Tensor::new(y, tokens, m.rows))
            .collect();
    }
    weights.iter().map(|w| w.candle_matmul(x)).collect()
}
