//! The model list's state: the models there are (the manifest's, then those stored here), the
//! check of the model the user picked (its header's summary and memory plan, before any weight
//! is fetched), the file the user opened, and the origins the user allows model downloads from.
//!
//! The allowed origins live in a Cache API entry (`glassbox-settings-v1`,
//! `allowed-origins.json`): the service worker reads it to write the engine worker's
//! Content-Security-Policy, and the worker to say plainly why an origin is refused. After a
//! change the worker is restarted, so that its new policy applies.

use super::engine::EngineState;
use crate::protocol::{ModelCheck, ModelEntry, ModelReply, ModelRequest, ModelSource, TierChoice};
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

const SETTINGS_CACHE: &str = "glassbox-settings-v1";
const ORIGINS_ENTRY: &str = "allowed-origins.json";

#[derive(Clone, Copy)]
pub struct ModelsState {
    pub entries: RwSignal<Vec<ModelEntry>>,
    /// The check under way.
    pub checking: RwSignal<Option<u32>>,
    /// The last check's answer (or why it failed).
    pub check: RwSignal<Option<Result<Box<ModelCheck>, String>>>,
    /// Keep a copy of a file the user opens in this browser.
    pub keep: RwSignal<bool>,
    pub origins: RwSignal<Vec<String>>,
    /// A file is dragged over the page.
    pub dragging: RwSignal<bool>,
    /// The file the last check was of (it goes with its Load too).
    file: StoredValue<Option<SendWrapper<web_sys::File>>>,
    engine: EngineState,
}

impl ModelsState {
    pub(super) fn new(engine: EngineState) -> Self {
        let models = ModelsState {
            entries: RwSignal::new(Vec::new()),
            checking: RwSignal::new(None),
            check: RwSignal::new(None),
            keep: RwSignal::new(false),
            origins: RwSignal::new(Vec::new()),
            dragging: RwSignal::new(false),
            file: StoredValue::new(None),
            engine,
        };
        wasm_bindgen_futures::spawn_local(async move {
            models.origins.set(read_origins().await);
        });
        models
    }

    pub fn refresh(self) {
        self.engine.send(ModelRequest::List);
    }

    /// Reads a file's header and plans its memory (its bytes stay on this machine).
    pub fn open_file(self, file: web_sys::File) {
        let source = ModelSource::Disk {
            name: file.name(),
            bytes: file.size() as u64,
            keep: self.keep.get_untracked(),
        };
        self.file.set_value(Some(SendWrapper::new(file)));
        self.start_check(source);
    }

    /// Checks a model at `url` (with the sha256 the user expects, if any).
    pub fn check_url(self, url: &str, sha256: &str) {
        let url = url.trim();
        if url.is_empty() {
            return;
        }
        let sha256 = sha256.trim().to_ascii_lowercase();
        if !sha256.is_empty() && !is_sha256(&sha256) {
            self.check.set(Some(Err(
                "a sha256 is 64 hexadecimal digits (or leave the field empty)".into(),
            )));
            return;
        }
        self.start_check(ModelSource::Url {
            url: url.to_string(),
            sha256: (!sha256.is_empty()).then_some(sha256),
        });
    }

    pub fn check_entry(self, entry: &ModelEntry) {
        self.start_check(entry.source());
    }

    fn start_check(self, source: ModelSource) {
        let request = self.engine.next_request();
        self.checking.set(Some(request));
        self.check.set(None);
        let message = ModelRequest::Check {
            request,
            source: source.clone(),
        };
        let file = match source {
            ModelSource::Disk { .. } => self.file.with_value(|f| f.as_ref().map(|f| (**f).clone())),
            _ => None,
        };
        match file {
            Some(file) => self.engine.send_with_file(message, &file),
            None => self.engine.send(message),
        }
    }

    /// Stops the check under way (a header being fetched).
    pub fn cancel_check(self) {
        if self.checking.get_untracked().is_some() {
            self.engine.send(crate::protocol::ToWorker::Stop);
        }
    }

