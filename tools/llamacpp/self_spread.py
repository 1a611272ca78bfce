# How far llama.cpp's next-token log-probs move between its own settings (flash attention on
# or off, f16 or f32 KV cache), on the prompts of a fixture file. This is the noise floor any
# engine that is not bit-identical to llama.cpp has to live with.
# usage: python self_spread.py MODEL.gguf FIXTURE.json
import json, sys
import numpy as np
import llama_cpp
from llama_cpp import Llama

model, fixture = sys.argv[1], sys.argv[2]
cases = json.load(open(fixture))["prompts"]

def logprobs(llm, ids):
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    llm.eval(ids)
    lg = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
    return lg - (np.log(np.sum(np.exp(lg - lg.max()))) + lg.max())

settings = {
    "fixture settings (f16 KV, no flash attention)": dict(flash_attn=False),
    "f32 KV cache": dict(flash_attn=False, type_k=0, type_v=0),
    "flash attention": dict(flash_attn=True),
}
reference = None
for name, kw in settings.items():
    llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=2, verbose=False, seed=0, **kw)
    worst = []
    for case in cases:
        lp = logprobs(llm, case["ids"])
        worst.append(max(abs(float(lp[t["id"]]) - t["logprob"]) for t in case["top"][:5]))
    print(f"{name}: max |Δ log-prob| on the fixture's top-5 = {max(worst):.3f} "
          f"(per prompt: {' '.join(f'{w:.2f}' for w in worst)})")
    del llm
