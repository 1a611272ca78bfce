//! The model's bytes: from the browser's cache (the Origin Private File System, or the Cache API
//! where that is missing) or the network, streamed into the engine as they come.
//!
//! A model counts as cached only once its sha256 matched the manifest; a marker file written
//! after that check says so. A partial download keeps its bytes, and the next attempt asks the
//! server for the rest with a Range request. Every load from the cache hashes the bytes again,
//! so a corrupted cache entry is noticed, deleted and downloaded anew, never used.

use super::js::{self, yield_now};
use super::storage::{FileWriter, Storage};
use crate::protocol::{LoadProgress, LoadStage};
use engine::runtime::{Device, Engine, EngineLoader};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};

/// `www/models/manifest.json`: what the page may load, and how to check it.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub chat: ModelFile,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    pub name: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

impl ModelFile {
    pub fn url(&self) -> String {
        format!("models/{}", self.file)
    }

    fn marker(&self) -> String {
        format!("{}.verified", self.file)
    }
}

/// Why a load stopped, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub message: String,
    pub retry: bool,
}

impl LoadError {
    fn new(message: impl Into<String>, retry: bool) -> Self {
        LoadError {
            message: message.into(),
            retry,
        }
    }
}

impl From<engine::Error> for LoadError {
    fn from(e: engine::Error) -> Self {
        // A malformed or unsupported model will not get better by retrying.
        let retry = matches!(e, engine::Error::Gpu(_));
        LoadError::new(e.to_string(), retry)
    }
}

const MANIFEST_COPY: &str = "manifest.json";

/// The manifest from the server, or, offline, the copy kept beside the cached model.
pub async fn fetch_manifest(store: &Store) -> Result<Manifest, LoadError> {
    let text = match js::fetch_text("models/manifest.json").await {
        Ok(text) => {
            store.write_small(MANIFEST_COPY, &text).await;
            text
        }
        Err(e) => store
            .read_small(MANIFEST_COPY)
            .await
            .ok_or_else(|| LoadError::new(format!("cannot read the model manifest: {e}"), true))?,
    };
    serde_json::from_str(&text)
        .map_err(|e| LoadError::new(format!("the model manifest is malformed: {e}"), false))
}

/// The model's files in the browser's storage (see [`Storage`] for where they live).
pub struct Store {
    storage: Storage,
}

impl Store {
    pub async fn open() -> Store {
        Store {
            storage: Storage::open().await,
        }
    }

