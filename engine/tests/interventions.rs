//! The Lab's interventions on the bundled model, each against an independent computation:
//! - zero-ablating a head equals the same forward with that head's columns of the attention
//!   output projection zeroed in the GGUF itself;
//! - a knockout in every layer equals a prompt whose visibility mask lacks that edge;
//! - steering equals patching every token with its own residual plus the vector;
//! - mean ablation puts the head's mean output (computed here) in place of its own;
//! - patching: the last block at the last token gives the clean log-prob, a token before the
//!   first difference changes nothing, and the sweep's cache reuse changes no number;
//! - an empty intervention is bit-identical to none, and a session forgets a cache computed
//!   under other interventions;
//! - WebGPU equals the CPU within the tolerances of `gpu_model.rs`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_engine, logprob_gap, model_path};
use engine::analysis::patching::patching_sweep;
use engine::analysis::probes::{mean_ablation, steering, steering_vector};
use engine::models::interventions::{Interventions, Knockout, ResidualPatch};
use engine::models::pass::Activations;
use engine::models::taps::Taps;
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::{Device, Engine, EngineLoader, Feed, Layout};
use pollster::block_on;

fn ids(engine: &Engine, text: &str) -> Vec<u32> {
    engine.tokenizer().encode(text).unwrap()
}

/// Next-token logits of `ids` on a fresh session, under `interventions`, activations in f32
/// (as intervened runs are by default, so that runs with and without compare).
fn logits(engine: &Engine, ids: &[u32], interventions: &Interventions) -> Vec<f32> {
    logits_in(engine, ids, interventions, Activations::F32)
}

fn logits_in(
    engine: &Engine,
    ids: &[u32],
    interventions: &Interventions,
    activations: Activations,
) -> Vec<f32> {
    let mut session = engine.session(ids.len()).unwrap();
    let feed = Feed::sequence(ids)
        .interventions(interventions)
        .activations(activations);
    block_on(session.feed(feed)).unwrap().logits
}

const PROMPT: &str = "The Eiffel Tower is in the city of";

#[test]
fn zero_ablation_equals_zeroed_output_weights() {
    let engine = cpu_engine();
    let prompt = ids(&engine, PROMPT);
    let plain = logits(&engine, &prompt, &Interventions::default());
    let heads = [(0, 0), (3, 5), (29, 8)];
    let ablated = logits(&engine, &prompt, &Interventions::ablate_heads(&heads));
    // The independent computation: the model file with those heads' columns of
    // `attn_output.weight` zeroed (whole blocks of 32 columns; zero bytes decode to 0).
    let c = engine.config().clone();
    let header = engine.header().clone();
    let mut bytes = std::fs::read(model_path()).unwrap();
    for &(layer, head) in &heads {
        let info = header
            .tensors
            .iter()
            .find(|t| t.name == format!("blk.{layer}.attn_output.weight"))
            .unwrap();
        let (block_len, block_bytes) = (
            info.ggml_type.block_len() as usize,
            info.ggml_type.block_bytes() as usize,
        );
        assert_eq!(c.head_dim % block_len, 0, "a head spans whole blocks");
        let cols = info.dims[0] as usize;
        let row_bytes = cols / block_len * block_bytes;
        let start = (header.data_offset + info.offset) as usize;
        for row in 0..info.dims[1] as usize {
            let first = start + row * row_bytes + head * c.head_dim / block_len * block_bytes;
            bytes[first..first + c.head_dim / block_len * block_bytes].fill(0);
        }
    }
    let mut loader = EngineLoader::new(Device::Cpu, Some(bytes.len() as u64));
    loader.push(&bytes).unwrap();
    let zeroed = logits(
        &loader.finish().unwrap(),
        &prompt,
        &Interventions::default(),
    );
    let gap = logprob_gap(&zeroed, &ablated);
    eprintln!("zero ablation vs zeroed weights: max |Δ log-prob| on the top 5 = {gap:e}");
    assert!(
        gap <= 1e-4,
        "ablation vs zeroed weights: |Δ log-prob| {gap}"
    );
    let moved = logprob_gap(&plain, &ablated);
    assert!(moved > 1e-3, "ablating three heads moved nothing ({moved})");
}

#[test]
fn a_knockout_in_every_layer_equals_a_mask_without_that_edge() {
    let engine = cpu_engine();
    let prompt = ids(&engine, PROMPT);
    let t = prompt.len();
    let (query, key) = (t - 1, 2);
    let knockouts = Interventions {
        knockouts: (0..engine.config().n_layers)
            .map(|layer| Knockout { layer, query, key })
            .collect(),
        ..Interventions::default()
    };
    let knocked = logits(&engine, &prompt, &knockouts);
    let mut visible: Vec<bool> = (0..t * t).map(|i| i % t <= i / t).collect();
    visible[query * t + key] = false;
    let positions: Vec<u32> = (0..t as u32).collect();
    let mut session = engine.session(t).unwrap();
    let layout = Layout {
        ids: &prompt,
        positions: &positions,
        visible: Some(visible),
    };
    let masked = block_on(session.feed(Feed::layout(layout).activations(Activations::F32)))
        .unwrap()
        .logits;
    assert_eq!(knocked, masked);
    let plain = logits(&engine, &prompt, &Interventions::default());
    assert!(logprob_gap(&plain, &knocked) > 1e-4);
    // A knockout of a later key is refused, as is one that leaves a token nothing to see.
    let later = Interventions {
        knockouts: vec![Knockout {
            layer: 0,
            query: 1,
            key: 2,
        }],
        ..Interventions::default()
    };
    let mut session = engine.session(t).unwrap();
    assert!(block_on(session.feed(Feed::sequence(&prompt).interventions(&later))).is_err());
    let blind = Interventions {
        knockouts: vec![Knockout {
            layer: 0,
            query: 0,
            key: 0,
        }],
        ..Interventions::default()
    };
    assert!(block_on(session.feed(Feed::sequence(&prompt).interventions(&blind))).is_err());
}

