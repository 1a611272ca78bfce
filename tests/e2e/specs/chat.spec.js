// The chat page end to end: the model streams in with progress, is cached (verified) for
// offline use, answers, stops, survives a cut download and a corrupted cache, and never lets a
// reply run as HTML.
//
// WebGPU here is SwiftShader (the CPU emulating a GPU): about half a token per second, so the
// WebGPU tests keep replies short and greedy; the storage tests, which do not depend on the
// tier, run on the faster CPU tier.
import { test, expect } from '@playwright/test';
import {
  ask, MODEL_PATH, profilePage, serverHook, useGreedy, waitReady,
} from '../chromium.js';

test.describe.serial('chat on WebGPU (SwiftShader), one browser profile', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    await serverHook('offline', { on: '0' });
    ({ profile, page, logs } = await profilePage({ webgpu: true }));
  });

  test.afterAll(async () => {
    await serverHook('offline', { on: '0' });
    await profile?.close();
  });

  test('first visit shows the load progress and reaches ready', async () => {
    await page.goto('/');
    const bar = page.getByRole('progressbar', { name: 'Model loading' });
    await expect(bar, logs.join('\n')).toBeVisible();
    await expect(page.locator('.load-text')).toContainText(/Downloading the model|Reading/);
    await waitReady(page, logs);
    await expect(page.getByRole('status')).toContainText(/^WebGPU \(/);
    await expect(page.getByRole('region', { name: 'Model cache' })).toContainText('(verified)');
  });

  test('asking the capital of France streams an answer containing Paris', async () => {
    await useGreedy(page, 12);
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill('What is the capital of France?');
    await page.getByRole('button', { name: 'Send' }).click();
    const reply = page.locator('.turn.assistant .text').last();
    // Streaming: text shows while the reply is still running.
    await expect(reply).not.toBeEmpty({ timeout: 5 * 60 * 1000 });
    await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
    const streaming = await reply.elementHandle();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    await expect(reply, logs.join('\n')).toContainText('Paris');
    // The text grew in the node that showed its first piece: the log adds words, it does not
    // replace its row (a screen reader would read the whole reply again at every piece).
    expect(await streaming.evaluate((node) => node.isConnected && node.textContent)).toContain('Paris');
    await expect(page.locator('.stats')).toContainText('tokens/s');
  });

  test('Escape stops a reply, which then stays as it is', async () => {
    await page.getByLabel('Max new tokens').fill('200');
    await page.getByLabel('Max new tokens').press('Tab');
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill('Write a long story about a dragon who learns to paint.');
    await box.press('Enter');
    const reply = page.locator('.turn.assistant .text').last();
    await expect(reply).not.toBeEmpty({ timeout: 5 * 60 * 1000 });
    await page.keyboard.press('Escape');
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 60 * 1000 });
    const stopped = await reply.textContent();
    await page.waitForTimeout(3000);
    expect(await reply.textContent()).toBe(stopped);
    await expect(page.locator('.stats')).toContainText('stopped');
    await useGreedy(page, 12);
  });

  test('a reply containing HTML renders as text', async () => {
    const dialogs = [];
    page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
    const hostile = '<img src=x onerror=alert(1)> and <script>alert(2)</script>';
    await page.evaluate((text) => {
      const saved = JSON.parse(localStorage.getItem('glassbox.chat.v1'));
      saved.turns = [
        { id: 1, role: 'User', text: 'Say something dangerous.' },
        { id: 2, role: 'Assistant', text },
      ];
      localStorage.setItem('glassbox.chat.v1', JSON.stringify(saved));
    }, hostile);
    await page.reload();
    const log = page.getByRole('log', { name: 'Conversation' });
    await expect(log).toContainText(hostile);
    await expect(log.locator('img')).toHaveCount(0);
    await expect(log.locator('script')).toHaveCount(0);
    await waitReady(page, logs);
    expect(dialogs).toEqual([]);
    await page.getByRole('button', { name: 'New chat' }).click();
    await expect(page.locator('.turn')).toHaveCount(0);
  });

  test('with the network gone, a reload still opens the app and answers', async () => {
    await page.evaluate(() => navigator.serviceWorker.ready);
    await serverHook('offline', { on: '1' });
    await page.reload();
    await waitReady(page, logs);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
    // Nothing came from the network: the server answered no request while offline.
    await serverHook('offline', { on: '0' });
  });
});

test.describe.serial('chat on the CPU tier (no WebGPU), one browser profile', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    ({ profile, page, logs } = await profilePage({ webgpu: false }));
  });

  test.afterAll(async () => {
    await profile?.close();
  });

  test('the CPU tier works when Chromium has no WebGPU', async () => {
    await page.goto('/');
    await waitReady(page, logs);
    await expect(page.getByRole('status')).toHaveText(/^CPU \(wasm\)/);
    await useGreedy(page, 12);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
    // Saved whole once it ended: while a reply streams it is saved at most once a second, and
    // this one streams for less than that.
    await expect.poll(() => page.evaluate(() => JSON.parse(localStorage.getItem('glassbox.chat.v1')).turns.at(-1)?.text))
      .toBe(reply);
  });

  test('a corrupted cache entry is detected and downloaded again', async () => {
    await expect(page.getByRole('region', { name: 'Model cache' })).toContainText('(verified)');
    // Flip bytes in the middle of the cached model, behind the engine's back.
    await page.evaluate(async (file) => {
      const dir = await navigator.storage.getDirectory();
      const handle = await dir.getFileHandle(file);
      const writable = await handle.createWritable({ keepExistingData: true });
      await writable.write({ type: 'write', position: 50_000_000, data: new Uint8Array(4096).fill(0xAB) });
      await writable.close();
    }, MODEL_PATH.split('/').pop());
    await serverHook('clear-log');
    await page.reload();
    await waitReady(page, logs);
    const requests = (await serverHook('log')).split('\n');
    // The whole model came again, from its first byte.
    expect(requests).toContain(`GET ${MODEL_PATH} range=-`);
    await expect(page.getByRole('region', { name: 'Model cache' })).toContainText('(verified)');
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply).toContain('Paris');
  });
});

test('a download cut halfway fails with a message; Retry resumes it with a Range request', async () => {
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await serverHook('clear-log');
    await serverHook('cut', { path: MODEL_PATH, after: String(40_000_000) });
    await page.goto('/');
    const alert = page.getByRole('alert');
    await expect(alert, logs.join('\n')).toContainText('stopped at', { timeout: 5 * 60 * 1000 });
    await expect(page.getByRole('region', { name: 'Model cache' })).toContainText('Partial download');
    await page.getByRole('button', { name: 'Retry' }).click();
    await waitReady(page, logs);
    const requests = (await serverHook('log')).split('\n');
    const resumed = requests
      .map((r) => r.match(new RegExp(`^GET ${MODEL_PATH} range=bytes=(\\d+)-$`)))
      .filter(Boolean);
    expect(resumed.length, requests.join('\n')).toBe(1);
    expect(Number(resumed[0][1])).toBeGreaterThan(0);
    await expect(page.getByRole('region', { name: 'Model cache' })).toContainText('(verified)');
  } finally {
    await profile.close();
  }
});
