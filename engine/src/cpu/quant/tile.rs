//! Prefill as tiles of tokens.
//!
//! A kernel multiplies one weight row by T tokens at once: it unpacks each weight block once
//! for the T tokens, and what it then does per token is only the integer dot product, one
//! conversion and one multiply-add. The per-block scalar work — the products d·dₓ and m·Σx —
//! is done for the whole tile by one vector multiply, from the activations' block infos laid out
//! here token by token within each block ([`TileBlock`]), and each token's d·dₓ is broadcast
//! straight from memory into its multiply-add rather than shuffled out of a register. The
//! activations' values are laid out the same way, a tile's tokens' blocks side by side on
//! cache lines of their own ([`tile_qs`]).
//!
//! Every kernel is written once, generic over where its tokens come from ([`Tokens`]): one
//! activation row (decode) or a [`TokenTile`] (prefill). Both give each token the same
//! products in the same order, so a tile gives every token what decode would, to the bit.
//!
//! Why tiles of tokens and not of tokens × rows: a tile's activations stay in L1 while the
//! job's weight rows stream past them, so sharing an activation load between rows saves
//! nothing that limits the kernel (loads fold into the multiplies). On AVX-512 with Q4_1,
//! 1 row × 8 tokens measured 25.7 GMAC/s against 24.0 for 2 × 4, 23.6 for 3 × 4 and 24.2
//! for 2 × 8 (1536 × 576 by 420 tokens, one thread, thread CPU time, best of 15).
//! One token (decode) in wasm is another matter: V8 loads every operand into a register, and
//! there two rows that share one token's loads of activations and block infos ran Q4_1
//! 12–20% faster (`simd128.rs`).

/// The public entry points of a file's kernels, each written once over its tokens
/// (`unsafe fn kernel<const T: usize, …>(row: &[u8], x: impl Tokens<T>) -> [f32; T]`): `dot_*`
/// runs it on one token (decode), `tile4_*` on a tile of four (prefill). Bracketed arguments
/// follow T in the kernel's generics. The calling file says why its kernels are safe to call
/// (what bounds their loads; the CPU features they were selected for).
macro_rules! entry_points {
    ($($kernel:ident $([$($generic:expr),*])? => $dot:ident, $tile4:ident;)*) => {$(
        pub fn $dot(row: &[u8], x: super::ActivationRow<'_>) -> f32 {
            unsafe { $kernel::<1 $($(, $generic)*)?>(row, super::tile::OneToken(x))[0] }
        }

        pub fn $tile4(row: &[u8], x: &super::tile::TokenTile<'_, 4>) -> [f32; 4] {
            unsafe { $kernel::<4 $($(, $generic)*)?>(row, *x) }
        }
    )*};
}
pub(super) use entry_points;

