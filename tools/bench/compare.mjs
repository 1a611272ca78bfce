// Glassbox against the tools people would otherwise pick, on this machine, in one run, for each
// model (`--models smollm2,gemma3`, both by default): natively llama.cpp (llama-cpp-python) and
// candle-transformers' quantized llama (SmolLM2 only); in headless Chromium wllama (llama.cpp in
// wasm). Every engine gets the same token ids (a fixed prompt of at least MIN_PROMPT_TOKENS
// tokens, BOS first where the model asks for it), greedy decoding of DECODE_TOKENS tokens, RUNS
// runs (min/median/max). Prints a markdown table per model and writes them to docs/benchmarks.md.
//
// Run through `cargo xtask bench-compare [--runs N] [--webgpu-runs N] [--models M,…]
// [--skip PART,MODEL:PART,…]`, which builds and installs what this needs and passes it in the
// environment. The parts: common.mjs (settings, models, the prompt), native.mjs, browser.mjs,
// report.mjs.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { MODELS, ROOT, fixedPrompt, loadAverage, log, modelFacts, timed } from './common.mjs';
import { native } from './native.mjs';
import { browser } from './browser.mjs';
import { pageWeights, report } from './report.mjs';

const chromiumVersion = execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8' }).trim();
const loadBefore = loadAverage();
const sections = [];
for (const model of MODELS) {
  const modelLoadBefore = loadAverage();
  const prompt = fixedPrompt(model);
  log(`${model.key}: ${prompt.ids.length} prompt ids${prompt.bos ? ', BOS first' : ''}`);
  const facts = modelFacts(model);
  const nativeRows = await timed(`${model.key}: native, all`, () => native(model, prompt));
  const inBrowser = await timed(`${model.key}: browser, all`, () => browser(model, prompt));
  sections.push({ model, prompt, facts, nativeRows, browser: inBrowser, loadBefore: modelLoadBefore, loadAfter: loadAverage() });
}
const text = report({
  date: new Date().toISOString().slice(0, 10),
  cpuName: cpus()[0]?.model ?? 'unknown CPU',
  cores: cpus().length,
  chromiumVersion,
  loadBefore,
  loadAfter: loadAverage(),
  sections,
  weights: pageWeights(),
});
console.log(text);
writeFileSync(join(ROOT, 'docs/benchmarks.md'), text);
log('written to docs/benchmarks.md');
