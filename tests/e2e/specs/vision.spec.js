// The Vision view end to end, on the CPU tier: a vertical stroke drawn with the mouse reads as
// "1" to the ViT, and a test digit gets the same predictions in the page as the native
// `glassbox eval-vision` recorded in www/models/vision.json (including a digit the model gets
// wrong, so the match is not just the label). The three retention forms agree in the page.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { profilePage } from '../chromium.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const report = JSON.parse(readFileSync(resolve(ROOT, 'www/models/vision.json'), 'utf8'));
const testSet = readFileSync(resolve(ROOT, 'www/models/mnist-test.bin'));
const label = (i) => testSet[i * 785];

test.describe.serial('the Vision view on the CPU tier', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    ({ profile, page, logs } = await profilePage({ webgpu: false, ready: true }));
    await page.getByRole('tab', { name: 'Vision' }).click();
  });

  test.afterAll(async () => {
    await profile?.close();
  });

  test('a vertical stroke is a 1 to the ViT', async () => {
    const pad = page.locator('canvas.drawing-pad');
    const box = await pad.boundingBox();
    await page.mouse.move(box.x + 140, box.y + 50);
    await page.mouse.down();
    for (let y = 50; y <= 230; y += 10) {
      await page.mouse.move(box.x + 140, box.y + y);
    }
    await page.mouse.up();
    const vit = page.locator('.prediction[data-model="ViT"]');
    await expect(vit, logs.join('\n')).toContainText('ViT says 1', { timeout: 60 * 1000 });
    await expect(page.getByRole('list', { name: 'ViT class probabilities' }).locator('li')).toHaveCount(10);
  });

  test('a test digit gets the native predictions, in every retention form', async () => {
    // A digit the ViT gets wrong, if there is one: the page must agree with the engine, not the label.
    const wrong = report.vit.predictions.findIndex((p, i) => p !== label(i));
    const index = wrong >= 0 ? wrong : 0;
    await page.getByRole('spinbutton', { name: 'Test digit' }).fill(String(index));
    await page.getByRole('spinbutton', { name: 'Test digit' }).press('Tab');
    await page.getByRole('button', { name: 'Classify test digit' }).click();
    await expect(page.getByRole('status').filter({ hasText: `Test digit ${index}` }))
      .toContainText(`label ${label(index)}`, { timeout: 60 * 1000 });
    await expect(page.locator('.prediction[data-model="ViT"]'))
      .toContainText(`ViT says ${report.vit.predictions[index]} `);
    await expect(page.locator('.prediction[data-model="ViR"]'))
      .toContainText(`ViR says ${report.vir.predictions[index]} `);

    const rows = page.getByRole('table').filter({ hasText: 'Floats held per layer' }).locator('tbody tr');
    await expect(rows).toHaveCount(3);
    for (let r = 0; r < 3; r++) {
      const cells = await rows.nth(r).locator('td').allTextContents();
      expect(Number(cells[2]), cells.join(' | ')).toBe(report.vir.predictions[index]);
      expect(Number(cells[3]), cells.join(' | ')).toBeLessThanOrEqual(1e-4);
    }
    // The parallel form holds T² floats per head, the recurrent one d² whatever T.
    const floats = await Promise.all([0, 1].map(async (r) => Number(await rows.nth(r).locator('td').nth(5).textContent())));
    expect(floats[0]).toBeGreaterThan(floats[1]);
  });
});
