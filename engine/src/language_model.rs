//! A chat model as a whole: the llama weights on a backend, its tokenizer and chat template,
//! loaded from a GGUF byte stream; and [`Session`], a conversation's KV cache and positions.

use crate::backend::{Backend, Mask};
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::gguf::{GgufEvent, GgufHeader, GgufStream, Limits};
use crate::models::llama::{Captures, Llama, LlamaConfig, LlamaLoader, Taps};
use crate::set_prompt::SetPrompt;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

pub struct LanguageModel<B: Backend> {
    pub header: Arc<GgufHeader>,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub llama: Llama<B>,
}

/// How far a load has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadProgress {
    pub bytes: u64,
    pub total_bytes: Option<u64>,
    pub tensors_loaded: usize,
    pub tensors_total: usize,
}

/// Feeds a GGUF stream in and gets a model out; each tensor goes to the backend as soon as its
/// bytes are complete.
pub struct LanguageModelLoader<B: Backend> {
    stream: GgufStream,
    total_bytes: Option<u64>,
    header: Option<Arc<GgufHeader>>,
    tokenizer: Option<Tokenizer>,
    llama: Option<LlamaLoader<B>>,
    tensors_loaded: usize,
}

impl<B: Backend> LanguageModelLoader<B> {
    pub fn new(total_bytes: Option<u64>) -> Self {
        LanguageModelLoader {
            stream: GgufStream::new(Limits::default(), total_bytes),
            total_bytes,
            header: None,
            tokenizer: None,
            llama: None,
            tensors_loaded: 0,
        }
    }

    /// The model's shape, known once the header has arrived.
    pub fn config(&self) -> Option<&LlamaConfig> {
        self.llama.as_ref().map(|l| l.config())
    }

    pub fn push(&mut self, backend: &B, chunk: &[u8]) -> Result<LoadProgress> {
        let events = self.stream.push(chunk)?;
        self.handle(backend, events)?;
        Ok(self.progress())
    }

    pub fn progress(&self) -> LoadProgress {
        LoadProgress {
            bytes: self.stream.position(),
            total_bytes: self.total_bytes,
            tensors_loaded: self.tensors_loaded,
            tensors_total: self.header.as_ref().map_or(0, |h| h.tensors.len()),
        }
    }

    fn handle(&mut self, backend: &B, events: Vec<GgufEvent>) -> Result<()> {
        for event in events {
            match event {
                GgufEvent::Header(header) => {
                    // Refuse other architectures before any weight is downloaded.
                    self.llama = Some(LlamaLoader::new(&header)?);
                    self.tokenizer = Some(Tokenizer::from_gguf(&header)?);
                    self.header = Some(header);
                }
                GgufEvent::Tensor(tensor) => {
                    if let Some(llama) = &mut self.llama {
                        llama.accept(backend, &tensor)?;
                    }
                    self.tensors_loaded += 1;
                }
            }
        }
        Ok(())
    }

    pub fn finish(mut self, backend: &B) -> Result<LanguageModel<B>> {
        let stream = std::mem::replace(&mut self.stream, GgufStream::new(Limits::default(), None));
        stream.finish()?;
        let _ = backend;
        let (Some(header), Some(tokenizer), Some(llama)) =
            (self.header, self.tokenizer, self.llama)
        else {
            return Err(Error::BadModel("the stream ended before the header".into()));
        };
        let llama = llama.finish()?;
        if tokenizer.vocab_size() != llama.config.vocab_size {
            return Err(Error::BadModel(format!(
                "the tokenizer has {} tokens, the embedding {}",
                tokenizer.vocab_size(),
                llama.config.vocab_size
            )));
        }
        let template = ChatTemplate::from_gguf(&header, &tokenizer).ok();
        Ok(LanguageModel {
            header,
            tokenizer,
            template,
            llama,
        })
    }
}

impl<B: Backend> LanguageModel<B> {
    /// Loads a GGUF file from disk through the stream reader.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(backend: &B, path: &std::path::Path) -> Result<Self> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut loader = LanguageModelLoader::new(Some(len));
        let mut buffer = vec![0u8; 4 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            loader.push(backend, &buffer[..n])?;
        }
        loader.finish(backend)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.llama.config
    }
}

/// One conversation's state: the KV cache, and the tokens and positions it holds.
pub struct Session<B: Backend> {
    caches: Vec<B::Cache>,
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    capacity: usize,
}

/// Which next-token candidates [`Session::feed_select`] returns: the `k` best after the
/// repetition penalty on `penalized` ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub k: usize,
    pub penalized: Vec<u32>,
    pub penalty: f32,
}

/// What one [`Session::feed`] returns.
pub struct FeedOutput<B: Backend> {
    /// Logits of the last fed token.
    pub logits: Vec<f32>,
    pub captures: Captures<B>,
}

/// Prompts longer than this are fed in pieces, to bound the attention scores' memory.
const PREFILL_CHUNK: usize = 512;

