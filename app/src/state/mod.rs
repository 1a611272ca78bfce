//! The page's state, in signals, and the actions that change it. The conversation and the
//! settings survive a reload (localStorage); everything else comes back from the worker.
//!
//! Each view has its part: `chat` (the conversation and the sampling settings), `order`,
//! `explore` (the attention explorer) and `vision`; `engine` holds the engine's status, model,
//! cache and the worker handle they all send through. [`AppState`] holds them all, and what
//! spans them: the view shown, embed mode, deep links, and the rule that the chat model does
//! one thing at a time.

mod chat;
mod engine;
mod explore;
mod order;
mod vision;

pub use crate::deep_link::View;
use crate::deep_link::{Figure, Link};
use crate::protocol::{
    BenchDone, BenchRequest, EngineRequest, FromWorker, InspectSource, TierChoice,
};
pub use chat::{ChatState, Role, Settings, Turn};
pub use engine::{EngineState, EngineStatus};
pub use explore::ExplorerState;
use leptos::prelude::*;
pub use order::OrderState;
pub use vision::{VisionState, VitMap};

#[derive(Clone, Copy)]
pub struct AppState {
    pub engine: EngineState,
    pub chat: ChatState,
    pub order: OrderState,
    pub explorer: ExplorerState,
    pub vision: VisionState,
    pub view: RwSignal<View>,
    /// Embed mode (`?embed=1&figure=…`): only that figure is shown.
    pub embed: Option<Figure>,
    /// The deep link the page opened with, until the engine is ready to restore it.
    pending_link: StoredValue<Option<Link>>,
    /// The benchmark run whose result is awaited.
    bench_request: StoredValue<Option<u32>>,
}

pub fn provide_app_state() -> AppState {
    let link = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .map(|q| Link::parse(&q))
        .unwrap_or_default();
    let engine = EngineState::new();
    let state = AppState {
        engine,
        chat: ChatState::new(engine),
        order: OrderState::new(engine),
        explorer: ExplorerState::new(engine),
        vision: VisionState::new(engine),
        view: RwSignal::new(link.view),
        embed: link.embed,
        pending_link: StoredValue::new(Some(link.clone())),
        bench_request: StoredValue::new(None),
    };
    // The URL follows what is shown, so the address bar is always a deep link to it.
    Effect::new(move |_| {
        let mut query = state.current_link().to_query();
        // Not part of what is shown, but a reload must keep the benchmark hook.
        if bench_requested() {
            query.push_str("&bench");
        }
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query));
        }
    });
    // A deep link's inspection waits for the chat model.
    Effect::new(move |_| {
        if state.engine.is_ready() {
            let source = state
                .pending_link
                .with_value(|l| l.as_ref().and_then(|l| l.source.clone()));
            if let Some(source) = source {
                state.pending_link.set_value(None);
                state.inspect(explore::source_title(&source), source);
            }
        }
    });
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
            self.engine.load(TierChoice::Auto);
        }
        self.engine.refresh_cache_info();
        self.expose_bench();
        self.restore_link();
    }

    /// Hands each worker message to the part of the state it concerns.
    fn on_message(self, message: FromWorker) {
        match message {
            FromWorker::Ready => {}
            FromWorker::Engine(event) => self.engine.on_event(event),
            FromWorker::Chat(reply) => self.chat.on_reply(reply),
            FromWorker::Order(reply) => self.order.on_reply(reply),
            FromWorker::Explore(reply) => self.explorer.on_reply(reply),
            FromWorker::Vision(reply) => self.vision.on_reply(reply),
            FromWorker::Bench(done) => self.on_bench_done(done),
            FromWorker::Error(message) => self.engine.notice.set(Some(message)),
        }
    }

    /// Whether the chat model is free: loaded, and no reply, order run or inspection under
    /// way (the worker would queue a second one behind the first).
    pub fn can_send(self) -> bool {
        self.engine.is_ready()
            && self.chat.generating.get().is_none()
            && self.order.running.get().is_none()
            && self.explorer.running.get().is_none()
    }

    /// Sends the user's message and starts the reply.
    pub fn send_message(self, text: &str) {
        if self.can_send() {
            self.chat.send_message(text);
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

    /// Opens the explorer on `source` (`title` says what it is) and runs the capture.
    pub fn inspect(self, title: String, source: InspectSource) {
        if self.can_send() {
            self.explorer.start(title, source);
            self.view.set(View::Explore);
        }
    }

    /// Applies the deep link the page opened with: each view's part at once (the vision
    /// image's classification queues behind the chat model's load in the worker), an
    /// inspection once the chat model is ready.
    fn restore_link(self) {
        let Some(link) = self.pending_link.get_value() else {
            return;
        };
        self.order.apply_link(&link);
        self.explorer.apply_link(&link);
        self.vision.apply_link(&link);
        if link.source.is_none() {
            self.pending_link.set_value(None);
        }
    }

    /// Opens a deep link in place (the guided tour's steps).
    pub fn open_link(self, link: Link) {
        self.view.set(link.view);
        let source = link.source.clone();
        self.pending_link.set_value(Some(link));
        self.restore_link();
        if let Some(source) = source {
            if self
                .engine
                .status
                .with_untracked(|s| *s == EngineStatus::Ready)
            {
                self.pending_link.set_value(None);
                self.inspect(explore::source_title(&source), source);
            }
        }
    }

    /// The deep link to what is shown now.
    pub fn current_link(self) -> Link {
        let mut link = Link {
            view: self.view.get(),
            embed: self.embed,
            ..Link::default()
        };
        self.order.write_link(&mut link);
        self.explorer.write_link(&mut link);
        self.vision.write_link(&mut link);
        link
    }

    /// With `bench` in the URL's query, `window.glassboxBench(ids, decodeTokens)` runs
    /// a [`BenchRequest`] and leaves its JSON result in `window.glassboxBenchResult`: the hook
    /// `cargo xtask bench-compare` drives. Absent otherwise.
    fn expose_bench(self) {
        use wasm_bindgen::prelude::*;
        let Some(window) = web_sys::window() else {
            return;
        };
        if !bench_requested() {
            return;
        }
        let run = Closure::<dyn Fn(JsValue, f64)>::new(move |ids: JsValue, n: f64| {
            let ids = js_sys::Array::from(&ids)
                .iter()
                .filter_map(|id| id.as_f64())
                .map(|id| id as u32)
                .collect();
            let request = self.engine.next_request();
            self.bench_request.set_value(Some(request));
            self.engine.send(BenchRequest {
                request,
                ids,
                decode_tokens: n as usize,
            })
        });
        let _ = js_sys::Reflect::set(&window, &"glassboxBench".into(), run.as_ref());
        // Lives as long as the page.
        run.forget();
    }

    fn on_bench_done(self, done: BenchDone) {
        if self.bench_request.get_value() != Some(done.request) {
            return;
        }
        // Read by the benchmark script (see `expose_bench`).
        if let Some(window) = web_sys::window() {
            let text = serde_json::to_string(&done.result).unwrap_or_default();
            let _ = js_sys::Reflect::set(&window, &"glassboxBenchResult".into(), &text.into());
        }
    }
}

/// Whether the page was opened with `bench` in its query (`?bench`, `&bench`): the hook that
/// `cargo xtask bench-compare` drives.
fn bench_requested() -> bool {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|s| s.trim_start_matches('?').split('&').any(|p| p == "bench"))
}
