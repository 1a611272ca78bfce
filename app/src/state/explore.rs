//! The attention explorer's state: the inspection the worker keeps (its summary here; heads and
//! the logit lens fetched on request), and the layer, head and token selected in it.

use super::engine::EngineState;
use crate::deep_link::{Link, View};
use crate::protocol::{
    ExploreReply, ExploreRequest, HeadData, InspectSource, InspectionSummary, LensData,
};
use leptos::prelude::*;

/// A deep link's layer, head and token (each optional).
type Selection = (Option<usize>, Option<usize>, Option<usize>);

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
    engine: EngineState,
}

impl ExplorerState {
    /// The explorer, which from now on asks the worker for the selected head and for the lens
    /// at the selected token whenever the selection or the inspection changes.
    pub(super) fn new(engine: EngineState) -> Self {
        let explorer = ExplorerState {
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
            engine,
        };
        Effect::new(move |_| {
            if explorer.summary.with(Option::is_some) {
                let (layer, head) = (explorer.layer.get(), explorer.head.get());
                let request = engine.next_request();
                explorer.head_request.set_value(Some(request));
                engine.send(ExploreRequest::Head {
                    request,
                    layer,
                    head,
                });
            }
        });
        Effect::new(move |_| {
            if explorer.summary.with(Option::is_some) {
                let token = explorer.token.get();
                let request = engine.next_request();
                explorer.lens_request.set_value(Some(request));
                engine.send(ExploreRequest::Lens { request, token });
            }
        });
        explorer
    }

    /// Runs the capture of `source` (`title` says what it is). The caller checked that the
    /// engine is free.
    pub(super) fn start(self, title: String, source: InspectSource) {
        let request = self.engine.next_request();
        self.running.set(Some(request));
        self.title.set(title);
        self.summary.set(None);
        self.head_data.set(None);
        self.lens.set(None);
        self.error.set(None);
        self.source.set(Some(source.clone()));
        // Heads and lenses asked of the previous inspection are stale.
        self.head_request.set_value(None);
        self.lens_request.set_value(None);
        self.engine
            .send(ExploreRequest::Inspect { request, source });
    }

    /// The inspection, a head or a lens; replies to requests no longer awaited are dropped.
    pub(super) fn on_reply(self, reply: ExploreReply) {
        match reply {
            ExploreReply::Inspected { request, result } => {
                if self.running.get_untracked() == Some(request) {
                    self.running.set(None);
                    match result {
                        Ok(summary) => self.show(summary),
                        Err(message) => self.error.set(Some(message)),
                    }
                }
            }
            ExploreReply::Head { request, result } => {
                if self.head_request.get_value() == Some(request) {
                    match result {
                        Ok(data) => self.head_data.set(Some(data)),
                        Err(message) => self.engine.notice.set(Some(message)),
                    }
                }
            }
            ExploreReply::Lens { request, result } => {
                if self.lens_request.get_value() == Some(request) {
                    match result {
                        Ok(data) => self.lens.set(Some(data)),
                        Err(message) => self.engine.notice.set(Some(message)),
                    }
                }
            }
        }
    }

    /// Shows a new inspection: the selection kept within it, on its last token, or a deep
    /// link's selection.
    fn show(self, summary: InspectionSummary) {
        let last = summary.tokens.len().saturating_sub(1);
        self.layer
            .set(self.layer.get_untracked().min(summary.n_layers - 1));
        self.head
            .set(self.head.get_untracked().min(summary.n_heads - 1));
        self.token.set(last);
        // A deep link's selection, within what this inspection has.
        if let Some((layer, head, token)) = self.pending_selection.get_value() {
            self.pending_selection.set_value(None);
            let clamp = |v: Option<usize>, n: usize| v.map(|v| v.min(n - 1));
            if let Some(l) = clamp(layer, summary.n_layers) {
                self.layer.set(l);
            }
            if let Some(h) = clamp(head, summary.n_heads) {
                self.head.set(h);
            }
            if let Some(t) = clamp(token, summary.tokens.len()) {
                self.token.set(t);
            }
        }
        self.summary.set(Some(summary));
    }

    /// Takes a deep link to the explorer: what it inspects now, its selection once the
    /// inspection arrives (the inspection itself waits for the chat model).
    pub(super) fn apply_link(self, link: &Link) {
        if link.view == View::Explore {
            self.source.set(link.source.clone());
            self.pending_selection
                .set_value(Some((link.layer, link.head, link.token)));
        }
    }

    /// Writes what is inspected, and the selection once there is an inspection, into the link
    /// to the explorer.
    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Explore {
            link.source = self.source.get();
            if self.summary.with(Option::is_some) {
                link.layer = Some(self.layer.get());
                link.head = Some(self.head.get());
                link.token = Some(self.token.get());
            }
        }
    }
}

/// What an inspection shows, in words, for the explorer's status line.
pub(super) fn source_title(source: &InspectSource) -> String {
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
