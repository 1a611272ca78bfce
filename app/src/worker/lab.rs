//! The Lab's work: head ablation (the next-token distribution with and without the ablated
//! heads, and one head's attention under the ablation), the activation-patching sweep, the
//! attribution and outlier measures (`lab_measures.rs`), and
//! the steering vectors the chat's steered replies use (computed once per pair and layer).
//!
//! The sweep is the engine's ([`PatchingRun`]), stepped here one patched run at a time so
//! that the worker can yield to its event loop between runs: on the CPU a forward pass never
//! yields, and Stop arrives as a message.

use super::lab_prompt::{encode_from_start, labels};
use super::{js, lab_measures, post, Worker};
use crate::protocol::{
    AblationResult, LabReply, LabRequest, PatchingResult, SteeringChoice, TokenChance, CUSTOM_PAIR,
};
use engine::analysis::patching::{PatchingRun, PatchingSweep, SweepProgress};
use engine::analysis::probes::{steering, steering_pair, steering_vector};
use engine::models::interventions::Interventions;
use engine::models::pass::Activations;
use engine::models::taps::Taps;
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::{Engine, Feed};
use engine::{Error, Result};
use std::cell::Cell;

/// The distributions list this many next tokens.
const TOP_TOKENS: usize = 10;

/// A steering vector, and the pair (with its prompts, for the user's own) and layer it was
/// computed for.
pub(super) struct CachedSteering {
    pair: String,
    prompts: (Vec<String>, Vec<String>),
    layer: usize,
    vector: Vec<f32>,
}

