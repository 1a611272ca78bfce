//! The Order view: a multiple-choice question whose options can be reordered, answered with
//! Set-Based Prompting (the options form a set: block mask, shared position ids) or plainly;
//! the mask and the position ids of the prompt are drawn, and "Try all orders" lists the answer
//! under every ordering.

use crate::protocol::{InspectSource, OrderLayout};
use crate::state::use_app_state;
use leptos::prelude::*;

/// The letters that name options in the answers table.
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn letter(i: usize) -> char {
    LETTERS.get(i).map_or('?', |&b| b as char)
}

#[component]
pub fn OrderPanel() -> impl IntoView {
    let state = use_app_state();
    let (question, options) = (state.order.question, state.order.options);
    let idle = move || state.can_send() && state.order.running.get().is_none();
    let run = move |all: bool| {
        let opts: Vec<String> = options.get_untracked();
        state.run_orders(&question.get_untracked(), opts, all);
    };
    view! {
        <section class="order" aria-label="Order">
            <p class="hint">
                "Small models change their answer when the options are reordered. With Set-Based "
                "Prompting every option starts at the same position and no option sees another, "
                "so the answer cannot depend on their order."
            </p>
            {move || state.engine.model.with(|m| m.as_ref().is_some_and(|m| m.completion)).then(|| view! {
                <p class="hint">
                    "This model has no chat template: the question is laid out as plain text \
                     (\"Question: …\", the options as a list, \"Answer:\"), and its answer is \
                     the first line it writes."
                </p>
            })}
            <label class="field">
                <span>"Question"</span>
                <input
                    type="text"
                    prop:value=move || question.get()
                    on:input=move |ev| question.set(event_target_value(&ev))
                />
            </label>
            <OptionList options=options />
            <label class="field inline">
                <input
                    type="checkbox"
                    prop:checked=move || state.order.set_based.get()
                    on:change=move |ev| state.order.set_based.set(event_target_checked(&ev))
                />
                <span>"Set-Based Prompting"</span>
            </label>
            <div class="actions">
                <button on:click=move |_| run(false) disabled=move || !idle()>"Run"</button>
                <button on:click=move |_| run(true) disabled=move || !idle()>"Try all orders"</button>
                <button
                    on:click=move |_| {
                        let set_based = state.order.set_based.get_untracked();
                        state.inspect(
                            format!("Order view, {}", if set_based { "set-based" } else { "plain" }),
                            InspectSource::Order {
                                question: question.get_untracked(),
                                options: options.get_untracked(),
                                set_based,
                            },
                        )
                    }
                    disabled=move || !idle()
                >"Inspect attention"</button>
                <button
                    on:click=move |_| state.order.stop()
                    disabled=move || state.order.running.get().is_none()
                >
                    "Stop"
                </button>
            </div>
            {move || state.order.error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <Answers />
            {move || state.order.layout.get().map(|layout| view! { <LayoutView layout=layout /> })}
        </section>
    }
}

#[component]
fn OptionList(options: RwSignal<Vec<String>>) -> impl IntoView {
    // A memo: typing in an option must not rebuild the list (and lose the focus).
    let count = Memo::new(move |_| options.with(Vec::len));
    let count = move || count.get();
    let full = move || count() >= LETTERS.len();
    view! {
        <ol class="options">
            {move || {
                (0..count())
                    .map(|i| {
                        let label = format!("Option {}", letter(i));
                        view! {
                            <li>
                                <input
                                    type="text"
                                    aria-label=label.clone()
                                    prop:value=move || options.with(|o| o.get(i).cloned().unwrap_or_default())
                                    on:input=move |ev| {
                                        let value = event_target_value(&ev);
                                        options.update(|o| if let Some(slot) = o.get_mut(i) { *slot = value });
                                    }
                                />
                                <button
                                    aria-label=format!("Remove {label}")
                                    disabled=move || count() <= 2
                                    on:click=move |_| options.update(|o| { o.remove(i); })
                                >
                                    "×"
                                </button>
                            </li>
                        }
                    })
                    .collect_view()
            }}
        </ol>
        <button
            on:click=move |_| options.update(|o| o.push(String::new()))
            disabled=full
        >
            "Add option"
        </button>
    }
}

/// The answer under each ordering, and whether they all agree.
#[component]
fn Answers() -> impl IntoView {
    let state = use_app_state();
    let order = state.order;
    let summary = move || {
        let answers = order.answers.get();
        if answers.is_empty() {
            return String::new();
        }
        let mut distinct: Vec<&str> = answers.iter().map(|(_, a)| a.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mode = if order.set_based.get() {
            "set-based"
        } else {
            "plain"
        };
        let done = if order.running.get().is_some() {
            format!(
                "{} of {} orderings so far",
                answers.len(),
                order.asked.get()
            )
        } else {
            format!("{} orderings", answers.len())
        };
        match distinct.len() {
            1 => format!("The same answer under all {done} ({mode} prompting)."),
            n => format!("{n} different answers across {done} ({mode} prompting)."),
        }
    };
    view! {
        <div class="answers">
            <progress
                aria-label="Orderings answered"
                max=move || order.asked.get().max(1)
                value=move || order.answers.with(Vec::len)
            ></progress>
            <p class="summary" aria-live="polite">{summary}</p>
            <p class="hint">"Order: the options' letters (A is the first option above) in the order the model saw them."</p>
            <table aria-label="Answers by order">
                <thead>
                    <tr><th>"Order"</th><th>"Answer"</th></tr>
                </thead>
                <tbody>
                    <For
                        each=move || order.answers.get().into_iter().enumerate()
                        key=|(i, (ordering, answer))| format!("{i} {ordering:?} {answer}")
                        children=|(_, (ordering, answer))| {
                            let names: String = ordering.iter().map(|&i| letter(i)).collect();
                            view! { <tr><td>{names}</td><td>{answer}</td></tr> }
                        }
                    />
                </tbody>
            </table>
        </div>
    }
}

/// Each token with its position id (options coloured by member) and the attention mask.
#[component]
fn LayoutView(layout: OrderLayout) -> impl IntoView {
    let n = layout.tokens.len();
    const CELL: usize = 6;
    let member_class = |m: Option<usize>| match m {
        Some(m) => format!("tok member-{}", m % 6),
        None => "tok".to_string(),
    };
    let chips = layout
        .tokens
        .iter()
        .zip(&layout.positions)
        .zip(&layout.members)
        .map(|((token, position), member)| {
            let title = match member {
                Some(m) => format!("option {}, position {position}", letter(*m)),
                None => format!("position {position}"),
            };
            view! {
                <li class=member_class(*member) title=title data-position=position.to_string()>
                    <span class="text">{token.clone()}</span>
                    <sub>{position.to_string()}</sub>
                </li>
            }
        })
        .collect_view();
    let cells = (0..n)
        .flat_map(|q| (0..n).map(move |k| (q, k)))
        .filter(|&(q, k)| layout.visible[q * n + k])
        .map(|(q, k)| {
            let class = match (layout.members[q], layout.members[k]) {
                (Some(a), Some(b)) if a == b => format!("member-{}", a % 6),
                _ => "shared".to_string(),
            };
            view! {
                <rect x=(k * CELL).to_string() y=(q * CELL).to_string()
                    width=CELL.to_string() height=CELL.to_string() class=class />
            }
        })
        .collect_view();
    let side = (n * CELL).to_string();
    view! {
        <h3>"Position ids"</h3>
        <ol class="tokens" aria-label="Token positions">{chips}</ol>
        <h3>"Attention mask"</h3>
        <p class="hint">"Row: a token; column: a token it may attend to (filled: visible)."</p>
        <svg class="mask" role="img" aria-label="Attention mask"
            width=side.clone() height=side.clone() viewBox=format!("0 0 {side} {side}")>
            {cells}
        </svg>
    }
}
