//! Matrix multiplication on the CPU: `y = x · Wᵀ` with W stored as the GGUF stores it, in ggml
//! blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) or as plain floats (F16, BF16, F32).
//!
//! For the block types the activations are quantized to **16-bit** integers per block of 32
//! (scale = max|x| / 32767), so each block's dot product is integer arithmetic on 16-bit lanes
//! (AVX2 `vpmaddwd` natively, wasm `i32x4.dot_i16x8` in the browser, plain Rust elsewhere)
//! followed by one scale:
//! - Q4_1, Q5_1 (w = q·d + m): Σ w·x = d·dₓ·Σ q·qₓ + m·Σ x, so each activation block keeps its sum;
//! - Q4_0, Q5_0 (w = (q-8)·d, (q-16)·d): Σ w·x = d·dₓ·(Σ q·qₓ - 8·Σ qₓ), or 16·Σ qₓ;
//! - Q8_0 (w = q·d): Σ w·x = d·dₓ·Σ q·qₓ;
//! - Q4_K, Q5_K: super-blocks of 256 whose 8 sub-blocks of 32 (w = d·scᵢ·q - dmin·mᵢ, 6-bit
//!   scᵢ and mᵢ) line up with the activations' blocks: d·scᵢ·dₓ·Σ q·qₓ - dmin·mᵢ·Σ x;
//! - Q6_K: 16 sub-blocks of 16 (w = d·scᵢ·(q-32), 8-bit scᵢ), two per activation block: the
//!   scales multiply the 16-bit weights before the dot product, d·dₓ·Σ scᵢ·(q-32)·qₓ.
//!
//! Why 16 bits where llama.cpp uses 8: on this model, 8-bit activations make the output
//! chaotic — a change in the last bit of one float upstream moves next-token log-probs by up to
//! 0.25, because blocks holding one of its huge outlier activations leave 7 bits for everything
//! else. With 16 bits that effect is 256 times smaller, so the CPU, the browser's CPU tier and
//! WebGPU agree, and Set-Based Prompting's order-invariance holds to the last digits. The cost
//! is small: the kernels widen the 4-bit weights to 16 bits either way.
//!
//! F16, BF16 and F32 weights meet the activations as they are, in f32 (F16C natively). No
//! library's kernels are used: candle has no SIMD kernel for Q4_1, the bundled model's type,
//! nor one with 16-bit activations for any type.
//! Rows are split across threads ([`crate::cpu::pool`]: natively, and in the page's threaded
//! wasm build). Where several tokens are multiplied (prefill), every block type has kernels for
//! tiles of tokens (four, and eight on AVX-512) that unpack each weight block once for
//! the tile and scale its sums for all the tile's tokens at once, summing each token in the
//! one-token kernel's order, so prefill and decode agree to the bit (`tile.rs`).
//!
//! One file per instruction set (and, for AVX2 and wasm, per family of types), each with the
//! same block-by-block arithmetic: `scalar.rs` (the reference), `avx2.rs`, `avx2_k.rs`,
//! `avx2_float.rs`, `avx512.rs` and `avx512_k.rs` (picked at run time from what the CPU reports) and
//! `simd128.rs`, `simd128_k.rs`, `simd128_float.rs` (wasm, picked at build time). This module
//! holds what they share: the weight layout and the dispatch; `activations.rs` quantizes the
//! activations, `tile.rs` lays them out for tiles and walks a job's rows tile by tile, and
//! `rows.rs` splits the rows into parallel jobs.

use crate::gguf::GgmlType;
use half::f16;

mod activations;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_float;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_k;
#[cfg(target_arch = "x86_64")]
mod prefetch;
mod rows;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128_float;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128_k;
mod tile;

use activations::ActivationRow;
pub use activations::{BlockInfo, Q16Activations};
use rows::for_each_rows;
use tile::TokenTile;

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

