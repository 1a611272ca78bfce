// Where the page's engine spends its time: a CPU profile of the engine worker (V8's sampling
// profiler, through the DevTools protocol) while the benchmark hook prefills N token ids and
// decodes DEC steps; prints each function's share of the samples (self time), heaviest first.
// The wasm carries its name section, so the kernels appear by their Rust names. Not a test.
//
//   cargo xtask serve --no-build --isolate --port 8097 &
//   GLASSBOX_BASE_URL=http://127.0.0.1:8097 node tests/e2e/profile-page.mjs [--tokens 420]
//     [--decode 0] [--threads 1] [--top 25] [--model SHA256] [--phase all|prefill|decode]
//
// --phase keeps the samples of one phase, the prefill (first) or the decode (last), as long as
// the hook reports: 90% of it, away from the other phase.
// --model picks another model of the page's manifest by its SHA-256 (the page's `?model=`).
//
// With --threads 2 the pool's workers are profiled too, each on its own.
import { chromium } from '@playwright/test';
import { runBenchHook } from './page-waits.mjs';
import { numberOption as option, servedBaseUrl } from './script-options.mjs';

const BASE_URL = servedBaseUrl();
const TOKENS = option('tokens', 420);
const DECODE = option('decode', 0);
const THREADS = option('threads', 1);
const TOP = option('top', 25);
const modelArg = process.argv.indexOf('--model');
const MODEL = modelArg >= 0 ? `&model=${process.argv[modelArg + 1]}` : '';
const phaseArg = process.argv.indexOf('--phase');
const PHASE = phaseArg >= 0 ? process.argv[phaseArg + 1] : 'all';
if (!['all', 'prefill', 'decode'].includes(PHASE)) throw new Error(`--phase all|prefill|decode, not ${PHASE}`);
// Fixed ids of ordinary tokens: what the prompt says does not change the work.
const ids = Array.from({ length: TOKENS }, (_, i) => 100 + i * 7);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu'] });
try {
  const page = await (await browser.newContext()).newPage();
  const ready = () => page.getByRole('status').filter({ hasText: /ready/ }).waitFor({ timeout: 5 * 60 * 1000 });
  await page.goto(`${BASE_URL}/?bench&threads=${THREADS}${MODEL}`);
  await ready();
  const status = await page.getByRole('status').textContent();
  if (!status.includes(`${THREADS} thread`)) throw new Error(`expected ${THREADS} thread(s): ${status}`);

  // Workers are targets of their own: attach to each through the browser's session and speak
  // to it in messages (Playwright's sessions address pages only).
  const cdp = await browser.newBrowserCDPSession();
  const { targetInfos } = await cdp.send('Target.getTargets');
  let lastId = 0;
  const pending = new Map();
  cdp.on('Target.receivedMessageFromTarget', ({ message }) => {
    const reply = JSON.parse(message);
    if (reply.id && pending.has(reply.id)) {
      pending.get(reply.id)(reply);
      pending.delete(reply.id);
    }
  });
  const send = (sessionId, method, params = {}) => new Promise((resolve) => {
    const id = ++lastId;
    pending.set(id, resolve);
    cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
  });
  const workers = [];
  for (const target of targetInfos.filter((t) => t.type === 'worker')) {
    const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: target.targetId, flatten: false });
    await send(sessionId, 'Profiler.enable');
    await send(sessionId, 'Profiler.setSamplingInterval', { interval: 200 });
    await send(sessionId, 'Profiler.start');
    workers.push({ url: target.url, sessionId });
  }

  const o = await runBenchHook(page, ids, DECODE);
  console.log(`${status}\nprefill ${o.prompt_tokens} tokens in ${(o.prefill_ms / 1000).toFixed(2)} s, ` +
    `decode ${o.decode_tokens} in ${(o.decode_ms / 1000).toFixed(2)} s`);

  for (const { url, sessionId } of workers) {
    const { result: { profile } } = await send(sessionId, 'Profiler.stop');
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const nameOf = (id) => nodes.get(id).callFrame.functionName || '(anonymous)';
    const idle = (name) => name === '(idle)' || name === '(program)';
    // Each sample's time in ms from the profile's start.
    let at = 0;
    const times = profile.timeDeltas.map((d) => (at += d / 1000));
    // The phases' bounds in the profile's time. The engine's first and last samples bound the
    // run (attaching the profiler runs a little JavaScript of its own first; the threaded
    // build's names carry their crate's hash, `engine[…]::`). The profile's clock runs a few
    // percent slower than the page's while it samples, so the phases are scaled to that span,
    // and only the 90% of each away from their border is kept.
    const engine = profile.samples.flatMap((id, i) => (/^<?engine(\[[0-9a-f]+\])?::/.test(nameOf(id)) ? [times[i]] : []));
    const [first, last] = [engine[0] ?? 0, engine.at(-1) ?? 0];
    const scale = (last - first) / (o.prefill_ms + o.decode_ms || 1);
    const window = { all: [-Infinity, Infinity],
      prefill: [first, first + 0.9 * o.prefill_ms * scale],
      decode: [last - 0.9 * o.decode_ms * scale, Infinity] }[PHASE];
    const self = new Map();
    let total = 0;
    profile.samples.forEach((id, i) => {
      if (times[i] < window[0] || times[i] >= window[1]) return;
      const name = nameOf(id);
      self.set(name, (self.get(name) ?? 0) + 1);
      total += 1;
    });
    const busy = [...self].filter(([name]) => !idle(name));
    if (busy.reduce((s, [, c]) => s + c, 0) < total / 20) continue; // a worker that did nothing
    console.log(`\n${url}: ${total} samples${PHASE === 'all' ? '' : ` (${PHASE})`}`);
    for (const [name, count] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${(100 * count / total).toFixed(1).padStart(5)}%  ${name.replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{16}\]/g, '')}`);
    }
  }
} finally {
  await browser.close();
}
