//! The data commands: tokenize, logits, generate, chat. Each is written once, generic over the
//! backend, and dispatched on `--backend`.

use crate::{BackendChoice, ModelArgs, RunArgs, SamplingArgs};
use engine::backend::Backend;
use engine::chat::ChatMessage;
use engine::cpu::CpuBackend;
use engine::gguf::{GgufEvent, GgufStream, Limits};
use engine::language_model::{LanguageModel, Session};
use engine::models::llama::Taps;
use engine::sampling::{log_sum_exp, top_k, Sampler, SamplingParams};
use engine::tokenizer::{TokenStream, Tokenizer};
use serde_json::json;
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// `--threads`: our CPU kernels' pool and candle's (rayon) both.
pub fn configure_threads(run: &RunArgs) {
    if let Some(n) = run.threads {
        engine::cpu::pool::set_threads(n.max(1));
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
}

/// Runs `$body` with `$backend` bound to the backend `--backend` names.
macro_rules! with_backend {
    ($run:expr, |$backend:ident| $body:expr) => {{
        configure_threads($run);
        match $run.backend {
            BackendChoice::Cpu => {
                let $backend = CpuBackend::new();
                $body
            }
            BackendChoice::Webgpu => Err::<(), String>(
                "the WebGPU backend is not available in this build yet; use --backend cpu".into(),
            ),
        }
    }};
}
pub(crate) use with_backend;

pub fn load<B: Backend>(backend: &B, model: &ModelArgs) -> Result<LanguageModel<B>, String> {
    let path = model.path()?;
    LanguageModel::load_file(backend, &path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Only the tokenizer is needed: read the header and stop.
pub fn tokenize(model: &ModelArgs, json_file: &Path) -> Result<(), String> {
    let path = model.path()?;
    let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut stream = GgufStream::new(Limits::default(), len);
    let mut buffer = vec![0u8; 1 << 20];
    let header = loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "{}: the file ends inside the header",
                path.display()
            ));
        }
        let events = stream
            .push(&buffer[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(GgufEvent::Header(h)) = events.into_iter().next() {
            break h;
        }
    };
    let tokenizer = Tokenizer::from_gguf(&header).map_err(|e| e.to_string())?;
    let strings: Vec<String> = serde_json::from_str(&read_text(json_file)?).map_err(|e| {
        format!(
            "{}: expected a JSON array of strings: {e}",
            json_file.display()
        )
    })?;
    let ids = strings
        .iter()
        .map(|s| tokenizer.encode(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    print_json(&json!(ids))
}

pub fn logits(run: &RunArgs, prompt_file: &Path, top: usize) -> Result<(), String> {
    let prompt = read_text(prompt_file)?;
    with_backend!(run, |backend| {
        let model = load(&backend, &run.model)?;
        let ids = model.tokenizer.encode(&prompt).map_err(|e| e.to_string())?;
        let mut session = Session::new(&model, &backend, model.config().context_len)
            .map_err(|e| e.to_string())?;
        let out = pollster::block_on(session.feed(&model, &backend, &ids, Taps::default()))
            .map_err(|e| e.to_string())?;
        print_json(&logits_json(&ids, &out.logits, top))
    })
}

pub fn logits_json(ids: &[u32], logits: &[f32], top: usize) -> serde_json::Value {
    let lse = log_sum_exp(logits);
    let top: Vec<_> = top_k(logits, top)
        .into_iter()
        .map(|(id, logit)| json!({"id": id, "logit": logit, "logprob": logit - lse}))
        .collect();
    json!({"ids": ids, "top": top})
}

pub fn sampling_params(args: &SamplingArgs) -> SamplingParams {
    if args.greedy {
        SamplingParams::greedy()
    } else {
        SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repeat_penalty: args.repeat_penalty,
            repeat_last_n: 64,
            seed: args.seed,
        }
    }
}

pub fn generate(
    run: &RunArgs,
    prompt_file: &Path,
    max_tokens: usize,
    sampling: &SamplingArgs,
    json_out: bool,
) -> Result<(), String> {
    let prompt = read_text(prompt_file)?;
    with_backend!(run, |backend| {
        let model = load(&backend, &run.model)?;
        let ids = model.tokenizer.encode(&prompt).map_err(|e| e.to_string())?;
        let mut session = Session::new(&model, &backend, model.config().context_len)
            .map_err(|e| e.to_string())?;
        let mut sampler = Sampler::new(sampling_params(sampling));
        let mut printer = TokenStream::new();
        let generated = generate_tokens(
            &model,
            &backend,
            &mut session,
            &ids,
            &mut sampler,
            max_tokens,
            |id| {
                if !json_out {
                    print!("{}", printer.push(&model.tokenizer, id));
                    let _ = std::io::stdout().flush();
                }
            },
        )?;
        if json_out {
            print_json(&json!({"ids": generated, "text": model.tokenizer.decode(&generated)}))
        } else {
            println!("{}", printer.finish());
            Ok(())
        }
    })
}

/// Feeds `prompt` and samples up to `max_tokens` tokens, calling `on_token` for each; stops
/// after an end-of-generation token (included in the result).
pub fn generate_tokens<B: Backend>(
    model: &LanguageModel<B>,
    backend: &B,
    session: &mut Session<B>,
    prompt: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>, String> {
    let mut out = pollster::block_on(session.feed(model, backend, prompt, Taps::default()))
        .map_err(|e| e.to_string())?;
    let mut generated = Vec::new();
    while generated.len() < max_tokens {
        let next = sampler.sample(&out.logits, &session.tokens);
        generated.push(next);
        on_token(next);
        if model.tokenizer.is_end_of_generation(next) || generated.len() == max_tokens {
            break;
        }
        if session.tokens.len() >= session.capacity() {
            eprintln!(
                "glassbox: the context is full ({} tokens)",
                session.capacity()
            );
            break;
        }
        out = pollster::block_on(session.feed(model, backend, &[next], Taps::default()))
            .map_err(|e| e.to_string())?;
    }
    Ok(generated)
}

pub fn chat(
    run: &RunArgs,
    system: Option<&str>,
    max_tokens: usize,
    sampling: &SamplingArgs,
) -> Result<(), String> {
    with_backend!(run, |backend| {
        let model = load(&backend, &run.model)?;
        let template = model
            .template
            .as_ref()
            .ok_or("this model has no chat template (tokenizer.chat_template)")?;
        let mut session = Session::new(&model, &backend, model.config().context_len)
            .map_err(|e| e.to_string())?;
        let mut sampler = Sampler::new(sampling_params(sampling));
        let mut messages: Vec<ChatMessage> = system
            .map(|s| ChatMessage::new("system", s))
            .into_iter()
            .collect();
        eprintln!(
            "Chatting with {} on {} (empty line or Ctrl-D quits).",
            model_name(&model),
            backend.name()
        );
        let stdin = std::io::stdin();
        loop {
            eprint!("\n> ");
            let mut line = String::new();
            if stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| e.to_string())?
                == 0
                || line.trim().is_empty()
            {
                return Ok(());
            }
            messages.push(ChatMessage::new("user", line.trim_end()));
            let prompt = template
                .render(&messages, true)
                .map_err(|e| e.to_string())?;
            let ids = model.tokenizer.encode(&prompt).map_err(|e| e.to_string())?;
            // The cache already holds the conversation's common prefix: feed only the rest.
            let common = session
                .tokens
                .iter()
                .zip(&ids)
                .take_while(|(a, b)| a == b)
                .count()
                .min(ids.len() - 1);
            session.truncate(&backend, common);
            let mut printer = TokenStream::new();
            let reply = generate_tokens(
                &model,
                &backend,
                &mut session,
                &ids[common..],
                &mut sampler,
                max_tokens,
                |id| {
                    if !model.tokenizer.is_end_of_generation(id) {
                        print!("{}", printer.push(&model.tokenizer, id));
                        let _ = std::io::stdout().flush();
                    }
                },
            )?;
            println!("{}", printer.finish());
            let text: Vec<u32> = reply
                .into_iter()
                .filter(|&id| !model.tokenizer.is_end_of_generation(id))
                .collect();
            messages.push(ChatMessage::new(
                "assistant",
                &model.tokenizer.decode(&text),
            ));
        }
    })
}

pub fn model_name<B: Backend>(model: &LanguageModel<B>) -> String {
    model
        .header
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("the model")
        .to_string()
}
