//! The chat's attention policy: the control in the settings (none, Λ from LM-Infinite, or a KV
//! budget in the spirit of H2O) and, under a policy that evicts, the strip under the chat's
//! statistics that shows which of the conversation's tokens the cache still holds.

use crate::protocol::KeptTokens;
use crate::state::{use_app_state, PolicyKind};
use leptos::prelude::*;

/// The strip draws at most this many tokens (the most recent): a plain span each.
const STRIP_TOKENS: usize = 4000;

/// What the policy does, in words.
fn policy_sentence(kind: PolicyKind, start: usize, window: usize, budget: usize) -> String {
    match kind {
        PolicyKind::None => "None: every token attends to every earlier one; a conversation \
                             longer than the context must drop its oldest messages."
            .to_string(),
        PolicyKind::Lambda => format!(
            "Λ: each token sees the first {start} tokens and the {window} most recent; the ones \
             between are evicted, so the chat goes on past the context."
        ),
        PolicyKind::Budget => format!(
            "KV budget: the cache holds at most {budget} tokens (the first 4, the most recent \
             quarter, and those that received the most attention); the rest are evicted."
        ),
    }
}

#[component]
pub fn PolicyControl() -> impl IntoView {
    let state = use_app_state();
    let policy = move || state.chat.settings.with(|s| s.policy.clone());
    let number = |label: &'static str,
                  get: fn(&crate::state::PolicySettings) -> usize,
                  set: fn(&mut crate::state::PolicySettings, usize),
                  shown: fn(PolicyKind) -> bool| {
        view! {
            <Show when=move || shown(policy().kind)>
                <label class="field inline">
                    <span>{label}</span>
                    <input
                        type="number"
                        min="1"
                        prop:value=move || get(&policy()).to_string()
                        on:change=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                                state.chat.settings.update(|s| set(&mut s.policy, v.max(1)));
                            }
                        }
                    />
                </label>
            </Show>
        }
    };
    view! {
        <fieldset class="attention-policy">
            <legend>"Attention policy"</legend>
            <label class="field">
                <span>"Attention policy"</span>
                <select
                    prop:value=move || policy().kind.name()
                    on:change=move |ev| {
                        let kind = PolicyKind::parse(&event_target_value(&ev));
                        state.chat.settings.update(|s| s.policy.kind = kind);
                    }
                >
                    <option value="none">"None"</option>
                    <option value="lambda">"Λ (LM-Infinite: start tokens + window)"</option>
                    <option value="budget">"KV budget (H2O-like)"</option>
                </select>
            </label>
            {number("Start tokens", |p| p.start_tokens, |p, v| p.start_tokens = v, |k| k == PolicyKind::Lambda)}
            {number("Window", |p| p.window, |p, v| p.window = v, |k| k == PolicyKind::Lambda)}
            {number("Budget", |p| p.budget, |p, v| p.budget = v, |k| k == PolicyKind::Budget)}
            <p class="hint">{move || {
                let p = policy();
                policy_sentence(p.kind, p.start_tokens, p.window, p.budget)
            }}</p>
        </fieldset>
    }
}

/// "cache holds K of N tokens (E evicted)".
pub(super) fn cache_line(kept: &KeptTokens) -> String {
    let held = kept.kept.iter().filter(|&&k| k).count();
    format!(
        "cache holds {held} of {} tokens ({} evicted)",
        kept.tokens.len(),
        kept.evicted
    )
}

/// The conversation's tokens, those the cache holds marked and the evicted ones greyed.
#[component]
pub fn CacheStrip() -> impl IntoView {
    let chat = use_app_state().chat;
    let kept = move || {
        chat.stats
            .with(|s| s.as_ref().and_then(|s| s.cache.clone()))
    };
    view! {
        {move || kept().map(|kept| {
            let skip = kept.tokens.len().saturating_sub(STRIP_TOKENS);
            let spans = kept
                .tokens
                .iter()
                .zip(&kept.kept)
                .skip(skip)
                .map(|(token, &held)| {
                    let class = if held { "kept" } else { "evicted" };
                    view! { <span class=class>{token.clone()}</span> }
                })
                .collect_view();
            view! {
                <div class="kept-tokens">
                    <p class="stats cache-line">
                        {cache_line(&kept)}
                        {(skip > 0).then(|| format!("; the strip shows the last {STRIP_TOKENS}"))}
                    </p>
                    <div class="cache-strip" aria-hidden="true" title="Kept tokens are outlined; evicted ones are grey">
                        {spans}
                    </div>
                </div>
            }
        })}
    }
}
