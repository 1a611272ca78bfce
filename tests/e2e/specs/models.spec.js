// Any model, on the CPU tier: the model list (the bundled models, Gemma 3 with its licence), the
// check that reads a model's header and says what will work before any weight is fetched (and
// refuses a model that does not fit, an unknown architecture, a file that is not a GGUF or is
// truncated), a GGUF opened from disk (kept in the browser, answering, its choice surviving a
// reload through the deep link), a GGUF from a URL (cut and resumed), and the origins the engine
// worker may fetch from (its Content-Security-Policy, written by the service worker).
import { test, expect } from '@playwright/test';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ask, BASE_URL, MODEL_PATH, serverHook, sharedProfilePage, useGreedy, waitReady,
} from '../chromium.js';
import { ROOT } from '../native.js';

const manifest = JSON.parse(readFileSync(join(ROOT, 'www/models/manifest.json'), 'utf8'));
const gemma = manifest.more.find((m) => m.file.startsWith('gemma-3'));
const TMP = mkdtempSync(join(tmpdir(), 'glassbox-models-'));

test.afterAll(() => rmSync(TMP, { recursive: true, force: true }));

// A GGUF header written here: enough for the engine's checks (GGUF v3, little-endian).
function gguf(metadata, tensors) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  parts.push(Buffer.from('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    str(key);
    if (typeof value === 'string') { u32(8); str(value); } else { u32(4); u32(value); }
  }
  let offset = 0;
  for (const { name, dims, type, bytes } of tensors) {
    str(name);
    u32(dims.length);
    dims.forEach(u64);
    u32(type);
    u64(offset);
    offset += Math.ceil(bytes / 32) * 32;
  }
  const header = Buffer.concat(parts);
  const dataStart = Math.ceil(header.length / 32) * 32;
  return { header, size: dataStart + offset };
}

/** A llama far too large for wasm's 4 GiB (F16, 3 layers of width 8192), as a sparse file. */
function hugeLlama() {
  const [d, ffn, vocab, kv, layers] = [8192, 28672, 32000, 1024, 3];
  const f16 = (name, dims) => ({ name, dims, type: 1, bytes: dims.reduce((a, b) => a * b, 2) });
  const f32 = (name, n) => ({ name, dims: [n], type: 0, bytes: 4 * n });
  const tensors = [f16('token_embd.weight', [d, vocab]), f32('output_norm.weight', d)];
  for (let i = 0; i < layers; i++) {
    tensors.push(
      f32(`blk.${i}.attn_norm.weight`, d), f16(`blk.${i}.attn_q.weight`, [d, d]),
      f16(`blk.${i}.attn_k.weight`, [d, kv]), f16(`blk.${i}.attn_v.weight`, [d, kv]),
      f16(`blk.${i}.attn_output.weight`, [d, d]), f32(`blk.${i}.ffn_norm.weight`, d),
      f16(`blk.${i}.ffn_gate.weight`, [d, ffn]), f16(`blk.${i}.ffn_up.weight`, [d, ffn]),
      f16(`blk.${i}.ffn_down.weight`, [ffn, d]),
    );
  }
  const { header, size } = gguf({
    'general.architecture': 'llama',
    'general.name': 'Huge test llama',
    'llama.block_count': layers,
    'llama.context_length': 4096,
    'llama.embedding_length': d,
    'llama.feed_forward_length': ffn,
    'llama.attention.head_count': 64,
    'llama.attention.head_count_kv': 8,
  }, tensors);
  const path = join(TMP, 'huge-llama.gguf');
  const fd = openSync(path, 'w');
  writeFileSync(fd, header);
  ftruncateSync(fd, size); // sparse: the weights take no disk
  closeSync(fd);
  return { path, size };
}

