// Hashes a stored model on a thread of its own, so that the engine worker parses the model while
// the browser hashes it (WebCrypto's digest runs on the thread that calls it, in Chromium: about
// 150 ms for SmolLM2's 100 MB, which the load would otherwise wait for).
//
// Message in: [file, length] (a File, and how many of its first bytes to hash).
// Message out: { digest } (an ArrayBuffer of 32 bytes), or { error } (a sentence).
self.onmessage = async (event) => {
  self.onmessage = null;
  const [file, length] = event.data;
  try {
    if (!self.crypto?.subtle) throw new Error('WebCrypto is not available here');
    const bytes = await file.slice(0, length).arrayBuffer();
    if (bytes.byteLength !== length) throw new Error('the stored file is shorter than recorded');
    self.postMessage({ digest: await self.crypto.subtle.digest('SHA-256', bytes) });
  } catch (error) {
    self.postMessage({ error: String(error?.message ?? error) });
  }
};
