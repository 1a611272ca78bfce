//! Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers"):
//! how much of each token's final representation flows from each input token, for the chat
//! model's attention and the vision models' token mixing alike.

use crate::models::vision::Classification;

/// Attention rollout of per-layer head-averaged attention `layers[l]` (`(t, t)` each): the
/// residual connection is modelled as `Â = ½A + ½I` (rows renormalised), and the layers are
/// chained from the first: `R = Â_L · … · Â_1`.
pub fn rollout(layers: &[Vec<f32>], t: usize) -> Vec<f32> {
    let mut result: Vec<f32> = (0..t * t)
        .map(|i| if i / t == i % t { 1.0 } else { 0.0 })
        .collect();
    for attention in layers {
        let mut mixed: Vec<f64> = attention.iter().map(|&a| 0.5 * a as f64).collect();
        for i in 0..t {
            mixed[i * t + i] += 0.5;
            let sum: f64 = mixed[i * t..(i + 1) * t].iter().sum();
            if sum > 0.0 {
                mixed[i * t..(i + 1) * t].iter_mut().for_each(|m| *m /= sum);
            }
        }
        // result ← mixed · result
        let mut next = vec![0f64; t * t];
        for i in 0..t {
            for k in 0..t {
                let m = mixed[i * t + k];
                if m == 0.0 {
                    continue;
                }
                for j in 0..t {
                    next[i * t + j] += m * result[k * t + j] as f64;
                }
            }
        }
        result = next.into_iter().map(|v| v as f32).collect();
    }
    result
}

/// A vision model's rollout over every block of `classification.mixing` (captured with
/// `capture`), from the head-averaged mixing matrices: `(t, t)`.
pub fn vision_rollout(classification: &Classification, heads: usize, t: usize) -> Vec<f32> {
    let layers: Vec<Vec<f32>> = (0..classification.mixing.len())
        .map(|l| classification.head_mean(l, heads))
        .collect();
    rollout(&layers, t)
}

#[cfg(test)]
mod tests {
    use super::rollout;

    #[test]
    fn rollout_of_two_layers_matches_a_hand_computation() {
        // Two tokens, causal. Layer 1: token 1 attends 0.5 / 0.5; layer 2: token 1 attends
        // 0.2 / 0.8. With the residual: Â₁ = [[1, 0], [0.25, 0.75]], Â₂ = [[1, 0], [0.1, 0.9]].
        // R = Â₂·Â₁ = [[1, 0], [0.1 + 0.9·0.25, 0.9·0.75]] = [[1, 0], [0.325, 0.675]].
        let layers = vec![vec![1.0, 0.0, 0.5, 0.5], vec![1.0, 0.0, 0.2, 0.8]];
        let r = rollout(&layers, 2);
        let want = [1.0, 0.0, 0.325, 0.675];
        for (got, want) in r.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn rollout_with_no_layers_is_the_identity() {
        assert_eq!(rollout(&[], 2), [1.0, 0.0, 0.0, 1.0]);
    }
}
