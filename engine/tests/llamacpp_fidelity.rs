//! The chat model on the CPU against llama.cpp (fixtures made by
//! `tools/llamacpp/make_llamacpp_fixtures.py`). Tolerances, from the engine issue:
//! - tokenization: identical ids for every string;
//! - next-token logits: the same top-1 id, top-5 id sets sharing at least 4, and
//!   |Δ log-prob| ≤ 0.25 on llama.cpp's top 5;
//! - greedy continuation: the same ids up to the first step where llama.cpp's top-1 margin is
//!   ≤ 0.5 (past a near-tie, two correct engines may part ways).
//!
//! The 0.25 log-prob bound holds for the public fixture. It sits inside llama.cpp's own noise:
//! `tools/llamacpp/self_spread.py` shows llama.cpp moving by up to 0.48 (f32 instead of f16 KV
//! cache) and 0.58 (flash attention) on our own prompts, and an exact-arithmetic engine differs
//! from it by up to 0.51 on 40 prompts. Our own cases therefore use the largest spread
//! llama.cpp shows against itself, 0.6, and ask for the top-1 only where llama.cpp's own top-1
//! margin is clear (> 0.5), as the greedy rule does.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_model, fixtures, PromptCase};
use engine::backend::Backend;
use engine::cpu::CpuBackend;
use engine::language_model::{LanguageModel, Session};
use engine::models::llama::Taps;
use engine::sampling::{argmax, log_sum_exp, top_k};

/// The bound, for the public fixture.
pub const LOGPROB_TOLERANCE: f32 = 0.25;
/// llama.cpp's spread against itself, for our own cases (see the module comment).
pub const LOGPROB_TOLERANCE_OWN_CASES: f32 = 0.6;
pub const MARGIN_THRESHOLD: f32 = 0.5;

#[test]
fn tokenization_matches_llamacpp() {
    let model = cpu_model();
    let mut failures = Vec::new();
    let mut count = 0;
    for set in fixtures() {
        for case in &set.tokenize {
            count += 1;
            let ids = model.tokenizer.encode(&case.text).unwrap();
            if ids != case.ids {
                failures.push(format!(
                    "{:?}: got {ids:?}, llama.cpp {:?}",
                    case.text, case.ids
                ));
            }
        }
    }
    assert!(count >= 42, "only {count} tokenization cases");
    assert!(
        failures.is_empty(),
        "{} of {count} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn end_of_generation_ids_match_llamacpp() {
    let model = cpu_model();
    for set in fixtures() {
        for id in set.eog_ids {
            assert!(
                model.tokenizer.is_end_of_generation(id),
                "llama.cpp ends generation at {id}"
            );
        }
    }
}

/// Checks one prompt's next-token logits and greedy continuation on any backend.
pub fn check_prompt<B: Backend>(
    model: &LanguageModel<B>,
    backend: &B,
    case: &PromptCase,
    tolerance: f32,
    top1_always: bool,
) -> Result<(), String> {
    let ids = model
        .tokenizer
        .encode(&case.prompt)
        .map_err(|e| e.to_string())?;
    if ids != case.ids {
        return Err(format!("prompt ids differ: {ids:?} vs {:?}", case.ids));
    }
    let mut session = Session::new(model, backend, 1024).map_err(|e| e.to_string())?;
    let out = pollster::block_on(session.feed(model, backend, &ids, Taps::default()))
        .map_err(|e| e.to_string())?;
    let lse = log_sum_exp(&out.logits);
    let ours: Vec<u32> = top_k(&out.logits, 5)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let theirs: Vec<u32> = case.top.iter().take(5).map(|t| t.id).collect();
    let clear_margin = case.top[0].logit - case.top[1].logit > MARGIN_THRESHOLD;
    if ours[0] != theirs[0] && (top1_always || clear_margin) {
        return Err(format!("top-1 {} vs llama.cpp {}", ours[0], theirs[0]));
    }
    let shared = ours.iter().filter(|id| theirs.contains(id)).count();
    if shared < 4 {
        return Err(format!("top-5 share {shared}: {ours:?} vs {theirs:?}"));
    }
    for t in case.top.iter().take(5) {
        let logprob = out.logits[t.id as usize] - lse;
        if (logprob - t.logprob).abs() > tolerance {
            return Err(format!(
                "token {}: log-prob {logprob} vs llama.cpp {}",
                t.id, t.logprob
            ));
        }
    }
    // Greedy, compared while llama.cpp's margin is clear.
    let mut logits = out.logits;
    for (step, (&want, &margin)) in case.greedy_ids.iter().zip(&case.greedy_margins).enumerate() {
        if margin <= MARGIN_THRESHOLD {
            break;
        }
        let got = argmax(&logits);
        if got != want {
            return Err(format!(
                "greedy step {step}: {got} vs llama.cpp {want} (margin {margin})"
            ));
        }
        if model.tokenizer.is_end_of_generation(got) {
            break;
        }
        logits = pollster::block_on(session.feed(model, backend, &[got], Taps::default()))
            .map_err(|e| e.to_string())?
            .logits;
    }
    Ok(())
}

#[test]
fn logits_and_greedy_continuations_match_llamacpp() {
    let model = cpu_model();
    let backend = CpuBackend::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for (i, set) in fixtures().iter().enumerate() {
        let public = i == 0;
        let tolerance = if public {
            LOGPROB_TOLERANCE
        } else {
            LOGPROB_TOLERANCE_OWN_CASES
        };
        for case in &set.prompts {
            count += 1;
            if let Err(e) = check_prompt(model, &backend, case, tolerance, public) {
                failures.push(format!("{:?}: {e}", case.prompt));
            }
        }
    }
    assert!(count >= 6, "only {count} prompts");
    assert!(
        failures.is_empty(),
        "{} of {count} prompts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
