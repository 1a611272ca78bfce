// The designed interface: the first visit's welcome (and the data saver's wait for Start),
// figures drawn at the screen's resolution in the theme's colours with a colour legend each,
// pointers that find their cell on a canvas a phone's column has shrunk, and a walk through
// every view with the keyboard alone.
import { test, expect } from '@playwright/test';
import { BASE_URL, MODEL_PATH, collectLogs, launch, waitReady } from '../chromium.js';

const TEXT = 'The capital of France is Paris. The capital of Italy is';
const LABEL_MARGIN = 96;

let browser;
test.beforeAll(async () => {
  browser = await launch({ webgpu: false });
});
test.afterAll(async () => {
  await browser?.close();
});

test('the first visit says what it downloads; with the data saver on, nothing is fetched before Start', async () => {
  const context = await browser.newContext({ baseURL: BASE_URL });
  await context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'connection', {
      configurable: true,
      get: () => ({ saveData: true, effectiveType: '4g' }),
    });
  });
  const page = await context.newPage();
  const logs = collectLogs(page);
  const modelRequests = [];
  page.on('request', (r) => { if (r.url().includes(MODEL_PATH)) modelRequests.push(r.url()); });
  context.on('request', (r) => { if (r.url().includes(MODEL_PATH)) modelRequests.push(r.url()); });
  await page.goto('/');
  const welcome = page.getByRole('region', { name: 'Welcome to Glassbox' });
  await expect(welcome).toContainText('SmolLM2 135M Instruct (Q4_1), 98 MB');
  await expect(welcome).toContainText('nothing is downloaded until you press Start');
  await expect(page.getByRole('status')).toContainText('waiting for Start');
  // The engine is up (its tier is known) and still nothing was fetched.
  await expect(page.getByRole('status')).not.toContainText('Starting the engine');
  await page.waitForTimeout(1500);
  expect(modelRequests, logs.join('\n')).toEqual([]);
  await welcome.getByRole('button', { name: 'Start' }).click();
  await expect(welcome).toHaveCount(0);
  await waitReady(page, logs);
  expect(modelRequests.length).toBeGreaterThan(0);
  // The next visit neither asks again nor waits: the model is stored.
  await page.reload();
  await waitReady(page, logs);
  await expect(page.getByRole('region', { name: 'Welcome to Glassbox' })).toHaveCount(0);
  await context.close();
});

