//! Speed of the browser's CPU kernels, in Chromium: the wasm twin of `cli/examples/qmm_speed.rs`
//! and `attention_speed.rs`. A benchmark, not a test: each function prints numbers and asserts
//! nothing, so all are `#[ignore]`d and run only when asked for, one kernel or all:
//!
//! ```text
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=300 \
//!   cargo test --release --target wasm32-unknown-unknown -p glassbox-engine --test wasm_speed \
//!   -- --include-ignored --nocapture [q4_1|q8_0|q5_0|q4_k|q6_k|attention|attention_decode]
//! ```
//!
//! Matmuls print GMAC/s (multiply-adds per second) for one token (decode) and for 64 (prefill,
//! the tiles), with the shapes of the bundled models' matrices. On a machine shared with others
//! a kernel's speed drifts by tens of percent from one second to the next, so each number is
//! the best of 10 ms batches over a second (interference only lowers batches), and two builds
//! are compared by running their test binaries in turn, several rounds.
#![cfg(target_arch = "wasm32")]

use engine::backend::{AttentionShape, Mask};
use engine::cpu::attention::attend;
use engine::cpu::quant::{matmul, QMatrix};
use engine::gguf::blocks;
use engine::gguf::GgmlType;
use engine::testing::{random_prompt_attention, SeededRng};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// `performance.now()` in milliseconds (microseconds apart, where `Date.now()` has whole ms).
fn now() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .expect("a global `performance`");
    let now: js_sys::Function = js_sys::Reflect::get(&performance, &"now".into())
        .expect("performance.now")
        .dyn_into()
        .expect("performance.now is a function");
    now.call0(&performance)
        .expect("performance.now()")
        .as_f64()
        .expect("a number")
}

/// Calls `run` in batches of at least 10 ms for a second; the best batch's calls per second.
fn best_rate(mut run: impl FnMut()) -> f64 {
    run();
    let start = now();
    let mut best = 0.0f64;
    while now() - start < 1000.0 {
        let batch = now();
        let mut calls = 0;
        while now() - batch < 10.0 {
            run();
            calls += 1;
        }
        best = best.max(calls as f64 / ((now() - batch) / 1000.0));
    }
    best
}

/// A ROWS × COLS matrix of `ty` (64 random rows, repeated) by 1 and by 64 tokens.
fn matmul_speed(ty: GgmlType, rows: usize, cols: usize) {
    let mut rng = SeededRng::new(1);
    let some_rows = blocks::quantize(ty, &rng.vec_f32(64 * cols, 1.0));
    let data = some_rows.repeat(rows / 64);
    let w = QMatrix::new(ty, rows, cols, data).expect("matrix");
    let mut gmacs = |tokens: usize| {
        let x = rng.vec_f32(tokens * cols, 1.0);
        let calls = best_rate(|| {
            std::hint::black_box(matmul(&x, tokens, &w));
        });
        (rows * cols * tokens) as f64 * calls / 1e9
    };
    let (one, tile) = (gmacs(1), gmacs(64));
    console_log!("{ty} {rows}x{cols}: 1 token {one:.2} GMAC/s, 64 tokens {tile:.2} GMAC/s");
}

/// SmolLM2's output matrix (tied to its embedding), at an eighth of its rows.
#[wasm_bindgen_test]
#[ignore]
fn q8_0() {
    matmul_speed(GgmlType::Q8_0, 6144, 576);
}

/// SmolLM2's down projection, eight times over.
#[wasm_bindgen_test]
#[ignore]
fn q4_1() {
    matmul_speed(GgmlType::Q4_1, 4608, 1536);
}

/// Gemma 3's gate and up projections.
#[wasm_bindgen_test]
#[ignore]
fn q5_0() {
    matmul_speed(GgmlType::Q5_0, 2048, 640);
}

/// Gemma 3's down projection.
#[wasm_bindgen_test]
#[ignore]
fn q4_k() {
    matmul_speed(GgmlType::Q4K, 640, 2048);
}

/// Gemma 3's down projection in the layers that keep it in Q6_K.
#[wasm_bindgen_test]
#[ignore]
fn q6_k() {
    matmul_speed(GgmlType::Q6K, 640, 2048);
}

/// SmolLM2's attention: 9 heads on 3 key groups of 64.
const SMOLLM2_ATTENTION: AttentionShape = AttentionShape {
    n_heads: 9,
    n_kv_heads: 3,
    head_dim: 64,
};

/// One layer of SmolLM2's attention over a 420-token prompt (9 heads on 3 key groups of 64),
/// causal: milliseconds, best and median of 9.
#[wasm_bindgen_test]
#[ignore]
fn attention() {
    let t = 420;
    let (cache, q) = random_prompt_attention(SMOLLM2_ATTENTION, t, 3);
    let run = || std::hint::black_box(attend(&q, t, &cache, &Mask::Causal, false));
    run();
    let mut ms: Vec<f64> = (0..9)
        .map(|_| {
            let start = now();
            run();
            now() - start
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    console_log!(
        "attention, {t} tokens, 9 heads on 3 groups of 64: best {:.1} ms, median {:.1} ms",
        ms[0],
        ms[4]
    );
}

/// One decoding step of one layer of SmolLM2's attention after a 420-token prompt: the newest
/// query (9 heads on 3 key groups of 64) over 421 keys; microseconds, best of the batches.
#[wasm_bindgen_test]
#[ignore]
fn attention_decode() {
    let t = 421;
    let (cache, q) = random_prompt_attention(SMOLLM2_ATTENTION, t, 3);
    let newest = &q[(t - 1) * 9 * 64..];
    let calls = best_rate(|| {
        std::hint::black_box(attend(newest, 1, &cache, &Mask::Causal, false));
    });
    console_log!(
        "attention decode, 1 query over {t} keys, 9 heads on 3 groups of 64: {:.1} µs",
        1e6 / calls
    );
}
