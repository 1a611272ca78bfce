// The CPU tier on wasm threads. The test server sends COOP/COEP except under its course subpath,
// which stands for a static host that sends no such headers: there the page's service worker
// isolates it, after one reload on the first visit. Threads must not change a result: the
// greedy reply on all the browser's cores equals the one-thread build's (`threads=1`).
import { test, expect } from '@playwright/test';
import { ask, sharedProfilePage, useGreedy, waitReady } from '../chromium.js';

const SUBPATH = '/course/glassbox/';
const QUESTION = 'What is the capital of France?';

test.describe.serial('the CPU tier on threads', () => {
  const shared = sharedProfilePage(test, { webgpu: false });

  test('a host without COOP/COEP: one reload, then isolated, on threads; same reply as one thread', async () => {
    const { page, logs } = shared;
    const loads = []; // documents loaded (the address bar's own changes are not loads)
    page.on('load', () => loads.push(page.url()));
    await page.goto(SUBPATH);
    await waitReady(page, logs);
    expect(loads.length, loads.join('\n')).toBe(2); // the first load and the one reload
    expect(await page.evaluate(() => self.crossOriginIsolated)).toBe(true);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const threads = Math.min(cores, 8);
    const status = page.getByRole('status');
    await expect(status).toContainText(threads === 1 ? 'CPU (wasm) · 1 thread' : `CPU (wasm) · ${threads} threads`);
    // The service worker precaches the shell without the engine's two builds: the one in use
    // is kept (for offline visits), the other is not downloaded.
    const kept = () => page.evaluate(async () => {
      const cache = await caches.open('glassbox-shell-v1');
      return (await cache.keys()).map((r) => new URL(r.url).pathname.split('/').pop());
    });
    const threadedBuild = ['worker_mt_loader.js', 'worker_mt.js', 'worker_mt_bg.wasm', 'pool_worker.js'];
    await expect.poll(kept).toEqual(expect.arrayContaining(threadedBuild));
    expect(await kept()).not.toContain('worker_bg.wasm');
    // The engine worker and its pool threads.
    await useGreedy(page);
    const threaded = await ask(page, QUESTION);
    expect(threaded, logs.join('\n')).toContain('Paris');

    // A reload keeps the isolation (the service worker serves it) without reloading again.
    loads.length = 0;
    await page.goto(`${SUBPATH}?threads=1`);
    await waitReady(page, logs);
    expect(loads.length).toBe(1);
    await expect(status).toContainText('CPU (wasm) · 1 thread');
    await useGreedy(page);
    const single = await ask(page, QUESTION);
    expect(single).toBe(threaded);
  });
});
