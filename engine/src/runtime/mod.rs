//! Running models: a chat model as a whole ([`language_model`]), a conversation and the one way
//! to feed it ([`session`]), choosing the next token ([`sampling`]), the handles the CLI and the
//! page hold ([`engine`] for chat, [`vision`] for the classifiers), which hide the backend, and
//! what a model needs before it is loaded ([`budget`]).

pub mod budget;
mod captured;
pub mod engine;
pub mod language_model;
pub mod policy;
pub mod sampling;
pub mod session;
pub mod vision;

pub use captured::Captured;
pub use engine::{Device, Engine, EngineLoader, EngineSession};
pub use language_model::{LanguageModel, LanguageModelLoader, LoadProgress};
pub use policy::AttentionPolicy;
pub use session::{Fed, Feed, Input, Layout, Output, Session};
pub use vision::VisionEngine;
