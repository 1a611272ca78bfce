// The engine worker's threaded build. `cargo xtask build` makes worker_mt.js and
// worker_mt_bg.wasm from the same crate as worker.js, with wasm atomics: its CPU kernels also run
// on pool threads (pool_worker.js) that share this worker's memory. The page starts it instead
// of worker_loader.js where it is cross-origin isolated (SharedArrayBuffer needs that).
importScripts('./worker_mt.js');
wasm_bindgen({ module_or_path: './worker_mt_bg.wasm' });
