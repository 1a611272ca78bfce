# Times llama.cpp (llama-cpp-python) on the same prompt token ids as `glassbox bench`:
# prefill of a fixed prompt, then greedy decode steps; prints JSON with min/median/max.
# usage: python bench_llamacpp.py MODEL.gguf IDS.json THREADS DECODE_TOKENS RUNS
import json, resource, statistics, sys, time
import numpy as np
import llama_cpp
from llama_cpp import Llama

model, ids_file, threads, n_decode, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ids = json.load(open(ids_file))
t0 = time.perf_counter()
llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=threads,
            n_threads_batch=threads, n_gpu_layers=0, verbose=False, seed=0)
load_s = time.perf_counter() - t0
nv = llm.n_vocab()

def argmax_last():
    p = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return int(np.argmax(np.ctypeslib.as_array(p, shape=(nv,))))

prefill, decode = [], []
for _ in range(runs):
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    t = time.perf_counter(); llm.eval(ids); prefill.append(len(ids) / (time.perf_counter() - t))
    nxt = argmax_last()
    t = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([nxt]); nxt = argmax_last()
    decode.append(n_decode / (time.perf_counter() - t))

def summary(v):
    return {"min": min(v), "median": statistics.median(v), "max": max(v)}
print(json.dumps({"engine": "llama.cpp (llama-cpp-python %s)" % llama_cpp.__version__, "threads": threads,
                  "prompt_tokens": len(ids), "decode_tokens": n_decode, "runs": runs, "load_seconds": load_s,
                  "prefill_tok_s": summary(prefill), "decode_tok_s": summary(decode),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
