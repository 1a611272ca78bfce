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
            acc[t][chain] = _mm512_fmadd_ps(_mm512_set1_ps(d * info.scale), sums, acc[t][chain]);
            extra[t][chain] += m * info.sum;
        }
    }
    let mut out = [0.0; 4];
    for t in 0..4 {
        out[t] =
            _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + (extra[t][0] + extra[t][1]);
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