    /// Why nothing can be cached, where that is so.
    pub fn unavailable(&self) -> Option<String> {
        match &self.storage {
            Storage::Nowhere(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// What holds the cached model, as the page shows it.
    pub fn describe(&self) -> &'static str {
        self.storage.describe()
    }

    /// (verified size, partial size) of the cached copy of `file`.
    pub async fn state(&self, file: &ModelFile) -> (Option<u64>, Option<u64>) {
        let Some(size) = self.storage.size(&file.file).await else {
            return (None, None);
        };
        let verified = size == file.bytes && self.storage.size(&file.marker()).await.is_some();
        if verified {
            (Some(size), None)
        } else {
            (None, (size > 0).then_some(size))
        }
    }

    pub async fn write_small(&self, name: &str, text: &str) {
        self.storage.write_small(name, text).await
    }

    pub async fn read_small(&self, name: &str) -> Option<String> {
        self.storage.read_small(name).await
    }

    pub async fn clear(&self, file: &ModelFile) {
        self.storage.remove(&file.marker()).await;
        self.storage.remove(&file.file).await;
    }
}

/// Feeds the model's bytes to a loader for `device` and a hasher, from the cache first and then
/// the network; returns the model once its sha256 matched.
pub async fn load_model(
    device: Device,
    store: &Store,
    file: &ModelFile,
    progress: &dyn Fn(LoadProgress),
) -> Result<Engine, LoadError> {
    let mut feed = Feed::new(device, file.bytes, progress);
    let (verified, _) = store.state(file).await;
    if verified.is_some() {
        match read_cached(store, file, &mut feed).await {
            Ok(()) => return Ok(feed.finish()?),
            Err(e) if e.retry => {
                // Corrupt or unreadable: never use it, fetch it again below.
                web_sys::console::warn_1(&JsValue::from_str(&format!(
                    "cached model discarded: {}",
                    e.message
                )));
                store.clear(file).await;
                feed.restart();
            }
            Err(e) => return Err(e),
        }
    }
    download(store, file, &mut feed).await?;
    match feed.finish() {
        Ok(engine) => {
            store.write_small(&file.marker(), &file.sha256).await;
            Ok(engine)
        }
        Err(e) => {
            store.clear(file).await;
            Err(LoadError::new(
                format!("the download was damaged ({e}); it was deleted"),
                true,
            ))
        }
    }
}

/// A loader and a hasher fed the same bytes, with progress reports.
struct Feed<'a> {
    loader: EngineLoader,
    hasher: Sha256,
    fed: u64,
    total: u64,
    stage: LoadStage,
    stage_start_bytes: u64,
    stage_start_ms: f64,
    last_report_ms: f64,
    progress: &'a dyn Fn(LoadProgress),
}

impl<'a> Feed<'a> {
    fn new(device: Device, total: u64, progress: &'a dyn Fn(LoadProgress)) -> Self {
        Feed {
            loader: EngineLoader::new(device, Some(total)),
            hasher: Sha256::new(),
            fed: 0,
            total,
            stage: LoadStage::Cache,
            stage_start_bytes: 0,
            stage_start_ms: js::now_ms(),
            last_report_ms: 0.0,
            progress,
        }
    }

    /// Forgets every byte fed so far (the same device stays).
    fn restart(&mut self) {
        self.loader.restart();
        self.hasher = Sha256::new();
        self.fed = 0;
    }

    fn stage(&mut self, stage: LoadStage) {
        self.stage = stage;
        self.stage_start_bytes = self.fed;
        self.stage_start_ms = js::now_ms();
        self.report(true);
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        self.hasher.update(bytes);
        self.loader.push(bytes)?;
        self.fed += bytes.len() as u64;
        self.report(false);
        Ok(())
    }

    fn report(&mut self, force: bool) {
        let now = js::now_ms();
        if !force && now - self.last_report_ms < 100.0 && self.fed < self.total {
            return;
        }
        self.last_report_ms = now;
        let seconds = ((now - self.stage_start_ms) / 1000.0).max(1e-3);
        let p = self.loader.progress();
        (self.progress)(LoadProgress {
            stage: self.stage,
            bytes: self.fed,
            total: self.total,
            bytes_per_second: (self.fed - self.stage_start_bytes) as f64 / seconds,
            tensors_loaded: p.tensors_loaded,
            tensors_total: p.tensors_total,
        });
    }

    /// Whether everything fed so far has the manifest's sha256.
    fn verify(&self, file: &ModelFile) -> Result<(), LoadError> {
        let digest = hex(&self.hasher.clone().finalize());
        if digest != file.sha256 {
            return Err(LoadError::new(
                format!("the model's sha256 is {digest}, expected {}", file.sha256),
                true,
            ));
        }
        Ok(())
    }

    /// The model; call after [`Feed::verify`] passed.
    fn finish(self) -> Result<Engine, engine::Error> {
        self.loader.finish()
    }
}

/// The sha256 of a whole small file, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `feed` the first `len` bytes of the cached file.
async fn replay_cache(
    store: &Store,
    file: &ModelFile,
    len: u64,
    feed: &mut Feed<'_>,
) -> Result<(), LoadError> {
    let mut reader = store
        .storage
        .reader(&file.file, len)
        .await
        .map_err(|e| LoadError::new(format!("cannot read the cached model: {e}"), true))?;
    let result = loop {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = feed.push(&chunk) {
                    break Err(e);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                break Err(LoadError::new(
                    format!("cannot read the cached model: {e}"),
                    true,
                ))
            }
        }
        // Let the worker answer messages (and the page repaint its progress bar).
        yield_now().await;
    };
    reader.close();
    if result.is_ok() && feed.fed < len {
        return Err(LoadError::new(
            "the cached model is shorter than recorded",
            true,
        ));
    }
    result
}

