//! AVX-512 (F + BW) Q4_1 kernels: a block's 32 weights widen to one 512-bit vector of
//! 16-bit lanes and meet its 32 activations in a single `vpmaddwd`. Written once for one token
//! (decode) and for tiles of four and eight tokens (prefill): 32 zmm registers hold two chains
//! of eight tokens beside the weights.

use super::tile::{OneToken, TokenTile, Tokens};
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

/// Q4_1 against T tokens: `d·dₓ·Σ q·qₓ + m·Σx` per block, in two chains (even and odd
/// blocks) per token.
#[target_feature(enable = "avx512f,avx512bw,f16c")]
unsafe fn q4_1<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 20);
    let w = row.as_ptr();
    // The chains as separate arrays, each block's function inlined with one of them: indexed
    // by `i & 1` inside a loop, eight tokens' chains did not stay in registers.
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let (mut even_extra, mut odd_extra) = ([0.0f32; T], [0.0f32; T]);
    let mut i = 0;
    while i + 2 <= n {
        q4_1_block(w, &x, i, &mut even, &mut even_extra);
        q4_1_block(w, &x, i + 1, &mut odd, &mut odd_extra);
        i += 2;
    }
    if i < n {
        q4_1_block(w, &x, i, &mut even, &mut even_extra);
    }
    // A loop, not `array::from_fn`: intrinsics in a closure that is not inlined become calls.
    let mut out = [0.0; T];
    for (t, y) in out.iter_mut().enumerate() {
        *y = _mm512_reduce_add_ps(_mm512_add_ps(even[t], odd[t])) + (even_extra[t] + odd_extra[t]);
    }
    out
}

/// Q4_1 block `i` of the row at `w` into one chain of each token.
#[inline(always)]
unsafe fn q4_1_block<const T: usize>(
    w: *const u8,
    x: &impl Tokens<T>,
    i: usize,
    acc: &mut [__m512; T],
    extra: &mut [f32; T],
) {
    let b = w.add(i * 20);
    let (d, m) = f16_pair(b);
    let weights = weights(b.add(4));
    let steps = x.scales_times(i, d);
    for (t, acc) in acc.iter_mut().enumerate() {
        let sums = block_sums(weights, x.qs(t, i));
        *acc = _mm512_fmadd_ps(_mm512_set1_ps(steps.get(t)), sums, *acc);
    }
    for (e, add) in extra.iter_mut().zip(x.sums_times(i, m)) {
        *e += add;
    }
}

// SAFETY (all three): selected only when `available()`; reads stay inside `row` (20 bytes per
// block) and every token's activations (32 values and one block info per block).
pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q4_1(row, OneToken(x))[0] }
}

pub fn tile4_q4_1(row: &[u8], x: &TokenTile<'_, 4>) -> [f32; 4] {
    unsafe { q4_1(row, *x) }
}

pub fn tile8_q4_1(row: &[u8], x: &TokenTile<'_, 8>) -> [f32; 8] {
    unsafe { q4_1(row, *x) }
}
