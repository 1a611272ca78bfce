//! Direct logit attribution (as in TransformerLens and Elhage et al. 2021, "A Mathematical
//! Framework for Transformer Circuits"): the next token's logit split into what the
//! embedding, every head and every MLP wrote into the residual stream at the last position.
//!
//! The final residual is the sum of those parts (each block adds its attention output, the sum
//! of its heads' projected outputs, then its MLP's). The logit is
//! `W_U[target] · (g ⊙ x / rms(x))`: with `rms(x)` of the whole residual held fixed, it is
//! linear in `x`, so each part's share is `W_U[target] · (g ⊙ part) / rms(x)`, and the shares
//! sum to the logit. We compute a share with the model's own final norm and unembedding: the
//! norm of a part alone divides by the part's rms, which we multiply back
//! (`RMSNorm(c) · rms(c) = g ⊙ c`).

use crate::error::Result;
use crate::models::pass::Activations;
use crate::models::taps::Taps;
use crate::numerics::argmax;
use crate::runtime::{Engine, Feed};
use serde::{Deserialize, Serialize};

/// The target's logit and its parts. `heads[l][h] `: head `h` of block `l`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitAttribution {
    pub ids: Vec<u32>,
    pub target: u32,
    /// The target's logit in the forward pass.
    pub logit: f32,
    pub embedding: f32,
    pub heads: Vec<Vec<f32>>,
    pub mlps: Vec<f32>,
    /// The sum of the parts (equal to `logit` up to rounding).
    pub total: f32,
}

/// Splits the logit of `target` (default: the most likely next token) after `ids`.
pub async fn direct_logit_attribution(
    engine: &Engine,
    ids: &[u32],
    target: Option<u32>,
) -> Result<LogitAttribution> {
    let c = engine.config().clone();
    let (layers, heads, head_dim, d) = (c.n_layers, c.n_heads, c.head_dim, c.d_model);
    let mut session = engine.session(ids.len())?;
    let taps = Taps {
        residual: true,
        head_outputs: true,
        ..Taps::default()
    };
    let feed = Feed::sequence(ids).taps(taps).activations(Activations::F32);
    let fed = session.feed(feed).await?;
    let target = target.unwrap_or_else(|| argmax(&fed.logits));
    let logit = *fed.logits.get(target as usize).ok_or_else(|| {
        crate::error::Error::InvalidRequest(format!("token {target} is outside the vocabulary"))
    })?;
    let last = ids.len() - 1;
    let row = |rows: &[f32], width: usize| rows[last * width..(last + 1) * width].to_vec();

    // The parts, as residual-stream rows: the embedding, then per block its heads and its MLP.
    let mut parts: Vec<f32> = engine.embeddings(&ids[last..]).await?;
    let mut before = parts.clone();
    for l in 0..layers {
        let z = row(&fed.captured.head_outputs[l], heads * head_dim);
        // Row h keeps head h's slice of the heads' outputs, zeros elsewhere.
        let mut one_head = vec![0.0; heads * heads * head_dim];
        for h in 0..heads {
            let slice = h * head_dim..(h + 1) * head_dim;
            one_head[h * heads * head_dim..][slice.clone()].copy_from_slice(&z[slice]);
        }
        let projected = engine.project_heads(l, &one_head, heads).await?;
        let after = row(&fed.captured.residual[l], d);
        // The MLP added whatever the block added besides its heads.
        let mlp: Vec<f32> = (0..d)
            .map(|i| after[i] - before[i] - (0..heads).map(|h| projected[h * d + i]).sum::<f32>())
            .collect();
        parts.extend(projected);
        parts.extend(mlp);
        before = after;
    }
    let n = parts.len() / d;
    let logits = engine.logits_of_residuals_exact(&parts, n).await?;
    let eps = engine.rms_eps();
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps).sqrt();
    let final_rms = rms(&before);
    let vocab = c.vocab_size;
    let shares: Vec<f32> = (0..n)
        .map(|i| {
            let part = &parts[i * d..(i + 1) * d];
            logits[i * vocab + target as usize] * rms(part) / final_rms
        })
        .collect();
    // shares: [embedding, (heads…, mlp) per block]
    let per_block = heads + 1;
    let attribution = LogitAttribution {
        ids: ids.to_vec(),
        target,
        logit,
        embedding: shares[0],
        heads: (0..layers)
            .map(|l| shares[1 + l * per_block..1 + l * per_block + heads].to_vec())
            .collect(),
        mlps: (0..layers)
            .map(|l| shares[1 + l * per_block + heads])
            .collect(),
        total: shares.iter().sum(),
    };
    Ok(attribution)
}
