// The Lab end to end, on the CPU tier: clicking a head ablates it and the "after"
// distribution moves away from "before" (by as much as the native engine says); a patching
// sweep runs with progress, draws its heatmap, and exports CSV and JSON with layers × tokens
// numbers; Stop ends a sweep between two runs; a token-count mismatch is refused in words; a
// deep link reopens the ablation; steering (a ready pair, or the user's own) changes a greedy
// chat reply, and α = 0 gives the plain reply back.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { ask, collectLogs, sharedProfilePage, useGreedy, waitReady } from '../chromium.js';

// Measured with the native engine on "The capital of France is":
//   glassbox logits --prompt-file p.txt --top 1 [--ablate 0:4]
// " Paris" has log-prob −0.2581 (77.3%) as it is and −1.5597 (21.0%) with layer 0 head 4
// zeroed, the largest drop of the model's 270 heads.
const PARIS_BEFORE = 77.3;
const PARIS_AFTER = 21.0;
// glassbox patch --clean-file … --corrupt-file … (the page's default prompts, 9 tokens each).
const NATIVE_SWEEP = { target: 7042, clean: -0.4212, corrupt: -8.8641 };

async function download(page, button, figure = 'patching heatmap') {
  const [file] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('group', { name: `Export the ${figure}` })
      .getByRole('button', { name: button }).click(),
  ]);
  return readFileSync(await file.path(), 'utf8');
}

/** Each row's token and probability (the "after" table also has a change column). */
const chances = (table) => table.locator('tbody tr td:nth-child(-n+2)').allTextContents();

/** "77.3%" → 77.3 */
const percent = (text) => Number.parseFloat(text.replace('%', ''));

