// Glassbox against the tools people would otherwise pick, on this machine, in one run:
// natively llama.cpp (llama-cpp-python) and candle-transformers' quantized llama; in headless
// Chromium wllama (llama.cpp in wasm). Every engine gets the same token ids (a fixed prompt of
// at least MIN_PROMPT_TOKENS tokens), greedy decoding of DECODE_TOKENS tokens, RUNS runs
// (min/median/max).
// Prints a markdown table and writes it to docs/benchmarks.md.
//
// Run through `cargo xtask bench-compare [--runs N]`, which builds and installs what this needs
// and passes it in the environment.
import { chromium } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync, readdirSync, statSync, writeFileSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'www/models/SmolLM2-135M-Instruct.Q4_1.gguf');
const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set: run this through \`cargo xtask bench-compare\``);
  return process.env[name];
};
const BASE_URL = env('GLASSBOX_BASE_URL');
const CLI = env('GLASSBOX_CLI');
const PYTHON = env('GLASSBOX_PYTHON');
const PYTHONPATH = process.env.GLASSBOX_PYTHONPATH ?? '';
const CANDLE = env('GLASSBOX_CANDLE_BENCH');
const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const RUNS = Number(option('runs', '3'));
const WEBGPU_RUNS = Number(option('webgpu-runs', '3'));
// Parts to leave out, e.g. `--skip webgpu,candle` (native, llamacpp, candle, browser, wllama, webgpu).
const SKIP = new Set((option('skip', '') ?? '').split(',').filter(Boolean));
const MIN_PROMPT_TOKENS = 420;
const DECODE_TOKENS = 64;

const COMMON_FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run'];
const CPU_FLAGS = [...COMMON_FLAGS, '--disable-gpu'];
const WEBGPU_FLAGS = [...COMMON_FLAGS, '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

const summary = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const log = (...a) => console.error(...a);

// ---- the prompt: the same ids for everyone -------------------------------------------------
/**
 * The shortest run of whole words from the start of the bench text that makes at least
 * MIN_PROMPT_TOKENS tokens: its ids are also the first ids of the whole text (the cut is at a
 * word boundary), so `glassbox bench --prompt-tokens N` feeds the same ids, and wllama, which
 * takes text only, gets text that tokenizes to them (checked against llama.cpp's own count).
 */
function fixedPrompt() {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-compare-'));
  const text = readFileSync(join(ROOT, 'cli/src/bench_prompt.txt'), 'utf8');
  const words = text.split(' ');
  const prefixes = words.map((_, k) => words.slice(0, k + 1).join(' '));
  const file = join(dir, 'texts.json');
  writeFileSync(file, JSON.stringify([text, ...prefixes]));
  const [all, ...tokenized] = JSON.parse(execFileSync(CLI, ['tokenize', '--json-file', file], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 }));
  const k = tokenized.findIndex((ids, i) =>
    ids.length >= MIN_PROMPT_TOKENS && ids.every((id, j) => id === all[j]));
  if (k < 0) throw new Error(`the bench text has fewer than ${MIN_PROMPT_TOKENS} tokens`);
  const ids = tokenized[k];
  const idsFile = join(dir, 'ids.json');
  writeFileSync(idsFile, JSON.stringify(ids));
  return { ids, text: prefixes[k], file: idsFile };
}

// ---- native --------------------------------------------------------------------------------
function runJson(command, args, extraEnv = {}) {
  const out = execFileSync(command, args, {
    cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20, env: { ...process.env, ...extraEnv },
  });
  return JSON.parse(out.trim().split('\n').pop());
}

