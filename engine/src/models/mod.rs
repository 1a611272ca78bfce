//! The models, one architecture per file, each written once against [`crate::backend::Backend`]:
//! the language models ([`llama`], [`gemma3`], behind [`decoder`], with their [`taps`]) and the
//! MNIST classifiers ([`vision`]).

pub mod decoder;
pub mod gemma3;
pub mod llama;
pub mod taps;
pub mod vision;
