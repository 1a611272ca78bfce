//! wasm SIMD kernels for the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): what the browser's
//! CPU tier runs. Weights widen to 16-bit lanes and `i32x4.dot_i16x8` multiplies them with the
//! 16-bit activations. Each kernel is written once for one token (decode) and for a tile of
//! four (prefill), like the AVX2 ones; Q4_1 and Q8_0 (SmolLM2's types) have their own
//! one-token kernels besides, which compute the same values with a block's scalar work in
//! vector lanes (a few percent faster decode in the page, measured), and two-row ones that
//! share a token's loads between two rows. The helpers here serve the K-quant kernels
//! (`simd128_k.rs`) too.
//!
//! Shaped like the AVX2 kernels, because V8 turns each wasm instruction into about one x86
//! instruction and the kernel is bound by their count: a block's i32 sums are scaled in
//! float lanes (two chains, one horizontal sum per row, not per block), the f16 scales
//! convert with four integer operations instead of `half`'s branching fallback, and the
//! loop reads through pointers after one length check.

use super::tile::{by_pairs, by_pairs_with_products, steps_of, OneToken, TokenTile, Tokens};
use super::ActivationRow;
use std::arch::wasm32::*;

/// An f16's value: its sign, exponent and mantissa shifted into an f32's places, rescaled by
/// 2¹¹² (the difference of the two exponent biases). Exact for every finite half, subnormals
/// included; scales in a model file are finite. The half is read sign-extended, so one shift
/// puts its sign on the f32's (the mask drops the sign's copies between the two), and the
/// multiply keeps it.
#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let h = (p as *const i16).read_unaligned() as i32;
    f32::from_bits(((h << 13) as u32) & HALF_BITS) * f32::from_bits(0x7780_0000)
}

/// Where [`f16_at`]'s shift puts a half's sign (bit 31), exponent and mantissa (bits 13..28).
pub(super) const HALF_BITS: u32 = 0x8FFF_E000;

/// Σ w·a over 32 pairs, `w` as four vectors of eight 16-bit weights: four i32 lanes.
#[inline(always)]
pub(super) unsafe fn dot32(w: [v128; 4], a: *const i16) -> v128 {
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

/// 16 bytes of nibbles less `offset` as 32 16-bit weights: low nibbles (weights 0..15), then
/// high. Subtracting Q4_0's 8 here, once per block, gives the dot products Σ (q - 8)·qₓ
/// directly, instead of a correction `8·Σ qₓ` for every token. Each half of the bytes is
/// loaded widened to 16-bit lanes (one instruction), where its nibbles are a mask and a shift
/// apart: no byte shift (which x86 lacks) and no widening of a vector's high half (two
/// instructions each).
#[inline(always)]
unsafe fn nibbles(p: *const u8, offset: i8) -> [v128; 4] {
    let (first, second) = (u16x8_load_extend_u8x8(p), u16x8_load_extend_u8x8(p.add(8)));
    let (mask, offset) = (u16x8_splat(0x0F), i16x8_splat(offset as i16));
    [
        i16x8_sub(v128_and(first, mask), offset),
        i16x8_sub(v128_and(second, mask), offset),
        i16x8_sub(u16x8_shr(first, 4), offset),
        i16x8_sub(u16x8_shr(second, 4), offset),
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

/// The two chains' lanes and extras summed, in one fixed order.
#[inline(always)]
pub(super) fn finish(acc: [v128; 2], extra: [f32; 2]) -> f32 {
    let s = f32x4_add(acc[0], acc[1]);
    (f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s))
        + (f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s))
        + (extra[0] + extra[1])
}

/// Per-token sums of a row's blocks in two chains (even and odd activation blocks): for each
/// block, `acc += float(its i32 lanes) · (scale·dₓ)` in four f32 lanes, and the min term
/// `extra += m·Σx` beside them, summed by [`finish`]; the same for one token as for a tile.
/// Blocks reach it through [`by_pairs`], so each chain is a constant and stays in a local.
pub(super) struct Chains<const T: usize> {
    acc: [[v128; 2]; T],
    extra: [[f32; T]; 2],
}

impl<const T: usize> Chains<T> {
    #[inline(always)]
    pub(super) fn new() -> Self {
        Chains {
            acc: [[f32x4_splat(0.0); 2]; T],
            extra: [[0.0; T]; 2],
        }
    }

    /// Adds `scale · sums` (four lanes of i32) to chain `chain` of token `t`.
    #[inline(always)]
    pub(super) fn add(&mut self, t: usize, chain: usize, sums: v128, scale: f32) {
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(scale));
        self.acc[t][chain] = f32x4_add(self.acc[t][chain], scaled);
    }

    /// Adds each token's min term to chain `chain`.
    #[inline(always)]
    pub(super) fn add_extra(&mut self, chain: usize, extra: [f32; T]) {
        for (sum, e) in self.extra[chain].iter_mut().zip(extra) {
            *sum += e;
        }
    }

    #[inline(always)]
    pub(super) fn finish(&self) -> [f32; T] {
        std::array::from_fn(|t| finish(self.acc[t], [self.extra[0][t], self.extra[1][t]]))
    }
}

