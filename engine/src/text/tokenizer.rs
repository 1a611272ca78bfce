//! The tokenizer, built from a GGUF's `tokenizer.ggml.*` metadata with Hugging Face's
//! `tokenizers` crate.
//!
//! For `tokenizer.ggml.model = gpt2` (byte-level BPE) it mirrors llama.cpp: control and
//! user-defined tokens are split out of the text first, then the pre-tokenizer named by
//! `tokenizer.ggml.pre` cuts words (`smollm`: every digit alone, then the GPT-2 pattern), then
//! BPE merges them. Decoding maps byte-level characters back to bytes; [`TokenStream`] holds back
//! an incomplete UTF-8 sequence until its last byte arrives.

use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, MetadataValue};
use std::collections::HashMap;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Token texts llama.cpp recognises as an end of turn.
const END_OF_TURN_MARKERS: [&str; 9] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle pad / repo / file-separator markers llama.cpp also stops at; the first
/// present in each group counts.
const FIM_MARKERS: [&[&str]; 3] = [
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<reponame>"],
    &["<|file_sep|>"],
];

pub struct Tokenizer {
    inner: HfTokenizer,
    /// The bytes each token stands for.
    token_bytes: Vec<Vec<u8>>,
    token_strings: Vec<String>,
    is_control: Vec<bool>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Ids that end a reply: eos, and control tokens llama.cpp treats as end-of-generation.
    pub end_of_generation: Vec<u32>,
}

impl Tokenizer {
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        let model = header.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.model {model:?} is not supported (only byte-level BPE, \"gpt2\")"
            )));
        }
        let pre = header
            .get("tokenizer.ggml.pre")
            .and_then(MetadataValue::as_str)
            .unwrap_or("default");
        let tokens = header.get_str_array("tokenizer.ggml.tokens")?;
        let merges = header.get_str_array("tokenizer.ggml.merges")?;
        let token_types: Vec<i64> = match header.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .unwrap_or_default()
                .iter()
                .map(|t| t.as_i64().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "{} token types for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.to_string(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("merge {m:?} is not \"left right\"")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut inner = HfTokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));

        let is_control: Vec<bool> = token_types
            .iter()
            .map(|&t| t == TOKEN_TYPE_CONTROL)
            .collect();
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(text, &t)| AddedToken::from(text.to_string(), t == TOKEN_TYPE_CONTROL))
            .collect();
        inner
            .add_special_tokens(added)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;

        let byte_of_char = byte_level_decoder();
        let token_bytes = tokens
            .iter()
            .zip(&token_types)
            .map(|(text, &t)| {
                if t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED {
                    text.as_bytes().to_vec()
                } else {
                    text.chars()
                        .flat_map(|c| match byte_of_char.get(&c) {
                            Some(&b) => vec![b],
                            None => c.to_string().into_bytes(),
                        })
                        .collect()
                }
            })
            .collect();

        let id_of = |key: &str| {
            header
                .get(key)
                .and_then(MetadataValue::as_u64)
                .map(|id| id as u32)
                .filter(|&id| (id as usize) < tokens.len())
        };
        let bos_id = id_of("tokenizer.ggml.bos_token_id");
        let eos_id = id_of("tokenizer.ggml.eos_token_id");
        // Like llama.cpp (`llama-vocab.cpp`): eos and eot, every control token named like an
        // end of turn, and the first fill-in-the-middle pad / repo / separator marker.
        let mut end_of_generation: Vec<u32> = [eos_id, id_of("tokenizer.ggml.eot_token_id")]
            .into_iter()
            .flatten()
            .collect();
        for (id, text) in tokens.iter().enumerate() {
            if END_OF_TURN_MARKERS.contains(text) && is_control[id] {
                end_of_generation.push(id as u32);
            }
        }
        for group in FIM_MARKERS {
            let found = group.iter().find_map(|marker| {
                tokens
                    .iter()
                    .position(|t| t == marker)
                    .filter(|&id| is_control[id])
            });
            if let Some(id) = found {
                end_of_generation.push(id as u32);
            }
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        Ok(Tokenizer {
            inner,
            token_bytes,
            token_strings: tokens.iter().map(|t| t.to_string()).collect(),
            is_control,
            bos_id,
            eos_id,
            end_of_generation,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Token ids of `text`; special tokens written in the text are parsed; no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The bytes a token stands for.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A token as people should see it in a table: its text, with invalid UTF-8 escaped.
    pub fn token_label(&self, id: u32) -> String {
        let bytes = self.token_bytes(id);
        match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => bytes
                .iter()
                .map(|b| format!("<0x{b:02X}>"))
                .collect::<String>(),
        }
    }

    /// The vocabulary's own spelling of a token (byte-level characters, `Ġ` for a space).
    pub fn token_string(&self, id: u32) -> &str {
        self.token_strings
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.is_control.get(id as usize).copied().unwrap_or(false)
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_strings
            .iter()
            .position(|t| t == text)
            .map(|i| i as u32)
    }

    /// Decodes ids to text (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = ByteLevel::new(false, true, true);
    Ok(match pre {
        // llama.cpp: `\p{N}` (each digit alone), then the GPT-2 pattern.
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])),
        "gpt-2" | "gpt2" | "default" => PreTokenizerWrapper::ByteLevel(byte_level),
        other => {
            return Err(Error::Tokenizer(format!(
                "pre-tokenizer {other:?} is not supported (supported: smollm, gpt-2)"
            )))
        }
    })
}

/// GPT-2's byte-level alphabet, reversed: the printable character that stands for each byte.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// Turns a stream of token ids into text pieces, holding back a UTF-8 sequence whose bytes
/// are split across tokens until it is complete.
#[derive(Default)]
pub struct TokenStream {
    pending: Vec<u8>,
}

impl TokenStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text that `id` completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tokenizer.token_bytes(id));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: the prefix up to `valid` is valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held back, flushed as text (U+FFFD for an unfinished sequence).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
