//! The models, one architecture per file, each written once against [`crate::backend::Backend`]:
//! the language models ([`llama`], [`gemma3`], sharing [`shape`], [`taps`],
//! [`interventions`] and [`pass`], dispatched by
//! [`decoder`]) and the MNIST classifiers ([`vision`]).

pub mod decoder;
pub mod gemma3;
pub mod interventions;
pub mod llama;
pub mod pass;
pub mod shape;
pub mod taps;
pub mod vision;
pub mod weights;
