//! Attention policies measured on long inputs: `glassbox perplexity` (a text's perplexity per
//! stretch of the model's context, under a policy) and `glassbox kv-agreement` (how closely
//! KV budgets follow the full cache along a greedy generation). Both print JSON on stdout and
//! their time on stderr.

use crate::commands::{load, print_json, read_text};
use crate::lab::PolicyArgs;
use crate::RunArgs;
use engine::analysis::long_context::{
    agreement, greedy_reference, next_token_logprobs, perplexity,
};
use engine::runtime::AttentionPolicy;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// Tokens fed per forward pass: their logits, `(tokens, vocab)` f32, are read back at once.
const CHUNK: usize = 256;

/// `glassbox perplexity`: the text's tokens (BOS first where the model wants it), at most
/// `max_tokens`, fed under the policy; the perplexity of the tokens in `[0, C)`, `[C, 2C)`
/// and `[2C, 4C)`, `C` being the model's context.
pub fn run_perplexity(
    run: &RunArgs,
    text_file: &Path,
    max_tokens: usize,
    cache: Option<usize>,
    policy: &PolicyArgs,
) -> Result<(), String> {
    let engine = load(run)?;
    let text = read_text(text_file)?;
    let mut ids = crate::lab::encode_from_start(&engine, &text)?;
    ids.truncate(max_tokens);
    let context = engine.config().context_len;
    let capacity = cache.unwrap_or_else(|| policy.capacity(&engine, ids.len().min(context)));
    let chosen = policy.policy();
    if !chosen.evicts() && ids.len() > capacity.min(context) {
        eprintln!(
            "glassbox: without a policy the cache holds {} tokens: the text is cut there",
            capacity.min(context)
        );
        ids.truncate(capacity.min(context));
    }
    let started = Instant::now();
    let logprobs = pollster::block_on(next_token_logprobs(
        &engine,
        &ids,
        chosen,
        capacity,
        CHUNK,
        |done| {
            eprint!("\r{done} of {} tokens", ids.len());
            true
        },
    ))
    .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "\r{} tokens on {} in {seconds:.1} s ({:.0} tokens/s)",
        ids.len(),
        engine.backend_name(),
        ids.len() as f64 / seconds
    );
    // logprobs[i] predicts token i + 1.
    let segments: Vec<_> = [
        (0, context),
        (context, 2 * context),
        (2 * context, 4 * context),
    ]
    .into_iter()
    .filter(|&(from, _)| from + 1 < ids.len())
    .map(|(from, to)| {
        let to = to.min(ids.len());
        let part = &logprobs[from.saturating_sub(1)..to - 1];
        json!({"from": from, "to": to, "perplexity": perplexity(part)})
    })
    .collect();
    print_json(&json!({
        "tokens": ids.len(),
        "context": context,
        "cache": capacity,
        "policy": describe(chosen),
        "perplexity": perplexity(&logprobs),
        "segments": segments,
        "seconds": seconds,
    }))
}

/// `glassbox kv-agreement`: the full cache's greedy continuation of the prompt, then each
/// budget teacher-forced along it.
pub fn run_agreement(
    run: &RunArgs,
    prompt_file: &Path,
    budgets: &[usize],
    steps: usize,
) -> Result<(), String> {
    let engine = load(run)?;
    let prompt = crate::lab::encode_from_start(&engine, &read_text(prompt_file)?)?;
    let started = Instant::now();
    let reference =
        pollster::block_on(greedy_reference(&engine, &prompt, steps)).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &budget in budgets {
        let policy = AttentionPolicy::budget(budget);
        let found = pollster::block_on(agreement(&engine, &prompt, &reference, policy))
            .map_err(|e| format!("budget {budget}: {e}"))?;
        eprintln!(
            "budget {budget}: top-1 agreement {:.3}, mean drift {:.4}",
            found.top1_agreement, found.mean_logprob_drift
        );
        rows.push(json!({
            "budget": budget,
            "top1_agreement": found.top1_agreement,
            "mean_logprob_drift": found.mean_logprob_drift,
            "max_logprob_drift": found.max_logprob_drift,
        }));
    }
    eprintln!(
        "{} budgets on {} in {:.1} s",
        budgets.len(),
        engine.backend_name(),
        started.elapsed().as_secs_f64()
    );
    print_json(&json!({
        "prompt_tokens": prompt.len(),
        "steps": steps,
        "rows": rows,
    }))
}

/// The policy in its CLI form.
fn describe(policy: AttentionPolicy) -> String {
    match policy {
        AttentionPolicy::Full => "full".into(),
        AttentionPolicy::Lambda { n_global, n_local } => format!("lambda:{n_global},{n_local}"),
        AttentionPolicy::Budget {
            budget,
            n_first,
            n_recent,
        } => format!("budget:{budget},{n_first},{n_recent}"),
    }
}
