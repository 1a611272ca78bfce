// The page published under a subpath of a static host, as a course site would publish it
// (/course/glassbox/; the test server mounts dist/ there too): every asset, the engine worker,
// the service worker and the model resolve against the page's own location, and the page
// answers online and then, from its caches, offline.
import { test, expect } from '@playwright/test';
import { ask, profilePage, serverHook, useGreedy, waitReady } from '../chromium.js';

const SUBPATH = '/course/glassbox/';

test.describe.serial('the page under a subpath (CPU tier)', () => {
  let profile;
  let page;
  let logs;
  const missing = [];

  test.beforeAll(async () => {
    ({ profile, page, logs } = await profilePage({ webgpu: false }));
    page.on('response', (r) => {
      if (r.status() >= 400) missing.push(`${r.status()} ${r.url()}`);
    });
  });

  test.afterAll(async () => {
    await serverHook('offline', { on: '0' });
    await profile?.close();
  });

  test('loads styled from the subpath and answers', async () => {
    await page.goto(SUBPATH);
    await waitReady(page, logs);
    const sheets = await page.evaluate(() => [...document.styleSheets].map((s) => s.href));
    expect(sheets.map((h) => h && new URL(h).pathname)).toContain(`${SUBPATH}style.css`);
    const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
    expect(new URL(scope).pathname).toBe(SUBPATH);
    await useGreedy(page);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
    expect(missing).toEqual([]);
  });

  test('with the network gone, a reload from the subpath opens the app and answers', async () => {
    await serverHook('offline', { on: '1' });
    await page.reload();
    await waitReady(page, logs);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
  });
});
