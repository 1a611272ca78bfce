// The Order view: Set-Based Prompting on the page. On the CPU tier (the faster one here).
import { test, expect } from '@playwright/test';
import { profilePage } from '../chromium.js';

test.describe.serial('the Order view (Set-Based Prompting), CPU tier', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    ({ profile, page, logs } = await profilePage({ webgpu: false, ready: true }));
    await page.getByRole('tab', { name: 'Order' }).click();
  });

  test.afterAll(async () => {
    await profile?.close();
  });

  async function tryAllOrders() {
    await page.getByRole('button', { name: 'Try all orders' }).click();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
    const progress = page.getByRole('progressbar', { name: 'Orderings answered' });
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    await expect(page.getByRole('alert')).toHaveCount(0);
    await expect(progress).toHaveAttribute('value', '6');
    const rows = page.getByRole('table', { name: 'Answers by order' }).locator('tbody tr');
    await expect(rows).toHaveCount(6);
    const orders = await rows.locator('td:first-child').allTextContents();
    const answers = await rows.locator('td:last-child').allTextContents();
    return { orders, answers };
  }

  test('set-based prompting gives one answer under all six orders of three options', async () => {
    await page.getByLabel('Question').fill('Which of these animals is the largest?');
    await page.getByLabel('Option A', { exact: true }).fill('A mouse');
    await page.getByLabel('Option B', { exact: true }).fill('An elephant');
    await page.getByLabel('Option C', { exact: true }).fill('A cat');
    await expect(page.getByRole('checkbox', { name: 'Set-Based Prompting' })).toBeChecked();
    const { orders, answers } = await tryAllOrders();
    expect(new Set(orders).size, orders.join(',')).toBe(6);
    expect(new Set(answers).size, `${answers.join(' | ')}\n${logs.join('\n')}`).toBe(1);
    expect(answers[0].length).toBeGreaterThan(0);
    await expect(page.getByText('The same answer under all 6 orderings (set-based prompting).')).toBeVisible();

    // Every option starts at the same position id: the first token after "Options:".
    const tokens = page.getByRole('list', { name: 'Token positions' }).locator('li');
    const starts = await tokens.evaluateAll((items) => {
      const firsts = {};
      for (const li of items) {
        const member = [...li.classList].find((c) => c.startsWith('member-'));
        if (member && !(member in firsts)) firsts[member] = li.dataset.position;
      }
      return Object.values(firsts);
    });
    expect(starts.length).toBe(3);
    expect(new Set(starts).size).toBe(1);
    await expect(page.getByRole('img', { name: 'Attention mask' })).toBeVisible();
  });

  test('plain prompting runs the same orders with consecutive positions', async () => {
    await page.getByRole('checkbox', { name: 'Set-Based Prompting' }).uncheck();
    const { orders } = await tryAllOrders();
    expect(new Set(orders).size).toBe(6);
    const positions = await page
      .getByRole('list', { name: 'Token positions' })
      .locator('li')
      .evaluateAll((items) => items.map((li) => Number(li.dataset.position)));
    expect(positions).toEqual(positions.map((_, i) => i));
    await expect(page.getByText(/\(plain prompting\)\.$/)).toBeVisible();
  });
});
