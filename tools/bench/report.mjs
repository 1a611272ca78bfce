// The markdown report (docs/benchmarks.md): a header with the machine and its load, then a
// section per model. The bundled model's section keeps the layout it has always had (its rows
// against the best of the other side at any thread count); the others' tables add, per row, its
// prefill and decode over the best of the other side at the same thread count.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DECODE_TOKENS, ROOT, RUNS, WEBGPU_RUNS } from './common.mjs';
import { WLLAMA } from './browser.mjs';

const fmt = (x, d = 1) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const spread = (s) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
const mb = (b) => (b / 1e6).toFixed(2);
const isGlassbox = (row) => row.engine.startsWith('Glassbox');

/** `row`'s median `key` over the best median of the rows on the other side that `peer` keeps. */
function overBestPeer(rows, row, key, peer = () => true) {
  const others = rows.filter((o) => isGlassbox(o) !== isGlassbox(row) && peer(o));
  const best = others.length ? Math.max(...others.map((o) => o[key].median)) : NaN;
  return fmt(row[key].median / best, 2);
}

/** The bundled model's table: decode over the best of the other side, at any thread count. */
function bestPeerTable(rows) {
  const lines = [
    '| engine | threads | prefill tok/s, median (min–max) | decode tok/s, median (min–max) | load s | peak MiB | decode ÷ best peer | notes |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.engine} | ${r.threads} | ${spread(r.prefill)} | ${spread(r.decode)} | ${fmt(r.loadS, 2)} | ${fmt(r.peakMiB, 0)} | ${overBestPeer(rows, r, 'decode')} | ${r.note} |`);
  }
  return lines.join('\n');
}

/** The other models' table: prefill and decode over the best of the other side at equal threads. */
function sameThreadsTable(rows) {
  const lines = [
    '| engine | threads | prefill tok/s, median (min–max) | decode tok/s, median (min–max) | load s | peak MiB | prefill ÷ best peer, same threads | decode ÷ best peer, same threads | notes |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const sameThreads = (o) => o.threads === r.threads;
    lines.push(`| ${r.engine} | ${r.threads} | ${spread(r.prefill)} | ${spread(r.decode)} | ${fmt(r.loadS, 2)} | ${fmt(r.peakMiB, 0)} | ${overBestPeer(rows, r, 'prefill', sameThreads)} | ${overBestPeer(rows, r, 'decode', sameThreads)} | ${r.note} |`);
  }
  return lines.join('\n');
}

/** Raw and gzipped bytes of the page's code (`dist/`) and of wllama's. */
export function pageWeights() {
  const payload = (files) => {
    let raw = 0;
    let gzip = 0;
    for (const f of files) {
      const bytes = readFileSync(f);
      raw += bytes.length;
      gzip += gzipSync(bytes).length;
    }
    return { raw, gzip };
  };
  const dist = join(ROOT, 'dist');
  const wllamaEsm = join(import.meta.dirname, 'node_modules/@wllama/wllama/esm');
  return {
    ours: payload(readdirSync(dist).filter((f) => /\.(wasm|js)$/.test(f) && f !== 'sw.js').map((f) => join(dist, f))),
    theirs: payload([join(wllamaEsm, 'index.js'),
      ...readdirSync(join(wllamaEsm, 'wasm')).filter((f) => f.endsWith('.wasm')).map((f) => join(wllamaEsm, 'wasm', f))]),
  };
}

const pageWeightTable = ({ ours, theirs }) => `| | raw | gzip |
|---|---|---|
| Glassbox: wasm + JS of the page and its worker (\`dist/\`) | ${mb(ours.raw)} MB | ${mb(ours.gzip)} MB |
| wllama 3.13.0: \`esm/index.js\` + its wasm | ${mb(theirs.raw)} MB | ${mb(theirs.gzip)} MB |`;

const SWIFTSHADER = `The WebGPU tier runs on SwiftShader here: the CPU emulating a GPU, so its numbers say nothing
about a real GPU.`;