/// A Q5_0 / Q5_1 block's 32 5-bit weights less `offset` (16 or 0) as 16-bit lanes: the
/// nibbles as Q4_0's, and bit j of `qh` (the u32 at `qh`) adds 16 to weight j. Each vector
/// of eight weights takes its eight bits of `qh` from a splat of `qh`'s half: multiplying
/// lane k by a power of two puts its bit on the lane's sign, which an arithmetic shift
/// spreads over the lane, and a mask makes 16 of it.
#[inline(always)]
unsafe fn five_bits(qh: *const u8, nibbles_at: *const u8, offset: i8) -> [v128; 4] {
    let qh = (qh as *const u32).read_unaligned();
    let (low, high) = (i16x8_splat(qh as i16), i16x8_splat((qh >> 16) as i16));
    // Lane k of the first eight weights of a half: bit k to the sign; of the next: bit 8 + k.
    // Read from memory on purpose: LLVM turns a multiply by constant powers of two into a
    // shift by a different amount per lane, which wasm lacks, and scalarizes it.
    let first = std::ptr::read_volatile(&BIT_TO_SIGN[0]);
    let second = std::ptr::read_volatile(&BIT_TO_SIGN[1]);
    let n = nibbles(nibbles_at, 0);
    [
        with_bit(n[0], i16x8_mul(low, first), offset),
        with_bit(n[1], i16x8_mul(low, second), offset),
        with_bit(n[2], i16x8_mul(high, first), offset),
        with_bit(n[3], i16x8_mul(high, second), offset),
    ]
}

/// Multipliers that move bit k (first) or bit 8 + k (second) of lane k to its sign.
static BIT_TO_SIGN: [v128; 2] = [
    i16x8(
        i16::MIN,
        1 << 14,
        1 << 13,
        1 << 12,
        1 << 11,
        1 << 10,
        1 << 9,
        1 << 8,
    ),
    i16x8(1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1),
];

/// Eight nibbles with their fifth bit (on the sign of `sign`'s lanes), less `offset`.
#[inline(always)]
fn with_bit(nibbles: v128, sign: v128, offset: i8) -> v128 {
    let set = i16x8_shr(sign, 15); // -1 where the bit is set, else 0
    let weights = v128_or(nibbles, v128_and(set, i16x8_splat(16)));
    i16x8_sub(weights, i16x8_splat(offset as i16))
}

/// The f16 pair at `p` (a block's d and m) as f32 lanes `[d, m, 0, 0]`, or without a min
/// (`MIN` false) `[d, d, d, d]`: [`f16_at`]'s operations on every lane at once, so the same
/// values. Without a min, the two bytes after d are weights, not an f16: widened, small
/// ones are subnormal f32s, and a multiply with a subnormal operand costs x86 CPUs a
/// microcode assist of about a hundred cycles. With a Q8_0 block's first weights small often
/// enough, those assists took a quarter of the one-token Q8_0 kernel's time in Chromium.
#[inline(always)]
unsafe fn f16_pair<const MIN: bool>(p: *const u8) -> v128 {
    let halves = if MIN {
        v128_load32_zero(p as *const u32)
    } else {
        v128_load16_splat(p as *const u16)
    };
    halves_as_f32(halves)
}

/// The four f16 in the low lanes of `halves` as f32 lanes: [`f16_at`]'s operations on each.
#[inline(always)]
fn halves_as_f32(halves: v128) -> v128 {
    let h = i32x4_extend_low_i16x8(halves);
    f32x4_mul(
        v128_and(i32x4_shl(h, 13), u32x4_splat(HALF_BITS)),
        f32x4_splat(f32::from_bits(0x7780_0000)),
    )
}

