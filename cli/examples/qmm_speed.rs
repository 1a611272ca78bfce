//! Speed of one quantized matrix × vector product: `qmm_speed [ROWS] [THREADS]`.
use engine::cpu::pool;
use engine::cpu::quant::{matmul, QMatrix};
use engine::gguf::blocks;
use engine::gguf::GgmlType;
use engine::testing::SeededRng;
use std::time::Instant;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (rows, cols, threads) = (arg(1, 12288), 576, arg(2, 2));
    pool::set_threads(threads);
    let mut rng = SeededRng::new(1);
    let w = rng.vec_f32(rows * cols, 1.0);
    let m = QMatrix::new(GgmlType::Q4_1, rows, cols, blocks::quantize_q4_1(&w)).unwrap();
    let x = rng.vec_f32(cols, 1.0);
    let n = 300;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(matmul(&x, 1, &m));
    }
    let s = t.elapsed().as_secs_f64() / n as f64;
    let blocks = (rows * cols / 32) as f64;
    println!(
        "{rows}x{cols} Q4_1, {threads} threads: {:.1} µs per matvec, {:.2} GB/s, {:.1} thread-cycles per block at 2.5 GHz",
        s * 1e6,
        m.data.len() as f64 / s / 1e9,
        s * 2.5e9 * threads as f64 / blocks
    );
}
