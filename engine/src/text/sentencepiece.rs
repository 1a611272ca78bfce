//! SentencePiece's BPE as llama.cpp runs it for `tokenizer.ggml.model = llama` (Gemma, Llama 2,
//! Mistral): a `tokenizers` [`Model`] so that the crate's special-token splitting, normalizers and
//! encodings work as for the byte-level BPE.
//!
//! The algorithm is llama.cpp's `llm_tokenizer_spm` (`src/llama-vocab.cpp`): the text (spaces
//! already replaced by `▁`) starts as one symbol per character; the adjacent pair whose joined
//! text is a token with the highest score is merged, ties going to the leftmost pair, until no
//! pair joins into a token. A symbol that is no token (a character outside the vocabulary) is
//! spelled with byte tokens (`<0x41>`), or the unknown token where a byte token is missing.
//!
//! Why not `tokenizers`' own BPE with merges derived from the scores: its merges are ranked per
//! pair, and where two splits of one token compete the leftmost need not win, as it does here.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::BpeTrainer;
use tokenizers::{Model, Token};

pub struct SentencePiece {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    scores: Vec<f32>,
    /// The token spelling each byte (`<0x0A>`), where the vocabulary has one.
    byte_tokens: [Option<u32>; 256],
    unknown: u32,
}

impl SentencePiece {
    /// `tokens` and `scores` by id; byte tokens are found by their `<0xXX>` spelling.
    pub fn new(tokens: Vec<String>, scores: Vec<f32>, unknown: u32) -> Self {
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut byte_tokens = [None; 256];
        for (id, text) in tokens.iter().enumerate() {
            // As llama.cpp's `token_to_id`: a spelling listed twice maps to its last id.
            ids.insert(text.clone(), id as u32);
            if let Some(byte) = parse_byte_token(text) {
                byte_tokens[byte as usize] = Some(id as u32);
            }
        }
        SentencePiece {
            ids,
            tokens,
            scores,
            byte_tokens,
            unknown,
        }
    }

    /// The token `text` would merge into, with its score.
    fn merged(&self, text: &str) -> Option<f32> {
        let id = *self.ids.get(text)?;
        Some(self.scores.get(id as usize).copied().unwrap_or(0.0))
    }

    /// Token ids of `text`, with their byte ranges in it.
    pub fn segment(&self, text: &str) -> Vec<(u32, std::ops::Range<usize>)> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol {
                start,
                len: c.len_utf8(),
            })
            .collect();
        let n = symbols.len();
        // Neighbours as a linked list over `symbols`; a merged-away symbol gets len 0.
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
        let mut queue = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: usize, right: usize| -> Option<Bigram> {
            let (l, r) = (symbols[left], symbols[right]);
            let score = self.merged(&text[l.start..r.start + r.len])?;
            Some(Bigram {
                left,
                right,
                score,
                len: l.len + r.len,
            })
        };
        for i in 1..n {
            queue.extend(bigram(&symbols, i - 1, i));
        }
        while let Some(best) = queue.pop() {
            let (left, right) = (symbols[best.left], symbols[best.right]);
            // A pair whose symbols changed since it was queued is stale.
            if left.len == 0 || right.len == 0 || left.len + right.len != best.len {
                continue;
            }
            symbols[best.left].len += right.len;
            symbols[best.right].len = 0;
            next[best.left] = next[best.right];
            if let Some(after) = next[best.right] {
                prev[after] = Some(best.left);
            }
            if let Some(before) = prev[best.left] {
                queue.extend(bigram(&symbols, before, best.left));
            }
            if let Some(after) = next[best.left] {
                queue.extend(bigram(&symbols, best.left, after));
            }
        }
        let mut out = Vec::new();
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let Symbol { start, len } = symbols[i];
            let piece = &text[start..start + len];
            match self.ids.get(piece) {
                Some(&id) => out.push((id, start..start + len)),
                None => {
                    for (k, byte) in piece.bytes().enumerate() {
                        let id = self.byte_tokens[byte as usize].unwrap_or(self.unknown);
                        out.push((id, start + k..start + k + 1));
                    }
                }
            }
            at = next[i];
        }
        out
    }
}

/// `<0x0A>` → 0x0A.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
}

#[derive(Debug)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// The heap's greatest is the best pair: the highest score, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl Model for SentencePiece {
    /// Never used: Glassbox reads tokenizers from model files and trains none.
    type Trainer = BpeTrainer;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        Ok(self
            .segment(sequence)
            .into_iter()
            .map(|(id, range)| Token {
                id,
                value: self.tokens.get(id as usize).cloned().unwrap_or_default(),
                offsets: (range.start, range.end),
            })
            .collect())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokens.get(id as usize).cloned()
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids.clone()
    }

    fn get_vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err("a SentencePiece vocabulary read from a GGUF is not saved".into())
    }

    fn get_trainer(&self) -> BpeTrainer {
        BpeTrainer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[(&str, f32)]) -> SentencePiece {
        let mut tokens: Vec<String> = vec!["<unk>".into()];
        let mut scores = vec![0.0];
        for (piece, score) in pieces {
            tokens.push(piece.to_string());
            scores.push(*score);
        }
        for byte in 0..=255u8 {
            tokens.push(format!("<0x{byte:02X}>"));
            scores.push(0.0);
        }
        SentencePiece::new(tokens, scores, 0)
    }

    fn pieces(model: &SentencePiece, text: &str) -> Vec<String> {
        model
            .segment(text)
            .into_iter()
            .map(|(id, _)| model.tokens[id as usize].clone())
            .collect()
    }

    #[test]
    fn merges_by_score_then_leftmost_and_falls_back_to_bytes() {
        let model = vocab(&[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -3.0),
            ("bc", -2.0),
            ("abc", -5.0),
        ]);
        // "bc" outscores "ab"; then nothing joins "a" and "bc"... except "abc".
        assert_eq!(pieces(&model, "abc"), ["abc"]);
        assert_eq!(pieces(&model, "ab"), ["ab"]);
        // Equal scores: the leftmost pair first ("a"+"a" before the second "a"+"a").
        let model = vocab(&[("a", -1.0), ("aa", -2.0)]);
        assert_eq!(pieces(&model, "aaa"), ["aa", "a"]);
        // "é" is not in the vocabulary: its two UTF-8 bytes as byte tokens.
        assert_eq!(pieces(&model, "aé"), ["a", "<0xC3>", "<0xA9>"]);
        assert!(pieces(&model, "").is_empty());
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xFF>"), Some(255));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
    }
}
