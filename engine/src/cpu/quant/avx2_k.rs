//! AVX2 + FMA + F16C kernels for the K-quants (Q4_K, Q5_K, Q6_K), chosen at run time when the
//! CPU has them. A super-block of 256 weights spans 8 activation blocks of 32: its 32-byte
//! chunks of quants are unpacked once, each activation block's part widened to 16-bit lanes
//! for `vpmaddwd`, and summed per block in `avx2.rs`'s two chains. Each kernel is generic over
//! where its tokens come from (one for decode, a tile of four for prefill) with the same order
//! for each token.

use super::avx2::{dot_i16, f16_at, Chains};
use super::k_scales;
use super::prefetch;
use super::tile::{by_pairs, Tokens};
use std::arch::x86_64::*;

/// The super-blocks that `row` and every token's activations hold whole. Shared with
/// `avx512_k.rs`, as are [`q45_layout`], [`Q6Half`] and [`q6_d`].
#[inline(always)]
pub(super) fn super_blocks<const T: usize>(row: &[u8], bytes: usize, x: &impl Tokens<T>) -> usize {
    (row.len() / bytes).min(x.blocks() / 8)
}

/// 32 bytes as two vectors of 16-bit lanes (bytes 0..15 and 16..31), zero-extended.
#[inline(always)]
unsafe fn widen_u8(v: __m256i) -> (__m256i, __m256i) {
    (
        _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)),
        _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1)),
    )
}

/// A Q4_K (`five` false) or Q5_K super-block's size in bytes and where its qs start.
#[inline(always)]
pub(super) const fn q45_layout(five: bool) -> (usize, usize) {
    if five {
        (176, 48)
    } else {
        (144, 16)
    }
}

/// Q4_K (`FIVE` false: d, dmin, scales[12], qs[128]) and Q5_K (`FIVE` true: qh[32] before qs):
/// chunk c of qs holds sub-block 2c in its low nibbles and 2c + 1 in its high ones; for Q5_K,
/// bit j of qh[l] is the fifth bit of weight l of sub-block j.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45_k<const T: usize, const FIVE: bool>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let (bytes, qs_at) = q45_layout(FIVE);
    let n = super_blocks(row, bytes, &x);
    let mask = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let mut chains = Chains::<T>::new();
    for s in 0..n {
        let b = row.as_ptr().add(s * bytes);
        prefetch::weights_ahead::<T>(b, bytes);
        let (d, dmin) = (f16_at(b), f16_at(b.add(2)));
        let (sc, mn) = k_scales(&*(b.add(4) as *const [u8; 12]));
        // The fifth bits, shifted down one sub-block at a time (16-bit shifts move bits across
        // bytes, but only into bits that the mask with `one` drops).
        let mut qh = if FIVE {
            _mm256_loadu_si256(b.add(16) as *const __m256i)
        } else {
            _mm256_setzero_si256()
        };
        let mut fifth = || {
            let bit = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            qh = _mm256_srli_epi16(qh, 1);
            bit
        };
        for c in 0..4 {
            let q = _mm256_loadu_si256(b.add(qs_at + 32 * c) as *const __m256i);
            let mut lo = _mm256_and_si256(q, mask);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            if FIVE {
                lo = _mm256_or_si256(lo, fifth());
                hi = _mm256_or_si256(hi, fifth());
            }
            by_pairs(2, |half, chain| {
                let (w0, w1) = widen_u8(if half == 0 { lo } else { hi });
                let j = 2 * c + half;
                let i = 8 * s + j;
                let (step, min) = (d * sc[j] as f32, dmin * mn[j] as f32);
                let steps = x.scales_times(i, step);
                for t in 0..T {
                    chains.add(t, chain, dot_i16(w0, w1, x.qs(t, i)), steps.get(t));
                }
                chains.add_extra(chain, x.sums_times(i, min).map(|m| -m));
            });
        }
    }
    chains.finish()
}

