//! Weight matrices on the CPU, and which kernel multiplies by each.
//!
//! Every type the GGUF reader accepts has a kernel of ours ([`super::quant`]): the block types
//! with 16-bit activations, F16, BF16 and F32 in f32.

use super::quant::{self, QMatrix};
use crate::error::{Error, Result};
use crate::gguf::blocks;
use crate::gguf::TensorInfo;
use crate::tensor::Tensor;

/// A weight matrix on the CPU, in its GGUF bytes; its rows also serve as an embedding table.
pub struct CpuMatrix(QMatrix);

impl CpuMatrix {
    /// Takes a weight matrix as the GGUF stores it (the reader has checked its byte length).
    pub fn upload(info: &TensorInfo, bytes: Vec<u8>) -> Result<Self> {
        let (rows, cols) = info.rows_cols();
        let matrix = QMatrix::new(info.ggml_type, rows, cols, bytes)
            .map_err(|e| Error::BadModel(format!("{}: {e}", info.name)))?;
        Ok(CpuMatrix(matrix))
    }

    /// (rows, columns)
    pub fn shape(&self) -> (usize, usize) {
        (self.0.rows, self.0.cols)
    }

    /// Row `r` (checked by the caller), dequantized.
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        blocks::dequantize_to_vec(self.0.ty, self.0.row(r))
    }
}

/// `x · Wᵀ` for each of `weights` (shapes checked by the caller), in one parallel region. The
/// activations are quantized to 16 bits once for all the matrices of block types (`exact`
/// keeps them in f32 instead); F16, BF16 and F32 matrices take them in f32 either way.
pub fn matmul(x: &Tensor, weights: &[&CpuMatrix], exact: bool) -> Result<Vec<Tensor>> {
    let tokens = x.rows();
    let matrices: Vec<&QMatrix> = weights.iter().map(|w| &w.0).collect();
    let outputs = if exact {
        quant::matmul_many_exact(x.data(), tokens, &matrices)
    } else {
        quant::matmul_many(x.data(), tokens, &matrices)
    };
    outputs
        .into_iter()
        .zip(&matrices)
        .map(|(y, m)| Tensor::new(y, tokens, m.rows))
        .collect()
}
