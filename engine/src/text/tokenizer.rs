//! The tokenizer, built from a GGUF's `tokenizer.ggml.*` metadata with Hugging Face's
//! `tokenizers` crate, in the two kinds llama.cpp reads most:
//! - `tokenizer.ggml.model = gpt2`, byte-level BPE (SmolLM2): control and user-defined tokens are
//!   split out of the text first, then the pre-tokenizer named by `tokenizer.ggml.pre` cuts words
//!   (`smollm`: every digit alone, then the GPT-2 pattern), then BPE merges them; decoding maps
//!   byte-level characters back to bytes;
//! - `tokenizer.ggml.model = llama`, SentencePiece (Gemma): special tokens split out first, spaces
//!   become `▁` (with one in front when `tokenizer.ggml.add_space_prefix`), then
//!   [`SentencePiece`] merges by score with byte fallback; decoding turns `▁` back into spaces and
//!   byte tokens into their byte.
//!
//! Neither adds BOS: [`Tokenizer::add_bos`] says whether the model wants it, and the callers that
//! feed a prompt from its start put it first (as llama.cpp does). [`TokenStream`] holds back an
//! incomplete UTF-8 sequence until its last byte arrives.

use super::sentencepiece::{parse_byte_token, SentencePiece};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, MetadataValue};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer, TokenizerImpl};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// SentencePiece's space marker.
const SPACE_MARKER: char = '\u{2581}';

type SentencePieceTokenizer = TokenizerImpl<
    SentencePiece,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The `tokenizers` pipeline of either kind.
enum Pipeline {
    ByteLevelBpe(Box<HfTokenizer>),
    SentencePiece(Box<SentencePieceTokenizer>),
}

/// Which of the two kinds a vocabulary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ByteLevelBpe,
    SentencePiece,
}

/// Token texts llama.cpp (the llama-cpp-python 0.3.36 build) takes for an end of generation
/// whatever their type, making them control tokens (`llama-vocab.cpp`).
const END_OF_TURN_MARKERS: [&str; 20] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];

/// Fill-in-the-middle pad / repo / file-separator markers llama.cpp also stops at; the first
/// present in each group counts.
const FIM_MARKERS: [&[&str]; 3] = [
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<reponame>"],
    &["<|file_sep|>"],
];