impl<B: Backend> Session<B> {
    /// A session holding up to `capacity` tokens (at most the model's context length).
    pub fn new(model: &LanguageModel<B>, backend: &B, capacity: usize) -> Result<Self> {
        let capacity = capacity.min(model.config().context_len).max(1);
        Ok(Session {
            caches: model.llama.new_caches(backend, capacity)?,
            tokens: Vec::new(),
            positions: Vec::new(),
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Position of the next token: one past the last (Set-Based Prompting can leave gaps).
    /// The position after every position used so far (after a set, past its longest member).
    pub fn next_position(&self) -> u32 {
        self.positions.iter().max().map_or(0, |p| p + 1)
    }

    /// Feeds `ids` at consecutive positions under the causal mask; returns the last token's
    /// logits (all of them: see [`Session::feed_select`] for the cheap way on WebGPU).
    pub async fn feed(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        taps: Taps,
    ) -> Result<FeedOutput<B>> {
        let positions = self.next_positions(ids.len());
        self.feed_with(model, backend, ids, &positions, &Mask::Causal, taps)
            .await
    }

    /// Feeds `ids` at explicit `positions` under `mask` (rows: these ids; columns: everything
    /// cached plus these ids).
    pub async fn feed_with(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        positions: &[u32],
        mask: &Mask,
        taps: Taps,
    ) -> Result<FeedOutput<B>> {
        let before = self.tokens.len();
        let (logits, captures) = self.forward(model, backend, ids, positions, mask, taps)?;
        match backend.read(&logits).await {
            Ok(logits) => Ok(FeedOutput { logits, captures }),
            Err(e) => {
                // The GPU failed after recording: forget this step, keep the conversation.
                self.truncate(backend, before);
                Err(e)
            }
        }
    }

    /// Feeds a Set-Based Prompt after what the session holds: its block mask, its positions
    /// shifted to start at [`Session::next_position`].
    pub async fn feed_set(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        prompt: &SetPrompt,
        taps: Taps,
    ) -> Result<FeedOutput<B>> {
        let (positions, mask) = self.set_inputs(prompt);
        self.feed_with(model, backend, &prompt.ids, &positions, &mask, taps)
            .await
    }

    /// Feeds `ids` (consecutive positions, causal) and returns only the `k` best next tokens
    /// after the repetition penalty on `penalized`: on WebGPU a few bytes are read back.
    pub async fn feed_select(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        selection: &Selection,
    ) -> Result<Vec<(u32, f32)>> {
        let positions = self.next_positions(ids.len());
        self.feed_select_with(model, backend, ids, &positions, &Mask::Causal, selection)
            .await
    }

    /// [`Session::feed_select`] for a Set-Based Prompt.
    pub async fn feed_set_select(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        prompt: &SetPrompt,
        selection: &Selection,
    ) -> Result<Vec<(u32, f32)>> {
        let (positions, mask) = self.set_inputs(prompt);
        self.feed_select_with(model, backend, &prompt.ids, &positions, &mask, selection)
            .await
    }

    async fn feed_select_with(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        positions: &[u32],
        mask: &Mask,
        selection: &Selection,
    ) -> Result<Vec<(u32, f32)>> {
        let before = self.tokens.len();
        let (logits, _) = self.forward(model, backend, ids, positions, mask, Taps::default())?;
        let picked = backend
            .top_k(
                &logits,
                selection.k,
                &selection.penalized,
                selection.penalty,
            )
            .await;
        if picked.is_err() {
            self.truncate(backend, before);
        }
        picked
    }

    /// A Set-Based Prompt's positions and mask when it follows what the session holds.
    fn set_inputs(&self, prompt: &SetPrompt) -> (Vec<u32>, Mask) {
        (
            prompt.positions_from(self.next_position()),
            prompt.mask(self.tokens.len()),
        )
    }

    fn next_positions(&self, n: usize) -> Vec<u32> {
        let start = self.next_position();
        (0..n as u32).map(|i| start + i).collect()
    }

    /// Runs the model over `ids` in chunks; returns the last token's logits, unread.
    fn forward(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        positions: &[u32],
        mask: &Mask,
        taps: Taps,
    ) -> Result<(B::Tensor, Captures<B>)> {
        if ids.is_empty() {
            return Err(Error::InvalidRequest(
                "nothing to feed: the prompt is empty".into(),
            ));
        }
        if positions.len() != ids.len() {
            return Err(Error::InvalidRequest(format!(
                "{} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        let needed = self.tokens.len() + ids.len();
        if needed > self.capacity {
            return Err(Error::ContextOverflow {
                prompt: needed,
                context: self.capacity,
            });
        }
        let mut captures = Captures::default();
        let mut logits = None;
        // An explicit mask spans all of `ids`: it is fed in one piece.
        let chunk = if matches!(mask, Mask::Causal) && taps == Taps::default() {
            PREFILL_CHUNK
        } else {
            ids.len()
        };
        for start in (0..ids.len()).step_by(chunk) {
            let end = (start + chunk).min(ids.len());
            let forward = model.llama.forward(
                backend,
                &ids[start..end],
                &positions[start..end],
                mask,
                &mut self.caches,
                1,
                taps,
            );
            let (out, caps) = match forward {
                Ok(result) => result,
                Err(e) => {
                    // Some layers may have cached this chunk: undo, so the session stays usable.
                    let keep = self.tokens.len();
                    self.truncate(backend, keep);
                    return Err(e);
                }
            };
            captures.attention.extend(caps.attention);
            captures.residual.extend(caps.residual);
            captures.queries.extend(caps.queries);
            captures.keys.extend(caps.keys);
            self.tokens.extend_from_slice(&ids[start..end]);
            self.positions.extend_from_slice(&positions[start..end]);
            logits = Some(out);
        }
        let logits = logits.ok_or_else(|| Error::InvalidRequest("nothing was fed".into()))?;
        Ok((logits, captures))
    }

    /// Keeps the cache's longest common prefix with `ids` (a conversation that grew by a turn
    /// reuses all of it) and returns its length; at least the last id is left to feed, for
    /// its logits. Only for plain (consecutive, causal) prompts.
    pub fn keep_common_prefix(&mut self, backend: &B, ids: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        self.truncate(backend, common);
        common
    }

    /// Forgets everything from token `len` on.
    pub fn truncate(&mut self, backend: &B, len: usize) {
        for cache in &mut self.caches {
            backend.cache_truncate(cache, len);
        }
        self.tokens.truncate(len);
        self.positions.truncate(len);
    }
}
