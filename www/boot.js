// Starts the page's wasm, and registers the service worker that keeps the app usable offline
// and makes the page cross-origin isolated. A file of its own (not an inline script) so that
// the Content-Security-Policy can forbid inline scripts.
//
// Isolation (COOP/COEP) lets the engine run its CPU kernels on several threads (wasm threads
// share memory through a SharedArrayBuffer). Few static hosts send those headers, so the service
// worker adds them to what it serves; a page loaded before the service worker controlled it
// lacks them, so the first visit reloads once, and says so. A page in a frame cannot be isolated
// by itself (its parent would need the headers too): it runs on one thread without reloading.
import init from './app.js';

const RELOADED = 'glassbox-isolation-reload';

function say(text) {
  const status = document.createElement('p');
  status.setAttribute('role', 'status');
  status.textContent = text;
  document.body.append(status);
}

/** Resolves when a service worker controls the page, or after `ms` (false then). */
function controlled(ms) {
  if (navigator.serviceWorker.controller) return Promise.resolve(true);
  return new Promise((resolve) => {
    navigator.serviceWorker.addEventListener('controllerchange', () => resolve(true), { once: true });
    setTimeout(() => resolve(false), ms);
  });
}

/** Registers the service worker; false if it could not be. */
function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(false);
  return navigator.serviceWorker.register('./sw.js').then(() => true, (error) => {
    console.warn('Glassbox works online only: the service worker did not register', error);
    return false;
  });
}

/** Whether this page should reload to come back isolated (once a session, never in a frame). */
function wantsIsolation() {
  const framed = window.self !== window.top;
  return !self.crossOriginIsolated && !framed && !sessionStorage.getItem(RELOADED);
}

async function boot() {
  const registered = registerServiceWorker();
  if (wantsIsolation() && (await registered)) {
    say('Setting up: the page reloads once so that the model can run on several threads…');
    if (await controlled(10000)) {
      sessionStorage.setItem(RELOADED, '1');
      location.reload();
      return;
    }
    document.querySelectorAll('body > p[role="status"]').forEach((p) => p.remove());
  }
  await init({ module_or_path: './app_bg.wasm' });
}

boot().catch((error) => {
  const status = document.createElement('p');
  status.setAttribute('role', 'alert');
  status.textContent = `Glassbox could not start: ${error}`;
  document.body.append(status);
});
