//! A language model as a whole: its weights on a backend (any architecture [`Decoder`] reads),
//! its tokenizer and chat template, loaded from a GGUF byte stream as its bytes arrive.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::{GgufEvent, GgufHeader, GgufStream, Limits};
use crate::models::decoder::{Decoder, DecoderLoader};
use crate::models::shape::ModelConfig;
use crate::text::chat::ChatTemplate;
use crate::text::tokenizer::Tokenizer;
use std::sync::Arc;

pub struct LanguageModel<B: Backend> {
    pub header: Arc<GgufHeader>,
    pub tokenizer: Tokenizer,
    /// The model's chat template (`None`: it has none, or it failed; see `template_error`).
    pub template: Option<ChatTemplate>,
    /// Why the model's own template cannot be used, when it has one that fails.
    pub template_error: Option<String>,
    pub decoder: Decoder<B>,
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
    decoder: Option<DecoderLoader<B>>,
    tensors_loaded: usize,
}

impl<B: Backend> LanguageModelLoader<B> {
    pub fn new(total_bytes: Option<u64>) -> Self {
        LanguageModelLoader {
            stream: GgufStream::new(Limits::default(), total_bytes),
            total_bytes,
            header: None,
            tokenizer: None,
            decoder: None,
            tensors_loaded: 0,
        }
    }

    /// The model's shape, known once the header has arrived.
    pub fn config(&self) -> Option<&ModelConfig> {
        self.decoder.as_ref().map(|l| l.config())
    }

    /// The header, once it has arrived and passed the architecture's checks (the page plans
    /// the model's memory from it before the weights arrive).
    pub fn header(&self) -> Option<&Arc<GgufHeader>> {
        self.header.as_ref()
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
                    // Refuse other architectures, and headers that disagree with themselves,
                    // before any weight is downloaded.
                    let decoder = DecoderLoader::new(&header)?;
                    // The vocabulary must be the embedding's: checked before the tokenizer is
                    // built, whose cost grows with it (the embedding is bounded by the file).
                    let tokens = header.get_array("tokenizer.ggml.tokens")?.len();
                    if tokens != decoder.config().vocab_size {
                        return Err(Error::BadModel(format!(
                            "the tokenizer has {tokens} tokens, the embedding {}",
                            decoder.config().vocab_size
                        )));
                    }
                    self.tokenizer = Some(Tokenizer::from_gguf(&header)?);
                    self.decoder = Some(decoder);
                    self.header = Some(header);
                }
                GgufEvent::Tensor(tensor) => {
                    if let Some(decoder) = &mut self.decoder {
                        decoder.accept(backend, tensor)?;
                    }
                    self.tensors_loaded += 1;
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<LanguageModel<B>> {
        self.stream.finish()?;
        let (Some(header), Some(tokenizer), Some(decoder)) =
            (self.header, self.tokenizer, self.decoder)
        else {
            return Err(Error::BadModel("the stream ended before the header".into()));
        };
        let decoder = decoder.finish()?;
        if tokenizer.vocab_size() != decoder.config().vocab_size {
            return Err(Error::BadModel(format!(
                "the tokenizer has {} tokens, the embedding {}",
                tokenizer.vocab_size(),
                decoder.config().vocab_size
            )));
        }
        let (template, template_error) = if header.get("tokenizer.chat_template").is_none() {
            (None, None)
        } else {
            match ChatTemplate::from_gguf(&header, &tokenizer) {
                Ok(template) => (Some(template), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        Ok(LanguageModel {
            header,
            tokenizer,
            template,
            template_error,
            decoder,
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
        loader.finish()
    }

    pub fn config(&self) -> &ModelConfig {
        self.decoder.config()
    }

    /// The model's name from its metadata (`general.name`), or "the model".
    pub fn name(&self) -> String {
        self.header
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("the model")
            .to_string()
    }

    /// The final norm and output projection applied to `n` residual-stream rows (`(n, d_model)`
    /// row-major): `(n, vocab)` logits, read back. The logit lens runs this on every layer.
    pub async fn logits_of_residuals(
        &self,
        backend: &B,
        rows: &[f32],
        n: usize,
    ) -> Result<Vec<f32>> {
        let d = self.config().d_model;
        if rows.len() != n * d {
            return Err(Error::InvalidRequest(format!(
                "{} values are not {n} residual rows of {d}",
                rows.len()
            )));
        }
        let residual = backend.tensor(rows, n, d)?;
        backend
            .read(&self.decoder.logits(backend, &residual)?)
            .await
    }
}
