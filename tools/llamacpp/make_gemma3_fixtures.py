# Builds reference fixtures for Gemma 3 270M (base, Q4_K_M) with llama.cpp (llama-cpp-python),
# in the shape of make_llamacpp_fixtures.py's output (engine/tests/common/mod.rs reads it), plus
# what Gemma needs: BOS, the GGUF's metadata, and llama.cpp's own spread on these prompts.
# usage: python make_gemma3_fixtures.py MODEL.gguf STRINGS.json PROMPTS.json OUT.json
#   (cargo xtask setup fetches MODEL to www/models/gemma-3-270m-q4_k_m.gguf; the inputs are
#   gemma3_strings.json and gemma3_prompts.json beside this file; the output is
#   engine/tests/fixtures/llamacpp_gemma3.json; run it with PYTHONPATH=target/bench/python)
# STRINGS.json: strings to tokenize (special tokens parsed, NO BOS added, like Glassbox's tokenize)
# PROMPTS.json: raw prompt strings, run the way llama.cpp's CLI runs this model: BOS first (the
# GGUF says tokenizer.ggml.add_bos_token = true). For each: ids (with BOS), top-10 logits of the
# next token, log-probs, and a greedy continuation (stops at an end-of-generation id, max 32)
# with the top-1 minus top-2 logit margin at each step.
# Then the self-spread: the same prompts evaluated token by token (n_batch = n_ubatch = 1)
# instead of in batches of 512; the max |Δ log-prob| over each prompt's top 5 (and the same
# with an f32 KV cache, and with flash attention, for scale).
# CPU, 2 threads, n_ctx 2048, f16 KV cache, no flash attention (llama-cpp-python's defaults).
import json, re, subprocess, sys
import numpy as np
import llama_cpp
from llama_cpp import Llama

model, strings_f, prompts_f, out_f = sys.argv[1:5]
COMMON = dict(model_path=model, n_ctx=2048, n_threads=2, n_threads_batch=2, n_gpu_layers=0,
              verbose=False, seed=0, flash_attn=False)
llm = Llama(n_batch=512, n_ubatch=512, **COMMON)
vocab = llama_cpp.llama_model_get_vocab(llm.model)
nv = llm.n_vocab()
eog = [i for i in range(nv) if llama_cpp.llama_vocab_is_eog(vocab, i)]
bos = llama_cpp.llama_vocab_bos(vocab)
add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
assert add_bos and bos == 2, (add_bos, bos)

meta = llm.metadata  # the GGUF's key/values as llama.cpp read them (strings)
arch = meta["general.architecture"]
def typed(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v, v)
gguf_meta = {k: typed(v) for k, v in sorted(meta.items())
             if (k.startswith(arch + ".") or k.startswith("general.") or k.startswith("tokenizer.ggml."))
             and k != "tokenizer.chat_template"}
gguf_meta["has tokenizer.chat_template"] = "tokenizer.chat_template" in meta

# What llama.cpp derives from those (and its own defaults for gemma3: the sliding-window layer
# pattern, the local rope base, the attention scale), as its loader prints them.
load_log = subprocess.run(
    [sys.executable, "-c", "import sys; from llama_cpp import Llama; "
     "Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=2, n_gpu_layers=0, verbose=True)", model],
    capture_output=True, text=True, check=True).stderr
PRINTED = ["arch", "n_ctx_train", "n_embd", "n_layer", "n_head", "n_head_kv", "n_rot", "n_swa",
           "n_embd_head_k", "n_embd_head_v", "f_norm_rms_eps", "f_attn_scale", "f_logit_scale",
           "rope type", "freq_base_train", "freq_scale_train", "freq_base_swa", "freq_scale_swa",
           "vocab type", "n_vocab", "model type"]
printed = {}
for line in load_log.splitlines():
    m = re.match(r"print_info: (.+?)\s+= (.*)$", line)
    if m and m.group(1).strip() in PRINTED:
        printed[m.group(1).strip()] = m.group(2).strip()
