// Teaching material end to end, on the CPU tier: a deep link restores the explorer's layer,
// head and token (and the heatmap's data equals the native engine's), a vision deep link
// restores its digit; "Copy link" gives a link that reopens the same state; the embed demo's two
// iframes both render; every export is a valid PNG, SVG or JSON file, and the run card names
// the model's sha256; the guided tour walks its six steps. With GLASSBOX_DOC_SCREENSHOTS=1 it
// also refreshes the screenshots in docs/img/ that docs/teaching.md shows.
import { test, expect } from '@playwright/test';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedProfilePage } from '../chromium.js';
import { ROOT, maxDifference, nativeHead, testDigitLabel, visionReport } from '../native.js';

const TEXT = 'The capital of France is Paris. The capital of Italy is';
const screenshots = process.env.GLASSBOX_DOC_SCREENSHOTS === '1';
const shot = async (target, name, options = {}) => {
  if (!screenshots) return;
  mkdirSync(join(ROOT, 'docs/img'), { recursive: true });
  await target.screenshot({ path: join(ROOT, 'docs/img', name), ...options });
};

async function download(page, group, button) {
  const [file] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('group', { name: group }).getByRole('button', { name: button }).click(),
  ]);
  return readFileSync(await file.path());
}

/** Parses SVG in the page; returns the root element's name, or the parser's complaint. */
const svgRoot = (page, text) => page.evaluate((t) => {
  const doc = new DOMParser().parseFromString(t, 'image/svg+xml');
  const error = doc.querySelector('parsererror');
  return error ? error.textContent : doc.documentElement.nodeName;
}, text);

