//! AVX-512 (F, BW, VL) kernels for the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): a block's 32
//! weights widen to one 512-bit vector of 16-bit lanes and meet its 32 activations in a single
//! `vpmaddwd`. One kernel serves every format ([`Block32`] says how a block's weights come
//! out), written once for one token (decode) and for tiles of four and eight tokens (prefill):
//! 32 zmm registers hold two chains of eight tokens beside the weights.

use super::prefetch;
use super::tile::{Scaled, Tokens};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("f16c")
}

/// The two f16 at `p` (d and m of a block) as f32.
#[inline(always)]
pub(super) unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// 16 bytes of nibbles as 32 16-bit lanes (low nibbles first: weights 0..15, then 16..31).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m512i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo))
}

/// The nibbles at `qs` with bit j of the u32 at `qh` adding 16 to weight j: one masked add,
/// since the 32 bits of `qh` are the 32 lanes' mask as they stand.
#[inline(always)]
unsafe fn five_bits(qh: *const u8, qs: *const u8) -> __m512i {
    let high = (qh as *const u32).read_unaligned();
    let w = nibbles(qs);
    _mm512_mask_add_epi16(w, high, w, _mm512_set1_epi16(16))
}

/// One ggml block format of 32 weights: `w = d·(q - OFFSET)`, plus `m` where it has a min.
trait Block32 {
    const BYTES: usize;
    /// Subtracted from every q (Q4_0's 8, Q5_0's 16) once per block, before the tokens.
    const OFFSET: i16;
    /// Whether the f16 after d is a min m (`w = q·d + m`: Q4_1, Q5_1).
    const HAS_MIN: bool;
    /// The block's 32 q as 16-bit lanes, in the activations' order.
    unsafe fn weights(block: *const u8) -> __m512i;
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;

impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: i16 = 8;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn weights(b: *const u8) -> __m512i {
        nibbles(b.add(2))
    }
}

impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: i16 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn weights(b: *const u8) -> __m512i {
        nibbles(b.add(4))
    }
}

impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: i16 = 16;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn weights(b: *const u8) -> __m512i {
        five_bits(b.add(2), b.add(6))
    }
}

impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: i16 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn weights(b: *const u8) -> __m512i {
        five_bits(b.add(4), b.add(8))
    }
}

impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: i16 = 0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn weights(b: *const u8) -> __m512i {
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.add(2) as *const __m256i))
    }
}

/// A row of blocks of format `B` against T tokens: `d·dₓ·Σ (q - OFFSET)·qₓ (+ m·Σx)` per block,
/// in two chains (even and odd blocks) per token. Inlined into [`entry_points`]' functions,
/// which give it the instruction set.
#[inline(always)]
unsafe fn blocks32<const T: usize, B: Block32>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / B::BYTES);
    let w = row.as_ptr();
    // The chains as separate arrays, each block's function inlined with one of them: indexed
    // by `i & 1` inside a loop, eight tokens' chains did not stay in registers.
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let (mut even_extra, mut odd_extra) = ([0.0f32; T], [0.0f32; T]);
    let mut i = 0;
    if T == 1 {
        // One token (decode) waits on memory, not on d: each block widens its own, in a loop
        // that kept decode about 30% faster than the tiles' loop below (Q8_0, one thread).
        while i + 2 <= n {
            prefetch::weights_ahead::<T>(w.add(i * B::BYTES), 2 * B::BYTES);
            block::<T, B>(w, &x, i, None, &mut even, &mut even_extra);
            block::<T, B>(w, &x, i + 1, None, &mut odd, &mut odd_extra);
            i += 2;
        }
        if i < n {
            block::<T, B>(w, &x, i, None, &mut even, &mut even_extra);
        }
        return finish(even, odd, even_extra, odd_extra);
    }
    while i < n {
        // A tile's products d·dₓ, for every token and the next SCALES_AHEAD blocks, before
        // those blocks: each token's multiply-add broadcasts its product from memory, and
        // a product stored by its own block (or the block before) is read back before the
        // store reaches the cache, which stalled the loads on an AMD EPYC (Zen 4): Q5_0
        // tiles of 8 (2048 × 640, `qmm_speed`) ran at 34.7 GMAC/s per core, 37.7 with the
        // products stored ahead. Left uninitialized past `end`: zeroing the whole array cost
        // a row of 20 blocks 16 stores.
        let (first, end) = (i, (i + SCALES_AHEAD).min(n));
        let mut steps = [const { MaybeUninit::<Scaled<T>>::uninit() }; SCALES_AHEAD];
        for (k, steps) in steps.iter_mut().enumerate().take(end - first) {
            steps.write(x.scales_times(first + k, f16_pair(w.add((first + k) * B::BYTES)).0));
        }
        // SAFETY: the entries of blocks `first..end` were written just above.
        let step = |i: usize| Some(steps[i - first].assume_init_ref());
        while i + 2 <= end {
            block::<T, B>(w, &x, i, step(i), &mut even, &mut even_extra);
            block::<T, B>(w, &x, i + 1, step(i + 1), &mut odd, &mut odd_extra);
            i += 2;
        }
        if i < end {
            block::<T, B>(w, &x, i, step(i), &mut even, &mut even_extra);
            i += 1;
        }
    }
    finish(even, odd, even_extra, odd_extra)
}

