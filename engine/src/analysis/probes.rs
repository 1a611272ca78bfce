//! Directions and baselines read from a model's activations, for the interventions that use
//! them: steering vectors by contrastive activation addition (Rimsky et al. 2024, "Steering
//! Llama 2 via Contrastive Activation Addition"; Turner et al. 2023, "Activation Addition")
//! and the mean head outputs that mean ablation puts in place of a head's own.

use crate::error::{Error, Result};
use crate::models::interventions::{HeadAblation, Interventions, Steering};
use crate::models::taps::Taps;
use crate::runtime::{Engine, Feed};

/// Two sets of prompts that differ in one quality: their difference is a steering direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeringPair {
    /// What `glassbox generate --steer` and the page call it: "positive-negative".
    pub name: &'static str,
    pub positive: &'static [&'static str],
    pub negative: &'static [&'static str],
}

/// Ready pairs, each a handful of sentences that differ in the named quality and little else.
pub const STEERING_PAIRS: &[SteeringPair] = &[
    SteeringPair {
        name: "happy-sad",
        positive: &[
            "I feel so happy and full of joy today.",
            "What a wonderful, delightful surprise!",
            "We laughed and celebrated all evening.",
            "Everything is going great and I love it.",
        ],
        negative: &[
            "I feel so sad and full of sorrow today.",
            "What a terrible, heartbreaking loss.",
            "We cried and grieved all evening.",
            "Everything is going wrong and I hate it.",
        ],
    },
    SteeringPair {
        name: "formal-casual",
        positive: &[
            "Dear Sir or Madam, I am writing to inquire about your services.",
            "We kindly request that you submit the documents at your earliest convenience.",
            "Please accept my sincere apologies for the inconvenience.",
            "I would be grateful for your assistance in this matter.",
        ],
        negative: &[
            "hey dude, what's up with your stuff?",
            "just send the docs whenever lol",
            "oops my bad, sorry!!",
            "can u help me out real quick?",
        ],
    },
    SteeringPair {
        name: "polite-rude",
        positive: &[
            "Thank you so much, I really appreciate your help.",
            "Could you please tell me the way to the station?",
            "Excuse me, would you mind moving a little?",
            "It was kind of you to wait for me.",
        ],
        negative: &[
            "Whatever, your help was useless.",
            "Tell me the way to the station, now.",
            "Move, you're in my way.",
            "You made me wait, idiot.",
        ],
    },
];

/// The ready pair called `name`.
pub fn steering_pair(name: &str) -> Option<&'static SteeringPair> {
    STEERING_PAIRS.iter().find(|p| p.name == name)
}

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
