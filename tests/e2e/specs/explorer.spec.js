// The attention explorer end to end, on the CPU tier: a chat reply is inspected, the keyboard
// changes the layer and head, the matrix redraws, and the exported JSON holds the same numbers
// as the native engine (the `glassbox attention` command) for that head. Free text and the Order
// view's set-based prompt open in the explorer too.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { ask, profilePage, useGreedy } from '../chromium.js';
import { maxDifference, nativeHead } from '../native.js';

async function exportJson(page) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('group', { name: 'Export the attention matrix' })
      .getByRole('button', { name: 'Export JSON' }).click(),
  ]);
  return JSON.parse(readFileSync(await download.path(), 'utf8'));
}

const matrixPixels = (page) => page.getByRole('img', { name: 'Attention matrix' })
  .evaluate((canvas) => canvas.toDataURL());

test.describe.serial('the attention explorer on the CPU tier', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    ({ profile, page, logs } = await profilePage({ webgpu: false, ready: true }));
  });

  test.afterAll(async () => {
    await profile?.close();
  });

  test('a reply opens in the explorer; the keyboard changes head and layer; the export matches the native engine', async () => {
    await useGreedy(page, 8);
    await ask(page, 'What is the capital of France?');
    await page.getByRole('button', { name: 'Inspect this reply' }).last().click();
    const description = page.locator('#attention-description');
    await expect(description, logs.join('\n')).toContainText('Layer 0 head 0:', { timeout: 2 * 60 * 1000 });
    await expect(page.getByRole('table', { name: 'Logit lens' }).locator('tbody tr')).toHaveCount(30);

    const matrix = page.getByRole('img', { name: 'Attention matrix' });
    const before = await matrixPixels(page);
    await matrix.focus();
    await page.keyboard.press('ArrowRight');
    await expect(description).toContainText('Layer 0 head 1:');
    await page.keyboard.press('PageDown');
    await page.keyboard.press('PageDown');
    await page.keyboard.press('ArrowUp');
    await expect(description).toContainText('Layer 2 head 1:');
    await expect(page.getByRole('spinbutton', { name: 'Layer' })).toHaveValue('2');
    await expect(page.getByRole('spinbutton', { name: 'Head' })).toHaveValue('1');
    expect(await matrixPixels(page)).not.toEqual(before);

    const exported = await exportJson(page);
    expect(exported.layer).toBe(2);
    expect(exported.head).toBe(1);
    expect(exported.tokens.join('')).toContain('Paris');
    const native = nativeHead(exported.ids, 2, 1);
    expect(native.ids).toEqual(exported.ids);
    expect(exported.probs.length).toBe(exported.ids.length);
    // The page's wasm engine (simd128) and the native one (AVX2/AVX-512): the same algorithm,
    // other summation orders and another libm; measured 3.4e-4 at most on this reply.
    expect(maxDifference(exported.probs, native.probs)).toBeLessThan(1e-3);

    const [png] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('group', { name: 'Export the attention matrix' })
        .getByRole('button', { name: 'Export PNG' }).click(),
    ]);
    const bytes = readFileSync(await png.path());
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
  });

  test('the model view opens the head that is clicked', async () => {
    const grid = page.getByRole('img', { name: /Model view/ });
    // Layer 4, head 3: 28 px of labels, then 36 px per thumbnail (16 px at twice the size + 4).
    await grid.click({ position: { x: 28 + 3 * 36 + 10, y: 28 + 4 * 36 + 10 } });
    await expect(page.locator('#attention-description')).toContainText('Layer 4 head 3:');
  });

  test('free text shows the logit lens forming the answer', async () => {
    await page.getByLabel('Text to inspect').fill('The capital of France is Paris. The capital of Italy is');
    await page.getByRole('button', { name: 'Inspect text' }).click();
    await expect(page.locator('.explorer-status')).toContainText('Free text: 12 tokens');
    const lens = page.getByRole('table', { name: 'Logit lens' }).locator('tbody tr');
    await expect(lens).toHaveCount(30);
    await expect(lens.last()).toContainText('" Rome"');
    await expect(page.locator('#rollout-description')).toContainText('Across all layers');
  });

  test('the Order view opens its set-based prompt in the explorer, block mask and all', async () => {
    await page.getByRole('tab', { name: 'Order' }).click();
    await page.getByRole('button', { name: 'Inspect attention' }).click();
    await expect(page.locator('.explorer-status')).toContainText('Order view, set-based');
    await expect(page.locator('#attention-description')).toContainText('Layer');
    const exported = await exportJson(page);
    // Every option restarts at the same position, so positions repeat...
    expect(new Set(exported.positions).size).toBeLessThan(exported.positions.length);
    // ...and no option sees another: some earlier tokens get exactly zero weight and no score.
    const hidden = exported.scores.flatMap((row, i) => row.slice(0, i).filter((s) => s === null));
    expect(hidden.length).toBeGreaterThan(0);
    exported.probs.forEach((row, i) => {
      const sum = row.reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - 1), `row ${i}`).toBeLessThan(1e-4);
      row.forEach((p, j) => { if (exported.scores[i][j] === null) expect(p).toBe(0); });
    });
  });
});
