//! The page's state, in signals, and the actions that change it. The conversation and the
//! settings survive a reload (localStorage); everything else comes back from the worker.
//!
//! Each view has its part: `chat` (the conversation and the sampling settings), `order`,
//! `explore` (the attention explorer), `vision` and `lab` (ablation and patching); `engine` holds the engine's status, model,
//! cache and the worker handle they all send through; `models` the model list, the check of a
//! model before it is loaded, and the origins models may come from. [`AppState`] holds them all, and what
//! spans them: the view shown, embed mode, deep links (`deep_links`), the benchmark hook
//! (`bench`), and the rule that the chat model does one thing at a time.

mod bench;
mod chat;
mod deep_links;
mod engine;
mod explore;
pub mod first_visit;
mod lab;
mod models;
mod order;
mod vision;

use crate::deep_link::Figure;
pub use crate::deep_link::View;
use crate::protocol::{
    EngineEvent, EngineRequest, FromWorker, InspectSource, ModelRequest, ModelSource, TierChoice,
};
use bench::BenchHook;
pub use chat::{ChatState, PolicyKind, PolicySettings, Role, Settings, Turn};
use deep_links::DeepLinks;
pub use engine::{EngineState, EngineStatus};
pub use explore::ExplorerState;
pub use lab::{LabState, DEFAULT_CLEAN, DEFAULT_CORRUPT, DEFAULT_PROMPT};
use leptos::prelude::*;
pub use models::{is_sha256, ModelsState};
pub use order::OrderState;
pub use vision::{report_dims, VisionState, VitMap};

#[derive(Clone, Copy)]
pub struct AppState {
    pub engine: EngineState,
    pub chat: ChatState,
    pub order: OrderState,
    pub explorer: ExplorerState,
    pub vision: VisionState,
    pub lab: LabState,
    pub models: ModelsState,
    pub view: RwSignal<View>,
    /// Embed mode (`?embed=1&figure=…`): only that figure is shown.
    pub embed: Option<Figure>,
    links: DeepLinks,
    bench: BenchHook,
}

pub fn provide_app_state() -> AppState {
    let link = deep_links::opened_with();
    let engine = EngineState::new();
    let state = AppState {
        engine,
        chat: ChatState::new(engine),
        order: OrderState::new(engine),
        explorer: ExplorerState::new(engine),
        vision: VisionState::new(engine),
        lab: LabState::new(engine),
        models: ModelsState::new(engine),
        view: RwSignal::new(link.view),
        embed: link.embed,
        links: DeepLinks::new(link),
        bench: BenchHook::new(engine),
    };
    state.follow_links();
    state.run_lab_when_ready();
    provide_context(state);
    state
}

pub fn use_app_state() -> AppState {
    expect_context::<AppState>()
}

impl AppState {
    /// Starts the engine worker and loads the model on the best tier.
    pub fn start(self) {
        if !self.engine.spawn(move |message| self.on_message(message)) {
            return;
        }
        self.engine.send(EngineRequest::Probe);
        // A vision figure alone does not need the 98 MB chat model.
        if self.embed.is_none_or(Figure::needs_chat_model) {
            // The model a link names (by sha256, with its URL if it came from one).
            let source = self
                .links
                .pending
                .with_value(|l| l.as_ref().and_then(|l| l.model.clone()))
                .map_or(ModelSource::Default, |(sha256, url)| ModelSource::Sha {
                    sha256,
                    url,
                });
            if first_visit::download_waits() {
                self.engine.deferred.set(Some(source));
                self.start_when_stored();
            } else {
                self.engine.load_model(source, None, TierChoice::Auto);
            }
        }
        self.engine.refresh_cache_info();
        self.engine.send(ModelRequest::List);
        self.bench.expose();
        self.restore_link();
    }

    /// A load that waits for Start (data saver) goes ahead by itself once the model list says
    /// the model is stored here: nothing needs downloading.
    fn start_when_stored(self) {
        Effect::new(move |_| {
            let Some(source) = self.engine.deferred.get() else {
                return;
            };
            let stored = self.models.entries.with(|entries| {
                entries.iter().any(|e| {
                    e.stored
                        && match &source {
                            ModelSource::Sha { sha256, .. } => e.sha256 == *sha256,
                            _ => e.default,
                        }
                })
            });
            if stored {
                self.engine.start_deferred();
            }
        });
    }

    /// Hands each worker message to the part of the state it concerns.
    fn on_message(self, message: FromWorker) {
        match message {
            FromWorker::Ready => {}
            FromWorker::Engine(EngineEvent::Loaded(info)) => {
                // Another model: what the explorer and the Order view show was another's.
                let same =
                    self.engine
                        .model
                        .with_untracked(|m| m.as_ref().is_some_and(|m| m.sha256 == info.sha256))
                        || self.engine.wanted.with_untracked(|w| {
                            w.as_ref().is_some_and(|(sha, _)| *sha == info.sha256)
                        });
                if !same {
                    self.explorer.summary.set(None);
                    self.order.layout.set(None);
                    self.order.answers.set(Vec::new());
                    self.lab.forget_results();
                }
                first_visit::mark_started();
                self.engine.on_event(EngineEvent::Loaded(info));
            }
            FromWorker::Engine(event) => self.engine.on_event(event),
            FromWorker::Models(reply) => self.models.on_reply(reply),
            FromWorker::Chat(reply) => self.chat.on_reply(reply),
            FromWorker::Order(reply) => self.order.on_reply(reply),
            FromWorker::Explore(reply) => self.explorer.on_reply(reply),
            FromWorker::Vision(reply) => self.vision.on_reply(reply),
            FromWorker::Lab(reply) => self.lab.on_reply(reply),
            FromWorker::Bench(done) => self.bench.on_done(done),
            FromWorker::Error(message) => self.engine.notice.set(Some(message)),
        }
    }

