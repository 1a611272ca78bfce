//! The page's state, in signals, and the actions that change it. The conversation and the
//! settings survive a reload (localStorage); everything else comes back from the worker.
//!
//! `engine` holds the engine's part: status, model, cache and the worker handle; `chat` the
//! conversation and the sampling settings.

mod chat;
mod engine;

pub use crate::deep_link::View;
use crate::deep_link::{Figure, Link, VisionImage};
use crate::protocol::{
    BenchDone, BenchRequest, EngineRequest, ExploreReply, ExploreRequest, FromWorker, HeadData,
    InspectSource, InspectionSummary, LensData, OrderLayout, OrderReply, OrderRequest, TierChoice,
    ToWorker, VisionReply, VisionReport, VisionRequest,
};
pub use chat::{ChatState, Role, Settings, Turn};
pub use engine::{EngineState, EngineStatus};
use leptos::prelude::*;

/// The Order view: the last run's layout and answers.
#[derive(Clone, Copy)]
pub struct OrderState {
    /// The run under way.
    pub running: RwSignal<Option<u32>>,
    /// How many orderings the last run asked for.
    pub asked: RwSignal<usize>,
    pub set_based: RwSignal<bool>,
    pub layout: RwSignal<Option<OrderLayout>>,
    /// (ordering, answer) in the order they arrived.
    pub answers: RwSignal<Vec<(Vec<usize>, String)>>,
    pub error: RwSignal<Option<String>>,
    pub question: RwSignal<String>,
    pub options: RwSignal<Vec<String>>,
}

const DEFAULT_QUESTION: &str = "Which of these animals is the largest?";
const DEFAULT_OPTIONS: [&str; 3] = ["A mouse", "An elephant", "A cat"];

impl OrderState {
    fn new() -> Self {
        OrderState {
            question: RwSignal::new(DEFAULT_QUESTION.to_string()),
            options: RwSignal::new(DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect()),
            running: RwSignal::new(None),
            asked: RwSignal::new(0),
            set_based: RwSignal::new(true),
            layout: RwSignal::new(None),
            answers: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
        }
    }
}

/// What the Vision view's ViT picture shows of the class token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VitMap {
    /// One head's attention (layer and head selected).
    Head,
    /// Attention rollout across every layer.
    Rollout,
}

/// The Vision view: the image, the models' answer and what is selected in the pictures.
#[derive(Clone, Copy)]
pub struct VisionState {
    /// 28 × 28 values in [0, 1], row-major.
    pub image: RwSignal<Vec<f32>>,
    /// Where the image came from, in words ("Your drawing", "Test digit 12 (label 7)").
    pub source: RwSignal<String>,
    pub running: RwSignal<Option<u32>>,
    pub report: RwSignal<Option<VisionReport>>,
    pub error: RwSignal<Option<String>>,
    pub layer: RwSignal<usize>,
    pub head: RwSignal<usize>,
    pub vit_map: RwSignal<VitMap>,
    /// Which of the report's retention forms gives the ViR's shown probabilities.
    pub form: RwSignal<usize>,
    pub chunk: RwSignal<usize>,
    /// `mnist-test.bin`, fetched on first use.
    pub test_set: RwSignal<Option<std::sync::Arc<Vec<u8>>>>,
    /// The image as a deep link names it.
    pub link_image: RwSignal<Option<VisionImage>>,
}

impl VisionState {
    fn new() -> Self {
        VisionState {
            image: RwSignal::new(vec![0.0; 784]),
            source: RwSignal::new(String::new()),
            running: RwSignal::new(None),
            report: RwSignal::new(None),
            error: RwSignal::new(None),
            layer: RwSignal::new(0),
            head: RwSignal::new(0),
            vit_map: RwSignal::new(VitMap::Head),
            form: RwSignal::new(0),
            chunk: RwSignal::new(16),
            test_set: RwSignal::new(None),
            link_image: RwSignal::new(None),
        }
    }
}

/// A deep link's layer, head and token (each optional).
type Selection = (Option<usize>, Option<usize>, Option<usize>);

