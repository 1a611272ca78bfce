//! The activations' side of the quantized matmul: each token's values quantized to 16 bits per
//! block of 32, with each block's scale and sums, as the kernels read them.

use super::tile::{tile_blocks, tile_qs, BlockValues, TileBlock};
use crate::cpu::float;

/// Activations quantized to 16 bits per block of 32, for `tokens` rows.
#[derive(Debug, Default, Clone)]
pub struct Q16Activations {
    pub blocks_per_row: usize,
    /// Per block: the scale dₓ and the block's true sum Σ x (the Q4_1 min term), side by side.
    pub block_info: Vec<BlockInfo>,
    /// 32 quantized values per block.
    pub qs: Vec<i16>,
    pub tokens: usize,
    /// The block infos again, tile by tile, for the multi-token kernels (`tile.rs`); empty
    /// for one token.
    pub(super) tile_blocks: Vec<TileBlock>,
    /// The values again, tile by tile (`tile.rs`); empty for one token.
    pub(super) tile_qs: Vec<BlockValues>,
}

#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct BlockInfo {
    pub scale: f32,
    pub sum: f32,
}

impl Q16Activations {
    /// Quantizes `x` (tokens × cols, row-major). `cols` must be a multiple of 32.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let blocks_per_row = cols / 32;
        let n_blocks = x.len() / 32;
        let mut out = Q16Activations {
            blocks_per_row,
            block_info: vec![BlockInfo::default(); n_blocks],
            qs: vec![0; n_blocks * 32],
            tokens: n_blocks / blocks_per_row.max(1),
            tile_blocks: Vec::new(),
            tile_qs: Vec::new(),
        };
        quantize_blocks(x, &mut out.qs, &mut out.block_info);
        if out.tokens > 1 {
            out.tile_blocks = tile_blocks(&out);
            out.tile_qs = tile_qs(&out);
        }
        out
    }

    pub(super) fn row(&self, token: usize) -> ActivationRow<'_> {
        let b = token * self.blocks_per_row;
        let e = b + self.blocks_per_row;
        ActivationRow {
            info: &self.block_info[b..e],
            qs: &self.qs[b * 32..e * 32],
        }
    }
}

/// One token's quantized activations, as the kernels read them.
#[derive(Clone, Copy)]
pub(super) struct ActivationRow<'a> {
    pub(super) info: &'a [BlockInfo],
    pub(super) qs: &'a [i16],
}

/// Blocks of a prompt's activations per parallel job: quantizing one costs about as much as
/// reading it, so a job should be worth more than the pool's wake-up.
const BLOCKS_PER_JOB: usize = 512;

/// Quantizes every block of `x` into `qs` and `info`: a prompt's blocks in parallel (each block
/// on its own, so the split changes nothing), the rest on this thread.
fn quantize_blocks(x: &[f32], qs: &mut [i16], info: &mut [BlockInfo]) {
    if info.len() > BLOCKS_PER_JOB && crate::cpu::pool::global().threads() > 1 {
        let jobs: Vec<std::sync::Mutex<Job<'_>>> = x
            .chunks(32 * BLOCKS_PER_JOB)
            .zip(qs.chunks_mut(32 * BLOCKS_PER_JOB))
            .zip(info.chunks_mut(BLOCKS_PER_JOB))
            .map(|((x, qs), info)| std::sync::Mutex::new(Job { x, qs, info }))
            .collect();
        crate::cpu::pool::global().run(jobs.len(), &|j| {
            let mut job = jobs[j].lock().unwrap_or_else(|p| p.into_inner());
            let Job { x, qs, info } = &mut *job;
            quantize_serially(x, qs, info);
        });
        return;
    }
    quantize_serially(x, qs, info);
}

/// One parallel job's blocks: its part of the input and of the outputs.
struct Job<'a> {
    x: &'a [f32],
    qs: &'a mut [i16],
    info: &'a mut [BlockInfo],
}

