//! Small numerical routines on plain slices that several layers share: the RoPE angles both
//! backends rotate by, and picking and normalising the largest values of a row of logits.
//!
//! Nothing here knows about tensors, backends or models.

use std::cmp::Ordering;

/// (cos, sin) of the RoPE rotation per token and pair, computed as ggml does (θᵢ = pos·base^(-2i/d),
/// the powers by repeated f32 multiplication). Both backends use exactly these angles.
pub fn rope_angles(positions: &[u32], head_dim: usize, base: f32) -> Vec<[f32; 2]> {
    angles_of(positions.iter().map(|&p| p as f32), head_dim, base)
}

/// [`rope_angles`] for signed position shifts: turning a rotated key through `shift` more
/// positions (negative: back) multiplies it by these.
pub fn rope_shift_angles(shifts: &[i32], head_dim: usize, base: f32) -> Vec<[f32; 2]> {
    angles_of(shifts.iter().map(|&s| s as f32), head_dim, base)
}

fn angles_of(
    positions: impl ExactSizeIterator<Item = f32>,
    head_dim: usize,
    base: f32,
) -> Vec<[f32; 2]> {
    let half = head_dim / 2;
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let mut out = Vec::with_capacity(positions.len() * half);
    for pos in positions {
        let mut theta = pos;
        for _ in 0..half {
            out.push([theta.cos(), theta.sin()]);
            theta *= theta_scale;
        }
    }
    out
}

fn by_value_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest values with their indices, largest first (ties: lower index first), in
/// `total_cmp`'s order (so -0.0 below 0.0, and NaNs at the ends).
pub fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k <= KEPT_IN_ONE_PASS {
        return top_k_in_one_pass(values, k);
    }
    top_k_by_selection(values, k)
}

/// Up to this `k`, [`top_k`] keeps the best so far in one pass over the values: a sampler's
/// 40 of a 49,152-word vocabulary cost a comparison each, where a selection over all of
/// them (pairs copied, then partitioned) took about 1% of the page's decode.
const KEPT_IN_ONE_PASS: usize = 64;

fn top_k_in_one_pass(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (i, &v) in values.iter().enumerate() {
        // A value equal to the last kept one stays out: that one has the lower index.
        if best.len() == k && v.total_cmp(&best[k - 1].1) != Ordering::Greater {
            continue;
        }
        // After every kept value at least as large (all have lower indices).
        let at = best.partition_point(|&(_, b)| b.total_cmp(&v) != Ordering::Less);
        best.insert(at, (i as u32, v));
        best.truncate(k);
    }
    best
}

fn top_k_by_selection(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(k - 1, by_value_desc);
    all.truncate(k);
    all.sort_unstable_by(by_value_desc);
    all
}

/// The `k` highest logits of `row` after the repetition penalty on `penalized` ids (each id
/// once: positive logits divided by `penalty`, negative ones multiplied), as llama.cpp applies
/// it. The CPU twin of the WebGPU `select` kernels.
pub fn penalized_top_k(row: &[f32], k: usize, penalized: &[u32], penalty: f32) -> Vec<(u32, f32)> {
    if penalty == 1.0 {
        return top_k(row, k);
    }
    let mut row = row.to_vec();
    let mut seen = std::collections::HashSet::new();
    for &id in penalized {
        if let Some(l) = row.get_mut(id as usize) {
            if seen.insert(id) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
    top_k(&row, k)
}

/// log-softmax normaliser: log Σ exp(values).
pub fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = values.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Probabilities from logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(
            top_k(&[0.1, 3.0, -1.0, 3.0], 3),
            [(1, 3.0), (3, 3.0), (0, 0.1)]
        );
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        assert!(top_k(&[], 2).is_empty());
    }

    // The one-pass selection against the full one, on rows with many ties, zeros of both
    // signs and NaNs, for every k around the switch between them.
    #[test]
    fn top_k_in_one_pass_equals_the_full_selection() {
        let mut rng = crate::rng::SeededRng::new(9);
        for n in [0, 1, 7, 100, 3000] {
            let mut row: Vec<f32> = rng
                .vec_f32(n, 4.0)
                .iter()
                .map(|v| (v * 2.0).round() / 2.0)
                .collect();
            for (i, v) in row.iter_mut().enumerate() {
                match i % 97 {
                    3 => *v = -0.0,
                    5 => *v = 0.0,
                    11 => *v = f32::NAN,
                    13 => *v = -f32::NAN,
                    _ => {}
                }
            }
            for k in [
                0,
                1,
                2,
                5,
                40,
                KEPT_IN_ONE_PASS,
                KEPT_IN_ONE_PASS + 1,
                n + 3,
            ] {
                let (fast, full) = (top_k_in_one_pass(&row, k), top_k_by_selection(&row, k));
                let bits = |v: &[(u32, f32)]| -> Vec<(u32, u32)> {
                    v.iter().map(|&(i, x)| (i, x.to_bits())).collect()
                };
                assert_eq!(bits(&fast), bits(&full), "n {n}, k {k}");
            }
        }
    }

    #[test]
    fn penalty_demotes_each_seen_id_once() {
        // 2.0 / 2 = 1.0 (seen twice, penalised once), -1.0 · 2 = -2.0.
        let top = penalized_top_k(&[2.0, 1.5, -1.0], 3, &[0, 0, 2], 2.0);
        assert_eq!(top, [(1, 1.5), (0, 1.0), (2, -2.0)]);
    }
}
