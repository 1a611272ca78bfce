//! AVX2 + FMA + F16C kernels for float weights (F32, F16, BF16) against f32 activations,
//! chosen at run time when the CPU has them: eight weights at a time widened to f32 (`vcvtph2ps`
//! for F16, a 16-bit shift for BF16) and multiplied into two chains of eight lanes per token.
//! Generic over the number of tokens (one for decode, four for prefill, where each weight
//! vector serves four tokens) with the same order for each token.

use super::avx2::hsum;
use std::arch::x86_64::*;

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// Independent sums per token: enough to overlap the FMAs' latency for four tokens, few enough
/// that four tokens' sums stay in registers.
const CHAINS: usize = 2;

/// Weights `i..i + 8` of a row of `KIND` as f32 lanes.
#[inline(always)]
unsafe fn load8<const KIND: u8>(row: *const u8, i: usize) -> __m256 {
    match KIND {
        F32 => _mm256_loadu_ps(row.add(4 * i) as *const f32),
        F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * i) as *const __m128i)),
        _ => _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(row.add(2 * i) as *const __m128i)),
            16,
        )),
    }
}

/// Weight `i` of a row of `KIND`.
#[inline(always)]
unsafe fn load1<const KIND: u8>(row: *const u8, i: usize) -> f32 {
    match KIND {
        F32 => (row.add(4 * i) as *const f32).read_unaligned(),
        F16 => half::f16::from_bits((row.add(2 * i) as *const u16).read_unaligned()).to_f32(),
        _ => f32::from_bits(((row.add(2 * i) as *const u16).read_unaligned() as u32) << 16),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot<const T: usize, const KIND: u8>(row: &[u8], x: [&[f32]; T]) -> [f32; T] {
    let width = if KIND == F32 { 4 } else { 2 };
    let n = x.iter().fold(row.len() / width, |n, x| n.min(x.len()));
    let w = row.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); CHAINS]; T];
    let step = 8 * CHAINS;
    let full = n / step * step;
    let mut i = 0;
    while i < full {
        for (c, at) in (i..i + step).step_by(8).enumerate() {
            let weights = load8::<KIND>(w, at);
            for t in 0..T {
                let xv = _mm256_loadu_ps(x[t].as_ptr().add(at));
                acc[t][c] = _mm256_fmadd_ps(weights, xv, acc[t][c]);
            }
        }
        i += step;
    }
    // Loops, not closures: intrinsics in a closure that is not inlined become calls.
    let mut out = [0.0; T];
    for (t, y) in out.iter_mut().enumerate() {
        let mut lanes = acc[t][0];
        for &a in &acc[t][1..] {
            lanes = _mm256_add_ps(lanes, a);
        }
        let tail: f32 = (full..n).map(|i| load1::<KIND>(w, i) * x[t][i]).sum();
        *y = hsum(lanes) + tail;
    }
    out
}

// SAFETY (all below): selected only when `avx2::available()` says the CPU has avx2, fma and
// f16c; `dot` reads weights and activations below `n`, the length of the shortest of the row
// (4 or 2 bytes per weight) and the activation rows.
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, F32>(row, [x])[0] }
}

pub fn dot4_f32(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, F32>(row, x) }
}

pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, F16>(row, [x])[0] }
}

pub fn dot4_f16(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, F16>(row, x) }
}

pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, BF16>(row, [x])[0] }
}

pub fn dot4_bf16(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, BF16>(row, x) }
}
