//! Deep links applied to the page and read back from it: the link the page opened with
//! (restored at start, its inspection once the chat model is ready), the guided tour's links
//! opened in place, and the address bar kept equal to the link of what is shown.
//!
//! Parsing and printing links is [`crate::deep_link`]'s; each view reads and writes its own part
//! of a [`Link`] (`apply_link`, `write_link`). This file only decides when.

use super::explore::source_title;
use super::{bench, AppState, EngineStatus};
use crate::deep_link::Link;
use leptos::prelude::*;

#[derive(Clone, Copy)]
pub(super) struct DeepLinks {
    /// The link being opened, until the engine is ready to run its inspection.
    pub(super) pending: StoredValue<Option<Link>>,
}

impl DeepLinks {
    pub(super) fn new(link: Link) -> Self {
        DeepLinks {
            pending: StoredValue::new(Some(link)),
        }
    }
}

/// The link in the address bar when the page opened (a damaged one opens the chat).
pub(super) fn opened_with() -> Link {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .map(|q| Link::parse(&q))
        .unwrap_or_default()
}

impl AppState {
    /// From now on, keeps the address bar on the link to what is shown, and runs a pending
    /// link's inspection as soon as the chat model is ready.
    pub(super) fn follow_links(self) {
        Effect::new(move |_| {
            let mut query = self.current_link().to_query();
            // Not part of what is shown, but a reload must keep the benchmark hook.
            if bench::requested() {
                query.push_str("&bench");
            }
            // Nor is the thread count, which a reload must keep too.
            if let Some(threads) = crate::engine_client::requested_threads() {
                query.push_str(&format!("&threads={threads}"));
            }
            if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
                let _ =
                    history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query));
            }
        });
        Effect::new(move |_| {
            if self.engine.is_ready() {
                let source = self
                    .links
                    .pending
                    .with_value(|l| l.as_ref().and_then(|l| l.source.clone()));
                if let Some(source) = source {
                    self.links.pending.set_value(None);
                    self.inspect(source_title(&source), source);
                }
            }
        });
    }

    /// Applies the pending link: each view's part at once (the vision image's classification
    /// queues behind the chat model's load in the worker); its inspection, if any, waits for
    /// the chat model.
    pub(super) fn restore_link(self) {
        let Some(link) = self.links.pending.get_value() else {
            return;
        };
        self.chat.apply_link(&link);
        self.order.apply_link(&link);
        self.explorer.apply_link(&link);
        self.vision.apply_link(&link);
        self.lab.apply_link(&link);
        if link.source.is_none() {
            self.links.pending.set_value(None);
        }
    }

    /// Opens a deep link in place (the guided tour's steps).
    pub fn open_link(self, link: Link) {
        self.view.set(link.view);
        let source = link.source.clone();
        self.links.pending.set_value(Some(link));
        self.restore_link();
        if let Some(source) = source {
            if self
                .engine
                .status
                .with_untracked(|s| *s == EngineStatus::Ready)
            {
                self.links.pending.set_value(None);
                self.inspect(source_title(&source), source);
            }
        }
    }

    /// The deep link to what is shown now.
    pub fn current_link(self) -> Link {
        let mut link = Link {
            view: self.view.get(),
            embed: self.embed,
            model: self.engine.wanted.get(),
            ..Link::default()
        };
        self.chat.write_link(&mut link);
        self.order.write_link(&mut link);
        self.explorer.write_link(&mut link);
        self.vision.write_link(&mut link);
        self.lab.write_link(&mut link);
        link
    }
}
