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
use crate::runtime::{Engine, EngineSession, Feed};
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
/// ([`Activations::Fastest`]). `progress` hears after each patched run and returns false to
/// stop (the sweep then ends with [`Error::Cancelled`]).
pub async fn patching_sweep(
    engine: &Engine,
    clean_ids: &[u32],
    corrupt_ids: &[u32],
    mut progress: impl FnMut(SweepProgress) -> bool,
) -> Result<PatchingSweep> {
    let mut run = PatchingRun::start(engine, clean_ids, corrupt_ids).await?;
    while run.step().await? {
        if !progress(run.progress()) {
            return Err(Error::Cancelled);
        }
    }
    Ok(run.finish())
}

/// A sweep run one patched run at a time ([`PatchingRun::step`]), for callers that must do
/// something between runs (the page's worker yields to its event loop there, to hear Stop).
pub struct PatchingRun {
    session: EngineSession,
    clean_ids: Vec<u32>,
    corrupt_ids: Vec<u32>,
    target: u32,
    clean_logprob: f32,
    corrupt_logprob: f32,
    /// Per layer, `(n, d)`: the clean run's residual stream after that block.
    clean_residual: Vec<Vec<f32>>,
    effect: Vec<Vec<f32>>,
    done: usize,
}

/// Every run in one precision, so that a patch that changes nothing gives the corrupted run's
/// numbers to the bit; the fastest, as a sweep is `layers · n` runs.
const PRECISION: Activations = Activations::Fastest;

impl PatchingRun {
    /// Runs the clean prompt (its answer and residual stream) and the corrupted one.
    pub async fn start(engine: &Engine, clean_ids: &[u32], corrupt_ids: &[u32]) -> Result<Self> {
        let n = clean_ids.len();
        if n == 0 || corrupt_ids.len() != n {
            return Err(Error::InvalidRequest(format!(
                "patching needs two prompts of the same number of tokens: the clean one has \
                 {n}, the corrupted one {}",
                corrupt_ids.len()
            )));
        }
        let mut session = engine.session(n)?;
        let residual_taps = Taps {
            residual: true,
            ..Taps::default()
        };
        let clean = session
            .feed(
                Feed::sequence(clean_ids)
                    .taps(residual_taps)
                    .activations(PRECISION),
            )
            .await?;
        let target = top_k(&clean.logits, 1)[0].0;
        let corrupt = session
            .feed(Feed::sequence(corrupt_ids).activations(PRECISION))
            .await?;
        let logprob = |logits: &[f32]| logits[target as usize] - log_sum_exp(logits);
        Ok(PatchingRun {
            clean_logprob: logprob(&clean.logits),
            corrupt_logprob: logprob(&corrupt.logits),
            clean_residual: clean.captured.residual,
            effect: vec![vec![0.0; n]; engine.config().n_layers],
            session,
            clean_ids: clean_ids.to_vec(),
            corrupt_ids: corrupt_ids.to_vec(),
            target,
            done: 0,
        })
    }

    pub fn progress(&self) -> SweepProgress {
        SweepProgress {
            done: self.done,
            total: self.effect.len() * self.clean_ids.len(),
        }
    }

    /// Runs the next patched run (token by token, each token's layers in turn, so the cache
    /// before the token is reused); false once every run is done.
    pub async fn step(&mut self) -> Result<bool> {
        let layers = self.effect.len();
        if self.done == layers * self.clean_ids.len() {
            return Ok(false);
        }
        let (token, layer) = (self.done / layers, self.done % layers);
        let d = self.clean_residual[layer].len() / self.clean_ids.len();
        let patch = Interventions {
            patches: vec![ResidualPatch {
                layer,
                token,
                values: self.clean_residual[layer][token * d..(token + 1) * d].to_vec(),
            }],
            ..Interventions::default()
        };
        let feed = Feed::sequence(&self.corrupt_ids)
            .interventions(&patch)
            .activations(PRECISION);
        let logits = self.session.feed(feed).await?.logits;
        self.effect[layer][token] = logits[self.target as usize] - log_sum_exp(&logits);
        self.done += 1;
        Ok(true)
    }

    /// The sweep's result; runs not done yet read 0.
    pub fn finish(self) -> PatchingSweep {
        PatchingSweep {
            clean_ids: self.clean_ids,
            corrupt_ids: self.corrupt_ids,
            target: self.target,
            clean_logprob: self.clean_logprob,
            corrupt_logprob: self.corrupt_logprob,
            effect: self.effect,
        }
    }
}
