//! The chat's side of the worker: a reply to the conversation, streamed piece by piece, in the
//! conversation's own KV cache (kept between replies, so only what is new is fed). A GPU lost
//! in the middle of a reply reloads the model on the CPU and starts the reply over.
//!
//! A model without a chat template (a base model such as Gemma 3 270M) is in completion mode:
//! the conversation is one text, which the model continues (BOS first where it asks for it). A
//! model whose template fails chats in a plain `role: text` format instead.
//!
//! Before a reply, the conversation is fitted to the context with room for the reply
//! (`fit_conversation`): if its oldest turns would have to go, nothing is generated and the
//! page is told how many (it offers to drop them; the system prompt stays); a last message
//! that does not fit even alone is refused, so that it never stays in the conversation. A
//! reply that reaches the end of the context is marked as cut.
//!
//! Under an attention policy that evicts (Λ or a KV budget), the conversation is not fitted:
//! the whole of it is fed (the session goes on from its history when the conversation extends
//! it) and the policy evicts what the cache cannot hold, so the chat goes on past the context.
//! The reply's statistics then say which of the conversation's tokens the cache still holds.

use super::{js, post, Worker};
use crate::protocol::{
    ChatReply, ChatRequest, EngineEvent, KeptTokens, ReplyStats, SteeringChoice,
};
use engine::models::interventions::Interventions;
use engine::models::pass::Activations;
use engine::runtime::sampling::{Sampler, SamplingParams};
use engine::runtime::{AttentionPolicy, Engine, EngineSession, Feed};
use engine::text::chat::{fit_conversation, ChatMessage, ChatTemplate, FittedPrompt};
use engine::text::tokenizer::TokenStream;
use std::cell::Cell;

impl Worker {
    pub(super) async fn on_chat(&mut self, request: ChatRequest) {
        match request {
            ChatRequest::Generate {
                request,
                messages,
                params,
                max_tokens,
                steering,
                policy,
            } => {
                let reply = Reply {
                    params,
                    max_tokens,
                    steering,
                    policy,
                };
                self.generate(request, messages, reply).await
            }
        }
    }

    /// Feeds the chat's opening (what every first question's prompt begins with: the chat
    /// format's default system prompt and the start of the user's turn) into the conversation's
    /// cache, so that the first question feeds only its own tokens. Runs after a load, while the
    /// user types; a question sent sooner waits for it and then feeds less. The opening is fed
    /// as a reply feeds it (the fastest products), so the reply is a cold cache's to rounding,
    /// as every later turn's already is; a reply with interventions starts over.
    pub(super) async fn prime_chat(&mut self) {
        self.chat = None;
        self.primed = false;
        let Some(engine) = &self.engine else {
            return;
        };
        let context = self.context.min(engine.config().context_len);
        let Some(opening) = chat_opening(engine).filter(|o| o.len() < context) else {
            return;
        };
        let Ok(mut session) = engine.session(context) else {
            return;
        };
        let feed = Feed::sequence(&opening).activations(Activations::Fastest);
        if session.feed(feed).await.is_ok() {
            self.chat = Some(session);
            self.primed = true;
        }
    }

