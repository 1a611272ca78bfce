//! The page's components. State lives in signals ([`crate::state`]); heavy work goes to the
//! engine worker.

mod chat;
mod explorer;
mod heatmap;
mod load_panel;
mod order;
mod settings;
mod status_bar;
mod vision;

use crate::state::{provide_app_state, View};
use leptos::prelude::*;

pub use chat::ChatPanel;
pub use explorer::ExplorerPanel;
pub use load_panel::LoadPanel;
pub use order::OrderPanel;
pub use settings::SidePanel;
pub use status_bar::StatusBar;
pub use vision::VisionPanel;

#[component]
pub fn App() -> impl IntoView {
    let state = provide_app_state();
    state.start();
    let view_shown = state.view;
    let tab = move |which: View, label: &'static str| {
        view! {
            <button
                role="tab"
                aria-selected=move || (view_shown.get() == which).to_string()
                on:click=move |_| view_shown.set(which)
            >
                {label}
            </button>
        }
    };
    view! {
        <header>
            <h1>"Glassbox"</h1>
            <StatusBar />
        </header>
        <nav class="views" role="tablist" aria-label="Views">
            {tab(View::Chat, "Chat")}
            {tab(View::Order, "Order")}
            {tab(View::Explore, "Explore")}
            {tab(View::Vision, "Vision")}
        </nav>
        <main class="layout">
            <section class="chat-column" aria-label="Chat">
                <LoadPanel />
                {move || match view_shown.get() {
                    View::Chat => view! { <ChatPanel /> }.into_any(),
                    View::Order => view! { <OrderPanel /> }.into_any(),
                    View::Explore => view! { <ExplorerPanel /> }.into_any(),
                    View::Vision => view! { <VisionPanel /> }.into_any(),
                }}
            </section>
            <SidePanel />
        </main>
    }
}
