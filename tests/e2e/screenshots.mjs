// Refreshes docs/img/views/: every view, light and dark, on a laptop (1366 × 900) and a phone
// (390 × 844, at 2×), as JPEG. Not a test: run it by hand against a served build,
//   cargo xtask serve --no-build --port 8097 &
//   cd tests/e2e && GLASSBOX_BASE_URL=http://127.0.0.1:8097 node screenshots.mjs
// It drives Debian's Chromium on the CPU tier, with one profile so the model downloads once.
import { chromium } from '@playwright/test';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './native.js';

const BASE_URL = process.env.GLASSBOX_BASE_URL;
if (!BASE_URL) throw new Error('set GLASSBOX_BASE_URL to a served build');
const OUT = join(ROOT, 'docs/img/views');
const TEXT = encodeURIComponent('The capital of France is Paris. The capital of Italy is');
const VIEWS = {
  chat: '/',
  order: '/?view=order',
  explore: `/?view=explore&text=${TEXT}&layer=5&head=3&token=12`,
  vision: '/?view=vision&digit=7',
  lab: '/?view=lab&ablate=0:4',
};
const DEVICES = {
  desktop: { viewport: { width: 1366, height: 900 }, deviceScaleFactor: 1 },
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};
/** What shows that a view has finished its work. */
const DONE = {
  chat: '.turn.assistant .text',
  order: 'section.order',
  explore: '#attention-description:has-text("Layer")',
  vision: '.prediction[data-model="ViR"]:has-text("says")',
  lab: 'text=/^Before: .* is most likely/',
};

/** Waits until a reply has come and the model is free again. */
const replied = (page) => page.waitForFunction(() => {
  const stop = [...document.querySelectorAll('button')].find((b) => b.textContent.trim() === 'Stop');
  return stop?.disabled && document.querySelector('.turn.assistant .text')?.textContent.length > 0;
}, null, { timeout: 5 * 60 * 1000 });

mkdirSync(OUT, { recursive: true });
for (const [device, options] of Object.entries(DEVICES)) {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-shots-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium', headless: true, baseURL: BASE_URL,
    args: ['--no-sandbox', '--disable-gpu'], ...options,
  });
  try {
    // Load once and leave a short conversation for the Chat view (kept in localStorage).
    const first = await context.newPage();
    await first.goto('/');
    await first.getByRole('button', { name: 'Got it' }).click();
    await first.getByRole('status').filter({ hasText: 'ready' }).waitFor({ timeout: 5 * 60 * 1000 });
    await first.getByLabel('Temperature').fill('0');
    await first.getByLabel('Max new tokens').fill('40');
    await first.getByLabel('Max new tokens').press('Tab');
    await first.getByRole('textbox', { name: 'Message' }).fill('What is the capital of France?');
    await first.getByRole('textbox', { name: 'Message' }).press('Enter');
    await replied(first);
    await first.close();
    for (const theme of ['light', 'dark']) {
      for (const [view, path] of Object.entries(VIEWS)) {
        const page = await context.newPage();
        await page.emulateMedia({ colorScheme: theme });
        await page.goto(path);
        await page.getByRole('status').filter({ hasText: 'ready' }).waitFor({ timeout: 5 * 60 * 1000 });
        await page.locator(DONE[view]).first().waitFor({ timeout: 5 * 60 * 1000 });
        await page.waitForTimeout(500);
        const name = `${view}-${theme}-${device}.jpg`;
        await page.screenshot({ path: join(OUT, name), type: 'jpeg', quality: 75 });
        console.log(name);
        await page.close();
      }
    }
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
