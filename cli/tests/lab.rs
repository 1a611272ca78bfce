//! The Lab's command-line forms (`patch --json`, `logits --ablate`, `generate --steer`,
//! `--policy`/`--kv-budget`, `attribute`, `perplexity`, `kv-agreement`), run
//! as a user would against the bundled model. The numbers themselves are checked against
//! independent computations in `engine/tests/interventions.rs`.

mod common;

use common::glassbox;
use serde_json::Value;

fn temp_file(name: &str, contents: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("glassbox-lab-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn patch_prints_the_sweep_as_json() {
    let clean = temp_file("clean.txt", "The capital of France is");
    let corrupt = temp_file("corrupt.txt", "The capital of Italy is");
    let (ok, stdout, stderr) = glassbox(&[
        "patch",
        "--clean-file",
        &clean,
        "--corrupt-file",
        &corrupt,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let mut keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "clean_ids",
            "clean_logprob",
            "corrupt_ids",
            "corrupt_logprob",
            "effect",
            "target"
        ]
    );
    let ids = |key: &str| -> Vec<u64> {
        out[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let (clean_ids, corrupt_ids) = (ids("clean_ids"), ids("corrupt_ids"));
    assert_eq!(clean_ids.len(), corrupt_ids.len());
    assert!(out["target"].is_u64());
    let effect = out["effect"].as_array().unwrap();
    assert_eq!(effect.len(), 30, "one row per layer of SmolLM2");
    let clean_lp = out["clean_logprob"].as_f64().unwrap();
    let corrupt_lp = out["corrupt_logprob"].as_f64().unwrap();
    let cell = |l: usize, t: usize| effect[l].as_array().unwrap()[t].as_f64().unwrap();
    assert!(effect
        .iter()
        .all(|row| row.as_array().unwrap().len() == clean_ids.len()));
    let n = clean_ids.len();
    assert!((cell(29, n - 1) - clean_lp).abs() < 1e-5);
    let first_difference = clean_ids
        .iter()
        .zip(&corrupt_ids)
        .position(|(a, b)| a != b)
        .unwrap();
    for l in 0..30 {
        for t in 0..first_difference {
            assert!((cell(l, t) - corrupt_lp).abs() < 1e-5, "({l}, {t})");
        }
    }
    assert!(
        stderr.contains("patched runs"),
        "the sweep's time goes to stderr: {stderr}"
    );

    let longer = temp_file("longer.txt", "The capital of the United Kingdom is");
    let (ok, _, stderr) = glassbox(&[
        "patch",
        "--clean-file",
        &clean,
        "--corrupt-file",
        &longer,
        "--json",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("tokens") && stderr.contains("same number"),
        "{stderr}"
    );
}

fn top_logprob(args: &[&str]) -> Result<f64, String> {
    let (ok, stdout, stderr) = glassbox(args);
    if !ok {
        return Err(stderr);
    }
    let out: Value = serde_json::from_str(&stdout).unwrap();
    Ok(out["top"][0]["logprob"].as_f64().unwrap())
}

#[test]
fn logits_ablate_heads_and_refuse_ones_that_do_not_exist() {
    let prompt = temp_file("prompt.txt", "The Eiffel Tower is in the city of");
    let base = ["logits", "--prompt-file", prompt.as_str(), "--top", "3"];
    let plain = top_logprob(&base).unwrap();
    let ablated = top_logprob(&[&base[..], &["--ablate", "3:5,0:0"]].concat()).unwrap();
    assert!((plain - ablated).abs() > 1e-3, "{plain} vs {ablated}");
    let err = top_logprob(&[&base[..], &["--ablate", "30:0"]].concat()).unwrap_err();
    assert!(err.contains("layer 30") && err.contains("0 to 29"), "{err}");
    let err = top_logprob(&[&base[..], &["--ablate", "3"]].concat()).unwrap_err();
    assert!(err.contains("LAYER:HEAD"), "{err}");
}

#[test]
fn generate_steers_with_a_ready_pair_and_names_them_otherwise() {
    let prompt = temp_file("steer.txt", "I think that my day was");
    let run = |alpha: &str| {
        let (ok, stdout, stderr) = glassbox(&[
            "generate",
            "--prompt-file",
            &prompt,
            "--greedy",
            "--max-tokens",
            "8",
            "--json",
            "--steer",
            "happy-sad",
            "--steer-layer",
            "6",
            &format!("--steer-alpha={alpha}"),
        ]);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["ids"].clone()
    };
    assert_ne!(
        run("0"),
        run("6"),
        "a strong steering vector changes the continuation"
    );
    let (ok, _, stderr) = glassbox(&["generate", "--prompt-file", &prompt, "--steer", "nope"]);
    assert!(!ok);
    assert!(
        stderr.contains("happy-sad") && stderr.contains("formal-casual"),
        "{stderr}"
    );
}

#[test]
fn attribute_prints_parts_that_sum_to_the_logit() {
    let prompt = temp_file("attribute.txt", "The capital of France is");
    let (ok, stdout, stderr) = glassbox(&["attribute", "--prompt-file", &prompt, "--json"]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["heads"].as_array().unwrap().len(), 30);
    assert_eq!(out["heads"][0].as_array().unwrap().len(), 9);
    assert_eq!(out["mlps"].as_array().unwrap().len(), 30);
    let (logit, total) = (
        out["logit"].as_f64().unwrap(),
        out["total"].as_f64().unwrap(),
    );
    assert!((logit - total).abs() < 0.05, "logit {logit}, parts {total}");
}

#[test]
fn generation_goes_on_past_a_kv_budget() {
    let prompt = temp_file(
        "budget.txt",
        "Once upon a time, in a small village by the sea,",
    );
    let (ok, stdout, stderr) = glassbox(&[
        "generate",
        "--prompt-file",
        &prompt,
        "--greedy",
        "--max-tokens",
        "48",
        "--kv-budget",
        "32",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let ids = out["ids"].as_array().unwrap();
    assert!(ids.len() > 20, "{stdout}");
    // A policy that hides nothing is refused where it cannot fit.
    let (ok, _, stderr) = glassbox(&["generate", "--prompt-file", &prompt, "--policy", "lambda:4"]);
    assert!(!ok);
    assert!(stderr.contains("lambda:GLOBAL,LOCAL"), "{stderr}");
}

#[test]
fn perplexity_and_kv_agreement_print_their_json() {
    let text = temp_file(
        "long.txt",
        &"The river wound through the valley, past farms and mills, to the old bridge. ".repeat(12),
    );
    let (ok, stdout, stderr) = glassbox(&[
        "perplexity",
        "--text-file",
        &text,
        "--cache",
        "64",
        "--policy",
        "lambda:4,32",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert!(out["tokens"].as_u64().unwrap() > 150);
    assert_eq!(out["policy"], "lambda:4,32");
    let ppl = out["segments"][0]["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl >= 1.0, "{stdout}");

    let (ok, stdout, stderr) = glassbox(&[
        "kv-agreement",
        "--prompt-file",
        &text,
        "--budgets",
        "48,1000",
        "--steps",
        "8",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // A budget larger than prompt and generation keeps everything: it agrees at every step.
    assert_eq!(rows[1]["top1_agreement"], 1.0);
    assert!(
        rows[1]["max_logprob_drift"].as_f64().unwrap() < 1e-3,
        "{stdout}"
    );
    assert!(
        rows[0]["max_logprob_drift"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
}