test('without the data saver the welcome only informs: the model loads at once, "Got it" closes it', async () => {
  const context = await browser.newContext({ baseURL: BASE_URL });
  const page = await context.newPage();
  await page.goto('/');
  const welcome = page.getByRole('region', { name: 'Welcome to Glassbox' });
  await expect(welcome).toContainText('keeps it in this browser');
  await expect(page.getByRole('progressbar', { name: 'Model loading' })).toBeVisible();
  await welcome.getByRole('button', { name: 'Got it' }).click();
  await expect(welcome).toHaveCount(0);
  await page.reload();
  await expect(page.getByRole('tab', { name: 'Chat' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Welcome to Glassbox' })).toHaveCount(0);
  await context.close();
});

test('figures draw at the device pixel ratio on the theme\'s ground, with legends; a click on a shrunk matrix finds its cell', async () => {
  const context = await browser.newContext({
    baseURL: BASE_URL, viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, colorScheme: 'dark',
  });
  const page = await context.newPage();
  const logs = collectLogs(page);
  await page.goto(`/?view=explore&text=${encodeURIComponent(TEXT)}`);
  await expect(page.locator('#attention-description'), logs.join('\n')).toContainText('Layer 0 head 0:', { timeout: 5 * 60 * 1000 });
  const matrix = page.getByRole('img', { name: 'Attention matrix' });
  const drawn = () => matrix.evaluate((c) => {
    const corner = c.getContext('2d').getImageData(1, 1, 1, 1).data;
    return {
      backing: c.width,
      css: parseFloat(c.style.width),
      shown: c.getBoundingClientRect().width,
      corner: [corner[0], corner[1], corner[2]],
    };
  });
  const dark = await drawn();
  expect(dark.backing).toBe(2 * dark.css);
  // The phone's column is narrower than the matrix: the page shrinks it, nothing scrolls.
  expect(dark.shown).toBeLessThan(dark.css);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  expect(dark.corner).toEqual([22, 24, 28]);

  // Every figure in the view has its colour legend in its frame.
  const unlabelled = await page.locator('section.explorer canvas').evaluateAll((canvases) => canvases
    .filter((c) => !c.closest('.frame')?.querySelector('[role="img"].legend'))
    .map((c) => c.getAttribute('aria-label')));
  expect(unlabelled).toEqual([]);
  await expect(page.getByRole('img', { name: /^Colour scale: attention weight/ }).first()).toBeVisible();

  // A click on row 3's cells, at the shrunk canvas's own scale, selects token 3.
  const box = await matrix.boundingBox();
  const tokens = await page.getByRole('spinbutton', { name: 'Token', exact: true }).getAttribute('max');
  const cell = Math.min(24, Math.max(1, Math.floor(640 / (Number(tokens) + 1))));
  const k = box.width / dark.css;
  await matrix.click({ position: { x: (LABEL_MARGIN + cell * 1.5) * k, y: (LABEL_MARGIN + cell * 3.5) * k } });
  await expect(page.getByRole('spinbutton', { name: 'Token', exact: true })).toHaveValue('3');

  // The Theme choice redraws the figures on the light ground, without running anything again.
  await page.getByLabel('Theme').selectOption('light');
  await expect.poll(async () => (await drawn()).corner).toEqual([255, 255, 255]);
  await context.close();
});

/** What has the keyboard focus: its role or tag, and its accessible name as far as the DOM says. */
const focused = (page) => page.evaluate(() => {
  const e = document.activeElement;
  if (!e || e === document.body) return { role: '', name: '', visible: false };
  const labelled = e.labels?.[0]?.textContent ?? '';
  return {
    role: e.getAttribute('role') ?? e.tagName.toLowerCase(),
    name: (e.getAttribute('aria-label') ?? (labelled || e.textContent) ?? '').trim(),
    visible: e.matches(':focus-visible'),
  };
});

/** Presses Tab (or Shift+Tab) until the focus is on what `wanted` accepts; every stop shows its focus. */
async function tabTo(page, wanted, { back = false, limit = 400 } = {}) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const f = await focused(page);
    if (f.role) expect(f.visible, `focus on ${f.role} "${f.name}" is not visible`).toBe(true);
    if (wanted(f)) return f;
  }
  throw new Error('never reached with the keyboard');
}

const named = (role, name) => (f) => f.role === role && (name instanceof RegExp ? name.test(f.name) : f.name === name);

/** From anywhere in a view, back to the tabs with Shift+Tab, and into the view `name`. */
async function openTab(page, name) {
  await tabTo(page, named('tab', name), { back: true });
  await page.keyboard.press('Enter');
  await expect(page.getByRole('tab', { name })).toHaveAttribute('aria-selected', 'true');
}

test('every view can be walked and used with the keyboard alone', async () => {
  const context = await browser.newContext({ baseURL: BASE_URL, viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const logs = collectLogs(page);
  await page.goto('/');
  await waitReady(page, logs);

  // Chat: a short greedy reply, asked from the keyboard.
  await tabTo(page, named('input', 'Temperature'));
  await page.keyboard.press('Control+A');
  await page.keyboard.type('0');
  await tabTo(page, named('input', 'Max new tokens'));
  await page.keyboard.press('Control+A');
  await page.keyboard.type('4');
  await tabTo(page, named('textarea', 'Message'), { back: true });
  await page.keyboard.type('Hello!');
  await page.keyboard.press('Enter');
  await expect(page.locator('.turn.assistant .text').last()).not.toBeEmpty({ timeout: 2 * 60 * 1000 });
  await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 2 * 60 * 1000 });

  // Order: the options can be reached and edited.
  await openTab(page, 'Order');
  await tabTo(page, (f) => f.role === 'input' && /option/i.test(f.name));
  await page.keyboard.type(' (edited)');

  // Explore: inspect, then move through the matrix with the arrow keys and PageDown.
  await openTab(page, 'Explore');
  await tabTo(page, named('button', 'Inspect text'));
  await page.keyboard.press('Enter');
  await expect(page.locator('#attention-description')).toContainText('Layer 0 head 0:', { timeout: 2 * 60 * 1000 });
  await tabTo(page, named('img', 'Attention matrix'));
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('PageDown');
  await expect(page.getByRole('spinbutton', { name: 'Token', exact: true })).toHaveValue('1');
  await expect(page.locator('#attention-description')).toContainText('Layer 1 head 0:');

  // Vision: a test digit by number.
  await openTab(page, 'Vision');
  await tabTo(page, named('input', 'Test digit'));
  await page.keyboard.press('Control+A');
  await page.keyboard.type('3');
  await tabTo(page, named('button', 'Classify test digit'));
  await page.keyboard.press('Enter');
  await expect(page.locator('.prediction[data-model="ViT"]')).toContainText('ViT says', { timeout: 5 * 60 * 1000 });

  // Lab: ablate a head with Space; the prompt runs again.
  await openTab(page, 'Lab');
  await tabTo(page, named('button', 'Ablate layer 0 head 0'));
  await page.keyboard.press('Space');
  await expect(page.getByRole('button', { name: 'Ablate layer 0 head 0' })).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByText(/^Before: .* is most likely/)).toBeVisible({ timeout: 2 * 60 * 1000 });
  await context.close();
});
