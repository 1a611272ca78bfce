//! Helpers shared by the tests (native and wasm) and the benchmarks: a seeded random source and
//! a comparison that names the first bad index.

pub use crate::rng::SeededRng;

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
