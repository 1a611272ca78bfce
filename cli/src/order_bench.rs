//! `glassbox order-bench`: how much a multiple-choice answer depends on the order of the
//! options, under plain and under Set-Based Prompting (a benchmark of the effect, not a test).
//!
//! For each question and each ordering of its options, every option is scored the way the
//! Set-Based Prompting paper does: the mean log-probability of the option's tokens as the
//! continuation of the prompt (which ends in `Answer: "`). The preferred option is the best
//! scored. Reported per mode: accuracy (over all question × ordering pairs) and order
//! sensitivity (the share of questions whose preferred option changes across orderings).

use crate::commands::load;
use crate::RunArgs;
use engine::analysis::set_prompt::{permutations, reorder_members, PartIds, SetPrompt};
use engine::numerics::log_sum_exp;
use engine::runtime::{Engine, EngineSession, Feed};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

#[derive(Deserialize)]
struct QuestionFile {
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    question: String,
    options: Vec<String>,
    answer: usize,
}

/// The prompt around the options; each option is one member: a line of its own.
fn prompt_texts(question: &Question) -> (String, Vec<String>, String) {
    (
        format!("<|im_start|>user\n{}\nOptions:", question.question),
        question
            .options
            .iter()
            .map(|o| format!("\n- {o}"))
            .collect(),
        "\nAnswer with one of the options.<|im_end|>\n<|im_start|>assistant\nAnswer: \"".into(),
    )
}

#[derive(Default)]
struct ModeResult {
    /// Per question: the preferred option (original index) under each ordering.
    preferred: Vec<Vec<usize>>,
    /// Per question: the largest change of any option's score across orderings.
    score_spread: Vec<f32>,
}

impl ModeResult {
    fn accuracy(&self, questions: &[Question]) -> f64 {
        let (right, all) = self
            .preferred
            .iter()
            .zip(questions)
            .flat_map(|(p, q)| p.iter().map(move |&o| o == q.answer))
            .fold((0, 0), |(r, a), ok| (r + ok as usize, a + 1));
        right as f64 / all.max(1) as f64
    }

    fn sensitivity(&self) -> f64 {
        let changed = self
            .preferred
            .iter()
            .filter(|p| p.iter().any(|&o| o != p[0]))
            .count();
        changed as f64 / self.preferred.len().max(1) as f64
    }
}

pub fn run(
    run: &RunArgs,
    questions: &Path,
    orders: usize,
    limit: Option<usize>,
    json_out: bool,
) -> Result<(), String> {
    let text = std::fs::read_to_string(questions)
        .map_err(|e| format!("cannot read {}: {e}", questions.display()))?;
    let file: QuestionFile = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a question file: {e}", questions.display()))?;
    let mut questions = file.questions;
    questions.truncate(limit.unwrap_or(usize::MAX));
    if let Some(bad) = questions
        .iter()
        .find(|q| q.options.len() < 2 || q.answer >= q.options.len())
    {
        return Err(format!(
            "question {:?}: needs ≥ 2 options and a valid answer",
            bad.question
        ));
    }
    let engine = load(run)?;
    measure(&engine, &questions, orders, json_out)
}