    /// Loads the checked model.
    pub fn load_checked(self) {
        let Some(Ok(check)) = self.check.get_untracked() else {
            return;
        };
        let (source, file) = match check.source {
            ModelSource::Disk { name, bytes, .. } => (
                ModelSource::Disk {
                    name,
                    bytes,
                    keep: self.keep.get_untracked(),
                },
                self.file.with_value(|f| f.as_ref().map(|f| (**f).clone())),
            ),
            source => (source, None),
        };
        self.check.set(None);
        self.engine.load_model(source, file, TierChoice::Auto);
    }

    pub fn forget(self, sha256: &str) {
        self.engine.send(ModelRequest::Forget {
            sha256: sha256.to_string(),
        });
    }

    pub(super) fn on_reply(self, reply: ModelReply) {
        match reply {
            ModelReply::List(entries) => self.entries.set(entries),
            ModelReply::Checked { request, result } => {
                if self.checking.get_untracked() == Some(request) {
                    self.checking.set(None);
                    self.check.set(Some(result));
                }
            }
        }
    }

    /// Adds an origin (`https://host[:port]`, from any URL on it); `Err` says why not.
    pub async fn allow_origin(self, text: &str) -> Result<(), String> {
        let origin = origin_of(text.trim())?;
        let mut origins = self.origins.get_untracked();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
        self.save_origins(origins).await
    }

    pub async fn remove_origin(self, origin: &str) -> Result<(), String> {
        let mut origins = self.origins.get_untracked();
        origins.retain(|o| o != origin);
        self.save_origins(origins).await
    }

    async fn save_origins(self, origins: Vec<String>) -> Result<(), String> {
        write_origins(&origins).await?;
        self.origins.set(origins);
        Ok(())
    }
}

pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The origin of an http(s) URL.
fn origin_of(text: &str) -> Result<String, String> {
    let url = web_sys::Url::new(text)
        .map_err(|_| format!("{text:?} is not an address (write it as https://host)"))?;
    if !matches!(url.protocol().as_str(), "https:" | "http:") {
        return Err("only http and https origins can be allowed".into());
    }
    Ok(url.origin())
}

fn origins_url() -> Option<String> {
    let base = web_sys::window()?.document()?.base_uri().ok()??;
    web_sys::Url::new_with_base(ORIGINS_ENTRY, &base)
        .ok()
        .map(|u| u.href())
}

async fn settings_cache() -> Result<web_sys::Cache, String> {
    let caches = web_sys::window()
        .ok_or("no window")?
        .caches()
        .map_err(|_| "this browser has no Cache API to keep the allowed origins in".to_string())?;
    let cache = JsFuture::from(caches.open(SETTINGS_CACHE))
        .await
        .map_err(|e| format!("cannot open the settings cache: {e:?}"))?;
    Ok(cache.unchecked_into())
}

async fn read_origins() -> Vec<String> {
    async fn read() -> Option<Vec<String>> {
        let cache = settings_cache().await.ok()?;
        let response = JsFuture::from(cache.match_with_str(&origins_url()?))
            .await
            .ok()?;
        let response: web_sys::Response = response.dyn_into().ok()?;
        let text = JsFuture::from(response.text().ok()?).await.ok()?;
        serde_json::from_str(&text.as_string()?).ok()
    }
    read().await.unwrap_or_default()
}

async fn write_origins(origins: &[String]) -> Result<(), String> {
    let cache = settings_cache().await?;
    let url = origins_url().ok_or("the page has no address")?;
    let text = serde_json::to_string(origins).map_err(|e| e.to_string())?;
    let response = web_sys::Response::new_with_opt_str(Some(&text))
        .map_err(|e| format!("cannot save the origins: {e:?}"))?;
    JsFuture::from(cache.put_with_str(&url, &response))
        .await
        .map_err(|e| format!("cannot save the origins: {e:?}"))?;
    Ok(())
}