use super::rows::RowsOut;
use super::{ActivationRow, Q16Activations, Q16Kernels, QMatrix};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Tokens per tile in the activations' layout: the widest kernel's tile (AVX-512's eight; in
/// wasm, whose widest tile is four, a layout for eight had each tile read every other part of
/// it, and Q6_K tiles ran 7% slower in Chromium than with four).
#[cfg(not(target_arch = "wasm32"))]
pub(super) const TILE: usize = 8;
#[cfg(target_arch = "wasm32")]
pub(super) const TILE: usize = 4;

/// One activation block of [`TILE`] tokens: their scales dₓ and sums Σ x, each side by side (the tile's last tokens, past the end of the input, repeat its last one).
#[derive(Debug, Default, Clone, Copy)]
#[repr(C, align(32))]
pub struct TileBlock {
    pub scale: [f32; TILE],
    pub sum: [f32; TILE],
}

/// The tile-major copy of `x`'s block infos: for each tile of [`TILE`] tokens, for each block
/// of a row, one [`TileBlock`].
pub(super) fn tile_blocks(x: &Q16Activations) -> Vec<TileBlock> {
    let (per_row, tokens) = (x.blocks_per_row, x.tokens);
    if per_row == 0 || tokens == 0 {
        return Vec::new();
    }
    let mut out = vec![TileBlock::default(); tokens.div_ceil(TILE) * per_row];
    for (tile, blocks) in out.chunks_exact_mut(per_row).enumerate() {
        for lane in 0..TILE {
            let token = (tile * TILE + lane).min(tokens - 1);
            let infos = &x.block_info[token * per_row..(token + 1) * per_row];
            for (block, info) in blocks.iter_mut().zip(infos) {
                block.scale[lane] = info.scale;
                block.sum[lane] = info.sum;
            }
        }
    }
    out
}

/// The tile-major copy of `x`'s quantized values: for each tile of [`TILE`] tokens, for each
/// block of a row, the tile's tokens' 32 values one after the other (the tile's last tokens,
/// past the end of the input, repeat its last one). A tile's kernel then reads its
/// activations in one stream, from one pointer: read from each token's row, eight tokens'
/// rows 4 KiB apart (2048 columns) fell in the same sets of the L1 cache, and the eight row
/// pointers did not fit in the registers beside the kernel's own.
pub(super) fn tile_qs(x: &Q16Activations) -> Vec<BlockValues> {
    let (per_row, tokens) = (x.blocks_per_row, x.tokens);
    if per_row == 0 || tokens == 0 {
        return Vec::new();
    }
    let mut out = vec![BlockValues([0; 32]); tokens.div_ceil(TILE) * per_row * TILE];
    for (tile, blocks) in out.chunks_exact_mut(per_row * TILE).enumerate() {
        for (block, values) in blocks.chunks_exact_mut(TILE).enumerate() {
            for (lane, values) in values.iter_mut().enumerate() {
                let token = (tile * TILE + lane).min(tokens - 1);
                let at = (token * per_row + block) * 32;
                values.0.copy_from_slice(&x.qs[at..at + 32]);
            }
        }
    }
    out
}

/// One block's 32 quantized values, on a cache line of its own (a kernel loads them whole).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct BlockValues(pub [i16; 32]);

/// Each token's `a·dₓ` for one block, kept in memory (see [`Scaled::get`]).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(super) struct Scaled<const T: usize>([f32; T]);

impl<const T: usize> Scaled<T> {
    /// `a · s[t]` for each token, in one vector multiply where the tile fills a vector (the
    /// compiler otherwise multiplies lane by lane, since each lane is read back on its own).
    /// SAFETY: `s` points to T floats.
    #[inline(always)]
    unsafe fn product(a: f32, s: *const f32) -> Self {
        let mut out = Scaled([0.0; T]);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            // Eight-token tiles run only in AVX-512 kernels, which have AVX.
            if T == 8 {
                let v = _mm256_mul_ps(_mm256_set1_ps(a), _mm256_loadu_ps(s));
                _mm256_store_ps(out.0.as_mut_ptr(), v);
                return out;
            }
            if T == 4 {
                _mm_store_ps(
                    out.0.as_mut_ptr(),
                    _mm_mul_ps(_mm_set1_ps(a), _mm_loadu_ps(s)),
                );
                return out;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if T == 4 {
            use std::arch::wasm32::*;
            let v = f32x4_mul(f32x4_splat(a), v128_load(s as *const v128));
            v128_store(out.0.as_mut_ptr() as *mut v128, v);
            return out;
        }
        for (t, p) in out.0.iter_mut().enumerate() {
            *p = a * *s.add(t);
        }
        out
    }

    /// Token `t`'s product. For a tile it is read back from memory on purpose: the compiler
    /// then broadcasts it into the multiply-add from memory (a load, `{1to16}` on AVX-512)
    /// instead of forwarding the stored value and spending a shuffle per token.
    #[inline(always)]
    pub(super) fn get(&self, t: usize) -> f32 {
        if T == 1 {
            self.0[0]
        } else {
            // SAFETY: `t < T` is checked by the index; the read is of an initialized f32.
            unsafe { std::ptr::read_volatile(&self.0[t]) }
        }
    }
}

/// Calls `block(i, chain)` for blocks 0..n, even blocks on chain 0 and odd ones on chain 1
/// (unrolled by two, so the chains are constants once inlined). The AVX2 and wasm kernels'
/// loop over a row's blocks.
#[inline(always)]
pub(super) fn by_pairs(n: usize, mut block: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i + 2 <= n {
        block(i, 0);
        block(i + 1, 1);
        i += 2;
    }
    if i < n {
        block(i, 0);
    }
}

/// [`by_pairs`] with a tile's products `d·dₓ` for every token (`d_at(i)` block i's d):
/// `block(i, chain, products)`, where one token gets `None` and computes its own
/// ([`steps_of`]). A tile computes its products [`AHEAD`] blocks ahead of the blocks that
/// use them: a product stored by its own block and read straight back for each token waited
/// on the store (as in `avx512.rs`).
#[inline(always)]
pub(super) unsafe fn by_pairs_with_products<const T: usize>(
    n: usize,
    x: &impl Tokens<T>,
    d_at: impl Fn(usize) -> f32,
    mut block: impl FnMut(usize, usize, Option<&Scaled<T>>),
) {
    if T == 1 {
        return by_pairs(n, |i, chain| block(i, chain, None));
    }
    let mut first = 0;
    while first < n {
        let end = (first + AHEAD).min(n);
        let mut products = [const { MaybeUninit::<Scaled<T>>::uninit() }; AHEAD];
        for (k, products) in products.iter_mut().enumerate().take(end - first) {
            products.write(x.scales_times(first + k, d_at(first + k)));
        }
        // `first` is even, so block `first + k` keeps the chain of its parity. SAFETY: the
        // products of blocks `first..end` were written just above.
        by_pairs(end - first, |k, chain| {
            block(first + k, chain, Some(products[k].assume_init_ref()))
        });
        first = end;
    }
}

/// Blocks whose products a tile computes at a time (even).
const AHEAD: usize = 32;

/// Block `i`'s products: a tile's, computed ahead, or one token's, computed now into `own`
/// from the block's d. (One token's handed over by [`by_pairs_with_products`] itself ran 8%
/// slower on AVX2.)
#[inline(always)]
pub(super) unsafe fn steps_of<'a, const T: usize>(
    ahead: Option<&'a Scaled<T>>,
    own: &'a mut Option<Scaled<T>>,
    x: &impl Tokens<T>,
    i: usize,
    d: impl FnOnce() -> f32,
) -> &'a Scaled<T> {
    match ahead {
        Some(steps) => steps,
        None => own.insert(x.scales_times(i, d())),
    }
}

