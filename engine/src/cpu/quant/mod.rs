//! Quantized matrix multiplication on the CPU: `y = x · Wᵀ` with W stored in ggml blocks
//! (Q4_0, Q4_1, Q8_0).
//!
//! The activations are quantized to **16-bit** integers per block of 32 (scale = max|x| / 32767),
//! so each block's dot product is integer arithmetic on 16-bit lanes (AVX2 `vpmaddwd` natively,
//! wasm `i32x4.dot_i16x8` in the browser, plain Rust elsewhere) followed by one scale:
//! - Q4_1 (w = q·d + m): Σ w·x = d·dₓ·Σ q·qₓ + m·Σ x, so each activation block keeps its sum;
//! - Q4_0 (w = (q-8)·d): Σ w·x = d·dₓ·(Σ q·qₓ - 8·Σ qₓ);
//! - Q8_0 (w = q·d): Σ w·x = d·dₓ·Σ q·qₓ.
//!
//! Why 16 bits where llama.cpp uses 8: on this model, 8-bit activations make the output
//! chaotic — a change in the last bit of one float upstream moves next-token log-probs by up to
//! 0.25, because blocks holding one of its huge outlier activations leave 7 bits for everything
//! else. With 16 bits that effect is 256 times smaller, so the CPU, the browser's CPU tier and
//! WebGPU agree, and Set-Based Prompting's order-invariance holds to the last digits. The cost
//! is small: the kernels widen the 4-bit weights to 16 bits either way.
//!
//! candle has no SIMD kernel for Q4_1, the bundled model's type; that is why these exist.
//! Rows are split across threads natively ([`crate::cpu::pool`]); wasm runs on the worker's one
//! thread.
//!
//! One file per instruction set, each with the same block-by-block arithmetic: `scalar.rs` (the
//! reference), `avx2.rs` and `avx512.rs` (picked at run time from what the CPU reports) and
//! `simd128.rs` (wasm, picked at build time). This module holds what they share: the weight and
//! activation layouts, the dispatch, and the split of rows into parallel jobs.

use crate::gguf::GgmlType;
use half::f16;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

/// A weight matrix in ggml blocks: `rows` outputs, each a row of `cols` inputs.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
}

impl QMatrix {
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, String> {
        if !is_supported(ty) {
            return Err(format!("no CPU integer kernel for {ty}"));
        }
        let row_bytes = ty
            .bytes_for(cols as u64)
            .ok_or_else(|| format!("{cols} columns is not a whole number of {ty} blocks"))?;
        if data.len() as u64 != row_bytes * rows as u64 {
            return Err(format!(
                "{ty} matrix {rows}x{cols} needs {} bytes, got {}",
                row_bytes * rows as u64,
                data.len()
            ));
        }
        Ok(QMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }
}

/// The types with an integer kernel here.
pub fn is_supported(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// Activations quantized to 16 bits per block of 32, for `tokens` rows.
#[derive(Debug, Default, Clone)]
pub struct Q16Activations {
    pub blocks_per_row: usize,
    /// Per block: the scale dₓ, the block's true sum Σ x (the Q4_1 min term), and the sum of
    /// its quantized values Σ qₓ (the Q4_0 offset term), side by side.
    pub block_info: Vec<BlockInfo>,
    /// 32 quantized values per block.
    pub qs: Vec<i16>,
}

#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct BlockInfo {
    pub scale: f32,
    pub sum: f32,
    pub q_sum: i32,
}

impl Q16Activations {
    /// Quantizes `x` (tokens × cols, row-major). `cols` must be a multiple of 32.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let blocks_per_row = cols / 32;
        let n_blocks = x.len() / 32;
        let mut out = Q16Activations {
            blocks_per_row,
            block_info: Vec::with_capacity(n_blocks),
            qs: vec![0; n_blocks * 32],
        };
        for (block, qs) in x.chunks_exact(32).zip(out.qs.chunks_exact_mut(32)) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 32767.0;
            let inverse = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
            let mut q_sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(block) {
                *q = round_ties_even(v * inverse) as i16;
                q_sum += *q as i32;
            }
            out.block_info.push(BlockInfo {
                scale,
                sum: block.iter().sum(),
                q_sum,
            });
        }
        out
    }

    fn row(&self, token: usize) -> ActivationRow<'_> {
        let b = token * self.blocks_per_row;
        let e = b + self.blocks_per_row;
        ActivationRow {
            info: &self.block_info[b..e],
            qs: &self.qs[b * 32..e * 32],
        }
    }
}

