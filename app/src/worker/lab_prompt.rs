//! The Lab's prompts as token ids, and their tokens as labels: what the worker's Lab requests
//! (ablation, patching, attribution, outliers) and the chat's steering prompts share.

use engine::analysis::inspect::MAX_INSPECTED_TOKENS;
use engine::runtime::Engine;
use engine::{Error, Result};

/// `text` fed from its start, as the explorer's free text is: BOS first where the model asks
/// for it.
pub(super) fn encode_from_start(engine: &Engine, text: &str) -> Result<Vec<u32>> {
    let tokenizer = engine.tokenizer();
    let ids = tokenizer.with_bos(&tokenizer.encode(text)?);
    if ids.is_empty() {
        return Err(Error::InvalidRequest("the prompt is empty".into()));
    }
    if ids.len() > MAX_INSPECTED_TOKENS {
        return Err(Error::InvalidRequest(format!(
            "this prompt is {} tokens; the Lab runs at most {MAX_INSPECTED_TOKENS}",
            ids.len()
        )));
    }
    Ok(ids)
}

pub(super) fn labels(engine: &Engine, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| engine.tokenizer().token_label(id))
        .collect()
}