impl Worker {
    pub(super) async fn on_lab(&mut self, request: LabRequest) {
        match request {
            LabRequest::Ablate {
                request,
                prompt,
                heads,
                shown,
            } => {
                let result = match self.engine() {
                    Ok(engine) => ablate(engine, &prompt, &heads, shown).await,
                    Err(e) => Err(e),
                };
                post(LabReply::Ablated {
                    request,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            LabRequest::Attribute {
                request,
                prompt,
                target,
            } => {
                let result = match self.engine() {
                    Ok(engine) => lab_measures::attribute(engine, &prompt, target).await,
                    Err(e) => Err(e),
                };
                post(LabReply::Attributed {
                    request,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            LabRequest::MeasureOutliers { request, prompt } => {
                let result = match self.engine() {
                    Ok(engine) => lab_measures::measure_outliers(engine, &prompt).await,
                    Err(e) => Err(e),
                };
                post(LabReply::OutliersMeasured {
                    request,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            LabRequest::Patch {
                request,
                clean,
                corrupt,
            } => {
                self.stop.set(false);
                let result = match self.engine() {
                    Ok(engine) => sweep(engine, request, &clean, &corrupt, &self.stop).await,
                    Err(e) => Err(e),
                };
                let result = result.map_err(|e| match e {
                    Error::Cancelled => "Stopped.".to_string(),
                    e => e.to_string(),
                });
                post(LabReply::Patched { request, result });
            }
        }
    }

    /// The interventions a steered chat reply runs under (none without `choice` or at α = 0);
    /// the vector is computed on first use of its pair and layer and kept.
    pub(super) async fn steering_for(
        &mut self,
        choice: Option<&SteeringChoice>,
    ) -> Result<Interventions> {
        let Some(choice) = choice.filter(|c| c.alpha != 0.0) else {
            return Ok(Interventions::default());
        };
        let engine = self.engine()?;
        let prompts = if choice.pair == CUSTOM_PAIR {
            if choice.positive.is_empty() || choice.negative.is_empty() {
                return Err(Error::InvalidRequest(
                    "your steering pair needs at least one prompt on each side".into(),
                ));
            }
            (choice.positive.clone(), choice.negative.clone())
        } else {
            let pair = steering_pair(&choice.pair).ok_or_else(|| {
                Error::InvalidRequest(format!("no steering pair {:?}", choice.pair))
            })?;
            let owned = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect();
            (owned(pair.positive), owned(pair.negative))
        };
        let cached = self.steering.as_ref().is_some_and(|s| {
            s.pair == choice.pair && s.layer == choice.layer && s.prompts == prompts
        });
        if !cached {
            let encode = |texts: &[String]| -> Result<Vec<Vec<u32>>> {
                texts.iter().map(|t| encode_from_start(engine, t)).collect()
            };
            let (positive, negative) = (encode(&prompts.0)?, encode(&prompts.1)?);
            let vector = steering_vector(engine, &positive, &negative, choice.layer).await?;
            self.steering = Some(CachedSteering {
                pair: choice.pair.clone(),
                prompts,
                layer: choice.layer,
                vector,
            });
        }
        let vector = &self.steering.as_ref().expect("computed above").vector;
        Ok(steering(choice.layer, vector, choice.alpha))
    }
}

/// Probabilities from logits.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let norm = log_sum_exp(logits);
    logits.iter().map(|l| (l - norm).exp()).collect()
}

/// The `TOP_TOKENS` most likely tokens of `probs`, each with its probability in `other`.
fn top_tokens(engine: &Engine, logits: &[f32], probs: &[f32], other: &[f32]) -> Vec<TokenChance> {
    top_k(logits, TOP_TOKENS)
        .into_iter()
        .map(|(id, _)| TokenChance {
            id,
            token: engine.tokenizer().token_label(id),
            probability: probs[id as usize],
            other: other[id as usize],
        })
        .collect()
}

async fn ablate(
    engine: &Engine,
    prompt: &str,
    heads: &[(usize, usize)],
    shown: (usize, usize),
) -> Result<AblationResult> {
    let started = js::now_ms();
    let ids = encode_from_start(engine, prompt)?;
    let c = engine.config();
    let ablation = Interventions::ablate_heads(heads);
    ablation.check(c)?;
    let (layer, head) = shown;
    if layer >= c.n_layers || head >= c.n_heads {
        return Err(Error::InvalidRequest(format!(
            "layer {layer} head {head} does not exist ({} layers of {} heads)",
            c.n_layers, c.n_heads
        )));
    }
    let t = ids.len();
    // Both runs in f32: the "after" run taps and intervenes, which the engine does in f32,
    // and the change per token must come from the ablation alone, not from the precision.
    let before = engine
        .session(t)?
        .feed(Feed::sequence(&ids).activations(Activations::F32))
        .await?
        .logits;
    let taps = Taps {
        attention: true,
        only_layer: Some(layer),
        ..Taps::default()
    };
    let fed = engine
        .session(t)?
        .feed(
            Feed::sequence(&ids)
                .taps(taps)
                .interventions(&ablation)
                .activations(Activations::F32),
        )
        .await?;
    let attention = fed.captured.attention.concat();
    let attention = attention
        .get(head * t * t..(head + 1) * t * t)
        .ok_or_else(|| Error::InvalidRequest("the attention was not captured".into()))?
        .to_vec();
    let (p_before, p_after) = (softmax(&before), softmax(&fed.logits));
    Ok(AblationResult {
        tokens: labels(engine, &ids),
        n_layers: c.n_layers,
        n_heads: c.n_heads,
        heads: heads.to_vec(),
        before: top_tokens(engine, &before, &p_before, &p_after),
        after: top_tokens(engine, &fed.logits, &p_after, &p_before),
        shown,
        attention,
        ms: js::now_ms() - started,
    })
}

/// The patching sweep (see the module's comment), posting progress after each patched run and
/// ending with [`Error::Cancelled`] once Stop was raised.
async fn sweep(
    engine: &Engine,
    request: u32,
    clean: &str,
    corrupt: &str,
    stop: &Cell<bool>,
) -> Result<PatchingResult> {
    let clean_ids = encode_from_start(engine, clean)?;
    let corrupt_ids = encode_from_start(engine, corrupt)?;
    let n = clean_ids.len();
    if corrupt_ids.len() != n {
        return Err(Error::InvalidRequest(format!(
            "the clean prompt is {n} tokens and the corrupted one {}: patching needs the same \
             number (change a word for one that makes as many tokens)",
            corrupt_ids.len()
        )));
    }
    let started = js::now_ms();
    let mut run = PatchingRun::start(engine, &clean_ids, &corrupt_ids).await?;
    while run.step().await? {
        let SweepProgress { done, total } = run.progress();
        post(LabReply::PatchProgress {
            request,
            done,
            total,
        });
        // Let Stop arrive.
        js::yield_now().await;
        if stop.get() {
            return Err(Error::Cancelled);
        }
    }
    let PatchingSweep {
        clean_ids,
        corrupt_ids,
        target,
        clean_logprob,
        corrupt_logprob,
        effect,
    } = run.finish();
    Ok(PatchingResult {
        clean_tokens: labels(engine, &clean_ids),
        corrupt_tokens: labels(engine, &corrupt_ids),
        target: engine.tokenizer().token_label(target),
        target_id: target,
        clean_ids,
        corrupt_ids,
        clean_logprob,
        corrupt_logprob,
        effect,
        sweep_ms: js::now_ms() - started,
        backend: engine.backend_name(),
    })
}
