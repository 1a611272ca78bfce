use crate::protocol::InspectSource;
use crate::state::{use_app_state, Role};
use leptos::prelude::*;

/// "the oldest message", "the 3 oldest messages".
fn oldest(count: usize) -> String {
    match count {
        1 => "the oldest message".to_string(),
        n => format!("the {n} oldest messages"),
    }
}

/// The conversation, the message box and the chat's buttons.
///
/// Replies are inserted as text nodes, never as HTML: whatever the model writes stays text. A
/// model without a chat template is in completion mode: it continues the text, and the page
/// says so.
#[component]
pub fn ChatPanel() -> impl IntoView {
    let state = use_app_state();
    let chat = state.chat;
    let draft = chat.draft;
    let completion = move || {
        state
            .engine
            .model
            .with(|m| m.as_ref().filter(|m| m.completion).map(|m| m.name.clone()))
    };
    let send = move || {
        let text = draft.get_untracked();
        if !text.trim().is_empty() && state.can_send() {
            draft.set(String::new());
            state.send_message(&text);
        }
    };
    // Escape stops a reply from anywhere on the page.
    let escape = window_event_listener(leptos::ev::keydown, move |event| {
        if event.key() == "Escape" {
            chat.stop();
        }
    });
    on_cleanup(move || escape.remove());
    let stats = move || {
        chat.stats.get().map(|s| {
            format!(
                "{} tokens, {:.1} tokens/s, first token after {:.1} s · context {} of {} tokens{}",
                s.tokens,
                s.tokens_per_second,
                s.first_token_ms / 1000.0,
                s.context_used,
                s.context,
                if s.stopped {
                    " · stopped"
                } else if s.cut {
                    " · cut: the context is full"
                } else {
                    ""
                }
            )
        })
    };
    let template_error = move || {
        state
            .engine
            .model
            .with(|m| m.as_ref().and_then(|m| m.template_error.clone()))
    };
    view! {
        {move || template_error().map(|error| view! {
            <p class="mode-note">
                "The model's chat template fails (" {error} "); using a plain format."
            </p>
        })}
        {move || completion().map(|name| view! {
            <p class="mode-note">
                "Completion mode: " {name} " has no chat template, so it does not answer: it \
                 continues your text. Write the beginning of a text and send it; each reply goes \
                 on from everything above."
            </p>
        })}
        <div class="conversation" role="log" aria-label="Conversation" aria-live="polite">
            // A row stays as its reply streams in: its text node follows the turn's text, so a
            // piece of a reply costs the page one text change (and a screen reader hears the
            // new words only), not a new row.
            <For
                each=move || chat.turns.get()
                key=|turn| (turn.id, turn.cut)
                let:turn
            >
                <div class=match turn.role { Role::User => "turn user", Role::Assistant => "turn assistant" }>
                    <span class="who">{move || match (turn.role, completion().is_some()) {
                        (Role::User, _) => "You",
                        (Role::Assistant, false) => "Model",
                        (Role::Assistant, true) => "Model (continuing)",
                    }}</span>
                    <p class="text">{
                        let id = turn.id;
                        let text = Memo::new(move |_| chat.text_of(id));
                        move || text.get()
                    }</p>
                    {turn.cut.then(|| view! {
                        <p class="cut-note">"[Cut: the reply reached the end of the model's context.]"</p>
                    })}
                    {(turn.role == Role::Assistant).then(|| {
                        let id = turn.id;
                        view! {
                            <button
                                class="link inspect"
                                aria-label="Inspect this reply"
                                disabled=move || !state.can_send()
                                on:click=move |_| state.inspect(
                                    "Chat reply".into(),
                                    InspectSource::Chat(chat.messages_through(id)),
                                )
                            >"Inspect"</button>
                        }
                    })}
                </div>
            </For>
            <Show when=move || chat.generating.get().is_some()>
                <p class="typing" aria-hidden="true">"…"</p>
            </Show>
        </div>
        {move || chat.too_long.get().map(|(dropped, context)| view! {
            <div class="notice too-long" role="alert">
                <p>
                    {format!(
                        "The conversation no longer fits the model's {context}-token context with \
                         room for a reply, so it was not answered. Drop {} (the system prompt \
                         stays) and answer, or start a New chat.",
                        oldest(dropped)
                    )}
                </p>
                <button
                    type="button"
                    disabled=move || !state.can_send()
                    on:click=move |_| state.drop_oldest_and_answer()
                >{format!("Drop {} and answer", oldest(dropped))}</button>
            </div>
        })}
        {move || state.engine.notice.get().map(|notice| view! {
            <p class="notice" role="alert">
                {notice}
                " "
                <button class="link" on:click=move |_| state.engine.notice.set(None)>"Dismiss"</button>
            </p>
        })}
        <p class="stats">{stats}</p>
        <super::attention_policy::CacheStrip />
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            <textarea
                aria-label="Message"
                placeholder=move || if completion().is_some() {
                    "Write the beginning of a text… (Enter sends, Shift+Enter starts a new line, Escape stops)"
                } else {
                    "Ask something… (Enter sends, Shift+Enter starts a new line, Escape stops)"
                }
                rows="3"
                prop:value=draft
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <div class="buttons">
                <button type="submit" disabled=move || !state.can_send() || draft.get().trim().is_empty()>"Send"</button>
                <button type="button" on:click=move |_| chat.stop() disabled=move || chat.generating.get().is_none()>"Stop"</button>
                <button
                    type="button"
                    on:click=move |_| state.regenerate()
                    disabled=move || !state.can_send() || !chat.ends_with_reply()
                >"Regenerate"</button>
                <button type="button" on:click=move |_| chat.new_chat()>"New chat"</button>
            </div>
        </form>
    }
}
