//! The attention explorer's work: one captured forward pass over what the user chose to
//! inspect, kept in the worker (it can be 100 MB), and the pieces the views ask for.

use super::{js, order};
use crate::protocol::{HeadData, InspectSource, InspectionSummary, LensData};
use engine::backend::{Backend, Mask};
use engine::inspect::{Inspection, MAX_INSPECTED_TOKENS};
use engine::language_model::LanguageModel;
use engine::{Error, Result};

/// The model view's pictures are at most this many pixels a side.
const THUMBNAIL_SIDE: usize = 16;
/// The logit lens lists this many candidates per layer.
const LENS_TOP: usize = 3;

/// Tokens, positions and mask of what `source` asks to inspect.
fn layout<B: Backend>(
    model: &LanguageModel<B>,
    source: &InspectSource,
) -> Result<(Vec<u32>, Vec<u32>, Mask)> {
    let causal = |ids: Vec<u32>| {
        let positions = (0..ids.len() as u32).collect();
        (ids, positions, Mask::Causal)
    };
    let (ids, positions, mask) = match source {
        InspectSource::Text(text) => causal(model.tokenizer.encode(text)?),
        InspectSource::Chat(messages) => {
            let template = model
                .template
                .as_ref()
                .ok_or_else(|| Error::ChatTemplate("this model has no chat template".into()))?;
            causal(model.tokenizer.encode(&template.render(messages, false)?)?)
        }
        InspectSource::Order {
            question,
            options,
            set_based,
        } => {
            let prompt = order::whole_prompt(model, question, options, *set_based)?;
            let mask = prompt.mask(0);
            (prompt.ids, prompt.positions, mask)
        }
    };
    if ids.is_empty() {
        return Err(Error::InvalidRequest("there is nothing to inspect".into()));
    }
    if ids.len() > MAX_INSPECTED_TOKENS {
        return Err(Error::InvalidRequest(format!(
            "this is {} tokens; the explorer inspects at most {MAX_INSPECTED_TOKENS} \
             (start a new chat, or inspect a shorter text)",
            ids.len()
        )));
    }
    Ok((ids, positions, mask))
}

/// Runs the capture; returns the inspection to keep and the summary for the page.
pub async fn inspect<B: Backend>(
    model: &LanguageModel<B>,
    backend: &B,
    source: &InspectSource,
) -> Result<(Inspection, InspectionSummary)> {
    let (ids, positions, mask) = layout(model, source)?;
    let started = js::now_ms();
    let inspection = Inspection::capture(model, backend, &ids, &positions, &mask).await?;
    let capture_ms = js::now_ms() - started;
    let (thumbnail_side, thumbnails) = inspection.thumbnails(THUMBNAIL_SIDE);
    let summary = InspectionSummary {
        tokens: ids
            .iter()
            .map(|&id| model.tokenizer.token_label(id))
            .collect(),
        ids,
        positions,
        visible: inspection.visible.clone(),
        n_layers: inspection.n_layers,
        n_heads: inspection.n_heads,
        thumbnail_side,
        thumbnails,
        rollout: inspection.rollout(),
        capture_ms,
    };
    Ok((inspection, summary))
}

pub fn head(inspection: &Inspection, layer: usize, head: usize) -> Result<HeadData> {
    Ok(HeadData {
        layer,
        head,
        probs: inspection.head(layer, head)?.to_vec(),
        scores: inspection.scores(layer, head)?,
    })
}

pub async fn lens<B: Backend>(
    inspection: &Inspection,
    model: &LanguageModel<B>,
    backend: &B,
    token: usize,
) -> Result<LensData> {
    let rows = inspection
        .logit_lens(model, backend, token, LENS_TOP)
        .await?;
    Ok(LensData {
        token,
        layers: rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(id, p)| (model.tokenizer.token_label(id), p))
                    .collect()
            })
            .collect(),
    })
}