/// The attention explorer: the inspection the worker keeps, and what is selected in it.
#[derive(Clone, Copy)]
pub struct ExplorerState {
    /// The inspection under way.
    pub running: RwSignal<Option<u32>>,
    /// What the inspection shows, in words ("Reply 2", "Free text", "Order view, set-based").
    pub title: RwSignal<String>,
    pub summary: RwSignal<Option<InspectionSummary>>,
    pub layer: RwSignal<usize>,
    pub head: RwSignal<usize>,
    /// The selected (query) token.
    pub token: RwSignal<usize>,
    pub head_data: RwSignal<Option<HeadData>>,
    pub lens: RwSignal<Option<LensData>>,
    pub error: RwSignal<Option<String>>,
    /// What is inspected (for deep links and the run card).
    pub source: RwSignal<Option<InspectSource>>,
    /// A deep link's layer, head and token, applied when its inspection arrives.
    pending_selection: StoredValue<Option<Selection>>,
    /// The head and lens requests whose replies are awaited; others are stale.
    head_request: StoredValue<Option<u32>>,
    lens_request: StoredValue<Option<u32>>,
}

impl ExplorerState {
    fn new() -> Self {
        ExplorerState {
            running: RwSignal::new(None),
            title: RwSignal::new(String::new()),
            summary: RwSignal::new(None),
            layer: RwSignal::new(0),
            head: RwSignal::new(0),
            token: RwSignal::new(0),
            head_data: RwSignal::new(None),
            lens: RwSignal::new(None),
            error: RwSignal::new(None),
            source: RwSignal::new(None),
            pending_selection: StoredValue::new(None),
            head_request: StoredValue::new(None),
            lens_request: StoredValue::new(None),
        }
    }
}

/// Greedy answers in the Order view are short: the option, maybe a sentence.
const ORDER_ANSWER_TOKENS: usize = 16;
/// Orderings for "Try all orders": all of them up to 4 options (24), a sample beyond.
const MAX_ORDERS: usize = 24;

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
        order: OrderState::new(),
        explorer: ExplorerState::new(),
        vision: VisionState::new(),
        view: RwSignal::new(link.view),
        embed: link.embed,
        pending_link: StoredValue::new(Some(link.clone())),
        bench_request: StoredValue::new(None),
    };
    // The explorer asks the worker for the selected head and the lens at the selected token.
    Effect::new(move |_| {
        let explorer = state.explorer;
        if explorer.summary.with(Option::is_some) {
            let (layer, head) = (explorer.layer.get(), explorer.head.get());
            let request = state.engine.next_request();
            explorer.head_request.set_value(Some(request));
            state.engine.send(ExploreRequest::Head {
                request,
                layer,
                head,
            });
        }
    });
    Effect::new(move |_| {
        let explorer = state.explorer;
        if explorer.summary.with(Option::is_some) {
            let token = explorer.token.get();
            let request = state.engine.next_request();
            explorer.lens_request.set_value(Some(request));
            state.engine.send(ExploreRequest::Lens { request, token });
        }
    });
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
                state.inspect(source_title(&source), source);
            }
        }
    });
    provide_context(state);
    state
}

pub fn use_app_state() -> AppState {
    expect_context::<AppState>()
}

/// What an inspection shows, in words, for the explorer's status line.
fn source_title(source: &InspectSource) -> String {
    match source {
        InspectSource::Text(_) => "Free text".into(),
        InspectSource::Chat(_) => "A conversation".into(),
        InspectSource::Order { set_based, .. } => {
            format!(
                "Order view, {}",
                if *set_based { "set-based" } else { "plain" }
            )
        }
    }
}

/// The 1,000 test digits: records of `[label][784 pixel bytes]`.
pub const TEST_SET_URL: &str = "models/mnist-test.bin";

