//! The chat model's pieces on the bundled GGUF: chat template, streaming decode, sampling
//! determinism, KV-cache reuse and the errors a user can meet.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::cpu_model;
use engine::cpu::CpuBackend;
use engine::gguf::{GgmlType, GgufWriter, MetadataValue};
use engine::numerics::argmax;
use engine::runtime::sampling::{Sampler, SamplingParams};
use engine::runtime::{Feed, LanguageModel, LanguageModelLoader, Session};
use engine::text::chat::ChatMessage;
use engine::text::tokenizer::TokenStream;
use engine::Error;

#[test]
fn chat_template_renders_chatml_with_the_default_system_prompt() {
    let model = cpu_model();
    let template = model
        .template
        .as_ref()
        .expect("the bundled model has a chat template");
    let prompt = template
        .render(
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let with_system = template
        .render(
            &[
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        with_system,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn streaming_decode_holds_back_split_utf8() {
    let tokenizer = &cpu_model().tokenizer;
    let text = "Émoji 😀 and 日本語 — done.";
    let ids = tokenizer.encode(text).unwrap();
    // At least one token must end inside a multi-byte character, or this tests nothing.
    assert!(
        ids.iter()
            .any(|&id| std::str::from_utf8(tokenizer.token_bytes(id)).is_err()),
        "no token splits a character in {ids:?}"
    );
    let mut stream = TokenStream::new();
    let mut pieces = Vec::new();
    for &id in &ids {
        pieces.push(stream.push(tokenizer, id));
    }
    pieces.push(stream.finish());
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), text);
    assert_eq!(tokenizer.decode(&ids), text);
}

fn sample_text(seed: u64) -> Vec<u32> {
    let model = cpu_model();
    let backend = CpuBackend::new();
    let ids = model
        .tokenizer
        .encode("<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    let mut session = Session::new(model, &backend, 256).unwrap();
    let mut sampler = Sampler::new(SamplingParams {
        seed,
        ..SamplingParams::default()
    });
    let mut logits = pollster::block_on(session.feed(model, &backend, Feed::append(&ids)))
        .unwrap()
        .logits;
    let mut out = Vec::new();
    for _ in 0..12 {
        let next = sampler.sample(&logits, session.tokens());
        out.push(next);
        logits = pollster::block_on(session.feed(model, &backend, Feed::append(&[next])))
            .unwrap()
            .logits;
    }
    out
}

#[test]
fn same_seed_same_text() {
    assert_eq!(sample_text(7), sample_text(7));
    assert_ne!(
        sample_text(7),
        sample_text(8),
        "different seeds should (almost surely) differ"
    );
}

#[test]
fn truncating_the_cache_and_feeding_again_gives_the_same_logits() {
    let model = cpu_model();
    let backend = CpuBackend::new();
    let ids = model
        .tokenizer
        .encode("The quick brown fox jumps over the lazy dog")
        .unwrap();
    let mut session = Session::new(model, &backend, 64).unwrap();
    let first = pollster::block_on(session.feed(model, &backend, Feed::append(&ids)))
        .unwrap()
        .logits;
    session.truncate(&backend, 3);
    let again = pollster::block_on(session.feed(model, &backend, Feed::append(&ids[3..])))
        .unwrap()
        .logits;
    assert_eq!(argmax(&first), argmax(&again));
    let max_diff = first
        .iter()
        .zip(&again)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "max |Δ logit| {max_diff}");
}

#[test]
fn a_prompt_longer_than_the_context_names_both_lengths() {
    let model = cpu_model();
    let backend = CpuBackend::new();
    let mut session = Session::new(model, &backend, 16).unwrap();
    let ids = vec![42u32; 20];
    let err = pollster::block_on(session.feed(model, &backend, Feed::append(&ids)))
        .expect_err("too long");
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                prompt: 20,
                context: 16
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the prompt is 20 tokens long but the context holds 16 tokens"
    );
    // Nothing was cached: the session is still usable.
    assert_eq!(session.tokens().len(), 0);
    pollster::block_on(session.feed(model, &backend, Feed::append(&ids[..5]))).unwrap();
}

#[test]
fn another_architecture_is_refused_by_name_before_any_weight() {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", MetadataValue::String("gpt2".into()));
    w.tensor(
        "token_embd.weight",
        &[32, 4],
        GgmlType::F32,
        vec![0; 32 * 4 * 4],
    );
    let bytes = w.to_bytes();
    let backend = CpuBackend::new();
    let mut loader = LanguageModelLoader::<CpuBackend>::new(Some(bytes.len() as u64));
    // Only the header: the refusal must not wait for tensor data.
    let header_len = bytes.len() - 32 * 4 * 4;
    let err = loader
        .push(&backend, &bytes[..header_len])
        .expect_err("refused");
    // It names the architecture and the supported ones.
    assert_eq!(
        err.to_string(),
        "unsupported architecture: gpt2 (Glassbox runs llama and gemma3)"
    );
}

#[test]
fn a_truncated_model_is_an_error_not_a_panic() {
    let path = common::model_path();
    let bytes = std::fs::read(&path).unwrap();
    let backend = CpuBackend::new();
    let mut loader = LanguageModelLoader::<CpuBackend>::new(None);
    for chunk in bytes[..bytes.len() / 2].chunks(1 << 20) {
        loader.push(&backend, chunk).unwrap();
    }
    let err = loader.finish().err().expect("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    // And the whole file loads through the same path.
    LanguageModel::load_file(&backend, &path).unwrap();
}

#[test]
fn a_grown_conversation_reuses_the_cached_prefix_and_feeds_at_least_one_token() {
    let (model, cpu) = (cpu_model(), CpuBackend::new());
    let mut session = Session::new(model, &cpu, 64).unwrap();
    let first = [1u32, 2, 3, 4];
    pollster::block_on(session.feed(model, &cpu, Feed::append(&first))).unwrap();
    // The same prompt again: all but the last token are kept, so its logits can be computed.
    assert_eq!(session.keep_common_prefix(&cpu, &first), 3);
    assert_eq!(session.tokens(), [1, 2, 3]);
    pollster::block_on(session.feed(model, &cpu, Feed::append(&first[3..]))).unwrap();
    // A grown conversation keeps everything cached; a changed one keeps the shared start.
    assert_eq!(session.keep_common_prefix(&cpu, &[1, 2, 3, 4, 5, 6]), 4);
    assert_eq!(session.keep_common_prefix(&cpu, &[1, 2, 9, 9]), 2);
    assert_eq!(session.tokens(), [1, 2]);
    assert_eq!(session.keep_common_prefix(&cpu, &[]), 0);
}

#[test]
fn a_sequence_feed_reuses_the_cache_and_gives_the_same_logits() {
    let (model, cpu) = (cpu_model(), CpuBackend::new());
    let ids = model
        .tokenizer
        .encode("One, two, three, four, five")
        .unwrap();
    let mut whole = Session::new(model, &cpu, 64).unwrap();
    let want = pollster::block_on(whole.feed(model, &cpu, Feed::append(&ids))).unwrap();
    let mut grown = Session::new(model, &cpu, 64).unwrap();
    pollster::block_on(grown.feed(model, &cpu, Feed::sequence(&ids[..4]))).unwrap();
    let got = pollster::block_on(grown.feed(model, &cpu, Feed::sequence(&ids))).unwrap();
    assert_eq!(got.reused, 4);
    assert_eq!(grown.tokens(), ids.as_slice());
    assert_eq!(argmax(&got.logits), argmax(&want.logits));
    let diff = got
        .logits
        .iter()
        .zip(&want.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-3, "largest logit difference {diff}");
}
