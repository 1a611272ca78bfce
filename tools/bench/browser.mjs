// The engines in headless Chromium, on one model: Glassbox's page (its CPU tier, wasm SIMD, at 1
// thread and at 2 (its threaded build, isolated by its service worker), and its WebGPU tier on
// SwiftShader), driven through the page's benchmark hook (`?bench`,
// app/src/state/bench.rs), and wllama (llama.cpp in wasm, tools/bench/wllama.html) with and
// without cross-origin isolation, at 1 and 2 threads, and its warm start.
import { chromium } from '@playwright/test';
import { createReadStream, readFileSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import { extname, join } from 'node:path';
import { BASE_URL, DECODE_TOKENS, RUNS, WEBGPU_RUNS, skipped, summary, timed } from './common.mjs';
// The page's own benchmark hook, waited for without polling the page (which took CPU from it).
import { runBenchHook } from '../../tests/e2e/page-waits.mjs';

const COMMON_FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run'];
const CPU_FLAGS = [...COMMON_FLAGS, '--disable-gpu'];
const WEBGPU_FLAGS = [...COMMON_FLAGS, '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

export const WLLAMA = 'wllama 3.13.0 (llama.cpp in wasm)';

/**
 * Every browser row for `model`, in the order of the table, and what was not run and why
 * (`notRun`: sentences), with the warm starts of Glassbox's CPU tier and of wllama.
 */
export async function browser(model, prompt) {
  const out = { rows: [], notRun: [], glassboxWarm: null, wllamaWarm: null };
  if (skipped(model, 'browser')) return out;
  for (const threads of [1, 2]) {
    const cpu = await timed(`${model.key}, browser: Glassbox CPU tier, ${threads} thread(s), ${RUNS} run(s)`, () =>
      glassboxPage(model, prompt, 'cpu', threads));
    out.rows.push(cpu);
    // The warm start of what a visitor gets: the threaded build.
    out.glassboxWarm = { loadS: cpu.warmLoadS, firstTokenS: cpu.warmFirstTokenS };
  }
  if (!skipped(model, 'wllama')) {
    for (const [threads, isolated] of [[1, false], [1, true], [2, true]]) {
      out.rows.push(await timed(`${model.key}, browser: wllama, ${threads} thread(s), ${isolated ? 'with' : 'without'} COOP/COEP`,
        () => wllama(model, prompt, threads, isolated)));
    }
    out.wllamaWarm = await timed(`${model.key}, browser: wllama warm start (1 thread, model in its cache)`,
      () => wllamaWarmStart(model, prompt));
  }
  if (!skipped(model, 'webgpu')) {
    const gpu = await timed(`${model.key}, browser: Glassbox WebGPU tier, ${WEBGPU_RUNS} run(s)`, () =>
      glassboxPage(model, prompt, 'webgpu'));
    if (gpu.notRun) out.notRun.push(gpu.notRun);
    else out.rows.push(gpu);
  }
  return out;
}

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

/**
 * The page on one tier with `model` (the default model as a first visit loads it, another by
 * its sha256 in the deep link) and, on the CPU, `threads` threads (`threads=N`; the server sends
 * no COOP/COEP, so the cold load includes the service worker's one reload): cold load, warm
 * load (a reload, from the browser's cache), then the benchmark hook's runs. Where the page puts the model on the CPU although WebGPU was asked
 * for (it does so where WebGPU cannot hold or run it), returns `{ notRun }` with its reason.
 */
async function glassboxPage(model, prompt, tier, threads = 1) {
  const webgpu = tier === 'webgpu';
  const runs = webgpu ? WEBGPU_RUNS : RUNS;
  const before = processIds();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: webgpu ? WEBGPU_FLAGS : CPU_FLAGS });
  try {
    const page = await (await browser.newContext()).newPage();
    const status = page.getByRole('status');
    const ready = async () => {
      await status.filter({ hasText: /ready|failed/ }).waitFor({ timeout: 10 * 60 * 1000 });
      const text = await status.textContent();
      if (!text.includes('ready')) throw new Error(`the page did not load ${model.file}: ${text}`);
      if (model.statusName && !model.statusName.test(text)) throw new Error(`the page loaded another model than ${model.file}: ${text}`);
      return text;
    };
    let t0 = performance.now();
    const query = `${model.isDefault ? '' : `&model=${model.sha256}`}${webgpu ? '' : `&threads=${threads}`}`;
    await page.goto(`${BASE_URL}/?bench${query}`);
    await ready();
    const coldMs = performance.now() - t0;
    t0 = performance.now();
    await page.reload();
    const text = await ready();
    const warmMs = performance.now() - t0;
    if (webgpu && text.startsWith('CPU')) {
      const reason = (await status.getAttribute('title')) || text;
      return { notRun: `Glassbox's WebGPU tier: the page loads this model on the CPU under SwiftShader (${reason.trim()}).` };
    }
    if (webgpu !== text.startsWith('WebGPU')) throw new Error(`expected the ${tier} tier: ${text}`);
    if (!webgpu && !text.includes(`· ${threads} thread`)) throw new Error(`expected ${threads} thread(s): ${text}`);
    const results = [];
    for (let r = 0; r < runs; r++) {
      const times = await runBenchHook(page, prompt.ids, DECODE_TOKENS);
      if (times.prompt_tokens !== prompt.ids.length) throw new Error(`the page prefilled ${times.prompt_tokens} tokens`);
      results.push(times);
    }
    const memory = peakRendererMiB(before);
    return {
      engine: webgpu ? 'Glassbox WebGPU tier (SwiftShader: the CPU emulating a GPU)' : 'Glassbox CPU tier (wasm SIMD)',
      threads: webgpu ? 1 : threads,
      prefill: summary(results.map((r) => r.prompt_tokens / (r.prefill_ms / 1000))),
      decode: summary(results.map((r) => r.decode_tokens / (r.decode_ms / 1000))),
      loadS: coldMs / 1000,
      warmLoadS: warmMs / 1000,
      warmFirstTokenS: (warmMs + results[0].prefill_ms) / 1000,
      peakMiB: webgpu ? memory.renderer + memory.gpu : memory.renderer,
      note: webgpu ? 'renderer + GPU process memory; f32 activations'
        : `renderer process memory; ${threads === 1 ? 'the one-thread build' : 'the threaded build (wasm atomics), isolated by its service worker'}`,
    };
  } finally {
    await browser.close();
  }
}

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.gguf': 'application/octet-stream' };

/** wllama's files, its page and the model, with or without cross-origin isolation. */
function wllamaServer(model, isolated) {
  const wllamaDir = join(import.meta.dirname, 'node_modules/@wllama/wllama');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file;
    if (url.pathname === '/' || url.pathname === '/wllama.html') file = join(import.meta.dirname, 'wllama.html');
    else if (url.pathname === '/model.gguf') file = model.path;
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

async function wllama(model, prompt, threads, isolated) {
  const server = await wllamaServer(model, isolated);
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
      engine: WLLAMA,
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
async function wllamaWarmStart(model, prompt) {
  const server = await wllamaServer(model, false);
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