function native(prompt) {
  const rows = [];
  if (SKIP.has('native')) return rows;
  for (const threads of [1, 2]) {
    log(`native: Glassbox CPU, ${threads} thread(s)…`);
    const g = runJson(CLI, ['bench', '--threads', String(threads), '--runs', String(RUNS), '--json',
      '--prompt-tokens', String(prompt.ids.length), '--decode-tokens', String(DECODE_TOKENS)]);
    rows.push({ engine: 'Glassbox CPU', threads, prefill: g.prefill_tok_s, decode: g.decode_tok_s,
      loadS: g.load_seconds, peakMiB: g.peak_rss_mib, note: 'Q16 activations × Q4_1 weights, integer SIMD kernels' });

    if (!SKIP.has('llamacpp')) {
      log(`native: llama.cpp, ${threads} thread(s)…`);
      const l = runJson(PYTHON, [join(ROOT, 'tools/llamacpp/bench_llamacpp.py'), MODEL, prompt.file,
        String(threads), String(DECODE_TOKENS), String(RUNS)], { PYTHONPATH });
      rows.push({ engine: l.engine, threads, prefill: l.prefill_tok_s, decode: l.decode_tok_s,
        loadS: l.load_seconds, peakMiB: l.peak_rss_mib, note: 'Q8 activations, n_batch 512, Python bindings around the C API' });
    }

    if (SKIP.has('candle')) continue;
    log(`native: candle, ${threads} thread(s)…`);
    const c = runJson(CANDLE, [MODEL, prompt.file, String(DECODE_TOKENS), String(RUNS)],
      { RAYON_NUM_THREADS: String(threads) });
    rows.push({ engine: 'candle-transformers 0.11 quantized_llama', threads, prefill: c.prefill_tok_s,
      decode: c.decode_tok_s, loadS: c.load_seconds.median, peakMiB: c.peak_rss_mib,
      note: 'Q8 activations (candle QMatMul), one load per run' });
  }
  return rows;
}

// ---- browser -------------------------------------------------------------------------------
function processIds() {
  return new Set(readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number));
}

/**
 * Peak resident memory of the renderer and GPU processes Chromium started after `before` (a
 * set of process ids taken before the launch; the benchmark runs one browser at a time).
 */
function peakRendererMiB(before) {
  let renderer = 0;
  let gpu = 0;
  for (const pid of processIds()) {
    if (before.has(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('chromium')) continue;
      const hwm = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/);
      const mib = hwm ? Number(hwm[1]) / 1024 : 0;
      if (cmd.includes('--type=renderer')) renderer = Math.max(renderer, mib);
      if (cmd.includes('--type=gpu-process')) gpu = Math.max(gpu, mib);
    } catch { /* gone */ }
  }
  return { renderer, gpu };
}

async function glassboxPage(prompt, tier) {
  const webgpu = tier === 'webgpu';
  const runs = webgpu ? WEBGPU_RUNS : RUNS;
  log(`browser: Glassbox ${tier} tier, ${runs} run(s)…`);
  const before = processIds();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: webgpu ? WEBGPU_FLAGS : CPU_FLAGS });
  try {
    const page = await (await browser.newContext()).newPage();
    const ready = async () => {
      const start = performance.now();
      await page.getByRole('status').filter({ hasText: /ready|failed/ }).waitFor({ timeout: 10 * 60 * 1000 });
      const status = await page.getByRole('status').textContent();
      if (!status.includes('ready')) throw new Error(`the page did not load: ${status}`);
      return { ms: performance.now() - start, status };
    };
    let t0 = performance.now();
    await page.goto(`${BASE_URL}/?bench`);
    await ready();
    const coldMs = performance.now() - t0;
    t0 = performance.now();
    await page.reload();
    const { status } = await ready();
    const warmMs = performance.now() - t0;
    if (webgpu !== status.startsWith('WebGPU')) throw new Error(`expected the ${tier} tier: ${status}`);
    const results = [];
    for (let r = 0; r < runs; r++) {
      await page.evaluate(({ ids, n }) => { window.glassboxBenchResult = undefined; window.glassboxBench(ids, n); },
        { ids: prompt.ids, n: DECODE_TOKENS });
      const handle = await page.waitForFunction(() => window.glassboxBenchResult, null,
        { timeout: 30 * 60 * 1000, polling: 100 });
      const result = JSON.parse(await handle.jsonValue());
      if (result.Err) throw new Error(`the page's benchmark failed: ${result.Err}`);
      results.push(result.Ok);
    }
    const memory = peakRendererMiB(before);
    return {
      engine: webgpu ? 'Glassbox WebGPU tier (SwiftShader: the CPU emulating a GPU)' : 'Glassbox CPU tier (wasm SIMD)',
      threads: 1,
      prefill: summary(results.map((r) => r.prompt_tokens / (r.prefill_ms / 1000))),
      decode: summary(results.map((r) => r.decode_tokens / (r.decode_ms / 1000))),
      loadS: coldMs / 1000,
      warmLoadS: warmMs / 1000,
      warmFirstTokenS: (warmMs + results[0].prefill_ms) / 1000,
      peakMiB: webgpu ? memory.renderer + memory.gpu : memory.renderer,
      note: webgpu ? 'renderer + GPU process memory; f32 activations' : 'renderer process memory; one worker thread',
    };
  } finally {
    await browser.close();
  }
}

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.gguf': 'application/octet-stream' };

