// How the e2e tests start Debian's Chromium: with or without a WebGPU adapter (SwiftShader on
// the CPU here), always without network side channels; and the page actions they share.
import { chromium, expect } from '@playwright/test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BASE_URL = process.env.GLASSBOX_BASE_URL;
export const MODEL_PATH = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';

const COMMON = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const WEBGPU_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
];

function args(webgpu) {
  return webgpu ? [...COMMON, ...WEBGPU_FLAGS] : [...COMMON, '--disable-gpu'];
}

/** Launches Chromium; `webgpu: false` leaves WebGPU off, as on a browser without it. */
export async function launch({ webgpu }) {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: args(webgpu) });
}

/**
 * A browser profile that persists between pages (the model cache, the service worker), in a
 * fresh temporary directory; `serviceWorkers: 'block'` keeps the service worker out, as on a
 * first visit before it controls the page. Returns the context and a cleanup function.
 */
export async function persistentProfile({ webgpu, serviceWorkers = 'allow' }) {
  const dir = mkdtempSync(join(tmpdir(), 'glassbox-e2e-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: args(webgpu),
    baseURL: BASE_URL,
    serviceWorkers,
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A page in a fresh persistent profile, with its console collected; with `ready`, already on
 * the app with the model loaded. For a `describe.serial` block's `beforeAll`.
 */
export async function profilePage({ webgpu, ready = false, serviceWorkers }) {
  const profile = await persistentProfile({ webgpu, serviceWorkers });
  const page = await profile.context.newPage();
  const logs = collectLogs(page);
  if (ready) {
    await page.goto('/');
    await waitReady(page, logs);
  }
  return { profile, page, logs };
}

/** Console output of the page and its workers, for failure messages. */
export function collectLogs(page) {
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => logs.push(`[worker] ${m.text()}`)));
  return logs;
}

/** A new page with console errors collected, so a test can show them when it fails. */
export async function openPage(browser, path = '/') {
  const context = await browser.newContext({ baseURL: BASE_URL });
  const page = await context.newPage();
  const logs = collectLogs(page);
  await page.goto(path);
  return { context, page, logs };
}

/** The test server's hooks (xtask's server, started with test hooks). */
export async function serverHook(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(`${BASE_URL}/__test/${name}${query ? `?${query}` : ''}`);
  return response.text();
}

export async function waitReady(page, logs = [], timeout = 5 * 60 * 1000) {
  await expect(page.getByRole('status'), logs.join('\n')).toContainText('ready', { timeout });
}

/** Greedy, short replies: deterministic and quick on SwiftShader. */
export async function useGreedy(page, maxTokens = 12) {
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Temperature').press('Tab');
  await page.getByLabel('Max new tokens').fill(String(maxTokens));
  await page.getByLabel('Max new tokens').press('Tab');
}

/** Sends a message with the keyboard (Enter) and waits for the reply to finish. */
export async function ask(page, question, timeout = 5 * 60 * 1000) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(question);
  await box.press('Enter');
  await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
  await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout });
  return page.locator('.turn.assistant .text').last().textContent();
}

/**
 * For a `describe.serial` block: a page in a fresh persistent profile, opened before its first
 * test and closed after its last. The returned object gets `page`, `logs` and `profile`.
 */
export function sharedProfilePage(test, options) {
  const shared = {};
  test.beforeAll(async () => {
    Object.assign(shared, await profilePage(options));
  });
  test.afterAll(async () => {
    await shared.profile?.close();
  });
  return shared;
}
