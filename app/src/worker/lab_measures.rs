//! The Lab's two measures of one prompt that change nothing: direct logit attribution (the
//! next token's logit split into the embedding's, each head's and each MLP's parts) and
//! outlier features (each residual dimension's magnitude, and the prompt in three
//! precisions). Both are the engine's; this file turns token ids into the labels the page
//! shows.

use super::js;
use super::lab_prompt::{encode_from_start, labels};
use crate::protocol::{AttributionResult, OutlierResult, PrecisionRunResult};
use engine::analysis::attribution::{direct_logit_attribution, LogitAttribution};
use engine::analysis::outliers::{outlier_features, OutlierReport};
use engine::runtime::Engine;
use engine::Result;

pub(super) async fn attribute(
    engine: &Engine,
    prompt: &str,
    target: Option<u32>,
) -> Result<AttributionResult> {
    let started = js::now_ms();
    let ids = encode_from_start(engine, prompt)?;
    let LogitAttribution {
        ids,
        target,
        logit,
        embedding,
        heads,
        mlps,
        total,
    } = direct_logit_attribution(engine, &ids, target).await?;
    Ok(AttributionResult {
        tokens: labels(engine, &ids),
        target_id: target,
        target: engine.tokenizer().token_label(target),
        logit,
        total,
        embedding,
        heads,
        mlps,
        ms: js::now_ms() - started,
    })
}

pub(super) async fn measure_outliers(engine: &Engine, prompt: &str) -> Result<OutlierResult> {
    let started = js::now_ms();
    let ids = encode_from_start(engine, prompt)?;
    // The engine's default threshold (LLM.int8's 6).
    let OutlierReport {
        ids,
        magnitudes,
        outliers,
        runs,
    } = outlier_features(engine, &ids, None).await?;
    let runs = runs
        .into_iter()
        .map(|run| PrecisionRunResult {
            name: run.name,
            top: run
                .top
                .into_iter()
                .map(|(id, logprob)| (engine.tokenizer().token_label(id), logprob))
                .collect(),
            max_logprob_drift: run.max_logprob_drift,
        })
        .collect();
    Ok(OutlierResult {
        tokens: labels(engine, &ids),
        magnitudes,
        outliers,
        runs,
        ms: js::now_ms() - started,
    })
}
