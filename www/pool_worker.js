// One CPU thread of the threaded engine worker (worker_mt_loader.js). The engine worker sends
// its compiled module, its shared memory and the closure to run (a pointer into that memory);
// this worker instantiates the module on that memory and runs the closure: the engine pool's
// worker loop, which waits on the memory for jobs and never returns while the page is open.
importScripts('./worker_mt.js');

// The module's start function sees this and does not start an engine here.
self.glassboxPoolThread = true;

self.onmessage = async (event) => {
  self.onmessage = null;
  const [module, memory, body] = event.data;
  await wasm_bindgen({ module_or_path: module, memory });
  wasm_bindgen.glassbox_pool_thread(body);
};
