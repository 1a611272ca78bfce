// The native engines on the CPU, at 1 and 2 threads, on one model: Glassbox (`glassbox bench`),
// llama.cpp (llama-cpp-python, tools/llamacpp/bench_llamacpp.py) and candle-transformers'
// quantized llama (tools/candle-bench). Each is given the prompt's ids file and reports JSON.
import { join } from 'node:path';
import { CANDLE, CLI, DECODE_TOKENS, PYTHON, PYTHONPATH, ROOT, RUNS, runJson, skipped, timed } from './common.mjs';

export const THREADS = [1, 2];

/** The rows of the native table for `model`, by thread count, then engine. */
export async function native(model, prompt) {
  const rows = [];
  if (skipped(model, 'native')) return rows;
  for (const threads of THREADS) {
    const g = await timed(`${model.key}, native: Glassbox CPU, ${threads} thread(s)`, () =>
      runJson(CLI, ['bench', '--model', model.path, '--threads', String(threads), '--runs', String(RUNS),
        '--json', '--ids-file', prompt.file, '--decode-tokens', String(DECODE_TOKENS)]));
    checkPromptLength('glassbox bench', g.prompt_tokens, prompt);
    rows.push({ engine: 'Glassbox CPU', threads, prefill: g.prefill_tok_s, decode: g.decode_tok_s,
      loadS: g.load_seconds, peakMiB: g.peak_rss_mib, note: model.glassboxNote });

    if (!skipped(model, 'llamacpp')) {
      const l = await timed(`${model.key}, native: llama.cpp, ${threads} thread(s)`, () =>
        runJson(PYTHON, [join(ROOT, 'tools/llamacpp/bench_llamacpp.py'), model.path, prompt.file,
          String(threads), String(DECODE_TOKENS), String(RUNS)], { PYTHONPATH }));
      checkPromptLength('llama.cpp', l.prompt_tokens, prompt);
      rows.push({ engine: l.engine, threads, prefill: l.prefill_tok_s, decode: l.decode_tok_s,
        loadS: l.load_seconds, peakMiB: l.peak_rss_mib, note: 'Q8 activations, n_batch 512, Python bindings around the C API' });
    }

    if (model.candle || skipped(model, 'candle')) continue;
    const c = await timed(`${model.key}, native: candle, ${threads} thread(s)`, () =>
      runJson(CANDLE, [model.path, prompt.file, String(DECODE_TOKENS), String(RUNS)],
        { RAYON_NUM_THREADS: String(threads) }));
    rows.push({ engine: 'candle-transformers 0.11 quantized_llama', threads, prefill: c.prefill_tok_s,
      decode: c.decode_tok_s, loadS: c.load_seconds.median, peakMiB: c.peak_rss_mib,
      note: 'Q8 activations (candle QMatMul), one load per run' });
  }
  return rows;
}

function checkPromptLength(engine, n, prompt) {
  if (n !== prompt.ids.length) throw new Error(`${engine} prefilled ${n} tokens, not the ${prompt.ids.length} others get`);
}
