//! The benchmark hook: with `bench` in the page's query (`?bench`, `&bench`),
//! `window.glassboxBench(ids, decodeTokens)` runs a [`BenchRequest`] and leaves its JSON result
//! (`{"Ok": {…times…}}` or `{"Err": "…"}`) in `window.glassboxBenchResult`. `cargo xtask
//! bench-compare` drives it (`tools/bench/compare.mjs`). Absent otherwise.

use super::engine::EngineState;
use crate::protocol::{BenchDone, BenchRequest};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;

#[derive(Clone, Copy)]
pub(super) struct BenchHook {
    engine: EngineState,
    /// The run whose result is awaited.
    awaited: StoredValue<Option<u32>>,
}

impl BenchHook {
    pub(super) fn new(engine: EngineState) -> Self {
        BenchHook {
            engine,
            awaited: StoredValue::new(None),
        }
    }

    /// Sets `window.glassboxBench`, if the page was asked for it.
    pub(super) fn expose(self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        if !requested() {
            return;
        }
        let run = Closure::<dyn Fn(JsValue, f64)>::new(move |ids: JsValue, n: f64| {
            let ids = js_sys::Array::from(&ids)
                .iter()
                .filter_map(|id| id.as_f64())
                .map(|id| id as u32)
                .collect();
            let request = self.engine.next_request();
            self.awaited.set_value(Some(request));
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

    /// Leaves the awaited run's result where the benchmark script reads it.
    pub(super) fn on_done(self, done: BenchDone) {
        if self.awaited.get_value() != Some(done.request) {
            return;
        }
        if let Some(window) = web_sys::window() {
            let text = serde_json::to_string(&done.result).unwrap_or_default();
            let _ = js_sys::Reflect::set(&window, &"glassboxBenchResult".into(), &text.into());
        }
    }
}

/// Whether the page was opened with `bench` in its query.
pub(super) fn requested() -> bool {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|s| s.trim_start_matches('?').split('&').any(|p| p == "bench"))
}