/// The tokens a kernel multiplies a row by: one activation row ([`OneToken`], decode) or a
/// tile of T ([`TokenTile`], prefill). Both compute each token's products as the one-token
/// kernel always has (`a·dₓ`, `a·Σx` in f32), so the kernels built on them agree to the bit.
pub(super) trait Tokens<const T: usize>: Copy {
    /// The blocks that every token's row holds.
    fn blocks(&self) -> usize;
    /// `a·dₓ` of block `i` for each token. SAFETY (all below): `i < self.blocks()`, `t < T`.
    unsafe fn scales_times(&self, i: usize, a: f32) -> Scaled<T>;
    /// `a·Σx` of block `i` for each token.
    unsafe fn sums_times(&self, i: usize, a: f32) -> [f32; T];
    /// Block `i`'s 32 quantized values of token `t`.
    unsafe fn qs(&self, t: usize, i: usize) -> *const i16;
}

/// One token's activations (decode).
#[derive(Clone, Copy)]
pub(super) struct OneToken<'a>(pub ActivationRow<'a>);

impl Tokens<1> for OneToken<'_> {
    #[inline(always)]
    fn blocks(&self) -> usize {
        self.0.info.len().min(self.0.qs.len() / 32)
    }

    #[inline(always)]
    unsafe fn scales_times(&self, i: usize, a: f32) -> Scaled<1> {
        Scaled([a * self.0.info.get_unchecked(i).scale])
    }

    #[inline(always)]
    unsafe fn sums_times(&self, i: usize, a: f32) -> [f32; 1] {
        [a * self.0.info.get_unchecked(i).sum]
    }

    #[inline(always)]
    unsafe fn qs(&self, _t: usize, i: usize) -> *const i16 {
        self.0.qs.as_ptr().add(32 * i)
    }
}

/// `T` consecutive tokens of a [`Q16Activations`] (T divides [`TILE`]): their block infos
/// and their values, each side by side ([`tile_blocks`], [`tile_qs`]).
#[derive(Clone, Copy)]
pub(super) struct TokenTile<'a, const T: usize> {
    blocks: &'a [TileBlock],
    /// The tile's values: for each block, [`TILE`] tokens' 32.
    qs: &'a [BlockValues],
    /// Where the tile's first token sits in each [`TileBlock`] and each block's values.
    lane: usize,
    /// The blocks that every token's row holds, counted once here rather than in each
    /// kernel call (one per weight row).
    n_blocks: usize,
}

