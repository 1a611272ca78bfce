use crate::protocol::ComputeTier;
use leptos::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineState {
    Starting,
    Ready(ComputeTier),
    Failed(String),
}

/// The compute tier and engine state, announced politely to screen readers.
#[component]
pub fn StatusBar(state: ReadSignal<EngineState>) -> impl IntoView {
    let text = move || match state.get() {
        EngineState::Starting => "Starting the engine…".to_string(),
        EngineState::Ready(tier) => tier.label(),
        EngineState::Failed(error) => format!("Engine failed: {error}"),
    };
    let title = move || match state.get() {
        EngineState::Ready(ComputeTier::Cpu { reason }) => reason,
        _ => String::new(),
    };
    view! {
        <p class="tier" role="status" aria-live="polite" title=title>
            {text}
        </p>
    }
}
