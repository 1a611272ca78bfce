//! Chat prompts rendered from the GGUF's own `tokenizer.chat_template` (a Jinja template, as in
//! Hugging Face `transformers`), so any GGUF chat model gets its own format.
//!
//! The template comes from the file, so its work is bounded: minijinja's fuel caps the
//! instructions one rendering may run (a loop over `range(100000)` stops), and the output is
//! written through a writer that refuses more than [`MAX_OUTPUT`] bytes. What fuel cannot see is
//! a string that doubles a few dozen times in place; such a template still fails at the output
//! limit if it prints its string, but after allocating it.
//!
//! A template that fails is reported with its error; [`ChatTemplate::fallback`] then gives a
//! plain format, so the chat stays usable and says so.

use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::gguf::GgufHeader;
use serde::{Deserialize, Serialize};

/// Instructions one rendering may run: real templates need a few thousand for a long chat.
const FUEL: u64 = 1_000_000;
/// Bytes one rendering may write (a 2,048-token conversation is ~10 kB).
pub const MAX_OUTPUT: usize = 1 << 20;

/// The plain format for a model whose template failed (or to show what a chat is made of).
const FALLBACK_SOURCE: &str = "{% for message in messages %}{{ message.role }}: \
{{ message.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    /// The plain fallback format rather than the model's own.
    fallback: bool,
}

/// A writer that fails once more than [`MAX_OUTPUT`] bytes were written.
#[derive(Default)]
struct BoundedWriter {
    bytes: Vec<u8>,
    /// Set when a write was refused (minijinja reports only "I/O error").
    overflowed: bool,
}

impl std::io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    pub fn from_gguf(header: &GgufHeader, tokenizer: &Tokenizer) -> Result<Self> {
        let source = header
            .get_str("tokenizer.chat_template")
            .map_err(|_| Error::ChatTemplate("the model has no tokenizer.chat_template".into()))?
            .to_string();
        let token_text = |id: Option<u32>| {
            id.map(|id| tokenizer.token_string(id).to_string())
                .unwrap_or_default()
        };
        let template = ChatTemplate {
            source,
            bos_token: token_text(tokenizer.bos_id),
            eos_token: token_text(tokenizer.eos_id),
            fallback: false,
        };
        // Fail at load time, not at the first message, if the template does not compile.
        template.render(&[ChatMessage::new("user", "hi")], true)?;
        Ok(template)
    }

    /// A plain `role: content` format, for a model whose own template failed.
    pub fn fallback(tokenizer: &Tokenizer) -> Self {
        ChatTemplate {
            source: FALLBACK_SOURCE.to_string(),
            bos_token: tokenizer
                .bos_id
                .map(|id| tokenizer.token_string(id).to_string())
                .unwrap_or_default(),
            eos_token: String::new(),
            fallback: true,
        }
    }

    /// Whether this is the plain fallback rather than the model's own format.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prompt for `messages`; with `add_generation_prompt` it ends where the assistant's
    /// reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        // Like transformers: blocks trimmed, Python string methods available,
        // `raise_exception` for templates that check their input.
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        let template = env
            .template_from_str(&self.source)
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        let mut out = BoundedWriter::default();
        let rendered = template.render_captured_to(
            minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut out,
        );
        match rendered {
            Err(_) if out.overflowed => Err(Error::ChatTemplate(format!(
                "the template wrote more than {MAX_OUTPUT} bytes"
            ))),
            Err(e) => Err(Error::ChatTemplate(e.to_string())),
            Ok(_) => String::from_utf8(out.bytes).map_err(|e| Error::ChatTemplate(e.to_string())),
        }
    }
}

/// A conversation rendered to fit a context (see [`fit_conversation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FittedPrompt {
    pub ids: Vec<u32>,
    /// How many of the oldest turns (after a system prompt) were left out.
    pub dropped: usize,
}

