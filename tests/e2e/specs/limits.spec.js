// The page's limits, tried as a clumsy or hostile user would: a conversation that outgrows the
// context and a message too long on its own (CPU tier), deep links that name a layer or head
// the models do not have, and the engine worker's Content-Security-Policy, which must hold
// fetches of any mode to the page's origin before and after the service worker controls it.
import { test, expect } from '@playwright/test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ask, BASE_URL, MODEL_PATH, profilePage, serverHook, sharedProfilePage, useGreedy, waitReady,
} from '../chromium.js';
import { ROOT } from '../native.js';


test.describe.serial('a conversation longer than the context (CPU tier)', () => {
  const shared = sharedProfilePage(test, { webgpu: false, ready: true });

  test('the oldest turns are dropped only when the user says so; the system prompt stays', async () => {
    const { page, logs } = shared;
    await useGreedy(page, 12);
    const filler = 'Tell me about the history of bridges, canals, railways and harbours in old Europe, with dates. '.repeat(8);
    await page.evaluate((text) => {
      const saved = JSON.parse(localStorage.getItem('glassbox.chat.v1'));
      saved.settings.system_prompt = 'You are a terse assistant.';
      saved.turns = Array.from({ length: 16 }, (_, i) => ({
        id: i + 1, role: i % 2 === 0 ? 'User' : 'Assistant', text: `${i}. ${text}`,
      }));
      localStorage.setItem('glassbox.chat.v1', JSON.stringify(saved));
    }, filler);
    await page.reload();
    await waitReady(page, logs);
    await expect(page.locator('.turn')).toHaveCount(16);
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill('What is the capital of France?');
    await box.press('Enter');
    const offer = page.locator('.too-long');
    await expect(offer, logs.join('\n')).toContainText('no longer fits the model\'s 2048-token context');
    await expect(offer).toContainText('New chat');
    // Nothing was generated; the question waits at the end of the conversation.
    await expect(page.locator('.turn')).toHaveCount(17);
    await expect(page.locator('.turn').last()).toContainText('What is the capital of France?');
    const drop = offer.getByRole('button', { name: /^Drop the (\d+ )?oldest messages? and answer$/ });
    const dropped = Number((await drop.textContent()).match(/\d+/)?.[0] ?? 1);
    expect(dropped).toBeGreaterThan(0);
    await drop.focus();
    await page.keyboard.press('Enter');
    await expect(page.getByRole('button', { name: 'Stop' })).toBeDisabled({ timeout: 5 * 60 * 1000 });
    await expect(page.locator('.turn')).toHaveCount(17 - dropped + 1);
    await expect(page.locator('.turn.assistant .text').last()).not.toBeEmpty();
    await expect(page.locator('.turn').first()).not.toContainText('0. Tell me');
    await expect(page.locator('.stats')).toContainText('of 2048 tokens');
    expect(await page.evaluate(() => JSON.parse(localStorage.getItem('glassbox.chat.v1')).settings.system_prompt))
      .toBe('You are a terse assistant.');
  });

  test('a message too long on its own is refused, and the conversation goes on', async () => {
    const { page, logs } = shared;
    await page.getByRole('button', { name: 'New chat' }).click();
    await page.getByLabel('System prompt').fill('');
    await page.getByLabel('System prompt').press('Tab');
    const huge = 'lorem ipsum dolor sit amet '.repeat(700).trim();
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill(huge);
    await box.press('Enter');
    await expect(page.locator('.notice[role="alert"]'), logs.join('\n')).toContainText('This message is too long');
    await expect(page.locator('.turn')).toHaveCount(0);
    // Handed back to the message box, to be shortened.
    await expect(box).toHaveValue(huge);
    const reply = await ask(page, 'What is the capital of France?');
    expect(reply, logs.join('\n')).toContain('Paris');
    await expect(page.locator('.turn')).toHaveCount(2);
  });

  test('a reply that reaches the end of the context is marked as cut', async () => {
    const { page, logs } = shared;
    await page.getByRole('button', { name: 'New chat' }).click();
    // Greedy, no repetition penalty, more new tokens than the context leaves: a reply that
    // repeats a word runs into the end of the context.
    await useGreedy(page, 2048);
    await page.getByLabel('Repetition penalty').fill('1');
    await page.getByLabel('Repetition penalty').press('Tab');
    const apples = Array(200).fill('apple').join(' ');
    await page.evaluate((text) => {
      const saved = JSON.parse(localStorage.getItem('glassbox.chat.v1'));
      saved.turns = Array.from({ length: 6 }, (_, i) => ({
        id: i + 1, role: i % 2 === 0 ? 'User' : 'Assistant', text: i % 2 === 0 ? 'Say apple, many times.' : text,
      }));
      localStorage.setItem('glassbox.chat.v1', JSON.stringify(saved));
    }, apples);
    await page.reload();
    await waitReady(page, logs);
    await ask(page, 'Say apple, many times.');
    await expect(page.locator('.stats'), logs.join('\n')).toContainText(/context 204\d of 2048 tokens · cut: the context is full/);
    await expect(page.locator('.turn.assistant').last().locator('.cut-note'))
      .toHaveText('[Cut: the reply reached the end of the model\'s context.]');
    // The mark survives a reload (it is part of the saved conversation).
    await page.reload();
    await waitReady(page, logs);
    await expect(page.locator('.turn.assistant').last().locator('.cut-note')).toBeVisible();
    await page.getByRole('button', { name: 'Reset sampling' }).click();
  });

  test('a model whose chat template fails chats in a plain format, and the page says so', async () => {
    const { page, logs } = shared;
    // SmolLM2 with the first statement of its template made unknown (same length).
    const bytes = readFileSync(join(ROOT, 'www', MODEL_PATH));
    const from = Buffer.from('{% for message in messages %}');
    const to = Buffer.from(`{% ${'x'.repeat(from.length - 6)} %}`);
    to.copy(bytes, bytes.indexOf(from));
    const dir = mkdtempSync(join(tmpdir(), 'glassbox-template-'));
    try {
      const path = join(dir, 'broken-template.gguf');
      writeFileSync(path, bytes);
      await page.getByRole('button', { name: 'New chat' }).click();
      await page.getByLabel('Open a GGUF file').setInputFiles(path);
      const check = page.getByRole('region', { name: 'Model check' });
      await check.getByRole('button', { name: 'Load this model' }).click();
      await waitReady(page, logs);
      await expect(page.locator('.mode-note')).toContainText('The model\'s chat template fails (');
      await expect(page.locator('.mode-note')).toContainText('using a plain format');
      await expect(page.locator('.mode-note')).not.toContainText('Completion mode');
      const reply = await ask(page, 'What is the capital of France?');
      expect(reply.trim().length, logs.join('\n')).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('a Vision deep link with a layer and head beyond the models shows the last ones', async () => {
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await page.goto('/?view=vision&digit=3&layer=99&head=999');
    await expect(page.locator('.prediction[data-model="ViR"]'), logs.join('\n')).toContainText('ViR says', { timeout: 2 * 60 * 1000 });
    const layer = Number(await page.getByRole('spinbutton', { name: 'Layer' }).inputValue());
    const head = Number(await page.getByRole('spinbutton', { name: 'Head' }).inputValue());
    expect(layer).toBe(Number(await page.getByRole('spinbutton', { name: 'Layer' }).getAttribute('max')));
    expect(head).toBe(Number(await page.getByRole('spinbutton', { name: 'Head' }).getAttribute('max')));
    expect(layer).toBeLessThan(99);
    expect(head).toBeLessThan(999);
    await expect(page.locator('#vir-sentence')).toContainText(`Head ${head}: decay γ = `);
    await expect(page.locator('#vir-sentence')).not.toContainText('γ = 0.0000');
    expect(new URL(page.url()).searchParams.get('head')).toBe(String(head));
  } finally {
    await profile.close();
  }
});

/** Fetches from inside the page's engine worker (its one-thread or its threaded build):
 * `no-cors` and `cors` to another origin, then its own. */
async function probeWorker(page, tag) {
  const other = `http://localhost:${new URL(BASE_URL).port}`;
  const worker = page.workers().find((w) => /\/worker(_mt)?_loader\.js(\?.*)?$/.test(w.url()));
  expect(worker, page.workers().map((w) => w.url()).join(', ')).toBeTruthy();
  return worker.evaluate(async ([target, own]) => {
    const attempt = (url, mode) => fetch(url, { mode, cache: 'no-store' })
      .then((r) => `fetched (${r.type})`, (e) => `blocked (${e.name})`);
    return {
      noCors: await attempt(`${target}-no-cors`, 'no-cors'),
      cors: await attempt(`${target}-cors`, 'cors'),
      own: await attempt(own, 'same-origin'),
    };
  }, [`${other}/csp-probe-${tag}`, `${BASE_URL}/models/manifest.json`]);
}

const BLOCKED = { noCors: 'blocked (TypeError)', cors: 'blocked (TypeError)', own: 'fetched (basic)' };

test('the engine worker cannot reach another origin, with or without the service worker', async () => {
  await serverHook('clear-log');
  // A first visit, before any service worker controls the page: the server's header holds.
  const first = await profilePage({ webgpu: false, serviceWorkers: 'block' });
  try {
    await first.page.goto('/');
    await waitReady(first.page, first.logs);
    expect(await first.page.evaluate(() => navigator.serviceWorker?.controller ?? null)).toBeNull();
    expect(await probeWorker(first.page, 'first')).toEqual(BLOCKED);
  } finally {
    await first.profile.close();
  }
  // Later visits: the service worker writes the worker's policy.
  const { profile, page, logs } = await profilePage({ webgpu: false });
  try {
    await page.goto('/');
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.reload();
    await waitReady(page, logs);
    expect(await page.evaluate(() => Boolean(navigator.serviceWorker.controller))).toBe(true);
    expect(await probeWorker(page, 'controlled')).toEqual(BLOCKED);
  } finally {
    await profile.close();
  }
  const log = (await serverHook('log')).split('\n');
  expect(log.filter((r) => r.includes('csp-probe')), log.join('\n')).toEqual([]);
  // The probe reaches the server where nothing blocks it (the test's own check of the probe).
  const open = await fetch(`http://localhost:${new URL(BASE_URL).port}/csp-probe-open`);
  expect(open.status).toBe(404);
  expect((await serverHook('log')).split('\n')).toContain('GET /csp-probe-open range=-');
});
