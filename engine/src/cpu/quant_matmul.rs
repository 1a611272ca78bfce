//! Quantized matrix multiplication on the CPU: `y = x · Wᵀ` with W stored in ggml blocks
//! (Q4_0, Q4_1, Q8_0).
//!
//! As in llama.cpp, the activations are quantized to 8 bits per block of 32 first, so that each
//! block's dot product is integer arithmetic (AVX2 `maddubs` natively, wasm `simd128` dot
//! products in the browser, plain Rust elsewhere) followed by one scale:
//! - Q4_1 (w = q·d + m): Σ w·x = d·dₓ·Σ q·qₓ + m·(dₓ·Σ qₓ), so the activation block keeps its sum;
//! - Q4_0 (w = (q-8)·d) and Q8_0 (w = q·d): Σ w·x = d·dₓ·Σ q·qₓ.
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

/// Activations quantized to 8 bits per block of 32 (llama.cpp's Q8_1), for `tokens` rows.
#[derive(Debug, Default, Clone)]
pub struct Q8Activations {
    pub blocks_per_row: usize,
    /// Per block, interleaved: dₓ, then dₓ·Σ qₓ (the Q4_1 min term needs the sum). Side by
    /// side so one 8-byte load fetches both.
    pub scale_sum: Vec<[f32; 2]>,
    /// 32 quantized values per block.
    pub qs: Vec<i8>,
}

impl Q8Activations {
    /// Quantizes `x` (tokens × cols, row-major). `cols` must be a multiple of 32.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let blocks_per_row = cols / 32;
        let n_blocks = x.len() / 32;
        let mut out = Q8Activations {
            blocks_per_row,
            scale_sum: Vec::with_capacity(n_blocks),
            qs: vec![0; n_blocks * 32],
        };
        for (block, qs) in x.chunks_exact(32).zip(out.qs.chunks_exact_mut(32)) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(block) {
                *q = round_ties_even(v * id) as i8;
                sum += *q as i32;
            }
            // As ggml (`quantize_row_q8_1`): both kept in f16, ties rounded to even; matching it
            // keeps our logits closest to llama.cpp's.
            out.scale_sum
                .push([round_f16(d), round_f16(d * sum as f32)]);
        }
        out
    }

    fn row(&self, token: usize) -> ActivationRow<'_> {
        let b = token * self.blocks_per_row;
        let e = b + self.blocks_per_row;
        ActivationRow {
            scale_sum: &self.scale_sum[b..e],
            qs: &self.qs[b * 32..e * 32],
        }
    }
}

#[derive(Clone, Copy)]
struct ActivationRow<'a> {
    scale_sum: &'a [[f32; 2]],
    qs: &'a [i8],
}

