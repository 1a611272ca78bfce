// The model's storage against a hostile or clumsy world, on the CPU tier: a server without
// Range support, a full quota, two tabs at once, and a store that refuses what it advertised.
// None of them may end in a dead end, and none may leave a 0-byte file behind.
import { test, expect } from '@playwright/test';
import {
  ask, BASE_URL, collectLogs, MODEL_PATH, profilePage, serverHook, useGreedy, waitReady,
} from '../chromium.js';

const MODEL_FILE = MODEL_PATH.split('/').pop();
const cacheRegion = (page) => page.getByRole('region', { name: 'Model cache' });

/** The files at the top of the origin's private file system, with their sizes. */
async function opfsFiles(page) {
  return page.evaluate(async () => {
    const dir = await navigator.storage.getDirectory();
    const files = {};
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind === 'file') files[name] = (await handle.getFile()).size;
    }
    return files;
  });
}

function expectNoEmptyFiles(files) {
  const empty = Object.entries(files).filter(([, size]) => size === 0).map(([name]) => name);
  expect(empty, JSON.stringify(files)).toEqual([]);
}

async function modelRequests() {
  return (await serverHook('log')).split('\n').filter((r) => r.startsWith(`GET ${MODEL_PATH}`));
}

test('a server without Range support: a cut download starts over by itself', async () => {
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await serverHook('no-range', { path: MODEL_PATH, on: '1' });
    await serverHook('clear-log');
    await serverHook('cut', { path: MODEL_PATH, after: String(40_000_000) });
    await page.goto('/');
    await expect(page.getByRole('alert'), logs.join('\n')).toContainText('stopped at', { timeout: 5 * 60 * 1000 });
    await expect(cacheRegion(page)).toContainText('Partial download');
    // The resume asks for the rest, gets the whole file, and takes it from its first byte.
    await page.getByRole('button', { name: 'Retry' }).click();
    await waitReady(page, logs);
    await expect(cacheRegion(page)).toContainText('(verified)');
    const requests = await modelRequests();
    expect(requests.filter((r) => /range=bytes=\d+-$/.test(r)).length, requests.join('\n')).toBe(1);
    expect(requests.length, requests.join('\n')).toBe(2);
    const files = await opfsFiles(page);
    expect(files[MODEL_FILE]).toBe(Number((await (await fetch(`${BASE_URL}${MODEL_PATH}`, { method: 'HEAD' })).headers.get('content-length'))));
    expectNoEmptyFiles(files);
  } finally {
    await serverHook('no-range', { path: MODEL_PATH, on: '0' });
    await profile.close();
  }
});

test('a full quota says what is needed and free, runs from memory on request, leaves no 0-byte file', async () => {
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    const cdp = await profile.context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(BASE_URL).origin, quotaSize: 4_000_000 });
    await serverHook('clear-log');
    await page.goto('/');
    const alert = page.getByRole('alert');
    await expect(alert, logs.join('\n')).toContainText('not enough storage to keep the model', { timeout: 5 * 60 * 1000 });
    await expect(alert).toContainText(/needs \d+\.\d MB more; \d+\.\d MB are free/);
    await expect(page.getByRole('button', { name: 'Retry' })).toBeVisible();
    await page.getByRole('button', { name: 'Run from memory (not kept)' }).click();
    await waitReady(page, logs);
    await expect(page.locator('.load-note')).toContainText('runs from memory');
    await useGreedy(page, 12);
    expect(await ask(page, 'What is the capital of France?'), logs.join('\n')).toContain('Paris');
    const files = await opfsFiles(page);
    expectNoEmptyFiles(files);
    expect(files[`${MODEL_FILE}.verified`]).toBeUndefined();
  } finally {
    await profile.close();
  }
});

