//! The engine's part of the page's state: its status, compute tier and load progress, the
//! loaded model (and the one a deep link names), the model's cache, the notice about the last
//! action that failed, and the handle on the worker that every view sends its requests
//! through (restarted when the allowed origins change).

use crate::engine_client::EngineClient;
use crate::protocol::{
    CacheInfo, ComputeTier, EngineEvent, EngineRequest, FromWorker, LoadProgress, ModelInfo,
    ModelSource, TierChoice, ToWorker,
};
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use std::rc::Rc;

/// What the worker's messages go to.
type Handler = Rc<dyn Fn(FromWorker)>;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineStatus {
    Starting,
    Loading,
    Ready,
    Failed {
        message: String,
        retry: bool,
        /// The storage is full: offer to run the model from memory.
        offer_memory: bool,
    },
}

#[derive(Clone, Copy)]
pub struct EngineState {
    pub status: RwSignal<EngineStatus>,
    pub tier: RwSignal<Option<ComputeTier>>,
    pub webgpu_available: RwSignal<bool>,
    pub progress: RwSignal<Option<LoadProgress>>,
    pub model: RwSignal<Option<ModelInfo>>,
    pub cache: RwSignal<Option<CacheInfo>>,
    /// A message about the last action that failed (shown, dismissable).
    pub notice: RwSignal<Option<String>>,
    /// The model the page shows or asks for, by sha256 (and URL), for deep links: the loaded
    /// one, or the one a link named while it loads.
    pub wanted: RwSignal<Option<(String, Option<String>)>>,
    /// The source of the last load asked for (and the file that went with it).
    pub source: RwSignal<ModelSource>,
    /// Why the load waits (another tab is loading the model), while it does.
    pub waiting: RwSignal<Option<String>>,
    /// The user chose to run the model from memory, keeping nothing (this page's life).
    pub memory_only: RwSignal<bool>,
    /// The load that waits for the welcome's Start button (the browser's data saver is on).
    pub deferred: RwSignal<Option<ModelSource>>,
    file: StoredValue<Option<SendWrapper<web_sys::File>>>,
    client: StoredValue<Option<SendWrapper<EngineClient>>>,
    handler: StoredValue<Option<SendWrapper<Handler>>>,
    /// The id of the next request; replies name the request they answer with it.
    next_request: StoredValue<u32>,
}

impl EngineState {
    pub(super) fn new() -> Self {
        EngineState {
            status: RwSignal::new(EngineStatus::Starting),
            tier: RwSignal::new(None),
            webgpu_available: RwSignal::new(false),
            progress: RwSignal::new(None),
            model: RwSignal::new(None),
            cache: RwSignal::new(None),
            notice: RwSignal::new(None),
            wanted: RwSignal::new(None),
            source: RwSignal::new(ModelSource::Default),
            waiting: RwSignal::new(None),
            memory_only: RwSignal::new(false),
            deferred: RwSignal::new(None),
            file: StoredValue::new(None),
            client: StoredValue::new(None),
            handler: StoredValue::new(None),
            next_request: StoredValue::new(0),
        }
    }

    /// Starts the engine worker, whose messages go to `on_message`; says whether it started
    /// (if not, the status says why).
    pub(super) fn spawn(self, on_message: impl Fn(FromWorker) + 'static) -> bool {
        let handler: Handler = Rc::new(on_message);
        self.handler
            .set_value(Some(SendWrapper::new(Rc::clone(&handler))));
        self.start_worker(handler)
    }

    fn start_worker(self, handler: Handler) -> bool {
        match EngineClient::spawn(move |message| handler(message)) {
            Ok(client) => {
                self.client.set_value(Some(SendWrapper::new(client)));
                true
            }
            Err(message) => {
                self.status.set(EngineStatus::Failed {
                    message,
                    retry: false,
                    offer_memory: false,
                });
                false
            }
        }
    }

    /// Ends the worker and starts a new one with the same handler (its scripts are fetched
    /// again: under the service worker, with the allowed origins in their policy); then loads
    /// the model of the last load again. Whatever ran is dropped.
    pub(super) fn restart(self) -> bool {
        self.client.with_value(|client| {
            if let Some(client) = client {
                client.terminate();
            }
        });
        self.client.set_value(None);
        let Some(handler) = self.handler.with_value(|h| h.as_deref().cloned()) else {
            return false;
        };
        if !self.start_worker(handler) {
            return false;
        }
        self.send(EngineRequest::Probe);
        let file = self.file.with_value(|f| f.as_ref().map(|f| (**f).clone()));
        self.load_model(self.source.get_untracked(), file, TierChoice::Auto);
        true
    }

