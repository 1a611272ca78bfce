//! Text and tokens: the model's own tokenizer and chat template, both read from its GGUF
//! metadata.

pub mod chat;
pub mod sentencepiece;
pub mod tokenizer;