    async fn generate(&mut self, request: u32, messages: Vec<ChatMessage>, reply_to: Reply) {
        let Reply {
            params,
            max_tokens,
            steering,
            policy,
        } = &reply_to;
        let (max_tokens, policy) = (*max_tokens, *policy);
        self.stop.set(false);
        // Computed before the reply (once per pair and layer): the prompt and every decoding
        // step run under the same interventions, so the conversation's cache stays usable.
        let interventions = match self.steering_for(steering.as_ref()).await {
            Ok(interventions) => interventions,
            Err(e) => {
                post(ChatReply::Failed {
                    request,
                    message: format!("cannot steer: {e}"),
                });
                return;
            }
        };
        if std::mem::take(&mut self.primed) && !interventions.is_empty() {
            // The opening was fed without them.
            self.chat = None;
        }
        let result = match &self.engine {
            Some(engine) => {
                let context = self.context.min(engine.config().context_len);
                // Room for the reply: what was asked for, within a quarter of the context.
                let reserve = max_tokens.clamp(1, (context / 4).max(1));
                let fitted = if policy.evicts() {
                    // The policy evicts instead: the whole conversation, however long.
                    conversation_ids(engine, &messages, true)
                        .map(|ids| FittedPrompt { ids, dropped: 0 })
                } else {
                    fit(engine, &messages, context, reserve)
                };
                let ids = match fitted {
                    Ok(FittedPrompt { ids, dropped: 0 }) => ids,
                    Ok(FittedPrompt { dropped, .. }) => {
                        post(ChatReply::TooLong {
                            request,
                            dropped,
                            context,
                        });
                        return;
                    }
                    Err(engine::Error::ContextOverflow { prompt, .. }) => {
                        post(ChatReply::Refused {
                            request,
                            message: format!(
                                "This message is too long: with the chat's format and room for \
                                 a {reserve}-token reply it needs {prompt} tokens, and the \
                                 model's context holds {context}. It was not added to the \
                                 conversation; send a shorter one."
                            ),
                        });
                        return;
                    }
                    Err(e) => {
                        post(ChatReply::Failed {
                            request,
                            message: e.to_string(),
                        });
                        return;
                    }
                };
                let chat = Chat {
                    request,
                    ids,
                    params,
                    max_tokens,
                    context,
                    interventions: &interventions,
                    policy,
                };
                reply(engine, &mut self.chat, &chat, &self.stop).await
            }
            None => Err(engine::Error::InvalidRequest(
                "the model is not loaded yet".into(),
            )),
        };
        match result {
            Ok(stats) => post(ChatReply::Done { request, stats }),
            Err(engine::Error::Gpu(e)) => {
                // The GPU is gone: go on on the CPU with the same conversation.
                let reason = format!("the GPU failed ({e}); continuing on the CPU");
                post(ChatReply::Restarted { request });
                self.engine = None;
                self.chat = None;
                match self.load_cpu(&reason).await {
                    Ok(info) => {
                        post(EngineEvent::Loaded(Box::new(info)));
                        Box::pin(self.generate(request, messages, reply_to)).await;
                    }
                    Err(e) => post(ChatReply::Failed {
                        request,
                        message: e.message,
                    }),
                }
            }
            Err(e) => post(ChatReply::Failed {
                request,
                message: e.to_string(),
            }),
        }
    }
}

/// How to answer: as the page asked.
struct Reply {
    params: SamplingParams,
    max_tokens: usize,
    steering: Option<SteeringChoice>,
    policy: AttentionPolicy,
}

/// One reply to write: the conversation so far, fitted, and how to sample.
struct Chat<'a> {
    request: u32,
    ids: Vec<u32>,
    params: &'a SamplingParams,
    max_tokens: usize,
    /// The most tokens the conversation may hold.
    context: usize,
    /// Steering, or nothing: every feed of the reply runs under these.
    interventions: &'a Interventions,
    /// What the cache keeps (a policy that evicts lets the conversation outgrow `context`).
    policy: AttentionPolicy,
}

/// A chat format: the model's own template, or the plain one where that template fails.
pub(super) enum Format<'a> {
    Own(&'a ChatTemplate),
    Plain(ChatTemplate),
}

impl std::ops::Deref for Format<'_> {
    type Target = ChatTemplate;

    fn deref(&self) -> &ChatTemplate {
        match self {
            Format::Own(template) => template,
            Format::Plain(template) => template,
        }
    }
}

/// The chat format; `None` for a model without a template (completion mode).
pub(super) fn template(engine: &Engine) -> Option<Format<'_>> {
    match (engine.template(), engine.template_error()) {
        (Some(template), _) => Some(Format::Own(template)),
        (None, Some(_)) => Some(Format::Plain(ChatTemplate::fallback(engine.tokenizer()))),
        (None, None) => None,
    }
}

/// The token ids of a conversation: through the chat format (with the assistant's turn
/// opened when `generation_prompt`), or, for a model without one, its turns as one text to
/// continue, BOS first where the model asks for it.
pub(super) fn conversation_ids(
    engine: &Engine,
    messages: &[ChatMessage],
    generation_prompt: bool,
) -> engine::Result<Vec<u32>> {
    let tokenizer = engine.tokenizer();
    match template(engine) {
        Some(template) => tokenizer.encode(&template.render(messages, generation_prompt)?),
        None => Ok(tokenizer.with_bos(&tokenizer.encode(&completion_text(messages))?)),
    }
}

