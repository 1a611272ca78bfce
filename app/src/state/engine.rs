//! The engine's part of the page's state: its status, compute tier and load progress, the
//! loaded model, the model's cache, the notice about the last action that failed, and the
//! handle on the worker that every view sends its requests through.

use crate::engine_client::EngineClient;
use crate::protocol::{
    CacheInfo, ComputeTier, EngineEvent, EngineRequest, FromWorker, LoadProgress, ModelInfo,
    TierChoice, ToWorker,
};
use leptos::prelude::*;
use send_wrapper::SendWrapper;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineStatus {
    Starting,
    Loading,
    Ready,
    Failed { message: String, retry: bool },
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
    client: StoredValue<Option<SendWrapper<EngineClient>>>,
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
            client: StoredValue::new(None),
            next_request: StoredValue::new(0),
        }
    }

    /// Starts the engine worker, whose messages go to `on_message`; says whether it started
    /// (if not, the status says why).
    pub(super) fn spawn(self, on_message: impl Fn(FromWorker) + 'static) -> bool {
        match EngineClient::spawn(on_message) {
            Ok(client) => {
                self.client.set_value(Some(SendWrapper::new(client)));
                true
            }
            Err(message) => {
                self.status.set(EngineStatus::Failed {
                    message,
                    retry: false,
                });
                false
            }
        }
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

    pub fn is_ready(self) -> bool {
        self.status.with(|s| *s == EngineStatus::Ready)
    }

    pub fn load(self, tier: TierChoice) {
        self.status.set(EngineStatus::Loading);
        self.progress.set(None);
        self.send(EngineRequest::Load { tier });
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
            EngineEvent::Progress(p) => self.progress.set(Some(p)),
            EngineEvent::Loaded(info) => {
                self.model.set(Some(info));
                self.status.set(EngineStatus::Ready);
                self.refresh_cache_info();
            }
            EngineEvent::LoadFailed { message, retry } => {
                self.status.set(EngineStatus::Failed { message, retry });
                self.refresh_cache_info();
            }
            EngineEvent::Cache(info) => self.cache.set(Some(info)),
        }
    }
}
