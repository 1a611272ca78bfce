// Playwright runs Debian's Chromium (never a downloaded browser) against the release build,
// served by `cargo xtask test` at GLASSBOX_BASE_URL.
import { defineConfig } from '@playwright/test';

const baseURL = process.env.GLASSBOX_BASE_URL;
if (!baseURL) {
  throw new Error('GLASSBOX_BASE_URL is not set: run the e2e tests with `cargo xtask test`');
}

export default defineConfig({
  testDir: './specs',
  timeout: 10 * 60 * 1000,
  expect: { timeout: 60 * 1000 },
  // One worker: the machine has 2 cores and each page runs a model.
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: { baseURL, trace: 'off', screenshot: 'off' },
});