test.describe.serial('the Lab on the CPU tier', () => {
  const shared = sharedProfilePage(test, { webgpu: false, ready: true });

  test('ablating a head by clicking moves the next-token distribution', async () => {
    const { page, logs } = shared;
    await page.getByRole('tab', { name: 'Lab' }).click();
    const before = page.getByRole('table', { name: 'Before (no ablation)' });
    const after = page.getByRole('table', { name: 'After (heads ablated)' });
    await expect(before.locator('tbody tr'), logs.join('\n')).toHaveCount(10, { timeout: 2 * 60 * 1000 });
    await expect(before.locator('tbody tr').first()).toContainText('" Paris"');
    const beforeRows = await chances(before);
    // No head ablated: after is before, to the digit (both runs in the same precision).
    await expect.poll(() => chances(after)).toEqual(beforeRows);
    const paris = percent(await before.locator('tbody tr').first().locator('td').nth(1).textContent());
    expect(Math.abs(paris - PARIS_BEFORE)).toBeLessThan(0.5);

    const head = page.getByRole('button', { name: 'Ablate layer 0 head 4' });
    await expect(head).toHaveAttribute('aria-pressed', 'false');
    await head.click();
    await expect(head).toHaveAttribute('aria-pressed', 'true');
    await expect.poll(() => chances(after), { message: logs.join('\n') }).not.toEqual(beforeRows);
    const parisAfter = after.locator('tbody tr', { hasText: '" Paris"' });
    const afterP = percent(await parisAfter.locator('td').nth(1).textContent());
    expect(Math.abs(afterP - PARIS_AFTER), `after: ${afterP}%`).toBeLessThan(0.5);
    await expect(parisAfter.locator('td').nth(2)).toContainText('−56');
    await expect(page.getByText('1 head ablated')).toBeVisible();
    // The deep link names the ablation.
    expect(page.url()).toContain('view=lab');
    expect(page.url()).toContain('ablate=0%3A4');

    // The keyboard: Space on a focused head toggles it too; Clear ablations gives all back.
    const other = page.getByRole('button', { name: 'Ablate layer 1 head 2' });
    await other.focus();
    await page.keyboard.press('Space');
    await expect(other).toHaveAttribute('aria-pressed', 'true');
    await expect(page.getByText('2 heads ablated')).toBeVisible();
    await page.getByRole('button', { name: 'Clear ablations' }).click();
    await expect(head).toHaveAttribute('aria-pressed', 'false');
    await expect.poll(() => chances(after)).toEqual(beforeRows);
    await expect(page.getByRole('img', { name: 'Attention under the ablation' })).toBeVisible();
    // Its export: one row per token of the prompt, each a probability distribution.
    const csv = (await download(page, 'Export CSV', 'ablated attention')).trim().split('\n');
    expect(csv[0].startsWith('token,')).toBe(true);
    const rows = csv.slice(1);
    expect(rows).toHaveLength(csv[0].split(',').length - 1);
    for (const row of rows) {
      const sum = row.split(',').slice(1).map(Number).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - 1)).toBeLessThan(1e-3);
    }
  });

  test('prompts of different token counts are refused in words', async () => {
    const { page } = shared;
    const corrupt = page.getByLabel('Corrupted prompt');
    await corrupt.fill('The Colosseum in Rome is in the city of');
    await page.getByRole('button', { name: 'Run patching sweep' }).click();
    await expect(page.getByRole('alert')).toContainText('patching needs the same number');
    await corrupt.fill('The Colosseum is in the city of');
  });

  test('Stop ends a sweep between two runs', async () => {
    const { page } = shared;
    await page.getByRole('button', { name: 'Run patching sweep' }).click();
    await expect(page.locator('.patching-status')).toContainText('Patched', { timeout: 60 * 1000 });
    await page.getByRole('button', { name: 'Stop sweep' }).click();
    await expect(page.getByRole('alert')).toHaveText('Stopped.', { timeout: 30 * 1000 });
    await expect(page.getByRole('button', { name: 'Run patching sweep' })).toBeEnabled();
  });

  test('a patching sweep draws its heatmap and exports layers × tokens numbers', async () => {
    const { page, logs } = shared;
    await page.getByRole('button', { name: 'Run patching sweep' }).click();
    await expect(page.getByLabel('Patching progress')).toBeVisible({ timeout: 60 * 1000 });
    const heatmap = page.getByRole('img', { name: 'Patching heatmap' });
    await expect(heatmap, logs.join('\n')).toBeVisible({ timeout: 8 * 60 * 1000 });
    const status = await page.locator('.patching-status').textContent();
    expect(status).toContain('270 patched runs in');
    console.log(`patching sweep in the page: ${status}`);
    await expect(page.locator('#patching-description li')).toHaveCount(5);
    expect(page.url()).toContain('clean=The%20Eiffel');

    const csv = (await download(page, 'Export CSV')).trim().split('\n');
    expect(csv).toHaveLength(31);
    expect(csv[0].split(',')).toHaveLength(10);
    expect(csv[0]).toContain('" Tower/um"');
    for (const line of csv.slice(1)) {
      const cells = line.split(',').map(Number);
      expect(cells).toHaveLength(10);
      cells.forEach((v) => expect(Number.isFinite(v)).toBe(true));
    }

    const sweep = JSON.parse(await download(page, 'Export JSON'));
    expect(sweep.effect).toHaveLength(30);
    sweep.effect.forEach((row) => expect(row).toHaveLength(9));
    expect(sweep.target_id).toBe(NATIVE_SWEEP.target);
    expect(Math.abs(sweep.clean_logprob - NATIVE_SWEEP.clean)).toBeLessThan(0.1);
    expect(Math.abs(sweep.corrupt_logprob - NATIVE_SWEEP.corrupt)).toBeLessThan(0.25);
    // Patching the subject's last token early brings the clean answer back (causal tracing's
    // early site); patching the last layer at the last token restores it entirely.
    const last = sweep.effect[29][8];
    expect(Math.abs(last - sweep.clean_logprob)).toBeLessThan(0.05);
    expect(Math.max(...sweep.effect.map((row) => row[2]))).toBeGreaterThan(sweep.corrupt_logprob + 4);
  });

  test('a deep link reopens the Lab with its prompt and ablated head', async () => {
    const { profile } = shared;
    const page = await profile.context.newPage();
    const logs = collectLogs(page);
    await page.goto('/?view=lab&prompt=The%20capital%20of%20France%20is&ablate=0%3A4&layer=0&head=4');
    await waitReady(page, logs);
    await expect(page.getByRole('tab', { name: 'Lab' })).toHaveAttribute('aria-selected', 'true');
    await expect(page.getByRole('button', { name: 'Ablate layer 0 head 4' })).toHaveAttribute('aria-pressed', 'true');
    await expect(page.getByRole('spinbutton', { name: 'Shown head' })).toHaveValue('4');
    const parisAfter = page.getByRole('table', { name: 'After (heads ablated)' })
      .locator('tbody tr', { hasText: '" Paris"' });
    await expect(parisAfter.locator('td').nth(2), logs.join('\n')).toContainText('−56', { timeout: 2 * 60 * 1000 });
    await expect(page.locator('#lab-attention-description')).toContainText('Layer 0 head 4 (ablated');
    await page.close();
  });

  test('steering changes a greedy chat reply; α = 0 gives the plain reply back', async () => {
    const { page, logs } = shared;
    await page.getByRole('tab', { name: 'Chat' }).click();
    await useGreedy(page, 12);
    const plain = await ask(page, 'Tell me about your weekend.');
    expect(plain.length, logs.join('\n')).toBeGreaterThan(0);
    await page.getByLabel('Steering pair').selectOption('happy-sad');
    await page.getByLabel('Steering strength α').fill('8');
    await expect(page.getByText('On: replies pushed towards happy')).toBeVisible();
    await page.getByRole('button', { name: 'Regenerate' }).click();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    const steered = await page.locator('.turn.assistant .text').last().textContent();
    expect(steered, logs.join('\n')).not.toEqual(plain);
    await page.getByLabel('Steering strength α').fill('0');
    await expect(page.getByText('Off: replies as the model gives them.')).toBeVisible();
    await page.getByRole('button', { name: 'Regenerate' }).click();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    expect(await page.locator('.turn.assistant .text').last().textContent()).toEqual(plain);
    console.log(`plain reply: ${JSON.stringify(plain)}; steered (happy-sad, α 8): ${JSON.stringify(steered)}`);
  });

  test('a steering pair of the user\'s own prompts changes the reply', async () => {
    const { page, logs } = shared;
    const plain = await page.locator('.turn.assistant .text').last().textContent();
    await page.getByLabel('Steering pair').selectOption('custom');
    await page.getByLabel('Steer towards (one prompt per line)').fill('I love it, it is wonderful!\nWhat a great day, I am so glad.');
    await page.getByLabel('Steer towards (one prompt per line)').press('Tab');
    await page.getByLabel('Steer away from (one prompt per line)').fill('I hate it, it is terrible.\nWhat an awful day, I am so upset.');
    await page.getByLabel('Steer away from (one prompt per line)').press('Tab');
    await page.getByLabel('Steering strength α').fill('8');
    await expect(page.getByText('On: replies pushed towards your first prompts')).toBeVisible();
    await page.getByRole('button', { name: 'Regenerate' }).click();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    const steered = await page.locator('.turn.assistant .text').last().textContent();
    expect(steered, logs.join('\n')).not.toEqual(plain);
    console.log(`steered by the user's own pair (α 8): ${JSON.stringify(steered)}`);
    await page.getByLabel('Steering strength α').fill('0');
  });
});