test.describe.serial('deep links, embeds, exports and the tour', () => {
  const shared = sharedProfilePage(test, { webgpu: false });

  test('an explorer deep link restores layer, head and token, with the engine\'s numbers', async () => {
    const query = new URLSearchParams({ view: 'explore', text: TEXT, layer: '2', head: '1', token: '3' });
    await shared.page.goto(`/?${query}`);
    const description = shared.page.locator('#attention-description');
    await expect(description, shared.logs.join('\n')).toContainText('Layer 2 head 1:', { timeout: 5 * 60 * 1000 });
    await expect(shared.page.getByRole('spinbutton', { name: 'Layer' })).toHaveValue('2');
    await expect(shared.page.getByRole('spinbutton', { name: 'Head' })).toHaveValue('1');
    await expect(shared.page.getByRole('spinbutton', { name: 'Token', exact: true })).toHaveValue('3');
    await shot(shared.page.locator('section.explorer'), 'explorer.png');

    const data = JSON.parse(await download(shared.page, 'Export the attention matrix', 'Export JSON'));
    expect([data.layer, data.head]).toEqual([2, 1]);
    const native = nativeHead(data.ids, 2, 1);
    expect(maxDifference(data.probs, native.probs)).toBeLessThan(1e-3);

    const png = await download(shared.page, 'Export the attention matrix', 'Export PNG');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    const svg = (await download(shared.page, 'Export the attention matrix', 'Export SVG')).toString();
    expect(await svgRoot(shared.page, svg)).toBe('svg');
    expect(svg).toContain('Attention, layer 2 head 1');
    for (const group of ['Export the head view', 'Export the model view', 'Export the attention rollout']) {
      expect(await svgRoot(shared.page, (await download(shared.page, group, 'Export SVG')).toString()), group).toBe('svg');
      JSON.parse(await download(shared.page, group, 'Export JSON'));
    }
    const card = JSON.parse(await download(shared.page, 'Export the attention matrix', 'Run card'));
    const manifest = JSON.parse(readFileSync(join(ROOT, 'www/models/manifest.json'), 'utf8'));
    expect(card.models.sha256).toBe(manifest.chat.sha256);
    expect(card.input.Text).toBe(TEXT);
    expect(card.selection).toEqual({ layer: 2, head: 1, token: 3 });
    expect(card.engine_version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(card.tier).toBe('CPU (wasm)');
    expect(new URL(card.link).searchParams.get('layer')).toBe('2');
  });

  test('"Copy link" reopens the same state', async () => {
    await shared.page.getByRole('spinbutton', { name: 'Head' }).fill('4');
    await shared.page.getByRole('spinbutton', { name: 'Head' }).press('Tab');
    await shared.page.getByRole('button', { name: 'Copy link' }).click();
    const link = await shared.page.getByRole('textbox', { name: 'Link' }).inputValue();
    expect(new URL(link).searchParams.get('head')).toBe('4');
    expect(shared.page.url()).toBe(link); // the address bar follows the state too
    const other = await shared.profile.context.newPage();
    await other.goto(link);
    await expect(other.locator('#attention-description')).toContainText('Layer 2 head 4:', { timeout: 5 * 60 * 1000 });
    await other.close();
  });

  test('a vision deep link restores the digit; its figures export', async () => {
    const report = visionReport();
    await shared.page.goto('/?view=vision&digit=5&layer=1&head=2&map=rollout');
    await expect(shared.page.getByRole('status').filter({ hasText: 'Test digit 5' }), shared.logs.join('\n'))
      .toContainText(`label ${testDigitLabel(5)}`, { timeout: 5 * 60 * 1000 });
    await expect(shared.page.locator('.prediction[data-model="ViT"]')).toContainText(`ViT says ${report.vit.predictions[5]} `);
    await expect(shared.page.getByRole('spinbutton', { name: 'Layer' }).first()).toHaveValue('1');
    await expect(shared.page.locator('#vit-sentence')).toContainText('Rolled out over every layer');
    await expect(shared.page.getByRole('combobox', { name: 'Show' })).toHaveValue('rollout');
    await shot(shared.page.locator('section.vision'), 'vision.png');
    for (const group of ['Export the ViT attention', 'Export the ViR decay matrix', 'Export the ViR retention']) {
      const png = await download(shared.page, group, 'Export PNG');
      expect(png.subarray(1, 4).toString(), group).toBe('PNG');
      expect(await svgRoot(shared.page, (await download(shared.page, group, 'Export SVG')).toString()), group).toBe('svg');
    }
    const data = JSON.parse(await download(shared.page, 'Export the ViR decay matrix', 'Export JSON'));
    expect(data.decays.length).toBeGreaterThan(0);
    const card = JSON.parse(await download(shared.page, 'Export the ViT attention', 'Run card'));
    expect(card.models.map((m) => m[0])).toEqual(['models/vit-mnist.gguf', 'models/vir-mnist.gguf']);
  });

  test('the embed demo renders both iframes', async () => {
    await shared.page.goto('/embed-demo.html');
    const frames = shared.page.locator('iframe');
    await expect(frames).toHaveCount(2);
    const vision = shared.page.frameLocator('iframe').first();
    const explorer = shared.page.frameLocator('iframe').nth(1);
    await expect(vision.locator('.prediction[data-model="ViT"]')).toContainText('ViT says', { timeout: 5 * 60 * 1000 });
    await expect(explorer.locator('#attention-description')).toContainText('Layer 5 head 3:', { timeout: 5 * 60 * 1000 });
    // Only the figure: no tabs, no chat.
    await expect(vision.getByRole('tab')).toHaveCount(0);
    await expect(explorer.getByRole('textbox', { name: 'Message' })).toHaveCount(0);
    // Both canvases hold a picture, not a blank.
    for (const [frame, name] of [[vision, 'ViT attention over the digit'], [explorer, 'Attention matrix']]) {
      const colours = await frame.getByRole('img', { name }).evaluate((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4 * 97) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
        return seen.size;
      });
      expect(colours, name).toBeGreaterThan(5);
    }
    await shared.page.setViewportSize({ width: 1540, height: 1100 });
    await shot(shared.page, 'embed-demo.png', { fullPage: true });
    await shared.page.setViewportSize({ width: 1280, height: 720 });
  });

  test('the guided tour walks from tokens to ViT and ViR', async () => {
    await shared.page.goto('/');
    await shared.page.getByRole('button', { name: 'Guided tour' }).click();
    const tour = shared.page.getByRole('dialog', { name: 'Guided tour' });
    await expect(tour).toContainText('Step 1 of 6: Tokens');
    await expect(shared.page.locator('#attention-description')).toContainText('Layer 0 head 0:', { timeout: 5 * 60 * 1000 });
    for (const title of ['The attention matrix', 'Heads', 'Rollout', 'Order-invariant prompting', 'ViT and ViR']) {
      await tour.getByRole('button', { name: 'Next' }).click();
      await expect(tour).toContainText(title);
    }
    await expect(tour.getByRole('link', { name: 'Link to this step' })).toHaveAttribute('href', /view=vision/);
    await expect(shared.page.getByRole('status').filter({ hasText: 'Test digit 0' })).toBeVisible({ timeout: 60 * 1000 });
  });
});
