//! How attention policies ([`crate::runtime::AttentionPolicy`]) change a model's predictions
//! on long inputs: the log-prob of every next token of a text (perplexity, as LM-Infinite
//! measures it), and how closely a KV budget follows the full cache along a generation
//! (top-1 agreement and log-prob drift, as H2O and Keyformer measure it).

use crate::error::{Error, Result};
use crate::numerics::{argmax, log_sum_exp};
use crate::runtime::{AttentionPolicy, Engine, Feed};
use serde::{Deserialize, Serialize};

/// The log-prob of each of `ids[1..]` given the tokens before it, fed in pieces of `chunk`
/// tokens on a session of `capacity` under `policy`. `progress` hears the tokens done and
/// returns false to stop ([`Error::Cancelled`]).
pub async fn next_token_logprobs(
    engine: &Engine,
    ids: &[u32],
    policy: AttentionPolicy,
    capacity: usize,
    chunk: usize,
    mut progress: impl FnMut(usize) -> bool,
) -> Result<Vec<f32>> {
    let mut session = engine.session(capacity)?;
    session.set_policy(policy)?;
    if !policy.evicts() && ids.len() > session.capacity() {
        return Err(Error::ContextOverflow {
            prompt: ids.len(),
            context: session.capacity(),
        });
    }
    let vocab = engine.config().vocab_size;
    let mut logprobs = Vec::with_capacity(ids.len().saturating_sub(1));
    for (i, piece) in ids.chunks(chunk.max(1)).enumerate() {
        let fed = session.feed(Feed::append(piece).every_logits()).await?;
        let first = i * chunk.max(1);
        for (row, logits) in fed.logits.chunks_exact(vocab).enumerate() {
            if let Some(&next) = ids.get(first + row + 1) {
                logprobs.push(logits[next as usize] - log_sum_exp(logits));
            }
        }
        if !progress(first + piece.len()) {
            return Err(Error::Cancelled);
        }
    }
    Ok(logprobs)
}

/// `exp(−mean log-prob)`.
pub fn perplexity(logprobs: &[f32]) -> f32 {
    let mean = logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / logprobs.len().max(1) as f64;
    (-mean).exp() as f32
}

/// How a policy followed the full cache along one greedy generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Steps at which the policy's top-1 was the full cache's.
    pub top1_agreement: f32,
    /// Mean and largest |log p_full(next) − log p_policy(next)| over the steps, `next` being
    /// the full cache's greedy token.
    pub mean_logprob_drift: f32,
    pub max_logprob_drift: f32,
}

/// The full cache's greedy continuation of `prompt` (`steps` tokens) and its log-prob of each.
pub async fn greedy_reference(
    engine: &Engine,
    prompt: &[u32],
    steps: usize,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let mut session = engine.session(prompt.len() + steps)?;
    let mut logits = session.feed(Feed::append(prompt)).await?.logits;
    let (mut tokens, mut logprobs) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let next = argmax(&logits);
        tokens.push(next);
        logprobs.push(logits[next as usize] - log_sum_exp(&logits));
        logits = session.feed(Feed::append(&[next])).await?.logits;
    }
    Ok((tokens, logprobs))
}

/// Feeds `prompt` and then the reference's tokens one at a time under `policy` (teacher
/// forcing), comparing each step's prediction with the reference's.
pub async fn agreement(
    engine: &Engine,
    prompt: &[u32],
    reference: &(Vec<u32>, Vec<f32>),
    policy: AttentionPolicy,
) -> Result<Agreement> {
    let (tokens, want) = reference;
    let needed = prompt.len() + tokens.len();
    let capacity = match policy {
        AttentionPolicy::Budget { budget, .. } => needed.max(budget),
        _ => needed,
    };
    let mut session = engine.session(capacity)?;
    session.set_policy(policy)?;
    let mut logits = session.feed(Feed::append(prompt)).await?.logits;
    let (mut agree, mut drift_sum, mut drift_max) = (0usize, 0f64, 0f32);
    for (step, (&next, &want)) in tokens.iter().zip(want).enumerate() {
        agree += usize::from(argmax(&logits) == next);
        let drift = (logits[next as usize] - log_sum_exp(&logits) - want).abs();
        drift_sum += f64::from(drift);
        drift_max = drift_max.max(drift);
        if step + 1 < tokens.len() {
            logits = session.feed(Feed::append(&[next])).await?.logits;
        }
    }
    let n = tokens.len().max(1);
    Ok(Agreement {
        top1_agreement: agree as f32 / n as f32,
        mean_logprob_drift: (drift_sum / n as f64) as f32,
        max_logprob_drift: drift_max,
    })
}
