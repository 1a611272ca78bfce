// Where a browser has no Origin Private File System, the engine worker keeps the model in the
// Cache API instead, under the same rules: stored as it arrives, resumed with a Range request
// after a cut, counted as cached only once its sha256 matched, and a damaged copy replaced.
//
// The test server takes OPFS away from the worker (its `no-opfs` hook); the page itself keeps
// it, so the test can check that the model did not land there.
import { test, expect } from '@playwright/test';
import {
  ask, MODEL_PATH, profilePage, serverHook, useGreedy, waitReady,
} from '../chromium.js';

const MODEL_FILE = MODEL_PATH.split('/').pop();

test.describe.serial('the Cache API holds the model where OPFS is missing', () => {
  let profile;
  let page;
  let logs;

  test.beforeAll(async () => {
    await serverHook('no-opfs', { on: '1' });
    ({ profile, page, logs } = await profilePage({ webgpu: false }));
  });

  test.afterAll(async () => {
    await serverHook('no-opfs', { on: '0' });
    await profile?.close();
  });

  const cacheRegion = () => page.getByRole('region', { name: 'Model cache' });

  test('a cut download resumes from the parts already stored', async () => {
    await serverHook('clear-log');
    await serverHook('cut', { path: MODEL_PATH, after: String(40_000_000) });
    await page.goto('/');
    await expect(page.getByRole('alert'), logs.join('\n')).toContainText('stopped at', { timeout: 5 * 60 * 1000 });
    await expect(cacheRegion()).toContainText('Partial download');
    await expect(cacheRegion()).toContainText('in the Cache API');
    await page.getByRole('button', { name: 'Retry' }).click();
    await waitReady(page, logs);

    const requests = (await serverHook('log')).split('\n');
    const resumed = requests
      .map((r) => r.match(new RegExp(`^GET ${MODEL_PATH} range=bytes=(\\d+)-$`)))
      .filter(Boolean);
    expect(resumed.length, requests.join('\n')).toBe(1);
    expect(Number(resumed[0][1])).toBeGreaterThan(0);
    await expect(cacheRegion()).toContainText('(verified), in the Cache API');

    // The bytes are in the worker's Cache API cache, not in OPFS.
    const stored = await page.evaluate(async (file) => {
      const cache = await caches.open('glassbox-models-v1');
      const keys = (await cache.keys()).map((r) => new URL(r.url).pathname);
      const dir = await navigator.storage.getDirectory();
      const inOpfs = await dir.getFileHandle(file).then(() => true, () => false);
      return { parts: keys.filter((k) => k.includes(`/glassbox-store/${file}/`)).length, inOpfs };
    }, MODEL_FILE);
    expect(stored.parts).toBeGreaterThan(1);
    expect(stored.inOpfs).toBe(false);
  });

  test('a reload loads the verified model from the Cache API and answers', async () => {
    await serverHook('clear-log');
    await page.reload();
    await waitReady(page, logs);
    const requests = (await serverHook('log')).split('\n');
    expect(requests.filter((r) => r.startsWith(`GET ${MODEL_PATH}`)), requests.join('\n')).toEqual([]);
    await useGreedy(page, 12);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
  });

  test('a damaged part is detected and the model downloaded again', async () => {
    // Overwrite one part with bytes of the same length, behind the engine's back.
    const damaged = await page.evaluate(async (file) => {
      const cache = await caches.open('glassbox-models-v1');
      const keys = (await cache.keys()).filter((r) => r.url.includes(`/glassbox-store/${file}/`));
      const key = keys.find((r) => /\/[1-9]\d*\+\d+$/.test(r.url));
      const length = Number(key.url.split('+').pop());
      await cache.put(key, new Response(new Uint8Array(length).fill(0xab)));
      return key.url;
    }, MODEL_FILE);
    expect(damaged).toContain('glassbox-store');
    await serverHook('clear-log');
    await page.reload();
    await waitReady(page, logs);
    const requests = (await serverHook('log')).split('\n');
    expect(requests, requests.join('\n')).toContain(`GET ${MODEL_PATH} range=-`);
    await expect(cacheRegion()).toContainText('(verified), in the Cache API');
  });
});
