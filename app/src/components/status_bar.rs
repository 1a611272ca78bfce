use crate::protocol::ComputeTier;
use crate::state::{use_app_state, EngineStatus};
use leptos::prelude::*;

/// The compute tier and the engine's state, announced politely to screen readers:
/// "WebGPU (google swiftshader) — ready", "CPU (wasm) — loading".
#[component]
pub fn StatusBar() -> impl IntoView {
    let engine = use_app_state().engine;
    let text = move || {
        let tier = engine.tier.get().map(|t| t.label());
        let status = match engine.status.get() {
            EngineStatus::Starting => "starting".to_string(),
            EngineStatus::Loading => "loading".to_string(),
            EngineStatus::Ready => "ready".to_string(),
            EngineStatus::Failed { .. } => "failed".to_string(),
        };
        match tier {
            Some(tier) => format!("{tier} — {status}"),
            None => format!("Starting the engine… — {status}"),
        }
    };
    let title = move || match engine.tier.get() {
        Some(ComputeTier::Cpu { reason }) => reason,
        _ => String::new(),
    };
    view! {
        <p class="tier" role="status" aria-live="polite" title=title>
            {text}
        </p>
    }
}
