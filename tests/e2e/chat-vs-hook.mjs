// How much slower a chat reply decodes than the engine alone, in one page: alternating rounds
// of a greedy chat reply (typed and sent as a person would, streamed into the conversation) and
// of the benchmark hook (`window.glassboxBench`: the same engine, no page work between steps)
// on as many prompt tokens and steps. Prints both speeds and their ratio per round, and the
// median ratio. Not a test.
//
//   cargo xtask serve --no-build --isolate --port 8097 &
//   GLASSBOX_BASE_URL=http://127.0.0.1:8097 node tests/e2e/chat-vs-hook.mjs [--threads 2]
//     [--rounds 6]
//
// The chat's speed is the one its reply's statistics show (tokens after the first, over the
// time since the first); the hook's is its decode steps over their time. The chat's prompt is
// about 60 tokens with the chat template, so the hook gets 60 ids; each round's order alternates.
import { chromium } from '@playwright/test';
import { runBenchHook, sendTurn, whenInPage } from './page-waits.mjs';
import { numberOption as option, servedBaseUrl } from './script-options.mjs';

const BASE_URL = servedBaseUrl();
const THREADS = option('threads', 2);
const ROUNDS = option('rounds', 6);
const PROMPT_IDS = Array.from({ length: 60 }, (_, i) => 100 + i * 7);
const TIMEOUT_MS = 10 * 60 * 1000;
// A new story each round: the worker reuses the KV cache of a common prefix.
const prompt = (round) =>
  `Story number ${round + 1}: write a long story about a lighthouse keeper who finds a message in a bottle.`;

/** One greedy reply in a new chat: its tokens and decode speed, from its statistics. */
async function chatReply(page, round) {
  await page.getByRole('button', { name: 'New chat' }).click();
  await sendTurn(page, prompt(round), 0, TIMEOUT_MS);
  await whenInPage(page, 'replyEnded', 0, TIMEOUT_MS);
  const stats = (await page.locator('.stats').textContent()) ?? '';
  const m = stats.match(/^(\d+) tokens, ([\d.]+) tokens\/s/);
  if (!m) throw new Error(`cannot read the reply's statistics from ${JSON.stringify(stats)}`);
  return { tokens: Number(m[1]), tokensPerSecond: Number(m[2]) };
}

async function hookDecode(page, steps) {
  const o = await runBenchHook(page, PROMPT_IDS, steps);
  return o.decode_tokens / (o.decode_ms / 1000);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu'] });
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${BASE_URL}/?bench&threads=${THREADS}`);
  await page.getByRole('status').filter({ hasText: /ready/ }).waitFor({ timeout: TIMEOUT_MS });
  const status = await page.getByRole('status').textContent();
  if (!status.includes(`${THREADS} thread`)) throw new Error(`expected ${THREADS} thread(s): ${status}`);
  console.log(status);
  const ratios = [];
  let steps = 255; // the chat's longest reply less its first token, until a reply says otherwise
  for (let round = 0; round < ROUNDS; round++) {
    let chat;
    let hook;
    if (round % 2 === 0) {
      chat = await chatReply(page, round);
      steps = chat.tokens - 1;
      hook = await hookDecode(page, steps);
    } else {
      hook = await hookDecode(page, steps);
      chat = await chatReply(page, round);
    }
    ratios.push(chat.tokensPerSecond / hook);
    console.log(`round ${round + 1}: chat ${chat.tokensPerSecond.toFixed(1)} tok/s (${chat.tokens} tokens), ` +
      `hook ${hook.toFixed(1)} tok/s (${steps} steps), chat/hook ${ratios.at(-1).toFixed(3)}`);
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(`chat/hook: median ${sorted[Math.floor(sorted.length / 2)].toFixed(3)} over ${ROUNDS} rounds`);
} finally {
  await browser.close();
}