/** wllama's files, its page and the model, with or without cross-origin isolation. */
function wllamaServer(isolated) {
  const wllamaDir = join(import.meta.dirname, 'node_modules/@wllama/wllama');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file;
    if (url.pathname === '/' || url.pathname === '/wllama.html') file = join(import.meta.dirname, 'wllama.html');
    else if (url.pathname === '/model.gguf') file = MODEL;
    else if (url.pathname.startsWith('/wllama/') && !url.pathname.includes('..')) file = join(wllamaDir, url.pathname.slice('/wllama/'.length));
    let size;
    try { size = statSync(file).size; } catch { res.writeHead(404).end(); return; }
    const headers = { 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream', 'Content-Length': size, 'Accept-Ranges': 'bytes' };
    if (isolated) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    const range = req.headers.range?.match(/bytes=(\d+)-(\d*)/);
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Number(range[2]) : size - 1;
      res.writeHead(206, { ...headers, 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}` });
      if (req.method === 'HEAD') { res.end(); return; }
      createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') { res.end(); return; }
    createReadStream(file).pipe(res);
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

async function wllama(prompt, threads, isolated) {
  log(`browser: wllama, ${threads} thread(s), ${isolated ? 'with' : 'without'} COOP/COEP…`);
  const server = await wllamaServer(isolated);
  const base = `http://127.0.0.1:${server.address().port}`;
  const before = processIds();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CPU_FLAGS });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/wllama.html`);
    await page.waitForFunction(() => window.wllamaReady === true);
    const out = await page.evaluate((cfg) => window.runWllama(cfg), {
      modelUrl: `${base}/model.gguf`, text: prompt.text, decodeTokens: DECODE_TOKENS, runs: RUNS, threads,
    });
    for (const t of out.runs) {
      if (!t || t.prompt_n !== prompt.ids.length) throw new Error(`wllama's tokens are not the ${prompt.ids.length} others get: ${JSON.stringify(t)}`);
    }
    const memory = peakRendererMiB(before);
    return {
      engine: 'wllama 3.13.0 (llama.cpp in wasm)',
      threads: out.threads,
      prefill: summary(out.runs.map((t) => t.prompt_per_second)),
      decode: summary(out.runs.map((t) => t.predicted_per_second)),
      loadS: out.loadMs / 1000,
      peakMiB: memory.renderer,
      note: `${isolated ? 'COOP/COEP' : 'no COOP/COEP'}; ${out.multithread ? 'multi-threaded build' : 'single-threaded build'}; timings from llama.cpp; renderer memory`,
    };
  } finally {
    await browser.close();
    server.close();
  }
}

/**
 * wllama's warm start, as Glassbox's is measured: with the model in wllama's own cache (OPFS),
 * a reload of the page to the first token of the prompt (reload + load from the cache + prefill).
 */
async function wllamaWarmStart(prompt) {
  log('browser: wllama warm start (1 thread, model in its cache)…');
  const server = await wllamaServer(false);
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CPU_FLAGS });
  try {
    const page = await browser.newPage();
    const config = { modelUrl: `${base}/model.gguf`, text: prompt.text, threads: 1 };
    await page.goto(`${base}/wllama.html`);
    await page.waitForFunction(() => window.wllamaReady === true);
    await page.evaluate((cfg) => window.wllamaWarmStart(cfg), config); // fills the cache
    const t0 = performance.now();
    await page.reload();
    await page.waitForFunction(() => window.wllamaReady === true);
    const reloadMs = performance.now() - t0;
    const warm = await page.evaluate((cfg) => window.wllamaWarmStart(cfg), config);
    if (warm.promptN !== prompt.ids.length) throw new Error(`wllama's warm prompt is ${warm.promptN} tokens, not ${prompt.ids.length}`);
    return { loadS: (reloadMs + warm.loadMs) / 1000, firstTokenS: (reloadMs + warm.loadMs + warm.promptMs) / 1000 };
  } finally {
    await browser.close();
    server.close();
  }
}

// ---- payloads ------------------------------------------------------------------------------
function payload(files) {
  let raw = 0;
  let gzip = 0;
  for (const f of files) {
    const bytes = readFileSync(f);
    raw += bytes.length;
    gzip += gzipSync(bytes).length;
  }
  return { raw, gzip };
}

// ---- the report ----------------------------------------------------------------------------
const fmt = (x, d = 1) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const spread = (s) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

