// The Lab's figures from issue #17 and the chat's attention policy, on the CPU tier: the
// direct logit attribution's parts sum to the logit (as the native engine says) and export
// JSON, Enter on a listed head shows its attention, and the target is in the deep link; the
// outlier view names SmolLM2's dimension 507 and the 8-bit run drifts from f32; a chat under a
// small KV budget answers two messages and shows the tokens it evicted.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { ask, collectLogs, sharedProfilePage, useGreedy, waitReady } from '../chromium.js';

// glassbox attribute --prompt-file p.txt --json ("The capital of France is"): target 7042
// (" Paris"), logit 17.3713, parts' sum 17.3713; the largest head part is layer 23 head 4
// (+2.82).
const NATIVE_ATTRIBUTION = { target: 7042, logit: 17.3713 };

async function download(page, figure, button) {
  const [file] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('group', { name: `Export the ${figure}` })
      .getByRole('button', { name: button }).click(),
  ]);
  return readFileSync(await file.path(), 'utf8');
}

test.describe.serial('the Lab figures on the CPU tier', () => {
  const shared = sharedProfilePage(test, { webgpu: false, ready: true });

  test('the logit attribution sums to the logit, exports JSON and picks heads', async () => {
    const { page, logs } = shared;
    await page.getByRole('tab', { name: 'Lab' }).click();
    const sum = page.locator('.attribution-sum');
    await expect(sum, logs.join('\n')).toContainText('sum of parts', { timeout: 3 * 60 * 1000 });
    const text = await sum.textContent();
    console.log(`attribution in the page: ${text}`);
    const [, logit, total] = text.match(/logit (-?[\d.]+) = sum of parts (-?[\d.]+)/).map(Number);
    expect(Math.abs(logit - total)).toBeLessThan(0.05);
    expect(Math.abs(logit - NATIVE_ATTRIBUTION.logit)).toBeLessThan(0.1);
    expect(text).toContain('" Paris"');
    await expect(page.getByRole('img', { name: 'Logit attribution heatmap' })).toBeVisible();

    const attribution = JSON.parse(await download(page, 'logit attribution', 'Export JSON'));
    expect(attribution.target_id).toBe(NATIVE_ATTRIBUTION.target);
    expect(attribution.heads).toHaveLength(30);
    attribution.heads.forEach((row) => expect(row).toHaveLength(9));
    expect(attribution.mlps).toHaveLength(30);
    const parts = attribution.embedding + attribution.heads.flat().reduce((a, b) => a + b, 0)
      + attribution.mlps.reduce((a, b) => a + b, 0);
    expect(Math.abs(parts - attribution.logit)).toBeLessThan(0.05);

    // The keyboard path: Enter on the largest head's line shows its attention.
    const largest = page.locator('#attribution-description button').first();
    await expect(largest).toContainText('Layer 23 head 4');
    await largest.focus();
    await page.keyboard.press('Enter');
    await expect(page.getByRole('spinbutton', { name: 'Shown layer' })).toHaveValue('23');
    await expect(page.getByRole('spinbutton', { name: 'Shown head' })).toHaveValue('4');
    await expect(page.locator('#lab-attention-description')).toContainText('Layer 23 head 4', { timeout: 2 * 60 * 1000 });

    // Another target: the second most likely token; its id goes into the deep link.
    const picker = page.getByLabel('Target token');
    const second = await picker.locator('option').nth(1).getAttribute('value');
    await picker.selectOption(second);
    await expect(sum).not.toContainText('" Paris"', { timeout: 2 * 60 * 1000 });
    expect(page.url()).toContain(`dla_target=${second}`);
    const other = (await sum.textContent()).match(/logit (-?[\d.]+) = sum of parts (-?[\d.]+)/).map(Number);
    expect(Math.abs(other[1] - other[2])).toBeLessThan(0.05);
  });

  test('the outlier view names dimension 507 and the 8-bit run drifts', async () => {
    const { page, logs } = shared;
    await page.getByRole('button', { name: 'Measure' }).click();
    const dimensions = page.locator('.outlier-dimensions');
    await expect(dimensions, logs.join('\n')).toContainText('Dimension 507', { timeout: 3 * 60 * 1000 });
    console.log(`outliers in the page: ${await page.locator('.outliers-status').textContent()}`);
    console.log(`first outlier: ${await dimensions.locator('li').first().textContent()}`);
    await expect(page.getByRole('img', { name: 'Outlier features heatmap' })).toBeVisible();

    await page.getByLabel('8-bit per block (llama.cpp)').check();
    const drift = page.locator('.precision-drift');
    await expect(drift).toContainText('drift from f32');
    const q8 = Number((await drift.textContent()).match(/(-?[\d.]+)$/)[1]);
    expect(q8).toBeGreaterThan(0);
    expect(page.url()).toContain('precision=q8');
    await page.getByLabel('8-bit, outliers kept wide (LLM.int8)').check();
    const int8 = Number((await drift.textContent()).match(/(-?[\d.]+)$/)[1]);
    console.log(`log-prob drift from f32: 8-bit ${q8}, 8-bit with outliers wide ${int8}`);
    await expect(page.getByRole('table', { name: 'Precision run next tokens' }).locator('tbody tr')).toHaveCount(5);

    const report = JSON.parse(await download(page, 'outlier features', 'Export JSON'));
    expect(report.magnitudes).toHaveLength(30);
    report.magnitudes.forEach((row) => expect(row).toHaveLength(576));
    expect(report.outliers[0].dimension).toBe(507);
    expect(report.runs.map((r) => r.name)).toEqual(['f32', '8-bit', '8-bit, outliers wide']);
  });

  test('a chat under a KV budget of 48 answers two messages and evicts', async () => {
    const { profile } = shared;
    const page = await profile.context.newPage();
    const logs = collectLogs(page);
    await page.goto('/?view=chat&policy=budget%3A48');
    await waitReady(page, logs);
    await expect(page.getByLabel('Attention policy')).toHaveValue('budget');
    await expect(page.getByRole('spinbutton', { name: 'Budget' })).toHaveValue('48');
    await useGreedy(page, 16);
    const first = await ask(page, 'Name three colours of the rainbow.');
    expect(first.length, logs.join('\n')).toBeGreaterThan(0);
    const second = await ask(page, 'And three animals that live in the sea?');
    expect(second.length, logs.join('\n')).toBeGreaterThan(0);
    const line = await page.locator('.cache-line').textContent();
    console.log(`under budget:48: ${line}; replies ${JSON.stringify(first)}, ${JSON.stringify(second)}`);
    const [, held, total, evicted] = line.match(/cache holds (\d+) of (\d+) tokens \((\d+) evicted\)/).map(Number);
    expect(held).toBeLessThanOrEqual(48);
    expect(evicted).toBeGreaterThan(0);
    expect(held + evicted).toBe(total);
    expect(await page.locator('.cache-strip .evicted').count()).toBe(evicted);
    expect(page.url()).toContain('policy=budget%3A48');
    await page.close();
  });

  test('the ablation, attribution and outlier figures embed alone', async () => {
    const { profile } = shared;
    const page = await profile.context.newPage();
    const logs = collectLogs(page);
    await page.goto('/?view=lab&embed=1&figure=attribution&prompt=The%20capital%20of%20France%20is');
    await expect(page.locator('.attribution-sum'), logs.join('\n')).toContainText('sum of parts', { timeout: 3 * 60 * 1000 });
    await expect(page.getByRole('link', { name: 'Open in Glassbox' })).toHaveAttribute('href', /view=lab/);
    await page.goto('/?view=lab&embed=1&figure=outliers&precision=int8&prompt=The%20capital%20of%20France%20is');
    await expect(page.locator('.outlier-dimensions'), logs.join('\n')).toContainText('Dimension 507', { timeout: 3 * 60 * 1000 });
    await expect(page.getByLabel('8-bit, outliers kept wide (LLM.int8)')).toBeChecked();
    // The ablation's figure: the link's head ablated, the distributions before and after.
    await page.goto('/?view=lab&embed=1&figure=ablation&ablate=0:4&prompt=The%20capital%20of%20France%20is');
    await expect(page.getByRole('table', { name: 'After (heads ablated)' }).locator('tbody tr'), logs.join('\n'))
      .toHaveCount(10, { timeout: 3 * 60 * 1000 });
    await expect(page.getByRole('button', { name: 'Ablate layer 0 head 4' })).toHaveAttribute('aria-pressed', 'true');
    await expect(page.getByRole('img', { name: 'Attention under the ablation' })).toBeVisible();
    await expect(page.getByRole('tab')).toHaveCount(0);
    await page.close();
  });
});