/** SmolLM2 under another name (same length, so every offset stays): another sha256. */
function renamedSmolLM2() {
  const bytes = readFileSync(join(ROOT, 'www', MODEL_PATH));
  const from = Buffer.from('Smollm2 135M 8k Lc100K Mix1 Ep2');
  const to = Buffer.from('Glassbox test copy of SmolLM2!!');
  expect(to.length).toBe(from.length);
  to.copy(bytes, bytes.indexOf(from));
  const path = join(TMP, 'smollm2-copy.gguf');
  writeFileSync(path, bytes);
  return { path, sha256: createHash('sha256').update(bytes).digest('hex') };
}

const requests = async () => (await serverHook('log')).split('\n');

test.describe.serial('any model: the list, the check, a file, a URL, the origins (CPU tier)', () => {
  const shared = sharedProfilePage(test, { webgpu: false, ready: true });
  const check = () => shared.page.getByRole('region', { name: 'Model check' });

  test('the list names the bundled models; Gemma is checked from its header alone', async () => {
    const { page, logs } = shared;
    const list = page.getByRole('list', { name: 'Model list' });
    const smol = list.locator(`li[data-sha256="${manifest.chat.sha256}"]`);
    await expect(smol, logs.join('\n')).toContainText('llama · Q4_1');
    await expect(smol).toContainText('135 M parameters · 98.4 MB · 8192-token context · licence: apache-2.0');
    await expect(smol).toContainText('default, stored here');
    await expect(smol).toContainText('— loaded');
    await expect(page.getByRole('status')).toContainText(`ready — ${manifest.chat.name}`);
    const entry = list.locator(`li[data-sha256="${gemma.sha256}"]`);
    await expect(entry).toContainText(gemma.name);
    await expect(entry.getByRole('link', { name: 'Licence text' })).toHaveAttribute('href', 'models/GEMMA_TERMS.html');

    await serverHook('clear-log');
    await page.getByRole('button', { name: `Check ${gemma.name}` }).click();
    await expect(check()).toContainText('gemma3');
    await expect(check()).toContainText('18 layers × 4 heads; 15 local (512-token window), 3 global');
    await expect(check()).toContainText('32768 tokens (this page gives it 2048)');
    await expect(check()).toContainText('licence');
    await expect(check()).toContainText('none: completion mode');
    await expect(check().locator('.verdict')).toContainText('Runs on the CPU (wasm) with a 2048-token context');
    await expect(check().locator('.verdict')).toContainText('Loading it downloads 253.1 MB');
    await expect(check().getByRole('button', { name: 'Load this model' })).toBeEnabled();
    // Only the header was fetched, with bounded Range requests.
    const fetched = (await requests()).filter((r) => r.includes(gemma.file));
    expect(fetched.length, fetched.join('\n')).toBeGreaterThan(0);
    for (const r of fetched) expect(r).toMatch(/range=bytes=\d+-\d+$/);
  });

  test('Gemma loads (a cancelled download resumes), continues text, and fills every view', async () => {
    const { page, logs } = shared;
    const path = `/models/${gemma.file}`;
    await serverHook('clear-log');
    await serverHook('slow', { path, rate: String(20_000_000) });
    await check().getByRole('button', { name: 'Load this model' }).click();
    await expect(page.locator('.load-text')).toContainText('Downloading the model');
    await page.getByRole('button', { name: 'Cancel download' }).click();
    await expect(page.getByRole('alert'), logs.join('\n')).toContainText('cancelled at');
    await page.getByRole('button', { name: 'Retry' }).click();
    await waitReady(page, logs);
    const resumed = (await requests()).filter((r) => r.startsWith(`GET ${path} range=bytes=`) && r.endsWith('-'));
    expect(resumed.length, (await requests()).join('\n')).toBe(1);
    await expect(page.getByRole('status')).toContainText(`ready — ${gemma.name}`);
    expect(new URL(page.url()).searchParams.get('model')).toBe(gemma.sha256);

    // Completion mode: the page says so, and the model continues the text (BOS first).
    await expect(page.locator('.mode-note')).toContainText('has no chat template');
    await useGreedy(page, 8);
    // No repetition penalty: counting repeats its commas.
    await page.getByLabel('Repetition penalty').fill('1');
    await page.getByLabel('Repetition penalty').press('Tab');
    expect(await ask(page, 'One, two, three, four,'), logs.join('\n')).toContain('five, six');
    await page.getByRole('tab', { name: 'Order' }).click();
    await expect(page.getByText('the question is laid out as plain text')).toBeVisible();
    await page.getByRole('tab', { name: 'Explore' }).click();
    await page.getByRole('button', { name: 'Inspect text' }).click();
    await expect(page.locator('.explorer-status')).toContainText('18 layers × 4 heads');
    await expect(page.locator('.model-shape')).toContainText('Global layers (every token before it): 5, 11, 17.');
    await page.getByRole('spinbutton', { name: 'Layer' }).fill('5');
    await page.getByRole('spinbutton', { name: 'Layer' }).press('Tab');
    await expect(page.locator('.layer-kind')).toHaveText('global layer');
    await expect(page.getByRole('table', { name: 'Logit lens' }).locator('tbody tr')).toHaveCount(18);
    await page.getByRole('tab', { name: 'Chat' }).click();
  });

  test('the check refuses what cannot run, before anything is loaded', async () => {
    const { page } = shared;
    const input = page.getByLabel('Open a GGUF file');
    const huge = hugeLlama();
    await input.setInputFiles(huge.path);
    await expect(check().locator('.verdict')).toContainText('Does not fit in this browser');
    await expect(check().locator('.verdict')).toContainText('4 GiB address space');
    await expect(check().getByRole('button', { name: 'Load this model' })).toBeDisabled();

    const mamba = gguf({ 'general.architecture': 'mamba' }, [{ name: 'x', dims: [32], type: 0, bytes: 128 }]);
    await input.setInputFiles({
      name: 'mamba.gguf', mimeType: 'application/octet-stream',
      buffer: Buffer.concat([mamba.header, Buffer.alloc(mamba.size - mamba.header.length)]),
    });
    await expect(check().locator('.verdict')).toContainText('Glassbox cannot run this model: unsupported architecture: mamba');
    await expect(check().getByRole('button', { name: 'Load this model' })).toBeDisabled();

    // Dropped on the page, like a file from the desktop.
    const dropped = await page.evaluateHandle(() => {
      const data = new DataTransfer();
      data.items.add(new File(['just some notes'], 'notes.gguf'));
      return data;
    });
    await page.locator('main').dispatchEvent('drop', { dataTransfer: dropped });
    await expect(check()).toContainText('not a GGUF file');
    const start = readFileSync(join(ROOT, 'www', MODEL_PATH)).subarray(0, 100_000);
    await input.setInputFiles({ name: 'cut.gguf', mimeType: 'application/octet-stream', buffer: start });
    await expect(check()).toContainText('truncated');
    await check().getByRole('button', { name: 'Close' }).click();
    // The model that was loaded is still loaded.
    await expect(page.getByRole('status')).toContainText(`ready — ${gemma.name}`);
  });

  test('a GGUF opened from disk is kept, listed and answers; a reload asks for it by sha256', async () => {
    const { page, logs } = shared;
    const copy = renamedSmolLM2();
    await page.getByLabel('Keep a copy in this browser').check();
    // From the keyboard: the button opens the file chooser.
    const [chooser] = await Promise.all([
      page.waitForEvent('filechooser'),
      page.getByRole('button', { name: 'Open a GGUF file' }).press('Enter'),
    ]);
    await chooser.setFiles(copy.path);
    await expect(check().locator('.verdict')).toContainText('read from your disk; nothing leaves this machine');
    await check().getByRole('button', { name: 'Load this model' }).click();
    await waitReady(page, logs);
    await expect(page.getByRole('status')).toContainText('Glassbox test copy of SmolLM2!!');
    await useGreedy(page, 12);
    expect(await ask(page, 'What is the capital of France?'), logs.join('\n')).toContain('Paris');
    const entry = page.getByRole('list', { name: 'Model list' }).locator(`li[data-sha256="${copy.sha256}"]`);
    await expect(entry).toContainText('stored here, added by you');
    expect(new URL(page.url()).searchParams.get('model')).toBe(copy.sha256);

    await serverHook('clear-log');
    await page.reload();
    await waitReady(page, logs);
    await expect(page.getByRole('status')).toContainText('Glassbox test copy of SmolLM2!!');
    // It came from the browser's storage: no model was fetched.
    expect((await requests()).filter((r) => r.includes('.gguf') && !r.includes('mnist'))).toEqual([]);
  });

  test('a GGUF from a URL downloads with progress; a cut download resumes with a Range request', async () => {
    const { page, logs } = shared;
    const url = `${BASE_URL}${MODEL_PATH}?copy=url`;
    await page.getByLabel('Model URL').fill(url);
    await page.getByRole('button', { name: 'Check URL' }).click();
    await expect(check().locator('.verdict')).toContainText('Loading it downloads 98.4 MB');
    await serverHook('clear-log');
    await serverHook('cut', { path: MODEL_PATH, after: String(30_000_000) });
    await check().getByRole('button', { name: 'Load this model' }).click();
    await expect(page.getByRole('progressbar', { name: 'Model loading' })).toBeVisible();
    await expect(page.getByRole('alert'), logs.join('\n')).toContainText('stopped at', { timeout: 2 * 60 * 1000 });
    await page.getByRole('button', { name: 'Retry' }).click();
    await waitReady(page, logs);
    const log = await requests();
    const resumed = log.map((r) => r.match(new RegExp(`^GET ${MODEL_PATH} range=bytes=(\\d+)-$`))).filter(Boolean);
    expect(resumed.length, log.join('\n')).toBe(1);
    expect(Number(resumed[0][1])).toBeGreaterThan(0);
    // The same bytes as the bundled model: its sha256 names it.
    await expect(page.getByRole('status')).toContainText(`ready — ${manifest.chat.name}`);
  });

  test('another origin is refused until it is allowed; the worker\'s policy then lists it', async () => {
    const { page, logs } = shared;
    const port = new URL(BASE_URL).port;
    const other = `http://localhost:${port}`;
    await page.getByLabel('Model URL').fill(`${other}${MODEL_PATH}`);
    await page.getByRole('button', { name: 'Check URL' }).click();
    await expect(check()).toContainText(`allow ${other} under "Allowed origins" first`);
    await check().getByRole('button', { name: 'Close' }).click();

    // The test server's default policy for the worker: its own origin only.
    const direct = await fetch(`${BASE_URL}/worker_loader.js`);
    expect(direct.headers.get('content-security-policy')).toContain("connect-src 'self';");

    await page.locator('details.origins summary').click();
    await page.getByLabel('Origin to allow').fill(other);
    await page.getByRole('button', { name: 'Allow origin' }).click();
    await expect(page.getByRole('list', { name: 'Allowed origins' })).toContainText(other);
    await waitReady(page, logs);
    const policy = await page.evaluate(async () => (await fetch('worker_loader.js')).headers.get('content-security-policy'));
    expect(policy).toContain(`connect-src 'self' ${other}`);
    await page.getByRole('button', { name: 'Check URL' }).click();
    await expect(check().locator('.verdict'), logs.join('\n')).toContainText('Runs on the CPU (wasm)');
    await check().getByRole('button', { name: 'Close' }).click();
    await page.getByRole('button', { name: `Forbid ${other}` }).click();
    await expect(page.getByRole('list', { name: 'Allowed origins' })).not.toContainText(other);
    await waitReady(page, logs);
  });
});