/// Blocks whose products a tile computes at a time (even, so that each block keeps its chain).
const SCALES_AHEAD: usize = 32;

/// Block `i` of the row at `w` into one chain of each token; `steps_ahead` are its products
/// d·dₓ where [`blocks32`] computed them ahead (tiles).
#[inline(always)]
unsafe fn block<const T: usize, B: Block32>(
    w: *const u8,
    x: &impl Tokens<T>,
    i: usize,
    steps_ahead: Option<&Scaled<T>>,
    acc: &mut [__m512; T],
    extra: &mut [f32; T],
) {
    let b = w.add(i * B::BYTES);
    let (d, m) = f16_pair(b);
    let mut weights = B::weights(b);
    if B::OFFSET != 0 {
        weights = _mm512_sub_epi16(weights, _mm512_set1_epi16(B::OFFSET));
    }
    match steps_ahead {
        Some(steps) => add_block(weights, x, i, steps, acc),
        None => add_block(weights, x, i, &x.scales_times(i, d), acc),
    }
    if B::HAS_MIN {
        for (e, add) in extra.iter_mut().zip(x.sums_times(i, m)) {
            *e += add;
        }
    }
}

/// `step·dₓ·Σ w·qₓ` of activation block `i`, `weights` its 32 w and `steps` each token's
/// `step·dₓ` ([`Tokens::scales_times`]), into one chain of each token. Shared with the
/// K-quant kernels (`avx512_k.rs`).
#[inline(always)]
pub(super) unsafe fn add_block<const T: usize>(
    weights: __m512i,
    x: &impl Tokens<T>,
    i: usize,
    steps: &Scaled<T>,
    acc: &mut [__m512; T],
) {
    for (t, acc) in acc.iter_mut().enumerate() {
        let sums = _mm512_madd_epi16(weights, _mm512_loadu_si512(x.qs(t, i) as *const _));
        let sums = _mm512_cvtepi32_ps(sums);
        *acc = _mm512_fmadd_ps(_mm512_set1_ps(steps.get(t)), sums, *acc);
    }
}

/// Each token's total: its two chains' lanes, then its two extras. A tile's tokens are summed
/// eight at a time across their vectors ([`sum_lanes_of_eight`]), in the same tree that one
/// token's vector is summed in ([`sum_lanes`]), so a tile still gives each token what decode
/// gives it, to the bit.
#[inline(always)]
pub(super) unsafe fn finish<const T: usize>(
    even: [__m512; T],
    odd: [__m512; T],
    even_extra: [f32; T],
    odd_extra: [f32; T],
) -> [f32; T] {
    // Loops, not `array::from_fn`: intrinsics in a closure that is not inlined become calls.
    let mut out = [0.0; T];
    if T == 1 {
        out[0] = sum_lanes(_mm512_add_ps(even[0], odd[0])) + (even_extra[0] + odd_extra[0]);
        return out;
    }
    // A tile of four fills the other four vectors with zeros, whose sums are dropped.
    const { assert!(T <= 8) };
    let mut eight = [_mm512_setzero_ps(); 8];
    let mut extras = [0.0f32; 8];
    for t in 0..T {
        eight[t] = _mm512_add_ps(even[t], odd[t]);
        extras[t] = even_extra[t] + odd_extra[t];
    }
    let mut sums = [0.0f32; 8];
    let sums_of_eight = sum_lanes_of_eight(eight);
    _mm256_storeu_ps(
        sums.as_mut_ptr(),
        _mm256_add_ps(sums_of_eight, _mm256_loadu_ps(extras.as_ptr())),
    );
    out.copy_from_slice(&sums[..T]);
    out
}

