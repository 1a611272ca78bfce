// The page runs the engine in a Web Worker and reports the compute tier it found.
import { test, expect } from '@playwright/test';
import { launch, openPage } from '../chromium.js';

test('Chromium with the WebGPU flags reports the WebGPU tier', async () => {
  const browser = await launch({ webgpu: true });
  try {
    const { page, logs } = await openPage(browser);
    const status = page.getByRole('status');
    await expect(status, logs.join('\n')).toHaveText(/^WebGPU \(.+\)/);
    await expect(status).toContainText(/SwiftShader/i);
  } finally {
    await browser.close();
  }
});

test('Chromium without WebGPU reports the CPU tier', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page, logs } = await openPage(browser);
    await expect(page.getByRole('status'), logs.join('\n')).toHaveText(/^CPU \(wasm\)/);
  } finally {
    await browser.close();
  }
});