    /// Whether the chat model is free: loaded, and no reply, order run or inspection under
    /// way (the worker would only queue a second job behind it, and Stop would stop whichever
    /// runs).
    pub fn can_send(self) -> bool {
        self.engine.is_ready()
            && self.chat.generating.get().is_none()
            && self.order.running.get().is_none()
            && self.explorer.running.get().is_none()
            && !self.lab.busy()
    }

    /// Whether the Lab may run an ablation: as [`Self::can_send`], except that another
    /// ablation may be under way (the new one queues behind it and replaces its answer).
    pub fn can_ablate(self) -> bool {
        self.engine.is_ready()
            && self.chat.generating.get().is_none()
            && self.order.running.get().is_none()
            && self.explorer.running.get().is_none()
            && self.lab.sweeping.get().is_none()
    }

    /// Ablates (layer, head), or gives it back, and runs the prompt again.
    pub fn toggle_ablation(self, layer: usize, head: usize) {
        if self.can_ablate() {
            self.lab.toggle(layer, head);
            self.lab.run_ablation();
        }
    }

    /// Runs the Lab's prompt with the ablation as it is (after the prompt, the shown head or
    /// the ablated heads changed).
    pub fn run_ablation(self) {
        if self.can_ablate() {
            self.lab.run_ablation();
        }
    }

    /// Splits the logit of the target chosen now (after the target changed).
    pub fn run_attribution(self) {
        if self.can_ablate() {
            self.lab.run_attribution(true);
        }
    }

    /// Selects (layer, head) for the attention under the ablation, and runs the prompt again.
    pub fn show_head(self, layer: usize, head: usize) {
        if self.can_ablate() {
            self.lab.layer.set(layer);
            self.lab.head.set(head);
            self.lab.run_ablation();
        }
    }

    pub fn measure_outliers(self) {
        if self.can_send() {
            self.lab.measure_outliers();
        }
    }

    pub fn run_sweep(self) {
        if self.can_send() {
            self.lab.run_sweep();
        }
    }

    /// Runs the Lab's prompt as soon as the Lab is shown with the model ready, and a deep
    /// link's patching sweep as soon as the model is ready.
    fn run_lab_when_ready(self) {
        Effect::new(move |_| {
            let shown = self.view.get() == View::Lab;
            let idle = self.lab.ablation.with(Option::is_none)
                && self.lab.ablating.get().is_none()
                && self.lab.ablation_error.with(Option::is_none);
            // The ablation's figure is the prompt's run, and the attribution's runs with it
            // (its targets are the "before" tokens): their embeds run the prompt too.
            let runs_prompt = self
                .embed
                .is_none_or(|f| matches!(f, Figure::Ablation | Figure::Attribution));
            if shown && idle && runs_prompt && self.can_ablate() {
                self.lab.run_ablation();
            }
        });
        Effect::new(move |_| {
            if self.lab.pending_sweep.get_value() && self.can_send() {
                self.lab.pending_sweep.set_value(false);
                self.lab.run_sweep();
            }
        });
        Effect::new(move |_| {
            if self.lab.pending_outliers.get_value() && self.can_send() {
                self.lab.pending_outliers.set_value(false);
                self.lab.measure_outliers();
            }
        });
    }

    /// Sends the user's message and starts the reply.
    pub fn send_message(self, text: &str) {
        if self.can_send() {
            self.chat.send_message(text);
        }
    }

    /// Drops the oldest turns the worker said must go, and answers the rest.
    pub fn drop_oldest_and_answer(self) {
        if let (true, Some((count, _))) = (self.can_send(), self.chat.too_long.get_untracked()) {
            self.chat.drop_oldest_and_answer(count);
        }
    }

    /// Replaces the last reply with a new one.
    pub fn regenerate(self) {
        if self.can_send() {
            self.chat.regenerate();
        }
    }

    /// Answers the Order view's question under its options' orderings: all of them
    /// (`all_orders`), or only the order given.
    pub fn run_orders(self, question: &str, options: Vec<String>, all_orders: bool) {
        if self.can_send() {
            self.order.run(question, options, all_orders);
        }
    }

    /// Starts a new engine worker (after the allowed origins changed: its scripts come with the
    /// new Content-Security-Policy) and loads the model again; whatever ran is dropped.
    pub fn restart_engine(self) {
        self.chat.generating.set(None);
        self.order.running.set(None);
        self.explorer.running.set(None);
        self.lab.ablating.set(None);
        self.lab.sweeping.set(None);
        self.lab.attributing.set(None);
        self.lab.measuring.set(None);
        self.models.checking.set(None);
        if self.engine.restart() {
            self.engine.refresh_cache_info();
            self.engine.send(ModelRequest::List);
        }
    }

    /// Opens the explorer on `source` (`title` says what it is) and runs the capture.
    pub fn inspect(self, title: String, source: InspectSource) {
        if self.can_send() {
            self.explorer.start(title, source);
            self.view.set(View::Explore);
        }
    }
}
