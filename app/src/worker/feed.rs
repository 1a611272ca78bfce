//! Streaming a model's bytes into the engine: from the browser's storage, the network (resuming
//! with a Range request) or a file the user opened, each chunk fed at once to the GGUF reader
//! (`EngineLoader::push`) and to a SHA-256 hasher. The header is checked (the memory plan,
//! [`Hooks::on_header`]) before the weights arrive; Stop ends the stream between chunks.
//! [`load_model`] is the way in. What arrives goes to the storage through a [`Sink`]: a server
//! that ignores a resume's Range sends the whole file, and the partial copy is written again
//! from its first byte; a full quota stops the load with what is needed and free; a store that
//! refuses a write is given up and the load goes on from memory. The verified marker is
//! written last, once the sha256 matched.

use super::js::{self, yield_now};
use super::storage::{FileWriter, StoreError};
use super::store::{hex, marker, warn, LoadError, Origin, Store, Target};
use crate::protocol::{LoadProgress, LoadStage};
use engine::gguf::GgufHeader;
use engine::runtime::{Device, Engine, EngineLoader};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use wasm_bindgen::JsCast;

mod file_hash;
mod stored;
use stored::{read_cached, replay_cache};

/// A file the user opened is read this many bytes at a time.
const DISK_CHUNK: u64 = 4 << 20;
const CANCELLED: &str = "cancelled";

/// What a load reports to, and listens to.
pub struct Hooks<'a> {
    pub progress: &'a dyn Fn(LoadProgress),
    /// Raised by Stop: the load ends between two chunks, keeping what was stored.
    pub stop: &'a Cell<bool>,
    /// Called once, with the header, before the weights arrive: an error ends the load.
    pub on_header: &'a dyn Fn(&GgufHeader) -> Result<(), LoadError>,
}

/// Whether the load ended because the user stopped it.
pub fn cancelled(e: &LoadError) -> bool {
    e.message.starts_with(CANCELLED)
}

fn cancel_error(have: u64, total: u64) -> LoadError {
    LoadError::new(
        format!(
            "{CANCELLED} at {:.1} of {:.1} MB; Retry resumes it",
            have as f64 / 1e6,
            total as f64 / 1e6
        ),
        true,
    )
}

/// A loader and a hasher fed the same bytes, with progress reports.
pub struct Feed<'a> {
    loader: EngineLoader,
    hasher: Sha256,
    /// The digest of the first bytes fed (how many, and its hex), where the browser computed
    /// it: a stored copy read whole.
    digest_elsewhere: Option<(u64, String)>,
    fed: u64,
    total: u64,
    header_seen: bool,
    stage: LoadStage,
    stage_start_bytes: u64,
    stage_start_ms: f64,
    last_report_ms: f64,
    hooks: &'a Hooks<'a>,
}

impl<'a> Feed<'a> {
    pub fn new(device: Device, total: u64, hooks: &'a Hooks<'a>) -> Self {
        Feed {
            loader: EngineLoader::new(device, Some(total)),
            hasher: Sha256::new(),
            digest_elsewhere: None,
            fed: 0,
            total,
            header_seen: false,
            stage: LoadStage::Cache,
            stage_start_bytes: 0,
            stage_start_ms: js::now_ms(),
            last_report_ms: 0.0,
            hooks,
        }
    }

    /// Forgets every byte fed so far (the same device stays).
    pub fn restart(&mut self) {
        self.loader.restart();
        self.hasher = Sha256::new();
        self.digest_elsewhere = None;
        self.fed = 0;
        self.header_seen = false;
    }

