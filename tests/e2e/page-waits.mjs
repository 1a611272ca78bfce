// Waiting for the page without slowing it: what the page benchmarks (bench-page.mjs,
// pair-reload.mjs, pair-page.mjs, profile-page.mjs, chat-vs-hook.mjs, and bench-compare's
// tools/bench/browser.mjs) time a load, a chat turn or a run of the benchmark hook with.
//
// Every wait runs in the page. On a 2-core machine, a harness that asks the page every 20 ms (a
// DevTools round trip and a script run each time) took a quarter of the chat's decode speed
// with two threads: 35 against 47 tok/s, in alternating 128-token replies in one page. Here a
// MutationObserver in the page checks the condition at each change of the DOM and resolves with
// the moment it first held, and the harness sends nothing while the page works. Moments are ms
// since the epoch, the clock `epochNow` reads on this side too.

export const epochNow = () => performance.timeOrigin + performance.now();

/** The moment `condition` first holds in the page (checked at once, then at each DOM change):
 *  `answered` (an assistant turn after the first `arg` shows text) or `replyEnded` (Stop is
 *  disabled). Conditions are named: functions cannot cross into the page. */
export function whenInPage(page, condition, arg, timeoutMs) {
  return page.evaluate(
    ([condition, arg, timeoutMs]) =>
      new Promise((resolve, reject) => {
        const conditions = {
          answered: () => {
            const texts = document.querySelectorAll('.turn.assistant .text');
            return texts.length > arg && texts[texts.length - 1].textContent.length > 0;
          },
          replyEnded: () =>
            [...document.querySelectorAll('button')].some((b) => b.textContent.trim() === 'Stop' && b.disabled),
        };
        const observer = new MutationObserver(check);
        const timer = setTimeout(() => {
          observer.disconnect();
          reject(new Error(`timed out waiting for ${condition}`));
        }, timeoutMs);
        function check() {
          if (!conditions[condition]()) return false;
          clearTimeout(timer);
          observer.disconnect();
          resolve(performance.timeOrigin + performance.now());
          return true;
        }
        if (!check()) {
          observer.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
        }
      }),
    [condition, arg, timeoutMs],
  );
}

/** For `context.addInitScript`: in every document, before its own scripts, sets
 *  `window.glassboxReadyAt`, the moment the status first says "ready" (a reload's can come
 *  before the harness could start waiting), or a rejection with the status that says the load
 *  failed. */
export function recordReady() {
  window.glassboxReadyAt = new Promise((resolve, reject) => {
    const observer = new MutationObserver(() => {
      const status = document.querySelector('[role="status"]')?.textContent ?? '';
      if (/failed|error/i.test(status)) {
        observer.disconnect();
        reject(new Error(`load failed: ${status}`));
      } else if (status.includes('ready')) {
        observer.disconnect();
        resolve(performance.timeOrigin + performance.now());
      }
    });
    observer.observe(document, { subtree: true, childList: true, characterData: true });
  });
}

/** The moment the page's current load said "ready" (needs `recordReady`). A first visit reloads
 *  once (the service worker's isolation): the wait moves to the new document. */
export async function readyAt(page, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out waiting for the model to load')), deadline - Date.now());
    });
    try {
      return await Promise.race([page.evaluate(() => window.glassboxReadyAt), timeout]);
    } catch (e) {
      if (!/context was destroyed|navigation/i.test(e.message)) throw e;
      await page.waitForLoadState();
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Types `text` into the chat, waits `pauseMs` (a person typing), sends it: the moments it was
 *  sent and its reply's first text showed. */
export async function sendTurn(page, text, pauseMs, timeoutMs) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  const before = await page.locator('.turn.assistant .text').count();
  const answered = whenInPage(page, 'answered', before, timeoutMs);
  const sent = epochNow();
  await box.press('Enter');
  return { sent, firstToken: await answered };
}

/** Runs the benchmark hook (`?bench`: `window.glassboxBench`) on prompt `ids` and `decodeTokens`
 *  greedy steps; resolves with its times (`prompt_tokens`, `prefill_ms`, `decode_tokens`,
 *  `decode_ms`). A setter on `window.glassboxBenchResult`, where the page leaves the result,
 *  resolves the wait: nothing polls the page while it runs. */
export async function runBenchHook(page, ids, decodeTokens) {
  const text = await page.evaluate(({ ids, n }) => new Promise((resolve) => {
    delete window.glassboxBenchResult;
    Object.defineProperty(window, 'glassboxBenchResult', {
      configurable: true,
      set(value) {
        Object.defineProperty(window, 'glassboxBenchResult', { value, writable: true, configurable: true });
        resolve(value);
      },
    });
    window.glassboxBench(ids, n);
  }), { ids, n: decodeTokens });
  const result = JSON.parse(text);
  if (result.Err) throw new Error(`the benchmark hook failed: ${result.Err}`);
  return result.Ok;
}
