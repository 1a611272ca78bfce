// Two builds of the page, measured at the same time: each runs the benchmark hook (one thread,
// so each has one core of a 2-core machine) on N prompt ids and DEC greedy steps, ROUNDS times,
// and the ratio of the second to the first is printed per round. On a machine whose speed
// drifts by ±30% from minute to minute, both builds see the same minute; run it both ways round
// (swap the URLs), since the two cores need not be equal. With --threads 2 (the threaded
// builds; serve them cross-origin isolated) the two run in turn instead, one right after the
// other, the first of each round alternating. Not a test.
//
//   cargo xtask serve --no-build --port 8097 &                  # this build (dist/)
//   (cd /tmp/old-dist && python3 -m http.server 8098) &        # another (with its models/)
//   node tests/e2e/pair-page.mjs http://127.0.0.1:8098 http://127.0.0.1:8097 [--tokens 420]
//     [--decode 0] [--rounds 8] [--threads 1] [--model SHA256]
//
// --model picks another model of the page's manifest by its SHA-256 (as the page's `?model=`
// deep link does), e.g. Gemma 3's from `dist/models/manifest.json`.
import { chromium } from '@playwright/test';
import { runBenchHook } from './page-waits.mjs';
import { numberOption as option } from './script-options.mjs';

const urls = process.argv.slice(2).filter((a) => a.startsWith('http'));
if (urls.length !== 2) {
  console.error('usage: node pair-page.mjs URL_A URL_B [--tokens N] [--decode N] [--rounds N] [--threads N]');
  process.exit(2);
}
const TOKENS = option('tokens', 420);
const DECODE = option('decode', 0);
const ROUNDS = option('rounds', 8);
const THREADS = option('threads', 1);
const modelArg = process.argv.indexOf('--model');
const MODEL = modelArg >= 0 ? `&model=${process.argv[modelArg + 1]}` : '';
const ids = Array.from({ length: TOKENS }, (_, i) => 100 + i * 7);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu'] });
try {
  const pages = [];
  for (const url of urls) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${url}/?bench&threads=${THREADS}${MODEL}`);
    await page.getByRole('status').filter({ hasText: /ready/ }).waitFor({ timeout: 5 * 60 * 1000 });
    pages.push(page);
  }
  const run = async (page) => {
    const o = await runBenchHook(page, ids, DECODE);
    return { prefill: o.prompt_tokens / (o.prefill_ms / 1000), decode: o.decode_tokens / (o.decode_ms / 1000) };
  };
  const ratios = { prefill: [], decode: [] };
  for (let r = 0; r < ROUNDS; r++) {
    let a, b;
    if (THREADS === 1) {
      [a, b] = await Promise.all(pages.map(run));
    } else if (r % 2 === 0) {
      a = await run(pages[0]);
      b = await run(pages[1]);
    } else {
      b = await run(pages[1]);
      a = await run(pages[0]);
    }
    const line = [];
    for (const what of ['prefill', 'decode']) {
      if (what === 'decode' && !DECODE) continue;
      ratios[what].push(b[what] / a[what]);
      line.push(`${what} ${a[what].toFixed(1)} / ${b[what].toFixed(1)} tok/s = ${(b[what] / a[what]).toFixed(3)}`);
    }
    console.log(`round ${r + 1}: ${line.join('; ')}`);
  }
  for (const what of ['prefill', 'decode']) {
    if (ratios[what].length) console.log(`${what}: B/A median ${median(ratios[what]).toFixed(3)} over ${ROUNDS} rounds`);
  }
} finally {
  await browser.close();
}
