//! The Order view's work: a multiple-choice question answered greedily under several orderings
//! of its options, with Set-Based Prompting (the options form a set) or plainly.
//!
//! The question goes through the model's chat template as a user message; the options are
//! spliced in where a marker stood, so any template works. A model without a chat template gets
//! the question as plain text ("Question: …\nOptions:\n- …\nAnswer:"), BOS first where it asks
//! for it, and its answer is the first line it writes.

use super::{js, post, Worker};
use crate::protocol::{OrderLayout, OrderReply, OrderRequest};
use engine::analysis::set_prompt::{reorder_members, PartIds, SetPrompt};
use engine::backend::Selection;
use engine::runtime::{Engine, EngineSession, Feed};
use engine::text::chat::ChatMessage;
use engine::text::tokenizer::TokenStream;
use engine::{Error, Result};
use std::cell::Cell;

/// Stands where the options go in the rendered template (a private-use character no template
/// produces).
const OPTIONS_MARKER: &str = "\u{E000}";
/// Room for the prompt and the answer: questions are short.
const ORDER_CONTEXT: usize = 512;

impl Worker {
    pub(super) async fn on_order(&mut self, request: OrderRequest) {
        match request {
            OrderRequest::Run {
                request,
                question,
                options,
                set_based,
                orders,
                max_tokens,
            } => {
                let run = OrderRun {
                    request,
                    question: &question,
                    options: &options,
                    set_based,
                    orders: &orders,
                    max_tokens,
                };
                self.run_orders(&run).await
            }
        }
    }

    async fn run_orders(&mut self, run: &OrderRun<'_>) {
        self.stop.set(false);
        let result = match self.engine() {
            Ok(engine) => run_orders(engine, run, &self.stop).await,
            Err(e) => Err(e),
        };
        let (stopped, error) = match result {
            Ok(stopped) => (stopped, None),
            Err(e) => (false, Some(e.to_string())),
        };
        post(OrderReply::Done {
            request: run.request,
            stopped,
            error,
        });
    }
}

struct OrderRun<'a> {
    request: u32,
    question: &'a str,
    options: &'a [String],
    set_based: bool,
    orders: &'a [Vec<usize>],
    max_tokens: usize,
}

/// Runs every ordering, posting the layout, each answer and the end; `Ok(true)` if stopped.
async fn run_orders(engine: &Engine, run: &OrderRun<'_>, stop: &Cell<bool>) -> Result<bool> {
    if run.options.len() < 2 {
        return Err(Error::InvalidRequest("give at least two options".into()));
    }
    if run.options.iter().any(|o| o.trim().is_empty()) {
        return Err(Error::InvalidRequest("an option is empty".into()));
    }
    let tokenizer = engine.tokenizer();
    let completion = super::chat::template(engine).is_none();
    let (prefix, rest) = prompt_parts(engine, run.question, run.options)?;
    let layout_of = |parts: &[PartIds], order: &[usize]| layout(parts, order, run.set_based);
    let identity: Vec<usize> = (0..run.options.len()).collect();
    let whole: Vec<PartIds> = std::iter::once(PartIds::Text(prefix.clone()))
        .chain(rest.iter().cloned())
        .collect();
    let whole = layout_of(&whole, run.orders.first().unwrap_or(&identity))?;
    if whole.len() + run.max_tokens > ORDER_CONTEXT {
        return Err(Error::ContextOverflow {
            prompt: whole.len() + run.max_tokens,
            context: ORDER_CONTEXT,
        });
    }
    post(OrderReply::Layout {
        request: run.request,
        layout: describe(engine, &whole),
    });

    // The question is the same under every ordering: its KV cache is computed once.
    let mut session = engine.session(ORDER_CONTEXT)?;
    greedy(&mut session, Feed::append(&prefix)).await?;
    let after_question = session.tokens().len();
    for order in run.orders {
        js::yield_now().await;
        if stop.get() {
            return Ok(true);
        }
        session.truncate(after_question);
        let prompt = layout_of(&rest, order)?;
        let mut next = greedy(&mut session, Feed::layout(prompt.layout())).await?;
        let mut printer = TokenStream::new();
        let mut answer = String::new();
        for step in 0..run.max_tokens {
            if tokenizer.is_end_of_generation(next) {
                break;
            }
            answer.push_str(&printer.push(tokenizer, next));
            // A model continuing plain text goes on to the next question: one line is its answer.
            if completion && answer.trim_start().contains('\n') {
                break;
            }
            if step + 1 == run.max_tokens {
                break;
            }
            js::yield_now().await;
            if stop.get() {
                return Ok(true);
            }
            next = greedy(&mut session, Feed::append(&[next])).await?;
        }
        answer.push_str(&printer.finish());
        let answer = answer.trim();
        let answer = if completion {
            answer.lines().next().unwrap_or_default()
        } else {
            answer
        };
        post(OrderReply::Answer {
            request: run.request,
            order: order.clone(),
            answer: answer.trim().to_string(),
        });
    }
    Ok(false)
}

