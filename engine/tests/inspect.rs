//! The attention explorer's data on the bundled model: every probability row sums to 1 and is
//! zero where the mask hides a key (causal and Set-Based masks); the captured pre-softmax scores
//! give the captured probabilities; the logit lens at the last layer is the model's own output;
//! rollout rows are distributions; and the WebGPU captures agree with the CPU's (≤ 1e-3, see
//! [`CPU_GPU_TOLERANCE`]).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_engine, cpu_model, model_path};
use engine::analysis::inspect::Inspection;
use engine::analysis::set_prompt::{PromptPart, SetPrompt};
use engine::cpu::CpuBackend;
use engine::models::taps::Taps;
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::{Device, Engine, Feed, Layout, Session};

/// The bound. Captures run the matmuls with f32 activations on both backends
/// (`Backend::matmul_exact`); with the CPU's usual 16-bit activations this reached 1.1e-3.
const CPU_GPU_TOLERANCE: f32 = 1e-3;

fn causal_ids() -> Vec<u32> {
    cpu_model()
        .tokenizer
        .encode("The capital of France is Paris. The capital of Italy is")
        .unwrap()
}

fn capture(engine: &Engine, layout: Layout<'_>) -> Inspection {
    pollster::block_on(Inspection::capture(engine, layout)).unwrap()
}

fn causal(engine: &Engine) -> Inspection {
    let ids = causal_ids();
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let layout = Layout {
        ids: &ids,
        positions: &positions,
        visible: None,
    };
    capture(engine, layout)
}

fn set_based() -> Inspection {
    let model = cpu_model();
    let prompt = SetPrompt::encode(
        &model.tokenizer,
        &[
            PromptPart::Text("Pick one:".into()),
            PromptPart::Set(vec![" red apples".into(), " a pear".into()]),
            PromptPart::Text(" Answer:".into()),
        ],
    )
    .unwrap();
    capture(&cpu_engine(), prompt.layout())
}

fn check_rows_are_masked_distributions(inspection: &Inspection) {
    let t = inspection.tokens();
    for layer in 0..inspection.n_layers {
        for head in 0..inspection.n_heads {
            let probs = inspection.head(layer, head).unwrap();
            for i in 0..t {
                let row = &probs[i * t..(i + 1) * t];
                let sum: f32 = row.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-4,
                    "layer {layer} head {head} row {i} sums to {sum}"
                );
                for (j, &p) in row.iter().enumerate() {
                    if !inspection.visible[i * t + j] {
                        assert_eq!(p, 0.0, "layer {layer} head {head}: {i} sees hidden {j}");
                    }
                }
            }
        }
    }
}

fn check_scores_give_the_probabilities(inspection: &Inspection) {
    let t = inspection.tokens();
    for layer in [0, inspection.n_layers / 2, inspection.n_layers - 1] {
        for head in 0..inspection.n_heads {
            let probs = inspection.head(layer, head).unwrap();
            let scores = inspection.scores(layer, head).unwrap();
            for i in 0..t {
                let row = &scores[i * t..(i + 1) * t];
                let max = row.iter().flatten().fold(f32::MIN, |m, &s| m.max(s));
                let sum: f32 = row.iter().flatten().map(|s| (s - max).exp()).sum();
                for (j, s) in row.iter().enumerate() {
                    let want = s.map_or(0.0, |s| (s - max).exp() / sum);
                    let got = probs[i * t + j];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "layer {layer} head {head} [{i}, {j}]: softmax(scores) {want}, probs {got}"
                    );
                }
            }
        }
    }
}

#[test]
fn causal_attention_rows_are_distributions_that_never_look_ahead() {
    let inspection = causal(&cpu_engine());
    assert_eq!(inspection.tokens(), causal_ids().len());
    check_rows_are_masked_distributions(&inspection);
    check_scores_give_the_probabilities(&inspection);
}

#[test]
fn set_based_attention_respects_the_block_mask() {
    let inspection = set_based();
    // The two members hide each other: the mask has holes below the diagonal.
    let t = inspection.tokens();
    let hidden_below = (0..t)
        .flat_map(|i| (0..i).map(move |j| (i, j)))
        .filter(|&(i, j)| !inspection.visible[i * t + j])
        .count();
    assert!(hidden_below > 0, "the set-based mask hides nothing");
    check_rows_are_masked_distributions(&inspection);
    check_scores_give_the_probabilities(&inspection);
}

