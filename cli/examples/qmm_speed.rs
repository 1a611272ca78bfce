//! Speed of the CPU matmul for one weight type:
//! `qmm_speed [TYPE|all] [ROWS] [THREADS] [COLS] [TOKENS]`.
//!
//! Multiplies a ROWS × COLS matrix of TYPE (Q4_1, 4096 × 1536 by default; 1536 columns make
//! whole blocks of every type) by 1 token (decode) and by TOKENS (16: prefill) through the CPU
//! backend's own entry point, and prints GMAC/s (multiply-adds per second) for each.
use engine::cpu::matrix::{self, CpuMatrix};
use engine::cpu::pool;
use engine::gguf::blocks;
use engine::gguf::{GgmlType, TensorInfo};
use engine::tensor::Tensor;
use engine::testing::SeededRng;
use std::time::Instant;

const TYPES: [GgmlType; 11] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let which = args.get(1).map_or("Q4_1", String::as_str);
    let types: Vec<GgmlType> = if which.eq_ignore_ascii_case("all") {
        TYPES.to_vec()
    } else {
        match TYPES.iter().find(|t| t.name().eq_ignore_ascii_case(which)) {
            Some(&t) => vec![t],
            None => {
                eprintln!("unknown type {which}; one of: all, {TYPES:?}");
                std::process::exit(2);
            }
        }
    };
    let (rows, threads, cols, prefill) = (arg(2, 4096), arg(3, 2), arg(4, 1536), arg(5, 16));
    pool::set_threads(threads);
    // A library's matmul gets the same number of threads (candle reads these variables when
    // its pools start).
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let mut rng = SeededRng::new(1);
    let values = rng.vec_f32(rows * cols, 1.0);
    println!("{rows}x{cols}, {threads} threads: GMAC/s");
    for ty in types {
        let bytes = blocks::quantize(ty, &values);
        let info = TensorInfo {
            name: "w".to_string(),
            dims: vec![cols as u64, rows as u64],
            ggml_type: ty,
            offset: 0,
            n_bytes: bytes.len() as u64,
        };
        let w = CpuMatrix::upload(&info, bytes).expect("upload");
        let mut line = format!("{:>5}", ty.name());
        for tokens in [1, prefill] {
            let x = Tensor::new(rng.vec_f32(tokens * cols, 1.0), tokens, cols).unwrap();
            let run = || std::hint::black_box(matrix::matmul(&x, &[&w], false).unwrap());
            run();
            // About a quarter of a second per measurement.
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed().as_secs_f64() < 0.25 {
                run();
                n += 1;
            }
            let s = start.elapsed().as_secs_f64() / n as f64;
            let gmacs = (rows * cols * tokens) as f64 / s / 1e9;
            line += &format!(
                "  {tokens:>2} token{}: {gmacs:6.2}",
                if tokens > 1 { "s" } else { " " }
            );
        }
        println!("{line}");
    }
}
