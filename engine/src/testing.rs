//! Helpers shared by the tests (native and wasm) and the benchmarks: a seeded random source,
//! a comparison that names the first bad index, and a prompt's attention inputs.

use crate::backend::AttentionShape;
use crate::cpu::attention::KvCache;
pub use crate::rng::SeededRng;

/// A prompt's attention inputs, for the attention benchmarks (native and wasm): a KV cache of
/// `tokens` random keys and values of `shape`, and the prompt's random queries
/// (`(tokens, n_heads, head_dim)`), from `seed`.
pub fn random_prompt_attention(
    shape: AttentionShape,
    tokens: usize,
    seed: u64,
) -> (KvCache, Vec<f32>) {
    let mut rng = SeededRng::new(seed);
    let kv = shape.n_kv_heads * shape.head_dim;
    let mut cache = KvCache::new(shape, tokens).expect("a cache of the prompt's length");
    cache.append(
        &rng.vec_f32(tokens * kv, 1.0),
        &rng.vec_f32(tokens * kv, 1.0),
        tokens,
    );
    let queries = rng.vec_f32(tokens * shape.n_heads * shape.head_dim, 1.0);
    (cache, queries)
}

/// Checks `|got - want| <= abs + rel * |want|` element-wise; the error names the first bad
/// index, both values and how many elements are off.
pub fn check_close(
    what: &str,
    got: &[f32],
    want: &[f32],
    abs: f32,
    rel: f32,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} != expected {}",
            got.len(),
            want.len()
        ));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| {
            let (g, w) = (got[i], want[i]);
            {
                // NaN compares as None and fails too.
                let limit = abs + rel * w.abs();
                !matches!(
                    (g - w).abs().partial_cmp(&limit),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                )
            }
        })
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{what}: {} of {} elements differ; first at index {i}: got {}, expected {} (tolerance abs {abs}, rel {rel})",
            bad.len(),
            got.len(),
            got[i],
            want[i]
        )),
    }
}