type DotFn = fn(&[u8], ActivationRow<'_>) -> f32;
/// One weight row against four tokens at once (prefill): the row's blocks are unpacked once.
type Dot4Fn = fn(&[u8], [ActivationRow<'_>; 4]) -> [f32; 4];

/// A four-token kernel for `ty`, where one exists.
fn dot4_kernel(ty: GgmlType) -> Option<Dot4Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if ty == GgmlType::Q4_1 && avx2::available() {
            return Some(if avx2::vnni_available() {
                avx2::dot4_q4_1_vnni
            } else {
                avx2::dot4_q4_1
            });
        }
    }
    let _ = ty;
    None
}

/// The fastest dot product this machine has for `ty`.
fn dot_kernel(ty: GgmlType) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            return match ty {
                GgmlType::Q4_1 if avx2::vnni_available() => avx2::dot_q4_1_vnni,
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
    match ty {
        GgmlType::Q4_1 => scalar::dot_q4_1,
        GgmlType::Q4_0 => scalar::dot_q4_0,
        _ => scalar::dot_q8_0,
    }
}

/// The plain-Rust kernel for `ty`, whatever the machine: the reference for the SIMD ones.
pub fn scalar_dot(ty: GgmlType, row: &[u8], x: &Q8Activations, token: usize) -> f32 {
    let f: DotFn = match ty {
        GgmlType::Q4_1 => scalar::dot_q4_1,
        GgmlType::Q4_0 => scalar::dot_q4_0,
        _ => scalar::dot_q8_0,
    };
    f(row, x.row(token))
}

/// The dispatched (SIMD where available) kernel for one row and one token.
pub fn fast_dot(ty: GgmlType, row: &[u8], x: &Q8Activations, token: usize) -> f32 {
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
    let acts = Q8Activations::quantize(x, cols);
    let acts = &acts;

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
        let dot = dot_kernel(w.ty);
        let dot4 = if tokens >= 4 { dot4_kernel(w.ty) } else { None };
        for (i, row_out) in out.chunks_mut(tokens).enumerate() {
            let row = w.row(first_row + i);
            let mut t = 0;
            if let Some(dot4) = dot4 {
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

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
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
            let [dx, sx] = x.scale_sum[i];
            total += d * dx * sum as f32 + m * sx;
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
                sum += ((block[2 + j] & 0x0F) as i32 - 8) * qx[j] as i32;
                sum += ((block[2 + j] >> 4) as i32 - 8) * qx[j + 16] as i32;
            }
            total += d * x.scale_sum[i][0] * sum as f32;
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
            total += d * x.scale_sum[i][0] * sum as f32;
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA + F16C kernels, chosen at run time when the CPU has them.
    //!
    //! Scales are converted from f16 with 32-bit loads (`vmovd` + `vcvtph2ps`): a 16-bit insert
    //! would merge into a live register and chain every block to the previous one.
    use super::ActivationRow;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The two f16 at `p` as f32 lanes 0 and 1 (lanes 2, 3 are zero).
    #[inline(always)]
    unsafe fn two_f16(p: *const u8) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()))
    }

    /// dₓ and dₓ·Σqₓ of activation block `i` as lanes 0 and 1.
    #[inline(always)]
    unsafe fn scale_sum(x: &ActivationRow<'_>, i: usize) -> __m128 {
        _mm_castpd_ps(_mm_load_sd(x.scale_sum.as_ptr().add(i) as *const f64))
    }

    /// 32 nibbles of 16 bytes as 32 unsigned bytes: low nibbles first, then high nibbles.
    #[inline(always)]
    unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
        let q = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// Σ u·s over 32 (unsigned, signed) byte pairs, as 8 lanes of i32 converted to f32.
    #[inline(always)]
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
        let p16 = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    /// Σ a·b over 32 signed byte pairs.
    #[inline(always)]
    unsafe fn dot_i8(a: __m256i, b: __m256i) -> __m256 {
        // maddubs needs one unsigned operand: |a| and b with a's sign.
        dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
    }

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// AVX-512 VNNI (`vpdpbusd`): one instruction for a byte dot product instead of two.
    pub fn vnni_available() -> bool {
        available()
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
    }

    /// Σ u·s over 32 (unsigned, signed) byte pairs with VNNI.
    #[inline(always)]
    unsafe fn dot_u8_i8_vnni(u: __m256i, s: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s))
    }

    /// Q4_1 · Q8 for one row; `VNNI` picks the byte dot product.
    #[inline(always)]
    unsafe fn q4_1_row<const VNNI: bool>(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.scale_sum.len().min(row.len() / 20);
        let w = row.as_ptr();
        let q = x.qs.as_ptr();
        // Lane 1 of `min_terms` accumulates m·dₓΣqₓ (lane 0 collects d·dₓ, unused).
        let block = |i: usize, acc: __m256, min_terms: __m128| {
            let b = w.add(i * 20);
            let products = _mm_mul_ps(two_f16(b), scale_sum(&x, i)); // [d·dₓ, m·sₓ, 0, 0]
            let acts = _mm256_loadu_si256(q.add(i * 32) as *const __m256i);
            let weights = unpack_nibbles(b.add(4));
            let p = if VNNI {
                dot_u8_i8_vnni(weights, acts)
            } else {
                dot_u8_i8(weights, acts)
            };
            (
                _mm256_fmadd_ps(_mm256_broadcastss_ps(products), p, acc),
                _mm_add_ps(min_terms, products),
            )
        };
        // Two independent chains (even and odd blocks), so each block need not wait for the
        // previous one's FMA. The four-token kernel sums in exactly this order, so prefill and
        // decode give bit-identical results.
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut min0, mut min1) = (_mm_setzero_ps(), _mm_setzero_ps());
        let mut i = 0;
        while i + 1 < n {
            (acc0, min0) = block(i, acc0, min0);
            (acc1, min1) = block(i + 1, acc1, min1);
            i += 2;
        }
        if i < n {
            (acc0, min0) = block(i, acc0, min0);
        }
        hsum(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(min0, min1)))
    }

    /// Q4_1 · Q8 for one row and four tokens: each weight block is unpacked once.
    #[inline(always)]
    unsafe fn q4_1_row4<const VNNI: bool>(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        let n = x[0].scale_sum.len().min(row.len() / 20);
        let w = row.as_ptr();
        // [token][chain]: the same even/odd chains as `q4_1_row`.
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut min_terms = [[_mm_setzero_ps(); 2]; 4];
        for i in 0..n {
            let b = w.add(i * 20);
            let dm = two_f16(b);
            let weights = unpack_nibbles(b.add(4));
            let chain = i & 1;
            for t in 0..4 {
                let products = _mm_mul_ps(dm, scale_sum(&x[t], i));
                let acts = _mm256_loadu_si256(x[t].qs.as_ptr().add(i * 32) as *const __m256i);
                let p = if VNNI {
                    dot_u8_i8_vnni(weights, acts)
                } else {
                    dot_u8_i8(weights, acts)
                };
                acc[t][chain] = _mm256_fmadd_ps(_mm256_broadcastss_ps(products), p, acc[t][chain]);
                min_terms[t][chain] = _mm_add_ps(min_terms[t][chain], products);
            }
        }
        let mut out = [0.0; 4];
        for t in 0..4 {
            let mins = _mm_add_ps(min_terms[t][0], min_terms[t][1]);
            out[t] =
                hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + _mm_cvtss_f32(_mm_movehdup_ps(mins));
        }
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q4_1_avx2(row: &[u8], x: ActivationRow<'_>) -> f32 {
        q4_1_row::<false>(row, x)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn dot_q4_1_avx512vnni(row: &[u8], x: ActivationRow<'_>) -> f32 {
        q4_1_row::<true>(row, x)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4_q4_1_avx2(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        q4_1_row4::<false>(row, x)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn dot4_q4_1_avx512vnni(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        q4_1_row4::<true>(row, x)
    }

    // SAFETY (the four below): selected only when `available()` (and `vnni_available()` for
    // the VNNI ones) says the CPU has the features; reads stay inside `row` (20 bytes per
    // block) and the activation rows (32 bytes and one scale pair per block).
    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { dot_q4_1_avx2(row, x) }
    }

    pub fn dot_q4_1_vnni(row: &[u8], x: ActivationRow<'_>) -> f32 {
        unsafe { dot_q4_1_avx512vnni(row, x) }
    }

    pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        unsafe { dot4_q4_1_avx2(row, x) }
    }

    pub fn dot4_q4_1_vnni(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
        unsafe { dot4_q4_1_avx512vnni(row, x) }
    }

    pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        // SAFETY: as for dot_q4_1 (18 bytes per block; the 4-byte scale load reads d and the
        // first quant byte pair, inside the block).
        unsafe { dot_q4_0_impl(row, x) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q4_0_impl(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.scale_sum.len().min(row.len() / 18);
        let w = row.as_ptr();
        let q = x.qs.as_ptr();
        let block = |i: usize, acc: __m256| {
            let b = w.add(i * 18);
            let scale = _mm_mul_ps(two_f16(b), scale_sum(&x, i)); // lane 0: d·dₓ
            let acts = _mm256_loadu_si256(q.add(i * 32) as *const __m256i);
            let p = dot_i8(
                _mm256_sub_epi8(unpack_nibbles(b.add(2)), _mm256_set1_epi8(8)),
                acts,
            );
            _mm256_fmadd_ps(_mm256_broadcastss_ps(scale), p, acc)
        };
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 1 < n {
            acc0 = block(i, acc0);
            acc1 = block(i + 1, acc1);
            i += 2;
        }
        if i < n {
            acc0 = block(i, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }

    pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        // SAFETY: as for dot_q4_0 (34 bytes per block).
        unsafe { dot_q8_0_impl(row, x) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q8_0_impl(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let n = x.scale_sum.len().min(row.len() / 34);
        let w = row.as_ptr();
        let q = x.qs.as_ptr();
        let block = |i: usize, acc: __m256| {
            let b = w.add(i * 34);
            let scale = _mm_mul_ps(two_f16(b), scale_sum(&x, i)); // lane 0: d·dₓ
            let acts = _mm256_loadu_si256(q.add(i * 32) as *const __m256i);
            let p = dot_i8(_mm256_loadu_si256(b.add(2) as *const __m256i), acts);
            _mm256_fmadd_ps(_mm256_broadcastss_ps(scale), p, acc)
        };
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 1 < n {
            acc0 = block(i, acc0);
            acc1 = block(i + 1, acc1);
            i += 2;
        }
        if i < n {
            acc0 = block(i, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    //! wasm SIMD kernels: what the browser's CPU tier runs. wasm has no byte multiply-add, so
    //! bytes widen to i16 and `i32x4_dot_i16x8` does the pairwise products.
    use super::{f16_le, ActivationRow};
    use std::arch::wasm32::*;

    /// Σ over 16 lanes of (u8 or i8 widened) w · (i8 widened) a, as i32x4 partial sums.
    #[inline(always)]
    fn dot16(w_lo: v128, w_hi: v128, a: v128) -> v128 {
        let a_lo = i16x8_extend_low_i8x16(a);
        let a_hi = i16x8_extend_high_i8x16(a);
        i32x4_add(i32x4_dot_i16x8(w_lo, a_lo), i32x4_dot_i16x8(w_hi, a_hi))
    }

    #[inline(always)]
    fn hsum_i32(v: v128) -> i32 {
        i32x4_extract_lane::<0>(v)
            + i32x4_extract_lane::<1>(v)
            + i32x4_extract_lane::<2>(v)
            + i32x4_extract_lane::<3>(v)
    }

    #[inline(always)]
    fn load(p: &[u8]) -> v128 {
        // SAFETY: callers pass slices of at least 16 bytes.
        unsafe { v128_load(p.as_ptr() as *const v128) }
    }

    #[inline(always)]
    fn load_i8(p: &[i8]) -> v128 {
        // SAFETY: callers pass slices of at least 16 bytes.
        unsafe { v128_load(p.as_ptr() as *const v128) }
    }

    /// Integer Σ q·qₓ of one 4-bit block (nibbles already offset by `bias`).
    #[inline(always)]
    fn nibble_block_dot(qs: &[u8], acts: &[i8], bias: i16) -> i32 {
        let q = load(qs);
        let lo = v128_and(q, u8x16_splat(0x0F));
        let hi = u8x16_shr(q, 4);
        let b = i16x8_splat(bias);
        let lo_lo = i16x8_sub(u16x8_extend_low_u8x16(lo), b);
        let lo_hi = i16x8_sub(u16x8_extend_high_u8x16(lo), b);
        let hi_lo = i16x8_sub(u16x8_extend_low_u8x16(hi), b);
        let hi_hi = i16x8_sub(u16x8_extend_high_u8x16(hi), b);
        let s = i32x4_add(
            dot16(lo_lo, lo_hi, load_i8(&acts[0..16])),
            dot16(hi_lo, hi_hi, load_i8(&acts[16..32])),
        );
        hsum_i32(s)
    }

    pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(20).enumerate() {
            let (d, m) = (f16_le(block, 0), f16_le(block, 2));
            let sum = nibble_block_dot(&block[4..20], &x.qs[i * 32..i * 32 + 32], 0);
            let [dx, sx] = x.scale_sum[i];
            total += d * dx * sum as f32 + m * sx;
        }
        total
    }

    pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(18).enumerate() {
            let d = f16_le(block, 0);
            let sum = nibble_block_dot(&block[2..18], &x.qs[i * 32..i * 32 + 32], 8);
            total += d * x.scale_sum[i][0] * sum as f32;
        }
        total
    }

    pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
        let mut total = 0.0;
        for (i, block) in row.chunks_exact(34).enumerate() {
            let d = f16_le(block, 0);
            let acts = &x.qs[i * 32..i * 32 + 32];
            let mut s = i32x4_splat(0);
            for half in 0..2 {
                let w = load(&block[2 + 16 * half..18 + 16 * half]);
                let w_lo = i16x8_extend_low_i8x16(w);
                let w_hi = i16x8_extend_high_i8x16(w);
                s = i32x4_add(
                    s,
                    dot16(w_lo, w_hi, load_i8(&acts[16 * half..16 * half + 16])),
                );
            }
            total += d * x.scale_sum[i][0] * hsum_i32(s) as f32;
        }
        total
    }
}