/// Renders `messages` (with the generation prompt) and tokenizes them; while the prompt and
/// `reserve` more tokens (room for the reply) do not fit in `context`, leaves out the oldest
/// turn after the system prompt. The last message is never left out: if it alone does not fit,
/// that is an error (the caller should refuse it, not keep it in the conversation).
pub fn fit_conversation(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
    context: usize,
    reserve: usize,
) -> Result<FittedPrompt> {
    let system = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let droppable = messages.len().saturating_sub(system + 1);
    let render = |dropped: usize| -> Result<Vec<u32>> {
        let kept: Vec<ChatMessage> = messages[..system]
            .iter()
            .chain(&messages[system + dropped..])
            .cloned()
            .collect();
        tokenizer.encode(&template.render(&kept, true)?)
    };
    for dropped in 0..droppable {
        let ids = render(dropped)?;
        if ids.len() + reserve <= context {
            return Ok(FittedPrompt { ids, dropped });
        }
    }
    let ids = render(droppable)?;
    if ids.len() + reserve > context {
        return Err(Error::ContextOverflow {
            prompt: ids.len() + reserve,
            context,
        });
    }
    Ok(FittedPrompt {
        ids,
        dropped: droppable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.to_string(),
            bos_token: String::new(),
            eos_token: String::new(),
            fallback: false,
        }
    }

    fn render(source: &str) -> Result<String> {
        template(source).render(&[ChatMessage::new("user", "hi")], true)
    }

    #[test]
    fn a_template_that_loops_or_writes_without_end_stops_with_an_error() {
        // minijinja refuses a range of 100,000 by itself; three of 9,000 would run 7·10¹¹ times.
        let nested = "{% for a in range(9000) %}{% for b in range(9000) %}{% for c in \
                      range(9000) %}{% endfor %}{% endfor %}{% endfor %}";
        let err = render(nested).expect_err("bounded").to_string();
        assert!(err.contains("fuel"), "{err}");
        let long = "{% for a in range(9000) %}{{ 'abcdefghij' * 20 }}{% endfor %}";
        let err = render(long).expect_err("bounded").to_string();
        assert!(err.contains("bytes") || err.contains("fuel"), "{err}");
        assert!(render("{{ raise_exception('no system role') }}").is_err());
    }

    #[test]
    fn the_fallback_format_is_plain() {
        let text = template(FALLBACK_SOURCE)
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Hi"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(text, "system: Be brief.\nuser: Hi\nassistant:");
    }

    #[test]
    fn a_long_conversation_drops_its_oldest_turns_and_keeps_the_system_prompt() {
        use crate::gguf::GgufWriter;
        use crate::gguf::MetadataValue::{Array, String as Text, I32};
        // A byte-level vocabulary of single characters: one token per character.
        let mut w = GgufWriter::new();
        let chars: Vec<String> = (b' '..=b'~').map(|c| (c as char).to_string()).collect();
        w.metadata("tokenizer.ggml.model", Text("gpt2".into()));
        w.metadata(
            "tokenizer.ggml.tokens",
            Array(chars.iter().map(|c| Text(c.clone())).collect()),
        );
        w.metadata("tokenizer.ggml.merges", Array(Vec::new()));
        w.metadata(
            "tokenizer.ggml.token_type",
            Array(chars.iter().map(|_| I32(1)).collect()),
        );
        let bytes = w.to_bytes();
        let mut stream = crate::gguf::GgufStream::new(crate::gguf::Limits::default(), None);
        let header = match stream.push(&bytes).unwrap().remove(0) {
            crate::gguf::GgufEvent::Header(h) => h,
            other => panic!("{other:?}"),
        };
        let tokenizer = Tokenizer::from_gguf(&header).unwrap();
        let plain = template(FALLBACK_SOURCE);
        let messages = [
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "one"),
            ChatMessage::new("assistant", "two"),
            ChatMessage::new("user", "three"),
        ];
        let ids_of = |kept: &[ChatMessage]| {
            tokenizer
                .encode(&plain.render(kept, true).unwrap())
                .unwrap()
        };
        let last_only = ids_of(&[messages[0].clone(), messages[3].clone()]);
        let from_two = ids_of(
            &messages[..1]
                .iter()
                .chain(&messages[2..])
                .cloned()
                .collect::<Vec<_>>(),
        );
        // Room for the system prompt and the last message, not for one more turn.
        let context = last_only.len() + 8;
        assert!(from_two.len() + 8 > context);
        let fitted = fit_conversation(&plain, &tokenizer, &messages, context, 8).unwrap();
        assert_eq!(fitted.dropped, 2);
        assert_eq!(fitted.ids, last_only);
        let everything = fit_conversation(&plain, &tokenizer, &messages, 100, 8).unwrap();
        assert_eq!(everything.dropped, 0);
        // Not even the last message fits: an error, nothing dropped silently.
        assert!(fit_conversation(&plain, &tokenizer, &messages, context - 1, 8).is_err());
    }
}
