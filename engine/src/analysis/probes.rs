//! Directions and baselines read from a model's activations, for the interventions that use
//! them: steering vectors by contrastive activation addition (Rimsky et al. 2024, "Steering
//! Llama 2 via Contrastive Activation Addition"; Turner et al. 2023, "Activation Addition")
//! and the mean head outputs that mean ablation puts in place of a head's own.

use crate::error::{Error, Result};
use crate::models::interventions::{HeadAblation, Interventions, Steering};
use crate::models::taps::Taps;
use crate::runtime::{Engine, Feed};

/// The residual stream after block `layer` at each prompt's last token, averaged over prompts.
async fn mean_last_residual(
    engine: &Engine,
    prompts: &[Vec<u32>],
    layer: usize,
) -> Result<Vec<f32>> {
    let d = engine.config().d_model;
    let mut sum = vec![0.0f64; d];
    let taps = Taps {
        residual: true,
        ..Taps::default()
    };
    for ids in prompts {
        let mut session = engine.session(ids.len())?;
        let fed = session.feed(Feed::sequence(ids).taps(taps)).await?;
        let rows = &fed.captured.residual[layer];
        for (s, v) in sum.iter_mut().zip(&rows[rows.len() - d..]) {
            *s += f64::from(*v);
        }
    }
    Ok(sum
        .iter()
        .map(|s| (s / prompts.len() as f64) as f32)
        .collect())
}

/// The steering vector for `layer`: the mean last-token residual after that block over
/// `positive` prompts minus the same over `negative` ones (`d_model` values, unscaled).
pub async fn steering_vector(
    engine: &Engine,
    positive: &[Vec<u32>],
    negative: &[Vec<u32>],
    layer: usize,
) -> Result<Vec<f32>> {
    check_layer(engine, layer)?;
    if positive.is_empty()
        || negative.is_empty()
        || positive.iter().chain(negative).any(Vec::is_empty)
    {
        return Err(Error::InvalidRequest(
            "a steering vector needs at least one non-empty prompt on each side".into(),
        ));
    }
    let plus = mean_last_residual(engine, positive, layer).await?;
    let minus = mean_last_residual(engine, negative, layer).await?;
    Ok(plus.iter().zip(&minus).map(|(a, b)| a - b).collect())
}

/// Interventions that add `alpha · vector` after block `layer` at every token.
pub fn steering(layer: usize, vector: &[f32], alpha: f32) -> Interventions {
    Interventions {
        steering: vec![Steering {
            layer,
            vector: vector.iter().map(|v| alpha * v).collect(),
        }],
        ..Interventions::default()
    }
}

/// Mean ablation of `heads` (`(layer, head)` pairs): each replaced, at every token, by its mean
/// output over `ids` (the heads' outputs run as usual, then are averaged over the tokens).
pub async fn mean_ablation(
    engine: &Engine,
    ids: &[u32],
    heads: &[(usize, usize)],
) -> Result<Interventions> {
    let c = engine.config();
    Interventions::ablate_heads(heads).check(c)?;
    if ids.is_empty() {
        return Err(Error::InvalidRequest("mean ablation needs a prompt".into()));
    }
    let taps = Taps {
        head_outputs: true,
        ..Taps::default()
    };
    let mut session = engine.session(ids.len())?;
    let captured = session.feed(Feed::sequence(ids).taps(taps)).await?.captured;
    let width = c.n_heads * c.head_dim;
    let ablations = heads
        .iter()
        .map(|&(layer, head)| {
            let rows = captured.head_outputs[layer].chunks_exact(width);
            let mut mean = vec![0.0f64; c.head_dim];
            for row in rows {
                let slice = &row[head * c.head_dim..(head + 1) * c.head_dim];
                for (m, v) in mean.iter_mut().zip(slice) {
                    *m += f64::from(*v);
                }
            }
            HeadAblation {
                layer,
                head,
                replacement: Some(mean.iter().map(|m| (m / ids.len() as f64) as f32).collect()),
            }
        })
        .collect();
    Ok(Interventions {
        heads: ablations,
        ..Interventions::default()
    })
}

fn check_layer(engine: &Engine, layer: usize) -> Result<()> {
    let layers = engine.config().n_layers;
    if layer >= layers {
        return Err(Error::InvalidRequest(format!(
            "layer {layer} does not exist (the model has layers 0 to {})",
            layers - 1
        )));
    }
    Ok(())
}