/// The sum of `v`'s 16 lanes, as a tree: lanes j and j + 8, then j and j + 4, then j and j + 2,
/// then the last two.
#[inline(always)]
unsafe fn sum_lanes(v: __m512) -> f32 {
    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    let s = _mm256_add_ps(_mm512_castps512_ps256(v), high);
    let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// [`sum_lanes`] of eight vectors at once, in its tree, each step adding two vectors' worth of
/// pairs: 15 shuffles and 8 adds instead of eight reductions of 8 steps each.
#[inline(always)]
unsafe fn sum_lanes_of_eight(v: [__m512; 8]) -> __m256 {
    let first = quarters(halves(v[0], v[1]), halves(v[2], v[3]));
    let second = quarters(halves(v[4], v[5]), halves(v[6], v[7]));
    // Lanes j and j + 2 in each chunk: chunk k holds vector k's two sums, then vector k + 4's.
    let pairs = _mm512_add_ps(
        _mm512_shuffle_ps(first, second, 0b01_00_01_00),
        _mm512_shuffle_ps(first, second, 0b11_10_11_10),
    );
    // The last two: lanes 0 and 2 of chunk k hold vectors k and k + 4.
    let sums = _mm512_add_ps(pairs, _mm512_permute_ps(pairs, 0b10_11_00_01));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps256(_mm512_permutexvar_ps(order, sums))
}

/// Lanes j and j + 8 of `a` and of `b`: their four 128-bit chunks as [a0 a1 b0 b1] +
/// [a2 a3 b2 b3]. (Functions, not closures: a closure inlined into a function without the
/// instruction set would call its intrinsics.)
#[inline(always)]
unsafe fn halves(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4(a, b, 0b01_00_01_00),
        _mm512_shuffle_f32x4(a, b, 0b11_10_11_10),
    )
}

/// Lanes j and j + 4 of two [`halves`]: [a0 a2 b0 b2] + [a1 a3 b1 b3], each chunk one
/// vector's four sums.
#[inline(always)]
unsafe fn quarters(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4(a, b, 0b10_00_10_00),
        _mm512_shuffle_f32x4(a, b, 0b11_01_11_01),
    )
}

/// The public entry points of a file's AVX-512 kernels, each written once over its tokens
/// (`unsafe fn kernel<const T: usize, …>(row: &[u8], x: impl Tokens<T>) -> [f32; T]`): `dot_*`
/// on one token (decode), `tile4_*` on a tile of four, and `tile8_*` on a tile of eight against
/// each row of a run of rows (prefill). A kernel marked `#[inline(always)]` compiles into these
/// functions, so that what it sets up once (the tokens' addresses, its constants) is set up
/// once per run of rows rather than per row (Q5_0's tiles of 20 blocks, about 5% faster); one
/// with closures over intrinsics stays a `#[target_feature]` function of its own, since a
/// closure inlined elsewhere would lose the instruction set. Bracketed arguments follow T in
/// the kernel's generics. The calling file says why they are safe.
macro_rules! entry_points {
    ($($kernel:ident [$($generic:tt),*] => $dot:ident, $tile4:ident, $tile8:ident;)*) => {$(
        pub fn $dot(row: &[u8], x: super::ActivationRow<'_>) -> f32 {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn one(row: &[u8], x: super::ActivationRow<'_>) -> f32 {
                $kernel::<1 $(, $generic)*>(row, super::tile::OneToken(x))[0]
            }
            unsafe { one(row, x) }
        }

        pub fn $tile4(row: &[u8], x: &super::tile::TokenTile<'_, 4>) -> [f32; 4] {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn four(row: &[u8], x: super::tile::TokenTile<'_, 4>) -> [f32; 4] {
                $kernel::<4 $(, $generic)*>(row, x)
            }
            unsafe { four(row, *x) }
        }

        pub fn $tile8(
            rows: &[u8],
            row_bytes: usize,
            x: &super::tile::TokenTile<'_, 8>,
            out: &mut [[f32; 8]],
        ) {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn each_row(
                rows: &[u8],
                row_bytes: usize,
                x: super::tile::TokenTile<'_, 8>,
                out: &mut [[f32; 8]],
            ) {
                for (row, y) in rows.chunks_exact(row_bytes).zip(out) {
                    *y = $kernel::<8 $(, $generic)*>(row, x);
                }
            }
            unsafe { each_row(rows, row_bytes, *x, out) }
        }
    )*};
}
pub(super) use entry_points;

// SAFETY (all of them): selected only when `available()`; reads stay inside `row` (B::BYTES per
// block: the 4-byte loads of d, m and qh read bytes of the same block) and every token's
// activations (32 values and one block info per block).
entry_points! {
    blocks32[Q4_0] => dot_q4_0, tile4_q4_0, tile8_q4_0;
    blocks32[Q4_1] => dot_q4_1, tile4_q4_1, tile8_q4_1;
    blocks32[Q5_0] => dot_q5_0, tile4_q5_0, tile8_q5_0;
    blocks32[Q5_1] => dot_q5_1, tile4_q5_1, tile8_q5_1;
    blocks32[Q8_0] => dot_q8_0, tile4_q8_0, tile8_q8_0;
}
