// The smoke test in Firefox and WebKit, over WebDriver (plain HTTP calls, no client library):
// the page loads the model, answers a question, and a reload loads it from the browser's cache
// (no model request reaches the server). Debian's browsers and drivers, never a downloaded one:
//   firefox: firefox-esr with geckodriver (`cargo install --locked geckodriver`);
//   webkit:  WebKitGTK's MiniBrowser (--automation, its file-system features on) with
//            WebKitWebDriver (webkit2gtk-driver), under xvfb-run.
//
// Usage: GLASSBOX_BASE_URL=http://127.0.0.1:PORT node webdriver-smoke.mjs firefox|webkit
// The server must run with test hooks (`cargo xtask test` starts it so). Prints one line per
// browser, and `N passed, N failed` at the end.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

const BASE_URL = process.env.GLASSBOX_BASE_URL;
const MODEL_PATH = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';

const BROWSERS = {
  firefox: {
    driver: (port) => [process.env.GECKODRIVER || 'geckodriver', ['--port', String(port)]],
    capabilities: () => ({
      browserName: 'firefox',
      'moz:firefoxOptions': {
        binary: '/usr/bin/firefox-esr',
        args: ['-headless'],
        // The CPU tier: Firefox's WebGPU on a software adapter would only be slower.
        prefs: { 'dom.webgpu.enabled': false },
      },
    }),
  },
  webkit: {
    driver: (port) => ['WebKitWebDriver', [`--port=${port}`]],
    capabilities: () => ({
      browserName: 'MiniBrowser',
      'webkitgtk:browserOptions': {
        binary: MINIBROWSER,
        // The Storage API and the Origin Private File System on: WebKit offers them and
        // refuses the files (here, in an automation session), so the page must fall back to the
        // Cache API by itself, and say so.
        args: ['--automation', '--features=+StorageAPI,+StorageAPIEstimate,+FileSystem,+FileSystemWritableStream'],
      },
    }),
  },
};

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A WebDriver command; the value, or an error with the driver's message. */
async function command(base, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok || json.value?.error) {
    throw new Error(`${method} ${path}: ${json.value?.error ?? response.status} ${json.value?.message ?? ''}`);
  }
  return json.value;
}

async function serverHook(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  return (await fetch(`${BASE_URL}/__test/${name}${query ? `?${query}` : ''}`)).text();
}

/** Waits until `check` returns a truthy value (or throws what `fail` returns). */
async function until(what, check, timeoutMs, fail = async () => null) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    const failure = await fail();
    if (failure) throw new Error(`${what}: ${failure}`);
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: timed out after ${timeoutMs / 1000} s`);
    await sleep(500);
  }
}

async function smoke(name) {
  const browser = BROWSERS[name];
  if (!browser) throw new Error(`unknown browser ${name}: firefox or webkit`);
  const port = await freePort();
  const [program, args] = browser.driver(port);
  const home = mkdtempSync(join(tmpdir(), `glassbox-${name}-`));
  const driver = spawn(program, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: home, TMPDIR: home },
  });
  const driverLog = [];
  driver.stdout.on('data', (d) => driverLog.push(String(d)));
  driver.stderr.on('data', (d) => driverLog.push(String(d)));
  const exited = new Promise((resolve) => driver.on('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  let session;
  const times = {};
  try {
    await until(`${program} starts`, async () => fetch(`${base}/status`).then((r) => r.ok, () => false), 30_000);
    session = (await command(base, 'POST', '/session', {
      capabilities: { alwaysMatch: browser.capabilities() },
    })).sessionId;
    const s = `/session/${session}`;
    await command(base, 'POST', `${s}/timeouts`, { script: 120_000, pageLoad: 120_000, implicit: 0 });
    const run = (script, ...args) => command(base, 'POST', `${s}/execute/sync`, { script, args });
    const text = (selector) => run('const e = document.querySelector(arguments[0]); return e ? e.textContent : null;', selector);
    const loadFailure = async () => text('.load-panel.failed');
    const waitReady = (what) => until(what, async () => /ready/.test((await text('[role="status"]')) ?? ''), 10 * 60_000, loadFailure);

    let started = Date.now();
    await serverHook('clear-log');
    await command(base, 'POST', `${s}/url`, { url: `${BASE_URL}/` });
    await waitReady('the first load');
    times.load = (Date.now() - started) / 1000;
    const tier = await text('[role="status"]');

    // Greedy and short, like the Chromium tests.
    await run(`
      const field = (label) => [...document.querySelectorAll('label')]
        .find((l) => l.querySelector('span')?.textContent === label).querySelector('input');
      for (const [label, value] of [['Temperature', '0'], ['Max new tokens', '12']]) {
        const input = field(label);
        input.value = value;
        input.dispatchEvent(new Event('change', { bubbles: true }));
      }`);
    started = Date.now();
    const box = await command(base, 'POST', `${s}/element`, { using: 'css selector', value: 'textarea[aria-label="Message"]' });
    await command(base, 'POST', `${s}/element/${box[ELEMENT]}/value`, { text: 'What is the capital of France?\uE007' });
    const reply = await until('the answer', async () => {
      const done = await run(`
        const stop = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Stop');
        const turns = document.querySelectorAll('.turn.assistant .text');
        return stop && stop.disabled && turns.length ? turns[turns.length - 1].textContent : null;`);
      return done;
    }, 5 * 60_000, async () => text('.notice[role="alert"]'));
    times.answer = (Date.now() - started) / 1000;
    if (!reply.includes('Paris')) throw new Error(`the answer has no "Paris": ${JSON.stringify(reply)}`);

    started = Date.now();
    await serverHook('clear-log');
    await command(base, 'POST', `${s}/refresh`, {});
    await waitReady('the reload');
    times.reload = (Date.now() - started) / 1000;
    const fetched = (await serverHook('log')).split('\n').filter((r) => r.startsWith(`GET ${MODEL_PATH}`));
    if (fetched.length) throw new Error(`the reload fetched the model again: ${fetched.join('; ')}`);
    const cache = await until('the cache panel', async () => {
      const said = await text('section.cache');
      return /\(verified\)/.test(said ?? '') ? said : null;
    }, 60_000);
    const opfs = await run("return typeof navigator.storage?.getDirectory === 'function' ? 'offered' : 'not offered';");
    console.log(`${name}: ${tier.trim()}; loaded in ${times.load.toFixed(0)} s, answered "${reply.trim()}" in ${times.answer.toFixed(0)} s, reloaded from the cache in ${times.reload.toFixed(0)} s; Origin Private File System: ${opfs}; ${cache.replace(/Remove cached model$/, '').trim()}`);
  } catch (error) {
    error.message += `\n--- ${program} log (last lines) ---\n${driverLog.join('').split('\n').slice(-30).join('\n')}`;
    throw error;
  } finally {
    if (session) await command(base, 'DELETE', `/session/${session}`).catch(() => {});
    driver.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    rmSync(home, { recursive: true, force: true });
  }
}

if (!BASE_URL) {
  console.error('GLASSBOX_BASE_URL is not set: run it with `cargo xtask test`');
  process.exit(2);
}
const names = process.argv.slice(2);
let passed = 0;
let failed = 0;
for (const name of names) {
  try {
    await smoke(name);
    passed += 1;
  } catch (error) {
    failed += 1;
    console.error(`${name}: FAILED: ${error.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
