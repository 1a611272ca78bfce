//! The model's bytes: from the browser's cache (the Origin Private File System, or the Cache API
//! where that is missing), the network, or a file the user opened, streamed into the engine as
//! they come (the streaming itself, and `load_model`, are in `feed.rs`).
//!
//! A model counts as cached only once its sha256 matched; a marker file written after that check
//! says so (and holds the sha256). A partial download keeps its bytes, and the next attempt asks
//! the server for the rest with a Range request. Every load from the cache hashes the bytes
//! again, so a corrupted cache entry is noticed, deleted and fetched anew, never used.
//!
//! The manifest's models are stored under their file names (`models/<file>`); models the user
//! added under names of their own (`url-<hash of the URL>.gguf`, `file-<hash of the file's name,
//! size and date>.gguf`), listed by sha256 in a small index (`user-models.json`) once verified.

use super::js;
use super::storage::{Storage, StoreError};
use engine::runtime::budget::ModelSummary;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `www/models/manifest.json`: the models shipped with the page, and how to check them. `chat`
/// is the default (older readers know only it); `more` are listed after it.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub chat: ModelFile,
    #[serde(default)]
    pub more: Vec<ModelFile>,
}

impl Manifest {
    /// Every model, the default first.
    pub fn all(&self) -> impl Iterator<Item = &ModelFile> {
        std::iter::once(&self.chat).chain(&self.more)
    }

    pub fn find(&self, sha256: &str) -> Option<&ModelFile> {
        self.all().find(|m| m.sha256 == sha256)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    pub name: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// The licence text shipped beside the model (a file name in `models/`).
    #[serde(default)]
    pub licence: Option<String>,
}

impl ModelFile {
    pub fn url(&self) -> String {
        format!("models/{}", self.file)
    }

    pub fn licence_url(&self) -> Option<String> {
        self.licence.as_ref().map(|l| format!("models/{l}"))
    }

    pub fn target(&self) -> Target {
        Target {
            name: self.name.clone(),
            storage: Some(self.file.clone()),
            origin: Origin::Url(self.url()),
            bytes: self.bytes,
            sha256: Some(self.sha256.clone()),
            licence_url: self.licence_url(),
        }
    }
}

/// Where a model's bytes come from.
#[derive(Clone)]
pub enum Origin {
    Url(String),
    Disk(web_sys::File),
}

/// One model's bytes: where they are kept, where they come from, what they must hash to.
#[derive(Clone)]
pub struct Target {
    /// For people: the manifest's name, or the file's.
    pub name: String,
    /// The file's name in the browser's storage; `None`: not kept.
    pub storage: Option<String>,
    pub origin: Origin,
    pub bytes: u64,
    /// The sha256 the bytes must have; `None`: learned from them.
    pub sha256: Option<String>,
    pub licence_url: Option<String>,
}

impl Target {
    pub fn url(&self) -> Option<&str> {
        match &self.origin {
            Origin::Url(url) => Some(url),
            Origin::Disk(_) => None,
        }
    }
}

pub fn marker(storage: &str) -> String {
    format!("{storage}.verified")
}

/// Why a load stopped, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub message: String,
    pub retry: bool,
    /// The device failed (or cannot hold the model), not the bytes: the CPU may still run it.
    pub device: bool,
    /// The storage is full: the page offers to run the model from memory, without keeping it.
    pub offer_memory: bool,
}

impl LoadError {
    pub fn new(message: impl Into<String>, retry: bool) -> Self {
        LoadError {
            message: message.into(),
            retry,
            device: false,
            offer_memory: false,
        }
    }

    pub fn device(message: impl Into<String>) -> Self {
        LoadError {
            device: true,
            ..LoadError::new(message, true)
        }
    }

    /// The origin's storage cannot take the `needed` bytes still to be kept: how much is
    /// needed and free, and the way on (free space and Retry, or run from memory).
    pub async fn quota(needed: u64, why: Option<&str>) -> Self {
        let mb = |b: f64| format!("{:.1} MB", b / 1e6);
        let free = match js::storage_estimate().await {
            Some((usage, quota)) => format!(
                "{} are free ({} of the {} this site may use are taken)",
                mb((quota - usage).max(0.0)),
                mb(usage),
                mb(quota)
            ),
            None => "the browser does not say how much is free".to_string(),
        };
        let refused = why
            .map(|w| format!("the browser refused to store more ({w}). "))
            .unwrap_or_default();
        LoadError {
            offer_memory: true,
            ..LoadError::new(
                format!(
                    "there is not enough storage to keep the model: {refused}It needs {} more; \
                     {free}. Free some space (Remove cached model, or this site's data in the \
                     browser's settings) and Retry, or run it from memory for this session: it \
                     is not kept, and is downloaded again on the next visit.",
                    mb(needed as f64)
                ),
                true,
            )
        }
    }
}

impl From<engine::Error> for LoadError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::Gpu(_) => LoadError::device(e.to_string()),
            // A malformed or unsupported model will not get better by retrying.
            _ => LoadError::new(e.to_string(), false),
        }
    }
}

const MANIFEST_COPY: &str = "manifest.json";
const INDEX: &str = "user-models.json";

