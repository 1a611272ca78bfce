//! Outlier features (Dettmers et al., 2022, "LLM.int8()"; Sun et al., 2024, "Massive
//! Activations"): a few residual-stream dimensions carry values far larger than the rest, and
//! rounding activations to 8 bits per block lets them set the block's scale, which drowns the
//! small values beside them. We measure each dimension's magnitude after every block, name the
//! ones that stand out, and run the prompt three ways: activations in f32, rounded to 8 bits
//! per block of 32 (as llama.cpp's Q8_0 activations), and rounded with the outlier columns of
//! each product's input kept wide (as LLM.int8), reporting each one's log-prob drift.

use crate::error::Result;
use crate::models::interventions::{Int8Activations, Interventions};
use crate::models::pass::Activations;
use crate::models::taps::Taps;
use crate::numerics::{log_sum_exp, top_k};
use crate::runtime::{Engine, Feed};
use serde::{Deserialize, Serialize};

/// A dimension stands out in a layer when its magnitude is this many times the layer's median.
pub const STANDS_OUT: f32 = 20.0;

/// LLM.int8's threshold: a product's input column with a value this large stays wide.
pub const INT8_THRESHOLD: f32 = 6.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierReport {
    pub ids: Vec<u32>,
    /// `magnitudes[l][i]`: the largest |value| of residual dimension `i` after block `l`, over
    /// the prompt's tokens.
    pub magnitudes: Vec<Vec<f32>>,
    /// The dimensions that stand out in some layer, largest first.
    pub outliers: Vec<OutlierDimension>,
    /// The three runs: f32, 8-bit per block, 8-bit with outliers wide.
    pub runs: Vec<PrecisionRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierDimension {
    pub dimension: usize,
    /// Its largest magnitude, and the block after which it is reached.
    pub largest: f32,
    pub layer: usize,
    /// In how many layers it stands out.
    pub layers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRun {
    /// "f32", "8-bit" or "8-bit, outliers wide".
    pub name: String,
    /// Its five most likely next tokens with their log-probs.
    pub top: Vec<(u32, f32)>,
    /// The largest |Δ log-prob| from the f32 run over the f32 run's top 5.
    pub max_logprob_drift: f32,
}

/// Measures `ids`'s residual stream and runs it in the three precisions; `threshold` is the
/// LLM.int8 run's (default [`INT8_THRESHOLD`]).
pub async fn outlier_features(
    engine: &Engine,
    ids: &[u32],
    threshold: Option<f32>,
) -> Result<OutlierReport> {
    let d = engine.config().d_model;
    let mut session = engine.session(ids.len())?;
    let taps = Taps {
        residual: true,
        ..Taps::default()
    };
    let fed = session
        .feed(Feed::sequence(ids).taps(taps).activations(Activations::F32))
        .await?;
    let magnitudes: Vec<Vec<f32>> = fed
        .captured
        .residual
        .iter()
        .map(|rows| {
            let mut largest = vec![0f32; d];
            for row in rows.chunks_exact(d) {
                for (m, v) in largest.iter_mut().zip(row) {
                    *m = m.max(v.abs());
                }
            }
            largest
        })
        .collect();
    let outliers = standing_out(&magnitudes);

    let exact = log_probs(&fed.logits);
    let exact_top = top_k(&exact, 5);
    let mut runs = vec![PrecisionRun {
        name: "f32".into(),
        top: exact_top.clone(),
        max_logprob_drift: 0.0,
    }];
    let modes = [
        ("8-bit", None),
        (
            "8-bit, outliers wide",
            Some(threshold.unwrap_or(INT8_THRESHOLD)),
        ),
    ];
    for (name, keep_outliers_above) in modes {
        let interventions = Interventions {
            activations_8bit: Some(Int8Activations {
                keep_outliers_above,
            }),
            ..Interventions::default()
        };
        let feed = Feed::sequence(ids)
            .interventions(&interventions)
            .activations(Activations::F32);
        let logits = log_probs(&session.feed(feed).await?.logits);
        let drift = exact_top
            .iter()
            .map(|&(id, lp)| (logits[id as usize] - lp).abs())
            .fold(0f32, f32::max);
        runs.push(PrecisionRun {
            name: name.into(),
            top: top_k(&logits, 5),
            max_logprob_drift: drift,
        });
    }
    Ok(OutlierReport {
        ids: ids.to_vec(),
        magnitudes,
        outliers,
        runs,
    })
}

fn log_probs(logits: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(logits);
    logits.iter().map(|l| l - lse).collect()
}

/// The dimensions at least [`STANDS_OUT`] times their layer's median magnitude somewhere.
fn standing_out(magnitudes: &[Vec<f32>]) -> Vec<OutlierDimension> {
    let d = magnitudes.first().map_or(0, Vec::len);
    let medians: Vec<f32> = magnitudes
        .iter()
        .map(|layer| {
            let mut sorted = layer.clone();
            sorted.sort_by(f32::total_cmp);
            sorted[sorted.len() / 2]
        })
        .collect();
    let mut found: Vec<OutlierDimension> = (0..d)
        .filter_map(|dimension| {
            let stands_out = |l: usize| magnitudes[l][dimension] >= STANDS_OUT * medians[l];
            let layers = (0..magnitudes.len()).filter(|&l| stands_out(l)).count();
            let (layer, largest) = magnitudes
                .iter()
                .map(|layer| layer[dimension])
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            (layers > 0).then_some(OutlierDimension {
                dimension,
                largest,
                layer,
                layers,
            })
        })
        .collect();
    found.sort_by(|a, b| b.largest.total_cmp(&a.largest));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_dimensions_that_stand_out() {
        let mut layer = vec![1.0f32; 64];
        layer[7] = 30.0;
        let mut other = vec![2.0f32; 64];
        other[7] = 50.0;
        other[9] = 41.0;
        let found = standing_out(&[layer, other]);
        let dims: Vec<usize> = found.iter().map(|o| o.dimension).collect();
        assert_eq!(dims, [7, 9]);
        assert_eq!(
            (found[0].largest, found[0].layer, found[0].layers),
            (50.0, 1, 2)
        );
        assert_eq!(found[1].layers, 1);
    }
}