type DotFn = fn(&[u8], ActivationRow<'_>) -> f32;
/// Two consecutive weight rows (the slice holds both) against one token: the one-token
/// kernel's sums for each, sharing what the two rows read of the activations.
type Rows2Fn = fn(&[u8], ActivationRow<'_>) -> [f32; 2];
/// One weight row against a tile of tokens (prefill): the row's blocks are unpacked once for
/// the tile. Each token's sums run in the one-token kernel's order, so prefill equals decode
/// to the bit.
type Tile4Fn = fn(&[u8], &TokenTile<'_, 4>) -> [f32; 4];
/// A tile of eight tokens against each row of a run of rows (`rows`, `row_bytes` each), into
/// one output per row.
type Tile8Fn = fn(&[u8], usize, &TokenTile<'_, 8>, &mut [[f32; 8]]);
type FloatDotFn = fn(&[u8], &[f32]) -> f32;
/// A four-token kernel over activations of type `A`.
type Four<A> = fn(&[u8], [A; 4]) -> [f32; 4];
type FloatDot4Fn = fn(&[u8], [&[f32]; 4]) -> [f32; 4];

/// The kernels one weight type gets on this machine.
#[derive(Clone, Copy)]
enum Kernels {
    /// Integer dot products with the 16-bit activations: one token, and tiles where they exist.
    Q16(Q16Kernels),
    /// f32 dot products with the activations as they are (F32, F16, BF16).
    F32(FloatDotFn, Option<FloatDot4Fn>),
}

#[derive(Clone, Copy)]
struct Q16Kernels {
    dot: DotFn,
    rows2: Option<Rows2Fn>,
    tile4: Option<Tile4Fn>,
    tile8: Option<Tile8Fn>,
}

/// A kernel set of a one-token kernel and a four-token tile.
fn q16(dot: DotFn, tile4: Tile4Fn) -> Kernels {
    Kernels::Q16(Q16Kernels {
        dot,
        rows2: None,
        tile4: Some(tile4),
        tile8: None,
    })
}

/// The fastest kernels this machine has for `ty`.
fn kernels(ty: GgmlType) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86_kernels(ty) {
        return k;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128_kernels(ty);
    #[allow(unreachable_code)]
    scalar_kernels(ty)
}

#[cfg(target_arch = "x86_64")]
fn x86_kernels(ty: GgmlType) -> Option<Kernels> {
    avx512_kernels(ty).or_else(|| avx2_kernels(ty))
}

/// The AVX-512 kernels, where the CPU has AVX-512 (F, BW, VL): every block type, each
/// activation block's 32 weights in one register of 16-bit lanes, with tiles of eight tokens.
/// On this project's Intel Xeon machines they prefill 1.2–2× faster than the AVX2 ones
/// (`qmm_speed`, 16 tokens) and decode about as fast: one token is bound by reading the
/// weights (`prefetch.rs`), not by the arithmetic. (An earlier K-quant version measured no
/// faster on an AMD EPYC; re-measure there before relying on them.)
#[cfg(target_arch = "x86_64")]
fn avx512_kernels(ty: GgmlType) -> Option<Kernels> {
    use GgmlType::*;
    if !avx512::available() {
        return None;
    }
    let (dot, tile4, tile8): (DotFn, Tile4Fn, Tile8Fn) = match ty {
        Q4_0 => (avx512::dot_q4_0, avx512::tile4_q4_0, avx512::tile8_q4_0),
        Q4_1 => (avx512::dot_q4_1, avx512::tile4_q4_1, avx512::tile8_q4_1),
        Q5_0 => (avx512::dot_q5_0, avx512::tile4_q5_0, avx512::tile8_q5_0),
        Q5_1 => (avx512::dot_q5_1, avx512::tile4_q5_1, avx512::tile8_q5_1),
        Q8_0 => (avx512::dot_q8_0, avx512::tile4_q8_0, avx512::tile8_q8_0),
        Q4K => (
            avx512_k::dot_q4_k,
            avx512_k::tile4_q4_k,
            avx512_k::tile8_q4_k,
        ),
        Q5K => (
            avx512_k::dot_q5_k,
            avx512_k::tile4_q5_k,
            avx512_k::tile8_q5_k,
        ),
        Q6K => (
            avx512_k::dot_q6_k,
            avx512_k::tile4_q6_k,
            avx512_k::tile8_q6_k,
        ),
        _ => return None,
    };
    Some(Kernels::Q16(Q16Kernels {
        dot,
        rows2: None,
        tile4: Some(tile4),
        tile8: Some(tile8),
    }))
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernels(ty: GgmlType) -> Option<Kernels> {
    use GgmlType::*;
    use Kernels::F32 as F;
    if !avx2::available() {
        return None;
    }
    Some(match ty {
        Q4_1 => q16(avx2::dot_q4_1, avx2::tile4_q4_1),
        Q4_0 => q16(avx2::dot_q4_0, avx2::tile4_q4_0),
        Q8_0 => q16(avx2::dot_q8_0, avx2::tile4_q8_0),
        Q5_0 => q16(avx2::dot_q5_0, avx2::tile4_q5_0),
        Q5_1 => q16(avx2::dot_q5_1, avx2::tile4_q5_1),
        Q4K => q16(avx2_k::dot_q4_k, avx2_k::tile4_q4_k),
        Q5K => q16(avx2_k::dot_q5_k, avx2_k::tile4_q5_k),
        Q6K => q16(avx2_k::dot_q6_k, avx2_k::tile4_q6_k),
        F32 => F(avx2_float::dot_f32, Some(avx2_float::dot4_f32)),
        F16 => F(avx2_float::dot_f16, Some(avx2_float::dot4_f16)),
        BF16 => F(avx2_float::dot_bf16, Some(avx2_float::dot4_bf16)),
    })
}

/// Every SIMD kernel set this machine can run for `ty`, by instruction set: the fastest
/// (which the matmul takes) and the ones it shadows, which the tests check all the same.
fn simd_kernels(ty: GgmlType) -> Vec<(&'static str, Kernels)> {
    #[cfg(target_arch = "x86_64")]
    return [
        avx512_kernels(ty).map(|k| ("AVX-512", k)),
        avx2_kernels(ty).map(|k| ("AVX2", k)),
    ]
    .into_iter()
    .flatten()
    .collect();
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return vec![("simd128", simd128_kernels(ty))];
    #[allow(unreachable_code)]
    {
        let _ = ty;
        Vec::new()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn simd128_kernels(ty: GgmlType) -> Kernels {
    use GgmlType::*;
    use Kernels::F32 as F;
    // SmolLM2's types decode two rows at a time.
    let with_rows2 = |kernels: Kernels, rows2: Rows2Fn| match kernels {
        Kernels::Q16(k) => Kernels::Q16(Q16Kernels {
            rows2: Some(rows2),
            ..k
        }),
        float => float,
    };
    match ty {
        Q4_1 => with_rows2(
            q16(simd128::dot_q4_1, simd128::tile4_q4_1),
            simd128::rows2_q4_1,
        ),
        Q4_0 => q16(simd128::dot_q4_0, simd128::tile4_q4_0),
        Q8_0 => with_rows2(
            q16(simd128::dot_q8_0, simd128::tile4_q8_0),
            simd128::rows2_q8_0,
        ),
        Q5_0 => q16(simd128::dot_q5_0, simd128::tile4_q5_0),
        Q5_1 => q16(simd128::dot_q5_1, simd128::tile4_q5_1),
        Q4K => q16(simd128_k::dot_q4_k, simd128_k::tile4_q4_k),
        Q5K => q16(simd128_k::dot_q5_k, simd128_k::tile4_q5_k),
        Q6K => q16(simd128_k::dot_q6_k, simd128_k::tile4_q6_k),
        F32 => F(simd128_float::dot_f32, Some(simd128_float::dot4_f32)),
        F16 => F(simd128_float::dot_f16, Some(simd128_float::dot4_f16)),
        BF16 => F(simd128_float::dot_bf16, Some(simd128_float::dot4_bf16)),
    }
}

/// The plain-Rust kernels: one token at a time.
fn scalar_kernels(ty: GgmlType) -> Kernels {
    use GgmlType::*;
    use Kernels::F32 as F;
    let one = |dot: DotFn| {
        Kernels::Q16(Q16Kernels {
            dot,
            rows2: None,
            tile4: None,
            tile8: None,
        })
    };
    match ty {
        Q4_1 => one(scalar::dot_q4_1),
        Q4_0 => one(scalar::dot_q4_0),
        Q8_0 => one(scalar::dot_q8_0),
        Q5_0 => one(scalar::dot_q5_0),
        Q5_1 => one(scalar::dot_q5_1),
        Q4K => one(scalar::dot_q4_k),
        Q5K => one(scalar::dot_q5_k),
        Q6K => one(scalar::dot_q6_k),
        F32 => F(scalar::dot_f32, None),
        F16 => F(scalar::dot_f16, None),
        BF16 => F(scalar::dot_bf16, None),
    }
}

/// Whether `ty` is multiplied with f32 activations (F32, F16, BF16) rather than 16-bit ones.
pub fn takes_f32_activations(ty: GgmlType) -> bool {
    matches!(scalar_kernels(ty), Kernels::F32(..))
}

fn q16_kernel(kernels: Kernels, ty: GgmlType) -> DotFn {
    match kernels {
        Kernels::Q16(k) => k.dot,
        Kernels::F32(..) => panic!("{ty} takes f32 activations: use the *_f32 functions"),
    }
}

fn f32_kernel(kernels: Kernels, ty: GgmlType) -> FloatDotFn {
    match kernels {
        Kernels::F32(dot, _) => dot,
        Kernels::Q16(..) => panic!("{ty} takes 16-bit activations: use scalar_dot / fast_dot"),
    }
}

/// The plain-Rust kernel for a quantized `ty`, whatever the machine: the reference for the
/// SIMD ones.
pub fn scalar_dot(ty: GgmlType, row: &[u8], x: &Q16Activations, token: usize) -> f32 {
    q16_kernel(scalar_kernels(ty), ty)(row, x.row(token))
}

/// The dispatched (SIMD where available) kernel for one row of a quantized `ty` and one token.
pub fn fast_dot(ty: GgmlType, row: &[u8], x: &Q16Activations, token: usize) -> f32 {
    q16_kernel(kernels(ty), ty)(row, x.row(token))
}

/// [`scalar_dot`] for F32, F16 and BF16 rows, with f32 activations.
pub fn scalar_dot_f32(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    f32_kernel(scalar_kernels(ty), ty)(row, x)
}

/// [`fast_dot`] for F32, F16 and BF16 rows, with f32 activations.
pub fn fast_dot_f32(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    f32_kernel(kernels(ty), ty)(row, x)
}

/// Every SIMD kernel this machine has for a quantized `ty` (one-token, and the tiles that hold
/// `token`), by name, on one row and one token: the tests hold each to [`scalar_dot`], and
/// each tile to its instruction set's one-token kernel, including those that a faster
/// instruction set shadows here.
pub fn every_simd_dot(
    ty: GgmlType,
    row: &[u8],
    x: &Q16Activations,
    token: usize,
) -> Vec<(String, f32)> {
    // A tile needs the tile-major infos and values, which one token's activations leave out.
    let with_tiles;
    let x = if x.tile_blocks.is_empty() {
        with_tiles = Q16Activations {
            tile_blocks: tile::tile_blocks(x),
            tile_qs: tile::tile_qs(x),
            ..x.clone()
        };
        &with_tiles
    } else {
        x
    };
    let mut out = Vec::new();
    for (isa, kernels) in simd_kernels(ty) {
        if let Kernels::Q16(k) = kernels {
            out.push((isa.to_string(), (k.dot)(row, x.row(token))));
            if let Some(rows2) = k.rows2 {
                let y = rows2(&row.repeat(2), x.row(token));
                out.extend([0, 1].map(|i| (format!("{isa} 2 rows [{i}]"), y[i])));
            }
            if let Some(tile4) = k.tile4 {
                let first = token / 4 * 4;
                let y = tile4(row, &TokenTile::new(x, first));
                out.push((format!("{isa} ×4"), y[token - first]));
            }
            if let Some(tile8) = k.tile8 {
                let first = token / 8 * 8;
                let mut y = [[0.0; 8]];
                tile8(row, row.len(), &TokenTile::new(x, first), &mut y);
                let y = y[0];
                out.push((format!("{isa} ×8"), y[token - first]));
            }
        }
    }
    out
}

/// [`every_simd_dot`] for F32, F16 and BF16 rows, with f32 activations.
pub fn every_simd_dot_f32(ty: GgmlType, row: &[u8], x: &[f32]) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    for (isa, kernels) in simd_kernels(ty) {
        if let Kernels::F32(dot, dot4) = kernels {
            out.push((isa.to_string(), dot(row, x)));
            if let Some(dot4) = dot4 {
                out.extend((0..4).map(|i| (format!("{isa} ×4 [{i}]"), dot4(row, [x; 4])[i])));
            }
        }
    }
    out
}

/// `y (tokens × rows) = x (tokens × cols) · Wᵀ` for several matrices sharing one input, in one
/// parallel region (q/k/v, gate/up): the activations are quantized once, if any matrix is of a
/// quantized type.
pub fn matmul_many(x: &[f32], tokens: usize, weights: &[&QMatrix]) -> Vec<Vec<f32>> {
    let Some(first) = weights.first() else {
        return Vec::new();
    };
    let cols = first.cols;
    debug_assert!(weights.iter().all(|w| w.cols == cols));
    debug_assert_eq!(x.len(), tokens * cols);
    let acts = weights
        .iter()
        .any(|w| !takes_f32_activations(w.ty))
        .then(|| Q16Activations::quantize(x, cols));
    let acts = acts.as_ref();
    let kernels: Vec<Kernels> = weights.iter().map(|w| kernels(w.ty)).collect();
    for_each_rows(weights, tokens, |m, w, rows, out| {
        match (kernels[m], acts) {
            (Kernels::Q16(k), Some(acts)) => tile::rows_by_tiles(w, rows, acts, k, out),
            (Kernels::F32(dot, dot4), _) => {
                for r in rows {
                    let put = |t: usize, y: f32| out.set(t, r, y);
                    each_token(w.row(r), tokens, put, |t| &x[t * cols..][..cols], dot, dot4);
                }
            }
            (Kernels::Q16(..), None) => unreachable!("quantized above when any type needs it"),
        }
    })
}

/// One weight row against every token: four at a time where a four-token kernel exists, then
/// the one-token kernel. Two or three tokens left over go through the four-token kernel too,
/// the last one repeated: it gives each token what the one-token kernel would, to the bit, and
/// unpacks the row once instead of two or three times.
fn each_token<A>(
    row: &[u8],
    n: usize,
    mut put: impl FnMut(usize, f32),
    token: impl Fn(usize) -> A,
    dot: fn(&[u8], A) -> f32,
    dot4: Option<Four<A>>,
) {
    let mut t = 0;
    if let Some(dot4) = dot4 {
        while t + 2 <= n {
            let four = [0, 1, 2, 3].map(|i| token((t + i).min(n - 1)));
            let y = dot4(row, four);
            let here = (n - t).min(4);
            for (i, &y) in y[..here].iter().enumerate() {
                put(t + i, y);
            }
            t += here;
        }
    }
    for t in t..n {
        put(t, dot(row, token(t)));
    }
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
    for_each_rows(weights, tokens, |_, w, rows, out| {
        for r in rows {
            let row = crate::gguf::blocks::dequantize_to_vec(w.ty, w.row(r));
            for (t, x) in x.chunks_exact(cols).enumerate() {
                out.set(t, r, dot_f32(&row, x));
            }
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

/// `y = x · Wᵀ` for one matrix.
pub fn matmul(x: &[f32], tokens: usize, w: &QMatrix) -> Vec<f32> {
    matmul_many(x, tokens, &[w]).pop().unwrap_or_default()
}

/// The 6-bit scales and mins of a Q4_K or Q5_K block's 8 sub-blocks, from its 12 packed bytes
/// (ggml `get_scale_min_k4`): sub-blocks 0..4 in the low 6 bits of bytes 0..4 (scales) and
/// 4..8 (mins); sub-blocks 4..8 in the nibbles of bytes 8..12, their top 2 bits in the top
/// bits of bytes 0..8.
#[inline(always)]
fn k_scales(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = packed[j] & 63;
        mins[j] = packed[j + 4] & 63;
        scales[j + 4] = (packed[j + 8] & 0x0F) | ((packed[j] >> 6) << 4);
        mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (scales, mins)
}

fn f16_le(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}
