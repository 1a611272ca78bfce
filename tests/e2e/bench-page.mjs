// Benchmark of the page itself, in headless Chromium: per compute tier, the cold load (download
// and ready, in a fresh profile), the warm load (a reload, from the browser's cache), time to
// first token and decode speed, and from a reload to the first token of a short chat turn
// (about 40 tokens; the warm-start figure of the speed issue, medians of RUNS), sent at once and
// sent after a second of typing ("typed→1st": from Enter; the worker uses the second to feed
// the chat's opening). Not a test: it prints numbers and asserts nothing about them.
//
//   cargo xtask bench-page [--tiers cpu,cpu1,webgpu] [--tokens 64] [--runs 3]
//
// Tiers: `cpu` is the CPU tier on every core the browser reports (the threaded build: the
// server sends no COOP/COEP, so the cold load includes the service worker's one reload), `cpu1`
// the same on one thread (`?threads=1`), `webgpu` the WebGPU tier. Every wait runs in the page
// (page-waits.mjs): a harness polling the page took CPU from it.
//
// (xtask builds the page, serves it and sets GLASSBOX_BASE_URL.) WebGPU here is SwiftShader, a
// CPU emulation of a GPU, so its numbers say nothing about a real GPU.
import { chromium } from '@playwright/test';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { epochNow, readyAt, recordReady, sendTurn, whenInPage } from './page-waits.mjs';

const BASE_URL = process.env.GLASSBOX_BASE_URL;
if (!BASE_URL) {
  console.error('GLASSBOX_BASE_URL is not set; run this through `cargo xtask bench-page`');
  process.exit(2);
}

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const TIERS = option('tiers', 'cpu,cpu1,webgpu').split(',');
const TOKENS = Number(option('tokens', '64'));
const RUNS = Number(option('runs', '3'));
// Asks for a long answer, so a greedy reply rarely ends before TOKENS. Each run's prompt starts
// differently: the worker reuses the KV cache of a common prefix, and an identical prompt would
// measure no prefill at all (the chat template's system part is still shared, as in real use).
const prompt = (run) =>
  `Story number ${run + 1}: write a long story about a lighthouse keeper who finds a message in a bottle.`;

const COMMON = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const CPU_FLAGS = [...COMMON, '--disable-gpu'];
const FLAGS = {
  cpu: CPU_FLAGS,
  cpu1: CPU_FLAGS,
  webgpu: [
    ...COMMON,
    '--enable-unsafe-webgpu',
    '--enable-features=Vulkan',
    '--use-vulkan=swiftshader',
    '--use-webgpu-adapter=swiftshader',
  ],
};
const PATHS = { cpu: '/', cpu1: '/?threads=1', webgpu: '/' };
const EXPECTED_STATUS = { cpu: /^CPU \(wasm\)/, cpu1: /^CPU \(wasm\) · 1 thread/, webgpu: /^WebGPU/ };

const LOAD_TIMEOUT_MS = 10 * 60 * 1000;
const REPLY_TIMEOUT_MS = 20 * 60 * 1000;

async function statusText(page) {
  return (await page.getByRole('status').textContent()) ?? '';
}

/** Milliseconds from `start` (`epochNow`) until the status said "ready"; throws on a load error. */
async function timeToReady(page, start) {
  return (await readyAt(page, LOAD_TIMEOUT_MS)) - start;
}

async function setField(page, label, value) {
  await page.getByLabel(label).fill(String(value));
  await page.getByLabel(label).press('Tab');
}

/** One greedy reply: first token as seen by the page and by the worker, decode speed. */
async function reply(page, run) {
  await page.getByRole('button', { name: 'New chat' }).click();
  const { sent, firstToken } = await sendTurn(page, prompt(run), 0, REPLY_TIMEOUT_MS);
  const firstTokenSeenMs = firstToken - sent;
  await whenInPage(page, 'replyEnded', 0, REPLY_TIMEOUT_MS);
  const stats = (await page.locator('.stats').textContent()) ?? '';
  const m = stats.match(/^(\d+) tokens, ([\d.]+) tokens\/s, first token after ([\d.]+) s/);
  if (!m) throw new Error(`cannot read the reply's statistics from ${JSON.stringify(stats)}`);
  return {
    tokens: Number(m[1]),
    decodeTokensPerSecond: Number(m[2]),
    firstTokenMs: Number(m[3]) * 1000,
    firstTokenSeenMs,
  };
}

// A short chat turn (about 40 tokens with the chat template around it), for reload-to-first-token.
const SHORT_TURN = 'In two sentences, why is the sky blue on a clear day and red at sunset?';