/// Feeds the whole cached copy and checks its sha256.
async fn read_cached(
    store: &Store,
    file: &ModelFile,
    feed: &mut Feed<'_>,
) -> Result<(), LoadError> {
    feed.stage(LoadStage::Cache);
    replay_cache(store, file, file.bytes, feed).await?;
    feed.verify(file)
}

/// Downloads the model (the rest of it, after a partial download), writing it to the cache;
/// returns once every byte arrived and the sha256 matched.
async fn download(store: &Store, file: &ModelFile, feed: &mut Feed<'_>) -> Result<(), LoadError> {
    let (_, partial) = store.state(file).await;
    let mut have = partial.unwrap_or(0).min(file.bytes);
    if have > 0 {
        feed.stage(LoadStage::Cache);
        if replay_cache(store, file, have, feed).await.is_err() {
            // The partial copy is unusable: start over.
            store.clear(file).await;
            feed.restart();
            have = 0;
        }
    }
    let mut writer = store
        .storage
        .writer(&file.file, have)
        .await
        .map_err(|e| LoadError::new(format!("cannot store the model: {e}"), true))?;
    let result = download_rest(file, feed, &mut writer, have).await;
    // Whatever arrived is kept, so that a retry resumes from there.
    let stored = writer.close().await;
    result?;
    stored.map_err(|e| LoadError::new(format!("cannot store the model: {e}"), true))?;
    if let Err(e) = feed.verify(file) {
        store.clear(file).await;
        return Err(LoadError::new(
            format!("the download was damaged ({}); it was deleted", e.message),
            true,
        ));
    }
    Ok(())
}

async fn download_rest(
    file: &ModelFile,
    feed: &mut Feed<'_>,
    writer: &mut FileWriter,
    mut have: u64,
) -> Result<(), LoadError> {
    feed.stage(LoadStage::Download);
    let response = js::fetch_range(&file.url(), have)
        .await
        .map_err(|e| LoadError::new(format!("cannot download the model: {e}"), true))?;
    match response.status() {
        206 if have > 0 => {}
        200 => {
            if have > 0 {
                // The server ignored the Range: start from the first byte.
                return Err(LoadError::new(
                    "the server does not resume downloads; retry to start over",
                    true,
                ));
            }
        }
        status => {
            return Err(LoadError::new(
                format!("the server answered {status} for {}", file.url()),
                true,
            ));
        }
    }
    let body = response
        .body()
        .ok_or_else(|| LoadError::new("the model response has no body", true))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    loop {
        let chunk = js::read_chunk(&reader).await.map_err(|e| {
            LoadError::new(
                format!(
                    "the download stopped at {:.1} of {:.1} MB ({e}); retrying resumes it",
                    have as f64 / 1e6,
                    file.bytes as f64 / 1e6
                ),
                true,
            )
        })?;
        let Some(chunk) = chunk else { break };
        if have + chunk.len() as u64 > file.bytes {
            return Err(LoadError::new(
                "the server sent more bytes than the model has",
                true,
            ));
        }
        writer
            .write(&chunk)
            .await
            .map_err(|e| LoadError::new(format!("cannot store the model: {e}"), true))?;
        feed.push(&chunk)?;
        have += chunk.len() as u64;
    }
    if have < file.bytes {
        return Err(LoadError::new(
            format!(
                "the download stopped at {:.1} of {:.1} MB; retrying resumes it",
                have as f64 / 1e6,
                file.bytes as f64 / 1e6
            ),
            true,
        ));
    }
    Ok(())
}