fn measure(
    engine: &Engine,
    questions: &[Question],
    orders: usize,
    json_out: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let (mut plain, mut set_based) = (ModeResult::default(), ModeResult::default());
    let mut orderings = 0;
    for (i, question) in questions.iter().enumerate() {
        let mut all_orders = permutations(question.options.len());
        // Evenly spaced orderings when fewer than all are asked for; the identity comes first.
        let step = all_orders.len().div_ceil(orders.max(1));
        all_orders = all_orders.into_iter().step_by(step).collect();
        orderings = all_orders.len();
        for (result, is_plain) in [(&mut plain, true), (&mut set_based, false)] {
            let (preferred, spread) = score_question(engine, question, &all_orders, is_plain)
                .map_err(|e| format!("question {:?}: {e}", question.question))?;
            result.preferred.push(preferred);
            result.score_spread.push(spread);
        }
        eprint!(
            "\r{}/{} questions, {} orderings each, {:.0} s",
            i + 1,
            questions.len(),
            all_orders.len(),
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    let row = |name: &str, r: &ModeResult| {
        json!({
            "mode": name,
            "accuracy": r.accuracy(questions),
            "order_sensitivity": r.sensitivity(),
            "max_score_change": r.score_spread.iter().copied().fold(0.0, f32::max),
        })
    };
    let rows = [row("plain", &plain), row("set-based", &set_based)];
    if json_out {
        println!(
            "{}",
            json!({"questions": questions.len(), "orderings": orderings, "results": rows})
        );
    } else {
        println!(
            "{} questions × {orderings} orderings of their options, {:.0} s",
            questions.len(),
            started.elapsed().as_secs_f64()
        );
        println!("| prompting | accuracy | order sensitivity | max score change |");
        println!("|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {:.1}% | {:.1}% | {:.2e} |",
                r["mode"].as_str().unwrap_or(""),
                r["accuracy"].as_f64().unwrap_or(0.0) * 100.0,
                r["order_sensitivity"].as_f64().unwrap_or(0.0) * 100.0,
                r["max_score_change"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}

/// The preferred option (original index) under each ordering, and the largest change of any
/// option's score across the orderings.
fn score_question(
    engine: &Engine,
    question: &Question,
    orders: &[Vec<usize>],
    plain: bool,
) -> engine::Result<(Vec<usize>, f32)> {
    let tokenizer = engine.tokenizer();
    let (prefix, members, suffix) = prompt_texts(question);
    let prefix = tokenizer.encode(&prefix)?;
    let members: Vec<Vec<u32>> = members
        .iter()
        .map(|m| tokenizer.encode(m))
        .collect::<engine::Result<_>>()?;
    let suffix = tokenizer.encode(&suffix)?;
    let continuations: Vec<Vec<u32>> = question
        .options
        .iter()
        .map(|o| tokenizer.encode(o))
        .collect::<engine::Result<_>>()?;

    let mut session = engine.session(512)?;
    // The question is the same under every ordering: its KV cache is computed once.
    pollster::block_on(session.feed(Feed::append(&prefix)))?;
    let after_prefix = session.tokens().len();
    let parts = [PartIds::Set(members), PartIds::Text(suffix)];

    let mut preferred = Vec::new();
    let mut first_scores: Option<Vec<f32>> = None;
    let mut spread = 0f32;
    for order in orders {
        session.truncate(after_prefix);
        let layout = SetPrompt::from_ids(&reorder_members(&parts, std::slice::from_ref(order))?)?;
        let layout = if plain { layout.plain() } else { layout };
        let logits = pollster::block_on(session.feed(Feed::layout(layout.layout())))?.logits;
        let after_prompt = session.tokens().len();
        let mut scores = Vec::new();
        for continuation in &continuations {
            session.truncate(after_prompt);
            scores.push(mean_logprob(&mut session, &logits, continuation)?);
        }
        let best = (0..scores.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(0);
        preferred.push(best);
        match &first_scores {
            None => first_scores = Some(scores),
            Some(first) => {
                for (a, b) in first.iter().zip(&scores) {
                    spread = spread.max((a - b).abs());
                }
            }
        }
    }
    Ok((preferred, spread))
}

/// Mean log-probability of `tokens` following the state whose next-token logits are `logits`.
fn mean_logprob(
    session: &mut EngineSession,
    logits: &[f32],
    tokens: &[u32],
) -> engine::Result<f32> {
    let mut total = 0.0;
    let mut logits = logits.to_vec();
    for (i, &token) in tokens.iter().enumerate() {
        total += logits[token as usize] - log_sum_exp(&logits);
        if i + 1 < tokens.len() {
            logits = pollster::block_on(session.feed(Feed::append(&[token])))?.logits;
        }
    }
    Ok(total / tokens.len().max(1) as f32)
}
