//! The split of a matmul's rows into parallel jobs on [`crate::cpu::pool`].

use super::QMatrix;
use std::ops::Range;

/// Multiply-adds below which a matmul is not worth splitting across threads.
const SERIAL_WORK: usize = 1 << 18;
/// Weights below which a matmul runs on one thread whatever the number of tokens: the vision
/// models' layers (at most 256 × 64 weights, a few microseconds per token). On a busy 2-core
/// machine this made `eval-vision` ~1.6× faster per ViR image and ~10% per ViT image than
/// splitting them; the chat models' smallest matmul has over half a million weights.
const SERIAL_WEIGHTS: usize = 1 << 16;

fn is_small(n_weights: usize, tokens: usize) -> bool {
    n_weights < SERIAL_WEIGHTS || n_weights * tokens < SERIAL_WORK
}

/// One job's rows of one matrix's output `(tokens × rows)`, row-major: the job writes only
/// the columns of its own rows, so jobs never write the same place.
pub(super) struct RowsOut<'a> {
    base: *mut f32,
    /// The matrix's rows: the output's row length.
    stride: usize,
    tokens: usize,
    rows: Range<usize>,
    _output: std::marker::PhantomData<&'a mut [f32]>,
}

impl RowsOut<'_> {
    /// Writes the output of `row` (one of the job's) for `token`.
    #[inline(always)]
    pub(super) fn set(&mut self, token: usize, row: usize, value: f32) {
        assert!(token < self.tokens && self.rows.contains(&row));
        // SAFETY: inside the output (token < tokens, row < stride), and in a column that only
        // this job writes (its rows); the output outlives the parallel run.
        unsafe { *self.base.add(token * self.stride + row) = value };
    }

    /// Writes a tile's outputs for a run of the job's rows: `ys[k][i]` is row `rows.start + k`
    /// for token `first + i`, for the first `tokens` of each tile. One bounds check for them all.
    #[inline(always)]
    pub(super) fn set_tiles<const T: usize>(
        &mut self,
        first: usize,
        tokens: usize,
        rows: Range<usize>,
        ys: &[[f32; T]],
    ) {
        assert!(tokens <= T && first + tokens <= self.tokens && ys.len() == rows.len());
        assert!(rows.start >= self.rows.start && rows.end <= self.rows.end);
        // Token by token, so that each token's row of the output is written in one run of
        // addresses (row by row, every write went to another of the tokens' rows).
        for i in 0..tokens {
            // SAFETY: checked above: inside the output, in the job's own columns.
            let out = unsafe { self.base.add((first + i) * self.stride + rows.start) };
            for (k, y) in ys.iter().enumerate() {
                // SAFETY: as above (`k < rows.len()`).
                unsafe { *out.add(k) = y[i] };
            }
        }
    }
}

/// Runs `job_kernel(index, matrix, rows, out)` over every matrix's rows, split into chunks of rows
/// that run in parallel natively; returns each matrix's `(tokens × rows)` output.
pub(super) fn for_each_rows(
    weights: &[&QMatrix],
    tokens: usize,
    job_kernel: impl Fn(usize, &QMatrix, Range<usize>, &mut RowsOut<'_>) + Sync,
) -> Vec<Vec<f32>> {
    let total_rows: usize = weights.iter().map(|w| w.rows).sum();
    let chunk = chunk_rows(total_rows, tokens);
    let mut outputs: Vec<Vec<f32>> = weights.iter().map(|w| vec![0.0; w.rows * tokens]).collect();
    let bases: Vec<OutputBase> = outputs
        .iter_mut()
        .map(|y| OutputBase(y.as_mut_ptr()))
        .collect();
    let jobs: Vec<(usize, Range<usize>)> = weights
        .iter()
        .enumerate()
        .flat_map(|(m, w)| {
            (0..w.rows)
                .step_by(chunk)
                .map(move |r| (m, r..(r + chunk).min(w.rows)))
        })
        .collect();
    let run = |job: usize| {
        let (m, ref rows) = jobs[job];
        let mut out = RowsOut {
            base: bases[m].0,
            stride: weights[m].rows,
            tokens,
            rows: rows.clone(),
            _output: std::marker::PhantomData,
        };
        job_kernel(m, weights[m], rows.clone(), &mut out);
    };
    // Small products run on the calling thread: the pool's start and its spinning workers
    // cost about as much as the work.
    if is_small(total_rows * weights.first().map_or(0, |w| w.cols), tokens) {
        (0..jobs.len()).for_each(run);
    } else {
        crate::cpu::pool::global().run(jobs.len(), &run);
    }
    outputs
}

/// An output buffer's start, shared by the jobs that write its disjoint columns.
struct OutputBase(*mut f32);
// SAFETY: each job writes only its own rows' columns (`RowsOut`); the buffers outlive the run.
unsafe impl Sync for OutputBase {}

/// Rows per parallel job: enough jobs to balance threads, few enough to keep overhead low.
fn chunk_rows(total_rows: usize, tokens: usize) -> usize {
    let threads = worker_threads();
    let jobs = if tokens == 1 {
        threads * 4
    } else {
        threads * 8
    };
    total_rows.div_ceil(jobs).clamp(16, 4096)
}

fn worker_threads() -> usize {
    crate::cpu::pool::global().threads()
}