/** A reload with the model in the browser's storage, then a short turn sent `pauseMs` after
 *  ready: milliseconds from the reload to its first token, and from Enter to it. */
async function reloadToFirstToken(page, pauseMs = 0) {
  const start = epochNow();
  await page.reload();
  await timeToReady(page, start);
  const { sent, firstToken } = await sendTurn(page, SHORT_TURN, pauseMs, REPLY_TIMEOUT_MS);
  const ms = { fromReload: firstToken - start, fromSend: firstToken - sent };
  await whenInPage(page, 'replyEnded', 0, REPLY_TIMEOUT_MS);
  await page.getByRole('button', { name: 'New chat' }).click();
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function benchTier(tier) {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-bench-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: FLAGS[tier],
    baseURL: BASE_URL,
  });
  try {
    await context.addInitScript(recordReady);
    const page = context.pages()[0] ?? (await context.newPage());
    let start = epochNow();
    await page.goto(PATHS[tier]);
    const coldLoadMs = await timeToReady(page, start);
    const status = await statusText(page);
    if (!EXPECTED_STATUS[tier].test(status)) {
      throw new Error(`expected the ${tier} tier, the page says ${JSON.stringify(status)}`);
    }
    start = epochNow();
    await page.reload();
    const warmLoadMs = await timeToReady(page, start);
    await setField(page, 'Temperature', 0);
    await setField(page, 'Max new tokens', TOKENS);
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await reply(page, i));
    await setField(page, 'Max new tokens', 8);
    const reloadFirstTokenMs = [];
    for (let i = 0; i < RUNS; i++) reloadFirstTokenMs.push((await reloadToFirstToken(page)).fromReload);
    const typedFirstTokenMs = [];
    for (let i = 0; i < RUNS; i++) typedFirstTokenMs.push((await reloadToFirstToken(page, 1000)).fromSend);
    return {
      reloadToFirstTokenMs: median(reloadFirstTokenMs),
      typedToFirstTokenMs: median(typedFirstTokenMs),
      tier,
      status,
      coldLoadMs,
      warmLoadMs,
      runs,
      firstTokenMs: median(runs.map((r) => r.firstTokenMs)),
      firstTokenSeenMs: median(runs.map((r) => r.firstTokenSeenMs)),
      decodeTokensPerSecond: median(runs.map((r) => r.decodeTokensPerSecond)),
      tokens: median(runs.map((r) => r.tokens)),
    };
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const modelBytes = (() => {
  try {
    return statSync(new URL('../../www/models/SmolLM2-135M-Instruct.Q4_1.gguf', import.meta.url)).size;
  } catch {
    return null;
  }
})();

console.log(`page benchmark: ${BASE_URL}, greedy replies of up to ${TOKENS} tokens, ${RUNS} runs each (median)`);
if (modelBytes) console.log(`model: ${(modelBytes / 1e6).toFixed(1)} MB, served from localhost`);
const results = [];
for (const tier of TIERS) {
  if (!FLAGS[tier]) throw new Error(`unknown tier ${tier}; use cpu, cpu1 or webgpu`);
  console.log(`\n${tier}: running…`);
  const r = await benchTier(tier);
  results.push(r);
  for (const [i, run] of r.runs.entries()) {
    console.log(
      `  run ${i + 1}: ${run.tokens} tokens, ${run.decodeTokensPerSecond.toFixed(1)} tok/s, ` +
        `first token ${(run.firstTokenSeenMs / 1000).toFixed(2)} s on the page ` +
        `(${(run.firstTokenMs / 1000).toFixed(1)} s in the worker)`,
    );
  }
}

const pad = (s, n) => String(s).padEnd(n);
console.log(`\n${pad('tier', 40)}${pad('cold load', 11)}${pad('warm load', 11)}${pad('first token', 13)}${pad('reload→1st', 12)}${pad('typed→1st', 11)}decode`);
for (const r of results) {
  console.log(
    pad(r.status.slice(0, 38), 40) +
      pad(`${(r.coldLoadMs / 1000).toFixed(1)} s`, 11) +
      pad(`${(r.warmLoadMs / 1000).toFixed(1)} s`, 11) +
      pad(`${(r.firstTokenSeenMs / 1000).toFixed(2)} s`, 13) +
      pad(`${(r.reloadToFirstTokenMs / 1000).toFixed(2)} s`, 12) +
      pad(`${(r.typedToFirstTokenMs / 1000).toFixed(2)} s`, 11) +
      `${r.decodeTokensPerSecond.toFixed(1)} tok/s (${r.tokens} tokens)`,
  );
}
console.log(`\nJSON ${JSON.stringify(results.map(({ runs, ...rest }) => rest))}`);