impl<'a, const T: usize> TokenTile<'a, T> {
    /// Tokens `first..first + T` of `x` (those past its end repeat its last one); `first` is a
    /// multiple of T below `x.tokens`.
    pub(super) fn new(x: &'a Q16Activations, first: usize) -> Self {
        // At run time: wasm's layout (four) has no tiles of eight, though the code for them
        // is compiled.
        assert!(
            T <= TILE && TILE.is_multiple_of(T),
            "a tile of {T} in a layout of {TILE}"
        );
        assert!(first.is_multiple_of(T) && first < x.tokens);
        let per_row = x.blocks_per_row;
        let tile = first / TILE;
        let blocks = &x.tile_blocks[tile * per_row..(tile + 1) * per_row];
        let per_tile = per_row * TILE;
        let qs = &x.tile_qs[tile * per_tile..(tile + 1) * per_tile];
        TokenTile {
            blocks,
            qs,
            lane: first % TILE,
            n_blocks: blocks.len().min(qs.len() / TILE),
        }
    }
}

impl<const T: usize> Tokens<T> for TokenTile<'_, T> {
    #[inline(always)]
    fn blocks(&self) -> usize {
        self.n_blocks
    }

    #[inline(always)]
    unsafe fn scales_times(&self, i: usize, a: f32) -> Scaled<T> {
        // `lane + T <= TILE` (T divides TILE, and `lane` is a multiple of T).
        Scaled::product(
            a,
            self.blocks.get_unchecked(i).scale.as_ptr().add(self.lane),
        )
    }

    #[inline(always)]
    unsafe fn sums_times(&self, i: usize, a: f32) -> [f32; T] {
        let s = self.blocks.get_unchecked(i).sum.as_ptr().add(self.lane);
        std::array::from_fn(|t| a * *s.add(t))
    }

    #[inline(always)]
    unsafe fn qs(&self, t: usize, i: usize) -> *const i16 {
        // Inside `qs`: `i < n_blocks` and `lane + t < TILE`.
        self.qs.as_ptr().add(i * TILE + self.lane + t) as *const i16
    }
}

/// Rows `rows` of `w` against every token of `x`, a tile of tokens at a time, each tile against
/// all the rows before the next (the tile's activations stay in L1 while the rows stream past):
/// tiles of eight where the kernel set has them, of four otherwise; what is left in a smaller
/// tile if it has two tokens or more (its last token repeated, which costs less than unpacking
/// the rows again per token), one token alone in the one-token kernel (two rows at a time where
/// the kernel set has a two-row kernel).
pub(super) fn rows_by_tiles(
    w: &QMatrix,
    rows: Range<usize>,
    x: &Q16Activations,
    k: Q16Kernels,
    out: &mut RowsOut<'_>,
) {
    let n = x.tokens;
    let mut t = 0;
    let mut tile8_out = Vec::new();
    while t < n {
        let left = n - t;
        // Eight-token tiles start at multiples of eight, four-token ones at multiples of four.
        let eight = k
            .tile8
            .filter(|_| left > 4 || (k.tile4.is_none() && left > 1));
        let four = k.tile4.filter(|_| left > 1);
        if let Some(tile8) = eight {
            let tile = TokenTile::<8>::new(x, t);
            let row_bytes = w.row_bytes();
            let run = &w.data[rows.start * row_bytes..rows.end * row_bytes];
            tile8_out.resize(rows.len(), [0.0; 8]);
            tile8(run, row_bytes, &tile, &mut tile8_out);
            out.set_tiles(t, left.min(8), rows.clone(), &tile8_out);
            t += 8;
        } else if let Some(tile4) = four {
            let tile = TokenTile::<4>::new(x, t);
            for r in rows.clone() {
                let y = tile4(w.row(r), &tile);
                for (i, &y) in y.iter().take(left).enumerate() {
                    out.set(t + i, r, y);
                }
            }
            t += 4;
        } else {
            let (token, mut r) = (x.row(t), rows.start);
            if let Some(rows2) = k.rows2 {
                let row_bytes = w.row_bytes();
                while r + 2 <= rows.end {
                    let y = rows2(&w.data[r * row_bytes..(r + 2) * row_bytes], token);
                    out.set(t, r, y[0]);
                    out.set(t, r + 1, y[1]);
                    r += 2;
                }
            }
            for r in r..rows.end {
                out.set(t, r, (k.dot)(w.row(r), token));
            }
            t += 1;
        }
    }
}