/// One half (128 weights) of a Q6_K super-block at `b`, unpacked an activation block at a time
/// ([`Q6Half::next`], k = 0..4 in order): block k takes the low (k < 2) or high nibbles of
/// ql[64h + 32(k % 2)..] and two bits of qh[32h..] from bit 2k. Shared with `avx512_k.rs`.
pub(super) struct Q6Half {
    ql: [__m256i; 2],
    qh: __m256i,
}

impl Q6Half {
    #[inline(always)]
    pub(super) unsafe fn load(b: *const u8, h: usize) -> Self {
        Q6Half {
            ql: [
                _mm256_loadu_si256(b.add(64 * h) as *const __m256i),
                _mm256_loadu_si256(b.add(64 * h + 32) as *const __m256i),
            ],
            qh: _mm256_loadu_si256(b.add(128 + 32 * h) as *const __m256i),
        }
    }

    /// Activation block k's 32 weights q - 32 as signed bytes; called for k = 0, 1, 2, 3.
    #[inline(always)]
    pub(super) unsafe fn next(&mut self, k: usize) -> __m256i {
        let mask = _mm256_set1_epi8(0x0F);
        let nibbles = if k < 2 {
            _mm256_and_si256(self.ql[k], mask)
        } else {
            _mm256_and_si256(_mm256_srli_epi16(self.ql[k - 2], 4), mask)
        };
        let top = _mm256_slli_epi16(_mm256_and_si256(self.qh, _mm256_set1_epi8(3)), 4);
        self.qh = _mm256_srli_epi16(self.qh, 2);
        _mm256_sub_epi8(_mm256_or_si256(nibbles, top), _mm256_set1_epi8(32))
    }
}

/// Q6_K's d (an f16 at the block's end, read with a 16-bit load).
#[inline(always)]
pub(super) unsafe fn q6_d(b: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        (b.add(208) as *const u16).read_unaligned() as i32,
    )))
}

/// Q6_K (ql[128], qh[64], scales[16], d): each activation block's weights from [`Q6Half`], and
/// its two sub-blocks' scales, which multiply the 16-bit weights ((q-32)·sc fits in 13 bits).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = super_blocks(row, 210, &x);
    let mut chains = Chains::<T>::new();
    for s in 0..n {
        let b = row.as_ptr().add(s * 210);
        prefetch::weights_ahead::<T>(b, 210);
        let d = q6_d(b);
        let scales = b.add(192) as *const i8;
        for h in 0..2 {
            let mut half = Q6Half::load(b, h);
            by_pairs(4, |k, chain| {
                let q = half.next(k);
                let sc = scales.add(8 * h + 2 * k);
                let w0 = _mm256_mullo_epi16(
                    _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
                    _mm256_set1_epi16(*sc as i16),
                );
                let w1 = _mm256_mullo_epi16(
                    _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)),
                    _mm256_set1_epi16(*sc.add(1) as i16),
                );
                let i = 8 * s + 4 * h + k;
                let steps = x.scales_times(i, d);
                for t in 0..T {
                    chains.add(t, chain, dot_i16(w0, w1, x.qs(t, i)), steps.get(t));
                }
            });
        }
    }
    chains.finish()
}

// SAFETY (the entry points below): selected only when `avx2::available()` says the CPU has avx2, fma and
// f16c; `super_blocks` bounds the loop by the whole super-blocks in `row` (144, 176 or 210
// bytes) and by the activation rows (8 blocks of 32 values and 8 `BlockInfo`s each); every
// load lies inside its super-block (the 4-byte loads of d and dmin read d, dmin, and the
// scales after them; Q6_K's d, at the block's end, is read with a 2-byte load).
super::tile::entry_points! {
    q45_k[false] => dot_q4_k, tile4_q4_k;
    q45_k[true] => dot_q5_k, tile4_q5_k;
    q6_k => dot_q6_k, tile4_q6_k;
}