/// The ids every first question's prompt begins with, where that is more than a BOS: what the
/// prompts of two different questions share (with the default system prompt).
pub(super) fn chat_opening(engine: &Engine) -> Option<Vec<u32>> {
    let first_question = |text: &str| {
        conversation_ids(engine, &[ChatMessage::new("user", text)], true).unwrap_or_default()
    };
    let (mut a, b) = (first_question("a"), first_question("b"));
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    a.truncate(shared);
    (shared >= 2).then_some(a)
}

/// The conversation's prompt with `reserve` tokens of room in `context`: the oldest turns after
/// a system prompt left out until it fits (`dropped` says how many), or `ContextOverflow` when
/// the last message alone does not.
fn fit(
    engine: &Engine,
    messages: &[ChatMessage],
    context: usize,
    reserve: usize,
) -> engine::Result<FittedPrompt> {
    let tokenizer = engine.tokenizer();
    if let Some(template) = template(engine) {
        return fit_conversation(&template, tokenizer, messages, context, reserve);
    }
    // Completion mode: the same rule on the one text.
    let system = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let droppable = messages.len().saturating_sub(system + 1);
    let mut last = 0;
    for dropped in 0..=droppable {
        let kept: Vec<ChatMessage> = messages[..system]
            .iter()
            .chain(&messages[system + dropped..])
            .cloned()
            .collect();
        let ids = tokenizer.with_bos(&tokenizer.encode(&completion_text(&kept))?);
        if ids.len() + reserve <= context {
            return Ok(FittedPrompt { ids, dropped });
        }
        last = ids.len();
    }
    Err(engine::Error::ContextOverflow {
        prompt: last + reserve,
        context,
    })
}

/// The turns of a conversation as one text (completion mode; a system prompt has no place in
/// it): a turn that does not begin with white space starts on a new line.
pub(super) fn completion_text(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for message in messages
        .iter()
        .filter(|m| m.role != "system" && !m.content.is_empty())
    {
        let joins = text.is_empty()
            || text.ends_with(char::is_whitespace)
            || message.content.starts_with(char::is_whitespace);
        if !joins {
            text.push('\n');
        }
        text.push_str(&message.content);
    }
    text
}

/// A reply's text goes to the page at most this often (the first piece at once): each piece
/// re-renders the conversation, and the page shares the cores with the engine's threads. On a
/// 2-core machine with two engine threads, a reply decoded at 0.891 and 0.862 of the engine
/// alone with pieces every 50 ms, and at 0.921 and 0.913 every 100 ms (two runs each of
/// `tests/e2e/chat-vs-hook.mjs`, medians); ten updates a second still read as a stream.
const POST_EVERY_MS: f64 = 100.0;

/// Answers `chat.messages` in the conversation's session (made on first use), posting each
/// piece of text as it comes.
async fn reply(
    engine: &Engine,
    session: &mut Option<EngineSession>,
    chat: &Chat<'_>,
    stop: &Cell<bool>,
) -> engine::Result<ReplyStats> {
    let request = chat.request;
    let tokenizer = engine.tokenizer();
    let ids = &chat.ids;
    let context = chat.context;
    let evicts = chat.policy.evicts();
    if !evicts && ids.len() >= context {
        return Err(engine::Error::ContextOverflow {
            prompt: ids.len(),
            context,
        });
    }
    let session = match session {
        Some(s) => s,
        None => session.insert(engine.session(context)?),
    };
    // A change of policy empties the cache (it was computed under the other one).
    session.set_policy(chat.policy)?;
    let started = js::now_ms();
    let mut sampler = Sampler::new(chat.params.clone());
    let vocab = engine.config().vocab_size;
    // The cache already holds the conversation's common prefix: only the rest is fed.
    // Sampling compares nothing across backends: the fastest products even when steering
    // (`Activations::Auto` would run a steered reply in f32, several times slower).
    let first = Feed::sequence(ids)
        .top_k(sampler.selection(session.tokens(), vocab))
        .interventions(chat.interventions)
        .activations(Activations::Fastest);
    let mut candidates = session.feed(first).await?.top;
    let first_token_ms = js::now_ms() - started;
    let decode_started = js::now_ms();
    let mut printer = TokenStream::new();
    let mut unposted = String::new();
    let mut posted_at = f64::NEG_INFINITY;
    let mut generated = 0;
    let mut stopped = false;
    let mut cut = false;
    loop {
        let next = sampler.pick(&candidates);
        generated += 1;
        if tokenizer.is_end_of_generation(next) {
            break;
        }
        unposted.push_str(&printer.push(tokenizer, next));
        if !unposted.is_empty() && js::now_ms() - posted_at >= POST_EVERY_MS {
            post(ChatReply::Token {
                request,
                text: std::mem::take(&mut unposted),
            });
            posted_at = js::now_ms();
        }
        // Let Stop arrive.
        js::yield_now().await;
        if stop.get() {
            stopped = true;
            break;
        }
        if generated >= chat.max_tokens {
            break;
        }
        if !evicts && session.tokens().len() + 1 >= context {
            cut = true;
            break;
        }
        let next = [next];
        let feed = Feed::append(&next)
            .top_k(sampler.selection(session.tokens(), vocab))
            .interventions(chat.interventions)
            .activations(Activations::Fastest);
        candidates = session.feed(feed).await?.top;
    }
    unposted.push_str(&printer.finish());
    if !unposted.is_empty() {
        post(ChatReply::Token {
            request,
            text: unposted,
        });
    }
    let seconds = ((js::now_ms() - decode_started) / 1000.0).max(1e-3);
    Ok(ReplyStats {
        tokens: generated,
        tokens_per_second: generated.saturating_sub(1) as f64 / seconds,
        context_used: session.tokens().len(),
        context,
        stopped,
        first_token_ms,
        cut,
        cache: evicts.then(|| kept_tokens(engine, session)),
    })
}