    /// Sends a request (of any view) to the worker; nothing happens before [`Self::spawn`].
    pub fn send(self, message: impl Into<ToWorker>) {
        let message = message.into();
        self.client.with_value(|client| {
            if let Some(client) = client {
                client.send(&message);
            }
        });
    }

    /// A fresh request id.
    pub fn next_request(self) -> u32 {
        let id = self.next_request.get_value();
        self.next_request.set_value(id.wrapping_add(1));
        id
    }

    /// The loaded model's layers (0 before one is loaded or when its header says nothing).
    pub fn n_layers(self) -> usize {
        self.model.with_untracked(|m| {
            m.as_ref()
                .and_then(|m| m.summary.config.as_ref())
                .map_or(0, |c| c.n_layers)
        })
    }

    pub fn is_ready(self) -> bool {
        self.status.with(|s| *s == EngineStatus::Ready)
    }

    /// Sends a request with a file the user opened beside it.
    pub fn send_with_file(self, message: impl Into<ToWorker>, file: &web_sys::File) {
        let message = message.into();
        self.client.with_value(|client| {
            if let Some(client) = client {
                client.send_with_file(&message, file);
            }
        });
    }

    /// Starts the load that waited for the Start button.
    pub fn start_deferred(self) {
        if let Some(source) = self.deferred.get_untracked() {
            self.deferred.set(None);
            self.load_model(source, None, TierChoice::Auto);
        }
    }

    /// Loads the model loaded now (or being loaded) again, on `tier`.
    pub fn load(self, tier: TierChoice) {
        self.status.set(EngineStatus::Loading);
        self.progress.set(None);
        self.send(EngineRequest::Load {
            tier,
            source: None,
            memory_only: self.memory_only.get_untracked(),
        });
    }

    /// Loads the model again without keeping it in the browser's storage (it was full), and
    /// every later load of this page too.
    pub fn load_into_memory(self) {
        self.memory_only.set(true);
        self.load(TierChoice::Auto);
    }

    /// Loads another model (a file the user opened comes as `file`).
    pub fn load_model(self, source: ModelSource, file: Option<web_sys::File>, tier: TierChoice) {
        self.deferred.set(None);
        self.status.set(EngineStatus::Loading);
        self.progress.set(None);
        self.model.set(None);
        self.wanted.set(match &source {
            ModelSource::Sha { sha256, url } => Some((sha256.clone(), url.clone())),
            _ => None,
        });
        self.source.set(source.clone());
        self.file.set_value(file.clone().map(SendWrapper::new));
        let message = EngineRequest::Load {
            tier,
            source: Some(source),
            memory_only: self.memory_only.get_untracked(),
        };
        match file {
            Some(file) => self.send_with_file(message, &file),
            None => self.send(message),
        }
    }

    /// Stops the load under way (a partial download stays, for Retry to resume).
    pub fn cancel_load(self) {
        if self.status.get_untracked() == EngineStatus::Loading {
            self.waiting.set(None);
            self.send(ToWorker::Stop);
        }
    }

    pub fn refresh_cache_info(self) {
        self.send(EngineRequest::CacheInfo);
    }

    pub fn clear_cache(self) {
        self.send(EngineRequest::ClearCache);
    }

    pub fn simulate_device_loss(self) {
        self.send(EngineRequest::SimulateDeviceLoss);
    }

    pub(super) fn on_event(self, event: EngineEvent) {
        match event {
            EngineEvent::Tier(tier) => self.tier.set(Some(tier)),
            EngineEvent::WebGpuAvailable(available) => self.webgpu_available.set(available),
            EngineEvent::Progress(p) => {
                self.waiting.set(None);
                self.progress.set(Some(p));
            }
            EngineEvent::Waiting(why) => self.waiting.set(Some(why)),
            EngineEvent::Loaded(info) => {
                self.waiting.set(None);
                if let ModelSource::Sha { sha256, url } = &info.source {
                    self.wanted.set(Some((sha256.clone(), url.clone())));
                }
                self.model.set(Some(*info));
                self.status.set(EngineStatus::Ready);
                self.refresh_cache_info();
            }
            EngineEvent::LoadFailed {
                message,
                retry,
                offer_memory,
            } => {
                self.waiting.set(None);
                self.status.set(EngineStatus::Failed {
                    message,
                    retry,
                    offer_memory,
                });
                self.refresh_cache_info();
            }
            EngineEvent::Cache(info) => self.cache.set(Some(info)),
        }
    }
}