n_layer = int(printed["n_layer"])
swa = {int(a): b == "1" for a, b in re.findall(r"layer\s+(\d+) assigned to .*is_swa = (\d)", load_log)}
llama_cpp_model = {
    "print_info (as printed)": printed,
    "full_attention_layers": [il for il in range(n_layer) if not swa[il]],
    "sliding_window_layers": [il for il in range(n_layer) if swa[il]],
    "notes": [
        "rope type 2 is LLAMA_ROPE_TYPE_NEOX (rotates the two halves of a head, not pairs); "
        "freq_base_train on full-attention layers, freq_base_swa (llama.cpp's default, not in the GGUF) "
        "on sliding-window ones",
        "sliding window (LLAMA_SWA_TYPE_STANDARD): a query at position p sees keys at p - n_swa + 1 .. p",
        "f_attn_scale = 1/sqrt(n_embd_head_k) = 1/16 multiplies Q after its RMS norm and rope; "
        "the embeddings are scaled by sqrt(n_embd)",
        "no output.weight in the GGUF: the logits use token_embd (tied)",
        "llama.cpp multiplies by the GGUF's RMS-norm weights as they are (the converter already added Gemma's 1)",
    ],
}

def logits(ctx_llm):
    p = llama_cpp.llama_get_logits_ith(ctx_llm.ctx, -1)
    return np.ctypeslib.as_array(p, shape=(nv,)).copy()

def reset(ctx_llm):
    ctx_llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx_llm.ctx), True)

def log_softmax(lg):
    return lg - (np.log(np.sum(np.exp(lg - lg.max()))) + lg.max())

out = {
    "model": "gemma-3-270m-q4_k_m.gguf",
    "llama_cpp_python": llama_cpp.__version__,
    "settings": "CPU, 2 threads, n_ctx 2048, n_batch 512, f16 KV cache, no flash attention",
    "add_bos": add_bos,
    "bos_id": bos,
    "eog_ids": eog,
    "gguf_metadata": gguf_meta,
    "llama_cpp_model": llama_cpp_model,
    "tokenize": [],
    "prompts": [],
}
for s in json.load(open(strings_f)):
    ids = llm.tokenize(s.encode(), add_bos=False, special=True)
    out["tokenize"].append({"text": s, "ids": ids})
for p in json.load(open(prompts_f)):
    ids = llm.tokenize(p.encode(), add_bos=True, special=True)
    assert ids[0] == bos and ids[1] != bos, ids[:3]
    reset(llm); llm.eval(ids); lg = logits(llm)
    lp = log_softmax(lg)
    top = [int(i) for i in np.argsort(-lg)[:10]]
    gen, margins = [], []
    cur = lg
    while len(gen) < 32:
        order = np.argsort(-cur)[:2]
        nxt = int(order[0]); gen.append(nxt)
        margins.append(float(cur[order[0]] - cur[order[1]]))
        if nxt in eog: break
        llm.eval([nxt]); cur = logits(llm)
    out["prompts"].append({
        "prompt": p, "ids": ids,
        "top": [{"id": i, "logit": float(lg[i]), "logprob": float(lp[i])} for i in top],
        "greedy_ids": gen,
        "greedy_margins": margins,
        "greedy_text": llm.detokenize(gen).decode(errors="replace"),
    })
del llm

# llama.cpp against itself: token by token instead of batches of 512 (the number asked for),
# then, for scale, two other settings that its own tools offer: f32 KV cache, flash attention.
def spread(**settings):
    other = Llama(**{**COMMON, **settings})
    worst = []
    for case in out["prompts"]:
        reset(other); other.eval(case["ids"]); lp = log_softmax(logits(other))
        worst.append(max(abs(float(lp[t["id"]]) - t["logprob"]) for t in case["top"][:5]))
    del other
    return {"max": max(worst), "per_prompt": worst}
per_token = spread(n_batch=1, n_ubatch=1)
out["self_spread"] = {
    "what": "max |Δ log-prob| on each prompt's top 5: n_batch 512 vs token by token (n_batch 1)",
    **per_token,
    "other_settings": {
        "f32 KV cache (n_batch 512)": spread(n_batch=512, n_ubatch=512, type_k=0, type_v=0),
        "flash attention (n_batch 512)": spread(n_batch=512, n_ubatch=512, flash_attn=True),
    },
}
json.dump(out, open(out_f, "w"), indent=1, ensure_ascii=False)
print("wrote", out_f, len(out["tokenize"]), "strings", len(out["prompts"]), "prompts;",
      f"self-spread (batch 512 vs token by token) = {per_token['max']:.4f}",
      f"(per prompt: {' '.join(f'{w:.3f}' for w in per_token['per_prompt'])});",
      "; ".join(f"{k}: {v['max']:.4f}" for k, v in out["self_spread"]["other_settings"].items()))
