//! The page's components. State lives in signals ([`crate::state`]); heavy work goes to the
//! engine worker.

mod chat;
mod load_panel;
mod settings;
mod status_bar;

use crate::state::provide_app_state;
use leptos::prelude::*;

pub use chat::ChatPanel;
pub use load_panel::LoadPanel;
pub use settings::SidePanel;
pub use status_bar::StatusBar;

#[component]
pub fn App() -> impl IntoView {
    let state = provide_app_state();
    state.start();
    view! {
        <header>
            <h1>"Glassbox"</h1>
            <StatusBar />
        </header>
        <main class="layout">
            <section class="chat-column" aria-label="Chat">
                <LoadPanel />
                <ChatPanel />
            </section>
            <SidePanel />
        </main>
    }
}
