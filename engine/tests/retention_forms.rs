//! The three forms of retention compute the same output (RetNet's central claim, and what the
//! page's form switch shows): chunk sizes 1, 3, 16 and the full length, on sequence lengths that
//! are not multiples of the chunk.
#![cfg(not(target_arch = "wasm32"))] // native: files on disk, pollster

use engine::backend::{Backend, RetentionForm};
use engine::cpu::{retention, CpuBackend};
use engine::testing::{check_close, SeededRng};

/// |Δ| ≤ ABS + REL·|parallel| element-wise; the inputs are O(1), outputs up to ~10.
const ABS: f32 = 1e-5;
const REL: f32 = 1e-5;

fn inputs(rng: &mut SeededRng, t: usize, width: usize) -> [Vec<f32>; 3] {
    [0; 3].map(|_| rng.vec_f32(t * width, 1.0))
}

/// ViR's decays for `heads` heads: 1 − exp(linspace(ln 1/32, ln 1/512, heads)).
fn vir_decays(heads: usize) -> Vec<f32> {
    let (a, b) = ((1.0f64 / 32.0).ln(), (1.0f64 / 512.0).ln());
    (0..heads)
        .map(|h| {
            let f = if heads == 1 {
                0.0
            } else {
                h as f64 / (heads - 1) as f64
            };
            (1.0 - (a + f * (b - a)).exp()) as f32
        })
        .collect()
}

#[test]
fn recurrent_and_chunkwise_equal_parallel() {
    let mut rng = SeededRng::new(21);
    for (t, heads, head_dim) in [(50usize, 4usize, 16usize), (37, 3, 8), (17, 1, 5)] {
        let width = heads * head_dim;
        let [q, k, v] = inputs(&mut rng, t, width);
        // The ViR's gentle decays and a steep one, where cancellation would show.
        let mut decays = vir_decays(heads);
        decays[0] = 0.5;
        let parallel = retention::parallel(&q, &k, &v, t, head_dim, &decays);
        let recurrent = retention::recurrent(&q, &k, &v, t, head_dim, &decays);
        check_close(&format!("recurrent t={t}"), &recurrent, &parallel, ABS, REL).unwrap();
        for chunk in [1, 3, 16, t] {
            let chunked = retention::chunkwise(&q, &k, &v, t, head_dim, &decays, chunk);
            check_close(
                &format!("chunk {chunk} t={t}"),
                &chunked,
                &parallel,
                ABS,
                REL,
            )
            .unwrap();
        }
    }
}

#[test]
fn parallel_form_is_the_decayed_score_matrix_times_v() {
    // Direct definition, written out for one head: o_n = Σ_{m≤n} s (q_n·k_m) γ^(n−m) v_m.
    let (t, d, gamma) = (6usize, 4usize, 0.8f32);
    let mut rng = SeededRng::new(22);
    let [q, k, v] = inputs(&mut rng, t, d);
    let s = 1.0 / (d as f32).sqrt();
    let mut want = vec![0.0f32; t * d];
    for n in 0..t {
        for m in 0..=n {
            let qk: f32 = (0..d).map(|i| q[n * d + i] * k[m * d + i]).sum();
            for j in 0..d {
                want[n * d + j] += s * qk * gamma.powi((n - m) as i32) * v[m * d + j];
            }
        }
    }
    let got = retention::parallel(&q, &k, &v, t, d, &[gamma]);
    check_close("parallel", &got, &want, 1e-6, 1e-5).unwrap();
    // The score matrix is lower-triangular: nothing retains the future.
    let scores = retention::scores(&q, &k, t, d, &[gamma]);
    for n in 0..t {
        for m in n + 1..t {
            assert_eq!(scores[n * t + m], 0.0, "score[{n}][{m}] looks ahead");
        }
    }
}

#[test]
fn the_cpu_backend_gives_every_form_the_same_output() {
    let cpu = CpuBackend::new();
    let (t, heads, head_dim) = (50, 4, 16);
    let mut rng = SeededRng::new(23);
    let [q, k, v] = inputs(&mut rng, t, heads * head_dim);
    let [q, k, v] = [&q, &k, &v].map(|x| cpu.tensor(x, t, heads * head_dim).unwrap());
    let decays = vir_decays(heads);
    let run = |form| {
        let (out, scores) = cpu
            .retention(&q, &k, &v, head_dim, &decays, form, true)
            .unwrap();
        let read = |x| pollster::block_on(cpu.read(x)).unwrap();
        (read(&out), read(&scores.unwrap()))
    };
    let (parallel, parallel_scores) = run(RetentionForm::Parallel);
    for form in [
        RetentionForm::Recurrent,
        RetentionForm::Chunkwise(7),
        RetentionForm::Chunkwise(64),
    ] {
        let (out, scores) = run(form);
        check_close(&format!("{form:?}"), &out, &parallel, ABS, REL).unwrap();
        // The scores are a view of the model, the same whichever form ran.
        assert_eq!(scores, parallel_scores, "{form:?} scores");
    }
}
