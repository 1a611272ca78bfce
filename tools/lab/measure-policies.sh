#!/bin/sh
# The attention policies' measurements in docs/lab.md, on the CPU: perplexity on a long
# public-domain text (tools/lab/long-text.sh) with no policy (within the context), a sliding
# window and LM-Infinite's Λ out to 4x the context, and KV budgets' agreement with the full
# cache along a greedy generation. Writes JSON lines to target/lab/; prints them.
# Usage: tools/lab/measure-policies.sh [MODEL.gguf]   (about 30 minutes on 2 cores)
set -eu
model=${1:-www/models/SmolLM2-135M-Instruct.Q4_1.gguf}
glassbox=${GLASSBOX:-target/release/glassbox}
mkdir -p target/lab
[ -s target/lab/kjv.txt ] || tools/lab/long-text.sh target/lab/kjv.txt
context=$($glassbox info --model "$model" --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["plan"]["context"])')
out=target/lab/policies.jsonl
: >"$out"
$glassbox perplexity --model "$model" --text-file target/lab/kjv.txt --max-tokens "$context" \
  >>"$out"
for policy in "window:$((context / 4))" "lambda:4,$((context / 4))"; do
  $glassbox perplexity --model "$model" --text-file target/lab/kjv.txt \
    --max-tokens $((4 * context)) --cache $((context / 2)) --policy "$policy" >>"$out"
done
# The second stretch of the context fed on its own with a full cache (what the model does on
# that text within its context).
python3 - "$glassbox" "$context" <<'PY'
import json, subprocess, sys
glassbox, context = sys.argv[1], int(sys.argv[2])
text = open('target/lab/kjv.txt').read()
def count(n):
    json.dump([text[:n]], open('target/lab/cut.json', 'w'))
    out = subprocess.run([glassbox, 'tokenize', '--json-file', 'target/lab/cut.json'],
                         capture_output=True, text=True, check=True).stdout
    return len(json.loads(out)[0])
lo, hi = 0, len(text)
while hi - lo > 50:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if count(mid) < context else (lo, mid)
open('target/lab/kjv-second-stretch.txt', 'w').write(text[text.index(' ', lo) + 1:])
PY
$glassbox perplexity --model "$model" --text-file target/lab/kjv-second-stretch.txt \
  --max-tokens "$context" >>"$out"
# A prompt of 1,500 tokens of the text, then 256 greedy steps under each budget.
head -c 6500 target/lab/kjv.txt >target/lab/budget-prompt.txt
$glassbox kv-agreement --model "$model" --prompt-file target/lab/budget-prompt.txt \
  --budgets 128,256,512,1024 --steps 256 >>"$out"
cat "$out"
