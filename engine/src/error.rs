//! The engine's error type: every failure a user can meet, with a message they can act on.

use crate::gguf::GgufError;
use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed GGUF: {0}")]
    Gguf(#[from] GgufError),
    #[error("unsupported architecture: {0}")]
    UnsupportedArchitecture(String),
    #[error("the model file is missing something: {0}")]
    BadModel(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("the prompt is {prompt} tokens long but the context holds {context} tokens")]
    ContextOverflow { prompt: usize, context: usize },
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("CPU backend: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
