// What every part of the side-by-side benchmark shares: the settings from the command line and
// the environment `cargo xtask bench-compare` sets, the models, the prompt every engine gets,
// and small helpers.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set: run this through \`cargo xtask bench-compare\``);
  return process.env[name];
};
export const BASE_URL = env('GLASSBOX_BASE_URL');
export const CLI = env('GLASSBOX_CLI');
export const PYTHON = env('GLASSBOX_PYTHON');
export const PYTHONPATH = process.env.GLASSBOX_PYTHONPATH ?? '';
export const CANDLE = env('GLASSBOX_CANDLE_BENCH');

const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const list = (text) => (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);

export const RUNS = Number(option('runs', '3'));
export const WEBGPU_RUNS = Number(option('webgpu-runs', '3'));
export const MIN_PROMPT_TOKENS = 420;
export const DECODE_TOKENS = 64;

/**
 * The models, in the order they run, by `key` (what `--models` names). `file`: in www/models/,
 * where www/models/manifest.json lists it too (the page loads its default, `chat`, without
 * asking, another by the sha256 the manifest gives in the deep link). `candle`: why candle does
 * not run it, where it does not. `format`: `bundled` keeps the table the bundled model has always
 * had; `peers` adds the ratios at equal thread counts. `statusName`: how the page's status names
 * it, to check that the link loaded it.
 */
const ALL_MODELS = [
  {
    key: 'smollm2',
    file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
    title: 'SmolLM2-135M-Instruct Q4_1',
    glassboxNote: 'Q16 activations × Q4_1 weights, integer SIMD kernels',
    format: 'bundled',
  },
  {
    key: 'gemma3',
    file: 'gemma-3-270m-q4_k_m.gguf',
    title: 'Gemma 3 270M Q4_K_M',
    glassboxNote: 'Q16 activations × Q5_0, Q4_K, Q8_0, Q6_K weights, integer SIMD kernels',
    candle: "tools/candle-bench drives its quantized_llama, which reads llama GGUFs: SmolLM2 only",
    format: 'peers',
    statusName: /gemma/i,
  },
];

const manifest = JSON.parse(readFileSync(join(ROOT, 'www/models/manifest.json'), 'utf8'));
const manifestEntry = (file) => [manifest.chat, ...(manifest.more ?? [])].find((m) => m.file === file);

/** `--models smollm2,gemma3` (the default: all), each with its path and the page's entry. */
export const MODELS = (() => {
  const keys = list(option('models', ALL_MODELS.map((m) => m.key).join(',')));
  const unknown = keys.filter((k) => !ALL_MODELS.some((m) => m.key === k));
  if (unknown.length || !keys.length) {
    throw new Error(`--models: unknown ${JSON.stringify(unknown)}; pick from ${ALL_MODELS.map((m) => m.key).join(', ')}`);
  }
  return ALL_MODELS.filter((m) => keys.includes(m.key)).map((m) => {
    const entry = manifestEntry(m.file);
    if (!entry) throw new Error(`www/models/manifest.json does not list ${m.file}`);
    return { ...m, path: join(ROOT, 'www/models', m.file), sha256: entry.sha256, isDefault: entry === manifest.chat };
  });
})();

// Parts to leave out, for every model (`--skip webgpu,candle`) or one (`--skip gemma3:webgpu`).
const PARTS = ['native', 'llamacpp', 'candle', 'browser', 'wllama', 'webgpu'];
const SKIP = new Set(list(option('skip', '')));
for (const entry of SKIP) {
  const [model, part] = entry.includes(':') ? entry.split(':') : [null, entry];
  if (!PARTS.includes(part) || (model && !ALL_MODELS.some((m) => m.key === model))) {
    throw new Error(`--skip ${entry}: parts are ${PARTS.join(', ')}, optionally after a model and a colon (gemma3:webgpu)`);
  }
}
/** Whether `part` of `model`'s benchmark is left out. */
export const skipped = (model, part) => SKIP.has(part) || SKIP.has(`${model.key}:${part}`);

export const summary = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
export const log = (...a) => console.error(...a);

/** Runs a command that prints JSON on its last line of stdout. */
export function runJson(command, args, extraEnv = {}) {
  const out = execFileSync(command, args, {
    cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...extraEnv },
  });
  return JSON.parse(out.trim().split('\n').pop());
}

/**
 * The same ids for every engine: the shortest run of whole words from the start of the bench
 * text that makes at least MIN_PROMPT_TOKENS tokens, fed as llama.cpp feeds a prompt (BOS first
 * where the file's `tokenizer.ggml.add_bos_token` asks for it). Its ids are the first ids of the
 * whole text (the cut is at a word boundary), and wllama, which takes text only, gets text that
 * tokenizes to them (checked against llama.cpp's own count).
 */
export function fixedPrompt(model) {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-compare-'));
  const text = readFileSync(join(ROOT, 'cli/src/bench_prompt.txt'), 'utf8');
  const words = text.split(' ');
  const prefixes = words.map((_, k) => words.slice(0, k + 1).join(' '));
  const file = join(dir, 'texts.json');
  writeFileSync(file, JSON.stringify([text, ...prefixes]));
  const [all, ...tokenized] = runJson(CLI, ['tokenize', '--model', model.path, '--with-bos', '--json-file', file]);
  const k = tokenized.findIndex((ids) =>
    ids.length >= MIN_PROMPT_TOKENS && ids.every((id, j) => id === all[j]));
  if (k < 0) throw new Error(`the bench text has fewer than ${MIN_PROMPT_TOKENS} tokens`);
  const ids = tokenized[k];
  const idsFile = join(dir, 'ids.json');
  writeFileSync(idsFile, JSON.stringify(ids));
  const plain = runJson(CLI, ['tokenize', '--model', model.path, '--json-file', file])[k + 1];
  return { ids, text: prefixes[k], file: idsFile, bos: ids.length > plain.length };
}

/** What the file is, as `glassbox info` reads it from the header: architecture, tensor types. */
export function modelFacts(model) {
  const { summary: s } = runJson(CLI, ['info', '--model', model.path, '--json']);
  return {
    architecture: s.architecture,
    parameters: s.parameters,
    types: s.types.map(([type, n]) => `${type} ×${n}`).join(', '),
  };
}

/** `work()`, its time logged under `label` (the run's log says which part takes how long). */
export async function timed(label, work) {
  const start = performance.now();
  log(`${label}…`);
  try {
    return await work();
  } finally {
    log(`${label}: ${((performance.now() - start) / 1000).toFixed(0)} s`);
  }
}

/** The machine's load average (1, 5 and 15 minutes), as the report prints it. */
export const loadAverage = () => loadavg().map((x) => x.toFixed(2)).join(' ');
