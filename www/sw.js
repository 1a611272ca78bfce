// Glassbox's service worker: keeps the app shell (html, js, wasm, css, the model manifest, the
// small vision models) so the page opens without a network. The model itself is stored and verified by the engine
// worker (Origin Private File System, or its own Cache API cache), so model requests pass
// through untouched.
//
// Network first, cache as the fallback: a new build is picked up whenever the server answers.
//
// Every response it serves gets Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy, so
// the page is cross-origin isolated on any static host (boot.js reloads once on a first visit)
// and the engine can use its threaded build (worker_mt_loader.js, pool_worker.js).
//
// The engine worker's scripts get their Content-Security-Policy here. Models are fetched in the
// engine worker, and a dedicated worker runs under the policy its script came with (not the
// page's <meta> one): the server's policy for the worker scripts (or, without one, the default
// below: connect-src 'self'), with the origins the user allowed on the page added to its
// connect-src. The page keeps those origins in the Cache API (SETTINGS_CACHE, ORIGINS_ENTRY),
// where this worker can read them, and restarts the engine worker after a change.

// The engine worker's two builds are not in SHELL (5 to 6 MB each, and a visitor runs one): the
// fetch handler keeps the one in use, and the build itself adds what is missing to this cache
// (app/src/worker/offline.rs), for a page this worker did not control when it loaded.
const SHELL_CACHE = 'glassbox-shell-v1';
const SHELL = [
  './',
  './index.html',
  './boot.js',
  './hash_worker.js',
  './app.js',
  './app_bg.wasm',
  './style.css',
  './embed-demo.html',
  './models/manifest.json',
  // The Vision view's models and test digits: small, so they ride with the shell.
  './models/vit-mnist.gguf',
  './models/vir-mnist.gguf',
  './models/mnist-test.bin',
  './models/vision.json',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      // Only older shells: the engine worker keeps the model in a cache of its own (Cache API
      // fallback) that must outlive a new build.
      .then((names) => Promise.all(names
        .filter((n) => n.startsWith('glassbox-shell-') && n !== SHELL_CACHE)
        .map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

const SETTINGS_CACHE = 'glassbox-settings-v1';
const ORIGINS_ENTRY = 'allowed-origins.json';
const WORKER_SCRIPTS = ['worker_loader.js', 'worker.js', 'worker_mt_loader.js', 'worker_mt.js', 'pool_worker.js', 'hash_worker.js'];
// The same default as `cargo xtask serve` sends (xtask/src/server.rs, WORKER_CSP).
const WORKER_CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; object-src 'none'; base-uri 'none'";

function isOrigin(text) {
  try {
    const url = new URL(text);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === text;
  } catch {
    return false;
  }
}

/** The origins the user allowed on the page (checked again here: only plain origins). */
async function allowedOrigins() {
  try {
    const cache = await caches.open(SETTINGS_CACHE);
    const response = await cache.match(new URL(ORIGINS_ENTRY, self.registration.scope).href);
    const list = response ? await response.json() : [];
    return Array.isArray(list) ? list.filter(isOrigin) : [];
  } catch {
    return [];
  }
}

/** `policy` (one or more, comma-separated) with `origins` added to each connect-src. */
function withOrigins(policy, origins) {
  if (origins.length === 0) return policy;
  return policy.split(',').map((one) => {
    const directives = one.split(';').map((d) => d.trim()).filter(Boolean);
    const name = (d) => d.split(/\s+/)[0].toLowerCase();
    const connect = directives.findIndex((d) => name(d) === 'connect-src');
    if (connect >= 0) {
      directives[connect] = `${directives[connect]} ${origins.join(' ')}`;
    } else {
      const fallback = directives.find((d) => name(d) === 'default-src');
      const sources = fallback ? fallback.split(/\s+/).slice(1).join(' ') : '';
      directives.push(`connect-src ${sources} ${origins.join(' ')}`.replace(/\s+/g, ' '));
    }
    return directives.join('; ');
  }).join(', ');
}

function isWorkerScript(url) {
  return url.origin === self.location.origin
    && WORKER_SCRIPTS.some((name) => url.pathname.endsWith(`/${name}`));
}

/** A worker script (from the network, else the shell cache) under its policy. */
async function workerScript(request) {
  let response;
  try {
    response = await fetch(request);
    if (response.ok && response.status === 200) {
      const copy = response.clone();
      caches.open(SHELL_CACHE).then((cache) => cache.put(request, copy));
    }
  } catch {
    response = await caches.match(request, { ignoreSearch: true });
  }
  if (!response) return Response.error();
  const policy = response.headers.get('Content-Security-Policy') || WORKER_CSP;
  const headers = new Headers(response.headers);
  headers.set('Content-Security-Policy', withOrigins(policy, await allowedOrigins()));
  return isolated(response, headers);
}

/** `response` with COOP/COEP added (and `headers` instead of its own, if given). */
function isolated(response, headers = new Headers(response.headers)) {
  // An opaque or error response cannot be rebuilt; same-origin ones never are either.
  if (response.type === 'opaque' || response.type === 'error' || response.status === 0) return response;
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  // The engine worker stores the chat model itself; the vision models are part of the shell.
  if (url.pathname.endsWith('.gguf') && !url.pathname.endsWith('-mnist.gguf')) return false;
  return true;
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || !isShell(url) || request.headers.has('range')) return;
  if (isWorkerScript(url)) {
    event.respondWith(workerScript(request));
    return;
  }
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok && response.status === 200) {
          const copy = response.clone();
          caches.open(SHELL_CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() =>
        caches.match(request, { ignoreSearch: true }).then(
          (cached) => cached || caches.match('./index.html'),
        ),
      )
      .then((response) => (response ? isolated(response) : Response.error())),
  );
});