fn quantize_serially(x: &[f32], qs: &mut [i16], info: &mut [BlockInfo]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::avx512::available() {
            // SAFETY: the CPU has the features `avx512_block` is compiled for.
            return unsafe { quantize_serially_avx512(x, qs, info) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has the features `avx2_block` is compiled for.
            return unsafe { quantize_serially_avx2(x, qs, info) };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return quantize_with(x, qs, info, simd128_block);
    #[allow(unreachable_code)]
    quantize_with(x, qs, info, quantize_block);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_serially_avx512(x: &[f32], qs: &mut [i16], info: &mut [BlockInfo]) {
    quantize_with(x, qs, info, |block, qs| {
        // SAFETY: compiled with, and called for, the features it needs.
        unsafe { avx512_block(block, qs) }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_serially_avx2(x: &[f32], qs: &mut [i16], info: &mut [BlockInfo]) {
    quantize_with(x, qs, info, |block, qs| {
        // SAFETY: compiled with, and called for, the features it needs.
        unsafe { avx2_block(block, qs) }
    });
}

/// Quantizes each block of `x` with `quantize` (which fills the block's qs and returns its
/// scale), and sums the blocks a group at a time.
#[inline(always)]
fn quantize_with(
    x: &[f32],
    qs: &mut [i16],
    info: &mut [BlockInfo],
    quantize: impl Fn(&[f32], &mut [i16]) -> f32,
) {
    let blocks = x.chunks_exact(32 * SUMS_SIDE_BY_SIDE);
    let (qs_groups, info_groups) = (
        qs.chunks_exact_mut(32 * SUMS_SIDE_BY_SIDE),
        info.chunks_exact_mut(SUMS_SIDE_BY_SIDE),
    );
    let done = blocks.len() * SUMS_SIDE_BY_SIDE;
    for ((x, qs), info) in blocks.zip(qs_groups).zip(info_groups) {
        for ((block, qs), info) in x
            .chunks_exact(32)
            .zip(qs.chunks_exact_mut(32))
            .zip(&mut *info)
        {
            info.scale = quantize(block, qs);
        }
        let sums = sums_in_order::<SUMS_SIDE_BY_SIDE>(x);
        for (info, sum) in info.iter_mut().zip(sums) {
            info.sum = sum;
        }
    }
    let rest = x[32 * done..].chunks_exact(32);
    for ((block, qs), info) in rest
        .zip(qs[32 * done..].chunks_exact_mut(32))
        .zip(&mut info[done..])
    {
        info.scale = quantize(block, qs);
        info.sum = sums_in_order::<1>(block)[0];
    }
}

/// Blocks whose sums run side by side.
const SUMS_SIDE_BY_SIDE: usize = 8;

/// The sums Σ x of N consecutive blocks of 32, each added in order from -0.0 (what
/// `block.iter().sum::<f32>()` gives): the N additions of a step are independent, so they
/// overlap, where one block's 32 additions in a row each wait for the one before.
#[inline(always)]
fn sums_in_order<const N: usize>(x: &[f32]) -> [f32; N] {
    let mut sums = [-0.0f32; N];
    for k in 0..32 {
        for (b, sum) in sums.iter_mut().enumerate() {
            *sum += x[32 * b + k];
        }
    }
    sums
}

/// One block of 32 into `qs`: scale = max|x| / 32767, values rounded to the nearest, ties to
/// even. Returns the scale.
fn quantize_block(block: &[f32], qs: &mut [i16]) -> f32 {
    let amax = block.iter().fold(0f32, |m, v| float::larger(m, v.abs()));
    let (scale, inverse) = scale_of(amax);
    for (q, &v) in qs.iter_mut().zip(block) {
        *q = round_ties_even(v * inverse) as i16;
    }
    scale
}

/// A block's scale and the factor its values are multiplied by, from its largest |x|: one
/// definition for every quantizer, so that they agree to the bit.
#[inline(always)]
fn scale_of(amax: f32) -> (f32, f32) {
    let inverse = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
    (amax / 32767.0, inverse)
}

/// [`quantize_block`] in two 512-bit vectors: the same scale and values, to the bit, for
/// finite values (the largest |x| by lanes is the same maximum; each value's product and
/// rounding are the same f32 operations). A block with an infinity or a NaN goes to
/// [`quantize_block`], whose comparisons and `as i16` treat them their own way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn avx512_block(block: &[f32], qs: &mut [i16]) -> f32 {
    use std::arch::x86_64::*;
    assert!(block.len() == 32 && qs.len() == 32);
    let (x, q) = (block.as_ptr(), qs.as_mut_ptr());
    let magnitude = _mm512_set1_epi32(0x7fff_ffff);
    let halves = [_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16))];
    // |x| as bits; an infinity or a NaN has all its exponent bits set.
    let abs = [
        _mm512_and_si512(_mm512_castps_si512(halves[0]), magnitude),
        _mm512_and_si512(_mm512_castps_si512(halves[1]), magnitude),
    ];
    let infinity = _mm512_set1_epi32(0x7f80_0000);
    let not_finite =
        _mm512_cmpge_epu32_mask(abs[0], infinity) | _mm512_cmpge_epu32_mask(abs[1], infinity);
    if not_finite != 0 {
        return quantize_block(block, qs);
    }
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(
        _mm512_castsi512_ps(abs[0]),
        _mm512_castsi512_ps(abs[1]),
    ));
    let (scale, inverse) = scale_of(amax);
    let inverse = _mm512_set1_ps(inverse);
    let magic = _mm512_set1_ps(ROUNDING_MAGIC);
    for (k, &h) in halves.iter().enumerate() {
        let rounded = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(h, inverse), magic), magic);
        let values = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(rounded));
        _mm256_storeu_si256(q.add(16 * k) as *mut __m256i, values);
    }
    scale
}

