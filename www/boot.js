// Starts the page's wasm, and registers the service worker that keeps the app usable offline.
// A file of its own (not an inline script) so that the Content-Security-Policy can forbid
// inline scripts.
import init from './app.js';

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('./sw.js').catch((error) => {
    console.warn('Glassbox works online only: the service worker did not register', error);
  });
}

init({ module_or_path: './app_bg.wasm' }).catch((error) => {
  const status = document.createElement('p');
  status.setAttribute('role', 'alert');
  status.textContent = `Glassbox could not start: ${error}`;
  document.body.append(status);
});
