//! The split of a matmul's rows into parallel jobs (natively on [`crate::cpu::pool`]; wasm runs
//! on the worker's one thread).

use super::QMatrix;

/// Multiply-adds below which a matmul is not worth splitting across threads.
#[cfg(not(target_arch = "wasm32"))]
const SERIAL_WORK: usize = 1 << 18;
/// Weights below which a matmul runs on one thread whatever the number of tokens: the vision
/// models' layers (at most 256 × 64 weights, a few microseconds per token). On a busy 2-core
/// machine this made `eval-vision` ~1.6× faster per ViR image and ~10% per ViT image than
/// splitting them; the chat models' smallest matmul has over half a million weights.
#[cfg(not(target_arch = "wasm32"))]
const SERIAL_WEIGHTS: usize = 1 << 16;

#[cfg(not(target_arch = "wasm32"))]
fn is_small(n_weights: usize, tokens: usize) -> bool {
    n_weights < SERIAL_WEIGHTS || n_weights * tokens < SERIAL_WORK
}

/// Runs `row_kernel(matrix, row, out)` for every row of every matrix, where `out` receives that
/// row's output for each token; splits the rows into parallel jobs natively and returns each
/// matrix's `(tokens × rows)` output.
pub(super) fn for_each_row(
    weights: &[&QMatrix],
    tokens: usize,
    row_kernel: impl Fn(&QMatrix, usize, &mut [f32]) + Sync,
) -> Vec<Vec<f32>> {
    // Work items: chunks of rows of one matrix. Rows are written transposed (rows × tokens) so
    // each chunk owns a contiguous slice, then transposed back.
    let total_rows: usize = weights.iter().map(|w| w.rows).sum();
    let chunk_rows = chunk_rows(total_rows, tokens);
    let mut transposed: Vec<Vec<f32>> =
        weights.iter().map(|w| vec![0.0; w.rows * tokens]).collect();
    let mut jobs: Vec<(&QMatrix, usize, OutputSlice)> = Vec::new();
    for (w, out) in weights.iter().zip(transposed.iter_mut()) {
        for (i, chunk) in out.chunks_mut(chunk_rows * tokens).enumerate() {
            jobs.push((
                w,
                i * chunk_rows,
                OutputSlice(chunk.as_mut_ptr(), chunk.len()),
            ));
        }
    }
    let run = |job: usize| {
        let (w, first_row, ref out) = jobs[job];
        // SAFETY: every job owns a disjoint chunk of `transposed`, which outlives the run.
        let out = unsafe { std::slice::from_raw_parts_mut(out.0, out.1) };
        for (i, row_out) in out.chunks_mut(tokens).enumerate() {
            row_kernel(w, first_row + i, row_out);
        }
    };
    // Small products run on the calling thread: the pool's start and its spinning workers
    // cost about as much as the work.
    #[cfg(not(target_arch = "wasm32"))]
    if is_small(total_rows * weights.first().map_or(0, |w| w.cols), tokens) {
        (0..jobs.len()).for_each(run);
    } else {
        crate::cpu::pool::global().run(jobs.len(), &run);
    }
    #[cfg(target_arch = "wasm32")]
    (0..jobs.len()).for_each(run);

    if tokens == 1 {
        return transposed;
    }
    weights
        .iter()
        .zip(transposed)
        .map(|(w, t)| {
            let mut y = vec![0.0; tokens * w.rows];
            for r in 0..w.rows {
                for j in 0..tokens {
                    y[j * w.rows + r] = t[r * tokens + j];
                }
            }
            y
        })
        .collect()
}

/// One job's part of an output buffer.
struct OutputSlice(*mut f32, usize);
// SAFETY: each job writes only its own slice; the buffers outlive the parallel run.
unsafe impl Sync for OutputSlice {}

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

#[cfg(not(target_arch = "wasm32"))]
fn worker_threads() -> usize {
    crate::cpu::pool::global().threads()
}

#[cfg(target_arch = "wasm32")]
fn worker_threads() -> usize {
    1
}
