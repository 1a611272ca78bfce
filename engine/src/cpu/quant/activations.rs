//! The activations' side of the quantized matmul: each token's values quantized to 16 bits per
//! block of 32, with each block's scale and sums, as the kernels read them.

use super::tile::{tile_blocks, TileBlock};
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
        };
        quantize_blocks(x, &mut out.qs, &mut out.block_info);
        if out.tokens > 1 {
            out.tile_blocks = tile_blocks(&out);
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
    for ((block, qs), info) in x.chunks_exact(32).zip(qs.chunks_exact_mut(32)).zip(info) {
        *info = quantize_block(block, qs);
    }
}

/// One block of 32: scale = max|x| / 32767, values rounded to the nearest, ties to even.
fn quantize_block(block: &[f32], qs: &mut [i16]) -> BlockInfo {
    let amax = block.iter().fold(0f32, |m, v| float::larger(m, v.abs()));
    let scale = amax / 32767.0;
    let inverse = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(block) {
        *q = round_ties_even(v * inverse) as i16;
    }
    BlockInfo {
        scale,
        sum: block.iter().sum(),
    }
}

/// Rounds to the nearest integer, ties to even, for |v| < 2²²: adding and removing 1.5·2²³
/// leaves no fraction bits. (`f32::round_ties_even` is a libm call without SSE4.1.)
fn round_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}