pub struct Tokenizer {
    inner: Pipeline,
    /// The bytes each token stands for.
    token_bytes: Vec<Vec<u8>>,
    token_strings: Vec<String>,
    is_control: Vec<bool>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether a prompt fed from its start begins with BOS (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// Ids that end a reply: eos, and control tokens llama.cpp treats as end-of-generation.
    pub end_of_generation: Vec<u32>,
}

impl Tokenizer {
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        let kind = match header.get_str("tokenizer.ggml.model")? {
            "gpt2" => Kind::ByteLevelBpe,
            "llama" => Kind::SentencePiece,
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.ggml.model {other:?} is not supported (supported: \"gpt2\", \
                     byte-level BPE, and \"llama\", SentencePiece)"
                )))
            }
        };
        let tokens = header.get_str_array("tokenizer.ggml.tokens")?;
        let mut token_types: Vec<i64> = match header.get("tokenizer.ggml.token_type") {
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

        // As llama.cpp: a token spelled like an end of turn is a control token, whatever the
        // file says, so text containing it is split there when special tokens are parsed.
        let mut end_of_turn: Vec<u32> = Vec::new();
        for (id, text) in tokens.iter().enumerate() {
            if END_OF_TURN_MARKERS.contains(text) {
                token_types[id] = TOKEN_TYPE_CONTROL;
                end_of_turn.push(id as u32);
            }
        }
        // llama.cpp's Gemma 4 exception: with `<|tool_response>`, `</s>` is text.
        if tokens.contains(&"<|tool_response>") {
            end_of_turn.retain(|&id| tokens[id as usize] != "</s>");
        }

        let inner = match kind {
            Kind::ByteLevelBpe => byte_level_bpe(header, &tokens, &token_types)?,
            Kind::SentencePiece => sentencepiece(header, &tokens, &token_types)?,
        };
        let is_control: Vec<bool> = token_types
            .iter()
            .map(|&t| t == TOKEN_TYPE_CONTROL)
            .collect();

        let byte_of_char = byte_level_decoder();
        let token_bytes = tokens
            .iter()
            .zip(&token_types)
            .map(|(text, &t)| {
                if t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED {
                    return text.as_bytes().to_vec();
                }
                match kind {
                    Kind::ByteLevelBpe => {
                        // (Run for every token of the vocabulary at each load: no allocation
                        // per character.)
                        let mut bytes = Vec::with_capacity(text.len());
                        for c in text.chars() {
                            match byte_of_char.get(c as usize).copied().flatten() {
                                Some(b) => bytes.push(b),
                                None => {
                                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes())
                                }
                            }
                        }
                        bytes
                    }
                    Kind::SentencePiece => match parse_byte_token(text) {
                        Some(byte) if t == TOKEN_TYPE_BYTE => vec![byte],
                        _ => text.replace(SPACE_MARKER, " ").into_bytes(),
                    },
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
        // Like llama.cpp (`llama-vocab.cpp`): eos and eot, every token named like an end of
        // turn, and the first fill-in-the-middle pad / repo / separator marker.
        let mut end_of_generation: Vec<u32> = [eos_id, id_of("tokenizer.ggml.eot_token_id")]
            .into_iter()
            .flatten()
            .chain(end_of_turn)
            .collect();
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

        let add_bos = header
            .get("tokenizer.ggml.add_bos_token")
            .and_then(MetadataValue::as_bool)
            .unwrap_or(false);
        Ok(Tokenizer {
            inner,
            add_bos,
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
        let encoding = match &self.inner {
            Pipeline::ByteLevelBpe(t) => t.encode(text, false),
            Pipeline::SentencePiece(t) => t.encode(text, false),
        }
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `ids` as a prompt fed from its start: with BOS first when the model wants it and the
    /// ids do not already begin with it.
    pub fn with_bos(&self, ids: &[u32]) -> Vec<u32> {
        match self.bos_id {
            Some(bos) if self.add_bos && ids.first() != Some(&bos) => {
                std::iter::once(bos).chain(ids.iter().copied()).collect()
            }
            _ => ids.to_vec(),
        }
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

/// Byte-level BPE with the GGUF's merges and the pre-tokenizer `tokenizer.ggml.pre` names.
fn byte_level_bpe(header: &GgufHeader, tokens: &[&str], token_types: &[i64]) -> Result<Pipeline> {
    let pre = header
        .get("tokenizer.ggml.pre")
        .and_then(MetadataValue::as_str)
        .unwrap_or("default");
    let merges = header.get_str_array("tokenizer.ggml.merges")?;
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
    let added = added_tokens(tokens, token_types, &[TOKEN_TYPE_CONTROL]);
    inner
        .add_special_tokens(added)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(Pipeline::ByteLevelBpe(Box::new(inner)))
}

/// SentencePiece with the GGUF's scores; spaces become `▁` first.
fn sentencepiece(header: &GgufHeader, tokens: &[&str], token_types: &[i64]) -> Result<Pipeline> {
    let scores: Vec<f32> = match header.get("tokenizer.ggml.scores") {
        Some(v) => v
            .as_array()
            .unwrap_or_default()
            .iter()
            .map(|s| s.as_f64().unwrap_or(0.0) as f32)
            .collect(),
        None => vec![0.0; tokens.len()],
    };
    if scores.len() != tokens.len() {
        return Err(Error::Tokenizer(format!(
            "{} token scores for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let unknown = header
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(MetadataValue::as_u64)
        .filter(|&id| (id as usize) < tokens.len())
        .unwrap_or(0) as u32;
    let model = SentencePiece::new(
        tokens.iter().map(|t| t.to_string()).collect(),
        scores,
        unknown,
    );
    let mut inner = SentencePieceTokenizer::new(model);
    let marker = SPACE_MARKER.to_string();
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    // llama.cpp puts the space in front of every piece of text between special tokens.
    if header
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(MetadataValue::as_bool)
        .unwrap_or(true)
    {
        normalizers.push(Prepend::new(marker.clone()).into());
    }
    normalizers.push(
        Replace::new(" ", marker.as_str())
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .into(),
    );
    inner
        .with_normalizer(Some(Normalizers::new(normalizers)))
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    // With special tokens parsed, llama.cpp matches unknown-type tokens in the text too.
    let added = added_tokens(
        tokens,
        token_types,
        &[TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN],
    );
    inner
        .add_special_tokens(added)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(Pipeline::SentencePiece(Box::new(inner)))
}

/// The tokens split out of the text before the model sees it: user-defined ones, and those of
/// `special` types (matched as special tokens).
fn added_tokens(tokens: &[&str], token_types: &[i64], special: &[i64]) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(token_types)
        .filter(|(_, &t)| special.contains(&t) || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(text, &t)| AddedToken::from(text.to_string(), special.contains(&t)))
        .collect()
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

/// GPT-2's byte-level alphabet, reversed: the byte each printable character stands for, by the
/// character's code point (all below 324).
fn byte_level_decoder() -> Vec<Option<u8>> {
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
    let mut byte_of = vec![None; 256 + extra as usize];
    for (b, c) in printable.into_iter().zip(chars) {
        byte_of[c as usize] = Some(b as u8);
    }
    byte_of
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
