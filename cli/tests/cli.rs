//! The `glassbox` command line, run as a user would, against the bundled model and the
//! llama.cpp fixtures.

mod common;

use common::glassbox;
use serde_json::Value;
use std::path::PathBuf;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures/llamacpp_public.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("glassbox-cli-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn tokenize_prints_llamacpp_ids() {
    let fx = fixture();
    let cases = fx["tokenize"].as_array().unwrap();
    let texts: Vec<&Value> = cases.iter().map(|c| &c["text"]).collect();
    let file = temp_file("strings.json", &serde_json::to_string(&texts).unwrap());
    let (ok, stdout, stderr) = glassbox(&["tokenize", "--json-file", file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let got: Vec<Vec<u32>> = serde_json::from_str(&stdout).unwrap();
    let want: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| serde_json::from_value(c["ids"].clone()).unwrap())
        .collect();
    assert_eq!(got, want);
}

/// Gemma 3's GGUF asks for BOS (`tokenizer.ggml.add_bos_token`), SmolLM2's does not: with
/// `--with-bos`, each gets the ids llama.cpp feeds for a prompt.
#[test]
fn tokenize_with_bos_gives_the_ids_llamacpp_feeds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures/llamacpp_gemma3.json");
    let gemma: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let prompts = gemma["prompts"].as_array().unwrap();
    let texts: Vec<&Value> = prompts.iter().map(|p| &p["prompt"]).collect();
    let file = temp_file(
        "gemma-prompts.json",
        &serde_json::to_string(&texts).unwrap(),
    );
    let (ok, stdout, stderr) = glassbox(&[
        "tokenize",
        "--model",
        "www/models/gemma-3-270m-q4_k_m.gguf",
        "--with-bos",
        "--json-file",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let got: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let want: Vec<Value> = prompts.iter().map(|p| p["ids"].clone()).collect();
    assert_eq!(got, want);
    assert_eq!(got[0][0], gemma["bos_id"]);

    let fx = fixture();
    let texts: Vec<&Value> = fx["tokenize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["text"])
        .collect();
    let file = temp_file(
        "smollm2-strings.json",
        &serde_json::to_string(&texts).unwrap(),
    );
    let file = file.to_str().unwrap();
    let (_, plain, _) = glassbox(&["tokenize", "--json-file", file]);
    let (ok, with_bos, stderr) = glassbox(&["tokenize", "--with-bos", "--json-file", file]);
    assert!(ok, "{stderr}");
    assert_eq!(with_bos, plain);
}

#[test]
fn bench_prefills_the_ids_file_as_given() {
    let file = temp_file("bench-ids.json", "[2, 818, 5279, 529, 7001, 563]");
    let (ok, stdout, stderr) = glassbox(&[
        "bench",
        "--model",
        "www/models/gemma-3-270m-q4_k_m.gguf",
        "--ids-file",
        file.to_str().unwrap(),
        "--decode-tokens",
        "2",
        "--runs",
        "1",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["prompt_tokens"], 6);
    assert_eq!(report["decode_tokens"], 2);

    let file = temp_file("bench-bad-ids.json", "[2, 262144]");
    let (ok, _, stderr) = glassbox(&["bench", "--ids-file", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("outside the vocabulary"), "{stderr}");
}

#[test]
fn logits_prints_ids_and_top_k() {
    let fx = fixture();
    let case = &fx["prompts"][0];
    let file = temp_file("prompt.txt", case["prompt"].as_str().unwrap());
    let (ok, stdout, stderr) = glassbox(&[
        "logits",
        "--prompt-file",
        file.to_str().unwrap(),
        "--top",
        "5",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["ids"], case["ids"]);
    let top = out["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert_eq!(top[0]["id"], case["top"][0]["id"]);
    for entry in top {
        assert!(entry["logit"].is_number() && entry["logprob"].as_f64().unwrap() <= 0.0);
    }
}

#[test]
fn generate_greedy_json_reproduces_llamacpp() {
    let fx = fixture();
    let case = &fx["prompts"][0];
    let file = temp_file("gen.txt", case["prompt"].as_str().unwrap());
    let (ok, stdout, stderr) = glassbox(&[
        "generate",
        "--prompt-file",
        file.to_str().unwrap(),
        "--max-tokens",
        "32",
        "--greedy",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    // llama.cpp's margins stay above 0.5 all the way for this prompt.
    assert_eq!(out["ids"], case["greedy_ids"]);
    assert_eq!(out["text"], "The capital of France is Paris.<|im_end|>");
}

#[test]
fn a_missing_model_says_how_to_fetch_one() {
    let prompt = temp_file("hello.txt", "Hello");
    let (ok, _, stderr) = glassbox(&[
        "logits",
        "--model",
        "/nonexistent/model.gguf",
        "--prompt-file",
        prompt.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("model file /nonexistent/model.gguf not found"),
        "{stderr}"
    );
    assert!(stderr.contains("cargo xtask setup serve"), "{stderr}");
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_with_both_lengths() {
    // 9,000 digits: one token each, past the model's 8,192-token context.
    let file = temp_file("long.txt", &"7".repeat(9000));
    let (ok, _, stderr) = glassbox(&["logits", "--prompt-file", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("the prompt is 9000 tokens long but the context holds 8192 tokens"),
        "{stderr}"
    );
}

fn set_logits(name: &str, members: &[&str], plain: bool) -> Value {
    let set = serde_json::json!({
        "prefix": "<|im_start|>user\nWhich is the largest? Options:",
        "members": members,
        "suffix": "<|im_end|>\n<|im_start|>assistant\nThe largest is",
    });
    let file = temp_file(name, &set.to_string());
    let mut args = vec!["logits", "--set-file", file.to_str().unwrap(), "--top", "5"];
    if plain {
        args.push("--plain");
    }
    let (ok, stdout, stderr) = glassbox(&args);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn top_logprobs(out: &Value) -> Vec<(u64, f64)> {
    out["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["logprob"].as_f64().unwrap()))
        .collect()
}

#[test]
fn logits_with_a_set_file_do_not_depend_on_the_members_order() {
    let order = [" a mouse,", " the sun,", " an elephant,"];
    let reversed = [" an elephant,", " the sun,", " a mouse,"];
    let a = set_logits("set-a.json", &order, false);
    let b = set_logits("set-b.json", &reversed, false);
    // Positions: every member starts where the set starts; the suffix after the longest.
    let positions: Vec<u64> = serde_json::from_value(a["positions"].clone()).unwrap();
    assert_eq!(positions.len(), a["ids"].as_array().unwrap().len());
    let (ta, tb) = (top_logprobs(&a), top_logprobs(&b));
    assert_eq!(
        ta.iter().map(|e| e.0).collect::<Vec<_>>(),
        tb.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    for ((_, x), (_, y)) in ta.iter().zip(&tb) {
        assert!((x - y).abs() <= 1e-4, "{ta:?} vs {tb:?}");
    }
    // The same file read plainly: consecutive positions, and the order shows.
    let plain_a = set_logits("plain-a.json", &order, true);
    let plain_b = set_logits("plain-b.json", &reversed, true);
    assert_eq!(plain_a["ids"], a["ids"]);
    let plain_positions: Vec<u64> = serde_json::from_value(plain_a["positions"].clone()).unwrap();
    assert_eq!(
        plain_positions,
        (0..positions.len() as u64).collect::<Vec<_>>()
    );
    let (pa, pb) = (top_logprobs(&plain_a), top_logprobs(&plain_b));
    let moved = pa
        .iter()
        .zip(&pb)
        .map(|((_, x), (_, y))| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-2 || pa.iter().map(|e| e.0).ne(pb.iter().map(|e| e.0)),
        "plain prompting did not move: {pa:?} vs {pb:?}"
    );
}

#[test]
fn a_malformed_set_file_is_a_clear_error() {
    let file = temp_file("bad-set.json", r#"{"members": "not a list"}"#);
    let (ok, _, stderr) = glassbox(&["logits", "--set-file", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("expected {\"prefix\""), "{stderr}");
}

#[test]
fn attention_prints_one_causal_head_and_the_logit_lens() {
    let prompt = temp_file("attention.txt", "The capital of France is");
    let (ok, stdout, stderr) = glassbox(&[
        "attention",
        "--prompt-file",
        prompt.to_str().unwrap(),
        "--layer",
        "3",
        "--head",
        "2",
        "--lens-token",
        "4",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let t = out["ids"].as_array().unwrap().len();
    let probs = out["probs"].as_array().unwrap();
    assert_eq!((t, probs.len(), out["layer"].as_u64()), (5, 5, Some(3)));
    for (i, row) in probs.iter().enumerate() {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            (row.iter().sum::<f64>() - 1.0).abs() < 1e-4,
            "row {i}: {row:?}"
        );
        assert!(
            row[i + 1..].iter().all(|&p| p == 0.0),
            "row {i} looks ahead"
        );
    }
    let lens = out["lens"].as_array().unwrap();
    assert_eq!(lens.len(), 30);
    assert_eq!(lens[29][0]["token"], " Paris");

    // The same ids through --ids-file give the same head.
    let ids = temp_file("attention-ids.json", &out["ids"].to_string());
    let (ok, again, stderr) = glassbox(&[
        "attention",
        "--ids-file",
        ids.to_str().unwrap(),
        "--layer",
        "3",
        "--head",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["probs"], out["probs"]);
}

#[test]
fn attention_refuses_a_head_or_an_id_that_does_not_exist() {
    let ids = temp_file("bad-ids.json", "[1, 2, 99999999]");
    let (ok, _, stderr) = glassbox(&["attention", "--ids-file", ids.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("outside the vocabulary"), "{stderr}");
    let ids = temp_file("ids.json", "[1, 2, 3]");
    let (ok, _, stderr) = glassbox(&[
        "attention",
        "--ids-file",
        ids.to_str().unwrap(),
        "--head",
        "9",
    ]);
    assert!(!ok);
    assert!(stderr.contains("layer 0 head 9 does not exist"), "{stderr}");
}

#[test]
fn threads_beyond_the_machine_are_refused() {
    let file = temp_file("threads.txt", "Hello");
    let (ok, _, stderr) = glassbox(&[
        "logits",
        "--prompt-file",
        file.to_str().unwrap(),
        "--threads",
        "10000",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--threads 10000") && stderr.contains("threads at once"),
        "{stderr}"
    );
}

#[test]
fn info_summarises_the_model_and_what_it_needs() {
    let (ok, stdout, stderr) = glassbox(&["info", "--context", "2048", "--json"]);
    assert!(ok, "{stderr}");
    let info: Value = serde_json::from_str(&stdout).unwrap();
    let summary = &info["summary"];
    assert_eq!(summary["architecture"], "llama");
    assert_eq!(summary["config"]["n_layers"], 30);
    assert_eq!(summary["config"]["context_len"], 8192);
    assert_eq!(summary["license"], "apache-2.0");
    assert!(summary["problem"].is_null());
    let plan = &info["plan"];
    assert_eq!(plan["context"], 2048);
    let cpu = plan["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "Cpu")
        .unwrap();
    // KV cache: 30 layers · keys and values · 3 heads · 64 · 2,048 tokens · 4 bytes.
    assert_eq!(cpu["needs"]["kv_cache"], 30 * 2 * 3 * 64 * 2048 * 4);
    assert!(cpu["verdict"]
        .as_str()
        .unwrap()
        .starts_with("runs with a 2048-token context"));
}

#[test]
fn info_on_a_file_that_is_not_gguf_says_so() {
    let file = temp_file("not.gguf", "this is not a model");
    let (ok, _, stderr) = glassbox(&["info", "--model", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not a GGUF file"), "{stderr}");
}