    fn stage(&mut self, stage: LoadStage) {
        self.stage = stage;
        self.stage_start_bytes = self.fed;
        self.stage_start_ms = js::now_ms();
        self.report(true);
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        self.push_unhashed(bytes)?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Feeds the loader only: the caller hashes these bytes (see [`Feed::digested_elsewhere`]).
    fn push_unhashed(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        if self.hooks.stop.get() {
            return Err(cancel_error(self.fed, self.total));
        }
        self.loader.push(bytes)?;
        self.fed += bytes.len() as u64;
        if !self.header_seen {
            if let Some(header) = self.loader.header() {
                self.header_seen = true;
                (self.hooks.on_header)(header)?;
            }
        }
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
        (self.hooks.progress)(LoadProgress {
            stage: self.stage,
            bytes: self.fed,
            total: self.total,
            bytes_per_second: (self.fed - self.stage_start_bytes) as f64 / seconds,
            tensors_loaded: p.tensors_loaded,
            tensors_total: p.tensors_total,
        });
    }

    /// Everything fed so far was hashed by the caller, to this digest.
    fn digested_elsewhere(&mut self, digest: &[u8]) {
        self.digest_elsewhere = Some((self.fed, hex(digest)));
    }

    /// The sha256 of everything fed so far, as hex. (Bytes fed after a digest made elsewhere
    /// were hashed by no one: the hasher's digest then matches nothing, and the load fails.)
    fn digest(&self) -> String {
        match &self.digest_elsewhere {
            Some((fed, digest)) if *fed == self.fed => digest.clone(),
            _ => hex(&self.hasher.clone().finalize()),
        }
    }

    /// The digest, if it is `expected` (or nothing was expected).
    fn verify(&self, expected: Option<&str>) -> Result<String, LoadError> {
        let digest = self.digest();
        match expected {
            Some(expected) if expected != digest => Err(LoadError::new(
                format!("the model's sha256 is {digest}, expected {expected}"),
                true,
            )),
            _ => Ok(digest),
        }
    }

    /// The model; call after the bytes verified.
    pub fn finish(self) -> Result<Engine, engine::Error> {
        self.loader.finish()
    }
}

/// What [`load_model`] gives: the model, the sha256 its bytes have, and anything worth saying
/// about where it is kept.
pub struct LoadedBytes {
    pub engine: Engine,
    pub sha256: String,
    pub note: Option<String>,
}

fn stored_state_error(e: String) -> LoadError {
    LoadError::new(
        format!("cannot read the stored model ({e}); Retry, or Remove cached model"),
        true,
    )
}

/// Feeds the model's bytes to a loader for `device` and a hasher, from the cache first, then the
/// network or the file; returns the model once its sha256 matched (or, with none expected, once
/// every byte arrived and the model was whole).
pub async fn load_model(
    device: Device,
    store: &Store,
    target: &Target,
    hooks: &Hooks<'_>,
) -> Result<LoadedBytes, LoadError> {
    let mut feed = Feed::new(device, target.bytes, hooks);
    if let Some(storage) = &target.storage {
        let (verified, _) = store
            .state(storage, target.bytes)
            .await
            .map_err(stored_state_error)?;
        if verified.is_some() {
            let expected = match &target.sha256 {
                Some(sha) => Some(sha.clone()),
                None => store
                    .verified_sha256(storage)
                    .await
                    .map_err(stored_state_error)?,
            };
            match read_cached(store, storage, target.bytes, expected.as_deref(), &mut feed).await {
                Ok(sha256) => {
                    return Ok(LoadedBytes {
                        engine: feed.finish()?,
                        sha256,
                        note: None,
                    })
                }
                Err(e) if e.retry && !e.device && !cancelled(&e) => {
                    // Corrupt or unreadable: never use it, fetch it again below.
                    warn(&format!("cached model discarded: {}", e.message));
                    store.clear(storage).await;
                    feed.restart();
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (sha256, kept) = match &target.origin {
        Origin::Url(url) if url.is_empty() => {
            return Err(LoadError::new(
                "the stored copy of this model is gone, and it came from a file: open the \
                 file again",
                false,
            ))
        }
        Origin::Url(url) => download(store, target, url, &mut feed).await?,
        Origin::Disk(file) => read_disk(store, target, file, &mut feed).await?,
    };
    match feed.finish() {
        Ok(engine) => {
            let mut note = kept.note;
            if let (Some(storage), true) = (&target.storage, kept.keeps) {
                // Last: only now does the stored copy count as verified.
                if let Err(e) = store.write_small(&marker(storage), &sha256).await {
                    store.clear(storage).await;
                    note = Some(format!(
                        "The model was not kept ({e}): it is downloaded again on the next visit."
                    ));
                }
            }
            Ok(LoadedBytes {
                engine,
                sha256,
                note,
            })
        }
        Err(e) => {
            if let Some(storage) = &target.storage {
                store.clear(storage).await;
            }
            let what = match target.origin {
                Origin::Url(_) => "the download was damaged",
                Origin::Disk(_) => "the file is not a whole model",
            };
            Err(LoadError::new(
                format!("{what} ({e}); nothing was kept"),
                matches!(target.origin, Origin::Url(_)),
            ))
        }
    }
}

/// Whether the bytes were kept, and why not where they were meant to be.
pub struct Kept {
    pub keeps: bool,
    pub note: Option<String>,
}

/// Where the bytes of a load are written: the storage, or nowhere once it refused.
struct Sink<'a> {
    store: &'a Store,
    name: String,
    writer: FileWriter,
    /// Where the writer is in the file, and the whole file's length.
    at: u64,
    total: u64,
    note: Option<String>,
}

impl<'a> Sink<'a> {
    /// A writer from byte `at` on (`name` None: nothing is kept). A full quota, seen before a
    /// byte is written (the storage estimate) or at the first write, ends the load; a store
    /// that refuses is given up.
    async fn open(
        store: &'a Store,
        name: Option<&str>,
        at: u64,
        total: u64,
    ) -> Result<Sink<'a>, LoadError> {
        let mut sink = Sink {
            store,
            name: name.unwrap_or_default().to_string(),
            writer: FileWriter::Nowhere,
            at,
            total,
            note: None,
        };
        if name.is_none() || store.unavailable().is_some() {
            return Ok(sink);
        }
        let needed = total.saturating_sub(at);
        if let Some((usage, quota)) = js::storage_estimate().await {
            if quota - usage < needed as f64 {
                return Err(LoadError::quota(needed, None).await);
            }
        }
        match store.storage.writer(&sink.name, at).await {
            Ok(writer) => sink.writer = writer,
            Err(e) => sink.fail(e).await?,
        }
        Ok(sink)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        if let Err(e) = self.writer.write(bytes).await {
            self.fail(e).await?;
        }
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Drops everything written, to write the file again from its first byte.
    async fn rewind(&mut self) -> Result<(), LoadError> {
        if self.writer.keeps() {
            let old = std::mem::replace(&mut self.writer, FileWriter::Nowhere);
            let _ = old.close().await;
            match self.store.storage.writer(&self.name, 0).await {
                Ok(writer) => self.writer = writer,
                Err(e) => self.fail(e).await?,
            }
        }
        self.at = 0;
        Ok(())
    }

    /// A full quota ends the load (what was written stays, for a Retry once there is room); any
    /// other failure gives this store up, and the load goes on from memory.
    async fn fail(&mut self, e: StoreError) -> Result<(), LoadError> {
        let old = std::mem::replace(&mut self.writer, FileWriter::Nowhere);
        let _ = old.close().await;
        if e.quota {
            return Err(
                LoadError::quota(self.total.saturating_sub(self.at), Some(&e.message)).await,
            );
        }
        let store = self.store.describe();
        self.store.storage.refuse(&e.message);
        self.store.clear(&self.name).await;
        warn(&format!(
            "the {store} refused to store the model: {}",
            e.message
        ));
        self.note = Some(format!(
            "The browser's {store} refused to store the model ({}): it runs from memory for \
             this session, and the next load uses the next store.",
            e.message
        ));
        Ok(())
    }

    /// Stores what is still buffered (on every path out: what was written is what a later
    /// attempt resumes from).
    async fn close(mut self) -> Result<Kept, LoadError> {
        let writer = std::mem::replace(&mut self.writer, FileWriter::Nowhere);
        let keeps = writer.keeps();
        if let Err(e) = writer.close().await {
            self.fail(e).await?;
            return Ok(Kept {
                keeps: false,
                note: self.note,
            });
        }
        Ok(Kept {
            keeps,
            note: self.note,
        })
    }
}

/// Reads a file the user opened, storing a copy as it goes when the target is kept; returns
/// the sha256 once every byte was read (and matched, where one was expected).
pub async fn read_disk(
    store: &Store,
    target: &Target,
    file: &web_sys::File,
    feed: &mut Feed<'_>,
) -> Result<(String, Kept), LoadError> {
    feed.stage(LoadStage::Disk);
    let mut sink = Sink::open(store, target.storage.as_deref(), 0, target.bytes).await?;
    let mut result = Ok(());
    let mut at = 0;
    while at < target.bytes {
        let end = (at + DISK_CHUNK).min(target.bytes);
        let chunk = match js::read_file(file, at, end).await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => {
                result = Err(LoadError::new("the file ended early", false));
                break;
            }
            Err(e) => {
                result = Err(LoadError::new(format!("cannot read the file: {e}"), true));
                break;
            }
        };
        if let Err(e) = sink.write(&chunk).await {
            result = Err(e);
            break;
        }
        if let Err(e) = feed.push(&chunk) {
            result = Err(e);
            break;
        }
        at += chunk.len() as u64;
    }
    let kept = sink.close().await;
    let result = result
        .and(kept)
        .and_then(|kept| Ok((feed.verify(target.sha256.as_deref())?, kept)));
    if result.is_err() {
        // A partial copy of a file is of no use: reading the file again is quick.
        if let Some(storage) = &target.storage {
            store.clear(storage).await;
        }
    }
    result
}

/// Downloads the model (the rest of it, after a partial download), writing it to the storage;
/// returns its sha256 once every byte arrived (and matched, where one was expected).
pub async fn download(
    store: &Store,
    target: &Target,
    url: &str,
    feed: &mut Feed<'_>,
) -> Result<(String, Kept), LoadError> {
    let storage = target.storage.clone().unwrap_or_default();
    let (_, partial) = match &target.storage {
        Some(s) => store
            .state(s, target.bytes)
            .await
            .map_err(stored_state_error)?,
        None => (None, None),
    };
    let mut have = partial.unwrap_or(0).min(target.bytes);
    if have > 0 {
        feed.stage(LoadStage::Cache);
        if let Err(e) = replay_cache(store, &storage, have, false, feed).await {
            if cancelled(&e) || e.device || !e.retry {
                return Err(e);
            }
            // The partial copy is unusable: start over.
            store.clear(&storage).await;
            feed.restart();
            have = 0;
        }
    }
    let mut sink = Sink::open(store, target.storage.as_deref(), have, target.bytes).await?;
    let result = download_rest(target, url, feed, &mut sink, have).await;
    // Whatever arrived is kept, so that a retry resumes from there.
    let kept = sink.close().await;
    result?;
    let kept = kept?;
    match feed.verify(target.sha256.as_deref()) {
        Ok(sha) => Ok((sha, kept)),
        Err(e) => {
            store.clear(&storage).await;
            Err(LoadError::new(
                format!("the download was damaged ({}); it was deleted", e.message),
                true,
            ))
        }
    }
}

async fn download_rest(
    target: &Target,
    url: &str,
    feed: &mut Feed<'_>,
    sink: &mut Sink<'_>,
    mut have: u64,
) -> Result<(), LoadError> {
    feed.stage(LoadStage::Download);
    let response = js::fetch_range(url, have)
        .await
        .map_err(|e| LoadError::new(format!("cannot download the model: {e}"), true))?;
    match response.status() {
        206 if have > 0 => {
            if js::range_total(&response).is_some_and(|total| total != target.bytes) {
                return Err(LoadError::new(
                    "the file on the server changed since the download began; remove the \
                     partial download (Remove cached model) and try again",
                    false,
                ));
            }
        }
        200 => {
            if have > 0 {
                // The server ignored the Range and sends the whole file: the partial copy
                // goes, and this response is the download, from its first byte.
                warn("the server does not resume downloads: starting over");
                feed.restart();
                sink.rewind().await?;
                feed.stage(LoadStage::Download);
                have = 0;
            }
        }
        status => {
            return Err(LoadError::new(
                format!("the server answered {status} for {url}"),
                true,
            ));
        }
    }
    let body = response
        .body()
        .ok_or_else(|| LoadError::new("the model response has no body", true))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let total = target.bytes;
    let stopped_at = |have: u64, e: &str| {
        LoadError::new(
            format!(
                "the download stopped at {:.1} of {:.1} MB{e}; retrying resumes it",
                have as f64 / 1e6,
                total as f64 / 1e6
            ),
            true,
        )
    };
    loop {
        let chunk = js::read_chunk(&reader)
            .await
            .map_err(|e| stopped_at(have, &format!(" ({e})")))?;
        let Some(chunk) = chunk else { break };
        if have + chunk.len() as u64 > total {
            js::cancel(&reader);
            return Err(LoadError::new(
                "the server sent more bytes than the model has",
                true,
            ));
        }
        if let Err(e) = sink.write(&chunk).await {
            js::cancel(&reader);
            return Err(e);
        }
        if let Err(e) = feed.push(&chunk) {
            js::cancel(&reader);
            return Err(e);
        }
        have += chunk.len() as u64;
    }
    if have < total {
        return Err(stopped_at(have, ""));
    }
    Ok(())
}