/// [`avx512_block`] in four 256-bit vectors, for CPUs with AVX2 and without AVX-512: the same
/// scale and values as [`quantize_block`], to the bit, for finite values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_block(block: &[f32], qs: &mut [i16]) -> f32 {
    use std::arch::x86_64::*;
    assert!(block.len() == 32 && qs.len() == 32);
    let (x, q) = (block.as_ptr(), qs.as_mut_ptr());
    let magnitude = _mm256_set1_epi32(0x7fff_ffff);
    let largest_finite = _mm256_set1_epi32(0x7f7f_ffff);
    let quarters = [
        _mm256_loadu_ps(x),
        _mm256_loadu_ps(x.add(8)),
        _mm256_loadu_ps(x.add(16)),
        _mm256_loadu_ps(x.add(24)),
    ];
    // |x| as bits, and whether any is an infinity or a NaN (all exponent bits set: as a
    // signed integer, above the largest finite f32's bits).
    let mut largest = _mm256_setzero_ps();
    let mut not_finite = _mm256_setzero_si256();
    for &v in &quarters {
        let abs = _mm256_and_si256(_mm256_castps_si256(v), magnitude);
        not_finite = _mm256_or_si256(not_finite, _mm256_cmpgt_epi32(abs, largest_finite));
        largest = _mm256_max_ps(_mm256_castsi256_ps(abs), largest);
    }
    if _mm256_movemask_epi8(not_finite) != 0 {
        return quantize_block(block, qs);
    }
    let m = _mm_max_ps(
        _mm256_castps256_ps128(largest),
        _mm256_extractf128_ps(largest, 1),
    );
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let (scale, inverse) = scale_of(amax);
    let inverse = _mm256_set1_ps(inverse);
    let magic = _mm256_set1_ps(ROUNDING_MAGIC);
    let round = |v: __m256| {
        _mm256_cvtps_epi32(_mm256_sub_ps(
            _mm256_add_ps(_mm256_mul_ps(v, inverse), magic),
            magic,
        ))
    };
    for half in 0..2 {
        let (a, b) = (round(quarters[2 * half]), round(quarters[2 * half + 1]));
        // `packs` works within 128-bit lanes: a0..3 b0..3 a4..7 b4..7, put back in order.
        let packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0b11_01_10_00);
        _mm256_storeu_si256(q.add(16 * half) as *mut __m256i, packed);
    }
    scale
}

