//! The engine's error type: every failure a user can meet, with a message they can act on.

use crate::gguf::GgufError;

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
    /// The caller asked a long computation to stop.
    #[error("stopped")]
    Cancelled,
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the GPU path is unavailable or stopped; every variant leaves the caller free to continue
/// on the CPU.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter: {0}")]
    NoAdapter(String),
    #[error("the WebGPU adapter refused a device: {0}")]
    NoDevice(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU is out of memory: {0}")]
    OutOfMemory(String),
    #[error("GPU error: {0}")]
    Other(String),
}
