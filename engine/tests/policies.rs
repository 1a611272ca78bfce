//! Attention policies on the bundled model, each against an independent computation:
//! - a Λ whose window holds the whole text, and a budget larger than it, are bit-identical to
//!   no policy;
//! - a sliding window that evicts (keys turned back to new positions) equals the whole text
//!   fed at once under a sliding-window mask with its own positions: RoPE only sees distances;
//! - Λ and a budget go on past the cache's length, holding what they say they hold;
//! - WebGPU equals the CPU under eviction.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_engine, logprob_gap, model_path};
use engine::models::pass::Activations;
use engine::runtime::{AttentionPolicy, Device, Engine, Feed, Layout};
use pollster::block_on;

/// A text of 120 tokens.
fn text_ids(engine: &Engine) -> Vec<u32> {
    let text = "The river wound through the valley, past farms and mills, until it reached the \
                old stone bridge where the children of the village gathered every summer \
                evening. They told stories of the miller's daughter, who had once crossed the \
                frozen river in the middle of winter to fetch a doctor for her brother. ";
    let mut ids = engine.tokenizer().encode(&text.repeat(4)).unwrap();
    ids.truncate(120);
    ids
}

/// The last fed token's logits after feeding `ids` in `chunks`-token appends under `policy`
/// on a session of `capacity`.
fn policed_logits(
    engine: &Engine,
    ids: &[u32],
    policy: AttentionPolicy,
    capacity: usize,
    chunk: usize,
) -> (Vec<f32>, engine::runtime::EngineSession) {
    policed_logits_in(engine, ids, policy, capacity, chunk, Activations::Auto)
}

fn policed_logits_in(
    engine: &Engine,
    ids: &[u32],
    policy: AttentionPolicy,
    capacity: usize,
    chunk: usize,
    activations: Activations,
) -> (Vec<f32>, engine::runtime::EngineSession) {
    let mut session = engine.session(capacity).unwrap();
    session.set_policy(policy).unwrap();
    let mut logits = Vec::new();
    for piece in ids.chunks(chunk) {
        let feed = Feed::append(piece).activations(activations);
        logits = block_on(session.feed(feed)).unwrap().logits;
    }
    (logits, session)
}

#[test]
fn policies_that_hide_nothing_change_nothing() {
    let engine = cpu_engine();
    let ids = text_ids(&engine);
    let (full, _) = policed_logits(&engine, &ids, AttentionPolicy::Full, 256, 50);
    let lambda = AttentionPolicy::Lambda {
        n_global: 4,
        n_local: 120,
    };
    let (under_lambda, _) = policed_logits(&engine, &ids, lambda, 256, 50);
    assert_eq!(under_lambda, full);
    let budget = AttentionPolicy::budget(200);
    let (under_budget, session) = policed_logits(&engine, &ids, budget, 256, 50);
    assert_eq!(under_budget, full);
    assert_eq!(session.evicted(), 0);
}

#[test]
fn an_evicting_sliding_window_equals_the_window_mask() {
    let engine = cpu_engine();
    let ids = text_ids(&engine);
    let window = 48;
    // Reference: everything at once, each token seeing itself and the 47 before it.
    let t = ids.len();
    let visible = (0..t)
        .flat_map(|q| (0..t).map(move |k| k <= q && q - k < window))
        .collect();
    let positions: Vec<u32> = (0..t as u32).collect();
    let mut reference = engine.session(t).unwrap();
    let layout = Layout {
        ids: &ids,
        positions: &positions,
        visible: Some(visible),
    };
    // In f32: the fast products round a single token's row and a chunk's alike, but not to
    // the bit, and this compares the eviction's arithmetic alone.
    let feed = Feed::layout(layout).activations(Activations::F32);
    let want = block_on(reference.feed(feed)).unwrap().logits;
    // A 64-token cache under the same window: it evicts every few tokens, and its positions
    // start again after each eviction.
    let policy = AttentionPolicy::Lambda {
        n_global: 0,
        n_local: window,
    };
    for chunk in [1, 7, 120] {
        let (got, session) = policed_logits_in(&engine, &ids, policy, 64, chunk, Activations::F32);
        assert!(session.evicted() > 50, "evicted {}", session.evicted());
        assert_eq!(session.history(), ids.as_slice());
        assert!(session.positions().iter().all(|&p| p < 64));
        let gap = logprob_gap(&want, &got);
        assert!(gap < 1e-3, "chunks of {chunk}: log-prob gap {gap}");
    }
}

