//! Small controls the views share.

use leptos::prelude::*;

/// A labelled number field from 0 to `max()`, bound to `value` (its label beside it).
pub(super) fn number_input(
    label: &'static str,
    value: RwSignal<usize>,
    max: impl Fn() -> usize + Copy + Send + Sync + 'static,
) -> impl IntoView {
    number_input_then(label, value, max, || {})
}

/// [`number_input`], and `then()` after each change the user makes.
pub(super) fn number_input_then(
    label: &'static str,
    value: RwSignal<usize>,
    max: impl Fn() -> usize + Copy + Send + Sync + 'static,
    then: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <label class="field inline">
            <span>{label}</span>
            <input
                type="number"
                min="0"
                max=move || max().to_string()
                prop:value=move || value.get().to_string()
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                        value.set(v.min(max()));
                        then();
                    }
                }
            />
        </label>
    }
}
