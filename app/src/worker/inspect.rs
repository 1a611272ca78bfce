//! The attention explorer's work: one captured forward pass over what the user chose to
//! inspect, kept in the worker (it can be 100 MB), and the pieces the views ask for.

use super::{chat, js, order, post, Worker};
use crate::protocol::{
    ExploreReply, ExploreRequest, HeadData, InspectSource, InspectionSummary, LensData,
};
use engine::analysis::inspect::{Inspection, MAX_INSPECTED_TOKENS};
use engine::analysis::set_prompt::{PartIds, SetPrompt};
use engine::runtime::Engine;
use engine::{Error, Result};

/// The model view's pictures are at most this many pixels a side.
const THUMBNAIL_SIDE: usize = 16;
/// The logit lens lists this many candidates per layer.
const LENS_TOP: usize = 3;

impl Worker {
    pub(super) async fn on_explore(&mut self, request: ExploreRequest) {
        match request {
            ExploreRequest::Inspect { request, source } => {
                self.run_inspection(request, &source).await
            }
            ExploreRequest::Head {
                request,
                layer,
                head,
            } => {
                let result = match &self.inspection {
                    Some(inspection) => head_data(inspection, layer, head),
                    None => Err(Error::InvalidRequest("nothing is inspected".into())),
                };
                post(ExploreReply::Head {
                    request,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            ExploreRequest::Lens { request, token } => {
                let result = match (&self.inspection, &self.engine) {
                    (Some(inspection), Some(engine)) => lens_data(inspection, engine, token).await,
                    _ => Err(Error::InvalidRequest("nothing is inspected".into())),
                };
                post(ExploreReply::Lens {
                    request,
                    result: result.map_err(|e| e.to_string()),
                });
            }
        }
    }

    async fn run_inspection(&mut self, request: u32, source: &InspectSource) {
        // The previous capture goes first: two at once may not fit in memory.
        self.inspection = None;
        let result = match self.engine() {
            Ok(engine) => inspect(engine, source).await,
            Err(e) => Err(e),
        };
        let result = match result {
            Ok((inspection, summary)) => {
                self.inspection = Some(inspection);
                Ok(summary)
            }
            Err(e) => Err(e.to_string()),
        };
        post(ExploreReply::Inspected { request, result });
    }
}

/// What `source` asks to inspect, laid out (plain text and chats are one causal sequence).
fn prompt(engine: &Engine, source: &InspectSource) -> Result<SetPrompt> {
    let tokenizer = engine.tokenizer();
    let plain = |ids: Vec<u32>| SetPrompt::from_ids(&[PartIds::Text(ids)]);
    let prompt = match source {
        InspectSource::Text(text) if text.is_empty() => {
            return Err(Error::InvalidRequest("there is nothing to inspect".into()))
        }
        // Fed from its start: BOS first where the model asks for it.
        InspectSource::Text(text) => plain(tokenizer.with_bos(&tokenizer.encode(text)?))?,
        InspectSource::Chat(messages) => plain(chat::conversation_ids(engine, messages, false)?)?,
        InspectSource::Order {
            question,
            options,
            set_based,
        } => order::whole_prompt(engine, question, options, *set_based)?,
    };
    if prompt.len() > MAX_INSPECTED_TOKENS {
        return Err(Error::InvalidRequest(format!(
            "this is {} tokens; the explorer inspects at most {MAX_INSPECTED_TOKENS} \
             (start a new chat, or inspect a shorter text)",
            prompt.len()
        )));
    }
    Ok(prompt)
}

/// Runs the capture; returns the inspection to keep and the summary for the page.
async fn inspect(
    engine: &Engine,
    source: &InspectSource,
) -> Result<(Inspection, InspectionSummary)> {
    let prompt = prompt(engine, source)?;
    let started = js::now_ms();
    let inspection = Inspection::capture(engine, prompt.layout()).await?;
    let capture_ms = js::now_ms() - started;
    let (thumbnail_side, thumbnails) = inspection.thumbnails(THUMBNAIL_SIDE);
    let summary = InspectionSummary {
        tokens: prompt
            .ids
            .iter()
            .map(|&id| engine.tokenizer().token_label(id))
            .collect(),
        ids: prompt.ids,
        positions: prompt.positions,
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

fn head_data(inspection: &Inspection, layer: usize, head: usize) -> Result<HeadData> {
    Ok(HeadData {
        layer,
        head,
        probs: inspection.head(layer, head)?.to_vec(),
        scores: inspection.scores(layer, head)?,
    })
}

async fn lens_data(inspection: &Inspection, engine: &Engine, token: usize) -> Result<LensData> {
    let rows = inspection.logit_lens(engine, token, LENS_TOP).await?;
    Ok(LensData {
        token,
        layers: rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(id, p)| (engine.tokenizer().token_label(id), p))
                    .collect()
            })
            .collect(),
    })
}
