//! Activation patching (causal tracing, Meng et al. 2022, "Locating and Editing Factual
//! Associations in GPT"): run a corrupted prompt with one residual-stream state taken from a
//! clean prompt, for every (layer, token), and see how much of the clean answer comes back.
//!
//! The sweep reuses the corrupted run's KV cache: patching token `t` changes nothing before
//! `t`, so each patched run feeds only tokens `t..` (the session keeps the rest, see
//! [`crate::runtime::Session`]), `layers · Σ (n − t)` tokens in all instead of `layers · n²`.

use crate::error::{Error, Result};
use crate::models::interventions::{Interventions, ResidualPatch};
use crate::models::pass::Activations;
use crate::models::taps::Taps;
use crate::numerics::{log_sum_exp, top_k};
use crate::runtime::{Engine, Feed};
use serde::{Deserialize, Serialize};

/// What a sweep found. `effect[l][t]`: the log-prob of `target` in the corrupted run with the
/// residual after block `l` at token `t` replaced by the clean run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchingSweep {
    pub clean_ids: Vec<u32>,
    pub corrupt_ids: Vec<u32>,
    /// The clean run's most likely next token.
    pub target: u32,
    pub clean_logprob: f32,
    pub corrupt_logprob: f32,
    pub effect: Vec<Vec<f32>>,
}

/// How far a sweep has got: patched runs done of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepProgress {
    pub done: usize,
    pub total: usize,
}

/// Runs the sweep, every run with the backend's fastest matrix products
/// ([`Activations::Fastest`]). `progress` hears after each patched run and returns false to stop (the
/// sweep then ends with [`Error::Cancelled`]).
pub async fn patching_sweep(
    engine: &Engine,
    clean_ids: &[u32],
    corrupt_ids: &[u32],
    mut progress: impl FnMut(SweepProgress) -> bool,
) -> Result<PatchingSweep> {
    let n = clean_ids.len();
    if n == 0 || corrupt_ids.len() != n {
        return Err(Error::InvalidRequest(format!(
            "patching needs two prompts of the same number of tokens: the clean one has {n}, \
             the corrupted one {}",
            corrupt_ids.len()
        )));
    }
    let layers = engine.config().n_layers;
    let d = engine.config().d_model;
    let mut session = engine.session(n)?;
    // Every run in one precision, so that a patch that changes nothing gives the corrupted
    // run's numbers to the bit; the fastest, as a sweep is `layers · n` runs.
    let precision = Activations::Fastest;

    // The clean run: its answer, and its residual stream after every block.
    let residual_taps = Taps {
        residual: true,
        ..Taps::default()
    };
    let clean = session
        .feed(
            Feed::sequence(clean_ids)
                .taps(residual_taps)
                .activations(precision),
        )
        .await?;
    let target = top_k(&clean.logits, 1)[0].0;
    let logprob = |logits: &[f32]| logits[target as usize] - log_sum_exp(logits);
    let clean_logprob = logprob(&clean.logits);
    let clean_residual = clean.captured.residual; // layers × (n, d)

    let corrupt = session
        .feed(Feed::sequence(corrupt_ids).activations(precision))
        .await?;
    let corrupt_logprob = logprob(&corrupt.logits);

    let total = layers * n;
    let mut effect = vec![vec![0.0; n]; layers];
    for token in 0..n {
        for (layer, row) in effect.iter_mut().enumerate() {
            let patch = Interventions {
                patches: vec![ResidualPatch {
                    layer,
                    token,
                    values: clean_residual[layer][token * d..(token + 1) * d].to_vec(),
                }],
                ..Interventions::default()
            };
            let feed = Feed::sequence(corrupt_ids)
                .interventions(&patch)
                .activations(precision);
            let fed = session.feed(feed).await?;
            row[token] = logprob(&fed.logits);
            let done = token * layers + layer + 1;
            if !progress(SweepProgress { done, total }) {
                return Err(Error::Cancelled);
            }
        }
    }
    Ok(PatchingSweep {
        clean_ids: clean_ids.to_vec(),
        corrupt_ids: corrupt_ids.to_vec(),
        target,
        clean_logprob,
        corrupt_logprob,
        effect,
    })
}
