// The Vision view end to end, on the CPU tier: a vertical stroke drawn with the mouse reads as
// "1" to the ViT, and a test digit gets the same predictions in the page as the native
// `glassbox eval-vision` recorded in www/models/vision.json (including a digit the model gets
// wrong, so the match is not just the label). The three retention forms agree in the page.
import { test, expect } from '@playwright/test';
import { sharedProfilePage } from '../chromium.js';
import { testDigitLabel as label, visionReport } from '../native.js';

const report = visionReport();

test.describe.serial('the Vision view on the CPU tier', () => {
  const shared = sharedProfilePage(test, { webgpu: false, ready: true });

  test('a vertical stroke is a 1 to the ViT', async () => {
    await shared.page.getByRole('tab', { name: 'Vision' }).click();
    const pad = shared.page.locator('canvas.drawing-pad');
    const box = await pad.boundingBox();
    await shared.page.mouse.move(box.x + 140, box.y + 50);
    await shared.page.mouse.down();
    for (let y = 50; y <= 230; y += 10) {
      await shared.page.mouse.move(box.x + 140, box.y + y);
    }
    await shared.page.mouse.up();
    const vit = shared.page.locator('.prediction[data-model="ViT"]');
    await expect(vit, shared.logs.join('\n')).toContainText('ViT says 1', { timeout: 60 * 1000 });
    await expect(shared.page.getByRole('list', { name: 'ViT class probabilities' }).locator('li')).toHaveCount(10);
  });

  test('a test digit gets the native predictions, in every retention form', async () => {
    // A digit the ViT gets wrong, if there is one: the page must agree with the engine, not the label.
    const wrong = report.vit.predictions.findIndex((p, i) => p !== label(i));
    const index = wrong >= 0 ? wrong : 0;
    await shared.page.getByRole('spinbutton', { name: 'Test digit' }).fill(String(index));
    await shared.page.getByRole('spinbutton', { name: 'Test digit' }).press('Tab');
    await shared.page.getByRole('button', { name: 'Classify test digit' }).click();
    await expect(shared.page.getByRole('status').filter({ hasText: `Test digit ${index}` }))
      .toContainText(`label ${label(index)}`, { timeout: 60 * 1000 });
    await expect(shared.page.locator('.prediction[data-model="ViT"]'))
      .toContainText(`ViT says ${report.vit.predictions[index]} `);
    await expect(shared.page.locator('.prediction[data-model="ViR"]'))
      .toContainText(`ViR says ${report.vir.predictions[index]} `);

    const rows = shared.page.getByRole('table').filter({ hasText: 'Floats held per layer' }).locator('tbody tr');
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