#[test]
fn steering_equals_patching_every_token_with_the_vector_added() {
    let engine = cpu_engine();
    let (d, layer) = (engine.config().d_model, 12);
    let positive = [ids(&engine, "I love this, it is wonderful")];
    let negative = [ids(&engine, "I hate this, it is terrible")];
    let vector = block_on(steering_vector(&engine, &positive, &negative, layer)).unwrap();
    assert_eq!(vector.len(), d);
    let prompt = ids(&engine, "The movie was");
    let steered = logits(&engine, &prompt, &steering(layer, &vector, 4.0));
    // Independently: the plain run's residual after that block, plus 4·v at every token.
    let mut session = engine.session(prompt.len()).unwrap();
    let taps = Taps {
        residual: true,
        ..Taps::default()
    };
    let residual = block_on(session.feed(Feed::sequence(&prompt).taps(taps)))
        .unwrap()
        .captured
        .residual
        .swap_remove(layer);
    let patches = Interventions {
        patches: residual
            .chunks_exact(d)
            .enumerate()
            .map(|(token, row)| ResidualPatch {
                layer,
                token,
                values: row.iter().zip(&vector).map(|(x, v)| x + 4.0 * v).collect(),
            })
            .collect(),
        ..Interventions::default()
    };
    let patched = logits(&engine, &prompt, &patches);
    let gap = logprob_gap(&steered, &patched);
    eprintln!("steering vs patching: max |Δ log-prob| on the top 5 = {gap:e}");
    assert!(gap <= 1e-5, "steering vs patching: {gap}");
    let plain = logits(&engine, &prompt, &Interventions::default());
    assert!(logprob_gap(&plain, &steered) > 1e-2);
}

#[test]
fn mean_ablation_puts_the_mean_output_in_place() {
    let engine = cpu_engine();
    let c = engine.config().clone();
    let prompt = ids(&engine, PROMPT);
    let (layer, head) = (5, 2);
    let taps = Taps {
        head_outputs: true,
        ..Taps::default()
    };
    let capture = |interventions: &Interventions| {
        let mut session = engine.session(prompt.len()).unwrap();
        block_on(
            session.feed(
                Feed::sequence(&prompt)
                    .taps(taps)
                    .interventions(interventions),
            ),
        )
        .unwrap()
        .captured
        .head_outputs
        .swap_remove(layer)
    };
    let width = c.n_heads * c.head_dim;
    let slice = |row: &[f32]| row[head * c.head_dim..(head + 1) * c.head_dim].to_vec();
    let plain = capture(&Interventions::default());
    let mut mean = vec![0.0f32; c.head_dim];
    for row in plain.chunks_exact(width) {
        for (m, v) in mean.iter_mut().zip(slice(row)) {
            *m += v / prompt.len() as f32;
        }
    }
    let ablation = block_on(mean_ablation(&engine, &prompt, &[(layer, head)])).unwrap();
    let replacement = ablation.heads[0].replacement.clone().unwrap();
    let gap = replacement
        .iter()
        .zip(&mean)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(gap <= 1e-5, "mean differs by {gap}");
    for (row, plain_row) in capture(&ablation)
        .chunks_exact(width)
        .zip(plain.chunks_exact(width))
    {
        assert_eq!(slice(row), replacement);
        // The other heads are untouched at this layer.
        assert_eq!(row[..head * c.head_dim], plain_row[..head * c.head_dim]);
    }
    for row in capture(&Interventions::ablate_heads(&[(layer, head)])).chunks_exact(width) {
        assert!(slice(row).iter().all(|&v| v == 0.0));
    }
}

