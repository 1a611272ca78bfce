//! Choosing the next token from logits: greedy, or llama.cpp's chain of repetition penalty →
//! top-k → top-p → temperature → a seeded draw. The same seed gives the same text.

use crate::backend::Selection;
use crate::numerics::penalized_top_k;
use crate::rng::SeededRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no limit.
    pub top_k: usize,
    /// 1 = no limit.
    pub top_p: f32,
    /// 1 = no penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Sensible chat defaults for a small model (close to llama.cpp's).
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: 0,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: SeededRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = SeededRng::new(params.seed);
        Sampler { params, rng }
    }

    /// The candidates this sampler needs from the backend: the top-k after the repetition
    /// penalty (greedy needs one; no top-k limit needs the whole vocabulary).
    pub fn selection(&self, history: &[u32], vocab_size: usize) -> Selection {
        let p = &self.params;
        let k = if p.is_greedy() {
            1
        } else if p.top_k > 0 {
            p.top_k
        } else {
            vocab_size
        };
        let penalized = if p.repeat_penalty != 1.0 && p.repeat_last_n > 0 {
            history[history.len().saturating_sub(p.repeat_last_n)..].to_vec()
        } else {
            Vec::new()
        };
        Selection {
            k,
            penalized,
            penalty: p.repeat_penalty,
        }
    }

    /// Draws from candidates (id, penalised logit), best first, as [`Sampler::selection`]
    /// asked for: temperature, top-p, then a seeded draw. Same result as [`Sampler::sample`].
    pub fn pick(&mut self, candidates: &[(u32, f32)]) -> u32 {
        let p = &self.params;
        let Some(&(best, _)) = candidates.first() else {
            return 0;
        };
        if p.is_greedy() {
            return best;
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates
            .iter()
            .map(|&(_, l)| ((l - max) / p.temperature.max(1e-6)).exp())
            .collect();
        let mut kept = candidates.len();
        if p.top_p < 1.0 {
            let total: f32 = probs.iter().sum();
            let mut cumulative = 0.0;
            for (i, pr) in probs.iter().enumerate() {
                cumulative += pr / total;
                if cumulative >= p.top_p {
                    kept = i + 1;
                    break;
                }
            }
            probs.truncate(kept);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.next_f32() * total;
        for (&(id, _), pr) in candidates.iter().zip(&probs) {
            if r < *pr {
                return id;
            }
            r -= pr;
        }
        candidates[kept - 1].0
    }

    /// The next token given all `logits` and the tokens so far (for the repetition penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let selection = self.selection(history, logits.len());
        let candidates =
            penalized_top_k(logits, selection.k, &selection.penalized, selection.penalty);
        self.pick(&candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[]), 1);
    }

    use crate::numerics::top_k;

    #[test]
    fn same_seed_same_draws_and_top_k_bounds_them() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 5,
            top_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: 9,
        };
        let allowed: Vec<u32> = top_k(&logits, 5).into_iter().map(|(i, _)| i).collect();
        let draws = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        let a = draws(&params);
        assert_eq!(a, draws(&params));
        assert!(a.iter().all(|id| allowed.contains(id)));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            repeat_last_n: 8,
            ..SamplingParams::greedy()
        });
        // Token 0 would win (2.0) but was just said: 2.0 / 2 = 1.0 < 1.5.
        assert_eq!(s.sample(&[2.0, 1.5, -3.0], &[0]), 1);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        let logits = [10.0, 9.9, 0.0, -5.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: 1,
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), 0);
        }
    }
}
