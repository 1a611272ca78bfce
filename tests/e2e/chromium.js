// How the e2e tests start Debian's Chromium: with or without a WebGPU adapter (SwiftShader on
// the CPU here), always without network side channels.
import { chromium } from '@playwright/test';

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

/** Launches Chromium; `webgpu: false` leaves WebGPU off, as on a browser without it. */
export async function launch({ webgpu }) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: webgpu ? [...COMMON, ...WEBGPU_FLAGS] : [...COMMON, '--disable-gpu'],
  });
}

/** A new page with console errors collected, so a test can show them when it fails. */
export async function openPage(browser, path = '/') {
  const context = await browser.newContext({ baseURL: process.env.GLASSBOX_BASE_URL });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(path);
  return { context, page, logs };
}