/// The manifest from the server, or, offline, the copy kept beside the cached model (rewritten
/// only when it changed; a copy that could not be written whole is not kept).
pub async fn fetch_manifest(store: &Store) -> Result<Manifest, LoadError> {
    let text = match js::fetch_text("models/manifest.json").await {
        Ok(text) => {
            if store
                .read_small(MANIFEST_COPY)
                .await
                .ok()
                .flatten()
                .as_deref()
                != Some(&text)
            {
                if let Err(e) = store.write_small(MANIFEST_COPY, &text).await {
                    warn(&format!("the manifest's offline copy was not kept: {e}"));
                }
            }
            text
        }
        Err(e) => store
            .read_small(MANIFEST_COPY)
            .await
            .ok()
            .flatten()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| LoadError::new(format!("cannot read the model manifest: {e}"), true))?,
    };
    serde_json::from_str(&text)
        .map_err(|e| LoadError::new(format!("the model manifest is malformed: {e}"), false))
}

pub fn warn(text: &str) {
    web_sys::console::warn_1(&wasm_bindgen::JsValue::from_str(text));
}

/// A model the user added, stored in this browser and verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredModel {
    pub sha256: String,
    /// Its file in the browser's storage.
    pub storage: String,
    pub bytes: u64,
    pub name: String,
    pub url: Option<String>,
    pub summary: Option<ModelSummary>,
}

impl StoredModel {
    pub fn target(&self) -> Target {
        Target {
            name: self.name.clone(),
            storage: Some(self.storage.clone()),
            // A stored model is read from the storage; should that copy be gone or damaged, it
            // comes again from its URL (a file opened from disk has none: opening it again is
            // the way back).
            origin: Origin::Url(self.url.clone().unwrap_or_default()),
            bytes: self.bytes,
            sha256: Some(self.sha256.clone()),
            licence_url: None,
        }
    }
}

/// The model files in the browser's storage (see [`Storage`] for where they live).
pub struct Store {
    pub(super) storage: Storage,
}

/// What is stored of one model: its verified size, or the size of a partial copy.
pub type Stored = (Option<u64>, Option<u64>);

impl Store {
    pub async fn open() -> Store {
        Store {
            storage: Storage::open().await,
        }
    }

    /// Why nothing can be cached, where that is so.
    pub fn unavailable(&self) -> Option<String> {
        self.storage.unavailable().map(str::to_string)
    }

    /// What holds the cached model, as the page shows it.
    pub fn describe(&self) -> &'static str {
        self.storage.describe()
    }

    /// Why a better store than this one is not used, where one refused.
    pub fn note(&self) -> Option<String> {
        self.storage.note.clone()
    }

    /// (verified size, partial size) of the stored copy named `storage`, `bytes` long whole.
    /// Verified: whole, and its marker (written last, after the sha256 matched) holds a
    /// sha256. An error is an error: it never means "not stored".
    pub async fn state(&self, storage: &str, bytes: u64) -> Result<Stored, String> {
        let Some(size) = self.storage.size(storage).await? else {
            return Ok((None, None));
        };
        let verified = size == bytes && self.verified_sha256(storage).await?.is_some();
        Ok(if verified {
            (Some(size), None)
        } else {
            (None, (size > 0).then_some(size))
        })
    }

    /// Whether a verified copy is stored (a store that cannot say counts as no).
    pub async fn has_verified(&self, storage: &str, bytes: u64) -> bool {
        matches!(self.state(storage, bytes).await, Ok((Some(_), _)))
    }

    /// The sha256 the marker of a verified copy holds.
    pub async fn verified_sha256(&self, storage: &str) -> Result<Option<String>, String> {
        let text = self.storage.read_small(&marker(storage)).await?;
        Ok(text
            .map(|t| t.trim().to_string())
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())))
    }

    pub async fn write_small(&self, name: &str, text: &str) -> Result<(), StoreError> {
        self.storage.write_small(name, text).await
    }

    pub async fn read_small(&self, name: &str) -> Result<Option<String>, String> {
        self.storage.read_small(name).await
    }

    /// Deletes a copy (marker first: a half-deleted copy is never taken for verified).
    pub async fn clear(&self, storage: &str) {
        for name in [marker(storage), storage.to_string()] {
            if let Err(e) = self.storage.remove(&name).await {
                warn(&format!("cannot delete {name}: {e}"));
            }
        }
    }

    /// The models the user added that are stored here.
    pub async fn index(&self) -> Vec<StoredModel> {
        let text = self
            .read_small(INDEX)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    async fn write_index(&self, index: &[StoredModel]) {
        let text = serde_json::to_string(index).unwrap_or_else(|_| "[]".into());
        if let Err(e) = self.write_small(INDEX, &text).await {
            warn(&format!("the list of stored models was not written: {e}"));
        }
    }

    /// Lists a verified model the user added (replacing an entry of the same sha256 or file).
    pub async fn remember(&self, model: StoredModel) {
        let mut index = self.index().await;
        index.retain(|m| m.sha256 != model.sha256 && m.storage != model.storage);
        index.push(model);
        self.write_index(&index).await
    }

    /// Deletes a model the user added, and its entry.
    pub async fn forget(&self, sha256: &str) {
        let mut index = self.index().await;
        for model in index.iter().filter(|m| m.sha256 == sha256) {
            self.clear(&model.storage).await;
        }
        index.retain(|m| m.sha256 != sha256);
        self.write_index(&index).await
    }

    /// Drops the entry of a stored file that is gone or damaged.
    pub async fn forget_storage(&self, storage: &str) {
        let mut index = self.index().await;
        let before = index.len();
        index.retain(|m| m.storage != storage);
        if index.len() != before {
            self.write_index(&index).await
        }
    }
}

/// The sha256 of a whole small file, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, stable name for a string (a URL, a file's name and date): 16 hex digits of its
/// sha256.
pub fn short_hash(text: &str) -> String {
    sha256_hex(text.as_bytes())[..16].to_string()
}
