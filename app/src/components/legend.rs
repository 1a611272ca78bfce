//! Colour legends: every heatmap says what its colours mean, with a ramp drawn from the same
//! colour map as its cells and its two ends named.

use super::heatmap::{viridis, DIVERGING_NEGATIVE, DIVERGING_POSITIVE};
use super::surface::css;
use leptos::prelude::*;

/// How a figure maps a value to a colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColourMap {
    /// Viridis on the value itself (0 to 1).
    Viridis,
    /// Viridis on √value: attention weights, mostly tiny with a few large ones.
    ViridisSqrt,
    /// Blue for negative, the figure's ground for zero, red for positive.
    Diverging,
}

impl ColourMap {
    /// The ramp as a CSS gradient, sampled where the cells are (value space, left to right).
    pub fn gradient(self) -> String {
        let stops: Vec<String> = match self {
            ColourMap::Viridis | ColourMap::ViridisSqrt => (0..=16)
                .map(|i| {
                    let v = i as f32 / 16.0;
                    let v = if self == ColourMap::ViridisSqrt {
                        v.sqrt()
                    } else {
                        v
                    };
                    css(viridis(v))
                })
                .collect(),
            // Zero is the figure's ground, which the theme sets.
            ColourMap::Diverging => vec![
                css(DIVERGING_NEGATIVE),
                "var(--figure-ground)".to_string(),
                css(DIVERGING_POSITIVE),
            ],
        };
        format!(
            "background: linear-gradient(to right, {})",
            stops.join(", ")
        )
    }
}

/// A colour legend: "low [ramp] high", and what the colour measures.
#[component]
pub fn Legend(
    map: ColourMap,
    /// What the colour measures: "attention weight (√ scale)".
    caption: &'static str,
    #[prop(into)] low: Signal<String>,
    #[prop(into)] high: Signal<String>,
) -> impl IntoView {
    let label = move || {
        format!(
            "Colour scale: {caption}, from {} to {}",
            low.get(),
            high.get()
        )
    };
    view! {
        <div class="legend" role="img" aria-label=label>
            <span class="legend-end">{low}</span>
            <span class="legend-ramp" style=map.gradient()></span>
            <span class="legend-end">{high}</span>
            <span class="legend-caption">{caption}</span>
        </div>
    }
}

/// The legend of every attention-weight picture (√ scale, 0 to 1).
pub fn attention_legend() -> impl IntoView {
    view! {
        <Legend
            map=ColourMap::ViridisSqrt
            caption="attention weight (√ scale); grey: hidden by the mask"
            low="0"
            high="1"
        />
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_start_and_end_at_the_maps_ends() {
        let g = ColourMap::ViridisSqrt.gradient();
        assert!(g.starts_with("background: linear-gradient(to right, rgb(68,1,84)"));
        assert!(g.ends_with("rgb(253,231,37))"), "{g}");
        // √ scale: a quarter of the way along is already half way up viridis.
        // "to right, rgb(…), rgb(…), …": stop i is piece i + 1.
        let stops: Vec<&str> = g.split(", rgb").collect();
        assert_eq!(format!("rgb{}", stops[5]), css(viridis(0.5)));
        let d = ColourMap::Diverging.gradient();
        assert!(d.contains("rgb(33,102,172), var(--figure-ground), rgb(178,24,43)"));
    }
}
