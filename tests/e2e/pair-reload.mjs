// Two builds of the page, reloaded in turn: from a reload (model in the browser's storage) to
// "ready", and to the first token of a short chat turn, ROUNDS times each, alternating which
// goes first; prints every time and the medians. On a machine whose speed drifts from minute to
// minute, alternating gives both builds the same minutes. Each build has its own browser
// profile (its own storage), opened and loaded once before the rounds. Every wait runs in the
// page (page-waits.mjs). Not a test.
//
//   cargo xtask serve --no-build --port 8097 &                  # this build (dist/)
//   (cd /tmp/old-dist && python3 -m http.server 8098) &        # another (with its models/)
//   node tests/e2e/pair-reload.mjs http://127.0.0.1:8098 http://127.0.0.1:8097 [--rounds 12]
//     [--pause MS] [--model SHA256]
//
// --pause waits that long between typing the turn and sending it (a person typing); the time
// to the first token is then also printed from Enter. --model picks another model of the
// page's manifest by its SHA-256 (the page's `?model=` deep link).
import { chromium } from '@playwright/test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { epochNow, readyAt, recordReady, sendTurn, whenInPage } from './page-waits.mjs';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const urls = process.argv.slice(2).filter((a) => a.startsWith('http'));
if (urls.length !== 2) {
  console.error('usage: node pair-reload.mjs URL_A URL_B [--rounds N] [--pause MS] [--model SHA256]');
  process.exit(2);
}
const ROUNDS = Number(option('rounds', 12));
const PAUSE_MS = Number(option('pause', 0));
const MODEL = option('model', null);
const PATH = MODEL ? `/?model=${MODEL}` : '/';
const TURN = 'In two sentences, why is the sky blue on a clear day and red at sunset?';
const TIMEOUT_MS = 10 * 60 * 1000;

/** A fresh profile on `base`, the model loaded once (downloaded and stored), greedy, 8 tokens. */
async function open(base) {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-pair-reload-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
    baseURL: base,
  });
  await context.addInitScript(recordReady);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(PATH);
  await readyAt(page, TIMEOUT_MS);
  for (const [label, value] of [['Max new tokens', 8], ['Temperature', 0]]) {
    await page.getByLabel(label).fill(String(value));
    await page.getByLabel(label).press('Tab');
  }
  return { base, context, page, dir };
}

/** One reload: milliseconds to ready, to the first token, and from Enter to the first token. */
async function reload({ page }) {
  const start = epochNow();
  await page.reload();
  const readyMs = (await readyAt(page, TIMEOUT_MS)) - start;
  const { sent, firstToken } = await sendTurn(page, TURN, PAUSE_MS, TIMEOUT_MS);
  await whenInPage(page, 'replyEnded', 0, TIMEOUT_MS);
  await page.getByRole('button', { name: 'New chat' }).click();
  return { readyMs, firstMs: firstToken - start, fromSendMs: firstToken - sent };
}

const builds = [await open(urls[0]), await open(urls[1])];
try {
  for (const build of builds) await reload(build); // one unmeasured reload each
  const times = [[], []];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [1, 0] : [0, 1];
    for (const b of order) times[b].push(await reload(builds[b]));
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const list = (xs) => xs.map((x) => x.toFixed(0)).join(' ');
  for (const [b, build] of builds.entries()) {
    const ms = (key) => times[b].map((t) => t[key]);
    console.log(`${build.base}\n  ready ${list(ms('readyMs'))}\n  first token ${list(ms('firstMs'))}` +
      (PAUSE_MS > 0 ? `\n  from Enter ${list(ms('fromSendMs'))}` : '') +
      `\n  medians: ready ${median(ms('readyMs')).toFixed(0)} ms, first token ` +
      `${median(ms('firstMs')).toFixed(0)} ms, from Enter ${median(ms('fromSendMs')).toFixed(0)} ms`);
  }
} finally {
  for (const build of builds) {
    await build.context.close();
    rmSync(build.dir, { recursive: true, force: true });
  }
}