test.describe.serial('two tabs of one profile', () => {
  let profile;
  let first;
  let firstLogs;
  let second;
  let secondLogs;

  test.beforeAll(async () => {
    ({ profile, page: first, logs: firstLogs } = await profilePage({ webgpu: false }));
  });

  test.afterAll(async () => {
    await profile?.close();
  });

  test('the second tab waits while the first downloads, then reads the verified copy', async () => {
    await serverHook('clear-log');
    await serverHook('slow', { path: MODEL_PATH, rate: String(8_000_000) });
    await first.goto('/');
    await expect(first.locator('.load-text')).toContainText('Downloading the model', { timeout: 60 * 1000 });
    second = await profile.context.newPage();
    secondLogs = collectLogs(second);
    await second.goto('/');
    await expect(second.locator('.load-text'), secondLogs.join('\n')).toContainText('Another Glassbox tab is loading the model');
    await waitReady(first, firstLogs);
    await waitReady(second, secondLogs);
    await expect(second.getByRole('alert')).toHaveCount(0);
    const requests = await modelRequests();
    expect(requests, requests.join('\n')).toEqual([`GET ${MODEL_PATH} range=-`]);
    await expect(cacheRegion(second)).toContainText('(verified)');
  });

  test('both tabs reloaded at once load from the cache', async () => {
    await serverHook('clear-log');
    await Promise.all([first.reload(), second.reload()]);
    await waitReady(first, firstLogs);
    await waitReady(second, secondLogs);
    await expect(first.getByRole('alert')).toHaveCount(0);
    await expect(second.getByRole('alert')).toHaveCount(0);
    expect(await modelRequests()).toEqual([]);
    await useGreedy(second, 12);
    expect(await ask(second, 'What is the capital of France?')).toContain('Paris');
  });
});

test('a file system that refuses its handles: the Cache API keeps the model, and the page says so', async () => {
  await serverHook('worker-patch', { name: 'refuse-sync' });
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await page.goto('/');
    await waitReady(page, logs);
    await expect(cacheRegion(page)).toContainText('(verified), in the Cache API');
    await expect(cacheRegion(page)).toContainText('refused a file handle (NotSupportedError');
    expectNoEmptyFiles(await opfsFiles(page));
    expect(Object.keys(await opfsFiles(page))).toEqual([]);
  } finally {
    await serverHook('worker-patch', { name: '' });
    await profile.close();
  }
});

test('without its hash thread, a stored model is hashed in the engine worker: verified, and damage found', async () => {
  await serverHook('worker-patch', { name: 'no-hash-thread' });
  const { profile, page, logs } = await profilePage({ webgpu: false, ready: true });
  try {
    await page.reload();
    await waitReady(page, logs);
    expect(logs.join('\n')).toContain('the stored model is hashed here instead');
    await expect(cacheRegion(page)).toContainText('(verified)');
    await page.evaluate(async (file) => {
      const dir = await navigator.storage.getDirectory();
      const writable = await (await dir.getFileHandle(file)).createWritable({ keepExistingData: true });
      await writable.write({ type: 'write', position: 30_000_000, data: new Uint8Array(4096).fill(0x5A) });
      await writable.close();
    }, MODEL_FILE);
    await serverHook('clear-log');
    await page.reload();
    await waitReady(page, logs);
    expect(await modelRequests()).toEqual([`GET ${MODEL_PATH} range=-`]);
    await useGreedy(page, 12);
    expect(await ask(page, 'What is the capital of France?')).toContain('Paris');
  } finally {
    await serverHook('worker-patch', { name: '' });
    await profile.close();
  }
});

test('a store whose writes fail mid-way: the load goes on from memory, nothing half-written stays', async () => {
  await serverHook('worker-patch', { name: 'failing-writes' });
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await page.goto('/');
    await waitReady(page, logs);
    await expect(page.locator('.load-note')).toContainText('refused to store the model (InvalidStateError');
    const files = await opfsFiles(page);
    expectNoEmptyFiles(files);
    expect(files[MODEL_FILE], JSON.stringify(files)).toBeUndefined();
    // The next load takes the next store.
    await expect(cacheRegion(page)).toContainText('Origin Private File System is not used');
  } finally {
    await serverHook('worker-patch', { name: '' });
    await profile.close();
  }
});