/** The bundled model (SmolLM2), laid out as it always was. */
function bundledSection({ model, prompt, nativeRows, browser }, chromiumVersion, weights) {
  return `${model.title} (the bundled GGUF). Every engine gets the same ${prompt.ids.length} token
ids (\`cli/src/bench_prompt.txt\`, tokenized by Glassbox), then ${DECODE_TOKENS} greedy decode
steps; ${RUNS} runs each (the WebGPU tier: ${WEBGPU_RUNS}), median with min–max. Load: model file
to ready, once (native Glassbox and llama.cpp: the first load; candle: median of one load per run;
browser: cold page load to ready, download from localhost included). "decode ÷ best peer": this
row's median decode speed over the best of the other side (Glassbox rows against the best non-Glassbox
row, and the other way round).

## Native (CPU)

${bestPeerTable(nativeRows)}

## In the browser (headless ${chromiumVersion}, localhost)

${bestPeerTable(browser.rows)}

${SWIFTSHADER}
${browser.notRun.map((line) => `\nNot run: ${line}\n`).join('')}
## Page weight and warm start

${pageWeightTable(weights)}

Glassbox, CPU tier, model in the browser's cache: reload to ready ${fmt(browser.glassboxWarm?.loadS, 2)} s;
to the first token of the ${prompt.ids.length}-token prompt ${fmt(browser.glassboxWarm?.firstTokenS, 2)} s.
wllama, 1 thread, model in its own cache (OPFS): reload to ready ${fmt(browser.wllamaWarm?.loadS, 2)} s;
to the first token of the same prompt ${fmt(browser.wllamaWarm?.firstTokenS, 2)} s.
`;
}

/** Another model: its own heading, the ratios at equal thread counts, what was not run and why. */
function peersSection(s, chromiumVersion) {
  const { model, prompt, facts, nativeRows, browser } = s;
  const ids = prompt.bos
    ? "BOS, as the file's `tokenizer.ggml.add_bos_token` asks, then `cli/src/bench_prompt.txt` tokenized by Glassbox"
    : '`cli/src/bench_prompt.txt`, tokenized by Glassbox';
  const notRun = [...browser.notRun];
  if (model.candle) notRun.push(`candle-transformers: ${model.candle}.`);
  const wllamaRuns = browser.rows.some((r) => r.engine === WLLAMA);
  const webgpuRuns = browser.rows.some((r) => r.engine.includes('WebGPU'));
  const lines = [
    `## ${model.title}`,
    '',
    `\`www/models/${model.file}\` (${facts.architecture}, ${fmt(facts.parameters / 1e6, 1)} M parameters; tensors
${facts.types}). Every engine gets the same ${prompt.ids.length} token ids (${ids}),
then ${DECODE_TOKENS} greedy decode steps; ${RUNS} runs each (the WebGPU tier: ${WEBGPU_RUNS}), median with min–max.
Load average ${s.loadBefore} before this model's runs and ${s.loadAfter} after. Load: model file to
ready, once (natively: the first load; browser: cold page load to ready, download from localhost
included). "÷ best peer, same threads": this row's median over the best median of the other side
at the same thread count (Glassbox rows against the best non-Glassbox row, and the other way round).`,
    '',
    '### Native (CPU)',
    '',
    sameThreadsTable(nativeRows),
    '',
    `### In the browser (headless ${chromiumVersion}, localhost)`,
    '',
    sameThreadsTable(browser.rows),
  ];
  if (webgpuRuns) lines.push('', SWIFTSHADER);
  if (notRun.length) lines.push('', 'Not run:', '', ...notRun.map((line) => `- ${line}`));
  if (browser.glassboxWarm) {
    lines.push('', `Glassbox, CPU tier, model in the browser's cache: reload to ready ${fmt(browser.glassboxWarm.loadS, 2)} s;
to the first token of the ${prompt.ids.length}-token prompt ${fmt(browser.glassboxWarm.firstTokenS, 2)} s.`);
  }
  if (wllamaRuns && browser.wllamaWarm) {
    lines.push(`wllama, 1 thread, model in its own cache (OPFS): reload to ready ${fmt(browser.wllamaWarm.loadS, 2)} s;
to the first token of the same prompt ${fmt(browser.wllamaWarm.firstTokenS, 2)} s.`);
  }
  return `${lines.join('\n')}\n`;
}

/** The whole report: the machine, then each model's section (the page weight with the bundled model's, or last). */
export function report({ date, cpuName, cores, chromiumVersion, loadBefore, loadAfter, sections, weights }) {
  const parts = sections.map((s) => (s.model.format === 'bundled'
    ? bundledSection(s, chromiumVersion, weights)
    : peersSection(s, chromiumVersion)));
  if (!sections.some((s) => s.model.format === 'bundled')) parts.push(`## Page weight\n\n${pageWeightTable(weights)}\n`);
  return `# Benchmarks: Glassbox side by side

Made by \`cargo xtask bench-compare\` on ${date}, ${cpuName}
(${cores} cores), load average ${loadBefore} before and ${loadAfter} after.

${parts.join('\n')}`;
}