/// Feeds `feed` and returns the most likely next token.
async fn greedy(session: &mut EngineSession, feed: Feed<'_>) -> Result<u32> {
    let fed = session.feed(feed.top_k(Selection::greedy())).await?;
    fed.top
        .first()
        .map(|&(id, _)| id)
        .ok_or_else(|| Error::InvalidRequest("no next token".into()))
}

/// The question (through the chat template) as ids, and what follows it: the options as a set
/// (the only part that changes between orderings) and the template's end.
fn prompt_parts(
    engine: &Engine,
    question: &str,
    options: &[String],
) -> Result<(Vec<u32>, [PartIds; 2])> {
    let (prefix, suffix) = around_options(engine, question)?;
    let tokenizer = engine.tokenizer();
    let members = options
        .iter()
        .map(|o| tokenizer.encode(&format!("\n- {}", o.trim())))
        .collect::<Result<Vec<_>>>()?;
    Ok((
        // The prompt is fed from its start: BOS first where the model asks for it.
        tokenizer.with_bos(&tokenizer.encode(&prefix)?),
        [
            PartIds::Set(members),
            PartIds::Text(tokenizer.encode(&suffix)?),
        ],
    ))
}

/// `parts` with the set's members in `order`, set-based or as one plain sequence.
fn layout(parts: &[PartIds], order: &[usize], set_based: bool) -> Result<SetPrompt> {
    let prompt = SetPrompt::from_ids(&reorder_members(parts, &[order.to_vec()])?)?;
    Ok(if set_based { prompt } else { prompt.plain() })
}

/// The whole prompt of the Order view for its options in the order given, as the explorer
/// inspects it.
pub fn whole_prompt(
    engine: &Engine,
    question: &str,
    options: &[String],
    set_based: bool,
) -> Result<SetPrompt> {
    let (prefix, rest) = prompt_parts(engine, question, options)?;
    let parts: Vec<PartIds> = std::iter::once(PartIds::Text(prefix)).chain(rest).collect();
    let identity: Vec<usize> = (0..options.len()).collect();
    layout(&parts, &identity, set_based)
}

/// The prompt's text before and after the options: the rendered chat template, or, without
/// one, plain text.
fn around_options(engine: &Engine, question: &str) -> Result<(String, String)> {
    let Some(template) = super::chat::template(engine) else {
        return Ok((
            format!("Question: {}\nOptions:", question.trim()),
            "\nAnswer:".to_string(),
        ));
    };
    let content = format!("{}\nOptions:{OPTIONS_MARKER}", question.trim());
    let rendered = template.render(&[ChatMessage::new("user", &content)], true)?;
    let (before, after) = rendered.split_once(OPTIONS_MARKER).ok_or_else(|| {
        Error::ChatTemplate("the chat template dropped the question's text".into())
    })?;
    Ok((before.to_string(), after.to_string()))
}

fn describe(engine: &Engine, prompt: &SetPrompt) -> OrderLayout {
    let n = prompt.len();
    OrderLayout {
        tokens: prompt
            .ids
            .iter()
            .map(|&id| engine.tokenizer().token_label(id))
            .collect(),
        positions: prompt.positions.clone(),
        members: prompt.origins.iter().map(|o| o.member).collect(),
        visible: (0..n)
            .flat_map(|q| (0..n).map(move |k| (q, k)))
            .map(|(q, k)| prompt.visible(q, k))
            .collect(),
    }
}
