//! Speed of the CPU attention of a prompt: `attention_speed [TOKENS] [THREADS] [HEADS]
//! [KV_HEADS] [HEAD_DIM]`.
//!
//! Attends TOKENS queries (420 by default) over their own keys under a causal mask, with
//! Gemma 3 270M's heads (4 query heads on 1 key group of 256) unless told otherwise, through
//! the CPU backend's own entry point; prints the best and median milliseconds of 15 runs and
//! the multiply-adds per second (scores and weighted values, causal half only).
use engine::backend::{AttentionShape, Mask};
use engine::cpu::attention::attend;
use engine::cpu::pool;
use engine::testing::random_prompt_attention;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (t, threads) = (arg(1, 420), arg(2, 1));
    let shape = AttentionShape {
        n_heads: arg(3, 4),
        n_kv_heads: arg(4, 1),
        head_dim: arg(5, 256),
    };
    pool::set_threads(threads);
    let (cache, q) = random_prompt_attention(shape, t, 3);
    let run = || std::hint::black_box(attend(&q, t, &cache, &Mask::Causal, false));
    run();
    let mut ms: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    // Each head: t(t+1)/2 scores and as many weighted values, of head_dim multiply-adds each.
    let macs = 2.0 * (t * (t + 1) / 2 * shape.n_heads * shape.head_dim) as f64;
    println!(
        "{t} tokens, {threads} thread(s), {} heads on {} groups of {}: best {:.2} ms, median \
         {:.2} ms, {:.2} GMAC/s (best)",
        shape.n_heads,
        shape.n_kv_heads,
        shape.head_dim,
        ms[0],
        ms[7],
        macs / ms[0] / 1e6
    );
}
