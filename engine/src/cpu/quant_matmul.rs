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
//! Rows are split across threads natively ([`super::pool`]); wasm runs on the worker's one
//! thread.

use crate::gguf::GgmlType;
use half::f16;

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
        let row = super::blocks::dequantize_to_vec(w.ty, w.row(r));
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
    super::pool::global().run(jobs.len(), &run);
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
    super::pool::global().threads()
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

mod scalar {
    use super::{f16_le, ActivationRow};

    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(20).enumerate() {
            let (d, m) = (f16_le(block, 0), f16_le(block, 2));
            let qx = &x.qs[i * 32..i * 32 + 32];
            let mut sum = 0i32;
            for j in 0..16 {
                sum += (block[4 + j] & 0x0F) as i32 * qx[j] as i32;
                sum += (block[4 + j] >> 4) as i32 * qx[j + 16] as i32;
            }
            let info = x.info[i];
            total += d * info.scale * sum as f32 + m * info.sum;
        }
        total
    }

    pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(18).enumerate() {
            let d = f16_le(block, 0);
            let qx = &x.qs[i * 32..i * 32 + 32];
            let mut sum = 0i32;
            for j in 0..16 {
                sum += (block[2 + j] & 0x0F) as i32 * qx[j] as i32;
                sum += (block[2 + j] >> 4) as i32 * qx[j + 16] as i32;
            }
            let info = x.info[i];
            total += d * info.scale * (sum - 8 * info.q_sum) as f32;
        }
        total
    }

    pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(34).enumerate() {
            let d = f16_le(block, 0);
            let qx = &x.qs[i * 32..i * 32 + 32];
            let sum: i32 = block[2..34]
                .iter()
                .zip(qx)
                .map(|(&w, &a)| w as i8 as i32 * a as i32)
                .sum();
            total += d * x.info[i].scale * sum as f32;
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA + F16C kernels, chosen at run time when the CPU has them. Weights widen to
    //! 16-bit lanes and `vpmaddwd` multiplies them with the 16-bit activations.
    use super::ActivationRow;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The f16 at `p` as f32 (a 32-bit load: a 16-bit insert would merge into a live
    /// register and chain every block to the previous one).
    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            (p as *const i32).read_unaligned(),
        )))
    }

    /// Σ w·a over 32 pairs: `w_lo`, `w_hi` 16-bit weights 0..15 and 16..31, `a` the block's
    /// 32 activations. Returns 8 lanes of i32 partial sums.
    #[inline(always)]
    unsafe fn dot_i16(w_lo: __m256i, w_hi: __m256i, a: *const i16) -> __m256i {
        let a_lo = _mm256_loadu_si256(a as *const __m256i);
        let a_hi = _mm256_loadu_si256(a.add(16) as *const __m256i);
        _mm256_add_epi32(_mm256_madd_epi16(w_lo, a_lo), _mm256_madd_epi16(w_hi, a_hi))
    }

    /// 16 bytes of nibbles as two vectors of 16-bit weights (low nibbles, then high).
    #[inline(always)]
    unsafe fn nibbles_i16(p: *const u8) -> (__m256i, __m256i) {
        let q = _mm_loadu_si128(p as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
    }

    /// Σ over blocks of `scale(i)·(i32 sum of block i)` plus `extra(i)`, two chains (even and
    /// odd blocks) so each block need not wait for the previous one's FMA. The four-token
    /// kernel sums in this same order, so prefill and decode agree to the bit.
    #[inline(always)]
    unsafe fn two_chains(n: usize, mut block: impl FnMut(usize) -> (__m256i, f32, f32)) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut extra = [0.0f32; 2];
        for i in 0..n {
            let (sums, scale, add) = block(i);
            acc[i & 1] =
                _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), acc[i & 1]);
            extra[i & 1] += add;
        }
        hsum(_mm256_add_ps(acc[0], acc[1])) + (extra[0] + extra[1])
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 20);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        two_chains(n, |i| {
            let b = w.add(i * 20);
            let (lo, hi) = nibbles_i16(b.add(4));
            let info = x.info.get_unchecked(i);
            (
                dot_i16(lo, hi, q.add(i * 32)),
                f16_at(b) * info.scale,
                f16_at(b.add(2)) * info.sum,
            )
        })
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_four(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        let n = x[0].info.len().min(row.len() / 20);
        let w = row.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut extra = [[0.0f32; 2]; 4];
        for i in 0..n {
            let b = w.add(i * 20);
            let (d, m) = (f16_at(b), f16_at(b.add(2)));
            let (lo, hi) = nibbles_i16(b.add(4));
            for t in 0..4 {
                let info = x[t].info.get_unchecked(i);
                let sums = dot_i16(lo, hi, x[t].qs.as_ptr().add(i * 32));
                let chain = i & 1;
                acc[t][chain] = _mm256_fmadd_ps(
                    _mm256_set1_ps(d * info.scale),
                    _mm256_cvtepi32_ps(sums),
                    acc[t][chain],
                );
                extra[t][chain] += m * info.sum;
            }
        }
        let mut out = [0.0; 4];
        for t in 0..4 {
            out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + (extra[t][0] + extra[t][1]);
        }
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 18);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        two_chains(n, |i| {
            let b = w.add(i * 18);
            let (lo, hi) = nibbles_i16(b.add(2));
            let info = x.info.get_unchecked(i);
            // Σ (q-8)·qₓ = Σ q·qₓ - 8·Σ qₓ, the correction folded into the i32 lanes' total.
            let sums = _mm256_sub_epi32(
                dot_i16(lo, hi, q.add(i * 32)),
                _mm256_setr_epi32(8 * info.q_sum, 0, 0, 0, 0, 0, 0, 0),
            );
            (sums, f16_at(b) * info.scale, 0.0)
        })
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 34);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        two_chains(n, |i| {
            let b = w.add(i * 34);
            let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(2) as *const __m128i));
            let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(18) as *const __m128i));
            let info = x.info.get_unchecked(i);
            (dot_i16(lo, hi, q.add(i * 32)), f16_at(b) * info.scale, 0.0)
        })
    }

    // SAFETY (the four below): selected only when `available()` says the CPU has avx2, fma and
    // f16c; reads stay inside `row` (20, 18 or 34 bytes per block; the 4-byte scale loads read
    // the scale and the following quant bytes of the same block) and the activation rows
    // (32 values and one `BlockInfo` per block).
    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { q4_1(row, x) }
    }

    pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        unsafe { q4_1_four(row, x) }
    }

    pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { q4_0(row, x) }
    }

    pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { q8_0(row, x) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! AVX-512 (F + BW) Q4_1 kernels: a block's 32 weights widen to one 512-bit vector of
    //! 16-bit lanes and meet its 32 activations in a single `vpmaddwd`.
    use super::ActivationRow;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("f16c")
    }

    #[inline(always)]
    unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// The block's 32 4-bit weights as 32 16-bit lanes (low nibbles first).
    #[inline(always)]
    unsafe fn weights(p: *const u8) -> __m512i {
        let q = _mm_loadu_si128(p as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo))
    }

    #[inline(always)]
    unsafe fn block_sums(w: __m512i, a: *const i16) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_madd_epi16(
            w,
            _mm512_loadu_si512(a as *const __m512i),
        ))
    }

    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    unsafe fn q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 20);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        // Two chains (even and odd blocks), as in the four-token kernel below.
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut extra = [0.0f32; 2];
        for i in 0..n {
            let b = w.add(i * 20);
            let (d, m) = f16_pair(b);
            let info = x.info.get_unchecked(i);
            let sums = block_sums(weights(b.add(4)), q.add(i * 32));
            acc[i & 1] = _mm512_fmadd_ps(_mm512_set1_ps(d * info.scale), sums, acc[i & 1]);
            extra[i & 1] += m * info.sum;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) + (extra[0] + extra[1])
    }

    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    unsafe fn q4_1_four(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        let n = x[0].info.len().min(row.len() / 20);
        let w = row.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        let mut extra = [[0.0f32; 2]; 4];
        for i in 0..n {
            let b = w.add(i * 20);
            let (d, m) = f16_pair(b);
            let weights = weights(b.add(4));
            let chain = i & 1;
            for t in 0..4 {
                let info = x[t].info.get_unchecked(i);
                let sums = block_sums(weights, x[t].qs.as_ptr().add(i * 32));
                acc[t][chain] =
                    _mm512_fmadd_ps(_mm512_set1_ps(d * info.scale), sums, acc[t][chain]);
                extra[t][chain] += m * info.sum;
            }
        }
        let mut out = [0.0; 4];
        for t in 0..4 {
            out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]))
                + (extra[t][0] + extra[t][1]);
        }
        out
    }

    // SAFETY (both): selected only when `available()`; reads stay inside `row` (20 bytes per
    // block) and the activation rows (32 values and one `BlockInfo` per block).
    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { q4_1(row, x) }
    }

    pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        unsafe { q4_1_four(row, x) }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    //! wasm SIMD kernels: what the browser's CPU tier runs. Weights widen to 16-bit lanes and
    //! `i32x4.dot_i16x8` multiplies them with the 16-bit activations.
    //!
    //! Shaped like the AVX2 kernels, because V8 turns each wasm instruction into about one x86
    //! instruction and the kernel is bound by their count: a block's i32 sums are scaled in
    //! float lanes (two chains, one horizontal sum per row, not per block), the f16 scales
    //! convert with four integer operations instead of `half`'s branching fallback, and the
    //! loop reads through pointers after one length check.
    use super::ActivationRow;
    use std::arch::wasm32::*;

    /// An f16's value: its exponent and mantissa shifted into an f32's places, rescaled by
    /// 2¹¹² (the difference of the two exponent biases), sign restored. Exact for every finite
    /// half, subnormals included; scales in a model file are finite.
    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let h = (p as *const u16).read_unaligned() as u32;
        let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
        f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
    }

    /// Σ w·a over 32 pairs, `w` as four vectors of eight 16-bit weights: four i32 lanes.
    #[inline(always)]
    unsafe fn dot32(w: [v128; 4], a: *const i16) -> v128 {
        let a = a as *const v128;
        let s = i32x4_add(
            i32x4_dot_i16x8(w[0], v128_load(a)),
            i32x4_dot_i16x8(w[1], v128_load(a.add(1))),
        );
        i32x4_add(
            s,
            i32x4_add(
                i32x4_dot_i16x8(w[2], v128_load(a.add(2))),
                i32x4_dot_i16x8(w[3], v128_load(a.add(3))),
            ),
        )
    }

    /// 16 bytes of nibbles as 32 16-bit weights: low nibbles (weights 0..15), then high.
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> [v128; 4] {
        let q = v128_load(p as *const v128);
        let lo = v128_and(q, u8x16_splat(0x0F));
        let hi = u8x16_shr(q, 4);
        [
            u16x8_extend_low_u8x16(lo),
            u16x8_extend_high_u8x16(lo),
            u16x8_extend_low_u8x16(hi),
            u16x8_extend_high_u8x16(hi),
        ]
    }

    /// 32 signed bytes as 32 16-bit weights.
    #[inline(always)]
    unsafe fn bytes(p: *const u8) -> [v128; 4] {
        let lo = v128_load(p as *const v128);
        let hi = v128_load(p.add(16) as *const v128);
        [
            i16x8_extend_low_i8x16(lo),
            i16x8_extend_high_i8x16(lo),
            i16x8_extend_low_i8x16(hi),
            i16x8_extend_high_i8x16(hi),
        ]
    }

    /// Σ over `n` blocks of `scale(i)·(i32 lanes of block i)` plus `extra(i)`, in two chains
    /// (even and odd blocks) so that a block need not wait for the previous one's sum.
    #[inline(always)]
    unsafe fn two_chains(n: usize, mut block: impl FnMut(usize) -> (v128, f32, f32)) -> f32 {
        let scaled = |(sums, scale, add): (v128, f32, f32)| {
            (
                f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(scale)),
                add,
            )
        };
        // Unrolled by hand: indexing the chains by `i & 1` kept them in memory, not registers.
        let (mut even, mut odd) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let (mut even_extra, mut odd_extra) = (0.0f32, 0.0f32);
        let mut i = 0;
        while i + 2 <= n {
            let (v, add) = scaled(block(i));
            even = f32x4_add(even, v);
            even_extra += add;
            let (v, add) = scaled(block(i + 1));
            odd = f32x4_add(odd, v);
            odd_extra += add;
            i += 2;
        }
        if i < n {
            let (v, add) = scaled(block(i));
            even = f32x4_add(even, v);
            even_extra += add;
        }
        finish([even, odd], [even_extra, odd_extra])
    }

    /// The two chains' lanes and extras summed, in one fixed order.
    #[inline(always)]
    fn finish(acc: [v128; 2], extra: [f32; 2]) -> f32 {
        let s = f32x4_add(acc[0], acc[1]);
        (f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s))
            + (f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s))
            + (extra[0] + extra[1])
    }

    // SAFETY (the kernels below): `n` is at most the blocks in `row` (20, 18 or 34 bytes each)
    // and in each activation row (32 values and one `BlockInfo` each): every read is inside.

    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 20).min(x.qs.len() / 32);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        unsafe {
            two_chains(n, |i| {
                let b = w.add(i * 20);
                let info = x.info.get_unchecked(i);
                (
                    dot32(nibbles(b.add(4)), q.add(i * 32)),
                    f16_at(b) * info.scale,
                    f16_at(b.add(2)) * info.sum,
                )
            })
        }
    }

    /// One row against four tokens (prefill): the block's weights and scales are unpacked
    /// once. Each token's sums follow [`two_chains`]'s order, so it equals [`dot_q4_1`] to the bit.
    pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        let mut n = row.len() / 20;
        for t in &x {
            n = n.min(t.info.len()).min(t.qs.len() / 32);
        }
        let w = row.as_ptr();
        let (mut even, mut odd) = ([f32x4_splat(0.0); 4], [f32x4_splat(0.0); 4]);
        let (mut even_extra, mut odd_extra) = ([0.0f32; 4], [0.0f32; 4]);
        let mut i = 0;
        unsafe {
            while i + 2 <= n {
                block4(w, &x, i, &mut even, &mut even_extra);
                block4(w, &x, i + 1, &mut odd, &mut odd_extra);
                i += 2;
            }
            if i < n {
                block4(w, &x, i, &mut even, &mut even_extra);
            }
        }
        [0, 1, 2, 3].map(|t| finish([even[t], odd[t]], [even_extra[t], odd_extra[t]]))
    }

    /// Q4_1 block `i` of the row at `w` into one chain of each of four tokens. The chains are
    /// passed in (not indexed by `i & 1`) and this is inlined, so that they stay in registers.
    #[inline(always)]
    unsafe fn block4(
        w: *const u8,
        x: &[ActivationRow<'_>; 4],
        i: usize,
        acc: &mut [v128; 4],
        extra: &mut [f32; 4],
    ) {
        let b = w.add(i * 20);
        let (d, m) = (f16_at(b), f16_at(b.add(2)));
        let weights = nibbles(b.add(4));
        for t in 0..4 {
            let info = x[t].info.get_unchecked(i);
            let sums = dot32(weights, x[t].qs.as_ptr().add(i * 32));
            let scaled = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(d * info.scale));
            acc[t] = f32x4_add(acc[t], scaled);
            extra[t] += m * info.sum;
        }
    }

    pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 18).min(x.qs.len() / 32);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        unsafe {
            two_chains(n, |i| {
                let b = w.add(i * 18);
                let info = x.info.get_unchecked(i);
                // Σ (q-8)·qₓ = Σ q·qₓ - 8·Σ qₓ, the correction folded into lane 0.
                let sums = i32x4_sub(
                    dot32(nibbles(b.add(2)), q.add(i * 32)),
                    i32x4(8 * info.q_sum, 0, 0, 0),
                );
                (sums, f16_at(b) * info.scale, 0.0)
            })
        }
    }

    pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.info.len().min(row.len() / 34).min(x.qs.len() / 32);
        let (w, q) = (row.as_ptr(), x.qs.as_ptr());
        unsafe {
            two_chains(n, |i| {
                let b = w.add(i * 34);
                let info = x.info.get_unchecked(i);
                (
                    dot32(bytes(b.add(2)), q.add(i * 32)),
                    f16_at(b) * info.scale,
                    0.0,
                )
            })
        }
    }
}
