use crate::protocol::ComputeTier;
use crate::state::{use_app_state, EngineState};
use leptos::prelude::*;

/// The compute tier and the engine's state, announced politely to screen readers:
/// "WebGPU (google swiftshader) — ready", "CPU (wasm) — loading".
#[component]
pub fn StatusBar() -> impl IntoView {
    let state = use_app_state();
    let text = move || {
        let tier = state.tier.get().map(|t| t.label());
        let engine = match state.engine.get() {
            EngineState::Starting => "starting".to_string(),
            EngineState::Loading => "loading".to_string(),
            EngineState::Ready => "ready".to_string(),
            EngineState::Failed { .. } => "failed".to_string(),
        };
        match tier {
            Some(tier) => format!("{tier} — {engine}"),
            None => format!("Starting the engine… — {engine}"),
        }
    };
    let title = move || match state.tier.get() {
        Some(ComputeTier::Cpu { reason }) => reason,
        _ => String::new(),
    };
    view! {
        <p class="tier" role="status" aria-live="polite" title=title>
            {text}
        </p>
    }
}