/// GET `url` whole, on the page (a data file, no model code).
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let message = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(message)?
        .dyn_into()
        .map_err(message)?;
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(message)?)
        .await
        .map_err(message)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
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

    /// Applies the deep link the page opened with: the view's fields at once, the vision
    /// image's classification now (it queues behind the chat model's load in the worker), an
    /// inspection once the chat model is ready.
    fn restore_link(self) {
        let Some(link) = self.pending_link.get_value() else {
            return;
        };
        if let Some((question, options, set_based)) = link.order.clone() {
            self.order.question.set(question);
            if !options.is_empty() {
                self.order.options.set(options);
            }
            self.order.set_based.set(set_based);
        }
        let vision = self.vision;
        match link.view {
            View::Explore => {
                self.explorer.source.set(link.source.clone());
                self.explorer
                    .pending_selection
                    .set_value(Some((link.layer, link.head, link.token)));
            }
            View::Vision => {
                vision.layer.set(link.layer.unwrap_or(0));
                vision.head.set(link.head.unwrap_or(0));
                vision.form.set(link.form.unwrap_or(0).min(2));
                vision.chunk.set(link.chunk.unwrap_or(16));
                vision.vit_map.set(if link.rollout {
                    VitMap::Rollout
                } else {
                    VitMap::Head
                });
                match link.image.clone() {
                    Some(VisionImage::TestDigit(i)) => self.show_test_digit(i),
                    Some(VisionImage::Drawing(bytes)) => {
                        self.classify_drawing(bytes.iter().map(|&b| b as f32 / 255.0).collect())
                    }
                    None => {}
                }
            }
            View::Chat | View::Order => {}
        }
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
                self.inspect(source_title(&source), source);
            }
        }
    }

    /// The deep link to what is shown now.
    pub fn current_link(self) -> Link {
        let view = self.view.get();
        let mut link = Link {
            view,
            embed: self.embed,
            ..Link::default()
        };
        match view {
            View::Chat => {}
            View::Order => {
                link.order = Some((
                    self.order.question.get(),
                    self.order.options.get(),
                    self.order.set_based.get(),
                ));
            }
            View::Explore => {
                let e = self.explorer;
                link.source = e.source.get();
                if e.summary.with(Option::is_some) {
                    link.layer = Some(e.layer.get());
                    link.head = Some(e.head.get());
                    link.token = Some(e.token.get());
                }
            }
            View::Vision => {
                let v = self.vision;
                link.image = v.link_image.get();
                link.layer = Some(v.layer.get());
                link.head = Some(v.head.get());
                link.form = Some(v.form.get());
                link.chunk = Some(v.chunk.get());
                link.rollout = v.vit_map.get() == VitMap::Rollout;
            }
        }
        link
    }

    /// Classifies test digit `i` of `mnist-test.bin` (fetched on first use).
    pub fn show_test_digit(self, i: usize) {
        let vision = self.vision;
        let use_digit = move |set: &[u8]| match set.get(i * 785..(i + 1) * 785) {
            Some(record) => {
                vision
                    .image
                    .set(record[1..].iter().map(|&b| b as f32 / 255.0).collect());
                vision
                    .source
                    .set(format!("Test digit {i} (label {})", record[0]));
                vision.link_image.set(Some(VisionImage::TestDigit(i)));
                self.classify();
            }
            None => vision
                .error
                .set(Some(format!("there is no test digit {i}"))),
        };
        if let Some(set) = vision.test_set.get_untracked() {
            use_digit(&set);
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            match fetch_bytes(TEST_SET_URL).await {
                Ok(set) => {
                    let set = std::sync::Arc::new(set);
                    vision.test_set.set(Some(set.clone()));
                    use_digit(&set);
                }
                Err(e) => vision.error.set(Some(format!("{TEST_SET_URL}: {e}"))),
            }
        });
    }

    /// Classifies a drawing already laid out like MNIST.
    pub fn classify_drawing(self, image: Vec<f32>) {
        let vision = self.vision;
        let bytes = image
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        vision.link_image.set(Some(VisionImage::Drawing(bytes)));
        vision.source.set("Your drawing".into());
        vision.image.set(image);
        self.classify();
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

    fn on_message(self, message: FromWorker) {
        match message {
            FromWorker::Ready => {}
            FromWorker::Engine(event) => self.engine.on_event(event),
            FromWorker::Chat(reply) => self.chat.on_reply(reply),
            FromWorker::Order(reply) => self.on_order_reply(reply),
            FromWorker::Explore(reply) => self.on_explore_reply(reply),
            FromWorker::Vision(reply) => self.on_vision_reply(reply),
            FromWorker::Bench(done) => self.on_bench_done(done),
            FromWorker::Error(message) => self.engine.notice.set(Some(message)),
        }
    }

    fn on_order_reply(self, reply: OrderReply) {
        match reply {
            OrderReply::Layout { request, layout } => {
                if self.order.running.get_untracked() == Some(request) {
                    self.order.layout.set(Some(layout));
                }
            }
            OrderReply::Answer {
                request,
                order,
                answer,
            } => {
                if self.order.running.get_untracked() == Some(request) {
                    self.order.answers.update(|a| a.push((order, answer)));
                }
            }
            OrderReply::Done { request, error, .. } => {
                if self.order.running.get_untracked() == Some(request) {
                    self.order.running.set(None);
                    self.order.error.set(error);
                }
            }
        }
    }

    fn on_explore_reply(self, reply: ExploreReply) {
        match reply {
            ExploreReply::Inspected { request, result } => {
                let explorer = self.explorer;
                if explorer.running.get_untracked() == Some(request) {
                    explorer.running.set(None);
                    match result {
                        Ok(summary) => {
                            let last = summary.tokens.len().saturating_sub(1);
                            explorer
                                .layer
                                .set(explorer.layer.get_untracked().min(summary.n_layers - 1));
                            explorer
                                .head
                                .set(explorer.head.get_untracked().min(summary.n_heads - 1));
                            explorer.token.set(last);
                            // A deep link's selection, within what this inspection has.
                            if let Some((layer, head, token)) =
                                explorer.pending_selection.get_value()
                            {
                                explorer.pending_selection.set_value(None);
                                let clamp = |v: Option<usize>, n: usize| v.map(|v| v.min(n - 1));
                                if let Some(l) = clamp(layer, summary.n_layers) {
                                    explorer.layer.set(l);
                                }
                                if let Some(h) = clamp(head, summary.n_heads) {
                                    explorer.head.set(h);
                                }
                                if let Some(t) = clamp(token, summary.tokens.len()) {
                                    explorer.token.set(t);
                                }
                            }
                            explorer.summary.set(Some(summary));
                        }
                        Err(message) => explorer.error.set(Some(message)),
                    }
                }
            }
            ExploreReply::Head { request, result } => {
                let explorer = self.explorer;
                if explorer.head_request.get_value() == Some(request) {
                    match result {
                        Ok(data) => explorer.head_data.set(Some(data)),
                        Err(message) => self.engine.notice.set(Some(message)),
                    }
                }
            }
            ExploreReply::Lens { request, result } => {
                let explorer = self.explorer;
                if explorer.lens_request.get_value() == Some(request) {
                    match result {
                        Ok(data) => explorer.lens.set(Some(data)),
                        Err(message) => self.engine.notice.set(Some(message)),
                    }
                }
            }
        }
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

    fn on_vision_reply(self, reply: VisionReply) {
        match reply {
            VisionReply::Classified { request, result } => {
                let vision = self.vision;
                if vision.running.get_untracked() == Some(request) {
                    vision.running.set(None);
                    match result {
                        Ok(report) => {
                            vision.error.set(None);
                            vision.report.set(Some(report));
                        }
                        Err(message) => vision.error.set(Some(message)),
                    }
                }
            }
        }
    }

    pub fn can_send(self) -> bool {
        self.engine.is_ready()
            && self.chat.generating.get().is_none()
            && self.order.running.get().is_none()
            && self.explorer.running.get().is_none()
    }

    /// Opens the explorer on `source` (`title` says what it is) and runs the capture.
    pub fn inspect(self, title: String, source: InspectSource) {
        if !self.can_send() {
            return;
        }
        let explorer = self.explorer;
        let request = self.engine.next_request();
        explorer.running.set(Some(request));
        explorer.title.set(title);
        explorer.summary.set(None);
        explorer.head_data.set(None);
        explorer.lens.set(None);
        explorer.error.set(None);
        explorer.source.set(Some(source.clone()));
        // Heads and lenses asked of the previous inspection are stale.
        explorer.head_request.set_value(None);
        explorer.lens_request.set_value(None);
        self.view.set(View::Explore);
        self.engine
            .send(ExploreRequest::Inspect { request, source });
    }

    /// Classifies the Vision view's image with both models (the worker queues it behind any
    /// work under way, such as the chat model's load).
    pub fn classify(self) {
        let vision = self.vision;
        let request = self.engine.next_request();
        vision.running.set(Some(request));
        self.engine.send(VisionRequest::Classify {
            request,
            image: vision.image.get_untracked(),
            chunk: vision.chunk.get_untracked().max(1),
        });
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

    /// Answers the question under its options' orderings: all of them (`all_orders`), or
    /// only the order given.
    pub fn run_orders(self, question: &str, options: Vec<String>, all_orders: bool) {
        if !self.can_send() {
            return;
        }
        let orders = if all_orders {
            ::engine::analysis::set_prompt::sample_orders(options.len(), MAX_ORDERS, 1)
        } else {
            vec![(0..options.len()).collect()]
        };
        let request = self.engine.next_request();
        self.order.running.set(Some(request));
        self.order.asked.set(orders.len());
        self.order.layout.set(None);
        self.order.answers.set(Vec::new());
        self.order.error.set(None);
        self.engine.send(OrderRequest::Run {
            request,
            question: question.to_string(),
            options,
            set_based: self.order.set_based.get_untracked(),
            orders,
            max_tokens: ORDER_ANSWER_TOKENS,
        });
    }

    pub fn stop_orders(self) {
        if self.order.running.get_untracked().is_some() {
            self.engine.send(ToWorker::Stop);
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