/// A row of `BYTES`-byte blocks (d first, then m where `MIN`) against one token (decode),
/// where the per-block scalar work is as long as the dot product: d and m convert together
/// ([`f16_pair`]), and one multiply by the block's `[dₓ, Σx]` gives `[d·dₓ, m·Σx]`, the min
/// term summed in lane 1 of a vector per chain (without a min, lane 1 goes unused). The same
/// products and sums as the generic kernels, so decode still equals prefill to the bit.
/// `weights` unpacks a block's 32 weights.
#[inline(always)]
unsafe fn one_token<const BYTES: usize, const MIN: bool>(
    row: &[u8],
    x: ActivationRow<'_>,
    weights: impl Fn(*const u8) -> [v128; 4],
) -> f32 {
    let n = OneToken(x).blocks().min(row.len() / BYTES);
    let mut acc = [f32x4_splat(0.0); 2];
    let mut extra = [f32x4_splat(0.0); 2];
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * BYTES);
        let info = v128_load64_zero(x.info.as_ptr().add(i) as *const u64); // [dₓ, Σx, 0, 0]
        let products = f32x4_mul(f16_pair::<MIN>(b), info);
        let sums = dot32(weights(b), x.qs.as_ptr().add(32 * i));
        let step = i32x4_shuffle::<0, 0, 0, 0>(products, products);
        acc[chain] = f32x4_add(acc[chain], f32x4_mul(f32x4_convert_i32x4(sums), step));
        if MIN {
            extra[chain] = f32x4_add(extra[chain], products);
        }
    });
    finish(
        acc,
        [
            f32x4_extract_lane::<1>(extra[0]),
            f32x4_extract_lane::<1>(extra[1]),
        ],
    )
}

/// [`f16_pair`] of two rows' blocks in one vector: `[dA, mA, dB, mB]`, or without a min
/// `[dA, dA, dB, dB]` (each d loaded on its own, for the reason [`f16_pair`] gives).
#[inline(always)]
unsafe fn f16_pairs<const MIN: bool>(a: *const u8, b: *const u8) -> v128 {
    let halves = if MIN {
        v128_load32_lane::<1>(v128_load32_zero(a as *const u32), b as *const u32)
    } else {
        let d = v128_load16_splat(a as *const u16);
        v128_load16_lane::<3>(v128_load16_lane::<2>(d, b as *const u16), b as *const u16)
    };
    halves_as_f32(halves)
}

/// [`one_token`] for two consecutive rows (`pair` holds both): each block's activations and
/// info are read once for the two, and both rows' d·dₓ and m·Σx come from one multiply (the
/// rows in lanes 0–1 and 2–3). Each row gets [`one_token`]'s operations in its order, so the
/// same sums to the bit; only loads and conversions are shared. Four rows at once measured
/// no faster than two.
#[inline(always)]
unsafe fn two_rows<const BYTES: usize, const MIN: bool>(
    pair: &[u8],
    x: ActivationRow<'_>,
    weights: impl Fn(*const u8) -> [v128; 4],
) -> [f32; 2] {
    let row_bytes = pair.len() / 2;
    let n = OneToken(x).blocks().min(row_bytes / BYTES);
    let (first, second) = (pair.as_ptr(), pair.as_ptr().add(row_bytes));
    let mut acc = [[f32x4_splat(0.0); 2]; 2];
    let mut extra = [f32x4_splat(0.0); 2];
    by_pairs(n, |i, chain| {
        let (a, b) = (first.add(i * BYTES), second.add(i * BYTES));
        let info = v128_load64_splat(x.info.as_ptr().add(i) as *const u64); // [dₓ, Σx, dₓ, Σx]
        let products = f32x4_mul(f16_pairs::<MIN>(a, b), info);
        let qx = x.qs.as_ptr().add(32 * i);
        let (sums_a, sums_b) = (dot32(weights(a), qx), dot32(weights(b), qx));
        let step_a = i32x4_shuffle::<0, 0, 0, 0>(products, products);
        let step_b = i32x4_shuffle::<2, 2, 2, 2>(products, products);
        let scaled_a = f32x4_mul(f32x4_convert_i32x4(sums_a), step_a);
        let scaled_b = f32x4_mul(f32x4_convert_i32x4(sums_b), step_b);
        acc[0][chain] = f32x4_add(acc[0][chain], scaled_a);
        acc[1][chain] = f32x4_add(acc[1][chain], scaled_b);
        if MIN {
            extra[chain] = f32x4_add(extra[chain], products);
        }
    });
    let (a, b) = (extra[0], extra[1]);
    [
        finish(
            acc[0],
            [f32x4_extract_lane::<1>(a), f32x4_extract_lane::<1>(b)],
        ),
        finish(
            acc[1],
            [f32x4_extract_lane::<3>(a), f32x4_extract_lane::<3>(b)],
        ),
    ]
}