#[test]
fn patching_sweep_checks_itself() {
    let engine = cpu_engine();
    let clean = ids(&engine, "The capital of France is");
    let corrupt = ids(&engine, "The capital of Italy is");
    assert_eq!(
        clean.len(),
        corrupt.len(),
        "the prompts must tokenize alike"
    );
    let first_difference = clean
        .iter()
        .zip(&corrupt)
        .position(|(a, b)| a != b)
        .unwrap();
    assert!(first_difference > 0);
    let mut heard = 0;
    let sweep = block_on(patching_sweep(&engine, &clean, &corrupt, |p| {
        heard = p.done;
        true
    }))
    .unwrap();
    let (layers, n) = (engine.config().n_layers, clean.len());
    assert_eq!(heard, layers * n);
    assert_eq!(sweep.effect.len(), layers);
    assert!(
        sweep.clean_logprob - sweep.corrupt_logprob > 1.0,
        "the corruption should matter"
    );
    let last = sweep.effect[layers - 1][n - 1];
    assert!(
        (last - sweep.clean_logprob).abs() <= 1e-5,
        "{last} vs {}",
        sweep.clean_logprob
    );
    for row in &sweep.effect {
        for &e in &row[..first_difference] {
            assert!(
                (e - sweep.corrupt_logprob).abs() <= 1e-5,
                "{e} vs {}",
                sweep.corrupt_logprob
            );
        }
    }
    // A few cells again, each on a fresh session (no reuse), from the clean residual, in the
    // sweep's precision.
    let d = engine.config().d_model;
    let mut session = engine.session(n).unwrap();
    let taps = Taps {
        residual: true,
        ..Taps::default()
    };
    let feed = Feed::sequence(&clean)
        .taps(taps)
        .activations(Activations::Fastest);
    let residual = block_on(session.feed(feed)).unwrap().captured.residual;
    for (layer, token) in [(0, first_difference), (10, first_difference), (20, n - 1)] {
        let patch = Interventions {
            patches: vec![ResidualPatch {
                layer,
                token,
                values: residual[layer][token * d..(token + 1) * d].to_vec(),
            }],
            ..Interventions::default()
        };
        let fresh = logits_in(&engine, &corrupt, &patch, Activations::Fastest);
        let want = fresh[sweep.target as usize] - log_sum_exp(&fresh);
        let got = sweep.effect[layer][token];
        assert!(
            (got - want).abs() <= 1e-5,
            "({layer}, {token}): {got} vs {want}"
        );
    }
    // Prompts of different lengths, and a stop, are clear errors.
    let longer = ids(&engine, "The capital of the United Kingdom is");
    assert!(block_on(patching_sweep(&engine, &clean, &longer, |_| true)).is_err());
    let stopped = block_on(patching_sweep(&engine, &clean, &corrupt, |p| p.done < 3));
    assert!(matches!(stopped, Err(engine::Error::Cancelled)));
}

#[test]
fn empty_interventions_are_bit_identical_and_sessions_forget_intervened_caches() {
    let engine = cpu_engine();
    let prompt = ids(&engine, PROMPT);
    let mut session = engine.session(prompt.len() + 1).unwrap();
    let none = block_on(session.feed(Feed::sequence(&prompt)))
        .unwrap()
        .logits;
    let empty = Interventions::default();
    let mut fresh = engine.session(prompt.len()).unwrap();
    let with_empty = block_on(fresh.feed(Feed::sequence(&prompt).interventions(&empty)))
        .unwrap()
        .logits;
    assert_eq!(none, with_empty);
    // The same session, now ablated: the cache from before must not be reused…
    let ablation = Interventions::ablate_heads(&[(4, 1)]);
    let ablated = block_on(session.feed(Feed::sequence(&prompt).interventions(&ablation)))
        .unwrap()
        .logits;
    assert_eq!(ablated, logits(&engine, &prompt, &ablation));
    // (Intervened runs keep activations in f32; the plain run above does not.)
    // …nor the ablated cache afterwards; appending under other interventions is refused.
    assert!(block_on(session.feed(Feed::append(&prompt[..1]))).is_err());
    let again = block_on(session.feed(Feed::sequence(&prompt)))
        .unwrap()
        .logits;
    assert_eq!(again, none);
    // A head that does not exist is refused before anything runs.
    let bad = Interventions::ablate_heads(&[(0, engine.config().n_heads)]);
    assert!(block_on(session.feed(Feed::sequence(&prompt).interventions(&bad))).is_err());
}

#[test]
fn webgpu_interventions_agree_with_the_cpu() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let gpu = Engine::load_file(Device::WebGpu(gpu), &model_path()).unwrap();
    let cpu = cpu_engine();
    let prompt = ids(&cpu, PROMPT);
    let d = cpu.config().d_model;
    let cases = [
        Interventions::ablate_heads(&[(0, 0), (3, 5), (29, 8)]),
        Interventions {
            knockouts: vec![Knockout {
                layer: 2,
                query: prompt.len() - 1,
                key: 1,
            }],
            ..Interventions::default()
        },
        steering(8, &vec![0.5; d], 1.0),
        Interventions {
            patches: vec![ResidualPatch {
                layer: 6,
                token: 3,
                values: vec![0.25; d],
            }],
            ..Interventions::default()
        },
    ];
    for interventions in &cases {
        let on_cpu = logits(&cpu, &prompt, interventions);
        let on_gpu = logits(&gpu, &prompt, interventions);
        assert_eq!(top_k(&on_cpu, 1)[0].0, top_k(&on_gpu, 1)[0].0);
        let gap = logprob_gap(&on_cpu, &on_gpu);
        assert!(gap <= 0.05, "{interventions:?}: |Δ log-prob| {gap}");
    }
}
