use crate::protocol::ComputeTier;
use crate::state::{use_app_state, EngineStatus};
use leptos::prelude::*;

/// The compute tier, the engine's state and the loaded model, announced politely to screen
/// readers: "WebGPU (google swiftshader) — ready — SmolLM2 135M Instruct (Q4_1)",
/// "CPU (wasm) · 2 threads — loading".
#[component]
pub fn StatusBar() -> impl IntoView {
    let engine = use_app_state().engine;
    let text = move || {
        let tier = engine.tier.get().map(|t| t.status());
        let status = match engine.status.get() {
            _ if engine.deferred.with(Option::is_some) => "waiting for Start".to_string(),
            EngineStatus::Starting => "starting".to_string(),
            EngineStatus::Loading => "loading".to_string(),
            EngineStatus::Ready => "ready".to_string(),
            EngineStatus::Failed { .. } => "failed".to_string(),
        };
        let model = engine
            .model
            .with(|m| m.as_ref().map(|m| format!(" — {}", m.name)))
            .unwrap_or_default();
        match tier {
            Some(tier) => format!("{tier} — {status}{model}"),
            None => format!("Starting the engine… — {status}{model}"),
        }
    };
    let title = move || match engine.tier.get() {
        Some(ComputeTier::Cpu { reason, .. }) => reason,
        _ => String::new(),
    };
    view! {
        <p class="tier" role="status" aria-live="polite" title=title>
            {text}
        </p>
    }
}
