//! The page's components. State lives in signals; heavy work goes to the engine worker.

mod status_bar;

use crate::engine_client::EngineClient;
use crate::protocol::{FromWorker, ToWorker};
use leptos::prelude::*;
pub use status_bar::{EngineState, StatusBar};

#[component]
pub fn App() -> impl IntoView {
    let (state, set_state) = signal(EngineState::Starting);
    match EngineClient::spawn(move |message| match message {
        FromWorker::Tier(tier) => set_state.set(EngineState::Ready(tier)),
        FromWorker::Error(text) => set_state.set(EngineState::Failed(text)),
        FromWorker::Ready => {}
    }) {
        Ok(client) => client.send(&ToWorker::Probe),
        Err(text) => set_state.set(EngineState::Failed(text)),
    }
    view! {
        <header>
            <h1>"Glassbox"</h1>
            <StatusBar state=state />
        </header>
        <main>
            <p>"Small transformers in your browser, and a look inside them."</p>
        </main>
    }
}