/// [`quantize_block`] in eight 128-bit vectors, for the browser (wasm simd128): the same scale
/// and values, to the bit, for finite values, as [`avx2_block`]. In the page's decode the plain
/// loop took 2–2.5% of the time.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn simd128_block(block: &[f32], qs: &mut [i16]) -> f32 {
    use std::arch::wasm32::*;
    assert!(block.len() == 32 && qs.len() == 32);
    let (x, q) = (block.as_ptr(), qs.as_mut_ptr());
    // SAFETY: eight 16-byte loads inside `block`, four 16-byte stores inside `qs` (both 32 long).
    unsafe {
        let values: [v128; 8] = std::array::from_fn(|i| v128_load(x.add(4 * i) as *const v128));
        let (magnitude, largest_finite) = (u32x4_splat(0x7fff_ffff), u32x4_splat(0x7f7f_ffff));
        let (mut largest, mut not_finite) = (f32x4_splat(0.0), u32x4_splat(0));
        for &v in &values {
            let abs = v128_and(v, magnitude);
            not_finite = v128_or(not_finite, u32x4_gt(abs, largest_finite));
            // Finite and not negative: the plain maximum needs none of `f32x4_max`'s care.
            largest = f32x4_pmax(abs, largest);
        }
        if v128_any_true(not_finite) {
            return quantize_block(block, qs);
        }
        let pairs = f32x4_pmax(largest, i32x4_shuffle::<2, 3, 0, 1>(largest, largest));
        let amax = float::larger(
            f32x4_extract_lane::<0>(pairs),
            f32x4_extract_lane::<1>(pairs),
        );
        let (scale, inverse) = scale_of(amax);
        let (inverse, magic) = (f32x4_splat(inverse), f32x4_splat(ROUNDING_MAGIC));
        let round = |v: v128| {
            let rounded = f32x4_sub(f32x4_add(f32x4_mul(v, inverse), magic), magic);
            i32x4_trunc_sat_f32x4(rounded)
        };
        for k in 0..4 {
            let (a, b) = (round(values[2 * k]), round(values[2 * k + 1]));
            v128_store(q.add(8 * k) as *mut v128, i16x8_narrow_i32x4(a, b));
        }
        scale
    }
}

/// 1.5·2²³: adding and removing it leaves an f32 of magnitude below 2²² rounded to an integer,
/// ties to even.
const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// Rounds to the nearest integer, ties to even, for |v| < 2²²: adding and removing 1.5·2²³
/// leaves no fraction bits. (`f32::round_ties_even` is a libm call without SSE4.1.)
fn round_ties_even(v: f32) -> f32 {
    (v + ROUNDING_MAGIC) - ROUNDING_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    // Every block's sum is the one `Iterator::sum` gives, and its scale and values are the
    // plain quantizer's, to the bit (whichever quantizer the CPU picks), for whole groups of
    // blocks and the blocks after them, with values of very different sizes (where the order
    // of the additions shows), blocks of zeros of either sign and blocks with a NaN or an
    // infinity.
    #[test]
    fn each_block_is_quantized_and_summed_as_the_plain_code_does() {
        let mut rng = SeededRng::new(5);
        let blocks = 3 * SUMS_SIDE_BY_SIDE + 5;
        let mut x: Vec<f32> = rng
            .vec_f32(32 * blocks, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * [1.0, 1e-7, 3e5][i % 3])
            .collect();
        x[..32].fill(-0.0);
        x[32..64].fill(0.0);
        // Blocks the SIMD quantizers leave to the plain one.
        x[64 + 5] = f32::NAN;
        x[96 + 30] = f32::NEG_INFINITY;
        let mut qs = vec![0; x.len()];
        let mut info = vec![BlockInfo::default(); blocks];
        quantize_serially(&x, &mut qs, &mut info);
        check_blocks("this CPU's", &x, &qs, &info);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { quantize_serially_avx2(&x, &mut qs, &mut info) };
            check_blocks("AVX2", &x, &qs, &info);
        }
    }

    fn check_blocks(name: &str, x: &[f32], qs: &[i16], info: &[BlockInfo]) {
        for (b, (block, info)) in x.chunks_exact(32).zip(info).enumerate() {
            let alone: f32 = block.iter().sum();
            assert_eq!(info.sum.to_bits(), alone.to_bits(), "{name}: block {b}");
            let mut q = [0i16; 32];
            let scale = quantize_block(block, &mut q);
            assert_eq!(info.scale.to_bits(), scale.to_bits(), "{name}: block {b}");
            assert_eq!(&qs[32 * b..32 * (b + 1)], &q[..], "{name}: block {b}");
        }
    }
}
