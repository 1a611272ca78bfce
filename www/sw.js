// Glassbox's service worker: keeps the app shell (html, js, wasm, css, the model manifest, the
// small vision models) so the page opens without a network. The model itself is stored and verified by the engine
// worker (Origin Private File System, or its own Cache API cache), so model requests pass
// through untouched.
//
// Network first, cache as the fallback: a new build is picked up whenever the server answers.

const SHELL_CACHE = 'glassbox-shell-v1';
const SHELL = [
  './',
  './index.html',
  './boot.js',
  './app.js',
  './app_bg.wasm',
  './worker.js',
  './worker_bg.wasm',
  './worker_loader.js',
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
      ),
  );
});
