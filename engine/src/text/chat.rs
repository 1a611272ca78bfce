//! Chat prompts rendered from the GGUF's own `tokenizer.chat_template` (a Jinja template, as in
//! Hugging Face `transformers`), so any GGUF chat model gets its own format.

use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::gguf::GgufHeader;
use serde::{Deserialize, Serialize};

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
        };
        // Fail at load time, not at the first message, if the template does not compile.
        template.render(&[ChatMessage::new("user", "hi")], true)?;
        Ok(template)
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
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| Error::ChatTemplate(e.to_string()))
    }
}