function table(rows) {
  const lines = [
    '| engine | threads | prefill tok/s, median (min–max) | decode tok/s, median (min–max) | load s | peak MiB | decode ÷ best peer | notes |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const mine = r.engine.startsWith('Glassbox');
    // The best row of the other side: Glassbox against its peers, a peer against Glassbox.
    const others = rows.filter((o) => o.engine.startsWith('Glassbox') !== mine);
    const best = others.length ? Math.max(...others.map((o) => o.decode.median)) : NaN;
    lines.push(`| ${r.engine} | ${r.threads} | ${spread(r.prefill)} | ${spread(r.decode)} | ${fmt(r.loadS, 2)} | ${fmt(r.peakMiB, 0)} | ${fmt(r.decode.median / best, 2)} | ${r.note} |`);
  }
  return lines.join('\n');
}

const cpuName = cpus()[0]?.model ?? 'unknown CPU';
const chromiumVersion = execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8' }).trim();
const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ');
const prompt = fixedPrompt();
const nativeRows = native(prompt);
const browserRows = [];
let wllamaWarm = null;
if (!SKIP.has('browser')) {
  browserRows.push(await glassboxPage(prompt, 'cpu'));
  if (!SKIP.has('wllama')) {
    browserRows.push(await wllama(prompt, 1, false));
    browserRows.push(await wllama(prompt, 1, true));
    browserRows.push(await wllama(prompt, 2, true));
    wllamaWarm = await wllamaWarmStart(prompt);
  }
  if (!SKIP.has('webgpu')) browserRows.push(await glassboxPage(prompt, 'webgpu'));
}
const dist = join(ROOT, 'dist');
const ours = payload(readdirSync(dist).filter((f) => /\.(wasm|js)$/.test(f) && f !== 'sw.js').map((f) => join(dist, f)));
const wllamaEsm = join(import.meta.dirname, 'node_modules/@wllama/wllama/esm');
const theirs = payload([join(wllamaEsm, 'index.js'), ...readdirSync(join(wllamaEsm, 'wasm')).filter((f) => f.endsWith('.wasm')).map((f) => join(wllamaEsm, 'wasm', f))]);
const loadAfter = loadavg().map((x) => x.toFixed(2)).join(' ');
const glassboxCpu = browserRows[0] ?? {};
const mb = (b) => (b / 1e6).toFixed(2);

const report = `# Benchmarks: Glassbox side by side

Made by \`cargo xtask bench-compare\` on ${new Date().toISOString().slice(0, 10)}, ${cpuName}
(${cpus().length} cores), load average ${loadBefore} before and ${loadAfter} after.

SmolLM2-135M-Instruct Q4_1 (the bundled GGUF). Every engine gets the same ${prompt.ids.length} token
ids (\`cli/src/bench_prompt.txt\`, tokenized by Glassbox), then ${DECODE_TOKENS} greedy decode
steps; ${RUNS} runs each (the WebGPU tier: ${WEBGPU_RUNS}), median with min–max. Load: model file
to ready, once (native Glassbox and llama.cpp: the first load; candle: median of one load per run;
browser: cold page load to ready, download from localhost included). "decode ÷ best peer": this
row's median decode speed over the best of the other side (Glassbox rows against the best non-Glassbox
row, and the other way round).

## Native (CPU)

${table(nativeRows)}

## In the browser (headless ${chromiumVersion}, localhost)

${table(browserRows)}

The WebGPU tier runs on SwiftShader here: the CPU emulating a GPU, so its numbers say nothing
about a real GPU.

## Page weight and warm start

| | raw | gzip |
|---|---|---|
| Glassbox: wasm + JS of the page and its worker (\`dist/\`) | ${mb(ours.raw)} MB | ${mb(ours.gzip)} MB |
| wllama 3.13.0: \`esm/index.js\` + its wasm | ${mb(theirs.raw)} MB | ${mb(theirs.gzip)} MB |

Glassbox, CPU tier, model in the browser's cache: reload to ready ${fmt(glassboxCpu.warmLoadS, 2)} s;
to the first token of the ${prompt.ids.length}-token prompt ${fmt(glassboxCpu.warmFirstTokenS, 2)} s.
wllama, 1 thread, model in its own cache (OPFS): reload to ready ${fmt(wllamaWarm?.loadS, 2)} s;
to the first token of the same prompt ${fmt(wllamaWarm?.firstTokenS, 2)} s.
`;

console.log(report);
writeFileSync(join(ROOT, 'docs/benchmarks.md'), report);
log('written to docs/benchmarks.md');