#[test]
fn the_logit_lens_at_the_last_layer_is_the_models_output() {
    let model = cpu_model();
    let backend = CpuBackend::new();
    let ids = causal_ids();
    let inspection = causal(&cpu_engine());
    let mut session = Session::new(model, &backend, 64).unwrap();
    // The same run as the inspection's (taps on: f32 activations in the matmuls).
    let out =
        pollster::block_on(session.feed(model, &backend, Feed::append(&ids).taps(Taps::all())))
            .unwrap();
    let lse = log_sum_exp(&out.logits);
    let want: Vec<(u32, f32)> = top_k(&out.logits, 5)
        .into_iter()
        .map(|(id, l)| (id, (l - lse).exp()))
        .collect();

    let last = ids.len() - 1;
    let lens = pollster::block_on(inspection.logit_lens(&cpu_engine(), last, 5)).unwrap();
    assert_eq!(lens.len(), inspection.n_layers);
    let top = lens.last().unwrap();
    for ((got_id, got_p), (want_id, want_p)) in top.iter().zip(&want) {
        assert_eq!(got_id, want_id, "lens {top:?} vs output {want:?}");
        assert!(
            (got_p - want_p).abs() < 1e-4,
            "lens {top:?} vs output {want:?}"
        );
    }
    // " Rome" is the model's answer; the lens shows it forming in the last layers only.
    let rome = model.tokenizer.encode(" Rome").unwrap()[0];
    assert_eq!(top[0].0, rome);
    assert_ne!(lens[0][0].0, rome, "the first layer already predicts Rome");
    for row in &lens {
        let total: f32 = row.iter().map(|(_, p)| p).sum();
        assert!(total <= 1.0 + 1e-4 && row.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

#[test]
fn rollout_rows_are_distributions_over_earlier_tokens() {
    let inspection = causal(&cpu_engine());
    let t = inspection.tokens();
    let rollout = inspection.rollout();
    for i in 0..t {
        let row = &rollout[i * t..(i + 1) * t];
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "rollout row {i} sums to {sum}");
        assert!(
            row[i + 1..].iter().all(|&r| r == 0.0),
            "row {i} looks ahead"
        );
    }
}

#[test]
fn thumbnails_keep_each_blocks_strongest_weight() {
    let inspection = causal(&cpu_engine());
    let t = inspection.tokens();
    let (side, pictures) = inspection.thumbnails(4);
    assert_eq!(side, 4);
    assert_eq!(
        pictures.len(),
        inspection.n_layers * inspection.n_heads * 16
    );
    let probs = inspection.head(3, 2).unwrap();
    let picture = &pictures[(3 * inspection.n_heads + 2) * 16..][..16];
    // The top-left pixel covers rows and columns 0..⌈t/4⌉; token 0 attends only to itself.
    assert_eq!(picture[0], 255);
    let strongest = (0..t)
        .flat_map(|i| (0..t).map(move |j| (i, j)))
        .filter(|&(i, j)| i * 4 / t == 3 && j * 4 / t == 0)
        .map(|(i, j)| probs[i * t + j])
        .fold(0f32, f32::max);
    assert_eq!(picture[12], (strongest.sqrt() * 255.0).round() as u8);
}

#[test]
fn webgpu_captures_agree_with_the_cpu() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let gpu_engine = Engine::load_file(Device::WebGpu(gpu), &model_path()).unwrap();
    let on_cpu = causal(&cpu_engine());
    let on_gpu = causal(&gpu_engine);
    let mut worst = (0f32, 0, 0, 0);
    for layer in 0..on_cpu.n_layers {
        for head in 0..on_cpu.n_heads {
            let (c, g) = (
                on_cpu.head(layer, head).unwrap(),
                on_gpu.head(layer, head).unwrap(),
            );
            for (i, (a, b)) in c.iter().zip(g).enumerate() {
                if (a - b).abs() > worst.0 {
                    worst = ((a - b).abs(), layer, head, i);
                }
            }
        }
    }
    assert!(
        worst.0 <= CPU_GPU_TOLERANCE,
        "max |Δ| {} at layer {} head {} index {}",
        worst.0,
        worst.1,
        worst.2,
        worst.3
    );
    let last = on_cpu.tokens() - 1;
    let lens_cpu = pollster::block_on(on_cpu.logit_lens(&cpu_engine(), last, 1)).unwrap();
    let lens_gpu = pollster::block_on(on_gpu.logit_lens(&gpu_engine, last, 1)).unwrap();
    assert_eq!(lens_cpu.last().unwrap()[0].0, lens_gpu.last().unwrap()[0].0);
    eprintln!("CPU vs WebGPU attention: max |Δ| = {:.2e}", worst.0);
}