/// The conversation's tokens and which the cache holds.
fn kept_tokens(engine: &Engine, session: &EngineSession) -> KeptTokens {
    let history = session.history();
    let mut kept = vec![false; history.len()];
    for &at in session.held_at() {
        if let Some(k) = kept.get_mut(at) {
            *k = true;
        }
    }
    KeptTokens {
        tokens: history
            .iter()
            .map(|&id| engine.tokenizer().token_label(id))
            .collect(),
        kept,
        evicted: session.evicted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_mode_joins_the_turns_into_one_text() {
        let messages = [
            ChatMessage::new("system", "You are helpful."),
            ChatMessage::new("user", "One, two,"),
            ChatMessage::new("assistant", " three, four"),
            ChatMessage::new("user", "Next line"),
            ChatMessage::new("assistant", ""),
        ];
        // No system prompt; a turn that starts without white space starts a new line.
        assert_eq!(
            completion_text(&messages),
            "One, two, three, four\nNext line"
        );
        assert_eq!(completion_text(&[]), "");
    }

    #[test]
    fn the_chat_opening_begins_every_first_question_and_feeding_it_first_keeps_the_reply() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../www/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
        let bytes = std::fs::read(path).expect("the bundled model (`cargo xtask setup`)");
        let mut loader = engine::runtime::EngineLoader::new(engine::runtime::Device::Cpu, None);
        loader.push(&bytes).unwrap();
        let engine = loader.finish().unwrap();

        let opening = chat_opening(&engine).expect("SmolLM2 has a chat format");
        let text = engine.tokenizer().decode(&opening);
        assert!(text.starts_with("<|im_start|>system\n"), "{text:?}");
        assert!(text.ends_with("<|im_start|>user\n"), "{text:?}");
        for question in [
            "What is the capital of France?",
            "hi",
            "2+2=",
            " leading space",
        ] {
            let ids =
                conversation_ids(&engine, &[ChatMessage::new("user", question)], true).unwrap();
            assert!(ids.starts_with(&opening), "{question:?}");
        }

        // The first reply after priming: as on a cold cache (a cache grown in two feeds agrees
        // with one feed to rounding, as every later turn of a chat already does).
        let ids = conversation_ids(
            &engine,
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
        let next = |session: &mut engine::runtime::EngineSession| {
            let feed = Feed::sequence(&ids)
                .top_k(engine::backend::Selection::greedy())
                .activations(Activations::Fastest);
            pollster::block_on(session.feed(feed)).unwrap()
        };
        let cold = next(&mut engine.session(256).unwrap());
        let mut primed = engine.session(256).unwrap();
        let feed = Feed::sequence(&opening).activations(Activations::Fastest);
        pollster::block_on(primed.feed(feed)).unwrap();
        let warm = next(&mut primed);
        assert_eq!(warm.reused, opening.len());
        assert_eq!(warm.top[0].0, cold.top[0].0);
        assert!(
            (warm.top[0].1 - cold.top[0].1).abs() < 1e-3,
            "{:?} {:?}",
            warm.top,
            cold.top
        );
    }
}
