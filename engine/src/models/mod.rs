//! The models, one architecture per file, each written once against [`crate::backend::Backend`]:
//! the language models ([`llama`], [`gemma3`], sharing [`shape`] and [`taps`], dispatched by
//! [`decoder`]) and the MNIST classifiers ([`vision`]).

pub mod decoder;
pub mod gemma3;
pub mod llama;
pub mod shape;
pub mod taps;
pub mod vision;
