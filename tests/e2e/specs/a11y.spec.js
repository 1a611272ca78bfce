// Accessibility audit (WCAG 2.1 A and AA rules of axe-core) of every view (in the light and the
// dark scheme) and every embed figure, on a laptop's width and a phone's: no serious or critical
// violation, and no view wider than the window. A last test picks the dark theme by hand, and a reload keeps it. axe runs inside the page
// (the context bypasses the page's Content-Security-Policy for that one injected script).
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BASE_URL, collectLogs, launch, waitReady } from '../chromium.js';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const WIDTHS = [
  { width: 1366, height: 900 },
  { width: 390, height: 844 },
];
const VIEWS = ['Chat', 'Order', 'Explore', 'Vision', 'Lab'];
const TEXT = 'text=The%20capital%20of%20France%20is%20Paris.';
const FIGURES = [
  `view=explore&embed=1&figure=matrix&${TEXT}`,
  `view=explore&embed=1&figure=rollout&${TEXT}`,
  `view=explore&embed=1&figure=heads&${TEXT}`,
  'view=order&embed=1&figure=order',
  'view=vision&embed=1&figure=vit&digit=0',
  'view=vision&embed=1&figure=vir&digit=0',
  'view=lab&embed=1&figure=ablation&ablate=0:4',
  'view=lab&embed=1&figure=patching',
  'view=lab&embed=1&figure=attribution',
  'view=lab&embed=1&figure=outliers',
];

/** The serious and critical violations axe finds on the page as it is now, as readable lines. */
async function violations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(' ')}: ${n.failureSummary}`));
}

let browser;
test.beforeAll(async () => {
  browser = await launch({ webgpu: false });
});
test.afterAll(async () => {
  await browser?.close();
});

for (const viewport of WIDTHS) {
  for (const colorScheme of ['light', 'dark']) {
    test(`every view at ${viewport.width} px, ${colorScheme}, has no serious or critical violation`, async () => {
      const context = await browser.newContext({ baseURL: BASE_URL, viewport, colorScheme, bypassCSP: true });
      const page = await context.newPage();
      const logs = collectLogs(page);
      await page.goto('/');
      await waitReady(page, logs);
      const scheme = await page.evaluate(() => getComputedStyle(document.documentElement).colorScheme);
      expect(scheme).toContain(colorScheme);
      const found = {};
      for (const view of VIEWS) {
        await page.getByRole('tab', { name: view }).click();
        await expect(page.getByRole('tab', { name: view })).toHaveAttribute('aria-selected', 'true');
        found[view] = await violations(page);
        // Nothing wider than the screen: a phone never scrolls sideways.
        const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (wide > 0) found[view].push(`the page is ${wide} px wider than the window`);
      }
      await context.close();
      expect(found).toEqual(Object.fromEntries(VIEWS.map((v) => [v, []])));
    });
  }

  test(`every embed figure at ${viewport.width} px has no serious or critical violation`, async () => {
    const context = await browser.newContext({ baseURL: BASE_URL, viewport, bypassCSP: true });
    const page = await context.newPage();
    const logs = collectLogs(page);
    const found = {};
    for (const figure of FIGURES) {
      await page.goto(`/?${figure}`);
      await expect(page.locator('.embed-figure'), logs.join('\n')).not.toHaveClass(/waiting/, { timeout: 5 * 60 * 1000 });
      found[figure] = await violations(page);
    }
    await context.close();
    expect(found).toEqual(Object.fromEntries(FIGURES.map((f) => [f, []])));
  });
}

test('the Theme choice overrides the system\'s and survives a reload', async () => {
  const context = await browser.newContext({ baseURL: BASE_URL, colorScheme: 'light', bypassCSP: true });
  const page = await context.newPage();
  await page.goto('/');
  const scheme = () => page.evaluate(() => getComputedStyle(document.documentElement).colorScheme);
  expect(await scheme()).toContain('light');
  await page.getByLabel('Theme').selectOption('dark');
  expect(await scheme()).toBe('dark');
  await page.reload();
  await expect(page.getByLabel('Theme')).toHaveValue('dark');
  expect(await scheme()).toBe('dark');
  expect(await violations(page)).toEqual([]);
  await page.getByLabel('Theme').selectOption('');
  expect(await scheme()).toContain('light');
  await context.close();
});