#[derive(Clone, Copy)]
struct ActivationRow<'a> {
    info: &'a [BlockInfo],
    qs: &'a [i16],
}

type DotFn = fn(&[u8], ActivationRow<'_>) -> f32;
/// One weight row against four tokens at once (prefill): the row's blocks are unpacked once.
type Dot4Fn = fn(&[u8], [ActivationRow<'_>; 4]) -> [f32; 4];

/// The fastest dot product this machine has for `ty`.
fn dot_kernel(ty: GgmlType) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if ty == GgmlType::Q4_1 && avx512::available() {
            return avx512::dot_q4_1;
        }
        if avx2::available() {
            return match ty {
                GgmlType::Q4_1 => avx2::dot_q4_1,
                GgmlType::Q4_0 => avx2::dot_q4_0,
                _ => avx2::dot_q8_0,
            };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        return match ty {
            GgmlType::Q4_1 => simd128::dot_q4_1,
            GgmlType::Q4_0 => simd128::dot_q4_0,
            _ => simd128::dot_q8_0,
        };
    }
    #[allow(unreachable_code)]
    scalar_kernel(ty)
}

fn scalar_kernel(ty: GgmlType) -> DotFn {
    match ty {
        GgmlType::Q4_1 => scalar::dot_q4_1,
        GgmlType::Q4_0 => scalar::dot_q4_0,
        _ => scalar::dot_q8_0,
    }
}

/// A four-token kernel for `ty`, where one exists.
fn dot4_kernel(ty: GgmlType) -> Option<Dot4Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if ty == GgmlType::Q4_1 && avx512::available() {
            return Some(avx512::dot4_q4_1);
        }
        if ty == GgmlType::Q4_1 && avx2::available() {
            return Some(avx2::dot4_q4_1);
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if ty == GgmlType::Q4_1 {
        return Some(simd128::dot4_q4_1);
    }
    let _ = ty;
    None
}

/// The plain-Rust kernel for `ty`, whatever the machine: the reference for the SIMD ones.
pub fn scalar_dot(ty: GgmlType, row: &[u8], x: &Q16Activations, token: usize) -> f32 {
    scalar_kernel(ty)(row, x.row(token))
}

/// The dispatched (SIMD where available) kernel for one row and one token.
pub fn fast_dot(ty: GgmlType, row: &[u8], x: &Q16Activations, token: usize) -> f32 {
    dot_kernel(ty)(row, x.row(token))
}

/// `y (tokens × rows) = x (tokens × cols) · Wᵀ` for several matrices sharing one input, in one
/// parallel region (q/k/v, gate/up): the activations are quantized once.
pub fn matmul_many(x: &[f32], tokens: usize, weights: &[&QMatrix]) -> Vec<Vec<f32>> {
    let Some(first) = weights.first() else {
        return Vec::new();
    };
    let cols = first.cols;
    debug_assert!(weights.iter().all(|w| w.cols == cols));
    debug_assert_eq!(x.len(), tokens * cols);
    let acts = Q16Activations::quantize(x, cols);
    let acts = &acts;
    for_each_row(weights, tokens, |w, r, row_out| {
        let row = w.row(r);
        let dot = dot_kernel(w.ty);
        let mut t = 0;
        if let Some(dot4) = dot4_kernel(w.ty).filter(|_| tokens >= 4) {
            while t + 4 <= tokens {
                let four = [
                    acts.row(t),
                    acts.row(t + 1),
                    acts.row(t + 2),
                    acts.row(t + 3),
                ];
                row_out[t..t + 4].copy_from_slice(&dot4(row, four));
                t += 4;
            }
        }
        for (y, t) in row_out[t..].iter_mut().zip(t..) {
            *y = dot(row, acts.row(t));
        }
    })
}

/// [`matmul_many`] with the activations kept in f32: each weight row is dequantized and dotted
/// with every token in f32, which is what the WebGPU kernels compute. Several times slower
/// than the integer kernels; the attention explorer's captures use it, so that the CPU and
/// WebGPU show the same numbers (16-bit activations move an attention weight by up to ~1e-3
/// over 30 layers).
pub fn matmul_many_exact(x: &[f32], tokens: usize, weights: &[&QMatrix]) -> Vec<Vec<f32>> {
    let Some(first) = weights.first() else {
        return Vec::new();
    };
    let cols = first.cols;
    debug_assert_eq!(x.len(), tokens * cols);
    for_each_row(weights, tokens, |w, r, row_out| {
        let row = crate::gguf::blocks::dequantize_to_vec(w.ty, w.row(r));
        for (y, x) in row_out.iter_mut().zip(x.chunks_exact(cols)) {
            *y = dot_f32(&row, x);
        }
    })
}

/// An f32 dot product with eight independent sums, which the compiler maps onto SIMD lanes.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Runs `row_kernel(matrix, row, out)` for every row of every matrix, where `out` receives that
/// row's output for each token; splits the rows into parallel jobs natively and returns each
/// matrix's `(tokens × rows)` output.
fn for_each_row(
    weights: &[&QMatrix],
    tokens: usize,
    row_kernel: impl Fn(&QMatrix, usize, &mut [f32]) + Sync,
) -> Vec<Vec<f32>> {
    // Work items: chunks of rows of one matrix. Rows are written transposed (rows × tokens) so
    // each chunk owns a contiguous slice, then transposed back.
    let total_rows: usize = weights.iter().map(|w| w.rows).sum();
    let chunk_rows = chunk_rows(total_rows, tokens);
    let mut transposed: Vec<Vec<f32>> =
        weights.iter().map(|w| vec![0.0; w.rows * tokens]).collect();
    let mut jobs: Vec<(&QMatrix, usize, OutputSlice)> = Vec::new();
    for (w, out) in weights.iter().zip(transposed.iter_mut()) {
        for (i, chunk) in out.chunks_mut(chunk_rows * tokens).enumerate() {
            jobs.push((
                w,
                i * chunk_rows,
                OutputSlice(chunk.as_mut_ptr(), chunk.len()),
            ));
        }
    }
    let run = |job: usize| {
        let (w, first_row, ref out) = jobs[job];
        // SAFETY: every job owns a disjoint chunk of `transposed`, which outlives the run.
        let out = unsafe { std::slice::from_raw_parts_mut(out.0, out.1) };
        for (i, row_out) in out.chunks_mut(tokens).enumerate() {
            row_kernel(w, first_row + i, row_out);
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    crate::cpu::pool::global().run(jobs.len(), &run);
    #[cfg(target_arch = "wasm32")]
    (0..jobs.len()).for_each(run);

    if tokens == 1 {
        return transposed;
    }
    weights
        .iter()
        .zip(transposed)
        .map(|(w, t)| {
            let mut y = vec![0.0; tokens * w.rows];
            for r in 0..w.rows {
                for j in 0..tokens {
                    y[j * w.rows + r] = t[r * tokens + j];
                }
            }
            y
        })
        .collect()
}

/// One job's part of an output buffer.
struct OutputSlice(*mut f32, usize);
// SAFETY: each job writes only its own slice; the buffers outlive the parallel run.
unsafe impl Sync for OutputSlice {}

/// Rows per parallel job: enough jobs to balance threads, few enough to keep overhead low.
fn chunk_rows(total_rows: usize, tokens: usize) -> usize {
    let threads = worker_threads();
    let jobs = if tokens == 1 {
        threads * 4
    } else {
        threads * 8
    };
    total_rows.div_ceil(jobs).clamp(16, 4096)
}

#[cfg(not(target_arch = "wasm32"))]
fn worker_threads() -> usize {
    crate::cpu::pool::global().threads()
}

#[cfg(target_arch = "wasm32")]
fn worker_threads() -> usize {
    1
}

/// `y = x · Wᵀ` for one matrix.
pub fn matmul(x: &[f32], tokens: usize, w: &QMatrix) -> Vec<f32> {
    matmul_many(x, tokens, &[w]).pop().unwrap_or_default()
}

/// Rounds to the nearest integer, ties to even, for |v| < 2²²: adding and removing 1.5·2²³
/// leaves no fraction bits. (`f32::round_ties_even` is a libm call without SSE4.1.)
fn round_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

fn f16_le(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}