/// Q4_1 (20 bytes: d, m, qs): `d·dₓ·Σ q·qₓ + m·Σx`.
#[inline(always)]
unsafe fn q4_1<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 20);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 20));
    // Products ahead: in Chromium on an AMD EPYC (`wasm_speed`, tiles of 64 tokens) Q4_1
    // ran 7% faster and Q8_0 2.5%, but Q5_0 (rows of 20 blocks) 4% slower, so only these
    // two kernels take them.
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 20);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        let weights = nibbles(b.add(4), 0);
        for t in 0..T {
            chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
        }
        chains.add_extra(chain, x.sums_times(i, f16_at(b.add(2))));
    });
    chains.finish()
}

/// Q4_0 (18 bytes: d, qs): `d·dₓ·Σ (q-8)·qₓ`.
#[inline(always)]
unsafe fn q4_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 18);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 18);
        let weights = nibbles(b.add(2), 8);
        let steps = x.scales_times(i, f16_at(b));
        for t in 0..T {
            chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// Q8_0 (34 bytes: d, qs as i8).
#[inline(always)]
unsafe fn q8_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 34);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 34));
    // Products ahead: in Chromium on an AMD EPYC (`wasm_speed`, tiles of 64 tokens) Q4_1
    // ran 7% faster and Q8_0 2.5%, but Q5_0 (rows of 20 blocks) 4% slower, so only these
    // two kernels take them.
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 34);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        let weights = bytes(b.add(2));
        for t in 0..T {
            chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// Q5_0 (22 bytes: d, qh, qs): `d·dₓ·Σ (q-16)·qₓ`.
#[inline(always)]
unsafe fn q5_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 22);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 22);
        let weights = five_bits(b.add(2), b.add(6), 16);
        let steps = x.scales_times(i, f16_at(b));
        for t in 0..T {
            chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// Q5_1 (24 bytes: d, m, qh, qs).
#[inline(always)]
unsafe fn q5_1<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 24);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 24);
        let weights = five_bits(b.add(4), b.add(8), 0);
        let steps = x.scales_times(i, f16_at(b));
        for t in 0..T {
            chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
        }
        chains.add_extra(chain, x.sums_times(i, f16_at(b.add(2))));
    });
    chains.finish()
}

// SAFETY (these four and the entry points below): each kernel bounds its blocks by `row` (20, 18,
// 34, 22 or 24 bytes each; the two-row kernels by half of `pair`) and by every token's activations (`Tokens::blocks`: 32 values and
// one 8-byte block info per block); every load stays inside its block (the 4-byte loads of d
// read the next two bytes of the block).
pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { one_token::<20, true>(row, x, |b| nibbles(b.add(4), 0)) }
}

pub fn rows2_q4_1(pair: &[u8], x: ActivationRow<'_>) -> [f32; 2] {
    unsafe { two_rows::<20, true>(pair, x, |b| nibbles(b.add(4), 0)) }
}

pub fn tile4_q4_1(row: &[u8], x: &TokenTile<'_, 4>) -> [f32; 4] {
    unsafe { q4_1(row, *x) }
}

pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { one_token::<34, false>(row, x, |b| bytes(b.add(2))) }
}

pub fn rows2_q8_0(pair: &[u8], x: ActivationRow<'_>) -> [f32; 2] {
    unsafe { two_rows::<34, false>(pair, x, |b| bytes(b.add(2))) }
}

pub fn tile4_q8_0(row: &[u8], x: &TokenTile<'_, 4>) -> [f32; 4] {
    unsafe { q8_0(row, *x) }
}

super::tile::entry_points! {
    q4_0 => dot_q4_0, tile4_q4_0;
    q5_0 => dot_q5_0, tile4_q5_0;
    q5_1 => dot_q5_1, tile4_q5_1;
}
