// Starts the page's wasm. A file of its own (not an inline script) so that the
// Content-Security-Policy can forbid inline scripts.
import init from './app.js';

init({ module_or_path: './app_bg.wasm' }).catch((error) => {
  const status = document.createElement('p');
  status.setAttribute('role', 'alert');
  status.textContent = `Glassbox could not start: ${error}`;
  document.body.append(status);
});