#[test]
fn lambda_and_budget_go_on_past_the_cache() {
    let engine = cpu_engine();
    let ids = text_ids(&engine);
    let lambda = AttentionPolicy::Lambda {
        n_global: 4,
        n_local: 32,
    };
    let (logits, session) = policed_logits(&engine, &ids, lambda, 64, 9);
    assert!(logits.iter().all(|x| x.is_finite()));
    assert_eq!(&session.tokens()[..4], &ids[..4], "the start tokens stay");
    let held = session.tokens().len();
    assert_eq!(session.tokens()[held - 32..], ids[ids.len() - 32..]);
    assert_eq!(session.evicted() + held, ids.len());

    let budget = AttentionPolicy::Budget {
        budget: 48,
        n_first: 4,
        n_recent: 12,
    };
    let (logits, session) = policed_logits(&engine, &ids, budget, 64, 1);
    assert!(logits.iter().all(|x| x.is_finite()));
    assert!(session.tokens().len() <= 48);
    assert_eq!(&session.tokens()[..4], &ids[..4]);
    assert_eq!(
        session.tokens()[session.tokens().len() - 12..],
        ids[ids.len() - 12..]
    );
    // Kept tokens keep their positions: they ascend and name the fed order.
    let positions = session.positions();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for (&token, &position) in session.tokens().iter().zip(positions) {
        assert_eq!(ids[position as usize], token);
    }
    // A whole conversation fed again goes on from the history.
    let mut session = session;
    let more: Vec<u32> = ids.iter().chain(&ids[..5]).copied().collect();
    let fed = block_on(session.feed(Feed::sequence(&more))).unwrap();
    assert_eq!(fed.reused, ids.len());
}

#[test]
fn policies_refuse_what_names_cache_slots() {
    let engine = cpu_engine();
    let mut session = engine.session(64).unwrap();
    assert!(session
        .set_policy(AttentionPolicy::Lambda {
            n_global: 4,
            n_local: 60
        })
        .is_err());
    session.set_policy(AttentionPolicy::budget(48)).unwrap();
    let taps = engine::models::taps::Taps::all();
    let err = block_on(session.feed(Feed::append(&[1, 2, 3]).taps(taps))).unwrap_err();
    assert!(err.to_string().contains("attention policy"), "{err}");
}

#[test]
fn webgpu_evicts_as_the_cpu_does() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let gpu = Engine::load_file(Device::WebGpu(gpu), &model_path()).unwrap();
    let cpu = cpu_engine();
    let ids = text_ids(&cpu);
    // Λ evicts with turned keys (cache_keep on WGSL); a budget evicts through the same kernel
    // with no turn, and reads attention back, which the kernel tests cover.
    let policy = AttentionPolicy::Lambda {
        n_global: 4,
        n_local: 32,
    };
    let (want, cpu_session) = policed_logits(&cpu, &ids, policy, 64, 10);
    let (got, gpu_session) = policed_logits(&gpu, &ids, policy, 64, 10);
    let gap = logprob_gap(&want, &got);
    eprintln!("Λ on WebGPU vs CPU: max |Δ log-prob| on the top 5 = {gap:e}");
    assert!(gap < 0.02, "log-prob gap {gap}");
    assert_eq!(cpu_session.tokens(), gpu_session.tokens());
}
