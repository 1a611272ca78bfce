//! The guided tour: six steps from tokens to retention, each one a deep link the page opens in
//! place (and that a teacher can copy).

use crate::deep_link::{Link, View, VisionImage};
use crate::protocol::InspectSource;
use crate::state::use_app_state;
use leptos::prelude::*;

const TEXT: &str = "The capital of France is Paris. The capital of Italy is";

struct Step {
    title: &'static str,
    text: &'static str,
    link: fn() -> Link,
}

fn explore(layer: usize, head: usize) -> Link {
    Link {
        view: View::Explore,
        source: Some(InspectSource::Text(TEXT.into())),
        layer: Some(layer),
        head: Some(head),
        ..Link::default()
    }
}

const STEPS: [Step; 6] = [
    Step {
        title: "Tokens",
        text: "The model never sees letters: the text is cut into tokens, the labels along the \
               attention matrix's axes. Common words are one token; rare ones are several.",
        link: || explore(0, 0),
    },
    Step {
        title: "The attention matrix",
        text: "Each row is a token looking back at the tokens before it; the colour is how much \
               it takes from each. Move the selected token with ↑/↓ on the matrix.",
        link: || explore(5, 3),
    },
    Step {
        title: "Heads",
        text: "Every layer has {heads} heads that look for different things. The model view shows \
               all {all}; click one to open it, or use ←/→ and PageUp/PageDown on the matrix.",
        link: || explore(14, 6),
    },
    Step {
        title: "Rollout",
        text: "Attention rollout chains the layers: how much of each token's final state flows \
               from each input token. The logit lens shows the answer forming layer by layer.",
        link: || explore(29, 0),
    },
    Step {
        title: "Order-invariant prompting",
        text: "Reorder the options and a small model may change its answer. With Set-Based \
               Prompting the options share positions and cannot see each other, so the order \
               cannot matter. Try all orders.",
        link: || Link {
            view: View::Order,
            order: Some((
                "Which of these animals is the largest?".into(),
                vec!["A mouse".into(), "An elephant".into(), "A cat".into()],
                true,
            )),
            ..Link::default()
        },
    },
    Step {
        title: "ViT and ViR",
        text: "Images too: a Vision Transformer attends from its class token to the patches; a \
               retention network decays the past instead, and computes the same answer in \
               parallel, recurrently or chunk by chunk.",
        link: || Link {
            view: View::Vision,
            image: Some(VisionImage::TestDigit(0)),
            ..Link::default()
        },
    },
];

#[component]
pub fn Tour() -> impl IntoView {
    let state = use_app_state();
    let step = RwSignal::new(None::<usize>);
    let go = move |i: usize| {
        step.set(Some(i));
        state.open_link((STEPS[i].link)());
    };
    view! {
        <button class="tour-button" on:click=move |_| go(0)>"Guided tour"</button>
        {move || step.get().map(|i| {
            let s = &STEPS[i];
            // The loaded model's numbers (SmolLM2's, 30 × 9, before one has loaded).
            let (layers, heads) = state.engine.model.with(|m| {
                m.as_ref()
                    .and_then(|m| m.summary.config.as_ref())
                    .map_or((30, 9), |c| (c.n_layers, c.n_heads))
            });
            let text = s
                .text
                .replace("{heads}", &heads.to_string())
                .replace("{all}", &(layers * heads).to_string());
            let href = (s.link)().to_query();
            view! {
                <section class="tour" role="dialog" aria-label="Guided tour">
                    <h2>{format!("Step {} of {}: {}", i + 1, STEPS.len(), s.title)}</h2>
                    <p>{text}</p>
                    <div class="actions">
                        <button on:click=move |_| go(i.saturating_sub(1)) disabled=i == 0>"Back"</button>
                        <button on:click=move |_| go((i + 1).min(STEPS.len() - 1)) disabled=i + 1 == STEPS.len()>"Next"</button>
                        <button on:click=move |_| step.set(None)>"Close tour"</button>
                        <a href=href>"Link to this step"</a>
                    </div>
                </section>
            }
        })}
    }
}
